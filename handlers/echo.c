/*
 * echo - any method on /echo: 200 with the request body. The parser has
 * already buffered it (up to limits.body_bytes) in the request context; the
 * answer points at that buffer, so nothing is copied again. The body is
 * whole by the time the handler runs, so the answer always carries a
 * Content-Length, however the request was framed (as nginx and Kestrel do
 * when they have the whole body).
 *
 * The content type is reflected only when it cannot be active content: a
 * page that echoes a client-chosen text/html (or SVG, XML, a script type)
 * is the textbook reflected script injection. An allowlist, not a
 * denylist: the active types are an open set (XML dialects, vendor types,
 * case and parameter tricks), the passive ones a client needs here are
 * few. Anything else comes back as application/octet-stream, and every
 * answer says X-Content-Type-Options: nosniff so no browser guesses.
 */
#include "handlers.h"

#include <strings.h>
#include <string.h>

/* The reflected types, canonical (static: the answer borrows them). */
static const char *const passive[] = {"text/plain", "application/json", "application/octet-stream",
                                      "application/x-www-form-urlencoded"};

/* The passive type ct names (case-insensitive, parameters ignored), or
 * application/octet-stream. */
static const char *reflected_type(hp_str_t ct)
{
    size_t n = 0;
    while (n < ct.len && ct.ptr[n] != ';' && ct.ptr[n] != ' ' && ct.ptr[n] != '\t')
        n++;
    for (size_t i = 0; i < sizeof(passive) / sizeof(passive[0]); i++)
        if (strlen(passive[i]) == n && strncasecmp(ct.ptr, passive[i], n) == 0) return passive[i];
    return "application/octet-stream";
}

static hp_vtask_t echo(void *self, hp_ctx_t *ctx)
{
    hp_req_t *req = &ctx->req;
    hp_resp_header(ctx, "X-Content-Type-Options", HP_STR("nosniff"));
    hp_resp_set(ctx, 200, reflected_type(req->content_type),
                (hp_str_t){req->body ? req->body : "", req->body_len});
    return hp_done(ctx);
}

const hp_handler_t hp_handler_echo = {.name = "echo", .invoke = echo};
