/*
 * snapshot.c - summing every worker's counters (see snapshot.h).
 */
#include "snapshot.h"

#include "host.h"

#include "runtime/counter.h"

#include <string.h>

/* Add n counters from src into dst, with relaxed reads. */
static void add_words(void *dst, const void *src, size_t bytes)
{
    uint64_t *d = dst;
    const uint64_t *s = src;
    for (size_t i = 0; i < bytes / sizeof(uint64_t); i++)
        d[i] += hp_counter_get(&s[i]);
}

/* Add one worker's published block to s's sum for its table. */
static void add_block(hp_snapshot_t *s, size_t *used, const hp_stats_table_t *t, const void *b)
{
    unsigned i = 0;
    while (i < s->nblocks && s->blocks[i].table != t)
        i++;
    if (i == s->nblocks) {
        size_t words = t->size / sizeof(uint64_t);
        if (i == HP_BLOCKS_MAX || *used + words > HP_SNAPSHOT_WORDS) return;
        s->blocks[i].table = t;
        s->blocks[i].sum = &s->words[*used];
        *used += words;
        s->nblocks++;
    }
    add_words((uint64_t *)s->blocks[i].sum, b, t->size);
}

void hp_snapshot_take(hp_ctx_t *ctx, hp_snapshot_t *s)
{
    memset(s, 0, sizeof(*s));
    hp_host_t *self = ctx->host;
    unsigned n = self->peers ? self->npeers : 1;
    hp_metrics_t *blocks[HP_WORKERS_MAX] = {0};
    if (n > HP_WORKERS_MAX) n = HP_WORKERS_MAX;
    size_t used = 0;
    for (unsigned i = 0; i < n; i++) {
        hp_host_t *h = self->peers ? self->peers[i] : self;
        blocks[i] = &h->metrics;
        add_words(&s->alloc, &h->alloc, sizeof(s->alloc));
        add_words(&s->runtime, &h->runtime, sizeof(s->runtime));
        /* Another worker's services publish before its thread starts and
         * withdraw only after every request has ended. */
        unsigned nb = __atomic_load_n(&h->nblocks, __ATOMIC_ACQUIRE);
        for (unsigned b = 0; b < nb; b++)
            add_block(s, &used, h->blocks[b].table, h->blocks[b].block);
    }
    hp_metrics_sum(blocks, n, &s->m);
    s->router = &self->router;
    s->workers = n;
    s->mode = self->gen->mode;
    s->now_ms = uv_now(self->loop);
    /* Uptime of the server, or of this worker's loop when it runs alone (in
     * tests); at least 1 ms so rates are finite. */
    uint64_t origin = self->peers ? self->server_started_ms : self->started_ms;
    s->uptime_ms = uv_hrtime() / 1000000 - origin;
    if (s->uptime_ms == 0) s->uptime_ms = 1;
    /* This worker's view: each worker swaps its generation on its own. On
     * uptime's clock, not the loop's: uv_now is cached per loop turn and
     * coarser, and the difference of the two clocks moved the answer by a
     * millisecond or more between reads. */
    uint64_t since = self->gen->mode_since_ms;
    s->mode_since_ms = since > origin ? since - origin : 0;
}

const void *hp_snapshot_block(const hp_snapshot_t *s, const hp_stats_table_t *table)
{
    for (unsigned i = 0; i < s->nblocks; i++)
        if (s->blocks[i].table == table) return s->blocks[i].sum;
    return NULL;
}
