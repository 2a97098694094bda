/*
 * test_fmt.c - runtime/fmt.h: numbers written as text without printf, at
 * their edges (0, the largest), in decimal and hex.
 */
#include "runtime/fmt.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void numbers(void **state)
{
    char buf[32];
    *hp_fmt_u64(buf, 0) = '\0';
    assert_string_equal(buf, "0");
    *hp_fmt_u64(buf, 1234567890) = '\0';
    assert_string_equal(buf, "1234567890");
    *hp_fmt_u64(buf, UINT64_MAX) = '\0';
    assert_string_equal(buf, "18446744073709551615");
    *hp_fmt_hex(buf, 0) = '\0';
    assert_string_equal(buf, "0");
    *hp_fmt_hex(buf, 0xbeef) = '\0';
    assert_string_equal(buf, "beef");
    *hp_fmt_hex(buf, UINT64_MAX) = '\0';
    assert_string_equal(buf, "ffffffffffffffff");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
