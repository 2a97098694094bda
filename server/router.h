/*
 * router.h - from a request's path and method to its route: the app's
 * table (layers.h), plus the two answers outside it, 404 and 405.
 *
 * The router keeps its own copy of the table so that every route, the two
 * outside it included, has an id that is its index: route figures are
 * arrays by id (metrics.h). Built once per worker from the app it was
 * handed; read-only afterwards.
 */
#ifndef HP_ROUTER_H
#define HP_ROUTER_H

#include "http.h"
#include "layers.h"

#include "runtime/bytes.h"

#include <stddef.h>
#include <stdint.h>

/* Routes per worker, the two outside the table included (metrics.h sizes
 * its arrays by this). */
#define HP_ROUTES_MAX 16

typedef struct hp_router {
    hp_route_t routes[HP_ROUTES_MAX]; /* the table's, then not found, then method not allowed */
    size_t nserved;                   /* the table's: the routes a path can match */
    size_t n;                         /* nserved + 2 */
    uint64_t methods;                 /* every method some route serves */
} hp_router_t;

/* Copy app's table. Returns 0, or HP_ECONFIG with a message when it does
 * not fit (more than HP_ROUTES_MAX - 2 routes) or a route has no handler. */
int hp_router_init(hp_router_t *r, const hp_app_t *app, char *err, size_t errlen);

/* Whether path is r's (exact, or under its prefix). */
static inline bool hp_route_matches(const hp_route_t *r, hp_str_t path)
{
    size_t n = r->path_len;
    if (r->match == HP_ROUTE_PREFIX) return path.len >= n && hp_bytes_eq(path.ptr, r->path, n);
    return path.len == n && hp_bytes_eq(path.ptr, r->path, n);
}

/* Always a route: the first whose path matches and that serves method, the
 * 405 route when a path matches but none serves method, the 404 route when
 * none matches. Inline: the parser asks once per request. */
static inline const hp_route_t *hp_router_find(const hp_router_t *r, hp_str_t path, unsigned method)
{
    for (size_t i = 0; i < r->nserved; i++) {
        const hp_route_t *route = &r->routes[i];
        if (!hp_route_matches(route, path)) continue;
        return (route->methods & HP_METHOD_BIT(method)) ? route : &r->routes[r->nserved + 1];
    }
    return &r->routes[r->nserved];
}

/* The Allow header for a path (for 405 answers); NULL when no route has it. */
const char *hp_router_allow(const hp_router_t *r, hp_str_t path);

#endif
