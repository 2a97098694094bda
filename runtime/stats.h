/*
 * stats.h - a statistics block and the table that describes it: a struct
 * of uint64_t counters (counter.h: one writer, any reader), named once so
 * that whoever reports it - /stats, /metrics - finds every figure, its
 * name and its kind in one place.
 *
 * Blocks of the same table are summed word by word across workers, so a
 * block holds nothing but uint64_t.
 */
#ifndef HP_STATS_H
#define HP_STATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name; /* the block's name: its key in /stats, its prefix in /metrics */
    size_t size;      /* bytes of one block (a multiple of 8) */
} hp_stats_table_t;

#endif
