/*
 * advice - GET /advice: the Task vs ValueTask decision tree (advice.h),
 * walked for every layer of this server with its live figures: the
 * middleware, the handlers, the cache get and the upstream call.
 *
 * The figures per layer come from the chain's own bookkeeping (metrics.h:
 * every layer call records whether its valuetask was inline, a task, or a
 * pooled source, and whether it had completed), summed over both modes and
 * all workers. The decision uses the last complete window (advice.window_s)
 * when the layer was called in it - so it follows what the layer does now,
 * a cache's hit ratio under the current load, say - and the figures since
 * start otherwise; both are reported.
 *
 * JSON by default; a plain-text table when the client asks for text/plain.
 */
#include "advice.h"
#include "handlers.h"
#include "server/snapshot.h"

#include "runtime/options.h"
#include "runtime/sbuf.h"
#include "server/service.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

const char *hp_advice_name(hp_advice_rec_t rec)
{
    switch (rec) {
    case HP_ADVICE_VALUETASK: return "valuetask";
    case HP_ADVICE_TASK: return "task";
    default: return "either";
    }
}

void hp_advice_decide(const hp_advice_in_t *in, const hp_advice_thresholds_t *th,
                      hp_advice_out_t *out)
{
    double share = in->calls ? (double)in->sync / (double)in->calls : 0.0;
    out->sync_share = share;
    out->avoidable_per_s = in->rate * share;
    char shared[96] = "";
    if (in->waiters)
        snprintf(shared, sizeof(shared), "; its pending results were shared by %llu extra waiters",
                 (unsigned long long)in->waiters);

    if (in->as_task) {
        out->rec = HP_ADVICE_TASK;
        snprintf(out->reason, sizeof(out->reason),
                 "callers converted its result to a task %llu times (to store, share or combine "
                 "it): return the Task they need%s",
                 (unsigned long long)in->as_task, shared);
    } else if (share < th->sync_share) {
        out->rec = HP_ADVICE_TASK;
        char pooled[160] = "";
        if (in->pooled)
            snprintf(pooled, sizeof(pooled),
                     " (its %llu pending results came from a pooled source, which is what kept "
                     "them allocation-free, not the valuetask)",
                     (unsigned long long)in->pooled);
        snprintf(out->reason, sizeof(out->reason),
                 "only %.1f%% of %llu calls completed synchronously (threshold %.0f%%): most "
                 "calls go asynchronous, where a task is the simple contract%s%s",
                 100 * share, (unsigned long long)in->calls, 100 * th->sync_share, pooled, shared);
    } else if (in->rate >= th->hot_rate) {
        out->rec = HP_ADVICE_VALUETASK;
        snprintf(out->reason, sizeof(out->reason),
                 "%.0f calls/s (hot: >= %.0f) and %.1f%% synchronous: a valuetask avoids %.0f "
                 "allocations/s (%.1f MB/s of tasks)%s",
                 in->rate, th->hot_rate, 100 * share, out->avoidable_per_s,
                 out->avoidable_per_s * th->task_bytes / 1e6, shared);
    } else {
        out->rec = HP_ADVICE_EITHER;
        snprintf(out->reason, sizeof(out->reason),
                 "%.1f%% synchronous but %.0f calls/s is below the hot threshold (%.0f): a "
                 "valuetask would avoid only %.0f allocations/s, and Task is the simpler "
                 "contract%s",
                 100 * share, in->rate, th->hot_rate, out->avoidable_per_s, shared);
    }
}

/* Sum a layer's figures over both modes from one of the snapshot's arrays
 * (totals since start, or the last window). */
static hp_advice_in_t figures(const hp_layer_stats_t (*arr)[HP_MODES], size_t i)
{
    hp_advice_in_t in = {0};
    for (int mode = 0; mode < HP_MODES; mode++) {
        const hp_layer_stats_t *l = &arr[i][mode];
        in.calls += l->calls;
        in.sync += l->completed_synchronously;
        /* A task-backed result is a new task, except when it is a shared one
         * another caller already waits on (a coalesced fill). */
        in.allocated += l->task_valuetasks -
                        (l->waiters < l->task_valuetasks ? l->waiters : l->task_valuetasks);
        in.avoided += l->inline_valuetasks;
        in.waiters += l->waiters;
        in.pooled += l->source_valuetasks;
        in.as_task += l->as_task;
    }
    return in;
}

size_t hp_advice_evaluate(const hp_snapshot_t *s, const hp_advice_opts_t *cfg,
                          hp_advice_row_t *rows)
{
    hp_advice_thresholds_t th = {
        .hot_rate = cfg->hot_rate,
        .sync_share = cfg->sync_share_pct / 100.0,
        .task_bytes = 80, /* sizeof(hp_task) on x86-64, as /stats measures */
    };
    size_t n = 0;
    for (size_t i = 0; i < s->m.nlayers; i++) {
        hp_advice_in_t total = figures(s->m.layers, i);
        if (total.calls == 0) continue;
        hp_advice_in_t recent = figures(s->m.window, i);
        total.rate = (double)total.calls * 1000.0 / (double)s->uptime_ms;
        /* The tree is walked on what the layer does now: the last window
         * when it saw calls, the whole run otherwise. */
        bool use_recent = s->m.window_ms && recent.calls;
        if (use_recent) recent.rate = (double)recent.calls * 1000.0 / (double)s->m.window_ms;
        rows[n].name = s->m.layer_names[i];
        rows[n].kind = s->m.layer_kinds[i];
        rows[n].total = total;
        rows[n].in = use_recent ? recent : total;
        rows[n].recent = use_recent;
        hp_advice_decide(&rows[n].in, &th, &rows[n].out);
        n++;
    }
    return n;
}

static char *as_json(const hp_snapshot_t *s, const hp_advice_opts_t *cfg,
                     const hp_advice_row_t *rows, size_t n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "mode", hp_mode_name(s->mode));
    cJSON_AddNumberToObject(root, "window_s", (double)s->m.window_ms / 1000.0);
    cJSON *th = cJSON_AddObjectToObject(root, "thresholds");
    cJSON_AddNumberToObject(th, "hot_rate", cfg->hot_rate);
    cJSON_AddNumberToObject(th, "sync_share_pct", cfg->sync_share_pct);
    cJSON *mis = cJSON_AddObjectToObject(root, "misuse");
    cJSON_AddNumberToObject(mis, "consumed", (double)s->runtime.misuse_consumed);
    cJSON_AddNumberToObject(mis, "stale", (double)s->runtime.misuse_stale);
    cJSON *arr = cJSON_AddArrayToObject(root, "layers");
    for (size_t i = 0; i < n; i++) {
        const hp_advice_row_t *r = &rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "layer", r->name);
        cJSON_AddStringToObject(o, "kind", r->kind);
        cJSON_AddStringToObject(o, "figures", r->recent ? "last window" : "since start");
        cJSON_AddNumberToObject(o, "calls", (double)r->in.calls);
        cJSON_AddNumberToObject(o, "calls_per_s", r->in.rate);
        cJSON_AddNumberToObject(o, "calls_total", (double)r->total.calls);
        cJSON_AddNumberToObject(o, "calls_per_s_total", r->total.rate);
        cJSON_AddNumberToObject(o, "completed_synchronously", (double)r->in.sync);
        cJSON_AddNumberToObject(o, "sync_share", r->out.sync_share);
        cJSON_AddNumberToObject(o, "allocations", (double)r->in.allocated);
        cJSON_AddNumberToObject(o, "allocations_avoided", (double)r->in.avoided);
        cJSON_AddNumberToObject(o, "pooled_pending", (double)r->in.pooled);
        cJSON_AddNumberToObject(o, "shared_waiters", (double)r->in.waiters);
        cJSON_AddNumberToObject(o, "as_task", (double)r->in.as_task);
        cJSON_AddStringToObject(o, "recommendation", hp_advice_name(r->out.rec));
        cJSON_AddStringToObject(o, "reason", r->out.reason);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static char *as_text(const hp_snapshot_t *s, const hp_advice_opts_t *cfg,
                     const hp_advice_row_t *rows, size_t n, size_t *len)
{
    hp_sbuf_t b = {0};
    hp_sbuf_printf(&b,
                   "Task vs ValueTask, per layer (mode %s; hot >= %u calls/s, usually "
                   "synchronous >= %u%%; misuse detected: %llu consumed, %llu stale)\n\n",
                   hp_mode_name(s->mode), cfg->hot_rate, cfg->sync_share_pct,
                   (unsigned long long)s->runtime.misuse_consumed,
                   (unsigned long long)s->runtime.misuse_stale);
    hp_sbuf_printf(&b, "%-20s %-10s %12s %10s %6s %12s %12s %8s  %-9s\n", "layer", "kind", "calls",
                   "calls/s", "sync%", "allocated", "avoided", "waiters", "advice");
    for (size_t i = 0; i < n; i++) {
        const hp_advice_row_t *r = &rows[i];
        hp_sbuf_printf(&b, "%-20s %-10s %12llu %10.0f %6.1f %12llu %12llu %8llu  %-9s\n", r->name,
                       r->kind, (unsigned long long)r->in.calls, r->in.rate,
                       100 * r->out.sync_share, (unsigned long long)r->in.allocated,
                       (unsigned long long)r->in.avoided, (unsigned long long)r->in.waiters,
                       hp_advice_name(r->out.rec));
    }
    hp_sbuf_printf(&b, "\n");
    for (size_t i = 0; i < n; i++)
        hp_sbuf_printf(&b, "%s: %s - %s\n", rows[i].name, hp_advice_name(rows[i].out.rec),
                       rows[i].out.reason);
    return hp_sbuf_take(&b, len);
}

static hp_vtask_t advice(void *self, hp_ctx_t *ctx)
{
    hp_snapshot_t s;
    hp_snapshot_take(ctx, &s);
    const hp_advice_opts_t *cfg = hp_advice_opts(hp_ctx_config(ctx));
    hp_advice_row_t rows[HP_LAYERS_MAX];
    size_t n = hp_advice_evaluate(&s, cfg, rows);
    if (ctx->req.prefers_text) {
        size_t len;
        char *text = as_text(&s, cfg, rows, n, &len);
        hp_resp_take(ctx, 200, "text/plain; charset=utf-8", text, len);
    } else {
        char *text = as_json(&s, cfg, rows, n);
        hp_resp_take(ctx, 200, "application/json", text, strlen(text));
    }
    return hp_done(ctx);
}

const hp_handler_t hp_handler_advice = {.name = "advice", .invoke = advice};

/* --- the options, and the window --------------------------------------- */

static const hp_option_t options[] = {
    HP_OPTION_INT(hp_advice_opts_t, "window_s", window_s, 1, 3600, 10,
                  "10 s: the recent window the advisor's call rates are measured over"),
    HP_OPTION_INT(hp_advice_opts_t, "hot_rate", hot_rate, 1, 100000000, 10000,
                  "10k calls/s: where the .NET guidance starts to care about allocations per node"),
    HP_OPTION_INT(hp_advice_opts_t, "sync_share_pct", sync_share_pct, 0, 100, 90,
                  "90%: a method that completes synchronously this often is the ValueTask case"),
};

const hp_options_t hp_advice_options = {
    .section = "advice",
    .options = options,
    .n = sizeof(options) / sizeof(options[0]),
    .size = sizeof(hp_advice_opts_t),
};

const hp_advice_opts_t *hp_advice_opts(const hp_config_t *cfg)
{
    return hp_config_section(cfg, &hp_advice_options);
}

/* The advisor's per-worker part: on every tick, the worker's layer figures
 * are cut into windows of advice.window_s (the "recent" figures above). Its
 * self is the worker's host; it holds nothing of its own. */
static int advisor_create(hp_host_t *host, void **self, char *err, size_t errlen)
{
    *self = host;
    return 0;
}

static void advisor_close(void *self, hp_cont_cb done, void *arg)
{
    done(arg);
}

static int advisor_reconfigure(void *self, const hp_config_t *cfg, char *err, size_t errlen)
{
    return 0; /* the tick reads the window's length from the current config */
}

static void advisor_tick(void *self)
{
    hp_host_t *host = self;
    const hp_advice_opts_t *a = hp_advice_opts(hp_host_config(host));
    hp_host_roll_window(host, (uint64_t)a->window_s * 1000);
}

const hp_service_t hp_service_advisor = {
    .name = "advisor",
    .create = advisor_create,
    .close = advisor_close,
    .reconfigure = advisor_reconfigure,
    .tick = advisor_tick,
};
