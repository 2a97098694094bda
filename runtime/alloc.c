/*
 * alloc.c - counted allocation (see alloc.h for the contract).
 *
 * The counters are thread-local pointers to single-writer blocks, so counting
 * costs two relaxed add-and-stores per allocation and no lock. Frees are
 * counted by number only: the size of a freed block is not known without
 * malloc_usable_size, and the figure users ask for is "how many allocations
 * does a request make", which the allocation side answers exactly.
 */
#include "alloc.h"

#include "counter.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static _Thread_local hp_alloc_stats_t tls_private;
static _Thread_local hp_alloc_stats_t *tls_stats;
_Thread_local hp_alloc_counter_t *hp_alloc_scope_;

static void charge(hp_alloc_source_t src, size_t n)
{
    hp_alloc_stats_t *s = tls_stats ? tls_stats : &tls_private;
    hp_counter_add(&s->by_source[src].count, 1);
    hp_counter_add(&s->by_source[src].bytes, n);
    if (hp_alloc_scope_) {
        hp_counter_add(&hp_alloc_scope_->count, 1);
        hp_counter_add(&hp_alloc_scope_->bytes, n);
    }
}

/* Called before the realloc, with the old pointer: after it, p must not be
 * read, not even compared (GCC's -Wuse-after-free says so at -O1). */
static void count_resize(void *p)
{
    if (p == NULL) return;
    hp_alloc_stats_t *s = tls_stats ? tls_stats : &tls_private;
    hp_counter_add(&s->resized, 1);
}

static void count_free(void *p)
{
    if (p == NULL) return;
    hp_alloc_stats_t *s = tls_stats ? tls_stats : &tls_private;
    hp_counter_add(&s->frees, 1);
}

static void *oom(size_t n)
{
    fprintf(stderr, "hotpath: out of memory allocating %zu bytes\n", n);
    abort();
}

void *hp_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) return oom(n);
    charge(HP_ALLOC_OWN, n);
    return p;
}

void *hp_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) return oom(n * size);
    charge(HP_ALLOC_OWN, n * size);
    return p;
}

void *hp_realloc(void *p, size_t n)
{
    if (n == 0) {
        hp_free(p);
        return NULL;
    }
    count_resize(p);
    void *q = realloc(p, n);
    if (q == NULL) return oom(n);
    charge(HP_ALLOC_OWN, n);
    return q;
}

void hp_free(void *p)
{
    count_free(p);
    free(p);
}

char *hp_strndup(const char *s, size_t n)
{
    char *d = hp_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* libuv's doors. libuv tolerates NULL from these (it reports UV_ENOMEM), but
 * hotpath's policy is one: out of memory aborts. */
static void *uv_malloc_cb(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) return oom(n);
    charge(HP_ALLOC_UV, n);
    return p;
}

static void *uv_realloc_cb(void *p, size_t n)
{
    count_resize(p);
    void *q = realloc(p, n);
    if (q == NULL && n != 0) return oom(n);
    charge(HP_ALLOC_UV, n);
    return q;
}

static void *uv_calloc_cb(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) return oom(n * size);
    charge(HP_ALLOC_UV, n * size);
    return p;
}

static void *cjson_malloc_cb(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) return oom(n);
    charge(HP_ALLOC_CJSON, n);
    return p;
}

void hp_alloc_install(void)
{
    static int installed;
    if (installed) return;
    installed = 1;
    if (uv_replace_allocator(uv_malloc_cb, uv_realloc_cb, uv_calloc_cb, hp_free) != 0) {
        fprintf(stderr, "hotpath: uv_replace_allocator failed (called after libuv use?)\n");
        abort();
    }
    cJSON_Hooks hooks = {.malloc_fn = cjson_malloc_cb, .free_fn = hp_free};
    cJSON_InitHooks(&hooks);
}

void hp_alloc_bind_thread(hp_alloc_stats_t *stats)
{
    tls_stats = stats;
}

const hp_alloc_stats_t *hp_alloc_thread_stats(void)
{
    return tls_stats ? tls_stats : &tls_private;
}

hp_alloc_counter_t hp_alloc_stats_sum(const hp_alloc_stats_t *stats)
{
    hp_alloc_counter_t sum = {0, 0};
    for (int i = 0; i < HP_ALLOC_SOURCES; i++) {
        sum.count += hp_counter_get(&stats->by_source[i].count);
        sum.bytes += hp_counter_get(&stats->by_source[i].bytes);
    }
    return sum;
}

uint64_t hp_alloc_stats_live(const hp_alloc_stats_t *stats)
{
    return hp_alloc_stats_sum(stats).count - hp_counter_get(&stats->frees) -
           hp_counter_get(&stats->resized);
}
