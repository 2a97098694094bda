/*
 * vtask.c - hp_vtask and hp_vtsource (see vtask.h).
 *
 * Misuse detection has two places to look, because a vtask is a value that
 * can be copied: the copy itself (kind becomes HP_VT_NONE when consumed, and
 * `awaited` marks a registered continuation) catches reuse of one variable;
 * the source's version and state catch every copy of a source-backed vtask,
 * which is the case that would be undefined behaviour in .NET (a pooled
 * source reused by another request while an old awaiter still holds it).
 */
#include "vtask.h"

#include "alloc.h"
#include "counter.h"
#include "errors.h"

#include <uv.h>

enum { S_PENDING = 0, S_COMPLETED, S_FAULTED, S_CONSUMED };

const char *hp_mode_name(hp_mode_t mode)
{
    return mode == HP_MODE_TASK ? "task" : "valuetask";
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
    hp_counter_add(&rt()->vtasks_source, 1);
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

hp_vtask_t hp_vtask_from_result(hp_value_t v)
{
    hp_counter_add(&rt()->vtasks_inline, 1);
    return (hp_vtask_t){.kind = HP_VT_INLINE, .u.value = v};
}

hp_vtask_t hp_vtask_from_task(hp_task_t *t)
{
    hp_counter_add(&rt()->vtasks_task, 1);
    return (hp_vtask_t){.kind = HP_VT_TASK, .u.task = t};
}

hp_vtask_t hp_vtask_completed(hp_mode_t mode, hp_value_t v)
{
    if (mode == HP_MODE_TASK) return hp_vtask_from_task(hp_task_from_result(v));
    return hp_vtask_from_result(v);
}

hp_vtask_t hp_vtask_failed(int err, const char *msg)
{
    return hp_vtask_from_task(hp_task_from_error(err, msg));
}

bool hp_vtask_is_completed(const hp_vtask_t *vt)
{
    switch (vt->kind) {
    case HP_VT_INLINE: return true;
    case HP_VT_TASK: return hp_task_is_completed(vt->u.task);
    case HP_VT_SOURCE: {
        const hp_vtsource_t *s = vt->u.source;
        return vt->token == s->version && (s->state == S_COMPLETED || s->state == S_FAULTED);
    }
    default: return false;
    }
}

int hp_vtask_result(hp_vtask_t *vt, hp_value_t *out, const char **msg)
{
    switch (vt->kind) {
    case HP_VT_INLINE:
        *out = vt->u.value;
        vt->kind = HP_VT_NONE;
        return 0;
    case HP_VT_TASK: {
        hp_task_t *t = vt->u.task;
        if (!hp_task_is_completed(t)) return HP_EVTASK_PENDING;
        int rc = hp_task_result(t, out);
        if (rc && msg) *msg = hp_task_error_message(t);
        hp_task_unref(t);
        vt->kind = HP_VT_NONE;
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
    vt->awaited = 1;
    if (vt->kind == HP_VT_TASK)
        hp_task_await(vt->u.task, cb, arg);
    else
        cb(arg);
    return 0;
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
    uint64_t before = st->tasks_allocated;
    hp_task_t *t;
    if (vt->kind == HP_VT_TASK) {
        t = vt->u.task;
        vt->kind = HP_VT_NONE;
        return t;
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
    if (st->tasks_allocated != before) hp_counter_add(&st->as_task_allocs, 1);
    return t;
}
