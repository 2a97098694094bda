/*
 * request_id - an X-Request-Id on every answer: the client's own when it
 * sent a well-formed one (parser.c checks the characters and the length),
 * otherwise one generated here.
 *
 * Before: decide the id, so every layer below (the access log, a handler)
 * can use it. After: put it on the answer. A generated id is the server's
 * boot id, the worker, and the worker's request number, in hex
 * ("5f3c9a1e-0-1b"): unique per process run without a random draw or a
 * lock per request, like Kestrel's connection id + request number.
 *
 * Options: the table below.
 */
#include "middleware.h"

#include "runtime/alloc.h"
#include "runtime/fmt.h"
#include "runtime/options.h"

#include <string.h>

/* The id's first two parts are the worker's for the life of the process:
 * they are formatted on the worker's first request and copied after that
 * (a middleware instance is one worker's: chain.h; the boot id is set
 * before any worker runs: server.c), which leaves one number to format per
 * request. */
#define PREFIX_MAX (8 + 1 + 16 + 1)

typedef struct {
    bool trust_incoming;
} options_t;

typedef struct {
    bool trust_incoming;
    uint8_t prefix_len; /* 0 until the first generated id */
    char prefix[PREFIX_MAX];
} request_id_t;

static const hp_option_t rows[] = {
    HP_OPTION_BOOL(options_t, "trust_incoming", trust_incoming, true,
                   "a client's well-formed id is kept, so one id follows a request across "
                   "tiers; false: always generated"),
};

static const hp_options_t options = {
    .section = "",
    .options = rows,
    .n = sizeof(rows) / sizeof(rows[0]),
    .size = sizeof(options_t),
};

static int create(const void *opts, const char *path, void **out, char *err, size_t errlen)
{
    const options_t *o = opts;
    request_id_t *self = hp_calloc(1, sizeof(*self));
    self->trust_incoming = o->trust_incoming;
    *out = self;
    return 0;
}

static void destroy(void *self)
{
    hp_free(self);
}

/* "<boot id, 8 hex>-<worker, hex>-" into self->prefix. */
static void make_prefix(request_id_t *self, uint32_t boot, unsigned worker)
{
    char *p = self->prefix;
    for (int shift = 28; shift >= 0; shift -= 4)
        *p++ = "0123456789abcdef"[(boot >> shift) & 15];
    *p++ = '-';
    p = hp_fmt_hex(p, worker);
    *p++ = '-';
    self->prefix_len = (uint8_t)(p - self->prefix);
}

static hp_str_t generate(request_id_t *self, hp_ctx_t *ctx)
{
    if (self->prefix_len == 0) make_prefix(self, hp_ctx_boot_id(ctx), hp_ctx_worker_index(ctx));
    char *start = hp_ctx_alloc(ctx, PREFIX_MAX + 16);
    memcpy(start, self->prefix, PREFIX_MAX);
    char *p = hp_fmt_hex(start + self->prefix_len, hp_ctx_seq(ctx));
    return (hp_str_t){start, (size_t)(p - start)};
}

static void after(void *arg, hp_ctx_t *ctx, int status)
{
    hp_resp_header(ctx, "X-Request-Id", ctx->req.request_id);
}

static hp_vtask_t invoke(void *arg, hp_ctx_t *ctx)
{
    request_id_t *self = arg;
    if (!self->trust_incoming || ctx->req.request_id.len == 0)
        ctx->req.request_id = generate(self, ctx);
    return hp_then(ctx, hp_next(ctx), self, after);
}

const hp_middleware_t hp_mw_request_id = {
    .name = "request_id",
    .summary = "X-Request-Id: kept from the request or generated",
    .options = &options,
    .create = create,
    .destroy = destroy,
    .invoke = invoke,
};
