/*
 * stats.h - a statistics block and the one table that names it.
 *
 * A block is a struct of uint64_t counters (counter.h: one writer, any
 * reader). Its module declares it once, as an X-macro list of
 * XX(name, kind, help) - kind being counter (only grows) or gauge - from
 * which both the struct (HP_STAT_FIELD) and its table (HP_STAT_ROW) are
 * generated. Whoever reports the block - /stats as JSON, /metrics as
 * Prometheus text (handlers/stats.c) - walks the table, so a figure is
 * named once and cannot be in one report and missing from the other:
 *
 *   JSON        "<table>": {"<name>": n, ...}; a row whose name starts with
 *               a group's prefix sits in that group's object, under the
 *               rest of its name ("errors_connect" -> "errors": {"connect"})
 *   Prometheus  hotpath_<table>_<name>[_total]; a group with a label is one
 *               family, hotpath_<table>_<group>[_total]{<label>="<rest>"}
 *
 * Blocks of one table are summed word by word across workers, so a block
 * holds nothing but uint64_t; a struct may end with counters its table
 * does not list (a histogram: the report renders those itself).
 */
#ifndef HP_STATS_H
#define HP_STATS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    HP_STAT_COUNTER = 0, /* only grows */
    HP_STAT_GAUGE = 1,   /* goes up and down */
} hp_stat_kind_t;

/* The lists spell kinds as Prometheus does. */
#define HP_STAT_KIND_counter HP_STAT_COUNTER
#define HP_STAT_KIND_gauge   HP_STAT_GAUGE

typedef struct {
    const char *name; /* the struct field's name */
    hp_stat_kind_t kind;
    const char *help; /* one line, Prometheus's HELP */
    size_t offset;
} hp_stat_t;

/* Rows whose names start with "<prefix>_" belong together. */
typedef struct {
    const char *prefix; /* "errors" */
    const char *label;  /* NULL: the rows stay families of their own; else
                           one family, the rest of the name in this label */
} hp_stat_group_t;

typedef struct {
    const char *name; /* the block's key in /stats, its prefix in /metrics */
    size_t size;      /* bytes of one block (a multiple of 8) */
    const hp_stat_t *rows;
    size_t nrows;
    const hp_stat_group_t *groups;
    size_t ngroups;
} hp_stats_table_t;

/* XX(name, kind, help) as a struct member and as a table row of type. */
#define HP_STAT_FIELD(name, kind, help) uint64_t name;
#define HP_STAT_ROW(type, name, kind, help)                                                        \
    {#name, HP_STAT_KIND_##kind, help, offsetof(type, name)},

/* A counter of block by its row. */
static inline const uint64_t *hp_stat_at(const void *block, const hp_stat_t *row)
{
    return (const uint64_t *)((const char *)block + row->offset);
}

/* The group row belongs to (NULL for none), and its name within it. */
const hp_stat_group_t *hp_stat_group(const hp_stats_table_t *t, const hp_stat_t *row,
                                     const char **rest);

#endif
