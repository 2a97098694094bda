/*
 * buf.c - hp_buf (see buf.h).
 */
#include "buf.h"

#include "alloc.h"

#include <string.h>

hp_buf_t *hp_buf_new(uint16_t status, const char *ctype, size_t ctype_len, size_t len)
{
    if (ctype_len > UINT16_MAX) ctype_len = UINT16_MAX;
    hp_buf_t *b = hp_malloc(sizeof(*b) + ctype_len + 1 + len);
    b->refs = 1;
    b->status = status;
    b->ctype_len = (uint16_t)ctype_len;
    b->len = len;
    memcpy(b->data, ctype, ctype_len);
    b->data[ctype_len] = '\0';
    b->ctype = b->data;
    b->body = b->data + ctype_len + 1;
    return b;
}

void hp_buf_unref(hp_buf_t *b)
{
    if (b == NULL || --b->refs) return;
    hp_free(b);
}

size_t hp_buf_footprint(const hp_buf_t *b)
{
    return sizeof(*b) + b->ctype_len + 1 + b->len;
}

void hp_buf_dispose(hp_value_t v)
{
    hp_buf_unref(v.ptr);
}
