/*
 * layers.c - looking a middleware up in the app's list (see layers.h).
 */
#include "layers.h"

#include <stdio.h>
#include <string.h>

const hp_middleware_t *hp_app_middleware(const hp_app_t *app, const char *name)
{
    for (size_t i = 0; i < app->nmiddleware; i++)
        if (strcmp(app->middleware[i]->name, name) == 0) return app->middleware[i];
    return NULL;
}

const char *hp_app_middleware_names(const hp_app_t *app, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < app->nmiddleware && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "", app->middleware[i]->name);
    return buf;
}
