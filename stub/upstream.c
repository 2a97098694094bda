/*
 * upstream.c - build/hotpath-upstream, the slow backend hotpath's
 * upstream client talks to in tests and load tests.
 *
 * One thread, one libuv loop, llhttp in request mode; keep-alive,
 * pipelining and Content-Length request bodies (read and dropped). Every
 * request gets a record in its connection's queue in arrival order and one
 * uv_timer for its delay; responses leave from the front of the queue only,
 * so a pipelined connection gets its answers in request order however the
 * delays fall. A request's response is built when its timer fires (or at
 * once without a delay) and written in one uv_write.
 *
 *   GET  /items/{key}    {"key":..,"value":..,"served":n} after the delay
 *   GET  /chunked/{key}  the same idea, chunked: "{key}:{i}\n" for i in 0..9,
 *                        7-byte chunks, a chunk extension and a trailer
 *   GET  /bytes/{n}      n bytes of a-z, Content-Length (size tests)
 *   GET  /_stats         counters; never delayed, faulted or counted
 *   POST /_control?...   delay_ms, jitter_ms, fail_rate, status, fault,
 *                        drop_next: change the settings live (never delayed
 *                        or faulted; counted in requests)
 *   anything else        200 text/plain "METHOD TARGET\n" after the delay
 *
 * Any path also takes ?delay_ms=D: this request's delay instead of the
 * configured one (a late answer to one request among prompt ones).
 *
 * Faults (query fault=MODE on any path, or --fault / _control for all):
 *   stall     read the request, never answer (the connection stops there)
 *   headers   status line and headers with Content-Length, then stall
 *   garbage   "NOT HTTP\r\n\r\n", then close
 *   reset     headers and half the body, then RST (uv_tcp_close_reset)
 *   close     a correct answer with Connection: close, then close
 *   truncate  headers, half the body, then a clean close
 *   drop      close without answering (what a keep-alive race looks like)
 *   interim   "100 Continue" and "103 Early Hints" first, then the answer:
 *             legal, and a client must skip them
 *   infobody  a "150" interim response carrying Content-Length: 9 and the
 *             body "INJECTED!", then the answer: 1xx has no body (RFC 9112
 *             6.3), so those 9 bytes are garbage where a status line goes
 *   extra     the answer, then EXTRA_MS later a second, unsolicited
 *             response ("SMUGGLED\n") on the same connection (counted in
 *             /_stats "extras" once written)
 *   glued     the answer and that unsolicited response in one write, so
 *             they arrive in the same read (also counted in "extras")
 * drop_next=N in _control drops the next N requests that arrive on an
 * already used connection: the keep-alive race, made deterministic.
 *
 * An item's value is "value-of-{key}-{FNV-1a of key, 8 hex digits}", the
 * same on every run; "served" is the stub's running count of /items requests.
 * One uv_timer per request rather than a timer wheel: libuv's timer heap
 * already is one, and a request record is allocated anyway.
 *
 * Deliberately simple: no back-pressure on pipelined requests (the queue
 * grows with what a client sends unanswered), and a client's EOF closes the
 * connection at once, pending answers included.
 */
#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "runtime/list.h"
#include "runtime/sbuf.h"
#include "server/http.h"

#include <getopt.h>
#include <llhttp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define URL_MAX   8192        /* Kestrel's MaxRequestLineSize */
#define BYTES_MAX (64u << 20) /* /bytes/{n} cap */
#define CHUNK     7           /* /chunked/ chunk size: small, so bodies take several */
#define EXTRA_MS  20          /* fault=extra: the unsolicited response's delay */

enum {
    F_NONE,
    F_STALL,
    F_HEADERS,
    F_GARBAGE,
    F_RESET,
    F_CLOSE,
    F_TRUNCATE,
    F_DROP,
    F_INTERIM,
    F_INFOBODY,
    F_EXTRA,
    F_GLUED,
    F_COUNT
};
static const char *const fault_names[F_COUNT] = {
    "none",     "stall", "headers", "garbage",  "reset", "close",
    "truncate", "drop",  "interim", "infobody", "extra", "glued",
};

/* What a connection does once a response has been written. */
enum { A_NONE, A_STALL, A_CLOSE, A_RESET, A_EXTRA };

static const char smuggled[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 9\r\n\r\nSMUGGLED\n";

typedef struct {
    unsigned delay_ms, jitter_ms;
    double fail_rate;
    int status;
    int fault;
    unsigned drop_next;
} settings_t;

typedef struct {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    settings_t set;
    hp_link_t conns;
    uint64_t requests, items, failed, faults, connections, open_connections;
    uint64_t extras; /* fault=extra and glued: unsolicited responses written */
    uint64_t rng;
    char rbuf[65536]; /* every connection reads here: each read is parsed at once */
} stub_t;

typedef struct {
    uv_tcp_t tcp;
    llhttp_t parser;
    stub_t *s;
    hp_link_t link;   /* in s->conns until closing */
    hp_link_t reqs;   /* requests in arrival order; answers leave from the front */
    unsigned handles; /* tcp plus request timers not yet closed; freed at 0 */
    uint64_t received;
    bool closing;
    bool ending;  /* the last answer is written: nothing more goes out */
    bool stalled; /* a stall fault: nothing more goes out, ever */
    bool url_overflow;
    size_t url_len;
    char url[URL_MAX];
} sconn_t;

typedef struct {
    uv_timer_t timer; /* the delay; closed when the request is done */
    hp_link_t link;   /* in c->reqs until answered */
    sconn_t *c;
    uint8_t method;
    uint8_t after; /* A_*, once ready */
    bool keep_alive;
    bool ready;
    bool failed; /* answer with the fail status */
    int fault;
    uint64_t served; /* /items: the item count including this one */
    char *resp;      /* owned, once ready */
    size_t resp_len;
    char url[];
} sreq_t;

typedef struct {
    uv_write_t w;
    sconn_t *c;
    uint8_t after;
    char *data;
} wreq_t;

/* fault=extra: what is sent EXTRA_MS after the answer. */
typedef struct {
    uv_timer_t timer;
    sconn_t *c;
} later_t;

static stub_t stub;

/* --- small helpers ----------------------------------------------------- */

static uint64_t rnd(stub_t *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static double rnd01(stub_t *s)
{
    return (double)(rnd(s) >> 11) / (double)(1ull << 53);
}

static uint32_t fnv1a(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static int fault_parse(const char *p, size_t n)
{
    for (int i = 0; i < F_COUNT; i++)
        if (strlen(fault_names[i]) == n && memcmp(fault_names[i], p, n) == 0) return i;
    return -1;
}

static void json_escape(hp_sbuf_t *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = {'\\', (char)ch};
            hp_sbuf_add(s, e, 2);
        } else if (ch < 0x20) {
            hp_sbuf_printf(s, "\\u%04x", ch);
        } else {
            hp_sbuf_add(s, (const char *)&ch, 1);
        }
    }
}

/* The value of query parameter name in q (NUL-terminated), or NULL. */
static const char *query_get(const char *q, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t seg = end ? (size_t)(end - q) : strlen(q);
        if (seg > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            *len = seg - nl - 1;
            return q + nl + 1;
        }
        q = end ? end + 1 : NULL;
    }
    return NULL;
}

static bool parse_uint(const char *p, size_t n, unsigned long max, unsigned long *out)
{
    char tmp[32];
    if (n == 0 || n >= sizeof(tmp)) return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    unsigned long v = strtoul(tmp, &end, 10);
    if (*end || tmp[0] == '-' || v > max) return false;
    *out = v;
    return true;
}

static bool parse_rate(const char *p, size_t n, double *out)
{
    char tmp[32];
    if (n == 0 || n >= sizeof(tmp)) return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    double v = strtod(tmp, &end);
    if (*end || !(v >= 0.0 && v <= 1.0)) return false;
    *out = v;
    return true;
}

/* --- building answers ---------------------------------------------------- */

/* The head and body of an answer, before a fault shapes what is sent. */
typedef struct {
    int status;
    const char *ctype;
    bool chunked;
    hp_sbuf_t body; /* already chunk-encoded when chunked */
} answer_t;

static void answer_items(stub_t *s, sreq_t *r, const char *key, size_t klen, answer_t *a)
{
    a->ctype = "application/json";
    hp_sbuf_add(&a->body, "{\"key\":\"", 8);
    json_escape(&a->body, key, klen);
    hp_sbuf_add(&a->body, "\",\"value\":\"value-of-", 20);
    json_escape(&a->body, key, klen);
    hp_sbuf_printf(&a->body, "-%08x\",\"served\":%llu}", fnv1a(key, klen),
                   (unsigned long long)r->served);
}

static void answer_chunked(const char *key, size_t klen, answer_t *a)
{
    hp_sbuf_t plain = {0};
    for (int i = 0; i < 10; i++) {
        hp_sbuf_add(&plain, key, klen);
        hp_sbuf_printf(&plain, ":%d\n", i);
    }
    a->ctype = "text/plain";
    a->chunked = true;
    for (size_t off = 0; off < plain.len; off += CHUNK) {
        size_t n = plain.len - off < CHUNK ? plain.len - off : CHUNK;
        hp_sbuf_printf(&a->body, off == 0 ? "%zx;ext=1\r\n" : "%zx\r\n", n);
        hp_sbuf_add(&a->body, plain.data + off, n);
        hp_sbuf_add(&a->body, "\r\n", 2);
    }
    hp_sbuf_add(&a->body, "0\r\nX-Trailer: done\r\n\r\n", 22);
    hp_free(plain.data);
}

static void answer_stats(stub_t *s, answer_t *a)
{
    a->ctype = "application/json";
    hp_sbuf_printf(&a->body,
                   "{\"requests\":%llu,\"items\":%llu,\"failed\":%llu,\"faults\":%llu,"
                   "\"connections\":%llu,\"open_connections\":%llu,\"extras\":%llu}",
                   (unsigned long long)s->requests, (unsigned long long)s->items,
                   (unsigned long long)s->failed, (unsigned long long)s->faults,
                   (unsigned long long)s->connections, (unsigned long long)s->open_connections,
                   (unsigned long long)s->extras);
}

static void answer_settings(stub_t *s, answer_t *a)
{
    a->ctype = "application/json";
    hp_sbuf_printf(&a->body,
                   "{\"delay_ms\":%u,\"jitter_ms\":%u,\"fail_rate\":%g,\"status\":%d,"
                   "\"fault\":\"%s\",\"drop_next\":%u}",
                   s->set.delay_ms, s->set.jitter_ms, s->set.fail_rate, s->set.status,
                   fault_names[s->set.fault], s->set.drop_next);
}

static void answer_error(int status, const char *msg, answer_t *a)
{
    a->status = status;
    a->ctype = "application/json";
    hp_sbuf_printf(&a->body, "{\"error\":\"%s\"}", msg);
}

/* POST /_control: all parameters checked before any is applied. */
static void control(stub_t *s, sreq_t *r, const char *q, answer_t *a)
{
    if (r->method != HTTP_POST) {
        answer_error(405, "use POST", a);
        return;
    }
    settings_t n = s->set;
    const char *v;
    size_t len;
    unsigned long u;
    if ((v = query_get(q, "delay_ms", &len))) {
        if (!parse_uint(v, len, 3600000, &u)) goto bad;
        n.delay_ms = (unsigned)u;
    }
    if ((v = query_get(q, "jitter_ms", &len))) {
        if (!parse_uint(v, len, 3600000, &u)) goto bad;
        n.jitter_ms = (unsigned)u;
    }
    if ((v = query_get(q, "fail_rate", &len)) && !parse_rate(v, len, &n.fail_rate)) goto bad;
    if ((v = query_get(q, "status", &len))) {
        if (!parse_uint(v, len, 599, &u) || u < 200) goto bad;
        n.status = (int)u;
    }
    if ((v = query_get(q, "fault", &len)) && (n.fault = fault_parse(v, len)) < 0) goto bad;
    if ((v = query_get(q, "drop_next", &len))) {
        if (!parse_uint(v, len, 1000000, &u)) goto bad;
        n.drop_next = (unsigned)u;
    }
    s->set = n;
    answer_settings(s, a);
    return;
bad:
    answer_error(400, "bad _control parameter", a);
}

/* The answer for r's target, counted; faults are applied by the caller. */
static void answer(stub_t *s, sreq_t *r, answer_t *a)
{
    char *q = strchr(r->url, '?');
    size_t plen = q ? (size_t)(q - r->url) : strlen(r->url);
    const char *path = r->url;
    a->status = 200;
    if (r->failed) {
        a->status = s->set.status;
        a->ctype = "text/plain";
        hp_sbuf_add(&a->body, "injected failure\n", 17);
    } else if (plen > 7 && strncmp(path, "/items/", 7) == 0) {
        answer_items(s, r, path + 7, plen - 7, a);
    } else if (plen > 9 && strncmp(path, "/chunked/", 9) == 0) {
        answer_chunked(path + 9, plen - 9, a);
    } else if (plen > 7 && strncmp(path, "/bytes/", 7) == 0) {
        unsigned long n;
        if (!parse_uint(path + 7, plen - 7, BYTES_MAX, &n)) {
            answer_error(400, "bad byte count", a);
            return;
        }
        a->ctype = "text/plain";
        char *p = hp_sbuf_extend(&a->body, n);
        for (unsigned long i = 0; i < n; i++)
            p[i] = (char)('a' + i % 26);
    } else {
        a->ctype = "text/plain";
        hp_sbuf_printf(&a->body, "%s ", llhttp_method_name((llhttp_method_t)r->method));
        hp_sbuf_add(&a->body, r->url, strlen(r->url));
        hp_sbuf_add(&a->body, "\n", 1);
    }
}

/* Serialize a into r->resp as the fault says, and mark r ready. */
static void ready(sreq_t *r, answer_t *a)
{
    bool close = !r->keep_alive || r->fault == F_CLOSE;
    bool head = r->method == HTTP_HEAD;
    hp_sbuf_t out = {0};
    if (r->fault == F_INTERIM)
        hp_sbuf_printf(&out, "HTTP/1.1 100 Continue\r\n\r\n"
                             "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n");
    if (r->fault == F_INFOBODY)
        hp_sbuf_printf(&out, "HTTP/1.1 150 Weird\r\nContent-Length: 9\r\n\r\nINJECTED!");
    hp_sbuf_printf(&out, "HTTP/1.1 %d %s\r\nServer: hotpath-upstream\r\nContent-Type: %s\r\n",
                   a->status, hp_status_reason((unsigned)a->status), a->ctype);
    if (a->chunked)
        hp_sbuf_add(&out, "Transfer-Encoding: chunked\r\n", 28);
    else
        hp_sbuf_printf(&out, "Content-Length: %zu\r\n", a->body.len);
    hp_sbuf_printf(&out, "Connection: %s\r\n\r\n", close ? "close" : "keep-alive");
    size_t body = head ? 0 : a->body.len;
    r->after = close ? A_CLOSE : A_NONE;
    switch (r->fault) {
    case F_HEADERS:
        body = 0;
        r->after = A_STALL;
        break;
    case F_GARBAGE:
        hp_sbuf_clear(&out);
        hp_sbuf_add(&out, "NOT HTTP\r\n\r\n", 12);
        body = 0;
        r->after = A_CLOSE;
        break;
    case F_RESET:
    case F_TRUNCATE:
        body /= 2;
        r->after = r->fault == F_RESET ? A_RESET : A_CLOSE;
        break;
    case F_DROP:
        hp_sbuf_clear(&out);
        body = 0;
        r->after = A_CLOSE;
        break;
    case F_EXTRA:
        if (!close) r->after = A_EXTRA;
        break;
    default: break;
    }
    if (body) hp_sbuf_add(&out, a->body.data, body);
    if (r->fault == F_GLUED && !close) {
        hp_sbuf_add(&out, smuggled, sizeof(smuggled) - 1);
        r->c->s->extras++;
    }
    hp_free(a->body.data);
    r->resp = hp_sbuf_take(&out, &r->resp_len);
    r->ready = true;
}

/* --- connections ------------------------------------------------------ */

static void conn_unref(sconn_t *c)
{
    if (--c->handles == 0) hp_free(c);
}

static void req_closed_cb(uv_handle_t *h)
{
    sreq_t *r = h->data;
    sconn_t *c = r->c;
    hp_free(r->resp);
    hp_free(r);
    conn_unref(c);
}

static void tcp_closed_cb(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(sconn_t *c, bool reset)
{
    if (c->closing) return;
    c->closing = true;
    hp_link_remove(&c->link);
    c->s->open_connections--;
    while (!hp_link_empty(&c->reqs)) {
        sreq_t *r = hp_container_of(c->reqs.next, sreq_t, link);
        hp_link_remove(&r->link);
        uv_close((uv_handle_t *)&r->timer, req_closed_cb);
    }
    if (!reset || uv_tcp_close_reset(&c->tcp, tcp_closed_cb) != 0)
        uv_close((uv_handle_t *)&c->tcp, tcp_closed_cb);
}

static void write_cb(uv_write_t *w, int status);

static void later_closed_cb(uv_handle_t *h)
{
    later_t *l = h->data;
    conn_unref(l->c);
    hp_free(l);
}

/* Write data on c (copied), outside the answer queue. */
static void write_raw(sconn_t *c, const char *data, size_t len)
{
    wreq_t *wr = hp_malloc(sizeof(*wr));
    wr->w.data = wr;
    wr->c = c;
    wr->after = A_NONE;
    wr->data = hp_malloc(len);
    memcpy(wr->data, data, len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0) {
        hp_free(wr->data);
        hp_free(wr);
        conn_close(c, false);
    }
}

static void later_cb(uv_timer_t *t)
{
    later_t *l = t->data;
    if (!l->c->closing) {
        write_raw(l->c, smuggled, sizeof(smuggled) - 1);
        l->c->s->extras++;
    }
    uv_close((uv_handle_t *)&l->timer, later_closed_cb);
}

static void after(sconn_t *c, uint8_t what)
{
    if (what == A_CLOSE || what == A_RESET) conn_close(c, what == A_RESET);
    if (what == A_EXTRA && !c->closing) {
        later_t *l = hp_malloc(sizeof(*l));
        l->c = c;
        HP_MUST(uv_timer_init(&c->s->loop, &l->timer));
        l->timer.data = l;
        c->handles++;
        uv_timer_start(&l->timer, later_cb, EXTRA_MS, 0);
    }
}

static void write_cb(uv_write_t *w, int status)
{
    wreq_t *wr = w->data;
    sconn_t *c = wr->c;
    uint8_t what = wr->after;
    hp_free(wr->data);
    hp_free(wr);
    if (status < 0)
        conn_close(c, false);
    else
        after(c, what);
}

/* Write every answer that is ready at the front of the queue. */
static void flush(sconn_t *c)
{
    while (!c->closing && !c->ending && !c->stalled && !hp_link_empty(&c->reqs)) {
        sreq_t *r = hp_container_of(c->reqs.next, sreq_t, link);
        if (!r->ready) break;
        hp_link_remove(&r->link);
        uint8_t what = r->after;
        char *data = r->resp;
        size_t len = r->resp_len;
        r->resp = NULL;
        uv_close((uv_handle_t *)&r->timer, req_closed_cb);
        if (what == A_STALL) c->stalled = true;
        if (what == A_CLOSE || what == A_RESET) {
            c->ending = true;
            uv_read_stop((uv_stream_t *)&c->tcp);
        }
        if (len == 0) {
            hp_free(data);
            after(c, what);
            continue;
        }
        wreq_t *wr = hp_malloc(sizeof(*wr));
        wr->w.data = wr;
        wr->c = c;
        wr->after = what;
        wr->data = data;
        uv_buf_t b = uv_buf_init(data, (unsigned)len);
        if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0) {
            hp_free(data);
            hp_free(wr);
            conn_close(c, false);
        }
    }
}

static void build(sreq_t *r)
{
    answer_t a = {0};
    answer(r->c->s, r, &a);
    ready(r, &a);
}

static void delay_cb(uv_timer_t *t)
{
    sreq_t *r = t->data;
    build(r);
    flush(r->c);
}

/* A request has been parsed: count it, answer the control paths at once,
 * pick its fault and failure, and start its delay. */
static void start(sconn_t *c, sreq_t *r)
{
    stub_t *s = c->s;
    char *q = strchr(r->url, '?');
    size_t plen = q ? (size_t)(q - r->url) : strlen(r->url);
    if (q) q++;
    answer_t a = {0};
    if (plen == 7 && strncmp(r->url, "/_stats", 7) == 0) {
        answer_stats(s, &a);
        a.status = 200;
        ready(r, &a);
        return;
    }
    s->requests++;
    if (plen == 9 && strncmp(r->url, "/_control", 9) == 0) {
        a.status = 200;
        control(s, r, q, &a);
        ready(r, &a);
        return;
    }
    size_t len;
    const char *v = query_get(q, "fault", &len);
    r->fault = v ? fault_parse(v, len) : s->set.fault;
    if (r->fault < 0) {
        r->fault = F_NONE;
        answer_error(400, "unknown fault", &a);
        ready(r, &a);
        return;
    }
    if (r->fault == F_NONE && s->set.drop_next && c->received > 1) {
        s->set.drop_next--;
        r->fault = F_DROP;
    }
    if (r->fault != F_NONE) s->faults++;
    if (plen > 7 && strncmp(r->url, "/items/", 7) == 0) r->served = ++s->items;
    if (s->set.fail_rate > 0 && rnd01(s) < s->set.fail_rate) {
        r->failed = true;
        s->failed++;
    }
    if (r->fault == F_STALL) return; /* never ready: the connection stops here */
    uint64_t delay = s->set.delay_ms;
    unsigned long d;
    if ((v = query_get(q, "delay_ms", &len)) && parse_uint(v, len, 3600000, &d)) delay = d;
    if (s->set.jitter_ms) delay += rnd(s) % (s->set.jitter_ms + 1ull);
    if (delay)
        uv_timer_start(&r->timer, delay_cb, delay, 0);
    else
        build(r);
}

/* --- the request parser ----------------------------------------------------- */

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    sconn_t *c = p->data;
    if (c->url_len + n >= sizeof(c->url)) {
        c->url_overflow = true;
        return 0;
    }
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    return 0;
}

static sreq_t *req_new(sconn_t *c, llhttp_t *p)
{
    sreq_t *r = hp_calloc(1, sizeof(*r) + c->url_len + 1);
    HP_MUST(uv_timer_init(&c->s->loop, &r->timer));
    r->timer.data = r;
    c->handles++;
    r->c = c;
    r->method = llhttp_get_method(p);
    r->keep_alive = llhttp_should_keep_alive(p);
    memcpy(r->url, c->url, c->url_len);
    hp_link_push_back(&c->reqs, &r->link);
    return r;
}

static int on_message_complete(llhttp_t *p)
{
    sconn_t *c = p->data;
    if (c->closing || c->ending) return HPE_PAUSED;
    c->received++;
    sreq_t *r = req_new(c, p);
    if (c->url_overflow) {
        answer_t a = {0};
        answer_error(414, "request target too long", &a);
        r->keep_alive = false;
        ready(r, &a);
    } else {
        start(c, r);
    }
    c->url_len = 0;
    c->url_overflow = false;
    flush(c);
    return c->closing || c->ending ? HPE_PAUSED : 0;
}

static const llhttp_settings_t parser_settings = {
    .on_url = on_url,
    .on_message_complete = on_message_complete,
};

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(stub.rbuf, sizeof(stub.rbuf));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    sconn_t *c = st->data;
    if (nread == 0 || c->closing) return;
    if (nread < 0) {
        conn_close(c, false);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, buf->base, (size_t)nread);
    if (e == HPE_OK || e == HPE_PAUSED) return;
    /* Malformed, or data after a Connection: close request: answer what came
     * before, then 400 for a real error, and read no more. */
    uv_read_stop(st);
    if (e == HPE_CLOSED_CONNECTION || c->ending) return;
    c->received++;
    c->url_len = 0;
    sreq_t *r = req_new(c, &c->parser);
    r->keep_alive = false;
    answer_t a = {0};
    answer_error(400, "malformed request", &a);
    ready(r, &a);
    flush(c);
}

static void accept_cb(uv_stream_t *server, int status)
{
    stub_t *s = server->data;
    if (status < 0) return;
    sconn_t *c = hp_calloc(1, sizeof(*c));
    c->s = s;
    hp_link_init(&c->reqs);
    HP_MUST(uv_tcp_init(&s->loop, &c->tcp));
    c->tcp.data = c;
    c->handles = 1;
    hp_link_push_back(&s->conns, &c->link);
    s->connections++;
    s->open_connections++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, false);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
    c->parser.data = c;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) conn_close(c, false);
}

/* --- process --------------------------------------------------------------- */

static void signal_cb(uv_signal_t *h, int signum)
{
    stub_t *s = h->data;
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    while (!hp_link_empty(&s->conns))
        conn_close(hp_container_of(s->conns.next, sconn_t, link), false);
}

static void close_any(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: hotpath-upstream [options]\n"
               "  --host H        listen address, numeric (default 127.0.0.1)\n"
               "  --port N        listen port, 0 for an ephemeral one (default 0)\n"
               "  --delay-ms D    answer after D ms (default 0)\n"
               "  --jitter-ms J   plus a uniform 0..J ms (default 0)\n"
               "  --fail-rate F   answer this fraction (0..1) with --status (default 0)\n"
               "  --status S      the failure status (default 500)\n"
               "  --fault MODE    every request: stall, headers, garbage, reset, close,\n"
               "                  truncate, drop, interim, infobody, extra, glued or\n"
               "                  none (default none)\n"
               "  --help          this text\n"
               "Prints \"hotpath-upstream listening on HOST:PORT\" once listening.\n"
               "Paths: /items/{key}, /chunked/{key}, /bytes/{n}, /_stats, POST /_control?\n"
               "delay_ms=&jitter_ms=&fail_rate=&status=&fault=&drop_next=; any path takes\n"
               "?fault=MODE and ?delay_ms=D.\n");
}

static int ch_index(const struct option *opts, int ch)
{
    int i = 0;
    while (opts[i].name && opts[i].val != ch)
        i++;
    return opts[i].name ? i : 0;
}

static int parse_args(int argc, char **argv, const char **host, int *port, settings_t *set)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"delay-ms", required_argument, NULL, 'd'},
        {"jitter-ms", required_argument, NULL, 'j'},
        {"fail-rate", required_argument, NULL, 'f'},
        {"status", required_argument, NULL, 's'},
        {"fault", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, '?' + 256},
        {NULL, 0, NULL, 0},
    };
    int ch;
    unsigned long u;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        size_t n = optarg ? strlen(optarg) : 0;
        switch (ch) {
        case 'h': *host = optarg; break;
        case 'p':
            if (!parse_uint(optarg, n, 65535, &u)) goto bad;
            *port = (int)u;
            break;
        case 'd':
            if (!parse_uint(optarg, n, 3600000, &u)) goto bad;
            set->delay_ms = (unsigned)u;
            break;
        case 'j':
            if (!parse_uint(optarg, n, 3600000, &u)) goto bad;
            set->jitter_ms = (unsigned)u;
            break;
        case 'f':
            if (!parse_rate(optarg, n, &set->fail_rate)) goto bad;
            break;
        case 's':
            if (!parse_uint(optarg, n, 599, &u) || u < 200) goto bad;
            set->status = (int)u;
            break;
        case 'F':
            if ((set->fault = fault_parse(optarg, n)) < 0) goto bad;
            break;
        case '?' + 256: usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind == argc) return 0;
    fprintf(stderr, "hotpath-upstream: unexpected argument: %s\n", argv[optind]);
    usage(stderr);
    return 2;
bad:
    fprintf(stderr, "hotpath-upstream: bad value for --%s: %s\n", opts[ch_index(opts, ch)].name,
            optarg);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    hp_alloc_install();
    signal(SIGPIPE, SIG_IGN);
    stub_t *s = &stub;
    const char *host = "127.0.0.1";
    int port = 0;
    s->set.status = 500;
    int rc = parse_args(argc, argv, &host, &port, &s->set);
    if (rc) return rc;
    s->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    hp_link_init(&s->conns);

    struct sockaddr_storage addr;
    bool v6 = false;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0) {
        if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
            fprintf(stderr, "hotpath-upstream: --host must be a numeric address: %s\n", host);
            return 2;
        }
        v6 = true;
    }
    if ((rc = uv_loop_init(&s->loop)) != 0) {
        fprintf(stderr, "hotpath-upstream: event loop: %s\n", uv_strerror(rc));
        return 1;
    }
    HP_MUST(uv_tcp_init(&s->loop, &s->listener));
    s->listener.data = s;
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 511, accept_cb)) != 0) {
        fprintf(stderr, "hotpath-upstream: cannot listen on %s:%d: %s\n", host, port,
                uv_strerror(rc));
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        return 1;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
    port = ntohs(v6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                    : ((struct sockaddr_in *)&bound)->sin_port);
    /* Signal handles open a pipe the first time: they can fail. Without
     * them the stub cannot be stopped, so it does not start. */
    if ((rc = uv_signal_init(&s->loop, &s->sigint)) == 0 &&
        (rc = uv_signal_init(&s->loop, &s->sigterm)) == 0) {
        s->sigint.data = s->sigterm.data = s;
        if ((rc = uv_signal_start(&s->sigint, signal_cb, SIGINT)) == 0)
            rc = uv_signal_start(&s->sigterm, signal_cb, SIGTERM);
    }
    if (rc != 0) {
        fprintf(stderr, "hotpath-upstream: signals: %s\n", uv_strerror(rc));
        uv_walk(&s->loop, close_any, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        return 1;
    }
    printf("hotpath-upstream listening on %s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", port);
    fflush(stdout);

    uv_run(&s->loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&s->loop);
    if (rc != 0) fprintf(stderr, "hotpath-upstream: loop not clean at exit: %s\n", uv_strerror(rc));
    return rc ? 1 : 0;
}
