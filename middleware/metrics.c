/*
 * metrics - per-route request counts by status class, and a latency
 * histogram, per mode (what /stats and /metrics report).
 *
 * Before: take the start time (in the layer's own slot, so nothing is
 * allocated). After: count the answer and its latency. The counters are the
 * worker's own (metrics.h): a few relaxed stores, no lock.
 *
 * The latency measured is the chain's, from this layer down: it excludes
 * parsing and writing, which the load generator's latency includes; the two
 * together say where the time goes.
 *
 * No options.
 */
#include "middleware.h"

#include "server/metrics.h"

#include <time.h>

/* uv_hrtime's clock (CLOCK_MONOTONIC, in ns), read without libuv's
 * wrapper, which costs more than the read itself (twice a request). */
static inline uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int create(const void *options, const char *path, void **out, char *err, size_t errlen)
{
    *out = NULL;
    return 0;
}

static void destroy(void *self) {}

static void after(void *self, hp_ctx_t *ctx, int status)
{
    uint64_t start = hp_layer_current(ctx)->mark;
    unsigned code = status ? 500 : ctx->resp.status;
    hp_metrics_answer(hp_ctx_route_stats(ctx), code, now_ns() - start);
}

static hp_vtask_t invoke(void *self, hp_ctx_t *ctx)
{
    hp_layer_current(ctx)->mark = now_ns();
    return hp_then(ctx, hp_next(ctx), self, after);
}

const hp_middleware_t hp_mw_metrics = {
    .name = "metrics",
    .summary = "per-route counts and latency histograms",
    .create = create,
    .destroy = destroy,
    .invoke = invoke,
};
