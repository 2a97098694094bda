/*
 * worker.c - one event loop, one thread (see worker.h).
 *
 * The loop's own handles: the listener, a tick timer, an async handle the
 * control thread wakes, and a check handle that resumes connections whose
 * request completed asynchronously (conn.c explains why that waits for the
 * check phase). Everything else belongs to connections, the cache and the
 * upstream pool.
 *
 * The tick (TICK_MS) does the once-a-second and timeout work: it formats
 * the Date header when the second changes, expires connection deadlines,
 * lets middleware flush (the access log), and watches the drain deadline.
 * One timer for all connections instead of one each keeps an idle
 * connection at its struct (a uv_timer_t is 152 bytes); the price is that a
 * timeout fires up to TICK_MS late.
 *
 * Reload: the control thread parks a config in `pending` and wakes the
 * loop. The worker builds a new generation from it - middleware instances,
 * mode, limits - and swaps it in between two callbacks, which is a request
 * boundary: requests already running keep the generation they hold a
 * reference to, new ones take the new one.
 */
#include "worker.h"

#include "runtime/alloc.h"
#include "conn.h"
#include "runtime/counter.h"
#include "runtime/errors.h"
#include "listener.h"
#include "server.h"

#include "cache/cache.h"
#include "handlers/handlers.h"
#include "upstream/client.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TICK_MS 250
/* The per-loop read buffer: 64 KiB, the most one read of a loopback socket
 * hands over with default buffer sizes, so one read drains a full batch. */
#define RBUF_SIZE    (64 * 1024)
#define WBUF_INITIAL (128 * 1024)
/* Output beyond this is returned to the allocator after a big answer. */
#define WBUF_KEEP (256 * 1024)

char *hp_wbuf_reserve(hp_wbuf_t *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : WBUF_INITIAL;
        while (cap < b->len + n)
            cap *= 2;
        b->data = hp_realloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

static void wbuf_trim(hp_wbuf_t *b)
{
    if (b->len == 0 && b->cap > WBUF_KEEP) {
        b->data = hp_realloc(b->data, WBUF_INITIAL);
        b->cap = WBUF_INITIAL;
    }
}

/* --- generations ------------------------------------------------------- */

static hp_gen_t *gen_new(hp_worker_t *w, hp_config_t *cfg, char *err, size_t errlen)
{
    hp_gen_t *g = hp_calloc(1, sizeof(*g));
    g->refs = 1;
    g->config = hp_config_ref(cfg);
    g->mode = cfg->mode;
    /* A reload that keeps the mode keeps the time it took effect (the
     * dashboard shows it); the first generation's mode runs since start.
     * The clock is uptime's (uv_hrtime), so that the dashboard's difference
     * of the two is the same on every read. */
    if (w->gen)
        g->mode_since_ms = w->gen->mode == g->mode ? w->gen->mode_since_ms : uv_hrtime() / 1000000;
    g->limits = cfg->limits;
    for (size_t i = 0; i < cfg->n_middleware; i++) {
        const hp_config_mw_t *m = &cfg->middleware[i];
        if (!m->enabled) continue;
        const hp_middleware_t *desc = hp_middleware_find(m->name);
        char path[48];
        snprintf(path, sizeof(path), "middleware[%zu]", i);
        void *self = NULL;
        if (desc->create(m->section, path, &self, err, errlen) != 0) {
            hp_gen_release(g);
            return NULL;
        }
        g->mw[g->nmw].desc = desc;
        g->mw[g->nmw].self = self;
        for (int mode = 0; mode < 2; mode++)
            g->mw[g->nmw].stats[mode] = hp_metrics_layer(&w->metrics, desc->name, mode);
        g->nmw++;
    }
    return g;
}

hp_gen_t *hp_gen_acquire(hp_worker_t *w)
{
    w->gen->refs++;
    return w->gen;
}

void hp_gen_release(hp_gen_t *g)
{
    if (g == NULL || --g->refs) return;
    for (unsigned i = 0; i < g->nmw; i++)
        g->mw[i].desc->destroy(g->mw[i].self);
    hp_config_unref(g->config);
    hp_free(g);
}

/* --- options for the cache and the upstream pool ----------------------- */

static hp_cache_opts_t cache_opts(const hp_config_t *cfg)
{
    return (hp_cache_opts_t){
        .max_bytes = cfg->cache.max_bytes,
        .ttl_ms = cfg->cache.ttl_ms,
        .stale_ms = cfg->cache.stale_ms,
        .policy = strcmp(cfg->cache.policy, "lru") == 0 ? HP_CACHE_LRU : HP_CACHE_SIEVE,
    };
}

static hp_upstream_opts_t upstream_opts(const hp_config_t *cfg)
{
    return (hp_upstream_opts_t){
        .host = cfg->upstream.host,
        .port = cfg->upstream.port,
        .pool_size = cfg->upstream.pool_size,
        .connect_timeout_ms = cfg->upstream.connect_timeout_ms,
        .response_timeout_ms = cfg->upstream.response_timeout_ms,
        .idle_timeout_ms = cfg->upstream.idle_timeout_ms,
        .max_response_bytes = cfg->upstream.max_response_bytes,
    };
}

/* --- the tick ---------------------------------------------------------- */

static void update_date(hp_worker_t *w)
{
    time_t now = time(NULL);
    if (now == w->date_sec) return;
    struct tm tm;
    gmtime_r(&now, &tm);
    /* The C locale's day and month names are HTTP's (RFC 9110 IMF-fixdate);
     * hotpath never calls setlocale. */
    w->date_len = strftime(w->date, sizeof(w->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    w->date_sec = now;
}

static void close_handles(hp_worker_t *w);

static void on_tick(uv_timer_t *t)
{
    hp_worker_t *w = t->data;
    update_date(w);
    uint64_t now = uv_now(&w->loop);
    hp_conn_sweep(w, now);
    hp_metrics_roll_window(&w->metrics, &w->window, now,
                           (uint64_t)w->gen->config->advice.window_s * 1000);
    for (unsigned i = 0; i < w->gen->nmw; i++)
        if (w->gen->mw[i].desc->tick) w->gen->mw[i].desc->tick(w->gen->mw[i].self);
    wbuf_trim(&w->out);
    if (w->draining) {
        /* Connections that only linger (answered, shut down, waiting for
         * the peer's close) hold nothing worth waiting for at shutdown. */
        bool only_lingering = w->nconns == w->lists[HP_LIST_LINGER].n;
        if (w->nconns && (now >= w->drain_deadline || only_lingering)) hp_conn_close_all(w);
        if (w->nconns == 0) close_handles(w);
    }
}

static void on_check(uv_check_t *h)
{
    hp_worker_t *w = h->data;
    hp_conn_resume_ready(w);
    if (w->ready == NULL) uv_idle_stop(&w->kick);
}

static void on_kick(uv_idle_t *h)
{
    /* Nothing to do: being active is the point (the poll does not block,
     * so the check phase that follows it resumes the ready connections). */
}

void hp_worker_wake(hp_worker_t *w)
{
    uv_idle_start(&w->kick, on_kick);
}

/* --- reload and stop --------------------------------------------------- */

static void apply(hp_worker_t *w, hp_config_t *cfg)
{
    char err[256];
    hp_gen_t *g = gen_new(w, cfg, err, sizeof(err));
    if (g == NULL) {
        /* The control thread validated this config whole; a failure here
         * is a resource problem. The running generation stays. */
        fprintf(stderr, "hotpath: worker %u: reload refused: %s\n", w->index, err);
        return;
    }
    hp_cache_opts_t co = cache_opts(cfg);
    hp_upstream_opts_t uo = upstream_opts(cfg);
    hp_cache_reconfigure(w->cache, &co);
    hp_upstream_reconfigure(w->upstream, &uo);
    hp_gen_t *old = w->gen;
    w->gen = g;
    hp_gen_release(old);
    hp_counter_add(&w->metrics.reloads, 1);
}

static void close_listener(hp_worker_t *w)
{
    if (!w->listening) return;
    w->listening = false;
    uv_close((uv_handle_t *)&w->listener, NULL);
}

static void start_drain(hp_worker_t *w)
{
    if (w->draining) return;
    w->draining = true;
    w->drain_deadline = uv_now(&w->loop) + w->gen->limits.drain_timeout_ms;
    close_listener(w);
    hp_conn_drain_all(w);
    if (w->nconns == 0) close_handles(w);
}

static void on_wakeup(uv_async_t *a)
{
    hp_worker_t *w = a->data;
    hp_config_t *cfg = __atomic_exchange_n(&w->pending, NULL, __ATOMIC_ACQ_REL);
    if (cfg) {
        if (!w->draining) apply(w, cfg);
        hp_config_unref(cfg);
    }
    if (__atomic_load_n(&w->stop_requested, __ATOMIC_ACQUIRE)) start_drain(w);
}

static void upstream_closed(void *arg)
{
    hp_worker_t *w = arg;
    w->upstream = NULL;
}

static void close_handles(hp_worker_t *w)
{
    if (w->closing) return;
    w->closing = true;
    uv_close((uv_handle_t *)&w->tick, NULL);
    uv_close((uv_handle_t *)&w->wakeup, NULL);
    uv_close((uv_handle_t *)&w->resume, NULL);
    uv_close((uv_handle_t *)&w->kick, NULL);
    close_listener(w);
    /* Cached values go; fills still running detach and free themselves when
     * the upstream pool fails them below. */
    hp_cache_free(w->cache);
    w->cache = NULL;
    hp_upstream_close(w->upstream, upstream_closed, w);
}

/* --- lifecycle --------------------------------------------------------- */

int hp_worker_init(hp_worker_t *w, hp_server_t *server, unsigned index, hp_config_t *cfg, int port,
                   char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->server = server;
    w->index = index;
    hp_metrics_init(&w->metrics);
    size_t nroutes;
    const hp_route_t *routes = hp_route_table(&nroutes);
    for (size_t i = 0; i < nroutes; i++)
        for (int m = 0; m < 2; m++)
            w->handler_stats[routes[i].id][m] =
                hp_metrics_layer(&w->metrics, routes[i].handler->name, m);
    for (int m = 0; m < 2; m++) {
        w->cache_stats[m] = hp_metrics_layer(&w->metrics, "cache.get", m);
        w->upstream_stats[m] = hp_metrics_layer(&w->metrics, "upstream.request", m);
    }
    w->gen = gen_new(w, cfg, err, errlen);
    if (w->gen == NULL) return HP_ECONFIG;
    w->rbuf_size = RBUF_SIZE;
    w->rbuf = hp_malloc(RBUF_SIZE);
    hp_wbuf_reserve(&w->out, WBUF_INITIAL);
    update_date(w);
    w->listen_port = port;
    return 0;
}

static uint64_t loop_now(void *loop)
{
    return uv_now(loop);
}

int hp_worker_open(hp_worker_t *w, bool listen)
{
    int rc = uv_loop_init(&w->loop);
    if (rc) return rc;
    w->loop.data = w;
    w->started_ms = uv_hrtime() / 1000000;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    uv_check_init(&w->loop, &w->resume);
    w->resume.data = w;
    uv_check_start(&w->resume, on_check);
    uv_idle_init(&w->loop, &w->kick);
    w->kick.data = w;
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);

    hp_config_t *cfg = w->gen->config;
    hp_upstream_opts_t uo = upstream_opts(cfg);
    rc = hp_upstream_new(&w->loop, &uo, &w->upstream);
    if (rc) return rc;
    hp_cache_opts_t co = cache_opts(cfg);
    w->cache = hp_cache_new(&co, hp_cache_fill, w);
    hp_cache_set_clock(w->cache, loop_now, &w->loop);

    if (!listen) return 0;
    int opened = 0;
    rc = hp_listener_open(&w->loop, &w->listener, w, cfg->host, w->listen_port, &opened);
    w->listening = opened != 0;
    return rc;
}

void hp_worker_run(hp_worker_t *w)
{
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void thread_main(void *arg)
{
    hp_worker_t *w = arg;
    hp_alloc_bind_thread(&w->alloc);
    hp_runtime_bind_thread(&w->runtime);
    /* Whatever runs outside a request is charged here (conn.c's accounts). */
    hp_alloc_scope_set(&w->metrics.conn_alloc);
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

void hp_worker_stop(hp_worker_t *w)
{
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
    hp_gen_release(w->gen);
    w->gen = NULL;
    hp_ctx_pool_free(&w->ctx_pool);
    hp_free(w->rbuf);
    hp_free(w->out.data);
    w->rbuf = NULL;
    w->out.data = NULL;
    int rc = uv_loop_close(&w->loop);
    if (rc) fprintf(stderr, "hotpath: worker %u: loop closed with live handles\n", w->index);
}

void hp_worker_join(hp_worker_t *w)
{
    uv_thread_join(&w->thread);
    hp_worker_close(w);
}
