/*
 * ctx.h - hp_ctx, the per-request context: the request, the response, and
 * the chain's per-layer state, in one pooled object.
 *
 * A connection takes a context from its worker's pool when a request begins
 * and gives it back when the response has been written (or the connection
 * has gone). Idle keep-alive connections hold none, which is what keeps an
 * idle connection under half a kilobyte; the pool keeps the request path
 * free of allocations once it has grown to the worker's concurrency.
 *
 * The context embeds one hp_vtsource per chain layer: a layer that cannot
 * finish synchronously hands its caller a valuetask backed by its own source
 * (IValueTaskSource pooled in the request, as Kestrel pools its
 * HttpProtocol), so even the asynchronous path allocates nothing in
 * valuetask mode. Returning the context to the pool resets every source,
 * which bumps its version: a valuetask kept past its request is detected as
 * stale, never silently read.
 *
 * Request-scoped memory (hp_ctx_alloc) comes from an arena inside the
 * context, spilling to the heap only when a request needs more.
 *
 * What a layer may ask of the worker it runs on - its clock, the Date,
 * request numbers, its configuration, its route's figures - it asks through
 * the accessors below (host.c implements them): layers never see the
 * worker's struct, nor this struct's private part.
 *
 * Threading: a context belongs to one worker.
 */
#ifndef HP_CTX_H
#define HP_CTX_H

#include "config.h"
#include "http.h"
#include "layers.h"

#include "runtime/alloc.h"
#include "runtime/vtask.h"

#include <uv.h>

typedef struct hp_ctx hp_ctx_t;
typedef struct hp_gen hp_gen_t;
typedef struct hp_conn hp_conn_t;
typedef struct hp_layer_stats hp_layer_stats_t;
typedef struct hp_handler_slot hp_handler_slot_t;
typedef struct hp_route_stats hp_route_stats_t;
typedef struct hp_router hp_router_t;

/* What a layer runs after its downstream completed, synchronously or not.
 * status is 0 when the downstream produced a response, or its fault code. */
typedef void (*hp_after_cb)(void *self, hp_ctx_t *ctx, int status);

/* What a request's handler runs when its client goes away (hp_ctx_on_abort). */
typedef void (*hp_abort_cb)(hp_ctx_t *ctx, void *arg);

/* One chain layer's state inside the context (see chain.h). Private to the
 * chain except for `mark`, which the layer may use for the request. */
typedef struct {
    hp_vtsource_t source;  /* valuetask mode: what a pending layer returns */
    hp_task_t *task;       /* task mode: the pending layer's heap task */
    hp_vtask_t downstream; /* what the layer waits for */
    hp_ctx_t *ctx;
    void *self;
    hp_after_cb after;
    uint64_t mark; /* the layer's own per-request value (a start time) */
} hp_layer_t;

/* 2 KiB: a request target of typical length, the few headers kept, the
 * generated request id and a serialized /json body fit with room to spare;
 * longer targets spill to the heap (counted). */
#define HP_CTX_ARENA 2048

struct hp_ctx {
    /* --- what middleware and handlers use --------------------------- */
    hp_req_t req;
    hp_mode_t mode; /* the mode this request started under */
    const hp_route_t *route;
    const char *fault; /* message of a fault that reached the top */

    /* --- private: chain, connection, parser ------------------------- */
    hp_host_t *host;                  /* the worker it runs on */
    hp_gen_t *gen;                    /* the configuration generation it runs under */
    const hp_handler_slot_t *handler; /* its route's handler on this worker */
    hp_conn_t *conn;                  /* NULL once the connection has gone */
    hp_alloc_counter_t *scope;        /* its chain's allocations: the route's account */
    hp_route_stats_t *stats;          /* its route and mode's figures, set with route */
    hp_alloc_counter_t io;            /* its allocations outside the chain, so far */
    int depth;                        /* layer currently running; -1 = the server */
    hp_vtask_t top;                   /* the whole chain's valuetask, when pending */
    hp_abort_cb abort_cb;             /* hp_ctx_on_abort's, while it may run */
    void *abort_arg;
    uint64_t seq; /* request number on its worker */

    uint32_t head_bytes; /* request line + headers seen so far */
    uint32_t line_bytes; /* request line seen so far */
    uint16_t nheaders;
    uint8_t nhosts; /* Host lines seen */
    bool repeated;  /* X-Request-Id came twice or malformed */
    uint8_t hdr;    /* which kept header is being read */
    uint8_t hname_len;
    char hname[24]; /* the current header name, as sent */
    hp_reject_t reject;
    uint8_t scan;            /* the parser's scanner state (parser.c), 0: off */
    bool last_chunk;         /* the chunk being read is the last (size 0) */
    uint16_t scan_n;         /* bytes counted by the scan in progress */
    uint32_t chunk_ext;      /* chunk-extension bytes in this request's body */
    uint8_t te_len;          /* Transfer-Encoding: the current coding's length */
    bool te_chunked;         /* ...it spells "chunked" so far */
    bool te_other;           /* a coding other than chunked was listed */
    bool value_piece;        /* a piece of the current header value was seen */
    bool value_piece_at_end; /* ...and it ended where the input ended */
    bool body_wanted;        /* the route reads the body; else drained */
    char *grow;              /* the string the parser is appending to (parser.c) */
    uint32_t grow_cap;       /* ...and the room it has, its NUL included */
    struct spill *spill;     /* heap chunks beyond the arena */
    size_t arena_used;
    uint16_t pended; /* bit i: layer i pended (its source, task or downstream used) */
    bool head_timed; /* the head's deadline is armed (conn.c's parse) */

    /* Last of the reset part, so that its header array (192 bytes, read
     * only up to resp.nheaders) can be left out of the per-request memset. */
    hp_resp_t resp;

    /* --- kept across requests (hp_ctx_release zeroes only the above) -- */
    hp_layer_t layers[HP_CHAIN_MAX + 1];
    size_t body_cap; /* capacity of req.body, kept for reuse */
    hp_ctx_t *next_free;
    char arena[HP_CTX_ARENA];
};

/* Be told, once, if the connection goes away while this request pends -
 * the peer reset it or closed it (a FIN: nginx's client abort, see
 * conn.c), a write to it failed, the drain's deadline closed it.
 * cb(ctx, arg) runs from the close, with ctx->conn already NULL: it cancels
 * or detaches what the request waits for (an upstream request, a queued
 * slot). The request still ends the usual way, by completing its valuetask
 * (with a fault or an answer nobody reads: the server releases the context
 * then), and may do so inside cb. One hook per request: a second call
 * replaces the first; forgotten when the request ends. While a
 * request pends, its connection reads on to notice, unless the peer
 * pipelines more than 64 KiB behind it (then it is noticed at the answer). */
void hp_ctx_on_abort(hp_ctx_t *ctx, hp_abort_cb cb, void *arg);

/* Request-scoped memory, 8-byte aligned, freed when the request ends.
 * Inline where it fits the arena (the target, a kept header, a request
 * id: every request takes some); a spill to the heap is a call. */
void *hp_ctx_alloc_spill(hp_ctx_t *ctx, size_t n);
static inline void *hp_ctx_alloc(hp_ctx_t *ctx, size_t n)
{
    size_t at = (ctx->arena_used + 7) & ~(size_t)7;
    if (at + n > HP_CTX_ARENA) return hp_ctx_alloc_spill(ctx, n);
    ctx->arena_used = at + n;
    return ctx->arena + at;
}

/* A request-scoped copy of s[0..n). */
hp_str_t hp_ctx_strdup(hp_ctx_t *ctx, const char *s, size_t n);

/* Add a response header. name must be static; value is borrowed and must
 * live until the response is written (static, or hp_ctx_alloc'd). Returns
 * UV_ENOBUFS when HP_RESP_MAX_HEADERS are already set. Inline, so that a
 * literal name's length is the compiler's work, not the writer's. */
static inline int hp_resp_header(hp_ctx_t *ctx, const char *name, hp_str_t value)
{
    hp_resp_t *r = &ctx->resp;
    if (r->nheaders == HP_RESP_MAX_HEADERS) return UV_ENOBUFS;
    size_t n = __builtin_strlen(name);
    r->headers[r->nheaders++] = (hp_header_t){name, n, value};
    r->head_len += n + 2 + value.len + 2;
    return 0;
}

/* Set status, content type (static) and body (borrowed, must live until the
 * write) in one call. Inline for the same reason. */
static inline void hp_resp_set(hp_ctx_t *ctx, uint16_t status, const char *ctype, hp_str_t body)
{
    ctx->resp.status = status;
    ctx->resp.ctype = ctype;
    ctx->resp.ctype_len = ctype ? __builtin_strlen(ctype) : 0;
    ctx->resp.body = body;
}

/* Answer with a body the context takes (hp_malloc'd). */
void hp_resp_take(hp_ctx_t *ctx, uint16_t status, const char *ctype, char *body, size_t len);

/* Answer from a buffer: takes one reference (dropped after the write). */
void hp_resp_buf(hp_ctx_t *ctx, hp_buf_t *buf);

/* The client's address as text ("127.0.0.1"), or "-" when unknown. One
 * getpeername call: for the access log, not for the hot path. */
const char *hp_ctx_peer(hp_ctx_t *ctx, char *buf, size_t len);

/* --- what a layer may ask of its worker (host.c) ----------------------- */

/* The worker's loop clock (uv_now), in milliseconds. */
uint64_t hp_ctx_now_ms(const hp_ctx_t *ctx);

/* The Date header's value ("Sun, 06 Nov 1994 08:49:37 GMT"), formatted by
 * the worker's tick when the second changes; and that second, Unix time. */
hp_str_t hp_ctx_date(const hp_ctx_t *ctx);
int64_t hp_ctx_date_s(const hp_ctx_t *ctx);

/* The request's number on its worker (from 1), the worker's number (from
 * 0), and the server's boot id (random per process run; 0 without a
 * server, in tests): together unique per run. */
static inline uint64_t hp_ctx_seq(const hp_ctx_t *ctx)
{
    return ctx->seq;
}
unsigned hp_ctx_worker_index(const hp_ctx_t *ctx);
uint32_t hp_ctx_boot_id(const hp_ctx_t *ctx);

/* The configuration the request runs under (borrowed for its life), and
 * the mode the worker starts new requests in now (a reload may have
 * changed it since this one began). */
const hp_config_t *hp_ctx_config(const hp_ctx_t *ctx);
hp_mode_t hp_ctx_worker_mode(const hp_ctx_t *ctx);

/* For GET /healthz: notes that something checks this server's health (so
 * that a stop first gives it limits.drain_health_ms to notice, host.h)
 * and says whether the server still takes work: false once it stops. */
bool hp_ctx_healthy(hp_ctx_t *ctx);

/* The worker's routes (router.h), for answers about them (the index, 405's
 * Allow, OPTIONS). */
const hp_router_t *hp_ctx_router(const hp_ctx_t *ctx);

/* This request's route and mode figures on its worker (metrics.h), which
 * the worker alone writes: the metrics middleware counts answers here. */
static inline hp_route_stats_t *hp_ctx_route_stats(const hp_ctx_t *ctx)
{
    return ctx->stats;
}

/* --- the pool (worker and connection only) ----------------------------- */

typedef struct {
    hp_ctx_t *free;
    uint64_t size; /* contexts ever made */
    uint64_t idle; /* contexts in the pool now */
} hp_ctx_pool_t;

/* Returns a reset context, allocating only when the pool is empty (inline
 * when it is not: once the pool has grown, every request's case). */
hp_ctx_t *hp_ctx_new(hp_ctx_pool_t *pool);
static inline hp_ctx_t *hp_ctx_acquire(hp_ctx_pool_t *pool)
{
    hp_ctx_t *ctx = pool->free;
    if (ctx == NULL) return hp_ctx_new(pool);
    pool->free = ctx->next_free;
    pool->idle--;
    ctx->next_free = NULL;
    return ctx;
}

/* End the request: free its request-scoped memory and drop its response
 * references, reset every layer source (stale tokens from now on), return
 * it to the pool. */
void hp_ctx_release(hp_ctx_pool_t *pool, hp_ctx_t *ctx);

void hp_ctx_pool_free(hp_ctx_pool_t *pool);

#endif
