/*
 * chain.h - the middleware chain and the handler contract.
 *
 * A request runs through the middleware the configuration lists, in the
 * file's order (the app lists what exists: layers.h), then the handler its
 * route names. Every layer returns an hp_vtask; a layer's invoke has three
 * ways out:
 *
 *   continue   return hp_then(ctx, hp_next(ctx), self, after): the rest of
 *              the chain runs, then `after`, then the layer is done;
 *   finish     fill ctx->resp and return hp_done(ctx) (short-circuit);
 *   pend       return a pending valuetask for the layer (hp_layer_pending)
 *              and complete it later with hp_layer_complete.
 *
 * hp_then is where the Task/ValueTask choice lives: when the downstream
 * completed synchronously it runs `after` inline and answers with
 * hp_done(), which is an inline valuetask (no allocation) or, in task mode,
 * a completed heap task; otherwise it parks the downstream valuetask in the
 * layer's slot and returns the layer's own pending valuetask (a pooled
 * source, or a heap task in task mode). That slow path, then_awaited in
 * chain.c, is the only place an `after` runs asynchronously.
 *
 * Threading: one worker; a layer's self is shared by all requests of the
 * worker's generation and must not hold per-request state.
 */
#ifndef HP_CHAIN_H
#define HP_CHAIN_H

#include "config.h"
#include "ctx.h"
#include "layers.h"

#include "runtime/errors.h"
#include "runtime/task.h"
#include "runtime/vtask.h"

#include <stddef.h>

typedef struct hp_metrics hp_metrics_t;

/* A handler as one worker runs it: the route's descriptor, this worker's
 * instance of its service (its self), and its figures by mode. */
struct hp_handler_slot {
    const hp_handler_t *desc;
    void *self;
    hp_layer_stats_t *stats[HP_MODES];
};

/* A configuration *generation*: what a worker builds from a config - the
 * middleware instances in order, the mode, the limits. A request holds the
 * generation it started under until it ends, so a reload never changes a
 * request in flight (hotpath's answer to "in-flight requests finish under
 * the configuration they started with"). One worker's, never shared. */
struct hp_gen {
    uint32_t refs;       /* the worker's (while current) + one per request */
    hp_config_t *config; /* owned reference */
    hp_mode_t mode;
    uint64_t mode_since_ms; /* uv_hrtime (ms) when `mode` took effect; 0: since start */
    unsigned nmw;
    struct {
        const hp_middleware_t *desc;
        void *self;
        hp_layer_stats_t *stats[HP_MODES];
    } mw[HP_CHAIN_MAX];
    hp_limits_t limits;
};

/* A generation for cfg (takes a reference): every enabled middleware
 * created in order, its figures found in m. prev is the generation it
 * replaces (NULL for the first), whose mode_since_ms it keeps when the mode
 * stays. NULL with a message when a middleware refuses. */
hp_gen_t *hp_gen_new(hp_config_t *cfg, hp_metrics_t *m, const hp_gen_t *prev, char *err,
                     size_t errlen);

/* A reference for the caller; the matching release (NULL: nothing). The
 * last release destroys the middleware instances and drops the config
 * (hp_gen_destroy). Inline: a request takes one and drops it. */
static inline hp_gen_t *hp_gen_ref(hp_gen_t *g)
{
    g->refs++;
    return g;
}
void hp_gen_destroy(hp_gen_t *gen);
static inline void hp_gen_release(hp_gen_t *g)
{
    if (g && --g->refs == 0) hp_gen_destroy(g);
}

/* --- running the chain -------------------------------------------------- */

/* Start the chain for ctx (the connection calls this once per request). */
hp_vtask_t hp_chain_start(hp_ctx_t *ctx);

/* Run the rest of the chain after the calling layer. */
hp_vtask_t hp_next(hp_ctx_t *ctx);

/* Every layer's result is the context itself: a reference type's value, as
 * Task<HttpResponse> would carry, so task mode never benefits from the
 * completed-task singletons (they cover small integers and null). */
static inline hp_value_t hp_chain_value(hp_ctx_t *ctx)
{
    return hp_value_ptr(ctx);
}

/* The calling layer finished synchronously with a response in ctx->resp:
 * inline in valuetask mode, a completed heap task in task mode. */
static inline hp_vtask_t hp_done(hp_ctx_t *ctx)
{
    return hp_vtask_completed(ctx->mode, hp_chain_value(ctx));
}

/* The calling layer failed synchronously (a fault, not an HTTP answer). */
hp_vtask_t hp_fail(hp_ctx_t *ctx, int err, const char *msg);

/* hp_chain_consume for a valuetask that may not have completed: one read
 * for what hp_vtask_is_completed and a consume would ask twice (a task
 * mode layer's task asked both, each a call). HP_EVTASK_PENDING, with
 * nothing consumed and ctx->fault untouched, when it has not completed. */
static inline int hp_chain_try_consume(hp_ctx_t *ctx, hp_vtask_t *vt);

/* hp_then's parts in chain.c: the slow path (downstream pends), and a
 * downstream's fault read into ctx->fault. */
hp_vtask_t hp_then_pending(hp_ctx_t *ctx, hp_vtask_t downstream, void *self, hp_after_cb after);
void hp_chain_fault(hp_ctx_t *ctx, int rc, const char *msg);

/* Consume a chain valuetask: 0, or its fault code (message in ctx->fault). */
static inline int hp_chain_consume(hp_ctx_t *ctx, hp_vtask_t *vt)
{
    hp_value_t v;
    const char *msg = NULL;
    int rc = hp_vtask_result(vt, &v, &msg);
    if (rc) hp_chain_fault(ctx, rc, msg);
    return rc;
}

static inline int hp_chain_try_consume(hp_ctx_t *ctx, hp_vtask_t *vt)
{
    hp_value_t v;
    const char *msg = NULL;
    int rc = hp_vtask_result(vt, &v, &msg);
    if (rc && rc != HP_EVTASK_PENDING) hp_chain_fault(ctx, rc, msg);
    return rc;
}

/* Continue with `after` once downstream completes (see the top). Consumes
 * downstream. Inline: when downstream completed - every layer of a
 * synchronous request - `after` is a direct call the compiler can fold
 * into the layer's invoke, and only a pending downstream calls chain.c. */
static inline hp_vtask_t hp_then(hp_ctx_t *ctx, hp_vtask_t downstream, void *self,
                                 hp_after_cb after)
{
    int status = hp_chain_try_consume(ctx, &downstream);
    if (status == HP_EVTASK_PENDING) return hp_then_pending(ctx, downstream, self, after);
    after(self, ctx, status);
    return status ? hp_fail(ctx, status, ctx->fault) : hp_done(ctx);
}

/* The calling layer's state, for layers that pend on their own work. */
static inline hp_layer_t *hp_layer_current(hp_ctx_t *ctx)
{
    return &ctx->layers[ctx->depth];
}

/* The calling layer's pending valuetask: its pooled source in valuetask
 * mode, a new heap task in task mode. Return it from invoke. */
hp_vtask_t hp_layer_pending(hp_layer_t *layer);

/* Complete what hp_layer_pending returned: status 0 (the response is in
 * ctx->resp) or a fault code with a static message. */
void hp_layer_complete(hp_layer_t *layer, int status, const char *msg);

/* Pend the calling layer on downstream (consumed: parked in
 * layer->downstream) with cb(layer) as its continuation. cb reads
 * layer->downstream (hp_vtask_result, hp_chain_consume) and finishes the
 * layer (hp_layer_complete). Call it once the layer's own pending valuetask
 * or task exists, and return that.
 *
 * Never a hang: when the runtime refuses the continuation (downstream was
 * already awaited through a copy: a misuse, counted in the misuse
 * counters), downstream is dropped, the slot gets a valuetask faulted with
 * the refusal's code (HP_EVTASK_CONSUMED or HP_EVTASK_STALE), and cb runs at
 * once: cb sees the fault like any other, and a fault that reaches the top
 * is answered 500. Returns 0, or the refusal's code. Every layer that waits
 * on something goes through here (hp_then does), so no refusal is ever
 * ignored. */
int hp_layer_await(hp_layer_t *layer, hp_vtask_t downstream, hp_cont_cb cb);

#endif
