/*
 * host.h - a worker's request side: everything its connections and requests
 * share on one loop - the read and output buffers, the request-context pool,
 * the connection lists and deadlines, the Date, the routes and this worker's
 * handler and service instances, the current configuration generation, and
 * the figures. The worker (worker.h) embeds one and adds what runs it: the
 * thread, the listener, the tick, and the control thread's hand-over.
 *
 * Why apart from the worker: the connection (conn.c) works on this and
 * nothing else, so conn.c includes this header and never the worker's, and
 * the worker includes conn.h - one direction, no circle.
 *
 * Layers above the server see none of it: a request's layers ask through
 * ctx.h's accessors, a service through service.h's, both implemented in
 * host.c.
 *
 * Threading: the worker's thread only, except the figures (single-writer
 * counters read by /stats on any worker: snapshot.c) and the published
 * statistics blocks.
 */
#ifndef HP_HOST_H
#define HP_HOST_H

#include "chain.h"
#include "config.h"
#include "ctx.h"
#include "layers.h"
#include "metrics.h"
#include "response.h"
#include "router.h"

#include "runtime/alloc.h"
#include "runtime/list.h"
#include "runtime/stats.h"
#include "runtime/task.h"
#include "runtime/timers.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Services per app (layers.h). */
#define HP_SERVICES_MAX 4

/* Connection timer lists (runtime/timers.h): each holds connections
 * waiting on one kind of deadline (conn.h says which, and when two apply at
 * once). HP_LIST_NONE, as an argument, takes a deadline away. */
enum {
    HP_LIST_IDLE = 0, /* keep-alive, between requests */
    HP_LIST_HEAD,     /* reading a request head */
    HP_LIST_BODY,     /* reading a body: per-connection data-rate deadline */
    HP_LIST_WRITE,    /* waiting for the peer to take our output */
    HP_LIST_LINGER,   /* closing: draining what the peer still sends */
    HP_LISTS,
    HP_LIST_NONE = 255
};

struct hp_host {
    uv_loop_t *loop; /* the worker's */
    const hp_app_t *app;
    unsigned index;      /* the worker's number, from 0 */
    uint32_t boot_id;    /* the server's (0 without one) */
    hp_gen_t *gen;       /* current generation */
    bool draining;       /* answers say Connection: close; idle connections close */
    uint64_t started_ms; /* uv_hrtime (ms) when the loop opened */

    /* Stopping, before the drain: /healthz answers 503 while everything
     * else is served as usual, so a balancer stops sending first (worker.c). */
    bool leaving;
    /* A /healthz was answered (atomic: the control thread reads it). */
    int health_checked;

    /* Input and output, one each per loop. */
    const char *parse_end; /* end of the input llhttp is parsing now */
    char *rbuf;            /* the read buffer */
    size_t rbuf_size;
    hp_wbuf_t out;
    hp_ctx_pool_t ctx_pool;

    /* Connections (conn.c). */
    hp_timer_list_t timers[HP_LISTS]; /* by HP_LIST_* */
    hp_link_t ready;                  /* connections to resume in the check phase */
    hp_link_t all;                    /* every open connection (for drain and stop) */
    unsigned nconns;
    uint64_t conn_seq;
    uint64_t req_seq;
    uv_check_t resume; /* resumes connections whose request finished */
    uv_idle_t kick;    /* active while some wait: the poll must not block */

    /* The Date header, formatted once a second by the tick. */
    char date[32]; /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    size_t date_len;
    int64_t date_sec;

    /* Routes, and this worker's handlers and services. */
    hp_router_t router;
    hp_handler_slot_t handlers[HP_ROUTES_MAX]; /* by route id */
    void *services[HP_SERVICES_MAX];           /* by index in app->services; NULL once closed */
    bool services_closed;

    /* Figures. */
    hp_metrics_t metrics;
    hp_metrics_window_t window;
    hp_alloc_stats_t alloc;
    hp_runtime_stats_t runtime;
    struct {
        const hp_stats_table_t *table;
        const void *block;
    } blocks[HP_BLOCKS_MAX];
    unsigned nblocks; /* published (atomic: snapshot.c reads it from other workers) */

    /* The whole server, for reports (snapshot.c): every worker's host, and
     * when the server started. Set by the server before any thread runs;
     * without one (tests), this host alone. */
    hp_host_t *const *peers;
    unsigned npeers;
    uint64_t server_started_ms;
};

/* Set up h for app on cfg (takes a reference to cfg): the routes, the
 * figures, the first generation, the buffers, the Date. Allocates; opens
 * nothing. HP_ECONFIG with a message when app's routes do not fit or a
 * middleware refuses the config. On failure nothing is left to free. */
int hp_host_init(hp_host_t *h, const hp_app_t *app, unsigned index, hp_config_t *cfg, char *err,
                 size_t errlen);

/* Free what hp_host_init made (after the loop has ended). */
void hp_host_close(hp_host_t *h);

/* Create app's services on loop, each once, and give every route's handler
 * its instance. On failure the error is returned with a message, and the
 * services made so far stay for hp_host_close_services. */
int hp_host_open_services(hp_host_t *h, uv_loop_t *loop, char *err, size_t errlen);

/* Close every open service (the worker is ending, or its start failed);
 * the loop ends once the last has called back. Published statistics are
 * withdrawn first. Idempotent. */
void hp_host_close_services(hp_host_t *h);

/* A new configuration: a new generation, and the services reconfigured.
 * HP_ECONFIG (or a service's code) with a message when the generation cannot
 * be built: the running one stays. A service that refuses is reported in
 * err but the new generation is taken (the others have applied it). */
int hp_host_reload(hp_host_t *h, hp_config_t *cfg, char *err, size_t errlen);

/* The tick's request-side work: the Date, middleware and service ticks,
 * the output buffer trimmed. */
void hp_host_tick(hp_host_t *h);

#endif
