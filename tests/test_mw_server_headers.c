/*
 * test_mw_server_headers.c - middleware/server_headers.c through the real
 * parser and chain of an in-memory worker: Server and Date on every answer
 * that goes through the chain, Server before the rest of the chain runs and
 * Date after it (so an answer that waited carries the time it was
 * completed), the Server value from its option, and its option refusals.
 */
#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "app/app.h"
#include "server/config.h"
#include "tests/support/memserver.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define GET(path) "GET " path " HTTP/1.1\r\nHost: h\r\n\r\n"

/* One request on a fresh memory connection of a worker on json; the
 * output (malloc'd) in *out. */
static void exchange(const char *json, const char *req, char **out)
{
    hp_memserver_t m;
    hp_capture_t cap;
    hp_memserver_open(&m, json);
    hp_memconn_exchange(&m, req, strlen(req), false, &cap);
    hp_memserver_close(&m);
    assert_non_null(cap.data);
    *out = cap.data;
}

/* RFC 9110 IMF-fixdate, within a few seconds of now. */
static void assert_date_now(const char *date)
{
    assert_non_null(date);
    struct tm tm = {0};
    const char *end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_non_null(end);
    assert_int_equal(*end, '\0');
    time_t t = timegm(&tm), now = time(NULL);
    assert_true(t <= now + 2 && t >= now - 5);
}

/* Where a header line starts in the first answer, to check their order. */
static const char *at(const char *text, const char *line)
{
    const char *p = strstr(text, line);
    if (p == NULL) fail_msg("no \"%s\" in:\n%s", line, text);
    return p;
}

static void server_first_date_last(void **state)
{
    char *out, buf[64];
    exchange(NULL, GET("/plaintext"), &out);
    assert_int_equal(hp_capture_status(out), 200);
    assert_string_equal(hp_capture_header(out, "Server", buf, sizeof(buf)), "hotpath");
    assert_int_equal(hp_count(out, "\r\nServer: "), 1);
    assert_int_equal(hp_count(out, "\r\nDate: "), 1);
    assert_date_now(hp_capture_header(out, "Date", buf, sizeof(buf)));
    /* The default chain is server_headers, request_id, metrics: Server is
     * added on the way in, before request_id's id; Date on the way out,
     * after the layers inside it added theirs. */
    assert_true(at(out, "\r\nServer: ") < at(out, "\r\nX-Request-Id: "));
    assert_true(at(out, "\r\nX-Request-Id: ") < at(out, "\r\nDate: "));
    free(out);
}

static void on_every_answer_of_the_chain(void **state)
{
    static const char *const reqs[] = {GET("/nope"), "DELETE /json HTTP/1.1\r\nHost: h\r\n\r\n",
                                       GET("/json"), GET("/stats")};
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        char *out, buf[64];
        exchange(NULL, reqs[i], &out);
        assert_string_equal(hp_capture_header(out, "Server", buf, sizeof(buf)), "hotpath");
        assert_date_now(hp_capture_header(out, "Date", buf, sizeof(buf)));
        free(out);
    }
}

/* An answer that completes after a wait (/upstream, whose upstream refuses
 * connections: a 502 from the loop, after the request returned pending)
 * gets its Date on the way out too. */
static void on_an_answer_that_waited(void **state)
{
    hp_memserver_t m;
    hp_capture_t cap;
    hp_memserver_open(&m, "{\"upstream\": {\"port\": 1}}");
    hp_conn_t *c = hp_memconn_new(&m, &cap);
    static const char req[] = GET("/upstream/x");
    hp_conn_feed(c, req, sizeof(req) - 1);
    assert_null(cap.data); /* pending */
    for (int i = 0; i < 200 && cap.data == NULL; i++)
        uv_run(&m.w.loop, UV_RUN_ONCE);
    char buf[64];
    assert_int_equal(hp_capture_status(cap.data), 502);
    assert_string_equal(hp_capture_header(cap.data, "Server", buf, sizeof(buf)), "hotpath");
    assert_date_now(hp_capture_header(cap.data, "Date", buf, sizeof(buf)));
    hp_conn_close(c);
    hp_memserver_close(&m);
    free(cap.data);
}

static void the_server_value_is_an_option(void **state)
{
    char *out, buf[80];
    exchange("{\"middleware\": [{\"name\": \"server_headers\", \"server\": \"edge/1.0 (test)\"}]}",
             GET("/plaintext"), &out);
    assert_string_equal(hp_capture_header(out, "Server", buf, sizeof(buf)), "edge/1.0 (test)");
    assert_null(hp_capture_header(out, "X-Request-Id", buf, sizeof(buf))); /* not in the chain */
    free(out);
}

static void bad_options_are_refused_by_name(void **state)
{
    static const struct {
        const char *json;
        const char *msg;
    } bad[] = {
        {"{\"middleware\": [{\"name\": \"server_headers\", \"sever\": \"x\"}]}",
         "middleware[0].sever: unknown key"},
        {"{\"middleware\": [{\"name\": \"server_headers\", \"server\": \"\"}]}",
         "middleware[0].server: expected a non-empty string of at most 63 bytes"},
        {"{\"middleware\": [{\"name\": \"server_headers\", \"server\": 7}]}",
         "middleware[0].server: expected a non-empty string of at most 63 bytes"},
        {"{\"middleware\": [{\"name\": \"server_headers\", \"server\": "
         "\"0123456789012345678901234567890123456789012345678901234567890123\"}]}",
         "middleware[0].server: expected a non-empty string of at most 63 bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        hp_assert_config_refused(bad[i].json, bad[i].msg);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(server_first_date_last),
        cmocka_unit_test(on_every_answer_of_the_chain),
        cmocka_unit_test(on_an_answer_that_waited),
        cmocka_unit_test(the_server_value_is_an_option),
        cmocka_unit_test(bad_options_are_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
