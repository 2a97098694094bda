/*
 * it_lifecycle.c - integration tests for the binary's life: flags, the
 * configuration file and its errors, live reload on SIGHUP, and the
 * graceful stop on SIGTERM/SIGINT.
 *
 * The command-line cases run the binary to completion and check its exit
 * status (0 done, 1 bad configuration, 2 bad usage) and what it printed.
 * The signal cases start a server, poke it, and read /stats and the
 * server's stderr; every server must still exit 0 at the end (a leak check
 * in the sanitizer build).
 */
#include "server/layers.h"
#include "tests/support/fixture.h"

#include "runtime/alloc.h"

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

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fprintf(stderr, "expected \"%s\" in:\n%s\n", needle, haystack);
    assert_non_null(strstr(haystack, needle));
}

static void assert_stats_mode(int port, const char *mode)
{
    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    const cJSON *m = hp_it_json_at(s, "server|mode");
    assert_true(cJSON_IsString(m));
    assert_string_equal(m->valuestring, mode);
    cJSON_Delete(s);
}

static void get_plaintext(int port, int n)
{
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, port), 0);
    for (int i = 0; i < n; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_request(&c, "GET", "/plaintext", NULL, &r), 0);
        assert_int_equal(r.status, 200);
        hp_it_resp_free(&r);
    }
    hp_it_client_close(&c);
}

/* --- the command line ------------------------------------------------------ */

static void help_exits_0_with_usage(void **state)
{
    const char *args[] = {"--help", NULL};
    hp_it_output_t out;
    assert_int_equal(hp_it_run(NULL, args, &out), 0);
    assert_int_equal(out.status, 0);
    assert_contains(out.out, "usage: hotpath");
    static const char *const flags[] = {"--config", "--mode", "--port", "--workers", "--version"};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        assert_contains(out.out, flags[i]);
    /* ...then every option, from the one table. */
    assert_contains(out.out, "limits.header_bytes");
    assert_contains(out.out, "limits.drain_timeout_ms");
    assert_contains(out.out, "access_log");
    /* ...and each middleware's own, with its default and why. */
    assert_contains(out.out, "\n  server_headers.server          hotpath    the Server header's");
    assert_contains(out.out, "\n  request_id.trust_incoming      true       ");
    assert_contains(out.out, "\n  access_log.path                -          ");
    assert_contains(out.out, "\n  access_log.buffer_bytes        65536      64 KiB per worker");
    hp_it_output_free(&out);
}

static void version_exits_0(void **state)
{
    const char *args[] = {"--version", NULL};
    hp_it_output_t out;
    assert_int_equal(hp_it_run(NULL, args, &out), 0);
    assert_int_equal(out.status, 0);
    assert_int_equal(strncmp(out.out, "hotpath ", 8), 0);
    assert_true(out.out[8] >= '0' && out.out[8] <= '9');
    hp_it_output_free(&out);
}

static void bad_usage_exits_2(void **state)
{
    static const struct {
        const char *args[4];
        const char *message;
    } cases[] = {
        {{"--frobnicate", NULL}, "--frobnicate"},
        {{"--mode", "fast", NULL}, "--mode"},
        {{"--mode", NULL}, "--mode"},
        {{"--port", "70000", NULL}, "--port"},
        {{"--workers", "x", NULL}, "--workers"},
        {{"--config", NULL}, "--config"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        hp_it_output_t out;
        assert_int_equal(hp_it_run(NULL, cases[i].args, &out), 0);
        if (out.status != 2) fprintf(stderr, "case %zu: status %d: %s", i, out.status, out.err);
        assert_int_equal(out.status, 2);
        assert_contains(out.err, cases[i].message);
        assert_null(strstr(out.out, "listening"));
        hp_it_output_free(&out);
    }
}

static void bad_config_exits_1_naming_the_key(void **state)
{
    static const struct {
        const char *json;
        const char *message;
    } cases[] = {
        {"{\"limits\": {\"nope\": 1}}", "limits.nope"},
        {"{\"limits\": {\"header_bytes\": \"big\"}}", "limits.header_bytes"},
        {"{\"limits\": {\"header_bytes\": 12}}", "limits.header_bytes"}, /* below its minimum */
        {"{\"mode\": \"fast\"}", "mode"},
        {"{\"listen\": {\"port\": 1.5}}", "listen.port"},
        {"{\"middleware\": [{\"name\": \"nosuch\"}]}", "middleware[0].name"},
        {"{\"middleware\": [{\"name\": \"access_log\", \"enabled\": false, \"nope\": 1}]}",
         "middleware[0].nope"},
        {"{\"limits\": {\"header_bytes\": 4096, \"request_line_bytes\": 8192}}",
         "limits.request_line_bytes"},
        {"{ \"mode\": \"task\",\n  \"limits\": { ", "not valid JSON"},
        {"[1, 2]", "top level"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[] = {"--port", "0", NULL};
        hp_it_output_t out;
        assert_int_equal(hp_it_run(cases[i].json, args, &out), 0);
        if (out.status != 1) fprintf(stderr, "case %zu: status %d: %s", i, out.status, out.err);
        assert_int_equal(out.status, 1);
        assert_contains(out.err, cases[i].message);
        assert_contains(out.err, "run.json"); /* and the file */
        assert_null(strstr(out.out, "listening"));
        hp_it_output_free(&out);
    }
    /* A file that is not there. */
    const char *args[] = {"--config", "/nonexistent/hotpath.json", NULL};
    hp_it_output_t out;
    assert_int_equal(hp_it_run(NULL, args, &out), 0);
    assert_int_equal(out.status, 1);
    assert_contains(out.err, "/nonexistent/hotpath.json");
    hp_it_output_free(&out);
}

static void mode_flag_overrides_the_file(void **state)
{
    const char *args[] = {"--mode", "task", NULL};
    fixture_t *f = start(state, "{\"mode\": \"valuetask\"}", args);
    assert_stats_mode(f->server.port, "task");
    get_plaintext(f->server.port, 3);
    assert_int_equal(hp_it_stat(f->server.port, "routes|/plaintext|task|requests"), 3);
    assert_int_equal(hp_it_stat(f->server.port, "routes|/plaintext|valuetask|requests"), 0);
    /* The flag also wins over the file across a reload. */
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "reloaded", HP_IT_TIMEOUT_MS));
    assert_stats_mode(f->server.port, "task");
    hp_it_fixture_stop(f);
}

/* --- SIGHUP ----------------------------------------------------------------- */

static void sighup_switches_mode(void **state)
{
    fixture_t *f = start(state, "{\"mode\": \"valuetask\"}", NULL);
    int port = f->server.port;
    get_plaintext(port, 5);
    assert_stats_mode(port, "valuetask");
    assert_int_equal(hp_it_stat(port, "routes|/plaintext|valuetask|requests"), 5);

    assert_int_equal(hp_it_server_write_config(&f->server, "{\"mode\": \"task\"}"), 0);
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "(mode task)", HP_IT_TIMEOUT_MS));
    /* The workers pick the new generation up from their loop: wait (bounded)
     * until /stats says so. */
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    while (hp_it_stat(port, "server|reloads") < 1 && hp_it_now_ms() < deadline)
        hp_it_sleep_ms(10);
    assert_int_equal(hp_it_stat(port, "server|reloads"), 1);
    assert_stats_mode(port, "task");

    get_plaintext(port, 7);
    assert_int_equal(hp_it_stat(port, "routes|/plaintext|task|requests"), 7);
    assert_int_equal(hp_it_stat(port, "routes|/plaintext|valuetask|requests"), 5);
    /* Task mode's price shows up right away: 4 layers, a task each. */
    assert_int_equal(hp_it_stat(port, "routes|/plaintext|task|allocations"), 7 * 4);

    /* And back. */
    assert_int_equal(hp_it_server_write_config(&f->server, "{\"mode\": \"valuetask\"}"), 0);
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "(mode valuetask)", HP_IT_TIMEOUT_MS));
    deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    while (hp_it_stat(port, "server|reloads") < 2 && hp_it_now_ms() < deadline)
        hp_it_sleep_ms(10);
    assert_stats_mode(port, "valuetask");
    get_plaintext(port, 2);
    assert_int_equal(hp_it_stat(port, "routes|/plaintext|valuetask|requests"), 7);
    hp_it_fixture_stop(f);
}

static void sighup_with_a_broken_file_keeps_the_running_config(void **state)
{
    fixture_t *f = start(state, "{\"mode\": \"valuetask\"}", NULL);
    int port = f->server.port;
    static const struct {
        const char *json;
        const char *key;
    } broken[] = {
        {"{\"mode\": \"task\", \"limits\": {\"nope\": 1}}", "limits.nope"},
        {"{\"mode\": \"task\", \"limits\": {\"header_bytes\": \"big\"}}", "limits.header_bytes"},
        {"{\"mode\": \"task\", ", "not valid JSON"},
        /* A middleware's own options, read through its table. */
        {"{\"mode\": \"task\", \"middleware\": [{\"name\": \"access_log\", \"enabled\": false, "
         "\"buffer_bytes\": 1}]}",
         "middleware[0].buffer_bytes: expected an integer from 4096 to 16777216"},
        {"{\"mode\": \"task\", \"middleware\": [{\"name\": \"server_headers\"}, {\"name\": "
         "\"request_id\", \"trust_incoming\": \"yes\"}]}",
         "middleware[1].trust_incoming: expected true or false"},
    };
    const int nbroken = (int)(sizeof(broken) / sizeof(broken[0]));
    for (int i = 0; i < nbroken; i++) {
        assert_int_equal(hp_it_server_write_config(&f->server, broken[i].json), 0);
        assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
        char needle[128];
        snprintf(needle, sizeof(needle), "%s", broken[i].key);
        assert_true(hp_it_server_wait_stderr(&f->server, needle, HP_IT_TIMEOUT_MS));
        char *log = hp_it_server_stderr(&f->server);
        /* One line says both: refused, and why. */
        const char *at = strstr(log, needle);
        const char *bol = at;
        while (bol > log && bol[-1] != '\n')
            bol--;
        char line[512];
        snprintf(line, sizeof(line), "%.*s", (int)(strcspn(bol, "\n")), bol);
        free(log);
        assert_contains(line, "reload refused");
        assert_contains(line, strrchr(f->server.config, '/') + 1); /* the file */
        assert_stats_mode(port, "valuetask");
        get_plaintext(port, 1);
    }
    assert_int_equal(hp_it_stat(port, "server|reloads"), 0);
    assert_int_equal(hp_it_stat(port, "routes|/plaintext|task|requests"), 0);
    assert_int_equal(hp_it_stat(port, "routes|/plaintext|valuetask|requests"), nbroken);
    /* A good file afterwards is taken. */
    assert_int_equal(hp_it_server_write_config(&f->server, "{\"mode\": \"task\"}"), 0);
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "(mode task)", HP_IT_TIMEOUT_MS));
    hp_it_fixture_stop(f);
}

static void sighup_changes_the_middleware_chain(void **state)
{
    fixture_t *f = start(state, NULL, NULL);
    int port = f->server.port;
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(port, "/plaintext", &r), 0);
    assert_non_null(hp_it_header(&r, "X-Request-Id"));
    assert_string_equal(hp_it_header(&r, "Server"), "hotpath");
    hp_it_resp_free(&r);

    /* request_id off, and the Server header renamed. */
    assert_int_equal(hp_it_server_write_config(
                         &f->server, "{\"middleware\": [{\"name\": \"server_headers\", \"server\": "
                                     "\"renamed\"}, {\"name\": \"request_id\", \"enabled\": false},"
                                     " {\"name\": \"metrics\"}]}"),
                     0);
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "reloaded", HP_IT_TIMEOUT_MS));
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    while (hp_it_stat(port, "server|reloads") < 1 && hp_it_now_ms() < deadline)
        hp_it_sleep_ms(10);
    assert_int_equal(hp_it_get(port, "/plaintext", &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(hp_it_header(&r, "X-Request-Id"));
    assert_string_equal(hp_it_header(&r, "Server"), "renamed");
    hp_it_resp_free(&r);

    /* The listener stays where it is: the file cannot move it live. */
    assert_int_equal(
        hp_it_server_write_config(&f->server, "{\"listen\": {\"host\": \"127.0.0.2\"}}"), 0);
    assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "need a restart", HP_IT_TIMEOUT_MS));
    deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    while (hp_it_stat(port, "server|reloads") < 2 && hp_it_now_ms() < deadline)
        hp_it_sleep_ms(10);
    assert_int_equal(hp_it_get(port, "/plaintext", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(hp_it_header(&r, "X-Request-Id")); /* the default chain again */
    assert_string_equal(hp_it_header(&r, "Server"), "hotpath");
    hp_it_resp_free(&r);
    hp_it_fixture_stop(f);
}

static void sighup_right_after_the_listening_line_reloads(void **state)
{
    /* The line says the server is up; a supervisor may reload it at once.
     * SIGHUP's default action ends the process, so the handler must be in
     * place before the line is printed. A few rounds, as the window is
     * narrow. */
    for (int round = 0; round < 8; round++) {
        fixture_t *f = start(state, "{\"mode\": \"valuetask\"}", NULL);
        assert_int_equal(hp_it_server_signal(&f->server, SIGHUP), 0);
        bool reloaded = hp_it_server_wait_stderr(&f->server, "reloaded", HP_IT_TIMEOUT_MS);
        int st = hp_it_server_wait(&f->server, 0); /* -2: running */
        if (st != -2) {
            fprintf(stderr,
                    "round %d: the server died of a SIGHUP sent right after its "
                    "listening line (status %d)\n",
                    round, st);
            f->server_up = false;
        }
        assert_int_equal(st, -2); /* still running */
        assert_true(reloaded);
        hp_it_fixture_stop(f);
        free(f);
        *state = NULL;
    }
}

/* --- SIGTERM, SIGINT ----------------------------------------------------- */

static void sigterm_with_an_idle_keep_alive_connection_exits_promptly(void **state)
{
    /* A long drain timeout: an idle connection must not wait for it. */
    fixture_t *f = start(state, "{\"limits\": {\"drain_timeout_ms\": 5000}}", NULL);
    hp_it_client_t c;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    assert_int_equal(hp_it_client_request(&c, "GET", "/plaintext", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_server_signal(&f->server, SIGTERM), 0);
    assert_true(hp_it_client_wait_eof(&c, HP_IT_TIMEOUT_MS)); /* closed, no answer */
    int st = hp_it_server_wait(&f->server, HP_IT_PROCESS_MS);
    long long took = hp_it_now_ms() - t0;
    f->server_up = st == -2;
    printf("it_lifecycle: idle keep-alive: exit %d after %lld ms\n", st, took);
    assert_int_equal(st, 0);
    assert_true(took < 2000); /* a tick or two, not the 5 s drain */
    assert_true(hp_it_server_wait_stderr(&f->server, "SIGTERM: draining", 0));
    assert_true(hp_it_server_wait_stderr(&f->server, "stopped", 0));
    hp_it_client_close(&c);
}

static void sigterm_with_a_half_sent_request_ends_within_the_drain_timeout(void **state)
{
    enum { DRAIN_MS = 400 };
    char config[128];
    snprintf(config, sizeof(config), "{\"limits\": {\"drain_timeout_ms\": %d}}", DRAIN_MS);
    fixture_t *f = start(state, config, NULL);
    hp_it_client_t half, rest;
    assert_int_equal(hp_it_client_open(&half, f->server.port), 0);
    assert_int_equal(hp_it_client_open(&rest, f->server.port), 0);
    /* Two clients mid-head: one never finishes, one finishes after the
     * signal. */
    assert_int_equal(hp_it_client_sendf(&half, "GET /plaintext HTTP/1.1\r\nHost: h\r\n"), 0);
    assert_int_equal(hp_it_client_sendf(&rest, "GET /plaintext HTTP/1.1\r\nHost: h\r\n"), 0);
    hp_it_sleep_ms(50); /* let the server read both */
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_server_signal(&f->server, SIGTERM), 0);
    hp_it_sleep_ms(50);
    /* The rest of the head: the answer must be whole, with Connection:
     * close, or the connection must close without one. */
    int rc = hp_it_client_sendf(&rest, "X-Request-Id: late\r\n\r\n");
    hp_it_resp_t r = {0};
    if (rc == 0) rc = hp_it_client_read(&rest, &r, false);
    if (rc == 0) {
        printf("it_lifecycle: a head finished during the drain got %d\n", r.status);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "Hello, World!");
        assert_string_equal(hp_it_header(&r, "Connection"), "close");
        assert_true(r.closed);
    } else {
        /* Not a timeout: the send was refused or the read saw the close. */
        printf("it_lifecycle: a head finished during the drain got a close\n");
        assert_true(rest.eof);
        assert_true(r.raw_len == 0);
    }
    hp_it_resp_free(&r);
    /* The one that never finishes is closed at the drain deadline. */
    assert_true(hp_it_client_wait_eof(&half, DRAIN_MS + 2000));
    int st = hp_it_server_wait(&f->server, HP_IT_PROCESS_MS);
    long long took = hp_it_now_ms() - t0;
    f->server_up = st == -2;
    printf("it_lifecycle: half-sent request: exit %d after %lld ms (drain_timeout_ms %d)\n", st,
           took, DRAIN_MS);
    assert_int_equal(st, 0);
    /* The deadline is checked on the tick (HP_TICK_MS); 1.5 s of slack for a
     * loaded machine and the sanitizer build. */
    assert_true(took < DRAIN_MS + HP_TICK_MS + 1500);
    hp_it_client_close(&half);
    hp_it_client_close(&rest);
}

/* A server whose upstream is the stub, answering after delay_ms. */
static fixture_t *start_with_upstream(void **state, int delay_ms, int drain_ms)
{
    fixture_t *f = hp_it_fixture_new(state);
    char rest[64];
    snprintf(rest, sizeof(rest), "\"limits\": {\"drain_timeout_ms\": %d}", drain_ms);
    hp_it_fixture_start_behind_stub(f, delay_ms, NULL, NULL, rest, NULL);
    return f;
}

static void sigterm_ends_a_request_that_outlasts_the_drain_timeout(void **state)
{
    enum { DELAY_MS = 4000, DRAIN_MS = 300 };
    fixture_t *u = start_with_upstream(state, DELAY_MS, DRAIN_MS);
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, u->server.port), 0);
    assert_int_equal(hp_it_client_sendf(&c, "GET /upstream/items/k HTTP/1.1\r\nHost: h\r\n\r\n"),
                     0);
    hp_it_sleep_ms(50);
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_server_signal(&u->server, SIGTERM), 0);
    /* An answer (a 5xx: the upstream call was cut) or a close, by the drain
     * deadline; then the process exits 0, before the upstream would have
     * answered. */
    hp_it_resp_t r;
    int rc = hp_it_client_read(&c, &r, false);
    long long answered = hp_it_now_ms() - t0;
    if (rc == 0) {
        printf("it_lifecycle: request cut by the drain: %d after %lld ms\n", r.status, answered);
        assert_true(r.status >= 500);
        assert_true(r.closed);
    } else {
        printf("it_lifecycle: request cut by the drain: closed after %lld ms\n", answered);
        assert_true(c.eof);
    }
    hp_it_resp_free(&r);
    assert_true(answered < DRAIN_MS + HP_TICK_MS + 1500);
    int st = hp_it_server_wait(&u->server, HP_IT_PROCESS_MS);
    long long took = hp_it_now_ms() - t0;
    u->server_up = st == -2;
    printf("it_lifecycle: request cut by the drain: exit %d after %lld ms (drain_timeout_ms %d, "
           "upstream delay %d ms)\n",
           st, took, DRAIN_MS, DELAY_MS);
    assert_int_equal(st, 0);
    assert_true(took < DRAIN_MS + HP_TICK_MS + 1500);
    hp_it_client_close(&c);
}

static void sigint_stops_like_sigterm(void **state)
{
    fixture_t *f = start(state, NULL, NULL);
    get_plaintext(f->server.port, 1);
    assert_int_equal(hp_it_server_signal(&f->server, SIGINT), 0);
    int st = hp_it_server_wait(&f->server, HP_IT_PROCESS_MS);
    f->server_up = st == -2;
    assert_int_equal(st, 0);
    assert_true(hp_it_server_wait_stderr(&f->server, "SIGINT: draining", 0));
    /* Gone: nothing listens on the port any more. */
    hp_it_client_t c;
    assert_true(hp_it_client_open(&c, f->server.port) < 0);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(help_exits_0_with_usage),
        cmocka_unit_test(version_exits_0),
        cmocka_unit_test(bad_usage_exits_2),
        cmocka_unit_test(bad_config_exits_1_naming_the_key),
        cmocka_unit_test_teardown(mode_flag_overrides_the_file, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sighup_switches_mode, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sighup_with_a_broken_file_keeps_the_running_config,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sighup_changes_the_middleware_chain, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sighup_right_after_the_listening_line_reloads,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sigterm_with_an_idle_keep_alive_connection_exits_promptly,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sigterm_with_a_half_sent_request_ends_within_the_drain_timeout,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sigterm_ends_a_request_that_outlasts_the_drain_timeout,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(sigint_stops_like_sigterm, hp_it_fixture_teardown),
    };
    return hp_it_result(cmocka_run_group_tests(tests, NULL, NULL));
}
