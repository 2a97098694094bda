/*
 * counters.c - per-test counter blocks (see counters.h).
 */
#include "counters.h"

#include <string.h>

hp_alloc_stats_t hp_test_alloc;
hp_runtime_stats_t hp_test_rt;

int hp_test_counters_setup(void **state)
{
    memset(&hp_test_alloc, 0, sizeof(hp_test_alloc));
    memset(&hp_test_rt, 0, sizeof(hp_test_rt));
    hp_alloc_bind_thread(&hp_test_alloc);
    hp_runtime_bind_thread(&hp_test_rt);
    return 0;
}

int hp_test_counters_teardown(void **state)
{
    hp_alloc_bind_thread(NULL);
    hp_runtime_bind_thread(NULL);
    return 0;
}

uint64_t hp_test_allocs(void)
{
    return hp_alloc_stats_sum(hp_alloc_thread_stats()).count;
}

uint64_t hp_test_frees(void)
{
    return hp_alloc_thread_stats()->frees;
}
