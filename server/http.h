/*
 * http.h - the request and response as handlers and middleware see them,
 * and the one table of rejection reasons.
 *
 * The parser (parser.c) fills hp_req_t while llhttp walks the bytes; it
 * copies only what the server uses (the target and a few headers) into the
 * request context's arena, so nothing points into the per-loop read buffer
 * once a read callback returns. Handlers fill hp_resp_t; the response writer
 * (response.c) serializes it.
 *
 * Threading: all of it belongs to one worker.
 */
#ifndef HP_HTTP_H
#define HP_HTTP_H

#include "runtime/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A borrowed byte string: not NUL-terminated unless said so. */
typedef struct {
    const char *ptr;
    size_t len;
} hp_str_t;

#define HP_STR(lit) ((hp_str_t){(lit), sizeof(lit) - 1})

static inline bool hp_str_eq(hp_str_t a, const char *lit, size_t n)
{
    return a.len == n && __builtin_memcmp(a.ptr, lit, n) == 0;
}

/* Methods, as llhttp numbers them (llhttp_method_t). */
enum {
    HP_DELETE = 0,
    HP_GET = 1,
    HP_HEAD = 2,
    HP_POST = 3,
    HP_PUT = 4,
    HP_OPTIONS = 6,
    HP_TRACE = 7,
    HP_PATCH = 28,
};
#define HP_METHOD_BIT(m) (UINT64_C(1) << (m))

typedef struct {
    uint8_t method;     /* llhttp_method_t */
    uint8_t http_minor; /* 0 or 1: the major is always 1 here */
    bool keep_alive;    /* llhttp_should_keep_alive at headers-complete */
    bool chunked;       /* the body came chunked */
    bool expect_continue;
    bool prefers_text;   /* Accept lists text/plain first */
    hp_str_t target;     /* path and query, as sent */
    hp_str_t path;       /* target up to '?' */
    hp_str_t query;      /* after '?', may be empty */
    hp_str_t param;      /* the part of the path after a prefix route */
    hp_str_t request_id; /* X-Request-Id as sent, when well-formed */
    hp_str_t content_type;
    char *body; /* hp_malloc'd, owned by the context */
    size_t body_len;
    uint64_t content_length; /* declared, when not chunked */
} hp_req_t;

#define HP_RESP_MAX_HEADERS 8

typedef struct {
    const char *name; /* static */
    size_t name_len;
    hp_str_t value; /* static, or in the context's arena */
} hp_header_t;

/* Filled through ctx.h's hp_resp_* calls, which keep the lengths the
 * writer needs (ctype_len, head_len) so it measures nothing itself. */
typedef struct {
    uint16_t status;   /* 0 until a handler answers */
    bool close;        /* answer with Connection: close */
    bool chunked;      /* send the body with chunked transfer coding */
    const char *ctype; /* static, or in the arena, or a buf's */
    size_t ctype_len;
    hp_str_t body;    /* static, arena, body_owned or buf memory */
    char *body_owned; /* hp_malloc'd body, freed after the write */
    hp_buf_t *buf;    /* a reference held until the write */
    size_t head_len;  /* the header lines' bytes ("Name: value\r\n") */
    uint8_t nheaders;
    hp_header_t headers[HP_RESP_MAX_HEADERS];
} hp_resp_t;

/*
 * Rejection reasons. A malformed request is not an error in the server: it
 * is one of these, answered with its status, `Connection: close` and a short
 * body, then the connection is closed once the answer is flushed (Kestrel's
 * RequestRejectionReason, mapped by one table).
 */
#define HP_REJECT_MAP(XX)                                                                          \
    XX(BAD_REQUEST, 400, "malformed request")                                                      \
    XX(BAD_HEADER, 400, "malformed header")                                                        \
    XX(BAD_BODY, 400, "malformed body framing")                                                    \
    XX(CHUNK_EXT_TOO_LONG, 400, "chunk extensions too long")                                       \
    XX(HOST, 400, "missing or repeated Host header")                                               \
    XX(HEADER_TIMEOUT, 408, "request headers not received in time")                                \
    XX(BODY_TIMEOUT, 408, "request body arrived below the minimum data rate")                      \
    XX(BODY_TOO_LARGE, 413, "request body too large")                                              \
    XX(URI_TOO_LONG, 414, "request line too long")                                                 \
    XX(HEADERS_TOO_LARGE, 431, "request headers too large")                                        \
    XX(TOO_MANY_HEADERS, 431, "too many request headers")                                          \
    XX(NOT_IMPLEMENTED, 501, "method or transfer coding not implemented")                          \
    XX(VERSION, 505, "HTTP version not supported")

typedef enum {
    HP_REJECT_NONE = 0,
#define XX(name, status, msg) HP_REJECT_##name,
    HP_REJECT_MAP(XX)
#undef XX
        HP_REJECT_COUNT
} hp_reject_t;

uint16_t hp_reject_status(hp_reject_t r);
const char *hp_reject_message(hp_reject_t r);
const char *hp_reject_name(hp_reject_t r);

/* Reason phrase for a status code ("OK", "Not Found"). Never NULL. */
const char *hp_status_reason(unsigned status);

#endif
