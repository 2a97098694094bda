/*
 * faults.h - what a hostile or broken peer does to a connection, for the
 * integration tests: reset it, and make the server miss the moment (pause
 * the whole process while the peer acts, so that when it runs again it
 * finds the request and the reset together, deterministically).
 *
 * Called from a test's main thread, like harness.h.
 */
#ifndef HP_IT_FAULTS_H
#define HP_IT_FAULTS_H

#include "tests/support/harness.h"

#include <stdbool.h>

/* Close c with a reset (SO_LINGER 0) instead of a FIN. */
void hp_it_client_reset(hp_it_client_t *c);

/* SIGSTOP the server and wait (bounded) until every thread of it has
 * stopped; SIGCONT it. Both return 0, or -1 with a message. */
int hp_it_server_pause(hp_it_server_t *s);
int hp_it_server_resume(hp_it_server_t *s);

/* n copies of req, concatenated. Returns owned (free()); *len its length. */
char *hp_it_repeat_request(const char *req, int n, size_t *len);

/* One figure of /stats, polled until it equals want (bounded by
 * HP_IT_TIMEOUT_MS); returns the last value read. Fails the test when the
 * path is missing. */
double hp_it_wait_stat(int port, const char *path, double want);

#endif
