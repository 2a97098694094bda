/*
 * config.h - hotpath's configuration: parsed from JSON with cJSON, checked
 * whole, then immutable and shared by every worker.
 *
 * One table in config.c drives every scalar option: its JSON path, type,
 * bounds, default, and the comment saying where the default comes from. A
 * file is refused with a message naming the offending key ("limits.
 * header_bytes: expected an integer from 1024 to 1048576"); unknown keys are
 * refused too, since a typo silently ignored is a setting silently lost.
 *
 * Who calls it: main (start-up, command-line overrides) and the control
 * thread on SIGHUP. Workers only read a config, through the reference they
 * were handed; the refcount is atomic because the control thread drops
 * references that workers took.
 */
#ifndef HP_CONFIG_H
#define HP_CONFIG_H

#include "layers.h"

#include "runtime/options.h"
#include "runtime/vtask.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The middleware chain holds at most this many layers (STYLE: a fixed,
 * visible chain; nginx's phase list is fixed the same way). */
#define HP_CHAIN_MAX 8

/* Workers per server: the bound of the "workers" option and --workers. */
#define HP_WORKERS_MAX 256

typedef struct cJSON cJSON;

typedef struct {
    const hp_middleware_t *desc; /* from the app the config was parsed for */
    bool enabled;
    void *options; /* desc->options' struct, filled from the entry (owned); NULL without */
} hp_config_mw_t;

typedef struct {
    uint32_t request_line_bytes;
    uint32_t header_bytes;
    uint32_t header_count;
    uint64_t body_bytes;
    uint32_t header_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t min_body_rate; /* bytes per second, 0 = off */
    uint32_t body_grace_ms;
    uint32_t max_connections; /* per worker */
    uint32_t drain_timeout_ms;
    uint32_t drain_health_ms; /* /healthz says 503 this long before the drain */
} hp_limits_t;

typedef struct hp_config {
    int refs; /* atomic builtins only */

    char host[64];
    int port;
    unsigned workers; /* 0 in the file means "one per core", resolved at load */
    hp_mode_t mode;

    size_t n_middleware;
    hp_config_mw_t middleware[HP_CHAIN_MAX];

    hp_limits_t limits;

    /* The sections of the layers above (the app's: layers.h), each its
     * module's struct, filled through its option table; read them with
     * hp_config_section. */
    size_t nsections;
    const hp_options_t *section_tables[HP_SECTIONS_MAX];
    void *sections[HP_SECTIONS_MAX]; /* owned */

    cJSON *json;      /* the parsed document; sections above point into it */
    char source[256]; /* the file it came from, or "(defaults)" */
} hp_config_t;

/* The values of the section table describes, or NULL when c has none
 * (borrowed, for c's life; the module's own struct). */
const void *hp_config_section(const hp_config_t *c, const hp_options_t *table);

/* Command-line settings that override the file, re-applied on every reload
 * so SIGHUP never undoes a flag. Negative / HP_MODE_UNSET means "not set". */
typedef struct {
    int port;
    int workers;
    int mode;
} hp_config_overrides_t;

#define HP_CONFIG_NO_OVERRIDES                                                                     \
    {                                                                                              \
        -1, -1, -1                                                                                 \
    }

/* Load and check path for app (its middleware, its default chain; borrowed,
 * and must outlive the config). On success *out is owned. On failure
 * returns HP_ECONFIG (or a libuv code for I/O) and writes a message naming
 * the file and key into err (errlen bytes). Overrides may be NULL. */
int hp_config_load(const hp_app_t *app, const char *path, const hp_config_overrides_t *ov,
                   hp_config_t **out, char *err, size_t errlen);

/* The same from a JSON string (tests, and the fuzzer). */
int hp_config_parse(const hp_app_t *app, const char *json, size_t len, const char *source,
                    const hp_config_overrides_t *ov, hp_config_t **out, char *err, size_t errlen);

hp_config_t *hp_config_ref(hp_config_t *c);
void hp_config_unref(hp_config_t *c); /* NULL is a no-op */

/* Parse "task" / "valuetask". Returns 0 or HP_ECONFIG. */
int hp_config_mode_from_string(const char *s, hp_mode_t *out);

/* Print every option with its default and the default's source - the
 * server's, app's sections', then each of app's middleware's (--help). */
void hp_config_print_options(const hp_app_t *app, void *file);

#endif
