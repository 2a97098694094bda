/*
 * test_upstream.c - hp_upstream (upstream/client.c) against the real stub
 * (stub/upstream.c), real processes and real sockets on 127.0.0.1.
 *
 * Every test spawns its own build/hotpath-upstream (HOTPATH_UPSTREAM_BIN) on
 * an ephemeral port, drives a client on a private uv loop, and in teardown
 * closes the client, checks that uv_run finds nothing left and that
 * uv_loop_close succeeds (every test is a leak check), then stops the stub
 * with SIGTERM and checks that it exited 0 (under ASan, that it leaked
 * nothing either). The stub's /_stats and /_control are reached through a
 * separate blocking helper connection, whose own connections are subtracted
 * from the stub's counts.
 *
 * Bounds: every wait on the loop runs under a guard timer that fails the
 * test; alarm() is the backstop for anything else, and the stubs die with
 * the test process (PR_SET_PDEATHSIG).
 *
 * Measured here (printed, not asserted; x86-64, -O2): a request on a warm
 * pool makes 3 allocations (request, task, response buffer) and none in
 * libuv; a refused connect fails in 0.04-0.2 ms; a 200 ms response timeout
 * fires at 200-201 ms.
 */
#include "upstream/client.h"
#include "tests/support/harness.h"

#include "runtime/alloc.h"
#include "runtime/buf.h"
#include "runtime/counter.h"
#include "runtime/errors.h"
#include "runtime/task.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS      5000 /* the longest any single wait on the loop may take */
#define TEST_ALARM_S 60   /* backstop per test */
#define MAX_WAITS    64

typedef struct {
    pid_t pid;
    int out_fd; /* the stub's stdout */
    int port;
    int helper_conns; /* connections the blocking helper made to it */
} stub_proc_t;

typedef struct {
    bool done;
    uint64_t t1; /* uv_hrtime() when the continuation ran */
} wait_t;

typedef struct {
    uv_loop_t loop;
    uv_timer_t guard;
    bool expired;
    stub_proc_t stub;
    hp_upstream_t *u;
    hp_upstream_opts_t opts;
    bool closed;
    hp_upstream_t *reenter_u; /* test_close_in_flight's continuation */
    bool reenter_ok;
    /* Continuation targets live here, not on a test's stack: a failed
     * assertion longjmps away while the task may still complete later. */
    wait_t waits[MAX_WAITS];
    int nwaits;
} fx_t;

static double warm_allocs_per_request = -1;
static double refused_ms = -1, timeout_ms = -1, connect_timeout_ms = -1;

/* --- the stub process --------------------------------------------------------- */

static const char *stub_bin(char *buf, size_t n)
{
    const char *bin = getenv("HOTPATH_UPSTREAM_BIN");
    if (bin && *bin) return bin;
    const char *root = getenv("HOTPATH_ROOT");
    snprintf(buf, n, "%s%sbuild/hotpath-upstream", root ? root : "", root ? "/" : "");
    return buf;
}

/* Spawn the stub with --port 0 and extra (NULL-terminated, may be NULL) and
 * read its port from the line it prints. */
static void stub_start(stub_proc_t *sp, const char *const *extra)
{
    char path[4096];
    const char *bin = stub_bin(path, sizeof(path));
    const char *argv[16] = {bin, "--port", "0"};
    int argc = 3;
    for (; extra && *extra && argc < 15; extra++)
        argv[argc++] = *extra;
    argv[argc] = NULL;
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        dup2(fds[1], 1);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "test_upstream: cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    sp->pid = pid;
    sp->out_fd = fds[0];
    sp->helper_conns = 0;
    char line[256];
    size_t len = 0;
    while (len < sizeof(line) - 1 && (len == 0 || line[len - 1] != '\n')) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) fail_msg("%s printed no listening line in 10 s", bin);
        ssize_t n = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0) fail_msg("%s exited before listening", bin);
        len += (size_t)n;
    }
    line[len] = '\0';
    const char *prefix = "hotpath-upstream listening on ";
    assert_memory_equal(line, prefix, strlen(prefix));
    sp->port = atoi(strrchr(line, ':') + 1);
    assert_true(sp->port > 0);
}

static void stub_stop(stub_proc_t *sp)
{
    if (sp->pid <= 0) return;
    pid_t pid = sp->pid;
    sp->pid = 0;
    kill(pid, SIGTERM);
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 1000 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the stub did not exit within 10 s of SIGTERM");
    }
    close(sp->out_fd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* One blocking HTTP/1.1 exchange with the stub on a fresh connection; the
 * parsed JSON body (owned: cJSON_Delete). */
static cJSON *stub_call(stub_proc_t *sp, const char *method, const char *target)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)sp->port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    sp->helper_conns++;
    char req[512];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                     method, target);
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    char resp[8192];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof(resp) - 1 && (r = recv(fd, resp + len, sizeof(resp) - 1 - len, 0)) > 0)
        len += (size_t)r;
    close(fd);
    resp[len] = '\0';
    assert_memory_equal(resp, "HTTP/1.1 200 ", 13);
    char *body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    cJSON *j = cJSON_Parse(body + 4);
    assert_non_null(j);
    return j;
}

static long stub_stat(stub_proc_t *sp, const char *name)
{
    cJSON *j = stub_call(sp, "GET", "/_stats");
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
    assert_true(cJSON_IsNumber(v));
    long out = (long)v->valuedouble;
    /* The helper's own connections: every one so far, and the open one. */
    if (strcmp(name, "connections") == 0) out -= sp->helper_conns;
    if (strcmp(name, "open_connections") == 0) out -= 1;
    cJSON_Delete(j);
    return out;
}

static void stub_control(stub_proc_t *sp, const char *query)
{
    char target[256];
    snprintf(target, sizeof(target), "/_control?%s", query);
    cJSON_Delete(stub_call(sp, "POST", target));
}

/* --- the loop ------------------------------------------------------------- */

static void guard_cb(uv_timer_t *t)
{
    fx_t *f = t->data;
    f->expired = true;
}

/* Run the loop until *flag, failing the test after ms. */
static void run_until(fx_t *f, const bool *flag, unsigned ms)
{
    f->expired = false;
    uv_timer_start(&f->guard, guard_cb, ms, 0);
    while (!*flag && !f->expired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->guard);
    if (!*flag) fail_msg("nothing happened within %u ms", ms);
}

/* Run the loop for ms. */
static void run_for(fx_t *f, unsigned ms)
{
    f->expired = false;
    uv_timer_start(&f->guard, guard_cb, ms, 0);
    while (!f->expired)
        uv_run(&f->loop, UV_RUN_ONCE);
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
    hp_task_await(t, wait_cb, w);
    return w;
}

/* Request and wait; returns the owned task and, in *ms, how long it took. */
static hp_task_t *fetch_timed(fx_t *f, const char *method, const char *path, double *ms)
{
    uv_update_time(&f->loop); /* the test may have blocked outside the loop */
    uint64_t t0 = uv_hrtime();
    hp_task_t *t = hp_upstream_request(f->u, method, path, strlen(path));
    wait_t *w = watch(f, t);
    run_until(f, &w->done, WAIT_MS);
    if (ms) *ms = (double)(w->t1 - t0) / 1e6;
    return t;
}

static hp_task_t *fetch(fx_t *f, const char *method, const char *path)
{
    return fetch_timed(f, method, path, NULL);
}

static hp_buf_t *ok_buf(hp_task_t *t)
{
    hp_value_t v;
    int rc = hp_task_result(t, &v);
    if (rc != 0) fail_msg("task faulted: %s (%s)", hp_err_name(rc), hp_task_error_message(t));
    return v.ptr;
}

static void expect_ok(fx_t *f, const char *path)
{
    hp_task_t *t = fetch(f, "GET", path);
    assert_int_equal(ok_buf(t)->status, 200);
    hp_task_unref(t);
}

static void expect_fault(hp_task_t *t, int err)
{
    hp_value_t v;
    int rc = hp_task_result(t, &v);
    if (rc != err)
        fail_msg("expected %s, got %s (%s)", hp_err_name(err), hp_err_name(rc),
                 rc ? hp_task_error_message(t) : "a response");
    assert_non_null(hp_task_error_message(t));
}

static void expect_body(const hp_buf_t *b, const char *body)
{
    if (b->len != strlen(body) || memcmp(b->body, body, b->len) != 0)
        fail_msg("body \"%.*s\", expected \"%s\"", (int)b->len, b->body, body);
}

#define STAT(f, name) hp_counter_get(&hp_upstream_stats((f)->u)->name)

/* --- fixture ------------------------------------------------------------ */

static void client_open(fx_t *f)
{
    assert_int_equal(hp_upstream_new(&f->loop, &f->opts, &f->u), 0);
}

static void closed_cb(void *arg)
{
    fx_t *f = arg;
    f->closed = true;
}

static void client_close(fx_t *f)
{
    if (f->u == NULL) return;
    f->closed = false;
    hp_upstream_close(f->u, closed_cb, f);
    f->u = NULL;
    run_until(f, &f->closed, WAIT_MS);
}

static int setup(void **state)
{
    alarm(TEST_ALARM_S);
    fx_t *f = hp_calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->guard), 0);
    f->guard.data = f;
    stub_start(&f->stub, NULL);
    f->opts = (hp_upstream_opts_t){
        .host = "127.0.0.1",
        .port = f->stub.port,
        .pool_size = 4,
        .connect_timeout_ms = 2000,
        .response_timeout_ms = 2000,
        .idle_timeout_ms = 10000,
        .max_response_bytes = 1 << 20,
    };
    client_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    client_close(f);
    uv_close((uv_handle_t *)&f->guard, NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_NOWAIT), 0); /* nothing left open */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    stub_stop(&f->stub);
    hp_free(f);
    alarm(0);
    return 0;
}

/* --- tests ---------------------------------------------------------------- */

/* Status, content type and body of /items/{key}; HEAD; the echo path; the
 * buffer outliving its task; two waiters on one task. */
static void test_get_item(void **state)
{
    fx_t *f = *state;
    hp_task_t *t = fetch(f, "GET", "/items/abc");
    hp_buf_t *b = hp_buf_ref(ok_buf(t));
    hp_task_unref(t);
    assert_int_equal(b->status, 200);
    assert_string_equal(b->ctype, "application/json");
    cJSON *j = cJSON_ParseWithLength(b->body, b->len);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "key")->valuestring, "abc");
    char value[64];
    snprintf(value, sizeof(value), "%s", cJSON_GetObjectItem(j, "value")->valuestring);
    assert_memory_equal(value, "value-of-abc-", 13);
    assert_int_equal(cJSON_GetObjectItem(j, "served")->valueint, 1);
    cJSON_Delete(j);
    hp_buf_unref(b);

    /* Same key, same value; a second waiter sees the same buffer. */
    t = hp_upstream_request(f->u, "GET", "/items/abc", 10);
    wait_t *w1 = watch(f, t);
    wait_t *w2 = watch(f, t);
    run_until(f, &w2->done, WAIT_MS);
    assert_true(w1->done);
    assert_int_equal(hp_task_waiter_count(t), 2);
    j = cJSON_ParseWithLength(ok_buf(t)->body, ok_buf(t)->len);
    assert_string_equal(cJSON_GetObjectItem(j, "value")->valuestring, value);
    assert_int_equal(cJSON_GetObjectItem(j, "served")->valueint, 2);
    cJSON_Delete(j);
    hp_task_unref(t);

    t = fetch(f, "HEAD", "/items/abc");
    assert_int_equal(ok_buf(t)->status, 200);
    assert_string_equal(ok_buf(t)->ctype, "application/json");
    assert_int_equal(ok_buf(t)->len, 0);
    hp_task_unref(t);

    t = fetch(f, "DELETE", "/some/thing?x=1");
    assert_string_equal(ok_buf(t)->ctype, "text/plain");
    expect_body(ok_buf(t), "DELETE /some/thing?x=1\n");
    hp_task_unref(t);

    assert_int_equal(STAT(f, requests), 4);
    assert_int_equal(STAT(f, responses), 4);
    assert_int_equal(STAT(f, pool_connections_opened), 1);
    assert_int_equal(STAT(f, pool_busy), 0);
    assert_int_equal(STAT(f, pool_idle), 1);
    assert_int_equal(STAT(f, pool_open), 1);
    uint64_t n = 0;
    for (int i = 0; i < HP_UPSTREAM_LATENCY_BUCKETS; i++)
        n += STAT(f, latency_hist[i]);
    assert_int_equal(n, 4);
    assert_int_equal(stub_stat(&f->stub, "items"), 3);
}

/* N sequential requests ride one connection; allocations per request. */
static void test_pool_reuse(void **state)
{
    fx_t *f = *state;
    expect_ok(f, "/items/warm");
    expect_ok(f, "/items/warm");
    const hp_alloc_stats_t *as = hp_alloc_thread_stats();
    hp_alloc_counter_t before = hp_alloc_stats_sum(as);
    uint64_t uv_before = as->by_source[HP_ALLOC_UV].count;
    enum { N = 20 };
    char path[32];
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/items/k%d", i);
        expect_ok(f, path);
    }
    hp_alloc_counter_t after = hp_alloc_stats_sum(as);
    warm_allocs_per_request = (double)(after.count - before.count) / N;
    print_message("allocations per upstream request, warm pool: %.2f (%.0f bytes; libuv %.2f)\n",
                  warm_allocs_per_request, (double)(after.bytes - before.bytes) / N,
                  (double)(as->by_source[HP_ALLOC_UV].count - uv_before) / N);
    assert_int_equal(STAT(f, pool_connections_opened), 1);
    assert_int_equal(stub_stat(&f->stub, "connections"), 1);
    assert_int_equal(stub_stat(&f->stub, "open_connections"), 1);
    assert_int_equal(stub_stat(&f->stub, "items"), N + 2);
}

/* pool_size 2, 10 concurrent slow requests: two connections, eight wait in
 * FIFO order, all succeed. */
static void test_pool_bound_and_queue(void **state)
{
    fx_t *f = *state;
    f->opts.pool_size = 2;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    stub_control(&f->stub, "delay_ms=100");
    enum { N = 10 };
    hp_task_t *t[N];
    wait_t *w[N];
    char path[32];
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof(path), "/items/q%d", i);
        t[i] = hp_upstream_request(f->u, "GET", path, strlen(path));
        w[i] = watch(f, t[i]);
    }
    assert_int_equal(STAT(f, pool_queued), N - 2);
    assert_int_equal(STAT(f, pool_busy), 2);
    run_until(f, &w[N - 1]->done, WAIT_MS);
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    for (int i = 0; i < N; i++) {
        assert_true(w[i]->done);
        if (i) assert_true(w[i]->t1 >= w[i - 1]->t1); /* FIFO */
        snprintf(path, sizeof(path), "\"key\":\"q%d\"", i);
        const hp_buf_t *b = ok_buf(t[i]);
        assert_non_null(memmem(b->body, b->len, path, strlen(path)));
        hp_task_unref(t[i]);
    }
    print_message("10 requests, 100 ms each, pool of 2: %.0f ms\n", ms);
    assert_true(ms >= 450);
    assert_int_equal(STAT(f, pool_connections_opened), 2);
    assert_int_equal(STAT(f, pool_queued), 0);
    assert_int_equal(STAT(f, pool_queued_max), N - 2);
    assert_int_equal(STAT(f, pool_busy), 0);
    assert_int_equal(STAT(f, pool_idle), 2);
    assert_int_equal(stub_stat(&f->stub, "connections"), 2);
}

/* Chunked (extension, trailer), a body over several reads; the connection
 * stays reusable after both. */
static void test_chunked_and_large(void **state)
{
    fx_t *f = *state;
    hp_task_t *t = fetch(f, "GET", "/chunked/key");
    const hp_buf_t *b = ok_buf(t);
    assert_int_equal(b->status, 200);
    assert_string_equal(b->ctype, "text/plain");
    expect_body(b, "key:0\nkey:1\nkey:2\nkey:3\nkey:4\nkey:5\nkey:6\nkey:7\nkey:8\nkey:9\n");
    hp_task_unref(t);

    t = fetch(f, "GET", "/bytes/300000");
    b = ok_buf(t);
    assert_int_equal(b->len, 300000);
    for (size_t i = 0; i < b->len; i++)
        if (b->body[i] != (char)('a' + i % 26)) fail_msg("byte %zu differs", i);
    hp_task_unref(t);

    t = fetch(f, "GET", "/bytes/0");
    assert_int_equal(ok_buf(t)->len, 0);
    hp_task_unref(t);
    expect_ok(f, "/chunked/again");
    assert_int_equal(STAT(f, pool_connections_opened), 1);
    assert_int_equal(stub_stat(&f->stub, "connections"), 1);
}

/* Connection refused fails fast; the client recovers once the address is
 * good again. */
static void test_refused(void **state)
{
    fx_t *f = *state;
    hp_upstream_opts_t o = f->opts;
    o.port = hp_it_unused_port(); /* nothing answers there */
    assert_true(o.port > 0);
    assert_int_equal(hp_upstream_reconfigure(f->u, &o), 0);
    double ms;
    hp_task_t *t = fetch_timed(f, "GET", "/items/x", &ms);
    expect_fault(t, HP_EUPSTREAM_CONNECT);
    hp_task_unref(t);
    refused_ms = ms;
    print_message("connection refused -> EUPSTREAM_CONNECT in %.3f ms\n", ms);
    assert_true(ms < 100);
    assert_int_equal(STAT(f, errors_connect), 1);
    assert_int_equal(STAT(f, retries), 0);
    assert_int_equal(STAT(f, pool_open), 0);
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    expect_ok(f, "/items/x");
    assert_int_equal(STAT(f, pool_busy), 0);
}

/* A listener whose accept queue is full drops SYNs: connect hangs. */
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
    hp_upstream_opts_t o = f->opts;
    o.port = ntohs(a.sin_port);
    o.connect_timeout_ms = 200;
    assert_int_equal(hp_upstream_reconfigure(f->u, &o), 0);
    double ms;
    hp_task_t *t = fetch_timed(f, "GET", "/items/x", &ms);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(lfd);
    expect_fault(t, HP_EUPSTREAM_TIMEOUT);
    assert_string_equal(hp_task_error_message(t), "upstream connect timed out");
    hp_task_unref(t);
    connect_timeout_ms = ms;
    print_message("connect timeout 200 ms -> EUPSTREAM_TIMEOUT in %.1f ms\n", ms);
    assert_true(ms >= 195 && ms < 700);
    assert_int_equal(STAT(f, pool_open), 0);
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    expect_ok(f, "/items/x");
}

/* No answer within response_timeout_ms: timeout, then the pool works. */
static void test_response_timeout(void **state)
{
    fx_t *f = *state;
    f->opts.response_timeout_ms = 200;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    expect_ok(f, "/items/warm");
    stub_control(&f->stub, "delay_ms=1000");
    double ms;
    hp_task_t *t = fetch_timed(f, "GET", "/items/slow", &ms);
    expect_fault(t, HP_EUPSTREAM_TIMEOUT);
    assert_string_equal(hp_task_error_message(t), "upstream response timed out");
    hp_task_unref(t);
    timeout_ms = ms;
    print_message("response timeout 200 ms -> EUPSTREAM_TIMEOUT in %.1f ms\n", ms);
    assert_true(ms >= 195 && ms < 700);
    assert_int_equal(STAT(f, pool_busy), 0);
    assert_int_equal(STAT(f, pool_open), 0);
    stub_control(&f->stub, "delay_ms=0");
    expect_ok(f, "/items/fast");
    assert_int_equal(STAT(f, errors_timeout), 1);
    assert_int_equal(STAT(f, pool_busy), 0);
}

/* Each fault mode gives its error; after each the next request works and
 * no slot stays busy. Every fault request goes out on a reused connection. */
static void test_fault_modes(void **state)
{
    static const struct {
        const char *path;
        int err;
    } cases[] = {
        {"/items/f?fault=stall", HP_EUPSTREAM_TIMEOUT},
        {"/items/f?fault=headers", HP_EUPSTREAM_TIMEOUT},
        {"/items/f?fault=garbage", HP_EUPSTREAM_PROTOCOL},
        {"/items/f?fault=reset", HP_EUPSTREAM_RESET},
        {"/items/f?fault=truncate", HP_EUPSTREAM_RESET},
        {"/chunked/f?fault=truncate", HP_EUPSTREAM_RESET},
        {"/items/f?fault=drop", HP_EUPSTREAM_RESET},
        {"/items/f?fault=close", 0},
    };
    fx_t *f = *state;
    f->opts.response_timeout_ms = 300;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_ok(f, "/items/before");
        assert_int_equal(STAT(f, pool_idle), 1);
        hp_task_t *t = fetch(f, "GET", cases[i].path);
        if (cases[i].err) {
            expect_fault(t, cases[i].err);
        } else {
            assert_int_equal(ok_buf(t)->status, 200);
            assert_int_equal(STAT(f, pool_open), 0); /* Connection: close is honoured */
        }
        print_message("%-28s -> %s: %s\n", cases[i].path, hp_err_name(cases[i].err),
                      cases[i].err ? hp_task_error_message(t) : "ok");
        hp_task_unref(t);
        assert_int_equal(STAT(f, pool_busy), 0);
        expect_ok(f, "/items/after");
        assert_int_equal(STAT(f, pool_busy), 0);
    }
    assert_int_equal(STAT(f, errors_timeout), 2);
    assert_int_equal(STAT(f, errors_protocol), 1);
    assert_int_equal(STAT(f, errors_reset), 4);
    /* drop on a reused connection was resent once, and dropped again */
    assert_int_equal(STAT(f, retries), 1);
    assert_int_equal(stub_stat(&f->stub, "faults"), 9);

    /* A fault set for every request through _control. */
    stub_control(&f->stub, "fault=garbage");
    hp_task_t *t = fetch(f, "GET", "/items/g");
    expect_fault(t, HP_EUPSTREAM_PROTOCOL);
    hp_task_unref(t);
    stub_control(&f->stub, "fault=none");
    expect_ok(f, "/items/g");
    assert_int_equal(STAT(f, pool_busy), 0);
}

/* Interim (1xx) responses: skipped when they are what RFC 9112 allows; a
 * "body" on one is never taken for one: the bytes it carried are garbage
 * where the next status line belongs, and the request fails. The client
 * used to read them as the 150's body, and glue them to a chunked final
 * body ("INJECTED!f:0\nf:1\n..." as a 200) or drop them silently before a
 * sized one. */
static void test_interim_responses(void **state)
{
    fx_t *f = *state;
    hp_task_t *t = fetch(f, "GET", "/x?fault=interim");
    assert_int_equal(ok_buf(t)->status, 200);
    assert_string_equal(ok_buf(t)->ctype, "text/plain");
    expect_body(ok_buf(t), "GET /x?fault=interim\n");
    hp_task_unref(t);
    assert_int_equal(STAT(f, pool_idle), 1); /* and the connection is reusable */

    static const char *const glued[] = {"/chunked/f?fault=infobody", "/x?fault=infobody"};
    for (int i = 0; i < 2; i++) {
        t = fetch(f, "GET", glued[i]);
        hp_value_t v;
        if (hp_task_result(t, &v) == 0)
            fail_msg("%s: a 1xx body was taken: %d \"%.*s\"", glued[i], ((hp_buf_t *)v.ptr)->status,
                     (int)((hp_buf_t *)v.ptr)->len, ((hp_buf_t *)v.ptr)->body);
        expect_fault(t, HP_EUPSTREAM_PROTOCOL);
        hp_task_unref(t);
        assert_int_equal(STAT(f, pool_busy), 0);
        assert_int_equal(STAT(f, pool_open), 0); /* that connection is closed */
        expect_ok(f, "/items/after");
    }
    assert_int_equal(STAT(f, errors_protocol), 2);
}

/* Bytes nobody asked for never answer a request. The stub answers A, then
 * EXTRA_MS later sends a second, unsolicited response. The test waits for
 * that outside the loop (asking the stub over its own connection), so the
 * bytes lie unread in the socket when B is issued: reusing that connection
 * for B would make them B's answer (the client used to deliver "SMUGGLED\n"
 * to B). Then the same with the loop running: an idle connection that
 * receives bytes closes. */
static void test_unsolicited_bytes_never_answer(void **state)
{
    fx_t *f = *state;
    f->opts.pool_size = 1;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    expect_ok(f, "/a?fault=extra");
    assert_int_equal(STAT(f, pool_idle), 1);
    /* The extra response is written (loopback: it is in our socket as soon
     * as that); the loop does not run meanwhile. */
    for (int i = 0; i < 500 && stub_stat(&f->stub, "extras") < 1; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(stub_stat(&f->stub, "extras"), 1);
    hp_task_t *t = fetch(f, "GET", "/b");
    expect_body(ok_buf(t), "GET /b\n");
    hp_task_unref(t);
    assert_int_equal(STAT(f, unsolicited), 1);
    assert_int_equal(STAT(f, pool_connections_opened), 2);

    expect_ok(f, "/c?fault=extra");
    for (int i = 0; i < 500 && STAT(f, unsolicited) < 2; i++)
        run_for(f, 10); /* read while idle: closed at once */
    assert_int_equal(STAT(f, unsolicited), 2);
    assert_int_equal(STAT(f, pool_open), 0);
    t = fetch(f, "GET", "/d");
    expect_body(ok_buf(t), "GET /d\n");
    hp_task_unref(t);
    assert_int_equal(STAT(f, pool_connections_opened), 3);
    assert_int_equal(STAT(f, responses), 4);
}

/* A request that waits in the queue is bounded too: its whole life ends
 * connect + response timeout after it was made. A holds the only slot for
 * 2 s (started before a reload shortened the timeouts); B, made after it,
 * has 100 + 300 ms, and ends then, in the queue, instead of waiting for A
 * (it used to be answered after A's 2 s, whatever its own timeouts). */
static void test_queued_request_has_a_deadline(void **state)
{
    fx_t *f = *state;
    f->opts.pool_size = 1;
    f->opts.response_timeout_ms = 2000;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    uv_update_time(&f->loop);
    hp_task_t *a = hp_upstream_request(f->u, "GET", "/a?fault=stall", 14);
    wait_t *wa = watch(f, a);
    f->opts.connect_timeout_ms = 100;
    f->opts.response_timeout_ms = 300;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    uv_update_time(&f->loop); /* B's deadline counts from the loop's time: make it t0 */
    uint64_t t0 = uv_hrtime();
    hp_task_t *b = hp_upstream_request(f->u, "GET", "/b", 2);
    wait_t *wb = watch(f, b);
    assert_int_equal(STAT(f, pool_queued), 1);
    run_until(f, &wb->done, WAIT_MS);
    double ms = (double)(wb->t1 - t0) / 1e6;
    print_message("queued behind a stalled request, 100 + 300 ms budget: failed after %.0f ms\n",
                  ms);
    expect_fault(b, HP_EUPSTREAM_TIMEOUT);
    assert_string_equal(hp_task_error_message(b),
                        "upstream request timed out waiting for a connection");
    assert_true(ms >= 390 && ms < 1000);
    assert_false(wa->done);
    assert_int_equal(STAT(f, pool_queued), 0);
    assert_int_equal(STAT(f, queue_timeouts), 1);
    assert_int_equal(STAT(f, errors_timeout), 1);
    hp_task_unref(b);
    run_until(f, &wa->done, WAIT_MS);
    expect_fault(a, HP_EUPSTREAM_TIMEOUT);
    hp_task_unref(a);
    assert_int_equal(stub_stat(&f->stub, "requests"), 1); /* B was never sent */
}

/* Time spent queued counts: a request that gets its connection late has
 * only what is left of its budget to wait for the response. A stalls for
 * the full 400 ms response timeout; B, queued behind it, gets the slot at
 * 400 ms with 100 ms of its 100 + 400 ms left (it used to wait 400 more). */
static void test_queue_time_counts_against_the_response(void **state)
{
    fx_t *f = *state;
    f->opts.pool_size = 1;
    f->opts.connect_timeout_ms = 100;
    f->opts.response_timeout_ms = 400;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    expect_ok(f, "/warm");
    uint64_t t0 = uv_hrtime();
    hp_task_t *a = hp_upstream_request(f->u, "GET", "/a?fault=stall", 14);
    hp_task_t *b = hp_upstream_request(f->u, "GET", "/b?fault=stall", 14);
    wait_t *wa = watch(f, a);
    wait_t *wb = watch(f, b);
    run_until(f, &wb->done, WAIT_MS);
    assert_true(wa->done);
    double ms_a = (double)(wa->t1 - t0) / 1e6, ms_b = (double)(wb->t1 - t0) / 1e6;
    print_message("stalled A after %.0f ms, B queued behind it after %.0f ms (budget 500 ms)\n",
                  ms_a, ms_b);
    expect_fault(a, HP_EUPSTREAM_TIMEOUT);
    expect_fault(b, HP_EUPSTREAM_TIMEOUT);
    assert_string_equal(hp_task_error_message(b),
                        "upstream request deadline passed while waiting for the response");
    assert_true(ms_b >= 490 && ms_b < 750);
    hp_task_unref(a);
    hp_task_unref(b);
    assert_int_equal(STAT(f, queue_timeouts), 0);
    assert_int_equal(STAT(f, errors_timeout), 2);
}

/* Cancelling a queued request: it leaves the queue, faults with
 * UV_ECANCELED on the next loop turn, is never sent; a second cancel, or
 * one after the end, finds nothing. */
static void test_cancel_queued(void **state)
{
    fx_t *f = *state;
    f->opts.pool_size = 1;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    hp_task_t *a = hp_upstream_request(f->u, "GET", "/a?delay_ms=200", 15);
    hp_task_t *b = hp_upstream_request(f->u, "GET", "/b", 2);
    wait_t *wb = watch(f, b);
    assert_int_equal(STAT(f, pool_queued), 1);
    assert_int_equal(hp_upstream_cancel(f->u, b, false), 0);
    assert_false(wb->done); /* continuations run from the idle phase */
    assert_int_equal(STAT(f, pool_queued), 0);
    assert_int_equal(hp_upstream_cancel(f->u, b, true), UV_ENOENT);
    run_until(f, &wb->done, WAIT_MS);
    expect_fault(b, UV_ECANCELED);
    hp_task_unref(b);
    assert_int_equal(STAT(f, cancelled), 1);
    assert_int_equal(hp_upstream_cancel(f->u, a, false), UV_EBUSY); /* sent: left alone */
    wait_t *wa = watch(f, a);
    run_until(f, &wa->done, WAIT_MS);
    expect_body(ok_buf(a), "GET /a?delay_ms=200\n");
    assert_int_equal(hp_upstream_cancel(f->u, a, true), UV_ENOENT);
    hp_task_unref(a);
    assert_int_equal(stub_stat(&f->stub, "requests"), 1);
    const hp_upstream_stats_t *st = hp_upstream_stats(f->u);
    assert_int_equal(st->requests, st->responses + st->cancelled);
}

/* Cancelling a sent request closes its connection: the slot is free at
 * once (the next request does not wait for the stalled one), and the late
 * answer can never reach another request, since it had only that socket
 * to come on. */
static void test_cancel_sent_closes_its_connection(void **state)
{
    fx_t *f = *state;
    f->opts.pool_size = 1;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    expect_ok(f, "/warm");
    hp_task_t *a = hp_upstream_request(f->u, "GET", "/late?delay_ms=150", 18);
    wait_t *wa = watch(f, a);
    run_for(f, 50); /* sent; the answer comes at 150 ms */
    assert_int_equal(STAT(f, pool_busy), 1);
    assert_int_equal(hp_upstream_cancel(f->u, a, true), 0);
    assert_int_equal(STAT(f, pool_busy), 0);
    double ms;
    hp_task_t *b = fetch_timed(f, "GET", "/b?delay_ms=200", &ms);
    assert_true(wa->done);
    expect_fault(a, UV_ECANCELED);
    expect_body(ok_buf(b), "GET /b?delay_ms=200\n");
    hp_task_unref(a);
    hp_task_unref(b);
    assert_int_equal(STAT(f, pool_connections_opened), 2);
    assert_int_equal(STAT(f, cancelled), 1);
    assert_int_equal(STAT(f, unsolicited), 0);
    /* The stub saw the cancelled request's connection close. */
    assert_int_equal(stub_stat(&f->stub, "open_connections"), 1);
}

/* Cancelling a request whose connection is still being opened lets the
 * connection finish opening and join the pool for the next request. */
static void test_cancel_while_connecting_keeps_the_connection(void **state)
{
    fx_t *f = *state;
    hp_task_t *a = hp_upstream_request(f->u, "GET", "/a", 2);
    wait_t *wa = watch(f, a);
    assert_int_equal(STAT(f, pool_busy), 1); /* connecting */
    assert_int_equal(hp_upstream_cancel(f->u, a, false), 0);
    run_until(f, &wa->done, WAIT_MS);
    expect_fault(a, UV_ECANCELED);
    hp_task_unref(a);
    for (int i = 0; i < 100 && STAT(f, pool_idle) == 0; i++)
        run_for(f, 10);
    assert_int_equal(STAT(f, pool_idle), 1);
    expect_ok(f, "/b");
    assert_int_equal(STAT(f, pool_connections_opened), 1);
    assert_int_equal(stub_stat(&f->stub, "requests"), 1);
}

/* The keep-alive race: the upstream closes a pooled connection as the
 * request arrives. Resent once on a fresh connection, it succeeds. */
static void test_retry_keepalive_race(void **state)
{
    fx_t *f = *state;
    expect_ok(f, "/items/a");
    stub_control(&f->stub, "drop_next=1");
    expect_ok(f, "/items/b");
    assert_int_equal(STAT(f, retries), 1);
    assert_int_equal(STAT(f, errors_reset), 0);
    assert_int_equal(STAT(f, pool_connections_opened), 2);
    assert_int_equal(STAT(f, pool_open), 1);
    assert_int_equal(stub_stat(&f->stub, "connections"), 2);
    assert_int_equal(stub_stat(&f->stub, "faults"), 1);
}

/* Resent at most once; never on a fresh connection; never a POST. */
static void test_retry_limits(void **state)
{
    fx_t *f = *state;
    hp_task_t *t = fetch(f, "GET", "/items/x?fault=drop"); /* fresh connection */
    expect_fault(t, HP_EUPSTREAM_RESET);
    hp_task_unref(t);
    assert_int_equal(STAT(f, retries), 0);

    expect_ok(f, "/items/warm");
    t = fetch(f, "GET", "/items/x?fault=drop"); /* reused, then fresh: twice */
    expect_fault(t, HP_EUPSTREAM_RESET);
    hp_task_unref(t);
    assert_int_equal(STAT(f, retries), 1);

    expect_ok(f, "/items/warm");
    t = fetch(f, "POST", "/items/x?fault=drop");
    expect_fault(t, HP_EUPSTREAM_RESET);
    hp_task_unref(t);
    assert_int_equal(STAT(f, retries), 1);
    assert_int_equal(stub_stat(&f->stub, "faults"), 4);
    expect_ok(f, "/items/after");
    assert_int_equal(STAT(f, pool_busy), 0);
}

/* max_response_bytes, for Content-Length and chunked bodies. */
static void test_too_big(void **state)
{
    fx_t *f = *state;
    f->opts.max_response_bytes = 100;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    hp_task_t *t = fetch(f, "GET", "/bytes/100");
    assert_int_equal(ok_buf(t)->len, 100);
    hp_task_unref(t);
    t = fetch(f, "GET", "/bytes/101");
    expect_fault(t, HP_EUPSTREAM_TOO_BIG);
    hp_task_unref(t);
    t = fetch(f, "GET", "/chunked/0123456789"); /* 10 lines of 13 bytes */
    expect_fault(t, HP_EUPSTREAM_TOO_BIG);
    hp_task_unref(t);
    expect_ok(f, "/items/x");
    assert_int_equal(STAT(f, errors_too_big), 2);
    assert_int_equal(STAT(f, pool_busy), 0);
}

/* An error status is a response, not a fault. */
static void test_error_status_is_a_response(void **state)
{
    fx_t *f = *state;
    stub_control(&f->stub, "fail_rate=1&status=503");
    hp_task_t *t = fetch(f, "GET", "/items/x");
    const hp_buf_t *b = ok_buf(t);
    assert_int_equal(b->status, 503);
    expect_body(b, "injected failure\n");
    hp_task_unref(t);
    assert_int_equal(STAT(f, responses), 1);
    assert_int_equal(STAT(f, pool_idle), 1);
    assert_int_equal(stub_stat(&f->stub, "failed"), 1);
}

/* Idle connections close after idle_timeout_ms, and the stub sees it. */
static void test_idle_timeout(void **state)
{
    fx_t *f = *state;
    f->opts.idle_timeout_ms = 100;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    expect_ok(f, "/items/x");
    assert_int_equal(STAT(f, pool_idle), 1);
    run_for(f, 300);
    assert_int_equal(STAT(f, pool_open), 0);
    assert_int_equal(STAT(f, pool_connections_closed), 1);
    assert_int_equal(stub_stat(&f->stub, "open_connections"), 0);
    expect_ok(f, "/items/y");
    assert_int_equal(STAT(f, pool_connections_opened), 2);
}

static void reenter_cb(void *arg)
{
    /* Runs inside hp_upstream_close: a request now faults at once. */
    fx_t *f = arg;
    hp_value_t v;
    hp_task_t *t = hp_upstream_request(f->reenter_u, "GET", "/items/late", 11);
    f->reenter_ok = hp_task_is_completed(t) && hp_task_result(t, &v) == HP_ESHUTDOWN;
    hp_task_unref(t);
    hp_upstream_close(f->reenter_u, NULL, NULL); /* a second close is ignored */
}

/* Closing with requests in flight and queued fails them all with
 * HP_ESHUTDOWN before returning and closes every handle. */
static void test_close_in_flight(void **state)
{
    fx_t *f = *state;
    f->opts.pool_size = 2;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    stub_control(&f->stub, "delay_ms=5000");
    enum { N = 4 };
    hp_task_t *t[N];
    wait_t *w[N];
    for (int i = 0; i < N; i++) {
        t[i] = hp_upstream_request(f->u, "GET", "/items/z", 8);
        w[i] = watch(f, t[i]);
    }
    f->reenter_u = f->u;
    hp_task_await(t[0], reenter_cb, f);
    run_for(f, 100); /* two sent, two queued */
    assert_int_equal(STAT(f, pool_busy), 2);
    assert_int_equal(STAT(f, pool_queued), 2);
    assert_int_equal(stub_stat(&f->stub, "open_connections"), 2);
    hp_upstream_t *u = f->u;
    f->u = NULL;
    f->closed = false;
    hp_upstream_close(u, closed_cb, f);
    for (int i = 0; i < N; i++) {
        assert_true(w[i]->done);
        expect_fault(t[i], HP_ESHUTDOWN);
        hp_task_unref(t[i]);
    }
    assert_true(f->reenter_ok); /* the re-entrant request faulted at once */
    assert_false(f->closed);    /* done runs from a close callback */
    run_until(f, &f->closed, WAIT_MS);
    long open = -1;
    for (int i = 0; i < 100 && open != 0; i++) {
        open = stub_stat(&f->stub, "open_connections");
        if (open) run_for(f, 10);
    }
    assert_int_equal(open, 0);
}

/* Live reload: a new address closes idle connections to the old one at
 * once and a busy one when its response is done; bad options change nothing. */
static void test_reconfigure(void **state)
{
    fx_t *f = *state;
    stub_proc_t b = {0};
    stub_start(&b, NULL);
    expect_ok(f, "/items/a");
    assert_int_equal(STAT(f, pool_idle), 1);

    hp_upstream_opts_t o = f->opts;
    o.port = b.port;
    assert_int_equal(hp_upstream_reconfigure(f->u, &o), 0);
    assert_int_equal(STAT(f, pool_open), 0);
    assert_int_equal(STAT(f, pool_connections_closed), 1);
    expect_ok(f, "/items/b");
    assert_int_equal(stub_stat(&b, "items"), 1);
    assert_int_equal(stub_stat(&f->stub, "items"), 1);

    o.host = "localhost";
    assert_int_equal(hp_upstream_reconfigure(f->u, &o), HP_ECONFIG);
    o.host = "127.0.0.1";
    o.port = 70000;
    assert_int_equal(hp_upstream_reconfigure(f->u, &o), HP_ECONFIG);
    expect_ok(f, "/items/b2");
    assert_int_equal(stub_stat(&b, "items"), 2);

    /* In flight to B while the address moves back to A. */
    stub_control(&b, "delay_ms=200");
    hp_task_t *t = hp_upstream_request(f->u, "GET", "/items/c", 8);
    wait_t *w = watch(f, t);
    run_for(f, 50);
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    assert_int_equal(STAT(f, pool_busy), 1);
    run_until(f, &w->done, WAIT_MS);
    assert_int_equal(ok_buf(t)->status, 200);
    hp_task_unref(t);
    assert_int_equal(STAT(f, pool_open), 0); /* closed, not pooled */
    expect_ok(f, "/items/d");
    assert_int_equal(stub_stat(&f->stub, "items"), 2);
    stub_stop(&b);
}

/* Unusable options and requests are refused up front. */
static void test_invalid(void **state)
{
    fx_t *f = *state;
    hp_upstream_t *u = NULL;
    hp_upstream_opts_t o = f->opts;
    o.host = "localhost";
    assert_int_equal(hp_upstream_new(&f->loop, &o, &u), HP_ECONFIG);
    o.host = NULL;
    assert_int_equal(hp_upstream_new(&f->loop, &o, &u), HP_ECONFIG);
    o.host = "::1";
    o.port = 0;
    assert_int_equal(hp_upstream_new(&f->loop, &o, &u), HP_ECONFIG);
    assert_null(u);

    static const char *const bad[][2] = {
        {"GET", "/a b"}, {"GET", "no-slash"}, {"GET", "/x\r\nX-Evil: 1"},
        {"GE T", "/"},   {"", "/"},           {"GET", ""},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        hp_task_t *t = hp_upstream_request(f->u, bad[i][0], bad[i][1], strlen(bad[i][1]));
        assert_true(hp_task_is_completed(t));
        expect_fault(t, UV_EINVAL);
        hp_task_unref(t);
    }
    assert_int_equal(STAT(f, errors_invalid), 6);
    assert_int_equal(STAT(f, pool_connections_opened), 0);
    /* A path slice need not be NUL-terminated. */
    hp_task_t *t = hp_upstream_request(f->u, "GET", "/items/slice-and-more", 12);
    wait_t *w = watch(f, t);
    run_until(f, &w->done, WAIT_MS);
    assert_non_null(memmem(ok_buf(t)->body, ok_buf(t)->len, "\"key\":\"slice\"", 13));
    hp_task_unref(t);
}

/* An IPv6 client to an IPv6 stub, when the host has ::1. */
static void test_ipv6(void **state)
{
    fx_t *f = *state;
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) close(fd);
    if (!have) {
        print_message("SKIP: this host has no ::1 loopback, so the IPv6 client is untested\n");
        skip();
    }
    stub_proc_t b = {0};
    stub_start(&b, (const char *const[]){"--host", "::1", NULL});
    hp_upstream_opts_t o = f->opts;
    o.host = "::1";
    o.port = b.port;
    assert_int_equal(hp_upstream_reconfigure(f->u, &o), 0);
    expect_ok(f, "/items/v6");
    stub_stop(&b);
}

/* Many concurrent requests through a small pool with jitter and a mix of
 * faults: every task finishes, the counters add up, no slot stays busy. */
static void test_soak(void **state)
{
    static const char *const faults[] = {
        "", "?fault=close", "?fault=drop", "?fault=garbage", "?fault=truncate", "?fault=reset"};
    fx_t *f = *state;
    f->opts.pool_size = 8;
    f->opts.response_timeout_ms = 1000;
    assert_int_equal(hp_upstream_reconfigure(f->u, &f->opts), 0);
    stub_control(&f->stub, "jitter_ms=3");
    enum { N = 2000, WINDOW = 40 };
    hp_task_t **t = hp_calloc(N, sizeof(*t));
    bool *done = hp_calloc(N, sizeof(*done));
    int started = 0, finished = 0, ok = 0;
    char path[64];
    uint64_t t0 = uv_hrtime();
    f->expired = false;
    uv_timer_start(&f->guard, guard_cb, 30000, 0);
    while (finished < N && !f->expired) {
        while (started < N && started - finished < WINDOW) {
            int i = started++;
            snprintf(path, sizeof(path), "/items/s%d%s", i, i % 10 ? "" : faults[(i / 10) % 6]);
            t[i] = hp_upstream_request(f->u, "GET", path, strlen(path));
        }
        uv_run(&f->loop, UV_RUN_ONCE);
        for (int i = 0; i < started; i++) {
            if (done[i] || !hp_task_is_completed(t[i])) continue;
            done[i] = true;
            finished++;
            ok += !hp_task_is_faulted(t[i]);
            hp_task_unref(t[i]);
        }
    }
    uv_timer_stop(&f->guard);
    bool expired = f->expired;
    for (int i = 0; i < started; i++)
        if (!done[i]) hp_task_unref(t[i]);
    hp_free(t);
    hp_free(done);
    if (expired) fail_msg("soak: %d of %d finished in 30 s", finished, N);
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    print_message("soak: %d requests, %d ok, %.0f ms, %llu retries, %llu connections\n", N, ok, ms,
                  (unsigned long long)STAT(f, retries),
                  (unsigned long long)STAT(f, pool_connections_opened));
    const hp_upstream_stats_t *st = hp_upstream_stats(f->u);
    assert_int_equal(st->requests, N);
    assert_int_equal(st->responses + st->errors_connect + st->errors_timeout + st->errors_protocol +
                         st->errors_reset + st->errors_too_big + st->cancelled,
                     N);
    assert_int_equal(st->responses, (uint64_t)ok);
    int expect_ok_n = N; /* close answers; the other faults fail */
    for (int i = 0; i < N; i += 10)
        expect_ok_n -= (i / 10) % 6 >= 2;
    assert_int_equal(ok, expect_ok_n);
    assert_int_equal(st->errors_timeout, 0);
    assert_int_equal(STAT(f, pool_busy), 0);
    assert_int_equal(STAT(f, pool_queued), 0);
    assert_true(STAT(f, pool_open) <= 8);
    expect_ok(f, "/items/after");
}

/* The stub itself: pipelined requests with random delays are answered in
 * order on their connection (what load tests with pipelining rely on). */
static void test_stub_pipelining(void **state)
{
    fx_t *f = *state;
    stub_control(&f->stub, "jitter_ms=30");
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->stub.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    f->stub.helper_conns++;
    char req[1024];
    size_t len = 0;
    for (int i = 0; i < 6; i++)
        len += (size_t)snprintf(req + len, sizeof(req) - len, "GET /items/p%d HTTP/1.1\r\n%s\r\n",
                                i, i == 5 ? "Connection: close\r\n" : "");
    assert_int_equal(send(fd, req, len, 0), (ssize_t)len);
    char resp[8192];
    len = 0;
    ssize_t r;
    while (len < sizeof(resp) - 1 && (r = recv(fd, resp + len, sizeof(resp) - 1 - len, 0)) > 0)
        len += (size_t)r;
    close(fd);
    resp[len] = '\0';
    const char *at = resp;
    char key[32];
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof(key), "\"key\":\"p%d\"", i);
        const char *next = strstr(at, key);
        if (next == NULL) fail_msg("answer %d missing or out of order", i);
        at = next;
    }
    assert_int_equal(stub_stat(&f->stub, "items"), 6);
}

int main(void)
{
    hp_alloc_install();
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_bound_and_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_and_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim_responses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsolicited_bytes_never_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_request_has_a_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_time_counts_against_the_response, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_sent_closes_its_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_connecting_keeps_the_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retry_keepalive_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_status_is_a_response, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconfigure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_soak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stub_pipelining, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("upstream", tests, NULL, NULL);
    print_message("summary: %.2f allocations per warm request; refused in %.3f ms; "
                  "response timeout (200 ms) in %.1f ms; connect timeout (200 ms) in %.1f ms\n",
                  warm_allocs_per_request, refused_ms, timeout_ms, connect_timeout_ms);
    return failed;
}
