/*
 * app.c - the wiring: every endpoint, every middleware and every service of
 * hotpath in one place, handed to the server at start-up (layers.h says
 * what each is). Nothing here runs per request; the server copies the
 * route table into its router and looks nothing up by name after start-up.
 *
 * Routes are matched in table order (router.c), so the common paths come
 * first. Each entry sits at its own index, which is its id in the figures;
 * the count is derived from the table. The two answers for what the table
 * does not serve - 404 and 405 - are outside it: the router gives them the
 * next two ids.
 *
 * The middleware list is also the default chain's order: server_headers
 * outermost, so its Date reflects the moment the answer is complete, then
 * request_id, metrics (so its latency includes everything inside it), and
 * access_log, present but off, so turning it on is one word in the file.
 *
 * Two services: origin (handlers/origin.c), the cache handler's cache and
 * upstream client, which /upstream shares so both go through one pool; and
 * the advisor's, which cuts each worker's layer figures into windows.
 * The configuration sections are those of the modules the services and
 * handlers run: the cache's, its L2 client's, the upstream client's, the
 * advisor's.
 */
#include "app.h"

#include "cache/cache.h"
#include "cache/l2.h"
#include "handlers/advice.h"
#include "handlers/handlers.h"
#include "middleware/middleware.h"
#include "upstream/client.h"

#define GET_HEAD   (HP_METHOD_BIT(HP_GET) | HP_METHOD_BIT(HP_HEAD))
#define ANY_METHOD (~UINT64_C(0))

/* The path's length is counted by the compiler, not per request. */
#define PATH(p) .path = (p), .path_len = sizeof(p) - 1

enum {
    R_PLAINTEXT,
    R_JSON,
    R_CACHE,
    R_UPSTREAM,
    R_ECHO,
    R_INDEX,
    R_STATS,
    R_METRICS,
    R_ADVICE,
    R_DASHBOARD,
    R_DASHBOARD_DATA,
    R_HEALTHZ,
    R_OPTIONS,
};

static const hp_route_t routes[] = {
    [R_PLAINTEXT] = {PATH("/plaintext"), .methods = GET_HEAD, .allow = "GET, HEAD",
                     .handler = &hp_handler_plaintext,
                     .summary = "\"Hello, World!\" as text/plain (synchronous)"},
    [R_JSON] = {PATH("/json"), .methods = GET_HEAD, .allow = "GET, HEAD",
                .handler = &hp_handler_json,
                .summary = "{\"message\":\"Hello, World!\"}, serialized per request (synchronous)"},
    [R_CACHE] = {PATH("/cache/"), .match = HP_ROUTE_PREFIX, .methods = GET_HEAD,
                 .allow = "GET, HEAD", .handler = &hp_handler_cache,
                 .summary = "a cached /items/{key} from the upstream: hit inline, miss async, "
                            "misses coalesced"},
    [R_UPSTREAM] = {PATH("/upstream/"), .match = HP_ROUTE_PREFIX, .methods = GET_HEAD,
                    .allow = "GET, HEAD", .handler = &hp_handler_upstream,
                    .summary = "proxied to the upstream (always asynchronous: a task)"},
    [R_ECHO] = {PATH("/echo"), .methods = ANY_METHOD, .allow = "*", .reads_body = true,
                .handler = &hp_handler_echo,
                .summary = "any method: the request body back (Content-Length or chunked)"},
    [R_INDEX] = {PATH("/"), .methods = GET_HEAD, .allow = "GET, HEAD", .handler = &hp_handler_index,
                 .summary = "this index"},
    [R_STATS] = {PATH("/stats"), .methods = GET_HEAD, .allow = "GET, HEAD",
                 .handler = &hp_handler_stats,
                 .summary = "JSON counters: requests, allocations per request per mode, cache, "
                            "upstream"},
    [R_METRICS] = {PATH("/metrics"), .methods = GET_HEAD, .allow = "GET, HEAD",
                   .handler = &hp_handler_metrics, .summary = "the same in Prometheus text format"},
    [R_ADVICE] = {PATH("/advice"), .methods = GET_HEAD, .allow = "GET, HEAD",
                  .handler = &hp_handler_advice,
                  .summary = "the Task vs ValueTask decision tree, per layer, from live figures"},
    [R_DASHBOARD] = {PATH("/dashboard"), .methods = GET_HEAD, .allow = "GET, HEAD",
                     .handler = &hp_handler_dashboard,
                     .summary = "a live page of these figures, for a browser"},
    [R_DASHBOARD_DATA] = {PATH("/dashboard/data"), .methods = GET_HEAD, .allow = "GET, HEAD",
                          .handler = &hp_handler_dashboard_data,
                          .summary = "the compact JSON the page polls once a second"},
    [R_HEALTHZ] = {PATH("/healthz"), .methods = GET_HEAD, .allow = "GET, HEAD",
                   .handler = &hp_handler_healthz,
                   .summary = "200 ok; 503 once stopping, before the drain (for a balancer)"},
    /* "OPTIONS *" (the parser lets asterisk-form through for OPTIONS only). */
    [R_OPTIONS] = {PATH("*"), .methods = HP_METHOD_BIT(HP_OPTIONS), .allow = "OPTIONS",
                   .handler = &hp_handler_options,
                   .summary = "the methods the server implements, in Allow"},
};

static const hp_middleware_t *const middleware[] = {
    &hp_mw_server_headers,
    &hp_mw_request_id,
    &hp_mw_metrics,
    &hp_mw_access_log,
};

static const hp_service_t *const services[] = {
    &hp_service_origin,
    &hp_service_advisor,
};

/* The configuration sections beside the server's own (listen, workers,
 * mode, limits, middleware): each module's table of its options. */
static const hp_options_t *const sections[] = {
    &hp_cache_options,
    &hp_l2_options,
    &hp_upstream_options,
    &hp_advice_options,
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const hp_app_t hp_app = {
    .routes = routes,
    .nroutes = COUNT(routes),
    .not_found = &hp_handler_not_found,
    .method_not_allowed = &hp_handler_method_not_allowed,
    .middleware = middleware,
    .nmiddleware = COUNT(middleware),
    .default_chain = "[{\"name\":\"server_headers\"},{\"name\":\"request_id\"},"
                     "{\"name\":\"metrics\"},{\"name\":\"access_log\",\"enabled\":false}]",
    .services = services,
    .nservices = COUNT(services),
    .sections = sections,
    .nsections = COUNT(sections),
};
