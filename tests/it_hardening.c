/*
 * it_hardening.c - integration tests for what a hostile or broken peer can
 * do to the server, over real sockets against the real binary with short
 * limits: slowloris heads, silent connections and empty lines (the header
 * timeout), idle keep-alive connections, readers that never read (the write
 * stall), bodies below the minimum data rate, the per-worker connection cap,
 * the rejection table with a request smuggled behind each rejection, live
 * reload with a request in flight and with lowered timeouts, the drain on
 * SIGTERM, and a stream of mixed upstream faults under concurrency.
 *
 * Each test starts its own server (and stub) on the config it needs: a
 * start costs a few milliseconds, and a test's counters then start at zero,
 * so /stats assertions are exact, not deltas. Every server must exit 0 at
 * the end: under the sanitizer build that is a leak check, under `make
 * valgrind` (the server run through loadtest/valgrind.sh) a memcheck one.
 *
 * Timing: the server checks deadlines on its tick (HP_TICK_MS, 250 ms), so a
 * timeout fires between its value and value + a tick. The assertions allow that plus a
 * margin (MARGIN_MS) for a loaded 2-core CI machine and the sanitizer
 * build, and print what was measured. HOTPATH_SLOW=1 (set by `make
 * valgrind`) keeps every status, header and counter assertion but drops the
 * upper bounds on times and lengthens the upstream delays, as a server under
 * memcheck runs 20-50 times slower.
 */
#include "server/layers.h"
#include "tests/support/fixture.h"

#include "runtime/alloc.h"

#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* Slack on top of a timeout plus a tick before a late close is a failure. */
#define MARGIN_MS 1000

static bool slow; /* HOTPATH_SLOW=1: the server runs under valgrind */

typedef hp_it_fixture_t fixture_t;

/* Poll /stats until path reaches want (bounded); returns the last value. */
static double wait_stat(int port, const char *path, double want)
{
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    double v;
    while ((v = hp_it_stat(port, path)) < want && hp_it_now_ms() < deadline)
        hp_it_sleep_ms(10);
    return v;
}

static void assert_within(const char *what, long long ms, long long lo, long long hi)
{
    if (ms < lo || (!slow && ms > hi))
        fprintf(stderr, "%s: %lld ms, expected %lld..%lld ms%s\n", what, ms, lo, hi,
                slow ? " (upper bound off: HOTPATH_SLOW)" : "");
    assert_true(ms >= lo);
    if (!slow) assert_true(ms <= hi);
}

/* A rejection as the table in server/http.h says it is sent: "HTTP/1.1
 * <code>", Connection: close, a short text body with a Content-Length, and
 * the close right after it, with nothing more. */
static void assert_rejection(const char *name, hp_it_client_t *c, const hp_it_resp_t *r, int status)
{
    char line[32];
    snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    if (r->status != status || strncmp(r->raw, line, strlen(line)) != 0 || !r->closed)
        fprintf(stderr, "%s: expected %d and a close; got %s\"%s\"\n", name, status,
                r->closed ? "" : "(no close) ", r->raw);
    assert_int_equal(r->status, status);
    assert_int_equal(strncmp(r->raw, line, strlen(line)), 0);
    const char *conn = hp_it_header(r, "Connection");
    assert_non_null(conn);
    assert_string_equal(conn, "close");
    assert_false(r->keep_alive);
    assert_false(r->chunked);
    const char *cl = hp_it_header(r, "Content-Length");
    assert_non_null(cl);
    assert_int_equal(strtoul(cl, NULL, 10), r->body_len);
    assert_true(r->body_len > 0 && r->body_len < 100);
    assert_true(r->closed);
    assert_int_equal(c->in_len, 0);
}

/* --- the header timeout: slowloris, silent connections ------------------- */

static void slowloris_gets_408_at_the_header_timeout_and_others_are_served(void **state)
{
    enum { HEADER_MS = 500, STEP_MS = 100 };
    fixture_t *f = hp_it_fixture_new(state);
    char config[128];
    snprintf(config, sizeof(config),
             "{\"limits\": {\"header_timeout_ms\": %d, \"idle_timeout_ms\": 10000}}", HEADER_MS);
    hp_it_fixture_start_server(f, config, NULL);
    int port = f->server.port;

    /* A keep-alive client that asks for something at every step. */
    hp_it_client_t good, slowc, silent;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&good, port), 0);
    assert_int_equal(hp_it_client_request(&good, "GET", "/plaintext", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);

    /* A head that never ends: one byte per STEP_MS, forever. */
    static const char head[] = "GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Slow: ";
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_client_open(&slowc, port), 0);
    assert_int_equal(hp_it_client_open(&silent, port), 0);
    assert_int_equal(hp_it_client_send(&slowc, head, 1), 0);
    size_t sent = 1;
    long long next_send = t0 + STEP_MS;
    long long slow_answer = -1, slow_closed = -1, silent_closed = -1;
    int served = 0;
    long long worst_ms = 0;
    long long give_up = t0 + HEADER_MS + HP_TICK_MS + MARGIN_MS + (slow ? 20000 : 2000);
    while ((slow_closed < 0 || silent_closed < 0) && hp_it_now_ms() < give_up) {
        struct pollfd pfd[2] = {{.fd = slow_closed < 0 ? slowc.fd : -1, .events = POLLIN},
                                {.fd = silent_closed < 0 ? silent.fd : -1, .events = POLLIN}};
        long long wait = next_send - hp_it_now_ms();
        poll(pfd, 2, wait > 0 ? (int)wait : 0);
        if (pfd[0].revents) {
            slow_answer = hp_it_now_ms() - t0;
            assert_int_equal(hp_it_client_read(&slowc, &r, false), 0);
            slow_closed = hp_it_now_ms() - t0;
            assert_rejection("slowloris", &slowc, &r, 408);
            assert_string_equal(r.body, "request headers not received in time\n");
            hp_it_resp_free(&r);
        }
        if (pfd[1].revents) {
            /* Closed without a byte of answer. */
            assert_true(hp_it_client_wait_eof(&silent, 1000));
            silent_closed = hp_it_now_ms() - t0;
        }
        if (hp_it_now_ms() >= next_send) {
            if (slow_closed < 0 && slow_answer < 0) {
                char ch = sent < sizeof(head) - 1 ? head[sent] : 'a';
                /* May fail once the server has answered and shut down. */
                if (hp_it_client_send(&slowc, &ch, 1) == 0) sent++;
            }
            long long q0 = hp_it_now_ms();
            assert_int_equal(hp_it_client_request(&good, "GET", "/plaintext", NULL, &r), 0);
            assert_int_equal(r.status, 200);
            assert_string_equal(r.body, "Hello, World!");
            hp_it_resp_free(&r);
            served++;
            if (hp_it_now_ms() - q0 > worst_ms) worst_ms = hp_it_now_ms() - q0;
            next_send += STEP_MS;
        }
    }
    printf("it_hardening: slowloris (%zu bytes, one per %d ms): 408 after %lld ms, closed after "
           "%lld ms; silent connection closed after %lld ms (header_timeout_ms %d); %d requests "
           "served meanwhile, slowest %lld ms\n",
           sent, STEP_MS, slow_answer, slow_closed, silent_closed, HEADER_MS, served, worst_ms);
    assert_true(slow_closed >= 0);
    assert_true(silent_closed >= 0);
    /* 10 ms under: the server's clock is in whole milliseconds. */
    assert_within("slowloris close", slow_closed, HEADER_MS - 10,
                  HEADER_MS + HP_TICK_MS + MARGIN_MS);
    assert_within("silent close", silent_closed, HEADER_MS - 10,
                  HEADER_MS + HP_TICK_MS + MARGIN_MS);
    /* At least one answer per step up to the timeout, give or take the
     * steps a loaded machine delays: half of them, at least. */
    assert_true(served >= HEADER_MS / STEP_MS / 2);
    if (!slow) assert_true(worst_ms < MARGIN_MS);
    /* The good client is still connected and served. */
    assert_int_equal(hp_it_client_request(&good, "GET", "/json", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    hp_it_client_close(&good);
    hp_it_client_close(&slowc);
    hp_it_client_close(&silent);

    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    assert_int_equal(hp_it_json_get(s, "rejections|HEADER_TIMEOUT"), 1);
    assert_int_equal(hp_it_json_get(s, "routes|/plaintext|valuetask|requests"), served + 1);
    cJSON_Delete(s);
    hp_it_fixture_stop(f);
}

/* RFC 9112 2.2 lets a server skip empty lines before a request line; they
 * are not a request, and must not keep a connection that never sends one
 * open past the header timeout (nor the idle one: both are set equal). */
static void empty_lines_do_not_hold_a_connection_open(void **state)
{
    enum { TIMEOUT_MS = 500, STEP_MS = 100 };
    fixture_t *f = hp_it_fixture_new(state);
    char config[128];
    snprintf(config, sizeof(config),
             "{\"limits\": {\"header_timeout_ms\": %d, \"idle_timeout_ms\": %d}}", TIMEOUT_MS,
             TIMEOUT_MS);
    hp_it_fixture_start_server(f, config, NULL);
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    long long t0 = hp_it_now_ms(), closed = -1;
    int lines = 0;
    long long give_up = t0 + 3 * (TIMEOUT_MS + HP_TICK_MS + MARGIN_MS) + (slow ? 20000 : 0);
    while (hp_it_now_ms() < give_up) {
        if (hp_it_client_send(&c, "\r\n", 2) == 0) lines++;
        struct pollfd pfd = {.fd = c.fd, .events = POLLIN};
        if (poll(&pfd, 1, STEP_MS) <= 0) continue;
        /* A close without a byte, or a 408 and the close. */
        struct pollfd peek = {.fd = c.fd, .events = POLLIN};
        char ch;
        if (poll(&peek, 1, 0) > 0 && recv(c.fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 1) {
            hp_it_resp_t r;
            assert_int_equal(hp_it_client_read(&c, &r, false), 0);
            assert_rejection("empty lines", &c, &r, 408);
            hp_it_resp_free(&r);
        } else {
            assert_true(hp_it_client_wait_eof(&c, 1000));
        }
        closed = hp_it_now_ms() - t0;
        break;
    }
    printf("it_hardening: a connection sending only empty lines (%d, one per %d ms): %s%lld ms "
           "(header and idle timeouts %d ms)\n",
           lines, STEP_MS, closed >= 0 ? "closed after " : "still open after ",
           closed >= 0 ? closed : hp_it_now_ms() - t0, TIMEOUT_MS);
    hp_it_client_close(&c);
    assert_true(closed >= 0);
    assert_within("empty lines close", closed, TIMEOUT_MS - 10,
                  TIMEOUT_MS + HP_TICK_MS + MARGIN_MS);
    hp_it_fixture_stop(f);
}

/* --- keep-alive idle timeout ---------------------------------------------- */

static void idle_keep_alive_connection_closes_at_the_idle_timeout(void **state)
{
    enum { IDLE_MS = 500 };
    fixture_t *f = hp_it_fixture_new(state);
    char config[128];
    snprintf(config, sizeof(config), "{\"limits\": {\"idle_timeout_ms\": %d}}", IDLE_MS);
    hp_it_fixture_start_server(f, config, NULL);
    int port = f->server.port;
    hp_it_client_t c;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&c, port), 0);
    assert_int_equal(hp_it_client_request(&c, "GET", "/plaintext", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(r.keep_alive);
    hp_it_resp_free(&r);
    /* A request before the timeout starts it again. */
    hp_it_sleep_ms(IDLE_MS * 6 / 10);
    assert_int_equal(hp_it_client_request(&c, "GET", "/plaintext", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    long long t0 = hp_it_now_ms();
    assert_true(
        hp_it_client_wait_eof(&c, IDLE_MS + HP_TICK_MS + MARGIN_MS + (slow ? 20000 : 2000)));
    long long took = hp_it_now_ms() - t0;
    printf("it_hardening: idle keep-alive connection closed %lld ms after its last answer "
           "(idle_timeout_ms %d)\n",
           took, IDLE_MS);
    assert_false(c.reset); /* a FIN: nothing was left unread */
    assert_within("idle close", took, IDLE_MS - 10, IDLE_MS + HP_TICK_MS + MARGIN_MS);
    hp_it_client_close(&c);
    assert_int_equal(hp_it_stat(port, "connections|idle_closed"), 1);
    hp_it_fixture_stop(f);
}

/* --- a reader that never reads ---------------------------------------------- */

static void reader_that_never_reads_is_closed_at_the_idle_timeout(void **state)
{
    enum { IDLE_MS = 500, BURST = 2048 };
    fixture_t *f = hp_it_fixture_new(state);
    char config[128];
    snprintf(config, sizeof(config), "{\"limits\": {\"idle_timeout_ms\": %d}}", IDLE_MS);
    hp_it_fixture_start_server(f, config, NULL);
    int port = f->server.port;
    /* A small receive window, and requests pipelined until the server
     * stops taking them: its answers back up, its write blocks, it stops
     * reading, and the kernel's buffers on both sides fill (megabytes on
     * loopback). Sent until nothing more goes for 300 ms, within bounds. */
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open_rcvbuf(&c, port, 4096), 0);
    static const char req[] = "GET /json HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t rlen = sizeof(req) - 1, blen = rlen * BURST;
    char *block = malloc(blen);
    for (int i = 0; i < BURST; i++)
        memcpy(block + i * rlen, req, rlen);
    size_t off = 0; /* bytes sent; the stream repeats block */
    long long t0 = hp_it_now_ms(), last_progress = t0;
    bool blocked = false;
    while (off < (size_t)256 << 20 && hp_it_now_ms() < t0 + (slow ? 60000 : 10000)) {
        size_t at = off % blen;
        ssize_t n = send(c.fd, block + at, blen - at, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            off += (size_t)n;
            last_progress = hp_it_now_ms();
        } else if (hp_it_now_ms() - last_progress >= 300) {
            blocked = true;
            break;
        } else {
            hp_it_sleep_ms(5);
        }
    }
    free(block);
    long long sent_ms = last_progress;
    /* Never read: a close shows as a hang-up or an error (a reset, as the
     * server leaves our requests unread), whatever sits unread here. */
    long long closed = -1;
    while (hp_it_now_ms() < sent_ms + IDLE_MS + HP_TICK_MS + MARGIN_MS + (slow ? 20000 : 3000)) {
        struct pollfd pfd = {.fd = c.fd, .events = POLLRDHUP};
        if (poll(&pfd, 1, 50) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            closed = hp_it_now_ms() - sent_ms;
            break;
        }
    }
    printf("it_hardening: a reader that never reads (%zu bytes of requests sent): closed %lld ms "
           "after the last send (idle_timeout_ms %d)\n",
           off, closed, IDLE_MS);
    hp_it_client_close(&c);
    assert_true(blocked); /* the server stopped taking requests */
    assert_true(closed >= 0);
    /* The stall began before the last send: no lower bound. */
    assert_within("write stall close", closed, 0, IDLE_MS + HP_TICK_MS + MARGIN_MS);
    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    assert_true(hp_it_json_get(s, "io|writes_queued") >= 1);
    assert_int_equal(hp_it_json_get(s, "connections|open"), 1); /* this one */
    cJSON_Delete(s);
    hp_it_fixture_stop(f);
}

/* --- minimum body data rate -------------------------------------------------- */

static void body_below_the_minimum_rate_gets_408(void **state)
{
    enum { GRACE_MS = 500, RATE = 240, LENGTH = 10000 };
    fixture_t *f = hp_it_fixture_new(state);
    char config[160];
    snprintf(config, sizeof(config),
             "{\"limits\": {\"body_grace_ms\": %d, \"min_body_rate\": %d, "
             "\"header_timeout_ms\": 10000}}",
             GRACE_MS, RATE);
    hp_it_fixture_start_server(f, config, NULL);
    int port = f->server.port;
    hp_it_client_t c;
    hp_it_resp_t r;

    /* 1. A few bytes, then nothing: the grace period plus what 10 bytes buy
     * at RATE bytes/s (42 ms). */
    assert_int_equal(hp_it_client_open(&c, port), 0);
    assert_int_equal(hp_it_client_sendf(&c,
                                        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n"
                                        "\r\n0123456789",
                                        LENGTH),
                     0);
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    long long stalled = hp_it_now_ms() - t0;
    assert_rejection("stalled body", &c, &r, 408);
    assert_string_equal(r.body, "request body arrived below the minimum data rate\n");
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
    long long credit = 10 * 1000 / RATE;
    assert_within("stalled body", stalled, GRACE_MS + credit - 10,
                  GRACE_MS + credit + HP_TICK_MS + MARGIN_MS);

    /* 2. A trickle below the rate, 10 bytes per 100 ms (100 bytes/s): each
     * byte buys 1/RATE s, so the deadline runs 0.42 ms per ms and the
     * trickle falls behind it at GRACE / (1 - 100/RATE) = 857 ms. */
    assert_int_equal(hp_it_client_open(&c, port), 0);
    assert_int_equal(hp_it_client_sendf(&c,
                                        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n"
                                        "\r\n",
                                        LENGTH),
                     0);
    t0 = hp_it_now_ms();
    long long give_up = t0 + 5000 + (slow ? 20000 : 0);
    long long trickled = -1;
    while (hp_it_now_ms() < give_up) {
        struct pollfd pfd = {.fd = c.fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) > 0) {
            assert_int_equal(hp_it_client_read(&c, &r, false), 0);
            trickled = hp_it_now_ms() - t0;
            assert_rejection("trickled body", &c, &r, 408);
            hp_it_resp_free(&r);
            break;
        }
        hp_it_client_send(&c, "abcdefghij", 10);
    }
    hp_it_client_close(&c);
    long long cut = GRACE_MS * 1000 / (1000 - 100 * 1000 / RATE);
    assert_true(trickled >= 0);
    /* The prediction assumes the trickle keeps its pace; a client slowed
     * by a loaded machine sends less and is cut sooner, but never before
     * the grace period: that is the lower bound that holds. */
    assert_within("trickled body", trickled, GRACE_MS - 10, cut + HP_TICK_MS + MARGIN_MS);

    /* 3. A decent rate, 1000 bytes per 100 ms, outlasting the grace period:
     * the whole body is echoed. */
    assert_int_equal(hp_it_client_open(&c, port), 0);
    char *body = malloc(LENGTH + 1);
    for (int i = 0; i < LENGTH; i++)
        body[i] = (char)('a' + i % 26);
    body[LENGTH] = '\0';
    assert_int_equal(hp_it_client_sendf(&c,
                                        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n"
                                        "\r\n",
                                        LENGTH),
                     0);
    t0 = hp_it_now_ms();
    for (int off = 0; off < LENGTH; off += 1000) {
        assert_int_equal(hp_it_client_send(&c, body + off, 1000), 0);
        hp_it_sleep_ms(100);
    }
    long long sending = hp_it_now_ms() - t0;
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, LENGTH);
    assert_memory_equal(r.body, body, LENGTH);
    assert_true(r.keep_alive);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
    free(body);
    printf("it_hardening: body rate (body_grace_ms %d, min_body_rate %d): stalled after 10 "
           "bytes -> 408 after %lld ms; 100 B/s trickle -> 408 after %lld ms (predicted %lld); "
           "10 KB at 10 KB/s over %lld ms -> 200\n",
           GRACE_MS, RATE, stalled, trickled, cut, sending);
    assert_true(sending > GRACE_MS);

    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    assert_int_equal(hp_it_json_get(s, "rejections|BODY_TIMEOUT"), 2);
    assert_int_equal(hp_it_json_get(s, "routes|/echo|valuetask|requests"), 1);
    cJSON_Delete(s);
    hp_it_fixture_stop(f);
}

/* --- max connections --------------------------------------------------------- */

/* True when the server closed c without a byte of answer. */
static bool refused(hp_it_client_t *c)
{
    /* The request may or may not reach the server before its close. */
    hp_it_client_sendf(c, "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
    return hp_it_client_wait_eof(c, HP_IT_TIMEOUT_MS) && c->in_len == 0;
}

static void connections_over_the_cap_are_closed_without_an_answer(void **state)
{
    enum { MAX = 4 };
    fixture_t *f = hp_it_fixture_new(state);
    char config[96];
    snprintf(config, sizeof(config), "{\"limits\": {\"max_connections\": %d}}", MAX);
    hp_it_fixture_start_server(f, config, NULL); /* --workers 1 */
    int port = f->server.port;
    hp_it_client_t held[MAX], extra;
    hp_it_resp_t r;
    for (int i = 0; i < MAX; i++) {
        assert_int_equal(hp_it_client_open(&held[i], port), 0);
        assert_int_equal(hp_it_client_request(&held[i], "GET", "/plaintext", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
    }
    /* The fifth: the kernel completes the connect, the server closes it. */
    int nrefused = 0;
    assert_int_equal(hp_it_client_open(&extra, port), 0);
    assert_true(refused(&extra));
    nrefused++;
    hp_it_client_close(&extra);
    /* The held ones are unaffected. */
    for (int i = 0; i < MAX; i++) {
        assert_int_equal(hp_it_client_request(&held[i], "GET", "/json", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
    }
    /* One leaves; a newcomer is served once the server has seen it go (the
     * close and the connect race in the server's loop: retry, counting). */
    hp_it_client_close(&held[0]);
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    for (;;) {
        hp_it_sleep_ms(20);
        assert_int_equal(hp_it_client_open(&extra, port), 0);
        int rc = hp_it_client_request(&extra, "GET", "/plaintext", NULL, &r);
        if (rc == 0) break;
        assert_true(extra.eof && r.raw_len == 0); /* refused, not broken */
        hp_it_resp_free(&r);
        hp_it_client_close(&extra);
        nrefused++;
        assert_true(hp_it_now_ms() < deadline);
    }
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    hp_it_client_close(&extra);
    for (int i = 1; i < MAX; i++)
        hp_it_client_close(&held[i]);
    /* /stats, once the server has seen them go (refusals counted). */
    cJSON *s = NULL;
    deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    while (s == NULL) {
        hp_it_sleep_ms(20);
        assert_int_equal(hp_it_client_open(&extra, port), 0);
        int rc = hp_it_client_request(&extra, "GET", "/stats", NULL, &r);
        if (rc == 0) {
            assert_int_equal(r.status, 200);
            s = cJSON_ParseWithLength(r.body, r.body_len);
            assert_non_null(s);
        } else {
            assert_true(extra.eof && r.raw_len == 0);
            nrefused++;
        }
        hp_it_resp_free(&r);
        hp_it_client_close(&extra);
        assert_true(hp_it_now_ms() < deadline);
    }
    printf("it_hardening: max_connections %d: refused %g, accepted %g, peak %g\n", MAX,
           hp_it_json_get(s, "connections|refused"), hp_it_json_get(s, "connections|accepted"),
           hp_it_json_get(s, "connections|peak"));
    assert_int_equal(hp_it_json_get(s, "connections|refused"), nrefused);
    assert_int_equal(hp_it_json_get(s, "connections|peak"), MAX);
    /* The held four, the newcomer, and this one. */
    assert_int_equal(hp_it_json_get(s, "connections|accepted"), MAX + 2);
    assert_int_equal(hp_it_json_get(s, "routes|/plaintext|valuetask|requests"), MAX + 1);
    cJSON_Delete(s);
    hp_it_fixture_stop(f);
}

/* --- the rejection table, and what is smuggled behind a rejection ------------ */

#define SMUGGLED "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n"

typedef struct {
    const char *name;
    char *bytes; /* owned */
    int status;
} reject_row_t;

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    assert_true(vasprintf(&s, f, ap) >= 0);
    va_end(ap);
    return s;
}

/* The limits the table is built against. */
#define LIMITS                                                                                     \
    "{\"limits\": {\"request_line_bytes\": 256, \"header_bytes\": 1024, \"header_count\": 10, "    \
    "\"body_bytes\": 1000}}"

static void rejections_answer_close_and_ignore_what_follows(void **state)
{
    fixture_t *f = hp_it_fixture_new(state);
    hp_it_fixture_start_server(f, LIMITS, NULL);
    int port = f->server.port;

    char *long_target = repeat('a', 300);
    char *big_value = repeat('b', 1100);
    char *body_1001 = repeat('c', 1001);
    char *chunk_512 = repeat('d', 512), *chunk_489 = repeat('e', 489);
    char *eleven = NULL;
    {
        /* Host plus ten more: eleven header lines. */
        char buf[512] = "GET /plaintext HTTP/1.1\r\nHost: h\r\n";
        for (int i = 0; i < 10; i++)
            snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "X-H%d: v\r\n", i);
        eleven = fmt("%s\r\n" SMUGGLED, buf);
    }
    reject_row_t rows[] = {
        {"missing Host", fmt("GET /plaintext HTTP/1.1\r\n\r\n" SMUGGLED), 400},
        {"two Hosts", fmt("GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" SMUGGLED), 400},
        {"obs-fold", fmt("GET /plaintext HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n" SMUGGLED),
         400},
        {"bare LF line ends", fmt("GET /plaintext HTTP/1.1\nHost: h\n\n" SMUGGLED), 400},
        {"space before the colon",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : "
             "chunked\r\n\r\n0\r\n\r\n" SMUGGLED),
         400},
        {"request line over 256 bytes",
         fmt("GET /%s HTTP/1.1\r\nHost: h\r\n\r\n" SMUGGLED, long_target), 414},
        {"head over 1024 bytes",
         fmt("GET /plaintext HTTP/1.1\r\nHost: h\r\nX-Big: %s\r\n\r\n" SMUGGLED, big_value), 431},
        {"eleven header lines (limit 10)", eleven, 431},
        {"Content-Length over 1000",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n%s" SMUGGLED,
             body_1001),
         413},
        {"chunked body over 1000",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
             "200\r\n%s\r\n1e9\r\n%s\r\n0\r\n\r\n" SMUGGLED,
             chunk_512, chunk_489),
         413},
        {"HTTP/1.2", fmt("GET /plaintext HTTP/1.2\r\nHost: h\r\n\r\n" SMUGGLED), 505},
        /* Smuggling: a request hidden where a second parser would see one. */
        {"CL.TE",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED),
         400},
        {"TE.CL",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
             "Content-Length: %zu\r\n\r\n0\r\n\r\n" SMUGGLED,
             strlen("0\r\n\r\n" SMUGGLED)),
         400},
        {"two Content-Lengths",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: "
             "%zu\r\n\r\n" SMUGGLED,
             strlen(SMUGGLED)),
         400},
        {"chunked not the final coding",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
             "0\r\n\r\n" SMUGGLED),
         400},
        {"unknown coding only",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
             "xchunked\r\n\r\n0\r\n\r\n" SMUGGLED),
         400},
        {"negative chunk size",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n"
             "0\r\n\r\n" SMUGGLED),
         400},
        {"chunk size not hex",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n"
             "0\r\n\r\n" SMUGGLED),
         400},
        {"chunk data longer than its size",
         fmt("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n"
             "0\r\n\r\n" SMUGGLED),
         400},
    };
    size_t nrows = sizeof(rows) / sizeof(rows[0]);
    int failures = 0;
    for (size_t i = 0; i < nrows; i++) {
        hp_it_client_t c;
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_open(&c, port), 0);
        assert_int_equal(hp_it_client_send(&c, rows[i].bytes, strlen(rows[i].bytes)), 0);
        int rc = hp_it_client_read(&c, &r, false);
        char line[32];
        snprintf(line, sizeof(line), "HTTP/1.1 %d ", rows[i].status);
        const char *conn = hp_it_header(&r, "Connection");
        const char *cl = hp_it_header(&r, "Content-Length");
        bool ok = rc == 0 && r.status == rows[i].status &&
                  strncmp(r.raw, line, strlen(line)) == 0 && conn && !strcmp(conn, "close") && cl &&
                  strtoul(cl, NULL, 10) == r.body_len && r.body_len > 0 && r.body_len < 100 &&
                  r.closed && c.in_len == 0;
        if (!ok) {
            fprintf(stderr,
                    "row \"%s\": expected %d, Connection: close, a short body, then the "
                    "close and nothing more; got rc %d, %s\"%s\"%s%.*s\n",
                    rows[i].name, rows[i].status, rc, r.closed ? "closed, " : "", r.raw,
                    c.in_len ? ", then: " : "", (int)c.in_len, c.in ? c.in : "");
            failures++;
        }
        hp_it_resp_free(&r);
        hp_it_client_close(&c);
    }
    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    /* The requests behind the rejections never ran. */
    assert_int_equal(hp_it_json_get(s, "routes|/plaintext|valuetask|requests"), 0);
    assert_int_equal(hp_it_json_get(s, "routes|/echo|valuetask|requests"), 0);
    double total = 0;
    const cJSON *rej = hp_it_json_at(s, "rejections");
    assert_non_null(rej);
    for (const cJSON *v = rej->child; v; v = v->next)
        total += v->valuedouble;
    if (failures == 0) {
        assert_int_equal((int)total, (int)nrows);
        assert_int_equal(hp_it_json_get(s, "rejections|BODY_TOO_LARGE"), 2);
        assert_int_equal(hp_it_json_get(s, "rejections|URI_TOO_LONG"), 1);
        assert_int_equal(hp_it_json_get(s, "rejections|HEADERS_TOO_LARGE"), 1);
        assert_int_equal(hp_it_json_get(s, "rejections|TOO_MANY_HEADERS"), 1);
        assert_int_equal(hp_it_json_get(s, "rejections|VERSION"), 1);
    }
    cJSON_Delete(s);
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].bytes);
    free(long_target);
    free(big_value);
    free(body_1001);
    free(chunk_512);
    free(chunk_489);
    assert_int_equal(failures, 0);

    /* And at the limits, the same shapes are served: ten header lines, a
     * 1000-byte body declared and chunked. */
    hp_it_client_t c;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&c, port), 0);
    assert_int_equal(hp_it_client_request(&c, "GET", "/plaintext",
                                          "X-1: v\r\nX-2: v\r\nX-3: v\r\nX-4: v\r\nX-5: v\r\n"
                                          "X-6: v\r\nX-7: v\r\nX-8: v\r\nX-9: v\r\n",
                                          &r),
                     0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    char *body = repeat('f', 1000);
    assert_int_equal(hp_it_client_sendf(&c,
                                        "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1000"
                                        "\r\n\r\n%s",
                                        body),
                     0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 1000);
    hp_it_resp_free(&r);
    assert_int_equal(
        hp_it_client_sendf(&c,
                           "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
                           "chunked\r\n\r\n200\r\n%.512s\r\n1e8\r\n%.488s\r\n0\r\n\r\n",
                           body, body),
        0);
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 1000);
    assert_true(r.keep_alive);
    hp_it_resp_free(&r);
    free(body);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

/* --- SIGHUP with a request in flight -------------------------------------------- */

static void sighup_during_a_request_applies_to_the_next_ones(void **state)
{
    int delay_ms = slow ? 1500 : 600;
    fixture_t *f = hp_it_fixture_new(state);
    char config[256];
    hp_it_fixture_start_behind_stub(f, delay_ms, NULL, NULL,
                                    "\"mode\": \"valuetask\", \"limits\": {\"header_count\": 100}",
                                    NULL);
    int port = f->server.port;
    static const char six_more[] = "X-1: v\r\nX-2: v\r\nX-3: v\r\nX-4: v\r\nX-5: v\r\nX-6: v\r\n";
    hp_it_client_t c, inflight;
    hp_it_resp_t r;
    /* Seven header lines are fine under the first config. */
    assert_int_equal(hp_it_client_open(&c, port), 0);
    assert_int_equal(hp_it_client_request(&c, "GET", "/plaintext", six_more, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);

    assert_int_equal(hp_it_client_open(&inflight, port), 0);
    assert_int_equal(
        hp_it_client_sendf(&inflight, "GET /upstream/items/inflight HTTP/1.1\r\nHost: h\r\n\r\n"),
        0);
    hp_it_sleep_ms(50); /* it waits on the upstream now */
    snprintf(config, sizeof(config),
             "{\"mode\": \"task\", \"upstream\": {\"port\": %d}, "
             "\"limits\": {\"header_count\": 5}}",
             f->stub.port);
    assert_int_equal(hp_it_server_write_config(&f->server, config), 0);
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "(mode task)", HP_IT_TIMEOUT_MS));
    assert_int_equal(wait_stat(port, "server|reloads", 1), 1);
    /* The reload is in while the request still runs. */
    struct pollfd pfd = {.fd = inflight.fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);

    assert_int_equal(hp_it_client_read(&inflight, &r, false), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"key\":\"inflight\""));
    assert_true(r.keep_alive);
    hp_it_resp_free(&r);
    /* Counted under the mode it started in. */
    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    assert_int_equal(hp_it_json_get(s, "routes|/upstream/|valuetask|requests"), 1);
    assert_int_equal(hp_it_json_get(s, "routes|/upstream/|task|requests"), 0);
    cJSON_Delete(s);

    /* The next one, on the same connection, runs under the new config. */
    assert_int_equal(hp_it_client_request(&inflight, "GET", "/upstream/items/after", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"key\":\"after\""));
    hp_it_resp_free(&r);
    s = hp_it_stats(port);
    assert_non_null(s);
    assert_int_equal(hp_it_json_get(s, "routes|/upstream/|valuetask|requests"), 1);
    assert_int_equal(hp_it_json_get(s, "routes|/upstream/|task|requests"), 1);
    cJSON_Delete(s);

    /* The new limits too: seven header lines are over 5, five are not. */
    assert_int_equal(hp_it_client_request(&inflight, "GET", "/plaintext", six_more, &r), 0);
    assert_rejection("seven lines after the reload", &inflight, &r, 431);
    hp_it_resp_free(&r);
    hp_it_client_close(&inflight);
    assert_int_equal(hp_it_client_open(&c, port), 0);
    assert_int_equal(hp_it_client_request(&c, "GET", "/plaintext",
                                          "X-1: v\r\nX-2: v\r\nX-3: v\r\nX-4: v\r\n", &r),
                     0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
    assert_int_equal(hp_it_stat(port, "rejections|TOO_MANY_HEADERS"), 1);
    hp_it_fixture_stop(f);
}

/* The tick expires each timeout list from its head and stops at the first
 * deadline still ahead (the lists are in deadline order: every entry's
 * deadline is "now + the same timeout"). A reload that lowers a timeout
 * must still hold new connections to the new value, with connections from
 * before it, on the old value, ahead of them in the list. */
static void sighup_lowering_timeouts_applies_to_new_connections(void **state)
{
    enum { OLD_MS = 5000, NEW_MS = 500 };
    fixture_t *f = hp_it_fixture_new(state);
    char config[160];
    snprintf(config, sizeof(config),
             "{\"limits\": {\"header_timeout_ms\": %d, \"idle_timeout_ms\": %d}}", OLD_MS, OLD_MS);
    hp_it_fixture_start_server(f, config, NULL);
    int port = f->server.port;
    hp_it_client_t old_head, old_idle, new_head, new_idle;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&old_head, port), 0);
    assert_int_equal(hp_it_client_sendf(&old_head, "GET /plaintext HTTP/1.1\r\n"), 0);
    assert_int_equal(hp_it_client_open(&old_idle, port), 0);
    assert_int_equal(hp_it_client_request(&old_idle, "GET", "/plaintext", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);

    snprintf(config, sizeof(config),
             "{\"limits\": {\"header_timeout_ms\": %d, \"idle_timeout_ms\": %d}}", NEW_MS, NEW_MS);
    assert_int_equal(hp_it_server_write_config(&f->server, config), 0);
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "reloaded", HP_IT_TIMEOUT_MS));
    assert_int_equal(wait_stat(port, "server|reloads", 1), 1);

    assert_int_equal(hp_it_client_open(&new_head, port), 0);
    assert_int_equal(hp_it_client_open(&new_idle, port), 0);
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_client_sendf(&new_head, "GET /plaintext HTTP/1.1\r\n"), 0);
    assert_int_equal(hp_it_client_request(&new_idle, "GET", "/plaintext", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    /* Wait long enough to see when they close even if they wait for the
     * old connections' deadlines, to say so. */
    long long head_ms = -1, idle_ms = -1;
    long long give_up = t0 + OLD_MS + HP_TICK_MS + MARGIN_MS + (slow ? 20000 : 0);
    while ((head_ms < 0 || idle_ms < 0) && hp_it_now_ms() < give_up) {
        struct pollfd pfd[2] = {{.fd = head_ms < 0 ? new_head.fd : -1, .events = POLLIN},
                                {.fd = idle_ms < 0 ? new_idle.fd : -1, .events = POLLIN}};
        if (poll(pfd, 2, 100) <= 0) continue;
        if (pfd[0].revents) {
            assert_int_equal(hp_it_client_read(&new_head, &r, false), 0);
            head_ms = hp_it_now_ms() - t0;
            assert_rejection("head after the reload", &new_head, &r, 408);
            hp_it_resp_free(&r);
        }
        if (pfd[1].revents) {
            assert_true(hp_it_client_wait_eof(&new_idle, 1000));
            idle_ms = hp_it_now_ms() - t0;
        }
    }
    printf("it_hardening: after a reload from %d to %d ms, a new connection's head timed out "
           "after %lld ms and a new idle connection closed after %lld ms\n",
           OLD_MS, NEW_MS, head_ms, idle_ms);
    assert_true(head_ms >= 0 && idle_ms >= 0);
    assert_within("header timeout after the reload", head_ms, NEW_MS - 10,
                  NEW_MS + HP_TICK_MS + MARGIN_MS);
    assert_within("idle timeout after the reload", idle_ms, NEW_MS - 10,
                  NEW_MS + HP_TICK_MS + MARGIN_MS);
    hp_it_client_close(&old_head);
    hp_it_client_close(&old_idle);
    hp_it_client_close(&new_head);
    hp_it_client_close(&new_idle);
    hp_it_fixture_stop(f);
}

/* --- SIGTERM drain ----------------------------------------------------------------- */

static void sigterm_drains_refuses_new_finishes_running_closes_idle(void **state)
{
    int delay_ms = slow ? 1500 : 400;
    fixture_t *f = hp_it_fixture_new(state);
    hp_it_fixture_start_behind_stub(f, delay_ms, NULL, NULL,
                                    "\"limits\": {\"drain_timeout_ms\": 10000}", NULL);
    int port = f->server.port;
    hp_it_client_t idle, running, late;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&idle, port), 0);
    assert_int_equal(hp_it_client_request(&idle, "GET", "/plaintext", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    assert_int_equal(hp_it_client_open(&running, port), 0);
    assert_int_equal(
        hp_it_client_sendf(&running, "GET /upstream/items/drain HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
    hp_it_sleep_ms(50);

    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_server_signal(&f->server, SIGTERM), 0);
    /* The idle one is closed at once, without an answer. */
    assert_true(hp_it_client_wait_eof(&idle, HP_IT_TIMEOUT_MS));
    long long idle_ms = hp_it_now_ms() - t0;
    hp_it_client_close(&idle);
    /* The listener went before it: a newcomer is refused, or closed
     * without an answer. */
    int rc = hp_it_client_open(&late, port);
    bool late_refused = rc != 0;
    if (rc == 0) {
        late_refused = refused(&late);
        hp_it_client_close(&late);
    }
    assert_true(late_refused);
    /* The running one gets its whole answer, and the close. */
    assert_int_equal(hp_it_client_read(&running, &r, false), 0);
    long long running_ms = hp_it_now_ms() - t0;
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"key\":\"drain\""));
    assert_string_equal(hp_it_header(&r, "Connection"), "close");
    assert_true(r.closed);
    hp_it_resp_free(&r);
    hp_it_client_close(&running);
    int st = hp_it_server_wait(&f->server, HP_IT_PROCESS_MS);
    long long exit_ms = hp_it_now_ms() - t0;
    f->server_up = st == -2;
    printf("it_hardening: SIGTERM: idle closed after %lld ms, newcomer %s, running request "
           "answered after %lld ms (upstream delay %d ms), exit %d after %lld ms\n",
           idle_ms, rc != 0 ? "refused at connect" : "closed unanswered", running_ms, delay_ms, st,
           exit_ms);
    assert_int_equal(st, 0);
    assert_within("idle close on SIGTERM", idle_ms, 0, HP_TICK_MS + MARGIN_MS);
    assert_within("exit after SIGTERM", exit_ms, 0, delay_ms + HP_TICK_MS + MARGIN_MS);
    f->stub_up = false;
    assert_int_equal(hp_it_upstream_stop(&f->stub), 0);
}

/* --- upstream faults, mixed, under concurrency ------------------------------------- */

/* What a per-request fault (the stub's ?fault=) must turn into. */
static const struct {
    const char *fault; /* NULL: none */
    int status;
} fault_kinds[] = {
    {NULL, 200},      {"close", 200}, {"stall", 504},    {"headers", 504},
    {"garbage", 502}, {"reset", 502}, {"truncate", 502}, {"drop", 502},
};
#define NKINDS (sizeof(fault_kinds) / sizeof(fault_kinds[0]))

static void mixed_upstream_faults_all_answered_and_the_pool_recovers(void **state)
{
    enum { TOTAL = 200, CONC = 20, POOL = 8 };
    int timeout_ms = slow ? 1500 : 400;
    fixture_t *f = hp_it_fixture_new(state);
    const char *jitter[] = {"--jitter-ms", "10", NULL};
    char upstream[128];
    snprintf(upstream, sizeof(upstream), "\"pool_size\": %d, \"response_timeout_ms\": %d", POOL,
             timeout_ms);
    hp_it_fixture_start_behind_stub(f, 2, jitter, upstream, NULL, NULL);
    int port = f->server.port;

    /* A fixed shuffle: half the requests clean, the rest spread over the
     * faults, so that every kind meets every other on the pool. */
    int kind[TOTAL];
    unsigned seed = 12345;
    int count[NKINDS] = {0};
    for (int i = 0; i < TOTAL; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned x = (seed >> 16) % (2 * (NKINDS - 1));
        kind[i] = x < NKINDS - 1 ? 0 : (int)(x - (NKINDS - 1) + 1);
        count[kind[i]]++;
    }
    /* Stub-wide modes toggled while the requests run; each leaves a clean
     * request's answer 200: "close" answers then closes the connection,
     * drop_next drops requests on reused connections (the keep-alive race,
     * retried once on a fresh connection). */
    static const struct {
        int at;
        const char *query;
    } toggles[] = {
        {40, "fault=close"},
        {80, "fault=none&drop_next=15"},
        {120, "delay_ms=0&jitter_ms=30"},
        {160, "fault=close&drop_next=5"},
        {185, "fault=none&drop_next=0&delay_ms=2&jitter_ms=10"},
    };
    size_t next_toggle = 0;

    hp_it_client_t cl[CONC];
    int pending[CONC]; /* the request index in flight on cl[i], or -1 */
    int sent = 0, answered = 0;
    int by_status[600] = {0};
    int wrong = 0;
    for (int i = 0; i < CONC; i++) {
        assert_int_equal(hp_it_client_open(&cl[i], port), 0);
        pending[i] = -1;
    }
    long long t0 = hp_it_now_ms();
    long long give_up = t0 + 60000;
    while (answered < TOTAL && hp_it_now_ms() < give_up) {
        for (int i = 0; i < CONC && sent < TOTAL; i++) {
            if (pending[i] >= 0) continue;
            while (next_toggle < sizeof(toggles) / sizeof(toggles[0]) &&
                   sent >= toggles[next_toggle].at)
                hp_it_stub_control(f->stub.port, toggles[next_toggle++].query);
            int k = kind[sent];
            if (fault_kinds[k].fault)
                assert_int_equal(hp_it_client_sendf(&cl[i],
                                                    "GET /upstream/items/k%d?fault=%s HTTP/1.1\r\n"
                                                    "Host: h\r\n\r\n",
                                                    sent, fault_kinds[k].fault),
                                 0);
            else
                assert_int_equal(hp_it_client_sendf(&cl[i],
                                                    "GET /upstream/items/k%d HTTP/1.1\r\n"
                                                    "Host: h\r\n\r\n",
                                                    sent),
                                 0);
            pending[i] = sent++;
        }
        struct pollfd pfd[CONC];
        for (int i = 0; i < CONC; i++)
            pfd[i] = (struct pollfd){.fd = pending[i] >= 0 ? cl[i].fd : -1, .events = POLLIN};
        int n = poll(pfd, CONC, 1000);
        assert_true(n >= 0);
        for (int i = 0; i < CONC; i++) {
            if (!pfd[i].revents) continue;
            hp_it_resp_t r;
            int idx = pending[i];
            assert_int_equal(hp_it_client_read(&cl[i], &r, false), 0);
            int want = fault_kinds[kind[idx]].status;
            if (r.status != want) {
                fprintf(stderr, "request %d (fault %s): expected %d, got %d: %s\n", idx,
                        fault_kinds[kind[idx]].fault ? fault_kinds[kind[idx]].fault : "none", want,
                        r.status, r.body);
                wrong++;
            }
            if (r.status == 200) {
                char key[32];
                snprintf(key, sizeof(key), "\"key\":\"k%d\"", idx);
                assert_non_null(strstr(r.body, key));
            }
            assert_true(r.keep_alive); /* an upstream fault is not the client's */
            if (r.status > 0 && r.status < 600) by_status[r.status]++;
            hp_it_resp_free(&r);
            pending[i] = -1;
            answered++;
        }
    }
    long long took = hp_it_now_ms() - t0;
    for (int i = 0; i < CONC; i++)
        hp_it_client_close(&cl[i]);
    printf("it_hardening: %d upstream requests, %d concurrent, pool %d, response timeout %d ms: "
           "%d answered in %lld ms: 200 x%d, 502 x%d, 504 x%d (faults: none %d, close %d, stall "
           "%d, headers %d, garbage %d, reset %d, truncate %d, drop %d)\n",
           TOTAL, CONC, POOL, timeout_ms, answered, took, by_status[200], by_status[502],
           by_status[504], count[0], count[1], count[2], count[3], count[4], count[5], count[6],
           count[7]);
    assert_int_equal(answered, TOTAL);
    assert_int_equal(wrong, 0);
    assert_int_equal(by_status[200] + by_status[502] + by_status[504], TOTAL);

    /* Clients that leave while their request waits on a stalled upstream:
     * each request ends at once, cancelled (issue #12: a departed client's
     * request no longer holds a pool slot until its timeout). */
    enum { LEAVERS = 5 };
    for (int i = 0; i < LEAVERS; i++) {
        assert_int_equal(hp_it_client_open(&cl[i], port), 0);
        assert_int_equal(hp_it_client_sendf(&cl[i],
                                            "GET /upstream/items/gone%d?fault=stall HTTP/1.1\r\n"
                                            "Host: h\r\n\r\n",
                                            i),
                         0);
    }
    hp_it_sleep_ms(50);
    for (int i = 0; i < LEAVERS; i++)
        hp_it_client_close(&cl[i]);
    double cancelled = wait_stat(port, "upstream|cancelled", LEAVERS);
    assert_int_equal(cancelled, LEAVERS);
    assert_int_equal(hp_it_stat(port, "upstream|errors|timeout"), by_status[504]);

    /* The pool recovers: nothing busy or queued, and a clean request works. */
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(port, "/upstream/items/after", &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    printf("it_hardening: upstream after the faults: %g requests, %g responses, errors timeout "
           "%g protocol %g reset %g, %g retries, %g connections opened, pool open %g busy %g "
           "idle %g queued_max %g\n",
           hp_it_json_get(s, "upstream|requests"), hp_it_json_get(s, "upstream|responses"),
           hp_it_json_get(s, "upstream|errors|timeout"),
           hp_it_json_get(s, "upstream|errors|protocol"),
           hp_it_json_get(s, "upstream|errors|reset"), hp_it_json_get(s, "upstream|retries"),
           hp_it_json_get(s, "upstream|pool|connections_opened"),
           hp_it_json_get(s, "upstream|pool|open"), hp_it_json_get(s, "upstream|pool|busy"),
           hp_it_json_get(s, "upstream|pool|idle"), hp_it_json_get(s, "upstream|pool|queued_max"));
    assert_int_equal(hp_it_json_get(s, "upstream|pool|busy"), 0);
    assert_int_equal(hp_it_json_get(s, "upstream|pool|queued"), 0);
    assert_true(hp_it_json_get(s, "upstream|pool|open") <= POOL);
    /* The leavers' requests are not counted as routed: their connections
     * are read while the requests run, so the server learns at once that
     * the clients left, and nothing is answered. */
    double routed = hp_it_json_get(s, "routes|/upstream/|valuetask|requests");
    assert_int_equal(routed, TOTAL + 1);
    /* Every request the handler made ended one way or another, once. */
    assert_int_equal(hp_it_json_get(s, "upstream|requests"), TOTAL + LEAVERS + 1);
    assert_int_equal(hp_it_json_get(s, "upstream|responses"), by_status[200] + 1);
    assert_int_equal(hp_it_json_get(s, "upstream|errors|timeout"), by_status[504]);
    assert_int_equal(hp_it_json_get(s, "upstream|cancelled"), LEAVERS);
    assert_int_equal(hp_it_json_get(s, "upstream|errors|protocol") +
                         hp_it_json_get(s, "upstream|errors|reset"),
                     by_status[502]);
    assert_int_equal(hp_it_json_get(s, "upstream|errors|connect"), 0);
    assert_true(hp_it_json_get(s, "upstream|retries") >= 1); /* drop_next was met */
    cJSON_Delete(s);
    hp_it_fixture_stop(f);
}

int main(void)
{
    hp_alloc_install();
    const char *s = getenv("HOTPATH_SLOW");
    slow = s && *s && strcmp(s, "0") != 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(slowloris_gets_408_at_the_header_timeout_and_others_are_served,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(empty_lines_do_not_hold_a_connection_open,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(idle_keep_alive_connection_closes_at_the_idle_timeout,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(reader_that_never_reads_is_closed_at_the_idle_timeout,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(body_below_the_minimum_rate_gets_408, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(connections_over_the_cap_are_closed_without_an_answer,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(rejections_answer_close_and_ignore_what_follows,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sighup_during_a_request_applies_to_the_next_ones,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sighup_lowering_timeouts_applies_to_new_connections,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sigterm_drains_refuses_new_finishes_running_closes_idle,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(mixed_upstream_faults_all_answered_and_the_pool_recovers,
                                  hp_it_fixture_teardown),
    };
    return hp_it_result(cmocka_run_group_tests(tests, NULL, NULL));
}
