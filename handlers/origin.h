/*
 * origin.h - the per-worker state of the handlers that go upstream: the
 * pooled upstream client, and the cache in front of it. The cache handler
 * owns it - its gets, its fills, their statistics - and /upstream borrows
 * its client, so that both share one pool (pool_size is per worker, not per
 * handler). The next tier, the L2 client (cache/l2.h), joins here.
 *
 * A service (server/layers.h): made on each worker when its loop opens,
 * reconfigured on reload, closed when the worker ends; the handlers naming
 * hp_service_origin get this worker's instance as their self. Worker
 * thread only.
 */
#ifndef HP_HANDLERS_ORIGIN_H
#define HP_HANDLERS_ORIGIN_H

#include "cache/cache.h"
#include "server/metrics.h"
#include "upstream/client.h"

/* A cache key: one normalized path segment of 1..HP_CACHE_KEY_MAX bytes
 * (the cache handler refuses longer ones), which bounds the fill's path. */
#define HP_CACHE_KEY_MAX 256

typedef struct {
    hp_cache_t *cache;       /* owned */
    hp_upstream_t *upstream; /* owned; NULL once closed */
    /* This worker's figures for the two layers it runs as the chain runs
     * its own: the cache's get, the upstream call. */
    hp_layer_stats_t *cache_get[HP_MODES];
    hp_layer_stats_t *upstream_request[HP_MODES];
    hp_cont_cb closed; /* the close's callback, once the client has gone */
    void *closed_arg;
} hp_origin_t;

/* The cache's fill (hp_cache_fill_fn): fetch /items/{key} through the
 * origin's upstream client; key is a normalized segment (target.h).
 * Returns an owned task whose result is an hp_buf_t * it owns; an answer
 * other than 2xx reaches the waiters but is not cached (the cache checks). */
hp_task_t *hp_origin_fill(void *origin, const char *key, size_t key_len);

#endif
