/*
 * faults.c - peer faults for the integration tests (see faults.h).
 */
#include "faults.h"

#include "tests/support/fixture.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void hp_it_client_reset(hp_it_client_t *c)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (c->fd >= 0) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    hp_it_client_close(c);
}

/* True when every thread of pid is stopped ('T' in /proc/pid/task/x/stat). */
static bool all_stopped(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL) return false;
    bool stopped = true;
    struct dirent *e;
    while (stopped && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512], buf[512];
        snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue; /* a thread that just ended */
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* "pid (comm) S ...": the state follows the last ')'. */
        const char *p = strrchr(buf, ')');
        stopped = p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
    }
    closedir(d);
    return stopped;
}

int hp_it_server_pause(hp_it_server_t *s)
{
    if (hp_it_server_signal(s, SIGSTOP) != 0) {
        fprintf(stderr, "faults: SIGSTOP %d: %s\n", (int)s->pid, strerror(errno));
        return -1;
    }
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    while (!all_stopped(s->pid)) {
        if (hp_it_now_ms() > deadline) {
            fprintf(stderr, "faults: server %d did not stop\n", (int)s->pid);
            return -1;
        }
        hp_it_sleep_ms(1);
    }
    return 0;
}

int hp_it_server_resume(hp_it_server_t *s)
{
    if (hp_it_server_signal(s, SIGCONT) != 0) {
        fprintf(stderr, "faults: SIGCONT %d: %s\n", (int)s->pid, strerror(errno));
        return -1;
    }
    return 0;
}

char *hp_it_repeat_request(const char *req, int n, size_t *len)
{
    size_t one = strlen(req);
    char *s = malloc(one * (size_t)n + 1);
    for (int i = 0; i < n; i++)
        memcpy(s + one * (size_t)i, req, one);
    s[one * (size_t)n] = '\0';
    *len = one * (size_t)n;
    return s;
}

double hp_it_wait_stat(int port, const char *path, double want)
{
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    double v;
    while ((v = hp_it_stat(port, path)) != want && hp_it_now_ms() < deadline)
        hp_it_sleep_ms(10);
    return v;
}
