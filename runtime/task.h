/*
 * task.h - hp_task, hotpath's Task<T>: a heap object, reference counted, that
 * completes once and caches its result for any number of waiters.
 *
 * Who uses it: handlers that call the upstream (their work is genuinely
 * asynchronous), the cache's single-flight fills (many requests await one
 * fill), and hp_vtask in task mode (every valuetask becomes one of these).
 *
 * Threading: a task belongs to the worker thread that created it; nothing
 * here takes a lock. The cached completed singletons are immortal and never
 * written after start-up, so every thread may share them.
 *
 * Continuations run synchronously, in registration order, on the thread that
 * completes the task (.NET's ExecuteSynchronously). The first continuation is
 * stored inline in the task; more waiters grow an array, and that growth is
 * counted like any other allocation.
 *
 * Ownership: every function that returns hp_task_t * returns one owned
 * reference; drop it with hp_task_unref. A pending task must eventually be
 * completed or failed, or its continuations never run. A continuation does
 * not own a reference: whoever registers one keeps the task alive (its
 * vtask, or its own reference) until it has run.
 */
#ifndef HP_TASK_H
#define HP_TASK_H

#include "stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The T in Task<T>: a pointer or an integer, by value. */
typedef union {
    void *ptr;
    int64_t i;
} hp_value_t;

static inline hp_value_t hp_value_ptr(void *p)
{
    hp_value_t v;
    v.ptr = p;
    return v;
}

static inline hp_value_t hp_value_int(int64_t i)
{
    hp_value_t v;
    v.i = i;
    return v;
}

/* A continuation: runs once when the thing it waits for completes. */
typedef void (*hp_cont_cb)(void *arg);

/* Runtime figures of one thread, single-writer (see counter.h). The decision
 * advisor and /stats read them; tests assert them exactly. */
#define HP_RUNTIME_STATS(XX)                                                                       \
    XX(tasks_allocated, counter, "heap tasks created (pending or completed)")                      \
    XX(tasks_from_cache, counter, "hp_task_from_result answered by a singleton")                   \
    XX(task_waiters, counter, "continuations registered on heap tasks")                            \
    XX(task_waiter_allocations, counter, "waiter-array growths (2nd waiter onwards)")              \
    XX(valuetasks_inline, counter, "valuetasks completed inline: a task avoided")                  \
    XX(valuetasks_source, counter, "valuetasks backed by a pooled source")                         \
    XX(valuetasks_task, counter, "valuetasks wrapping a heap task")                                \
    XX(as_task_calls, counter, "hp_vtask_as_task calls")                                           \
    XX(as_task_allocations, counter, "allocations those calls made")                               \
    XX(misuse_consumed, counter, "second consumption or second await, refused")                    \
    XX(misuse_stale, counter, "token of a reused source, refused")

typedef struct {
    HP_RUNTIME_STATS(HP_STAT_FIELD)
} hp_runtime_stats_t;

/* The table of hp_runtime_stats_t: its name is "runtime"; the misuses are
 * one family by kind. */
extern const hp_stats_table_t hp_runtime_stats_table;

/* Point the calling thread's runtime figures at stats (borrowed). Threads
 * that never bind count into a private thread-local block. */
void hp_runtime_bind_thread(hp_runtime_stats_t *stats);

/* The calling thread's figures. Inline, as every inline valuetask counts
 * itself here: the two thread-locals are task.c's, read nowhere else. */
extern _Thread_local hp_runtime_stats_t *hp_rt_bound_;
extern _Thread_local hp_runtime_stats_t hp_rt_private_;
static inline hp_runtime_stats_t *hp_runtime_thread_stats(void)
{
    return hp_rt_bound_ ? hp_rt_bound_ : &hp_rt_private_;
}

typedef struct hp_task hp_task_t;

/* Returns owned: a pending task. Allocates. */
hp_task_t *hp_task_new(void);

/* Returns owned: a completed task, Task.FromResult. Values whose bit pattern
 * is an integer from -1 to 8 (this includes NULL) come from immortal
 * singletons, as .NET caches Task<bool> and small Task<int>; those calls are
 * counted in tasks_from_cache and allocate nothing. Others allocate. */
hp_task_t *hp_task_from_result(hp_value_t v);

/* Returns owned: a faulted task. msg is borrowed and must be static (a string
 * literal or hp_strerror's answer); NULL means hp_strerror(err). err < 0. */
hp_task_t *hp_task_from_error(int err, const char *msg);

/* Give a pending task a destructor for its successful result: dispose(v)
 * runs when the last reference goes, if the task completed with v. This is
 * how a task owns a refcounted result (an upstream response, a cache value)
 * the way a .NET Task holds its result alive. Waiters that keep the value
 * past the task's life take their own reference to it. */
void hp_task_set_dispose(hp_task_t *t, void (*dispose)(hp_value_t v));

/* Returns t with one more owned reference. */
hp_task_t *hp_task_ref(hp_task_t *t);

/* Drops one reference; the last one frees the task. NULL is a no-op. */
void hp_task_unref(hp_task_t *t);

/* Complete a pending task and run its continuations. A task completes once:
 * a second complete or fail returns UV_EALREADY and changes nothing. */
int hp_task_complete(hp_task_t *t, hp_value_t v);

/* Fault a pending task with err (< 0) and a static message (NULL: the
 * code's message). Same once-only rule as hp_task_complete. */
int hp_task_fail(hp_task_t *t, int err, const char *msg);

bool hp_task_is_completed(const hp_task_t *t); /* completed or faulted */
bool hp_task_is_faulted(const hp_task_t *t);

/* The cached result. Returns 0 and sets *out when completed successfully,
 * the fault's code when faulted, HP_ETASK_PENDING while pending. May be
 * called any number of times, by any number of waiters. */
int hp_task_result(const hp_task_t *t, hp_value_t *out);

/* The fault's message, or NULL when the task has not faulted. Borrowed. */
const char *hp_task_error_message(const hp_task_t *t);

/* Run cb(arg) when t completes; at once, before returning, when it already
 * has. Any number of continuations may be registered. The task keeps itself
 * alive until its continuations have run; cb does not own a reference. */
void hp_task_await(hp_task_t *t, hp_cont_cb cb, void *arg);

/* Continuations ever registered on t (the multi-await figure). */
uint32_t hp_task_waiter_count(const hp_task_t *t);

/* Returns owned: a task that completes when every one of the n tasks has
 * completed (Task.WhenAll). Its result is n; it faults with the code and
 * message of the lowest-indexed faulted input, after all inputs finished.
 * Borrows the array, takes its own references to the inputs. n == 0 gives a
 * completed task. */
hp_task_t *hp_task_when_all(hp_task_t *const *tasks, size_t n);

/* Returns owned: a task that completes when the first of the n tasks
 * completes (Task.WhenAny). Its result is that input's index; it never
 * faults because an input faulted (inspect the input). n must be >= 1. */
hp_task_t *hp_task_when_any(hp_task_t *const *tasks, size_t n);

#endif
