/*
 * test_handlers.c - the two handlers that send work upstream,
 * handlers/cache.c and handlers/upstream.c, and the path rules they share
 * (handlers/target.c), in process: the real parser, chain, handlers, cache
 * and upstream client on an in-memory worker (memserver.h).
 *
 *   - target.c's rules as a table: raw path and query -> the normalized
 *     form, or the refusal;
 *   - a client that goes away while its request waits: the abort hook
 *     cancels an /upstream request, and detaches a cache waiter without
 *     cancelling a fill that others share;
 *   - the runtime refusing an await at either handler's one
 *     hp_layer_await (chain.h, which calls hp_vtask_on_completed and hands
 *     a refusal back as the fault): the request is answered 500 at once, the
 *     refusal is counted, and the upstream work it started is taken back,
 *     never left to hang. The refusal cannot happen with these handlers'
 *     own fresh valuetasks, so this binary is linked with
 *     -Wl,--wrap=hp_vtask_on_completed (cmocka's way to mock a function):
 *     the wrapper consumes the valuetask first, as a bug that read it
 *     early would, and the real function then refuses;
 *   - a get that comes back unreadable (-Wl,--wrap=hp_cache_get: another
 *     copy released its task): hp_vtask_is_completed says true, and the
 *     cache handler's synchronous path answers 500, not 502, and a miss
 *     leaves its fill.
 *
 * The upstream is 127.0.0.1:1, where nothing listens: what these tests
 * look at happens before a connection could be made.
 */
#include "cache/cache.h"
#include "handlers/handlers.h"
#include "handlers/origin.h"
#include "handlers/target.h"
#include "runtime/alloc.h"
#include "server/conn.h"
#include "runtime/counter.h"
#include "runtime/vtask.h"
#include "tests/support/memserver.h"
#include "upstream/client.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* --- the wrapped await ------------------------------------------------- */

int __real_hp_vtask_on_completed(hp_vtask_t *vt, hp_cont_cb cb, void *arg);
int __wrap_hp_vtask_on_completed(hp_vtask_t *vt, hp_cont_cb cb, void *arg);

static int refuse_next; /* how many of the next awaits to make refused */

int __wrap_hp_vtask_on_completed(hp_vtask_t *vt, hp_cont_cb cb, void *arg)
{
    if (refuse_next > 0) {
        refuse_next--;
        hp_task_unref(hp_vtask_as_task(vt)); /* consumed before it was awaited */
    }
    return __real_hp_vtask_on_completed(vt, cb, arg);
}

/* --- the wrapped cache get --------------------------------------------- */

hp_vtask_t __real_hp_cache_get(hp_cache_t *c, hp_mode_t mode, const char *key, size_t key_len,
                               uint64_t now_ms, hp_cache_outcome_t *outcome);
hp_vtask_t __wrap_hp_cache_get(hp_cache_t *c, hp_mode_t mode, const char *key, size_t key_len,
                               uint64_t now_ms, hp_cache_outcome_t *outcome);

static int spoil_next; /* how many of the next gets to hand back consumed */

hp_vtask_t __wrap_hp_cache_get(hp_cache_t *c, hp_mode_t mode, const char *key, size_t key_len,
                               uint64_t now_ms, hp_cache_outcome_t *outcome)
{
    hp_vtask_t vt = __real_hp_cache_get(c, mode, key, key_len, now_ms, outcome);
    if (spoil_next > 0) {
        spoil_next--;
        assert_int_equal(vt.kind, HP_VT_TASK);
        hp_vtask_t copy = vt;
        hp_vtask_drop(&copy); /* another copy gave the task up */
    }
    return vt;
}

/* --- target.c ---------------------------------------------------------- */

typedef struct {
    const char *path, *query;
    int reason;       /* 0: accepted */
    const char *norm; /* hp_target_normalize's output */
    const char *abs;  /* hp_target_remove_dots's, or NULL when it refuses */
    int dots_reason;
} target_row_t;

static const target_row_t target_rows[] = {
    {"", "", 0, "", "/", 0},
    {"a/b", "", 0, "a/b", "/a/b", 0},
    {"a/./b/../c", "", 0, "a/./b/../c", "/a/c", 0},
    {"a/..", "", 0, "a/..", "/", 0},
    {"a/.", "", 0, "a/.", "/a/", 0},
    {".", "", 0, ".", "/", 0},
    {"a//b", "", 0, "a//b", "/a//b", 0},
    {"a//..", "", 0, "a//..", "/a/", 0},
    {"items/../bytes/3", "", 0, "items/../bytes/3", "/bytes/3", 0},
    {"%41%7e%c3%a9", "", 0, "A~%C3%A9", "/A~%C3%A9", 0},
    {"a%20b%2a", "", 0, "a%20b%2A", "/a%20b%2A", 0},
    {"x", "q=%2F&r=..", 0, "x", "/x", 0},
    {"..", "", 0, "..", NULL, HP_TARGET_ABOVE_ROOT},
    {"%2e%2E/x", "", 0, "../x", NULL, HP_TARGET_ABOVE_ROOT},
    {"a/../../x", "", 0, "a/../../x", NULL, HP_TARGET_ABOVE_ROOT},
    {"/evil/x", "", 0, "/evil/x", NULL, HP_TARGET_AUTHORITY},
    {"/", "", 0, "/", NULL, HP_TARGET_AUTHORITY},
    {"a#frag", "", HP_TARGET_FRAGMENT, NULL, NULL, 0},
    {"x", "y#z", HP_TARGET_FRAGMENT, NULL, NULL, 0},
    {"a\\b", "", HP_TARGET_BACKSLASH, NULL, NULL, 0},
    {"a%5Cb", "", HP_TARGET_BACKSLASH, NULL, NULL, 0},
    {"a%5cb", "", HP_TARGET_BACKSLASH, NULL, NULL, 0},
    {"a%2Fb", "", HP_TARGET_ENCODED_SLASH, NULL, NULL, 0},
    {"a%2fb", "", HP_TARGET_ENCODED_SLASH, NULL, NULL, 0},
    {"a%zz", "", HP_TARGET_BAD_ESCAPE, NULL, NULL, 0},
    {"a%4", "", HP_TARGET_BAD_ESCAPE, NULL, NULL, 0},
    {"a%", "", HP_TARGET_BAD_ESCAPE, NULL, NULL, 0},
    {"a\x7f", "", HP_TARGET_BAD_CHAR, NULL, NULL, 0},
    {"\xc3\xa9", "", HP_TARGET_BAD_CHAR, NULL, NULL, 0},
};

static hp_str_t str(const char *s)
{
    return (hp_str_t){s, strlen(s)};
}

static void target_table(void **state)
{
    for (size_t i = 0; i < sizeof(target_rows) / sizeof(target_rows[0]); i++) {
        const target_row_t *row = &target_rows[i];
        char norm[64], abs[64];
        int n = hp_target_normalize(str(row->path), str(row->query), norm);
        if (row->reason) {
            if (n != -row->reason)
                fail_msg("\"%s\"?\"%s\": got %d, expected refusal %d (%s)", row->path, row->query,
                         n, row->reason, hp_target_message(row->reason));
            hp_str_t body = hp_target_body(n);
            assert_true(body.len == strlen(hp_target_message(n)) + 1 &&
                        body.ptr[body.len - 1] == '\n');
            assert_memory_equal(body.ptr, hp_target_message(n), body.len - 1);
            continue;
        }
        if (n < 0) fail_msg("\"%s\": refused: %s", row->path, hp_target_message(n));
        if ((size_t)n != strlen(row->norm) || memcmp(norm, row->norm, (size_t)n) != 0)
            fail_msg("\"%s\": normalized to \"%.*s\", expected \"%s\"", row->path, n, norm,
                     row->norm);
        int m = hp_target_remove_dots((hp_str_t){norm, (size_t)n}, abs);
        if (row->abs == NULL) {
            if (m != -row->dots_reason)
                fail_msg("\"%s\": dots gave %d, expected refusal %d", row->path, m,
                         row->dots_reason);
            continue;
        }
        if (m < 0) fail_msg("\"%s\": dots refused: %s", row->path, hp_target_message(m));
        if ((size_t)m != strlen(row->abs) || memcmp(abs, row->abs, (size_t)m) != 0)
            fail_msg("\"%s\": path \"%.*s\", expected \"%s\"", row->path, m, abs, row->abs);
        assert_true(m <= n + 1); /* the bound the handlers size for */
    }
    /* A NULL slice of length 0 (what a request without the part has). */
    char out[4];
    assert_int_equal(hp_target_normalize((hp_str_t){NULL, 0}, (hp_str_t){NULL, 0}, out), 0);
    assert_string_equal(hp_target_message(0), "");
}

/* --- the handlers on an in-memory worker ----------------------------------- */

static const char config_json[] =
    "{\"upstream\":{\"port\":1,\"connect_timeout_ms\":500,\"response_timeout_ms\":500}}";

typedef hp_memserver_t fixture_t;

static const char config_task_json[] =
    "{\"mode\":\"task\",\"upstream\":{\"port\":1,\"connect_timeout_ms\":500,"
    "\"response_timeout_ms\":500}}";

static int open_with(void **state, const char *json)
{
    fixture_t *f = calloc(1, sizeof(*f));
    hp_memserver_open(f, json);
    refuse_next = spoil_next = 0;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return open_with(state, config_json);
}

static int setup_task(void **state)
{
    return open_with(state, config_task_json);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    hp_memserver_close(f);
    free(f);
    return 0;
}

static hp_origin_t *origin(fixture_t *f)
{
    return hp_memserver_service(f, &hp_service_origin);
}

#define UP(f, name)    hp_counter_get(&hp_upstream_stats(origin(f)->upstream)->name)
#define CACHE(f, name) hp_counter_get(&hp_cache_stats(origin(f)->cache)->name)

static hp_conn_t *send_get(fixture_t *f, const char *target, hp_capture_t *cap)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);
    hp_conn_t *c = hp_memconn_new(f, cap);
    hp_conn_feed(c, req, (size_t)n);
    return c;
}

/* Run the loop until the upstream has nothing in flight and no fill is
 * pending (bounded: the connect to port 1 is refused at once). */
static void settle(fixture_t *f)
{
    for (int i = 0; i < 1000; i++) {
        if (UP(f, pool_busy) == 0 && UP(f, pool_queued) == 0 && CACHE(f, pending_fills) == 0)
            return;
        uv_run(&f->w.loop, UV_RUN_ONCE);
    }
    fail_msg("the upstream did not settle");
}

/* An /upstream request whose client goes away is cancelled: nothing is
 * answered, nothing counts as an upstream failure. */
static void abort_cancels_an_upstream_request(void **state)
{
    fixture_t *f = *state;
    hp_capture_t cap;
    hp_conn_t *c = send_get(f, "/upstream/x", &cap);
    assert_null(cap.data); /* pending */
    assert_int_equal(UP(f, pool_busy), 1);
    hp_conn_close(c);
    assert_int_equal(UP(f, cancelled), 1);
    settle(f);
    assert_null(cap.data);
    assert_int_equal(UP(f, requests), 1);
    assert_int_equal(UP(f, errors_connect), 0);
    free(cap.data);
}

/* A cache waiter that goes away leaves the fill to the others; when the
 * last one goes before the fill is sent, the fill is cancelled. */
static void abort_detaches_a_cache_waiter(void **state)
{
    fixture_t *f = *state;
    hp_capture_t a, b;
    hp_conn_t *ca = send_get(f, "/cache/k", &a);
    hp_conn_t *cb = send_get(f, "/cache/k", &b);
    assert_int_equal(CACHE(f, misses), 1);
    assert_int_equal(CACHE(f, coalesced), 1);
    hp_conn_close(ca);
    assert_int_equal(CACHE(f, waiters_left), 1);
    assert_int_equal(UP(f, cancelled), 0); /* b still waits */
    settle(f);                             /* the connect is refused */
    assert_int_equal(hp_capture_status(b.data), 502);
    assert_int_equal(UP(f, errors_connect), 1);
    hp_conn_close(cb);
    free(a.data);
    free(b.data);

    /* The only waiter of a fill still connecting: cancelled. */
    hp_conn_t *cc = send_get(f, "/cache/q", &a);
    hp_conn_close(cc);
    assert_int_equal(CACHE(f, waiters_left), 2);
    assert_int_equal(UP(f, cancelled), 1);
    settle(f);
    assert_null(a.data);
    assert_int_equal(CACHE(f, fill_failures), 2);
    assert_int_equal(CACHE(f, entries), 0);
    free(a.data);
}

static void assert_refused_500(fixture_t *f, const hp_capture_t *cap, uint64_t misuse_before)
{
    assert_int_equal(hp_capture_status(cap->data), 500);
    assert_int_equal(f->w.host.runtime.misuse_consumed, misuse_before + 1);
    assert_int_equal(refuse_next, 0); /* the handler's await was the one refused */
}

/* handlers/upstream.c: a refused await answers 500 and cancels the
 * request it made, and the connection goes on serving. */
static void refused_await_in_upstream_answers_500(void **state)
{
    fixture_t *f = *state;
    uint64_t misuse = f->w.host.runtime.misuse_consumed;
    hp_capture_t cap;
    refuse_next = 1;
    hp_conn_t *c = send_get(f, "/upstream/x", &cap);
    assert_refused_500(f, &cap, misuse);
    assert_int_equal(UP(f, cancelled), 1);
    static const char next[] = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    hp_conn_feed(c, next, sizeof(next) - 1);
    if (hp_count(cap.data, "HTTP/1.1 ") != 2) fail_msg("%s", cap.data);
    assert_non_null(strstr(cap.data, "Hello, World!"));
    hp_conn_close(c);
    settle(f);
    free(cap.data);
}

/* handlers/cache.c: the same for a miss; its fill, left without a waiter
 * before it was sent, is cancelled too. */
static void refused_await_in_cache_answers_500(void **state)
{
    fixture_t *f = *state;
    uint64_t misuse = f->w.host.runtime.misuse_consumed;
    hp_capture_t cap;
    refuse_next = 1;
    hp_conn_t *c = send_get(f, "/cache/k", &cap);
    assert_refused_500(f, &cap, misuse);
    assert_int_equal(CACHE(f, waiters_left), 1);
    assert_int_equal(UP(f, cancelled), 1);
    settle(f);
    assert_int_equal(CACHE(f, pending_fills), 0);
    assert_int_equal(CACHE(f, entries), 0);
    hp_conn_close(c);
    free(cap.data);
}

/* handlers/cache.c's synchronous path, given a get it cannot read
 * (hp_vtask_is_completed is true for those): a miss answers 500 - the
 * misuse counted, not a 502 - and leaves its fill, which, with nobody else
 * waiting and not sent yet, is cancelled. */
static void unreadable_miss_answers_500(void **state)
{
    fixture_t *f = *state;
    uint64_t misuse = f->w.host.runtime.misuse_consumed;
    hp_capture_t cap;
    spoil_next = 1;
    hp_conn_t *c = send_get(f, "/cache/k", &cap);
    assert_int_equal(spoil_next, 0);
    assert_int_equal(CACHE(f, misses), 1);
    assert_int_equal(hp_capture_status(cap.data), 500);
    assert_int_equal(f->w.host.runtime.misuse_consumed, misuse + 1);
    assert_int_equal(CACHE(f, waiters_left), 1);
    assert_int_equal(UP(f, cancelled), 1);
    settle(f);
    assert_int_equal(CACHE(f, entries), 0);
    hp_conn_close(c);
    free(cap.data);
}

/* The same for a hit in task mode (a completed task, released by the other
 * copy): 500, and the cached value is untouched and still served. */
static void unreadable_hit_answers_500(void **state)
{
    fixture_t *f = *state;
    hp_buf_t *v = hp_buf_new(200, "text/plain", 10, 6);
    memcpy(v->body, "cached", 6);
    assert_int_equal(hp_cache_put(origin(f)->cache, "h", 1, v, uv_now(&f->w.loop)), 0);
    uint64_t misuse = f->w.host.runtime.misuse_consumed;
    hp_capture_t cap;
    spoil_next = 1;
    hp_conn_t *c = send_get(f, "/cache/h", &cap);
    assert_int_equal(CACHE(f, hits), 1);
    assert_int_equal(hp_capture_status(cap.data), 500);
    assert_int_equal(f->w.host.runtime.misuse_consumed, misuse + 1);
    assert_int_equal(v->refs, 2); /* the test's and the cache's */
    assert_int_equal(CACHE(f, waiters_left), 0);
    static const char again[] = "GET /cache/h HTTP/1.1\r\nHost: x\r\n\r\n";
    hp_conn_feed(c, again, sizeof(again) - 1);
    if (hp_count(cap.data, "HTTP/1.1 ") != 2) fail_msg("%s", cap.data);
    assert_non_null(strstr(cap.data, "\r\n\r\ncached"));
    hp_conn_close(c);
    free(cap.data);
    hp_buf_unref(v);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(target_table),
        cmocka_unit_test_setup_teardown(abort_cancels_an_upstream_request, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_detaches_a_cache_waiter, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_await_in_upstream_answers_500, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_await_in_cache_answers_500, setup, teardown),
        cmocka_unit_test_setup_teardown(unreadable_miss_answers_500, setup, teardown),
        cmocka_unit_test_setup_teardown(unreadable_hit_answers_500, setup_task, teardown),
    };
    return cmocka_run_group_tests_name("handlers", tests, NULL, NULL);
}
