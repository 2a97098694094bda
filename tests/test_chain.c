/*
 * test_chain.c - the chain (server/chain.c) and the connection's dispatch
 * (server/conn.c) against layers that break the valuetask rules, through
 * the real parser, chain and handlers of an in-memory worker.
 *
 * A misbehaving middleware is spliced into the worker's generation, either
 * at the top of the chain (the connection awaits what it returns) or below
 * server_headers (whose hp_then awaits it). It returns a valuetask that can
 * never complete for its caller: one whose token is stale, or one already
 * awaited through a copy. The rule under test: every such misuse becomes
 * the request's fault - a 500, counted in the runtime's misuse counters -
 * never a request that waits forever with no timer to end it; and the
 * connection, the context and every allocation come back.
 *
 * And the other way round: a layer that waits asks (hp_ctx_on_abort) to be
 * told when its client goes away - a reset, or a FIN while the request
 * pends (nginx's client abort) - and is told once, only then.
 */
#include "runtime/alloc.h"
#include "server/chain.h"
#include "runtime/counter.h"
#include "runtime/errors.h"
#include "server/worker.h"
#include "tests/support/memserver.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef enum {
    STALE,   /* a valuetask whose source was reused (whose task was released) */
    AWAITED, /* a pending valuetask already awaited through a copy */
} misuse_t;

static void never_runs(void *arg)
{
    fail_msg("a refused continuation ran");
}

static void awaited_elsewhere(void *arg) {}

static hp_vtask_t misbehave(void *self, hp_ctx_t *ctx)
{
    misuse_t how = *(misuse_t *)self;
    hp_layer_t *layer = hp_layer_current(ctx);
    hp_vtask_t vt = hp_layer_pending(layer);
    hp_vtask_t copy = vt;
    if (how == STALE) {
        /* The same value with its backing moved on: a reset source, or a
         * task-backed vtask whose other copy gave the task up. */
        if (ctx->mode == HP_MODE_TASK)
            hp_vtask_drop(&copy);
        else
            hp_vtsource_reset(&layer->source);
        return vt;
    }
    assert_int_equal(hp_vtask_on_completed(&copy, awaited_elsewhere, NULL), 0);
    return vt;
}

static const hp_middleware_t misbehaving = {.name = "misbehaving", .invoke = misbehave};

typedef struct {
    hp_memserver_t m;
    misuse_t how;
} fixture_t;

/* Splice the misbehaving layer in at position at of the chain. */
static void insert_layer(fixture_t *f, unsigned at)
{
    hp_gen_t *g = f->m.w.host.gen;
    assert_true(g->nmw < HP_CHAIN_MAX && at <= g->nmw);
    memmove(&g->mw[at + 1], &g->mw[at], (g->nmw - at) * sizeof(g->mw[0]));
    memset(&g->mw[at], 0, sizeof(g->mw[0]));
    g->mw[at].desc = &misbehaving;
    g->mw[at].self = &f->how;
    g->nmw++;
}

static void remove_layer(fixture_t *f, unsigned at)
{
    hp_gen_t *g = f->m.w.host.gen;
    memmove(&g->mw[at], &g->mw[at + 1], (g->nmw - at - 1) * sizeof(g->mw[0]));
    g->nmw--;
}

static int setup_mode(void **state, const char *json)
{
    fixture_t *f = calloc(1, sizeof(*f));
    hp_memserver_open(&f->m, json);
    *state = f;
    return 0;
}

static int setup_valuetask(void **state)
{
    return setup_mode(state, "{\"mode\": \"valuetask\"}");
}

static int setup_task(void **state)
{
    return setup_mode(state, "{\"mode\": \"task\"}");
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    hp_memserver_close(&f->m);
    free(f);
    return 0;
}

static uint64_t misuses(fixture_t *f)
{
    return hp_counter_get(&f->m.w.host.runtime.misuse_consumed) +
           hp_counter_get(&f->m.w.host.runtime.misuse_stale);
}

/* With the misbehaving layer at position at: a request is answered 500 at
 * once (a hang before), counted; the next request on the same connection,
 * with the layer taken out, is served; nothing leaks. */
static void misuse_is_a_500(fixture_t *f, misuse_t how, unsigned at)
{
    static const char req[] = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    hp_capture_t cap;
    /* Warm the pools first, so the leak check below is exact. */
    hp_memconn_exchange(&f->m, req, sizeof(req) - 1, false, &cap);
    assert_int_equal(hp_capture_status(cap.data), 200);
    free(cap.data);

    f->how = how;
    insert_layer(f, at);
    uint64_t live0 = hp_alloc_stats_live(&f->m.w.host.alloc), misuse0 = misuses(f);
    hp_route_stats_t *rs = &f->m.w.host.metrics.routes[0][f->m.w.host.gen->mode]; /* /plaintext */
    uint64_t requests0 = hp_counter_get(&rs->requests);
    hp_conn_t *c = hp_memconn_new(&f->m, &cap);
    hp_conn_feed(c, req, sizeof(req) - 1);
    uv_run(&f->m.w.loop, UV_RUN_NOWAIT);
    if (hp_capture_status(cap.data) != 500)
        fail_msg("%s at %u in %s mode: expected a 500, got %s", how == STALE ? "stale" : "awaited",
                 at, hp_mode_name(f->m.w.host.gen->mode), cap.data ? cap.data : "(no answer)");
    assert_non_null(strstr(cap.data, "internal error"));
    assert_false(cap.closed);
    assert_int_equal(misuses(f), misuse0 + 1);
    assert_int_equal(hp_counter_get(&rs->requests), requests0 + 1); /* answered, once */

    remove_layer(f, at);
    free(cap.data);
    cap.data = NULL;
    cap.len = 0;
    hp_conn_feed(c, req, sizeof(req) - 1);
    assert_int_equal(hp_capture_status(cap.data), 200);
    hp_conn_close(c);
    uv_run(&f->m.w.loop, UV_RUN_NOWAIT);
    free(cap.data);
    assert_int_equal(hp_alloc_stats_live(&f->m.w.host.alloc), live0);
}

/* conn.c: the connection awaits what the chain's top returns. */
static void stale_valuetask_at_the_top(void **state)
{
    misuse_is_a_500(*state, STALE, 0);
}

static void awaited_valuetask_at_the_top(void **state)
{
    misuse_is_a_500(*state, AWAITED, 0);
}

/* chain.c: hp_then (server_headers, at 0) awaits the layer below it. */
static void stale_valuetask_under_hp_then(void **state)
{
    misuse_is_a_500(*state, STALE, 1);
}

static void awaited_valuetask_under_hp_then(void **state)
{
    misuse_is_a_500(*state, AWAITED, 1);
}

/* hp_layer_await itself: a refused continuation becomes the layer's
 * downstream fault, read by the callback at once. */
static hp_layer_t *seen;
static int seen_rc;

static void read_downstream(void *arg)
{
    seen = arg;
    hp_value_t v;
    seen_rc = hp_vtask_result(&seen->downstream, &v, NULL);
}

static void layer_await_turns_a_refusal_into_a_fault(void **state)
{
    fixture_t *f = *state;
    hp_ctx_t *ctx = hp_ctx_acquire(&f->m.w.host.ctx_pool);
    ctx->mode = f->m.w.host.gen->mode;
    ctx->depth = 0;
    hp_layer_t *layer = hp_layer_current(ctx);
    hp_vtsource_t src;
    hp_vtsource_init(&src);
    hp_vtask_t vt = hp_vtsource_vtask(&src), copy = vt;
    assert_int_equal(hp_vtask_on_completed(&copy, awaited_elsewhere, NULL), 0);
    uint64_t misuse0 = misuses(f);
    seen = NULL;
    assert_int_equal(hp_layer_await(layer, vt, read_downstream), HP_EVTASK_CONSUMED);
    assert_ptr_equal(seen, layer);
    assert_int_equal(seen_rc, HP_EVTASK_CONSUMED);
    assert_int_equal(misuses(f), misuse0 + 1);

    /* Not refused: registered, not run. */
    hp_vtsource_reset(&src);
    seen = NULL;
    assert_int_equal(hp_layer_await(layer, hp_vtsource_vtask(&src), read_downstream), 0);
    assert_null(seen);
    hp_vtsource_complete(&src, hp_value_int(5));
    assert_ptr_equal(seen, layer);
    assert_int_equal(seen_rc, 0);
    hp_ctx_release(&f->m.w.host.ctx_pool, ctx);
    (void)never_runs;
}

/* --- a client that goes away while its request pends -------------------- */

/* A layer that pends until the test completes it, and asks to hear of an
 * abort: its hook completes it with a fault (a cancelled wait). */
static int aborts;
static hp_layer_t *waiting;

static void cancel_wait(hp_ctx_t *ctx, void *arg)
{
    aborts++;
    assert_null(ctx->conn); /* the connection is gone already */
    hp_layer_complete(arg, UV_ECANCELED, "the client went away");
}

static hp_vtask_t wait_for_the_test(void *self, hp_ctx_t *ctx)
{
    /* /json goes through synchronously: an answer that comes before. */
    if (hp_str_eq(ctx->req.path, "/json", 5)) return hp_next(ctx);
    waiting = hp_layer_current(ctx);
    hp_vtask_t vt = hp_layer_pending(waiting);
    hp_ctx_on_abort(ctx, cancel_wait, waiting);
    return vt;
}

static const hp_middleware_t waiter = {.name = "waiter", .invoke = wait_for_the_test};

/* What the test does to end the wait: an answer, then the completion. */
static void answer_the_wait(void)
{
    hp_resp_set(waiting->ctx, 200, "text/plain", HP_STR("waited\n"));
    hp_layer_complete(waiting, 0, NULL);
}

static void insert_waiter(fixture_t *f)
{
    hp_gen_t *g = f->m.w.host.gen;
    memmove(&g->mw[1], &g->mw[0], g->nmw * sizeof(g->mw[0]));
    memset(&g->mw[0], 0, sizeof(g->mw[0]));
    g->mw[0].desc = &waiter;
    g->nmw++;
}

/* A reset while the request pends: the hook runs once, the request ends
 * quietly (no answer, its context back in the pool), counted, and nothing
 * leaks. So does a FIN while it pends: the peer has left (nginx's client
 * abort, 499), and nobody reads the answer. A FIN is no abort for what is
 * answered already: an answer ready for the check phase, or answers queued
 * for a slow reader (they drain first; the pending request is aborted
 * after). A request that completes first never hears of the close that
 * follows. */
static void abort_hook_runs_once_when_the_client_goes(void **state)
{
    fixture_t *f = *state;
    static const char req[] = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char sync_then_req[] = "GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
                                        "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    hp_capture_t cap;
    hp_memconn_exchange(&f->m, req, sizeof(req) - 1, false, &cap); /* warm */
    free(cap.data);
    hp_memconn_exchange(&f->m, sync_then_req, sizeof(sync_then_req) - 1, false, &cap);
    free(cap.data);
    insert_waiter(f);
    uint64_t live0 = hp_alloc_stats_live(&f->m.w.host.alloc);
    uint64_t idle0 = f->m.w.host.ctx_pool.idle;
    uint64_t aborted0 = hp_counter_get(&f->m.w.host.metrics.conns.requests_aborted);
#define ABORTED() (hp_counter_get(&f->m.w.host.metrics.conns.requests_aborted) - aborted0)

    aborts = 0;
    hp_conn_t *c = hp_memconn_new(&f->m, &cap);
    hp_conn_feed(c, req, sizeof(req) - 1);
    assert_int_equal(c->state, HP_CONN_BUSY);
    hp_conn_eof(c, UV_ECONNRESET);
    uv_run(&f->m.w.loop, UV_RUN_NOWAIT);
    assert_int_equal(aborts, 1);
    assert_true(cap.closed);
    assert_null(cap.data);
    assert_int_equal(ABORTED(), 1);
    assert_int_equal(f->m.w.host.ctx_pool.idle, idle0);
    assert_int_equal(hp_alloc_stats_live(&f->m.w.host.alloc), live0);

    /* A FIN while it pends: the same - closed at once, the hook run, the
     * request ended quietly, counted, nothing leaked. */
    c = hp_memconn_new(&f->m, &cap);
    hp_conn_feed(c, req, sizeof(req) - 1);
    assert_int_equal(c->state, HP_CONN_BUSY);
    hp_conn_eof(c, UV_EOF);
    assert_true(cap.closed);
    assert_int_equal(aborts, 2);
    uv_run(&f->m.w.loop, UV_RUN_NOWAIT);
    assert_null(cap.data);
    assert_int_equal(ABORTED(), 2);
    assert_int_equal(f->m.w.host.ctx_pool.idle, idle0);
    assert_int_equal(hp_alloc_stats_live(&f->m.w.host.alloc), live0);

    /* A FIN after the request completed, before the check phase wrote its
     * answer: the answer comes, then the close; no hook. */
    c = hp_memconn_new(&f->m, &cap);
    hp_conn_feed(c, req, sizeof(req) - 1);
    answer_the_wait();
    hp_conn_eof(c, UV_EOF);
    assert_false(cap.closed);
    uv_run(&f->m.w.loop, UV_RUN_NOWAIT); /* the check phase answers */
    assert_int_equal(hp_capture_status(cap.data), 200);
    assert_true(cap.closed);
    assert_int_equal(aborts, 2);
    assert_int_equal(ABORTED(), 2);
    free(cap.data);

    /* A FIN while a request pends behind an answer the peer has not taken
     * yet: that answer is delivered first, then the pending request is
     * aborted and the connection closed. */
    c = hp_memconn_new(&f->m, &cap);
    cap.stalled = true;
    hp_conn_feed(c, sync_then_req, sizeof(sync_then_req) - 1);
    assert_int_equal(c->state, HP_CONN_BUSY);
    assert_true(c->flags & HP_CF_WBLOCK);
    hp_conn_eof(c, UV_EOF);
    assert_false(cap.closed);
    assert_int_equal(aborts, 2);
    cap.stalled = false;
    hp_conn_memory_writable(c);
    assert_true(cap.closed);
    assert_int_equal(aborts, 3);
    assert_int_equal(hp_count(cap.data, "HTTP/1.1 "), 1);
    assert_int_equal(hp_capture_status(cap.data), 200);
    assert_non_null(strstr(cap.data, "Hello, World!")); /* /json's */
    uv_run(&f->m.w.loop, UV_RUN_NOWAIT);
    assert_int_equal(ABORTED(), 3);
    free(cap.data);

    /* Answered, then closed: no call either. */
    c = hp_memconn_new(&f->m, &cap);
    hp_conn_feed(c, req, sizeof(req) - 1);
    answer_the_wait();
    uv_run(&f->m.w.loop, UV_RUN_NOWAIT);
    assert_int_equal(hp_capture_status(cap.data), 200);
    hp_conn_close(c);
    uv_run(&f->m.w.loop, UV_RUN_NOWAIT);
    assert_int_equal(aborts, 3);
    assert_int_equal(ABORTED(), 3);
    free(cap.data);
#undef ABORTED
    remove_layer(f, 0);
    assert_int_equal(f->m.w.host.ctx_pool.idle, idle0);
    assert_int_equal(hp_alloc_stats_live(&f->m.w.host.alloc), live0);
}

#define BOTH(fn)                                                                                   \
    cmocka_unit_test_setup_teardown(fn, setup_valuetask, teardown),                                \
        cmocka_unit_test_setup_teardown(fn, setup_task, teardown)

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        BOTH(stale_valuetask_at_the_top),
        BOTH(awaited_valuetask_at_the_top),
        BOTH(stale_valuetask_under_hp_then),
        BOTH(awaited_valuetask_under_hp_then),
        BOTH(layer_await_turns_a_refusal_into_a_fault),
        BOTH(abort_hook_runs_once_when_the_client_goes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
