/*
 * alloc.h - the counted allocator every request-path allocation goes through.
 *
 * Three doors lead to the heap and all three are counted here: hotpath's own
 * hp_malloc family, libuv's allocator (installed with uv_replace_allocator)
 * and cJSON's (installed with cJSON_InitHooks). hp_alloc_install() must run
 * once, on the main thread, before any other libuv or cJSON call.
 *
 * Counts are per thread: each worker binds its own hp_alloc_stats_t, so the
 * request path never shares a cache line with another worker. On top of the
 * thread totals, the calling thread may name a *scope* that allocations are
 * also charged to; the server points it at the route and mode of the request
 * it is running, which is how /stats reports allocations per request exactly.
 *
 * Allocation never fails from the caller's point of view: out of memory
 * aborts with a message (as Redis's zmalloc does), so callers do not test for
 * NULL.
 */
#ifndef HP_ALLOC_H
#define HP_ALLOC_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    HP_ALLOC_OWN = 0, /* hp_malloc and friends */
    HP_ALLOC_UV,      /* libuv, through uv_replace_allocator */
    HP_ALLOC_CJSON,   /* cJSON, through cJSON_InitHooks */
    HP_ALLOC_SOURCES
} hp_alloc_source_t;

/* What one scope is charged: allocation calls and bytes requested. */
typedef struct {
    uint64_t count;
    uint64_t bytes;
} hp_alloc_counter_t;

/* A thread's totals, by door. Written only by its thread (see counter.h). */
typedef struct {
    hp_alloc_counter_t by_source[HP_ALLOC_SOURCES];
    uint64_t frees;
    uint64_t resized; /* reallocs of a live block: an allocation, not a free */
} hp_alloc_stats_t;

/* Blocks allocated and not yet freed (for leak checks over a quiet period:
 * exact on one thread, approximate when blocks cross threads). */
uint64_t hp_alloc_stats_live(const hp_alloc_stats_t *stats);

/* Install the libuv and cJSON hooks. Call once before any uv_* or cJSON_*. */
void hp_alloc_install(void);

/* Never return NULL (abort on out-of-memory), except hp_realloc(p, 0),
 * which frees p and returns NULL. hp_free(NULL) is a no-op. Every
 * hp_realloc call with n > 0 counts as one allocation of n bytes. */
void *hp_malloc(size_t n);
void *hp_calloc(size_t n, size_t size);
void *hp_realloc(void *p, size_t n);
void hp_free(void *p);

/* Returns owned: a NUL-terminated copy of s[0..n); free with hp_free. */
char *hp_strndup(const char *s, size_t n);

/* Point the calling thread's totals at stats (borrowed; must outlive every
 * allocation the thread makes afterwards). Threads that never bind count
 * into a private thread-local block. */
void hp_alloc_bind_thread(hp_alloc_stats_t *stats);

/* The calling thread's totals (borrowed). */
const hp_alloc_stats_t *hp_alloc_thread_stats(void);

/* Sum of a stats block over the three doors, read with relaxed loads so any
 * thread may call it on any worker's block. */
hp_alloc_counter_t hp_alloc_stats_sum(const hp_alloc_stats_t *stats);

/* Charge the calling thread's following allocations to scope as well
 * (borrowed; NULL for none), and return the scope it replaces. The server
 * sets it at each event-loop entry (server/conn.c: enter, leave), so the
 * account follows where the loop is and nothing is restored by hand; a
 * module whose own callbacks charge a caller's account (the upstream
 * client's, the L2 client's) restores what it found. */
extern _Thread_local hp_alloc_counter_t *hp_alloc_scope_; /* alloc.c's; inline for the calls */
static inline hp_alloc_counter_t *hp_alloc_scope_set(hp_alloc_counter_t *scope)
{
    hp_alloc_counter_t *prev = hp_alloc_scope_;
    hp_alloc_scope_ = scope;
    return prev;
}
static inline hp_alloc_counter_t *hp_alloc_scope_get(void)
{
    return hp_alloc_scope_;
}

#endif
