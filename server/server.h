/*
 * server.h - the server: N workers, the configuration they run, and the
 * control operations (reload, stop) that main's signal handlers call.
 *
 * Runs on the control (main) thread, which never serves requests: it
 * parses configs, hands them to workers, and waits for them at shutdown.
 * What the server serves - routes, middleware, services - is the app it is
 * handed at start (layers.h), and nothing else. Handlers that report on the
 * whole server (/stats, /metrics, /advice) read every worker's counters
 * through the hosts' peers (snapshot.c); that is the only cross-thread read
 * in the process, and it reads single-writer counters.
 */
#ifndef HP_SERVER_H
#define HP_SERVER_H

#include "config.h"
#include "worker.h"

#include <stddef.h>
#include <stdint.h>

typedef struct hp_server {
    const hp_app_t *app;
    hp_config_t *config; /* the running config (control thread) */
    hp_config_overrides_t overrides;
    char config_path[512]; /* "" when running on defaults */
    unsigned nworkers;
    hp_worker_t *workers;
    hp_host_t **hosts;   /* each worker's, for whole-server reports */
    int port;            /* the bound port, resolved when 0 */
    uint64_t started_ms; /* uv_hrtime at start, in ms */
    uint32_t boot_id;    /* random, prefixes generated request ids */
} hp_server_t;

/* Start cfg's workers serving app (borrowed; it outlives the server),
 * listening on cfg's host and port (port 0: an ephemeral port, reported in
 * s->port). Takes a reference to cfg. path is what SIGHUP re-reads (NULL:
 * nothing to reload). On failure every worker opened so far is closed
 * again, and err says why. */
int hp_server_start(const hp_app_t *app, hp_config_t *cfg, const char *path,
                    const hp_config_overrides_t *ov, hp_server_t **out, char *err, size_t errlen);

/* Re-read the config file; on success hand it to every worker. On failure
 * nothing changes and err says why (naming the key). Listen address and
 * worker count need a restart: a change to them is reported in note and
 * the running values are kept. */
int hp_server_reload(hp_server_t *s, char *err, size_t errlen, char *note, size_t notelen);

/* Begin a graceful stop: workers stop accepting, finish what runs (up to
 * limits.drain_timeout_ms), close, and end. When /healthz was ever asked,
 * they first answer it with 503 for limits.drain_health_ms, serving
 * everything else as usual (worker.c). */
void hp_server_stop(hp_server_t *s);

/* Wait for every worker to end, then free the server. */
void hp_server_join(hp_server_t *s);

#endif
