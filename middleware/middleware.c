/*
 * middleware.c - the registry of middleware and their option helpers.
 *
 * The registry is the one place that lists every middleware; the default
 * chain (config.c) uses them in this order: server_headers outermost, so
 * its Date reflects the moment the answer is complete, then request_id,
 * metrics (so its latency includes everything inside it), access_log.
 */
#include "middleware.h"

#include "runtime/errors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static const hp_middleware_t *const registry[] = {
    &hp_mw_server_headers,
    &hp_mw_request_id,
    &hp_mw_metrics,
    &hp_mw_access_log,
};

#define N_REGISTRY (sizeof(registry) / sizeof(registry[0]))

const hp_middleware_t *hp_middleware_find(const char *name)
{
    for (size_t i = 0; i < N_REGISTRY; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

const hp_middleware_t *hp_middleware_at(size_t i)
{
    return i < N_REGISTRY ? registry[i] : NULL;
}

const char *hp_middleware_names(void)
{
    /* Built from the registry so it cannot go stale; only the control
     * thread calls this (config checks, --help). */
    static char names[256];
    if (!names[0]) {
        size_t at = 0;
        for (size_t i = 0; i < N_REGISTRY; i++)
            at += (size_t)snprintf(names + at, sizeof(names) - at, "%s%s", i ? ", " : "",
                                   registry[i]->name);
    }
    return names;
}

int hp_mw_check_keys(const cJSON *section, const char *path, const char *const *allowed, char *err,
                     size_t errlen)
{
    for (const cJSON *v = section ? section->child : NULL; v; v = v->next) {
        if (!strcmp(v->string, "name") || !strcmp(v->string, "enabled")) continue;
        bool ok = false;
        for (const char *const *a = allowed; a && *a; a++)
            ok = ok || !strcmp(*a, v->string);
        if (!ok) {
            snprintf(err, errlen, "%s.%s: unknown key", path, v->string);
            return HP_ECONFIG;
        }
    }
    return 0;
}

int hp_mw_opt_string(const cJSON *section, const char *path, const char *key, const char *def,
                     char *dst, size_t cap, char *err, size_t errlen)
{
    const cJSON *v = section ? cJSON_GetObjectItemCaseSensitive(section, key) : NULL;
    const char *s = def;
    if (v) {
        if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= cap) {
            snprintf(err, errlen, "%s.%s: expected a non-empty string of at most %zu bytes", path,
                     key, cap - 1);
            return HP_ECONFIG;
        }
        s = v->valuestring;
    }
    snprintf(dst, cap, "%s", s);
    return 0;
}

int hp_mw_opt_int(const cJSON *section, const char *path, const char *key, long long def,
                  long long min, long long max, long long *out, char *err, size_t errlen)
{
    const cJSON *v = section ? cJSON_GetObjectItemCaseSensitive(section, key) : NULL;
    *out = def;
    if (!v) return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : 0;
    if (!cJSON_IsNumber(v) || d != (double)(long long)d || d < (double)min || d > (double)max) {
        snprintf(err, errlen, "%s.%s: expected an integer from %lld to %lld", path, key, min, max);
        return HP_ECONFIG;
    }
    *out = (long long)d;
    return 0;
}

int hp_mw_opt_bool(const cJSON *section, const char *path, const char *key, bool def, bool *out,
                   char *err, size_t errlen)
{
    const cJSON *v = section ? cJSON_GetObjectItemCaseSensitive(section, key) : NULL;
    *out = def;
    if (!v) return 0;
    if (!cJSON_IsBool(v)) {
        snprintf(err, errlen, "%s.%s: expected true or false", path, key);
        return HP_ECONFIG;
    }
    *out = cJSON_IsTrue(v);
    return 0;
}
