/*
 * fuzz_conn.c - libFuzzer target: arbitrary bytes, split at arbitrary
 * points, through a connection's parser, middleware chain and handlers, in
 * both modes.
 *
 * Input layout: byte 0 picks the mode (bit 0) and the number of split
 * points (bits 1-4); the next that-many bytes are split offsets (scaled to
 * the payload); the rest is what the client sends. Each input gets a fresh
 * in-memory connection on a long-lived worker, so state that outlives a
 * connection (the context pool, the cache, the upstream pool, the
 * generation's refcounts) is exercised across inputs, as in a real server.
 *
 * The upstream points at 127.0.0.1:1, where nothing listens: /cache and
 * /upstream requests take the connect-refused path and answer 502.
 *
 * Checked beyond "no crash, no leak, no UB": whatever the server writes
 * starts with a status line, and it never writes after it closed.
 */
#include "server/alloc.h"
#include "server/conn.h"
#include "server/worker.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t out;
    bool closed;
    bool bad;
} sink_state_t;

static long sink(void *arg, const char *data, size_t len)
{
    sink_state_t *s = arg;
    if (data == NULL) {
        s->closed = true;
        return 0;
    }
    if (s->closed) s->bad = true;
    if (s->out == 0 && (len < 9 || memcmp(data, "HTTP/1.1 ", 9) != 0)) s->bad = true;
    s->out += len;
    return (long)len;
}

static const char config_json[] =
    "{\"limits\":{\"request_line_bytes\":1024,\"header_bytes\":4096,\"header_count\":20,"
    "\"body_bytes\":8192},"
    "\"upstream\":{\"port\":1,\"connect_timeout_ms\":50,\"response_timeout_ms\":50},"
    "\"middleware\":[{\"name\":\"server_headers\"},{\"name\":\"request_id\"},"
    "{\"name\":\"metrics\"},{\"name\":\"access_log\",\"path\":\"/dev/null\"}]}";

static hp_worker_t workers[2];

static void open_workers(void)
{
    hp_alloc_install();
    for (int mode = 0; mode < 2; mode++) {
        char err[256];
        hp_config_overrides_t ov = HP_CONFIG_NO_OVERRIDES;
        ov.mode = mode;
        hp_config_t *cfg = NULL;
        if (hp_config_parse(config_json, sizeof(config_json) - 1, "fuzz", &ov, &cfg, err,
                            sizeof(err)) ||
            hp_worker_init(&workers[mode], NULL, 0, cfg, 0, err, sizeof(err)) ||
            hp_worker_open(&workers[mode], false)) {
            fprintf(stderr, "fuzz: cannot set up: %s\n", err);
            abort();
        }
        hp_config_unref(cfg);
    }
}

/* Drain both workers at exit so LeakSanitizer sees only real leaks. */
static void close_workers(void)
{
    for (int mode = 0; mode < 2; mode++) {
        hp_alloc_bind_thread(&workers[mode].alloc);
        hp_runtime_bind_thread(&workers[mode].runtime);
        hp_worker_stop_now(&workers[mode]);
        hp_worker_run(&workers[mode]);
        hp_worker_close(&workers[mode]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        open_workers();
        atexit(close_workers);
        ready = true;
    }
    if (size < 1) return 0;
    int mode = data[0] & 1;
    size_t nsplit = (data[0] >> 1) & 15;
    data++, size--;
    if (size < nsplit) return 0;
    const uint8_t *cuts = data;
    data += nsplit, size -= nsplit;

    hp_worker_t *w = &workers[mode];
    hp_alloc_bind_thread(&w->alloc);
    hp_runtime_bind_thread(&w->runtime);
    sink_state_t st = {0};
    hp_conn_t *c = hp_conn_new_memory(w, sink, &st);
    size_t at = 0;
    for (size_t i = 0; i <= nsplit && !st.closed; i++) {
        size_t end = i < nsplit ? at + (size - at) * cuts[i] / 256 : size;
        if (end > at) hp_conn_feed(c, (const char *)data + at, end - at);
        at = end;
        uv_run(&w->loop, UV_RUN_NOWAIT);
    }
    if (!st.closed) hp_conn_close(c);
    uv_run(&w->loop, UV_RUN_NOWAIT);
    if (st.bad) __builtin_trap();
    return 0;
}
