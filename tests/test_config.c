/*
 * test_config.c - the option table and the JSON walk (server/config.c):
 * defaults, the shipped file, overrides, and a table of bad documents ->
 * the key the message must name.
 */
#include "runtime/alloc.h"
#include "server/config.h"
#include "runtime/errors.h"
#include "app/app.h"
#include "cache/cache.h"
#include "cache/l2.h"
#include "handlers/advice.h"
#include "runtime/options.h"
#include "upstream/client.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static hp_config_t *parse_ok(const char *json, const hp_config_overrides_t *ov)
{
    hp_config_t *c = NULL;
    char err[256] = "";
    if (hp_config_parse(&hp_app, json, strlen(json), "test", ov, &c, err, sizeof(err)) != 0)
        fail_msg("%s: refused: %s", json, err);
    return c;
}

/* The built-in defaults: the figures the option table documents. */
static void defaults(void **state)
{
    hp_config_t *c = parse_ok("{}", NULL);
    assert_string_equal(c->host, "127.0.0.1");
    assert_int_equal(c->port, 8080);
    assert_true(c->workers >= 1); /* 0 means one per core, resolved at load */
    assert_int_equal(c->mode, HP_MODE_VALUETASK);
    assert_int_equal(c->limits.request_line_bytes, 8192);
    assert_int_equal(c->limits.header_bytes, 32768);
    assert_int_equal(c->limits.header_count, 100);
    assert_int_equal(c->limits.body_bytes, 1048576);
    assert_int_equal(c->limits.header_timeout_ms, 30000);
    assert_int_equal(c->limits.min_body_rate, 240);
    const hp_cache_opts_t *cache = hp_config_section(c, &hp_cache_options);
    assert_int_equal(cache->max_bytes, 67108864);
    assert_int_equal(cache->policy, HP_CACHE_SIEVE);
    const hp_upstream_opts_t *up = hp_config_section(c, &hp_upstream_options);
    assert_string_equal(up->host, "127.0.0.1");
    assert_int_equal(up->port, 8081);
    assert_int_equal(up->pool_size, 64);
    const hp_advice_opts_t *adv = hp_config_section(c, &hp_advice_options);
    assert_int_equal(adv->hot_rate, 10000);
    /* The default chain: three middleware on, access_log present but off. */
    assert_int_equal(c->n_middleware, 4);
    const char *names[] = {"server_headers", "request_id", "metrics", "access_log"};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(c->middleware[i].desc->name, names[i]);
        assert_int_equal(c->middleware[i].enabled, i < 3);
    }
    hp_config_unref(c);
}

/* Two structs of one option table hold the same options. */
static void assert_same_options(const hp_options_t *t, const void *a, const void *b)
{
    for (size_t i = 0; i < t->n; i++) {
        const hp_option_t *o = &t->options[i];
        const char *pa = (const char *)a + o->offset, *pb = (const char *)b + o->offset;
        bool same;
        switch (o->type) {
        case HP_OPT_STR: same = strcmp(pa, pb) == 0; break;
        case HP_OPT_STRPTR: {
            const char *sa = *(const char *const *)pa, *sb = *(const char *const *)pb;
            same = sa == sb || (sa && sb && strcmp(sa, sb) == 0);
            break;
        }
        default: same = memcmp(pa, pb, o->type == HP_OPT_ENUM ? sizeof(int) : o->size) == 0;
        }
        if (!same)
            fail_msg("%s%s%s differs from its default", t->section, t->section[0] ? "." : "",
                     o->key);
    }
}

/* Every section's defaults lie inside their bounds (and the L2 client's,
 * not a section yet, once it is given a URL, which has no default), and
 * every middleware's. */
static void defaults_lie_in_their_bounds(void **state)
{
    const hp_options_t *tables[HP_SECTIONS_MAX + 1 + HP_CHAIN_MAX];
    size_t n = 0;
    for (size_t i = 0; i < hp_app.nsections; i++)
        tables[n++] = hp_app.sections[i];
    tables[n++] = &hp_l2_options;
    size_t with_options = 0;
    for (size_t i = 0; i < hp_app.nmiddleware; i++)
        if (hp_app.middleware[i]->options) {
            tables[n++] = hp_app.middleware[i]->options;
            with_options++;
        }
    assert_int_equal(with_options, 3); /* all but metrics */
    for (size_t i = 0; i < n; i++) {
        char values[512] = {0}, err[256] = "";
        assert_true(tables[i]->size <= sizeof(values));
        hp_options_defaults(tables[i], values);
        if (tables[i] == &hp_l2_options) ((hp_l2_opts_t *)values)->url = "redis://127.0.0.1";
        if (hp_options_check(tables[i], values, err, sizeof(err)) != 0)
            fail_msg("%s: %s", tables[i]->section, err);
    }
}

/* A zero takes the default from the table, nowhere else (the upstream
 * client's defaults drifted from the configuration's once). */
static void zeros_take_the_tables_defaults(void **state)
{
    hp_upstream_opts_t o = {.host = "127.0.0.1", .port = 9};
    hp_options_fill_zeros(&hp_upstream_options, &o);
    hp_upstream_opts_t d;
    hp_options_defaults(&hp_upstream_options, &d);
    d.port = 9;
    assert_same_options(&hp_upstream_options, &o, &d);
}

/* config/hotpath.json writes every default out; loading it goes through
 * every bound, so it also proves the table's defaults lie inside them. */
static void shipped_file_is_the_defaults(void **state)
{
    const char *root = getenv("HOTPATH_ROOT");
    char path[1024];
    snprintf(path, sizeof(path), "%s/config/hotpath.json", root ? root : ".");
    hp_config_t *file = NULL;
    char err[256] = "";
    if (hp_config_load(&hp_app, path, NULL, &file, err, sizeof(err)) != 0) fail_msg("%s", err);
    hp_config_t *def = parse_ok("{}", NULL);
    assert_string_equal(file->host, def->host);
    assert_int_equal(file->port, def->port);
    assert_int_equal(file->mode, def->mode);
    assert_memory_equal(&file->limits, &def->limits, sizeof(def->limits));
    assert_int_equal(file->nsections, hp_app.nsections);
    for (size_t i = 0; i < hp_app.nsections; i++) {
        const hp_options_t *t = hp_app.sections[i];
        assert_same_options(t, hp_config_section(file, t), hp_config_section(def, t));
    }
    assert_int_equal(file->n_middleware, def->n_middleware);
    for (size_t i = 0; i < def->n_middleware; i++) {
        const hp_middleware_t *mw = def->middleware[i].desc;
        assert_ptr_equal(file->middleware[i].desc, mw);
        if (mw->options == NULL) {
            assert_null(file->middleware[i].options);
            continue;
        }
        assert_same_options(mw->options, file->middleware[i].options, def->middleware[i].options);
    }
    hp_config_unref(file);
    hp_config_unref(def);
}

static void overrides_win_over_the_file(void **state)
{
    hp_config_overrides_t ov = {.port = 0, .workers = 3, .mode = HP_MODE_TASK};
    hp_config_t *c =
        parse_ok("{\"listen\":{\"port\":9000},\"workers\":1,\"mode\":\"valuetask\"}", &ov);
    assert_int_equal(c->port, 0);
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->mode, HP_MODE_TASK);
    hp_config_unref(c);
}

/* Every refusal names the file and the key: bad input -> that key. */
static void bad_documents_name_the_key(void **state)
{
    static const struct {
        const char *json;
        const char *names;
    } rows[] = {
        {"{\"limits\":{\"nope\":1}}", "limits.nope: unknown key"},
        {"{\"nope\":1}", "nope: unknown key"},
        {"{\"limits\":{\"header_bytes\":\"big\"}}", "limits.header_bytes: expected an integer"},
        {"{\"limits\":{\"header_bytes\":10}}",
         "limits.header_bytes: expected an integer from 1024"},
        {"{\"limits\":{\"header_count\":1.5}}", "limits.header_count"},
        {"{\"listen\":{\"port\":70000}}", "listen.port"},
        {"{\"listen\":{\"host\":\"localhost\"}}", "listen.host: expected a numeric"},
        {"{\"mode\":\"fast\"}", "mode: expected \"valuetask\" or \"task\""},
        {"{\"limits\":7}", "limits: expected an object"},
        {"{\"cache\":{\"policy\":\"fifo\"}}", "cache.policy: expected \"sieve\" or \"lru\""},
        {"{\"cache\":{\"ttl\":1}}", "cache.ttl: unknown key"},
        {"{\"upstream\":{\"host\":\"example.com\"}}", "upstream.host: expected a numeric"},
        {"{\"upstream\":{\"pool_size\":0}}", "upstream.pool_size: expected an integer from 1"},
        {"{\"advice\":{\"sync_share_pct\":101}}", "advice.sync_share_pct"},
        {"{\"limits\":{\"request_line_bytes\":65536,\"header_bytes\":8192}}",
         "limits.request_line_bytes: must not exceed"},
        {"{\"middleware\":{}}", "middleware: expected an array"},
        {"{\"middleware\":[{\"name\":\"gzip\"}]}", "middleware[0].name: unknown middleware"},
        {"{\"middleware\":[{\"name\":\"metrics\"},{\"name\":\"metrics\"}]}",
         "middleware[1].name: \"metrics\" appears twice"},
        {"{\"middleware\":[{\"name\":\"metrics\",\"enabled\":1}]}", "middleware[0].enabled"},
        {"{\"middleware\":[{\"name\":\"server_headers\",\"srv\":\"x\"}]}",
         "middleware[0].srv: unknown key"},
        {"{\"middleware\":[{\"name\":\"access_log\",\"enabled\":false,\"buffer_bytes\":1}]}",
         "middleware[0].buffer_bytes"},
        {"[1,2]", "expected a JSON object"},
        {"{\"mode\": \"task\",\n\"limits\": {,}}", "line 2: not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        hp_config_t *c = NULL;
        char err[256] = "";
        int rc = hp_config_parse(&hp_app, rows[i].json, strlen(rows[i].json), "f.json", NULL, &c,
                                 err, sizeof(err));
        if (rc != HP_ECONFIG || c != NULL || strstr(err, rows[i].names) == NULL ||
            strncmp(err, "f.json: ", 8) != 0)
            fail_msg("%s: expected a refusal naming \"%s\", got rc %d: %s", rows[i].json,
                     rows[i].names, rc, err);
    }
}

static void missing_file_is_an_error(void **state)
{
    hp_config_t *c = NULL;
    char err[256] = "";
    assert_true(hp_config_load(&hp_app, "/nonexistent/hotpath.json", NULL, &c, err, sizeof(err)) <
                0);
    assert_null(c);
    assert_non_null(strstr(err, "/nonexistent/hotpath.json: cannot open"));
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(defaults_lie_in_their_bounds),
        cmocka_unit_test(zeros_take_the_tables_defaults),
        cmocka_unit_test(shipped_file_is_the_defaults),
        cmocka_unit_test(overrides_win_over_the_file),
        cmocka_unit_test(bad_documents_name_the_key),
        cmocka_unit_test(missing_file_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
