/*
 * buf.h - hp_buf, an immutable, reference-counted byte buffer with the HTTP
 * status and content type it was produced with.
 *
 * The currency between the upstream client, the cache and the response
 * writer: an upstream response becomes an hp_buf, the cache stores that same
 * buffer, and every hit writes from it without copying or allocating. One
 * allocation holds the header, the content type and the body.
 *
 * Threading: refcounts are not atomic; a buffer belongs to one worker.
 */
#ifndef HP_BUF_H
#define HP_BUF_H

#include "task.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t refs;
    uint16_t status; /* HTTP status that produced it; 200 for plain data */
    uint16_t ctype_len;
    size_t len;        /* body bytes */
    const char *ctype; /* points into data[], NUL-terminated */
    char *body;        /* points into data[]; writable only before sharing */
    char data[];
} hp_buf_t;

/* Returns owned (one reference): a buffer with room for len body bytes,
 * the content type copied in. Fill body[] before handing it to anyone. */
hp_buf_t *hp_buf_new(uint16_t status, const char *ctype, size_t ctype_len, size_t len);

static inline hp_buf_t *hp_buf_ref(hp_buf_t *b)
{
    b->refs++;
    return b;
}

/* Drops a reference; the last frees. NULL is a no-op. */
void hp_buf_unref(hp_buf_t *b);

/* hp_task_set_dispose's callback for tasks whose result is an hp_buf_t *
 * they own (upstream responses, cache fills). */
void hp_buf_dispose(hp_value_t v);

/* Memory the buffer holds, header included (what a cache bound counts). */
size_t hp_buf_footprint(const hp_buf_t *b);

#endif
