/*
 * index - GET /: what this server is, its mode, and its endpoints, as text.
 */
#include "handlers.h"

#include "server/router.h"

#include "runtime/sbuf.h"

static hp_vtask_t index_page(void *self, hp_ctx_t *ctx)
{
    hp_sbuf_t b = {0};
    hp_sbuf_printf(&b,
                   "hotpath - the Task vs ValueTask decision, measured on a real server\n\n"
                   "mode: %s (this request: %s)\n\nendpoints:\n",
                   hp_mode_name(hp_ctx_worker_mode(ctx)), hp_mode_name(ctx->mode));
    const hp_router_t *router = hp_ctx_router(ctx);
    size_t n = router->n;
    const hp_route_t *routes = router->routes;
    for (size_t i = 0; i < n; i++) {
        if (routes[i].path[0] != '/') continue;
        hp_sbuf_printf(&b, "  %-10s %-12s%s  %s\n", routes[i].allow, routes[i].path,
                       routes[i].match == HP_ROUTE_PREFIX ? "*" : " ", routes[i].summary);
    }
    hp_sbuf_printf(&b, "\nswitch modes: set \"mode\" in the config file and send SIGHUP, "
                       "or start with --mode task\n");
    size_t len;
    char *text = hp_sbuf_take(&b, &len);
    hp_resp_take(ctx, 200, "text/plain; charset=utf-8", text, len);
    return hp_done(ctx);
}

const hp_handler_t hp_handler_index = {.name = "index", .invoke = index_page};
