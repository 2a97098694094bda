/*
 * chain.c - running the middleware chain (see chain.h for the contract).
 *
 * The chain is a call stack, not a list walk: each layer's invoke calls
 * hp_next, which invokes the layer below, down to the handler. When every
 * layer completes synchronously the whole request runs in one descent and
 * one return, with each layer's result an inline valuetask passed back in
 * two registers: no allocation, no indirection (in task mode: one heap task
 * per layer, which is the price being measured).
 *
 * When a layer below pends, the layers above it park: hp_then stores the
 * downstream valuetask in the layer's slot in the context, registers
 * then_awaited as its one continuation, and returns the layer's own pending
 * valuetask (the slot's pooled source, or a heap task in task mode). When
 * the bottom completes, the completions ripple up through then_awaited, each
 * running its layer's `after` and completing its own slot, which runs the
 * next continuation up, until the connection's continuation sees the end.
 *
 * Rejected alternative: a continuation-passing chain where every layer
 * takes a "next" callback. It never allocates either, but the synchronous
 * case then also runs through callbacks, and the ValueTask point - that the
 * common case is a plain return - disappears from the code.
 */
#include "chain.h"

#include "metrics.h"

#include "runtime/alloc.h"
#include "runtime/counter.h"
#include "runtime/errors.h"

#include <stdio.h>
#include <uv.h>

/* --- generations ------------------------------------------------------- */

hp_gen_t *hp_gen_new(hp_config_t *cfg, hp_metrics_t *m, const hp_gen_t *prev, char *err,
                     size_t errlen)
{
    hp_gen_t *g = hp_calloc(1, sizeof(*g));
    g->refs = 1;
    g->config = hp_config_ref(cfg);
    g->mode = cfg->mode;
    /* A reload that keeps the mode keeps the time it took effect (the
     * dashboard shows it); the first generation's mode runs since start.
     * The clock is uptime's (uv_hrtime), so that the dashboard's difference
     * of the two is the same on every read. */
    if (prev)
        g->mode_since_ms = prev->mode == g->mode ? prev->mode_since_ms : uv_hrtime() / 1000000;
    g->limits = cfg->limits;
    for (size_t i = 0; i < cfg->n_middleware; i++) {
        const hp_config_mw_t *cm = &cfg->middleware[i];
        if (!cm->enabled) continue;
        char path[48];
        snprintf(path, sizeof(path), "middleware[%zu]", i);
        void *self = NULL;
        if (cm->desc->create(cm->options, path, &self, err, errlen) != 0) {
            hp_gen_release(g);
            return NULL;
        }
        g->mw[g->nmw].desc = cm->desc;
        g->mw[g->nmw].self = self;
        for (int mode = 0; mode < HP_MODES; mode++)
            g->mw[g->nmw].stats[mode] = hp_metrics_layer(m, cm->desc->name, (hp_mode_t)mode);
        g->nmw++;
    }
    return g;
}

void hp_gen_destroy(hp_gen_t *g)
{
    for (unsigned i = 0; i < g->nmw; i++)
        g->mw[i].desc->destroy(g->mw[i].self);
    hp_config_unref(g->config);
    hp_free(g);
}

/* --- running ----------------------------------------------------------- */

hp_vtask_t hp_chain_start(hp_ctx_t *ctx)
{
    ctx->depth = -1;
    return hp_next(ctx);
}

hp_vtask_t hp_next(hp_ctx_t *ctx)
{
    hp_gen_t *gen = ctx->gen;
    int d = ctx->depth + 1;
    hp_vtask_t vt;
    ctx->depth = d;
    ctx->layers[d].mark = 0; /* the layer's own per-request value starts at 0 */
    if (d < (int)gen->nmw) {
        vt = gen->mw[d].desc->invoke(gen->mw[d].self, ctx);
        hp_layer_record(gen->mw[d].stats[ctx->mode], &vt);
    } else {
        const hp_handler_slot_t *h = ctx->handler;
        if (h->desc->invoke)
            vt = h->desc->invoke(h->self, ctx);
        else
            vt = hp_vtask_from_task(h->desc->invoke_task(h->self, ctx));
        hp_layer_record(h->stats[ctx->mode], &vt);
    }
    ctx->depth = d - 1;
    return vt;
}

hp_vtask_t hp_fail(hp_ctx_t *ctx, int err, const char *msg)
{
    return hp_vtask_failed(err, msg);
}

void hp_chain_fault(hp_ctx_t *ctx, int rc, const char *msg)
{
    ctx->fault = msg ? msg : hp_strerror(rc);
}

/* The layer's state beyond its mark is in use: the release resets it. */
static inline void pend(hp_layer_t *layer)
{
    layer->ctx->pended |= (uint16_t)(1u << (layer - layer->ctx->layers));
}

hp_vtask_t hp_layer_pending(hp_layer_t *layer)
{
    pend(layer);
    if (layer->ctx->mode == HP_MODE_TASK) {
        layer->task = hp_task_new();
        return hp_vtask_from_task(hp_task_ref(layer->task));
    }
    return hp_vtsource_vtask(&layer->source);
}

void hp_layer_complete(hp_layer_t *layer, int status, const char *msg)
{
    hp_ctx_t *ctx = layer->ctx;
    hp_task_t *t = layer->task;
    if (t) {
        layer->task = NULL;
        if (status)
            hp_task_fail(t, status, msg);
        else
            hp_task_complete(t, hp_chain_value(ctx));
        hp_task_unref(t);
    } else if (status) {
        hp_vtsource_fail(&layer->source, status, msg);
    } else {
        hp_vtsource_complete(&layer->source, hp_chain_value(ctx));
    }
}

/* The slow path: a downstream layer pended, and has now completed. */
static void then_awaited(void *arg)
{
    hp_layer_t *layer = arg;
    hp_ctx_t *ctx = layer->ctx;
    int status = hp_chain_consume(ctx, &layer->downstream);
    /* `after` sees the chain as it would synchronously: its own layer is the
     * current one (hp_layer_current works the same on both paths). */
    int depth = ctx->depth;
    ctx->depth = (int)(layer - ctx->layers);
    layer->after(layer->self, ctx, status);
    ctx->depth = depth;
    hp_layer_complete(layer, status, status ? ctx->fault : NULL);
}

int hp_layer_await(hp_layer_t *layer, hp_vtask_t downstream, hp_cont_cb cb)
{
    pend(layer);
    layer->downstream = downstream;
    int rc = hp_vtask_on_completed(&layer->downstream, cb, layer);
    if (rc == 0) return 0;
    /* Refused: whoever awaited it first keeps it; this layer reads the
     * refusal as its downstream's fault, now. */
    hp_vtask_drop(&layer->downstream);
    layer->downstream = hp_vtask_failed(rc, hp_strerror(rc));
    cb(layer);
    return rc;
}

hp_vtask_t hp_then_pending(hp_ctx_t *ctx, hp_vtask_t downstream, void *self, hp_after_cb after)
{
    hp_layer_t *layer = &ctx->layers[ctx->depth];
    pend(layer);
    layer->self = self;
    layer->after = after;
    hp_vtask_t mine = hp_layer_pending(layer);
    hp_layer_await(layer, downstream, then_awaited);
    return mine;
}
