/*
 * sbuf.h - a growable text buffer for the reporting endpoints (/, /stats,
 * /metrics, /advice). Not for the hot path: it allocates as it grows.
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

/* Returns owned: the text (hp_free it); b is empty afterwards. */
char *hp_sbuf_take(hp_sbuf_t *b, size_t *len);

#endif
