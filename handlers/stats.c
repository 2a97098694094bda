/*
 * stats - GET /stats (JSON) and GET /metrics (Prometheus text format 0.0.4):
 * the same snapshot of the whole server, in two shapes.
 *
 * The figures users come for are the allocations per request, by route and
 * mode: exact counts (metrics.h explains the charging), so /stats deltas
 * taken around a run give the cost of each request kind in each mode. The
 * snapshot is taken before this request allocates anything, so a /stats
 * request never counts itself.
 *
 * These handlers allocate freely (cJSON trees, text buffers): they are the
 * reporting path, not the hot one.
 */
#include "handlers.h"
#include "server/snapshot.h"

#include "runtime/alloc.h"
#include "runtime/sbuf.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "cache/cache.h"
#include "upstream/client.h"

/* The cache's and the upstream client's figures, summed over the workers;
 * zeros when no worker published them. */
static const hp_cache_stats_t *cache_figures(const hp_snapshot_t *s)
{
    static const hp_cache_stats_t none;
    const hp_cache_stats_t *c = hp_snapshot_block(s, &hp_cache_stats_table);
    return c ? c : &none;
}

static const hp_upstream_stats_t *upstream_figures(const hp_snapshot_t *s)
{
    static const hp_upstream_stats_t none;
    const hp_upstream_stats_t *u = hp_snapshot_block(s, &hp_upstream_stats_table);
    return u ? u : &none;
}

static const char *const door_names[HP_ALLOC_SOURCES] = {"own", "libuv", "cjson"};
static const char *const mode_names[HP_MODES] = {"valuetask", "task"};

static double per(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

static cJSON *route_mode_json(const hp_route_stats_t *rs)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "requests", (double)rs->requests);
    cJSON_AddNumberToObject(o, "allocations", (double)rs->alloc.count);
    cJSON_AddNumberToObject(o, "allocated_bytes", (double)rs->alloc.bytes);
    cJSON_AddNumberToObject(o, "allocations_per_request", per(rs->alloc.count, rs->requests));
    cJSON_AddNumberToObject(o, "bytes_per_request", per(rs->alloc.bytes, rs->requests));
    /* What its requests cost around the chain: reading them (a context the
     * pool grew, arena spills, bodies), pipelined input kept, output the
     * kernel refused. Zero in steady keep-alive traffic. */
    cJSON *out = cJSON_AddObjectToObject(o, "outside_chain");
    cJSON_AddNumberToObject(out, "allocations", (double)rs->outside.count);
    cJSON_AddNumberToObject(out, "allocated_bytes", (double)rs->outside.bytes);
    cJSON_AddNumberToObject(out, "allocations_per_request", per(rs->outside.count, rs->requests));
    cJSON *st = cJSON_AddObjectToObject(o, "status");
    static const char *const cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < 6; i++)
        cJSON_AddNumberToObject(st, cls[i], (double)rs->status[i]);
    uint64_t timed = 0;
    for (int i = 0; i < HP_LAT_BUCKETS; i++)
        timed += rs->latency[i];
    cJSON_AddNumberToObject(o, "latency_mean_us", per(rs->latency_ns_sum, timed) / 1000.0);
    return o;
}

static cJSON *layer_json(const hp_layer_stats_t *l)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "calls", (double)l->calls);
    cJSON_AddNumberToObject(o, "completed_synchronously", (double)l->sync);
    cJSON_AddNumberToObject(o, "inline_valuetasks", (double)l->inline_vt);
    cJSON_AddNumberToObject(o, "task_valuetasks", (double)l->task_vt);
    cJSON_AddNumberToObject(o, "source_valuetasks", (double)l->source_vt);
    return o;
}

static cJSON *stats_json(const hp_snapshot_t *s)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *srv = cJSON_AddObjectToObject(root, "server");
    cJSON_AddStringToObject(srv, "mode", hp_mode_name(s->mode));
    cJSON_AddNumberToObject(srv, "workers", s->workers);
    cJSON_AddNumberToObject(srv, "uptime_s", (double)s->uptime_ms / 1000.0);
    cJSON_AddNumberToObject(srv, "reloads", (double)s->m.reloads);

    /* Per mode, over every route. */
    cJSON *modes = cJSON_AddObjectToObject(root, "modes");
    for (int mode = 0; mode < HP_MODES; mode++) {
        hp_route_stats_t t = {0};
        for (unsigned r = 0; r < HP_ROUTES_MAX; r++) {
            t.requests += s->m.routes[r][mode].requests;
            t.alloc.count += s->m.routes[r][mode].alloc.count;
            t.alloc.bytes += s->m.routes[r][mode].alloc.bytes;
            t.outside.count += s->m.routes[r][mode].outside.count;
            t.outside.bytes += s->m.routes[r][mode].outside.bytes;
        }
        cJSON *o = cJSON_AddObjectToObject(modes, mode_names[mode]);
        cJSON_AddNumberToObject(o, "requests", (double)t.requests);
        cJSON_AddNumberToObject(o, "allocations", (double)t.alloc.count);
        cJSON_AddNumberToObject(o, "allocated_bytes", (double)t.alloc.bytes);
        cJSON_AddNumberToObject(o, "allocations_per_request", per(t.alloc.count, t.requests));
        cJSON_AddNumberToObject(o, "bytes_per_request", per(t.alloc.bytes, t.requests));
        cJSON_AddNumberToObject(o, "outside_chain_allocations", (double)t.outside.count);
        cJSON_AddNumberToObject(o, "outside_chain_bytes", (double)t.outside.bytes);
    }

    size_t nroutes = s->router->n;
    const hp_route_t *routes = s->router->routes;
    cJSON *rj = cJSON_AddObjectToObject(root, "routes");
    for (size_t r = 0; r < nroutes; r++) {
        /* Every route and mode, zeros included: a reader (a test, a
         * dashboard) that asks for a figure finds it, or has a typo. */
        cJSON *o = cJSON_AddObjectToObject(rj, routes[r].path);
        for (int mode = 0; mode < HP_MODES; mode++)
            cJSON_AddItemToObject(o, mode_names[mode],
                                  route_mode_json(&s->m.routes[routes[r].id][mode]));
    }

    cJSON *lj = cJSON_AddObjectToObject(root, "layers");
    for (size_t i = 0; i < s->m.nlayers; i++) {
        cJSON *o = cJSON_AddObjectToObject(lj, s->m.layer_names[i]);
        for (int mode = 0; mode < HP_MODES; mode++)
            cJSON_AddItemToObject(o, mode_names[mode], layer_json(&s->m.layers[i][mode]));
    }

    cJSON *al = cJSON_AddObjectToObject(root, "allocations");
    for (int d = 0; d < HP_ALLOC_SOURCES; d++) {
        cJSON *o = cJSON_AddObjectToObject(al, door_names[d]);
        cJSON_AddNumberToObject(o, "count", (double)s->alloc.by_source[d].count);
        cJSON_AddNumberToObject(o, "bytes", (double)s->alloc.by_source[d].bytes);
    }
    cJSON_AddNumberToObject(al, "frees", (double)s->alloc.frees);
    cJSON_AddNumberToObject(al, "live", (double)hp_alloc_stats_live(&s->alloc));
    /* The accounts (server/conn.c): every allocation of a worker is charged
     * to one route's chain, one route's requests outside it, or this. */
    cJSON *outside = cJSON_AddObjectToObject(al, "outside_requests");
    cJSON_AddNumberToObject(outside, "count", (double)s->m.conn_alloc.count);
    cJSON_AddNumberToObject(outside, "bytes", (double)s->m.conn_alloc.bytes);

    const hp_runtime_stats_t *rt = &s->runtime;
    cJSON *rtj = cJSON_AddObjectToObject(root, "runtime");
    cJSON_AddNumberToObject(rtj, "tasks_allocated", (double)rt->tasks_allocated);
    cJSON_AddNumberToObject(rtj, "tasks_from_cache", (double)rt->tasks_cached);
    cJSON_AddNumberToObject(rtj, "task_waiters", (double)rt->task_waiters);
    cJSON_AddNumberToObject(rtj, "task_waiter_allocations", (double)rt->task_waiter_allocs);
    cJSON_AddNumberToObject(rtj, "valuetasks_inline", (double)rt->vtasks_inline);
    cJSON_AddNumberToObject(rtj, "valuetasks_source", (double)rt->vtasks_source);
    cJSON_AddNumberToObject(rtj, "valuetasks_task", (double)rt->vtasks_task);
    cJSON_AddNumberToObject(rtj, "as_task_calls", (double)rt->as_task_calls);
    cJSON_AddNumberToObject(rtj, "as_task_allocations", (double)rt->as_task_allocs);
    cJSON *mis = cJSON_AddObjectToObject(rtj, "misuse");
    cJSON_AddNumberToObject(mis, "consumed", (double)rt->misuse_consumed);
    cJSON_AddNumberToObject(mis, "stale", (double)rt->misuse_stale);

    cJSON *cj = cJSON_AddObjectToObject(root, "connections");
    cJSON_AddNumberToObject(cj, "accepted", (double)s->m.conns_accepted);
    cJSON_AddNumberToObject(cj, "refused", (double)s->m.conns_refused);
    cJSON_AddNumberToObject(cj, "open", (double)s->m.conns_open);
    cJSON_AddNumberToObject(cj, "peak", (double)s->m.conns_peak);
    cJSON_AddNumberToObject(cj, "idle_closed", (double)s->m.idle_closed);
    cJSON_AddNumberToObject(cj, "write_timeouts", (double)s->m.write_timeouts);
    cJSON_AddNumberToObject(cj, "requests_aborted", (double)s->m.requests_aborted);
    cJSON_AddNumberToObject(cj, "request_contexts", (double)s->m.ctx_pool_size);

    cJSON *rej = cJSON_AddObjectToObject(root, "rejections");
    for (int r = 1; r < HP_REJECT_COUNT; r++)
        cJSON_AddNumberToObject(rej, hp_reject_name((hp_reject_t)r), (double)s->m.rejects[r]);

    cJSON *io = cJSON_AddObjectToObject(root, "io");
    cJSON_AddNumberToObject(io, "reads", (double)s->m.reads);
    cJSON_AddNumberToObject(io, "writes", (double)s->m.writes);
    cJSON_AddNumberToObject(io, "writes_queued", (double)s->m.write_queued);
    cJSON_AddNumberToObject(io, "bytes_in", (double)s->m.bytes_in);
    cJSON_AddNumberToObject(io, "bytes_out", (double)s->m.bytes_out);

    const hp_cache_stats_t *c = cache_figures(s);
    cJSON *ca = cJSON_AddObjectToObject(root, "cache");
    cJSON_AddNumberToObject(ca, "hits", (double)c->hits);
    cJSON_AddNumberToObject(ca, "misses", (double)c->misses);
    cJSON_AddNumberToObject(ca, "coalesced", (double)c->coalesced);
    cJSON_AddNumberToObject(ca, "stale", (double)c->stale);
    cJSON_AddNumberToObject(ca, "evictions", (double)c->evictions);
    cJSON_AddNumberToObject(ca, "expirations", (double)c->expirations);
    cJSON_AddNumberToObject(ca, "fills", (double)c->fills);
    cJSON_AddNumberToObject(ca, "fill_failures", (double)c->fill_failures);
    cJSON_AddNumberToObject(ca, "refreshes", (double)c->refreshes);
    cJSON_AddNumberToObject(ca, "waiters_left", (double)c->waiters_left);
    cJSON_AddNumberToObject(ca, "pending_fills", (double)c->pending);
    cJSON_AddNumberToObject(ca, "rejected_too_big", (double)c->rejected);
    cJSON_AddNumberToObject(ca, "entries", (double)c->entries);
    cJSON_AddNumberToObject(ca, "bytes", (double)c->bytes);
    cJSON_AddNumberToObject(ca, "max_bytes", (double)c->max_bytes);

    const hp_upstream_stats_t *u = upstream_figures(s);
    cJSON *up = cJSON_AddObjectToObject(root, "upstream");
    cJSON_AddNumberToObject(up, "requests", (double)u->requests);
    cJSON_AddNumberToObject(up, "responses", (double)u->responses);
    cJSON *ue = cJSON_AddObjectToObject(up, "errors");
    cJSON_AddNumberToObject(ue, "connect", (double)u->err_connect);
    cJSON_AddNumberToObject(ue, "timeout", (double)u->err_timeout);
    cJSON_AddNumberToObject(ue, "protocol", (double)u->err_protocol);
    cJSON_AddNumberToObject(ue, "reset", (double)u->err_reset);
    cJSON_AddNumberToObject(ue, "too_big", (double)u->err_too_big);
    cJSON_AddNumberToObject(ue, "shutdown", (double)u->err_shutdown);
    cJSON_AddNumberToObject(ue, "invalid", (double)u->err_invalid);
    cJSON_AddNumberToObject(up, "cancelled", (double)u->cancelled);
    cJSON_AddNumberToObject(up, "queue_timeouts", (double)u->queue_timeouts);
    cJSON_AddNumberToObject(up, "unsolicited", (double)u->unsolicited);
    cJSON_AddNumberToObject(up, "retries", (double)u->retries);
    cJSON *pool = cJSON_AddObjectToObject(up, "pool");
    cJSON_AddNumberToObject(pool, "open", (double)u->pool_open);
    cJSON_AddNumberToObject(pool, "busy", (double)u->pool_busy);
    cJSON_AddNumberToObject(pool, "idle", (double)u->pool_idle);
    cJSON_AddNumberToObject(pool, "queued", (double)u->queued);
    cJSON_AddNumberToObject(pool, "queued_max", (double)u->queued_max);
    cJSON_AddNumberToObject(pool, "connections_opened", (double)u->conns_opened);
    uint64_t done = u->responses + u->err_connect + u->err_timeout + u->err_protocol +
                    u->err_reset + u->err_too_big;
    cJSON_AddNumberToObject(up, "latency_mean_us", per(u->latency_us_sum, done));
    return root;
}

static hp_vtask_t stats(void *self, hp_ctx_t *ctx)
{
    hp_snapshot_t s;
    hp_snapshot_take(ctx, &s);
    cJSON *root = stats_json(&s);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    hp_resp_take(ctx, 200, "application/json", text, strlen(text));
    return hp_done(ctx);
}

/* --- Prometheus --------------------------------------------------------- */

static void family(hp_sbuf_t *b, const char *name, const char *type, const char *help)
{
    hp_sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prometheus(hp_sbuf_t *b, const hp_snapshot_t *s)
{
    size_t nroutes = s->router->n;
    const hp_route_t *routes = s->router->routes;
    static const uint64_t bounds[HP_LAT_BUCKETS - 1] = HP_LAT_BOUNDS_US;

    family(b, "hotpath_info", "gauge", "Build and the mode new requests run under.");
    hp_sbuf_printf(b, "hotpath_info{mode=\"%s\",workers=\"%u\"} 1\n", hp_mode_name(s->mode),
                   s->workers);

#define PER_ROUTE(metric, expr)                                                                    \
    for (size_t r = 0; r < nroutes; r++)                                                           \
        for (int mode = 0; mode < HP_MODES; mode++) {                                              \
            const hp_route_stats_t *rs = &s->m.routes[routes[r].id][mode];                         \
            if (!rs->requests) continue;                                                           \
            hp_sbuf_printf(b, metric "{route=\"%s\",mode=\"%s\"} %llu\n", routes[r].path,          \
                           mode_names[mode], (unsigned long long)(expr));                          \
        }

    family(b, "hotpath_requests_total", "counter", "Requests answered, by route and mode.");
    PER_ROUTE("hotpath_requests_total", rs->requests);
    family(b, "hotpath_request_allocations_total", "counter",
           "Heap allocations made while serving requests, by route and mode.");
    PER_ROUTE("hotpath_request_allocations_total", rs->alloc.count);
    family(b, "hotpath_request_allocated_bytes_total", "counter",
           "Bytes requested by those allocations, by route and mode.");
    PER_ROUTE("hotpath_request_allocated_bytes_total", rs->alloc.bytes);
    family(b, "hotpath_request_outside_chain_allocations_total", "counter",
           "Heap allocations for requests outside the chain (reading, pipelining, blocked "
           "writes), by route and mode.");
    PER_ROUTE("hotpath_request_outside_chain_allocations_total", rs->outside.count);
#undef PER_ROUTE

    family(b, "hotpath_responses_total", "counter", "Answers by route, mode and status class.");
    static const char *const cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (size_t r = 0; r < nroutes; r++)
        for (int mode = 0; mode < HP_MODES; mode++)
            for (int c = 0; c < 6; c++) {
                uint64_t v = s->m.routes[routes[r].id][mode].status[c];
                if (v)
                    hp_sbuf_printf(b,
                                   "hotpath_responses_total{route=\"%s\",mode=\"%s\",class=\"%s\"} "
                                   "%llu\n",
                                   routes[r].path, mode_names[mode], cls[c], (unsigned long long)v);
            }

    family(b, "hotpath_request_duration_seconds", "histogram",
           "Time spent in the middleware chain and handler, by route and mode.");
    for (size_t r = 0; r < nroutes; r++)
        for (int mode = 0; mode < HP_MODES; mode++) {
            const hp_route_stats_t *rs = &s->m.routes[routes[r].id][mode];
            uint64_t cum = 0;
            for (int i = 0; i < HP_LAT_BUCKETS; i++)
                cum += rs->latency[i];
            if (!cum) continue;
            cum = 0;
            for (int i = 0; i < HP_LAT_BUCKETS; i++) {
                cum += rs->latency[i];
                if (i < HP_LAT_BUCKETS - 1)
                    hp_sbuf_printf(
                        b,
                        "hotpath_request_duration_seconds_bucket{route=\"%s\",mode=\"%s\","
                        "le=\"%g\"} %llu\n",
                        routes[r].path, mode_names[mode], (double)bounds[i] / 1e6,
                        (unsigned long long)cum);
                else
                    hp_sbuf_printf(
                        b,
                        "hotpath_request_duration_seconds_bucket{route=\"%s\",mode=\"%s\","
                        "le=\"+Inf\"} %llu\n",
                        routes[r].path, mode_names[mode], (unsigned long long)cum);
            }
            hp_sbuf_printf(b,
                           "hotpath_request_duration_seconds_sum{route=\"%s\",mode=\"%s\"} %.6f\n",
                           routes[r].path, mode_names[mode], (double)rs->latency_ns_sum / 1e9);
            hp_sbuf_printf(
                b, "hotpath_request_duration_seconds_count{route=\"%s\",mode=\"%s\"} %llu\n",
                routes[r].path, mode_names[mode], (unsigned long long)cum);
        }

#define PER_LAYER(metric, help, field)                                                             \
    family(b, metric, "counter", help);                                                            \
    for (size_t i = 0; i < s->m.nlayers; i++)                                                      \
        for (int mode = 0; mode < HP_MODES; mode++)                                                \
            if (s->m.layers[i][mode].calls)                                                        \
                hp_sbuf_printf(b, metric "{layer=\"%s\",mode=\"%s\"} %llu\n", s->m.layer_names[i], \
                               mode_names[mode], (unsigned long long)s->m.layers[i][mode].field);
    PER_LAYER("hotpath_layer_calls_total", "Calls of each chain layer, by mode.", calls);
    PER_LAYER("hotpath_layer_sync_total", "Calls that completed before returning.", sync);
    PER_LAYER("hotpath_layer_inline_valuetasks_total",
              "Results returned inline: one allocation avoided each.", inline_vt);
    PER_LAYER("hotpath_layer_task_valuetasks_total", "Results returned as heap tasks.", task_vt);
    PER_LAYER("hotpath_layer_source_valuetasks_total", "Pending results backed by a pooled source.",
              source_vt);
#undef PER_LAYER

    family(b, "hotpath_allocations_total", "counter",
           "Heap allocations by the workers, by allocator door.");
    for (int d = 0; d < HP_ALLOC_SOURCES; d++)
        hp_sbuf_printf(b, "hotpath_allocations_total{door=\"%s\"} %llu\n", door_names[d],
                       (unsigned long long)s->alloc.by_source[d].count);
    family(b, "hotpath_allocated_bytes_total", "counter", "Bytes requested, by allocator door.");
    for (int d = 0; d < HP_ALLOC_SOURCES; d++)
        hp_sbuf_printf(b, "hotpath_allocated_bytes_total{door=\"%s\"} %llu\n", door_names[d],
                       (unsigned long long)s->alloc.by_source[d].bytes);

#define SCALAR(name, type, help, value)                                                            \
    family(b, name, type, help);                                                                   \
    hp_sbuf_printf(b, name " %llu\n", (unsigned long long)(value));
    const hp_runtime_stats_t *rt = &s->runtime;
    SCALAR("hotpath_tasks_allocated_total", "counter", "Heap tasks created.", rt->tasks_allocated);
    SCALAR("hotpath_tasks_cached_total", "counter",
           "Completed tasks served from the singleton cache.", rt->tasks_cached);
    SCALAR("hotpath_valuetasks_inline_total", "counter", "Valuetasks completed inline.",
           rt->vtasks_inline);
    SCALAR("hotpath_as_task_total", "counter", "Valuetask to task conversions.", rt->as_task_calls);
    family(b, "hotpath_valuetask_misuse_total", "counter",
           "Valuetask misuses detected and refused, by kind.");
    hp_sbuf_printf(b, "hotpath_valuetask_misuse_total{kind=\"consumed\"} %llu\n",
                   (unsigned long long)rt->misuse_consumed);
    hp_sbuf_printf(b, "hotpath_valuetask_misuse_total{kind=\"stale\"} %llu\n",
                   (unsigned long long)rt->misuse_stale);

    SCALAR("hotpath_connections_accepted_total", "counter", "Connections accepted.",
           s->m.conns_accepted);
    SCALAR("hotpath_connections_refused_total", "counter",
           "Connections closed at once: over limits.max_connections.", s->m.conns_refused);
    SCALAR("hotpath_connections_open", "gauge", "Connections open now.", s->m.conns_open);
    family(b, "hotpath_rejections_total", "counter",
           "Malformed or over-limit requests, by reason.");
    for (int r = 1; r < HP_REJECT_COUNT; r++)
        hp_sbuf_printf(b, "hotpath_rejections_total{reason=\"%s\"} %llu\n",
                       hp_reject_name((hp_reject_t)r), (unsigned long long)s->m.rejects[r]);
    SCALAR("hotpath_write_syscalls_total", "counter", "Write system calls.", s->m.writes);

    const hp_cache_stats_t *c = cache_figures(s);
    SCALAR("hotpath_cache_hits_total", "counter", "Cache hits (fresh).", c->hits);
    SCALAR("hotpath_cache_misses_total", "counter", "Cache misses that started a fill.", c->misses);
    SCALAR("hotpath_cache_coalesced_total", "counter", "Misses that joined a running fill.",
           c->coalesced);
    SCALAR("hotpath_cache_stale_total", "counter", "Stale values served while revalidating.",
           c->stale);
    SCALAR("hotpath_cache_evictions_total", "counter", "Entries evicted by the memory bound.",
           c->evictions);
    SCALAR("hotpath_cache_bytes", "gauge", "Bytes held by the caches.", c->bytes);

    const hp_upstream_stats_t *u = upstream_figures(s);
    SCALAR("hotpath_upstream_requests_total", "counter", "Requests sent to the upstream.",
           u->requests);
    family(b, "hotpath_upstream_errors_total", "counter", "Upstream failures, by kind.");
    const struct {
        const char *k;
        uint64_t v;
    } errs[] = {{"connect", u->err_connect},   {"timeout", u->err_timeout},
                {"protocol", u->err_protocol}, {"reset", u->err_reset},
                {"too_big", u->err_too_big},   {"shutdown", u->err_shutdown}};
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++)
        hp_sbuf_printf(b, "hotpath_upstream_errors_total{kind=\"%s\"} %llu\n", errs[i].k,
                       (unsigned long long)errs[i].v);
    SCALAR("hotpath_upstream_cancelled_total", "counter",
           "Upstream requests cancelled because nobody waited for them any more.", u->cancelled);
    SCALAR("hotpath_upstream_unsolicited_total", "counter",
           "Upstream connections closed for bytes no request asked for.", u->unsolicited);
    SCALAR("hotpath_upstream_pool_open", "gauge", "Upstream connections open.", u->pool_open);
    SCALAR("hotpath_upstream_pool_busy", "gauge", "Upstream connections in use.", u->pool_busy);
    family(b, "hotpath_upstream_duration_seconds", "histogram", "Upstream request latency.");
    uint64_t cum = 0;
    for (int i = 0; i < HP_UPSTREAM_LATENCY_BUCKETS; i++) {
        cum += u->latency_hist[i];
        if (hp_upstream_latency_bounds_us[i] == UINT64_MAX)
            hp_sbuf_printf(b, "hotpath_upstream_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                           (unsigned long long)cum);
        else
            hp_sbuf_printf(b, "hotpath_upstream_duration_seconds_bucket{le=\"%g\"} %llu\n",
                           (double)hp_upstream_latency_bounds_us[i] / 1e6, (unsigned long long)cum);
    }
    hp_sbuf_printf(b, "hotpath_upstream_duration_seconds_sum %.6f\n",
                   (double)u->latency_us_sum / 1e6);
    hp_sbuf_printf(b, "hotpath_upstream_duration_seconds_count %llu\n", (unsigned long long)cum);
#undef SCALAR
}

static hp_vtask_t metrics(void *self, hp_ctx_t *ctx)
{
    hp_snapshot_t s;
    hp_snapshot_take(ctx, &s);
    hp_sbuf_t b = {0};
    prometheus(&b, &s);
    size_t len;
    char *text = hp_sbuf_take(&b, &len);
    hp_resp_take(ctx, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    return hp_done(ctx);
}

const hp_handler_t hp_handler_stats = {.name = "stats", .invoke = stats};
const hp_handler_t hp_handler_metrics = {.name = "metrics", .invoke = metrics};
