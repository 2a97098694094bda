/*
 * conn.c - a client connection, from accept to close.
 *
 * A request's journey, in the names used below:
 *
 *   accept      hp_conn_accept       listener callback: one hp_conn, read starts
 *   read        on_alloc / on_read   into the worker's read buffer (one per loop)
 *   parse       hp_conn_feed, parse  llhttp_execute; callbacks in parser.c
 *   chain       hp_conn_dispatch     on_message_complete: hp_chain_start runs
 *                                    middleware, then the handler
 *   (async)     request_awaited      the chain pended: read on only to see the
 *                                    peer go (hp_ctx_on_abort); when it
 *                                    completes the connection goes on the
 *                                    worker's ready list, and
 *               resume               runs in the loop's check phase
 *   response    finish               hp_response_write into the worker's
 *                                    output buffer
 *   write       flush                one uv_try_write per read batch; the rest,
 *                                    if the socket is full, via uv_write
 *   keep-alive  proceed              parse what is left (pipelining), read again
 *   close       start_linger, hp_conn_close, on_close
 *
 * Pipelining answers strictly in order by running one request at a time:
 * while a request pends, parsing stops at its end (llhttp paused from
 * on_message_complete) and the bytes after it wait in `carry` until it has
 * been answered. Kestrel and nginx do the same; the alternative - running
 * pipelined requests concurrently and reordering their answers - needs a
 * queue of contexts per connection and buffers every later answer, for a
 * client behaviour (pipelining behind a slow request) nobody relies on.
 * Synchronous requests never pause, so a batch of 16 pipelined /plaintext
 * requests is parsed, run and answered in one read and one write.
 *
 * Memory: an idle connection is this struct only (see conn.h). Input is read
 * into the worker's buffer and parsed in place; only bytes after a pause
 * point are copied (carry), only output the kernel refused is copied (a
 * queued write), and both are freed as soon as they drain.
 *
 * Closing: a connection that answered with Connection: close (a rejection, a
 * client's close, a drain) shuts its write side down and reads until the peer
 * closes or LINGER_MS passes, as nginx's lingering close does, so the answer
 * is not destroyed by a reset when unread input was still in flight.
 *
 * A peer that leaves: a reset closes the connection at once. A FIN (the
 * peer's write side closed) is a departure only for a request that pends:
 * the connection is closed and the request aborted (drop_request runs its
 * hp_ctx_on_abort hook, counted in requests_aborted), so an upstream call
 * stops holding a pool slot for an answer nobody will read - nginx's
 * default, which finalizes such a request with 499 unless
 * proxy_ignore_client_abort is on. A half-close with nothing pending still
 * gets every answer: synchronous requests pipelined before the FIN are all
 * answered, then the connection closes. Before an abort, what is answered
 * already reaches the peer: an answer ready for the check phase
 * (HP_CF_READY) is written, answers queued for a slow reader drain first.
 * Requests pipelined behind the pending one go with it, as behind nginx's
 * 499. The price: a client that half-closes on purpose (`printf ... | nc
 * -N`) gets no answer to an asynchronous request nor to anything it sent
 * after one. One place decides: proceed().
 *
 * Closing from inside: a write can fail anywhere the server writes - the
 * interim 100 Continue (in a parser callback), the flush at FLUSH_AT (in the
 * dispatcher, llhttp on the stack), the flush after a batch - and each
 * closes the connection while frames above still work on it. One rule
 * covers them all (Redis's, for clients): every entry from the loop into a
 * connection (a read, a write's completion, a resume, a deadline) holds it
 * for its duration; hp_conn_close on a held connection does everything that
 * stops it (no reads, no timers, no more output, off every list) but leaves
 * its request context and its input to the outermost frame, which frees
 * them on its way out (leave). Whatever can close tells its caller to stop:
 * parser callbacks return HPE_PAUSED, and parse() and proceed() check
 * HP_CF_CLOSED after every step that can close.
 */
#include "conn.h"

#include "runtime/alloc.h"
#include "chain.h"
#include "runtime/counter.h"
#include "runtime/errors.h"
#include "runtime/list.h"
#include "response.h"

#include <stdio.h>
#include <string.h>

/* nginx's lingering_timeout. */
#define LINGER_MS 5000
/* Flush mid-batch once this much output is waiting: bounds the output
 * buffer when a client pipelines thousands of requests in one read. */
#define FLUSH_AT (64 * 1024)
/* While a request pends, the connection reads on (to see the peer go) and
 * keeps what is pipelined meanwhile, up to this much; then it stops
 * reading until the request is answered. One read buffer's worth. */
#define BUSY_READ_MAX (64 * 1024)

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
} wreq_t;

/* A memory connection's transport: its sink, and the output the sink
 * refused (what a socket's outstanding uv_write holds). */
struct hp_conn_memory {
    hp_conn_sink_cb sink;
    void *arg;
    char *pending; /* hp_malloc'd */
    size_t len;
};

static void proceed(hp_conn_t *c);
static void flush(hp_conn_t *c);
static void on_kick(uv_idle_t *idle);

/* --- timers ------------------------------------------------------------ */

/* The connection a list's timer belongs to: its write side's timer on
 * HP_LIST_WRITE, its read side's on the others. */
static hp_conn_t *conn_of_timer(hp_timer_t *t, int list)
{
    return list == HP_LIST_WRITE ? hp_container_of(t, hp_conn_t, wtimer)
                                 : hp_container_of(t, hp_conn_t, rtimer);
}

/* Whether one of c's timers is on list. */
static bool on_list(const hp_conn_t *c, const hp_timer_t *t, int list)
{
    return t->list == &c->host->timers[list];
}

/* Put one of c's two timers on list (NONE: take it off). */
static void timer_set(hp_conn_t *c, hp_timer_t *t, uint8_t list, uint64_t deadline)
{
    if (list == HP_LIST_NONE || (c->flags & HP_CF_CLOSED))
        hp_timer_stop(t);
    else
        hp_timer_set(t, &c->host->timers[list], deadline);
}

void hp_conn_set_timer(hp_conn_t *c, uint8_t list, uint64_t deadline)
{
    timer_set(c, &c->rtimer, list, deadline);
}

static void clear_timers(hp_conn_t *c)
{
    hp_timer_stop(&c->rtimer);
    hp_timer_stop(&c->wtimer);
}

static uint64_t now_ms(hp_conn_t *c)
{
    return uv_now(c->host->loop);
}

static const hp_limits_t *limits(hp_conn_t *c)
{
    return &c->host->gen->limits;
}

/* --- reading ----------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    hp_conn_t *c = h->data;
    *buf = (uv_buf_t){.base = c->host->rbuf, .len = c->host->rbuf_size};
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hp_conn_t *c = s->data;
    if (nread > 0) {
        hp_counter_add(&c->host->metrics.io.reads, 1);
        hp_counter_add(&c->host->metrics.io.bytes_in, (uint64_t)nread);
        hp_conn_feed(c, buf->base, (size_t)nread);
    } else if (nread < 0) {
        hp_conn_eof(c, (int)nread);
    }
}

static void start_reading(hp_conn_t *c)
{
    if (c->flags & (HP_CF_READING | HP_CF_CLOSED | HP_CF_MEMORY | HP_CF_EOF)) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->flags |= HP_CF_READING;
    else
        hp_conn_close(c);
}

static void stop_reading(hp_conn_t *c)
{
    if (!(c->flags & HP_CF_READING)) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->flags &= ~HP_CF_READING;
}

/* --- accept and close -------------------------------------------------- */

static void on_close(uv_handle_t *h)
{
    hp_conn_t *c = h->data;
    if (c->mem) hp_free(c->mem->pending);
    hp_free(c->mem);
    hp_free(c);
}

static void on_refused_close(uv_handle_t *h)
{
    hp_free(h);
}

static hp_conn_t *conn_new(hp_host_t *h)
{
    hp_conn_t *c = hp_calloc(1, sizeof(*c));
    HP_MUST(uv_tcp_init(h->loop, &c->tcp)); /* no address family: no socket yet */
    c->tcp.data = c;
    c->host = h;
    c->id = ++h->conn_seq;
    hp_timer_init(&c->rtimer);
    hp_timer_init(&c->wtimer);
    hp_link_init(&c->ready_link);
    c->charge = &h->metrics.conn_alloc;
    llhttp_init(&c->parser, HTTP_REQUEST, &hp_parser_settings);
    c->parser.data = c;
    hp_link_push_front(&h->all, &c->all_link);
    h->nconns++;
    hp_counter_add(&h->metrics.conns.accepted, 1);
    hp_counter_set(&h->metrics.conns.open, h->nconns);
    if (h->nconns > hp_counter_get(&h->metrics.conns.peak))
        hp_counter_set(&h->metrics.conns.peak, h->nconns);
    return c;
}

void hp_conn_accept(uv_stream_t *listener, int status)
{
    hp_host_t *h = listener->data;
    if (status < 0) return;                     /* EMFILE and friends: libuv retries */
    hp_alloc_scope_set(&h->metrics.conn_alloc); /* a loop entry: no request's yet */
    if (h->nconns >= h->gen->limits.max_connections || h->draining) {
        /* Over the limit: accept and close at once, without a response, so
         * the client fails fast instead of waiting in the backlog. */
        uv_tcp_t *t = hp_malloc(sizeof(*t));
        HP_MUST(uv_tcp_init(h->loop, t));
        uv_accept(listener, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, on_refused_close);
        hp_counter_add(&h->metrics.conns.refused, 1);
        return;
    }
    hp_conn_t *c = conn_new(h);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        hp_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* Until its first byte, a new connection has the header timeout: a
     * client that connects and sends nothing is a slowloris of zero bytes. */
    hp_conn_set_timer(c, HP_LIST_HEAD, now_ms(c) + limits(c)->header_timeout_ms);
    start_reading(c);
}

hp_conn_t *hp_conn_new_memory(hp_host_t *h, hp_conn_sink_cb sink, void *arg)
{
    hp_alloc_scope_set(&h->metrics.conn_alloc);
    hp_conn_t *c = conn_new(h);
    c->flags |= HP_CF_MEMORY;
    c->mem = hp_calloc(1, sizeof(*c->mem));
    c->mem->sink = sink;
    c->mem->arg = arg;
    return c;
}

static void ready_unlink(hp_conn_t *c)
{
    if (!(c->flags & HP_CF_READY)) return;
    hp_link_remove(&c->ready_link);
    c->flags &= ~HP_CF_READY;
}

/* --- accounting -------------------------------------------------------- *
 *
 * Every allocation is charged to exactly one account (alloc.h's scope):
 *
 *   the chain of a route       routes[r][mode].alloc, while the middleware
 *                              and the handler run (ctx->scope);
 *   a request, outside it      ctx->io while the request is read (its
 *                              context, when the pool grows; arena spills
 *                              for long targets and headers; its body; a
 *                              carry kept while it pends), added to
 *                              routes[r][mode].outside when it ends;
 *   a connection's I/O         c->charge between requests: the outside
 *                              account of the route it last answered, for
 *                              pipelined input kept and output the kernel
 *                              refused after that answer;
 *   nothing of a request       metrics.conn_alloc (outside_requests): new
 *                              connections, a request refused before it was
 *                              routed, timers, the upstream pool's own -
 *                              the worker thread's default scope.
 *
 * So the worker's totals are the sum of these, exactly, and the tests
 * check that they are. */

/* The account a connection's I/O goes to now. */
static hp_alloc_counter_t *io_scope(hp_conn_t *c)
{
    return c->ctx ? &c->ctx->io : c->charge;
}

/* The request ends: what it allocated outside its chain goes to its route's
 * outside account (to outside_requests when it never got a route), and its
 * context back to the pool. */
static void request_end(hp_host_t *h, hp_ctx_t *ctx)
{
    hp_alloc_counter_t *to = ctx->stats ? &ctx->stats->outside : &h->metrics.conn_alloc;
    hp_counter_add(&to->count, ctx->io.count);
    hp_counter_add(&to->bytes, ctx->io.bytes);
    if (hp_alloc_scope_get() == &ctx->io) hp_alloc_scope_set(to);
    hp_gen_t *gen = ctx->gen;
    hp_ctx_release(&h->ctx_pool, ctx);
    hp_gen_release(gen);
}

/* End the request on c without answering it (the connection is going). */
static void drop_request(hp_conn_t *c)
{
    hp_ctx_t *ctx = c->ctx;
    if (ctx == NULL) return;
    c->ctx = NULL;
    if (ctx->top.kind != HP_VT_NONE) {
        if (!hp_vtask_is_completed(&ctx->top)) {
            /* Still running: it finishes on its own and then frees itself
             * (request_awaited sees no connection). Its handler, if it
             * asked, hears now that nobody waits for it. */
            ctx->conn = NULL;
            hp_counter_add(&c->host->metrics.conns.requests_aborted, 1);
            hp_abort_cb cb = ctx->abort_cb;
            ctx->abort_cb = NULL;
            if (cb) cb(ctx, ctx->abort_arg); /* may end the request: ctx is gone */
            return;
        }
        /* Completed, but its answer was still waiting for the check phase:
         * nobody else will read it now. */
        hp_chain_consume(ctx, &ctx->top);
    }
    request_end(c->host, ctx);
}

/* The memory of a closed connection: its request, its input, the handle. */
static void teardown(hp_conn_t *c)
{
    drop_request(c);
    hp_free(c->carry);
    c->carry = NULL;
    c->carry_len = 0;
    /* Output still queued means the peer stopped taking it (a deadline, a
     * failed write, the drain's end): reset, so the kernel drops it now
     * instead of keeping it - megabytes - behind a FIN the peer would have
     * to read up to before it learned of the close. */
    if ((c->flags & (HP_CF_WBLOCK | HP_CF_MEMORY)) == HP_CF_WBLOCK &&
        uv_tcp_close_reset(&c->tcp, on_close) == 0)
        return;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* An entry from the loop into c: a read, a write's completion, a resume, a
 * deadline. It holds c (a close meanwhile is finished by the matching
 * leave) and charges what it allocates to c's account now (io_scope); on
 * the way out the worker's default account is set again - nothing is
 * saved and restored: the account is a function of where the loop is. */
static void enter(hp_conn_t *c)
{
    c->hold++;
    hp_alloc_scope_set(io_scope(c));
}

static void leave(hp_conn_t *c)
{
    hp_alloc_scope_set(&c->host->metrics.conn_alloc);
    if (--c->hold == 0 && (c->flags & HP_CF_CLOSED)) teardown(c);
}

void hp_conn_close(hp_conn_t *c)
{
    if (c->flags & HP_CF_CLOSED) return;
    hp_host_t *h = c->host;
    c->flags |= HP_CF_CLOSED;
    stop_reading(c);
    clear_timers(c);
    ready_unlink(c);
    hp_link_remove(&c->all_link);
    h->nconns--;
    hp_counter_set(&h->metrics.conns.open, h->nconns);
    if (c->flags & HP_CF_MEMORY) c->mem->sink(c->mem->arg, NULL, 0);
    if (c->hold == 0) teardown(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    hp_free(req);
}

static void start_linger(hp_conn_t *c)
{
    if (c->state == HP_CONN_LINGER || (c->flags & HP_CF_CLOSED)) return;
    if (c->flags & (HP_CF_MEMORY | HP_CF_EOF)) {
        hp_conn_close(c);
        return;
    }
    c->state = HP_CONN_LINGER;
    uv_shutdown_t *req = hp_malloc(sizeof(*req));
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        hp_free(req);
        hp_conn_close(c);
        return;
    }
    hp_conn_set_timer(c, HP_LIST_LINGER, now_ms(c) + LINGER_MS);
    start_reading(c);
}

void hp_conn_eof(hp_conn_t *c, int err)
{
    if (c->flags & HP_CF_CLOSED) return;
    stop_reading(c);
    /* A reset, a half-read request, or the end of lingering: done. */
    if (err != UV_EOF || (c->state != HP_CONN_IDLE && c->state != HP_CONN_BUSY)) {
        hp_conn_close(c);
        return;
    }
    /* A FIN: the peer has sent all it will. What it sent is answered -
     * what waits in carry is parsed - and proceed() closes once nothing is
     * left, or at once when a request pends (see the top: a departure). */
    c->flags |= HP_CF_EOF;
    enter(c);
    proceed(c);
    leave(c);
}

/* --- output ------------------------------------------------------------ */

/* Output backed up (the kernel, or a memory sink, took part of it): stop
 * reading until it drains, and hold the peer to the write deadline from
 * now. The connection is not idle meanwhile: the write deadline covers it. */
static void blocked(hp_conn_t *c)
{
    hp_counter_add(&c->host->metrics.io.writes_queued, 1);
    c->flags |= HP_CF_WBLOCK;
    stop_reading(c);
    /* A peer that stops reading is held to the idle timeout, as one that
     * stops writing is; more output queued behind does not extend it. */
    if (c->wtimer.list == NULL)
        timer_set(c, &c->wtimer, HP_LIST_WRITE, now_ms(c) + limits(c)->idle_timeout_ms);
    if (on_list(c, &c->rtimer, HP_LIST_IDLE)) hp_timer_stop(&c->rtimer);
}

/* Everything queued has gone: the write deadline ends, the rest goes on. */
static void drained(hp_conn_t *c)
{
    c->flags &= ~HP_CF_WBLOCK;
    hp_timer_stop(&c->wtimer);
    enter(c);
    proceed(c);
    leave(c);
}

static void on_write(uv_write_t *req, int status)
{
    wreq_t *wr = req->data;
    hp_conn_t *c = req->handle->data;
    hp_free(wr);
    if (c->flags & HP_CF_CLOSED) return;
    if (status < 0) {
        hp_conn_close(c);
        return;
    }
    if (c->tcp.write_queue_size == 0) drained(c);
}

static void queue_write(hp_conn_t *c, const char *data, size_t len)
{
    if (c->flags & HP_CF_MEMORY) {
        struct hp_conn_memory *m = c->mem;
        m->pending = hp_realloc(m->pending, m->len + len);
        memcpy(m->pending + m->len, data, len);
        m->len += len;
        blocked(c);
        return;
    }
    wreq_t *wr = hp_malloc(sizeof(*wr) + len);
    memcpy(wr->data, data, len);
    wr->buf = uv_buf_init(wr->data, (unsigned)len);
    wr->req.data = wr;
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &wr->buf, 1, on_write) != 0) {
        hp_free(wr);
        hp_conn_close(c);
        return;
    }
    blocked(c);
}

void hp_conn_memory_writable(hp_conn_t *c)
{
    struct hp_conn_memory *m = c->mem;
    if ((c->flags & HP_CF_CLOSED) || !(c->flags & HP_CF_WBLOCK)) return;
    long n = m->sink(m->arg, m->pending, m->len);
    if (n < 0) {
        hp_conn_close(c);
        return;
    }
    memmove(m->pending, m->pending + n, m->len - (size_t)n);
    m->len -= (size_t)n;
    if (m->len == 0) drained(c);
}

/* Send what the worker's output buffer holds for c: one write syscall when
 * the kernel takes it all, which on loopback is nearly always. */
static void flush(hp_conn_t *c)
{
    hp_wbuf_t *out = &c->host->out;
    if (out->len == 0) return;
    size_t len = out->len;
    out->len = 0;
    hp_counter_add(&c->host->metrics.io.bytes_out, len);
    if (c->flags & HP_CF_CLOSED) return;
    if (c->flags & HP_CF_WBLOCK) {
        queue_write(c, out->data, len); /* behind what waits already */
        return;
    }
    long n;
    if (c->flags & HP_CF_MEMORY) {
        n = c->mem->sink(c->mem->arg, out->data, len);
    } else {
        uv_buf_t b = {.base = out->data, .len = len};
        n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        hp_counter_add(&c->host->metrics.io.writes, 1);
        if (n == UV_EAGAIN) n = 0;
    }
    if (n == (long)len) return;
    if (n < 0) {
        hp_conn_close(c);
        return;
    }
    queue_write(c, out->data + n, len - (size_t)n);
}

void hp_conn_continue(hp_conn_t *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    memcpy(hp_wbuf_reserve(&c->host->out, sizeof(cont) - 1), cont, sizeof(cont) - 1);
    c->host->out.len += sizeof(cont) - 1;
    flush(c);
}

/* --- requests ---------------------------------------------------------- */

hp_ctx_t *hp_conn_begin(hp_conn_t *c)
{
    hp_host_t *h = c->host;
    hp_ctx_t *ctx;
    if (h->ctx_pool.free) {
        ctx = hp_ctx_acquire(&h->ctx_pool); /* allocates nothing: ctx->io is 0 */
    } else {
        /* A context the pool has to make is this request's allocation. */
        hp_alloc_counter_t grown = {0, 0};
        hp_alloc_scope_set(&grown);
        ctx = hp_ctx_acquire(&h->ctx_pool);
        ctx->io = grown;
        hp_counter_set(&h->metrics.conns.request_contexts, h->ctx_pool.size);
    }
    hp_alloc_scope_set(&ctx->io);
    ctx->conn = c;
    ctx->host = h;
    ctx->gen = hp_gen_ref(h->gen);
    ctx->mode = ctx->gen->mode;
    ctx->seq = ++h->req_seq;
    c->ctx = ctx;
    return ctx;
}

/* Write ctx's answer and end the request. status is the chain's result. */
static void finish(hp_conn_t *c, hp_ctx_t *ctx, int status)
{
    hp_host_t *h = c->host;
    if (status != 0) {
        /* A fault reached the top: nobody answered for it, so the server
         * does, with the fault's message, as Kestrel answers an unhandled
         * exception with 500. */
        hp_resp_t *r = &ctx->resp;
        hp_buf_unref(r->buf);
        r->buf = NULL;
        r->nheaders = 0;
        r->head_len = 0;
        hp_resp_set(ctx, 500, "text/plain", HP_STR("internal error\n"));
        r->close = false;
    }
    if (ctx->resp.status == 0) hp_resp_set(ctx, 500, "text/plain", HP_STR("no response\n"));
    if (ctx->resp.close || h->draining) c->flags |= HP_CF_CLOSE;
    hp_response_write(&h->out, ctx, !(c->flags & HP_CF_CLOSE));
    hp_route_stats_t *rs = ctx->stats;
    hp_counter_add(&rs->requests, 1);
    c->ctx = NULL;
    c->state = HP_CONN_IDLE;
    /* The read deadline the request had (the head's or the body's; none
     * when it pended) becomes the keep-alive timeout's, in one move - unless
     * the connection closes, or answers wait for the peer (the write
     * deadline covers it then). */
    if (c->flags & (HP_CF_CLOSE | HP_CF_WBLOCK))
        hp_conn_set_timer(c, HP_LIST_NONE, 0);
    else
        hp_conn_set_timer(c, HP_LIST_IDLE, now_ms(c) + limits(c)->idle_timeout_ms);
    /* What the connection does next for this answer (write what the kernel
     * refuses, keep pipelined input) is this route's, outside the chain. */
    c->charge = &rs->outside;
    request_end(h, ctx);
    hp_alloc_scope_set(c->charge);
}

static void request_awaited(void *arg)
{
    hp_ctx_t *ctx = arg;
    hp_conn_t *c = ctx->conn;
    hp_host_t *h = ctx->host;
    /* Closed while a frame still holds it: its teardown reads the result. */
    if (c && (c->flags & HP_CF_CLOSED)) return;
    if (c == NULL) {
        /* The client left while its request ran: finish it quietly, then
         * back to the account of whatever completed it (a loop entry of
         * its own: the upstream client's, the cache's). */
        hp_alloc_counter_t *completer = hp_alloc_scope_set(ctx->scope);
        hp_chain_consume(ctx, &ctx->top);
        request_end(h, ctx);
        hp_alloc_scope_set(completer);
        return;
    }
    /* Not here: this runs inside whatever completed the request (an
     * upstream read, a cache fill), and answering may start new work on
     * that same object. The check phase runs it on a clean stack. */
    if (!(c->flags & HP_CF_READY)) {
        c->flags |= HP_CF_READY;
        hp_link_push_back(&h->ready, &c->ready_link);
        uv_idle_start(&h->kick, on_kick);
    }
}

int hp_conn_dispatch(hp_conn_t *c)
{
    if (c->flags & HP_CF_CLOSED) return HPE_PAUSED;
    hp_host_t *h = c->host;
    hp_ctx_t *ctx = c->ctx;
    c->state = HP_CONN_BUSY;
    if (!ctx->req.keep_alive || (c->flags & HP_CF_UPGRADE)) c->flags |= HP_CF_CLOSE;

    ctx->scope = &ctx->stats->alloc;
    hp_alloc_scope_set(ctx->scope);
    hp_vtask_t vt = hp_chain_start(ctx);
    int status = hp_chain_try_consume(ctx, &vt);
    if (status == HP_EVTASK_PENDING) {
        ctx->top = vt;
        status = hp_vtask_on_completed(&ctx->top, request_awaited, ctx);
        if (status == 0) {
            hp_conn_set_timer(c, HP_LIST_NONE, 0); /* BUSY: the server is working */
            hp_alloc_scope_set(io_scope(c));       /* parsing goes on for the request */
            return HPE_PAUSED;
        }
        /* Refused (the chain returned a valuetask already awaited: a
         * misuse, counted): no continuation will ever run, so the request
         * is answered now, with the refusal as its fault (a 500). */
        hp_vtask_drop(&ctx->top);
        ctx->fault = hp_strerror(status);
    }
    finish(c, ctx, status); /* and the scope is the connection's again */
    if (c->flags & HP_CF_CLOSE) return HPE_PAUSED;
    if (h->out.len >= FLUSH_AT) {
        flush(c);
        if (c->flags & (HP_CF_WBLOCK | HP_CF_CLOSED)) return HPE_PAUSED;
    }
    return 0;
}

static void resume(hp_conn_t *c)
{
    hp_ctx_t *ctx = c->ctx;
    enter(c);
    hp_alloc_scope_set(ctx->scope);
    finish(c, ctx, hp_chain_consume(ctx, &ctx->top));
    proceed(c);
    leave(c);
}

static void resume_ready(hp_host_t *h)
{
    while (!hp_link_empty(&h->ready)) {
        hp_conn_t *c = hp_container_of(h->ready.next, hp_conn_t, ready_link);
        ready_unlink(c);
        if (!(c->flags & HP_CF_CLOSED)) resume(c);
    }
}

static void on_check(uv_check_t *check)
{
    hp_host_t *h = check->data;
    resume_ready(h);
    if (hp_link_empty(&h->ready)) uv_idle_stop(&h->kick);
}

static void on_kick(uv_idle_t *idle)
{
    /* Nothing to do: being active is the point (the poll does not block,
     * so the check phase that follows it resumes the ready connections). */
}

int hp_conns_open(hp_host_t *h, uv_loop_t *loop)
{
    int rc = uv_check_init(loop, &h->resume);
    if (rc) return rc;
    h->resume.data = h;
    rc = uv_idle_init(loop, &h->kick);
    if (rc) {
        uv_close((uv_handle_t *)&h->resume, NULL);
        return rc;
    }
    h->kick.data = h;
    rc = uv_check_start(&h->resume, on_check);
    if (rc) hp_conns_close(h);
    return rc;
}

void hp_conns_close(hp_host_t *h)
{
    uv_close((uv_handle_t *)&h->resume, NULL);
    uv_close((uv_handle_t *)&h->kick, NULL);
}

/* --- parsing ----------------------------------------------------------- */

static hp_reject_t reason_for(enum llhttp_errno err)
{
    switch (err) {
    case HPE_INVALID_VERSION: return HP_REJECT_VERSION;
    case HPE_INVALID_HEADER_TOKEN:
    case HPE_LF_EXPECTED:
    case HPE_CR_EXPECTED: return HP_REJECT_BAD_HEADER;
    case HPE_INVALID_CONTENT_LENGTH:
    case HPE_UNEXPECTED_CONTENT_LENGTH:
    case HPE_INVALID_TRANSFER_ENCODING:
    case HPE_INVALID_CHUNK_SIZE:
    case HPE_INVALID_EOF_STATE:
    case HPE_STRICT: return HP_REJECT_BAD_BODY;
    default: return HP_REJECT_BAD_REQUEST;
    }
}

static void reject(hp_conn_t *c, hp_reject_t why)
{
    hp_host_t *h = c->host;
    drop_request(c);
    hp_counter_add(&h->metrics.rejects[why], 1);
    hp_response_reject(&h->out, why, h->date);
    c->flags |= HP_CF_CLOSE;
    c->state = HP_CONN_IDLE;
    hp_conn_set_timer(c, HP_LIST_NONE, 0);
}

/* Keep the input after a pause point for later. When the input being
 * parsed was the carry itself (data == c->carry), move within it. */
static void keep_carry(hp_conn_t *c, const char *data, const char *pos, size_t rest)
{
    if (c->carry && data == c->carry) {
        memmove(c->carry, pos, rest);
    } else {
        hp_free(c->carry);
        c->carry = hp_malloc(rest);
        memcpy(c->carry, pos, rest);
    }
    c->carry_len = (uint32_t)rest;
}

static void parse_input(hp_conn_t *c, const char *data, size_t len)
{
    const char *buf = data, *end = data + len;
    enum llhttp_errno err;
    for (;;) {
        /* Input llhttp must not see as it comes (a chunk-size line, an
         * unknown method) goes through the parser's scanner first. */
        if (c->ctx && c->ctx->scan) {
            err = hp_parser_scan(c, &data, end);
            if (c->flags & HP_CF_CLOSED) return;
            if (err != HPE_OK) break;
            if (data == end) return; /* the scan goes on with the next read */
        }
        c->host->parse_end = end;
        err = llhttp_execute(&c->parser, data, (size_t)(end - data));
        /* Closed under llhttp (a failed write in a callback): the callback
         * stopped it, and nothing of the input is wanted any more. */
        if (c->flags & HP_CF_CLOSED) return;
        if (err == HPE_PAUSED && c->ctx && c->ctx->scan) {
            /* Paused at a chunk-size line: the scanner takes it from here. */
            data = llhttp_get_error_pos(&c->parser);
            llhttp_resume(&c->parser);
            continue;
        }
        if (err == HPE_INVALID_METHOD && c->ctx) {
            /* 501 for a method llhttp does not know, 400 for garbage: the
             * scanner reads on to tell them apart. */
            data = llhttp_get_error_pos(&c->parser);
            hp_parser_scan_method(c);
            continue;
        }
        break;
    }
    if (err == HPE_OK) {
        /* Between requests with no deadline yet (one just answered): the idle
         * timeout starts. A connection that already has one keeps it: llhttp
         * skips empty lines without a callback, and a client sending only
         * those must not push its deadline back forever. */
        if (c->state == HP_CONN_IDLE && c->ctx == NULL && c->rtimer.list == NULL)
            hp_conn_set_timer(c, HP_LIST_IDLE, now_ms(c) + limits(c)->idle_timeout_ms);
        return;
    }
    if (err == HPE_PAUSED) {
        /* llhttp does not remember where it stopped: the rest starts at
         * the error position, and the parser continues from a resume. */
        const char *pos = llhttp_get_error_pos(&c->parser);
        llhttp_resume(&c->parser);
        size_t rest = (size_t)(end - pos);
        if (rest && !(c->flags & HP_CF_CLOSE)) keep_carry(c, buf, pos, rest);
        return;
    }
    if (err == HPE_PAUSED_UPGRADE) {
        c->flags |= HP_CF_CLOSE; /* answered; no protocol switch here */
        return;
    }
    reject(c, c->reject ? (hp_reject_t)c->reject : reason_for(err));
}

/* Parse input; then, when it ended inside a request head, arm the head's
 * deadline, once per request: from the loop's clock, which has not moved
 * since the head began (on_message_begin runs in this same read). A head
 * that ends in the read it begins in - nearly every one - never arms it. */
static void parse(hp_conn_t *c, const char *data, size_t len)
{
    parse_input(c, data, len);
    hp_ctx_t *ctx = c->ctx;
    if (c->state == HP_CONN_HEAD && ctx && !ctx->head_timed && !(c->flags & HP_CF_CLOSED)) {
        ctx->head_timed = true;
        hp_conn_set_timer(c, HP_LIST_HEAD, now_ms(c) + limits(c)->header_timeout_ms);
    }
}

/* Input that arrives while a request runs or output is backed up waits
 * behind what is already kept, up to this much (sockets stop reading long
 * before, at BUSY_READ_MAX, so only a memory connection's feeder can get
 * here). */
#define CARRY_MAX (1024 * 1024)

static void append_carry(hp_conn_t *c, const char *data, size_t len)
{
    if (c->carry_len + len > CARRY_MAX) {
        hp_conn_close(c);
        return;
    }
    c->carry = hp_realloc(c->carry, c->carry_len + len);
    memcpy(c->carry + c->carry_len, data, len);
    c->carry_len += (uint32_t)len;
}

void hp_conn_feed(hp_conn_t *c, const char *data, size_t len)
{
    if (c->state == HP_CONN_LINGER || (c->flags & (HP_CF_CLOSE | HP_CF_CLOSED))) {
        /* Lingering, or answered with close: what still arrives is drained
         * and dropped. */
        return;
    }
    enter(c);
    if (c->state == HP_CONN_BUSY || (c->flags & HP_CF_WBLOCK))
        append_carry(c, data, len);
    else
        parse(c, data, len);
    proceed(c);
    leave(c);
}

/* After anything happened on c: go on with pipelined input if nothing
 * blocks, send the output, and read again, linger or close. */
static void proceed(hp_conn_t *c)
{
    if (c->host->draining && c->state == HP_CONN_IDLE && c->ctx == NULL) c->flags |= HP_CF_CLOSE;
    while (c->carry && c->state != HP_CONN_BUSY &&
           !(c->flags & (HP_CF_WBLOCK | HP_CF_CLOSE | HP_CF_CLOSED))) {
        char *buf = c->carry;
        size_t n = c->carry_len;
        c->carry_len = 0;
        parse(c, buf, n);
        if (c->carry_len == 0) {
            hp_free(c->carry);
            c->carry = NULL;
        }
    }
    flush(c);
    if (c->flags & HP_CF_CLOSED) return;
    if (c->state == HP_CONN_BUSY) {
        /* A request pends, and the peer has sent its FIN: it has left (see
         * the top). Close, which aborts the request - unless its answer is
         * ready, or answers before it still drain (then drained() comes
         * back here). */
        if ((c->flags & (HP_CF_EOF | HP_CF_READY | HP_CF_WBLOCK)) == HP_CF_EOF) {
            hp_conn_close(c);
            return;
        }
        /* A request pends: read on, so that a peer that goes away is
         * noticed now and its request told (hp_ctx_on_abort), not when the
         * answer finds a dead socket - unless answers are backed up, or
         * BUSY_READ_MAX of pipelined input already waits in carry. */
        if (!(c->flags & HP_CF_WBLOCK) && c->carry_len < BUSY_READ_MAX)
            start_reading(c);
        else
            stop_reading(c);
        return;
    }
    if ((c->flags & HP_CF_EOF) && !(c->flags & HP_CF_WBLOCK)) {
        hp_conn_close(c); /* answered all the peer sent */
        return;
    }
    if (c->flags & HP_CF_CLOSE) {
        if (!(c->flags & HP_CF_WBLOCK)) start_linger(c);
        return;
    }
    if (c->flags & HP_CF_WBLOCK) return;
    if (c->state == HP_CONN_IDLE && c->rtimer.list == NULL)
        hp_conn_set_timer(c, HP_LIST_IDLE, now_ms(c) + limits(c)->idle_timeout_ms);
    start_reading(c);
}

/* --- timeouts, drain --------------------------------------------------- */

/* A head or body that did not arrive in time: 408 and close - or, when
 * the peer is not taking our output either, just close (no answer could
 * reach it). */
static void timed_out(hp_conn_t *c, hp_reject_t why)
{
    if (c->flags & HP_CF_WBLOCK) {
        hp_counter_add(&c->host->metrics.rejects[why], 1);
        hp_conn_close(c);
        return;
    }
    reject(c, why);
    proceed(c);
}

static void expire(hp_conn_t *c, uint8_t list)
{
    hp_host_t *h = c->host;
    switch (list) {
    case HP_LIST_HEAD:
        if (c->state == HP_CONN_HEAD)
            timed_out(c, HP_REJECT_HEADER_TIMEOUT);
        else
            hp_conn_close(c); /* connected, never sent a byte */
        break;
    case HP_LIST_BODY: timed_out(c, HP_REJECT_BODY_TIMEOUT); break;
    case HP_LIST_IDLE:
        hp_counter_add(&h->metrics.conns.idle_closed, 1);
        hp_conn_close(c);
        break;
    case HP_LIST_WRITE:
        hp_counter_add(&h->metrics.conns.write_timeouts, 1);
        hp_conn_close(c);
        break;
    default: hp_conn_close(c); break; /* lingering */
    }
}

unsigned hp_conn_sweep(hp_host_t *h, uint64_t now)
{
    unsigned n = 0;
    for (int l = 0; l < HP_LISTS; l++) {
        hp_timer_t *t;
        while ((t = hp_timer_expired(&h->timers[l], now)) != NULL) {
            hp_conn_t *c = conn_of_timer(t, l);
            hp_timer_stop(t); /* it fired: whatever expire does, it is off */
            enter(c);
            expire(c, l);
            leave(c);
            n++;
        }
    }
    return n;
}

void hp_conn_drain_all(hp_host_t *h)
{
    /* Idle connections close now; the others answer what they are reading
     * or running with Connection: close (finish() checks host->draining). */
    hp_link_t *next;
    for (hp_link_t *l = h->all.next; l != &h->all; l = next) {
        next = l->next;
        hp_conn_t *c = hp_container_of(l, hp_conn_t, all_link);
        if (c->state == HP_CONN_IDLE && c->ctx == NULL && !(c->flags & HP_CF_WBLOCK))
            hp_conn_close(c);
    }
}

void hp_conn_close_all(hp_host_t *h)
{
    while (!hp_link_empty(&h->all))
        hp_conn_close(hp_container_of(h->all.next, hp_conn_t, all_link));
}

const char *hp_ctx_peer(hp_ctx_t *ctx, char *buf, size_t len)
{
    hp_conn_t *c = ctx->conn;
    struct sockaddr_storage ss;
    int n = sizeof(ss);
    if (c == NULL || (c->flags & HP_CF_MEMORY) ||
        uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &n) != 0)
        return "-";
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, buf, len);
    else
        uv_ip4_name((struct sockaddr_in *)&ss, buf, len);
    return buf;
}
