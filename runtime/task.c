/*
 * task.c - hp_task (see task.h).
 *
 * Layout: 80 bytes on x86-64. The first continuation lives in the task
 * because almost every task has exactly one waiter (the request that started
 * it); only single-flight fills collect more, and those pay for an array that
 * doubles (1 allocation for the 2nd waiter, then log2(n) more).
 *
 * Completion runs continuations in registration order while holding a
 * reference, so a continuation may drop the last outside reference to the
 * task without freeing it under our feet. A continuation registered during
 * completion (on the same task) runs at once, as on any completed task.
 *
 * Rejected alternative: intrusive waiter nodes provided by the caller. They
 * save the array growth, but every caller would have to keep the node alive
 * exactly as long as the task, which is the mistake-prone part of C async
 * code; the array is counted and shows up in /stats when it matters.
 */
#include "task.h"

#include "alloc.h"
#include "counter.h"
#include "errors.h"

#include <stdlib.h>
#include <uv.h>

#define ROW(name, kind, help) HP_STAT_ROW(hp_runtime_stats_t, name, kind, help)
static const hp_stat_t stat_rows[] = {HP_RUNTIME_STATS(ROW)};
#undef ROW
static const hp_stat_group_t stat_groups[] = {{"misuse", "kind"}};

const hp_stats_table_t hp_runtime_stats_table = {
    .name = "runtime",
    .size = sizeof(hp_runtime_stats_t),
    .rows = stat_rows,
    .nrows = sizeof(stat_rows) / sizeof(stat_rows[0]),
    .groups = stat_groups,
    .ngroups = sizeof(stat_groups) / sizeof(stat_groups[0]),
};

enum { PENDING = 0, COMPLETED = 1, FAULTED = 2 };

typedef struct {
    hp_cont_cb cb;
    void *arg;
} cont_t;

struct hp_task {
    uint32_t refs; /* 0 marks an immortal singleton */
    uint8_t state;
    int32_t err;       /* < 0 when FAULTED */
    const char *msg;   /* static, when FAULTED */
    hp_value_t result; /* when COMPLETED */
    cont_t first;      /* the inline continuation slot */
    cont_t *more;      /* continuations 2..n, hp_malloc'd */
    uint32_t nmore, capmore;
    uint32_t waiters;              /* continuations ever registered */
    void (*dispose)(hp_value_t v); /* frees a COMPLETED result with the task */
};

_Thread_local hp_runtime_stats_t hp_rt_private_;
_Thread_local hp_runtime_stats_t *hp_rt_bound_;

void hp_runtime_bind_thread(hp_runtime_stats_t *stats)
{
    hp_rt_bound_ = stats;
}

/* Singletons for results -1..8, the range .NET's AsyncTaskCache keeps for
 * Task<int>. refs == 0 marks them immortal: ref/unref/await never write. */
#define CACHE_MIN (-1)
#define CACHE_MAX 8
static hp_task_t cached[CACHE_MAX - CACHE_MIN + 1] = {
#define C(n)                                                                                       \
    {                                                                                              \
        .refs = 0, .state = COMPLETED, .result = {.i = (n) }                                       \
    }
    C(-1), C(0), C(1), C(2), C(3), C(4), C(5), C(6), C(7), C(8),
#undef C
};

static hp_task_t *alloc_task(void)
{
    hp_task_t *t = hp_calloc(1, sizeof(*t));
    t->refs = 1;
    hp_counter_add(&hp_runtime_thread_stats()->tasks_allocated, 1);
    return t;
}

hp_task_t *hp_task_new(void)
{
    return alloc_task();
}

hp_task_t *hp_task_from_result(hp_value_t v)
{
    if (v.i >= CACHE_MIN && v.i <= CACHE_MAX) {
        hp_counter_add(&hp_runtime_thread_stats()->tasks_from_cache, 1);
        return &cached[v.i - CACHE_MIN];
    }
    hp_task_t *t = alloc_task();
    t->state = COMPLETED;
    t->result = v;
    return t;
}

hp_task_t *hp_task_from_error(int err, const char *msg)
{
    hp_task_t *t = alloc_task();
    t->state = FAULTED;
    t->err = err < 0 ? err : HP_ETASK_FAULTED;
    t->msg = msg ? msg : hp_strerror(t->err);
    return t;
}

hp_task_t *hp_task_ref(hp_task_t *t)
{
    if (t->refs) t->refs++;
    return t;
}

void hp_task_set_dispose(hp_task_t *t, void (*dispose)(hp_value_t v))
{
    if (t->refs) t->dispose = dispose;
}

void hp_task_unref(hp_task_t *t)
{
    if (t == NULL || t->refs == 0) return;
    if (--t->refs) return;
    if (t->dispose && t->state == COMPLETED) t->dispose(t->result);
    hp_free(t->more);
    hp_free(t);
}

static void run_continuations(hp_task_t *t)
{
    t->refs++;
    cont_t first = t->first;
    t->first.cb = NULL;
    if (first.cb) first.cb(first.arg);
    /* t->more may grow while we walk it if a continuation awaits t again:
     * those run at once (state is final), so they never land in the array. */
    for (uint32_t i = 0; i < t->nmore; i++)
        t->more[i].cb(t->more[i].arg);
    hp_free(t->more);
    t->more = NULL;
    t->nmore = t->capmore = 0;
    hp_task_unref(t);
}

static int settle(hp_task_t *t, uint8_t state, hp_value_t v, int err, const char *msg)
{
    if (t->state != PENDING || t->refs == 0) return UV_EALREADY;
    t->state = state;
    t->result = v;
    t->err = err;
    t->msg = msg;
    run_continuations(t);
    return 0;
}

int hp_task_complete(hp_task_t *t, hp_value_t v)
{
    return settle(t, COMPLETED, v, 0, NULL);
}

int hp_task_fail(hp_task_t *t, int err, const char *msg)
{
    if (err >= 0) err = HP_ETASK_FAULTED;
    hp_value_t none = {.i = 0};
    return settle(t, FAULTED, none, err, msg ? msg : hp_strerror(err));
}

bool hp_task_is_completed(const hp_task_t *t)
{
    return t->state != PENDING;
}

bool hp_task_is_faulted(const hp_task_t *t)
{
    return t->state == FAULTED;
}

int hp_task_result(const hp_task_t *t, hp_value_t *out)
{
    switch (t->state) {
    case COMPLETED: *out = t->result; return 0;
    case FAULTED: return t->err;
    default: return HP_ETASK_PENDING;
    }
}

const char *hp_task_error_message(const hp_task_t *t)
{
    return t->state == FAULTED ? t->msg : NULL;
}

void hp_task_await(hp_task_t *t, hp_cont_cb cb, void *arg)
{
    hp_runtime_stats_t *rt = hp_runtime_thread_stats();
    if (t->refs) {
        t->waiters++;
        hp_counter_add(&rt->task_waiters, 1);
    }
    if (t->state != PENDING) {
        cb(arg);
        return;
    }
    if (t->first.cb == NULL && t->nmore == 0) {
        t->first.cb = cb;
        t->first.arg = arg;
        return;
    }
    if (t->nmore == t->capmore) {
        t->capmore = t->capmore ? 2 * t->capmore : 2;
        t->more = hp_realloc(t->more, t->capmore * sizeof(*t->more));
        hp_counter_add(&rt->task_waiter_allocations, 1);
    }
    t->more[t->nmore++] = (cont_t){cb, arg};
}

uint32_t hp_task_waiter_count(const hp_task_t *t)
{
    return t->waiters;
}

/* when_all / when_any: one state block per combinator, referenced by one
 * continuation per input; the block goes when the last input has reported. */
typedef struct {
    hp_task_t *out;
    size_t n, remaining;
    int any; /* when_any: complete out on the first report */
    hp_task_t *inputs[];
} when_t;

typedef struct {
    when_t *w;
    size_t index;
} when_arg_t;

static void when_done(when_t *w)
{
    for (size_t i = 0; i < w->n; i++)
        hp_task_unref(w->inputs[i]);
    hp_task_unref(w->out);
    hp_free(w);
}

static void when_input_cb(void *arg)
{
    when_arg_t *a = arg;
    when_t *w = a->w;
    if (w->any && !hp_task_is_completed(w->out)) {
        hp_task_complete(w->out, hp_value_int((int64_t)a->index));
    }
    if (--w->remaining) return;
    if (!w->any) {
        for (size_t i = 0; i < w->n; i++) {
            if (hp_task_is_faulted(w->inputs[i])) {
                hp_task_fail(w->out, w->inputs[i]->err, w->inputs[i]->msg);
                break;
            }
        }
        if (!hp_task_is_completed(w->out)) hp_task_complete(w->out, hp_value_int((int64_t)w->n));
    }
    when_done(w);
}

static hp_task_t *when(hp_task_t *const *tasks, size_t n, int any)
{
    /* One block: the state, then the per-input continuation arguments. */
    when_t *w = hp_malloc(sizeof(*w) + n * sizeof(hp_task_t *) + n * sizeof(when_arg_t));
    when_arg_t *args = (when_arg_t *)(w->inputs + n);
    w->out = alloc_task();
    w->n = w->remaining = n;
    w->any = any;
    for (size_t i = 0; i < n; i++)
        w->inputs[i] = hp_task_ref(tasks[i]);
    hp_task_t *out = hp_task_ref(w->out);
    for (size_t i = 0; i < n; i++) {
        args[i] = (when_arg_t){w, i};
        hp_task_await(w->inputs[i], when_input_cb, &args[i]);
    }
    return out;
}

hp_task_t *hp_task_when_all(hp_task_t *const *tasks, size_t n)
{
    if (n == 0) return hp_task_from_result(hp_value_int(0));
    return when(tasks, n, 0);
}

hp_task_t *hp_task_when_any(hp_task_t *const *tasks, size_t n)
{
    if (n == 0) return hp_task_from_error(UV_EINVAL, "hp_task_when_any needs at least one task");
    return when(tasks, n, 1);
}
