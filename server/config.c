/*
 * config.c - the server's option table, and the JSON walk that checks a
 * file against it and against the sections the app adds (see config.h).
 *
 * Redis's config.c taught the shape: one table, one row per option
 * (runtime/options.h), so that parsing, defaults, bounds, --help and the
 * error messages all come from the same place and cannot disagree. The
 * server's table lists its own options (listen, workers, mode, limits);
 * each layer above lists its own in its module (the cache's in cache.c,
 * the upstream client's in client.c, the advisor's in advice.c), and the
 * app hands those tables over. The walk goes over the *document* (not the
 * tables) so that every key in the file is accounted for: known keys are
 * checked and stored, unknown ones refused with their full path.
 *
 * The middleware list is the one structured option: an ordered array of
 * {"name", "enabled", ...own options}. Each entry's own options are read
 * through its middleware's table like any section's, named by the entry's
 * place ("middleware[3].buffer_bytes"); then that middleware's create(),
 * called here on a throw-away instance, refuses what no table can say (a
 * log file that will not open), so a file is validated whole before any
 * worker sees it.
 */
#include "config.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "runtime/options.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define INT(k, f, lo, hi, d, w) HP_OPTION_INT(hp_config_t, k, f, lo, hi, d, w)

/* The server's own options (the top level of the file). */
static const hp_option_t server_options[] = {
    HP_OPTION_STR(hp_config_t, "listen.host", host, "127.0.0.1",
                  "loopback: hotpath is a load-test target, never an internet-facing server"),
    INT("listen.port", port, 0, 65535, 8080, "the usual alternative HTTP port; 0 = ephemeral"),
    INT("workers", workers, 0, HP_WORKERS_MAX, 0,
        "0 = one event loop per online core, as Kestrel sizes its IO queues"),
    HP_OPTION_ENUM(hp_config_t, "mode", mode, hp_mode_names, "valuetask",
                   "valuetask: synchronous results stay inline; task: every valuetask is a heap "
                   "task"),

    INT("limits.request_line_bytes", limits.request_line_bytes, 256, 1 << 20, 8192,
        "8 KiB, as Kestrel's MaxRequestLineSize (nginx: large_client_header_buffers 8k)"),
    INT("limits.header_bytes", limits.header_bytes, 1024, 1 << 20, 32768,
        "32 KiB, as Kestrel's MaxRequestHeadersTotalSize"),
    INT("limits.header_count", limits.header_count, 1, 10000, 100,
        "100, as Kestrel's MaxRequestHeaderCount"),
    INT("limits.body_bytes", limits.body_bytes, 0, INT64_C(1) << 32, 1048576,
        "1 MiB, as nginx's client_max_body_size (bodies are buffered in memory)"),
    INT("limits.header_timeout_ms", limits.header_timeout_ms, 100, 3600000, 30000,
        "30 s, as Kestrel's RequestHeadersTimeout"),
    INT("limits.idle_timeout_ms", limits.idle_timeout_ms, 100, 3600000, 75000,
        "75 s, as nginx's keepalive_timeout"),
    INT("limits.min_body_rate", limits.min_body_rate, 0, 1 << 30, 240,
        "240 bytes/s, as Kestrel's MinRequestBodyDataRate; 0 turns it off"),
    INT("limits.body_grace_ms", limits.body_grace_ms, 0, 3600000, 5000,
        "5 s, Kestrel's grace period for MinRequestBodyDataRate"),
    INT("limits.max_connections", limits.max_connections, 1, 1000000, 10000,
        "10000 per worker: nginx's worker_connections scaled for 5k-connection tests"),
    INT("limits.drain_timeout_ms", limits.drain_timeout_ms, 0, 600000, 5000,
        "5 s, as .NET's HostOptions.ShutdownTimeout before .NET 6"),
    INT("limits.drain_health_ms", limits.drain_health_ms, 0, 600000, 2000,
        "2 s: make cluster's HAProxy needs 2 failed checks 500 ms apart; only when "
        "/healthz was asked"),
};

static int server_check(const void *values, char *err, size_t errlen);

static const hp_options_t server_table = {
    .section = "",
    .options = server_options,
    .n = sizeof(server_options) / sizeof(server_options[0]),
    .size = sizeof(hp_config_t),
    .check = server_check,
};

/* The table path belongs to, and its option there; NULL when none has it. */
static const hp_option_t *find_option(const hp_config_t *c, const char *path,
                                      const hp_options_t **table, void **values)
{
    const hp_option_t *o = hp_options_find(&server_table, path);
    if (o) {
        *table = &server_table;
        *values = (void *)c;
        return o;
    }
    for (size_t i = 0; i < c->nsections; i++)
        if ((o = hp_options_find(c->section_tables[i], path))) {
            *table = c->section_tables[i];
            *values = c->sections[i];
            return o;
        }
    return NULL;
}

/* True when some option lives under "prefix." (so prefix is an object). */
static bool is_section(const hp_config_t *c, const char *prefix)
{
    if (hp_options_has_section(&server_table, prefix)) return true;
    for (size_t i = 0; i < c->nsections; i++)
        if (hp_options_has_section(c->section_tables[i], prefix) ||
            strcmp(c->section_tables[i]->section, prefix) == 0)
            return true;
    return false;
}

/* mw's table as it reads the entry at path: the same rows, named from
 * there ("middleware[3]" + "buffer_bytes"). */
static hp_options_t entry_table(const hp_middleware_t *mw, const char *path)
{
    hp_options_t t = *mw->options;
    t.section = path;
    return t;
}

/* The options of middleware entry e (at path) into *values, a new struct of
 * mw's table at its defaults first (NULL when mw has no table). Every key
 * but "name" and "enabled" must be one of the table's. */
static int read_entry(const hp_middleware_t *mw, const cJSON *e, const char *path, const char *src,
                      void **values, char *err, size_t errlen)
{
    hp_options_t t = {.section = path};
    if (mw->options) {
        t = entry_table(mw, path);
        *values = hp_calloc(1, t.size);
        hp_options_defaults(&t, *values);
    }
    for (const cJSON *v = e->child; v; v = v->next) {
        if (!strcmp(v->string, "name") || !strcmp(v->string, "enabled")) continue;
        char key[128];
        snprintf(key, sizeof(key), "%s.%s", path, v->string);
        const hp_option_t *o = hp_options_find(&t, key);
        if (o == NULL) return hp_options_fail(err, errlen, "%s: %s: unknown key", src, key);
        int rc = hp_options_set(&t, o, *values, v, src, err, errlen);
        if (rc) return rc;
    }
    /* A table's own check names the key alone; the entry's path goes first. */
    char why[200];
    if (t.check && t.check(*values, why, sizeof(why)))
        return hp_options_fail(err, errlen, "%s: %s.%s", src, path, why);
    return 0;
}

static int parse_middleware(const hp_app_t *app, hp_config_t *c, const cJSON *arr, const char *src,
                            char *err, size_t errlen)
{
    if (!cJSON_IsArray(arr))
        return hp_options_fail(err, errlen, "%s: middleware: expected an array", src);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n > HP_CHAIN_MAX)
        return hp_options_fail(err, errlen, "%s: middleware: at most %d entries", src,
                               HP_CHAIN_MAX);
    /* A second "middleware" key in one document replaces the first. */
    for (size_t i = 0; i < c->n_middleware; i++)
        hp_free(c->middleware[i].options);
    memset(c->middleware, 0, sizeof(c->middleware));
    c->n_middleware = 0;
    for (size_t i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(arr, (int)i);
        char path[64];
        snprintf(path, sizeof(path), "middleware[%zu]", i);
        if (!cJSON_IsObject(e))
            return hp_options_fail(err, errlen, "%s: %s: expected an object", src, path);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(name))
            return hp_options_fail(err, errlen, "%s: %s.name: expected a string", src, path);
        const hp_middleware_t *mw = hp_app_middleware(app, name->valuestring);
        char known[256];
        if (mw == NULL)
            return hp_options_fail(
                err, errlen, "%s: %s.name: unknown middleware \"%s\" (known: %s)", src, path,
                name->valuestring, hp_app_middleware_names(app, known, sizeof(known)));
        for (size_t j = 0; j < c->n_middleware; j++)
            if (c->middleware[j].desc == mw)
                return hp_options_fail(err, errlen, "%s: %s.name: \"%s\" appears twice", src, path,
                                       mw->name);
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(e, "enabled");
        if (en && !cJSON_IsBool(en))
            return hp_options_fail(err, errlen, "%s: %s.enabled: expected true or false", src,
                                   path);
        hp_config_mw_t *m = &c->middleware[c->n_middleware++];
        m->desc = mw;
        m->enabled = en ? cJSON_IsTrue(en) : true;
        /* Its own options are checked on and off alike: a typo in a
         * disabled entry is still a typo. */
        int rc = read_entry(mw, e, path, src, &m->options, err, errlen);
        if (rc) return rc;
        char mwerr[200] = "";
        void *self = NULL;
        if (mw->create(m->options, path, &self, mwerr, sizeof(mwerr)) != 0)
            return hp_options_fail(err, errlen, "%s: %s", src, mwerr);
        mw->destroy(self);
    }
    return 0;
}

static int walk(const hp_app_t *app, hp_config_t *c, const cJSON *obj, const char *prefix,
                const char *src, char *err, size_t errlen)
{
    for (const cJSON *v = obj->child; v; v = v->next) {
        char path[128];
        if (prefix[0])
            snprintf(path, sizeof(path), "%s.%s", prefix, v->string);
        else
            snprintf(path, sizeof(path), "%s", v->string);
        if (!prefix[0] && strcmp(v->string, "middleware") == 0) {
            int rc = parse_middleware(app, c, v, src, err, errlen);
            if (rc) return rc;
            continue;
        }
        const hp_options_t *table;
        void *values;
        const hp_option_t *o = find_option(c, path, &table, &values);
        if (o) {
            int rc = hp_options_set(table, o, values, v, src, err, errlen);
            if (rc) return rc;
        } else if (is_section(c, path)) {
            if (!cJSON_IsObject(v))
                return hp_options_fail(err, errlen, "%s: %s: expected an object", src, path);
            int rc = walk(app, c, v, path, src, err, errlen);
            if (rc) return rc;
        } else {
            return hp_options_fail(err, errlen, "%s: %s: unknown key", src, path);
        }
    }
    return 0;
}

static unsigned online_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    return 1;
}

/* What no single option of the server's says. */
static int server_check(const void *values, char *err, size_t errlen)
{
    const hp_config_t *c = values;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(c->host, 0, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(c->host, 0, (struct sockaddr_in6 *)&ss))
        return hp_options_fail(err, errlen, "listen.host: expected a numeric IPv4 or IPv6 address");
    if (c->limits.request_line_bytes > c->limits.header_bytes)
        return hp_options_fail(
            err, errlen, "limits.request_line_bytes: must not exceed limits.header_bytes (%u)",
            c->limits.header_bytes);
    return 0;
}

/* A table's own check of what was read, its message after the file's name. */
static int cross_check(const hp_options_t *t, const void *values, const char *src, char *err,
                       size_t errlen)
{
    char why[256];
    if (t->check == NULL || t->check(values, why, sizeof(why)) == 0) return 0;
    return hp_options_fail(err, errlen, "%s: %s", src, why);
}

static void apply_overrides(hp_config_t *c, const hp_config_overrides_t *ov)
{
    if (ov == NULL) return;
    if (ov->port >= 0) c->port = ov->port;
    if (ov->workers >= 0) c->workers = (unsigned)ov->workers;
    if (ov->mode >= 0) c->mode = (hp_mode_t)ov->mode;
}

int hp_config_parse(const hp_app_t *app, const char *json, size_t len, const char *source,
                    const hp_config_overrides_t *ov, hp_config_t **out, char *err, size_t errlen)
{
    hp_config_t *c = hp_calloc(1, sizeof(*c));
    c->refs = 1;
    snprintf(c->source, sizeof(c->source), "%s", source);
    int rc;
    if (app->nsections > HP_SECTIONS_MAX) {
        rc = hp_options_fail(err, errlen, "%zu configuration sections: at most %d", app->nsections,
                             HP_SECTIONS_MAX);
        goto free_config;
    }
    /* Every option at its default first: they lie inside their bounds
     * (tests/test_config.c loads config/hotpath.json, which writes each one
     * out, and compares it with these). */
    hp_options_defaults(&server_table, c);
    for (size_t i = 0; i < app->nsections; i++) {
        c->section_tables[i] = app->sections[i];
        c->sections[i] = hp_calloc(1, app->sections[i]->size);
        hp_options_defaults(app->sections[i], c->sections[i]);
        c->nsections++;
    }

    const char *end = NULL;
    c->json = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (c->json == NULL) {
        size_t at = end ? (size_t)(end - json) : 0;
        int line = 1;
        for (size_t i = 0; i < at && i < len; i++)
            line += json[i] == '\n';
        rc = hp_options_fail(err, errlen, "%s: line %d: not valid JSON", source, line);
        goto free_config;
    }
    if (!cJSON_IsObject(c->json)) {
        rc = hp_options_fail(err, errlen, "%s: expected a JSON object at the top level", source);
        goto free_config;
    }
    /* The default chain applies unless the file names its own. */
    if (!cJSON_GetObjectItemCaseSensitive(c->json, "middleware"))
        cJSON_AddItemToObject(c->json, "middleware", cJSON_Parse(app->default_chain));
    rc = walk(app, c, c->json, "", source, err, errlen);
    if (rc) goto free_config;
    apply_overrides(c, ov);
    rc = cross_check(&server_table, c, source, err, errlen);
    for (size_t i = 0; rc == 0 && i < c->nsections; i++)
        rc = cross_check(c->section_tables[i], c->sections[i], source, err, errlen);
    if (rc) goto free_config;
    if (c->workers == 0) c->workers = online_cores();
    *out = c;
    return 0;

free_config:
    hp_config_unref(c);
    return rc;
}

int hp_config_load(const hp_app_t *app, const char *path, const hp_config_overrides_t *ov,
                   hp_config_t **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, uv_strerror(e));
        return e;
    }
    /* Configs are small; a bound keeps a wrong path (a log, a device) from
     * being slurped whole. */
    enum { MAX_CONFIG = 1 << 20 };
    char *buf = hp_malloc(MAX_CONFIG + 1);
    size_t n = fread(buf, 1, MAX_CONFIG + 1, f);
    int rerr = ferror(f);
    fclose(f);
    int rc;
    if (rerr)
        rc = hp_options_fail(err, errlen, "%s: read error", path);
    else if (n > MAX_CONFIG)
        rc = hp_options_fail(err, errlen, "%s: larger than %d bytes", path, MAX_CONFIG);
    else
        rc = hp_config_parse(app, buf, n, path, ov, out, err, errlen);
    hp_free(buf);
    return rc;
}

hp_config_t *hp_config_ref(hp_config_t *c)
{
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    return c;
}

void hp_config_unref(hp_config_t *c)
{
    if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (size_t i = 0; i < c->nsections; i++)
        hp_free(c->sections[i]);
    for (size_t i = 0; i < c->n_middleware; i++)
        hp_free(c->middleware[i].options);
    cJSON_Delete(c->json);
    hp_free(c);
}

const void *hp_config_section(const hp_config_t *c, const hp_options_t *table)
{
    for (size_t i = 0; i < c->nsections; i++)
        if (c->section_tables[i] == table) return c->sections[i];
    return NULL;
}

int hp_config_mode_from_string(const char *s, hp_mode_t *out)
{
    for (int m = 0; m < HP_MODES; m++)
        if (strcmp(s, hp_mode_names[m]) == 0) {
            *out = (hp_mode_t)m;
            return 0;
        }
    return HP_ECONFIG;
}

void hp_config_print_options(const hp_app_t *app, void *file)
{
    FILE *f = file;
    char names[256];
    hp_options_print(&server_table, f);
    for (size_t i = 0; i < app->nsections; i++)
        hp_options_print(app->sections[i], f);
    fprintf(f, "  %-30s %-10s %s\n", "middleware", "(list)",
            "ordered [{\"name\":..., \"enabled\":..., its options}], of:");
    fprintf(f, "  %-30s %-10s %s\n", "", "", hp_app_middleware_names(app, names, sizeof(names)));
    fprintf(f, "  %-30s %-10s %s\n", "", "", "each one's options, as <name>.<key>:");
    for (size_t i = 0; i < app->nmiddleware; i++) {
        const hp_middleware_t *mw = app->middleware[i];
        if (mw->options == NULL) continue;
        hp_options_t t = entry_table(mw, mw->name);
        hp_options_print(&t, f);
    }
}
