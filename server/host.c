/*
 * host.c - a worker's request side (see host.h), and the accessors through
 * which the layers above reach it: ctx.h's for a request's layers,
 * service.h's for a service.
 *
 * The accessors are functions, not a struct the layers may read: the price
 * is a call where a load would do (a few instructions per request for the
 * Date, the request number and the route's figures), the gain is that
 * nothing above the server can come to depend on this layout.
 *
 * Services are opened in the app's order and closed together; each
 * service's close calls back when its last handle is gone, and the loop
 * ends after the last of them.
 */
#include "host.h"

#include "service.h"

#include "runtime/counter.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The per-loop read buffer: 64 KiB, the most one read of a loopback socket
 * hands over with default buffer sizes, so one read drains a full batch. */
#define RBUF_SIZE (64 * 1024)

static void update_date(hp_host_t *h)
{
    time_t now = time(NULL);
    if (now == h->date_sec) return;
    struct tm tm;
    gmtime_r(&now, &tm);
    /* The C locale's day and month names are HTTP's (RFC 9110 IMF-fixdate);
     * hotpath never calls setlocale. */
    h->date_len = strftime(h->date, sizeof(h->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    h->date_sec = now;
}

int hp_host_init(hp_host_t *h, const hp_app_t *app, unsigned index, hp_config_t *cfg, char *err,
                 size_t errlen)
{
    memset(h, 0, sizeof(*h));
    h->app = app;
    h->index = index;
    for (int i = 0; i < HP_LISTS; i++)
        hp_timer_list_init(&h->timers[i]);
    hp_link_init(&h->ready);
    hp_link_init(&h->all);
    int rc = hp_router_init(&h->router, app, err, errlen);
    if (rc) return rc;
    if (app->nservices > HP_SERVICES_MAX) {
        snprintf(err, errlen, "%zu services: at most %d", app->nservices, HP_SERVICES_MAX);
        return HP_ECONFIG;
    }
    hp_metrics_init(&h->metrics, app, &h->router);
    for (size_t i = 0; i < h->router.n; i++) {
        hp_handler_slot_t *slot = &h->handlers[i];
        slot->desc = h->router.routes[i].handler;
        for (int m = 0; m < HP_MODES; m++)
            slot->stats[m] = hp_metrics_layer(&h->metrics, slot->desc->name, (hp_mode_t)m);
    }
    h->gen = hp_gen_new(cfg, &h->metrics, NULL, err, errlen);
    if (h->gen == NULL) return HP_ECONFIG;
    h->rbuf_size = RBUF_SIZE;
    h->rbuf = hp_malloc(RBUF_SIZE);
    hp_wbuf_reserve(&h->out, 1); /* its initial size, now rather than mid-request */
    update_date(h);
    return 0;
}

void hp_host_close(hp_host_t *h)
{
    hp_gen_release(h->gen);
    h->gen = NULL;
    hp_ctx_pool_free(&h->ctx_pool);
    hp_free(h->rbuf);
    hp_free(h->out.data);
    h->rbuf = NULL;
    h->out.data = NULL;
}

/* --- services ---------------------------------------------------------- */

static int service_index(const hp_host_t *h, const hp_service_t *s)
{
    for (size_t i = 0; i < h->app->nservices; i++)
        if (h->app->services[i] == s) return (int)i;
    return -1;
}

int hp_host_open_services(hp_host_t *h, uv_loop_t *loop, char *err, size_t errlen)
{
    h->loop = loop;
    for (size_t i = 0; i < h->app->nservices; i++) {
        const hp_service_t *s = h->app->services[i];
        int rc = s->create(h, &h->services[i], err, errlen);
        if (rc) return rc;
    }
    for (size_t i = 0; i < h->router.n; i++) {
        const hp_service_t *s = h->handlers[i].desc->service;
        if (s == NULL) continue;
        int at = service_index(h, s);
        if (at < 0) {
            snprintf(err, errlen, "handler %s: its service %s is not the app's",
                     h->handlers[i].desc->name, s->name);
            return HP_ECONFIG;
        }
        h->handlers[i].self = h->services[at];
    }
    return 0;
}

static void service_closed(void *arg)
{
    void **slot = arg;
    *slot = NULL;
}

void hp_host_close_services(hp_host_t *h)
{
    if (h->services_closed) return;
    h->services_closed = true;
    __atomic_store_n(&h->nblocks, 0, __ATOMIC_RELEASE);
    for (size_t i = 0; i < h->app->nservices; i++) {
        if (h->services[i] == NULL) continue;
        for (size_t r = 0; r < h->router.n; r++)
            if (h->handlers[r].self == h->services[i]) h->handlers[r].self = NULL;
        h->app->services[i]->close(h->services[i], service_closed, &h->services[i]);
    }
}

/* --- reload and tick --------------------------------------------------- */

int hp_host_reload(hp_host_t *h, hp_config_t *cfg, char *err, size_t errlen)
{
    hp_gen_t *g = hp_gen_new(cfg, &h->metrics, h->gen, err, errlen);
    if (g == NULL) return HP_ECONFIG;
    int failed = 0;
    for (size_t i = 0; i < h->app->nservices; i++) {
        if (h->services[i] == NULL) continue;
        char why[200];
        int rc = h->app->services[i]->reconfigure(h->services[i], cfg, why, sizeof(why));
        if (rc && !failed) {
            failed = rc;
            snprintf(err, errlen, "%s: %s", h->app->services[i]->name, why);
        }
    }
    hp_gen_t *old = h->gen;
    h->gen = g;
    hp_gen_release(old);
    hp_counter_add(&h->metrics.reloads, 1);
    return failed;
}

void hp_host_tick(hp_host_t *h)
{
    update_date(h);
    for (unsigned i = 0; i < h->gen->nmw; i++)
        if (h->gen->mw[i].desc->tick) h->gen->mw[i].desc->tick(h->gen->mw[i].self);
    for (size_t i = 0; i < h->app->nservices; i++)
        if (h->services[i] && h->app->services[i]->tick) h->app->services[i]->tick(h->services[i]);
    hp_wbuf_trim(&h->out);
}

/* --- service.h --------------------------------------------------------- */

uv_loop_t *hp_host_loop(hp_host_t *h)
{
    return h->loop;
}

const hp_config_t *hp_host_config(hp_host_t *h)
{
    return h->gen->config;
}

uint64_t hp_host_now_ms(hp_host_t *h)
{
    return uv_now(h->loop);
}

hp_layer_stats_t *hp_host_layer(hp_host_t *h, const char *name, hp_mode_t mode)
{
    return hp_metrics_layer(&h->metrics, name, mode);
}

void hp_host_roll_window(hp_host_t *h, uint64_t window_ms)
{
    hp_metrics_roll_window(&h->metrics, &h->window, uv_now(h->loop), window_ms);
}

int hp_host_publish(hp_host_t *h, const hp_stats_table_t *table, const void *block)
{
    unsigned n = h->nblocks;
    if (n == HP_BLOCKS_MAX) return UV_ENOSPC;
    h->blocks[n].table = table;
    h->blocks[n].block = block;
    __atomic_store_n(&h->nblocks, n + 1, __ATOMIC_RELEASE);
    return 0;
}

/* --- ctx.h ------------------------------------------------------------- */

uint64_t hp_ctx_now_ms(const hp_ctx_t *ctx)
{
    return uv_now(ctx->host->loop);
}

hp_str_t hp_ctx_date(const hp_ctx_t *ctx)
{
    return (hp_str_t){ctx->host->date, ctx->host->date_len};
}

int64_t hp_ctx_date_s(const hp_ctx_t *ctx)
{
    return ctx->host->date_sec;
}

unsigned hp_ctx_worker_index(const hp_ctx_t *ctx)
{
    return ctx->host->index;
}

uint32_t hp_ctx_boot_id(const hp_ctx_t *ctx)
{
    return ctx->host->boot_id;
}

const hp_config_t *hp_ctx_config(const hp_ctx_t *ctx)
{
    return ctx->gen->config;
}

hp_mode_t hp_ctx_worker_mode(const hp_ctx_t *ctx)
{
    return ctx->host->gen->mode;
}

bool hp_ctx_healthy(hp_ctx_t *ctx)
{
    hp_host_t *h = ctx->host;
    if (!h->health_checked) __atomic_store_n(&h->health_checked, 1, __ATOMIC_RELAXED);
    return !h->leaving && !h->draining;
}

const hp_router_t *hp_ctx_router(const hp_ctx_t *ctx)
{
    return &ctx->host->router;
}
