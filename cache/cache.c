/*
 * cache.c - hp_cache (see cache.h).
 *
 * What: a chained hash table of entries, each one allocation holding the
 * entry and its key, threaded on one queue (head newest, tail oldest) that
 * both policies share. SIEVE never moves an entry on a hit: it sets a
 * visited bit, and eviction walks a hand from the tail toward the head,
 * clearing bits, to the first unvisited entry. LRU moves the entry to the
 * head on a hit and evicts the tail. A hit touches the bucket chain, the
 * entry and (SIEVE) nothing else; it allocates nothing.
 *
 * Fills: an entry exists from the miss that starts its fill, without a value
 * and outside the queue, so every later get on the key finds it and shares
 * its task (single-flight). The cache registers its own continuation on the
 * fill before any waiter can, so the value is stored before waiters run. An
 * entry with a fill in flight is freed only by that continuation: eviction,
 * expiry and hp_cache_free take its value but leave the entry (pending in the
 * table, or detached from a freed cache) for the continuation to finish.
 *
 * Waiters: a fill counts the gets waiting for it (the MISS that started it
 * and each COALESCED one), so that when the last of them has gone
 * (hp_cache_leave) and the entry has no value to refresh, the caller may
 * cancel a fill only the cache would read. The count saturates, and a
 * saturated one is never decremented: it then errs toward finishing the
 * fill. The count lives in what was the entry's padding.
 *
 * Invariants (e is an entry):
 *   e in the table  <=>  e->value or e->fill, and e->cache != NULL
 *   e in the queue  <=>  e->value
 *   e->fill         =>   fill_done_cb(e) is registered on it, and only it frees e
 *   e->cache == NULL =>  detached: no value, a fill, in no list
 *   stats.bytes == sum of cost(e) over the queue <= max_bytes after every call
 *
 * Rejected alternative: a separate table of in-flight fills beside the table
 * of values. It keeps keys without values out of the value table, but every
 * miss then costs two lookups, a refresh whose value is evicted or expires
 * stops being findable (so a second fill starts for the key), and each
 * flight needs a refcounted handle to survive hp_cache_free. One table and
 * the rule "the continuation owns an entry with a fill" cover all three.
 *
 * Measured: on the fixed Zipf(1.0) stream of tests/test_cache.c (1,000,000
 * requests over 100,000 keys, seed 0x5eed2024) SIEVE hits 0.5958 against
 * LRU's 0.5064 with room for 1% of the keys, 0.7758 against 0.7349 with 10%
 * (a perfect static top-k would reach 0.62 and 0.81). A hit over 10,000
 * resident keys, get + hp_cache_result + unref, -O2 on an AMD EPYC VM: SIEVE
 * 20 ns and 0 allocations in valuetask mode, 45 ns and 1 allocation in task
 * mode; LRU 22 / 48 ns.
 */
#include "cache/cache.h"

#include "runtime/alloc.h"
#include "runtime/options.h"
#include "runtime/counter.h"
#include "runtime/errors.h"

#include <string.h>
#include <uv.h>

/* 16 buckets to start: a cache that holds a handful of keys (tests, a cold
 * worker) stays small; the table doubles at one entry per bucket. */
#define MIN_BUCKETS 16

typedef struct entry entry_t;

struct entry {
    entry_t *chain;    /* next in this bucket */
    entry_t *newer;    /* queue: toward the head; NULL at the head */
    entry_t *older;    /* queue: toward the tail; NULL at the tail */
    hp_cache_t *cache; /* owner; NULL once hp_cache_free detached the entry */
    hp_buf_t *value;   /* one reference; NULL while the entry only waits for a fill */
    hp_task_t *fill;   /* the fill or refresh in flight (one reference), or NULL */
    uint64_t hash;     /* of the key, kept for lookups and rehashing */
    uint64_t born_ms;  /* cache clock when value was stored: age = now - born */
    uint32_t key_len;  /* keys are request-path slices, far below 4 GiB */
    uint8_t visited;   /* SIEVE: hit since the hand last passed */
    uint16_t waiters;  /* gets waiting for e->fill (saturating); 0 without a fill */
    char key[];        /* key_len bytes and a NUL */
};

/* cache.h's cost of an entry says 72 bytes; the waiter count fits in the
 * padding before the key. */
_Static_assert(sizeof(void *) != 8 || sizeof(entry_t) == 72, "entry header is 72 bytes on LP64");

struct hp_cache {
    entry_t **buckets;
    size_t mask;          /* buckets - 1; the count is a power of two */
    size_t count;         /* entries in the table, resident and pending */
    entry_t *head, *tail; /* the queue of resident entries */
    entry_t *hand;        /* SIEVE: next entry to inspect; NULL means the tail */
    hp_cache_fill_fn fill;
    void *fill_arg;
    hp_cache_opts_t opts;
    uint64_t now_ms;         /* the latest now_ms any call passed in */
    hp_cache_clock_fn clock; /* read when a fill completes, if set */
    void *clock_arg;
    hp_cache_stats_t stats;
};

enum { FRESH, STALE, DEAD };

static void fill_done_cb(void *arg);

static const char *const policy_names[] = {"sieve", "lru", NULL}; /* by hp_cache_policy_t */

static const hp_option_t options[] = {
    HP_OPTION_INT(hp_cache_opts_t, "max_bytes", max_bytes, 4096, INT64_C(1) << 40, 67108864,
                  "64 MiB per worker: bounded, and large enough that hot keys never leave"),
    HP_OPTION_INT(hp_cache_opts_t, "ttl_ms", ttl_ms, 1, 86400000, 30000,
                  "30 s: long against request rates, short against data changes"),
    HP_OPTION_INT(hp_cache_opts_t, "stale_ms", stale_ms, 0, 86400000, 10000,
                  "10 s stale-while-revalidate window (RFC 5861); 0 turns it off"),
    HP_OPTION_ENUM(hp_cache_opts_t, "policy", policy, policy_names, "sieve",
                   "SIEVE (NSDI'24) beats LRU on skewed workloads; \"lru\" for comparison"),
};

const hp_options_t hp_cache_options = {
    .section = "cache",
    .options = options,
    .n = sizeof(options) / sizeof(options[0]),
    .size = sizeof(hp_cache_opts_t),
};

#define ROW(name, kind, help) HP_STAT_ROW(hp_cache_stats_t, name, kind, help)
static const hp_stat_t stat_rows[] = {HP_CACHE_STATS(ROW)};
#undef ROW

const hp_stats_table_t hp_cache_stats_table = {
    .name = "cache",
    .size = sizeof(hp_cache_stats_t),
    .rows = stat_rows,
    .nrows = sizeof(stat_rows) / sizeof(stat_rows[0]),
};

const char *hp_cache_outcome_name(hp_cache_outcome_t outcome)
{
    switch (outcome) {
    case HP_CACHE_HIT: return "hit";
    case HP_CACHE_MISS: return "miss";
    case HP_CACHE_COALESCED: return "coalesced";
    case HP_CACHE_STALE: return "stale";
    }
    return "unknown";
}

/* Gauges go down as well as up; single writer, so load-and-store is exact. */
static void gauge_sub(uint64_t *g, uint64_t n)
{
    hp_counter_set(g, hp_counter_get(g) - n);
}

/* FNV-1a, then murmur3's finalizer so the low bits that pick the bucket
 * depend on every byte. Keys are short URL path segments. */
static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

size_t hp_cache_entry_cost(size_t key_len, const hp_buf_t *value)
{
    return sizeof(entry_t) + key_len + 1 + hp_buf_footprint(value);
}

static size_t cost(const entry_t *e)
{
    return hp_cache_entry_cost(e->key_len, e->value);
}

static void clock_advance(hp_cache_t *c, uint64_t now_ms)
{
    if (now_ms > c->now_ms) c->now_ms = now_ms;
}

/* Ages are compared by subtraction so that no TTL, however large, overflows. */
static int age(const hp_cache_t *c, const entry_t *e)
{
    if (c->opts.ttl_ms == 0) return FRESH;
    uint64_t a = c->now_ms - e->born_ms; /* born_ms <= now_ms: both come from the clock */
    if (a < c->opts.ttl_ms) return FRESH;
    if (a - c->opts.ttl_ms < c->opts.stale_ms) return STALE;
    return DEAD;
}

/* --- the table ---------------------------------------------------------- */

static entry_t *find(const hp_cache_t *c, const char *key, size_t len, uint64_t h)
{
    for (entry_t *e = c->buckets[h & c->mask]; e; e = e->chain) {
        if (e->hash == h && e->key_len == len && (len == 0 || memcmp(e->key, key, len) == 0))
            return e;
    }
    return NULL;
}

static void grow(hp_cache_t *c)
{
    size_t n = 2 * (c->mask + 1);
    entry_t **b = hp_calloc(n, sizeof(*b));
    for (size_t i = 0; i <= c->mask; i++) {
        entry_t *e = c->buckets[i];
        while (e) {
            entry_t *next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    hp_free(c->buckets);
    c->buckets = b;
    c->mask = n - 1;
}

/* Returns an entry for key, linked into the table, with neither value nor
 * fill: the caller gives it one before returning. */
static entry_t *entry_add(hp_cache_t *c, const char *key, size_t len, uint64_t h)
{
    if (c->count > c->mask) grow(c);
    entry_t *e = hp_calloc(1, sizeof(*e) + len + 1);
    e->cache = c;
    e->hash = h;
    e->key_len = (uint32_t)len;
    if (len) memcpy(e->key, key, len); /* an empty key may come as NULL */
    entry_t **b = &c->buckets[h & c->mask];
    e->chain = *b;
    *b = e;
    c->count++;
    return e;
}

static void table_del(hp_cache_t *c, entry_t *e)
{
    entry_t **p = &c->buckets[e->hash & c->mask];
    while (*p != e)
        p = &(*p)->chain;
    *p = e->chain;
    c->count--;
}

/* --- the queue and the policies ----------------------------------------- */

static void queue_push(hp_cache_t *c, entry_t *e)
{
    e->newer = NULL;
    e->older = c->head;
    if (c->head)
        c->head->newer = e;
    else
        c->tail = e;
    c->head = e;
}

static void queue_del(hp_cache_t *c, entry_t *e)
{
    if (c->hand == e) c->hand = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        c->head = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->tail = e->newer;
    e->newer = e->older = NULL;
}

/* A hit. SIEVE writes the bit only when it changes, so a hot entry's cache
 * line stays clean; LRU rewrites up to six links. */
static void touch(hp_cache_t *c, entry_t *e)
{
    if (c->opts.policy == HP_CACHE_SIEVE) {
        if (!e->visited) e->visited = 1;
    } else if (c->head != e) {
        queue_del(c, e);
        queue_push(c, e);
    }
}

/* The entry to evict; the queue is not empty. SIEVE's loop ends: one lap
 * clears every bit it passes. */
static entry_t *victim(hp_cache_t *c)
{
    if (c->opts.policy == HP_CACHE_LRU) return c->tail;
    entry_t *e = c->hand ? c->hand : c->tail;
    while (e->visited) {
        e->visited = 0;
        e = e->newer ? e->newer : c->tail;
    }
    c->hand = e->newer;
    return e;
}

/* --- entries ------------------------------------------------------------ */

static void value_drop(hp_cache_t *c, entry_t *e)
{
    gauge_sub(&c->stats.bytes, cost(e));
    gauge_sub(&c->stats.entries, 1);
    queue_del(c, e);
    hp_buf_unref(e->value);
    e->value = NULL;
    e->visited = 0;
}

/* Takes e's value out of the cache. e goes too, unless a fill is in flight:
 * then it stays in the table, pending, so gets keep joining that fill, and
 * the fill's continuation stores into it or removes it. */
static void entry_remove(hp_cache_t *c, entry_t *e)
{
    if (e->value) value_drop(c, e);
    if (e->fill) return;
    table_del(c, e);
    hp_free(e);
}

static void make_room(hp_cache_t *c, size_t need)
{
    while (hp_counter_get(&c->stats.bytes) + need > c->opts.max_bytes) {
        entry_t *v = victim(c);
        hp_counter_add(age(c, v) == DEAD ? &c->stats.expirations : &c->stats.evictions, 1);
        entry_remove(c, v);
    }
}

/* Gives e (in the table, outside the queue or about to leave it) value as a
 * new resident at the head. e may be freed when the value cannot fit. */
static int store(hp_cache_t *c, entry_t *e, hp_buf_t *value)
{
    if (e->value) value_drop(c, e);
    size_t need = hp_cache_entry_cost(e->key_len, value);
    if (need > c->opts.max_bytes) {
        hp_counter_add(&c->stats.rejected_too_big, 1);
        entry_remove(c, e);
        return UV_E2BIG;
    }
    make_room(c, need);
    e->value = hp_buf_ref(value);
    e->born_ms = c->now_ms;
    queue_push(c, e);
    hp_counter_add(&c->stats.bytes, need);
    hp_counter_add(&c->stats.entries, 1);
    return 0;
}

/* --- fills -------------------------------------------------------------- */

/* Starts e's fill. When waiter is not NULL it receives an owned reference to
 * the fill's task, taken before the cache's continuation can run. e must not
 * be used afterwards: a fill that completed synchronously has already stored
 * into it, or freed it. */
static void fill_start(hp_cache_t *c, entry_t *e, hp_task_t **waiter)
{
    hp_task_t *t = c->fill(c->fill_arg, e->key, e->key_len);
    e->fill = t;
    hp_counter_add(&c->stats.fills, 1);
    hp_counter_add(&c->stats.pending_fills, 1);
    if (waiter) *waiter = hp_task_ref(t);
    hp_task_await(t, fill_done_cb, e);
}

/* Runs first among the fill's continuations, so the value is stored before
 * any waiter reads it; the waiters read the task, not the entry. */
static void fill_done_cb(void *arg)
{
    entry_t *e = arg;
    hp_cache_t *c = e->cache;
    hp_task_t *t = e->fill;
    e->fill = NULL;
    e->waiters = 0;
    if (c == NULL) {
        hp_free(e); /* detached by hp_cache_free */
        hp_task_unref(t);
        return;
    }
    gauge_sub(&c->stats.pending_fills, 1);
    /* A value is fresh for ttl_ms from when it arrived, not from the last
     * request: a fill that took longer than the TTL would otherwise store
     * a value born expired. */
    if (c->clock) clock_advance(c, c->clock(c->clock_arg));
    hp_value_t v;
    /* Only a 2xx answer is stored: an upstream's 404 or 500 reaches the
     * waiters of this fill (they read the task) but is not cached. */
    if (hp_task_result(t, &v) == 0 && v.ptr != NULL && ((hp_buf_t *)v.ptr)->status / 100 == 2) {
        store(c, e, v.ptr);
    } else {
        hp_counter_add(&c->stats.fill_failures, 1);
        /* Failures are not cached. A stale value stays for the rest of its
         * window (the next stale get retries); a pending entry goes. */
        if (e->value == NULL) entry_remove(c, e);
    }
    hp_task_unref(t);
}

/* --- lifecycle ---------------------------------------------------------- */

static int policy_ok(hp_cache_policy_t p)
{
    return p == HP_CACHE_SIEVE || p == HP_CACHE_LRU;
}

hp_cache_t *hp_cache_new(const hp_cache_opts_t *opts, hp_cache_fill_fn fill, void *fill_arg)
{
    hp_cache_t *c = hp_calloc(1, sizeof(*c));
    c->buckets = hp_calloc(MIN_BUCKETS, sizeof(*c->buckets));
    c->mask = MIN_BUCKETS - 1;
    c->fill = fill;
    c->fill_arg = fill_arg;
    c->opts = *opts;
    if (!policy_ok(c->opts.policy)) c->opts.policy = HP_CACHE_SIEVE;
    hp_counter_set(&c->stats.max_bytes, c->opts.max_bytes);
    return c;
}

void hp_cache_set_clock(hp_cache_t *c, hp_cache_clock_fn clock, void *arg)
{
    c->clock = clock;
    c->clock_arg = arg;
}

void hp_cache_free(hp_cache_t *c)
{
    if (c == NULL) return;
    for (size_t i = 0; i <= c->mask; i++) {
        entry_t *e = c->buckets[i];
        while (e) {
            entry_t *next = e->chain;
            hp_buf_unref(e->value);
            if (e->fill) {
                /* Its continuation frees it; leave nothing that points here. */
                e->value = NULL;
                e->cache = NULL;
                e->chain = e->newer = e->older = NULL;
            } else {
                hp_free(e);
            }
            e = next;
        }
    }
    hp_free(c->buckets);
    hp_free(c);
}

int hp_cache_reconfigure(hp_cache_t *c, const hp_cache_opts_t *opts)
{
    if (!policy_ok(opts->policy)) return UV_EINVAL;
    if (opts->policy != c->opts.policy) c->hand = NULL;
    c->opts = *opts;
    hp_counter_set(&c->stats.max_bytes, opts->max_bytes);
    make_room(c, 0);
    return 0;
}

/* --- the request path --------------------------------------------------- */

static void buf_dispose(hp_value_t v)
{
    hp_buf_unref(v.ptr);
}

/* A completed valuetask carrying its own reference to value. */
static hp_vtask_t serve(hp_mode_t mode, hp_buf_t *value)
{
    hp_value_t v = hp_value_ptr(hp_buf_ref(value));
    if (mode != HP_MODE_TASK) return hp_vtask_from_result(v);
    hp_task_t *t = hp_task_from_result(v);
    hp_task_set_dispose(t, buf_dispose);
    return hp_vtask_from_task(t);
}

/* Everything but a fresh hit: stale, expired, pending, absent. */
static hp_vtask_t get_slow(hp_cache_t *c, hp_mode_t mode, entry_t *e, const char *key,
                           size_t key_len, uint64_t h, hp_cache_outcome_t *outcome)
{
    if (e && e->value) {
        if (age(c, e) == STALE) {
            touch(c, e);
            hp_counter_add(&c->stats.stale, 1);
            *outcome = HP_CACHE_STALE;
            /* Serve first: a refresh that completes at once replaces e->value. */
            hp_vtask_t vt = serve(mode, e->value);
            if (e->fill == NULL) {
                hp_counter_add(&c->stats.refreshes, 1);
                fill_start(c, e, NULL);
            }
            return vt;
        }
        hp_counter_add(&c->stats.expirations, 1);
        int refreshing = e->fill != NULL;
        entry_remove(c, e);
        if (!refreshing) e = NULL;
    }
    if (e) {
        /* Pending, or expired while its refresh runs: join that fill rather
         * than start a second one for the same key. */
        if (e->waiters < UINT16_MAX) e->waiters++;
        hp_counter_add(&c->stats.coalesced, 1);
        *outcome = HP_CACHE_COALESCED;
        return hp_vtask_from_task(hp_task_ref(e->fill));
    }
    hp_counter_add(&c->stats.misses, 1);
    *outcome = HP_CACHE_MISS;
    if (key_len > UINT32_MAX) return hp_vtask_failed(UV_E2BIG, "cache key too long");
    hp_task_t *t;
    entry_t *e2 = entry_add(c, key, key_len, h);
    e2->waiters = 1;
    fill_start(c, e2, &t);
    return hp_vtask_from_task(t);
}

hp_vtask_t hp_cache_get(hp_cache_t *c, hp_mode_t mode, const char *key, size_t key_len,
                        uint64_t now_ms, hp_cache_outcome_t *outcome)
{
    clock_advance(c, now_ms);
    uint64_t h = hash_key(key, key_len);
    entry_t *e = find(c, key, key_len, h);
    if (e && e->value && age(c, e) == FRESH) {
        touch(c, e);
        hp_counter_add(&c->stats.hits, 1);
        *outcome = HP_CACHE_HIT;
        return serve(mode, e->value);
    }
    return get_slow(c, mode, e, key, key_len, h, outcome);
}

int hp_cache_result(hp_vtask_t *vt, hp_buf_t **out, const char **msg)
{
    /* hp_vtask_result drops a task-backed vtask's reference, and if it was
     * the last, the task's dispose drops the buffer: hold the task until the
     * caller has a reference of its own. An inline vtask hands over the
     * reference serve() took for it. A copy whose task another copy
     * released holds nothing (the task may be gone): reading it is refused. */
    hp_task_t *hold = hp_vtask_task(vt);
    if (hold) hp_task_ref(hold);
    hp_value_t v;
    *out = NULL;
    int rc = hp_vtask_result(vt, &v, msg);
    if (rc == 0) {
        *out = v.ptr;
        if (hold && *out) hp_buf_ref(*out);
    }
    hp_task_unref(hold);
    return rc;
}

int hp_cache_leave(hp_cache_t *c, const char *key, size_t key_len, const hp_task_t *fill)
{
    hp_counter_add(&c->stats.waiters_left, 1);
    entry_t *e = find(c, key, key_len, hash_key(key, key_len));
    if (e == NULL || e->fill != fill || e->waiters == 0 || e->waiters == UINT16_MAX) return 0;
    return --e->waiters == 0 && e->value == NULL;
}

/* --- without fills ------------------------------------------------------ */

int hp_cache_put(hp_cache_t *c, const char *key, size_t key_len, hp_buf_t *value, uint64_t now_ms)
{
    clock_advance(c, now_ms);
    if (key_len > UINT32_MAX) return UV_E2BIG;
    uint64_t h = hash_key(key, key_len);
    entry_t *e = find(c, key, key_len, h);
    if (e == NULL) {
        if (hp_cache_entry_cost(key_len, value) > c->opts.max_bytes) {
            hp_counter_add(&c->stats.rejected_too_big, 1);
            return UV_E2BIG;
        }
        e = entry_add(c, key, key_len, h);
    }
    return store(c, e, value);
}

hp_buf_t *hp_cache_lookup(hp_cache_t *c, const char *key, size_t key_len, uint64_t now_ms,
                          hp_cache_outcome_t *outcome)
{
    clock_advance(c, now_ms);
    entry_t *e = find(c, key, key_len, hash_key(key, key_len));
    if (e && e->value) {
        int a = age(c, e);
        if (a != DEAD) {
            touch(c, e);
            hp_counter_add(a == FRESH ? &c->stats.hits : &c->stats.stale, 1);
            *outcome = a == FRESH ? HP_CACHE_HIT : HP_CACHE_STALE;
            return e->value;
        }
        hp_counter_add(&c->stats.expirations, 1);
        entry_remove(c, e);
    }
    hp_counter_add(&c->stats.misses, 1);
    *outcome = HP_CACHE_MISS;
    return NULL;
}

const hp_cache_stats_t *hp_cache_stats(const hp_cache_t *c)
{
    return &c->stats;
}
