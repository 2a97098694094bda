/*
 * handlers.c - the route table: every endpoint, in one place.
 *
 * Routes are matched in order by exact path or by prefix; a path that
 * matches with the wrong method is a 405 carrying the route's Allow. The
 * table is small and the common paths come first, so a linear scan of
 * memcmp's is what the lookup is (a trie would win only past dozens of
 * routes).
 */
#include "handlers.h"

#include "server/http.h"

#include <string.h>

#define GET_HEAD   (HP_METHOD_BIT(HP_GET) | HP_METHOD_BIT(HP_HEAD))
#define ANY_METHOD (~UINT64_C(0))

enum { R_NOT_FOUND = 12, R_METHOD_NOT_ALLOWED = 13 };

/* The path's length is counted by the compiler, not per request. */
#define ROUTE(path, ...)                                                                           \
    {                                                                                              \
        path, sizeof(path) - 1, __VA_ARGS__                                                        \
    }

static const hp_route_t routes[] = {
    ROUTE("/plaintext", HP_ROUTE_PLAIN_PATH, GET_HEAD, "GET, HEAD", false, &hp_handler_plaintext,
          "\"Hello, World!\" as text/plain (synchronous)", 0),
    ROUTE("/json", HP_ROUTE_PLAIN_PATH, GET_HEAD, "GET, HEAD", false, &hp_handler_json,
          "{\"message\":\"Hello, World!\"}, serialized per request (synchronous)", 1),
    ROUTE("/cache/", HP_ROUTE_PREFIX, GET_HEAD, "GET, HEAD", false, &hp_handler_cache,
          "a cached /items/{key} from the upstream: hit inline, miss async, misses coalesced", 2),
    ROUTE("/upstream/", HP_ROUTE_PREFIX, GET_HEAD, "GET, HEAD", false, &hp_handler_upstream,
          "proxied to the upstream (always asynchronous: a task)", 3),
    ROUTE("/echo", HP_ROUTE_PLAIN_PATH, ANY_METHOD, "*", true, &hp_handler_echo,
          "any method: the request body back (Content-Length or chunked)", 4),
    ROUTE("/", HP_ROUTE_PLAIN_PATH, GET_HEAD, "GET, HEAD", false, &hp_handler_index, "this index",
          5),
    ROUTE("/stats", HP_ROUTE_PLAIN_PATH, GET_HEAD, "GET, HEAD", false, &hp_handler_stats,
          "JSON counters: requests, allocations per request per mode, cache, upstream", 6),
    ROUTE("/metrics", HP_ROUTE_PLAIN_PATH, GET_HEAD, "GET, HEAD", false, &hp_handler_metrics,
          "the same in Prometheus text format", 7),
    ROUTE("/advice", HP_ROUTE_PLAIN_PATH, GET_HEAD, "GET, HEAD", false, &hp_handler_advice,
          "the Task vs ValueTask decision tree, per layer, from live figures", 8),
    ROUTE("/dashboard", HP_ROUTE_PLAIN_PATH, GET_HEAD, "GET, HEAD", false, &hp_handler_dashboard,
          "a live page of these figures, for a browser", 9),
    ROUTE("/dashboard/data", HP_ROUTE_PLAIN_PATH, GET_HEAD, "GET, HEAD", false,
          &hp_handler_dashboard_data, "the compact JSON the page polls once a second", 10),
    /* "OPTIONS *" (the parser lets asterisk-form through for OPTIONS only). */
    ROUTE("*", HP_ROUTE_PLAIN_PATH, HP_METHOD_BIT(HP_OPTIONS), "OPTIONS", false,
          &hp_handler_options, "the methods the server implements, in Allow", 11),
    /* The two answers for requests the routes above do not serve. */
    ROUTE("(not found)", HP_ROUTE_PLAIN_PATH, ANY_METHOD, "", false, &hp_handler_not_found, "404",
          R_NOT_FOUND),
    ROUTE("(method not allowed)", HP_ROUTE_PLAIN_PATH, ANY_METHOD, "", false,
          &hp_handler_method_not_allowed, "405", R_METHOD_NOT_ALLOWED),
};

#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))
#define N_SERVED 12 /* the routes a path can match */

static bool matches(const hp_route_t *r, hp_str_t path)
{
    size_t n = r->path_len;
    if (r->match == HP_ROUTE_PREFIX) return path.len >= n && memcmp(path.ptr, r->path, n) == 0;
    return path.len == n && memcmp(path.ptr, r->path, n) == 0;
}

const hp_route_t *hp_route_find(hp_str_t path, unsigned method)
{
    for (size_t i = 0; i < N_SERVED; i++) {
        const hp_route_t *r = &routes[i];
        if (!matches(r, path)) continue;
        return (r->methods & HP_METHOD_BIT(method)) ? r : &routes[R_METHOD_NOT_ALLOWED];
    }
    return &routes[R_NOT_FOUND];
}

uint64_t hp_route_methods(void)
{
    uint64_t m = 0;
    for (size_t i = 0; i < N_SERVED; i++)
        m |= routes[i].methods;
    return m;
}

const char *hp_route_allow(hp_str_t path)
{
    for (size_t i = 0; i < N_SERVED; i++)
        if (matches(&routes[i], path)) return routes[i].allow;
    return NULL;
}

const hp_route_t *hp_route_table(size_t *n)
{
    *n = N_ROUTES;
    return routes;
}
