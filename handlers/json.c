/*
 * json - GET /json: {"message":"Hello, World!"}, TechEmpower's JSON test:
 * an object is built and serialized with cJSON for every request.
 *
 * The object lives on the stack (two cJSON nodes, constant strings flagged
 * cJSON_StringIsConst) and cJSON_PrintPreallocated writes into the request
 * context's arena, so serializing per request costs zero allocations; the
 * alternative, cJSON_CreateObject + cJSON_PrintUnformatted, costs four
 * (node, node, value string, output buffer), which tests/test_alloc.c
 * measures through the cJSON hooks.
 */
#include "handlers.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <uv.h>

/* The serialized object is 27 bytes; the slack covers cJSON's reserve. */
#define JSON_BUF 64

static hp_vtask_t json(void *self, hp_ctx_t *ctx)
{
    cJSON message = {
        .type = cJSON_String | cJSON_StringIsConst,
        .valuestring = (char *)"Hello, World!",
        .string = (char *)"message",
    };
    message.prev = &message;
    cJSON root = {.type = cJSON_Object, .child = &message};
    char *out = hp_ctx_alloc(ctx, JSON_BUF);
    if (!cJSON_PrintPreallocated(&root, out, JSON_BUF, 0))
        return hp_fail(ctx, UV_ENOBUFS, "json: serialization failed");
    hp_resp_set(ctx, 200, "application/json", (hp_str_t){out, strlen(out)});
    return hp_done(ctx);
}

const hp_handler_t hp_handler_json = {.name = "json", .invoke = json};
