/*
 * test_cache.c - cache/cache.c: hits and misses, exact allocation counts per
 * get in both modes, single-flight fills, TTL and stale-while-revalidate,
 * failed fills, the memory bound, live reconfiguration, fills that outlive
 * the cache, SIEVE against LRU on a fixed scenario and on a Zipf stream.
 *
 * Fills are the test's own: a pending hp_task that the test completes or
 * fails by hand, or one completed (or failed) before fill_fn returns. The
 * clock is a number the test passes in, so every expiry is exact.
 */
#include "cache/cache.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include <cmocka.h>

/* --- fixtures ----------------------------------------------------------- */

enum { FILL_PENDING, FILL_SYNC_OK, FILL_SYNC_FAIL };

#define MAX_PENDING 8

/* The fill function's state: how it answers, and what it was asked. */
typedef struct {
    int how;         /* FILL_* */
    hp_buf_t *value; /* FILL_SYNC_OK's result (borrowed) */
    int calls;
    char last_key[64];
    hp_task_t *tasks[MAX_PENDING]; /* FILL_PENDING: the test's own references */
    int ntasks;
} filler_t;

static void buf_dispose(hp_value_t v)
{
    hp_buf_unref(v.ptr);
}

static hp_task_t *fill_cb(void *arg, const char *key, size_t key_len)
{
    filler_t *f = arg;
    f->calls++;
    snprintf(f->last_key, sizeof(f->last_key), "%.*s", (int)key_len, key);
    hp_task_t *t = hp_task_new();
    hp_task_set_dispose(t, buf_dispose);
    if (f->how == FILL_SYNC_OK) {
        hp_task_complete(t, hp_value_ptr(hp_buf_ref(f->value)));
    } else if (f->how == FILL_SYNC_FAIL) {
        hp_task_fail(t, HP_EUPSTREAM_PROTOCOL, "upstream sent garbage (test)");
    } else {
        assert_true(f->ntasks < MAX_PENDING);
        f->tasks[f->ntasks++] = hp_task_ref(t);
    }
    return t;
}

/* Complete the i-th pending fill with value (the task takes its own
 * reference) and drop the test's reference to the task. */
static void fill_complete(filler_t *f, int i, hp_buf_t *value)
{
    assert_int_equal(hp_task_complete(f->tasks[i], hp_value_ptr(hp_buf_ref(value))), 0);
    hp_task_unref(f->tasks[i]);
    f->tasks[i] = NULL;
}

static void fill_fail(filler_t *f, int i, int err, const char *msg)
{
    assert_int_equal(hp_task_fail(f->tasks[i], err, msg), 0);
    hp_task_unref(f->tasks[i]);
    f->tasks[i] = NULL;
}

static hp_buf_t *make_buf(const char *body)
{
    size_t n = strlen(body);
    hp_buf_t *b = hp_buf_new(200, "text/plain", 10, n);
    memcpy(b->body, body, n);
    return b;
}

/* An awaiting request: registers one continuation, reads the result there. */
typedef struct {
    hp_vtask_t vt;
    hp_cache_outcome_t outcome;
    int done;
    int rc;
    hp_buf_t *buf;
    const char *msg;
} consumer_t;

static void consumer_cb(void *arg)
{
    consumer_t *k = arg;
    k->done++;
    k->rc = hp_cache_result(&k->vt, &k->buf, &k->msg);
}

static void consumer_get(consumer_t *k, hp_cache_t *c, hp_mode_t mode, const char *key,
                         uint64_t now)
{
    memset(k, 0, sizeof(*k));
    k->vt = hp_cache_get(c, mode, key, strlen(key), now, &k->outcome);
    assert_int_equal(hp_vtask_on_completed(&k->vt, consumer_cb, k), 0);
}

static void consumer_done(consumer_t *k)
{
    hp_buf_unref(k->buf);
    k->buf = NULL;
}

/* get + consume a completed valuetask; returns the caller's reference. */
static hp_buf_t *get_now(hp_cache_t *c, hp_mode_t mode, const char *key, uint64_t now,
                         hp_cache_outcome_t *outcome)
{
    hp_vtask_t vt = hp_cache_get(c, mode, key, strlen(key), now, outcome);
    assert_true(hp_vtask_is_completed(&vt));
    hp_buf_t *b = NULL;
    assert_int_equal(hp_cache_result(&vt, &b, NULL), 0);
    assert_non_null(b);
    return b;
}

static uint64_t allocs(void)
{
    return hp_alloc_stats_sum(hp_alloc_thread_stats()).count;
}

static size_t one_entry(const char *key, const hp_buf_t *value)
{
    return hp_cache_entry_cost(strlen(key), value);
}

static hp_cache_opts_t opts_of(size_t max_bytes, uint64_t ttl, uint64_t stale,
                               hp_cache_policy_t policy)
{
    return (hp_cache_opts_t){
        .max_bytes = max_bytes, .ttl_ms = ttl, .stale_ms = stale, .policy = policy};
}

#define BIG (1u << 20)

/* --- hits and misses ---------------------------------------------------- */

static void test_miss_then_hit(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 1000, 0, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_buf_t *v = make_buf("value-a");

    consumer_t k;
    consumer_get(&k, c, HP_MODE_VALUETASK, "a", 0);
    assert_int_equal(k.outcome, HP_CACHE_MISS);
    assert_int_equal(f.calls, 1);
    assert_string_equal(f.last_key, "a");
    assert_int_equal(k.done, 0);
    assert_int_equal(hp_cache_stats(c)->pending_fills, 1);

    fill_complete(&f, 0, v);
    assert_int_equal(k.done, 1);
    assert_int_equal(k.rc, 0);
    assert_ptr_equal(k.buf, v);
    consumer_done(&k);
    assert_int_equal(hp_cache_stats(c)->entries, 1);
    assert_int_equal(hp_cache_stats(c)->pending_fills, 0);
    assert_int_equal(hp_cache_stats(c)->bytes, one_entry("a", v));

    hp_cache_outcome_t out;
    hp_buf_t *b = get_now(c, HP_MODE_VALUETASK, "a", 10, &out);
    assert_int_equal(out, HP_CACHE_HIT);
    assert_ptr_equal(b, v);
    hp_buf_unref(b);

    /* Another key misses and fills on its own. */
    consumer_get(&k, c, HP_MODE_VALUETASK, "b", 10);
    assert_int_equal(k.outcome, HP_CACHE_MISS);
    assert_int_equal(f.calls, 2);
    fill_complete(&f, 1, v);
    assert_int_equal(k.rc, 0);
    consumer_done(&k);

    const hp_cache_stats_t *s = hp_cache_stats(c);
    assert_int_equal(s->hits, 1);
    assert_int_equal(s->misses, 2);
    assert_int_equal(s->fills, 2);
    assert_int_equal(s->entries, 2);
    hp_cache_free(c);
    assert_int_equal(v->refs, 1);
    hp_buf_unref(v);
}

/* Exact allocation counts per get, in both modes. */
static void test_alloc_counts(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 1000, 0, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_buf_t *v = make_buf("value");
    assert_int_equal(hp_cache_put(c, "k", 1, v, 0), 0);
    assert_int_equal(v->refs, 2);

    /* Hit, valuetask mode: zero allocations, get and consume included. */
    hp_cache_outcome_t out;
    uint64_t before = allocs();
    for (int i = 0; i < 100; i++) {
        hp_vtask_t vt = hp_cache_get(c, HP_MODE_VALUETASK, "k", 1, 1, &out);
        hp_buf_t *b;
        assert_int_equal(hp_cache_result(&vt, &b, NULL), 0);
        hp_buf_unref(b);
    }
    assert_int_equal(allocs() - before, 0);
    assert_int_equal(out, HP_CACHE_HIT);

    /* Hit, task mode: exactly one, the completed task; its dispose drops
     * the task's buffer reference. */
    before = allocs();
    hp_vtask_t vt = hp_cache_get(c, HP_MODE_TASK, "k", 1, 1, &out);
    assert_int_equal(allocs() - before, 1);
    assert_int_equal(out, HP_CACHE_HIT);
    assert_int_equal(vt.kind, HP_VT_TASK);
    assert_int_equal(v->refs, 3);
    hp_buf_t *b;
    assert_int_equal(hp_cache_result(&vt, &b, NULL), 0);
    assert_ptr_equal(b, v);
    assert_int_equal(v->refs, 3); /* the task's went, the caller's came */
    hp_buf_unref(b);
    assert_int_equal(allocs() - before, 1);
    assert_int_equal(v->refs, 2);

    /* Miss: the entry plus what fill_fn allocates (here one pending task),
     * the same in both modes. Coalesced: nothing. */
    for (int mode = HP_MODE_VALUETASK; mode <= HP_MODE_TASK; mode++) {
        const char *key = mode == HP_MODE_TASK ? "m-task" : "m-vt";
        int i = f.ntasks;
        before = allocs();
        hp_vtask_t miss = hp_cache_get(c, mode, key, strlen(key), 1, &out);
        assert_int_equal(out, HP_CACHE_MISS);
        assert_int_equal(allocs() - before, 2);

        before = allocs();
        hp_vtask_t co = hp_cache_get(c, mode, key, strlen(key), 1, &out);
        assert_int_equal(out, HP_CACHE_COALESCED);
        assert_int_equal(allocs() - before, 0);
        assert_ptr_equal(co.u.task, miss.u.task);

        fill_complete(&f, i, v);
        assert_int_equal(hp_cache_result(&miss, &b, NULL), 0);
        hp_buf_unref(b);
        assert_int_equal(hp_cache_result(&co, &b, NULL), 0);
        hp_buf_unref(b);
    }

    /* A consumed valuetask is refused, and *out says nothing. */
    vt = hp_cache_get(c, HP_MODE_VALUETASK, "k", 1, 1, &out);
    assert_int_equal(hp_cache_result(&vt, &b, NULL), 0);
    hp_buf_unref(b);
    assert_int_equal(hp_cache_result(&vt, &b, NULL), HP_EVTASK_CONSUMED);
    assert_null(b);

    hp_cache_free(c);
    assert_int_equal(v->refs, 1);
    hp_buf_unref(v);
}

/* A task-backed valuetask whose task another copy released (a misuse):
 * hp_cache_result refuses it, reads nothing, and never touches the task,
 * which went with that copy's release (it used to take a reference on the
 * freed task first: a use-after-free, which the ASan build reports). */
static void test_consumed_copy_is_refused_untouched(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 1000, 0, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_buf_t *v = make_buf("value");
    assert_int_equal(hp_cache_put(c, "k", 1, v, 0), 0);
    hp_cache_outcome_t out;
    hp_vtask_t vt = hp_cache_get(c, HP_MODE_TASK, "k", 1, 1, &out);
    assert_int_equal(out, HP_CACHE_HIT);
    assert_int_equal(v->refs, 3);
    hp_vtask_t copy = vt;
    hp_vtask_drop(&copy); /* the task's one reference: the task is freed */
    assert_int_equal(v->refs, 2);
    assert_null(hp_vtask_task(&vt));
    assert_true(hp_vtask_is_completed(&vt)); /* so that reading says why */
    hp_buf_t *b = v;
    assert_int_equal(hp_cache_result(&vt, &b, NULL), HP_EVTASK_CONSUMED);
    assert_null(b);
    assert_int_equal(v->refs, 2);
    hp_cache_free(c);
    assert_int_equal(v->refs, 1);
    hp_buf_unref(v);
}

static void test_sync_fill(void **state)
{
    hp_buf_t *v = make_buf("sync");
    filler_t f = {.how = FILL_SYNC_OK, .value = v};
    hp_cache_opts_t o = opts_of(BIG, 1000, 0, HP_CACHE_LRU);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);

    for (int mode = HP_MODE_VALUETASK; mode <= HP_MODE_TASK; mode++) {
        hp_cache_outcome_t out;
        const char *key = mode == HP_MODE_TASK ? "t" : "v";
        hp_buf_t *b = get_now(c, mode, key, 0, &out);
        assert_int_equal(out, HP_CACHE_MISS);
        assert_ptr_equal(b, v);
        hp_buf_unref(b);
        b = get_now(c, mode, key, 0, &out);
        assert_int_equal(out, HP_CACHE_HIT);
        hp_buf_unref(b);
    }
    assert_int_equal(f.calls, 2);
    assert_int_equal(hp_cache_stats(c)->entries, 2);
    assert_int_equal(hp_cache_stats(c)->pending_fills, 0);

    /* A fill that fails synchronously: the fault reaches the caller, and
     * nothing is cached. */
    f.how = FILL_SYNC_FAIL;
    for (int round = 1; round <= 2; round++) {
        hp_cache_outcome_t out;
        hp_vtask_t vt = hp_cache_get(c, HP_MODE_VALUETASK, "bad", 3, 0, &out);
        assert_int_equal(out, HP_CACHE_MISS);
        assert_true(hp_vtask_is_completed(&vt));
        hp_buf_t *b = v;
        const char *msg = NULL;
        assert_int_equal(hp_cache_result(&vt, &b, &msg), HP_EUPSTREAM_PROTOCOL);
        assert_null(b);
        assert_string_equal(msg, "upstream sent garbage (test)");
        assert_int_equal(f.calls, 2 + round);
    }
    assert_int_equal(hp_cache_stats(c)->fill_failures, 2);
    assert_int_equal(hp_cache_stats(c)->entries, 2);
    assert_int_equal(hp_cache_stats(c)->pending_fills, 0);
    hp_cache_free(c);
    assert_int_equal(v->refs, 1);
    hp_buf_unref(v);
}

/* --- single flight ------------------------------------------------------ */

static void test_single_flight_50(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 1000, 0, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_buf_t *v = make_buf("shared");

    consumer_t k[50];
    int miss = 0, coalesced = 0;
    for (int i = 0; i < 50; i++) {
        consumer_get(&k[i], c, i % 2 ? HP_MODE_TASK : HP_MODE_VALUETASK, "hot", 5);
        miss += k[i].outcome == HP_CACHE_MISS;
        coalesced += k[i].outcome == HP_CACHE_COALESCED;
        assert_ptr_equal(k[i].vt.u.task, f.tasks[0]);
    }
    assert_int_equal(f.calls, 1);
    assert_int_equal(miss, 1);
    assert_int_equal(coalesced, 49);
    assert_int_equal(k[0].outcome, HP_CACHE_MISS);

    hp_task_t *t = hp_task_ref(f.tasks[0]);
    fill_complete(&f, 0, v);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(k[i].done, 1);
        assert_int_equal(k[i].rc, 0);
        assert_ptr_equal(k[i].buf, v);
    }
    /* 50 requests and the cache's own continuation, which stores the value
     * before any request reads it. */
    assert_int_equal(hp_task_waiter_count(t), 51);
    hp_task_unref(t);
    /* cache + 50 consumers + the test */
    assert_int_equal(v->refs, 52);
    for (int i = 0; i < 50; i++)
        consumer_done(&k[i]);

    const hp_cache_stats_t *s = hp_cache_stats(c);
    assert_int_equal(s->misses, 1);
    assert_int_equal(s->coalesced, 49);
    assert_int_equal(s->fills, 1);
    assert_int_equal(s->entries, 1);

    hp_cache_outcome_t out;
    hp_buf_t *b = get_now(c, HP_MODE_VALUETASK, "hot", 6, &out);
    assert_int_equal(out, HP_CACHE_HIT);
    hp_buf_unref(b);
    hp_cache_free(c);
    assert_int_equal(v->refs, 1);
    hp_buf_unref(v);
}

static void test_failed_fill_reaches_every_waiter(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 1000, 0, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);

    consumer_t k[5];
    for (int i = 0; i < 5; i++)
        consumer_get(&k[i], c, HP_MODE_VALUETASK, "x", 0);
    assert_int_equal(f.calls, 1);
    fill_fail(&f, 0, HP_EUPSTREAM_TIMEOUT, "upstream timed out (test)");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(k[i].done, 1);
        assert_int_equal(k[i].rc, HP_EUPSTREAM_TIMEOUT);
        assert_string_equal(k[i].msg, "upstream timed out (test)");
        assert_null(k[i].buf);
    }
    const hp_cache_stats_t *s = hp_cache_stats(c);
    assert_int_equal(s->fill_failures, 1);
    assert_int_equal(s->entries, 0);
    assert_int_equal(s->pending_fills, 0);

    /* Not cached: the next get starts a new fill. */
    hp_buf_t *v = make_buf("second try");
    consumer_t again;
    consumer_get(&again, c, HP_MODE_VALUETASK, "x", 1);
    assert_int_equal(again.outcome, HP_CACHE_MISS);
    assert_int_equal(f.calls, 2);
    fill_complete(&f, 1, v);
    assert_int_equal(again.rc, 0);
    assert_ptr_equal(again.buf, v);
    consumer_done(&again);
    hp_cache_free(c);
    hp_buf_unref(v);
}

/* --- time --------------------------------------------------------------- */

static void test_ttl_expiry(void **state)
{
    hp_buf_t *v = make_buf("ttl");
    filler_t f = {.how = FILL_SYNC_OK, .value = v};
    hp_cache_opts_t o = opts_of(BIG, 100, 50, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_cache_outcome_t out;

    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "k", 1000, &out));
    assert_int_equal(out, HP_CACHE_MISS);
    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "k", 1099, &out));
    assert_int_equal(out, HP_CACHE_HIT);
    assert_int_equal(f.calls, 1);

    /* ttl + stale later the entry is gone: a miss and a new fill. */
    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "k", 1150, &out));
    assert_int_equal(out, HP_CACHE_MISS);
    assert_int_equal(f.calls, 2);
    assert_int_equal(hp_cache_stats(c)->expirations, 1);
    assert_int_equal(hp_cache_stats(c)->refreshes, 0);

    /* The lookup path expires the same way, and never fills. */
    assert_non_null(hp_cache_lookup(c, "k", 1, 1249, &out));
    assert_int_equal(out, HP_CACHE_HIT);
    assert_non_null(hp_cache_lookup(c, "k", 1, 1250, &out));
    assert_int_equal(out, HP_CACHE_STALE);
    assert_null(hp_cache_lookup(c, "k", 1, 1300, &out));
    assert_int_equal(out, HP_CACHE_MISS);
    assert_int_equal(f.calls, 2);
    assert_int_equal(hp_cache_stats(c)->expirations, 2);
    assert_int_equal(hp_cache_stats(c)->entries, 0);

    /* ttl 0: never expires. */
    o.ttl_ms = 0;
    assert_int_equal(hp_cache_reconfigure(c, &o), 0);
    assert_int_equal(hp_cache_put(c, "forever", 7, v, 1300), 0);
    assert_non_null(hp_cache_lookup(c, "forever", 7, UINT64_MAX, &out));
    assert_int_equal(out, HP_CACHE_HIT);
    hp_cache_free(c);
    hp_buf_unref(v);
}

static uint64_t test_clock(void *arg)
{
    return *(uint64_t *)arg;
}

/* A value is fresh for ttl from when its fill completed: a fill slower than
 * the TTL must not store a value born expired. */
static void test_fill_stamped_when_it_completes(void **state)
{
    hp_buf_t *v = make_buf("slow");
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 300, 0, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    uint64_t now = 1000;
    hp_cache_set_clock(c, test_clock, &now);
    hp_cache_outcome_t out;

    hp_vtask_t vt = hp_cache_get(c, HP_MODE_VALUETASK, "k", 1, now, &out);
    assert_int_equal(out, HP_CACHE_MISS);
    now = 1400; /* the upstream took 400 ms, longer than the TTL */
    fill_complete(&f, 0, v);
    hp_buf_t *b;
    assert_int_equal(hp_cache_result(&vt, &b, NULL), 0);
    hp_buf_unref(b);

    assert_non_null(hp_cache_lookup(c, "k", 1, 1650, &out));
    assert_int_equal(out, HP_CACHE_HIT); /* 250 ms old, not 650 */
    assert_int_equal(f.calls, 1);
    hp_cache_free(c);
    hp_buf_unref(v);
}

static void test_stale_while_revalidate(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 100, 1000, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_buf_t *old = make_buf("old");
    hp_buf_t *fresh = make_buf("fresh");
    hp_cache_outcome_t out;
    assert_int_equal(hp_cache_put(c, "k", 1, old, 0), 0);

    /* The first stale get serves old at once and starts the refresh. */
    hp_buf_t *b = get_now(c, HP_MODE_VALUETASK, "k", 150, &out);
    assert_int_equal(out, HP_CACHE_STALE);
    assert_ptr_equal(b, old);
    hp_buf_unref(b);
    assert_int_equal(f.calls, 1);

    /* Every stale get during the refresh: the old value, no fill, and in
     * valuetask mode no allocation. */
    uint64_t before = allocs();
    for (int i = 0; i < 20; i++) {
        b = get_now(c, HP_MODE_VALUETASK, "k", 150 + (uint64_t)i, &out);
        assert_int_equal(out, HP_CACHE_STALE);
        assert_ptr_equal(b, old);
        hp_buf_unref(b);
    }
    assert_int_equal(allocs() - before, 0);
    b = get_now(c, HP_MODE_TASK, "k", 170, &out);
    assert_int_equal(out, HP_CACHE_STALE);
    hp_buf_unref(b);
    assert_int_equal(f.calls, 1);
    assert_int_equal(hp_cache_stats(c)->refreshes, 1);
    assert_int_equal(hp_cache_stats(c)->stale, 22);

    /* The refresh lands: fresh again, stamped with the latest clock (170). */
    fill_complete(&f, 0, fresh);
    assert_int_equal(old->refs, 1);
    b = get_now(c, HP_MODE_VALUETASK, "k", 269, &out);
    assert_int_equal(out, HP_CACHE_HIT);
    assert_ptr_equal(b, fresh);
    hp_buf_unref(b);

    /* A failed refresh keeps the stale value until its window ends; the next
     * stale get retries. */
    b = get_now(c, HP_MODE_VALUETASK, "k", 270, &out);
    assert_int_equal(out, HP_CACHE_STALE);
    hp_buf_unref(b);
    assert_int_equal(f.calls, 2);
    fill_fail(&f, 1, HP_EUPSTREAM_CONNECT, NULL);
    assert_int_equal(hp_cache_stats(c)->fill_failures, 1);
    b = get_now(c, HP_MODE_VALUETASK, "k", 271, &out);
    assert_int_equal(out, HP_CACHE_STALE);
    assert_ptr_equal(b, fresh);
    hp_buf_unref(b);
    assert_int_equal(f.calls, 3);
    assert_int_equal(hp_cache_stats(c)->refreshes, 3);
    fill_fail(&f, 2, HP_EUPSTREAM_CONNECT, NULL);

    /* Past the window: a miss. */
    consumer_t k;
    consumer_get(&k, c, HP_MODE_VALUETASK, "k", 170 + 1100);
    assert_int_equal(k.outcome, HP_CACHE_MISS);
    assert_int_equal(hp_cache_stats(c)->expirations, 1);
    assert_int_equal(f.calls, 4);
    fill_complete(&f, 3, old);
    assert_ptr_equal(k.buf, old);
    consumer_done(&k);

    hp_cache_free(c);
    assert_int_equal(old->refs, 1);
    assert_int_equal(fresh->refs, 1);
    hp_buf_unref(old);
    hp_buf_unref(fresh);
}

/* A stale entry whose refresh is still running when its window ends: gets
 * join that refresh instead of starting a second fill for the key. */
static void test_expired_during_refresh_joins_it(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 100, 100, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_buf_t *old = make_buf("old"), *fresh = make_buf("fresh");
    hp_cache_outcome_t out;
    assert_int_equal(hp_cache_put(c, "k", 1, old, 0), 0);
    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "k", 150, &out));
    assert_int_equal(out, HP_CACHE_STALE);

    consumer_t k;
    consumer_get(&k, c, HP_MODE_VALUETASK, "k", 250);
    assert_int_equal(k.outcome, HP_CACHE_COALESCED);
    assert_int_equal(f.calls, 1);
    assert_int_equal(old->refs, 1);
    assert_int_equal(hp_cache_stats(c)->entries, 0);
    assert_int_equal(hp_cache_stats(c)->bytes, 0);
    assert_int_equal(hp_cache_stats(c)->pending_fills, 1);
    fill_complete(&f, 0, fresh);
    assert_ptr_equal(k.buf, fresh);
    consumer_done(&k);
    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "k", 250, &out));
    assert_int_equal(out, HP_CACHE_HIT);
    hp_cache_free(c);
    hp_buf_unref(old);
    hp_buf_unref(fresh);
}

/* Waiters that leave (hp_cache_leave): only the last one, on a fill whose
 * entry has no value, is told the fill is nobody's but the cache's; a
 * stale entry's refresh, another fill or no fill is never. */
static void test_waiters_leave(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 100, 100, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    const hp_cache_stats_t *s = hp_cache_stats(c);
    consumer_t k[3];
    for (int i = 0; i < 3; i++)
        consumer_get(&k[i], c, HP_MODE_VALUETASK, "k", 0);
    hp_task_t *fill = f.tasks[0];
    hp_task_t *other = hp_task_new();
    assert_int_equal(hp_cache_leave(c, "k", 1, other), 0); /* not its fill */
    hp_task_unref(other);
    assert_int_equal(hp_cache_leave(c, "nope", 4, fill), 0);
    assert_int_equal(hp_cache_leave(c, "k", 1, fill), 0);
    assert_int_equal(hp_cache_leave(c, "k", 1, fill), 0);
    assert_int_equal(hp_cache_leave(c, "k", 1, fill), 1); /* the last */
    assert_int_equal(hp_cache_leave(c, "k", 1, fill), 0); /* and only once */
    assert_int_equal(s->waiters_left, 6);
    /* The caller cancels it: the fill fails, the entry goes, and every
     * continuation still runs (the departed requests end then). */
    fill_fail(&f, 0, UV_ECANCELED, "cancelled (test)");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(k[i].done, 1);
        assert_int_equal(k[i].rc, UV_ECANCELED);
    }
    assert_int_equal(s->pending_fills, 0);
    assert_int_equal(s->fill_failures, 1);
    assert_int_equal(hp_cache_leave(c, "k", 1, fill), 0); /* no fill now */

    /* A stale entry's refresh has no waiters and keeps its value. */
    hp_buf_t *old = make_buf("old"), *fresh = make_buf("fresh");
    hp_cache_outcome_t out;
    assert_int_equal(hp_cache_put(c, "r", 1, old, 0), 0);
    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "r", 150, &out));
    assert_int_equal(out, HP_CACHE_STALE);
    hp_task_t *refresh = f.tasks[1];
    assert_int_equal(hp_cache_leave(c, "r", 1, refresh), 0);
    /* Expired while it runs, a get joins it: that waiter is the only one,
     * and the entry has no value left. */
    consumer_t j;
    consumer_get(&j, c, HP_MODE_VALUETASK, "r", 250);
    assert_int_equal(j.outcome, HP_CACHE_COALESCED);
    assert_int_equal(hp_cache_leave(c, "r", 1, refresh), 1);
    fill_complete(&f, 1, fresh); /* not cancelled after all: it completes */
    assert_ptr_equal(j.buf, fresh);
    consumer_done(&j);
    assert_int_equal(s->entries, 1);
    hp_cache_free(c);
    hp_buf_unref(old);
    hp_buf_unref(fresh);
}

/* --- the memory bound --------------------------------------------------- */

static void test_eviction_under_bound(void **state)
{
    hp_buf_t *v = make_buf("0123456789abcdef");
    filler_t f = {.how = FILL_SYNC_OK, .value = v};
    size_t cost = one_entry("key-00", v);
    /* 72-byte entry header, the key and its NUL, then the buffer. */
    assert_int_equal(cost, 72 + 6 + 1 + hp_buf_footprint(v));

    for (int p = HP_CACHE_SIEVE; p <= HP_CACHE_LRU; p++) {
        hp_cache_opts_t o = opts_of(10 * cost + cost / 2, 0, 0, p);
        hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
        const hp_cache_stats_t *s = hp_cache_stats(c);
        for (int i = 0; i < 100; i++) {
            char key[16];
            snprintf(key, sizeof(key), "key-%02d", i);
            hp_cache_outcome_t out;
            if (i % 2) {
                hp_buf_unref(get_now(c, HP_MODE_VALUETASK, key, 0, &out));
                assert_int_equal(out, HP_CACHE_MISS);
            } else {
                assert_int_equal(hp_cache_put(c, key, strlen(key), v, 0), 0);
            }
            assert_true(s->bytes <= s->max_bytes);
            assert_int_equal(s->entries, i < 10 ? i + 1 : 10);
            assert_int_equal(s->bytes, s->entries * cost);
        }
        assert_int_equal(s->evictions, 90);
        assert_int_equal(s->expirations, 0);

        /* Live reload to a smaller bound evicts at once. */
        o.max_bytes = 4 * cost;
        assert_int_equal(hp_cache_reconfigure(c, &o), 0);
        assert_int_equal(s->entries, 4);
        assert_int_equal(s->bytes, 4 * cost);
        assert_int_equal(s->max_bytes, 4 * cost);
        assert_int_equal(s->evictions, 96);

        /* An unknown policy is refused and changes nothing. */
        hp_cache_opts_t bad = opts_of(cost, 0, 0, (hp_cache_policy_t)7);
        assert_int_equal(hp_cache_reconfigure(c, &bad), UV_EINVAL);
        assert_int_equal(s->max_bytes, 4 * cost);
        assert_int_equal(s->entries, 4);
        hp_cache_free(c);
    }
    assert_int_equal(v->refs, 1);
    hp_buf_unref(v);
}

/* Values that cannot fit alone are served but never stored. */
static void test_value_larger_than_bound(void **state)
{
    hp_buf_t *big = hp_buf_new(200, "application/octet-stream", 24, 4096);
    memset(big->body, 'x', big->len);
    filler_t f = {.how = FILL_SYNC_OK, .value = big};
    hp_cache_opts_t o = opts_of(1024, 0, 0, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_cache_outcome_t out;
    assert_int_equal(hp_cache_put(c, "big", 3, big, 0), UV_E2BIG);
    for (int i = 0; i < 2; i++) {
        hp_buf_t *b = get_now(c, HP_MODE_VALUETASK, "big", 0, &out);
        assert_int_equal(out, HP_CACHE_MISS);
        assert_ptr_equal(b, big);
        hp_buf_unref(b);
    }
    const hp_cache_stats_t *s = hp_cache_stats(c);
    assert_int_equal(s->rejected_too_big, 3);
    assert_int_equal(s->entries, 0);
    assert_int_equal(s->bytes, 0);
    hp_cache_free(c);
    assert_int_equal(big->refs, 1);
    hp_buf_unref(big);
}

/* Evicting an entry whose refresh runs keeps its key reachable: later gets
 * join the refresh, which stores its value when it lands. */
static void test_evicted_while_refreshing(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_buf_t *v = make_buf("v"), *fresh = make_buf("w"); /* same size: same cost */
    size_t cost = one_entry("A", v);
    hp_cache_opts_t o = opts_of(2 * cost, 100, 1000, HP_CACHE_LRU);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    const hp_cache_stats_t *s = hp_cache_stats(c);
    hp_cache_outcome_t out;

    assert_int_equal(hp_cache_put(c, "A", 1, v, 0), 0);
    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "A", 150, &out));
    assert_int_equal(out, HP_CACHE_STALE);
    assert_int_equal(hp_cache_put(c, "B", 1, v, 150), 0);
    assert_int_equal(hp_cache_put(c, "C", 1, v, 150), 0); /* A, the LRU tail, goes */
    assert_int_equal(s->evictions, 1);
    assert_int_equal(s->entries, 2);
    assert_int_equal(s->pending_fills, 1);

    consumer_t k;
    consumer_get(&k, c, HP_MODE_VALUETASK, "A", 160);
    assert_int_equal(k.outcome, HP_CACHE_COALESCED);
    assert_int_equal(f.calls, 1);
    fill_complete(&f, 0, fresh);
    assert_ptr_equal(k.buf, fresh);
    consumer_done(&k);
    hp_buf_t *b = get_now(c, HP_MODE_VALUETASK, "A", 160, &out);
    assert_int_equal(out, HP_CACHE_HIT);
    assert_ptr_equal(b, fresh);
    hp_buf_unref(b);
    assert_int_equal(s->entries, 2);
    assert_int_equal(s->evictions, 2);
    hp_cache_free(c);
    assert_int_equal(v->refs, 1);
    assert_int_equal(fresh->refs, 1);
    hp_buf_unref(v);
    hp_buf_unref(fresh);
}

/* Reloading the TTL applies to values already stored. */
static void test_reconfigure_ttl_applies_now(void **state)
{
    hp_buf_t *v = make_buf("v");
    filler_t f = {.how = FILL_SYNC_OK, .value = v};
    hp_cache_opts_t o = opts_of(BIG, 1000, 0, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_cache_outcome_t out;
    assert_int_equal(hp_cache_put(c, "k", 1, v, 0), 0);
    assert_non_null(hp_cache_lookup(c, "k", 1, 500, &out));
    assert_int_equal(out, HP_CACHE_HIT);
    o.ttl_ms = 100;
    o.policy = HP_CACHE_LRU;
    assert_int_equal(hp_cache_reconfigure(c, &o), 0);
    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "k", 500, &out));
    assert_int_equal(out, HP_CACHE_MISS);
    assert_int_equal(hp_cache_stats(c)->expirations, 1);
    hp_cache_free(c);
    hp_buf_unref(v);
}

/* --- fills that outlive the cache --------------------------------------- */

static void test_free_with_fills_in_flight(void **state)
{
    filler_t f = {.how = FILL_PENDING};
    hp_cache_opts_t o = opts_of(BIG, 100, 1000, HP_CACHE_SIEVE);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, &f);
    hp_buf_t *v = make_buf("v"), *late = make_buf("late");
    hp_cache_outcome_t out;

    consumer_t miss, joined;
    consumer_get(&miss, c, HP_MODE_VALUETASK, "m", 0);
    consumer_get(&joined, c, HP_MODE_TASK, "m", 0);
    assert_int_equal(joined.outcome, HP_CACHE_COALESCED);
    assert_int_equal(hp_cache_put(c, "s", 1, v, 0), 0);
    hp_buf_unref(get_now(c, HP_MODE_VALUETASK, "s", 150, &out)); /* starts a refresh */
    assert_int_equal(out, HP_CACHE_STALE);
    assert_int_equal(f.ntasks, 2);

    hp_cache_free(c);
    assert_int_equal(v->refs, 1);

    /* Waiters still get their results; the detached entries free
     * themselves (ASan / valgrind check that nothing touches the cache). */
    fill_complete(&f, 0, late);
    assert_ptr_equal(miss.buf, late);
    assert_ptr_equal(joined.buf, late);
    consumer_done(&miss);
    consumer_done(&joined);
    fill_fail(&f, 1, HP_ESHUTDOWN, NULL);
    assert_int_equal(late->refs, 1);
    hp_buf_unref(v);
    hp_buf_unref(late);
    hp_cache_free(NULL);
}

/* --- policies ----------------------------------------------------------- */

/* Room for three. A is hit once, then three new keys arrive. LRU drops A
 * on the third (it is least recently used); SIEVE spares it once (clearing
 * its bit) and drops B and C, which were never hit. */
static void test_sieve_keeps_rehit_entry(void **state)
{
    hp_buf_t *v = make_buf("v");
    size_t cost = one_entry("A", v);
    int kept[2];
    for (int p = HP_CACHE_SIEVE; p <= HP_CACHE_LRU; p++) {
        hp_cache_opts_t o = opts_of(3 * cost, 0, 0, p);
        hp_cache_t *c = hp_cache_new(&o, fill_cb, NULL);
        hp_cache_outcome_t out;
        hp_cache_put(c, "A", 1, v, 0);
        hp_cache_put(c, "B", 1, v, 0);
        assert_non_null(hp_cache_lookup(c, "A", 1, 0, &out));
        hp_cache_put(c, "C", 1, v, 0);
        hp_cache_put(c, "D", 1, v, 0);
        hp_cache_put(c, "E", 1, v, 0);
        assert_int_equal(hp_cache_stats(c)->evictions, 2);
        kept[p] = hp_cache_lookup(c, "A", 1, 0, &out) != NULL;
        int c_kept = hp_cache_lookup(c, "C", 1, 0, &out) != NULL;
        assert_int_equal(c_kept, p == HP_CACHE_LRU);
        assert_null(hp_cache_lookup(c, "B", 1, 0, &out));
        assert_non_null(hp_cache_lookup(c, "D", 1, 0, &out));
        assert_non_null(hp_cache_lookup(c, "E", 1, 0, &out));
        hp_cache_free(c);
    }
    assert_true(kept[HP_CACHE_SIEVE]);
    assert_false(kept[HP_CACHE_LRU]);
    hp_buf_unref(v);
}

/* Zipf(s) over n ranks by inversion of the CDF; splitmix64 from a fixed
 * seed, so the stream is the same on every run and machine. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void zipf_stream(uint32_t *out, size_t count, uint32_t n, double s, uint64_t seed)
{
    double *cdf = hp_malloc(n * sizeof(*cdf));
    double sum = 0;
    for (uint32_t i = 0; i < n; i++)
        cdf[i] = sum += 1.0 / pow(i + 1.0, s);
    for (uint32_t i = 0; i < n; i++)
        cdf[i] /= sum;
    for (size_t r = 0; r < count; r++) {
        double u = (double)(splitmix64(&seed) >> 11) * 0x1.0p-53;
        uint32_t lo = 0, hi = n - 1;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        out[r] = lo;
    }
    hp_free(cdf);
}

#define ZIPF_KEYS     100000u
#define ZIPF_REQUESTS 1000000u
#define ZIPF_SKEW     1.0
#define ZIPF_SEED     0x5eed2024u

/* Feeds the stream through lookup, putting every miss; returns hits/requests. */
static double replay(const uint32_t *stream, char (*keys)[8], hp_buf_t *v, size_t entries,
                     hp_cache_policy_t p)
{
    hp_cache_opts_t o = opts_of(entries * one_entry(keys[0], v), 0, 0, p);
    hp_cache_t *c = hp_cache_new(&o, fill_cb, NULL);
    const hp_cache_stats_t *s = hp_cache_stats(c);
    for (size_t r = 0; r < ZIPF_REQUESTS; r++) {
        const char *k = keys[stream[r]];
        hp_cache_outcome_t out;
        if (hp_cache_lookup(c, k, 7, 0, &out) == NULL) hp_cache_put(c, k, 7, v, 0);
    }
    assert_int_equal(s->hits + s->misses, ZIPF_REQUESTS);
    assert_int_equal(s->entries, entries);
    assert_true(s->bytes <= s->max_bytes);
    double ratio = (double)s->hits / ZIPF_REQUESTS;
    hp_cache_free(c);
    return ratio;
}

static void test_zipf_sieve_vs_lru(void **state)
{
    uint32_t *stream = hp_malloc(ZIPF_REQUESTS * sizeof(*stream));
    char(*keys)[8] = hp_malloc(ZIPF_KEYS * sizeof(*keys));
    for (uint32_t i = 0; i < ZIPF_KEYS; i++)
        snprintf(keys[i], sizeof(keys[i]), "k%06u", i);
    zipf_stream(stream, ZIPF_REQUESTS, ZIPF_KEYS, ZIPF_SKEW, ZIPF_SEED);
    hp_buf_t *v = make_buf("zipf");

    const size_t sizes[] = {ZIPF_KEYS / 100, ZIPF_KEYS / 10};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        double sieve = replay(stream, keys, v, sizes[i], HP_CACHE_SIEVE);
        double lru = replay(stream, keys, v, sizes[i], HP_CACHE_LRU);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("zipf s=%.1f keys=%u requests=%u seed=%#x cache=%zu entries (%.0f%%): "
               "hit ratio SIEVE %.4f  LRU %.4f  (%.0f ms for both)\n",
               ZIPF_SKEW, ZIPF_KEYS, ZIPF_REQUESTS, ZIPF_SEED, sizes[i],
               100.0 * sizes[i] / ZIPF_KEYS, sieve, lru,
               (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
        assert_true(sieve >= lru);
    }
    hp_buf_unref(v);
    hp_free(keys);
    hp_free(stream);
}

static void test_outcome_names(void **state)
{
    assert_string_equal(hp_cache_outcome_name(HP_CACHE_HIT), "hit");
    assert_string_equal(hp_cache_outcome_name(HP_CACHE_MISS), "miss");
    assert_string_equal(hp_cache_outcome_name(HP_CACHE_COALESCED), "coalesced");
    assert_string_equal(hp_cache_outcome_name(HP_CACHE_STALE), "stale");
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_then_hit),
        cmocka_unit_test(test_alloc_counts),
        cmocka_unit_test(test_consumed_copy_is_refused_untouched),
        cmocka_unit_test(test_sync_fill),
        cmocka_unit_test(test_single_flight_50),
        cmocka_unit_test(test_failed_fill_reaches_every_waiter),
        cmocka_unit_test(test_ttl_expiry),
        cmocka_unit_test(test_fill_stamped_when_it_completes),
        cmocka_unit_test(test_stale_while_revalidate),
        cmocka_unit_test(test_expired_during_refresh_joins_it),
        cmocka_unit_test(test_waiters_leave),
        cmocka_unit_test(test_eviction_under_bound),
        cmocka_unit_test(test_value_larger_than_bound),
        cmocka_unit_test(test_evicted_while_refreshing),
        cmocka_unit_test(test_reconfigure_ttl_applies_now),
        cmocka_unit_test(test_free_with_fills_in_flight),
        cmocka_unit_test(test_sieve_keeps_rehit_entry),
        cmocka_unit_test(test_zipf_sieve_vs_lru),
        cmocka_unit_test(test_outcome_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
