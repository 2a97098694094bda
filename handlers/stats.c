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
 * Every statistics block that has a table (runtime/stats.h) is rendered
 * from it, in both shapes, by block_json and block_prometheus: the
 * server's connections and I/O, the task runtime's figures, each layer's
 * per mode, and whatever blocks the services publish (the cache, the
 * upstream client; the L2 client's when it joins) - so a counter is named
 * once, in its module, and a block a service adds appears in both reports
 * without a line here. What is not a flat block of counters is written out
 * below: the routes (per-request ratios, status classes, a latency
 * histogram), the allocations by allocator door, the rejections (named by
 * http.h's table), and the upstream client's latency histogram.
 *
 * These handlers allocate freely (cJSON trees, text buffers): they are the
 * reporting path, not the hot one.
 */
#include "handlers.h"

#include "server/snapshot.h"
#include "upstream/client.h"

#include "runtime/alloc.h"
#include "runtime/sbuf.h"
#include "runtime/stats.h"

#include <cjson/cJSON.h>
#include <string.h>

static const char *const door_names[HP_ALLOC_SOURCES] = {"own", "libuv", "cjson"};
static const char *const class_names[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};

static double per(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

/* --- a block, by its table -------------------------------------------- */

/* The rows of t's block into o; a group's rows into an object of its own. */
static void block_json(cJSON *o, const hp_stats_table_t *t, const void *block)
{
    for (size_t i = 0; i < t->nrows; i++) {
        const hp_stat_t *row = &t->rows[i];
        const char *key;
        const hp_stat_group_t *g = hp_stat_group(t, row, &key);
        cJSON *into = o;
        if (g) {
            into = cJSON_GetObjectItemCaseSensitive(o, g->prefix);
            if (into == NULL) into = cJSON_AddObjectToObject(o, g->prefix);
        }
        cJSON_AddNumberToObject(into, key, (double)*hp_stat_at(block, row));
    }
}

static void family(hp_sbuf_t *b, const char *name, const char *type, const char *help)
{
    hp_sbuf_printf(b, "# HELP %s %s.\n# TYPE %s %s\n", name, help, name, type);
}

/* Block i of n to render, with its labels ("" for none; else
 * `name="value",...`), or NULL to leave it out. */
typedef const void *(*block_at_fn)(const void *arg, size_t i, char *labels, size_t len);

/* Every row of t as a family hotpath_<t>_<row>[_total], one sample per
 * block; a labelled group's rows as one family, their rest in its label. */
static void blocks_prometheus(hp_sbuf_t *b, const hp_stats_table_t *t, size_t n, block_at_fn at,
                              const void *arg)
{
    for (size_t r = 0; r < t->nrows; r++) {
        const hp_stat_t *row = &t->rows[r];
        const char *rest;
        const hp_stat_group_t *g = hp_stat_group(t, row, &rest);
        bool labelled = g && g->label;
        char fam[128];
        snprintf(fam, sizeof(fam), "hotpath_%s_%s%s", t->name, labelled ? g->prefix : row->name,
                 row->kind == HP_STAT_COUNTER ? "_total" : "");
        /* A labelled group is one family, announced at its first row. */
        const char *prev_rest;
        if (!labelled || r == 0 || hp_stat_group(t, &t->rows[r - 1], &prev_rest) != g) {
            char help[160];
            if (labelled)
                snprintf(help, sizeof(help), "%s %s, by %s", t->name, g->prefix, g->label);
            family(b, fam, row->kind == HP_STAT_COUNTER ? "counter" : "gauge",
                   labelled ? help : row->help);
        }
        for (size_t i = 0; i < n; i++) {
            char labels[160] = "";
            const void *block = at(arg, i, labels, sizeof(labels));
            if (block == NULL) continue;
            char all[224];
            if (labelled)
                snprintf(all, sizeof(all), "{%s%s%s=\"%s\"}", labels, *labels ? "," : "", g->label,
                         rest);
            else if (*labels)
                snprintf(all, sizeof(all), "{%s}", labels);
            else
                all[0] = '\0';
            hp_sbuf_printf(b, "%s%s %llu\n", fam, all, (unsigned long long)*hp_stat_at(block, row));
        }
    }
}

static const void *the_block(const void *arg, size_t i, char *labels, size_t len)
{
    return arg;
}

/* One block, no labels. */
static void block_prometheus(hp_sbuf_t *b, const hp_stats_table_t *t, const void *block)
{
    blocks_prometheus(b, t, 1, the_block, block);
}

/* The layers that were called, by mode (a layer's row is its calls). */
static const void *layer_at(const void *arg, size_t i, char *labels, size_t len)
{
    const hp_snapshot_t *s = arg;
    const hp_layer_stats_t *l = &s->m.layers[i / HP_MODES][i % HP_MODES];
    if (l->calls == 0) return NULL;
    snprintf(labels, len, "layer=\"%s\",mode=\"%s\"", s->m.layer_names[i / HP_MODES],
             hp_mode_names[i % HP_MODES]);
    return l;
}

/* The server's own blocks, then the runtime's, then the services'. */
typedef struct {
    const hp_stats_table_t *table;
    const void *block;
} named_block_t;

static size_t blocks_of(const hp_snapshot_t *s, named_block_t *out)
{
    size_t n = 0;
    out[n++] = (named_block_t){&hp_connection_stats_table, &s->m.conns};
    out[n++] = (named_block_t){&hp_io_stats_table, &s->m.io};
    out[n++] = (named_block_t){&hp_runtime_stats_table, &s->runtime};
    for (unsigned i = 0; i < s->nblocks; i++)
        out[n++] = (named_block_t){s->blocks[i].table, s->blocks[i].sum};
    return n;
}

/* --- JSON ------------------------------------------------------------- */

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
    for (int i = 0; i < 6; i++)
        cJSON_AddNumberToObject(st, class_names[i], (double)rs->status[i]);
    uint64_t timed = 0;
    for (int i = 0; i < HP_LAT_BUCKETS; i++)
        timed += rs->latency[i];
    cJSON_AddNumberToObject(o, "latency_mean_us", per(rs->latency_ns_sum, timed) / 1000.0);
    return o;
}

/* The upstream requests a latency was recorded for. */
static uint64_t upstream_done(const hp_upstream_stats_t *u)
{
    return u->responses + u->errors_connect + u->errors_timeout + u->errors_protocol +
           u->errors_reset + u->errors_too_big;
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
        cJSON *o = cJSON_AddObjectToObject(modes, hp_mode_names[mode]);
        cJSON_AddNumberToObject(o, "requests", (double)t.requests);
        cJSON_AddNumberToObject(o, "allocations", (double)t.alloc.count);
        cJSON_AddNumberToObject(o, "allocated_bytes", (double)t.alloc.bytes);
        cJSON_AddNumberToObject(o, "allocations_per_request", per(t.alloc.count, t.requests));
        cJSON_AddNumberToObject(o, "bytes_per_request", per(t.alloc.bytes, t.requests));
        cJSON_AddNumberToObject(o, "outside_chain_allocations", (double)t.outside.count);
        cJSON_AddNumberToObject(o, "outside_chain_bytes", (double)t.outside.bytes);
    }

    cJSON *rj = cJSON_AddObjectToObject(root, "routes");
    for (size_t r = 0; r < s->router->n; r++) {
        /* Every route and mode, zeros included: a reader (a test, a
         * dashboard) that asks for a figure finds it, or has a typo. */
        const hp_route_t *route = &s->router->routes[r];
        cJSON *o = cJSON_AddObjectToObject(rj, route->path);
        for (int mode = 0; mode < HP_MODES; mode++)
            cJSON_AddItemToObject(o, hp_mode_names[mode],
                                  route_mode_json(&s->m.routes[route->id][mode]));
    }

    cJSON *lj = cJSON_AddObjectToObject(root, "layers");
    for (size_t i = 0; i < s->m.nlayers; i++) {
        cJSON *o = cJSON_AddObjectToObject(lj, s->m.layer_names[i]);
        for (int mode = 0; mode < HP_MODES; mode++)
            block_json(cJSON_AddObjectToObject(o, hp_mode_names[mode]), &hp_layer_stats_table,
                       &s->m.layers[i][mode]);
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

    cJSON *rej = cJSON_AddObjectToObject(root, "rejections");
    for (int r = 1; r < HP_REJECT_COUNT; r++)
        cJSON_AddNumberToObject(rej, hp_reject_name((hp_reject_t)r), (double)s->m.rejects[r]);

    named_block_t blocks[3 + HP_BLOCKS_MAX];
    size_t nb = blocks_of(s, blocks);
    for (size_t i = 0; i < nb; i++)
        block_json(cJSON_AddObjectToObject(root, blocks[i].table->name), blocks[i].table,
                   blocks[i].block);
    const hp_upstream_stats_t *u = hp_snapshot_block(s, &hp_upstream_stats_table);
    if (u)
        cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(root, "upstream"),
                                "latency_mean_us", per(u->latency_us_sum, upstream_done(u)));
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

/* One family of route samples, those of routes and modes that served. */
static void per_route(hp_sbuf_t *b, const hp_snapshot_t *s, const char *metric, const char *help,
                      size_t offset)
{
    family(b, metric, "counter", help);
    for (size_t r = 0; r < s->router->n; r++)
        for (int mode = 0; mode < HP_MODES; mode++) {
            const hp_route_stats_t *rs = &s->m.routes[s->router->routes[r].id][mode];
            if (!rs->requests) continue;
            hp_sbuf_printf(b, "%s{route=\"%s\",mode=\"%s\"} %llu\n", metric,
                           s->router->routes[r].path, hp_mode_names[mode],
                           (unsigned long long)*(const uint64_t *)((const char *)rs + offset));
        }
}

static void routes_prometheus(hp_sbuf_t *b, const hp_snapshot_t *s)
{
    static const uint64_t bounds[HP_LAT_BUCKETS - 1] = HP_LAT_BOUNDS_US;
    per_route(b, s, "hotpath_requests_total", "Requests answered, by route and mode",
              offsetof(hp_route_stats_t, requests));
    per_route(b, s, "hotpath_request_allocations_total",
              "Heap allocations made while serving requests, by route and mode",
              offsetof(hp_route_stats_t, alloc.count));
    per_route(b, s, "hotpath_request_allocated_bytes_total",
              "Bytes requested by those allocations, by route and mode",
              offsetof(hp_route_stats_t, alloc.bytes));
    per_route(b, s, "hotpath_request_outside_chain_allocations_total",
              "Heap allocations for requests outside the chain (reading, pipelining, blocked "
              "writes), by route and mode",
              offsetof(hp_route_stats_t, outside.count));

    family(b, "hotpath_responses_total", "counter", "Answers by route, mode and status class");
    for (size_t r = 0; r < s->router->n; r++)
        for (int mode = 0; mode < HP_MODES; mode++)
            for (int c = 0; c < 6; c++) {
                uint64_t v = s->m.routes[s->router->routes[r].id][mode].status[c];
                if (v)
                    hp_sbuf_printf(b,
                                   "hotpath_responses_total{route=\"%s\",mode=\"%s\",class=\"%s\"} "
                                   "%llu\n",
                                   s->router->routes[r].path, hp_mode_names[mode], class_names[c],
                                   (unsigned long long)v);
            }

    family(b, "hotpath_request_duration_seconds", "histogram",
           "Time spent in the middleware chain and handler, by route and mode");
    for (size_t r = 0; r < s->router->n; r++)
        for (int mode = 0; mode < HP_MODES; mode++) {
            const char *path = s->router->routes[r].path;
            const hp_route_stats_t *rs = &s->m.routes[s->router->routes[r].id][mode];
            uint64_t cum = 0;
            for (int i = 0; i < HP_LAT_BUCKETS; i++)
                cum += rs->latency[i];
            if (!cum) continue;
            cum = 0;
            for (int i = 0; i < HP_LAT_BUCKETS; i++) {
                cum += rs->latency[i];
                char le[32];
                if (i < HP_LAT_BUCKETS - 1)
                    snprintf(le, sizeof(le), "%g", (double)bounds[i] / 1e6);
                else
                    snprintf(le, sizeof(le), "+Inf");
                hp_sbuf_printf(b,
                               "hotpath_request_duration_seconds_bucket{route=\"%s\",mode=\"%s\","
                               "le=\"%s\"} %llu\n",
                               path, hp_mode_names[mode], le, (unsigned long long)cum);
            }
            hp_sbuf_printf(b,
                           "hotpath_request_duration_seconds_sum{route=\"%s\",mode=\"%s\"} %.6f\n",
                           path, hp_mode_names[mode], (double)rs->latency_ns_sum / 1e9);
            hp_sbuf_printf(
                b, "hotpath_request_duration_seconds_count{route=\"%s\",mode=\"%s\"} %llu\n", path,
                hp_mode_names[mode], (unsigned long long)cum);
        }
}

static void upstream_histogram(hp_sbuf_t *b, const hp_upstream_stats_t *u)
{
    family(b, "hotpath_upstream_duration_seconds", "histogram", "Upstream request latency");
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
}

static void prometheus(hp_sbuf_t *b, const hp_snapshot_t *s)
{
    family(b, "hotpath_info", "gauge", "Build and the mode new requests run under");
    hp_sbuf_printf(b, "hotpath_info{mode=\"%s\",workers=\"%u\"} 1\n", hp_mode_name(s->mode),
                   s->workers);
    routes_prometheus(b, s);
    blocks_prometheus(b, &hp_layer_stats_table, s->m.nlayers * HP_MODES, layer_at, s);

    family(b, "hotpath_allocations_total", "counter",
           "Heap allocations by the workers, by allocator door");
    for (int d = 0; d < HP_ALLOC_SOURCES; d++)
        hp_sbuf_printf(b, "hotpath_allocations_total{door=\"%s\"} %llu\n", door_names[d],
                       (unsigned long long)s->alloc.by_source[d].count);
    family(b, "hotpath_allocated_bytes_total", "counter", "Bytes requested, by allocator door");
    for (int d = 0; d < HP_ALLOC_SOURCES; d++)
        hp_sbuf_printf(b, "hotpath_allocated_bytes_total{door=\"%s\"} %llu\n", door_names[d],
                       (unsigned long long)s->alloc.by_source[d].bytes);
    family(b, "hotpath_rejections_total", "counter", "Malformed or over-limit requests, by reason");
    for (int r = 1; r < HP_REJECT_COUNT; r++)
        hp_sbuf_printf(b, "hotpath_rejections_total{reason=\"%s\"} %llu\n",
                       hp_reject_name((hp_reject_t)r), (unsigned long long)s->m.rejects[r]);

    named_block_t blocks[3 + HP_BLOCKS_MAX];
    size_t nb = blocks_of(s, blocks);
    for (size_t i = 0; i < nb; i++)
        block_prometheus(b, blocks[i].table, blocks[i].block);
    const hp_upstream_stats_t *u = hp_snapshot_block(s, &hp_upstream_stats_table);
    if (u) upstream_histogram(b, u);
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
const hp_handler_t hp_handler_metrics = {.name = "prometheus", .invoke = metrics};
