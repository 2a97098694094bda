/*
 * snapshot.h - the whole server's figures at one moment: every worker's
 * counters summed (relaxed reads of single-writer counters, so a snapshot
 * taken under load is consistent per counter, not across counters), and
 * the statistics blocks the workers' services publish, summed by table.
 * /stats, /metrics, /advice and /dashboard/data all report from one.
 */
#ifndef HP_SNAPSHOT_H
#define HP_SNAPSHOT_H

#include "ctx.h"
#include "metrics.h"
#include "router.h"

#include "runtime/alloc.h"
#include "runtime/stats.h"
#include "runtime/task.h"

#include <stdint.h>

/* Room for the published blocks' sums, in counters. */
#define HP_SNAPSHOT_WORDS 512

typedef struct {
    hp_metrics_t m;
    hp_alloc_stats_t alloc; /* worker threads' totals, by door */
    hp_runtime_stats_t runtime;
    const hp_router_t *router; /* the routes the figures are by (borrowed) */
    unsigned workers;
    hp_mode_t mode;         /* the mode new requests start under */
    uint64_t mode_since_ms; /* uptime_ms when `mode` took effect; 0: since start */
    uint64_t uptime_ms;
    uint64_t now_ms; /* uv_now of the worker that took it */
    unsigned nblocks;
    struct {
        const hp_stats_table_t *table;
        const uint64_t *sum; /* into words[] */
    } blocks[HP_BLOCKS_MAX];
    uint64_t words[HP_SNAPSHOT_WORDS];
} hp_snapshot_t;

/* Fill s from every worker of ctx's server (just ctx's worker when it runs
 * without a server, in tests). */
void hp_snapshot_take(hp_ctx_t *ctx, hp_snapshot_t *s);

/* The sum of table's blocks over the workers, or NULL when no worker
 * published one. Borrowed from s. */
const void *hp_snapshot_block(const hp_snapshot_t *s, const hp_stats_table_t *table);

#endif
