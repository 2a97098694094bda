/*
 * it_dashboard.c - integration tests for handlers/dashboard.c over real
 * sockets: the page is the embedded bytes, answered like any route (HEAD,
 * 405) and without an allocation; /dashboard/data carries the schema the
 * page reads, summed over workers, with the mode and the time it took
 * effect following SIGHUP. The page itself, in a browser, is
 * tests/browser/dashboard.mjs.
 */
#include "tests/support/fixture.h"

#include "handlers/dashboard/page.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef hp_it_fixture_t fixture_t;

static fixture_t *start(void **state, const char *config, const char *const *args)
{
    fixture_t *f = hp_it_fixture_new(state);
    hp_it_fixture_start_server(f, config, args);
    return f;
}

static void assert_header(const hp_it_resp_t *r, const char *name, const char *value)
{
    const char *v = hp_it_header(r, name);
    assert_non_null(v);
    assert_string_equal(v, value);
}

/* GET /dashboard/data on c; returns it parsed (cJSON_Delete). */
static cJSON *data(hp_it_client_t *c)
{
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_request(c, "GET", "/dashboard/data", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Content-Type", "application/json");
    assert_header(&r, "Cache-Control", "no-store");
    cJSON *d = cJSON_ParseWithLength(r.body, r.body_len);
    if (d == NULL) fprintf(stderr, "not JSON: %s\n", r.body);
    assert_non_null(d);
    hp_it_resp_free(&r);
    return d;
}

static double num(const cJSON *o, const char *path)
{
    const cJSON *v = hp_it_json_at(o, path);
    if (!cJSON_IsNumber(v)) fprintf(stderr, "%s: not a number\n", path);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *path)
{
    const cJSON *v = hp_it_json_at(o, path);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

/* The element of the array at `array` whose `key` is `value`, or NULL. */
static const cJSON *find(const cJSON *root, const char *array, const char *key, const char *value)
{
    const cJSON *arr = hp_it_json_at(root, array);
    assert_true(cJSON_IsArray(arr));
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(e, key);
        if (cJSON_IsString(k) && strcmp(k->valuestring, value) == 0) return e;
    }
    return NULL;
}

/* A route's [requests, allocations, bytes] in a mode ("vt" or "task"). */
static void assert_route(const cJSON *d, const char *path, const char *mode, double req,
                         double allocs)
{
    const cJSON *r = find(d, "routes", "path", path);
    assert_non_null(r);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(r, mode);
    assert_int_equal(cJSON_GetArraySize(t), 3);
    assert_int_equal(cJSON_GetArrayItem(t, 0)->valuedouble, req);
    assert_int_equal(cJSON_GetArrayItem(t, 1)->valuedouble, allocs);
}

static void page_is_the_embedded_bytes_answered_like_any_route(void **state)
{
    fixture_t *f = start(state, NULL, NULL);
    hp_it_client_t c;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);

    assert_int_equal(hp_it_client_request(&c, "GET", "/dashboard", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_header(&r, "Content-Type", "text/html; charset=utf-8");
    assert_header(&r, "Cache-Control", "no-cache");
    assert_int_equal(r.body_len, hp_dashboard_page_len);
    assert_memory_equal(r.body, hp_dashboard_page, hp_dashboard_page_len);
    /* What embed.mjs made of it: one document, uPlot inlined, no marker left. */
    assert_int_equal(strncmp(r.body, "<!doctype html>", 15), 0);
    assert_non_null(strstr(r.body, "uPlot"));
    assert_non_null(strstr(r.body, "/dashboard/data"));
    assert_null(strstr(r.body, "{{"));
    hp_it_resp_free(&r);

    assert_int_equal(hp_it_client_sendf(&c, "HEAD /dashboard HTTP/1.1\r\nHost: t\r\n\r\n"), 0);
    assert_int_equal(hp_it_client_read(&c, &r, true), 0);
    assert_int_equal(r.status, 200);
    char len[24];
    snprintf(len, sizeof(len), "%zu", hp_dashboard_page_len);
    assert_header(&r, "Content-Length", len);
    assert_int_equal(r.body_len, 0);
    hp_it_resp_free(&r);

    static const char *const paths[] = {"/dashboard", "/dashboard/data"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(hp_it_client_request(&c, "POST", paths[i], "Content-Length: 0\r\n", &r),
                         0);
        assert_int_equal(r.status, 405);
        assert_header(&r, "Allow", "GET, HEAD");
        hp_it_resp_free(&r);
    }
    assert_int_equal(hp_it_client_request(&c, "GET", "/dashboard/nothing", NULL, &r), 0);
    assert_int_equal(r.status, 404);
    hp_it_resp_free(&r);

    /* Serving the page is a pointer and a length: nothing allocated. */
    cJSON *d = data(&c);
    assert_route(d, "/dashboard", "vt", 2, 0);
    cJSON_Delete(d);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

static void data_sums_every_worker(void **state)
{
    const char *args[] = {"--workers", "2", NULL};
    fixture_t *f = start(state, NULL, args);
    int port = f->server.port;
    /* Fresh connections, spread over the workers by SO_REUSEPORT. */
    for (int i = 0; i < 8; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_get(port, "/plaintext", &r), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
    }
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, port), 0);
    cJSON *d = data(&c);
    assert_int_equal(num(d, "v"), 1);
    assert_string_equal(str(d, "mode"), "valuetask");
    assert_int_equal(num(d, "mode_since_ms"), 0);
    assert_int_equal(num(d, "workers"), 2);
    assert_int_equal(num(d, "reloads"), 0);
    assert_true(num(d, "uptime_ms") > 0);
    assert_route(d, "/plaintext", "vt", 8, 0);
    assert_route(d, "/plaintext", "task", 0, 0);

    const cJSON *l = find(d, "layers", "name", "plaintext");
    assert_non_null(l);
    assert_string_equal(str(l, "kind"), "handler");
    assert_int_equal(num(l, "calls"), 8);
    assert_int_equal(num(l, "sync"), 8);
    assert_int_equal(num(l, "avoided"), 8);
    assert_int_equal(num(l, "allocated"), 0);
    /* 8 calls since start is far below the hot rate: "either". */
    assert_string_equal(str(l, "advice"), "either");
    assert_non_null(find(d, "layers", "name", "server_headers"));

    static const char *const numbers[] = {
        "cache|hits",        "cache|misses",  "cache|coalesced", "cache|stale",
        "upstream|requests", "upstream|done", "upstream|errors", "upstream|latency_us",
        "misuse|consumed",   "misuse|stale",  "conns|open",      "conns|refused",
        "rejections"};
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++)
        num(d, numbers[i]);
    assert_int_equal(num(d, "misuse|consumed") + num(d, "misuse|stale"), 0);
    assert_true(num(d, "conns|open") >= 1); /* this one */
    cJSON_Delete(d);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

/* Poll /dashboard/data on c until `mode` is the mode, bounded. */
static cJSON *data_in_mode(hp_it_client_t *c, const char *mode)
{
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    for (;;) {
        cJSON *d = data(c);
        if (strcmp(str(d, "mode"), mode) == 0) return d;
        cJSON_Delete(d);
        assert_true(hp_it_now_ms() < deadline);
        hp_it_sleep_ms(10);
    }
}

static void reload(fixture_t *f, const char *json, const char *line)
{
    assert_int_equal(hp_it_server_write_config(&f->server, json), 0);
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, line, HP_IT_TIMEOUT_MS));
}

static void data_follows_the_mode_and_when_it_changed(void **state)
{
    fixture_t *f = start(state, "{\"mode\": \"valuetask\"}", NULL);
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    cJSON *d = data_in_mode(&c, "valuetask");
    assert_int_equal(num(d, "mode_since_ms"), 0); /* since start */
    cJSON_Delete(d);

    hp_it_sleep_ms(20);
    reload(f, "{\"mode\": \"task\"}", "(mode task)");
    d = data_in_mode(&c, "task");
    double since = num(d, "mode_since_ms");
    assert_true(since >= 20);
    assert_true(since <= num(d, "uptime_ms"));
    cJSON_Delete(d);

    /* A reload that keeps the mode keeps the time it took effect. */
    reload(f, "{\"mode\": \"task\", \"advice\": {\"hot_rate\": 5}}", "reloaded");
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    for (;;) {
        d = data(&c);
        if (num(d, "reloads") == 2) break;
        cJSON_Delete(d);
        assert_true(hp_it_now_ms() < deadline);
        hp_it_sleep_ms(10);
    }
    assert_string_equal(str(d, "mode"), "task");
    assert_int_equal(num(d, "mode_since_ms"), since);
    cJSON_Delete(d);

    hp_it_sleep_ms(20);
    reload(f, "{\"mode\": \"valuetask\"}", "(mode valuetask)");
    d = data_in_mode(&c, "valuetask");
    assert_true(num(d, "mode_since_ms") >= since + 20);
    cJSON_Delete(d);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(page_is_the_embedded_bytes_answered_like_any_route,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(data_sums_every_worker, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(data_follows_the_mode_and_when_it_changed,
                                  hp_it_fixture_teardown),
    };
    return hp_it_result(cmocka_run_group_tests(tests, NULL, NULL));
}
