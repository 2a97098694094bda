/*
 * middleware.c - the option helpers every middleware's create() uses, so
 * that each checks its own section the same way and names the key in every
 * message. (The list of middleware, and the default chain's order, is the
 * app's: app/app.c.)
 */
#include "middleware.h"

#include "runtime/errors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

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
