/*
 * client.c - hp_upstream: a pooled HTTP/1.1 client on libuv + llhttp (see
 * client.h for the contract).
 *
 * A request's journey: hp_upstream_request → queue (FIFO) → dispatch → an
 * idle pooled connection (conn_send) or a new one (conn_open → connect_cb →
 * conn_send) → write → read_cb → llhttp → on_message_complete → conn_release
 * (back to the idle list, or closed) → finish → deliver_cb, which completes
 * the task from the loop's idle phase.
 *
 * One request per connection at a time (no pipelining), and HTTP/1.1 has
 * no request ids: a response belongs to a request only by order. So a
 * connection carries a response only for the request it was written for,
 * and closes the moment the upstream sends anything else - bytes while it
 * is idle, bytes after a complete response, bytes already waiting when an
 * idle connection is about to be reused (checked with a non-blocking
 * MSG_PEEK before the request is written: bytes the loop has not read yet
 * would otherwise be parsed as the new request's answer, another client's
 * perhaps). What an upstream sends after our next request is on the wire
 * cannot be told apart from its answer, by us or by any HTTP/1.1 client.
 * Interim (1xx) responses have no body (RFC 9112 6.3), whatever their
 * headers say, and all per-response state is reset at each message's
 * start, so nothing of one response leaks into the next.
 *
 * Every connection has one timer whose meaning follows its state: connect
 * deadline while connecting, response deadline while busy, idle timeout while
 * pooled. Each request also has a deadline for its whole life (client.h);
 * the connection timers are cut to it, and one client timer watches the
 * queue, so a request waiting behind a stalled pool still ends in time.
 * The idle list is LIFO: the most recently used connection serves
 * next, so surplus ones age out, and it is the one the upstream is least
 * likely to have closed.
 *
 * Cancelling names a request by its task. Walking the queue to find it
 * would cost O(queue) per cancel, and cancels come in bursts exactly when
 * the queue is long (clients giving up on a stalled upstream), so every
 * unfinished request is also in a small open-addressing table keyed by its
 * task: one multiply and a probe or two per request, no allocation once
 * the table has grown to the worker's concurrency.
 *
 * Completion is deferred to a uv_idle handle rather than run inside read_cb:
 * a continuation may then issue requests or close the client without finding
 * the parser, the pool or the dispatch loop half-way through a change. The
 * cost is one loop turn before the continuation runs (no allocation); the
 * rejected alternative, completing at the tail of every callback, made every
 * path that fails a task a re-entrancy hazard.
 *
 * The keep-alive race: an upstream may close an idle connection just as we
 * send on it. A request that dies on a reused connection before any response
 * byte arrived is resent once on a fresh connection, if its method is
 * idempotent (RFC 9110 9.2.2, as browsers and .NET's SocketsHttpHandler do).
 *
 * Memory: the read buffer is one per client (the loop's thread consumes each
 * read before the next), the request head is built into the request's own
 * allocation, and Content-Length bodies are read straight into the hp_buf the
 * task returns. A request on a warm pool costs three allocations (request,
 * task, buffer; measured in tests/test_upstream.c); chunked and read-to-EOF
 * bodies collect in a per-connection scratch buffer first and are copied.
 */
#include "upstream/client.h"

#include "runtime/alloc.h"
#include "runtime/buf.h"
#include "runtime/counter.h"
#include "runtime/list.h"
#include "runtime/options.h"
#include "runtime/errors.h"

#include <errno.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* --- options: the only home of their defaults ---------------------------- */

static int host_check(const void *values, char *err, size_t errlen);

#define OPT(k, f, lo, hi, d, w) HP_OPTION_INT(hp_upstream_opts_t, k, f, lo, hi, d, w)
static const hp_option_t options[] = {
    HP_OPTION_STRPTR(hp_upstream_opts_t, "host", host, 64, "127.0.0.1", "the stub from `make run`"),
    OPT("port", port, 1, 65535, 8081, "the stub from `make run`"),
    OPT("pool_size", pool_size, 1, 4096, 64,
        "64 keep-alive connections per worker (nginx: keepalive 32..64 is usual)"),
    OPT("connect_timeout_ms", connect_timeout_ms, 1, 600000, 1000,
        "1 s: a loopback connect takes microseconds; a second means the upstream is down"),
    OPT("response_timeout_ms", response_timeout_ms, 1, 600000, 5000,
        "5 s (nginx's proxy_read_timeout is 60 s; a benchmark wants failures fast)"),
    OPT("idle_timeout_ms", idle_timeout_ms, 1, 3600000, 60000,
        "60 s, as nginx's upstream keepalive_timeout"),
    OPT("max_response_bytes", max_response_bytes, 1024, INT64_C(1) << 32, 8388608,
        "8 MiB: responses are buffered, and cached"),
};
#undef OPT

const hp_options_t hp_upstream_options = {
    .section = "upstream",
    .options = options,
    .n = sizeof(options) / sizeof(options[0]),
    .size = sizeof(hp_upstream_opts_t),
    .check = host_check,
};

static int host_check(const void *values, char *err, size_t errlen)
{
    const hp_upstream_opts_t *o = values;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(o->host, 0, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(o->host, 0, (struct sockaddr_in6 *)&ss) == 0)
        return 0;
    snprintf(err, errlen, "upstream.host: expected a numeric IPv4 or IPv6 address");
    return HP_ECONFIG;
}

#define READ_BUF_SIZE 65536 /* libuv's own suggestion for a read */
#define CTYPE_MAX     256   /* longer Content-Type values are refused, not cut */
#define SCRATCH_KEEP  16384 /* a scratch buffer larger than this is freed after use */
#define TAIL_MAX      128   /* " HTTP/1.1\r\nHost: [v6]:port\r\nConnection: ...\r\n\r\n" */
#define INDEX_MIN     64    /* the task index's first size: a pool's worth of requests */

#define ROW(name, kind, help) HP_STAT_ROW(hp_upstream_stats_t, name, kind, help)
static const hp_stat_t stat_rows[] = {HP_UPSTREAM_STATS(ROW)};
#undef ROW
static const hp_stat_group_t stat_groups[] = {{"errors", "kind"}, {"pool", NULL}};

const hp_stats_table_t hp_upstream_stats_table = {
    .name = "upstream",
    .size = sizeof(hp_upstream_stats_t),
    .rows = stat_rows,
    .nrows = sizeof(stat_rows) / sizeof(stat_rows[0]),
    .groups = stat_groups,
    .ngroups = sizeof(stat_groups) / sizeof(stat_groups[0]),
};

const uint64_t hp_upstream_latency_bounds_us[HP_UPSTREAM_LATENCY_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 250000, 1000000, UINT64_MAX,
};

enum { C_NEW, C_CONNECTING, C_BUSY, C_IDLE, C_CLOSING };

typedef struct conn conn_t;

typedef struct req {
    hp_link_t link;      /* in u->queue while waiting, u->done once finished */
    hp_task_t *task;     /* one owned reference, dropped in deliver */
    conn_t *conn;        /* the connection serving it (connecting or busy), or NULL */
    uint64_t t0;         /* uv_hrtime() at hp_upstream_request */
    uint64_t deadline;   /* uv_now() by which it ends, whatever it is waiting for */
    unsigned connect_ms; /* options fixed when the request started */
    unsigned response_ms;
    size_t max_bytes;
    int err;         /* the outcome, once finished: 0 or a fault */
    const char *msg; /* static; the fault's message */
    hp_buf_t *buf;   /* owned; the response when err == 0 */
    bool head;       /* HEAD: the response has no body whatever it says */
    bool idempotent; /* safe to resend */
    bool retried;    /* resent once already: no second time */
    /* The allocation scope of the code that made the request (alloc.h):
     * reading its response and running its continuations are charged
     * there too, so a server route's allocation count includes them. */
    hp_alloc_counter_t *scope;
    size_t len;  /* bytes of the request head in text[] */
    char text[]; /* "METHOD PATH HTTP/1.1\r\nHost: ...\r\n\r\n" */
} req_t;

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect, response or idle deadline, by state */
    uv_connect_t connect;
    uv_write_t write; /* one request in flight per connection */
    llhttp_t parser;
    hp_upstream_t *u;
    hp_link_t link;      /* in u->conns until closed */
    hp_link_t idle;      /* in u->idle while C_IDLE */
    req_t *req;          /* the request being served; NULL when idle */
    uint64_t generation; /* u->generation (the address) it connected to */
    uint8_t state;       /* C_* */
    uint8_t handles;     /* handles not yet closed; the conn is freed at 0 */
    bool writing;        /* uv_write issued, its callback not yet run */
    bool reused;         /* req came to this connection from the idle list */
    bool got_bytes;      /* a response byte arrived for req */
    bool complete;       /* the final response was parsed */
    bool keep_alive;     /* ...and the upstream allows another on this socket */
    bool in_ctype;       /* the header value being parsed is Content-Type's */
    int perr;            /* a fault a parser callback found, or 0 */
    const char *pmsg;    /* its static message */
    uint16_t status;
    uint8_t field_len; /* header name bytes in field[]; sizeof + 1: too long */
    char field[12];    /* strlen("content-type") */
    uint16_t ctype_len;
    char ctype[CTYPE_MAX];
    hp_buf_t *buf;   /* owned: the Content-Length body is read into it */
    size_t body_len; /* bytes of buf->body filled */
    char *scratch;   /* chunked or read-to-EOF body */
    size_t scratch_len, scratch_cap;
};

struct hp_upstream {
    uv_loop_t *loop;
    uv_idle_t deliver;       /* runs continuations; its close ends hp_upstream_close */
    hp_upstream_opts_t opts; /* opts.host points at host[] */
    char host[INET6_ADDRSTRLEN];
    struct sockaddr_storage addr;
    uint64_t generation; /* bumped when the address changes */
    char tail[TAIL_MAX]; /* what follows the request target */
    size_t tail_len;
    hp_link_t conns;   /* every connection not closing */
    hp_link_t idle;    /* pooled connections, most recently used first */
    hp_link_t queue;   /* requests waiting for a connection, FIFO */
    hp_link_t done;    /* finished requests waiting for deliver_cb */
    uv_timer_t qtimer; /* the earliest deadline in the queue, roughly (qtimer_cb) */
    uint64_t qdue;     /* uv_now() qtimer is set for; 0: not set */
    req_t **index;     /* unfinished requests by task (index_*); NULL slots free */
    size_t index_mask; /* slots - 1, a power of two */
    unsigned index_shift, nindexed;
    unsigned nbusy, nidle, nqueued;
    unsigned nconns;  /* connections not yet freed, closing ones included */
    bool dispatching; /* dispatch is on the stack: a nested call returns */
    bool closing;
    bool deliver_closed, qtimer_closed;
    hp_cont_cb close_cb;
    void *close_arg;
    hp_upstream_stats_t stats;
    char rbuf[READ_BUF_SIZE]; /* shared by every connection's reads */
};

static void dispatch(hp_upstream_t *u);
static void conn_send(conn_t *c, req_t *r, bool reused);
static void timer_cb(uv_timer_t *t);

/* --- options ------------------------------------------------------------ */

static int opts_check(const hp_upstream_opts_t *in, hp_upstream_opts_t *o,
                      struct sockaddr_storage *addr)
{
    if (in == NULL || in->host == NULL || in->port < 1 || in->port > 65535) return HP_ECONFIG;
    if (strlen(in->host) >= INET6_ADDRSTRLEN) return HP_ECONFIG;
    memset(addr, 0, sizeof(*addr));
    if (uv_ip4_addr(in->host, in->port, (struct sockaddr_in *)addr) != 0 &&
        uv_ip6_addr(in->host, in->port, (struct sockaddr_in6 *)addr) != 0)
        return HP_ECONFIG;
    *o = *in;
    hp_options_fill_zeros(&hp_upstream_options, o);
    return 0;
}

static void opts_apply(hp_upstream_t *u, const hp_upstream_opts_t *o,
                       const struct sockaddr_storage *addr)
{
    snprintf(u->host, sizeof(u->host), "%s", o->host);
    u->opts = *o;
    u->opts.host = u->host;
    u->addr = *addr;
    bool v6 = addr->ss_family == AF_INET6;
    int n = snprintf(u->tail, sizeof(u->tail),
                     " HTTP/1.1\r\nHost: %s%s%s:%d\r\nConnection: keep-alive\r\n\r\n",
                     v6 ? "[" : "", u->host, v6 ? "]" : "", o->port);
    u->tail_len = (size_t)n; /* fits: INET6_ADDRSTRLEN + 55 < TAIL_MAX */
}

/* --- statistics ---------------------------------------------------------- */

static void publish_pool(hp_upstream_t *u)
{
    hp_counter_set(&u->stats.pool_busy, u->nbusy);
    hp_counter_set(&u->stats.pool_idle, u->nidle);
    hp_counter_set(&u->stats.pool_open, u->nbusy + u->nidle);
}

static void publish_queue(hp_upstream_t *u)
{
    hp_counter_set(&u->stats.pool_queued, u->nqueued);
    if (u->nqueued > hp_counter_get(&u->stats.pool_queued_max))
        hp_counter_set(&u->stats.pool_queued_max, u->nqueued);
}

static void count_outcome(hp_upstream_t *u, const req_t *r)
{
    hp_upstream_stats_t *s = &u->stats;
    uint64_t *c;
    switch (r->err) {
    case 0: c = &s->responses; break;
    case HP_EUPSTREAM_CONNECT: c = &s->errors_connect; break;
    case HP_EUPSTREAM_TIMEOUT: c = &s->errors_timeout; break;
    case HP_EUPSTREAM_PROTOCOL: c = &s->errors_protocol; break;
    case HP_EUPSTREAM_RESET: c = &s->errors_reset; break;
    case HP_EUPSTREAM_TOO_BIG: c = &s->errors_too_big; break;
    /* No latency for these two: they are not the upstream's doing. */
    case UV_ECANCELED: hp_counter_add(&s->cancelled, 1); return;
    default: hp_counter_add(&s->errors_shutdown, 1); return;
    }
    hp_counter_add(c, 1);
    uint64_t us = (uv_hrtime() - r->t0) / 1000;
    hp_counter_add(&s->latency_us_sum, us);
    int i = 0;
    while (us > hp_upstream_latency_bounds_us[i])
        i++;
    hp_counter_add(&s->latency_hist[i], 1);
}

/* --- the index: task -> unfinished request ------------------------------ */

/* Fibonacci hashing: the multiply spreads the pointer's bits, the top ones
 * pick the slot. */
static size_t index_home(const hp_upstream_t *u, const hp_task_t *t)
{
    return (size_t)(((uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull) >> u->index_shift);
}

static void index_resize(hp_upstream_t *u, size_t slots)
{
    req_t **old = u->index;
    size_t old_slots = old ? u->index_mask + 1 : 0;
    u->index = hp_calloc(slots, sizeof(*u->index));
    u->index_mask = slots - 1;
    u->index_shift = 64 - (unsigned)__builtin_ctzll(slots);
    for (size_t i = 0; i < old_slots; i++) {
        if (old[i] == NULL) continue;
        size_t j = index_home(u, old[i]->task);
        while (u->index[j])
            j = (j + 1) & u->index_mask;
        u->index[j] = old[i];
    }
    hp_free(old);
}

static void index_add(hp_upstream_t *u, req_t *r)
{
    if (2 * (u->nindexed + 1) > u->index_mask + 1) index_resize(u, 2 * (u->index_mask + 1));
    size_t i = index_home(u, r->task);
    while (u->index[i])
        i = (i + 1) & u->index_mask;
    u->index[i] = r;
    u->nindexed++;
}

/* The slot holding t's request, or -1. Load <= 1/2: the probe ends soon. */
static ptrdiff_t index_find(const hp_upstream_t *u, const hp_task_t *t)
{
    for (size_t i = index_home(u, t); u->index[i]; i = (i + 1) & u->index_mask)
        if (u->index[i]->task == t) return (ptrdiff_t)i;
    return -1;
}

/* Backward-shift deletion (Knuth 6.4, algorithm R): entries after the hole
 * that may live there move up, so no tombstone is ever needed. */
static void index_del(hp_upstream_t *u, const req_t *r)
{
    ptrdiff_t at = index_find(u, r->task);
    if (at < 0) return;
    size_t hole = (size_t)at, j = hole;
    for (;;) {
        j = (j + 1) & u->index_mask;
        if (u->index[j] == NULL) break;
        size_t home = index_home(u, u->index[j]->task);
        /* Leave it when its home lies cyclically in (hole, j]. */
        bool stays = hole < j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        u->index[hole] = u->index[j];
        hole = j;
    }
    u->index[hole] = NULL;
    u->nindexed--;
}

/* --- finishing a request ------------------------------------------------- */

static void deliver(req_t *r)
{
    hp_task_t *t = r->task;
    int err = r->err;
    const char *msg = r->msg;
    hp_buf_t *b = r->buf;
    hp_alloc_counter_t *prev = hp_alloc_scope_set(r->scope);
    hp_free(r);
    if (err)
        hp_task_fail(t, err, msg);
    else
        hp_task_complete(t, hp_value_ptr(b));
    hp_task_unref(t);
    hp_alloc_scope_set(prev);
}

/* Runs the continuations of finished requests, in the order they finished.
 * A continuation may finish more (a request that fails at once) or close the
 * client, which empties the list itself. */
static void drain(hp_upstream_t *u)
{
    while (!hp_link_empty(&u->done)) {
        req_t *r = hp_container_of(u->done.next, req_t, link);
        hp_link_remove(&r->link);
        deliver(r);
    }
}

static void deliver_cb(uv_idle_t *h)
{
    hp_upstream_t *u = h->data;
    uv_idle_stop(h);
    drain(u);
}

/* Record r's outcome (takes b) and schedule its continuations. r is in no
 * list and no connection refers to it. */
static void finish(hp_upstream_t *u, req_t *r, int err, const char *msg, hp_buf_t *b)
{
    index_del(u, r);
    r->conn = NULL;
    r->err = err;
    r->msg = err ? (msg ? msg : hp_strerror(err)) : NULL;
    r->buf = b;
    count_outcome(u, r);
    hp_link_push_back(&u->done, &r->link);
    if (!u->closing) uv_idle_start(&u->deliver, deliver_cb);
}

/* --- connections --------------------------------------------------------- */

static void set_state(conn_t *c, uint8_t s)
{
    hp_upstream_t *u = c->u;
    if (c->state == C_CONNECTING || c->state == C_BUSY)
        u->nbusy--;
    else if (c->state == C_IDLE)
        u->nidle--;
    if (s == C_CONNECTING || s == C_BUSY)
        u->nbusy++;
    else if (s == C_IDLE)
        u->nidle++;
    c->state = s;
    publish_pool(u);
}

static void maybe_closed(hp_upstream_t *u)
{
    if (!u->closing || u->nconns || !u->deliver_closed || !u->qtimer_closed) return;
    hp_cont_cb cb = u->close_cb;
    void *arg = u->close_arg;
    hp_free(u->index);
    hp_free(u);
    if (cb) cb(arg);
}

static void conn_handle_closed_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles) return;
    hp_upstream_t *u = c->u;
    hp_free(c->scratch);
    hp_free(c);
    u->nconns--;
    maybe_closed(u);
}

/* Close c; it is freed once both handles are. c->req must already be
 * detached. Idempotent. */
static void conn_close(conn_t *c)
{
    if (c->state == C_CLOSING) return;
    if (c->state == C_IDLE) hp_link_remove(&c->idle);
    hp_link_remove(&c->link);
    set_state(c, C_CLOSING);
    hp_counter_add(&c->u->stats.pool_connections_closed, 1);
    hp_buf_unref(c->buf);
    c->buf = NULL;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
}

static void queue_watch(hp_upstream_t *u, uint64_t deadline);

/* The connection broke while serving its request: close it, then resend
 * the request once when may_retry (a reused connection that died before any
 * response byte: the keep-alive race), else fail it with err. A resent
 * request keeps its deadline. */
static void conn_fail(conn_t *c, int err, const char *msg, bool may_retry)
{
    hp_upstream_t *u = c->u;
    req_t *r = c->req;
    c->req = NULL;
    conn_close(c);
    if (r) {
        if (may_retry && r->idempotent && !r->retried) {
            r->retried = true;
            r->conn = NULL;
            hp_counter_add(&u->stats.retries, 1);
            hp_link_push_front(&u->queue, &r->link);
            u->nqueued++;
            publish_queue(u);
            queue_watch(u, r->deadline);
        } else {
            finish(u, r, err, msg, NULL);
        }
    }
    dispatch(u);
}

static const char *connect_msg(int status)
{
    switch (status) {
    case UV_ECONNREFUSED: return "upstream refused the connection";
    case UV_ENETUNREACH:
    case UV_EHOSTUNREACH: return "upstream address unreachable";
    case UV_ETIMEDOUT: return "upstream connect timed out (kernel)";
    case UV_EMFILE:
    case UV_ENFILE: return "upstream connect failed: out of file descriptors";
    default: return "upstream connect failed";
    }
}

/* Put c, connected and serving nothing, on the idle list. */
static void conn_pool(conn_t *c)
{
    set_state(c, C_IDLE);
    hp_link_push_front(&c->u->idle, &c->idle);
    uv_timer_start(&c->timer, timer_cb, c->u->opts.idle_timeout_ms, 0);
}

/* The final response is parsed: hand it over and pool the connection, or
 * close it when the upstream or our own state says so. clean: no bytes
 * followed the response. */
static void conn_release(conn_t *c, bool clean)
{
    hp_upstream_t *u = c->u;
    req_t *r = c->req;
    c->req = NULL;
    hp_buf_t *b = c->buf;
    c->buf = NULL;
    if (b == NULL) {
        b = hp_buf_new(c->status, c->ctype, c->ctype_len, c->scratch_len);
        if (c->scratch_len) memcpy(b->body, c->scratch, c->scratch_len);
    }
    c->scratch_len = 0;
    if (c->scratch_cap > SCRATCH_KEEP) {
        hp_free(c->scratch);
        c->scratch = NULL;
        c->scratch_cap = 0;
    }
    /* A response before our write's callback means the upstream answered
     * before reading the request; the socket is not in a state to reuse. */
    if (!clean) hp_counter_add(&u->stats.unsolicited, 1);
    bool keep = clean && c->keep_alive && !c->writing && c->generation == u->generation &&
                u->nbusy + u->nidle <= u->opts.pool_size;
    if (keep) {
        conn_pool(c);
    } else {
        conn_close(c);
    }
    finish(u, r, 0, NULL, b);
    dispatch(u);
}

/* The time a phase may take: its own timeout, cut to what is left of r's
 * deadline. */
static uint64_t phase_ms(const hp_upstream_t *u, const req_t *r, unsigned timeout_ms)
{
    uint64_t now = uv_now(u->loop);
    uint64_t left = r->deadline > now ? r->deadline - now : 0;
    return left < timeout_ms ? left : timeout_ms;
}

static void timer_cb(uv_timer_t *t)
{
    conn_t *c = t->data;
    hp_upstream_t *u = c->u;
    bool late = c->req && uv_now(u->loop) >= c->req->deadline;
    switch (c->state) {
    case C_CONNECTING:
        conn_fail(c, HP_EUPSTREAM_TIMEOUT,
                  late ? "upstream request deadline passed while connecting"
                       : "upstream connect timed out",
                  false);
        break;
    case C_BUSY:
        conn_fail(c, HP_EUPSTREAM_TIMEOUT,
                  late ? "upstream request deadline passed while waiting for the response"
                       : "upstream response timed out",
                  false);
        break;
    case C_IDLE: conn_close(c); break;
    default: break;
    }
}

/* --- the queue's deadlines ------------------------------------------------- */

/* Fail every queued request whose deadline has passed, then watch the
 * earliest one left. The timer is not moved when requests leave the queue:
 * firing early for one that has gone costs a scan and a re-arm, while
 * keeping it exact would cost a heap. FIFO order keeps deadlines mostly
 * ascending; a reload that shortens a timeout is why this scans the whole
 * queue rather than stopping at the first live one. */
static void qtimer_cb(uv_timer_t *t)
{
    hp_upstream_t *u = t->data;
    u->qdue = 0;
    uint64_t now = uv_now(u->loop), next = 0;
    hp_link_t *l = u->queue.next;
    while (l != &u->queue) {
        req_t *r = hp_container_of(l, req_t, link);
        l = l->next;
        if (r->deadline > now) {
            if (next == 0 || r->deadline < next) next = r->deadline;
            continue;
        }
        hp_link_remove(&r->link);
        u->nqueued--;
        hp_counter_add(&u->stats.queue_timeouts, 1);
        finish(u, r, HP_EUPSTREAM_TIMEOUT, "upstream request timed out waiting for a connection",
               NULL);
    }
    publish_queue(u);
    if (next) queue_watch(u, next);
}

/* A request with this deadline is queued: make sure the timer fires by
 * then. */
static void queue_watch(hp_upstream_t *u, uint64_t deadline)
{
    if (u->qdue && u->qdue <= deadline) return;
    uint64_t now = uv_now(u->loop);
    u->qdue = deadline;
    uv_timer_start(&u->qtimer, qtimer_cb, deadline > now ? deadline - now : 0, 0);
}

/* --- the response parser -------------------------------------------------- */

/* What one response builds up, back to nothing. */
static void response_reset(conn_t *c)
{
    c->status = 0;
    c->field_len = 0;
    c->in_ctype = false;
    c->ctype_len = 0;
    c->scratch_len = 0;
    c->body_len = 0;
    hp_buf_unref(c->buf);
    c->buf = NULL;
}

/* Every message starts from nothing: an interim response's status, content
 * type or body never reaches the final one. */
static int on_message_begin(llhttp_t *p)
{
    response_reset(p->data);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (c->field_len + n <= sizeof(c->field)) {
        memcpy(c->field + c->field_len, at, n);
        c->field_len += (uint8_t)n;
    } else {
        c->field_len = sizeof(c->field) + 1;
    }
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    c->in_ctype = c->field_len == sizeof(c->field) &&
                  strncasecmp(c->field, "content-type", sizeof(c->field)) == 0;
    if (c->in_ctype) c->ctype_len = 0; /* a repeated Content-Type: the last one wins */
    c->field_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (!c->in_ctype) return 0;
    if (c->ctype_len + n > sizeof(c->ctype)) {
        c->perr = HP_EUPSTREAM_PROTOCOL;
        c->pmsg = "upstream Content-Type is too long";
        return HPE_USER;
    }
    memcpy(c->ctype + c->ctype_len, at, n);
    c->ctype_len += (uint16_t)n;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    req_t *r = c->req;
    c->in_ctype = false;
    c->status = (uint16_t)llhttp_get_status_code(p);
    /* RFC 9112 6.3: a 1xx, like any answer to HEAD, ends at its empty line
     * whatever Content-Length or Transfer-Encoding say. llhttp knows that
     * for 100-103 only; 1 tells it for the rest. Bytes such a "body" was
     * meant to carry are then parsed as the next response: they fail as
     * one, and the request with them. (101 is an upgrade we never asked
     * for: llhttp stops there and the request fails too.) */
    if (c->status < 200 || r->head) return 1;
    bool sized = (p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED);
    if (!sized || c->status == 204 || c->status == 304) return 0;
    if (p->content_length > r->max_bytes) {
        c->perr = HP_EUPSTREAM_TOO_BIG;
        c->pmsg = "upstream Content-Length exceeds the limit";
        return -1;
    }
    c->buf = hp_buf_new(c->status, c->ctype, c->ctype_len, (size_t)p->content_length);
    c->body_len = 0;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    conn_t *c = p->data;
    if (c->buf) { /* llhttp never passes more than Content-Length */
        memcpy(c->buf->body + c->body_len, at, n);
        c->body_len += n;
        return 0;
    }
    size_t need = c->scratch_len + n;
    if (need > c->req->max_bytes) {
        c->perr = HP_EUPSTREAM_TOO_BIG;
        c->pmsg = "upstream response body exceeds the limit";
        return HPE_USER;
    }
    if (need > c->scratch_cap) {
        size_t cap = c->scratch_cap ? 2 * c->scratch_cap : 1024;
        while (cap < need)
            cap *= 2;
        c->scratch = hp_realloc(c->scratch, cap);
        c->scratch_cap = cap;
    }
    memcpy(c->scratch + c->scratch_len, at, n);
    c->scratch_len = need;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    if (c->status < 200) return 0; /* 100 Continue and friends: the real answer follows */
    c->complete = true;
    c->keep_alive = llhttp_should_keep_alive(p);
    return HPE_PAUSED; /* stop here: anything after it is not ours to parse */
}

static const llhttp_settings_t parser_settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static const char *protocol_msg(const llhttp_t *p, llhttp_errno_t e)
{
    if (e == HPE_PAUSED_UPGRADE) return "upstream switched protocols";
    /* llhttp's reasons are string literals in its generated parser. */
    const char *reason = llhttp_get_error_reason(p);
    return reason ? reason : "upstream sent a malformed response";
}

/* --- reading and writing ---------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    *buf = uv_buf_init(c->u->rbuf, sizeof(c->u->rbuf));
}

/* EOF or a read error while serving a request. A response that runs to EOF
 * ends here legitimately. */
static void read_end(conn_t *c, ssize_t nread)
{
    if (nread == UV_EOF && c->got_bytes && llhttp_message_needs_eof(&c->parser)) {
        llhttp_finish(&c->parser);
        if (c->complete) {
            conn_release(c, true); /* not kept: a response that ends at EOF says close */
            return;
        }
    }
    const char *msg = !c->got_bytes     ? "upstream closed the connection before responding"
                      : nread == UV_EOF ? "upstream closed the connection mid-response"
                                        : "upstream reset the connection mid-response";
    conn_fail(c, HP_EUPSTREAM_RESET, msg, c->reused && !c->got_bytes);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (nread == 0) return;
    if (c->state == C_IDLE) {
        /* EOF, an error or bytes nobody asked for: the upstream is done with
         * this connection, and we are too. */
        if (nread > 0) hp_counter_add(&c->u->stats.unsolicited, 1);
        conn_close(c);
        return;
    }
    if (c->state != C_BUSY) return;
    if (nread < 0) {
        read_end(c, nread);
        return;
    }
    c->got_bytes = true;
    hp_alloc_counter_t *prev = hp_alloc_scope_set(c->req->scope);
    llhttp_errno_t e = llhttp_execute(&c->parser, buf->base, (size_t)nread);
    if (e == HPE_PAUSED && c->complete) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - buf->base);
        conn_release(c, used == (size_t)nread);
    } else if (e != HPE_OK) {
        int err = c->perr ? c->perr : HP_EUPSTREAM_PROTOCOL;
        conn_fail(c, err, c->pmsg ? c->pmsg : protocol_msg(&c->parser, e), false);
    }
    hp_alloc_scope_set(prev);
}

static void write_cb(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    c->writing = false;
    if (status == 0 || status == UV_ECANCELED || c->state != C_BUSY) return;
    conn_fail(c, HP_EUPSTREAM_RESET, "upstream connection failed while sending the request",
              c->reused && !c->got_bytes);
}

static void connect_cb(uv_connect_t *creq, int status)
{
    conn_t *c = creq->data;
    if (status == UV_ECANCELED || c->state != C_CONNECTING) return;
    if (status == 0) status = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (status < 0) {
        conn_fail(c, HP_EUPSTREAM_CONNECT, connect_msg(status), false);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    req_t *r = c->req;
    c->req = NULL;
    if (r) {
        conn_send(c, r, false);
        return;
    }
    /* Its request was cancelled while it connected: it serves the queue,
     * unless a reload has moved the upstream meanwhile. */
    if (c->generation == c->u->generation)
        conn_pool(c);
    else
        conn_close(c);
    dispatch(c->u);
}

/* Send r on c, fresh from connect_cb or taken from the idle list. */
static void conn_send(conn_t *c, req_t *r, bool reused)
{
    if (c->state == C_IDLE) hp_link_remove(&c->idle);
    set_state(c, C_BUSY);
    c->req = r;
    r->conn = c;
    c->reused = reused;
    c->got_bytes = c->complete = c->keep_alive = false;
    c->perr = 0;
    c->pmsg = NULL;
    response_reset(c);
    llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
    c->parser.data = c;
    uv_timer_start(&c->timer, timer_cb, phase_ms(c->u, r, r->response_ms), 0);
    uv_buf_t b = uv_buf_init(r->text, (unsigned)r->len);
    int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
    if (rc < 0) {
        conn_fail(c, HP_EUPSTREAM_RESET, "upstream connection failed while sending the request",
                  reused);
        return;
    }
    c->writing = true;
}

/* Open a new connection for r. A connect that fails at once fails r. */
static void conn_open(hp_upstream_t *u, req_t *r)
{
    conn_t *c = hp_calloc(1, sizeof(*c));
    c->u = u;
    c->generation = u->generation;
    hp_link_init(&c->idle);
    hp_link_push_back(&u->conns, &c->link);
    /* Neither can fail: AF_UNSPEC creates no socket yet. */
    HP_MUST(uv_tcp_init(u->loop, &c->tcp));
    HP_MUST(uv_timer_init(u->loop, &c->timer));
    c->handles = 2;
    u->nconns++;
    c->tcp.data = c->timer.data = c->connect.data = c->write.data = c;
    set_state(c, C_CONNECTING);
    hp_counter_add(&u->stats.pool_connections_opened, 1);
    c->req = r;
    r->conn = c;
    uv_timer_start(&c->timer, timer_cb, phase_ms(u, r, r->connect_ms), 0);
    int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&u->addr, connect_cb);
    if (rc < 0) conn_fail(c, HP_EUPSTREAM_CONNECT, connect_msg(rc), false);
}

/* True when nothing waits to be read on idle connection c: neither bytes
 * the upstream sent unasked nor its close, which the loop may not have
 * delivered yet (they reach read_cb only at the next poll, and by then the
 * next request would own them). One recv(MSG_PEEK | MSG_DONTWAIT) per reuse,
 * as curl's and .NET's "is this pooled connection still good" checks do. */
static bool conn_quiet(conn_t *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) return false;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) hp_counter_add(&c->u->stats.unsolicited, 1);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Hand queued requests to idle connections, or to new ones while the pool
 * has room. A resent request wants a fresh connection: when every slot is
 * taken it gets the least recently used idle one's. A connect that fails at
 * once calls back in here; the outer loop picks up whatever that changed, so
 * the nested call returns rather than recurse once per queued request. */
static void dispatch(hp_upstream_t *u)
{
    if (u->dispatching) return;
    u->dispatching = true;
    while (!u->closing && !hp_link_empty(&u->queue)) {
        req_t *r = hp_container_of(u->queue.next, req_t, link);
        conn_t *c = NULL;
        if (!r->retried && !hp_link_empty(&u->idle)) {
            c = hp_container_of(u->idle.next, conn_t, idle);
            if (!conn_quiet(c)) {
                conn_close(c);
                continue;
            }
        }
        if (c == NULL && u->nbusy + u->nidle >= u->opts.pool_size) {
            if (hp_link_empty(&u->idle)) break;
            conn_close(hp_container_of(u->idle.prev, conn_t, idle));
            continue;
        }
        hp_link_remove(&r->link);
        u->nqueued--;
        if (c)
            conn_send(c, r, true);
        else
            conn_open(u, r);
    }
    u->dispatching = false;
    if (hp_link_empty(&u->queue) && u->qdue) {
        uv_timer_stop(&u->qtimer);
        u->qdue = 0;
    }
    publish_queue(u);
}

/* --- the public interface -------------------------------------------------- */

int hp_upstream_new(uv_loop_t *loop, const hp_upstream_opts_t *opts, hp_upstream_t **out)
{
    hp_upstream_opts_t o;
    struct sockaddr_storage addr;
    int rc = opts_check(opts, &o, &addr);
    if (rc < 0) return rc;
    hp_upstream_t *u = hp_calloc(1, sizeof(*u));
    u->loop = loop;
    opts_apply(u, &o, &addr);
    hp_link_init(&u->conns);
    hp_link_init(&u->idle);
    hp_link_init(&u->queue);
    hp_link_init(&u->done);
    HP_MUST(uv_idle_init(loop, &u->deliver));
    u->deliver.data = u;
    HP_MUST(uv_timer_init(loop, &u->qtimer));
    u->qtimer.data = u;
    index_resize(u, INDEX_MIN);
    *out = u;
    return 0;
}

static void deliver_closed_cb(uv_handle_t *h)
{
    hp_upstream_t *u = h->data;
    u->deliver_closed = true;
    maybe_closed(u);
}

static void qtimer_closed_cb(uv_handle_t *h)
{
    hp_upstream_t *u = h->data;
    u->qtimer_closed = true;
    maybe_closed(u);
}

void hp_upstream_close(hp_upstream_t *u, hp_cont_cb done, void *arg)
{
    if (u->closing) return;
    u->closing = true;
    u->close_cb = done;
    u->close_arg = arg;
    hp_link_t shut;
    hp_link_init(&shut);
    while (!hp_link_empty(&u->queue)) {
        hp_link_t *l = u->queue.next;
        hp_link_remove(l);
        hp_link_push_back(&shut, l);
    }
    u->nqueued = 0;
    publish_queue(u);
    while (!hp_link_empty(&u->conns)) {
        conn_t *c = hp_container_of(u->conns.next, conn_t, link);
        if (c->req) hp_link_push_back(&shut, &c->req->link);
        c->req = NULL;
        conn_close(c);
    }
    uv_close((uv_handle_t *)&u->deliver, deliver_closed_cb);
    uv_close((uv_handle_t *)&u->qtimer, qtimer_closed_cb);
    while (!hp_link_empty(&shut)) {
        req_t *r = hp_container_of(shut.next, req_t, link);
        hp_link_remove(&r->link);
        finish(u, r, HP_ESHUTDOWN, NULL, NULL);
    }
    drain(u);
}

int hp_upstream_reconfigure(hp_upstream_t *u, const hp_upstream_opts_t *opts)
{
    if (u->closing) return HP_ESHUTDOWN;
    hp_upstream_opts_t o;
    struct sockaddr_storage addr;
    int rc = opts_check(opts, &o, &addr);
    if (rc < 0) return rc;
    if (o.port != u->opts.port || strcmp(o.host, u->host) != 0) u->generation++;
    opts_apply(u, &o, &addr);
    /* Least recently used first, so a shrunken pool keeps its warmest. */
    hp_link_t *l = u->idle.prev;
    while (l != &u->idle) {
        conn_t *c = hp_container_of(l, conn_t, idle);
        l = l->prev;
        if (c->generation != u->generation || u->nbusy + u->nidle > u->opts.pool_size)
            conn_close(c);
    }
    dispatch(u);
    return 0;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool valid_request(const char *method, size_t mlen, const char *path, size_t plen)
{
    if (mlen == 0 || plen == 0 || path[0] != '/') return false;
    for (size_t i = 0; i < mlen; i++)
        if (!is_tchar((unsigned char)method[i])) return false;
    for (size_t i = 0; i < plen; i++)
        if ((unsigned char)path[i] <= 0x20 || (unsigned char)path[i] >= 0x7f) return false;
    return true;
}

static bool idempotent(const char *m)
{
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") || !strcmp(m, "DELETE") ||
           !strcmp(m, "OPTIONS") || !strcmp(m, "TRACE");
}

hp_task_t *hp_upstream_request(hp_upstream_t *u, const char *method, const char *path,
                               size_t path_len)
{
    return hp_upstream_request_since(u, method, path, path_len, uv_now(u->loop));
}

hp_task_t *hp_upstream_request_since(hp_upstream_t *u, const char *method, const char *path,
                                     size_t path_len, uint64_t since_ms)
{
    hp_counter_add(&u->stats.requests, 1);
    if (u->closing) {
        hp_counter_add(&u->stats.errors_shutdown, 1);
        return hp_task_from_error(HP_ESHUTDOWN, NULL);
    }
    size_t mlen = strlen(method);
    if (!valid_request(method, mlen, path, path_len)) {
        hp_counter_add(&u->stats.errors_invalid, 1);
        return hp_task_from_error(UV_EINVAL, "upstream request method or path is not valid");
    }
    req_t *r = hp_malloc(sizeof(*r) + mlen + 1 + path_len + u->tail_len);
    r->task = hp_task_new();
    hp_task_set_dispose(r->task, hp_buf_dispose);
    r->conn = NULL;
    r->t0 = uv_hrtime();
    r->connect_ms = u->opts.connect_timeout_ms;
    r->response_ms = u->opts.response_timeout_ms;
    r->deadline = since_ms + r->connect_ms + r->response_ms;
    r->max_bytes = u->opts.max_response_bytes;
    r->err = 0;
    r->msg = NULL;
    r->buf = NULL;
    r->head = strcmp(method, "HEAD") == 0;
    r->idempotent = idempotent(method);
    r->retried = false;
    r->scope = hp_alloc_scope_get();
    char *w = r->text;
    memcpy(w, method, mlen);
    w += mlen;
    *w++ = ' ';
    memcpy(w, path, path_len);
    w += path_len;
    memcpy(w, u->tail, u->tail_len);
    r->len = mlen + 1 + path_len + u->tail_len;
    hp_task_t *out = hp_task_ref(r->task);
    index_add(u, r);
    hp_link_push_back(&u->queue, &r->link);
    u->nqueued++;
    dispatch(u);
    /* Still queued: it has no connection and has not failed (r lives until
     * the idle phase delivers it, whatever happened). */
    if (r->conn == NULL && r->err == 0) queue_watch(u, r->deadline);
    return out;
}

int hp_upstream_cancel(hp_upstream_t *u, const hp_task_t *t, bool even_if_sent)
{
    ptrdiff_t at = index_find(u, t);
    if (at < 0) return UV_ENOENT;
    req_t *r = u->index[at];
    conn_t *c = r->conn;
    if (c && c->state == C_BUSY) {
        if (!even_if_sent) return UV_EBUSY;
        /* Sent: the upstream is working on it, and its answer would come on
         * this socket. Closing it frees the pool slot now and tells the
         * upstream; waiting for the answer to throw it away would hold the
         * slot for up to the response timeout, which is what starves the
         * queue behind a stalled upstream. */
        c->req = NULL;
        conn_close(c);
    } else if (c) {
        c->req = NULL; /* connecting: the connection joins the pool when it is up */
    } else {
        hp_link_remove(&r->link);
        u->nqueued--;
        publish_queue(u);
    }
    finish(u, r, UV_ECANCELED, "upstream request cancelled: nobody waits for it", NULL);
    dispatch(u);
    return 0;
}

const hp_upstream_stats_t *hp_upstream_stats(const hp_upstream_t *u)
{
    return &u->stats;
}
