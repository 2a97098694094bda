/*
 * server_headers - Server and Date on every answer, as HTTP/1.1 servers send
 * them (and TechEmpower's rules require).
 *
 * Before the rest of the chain: Server, which is known up front. After it:
 * Date, so that an answer that waited on the upstream carries the time it
 * was completed, not the time it arrived. The date string is the worker's,
 * formatted once a second by its tick: no time() or strftime per request.
 *
 * Options: "server": the Server header's value (default "hotpath").
 */
#include "middleware.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"

#include <string.h>

typedef struct {
    char server[64];
    size_t server_len;
} server_headers_t;

static int create(const cJSON *section, const char *path, void **out, char *err, size_t errlen)
{
    static const char *const keys[] = {"server", NULL};
    if (hp_mw_check_keys(section, path, keys, err, errlen)) return HP_ECONFIG;
    server_headers_t *self = hp_calloc(1, sizeof(*self));
    if (hp_mw_opt_string(section, path, "server", "hotpath", self->server, sizeof(self->server),
                         err, errlen)) {
        hp_free(self);
        return HP_ECONFIG;
    }
    self->server_len = strlen(self->server);
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
    .create = create,
    .destroy = destroy,
    .invoke = invoke,
};
