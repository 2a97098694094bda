/*
 * app.h - hotpath's app: the routes, the middleware a configuration may
 * name, and the per-worker services, wired in app.c and handed to the
 * server by main.c (tests and the fuzzer hand it to their in-memory
 * workers the same way).
 */
#ifndef HP_APP_H
#define HP_APP_H

#include "server/layers.h"

extern const hp_app_t hp_app;

#endif
