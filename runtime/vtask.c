/*
 * vtask.c - hp_vtask and hp_vtsource (see vtask.h).
 *
 * Misuse detection has two places to look, because a vtask is a value that
 * can be copied: the copy itself (kind becomes HP_VT_NONE when consumed, and
 * `awaited` marks a registered continuation) catches reuse of one variable;
 * a versioned object shared by every copy catches the others. For a source
 * that is the source (its version and state), the case that would be
 * undefined behaviour in .NET (a pooled source reused by another request
 * while an old awaiter still holds it).
 *
 * For a task it cannot be the task: copies share one reference, the first
 * to read releases it, and a later copy would read freed memory. So a
 * task-backed vtask also holds a slot in its thread's slot table, with the
 * slot's version as its token: reading releases the slot (its version moves
 * on, every copy goes stale) before the task, and a copy checks the slot
 * first. Slots are 8 bytes, reused most recently freed first, in chunks of
 * SLOT_CHUNK that never move; the first chunk is thread-local storage, so a
 * thread with fewer than SLOT_CHUNK task-backed vtasks alive at once (every
 * test, and a worker with up to about 800 requests pending in task mode, at
 * five layers each) allocates nothing for them.
 *
 * Rejected alternative: a reference per copy (what .NET's GC gives for
 * free). A C struct copy runs no code, so there is nothing to count with.
 */
#include "vtask.h"

#include "alloc.h"
#include "counter.h"
#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

enum { S_PENDING = 0, S_COMPLETED, S_FAULTED, S_CONSUMED };

const char *const hp_mode_names[HP_MODES + 1] = {"valuetask", "task", NULL};

const char *hp_mode_name(hp_mode_t mode)
{
    return mode == HP_MODE_TASK ? hp_mode_names[HP_MODE_TASK] : hp_mode_names[HP_MODE_VALUETASK];
}

static hp_runtime_stats_t *rt(void)
{
    return hp_runtime_thread_stats();
}

static int misuse(hp_vtask_t *vt, int err)
{
    hp_counter_add(err == HP_EVTASK_STALE ? &rt()->misuse_stale : &rt()->misuse_consumed, 1);
    if (vt) vt->kind = HP_VT_NONE;
    return err;
}

/* --- the slot table of task-backed vtasks --------------------------------- */

typedef struct {
    uint32_t version;     /* moves on when the vtask using it is consumed */
    uint32_t next : 31;   /* when free: the next free slot's index + 1, 0: none */
    uint32_t awaited : 1; /* a continuation was registered through some copy */
} slot_t;

#define SLOT_CHUNK  4096
#define SLOT_CHUNKS 256 /* 1 Mi task-backed vtasks alive on one thread */
_Static_assert(SLOT_CHUNKS <= (1u << 23) / SLOT_CHUNK, "hp_vtask_t.slot holds every index");

static _Thread_local slot_t tls_chunk0[SLOT_CHUNK];
static _Thread_local slot_t *tls_chunks[SLOT_CHUNKS];
static _Thread_local uint32_t tls_free; /* first free slot's index + 1, 0: none */
static _Thread_local uint32_t tls_used; /* slots ever handed out */

static slot_t *slot_at(uint32_t i)
{
    slot_t *chunk = i < SLOT_CHUNK ? tls_chunk0 : tls_chunks[i / SLOT_CHUNK];
    return &chunk[i % SLOT_CHUNK];
}

static uint32_t slot_take(void)
{
    if (tls_free) {
        uint32_t i = tls_free - 1;
        tls_free = slot_at(i)->next;
        return i;
    }
    uint32_t i = tls_used++;
    if (i >= SLOT_CHUNK && i % SLOT_CHUNK == 0) {
        if (i / SLOT_CHUNK >= SLOT_CHUNKS) {
            fprintf(stderr, "hotpath: over %d task-backed valuetasks alive on one thread\n",
                    SLOT_CHUNK * SLOT_CHUNKS);
            abort();
        }
        tls_chunks[i / SLOT_CHUNK] = hp_calloc(SLOT_CHUNK, sizeof(slot_t));
    }
    return i;
}

static void slot_release(uint32_t i)
{
    slot_t *s = slot_at(i);
    s->version++;
    s->awaited = 0;
    s->next = tls_free;
    tls_free = i + 1;
}

/* vt (HP_VT_TASK) still holds its task: no copy has released it. */
static bool slot_live(const hp_vtask_t *vt)
{
    return slot_at(vt->slot)->version == vt->token;
}

/* Consume a task-backed vt: its slot first, so every copy goes stale. */
static hp_task_t *slot_consume(hp_vtask_t *vt)
{
    slot_release(vt->slot);
    vt->kind = HP_VT_NONE;
    return vt->u.task;
}

void hp_vtask_thread_exit(void)
{
    for (uint32_t c = 1; c < SLOT_CHUNKS; c++) {
        hp_free(tls_chunks[c]);
        tls_chunks[c] = NULL;
    }
    tls_free = tls_used = 0;
}

void hp_vtsource_init(hp_vtsource_t *s)
{
    *s = (hp_vtsource_t){.version = 1, .state = S_PENDING};
}

void hp_vtsource_reset(hp_vtsource_t *s)
{
    s->version++;
    s->state = S_PENDING;
    s->awaited = 0;
    s->err = 0;
    s->msg = NULL;
    s->cb = NULL;
    s->arg = NULL;
}

hp_vtask_t hp_vtsource_vtask(hp_vtsource_t *s)
{
    hp_counter_add(&rt()->valuetasks_source, 1);
    return (hp_vtask_t){.kind = HP_VT_SOURCE, .token = s->version, .u.source = s};
}

static int settle(hp_vtsource_t *s, uint8_t state, hp_value_t v, int err, const char *msg)
{
    if (s->state != S_PENDING) return UV_EALREADY;
    s->state = state;
    s->result = v;
    s->err = err;
    s->msg = msg;
    if (s->cb) {
        hp_cont_cb cb = s->cb;
        s->cb = NULL;
        cb(s->arg);
    }
    return 0;
}

int hp_vtsource_complete(hp_vtsource_t *s, hp_value_t v)
{
    return settle(s, S_COMPLETED, v, 0, NULL);
}

int hp_vtsource_fail(hp_vtsource_t *s, int err, const char *msg)
{
    if (err >= 0) err = HP_ETASK_FAULTED;
    hp_value_t none = {.i = 0};
    return settle(s, S_FAULTED, none, err, msg ? msg : hp_strerror(err));
}

hp_vtask_t hp_vtask_from_task(hp_task_t *t)
{
    hp_counter_add(&rt()->valuetasks_task, 1);
    uint32_t i = slot_take();
    return (hp_vtask_t){.kind = HP_VT_TASK, .slot = i, .token = slot_at(i)->version, .u.task = t};
}

hp_vtask_t hp_vtask_failed(int err, const char *msg)
{
    return hp_vtask_from_task(hp_task_from_error(err, msg));
}

/* The forms but the inline one, which vtask.h reads itself. */
bool hp_vtask_is_completed_other(const hp_vtask_t *vt)
{
    switch (vt->kind) {
    case HP_VT_TASK: return !slot_live(vt) || hp_task_is_completed(vt->u.task);
    case HP_VT_SOURCE: {
        const hp_vtsource_t *s = vt->u.source;
        return vt->token != s->version || s->state != S_PENDING;
    }
    default: return true; /* consumed or never set: reading says so */
    }
}

int hp_vtask_result_other(hp_vtask_t *vt, hp_value_t *out, const char **msg)
{
    switch (vt->kind) {
    case HP_VT_TASK: {
        if (!slot_live(vt)) return misuse(vt, HP_EVTASK_CONSUMED); /* another copy read it */
        hp_task_t *t = vt->u.task;
        if (!hp_task_is_completed(t)) return HP_EVTASK_PENDING;
        slot_consume(vt);
        int rc = hp_task_result(t, out);
        if (rc && msg) *msg = hp_task_error_message(t);
        hp_task_unref(t);
        return rc;
    }
    case HP_VT_SOURCE: {
        hp_vtsource_t *s = vt->u.source;
        if (vt->token != s->version) return misuse(vt, HP_EVTASK_STALE);
        if (s->state == S_CONSUMED) return misuse(vt, HP_EVTASK_CONSUMED);
        if (s->state == S_PENDING) return HP_EVTASK_PENDING;
        int rc = s->state == S_FAULTED ? s->err : 0;
        if (rc == 0)
            *out = s->result;
        else if (msg)
            *msg = s->msg;
        s->state = S_CONSUMED;
        vt->kind = HP_VT_NONE;
        return rc;
    }
    default: return misuse(vt, HP_EVTASK_CONSUMED);
    }
}

int hp_vtask_on_completed(hp_vtask_t *vt, hp_cont_cb cb, void *arg)
{
    if (vt->kind == HP_VT_NONE || vt->awaited) return misuse(NULL, HP_EVTASK_CONSUMED);
    if (vt->kind == HP_VT_SOURCE) {
        hp_vtsource_t *s = vt->u.source;
        if (vt->token != s->version) return misuse(NULL, HP_EVTASK_STALE);
        if (s->awaited || s->state == S_CONSUMED) return misuse(NULL, HP_EVTASK_CONSUMED);
        s->awaited = 1;
        vt->awaited = 1;
        if (s->state == S_PENDING) {
            s->cb = cb;
            s->arg = arg;
        } else {
            cb(arg);
        }
        return 0;
    }
    if (vt->kind == HP_VT_TASK) {
        slot_t *s = slot_at(vt->slot);
        if (s->version != vt->token || s->awaited) return misuse(NULL, HP_EVTASK_CONSUMED);
        s->awaited = 1;
        vt->awaited = 1;
        hp_task_await(vt->u.task, cb, arg);
        return 0;
    }
    vt->awaited = 1;
    cb(arg);
    return 0;
}

hp_task_t *hp_vtask_task(const hp_vtask_t *vt)
{
    return vt->kind == HP_VT_TASK && slot_live(vt) ? vt->u.task : NULL;
}

void hp_vtask_drop(hp_vtask_t *vt)
{
    if (vt->kind == HP_VT_TASK && slot_live(vt)) hp_task_unref(slot_consume(vt));
    vt->kind = HP_VT_NONE;
}

/* as_task of a pending source: a task plus the vtask to read when the
 * source completes, in one block. */
typedef struct {
    hp_vtask_t vt;
    hp_task_t *task;
} bridge_t;

static void bridge_cb(void *arg)
{
    bridge_t *b = arg;
    hp_value_t v;
    const char *msg = NULL;
    int rc = hp_vtask_result(&b->vt, &v, &msg);
    if (rc == 0)
        hp_task_complete(b->task, v);
    else
        hp_task_fail(b->task, rc, msg);
    hp_task_unref(b->task);
    hp_free(b);
}

hp_task_t *hp_vtask_as_task(hp_vtask_t *vt)
{
    hp_runtime_stats_t *st = rt();
    hp_counter_add(&st->as_task_calls, 1);
    uint64_t before = hp_alloc_stats_sum(hp_alloc_thread_stats()).count;
    hp_task_t *t;
    if (vt->kind == HP_VT_TASK && slot_live(vt)) {
        /* Handing the task over ends the vtask: its copies go stale. */
        return slot_consume(vt);
    }
    if (vt->kind == HP_VT_SOURCE && !vt->awaited && vt->token == vt->u.source->version &&
        vt->u.source->state == S_PENDING && !vt->u.source->awaited) {
        bridge_t *b = hp_malloc(sizeof(*b));
        b->vt = *vt;
        b->task = hp_task_new();
        t = hp_task_ref(b->task);
        vt->kind = HP_VT_NONE;
        hp_vtask_on_completed(&b->vt, bridge_cb, b);
    } else {
        /* completed, inline, stale or consumed: read it now. A source still
         * pending here has its one continuation already (registered through
         * vt or a copy), so converting it would be a second await: refuse it
         * as on_completed does, leaving vt for that continuation to read. */
        hp_value_t v;
        const char *msg = NULL;
        int rc = hp_vtask_result(vt, &v, &msg);
        if (rc == HP_EVTASK_PENDING) rc = misuse(NULL, HP_EVTASK_CONSUMED);
        t = rc == 0 ? hp_task_from_result(v) : hp_task_from_error(rc, msg);
    }
    /* Count what was allocated (the bridge and its task are two). */
    hp_counter_add(&st->as_task_allocations,
                   hp_alloc_stats_sum(hp_alloc_thread_stats()).count - before);
    return t;
}
