/*
 * test_advice.c - the decision advisor: the tree as a pure function (a
 * table of figures -> recommendation), then /advice on a scripted sequence
 * of requests through an in-memory worker whose cache fills are completed
 * by hand, so every per-layer figure is exact: this binary is linked with
 * -Wl,--wrap=hp_upstream_request (cmocka's way to mock a function), so the
 * fill the origin starts is a task the test completes. Last, valuetask misuse made
 * on purpose is refused, counted, and shown in /stats and /metrics.
 */
#include "cache/cache.h"
#include "upstream/client.h"
#include "handlers/advice.h"
#include "runtime/alloc.h"
#include "runtime/buf.h"
#include "runtime/errors.h"
#include "tests/support/memserver.h"

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* --- the tree ---------------------------------------------------------- */

static void tree_table(void **state)
{
    const hp_advice_thresholds_t th = {.hot_rate = 10000, .sync_share = 0.9, .task_bytes = 80};
    static const struct {
        const char *name;
        hp_advice_in_t in;
        hp_advice_rec_t rec;
    } rows[] = {
        {"hot and synchronous", {.calls = 1000, .sync = 1000, .rate = 50000}, HP_ADVICE_VALUETASK},
        {"hot, 90% synchronous", {.calls = 1000, .sync = 900, .rate = 10000}, HP_ADVICE_VALUETASK},
        {"hot, 89.9% synchronous", {.calls = 1000, .sync = 899, .rate = 20000}, HP_ADVICE_TASK},
        {"cold and synchronous", {.calls = 1000, .sync = 1000, .rate = 9999}, HP_ADVICE_EITHER},
        {"always asynchronous", {.calls = 1000, .sync = 0, .rate = 90000}, HP_ADVICE_TASK},
        {"stored by callers",
         {.calls = 1000, .sync = 1000, .rate = 90000, .as_task = 1},
         HP_ADVICE_TASK},
        {"no calls", {.calls = 0, .sync = 0, .rate = 0}, HP_ADVICE_TASK},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        hp_advice_out_t out;
        hp_advice_decide(&rows[i].in, &th, &out);
        if (out.rec != rows[i].rec)
            fail_msg("%s: expected %s, got %s (%s)", rows[i].name, hp_advice_name(rows[i].rec),
                     hp_advice_name(out.rec), out.reason);
        assert_true(strlen(out.reason) > 20);
    }
    /* The reason cites the figures it decided on. */
    hp_advice_in_t in = {.calls = 200, .sync = 150, .rate = 300, .waiters = 7};
    hp_advice_out_t out;
    hp_advice_decide(&in, &th, &out);
    assert_non_null(strstr(out.reason, "75.0%"));
    assert_non_null(strstr(out.reason, "7 extra waiters"));
}

/* --- a scripted sequence through /advice -------------------------------- */

typedef struct {
    hp_task_t *pending; /* the fill in flight, our reference */
    int fills;
} fill_state_t;

static fill_state_t *manual; /* while set, upstream requests are these */

hp_task_t *__real_hp_upstream_request(hp_upstream_t *u, const char *method, const char *path,
                                      size_t path_len);
hp_task_t *__wrap_hp_upstream_request(hp_upstream_t *u, const char *method, const char *path,
                                      size_t path_len);

hp_task_t *__wrap_hp_upstream_request(hp_upstream_t *u, const char *method, const char *path,
                                      size_t path_len)
{
    if (manual == NULL) return __real_hp_upstream_request(u, method, path, path_len);
    manual->fills++;
    hp_task_t *t = hp_task_new();
    manual->pending = hp_task_ref(t);
    return t;
}

static void complete_fill(fill_state_t *st)
{
    hp_buf_t *buf = hp_buf_new(200, "application/json", 16, 2);
    memcpy(buf->body, "{}", 2);
    hp_task_set_dispose(st->pending, hp_buf_dispose);
    hp_task_complete(st->pending, hp_value_ptr(buf));
    hp_task_unref(st->pending);
    st->pending = NULL;
}

static void get(hp_memserver_t *m, const char *path, hp_capture_t *cap)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    hp_memconn_exchange(m, req, (size_t)n, false, cap);
}

static const cJSON *layer(const cJSON *advice, const char *name)
{
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItem(advice, "layers"))
    {
        if (!strcmp(cJSON_GetObjectItem(l, "layer")->valuestring, name)) return l;
    }
    fail_msg("layer %s missing from /advice", name);
    return NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("%s is not a number", key);
    return v->valuedouble;
}

static const char *rec(const cJSON *o)
{
    return cJSON_GetObjectItem(o, "recommendation")->valuestring;
}

static void scripted_sequence(void **state)
{
    hp_memserver_t m;
    /* hot_rate 1: any layer that was called is hot, so the recommendations
     * do not depend on how fast this machine runs the test. */
    hp_memserver_open(&m, "{\"advice\":{\"hot_rate\":1,\"sync_share_pct\":90}}");
    fill_state_t st = {0};
    manual = &st;

    /* 10 synchronous requests. */
    hp_capture_t cap;
    for (int i = 0; i < 10; i++) {
        get(&m, "/plaintext", &cap);
        assert_int_equal(hp_capture_status(cap.data), 200);
        free(cap.data);
    }
    /* 5 concurrent misses on one key: one fill, four coalesced waiters. */
    static const char req[] = "GET /cache/k HTTP/1.1\r\nHost: x\r\n\r\n";
    hp_capture_t caps[5];
    hp_conn_t *conns[5];
    for (int i = 0; i < 5; i++) {
        conns[i] = hp_memconn_new(&m, &caps[i]);
        hp_conn_feed(conns[i], req, sizeof(req) - 1);
        assert_null(caps[i].data); /* pending */
    }
    assert_int_equal(st.fills, 1);
    complete_fill(&st);
    uv_run(&m.w.loop, UV_RUN_NOWAIT); /* the check phase answers them */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(hp_capture_status(caps[i].data), 200);
        assert_non_null(strstr(caps[i].data, i == 0 ? "X-Cache: miss" : "X-Cache: coalesced"));
        hp_conn_close(conns[i]);
        free(caps[i].data);
    }
    /* 3 hits. */
    for (int i = 0; i < 3; i++) {
        get(&m, "/cache/k", &cap);
        assert_non_null(strstr(cap.data, "X-Cache: hit"));
        free(cap.data);
    }

    get(&m, "/advice", &cap);
    assert_int_equal(hp_capture_status(cap.data), 200);
    cJSON *advice = cJSON_Parse(hp_capture_body(cap.data));
    assert_non_null(advice);

    const cJSON *pt = layer(advice, "plaintext");
    assert_int_equal(num(pt, "calls"), 10);
    assert_int_equal(num(pt, "completed_synchronously"), 10);
    assert_int_equal(num(pt, "allocations_avoided"), 10);
    assert_int_equal(num(pt, "allocations"), 0);
    assert_string_equal(rec(pt), "valuetask");

    const cJSON *cg = layer(advice, "cache.get");
    assert_int_equal(num(cg, "calls"), 8);
    assert_int_equal(num(cg, "completed_synchronously"), 3);
    assert_int_equal(num(cg, "shared_waiters"), 4);
    assert_int_equal(num(cg, "allocations_avoided"), 3);
    assert_int_equal(num(cg, "allocations"), 1); /* one fill task, shared by five */
    assert_float_equal(num(cg, "sync_share"), 3.0 / 8.0, 1e-9);
    assert_string_equal(rec(cg), "task");
    assert_non_null(strstr(cJSON_GetObjectItem(cg, "reason")->valuestring, "4 extra waiters"));

    /* The cache handler pended on its pooled source: no allocation. */
    const cJSON *ch = layer(advice, "cache");
    assert_int_equal(num(ch, "calls"), 8);
    assert_int_equal(num(ch, "completed_synchronously"), 3);
    assert_int_equal(num(ch, "allocations"), 0);

    /* Middleware saw all 18 requests, 13 of them synchronous: 72%, under
     * the 90% threshold, so the traffic mix makes them "task" here. */
    const cJSON *rid = layer(advice, "request_id");
    assert_int_equal(num(rid, "calls"), 18);
    assert_int_equal(num(rid, "completed_synchronously"), 13);
    assert_int_equal(num(rid, "allocations"), 0);
    assert_string_equal(rec(rid), "task");
    cJSON_Delete(advice);
    free(cap.data);

    /* The same as text when asked for text/plain. */
    static const char text_req[] = "GET /advice HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n";
    hp_memconn_exchange(&m, text_req, sizeof(text_req) - 1, false, &cap);
    assert_non_null(strstr(cap.data, "Content-Type: text/plain"));
    assert_non_null(strstr(cap.data, "cache.get"));
    assert_non_null(strstr(cap.data, "plaintext: valuetask - "));
    free(cap.data);
    manual = NULL;
    hp_memserver_close(&m);
}

/* In task mode the same synchronous requests allocate one task per layer,
 * and the advisor counts them as allocations, not as avoided ones. */
static void task_mode_counts_allocations(void **state)
{
    hp_memserver_t m;
    hp_memserver_open(&m, "{\"mode\":\"task\",\"advice\":{\"hot_rate\":1}}");
    hp_capture_t cap;
    for (int i = 0; i < 7; i++) {
        get(&m, "/json", &cap);
        free(cap.data);
    }
    get(&m, "/advice", &cap);
    cJSON *advice = cJSON_Parse(hp_capture_body(cap.data));
    const cJSON *js = layer(advice, "json");
    assert_int_equal(num(js, "calls"), 7);
    assert_int_equal(num(js, "completed_synchronously"), 7);
    assert_int_equal(num(js, "allocations"), 7);
    assert_int_equal(num(js, "allocations_avoided"), 0);
    assert_string_equal(rec(js), "valuetask");
    assert_string_equal(cJSON_GetObjectItem(advice, "mode")->valuestring, "task");
    cJSON_Delete(advice);
    free(cap.data);
    hp_memserver_close(&m);
}

/* --- misuse, made on purpose -------------------------------------------- */

static void misuse_is_refused_counted_and_reported(void **state)
{
    hp_memserver_t m;
    hp_memserver_open(&m, NULL);
    hp_vtsource_t src;
    hp_vtsource_init(&src);

    /* Double consumption: the second read is refused. */
    hp_vtask_t vt = hp_vtsource_vtask(&src);
    hp_vtask_t copy = vt;
    hp_vtsource_complete(&src, hp_value_int(42));
    hp_value_t v;
    assert_int_equal(hp_vtask_result(&vt, &v, NULL), 0);
    assert_int_equal(v.i, 42);
    assert_int_equal(hp_vtask_result(&copy, &v, NULL), HP_EVTASK_CONSUMED);

    /* Stale token: the source was reused for someone else. */
    hp_vtsource_reset(&src);
    hp_vtask_t old = hp_vtsource_vtask(&src);
    hp_vtsource_reset(&src);
    assert_int_equal(hp_vtask_result(&old, &v, NULL), HP_EVTASK_STALE);

    hp_capture_t cap;
    get(&m, "/stats", &cap);
    cJSON *stats = cJSON_Parse(hp_capture_body(cap.data));
    const cJSON *mis = cJSON_GetObjectItem(cJSON_GetObjectItem(stats, "runtime"), "misuse");
    assert_int_equal(num(mis, "consumed"), 1);
    assert_int_equal(num(mis, "stale"), 1);
    cJSON_Delete(stats);
    free(cap.data);

    get(&m, "/metrics", &cap);
    assert_non_null(strstr(cap.data, "hotpath_runtime_misuse_total{kind=\"consumed\"} 1\n"));
    assert_non_null(strstr(cap.data, "hotpath_runtime_misuse_total{kind=\"stale\"} 1\n"));
    free(cap.data);
    hp_memserver_close(&m);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tree_table),
        cmocka_unit_test(scripted_sequence),
        cmocka_unit_test(task_mode_counts_allocations),
        cmocka_unit_test(misuse_is_refused_counted_and_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
