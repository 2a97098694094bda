/*
 * counters.h - fresh allocation and runtime counters for each unit test:
 * a cmocka setup that zeroes two blocks and binds them to the calling
 * thread, so "allocations" in a test means the allocations that test made.
 */
#ifndef HP_TEST_COUNTERS_H
#define HP_TEST_COUNTERS_H

#include "runtime/alloc.h"
#include "runtime/task.h"

#include <stdint.h>

/* The blocks bound while a test runs. */
extern hp_alloc_stats_t hp_test_alloc;
extern hp_runtime_stats_t hp_test_rt;

/* cmocka setup / teardown. */
int hp_test_counters_setup(void **state);
int hp_test_counters_teardown(void **state);

/* Allocation calls through every door, and frees, since the setup. */
uint64_t hp_test_allocs(void);
uint64_t hp_test_frees(void);

#endif
