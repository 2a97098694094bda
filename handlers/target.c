/*
 * target.c - the rules for paths that go upstream (see target.h).
 *
 * Two passes over a few dozen bytes, both linear and both writing into the
 * caller's memory (the request arena): escapes first, then dot-segments,
 * because RFC 3986 6.2.2 orders them so - "%2E%2E" is a dot-segment once
 * decoded, and must be seen as one.
 *
 * Rejected alternative: decoding every escape. It would make /cache/a%20b
 * and a request for the key "a b" the same, but then the key must be
 * escaped again to build /items/{key}, and any byte we escaped differently
 * from the client would reach the upstream as a path it never sent. Keeping
 * the escapes (normalized) sends what the client sent, in one spelling.
 */
#include "target.h"

#include <stdbool.h>
#include <string.h>

/* One list (target.h), two spellings: the message, and the 400's body. */
static const char *const messages[] = {[HP_TARGET_OK] = "",
#define XX(name, msg) [HP_TARGET_##name] = msg,
                                       HP_TARGET_REFUSALS(XX)
#undef XX
};
static const hp_str_t bodies[] = {[HP_TARGET_OK] = {"", 0},
#define XX(name, msg) [HP_TARGET_##name] = HP_STR(msg "\n"),
                                  HP_TARGET_REFUSALS(XX)
#undef XX
};
#define NREASONS (sizeof(messages) / sizeof(messages[0]))

const char *hp_target_message(int reason)
{
    if (reason < 0) reason = -reason;
    return (size_t)reason < NREASONS ? messages[reason] : "bad target";
}

hp_str_t hp_target_body(int reason)
{
    if (reason < 0) reason = -reason;
    return (size_t)reason < NREASONS ? bodies[reason] : HP_STR("bad target\n");
}

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* RFC 3986 2.3: ALPHA / DIGIT / "-" / "." / "_" / "~". */
static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int hp_target_normalize(hp_str_t path, hp_str_t query, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    if ((path.len && memchr(path.ptr, '#', path.len)) ||
        (query.len && memchr(query.ptr, '#', query.len)))
        return -HP_TARGET_FRAGMENT;
    size_t o = 0;
    for (size_t i = 0; i < path.len; i++) {
        unsigned char c = (unsigned char)path.ptr[i];
        if (c <= 0x20 || c >= 0x7f) return -HP_TARGET_BAD_CHAR;
        if (c == '\\') return -HP_TARGET_BACKSLASH;
        if (c != '%') {
            out[o++] = (char)c;
            continue;
        }
        if (path.len - i < 3) return -HP_TARGET_BAD_ESCAPE;
        int hi = hex((unsigned char)path.ptr[i + 1]), lo = hex((unsigned char)path.ptr[i + 2]);
        if (hi < 0 || lo < 0) return -HP_TARGET_BAD_ESCAPE;
        unsigned char v = (unsigned char)(hi << 4 | lo);
        if (v == '/') return -HP_TARGET_ENCODED_SLASH;
        if (v == '\\') return -HP_TARGET_BACKSLASH;
        i += 2;
        if (unreserved(v)) {
            out[o++] = (char)v;
        } else {
            out[o++] = '%';
            out[o++] = digits[hi];
            out[o++] = digits[lo];
        }
    }
    return (int)o;
}

/* Segments are copied left to right after a '/' each; ".." drops the last
 * one copied (the output is a stack), "." drops itself; either, when last,
 * leaves the path ending in '/', as RFC 3986 5.2.4 does. The last segment
 * always writes at least a '/', and the output never outgrows the input
 * plus that leading '/'. */
int hp_target_remove_dots(hp_str_t norm, char *out)
{
    size_t o = 0, i = 0;
    for (;;) {
        size_t j = i;
        while (j < norm.len && norm.ptr[j] != '/')
            j++;
        size_t len = j - i;
        bool last = j == norm.len;
        if (len == 1 && norm.ptr[i] == '.') {
            if (last) out[o++] = '/';
        } else if (len == 2 && norm.ptr[i] == '.' && norm.ptr[i + 1] == '.') {
            if (o == 0) return -HP_TARGET_ABOVE_ROOT;
            while (out[o - 1] != '/')
                o--;
            o--; /* and the '/' that began it */
            if (last) out[o++] = '/';
        } else {
            out[o++] = '/';
            if (len) memcpy(out + o, norm.ptr + i, len);
            o += len;
        }
        if (last) break;
        i = j + 1;
    }
    if (o > 1 && out[1] == '/') return -HP_TARGET_AUTHORITY;
    return (int)o;
}
