/*
 * fmt.h - numbers as text, without printf: for the paths that write a
 * length, a chunk size or a request number per request (the response
 * writer, request ids, the access log). Inline, and no locale.
 */
#ifndef HP_FMT_H
#define HP_FMT_H

#include <stdint.h>

/* Write n in decimal at p (20 bytes at most); return the end. The width
 * is counted first, so the digits go straight to their places, last first,
 * two at a time from a table: a body length (two or three digits) costs a
 * third of a digit-at-a-time loop through a scratch copy. */
static inline char *hp_fmt_u64(char *p, uint64_t n)
{
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324"
                                   "25262728293031323334353637383940414243444546474849"
                                   "50515253545556575859606162636465666768697071727374"
                                   "75767778798081828384858687888990919293949596979899";
    int digits = 1;
    for (uint64_t t = n; t >= 10; t /= 10)
        digits++;
    char *end = p + digits, *q = end;
    while (n >= 100) {
        unsigned r = (unsigned)(n % 100);
        n /= 100;
        *--q = pairs[2 * r + 1];
        *--q = pairs[2 * r];
    }
    if (n >= 10) {
        *--q = pairs[2 * n + 1];
        *--q = pairs[2 * n];
    } else {
        *--q = (char)('0' + n);
    }
    return end;
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
