/*
 * test_vtask.c - unit tests for runtime/vtask.c, hotpath's ValueTask<T>.
 *
 * The three forms (inline, task-backed, source-backed) each deliver results
 * and faults; the inline form and the pooled source never allocate; the mode
 * switch allocates exactly what Task<T> would; AsTask allocates only when it
 * must. The misuse rules are the other half: a second read, a second
 * continuation, a copy of a source-backed vtask read twice, a token from
 * before a reset — each is refused with HP_EVTASK_CONSUMED or
 * HP_EVTASK_STALE, runs no callback, and is counted exactly once.
 *
 * Every test runs with freshly bound allocator and runtime counters, so the
 * figures asserted are the test's own.
 */
#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "runtime/task.h"
#include "runtime/vtask.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/support/counters.h"
#include <uv.h>

static hp_vtsource_t src; /* the pooled source, as a request context embeds it */

static int fresh_counters(void **state)
{
    hp_test_counters_setup(state);
    hp_vtsource_init(&src);
    return 0;
}

static void assert_misuse(uint64_t consumed, uint64_t stale)
{
    assert_int_equal(hp_runtime_thread_stats()->misuse_consumed, consumed);
    assert_int_equal(hp_runtime_thread_stats()->misuse_stale, stale);
}

static void count_cb(void *arg)
{
    (*(int *)arg)++;
}

/* A continuation that does what the contract asks: read the vtask it was
 * registered through. */
typedef struct {
    hp_vtask_t vt;
    int ran;
    int rc;
    hp_value_t value;
    const char *msg;
} reader_t;

static void read_cb(void *arg)
{
    reader_t *r = arg;
    r->ran++;
    r->rc = hp_vtask_result(&r->vt, &r->value, &r->msg);
}

/* --- the three forms, completed ------------------------------------------ */

typedef enum { K_INLINE, K_TASK, K_SOURCE } kind_t;

static const char *const kind_names[] = {"inline", "task", "source"};

/* A completed vtask of each form, with v as its result. */
static hp_vtask_t completed_vtask(kind_t k, int64_t v)
{
    switch (k) {
    case K_INLINE: return hp_vtask_from_result(hp_value_int(v));
    case K_TASK: {
        hp_task_t *t = hp_task_new();
        hp_task_complete(t, hp_value_int(v));
        return hp_vtask_from_task(t);
    }
    default: {
        hp_vtask_t vt = hp_vtsource_vtask(&src);
        hp_vtsource_complete(&src, hp_value_int(v));
        return vt;
    }
    }
}

static void inline_result_makes_no_allocation(void **state)
{
    int payload;
    hp_vtask_t vt = hp_vtask_from_result(hp_value_ptr(&payload));
    assert_true(hp_vtask_is_completed(&vt));
    reader_t r = {.vt = vt};
    assert_int_equal(hp_vtask_on_completed(&r.vt, read_cb, &r), 0);
    assert_int_equal(r.ran, 1); /* at once, before returning */
    assert_int_equal(r.rc, 0);
    assert_ptr_equal(r.value.ptr, &payload);
    assert_int_equal(hp_test_allocs(), 0);
    assert_int_equal(hp_test_rt.valuetasks_inline, 1);
    assert_misuse(0, 0);
}

static void completed_mode_valuetask_never_allocates(void **state)
{
    int payload;
    const hp_value_t values[] = {hp_value_int(0), hp_value_int(8), hp_value_int(9),
                                 hp_value_int(-1000), hp_value_ptr(&payload)};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        hp_vtask_t vt = hp_vtask_completed(HP_MODE_VALUETASK, values[i]);
        hp_value_t v;
        assert_int_equal(hp_vtask_result(&vt, &v, NULL), 0);
        assert_int_equal(v.i, values[i].i);
    }
    assert_int_equal(hp_test_allocs(), 0);
    assert_int_equal(hp_test_rt.valuetasks_inline, 5);
    assert_int_equal(hp_test_rt.valuetasks_task, 0);
}

static const struct {
    hp_value_t value;
    uint64_t want_allocs; /* Task.FromResult: singleton or one heap task */
} task_mode_cases[] = {
    {{.i = 0}, 0}, {{.ptr = NULL}, 0}, {{.i = -1}, 0},
    {{.i = 8}, 0}, {{.i = 9}, 1},      {{.ptr = (void *)task_mode_cases}, 1},
};

static void completed_mode_task_allocates_like_task_from_result(void **state)
{
    for (size_t i = 0; i < sizeof(task_mode_cases) / sizeof(task_mode_cases[0]); i++) {
        uint64_t a0 = hp_test_allocs();
        hp_vtask_t vt = hp_vtask_completed(HP_MODE_TASK, task_mode_cases[i].value);
        assert_int_equal(hp_test_allocs() - a0, task_mode_cases[i].want_allocs);
        assert_int_equal(vt.kind, HP_VT_TASK);
        hp_value_t v;
        assert_int_equal(hp_vtask_result(&vt, &v, NULL), 0);
        assert_int_equal(v.i, task_mode_cases[i].value.i);
    }
    assert_int_equal(hp_test_rt.valuetasks_task, 6);
    assert_int_equal(hp_test_rt.valuetasks_inline, 0);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

static void failed_vtask_carries_code_and_message(void **state)
{
    hp_vtask_t vt = hp_vtask_failed(HP_EUPSTREAM_TIMEOUT, "slow upstream");
    assert_int_equal(hp_test_allocs(), 1); /* a fault travels only through a task */
    assert_true(hp_vtask_is_completed(&vt));
    hp_value_t v;
    const char *msg = NULL;
    assert_int_equal(hp_vtask_result(&vt, &v, &msg), HP_EUPSTREAM_TIMEOUT);
    assert_string_equal(msg, "slow upstream");

    vt = hp_vtask_failed(HP_EUPSTREAM_RESET, NULL);
    assert_int_equal(hp_vtask_result(&vt, &v, NULL),
                     HP_EUPSTREAM_RESET); /* msg out-param optional */
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

/* --- task-backed --------------------------------------------------------- */

static void task_backed_pending_completes_through_continuation(void **state)
{
    hp_task_t *t = hp_task_new();
    reader_t r = {.vt = hp_vtask_from_task(t)};
    assert_false(hp_vtask_is_completed(&r.vt));
    assert_int_equal(hp_vtask_on_completed(&r.vt, read_cb, &r), 0);
    assert_int_equal(r.ran, 0);
    int payload;
    hp_task_complete(t, hp_value_ptr(&payload));
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, 0);
    assert_ptr_equal(r.value.ptr, &payload);
    /* The vtask held the only reference; reading it released the task. */
    assert_int_equal(hp_test_frees(), 1);
    assert_int_equal(hp_test_rt.valuetasks_task, 1);
}

static void task_backed_fault_reaches_continuation(void **state)
{
    hp_task_t *t = hp_task_new();
    reader_t r = {.vt = hp_vtask_from_task(t)};
    hp_vtask_on_completed(&r.vt, read_cb, &r);
    hp_task_fail(t, HP_EUPSTREAM_RESET, NULL);
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, HP_EUPSTREAM_RESET);
    assert_string_equal(r.msg, hp_strerror(HP_EUPSTREAM_RESET));
    assert_int_equal(hp_test_frees(), 1);
}

/* --- source-backed ------------------------------------------------------- */

static void source_completed_before_await_runs_at_once(void **state)
{
    reader_t r = {.vt = hp_vtsource_vtask(&src)};
    assert_false(hp_vtask_is_completed(&r.vt));
    assert_int_equal(hp_vtsource_complete(&src, hp_value_int(123)), 0);
    assert_true(hp_vtask_is_completed(&r.vt));
    assert_int_equal(hp_vtask_on_completed(&r.vt, read_cb, &r), 0);
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value.i, 123);
    assert_int_equal(hp_test_allocs(), 0);
    assert_int_equal(hp_test_rt.valuetasks_source, 1);
}

static void source_completed_after_await_runs_continuation_once(void **state)
{
    reader_t r = {.vt = hp_vtsource_vtask(&src)};
    assert_int_equal(hp_vtask_on_completed(&r.vt, read_cb, &r), 0);
    assert_int_equal(r.ran, 0);
    assert_int_equal(hp_vtsource_complete(&src, hp_value_int(456)), 0);
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value.i, 456);
    /* Once per version. */
    assert_int_equal(hp_vtsource_complete(&src, hp_value_int(457)), UV_EALREADY);
    assert_int_equal(hp_vtsource_fail(&src, HP_EUPSTREAM_RESET, NULL), UV_EALREADY);
    assert_int_equal(r.ran, 1);
    assert_int_equal(hp_test_allocs(), 0);
}

static void source_fault_carries_code_and_message(void **state)
{
    reader_t r = {.vt = hp_vtsource_vtask(&src)};
    hp_vtask_on_completed(&r.vt, read_cb, &r);
    assert_int_equal(hp_vtsource_fail(&src, HP_EUPSTREAM_PROTOCOL, "garbage from upstream"), 0);
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, HP_EUPSTREAM_PROTOCOL);
    assert_string_equal(r.msg, "garbage from upstream");

    /* Next use: no message given means the code's message. */
    hp_vtsource_reset(&src);
    hp_vtask_t vt = hp_vtsource_vtask(&src);
    hp_vtsource_fail(&src, HP_EUPSTREAM_CONNECT, NULL);
    hp_value_t v;
    const char *msg = NULL;
    assert_int_equal(hp_vtask_result(&vt, &v, &msg), HP_EUPSTREAM_CONNECT);
    assert_string_equal(msg, "upstream connect failed");
    assert_int_equal(hp_test_allocs(), 0);
}

/* A pooled source reused for many requests: one cycle per request, and not
 * a single allocation in any of them. */
static void source_reuse_cycle_makes_no_allocation(void **state)
{
    for (int i = 0; i < 100; i++) {
        hp_vtsource_reset(&src);
        reader_t r = {.vt = hp_vtsource_vtask(&src)};
        hp_vtask_on_completed(&r.vt, read_cb, &r);
        hp_vtsource_complete(&src, hp_value_int(i));
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.value.i, i);
    }
    assert_int_equal(hp_test_allocs(), 0);
    assert_int_equal(hp_test_rt.valuetasks_source, 100);
    assert_misuse(0, 0);
}

static void reset_bumps_version_and_old_token_goes_stale(void **state)
{
    hp_vtask_t old = hp_vtsource_vtask(&src);
    hp_vtsource_complete(&src, hp_value_int(1));
    hp_vtsource_reset(&src);
    hp_vtask_t cur = hp_vtsource_vtask(&src);
    assert_int_equal(cur.token, old.token + 1);

    hp_vtsource_complete(&src, hp_value_int(2));
    /* Nothing to wait for: reading it says why (the new version's result is
     * not its). */
    assert_true(hp_vtask_is_completed(&old));
    hp_value_t v = {.i = -7};
    assert_int_equal(hp_vtask_result(&old, &v, NULL), HP_EVTASK_STALE);
    assert_int_equal(v.i, -7);
    assert_misuse(0, 1);

    /* The current token still reads the current result. */
    assert_int_equal(hp_vtask_result(&cur, &v, NULL), 0);
    assert_int_equal(v.i, 2);
    assert_misuse(0, 1);
}

static void stale_token_on_completed_is_refused_without_running(void **state)
{
    hp_vtask_t old = hp_vtsource_vtask(&src);
    hp_vtsource_reset(&src);
    int ran = 0;
    assert_int_equal(hp_vtask_on_completed(&old, count_cb, &ran), HP_EVTASK_STALE);
    assert_misuse(0, 1);
    /* Nor later, when the current version completes. */
    hp_vtsource_complete(&src, hp_value_int(3));
    assert_int_equal(ran, 0);
    assert_misuse(0, 1);
}

/* --- misuse -------------------------------------------------------------- */

static void second_read_of_one_variable_is_consumed(void **state)
{
    for (kind_t k = K_INLINE; k <= K_SOURCE; k++) {
        hp_vtask_t vt = completed_vtask(k, 100 + k);
        hp_value_t v = {.i = 0};
        assert_int_equal(hp_vtask_result(&vt, &v, NULL), 0);
        assert_int_equal(v.i, 100 + k);
        v.i = -1;
        int rc = hp_vtask_result(&vt, &v, NULL);
        if (rc != HP_EVTASK_CONSUMED) fail_msg("%s: second read gave %d", kind_names[k], rc);
        assert_int_equal(v.i, -1);
        assert_true(hp_vtask_is_completed(&vt)); /* unusable: never waited for */
        assert_misuse(k + 1, 0);
    }
    assert_int_equal(hp_test_frees(), hp_test_allocs()); /* the task form freed its task once */
}

static void copy_of_source_vtask_read_twice_is_consumed(void **state)
{
    hp_vtask_t a = hp_vtsource_vtask(&src);
    hp_vtask_t b = a, c = a;
    hp_vtsource_complete(&src, hp_value_int(42));
    hp_value_t v;
    assert_int_equal(hp_vtask_result(&a, &v, NULL), 0);
    assert_int_equal(v.i, 42);
    assert_true(hp_vtask_is_completed(&b));
    assert_int_equal(hp_vtask_result(&b, &v, NULL), HP_EVTASK_CONSUMED);
    assert_misuse(1, 0);

    /* A third copy that tries to await after the first one read is refused. */
    int ran = 0;
    assert_int_equal(hp_vtask_on_completed(&c, count_cb, &ran), HP_EVTASK_CONSUMED);
    assert_int_equal(ran, 0);
    assert_misuse(2, 0);
}

static void copy_of_source_vtask_awaited_twice_is_consumed(void **state)
{
    reader_t r = {.vt = hp_vtsource_vtask(&src)};
    hp_vtask_t copy = r.vt;
    assert_int_equal(hp_vtask_on_completed(&r.vt, read_cb, &r), 0);
    int ran = 0;
    assert_int_equal(hp_vtask_on_completed(&copy, count_cb, &ran), HP_EVTASK_CONSUMED);
    assert_misuse(1, 0);
    hp_vtsource_complete(&src, hp_value_int(5));
    assert_int_equal(ran, 0);
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, 0);
}

/* Second on_completed through the same variable, for each form, pending or
 * completed: refused, its callback never runs, the first runs once. */
static void second_on_completed_is_consumed_and_does_not_run(void **state)
{
    for (int pending = 0; pending <= 1; pending++) {
        for (kind_t k = K_INLINE; k <= K_SOURCE; k++) {
            if (pending && k == K_INLINE) continue; /* inline is never pending */
            hp_vtsource_reset(&src);
            hp_task_t *t = NULL;
            reader_t r;
            if (!pending) {
                r = (reader_t){.vt = completed_vtask(k, 7)};
            } else if (k == K_TASK) {
                t = hp_task_new();
                r = (reader_t){.vt = hp_vtask_from_task(t)};
            } else {
                r = (reader_t){.vt = hp_vtsource_vtask(&src)};
            }
            uint64_t consumed0 = hp_test_rt.misuse_consumed;
            int second = 0;
            hp_vtask_t *vt = &r.vt;
            /* The first continuation reads only once everything is done, so
             * the second registration meets an awaited, unconsumed vtask. */
            int first = 0;
            assert_int_equal(hp_vtask_on_completed(vt, count_cb, &first), 0);
            assert_int_equal(hp_vtask_on_completed(vt, count_cb, &second), HP_EVTASK_CONSUMED);
            assert_int_equal(hp_test_rt.misuse_consumed, consumed0 + 1);
            if (t) hp_task_complete(t, hp_value_int(7));
            if (pending && k == K_SOURCE) hp_vtsource_complete(&src, hp_value_int(7));
            assert_int_equal(first, 1);
            assert_int_equal(second, 0);
            /* The awaited vtask can still be read, once. */
            hp_value_t v;
            assert_int_equal(hp_vtask_result(vt, &v, NULL), 0);
            assert_int_equal(v.i, 7);
        }
    }
    assert_misuse(5, 0);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

static void on_completed_after_read_is_consumed(void **state)
{
    for (kind_t k = K_INLINE; k <= K_SOURCE; k++) {
        hp_vtsource_reset(&src);
        hp_vtask_t vt = completed_vtask(k, 1);
        hp_value_t v;
        hp_vtask_result(&vt, &v, NULL);
        int ran = 0;
        assert_int_equal(hp_vtask_on_completed(&vt, count_cb, &ran), HP_EVTASK_CONSUMED);
        assert_int_equal(ran, 0);
    }
    assert_misuse(3, 0);
}

static void pending_read_leaves_vtask_unconsumed(void **state)
{
    hp_value_t v = {.i = -3};
    hp_vtask_t s = hp_vtsource_vtask(&src);
    assert_int_equal(hp_vtask_result(&s, &v, NULL), HP_EVTASK_PENDING);
    assert_int_equal(hp_vtask_result(&s, &v, NULL), HP_EVTASK_PENDING);

    hp_task_t *t = hp_task_new();
    hp_vtask_t tv = hp_vtask_from_task(t);
    assert_int_equal(hp_vtask_result(&tv, &v, NULL), HP_EVTASK_PENDING);
    assert_int_equal(v.i, -3);
    assert_misuse(0, 0); /* waiting is not misuse */

    hp_vtsource_complete(&src, hp_value_int(10));
    hp_task_complete(t, hp_value_int(20));
    assert_int_equal(hp_vtask_result(&s, &v, NULL), 0);
    assert_int_equal(v.i, 10);
    assert_int_equal(hp_vtask_result(&tv, &v, NULL), 0);
    assert_int_equal(v.i, 20);
    assert_misuse(0, 0);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

static void misuse_of_never_set_vtask_is_consumed(void **state)
{
    hp_vtask_t none = {.kind = HP_VT_NONE};
    hp_value_t v;
    int ran = 0;
    assert_true(hp_vtask_is_completed(&none));
    assert_int_equal(hp_vtask_result(&none, &v, NULL), HP_EVTASK_CONSUMED);
    assert_int_equal(hp_vtask_on_completed(&none, count_cb, &ran), HP_EVTASK_CONSUMED);
    assert_int_equal(ran, 0);
    assert_misuse(2, 0);
}

/* --- AsTask -------------------------------------------------------------- */

static void as_task_of_task_backed_hands_the_task_over(void **state)
{
    hp_task_t *t = hp_task_new();
    hp_vtask_t vt = hp_vtask_from_task(t);
    uint64_t a0 = hp_test_allocs();
    hp_task_t *got = hp_vtask_as_task(&vt);
    assert_ptr_equal(got, t);
    assert_int_equal(hp_test_allocs() - a0, 0);
    hp_value_t v;
    assert_int_equal(hp_vtask_result(&vt, &v, NULL), HP_EVTASK_CONSUMED);
    hp_task_complete(got, hp_value_int(10));
    hp_task_unref(got);
    assert_int_equal(hp_test_rt.as_task_calls, 1);
    assert_int_equal(hp_test_rt.as_task_allocations, 0);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

static const struct {
    hp_value_t value;
    uint64_t want_allocs;
} as_task_inline_cases[] = {
    {{.ptr = (void *)as_task_inline_cases}, 1},
    {{.i = 1000}, 1},
    {{.i = 3}, 0}, /* the singleton */
    {{.ptr = NULL}, 0},
};

static void as_task_of_inline_allocates_only_outside_the_cache(void **state)
{
    const size_t n = sizeof(as_task_inline_cases) / sizeof(as_task_inline_cases[0]);
    uint64_t want_task_allocs = 0;
    for (size_t i = 0; i < n; i++) {
        hp_vtask_t vt = hp_vtask_from_result(as_task_inline_cases[i].value);
        uint64_t a0 = hp_test_allocs();
        hp_task_t *t = hp_vtask_as_task(&vt);
        assert_int_equal(hp_test_allocs() - a0, as_task_inline_cases[i].want_allocs);
        want_task_allocs += as_task_inline_cases[i].want_allocs;
        hp_value_t v;
        assert_int_equal(hp_task_result(t, &v), 0);
        assert_int_equal(v.i, as_task_inline_cases[i].value.i);
        assert_int_equal(hp_vtask_result(&vt, &v, NULL), HP_EVTASK_CONSUMED);
        hp_task_unref(t);
    }
    assert_int_equal(hp_test_rt.as_task_calls, n);
    assert_int_equal(hp_test_rt.as_task_allocations, want_task_allocs);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

static void as_task_of_pending_source_completes_with_the_source(void **state)
{
    hp_vtask_t vt = hp_vtsource_vtask(&src);
    hp_task_t *t = hp_vtask_as_task(&vt);
    /* The bridge block and the task: allocating here is the point of AsTask
     * on a pending source, and the counters must say so. */
    assert_int_equal(hp_test_allocs(), 2);
    assert_int_equal(hp_test_rt.as_task_calls, 1);
    assert_int_equal(hp_test_rt.as_task_allocations, 2);
    assert_false(hp_task_is_completed(t));
    hp_value_t v;
    assert_int_equal(hp_vtask_result(&vt, &v, NULL), HP_EVTASK_CONSUMED); /* handed over */

    int ran = 0;
    hp_task_await(t, count_cb, &ran);
    hp_vtsource_complete(&src, hp_value_int(777));
    assert_int_equal(ran, 1);
    assert_int_equal(hp_task_result(t, &v), 0);
    assert_int_equal(v.i, 777);
    hp_task_unref(t);
    assert_int_equal(hp_test_frees(), 2);
}

static void as_task_of_pending_source_faults_with_the_source(void **state)
{
    hp_vtask_t vt = hp_vtsource_vtask(&src);
    hp_task_t *t = hp_vtask_as_task(&vt);
    hp_vtsource_fail(&src, HP_EUPSTREAM_TIMEOUT, "gave up");
    assert_true(hp_task_is_faulted(t));
    hp_value_t v;
    assert_int_equal(hp_task_result(t, &v), HP_EUPSTREAM_TIMEOUT);
    assert_string_equal(hp_task_error_message(t), "gave up");
    hp_task_unref(t);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

static void as_task_of_completed_source_reads_it_now(void **state)
{
    hp_vtask_t vt = hp_vtsource_vtask(&src);
    hp_vtsource_complete(&src, hp_value_int(4));
    hp_task_t *t = hp_vtask_as_task(&vt);
    hp_value_t v;
    assert_int_equal(hp_task_result(t, &v), 0);
    assert_int_equal(v.i, 4);
    assert_int_equal(hp_test_allocs(), 0); /* 4 is a cached completed task */
    assert_int_equal(hp_test_rt.as_task_allocations, 0);
    hp_task_unref(t);
}

/* A consumed, stale or already awaited vtask converts to a faulted task
 * carrying the refusal, counted as misuse like any other. */
static void as_task_of_misused_vtask_is_faulted_with_the_refusal(void **state)
{
    hp_value_t v;
    hp_vtask_t consumed = hp_vtask_from_result(hp_value_int(1));
    hp_vtask_result(&consumed, &v, NULL);
    hp_task_t *t = hp_vtask_as_task(&consumed);
    assert_int_equal(hp_task_result(t, &v), HP_EVTASK_CONSUMED);
    hp_task_unref(t);
    assert_misuse(1, 0);

    hp_vtask_t stale = hp_vtsource_vtask(&src);
    hp_vtsource_reset(&src);
    t = hp_vtask_as_task(&stale);
    assert_int_equal(hp_task_result(t, &v), HP_EVTASK_STALE);
    hp_task_unref(t);
    assert_misuse(1, 1);

    /* Awaited and still pending: converting would be a second await. The
     * registered continuation must still get the result afterwards. */
    reader_t r = {.vt = hp_vtsource_vtask(&src)};
    hp_vtask_on_completed(&r.vt, read_cb, &r);
    t = hp_vtask_as_task(&r.vt);
    assert_int_equal(hp_task_result(t, &v), HP_EVTASK_CONSUMED);
    hp_task_unref(t);
    assert_misuse(2, 1);
    hp_vtsource_complete(&src, hp_value_int(88));
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value.i, 88);

    /* The same through another copy of the source-backed vtask. */
    hp_vtsource_reset(&src);
    r = (reader_t){.vt = hp_vtsource_vtask(&src)};
    hp_vtask_t copy = r.vt;
    hp_vtask_on_completed(&r.vt, read_cb, &r);
    t = hp_vtask_as_task(&copy);
    assert_int_equal(hp_task_result(t, &v), HP_EVTASK_CONSUMED);
    hp_task_unref(t);
    assert_misuse(3, 1);
    hp_vtsource_complete(&src, hp_value_int(89));
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value.i, 89);

    assert_int_equal(hp_test_rt.as_task_calls, 4);
    assert_int_equal(hp_test_rt.as_task_allocations, 4); /* each fault is a heap task */
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

/* --- copies of a task-backed valuetask ----------------------------------- */

/* Copies share the one task reference; the first read releases it. A copy
 * read afterwards used to read the freed task: now its slot says it is
 * consumed, whatever the copy does, and nothing touches the task. */
static void copy_of_task_vtask_read_after_the_original_is_refused(void **state)
{
    hp_task_t *t = hp_task_new();
    hp_vtask_t a = hp_vtask_from_task(t);
    hp_vtask_t b = a, c = a, d = a, e = a;
    hp_task_complete(t, hp_value_int(1234));
    hp_value_t v;
    assert_int_equal(hp_vtask_result(&a, &v, NULL), 0); /* frees the task */
    assert_int_equal(v.i, 1234);
    assert_int_equal(hp_test_frees(), hp_test_allocs());

    assert_true(hp_vtask_is_completed(&b)); /* not a wait: reading says why */
    v.i = -1;
    assert_int_equal(hp_vtask_result(&b, &v, NULL), HP_EVTASK_CONSUMED);
    assert_int_equal(v.i, -1);
    assert_misuse(1, 0);
    int ran = 0;
    assert_int_equal(hp_vtask_on_completed(&c, count_cb, &ran), HP_EVTASK_CONSUMED);
    assert_int_equal(ran, 0);
    assert_misuse(2, 0);
    hp_task_t *conv = hp_vtask_as_task(&d);
    assert_int_equal(hp_task_result(conv, &v), HP_EVTASK_CONSUMED);
    hp_task_unref(conv);
    assert_misuse(3, 0);

    /* A new task-backed vtask reuses the slot: the old copies stay refused
     * (the slot's version moved on), the new one reads its own task. */
    hp_vtask_t fresh = hp_vtask_from_task(hp_task_from_result(hp_value_int(99999)));
    assert_int_equal(fresh.slot, e.slot);
    assert_int_equal(hp_vtask_result(&e, &v, NULL), HP_EVTASK_CONSUMED);
    assert_int_equal(hp_vtask_result(&fresh, &v, NULL), 0);
    assert_int_equal(v.i, 99999);
    assert_misuse(4, 0);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

/* Two copies awaiting one task: the second await is refused (the first
 * continuation is the one that reads); and a copy dropped while another
 * waits releases the task once. */
static void copies_of_task_vtask_awaited_or_dropped(void **state)
{
    hp_task_t *t = hp_task_new();
    reader_t r = {.vt = hp_vtask_from_task(t)};
    hp_vtask_t copy = r.vt;
    assert_int_equal(hp_vtask_on_completed(&r.vt, read_cb, &r), 0);
    int ran = 0;
    assert_int_equal(hp_vtask_on_completed(&copy, count_cb, &ran), HP_EVTASK_CONSUMED);
    assert_misuse(1, 0);
    hp_task_complete(t, hp_value_int(7));
    assert_int_equal(r.ran, 1);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.value.i, 7);
    assert_int_equal(ran, 0);
    assert_int_equal(hp_test_frees(), hp_test_allocs());

    /* Dropped: the task goes, and a copy read later is refused. */
    hp_vtask_t a = hp_vtask_from_task(hp_task_new());
    hp_vtask_t b = a;
    hp_vtask_drop(&a);
    assert_int_equal(hp_test_frees(), hp_test_allocs());
    hp_value_t v;
    assert_int_equal(hp_vtask_result(&b, &v, NULL), HP_EVTASK_CONSUMED);
    assert_misuse(2, 0);
}

/* More task-backed vtasks alive at once than the built-in slots: the table
 * grows (counted allocations), and every one still reads right. */
static void slot_table_grows_past_its_first_chunk(void **state)
{
    enum { N = 10000 };
    hp_vtask_t *vts = malloc(N * sizeof(*vts));
    for (int i = 0; i < N; i++)
        vts[i] = hp_vtask_from_task(hp_task_from_result(hp_value_int(1000 + i)));
    for (int i = N - 1; i >= 0; i--) {
        hp_value_t v;
        assert_int_equal(hp_vtask_result(&vts[i], &v, NULL), 0);
        assert_int_equal(v.i, 1000 + i);
    }
    free(vts);
    assert_misuse(0, 0);
    /* N tasks and the chunks beyond the first (4096 slots each). */
    assert_int_equal(hp_test_allocs(), N + 2);
    hp_vtask_thread_exit();
    assert_int_equal(hp_test_frees(), hp_test_allocs());
}

static void mode_names(void **state)
{
    assert_string_equal(hp_mode_name(HP_MODE_VALUETASK), "valuetask");
    assert_string_equal(hp_mode_name(HP_MODE_TASK), "task");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fresh_counters, hp_test_counters_teardown)

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        T(inline_result_makes_no_allocation),
        T(completed_mode_valuetask_never_allocates),
        T(completed_mode_task_allocates_like_task_from_result),
        T(failed_vtask_carries_code_and_message),
        T(task_backed_pending_completes_through_continuation),
        T(task_backed_fault_reaches_continuation),
        T(source_completed_before_await_runs_at_once),
        T(source_completed_after_await_runs_continuation_once),
        T(source_fault_carries_code_and_message),
        T(source_reuse_cycle_makes_no_allocation),
        T(reset_bumps_version_and_old_token_goes_stale),
        T(stale_token_on_completed_is_refused_without_running),
        T(second_read_of_one_variable_is_consumed),
        T(copy_of_source_vtask_read_twice_is_consumed),
        T(copy_of_source_vtask_awaited_twice_is_consumed),
        T(second_on_completed_is_consumed_and_does_not_run),
        T(on_completed_after_read_is_consumed),
        T(pending_read_leaves_vtask_unconsumed),
        T(misuse_of_never_set_vtask_is_consumed),
        T(as_task_of_task_backed_hands_the_task_over),
        T(as_task_of_inline_allocates_only_outside_the_cache),
        T(as_task_of_pending_source_completes_with_the_source),
        T(as_task_of_pending_source_faults_with_the_source),
        T(as_task_of_completed_source_reads_it_now),
        T(as_task_of_misused_vtask_is_faulted_with_the_refusal),
        T(copy_of_task_vtask_read_after_the_original_is_refused),
        T(copies_of_task_vtask_awaited_or_dropped),
        T(slot_table_grows_past_its_first_chunk),
        T(mode_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
