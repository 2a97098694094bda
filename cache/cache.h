/*
 * cache.h - hp_cache, the in-memory cache behind GET /cache/{key}: byte-string
 * keys to immutable hp_buf_t values, bounded in bytes, with a TTL, a
 * stale-while-revalidate window and single-flight fills.
 *
 * Who calls it: the cache handler (one hp_cache_get per request), the config
 * reload (hp_cache_reconfigure), /stats and /metrics (hp_cache_stats), and the
 * tests and benchmarks (hp_cache_put / hp_cache_lookup, which never fill).
 *
 * Threading: one cache per worker loop, shared-nothing; every call but
 * hp_cache_stats's counters belongs to that worker's thread. No locks.
 *
 * Ownership: the cache holds one reference to each stored value and one to
 * each in-flight fill task. The clock is the caller's: every call that needs
 * time takes now_ms (the server passes uv_now(loop)); a value that arrives
 * by a fill is stamped with the clock set by hp_cache_set_clock (the server
 * gives its loop's), or without one with the latest now_ms seen (tests).
 *
 * What max_bytes counts, per resident entry (hp_cache_entry_cost):
 *   the entry header (72 bytes on x86-64: queue and chain links, value,
 *   fill, hash, insert time, visited bit) + the key + its NUL
 *   + hp_buf_footprint(value) (buf header + content type + body).
 * Not counted: the bucket array (8 bytes a bucket, at most 2 buckets an
 * entry), the hp_cache_t itself, and the entries of fills still pending
 * (they hold a key but no value; their number is stats.pending_fills).
 */
#ifndef HP_CACHE_H
#define HP_CACHE_H

#include "runtime/buf.h"
#include "runtime/options.h"
#include "runtime/stats.h"
#include "runtime/task.h"
#include "runtime/vtask.h"

#include <stddef.h>
#include <stdint.h>

typedef struct hp_cache hp_cache_t;

typedef enum {
    HP_CACHE_SIEVE = 0, /* Zhang et al., NSDI'24: FIFO + visited bit + moving hand */
    HP_CACHE_LRU = 1,   /* least recently used, for comparison */
} hp_cache_policy_t;

/* The options (hp_cache_opts_t), as the configuration's "cache" section
 * reads them: their bounds and defaults, in cache.c. The cache itself
 * takes any values (tests use bounds far below the configuration's). */
extern const hp_options_t hp_cache_options;

typedef struct {
    size_t max_bytes;         /* bound on the bytes of resident entries (see above);
                                 0 stores nothing (fills still coalesce) */
    uint64_t ttl_ms;          /* fresh for ttl_ms after insert; 0: never expires */
    uint64_t stale_ms;        /* then served stale, with one background refresh,
                                 for stale_ms more; 0: no stale window */
    hp_cache_policy_t policy; /* eviction policy */
} hp_cache_opts_t;

/* Starts a fill for key: returns an owned hp_task whose successful result is
 * an hp_buf_t * the task owns (set with hp_task_set_dispose(t, <unref>)); it
 * may complete synchronously or later; a fault, or a buffer whose status is
 * not 2xx, means the fill failed (waiters still get that buffer). key is
 * borrowed and stays valid until the returned task completes. A call that
 * returns a task must see it completed or failed eventually: the cache and
 * every coalesced request wait for it. It must not call into the cache. */
typedef hp_task_t *(*hp_cache_fill_fn)(void *arg, const char *key, size_t key_len);

/* What one get did; the handler's X-Cache header. */
typedef enum {
    HP_CACHE_HIT = 0,   /* fresh value, served synchronously */
    HP_CACHE_MISS,      /* no value: this get started the fill */
    HP_CACHE_COALESCED, /* no value: joined the fill already running for key */
    HP_CACHE_STALE,     /* expired value served synchronously; a refresh runs */
} hp_cache_outcome_t;

/* "hit", "miss", "coalesced", "stale". Static; never NULL. */
const char *hp_cache_outcome_name(hp_cache_outcome_t outcome);

/* The statistics, declared once (runtime/stats.h): XX(name, kind, help).
 * Single-writer counters (runtime/counter.h): the owning worker writes, any
 * thread reads them with hp_counter_get. */
#define HP_CACHE_STATS(XX)                                                                         \
    XX(hits, counter, "gets and lookups answered with a fresh value")                              \
    XX(misses, counter, "gets and lookups that found no value (a get then starts a fill)")         \
    XX(coalesced, counter, "gets that joined a running fill")                                      \
    XX(stale, counter, "gets and lookups answered with a stale value")                             \
    XX(evictions, counter, "live entries dropped to fit max_bytes")                                \
    XX(expirations, counter, "entries dropped past their stale window")                            \
    XX(fills, counter, "fill calls: misses' fills and refreshes")                                  \
    XX(fill_failures, counter, "fills that faulted (or succeeded with NULL)")                      \
    XX(refreshes, counter, "fills started to revalidate a stale entry")                            \
    XX(waiters_left, counter, "waiters gone before their fill completed")                          \
    XX(pending_fills, gauge, "fills in flight")                                                    \
    XX(rejected_too_big, counter, "values not stored: one entry would exceed max_bytes")           \
    XX(entries, gauge, "resident entries (with a value)")                                          \
    XX(bytes, gauge, "their cost, always <= max_bytes")                                            \
    XX(max_bytes, gauge, "the bound in force")

typedef struct {
    HP_CACHE_STATS(HP_STAT_FIELD)
} hp_cache_stats_t;

/* The table of hp_cache_stats_t: its name is "cache". */
extern const hp_stats_table_t hp_cache_stats_table;

/* Returns owned: an empty cache; free with hp_cache_free. opts is borrowed
 * (copied); an out-of-range policy falls back to SIEVE. fill_arg is borrowed
 * and passed to every fill call. Allocates. */
hp_cache_t *hp_cache_new(const hp_cache_opts_t *opts, hp_cache_fill_fn fill, void *fill_arg);

/* Drops every entry and frees the cache; NULL is a no-op. Fills still in
 * flight keep running and their waiters still get their results, but their
 * completion no longer touches the cache: the entries that wait for them are
 * detached here and freed by their own continuation. */
void hp_cache_free(hp_cache_t *c);

/* The time, in the unit of now_ms, when a fill completes. */
typedef uint64_t (*hp_cache_clock_fn)(void *arg);
void hp_cache_set_clock(hp_cache_t *c, hp_cache_clock_fn clock, void *arg);

/* Live reload: the new bound applies at once (evicting down to it before
 * returning), the new TTL and stale window apply to resident entries too
 * (entries remember when they were stored, not when they expire), a new
 * policy takes over the current queue. Returns 0, or UV_EINVAL for an unknown
 * policy (nothing changes). Borrows opts. */
int hp_cache_reconfigure(hp_cache_t *c, const hp_cache_opts_t *opts);

/* The request path. Returns an owned valuetask to consume exactly once with
 * hp_cache_result (await it first with hp_vtask_on_completed when it is not
 * completed), and sets *outcome (must not be NULL).
 *   HIT    completed; HP_MODE_VALUETASK: inline, no allocation;
 *          HP_MODE_TASK: one completed heap task (one allocation).
 *   STALE  as HIT for the served value; the first stale get also starts the
 *          entry's one background refresh (a fill_fn call).
 *   MISS   wraps the new fill's task (the same in both modes): the cache
 *          allocates one entry; fill_fn allocates what it does.
 *   COALESCED wraps the running fill's task; allocates nothing.
 * key is borrowed (copied on a miss). now_ms: the caller's clock. */
hp_vtask_t hp_cache_get(hp_cache_t *c, hp_mode_t mode, const char *key, size_t key_len,
                        uint64_t now_ms, hp_cache_outcome_t *outcome);

/* Consume a valuetask returned by hp_cache_get. On 0, *out is a reference
 * owned by the caller (drop it with hp_buf_unref), whatever form vt had.
 * Otherwise *out is NULL and the return is the fill's fault code (its message
 * in *msg when msg is not NULL), HP_EVTASK_PENDING (nothing consumed: await
 * and call again) or HP_EVTASK_CONSUMED. A valuetask that is never consumed
 * leaks a buffer reference or a task. */
int hp_cache_result(hp_vtask_t *vt, hp_buf_t **out, const char **msg);

/* A caller that got a pending valuetask from hp_cache_get (MISS or
 * COALESCED) is gone and will never read it; fill is the task that
 * valuetask waits for (borrowed: the valuetask still holds it). Its fill no
 * longer counts it as a waiter (counted in stats.waiters_left). The fill
 * itself goes on for the waiters still there and for the cache. Returns 1
 * when the fill has no waiter left and its entry no value - only the cache
 * would read the result: the caller may then cancel the fill, whose fault
 * removes the entry as any failed fill does; else 0 (also when key has no
 * fill, or another one). Allocates nothing. */
int hp_cache_leave(hp_cache_t *c, const char *key, size_t key_len, const hp_task_t *fill);

/* Store value under key without a fill (tests, benchmarks, warm-up):
 * borrows value and takes the cache's own reference; replaces a resident
 * value; stamps it with now_ms. Returns 0, or UV_E2BIG when the entry alone
 * would exceed max_bytes (not stored; an older value of key is dropped). */
int hp_cache_put(hp_cache_t *c, const char *key, size_t key_len, hp_buf_t *value, uint64_t now_ms);

/* Look key up without ever starting a fill: counted and touched like a get
 * (HIT, STALE; MISS when there is no value, a pending fill included).
 * Returns the value borrowed until the next call into the cache, or NULL. */
hp_buf_t *hp_cache_lookup(hp_cache_t *c, const char *key, size_t key_len, uint64_t now_ms,
                          hp_cache_outcome_t *outcome);

/* What one entry with this key and value counts against max_bytes. */
size_t hp_cache_entry_cost(size_t key_len, const hp_buf_t *value);

/* Borrowed; lives as long as the cache. */
const hp_cache_stats_t *hp_cache_stats(const hp_cache_t *c);

#endif
