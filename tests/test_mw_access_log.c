/*
 * test_mw_access_log.c - middleware/access_log.c through the real parser
 * and chain of an in-memory worker, writing to a file: one Common Log
 * Format line per answer (a memory connection has no peer address: "-"),
 * the request's target escaped where it would break the quoting, "-" for
 * an answer without a body; lines buffered until the buffer fills or the
 * layer goes (the worker's tick flushes too); its options checked.
 */
#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "app/app.h"
#include "server/config.h"
#include "tests/support/memserver.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct {
    char path[64];
    char json[256];
} log_file_t;

static void log_file(log_file_t *f, int buffer_bytes)
{
    snprintf(f->path, sizeof(f->path), "/tmp/hp-access-log-%d.log", (int)getpid());
    unlink(f->path);
    snprintf(f->json, sizeof(f->json),
             "{\"middleware\": [{\"name\": \"server_headers\"}, {\"name\": \"access_log\", "
             "\"path\": \"%s\", \"buffer_bytes\": %d}]}",
             f->path, buffer_bytes);
}

/* The file's content (malloc'd; "" when it is empty or absent). */
static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    char *s = calloc(1, 1 << 16);
    if (fp) {
        size_t n = fread(s, 1, (1 << 16) - 1, fp);
        s[n] = '\0';
        fclose(fp);
    }
    return s;
}

static void send_one(hp_memserver_t *m, const char *req)
{
    hp_capture_t cap;
    hp_memconn_exchange(m, req, strlen(req), false, &cap);
    assert_true(hp_capture_status(cap.data) > 0);
    free(cap.data);
}

/* Line i of text (from 0), copied into buf. */
static const char *line(const char *text, int i, char *buf, size_t len)
{
    const char *p = text;
    while (i-- > 0 && p)
        p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL;
    assert_non_null(p);
    const char *nl = strchr(p, '\n');
    assert_non_null(nl);
    snprintf(buf, len, "%.*s", (int)(nl - p), p);
    return buf;
}

/* "- - - [dd/Mon/yyyy:HH:MM:SS +0000] " and the rest, which must be want. */
static void assert_clf(const char *l, const char *want)
{
    char date[32];
    int n = 0;
    if (sscanf(l, "- - - [%26[^]]]%n", date, &n) != 1 || n == 0 || strlen(date) != 26 ||
        strcmp(date + 20, " +0000") != 0)
        fail_msg("not a CLF line: \"%s\"", l);
    if (strcmp(l + n + 1, want) != 0) fail_msg("\"%s\" ends other than \"%s\"", l, want);
}

static void one_line_per_answer(void **state)
{
    log_file_t f;
    log_file(&f, 65536);
    hp_memserver_t m;
    hp_memserver_open(&m, f.json);
    send_one(&m, "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
    send_one(&m, "HEAD /json HTTP/1.0\r\n\r\n");
    send_one(&m, "GET /nope?a=\"b\"\\c HTTP/1.1\r\nHost: h\r\n\r\n");
    char *text = slurp(f.path);
    assert_string_equal(text, ""); /* buffered */
    free(text);
    hp_memserver_close(&m); /* the layer goes: its buffer is written */
    text = slurp(f.path);
    char buf[256];
    assert_clf(line(text, 0, buf, sizeof(buf)), "\"GET /plaintext HTTP/1.1\" 200 13");
    assert_clf(line(text, 1, buf, sizeof(buf)), "\"HEAD /json HTTP/1.0\" 200 -");
    assert_clf(line(text, 2, buf, sizeof(buf)),
               "\"GET /nope?a=\\x22b\\x22\\x5cc HTTP/1.1\" 404 10");
    assert_int_equal(hp_count(text, "\n"), 3);
    free(text);
    unlink(f.path);
}

static void a_full_buffer_is_written_at_once(void **state)
{
    log_file_t f;
    log_file(&f, 4096);
    hp_memserver_t m;
    hp_memserver_open(&m, f.json);
    /* About 70 bytes a line: the 4 KiB buffer fills within 100 requests. */
    for (int i = 0; i < 100; i++)
        send_one(&m, "GET /plaintext HTTP/1.1\r\nHost: h\r\n\r\n");
    char *text = slurp(f.path);
    int written = hp_count(text, "\n");
    assert_true(written > 0 && written < 100); /* whole lines, the rest still buffered */
    assert_int_equal(text[strlen(text) - 1], '\n');
    free(text);
    hp_memserver_close(&m);
    text = slurp(f.path);
    assert_int_equal(hp_count(text, "\n"), 100);
    free(text);
    unlink(f.path);
}

static void bad_options_are_refused_by_name(void **state)
{
    static const struct {
        const char *json;
        const char *msg;
    } bad[] = {
        {"{\"middleware\": [{\"name\": \"access_log\", \"buffer_bytes\": 100}]}",
         "middleware[0].buffer_bytes: expected an integer from 4096 to 16777216"},
        {"{\"middleware\": [{\"name\": \"access_log\", \"path\": \"/nonexistent/dir/x.log\"}]}",
         "middleware[0].path: cannot open \"/nonexistent/dir/x.log\""},
        {"{\"middleware\": [{\"name\": \"access_log\", \"enabled\": false, \"format\": \"x\"}]}",
         "middleware[0].format: unknown key"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        hp_assert_config_refused(bad[i].json, bad[i].msg);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_line_per_answer),
        cmocka_unit_test(a_full_buffer_is_written_at_once),
        cmocka_unit_test(bad_options_are_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
