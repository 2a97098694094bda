/*
 * test_l2.c - hp_l2 (cache/l2.c) against a real redis-server and a fake one,
 * over real sockets on 127.0.0.1.
 *
 * The real Redis: each test that needs one starts its own redis-server on a
 * free loopback port (bound and released to find it, retried on a
 * collision), with no persistence, its log and working directory in a fresh
 * /tmp directory, and kills it in teardown (PR_SET_PDEATHSIG if the test
 * dies first). "Ready" is the line Redis logs once it listens. A blocking
 * hiredis connection (raw()) looks behind the client's back: what a key
 * really holds, its PTTL, CLIENT PAUSE to make Redis slow.
 *
 * The fake Redis: a listener on the test's own loop that answers SELECT and
 * then misbehaves as told (silence, garbage, a reply cut short, a bulk
 * string of 100 MB announced, an HTTP answer, NOAUTH), for the failure paths
 * a real Redis will not walk.
 *
 * Every test ends the same way: the statistics add up (every GET and SET has
 * exactly one outcome), the client is closed and its done callback runs,
 * every handle is closed, and uv_loop_close succeeds: each test is a leak
 * check, and under ASan a memory check too.
 *
 * Without redis-server on PATH (HOTPATH_REDIS_BIN overrides) the tests that
 * need it are skipped, after one line that says so; `make deps` installs it.
 */
#include "cache/l2.h"

#include "runtime/alloc.h"
#include "runtime/buf.h"
#include "runtime/counter.h"
#include "runtime/errors.h"
#include "runtime/list.h"
#include "runtime/task.h"
#include "tests/support/counters.h"
#include "tests/support/redis.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS      5000 /* the longest any single wait on the loop may take */
#define TEST_ALARM_S 60   /* backstop per test */
#define MAX_WAITS    256

/* --- the fake Redis ---------------------------------------------------------- */

typedef enum {
    FAKE_SILENT,      /* never answers, not even SELECT */
    FAKE_HTTP,        /* answers SELECT as an HTTP server would */
    FAKE_NOAUTH,      /* refuses SELECT as a password-protected Redis does */
    FAKE_OK_SILENT,   /* +OK to SELECT, then silence */
    FAKE_OK_GARBAGE,  /* +OK, then a reply that is no RESP */
    FAKE_OK_TRUNCATE, /* +OK, then half a bulk string and a close */
    FAKE_OK_HUGE,     /* +OK, then a 100 MB bulk string announced and begun */
} fake_mode_t;

typedef struct fake {
    uv_tcp_t server;
    fake_mode_t mode;
    int port;
    int accepts;
    int handles; /* open handles, server included */
    hp_link_t conns;
} fake_t;

typedef struct {
    uv_tcp_t tcp;
    fake_t *fk;
    hp_link_t link;
    int reads;
} fake_conn_t;

static char fake_rbuf[65536];
static char huge_chunk[65536];

static void fake_closed_cb(uv_handle_t *h)
{
    fake_t *fk = h->data;
    if (h != (uv_handle_t *)&fk->server) {
        fake_conn_t *fc = hp_container_of((uv_tcp_t *)h, fake_conn_t, tcp);
        hp_link_remove(&fc->link);
        hp_free(fc);
    }
    fk->handles--;
}

static void fake_conn_close(fake_conn_t *fc)
{
    if (!uv_is_closing((uv_handle_t *)&fc->tcp)) uv_close((uv_handle_t *)&fc->tcp, fake_closed_cb);
}

/* Small loopback writes complete at once; what does not fit is dropped,
 * which only the huge mode could see and does not mind. */
static void fake_send(fake_conn_t *fc, const char *s, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)s, (unsigned)n);
    uv_try_write((uv_stream_t *)&fc->tcp, &b, 1);
}

#define SEND(fc, lit) fake_send(fc, lit, sizeof(lit) - 1)

static void fake_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(fake_rbuf, sizeof(fake_rbuf));
}

static void fake_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fake_conn_t *fc = hp_container_of((uv_tcp_t *)s, fake_conn_t, tcp);
    if (nread == 0) return;
    if (nread < 0) {
        fake_conn_close(fc);
        return;
    }
    fake_mode_t m = fc->fk->mode;
    if (++fc->reads == 1) { /* the client's SELECT */
        if (m == FAKE_HTTP) SEND(fc, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        if (m == FAKE_NOAUTH) SEND(fc, "-NOAUTH Authentication required.\r\n");
        if (m >= FAKE_OK_SILENT) SEND(fc, "+OK\r\n");
        return;
    }
    switch (m) {
    case FAKE_OK_GARBAGE: SEND(fc, "?garbage\r\n"); break;
    case FAKE_OK_TRUNCATE:
        SEND(fc, "$40\r\nHP/1 200 text/plain\nabc");
        fake_conn_close(fc);
        break;
    case FAKE_OK_HUGE:
        SEND(fc, "$100000000\r\n");
        fake_send(fc, huge_chunk, sizeof(huge_chunk));
        break;
    default: break;
    }
}

static void fake_accept_cb(uv_stream_t *server, int status)
{
    fake_t *fk = server->data;
    if (status < 0) return;
    fake_conn_t *fc = hp_calloc(1, sizeof(*fc));
    fc->fk = fk;
    assert_int_equal(uv_tcp_init(server->loop, &fc->tcp), 0);
    fc->tcp.data = fk;
    fk->handles++;
    hp_link_push_back(&fk->conns, &fc->link);
    if (uv_accept(server, (uv_stream_t *)&fc->tcp) == 0) {
        fk->accepts++;
        uv_read_start((uv_stream_t *)&fc->tcp, fake_alloc_cb, fake_read_cb);
    } else {
        fake_conn_close(fc);
    }
}

static void fake_start(fake_t *fk, uv_loop_t *loop, fake_mode_t mode)
{
    memset(huge_chunk, 'x', sizeof(huge_chunk));
    fk->mode = mode;
    hp_link_init(&fk->conns);
    assert_int_equal(uv_tcp_init(loop, &fk->server), 0);
    fk->server.data = fk;
    fk->handles = 1;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&fk->server, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&fk->server, 16, fake_accept_cb), 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&fk->server, (struct sockaddr *)&a, &len);
    fk->port = ntohs(a.sin_port);
}

static void fake_stop(fake_t *fk)
{
    if (fk->handles == 0) return;
    while (!hp_link_empty(&fk->conns)) {
        fake_conn_t *fc = hp_container_of(fk->conns.next, fake_conn_t, link);
        hp_link_remove(&fc->link); /* unlinked now; freed by its close callback */
        hp_link_init(&fc->link);
        fake_conn_close(fc);
    }
    if (!uv_is_closing((uv_handle_t *)&fk->server))
        uv_close((uv_handle_t *)&fk->server, fake_closed_cb);
}

/* --- the fixture ------------------------------------------------------------ */

typedef struct {
    bool done;
    uint64_t t1; /* uv_hrtime() when the continuation ran */
} wait_t;

typedef struct {
    uv_loop_t loop;
    uv_timer_t guard;
    bool expired;
    hp_test_redis_t redis;
    fake_t fake;
    redisContext *rc; /* the blocking look-behind connection to the real Redis */
    hp_l2_t *l2;
    hp_l2_opts_t opts;
    char url[128];
    bool closed;
    /* Continuation targets live here, not on a test's stack: a failed
     * assertion longjmps away while the task may still complete later. */
    wait_t waits[MAX_WAITS];
    int nwaits;
    hp_task_t *reenter_task; /* test_reentrant_continuations */
    int reenter_rc;
} fx_t;

static bool have_redis;

static void guard_cb(uv_timer_t *t)
{
    fx_t *f = t->data;
    f->expired = true;
}

#define RUN_UNTIL(f, cond, ms)                                                                     \
    do {                                                                                           \
        (f)->expired = false;                                                                      \
        uv_update_time(&(f)->loop);                                                                \
        uv_timer_start(&(f)->guard, guard_cb, (ms), 0);                                            \
        while (!(cond) && !(f)->expired)                                                           \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                                       \
        uv_timer_stop(&(f)->guard);                                                                \
        if (!(cond)) fail_msg("not within %u ms: %s", (unsigned)(ms), #cond);                      \
    } while (0)

static void run_for(fx_t *f, unsigned ms)
{
    f->expired = false;
    uv_update_time(&f->loop);
    uv_timer_start(&f->guard, guard_cb, ms, 0);
    while (!f->expired)
        uv_run(&f->loop, UV_RUN_ONCE);
}

#define STAT(f, name) hp_counter_get(&hp_l2_stats((f)->l2)->name)

static double ms_since(uint64_t t0)
{
    return (double)(uv_hrtime() - t0) / 1e6;
}

static void wait_cb(void *arg)
{
    wait_t *w = arg;
    w->done = true;
    w->t1 = uv_hrtime();
}

static wait_t *watch(fx_t *f, hp_task_t *t)
{
    assert_true(f->nwaits < MAX_WAITS);
    wait_t *w = &f->waits[f->nwaits++];
    *w = (wait_t){0}; /* slots are reused once their tasks are done */
    hp_task_await(t, wait_cb, w);
    return w;
}

/* A GET that must be admitted; returns its task (owned) unfinished. */
static hp_task_t *get_start(fx_t *f, const char *key, wait_t **w)
{
    uv_update_time(&f->loop); /* the test may have blocked outside the loop */
    hp_task_t *t = NULL;
    int rc = hp_l2_get(f->l2, key, strlen(key), &t);
    if (rc != 0) fail_msg("hp_l2_get(%s) refused: %s", key, hp_err_name(rc));
    *w = watch(f, t);
    return t;
}

static hp_task_t *get_done(fx_t *f, const char *key)
{
    wait_t *w;
    hp_task_t *t = get_start(f, key, &w);
    RUN_UNTIL(f, w->done, WAIT_MS);
    return t;
}

static const hp_buf_t *hit_value(hp_task_t *t)
{
    hp_value_t v;
    int rc = hp_task_result(t, &v);
    if (rc != 0) fail_msg("task faulted: %s (%s)", hp_err_name(rc), hp_task_error_message(t));
    if (v.ptr == NULL) fail_msg("a miss where a hit was expected");
    return v.ptr;
}

static void expect_miss(hp_task_t *t)
{
    hp_value_t v;
    int rc = hp_task_result(t, &v);
    if (rc != 0) fail_msg("task faulted: %s (%s)", hp_err_name(rc), hp_task_error_message(t));
    assert_null(v.ptr);
}

static void expect_fault(hp_task_t *t, int err)
{
    hp_value_t v;
    int rc = hp_task_result(t, &v);
    if (rc != err)
        fail_msg("expected %s, got %s (%s)", hp_err_name(err), hp_err_name(rc),
                 rc ? hp_task_error_message(t) : "a result");
    assert_non_null(hp_task_error_message(t));
}

static hp_buf_t *mkbuf(uint16_t status, const char *ctype, const void *body, size_t len)
{
    hp_buf_t *b = hp_buf_new(status, ctype, strlen(ctype), len);
    if (len) memcpy(b->body, body, len);
    return b;
}

static void set_ok(fx_t *f, const char *key, const hp_buf_t *v, uint64_t ttl_ms)
{
    int rc = hp_l2_set(f->l2, key, strlen(key), v, ttl_ms);
    if (rc != 0) fail_msg("hp_l2_set(%s) refused: %s", key, hp_err_name(rc));
}

/* Wait until every command sent has its answer. */
static void settle(fx_t *f)
{
    RUN_UNTIL(f, STAT(f, inflight) == 0, WAIT_MS);
}

static void l2_open(fx_t *f)
{
    char err[256] = "";
    f->opts.url = f->url;
    int rc = hp_l2_init(&f->loop, &f->opts, &f->l2, err, sizeof(err));
    if (rc != 0) fail_msg("hp_l2_init: %s", err);
}

static void l2_ready(fx_t *f)
{
    l2_open(f);
    RUN_UNTIL(f, STAT(f, connected) == 1, WAIT_MS);
}

static void closed_cb(void *arg)
{
    fx_t *f = arg;
    f->closed = true;
}

/* Every GET and SET has exactly one outcome (l2.h). */
static void check_outcomes(fx_t *f)
{
    uint64_t in = STAT(f, gets) + STAT(f, sets);
    uint64_t out = STAT(f, hits) + STAT(f, misses) + STAT(f, stored) + STAT(f, errors) +
                   STAT(f, timeouts) + STAT(f, bypasses) + STAT(f, rejected) + STAT(f, shutdowns) +
                   STAT(f, inflight);
    assert_int_equal(in, out);
}

static void l2_close(fx_t *f)
{
    if (f->l2 == NULL) return;
    check_outcomes(f);
    f->closed = false;
    hp_l2_close(f->l2, closed_cb, f);
    assert_false(f->closed); /* done runs from a close callback, never inside */
    f->l2 = NULL;
    RUN_UNTIL(f, f->closed, WAIT_MS);
}

/* A blocking command on a connection of its own to the real Redis. */
static redisReply *raw(fx_t *f, const char *fmt, ...)
{
    if (f->rc == NULL) {
        struct timeval tv = {5, 0};
        f->rc = redisConnectWithTimeout("127.0.0.1", f->redis.port, tv);
        if (f->rc == NULL || f->rc->err)
            fail_msg("look-behind connection: %s", f->rc ? f->rc->errstr : "out of memory");
        redisSetTimeout(f->rc, tv);
    }
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(f->rc, fmt, ap);
    va_end(ap);
    if (r == NULL) fail_msg("look-behind command failed: %s", f->rc->errstr);
    return r;
}

static void raw_ok(fx_t *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = NULL;
    if (f->rc == NULL) freeReplyObject(raw(f, "PING"));
    r = redisvCommand(f->rc, fmt, ap);
    va_end(ap);
    if (r == NULL) fail_msg("look-behind command failed: %s", f->rc->errstr);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("look-behind command refused: %s", r->str);
    freeReplyObject(r);
}

static void raw_drop(fx_t *f)
{
    if (f->rc) redisFree(f->rc);
    f->rc = NULL;
}

static int setup_common(void **state)
{
    alarm(TEST_ALARM_S);
    hp_test_counters_setup(state);
    fx_t *f = hp_calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->guard), 0);
    f->guard.data = f;
    /* Short enough that the failure paths take a fraction of a second. */
    f->opts = (hp_l2_opts_t){
        .connect_timeout_ms = 500,
        .command_timeout_ms = 300,
        .backoff_min_ms = 50,
        .backoff_max_ms = 400,
    };
    *state = f;
    return 0;
}

/* Tests that need a real Redis start one; without it they skip. */
static int setup_redis(void **state)
{
    setup_common(state);
    fx_t *f = *state;
    if (!have_redis) return 0;
    hp_test_redis_start(&f->redis);
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d/0", f->redis.port);
    return 0;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!have_redis) skip();                                                                   \
    } while (0)

static int teardown(void **state)
{
    fx_t *f = *state;
    l2_close(f);
    fake_stop(&f->fake);
    RUN_UNTIL(f, f->fake.handles == 0, WAIT_MS);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0); /* nothing left open */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    raw_drop(f);
    hp_test_redis_cleanup(&f->redis);
    hp_free(f);
    hp_test_counters_teardown(state);
    alarm(0);
    return 0;
}

/* --- options --------------------------------------------------------------- */

/* Every malformed URL and out-of-range option is refused with a message
 * naming its key; nothing is created and nothing allocated. */
static void test_bad_options(void **state)
{
    static const struct {
        const char *url;
        const char *why; /* NULL: accepted */
    } urls[] = {
        {"redis://127.0.0.1:6379/0", NULL},
        {"redis://127.0.0.1", NULL},
        {"REDIS://localhost:1/15", NULL},
        {"redis://[::1]:6380/2", NULL},
        {"redis://127.0.0.1:6379/", NULL},
        {"", "missing"},
        {"http://127.0.0.1:6379", "expected redis://HOST[:PORT][/DB]"},
        {"127.0.0.1:6379", "expected redis://HOST[:PORT][/DB]"},
        {"rediss://127.0.0.1", "TLS (rediss://) is not supported"},
        {"redis://user:pw@127.0.0.1", "credentials"},
        {"redis://redis.example.com:6379", "no DNS lookups"},
        {"redis://:6379", "missing host"},
        {"redis://127.0.0.1:0", "port must be 1..65535"},
        {"redis://127.0.0.1:65536", "port must be 1..65535"},
        {"redis://127.0.0.1:abc", "port must be 1..65535"},
        {"redis://127.0.0.1:/0", "port must be 1..65535"},
        {"redis://127.0.0.1:6379/x", "database must be a number"},
        {"redis://127.0.0.1:6379/-1", "database must be a number"},
        {"redis://127.0.0.1:6379/2147483648", "database must be a number"},
        {"redis://127.0.0.1:6379/0?timeout=1", "database must be a number"},
        {"redis://[::1", "unterminated [IPv6] address"},
        {"redis://[zz]:1", "not an IPv6 address"},
        {"redis://[::1]x", "expected redis://HOST[:PORT][/DB]"},
    };
    fx_t *f = *state;
    char err[256];
    hp_l2_opts_t o = f->opts;
    uint64_t a0 = hp_test_allocs();
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        o.url = urls[i].url;
        err[0] = '\0';
        int rc = hp_l2_opts_check(&o, err, sizeof(err));
        if (urls[i].why == NULL) {
            if (rc != 0) fail_msg("\"%s\" refused: %s", urls[i].url, err);
            continue;
        }
        assert_int_equal(rc, HP_ECONFIG);
        if (strncmp(err, "cache.l2.url: ", 14) != 0 || strstr(err, urls[i].why) == NULL)
            fail_msg("\"%s\": message \"%s\" lacks \"%s\"", urls[i].url, err, urls[i].why);
    }
    o.url = NULL;
    assert_int_equal(hp_l2_opts_check(&o, err, sizeof(err)), HP_ECONFIG);
    assert_string_equal(err, "cache.l2.url: missing (expected redis://HOST[:PORT][/DB])");
    char long_url[400];
    memset(long_url, 'a', sizeof(long_url) - 1);
    long_url[sizeof(long_url) - 1] = '\0';
    o.url = long_url;
    assert_int_equal(hp_l2_opts_check(&o, err, sizeof(err)), HP_ECONFIG);
    assert_string_equal(err, "cache.l2.url: longer than 255 bytes");

    static const struct {
        size_t offset;
        uint64_t value;
        const char *msg;
    } ranges[] = {
        {offsetof(hp_l2_opts_t, connect_timeout_ms), 600001,
         "cache.l2.connect_timeout_ms: expected an integer from 1 to 600000, got 600001"},
        {offsetof(hp_l2_opts_t, command_timeout_ms), 700000,
         "cache.l2.command_timeout_ms: expected an integer from 1 to 600000, got 700000"},
        {offsetof(hp_l2_opts_t, max_inflight), 65537,
         "cache.l2.max_inflight: expected an integer from 1 to 65536, got 65537"},
        {offsetof(hp_l2_opts_t, backoff_min_ms), 60001,
         "cache.l2.backoff_min_ms: expected an integer from 1 to 60000, got 60001"},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        o = f->opts;
        o.url = "redis://127.0.0.1";
        *(unsigned *)((char *)&o + ranges[i].offset) = (unsigned)ranges[i].value;
        assert_int_equal(hp_l2_opts_check(&o, err, sizeof(err)), HP_ECONFIG);
        assert_string_equal(err, ranges[i].msg);
    }
    o = f->opts;
    o.url = "redis://127.0.0.1";
    o.max_value_bytes = 10;
    assert_int_equal(hp_l2_opts_check(&o, err, sizeof(err)), HP_ECONFIG);
    assert_non_null(strstr(err, "cache.l2.max_value_bytes: expected an integer from 265 to"));
    o.max_value_bytes = 0;
    o.backoff_min_ms = 500;
    o.backoff_max_ms = 100;
    assert_int_equal(hp_l2_opts_check(&o, err, sizeof(err)), HP_ECONFIG);
    assert_string_equal(err, "cache.l2.backoff_max_ms: expected 500..600000 ms (at least "
                             "backoff_min_ms), got 100");

    o.url = "redis://nowhere";
    hp_l2_t *l2 = (hp_l2_t *)&o; /* must stay untouched */
    assert_int_equal(hp_l2_init(&f->loop, &o, &l2, err, sizeof(err)), HP_ECONFIG);
    assert_ptr_equal(l2, (hp_l2_t *)&o);
    assert_int_equal(hp_test_allocs() - a0, 0);
    print_message("e.g. %s\n", err);
}

/* --- against a real Redis -------------------------------------------------- */

/* A miss, a SET, a hit with status, content type and a binary body intact;
 * the record as Redis holds it; its PTTL; no expiry with ttl 0. */
static void test_get_miss_hit(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    l2_ready(f);
    hp_task_t *t = get_done(f, "k:missing");
    expect_miss(t);
    hp_task_unref(t);

    static const char body[] = "{\"v\":1}\r\n$5\r\nfake\r\n\0tail";
    hp_buf_t *v = mkbuf(200, "application/json", body, sizeof(body));
    set_ok(f, "k:1", v, 60000);
    t = get_done(f, "k:1");
    const hp_buf_t *b = hit_value(t);
    assert_int_equal(b->status, 200);
    assert_string_equal(b->ctype, "application/json");
    assert_int_equal(b->len, sizeof(body));
    assert_memory_equal(b->body, body, sizeof(body));
    hp_buf_t *kept = hp_buf_ref((hp_buf_t *)b);
    hp_task_unref(t); /* the value outlives its task with a reference */
    assert_memory_equal(kept->body, body, sizeof(body));
    hp_buf_unref(kept);

    redisReply *r = raw(f, "GET k:1");
    const char head[] = "HP/1 200 application/json\n";
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, sizeof(head) - 1 + sizeof(body));
    assert_memory_equal(r->str, head, sizeof(head) - 1);
    assert_memory_equal(r->str + sizeof(head) - 1, body, sizeof(body));
    freeReplyObject(r);
    r = raw(f, "PTTL k:1");
    assert_true(r->integer > 55000 && r->integer <= 60000);
    freeReplyObject(r);

    hp_buf_t *empty = mkbuf(404, "", NULL, 0);
    set_ok(f, "k:empty", empty, 0);
    t = get_done(f, "k:empty");
    b = hit_value(t);
    assert_int_equal(b->status, 404);
    assert_int_equal(b->ctype_len, 0);
    assert_int_equal(b->len, 0);
    hp_task_unref(t);
    r = raw(f, "PTTL k:empty");
    assert_int_equal(r->integer, -1); /* ttl 0: no expiry */
    freeReplyObject(r);

    assert_int_equal(STAT(f, gets), 3);
    assert_int_equal(STAT(f, hits), 2);
    assert_int_equal(STAT(f, misses), 1);
    assert_int_equal(STAT(f, sets), 2);
    assert_int_equal(STAT(f, stored), 2);
    assert_int_equal(STAT(f, errors), 0);
    assert_int_equal(STAT(f, latency_count), 5);
    assert_true(STAT(f, latency_sum) > 0);
    assert_int_equal(STAT(f, connects), 1);
    assert_int_equal(STAT(f, inflight), 0);
    assert_string_equal(hp_l2_last_error(f->l2), "");

    /* Refused at once, nothing sent: not encodable, too big. */
    hp_buf_t *odd = mkbuf(1000, "text/plain", "x", 1);
    assert_int_equal(hp_l2_set(f->l2, "k:odd", 5, odd, 1000), UV_EINVAL);
    hp_buf_t *nl = mkbuf(200, "text/plain\nX-Evil: 1", "x", 1);
    assert_int_equal(hp_l2_set(f->l2, "k:nl", 4, nl, 1000), UV_EINVAL);
    assert_int_equal(STAT(f, rejected), 2);
    assert_int_equal(STAT(f, inflight), 0);
    hp_buf_unref(odd);
    hp_buf_unref(nl);
    hp_buf_unref(empty);
    hp_buf_unref(v);
}

/* SET ... PX: the key is gone once its TTL has passed. */
static void test_set_ttl_expiry(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    l2_ready(f);
    hp_buf_t *v = mkbuf(200, "text/plain", "short-lived", 11);
    set_ok(f, "k:ttl", v, 150);
    hp_task_t *t = get_done(f, "k:ttl");
    assert_int_equal(hit_value(t)->len, 11);
    hp_task_unref(t);
    run_for(f, 300);
    t = get_done(f, "k:ttl");
    expect_miss(t);
    hp_task_unref(t);
    assert_int_equal(STAT(f, hits), 1);
    assert_int_equal(STAT(f, misses), 1);
    hp_buf_unref(v);
}

/* The URL's database is SELECTed on connect: keys land there and only
 * there. A database Redis does not have keeps the client disconnected,
 * with Redis's reason, and every call a bypass. */
static void test_select_db(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    snprintf(f->url, sizeof(f->url), "redis://localhost:%d/5", f->redis.port);
    l2_ready(f);
    hp_buf_t *v = mkbuf(200, "text/plain", "in five", 7);
    set_ok(f, "k:db", v, 60000);
    settle(f);
    assert_int_equal(STAT(f, stored), 1);
    raw_ok(f, "SELECT 5");
    redisReply *r = raw(f, "EXISTS k:db");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    raw_ok(f, "SELECT 0");
    r = raw(f, "EXISTS k:db");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);

    char err[256];
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/99", f->redis.port);
    hp_l2_opts_t o = f->opts;
    o.url = url;
    assert_int_equal(hp_l2_reconfigure(f->l2, &o, err, sizeof(err)), 0);
    RUN_UNTIL(f, STAT(f, connect_failures) >= 1, WAIT_MS);
    print_message("SELECT 99: %s\n", hp_l2_last_error(f->l2));
    assert_non_null(
        strstr(hp_l2_last_error(f->l2), "SELECT 99 refused: ERR DB index is out of range"));
    assert_int_equal(STAT(f, connected), 0);
    hp_task_t *t = (hp_task_t *)v;
    assert_int_equal(hp_l2_get(f->l2, "k:db", 4, &t), UV_ENOTCONN);
    assert_null(t);
    assert_int_equal(hp_l2_set(f->l2, "k:db", 4, v, 1000), UV_ENOTCONN);
    assert_int_equal(STAT(f, bypasses), 2);
    assert_int_equal(STAT(f, disconnects), 0);
    hp_buf_unref(v);
}

/* An error reply (WRONGTYPE) and a value that is no record fault the GET
 * alone: the connection stays, in sync, and serves the next one. */
static void test_error_reply_and_foreign_value(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    l2_ready(f);
    raw_ok(f, "RPUSH k:list a");
    raw_ok(f, "SET k:plain hello");
    hp_task_t *t = get_done(f, "k:list");
    expect_fault(t, UV_EREMOTEIO);
    hp_task_unref(t);
    assert_non_null(strstr(hp_l2_last_error(f->l2), "GET: WRONGTYPE"));
    t = get_done(f, "k:plain");
    expect_fault(t, UV_EILSEQ);
    hp_task_unref(t);
    t = get_done(f, "k:none");
    expect_miss(t);
    hp_task_unref(t);
    assert_int_equal(STAT(f, errors), 2);
    assert_int_equal(STAT(f, connects), 1);
    assert_int_equal(STAT(f, disconnects), 0);
    assert_int_equal(STAT(f, latency_count), 3);
}

/* A value larger than a read and than the kept output buffer crosses both
 * ways intact under a key that RESP's inline form could not carry; hiredis's
 * read buffer grows for it and is given back at the next read, and the next
 * small value still works. */
static void test_large_value(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    l2_ready(f);
    enum { LEN = 300000 };
    hp_buf_t *v = hp_buf_new(200, "application/octet-stream", 24, LEN);
    for (size_t i = 0; i < LEN; i++)
        v->body[i] = (char)(i * 7 + i / 251);
    static const char key[] = "k:with space\r\n$3\r\n";
    assert_int_equal(hp_l2_set(f->l2, key, sizeof(key) - 1, v, 60000), 0);
    uint64_t changes = STAT(f, reader_buf_changes);
    hp_task_t *t;
    assert_int_equal(hp_l2_get(f->l2, key, sizeof(key) - 1, &t), 0);
    wait_t *w = watch(f, t);
    RUN_UNTIL(f, w->done, WAIT_MS);
    const hp_buf_t *b = hit_value(t);
    assert_string_equal(b->ctype, "application/octet-stream");
    assert_int_equal(b->len, LEN);
    assert_memory_equal(b->body, v->body, LEN);
    hp_task_unref(t);
    assert_true(STAT(f, reader_buf_changes) > changes);
    print_message("a %d-byte value: hiredis read buffer now %llu bytes after %llu changes\n", LEN,
                  (unsigned long long)STAT(f, reader_buf_bytes),
                  (unsigned long long)STAT(f, reader_buf_changes));
    hp_buf_t *small = mkbuf(200, "text/plain", "s", 1);
    set_ok(f, "k:small", small, 60000);
    t = get_done(f, "k:small");
    assert_int_equal(hit_value(t)->len, 1);
    hp_task_unref(t);
    assert_int_equal(STAT(f, stored), 2);
    /* hiredis released the large buffer at the next read (READER_KEEP). */
    assert_true(STAT(f, reader_buf_bytes) <= 65536);
    hp_buf_unref(small);
    hp_buf_unref(v);
}

/* CLIENT PAUSE makes Redis slow: the GET times out after command_timeout,
 * the connection is dropped (a late reply would answer the wrong command)
 * and a new one is ready once Redis answers again. */
static void test_slow_redis(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    f->opts.command_timeout_ms = 150;
    f->opts.connect_timeout_ms = 2000;
    l2_ready(f);
    raw_ok(f, "CLIENT PAUSE 600 ALL");
    uint64_t t0 = uv_hrtime();
    wait_t *w;
    hp_task_t *t = get_start(f, "k:slow", &w);
    RUN_UNTIL(f, w->done, WAIT_MS);
    double ms = (double)(w->t1 - t0) / 1e6;
    expect_fault(t, UV_ETIMEDOUT);
    hp_task_unref(t);
    print_message("command timeout 150 ms -> UV_ETIMEDOUT in %.1f ms\n", ms);
    assert_true(ms >= 140); /* the loop's clock is coarse */
    assert_int_equal(STAT(f, timeouts), 1);
    assert_int_equal(STAT(f, disconnects), 1);
    assert_int_equal(STAT(f, connected), 0);
    assert_int_equal(hp_l2_get(f->l2, "k:slow", 6, &t), UV_ENOTCONN);
    RUN_UNTIL(f, STAT(f, connected) == 1, WAIT_MS);
    assert_int_equal(STAT(f, reconnects), 1);
    assert_int_equal(STAT(f, connect_failures), 0);
    t = get_done(f, "k:slow");
    expect_miss(t);
    hp_task_unref(t);
}

/* Redis killed with commands in flight: they fault at once (not at their
 * timeout); calls meanwhile are bypasses; reconnect attempts back off
 * 50, 100, 200, 400, 400 ms; Redis back on its port is found again. */
static void test_redis_killed_and_back(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    f->opts.command_timeout_ms = 5000;
    l2_ready(f);
    raw_ok(f, "CLIENT PAUSE 5000 ALL");
    wait_t *w[3];
    hp_task_t *t[3];
    for (int i = 0; i < 3; i++)
        t[i] = get_start(f, "k:gone", &w[i]);
    hp_buf_t *v = mkbuf(200, "text/plain", "v", 1);
    set_ok(f, "k:gone", v, 60000);
    run_for(f, 20); /* sent, and parked by the pause */
    raw_drop(f);
    uint64_t t0 = uv_hrtime();
    hp_test_redis_kill(&f->redis, SIGKILL);
    RUN_UNTIL(f, w[2]->done, WAIT_MS);
    double ms = ms_since(t0);
    for (int i = 0; i < 3; i++) {
        expect_fault(t[i], UV_ECONNRESET);
        hp_task_unref(t[i]);
    }
    print_message("redis killed -> 3 GETs faulted UV_ECONNRESET in %.1f ms (timeout 5000)\n", ms);
    assert_true(ms < 1000);
    assert_int_equal(STAT(f, errors), 4); /* three GETs and the SET */
    assert_int_equal(STAT(f, disconnects), 1);
    hp_task_t *none;
    assert_int_equal(hp_l2_get(f->l2, "k:gone", 6, &none), UV_ENOTCONN);
    assert_int_equal(hp_l2_set(f->l2, "k:gone", 6, v, 1000), UV_ENOTCONN);
    assert_int_equal(STAT(f, bypasses), 2);

    /* Watch the attempts against the dead port. */
    enum { N = 6 };
    uint64_t at[N];
    int n = 0;
    uint64_t seen = STAT(f, connects);
    uint64_t start = uv_hrtime();
    f->expired = false;
    uv_timer_start(&f->guard, guard_cb, 2500, 0);
    while (n < N && !f->expired) {
        uv_run(&f->loop, UV_RUN_ONCE);
        if (STAT(f, connects) != seen) {
            seen = STAT(f, connects);
            at[n++] = uv_hrtime();
        }
    }
    uv_timer_stop(&f->guard);
    assert_int_equal(n, N);
    static const double expect[N] = {50, 100, 200, 400, 400, 400};
    double prev = (double)start;
    for (int i = 0; i < N; i++) {
        double gap = ((double)at[i] - prev) / 1e6;
        prev = (double)at[i];
        print_message("reconnect attempt %d after %.1f ms (backoff %.0f)\n", i + 1, gap, expect[i]);
        if (i) assert_true(gap >= expect[i] - 10); /* coarse loop clock */
        assert_true(gap <= expect[i] + 300);
    }
    RUN_UNTIL(f, STAT(f, connect_failures) == N, WAIT_MS);
    assert_int_equal(STAT(f, reconnects), N);
    assert_non_null(strstr(hp_l2_last_error(f->l2), "connection refused"));

    assert_true(hp_test_redis_spawn(&f->redis)); /* the same port */
    t0 = uv_hrtime();
    RUN_UNTIL(f, STAT(f, connected) == 1, WAIT_MS);
    print_message("redis back -> ready again in %.1f ms (backoff max 400)\n", ms_since(t0));
    hp_task_t *x = get_done(f, "k:gone");
    expect_miss(x); /* a fresh Redis, without persistence */
    hp_task_unref(x);
    set_ok(f, "k:gone", v, 60000);
    x = get_done(f, "k:gone");
    assert_int_equal(hit_value(x)->len, 1);
    hp_task_unref(x);
    hp_buf_unref(v);
}

/* Close with commands in flight: their tasks fault before hp_l2_close
 * returns, done runs later from a close callback, calls in between are
 * refused. */
static void test_close_with_pending(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    f->opts.command_timeout_ms = 5000;
    l2_ready(f);
    raw_ok(f, "CLIENT PAUSE 3000 ALL");
    enum { N = 5 };
    wait_t *w[N];
    hp_task_t *t[N];
    for (int i = 0; i < N; i++)
        t[i] = get_start(f, "k:pending", &w[i]);
    hp_buf_t *v = mkbuf(200, "text/plain", "v", 1);
    set_ok(f, "k:pending", v, 1000);
    set_ok(f, "k:pending", v, 1000);
    run_for(f, 20);
    assert_int_equal(STAT(f, inflight), N + 2);
    hp_l2_t *l2 = f->l2;
    f->l2 = NULL;
    f->closed = false;
    hp_l2_close(l2, closed_cb, f);
    for (int i = 0; i < N; i++) {
        assert_true(w[i]->done);
        expect_fault(t[i], HP_ESHUTDOWN);
        hp_task_unref(t[i]);
    }
    assert_false(f->closed);
    const hp_l2_stats_t *s = hp_l2_stats(l2);
    assert_int_equal(hp_counter_get(&s->shutdowns), N + 2);
    hp_task_t *late;
    assert_int_equal(hp_l2_get(l2, "k:late", 6, &late), HP_ESHUTDOWN);
    assert_int_equal(hp_l2_set(l2, "k:late", 6, v, 1000), HP_ESHUTDOWN);
    assert_int_equal(hp_counter_get(&s->shutdowns), N + 4);
    assert_int_equal(hp_counter_get(&s->inflight), 0);
    hp_l2_close(l2, closed_cb, f); /* ignored */
    RUN_UNTIL(f, f->closed, WAIT_MS);
    hp_buf_unref(v);
}

static void reenter_get_cb(void *arg)
{
    fx_t *f = arg;
    f->reenter_rc = hp_l2_get(f->l2, "k:a", 3, &f->reenter_task);
    if (f->reenter_rc == 0) watch(f, f->reenter_task);
}

static void reenter_close_cb(void *arg)
{
    fx_t *f = arg;
    hp_l2_t *l2 = f->l2;
    f->l2 = NULL;
    hp_l2_close(l2, closed_cb, f);
}

/* Continuations run inside the read callback and may call back in: a GET
 * from one, and a close from another with two replies still to parse. */
static void test_reentrant_continuations(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    l2_ready(f);
    hp_buf_t *v = mkbuf(200, "text/plain", "a", 1);
    set_ok(f, "k:a", v, 60000);
    wait_t *w;
    hp_task_t *t = get_start(f, "k:a", &w);
    hp_task_await(t, reenter_get_cb, f);
    RUN_UNTIL(f, w->done, WAIT_MS);
    assert_int_equal(f->reenter_rc, 0);
    wait_t *w2 = &f->waits[f->nwaits - 1];
    RUN_UNTIL(f, w2->done, WAIT_MS);
    assert_int_equal(hit_value(f->reenter_task)->len, 1);
    hp_task_unref(f->reenter_task);
    hp_task_unref(t);

    /* Three GETs in one pipeline, answered in one read: the first one's
     * continuation closes the client; the two others fault there. */
    raw_ok(f, "CLIENT PAUSE 100 ALL");
    hp_task_t *p[3];
    wait_t *pw[3];
    for (int i = 0; i < 3; i++)
        p[i] = get_start(f, "k:a", &pw[i]);
    hp_task_await(p[0], reenter_close_cb, f);
    f->closed = false;
    RUN_UNTIL(f, pw[2]->done, WAIT_MS);
    assert_int_equal(hit_value(p[0])->len, 1);
    expect_fault(p[1], HP_ESHUTDOWN);
    expect_fault(p[2], HP_ESHUTDOWN);
    for (int i = 0; i < 3; i++)
        hp_task_unref(p[i]);
    RUN_UNTIL(f, f->closed, WAIT_MS);
    hp_buf_unref(v);
}

/* A pipeline of max_inflight GETs at once, answered in order; past the
 * bound, calls are refused at once. */
static void test_pipeline_and_bound(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    enum { MAX = 32, N = 40 };
    f->opts.max_inflight = MAX;
    l2_ready(f);
    char key[32], body[32];
    for (int i = 0; i < MAX; i++) {
        snprintf(key, sizeof(key), "k:p%d", i);
        int n = snprintf(body, sizeof(body), "value %d", i);
        hp_buf_t *v = mkbuf(200, "text/plain", body, (size_t)n);
        set_ok(f, key, v, 60000);
        hp_buf_unref(v);
    }
    settle(f);
    hp_task_t *t[N] = {0};
    wait_t *w[N] = {0};
    int refused = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k:p%d", i);
        hp_task_t *x = NULL;
        int rc = hp_l2_get(f->l2, key, strlen(key), &x);
        if (rc == UV_ENOBUFS) {
            refused++;
            assert_null(x);
            continue;
        }
        assert_int_equal(rc, 0);
        t[i] = x;
        w[i] = watch(f, x);
    }
    assert_int_equal(refused, N - MAX);
    assert_int_equal(STAT(f, inflight), MAX);
    assert_int_equal(STAT(f, rejected), N - MAX);
    RUN_UNTIL(f, w[MAX - 1]->done, WAIT_MS);
    for (int i = 0; i < MAX; i++) {
        assert_true(w[i]->done);
        if (i) assert_true(w[i]->t1 >= w[i - 1]->t1);
        int n = snprintf(body, sizeof(body), "value %d", i);
        const hp_buf_t *b = hit_value(t[i]);
        assert_int_equal(b->len, n);
        assert_memory_equal(b->body, body, (size_t)n);
        hp_task_unref(t[i]);
    }
    assert_int_equal(STAT(f, inflight), 0);
    assert_int_equal(STAT(f, hits), MAX);
}

/* Live reload: equal options keep the connection (and what is in flight);
 * bad ones change nothing; a new database reconnects at once. */
static void test_reconfigure(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    l2_ready(f);
    char err[256];
    hp_l2_opts_t o = f->opts;
    char same[128];
    snprintf(same, sizeof(same), "redis://localhost:%d", f->redis.port); /* the same target */
    o.url = same;
    wait_t *w;
    hp_task_t *t = get_start(f, "k:r", &w);
    assert_int_equal(hp_l2_reconfigure(f->l2, &o, err, sizeof(err)), 0);
    RUN_UNTIL(f, w->done, WAIT_MS);
    expect_miss(t);
    hp_task_unref(t);
    assert_int_equal(STAT(f, connects), 1);

    o.url = "redis://127.0.0.1:99999";
    assert_int_equal(hp_l2_reconfigure(f->l2, &o, err, sizeof(err)), HP_ECONFIG);
    assert_string_equal(err,
                        "cache.l2.url: port must be 1..65535 (got \"redis://127.0.0.1:99999\")");
    o.url = same;
    o.command_timeout_ms = 0;
    assert_int_equal(hp_l2_reconfigure(f->l2, &o, err, sizeof(err)), 0); /* the default: new */
    RUN_UNTIL(f, STAT(f, connected) == 1, WAIT_MS);
    assert_int_equal(STAT(f, connects), 2);

    char db2[128];
    snprintf(db2, sizeof(db2), "redis://127.0.0.1:%d/2", f->redis.port);
    o.url = db2;
    t = get_start(f, "k:r", &w);
    assert_int_equal(hp_l2_reconfigure(f->l2, &o, err, sizeof(err)), 0);
    assert_true(w->done); /* the old connection's GET, faulted there */
    expect_fault(t, UV_ECONNRESET);
    hp_task_unref(t);
    RUN_UNTIL(f, STAT(f, connected) == 1, WAIT_MS);
    assert_int_equal(STAT(f, connects), 3);
    assert_int_equal(STAT(f, reconnects), 0);
    assert_int_equal(STAT(f, disconnects), 0);
    hp_buf_t *v = mkbuf(200, "text/plain", "two", 3);
    set_ok(f, "k:r", v, 60000);
    settle(f);
    raw_ok(f, "SELECT 2");
    redisReply *r = raw(f, "EXISTS k:r");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    hp_buf_unref(v);
}

static double hit_allocs = -1, miss_allocs = -1, set_allocs = -1, hit_bytes = -1;

/* The exact allocations per operation on a connected client: a hit 2 (task
 * and value), a miss 1 (task), a SET 0; one at a time and in pipelined
 * bursts; charged to the caller's scope; hiredis's read buffer unchanged. */
static void test_alloc_counts(void **state)
{
    NEED_REDIS();
    fx_t *f = *state;
    l2_ready(f);
    char body[100];
    memset(body, 'b', sizeof(body));
    hp_buf_t *v = mkbuf(200, "application/json", body, sizeof(body));
    enum { N = 50, B = 64 };
    hp_task_t *t[B];
    wait_t *w[B];
    /* Warm-up: the FIFO and the output buffers grow to a burst of B. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < B; i++)
            set_ok(f, "k:alloc", v, 60000);
        for (int i = 0; i < B; i++)
            t[i] = get_start(f, i % 2 ? "k:alloc" : "k:nothing", &w[i]);
        RUN_UNTIL(f, w[B - 1]->done, WAIT_MS);
        for (int i = 0; i < B; i++)
            hp_task_unref(t[i]);
        f->nwaits = 0;
    }
    uint64_t changes = STAT(f, reader_buf_changes);

    const hp_alloc_stats_t *as = hp_alloc_thread_stats();
    uint64_t uv0 = as->by_source[HP_ALLOC_UV].count;
    hp_alloc_counter_t c0 = hp_alloc_stats_sum(as);
    for (int i = 0; i < N; i++) {
        hp_task_t *x = get_done(f, "k:alloc");
        assert_int_equal(hit_value(x)->len, sizeof(body));
        hp_task_unref(x);
        f->nwaits = 0;
    }
    hp_alloc_counter_t c1 = hp_alloc_stats_sum(as);
    hit_allocs = (double)(c1.count - c0.count) / N;
    hit_bytes = (double)(c1.bytes - c0.bytes) / N;
    assert_int_equal(c1.count - c0.count, 2 * N);

    for (int i = 0; i < N; i++) {
        hp_task_t *x = get_done(f, "k:nothing");
        expect_miss(x);
        hp_task_unref(x);
        f->nwaits = 0;
    }
    hp_alloc_counter_t c2 = hp_alloc_stats_sum(as);
    miss_allocs = (double)(c2.count - c1.count) / N;
    assert_int_equal(c2.count - c1.count, N);

    uint64_t stored = STAT(f, stored);
    for (int i = 0; i < N; i++) {
        set_ok(f, "k:alloc", v, 60000);
        settle(f);
    }
    assert_int_equal(STAT(f, stored), stored + N);
    hp_alloc_counter_t c3 = hp_alloc_stats_sum(as);
    set_allocs = (double)(c3.count - c2.count) / N;
    assert_int_equal(c3.count - c2.count, 0);

    /* Bursts: B SETs and B GETs (half hits) in one pipeline. */
    for (int i = 0; i < B; i++)
        set_ok(f, "k:alloc", v, 60000);
    for (int i = 0; i < B; i++)
        t[i] = get_start(f, i % 2 ? "k:alloc" : "k:nothing", &w[i]);
    RUN_UNTIL(f, w[B - 1]->done, WAIT_MS);
    for (int i = 0; i < B; i++)
        hp_task_unref(t[i]);
    f->nwaits = 0;
    hp_alloc_counter_t c4 = hp_alloc_stats_sum(as);
    assert_int_equal(c4.count - c3.count, B / 2 * 2 + B / 2);
    assert_int_equal(as->by_source[HP_ALLOC_UV].count, uv0); /* libuv allocated nothing */

    /* A request's scope is charged for its GET, value included, although
     * the value is allocated in the read callback. */
    hp_alloc_counter_t scope = {0};
    hp_alloc_counter_t *prev = hp_alloc_scope_set(&scope);
    hp_task_t *x;
    assert_int_equal(hp_l2_get(f->l2, "k:alloc", 7, &x), 0);
    hp_alloc_scope_set(prev);
    wait_t *xw = watch(f, x);
    RUN_UNTIL(f, xw->done, WAIT_MS);
    assert_int_equal(scope.count, 2);
    hp_task_unref(x);
    scope = (hp_alloc_counter_t){0};
    prev = hp_alloc_scope_set(&scope);
    assert_int_equal(hp_l2_get(f->l2, "k:nothing", 9, &x), 0);
    hp_alloc_scope_set(prev);
    xw = watch(f, x);
    RUN_UNTIL(f, xw->done, WAIT_MS);
    assert_int_equal(scope.count, 1);
    hp_task_unref(x);

    /* A bypass allocates nothing. */
    raw_ok(f, "CLIENT KILL TYPE normal SKIPME yes");
    RUN_UNTIL(f, STAT(f, connected) == 0, WAIT_MS);
    hp_alloc_counter_t c5 = hp_alloc_stats_sum(as);
    assert_int_equal(hp_l2_get(f->l2, "k:alloc", 7, &x), UV_ENOTCONN);
    assert_int_equal(hp_alloc_stats_sum(as).count, c5.count);

    assert_int_equal(STAT(f, reader_buf_changes), changes);
    print_message("allocations: GET hit %.2f (%.0f bytes, value of %zu), GET miss %.2f, SET %.2f; "
                  "hiredis read buffer %llu bytes, unchanged over %d operations\n",
                  hit_allocs, hit_bytes, sizeof(body), miss_allocs, set_allocs,
                  (unsigned long long)STAT(f, reader_buf_bytes), 3 * N + 2 * B);
    hp_buf_unref(v);
}

/* --- against the fake Redis ------------------------------------------------ */

static void fake_fixture(fx_t *f, fake_mode_t mode)
{
    fake_start(&f->fake, &f->loop, mode);
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d", f->fake.port);
}

/* A listener whose accept queue is full drops SYNs: connect hangs until
 * connect_timeout_ms. Meanwhile calls are bypasses. Closing while
 * connecting is clean. */
static void test_connect_timeout(void **state)
{
    fx_t *f = *state;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t len = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &len);
    int fill[3];
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    run_for(f, 50); /* let the handshakes settle and the queue fill */
    snprintf(f->url, sizeof(f->url), "redis://127.0.0.1:%d", ntohs(a.sin_port));
    f->opts.connect_timeout_ms = 200;
    uint64_t t0 = uv_hrtime();
    l2_open(f);
    hp_task_t *t;
    assert_int_equal(hp_l2_get(f->l2, "k", 1, &t), UV_ENOTCONN);
    assert_int_equal(STAT(f, bypasses), 1);
    RUN_UNTIL(f, STAT(f, connect_failures) == 1, WAIT_MS);
    double ms = ms_since(t0);
    print_message("connect timeout 200 ms -> failed in %.1f ms: %s\n", ms, hp_l2_last_error(f->l2));
    assert_true(ms >= 190); /* the loop's clock is coarse (CLOCK_MONOTONIC_COARSE) */
    char want[256];
    snprintf(want, sizeof(want), "connect to %s timed out after 200 ms", f->url);
    assert_string_equal(hp_l2_last_error(f->l2), want);
    RUN_UNTIL(f, STAT(f, reconnects) == 1, WAIT_MS); /* after backoff_min_ms */
    l2_close(f);                                     /* in the middle of the second attempt */
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(lfd);
}

/* A peer that accepts and never answers SELECT: the handshake is bounded
 * by the same connect timeout. */
static void test_handshake_timeout(void **state)
{
    fx_t *f = *state;
    fake_fixture(f, FAKE_SILENT);
    f->opts.connect_timeout_ms = 200;
    uint64_t t0 = uv_hrtime();
    l2_open(f);
    RUN_UNTIL(f, STAT(f, connect_failures) == 1, WAIT_MS);
    double ms = ms_since(t0);
    assert_true(ms >= 190); /* the loop's clock is coarse (CLOCK_MONOTONIC_COARSE) */
    char want[256];
    snprintf(want, sizeof(want), "SELECT on %s timed out after 200 ms", f->url);
    assert_string_equal(hp_l2_last_error(f->l2), want);
    assert_int_equal(f->fake.accepts, 1);
    assert_int_equal(STAT(f, connected), 0);
}

/* Something that is not Redis (an HTTP server), and a Redis that wants a
 * password: never connected, with the reason. */
static void test_handshake_refused(void **state)
{
    fx_t *f = *state;
    fake_fixture(f, FAKE_HTTP);
    l2_open(f);
    RUN_UNTIL(f, STAT(f, connect_failures) == 1, WAIT_MS);
    print_message("HTTP server: %s\n", hp_l2_last_error(f->l2));
    assert_string_equal(hp_l2_last_error(f->l2), "redis sent a malformed reply: Protocol error, "
                                                 "got \"H\" as reply type byte");
    f->fake.mode = FAKE_NOAUTH;
    RUN_UNTIL(f, STAT(f, connect_failures) == 2, WAIT_MS);
    assert_string_equal(hp_l2_last_error(f->l2),
                        "SELECT 0 refused: NOAUTH Authentication required.");
    assert_int_equal(STAT(f, connected), 0);
    assert_int_equal(STAT(f, disconnects), 0);
    assert_int_equal(STAT(f, reconnects), 1);
}

/* A Redis that stops answering: every GET in flight times out together,
 * the connection is dropped, and the next one is made after backoff. */
static void test_command_timeout(void **state)
{
    fx_t *f = *state;
    fake_fixture(f, FAKE_OK_SILENT);
    f->opts.command_timeout_ms = 200;
    l2_ready(f);
    uint64_t t0 = uv_hrtime();
    uv_update_time(&f->loop);
    wait_t *w[3];
    hp_task_t *t[3];
    for (int i = 0; i < 3; i++) { /* one loop time: one deadline for all four */
        assert_int_equal(hp_l2_get(f->l2, "k", 1, &t[i]), 0);
        w[i] = watch(f, t[i]);
    }
    hp_buf_t *v = mkbuf(200, "text/plain", "v", 1);
    set_ok(f, "k", v, 1000);
    RUN_UNTIL(f, w[2]->done, WAIT_MS);
    double ms = ms_since(t0);
    for (int i = 0; i < 3; i++) {
        expect_fault(t[i], UV_ETIMEDOUT);
        assert_string_equal(hp_task_error_message(t[i]), "redis command timed out");
        hp_task_unref(t[i]);
    }
    print_message("command timeout 200 ms -> 3 GETs + 1 SET timed out in %.1f ms\n", ms);
    assert_true(ms >= 190); /* the loop's clock is coarse (CLOCK_MONOTONIC_COARSE) */
    assert_int_equal(STAT(f, timeouts), 4);
    assert_int_equal(STAT(f, disconnects), 1);
    assert_int_equal(hp_l2_set(f->l2, "k", 1, v, 1000), UV_ENOTCONN);
    RUN_UNTIL(f, STAT(f, connected) == 1, WAIT_MS);
    assert_int_equal(STAT(f, reconnects), 1);
    assert_int_equal(f->fake.accepts, 2);
    hp_buf_unref(v);
}

/* Garbage instead of a reply: the GET faults at once, the connection is
 * dropped and made again; a ready connection resets the backoff. */
static void test_garbage_reply(void **state)
{
    fx_t *f = *state;
    fake_fixture(f, FAKE_OK_GARBAGE);
    l2_ready(f);
    for (int round = 1; round <= 3; round++) {
        uint64_t t0 = uv_hrtime();
        hp_task_t *t = get_done(f, "k");
        double ms = ms_since(t0);
        expect_fault(t, UV_EPROTO);
        hp_task_unref(t);
        assert_true(ms < 250); /* not the command timeout (300 ms) */
        assert_string_equal(hp_l2_last_error(f->l2), "redis sent a malformed reply: Protocol "
                                                     "error, got \"?\" as reply type byte");
        assert_int_equal(STAT(f, errors), round);
        assert_int_equal(STAT(f, disconnects), round);
        t0 = uv_hrtime();
        RUN_UNTIL(f, STAT(f, connected) == 1, WAIT_MS);
        assert_true(ms_since(t0) < 50 + 250); /* backoff_min_ms each time */
    }
    assert_int_equal(STAT(f, reconnects), 3);
    assert_int_equal(f->fake.accepts, 4);
}

/* A reply cut short by a close faults at once. */
static void test_truncated_reply(void **state)
{
    fx_t *f = *state;
    fake_fixture(f, FAKE_OK_TRUNCATE);
    l2_ready(f);
    uint64_t t0 = uv_hrtime();
    hp_task_t *t = get_done(f, "k");
    double ms = ms_since(t0);
    expect_fault(t, UV_ECONNRESET);
    hp_task_unref(t);
    assert_true(ms < 250);
    assert_string_equal(hp_l2_last_error(f->l2), "redis closed the connection");
    assert_int_equal(STAT(f, errors), 1);
    assert_int_equal(STAT(f, disconnects), 1);
}

/* A bulk string of 100 MB announced: refused once the bytes buffered pass
 * max_value_bytes, long before it would all arrive. */
static void test_reply_too_big(void **state)
{
    fx_t *f = *state;
    fake_fixture(f, FAKE_OK_HUGE);
    f->opts.max_value_bytes = 4096;
    l2_ready(f);
    hp_task_t *t = get_done(f, "k");
    expect_fault(t, UV_E2BIG);
    hp_task_unref(t);
    print_message("%s\n", hp_l2_last_error(f->l2));
    assert_string_equal(hp_l2_last_error(f->l2),
                        "redis reply exceeds cache.l2.max_value_bytes (4096)");
    assert_true(STAT(f, reader_buf_bytes) <= 65536);
    assert_int_equal(STAT(f, disconnects), 1);

    hp_buf_t *big = mkbuf(200, "text/plain", huge_chunk, 4096);
    assert_int_equal(hp_l2_set(f->l2, "k", 1, big, 1000), UV_E2BIG);
    hp_buf_unref(big);
}

int main(void)
{
    hp_alloc_install();
    signal(SIGPIPE, SIG_IGN);
    have_redis = hp_test_redis_bin() != NULL;
    if (!have_redis)
        print_message("test_l2: SKIP the tests that need a real Redis: redis-server not found on "
                      "PATH or HOTPATH_REDIS_BIN (`make deps` installs it)\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_options, setup_common, teardown),
        cmocka_unit_test_setup_teardown(test_get_miss_hit, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_set_ttl_expiry, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_select_db, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_error_reply_and_foreign_value, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_large_value, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_slow_redis, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_redis_killed_and_back, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_pending, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_continuations, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_and_bound, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_reconfigure, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_counts, setup_redis, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup_common, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, setup_common, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_refused, setup_common, teardown),
        cmocka_unit_test_setup_teardown(test_command_timeout, setup_common, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_reply, setup_common, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_reply, setup_common, teardown),
        cmocka_unit_test_setup_teardown(test_reply_too_big, setup_common, teardown),
    };
    int failed = cmocka_run_group_tests_name("l2", tests, NULL, NULL);
    print_message("summary: GET hit %.0f allocations (%.0f bytes), GET miss %.0f, SET %.0f\n",
                  hit_allocs, hit_bytes, miss_allocs, set_allocs);
    return failed;
}
