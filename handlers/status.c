/*
 * status - the answers for requests no route serves: 404 for an unknown
 * path, 405 with Allow for a known path and the wrong method. They run
 * through the chain like any handler, so they get Date, a request id and a
 * line in the metrics.
 */
#include "handlers.h"

static hp_vtask_t not_found(hp_ctx_t *ctx)
{
    hp_resp_set(ctx, 404, "text/plain", HP_STR("not found\n"));
    return hp_done(ctx);
}

static hp_vtask_t method_not_allowed(hp_ctx_t *ctx)
{
    const char *allow = hp_route_allow(ctx->req.path);
    if (allow) hp_resp_header(ctx, "Allow", (hp_str_t){allow, __builtin_strlen(allow)});
    hp_resp_set(ctx, 405, "text/plain", HP_STR("method not allowed\n"));
    return hp_done(ctx);
}

const hp_handler_t hp_handler_not_found = {.name = "not_found", .invoke = not_found};
const hp_handler_t hp_handler_method_not_allowed = {.name = "method_not_allowed",
                                                    .invoke = method_not_allowed};
