/*
 * router.c - matching paths to routes (see router.h).
 *
 * Routes are matched in order by exact path or by prefix; a path that
 * matches with the wrong method is a 405 carrying the route's Allow. The
 * table is small and the common paths come first, so a linear scan of
 * memcmp's is what the lookup is (a trie would win only past dozens of
 * routes).
 */
#include "router.h"

#include "runtime/bytes.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <string.h>

#define ANY_METHOD (~UINT64_C(0))

int hp_router_init(hp_router_t *r, const hp_app_t *app, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (app->nroutes > HP_ROUTES_MAX - 2) {
        snprintf(err, errlen, "%zu routes: at most %d fit", app->nroutes, HP_ROUTES_MAX - 2);
        return HP_ECONFIG;
    }
    for (size_t i = 0; i < app->nroutes; i++) {
        if (app->routes[i].handler == NULL || app->routes[i].path == NULL) {
            snprintf(err, errlen, "route %zu: no path or no handler", i);
            return HP_ECONFIG;
        }
        r->routes[i] = app->routes[i];
        r->routes[i].id = (unsigned)i;
        r->methods |= app->routes[i].methods;
    }
    r->nserved = app->nroutes;
    r->routes[r->nserved] = (hp_route_t){.path = "(not found)",
                                         .path_len = 11,
                                         .methods = ANY_METHOD,
                                         .allow = "",
                                         .handler = app->not_found,
                                         .summary = "404",
                                         .id = (unsigned)r->nserved};
    r->routes[r->nserved + 1] = (hp_route_t){.path = "(method not allowed)",
                                             .path_len = 20,
                                             .methods = ANY_METHOD,
                                             .allow = "",
                                             .handler = app->method_not_allowed,
                                             .summary = "405",
                                             .id = (unsigned)r->nserved + 1};
    r->n = r->nserved + 2;
    return 0;
}

const char *hp_router_allow(const hp_router_t *r, hp_str_t path)
{
    for (size_t i = 0; i < r->nserved; i++)
        if (hp_route_matches(&r->routes[i], path)) return r->routes[i].allow;
    return NULL;
}
