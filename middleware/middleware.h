/*
 * middleware.h - the middleware that exist.
 *
 * Each middleware is one file with one exported descriptor, its options'
 * table in the same file (layers.h); the app (app/app.c) lists them all.
 * Which run, and in what order, is the configuration's "middleware" list.
 */
#ifndef HP_MIDDLEWARE_H
#define HP_MIDDLEWARE_H

#include "server/chain.h"
#include "server/layers.h"

extern const hp_middleware_t hp_mw_server_headers;
extern const hp_middleware_t hp_mw_request_id;
extern const hp_middleware_t hp_mw_metrics;
extern const hp_middleware_t hp_mw_access_log;

#endif
