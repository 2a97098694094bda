/*
 * redis.h - a real redis-server for the tests that need one (test_l2,
 * it_l2): its own process on a free loopback port, its own directory, no
 * persistence. The helpers assert (cmocka) on what should not fail.
 *
 * Without redis-server on PATH (HOTPATH_REDIS_BIN overrides)
 * hp_test_redis_bin says NULL, and the tests that need it skip, after one
 * line that says so; `make deps` installs it.
 */
#ifndef HP_TEST_REDIS_H
#define HP_TEST_REDIS_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char dir[64]; /* its working directory and log */
} hp_test_redis_t;

/* The redis-server to run, or NULL. */
const char *hp_test_redis_bin(void);

/* Start Redis on rp->port (rp->dir made); true once it accepts
 * connections, false when it exited first (the port was taken). */
bool hp_test_redis_spawn(hp_test_redis_t *rp);

/* A fresh directory and a free port: asserts it started. */
void hp_test_redis_start(hp_test_redis_t *rp);

/* Signal it and reap it (SIGKILL after 5 s). */
void hp_test_redis_kill(hp_test_redis_t *rp, int sig);

/* Stop it and remove its directory. */
void hp_test_redis_cleanup(hp_test_redis_t *rp);

#endif
