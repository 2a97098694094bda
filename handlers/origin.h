/*
 * origin.h - the per-worker state of the handlers that go upstream: the
 * pooled upstream client, the cache in front of it, and the cache's second
 * tier, the L2 client (cache/l2.h) when cache.l2.url is set. The cache
 * handler owns it - its gets, its fills, their statistics - and /upstream
 * borrows its client, so that both share one pool (pool_size is per
 * worker, not per handler).
 *
 * A service (server/layers.h): made on each worker when its loop opens,
 * reconfigured on reload, closed when the worker ends; the handlers naming
 * hp_service_origin get this worker's instance as their self. Worker
 * thread only.
 */
#ifndef HP_HANDLERS_ORIGIN_H
#define HP_HANDLERS_ORIGIN_H

#include "cache/cache.h"
#include "cache/l2.h"
#include "runtime/list.h"
#include "server/metrics.h"
#include "upstream/client.h"

#include <stdbool.h>

/* A cache key: one normalized path segment of 1..HP_CACHE_KEY_MAX bytes
 * (the cache handler refuses longer ones), which bounds the fill's path. */
#define HP_CACHE_KEY_MAX 256

typedef struct {
    hp_cache_t *cache;       /* owned */
    hp_upstream_t *upstream; /* owned; NULL once closed */
    hp_l2_t *l2;             /* owned; NULL while cache.l2.url is not set */
    uv_loop_t *loop;         /* the worker's (borrowed) */
    hp_l2_stats_t l2_stats;  /* what every L2 client of this worker counted
                                (hp_l2_count_into): published as "l2" */
    uint64_t l2_ttl_ms;      /* an L2 record's expiry: the cache's ttl_ms */
    hp_link_t misses;        /* fills going through L2 (fill.c), for cancel */
    /* The mode of the get that calls the fill (the cache handler sets it
     * around hp_cache_get): which mode's figures its L2 call goes to. */
    hp_mode_t mode;
    /* While a fill answered from L2 completes, its task (compared, never
     * dereferenced): the cache handler then says X-Cache: l2. */
    const hp_task_t *l2_answer;
    /* This worker's figures for the layers it runs as the chain runs its
     * own: the cache's get, the L2 lookup, the upstream call. */
    hp_layer_stats_t *cache_get[HP_MODES];
    hp_layer_stats_t *cache_l2[HP_MODES];
    hp_layer_stats_t *upstream_request[HP_MODES];
    bool closing;
    unsigned closes;   /* the clients still closing */
    hp_cont_cb closed; /* the close's callback, once the clients have gone */
    void *closed_arg;
} hp_origin_t;

/* The cache's fill (hp_cache_fill_fn, fill.c): the value of /items/{key},
 * from L2 when it is on and has it, else from the upstream through the
 * origin's client (then stored in L2); key is a normalized segment
 * (target.h). Returns an owned task whose result is an hp_buf_t * it owns;
 * an answer other than 2xx reaches the waiters but is not cached (the cache
 * checks) nor stored in L2. */
hp_task_t *hp_origin_fill(void *origin, const char *key, size_t key_len);

/* The caller that started fill (its task; borrowed) is gone and nobody else
 * waits for it (hp_cache_leave said 1): stop it before it is sent upstream,
 * or drop an upstream request not sent yet. */
void hp_origin_cancel(hp_origin_t *o, const hp_task_t *fill);

#endif
