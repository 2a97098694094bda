/*
 * harness.c - processes and a socket client for the integration tests (see
 * harness.h).
 *
 * Processes are started with fork + exec, stdout and stderr redirected to
 * files in one temp directory per test run; the "listening on" line is read
 * back from the stdout file by polling it. Files rather than pipes: a pipe
 * nobody drains blocks a server that logs (the access log writes to stdout
 * by default), and a file can be read again to assert log lines.
 *
 * Waiting for a child is waitpid(WNOHANG) in a short sleep loop against a
 * deadline: no SIGCHLD handler, nothing that could interfere with cmocka's
 * own signal handling.
 *
 * The client feeds llhttp everything it receives and pauses the parser from
 * on_message_complete, so one call returns exactly one response and the
 * bytes after it are kept for the next call. HEAD answers carry the GET's
 * Content-Length but no body, which llhttp cannot know in response mode:
 * on_headers_complete returns 1 ("skip the body") when the caller says the
 * response answers a HEAD.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* --- time ------------------------------------------------------------------ */

long long hp_it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void hp_it_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000, (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* --- the temp directory and leftover processes ------------------------- */

static char tmpdir[256];
static unsigned file_seq;

#define MAX_CHILDREN 64
static pid_t children[MAX_CHILDREN];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

static void at_exit(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] <= 0) continue;
        kill(children[i], SIGKILL);
        waitpid(children[i], NULL, 0);
        children[i] = 0;
    }
    if (tmpdir[0]) nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *temp_dir(void)
{
    if (tmpdir[0]) return tmpdir;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/hotpath-it-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", tmpdir, strerror(errno));
        abort();
    }
    /* A peer that resets makes send() fail, not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    atexit(at_exit);
    return tmpdir;
}

char *hp_it_temp_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%u-%s", temp_dir(), ++file_seq, name);
    return buf;
}

static void track(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    }
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid) children[i] = 0;
}

/* --- files ------------------------------------------------------------- */

static int write_file(const char *path, const char *data, size_t len)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) return -errno;
    size_t n = fwrite(data, 1, len, f);
    int bad = fclose(f) != 0 || n != len;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return -EIO;
    }
    return 0;
}

/* Returns owned: the whole file, NUL-terminated (empty when unreadable). */
static char *read_file(const char *path, size_t *len_out)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t n;
        while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
            len += n;
            if (cap - len < 2) buf = realloc(buf, cap *= 2);
        }
        fclose(f);
    }
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

/* --- processes ----------------------------------------------------------- */

static const char *bin_path(const char *env, const char *rel, char *buf, size_t len)
{
    const char *v = getenv(env);
    if (v && *v) return v;
    const char *root = getenv("HOTPATH_ROOT");
    if (root && *root)
        snprintf(buf, len, "%s/%s", root, rel);
    else
        snprintf(buf, len, "%s", rel);
    return buf;
}

const char *hp_it_bin(void)
{
    static char buf[512];
    return bin_path("HOTPATH_BIN", "build/hotpath", buf, sizeof(buf));
}

const char *hp_it_upstream_bin(void)
{
    static char buf[512];
    return bin_path("HOTPATH_UPSTREAM_BIN", "build/hotpath-upstream", buf, sizeof(buf));
}

const char *hp_it_twin_bin(void)
{
    static char buf[512];
    return bin_path("KESTREL_BIN", "build/kestrel/hotpath-kestrel", buf, sizeof(buf));
}

/* fork + exec argv with stdin from in_path (or /dev/null) and stdout and
 * stderr into files. Returns the pid, or -1. */
static pid_t spawn(const char *const *argv, const char *in_path, const char *out_path,
                   const char *err_path)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0) _exit(126);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        /* Whatever the test runner ignores (nohup, a background job), the
         * program under test starts with the default dispositions. */
        signal(SIGPIPE, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "harness: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    track(pid);
    return pid;
}

static int decode_status(int st)
{
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

/* Reap pid within timeout_ms: its decoded status, or -2 if still running. */
static int reap(pid_t pid, int timeout_ms)
{
    long long deadline = hp_it_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            untrack(pid);
            return decode_status(st);
        }
        if (r < 0 && errno != EINTR) {
            untrack(pid);
            return -1;
        }
        if (hp_it_now_ms() >= deadline) return -2;
        hp_it_sleep_ms(5);
    }
}

static void dump_stderr(const hp_it_server_t *s, const char *why)
{
    char *text = hp_it_server_stderr(s);
    fprintf(stderr, "harness: %s; its stderr (%s):\n%s%s", why, s->err_path, text,
            text[0] && text[strlen(text) - 1] != '\n' ? "\n" : "");
    free(text);
}

/* Start argv and wait for "<prefix>...:PORT" on its stdout. */
static int start_process(hp_it_server_t *s, const char *const *argv, const char *prefix)
{
    s->status = -1;
    s->port = 0;
    s->pid = spawn(argv, NULL, s->out_path, s->err_path);
    if (s->pid < 0) {
        s->pid = 0;
        return -1;
    }
    long long deadline = hp_it_now_ms() + HP_IT_PROCESS_MS;
    for (;;) {
        char *out = read_file(s->out_path, NULL);
        const char *line = strstr(out, prefix);
        const char *nl = line ? strchr(line, '\n') : NULL;
        if (nl) {
            /* The port follows the last ':' before the end of the first
             * token after the prefix ("http://127.0.0.1:PORT (...", or
             * "127.0.0.1:PORT"). */
            const char *end = line + strlen(prefix);
            while (end < nl && *end != ' ')
                end++;
            const char *colon = end;
            while (colon > line && *colon != ':')
                colon--;
            s->port = atoi(colon + 1);
            free(out);
            if (s->port > 0) return 0;
            fprintf(stderr, "harness: no port in the line after \"%s\"\n", prefix);
            hp_it_server_stop(s);
            return -1;
        }
        free(out);
        int st = reap(s->pid, 0);
        if (st != -2) {
            s->status = st;
            s->pid = 0;
            dump_stderr(s, "the process exited before listening");
            return -1;
        }
        if (hp_it_now_ms() >= deadline) {
            dump_stderr(s, "no \"listening on\" line in time");
            kill(s->pid, SIGKILL);
            reap(s->pid, HP_IT_PROCESS_MS);
            s->pid = 0;
            return -1;
        }
        /* Poll often: the line is a promise that the server is ready, and a
         * test may act on it at once (a signal, a request), as a supervisor
         * would. */
        sleep_us(200);
    }
}

static void name_files(hp_it_server_t *s, const char *what)
{
    char name[64];
    snprintf(name, sizeof(name), "%s.json", what);
    hp_it_temp_path(s->config, sizeof(s->config), name);
    snprintf(name, sizeof(name), "%s.stdout", what);
    hp_it_temp_path(s->out_path, sizeof(s->out_path), name);
    snprintf(name, sizeof(name), "%s.stderr", what);
    hp_it_temp_path(s->err_path, sizeof(s->err_path), name);
}

#define MAX_ARGS 32

int hp_it_server_start(hp_it_server_t *s, const char *config_json, const char *const *extra_args)
{
    memset(s, 0, sizeof(*s));
    name_files(s, "hotpath");
    const char *json = config_json ? config_json : "{}";
    if (write_file(s->config, json, strlen(json)) != 0) {
        fprintf(stderr, "harness: cannot write %s\n", s->config);
        return -1;
    }
    const char *argv[MAX_ARGS] = {hp_it_bin(), "--config",  s->config, "--port",
                                  "0",         "--workers", "1"};
    size_t n = 7;
    for (size_t i = 0; extra_args && extra_args[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    return start_process(s, argv, "hotpath listening on ");
}

int hp_it_upstream_start(hp_it_server_t *s, const char *const *extra_args)
{
    memset(s, 0, sizeof(*s));
    name_files(s, "upstream");
    const char *argv[MAX_ARGS] = {hp_it_upstream_bin(), "--port", "0"};
    size_t n = 3;
    for (size_t i = 0; extra_args && extra_args[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    return start_process(s, argv, "hotpath-upstream listening on ");
}

int hp_it_start_behind_stub(hp_it_server_t *server, hp_it_server_t *stub, int delay_ms,
                            const char *const *stub_args, const char *upstream, const char *rest,
                            const char *const *server_args)
{
    char delay[16];
    snprintf(delay, sizeof(delay), "%d", delay_ms);
    const char *args[MAX_ARGS] = {"--delay-ms", delay};
    size_t n = 2;
    for (size_t i = 0; stub_args && stub_args[i] && n < MAX_ARGS - 1; i++)
        args[n++] = stub_args[i];
    args[n] = NULL;
    if (hp_it_upstream_start(stub, args) != 0) return -1;
    bool more = upstream && *upstream, other = rest && *rest;
    char config[2048];
    int len =
        snprintf(config, sizeof(config), "{\"upstream\": {\"port\": %d%s%s}%s%s}", stub->port,
                 more ? ", " : "", more ? upstream : "", other ? ", " : "", other ? rest : "");
    if (len < 0 || (size_t)len >= sizeof(config)) {
        fprintf(stderr, "harness: config too long for hp_it_start_behind_stub\n");
        hp_it_upstream_stop(stub);
        return -1;
    }
    if (hp_it_server_start(server, config, server_args) != 0) {
        hp_it_upstream_stop(stub);
        return -1;
    }
    return 0;
}

int hp_it_twin_start(hp_it_server_t *s, const char *config_json, const char *const *extra_args)
{
    memset(s, 0, sizeof(*s));
    name_files(s, "twin");
    const char *json = config_json ? config_json : "{}";
    if (write_file(s->config, json, strlen(json)) != 0) {
        fprintf(stderr, "harness: cannot write %s\n", s->config);
        return -1;
    }
    const char *argv[MAX_ARGS] = {hp_it_twin_bin(), "--config", s->config, "--port", "0"};
    size_t n = 5;
    for (size_t i = 0; extra_args && extra_args[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    return start_process(s, argv, "hotpath-kestrel listening on ");
}

int hp_it_server_wait(hp_it_server_t *s, int timeout_ms)
{
    if (s->pid <= 0) return s->status;
    int st = reap(s->pid, timeout_ms);
    if (st == -2) return -2;
    s->status = st;
    s->pid = 0;
    if (st != 0) {
        char why[64];
        snprintf(why, sizeof(why), "the process exited with status %d", st);
        dump_stderr(s, why);
    }
    return st;
}

int hp_it_server_stop(hp_it_server_t *s)
{
    if (s->pid <= 0) return s->status;
    kill(s->pid, SIGTERM);
    int st = hp_it_server_wait(s, HP_IT_PROCESS_MS);
    if (st != -2) return st;
    dump_stderr(s, "no exit within the bound after SIGTERM: killed");
    kill(s->pid, SIGKILL);
    reap(s->pid, HP_IT_PROCESS_MS);
    s->pid = 0;
    s->status = -1;
    return -1;
}

int hp_it_upstream_stop(hp_it_server_t *s)
{
    return hp_it_server_stop(s);
}

int hp_it_server_signal(hp_it_server_t *s, int sig)
{
    return s->pid > 0 && kill(s->pid, sig) == 0 ? 0 : -1;
}

int hp_it_server_write_config(hp_it_server_t *s, const char *json)
{
    return write_file(s->config, json, strlen(json));
}

char *hp_it_server_stderr(const hp_it_server_t *s)
{
    return read_file(s->err_path, NULL);
}

bool hp_it_server_wait_stderr(hp_it_server_t *s, const char *needle, int timeout_ms)
{
    long long deadline = hp_it_now_ms() + timeout_ms;
    for (;;) {
        /* Whether it has exited, asked before reading: what an exited
         * process wrote is all there. */
        bool gone = s->pid <= 0 || hp_it_server_wait(s, 0) != -2;
        char *text = hp_it_server_stderr(s);
        bool found = strstr(text, needle) != NULL;
        free(text);
        if (found) return true;
        if (gone || hp_it_now_ms() >= deadline) return false;
        hp_it_sleep_ms(10);
    }
}

int hp_it_exec(const char *const *argv, const char *stdin_data, size_t stdin_len, int timeout_ms,
               hp_it_output_t *out)
{
    char in_path[512] = "", out_path[512], err_path[512];
    memset(out, 0, sizeof(*out));
    if (stdin_data) {
        hp_it_temp_path(in_path, sizeof(in_path), "stdin");
        if (write_file(in_path, stdin_data, stdin_len) != 0) return -1;
    }
    hp_it_temp_path(out_path, sizeof(out_path), "exec.stdout");
    hp_it_temp_path(err_path, sizeof(err_path), "exec.stderr");
    pid_t pid = spawn(argv, in_path[0] ? in_path : NULL, out_path, err_path);
    if (pid < 0) return -1;
    int st = reap(pid, timeout_ms);
    if (st == -2) {
        kill(pid, SIGKILL);
        reap(pid, HP_IT_PROCESS_MS);
        st = -1;
    }
    out->status = st;
    out->out = read_file(out_path, NULL);
    out->err = read_file(err_path, NULL);
    return 0;
}

int hp_it_run(const char *config_json, const char *const *args, hp_it_output_t *out)
{
    const char *argv[MAX_ARGS] = {hp_it_bin()};
    size_t n = 1;
    char config[512];
    if (config_json) {
        hp_it_temp_path(config, sizeof(config), "run.json");
        if (write_file(config, config_json, strlen(config_json)) != 0) return -1;
        argv[n++] = "--config";
        argv[n++] = config;
    }
    for (size_t i = 0; args && args[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return hp_it_exec(argv, NULL, 0, HP_IT_PROCESS_MS, out);
}

void hp_it_output_free(hp_it_output_t *out)
{
    free(out->out);
    free(out->err);
    out->out = out->err = NULL;
}

/* --- the response parser ------------------------------------------------- */

static void append(char **dst, size_t *len, const char *at, size_t n)
{
    *dst = realloc(*dst, *len + n + 1);
    memcpy(*dst + *len, at, n);
    *len += n;
    (*dst)[*len] = '\0';
}

static void append_str(char **dst, const char *at, size_t n)
{
    size_t len = *dst ? strlen(*dst) : 0;
    append(dst, &len, at, n);
}

static hp_it_client_t *client_of(llhttp_t *p)
{
    return p->data;
}

static int on_message_begin(llhttp_t *p)
{
    client_of(p)->in_value = false;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    hp_it_client_t *c = client_of(p);
    hp_it_resp_t *r = c->cur;
    if (c->in_value || r->nheaders == 0) {
        if (r->nheaders == HP_IT_MAX_HEADERS) return -1;
        r->nheaders++;
        c->in_value = false;
    }
    append_str(&r->headers[r->nheaders - 1].name, at, n);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    hp_it_client_t *c = client_of(p);
    hp_it_resp_t *r = c->cur;
    c->in_value = true;
    append_str(&r->headers[r->nheaders - 1].value, at, n);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    hp_it_resp_t *r = client_of(p)->cur;
    /* An empty value never calls on_header_value. */
    if (r->headers[r->nheaders - 1].value == NULL)
        append_str(&r->headers[r->nheaders - 1].value, "", 0);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    hp_it_client_t *c = client_of(p);
    hp_it_resp_t *r = c->cur;
    r->status = p->status_code;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    /* 1: no body follows, whatever Content-Length says (a HEAD answer). */
    return c->head && r->status >= 200 ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    hp_it_resp_t *r = client_of(p)->cur;
    append(&r->body, &r->body_len, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    hp_it_client_t *c = client_of(p);
    c->cur->keep_alive = llhttp_should_keep_alive(p) != 0;
    c->done = true;
    return HPE_PAUSED;
}

void hp_it_resp_free(hp_it_resp_t *resp)
{
    for (size_t i = 0; i < resp->nheaders; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->body);
    free(resp->raw);
    memset(resp, 0, sizeof(*resp));
}

const char *hp_it_header(const hp_it_resp_t *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++)
        if (resp->headers[i].name && strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value ? resp->headers[i].value : "";
    return NULL;
}

size_t hp_it_header_count(const hp_it_resp_t *resp, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < resp->nheaders; i++)
        n += resp->headers[i].name && strcasecmp(resp->headers[i].name, name) == 0;
    return n;
}

/* --- the client ---------------------------------------------------------- */

int hp_it_unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int rc = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        rc = -errno;
    close(fd);
    return rc < 0 ? rc : ntohs(a.sin_port);
}

int hp_it_client_open(hp_it_client_t *c, int port)
{
    return hp_it_client_open_rcvbuf(c, port, 0);
}

int hp_it_client_open_rcvbuf(hp_it_client_t *c, int port, int rcvbuf)
{
    temp_dir(); /* SIGPIPE ignored, exit hook set */
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -errno;
    /* Before connect, so the window is negotiated with it. */
    if (rcvbuf > 0) setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    /* A loopback connect either completes or is refused at once. */
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = -errno;
        close(c->fd);
        c->fd = -1;
        return e;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    llhttp_settings_init(&c->settings);
    c->settings.on_message_begin = on_message_begin;
    c->settings.on_header_field = on_header_field;
    c->settings.on_header_value = on_header_value;
    c->settings.on_header_value_complete = on_header_value_complete;
    c->settings.on_headers_complete = on_headers_complete;
    c->settings.on_body = on_body;
    c->settings.on_message_complete = on_message_complete;
    llhttp_init(&c->parser, HTTP_RESPONSE, &c->settings);
    c->parser.data = c;
    return 0;
}

void hp_it_client_close(hp_it_client_t *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
}

static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - hp_it_now_ms();
        if (left < 0) left = 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, (int)left);
        if (n > 0) return 0;
        if (n == 0) return -ETIMEDOUT;
        if (errno != EINTR) return -errno;
    }
}

int hp_it_client_send(hp_it_client_t *c, const void *data, size_t len)
{
    const char *p = data;
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(c->fd, POLLOUT, deadline);
            if (rc) return rc;
            continue;
        }
        return -errno;
    }
    return 0;
}

int hp_it_client_sendf(hp_it_client_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    int n = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (n < 0) return -ENOMEM;
    int rc = hp_it_client_send(c, text, (size_t)n);
    free(text);
    return rc;
}

int hp_it_client_send_split(hp_it_client_t *c, const void *data, size_t len, const size_t *cuts,
                            size_t ncuts, unsigned pause_us)
{
    const char *p = data;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        if (end < at || end > len) return -EINVAL;
        if (end > at) {
            int rc = hp_it_client_send(c, p + at, end - at);
            if (rc) return rc;
        }
        at = end;
        if (i < ncuts && pause_us) sleep_us(pause_us);
    }
    return 0;
}

/* One read into c->in: > 0 bytes read, 0 at EOF (c->eof set), < 0 error
 * (timeout). */
static ssize_t fill(hp_it_client_t *c, long long deadline)
{
    if (c->eof) return 0;
    for (;;) {
        if (c->in_cap - c->in_len < 16384) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 65536;
            c->in = realloc(c->in, c->in_cap);
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            return n;
        }
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE))) {
            c->eof = true;
            c->reset = n < 0;
            return 0;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        int rc = wait_fd(c->fd, POLLIN, deadline);
        if (rc) return rc;
    }
}

int hp_it_client_read(hp_it_client_t *c, hp_it_resp_t *resp, bool head)
{
    memset(resp, 0, sizeof(*resp));
    c->cur = resp;
    c->head = head;
    c->done = false;
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    int rc = 0;
    while (!c->done) {
        if (c->in_len) {
            enum llhttp_errno err = llhttp_execute(&c->parser, c->in, c->in_len);
            size_t used = c->in_len;
            if (err == HPE_PAUSED) {
                used = (size_t)(llhttp_get_error_pos(&c->parser) - c->in);
                llhttp_resume(&c->parser);
            } else if (err != HPE_OK) {
                fprintf(stderr, "harness: bad response: %s (%s) after %zu bytes: \"%.*s\"\n",
                        llhttp_errno_name(err), llhttp_get_error_reason(&c->parser),
                        (size_t)(llhttp_get_error_pos(&c->parser) - c->in), (int)c->in_len, c->in);
                rc = -1;
                break;
            }
            append(&resp->raw, &resp->raw_len, c->in, used);
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
            continue;
        }
        ssize_t n = fill(c, deadline);
        if (n > 0) continue;
        if (n == 0) {
            /* EOF: a body delimited by the close ends here; anything else
             * was cut short. */
            if (llhttp_message_needs_eof(&c->parser) && llhttp_finish(&c->parser) == HPE_OK &&
                c->done)
                break;
            fprintf(stderr,
                    "harness: the connection closed%s before a whole response "
                    "(%zu bytes of it: \"%.*s\")\n",
                    c->reset ? " (reset)" : "", resp->raw_len, (int)resp->raw_len,
                    resp->raw ? resp->raw : "");
            rc = -1;
            break;
        }
        fprintf(stderr,
                "harness: no whole response within %d ms (%s; %zu bytes of it: "
                "\"%.*s\")\n",
                HP_IT_TIMEOUT_MS, strerror((int)-n), resp->raw_len, (int)resp->raw_len,
                resp->raw ? resp->raw : "");
        rc = -1;
        break;
    }
    if (resp->body == NULL) append(&resp->body, &resp->body_len, "", 0);
    if (resp->raw == NULL) append(&resp->raw, &resp->raw_len, "", 0);
    c->cur = NULL;
    if (rc) {
        resp->closed = c->eof;
        return rc;
    }
    if (!resp->keep_alive && resp->status >= 200 && c->in_len == 0) {
        /* The answer says the connection ends: wait for the close. */
        while (!c->eof && fill(c, deadline) > 0 && c->in_len == 0) {
        }
    }
    resp->closed = c->eof && c->in_len == 0;
    return 0;
}

int hp_it_client_request(hp_it_client_t *c, const char *method, const char *target,
                         const char *extra_headers, hp_it_resp_t *resp)
{
    memset(resp, 0, sizeof(*resp));
    int rc = hp_it_client_sendf(c, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method, target,
                                extra_headers ? extra_headers : "");
    if (rc) {
        fprintf(stderr, "harness: send %s %s: %s\n", method, target, strerror(-rc));
        return -1;
    }
    return hp_it_client_read(c, resp, strcmp(method, "HEAD") == 0);
}

bool hp_it_client_wait_eof(hp_it_client_t *c, int timeout_ms)
{
    long long deadline = hp_it_now_ms() + timeout_ms;
    while (!c->eof && c->in_len == 0) {
        if (fill(c, deadline) < 0) break;
    }
    if (c->in_len)
        fprintf(stderr, "harness: expected a close, got %zu more bytes: \"%.*s\"\n", c->in_len,
                (int)c->in_len, c->in);
    return c->eof && c->in_len == 0;
}

bool hp_it_client_still_open(hp_it_client_t *c, int wait_ms)
{
    if (c->eof || c->in_len) return false;
    long long deadline = hp_it_now_ms() + wait_ms;
    ssize_t n = fill(c, deadline);
    return n == -ETIMEDOUT;
}

/* --- conveniences --------------------------------------------------------- */

int hp_it_get(int port, const char *target, hp_it_resp_t *resp)
{
    hp_it_client_t c;
    memset(resp, 0, sizeof(*resp));
    int rc = hp_it_client_open(&c, port);
    if (rc) {
        fprintf(stderr, "harness: connect to port %d: %s\n", port, strerror(-rc));
        return -1;
    }
    rc = hp_it_client_request(&c, "GET", target, NULL, resp);
    hp_it_client_close(&c);
    return rc;
}

cJSON *hp_it_stats(int port)
{
    hp_it_resp_t r;
    if (hp_it_get(port, "/stats", &r) != 0) {
        hp_it_resp_free(&r);
        return NULL;
    }
    cJSON *root = r.status == 200 ? cJSON_ParseWithLength(r.body, r.body_len) : NULL;
    if (root == NULL)
        fprintf(stderr, "harness: /stats: status %d, not JSON: \"%s\"\n", r.status, r.body);
    hp_it_resp_free(&r);
    return root;
}

const cJSON *hp_it_json_at(const cJSON *root, const char *path)
{
    const cJSON *v = root;
    const char *p = path;
    while (v && *p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        char key[256];
        if (n >= sizeof(key)) return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, key) : NULL;
        p += n + (bar != NULL);
    }
    return v;
}

double hp_it_json_num(const cJSON *root, const char *path, double def)
{
    const cJSON *v = hp_it_json_at(root, path);
    if (v == NULL) return def;
    if (!cJSON_IsNumber(v)) {
        fprintf(stderr, "harness: %s is not a number\n", path);
        return -1e300;
    }
    return v->valuedouble;
}

/* --- the result ------------------------------------------------------------ */

static int run_failed;

/* LeakSanitizer asks this at exit (a weak hook in its runtime; an unused
 * function elsewhere). */
int __lsan_is_turned_off(void);
__attribute__((used)) int __lsan_is_turned_off(void)
{
    return run_failed;
}

int hp_it_result(int cmocka_failed)
{
    run_failed = cmocka_failed != 0;
    return cmocka_failed ? 1 : 0;
}
