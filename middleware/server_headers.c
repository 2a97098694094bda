/*
 * server_headers - Server and Date on every answer, as HTTP/1.1 servers send
 * them (and TechEmpower's rules require).
 *
 * Before the rest of the chain: Server, which is known up front. After it:
 * Date, so that an answer that waited on the upstream carries the time it
 * was completed, not the time it arrived. The date string is the worker's,
 * formatted once a second by its tick: no time() or strftime per request.
 *
 * Options: the table below.
 */
#include "middleware.h"

#include "runtime/alloc.h"
#include "runtime/options.h"

#include <string.h>

typedef struct {
    const char *server;
} options_t;

typedef struct {
    char server[64];
    size_t server_len;
} server_headers_t;

static const hp_option_t rows[] = {
    HP_OPTION_STRPTR(options_t, "server", server, sizeof(((server_headers_t *)0)->server),
                     "hotpath",
                     "the Server header's value: this server's name, as Kestrel's is "
                     "\"Kestrel\""),
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
    server_headers_t *self = hp_calloc(1, sizeof(*self));
    self->server_len = strlen(o->server); /* the table bounds it by the copy's size */
    memcpy(self->server, o->server, self->server_len + 1);
    *out = self;
    return 0;
}

static void destroy(void *self)
{
    hp_free(self);
}

static void after(void *arg, hp_ctx_t *ctx, int status)
{
    hp_resp_header(ctx, "Date", hp_ctx_date(ctx));
}

static hp_vtask_t invoke(void *arg, hp_ctx_t *ctx)
{
    server_headers_t *self = arg;
    hp_resp_header(ctx, "Server", (hp_str_t){self->server, self->server_len});
    return hp_then(ctx, hp_next(ctx), self, after);
}

const hp_middleware_t hp_mw_server_headers = {
    .name = "server_headers",
    .summary = "Server and Date headers",
    .options = &options,
    .create = create,
    .destroy = destroy,
    .invoke = invoke,
};
