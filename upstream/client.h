/*
 * client.h - hp_upstream, the pooled HTTP/1.1 client that hotpath's handlers
 * use to fetch from the upstream service (build/hotpath-upstream in tests and
 * load tests).
 *
 * Who calls it: handlers/upstream.c and the cache's miss path, on a worker
 * thread. One instance per worker event loop: single thread, no locks. The
 * statistics are the only thing another thread may read (hp_counter_get).
 *
 * What it owns: a keep-alive connection pool (at most pool_size sockets), a
 * FIFO of requests waiting for a connection, and every libuv handle it
 * opened; hp_upstream_close gives all of it back.
 *
 * Deadlines: a request's whole life - waiting in the queue, connecting,
 * waiting for the response - ends connect_timeout_ms + response_timeout_ms
 * after hp_upstream_request at the latest, with HP_EUPSTREAM_TIMEOUT; within
 * that, connecting is bounded by connect_timeout_ms and the response by
 * response_timeout_ms from sending. A caller that stops waiting cancels its
 * request (hp_upstream_cancel), so nothing it leaves behind holds a slot.
 *
 * Every request returns a heap hp_task: this is the genuinely asynchronous
 * side of the project, so it pays for the task the hot path avoids. The task
 * completes with the response as an hp_buf_t * or faults with one of
 * HP_EUPSTREAM_* (or HP_ESHUTDOWN); an upstream status >= 400 is a response,
 * not a fault. Continuations run from the loop's idle phase, never inside a
 * call into this module or inside its libuv callbacks (.NET's
 * RunContinuationsAsynchronously), so they may call anything here, close
 * included. The one exception is hp_upstream_close, which runs them itself.
 */
#ifndef HP_UPSTREAM_CLIENT_H
#define HP_UPSTREAM_CLIENT_H

#include "runtime/options.h"
#include "runtime/stats.h"
#include "runtime/task.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct hp_upstream hp_upstream_t;

/* A zero field takes its default from hp_upstream_options, the table the
 * configuration's "upstream" section is read through (client.c). */
typedef struct {
    const char *host;             /* numeric IPv4 or IPv6 address; copied */
    int port;                     /* 1..65535 */
    unsigned pool_size;           /* most connections open at once */
    unsigned connect_timeout_ms;  /* from connect() to established */
    unsigned response_timeout_ms; /* from sending to the last response byte */
    unsigned idle_timeout_ms;     /* a pooled connection unused this long closes */
    size_t max_response_bytes;    /* body bytes; more fails HP_EUPSTREAM_TOO_BIG */
} hp_upstream_opts_t;

/* Latency histogram: bucket i counts requests that took at most
 * hp_upstream_latency_bounds_us[i] microseconds and more than bucket i-1's
 * bound (not cumulative); the last bound is UINT64_MAX (+Inf). */
#define HP_UPSTREAM_LATENCY_BUCKETS 12
extern const uint64_t hp_upstream_latency_bounds_us[HP_UPSTREAM_LATENCY_BUCKETS];

/* The statistics, declared once (runtime/stats.h): XX(name, kind, help).
 * Single-writer counters (runtime/counter.h): the owning worker writes, any
 * thread reads with hp_counter_get. At any moment
 *   requests == responses + errors_* (all seven) + cancelled + requests in flight.
 * Every field is a uint64_t, so /stats may sum the blocks of all workers
 * word by word. */
#define HP_UPSTREAM_STATS(XX)                                                                      \
    XX(requests, counter, "hp_upstream_request calls")                                             \
    XX(responses, counter, "tasks completed with a response, any status")                          \
    XX(errors_connect, counter, "HP_EUPSTREAM_CONNECT: the connect failed")                        \
    XX(errors_timeout, counter, "HP_EUPSTREAM_TIMEOUT, connect or response")                       \
    XX(errors_protocol, counter, "HP_EUPSTREAM_PROTOCOL: a malformed response")                    \
    XX(errors_reset, counter, "HP_EUPSTREAM_RESET: closed mid-response")                           \
    XX(errors_too_big, counter, "HP_EUPSTREAM_TOO_BIG: over max_response_bytes")                   \
    XX(errors_shutdown, counter, "HP_ESHUTDOWN: closed with the request pending")                  \
    XX(errors_invalid, counter, "UV_EINVAL: method or path unfit to send")                         \
    XX(cancelled, counter, "UV_ECANCELED: hp_upstream_cancel took it back")                        \
    XX(queue_timeouts, counter, "of errors_timeout: deadline passed still queued")                 \
    XX(unsolicited, counter, "connections closed for bytes no request asked for")                  \
    XX(retries, counter, "requests resent after a reused connection died")                         \
    XX(pool_open, gauge, "connections open (busy + idle)")                                         \
    XX(pool_busy, gauge, "connections connecting or serving a request")                            \
    XX(pool_idle, gauge, "connections pooled, waiting for a request")                              \
    XX(pool_queued, gauge, "requests waiting for a connection")                                    \
    XX(pool_queued_max, gauge, "high-water mark of pool_queued")                                   \
    XX(pool_connections_opened, counter, "connect attempts")                                       \
    XX(pool_connections_closed, counter, "connections closed, for any reason")

typedef struct {
    HP_UPSTREAM_STATS(HP_STAT_FIELD)
    /* Beyond the table (the reports render them themselves): latency from
     * hp_upstream_request to the outcome, for responses and the upstream
     * faults (not shutdown or invalid): sum and histogram. */
    uint64_t latency_us_sum;
    uint64_t latency_hist[HP_UPSTREAM_LATENCY_BUCKETS];
} hp_upstream_stats_t;

/* The options' table: bounds, defaults and why (section "upstream"). */
extern const hp_options_t hp_upstream_options;

/* The table of hp_upstream_stats_t: its name is "upstream"; the errors are
 * one family by kind, the pool's figures a group of their own. */
extern const hp_stats_table_t hp_upstream_stats_table;

/* Create a client on loop (borrowed; must outlive the client). Copies opts.
 * Returns 0 and *out (owned: release with hp_upstream_close), or HP_ECONFIG
 * when opts are unusable (host not a numeric address, port out of range).
 * Opens no connection until the first request. */
int hp_upstream_new(uv_loop_t *loop, const hp_upstream_opts_t *opts, hp_upstream_t **out);

/* Fail every queued and in-flight request with HP_ESHUTDOWN (their
 * continuations run before this returns, after those of requests that had
 * already finished), close every handle, and once the last one is closed
 * free u and call done(arg) from a close callback. Requests made meanwhile
 * fault at once with HP_ESHUTDOWN. A second call is ignored. */
void hp_upstream_close(hp_upstream_t *u, hp_cont_cb done, void *arg);

/* Live reload. Borrows opts (copied). Timeouts, size limit and Host header
 * apply to requests started afterwards; the address applies to connections
 * opened afterwards: idle connections to an old address close now, busy ones
 * when their response is done. Returns 0, HP_ECONFIG (nothing changed) or
 * HP_ESHUTDOWN after hp_upstream_close. */
int hp_upstream_reconfigure(hp_upstream_t *u, const hp_upstream_opts_t *opts);

/* Send method (borrowed, an HTTP token such as "GET") for path (borrowed,
 * copied; origin-form, starting with '/', visible ASCII only) with no body.
 * Returns owned: a task, pending, whose result is an hp_buf_t * (status,
 * content type, body) that the task owns; drop the task with hp_task_unref,
 * and take hp_buf_ref first to keep the buffer longer. The task faults with
 * HP_EUPSTREAM_CONNECT, _TIMEOUT, _PROTOCOL, _RESET or _TOO_BIG, with
 * HP_ESHUTDOWN, with UV_ECANCELED after hp_upstream_cancel, or at once with
 * UV_EINVAL for an unfit method or path. Allocates three times on a warm
 * pool: the request, the task, the buffer. */
hp_task_t *hp_upstream_request(hp_upstream_t *u, const char *method, const char *path,
                               size_t path_len);

/* The same, for a caller that began waiting at since_ms (uv_now of the
 * loop, <= now) on something else first - the cache's L2 lookup: the
 * request's deadline counts from then, so that time is taken out of it. */
hp_task_t *hp_upstream_request_since(hp_upstream_t *u, const char *method, const char *path,
                                     size_t path_len, uint64_t since_ms);

/* The caller of the request whose task is t (borrowed; the caller must still
 * hold a reference, so t names that request and no other) no longer wants
 * its answer. A request still waiting for a connection leaves the queue; one
 * whose connection is still being opened lets it go (it joins the pool
 * once connected); one already sent closes its connection when
 * even_if_sent, since nothing else would free that pool slot before the
 * response or its timeout. The task then faults with UV_ECANCELED, from the
 * loop's idle phase like every completion, and the request is counted in
 * stats.cancelled. Returns 0; UV_EBUSY when the request was sent and
 * even_if_sent is false (nothing changes); UV_ENOENT when t is not a request
 * in progress here (finished already, or never one). */
int hp_upstream_cancel(hp_upstream_t *u, const hp_task_t *t, bool even_if_sent);

/* Borrowed; valid until close's done callback. */
const hp_upstream_stats_t *hp_upstream_stats(const hp_upstream_t *u);

#endif
