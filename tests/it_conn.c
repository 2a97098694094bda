/*
 * it_conn.c - integration tests for a connection that fails under the
 * server's feet, over real sockets against the real binary: a peer that
 * resets while the server is parsing, dispatching or answering what it
 * sent (every write then fails), at each point where the server writes
 * while its parser or dispatcher is still running on the connection.
 *
 * Determinism: the server is paused (SIGSTOP) while the client sends its
 * bytes and resets, then resumed, so it reads the request and meets the
 * reset in one go - the failing write is always the one under test, never
 * a race. Each test then checks that the server is alive and serving, that
 * the connection's memory came back (allocations|live returns to where it
 * was), and that the server exits 0 (under the sanitizer build a leak or a
 * use-after-free is a non-zero exit).
 */
#include "faults.h"
#include "fixture.h"

#include "server/alloc.h"

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

/* A /plaintext answer is about 160 bytes: this many pipelined requests make
 * the server flush mid-batch (it does at 64 KiB of output). */
#define BATCH 1000
#define PLAIN "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n"

/* The server answers, and holds no connection but the ones the test has
 * open (ask twice: the first /stats may still see a closing one). */
static void assert_serving(int port, double open_conns)
{
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(port, "/plaintext", &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    /* The /stats connection itself is open while it answers. */
    assert_int_equal(hp_it_wait_stat(port, "connections|open", open_conns + 1), open_conns + 1);
}

/* Send bytes on a new connection and reset it while the server is paused,
 * n times; then the server runs again and finds each request with its
 * reset. */
static void send_and_reset_while_paused(fixture_t *f, const char *bytes, size_t len, int n)
{
    for (int i = 0; i < n; i++) {
        hp_it_client_t c;
        assert_int_equal(hp_it_server_pause(&f->server), 0);
        assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
        assert_int_equal(hp_it_client_send(&c, bytes, len), 0);
        hp_it_client_reset(&c);
        assert_int_equal(hp_it_server_resume(&f->server), 0);
    }
}

/* The live-allocation count after warm-up, once the server is quiet. */
static double live_allocations(int port)
{
    /* Two in a row: the first settles whatever the previous connection
     * left for its close callback. */
    hp_it_stat(port, "allocations|live");
    return hp_it_stat(port, "allocations|live");
}

/* Bug: writing the interim 100 Continue to a reset peer closed the
 * connection inside on_headers_complete, and llhttp went on to on_body
 * with the request context gone (a NULL dereference: the process died). */
static void expect_continue_to_a_reset_peer(void **state)
{
    enum { TIMES = 20 };
    fixture_t *f = hp_it_fixture_new(state);
    hp_it_fixture_start_server(f, NULL, NULL);
    int port = f->server.port;
    assert_serving(port, 0);
    double live0 = live_allocations(port);

    static const char req[] = "POST /echo HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                              "Content-Length: 5\r\n\r\nhello" PLAIN;
    send_and_reset_while_paused(f, req, sizeof(req) - 1, TIMES);

    assert_int_equal(hp_it_server_wait(&f->server, 0), -2); /* still running */
    assert_serving(port, 0);
    double live1 = live_allocations(port);
    printf("it_conn: %d requests with Expect: 100-continue from peers that reset: server up, "
           "live allocations %.0f -> %.0f\n",
           TIMES, live0, live1);
    assert_int_equal(live1, live0);
    /* None of them was answered: the /echo never ran. */
    assert_int_equal(hp_it_stat(port, "routes|/echo|valuetask|requests"), 0);
    hp_it_fixture_stop(f);
}

/* Bug: a write failing mid-batch (the flush at 64 KiB of answers) closed
 * the connection while parse() was still on it; parse() then kept "the
 * rest" in a new carry buffer nobody freed (46 KB a connection). */
static void write_failing_mid_batch_leaks_nothing(void **state)
{
    enum { TIMES = 20 };
    fixture_t *f = hp_it_fixture_new(state);
    hp_it_fixture_start_server(f, NULL, NULL);
    int port = f->server.port;
    assert_serving(port, 0);
    double live0 = live_allocations(port);

    size_t len;
    char *batch = hp_it_repeat_request(PLAIN, BATCH, &len);
    send_and_reset_while_paused(f, batch, len, TIMES);
    free(batch);

    assert_int_equal(hp_it_server_wait(&f->server, 0), -2);
    assert_serving(port, 0);
    double live1 = live_allocations(port);
    double ran = hp_it_stat(port, "routes|/plaintext|valuetask|requests");
    printf("it_conn: %d batches of %d pipelined requests from peers that reset: %.0f requests "
           "ran (the rest were dropped with the connection), live allocations %.0f -> %.0f\n",
           TIMES, BATCH, ran, live0, live1);
    assert_int_equal(live1, live0);
    /* Each batch ran until its first flush failed, not to its end. */
    assert_true(ran < (double)TIMES * BATCH);
    hp_it_fixture_stop(f);
}

/* Bug: the batch behind a request that pends waits in the connection's
 * carry; when the request completes, the carry is parsed, and a write
 * failing mid-way freed the carry under the parser (use-after-free) and
 * leaked a copy of its rest. */
static void write_failing_while_parsing_the_carry(void **state)
{
    enum { TIMES = 5, DELAY_MS = 200 };
    fixture_t *f = hp_it_fixture_new(state);
    hp_it_fixture_start_stub_delay(f, DELAY_MS);
    char config[128];
    snprintf(config, sizeof(config), "{\"upstream\": {\"port\": %d}}", f->stub.port);
    hp_it_fixture_start_server(f, config, NULL);
    int port = f->server.port;
    assert_serving(port, 0);
    /* Warm the upstream pool too, to as many connections as the test will
     * use at once: they are allocations that stay. */
    hp_it_client_t warm[TIMES];
    for (int i = 0; i < TIMES; i++) {
        assert_int_equal(hp_it_client_open(&warm[i], port), 0);
        assert_int_equal(
            hp_it_client_sendf(&warm[i], "GET /upstream/items/warm HTTP/1.1\r\nHost: h\r\n\r\n"),
            0);
    }
    for (int i = 0; i < TIMES; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_read(&warm[i], &r, false), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
        hp_it_client_close(&warm[i]);
    }
    double live0 = live_allocations(port);
    double pool0 = hp_it_stat(port, "upstream|pool|open");

    size_t len;
    char *batch = hp_it_repeat_request(PLAIN, BATCH, &len);
    static const char first[] = "GET /upstream/items/slow HTTP/1.1\r\nHost: h\r\n\r\n";
    char *bytes = malloc(sizeof(first) - 1 + len);
    memcpy(bytes, first, sizeof(first) - 1);
    memcpy(bytes + sizeof(first) - 1, batch, len);
    for (int i = 0; i < TIMES; i++) {
        hp_it_client_t c;
        assert_int_equal(hp_it_client_open(&c, port), 0);
        assert_int_equal(hp_it_client_send(&c, bytes, sizeof(first) - 1 + len), 0);
        /* The upstream request pends; the batch waits behind it. */
        hp_it_sleep_ms(DELAY_MS / 4);
        hp_it_client_reset(&c);
    }
    free(bytes);
    free(batch);
    /* Every upstream request ended (answered or dropped with its client). */
    hp_it_sleep_ms(DELAY_MS * 2);
    assert_int_equal(hp_it_server_wait(&f->server, 0), -2);
    assert_serving(port, 0);
    assert_int_equal(hp_it_wait_stat(port, "upstream|pool|busy", 0), 0);
    double live1 = live_allocations(port);
    double pool1 = hp_it_stat(port, "upstream|pool|open");
    printf("it_conn: %d pending requests with %d pipelined behind each, peers reset: live "
           "allocations %.0f -> %.0f (upstream connections %.0f -> %.0f)\n",
           TIMES, BATCH, live0, live1, pool0, pool1);
    assert_int_equal(pool1, pool0);
    assert_int_equal(live1, live0);
    hp_it_fixture_stop(f);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(expect_continue_to_a_reset_peer, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(write_failing_mid_batch_leaks_nothing, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(write_failing_while_parsing_the_carry, hp_it_fixture_teardown),
    };
    return hp_it_result(cmocka_run_group_tests(tests, NULL, NULL));
}
