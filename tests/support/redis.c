/*
 * redis.c - a real redis-server for a test (see redis.h): spawned on a free
 * loopback port in a fresh directory, without persistence, killed with
 * the test (PR_SET_PDEATHSIG) if the test dies first.
 */
#include "tests/support/redis.h"
#include "tests/support/harness.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char redis_path[4096];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The redis-server to run, or NULL. */
const char *hp_test_redis_bin(void)
{
    const char *env = getenv("HOTPATH_REDIS_BIN");
    if (env && *env) return access(env, X_OK) == 0 ? env : NULL;
    const char *path = getenv("PATH");
    if (path == NULL) path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(redis_path, sizeof(redis_path), "%.*s/redis-server", (int)n, path);
        if (n && access(redis_path, X_OK) == 0) return redis_path;
        path += n + (path[n] == ':');
    }
    return NULL;
}

/* Start Redis on rp->port; true once it logged that it accepts connections,
 * false when it exited first (the port was taken). */
bool hp_test_redis_spawn(hp_test_redis_t *rp)
{
    char log[128], port[16];
    snprintf(log, sizeof(log), "%s/redis.log", rp->dir);
    snprintf(port, sizeof(port), "%d", rp->port);
    unlink(log);
    const char *bin = hp_test_redis_bin();
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(126);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        execl(bin, bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--daemonize", "no", "--dir", rp->dir, "--logfile", log, (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    rp->pid = pid;
    for (int i = 0; i < 1000; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            rp->pid = 0;
            return false;
        }
        char text[16384];
        FILE *fp = fopen(log, "r");
        if (fp) {
            size_t n = fread(text, 1, sizeof(text) - 1, fp);
            fclose(fp);
            text[n] = '\0';
            if (strstr(text, "Ready to accept connections")) return true;
        }
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    rp->pid = 0;
    fail_msg("redis-server on port %d did not get ready in 10 s (log: %s)", rp->port, log);
    return false;
}

void hp_test_redis_start(hp_test_redis_t *rp)
{
    snprintf(rp->dir, sizeof(rp->dir), "/tmp/hp-test-redis-XXXXXX");
    assert_non_null(mkdtemp(rp->dir));
    for (int tries = 0; tries < 8; tries++) {
        rp->port = hp_it_unused_port();
        assert_true(rp->port > 0);
        if (hp_test_redis_spawn(rp)) return;
    }
    fail_msg("redis-server did not start on 8 free ports in a row");
}

void hp_test_redis_kill(hp_test_redis_t *rp, int sig)
{
    if (rp->pid <= 0) return;
    pid_t pid = rp->pid;
    rp->pid = 0;
    kill(pid, sig);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

void hp_test_redis_cleanup(hp_test_redis_t *rp)
{
    hp_test_redis_kill(rp, SIGTERM);
    if (rp->dir[0] == '\0') return;
    char p[128];
    snprintf(p, sizeof(p), "%s/redis.log", rp->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/dump.rdb", rp->dir);
    unlink(p);
    rmdir(rp->dir);
    rp->dir[0] = '\0';
}
