/*
 * fmt.h - numbers as text, without printf: for the paths that write a
 * length, a chunk size or a request number per request (the response
 * writer, request ids, the access log). Inline, and no locale.
 */
#ifndef HP_FMT_H
#define HP_FMT_H

#include <stdint.h>

/* Write n in decimal at p (20 bytes at most); return the end. */
static inline char *hp_fmt_u64(char *p, uint64_t n)
{
    char tmp[20];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    while (i)
        *p++ = tmp[--i];
    return p;
}

/* Write n in lowercase hex at p (16 bytes at most); return the end. The
 * width comes from the highest set bit, so the digits go straight to their
 * places, last first: no scratch copy (a request id's number costs half). */
static inline char *hp_fmt_hex(char *p, uint64_t n)
{
    int digits = n ? (64 - __builtin_clzll(n) + 3) / 4 : 1;
    char *end = p + digits;
    do {
        *--end = "0123456789abcdef"[n & 15];
        n >>= 4;
    } while (n);
    return p + digits;
}

#endif
