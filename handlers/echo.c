/*
 * echo - any method on /echo: 200 with the request body. The parser has
 * already buffered it (up to limits.body_bytes) in the request context; the
 * answer points at that buffer, so nothing is copied again. A chunked
 * request gets a chunked answer, one with Content-Length gets
 * Content-Length, and the content type comes back as it was sent.
 */
#include "handlers.h"

static hp_vtask_t echo(hp_ctx_t *ctx)
{
    hp_req_t *req = &ctx->req;
    const char *ctype = req->content_type.len ? req->content_type.ptr : "application/octet-stream";
    hp_resp_set(ctx, 200, ctype, (hp_str_t){req->body ? req->body : "", req->body_len});
    ctx->resp.chunked = req->chunked;
    return hp_done(ctx);
}

const hp_handler_t hp_handler_echo = {.name = "echo", .invoke = echo};
