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
 * HEAD is sent upstream as GET (the writer drops the body), so the pooled
 * connection never has to know a response has no body.
 */
#include "handlers.h"

#include "server/alloc.h"
#include "server/errors.h"
#include "server/metrics.h"
#include "server/worker.h"
#include "upstream/client.h"

#include <string.h>

static void proxy_awaited(void *arg)
{
    hp_layer_t *layer = arg;
    hp_ctx_t *ctx = layer->ctx;
    hp_task_t *up = layer->downstream.u.task;
    hp_value_t v;
    int rc = hp_task_result(up, &v);
    if (rc == 0) {
        hp_resp_buf(ctx, hp_buf_ref(v.ptr));
    } else if (rc == HP_EUPSTREAM_TIMEOUT) {
        hp_resp_set(ctx, 504, "text/plain", HP_STR("upstream timed out\n"));
    } else if (rc == HP_ESHUTDOWN) {
        hp_resp_set(ctx, 503, "text/plain", HP_STR("shutting down\n"));
    } else {
        hp_resp_set(ctx, 502, "text/plain", HP_STR("upstream failed\n"));
    }
    hp_chain_consume(ctx, &layer->downstream); /* releases the upstream task */
    ctx->fault = NULL;
    hp_layer_complete(layer, 0, NULL);
}

static hp_task_t *proxy(hp_ctx_t *ctx)
{
    hp_worker_t *w = ctx->worker;
    hp_req_t *req = &ctx->req;
    size_t len = 1 + req->param.len + (req->query.len ? 1 + req->query.len : 0);
    char *path = hp_ctx_alloc(ctx, len);
    path[0] = '/';
    memcpy(path + 1, req->param.ptr, req->param.len);
    if (req->query.len) {
        path[1 + req->param.len] = '?';
        memcpy(path + 2 + req->param.len, req->query.ptr, req->query.len);
    }
    hp_task_t *up = hp_upstream_request(w->upstream, "GET", path, len);
    hp_layer_t *layer = hp_layer_current(ctx);
    layer->downstream = hp_vtask_from_task(up);
    hp_layer_record(w->upstream_stats[ctx->mode], &layer->downstream);
    layer->task = hp_task_new();
    hp_task_t *mine = hp_task_ref(layer->task);
    hp_vtask_on_completed(&layer->downstream, proxy_awaited, layer);
    return mine;
}

const hp_handler_t hp_handler_upstream = {.name = "upstream", .invoke_task = proxy};
