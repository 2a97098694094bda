/*
 * fill.c - the cache's miss path through the tiers (origin.h): L1 (the
 * worker's hp_cache) missed, so hp_origin_fill runs once per key however
 * many requests wait - the cache's single-flight covers everything here:
 *
 *   L2 off, or refusing at once (not connected, max_inflight): the
 *       upstream request's task is the fill itself, as without L2: a
 *       refused lookup costs nothing, and the store that would follow is
 *       skipped (it would be refused too).
 *   L2 GET sent: the fill is a task of its own, with a miss_t behind it.
 *       hit    -> the fill completes with the decoded value (X-Cache: l2;
 *                 the cache stores it in L1, so the next get is a hit);
 *       miss, or any fault (timeout, lost connection, an error reply, a
 *       record that does not decode) -> the upstream request, and its 2xx
 *       answer is SET in L2 with the cache's ttl_ms (PX), fire and forget.
 *
 * L2 is never the reason a request fails: a fault only sends the fill
 * upstream (l2.c counts it: errors, timeouts, bypasses). The upstream's
 * deadline bounds the whole path: its request counts from the moment the
 * fill began (hp_upstream_request_since), so the time a lookup took -
 * command_timeout_ms at worst - comes out of connect_timeout_ms +
 * response_timeout_ms rather than being added to it.
 *
 * What L2 stores is what L1 stores: 2xx answers only. A copy taken from
 * L2 into L1 is fresh for ttl_ms from then, so a value read on another
 * instance near the end of its L2 life can be up to 2 x ttl_ms old there
 * (plus stale_ms): the price of one GET rather than GET + PTTL.
 *
 * Allocations, on a connected L2 (asserted in tests/it_l2.c): an L2 hit
 * makes the miss_t, the fill task, the GET's task and the value's buffer;
 * an L2 miss the miss_t, the fill task, the GET's task, then the upstream
 * request's three (request, task, buffer); the SET none.
 */
#include "handlers.h"
#include "origin.h"

#include "runtime/alloc.h"
#include "runtime/counter.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <string.h>

/* The L2 key: the upstream path under a prefix of its own, so that other
 * users of one Redis do not collide with hotpath ("hotpath:/items/apple"). */
#define L2_PREFIX     "hotpath:"
#define L2_PREFIX_LEN (sizeof(L2_PREFIX) - 1)
/* "hotpath:" "/items/" and a key (origin.h). */
#define KEY_MAX (L2_PREFIX_LEN + 7 + HP_CACHE_KEY_MAX)

typedef struct {
    hp_link_t link; /* in o->misses */
    hp_origin_t *o;
    hp_task_t *task;   /* the fill (one reference) */
    hp_task_t *lookup; /* the L2 GET (one reference) while it pends */
    hp_task_t *up;     /* the upstream request (one reference) while it pends */
    uint64_t since_ms; /* uv_now when the fill began: the upstream deadline's start */
    hp_mode_t mode;    /* the figures the L2 call went to */
    bool cancelled;    /* hp_origin_cancel came during the lookup */
    uint16_t key_len;  /* of key[], "hotpath:/items/<key>"; the path is key + 8 */
    char key[];
} miss_t;

static hp_task_t *upstream_get(hp_origin_t *o, const char *path, size_t len, uint64_t since_ms)
{
    return hp_upstream_request_since(o->upstream, "GET", path, len, since_ms);
}

static void miss_free(miss_t *m)
{
    hp_link_remove(&m->link);
    hp_task_unref(m->task);
    hp_free(m);
}

/* The fill's result, from a completed task of the same kind (an
 * hp_buf_t * it owns, or a fault). */
static void finish_from(miss_t *m, const hp_task_t *from, bool l2)
{
    hp_value_t v;
    int rc = hp_task_result(from, &v);
    hp_origin_t *o = m->o;
    if (rc == 0) {
        /* Saved and restored, not cleared: a continuation may finish
         * another fill before this completion returns. */
        const hp_task_t *outer = o->l2_answer;
        if (l2) o->l2_answer = m->task;
        hp_task_complete(m->task, hp_value_ptr(hp_buf_ref(v.ptr)));
        o->l2_answer = outer;
    } else {
        hp_task_fail(m->task, rc, hp_task_error_message(from));
    }
}

static void up_done(void *arg)
{
    miss_t *m = arg;
    hp_origin_t *o = m->o;
    hp_task_t *up = m->up;
    m->up = NULL;
    hp_value_t v;
    /* What L1 stores, L2 stores: a 2xx answer. */
    if (o->l2 && hp_task_result(up, &v) == 0 && ((hp_buf_t *)v.ptr)->status / 100 == 2)
        (void)hp_l2_set(o->l2, m->key, m->key_len, v.ptr, o->l2_ttl_ms);
    finish_from(m, up, false);
    hp_task_unref(up);
    miss_free(m);
}

static void lookup_done(void *arg)
{
    miss_t *m = arg;
    hp_origin_t *o = m->o;
    hp_task_t *t = m->lookup;
    m->lookup = NULL;
    hp_value_t v;
    int rc = hp_task_result(t, &v);
    if (rc == 0 && v.ptr) {
        finish_from(m, t, true);
        hp_task_unref(t);
        miss_free(m);
        return;
    }
    /* A miss, or L2 failed: the upstream answers (l2.c counted the fault). */
    if (rc < 0) hp_counter_add(&o->cache_l2[m->mode]->faults, 1);
    hp_task_unref(t);
    if (m->cancelled || o->closing) {
        hp_task_fail(m->task, m->cancelled ? UV_ECANCELED : HP_ESHUTDOWN, NULL);
        miss_free(m);
        return;
    }
    const char *path = m->key + L2_PREFIX_LEN;
    m->up = upstream_get(o, path, m->key_len - L2_PREFIX_LEN, m->since_ms);
    hp_task_await(m->up, up_done, m);
}

hp_task_t *hp_origin_fill(void *arg, const char *key, size_t key_len)
{
    hp_origin_t *o = arg;
    char k[KEY_MAX];
    int n = snprintf(k, sizeof(k), L2_PREFIX "/items/%.*s", (int)key_len, key);
    const char *path = k + L2_PREFIX_LEN;
    size_t path_len = (size_t)n - L2_PREFIX_LEN;
    if (o->l2 == NULL) return hp_upstream_request(o->upstream, "GET", path, path_len);
    uint64_t now = uv_now(o->loop);

    /* The L2 call is a layer of its own in the figures: always a heap task
     * when sent (a network round trip), refused synchronously otherwise. */
    hp_layer_stats_t *s = o->cache_l2[o->mode];
    hp_counter_add(&s->calls, 1);
    hp_task_t *lookup;
    if (hp_l2_get(o->l2, k, (size_t)n, &lookup) < 0) {
        hp_counter_add(&s->completed_synchronously, 1);
        hp_counter_add(&s->faults, 1);
        return upstream_get(o, path, path_len, now);
    }
    hp_counter_add(&s->task_valuetasks, 1);
    miss_t *m = hp_malloc(sizeof(*m) + (size_t)n + 1);
    m->o = o;
    m->task = hp_task_new();
    hp_task_set_dispose(m->task, hp_buf_dispose);
    m->lookup = lookup;
    m->up = NULL;
    m->since_ms = now;
    m->mode = o->mode;
    m->cancelled = false;
    m->key_len = (uint16_t)n;
    memcpy(m->key, k, (size_t)n + 1);
    hp_link_push_back(&o->misses, &m->link);
    hp_task_t *fill = hp_task_ref(m->task);
    /* The lookup may have faulted already (the connection failed as it was
     * sent): then this runs now, and goes upstream. */
    hp_task_await(lookup, lookup_done, m);
    return fill;
}

void hp_origin_cancel(hp_origin_t *o, const hp_task_t *fill)
{
    for (hp_link_t *l = o->misses.next; l != &o->misses; l = l->next) {
        miss_t *m = hp_container_of(l, miss_t, link);
        if (m->task != fill) continue;
        if (m->lookup)
            m->cancelled = true; /* an L2 GET cannot be taken back; skip the upstream */
        else if (m->up)
            hp_upstream_cancel(o->upstream, m->up, false);
        return;
    }
    /* Not through L2: the fill is the upstream request itself. */
    hp_upstream_cancel(o->upstream, fill, false);
}
