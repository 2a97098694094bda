/*
 * test_stats.c - statistics tables (runtime/stats.c) and the two reports
 * generated from them (handlers/stats.c), through an in-memory worker:
 * every row of every table is in /stats where its table says, and in
 * /metrics under the name its table gives it, so a counter added to a
 * table cannot reach one report and miss the other.
 */
#include "app/app.h"
#include "cache/cache.h"
#include "runtime/alloc.h"
#include "runtime/stats.h"
#include "runtime/task.h"
#include "server/metrics.h"
#include "tests/support/memserver.h"
#include "upstream/client.h"

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void groups_by_prefix(void **state)
{
    static const hp_stat_t rows[] = {{.name = "errors_connect"},
                                     {.name = "errorsx"},
                                     {.name = "pool_open"},
                                     {.name = "requests"}};
    static const hp_stat_group_t groups[] = {{"errors", "kind"}, {"pool", NULL}};
    const hp_stats_table_t t = {"t", 32, rows, 4, groups, 2};
    const char *rest;
    assert_ptr_equal(hp_stat_group(&t, &rows[0], &rest), &groups[0]);
    assert_string_equal(rest, "connect");
    assert_null(hp_stat_group(&t, &rows[1], &rest)); /* a prefix only with its '_' */
    assert_string_equal(rest, "errorsx");
    assert_ptr_equal(hp_stat_group(&t, &rows[2], &rest), &groups[1]);
    assert_string_equal(rest, "open");
    assert_null(hp_stat_group(&t, &rows[3], &rest));
    assert_string_equal(rest, "requests");
}

static const hp_stats_table_t *const tables[] = {
    &hp_cache_stats_table,      &hp_upstream_stats_table, &hp_runtime_stats_table,
    &hp_connection_stats_table, &hp_io_stats_table,       &hp_layer_stats_table,
};

/* Rows lie inside their block, one counter each, none twice. */
static void tables_describe_their_blocks(void **state)
{
    for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
        const hp_stats_table_t *t = tables[k];
        assert_int_equal(t->size % sizeof(uint64_t), 0);
        assert_true(t->nrows > 0 && t->nrows * sizeof(uint64_t) <= t->size);
        for (size_t i = 0; i < t->nrows; i++) {
            assert_true(t->rows[i].offset + sizeof(uint64_t) <= t->size);
            assert_int_equal(t->rows[i].offset % sizeof(uint64_t), 0);
            assert_true(strlen(t->rows[i].help) > 0);
            for (size_t j = 0; j < i; j++)
                assert_true(t->rows[i].offset != t->rows[j].offset);
        }
    }
}

static char *get(hp_memserver_t *m, const char *path)
{
    char req[128];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", path);
    hp_capture_t cap;
    hp_memconn_exchange(m, req, (size_t)n, false, &cap);
    assert_int_equal(hp_capture_status(cap.data), 200);
    return cap.data;
}

/* Where a row of t sits in /stats: under `under` (the table's key, or a
 * layer's mode object), in its group's object if it has one. */
static void assert_in_json(const cJSON *under, const hp_stats_table_t *t, const hp_stat_t *row)
{
    const char *key;
    const hp_stat_group_t *g = hp_stat_group(t, row, &key);
    const cJSON *o = g ? cJSON_GetObjectItemCaseSensitive(under, g->prefix) : under;
    if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, key)))
        fail_msg("/stats: %s.%s%s%s is missing", t->name, g ? g->prefix : "", g ? "." : "", key);
}

static void assert_in_prometheus(const char *text, const hp_stats_table_t *t, const hp_stat_t *row)
{
    const char *rest;
    const hp_stat_group_t *g = hp_stat_group(t, row, &rest);
    const char *suffix = row->kind == HP_STAT_COUNTER ? "_total" : "";
    char sample[160];
    if (g && g->label)
        snprintf(sample, sizeof(sample), "\nhotpath_%s_%s%s{%s=\"%s\"} ", t->name, g->prefix,
                 suffix, g->label, rest);
    else
        snprintf(sample, sizeof(sample), "\nhotpath_%s_%s%s", t->name, row->name, suffix);
    if (strstr(text, sample) == NULL) fail_msg("/metrics lacks \"%s\"", sample + 1);
    char type[160];
    snprintf(type, sizeof(type), "# TYPE hotpath_%s_%s%s %s\n", t->name,
             g && g->label ? g->prefix : row->name, suffix,
             row->kind == HP_STAT_COUNTER ? "counter" : "gauge");
    if (strstr(text, type) == NULL) fail_msg("/metrics lacks \"%s\"", type);
}

static void every_row_is_in_both_reports(void **state)
{
    hp_memserver_t m;
    hp_memserver_open(&m, "{\"upstream\": {\"port\": 1}}");
    free(get(&m, "/plaintext")); /* a layer that was called: its rows are sampled */
    char *stats = get(&m, "/stats");
    char *metrics = get(&m, "/metrics");
    cJSON *root = cJSON_Parse(hp_capture_body(stats));
    assert_non_null(root);
    for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
        const hp_stats_table_t *t = tables[k];
        const cJSON *under =
            t == &hp_layer_stats_table
                ? cJSON_GetObjectItemCaseSensitive(
                      cJSON_GetObjectItemCaseSensitive(
                          cJSON_GetObjectItemCaseSensitive(root, "layers"), "plaintext"),
                      "valuetask")
                : cJSON_GetObjectItemCaseSensitive(root, t->name);
        assert_non_null(under);
        for (size_t i = 0; i < t->nrows; i++) {
            assert_in_json(under, t, &t->rows[i]);
            assert_in_prometheus(hp_capture_body(metrics) - 1, t, &t->rows[i]);
        }
    }
    cJSON_Delete(root);
    free(stats);
    free(metrics);
    hp_memserver_close(&m);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(groups_by_prefix),
        cmocka_unit_test(tables_describe_their_blocks),
        cmocka_unit_test(every_row_is_in_both_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
