/*
 * test_http.c - server/http.c: the one table of rejection reasons (status,
 * message, name for every reason, and what an out-of-range one reads as),
 * the reason phrases, and the string slice helpers.
 */
#include "server/http.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void every_rejection_has_a_status_a_message_and_a_name(void **state)
{
    static const struct {
        hp_reject_t why;
        uint16_t status;
        const char *name;
    } want[] = {
        {HP_REJECT_BAD_REQUEST, 400, "BAD_REQUEST"},
        {HP_REJECT_BAD_HEADER, 400, "BAD_HEADER"},
        {HP_REJECT_BAD_BODY, 400, "BAD_BODY"},
        {HP_REJECT_CHUNK_EXT_TOO_LONG, 400, "CHUNK_EXT_TOO_LONG"},
        {HP_REJECT_HOST, 400, "HOST"},
        {HP_REJECT_HEADER_TIMEOUT, 408, "HEADER_TIMEOUT"},
        {HP_REJECT_BODY_TIMEOUT, 408, "BODY_TIMEOUT"},
        {HP_REJECT_BODY_TOO_LARGE, 413, "BODY_TOO_LARGE"},
        {HP_REJECT_URI_TOO_LONG, 414, "URI_TOO_LONG"},
        {HP_REJECT_HEADERS_TOO_LARGE, 431, "HEADERS_TOO_LARGE"},
        {HP_REJECT_TOO_MANY_HEADERS, 431, "TOO_MANY_HEADERS"},
        {HP_REJECT_NOT_IMPLEMENTED, 501, "NOT_IMPLEMENTED"},
        {HP_REJECT_VERSION, 505, "VERSION"},
    };
    /* The table above covers the enum: a reason added without a row here
     * fails this count. */
    assert_int_equal(sizeof(want) / sizeof(want[0]), HP_REJECT_COUNT - 1);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(hp_reject_status(want[i].why), want[i].status);
        assert_string_equal(hp_reject_name(want[i].why), want[i].name);
        const char *msg = hp_reject_message(want[i].why);
        /* One line of text for the body: no newline of its own (the writer
         * adds one), nothing empty. */
        assert_true(strlen(msg) > 0);
        assert_null(strchr(msg, '\n'));
    }
    assert_string_equal(hp_reject_message(HP_REJECT_VERSION), "HTTP version not supported");
    assert_string_equal(hp_reject_name(HP_REJECT_NONE), "NONE");
}

static void an_unknown_rejection_reads_as_a_bad_request(void **state)
{
    hp_reject_t past = (hp_reject_t)(HP_REJECT_COUNT + 3);
    assert_int_equal(hp_reject_status(past), 400);
    assert_string_equal(hp_reject_message(past), "malformed request");
    assert_string_equal(hp_reject_name(past), "BAD_REQUEST");
}

static void status_reasons(void **state)
{
    static const struct {
        unsigned status;
        const char *reason;
    } want[] = {
        {100, "Continue"},
        {200, "OK"},
        {204, "No Content"},
        {304, "Not Modified"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {413, "Content Too Large"},
        {431, "Request Header Fields Too Large"},
        {499, "Client Error"}, /* nginx's, not a registered code: its class */
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {299, "OK"},
        {399, "Redirect"},
        {599, "Server Error"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(hp_status_reason(want[i].status), want[i].reason);
}

static void string_slices(void **state)
{
    hp_str_t s = HP_STR("/plaintext");
    assert_int_equal(s.len, 10);
    assert_true(hp_str_eq(s, "/plaintext", 10));
    assert_false(hp_str_eq(s, "/plaintex", 9));
    assert_false(hp_str_eq(s, "/plaintexT", 10));
    hp_str_t empty = {"", 0};
    assert_true(hp_str_eq(empty, "", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_rejection_has_a_status_a_message_and_a_name),
        cmocka_unit_test(an_unknown_rejection_reads_as_a_bad_request),
        cmocka_unit_test(status_reasons),
        cmocka_unit_test(string_slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
