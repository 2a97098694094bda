/*
 * test_options.c - runtime/options.c, the option tables every section of
 * the configuration is read through: defaults, zeros filled from them,
 * paths with the section in front, each type set from JSON and refused
 * with the path named, values built in code checked against the bounds.
 */
#include "runtime/errors.h"
#include "runtime/options.h"

#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    uint16_t small;
    uint32_t mid;
    uint64_t big;
    char name[8];
    const char *url;
    int color;
    bool loud, quiet;
} demo_t;

static const char *const colors[] = {"red", "green", "blue", NULL};

static const hp_option_t rows[] = {
    HP_OPTION_INT(demo_t, "small", small, 1, 100, 7, "why small"),
    HP_OPTION_INT(demo_t, "limits.mid", mid, 0, 1000000, 5000, "why mid"),
    HP_OPTION_INT(demo_t, "big", big, 1, INT64_C(1) << 40, 1099511627776, "why big"),
    HP_OPTION_STR(demo_t, "name", name, "abc", "why name"),
    HP_OPTION_STRPTR(demo_t, "url", url, 16, NULL, "why url"),
    HP_OPTION_ENUM(demo_t, "color", color, colors, "green", "why color"),
    HP_OPTION_BOOL(demo_t, "loud", loud, true, "why loud"),
    HP_OPTION_BOOL(demo_t, "quiet", quiet, false, "why quiet"),
};

static const hp_options_t demo = {"demo.sub", rows, sizeof(rows) / sizeof(rows[0]), sizeof(demo_t),
                                  NULL};

static void defaults_and_zeros(void **state)
{
    demo_t d;
    memset(&d, 0xff, sizeof(d));
    hp_options_defaults(&demo, &d);
    assert_int_equal(d.small, 7);
    assert_int_equal(d.mid, 5000);
    assert_int_equal(d.big, UINT64_C(1) << 40);
    assert_string_equal(d.name, "abc");
    assert_null(d.url); /* no default */
    assert_int_equal(d.color, 1);
    assert_true(d.loud);
    assert_false(d.quiet); /* memset 0xff above: written, not left */
    demo_t z = {.mid = 3};
    hp_options_fill_zeros(&demo, &z);
    assert_int_equal(z.small, 7);
    assert_int_equal(z.mid, 3); /* set: kept */
    assert_int_equal(z.big, UINT64_C(1) << 40);
}

static void paths(void **state)
{
    assert_ptr_equal(hp_options_find(&demo, "demo.sub.small"), &rows[0]);
    assert_ptr_equal(hp_options_find(&demo, "demo.sub.limits.mid"), &rows[1]);
    assert_null(hp_options_find(&demo, "small"));
    assert_null(hp_options_find(&demo, "demo.subx.small"));
    assert_true(hp_options_has_section(&demo, "demo"));
    assert_true(hp_options_has_section(&demo, "demo.sub"));
    assert_true(hp_options_has_section(&demo, "demo.sub.limits"));
    assert_false(hp_options_has_section(&demo, "demo.sub.small"));
}

/* Set path from the JSON text v: the return, and err. */
static int set(demo_t *d, const char *path, const char *v, cJSON **doc, char *err)
{
    *doc = cJSON_Parse(v);
    assert_non_null(*doc);
    return hp_options_set(&demo, hp_options_find(&demo, path), d, *doc, "f.json", err, 256);
}

static void set_from_json(void **state)
{
    demo_t d;
    hp_options_defaults(&demo, &d);
    char err[256];
    cJSON *doc;
    assert_int_equal(set(&d, "demo.sub.small", "100", &doc, err), 0);
    cJSON_Delete(doc);
    assert_int_equal(d.small, 100);
    assert_int_equal(set(&d, "demo.sub.small", "101", &doc, err), HP_ECONFIG);
    cJSON_Delete(doc);
    assert_string_equal(err, "f.json: demo.sub.small: expected an integer from 1 to 100");
    assert_int_equal(set(&d, "demo.sub.limits.mid", "2.5", &doc, err), HP_ECONFIG);
    cJSON_Delete(doc);
    assert_int_equal(set(&d, "demo.sub.name", "\"toolong!\"", &doc, err), HP_ECONFIG);
    cJSON_Delete(doc);
    assert_string_equal(err,
                        "f.json: demo.sub.name: expected a non-empty string of at most 7 bytes");
    assert_int_equal(set(&d, "demo.sub.color", "\"mauve\"", &doc, err), HP_ECONFIG);
    cJSON_Delete(doc);
    assert_string_equal(err, "f.json: demo.sub.color: expected \"red\", \"green\" or \"blue\"");
    assert_int_equal(set(&d, "demo.sub.color", "\"blue\"", &doc, err), 0);
    cJSON_Delete(doc);
    assert_int_equal(d.color, 2);
    assert_int_equal(set(&d, "demo.sub.url", "\"redis://x\"", &doc, err), 0);
    assert_string_equal(d.url, "redis://x"); /* borrowed from the document */
    assert_ptr_equal(d.url, doc->valuestring);
    cJSON_Delete(doc);
    /* "" in a file unsets a string that has no default. */
    assert_int_equal(set(&d, "demo.sub.url", "\"\"", &doc, err), 0);
    assert_null(d.url);
    cJSON_Delete(doc);
    assert_int_equal(set(&d, "demo.sub.name", "\"\"", &doc, err), HP_ECONFIG);
    cJSON_Delete(doc);
    /* A bool is JSON's true or false, nothing that merely looks like one. */
    assert_int_equal(set(&d, "demo.sub.loud", "false", &doc, err), 0);
    cJSON_Delete(doc);
    assert_false(d.loud);
    assert_int_equal(set(&d, "demo.sub.quiet", "true", &doc, err), 0);
    cJSON_Delete(doc);
    assert_true(d.quiet);
    d.loud = true; /* so that a refusal that wrote false (for "0", null) shows */
    static const char *const not_bools[] = {"1", "0", "\"true\"", "null"};
    for (size_t i = 0; i < sizeof(not_bools) / sizeof(not_bools[0]); i++) {
        assert_int_equal(set(&d, "demo.sub.loud", not_bools[i], &doc, err), HP_ECONFIG);
        cJSON_Delete(doc);
        assert_string_equal(err, "f.json: demo.sub.loud: expected true or false");
    }
    assert_true(d.loud); /* a refusal leaves the value as it was */
}

static void check_built_in_code(void **state)
{
    demo_t d;
    hp_options_defaults(&demo, &d);
    char err[256];
    /* Without a default, not set is a value of its own (cache.l2.url: no L2). */
    assert_null(d.url);
    assert_int_equal(hp_options_check(&demo, &d, err, sizeof(err)), 0);
    d.url = "";
    assert_int_equal(hp_options_check(&demo, &d, err, sizeof(err)), HP_ECONFIG);
    assert_string_equal(err, "demo.sub.url: expected a non-empty string of at most 15 bytes");
    d.url = "u";
    assert_int_equal(hp_options_check(&demo, &d, err, sizeof(err)), 0);
    d.big = 0;
    assert_int_equal(hp_options_check(&demo, &d, err, sizeof(err)), HP_ECONFIG);
    assert_string_equal(err, "demo.sub.big: expected an integer from 1 to 1099511627776, got 0");
}

/* --help's lines: path, default, why; a bool's default as JSON writes it. */
static void printed(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    hp_options_print(&demo, f);
    fclose(f);
    assert_non_null(strstr(text, "  demo.sub.small"));
    assert_non_null(strstr(text, " 7 "));
    assert_non_null(strstr(text, "demo.sub.url                   (none)     why url\n"));
    assert_non_null(strstr(text, "demo.sub.loud                  true       why loud\n"));
    assert_non_null(strstr(text, "demo.sub.quiet                 false      why quiet\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_and_zeros),
        cmocka_unit_test(paths),
        cmocka_unit_test(set_from_json),
        cmocka_unit_test(check_built_in_code),
        cmocka_unit_test(printed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
