/*
 * status - the answers about the server rather than from an endpoint: 404
 * for an unknown path, 405 with Allow for a known path and the wrong method,
 * and "OPTIONS *" (RFC 9110 9.3.7), 200 with Allow listing every method some
 * route serves; and GET /healthz, 200 "ok" or 503 "draining" once the
 * server stops (server/worker.c), touching neither cache nor upstream: what
 * a balancer's check needs to know is whether this process takes work. They
 * run through the chain like any handler, so they get Date, a request id
 * and a line in the metrics.
 */
#include "handlers.h"

#include "server/router.h"

#include <string.h>

static hp_vtask_t not_found(void *self, hp_ctx_t *ctx)
{
    hp_resp_set(ctx, 404, "text/plain", HP_STR("not found\n"));
    return hp_done(ctx);
}

static hp_vtask_t method_not_allowed(void *self, hp_ctx_t *ctx)
{
    const char *allow = hp_router_allow(hp_ctx_router(ctx), ctx->req.path);
    if (allow) hp_resp_header(ctx, "Allow", (hp_str_t){allow, __builtin_strlen(allow)});
    hp_resp_set(ctx, 405, "text/plain", HP_STR("method not allowed\n"));
    return hp_done(ctx);
}

static hp_vtask_t options(void *self, hp_ctx_t *ctx)
{
    /* The methods a client may know by name (RFC 9110 and 5789's PATCH),
     * in llhttp's numbering; CONNECT is never served (no tunnels). */
    static const struct {
        unsigned method;
        const char *name;
    } known[] = {{HP_GET, "GET"},     {HP_HEAD, "HEAD"},     {HP_POST, "POST"},
                 {HP_PUT, "PUT"},     {HP_DELETE, "DELETE"}, {HP_OPTIONS, "OPTIONS"},
                 {HP_TRACE, "TRACE"}, {HP_PATCH, "PATCH"}};
    uint64_t served = hp_ctx_router(ctx)->methods;
    char *allow = hp_ctx_alloc(ctx, 64);
    size_t n = 0;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (!(served & HP_METHOD_BIT(known[i].method))) continue;
        size_t k = strlen(known[i].name);
        if (n) {
            memcpy(allow + n, ", ", 2);
            n += 2;
        }
        memcpy(allow + n, known[i].name, k);
        n += k;
    }
    hp_resp_header(ctx, "Allow", (hp_str_t){allow, n});
    hp_resp_set(ctx, 200, NULL, (hp_str_t){"", 0});
    return hp_done(ctx);
}

static hp_vtask_t healthz(void *self, hp_ctx_t *ctx)
{
    if (hp_ctx_healthy(ctx))
        hp_resp_set(ctx, 200, "text/plain", HP_STR("ok\n"));
    else
        hp_resp_set(ctx, 503, "text/plain", HP_STR("draining\n"));
    return hp_done(ctx);
}

const hp_handler_t hp_handler_not_found = {.name = "not_found", .invoke = not_found};
const hp_handler_t hp_handler_healthz = {.name = "healthz", .invoke = healthz};
const hp_handler_t hp_handler_options = {.name = "options", .invoke = options};
const hp_handler_t hp_handler_method_not_allowed = {.name = "method_not_allowed",
                                                    .invoke = method_not_allowed};
