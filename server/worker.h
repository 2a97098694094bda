/*
 * worker.h - one event loop on one thread, with everything a request needs:
 * its own listening socket (SO_REUSEPORT), connections, request-context pool,
 * read and write buffers, cache, upstream pool, metrics and allocation
 * counters. Shared-nothing: nothing on the request path is touched by
 * another thread, so nothing on it takes a lock.
 *
 * The control thread (server.c) talks to a worker only through
 * hp_worker_reload and hp_worker_stop, which hand over a value and wake the
 * loop with uv_async_send; the worker acts on it at a request boundary.
 *
 * A configuration *generation* is what a worker builds from a config: the
 * middleware instances in order, the mode, the limits. A request holds the
 * generation it started under until it ends, so a reload never changes a
 * request in flight (hotpath's answer to "in-flight requests finish under
 * the configuration they started with").
 */
#ifndef HP_WORKER_H
#define HP_WORKER_H

#include "chain.h"
#include "config.h"
#include "ctx.h"
#include "metrics.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct hp_server hp_server_t;
typedef struct hp_cache hp_cache_t;
typedef struct hp_upstream hp_upstream_t;

struct hp_gen {
    uint32_t refs;       /* the worker's (while current) + one per request */
    hp_config_t *config; /* owned reference */
    hp_mode_t mode;
    uint64_t mode_since_ms; /* uv_hrtime (ms) when `mode` took effect; 0: since start */
    unsigned nmw;
    struct {
        const hp_middleware_t *desc;
        void *self;
        hp_layer_stats_t *stats[2]; /* by mode */
    } mw[HP_CHAIN_MAX];
    hp_limits_t limits;
};

/* Connection timer lists: each holds connections waiting on one kind of
 * deadline (conn.h says which, and when two apply at once). All but BODY
 * have one timeout for every member, so appending keeps them sorted and the
 * sweep stops at the first live deadline. */
enum {
    HP_LIST_IDLE = 0, /* keep-alive, between requests */
    HP_LIST_HEAD,     /* reading a request head */
    HP_LIST_BODY,     /* reading a body: per-connection data-rate deadline */
    HP_LIST_WRITE,    /* waiting for the peer to take our output */
    HP_LIST_LINGER,   /* closing: draining what the peer still sends */
    HP_LISTS,
    HP_LIST_NONE = 255
};

typedef struct hp_conn_timer hp_conn_timer_t; /* conn.h */

typedef struct {
    hp_conn_timer_t *head, *tail;
    size_t n;
} hp_conn_list_t;

/* The per-worker output buffer: every response of a read batch goes here
 * and leaves in one write. */
typedef struct {
    char *data;
    size_t len, cap;
} hp_wbuf_t;

struct hp_worker {
    hp_server_t *server;
    unsigned index;
    int listen_port;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    bool listening; /* the listener is open */
    uv_timer_t tick;
    uv_async_t wakeup;
    uv_check_t resume; /* resumes connections whose request finished */
    uv_idle_t kick;    /* active while some wait: the poll must not block */

    hp_gen_t *gen;        /* current generation */
    hp_config_t *pending; /* next config, handed over by the control thread */
    int stop_requested;   /* set by the control thread */
    bool draining;
    uint64_t drain_deadline;
    bool closing; /* handles are being closed; the loop is ending */

    const char *parse_end; /* end of the input llhttp is parsing now */
    char *rbuf;            /* the per-loop read buffer */
    size_t rbuf_size;
    hp_wbuf_t out;
    hp_ctx_pool_t ctx_pool;
    hp_conn_list_t lists[HP_LISTS];
    hp_conn_t *ready; /* connections to resume in the check phase */
    hp_conn_t *all;   /* every open connection (for drain and stop) */
    unsigned nconns;
    uint64_t conn_seq;
    uint64_t req_seq;
    uint64_t started_ms; /* uv_hrtime (ms) when the loop opened */

    hp_cache_t *cache;
    hp_upstream_t *upstream;

    char date[32]; /* "Sun, 06 Nov 1994 08:49:37 GMT", once a second */
    size_t date_len;
    int64_t date_sec;

    hp_metrics_t metrics;
    hp_metrics_window_t window;
    hp_alloc_stats_t alloc;
    hp_runtime_stats_t runtime;
    hp_layer_stats_t *handler_stats[HP_ROUTES_MAX][2];
    hp_layer_stats_t *cache_stats[2];
    hp_layer_stats_t *upstream_stats[2];
};

/* Set up a worker (on the control thread; nothing runs yet). port is the
 * port the listener binds, already resolved when the config said 0. */
int hp_worker_init(hp_worker_t *w, hp_server_t *server, unsigned index, hp_config_t *cfg, int port,
                   char *err, size_t errlen);

/* Start its thread. */
int hp_worker_start(hp_worker_t *w);

/* Any thread: switch to cfg at the next request boundary (takes a ref). */
void hp_worker_reload(hp_worker_t *w, hp_config_t *cfg);

/* Any thread: stop accepting, drain, close, end the thread. */
void hp_worker_stop(hp_worker_t *w);

/* Control thread: wait for the thread, then free what the worker holds. */
void hp_worker_join(hp_worker_t *w);

/* Free what a worker holds once its loop has ended (hp_worker_join does
 * this; threadless users call it after hp_worker_run returns). */
void hp_worker_close(hp_worker_t *w);

/* --- worker thread only ------------------------------------------------ */

/* The current generation, with a reference for the caller. */
hp_gen_t *hp_gen_acquire(hp_worker_t *w);
void hp_gen_release(hp_gen_t *gen);

/* Open the loop and its handles (listen: bind the listener too), and run
 * it on the calling thread until it ends. Tests and the fuzzer drive a
 * worker without a thread through these. */
int hp_worker_open(hp_worker_t *w, bool listen);
void hp_worker_run(hp_worker_t *w);

/* Make the loop's next poll return at once, so connections put on the
 * ready list are resumed in this iteration's check phase. */
void hp_worker_wake(hp_worker_t *w);

/* Start draining now, from the worker's own thread. */
void hp_worker_stop_now(hp_worker_t *w);

/* Ensure room for n more bytes in the output buffer; returns the write
 * position. */
char *hp_wbuf_reserve(hp_wbuf_t *b, size_t n);

#endif
