/*
 * test_mw_request_id.c - middleware/request_id.c through the real parser
 * and chain of an in-memory worker: the client's well-formed id is kept
 * (unless trust_incoming is off), any other request gets a generated one -
 * boot id, worker, request number, in hex - that is unique per request,
 * and the option is checked.
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

#include <cmocka.h>

/* GET /plaintext on a fresh connection of m, with extra header lines; the
 * answer's X-Request-Id into id. */
static void id_of(hp_memserver_t *m, const char *headers, char *id, size_t len)
{
    char req[512];
    snprintf(req, sizeof(req), "GET /plaintext HTTP/1.1\r\nHost: h\r\n%s\r\n", headers);
    hp_capture_t cap;
    hp_memconn_exchange(m, req, strlen(req), false, &cap);
    assert_int_equal(hp_capture_status(cap.data), 200);
    assert_int_equal(hp_count(cap.data, "\r\nX-Request-Id: "), 1);
    assert_non_null(hp_capture_header(cap.data, "X-Request-Id", id, len));
    free(cap.data);
}

/* "<8 hex>-<hex>-<hex>": the boot id, the worker, the request number. */
static void parse_generated(const char *id, unsigned *boot, unsigned *worker,
                            unsigned long long *seq)
{
    int n = 0;
    if (sscanf(id, "%8x-%x-%llx%n", boot, worker, seq, &n) != 3 || id[n] != '\0' ||
        strchr(id, '-') - id != 8)
        fail_msg("\"%s\" is not a generated id", id);
}

static void generated_ids_count_requests(void **state)
{
    hp_memserver_t m;
    hp_memserver_open(&m, NULL);
    char a[160], b[160];
    id_of(&m, "", a, sizeof(a));
    id_of(&m, "", b, sizeof(b));
    unsigned boot_a, boot_b, worker_a, worker_b;
    unsigned long long seq_a, seq_b;
    parse_generated(a, &boot_a, &worker_a, &seq_a);
    parse_generated(b, &boot_b, &worker_b, &seq_b);
    assert_int_equal(boot_a, boot_b);
    assert_int_equal(worker_a, 0); /* the memory worker is worker 0 */
    assert_int_equal(worker_b, 0);
    assert_int_equal(seq_b, seq_a + 1);
    hp_memserver_close(&m);
}

static void a_well_formed_incoming_id_is_kept(void **state)
{
    hp_memserver_t m;
    hp_memserver_open(&m, NULL);
    char id[160];
    id_of(&m, "X-Request-Id: abc-123_x.y:z/+=\r\n", id, sizeof(id));
    assert_string_equal(id, "abc-123_x.y:z/+=");
    /* What the parser does not keep (a space; 129 bytes) is replaced. */
    id_of(&m, "X-Request-Id: a b\r\n", id, sizeof(id));
    assert_string_not_equal(id, "a b");
    unsigned boot, worker;
    unsigned long long seq;
    parse_generated(id, &boot, &worker, &seq);
    char hdr[200];
    snprintf(hdr, sizeof(hdr), "X-Request-Id: %0129d\r\n", 0);
    id_of(&m, hdr, id, sizeof(id));
    parse_generated(id, &boot, &worker, &seq);
    hp_memserver_close(&m);
}

static void trust_incoming_off_replaces_every_id(void **state)
{
    hp_memserver_t m;
    hp_memserver_open(&m,
                      "{\"middleware\": [{\"name\": \"request_id\", \"trust_incoming\": false}]}");
    char id[160];
    id_of(&m, "X-Request-Id: from-the-client\r\n", id, sizeof(id));
    unsigned boot, worker;
    unsigned long long seq;
    parse_generated(id, &boot, &worker, &seq);
    hp_memserver_close(&m);
}

static void bad_options_are_refused_by_name(void **state)
{
    static const struct {
        const char *json;
        const char *msg;
    } bad[] = {
        {"{\"middleware\": [{\"name\": \"request_id\", \"trust_incoming\": \"yes\"}]}",
         "middleware[0].trust_incoming: expected true or false"},
        {"{\"middleware\": [{\"name\": \"server_headers\"}, {\"name\": \"request_id\", \"trust\": "
         "true}]}",
         "middleware[1].trust: unknown key"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        hp_assert_config_refused(bad[i].json, bad[i].msg);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(generated_ids_count_requests),
        cmocka_unit_test(a_well_formed_incoming_id_is_kept),
        cmocka_unit_test(trust_incoming_off_replaces_every_id),
        cmocka_unit_test(bad_options_are_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
