/*
 * errors.h - the one list of hotpath's own error codes.
 *
 * Every fallible call in the tree returns an int: 0 on success, a negative
 * number on failure. libuv's codes (UV_E*, negative errno values) pass through
 * unchanged; hotpath's own codes live below HP_ERR_BASE so the two ranges can
 * never collide. hp_strerror() names either kind.
 *
 * The list is an X-macro so the enum and the message table cannot drift.
 * Any thread may call hp_strerror(); it returns static strings.
 */
#ifndef HP_ERRORS_H
#define HP_ERRORS_H

/* libuv's codes are negative errno values, all above -4096 on Linux. */
#define HP_ERR_BASE (-10000)

#define HP_ERRNO_MAP(XX)                                                                           \
    XX(EVTASK_CONSUMED, "valuetask already consumed or awaited")                                   \
    XX(EVTASK_STALE, "valuetask token is stale: its source was reused")                            \
    XX(EVTASK_PENDING, "valuetask has not completed")                                              \
    XX(ETASK_PENDING, "task has not completed")                                                    \
    XX(ETASK_FAULTED, "task faulted")                                                              \
    XX(ECONFIG, "invalid configuration")                                                           \
    XX(EUPSTREAM_CONNECT, "upstream connect failed")                                               \
    XX(EUPSTREAM_TIMEOUT, "upstream timed out")                                                    \
    XX(EUPSTREAM_PROTOCOL, "upstream sent a malformed response")                                   \
    XX(EUPSTREAM_RESET, "upstream closed the connection mid-response")                             \
    XX(EUPSTREAM_TOO_BIG, "upstream response exceeds the size limit")                              \
    XX(ESHUTDOWN, "server is shutting down")

typedef enum {
    HP_ERR_FIRST_ = HP_ERR_BASE,
#define XX(name, msg) HP_##name,
    HP_ERRNO_MAP(XX)
#undef XX
        HP_ERR_LAST_
} hp_errno_t;

/* A refusal of the task runtime (a valuetask consumed, awaited twice, or
 * stale): a bug in the code that waited, never the peer's or the
 * upstream's, so a request answers it as a fault (500), not as a 502/504. */
static inline int hp_err_is_misuse(int err)
{
    return err == HP_EVTASK_CONSUMED || err == HP_EVTASK_STALE;
}

/* For calls that cannot fail by their contract - libuv's timer, idle and
 * check inits, and a tcp init without an address family, make no system
 * call - whose result is still checked: a failure is a broken invariant,
 * and the process aborts with the call, the place and the code, as it does
 * when memory runs out (alloc.h). Calls that can fail are handled where
 * they are made. */
#define HP_MUST(call) hp_must((call), #call, __FILE__, __LINE__)
void hp_must(int rc, const char *call, const char *file, int line);

/* Message for a hotpath code or a libuv code. Never NULL, never owned. */
const char *hp_strerror(int err);

/* Short symbolic name ("EVTASK_STALE", "ECONNREFUSED"). Never NULL. */
const char *hp_err_name(int err);

#endif
