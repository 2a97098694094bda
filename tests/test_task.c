/*
 * test_task.c - unit tests for runtime/task.c, hotpath's Task<T>.
 *
 * What is proved here is the row of DESIGN.md's concept table for Task<T>:
 * any number of continuations, each run exactly once and in registration
 * order; a cached result that any waiter may read any number of times; one
 * completion only; a fault that carries its code and message (also through a
 * valuetask); reference counting with a result destructor; the completed-task
 * singletons counted honestly; and WhenAll/WhenAny, composable and leak-free.
 *
 * Every test runs with freshly bound allocator and runtime counters (see
 * hp_test_counters_setup), so "allocations" below means allocations made by the test
 * itself, and the figures are asserted exactly. A test whose blocks were
 * never grown with realloc also checks that every block it caused was freed
 * (frees == allocations); ASan and valgrind check the rest.
 */
#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "runtime/task.h"
#include "runtime/vtask.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tests/support/counters.h"
#include <uv.h>

/* Allocation calls made through every door since the test started. */
/* Valid only when no block was grown by realloc (a grown block is counted
 * twice but freed once): every block the test caused has been freed. */
static void assert_all_freed(void)
{
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

/* --- continuations ------------------------------------------------------ */

typedef struct {
    int log[128]; /* ids of the continuations, in the order they ran */
    int n;
} order_t;

typedef struct {
    order_t *order;
    int id;
} step_t;

static void record_cb(void *arg)
{
    step_t *s = arg;
    s->order->log[s->order->n++] = s->id;
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

static const struct {
    uint32_t waiters;
    uint64_t growths; /* waiter-array allocations: the 2nd waiter, then doublings */
} fanout_cases[] = {{1, 0}, {2, 1}, {3, 1}, {100, 7}};

static void continuations_run_once_in_registration_order(void **state)
{
    for (size_t c = 0; c < sizeof(fanout_cases) / sizeof(fanout_cases[0]); c++) {
        uint32_t n = fanout_cases[c].waiters;
        uint64_t a0 = hp_test_allocs(), f0 = hp_test_frees();
        order_t order = {.n = 0};
        step_t steps[100];
        hp_task_t *t = hp_task_new();
        for (uint32_t i = 0; i < n; i++) {
            steps[i] = (step_t){&order, (int)i};
            hp_task_await(t, record_cb, &steps[i]);
        }
        assert_int_equal(order.n, 0);
        assert_int_equal(hp_task_waiter_count(t), n);
        assert_int_equal(hp_test_allocs() - a0, 1 + fanout_cases[c].growths);

        assert_int_equal(hp_task_complete(t, hp_value_int(77)), 0);
        assert_int_equal(order.n, (int)n);
        for (uint32_t i = 0; i < n; i++)
            assert_int_equal(order.log[i], (int)i);

        /* A refused second completion must not rerun anyone. */
        assert_int_equal(hp_task_complete(t, hp_value_int(78)), UV_EALREADY);
        assert_int_equal(hp_task_fail(t, HP_ESHUTDOWN, NULL), UV_EALREADY);
        assert_int_equal(order.n, (int)n);

        hp_task_unref(t);
        /* The task, plus the waiter array when there was one. */
        assert_int_equal(hp_test_frees() - f0, n > 1 ? 2 : 1);
    }
    assert_int_equal(hp_test_rt.task_waiters, 1 + 2 + 3 + 100);
    assert_int_equal(hp_test_rt.task_waiter_allocations, 0 + 1 + 1 + 7);
    assert_int_equal(hp_test_rt.tasks_allocated, 4);
}

static void result_is_cached_for_every_reader(void **state)
{
    hp_task_t *t = hp_task_new();
    hp_value_t v = {.i = -5};
    assert_int_equal(hp_task_result(t, &v), HP_ETASK_PENDING);
    assert_int_equal(v.i, -5); /* untouched while pending */
    assert_false(hp_task_is_completed(t));

    assert_int_equal(hp_task_complete(t, hp_value_int(4242)), 0);
    for (int i = 0; i < 3; i++) {
        v.i = 0;
        assert_int_equal(hp_task_result(t, &v), 0);
        assert_int_equal(v.i, 4242);
    }
    assert_true(hp_task_is_completed(t));
    assert_false(hp_task_is_faulted(t));
    assert_null(hp_task_error_message(t));
    hp_task_unref(t);
    assert_all_freed();
}

static void await_on_completed_task_runs_before_returning(void **state)
{
    hp_task_t *t = hp_task_new();
    hp_task_complete(t, hp_value_int(1000));
    int ran = 0;
    hp_task_await(t, count_cb, &ran);
    assert_int_equal(ran, 1);
    hp_task_await(t, count_cb, &ran);
    assert_int_equal(ran, 2);
    /* Running at once needs no waiter slot, so no array either. */
    assert_int_equal(hp_test_rt.task_waiter_allocations, 0);
    hp_task_unref(t);
    assert_all_freed();
}

static void waiter_count_counts_every_registration(void **state)
{
    hp_task_t *t = hp_task_new();
    int ran = 0;
    assert_int_equal(hp_task_waiter_count(t), 0);
    for (int i = 0; i < 3; i++)
        hp_task_await(t, count_cb, &ran);
    hp_task_complete(t, hp_value_int(1000));
    for (int i = 0; i < 2; i++)
        hp_task_await(t, count_cb, &ran);
    assert_int_equal(ran, 5);
    assert_int_equal(hp_task_waiter_count(t), 5);
    assert_int_equal(hp_test_rt.task_waiters, 5);
    hp_task_unref(t);
}

/* A continuation that awaits the task it is running for: the task is final,
 * so the new one runs at once, nested, before the next registered one. */
typedef struct {
    hp_task_t *t;
    step_t nested;
    step_t self;
} reawait_t;

static void reawait_cb(void *arg)
{
    reawait_t *r = arg;
    record_cb(&r->self);
    hp_task_await(r->t, record_cb, &r->nested);
}

static void await_during_completion_runs_at_once(void **state)
{
    order_t order = {.n = 0};
    hp_task_t *t = hp_task_new();
    reawait_t r = {t, {&order, 2}, {&order, 1}};
    step_t last = {&order, 3};
    hp_task_await(t, reawait_cb, &r);
    hp_task_await(t, record_cb, &last);
    hp_task_complete(t, hp_value_int(1000));
    assert_int_equal(order.n, 3);
    assert_int_equal(order.log[0], 1);
    assert_int_equal(order.log[1], 2);
    assert_int_equal(order.log[2], 3);
    assert_int_equal(hp_task_waiter_count(t), 3);
    hp_task_unref(t);
}

/* --- completes once, faults --------------------------------------------- */

static void second_completion_changes_nothing(void **state)
{
    hp_task_t *ok = hp_task_new();
    assert_int_equal(hp_task_complete(ok, hp_value_int(100)), 0);
    assert_int_equal(hp_task_complete(ok, hp_value_int(200)), UV_EALREADY);
    assert_int_equal(hp_task_fail(ok, HP_ESHUTDOWN, "late"), UV_EALREADY);
    hp_value_t v;
    assert_int_equal(hp_task_result(ok, &v), 0);
    assert_int_equal(v.i, 100);
    assert_false(hp_task_is_faulted(ok));
    assert_null(hp_task_error_message(ok));

    hp_task_t *bad = hp_task_new();
    assert_int_equal(hp_task_fail(bad, HP_EUPSTREAM_RESET, "first"), 0);
    assert_int_equal(hp_task_complete(bad, hp_value_int(200)), UV_EALREADY);
    assert_int_equal(hp_task_fail(bad, HP_ESHUTDOWN, "second"), UV_EALREADY);
    assert_int_equal(hp_task_result(bad, &v), HP_EUPSTREAM_RESET);
    assert_string_equal(hp_task_error_message(bad), "first");

    hp_task_unref(ok);
    hp_task_unref(bad);
    assert_all_freed();
}

static const struct {
    int err;         /* passed to hp_task_fail */
    const char *msg; /* passed to hp_task_fail */
    int want_err;
    const char *want_msg;
} fault_cases[] = {
    {HP_EUPSTREAM_TIMEOUT, "upstream slow", HP_EUPSTREAM_TIMEOUT, "upstream slow"},
    {HP_EUPSTREAM_TIMEOUT, NULL, HP_EUPSTREAM_TIMEOUT, "upstream timed out"},
    {UV_ECONNREFUSED, NULL, UV_ECONNREFUSED, "connection refused"},
    /* A non-negative code is not a fault code: it becomes the generic one. */
    {0, NULL, HP_ETASK_FAULTED, "task faulted"},
    {5, "odd", HP_ETASK_FAULTED, "odd"},
};

static void fault_carries_code_and_message(void **state)
{
    for (size_t i = 0; i < sizeof(fault_cases) / sizeof(fault_cases[0]); i++) {
        hp_task_t *t = hp_task_new();
        assert_int_equal(hp_task_fail(t, fault_cases[i].err, fault_cases[i].msg), 0);
        assert_true(hp_task_is_completed(t));
        assert_true(hp_task_is_faulted(t));
        hp_value_t v = {.i = 9999};
        assert_int_equal(hp_task_result(t, &v), fault_cases[i].want_err);
        assert_int_equal(hp_task_result(t, &v), fault_cases[i].want_err);
        assert_int_equal(v.i, 9999);
        assert_string_equal(hp_task_error_message(t), fault_cases[i].want_msg);
        hp_task_unref(t);

        /* The already-faulted constructor says the same. */
        t = hp_task_from_error(fault_cases[i].err, fault_cases[i].msg);
        assert_true(hp_task_is_faulted(t));
        assert_int_equal(hp_task_result(t, &v), fault_cases[i].want_err);
        assert_string_equal(hp_task_error_message(t), fault_cases[i].want_msg);
        hp_task_unref(t);
    }
    assert_all_freed();
}

typedef struct {
    hp_vtask_t vt;
    int rc;
    const char *msg;
    int ran;
} vt_reader_t;

static void read_vtask_cb(void *arg)
{
    vt_reader_t *r = arg;
    hp_value_t v;
    r->ran++;
    r->rc = hp_vtask_result(&r->vt, &v, &r->msg);
}

static void fault_propagates_through_vtask(void **state)
{
    /* Already faulted when wrapped. */
    hp_vtask_t vt =
        hp_vtask_from_task(hp_task_from_error(HP_EUPSTREAM_PROTOCOL, "garbage upstream"));
    assert_true(hp_vtask_is_completed(&vt));
    hp_value_t v;
    const char *msg = NULL;
    assert_int_equal(hp_vtask_result(&vt, &v, &msg), HP_EUPSTREAM_PROTOCOL);
    assert_string_equal(msg, "garbage upstream");

    /* Faulted after a continuation was registered through the vtask. */
    hp_task_t *t = hp_task_new();
    vt_reader_t r = {.vt = hp_vtask_from_task(hp_task_ref(t))};
    assert_int_equal(hp_vtask_on_completed(&r.vt, read_vtask_cb, &r), 0);
    assert_int_equal(r.ran, 0);
    hp_task_fail(t, HP_EUPSTREAM_PROTOCOL, NULL);
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, HP_EUPSTREAM_PROTOCOL);
    assert_string_equal(r.msg, "upstream sent a malformed response");
    hp_task_unref(t);
    assert_all_freed();
}

/* --- references and dispose --------------------------------------------- */

static int disposed;
static hp_value_t disposed_value;

static void count_dispose(hp_value_t v)
{
    disposed++;
    disposed_value = v;
}

static const struct {
    const char *how;
    int settle; /* 1 complete, -1 fail, 0 never settled */
    int want_disposed;
} dispose_cases[] = {
    {"completed", 1, 1},
    {"faulted", -1, 0},
    {"never settled", 0, 0},
};

static void dispose_runs_once_at_last_ref_for_success_only(void **state)
{
    for (size_t i = 0; i < sizeof(dispose_cases) / sizeof(dispose_cases[0]); i++) {
        int payload = 1;
        disposed = 0;
        disposed_value.ptr = NULL;
        hp_task_t *t = hp_task_new();
        hp_task_set_dispose(t, count_dispose);
        assert_ptr_equal(hp_task_ref(t), t);
        hp_task_ref(t);
        if (dispose_cases[i].settle > 0) hp_task_complete(t, hp_value_ptr(&payload));
        if (dispose_cases[i].settle < 0) hp_task_fail(t, HP_EUPSTREAM_RESET, NULL);
        hp_task_unref(t);
        hp_task_unref(t);
        assert_int_equal(disposed, 0); /* one reference is still out */
        hp_task_unref(t);
        assert_int_equal(disposed, dispose_cases[i].want_disposed);
        if (dispose_cases[i].want_disposed) assert_ptr_equal(disposed_value.ptr, &payload);
    }
    hp_task_unref(NULL); /* documented no-op */
    assert_all_freed();
}

typedef struct {
    hp_task_t *t;
    int dropped;
    int read_rc;
    hp_value_t read;
    int disposed_when_read;
} drop_ctx_t;

static void drop_ref_cb(void *arg)
{
    drop_ctx_t *c = arg;
    c->dropped++;
    hp_task_unref(c->t);
}

static void read_after_drop_cb(void *arg)
{
    drop_ctx_t *c = arg;
    c->read_rc = hp_task_result(c->t, &c->read);
    c->disposed_when_read = disposed;
}

/* The caller's only reference is dropped by the first continuation; the task
 * must stay alive for the second one (ASan reports the use-after-free if it
 * does not) and go, with its result, when completion ends. */
static void continuation_dropping_last_ref_is_safe(void **state)
{
    int payload = 1;
    disposed = 0;
    drop_ctx_t c = {.t = hp_task_new()};
    hp_task_set_dispose(c.t, count_dispose);
    hp_task_await(c.t, drop_ref_cb, &c);
    hp_task_await(c.t, read_after_drop_cb, &c);
    assert_int_equal(hp_task_complete(c.t, hp_value_ptr(&payload)), 0);
    assert_int_equal(c.dropped, 1);
    assert_int_equal(c.read_rc, 0);
    assert_ptr_equal(c.read.ptr, &payload);
    assert_int_equal(c.disposed_when_read, 0);
    assert_int_equal(disposed, 1);
    assert_int_equal(hp_test_frees(), 2); /* the task and its waiter array */

    /* Same with a single (inline-slot) continuation. */
    disposed = 0;
    c = (drop_ctx_t){.t = hp_task_new()};
    hp_task_set_dispose(c.t, count_dispose);
    hp_task_await(c.t, drop_ref_cb, &c);
    hp_task_complete(c.t, hp_value_ptr(&payload));
    assert_int_equal(c.dropped, 1);
    assert_int_equal(disposed, 1);
    assert_int_equal(hp_test_frees(), 3);
}

/* --- Task.FromResult singletons ----------------------------------------- */

static void from_result_small_values_come_from_the_cache(void **state)
{
    for (int64_t i = -1; i <= 8; i++) {
        hp_task_t *t = hp_task_from_result(hp_value_int(i));
        assert_ptr_equal(hp_task_from_result(hp_value_int(i)), t); /* one object */
        hp_value_t v;
        assert_int_equal(hp_task_result(t, &v), 0);
        assert_int_equal(v.i, i);
        /* Immortal: completing again is refused, refs and dispose are inert. */
        assert_int_equal(hp_task_complete(t, hp_value_int(i + 100)), UV_EALREADY);
        hp_task_set_dispose(t, count_dispose);
        hp_task_unref(hp_task_ref(t));
        hp_task_unref(t);
        hp_task_unref(t);
        assert_int_equal(hp_task_result(t, &v), 0);
        assert_int_equal(v.i, i);
    }
    hp_task_t *null_task = hp_task_from_result(hp_value_ptr(NULL));
    assert_ptr_equal(null_task, hp_task_from_result(hp_value_int(0)));
    hp_value_t v = {.ptr = &v};
    hp_task_result(null_task, &v);
    assert_null(v.ptr);

    assert_int_equal(hp_test_rt.tasks_from_cache, 10 * 2 + 2);
    assert_int_equal(hp_test_rt.tasks_allocated, 0);
    assert_int_equal(hp_test_allocs(), 0);
    assert_int_equal(hp_test_frees(), 0);
}

static void from_result_other_values_allocate_once(void **state)
{
    int real;
    const hp_value_t values[] = {hp_value_int(9), hp_value_int(-2), hp_value_int(INT64_MAX),
                                 hp_value_ptr(&real)};
    const size_t n = sizeof(values) / sizeof(values[0]);
    for (size_t i = 0; i < n; i++) {
        uint64_t a0 = hp_test_allocs();
        hp_task_t *t = hp_task_from_result(values[i]);
        assert_int_equal(hp_test_allocs() - a0, 1);
        hp_task_t *u = hp_task_from_result(values[i]);
        assert_ptr_not_equal(t, u);
        hp_value_t v;
        assert_int_equal(hp_task_result(t, &v), 0);
        assert_int_equal(v.i, values[i].i);
        hp_task_unref(t);
        hp_task_unref(u);
    }
    assert_int_equal(hp_test_rt.tasks_allocated, 2 * n);
    assert_int_equal(hp_test_rt.tasks_from_cache, 0);
    assert_all_freed();
}

/* --- WhenAll / WhenAny --------------------------------------------------- */

static void new_pending(hp_task_t **t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        t[i] = hp_task_new();
}

static void unref_all(hp_task_t **t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hp_task_unref(t[i]);
}

static void when_all_completes_after_every_input(void **state)
{
    hp_task_t *in[3];
    new_pending(in, 3);
    uint64_t a0 = hp_test_allocs();
    hp_task_t *all = hp_task_when_all(in, 3);
    assert_int_equal(hp_test_allocs() - a0, 2); /* its state block and its task */
    int ran = 0;
    hp_task_await(all, count_cb, &ran);

    hp_task_complete(in[2], hp_value_int(20));
    hp_task_complete(in[0], hp_value_int(10));
    assert_false(hp_task_is_completed(all));
    hp_task_complete(in[1], hp_value_int(11));
    assert_true(hp_task_is_completed(all));
    assert_int_equal(ran, 1);
    hp_value_t v;
    assert_int_equal(hp_task_result(all, &v), 0);
    assert_int_equal(v.i, 3);

    unref_all(in, 3);
    hp_task_unref(all);
    assert_all_freed();
}

/* Faulted inputs: which one wins and when. Codes 0 complete, < 0 fault. */
static const struct {
    int codes[4];
    int finish_order[4];
    int want_index; /* -1: no fault, the result is 4 */
} when_all_fault_cases[] = {
    {{0, HP_EUPSTREAM_TIMEOUT, 0, HP_EUPSTREAM_RESET}, {3, 1, 0, 2}, 1},
    {{HP_EUPSTREAM_RESET, 0, 0, HP_ESHUTDOWN}, {3, 2, 1, 0}, 0},
    {{0, 0, 0, HP_EUPSTREAM_PROTOCOL}, {3, 0, 1, 2}, 3},
    {{0, 0, 0, 0}, {1, 3, 0, 2}, -1},
};

static void when_all_fault_lowest_index_wins_after_all_finished(void **state)
{
    static const char *const msgs[4] = {"input 0", "input 1", "input 2", "input 3"};
    for (size_t c = 0; c < sizeof(when_all_fault_cases) / sizeof(when_all_fault_cases[0]); c++) {
        hp_task_t *in[4];
        new_pending(in, 4);
        hp_task_t *all = hp_task_when_all(in, 4);
        for (int k = 0; k < 4; k++) {
            /* Even an early fault leaves the output pending until the end. */
            assert_false(hp_task_is_completed(all));
            int i = when_all_fault_cases[c].finish_order[k];
            int code = when_all_fault_cases[c].codes[i];
            if (code)
                hp_task_fail(in[i], code, msgs[i]);
            else
                hp_task_complete(in[i], hp_value_int(100 + i));
        }
        assert_true(hp_task_is_completed(all));
        hp_value_t v = {.i = 0};
        int want = when_all_fault_cases[c].want_index;
        if (want < 0) {
            assert_false(hp_task_is_faulted(all));
            assert_int_equal(hp_task_result(all, &v), 0);
            assert_int_equal(v.i, 4);
        } else {
            assert_true(hp_task_is_faulted(all));
            assert_int_equal(hp_task_result(all, &v), when_all_fault_cases[c].codes[want]);
            assert_string_equal(hp_task_error_message(all), msgs[want]);
        }
        unref_all(in, 4);
        hp_task_unref(all);
    }
    assert_all_freed();
}

static void when_all_of_completed_inputs_completes_at_once(void **state)
{
    hp_task_t *in[3] = {hp_task_from_result(hp_value_int(100)),
                        hp_task_from_result(hp_value_int(1)), hp_task_new()};
    hp_task_complete(in[2], hp_value_int(200));
    hp_task_t *all = hp_task_when_all(in, 3);
    assert_true(hp_task_is_completed(all));
    hp_value_t v;
    assert_int_equal(hp_task_result(all, &v), 0);
    assert_int_equal(v.i, 3);

    hp_task_t *bad[2] = {hp_task_from_error(HP_EUPSTREAM_RESET, NULL),
                         hp_task_from_result(hp_value_int(2))};
    hp_task_t *all_bad = hp_task_when_all(bad, 2);
    assert_true(hp_task_is_faulted(all_bad));
    assert_int_equal(hp_task_result(all_bad, &v), HP_EUPSTREAM_RESET);

    unref_all(in, 3);
    unref_all(bad, 2);
    hp_task_unref(all);
    hp_task_unref(all_bad);
    assert_all_freed();
}

static void when_all_of_nothing_is_completed_without_allocating(void **state)
{
    hp_task_t *all = hp_task_when_all(NULL, 0);
    assert_true(hp_task_is_completed(all));
    hp_value_t v = {.i = 99};
    assert_int_equal(hp_task_result(all, &v), 0);
    assert_int_equal(v.i, 0);
    assert_int_equal(hp_test_allocs(), 0);
    hp_task_unref(all);
}

static void when_any_completes_with_first_index(void **state)
{
    hp_task_t *in[3];
    new_pending(in, 3);
    hp_task_t *any = hp_task_when_any(in, 3);
    int ran = 0;
    hp_task_await(any, count_cb, &ran);
    assert_false(hp_task_is_completed(any));

    hp_task_complete(in[2], hp_value_int(20));
    assert_int_equal(ran, 1);
    hp_value_t v;
    assert_int_equal(hp_task_result(any, &v), 0);
    assert_int_equal(v.i, 2);

    /* Later inputs change nothing, and the state block goes with the last. */
    hp_task_complete(in[0], hp_value_int(10));
    hp_task_fail(in[1], HP_EUPSTREAM_RESET, NULL);
    assert_int_equal(ran, 1);
    assert_int_equal(hp_task_result(any, &v), 0);
    assert_int_equal(v.i, 2);

    unref_all(in, 3);
    hp_task_unref(any);
    assert_all_freed();
}

static void when_any_of_faulted_input_completes_with_its_index(void **state)
{
    hp_task_t *in[2];
    new_pending(in, 2);
    hp_task_t *any = hp_task_when_any(in, 2);
    hp_task_fail(in[1], HP_EUPSTREAM_CONNECT, NULL);
    assert_true(hp_task_is_completed(any));
    assert_false(hp_task_is_faulted(any));
    hp_value_t v;
    assert_int_equal(hp_task_result(any, &v), 0);
    assert_int_equal(v.i, 1);
    hp_task_complete(in[0], hp_value_int(10));
    unref_all(in, 2);
    hp_task_unref(any);
    assert_all_freed();
}

static void when_any_of_completed_input_completes_at_once(void **state)
{
    hp_task_t *in[3] = {hp_task_new(), hp_task_from_result(hp_value_int(5)), hp_task_new()};
    hp_task_complete(in[2], hp_value_int(500));
    hp_task_t *any = hp_task_when_any(in, 3);
    assert_true(hp_task_is_completed(any));
    hp_value_t v;
    assert_int_equal(hp_task_result(any, &v), 0);
    assert_int_equal(v.i, 1); /* the first completed one, by index */
    hp_task_complete(in[0], hp_value_int(10));
    unref_all(in, 3);
    hp_task_unref(any);
    assert_all_freed();
}

static void when_any_of_nothing_is_refused(void **state)
{
    hp_task_t *any = hp_task_when_any(NULL, 0);
    assert_true(hp_task_is_faulted(any));
    hp_value_t v;
    assert_int_equal(hp_task_result(any, &v), UV_EINVAL);
    hp_task_unref(any);
    assert_all_freed();
}

static void when_all_of_when_any_composes(void **state)
{
    hp_task_t *in[4];
    new_pending(in, 4);
    hp_task_t *any[2] = {hp_task_when_any(in, 2), hp_task_when_any(in + 2, 2)};
    hp_task_t *all = hp_task_when_all(any, 2);

    hp_task_complete(in[1], hp_value_int(11));
    assert_false(hp_task_is_completed(all));
    hp_task_complete(in[2], hp_value_int(12));
    assert_true(hp_task_is_completed(all));
    hp_value_t v;
    assert_int_equal(hp_task_result(all, &v), 0);
    assert_int_equal(v.i, 2);
    assert_int_equal(hp_task_result(any[0], &v), 0);
    assert_int_equal(v.i, 1);
    assert_int_equal(hp_task_result(any[1], &v), 0);
    assert_int_equal(v.i, 0);

    hp_task_complete(in[0], hp_value_int(10));
    hp_task_complete(in[3], hp_value_int(13));
    unref_all(in, 4);
    unref_all(any, 2);
    hp_task_unref(all);
    assert_all_freed();
}

static void when_any_of_when_all_composes(void **state)
{
    hp_task_t *in[4];
    new_pending(in, 4);
    hp_task_t *all[2] = {hp_task_when_all(in, 2), hp_task_when_all(in + 2, 2)};
    hp_task_t *any = hp_task_when_any(all, 2);

    hp_task_complete(in[0], hp_value_int(10));
    hp_task_complete(in[3], hp_value_int(13));
    assert_false(hp_task_is_completed(any));
    hp_task_complete(in[2], hp_value_int(12));
    hp_value_t v;
    assert_int_equal(hp_task_result(any, &v), 0);
    assert_int_equal(v.i, 1);
    hp_task_complete(in[1], hp_value_int(11));
    assert_int_equal(hp_task_result(all[0], &v), 0);
    assert_int_equal(v.i, 2);

    unref_all(in, 4);
    unref_all(all, 2);
    hp_task_unref(any);
    assert_all_freed();
}

static void nested_when_all_propagates_fault(void **state)
{
    hp_task_t *in[3];
    new_pending(in, 3);
    hp_task_t *inner = hp_task_when_all(in, 2);
    hp_task_t *outer_in[2] = {inner, in[2]};
    hp_task_t *outer = hp_task_when_all(outer_in, 2);
    hp_task_fail(in[1], HP_EUPSTREAM_TOO_BIG, "too big");
    hp_task_complete(in[2], hp_value_int(12));
    hp_task_complete(in[0], hp_value_int(10));
    hp_value_t v;
    assert_int_equal(hp_task_result(outer, &v), HP_EUPSTREAM_TOO_BIG);
    assert_string_equal(hp_task_error_message(outer), "too big");
    unref_all(in, 3);
    hp_task_unref(inner);
    hp_task_unref(outer);
    assert_all_freed();
}

/* The caller may drop the combinator's task at once: the combinator keeps
 * what it needs until its inputs finish, and frees it then. */
static void when_output_dropped_early_is_freed_with_the_inputs(void **state)
{
    hp_task_t *in[2];
    new_pending(in, 2);
    hp_task_unref(hp_task_when_all(in, 2));
    hp_task_unref(hp_task_when_any(in, 2));
    assert_int_equal(hp_test_frees(), 0);
    hp_task_complete(in[0], hp_value_int(10));
    hp_task_fail(in[1], HP_EUPSTREAM_RESET, NULL);
    unref_all(in, 2);
    /* Each input got two waiters, so each grew a waiter array: 2 extra. */
    assert_int_equal(hp_test_allocs(), 2 + 2 * 2 + 2);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, hp_test_counters_setup, hp_test_counters_teardown)

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        T(continuations_run_once_in_registration_order),
        T(result_is_cached_for_every_reader),
        T(await_on_completed_task_runs_before_returning),
        T(waiter_count_counts_every_registration),
        T(await_during_completion_runs_at_once),
        T(second_completion_changes_nothing),
        T(fault_carries_code_and_message),
        T(fault_propagates_through_vtask),
        T(dispose_runs_once_at_last_ref_for_success_only),
        T(continuation_dropping_last_ref_is_safe),
        T(from_result_small_values_come_from_the_cache),
        T(from_result_other_values_allocate_once),
        T(when_all_completes_after_every_input),
        T(when_all_fault_lowest_index_wins_after_all_finished),
        T(when_all_of_completed_inputs_completes_at_once),
        T(when_all_of_nothing_is_completed_without_allocating),
        T(when_any_completes_with_first_index),
        T(when_any_of_faulted_input_completes_with_its_index),
        T(when_any_of_completed_input_completes_at_once),
        T(when_any_of_nothing_is_refused),
        T(when_all_of_when_any_composes),
        T(when_any_of_when_all_composes),
        T(nested_when_all_propagates_fault),
        T(when_output_dropped_early_is_freed_with_the_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
