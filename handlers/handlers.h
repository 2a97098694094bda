/*
 * handlers.h - the endpoints. One file per endpoint family, one descriptor
 * each; app/app.c routes paths to them.
 *
 * The synchronous handlers (plaintext, json, echo, index, stats, advice,
 * dashboard, status) return valuetasks; cache returns a valuetask that is
 * inline on a hit and pending on a miss; upstream returns a heap task,
 * always. The two that go upstream share one per-worker service, origin
 * (origin.h).
 */
#ifndef HP_HANDLERS_H
#define HP_HANDLERS_H

#include "server/chain.h"
#include "server/layers.h"

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
extern const hp_handler_t hp_handler_healthz;

/* The per-worker state of the handlers that go upstream (origin.h). */
extern const hp_service_t hp_service_origin;

#endif
