/*
 * errors.c - messages for the codes in errors.h, and libuv's pass-through.
 */
#include "errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static const char *const messages[] = {
#define XX(name, msg) msg,
    HP_ERRNO_MAP(XX)
#undef XX
};

static const char *const names[] = {
#define XX(name, msg) #name,
    HP_ERRNO_MAP(XX)
#undef XX
};

static int own(int err)
{
    return err > HP_ERR_FIRST_ && err < HP_ERR_LAST_;
}

const char *hp_strerror(int err)
{
    if (err == 0) return "ok";
    if (own(err)) return messages[err - HP_ERR_FIRST_ - 1];
    return uv_strerror(err);
}

const char *hp_err_name(int err)
{
    if (err == 0) return "OK";
    if (own(err)) return names[err - HP_ERR_FIRST_ - 1];
    return uv_err_name(err);
}

void hp_must(int rc, const char *call, const char *file, int line)
{
    if (rc == 0) return;
    fprintf(stderr, "hotpath: %s:%d: %s failed: %s (a call that cannot fail)\n", file, line, call,
            hp_strerror(rc));
    abort();
}
