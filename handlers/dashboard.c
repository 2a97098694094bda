/*
 * dashboard - GET /dashboard, a live page of this server's figures, and
 * GET /dashboard/data, the compact JSON the page polls once a second.
 *
 * The page is one HTML document with its script, its style and uPlot's
 * (the charting library, from the npm lock file) inlined at build time by
 * handlers/dashboard/embed.mjs into build/.../dashboard_page.c: answering it
 * is a pointer and a length, no file is read at request time. It is sent
 * uncompressed (77 KiB, of which uPlot is 52; gzip -9 would make it 30),
 * because the parser keeps no Accept-Encoding and the page is fetched once
 * per visit, not per refresh.
 *
 * The data holds cumulative counters only - the snapshot /stats sums over
 * every worker, and the advisor's verdict per layer from advice.c - and
 * the page turns them into per-second rates by differencing two samples,
 * keeping the history itself. So the server holds no per-viewer state and
 * no other route's path does any work for the page; a refresh costs one
 * snapshot, one walk of the decision tree and one printf'd buffer.
 *
 * Schema (version 1; counters are totals since start, summed over workers):
 *   {"v":1, "uptime_ms":N, "mode":"valuetask"|"task",
 *    "mode_since_ms":N   uptime when the mode took effect (0: since start),
 *    "workers":N, "reloads":N,
 *    "routes":[{"path":"/plaintext", "vt":[req,allocs,bytes],
 *               "task":[req,allocs,bytes]}, ...]  routes that served any,
 *    "layers":[{"name":"cache.get", "kind":"cache", "calls":N, "sync":N,
 *               "avoided":N, "allocated":N, "advice":"valuetask"}, ...],
 *    "cache":{"hits":N,"misses":N,"coalesced":N,"stale":N},
 *    "upstream":{"requests":N,"done":N,"errors":N,"latency_us":N},
 *    "misuse":{"consumed":N,"stale":N},
 *    "conns":{"open":N,"refused":N}, "rejections":N}
 * mode and mode_since_ms are the answering worker's (workers switch within
 * milliseconds of each other); advice is the advisor's verdict on its last
 * window (advice.window_s); upstream.latency_us is the sum over the `done`
 * requests (a mean is the ratio of two deltas). Written with printf into one buffer (two
 * allocations as it grows) rather than as a cJSON tree (one per value, over
 * a hundred): every string in it is a route path, a layer or a mode name
 * from the code, none of which needs escaping. About 215k instructions a
 * refresh, a third of them the advisor's reason texts (README).
 */
#include "advice.h"
#include "handlers.h"
#include "server/snapshot.h"

#include "dashboard/page.h"

#include "runtime/sbuf.h"

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

static hp_vtask_t page(void *self, hp_ctx_t *ctx)
{
    /* The page changes with the binary only; no-cache makes a browser ask
     * again on reload rather than keep a page of an older build. */
    hp_resp_header(ctx, "Cache-Control", HP_STR("no-cache"));
    hp_resp_set(ctx, 200, "text/html; charset=utf-8",
                (hp_str_t){(const char *)hp_dashboard_page, hp_dashboard_page_len});
    return hp_done(ctx);
}

static void triple(hp_sbuf_t *b, const hp_route_stats_t *rs)
{
    hp_sbuf_printf(b, "[%llu,%llu,%llu]", (unsigned long long)rs->requests,
                   (unsigned long long)rs->alloc.count, (unsigned long long)rs->alloc.bytes);
}

static void routes_json(hp_sbuf_t *b, const hp_snapshot_t *s)
{
    size_t n = s->router->n;
    const hp_route_t *routes = s->router->routes;
    const char *sep = "";
    hp_sbuf_printf(b, "\"routes\":[");
    for (size_t r = 0; r < n; r++) {
        const hp_route_stats_t *rs = s->m.routes[routes[r].id];
        if (!rs[HP_MODE_VALUETASK].requests && !rs[HP_MODE_TASK].requests) continue;
        hp_sbuf_printf(b, "%s{\"path\":\"%s\",\"vt\":", sep, routes[r].path);
        triple(b, &rs[HP_MODE_VALUETASK]);
        hp_sbuf_printf(b, ",\"task\":");
        triple(b, &rs[HP_MODE_TASK]);
        hp_sbuf_printf(b, "}");
        sep = ",";
    }
    hp_sbuf_printf(b, "]");
}

static void layers_json(hp_sbuf_t *b, const hp_snapshot_t *s, const hp_advice_opts_t *cfg)
{
    hp_advice_row_t rows[HP_LAYERS_MAX];
    size_t n = hp_advice_evaluate(s, cfg, rows);
    hp_sbuf_printf(b, "\"layers\":[");
    for (size_t i = 0; i < n; i++) {
        const hp_advice_in_t *t = &rows[i].total;
        hp_sbuf_printf(b,
                       "%s{\"name\":\"%s\",\"kind\":\"%s\",\"calls\":%llu,\"sync\":%llu,"
                       "\"avoided\":%llu,\"allocated\":%llu,\"advice\":\"%s\"}",
                       i ? "," : "", rows[i].name, rows[i].kind, (unsigned long long)t->calls,
                       (unsigned long long)t->sync, (unsigned long long)t->avoided,
                       (unsigned long long)t->allocated, hp_advice_name(rows[i].out.rec));
    }
    hp_sbuf_printf(b, "]");
}

static hp_vtask_t data(void *self, hp_ctx_t *ctx)
{
    hp_snapshot_t s;
    hp_snapshot_take(ctx, &s);
    hp_sbuf_t b = {0};
    hp_sbuf_printf(&b,
                   "{\"v\":1,\"uptime_ms\":%llu,\"mode\":\"%s\",\"mode_since_ms\":%llu,"
                   "\"workers\":%u,\"reloads\":%llu,",
                   (unsigned long long)s.uptime_ms, hp_mode_name(s.mode),
                   (unsigned long long)s.mode_since_ms, s.workers, (unsigned long long)s.m.reloads);
    routes_json(&b, &s);
    hp_sbuf_printf(&b, ",");
    layers_json(&b, &s, hp_advice_opts(hp_ctx_config(ctx)));

    const hp_cache_stats_t *c = cache_figures(&s);
    const hp_upstream_stats_t *u = upstream_figures(&s);
    /* The requests a latency was recorded for, as /stats counts them. */
    uint64_t errors = u->errors_connect + u->errors_timeout + u->errors_protocol + u->errors_reset +
                      u->errors_too_big;
    uint64_t rejected = 0;
    for (int r = 1; r < HP_REJECT_COUNT; r++)
        rejected += s.m.rejects[r];
    hp_sbuf_printf(&b,
                   ",\"cache\":{\"hits\":%llu,\"misses\":%llu,\"coalesced\":%llu,\"stale\":%llu},"
                   "\"upstream\":{\"requests\":%llu,\"done\":%llu,\"errors\":%llu,"
                   "\"latency_us\":%llu},"
                   "\"misuse\":{\"consumed\":%llu,\"stale\":%llu},"
                   "\"conns\":{\"open\":%llu,\"refused\":%llu},\"rejections\":%llu}",
                   (unsigned long long)c->hits, (unsigned long long)c->misses,
                   (unsigned long long)c->coalesced, (unsigned long long)c->stale,
                   (unsigned long long)u->requests, (unsigned long long)(u->responses + errors),
                   (unsigned long long)errors, (unsigned long long)u->latency_us_sum,
                   (unsigned long long)s.runtime.misuse_consumed,
                   (unsigned long long)s.runtime.misuse_stale, (unsigned long long)s.m.conns.open,
                   (unsigned long long)s.m.conns.refused, (unsigned long long)rejected);
    size_t len;
    char *text = hp_sbuf_take(&b, &len);
    hp_resp_header(ctx, "Cache-Control", HP_STR("no-store"));
    hp_resp_take(ctx, 200, "application/json", text, len);
    return hp_done(ctx);
}

const hp_handler_t hp_handler_dashboard = {.name = "dashboard", .invoke = page};
const hp_handler_t hp_handler_dashboard_data = {.name = "dashboard.data", .invoke = data};
