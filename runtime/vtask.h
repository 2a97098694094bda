/*
 * vtask.h - hp_vtask, hotpath's ValueTask<T>: a 16-byte struct passed by
 * value (returned in two registers on x86-64 and arm64), in one of three
 * forms:
 *
 *   inline  the result itself, for work that completed synchronously:
 *           no allocation, no indirection;
 *   task    a reference to a heap hp_task (async work, or task mode);
 *   source  a pooled hp_vtsource plus a version token: async completion
 *           without an allocation (IValueTaskSource<T>).
 *
 * The rules a caller follows are .NET's: consume a valuetask exactly once,
 * either by reading its result when it is completed or by registering one
 * continuation and reading the result there. Unlike .NET, breaking a rule is
 * never undefined behaviour here, whichever copy of a valuetask breaks it: a
 * second consumption, a second continuation, a token whose source has since
 * been reused, or a copy of a task-backed valuetask read after another copy
 * released the task returns HP_EVTASK_CONSUMED or HP_EVTASK_STALE and is
 * counted in the thread's hp_runtime_stats_t (misuse_consumed, misuse_stale).
 * A task-backed valuetask is checked through a slot of its thread's slot
 * table (vtask.c): the slot, not the task, says whether it was consumed, so
 * a stale copy never touches a task that may be gone.
 *
 * hp_vtask_completed() is the mode switch: in HP_MODE_TASK it builds every
 * synchronous result as a heap task, which is what the same code would cost
 * had every signature said Task<T>.
 *
 * Threading: as hp_task, a vtask and its source belong to one worker thread.
 */
#ifndef HP_VTASK_H
#define HP_VTASK_H

#include "counter.h"
#include "task.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    HP_MODE_VALUETASK = 0, /* the default: synchronous results stay inline */
    HP_MODE_TASK = 1,      /* every valuetask is created as a heap task */
} hp_mode_t;

/* How many modes there are: figures kept per mode are arrays of this. */
#define HP_MODES 2

/* The modes' names, by mode, NULL-ended: "valuetask", "task" (the
 * configuration's, /stats' and /metrics'). */
extern const char *const hp_mode_names[HP_MODES + 1];
const char *hp_mode_name(hp_mode_t mode);

/* ManualResetValueTaskSourceCore: embed one in a reusable object (the
 * request context does) and hand out valuetasks backed by it. Each reset
 * bumps the version, so valuetasks handed out before are detectably stale.
 * All fields are private; the struct is public only so it can be embedded. */
typedef struct {
    uint32_t version;
    uint8_t state;   /* pending, completed, faulted, consumed */
    uint8_t awaited; /* a continuation is registered or has run */
    int32_t err;
    const char *msg;
    hp_value_t result;
    hp_cont_cb cb;
    void *arg;
} hp_vtsource_t;

typedef enum {
    HP_VT_NONE = 0, /* consumed, or never set: any use is refused */
    HP_VT_INLINE,
    HP_VT_TASK,
    HP_VT_SOURCE,
} hp_vtask_kind_t;

typedef struct {
    uint32_t kind : 8;    /* hp_vtask_kind_t: a byte of its own, read and written as one */
    uint32_t awaited : 1; /* a continuation was registered through this copy */
    uint32_t slot : 23;   /* HP_VT_TASK: its slot in the thread's slot table (2^20 at most) */
    uint32_t token;       /* the version it was made for: the source's, or the slot's */
    union {
        hp_value_t value;      /* HP_VT_INLINE */
        hp_task_t *task;       /* HP_VT_TASK: one owned reference, shared by the copies */
        hp_vtsource_t *source; /* HP_VT_SOURCE: borrowed */
    } u;
} hp_vtask_t;

/* --- sources ----------------------------------------------------------- */

void hp_vtsource_init(hp_vtsource_t *s);

/* Make the source pending again for its next use, invalidating every
 * valuetask handed out before (their tokens go stale). */
void hp_vtsource_reset(hp_vtsource_t *s);

/* A valuetask for the source's current version. Counted in valuetasks_source. */
hp_vtask_t hp_vtsource_vtask(hp_vtsource_t *s);

/* Complete or fault the current version and run its continuation, if one
 * is registered. Once per version: a second call returns UV_EALREADY. */
int hp_vtsource_complete(hp_vtsource_t *s, hp_value_t v);
int hp_vtsource_fail(hp_vtsource_t *s, int err, const char *msg);

/* --- valuetasks ------------------------------------------------------- */

/* Inline and completed. Counted in valuetasks_inline (an allocation
 * avoided). Inline itself: every synchronous layer makes one. */
static inline hp_vtask_t hp_vtask_from_result(hp_value_t v)
{
    hp_counter_add(&hp_runtime_thread_stats()->valuetasks_inline, 1);
    return (hp_vtask_t){.kind = HP_VT_INLINE, .u.value = v};
}

/* Takes t's reference. Counted in valuetasks_task. */
hp_vtask_t hp_vtask_from_task(hp_task_t *t);

/* The mode switch: inline in HP_MODE_VALUETASK, a heap task from
 * hp_task_from_result in HP_MODE_TASK. */
static inline hp_vtask_t hp_vtask_completed(hp_mode_t mode, hp_value_t v)
{
    return mode == HP_MODE_TASK ? hp_vtask_from_task(hp_task_from_result(v))
                                : hp_vtask_from_result(v);
}

/* The same switch for a synchronous failure. Both modes allocate a faulted
 * task: as in .NET, a ValueTask carries a fault only through a Task. */
hp_vtask_t hp_vtask_failed(int err, const char *msg);

/* True when the result can be read now without waiting: completed,
 * faulted, or unusable - consumed, stale, or never set - so that reading it
 * reports why at once (.NET's IsCompleted throws for a stale token). A
 * caller that sees true never waits for a valuetask that cannot complete. */
static inline bool hp_vtask_is_completed(const hp_vtask_t *vt);

/* Consume: on 0, *out holds the result. Otherwise the fault's code (and,
 * when msg is not NULL, *msg its static message), HP_EVTASK_PENDING (nothing
 * consumed: wait and try again), HP_EVTASK_CONSUMED or HP_EVTASK_STALE. A
 * task-backed vtask releases its task reference here; every outcome but
 * PENDING leaves vt consumed. */
static inline int hp_vtask_result(hp_vtask_t *vt, hp_value_t *out, const char **msg);

/* Register the one continuation; it runs when vt completes (at once when it
 * already has), and must then call hp_vtask_result on the same vt, which the
 * caller keeps alive until then. Returns HP_EVTASK_CONSUMED when vt was
 * consumed or already awaited (through any copy), HP_EVTASK_STALE for a
 * stale token; cb does not run in those cases, and the caller must not wait
 * for it: a request turns the refusal into its fault (hp_layer_await in
 * chain.h does, for a chain layer). */
int hp_vtask_on_completed(hp_vtask_t *vt, hp_cont_cb cb, void *arg);

/* The task behind a task-backed vt while vt can still be read (no copy has
 * consumed it): borrowed, vt's reference. NULL for the other forms, and
 * for a copy read after another released the task - which may be gone,
 * and is never touched. For a caller that must hold the task across
 * hp_vtask_result (whose release may free what the result points to). */
hp_task_t *hp_vtask_task(const hp_vtask_t *vt);

/* Give vt up without its result (a refused await): a task-backed vtask
 * releases its task and its slot (copies read after this are refused), a
 * source-backed one is left to its source. vt is consumed afterwards. */
void hp_vtask_drop(hp_vtask_t *vt);

/* ValueTask.AsTask: consume vt into an owned task reference. Allocates only
 * when it must: a task-backed vtask hands over its task; an inline result
 * goes through hp_task_from_result (and its singletons); a pending source
 * gets a new task and the bridge that completes it (two allocations). A
 * consumed or stale vt gives a faulted task carrying that error. Counted in
 * as_task_calls, and every allocation it made in as_task_allocations. */
hp_task_t *hp_vtask_as_task(hp_vtask_t *vt);

/* --- the synchronous case, inline ------------------------------------- *
 *
 * A completed inline valuetask is the hot path's common case (every layer
 * of a synchronous request returns one): reading it is two moves, so it is
 * decided here, where the compiler sees it, and only the other forms call
 * into vtask.c. Out of line (with hp_vtask_completed's switch), the calls
 * cost a /plaintext request about 200 instructions of its 4,800. */

bool hp_vtask_is_completed_other(const hp_vtask_t *vt);
int hp_vtask_result_other(hp_vtask_t *vt, hp_value_t *out, const char **msg);

static inline bool hp_vtask_is_completed(const hp_vtask_t *vt)
{
    return vt->kind == HP_VT_INLINE || hp_vtask_is_completed_other(vt);
}

static inline int hp_vtask_result(hp_vtask_t *vt, hp_value_t *out, const char **msg)
{
    if (vt->kind != HP_VT_INLINE) return hp_vtask_result_other(vt, out, msg);
    *out = vt->u.value;
    vt->kind = HP_VT_NONE;
    return 0;
}

/* Free the calling thread's slot table beyond its built-in part (a worker
 * thread calls this as it ends). Task-backed valuetasks of the thread must
 * all be gone. */
void hp_vtask_thread_exit(void);

#endif
