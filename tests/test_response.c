/*
 * test_response.c - server/response.c, the response writer: answers
 * serialized into an output buffer, compared byte for byte.
 *
 * What it must get right, each a row or a test below: the status line (the
 * common 200 spelled out, others from the reason table), the headers the
 * chain added in their order, Content-Type when there is one, the framing
 * (Content-Length, or chunked coding for HTTP/1.1 only), no body and no
 * length where the status forbids one (1xx, 204, 304), HEAD's head without
 * its body, Connection only where it differs from the version's default,
 * and the rejection's fixed shape. Every answer goes to the end of what the
 * buffer already holds (answers of one read batch leave in one write).
 */
#include "runtime/alloc.h"
#include "server/ctx.h"
#include "server/http.h"
#include "server/response.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    const char *name;
    uint8_t method;
    uint8_t http_minor;
    bool keep_alive;
    uint16_t status;
    const char *ctype;
    const char *body;
    bool chunked;
    const char *header; /* one added header's value, "X-Test", or NULL */
    const char *want;
} row_t;

static const row_t rows[] = {
    {"200, keep-alive in HTTP/1.1: no Connection header", HP_GET, 1, true, 200, "text/plain",
     "Hello", false, NULL,
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nHello"},
    {"headers the chain added come first, in order", HP_GET, 1, true, 200, "text/plain", "x", false,
     "v1",
     "HTTP/1.1 200 OK\r\nX-Test: v1\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nx"},
    {"HTTP/1.0 keep-alive says so", HP_GET, 0, true, 200, "application/json", "{}", false, NULL,
     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
     "Connection: keep-alive\r\n\r\n{}"},
    {"a close says so", HP_GET, 1, false, 404, "text/plain", "not found\n", false, NULL,
     "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n"
     "Connection: close\r\n\r\nnot found\n"},
    {"HEAD: the head GET would get, no body", HP_HEAD, 1, true, 200, "text/plain", "Hello", false,
     NULL, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"},
    {"204: no length, no body", HP_GET, 1, true, 204, NULL, "ignored", false, NULL,
     "HTTP/1.1 204 No Content\r\n\r\n"},
    {"304: no length, no body", HP_GET, 1, true, 304, NULL, "ignored", false, NULL,
     "HTTP/1.1 304 Not Modified\r\n\r\n"},
    {"no content type: none sent", HP_GET, 1, true, 200, NULL, "", false, NULL,
     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
    {"chunked in HTTP/1.1: hex size, data, the last chunk", HP_GET, 1, true, 200, "text/plain",
     "0123456789abcdefg", true, NULL,
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
     "11\r\n0123456789abcdefg\r\n0\r\n\r\n"},
    {"chunked and empty: only the last chunk", HP_GET, 1, true, 200, "text/plain", "", true, NULL,
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
    {"chunked asked for an HTTP/1.0 client: a length instead", HP_GET, 0, false, 200, "text/plain",
     "abc", true, NULL,
     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
     "Connection: close\r\n\r\nabc"},
    {"chunked HEAD: framing said, no chunks", HP_HEAD, 1, true, 200, "text/plain", "abc", true,
     NULL, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"},
    {"a status outside the table: its class as the reason", HP_GET, 1, true, 499, "text/plain",
     "gone\n", false, NULL,
     "HTTP/1.1 499 Client Error\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\ngone\n"},
};

static void answers_byte_for_byte(void **state)
{
    hp_ctx_pool_t pool = {0};
    hp_wbuf_t out = {0};
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row_t *row = &rows[i];
        hp_ctx_t *ctx = hp_ctx_acquire(&pool);
        ctx->req.method = row->method;
        ctx->req.http_minor = row->http_minor;
        if (row->header)
            hp_resp_header(ctx, "X-Test", (hp_str_t){row->header, strlen(row->header)});
        hp_resp_set(ctx, row->status, row->ctype, (hp_str_t){row->body, strlen(row->body)});
        ctx->resp.chunked = row->chunked;
        /* After what an earlier answer of the batch left there. */
        memcpy(hp_wbuf_reserve(&out, 3), "...", 3);
        out.len = 3;
        hp_response_write(&out, ctx, row->keep_alive);
        size_t n = strlen(row->want);
        if (out.len != 3 + n || memcmp(out.data, "...", 3) || memcmp(out.data + 3, row->want, n))
            fail_msg("%s:\ngot  \"%.*s\"\nwant \"%s\"", row->name, (int)out.len - 3, out.data + 3,
                     row->want);
        out.len = 0;
        hp_ctx_release(&pool, ctx);
    }
    hp_free(out.data);
    hp_ctx_pool_free(&pool);
}

static void a_rejection_has_its_fixed_shape(void **state)
{
    hp_wbuf_t out = {0};
    hp_response_reject(&out, HP_REJECT_URI_TOO_LONG, "Sun, 06 Nov 1994 08:49:37 GMT");
    static const char want[] = "HTTP/1.1 414 URI Too Long\r\nServer: hotpath\r\n"
                               "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                               "Content-Type: text/plain\r\nContent-Length: 22\r\n"
                               "Connection: close\r\n\r\nrequest line too long\n";
    assert_int_equal(out.len, sizeof(want) - 1);
    assert_memory_equal(out.data, want, sizeof(want) - 1);
    /* Without a date (none formatted yet): no Date line at all. */
    out.len = 0;
    hp_response_reject(&out, HP_REJECT_VERSION, "");
    static const char want2[] = "HTTP/1.1 505 HTTP Version Not Supported\r\nServer: hotpath\r\n"
                                "Content-Type: text/plain\r\nContent-Length: 27\r\n"
                                "Connection: close\r\n\r\nHTTP version not supported\n";
    assert_int_equal(out.len, sizeof(want2) - 1);
    assert_memory_equal(out.data, want2, sizeof(want2) - 1);
    hp_free(out.data);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(answers_byte_for_byte),
        cmocka_unit_test(a_rejection_has_its_fixed_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
