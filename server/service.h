/*
 * service.h - what a per-worker service (layers.h: hp_service_t) may ask of
 * the worker it runs on. A service sees its worker as an opaque hp_host_t
 * and asks, through the functions below, for what it may use: the loop,
 * the configuration, its own layers' figures, and a place to publish its
 * statistics under its own name. It never sees the worker's struct
 * (STYLE.md, "Layers"); host.c implements these.
 *
 * Threading: every call below is made on, and for, the worker's own thread.
 */
#ifndef HP_SERVICE_H
#define HP_SERVICE_H

#include "config.h"
#include "layers.h"
#include "metrics.h"

#include "runtime/stats.h"
#include "runtime/task.h"

#include <stddef.h>
#include <uv.h>

/* The worker's loop (borrowed; it outlives the service). */
uv_loop_t *hp_host_loop(hp_host_t *host);

/* The configuration of the worker's current generation (borrowed). */
const hp_config_t *hp_host_config(hp_host_t *host);

/* uv_now of the worker's loop, in milliseconds. */
uint64_t hp_host_now_ms(hp_host_t *host);

/* This worker's figures for a layer the service declared, in mode: what
 * hp_layer_record writes. Borrowed, for the worker's life. */
hp_layer_stats_t *hp_host_layer(hp_host_t *host, const char *name, hp_mode_t mode);

/* Close the worker's current window of layer figures (metrics.h) when
 * window_ms have passed since it began: the advisor's recent figures. */
void hp_host_roll_window(hp_host_t *host, uint64_t window_ms);

/* Publish a statistics block that table describes (written by this worker
 * only: runtime/counter.h): /stats and /metrics sum it over the workers,
 * under the table's name. block is borrowed until the service closes.
 * Returns 0, or UV_ENOSPC when HP_BLOCKS_MAX blocks are published already. */
int hp_host_publish(hp_host_t *host, const hp_stats_table_t *table, const void *block);

#endif
