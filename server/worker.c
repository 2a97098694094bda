/*
 * worker.c - one event loop, one thread (see worker.h).
 *
 * The loop's own handles: the listener, the tick timer and an async handle
 * the control thread wakes. The connections' (conn.c) and the services'
 * handles belong to them.
 *
 * The tick (HP_TICK_MS) does the once-a-second and timeout work: the
 * request side's (the Date, metric windows, middleware and service ticks:
 * hp_host_tick), connection deadlines (hp_conn_sweep), and the stop's two
 * deadlines: the grace's and the drain's.
 *
 * Stop: when a health check watches the server (/healthz was answered),
 * the worker first leaves: it serves on as usual, listener open, but
 * /healthz says 503, for limits.drain_health_ms - long enough for a
 * balancer to take it out of rotation, so nobody is sent to a closed port.
 * Then it drains: the listener closes, idle connections close, running
 * requests finish and are answered with Connection: close, up to
 * limits.drain_timeout_ms. Without a health check there is nobody to tell,
 * and the drain starts at once.
 *
 * Reload: the control thread parks a config in `pending` and wakes the
 * loop. The worker builds a new generation from it and swaps it in between
 * two callbacks, which is a request boundary: requests already running keep
 * the generation they hold a reference to, new ones take the new one.
 *
 * Start-up either opens everything or nothing: a handle, a service or the
 * listener that fails closes what was opened before it, and the loop runs
 * until their close callbacks have (hp_worker_open).
 */
#include "worker.h"

#include "conn.h"
#include "listener.h"

#include "runtime/alloc.h"
#include "runtime/counter.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <string.h>

static void close_handles(hp_worker_t *w);
static void start_drain(hp_worker_t *w);

/* --- the tick ---------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    hp_worker_t *w = t->data;
    hp_host_t *h = &w->host;
    uint64_t now = uv_now(&w->loop);
    hp_host_tick(h);
    hp_conn_sweep(h, now);
    if (h->leaving && !h->draining && now >= w->grace_deadline) start_drain(w);
    if (h->draining) {
        /* Connections that only linger (answered, shut down, waiting for
         * the peer's close) hold nothing worth waiting for at shutdown. */
        bool only_lingering = h->nconns == h->timers[HP_LIST_LINGER].n;
        if (h->nconns && (now >= w->drain_deadline || only_lingering)) hp_conn_close_all(h);
        if (h->nconns == 0) close_handles(w);
    }
}

/* --- reload and stop --------------------------------------------------- */

static void apply(hp_worker_t *w, hp_config_t *cfg)
{
    char err[256];
    int rc = hp_host_reload(&w->host, cfg, err, sizeof(err));
    /* The control thread validated this config whole; a failure here is a
     * resource problem, or a service that could not apply it. */
    if (rc) fprintf(stderr, "hotpath: worker %u: reload: %s\n", w->host.index, err);
}

static void close_listener(hp_worker_t *w)
{
    if (!w->listening) return;
    w->listening = false;
    uv_close((uv_handle_t *)&w->listener, NULL);
}

static void start_drain(hp_worker_t *w)
{
    hp_host_t *h = &w->host;
    if (h->draining) return;
    h->draining = true;
    w->drain_deadline = uv_now(&w->loop) + h->gen->limits.drain_timeout_ms;
    close_listener(w);
    hp_conn_drain_all(h);
    if (h->nconns == 0) close_handles(w);
}

static void on_wakeup(uv_async_t *a)
{
    hp_worker_t *w = a->data;
    hp_config_t *cfg = __atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL);
    if (cfg) {
        if (!w->host.draining) apply(w, cfg);
        hp_config_unref(cfg);
    }
    if (__atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE)) {
        unsigned grace = __atomic_load_n(&w->stop_grace_ms, __ATOMIC_RELAXED);
        if (grace == 0 || w->host.leaving) {
            start_drain(w);
        } else {
            w->host.leaving = true;
            w->grace_deadline = uv_now(&w->loop) + grace;
        }
    }
}

static void close_handles(hp_worker_t *w)
{
    if (w->closing) return;
    w->closing = true;
    uv_close((uv_handle_t *)&w->tick, NULL);
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    hp_conns_close(&w->host);
    close_listener(w);
    /* Cached values go; fills still running detach and free themselves when
     * the upstream pool fails them (handlers/origin.c). */
    hp_host_close_services(&w->host);
}

/* --- lifecycle --------------------------------------------------------- */

int hp_worker_init(hp_worker_t *w, const hp_app_t *app, unsigned index, hp_config_t *cfg, int port,
                   char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->listen_port = port;
    return hp_host_init(&w->host, app, index, cfg, err, errlen);
}

/* Open failed part way: close what is open and let the loop run their
 * close callbacks, so hp_worker_close finds a loop without handles. */
static int unwind(hp_worker_t *w, int rc, char *err, size_t errlen, const char *what)
{
    if (what) snprintf(err, errlen, "%s: %s", what, hp_strerror(rc));
    close_handles(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return rc;
}

int hp_worker_open(hp_worker_t *w, bool listen, char *err, size_t errlen)
{
    int rc = uv_loop_init(&w->loop);
    if (rc) {
        snprintf(err, errlen, "event loop: %s", hp_strerror(rc));
        return rc;
    }
    w->loop_open = true;
    w->loop.data = w;
    w->host.started_ms = uv_hrtime() / 1000000;
    /* Each handle is initialized before the next so that close_handles,
     * which closes all of them, never meets one that is not. */
    if ((rc = uv_timer_init(&w->loop, &w->tick))) {
        snprintf(err, errlen, "tick timer: %s", hp_strerror(rc));
        uv_loop_close(&w->loop);
        w->loop_open = false;
        return rc;
    }
    w->tick.data = w;
    if ((rc = uv_async_init(&w->loop, &w->wakeup, on_wakeup))) {
        uv_close((uv_handle_t *)&w->tick, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        snprintf(err, errlen, "wake-up handle: %s", hp_strerror(rc));
        return rc;
    }
    w->wakeup.data = w;
    if ((rc = hp_conns_open(&w->host, &w->loop))) {
        uv_close((uv_handle_t *)&w->tick, NULL);
        uv_close((uv_handle_t *)&w->wakeup, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        snprintf(err, errlen, "connection handles: %s", hp_strerror(rc));
        return rc;
    }
    if ((rc = uv_timer_start(&w->tick, on_tick, HP_TICK_MS, HP_TICK_MS)))
        return unwind(w, rc, err, errlen, "tick timer");
    if ((rc = hp_host_open_services(&w->host, &w->loop, err, errlen)))
        return unwind(w, rc, err, errlen, NULL);
    if (!listen) return 0;
    int opened = 0;
    rc = hp_listener_open(&w->loop, &w->listener, &w->host, w->host.gen->config->host,
                          w->listen_port, &opened);
    w->listening = opened != 0;
    if (rc) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", w->host.gen->config->host,
                 w->listen_port, hp_strerror(rc));
        return unwind(w, rc, err, errlen, NULL);
    }
    return 0;
}

void hp_worker_run(hp_worker_t *w)
{
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void thread_main(void *arg)
{
    hp_worker_t *w = arg;
    hp_alloc_bind_thread(&w->host.alloc);
    hp_runtime_bind_thread(&w->host.runtime);
    /* Whatever runs outside a request is charged here (conn.c's accounts). */
    hp_alloc_scope_set(&w->host.metrics.conn_alloc);
    hp_worker_run(w);
    hp_alloc_scope_set(NULL);
    hp_vtask_thread_exit();
}

int hp_worker_start(hp_worker_t *w)
{
    return uv_thread_create(&w->thread, thread_main, w);
}

void hp_worker_reload(hp_worker_t *w, hp_config_t *cfg)
{
    hp_config_t *old = __atomic_exchange_n(&w->pending, hp_config_ref(cfg), __ATOMIC_ACQ_REL);
    hp_config_unref(old); /* a config the worker had not picked up yet */
    uv_async_send(&w->wakeup);
}

void hp_worker_stop(hp_worker_t *w, unsigned grace_ms)
{
    __atomic_store_n(&w->stop_grace_ms, grace_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&w->stop_requested, 1, __ATOMIC_RELEASE);
    uv_async_send(&w->wakeup);
}

void hp_worker_stop_now(hp_worker_t *w)
{
    start_drain(w);
}

void hp_worker_close(hp_worker_t *w)
{
    /* The loop has ended: every handle is closed, every request finished.
     * What is left is plain memory. */
    hp_config_unref(__atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL));
    hp_host_close(&w->host);
    if (!w->loop_open) return;
    w->loop_open = false;
    int rc = uv_loop_close(&w->loop);
    if (rc) fprintf(stderr, "hotpath: worker %u: loop closed with live handles\n", w->host.index);
}

void hp_worker_join(hp_worker_t *w)
{
    uv_thread_join(&w->thread);
    hp_worker_close(w);
}
