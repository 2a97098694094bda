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
 * What is checked: one table of exchanges (bytes in, answers out, then
 * the close or not): TechEmpower's rules for /plaintext and /json (Server,
 * Date in IMF-fixdate, Content-Length), keep-alive in both HTTP versions,
 * HEAD, 404/405, OPTIONS *, bodies drained, trailers, malformed requests;
 * then what a table row cannot say: X-Request-Id kept or replaced, 100
 * requests on one connection, pipelining and requests split at every byte,
 * /echo with both body framings and 100-continue, the index, /stats' shape
 * and /metrics through promtool.
 */
#include "tests/support/fixture.h"
#include "tests/support/harness.h"

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
#define UPSTREAM_DELAY_MS 20

static int start_server(void **state)
{
    /* A short drain: a test that fails midway leaves its connection open,
     * and the stop should not wait the default 5 s for it. */
    return hp_it_start_behind_stub(&server, &upstream, UPSTREAM_DELAY_MS, NULL, NULL,
                                   "\"limits\": {\"drain_timeout_ms\": 1000}", NULL);
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

/* --- X-Request-Id ----------------------------------------------------------- */

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

/* --- the exchanges: bytes in, answers out ---------------------------------- *
 *
 * Each row is sent in one write on a fresh connection; the answers must
 * come in order, as listed, and then the connection must either close (a
 * FIN, never a reset, with nothing after the last answer) or stay open with
 * nothing more to read. Beyond what a row lists, every answer carries one
 * Server: hotpath and one Date of now in IMF-fixdate; an answer from the
 * chain carries one well-formed X-Request-Id, and keeps the connection
 * alive unless the row closes; a rejection (answered before any chain ran)
 * says Connection: close and carries no request id. */

typedef struct {
    int status;
    const char *body;  /* NULL: not checked */
    const char *has;   /* "Name: value\n" lines: each header once, with that value */
    const char *lacks; /* "Name\n" (absent) or "Name: value\n" (not with that value) */
    bool head;         /* it answers a HEAD: no body follows the head */
    bool rejected;     /* refused by the server before any chain ran */
} want_t;

typedef struct {
    const char *name;
    const char *sent;
    want_t want[4]; /* up to the first with status 0 */
    bool closes;
} exchange_t;

#define GET(path)     "GET " path " HTTP/1.1\r\nHost: h\r\n\r\n"
#define HELLO         "Hello, World!"
#define HELLO_JSON    "{\"message\":\"Hello, World!\"}"
#define KEEP_ALIVE_10 "Connection: keep-alive\nContent-Length: 27\n"
#define REJECT(st)                                                                                 \
    {                                                                                              \
        .status = (st), .rejected = true                                                           \
    }
#define MALFORMED(what, bytes, st)                                                                 \
    {                                                                                              \
        .name = (what), .sent = (bytes), .want = {REJECT(st)}, .closes = true                      \
    }

static const exchange_t exchanges[] = {
    {.name = "/plaintext by TechEmpower's rules",
     .sent = GET("/plaintext"),
     .want = {{.status = 200,
               .body = HELLO,
               .has = "Content-Type: text/plain\nContent-Length: 13\n",
               .lacks = "Transfer-Encoding\nConnection\n"}}},
    {.name = "/json, serialized exactly",
     .sent = GET("/json"),
     .want = {{.status = 200,
               .body = HELLO_JSON,
               .has = "Content-Type: application/json\nContent-Length: 27\n"}}},
    {.name = "HTTP/1.0 without keep-alive closes",
     .sent = "GET /plaintext HTTP/1.0\r\n\r\n",
     .want = {{.status = 200, .body = HELLO, .has = "Content-Length: 13\nConnection: close\n"}},
     .closes = true},
    {.name = "HTTP/1.0 with keep-alive stays open, and always has a length",
     .sent = "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
             "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
             "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     .want = {{.status = 200, .body = HELLO_JSON, .has = KEEP_ALIVE_10},
              {.status = 200, .body = HELLO_JSON, .has = KEEP_ALIVE_10},
              {.status = 200, .body = HELLO_JSON, .has = KEEP_ALIVE_10}}},
    {.name = "HTTP/1.1 Connection: close is honoured",
     .sent = "GET /plaintext HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
     .want = {{.status = 200, .body = HELLO, .has = "Connection: close\n"}},
     .closes = true},
    {.name = "a request pipelined behind Connection: close is not answered",
     .sent = "GET /plaintext HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" GET("/json"),
     .want = {{.status = 200, .body = HELLO, .has = "Connection: close\n"}},
     .closes = true},
    {.name = "HEAD has GET's headers and no body (a GET behind it parses)",
     .sent = "HEAD /plaintext HTTP/1.1\r\nHost: h\r\n\r\n" GET("/json"),
     .want = {{.status = 200,
               .body = "",
               .has = "Content-Length: 13\nContent-Type: text/plain\n",
               .head = true},
              {.status = 200, .body = HELLO_JSON}}},
    {.name = "HEAD /json",
     .sent = "HEAD /json HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = {{.status = 200,
               .body = "",
               .has = "Content-Length: 27\nContent-Type: application/json\n",
               .head = true}}},
    {.name = "unknown paths are 404s, answered through the chain",
     .sent = GET("/nope") GET("/plaintext/") GET("/plaintextx") GET("/JSON"),
     .want = {{.status = 404, .body = "not found\n", .has = "Content-Length: 10\n"},
              {.status = 404, .body = "not found\n"},
              {.status = 404, .body = "not found\n"},
              {.status = 404, .body = "not found\n"}}},
    {.name = "/echo is no prefix",
     .sent = GET("/echo/more"),
     .want = {{.status = 404, .body = "not found\n"}}},
    {.name = "a wrong method is a 405 with Allow; a body it does not read is drained",
     .sent = "POST /plaintext HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
             "PUT /json HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde"
             "DELETE /stats HTTP/1.1\r\nHost: h\r\n\r\n" GET("/plaintext"),
     .want = {{.status = 405, .body = "method not allowed\n", .has = "Allow: GET, HEAD\n"},
              {.status = 405, .has = "Allow: GET, HEAD\n"},
              {.status = 405, .has = "Allow: GET, HEAD\n"},
              {.status = 200, .body = HELLO}}},
    {.name = "OPTIONS * lists the methods the server implements",
     .sent = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = {{.status = 200,
               .body = "",
               .has = "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\n"
                      "Content-Length: 0\n"}}},
    {.name = "asterisk-form with another method is no request line",
     .sent = "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
     .want = {REJECT(400)},
     .closes = true},
    {.name = "a body on a GET is drained, never run as a request",
     .sent =
         "GET /plaintext HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nGET /json X" GET("/json"),
     .want = {{.status = 200, .body = HELLO}, {.status = 200, .body = HELLO_JSON}}},
    {.name = "an Upgrade is answered, then closed",
     .sent =
         "GET /plaintext HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     .want = {{.status = 200, .body = HELLO, .has = "Connection: close\n"}},
     .closes = true},
    {.name = "trailer fields do not become header fields (RFC 9110 6.5.1)",
     .sent = "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
             "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n"
             "Content-Type: application/json\r\nX-Request-Id: from-trailer\r\n\r\n",
     .want = {{.status = 200,
               .body = "hi",
               .has = "Content-Type: text/plain\n",
               .lacks = "X-Request-Id: from-trailer\n"}}},
    {.name = "/echo of a chunked body answers with a Content-Length",
     .sent = "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
             "Transfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n1;ext=1\r\n,\r\na\r\n0123456789\r\n0\r\n\r\n",
     .want = {{.status = 200,
               .body = "hello,0123456789",
               .has = "Content-Length: 16\nContent-Type: text/plain\n",
               .lacks = "Transfer-Encoding\n"}}},
    {.name = "HTTP/1.0 ignores Expect: 100-continue (RFC 9110 10.1.1)",
     .sent = "POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
     .want = {{.status = 200, .body = "hi", .has = "Connection: close\n"}},
     .closes = true},
    {.name = "a malformed request after a good one: both answered, nothing after",
     .sent = GET("/plaintext") "GARBAGE\r\n\r\n" GET("/json"),
     .want = {{.status = 200, .body = HELLO}, REJECT(400)},
     .closes = true},
    /* Malformed requests: the right status, then the close. */
    MALFORMED("garbage line", "GARBAGE\r\n\r\n", 400),
    MALFORMED("no version", "GET /plaintext\r\n\r\n", 400),
    MALFORMED("space in header name", "GET /plaintext HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
    MALFORMED("control byte in header name", "GET /plaintext HTTP/1.1\r\nBad\x01: x\r\n\r\n", 400),
    MALFORMED("Content-Length and Transfer-Encoding",
              "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
              "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
              400),
    MALFORMED("Content-Length not a number",
              "POST /echo HTTP/1.1\r\nContent-Length: 5x\r\n\r\nhello", 400),
    MALFORMED("two different Content-Lengths",
              "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    MALFORMED("bad chunk size", "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
              400),
    MALFORMED("target not in origin form", "GET plaintext HTTP/1.1\r\n\r\n", 400),
    MALFORMED("HTTP/2.0 request line", "GET /plaintext HTTP/2.0\r\n\r\n", 505),
    MALFORMED("unknown method", "FOO /plaintext HTTP/1.1\r\nHost: h\r\n\r\n", 501),
    MALFORMED("a coding before chunked",
              "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
              "0\r\n\r\n",
              501),
    MALFORMED("empty header name", "GET /plaintext HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400),
};

/* Each "Name: value\n" line of spec, in turn: fn(name, value or NULL). */
static void each_line(const char *spec, const exchange_t *x, int i, const hp_it_resp_t *r,
                      void (*fn)(const exchange_t *, int, const hp_it_resp_t *, const char *,
                                 const char *))
{
    for (const char *p = spec; p && *p;) {
        const char *nl = strchr(p, '\n');
        char line[256];
        snprintf(line, sizeof(line), "%.*s", (int)(nl ? nl - p : (long)strlen(p)), p);
        char *colon = strstr(line, ": ");
        if (colon) *colon = '\0';
        fn(x, i, r, line, colon ? colon + 2 : NULL);
        p = nl ? nl + 1 : p + strlen(p);
    }
}

static void must_have(const exchange_t *x, int i, const hp_it_resp_t *r, const char *name,
                      const char *value)
{
    const char *got = hp_it_header(r, name);
    size_t n = hp_it_header_count(r, name);
    if (n != 1 || strcmp(got, value) != 0)
        fail_msg("%s: answer %d: %s is \"%s\" (%zu times), expected \"%s\" once", x->name, i, name,
                 got ? got : "(absent)", n, value);
}

static void must_lack(const exchange_t *x, int i, const hp_it_resp_t *r, const char *name,
                      const char *value)
{
    const char *got = hp_it_header(r, name);
    if (got && (value == NULL || strcmp(got, value) == 0))
        fail_msg("%s: answer %d: has %s: %s", x->name, i, name, got);
}

static void check_answer(const exchange_t *x, int i, const want_t *w, const hp_it_resp_t *r)
{
    if (r->status != w->status)
        fail_msg("%s: answer %d: status %d, expected %d:\n%s", x->name, i, r->status, w->status,
                 r->raw);
    assert_int_equal(r->http_minor, 1);
    if (w->body && (r->body_len != strlen(w->body) || strcmp(r->body, w->body) != 0))
        fail_msg("%s: answer %d: body \"%s\", expected \"%s\"", x->name, i, r->body, w->body);
    if (w->head) {
        /* The raw answer ends with its head: no body came after it. */
        assert_int_equal(r->body_len, 0);
        assert_true(r->raw_len > 4);
        assert_memory_equal(r->raw + r->raw_len - 4, "\r\n\r\n", 4);
    }
    each_line(w->has, x, i, r, must_have);
    each_line(w->lacks, x, i, r, must_lack);
    assert_string_equal(hp_it_header(r, "Server"), "hotpath");
    assert_int_equal(hp_it_header_count(r, "Server"), 1);
    assert_int_equal(hp_it_header_count(r, "Date"), 1);
    assert_date_now(hp_it_header(r, "Date"));
    if (w->rejected) {
        assert_string_equal(hp_it_header(r, "Connection"), "close");
        assert_false(r->keep_alive);
        assert_null(hp_it_header(r, "X-Request-Id"));
        return;
    }
    assert_int_equal(hp_it_header_count(r, "X-Request-Id"), 1);
    assert_true(valid_id(hp_it_header(r, "X-Request-Id")));
    if (!x->closes) assert_true(r->keep_alive);
}

static void exchanges_answer_as_the_table_says(void **state)
{
    cJSON *before = hp_it_stats(server.port);
    assert_non_null(before);
    int rejections = 0;
    for (size_t k = 0; k < sizeof(exchanges) / sizeof(exchanges[0]); k++) {
        const exchange_t *x = &exchanges[k];
        hp_it_client_t c;
        open_client(&c);
        assert_int_equal(hp_it_client_send(&c, x->sent, strlen(x->sent)), 0);
        int n = 0;
        while (n < 4 && x->want[n].status) {
            const want_t *w = &x->want[n];
            hp_it_resp_t r;
            if (hp_it_client_read(&c, &r, w->head) != 0)
                fail_msg("%s: answer %d did not come", x->name, n);
            check_answer(x, n, w, &r);
            bool last = n + 1 == 4 || x->want[n + 1].status == 0;
            if (last && x->closes) {
                if (!r.closed) fail_msg("%s: the connection stayed open", x->name);
                assert_false(c.reset);         /* an orderly close: the answer is not lost */
                assert_int_equal(c.in_len, 0); /* nothing after the last answer */
            }
            rejections += w->rejected;
            hp_it_resp_free(&r);
            n++;
        }
        if (!x->closes && !hp_it_client_still_open(&c, 50))
            fail_msg("%s: the connection closed, or more came, after the last answer", x->name);
        hp_it_client_close(&c);
    }
    /* Every rejection was counted, under one reason or another. */
    cJSON *after = hp_it_stats(server.port);
    assert_non_null(after);
    double total = 0;
    const cJSON *rb = hp_it_json_at(before, "rejections");
    const cJSON *ra = hp_it_json_at(after, "rejections");
    assert_non_null(ra);
    for (const cJSON *v = ra->child; v; v = v->next)
        total += v->valuedouble - hp_it_json_get(rb, v->string);
    assert_int_equal((int)total, rejections);
    cJSON_Delete(before);
    cJSON_Delete(after);
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
    printf("it_http: /upstream with a %d ms upstream: %lld %lld %lld %lld %lld ms\n",
           UPSTREAM_DELAY_MS, took[0], took[1], took[2], took[3], took[4]);
    assert_true(took[RUNS / 2] < UPSTREAM_DELAY_MS + SLACK_MS);
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

/* --- /echo, framing, 100-continue ---------------------------------------- */

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
        cmocka_unit_test(exchanges_answer_as_the_table_says),
        cmocka_unit_test(request_id_is_echoed_when_valid),
        cmocka_unit_test(request_id_of_128_bytes_is_kept_129_replaced),
        cmocka_unit_test(request_id_is_replaced_when_invalid),
        cmocka_unit_test(repeated_header_lines_are_not_concatenated),
        cmocka_unit_test(keep_alive_serves_100_requests_on_one_connection),
        cmocka_unit_test(pipelined_requests_are_answered_in_order),
        cmocka_unit_test(pipelined_burst_beyond_the_buffers),
        cmocka_unit_test(pipelined_burst_to_a_slow_reader),
        cmocka_unit_test(pipelining_behind_asynchronous_requests),
        cmocka_unit_test(asynchronous_answer_is_not_held_until_the_next_tick),
        cmocka_unit_test(request_split_at_every_byte_boundary),
        cmocka_unit_test(request_split_at_table_of_points),
        cmocka_unit_test(echo_returns_a_content_length_body),
        cmocka_unit_test(echo_never_reflects_an_active_type),
        cmocka_unit_test(http10_with_transfer_encoding_is_refused),
        cmocka_unit_test(expect_100_continue_gets_interim_answer),
        cmocka_unit_test(index_lists_endpoints_and_mode),
        cmocka_unit_test(stats_is_json_with_every_section),
        cmocka_unit_test(metrics_pass_promtool),
    };
    int failed = cmocka_run_group_tests(tests, start_server, stop_server);
    return hp_it_result(failed || server_exit_failed);
}
