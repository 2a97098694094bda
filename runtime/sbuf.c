/*
 * sbuf.c - growable text (see sbuf.h).
 */
#include "sbuf.h"

#include "alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Room for n more bytes and the NUL. */
static void reserve(hp_sbuf_t *b, size_t n)
{
    if (b->len + n < b->cap) return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->len <= n)
        cap *= 2;
    b->data = hp_realloc(b->data, cap);
    b->cap = cap;
}

char *hp_sbuf_extend(hp_sbuf_t *b, size_t n)
{
    reserve(b, n);
    char *at = b->data + b->len;
    b->len += n;
    b->data[b->len] = '\0';
    return at;
}

void hp_sbuf_add(hp_sbuf_t *b, const char *p, size_t n)
{
    memcpy(hp_sbuf_extend(b, n), p, n);
}

void hp_sbuf_printf(hp_sbuf_t *b, const char *fmt, ...)
{
    for (;;) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        reserve(b, (size_t)n);
    }
}

char *hp_sbuf_take(hp_sbuf_t *b, size_t *len)
{
    if (b->data == NULL) hp_sbuf_printf(b, "%s", "");
    char *d = b->data;
    *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
