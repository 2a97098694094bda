/*
 * plaintext - GET /plaintext: "Hello, World!" as text/plain, TechEmpower's
 * plaintext test. The body is static and the answer completes before
 * returning: the purest case of "usually synchronous", so in valuetask mode
 * the whole request allocates nothing.
 */
#include "handlers.h"

static hp_vtask_t plaintext(void *self, hp_ctx_t *ctx)
{
    hp_resp_set(ctx, 200, "text/plain", HP_STR("Hello, World!"));
    return hp_done(ctx);
}

const hp_handler_t hp_handler_plaintext = {.name = "plaintext", .invoke = plaintext};
