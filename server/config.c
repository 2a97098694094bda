/*
 * config.c - the option table, and the JSON walk that checks a file against
 * it (see config.h).
 *
 * Redis's config.c taught the shape: one table, one row per option, so that
 * parsing, defaults, bounds, --help and the error messages all come from the
 * same place and cannot disagree. The walk goes over the *document* (not the
 * table) so that every key in the file is accounted for: known keys are
 * checked and stored, unknown ones refused with their full path.
 *
 * The middleware list is the one structured option: an ordered array of
 * {"name", "enabled", ...own options}. Each entry's own options are checked
 * by that middleware's create(), called here on a throw-away instance, so a
 * file is validated whole before any worker sees it.
 */
#include "config.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef enum { T_INT, T_STR, T_MODE } opt_type_t;

typedef struct {
    const char *path;
    opt_type_t type;
    size_t offset;
    size_t size;      /* T_INT: width of the field; T_STR: capacity */
    int64_t min, max; /* T_INT bounds */
    const char *def;  /* default, as text */
    const char *why;  /* where the default comes from */
} opt_t;

#define INT(p, f, lo, hi, d, w)                                                                    \
    {                                                                                              \
        p, T_INT, offsetof(hp_config_t, f), sizeof(((hp_config_t *)0)->f), lo, hi, #d, w           \
    }
#define STR(p, f, d, w)                                                                            \
    {                                                                                              \
        p, T_STR, offsetof(hp_config_t, f), sizeof(((hp_config_t *)0)->f), 0, 0, d, w              \
    }

static const opt_t options[] = {
    STR("listen.host", host, "127.0.0.1",
        "loopback: hotpath is a load-test target, never an internet-facing server"),
    INT("listen.port", port, 0, 65535, 8080, "the usual alternative HTTP port; 0 = ephemeral"),
    INT("workers", workers, 0, 256, 0,
        "0 = one event loop per online core, as Kestrel sizes its IO queues"),
    {"mode", T_MODE, offsetof(hp_config_t, mode), 0, 0, 0, "valuetask",
     "valuetask: synchronous results stay inline; task: every valuetask is a heap task"},

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

    INT("cache.max_bytes", cache.max_bytes, 4096, INT64_C(1) << 40, 67108864,
        "64 MiB per worker: bounded, and large enough that hot keys never leave"),
    INT("cache.ttl_ms", cache.ttl_ms, 1, 86400000, 30000,
        "30 s: long against request rates, short against data changes"),
    INT("cache.stale_ms", cache.stale_ms, 0, 86400000, 10000,
        "10 s stale-while-revalidate window (RFC 5861); 0 turns it off"),
    STR("cache.policy", cache.policy, "sieve",
        "SIEVE (NSDI'24) beats LRU on skewed workloads; \"lru\" for comparison"),

    STR("upstream.host", upstream.host, "127.0.0.1", "the stub from `make run`"),
    INT("upstream.port", upstream.port, 1, 65535, 8081, "the stub from `make run`"),
    INT("upstream.pool_size", upstream.pool_size, 1, 4096, 64,
        "64 keep-alive connections per worker (nginx: keepalive 32..64 is usual)"),
    INT("upstream.connect_timeout_ms", upstream.connect_timeout_ms, 1, 600000, 1000,
        "1 s: a loopback connect takes microseconds; a second means the upstream is down"),
    INT("upstream.response_timeout_ms", upstream.response_timeout_ms, 1, 600000, 5000,
        "5 s (nginx's proxy_read_timeout is 60 s; a benchmark wants failures fast)"),
    INT("upstream.idle_timeout_ms", upstream.idle_timeout_ms, 1, 3600000, 60000,
        "60 s, as nginx's upstream keepalive_timeout"),
    INT("upstream.max_response_bytes", upstream.max_response_bytes, 1024, INT64_C(1) << 32, 8388608,
        "8 MiB: responses are buffered, and cached"),

    INT("advice.window_s", advice.window_s, 1, 3600, 10,
        "10 s: the recent window the advisor's call rates are measured over"),
    INT("advice.hot_rate", advice.hot_rate, 1, 100000000, 10000,
        "10k calls/s: where the .NET guidance starts to care about allocations per node"),
    INT("advice.sync_share_pct", advice.sync_share_pct, 0, 100, 90,
        "90%: a method that completes synchronously this often is the ValueTask case"),
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return HP_ECONFIG;
}

static void store_int(hp_config_t *c, const opt_t *o, int64_t v)
{
    char *p = (char *)c + o->offset;
    switch (o->size) {
    case 8: *(uint64_t *)p = (uint64_t)v; break;
    case 4: *(uint32_t *)p = (uint32_t)v; break;
    default: *(uint16_t *)p = (uint16_t)v; break;
    }
}

static int set_option(hp_config_t *c, const opt_t *o, const cJSON *v, const char *src, char *err,
                      size_t errlen)
{
    switch (o->type) {
    case T_INT: {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1e300;
        if (!cJSON_IsNumber(v) || d != (double)(int64_t)d || d < (double)o->min ||
            d > (double)o->max)
            return fail(err, errlen, "%s: %s: expected an integer from %lld to %lld", src, o->path,
                        (long long)o->min, (long long)o->max);
        store_int(c, o, (int64_t)d);
        return 0;
    }
    case T_STR: {
        if (!cJSON_IsString(v) || strlen(v->valuestring) >= o->size || !v->valuestring[0])
            return fail(err, errlen, "%s: %s: expected a non-empty string of at most %zu bytes",
                        src, o->path, o->size - 1);
        memcpy((char *)c + o->offset, v->valuestring, strlen(v->valuestring) + 1);
        return 0;
    }
    case T_MODE: {
        hp_mode_t m;
        if (!cJSON_IsString(v) || hp_config_mode_from_string(v->valuestring, &m))
            return fail(err, errlen, "%s: %s: expected \"valuetask\" or \"task\"", src, o->path);
        c->mode = m;
        return 0;
    }
    }
    return 0;
}

static const opt_t *find_option(const char *path)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].path, path) == 0) return &options[i];
    return NULL;
}

/* True when some option lives under "prefix." (so prefix is an object). */
static bool is_section(const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strncmp(options[i].path, prefix, n) == 0 && options[i].path[n] == '.') return true;
    return false;
}

static int parse_middleware(const hp_app_t *app, hp_config_t *c, const cJSON *arr, const char *src,
                            char *err, size_t errlen)
{
    if (!cJSON_IsArray(arr)) return fail(err, errlen, "%s: middleware: expected an array", src);
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n > HP_CHAIN_MAX)
        return fail(err, errlen, "%s: middleware: at most %d entries", src, HP_CHAIN_MAX);
    c->n_middleware = 0;
    for (size_t i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(arr, (int)i);
        char path[64];
        snprintf(path, sizeof(path), "middleware[%zu]", i);
        if (!cJSON_IsObject(e)) return fail(err, errlen, "%s: %s: expected an object", src, path);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(name))
            return fail(err, errlen, "%s: %s.name: expected a string", src, path);
        const hp_middleware_t *mw = hp_app_middleware(app, name->valuestring);
        char known[256];
        if (mw == NULL)
            return fail(err, errlen, "%s: %s.name: unknown middleware \"%s\" (known: %s)", src,
                        path, name->valuestring,
                        hp_app_middleware_names(app, known, sizeof(known)));
        for (size_t j = 0; j < c->n_middleware; j++)
            if (c->middleware[j].desc == mw)
                return fail(err, errlen, "%s: %s.name: \"%s\" appears twice", src, path, mw->name);
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(e, "enabled");
        if (en && !cJSON_IsBool(en))
            return fail(err, errlen, "%s: %s.enabled: expected true or false", src, path);
        hp_config_mw_t *m = &c->middleware[c->n_middleware++];
        m->desc = mw;
        m->enabled = en ? cJSON_IsTrue(en) : true;
        m->section = e;
        /* The middleware checks its own options, on and off alike: a typo in
         * a disabled entry is still a typo. */
        char mwerr[200] = "";
        void *self = NULL;
        if (mw->create(e, path, &self, mwerr, sizeof(mwerr)) != 0)
            return fail(err, errlen, "%s: %s", src, mwerr);
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
        const opt_t *o = find_option(path);
        if (o) {
            int rc = set_option(c, o, v, src, err, errlen);
            if (rc) return rc;
        } else if (is_section(path)) {
            if (!cJSON_IsObject(v))
                return fail(err, errlen, "%s: %s: expected an object", src, path);
            int rc = walk(app, c, v, path, src, err, errlen);
            if (rc) return rc;
        } else {
            return fail(err, errlen, "%s: %s: unknown key", src, path);
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

static int cross_checks(hp_config_t *c, const char *src, char *err, size_t errlen)
{
    if (strcmp(c->cache.policy, "sieve") && strcmp(c->cache.policy, "lru"))
        return fail(err, errlen, "%s: cache.policy: expected \"sieve\" or \"lru\"", src);
    struct sockaddr_storage ss;
    if (uv_ip4_addr(c->host, 0, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(c->host, 0, (struct sockaddr_in6 *)&ss))
        return fail(err, errlen, "%s: listen.host: expected a numeric IPv4 or IPv6 address", src);
    if (uv_ip4_addr(c->upstream.host, 0, (struct sockaddr_in *)&ss) &&
        uv_ip6_addr(c->upstream.host, 0, (struct sockaddr_in6 *)&ss))
        return fail(err, errlen, "%s: upstream.host: expected a numeric IPv4 or IPv6 address", src);
    if (c->limits.request_line_bytes > c->limits.header_bytes)
        return fail(err, errlen,
                    "%s: limits.request_line_bytes: must not exceed "
                    "limits.header_bytes (%u)",
                    src, c->limits.header_bytes);
    return 0;
}

static void apply_overrides(hp_config_t *c, const hp_config_overrides_t *ov)
{
    if (ov == NULL) return;
    if (ov->port >= 0) c->port = ov->port;
    if (ov->workers >= 0) c->workers = (unsigned)ov->workers;
    if (ov->mode >= 0) c->mode = (hp_mode_t)ov->mode;
}

/* Fill every scalar from the table's defaults. Cannot fail: the defaults
 * lie inside their bounds: tests/test_config.c loads config/hotpath.json,
 * which writes each one out, and compares it with these. */
static void set_defaults(hp_config_t *c)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_t *o = &options[i];
        switch (o->type) {
        case T_INT: store_int(c, o, strtoll(o->def, NULL, 10)); break;
        case T_STR: snprintf((char *)c + o->offset, o->size, "%s", o->def); break;
        case T_MODE: c->mode = HP_MODE_VALUETASK; break;
        }
    }
}

int hp_config_parse(const hp_app_t *app, const char *json, size_t len, const char *source,
                    const hp_config_overrides_t *ov, hp_config_t **out, char *err, size_t errlen)
{
    hp_config_t *c = hp_calloc(1, sizeof(*c));
    c->refs = 1;
    snprintf(c->source, sizeof(c->source), "%s", source);
    set_defaults(c);
    int rc;

    const char *end = NULL;
    c->json = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (c->json == NULL) {
        size_t at = end ? (size_t)(end - json) : 0;
        int line = 1;
        for (size_t i = 0; i < at && i < len; i++)
            line += json[i] == '\n';
        rc = fail(err, errlen, "%s: line %d: not valid JSON", source, line);
        goto free_config;
    }
    if (!cJSON_IsObject(c->json)) {
        rc = fail(err, errlen, "%s: expected a JSON object at the top level", source);
        goto free_config;
    }
    /* The default chain applies unless the file names its own. */
    if (!cJSON_GetObjectItemCaseSensitive(c->json, "middleware"))
        cJSON_AddItemToObject(c->json, "middleware", cJSON_Parse(app->default_chain));
    rc = walk(app, c, c->json, "", source, err, errlen);
    if (rc) goto free_config;
    apply_overrides(c, ov);
    rc = cross_checks(c, source, err, errlen);
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
        rc = fail(err, errlen, "%s: read error", path);
    else if (n > MAX_CONFIG)
        rc = fail(err, errlen, "%s: larger than %d bytes", path, MAX_CONFIG);
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
    cJSON_Delete(c->json);
    hp_free(c);
}

int hp_config_mode_from_string(const char *s, hp_mode_t *out)
{
    if (strcmp(s, "valuetask") == 0)
        *out = HP_MODE_VALUETASK;
    else if (strcmp(s, "task") == 0)
        *out = HP_MODE_TASK;
    else
        return HP_ECONFIG;
    return 0;
}

void hp_config_print_options(const hp_app_t *app, void *file)
{
    FILE *f = file;
    char names[256];
    for (size_t i = 0; i < N_OPTIONS; i++)
        fprintf(f, "  %-30s %-10s %s\n", options[i].path, options[i].def, options[i].why);
    fprintf(f, "  %-30s %-10s %s\n", "middleware", "(list)",
            "ordered [{\"name\":..., \"enabled\":...}], from: ");
    fprintf(f, "  %-30s %-10s %s\n", "", "", hp_app_middleware_names(app, names, sizeof(names)));
}
