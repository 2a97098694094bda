/*
 * origin.c - the service behind /cache and /upstream (see origin.h): one
 * upstream client and one cache per worker, made with the worker's loop,
 * reconfigured with it, and closed when it ends.
 *
 * It publishes the cache's and the client's statistics under their own
 * names ("cache", "upstream"), and declares the two layers it runs beside
 * the chain ("cache.get", "upstream.request"), so the server's figures
 * and /advice know them without the server knowing either.
 *
 * Closing: the cache goes first (its fills still running detach and free
 * themselves when the client fails them), then the client, whose close
 * completes in a libuv callback; the service is freed there.
 */
#include "origin.h"
#include "handlers.h"

#include "server/service.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <string.h>

/* "/items/" and a key (origin.h). */
#define ITEM_PATH_MAX (HP_CACHE_KEY_MAX + 16)

/* The configuration's "cache" and "upstream" sections are the two modules'
 * own option structs (their tables: cache.c, client.c). */
static const hp_cache_opts_t *cache_opts(const hp_config_t *cfg)
{
    return hp_config_section(cfg, &hp_cache_options);
}

static const hp_upstream_opts_t *upstream_opts(const hp_config_t *cfg)
{
    return hp_config_section(cfg, &hp_upstream_options);
}

hp_task_t *hp_origin_fill(void *arg, const char *key, size_t key_len)
{
    hp_origin_t *o = arg;
    char path[ITEM_PATH_MAX];
    int n = snprintf(path, sizeof(path), "/items/%.*s", (int)key_len, key);
    /* The upstream's task is the fill: its result is the buffer the cache
     * stores, so a miss costs no task of its own. The cache does not store
     * answers other than 2xx. */
    return hp_upstream_request(o->upstream, "GET", path, (size_t)n);
}

static uint64_t loop_now(void *loop)
{
    return uv_now(loop);
}

static void discard(void *arg)
{
    hp_free(arg);
}

static int create(hp_host_t *host, void **self, char *err, size_t errlen)
{
    const hp_config_t *cfg = hp_host_config(host);
    hp_origin_t *o = hp_calloc(1, sizeof(*o));
    int rc = hp_upstream_new(hp_host_loop(host), upstream_opts(cfg), &o->upstream);
    if (rc) {
        snprintf(err, errlen, "upstream client: %s", hp_strerror(rc));
        hp_free(o);
        return rc;
    }
    o->cache = hp_cache_new(cache_opts(cfg), hp_origin_fill, o);
    hp_cache_set_clock(o->cache, loop_now, hp_host_loop(host));
    for (int m = 0; m < HP_MODES; m++) {
        o->cache_get[m] = hp_host_layer(host, "cache.get", (hp_mode_t)m);
        o->upstream_request[m] = hp_host_layer(host, "upstream.request", (hp_mode_t)m);
    }
    if ((rc = hp_host_publish(host, &hp_cache_stats_table, hp_cache_stats(o->cache))) ||
        (rc = hp_host_publish(host, &hp_upstream_stats_table, hp_upstream_stats(o->upstream)))) {
        snprintf(err, errlen, "statistics: %s", hp_strerror(rc));
        hp_cache_free(o->cache);
        hp_upstream_close(o->upstream, discard, o); /* freed when the client has gone */
        return rc;
    }
    *self = o;
    return 0;
}

static void upstream_closed(void *arg)
{
    hp_origin_t *o = arg;
    hp_cont_cb done = o->closed;
    void *done_arg = o->closed_arg;
    hp_free(o);
    done(done_arg);
}

static void origin_close(void *self, hp_cont_cb done, void *arg)
{
    hp_origin_t *o = self;
    o->closed = done;
    o->closed_arg = arg;
    hp_cache_free(o->cache);
    o->cache = NULL;
    hp_upstream_close(o->upstream, upstream_closed, o);
}

static int reconfigure(void *self, const hp_config_t *cfg, char *err, size_t errlen)
{
    hp_origin_t *o = self;
    int rc = hp_cache_reconfigure(o->cache, cache_opts(cfg));
    if (rc) {
        snprintf(err, errlen, "cache: %s", hp_strerror(rc));
        return rc;
    }
    rc = hp_upstream_reconfigure(o->upstream, upstream_opts(cfg));
    if (rc) snprintf(err, errlen, "upstream: %s", hp_strerror(rc));
    return rc;
}

static const hp_service_layer_t layers[] = {
    {"cache.get", "cache"},
    {"upstream.request", "upstream"},
    {NULL, NULL},
};

const hp_service_t hp_service_origin = {
    .name = "origin",
    .layers = layers,
    .create = create,
    .close = origin_close,
    .reconfigure = reconfigure,
};
