/*
 * conn.h - a client connection: the bytes' way in (read, parse), the
 * request's way through (chain, handler), and the response's way out
 * (serialize, write), with keep-alive, pipelining and the connection's
 * timeouts. The map of that journey opens conn.c.
 *
 * Owned by its worker's host (host.h): created on accept, freed in
 * uv_close's callback. Only the worker, the parser glue (parser.c) and the
 * listener use this header; a connection knows its host, never the worker.
 */
#ifndef HP_CONN_H
#define HP_CONN_H

#include "ctx.h"
#include "host.h"
#include "http.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

enum {
    HP_CONN_IDLE = 0, /* between requests */
    HP_CONN_HEAD,     /* reading a request head */
    HP_CONN_BODY,     /* reading a request body */
    HP_CONN_BUSY,     /* a request is running asynchronously */
    HP_CONN_LINGER,   /* answered and shut down; draining the peer */
};

enum {
    HP_CF_READING = 1 << 0, /* uv_read_start is in effect */
    HP_CF_CLOSE = 1 << 1,   /* close once the output is flushed */
    HP_CF_CLOSED = 1 << 2,  /* uv_close was called */
    HP_CF_WBLOCK = 1 << 3,  /* output waits for the peer (a uv_write is out) */
    HP_CF_READY = 1 << 4,   /* on the host's ready list */
    HP_CF_EOF = 1 << 5,     /* the peer will send no more */
    HP_CF_MEMORY = 1 << 6,  /* no socket: output goes to a sink */
    HP_CF_UPGRADE = 1 << 7, /* llhttp saw Upgrade/CONNECT: stop after it */
};

/* A memory connection's output: how many of len bytes it took (all, some,
 * or none: the rest waits, as output a socket refused does, until
 * hp_conn_memory_writable), or a negative error (the write failed: the
 * connection closes, as a socket's does). */
typedef long (*hp_conn_sink_cb)(void *arg, const char *data, size_t len);

/* The deadlines a connection is under, by what it waits for. Two at most,
 * one per direction, each from its own state:
 *
 *   read side (rtimer)   HEAD: the head's deadline, from its first byte
 *                              (from the accept for a new connection);
 *                        BODY: the body's, a grace period plus a credit per
 *                              byte received (the minimum data rate);
 *                        IDLE: the keep-alive timeout, only while nothing
 *                              waits to be written either;
 *                        BUSY: none - the server is working (the upstream's
 *                              own timeouts bound it);
 *                        LINGER: the lingering close's.
 *   write side (wtimer)  while output waits for the peer (HP_CF_WBLOCK):
 *                        the idle timeout, from the moment it backed up.
 *
 * They run at the same time: a client that pipelines until the answers
 * back up and then stalls mid-head is held to the head's deadline, whether
 * or not it reads its answers meanwhile (when it does not, no answer can
 * reach it: the expiry closes without one). */

/* 496 bytes on x86-64 (uv_tcp_t 248, llhttp_t 96, the rest here). An idle
 * keep-alive connection holds only this: the request context and any
 * partial input come from the worker while a request is in flight.
 * Measured: RSS grows 472 bytes per idle keep-alive connection over 5,000
 * (nginx 1.22 on the same machine: 346; `make bench` reports both). */
struct hp_conn {
    uv_tcp_t tcp;    /* tcp.data == this */
    llhttp_t parser; /* parser.data == this */
    hp_host_t *host;
    hp_timer_t rtimer;          /* the read side's deadline: on one of host->timers */
    hp_timer_t wtimer;          /* the write side's: on host->timers[HP_LIST_WRITE] */
    hp_link_t all_link;         /* in host->all */
    hp_link_t ready_link;       /* in host->ready while HP_CF_READY */
    hp_ctx_t *ctx;              /* the request in progress, if any */
    hp_alloc_counter_t *charge; /* its I/O's account between requests (conn.c) */
    char *carry;                /* input after a pause point, hp_malloc'd */
    uint32_t carry_len;
    uint8_t state;  /* HP_CONN_* */
    uint8_t flags;  /* HP_CF_* */
    uint8_t reject; /* hp_reject_t set by a parser callback */
    uint8_t hold;   /* frames on the stack working on c (see conn.c) */
    uint64_t id;
    struct hp_conn_memory *mem; /* HP_CF_MEMORY only: the sink, and output it refused */
};

/* The listener's connection callback. */
void hp_conn_accept(uv_stream_t *listener, int status);

/* Feed input as if read from the socket (the read callback, and tests and
 * the fuzzer for memory connections). */
void hp_conn_feed(hp_conn_t *c, const char *data, size_t len);

/* The peer closed its side, or the read failed with err. */
void hp_conn_eof(hp_conn_t *c, int err);

/* Close now (without a response). Idempotent. Safe from anywhere, including
 * a parser callback or the chain: while a frame works on c (c->hold), its
 * request context and input stay valid and are freed when the outermost
 * one returns; every caller checks HP_CF_CLOSED and stops. */
void hp_conn_close(hp_conn_t *c);

/* A connection without a socket whose output goes to sink: drives the real
 * parser, chain and handlers in-process (unit tests, the fuzzer). When it
 * closes (on its own, or by hp_conn_close) sink is called once more with
 * (NULL, 0) and never again; the loop frees it afterwards, so drop the
 * pointer then. */
hp_conn_t *hp_conn_new_memory(hp_host_t *host, hp_conn_sink_cb sink, void *arg);

/* The sink takes output again: offer it what waits (the write's completion
 * on a socket). */
void hp_conn_memory_writable(hp_conn_t *c);

/* The connections' own loop handles - a check handle that resumes, in the
 * check phase, requests that completed asynchronously, and an idle handle
 * that keeps the poll from blocking while some wait: open with the loop
 * (0 or a libuv code, nothing left open on failure), closed with it. */
int hp_conns_open(hp_host_t *host, uv_loop_t *loop);
void hp_conns_close(hp_host_t *host);

/* Worker tick: expire deadlines; returns how many connections closed. */
unsigned hp_conn_sweep(hp_host_t *host, uint64_t now);

/* Shutdown: close idle connections now, let busy ones finish and close. */
void hp_conn_drain_all(hp_host_t *host);

/* Close every connection at once (drain deadline passed). */
void hp_conn_close_all(hp_host_t *host);

/* --- for parser.c ------------------------------------------------------ */

/* The parser settings shared by every connection (parser.c). */
extern const llhttp_settings_t hp_parser_settings;

/* Run a complete request (on_message_complete). Returns 0 to go on parsing
 * pipelined input, HPE_PAUSED to stop here (the request pends, the
 * connection closes, or the output is backed up). */
int hp_conn_dispatch(hp_conn_t *c);

/* Start a request (on_message_begin): take a context from the pool. */
hp_ctx_t *hp_conn_begin(hp_conn_t *c);

/* Put c's read side under a deadline on a timer list (HP_LIST_IDLE, HEAD,
 * BODY or LINGER; HP_LIST_NONE: none). The write side's is conn.c's own. */
void hp_conn_set_timer(hp_conn_t *c, uint8_t list, uint64_t deadline);

/* Write an interim 100 Continue now. */
void hp_conn_continue(hp_conn_t *c);

/* --- for conn.c: the parser's scanner (parser.c) ------------------------ */

/* While c->ctx->scan is set, input goes through the scanner before llhttp:
 * it consumes what it takes from *data (up to end), feeding llhttp what it
 * should see, and advances *data. Returns HPE_OK (the scan ended, or the
 * input did), HPE_USER with c->reject set (the request is refused), or an
 * llhttp error from what it fed. */
enum llhttp_errno hp_parser_scan(hp_conn_t *c, const char **data, const char *end);

/* llhttp refused the method at its error position: start scanning there
 * to tell an unknown method (501) from garbage (400). */
void hp_parser_scan_method(hp_conn_t *c);

#endif
