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
    int digits = n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : n < 10000 ? 4 : 5;
    for (uint64_t t = n / 100000; t; t /= 10)
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
 * places, last first, two at a time: no scratch copy (a request id's
 * number costs a third). */
static inline char *hp_fmt_hex(char *p, uint64_t n)
{
    static const char pairs[513] =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    int digits = n ? (64 - __builtin_clzll(n) + 3) / 4 : 1;
    char *end = p + digits, *q = end;
    while (n >= 256) {
        unsigned b = (unsigned)(n & 255);
        n >>= 8;
        *--q = pairs[2 * b + 1];
        *--q = pairs[2 * b];
    }
    if (n >= 16) {
        *--q = pairs[2 * n + 1];
        *--q = pairs[2 * n];
    } else {
        *--q = "0123456789abcdef"[n];
    }
    return end;
}

#endif
