/*
 * it_http.c - integration tests for the server core's HTTP/1.1: the real
 * binary on an ephemeral loopback port, spoken to over sockets.
 *
 * One server (defaults, one worker) serves the whole group: starting one per
 * test would cost more than every request here together, and nothing below
 * depends on another test's counters except through deltas. The group's
 * teardown stops it and requires exit status 0, which in the sanitizer build
 * means no leak and no sanitizer report in the server after all of these.
 *
 * What is checked: TechEmpower's rules for /plaintext and /json (Server,
 * Date in IMF-fixdate, Content-Length), X-Request-Id kept or replaced,
 * keep-alive in both HTTP versions, pipelining and requests split at every
 * byte, HEAD, 404/405, /echo with both body framings and 100-continue,
 * malformed requests (a table: bytes -> status, then the close), the index,
 * /stats' shape and /metrics through promtool.
 */
#include "fixture.h"
#include "harness.h"

#include "runtime/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static hp_it_server_t server;
/* cmocka 1.1.5 reports a failed group teardown but still returns 0, so
 * main() adds this to the result itself. */
static bool server_exit_failed;

/* The upstream stub, for the requests that complete asynchronously. */
static hp_it_server_t upstream;
#define UPSTREAM_DELAY_MS "20"

static int start_server(void **state)
{
    const char *args[] = {"--delay-ms", UPSTREAM_DELAY_MS, NULL};
    if (hp_it_upstream_start(&upstream, args) != 0) return -1;
    char config[128];
    /* A short drain: a test that fails midway leaves its connection open,
     * and the stop should not wait the default 5 s for it. */
    snprintf(config, sizeof(config),
             "{\"upstream\": {\"port\": %d}, \"limits\": {\"drain_timeout_ms\": 1000}}",
             upstream.port);
    if (hp_it_server_start(&server, config, NULL) != 0) {
        hp_it_upstream_stop(&upstream);
        return -1;
    }
    return 0;
}

static int stop_server(void **state)
{
    int st = hp_it_server_stop(&server);
    if (st != 0) {
        fprintf(stderr, "it_http: the server exited with status %d (expected 0)\n", st);
        server_exit_failed = true;
    }
    hp_it_upstream_stop(&upstream);
    return st == 0 ? 0 : -1;
}

static void open_client(hp_it_client_t *c)
{
    assert_int_equal(hp_it_client_open(c, server.port), 0);
}

static void request_ok(hp_it_client_t *c, const char *method, const char *target,
                       const char *headers, hp_it_resp_t *r)
{
    assert_int_equal(hp_it_client_request(c, method, target, headers, r), 0);
}

/* The characters parser.c accepts in an X-Request-Id. */
static bool valid_id(const char *s)
{
    if (s == NULL || !*s) return false;
    for (; *s; s++)
        if (!strchr("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.:/+=", *s))
            return false;
    return true;
}

/* RFC 9110 IMF-fixdate, exactly ("Sun, 06 Nov 1994 08:49:37 GMT"), and
 * within a few seconds of now. */
static void assert_date_now(const char *date)
{
    assert_non_null(date);
    assert_int_equal(strlen(date), 29);
    struct tm tm = {0};
    const char *end = strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_non_null(end);
    assert_int_equal(*end, '\0');
    char again[64];
    strftime(again, sizeof(again), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_string_equal(again, date); /* canonical: names, padding, GMT */
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    assert_true(t <= now + 2 && t >= now - 5);
}

/* --- /plaintext, /json ---------------------------------------------------- */

static void plaintext_follows_techempower_rules(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    request_ok(&c, "GET", "/plaintext", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.http_minor, 1);
    assert_string_equal(r.body, "Hello, World!");
    assert_int_equal(r.body_len, 13);
    assert_string_equal(hp_it_header(&r, "Content-Type"), "text/plain");
    assert_string_equal(hp_it_header(&r, "Content-Length"), "13");
    assert_int_equal(hp_it_header_count(&r, "Content-Length"), 1);
    assert_null(hp_it_header(&r, "Transfer-Encoding"));
    assert_string_equal(hp_it_header(&r, "Server"), "hotpath");
    assert_int_equal(hp_it_header_count(&r, "Server"), 1);
    assert_int_equal(hp_it_header_count(&r, "Date"), 1);
    assert_date_now(hp_it_header(&r, "Date"));
    assert_int_equal(hp_it_header_count(&r, "X-Request-Id"), 1);
    assert_true(valid_id(hp_it_header(&r, "X-Request-Id")));
    assert_null(hp_it_header(&r, "Connection")); /* HTTP/1.1 keep-alive is implicit */
    assert_true(r.keep_alive);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

static void request_id_is_echoed_when_valid(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    request_ok(&c, "GET", "/plaintext", "X-Request-Id: abc-123_x.y:z/+=\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hp_it_header(&r, "X-Request-Id"), "abc-123_x.y:z/+=");
    hp_it_resp_free(&r);
    /* The header name is case-insensitive. */
    request_ok(&c, "GET", "/json", "x-request-id: lower-case-name\r\n", &r);
    assert_string_equal(hp_it_header(&r, "X-Request-Id"), "lower-case-name");
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

static void request_id_of_128_bytes_is_kept_129_replaced(void **state)
{
    char id[160], hdr[200];
    hp_it_client_t c;
    open_client(&c);
    for (int len = 127; len <= 129; len++) {
        memset(id, 'k', (size_t)len);
        id[len] = '\0';
        snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", id);
        hp_it_resp_t r;
        request_ok(&c, "GET", "/plaintext", hdr, &r);
        if (len <= 128)
            assert_string_equal(hp_it_header(&r, "X-Request-Id"), id);
        else
            assert_string_not_equal(hp_it_header(&r, "X-Request-Id"), id);
        hp_it_resp_free(&r);
    }
    hp_it_client_close(&c);
}

/* Two field lines of one name are one list, "abc, def" (RFC 9110 5.3):
 * not one id "abcdef" that neither line carried. */
static void repeated_header_lines_are_not_concatenated(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    request_ok(&c, "GET", "/plaintext", "X-Request-Id: abc\r\nX-Request-Id: def\r\n", &r);
    assert_int_equal(r.status, 200);
    const char *id = hp_it_header(&r, "X-Request-Id");
    if (strcmp(id, "abcdef") == 0)
        fprintf(stderr, "two X-Request-Id lines \"abc\" and \"def\" came back as \"%s\"\n", id);
    assert_string_not_equal(id, "abcdef");
    assert_true(valid_id(id));
    hp_it_resp_free(&r);

    assert_int_equal(hp_it_client_sendf(&c, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: "
                                            "text/plain\r\nContent-Type: text/html\r\n"
                                            "Content-Length: 2\r\n\r\nhi"),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    const char *ct = hp_it_header(&r, "Content-Type");
    if (strcmp(ct, "text/plain") && strcmp(ct, "text/plain, text/html"))
        fprintf(stderr,
                "two Content-Type lines \"text/plain\" and \"text/html\" were echoed "
                "as \"%s\"\n",
                ct);
    /* The first, or the list; never the two run together. */
    assert_true(strcmp(ct, "text/plain") == 0 || strcmp(ct, "text/plain, text/html") == 0);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

static void request_id_is_replaced_when_invalid(void **state)
{
    /* Values llhttp accepts (a space, a quote, a semicolon, 129 bytes) but
     * the id validator refuses: each answer carries a generated id. */
    char long_id[160];
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    const char *bad[] = {"a b", "\"quoted\"", "semi;colon", "", long_id};
    hp_it_client_t c;
    open_client(&c);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hp_it_resp_t r;
        char hdr[256];
        snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\n", bad[i]);
        request_ok(&c, "GET", "/plaintext", hdr, &r);
        assert_int_equal(r.status, 200);
        const char *id = hp_it_header(&r, "X-Request-Id");
        assert_int_equal(hp_it_header_count(&r, "X-Request-Id"), 1);
        assert_true(valid_id(id));
        assert_string_not_equal(id, bad[i]);
        hp_it_resp_free(&r);
    }
    hp_it_client_close(&c);
}

static void json_is_exact(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    request_ok(&c, "GET", "/json", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"message\":\"Hello, World!\"}");
    assert_string_equal(hp_it_header(&r, "Content-Type"), "application/json");
    assert_string_equal(hp_it_header(&r, "Content-Length"), "27");
    assert_string_equal(hp_it_header(&r, "Server"), "hotpath");
    assert_date_now(hp_it_header(&r, "Date"));
    assert_true(valid_id(hp_it_header(&r, "X-Request-Id")));
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

/* --- keep-alive ------------------------------------------------------------ */

static void keep_alive_serves_100_requests_on_one_connection(void **state)
{
    cJSON *before = hp_it_stats(server.port);
    assert_non_null(before);
    hp_it_client_t c;
    open_client(&c);
    char prev_id[128] = "";
    for (int i = 0; i < 100; i++) {
        hp_it_resp_t r;
        request_ok(&c, "GET", i % 2 ? "/json" : "/plaintext", NULL, &r);
        assert_int_equal(r.status, 200);
        assert_true(r.keep_alive);
        assert_false(r.closed);
        assert_string_equal(r.body, i % 2 ? "{\"message\":\"Hello, World!\"}" : "Hello, World!");
        const char *id = hp_it_header(&r, "X-Request-Id");
        assert_true(valid_id(id));
        assert_string_not_equal(id, prev_id); /* one generated id per request */
        snprintf(prev_id, sizeof(prev_id), "%s", id);
        hp_it_resp_free(&r);
    }
    assert_true(hp_it_client_still_open(&c, 50));
    cJSON *after = hp_it_stats(server.port);
    assert_non_null(after);
    /* One connection for the 100 requests, one for the second /stats. */
    assert_int_equal(hp_it_json_get(after, "connections|accepted") -
                         hp_it_json_get(before, "connections|accepted"),
                     2);
    cJSON_Delete(before);
    cJSON_Delete(after);
    hp_it_client_close(&c);
}

static void http10_without_keep_alive_closes(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    assert_int_equal(hp_it_client_sendf(&c, "GET /plaintext HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_string_equal(hp_it_header(&r, "Content-Length"), "13");
    assert_string_equal(hp_it_header(&r, "Connection"), "close");
    assert_false(r.keep_alive);
    assert_true(r.closed);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

static void http10_with_keep_alive_stays_open(void **state)
{
    hp_it_client_t c;
    open_client(&c);
    for (int i = 0; i < 3; i++) {
        hp_it_resp_t r;
        assert_int_equal(
            hp_it_client_sendf(&c, "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
        assert_int_equal(hp_it_client_read(&c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(hp_it_header(&r, "Connection"), "keep-alive");
        /* HTTP/1.0 has no chunked coding: the length must be there. */
        assert_string_equal(hp_it_header(&r, "Content-Length"), "27");
        assert_true(r.keep_alive);
        assert_false(r.closed);
        hp_it_resp_free(&r);
    }
    assert_true(hp_it_client_still_open(&c, 50));
    hp_it_client_close(&c);
}

static void http11_connection_close_is_honoured(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    request_ok(&c, "GET", "/plaintext", "Connection: close\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_string_equal(hp_it_header(&r, "Connection"), "close");
    assert_true(r.closed);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);

    /* With a request pipelined behind it: that one is not answered, and the
     * close is orderly (FIN, not a reset that could destroy the answer). */
    open_client(&c);
    assert_int_equal(hp_it_client_sendf(&c, "GET /plaintext HTTP/1.1\r\nHost: h\r\nConnection: "
                                            "close\r\n\r\nGET /json HTTP/1.1\r\nHost: h\r\n\r\n"),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_true(r.closed);
    assert_false(c.reset);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

/* --- pipelining and split requests ---------------------------------------- */

typedef struct {
    const char *method;
    const char *target;
    int status;
    const char *body; /* NULL: not checked */
} pipe_step_t;

static void pipelined_requests_are_answered_in_order(void **state)
{
    static const pipe_step_t steps[16] = {
        {"GET", "/plaintext", 200, "Hello, World!"},
        {"GET", "/json", 200, "{\"message\":\"Hello, World!\"}"},
        {"GET", "/nope", 404, NULL},
        {"HEAD", "/plaintext", 200, ""},
        {"GET", "/plaintext", 200, "Hello, World!"},
        {"HEAD", "/json", 200, ""},
        {"GET", "/json", 200, "{\"message\":\"Hello, World!\"}"},
        {"GET", "/missing/too", 404, NULL},
        {"GET", "/plaintext", 200, "Hello, World!"},
        {"HEAD", "/plaintext", 200, ""},
        {"HEAD", "/nope", 404, ""},
        {"GET", "/json", 200, "{\"message\":\"Hello, World!\"}"},
        {"GET", "/plaintext", 200, "Hello, World!"},
        {"DELETE", "/plaintext", 405, NULL},
        {"GET", "/json", 200, "{\"message\":\"Hello, World!\"}"},
        {"GET", "/plaintext", 200, "Hello, World!"},
    };
    char batch[4096];
    size_t len = 0;
    for (int i = 0; i < 16; i++)
        len +=
            (size_t)snprintf(batch + len, sizeof(batch) - len,
                             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: pipe-%02d\r\n\r\n",
                             steps[i].method, steps[i].target, i);
    hp_it_client_t c;
    open_client(&c);
    assert_int_equal(hp_it_client_send(&c, batch, len), 0); /* one write */
    for (int i = 0; i < 16; i++) {
        hp_it_resp_t r;
        bool head = strcmp(steps[i].method, "HEAD") == 0;
        assert_int_equal(hp_it_client_read(&c, &r, head), 0);
        char id[32];
        snprintf(id, sizeof(id), "pipe-%02d", i);
        assert_string_equal(hp_it_header(&r, "X-Request-Id"), id);
        assert_int_equal(r.status, steps[i].status);
        if (steps[i].body) assert_string_equal(r.body, steps[i].body);
        if (head) assert_int_equal(r.body_len, 0);
        assert_true(r.keep_alive);
        hp_it_resp_free(&r);
    }
    assert_true(hp_it_client_still_open(&c, 50));
    hp_it_client_close(&c);
}

/* count GETs in one buffer (malloc'd): request i asks for `other` when
 * i % every == 0, /plaintext otherwise, with X-Request-Id "<id>-<i>". */
static char *burst(int count, const char *id, int every, const char *other, size_t *len)
{
    size_t cap = (size_t)count * 96;
    char *batch = malloc(cap);
    *len = 0;
    for (int i = 0; i < count; i++)
        *len += (size_t)snprintf(batch + *len, cap - *len,
                                 "GET %s HTTP/1.1\r\nHost: h\r\nX-Request-Id: %s-%04d\r\n\r\n",
                                 i % every ? "/plaintext" : other, id, i);
    return batch;
}

/* More requests in one write than one read (64 KiB) holds, answered with
 * more output than the socket takes at once: requests cut at read
 * boundaries, the mid-batch flush, and writes the kernel refuses (queued,
 * reading paused, parsing resumed from the carried bytes) all happen. */
static void pipelined_burst_beyond_the_buffers(void **state)
{
    enum { COUNT = 3000 };
    size_t len;
    char *batch = burst(COUNT, "burst", 3, "/json", &len);
    assert_true(len > 2 * 65536);
    hp_it_client_t c;
    open_client(&c);
    assert_int_equal(hp_it_client_send(&c, batch, len), 0);
    free(batch);
    for (int i = 0; i < COUNT; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_read(&c, &r, false), 0);
        char id[32];
        snprintf(id, sizeof(id), "burst-%04d", i);
        if (r.status != 200 || strcmp(hp_it_header(&r, "X-Request-Id") ?: "", id))
            fprintf(stderr, "burst response %d: status %d, id %s\n", i, r.status,
                    hp_it_header(&r, "X-Request-Id"));
        assert_int_equal(r.status, 200);
        assert_string_equal(hp_it_header(&r, "X-Request-Id"), id);
        assert_string_equal(r.body, i % 3 ? "Hello, World!" : "{\"message\":\"Hello, World!\"}");
        hp_it_resp_free(&r);
    }
    assert_true(hp_it_client_still_open(&c, 50));
    hp_it_client_close(&c);
}

/* A reader slower than the server: a small receive window, and nothing read
 * until every request is sent. Some 8 MB of answers to 55 KB of requests
 * outgrow the server's socket buffer (4 MiB at most by Linux's default
 * tcp_wmem), so writes are queued, reading stops, and the rest of the
 * batch waits as carried bytes until the queue drains. */
static void pipelined_burst_to_a_slow_reader(void **state)
{
    enum { COUNT = 1600 };
    size_t len;
    char *batch = burst(COUNT, "slow", 2, "/metrics", &len);
    cJSON *before = hp_it_stats(server.port);
    assert_non_null(before);
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open_rcvbuf(&c, server.port, 16384), 0);
    assert_int_equal(hp_it_client_send(&c, batch, len), 0);
    free(batch);
    /* Read nothing until the server's writes have backed up (a fixed sleep
     * was not enough for a server slowed by the sanitizers on a loaded
     * machine: it then never got ahead of this reader). */
    double queued0 = hp_it_json_get(before, "io|writes_queued");
    long long give_up = hp_it_now_ms() + 10 * HP_IT_TIMEOUT_MS;
    while (hp_it_stat(server.port, "io|writes_queued") == queued0 && hp_it_now_ms() < give_up)
        hp_it_sleep_ms(10);
    for (int i = 0; i < COUNT; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_read(&c, &r, false), 0);
        char id[32];
        snprintf(id, sizeof(id), "slow-%04d", i);
        assert_int_equal(r.status, 200);
        assert_string_equal(hp_it_header(&r, "X-Request-Id"), id);
        if (i % 2)
            assert_string_equal(r.body, "Hello, World!");
        else
            assert_non_null(strstr(r.body, "# TYPE hotpath_requests_total counter"));
        hp_it_resp_free(&r);
    }
    assert_true(hp_it_client_still_open(&c, 50));
    hp_it_client_close(&c);
    cJSON *after = hp_it_stats(server.port);
    assert_non_null(after);
    /* The path this test is for was taken. */
    assert_true(hp_it_json_get(after, "io|writes_queued") > queued0);
    cJSON_Delete(before);
    cJSON_Delete(after);
}

/* Pipelined behind requests that wait on the upstream (conn.c parks the
 * bytes after a pending request and resumes them once it is answered):
 * answers still come in request order, the synchronous ones after the
 * slow ones they followed. */
static void pipelining_behind_asynchronous_requests(void **state)
{
    static const pipe_step_t steps[] = {
        {"GET", "/upstream/items/p0", 200, NULL},
        {"GET", "/plaintext", 200, "Hello, World!"},
        {"GET", "/upstream/items/p2", 200, NULL},
        {"HEAD", "/plaintext", 200, ""},
        {"HEAD", "/upstream/items/p4", 200, ""},
        {"GET", "/json", 200, "{\"message\":\"Hello, World!\"}"},
        {"POST", "/echo", 200, ""},
        {"GET", "/upstream/items/p7", 200, NULL},
    };
    enum { N_STEPS = sizeof(steps) / sizeof(steps[0]) };
    char batch[4096];
    size_t len = 0;
    for (int i = 0; i < N_STEPS; i++)
        len += (size_t)snprintf(batch + len, sizeof(batch) - len,
                                "%s %s HTTP/1.1\r\nHost: h\r\nX-Request-Id: async-%d\r\n%s\r\n",
                                steps[i].method, steps[i].target, i,
                                strcmp(steps[i].method, "POST") ? "" : "Content-Length: 0\r\n");
    hp_it_client_t c;
    open_client(&c);
    for (int round = 0; round < 2; round++) {
        /* Round 0: one write. Round 1: one request per write, 5 ms apart,
         * so later ones arrive while an earlier one is pending. */
        if (round == 0) {
            assert_int_equal(hp_it_client_send(&c, batch, len), 0);
        } else {
            size_t cuts[N_STEPS], n = 0;
            for (const char *p = batch; (p = strstr(p, "\r\n\r\n")) != NULL && n < N_STEPS; p += 4)
                cuts[n++] = (size_t)(p + 4 - batch);
            assert_int_equal(hp_it_client_send_split(&c, batch, len, cuts, n - 1, 5000), 0);
        }
        for (int i = 0; i < N_STEPS; i++) {
            hp_it_resp_t r;
            bool head = strcmp(steps[i].method, "HEAD") == 0;
            assert_int_equal(hp_it_client_read(&c, &r, head), 0);
            char id[32];
            snprintf(id, sizeof(id), "async-%d", i);
            assert_string_equal(hp_it_header(&r, "X-Request-Id"), id);
            assert_int_equal(r.status, steps[i].status);
            if (steps[i].body)
                assert_string_equal(r.body, steps[i].body);
            else {
                char key[32];
                snprintf(key, sizeof(key), "\"key\":\"p%d\"", i);
                assert_non_null(strstr(r.body, key));
            }
            if (head) assert_int_equal(r.body_len, 0);
            assert_true(r.keep_alive);
            hp_it_resp_free(&r);
        }
    }
    assert_true(hp_it_client_still_open(&c, 50));
    hp_it_client_close(&c);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* An answer that completes asynchronously is written when it completes, not
 * at the worker's next tick (250 ms): with the upstream answering after
 * UPSTREAM_DELAY_MS, the median of a few requests one after another stays
 * near that. */
static void asynchronous_answer_is_not_held_until_the_next_tick(void **state)
{
    enum { RUNS = 5, SLACK_MS = 80 };
    long long took[RUNS];
    hp_it_client_t c;
    open_client(&c);
    for (int i = 0; i < RUNS; i++) {
        hp_it_resp_t r;
        char target[64];
        snprintf(target, sizeof(target), "/upstream/items/lat%d", i);
        long long t0 = hp_it_now_ms();
        request_ok(&c, "GET", target, NULL, &r);
        took[i] = hp_it_now_ms() - t0;
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
    }
    hp_it_client_close(&c);
    qsort(took, RUNS, sizeof(took[0]), cmp_ll);
    printf("it_http: /upstream with a %s ms upstream: %lld %lld %lld %lld %lld ms\n",
           UPSTREAM_DELAY_MS, took[0], took[1], took[2], took[3], took[4]);
    assert_true(took[RUNS / 2] < atoi(UPSTREAM_DELAY_MS) + SLACK_MS);
}

static void request_split_at_every_byte_boundary(void **state)
{
    hp_it_client_t c;
    open_client(&c);
    char req[256];
    int len =
        snprintf(req, sizeof(req),
                 "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: split-000\r\n\r\n");
    for (int cut = 1; cut < len; cut++) {
        /* The same length every time: only the id's digits change. */
        snprintf(req, sizeof(req),
                 "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: split-%03d\r\n\r\n",
                 cut);
        size_t at = (size_t)cut;
        assert_int_equal(hp_it_client_send_split(&c, req, (size_t)len, &at, 1, 1000), 0);
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_read(&c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "Hello, World!");
        char id[32];
        snprintf(id, sizeof(id), "split-%03d", cut);
        assert_string_equal(hp_it_header(&r, "X-Request-Id"), id);
        hp_it_resp_free(&r);
    }
    hp_it_client_close(&c);
}

typedef struct {
    const char *name;
    const char *bytes;
    size_t cuts[80]; /* ascending; 0 ends the list (the first cut is > 0) */
    int nresp;       /* GET responses expected, in order */
    const char *bodies[3];
} split_case_t;

static void request_split_at_table_of_points(void **state)
{
#define ECHO_REQ                                                                                   \
    "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: Text/Plain;x\r\nContent-Length: "             \
    "11\r\n\r\nhello world"
#define CHUNK_REQ                                                                                  \
    "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n "     \
    "world\r\n0\r\n\r\n"
#define GET_REQ "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n"
    static const split_case_t cases[] = {
        {"CR | LF of the request line", GET_REQ, {24}, 1, {"Hello, World!"}},
        {"CR | LF | CR | LF ending the head", GET_REQ, {33, 34, 35}, 1, {"Hello, World!"}},
        {"inside method, target, version", GET_REQ, {1, 2, 6, 10, 19, 22}, 1, {"Hello, World!"}},
        {"header name | value", GET_REQ, {27, 29, 30}, 1, {"Hello, World!"}},
        {"around head | body, inside body", ECHO_REQ, {78, 79, 80, 81, 86}, 1, {"hello world"}},
        {"inside chunk sizes and data",
         CHUNK_REQ,
         {60, 61, 62, 65, 68, 69, 71, 76, 80, 82, 84, 85},
         1,
         {"hello world"}},
        {"two pipelined, cut inside the second",
         GET_REQ GET_REQ,
         {36, 40, 60},
         2,
         {"Hello, World!", "Hello, World!"}},
        {"echo then get, cut at the body's end",
         ECHO_REQ GET_REQ,
         {90, 91, 92},
         2,
         {"hello world", "Hello, World!"}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const split_case_t *t = &cases[i];
        size_t len = strlen(t->bytes), n = 0;
        while (n < 80 && t->cuts[n]) {
            assert_true(t->cuts[n] < len);
            n++;
        }
        hp_it_client_t c;
        open_client(&c);
        assert_int_equal(hp_it_client_send_split(&c, t->bytes, len, t->cuts, n, 2000), 0);
        for (int k = 0; k < t->nresp; k++) {
            hp_it_resp_t r;
            if (hp_it_client_read(&c, &r, false) != 0 || r.status != 200)
                fprintf(stderr, "case \"%s\", response %d\n", t->name, k);
            assert_int_equal(r.status, 200);
            assert_string_equal(r.body, t->bodies[k]);
            hp_it_resp_free(&r);
        }
        hp_it_client_close(&c);
    }

    /* And one byte at a time, the whole of a request with a body. */
    size_t len = strlen(ECHO_REQ);
    size_t cuts[128];
    for (size_t k = 1; k < len; k++)
        cuts[k - 1] = k;
    hp_it_client_t c;
    open_client(&c);
    assert_int_equal(hp_it_client_send_split(&c, ECHO_REQ, len, cuts, len - 1, 200), 0);
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello world");
    /* Read whole across the cuts: a passive type, so reflected (canonical). */
    assert_string_equal(hp_it_header(&r, "Content-Type"), "text/plain");
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
#undef ECHO_REQ
#undef CHUNK_REQ
#undef GET_REQ
}

/* --- HEAD ------------------------------------------------------------------ */

static void head_has_get_headers_and_no_body(void **state)
{
    hp_it_client_t c;
    open_client(&c);
    /* HEAD then GET in one write: if a body followed the HEAD answer, the
     * GET's answer would not parse. */
    assert_int_equal(hp_it_client_sendf(&c, "HEAD /plaintext HTTP/1.1\r\nHost: h\r\n\r\n"
                                            "GET /json HTTP/1.1\r\nHost: h\r\n\r\n"),
                     0);
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_read(&c, &r, true), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hp_it_header(&r, "Content-Length"), "13");
    assert_string_equal(hp_it_header(&r, "Content-Type"), "text/plain");
    assert_string_equal(hp_it_header(&r, "Server"), "hotpath");
    assert_date_now(hp_it_header(&r, "Date"));
    assert_true(valid_id(hp_it_header(&r, "X-Request-Id")));
    assert_int_equal(r.body_len, 0);
    /* The raw answer ends with its head. */
    assert_true(r.raw_len > 4);
    assert_memory_equal(r.raw + r.raw_len - 4, "\r\n\r\n", 4);
    hp_it_resp_free(&r);

    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"message\":\"Hello, World!\"}");
    assert_memory_equal(r.raw, "HTTP/1.1 200 OK\r\n", 17);
    hp_it_resp_free(&r);

    request_ok(&c, "HEAD", "/json", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hp_it_header(&r, "Content-Length"), "27");
    assert_string_equal(hp_it_header(&r, "Content-Type"), "application/json");
    assert_int_equal(r.body_len, 0);
    hp_it_resp_free(&r);
    assert_true(hp_it_client_still_open(&c, 50)); /* nothing trails the HEAD answer */
    hp_it_client_close(&c);
}

/* --- 404, 405, /echo --------------------------------------------------------- */

static void unknown_path_is_404(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    const char *paths[] = {"/nope", "/plaintext/", "/plaintextx", "/JSON", "/echo/more"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        request_ok(&c, "GET", paths[i], NULL, &r);
        assert_int_equal(r.status, 404);
        assert_true(r.keep_alive); /* an answer, not a rejection */
        assert_string_equal(hp_it_header(&r, "Server"), "hotpath");
        assert_true(valid_id(hp_it_header(&r, "X-Request-Id")));
        assert_non_null(hp_it_header(&r, "Content-Length"));
        hp_it_resp_free(&r);
    }
    hp_it_client_close(&c);
}

static void wrong_method_is_405_with_allow(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    request_ok(&c, "POST", "/plaintext", "Content-Length: 0\r\n", &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(hp_it_header(&r, "Allow"), "GET, HEAD");
    assert_true(r.keep_alive);
    hp_it_resp_free(&r);
    /* A body on a route that does not read one is drained, and the
     * connection goes on. */
    assert_int_equal(hp_it_client_sendf(&c, "PUT /json HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                                            "\r\nabcde"),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 405);
    assert_string_equal(hp_it_header(&r, "Allow"), "GET, HEAD");
    hp_it_resp_free(&r);
    request_ok(&c, "DELETE", "/stats", NULL, &r);
    assert_int_equal(r.status, 405);
    assert_string_equal(hp_it_header(&r, "Allow"), "GET, HEAD");
    hp_it_resp_free(&r);
    request_ok(&c, "GET", "/plaintext", NULL, &r);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

static void echo_returns_a_content_length_body(void **state)
{
    static const char *methods[] = {"POST", "PUT", "PATCH", "DELETE", "GET", "OPTIONS"};
    hp_it_client_t c;
    open_client(&c);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        hp_it_resp_t r;
        char body[64];
        int n = snprintf(body, sizeof(body), "body for %s \x01\xff", methods[i]);
        assert_int_equal(hp_it_client_sendf(&c,
                                            "%s /echo HTTP/1.1\r\nHost: h\r\nContent-Type: "
                                            "application/json\r\nContent-Length: %d\r\n\r\n",
                                            methods[i], n),
                         0);
        assert_int_equal(hp_it_client_send(&c, body, (size_t)n), 0);
        assert_int_equal(hp_it_client_read(&c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.body_len, n);
        assert_memory_equal(r.body, body, (size_t)n);
        char cl[16];
        snprintf(cl, sizeof(cl), "%d", n);
        assert_string_equal(hp_it_header(&r, "Content-Length"), cl);
        assert_false(r.chunked);
        assert_string_equal(hp_it_header(&r, "Content-Type"), "application/json");
        assert_string_equal(hp_it_header(&r, "X-Content-Type-Options"), "nosniff");
        hp_it_resp_free(&r);
    }
    /* No body at all: an empty one back. */
    hp_it_resp_t r;
    request_ok(&c, "POST", "/echo", "Content-Length: 0\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(hp_it_header(&r, "Content-Length"), "0");
    hp_it_resp_free(&r);
    /* A larger body, in one write: 200 KB. */
    size_t big = 200 * 1000;
    char *data = malloc(big);
    for (size_t k = 0; k < big; k++)
        data[k] = (char)('a' + k % 26);
    assert_int_equal(hp_it_client_sendf(&c,
                                        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: "
                                        "%zu\r\n\r\n",
                                        big),
                     0);
    assert_int_equal(hp_it_client_send(&c, data, big), 0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, big);
    assert_memory_equal(r.body, data, big);
    hp_it_resp_free(&r);
    free(data);
    hp_it_client_close(&c);
}

/* The body is whole when the handler runs: the answer has a
 * Content-Length whatever the request's framing was. */
static void echo_of_a_chunked_body_has_a_content_length(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    assert_int_equal(hp_it_client_sendf(&c, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: "
                                            "text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                                            "5\r\nhello\r\n1;ext=1\r\n,\r\n"
                                            "a\r\n0123456789\r\n0\r\n\r\n"),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_false(r.chunked);
    assert_null(hp_it_header(&r, "Transfer-Encoding"));
    assert_string_equal(hp_it_header(&r, "Content-Length"), "16");
    assert_string_equal(r.body, "hello,0123456789");
    assert_string_equal(hp_it_header(&r, "Content-Type"), "text/plain");
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

/* A reflected active type is a script injection: only passive types come
 * back as sent (canonical, without parameters); anything else is
 * application/octet-stream, and nothing is left to sniffing. */
static void echo_never_reflects_an_active_type(void **state)
{
    static const struct {
        const char *sent, *back;
    } cases[] = {
        {"text/html", "application/octet-stream"},
        {"TEXT/HTML; charset=utf-8", "application/octet-stream"},
        {"image/svg+xml", "application/octet-stream"},
        {"application/xhtml+xml", "application/octet-stream"},
        {"text/xml", "application/octet-stream"},
        {"application/javascript", "application/octet-stream"},
        {"text/plainx", "application/octet-stream"},
        {"multipart/x-mixed-replace; boundary=x", "application/octet-stream"},
        {"text/plain; charset=utf-8", "text/plain"},
        {"Application/JSON", "application/json"},
        {"application/x-www-form-urlencoded", "application/x-www-form-urlencoded"},
    };
    hp_it_client_t c;
    open_client(&c);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_sendf(&c,
                                            "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: %s\r\n"
                                            "Content-Length: 20\r\n\r\n<script>x()</script>",
                                            cases[i].sent),
                         0);
        assert_int_equal(hp_it_client_read(&c, &r, false), 0);
        assert_int_equal(r.status, 200);
        if (strcmp(hp_it_header(&r, "Content-Type"), cases[i].back) != 0)
            fprintf(stderr, "Content-Type %s came back as %s\n", cases[i].sent,
                    hp_it_header(&r, "Content-Type"));
        assert_string_equal(hp_it_header(&r, "Content-Type"), cases[i].back);
        assert_string_equal(hp_it_header(&r, "X-Content-Type-Options"), "nosniff");
        assert_string_equal(r.body, "<script>x()</script>");
        hp_it_resp_free(&r);
    }
    /* No Content-Type at all: octet-stream too. */
    hp_it_resp_t r;
    request_ok(&c, "POST", "/echo", "Content-Length: 0\r\n", &r);
    assert_string_equal(hp_it_header(&r, "Content-Type"), "application/octet-stream");
    assert_string_equal(hp_it_header(&r, "X-Content-Type-Options"), "nosniff");
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

/* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request is faulty
 * framing: 400 and close, never a body read as chunked and what follows it
 * run as the next request (a 1.0 peer in front would read the body
 * differently). */
static void http10_with_transfer_encoding_is_refused(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    double plain0 = hp_it_stat(server.port, "routes|/plaintext|valuetask|requests");
    assert_int_equal(hp_it_client_sendf(&c,
                                        "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n"
                                        "\r\n0\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n"),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "malformed body framing\n");
    assert_true(r.closed);
    assert_int_equal(c.in_len, 0); /* nothing for the request behind it */
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
    assert_int_equal(hp_it_stat(server.port, "routes|/plaintext|valuetask|requests"), plain0);
}

/* RFC 9110 9.3.7: "OPTIONS *" asks about the server; the answer lists the
 * methods it implements. */
static void options_asterisk_lists_the_methods(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    request_ok(&c, "OPTIONS", "*", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(hp_it_header(&r, "Allow"),
                        "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH");
    assert_string_equal(hp_it_header(&r, "Content-Length"), "0");
    assert_true(r.keep_alive);
    hp_it_resp_free(&r);
    /* Asterisk-form with another method is no request line. */
    assert_int_equal(hp_it_client_sendf(&c, "GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 400);
    assert_true(r.closed);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

static void body_on_a_get_is_drained(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    assert_int_equal(hp_it_client_sendf(&c, "GET /plaintext HTTP/1.1\r\nHost: h\r\nContent-Length: "
                                            "11\r\n\r\nGET /json X"
                                            "GET /json HTTP/1.1\r\nHost: h\r\n\r\n"),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    hp_it_resp_free(&r);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"message\":\"Hello, World!\"}");
    hp_it_resp_free(&r);
    assert_true(hp_it_client_still_open(&c, 50)); /* the body was not a request */
    hp_it_client_close(&c);
}

static void upgrade_request_is_answered_and_closed(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    request_ok(&c, "GET", "/plaintext", "Connection: Upgrade\r\nUpgrade: websocket\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    assert_string_equal(hp_it_header(&r, "Connection"), "close");
    assert_true(r.closed);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

/* Trailer fields are not header fields (RFC 9110 6.5.1): a trailer may not
 * change the request's Content-Type or X-Request-Id after the fact. */
static void chunked_trailers_do_not_become_headers(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    assert_int_equal(
        hp_it_client_sendf(&c, "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
                               "Content-Type: application/json\r\nX-Request-Id: "
                               "from-trailer\r\n\r\n"),
        0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hi");
    if (strcmp(hp_it_header(&r, "Content-Type"), "text/plain") ||
        !strcmp(hp_it_header(&r, "X-Request-Id"), "from-trailer"))
        fprintf(stderr,
                "trailers leaked into the request: Content-Type \"%s\", X-Request-Id \"%s\"\n",
                hp_it_header(&r, "Content-Type"), hp_it_header(&r, "X-Request-Id"));
    assert_string_equal(hp_it_header(&r, "Content-Type"), "text/plain");
    assert_string_not_equal(hp_it_header(&r, "X-Request-Id"), "from-trailer");
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

static void expect_100_continue_gets_interim_answer(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    assert_int_equal(hp_it_client_sendf(&c, "POST /echo HTTP/1.1\r\nHost: h\r\nExpect: "
                                            "100-continue\r\nContent-Length: 7\r\n\r\n"),
                     0);
    /* The interim answer comes before any body byte is sent. */
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 100);
    assert_string_equal(r.raw, "HTTP/1.1 100 Continue\r\n\r\n");
    hp_it_resp_free(&r);
    assert_int_equal(hp_it_client_sendf(&c, "payload"), 0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "payload");
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

/* "A server that receives a 100-continue expectation in an HTTP/1.0
 * request MUST ignore that expectation" (RFC 9110 10.1.1). */
static void expect_100_continue_is_ignored_for_http10(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    assert_int_equal(hp_it_client_sendf(&c, "POST /echo HTTP/1.0\r\nExpect: 100-continue\r\n"
                                            "Content-Length: 2\r\n\r\nhi"),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    if (r.status != 200) fprintf(stderr, "an HTTP/1.0 client got \"%s\"\n", r.raw);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hi");
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

/* --- malformed requests ------------------------------------------------- */

typedef struct {
    const char *name;
    const char *bytes;
    int status;
} reject_case_t;

static void malformed_requests_are_rejected_and_closed(void **state)
{
    static const reject_case_t cases[] = {
        {"garbage line", "GARBAGE\r\n\r\n", 400},
        {"no version", "GET /plaintext\r\n\r\n", 400},
        {"space in header name", "GET /plaintext HTTP/1.1\r\nBad Header: x\r\n\r\n", 400},
        {"control byte in header name", "GET /plaintext HTTP/1.1\r\nBad\x01: x\r\n\r\n", 400},
        {"Content-Length and Transfer-Encoding",
         "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n0\r\n\r\n",
         400},
        {"Content-Length not a number", "POST /echo HTTP/1.1\r\nContent-Length: 5x\r\n\r\nhello",
         400},
        {"two different Content-Lengths",
         "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
        {"bad chunk size", "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        {"target not in origin form", "GET plaintext HTTP/1.1\r\n\r\n", 400},
        {"HTTP/2.0 request line", "GET /plaintext HTTP/2.0\r\n\r\n", 505},
        {"unknown method", "FOO /plaintext HTTP/1.1\r\nHost: h\r\n\r\n", 501},
        {"a coding before chunked",
         "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         "0\r\n\r\n",
         501},
        {"empty header name", "GET /plaintext HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400},
    };
    cJSON *before = hp_it_stats(server.port);
    assert_non_null(before);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hp_it_client_t c;
        hp_it_resp_t r;
        open_client(&c);
        assert_int_equal(hp_it_client_send(&c, cases[i].bytes, strlen(cases[i].bytes)), 0);
        int rc = hp_it_client_read(&c, &r, false);
        if (rc != 0 || r.status != cases[i].status)
            fprintf(stderr, "case \"%s\": rc %d, status %d, answer \"%s\"\n", cases[i].name, rc,
                    r.status, r.raw);
        assert_int_equal(rc, 0);
        assert_int_equal(r.status, cases[i].status);
        assert_string_equal(hp_it_header(&r, "Connection"), "close");
        assert_false(r.keep_alive);
        if (!r.closed) fprintf(stderr, "case \"%s\": the connection stayed open\n", cases[i].name);
        assert_true(r.closed); /* read returns EOF */
        hp_it_resp_free(&r);
        hp_it_client_close(&c);
    }
    cJSON *after = hp_it_stats(server.port);
    assert_non_null(after);
    double total = 0;
    const cJSON *rb = hp_it_json_at(before, "rejections");
    const cJSON *ra = hp_it_json_at(after, "rejections");
    assert_non_null(ra);
    for (const cJSON *v = ra->child; v; v = v->next)
        total += v->valuedouble - hp_it_json_get(rb, v->string);
    assert_int_equal((int)total, (int)(sizeof(cases) / sizeof(cases[0])));
    cJSON_Delete(before);
    cJSON_Delete(after);
}

static void malformed_request_after_a_good_one_answers_both(void **state)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    open_client(&c);
    assert_int_equal(hp_it_client_sendf(&c, "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n"
                                            "GARBAGE\r\n\r\n"
                                            "GET /json HTTP/1.1\r\nHost: h\r\n\r\n"),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "Hello, World!");
    hp_it_resp_free(&r);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 400);
    assert_string_equal(hp_it_header(&r, "Connection"), "close");
    assert_true(r.closed); /* and nothing for the request after the garbage */
    assert_false(c.reset);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

/* --- index, stats, metrics ----------------------------------------------- */

static void index_lists_endpoints_and_mode(void **state)
{
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(server.port, "/", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(hp_it_header(&r, "Content-Type"), "text/plain"));
    static const char *const want[] = {"/plaintext", "/json",  "/cache/",  "/upstream/",
                                       "/echo",      "/stats", "/metrics", "mode: valuetask"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!strstr(r.body, want[i])) fprintf(stderr, "index lacks \"%s\":\n%s", want[i], r.body);
        assert_non_null(strstr(r.body, want[i]));
    }
    hp_it_resp_free(&r);
}

static void stats_is_json_with_every_section(void **state)
{
    /* Make sure routes and layers have rows. */
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(server.port, "/plaintext", &r), 0);
    hp_it_resp_free(&r);
    assert_int_equal(hp_it_get(server.port, "/stats", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(hp_it_header(&r, "Content-Type"), "application/json");
    cJSON *root = cJSON_ParseWithLength(r.body, r.body_len);
    assert_non_null(root);
    static const char *const keys[] = {"server",      "routes",      "modes", "layers",
                                       "allocations", "connections", "cache", "upstream"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const cJSON *v = hp_it_json_at(root, keys[i]);
        if (!cJSON_IsObject(v)) fprintf(stderr, "/stats lacks object \"%s\"\n", keys[i]);
        assert_true(cJSON_IsObject(v));
    }
    const cJSON *mode = hp_it_json_at(root, "server|mode");
    assert_true(cJSON_IsString(mode));
    assert_string_equal(mode->valuestring, "valuetask");
    assert_true(hp_it_json_get(root, "routes|/plaintext|valuetask|requests") >= 1);
    assert_true(hp_it_json_get(root, "modes|valuetask|requests") >= 1);
    assert_true(hp_it_json_get(root, "layers|server_headers|valuetask|calls") >= 1);
    assert_true(hp_it_json_get(root, "connections|open") >= 1); /* this one */
    cJSON_Delete(root);
    hp_it_resp_free(&r);
}

static void metrics_pass_promtool(void **state)
{
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(server.port, "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(hp_it_header(&r, "Content-Type"), "text/plain"));
    assert_non_null(
        strstr(r.body, "hotpath_requests_total{route=\"/plaintext\",mode=\"valuetask\"}"));
    const char *promtool = "/usr/bin/promtool";
    if (access(promtool, X_OK) != 0) {
        fprintf(stderr,
                "metrics_pass_promtool: %s not installed (make deps installs it): "
                "the promtool check is skipped\n",
                promtool);
        hp_it_resp_free(&r);
        skip();
    }
    const char *argv[] = {promtool, "check", "metrics", NULL};
    hp_it_output_t out;
    assert_int_equal(hp_it_exec(argv, r.body, r.body_len, HP_IT_PROCESS_MS, &out), 0);
    if (out.status != 0) fprintf(stderr, "promtool:\n%s%s\n", out.out, out.err);
    assert_int_equal(out.status, 0);
    hp_it_output_free(&out);
    hp_it_resp_free(&r);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plaintext_follows_techempower_rules),
        cmocka_unit_test(request_id_is_echoed_when_valid),
        cmocka_unit_test(request_id_of_128_bytes_is_kept_129_replaced),
        cmocka_unit_test(request_id_is_replaced_when_invalid),
        cmocka_unit_test(repeated_header_lines_are_not_concatenated),
        cmocka_unit_test(json_is_exact),
        cmocka_unit_test(keep_alive_serves_100_requests_on_one_connection),
        cmocka_unit_test(http10_without_keep_alive_closes),
        cmocka_unit_test(http10_with_keep_alive_stays_open),
        cmocka_unit_test(http11_connection_close_is_honoured),
        cmocka_unit_test(pipelined_requests_are_answered_in_order),
        cmocka_unit_test(pipelined_burst_beyond_the_buffers),
        cmocka_unit_test(pipelined_burst_to_a_slow_reader),
        cmocka_unit_test(pipelining_behind_asynchronous_requests),
        cmocka_unit_test(asynchronous_answer_is_not_held_until_the_next_tick),
        cmocka_unit_test(request_split_at_every_byte_boundary),
        cmocka_unit_test(request_split_at_table_of_points),
        cmocka_unit_test(head_has_get_headers_and_no_body),
        cmocka_unit_test(unknown_path_is_404),
        cmocka_unit_test(wrong_method_is_405_with_allow),
        cmocka_unit_test(echo_returns_a_content_length_body),
        cmocka_unit_test(echo_of_a_chunked_body_has_a_content_length),
        cmocka_unit_test(echo_never_reflects_an_active_type),
        cmocka_unit_test(http10_with_transfer_encoding_is_refused),
        cmocka_unit_test(options_asterisk_lists_the_methods),
        cmocka_unit_test(body_on_a_get_is_drained),
        cmocka_unit_test(upgrade_request_is_answered_and_closed),
        cmocka_unit_test(chunked_trailers_do_not_become_headers),
        cmocka_unit_test(expect_100_continue_gets_interim_answer),
        cmocka_unit_test(expect_100_continue_is_ignored_for_http10),
        cmocka_unit_test(malformed_requests_are_rejected_and_closed),
        cmocka_unit_test(malformed_request_after_a_good_one_answers_both),
        cmocka_unit_test(index_lists_endpoints_and_mode),
        cmocka_unit_test(stats_is_json_with_every_section),
        cmocka_unit_test(metrics_pass_promtool),
    };
    int failed = cmocka_run_group_tests(tests, start_server, stop_server);
    return hp_it_result(failed || server_exit_failed);
}
