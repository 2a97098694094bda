/*
 * layers.h - what the layers above the server plug into it: middleware,
 * handlers, the per-worker services handlers share, the routes, and the app
 * that lists them all and hands them to the server at start-up (app/app.c).
 *
 * Descriptors only: static, immutable, shared by every worker. The server
 * knows these shapes and nothing of what fills them; it finds a route's
 * handler, a handler's service and a configuration's middleware through the
 * app it was given, never by name in a folder above it.
 *
 * Who calls what: the control thread calls middleware create/destroy to
 * check a configuration; each worker calls them again for its own chain
 * (chain.h's generations), creates and closes the services on its own loop
 * (service.h), and runs invoke for every request.
 */
#ifndef HP_LAYERS_H
#define HP_LAYERS_H

#include "runtime/task.h"
#include "runtime/vtask.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The worker's tick: the period of its once-a-second and deadline work
 * (the Date header, connection timeouts, middleware and service ticks,
 * metric windows). Deadlines fire up to this late; one timer per worker
 * instead of one per connection keeps an idle connection at its struct. */
#define HP_TICK_MS 250

/* Configuration sections an app may add to the server's own. */
#define HP_SECTIONS_MAX 8

typedef struct hp_options hp_options_t;
typedef struct hp_ctx hp_ctx_t;
typedef struct hp_config hp_config_t;
typedef struct hp_host hp_host_t; /* a worker, as a service sees it (service.h) */

/* A middleware: one file each, one exported descriptor (STYLE.md). */
typedef struct hp_middleware {
    const char *name;
    const char *summary;
    /* The entry's own options beside "name" and "enabled", or NULL for
     * none: a table (runtime/options.h) whose section is "" - where an
     * entry sits is the configuration's to say ("middleware[3]"). The
     * configuration reads each entry through it, refusing unknown keys and
     * bad values by path, and --help prints it as "<name>.<key>". */
    const hp_options_t *options;
    /* An instance for one entry: options is the struct the table filled
     * (valid while the configuration is; NULL without a table), path is
     * "middleware[i]" for messages. What no table can check (a file that
     * will not open) is refused here: a message naming the key, and
     * HP_ECONFIG. Must not touch the event loop: the control thread calls
     * it to validate. self is owned by the caller (destroy frees it). */
    int (*create)(const void *options, const char *path, void **self, char *err, size_t errlen);
    void (*destroy)(void *self);
    hp_vtask_t (*invoke)(void *self, hp_ctx_t *ctx);
    /* Optional: called on every worker tick (HP_TICK_MS), e.g. to flush. */
    void (*tick)(void *self);
} hp_middleware_t;

/* A layer a service runs and records as the chain records its own (the
 * cache's get: "cache.get"), and its kind in /advice ("cache"). */
typedef struct {
    const char *name;
    const char *kind;
} hp_service_layer_t;

/* Per-worker state that handlers work with: the cache handler's cache and
 * upstream client, say (handlers/origin.c). Made on each worker when its
 * loop opens, ticked with it, reconfigured when a new configuration arrives
 * (SIGHUP), closed when the worker ends; the handlers that name it get this
 * worker's instance as their self. What it may ask of the worker is in
 * service.h. */
typedef struct hp_service {
    const char *name;
    const hp_service_layer_t *layers; /* ended by an entry without a name; may be NULL */
    /* Make this worker's instance, on its loop (not running yet). On
     * failure write a message and return a negative code (HP_ECONFIG for a
     * configuration it cannot use), having freed what it made. */
    int (*create)(hp_host_t *host, void **self, char *err, size_t errlen);
    /* The worker is ending, every request finished: give everything back,
     * then call done(arg) - at once or from a later loop turn (a libuv
     * handle closes in a callback). */
    void (*close)(void *self, hp_cont_cb done, void *arg);
    /* The configuration a new generation runs under (the control thread
     * checked it whole). 0, or a negative code with a message: the running
     * settings then stay. */
    int (*reconfigure)(void *self, const hp_config_t *cfg, char *err, size_t errlen);
    /* Optional: every worker tick (HP_TICK_MS). */
    void (*tick)(void *self);
} hp_service_t;

/* A handler: the bottom of the chain for the routes that name it. */
typedef struct hp_handler {
    const char *name; /* the layer's name in /stats and /advice */
    /* Exactly one of the two: a valuetask-returning handler, or one that
     * returns a heap task (the upstream-calling ones). Either fills
     * ctx->resp before its (value)task completes. self is this worker's
     * instance of `service` (NULL without one). */
    hp_vtask_t (*invoke)(void *self, hp_ctx_t *ctx);
    hp_task_t *(*invoke_task)(void *self, hp_ctx_t *ctx);
    /* The per-worker state it works with (service.h), or NULL. Handlers
     * naming the same service share one instance per worker. */
    const hp_service_t *service;
} hp_handler_t;

typedef enum {
    HP_ROUTE_PLAIN_PATH = 0, /* exact path */
    HP_ROUTE_PREFIX = 1,     /* path prefix; the rest is req.param */
} hp_route_match_t;

typedef struct hp_route {
    const char *path;
    size_t path_len; /* strlen(path), so matching never measures it */
    hp_route_match_t match;
    uint64_t methods;  /* HP_METHOD_BIT set; HEAD follows GET */
    const char *allow; /* the Allow header for 405, e.g. "GET, HEAD" */
    bool reads_body;   /* else the body is drained unread */
    const hp_handler_t *handler;
    const char *summary; /* one line for the index page */
    unsigned id;         /* its index among the router's routes: set by the router */
} hp_route_t;

/* What the app hands the server (hp_server_start, hp_worker_init). */
struct hp_app {
    /* Matched in order by hp_router_find; at most HP_ROUTES_MAX - 2. */
    const hp_route_t *routes;
    size_t nroutes;
    /* The answers for a path no route has, and for a route's path with a
     * method it does not serve: routed like the others (their own ids, after
     * the table's), so they get the chain and a line in the metrics. */
    const hp_handler_t *not_found;
    const hp_handler_t *method_not_allowed;
    /* Every middleware a configuration may name, in the default chain's
     * order; default_chain is that chain as the configuration's JSON. */
    const hp_middleware_t *const *middleware;
    size_t nmiddleware;
    const char *default_chain;
    /* Every service a handler names, each once; at most HP_SERVICES_MAX. */
    const hp_service_t *const *services;
    size_t nservices;
    /* The configuration sections of the layers above the server (option
     * tables: runtime/options.h), at most HP_SECTIONS_MAX. */
    const hp_options_t *const *sections;
    size_t nsections;
};
typedef struct hp_app hp_app_t;

/* The middleware of app named name, or NULL. */
const hp_middleware_t *hp_app_middleware(const hp_app_t *app, const char *name);

/* "server_headers, request_id, ..." for messages and --help: written into
 * buf (len bytes), which is returned. */
const char *hp_app_middleware_names(const hp_app_t *app, char *buf, size_t len);

#endif
