/*
 * main.c - the hotpath binary: flags, configuration, signals.
 *
 * A thin client of the server library (as h2o's binary is of libh2o): it
 * parses the command line, loads the configuration, starts the workers on
 * the app (app.c: the routes, middleware and services it wires) and then
 * sits in a small control loop that turns SIGHUP into a reload and
 * SIGINT/SIGTERM into a graceful stop.
 */
#include "app.h"

#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "server/config.h"
#include "server/server.h"

#include <llhttp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#define HOTPATH_VERSION "0.1.0"
#define DEFAULT_CONFIG  "config/hotpath.json"

static void usage(FILE *f)
{
    fprintf(f, "usage: hotpath [--config FILE] [--mode task|valuetask] [--port N] [--workers N]\n"
               "\n"
               "A small HTTP/1.1 server that measures the Task vs ValueTask decision.\n"
               "\n"
               "  --config FILE   JSON configuration (default: " DEFAULT_CONFIG " when present)\n"
               "  --mode M        valuetask (default) or task: every valuetask as a heap task\n"
               "  --port N        listen port (0: ephemeral; the bound port is printed)\n"
               "  --workers N     event loops, one thread each (0: one per core)\n"
               "  --help          this text, then every configuration option\n"
               "  --version       the version\n"
               "\n"
               "Flags override the file, also across reloads. Signals: SIGHUP reloads the\n"
               "file (a bad file is refused and the running configuration stays);\n"
               "SIGINT/SIGTERM stop accepting, finish running requests, and exit 0 (once\n"
               "/healthz has been asked, it first answers 503 for limits.drain_health_ms).\n"
               "\n"
               "Configuration options (key, default, why):\n");
    hp_config_print_options(&hp_app, f);
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || n < lo || n > hi) {
        fprintf(stderr, "hotpath: %s: expected an integer from %d to %d\n", flag, lo, hi);
        return -1;
    }
    *out = (int)n;
    return 0;
}

typedef struct {
    hp_server_t *server;
    uv_signal_t hup, intr, term;
    int stopping;
} control_t;

static void on_hup(uv_signal_t *h, int signum)
{
    control_t *ctl = h->data;
    char err[512], note[256];
    if (hp_server_reload(ctl->server, err, sizeof(err), note, sizeof(note)) != 0) {
        fprintf(stderr, "hotpath: reload refused: %s; the running configuration stays\n", err);
        return;
    }
    if (note[0]) fprintf(stderr, "hotpath: reload: %s\n", note);
    fprintf(stderr, "hotpath: reloaded %s (mode %s)\n", ctl->server->config_path,
            hp_mode_name(ctl->server->config->mode));
}

static void on_stop(uv_signal_t *h, int signum)
{
    control_t *ctl = h->data;
    if (ctl->stopping++) return;
    fprintf(stderr, "hotpath: %s: draining\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    hp_server_stop(ctl->server);
    uv_close((uv_handle_t *)&ctl->hup, NULL);
    uv_close((uv_handle_t *)&ctl->intr, NULL);
    uv_close((uv_handle_t *)&ctl->term, NULL);
}

/* SIGHUP, SIGINT and SIGTERM on loop, or none: a handle that opened before
 * one failed is closed again (the caller runs the loop for its callback). */
static int open_signals(uv_loop_t *loop, control_t *ctl)
{
    uv_signal_t *const handles[] = {&ctl->hup, &ctl->intr, &ctl->term};
    const int signums[] = {SIGHUP, SIGINT, SIGTERM};
    const uv_signal_cb cbs[] = {on_hup, on_stop, on_stop};
    int rc = 0;
    size_t i = 0;
    for (; i < 3; i++) {
        if ((rc = uv_signal_init(loop, handles[i]))) break;
        handles[i]->data = ctl;
        if ((rc = uv_signal_start(handles[i], cbs[i], signums[i]))) {
            i++; /* initialized: it is closed below too */
            break;
        }
    }
    if (rc)
        while (i--)
            uv_close((uv_handle_t *)handles[i], NULL);
    return rc;
}

/* 5,000 idle connections need 5,000 descriptors: take what the hard limit
 * allows rather than the usual soft 1024. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    hp_alloc_install();
    hp_config_overrides_t ov = HP_CONFIG_NO_OVERRIDES;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("hotpath %s (libuv %s, llhttp %d.%d.%d)\n", HOTPATH_VERSION, uv_version_string(),
                   LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
            return 0;
        } else if (!strcmp(a, "--config")) {
            if (!v) {
                fprintf(stderr, "hotpath: --config: expected a file\n");
                return 2;
            }
            path = v;
            i++;
        } else if (!strcmp(a, "--mode")) {
            hp_mode_t m;
            if (!v || hp_config_mode_from_string(v, &m)) {
                fprintf(stderr, "hotpath: --mode: expected \"valuetask\" or \"task\"\n");
                return 2;
            }
            ov.mode = (int)m;
            i++;
        } else if (!strcmp(a, "--port")) {
            if (parse_int(a, v, 0, 65535, &ov.port)) return 2;
            i++;
        } else if (!strcmp(a, "--workers")) {
            if (parse_int(a, v, 0, HP_WORKERS_MAX, &ov.workers)) return 2;
            i++;
        } else {
            fprintf(stderr, "hotpath: unknown argument \"%s\" (try --help)\n", a);
            return 2;
        }
    }
    if (path == NULL && access(DEFAULT_CONFIG, R_OK) == 0) path = DEFAULT_CONFIG;

    char err[512];
    hp_config_t *cfg = NULL;
    int rc = path ? hp_config_load(&hp_app, path, &ov, &cfg, err, sizeof(err))
                  : hp_config_parse(&hp_app, "{}", 2, "(defaults)", &ov, &cfg, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "hotpath: %s\n", err);
        return 1;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    hp_server_t *server = NULL;
    rc = hp_server_start(&hp_app, cfg, path, &ov, &server, err, sizeof(err));
    hp_config_unref(cfg);
    if (rc) {
        fprintf(stderr, "hotpath: %s\n", err);
        return 1;
    }
    uv_loop_t loop;
    control_t ctl = {.server = server};
    rc = uv_loop_init(&loop);
    if (rc == 0 && (rc = open_signals(&loop, &ctl)) != 0) {
        uv_run(&loop, UV_RUN_DEFAULT); /* the close callbacks of those that opened */
        uv_loop_close(&loop);
    }
    if (rc) {
        /* Without signals there is no way to stop it: stop it now. */
        fprintf(stderr, "hotpath: cannot handle signals: %s\n", uv_strerror(rc));
        hp_server_stop(server);
        hp_server_join(server);
        return 1;
    }
    /* Announce only now: whoever waits for this line may signal at once. */
    printf("hotpath listening on http://%s:%d (%u workers, mode %s, config %s)\n",
           server->config->host, server->port, server->nworkers, hp_mode_name(server->config->mode),
           path ? path : "(defaults)");
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);

    hp_server_join(server);
    fprintf(stderr, "hotpath: stopped\n");
    return 0;
}
