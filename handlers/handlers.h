/*
 * handlers.h - the endpoints. One file per endpoint family, one descriptor
 * each; handlers.c holds the route table that maps paths to them.
 *
 * The synchronous handlers (plaintext, json, echo, index, stats, advice,
 * dashboard, status) return valuetasks; cache returns a valuetask that is
 * inline on a hit and pending on a miss; upstream returns a heap task,
 * always.
 */
#ifndef HP_HANDLERS_H
#define HP_HANDLERS_H

#include "server/chain.h"
#include "runtime/task.h"

extern const hp_handler_t hp_handler_plaintext;
extern const hp_handler_t hp_handler_json;
extern const hp_handler_t hp_handler_echo;
extern const hp_handler_t hp_handler_index;
extern const hp_handler_t hp_handler_stats;
extern const hp_handler_t hp_handler_metrics;
extern const hp_handler_t hp_handler_advice;
extern const hp_handler_t hp_handler_dashboard;
extern const hp_handler_t hp_handler_dashboard_data;
extern const hp_handler_t hp_handler_cache;
extern const hp_handler_t hp_handler_upstream;
extern const hp_handler_t hp_handler_not_found;
extern const hp_handler_t hp_handler_method_not_allowed;
extern const hp_handler_t hp_handler_options;

/* The cache's fill function (hp_cache_fill_fn): fetch /items/{key} from the
 * upstream pool of the worker passed as arg; key is a normalized segment
 * (target.h). Returns an owned task whose result is an hp_buf_t * it owns;
 * an answer other than 2xx reaches the waiters but is not cached (the
 * cache checks). */
hp_task_t *hp_cache_fill(void *worker, const char *key, size_t key_len);

#endif
