/*
 * it_health.c - GET /healthz and the stop that a balancer can follow, over
 * real sockets against the real server (one worker, ephemeral port).
 *
 * What is checked: /healthz answers 200 "ok" without touching the cache or
 * the upstream (the upstream here is a port nobody listens on); once
 * /healthz has been asked, SIGTERM makes it answer 503 for
 * limits.drain_health_ms while every other request is served as usual and
 * new connections are still accepted, then the drain closes the listener
 * and the process exits 0; without a health check, SIGTERM drains at once.
 */
#include "tests/support/fixture.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define GRACE_MS 800

static hp_it_server_t *start(void **state)
{
    hp_it_fixture_t *f = hp_it_fixture_new(state);
    char config[256];
    /* Port 9 (discard): nothing answers there on a test machine. */
    snprintf(config, sizeof(config),
             "{\"upstream\": {\"port\": 9}, \"limits\": {\"drain_health_ms\": %d}}", GRACE_MS);
    hp_it_fixture_start_server(f, config, NULL);
    return &f->server;
}

static int status_of(int port, const char *target, char *body, size_t len)
{
    hp_it_resp_t r;
    if (hp_it_get(port, target, &r) != 0) return -1;
    int st = r.status;
    if (body) snprintf(body, len, "%s", r.body);
    hp_it_resp_free(&r);
    return st;
}

static void healthz_touches_neither_cache_nor_upstream(void **state)
{
    hp_it_server_t *s = start(state);
    char body[64];
    assert_int_equal(status_of(s->port, "/healthz", body, sizeof(body)), 200);
    assert_string_equal(body, "ok\n");
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(s->port, "/healthz", &r), 0);
    assert_null(hp_it_header(&r, "X-Cache"));
    hp_it_resp_free(&r);
    assert_int_equal(hp_it_stat(s->port, "upstream|requests"), 0);
    assert_int_equal(hp_it_stat(s->port, "cache|misses"), 0);
    assert_int_equal(hp_it_stat(s->port, "cache|hits"), 0);
    hp_it_fixture_stop(*state);
}

static void checked_server_says_503_before_it_drains(void **state)
{
    hp_it_server_t *s = start(state);
    assert_int_equal(status_of(s->port, "/healthz", NULL, 0), 200);
    hp_it_client_t keep;
    assert_int_equal(hp_it_client_open(&keep, s->port), 0);
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_server_signal(s, SIGTERM), 0);
    /* The worker sees the stop on its next loop turn. */
    char body[64] = "";
    int st = 200;
    while (st == 200 && hp_it_now_ms() - t0 < GRACE_MS / 2) {
        st = status_of(s->port, "/healthz", body, sizeof(body));
        hp_it_sleep_ms(5);
    }
    assert_int_equal(st, 503);
    assert_string_equal(body, "draining\n");
    /* Inside the grace: new connections and everything else as usual. */
    int answered = 0;
    while (hp_it_now_ms() - t0 < GRACE_MS - 200) {
        assert_int_equal(status_of(s->port, "/plaintext", NULL, 0), 200);
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_request(&keep, "GET", "/plaintext", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
        answered++;
        hp_it_sleep_ms(20);
    }
    assert_true(answered > 0);
    /* Then the drain: the process ends, exit 0, not before the grace. */
    assert_int_equal(hp_it_server_wait(s, HP_IT_PROCESS_MS), 0);
    long long took = hp_it_now_ms() - t0;
    printf("it_health: SIGTERM to exit %lld ms with a %d ms grace (%d requests inside it)\n", took,
           GRACE_MS, answered);
    assert_true(took >= GRACE_MS - 50);
    hp_it_client_close(&keep);
}

static void unchecked_server_drains_at_once(void **state)
{
    hp_it_server_t *s = start(state);
    assert_int_equal(status_of(s->port, "/plaintext", NULL, 0), 200);
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_server_signal(s, SIGTERM), 0);
    assert_int_equal(hp_it_server_wait(s, HP_IT_PROCESS_MS), 0);
    long long took = hp_it_now_ms() - t0;
    assert_true(took < GRACE_MS - 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(healthz_touches_neither_cache_nor_upstream,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(checked_server_says_503_before_it_drains, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(unchecked_server_drains_at_once, hp_it_fixture_teardown),
    };
    return hp_it_result(cmocka_run_group_tests(tests, NULL, NULL));
}
