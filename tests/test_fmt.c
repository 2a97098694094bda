/*
 * test_fmt.c - runtime/fmt.h: numbers written as text without printf, at
 * their edges (0, the largest), in decimal and hex.
 */
#include "runtime/fmt.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
    /* Every width, at its edges: 10^k - 1, 10^k, 10^k + 1, and an odd
     * digit count's last pair. */
    for (uint64_t p10 = 1, k = 0; k < 20; k++, p10 *= 10) {
        for (uint64_t n = p10 - 1; n <= p10 + 1; n++) {
            char want[32];
            snprintf(want, sizeof(want), "%llu", (unsigned long long)n);
            *hp_fmt_u64(buf, n) = '\0';
            assert_string_equal(buf, want);
        }
    }
    for (uint64_t p16 = 1, k = 0; k < 16; k++, p16 *= 16) {
        for (uint64_t n = p16 - 1; n <= p16 + 1; n++) {
            char want[32];
            snprintf(want, sizeof(want), "%llx", (unsigned long long)n);
            *hp_fmt_hex(buf, n) = '\0';
            assert_string_equal(buf, want);
        }
    }
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
