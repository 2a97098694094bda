/*
 * http.c - the rejection table and status reasons (see http.h).
 */
#include "http.h"

static const struct {
    uint16_t status;
    const char *msg;
    const char *name;
} rejects[] = {{0, "", "NONE"},
#define XX(name, status, msg) {status, msg, #name},
               HP_REJECT_MAP(XX)
#undef XX
};

uint16_t hp_reject_status(hp_reject_t r)
{
    return r < HP_REJECT_COUNT ? rejects[r].status : 400;
}

const char *hp_reject_message(hp_reject_t r)
{
    return r < HP_REJECT_COUNT ? rejects[r].msg : "malformed request";
}

const char *hp_reject_name(hp_reject_t r)
{
    return r < HP_REJECT_COUNT ? rejects[r].name : "BAD_REQUEST";
}

const char *hp_status_reason(unsigned status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:
        return status < 300   ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}
