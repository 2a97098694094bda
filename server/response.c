/*
 * response.c - serializing answers (see response.h).
 *
 * One reserve, then straight-line copies: the size of an answer is known
 * before writing it, so the output buffer grows at most once per answer
 * (never, once warm, for the small ones) and no snprintf runs on the hot
 * path. A /plaintext answer is 170-odd bytes with Server, Date and
 * X-Request-Id.
 */
#include "response.h"

#include "runtime/alloc.h"
#include "runtime/bytes.h"
#include "runtime/fmt.h"

#include <stdint.h>
#include <string.h>

/* 128 KiB: a full read batch of pipelined /plaintext answers. */
#define WBUF_INITIAL (128 * 1024)
/* Output beyond this is returned to the allocator after a big answer. */
#define WBUF_KEEP (256 * 1024)

char *hp_wbuf_reserve(hp_wbuf_t *b, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : WBUF_INITIAL;
        while (cap < b->len + n)
            cap *= 2;
        b->data = hp_realloc(b->data, cap);
        b->cap = cap;
    }
    return b->data + b->len;
}

void hp_wbuf_trim(hp_wbuf_t *b)
{
    if (b->len == 0 && b->cap > WBUF_KEEP) {
        b->data = hp_realloc(b->data, WBUF_INITIAL);
        b->cap = WBUF_INITIAL;
    }
}

/* An answer's pieces are short - names, an id, the Date, a small body -
 * and are copied inline (bytes.h). */
static inline char *put(char *p, const char *s, size_t n)
{
    return hp_bytes_put(p, s, n);
}

#define PUT(p, lit) put((p), (lit), sizeof(lit) - 1)

static inline char *status_line(char *p, unsigned status)
{
    if (status == 200) return PUT(p, "HTTP/1.1 200 OK\r\n");
    p = PUT(p, "HTTP/1.1 ");
    *p++ = (char)('0' + status / 100 % 10);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    const char *reason = hp_status_reason(status);
    p = put(p, reason, strlen(reason));
    return PUT(p, "\r\n");
}

void hp_response_write(hp_wbuf_t *out, hp_ctx_t *ctx, bool keep_alive)
{
    const hp_req_t *req = &ctx->req;
    hp_resp_t *r = &ctx->resp;
    unsigned status = r->status;
    bool may_have_body = status >= 200 && status != 204 && status != 304;
    bool send_body = may_have_body && req->method != HP_HEAD;
    /* HTTP/1.0 has no chunked coding: its clients get Content-Length. */
    bool chunked = r->chunked && req->http_minor == 1 && may_have_body;

    /* The lengths were kept as the answer was built (ctx.h): no pass here. */
    size_t need = 160 + r->ctype_len + r->head_len + (send_body ? r->body.len + 48 : 0);
    char *start = hp_wbuf_reserve(out, need);
    char *p = status_line(start, status);

    for (unsigned i = 0; i < r->nheaders; i++) {
        const hp_header_t *h = &r->headers[i];
        p = put(p, h->name, h->name_len);
        p = PUT(p, ": ");
        p = put(p, h->value.ptr, h->value.len);
        p = PUT(p, "\r\n");
    }
    if (r->ctype) {
        p = PUT(p, "Content-Type: ");
        p = put(p, r->ctype, r->ctype_len);
        p = PUT(p, "\r\n");
    }
    if (chunked) {
        p = PUT(p, "Transfer-Encoding: chunked\r\n");
    } else if (may_have_body) {
        p = PUT(p, "Content-Length: ");
        p = hp_fmt_u64(p, r->body.len);
        p = PUT(p, "\r\n");
    }
    if (!keep_alive)
        p = PUT(p, "Connection: close\r\n");
    else if (req->http_minor == 0)
        p = PUT(p, "Connection: keep-alive\r\n");
    p = PUT(p, "\r\n");

    if (send_body) {
        if (chunked && r->body.len) {
            p = hp_fmt_hex(p, r->body.len);
            p = PUT(p, "\r\n");
        }
        p = put(p, r->body.ptr, r->body.len);
        if (chunked) p = r->body.len ? PUT(p, "\r\n0\r\n\r\n") : PUT(p, "0\r\n\r\n");
    }
    out->len += (size_t)(p - start);
}

void hp_response_reject(hp_wbuf_t *out, hp_reject_t why, const char *date)
{
    const char *msg = hp_reject_message(why);
    size_t mlen = strlen(msg);
    size_t dlen = strlen(date);
    char *start = hp_wbuf_reserve(out, 256 + mlen + dlen);
    char *p = status_line(start, hp_reject_status(why));
    p = PUT(p, "Server: hotpath\r\n");
    if (dlen) {
        p = PUT(p, "Date: ");
        p = put(p, date, dlen);
        p = PUT(p, "\r\n");
    }
    p = PUT(p, "Content-Type: text/plain\r\nContent-Length: ");
    p = hp_fmt_u64(p, mlen + 1);
    p = PUT(p, "\r\nConnection: close\r\n\r\n");
    p = put(p, msg, mlen);
    *p++ = '\n';
    out->len += (size_t)(p - start);
}
