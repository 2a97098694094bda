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
 * never undefined behaviour here: a second consumption, a second
 * continuation, or a token whose source has since been reused returns
 * HP_EVTASK_CONSUMED or HP_EVTASK_STALE and is counted in the thread's
 * hp_runtime_stats_t (misuse_consumed, misuse_stale).
 *
 * hp_vtask_completed() is the mode switch: in HP_MODE_TASK it builds every
 * synchronous result as a heap task, which is what the same code would cost
 * had every signature said Task<T>.
 *
 * Threading: as hp_task, a vtask and its source belong to one worker thread.
 */
#ifndef HP_VTASK_H
#define HP_VTASK_H

#include "task.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    HP_MODE_VALUETASK = 0, /* the default: synchronous results stay inline */
    HP_MODE_TASK = 1,      /* every valuetask is created as a heap task */
} hp_mode_t;

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
    uint8_t kind;
    uint8_t awaited; /* a continuation was registered through this copy */
    uint32_t token;  /* HP_VT_SOURCE: the source version it was made for */
    union {
        hp_value_t value;      /* HP_VT_INLINE */
        hp_task_t *task;       /* HP_VT_TASK: one owned reference */
        hp_vtsource_t *source; /* HP_VT_SOURCE: borrowed */
    } u;
} hp_vtask_t;

/* --- sources ----------------------------------------------------------- */

void hp_vtsource_init(hp_vtsource_t *s);

/* Make the source pending again for its next use, invalidating every
 * valuetask handed out before (their tokens go stale). */
void hp_vtsource_reset(hp_vtsource_t *s);

/* A valuetask for the source's current version. Counted in vtasks_source. */
hp_vtask_t hp_vtsource_vtask(hp_vtsource_t *s);

/* Complete or fault the current version and run its continuation, if one
 * is registered. Once per version: a second call returns UV_EALREADY. */
int hp_vtsource_complete(hp_vtsource_t *s, hp_value_t v);
int hp_vtsource_fail(hp_vtsource_t *s, int err, const char *msg);

/* --- valuetasks ------------------------------------------------------- */

/* Inline and completed. Counted in vtasks_inline (an allocation avoided). */
hp_vtask_t hp_vtask_from_result(hp_value_t v);

/* Takes t's reference. Counted in vtasks_task. */
hp_vtask_t hp_vtask_from_task(hp_task_t *t);

/* The mode switch: inline in HP_MODE_VALUETASK, a heap task from
 * hp_task_from_result in HP_MODE_TASK. */
hp_vtask_t hp_vtask_completed(hp_mode_t mode, hp_value_t v);

/* The same switch for a synchronous failure. Both modes allocate a faulted
 * task: as in .NET, a ValueTask carries a fault only through a Task. */
hp_vtask_t hp_vtask_failed(int err, const char *msg);

/* True when the result can be read now without waiting. False for a
 * consumed or stale valuetask (reading it reports why). */
bool hp_vtask_is_completed(const hp_vtask_t *vt);

/* Consume: on 0, *out holds the result. Otherwise the fault's code (and,
 * when msg is not NULL, *msg its static message), HP_EVTASK_PENDING (nothing
 * consumed: wait and try again), HP_EVTASK_CONSUMED or HP_EVTASK_STALE. A
 * task-backed vtask releases its task reference here; every outcome but
 * PENDING leaves vt consumed. */
int hp_vtask_result(hp_vtask_t *vt, hp_value_t *out, const char **msg);

/* Register the one continuation; it runs when vt completes (at once when it
 * already has), and must then call hp_vtask_result on the same vt, which the
 * caller keeps alive until then. Returns HP_EVTASK_CONSUMED when vt was
 * consumed or already awaited, HP_EVTASK_STALE for a stale token; cb does
 * not run in those cases. */
int hp_vtask_on_completed(hp_vtask_t *vt, hp_cont_cb cb, void *arg);

/* ValueTask.AsTask: consume vt into an owned task reference. Allocates only
 * when it must: a task-backed vtask hands over its task; an inline result
 * goes through hp_task_from_result (and its singletons); a pending source
 * gets a new task completed by a continuation. A consumed or stale vt gives
 * a faulted task carrying that error. Counted in as_task_calls/allocs. */
hp_task_t *hp_vtask_as_task(hp_vtask_t *vt);

#endif
