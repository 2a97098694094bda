/*
 * sbuf.h - a growable text buffer for the reporting endpoints (/, /stats,
 * /metrics, /advice) and the upstream stub's answers. Not for the hot
 * path: it allocates as it grows (doubling, from 1 KiB).
 */
#ifndef HP_SBUF_H
#define HP_SBUF_H

#include <stddef.h>

typedef struct {
    char *data; /* NUL-terminated, hp_malloc'd */
    size_t len, cap;
} hp_sbuf_t;

/* Append printf-style. */
void hp_sbuf_printf(hp_sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append n bytes of p (any bytes, NULs included). */
void hp_sbuf_add(hp_sbuf_t *b, const char *p, size_t n);

/* Make room for n more bytes and count them as written: returns where they
 * go, for the caller to fill before the next call. */
char *hp_sbuf_extend(hp_sbuf_t *b, size_t n);

/* Drop everything written, keeping the memory. */
static inline void hp_sbuf_clear(hp_sbuf_t *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

/* Returns owned: the text (hp_free it); b is empty afterwards. */
char *hp_sbuf_take(hp_sbuf_t *b, size_t *len);

#endif
