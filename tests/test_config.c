/*
 * test_config.c - the option table and the JSON walk (server/config.c):
 * defaults, the shipped file, overrides, and a table of bad documents ->
 * the key the message must name.
 */
#include "runtime/alloc.h"
#include "server/config.h"
#include "runtime/errors.h"
#include "app/app.h"

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
    assert_int_equal(c->cache.max_bytes, 67108864);
    assert_string_equal(c->cache.policy, "sieve");
    assert_int_equal(c->upstream.port, 8081);
    assert_int_equal(c->advice.hot_rate, 10000);
    /* The default chain: three middleware on, access_log present but off. */
    assert_int_equal(c->n_middleware, 4);
    const char *names[] = {"server_headers", "request_id", "metrics", "access_log"};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(c->middleware[i].desc->name, names[i]);
        assert_int_equal(c->middleware[i].enabled, i < 3);
    }
    hp_config_unref(c);
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
    assert_memory_equal(&file->cache, &def->cache, sizeof(def->cache));
    assert_memory_equal(&file->upstream, &def->upstream, sizeof(def->upstream));
    assert_memory_equal(&file->advice, &def->advice, sizeof(def->advice));
    assert_int_equal(file->n_middleware, def->n_middleware);
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
        {"{\"cache\":{\"policy\":\"fifo\"}}", "cache.policy"},
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
        cmocka_unit_test(shipped_file_is_the_defaults),
        cmocka_unit_test(overrides_win_over_the_file),
        cmocka_unit_test(bad_documents_name_the_key),
        cmocka_unit_test(missing_file_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
