/*
 * response.h - the response writer: serializes an answer into the worker's
 * output buffer (hp_wbuf_t, one per loop), where conn.c sends it coalesced
 * with the other answers of the same read batch.
 *
 * Called by conn.c only, on the worker thread.
 */
#ifndef HP_RESPONSE_H
#define HP_RESPONSE_H

#include "ctx.h"
#include "http.h"

#include <stdbool.h>
#include <stddef.h>

/* The per-worker output buffer: every response of a read batch goes here
 * and leaves in one write. */
typedef struct {
    char *data;
    size_t len, cap;
} hp_wbuf_t;

/* Ensure room for n more bytes; returns the write position. */
char *hp_wbuf_reserve(hp_wbuf_t *b, size_t n);

/* Give memory back after a big answer, once the buffer is empty. */
void hp_wbuf_trim(hp_wbuf_t *b);

/* Serialize ctx->resp for ctx->req: status line, the headers the chain
 * added, Content-Type, Content-Length (or chunked coding), Connection when
 * it differs from the protocol's default, then the body unless the method
 * is HEAD or the status forbids one. */
void hp_response_write(hp_wbuf_t *out, hp_ctx_t *ctx, bool keep_alive);

/* Serialize a rejection: its status, Server, Date (borrowed, may be ""),
 * Connection: close, and the reason as a one-line text body. */
void hp_response_reject(hp_wbuf_t *out, hp_reject_t why, const char *date);

#endif
