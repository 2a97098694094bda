/*
 * bytes.h - copying and comparing short byte strings inline: the hot
 * path's pieces (header names and values, a route's path, a small body)
 * are 4 to 32 bytes, and a call into memcpy or memcmp costs about 20
 * instructions, more than the work. From 4 to 32 bytes two (or four)
 * overlapping fixed-size moves do it, which the compiler inlines; other
 * lengths go to the library. Both read exactly n bytes of each side.
 */
#ifndef HP_BYTES_H
#define HP_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Copy n bytes of s to p; return p + n. Two compares pick the moves for
 * the common lengths. */
static inline char *hp_bytes_put(char *p, const char *s, size_t n)
{
    if (n <= 16) {
        if (n >= 8) {
            uint64_t a, b;
            memcpy(&a, s, 8);
            memcpy(&b, s + n - 8, 8);
            memcpy(p, &a, 8);
            memcpy(p + n - 8, &b, 8);
        } else if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, s, 4);
            memcpy(&b, s + n - 4, 4);
            memcpy(p, &a, 4);
            memcpy(p + n - 4, &b, 4);
        } else {
            memcpy(p, s, n);
        }
    } else if (n <= 32) {
        uint64_t a[2], b[2];
        memcpy(a, s, 16);
        memcpy(b, s + n - 16, 16);
        memcpy(p, a, 16);
        memcpy(p + n - 16, b, 16);
    } else {
        memcpy(p, s, n);
    }
    return p + n;
}

/* Whether a[0..n) and b[0..n) are the same bytes. */
static inline bool hp_bytes_eq(const char *a, const char *b, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&a1, a + n - 8, 8);
        memcpy(&b0, b, 8);
        memcpy(&b1, b + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (n >= 4 && n < 8) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4);
        memcpy(&a1, a + n - 4, 4);
        memcpy(&b0, b, 4);
        memcpy(&b1, b + n - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    return memcmp(a, b, n) == 0;
}

#endif
