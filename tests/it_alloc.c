/*
 * it_alloc.c - the project's central claim, measured over a real socket:
 * in valuetask mode /plaintext and /json allocate nothing per request; in
 * task mode they allocate exactly one heap task per layer that returned a
 * valuetask (the enabled middleware plus the handler).
 *
 * Method: one server, one worker, warmed up (buffers grown, the request
 * context pooled), then /stats around N requests - sequential on one
 * keep-alive connection and in pipelined batches. The route's allocation
 * counter is charged only while a request of that route runs (metrics.h),
 * so its delta is the cost of exactly those N requests.
 *
 * /stats requests run through the same middleware, and each one's layer
 * calls are recorded after its own snapshot is taken; so the layer figures
 * are compared net of a baseline: the delta between two back-to-back
 * snapshots, which is what the snapshot pair alone adds.
 *
 * The number of layers L is not assumed: it is counted from /stats (the
 * layers whose calls grew by exactly N), checked against the chain the
 * config names, and asserted to be 4 for the default chain. In task mode
 * the bytes are asserted too: one 80-byte hp_task per layer (320 per
 * /plaintext with the default chain).
 *
 * The route's counters are not taken on trust: over every window the
 * worker's own totals (every allocator door) must equal what its accounts
 * were charged - each route's chain and outside-the-chain accounts, plus
 * outside_requests - so an allocation charged nowhere, or to the wrong
 * account, fails the test. What reading a request costs (its context, a
 * long target's arena spill, its body, pipelined input kept while it
 * pends) is charged to its route, outside the chain; the test checks that
 * too.
 */
#include "tests/support/fixture.h"

#include "runtime/alloc.h"

#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define N      1000
#define WARMUP 200
#define BATCH  25 /* pipelined requests per write */
/* sizeof(struct hp_task) on x86-64 and arm64 (runtime/task.c). */
#define TASK_BYTES 80

static const char *const default_chain[] = {"server_headers", "request_id", "metrics", NULL};
static const char *const logged_chain[] = {"server_headers", "request_id", "metrics", "access_log",
                                           NULL};

typedef hp_it_fixture_t fixture_t;

static fixture_t *start(void **state, const char *config, const char *mode)
{
    fixture_t *f = hp_it_fixture_new(state);
    const char *args[] = {"--mode", mode, NULL};
    hp_it_fixture_start_server(f, config, args);
    return f;
}

/* n GETs of target on c: half one by one, half in pipelined batches. */
static void run_requests(hp_it_client_t *c, const char *target, const char *body, int n)
{
    int one_by_one = n / 2;
    for (int i = 0; i < one_by_one; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_request(c, "GET", target, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, body);
        hp_it_resp_free(&r);
    }
    char req[128];
    int len = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", target);
    char batch[BATCH * 128];
    for (int left = n - one_by_one; left > 0;) {
        int k = left < BATCH ? left : BATCH;
        for (int i = 0; i < k; i++)
            memcpy(batch + i * len, req, (size_t)len);
        assert_int_equal(hp_it_client_send(c, batch, (size_t)(k * len)), 0);
        for (int i = 0; i < k; i++) {
            hp_it_resp_t r;
            assert_int_equal(hp_it_client_read(c, &r, false), 0);
            assert_int_equal(r.status, 200);
            assert_string_equal(r.body, body);
            hp_it_resp_free(&r);
        }
        left -= k;
    }
}

static double delta(const cJSON *a, const cJSON *b, const char *path)
{
    return hp_it_json_get(b, path) - hp_it_json_get(a, path);
}

/* Between snapshots a and b, the worker's totals equal the sum of its
 * accounts, in calls and in bytes (one worker: its counters are read on
 * its own thread, so the snapshot is consistent). */
static void assert_accounts_add_up(const cJSON *a, const cJSON *b)
{
    static const char *const doors[] = {"own", "libuv", "cjson"};
    static const char *const modes[] = {"valuetask", "task"};
    for (int bytes = 0; bytes < 2; bytes++) {
        char p[256];
        double total = 0, charged = 0;
        for (int d = 0; d < 3; d++) {
            snprintf(p, sizeof(p), "allocations|%s|%s", doors[d], bytes ? "bytes" : "count");
            total += delta(a, b, p);
        }
        snprintf(p, sizeof(p), "allocations|outside_requests|%s", bytes ? "bytes" : "count");
        charged += delta(a, b, p);
        const cJSON *routes = hp_it_json_at(b, "routes");
        assert_non_null(routes);
        for (const cJSON *r = routes->child; r; r = r->next)
            for (int m = 0; m < 2; m++) {
                snprintf(p, sizeof(p), "routes|%s|%s|%s", r->string, modes[m],
                         bytes ? "allocated_bytes" : "allocations");
                charged += delta(a, b, p);
                snprintf(p, sizeof(p), "routes|%s|%s|outside_chain|%s", r->string, modes[m],
                         bytes ? "allocated_bytes" : "allocations");
                charged += delta(a, b, p);
            }
        if (total != charged)
            fprintf(stderr, "the worker allocated %.0f %s, its accounts were charged %.0f\n", total,
                    bytes ? "bytes" : "times", charged);
        assert_true(total == charged);
    }
}

static bool in_list(const char *const *list, const char *name)
{
    for (; *list; list++)
        if (strcmp(*list, name) == 0) return true;
    return false;
}

/* Measure N requests of target in mode on a warmed-up server, and assert
 * the claim: allocations == 0 (valuetask) or N * L (task), with L the
 * layers on the path: chain (the enabled middleware, in the config) plus
 * the handler. Returns L. */
static int measure(int port, const char *mode, const char *target, const char *handler,
                   const char *body, const char *const *chain)
{
    bool task = strcmp(mode, "task") == 0;
    const char *other = task ? "valuetask" : "task";
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, port), 0);

    cJSON *base0 = hp_it_stats(port);
    cJSON *base1 = hp_it_stats(port); /* base0 -> base1: the snapshots' own share */
    run_requests(&c, target, body, N);
    cJSON *after = hp_it_stats(port);
    assert_non_null(base0);
    assert_non_null(base1);
    assert_non_null(after);

    char path[256];
    snprintf(path, sizeof(path), "routes|%s|%s|requests", target, mode);
    assert_int_equal(delta(base1, after, path), N);
    assert_int_equal(delta(base0, base1, path), 0);
    snprintf(path, sizeof(path), "routes|%s|%s|allocations", target, mode);
    double allocs = delta(base1, after, path);
    assert_int_equal(delta(base0, base1, path), 0);
    snprintf(path, sizeof(path), "routes|%s|%s|allocated_bytes", target, mode);
    double bytes = delta(base1, after, path);

    /* Per layer, net of the snapshots' own share. */
    int nlayers = 0;
    const cJSON *layers = hp_it_json_at(after, "layers");
    assert_non_null(layers);
    for (const cJSON *l = layers->child; l; l = l->next) {
        char p[256];
#define NET(field, m)                                                                              \
    (snprintf(p, sizeof(p), "layers|%s|%s|%s", l->string, m, field),                               \
     delta(base1, after, p) - delta(base0, base1, p))
        double calls = NET("calls", mode);
        bool on_path = in_list(chain, l->string) || strcmp(l->string, handler) == 0;
        if (calls != (on_path ? N : 0))
            fprintf(stderr, "layer %s: %.0f calls in %s mode, expected %d\n", l->string, calls,
                    mode, on_path ? N : 0);
        assert_int_equal(calls, on_path ? N : 0);
        if (!on_path) continue;
        nlayers++;
        assert_int_equal(NET("completed_synchronously", mode), N);
        assert_int_equal(NET("inline_valuetasks", mode), task ? 0 : N);
        assert_int_equal(NET("task_valuetasks", mode), task ? N : 0);
        assert_int_equal(NET("source_valuetasks", mode), 0);
        assert_int_equal(NET("calls", other), 0);
#undef NET
    }
    int expect_layers = 1;
    for (const char *const *m = chain; *m; m++)
        expect_layers++;
    assert_int_equal(nlayers, expect_layers);

    snprintf(path, sizeof(path), "routes|%s|%s|outside_chain|allocations", target, mode);
    double outside = delta(base1, after, path);
    double worker = 0;
    for (int d = 0; d < 3; d++) {
        static const char *const doors[] = {"own", "libuv", "cjson"};
        snprintf(path, sizeof(path), "allocations|%s|count", doors[d]);
        worker += delta(base1, after, path) - delta(base0, base1, path);
    }
    printf("it_alloc: %-9s %-10s %d requests: %.0f allocations (%.3f per request), "
           "%.0f bytes (%.1f per request), %d layers; outside the chain %.0f; the worker's "
           "totals, net of a /stats, %.0f\n",
           mode, target, N, allocs, allocs / N, bytes, bytes / N, nlayers, outside, worker);
    assert_int_equal(allocs, task ? (double)N * nlayers : 0.0);
    assert_int_equal(bytes, task ? (double)N * nlayers * TASK_BYTES : 0.0);
    assert_int_equal(outside, 0); /* keep-alive, warm: reading costs nothing */
    assert_accounts_add_up(base0, base1);
    assert_accounts_add_up(base1, after);

    cJSON_Delete(base0);
    cJSON_Delete(base1);
    cJSON_Delete(after);
    hp_it_client_close(&c);
    return nlayers;
}

static void warm_up(int port)
{
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, port), 0);
    run_requests(&c, "/plaintext", "Hello, World!", WARMUP);
    run_requests(&c, "/json", "{\"message\":\"Hello, World!\"}", WARMUP);
    hp_it_client_close(&c);
}

static void check_mode(int port, const char *mode)
{
    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    const cJSON *m = hp_it_json_at(s, "server|mode");
    assert_true(cJSON_IsString(m));
    assert_string_equal(m->valuestring, mode);
    cJSON_Delete(s);
}

static void valuetask_mode_allocates_nothing_per_request(void **state)
{
    fixture_t *f = start(state, NULL, "valuetask");
    check_mode(f->server.port, "valuetask");
    warm_up(f->server.port);
    int l = measure(f->server.port, "valuetask", "/plaintext", "plaintext", "Hello, World!",
                    default_chain);
    assert_int_equal(l, 4);
    l = measure(f->server.port, "valuetask", "/json", "json", "{\"message\":\"Hello, World!\"}",
                default_chain);
    assert_int_equal(l, 4);
    hp_it_fixture_stop(f);
}

static void task_mode_allocates_one_task_per_layer(void **state)
{
    fixture_t *f = start(state, NULL, "task");
    check_mode(f->server.port, "task");
    warm_up(f->server.port);
    /* 3 middleware + the handler with the default chain: 4 per request. */
    int l =
        measure(f->server.port, "task", "/plaintext", "plaintext", "Hello, World!", default_chain);
    assert_int_equal(l, 4);
    l = measure(f->server.port, "task", "/json", "json", "{\"message\":\"Hello, World!\"}",
                default_chain);
    assert_int_equal(l, 4);
    hp_it_fixture_stop(f);
}

/* Reading a request costs allocations around its chain: a body, a target
 * longer than the context's arena, input pipelined behind a request that
 * pends. They are charged to the request's route, outside the chain (they
 * landed in outside_requests, indistinguishable from the server's own),
 * and the accounts still add up to the worker's totals. */
static void reading_costs_are_charged_to_the_request(void **state)
{
    fixture_t *f = hp_it_fixture_new(state);
    hp_it_fixture_start_behind_stub(f, 50, NULL, NULL, NULL, NULL);
    int port = f->server.port;
    warm_up(port);
    hp_it_client_t c;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&c, port), 0);
    assert_int_equal(hp_it_client_request(&c, "GET", "/upstream/items/warm", NULL, &r), 0);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);

    cJSON *s0 = hp_it_stats(port);
    assert_non_null(s0);
    assert_int_equal(hp_it_client_open(&c, port), 0);
    /* A 20 KB body. */
    enum { BODY = 20000, TARGET = 3000 };
    char *body = malloc(BODY);
    memset(body, 'b', BODY);
    assert_int_equal(hp_it_client_sendf(
                         &c, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n", BODY),
                     0);
    assert_int_equal(hp_it_client_send(&c, body, BODY), 0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.body_len, BODY);
    hp_it_resp_free(&r);
    free(body);
    /* A 3 KB target (the arena is 2 KiB). */
    char *target = malloc(TARGET + 16);
    int n = snprintf(target, 16, "/plaintext?");
    memset(target + n, 'q', TARGET);
    target[n + TARGET] = '\0';
    assert_int_equal(hp_it_client_request(&c, "GET", target, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    free(target);
    /* Ten requests behind one that pends on the upstream: they wait in the
     * connection's carry, the pending request's. */
    static const char pend[] = "GET /upstream/items/p HTTP/1.1\r\nHost: h\r\n\r\n";
    char batch[sizeof(pend) + 10 * 64];
    n = snprintf(batch, sizeof(batch), "%s", pend);
    for (int i = 0; i < 10; i++)
        n += snprintf(batch + n, sizeof(batch) - (size_t)n,
                      "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_int_equal(hp_it_client_send(&c, batch, (size_t)n), 0);
    for (int i = 0; i < 11; i++) {
        assert_int_equal(hp_it_client_read(&c, &r, false), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
    }
    hp_it_client_close(&c);
    cJSON *s1 = hp_it_stats(port);
    assert_non_null(s1);

    double echo_bytes = delta(s0, s1, "routes|/echo|valuetask|outside_chain|allocated_bytes");
    double plain_bytes = delta(s0, s1, "routes|/plaintext|valuetask|outside_chain|allocated_bytes");
    double up = delta(s0, s1, "routes|/upstream/|valuetask|outside_chain|allocations");
    double outside = delta(s0, s1, "allocations|outside_requests|count");
    printf("it_alloc: outside the chain: /echo with a %d-byte body %.0f bytes, /plaintext with "
           "a %d-byte target %.0f bytes, /upstream/ with 10 requests behind it %.0f "
           "allocations; outside any request %.0f allocations (two connections)\n",
           BODY, echo_bytes, TARGET, plain_bytes, up, outside);
    assert_true(echo_bytes >= BODY);
    assert_true(plain_bytes >= TARGET);
    assert_true(up >= 1);
    /* This test's connection and the second /stats': their structs only. */
    assert_int_equal(outside, 2);
    assert_accounts_add_up(s0, s1);
    cJSON_Delete(s0);
    cJSON_Delete(s1);
    hp_it_fixture_stop(f);
}

/* Lines in the log that match re. */
static int count_lines(const char *path, const regex_t *re, int *total)
{
    FILE *fp = fopen(path, "r");
    int n = 0;
    *total = 0;
    if (fp == NULL) return 0;
    char line[1024];
    while (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\n")] = '\0';
        (*total)++;
        n += regexec(re, line, 0, NULL, 0) == 0;
    }
    fclose(fp);
    return n;
}

static void access_log_case(void **state, const char *mode)
{
    char log[512], config[1024];
    hp_it_temp_path(log, sizeof(log), "access.log");
    snprintf(config, sizeof(config),
             "{\"middleware\": [{\"name\": \"server_headers\"}, {\"name\": \"request_id\"},"
             " {\"name\": \"metrics\"}, {\"name\": \"access_log\", \"path\": \"%s\"}]}",
             log);
    fixture_t *f = start(state, config, mode);
    warm_up(f->server.port);
    int l = measure(f->server.port, mode, "/plaintext", "plaintext", "Hello, World!", logged_chain);
    assert_int_equal(l, 5);

    /* Common Log Format, one line per request; written every 250 ms. */
    regex_t any, plain;
    assert_int_equal(regcomp(&any,
                             "^127\\.0\\.0\\.1 - - \\[[0-3][0-9]/[A-Z][a-z][a-z]/[0-9]{4}:"
                             "[0-2][0-9]:[0-5][0-9]:[0-6][0-9] \\+0000\\] \"[A-Z]+ /[^ \"]* "
                             "HTTP/1\\.[01]\" [1-5][0-9][0-9] ([0-9]+|-)$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_int_equal(
        regcomp(&plain, "\\] \"GET /plaintext HTTP/1\\.1\" 200 13$", REG_EXTENDED | REG_NOSUB), 0);
    int want = WARMUP + N, got = 0, total = 0, well_formed = 0;
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    while ((got = count_lines(log, &plain, &total)) < want && hp_it_now_ms() < deadline)
        hp_it_sleep_ms(50);
    well_formed = count_lines(log, &any, &total);
    if (got != want || well_formed != total) {
        fprintf(stderr, "%s: %d /plaintext lines (want %d), %d of %d lines well-formed\n", log, got,
                want, well_formed, total);
    }
    assert_int_equal(got, want);
    assert_int_equal(well_formed, total);
    regfree(&any);
    regfree(&plain);
    hp_it_fixture_stop(f);
}

static void access_log_is_one_more_layer_and_writes_clf(void **state)
{
    access_log_case(state, "task");
}

static void access_log_allocates_nothing_in_valuetask_mode(void **state)
{
    access_log_case(state, "valuetask");
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(valuetask_mode_allocates_nothing_per_request,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(task_mode_allocates_one_task_per_layer, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(reading_costs_are_charged_to_the_request, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(access_log_is_one_more_layer_and_writes_clf,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(access_log_allocates_nothing_in_valuetask_mode,
                                  hp_it_fixture_teardown),
    };
    return hp_it_result(cmocka_run_group_tests(tests, NULL, NULL));
}
