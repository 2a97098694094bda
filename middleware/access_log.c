/*
 * access_log - one Common Log Format line per request, buffered:
 *
 *   127.0.0.1 - - [25/Nov/2026:23:27:59 +0000] "GET /plaintext HTTP/1.1" 200 13
 *
 * Before the rest of the chain: note when the request arrived (CLF's time
 * is the request's, not the answer's). After: format the line into this
 * worker's buffer. The buffer is written with one write(2) when it fills
 * and on every worker tick (HP_TICK_MS), so a request costs a memcpy, not a
 * syscall; lines are whole in every write, and the file is opened with
 * O_APPEND, so workers' lines never interleave mid-line.
 *
 * Off by default: formatting a line and asking the kernel for the peer's
 * address are real costs on a hot path, which is why servers let you turn
 * their access log off.
 *
 * Options: the table below.
 */
#include "middleware.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "runtime/fmt.h"
#include "runtime/options.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
    const char *path;
    uint32_t buffer_bytes;
} options_t;

static const hp_option_t rows[] = {
    HP_OPTION_STRPTR(options_t, "path", path, 256, "-",
                     "\"-\": standard output, where a container's log collector reads; else a "
                     "file, appended to"),
    HP_OPTION_INT(options_t, "buffer_bytes", buffer_bytes, 4096, 16 << 20, 65536,
                  "64 KiB per worker, as nginx's access_log buffer when gzip names no size; "
                  "written whole when full"),
};

static const hp_options_t options = {
    .section = "",
    .options = rows,
    .n = sizeof(rows) / sizeof(rows[0]),
    .size = sizeof(options_t),
};

typedef struct {
    int fd;
    bool owns_fd;
    size_t cap, len;
    int64_t clf_sec;
    char clf_date[32]; /* "25/Nov/2026:23:27:59 +0000" */
    char *buf;
} access_log_t;

static int create(const void *opts, const char *path, void **out, char *err, size_t errlen)
{
    const options_t *o = opts;
    const char *file = o->path;
    int fd = STDOUT_FILENO;
    bool owns = false;
    if (strcmp(file, "-") != 0) {
        fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "%s.path: cannot open \"%s\": %s", path, file, strerror(errno));
            return HP_ECONFIG;
        }
        owns = true;
    }
    access_log_t *self = hp_calloc(1, sizeof(*self));
    self->fd = fd;
    self->owns_fd = owns;
    self->cap = o->buffer_bytes;
    self->buf = hp_malloc(self->cap);
    *out = self;
    return 0;
}

static void flush(access_log_t *self)
{
    size_t off = 0;
    while (off < self->len) {
        ssize_t n = write(self->fd, self->buf + off, self->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* a full disk must not stop the server: drop */
        off += (size_t)n;
    }
    self->len = 0;
}

static void destroy(void *arg)
{
    access_log_t *self = arg;
    if (self == NULL) return;
    flush(self);
    if (self->owns_fd) close(self->fd);
    hp_free(self->buf);
    hp_free(self);
}

static void tick(void *arg)
{
    flush(arg);
}

/* Copy s, escaping what would break the line's quoting. */
static char *put_escaped(char *p, hp_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch == '"' || ch == '\\' || ch < 0x20 || ch >= 0x7f) {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = "0123456789abcdef"[ch >> 4];
            *p++ = "0123456789abcdef"[ch & 15];
        } else {
            *p++ = (char)ch;
        }
    }
    return p;
}

static void after(void *arg, hp_ctx_t *ctx, int status)
{
    access_log_t *self = arg;
    int64_t sec = (int64_t)hp_layer_current(ctx)->mark;
    if (sec != self->clf_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(self->clf_date, sizeof(self->clf_date), "%d/%b/%Y:%H:%M:%S +0000", &tm);
        self->clf_sec = sec;
    }
    char peer[64];
    const char *host = hp_ctx_peer(ctx, peer, sizeof(peer));
    const char *method = llhttp_method_name((llhttp_method_t)ctx->req.method);
    size_t need = 160 + strlen(host) + strlen(method) + 4 * ctx->req.target.len;
    if (self->len + need > self->cap) flush(self);
    if (need > self->cap) return; /* a line longer than the buffer: skip it */

    char *p = self->buf + self->len;
    p += snprintf(p, 120, "%s - - [%s] \"%s ", host, self->clf_date, method);
    p = put_escaped(p, ctx->req.target);
    unsigned code = status ? 500 : ctx->resp.status;
    bool body = ctx->req.method != HP_HEAD && ctx->resp.body.len;
    p += snprintf(p, 40, " HTTP/1.%u\" %u ", ctx->req.http_minor, code);
    if (body)
        p = hp_fmt_u64(p, ctx->resp.body.len);
    else
        *p++ = '-';
    *p++ = '\n';
    self->len = (size_t)(p - self->buf);
}

static hp_vtask_t invoke(void *self, hp_ctx_t *ctx)
{
    hp_layer_current(ctx)->mark = (uint64_t)hp_ctx_date_s(ctx); /* the tick's clock */
    return hp_then(ctx, hp_next(ctx), self, after);
}

const hp_middleware_t hp_mw_access_log = {
    .name = "access_log",
    .summary = "Common Log Format, buffered (off by default)",
    .options = &options,
    .create = create,
    .destroy = destroy,
    .invoke = invoke,
    .tick = tick,
};
