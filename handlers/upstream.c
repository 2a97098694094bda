/*
 * upstream - GET /upstream/{path}: proxied to the upstream's /{path}.
 *
 * Always asynchronous, so it is written the way .NET code calling a
 * remote service is: it returns a heap task (its own Task<Response>),
 * completed by proxy_awaited when the upstream's task completes. Even in
 * valuetask mode this path allocates - the task, the pooled client's
 * request and the response buffer - because that is what genuinely
 * asynchronous work costs, and the report shows it next to the zero of a
 * cache hit.
 *
 * The path is checked and normalized first (target.h: no fragment, no
 * backslash or escaped slash, escapes in one spelling, dot-segments
 * removed without climbing out of /upstream/); what fails is a 400 and
 * never leaves the server.
 *
 * A client that goes away while its request is out cancels it
 * (proxy_abort): nobody else waits for this answer, and its pool slot is
 * what the requests queued behind it need. The upstream task then faults
 * with UV_ECANCELED and the request ends as a 499, nginx's "client closed
 * request", which only the access log and the metrics see.
 *
 * HEAD is sent upstream as GET (the writer drops the body), so the pooled
 * connection never has to know a response has no body.
 */
#include "handlers.h"
#include "origin.h"
#include "target.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "server/metrics.h"
#include "upstream/client.h"

#include <string.h>

static void proxy_awaited(void *arg)
{
    hp_layer_t *layer = arg;
    hp_ctx_t *ctx = layer->ctx;
    hp_ctx_on_abort(ctx, NULL, NULL);
    hp_task_t *up = layer->downstream.u.task;
    hp_value_t v;
    int rc = hp_task_result(up, &v);
    if (hp_err_is_misuse(rc)) {
        /* The await was refused (hp_layer_await): this server's bug, not
         * the upstream's - the request's fault, answered 500. */
        hp_chain_consume(ctx, &layer->downstream);
        hp_layer_complete(layer, rc, hp_strerror(rc));
        return;
    }
    if (rc == 0) {
        hp_resp_buf(ctx, hp_buf_ref(v.ptr));
    } else if (rc == HP_EUPSTREAM_TIMEOUT) {
        hp_resp_set(ctx, 504, "text/plain", HP_STR("upstream timed out\n"));
    } else if (rc == HP_ESHUTDOWN) {
        hp_resp_set(ctx, 503, "text/plain", HP_STR("shutting down\n"));
    } else if (rc == UV_ECANCELED) {
        hp_resp_set(ctx, 499, "text/plain", HP_STR("client closed request\n"));
    } else {
        hp_resp_set(ctx, 502, "text/plain", HP_STR("upstream failed\n"));
    }
    hp_chain_consume(ctx, &layer->downstream); /* releases the upstream task */
    ctx->fault = NULL;
    hp_layer_complete(layer, 0, NULL);
}

/* The client left: its request is dropped wherever it is (client.h). The
 * layer's self is the origin (set by proxy). */
static void proxy_abort(hp_ctx_t *ctx, void *arg)
{
    hp_layer_t *layer = arg;
    hp_origin_t *o = layer->self;
    hp_upstream_cancel(o->upstream, layer->downstream.u.task, true);
}

/* A synchronous answer from a handler that returns a task. */
static hp_task_t *answered(hp_ctx_t *ctx)
{
    return hp_task_from_result(hp_value_ptr(ctx));
}

/* "/" + the normalized path, and "?query" when there is one, in the
 * request's arena; its length, or minus a target.h reason. */
static int upstream_path(hp_ctx_t *ctx, char **out)
{
    hp_req_t *req = &ctx->req;
    char *norm = hp_ctx_alloc(ctx, req->param.len + 1);
    int n = hp_target_normalize(req->param, req->query, norm);
    if (n < 0) return n;
    char *path = hp_ctx_alloc(ctx, (size_t)n + 2 + req->query.len);
    int len = hp_target_remove_dots((hp_str_t){norm, (size_t)n}, path);
    if (len < 0) return len;
    if (req->query.len) {
        path[len++] = '?';
        memcpy(path + len, req->query.ptr, req->query.len);
        len += (int)req->query.len;
    }
    *out = path;
    return len;
}

static hp_task_t *proxy(void *self, hp_ctx_t *ctx)
{
    hp_origin_t *o = self;
    char *path;
    int len = upstream_path(ctx, &path);
    if (len < 0) {
        hp_resp_set(ctx, 400, "text/plain", hp_target_body(len));
        return answered(ctx);
    }
    hp_task_t *up = hp_upstream_request(o->upstream, "GET", path, (size_t)len);
    hp_layer_t *layer = hp_layer_current(ctx);
    hp_vtask_t down = hp_vtask_from_task(up);
    hp_layer_record(o->upstream_request[ctx->mode], &down);
    layer->task = hp_task_new();
    hp_task_t *mine = hp_task_ref(layer->task);
    /* The hook first: the continuation, which clears it, may run at once
     * (a request refused on the spot). */
    layer->self = o;
    hp_ctx_on_abort(ctx, proxy_abort, layer);
    /* A refused await (counted in the runtime's misuse figures) drops the
     * reference `down` holds and runs proxy_awaited at once with the
     * refusal (a 500); the request is then taken back from the upstream,
     * which would run it for nobody. hp_upstream_cancel wants the caller's
     * reference still held: this one, for that moment. */
    hp_task_ref(up);
    if (hp_layer_await(layer, down, proxy_awaited) < 0) hp_upstream_cancel(o->upstream, up, true);
    hp_task_unref(up);
    return mine;
}

/* The cache's per-worker client: one pool for both (origin.h). */
const hp_handler_t hp_handler_upstream = {
    .name = "upstream",
    .invoke_task = proxy,
    .service = &hp_service_origin,
};
