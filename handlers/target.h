/*
 * target.h - what the path of /cache/{key} and /upstream/{path} means once
 * it leaves this server: the rules both handlers apply before a byte of it
 * goes upstream, written once.
 *
 * Who calls it: handlers/cache.c (the key, and so /items/{key}) and
 * handlers/upstream.c (the proxied path), on the request's worker. Pure
 * functions over borrowed slices; the caller provides the output memory.
 *
 * The rules (README "Paths that go upstream" says the same for users):
 *   - '#' anywhere in the target is refused: a fragment is never part of a
 *     request target (RFC 9112 3.2; origin-form is path and query only).
 *   - '\' is refused, raw or as %5C: it is not a URI character (RFC 3986
 *     2), and some servers and URL parsers read it as '/'.
 *   - %2F is refused: an encoded slash is one segment to us and two to any
 *     upstream that decodes before it routes.
 *   - A '%' not followed by two hex digits, and any byte that is not
 *     visible ASCII, are refused.
 *   - Escapes are normalized (RFC 3986 6.2.2): an escaped unreserved
 *     character is decoded (%41 is A, %2E is .), the rest keep their escape
 *     with upper-case hex (%c3 is %C3). So one resource has one spelling,
 *     and a dot-segment cannot hide behind %2E.
 *   - /upstream/: dot-segments are then removed (RFC 3986 5.2.4) from
 *     "/" + {path}; a ".." that would climb above that "/" - out of
 *     /upstream/, naming another route of this server - is refused rather
 *     than re-routed, and so is a result starting with "//" (an authority
 *     to any URL parser that resolves it: another host). The query is
 *     forwarded as sent.
 *   - /cache/: the key is the normalized segment, 1 to HP_CACHE_KEY_MAX
 *     bytes (origin.h), with no '/' and not "." or "..": one segment under
 *     /items/, never a way out.
 *     The query is not part of the key and is not forwarded.
 * Every refusal is a 400 naming the rule.
 */
#ifndef HP_HANDLERS_TARGET_H
#define HP_HANDLERS_TARGET_H

#include "server/http.h"

#define HP_TARGET_REFUSALS(XX)                                                                     \
    XX(FRAGMENT, "a fragment (#) is not part of a request target")                                 \
    XX(BAD_CHAR, "the path holds a byte that is not visible ASCII")                                \
    XX(BAD_ESCAPE, "'%' must be followed by two hex digits")                                       \
    XX(BACKSLASH, "'\\' is not allowed in the path, raw or escaped")                               \
    XX(ENCODED_SLASH, "an escaped slash (%2F) is not allowed in the path")                         \
    XX(ABOVE_ROOT, "'..' climbs out of the proxied path")                                          \
    XX(AUTHORITY, "a proxied path cannot start with '//'")

typedef enum {
    HP_TARGET_OK = 0,
#define XX(name, msg) HP_TARGET_##name,
    HP_TARGET_REFUSALS(XX)
#undef XX
} hp_target_reason_t;

/* The refusal's message (static, no newline); "" for HP_TARGET_OK. */
const char *hp_target_message(int reason);

/* The same with a newline: the body of the 400 (static). */
hp_str_t hp_target_body(int reason);

/* Check the target's path suffix `path` (what follows a route's prefix) and
 * its query, and write path with its escapes normalized to out, which must
 * hold path.len bytes. Returns the length written (<= path.len), or minus
 * a reason. Borrows both slices; path.ptr may be NULL when path.len is 0. */
int hp_target_normalize(hp_str_t path, hp_str_t query, char *out);

/* RFC 3986 5.2.4 on "/" + norm (a normalize result): writes the absolute
 * path to out, which must hold norm.len + 1 bytes, and returns its length,
 * or -HP_TARGET_ABOVE_ROOT / -HP_TARGET_AUTHORITY. */
int hp_target_remove_dots(hp_str_t norm, char *out);

#endif
