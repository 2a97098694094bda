/*
 * it_l2.c - the second cache tier over real sockets: hotpath servers (one
 * worker each) in front of the upstream stub, sharing a real redis-server
 * (tests/support/redis.h), all on ephemeral loopback ports.
 *
 * What is checked: a key one instance filled is an `l2` answer on another,
 * then a `hit` there, and the upstream saw one request; the record in Redis
 * expires with the cache's ttl_ms; Redis absent, frozen (SIGSTOP), or not
 * Redis at all (the stub's HTTP) never turns an answer into a 5xx - the
 * upstream answers, and the bypass, the timeout or the failed connection is
 * counted; the upstream's deadline bounds the whole miss path, the L2
 * lookup's time included; a client that leaves while its lookup pends
 * sends nothing upstream; cache.l2 is reloaded live (off -> on -> a bad URL
 * refused naming the key -> off); and the allocations of an L2 hit and an
 * L2 miss are exact, in both modes, from /stats route deltas.
 *
 * Without redis-server (HOTPATH_REDIS_BIN overrides the PATH lookup) the
 * tests that need it skip, after one line that says so.
 */
#include "tests/support/faults.h"
#include "tests/support/fixture.h"
#include "tests/support/redis.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MEASURED 100 /* requests per allocation figure */

typedef struct {
    hp_test_redis_t redis;
    hp_it_server_t stub;
    hp_it_server_t server[2];
    bool stub_up, up[2];
} fx_t;

static bool have_redis;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    if (have_redis) hp_test_redis_start(&f->redis);
    assert_int_equal(hp_it_upstream_start(&f->stub, NULL), 0);
    f->stub_up = true;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    if (f == NULL) return 0;
    for (int i = 0; i < 2; i++)
        if (f->up[i]) hp_it_server_stop(&f->server[i]);
    if (f->stub_up) hp_it_upstream_stop(&f->stub);
    if (f->redis.pid > 0) kill(f->redis.pid, SIGCONT); /* a test may have frozen it */
    hp_test_redis_cleanup(&f->redis);
    free(f);
    return 0;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!have_redis) skip();                                                                   \
    } while (0)

/* Server i in mode, upstream the stub; l2 is the "cache.l2" members
 * (without braces; "" for none), cache more "cache" members. */
static hp_it_server_t *start(fx_t *f, int i, const char *mode, const char *l2, const char *cache)
{
    char config[1024];
    snprintf(config, sizeof(config),
             "{\"upstream\": {\"port\": %d}, \"limits\": {\"drain_timeout_ms\": 1000},"
             " \"cache\": {%s%s\"l2\": {%s}}}",
             f->stub.port, cache, *cache ? ", " : "", l2);
    const char *args[] = {"--mode", mode, NULL};
    assert_int_equal(hp_it_server_start(&f->server[i], config, args), 0);
    f->up[i] = true;
    return &f->server[i];
}

static void stop(fx_t *f, int i)
{
    f->up[i] = false;
    assert_int_equal(hp_it_server_stop(&f->server[i]), 0);
}

static char *redis_url(fx_t *f, char *buf, size_t len)
{
    snprintf(buf, len, "\"url\": \"redis://127.0.0.1:%d/0\"", f->redis.port);
    return buf;
}

static void wait_connected(int port, double want)
{
    assert_true(hp_it_wait_stat(port, "l2|connected", want) == want);
}

/* /items requests the stub has received. */
static int stub_items(fx_t *f)
{
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(f->stub.port, "/_stats", &r), 0);
    cJSON *s = cJSON_ParseWithLength(r.body, r.body_len);
    hp_it_resp_free(&r);
    assert_non_null(s);
    double n = hp_it_json_num(s, "items", -1);
    cJSON_Delete(s);
    return (int)n;
}

/* GET /cache/{key} on a new connection: asserts status and X-Cache (NULL:
 * any); returns the milliseconds it took. */
static long long get(int port, const char *key, int status, const char *xcache)
{
    char target[300];
    snprintf(target, sizeof(target), "/cache/%s", key);
    hp_it_resp_t r;
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_get(port, target, &r), 0);
    long long ms = hp_it_now_ms() - t0;
    const char *x = hp_it_header(&r, "X-Cache");
    if (r.status != status || (xcache && (x == NULL || strcmp(x, xcache) != 0)))
        fprintf(stderr, "GET %s: %d X-Cache %s (expected %d %s), body \"%s\"\n", target, r.status,
                x ? x : "-", status, xcache ? xcache : "any", r.body);
    assert_int_equal(r.status, status);
    if (xcache) assert_string_equal(x, xcache);
    hp_it_resp_free(&r);
    return ms;
}

/* --- two instances, one L2 --------------------------------------------- */

static void filled_on_one_instance_is_l2_on_the_other(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    char url[128];
    redis_url(f, url, sizeof(url));
    int a = start(f, 0, "valuetask", url, "\"ttl_ms\": 3000")->port;
    int b = start(f, 1, "task", url, "\"ttl_ms\": 3000")->port;
    wait_connected(a, 1);
    wait_connected(b, 1);

    get(a, "apple", 200, "miss");
    get(a, "apple", 200, "hit");
    /* The SET is fire and forget: wait until Redis acknowledged it. */
    assert_true(hp_it_wait_stat(a, "l2|stored", 1) == 1);
    get(b, "apple", 200, "l2");
    get(b, "apple", 200, "hit");
    assert_int_equal(stub_items(f), 1);
    assert_int_equal(hp_it_stat(b, "l2|hits"), 1);
    assert_int_equal(hp_it_stat(b, "l2|sets"), 0); /* an L2 answer is not stored again */
    /* The L2 call is a layer of its own: a heap task, never synchronous. */
    assert_int_equal(hp_it_stat(a, "layers|cache.l2|valuetask|calls"), 1);
    assert_int_equal(hp_it_stat(a, "layers|cache.l2|valuetask|task_valuetasks"), 1);
    assert_int_equal(hp_it_stat(b, "layers|cache.l2|task|calls"), 1);
    assert_int_equal(hp_it_stat(b, "layers|cache.l2|task|completed_synchronously"), 0);

    /* /metrics carries the block and the layer too. */
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(b, "/metrics", &r), 0);
    assert_non_null(strstr(r.body, "hotpath_l2_hits_total 1"));
    assert_non_null(strstr(r.body, "layer=\"cache.l2\""));
    hp_it_resp_free(&r);

    /* Redis forgets it with the cache's TTL: a third instance's get after
     * that goes upstream. */
    hp_it_sleep_ms(3100);
    stop(f, 1);
    b = start(f, 1, "valuetask", url, "\"ttl_ms\": 3000")->port;
    wait_connected(b, 1);
    get(b, "apple", 200, "miss");
    assert_int_equal(stub_items(f), 2);
    stop(f, 0);
    stop(f, 1);
}

/* Concurrent misses of a key on one worker: one L2 lookup, one upstream
 * request; the others coalesce. */
static void misses_coalesce_over_the_whole_path(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    char url[128];
    redis_url(f, url, sizeof(url));
    hp_it_stub_control(f->stub.port, "delay_ms=200");
    int a = start(f, 0, "valuetask", url, "")->port;
    wait_connected(a, 1);
    enum { C = 8 };
    hp_it_client_t c[C];
    for (int i = 0; i < C; i++) {
        assert_int_equal(hp_it_client_open(&c[i], a), 0);
        assert_int_equal(hp_it_client_sendf(&c[i], "GET /cache/pear HTTP/1.1\r\nHost: h\r\n\r\n"),
                         0);
        hp_it_sleep_ms(5);
    }
    int miss = 0, coalesced = 0;
    for (int i = 0; i < C; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_read(&c[i], &r, false), 0);
        assert_int_equal(r.status, 200);
        miss += strcmp(hp_it_header(&r, "X-Cache"), "miss") == 0;
        coalesced += strcmp(hp_it_header(&r, "X-Cache"), "coalesced") == 0;
        hp_it_resp_free(&r);
        hp_it_client_close(&c[i]);
    }
    assert_int_equal(miss, 1);
    assert_int_equal(coalesced, C - 1);
    assert_int_equal(hp_it_stat(a, "l2|gets"), 1);
    assert_int_equal(stub_items(f), 1);
    stop(f, 0);
}

/* --- L2 failing --------------------------------------------------------- */

/* Nothing listens where the URL points: every lookup is bypassed at once,
 * the upstream answers. */
static void redis_absent_is_bypassed(void **state)
{
    fx_t *f = *state;
    hp_it_server_t probe;
    /* A port nobody listens on: a stub's, once it has exited. */
    assert_int_equal(hp_it_upstream_start(&probe, NULL), 0);
    int dead = probe.port;
    assert_int_equal(hp_it_upstream_stop(&probe), 0);
    char l2[128];
    snprintf(l2, sizeof(l2), "\"url\": \"redis://127.0.0.1:%d\"", dead);
    int a = start(f, 0, "valuetask", l2, "")->port;
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", i);
        get(a, key, 200, "miss");
    }
    assert_int_equal(hp_it_stat(a, "l2|bypasses"), 5);
    assert_int_equal(hp_it_stat(a, "l2|connected"), 0);
    assert_true(hp_it_stat(a, "l2|connect_failures") >= 1);
    assert_int_equal(hp_it_stat(a, "layers|cache.l2|valuetask|completed_synchronously"), 5);
    assert_int_equal(stub_items(f), 5);
    stop(f, 0);
}

/* An HTTP server where Redis should be: the handshake fails, the client
 * backs off, the answers come from the upstream. */
static void not_redis_is_bypassed(void **state)
{
    fx_t *f = *state;
    char l2[128];
    snprintf(l2, sizeof(l2), "\"url\": \"redis://127.0.0.1:%d\", \"backoff_min_ms\": 50",
             f->stub.port);
    int a = start(f, 0, "valuetask", l2, "")->port;
    assert_true(hp_it_wait_stat(a, "l2|connect_failures", 2) >= 2);
    get(a, "plum", 200, "miss");
    get(a, "plum", 200, "hit");
    assert_int_equal(hp_it_stat(a, "l2|connected"), 0);
    assert_int_equal(hp_it_stat(a, "l2|bypasses"), 1);
    stop(f, 0);
}

/* A frozen Redis: the lookup times out after command_timeout_ms, the
 * upstream answers (200, never a 5xx), and the timeout is counted. Then
 * the upstream deadline bounds the whole path: the lookup's 300 ms come out
 * of connect_timeout_ms + response_timeout_ms (100 + 300), so an upstream
 * that takes 200 ms is too late (504 after about 400 ms, not 200 after
 * 500). */
static void frozen_redis_times_out_within_the_upstream_deadline(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    char l2[160];
    snprintf(l2, sizeof(l2), "\"url\": \"redis://127.0.0.1:%d\", \"command_timeout_ms\": 300",
             f->redis.port);
    char config[512];
    snprintf(config, sizeof(config),
             "{\"upstream\": {\"port\": %d, \"connect_timeout_ms\": 100, "
             "\"response_timeout_ms\": 300}, \"cache\": {\"l2\": {%s}}}",
             f->stub.port, l2);
    assert_int_equal(hp_it_server_start(&f->server[0], config, NULL), 0);
    f->up[0] = true;
    int a = f->server[0].port;
    wait_connected(a, 1);
    assert_int_equal(kill(f->redis.pid, SIGSTOP), 0);
    long long ms = get(a, "fig", 200, "miss");
    assert_true(ms >= 250);
    assert_int_equal(hp_it_stat(a, "l2|timeouts"), 1);
    assert_int_equal(hp_it_stat(a, "layers|cache.l2|valuetask|calls"), 1);
    /* Reconnecting to a frozen Redis: bypassed until it is back. */
    hp_it_stub_control(f->stub.port, "delay_ms=200");
    double bypasses = hp_it_stat(a, "l2|bypasses");
    ms = get(a, "fig2", 200, "miss"); /* bypassed at once: the whole budget is the upstream's */
    assert_true(hp_it_stat(a, "l2|bypasses") == bypasses + 1);
    assert_true(ms < 250 + 200); /* no command timeout spent before the upstream's 200 ms */
    assert_int_equal(kill(f->redis.pid, SIGCONT), 0);
    wait_connected(a, 1);
    assert_int_equal(kill(f->redis.pid, SIGSTOP), 0);
    ms = get(a, "fig3", 504, "miss");
    assert_true(ms >= 380 && ms < 1000);
    assert_int_equal(hp_it_stat(a, "l2|timeouts"), 2);
    assert_int_equal(kill(f->redis.pid, SIGCONT), 0);
    hp_it_stub_control(f->stub.port, "delay_ms=0");
    stop(f, 0);
}

/* A client that leaves while its miss waits for L2, nobody else waiting:
 * the fill is cancelled, so the lookup's end sends nothing upstream. */
static void leaving_during_the_lookup_sends_nothing_upstream(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    char l2[160];
    snprintf(l2, sizeof(l2), "\"url\": \"redis://127.0.0.1:%d\", \"command_timeout_ms\": 300",
             f->redis.port);
    int a = start(f, 0, "valuetask", l2, "")->port;
    wait_connected(a, 1);
    assert_int_equal(kill(f->redis.pid, SIGSTOP), 0);
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, a), 0);
    assert_int_equal(hp_it_client_sendf(&c, "GET /cache/gone HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    assert_true(hp_it_wait_stat(a, "l2|inflight", 1) == 1);
    hp_it_client_close(&c);
    assert_true(hp_it_wait_stat(a, "cache|waiters_left", 1) == 1);
    /* The lookup times out; the cancelled fill ends there. */
    assert_true(hp_it_wait_stat(a, "l2|timeouts", 1) == 1);
    assert_true(hp_it_wait_stat(a, "cache|fill_failures", 1) == 1);
    assert_int_equal(kill(f->redis.pid, SIGCONT), 0);
    assert_int_equal(stub_items(f), 0);
    assert_int_equal(hp_it_stat(a, "upstream|requests"), 0);
    assert_int_equal(hp_it_stat(a, "cache|pending_fills"), 0);
    /* The key is not poisoned: the next get fills it as usual. */
    wait_connected(a, 1);
    get(a, "gone", 200, "miss");
    assert_int_equal(stub_items(f), 1);
    stop(f, 0);
}

/* --- reload ------------------------------------------------------------- */

static void reload(hp_it_server_t *s, const char *json)
{
    assert_int_equal(hp_it_server_write_config(s, json), 0);
    assert_int_equal(hp_it_server_signal(s, SIGHUP), 0);
}

static void l2_turns_on_and_off_with_a_reload(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    hp_it_server_t *s = start(f, 0, "valuetask", "", "");
    int a = s->port;
    get(a, "one", 200, "miss");
    assert_int_equal(hp_it_stat(a, "l2|gets"), 0);

    char config[512];
    snprintf(config, sizeof(config),
             "{\"upstream\": {\"port\": %d}, \"cache\": {\"l2\": {\"url\": "
             "\"redis://127.0.0.1:%d\"}}}",
             f->stub.port, f->redis.port);
    reload(s, config);
    wait_connected(a, 1);
    get(a, "two", 200, "miss");
    assert_int_equal(hp_it_stat(a, "l2|gets"), 1);
    assert_true(hp_it_wait_stat(a, "l2|stored", 1) == 1);

    /* A bad URL is refused naming the key; L2 stays as it was. */
    snprintf(config, sizeof(config),
             "{\"upstream\": {\"port\": %d}, \"cache\": {\"l2\": {\"url\": "
             "\"redis://example.com:6379\"}}}",
             f->stub.port);
    reload(s, config);
    assert_true(hp_it_server_wait_stderr(s, "cache.l2.url", HP_IT_TIMEOUT_MS));
    get(a, "three", 200, "miss");
    assert_int_equal(hp_it_stat(a, "l2|gets"), 2);
    assert_int_equal(hp_it_stat(a, "l2|connected"), 1);

    /* Off again: "" is no L2. The figures stay, the gauges drop. */
    snprintf(config, sizeof(config),
             "{\"upstream\": {\"port\": %d}, \"cache\": {\"l2\": {\"url\": \"\"}}}", f->stub.port);
    reload(s, config);
    wait_connected(a, 0);
    assert_true(hp_it_wait_stat(a, "server|reloads", 2) == 2);
    get(a, "four", 200, "miss");
    assert_int_equal(hp_it_stat(a, "l2|gets"), 2);
    assert_int_equal(hp_it_stat(a, "l2|stored"), 2);
    stop(f, 0);
}

/* --- allocations --------------------------------------------------------- */

/* n sequential GETs of /cache/{prefix}{first..} on c, each 200 with that
 * X-Cache; the route's allocations over them. */
static double route_allocs(hp_it_client_t *c, int port, const char *mode, const char *prefix,
                           int first, int n, const char *xcache)
{
    char path[128];
    cJSON *before = hp_it_stats(port);
    assert_non_null(before);
    for (int i = 0; i < n; i++) {
        char target[64];
        snprintf(target, sizeof(target), "/cache/%s%d", prefix, first + i);
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_request(c, "GET", target, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        if (strcmp(hp_it_header(&r, "X-Cache"), xcache) != 0)
            fprintf(stderr, "%s: X-Cache %s, expected %s\n", target, hp_it_header(&r, "X-Cache"),
                    xcache);
        assert_string_equal(hp_it_header(&r, "X-Cache"), xcache);
        hp_it_resp_free(&r);
    }
    cJSON *after = hp_it_stats(port);
    assert_non_null(after);
    snprintf(path, sizeof(path), "routes|/cache/|%s|requests", mode);
    assert_int_equal(hp_it_json_get(after, path) - hp_it_json_get(before, path), n);
    snprintf(path, sizeof(path), "routes|/cache/|%s|allocations", mode);
    double a = hp_it_json_get(after, path) - hp_it_json_get(before, path);
    cJSON_Delete(before);
    cJSON_Delete(after);
    return a;
}

typedef struct {
    double l1_hit, l2_hit, l2_miss;
} costs_t;

/* An L1 of 4 KiB holds about 20 of these items, so keys read again 100
 * keys later have left it and are L2 hits. The warm-up (keys w*) grows
 * every buffer that grows - the upstream pool, L2's ring and output
 * buffers, the cache's table to the size it keeps - so the figures are
 * steady-state costs. */
static costs_t measure(fx_t *f, const char *mode)
{
    char url[128];
    redis_url(f, url, sizeof(url));
    int a = start(f, 0, mode, url, "\"max_bytes\": 4096")->port;
    wait_connected(a, 1);
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, a), 0);
    char warm[32];
    snprintf(warm, sizeof(warm), "warm-%s-", mode);
    route_allocs(&c, a, mode, warm, 0, 60, "miss");
    assert_true(hp_it_wait_stat(a, "l2|stored", 60) == 60);
    route_allocs(&c, a, mode, warm, 0, 20, "l2");
    costs_t k;
    k.l2_miss = route_allocs(&c, a, mode, mode, 0, MEASURED, "miss");
    assert_true(hp_it_wait_stat(a, "l2|stored", 60 + MEASURED) == 60 + MEASURED);
    k.l2_hit = route_allocs(&c, a, mode, mode, 0, MEASURED / 2, "l2");
    /* The last key read is in L1 now. */
    char last[32];
    snprintf(last, sizeof(last), "%s%d", mode, MEASURED / 2 - 1);
    cJSON *before = hp_it_stats(a);
    for (int i = 0; i < MEASURED; i++)
        get(a, last, 200, "hit");
    cJSON *after = hp_it_stats(a);
    char path[128];
    snprintf(path, sizeof(path), "routes|/cache/|%s|allocations", mode);
    /* On new connections: what opening one costs is outside the chain. */
    k.l1_hit = hp_it_json_get(after, path) - hp_it_json_get(before, path);
    cJSON_Delete(before);
    cJSON_Delete(after);
    printf("it_l2: %-9s allocations per request: L1 hit %.2f, L2 hit %.2f, L2 miss %.2f\n", mode,
           k.l1_hit / MEASURED, k.l2_hit / (MEASURED / 2), k.l2_miss / MEASURED);
    hp_it_client_close(&c);
    stop(f, 0);
    return k;
}

static void allocations_per_tier_in_both_modes(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    costs_t v = measure(f, "valuetask");
    costs_t t = measure(f, "task");
    /* L1 hit: nothing in valuetask mode; a task per layer in task mode (3
     * middleware, the handler, the cache get). */
    assert_int_equal(v.l1_hit, 0);
    assert_int_equal(t.l1_hit, 5 * MEASURED);
    /* L2 hit: the L1 entry, the fill's state (miss_t) and task, the fill
     * task's waiter array (the cache's continuation, then the handler's),
     * the GET's task and the value's buffer. Task mode adds the 4 layers
     * that pend (3 middleware + handler) as heap tasks. */
    assert_int_equal(v.l2_hit, 6 * (MEASURED / 2));
    assert_int_equal(t.l2_hit, 10 * (MEASURED / 2));
    /* L2 miss: as the hit without the value's buffer, plus the upstream's
     * request, task and buffer; the SET allocates nothing. */
    assert_int_equal(v.l2_miss, 8 * MEASURED);
    assert_int_equal(t.l2_miss, 12 * MEASURED);
}

int main(void)
{
    have_redis = hp_test_redis_bin() != NULL;
    if (!have_redis)
        printf("it_l2: SKIPPED the tests that need Redis: no redis-server on PATH (make deps "
               "installs it)\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(filled_on_one_instance_is_l2_on_the_other, setup, teardown),
        cmocka_unit_test_setup_teardown(misses_coalesce_over_the_whole_path, setup, teardown),
        cmocka_unit_test_setup_teardown(redis_absent_is_bypassed, setup, teardown),
        cmocka_unit_test_setup_teardown(not_redis_is_bypassed, setup, teardown),
        cmocka_unit_test_setup_teardown(frozen_redis_times_out_within_the_upstream_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(leaving_during_the_lookup_sends_nothing_upstream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(l2_turns_on_and_off_with_a_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(allocations_per_tier_in_both_modes, setup, teardown),
    };
    return hp_it_result(cmocka_run_group_tests(tests, NULL, NULL));
}
