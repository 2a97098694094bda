/*
 * test_mw_metrics.c - middleware/metrics.c through the real parser and
 * chain of an in-memory worker, read back through /stats as a client
 * would: answers counted by route, mode and status class, one latency
 * sample per answer; none of it without the middleware (the requests
 * themselves are counted by the connection either way).
 */
#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "app/app.h"
#include "server/config.h"
#include "tests/support/memserver.h"

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define GET(path) "GET " path " HTTP/1.1\r\nHost: h\r\n\r\n"

static void send_all(hp_memserver_t *m, const char *req, int times)
{
    for (int i = 0; i < times; i++) {
        hp_capture_t cap;
        hp_memconn_exchange(m, req, strlen(req), false, &cap);
        assert_true(hp_capture_status(cap.data) > 0);
        free(cap.data);
    }
}

/* One figure of route's valuetask-mode row in /stats (path: '|'-separated
 * keys under it, e.g. "status|2xx"). */
static double route_figure(hp_memserver_t *m, const char *route, const char *path)
{
    hp_capture_t cap;
    hp_memconn_exchange(m, GET("/stats"), strlen(GET("/stats")), false, &cap);
    cJSON *root = cJSON_Parse(hp_capture_body(cap.data));
    assert_non_null(root);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "routes"), route),
        "valuetask");
    char keys[64];
    snprintf(keys, sizeof(keys), "%s", path);
    for (char *k = strtok(keys, "|"); k && v; k = strtok(NULL, "|"))
        v = cJSON_GetObjectItemCaseSensitive(v, k);
    if (!cJSON_IsNumber(v)) fail_msg("/stats: routes|%s|valuetask|%s is missing", route, path);
    double d = v->valuedouble;
    cJSON_Delete(root);
    free(cap.data);
    return d;
}

static void answers_are_counted_by_status_class(void **state)
{
    hp_memserver_t m;
    hp_memserver_open(&m, NULL);
    send_all(&m, GET("/plaintext"), 3);
    send_all(&m, "DELETE /plaintext HTTP/1.1\r\nHost: h\r\n\r\n", 2); /* the 405 route's */
    send_all(&m, GET("/nope"), 1);
    assert_int_equal(route_figure(&m, "/plaintext", "requests"), 3);
    assert_int_equal(route_figure(&m, "/plaintext", "status|2xx"), 3);
    assert_int_equal(route_figure(&m, "/plaintext", "status|4xx"), 0);
    assert_int_equal(route_figure(&m, "(method not allowed)", "status|4xx"), 2);
    assert_int_equal(route_figure(&m, "(not found)", "status|4xx"), 1);
    /* Every answer was timed: a mean exists, and it is not absurd (a
     * request in memory takes microseconds, not seconds). */
    double mean = route_figure(&m, "/plaintext", "latency_mean_us");
    assert_true(mean > 0 && mean < 1e6);
    hp_memserver_close(&m);
}

static void without_it_nothing_is_timed(void **state)
{
    hp_memserver_t m;
    hp_memserver_open(&m, "{\"middleware\": [{\"name\": \"server_headers\"}]}");
    send_all(&m, GET("/plaintext"), 4);
    assert_int_equal(route_figure(&m, "/plaintext", "requests"), 4); /* the connection's */
    assert_int_equal(route_figure(&m, "/plaintext", "status|2xx"), 0);
    assert_int_equal(route_figure(&m, "/plaintext", "latency_mean_us"), 0);
    hp_memserver_close(&m);
}

static void it_takes_no_options(void **state)
{
    hp_assert_config_refused("{\"middleware\": [{\"name\": \"metrics\", \"buckets\": 4}]}",
                             "middleware[0].buckets: unknown key");
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(answers_are_counted_by_status_class),
        cmocka_unit_test(without_it_nothing_is_timed),
        cmocka_unit_test(it_takes_no_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
