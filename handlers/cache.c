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
 *   stale      answered inline from the expired value while one refresh runs;
 *   l2         a miss whose fill the second tier answered (fill.c): one
 *              Redis round trip instead of the upstream's.
 *
 * Every answer says which in X-Cache. An upstream answer other than 200 is
 * passed through and not cached; an upstream failure is a 502 (504 for a
 * timeout).
 *
 * The key is the path segment after /cache/, checked and normalized by the
 * rules of target.h (one segment, escapes in one spelling, no dot-segment,
 * no escaped slash), so /items/{key} never leaves /items/. The query is not
 * part of it.
 *
 * A waiter whose client goes away (cache_abort) leaves the fill - which
 * goes on for the other waiters and the cache - unless it was the last one
 * and the fill has not been sent yet: then nothing is spent on a value
 * nobody asked for any more, and the fill is cancelled. The departed
 * request itself ends when its fill does; the task runtime has no way to
 * withdraw one continuation from a shared task.
 */
#include "handlers.h"
#include "origin.h"
#include "target.h"

#include "cache/cache.h"
#include "runtime/alloc.h"
#include "runtime/counter.h"
#include "runtime/errors.h"
#include "server/metrics.h"
#include "upstream/client.h"

#include <stdio.h>
#include <string.h>

/* What cache_abort needs of a pending get, in the request's arena. */
typedef struct {
    hp_origin_t *origin;
    hp_str_t key;
    const hp_task_t *fill;  /* compared, never dereferenced */
    hp_cache_outcome_t how; /* MISS or COALESCED */
} waiter_t;

static void answer_error(hp_ctx_t *ctx, int err)
{
    if (err == HP_EUPSTREAM_TIMEOUT)
        hp_resp_set(ctx, 504, "text/plain", HP_STR("upstream timed out\n"));
    else if (err == HP_ESHUTDOWN)
        hp_resp_set(ctx, 503, "text/plain", HP_STR("shutting down\n"));
    else
        hp_resp_set(ctx, 502, "text/plain", HP_STR("upstream failed\n"));
}

/* The get's outcome as the answer. A refusal of the task runtime (the get
 * was consumed or stale: hp_vtask_is_completed says true for those, and
 * hp_layer_await hands over its refusal as the fault) is this server's
 * bug, not the upstream's: returned, for the request to fail with it (a
 * 500), never answered as a 502. Returns 0 or that code. */
static int answer(hp_ctx_t *ctx, hp_vtask_t *vt)
{
    hp_buf_t *buf;
    int rc = hp_cache_result(vt, &buf, NULL);
    if (rc == 0)
        hp_resp_buf(ctx, buf);
    else if (hp_err_is_misuse(rc))
        return rc;
    else
        answer_error(ctx, rc);
    return 0;
}

static void x_cache(hp_ctx_t *ctx, const char *x)
{
    hp_resp_header(ctx, "X-Cache", (hp_str_t){x, strlen(x)});
}

/* layer->mark: the pending get's waiter_t. A miss learns here whether its
 * fill was answered by L2: fill.c marks the fill while it completes, which
 * is when this runs (continuations run inside the completion). */
static void cache_awaited(void *arg)
{
    hp_layer_t *layer = arg;
    const waiter_t *wt = (const waiter_t *)(uintptr_t)layer->mark;
    hp_ctx_on_abort(layer->ctx, NULL, NULL);
    bool l2 = wt->how == HP_CACHE_MISS && wt->origin->l2_answer == wt->fill;
    x_cache(layer->ctx, l2 ? "l2" : hp_cache_outcome_name(wt->how));
    int rc = answer(layer->ctx, &layer->downstream);
    hp_layer_complete(layer, rc, rc ? hp_strerror(rc) : NULL);
}

/* A waiter will not read its fill after all. */
static void leave(const waiter_t *wt)
{
    hp_origin_t *o = wt->origin;
    if (o->cache && hp_cache_leave(o->cache, wt->key.ptr, wt->key.len, wt->fill) == 1)
        hp_origin_cancel(o, wt->fill);
}

static void cache_abort(hp_ctx_t *ctx, void *arg)
{
    leave(arg);
}

#define TEXT_(x) #x
#define TEXT(x)  TEXT_(x) /* a macro's value as a string literal */

static hp_vtask_t bad_key(hp_ctx_t *ctx, int reason)
{
    if (reason == 0) {
        hp_resp_set(ctx, 400, "text/plain",
                    HP_STR("expected /cache/{key}: one path segment of 1.." TEXT(
                        HP_CACHE_KEY_MAX) " bytes, not . or ..\n"));
        return hp_done(ctx);
    }
    hp_resp_set(ctx, 400, "text/plain", hp_target_body(reason));
    return hp_done(ctx);
}

static bool dot_segment(const char *k, int n)
{
    return (n == 1 && k[0] == '.') || (n == 2 && k[0] == '.' && k[1] == '.');
}

static hp_vtask_t cache_get(void *self, hp_ctx_t *ctx)
{
    hp_origin_t *o = self;
    char *key = hp_ctx_alloc(ctx, ctx->req.param.len + 1);
    int n = hp_target_normalize(ctx->req.param, ctx->req.query, key);
    if (n < 0) return bad_key(ctx, n);
    if (n == 0 || n > HP_CACHE_KEY_MAX || memchr(key, '/', (size_t)n) || dot_segment(key, n))
        return bad_key(ctx, 0);
    hp_cache_outcome_t how;
    o->mode = ctx->mode; /* for a fill this get starts (origin.h) */
    hp_vtask_t vt = hp_cache_get(o->cache, ctx->mode, key, (size_t)n, hp_ctx_now_ms(ctx), &how);
    hp_layer_record(o->cache_get[ctx->mode], &vt);
    /* A coalesced get is one more waiter on the fill's shared task. */
    if (how == HP_CACHE_COALESCED) hp_counter_add(&o->cache_get[ctx->mode]->waiters, 1);
    if (hp_vtask_is_completed(&vt)) {
        x_cache(ctx, hp_cache_outcome_name(how));
        /* A hit or a stale value - or a get that cannot be read (consumed
         * or stale: a misuse, answered 500). A MISS or COALESCED one of
         * those will never read its fill, so it leaves it. */
        waiter_t wt = {o, {key, (size_t)n}, vt.kind == HP_VT_TASK ? vt.u.task : NULL, how};
        int rc = answer(ctx, &vt);
        if (rc == 0) return hp_done(ctx);
        if (how == HP_CACHE_MISS || how == HP_CACHE_COALESCED) leave(&wt);
        return hp_fail(ctx, rc, hp_strerror(rc));
    }
    /* Pending: a MISS or COALESCED get, a valuetask on the fill's task. */
    hp_layer_t *layer = hp_layer_current(ctx);
    hp_vtask_t mine = hp_layer_pending(layer);
    waiter_t *wt = hp_ctx_alloc(ctx, sizeof(*wt));
    *wt = (waiter_t){o, {key, (size_t)n}, vt.u.task, how};
    layer->mark = (uintptr_t)wt;
    hp_ctx_on_abort(ctx, cache_abort, wt);
    /* Refused (counted in the runtime's misuse figures): cache_awaited has
     * run already, with the refusal as the fault (a 500); this get will
     * never read its fill, so it leaves it. */
    if (hp_layer_await(layer, vt, cache_awaited) < 0) leave(wt);
    return mine;
}

const hp_handler_t hp_handler_cache = {
    .name = "cache",
    .invoke = cache_get,
    .service = &hp_service_origin,
};
