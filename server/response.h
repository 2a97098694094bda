/*
 * response.h - the response writer: serializes an answer into the worker's
 * output buffer, where conn.c sends it (coalesced with the other answers of
 * the same read batch).
 *
 * Called by conn.c only, on the worker thread.
 */
#ifndef HP_RESPONSE_H
#define HP_RESPONSE_H

#include "ctx.h"
#include "http.h"
#include "worker.h"

#include <stdbool.h>

/* Serialize ctx->resp for ctx->req: status line, the headers the chain
 * added, Content-Type, Content-Length (or chunked coding), Connection when
 * it differs from the protocol's default, then the body unless the method
 * is HEAD or the status forbids one. */
void hp_response_write(hp_wbuf_t *out, hp_ctx_t *ctx, bool keep_alive);

/* Serialize a rejection: its status, Server, Date (borrowed, may be ""),
 * Connection: close, and the reason as a one-line text body. */
void hp_response_reject(hp_wbuf_t *out, hp_reject_t why, const char *date);

/* Format n in decimal (20 bytes at most) or lowercase hex (16) at p;
 * return the end. */
char *hp_fmt_u64(char *p, uint64_t n);
char *hp_fmt_hex(char *p, uint64_t n);

#endif
