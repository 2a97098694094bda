/*
 * it_twin.c - the Kestrel twin (loadtest/kestrel) keeps hotpath's contract:
 * both real servers on ephemeral loopback ports, side by side, spoken to
 * over sockets, with the same upstream stub behind them.
 *
 * Written in C with the harness, like every integration test here, because
 * the comparison is the point: the same client, the same requests, the
 * answers of both servers checked against each other (status, the headers
 * that carry meaning, bodies byte for byte where the stub's per-fetch
 * counter does not differ).
 *
 * What is checked:
 *   - every route answers as hotpath's does, in each of the twin's four
 *     modes (switched live with SIGHUP, and each switch read back from
 *     /stats): /plaintext, /json, HEAD, 404, 405 with Allow, /cache/{key}
 *     miss then hit and its 400s, /upstream/{path} passed through and its
 *     502, X-Request-Id kept or generated;
 *   - concurrent misses of one key share one fill (one miss, the rest
 *     coalesced, one upstream fetch), on both servers;
 *   - allocations: task mode allocates one Task<Answer> per layer per
 *     request more than valuetask mode - 4 on /plaintext, 5 on a cache hit
 *     (the cache's get) - with the size of one task from the twin's /stats;
 *     valuetask and aspnet modes allocate less than one task per request;
 *   - a bad file on SIGHUP is refused naming the key, and the mode stays;
 *     the command line refuses a bad flag or file naming it; SIGTERM exits 0.
 *
 * Run by `make test-twin` (part of `make test`) when dotnet is on PATH;
 * KESTREL_BIN names the twin. .NET's allocated-bytes counter is process
 * wide (Kestrel's own timers allocate too), so the allocation checks take
 * the difference of two modes over 2,000 requests each, after a warm-up,
 * with tiered compilation off (see main).
 */
#include "tests/support/harness.h"
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

static hp_it_server_t upstream, hotpath, twin;
static bool stop_failed;

#define WARMUP   1000
#define MEASURED 2000

static const char *const MODES[] = {"valuetask", "task", "valuetask-nopool", "aspnet"};

static char config[256];

static int start_all(void **state)
{
    if (hp_it_upstream_start(&upstream, NULL) != 0) return -1;
    snprintf(config, sizeof(config),
             "{\"upstream\": {\"port\": %d}, \"limits\": {\"drain_timeout_ms\": 1000}, "
             "\"mode\": \"valuetask\"}",
             upstream.port);
    if (hp_it_server_start(&hotpath, config, NULL) != 0) goto fail_upstream;
    if (hp_it_twin_start(&twin, config, NULL) != 0) goto fail_hotpath;
    return 0;
fail_hotpath:
    hp_it_server_stop(&hotpath);
fail_upstream:
    hp_it_upstream_stop(&upstream);
    return -1;
}

static int stop_all(void **state)
{
    int tw = hp_it_server_stop(&twin);
    int hp = hp_it_server_stop(&hotpath);
    hp_it_upstream_stop(&upstream);
    if (tw != 0 || hp != 0) {
        fprintf(stderr, "it_twin: exit statuses: twin %d, hotpath %d (expected 0)\n", tw, hp);
        stop_failed = true;
        return -1;
    }
    return 0;
}

/* --- helpers ------------------------------------------------------------- */

static cJSON *stats(int port)
{
    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    return s;
}

static double delta(const cJSON *a, const cJSON *b, const char *path)
{
    return hp_it_json_get(b, path) - hp_it_json_get(a, path);
}

/* Rewrite the config with this mode, SIGHUP the twin, and wait (bounded)
 * until /stats says the mode runs. */
static void twin_switch(const char *mode)
{
    char json[320];
    snprintf(json, sizeof(json),
             "{\"upstream\": {\"port\": %d}, \"limits\": {\"drain_timeout_ms\": 1000}, "
             "\"mode\": \"%s\"}",
             upstream.port, mode);
    assert_int_equal(hp_it_server_write_config(&twin, json), 0);
    assert_int_equal(hp_it_server_signal(&twin, SIGHUP), 0);
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    for (;;) {
        cJSON *s = stats(twin.port);
        const cJSON *m = hp_it_json_at(s, "server|mode");
        bool now = cJSON_IsString(m) && strcmp(m->valuestring, mode) == 0;
        cJSON_Delete(s);
        if (now) return;
        assert_true(hp_it_now_ms() < deadline);
        hp_it_sleep_ms(20);
    }
}

/* The stub's "served" counter is per fetch, so it differs between the two
 * servers' fetches of the same item: drop its digits before comparing.
 * Returns whether the body had one. */
static bool drop_served(hp_it_resp_t *r)
{
    char *p = strstr(r->body, "\"served\":");
    if (!p) return false;
    p += 9;
    char *q = p;
    while (*q >= '0' && *q <= '9')
        q++;
    memmove(p, q, strlen(q) + 1);
    r->body_len -= (size_t)(q - p);
    return true;
}

static void expect_same_header(const hp_it_resp_t *h, const hp_it_resp_t *t, const char *name,
                               const char *what)
{
    const char *a = hp_it_header(h, name), *b = hp_it_header(t, name);
    if (!a && !b) return;
    if (!a || !b || strcmp(a, b) != 0) {
        fprintf(stderr, "it_twin: %s: %s: hotpath \"%s\", twin \"%s\"\n", what, name,
                a ? a : "(none)", b ? b : "(none)");
        fail();
    }
}

/* One request to both servers on their open connections; the answers must
 * agree. Returns the twin's X-Cache (static storage), or "" without one. */
static const char *same_answer(hp_it_client_t *ch, hp_it_client_t *ct, const char *method,
                               const char *target, const char *headers, const char *mode)
{
    static char xcache[32];
    char what[160];
    snprintf(what, sizeof(what), "%s %s (twin mode %s)", method, target, mode);
    hp_it_resp_t h, t;
    assert_int_equal(hp_it_client_request(ch, method, target, headers, &h), 0);
    assert_int_equal(hp_it_client_request(ct, method, target, headers, &t), 0);
    if (h.status != t.status) {
        fprintf(stderr, "it_twin: %s: status: hotpath %d, twin %d\n", what, h.status, t.status);
        fail();
    }
    expect_same_header(&h, &t, "Content-Type", what);
    char hlen[24], tlen[24];
    snprintf(hlen, sizeof(hlen), "%zu", h.body_len);
    snprintf(tlen, sizeof(tlen), "%zu", t.body_len);
    if (drop_served(&h) | drop_served(&t)) {
        /* Lengths differ with the counter's digits: each must fit its body. */
        assert_string_equal(hp_it_header(&h, "Content-Length"), hlen);
        assert_string_equal(hp_it_header(&t, "Content-Length"), tlen);
    } else {
        expect_same_header(&h, &t, "Content-Length", what);
    }
    expect_same_header(&h, &t, "Allow", what);
    expect_same_header(&h, &t, "X-Cache", what);
    assert_false(t.chunked);
    /* Both servers name themselves and date every answer. */
    assert_non_null(hp_it_header(&t, "Server"));
    assert_non_null(hp_it_header(&t, "Date"));
    assert_int_equal(hp_it_header_count(&t, "X-Request-Id"), 1);
    if (h.body_len != t.body_len || memcmp(h.body, t.body, h.body_len) != 0) {
        fprintf(stderr, "it_twin: %s: body: hotpath \"%s\", twin \"%s\"\n", what, h.body, t.body);
        fail();
    }
    const char *x = hp_it_header(&t, "X-Cache");
    snprintf(xcache, sizeof(xcache), "%s", x ? x : "");
    hp_it_resp_free(&h);
    hp_it_resp_free(&t);
    return xcache;
}

/* --- every route, every mode --------------------------------------------- */

typedef struct {
    const char *method, *target, *headers;
} req_t;

static const req_t ROUTES[] = {
    {"GET", "/plaintext", NULL},
    {"HEAD", "/plaintext", NULL},
    {"GET", "/json", NULL},
    {"HEAD", "/json", NULL},
    {"GET", "/nowhere", NULL},
    {"HEAD", "/nowhere", NULL},
    {"POST", "/plaintext", NULL},
    {"DELETE", "/cache/k", NULL},
    {"PUT", "/upstream/items/x", NULL},
    {"GET", "/cache/", NULL},
    {"GET", "/cache/a/b", NULL},
    {"GET", "/upstream/items/u", NULL},
    {"GET", "/upstream/elsewhere?q=1", NULL},
    {"GET", "/upstream/items/x?fault=reset", NULL},
};

static void routes_answer_as_hotpath(void **state)
{
    hp_it_client_t ch, ct;
    for (size_t m = 0; m < sizeof(MODES) / sizeof(MODES[0]); m++) {
        twin_switch(MODES[m]);
        assert_int_equal(hp_it_client_open(&ch, hotpath.port), 0);
        assert_int_equal(hp_it_client_open(&ct, twin.port), 0);
        for (size_t i = 0; i < sizeof(ROUTES) / sizeof(ROUTES[0]); i++)
            same_answer(&ch, &ct, ROUTES[i].method, ROUTES[i].target, ROUTES[i].headers, MODES[m]);

        /* A key of this mode's own: a miss, then hits (GET and HEAD). */
        char target[64];
        snprintf(target, sizeof(target), "/cache/route-%s", MODES[m]);
        assert_string_equal(same_answer(&ch, &ct, "GET", target, NULL, MODES[m]), "miss");
        assert_string_equal(same_answer(&ch, &ct, "GET", target, NULL, MODES[m]), "hit");
        /* HEAD: a hit, with the GET's headers and no body (the cached
         * answers hold each server's own "served" count, so each is
         * compared with its own GET). */
        hp_it_client_t *both[] = {&ch, &ct};
        for (int k = 0; k < 2; k++) {
            hp_it_resp_t g, hd;
            assert_int_equal(hp_it_client_request(both[k], "GET", target, NULL, &g), 0);
            assert_int_equal(hp_it_client_request(both[k], "HEAD", target, NULL, &hd), 0);
            assert_int_equal(hd.status, 200);
            assert_string_equal(hp_it_header(&hd, "X-Cache"), "hit");
            assert_string_equal(hp_it_header(&hd, "Content-Length"),
                                hp_it_header(&g, "Content-Length"));
            assert_string_equal(hp_it_header(&hd, "Content-Type"),
                                hp_it_header(&g, "Content-Type"));
            assert_int_equal(hd.body_len, 0);
            hp_it_resp_free(&g);
            hp_it_resp_free(&hd);
        }

        /* X-Request-Id: a well-formed one is kept; a malformed one replaced. */
        hp_it_resp_t r;
        assert_int_equal(
            hp_it_client_request(&ct, "GET", "/plaintext", "X-Request-Id: abc-123.x\r\n", &r), 0);
        assert_string_equal(hp_it_header(&r, "X-Request-Id"), "abc-123.x");
        hp_it_resp_free(&r);
        assert_int_equal(
            hp_it_client_request(&ct, "GET", "/plaintext", "X-Request-Id: no<id>\r\n", &r), 0);
        assert_string_not_equal(hp_it_header(&r, "X-Request-Id"), "no<id>");
        hp_it_resp_free(&r);

        hp_it_client_close(&ch);
        hp_it_client_close(&ct);
    }
    twin_switch("valuetask");
}

/* --- single flight -------------------------------------------------------- */

#define CONCURRENT 8

/* CONCURRENT misses of one key at once on port: one miss, the rest coalesced. */
static void misses_together(int port, const char *key, const char *who)
{
    static hp_it_client_t c[CONCURRENT];
    for (int i = 0; i < CONCURRENT; i++)
        assert_int_equal(hp_it_client_open(&c[i], port), 0);
    for (int i = 0; i < CONCURRENT; i++)
        assert_int_equal(
            hp_it_client_sendf(&c[i], "GET /cache/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", key), 0);
    int miss = 0, coalesced = 0;
    char first[256] = "";
    for (int i = 0; i < CONCURRENT; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_read(&c[i], &r, false), 0);
        assert_int_equal(r.status, 200);
        if (!first[0]) snprintf(first, sizeof(first), "%s", r.body);
        assert_string_equal(r.body, first); /* one fetch: one "served" */
        const char *x = hp_it_header(&r, "X-Cache");
        assert_non_null(x);
        miss += strcmp(x, "miss") == 0;
        coalesced += strcmp(x, "coalesced") == 0;
        hp_it_resp_free(&r);
        hp_it_client_close(&c[i]);
    }
    printf("it_twin: %s: %d concurrent misses: %d miss, %d coalesced\n", who, CONCURRENT, miss,
           coalesced);
    assert_int_equal(miss, 1);
    assert_int_equal(coalesced, CONCURRENT - 1);
}

static void stub_control(const char *query)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    char target[128];
    snprintf(target, sizeof(target), "/_control?%s", query);
    assert_int_equal(hp_it_client_open(&c, upstream.port), 0);
    assert_int_equal(hp_it_client_request(&c, "POST", target, "Content-Length: 0\r\n", &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

static void concurrent_misses_share_one_fill(void **state)
{
    /* 300 ms: every request arrives while the first one's fill runs. */
    stub_control("delay_ms=300");
    for (size_t m = 0; m < 2; m++) {
        const char *mode = m == 0 ? "valuetask" : "task";
        twin_switch(mode);
        char key[32];
        snprintf(key, sizeof(key), "together-%s", mode);
        cJSON *before = stats(twin.port);
        misses_together(twin.port, key, mode);
        cJSON *after = stats(twin.port);
        assert_int_equal(delta(before, after, "cache|misses"), 1);
        assert_int_equal(delta(before, after, "cache|coalesced"), CONCURRENT - 1);
        assert_int_equal(delta(before, after, "cache|fills"), 1);
        assert_int_equal(delta(before, after, "upstream|requests"), 1);
        cJSON_Delete(before);
        cJSON_Delete(after);
    }
    misses_together(hotpath.port, "together-valuetask", "hotpath");
    stub_control("delay_ms=0");
    twin_switch("valuetask");
}

/* --- allocations ---------------------------------------------------------- */

/* Bytes per request of target in the twin's running mode: 2,000 requests
 * after a warm-up, on one keep-alive connection, from /stats deltas. */
static double bytes_per_request(const char *mode, const char *target)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&c, twin.port), 0);
    for (int i = 0; i < WARMUP; i++) {
        assert_int_equal(hp_it_client_request(&c, "GET", target, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
    }
    char path[64];
    cJSON *a = stats(twin.port);
    for (int i = 0; i < MEASURED; i++) {
        assert_int_equal(hp_it_client_request(&c, "GET", target, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
    }
    cJSON *b = stats(twin.port);
    hp_it_client_close(&c);
    snprintf(path, sizeof(path), "modes|%s|requests", mode);
    assert_int_equal(delta(a, b, path), MEASURED);
    snprintf(path, sizeof(path), "modes|%s|allocated_bytes", mode);
    double per = delta(a, b, path) / MEASURED;
    cJSON_Delete(a);
    cJSON_Delete(b);
    printf("it_twin: %-16s %-12s %7.1f bytes/request\n", mode, target, per);
    return per;
}

static void task_mode_allocates_a_task_per_layer(void **state)
{
    cJSON *s = stats(twin.port);
    double task = hp_it_json_get(s, "runtime|task_bytes");
    cJSON_Delete(s);
    /* One Task<Answer>: 72 bytes on 64-bit .NET 10. */
    assert_true(task >= 48 && task <= 128);

    /* The cache key is filled first, so every request below is a hit. */
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(twin.port, "/cache/alloc", &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);

    static const char *const targets[] = {"/plaintext", "/cache/alloc"};
    static const int tasks[] = {4, 5}; /* layers that return a value on that path */
    double per[4][2];
    for (size_t m = 0; m < 4; m++) {
        twin_switch(MODES[m]);
        for (size_t t = 0; t < 2; t++)
            per[m][t] = bytes_per_request(MODES[m], targets[t]);
    }
    twin_switch("valuetask");
    for (size_t t = 0; t < 2; t++) {
        double extra = per[1][t] - per[0][t];
        printf("it_twin: %s: task mode allocates %.1f bytes/request more than valuetask "
               "(%.2f tasks of %.0f bytes)\n",
               targets[t], extra, extra / task, task);
        /* One task per layer, give or take a quarter task of the process's
         * own allocations (the /stats reads' connections, Kestrel's timers). */
        assert_true(extra > (tasks[t] - 0.25) * task);
        assert_true(extra < (tasks[t] + 0.25) * task);
        /* The other modes allocate no task on this path: less than one per
         * request (what remains is the request id's string), and the same
         * as valuetask mode. */
        assert_true(per[0][t] < task);
        for (size_t m = 2; m < 4; m++)
            assert_true(per[m][t] > per[0][t] - task / 4 && per[m][t] < per[0][t] + task / 4);
    }
}

/* --- reload and command line ----------------------------------------------- */

static void bad_reload_is_refused(void **state)
{
    assert_int_equal(hp_it_server_write_config(&twin, "{\"mode\": \"sometimes\"}"), 0);
    assert_int_equal(hp_it_server_signal(&twin, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&twin, "reload refused", HP_IT_TIMEOUT_MS));
    char *err = hp_it_server_stderr(&twin);
    assert_non_null(strstr(err, "mode: expected"));
    free(err);
    cJSON *s = stats(twin.port);
    const cJSON *m = hp_it_json_at(s, "server|mode");
    assert_true(cJSON_IsString(m));
    assert_string_equal(m->valuestring, "valuetask");
    cJSON_Delete(s);
    assert_int_equal(hp_it_server_write_config(&twin, config), 0);
}

static void expect_refusal(const char *const *argv, int status, const char *needle)
{
    hp_it_output_t out;
    assert_int_equal(hp_it_exec(argv, NULL, 0, HP_IT_PROCESS_MS, &out), 0);
    if (out.status != status || !strstr(out.err, needle)) {
        fprintf(stderr, "it_twin: %s %s: status %d, stderr \"%s\" (expected %d, \"%s\")\n", argv[1],
                argv[2] ? argv[2] : "", out.status, out.err, status, needle);
        fail();
    }
    hp_it_output_free(&out);
}

static void command_line(void **state)
{
    hp_it_output_t out;
    const char *help[] = {hp_it_twin_bin(), "--help", NULL};
    assert_int_equal(hp_it_exec(help, NULL, 0, HP_IT_PROCESS_MS, &out), 0);
    assert_int_equal(out.status, 0);
    assert_non_null(strstr(out.out, "usage: hotpath-kestrel"));
    assert_non_null(strstr(out.out, "valuetask-nopool"));
    hp_it_output_free(&out);

    const char *mode[] = {hp_it_twin_bin(), "--mode", "fast", NULL};
    expect_refusal(mode, 2, "--mode: expected");
    const char *flag[] = {hp_it_twin_bin(), "--frobnicate", NULL};
    expect_refusal(flag, 2, "unknown argument");

    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"{\"mode\": 3}", "mode: expected"},
        {"{\"listen\": {\"port\": \"x\"}}", "listen.port: expected an integer"},
        {"{\"upstream\": {\"port\": 0}}", "upstream.port: expected an integer"},
        {"{\"cache\": []}", "cache: expected an object"},
        {"{\"mode\": ", "not valid JSON"},
    };
    char path[512];
    hp_it_temp_path(path, sizeof(path), "bad-twin.json");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(bad[i].json, f);
        fclose(f);
        const char *argv[] = {hp_it_twin_bin(), "--config", path, "--port", "0", NULL};
        expect_refusal(argv, 1, bad[i].needle);
    }
}

int main(void)
{
    /* The JIT compiles each method once, fully optimised: with tiered
     * compilation (the default) the background recompilation of hot methods
     * allocates too, up to 100 KB in a window of 2,000 requests, which would
     * blur allocation counts that are otherwise exact. Only the twin reads it. */
    setenv("DOTNET_TieredCompilation", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_answer_as_hotpath),
        cmocka_unit_test(concurrent_misses_share_one_fill),
        cmocka_unit_test(task_mode_allocates_a_task_per_layer),
        cmocka_unit_test(bad_reload_is_refused),
        cmocka_unit_test(command_line),
    };
    int failed = cmocka_run_group_tests(tests, start_all, stop_all);
    return hp_it_result(failed + (stop_failed ? 1 : 0));
}
