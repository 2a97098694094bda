/*
 * server.c - starting, reloading and stopping the workers (see server.h).
 *
 * Start-up binds every worker's listener before any thread runs, so a bad
 * address or a port in use is reported to the user as one clear error, not
 * as N threads failing. Port 0 is reserved once (listener.c) so that all
 * workers share the one ephemeral port the kernel chose.
 */
#include "server.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "listener.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int hp_server_start(hp_config_t *cfg, const char *path, const hp_config_overrides_t *ov,
                    hp_server_t **out, char *err, size_t errlen)
{
    hp_server_t *s = hp_calloc(1, sizeof(*s));
    s->config = hp_config_ref(cfg);
    s->overrides = ov ? *ov : (hp_config_overrides_t)HP_CONFIG_NO_OVERRIDES;
    if (path) snprintf(s->config_path, sizeof(s->config_path), "%s", path);
    s->started_ms = uv_hrtime() / 1000000;
    uv_random(NULL, NULL, &s->boot_id, sizeof(s->boot_id), 0, NULL);
    int rc;

    int fd = hp_listener_reserve(cfg->host, cfg->port, &s->port);
    if (fd < 0) {
        rc = fd;
        snprintf(err, errlen, "cannot bind %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
        goto free_server;
    }
    s->nworkers = cfg->workers;
    s->workers = hp_calloc(s->nworkers, sizeof(hp_worker_t));
    unsigned opened = 0;
    for (; opened < s->nworkers; opened++) {
        hp_worker_t *w = &s->workers[opened];
        rc = hp_worker_init(w, s, opened, cfg, s->port, err, errlen);
        if (rc == 0) rc = hp_worker_open(w, true);
        if (rc) {
            if (!err[0] || rc != HP_ECONFIG)
                snprintf(err, errlen, "worker %u: cannot listen on %s:%d: %s", opened, cfg->host,
                         s->port, hp_strerror(rc));
            goto close_reservation;
        }
    }
    close(fd);
    for (unsigned i = 0; i < s->nworkers; i++) {
        rc = hp_worker_start(&s->workers[i]);
        if (rc) {
            /* Threads that did start are stopped; the process is exiting. */
            snprintf(err, errlen, "cannot start worker thread: %s", uv_strerror(rc));
            for (unsigned j = 0; j < i; j++)
                hp_worker_stop(&s->workers[j]);
            for (unsigned j = 0; j < i; j++)
                uv_thread_join(&s->workers[j].thread);
            return rc;
        }
    }
    *out = s;
    return 0;

close_reservation:
    close(fd);
free_server:
    /* Start-up failed: main exits with the message; the half-built workers
     * are not worth unwinding handle by handle. */
    hp_config_unref(s->config);
    hp_free(s->workers);
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
    int rc = hp_config_load(s->config_path, &s->overrides, &cfg, err, errlen);
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
    for (unsigned i = 0; i < s->nworkers; i++)
        hp_worker_stop(&s->workers[i]);
}

void hp_server_join(hp_server_t *s)
{
    for (unsigned i = 0; i < s->nworkers; i++)
        hp_worker_join(&s->workers[i]);
    hp_free(s->workers);
    hp_config_unref(s->config);
    hp_free(s);
}
