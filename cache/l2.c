/*
 * l2.c - hp_l2: a pipelined Redis client on libuv, with hiredis's reply
 * parser (see l2.h for the contract).
 *
 * A command's journey: hp_l2_get / hp_l2_set → admit (ready? room?) → the
 * FIFO of commands awaiting replies (ring_push) and the output buffer
 * (out_*) → conn_flush → uv_write → Redis → read_cb → redisReaderFeed →
 * redisReaderGetReply, whose object callbacks (create_string, ...) build the
 * reply → on_reply pops the FIFO's head, the command this reply answers
 * (Redis answers in order), and completes its task.
 *
 * A connection's life: conn_open → connect_cb → SELECT db (the handshake:
 * it proves the peer speaks RESP and picks the database) → its +OK makes
 * the connection ready (conn_ready) → ... → conn_drop on any fault, which
 * faults every command in the FIFO and closes the socket → retry_later, a
 * reconnect after backoff_min_ms, doubling per consecutive failure up to
 * backoff_max_ms. Only a ready connection takes commands: anything else is
 * refused at once (a bypass), so callers never queue behind a dead Redis.
 *
 * Timeouts: one timer, whose meaning follows the state as the upstream
 * client's per-connection timer does: the reconnect delay while there is no
 * connection, the connect deadline (connect + SELECT answered) while
 * connecting, and the oldest command's deadline while ready. That last one
 * is armed lazily: a command started on an idle timer arms it; when it
 * fires it re-arms for the FIFO's head if the head is not due yet. Every
 * command of a connection has the same timeout and replies come in order,
 * so the head is always the first due, and the timer is touched once per
 * command_timeout_ms rather than once per reply. A command past its
 * deadline drops the connection: the replies of a pipeline are ordered, so
 * a late one would answer the wrong command.
 *
 * Rejected: hiredis's async API (redisAsyncContext) with its libuv adapter
 * (hiredis/adapters/libuv.h), the usual way to drive hiredis from libuv.
 * The adapter mallocs its state and frees it in a uv_close callback of its
 * own that nobody can wait for, so a close callback here could not promise
 * that every handle is closed. The async context allocates with plain
 * malloc, which hiredis 0.14 offers no hook to replace (hiredisSetAllocators
 * came in 1.0): counted with an interposed malloc against a real Redis, a
 * GET hit of 100 bytes costs it 7 mallocs one at a time and 5.1 in
 * pipelined bursts of 64 with redisAsyncCommandArgv (13 and 11.1 with the
 * printf-style redisAsyncCommand), uncountable by hp_alloc and varying with
 * batching. And 0.14 has no connect or command timeout. What remains of
 * hiredis here is the part worth reusing, the RESP reply parser, with object
 * callbacks of our own: a GET's bulk string is decoded straight into the
 * hp_buf its task returns, and every other reply is a static tag, so parsing
 * allocates nothing else.
 *
 * Allocations (exact, asserted in tests/test_l2.c): a GET hit 2 (the task,
 * the value's hp_buf), a miss 1 (the task), a SET 0. The FIFO (a ring) and
 * the output buffers grow by doubling to the largest burst and are kept,
 * the output buffers up to OUT_KEEP. hiredis's reader keeps one read buffer
 * per connection that libhiredis mallocs itself: it cannot be counted, so
 * its size and changes are published (reader_buf_*); it stays put once it
 * holds the largest reply seen, up to READER_KEEP.
 */
#include "cache/l2.h"

#include "runtime/alloc.h"
#include "runtime/options.h"
#include "runtime/counter.h"
#include "runtime/errors.h"

#include <hiredis/read.h>
#include <hiredis/sds.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URL_MAX       256
#define READ_BUF_SIZE 16384 /* hiredis's own read size (redisBufferRead) */
#define READER_KEEP   65536 /* an empty reader buffer larger than this is released */
#define OUT_KEEP      65536 /* an output buffer larger than this is freed after its write */
#define OUT_MIN       512   /* first output buffer */
#define RING_MIN      16    /* first FIFO */
#define REC_CTYPE_MAX 255   /* content types longer than this are not stored */
#define REC_HEAD_MAX  (5 + 3 + 1 + REC_CTYPE_MAX + 1) /* "HP/1 200 " ctype "\n" */
#define BULK_SLACK    32 /* "$<len>\r\n" and the closing "\r\n" of one reply */
/* Command bytes besides the key and the record: array and bulk headers
 * (lengths up to 20 digits), "GET" / "SET", "PX" and the TTL's digits. */
#define GET_OVERHEAD 64
#define SET_OVERHEAD 128

/* --- options: the only home of their defaults ---------------------------- */

static int conf_cross_check(const void *values, char *err, size_t errlen);

/* The reasons for the defaults:
 * connect: as upstream.connect_timeout_ms; a loopback or LAN connect takes
 *   well under a millisecond, a second means Redis is not there.
 * command: Redis answers a GET in tens of µs; an L2 answer later than the
 *   upstream's own is worth nothing (StackExchange.Redis's 5 s suits a store
 *   of record, not a cache tier).
 * inflight: a worker's burst of concurrent distinct misses; past it Redis is
 *   not keeping up and more queueing only adds latency.
 * max value: as upstream.max_response_bytes; an L2 record is an upstream
 *   response (Redis's own string limit is 512 MiB).
 * backoff: a restarted Redis is back within a few 100 ms steps; the 5 s cap
 *   holds a worker to one attempt per 5 s against a dead one. */
#define OPT(k, f, lo, hi, d, w) HP_OPTION_INT(hp_l2_opts_t, k, f, lo, hi, d, w)
static const hp_option_t options[] = {
    HP_OPTION_STRPTR(hp_l2_opts_t, "url", url, URL_MAX, NULL,
                     "redis://HOST[:PORT][/DB]; no default: L2 runs only when asked"),
    OPT("connect_timeout_ms", connect_timeout_ms, 1, 600000, 1000,
        "1 s: a connect later than that means Redis is not there"),
    OPT("command_timeout_ms", command_timeout_ms, 1, 600000, 250,
        "250 ms: an L2 answer later than the upstream's own is worth nothing"),
    OPT("max_inflight", max_inflight, 1, 65536, 1024,
        "a worker's burst of distinct misses; past it Redis is not keeping up"),
    OPT("max_value_bytes", max_value_bytes, REC_HEAD_MAX, 512u << 20, 8388608,
        "8 MiB, as upstream.max_response_bytes: a record is an upstream answer"),
    OPT("backoff_min_ms", backoff_min_ms, 1, 60000, 100,
        "100 ms: a restarted Redis is back within a few such steps"),
    OPT("backoff_max_ms", backoff_max_ms, 1, 600000, 5000,
        "5 s: one attempt per 5 s against a dead Redis"),
};
#undef OPT

const hp_options_t hp_l2_options = {
    .section = "cache.l2",
    .options = options,
    .n = sizeof(options) / sizeof(options[0]),
    .size = sizeof(hp_l2_opts_t),
    .check = conf_cross_check,
};

enum { K_GET, K_SET, K_SELECT };
enum { C_CONNECTING, C_HANDSHAKE, C_READY, C_CLOSING };

/* Replies other than a GET's value are static tags: parsing allocates
 * nothing for them, and free_object can tell them from an hp_buf. */
enum {
    RP_NIL,
    RP_OK,
    RP_STATUS,
    RP_ERROR,
    RP_INTEGER,
    RP_ARRAY,
    RP_STRING,
    RP_BAD_RECORD,
    RP_TOO_BIG,
    RP_N
};
static char reply_tags[RP_N];
#define TAG(t) ((void *)&reply_tags[t])

static bool is_tag(const void *p)
{
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)reply_tags;
    return a >= lo && a < lo + RP_N;
}

/* A command awaiting its reply. */
typedef struct {
    hp_task_t *task; /* K_GET: one reference, dropped once completed; else NULL */
    /* The allocation scope of the caller (alloc.h): the reply's value and the
     * continuations are charged there too, so a request counts its L2 hit. */
    hp_alloc_counter_t *scope;
    uint64_t t0_ns;       /* uv_hrtime() when sent, for the latency figures */
    uint64_t deadline_ms; /* loop time by which the reply is due */
    uint8_t kind;         /* K_* */
} cmd_t;

typedef struct conn {
    uv_tcp_t tcp; /* the one handle; the conn is freed in its close callback */
    uv_connect_t connect;
    uv_write_t write; /* one write in flight at a time */
    struct hp_l2 *l2;
    redisReader *reader; /* libhiredis's malloc; privdata points back here */
    uint8_t state;       /* C_* */
    bool writing;        /* uv_write issued, its callback not yet run */
    cmd_t *ring;         /* the FIFO of commands awaiting replies */
    uint32_t ring_cap;   /* a power of two, or 0 */
    uint32_t ring_head;
    uint32_t ring_n;
    char *out; /* commands not yet handed to libuv */
    size_t out_len, out_cap;
    char *wbuf; /* the bytes of the write in flight */
    size_t wbuf_len, wbuf_cap;
    char rerr[128]; /* text of the latest error reply ("ERR ..."), for messages */
} conn_t;

/* Checked options, and what they resolve to. */
typedef struct {
    hp_l2_opts_t o; /* o.url points at url[] */
    char url[URL_MAX];
    struct sockaddr_storage addr;
    long db;
} conf_t;

struct hp_l2 {
    uv_loop_t *loop;
    uv_timer_t timer; /* reconnect delay, connect deadline or head's deadline */
    conn_t *conn;     /* the current connection; NULL while waiting to reconnect */
    unsigned nconns;  /* connections not yet freed, closing ones included */
    conf_t conf;
    char select_cmd[48]; /* "SELECT <db>" in RESP, sent first on every connection */
    size_t select_len;
    unsigned backoff_ms; /* the next reconnect delay */
    bool closing;
    bool timer_closed;
    hp_cont_cb close_cb;
    void *close_arg;
    hp_l2_stats_t own;    /* counted here unless hp_l2_count_into said where */
    hp_l2_stats_t *stats; /* &own, or the caller's block */
    char last_error[192];
    char rbuf[READ_BUF_SIZE]; /* every read lands here, then in the reader */
};

static void timer_cb(uv_timer_t *t);
static void conn_open(hp_l2_t *l2);

/* --- options ------------------------------------------------------------ */

/* Digits only, no sign, no leading garbage; *out <= max. */
static bool parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 10) return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

#define URL_FAIL(why) hp_options_fail(err, errlen, "cache.l2.url: %s (got \"%.*s\")", why, 128, url)

/* redis://HOST[:PORT][/DB]. No DNS: a name would need a blocking
 * getaddrinfo on the loop, so HOST is a numeric address or "localhost". */
static int url_parse(const char *url, conf_t *c, char *err, size_t errlen)
{
    if (url == NULL || *url == '\0')
        return hp_options_fail(err, errlen,
                               "cache.l2.url: missing (expected redis://HOST[:PORT][/DB])");
    size_t n = strlen(url);
    if (n >= URL_MAX)
        return hp_options_fail(err, errlen, "cache.l2.url: longer than %d bytes", URL_MAX - 1);
    if (strncasecmp(url, "rediss://", 9) == 0) return URL_FAIL("TLS (rediss://) is not supported");
    if (strncasecmp(url, "redis://", 8) != 0) return URL_FAIL("expected redis://HOST[:PORT][/DB]");
    const char *p = url + 8, *end = url + n;
    if (memchr(p, '@', (size_t)(end - p)))
        return URL_FAIL("credentials (user:password@) are not supported");
    char host[INET6_ADDRSTRLEN];
    bool v6 = *p == '[';
    const char *h = p + v6, *hend;
    if (v6) {
        hend = memchr(h, ']', (size_t)(end - h));
        if (hend == NULL) return URL_FAIL("unterminated [IPv6] address");
        p = hend + 1;
    } else {
        hend = h;
        while (hend < end && *hend != ':' && *hend != '/')
            hend++;
        p = hend;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0) return URL_FAIL("missing host");
    if (hlen >= sizeof(host)) return URL_FAIL("host must be a numeric IPv4 or [IPv6] address");
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (!v6 && strcasecmp(host, "localhost") == 0) snprintf(host, sizeof(host), "127.0.0.1");
    long port = 6379, db = 0;
    if (p < end && *p == ':') {
        const char *q = ++p;
        while (p < end && *p != '/')
            p++;
        if (!parse_uint(q, (size_t)(p - q), 65535, &port) || port == 0)
            return URL_FAIL("port must be 1..65535");
    }
    if (p < end && *p == '/') {
        const char *q = ++p;
        p = end;
        if (p > q && !parse_uint(q, (size_t)(p - q), INT_MAX, &db))
            return URL_FAIL("database must be a number from 0 to 2147483647");
    }
    if (p != end) return URL_FAIL("expected redis://HOST[:PORT][/DB]");
    memset(&c->addr, 0, sizeof(c->addr));
    int rc = v6 ? uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&c->addr)
                : uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&c->addr);
    if (rc != 0)
        return URL_FAIL(v6 ? "not an IPv6 address"
                           : "host must be a numeric IPv4 or [IPv6] address, or localhost "
                             "(no DNS lookups on the event loop)");
    c->db = db;
    memcpy(c->url, url, n + 1);
    return 0;
}

/* What the table's bounds cannot say: the URL's form (when there is one:
 * the configuration's section leaves it out to turn L2 off), the backoff's
 * order. */
static int conf_cross_check(const void *values, char *err, size_t errlen)
{
    const hp_l2_opts_t *o = values;
    conf_t c;
    if (o->url && url_parse(o->url, &c, err, errlen) < 0) return HP_ECONFIG;
    if (o->backoff_max_ms >= o->backoff_min_ms) return 0;
    return hp_options_fail(
        err, errlen,
        "cache.l2.backoff_max_ms: expected %u..600000 ms (at least backoff_min_ms), "
        "got %u",
        o->backoff_min_ms, o->backoff_max_ms);
}

static int conf_check(const hp_l2_opts_t *in, conf_t *c, char *err, size_t errlen)
{
    if (in == NULL) return hp_options_fail(err, errlen, "cache.l2: no options");
    memset(c, 0, sizeof(*c));
    int rc = url_parse(in->url, c, err, errlen);
    if (rc < 0) return rc;
    hp_l2_opts_t *o = &c->o;
    *o = *in;
    o->url = c->url;
    hp_options_fill_zeros(&hp_l2_options, o);
    return hp_options_check(&hp_l2_options, o, err, errlen);
}

static bool conf_equal(const conf_t *a, const conf_t *b)
{
    return memcmp(&a->addr, &b->addr, sizeof(a->addr)) == 0 && a->db == b->db &&
           a->o.connect_timeout_ms == b->o.connect_timeout_ms &&
           a->o.command_timeout_ms == b->o.command_timeout_ms &&
           a->o.max_inflight == b->o.max_inflight && a->o.max_value_bytes == b->o.max_value_bytes &&
           a->o.backoff_min_ms == b->o.backoff_min_ms && a->o.backoff_max_ms == b->o.backoff_max_ms;
}

static void conf_apply(hp_l2_t *l2, const conf_t *c)
{
    l2->conf = *c;
    l2->conf.o.url = l2->conf.url;
    char db[16];
    int dl = snprintf(db, sizeof(db), "%ld", c->db);
    l2->select_len = (size_t)snprintf(l2->select_cmd, sizeof(l2->select_cmd),
                                      "*2\r\n$6\r\nSELECT\r\n$%d\r\n%s\r\n", dl, db);
    l2->backoff_ms = c->o.backoff_min_ms;
}

int hp_l2_opts_check(const hp_l2_opts_t *opts, char *err, size_t errlen)
{
    conf_t c;
    return conf_check(opts, &c, err, errlen);
}

/* --- the stored record ---------------------------------------------------- */

/* "HP/1 <status> <content type>\n" into head (REC_HEAD_MAX bytes); its
 * length, or -1 when v cannot be encoded. */
static int record_head(const hp_buf_t *v, char *head)
{
    if (v->status < 100 || v->status > 999 || v->ctype_len > REC_CTYPE_MAX ||
        memchr(v->ctype, '\n', v->ctype_len))
        return -1;
    int n = snprintf(head, REC_HEAD_MAX, "HP/1 %03u ", (unsigned)v->status);
    memcpy(head + n, v->ctype, v->ctype_len);
    n += v->ctype_len;
    head[n++] = '\n';
    return n;
}

/* The hp_buf a record holds (owned, one allocation), or RP_BAD_RECORD. */
static void *record_decode(const char *s, size_t n)
{
    if (n < 10 || memcmp(s, "HP/1 ", 5) != 0 || s[8] != ' ') return TAG(RP_BAD_RECORD);
    long status;
    if (!parse_uint(s + 5, 3, 999, &status) || status < 100) return TAG(RP_BAD_RECORD);
    const char *ct = s + 9;
    size_t room = n - 9;
    const char *nl = memchr(ct, '\n', room < REC_CTYPE_MAX + 1 ? room : REC_CTYPE_MAX + 1);
    if (nl == NULL) return TAG(RP_BAD_RECORD);
    const char *body = nl + 1;
    size_t len = n - (size_t)(body - s);
    hp_buf_t *b = hp_buf_new((uint16_t)status, ct, (size_t)(nl - ct), len);
    memcpy(b->body, body, len);
    return b;
}

/* --- hiredis's reply objects ---------------------------------------------- */

static const cmd_t *ring_peek(const conn_t *c)
{
    return c->ring_n ? &c->ring[c->ring_head] : NULL;
}

static void *create_string(const redisReadTask *t, char *s, size_t n)
{
    conn_t *c = t->privdata;
    if (t->parent) return TAG(RP_STRING); /* inside an array: no answer of ours */
    if (t->type == REDIS_REPLY_ERROR) {
        snprintf(c->rerr, sizeof(c->rerr), "%.*s", (int)(n < 127 ? n : 127), s);
        return TAG(RP_ERROR);
    }
    if (t->type == REDIS_REPLY_STATUS)
        return n == 2 && s[0] == 'O' && s[1] == 'K' ? TAG(RP_OK) : TAG(RP_STATUS);
    const cmd_t *head = ring_peek(c);
    if (head == NULL || head->kind != K_GET) return TAG(RP_STRING);
    if (n > c->l2->conf.o.max_value_bytes) return TAG(RP_TOO_BIG);
    return record_decode(s, n);
}

static void *create_array(const redisReadTask *t, int elements)
{
    return TAG(RP_ARRAY);
}

static void *create_integer(const redisReadTask *t, long long v)
{
    return TAG(RP_INTEGER);
}

static void *create_nil(const redisReadTask *t)
{
    return TAG(RP_NIL);
}

static void free_object(void *obj)
{
    if (!is_tag(obj)) hp_buf_unref(obj);
}

static redisReplyObjectFunctions reply_fns = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
    .createNil = create_nil,
    .freeObject = free_object,
};

/* --- the FIFO and the output buffer ----------------------------------------- */

static void ring_push(conn_t *c, const cmd_t *e)
{
    if (c->ring_n == c->ring_cap) {
        uint32_t cap = c->ring_cap ? 2 * c->ring_cap : RING_MIN;
        cmd_t *r = hp_malloc(cap * sizeof(*r));
        for (uint32_t i = 0; i < c->ring_n; i++)
            r[i] = c->ring[(c->ring_head + i) & (c->ring_cap - 1)];
        hp_free(c->ring);
        c->ring = r;
        c->ring_cap = cap;
        c->ring_head = 0;
    }
    c->ring[(c->ring_head + c->ring_n) & (c->ring_cap - 1)] = *e;
    c->ring_n++;
}

static bool ring_pop(conn_t *c, cmd_t *e)
{
    if (c->ring_n == 0) return false;
    *e = c->ring[c->ring_head];
    c->ring_head = (c->ring_head + 1) & (c->ring_cap - 1);
    c->ring_n--;
    return true;
}

/* Room for n more bytes at c->out + c->out_len. */
static char *out_reserve(conn_t *c, size_t n)
{
    size_t need = c->out_len + n;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? 2 * c->out_cap : OUT_MIN;
        while (cap < need)
            cap *= 2;
        c->out = hp_realloc(c->out, cap);
        c->out_cap = cap;
    }
    return c->out + c->out_len;
}

static char *put(char *w, const void *p, size_t n)
{
    memcpy(w, p, n);
    return w + n;
}

/* "$<n>\r\n", the head of a bulk string. */
static char *put_len(char *w, size_t n)
{
    char digits[24];
    int i = sizeof(digits);
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    *w++ = '$';
    w = put(w, digits + i, sizeof(digits) - (size_t)i);
    return put(w, "\r\n", 2);
}

static void publish_inflight(hp_l2_t *l2, const conn_t *c)
{
    hp_counter_set(&l2->stats->inflight, c && c->state == C_READY ? c->ring_n : 0);
}

/* --- connections ----------------------------------------------------------- */

static void maybe_closed(hp_l2_t *l2)
{
    if (!l2->closing || !l2->timer_closed || l2->nconns) return;
    /* The gauges say what this client holds: nothing from now on (a block
     * of the caller's outlives it). */
    hp_counter_set(&l2->stats->connected, 0);
    hp_counter_set(&l2->stats->inflight, 0);
    hp_counter_set(&l2->stats->reader_buf_bytes, 0);
    hp_cont_cb cb = l2->close_cb;
    void *arg = l2->close_arg;
    hp_free(l2);
    if (cb) cb(arg);
}

static void conn_closed_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    hp_l2_t *l2 = c->l2;
    redisReaderFree(c->reader);
    hp_free(c->ring);
    hp_free(c->out);
    hp_free(c->wbuf);
    hp_free(c);
    l2->nconns--;
    maybe_closed(l2);
}

static const char *fault_msg(int err)
{
    switch (err) {
    case UV_ETIMEDOUT: return "redis command timed out";
    case UV_ECONNRESET: return "redis connection lost before the reply";
    case UV_EPROTO: return "redis sent a malformed or unexpected reply";
    case UV_E2BIG: return "redis reply exceeds cache.l2.max_value_bytes";
    case UV_EREMOTEIO: return "redis answered with an error";
    case UV_EILSEQ: return "the L2 value is not a hotpath record";
    default: return hp_strerror(err);
    }
}

/* Count a command's fault and fail its task, in the caller's scope. */
static void cmd_fail(hp_l2_t *l2, const cmd_t *e, int err)
{
    if (e->kind == K_SELECT) return; /* the connection's failure, counted by the caller */
    hp_l2_stats_t *s = l2->stats;
    hp_counter_add(err == UV_ETIMEDOUT   ? &s->timeouts
                   : err == HP_ESHUTDOWN ? &s->shutdowns
                                         : &s->errors,
                   1);
    if (e->task == NULL) return;
    hp_alloc_counter_t *prev = hp_alloc_scope_set(e->scope);
    hp_task_fail(e->task, err, fault_msg(err));
    hp_task_unref(e->task);
    hp_alloc_scope_set(prev);
}

/* Detach c and close it, then fault every command it still had: those due
 * by expired_by (loop time; 0: none) with UV_ETIMEDOUT, the head with
 * head_err (0: as the rest), the rest with err. fault: c failed (counted),
 * rather than being closed by close or reconfigure. Continuations run here;
 * they may call anything, and find the client disconnected. */
static void conn_drop(conn_t *c, bool fault, int head_err, int err, uint64_t expired_by)
{
    hp_l2_t *l2 = c->l2;
    uint8_t was = c->state;
    c->state = C_CLOSING;
    if (l2->conn == c) l2->conn = NULL;
    hp_counter_set(&l2->stats->connected, 0);
    publish_inflight(l2, NULL);
    if (fault)
        hp_counter_add(was == C_READY ? &l2->stats->disconnects : &l2->stats->connect_failures, 1);
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
    cmd_t e;
    for (bool first = true; ring_pop(c, &e); first = false) {
        int code = err;
        if (expired_by && e.deadline_ms <= expired_by)
            code = UV_ETIMEDOUT;
        else if (first && head_err)
            code = head_err;
        cmd_fail(l2, &e, code);
    }
}

/* Reconnect after the current backoff, and double it for next time. Not
 * when something else (a continuation's reconfigure) already reconnected. */
static void retry_later(hp_l2_t *l2)
{
    if (l2->closing || l2->conn) return;
    unsigned delay = l2->backoff_ms;
    unsigned max = l2->conf.o.backoff_max_ms;
    l2->backoff_ms = delay > max / 2 ? max : 2 * delay;
    uv_timer_start(&l2->timer, timer_cb, delay, 0);
}

/* c failed: say why (last_error), drop it, reconnect later. */
static void conn_fail(conn_t *c, int head_err, const char *fmt, ...)
{
    hp_l2_t *l2 = c->l2;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l2->last_error, sizeof(l2->last_error), fmt, ap);
    va_end(ap);
    conn_drop(c, true, head_err, UV_ECONNRESET, 0);
    retry_later(l2);
}

static void write_cb(uv_write_t *w, int status);

/* Hand the output buffer to libuv unless a write is in flight: what
 * accumulates meanwhile leaves in one write when it completes, so a busy
 * pipeline batches by itself and an idle one writes at once. */
static void conn_flush(conn_t *c)
{
    if (c->writing || c->out_len == 0) return;
    char *b = c->wbuf;
    size_t cap = c->wbuf_cap;
    c->wbuf = c->out;
    c->wbuf_cap = c->out_cap;
    c->wbuf_len = c->out_len;
    c->out = b;
    c->out_cap = cap;
    c->out_len = 0;
    uv_buf_t ub = uv_buf_init(c->wbuf, (unsigned)c->wbuf_len);
    int rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, &ub, 1, write_cb);
    if (rc < 0) {
        conn_fail(c, 0, "write to redis failed: %s", uv_strerror(rc));
        return;
    }
    c->writing = true;
}

static void write_cb(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    c->writing = false;
    c->wbuf_len = 0;
    if (c->state == C_CLOSING) return;
    if (status < 0) {
        conn_fail(c, 0, "write to redis failed: %s", uv_strerror(status));
        return;
    }
    if (c->wbuf_cap > OUT_KEEP) {
        hp_free(c->wbuf);
        c->wbuf = NULL;
        c->wbuf_cap = 0;
    }
    conn_flush(c);
}

static void conn_ready(conn_t *c)
{
    hp_l2_t *l2 = c->l2;
    c->state = C_READY;
    l2->backoff_ms = l2->conf.o.backoff_min_ms;
    uv_timer_stop(&l2->timer); /* the connect deadline; commands arm it again */
    hp_counter_set(&l2->stats->connected, 1);
    publish_inflight(l2, c);
}

/* --- replies ----------------------------------------------------------------- */

static void on_get_reply(hp_l2_t *l2, conn_t *c, const cmd_t *e, void *reply)
{
    hp_l2_stats_t *s = l2->stats;
    if (!is_tag(reply) || reply == TAG(RP_NIL)) {
        hp_counter_add(reply == TAG(RP_NIL) ? &s->misses : &s->hits, 1);
        hp_task_complete(e->task, hp_value_ptr(reply == TAG(RP_NIL) ? NULL : reply));
        hp_task_unref(e->task);
        return;
    }
    int err = reply == TAG(RP_ERROR)        ? UV_EREMOTEIO
              : reply == TAG(RP_BAD_RECORD) ? UV_EILSEQ
              : reply == TAG(RP_TOO_BIG)    ? UV_E2BIG
                                            : UV_EPROTO;
    if (err == UV_EREMOTEIO) snprintf(l2->last_error, sizeof(l2->last_error), "GET: %s", c->rerr);
    cmd_fail(l2, e, err);
}

/* reply answers the head of c's FIFO. May drop c (c->state says so). */
static void on_reply(conn_t *c, void *reply, uint64_t now_ns)
{
    hp_l2_t *l2 = c->l2;
    cmd_t e;
    if (!ring_pop(c, &e)) {
        free_object(reply);
        conn_fail(c, 0, "redis sent a reply to no command");
        return;
    }
    if (e.kind == K_SELECT) {
        if (reply == TAG(RP_OK))
            conn_ready(c);
        else
            conn_fail(c, 0, "SELECT %ld refused: %s", l2->conf.db,
                      reply == TAG(RP_ERROR) ? c->rerr : "not an OK status reply");
        free_object(reply);
        return;
    }
    publish_inflight(l2, c);
    hp_counter_add(&l2->stats->latency_sum, (now_ns - e.t0_ns) / 1000);
    hp_counter_add(&l2->stats->latency_count, 1);
    if (e.kind == K_GET) {
        on_get_reply(l2, c, &e, reply);
        return;
    }
    if (reply == TAG(RP_OK)) {
        hp_counter_add(&l2->stats->stored, 1);
        return;
    }
    if (reply == TAG(RP_ERROR))
        snprintf(l2->last_error, sizeof(l2->last_error), "SET: %s", c->rerr);
    free_object(reply);
    cmd_fail(l2, &e, reply == TAG(RP_ERROR) ? UV_EREMOTEIO : UV_EPROTO);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    *buf = uv_buf_init(c->l2->rbuf, sizeof(c->l2->rbuf));
}

static void note_reader(hp_l2_t *l2, const redisReader *r, const char *buf0, size_t cap0)
{
    size_t cap = r->buf ? sdsalloc(r->buf) : 0;
    if (r->buf != buf0 || cap != cap0) hp_counter_add(&l2->stats->reader_buf_changes, 1);
    hp_counter_set(&l2->stats->reader_buf_bytes, cap);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    hp_l2_t *l2 = c->l2;
    if (nread == 0 || c->state == C_CLOSING) return;
    if (nread < 0) {
        if (nread == UV_EOF)
            conn_fail(c, 0, "redis closed the connection");
        else
            conn_fail(c, 0, "redis connection failed: %s", uv_strerror((int)nread));
        return;
    }
    redisReader *r = c->reader;
    const char *buf0 = r->buf; /* never NULL: a reader in error is never fed again */
    size_t cap0 = sdsalloc(r->buf);
    int rc = redisReaderFeed(r, buf->base, (size_t)nread);
    note_reader(l2, r, buf0, cap0);
    uint64_t now_ns = uv_hrtime(); /* one clock read for the replies of this read */
    while (rc == REDIS_OK && c->state != C_CLOSING) {
        const cmd_t *head = ring_peek(c);
        hp_alloc_counter_t *prev = hp_alloc_scope_set(head ? head->scope : NULL);
        void *reply = NULL;
        rc = redisReaderGetReply(r, &reply);
        if (reply) on_reply(c, reply, now_ns);
        hp_alloc_scope_set(prev);
        if (reply == NULL) break;
    }
    if (c->state == C_CLOSING) return;
    if (rc != REDIS_OK) {
        conn_fail(c, UV_EPROTO, "redis sent a malformed reply: %s", r->errstr);
        return;
    }
    /* What is left is one incomplete reply: hiredis would buffer a bulk
     * string of any announced length whole before parsing it. */
    if (r->len - r->pos > l2->conf.o.max_value_bytes + BULK_SLACK)
        conn_fail(c, UV_E2BIG, "redis reply exceeds cache.l2.max_value_bytes (%zu)",
                  l2->conf.o.max_value_bytes);
}

static void connect_cb(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    if (status == UV_ECANCELED || c->state != C_CONNECTING) return;
    if (status == 0) status = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (status < 0) {
        conn_fail(c, 0, "connect to %s failed: %s", c->l2->conf.url, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1); /* small pipelined writes: no Nagle delay */
    c->state = C_HANDSHAKE;
    hp_l2_t *l2 = c->l2;
    cmd_t e = {.kind = K_SELECT, .t0_ns = uv_hrtime()};
    ring_push(c, &e);
    memcpy(out_reserve(c, l2->select_len), l2->select_cmd, l2->select_len);
    c->out_len += l2->select_len;
    conn_flush(c);
}

static void conn_open(hp_l2_t *l2)
{
    conn_t *c = hp_calloc(1, sizeof(*c));
    c->l2 = l2;
    c->reader = redisReaderCreateWithFunctions(&reply_fns);
    if (c->reader == NULL) {
        fprintf(stderr, "hotpath: out of memory creating a redis reply reader\n");
        abort();
    }
    c->reader->privdata = c;
    c->reader->maxbuf = READER_KEEP;
    HP_MUST(uv_tcp_init(l2->loop, &c->tcp)); /* AF_UNSPEC creates no socket yet */
    c->tcp.data = c->connect.data = c->write.data = c;
    c->state = C_CONNECTING;
    l2->conn = c;
    l2->nconns++;
    hp_counter_add(&l2->stats->connects, 1);
    uv_update_time(l2->loop); /* the deadline counts from now, not from the loop's last turn */
    uv_timer_start(&l2->timer, timer_cb, l2->conf.o.connect_timeout_ms, 0);
    int rc =
        uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&l2->conf.addr, connect_cb);
    if (rc < 0) conn_fail(c, 0, "connect to %s failed: %s", l2->conf.url, uv_strerror(rc));
}

static void timer_cb(uv_timer_t *t)
{
    hp_l2_t *l2 = t->data;
    conn_t *c = l2->conn;
    if (c == NULL) {
        hp_counter_add(&l2->stats->reconnects, 1);
        conn_open(l2);
        return;
    }
    if (c->state != C_READY) {
        conn_fail(c, 0, "%s %s timed out after %u ms",
                  c->state == C_CONNECTING ? "connect to" : "SELECT on", l2->conf.url,
                  l2->conf.o.connect_timeout_ms);
        return;
    }
    const cmd_t *head = ring_peek(c);
    if (head == NULL) return;
    uint64_t now = uv_now(l2->loop);
    if (head->deadline_ms > now) {
        uv_timer_start(t, timer_cb, head->deadline_ms - now, 0);
        return;
    }
    snprintf(l2->last_error, sizeof(l2->last_error),
             "a command got no reply within %u ms: connection dropped",
             l2->conf.o.command_timeout_ms);
    conn_drop(c, true, 0, UV_ECONNRESET, now);
    retry_later(l2);
}

/* --- the public interface -------------------------------------------------- */

int hp_l2_init(uv_loop_t *loop, const hp_l2_opts_t *opts, hp_l2_t **out, char *err, size_t errlen)
{
    conf_t c;
    int rc = conf_check(opts, &c, err, errlen);
    if (rc < 0) return rc;
    hp_l2_t *l2 = hp_calloc(1, sizeof(*l2));
    l2->stats = &l2->own;
    l2->loop = loop;
    conf_apply(l2, &c);
    HP_MUST(uv_timer_init(loop, &l2->timer));
    l2->timer.data = l2;
    conn_open(l2);
    *out = l2;
    return 0;
}

static void timer_closed_cb(uv_handle_t *h)
{
    hp_l2_t *l2 = h->data;
    l2->timer_closed = true;
    maybe_closed(l2);
}

void hp_l2_close(hp_l2_t *l2, hp_cont_cb done, void *arg)
{
    if (l2->closing) return;
    l2->closing = true;
    l2->close_cb = done;
    l2->close_arg = arg;
    uv_close((uv_handle_t *)&l2->timer, timer_closed_cb);
    if (l2->conn) conn_drop(l2->conn, false, 0, HP_ESHUTDOWN, 0);
}

int hp_l2_reconfigure(hp_l2_t *l2, const hp_l2_opts_t *opts, char *err, size_t errlen)
{
    if (l2->closing) return HP_ESHUTDOWN;
    conf_t c;
    int rc = conf_check(opts, &c, err, errlen);
    if (rc < 0) return rc;
    if (conf_equal(&l2->conf, &c)) return 0;
    conf_apply(l2, &c);
    if (l2->conn) conn_drop(l2->conn, false, 0, UV_ECONNRESET, 0);
    if (!l2->closing && l2->conn == NULL) conn_open(l2);
    return 0;
}

/* The checks every call passes; 0 or the code it is refused with. */
static int admit(hp_l2_t *l2)
{
    hp_l2_stats_t *s = l2->stats;
    if (l2->closing) {
        hp_counter_add(&s->shutdowns, 1);
        return HP_ESHUTDOWN;
    }
    if (l2->conn == NULL || l2->conn->state != C_READY) {
        hp_counter_add(&s->bypasses, 1);
        return UV_ENOTCONN;
    }
    if (l2->conn->ring_n >= l2->conf.o.max_inflight) {
        hp_counter_add(&s->rejected, 1);
        return UV_ENOBUFS;
    }
    return 0;
}

/* Queue e on the ready connection and arm the deadline timer if idle. */
static void cmd_start(hp_l2_t *l2, conn_t *c, cmd_t *e)
{
    e->scope = hp_alloc_scope_get();
    e->t0_ns = uv_hrtime();
    e->deadline_ms = uv_now(l2->loop) + l2->conf.o.command_timeout_ms;
    ring_push(c, e);
    publish_inflight(l2, c);
    if (!uv_is_active((uv_handle_t *)&l2->timer))
        uv_timer_start(&l2->timer, timer_cb, l2->conf.o.command_timeout_ms, 0);
}

int hp_l2_get(hp_l2_t *l2, const char *key, size_t key_len, hp_task_t **out)
{
    *out = NULL;
    hp_counter_add(&l2->stats->gets, 1);
    int rc = admit(l2);
    if (rc < 0) return rc;
    conn_t *c = l2->conn;
    cmd_t e = {.kind = K_GET, .task = hp_task_new()};
    hp_task_set_dispose(e.task, hp_buf_dispose);
    *out = hp_task_ref(e.task);
    cmd_start(l2, c, &e);
    char *w = out_reserve(c, key_len + GET_OVERHEAD);
    w = put(w, "*2\r\n$3\r\nGET\r\n", 13);
    w = put_len(w, key_len);
    w = put(w, key, key_len);
    w = put(w, "\r\n", 2);
    c->out_len = (size_t)(w - c->out);
    conn_flush(c);
    return 0;
}

int hp_l2_set(hp_l2_t *l2, const char *key, size_t key_len, const hp_buf_t *value, uint64_t ttl_ms)
{
    hp_l2_stats_t *s = l2->stats;
    hp_counter_add(&s->sets, 1);
    if (l2->closing) return admit(l2);
    char head[REC_HEAD_MAX];
    int hlen = record_head(value, head);
    if (hlen < 0 || hlen + value->len > l2->conf.o.max_value_bytes) {
        hp_counter_add(&s->rejected, 1);
        return hlen < 0 ? UV_EINVAL : UV_E2BIG;
    }
    int rc = admit(l2);
    if (rc < 0) return rc;
    conn_t *c = l2->conn;
    cmd_t e = {.kind = K_SET};
    cmd_start(l2, c, &e);
    size_t rlen = (size_t)hlen + value->len;
    char *w = out_reserve(c, key_len + rlen + SET_OVERHEAD);
    w = put(w, ttl_ms ? "*5\r\n$3\r\nSET\r\n" : "*3\r\n$3\r\nSET\r\n", 13);
    w = put_len(w, key_len);
    w = put(w, key, key_len);
    w = put(w, "\r\n", 2);
    w = put_len(w, rlen);
    w = put(w, head, (size_t)hlen);
    w = put(w, value->body, value->len);
    w = put(w, "\r\n", 2);
    if (ttl_ms) {
        char ttl[24];
        int tl = snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
        w = put(w, "$2\r\nPX\r\n", 8);
        w = put_len(w, (size_t)tl);
        w = put(w, ttl, (size_t)tl);
        w = put(w, "\r\n", 2);
    }
    c->out_len = (size_t)(w - c->out);
    conn_flush(c);
    return 0;
}

#define ROW(name, kind, help) HP_STAT_ROW(hp_l2_stats_t, name, kind, help)
static const hp_stat_t stat_rows[] = {HP_L2_STATS(ROW)};
#undef ROW

const hp_stats_table_t hp_l2_stats_table = {
    .name = "l2",
    .size = sizeof(hp_l2_stats_t),
    .rows = stat_rows,
    .nrows = sizeof(stat_rows) / sizeof(stat_rows[0]),
};

const hp_l2_stats_t *hp_l2_stats(const hp_l2_t *l2)
{
    return l2->stats;
}

void hp_l2_count_into(hp_l2_t *l2, hp_l2_stats_t *block)
{
    for (size_t i = 0; i < hp_l2_stats_table.nrows; i++) {
        const hp_stat_t *row = &hp_l2_stats_table.rows[i];
        uint64_t *to = (uint64_t *)((char *)block + row->offset);
        uint64_t v = *hp_stat_at(l2->stats, row);
        hp_counter_set(to, row->kind == HP_STAT_GAUGE ? v : hp_counter_get(to) + v);
    }
    l2->stats = block;
}

const char *hp_l2_last_error(const hp_l2_t *l2)
{
    return l2->last_error;
}
