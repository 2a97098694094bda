/*
 * metrics.h - per-worker counters: routes, chain layers, connections,
 * rejections, allocations; summed across workers for /stats and /metrics.
 *
 * Each worker owns one hp_metrics_t and is its only writer (counter.h);
 * /stats and /metrics, running on any worker, read every worker's block with
 * relaxed loads and add them up. Nothing on the request path takes a lock or
 * a locked instruction.
 *
 * Allocations are charged per route *and mode*: the connection points the
 * thread's allocation scope (alloc.h) at routes[route][mode].alloc while the
 * request runs, so "allocations per request" is a division of two exact
 * counters, not an estimate.
 */
#ifndef HP_METRICS_H
#define HP_METRICS_H

#include "http.h"
#include "layers.h"
#include "router.h"

#include "runtime/alloc.h"
#include "runtime/counter.h"
#include "runtime/stats.h"
#include "runtime/task.h"
#include "runtime/vtask.h"

#include <stddef.h>
#include <stdint.h>

#define HP_LAYERS_MAX 32
/* Statistics blocks a worker's services may publish (service.h). */
#define HP_BLOCKS_MAX 8

/* Latency histogram upper bounds, in microseconds; the last bucket is +Inf.
 * Chosen to straddle loopback latencies (tens of µs) up to timeouts. */
#define HP_LAT_BOUNDS_US                                                                           \
    {                                                                                              \
        25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000,     \
            5000000                                                                                \
    }
#define HP_LAT_BUCKETS 16

typedef struct hp_route_stats {
    uint64_t requests;
    uint64_t status[6]; /* by status / 100 */
    uint64_t latency_ns_sum;
    uint64_t latency[HP_LAT_BUCKETS]; /* not cumulative */
    hp_alloc_counter_t alloc;         /* allocations of its chain (middleware, handler) */
    hp_alloc_counter_t outside;       /* ...and of its requests outside the chain (conn.c) */
} hp_route_stats_t;

/* One chain layer (a middleware, a handler, the cache get, the upstream
 * call): what its valuetasks looked like, per mode. The decision advisor
 * reads these; /stats and /metrics report the table's rows per layer and
 * mode (runtime/stats.h). */
#define HP_LAYER_STATS(XX)                                                                         \
    XX(calls, counter, "calls of the layer")                                                       \
    XX(completed_synchronously, counter, "calls that completed before returning")                  \
    XX(inline_valuetasks, counter, "results returned inline: one allocation avoided each")         \
    XX(task_valuetasks, counter, "results returned as heap tasks")                                 \
    XX(source_valuetasks, counter, "pending results backed by a pooled source (no allocation)")

struct hp_layer_stats {
    HP_LAYER_STATS(HP_STAT_FIELD)
    /* Beyond the table: the advisor's. */
    uint64_t faults;
    uint64_t waiters; /* waiters beyond the first on shared tasks */
    uint64_t as_task; /* callers that needed a task conversion */
};
typedef struct hp_layer_stats hp_layer_stats_t;
extern const hp_stats_table_t hp_layer_stats_table;

/* A worker's connections, and its socket I/O. */
#define HP_CONNECTION_STATS(XX)                                                                    \
    XX(accepted, counter, "connections accepted")                                                  \
    XX(refused, counter, "connections closed at once: over limits.max_connections")                \
    XX(open, gauge, "connections open now")                                                        \
    XX(peak, gauge, "most connections open at once")                                               \
    XX(idle_closed, counter, "keep-alive connections closed by the idle timeout")                  \
    XX(write_timeouts, counter, "peers that did not take our output in time")                      \
    XX(requests_aborted, counter, "requests whose connection went while they pended")              \
    XX(request_contexts, gauge, "request contexts ever made (the pool's size)")

#define HP_IO_STATS(XX)                                                                            \
    XX(reads, counter, "read callbacks with data")                                                 \
    XX(writes, counter, "write system calls")                                                      \
    XX(writes_queued, counter, "writes the kernel did not take whole at once")                     \
    XX(bytes_in, counter, "bytes read")                                                            \
    XX(bytes_out, counter, "bytes written")

typedef struct {
    HP_CONNECTION_STATS(HP_STAT_FIELD)
} hp_connection_stats_t;
extern const hp_stats_table_t hp_connection_stats_table; /* "connections" */

typedef struct {
    HP_IO_STATS(HP_STAT_FIELD)
} hp_io_stats_t;
extern const hp_stats_table_t hp_io_stats_table; /* "io" */

typedef struct hp_metrics {
    /* Counters only, all uint64_t, up to `nlayers`: hp_metrics_sum adds
     * them as one array. */
    hp_route_stats_t routes[HP_ROUTES_MAX][HP_MODES]; /* [route id][mode] */
    hp_layer_stats_t layers[HP_LAYERS_MAX][HP_MODES]; /* [layer][mode] */
    hp_layer_stats_t window[HP_LAYERS_MAX][HP_MODES]; /* the last complete window */
    hp_alloc_counter_t conn_alloc;                    /* allocations of no request (conn.c) */
    hp_connection_stats_t conns;
    hp_io_stats_t io;
    uint64_t rejects[HP_REJECT_COUNT]; /* by reason: named by http.h's table */
    uint64_t reloads;

    /* Not summed across workers: */
    size_t nlayers;
    const char *layer_names[HP_LAYERS_MAX]; /* set once at start-up, static */
    const char *layer_kinds[HP_LAYERS_MAX]; /* "middleware", "handler", or a service's */
    uint64_t window_ms;                     /* length of `window`; 0 = none yet */
} hp_metrics_t;

/* The worker's private state for rolling windows. */
typedef struct {
    hp_layer_stats_t base[HP_LAYERS_MAX][HP_MODES];
    uint64_t start_ms;
} hp_metrics_window_t;

/* Name the layers every worker reports, in a fixed order (the same on all
 * workers, so they can be summed index by index): app's middleware, the
 * router's handlers, then the layers app's services declare. */
void hp_metrics_init(hp_metrics_t *m, const hp_app_t *app, const hp_router_t *router);

/* The layer slot for a name, or NULL when unknown. */
hp_layer_stats_t *hp_metrics_layer(hp_metrics_t *m, const char *name, hp_mode_t mode);
int hp_metrics_layer_index(const hp_metrics_t *m, const char *name);

/* Record what one layer call returned. Owner thread only. Inline for the
 * synchronous case (an inline valuetask: completed, no task), which every
 * layer of a synchronous request returns; the other forms are counted in
 * metrics.c. */
void hp_layer_record_other(hp_layer_stats_t *s, const hp_vtask_t *vt);
static inline void hp_layer_record(hp_layer_stats_t *s, const hp_vtask_t *vt)
{
    if (s == NULL) return;
    if (vt->kind != HP_VT_INLINE) {
        hp_layer_record_other(s, vt);
        return;
    }
    hp_counter_add(&s->calls, 1);
    hp_counter_add(&s->completed_synchronously, 1);
    hp_counter_add(&s->inline_valuetasks, 1);
}

/* An answer of status after latency_ns in the chain, counted in rs (a
 * route and mode's figures: hp_ctx_route_stats). Owner thread only. */
void hp_metrics_answer(hp_route_stats_t *rs, unsigned status, uint64_t latency_ns);

/* Close the current window when window_ms have passed since it began:
 * m->window becomes the layers' growth over it. Owner thread only. */
void hp_metrics_roll_window(hp_metrics_t *m, hp_metrics_window_t *win, uint64_t now_ms,
                            uint64_t window_ms);

/* Sum n workers' blocks into out (any thread; relaxed reads). */
void hp_metrics_sum(hp_metrics_t *const *blocks, size_t n, hp_metrics_t *out);

#endif
