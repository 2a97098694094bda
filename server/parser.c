/*
 * parser.c - llhttp's callbacks: limits, the few headers the server keeps,
 * routing at headers-complete, body buffering or draining.
 *
 * Streaming, not re-parsing: llhttp keeps its state across reads, and these
 * callbacks copy what they keep (the target, X-Request-Id, Content-Type,
 * Accept, Expect) into the request context's arena as the pieces arrive, so
 * a request split across reads costs no more than one in a single read and
 * nothing ever points into the per-loop read buffer after the read callback
 * returns. Every other header is counted against the limits and dropped.
 *
 * Limits are enforced here, as the bytes arrive, so an oversized request is
 * refused after reading at most limit + one read's worth, never buffered:
 * request line (414), header bytes and count (431), declared and actual
 * body size (413). llhttp's lenient flags all stay off: conflicting
 * Content-Length/Transfer-Encoding, bad chunk sizes, bare CR or NUL and
 * invalid token characters are llhttp errors, answered 400 by conn.c.
 *
 * A callback refuses by setting c->reject and returning -1 (or HPE_USER);
 * conn.c maps the stop to the rejection table. A callback that can close
 * the connection (one that writes: the interim 100 Continue, the dispatch)
 * returns HPE_PAUSED once it has, so llhttp runs no further callback on it
 * (conn.c explains what stays valid until the stack unwinds).
 */
#include "chain.h"
#include "conn.h"
#include "ctx.h"
#include "router.h"

#include "runtime/alloc.h"
#include "runtime/bytes.h"
#include "runtime/counter.h"

#include <string.h>

/* The headers the server keeps (or checks); everything else is counted.
 * Those whose value is only counted come first (H_SKIP: a kept one given
 * up on), then Transfer-Encoding, then those whose value is read. */
enum { H_NONE = 0, H_HOST, H_SKIP, H_TE, H_REQUEST_ID, H_CONTENT_TYPE, H_ACCEPT, H_EXPECT };

/* X-Request-Id values longer than this are ignored (and one generated):
 * ids are logged and echoed, so they are bounded, as Kestrel bounds
 * TraceIdentifier by what it accepts from W3C trace context. */
#define REQUEST_ID_MAX 128
/* Content types and Accept values beyond this are not worth keeping. */
#define VALUE_MAX 256

static inline hp_conn_t *conn_of(llhttp_t *p)
{
    return p->data;
}

static int refuse(hp_conn_t *c, hp_reject_t why)
{
    c->reject = (uint8_t)why;
    return HPE_USER;
}

/* Append a piece to a request-scoped string that never exceeds max bytes
 * (the callers check the limit first). A string that arrives whole - the
 * common case - is copied once, exactly. One that arrives in pieces (split
 * across reads; one byte each from a hostile client) grows in place into a
 * buffer that doubles, capped at max + 1, so it costs at most about 2 max
 * bytes of arena however it arrives; copying the whole string into a new
 * block per piece, as this once did, cost n^2/2 (33 MB for an 8 KiB target
 * sent a byte a read). One string grows at a time (the target, then each
 * kept header value in turn): the context remembers which, and its room. */
static void append(hp_ctx_t *ctx, hp_str_t *s, const char *at, size_t len, size_t max)
{
    size_t need = s->len + len + 1;
    if (s->len == 0 || s->ptr != ctx->grow || need > ctx->grow_cap) {
        size_t cap = need;
        if (s->len) {
            cap = 2 * need > 64 ? 2 * need : 64;
            if (cap > max + 1) cap = max + 1 > need ? max + 1 : need;
        }
        char *d = hp_ctx_alloc(ctx, cap);
        if (s->len) memcpy(d, s->ptr, s->len);
        s->ptr = d;
        ctx->grow = d;
        ctx->grow_cap = (uint32_t)cap;
    }
    char *d = ctx->grow;
    hp_bytes_put(d + s->len, at, len);
    d[s->len + len] = '\0';
    s->len += len;
}

/* --- the scanner: what llhttp must not see as it comes ------------------ *
 *
 * Chunk-size lines. llhttp 8.1 refuses valid ones - a list of extensions
 * (";a=b;c=d"), whitespace before ';' - and bounds none: 64 MiB of
 * extension on a one-byte chunk was read and answered 200. So llhttp pauses
 * at the start of each size line (from on_headers_complete, then from
 * on_chunk_complete), and the scanner reads the line to its CRLF against
 * RFC 9112 7.1.1:
 *
 *   chunk-size [ chunk-ext ] CRLF
 *   chunk-ext  = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
 *   ext-val    = token / quoted-string
 *
 * feeding llhttp the size's hex digits and the CRLF, and none of the
 * extensions (the server has no use for any). Extension bytes, and size
 * digits beyond 16 (leading zeros), count against CHUNK_EXT_MAX per request:
 * over it, 400 and close. The line is scanned as it streams, so a line
 * split across reads needs no buffer.
 *
 * Unknown methods. llhttp stops at the first byte of a method it does not
 * know; RFC 9110 9.1 wants 501 for a method the server does not recognize,
 * and a request line that is not one is a 400. From that byte on, a token
 * followed by a space is an unknown method (501), anything else is garbage
 * (400) - decided from the bytes at and after llhttp's stop only, so a
 * request answers the same however it is cut. (The letters before the stop
 * matched a known method's prefix, so they were token characters; a space
 * right at the stop, as in "GE /", is answered 400, as a request line that
 * starts with a space must be.) */

/* Chunk extensions no client sends in practice (most send none); 4 KiB per
 * request keeps a body's framing in proportion to its data. */
#define CHUNK_EXT_MAX 4096
/* Size digits beyond these are leading zeros, counted as extension. */
#define CHUNK_SIZE_DIGITS 16
/* An unknown method this long is decided without waiting for its end. */
#define METHOD_SCAN_MAX 64

enum {
    SC_OFF = 0,
    SC_SIZE,     /* the size's hex digits (fed to llhttp) */
    SC_BWS,      /* whitespace, before a ';' */
    SC_NAME0,    /* after ';': whitespace, then a name */
    SC_NAME,     /* in a name */
    SC_NAME_BWS, /* whitespace after a name */
    SC_VAL0,     /* after '=': whitespace, then a value */
    SC_VAL,      /* in a token value */
    SC_QSTR,     /* in a quoted value */
    SC_QPAIR,    /* after a backslash in one */
    SC_AFTER,    /* after a quoted value */
    SC_LF,       /* after the CR */
    SC_METHOD,   /* an unknown method's token */
};

static bool is_tchar(unsigned char ch)
{
    /* RFC 9110 5.6.2: token characters. */
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static bool is_hex(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static bool is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}

static int chunk_line_next(hp_ctx_t *ctx)
{
    ctx->scan = SC_SIZE;
    ctx->scan_n = 0;
    return HPE_PAUSED;
}

static enum llhttp_errno feed(hp_conn_t *c, const char *at, size_t len)
{
    c->host->parse_end = at + len;
    return llhttp_execute(&c->parser, at, len);
}

void hp_parser_scan_method(hp_conn_t *c)
{
    c->ctx->scan = SC_METHOD;
    c->ctx->scan_n = 0;
}

static enum llhttp_errno scan_method(hp_conn_t *c, const char **data, const char *end)
{
    hp_ctx_t *ctx = c->ctx;
    for (const char *p = *data; p < end; p++) {
        unsigned char ch = (unsigned char)*p;
        if (is_tchar(ch) && ++ctx->scan_n < METHOD_SCAN_MAX) continue;
        ctx->scan = SC_OFF;
        bool method = (ch == ' ' && ctx->scan_n > 0) || ctx->scan_n >= METHOD_SCAN_MAX;
        return refuse(c, method ? HP_REJECT_NOT_IMPLEMENTED : HP_REJECT_BAD_REQUEST);
    }
    *data = end;
    return HPE_OK;
}

enum llhttp_errno hp_parser_scan(hp_conn_t *c, const char **data, const char *end)
{
    hp_ctx_t *ctx = c->ctx;
    if (ctx->scan == SC_METHOD) return scan_method(c, data, end);
    const char *p = *data;
    while (p < end) {
        unsigned char ch = (unsigned char)*p;
        uint8_t next = ctx->scan;
        if (ctx->scan == SC_SIZE && is_hex(ch)) {
            const char *q = p;
            while (q < end && is_hex((unsigned char)*q))
                q++;
            size_t n = (size_t)(q - p), before = ctx->scan_n, after = before + n;
            size_t zeros = before >= CHUNK_SIZE_DIGITS ? n
                           : after > CHUNK_SIZE_DIGITS ? after - CHUNK_SIZE_DIGITS
                                                       : 0;
            ctx->scan_n = (uint16_t)(after > UINT16_MAX ? UINT16_MAX : after);
            ctx->chunk_ext += (uint32_t)(zeros > CHUNK_EXT_MAX ? CHUNK_EXT_MAX + 1 : zeros);
            if (ctx->chunk_ext > CHUNK_EXT_MAX) return refuse(c, HP_REJECT_CHUNK_EXT_TOO_LONG);
            enum llhttp_errno err = feed(c, p, n);
            if (err != HPE_OK) return err;
            p = q;
            continue;
        }
        if (ch == '\r' && (ctx->scan == SC_SIZE || ctx->scan == SC_NAME || ctx->scan == SC_VAL ||
                           ctx->scan == SC_AFTER)) {
            ctx->scan = SC_LF;
            p++;
            continue;
        }
        if (ctx->scan == SC_LF) {
            if (ch != '\n') return refuse(c, HP_REJECT_BAD_BODY);
            ctx->scan = SC_OFF;
            *data = p + 1;
            return feed(c, "\r\n", 2);
        }
        switch (ctx->scan) {
        case SC_SIZE:
        case SC_AFTER: next = ch == ';' ? SC_NAME0 : is_ws(ch) ? SC_BWS : 0; break;
        case SC_BWS: next = ch == ';' ? SC_NAME0 : is_ws(ch) ? SC_BWS : 0; break;
        case SC_NAME0: next = is_ws(ch) ? SC_NAME0 : is_tchar(ch) ? SC_NAME : 0; break;
        case SC_NAME:
            next = is_tchar(ch) ? SC_NAME
                   : ch == '='  ? SC_VAL0
                   : ch == ';'  ? SC_NAME0
                   : is_ws(ch)  ? SC_NAME_BWS
                                : 0;
            break;
        case SC_NAME_BWS:
            next = ch == '=' ? SC_VAL0 : ch == ';' ? SC_NAME0 : is_ws(ch) ? SC_NAME_BWS : 0;
            break;
        case SC_VAL0:
            next = is_ws(ch) ? SC_VAL0 : ch == '"' ? SC_QSTR : is_tchar(ch) ? SC_VAL : 0;
            break;
        case SC_VAL:
            next = is_tchar(ch) ? SC_VAL : ch == ';' ? SC_NAME0 : is_ws(ch) ? SC_BWS : 0;
            break;
        case SC_QSTR:
            /* qdtext: HTAB, SP, VCHAR but '"' and '\', obs-text. */
            next = ch == '"'                                  ? SC_AFTER
                   : ch == '\\'                               ? SC_QPAIR
                   : ch == '\t' || (ch >= 0x20 && ch != 0x7f) ? SC_QSTR
                                                              : 0;
            break;
        case SC_QPAIR: next = ch == '\t' || (ch >= 0x20 && ch != 0x7f) ? SC_QSTR : 0; break;
        default: next = 0; break;
        }
        if (next == 0) return refuse(c, HP_REJECT_BAD_BODY);
        if (++ctx->chunk_ext > CHUNK_EXT_MAX) return refuse(c, HP_REJECT_CHUNK_EXT_TOO_LONG);
        ctx->scan = next;
        p++;
    }
    *data = end;
    return HPE_OK;
}

static int on_message_begin(llhttp_t *p)
{
    hp_conn_t *c = conn_of(p);
    hp_conn_begin(c);
    /* The head's deadline is armed when the read ends with the head still
     * coming (conn.c's parse): most heads end in the read they begin in,
     * and their deadline would be set here only to be stopped at
     * headers-complete. */
    c->state = HP_CONN_HEAD;
    return 0;
}

/* The request line's pieces count against its limit (414) and the head's. */
static int count_line(hp_conn_t *c, size_t len)
{
    hp_ctx_t *ctx = c->ctx;
    ctx->line_bytes += (uint32_t)len;
    ctx->head_bytes += (uint32_t)len;
    if (ctx->line_bytes > ctx->gen->limits.request_line_bytes)
        return refuse(c, HP_REJECT_URI_TOO_LONG);
    return 0;
}

/* The method's and the version's bytes are counted without a callback of
 * their own (each would be two calls a request for bytes llhttp has
 * matched against its own table): the method, by llhttp's number for it,
 * with the target's first piece; the version's three ("1.1" after
 * "HTTP/", llhttp's versions being single digits) when it is complete. */
static const uint8_t method_len[] = {
#define XX(num, name, string) [num] = sizeof(#string) - 1,
    HTTP_ALL_METHOD_MAP(XX)
#undef XX
};
#define VERSION_BYTES 3

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    hp_conn_t *c = conn_of(p);
    hp_ctx_t *ctx = c->ctx;
    size_t method =
        ctx->line_bytes == 0 && p->method < sizeof(method_len) ? method_len[p->method] : 0;
    if (count_line(c, method + len)) return HPE_USER;
    append(ctx, &ctx->req.target, at, len, ctx->gen->limits.request_line_bytes);
    return 0;
}

static int on_version_complete(llhttp_t *p)
{
    hp_conn_t *c = conn_of(p);
    if (count_line(c, VERSION_BYTES)) return HPE_USER;
    /* HTTP/1.0 and 1.1 only; llhttp also lets 0.9 and 2.0 through. */
    if (p->http_major != 1 || p->http_minor > 1) return refuse(c, HP_REJECT_VERSION);
    return 0;
}

static int count_head(hp_conn_t *c, size_t len)
{
    hp_ctx_t *ctx = c->ctx;
    ctx->head_bytes += (uint32_t)len;
    if (ctx->head_bytes > ctx->gen->limits.header_bytes)
        return refuse(c, HP_REJECT_HEADERS_TOO_LARGE);
    return 0;
}

/* The name is kept as sent, in pieces when it arrives in pieces; a name
 * longer than the buffer is longer than any the server keeps, and only
 * counts. Folding case is left to the comparison, which reads the few names
 * of a kept length only. */
static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    hp_conn_t *c = conn_of(p);
    hp_ctx_t *ctx = c->ctx;
    if (count_head(c, len)) return HPE_USER;
    /* Written so that no sum can wrap (which is also what lets the
     * compiler see the copy below is at most sizeof(hname)). */
    if (ctx->hname_len > sizeof(ctx->hname) || len > sizeof(ctx->hname) - ctx->hname_len) {
        ctx->hname_len = UINT8_MAX; /* longer than any name we keep */
        return 0;
    }
    hp_bytes_put(ctx->hname + ctx->hname_len, at, len);
    ctx->hname_len += (uint8_t)len;
    return 0;
}

/* Whether the name read is lit (lowercase letters and '-'), in any case.
 * Setting bit 5 lowercases an ASCII letter and keeps '-'; the only other
 * byte it maps onto one of these is CR (onto '-'), which llhttp never lets
 * into a name. */
static bool name_is(const hp_ctx_t *ctx, const char *lit, size_t n)
{
    char folded[sizeof(ctx->hname)];
    for (size_t i = 0; i < n; i++)
        folded[i] = (char)(ctx->hname[i] | 0x20);
    return hp_bytes_eq(folded, lit, n);
}
#define NAME_IS(ctx, lit) name_is((ctx), (lit), sizeof(lit) - 1)

/* Which kept header the name read is, by its length first: most names a
 * client sends (User-Agent, Accept-Encoding, ...) are decided by that. */
static uint8_t kept_header(const hp_ctx_t *ctx)
{
    switch (ctx->hname_len) {
    case 4: return NAME_IS(ctx, "host") ? H_HOST : H_NONE;
    case 6: return NAME_IS(ctx, "accept") ? H_ACCEPT : NAME_IS(ctx, "expect") ? H_EXPECT : H_NONE;
    case 12:
        return NAME_IS(ctx, "x-request-id")   ? H_REQUEST_ID
               : NAME_IS(ctx, "content-type") ? H_CONTENT_TYPE
                                              : H_NONE;
    case 17: return NAME_IS(ctx, "transfer-encoding") ? H_TE : H_NONE;
    default: return H_NONE;
    }
}

static int on_header_field_complete(llhttp_t *p)
{
    hp_conn_t *c = conn_of(p);
    hp_ctx_t *ctx = c->ctx;
    if (++ctx->nheaders > ctx->gen->limits.header_count)
        return refuse(c, HP_REJECT_TOO_MANY_HEADERS);
    /* ": value" is no header line (RFC 9110 5.1: a name is a token, one
     * character at least); llhttp lets it through. */
    if (ctx->hname_len == 0) return refuse(c, HP_REJECT_BAD_HEADER);
    if (c->state == HP_CONN_BODY) {
        /* A chunked body's trailer fields: counted against the limits like
         * headers, never taken for them. */
        ctx->hdr = H_NONE;
        ctx->hname_len = 0;
        return 0;
    }
    ctx->hdr = kept_header(ctx);
    if (ctx->hdr == H_HOST && ++ctx->nhosts > 1) return refuse(c, HP_REJECT_HOST);
    ctx->hname_len = 0;
    return 0;
}

static hp_str_t *kept_value(hp_ctx_t *ctx)
{
    switch (ctx->hdr) {
    case H_REQUEST_ID: return &ctx->req.request_id;
    case H_CONTENT_TYPE: return &ctx->req.content_type;
    default: return NULL;
    }
}

/* Transfer-Encoding's codings, read as they stream: a list of tokens
 * separated by commas and whitespace. llhttp checks that chunked is the
 * final one (400 otherwise); the server implements no other, so any other
 * coding in the list is a 501 (RFC 9112 6.1), decided at headers-complete.
 * te_len counts the current token's bytes, te_chunked says whether they
 * spell "chunked" so far. */
static void te_codings(hp_ctx_t *ctx, const char *at, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = at[i];
        if (ch == ',' || ch == ' ' || ch == '\t') {
            if (ctx->te_len && !(ctx->te_len == 7 && ctx->te_chunked)) ctx->te_other = true;
            ctx->te_len = 0;
            continue;
        }
        if (ctx->te_len == 0) ctx->te_chunked = true;
        char lc = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
        if (ctx->te_len >= 7 || lc != "chunked"[ctx->te_len]) ctx->te_chunked = false;
        if (ctx->te_len < UINT8_MAX) ctx->te_len++;
    }
}

/* Accept and Expect are decided from their value, then dropped; they are
 * accumulated in a scratch string while they arrive. */
static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    hp_conn_t *c = conn_of(p);
    hp_ctx_t *ctx = c->ctx;
    if (count_head(c, len)) return HPE_USER;
    /* obs-fold (a value continued on the next line) is refused, as RFC
     * 9112 allows: llhttp reports the continuation as a second piece of the
     * same value. A second piece is also what a value split across two
     * reads looks like, but then the first piece ended where the input
     * did; a piece that ended mid-input and is followed by another was
     * folded. */
    if (ctx->value_piece && !ctx->value_piece_at_end) return refuse(c, HP_REJECT_BAD_HEADER);
    bool first_piece = !ctx->value_piece;
    ctx->value_piece = true;
    ctx->value_piece_at_end = at + len == c->host->parse_end;
    if (ctx->hdr < H_TE) return 0; /* counted only */
    if (ctx->hdr == H_TE) {
        te_codings(ctx, at, len);
        return 0;
    }
    hp_str_t *dst = kept_value(ctx);
    if (dst && first_piece && (dst->len || ctx->repeated)) {
        /* A second line of a header kept as one value: a repeated
         * X-Request-Id is nobody's id (one is generated); for Content-Type
         * the first line stands. Never glue the two together. */
        if (ctx->hdr == H_REQUEST_ID) {
            ctx->repeated = true;
            ctx->req.request_id = (hp_str_t){0};
        }
        ctx->hdr = H_SKIP;
        return 0;
    }
    size_t max = ctx->hdr == H_REQUEST_ID ? REQUEST_ID_MAX : VALUE_MAX;
    hp_str_t *scratch = dst ? dst : &ctx->req.param; /* param is unused until routing */
    if (scratch->len + len > max) {
        scratch->len = 0;
        ctx->hdr = H_SKIP; /* too long to keep: ignore it whole */
        return 0;
    }
    append(ctx, scratch, at, len, max);
    return 0;
}

static bool ieq_prefix(hp_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len < n) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s.ptr[i];
        if ((ch >= 'A' && ch <= 'Z' ? ch + 32 : ch) != lit[i]) return false;
    }
    return true;
}

static bool valid_request_id(hp_str_t s)
{
    if (s.len == 0) return false;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_' || ch == '.' || ch == ':' ||
                  ch == '/' || ch == '+' || ch == '=';
        if (!ok) return false;
    }
    return true;
}

static int on_header_value_complete(llhttp_t *p)
{
    hp_conn_t *c = conn_of(p);
    hp_ctx_t *ctx = c->ctx;
    hp_str_t *v = &ctx->req.param;
    ctx->value_piece = ctx->value_piece_at_end = false;
    if (ctx->hdr == H_NONE) return 0; /* most headers: nothing kept, no scratch used */
    switch (ctx->hdr) {
    case H_REQUEST_ID:
        if (!valid_request_id(ctx->req.request_id)) {
            ctx->req.request_id = (hp_str_t){0};
            ctx->repeated = true; /* one bad line spoils the header */
        }
        break;
    case H_ACCEPT:
        /* The one choice the server offers: text instead of JSON from
         * /advice, when text/plain leads the client's list. */
        ctx->req.prefers_text = ieq_prefix(*v, "text/plain");
        break;
    case H_EXPECT:
        if (v->len == 12 && ieq_prefix(*v, "100-continue")) ctx->req.expect_continue = true;
        break;
    case H_TE: te_codings(ctx, ",", 1); break;
    default: break;
    }
    /* param is the scratch only in the head; in a trailer (a chunked body's)
     * it is the route's, set at headers-complete, and stays. */
    if (c->state != HP_CONN_BODY) *v = (hp_str_t){0};
    ctx->hdr = H_NONE;
    return 0;
}

/* Drop "scheme://authority" from an absolute-form target; an empty path
 * becomes "/". */
static void skip_authority(hp_req_t *req, size_t scheme_len)
{
    const char *auth = req->target.ptr + scheme_len;
    size_t rest = req->target.len - scheme_len;
    const char *slash = memchr(auth, '/', rest);
    const char *query = memchr(auth, '?', rest);
    if (slash && (!query || slash < query)) {
        req->target = (hp_str_t){slash, rest - (size_t)(slash - auth)};
    } else if (query) {
        /* "http://h?q": the path is "/" and the query stays. */
        size_t qlen = rest - (size_t)(query - auth);
        char *t = (char *)query - 1; /* the authority's last byte: reuse it */
        *t = '/';
        req->target = (hp_str_t){t, qlen + 1};
    } else {
        req->target = HP_STR("/");
    }
}

static int on_headers_complete(llhttp_t *p)
{
    hp_conn_t *c = conn_of(p);
    hp_ctx_t *ctx = c->ctx;
    hp_req_t *req = &ctx->req;
    const hp_limits_t *lim = &ctx->gen->limits;

    req->method = p->method;
    req->http_minor = p->http_minor;
    req->keep_alive = llhttp_should_keep_alive(p);
    req->chunked = (p->flags & F_CHUNKED) != 0;
    req->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    if (p->upgrade || req->method == HTTP_CONNECT) c->flags |= HP_CF_UPGRADE;
    /* A request line without a version is HTTP/0.9 to llhttp: for an
     * HTTP/1.x server it is a malformed line (Kestrel answers the same). */
    if (p->http_major == 0 && p->http_minor == 9) {
        c->reject = HP_REJECT_BAD_REQUEST;
        return -1;
    }

    /* RFC 9112 3.2: exactly one Host in HTTP/1.1 (at most one in 1.0). */
    if (req->http_minor == 1 && ctx->nhosts != 1) {
        c->reject = HP_REJECT_HOST;
        return -1;
    }
    /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty
     * framing, whatever it says (a 1.0 peer behind a 1.1 one may read the
     * body differently: the classic smuggling setup). */
    if (req->http_minor == 0 && (p->flags & F_TRANSFER_ENCODING)) {
        c->reject = HP_REJECT_BAD_BODY;
        return -1;
    }
    /* A coding before the final chunked ("gzip, chunked"): not implemented.
     * (Without a final chunked the framing is unknown: llhttp's 400.) */
    if (ctx->te_other && (p->flags & F_CHUNKED)) {
        c->reject = HP_REJECT_NOT_IMPLEMENTED;
        return -1;
    }
    /* Absolute-form ("http://host/path") must be accepted (RFC 9112 3.2.2):
     * the path is what routes; the authority is not checked, as no virtual
     * hosts exist here. Authority-form serves no route. */
    if (req->target.len > 7 && req->target.ptr[0] != '/') {
        if (ieq_prefix(req->target, "http://"))
            skip_authority(req, 7);
        else if (req->target.len > 8 && ieq_prefix(req->target, "https://"))
            skip_authority(req, 8);
    }
    /* Asterisk-form is for OPTIONS only, and asks about the server as a
     * whole (RFC 9112 3.2.4): it routes as the path "*". */
    bool asterisk = req->method == HP_OPTIONS && hp_str_eq(req->target, "*", 1);
    if (!asterisk && (req->target.len == 0 || req->target.ptr[0] != '/')) {
        c->reject = HP_REJECT_BAD_REQUEST;
        return -1;
    }
    const char *q = memchr(req->target.ptr, '?', req->target.len);
    size_t plen = q ? (size_t)(q - req->target.ptr) : req->target.len;
    req->path = (hp_str_t){req->target.ptr, plen};
    req->query = q ? (hp_str_t){q + 1, req->target.len - plen - 1} : (hp_str_t){"", 0};
    ctx->route = hp_router_find(&c->host->router, req->path, req->method);
    ctx->handler = &c->host->handlers[ctx->route->id];
    ctx->stats = &c->host->metrics.routes[ctx->route->id][ctx->mode];
    if (ctx->route->match == HP_ROUTE_PREFIX) {
        size_t n = ctx->route->path_len;
        req->param = (hp_str_t){req->path.ptr + n, req->path.len - n};
    }
    ctx->body_wanted = ctx->route->reads_body;
    if (req->content_length > lim->body_bytes) {
        c->reject = HP_REJECT_BODY_TOO_LARGE;
        return -1;
    }
    bool has_body = req->chunked || req->content_length > 0;
    if (has_body) {
        uint64_t now = uv_now(c->host->loop);
        c->state = HP_CONN_BODY;
        hp_conn_set_timer(c, HP_LIST_BODY, now + lim->body_grace_ms);
        /* HTTP/1.0 clients do not know 100 (RFC 9110 10.1.1: ignore it).
         * Writing it may fail and close the connection: stop llhttp then. */
        if (req->expect_continue && req->http_minor >= 1) {
            hp_conn_continue(c);
            if (c->flags & HP_CF_CLOSED) return HPE_PAUSED;
        }
        /* The first chunk-size line is the scanner's (see below). */
        if (req->chunked) return chunk_line_next(ctx);
    }
    /* Without a body the read deadline stands until the dispatch: the
     * answer moves it (conn.c's finish), or a pending request stops it. */
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    hp_conn_t *c = conn_of(p);
    hp_ctx_t *ctx = c->ctx;
    hp_req_t *req = &ctx->req;
    const hp_limits_t *lim = &ctx->gen->limits;
    size_t have = req->body_len + len;
    if (have > lim->body_bytes) return refuse(c, HP_REJECT_BODY_TOO_LARGE);
    if (ctx->body_wanted) {
        if (have > ctx->body_cap) {
            size_t cap = ctx->body_cap ? ctx->body_cap : 1024;
            while (cap < have)
                cap *= 2;
            if (cap > lim->body_bytes && lim->body_bytes >= have) cap = lim->body_bytes;
            req->body = hp_realloc(req->body, cap);
            ctx->body_cap = cap;
        }
        memcpy(req->body + req->body_len, at, len);
    }
    req->body_len = have; /* counted whether kept or drained */
    /* Minimum data rate as a credit: every byte buys 1/rate seconds beyond
     * the grace period, so one deadline per connection says it all. */
    if (lim->min_body_rate && c->rtimer.list == &c->host->timers[HP_LIST_BODY]) {
        uint64_t start =
            c->rtimer.deadline - lim->body_grace_ms - (have - len) * 1000 / lim->min_body_rate;
        hp_conn_set_timer(c, HP_LIST_BODY,
                          start + lim->body_grace_ms + have * 1000 / lim->min_body_rate);
    }
    return 0;
}

static int on_chunk_header(llhttp_t *p)
{
    conn_of(p)->ctx->last_chunk = p->content_length == 0;
    return 0;
}

static int on_chunk_complete(llhttp_t *p)
{
    hp_ctx_t *ctx = conn_of(p)->ctx;
    /* After the last chunk come the trailers (llhttp's), not a size line. */
    return ctx->last_chunk ? 0 : chunk_line_next(ctx);
}

static int on_message_complete(llhttp_t *p)
{
    return hp_conn_dispatch(conn_of(p));
}

const llhttp_settings_t hp_parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_version_complete = on_version_complete,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = on_message_complete,
};
