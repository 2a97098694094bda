/*
 * ctx.c - request contexts: the pool, the arena, response helpers (ctx.h).
 *
 * The arena is a bump pointer over the context's own 2 KiB; a request that
 * needs more spills to heap chunks on a list freed at release. Nothing is
 * freed individually: request-scoped memory lives exactly as long as the
 * request, as in nginx's per-request pools.
 */
#include "ctx.h"

#include "runtime/alloc.h"

#include <string.h>
#include <uv.h>

struct spill {
    struct spill *next;
    char data[];
};

void *hp_ctx_alloc_spill(hp_ctx_t *ctx, size_t n)
{
    struct spill *s = hp_malloc(sizeof(*s) + n);
    s->next = ctx->spill;
    ctx->spill = s;
    return s->data;
}

hp_str_t hp_ctx_strdup(hp_ctx_t *ctx, const char *s, size_t n)
{
    char *d = hp_ctx_alloc(ctx, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return (hp_str_t){d, n};
}

void hp_ctx_on_abort(hp_ctx_t *ctx, hp_abort_cb cb, void *arg)
{
    ctx->abort_cb = cb;
    ctx->abort_arg = arg;
}

void hp_resp_take(hp_ctx_t *ctx, uint16_t status, const char *ctype, char *body, size_t len)
{
    hp_free(ctx->resp.body_owned);
    ctx->resp.body_owned = body;
    hp_resp_set(ctx, status, ctype, (hp_str_t){body, len});
}

void hp_resp_buf(hp_ctx_t *ctx, hp_buf_t *buf)
{
    hp_buf_unref(ctx->resp.buf);
    ctx->resp.buf = buf;
    hp_resp_set(ctx, buf->status, buf->ctype, (hp_str_t){buf->body, buf->len});
}

/* Per request, so only what a request can have changed: the fields above
 * `layers` but the response's unused header slots, and the layers that
 * pended - in full: their source's version moves on, so outstanding tokens
 * go stale. A layer that completed synchronously (every layer of a
 * /plaintext request) touched nothing of its slot but its mark, which
 * hp_next zeroes as it enters the layer. Resetting all HP_CHAIN_MAX + 1
 * layers and the whole header array was 40% of the release's cost on
 * /plaintext; resetting every entered layer in full, another 80
 * instructions. */
_Static_assert(HP_CHAIN_MAX + 1 <= 16, "ctx->pended has a bit per layer");

/* The part of the context a request resets: 16-byte stores, unrolled (and
 * an 8-byte one for an odd tail). A memset of this constant size compiles
 * to `rep stosq`, 54 iterations (and instructions, to callgrind), slow to
 * start on most cores. */
#define RESET_BYTES offsetof(hp_ctx_t, resp.headers)
_Static_assert(RESET_BYTES % 8 == 0, "the reset part is whole 8-byte words");
static inline void zero_reset_part(hp_ctx_t *ctx)
{
    typedef uint64_t v16 __attribute__((vector_size(16), may_alias, aligned(8)));
    typedef uint64_t u64 __attribute__((may_alias));
    v16 *w = (v16 *)(void *)ctx;
#pragma GCC unroll 32
    for (size_t i = 0; i < RESET_BYTES / 16; i++)
        w[i] = (v16){0, 0};
    if (RESET_BYTES % 16) *(u64 *)(void *)((char *)ctx + RESET_BYTES - 8) = 0;
}

static void reset(hp_ctx_t *ctx)
{
    char *body = ctx->req.body;
    for (unsigned pended = ctx->pended; pended; pended &= pended - 1) {
        hp_layer_t *l = &ctx->layers[__builtin_ctz(pended)];
        if (l->task) hp_task_unref(l->task); /* task mode's pending layers */
        hp_vtsource_reset(&l->source);
        l->task = NULL;
        l->downstream.kind = HP_VT_NONE;
        l->self = NULL;
        l->after = NULL;
    }
    zero_reset_part(ctx);
    ctx->req.body = body;
    ctx->depth = -1;
}

hp_ctx_t *hp_ctx_new(hp_ctx_pool_t *pool)
{
    hp_ctx_t *ctx = hp_calloc(1, sizeof(*ctx));
    for (int i = 0; i <= HP_CHAIN_MAX; i++) {
        hp_vtsource_init(&ctx->layers[i].source);
        ctx->layers[i].ctx = ctx;
    }
    ctx->depth = -1;
    pool->size++;
    return ctx;
}

/* Bodies up to this size keep their buffer for the next request on the
 * context, so steady /echo traffic stops allocating; bigger ones are freed
 * so one large upload does not pin memory in the pool. */
#define KEEP_BODY_CAP (64 * 1024)

void hp_ctx_release(hp_ctx_pool_t *pool, hp_ctx_t *ctx)
{
    while (ctx->spill) {
        struct spill *s = ctx->spill;
        ctx->spill = s->next;
        hp_free(s);
    }
    if (ctx->resp.body_owned) hp_free(ctx->resp.body_owned);
    if (ctx->resp.buf) hp_buf_unref(ctx->resp.buf);
    if (ctx->body_cap > KEEP_BODY_CAP) {
        hp_free(ctx->req.body);
        ctx->req.body = NULL;
        ctx->body_cap = 0;
    }
    reset(ctx);
    ctx->next_free = pool->free;
    pool->free = ctx;
    pool->idle++;
}

void hp_ctx_pool_free(hp_ctx_pool_t *pool)
{
    while (pool->free) {
        hp_ctx_t *ctx = pool->free;
        pool->free = ctx->next_free;
        hp_free(ctx->req.body);
        hp_free(ctx);
    }
    pool->idle = 0;
}
