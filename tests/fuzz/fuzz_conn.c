/*
 * fuzz_conn.c - libFuzzer target: arbitrary bytes, split at arbitrary
 * points, through a connection's parser, middleware chain and handlers, in
 * both modes, over a transport that may fail, back up or half-close.
 *
 * Input layout: byte 0 picks the mode (bit 0), the number of split points
 * (bits 1-4) and the transport (bits 5-7, below); the next that-many bytes
 * are split offsets (scaled to the payload); the rest is what the client
 * sends. Each input gets a fresh in-memory connection on a long-lived
 * worker, so state that outlives a connection (the context pool, the
 * cache, the upstream pool, the generation's refcounts, the task slots) is
 * exercised across inputs, as in a real server.
 *
 * Transports: 0 as a socket that takes everything; 1 the peer half-closes
 * right after its last byte, while what it sent may still pend (a FIN then
 * aborts a pending request: the client left, server/conn.c); 2 the peer
 * reads 61 bytes at a time, between the pieces and until nothing waits
 * (every blocked-write path, the carry); 3-5 the 1st, 2nd or 3rd write
 * fails (a reset peer: every close-from-inside path); 6 backed up, then
 * half-closed; 7 after the last piece the clock jumps an hour (every
 * deadline fires).
 *
 * The upstream points at 127.0.0.1:1, where nothing listens: /cache and
 * /upstream requests take the connect-refused path and answer 502; the
 * target waits (bounded) for such answers before it judges the output.
 *
 * Checked beyond "no crash, no leak, no UB":
 *  - the output is a sequence of well-formed HTTP/1.1 responses (llhttp in
 *    response mode, told which answer a HEAD), and nothing comes after the
 *    connection closed;
 *  - answers in order, one per request: when a reference llhttp (strict,
 *    like the server's) parses the whole input as N complete requests, the
 *    server answers exactly N when it kept the connection open and its
 *    transport let everything through, and at most N + 1 (a rejection of
 *    the partial one) when it closed - its last answer then saying
 *    Connection: close when it closed on its own;
 *  - the allocation scope is the worker's default after each call into the
 *    server, as it is between two loop entries of a worker thread.
 */
#include "app/app.h"
#include "runtime/alloc.h"
#include "server/conn.h"
#include "server/worker.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum {
    T_PLAIN = 0,
    T_HALF_CLOSE,
    T_SLOW_READER,
    T_FAIL_1,
    T_FAIL_2,
    T_FAIL_3,
    T_SLOW_HALF_CLOSE,
    T_DEADLINES,
};

#define MAX_REQUESTS 4096
#define SLOW_BYTES   61

typedef struct {
    /* the transport */
    int transport;
    int writes;
    bool closed;
    bool bad;
    char bad_what[64];
    /* what the server wrote */
    char *out;
    size_t len, cap;
} sink_state_t;

static void bad(sink_state_t *s, const char *what)
{
    if (!s->bad) snprintf(s->bad_what, sizeof(s->bad_what), "%s", what);
    s->bad = true;
}

static long sink(void *arg, const char *data, size_t len)
{
    sink_state_t *s = arg;
    if (data == NULL) {
        s->closed = true;
        return 0;
    }
    if (s->closed) bad(s, "output after the close");
    s->writes++;
    if (s->transport >= T_FAIL_1 && s->transport <= T_FAIL_3 &&
        s->writes >= s->transport - T_FAIL_1 + 1)
        return -32; /* EPIPE */
    if ((s->transport == T_SLOW_READER || s->transport == T_SLOW_HALF_CLOSE) && len > SLOW_BYTES)
        len = SLOW_BYTES;
    if (s->len + len > s->cap) {
        s->cap = (s->len + len) * 2;
        s->out = realloc(s->out, s->cap);
    }
    memcpy(s->out + s->len, data, len);
    s->len += len;
    return (long)len;
}

/* --- the reference: what a strict HTTP/1.1 parser sees in the input ----- */

typedef struct {
    int n;   /* complete requests */
    bool ok; /* the whole input parsed, no error */
    uint8_t method[MAX_REQUESTS];
} reference_t;

static int ref_headers_complete(llhttp_t *p)
{
    reference_t *r = p->data;
    if (r->n < MAX_REQUESTS) r->method[r->n] = (uint8_t)llhttp_get_method(p);
    return 0;
}

static int ref_message_complete(llhttp_t *p)
{
    reference_t *r = p->data;
    r->n++;
    return 0;
}

static void reference(const uint8_t *data, size_t size, reference_t *r)
{
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_headers_complete = ref_headers_complete;
    s.on_message_complete = ref_message_complete;
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &s);
    p.data = r;
    memset(r, 0, sizeof(*r));
    enum llhttp_errno err = llhttp_execute(&p, (const char *)data, size);
    r->ok = err == HPE_OK && r->n < MAX_REQUESTS;
}

/* --- the output: a sequence of responses -------------------------------- */

typedef struct {
    const reference_t *ref;
    int finals;      /* final (>= 200) responses */
    bool last_close; /* the last one said the connection ends */
    bool chain;      /* the one being parsed came through the chain */
} answers_t;

static int ans_message_begin(llhttp_t *p)
{
    ((answers_t *)p->data)->chain = false;
    return 0;
}

/* Answers from the chain carry the X-Request-Id the request_id middleware
 * adds; a rejection (written by the server without running the chain, and
 * always with its text body) does not. */
static int ans_header_field(llhttp_t *p, const char *at, size_t len)
{
    if (len == 12 && strncasecmp(at, "x-request-id", 12) == 0) ((answers_t *)p->data)->chain = true;
    return 0;
}

static int ans_headers_complete(llhttp_t *p)
{
    answers_t *a = p->data;
    if (p->status_code < 200) return 0;
    int i = a->finals;
    bool head = a->chain && i < a->ref->n && i < MAX_REQUESTS && a->ref->method[i] == HTTP_HEAD;
    a->last_close = !llhttp_should_keep_alive(p);
    return head ? 1 : 0; /* a HEAD's answer has no body */
}

static int ans_message_complete(llhttp_t *p)
{
    answers_t *a = p->data;
    if (p->status_code >= 200) a->finals++;
    return 0;
}

/* The responses in out; false when they are not well-formed HTTP. */
static bool parse_answers(const char *out, size_t len, answers_t *a)
{
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = ans_message_begin;
    s.on_header_field = ans_header_field;
    s.on_headers_complete = ans_headers_complete;
    s.on_message_complete = ans_message_complete;
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &s);
    p.data = a;
    return len == 0 || llhttp_execute(&p, out, len) == HPE_OK;
}

/* --- the worker ----------------------------------------------------------- */

static const char config_json[] =
    "{\"limits\":{\"request_line_bytes\":1024,\"header_bytes\":4096,\"header_count\":20,"
    "\"body_bytes\":8192},"
    "\"upstream\":{\"port\":1,\"connect_timeout_ms\":50,\"response_timeout_ms\":50},"
    "\"middleware\":[{\"name\":\"server_headers\"},{\"name\":\"request_id\"},"
    "{\"name\":\"metrics\"},{\"name\":\"access_log\",\"path\":\"/dev/null\"}]}";

static hp_worker_t workers[HP_MODES];

static void open_workers(void)
{
    hp_alloc_install();
    for (int mode = 0; mode < HP_MODES; mode++) {
        char err[256];
        hp_config_overrides_t ov = HP_CONFIG_NO_OVERRIDES;
        ov.mode = mode;
        hp_config_t *cfg = NULL;
        if (hp_config_parse(&hp_app, config_json, sizeof(config_json) - 1, "fuzz", &ov, &cfg, err,
                            sizeof(err)) ||
            hp_worker_init(&workers[mode], &hp_app, 0, cfg, 0, err, sizeof(err)) ||
            hp_worker_open(&workers[mode], false, err, sizeof(err))) {
            fprintf(stderr, "fuzz: cannot set up: %s\n", err);
            abort();
        }
        hp_config_unref(cfg);
    }
}

/* Drain both workers at exit so LeakSanitizer sees only real leaks. */
static void close_workers(void)
{
    for (int mode = 0; mode < HP_MODES; mode++) {
        hp_alloc_bind_thread(&workers[mode].host.alloc);
        hp_runtime_bind_thread(&workers[mode].host.runtime);
        hp_alloc_scope_set(&workers[mode].host.metrics.conn_alloc);
        hp_worker_stop_now(&workers[mode]);
        hp_worker_run(&workers[mode]);
        hp_worker_close(&workers[mode]);
    }
    hp_alloc_scope_set(NULL);
    hp_vtask_thread_exit();
}

/* Between loop entries the thread charges its worker's default account
 * (a worker thread sets it once; every entry into a connection sets its
 * own and sets this one back on the way out). */
static hp_alloc_counter_t *default_scope;

static void check_scope(sink_state_t *st)
{
    if (hp_alloc_scope_get() != default_scope) bad(st, "allocation scope left set");
}

/* Run the loop once; then, while the transport backs up, let the peer read
 * until nothing waits (or the connection is gone). */
static void turn(hp_worker_t *w, hp_conn_t *c, sink_state_t *st)
{
    uv_run(&w->loop, UV_RUN_NOWAIT);
    check_scope(st);
    for (int i = 0; i < 100000 && !st->closed && (c->flags & HP_CF_WBLOCK); i++) {
        hp_conn_memory_writable(c);
        check_scope(st);
    }
}

/* A request on the upstream pends until the refused connect comes back:
 * wait for it (100 ms at most), so its answer is in the output. */
static void settle(hp_worker_t *w, hp_conn_t *c, sink_state_t *st)
{
    for (int i = 0; i < 1000 && !st->closed; i++) {
        bool busy = c->state == HP_CONN_BUSY || (c->flags & (HP_CF_READY | HP_CF_WBLOCK));
        if (!busy) break;
        turn(w, c, st);
        if (!st->closed && c->state == HP_CONN_BUSY) usleep(100);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        open_workers();
        atexit(close_workers);
        ready = true;
    }
    if (size < 1) return 0;
    int mode = data[0] & 1;
    size_t nsplit = (data[0] >> 1) & 15;
    int transport = data[0] >> 5;
    data++, size--;
    if (size < nsplit) return 0;
    const uint8_t *cuts = data;
    data += nsplit, size -= nsplit;

    hp_worker_t *w = &workers[mode];
    hp_alloc_bind_thread(&w->host.alloc);
    hp_runtime_bind_thread(&w->host.runtime);
    default_scope = &w->host.metrics.conn_alloc;
    hp_alloc_scope_set(default_scope);
    sink_state_t st = {.transport = transport};
    hp_conn_t *c = hp_conn_new_memory(&w->host, sink, &st);
    size_t at = 0;
    for (size_t i = 0; i <= nsplit && !st.closed; i++) {
        size_t end = i < nsplit ? at + (size - at) * cuts[i] / 256 : size;
        if (end > at) hp_conn_feed(c, (const char *)data + at, end - at);
        check_scope(&st);
        at = end;
        turn(w, c, &st);
    }
    if (!st.closed && transport == T_HALF_CLOSE) {
        hp_conn_eof(c, UV_EOF);
        check_scope(&st);
    }
    if (!st.closed) settle(w, c, &st);
    if (!st.closed && transport == T_SLOW_HALF_CLOSE) {
        hp_conn_eof(c, UV_EOF);
        check_scope(&st);
        settle(w, c, &st);
    }
    if (!st.closed && transport == T_DEADLINES) {
        hp_conn_sweep(&w->host, uv_now(&w->loop) + 3600 * 1000);
        check_scope(&st);
        settle(w, c, &st);
    }
    bool closed_by_server = st.closed;
    bool answered_all = !closed_by_server && (c->state != HP_CONN_BUSY);
    if (!st.closed) hp_conn_close(c);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    check_scope(&st);

    reference_t ref;
    reference(data, size, &ref);
    answers_t a = {.ref = &ref};
    if (!parse_answers(st.out, st.len, &a)) bad(&st, "malformed output");
    bool lossless = transport == T_PLAIN || transport == T_SLOW_READER;
    if (ref.ok && lossless) {
        if (answered_all && a.finals != ref.n) bad(&st, "not one answer per request");
        if (closed_by_server && a.finals > ref.n + 1) bad(&st, "more answers than requests");
        if (closed_by_server && a.finals && !a.last_close) bad(&st, "closed without saying so");
    }
    if (st.bad) {
        fprintf(stderr, "fuzz: %s (mode %d, transport %d, %d requests, %d answers, %s)\n",
                st.bad_what, mode, transport, ref.n, a.finals,
                closed_by_server ? "closed" : "open");
        __builtin_trap();
    }
    free(st.out);
    return 0;
}
