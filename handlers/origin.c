/*
 * origin.c - the service behind /cache and /upstream (see origin.h): one
 * upstream client, one cache and, when cache.l2.url is set, one L2 client
 * per worker, made with the worker's loop, reconfigured with it, and closed
 * when it ends. The miss path through them is fill.c's.
 *
 * It publishes the cache's, the L2 client's and the upstream client's
 * statistics under their own names ("cache", "l2", "upstream"), and
 * declares the layers it runs beside the chain ("cache.get", "cache.l2",
 * "upstream.request"), so the server's figures and /advice know them
 * without the server knowing any of them. The "l2" block is the origin's
 * own, not a client's (hp_l2_count_into): L2 turns on and off with a
 * reload, and its figures must neither vanish nor go back meanwhile.
 *
 * Reload: cache.l2.url set where it was not makes a client (it connects in
 * the background; lookups are bypassed until it is ready); cleared, the
 * client closes (lookups in flight fault, and their fills go upstream);
 * changed, hp_l2_reconfigure reconnects.
 *
 * Closing: the cache goes first (its fills still running detach and free
 * themselves when the clients fail them), then both clients, whose closes
 * complete in libuv callbacks; the service is freed after the last.
 */
#include "origin.h"
#include "handlers.h"

#include "server/service.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <string.h>

/* The configuration's "cache", "cache.l2" and "upstream" sections are the
 * modules' own option structs (their tables: cache.c, l2.c, client.c). */
static const hp_cache_opts_t *cache_opts(const hp_config_t *cfg)
{
    return hp_config_section(cfg, &hp_cache_options);
}

static const hp_l2_opts_t *l2_opts(const hp_config_t *cfg)
{
    return hp_config_section(cfg, &hp_l2_options);
}

static const hp_upstream_opts_t *upstream_opts(const hp_config_t *cfg)
{
    return hp_config_section(cfg, &hp_upstream_options);
}

static uint64_t loop_now(void *loop)
{
    return uv_now(loop);
}

static void origin_free(hp_origin_t *o)
{
    hp_cont_cb done = o->closed;
    void *done_arg = o->closed_arg;
    hp_free(o);
    if (done) done(done_arg);
}

static void client_closed(void *arg)
{
    hp_origin_t *o = arg;
    if (--o->closes == 0) origin_free(o);
}

/* Bring the L2 client in line with opts (url NULL: none). */
static int l2_apply(hp_origin_t *o, const hp_l2_opts_t *opts, char *err, size_t errlen)
{
    const hp_l2_opts_t off = {0};
    if (opts == NULL) opts = &off;
    if (opts->url == NULL) {
        if (o->l2) {
            hp_l2_t *l2 = o->l2;
            o->l2 = NULL; /* before its lookups fault: their fills go upstream */
            o->closes++;
            hp_l2_close(l2, client_closed, o);
        }
        return 0;
    }
    if (o->l2) return hp_l2_reconfigure(o->l2, opts, err, errlen);
    int rc = hp_l2_init(o->loop, opts, &o->l2, err, errlen);
    if (rc == 0) hp_l2_count_into(o->l2, &o->l2_stats);
    return rc;
}

static int create(hp_host_t *host, void **self, char *err, size_t errlen)
{
    const hp_config_t *cfg = hp_host_config(host);
    hp_origin_t *o = hp_calloc(1, sizeof(*o));
    o->loop = hp_host_loop(host);
    hp_link_init(&o->misses);
    int rc = hp_upstream_new(o->loop, upstream_opts(cfg), &o->upstream);
    if (rc) {
        snprintf(err, errlen, "upstream client: %s", hp_strerror(rc));
        hp_free(o);
        return rc;
    }
    o->closes = 1; /* the upstream client's */
    o->cache = hp_cache_new(cache_opts(cfg), hp_origin_fill, o);
    hp_cache_set_clock(o->cache, loop_now, o->loop);
    o->l2_ttl_ms = cache_opts(cfg)->ttl_ms;
    for (int m = 0; m < HP_MODES; m++) {
        o->cache_get[m] = hp_host_layer(host, "cache.get", (hp_mode_t)m);
        o->cache_l2[m] = hp_host_layer(host, "cache.l2", (hp_mode_t)m);
        o->upstream_request[m] = hp_host_layer(host, "upstream.request", (hp_mode_t)m);
    }
    char why[200] = "";
    if ((rc = l2_apply(o, l2_opts(cfg), why, sizeof(why)))) {
        snprintf(err, errlen, "%s", why);
    } else if ((rc = hp_host_publish(host, &hp_cache_stats_table, hp_cache_stats(o->cache))) ||
               (rc = hp_host_publish(host, &hp_l2_stats_table, &o->l2_stats)) ||
               (rc = hp_host_publish(host, &hp_upstream_stats_table,
                                     hp_upstream_stats(o->upstream)))) {
        snprintf(err, errlen, "statistics: %s", hp_strerror(rc));
    }
    if (rc) {
        /* Freed when the clients have gone; nobody to tell. */
        o->closing = true;
        hp_cache_free(o->cache);
        o->cache = NULL;
        l2_apply(o, NULL, NULL, 0);
        hp_upstream_close(o->upstream, client_closed, o);
        return rc;
    }
    *self = o;
    return 0;
}

static void origin_close(void *self, hp_cont_cb done, void *arg)
{
    hp_origin_t *o = self;
    o->closed = done;
    o->closed_arg = arg;
    o->closing = true;
    hp_cache_free(o->cache);
    o->cache = NULL;
    l2_apply(o, NULL, NULL, 0);
    hp_upstream_close(o->upstream, client_closed, o);
}

static int reconfigure(void *self, const hp_config_t *cfg, char *err, size_t errlen)
{
    hp_origin_t *o = self;
    int rc = hp_cache_reconfigure(o->cache, cache_opts(cfg));
    if (rc) {
        snprintf(err, errlen, "cache: %s", hp_strerror(rc));
        return rc;
    }
    o->l2_ttl_ms = cache_opts(cfg)->ttl_ms;
    char why[200] = "";
    if ((rc = l2_apply(o, l2_opts(cfg), why, sizeof(why)))) {
        snprintf(err, errlen, "cache.l2: %s", why);
        return rc;
    }
    rc = hp_upstream_reconfigure(o->upstream, upstream_opts(cfg));
    if (rc) snprintf(err, errlen, "upstream: %s", hp_strerror(rc));
    return rc;
}

static const hp_service_layer_t layers[] = {
    {"cache.get", "cache"},
    {"cache.l2", "cache"},
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
