/*
 * snapshot.h - the whole server's figures at one moment: every worker's
 * counters summed (relaxed reads of single-writer counters, so a snapshot
 * taken under load is consistent per counter, not across counters).
 * /stats, /metrics and /advice all report from one of these.
 */
#ifndef HP_SNAPSHOT_H
#define HP_SNAPSHOT_H

#include "cache/cache.h"
#include "server/ctx.h"
#include "server/metrics.h"
#include "upstream/client.h"

typedef struct {
    hp_metrics_t m;
    hp_alloc_stats_t alloc; /* worker threads' totals, by door */
    hp_runtime_stats_t runtime;
    hp_cache_stats_t cache;
    hp_upstream_stats_t upstream;
    unsigned workers;
    hp_mode_t mode;         /* the mode new requests start under */
    uint64_t mode_since_ms; /* uptime_ms when `mode` took effect; 0: since start */
    uint64_t uptime_ms;
    uint64_t now_ms; /* uv_now of the worker that took it */
} hp_snapshot_t;

/* Fill s from every worker of ctx's server (just ctx's worker when it runs
 * without a server, in tests). */
void hp_snapshot_take(hp_ctx_t *ctx, hp_snapshot_t *s);

#endif
