/*
 * stats.c - what a statistics table says about a row (see stats.h).
 */
#include "stats.h"

#include <string.h>

const hp_stat_group_t *hp_stat_group(const hp_stats_table_t *t, const hp_stat_t *row,
                                     const char **rest)
{
    for (size_t i = 0; i < t->ngroups; i++) {
        size_t n = strlen(t->groups[i].prefix);
        if (strncmp(row->name, t->groups[i].prefix, n) == 0 && row->name[n] == '_') {
            *rest = row->name + n + 1;
            return &t->groups[i];
        }
    }
    *rest = row->name;
    return NULL;
}
