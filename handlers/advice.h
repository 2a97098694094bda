/*
 * advice.h - the .NET Task vs ValueTask decision tree as a pure function,
 * so the endpoint and its tests share one implementation.
 *
 * The tree, as the .NET guidance draws it (Toub, "Understanding the Whys,
 * Whats, and Whens of ValueTask"), asked of each layer:
 *   1. Do callers store the result, await it twice or combine it
 *      (as_task conversions)?              yes -> Task
 *   2. Does it usually complete synchronously (sync share >= threshold)?
 *                                          no  -> Task: it allocates anyway
 *   3. Is it hot (calls/s >= threshold)?   yes -> ValueTask
 *                                          no  -> either: little to save,
 *                                                 and Task is simpler
 * Shared waiters (single-flight fills) are reported with the layer: they
 * are the multi-await case, served by the Task inside the layer's valuetask.
 */
#ifndef HP_ADVICE_H
#define HP_ADVICE_H

#include "runtime/options.h"
#include "server/config.h"
#include "server/layers.h"
#include "server/snapshot.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The configuration's "advice" section (hp_advice_options, in advice.c). */
typedef struct {
    unsigned window_s;       /* the "recent" window's length */
    unsigned hot_rate;       /* calls/s from which a layer is "hot" */
    unsigned sync_share_pct; /* % synchronous from which "usually synchronous" */
} hp_advice_opts_t;

extern const hp_options_t hp_advice_options;

/* cfg's advice section (borrowed, for cfg's life). */
const hp_advice_opts_t *hp_advice_opts(const hp_config_t *cfg);

/* The service that cuts each worker's figures into windows (app.c lists
 * it). */
extern const hp_service_t hp_service_advisor;

typedef enum { HP_ADVICE_VALUETASK = 0, HP_ADVICE_TASK, HP_ADVICE_EITHER } hp_advice_rec_t;

typedef struct {
    uint64_t calls;     /* total */
    uint64_t sync;      /* of which completed before returning */
    uint64_t allocated; /* results that were heap tasks */
    uint64_t avoided;   /* results returned inline: a task avoided each */
    uint64_t pooled;    /* pending results backed by a pooled source */
    uint64_t waiters;   /* extra waiters on shared tasks */
    uint64_t as_task;   /* callers that converted a result to a task */
    double rate;        /* calls per second, recent */
} hp_advice_in_t;

typedef struct {
    double hot_rate;   /* calls/s */
    double sync_share; /* 0..1 */
    double task_bytes; /* bytes one task costs, for the reason text */
} hp_advice_thresholds_t;

typedef struct {
    hp_advice_rec_t rec;
    double sync_share;
    double avoidable_per_s; /* allocations/s a valuetask avoids at this rate */
    char reason[480];
} hp_advice_out_t;

void hp_advice_decide(const hp_advice_in_t *in, const hp_advice_thresholds_t *th,
                      hp_advice_out_t *out);

/* "valuetask", "task", "either". */
const char *hp_advice_name(hp_advice_rec_t rec);

/* One layer's decision, as /advice and /dashboard report it. */
typedef struct {
    const char *name;     /* the layer (static) */
    const char *kind;     /* "middleware", "handler", or a service's: "cache", "upstream" */
    hp_advice_in_t in;    /* what the decision was made on */
    hp_advice_in_t total; /* since start */
    bool recent;          /* `in` is the last window's */
    hp_advice_out_t out;
} hp_advice_row_t;

/* Walk the tree for every layer of s that has been called, on its last
 * window's figures when it was called in it, else on those since start.
 * rows holds HP_LAYERS_MAX; returns how many were filled. */
size_t hp_advice_evaluate(const hp_snapshot_t *s, const hp_advice_opts_t *cfg,
                          hp_advice_row_t *rows);

#endif
