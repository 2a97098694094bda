/*
 * memserver.c - in-memory workers for unit tests (see memserver.h).
 */
#include "memserver.h"

#include "runtime/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

static long sink(void *arg, const char *data, size_t len)
{
    hp_capture_t *cap = arg;
    if (data == NULL) {
        cap->closed = true;
        return 0;
    }
    if (cap->closed) cap->late = true;
    if (cap->fail_write > 0 && ++cap->writes >= cap->fail_write) return UV_EPIPE;
    if (cap->stalled) return 0;
    cap->data = realloc(cap->data, cap->len + len + 1);
    memcpy(cap->data + cap->len, data, len);
    cap->len += len;
    cap->data[cap->len] = '\0';
    return (long)len;
}

void hp_memserver_open(hp_memserver_t *m, const char *json)
{
    char err[256];
    if (json == NULL) json = "{}";
    memset(m, 0, sizeof(*m));
    if (hp_config_parse(&hp_app, json, strlen(json), "test", NULL, &m->cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    if (hp_worker_init(&m->w, &hp_app, 0, m->cfg, 0, err, sizeof(err)) != 0)
        fail_msg("worker: %s", err);
    if (hp_worker_open(&m->w, false, err, sizeof(err)) != 0) fail_msg("worker: %s", err);
    hp_alloc_bind_thread(&m->w.host.alloc);
    hp_runtime_bind_thread(&m->w.host.runtime);
    /* What a worker thread charges between loop entries (worker.c). */
    hp_alloc_scope_set(&m->w.host.metrics.conn_alloc);
}

void hp_memserver_close(hp_memserver_t *m)
{
    hp_worker_stop_now(&m->w);
    hp_worker_run(&m->w);
    hp_worker_close(&m->w);
    hp_alloc_scope_set(NULL);
    hp_alloc_bind_thread(NULL);
    hp_runtime_bind_thread(NULL);
    hp_config_unref(m->cfg);
}

void *hp_memserver_service(hp_memserver_t *m, const hp_service_t *service)
{
    for (size_t i = 0; i < hp_app.nservices; i++)
        if (hp_app.services[i] == service && m->w.host.services[i]) return m->w.host.services[i];
    fail_msg("no %s service on this worker", service->name);
    return NULL;
}

hp_conn_t *hp_memconn_new(hp_memserver_t *m, hp_capture_t *cap)
{
    memset(cap, 0, sizeof(*cap));
    return hp_conn_new_memory(&m->w.host, sink, cap);
}

void hp_memconn_exchange(hp_memserver_t *m, const char *in, size_t len, bool bytewise,
                         hp_capture_t *cap)
{
    hp_conn_t *c = hp_memconn_new(m, cap);
    if (bytewise) {
        for (size_t i = 0; i < len && !cap->closed; i++)
            hp_conn_feed(c, in + i, 1);
    } else {
        hp_conn_feed(c, in, len);
    }
    uv_run(&m->w.loop, UV_RUN_NOWAIT);
    bool closed_by_server = cap->closed;
    if (!closed_by_server) hp_conn_close(c);
    uv_run(&m->w.loop, UV_RUN_NOWAIT);
    cap->closed = closed_by_server;
}

int hp_capture_status(const char *text)
{
    int status = 0;
    if (text == NULL || sscanf(text, "HTTP/1.1 %d", &status) != 1) return 0;
    return status;
}

const char *hp_capture_body(const char *text)
{
    const char *p = text ? strstr(text, "\r\n\r\n") : NULL;
    return p ? p + 4 : NULL;
}

const char *hp_capture_header(const char *text, const char *name, char *buf, size_t len)
{
    const char *end = text ? strstr(text, "\r\n\r\n") : NULL;
    size_t n = strlen(name);
    for (const char *p = text ? strstr(text, "\r\n") : NULL; p && p < end;
         p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, n) != 0 || line[n] != ':') continue;
        const char *v = line + n + 1;
        while (*v == ' ')
            v++;
        const char *eol = strstr(v, "\r\n");
        snprintf(buf, len, "%.*s", (int)(eol - v), v);
        return buf;
    }
    return NULL;
}

int hp_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

void hp_assert_config_refused(const char *json, const char *msg)
{
    hp_config_t *cfg = NULL;
    char err[256] = "";
    assert_int_equal(
        hp_config_parse(&hp_app, json, strlen(json), "t", NULL, &cfg, err, sizeof(err)),
        HP_ECONFIG);
    assert_null(cfg);
    if (strstr(err, msg) == NULL) fail_msg("\"%s\" lacks \"%s\"", err, msg);
}
