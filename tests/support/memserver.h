/*
 * memserver.h - a worker without a thread or a socket, for unit tests: the
 * real app (app/app.c) - parser, chain, handlers, services, counters - fed
 * through in-memory connections whose output is captured (conn.h's memory
 * connections). The calling thread's allocation and runtime counters are
 * bound to the worker's, as a worker thread's are.
 */
#ifndef HP_TEST_MEMSERVER_H
#define HP_TEST_MEMSERVER_H

#include "app/app.h"
#include "server/config.h"
#include "server/conn.h"
#include "server/worker.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data; /* malloc'd, NUL-terminated */
    size_t len;
    bool closed;    /* the server closed the connection */
    bool late;      /* output arrived after the close (a bug) */
    int writes;     /* the server's writes so far */
    int fail_write; /* when > 0: this write and every later one fail (EPIPE) */
    bool stalled;   /* take nothing: a peer that stopped reading */
} hp_capture_t;

typedef struct {
    hp_config_t *cfg;
    hp_worker_t w;
} hp_memserver_t;

/* Open a worker on config json (NULL: defaults). Fails the test on error. */
void hp_memserver_open(hp_memserver_t *m, const char *json);
/* Drain, run the loop until every handle closed, free. */
void hp_memserver_close(hp_memserver_t *m);

/* The worker's instance of one of the app's services (layers.h), to look
 * into (the origin's cache and upstream client); fails the test when the
 * app has no such service. */
void *hp_memserver_service(hp_memserver_t *m, const hp_service_t *service);

/* A connection whose output lands in cap (zeroed here; set fail_write or
 * stalled afterwards to act as a reset peer or one that stopped reading;
 * clear stalled and call hp_conn_memory_writable to read again). */
hp_conn_t *hp_memconn_new(hp_memserver_t *m, hp_capture_t *cap);

/* Feed in (whole or one byte at a time) on a new connection, run the loop
 * once, close the connection if the server did not; cap->closed says
 * whether the server closed it. */
void hp_memconn_exchange(hp_memserver_t *m, const char *in, size_t len, bool bytewise,
                         hp_capture_t *cap);

/* Status of the first answer in text (0 when none); the body of the first
 * answer (a pointer into text, or NULL). */
int hp_capture_status(const char *text);
const char *hp_capture_body(const char *text);

/* Assert that the configuration json is refused (HP_ECONFIG, no config
 * made) with an error naming what msg says: how each middleware's tests
 * check that its bad options are refused by name. */
void hp_assert_config_refused(const char *json, const char *msg);

/* The value of the first answer's header name (case-insensitive) copied
 * into buf, or NULL when the first answer has none. */
const char *hp_capture_header(const char *text, const char *name, char *buf, size_t len);

/* How often needle occurs in hay. */
int hp_count(const char *hay, const char *needle);

#endif
