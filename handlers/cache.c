/*
 * cache - GET /cache/{key}: the value of /items/{key} from the upstream,
 * through this worker's cache. The handler the Task/ValueTask question is
 * about:
 *
 *   hit        hp_cache_get completes inline: the answer is written from
 *              the cached buffer before returning, and in valuetask mode the
 *              request allocates nothing;
 *   miss       the get returns the fill's task; this layer pends on its
 *              pooled source (valuetask mode) and answers in cache_awaited;
 *   coalesced  the same, on the same fill task as the miss before it: one
 *              upstream request for any number of concurrent misses - the
 *              multi-await case only a task can serve;
 *   stale      answered inline from the expired value while one refresh runs.
 *
 * Every answer says which in X-Cache. An upstream answer other than 200 is
 * passed through and not cached; an upstream failure is a 502 (504 for a
 * timeout).
 */
#include "handlers.h"

#include "cache/cache.h"
#include "server/alloc.h"
#include "server/counter.h"
#include "server/errors.h"
#include "server/metrics.h"
#include "server/worker.h"
#include "upstream/client.h"

#include <stdio.h>
#include <string.h>

/* Keys are path segments; 256 bytes is plenty and bounds the fill's path. */
#define KEY_MAX 256

static void answer_error(hp_ctx_t *ctx, int err)
{
    if (err == HP_EUPSTREAM_TIMEOUT)
        hp_resp_set(ctx, 504, "text/plain", HP_STR("upstream timed out\n"));
    else if (err == HP_ESHUTDOWN)
        hp_resp_set(ctx, 503, "text/plain", HP_STR("shutting down\n"));
    else
        hp_resp_set(ctx, 502, "text/plain", HP_STR("upstream failed\n"));
}

static void answer(hp_ctx_t *ctx, hp_vtask_t *vt)
{
    hp_buf_t *buf;
    int rc = hp_cache_result(vt, &buf, NULL);
    if (rc == 0)
        hp_resp_buf(ctx, buf);
    else
        answer_error(ctx, rc);
}

static void cache_awaited(void *arg)
{
    hp_layer_t *layer = arg;
    answer(layer->ctx, &layer->downstream);
    hp_layer_complete(layer, 0, NULL);
}

static hp_vtask_t cache_get(hp_ctx_t *ctx)
{
    hp_worker_t *w = ctx->worker;
    hp_str_t key = ctx->req.param;
    if (key.len == 0 || key.len > KEY_MAX || memchr(key.ptr, '/', key.len)) {
        hp_resp_set(ctx, 400, "text/plain", HP_STR("expected /cache/{key}, key of 1..256 bytes\n"));
        return hp_done(ctx);
    }
    hp_cache_outcome_t how;
    hp_vtask_t vt = hp_cache_get(w->cache, ctx->mode, key.ptr, key.len, uv_now(&w->loop), &how);
    hp_layer_record(w->cache_stats[ctx->mode], &vt);
    /* A coalesced get is one more waiter on the fill's shared task. */
    if (how == HP_CACHE_COALESCED) hp_counter_add(&w->cache_stats[ctx->mode]->waiters, 1);
    const char *x = hp_cache_outcome_name(how);
    hp_resp_header(ctx, "X-Cache", (hp_str_t){x, strlen(x)});
    if (hp_vtask_is_completed(&vt)) {
        answer(ctx, &vt);
        return hp_done(ctx);
    }
    hp_layer_t *layer = hp_layer_current(ctx);
    layer->downstream = vt;
    hp_vtask_t mine = hp_layer_pending(layer);
    hp_vtask_on_completed(&layer->downstream, cache_awaited, layer);
    return mine;
}

const hp_handler_t hp_handler_cache = {.name = "cache", .invoke = cache_get};

/* --- the fill ---------------------------------------------------------- */

hp_task_t *hp_cache_fill(void *arg, const char *key, size_t key_len)
{
    hp_worker_t *w = arg;
    char path[KEY_MAX + 16];
    int n = snprintf(path, sizeof(path), "/items/%.*s", (int)key_len, key);
    /* The upstream's task is the fill: its result is the buffer the cache
     * stores, so a miss costs no task of its own. The cache does not store
     * answers other than 2xx. */
    return hp_upstream_request(w->upstream, "GET", path, (size_t)n);
}
