/*
 * server.c - starting, reloading and stopping the workers (see server.h).
 *
 * Start-up binds every worker's listener before any thread runs, so a bad
 * address or a port in use is reported to the user as one clear error, not
 * as N threads failing. Port 0 is reserved once (listener.c) so that all
 * workers share the one ephemeral port the kernel chose.
 */
#include "server.h"

#include "listener.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Undo a start that failed after n workers were initialized (opened is how
 * many of those also opened): each opened loop is drained and run until its
 * handles and services have closed, on this thread - no worker thread
 * runs yet. */
static void unwind(hp_server_t *s, unsigned n, unsigned opened)
{
    for (unsigned i = 0; i < n; i++) {
        hp_worker_t *w = &s->workers[i];
        if (i < opened) {
            hp_worker_stop_now(w);
            hp_worker_run(w);
        }
        hp_worker_close(w);
    }
}

int hp_server_start(const hp_app_t *app, hp_config_t *cfg, const char *path,
                    const hp_config_overrides_t *ov, hp_server_t **out, char *err, size_t errlen)
{
    hp_server_t *s = hp_calloc(1, sizeof(*s));
    s->app = app;
    s->config = hp_config_ref(cfg);
    s->overrides = ov ? *ov : (hp_config_overrides_t)HP_CONFIG_NO_OVERRIDES;
    if (path) snprintf(s->config_path, sizeof(s->config_path), "%s", path);
    s->started_ms = uv_hrtime() / 1000000;
    int rc = uv_random(NULL, NULL, &s->boot_id, sizeof(s->boot_id), 0, NULL);
    if (rc) {
        snprintf(err, errlen, "cannot draw a boot id: %s", uv_strerror(rc));
        goto free_server;
    }
    int fd = hp_listener_reserve(cfg->host, cfg->port, &s->port);
    if (fd < 0) {
        rc = fd;
        snprintf(err, errlen, "cannot bind %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
        goto free_server;
    }
    s->nworkers = cfg->workers;
    s->workers = hp_calloc(s->nworkers, sizeof(hp_worker_t));
    s->hosts = hp_calloc(s->nworkers, sizeof(hp_host_t *));
    unsigned inited = 0, opened = 0;
    for (; inited < s->nworkers; inited++) {
        hp_worker_t *w = &s->workers[inited];
        rc = hp_worker_init(w, app, inited, cfg, s->port, err, errlen);
        if (rc) goto unwind_workers;
        /* Before any thread runs: the whole server, for reports. */
        s->hosts[inited] = &w->host;
        w->host.boot_id = s->boot_id;
        w->host.peers = s->hosts;
        w->host.npeers = s->nworkers;
        w->host.server_started_ms = s->started_ms;
    }
    for (; opened < s->nworkers; opened++) {
        char why[256];
        rc = hp_worker_open(&s->workers[opened], true, why, sizeof(why));
        if (rc) {
            snprintf(err, errlen, "worker %u: %s", opened, why);
            goto unwind_workers;
        }
    }
    close(fd);
    fd = -1;
    for (unsigned i = 0; i < s->nworkers; i++) {
        rc = hp_worker_start(&s->workers[i]);
        if (rc) {
            /* The threads that did start drain and end; the rest are run
             * to their end here. */
            snprintf(err, errlen, "cannot start worker thread: %s", uv_strerror(rc));
            for (unsigned j = 0; j < i; j++)
                hp_worker_stop(&s->workers[j], 0);
            for (unsigned j = 0; j < i; j++)
                hp_worker_join(&s->workers[j]);
            for (unsigned j = i; j < s->nworkers; j++) {
                hp_worker_stop_now(&s->workers[j]);
                hp_worker_run(&s->workers[j]);
                hp_worker_close(&s->workers[j]);
            }
            goto free_workers;
        }
    }
    *out = s;
    return 0;

unwind_workers:
    unwind(s, inited, opened);
    if (fd >= 0) close(fd);
free_workers:
    hp_free(s->hosts);
    hp_free(s->workers);
free_server:
    hp_config_unref(s->config);
    hp_free(s);
    return rc;
}

int hp_server_reload(hp_server_t *s, char *err, size_t errlen, char *note, size_t notelen)
{
    note[0] = '\0';
    if (!s->config_path[0]) {
        snprintf(err, errlen, "no configuration file to reload (started on defaults)");
        return HP_ECONFIG;
    }
    hp_config_t *cfg = NULL;
    int rc = hp_config_load(s->app, s->config_path, &s->overrides, &cfg, err, errlen);
    if (rc) return rc;
    const hp_config_t *old = s->config;
    if (strcmp(cfg->host, old->host) || (cfg->port != old->port && cfg->port != 0) ||
        cfg->workers != old->workers) {
        snprintf(note, notelen,
                 "listen address and workers need a restart; keeping %s:%d with "
                 "%u workers",
                 old->host, s->port, old->workers);
        snprintf(cfg->host, sizeof(cfg->host), "%s", old->host);
        cfg->port = old->port;
        cfg->workers = old->workers;
    }
    for (unsigned i = 0; i < s->nworkers; i++)
        hp_worker_reload(&s->workers[i], cfg);
    hp_config_unref(s->config);
    s->config = cfg;
    return 0;
}

void hp_server_stop(hp_server_t *s)
{
    /* The grace is for a balancer that checks /healthz, on any worker: the
     * workers share one port, so they leave together or not at all. */
    unsigned grace = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        if (__atomic_load_n(&s->workers[i].host.health_checked, __ATOMIC_RELAXED))
            grace = s->config->limits.drain_health_ms;
    for (unsigned i = 0; i < s->nworkers; i++)
        hp_worker_stop(&s->workers[i], grace);
}

void hp_server_join(hp_server_t *s)
{
    for (unsigned i = 0; i < s->nworkers; i++)
        hp_worker_join(&s->workers[i]);
    hp_free(s->hosts);
    hp_free(s->workers);
    hp_config_unref(s->config);
    hp_free(s);
}
