/*
 * snapshot.c - summing every worker's counters (see snapshot.h).
 */
#include "snapshot.h"

#include "runtime/counter.h"
#include "server/server.h"
#include "server/worker.h"

#include <string.h>

/* Add n counters from src into dst, with relaxed reads. */
static void add_words(void *dst, const void *src, size_t bytes)
{
    uint64_t *d = dst;
    const uint64_t *s = src;
    for (size_t i = 0; i < bytes / sizeof(uint64_t); i++)
        d[i] += hp_counter_get(&s[i]);
}

void hp_snapshot_take(hp_ctx_t *ctx, hp_snapshot_t *s)
{
    memset(s, 0, sizeof(*s));
    hp_worker_t *self = ctx->worker;
    hp_server_t *srv = self->server;
    unsigned n = srv ? srv->nworkers : 1;
    hp_metrics_t *blocks[256] = {0}; /* the config allows at most 256 workers */
    if (n > 256) n = 256;
    for (unsigned i = 0; i < n; i++) {
        hp_worker_t *w = srv ? hp_server_worker(srv, i) : self;
        blocks[i] = &w->metrics;
        add_words(&s->alloc, &w->alloc, sizeof(s->alloc));
        add_words(&s->runtime, &w->runtime, sizeof(s->runtime));
        /* Another worker's cache and pool pointers are set before its
         * thread starts and cleared only after every request has ended. */
        if (w->cache) add_words(&s->cache, hp_cache_stats(w->cache), sizeof(s->cache));
        if (w->upstream)
            add_words(&s->upstream, hp_upstream_stats(w->upstream), sizeof(s->upstream));
    }
    hp_metrics_sum(blocks, n, &s->m);
    s->workers = n;
    s->mode = self->gen->mode;
    s->now_ms = uv_now(&self->loop);
    /* Uptime of the server, or of this worker's loop when it runs alone (in
     * tests); at least 1 ms so rates are finite. */
    uint64_t origin = srv ? srv->started_ms : self->started_ms;
    s->uptime_ms = uv_hrtime() / 1000000 - origin;
    if (s->uptime_ms == 0) s->uptime_ms = 1;
    /* This worker's view: each worker swaps its generation on its own. On
     * uptime's clock, not the loop's: uv_now is cached per loop turn and
     * coarser, and the difference of the two clocks moved the answer by a
     * millisecond or more between reads. */
    uint64_t since = self->gen->mode_since_ms;
    s->mode_since_ms = since > origin ? since - origin : 0;
}
