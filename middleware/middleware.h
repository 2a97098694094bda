/*
 * middleware.h - the middleware that exist, and the helpers they share.
 *
 * Each middleware is one file with one exported descriptor; the app
 * (app/app.c) lists them all. Which run, and in what order, is the
 * configuration's "middleware" list.
 */
#ifndef HP_MIDDLEWARE_H
#define HP_MIDDLEWARE_H

#include "server/chain.h"
#include "server/layers.h"

#include <stdbool.h>
#include <stddef.h>

extern const hp_middleware_t hp_mw_server_headers;
extern const hp_middleware_t hp_mw_request_id;
extern const hp_middleware_t hp_mw_metrics;
extern const hp_middleware_t hp_mw_access_log;

/* Refuse keys of section other than "name", "enabled" and the NULL-ended
 * allowed list, naming the first unknown one as "<path>.<key>". */
int hp_mw_check_keys(const cJSON *section, const char *path, const char *const *allowed, char *err,
                     size_t errlen);

/* Read an optional string option (default when absent) into dst (cap
 * bytes). HP_ECONFIG with a message when it is not a string that fits. */
int hp_mw_opt_string(const cJSON *section, const char *path, const char *key, const char *def,
                     char *dst, size_t cap, char *err, size_t errlen);

/* Read an optional integer option in [min, max]. */
int hp_mw_opt_int(const cJSON *section, const char *path, const char *key, long long def,
                  long long min, long long max, long long *out, char *err, size_t errlen);

/* Read an optional boolean option. */
int hp_mw_opt_bool(const cJSON *section, const char *path, const char *key, bool def, bool *out,
                   char *err, size_t errlen);

#endif
