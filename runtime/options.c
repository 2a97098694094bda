/*
 * options.c - reading, checking and printing option tables (options.h).
 *
 * Every message names the option by its full path, so a user finds the key
 * in the file at once: "limits.header_bytes: expected an integer from 1024
 * to 1048576".
 */
#include "options.h"

#include "errors.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int hp_options_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return HP_ECONFIG;
}

/* "cache" + "max_bytes" -> "cache.max_bytes". */
static void path_of(const hp_options_t *t, const hp_option_t *o, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", t->section, t->section[0] ? "." : "", o->key);
}

static void *field(void *values, const hp_option_t *o)
{
    return (char *)values + o->offset;
}

static void store_int(void *values, const hp_option_t *o, uint64_t v)
{
    void *p = field(values, o);
    switch (o->size) {
    case 8: *(uint64_t *)p = v; break;
    case 4: *(uint32_t *)p = (uint32_t)v; break;
    default: *(uint16_t *)p = (uint16_t)v; break;
    }
}

static uint64_t load_int(const void *values, const hp_option_t *o)
{
    const void *p = (const char *)values + o->offset;
    switch (o->size) {
    case 8: return *(const uint64_t *)p;
    case 4: return *(const uint32_t *)p;
    default: return *(const uint16_t *)p;
    }
}

static int enum_index(const hp_option_t *o, const char *name)
{
    for (int i = 0; o->names[i]; i++)
        if (strcmp(o->names[i], name) == 0) return i;
    return -1;
}

static void set_default(void *values, const hp_option_t *o)
{
    switch (o->type) {
    case HP_OPT_INT: store_int(values, o, strtoull(o->def, NULL, 10)); break;
    case HP_OPT_STR: snprintf(field(values, o), o->size, "%s", o->def); break;
    case HP_OPT_STRPTR: *(const char **)field(values, o) = o->def; break;
    case HP_OPT_ENUM: *(int *)field(values, o) = enum_index(o, o->def); break;
    case HP_OPT_BOOL: *(bool *)field(values, o) = strcmp(o->def, "true") == 0; break;
    }
}

void hp_options_defaults(const hp_options_t *t, void *values)
{
    for (size_t i = 0; i < t->n; i++)
        set_default(values, &t->options[i]);
}

void hp_options_fill_zeros(const hp_options_t *t, void *values)
{
    for (size_t i = 0; i < t->n; i++) {
        const hp_option_t *o = &t->options[i];
        if (o->type == HP_OPT_INT && load_int(values, o) == 0) set_default(values, o);
    }
}

const hp_option_t *hp_options_find(const hp_options_t *t, const char *path)
{
    size_t n = strlen(t->section);
    if (n) {
        if (strncmp(path, t->section, n) != 0 || path[n] != '.') return NULL;
        path += n + 1;
    }
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->options[i].key, path) == 0) return &t->options[i];
    return NULL;
}

bool hp_options_has_section(const hp_options_t *t, const char *path)
{
    for (size_t i = 0; i < t->n; i++) {
        char full[128];
        path_of(t, &t->options[i], full, sizeof(full));
        size_t n = strlen(path);
        if (strncmp(full, path, n) == 0 && full[n] == '.') return true;
    }
    return false;
}

static int expected(const hp_options_t *t, const hp_option_t *o, const char *src, char *err,
                    size_t errlen)
{
    char path[128];
    path_of(t, o, path, sizeof(path));
    const char *at = src ? src : "", *sep = src ? ": " : "";
    switch (o->type) {
    case HP_OPT_INT:
        return hp_options_fail(err, errlen, "%s%s%s: expected an integer from %lld to %lld", at,
                               sep, path, (long long)o->min, (long long)o->max);
    case HP_OPT_ENUM: {
        char names[128] = "";
        size_t used = 0;
        for (int i = 0; o->names[i] && used < sizeof(names); i++)
            used += (size_t)snprintf(names + used, sizeof(names) - used, "%s\"%s\"",
                                     i == 0            ? ""
                                     : o->names[i + 1] ? ", "
                                                       : " or ",
                                     o->names[i]);
        return hp_options_fail(err, errlen, "%s%s%s: expected %s", at, sep, path, names);
    }
    case HP_OPT_BOOL:
        return hp_options_fail(err, errlen, "%s%s%s: expected true or false", at, sep, path);
    default:
        return hp_options_fail(err, errlen,
                               "%s%s%s: expected a non-empty string of at most %zu bytes", at, sep,
                               path, o->size - 1);
    }
}

int hp_options_set(const hp_options_t *t, const hp_option_t *o, void *values, const cJSON *v,
                   const char *src, char *err, size_t errlen)
{
    switch (o->type) {
    case HP_OPT_INT: {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1e300;
        if (!cJSON_IsNumber(v) || d != (double)(int64_t)d || d < (double)o->min ||
            d > (double)o->max)
            return expected(t, o, src, err, errlen);
        store_int(values, o, (uint64_t)(int64_t)d);
        return 0;
    }
    case HP_OPT_STR:
    case HP_OPT_STRPTR:
        /* A string without a default may be "" in a file: not set, NULL. */
        if (o->type == HP_OPT_STRPTR && o->def == NULL && cJSON_IsString(v) && !v->valuestring[0]) {
            *(const char **)field(values, o) = NULL;
            return 0;
        }
        if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= o->size)
            return expected(t, o, src, err, errlen);
        if (o->type == HP_OPT_STR)
            memcpy(field(values, o), v->valuestring, strlen(v->valuestring) + 1);
        else
            *(const char **)field(values, o) = v->valuestring;
        return 0;
    case HP_OPT_ENUM: {
        int i = cJSON_IsString(v) ? enum_index(o, v->valuestring) : -1;
        if (i < 0) return expected(t, o, src, err, errlen);
        *(int *)field(values, o) = i;
        return 0;
    }
    case HP_OPT_BOOL:
        if (!cJSON_IsBool(v)) return expected(t, o, src, err, errlen);
        *(bool *)field(values, o) = cJSON_IsTrue(v);
        return 0;
    }
    return 0;
}

int hp_options_check(const hp_options_t *t, const void *values, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n; i++) {
        const hp_option_t *o = &t->options[i];
        char path[128];
        path_of(t, o, path, sizeof(path));
        const void *p = (const char *)values + o->offset;
        switch (o->type) {
        case HP_OPT_INT: {
            uint64_t v = load_int(values, o);
            if ((int64_t)v < o->min || (int64_t)v > o->max)
                return hp_options_fail(err, errlen,
                                       "%s: expected an integer from %lld to %lld, got %llu", path,
                                       (long long)o->min, (long long)o->max, (unsigned long long)v);
            break;
        }
        case HP_OPT_STR:
        case HP_OPT_STRPTR: {
            const char *s = o->type == HP_OPT_STR ? p : *(const char *const *)p;
            if (s == NULL && o->type == HP_OPT_STRPTR && o->def == NULL) break; /* not set */
            if (s == NULL || !s[0] || strlen(s) >= o->size)
                return hp_options_fail(err, errlen,
                                       "%s: expected a non-empty string of at most %zu bytes", path,
                                       o->size - 1);
            break;
        }
        case HP_OPT_ENUM: {
            int v = *(const int *)p, n = 0;
            while (o->names[n])
                n++;
            if (v < 0 || v >= n) return expected(t, o, NULL, err, errlen);
            break;
        }
        case HP_OPT_BOOL: break; /* a bool holds nothing but its two values */
        }
    }
    return t->check ? t->check(values, err, errlen) : 0;
}

void hp_options_print(const hp_options_t *t, FILE *f)
{
    for (size_t i = 0; i < t->n; i++) {
        char path[128];
        path_of(t, &t->options[i], path, sizeof(path));
        const char *def = t->options[i].def ? t->options[i].def : "(none)";
        fprintf(f, "  %-30s %-10s %s\n", path, def, t->options[i].why);
    }
}
