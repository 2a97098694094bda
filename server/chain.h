/*
 * chain.h - the middleware chain and the handler contract.
 *
 * A request runs through the middleware the configuration lists, in the
 * file's order (middleware/middleware.c lists what exists), then the handler
 * its route names (handlers/handlers.c lists the routes). Every layer returns an hp_vtask;
 * a layer's invoke has three ways out:
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

#include "ctx.h"
#include "runtime/task.h"
#include "runtime/vtask.h"

#include <stddef.h>

typedef struct cJSON cJSON;

typedef struct {
    const char *name;
    const char *summary;
    /* Parse the entry's own options (section is the whole middleware entry,
     * with "name" and "enabled" already checked; path is "middleware[i]" for
     * messages). On failure write a message naming the key and return
     * HP_ECONFIG. Must not touch the event loop: the control thread calls
     * it to validate. self is owned by the caller (destroy frees it). */
    int (*create)(const cJSON *section, const char *path, void **self, char *err, size_t errlen);
    void (*destroy)(void *self);
    hp_vtask_t (*invoke)(void *self, hp_ctx_t *ctx);
    /* Optional: called on the worker's tick (every 250 ms), e.g. to flush. */
    void (*tick)(void *self);
} hp_middleware_t;

/* The registry (middleware/middleware.c). NULL when unknown or past the
 * end. */
const hp_middleware_t *hp_middleware_find(const char *name);
const hp_middleware_t *hp_middleware_at(size_t i);
/* "server_headers, request_id, ..." for messages and --help. Static. */
const char *hp_middleware_names(void);

typedef struct {
    const char *name; /* the layer's name in /stats and /advice */
    /* Exactly one of the two: a valuetask-returning handler, or one that
     * returns a heap task (the upstream-calling ones). Either fills
     * ctx->resp before its (value)task completes. */
    hp_vtask_t (*invoke)(hp_ctx_t *ctx);
    hp_task_t *(*invoke_task)(hp_ctx_t *ctx);
} hp_handler_t;

typedef enum {
    HP_ROUTE_PLAIN_PATH = 0, /* exact path */
    HP_ROUTE_PREFIX = 1,     /* path prefix; the rest is req.param */
} hp_route_match_t;

struct hp_route {
    const char *path;
    size_t path_len; /* strlen(path), so matching never measures it */
    hp_route_match_t match;
    uint64_t methods;  /* HP_METHOD_BIT set; HEAD follows GET */
    const char *allow; /* the Allow header for 405, e.g. "GET, HEAD" */
    bool reads_body;   /* else the body is drained unread */
    const hp_handler_t *handler;
    const char *summary; /* one line for the index page */
    unsigned id;         /* index in the route table, for metrics */
};

/* The route table (handlers/handlers.c). Always returns a route: unknown
 * paths give the 404 route, a known path with a wrong method the 405 one
 * (whose Allow is looked up with hp_route_allow). */
const hp_route_t *hp_route_find(hp_str_t path, unsigned method);
const hp_route_t *hp_route_table(size_t *n);
/* The Allow header for a path (for 405 answers); NULL when unknown. */
const char *hp_route_allow(hp_str_t path);
/* Every method some route serves (HP_METHOD_BIT set), for OPTIONS *. */
uint64_t hp_route_methods(void);

/* --- running the chain -------------------------------------------------- */

/* Start the chain for ctx (the connection calls this once per request). */
hp_vtask_t hp_chain_start(hp_ctx_t *ctx);

/* Run the rest of the chain after the calling layer. */
hp_vtask_t hp_next(hp_ctx_t *ctx);

/* The calling layer finished synchronously with a response in ctx->resp:
 * inline in valuetask mode, a completed heap task in task mode. */
hp_vtask_t hp_done(hp_ctx_t *ctx);

/* The calling layer failed synchronously (a fault, not an HTTP answer). */
hp_vtask_t hp_fail(hp_ctx_t *ctx, int err, const char *msg);

/* Continue with `after` once downstream completes (see the top). Consumes
 * downstream. */
hp_vtask_t hp_then(hp_ctx_t *ctx, hp_vtask_t downstream, void *self, hp_after_cb after);

/* The calling layer's state, for layers that pend on their own work. */
hp_layer_t *hp_layer_current(hp_ctx_t *ctx);

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

/* Consume a chain valuetask: 0, or its fault code (message in ctx->fault). */
int hp_chain_consume(hp_ctx_t *ctx, hp_vtask_t *vt);

#endif
