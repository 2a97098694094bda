/*
 * worker.h - one event loop on one thread, serving requests: its own
 * listening socket (SO_REUSEPORT), its request side (host.h: connections,
 * buffers, contexts, handlers and services, figures), its tick, and the
 * hand-over from the control thread. Shared-nothing: nothing on the request
 * path is touched by another thread, so nothing on it takes a lock.
 *
 * The control thread (server.c) talks to a worker only through
 * hp_worker_reload and hp_worker_stop, which hand over a value and wake the
 * loop with uv_async_send; the worker acts on it at a request boundary.
 *
 * Only the server, tests and the fuzzer include this header: connections
 * work on the host alone, and the layers above see neither.
 */
#ifndef HP_WORKER_H
#define HP_WORKER_H

#include "config.h"
#include "host.h"
#include "layers.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef struct hp_worker {
    hp_host_t host; /* the request side; host.loop points at loop */
    uv_loop_t loop;
    bool loop_open;
    uv_thread_t thread;
    int listen_port;
    uv_tcp_t listener;
    bool listening; /* the listener is open */
    uv_timer_t tick;
    uv_async_t wakeup;
    hp_config_t *pending;    /* next config, handed over by the control thread */
    int stop_requested;      /* set by the control thread */
    unsigned stop_grace_ms;  /* ... with the time /healthz says 503 before the drain */
    uint64_t grace_deadline; /* loop time when a leaving worker starts its drain */
    uint64_t drain_deadline;
    bool closing; /* handles are being closed; the loop is ending */
} hp_worker_t;

/* Set up a worker for app (on the control thread; nothing runs yet): its
 * host on cfg. port is the port the listener binds, already resolved when
 * the config said 0. On failure nothing is left to free. */
int hp_worker_init(hp_worker_t *w, const hp_app_t *app, unsigned index, hp_config_t *cfg, int port,
                   char *err, size_t errlen);

/* Open the loop, its handles and the app's services (listen: bind the
 * listener too). On failure everything it opened is closed again, with a
 * message in err; hp_worker_close still frees the rest. */
int hp_worker_open(hp_worker_t *w, bool listen, char *err, size_t errlen);

/* Start its thread, which runs the loop until the worker has drained. */
int hp_worker_start(hp_worker_t *w);

/* Any thread: switch to cfg at the next request boundary (takes a ref). */
void hp_worker_reload(hp_worker_t *w, hp_config_t *cfg);

/* Any thread: stop accepting, drain, close, end the thread. With grace_ms,
 * first serve on as usual for that long, answering /healthz with 503. */
void hp_worker_stop(hp_worker_t *w, unsigned grace_ms);

/* Control thread: wait for the thread, then free what the worker holds. */
void hp_worker_join(hp_worker_t *w);

/* Free what a worker holds once its loop has ended (hp_worker_join does
 * this; threadless users call it after hp_worker_run returns). */
void hp_worker_close(hp_worker_t *w);

/* --- worker thread only ------------------------------------------------ */

/* Run the loop on the calling thread until it ends. Tests and the fuzzer
 * drive a worker without a thread through this. */
void hp_worker_run(hp_worker_t *w);

/* Start draining now, from the worker's own thread. */
void hp_worker_stop_now(hp_worker_t *w);

#endif
