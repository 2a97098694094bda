/*
 * test_alloc.c - unit tests for runtime/alloc.c, the counted allocator.
 *
 * The allocation figures in /stats are only as good as these counts, so each
 * of the three doors to the heap is checked on its own: hotpath's hp_malloc
 * family (calls and bytes, exactly), libuv's allocator once installed with
 * uv_replace_allocator, and cJSON's once installed with cJSON_InitHooks. Then
 * the things built on top: per-thread blocks, binding, and the scope that
 * charges a request's allocations to its route and mode.
 *
 * hp_alloc_install() runs first in main, before any libuv or cJSON call, as
 * it must in the server.
 */
#include "runtime/alloc.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tests/support/counters.h"
#include <uv.h>

static uint64_t door_count(hp_alloc_source_t src)
{
    return hp_alloc_thread_stats()->by_source[src].count;
}

static uint64_t door_bytes(hp_alloc_source_t src)
{
    return hp_alloc_thread_stats()->by_source[src].bytes;
}

/* --- hotpath's own door --------------------------------------------------- */

static void *do_malloc(void)
{
    return hp_malloc(100);
}

static void *do_malloc_zero(void)
{
    return hp_malloc(0);
}

static void *do_calloc(void)
{
    return hp_calloc(3, 8);
}

static void *do_realloc_null(void)
{
    return hp_realloc(NULL, 64);
}

static void *do_strndup(void)
{
    return hp_strndup("hello", 3);
}

static const struct {
    const char *name;
    void *(*op)(void);
    uint64_t bytes; /* what the call asked for */
} own_cases[] = {
    {"hp_malloc(100)", do_malloc, 100},          {"hp_malloc(0)", do_malloc_zero, 0},
    {"hp_calloc(3, 8)", do_calloc, 24},          {"hp_realloc(NULL, 64)", do_realloc_null, 64},
    {"hp_strndup(\"hello\", 3)", do_strndup, 4},
};

static void own_door_counts_each_call_and_its_bytes(void **state)
{
    for (size_t i = 0; i < sizeof(own_cases) / sizeof(own_cases[0]); i++) {
        uint64_t c0 = door_count(HP_ALLOC_OWN), b0 = door_bytes(HP_ALLOC_OWN), f0 = hp_test_frees();
        void *p = own_cases[i].op();
        assert_non_null(p); /* never NULL, even for 0 bytes */
        if (door_count(HP_ALLOC_OWN) - c0 != 1) fail_msg("%s: not counted once", own_cases[i].name);
        assert_int_equal(door_bytes(HP_ALLOC_OWN) - b0, own_cases[i].bytes);
        hp_free(p);
        assert_int_equal(hp_test_frees() - f0, 1);
    }
    /* Nothing leaked into the other doors. */
    assert_int_equal(door_count(HP_ALLOC_UV), 0);
    assert_int_equal(door_count(HP_ALLOC_CJSON), 0);
}

static void calloc_zeroes_and_strndup_terminates(void **state)
{
    unsigned char *z = hp_calloc(16, 4);
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    char *s = hp_strndup("hello", 3);
    assert_string_equal(s, "hel");
    char *whole = hp_strndup("abc", 3);
    assert_string_equal(whole, "abc");
    hp_free(z);
    hp_free(s);
    hp_free(whole);
    assert_int_equal(door_count(HP_ALLOC_OWN), 3);
    assert_int_equal(hp_test_frees(), 3);
}

static void realloc_growth_is_counted_as_an_allocation(void **state)
{
    char *p = hp_realloc(NULL, 16);
    memcpy(p, "0123456789abcde", 16);
    p = hp_realloc(p, 64 * 1024);
    assert_string_equal(p, "0123456789abcde"); /* contents moved with it */
    assert_int_equal(door_count(HP_ALLOC_OWN), 2);
    assert_int_equal(door_bytes(HP_ALLOC_OWN), 16 + 64 * 1024);
    assert_int_equal(hp_test_frees(), 0); /* realloc's own release of the old block is not a free */
    hp_free(p);
    assert_int_equal(hp_test_frees(), 1);
}

static void free_of_null_is_not_counted(void **state)
{
    hp_free(NULL);
    assert_int_equal(hp_test_frees(), 0);
}

static void stats_sum_adds_the_three_doors(void **state)
{
    hp_alloc_stats_t s = {.frees = 9};
    s.by_source[HP_ALLOC_OWN] = (hp_alloc_counter_t){1, 10};
    s.by_source[HP_ALLOC_UV] = (hp_alloc_counter_t){20, 200};
    s.by_source[HP_ALLOC_CJSON] = (hp_alloc_counter_t){300, 3000};
    hp_alloc_counter_t sum = hp_alloc_stats_sum(&s);
    assert_int_equal(sum.count, 321);
    assert_int_equal(sum.bytes, 3210);
}

/* --- thread blocks and binding -------------------------------------------- */

static void bind_redirects_and_unbind_restores_the_private_block(void **state)
{
    hp_alloc_stats_t other = {0};
    hp_alloc_bind_thread(&other);
    assert_ptr_equal(hp_alloc_thread_stats(), &other);
    hp_free(hp_malloc(8));
    assert_int_equal(other.by_source[HP_ALLOC_OWN].count, 1);
    assert_int_equal(other.frees, 1);
    assert_int_equal(hp_test_alloc.by_source[HP_ALLOC_OWN].count, 0);

    hp_alloc_bind_thread(NULL);
    const hp_alloc_stats_t *priv = hp_alloc_thread_stats();
    assert_ptr_not_equal(priv, &other);
    assert_ptr_not_equal(priv, &hp_test_alloc);
    uint64_t c0 = priv->by_source[HP_ALLOC_OWN].count;
    hp_free(hp_malloc(8));
    assert_int_equal(priv->by_source[HP_ALLOC_OWN].count, c0 + 1);
    assert_int_equal(other.by_source[HP_ALLOC_OWN].count, 1);
}

static void *thread_allocates(void *arg)
{
    for (int i = 0; i < 5; i++)
        hp_free(hp_malloc(32));
    /* An unbound thread counts into its own private block, from zero. */
    *(uint64_t *)arg = hp_alloc_thread_stats()->by_source[HP_ALLOC_OWN].count;
    return NULL;
}

static void other_threads_count_into_their_own_blocks(void **state)
{
    pthread_t th;
    uint64_t theirs = 0;
    assert_int_equal(pthread_create(&th, NULL, thread_allocates, &theirs), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(theirs, 5);
    assert_int_equal(door_count(HP_ALLOC_OWN), 0);
    assert_int_equal(hp_test_frees(), 0);
}

/* --- scopes --------------------------------------------------------------- */

static void scope_charges_what_runs_under_it(void **state)
{
    hp_alloc_counter_t route = {0, 0};
    hp_free(hp_malloc(1)); /* before: not the scope's */
    assert_null(hp_alloc_scope_set(&route));
    assert_ptr_equal(hp_alloc_scope_get(), &route);
    void *a = hp_malloc(10);
    void *b = hp_calloc(2, 5);
    assert_ptr_equal(hp_alloc_scope_set(NULL), &route);
    hp_free(hp_malloc(1000)); /* after: not the scope's either */
    assert_int_equal(route.count, 2);
    assert_int_equal(route.bytes, 20);
    /* Thread totals still see everything. */
    assert_int_equal(door_count(HP_ALLOC_OWN), 4);
    hp_free(a);
    hp_free(b);
}

static void nested_scopes_restore_the_outer_one(void **state)
{
    hp_alloc_counter_t outer = {0, 0}, inner = {0, 0};
    hp_alloc_counter_t *prev_outer = hp_alloc_scope_set(&outer);
    hp_free(hp_malloc(1));
    hp_alloc_counter_t *prev_inner = hp_alloc_scope_set(&inner);
    assert_ptr_equal(prev_inner, &outer);
    hp_free(hp_malloc(2));
    hp_free(hp_malloc(3));
    assert_ptr_equal(hp_alloc_scope_set(prev_inner), &inner);
    assert_ptr_equal(hp_alloc_scope_get(), &outer);
    hp_free(hp_malloc(4));
    assert_ptr_equal(hp_alloc_scope_set(prev_outer), &outer);
    assert_null(hp_alloc_scope_get());
    hp_free(hp_malloc(5));

    /* Inner allocations are charged to the inner scope only, not both. */
    assert_int_equal(outer.count, 2);
    assert_int_equal(outer.bytes, 1 + 4);
    assert_int_equal(inner.count, 2);
    assert_int_equal(inner.bytes, 2 + 3);
    assert_int_equal(door_count(HP_ALLOC_OWN), 5);
}

/* The scope sees the libuv and cJSON doors too: a request's figure is the
 * sum over all three. */
static void scope_charges_every_door(void **state)
{
    hp_alloc_counter_t req = {0, 0};
    hp_alloc_scope_set(&req);
    hp_free(hp_malloc(7));
    cJSON *obj = cJSON_CreateObject();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    cJSON_Delete(obj);
    hp_alloc_scope_set(NULL);

    hp_alloc_counter_t sum = hp_alloc_stats_sum(hp_alloc_thread_stats());
    assert_true(door_count(HP_ALLOC_UV) > 0);
    assert_true(door_count(HP_ALLOC_CJSON) > 0);
    assert_int_equal(req.count, sum.count);
    assert_int_equal(req.bytes, sum.bytes);
}

/* --- libuv's door --------------------------------------------------------- */

static void timer_fired_cb(uv_timer_t *timer)
{
    (*(int *)timer->data)++;
    uv_close((uv_handle_t *)timer, NULL);
}

/* A loop that runs one timer to its close: the loop's own state comes from
 * libuv's allocator, and closing it gives that back through hp_free. */
static uint64_t loop_cycle_uv_allocs(void)
{
    uint64_t c0 = door_count(HP_ALLOC_UV), f0 = hp_test_frees();
    uv_loop_t loop;
    uv_timer_t timer;
    int fired = 0;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_timer_init(&loop, &timer), 0);
    timer.data = &fired;
    assert_int_equal(uv_timer_start(&timer, timer_fired_cb, 0, 0), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(fired, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_true(hp_test_frees() - f0 > 0);
    return door_count(HP_ALLOC_UV) - c0;
}

static void libuv_door_is_counted_and_deterministic(void **state)
{
    uint64_t first = loop_cycle_uv_allocs();
    assert_true(first > 0);
    assert_int_equal(loop_cycle_uv_allocs(), first);
    assert_int_equal(door_count(HP_ALLOC_OWN), 0);
    assert_int_equal(door_count(HP_ALLOC_CJSON), 0);
}

/* --- cJSON's door --------------------------------------------------------- */

static void cjson_door_counts_nodes_and_frees_them(void **state)
{
    cJSON *obj = cJSON_CreateObject();
    assert_int_equal(door_count(HP_ALLOC_CJSON), 1); /* one node */
    assert_int_equal(door_bytes(HP_ALLOC_CJSON), sizeof(cJSON));
    assert_non_null(cJSON_AddStringToObject(obj, "message", "Hello, World!"));
    uint64_t built = door_count(HP_ALLOC_CJSON);
    assert_true(built > 1);

    char *text = cJSON_PrintUnformatted(obj);
    assert_string_equal(text, "{\"message\":\"Hello, World!\"}");
    assert_true(door_count(HP_ALLOC_CJSON) > built);
    cJSON_free(text);
    cJSON_Delete(obj);
    /* cJSON never reallocates through these hooks, so every block it asked
     * for is one it gave back. */
    assert_int_equal(hp_test_frees(), door_count(HP_ALLOC_CJSON));
    assert_int_equal(door_count(HP_ALLOC_OWN), 0);
    assert_int_equal(door_count(HP_ALLOC_UV), 0);
}

/* How /json can serialize without allocating: nodes on the stack, printed
 * into a caller's buffer. */
static void cjson_print_preallocated_on_stack_nodes_makes_no_allocation(void **state)
{
    cJSON message = {
        .type = cJSON_String | cJSON_StringIsConst,
        .string = "message",
        .valuestring = "Hello, World!",
    };
    cJSON root = {.type = cJSON_Object, .child = &message};
    char buf[128];
    assert_true(cJSON_PrintPreallocated(&root, buf, (int)sizeof(buf), 0));
    assert_string_equal(buf, "{\"message\":\"Hello, World!\"}");
    assert_int_equal(hp_alloc_stats_sum(hp_alloc_thread_stats()).count, 0);
    assert_int_equal(hp_test_frees(), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, hp_test_counters_setup, hp_test_counters_teardown)

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        T(own_door_counts_each_call_and_its_bytes),
        T(calloc_zeroes_and_strndup_terminates),
        T(realloc_growth_is_counted_as_an_allocation),
        T(free_of_null_is_not_counted),
        T(stats_sum_adds_the_three_doors),
        T(bind_redirects_and_unbind_restores_the_private_block),
        T(other_threads_count_into_their_own_blocks),
        T(scope_charges_what_runs_under_it),
        T(nested_scopes_restore_the_outer_one),
        T(scope_charges_every_door),
        T(libuv_door_is_counted_and_deterministic),
        T(cjson_door_counts_nodes_and_frees_them),
        T(cjson_print_preallocated_on_stack_nodes_makes_no_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
