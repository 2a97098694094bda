/*
 * options.h - configuration options as one table per section: each row a
 * key, its type, its bounds, its default and where the default comes from.
 * The table is the only home of a default: the configuration file is read
 * through it (server/config.c), --help prints it, and a module whose API
 * takes a zero field to mean "the default" fills it from the same row
 * (hp_options_fill_zeros) - so a default cannot drift between a module and
 * the configuration any more.
 *
 * Redis's config.c taught the shape. A section's table belongs to the
 * module whose options it lists (cache.c, client.c, l2.c, ...); the app
 * tells the configuration which sections exist.
 *
 * Pure functions over the caller's struct; no allocation. Any thread.
 */
#ifndef HP_OPTIONS_H
#define HP_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cJSON cJSON;

typedef enum {
    HP_OPT_INT,    /* an unsigned integer field of 2, 4 or 8 bytes, in [min, max] */
    HP_OPT_STR,    /* a char array field of `size` bytes: a copy, non-empty */
    HP_OPT_STRPTR, /* a const char * field: borrowed from the configuration's
                      document (or the default's literal), at most `size` - 1 bytes;
                      one without a default is NULL when absent or "" */
    HP_OPT_ENUM,   /* an int-sized enum field: the index of its name in `names` */
    HP_OPT_BOOL,   /* a bool field: JSON's true or false */
} hp_opt_type_t;

typedef struct {
    const char *key; /* within its section, may be dotted ("limits.header_bytes") */
    hp_opt_type_t type;
    size_t offset;
    size_t size;              /* INT: the field's width; STR, STRPTR: capacity, NUL included */
    int64_t min, max;         /* INT */
    const char *def;          /* the default, as text (an ENUM: its name; a BOOL: "true" or
                                 "false"; a STRPTR: may be NULL, no default) */
    const char *why;          /* where the default comes from */
    const char *const *names; /* ENUM: the values' names, NULL-ended */
} hp_option_t;

typedef struct hp_options {
    const char *section; /* its path in the file: "" for the top level, "cache", "cache.l2" */
    const hp_option_t *options;
    size_t n;
    size_t size; /* of the struct the options fill */
    /* Optional: what no single option can say (one value against another).
     * 0, or HP_ECONFIG with a message naming the key. */
    int (*check)(const void *values, char *err, size_t errlen);
} hp_options_t;

/* Rows, by field of the struct type they fill. */
#define HP_OPTION_INT(type, key, field, lo, hi, def, why)                                          \
    {                                                                                              \
        key, HP_OPT_INT, offsetof(type, field), sizeof(((type *)0)->field), lo, hi, #def, why,     \
            NULL                                                                                   \
    }
#define HP_OPTION_STR(type, key, field, def, why)                                                  \
    {                                                                                              \
        key, HP_OPT_STR, offsetof(type, field), sizeof(((type *)0)->field), 0, 0, def, why, NULL   \
    }
#define HP_OPTION_STRPTR(type, key, field, cap, def, why)                                          \
    {                                                                                              \
        key, HP_OPT_STRPTR, offsetof(type, field), cap, 0, 0, def, why, NULL                       \
    }
#define HP_OPTION_ENUM(type, key, field, names, def, why)                                          \
    {                                                                                              \
        key, HP_OPT_ENUM, offsetof(type, field), sizeof(((type *)0)->field), 0, 0, def, why, names \
    }

#define HP_OPTION_BOOL(type, key, field, def, why)                                                 \
    {                                                                                              \
        key, HP_OPT_BOOL, offsetof(type, field), sizeof(bool), 0, 0, #def, why, NULL               \
    }

/* Every option of t at its default. */
void hp_options_defaults(const hp_options_t *t, void *values);

/* Every INT option of t that is 0 in values at its default: for APIs that
 * take zero to mean "the default". */
void hp_options_fill_zeros(const hp_options_t *t, void *values);

/* The option of t at path, the key with its section's path in front
 * ("cache.max_bytes"), or NULL. */
const hp_option_t *hp_options_find(const hp_options_t *t, const char *path);

/* Whether some option of t lives under path ("limits": "limits.x" exists),
 * which makes path a JSON object. */
bool hp_options_has_section(const hp_options_t *t, const char *path);

/* Set option o of t in values from the JSON value v (the document must
 * outlive values: STRPTR borrows from it). 0, or HP_ECONFIG with
 * "<src>: <path>: expected ..." in err. */
int hp_options_set(const hp_options_t *t, const hp_option_t *o, void *values, const cJSON *v,
                   const char *src, char *err, size_t errlen);

/* Check values built in code against t's bounds, then t's check:
 * 0, or HP_ECONFIG with "<path>: expected ..., got ..." in err. */
int hp_options_check(const hp_options_t *t, const void *values, char *err, size_t errlen);

/* Format a refusal into err (when err and errlen are given) and return
 * HP_ECONFIG: how every configuration check says no, naming the key. */
int hp_options_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One line per option: path, default, why (--help). */
void hp_options_print(const hp_options_t *t, FILE *f);

#endif
