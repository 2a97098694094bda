/*
 * metrics.c - naming, recording and summing worker metrics (metrics.h).
 */
#include "metrics.h"

#include "runtime/counter.h"

#include <string.h>

static const uint64_t lat_bounds_us[HP_LAT_BUCKETS - 1] = HP_LAT_BOUNDS_US;

#define ROW(name, kind, help) HP_STAT_ROW(hp_layer_stats_t, name, kind, help)
static const hp_stat_t layer_rows[] = {HP_LAYER_STATS(ROW)};
#undef ROW
#define ROW(name, kind, help) HP_STAT_ROW(hp_connection_stats_t, name, kind, help)
static const hp_stat_t connection_rows[] = {HP_CONNECTION_STATS(ROW)};
#undef ROW
#define ROW(name, kind, help) HP_STAT_ROW(hp_io_stats_t, name, kind, help)
static const hp_stat_t io_rows[] = {HP_IO_STATS(ROW)};
#undef ROW

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const hp_stats_table_t hp_layer_stats_table = {
    "layer", sizeof(hp_layer_stats_t), layer_rows, COUNT(layer_rows), NULL, 0};
const hp_stats_table_t hp_connection_stats_table = {
    "connections", sizeof(hp_connection_stats_t), connection_rows, COUNT(connection_rows), NULL, 0};
const hp_stats_table_t hp_io_stats_table = {
    "io", sizeof(hp_io_stats_t), io_rows, COUNT(io_rows), NULL, 0};

static void add_layer(hp_metrics_t *m, const char *name, const char *kind)
{
    if (hp_metrics_layer_index(m, name) >= 0 || m->nlayers == HP_LAYERS_MAX) return;
    m->layer_kinds[m->nlayers] = kind;
    m->layer_names[m->nlayers++] = name;
}

void hp_metrics_init(hp_metrics_t *m, const hp_app_t *app, const hp_router_t *router)
{
    for (size_t i = 0; i < app->nmiddleware; i++)
        add_layer(m, app->middleware[i]->name, "middleware");
    for (size_t i = 0; i < router->n; i++)
        add_layer(m, router->routes[i].handler->name, "handler");
    for (size_t i = 0; i < app->nservices; i++)
        for (const hp_service_layer_t *l = app->services[i]->layers; l && l->name; l++)
            add_layer(m, l->name, l->kind);
}

int hp_metrics_layer_index(const hp_metrics_t *m, const char *name)
{
    for (size_t i = 0; i < m->nlayers; i++)
        if (strcmp(m->layer_names[i], name) == 0) return (int)i;
    return -1;
}

hp_layer_stats_t *hp_metrics_layer(hp_metrics_t *m, const char *name, hp_mode_t mode)
{
    int i = hp_metrics_layer_index(m, name);
    return i < 0 ? NULL : &m->layers[i][mode];
}

void hp_layer_record_other(hp_layer_stats_t *s, const hp_vtask_t *vt)
{
    hp_counter_add(&s->calls, 1);
    if (hp_vtask_is_completed(vt)) hp_counter_add(&s->completed_synchronously, 1);
    switch (vt->kind) {
    case HP_VT_TASK: hp_counter_add(&s->task_valuetasks, 1); break;
    case HP_VT_SOURCE: hp_counter_add(&s->source_valuetasks, 1); break;
    default: break; /* consumed or never set: a call, nothing else */
    }
}

void hp_metrics_answer(hp_route_stats_t *rs, unsigned status, uint64_t latency_ns)
{
    unsigned cls = status / 100;
    hp_counter_add(&rs->status[cls < 6 ? cls : 0], 1);
    uint64_t us = latency_ns / 1000;
    hp_counter_add(&rs->latency_ns_sum, latency_ns);
    unsigned b = 0;
    while (b < HP_LAT_BUCKETS - 1 && us > lat_bounds_us[b])
        b++;
    hp_counter_add(&rs->latency[b], 1);
}

void hp_metrics_roll_window(hp_metrics_t *m, hp_metrics_window_t *win, uint64_t now_ms,
                            uint64_t window_ms)
{
    if (win->start_ms == 0) win->start_ms = now_ms;
    if (now_ms - win->start_ms < window_ms) return;
    const size_t words = sizeof(m->layers) / sizeof(uint64_t);
    const uint64_t *cur = (const uint64_t *)m->layers;
    uint64_t *base = (uint64_t *)win->base;
    uint64_t *out = (uint64_t *)m->window;
    for (size_t i = 0; i < words; i++) {
        uint64_t v = hp_counter_get(&cur[i]);
        hp_counter_set(&out[i], v - base[i]);
        base[i] = v;
    }
    hp_counter_set(&m->window_ms, now_ms - win->start_ms);
    win->start_ms = now_ms;
}

void hp_metrics_sum(hp_metrics_t *const *blocks, size_t n, hp_metrics_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t words = offsetof(hp_metrics_t, nlayers) / sizeof(uint64_t);
    uint64_t *dst = (uint64_t *)out;
    for (size_t b = 0; b < n; b++) {
        const uint64_t *src = (const uint64_t *)blocks[b];
        for (size_t i = 0; i < words; i++)
            dst[i] += hp_counter_get(&src[i]);
    }
    if (n) {
        out->nlayers = blocks[0]->nlayers;
        memcpy(out->layer_names, blocks[0]->layer_names, sizeof(out->layer_names));
        memcpy(out->layer_kinds, blocks[0]->layer_kinds, sizeof(out->layer_kinds));
        out->window_ms = hp_counter_get(&blocks[0]->window_ms);
    }
}
