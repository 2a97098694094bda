/*
 * test_worker.c - a start-up that fails half-way closes what it opened
 * (worker.c's open, server.c's start): the real app, plus two services of
 * the test's - one that holds a libuv timer and counts its creates and
 * closes, one that refuses to be made on its n-th create. Every service
 * made before the refusal is closed again, every handle the worker and the
 * origin opened is gone from the loop, and no block stays allocated.
 */
#include "app/app.h"
#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "server/config.h"
#include "server/host.h"
#include "server/server.h"
#include "server/service.h"
#include "server/worker.h"
#include "support/counters.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

/* --- a service that holds a handle ------------------------------------- */

static int timer_creates, timer_closes;

typedef struct {
    uv_timer_t timer;
    hp_cont_cb done;
    void *arg;
} holder_t;

static int holder_create(hp_host_t *host, void **self, char *err, size_t errlen)
{
    holder_t *h = hp_calloc(1, sizeof(*h));
    int rc = uv_timer_init(hp_host_loop(host), &h->timer);
    if (rc) {
        snprintf(err, errlen, "holder: %s", hp_strerror(rc));
        hp_free(h);
        return rc;
    }
    h->timer.data = h;
    timer_creates++;
    *self = h;
    return 0;
}

static void holder_closed(uv_handle_t *handle)
{
    holder_t *h = handle->data;
    timer_closes++;
    h->done(h->arg);
    hp_free(h);
}

static void holder_close(void *self, hp_cont_cb done, void *arg)
{
    holder_t *h = self;
    h->done = done;
    h->arg = arg;
    uv_close((uv_handle_t *)&h->timer, holder_closed);
}

static int no_change(void *self, const hp_config_t *cfg, char *err, size_t errlen)
{
    return 0;
}

static const hp_service_t holder = {
    .name = "holder",
    .create = holder_create,
    .close = holder_close,
    .reconfigure = no_change,
};

/* --- a service that refuses its n-th create ------------------------------ */

static int refuse_at, refusal_calls;

static int refusing_create(hp_host_t *host, void **self, char *err, size_t errlen)
{
    if (++refusal_calls < refuse_at) {
        *self = &refusal_calls; /* holds nothing */
        return 0;
    }
    snprintf(err, errlen, "refusing: not this time (create %d)", refusal_calls);
    return HP_ECONFIG;
}

static void refusing_close(void *self, hp_cont_cb done, void *arg)
{
    done(arg);
}

static const hp_service_t refusing = {
    .name = "refusing",
    .create = refusing_create,
    .close = refusing_close,
    .reconfigure = no_change,
};

/* The app's services, then the test's: the origin's upstream client has
 * opened its handles when the refusal comes. */
static const hp_service_t *services[HP_SERVICES_MAX];

static hp_app_t test_app(void)
{
    assert_true(hp_app.nservices + 2 <= HP_SERVICES_MAX);
    hp_app_t app = hp_app;
    size_t n = 0;
    for (size_t i = 0; i < hp_app.nservices; i++)
        services[n++] = hp_app.services[i];
    services[n++] = &holder;
    services[n++] = &refusing;
    app.services = services;
    app.nservices = n;
    return app;
}

static hp_config_t *config(const hp_app_t *app, const char *json)
{
    hp_config_t *cfg = NULL;
    char err[256];
    if (hp_config_parse(app, json, strlen(json), "test", NULL, &cfg, err, sizeof(err)))
        fail_msg("config: %s", err);
    return cfg;
}

static void count_handle(uv_handle_t *h, void *arg)
{
    (*(int *)arg)++;
}

static int setup(void **state)
{
    timer_creates = timer_closes = refusal_calls = 0;
    return hp_test_counters_setup(state);
}

static void worker_open_refused_by_a_service_closes_the_services_before_it(void **state)
{
    hp_app_t app = test_app();
    hp_config_t *cfg = config(&app, "{}");
    refuse_at = 1;
    hp_worker_t w;
    char err[256];
    assert_int_equal(hp_worker_init(&w, &app, 0, cfg, 0, err, sizeof(err)), 0);
    assert_int_equal(hp_worker_open(&w, false, err, sizeof(err)), HP_ECONFIG);
    assert_string_equal(err, "refusing: not this time (create 1)");
    assert_int_equal(timer_creates, 1);
    assert_int_equal(timer_closes, 1);
    /* The tick, the wake-up, the connections' handles, the origin's
     * upstream client's: all closed, none left on the loop. */
    int handles = 0;
    uv_walk(&w.loop, count_handle, &handles);
    assert_int_equal(handles, 0);
    assert_int_equal(uv_loop_alive(&w.loop), 0);
    hp_worker_close(&w);
    hp_config_unref(cfg);
    assert_int_equal(hp_alloc_stats_live(&hp_test_alloc), 0);
}

static void server_start_refused_on_the_second_worker_closes_the_first(void **state)
{
    hp_app_t app = test_app();
    hp_config_t *cfg = config(&app, "{\"listen\":{\"port\":0},\"workers\":2}");
    refuse_at = 2; /* worker 0 opens whole, worker 1 is refused */
    hp_server_t *s = NULL;
    char err[256];
    assert_int_equal(hp_server_start(&app, cfg, NULL, NULL, &s, err, sizeof(err)), HP_ECONFIG);
    assert_null(s);
    assert_string_equal(err, "worker 1: refusing: not this time (create 2)");
    assert_int_equal(timer_creates, 2);
    assert_int_equal(timer_closes, 2);
    hp_config_unref(cfg);
    assert_int_equal(hp_alloc_stats_live(&hp_test_alloc), 0);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            worker_open_refused_by_a_service_closes_the_services_before_it, setup,
            hp_test_counters_teardown),
        cmocka_unit_test_setup_teardown(server_start_refused_on_the_second_worker_closes_the_first,
                                        setup, hp_test_counters_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
