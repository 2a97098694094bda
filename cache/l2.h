/*
 * l2.h - hp_l2, the client of the second cache tier: one Redis shared by
 * every instance, reached over one pipelined, non-blocking connection per
 * worker loop. L1 (cache.h) answers hits synchronously; L2 is a network
 * round trip, so its get returns a heap task, as the upstream client does.
 *
 * Who calls it: the cache's miss path (L1 miss -> L2 GET -> upstream, then
 * L2 SET), the config reload (hp_l2_reconfigure), /stats and /metrics
 * (hp_l2_stats), on the worker thread that owns it; no locks. Other threads
 * may only read the statistics (hp_counter_get).
 *
 * What it stores: an hp_buf (status, content type, body) as one Redis string,
 * "HP/1 <status> <content type>\n<body>", readable with redis-cli. A GET hit
 * decodes it straight into the hp_buf the task returns.
 *
 * Failure is normal here, never fatal: Redis down, slow or answering garbage
 * makes a command fault (counted) at once or within command_timeout_ms, and
 * the client reconnects with exponential backoff. While it is not connected,
 * every call is refused at once (a bypass, counted) rather than queued, so a
 * dead Redis never holds a request longer than it takes to go upstream.
 *
 * What it owns: one connection at a time (its socket, reply parser, output
 * buffers and the FIFO of commands awaiting replies), one timer, and the
 * tasks of the commands in that FIFO; hp_l2_close gives all of it back.
 */
#ifndef HP_CACHE_L2_H
#define HP_CACHE_L2_H

#include "runtime/buf.h"
#include "runtime/options.h"
#include "runtime/stats.h"
#include "runtime/task.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct hp_l2 hp_l2_t;

/* A zero field takes its default from hp_l2_options, the table of bounds
 * and defaults (l2.c; the configuration's "cache.l2" section once L2 is
 * wired). Error messages name each field by its config key,
 * cache.l2.<field>. */
typedef struct {
    const char *url;             /* redis://HOST[:PORT][/DB]; copied. HOST: numeric
                                    IPv4, [IPv6] or localhost (no DNS on the loop);
                                    PORT 6379 and DB 0 when left out */
    unsigned connect_timeout_ms; /* from connect() to SELECT answered */
    unsigned command_timeout_ms; /* from sending a command to its reply */
    unsigned max_inflight;       /* commands awaiting replies; more are refused */
    size_t max_value_bytes;      /* the stored record (header + body), both ways */
    unsigned backoff_min_ms;     /* first reconnect delay after a failure ... */
    unsigned backoff_max_ms;     /* ... doubling per failure up to this */
} hp_l2_opts_t;

extern const hp_options_t hp_l2_options;

/* The statistics, declared once (runtime/stats.h): XX(name, kind, help),
 * kind being the Prometheus type (counter: only grows; gauge), from which
 * /stats and /metrics are both generated. Single-writer (runtime/counter.h): the
 * owning worker writes, any thread reads with hp_counter_get. Every field
 * is a uint64_t, so the blocks of all workers sum word by word. Every GET
 * and SET ends in exactly one outcome, so at any moment
 *   gets + sets == hits + misses + stored + errors + timeouts + bypasses
 *                  + rejected + shutdowns + inflight.
 * The reader_buf_* pair: hiredis's reply parser keeps one read buffer per
 * connection that libhiredis mallocs itself (hiredis 0.14 has no allocator
 * hook), so hp_alloc cannot count it; these make it visible instead. In
 * steady state it does not change per command. */
#define HP_L2_STATS(XX)                                                                            \
    XX(gets, counter, "GETs asked for")                                                            \
    XX(hits, counter, "GETs answered with a value")                                                \
    XX(misses, counter, "GETs answered: no such key")                                              \
    XX(sets, counter, "SETs asked for")                                                            \
    XX(stored, counter, "SETs acknowledged with OK")                                               \
    XX(errors, counter,                                                                            \
       "commands faulted by an error reply, a malformed reply or record, or the connection "       \
       "lost under them")                                                                          \
    XX(timeouts, counter, "commands faulted: no reply within command_timeout_ms")                  \
    XX(bypasses, counter, "calls refused at once: not connected")                                  \
    XX(rejected, counter,                                                                          \
       "calls refused at once: max_inflight reached, or a record too big or not encodable")        \
    XX(shutdowns, counter, "commands faulted or refused by close")                                 \
    XX(connects, counter, "connection attempts, the first one included")                           \
    XX(connect_failures, counter, "connection attempts that never got SELECT's OK")                \
    XX(reconnects, counter, "connection attempts made by the backoff timer")                       \
    XX(disconnects, counter, "ready connections lost to a fault")                                  \
    XX(connected, gauge, "1 while a connection is ready")                                          \
    XX(inflight, gauge, "GETs and SETs awaiting replies")                                          \
    XX(latency_sum, counter,                                                                       \
       "microseconds from send to reply, summed over the commands answered (latency_count)")       \
    XX(latency_count, counter, "commands answered (hits, misses, stored, error replies)")          \
    XX(reader_buf_bytes, gauge, "capacity of hiredis's read buffer (not counted by hp_alloc)")     \
    XX(reader_buf_changes, counter, "reads that grew or replaced hiredis's read buffer")

typedef struct {
    HP_L2_STATS(HP_STAT_FIELD)
} hp_l2_stats_t;

/* The table of hp_l2_stats_t (runtime/stats.h): its name is "l2". */
extern const hp_stats_table_t hp_l2_stats_table;

/* Check opts without creating anything (the config reload validates before
 * any worker sees a new file). Returns 0, or HP_ECONFIG with a message naming
 * the key in err (errlen bytes), e.g. "cache.l2.url: port must be 1..65535". */
int hp_l2_opts_check(const hp_l2_opts_t *opts, char *err, size_t errlen);

/* Create a client on loop (borrowed; must outlive the client) and start
 * connecting at once. Copies opts. Returns 0 and *out (owned: release with
 * hp_l2_close), or HP_ECONFIG with a message in err (see hp_l2_opts_check);
 * an unreachable Redis is not an error here, it is a bypass later. */
int hp_l2_init(uv_loop_t *loop, const hp_l2_opts_t *opts, hp_l2_t **out, char *err, size_t errlen);

/* Fault every command awaiting a reply with HP_ESHUTDOWN (their
 * continuations run before this returns), close the connection and the
 * timer, and once both are closed free l2 and call done(arg) from a close
 * callback, never from inside this call. Calls made meanwhile are refused
 * with HP_ESHUTDOWN. A second call is ignored. */
void hp_l2_close(hp_l2_t *l2, hp_cont_cb done, void *arg);

/* Live reload. Borrows opts (copied). Options equal to the running ones
 * change nothing (a SIGHUP that did not touch cache.l2 keeps the
 * connection). Different ones close the connection (commands in flight fault
 * with UV_ECONNRESET) and connect again at once with the new ones. Returns 0,
 * HP_ECONFIG with a message in err (nothing changed), or HP_ESHUTDOWN. */
int hp_l2_reconfigure(hp_l2_t *l2, const hp_l2_opts_t *opts, char *err, size_t errlen);

/* GET key (borrowed; copied before return). Returns 0 and *out, owned: a
 * pending task (drop it with hp_task_unref) whose result is
 *   an hp_buf_t * on a hit: owned by the task, take hp_buf_ref to keep it;
 *   NULL on a miss;
 * or a fault: UV_ETIMEDOUT, UV_ECONNRESET (connection lost), UV_EREMOTEIO
 * (Redis answered with an error), UV_EPROTO (a reply that is no answer to a
 * GET), UV_EILSEQ (the value is not a record of this format), UV_E2BIG (over
 * max_value_bytes), HP_ESHUTDOWN. The task may have faulted already when the
 * connection failed during this call. Continuations run from the loop's
 * callbacks (read, write, timer) or inside hp_l2_close / hp_l2_reconfigure,
 * and may call anything here, close included.
 * Or returns at once, with *out = NULL and nothing allocated: UV_ENOTCONN
 * (not connected: a bypass), UV_ENOBUFS (max_inflight awaiting replies) or
 * HP_ESHUTDOWN.
 * Allocations on a connected client (measured in tests/test_l2.c): 2 on a
 * hit (the task, the value's hp_buf), 1 on a miss (the task), charged to
 * the allocation scope current at this call. */
int hp_l2_get(hp_l2_t *l2, const char *key, size_t key_len, hp_task_t **out);

/* SET key record PX ttl_ms, fire and forget: key and value are borrowed and
 * copied into the output buffer before return; the outcome is only counted
 * (stored, errors, timeouts, shutdowns). ttl_ms 0 stores without expiry.
 * Returns 0 when sent (or queued behind a write in progress), or at once:
 * UV_ENOTCONN (a bypass), UV_ENOBUFS, UV_E2BIG (record over
 * max_value_bytes), UV_EINVAL (not encodable: a status outside 100..999,
 * a content type over 255 bytes or holding a line break), HP_ESHUTDOWN.
 * Allocates nothing on a connected client once its output buffer has grown
 * to the burst size. */
int hp_l2_set(hp_l2_t *l2, const char *key, size_t key_len, const hp_buf_t *value, uint64_t ttl_ms);

/* Borrowed; valid until close's done callback (or, after
 * hp_l2_count_into, the caller's block). */
const hp_l2_stats_t *hp_l2_stats(const hp_l2_t *l2);

/* Count into block (borrowed: it must outlive l2) from now on, adding what
 * l2 counted so far: successive clients of one worker (cache.l2.url turned
 * off, then on again) then keep one set of figures whose counters never go
 * back, as /stats and /metrics need. The gauges are set to 0 when l2 is
 * freed. */
void hp_l2_count_into(hp_l2_t *l2, hp_l2_stats_t *block);

/* The last failure with its detail ("" when none yet): why a connection
 * attempt failed or a connection was lost ("SELECT 99 refused: ERR DB index
 * is out of range", "connect to redis://... failed: connection refused"),
 * or the text of an error reply ("GET: WRONGTYPE ..."). Borrowed;
 * rewritten by the next failure. For logs and tests. */
const char *hp_l2_last_error(const hp_l2_t *l2);

#endif
