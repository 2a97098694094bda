/*
 * harness.h - support for the integration tests (tests/it_*.c): real server
 * processes on ephemeral loopback ports, and a small HTTP/1.1 client over
 * real sockets.
 *
 * Linked into every test binary (the Makefile adds every .c file in
 * named neither test_* nor it_*). Called from the test's main thread only.
 *
 * Processes: hp_it_server_start runs $HOTPATH_BIN (default build/hotpath
 * under $HOTPATH_ROOT, or the current directory) with --config FILE --port 0
 * --workers 1, reads the bound port from its "listening on" line, and
 * captures stdout and stderr in files. hp_it_server_stop sends SIGTERM and
 * returns the exit status; tests assert 0, which under the sanitizer build
 * (LeakSanitizer in the server) makes every test a leak check too.
 *
 * Client: responses are parsed with llhttp in HTTP_RESPONSE mode, one at a
 * time (the parser pauses at each message end, so pipelined answers stay in
 * order and the bytes after one answer wait for the next read call, which
 * says whether it answers a HEAD).
 *
 * Every wait is bounded (poll with a deadline; HP_IT_TIMEOUT_MS for I/O);
 * everything targets 127.0.0.1. Servers a test leaves running (a failed
 * assertion jumps out of it) are killed at exit.
 */
#ifndef HP_IT_HARNESS_H
#define HP_IT_HARNESS_H

#include <cjson/cJSON.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Bound on any single network wait: generous, so a slow sanitizer build on a
 * loaded CI machine does not fail, yet no test can hang. */
#define HP_IT_TIMEOUT_MS 5000
/* Bound on a server's start-up and on its exit after SIGTERM. */
#define HP_IT_PROCESS_MS 10000

/* --- processes ---------------------------------------------------------- */

typedef struct {
    pid_t pid;          /* 0 when not running */
    int port;           /* the bound port, from the "listening on" line */
    int status;         /* exit status once reaped: code, 128 + signal, -1 */
    char config[512];   /* the config file (rewrite it, then SIGHUP) */
    char out_path[512]; /* captured stdout */
    char err_path[512]; /* captured stderr */
} hp_it_server_t;

/* Start hotpath: config_json (NULL: "{}", the built-in defaults) is written
 * to a temp file; then --config FILE --port 0 --workers 1 and extra_args
 * (NULL-terminated, may be NULL; later flags win). Returns 0, or -1 with a
 * message on stderr (the process is gone then). */
int hp_it_server_start(hp_it_server_t *s, const char *config_json, const char *const *extra_args);

/* SIGTERM, then wait up to HP_IT_PROCESS_MS (then SIGKILL). Returns the
 * exit status (0 for a clean exit); prints the server's stderr when it is
 * not 0. Safe on a server that already exited (returns its status). */
int hp_it_server_stop(hp_it_server_t *s);

/* Wait up to timeout_ms for the process to exit on its own. Returns its
 * exit status, or -2 when it is still running (and leaves it running). */
int hp_it_server_wait(hp_it_server_t *s, int timeout_ms);

int hp_it_server_signal(hp_it_server_t *s, int sig);

/* Replace the config file's content (atomically: write, then rename). */
int hp_it_server_write_config(hp_it_server_t *s, const char *json);

/* Returns owned (free with free()): everything the server wrote to stderr so
 * far, NUL-terminated. Never NULL. */
char *hp_it_server_stderr(const hp_it_server_t *s);

/* Wait up to timeout_ms for needle to appear in the server's stderr; stops
 * early when the process has exited (and reaps it: see hp_it_server_wait). */
bool hp_it_server_wait_stderr(hp_it_server_t *s, const char *needle, int timeout_ms);

/* The upstream stub ($HOTPATH_UPSTREAM_BIN, default build/hotpath-upstream):
 * --port 0 plus extra_args; the port comes from its "listening on" line. */
int hp_it_upstream_start(hp_it_server_t *s, const char *const *extra_args);
int hp_it_upstream_stop(hp_it_server_t *s);

/* What most tests that go upstream run: the stub (--delay-ms delay_ms,
 * then stub_args, which may be NULL), then hotpath in front of it with
 *   {"upstream": {"port": <the stub's>, <upstream>}, <rest>}
 * where upstream and rest are JSON members without braces (NULL or "" for
 * none), and server_args as hp_it_server_start takes them. Returns 0, or
 * -1 with a message (nothing is left running then). */
int hp_it_start_behind_stub(hp_it_server_t *server, hp_it_server_t *stub, int delay_ms,
                            const char *const *stub_args, const char *upstream, const char *rest,
                            const char *const *server_args);

/* The Kestrel twin ($KESTREL_BIN, default build/kestrel/hotpath-kestrel):
 * config_json (NULL: "{}") written to a temp file, then --config FILE
 * --port 0 and extra_args; the port comes from its "hotpath-kestrel
 * listening on" line. Stop it with hp_it_server_stop. */
int hp_it_twin_start(hp_it_server_t *s, const char *config_json, const char *const *extra_args);

/* The binaries under test (from the environment, or the defaults). */
const char *hp_it_bin(void);
const char *hp_it_upstream_bin(void);
const char *hp_it_twin_bin(void);

/* A path for a file of the test's own in the per-run temp directory, which
 * is removed at exit. Returns buf. */
char *hp_it_temp_path(char *buf, size_t len, const char *name);

/* Run a program to completion, at most timeout_ms (then SIGKILL).
 * stdin_data may be NULL (stdin is /dev/null). */
typedef struct {
    int status; /* exit code, 128 + signal, or -1 when killed for time */
    char *out;  /* owned, NUL-terminated */
    char *err;  /* owned, NUL-terminated */
} hp_it_output_t;

int hp_it_exec(const char *const *argv, const char *stdin_data, size_t stdin_len, int timeout_ms,
               hp_it_output_t *out);
/* hotpath itself: [--config FILE, when config_json is not NULL] then args. */
int hp_it_run(const char *config_json, const char *const *args, hp_it_output_t *out);
void hp_it_output_free(hp_it_output_t *out);

/* --- client -------------------------------------------------------------- */

typedef struct {
    char *name;
    char *value;
} hp_it_header_t;

#define HP_IT_MAX_HEADERS 32

typedef struct {
    int status;
    int http_major, http_minor;
    hp_it_header_t headers[HP_IT_MAX_HEADERS];
    size_t nheaders;
    char *body; /* de-chunked, NUL-terminated (never NULL after a read) */
    size_t body_len;
    char *raw; /* the response's bytes as received, NUL-terminated */
    size_t raw_len;
    bool chunked;    /* sent with Transfer-Encoding: chunked */
    bool keep_alive; /* llhttp_should_keep_alive at the message's end */
    bool closed;     /* the server closed the connection after it (see read) */
} hp_it_resp_t;

typedef struct {
    int fd;
    llhttp_t parser;
    llhttp_settings_t settings;
    char *in; /* received, not yet parsed */
    size_t in_len, in_cap;
    bool eof;   /* the peer closed (or reset) */
    bool reset; /* ... with a reset */
    /* The response being parsed, and what the callbacks need for it. */
    hp_it_resp_t *cur;
    bool head;
    bool done;
    bool in_value;
} hp_it_client_t;

/* A loopback port that was free a moment ago: bound, never listened on,
 * then closed, so nothing answers there until someone binds it (a dead
 * upstream, or the port a test then gives a child process). -errno on
 * failure. */
int hp_it_unused_port(void);

/* Connect to 127.0.0.1:port (TCP_NODELAY). Returns 0 or -errno. */
int hp_it_client_open(hp_it_client_t *c, int port);
/* The same with SO_RCVBUF set to rcvbuf bytes (0: the default), which also
 * turns off receive autotuning: a slow reader with a small window. */
int hp_it_client_open_rcvbuf(hp_it_client_t *c, int port, int rcvbuf);
void hp_it_client_close(hp_it_client_t *c);

/* Send all of data, bounded by HP_IT_TIMEOUT_MS. Returns 0 or -errno. */
int hp_it_client_send(hp_it_client_t *c, const void *data, size_t len);
int hp_it_client_sendf(hp_it_client_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Send data in pieces, cut at the given offsets (ascending, each in
 * (0, len)), pausing pause_us between pieces so they leave as separate
 * segments. */
int hp_it_client_send_split(hp_it_client_t *c, const void *data, size_t len, const size_t *cuts,
                            size_t ncuts, unsigned pause_us);

/* Read one response (the next in order), bounded by HP_IT_TIMEOUT_MS.
 * head: it answers a HEAD request (no body follows the headers). When the
 * response does not keep the connection alive, also wait (bounded) for the
 * server to close, and set resp->closed; otherwise closed says whether the
 * close had already arrived. Returns 0, or -1 with a message on stderr
 * (timeout, EOF before the end, a parse error). resp is reset first; free
 * it with hp_it_resp_free either way. */
int hp_it_client_read(hp_it_client_t *c, hp_it_resp_t *resp, bool head);

/* Send "METHOD target HTTP/1.1" with Host and extra_headers (NULL or whole
 * "Name: value\r\n" lines) and no body, and read its response. */
int hp_it_client_request(hp_it_client_t *c, const char *method, const char *target,
                         const char *extra_headers, hp_it_resp_t *resp);

/* Wait up to timeout_ms for the server to close the connection. True when it
 * did (EOF or reset) and sent nothing more; false on timeout or data. */
bool hp_it_client_wait_eof(hp_it_client_t *c, int timeout_ms);

/* True when, for wait_ms, the connection neither closed nor got data. */
bool hp_it_client_still_open(hp_it_client_t *c, int wait_ms);

void hp_it_resp_free(hp_it_resp_t *resp);

/* The first header of that name (case-insensitive), or NULL; how many. */
const char *hp_it_header(const hp_it_resp_t *resp, const char *name);
size_t hp_it_header_count(const hp_it_resp_t *resp, const char *name);

/* One GET on a fresh connection (closed afterwards). Returns 0 or -1. */
int hp_it_get(int port, const char *target, hp_it_resp_t *resp);

/* Returns owned (cJSON_Delete): /stats parsed, or NULL with a message. */
cJSON *hp_it_stats(int port);

/* The item at a path of keys separated by '|' (route names hold '/' and
 * '.'), e.g. "routes|/plaintext|task|allocations"; NULL when absent. */
const cJSON *hp_it_json_at(const cJSON *root, const char *path);
/* Its number; def when the item is absent. Only for figures that may
 * legitimately be absent: the server's /stats lists every figure, zeros
 * included, and assertions read it with hp_it_json_get (fixture.h), which
 * fails the test on a missing key instead of reading a zero. A present
 * item that is not a number is a harness failure (-1e300). */
double hp_it_json_num(const cJSON *root, const char *path, double def);

/* Every main() ends with return hp_it_result(cmocka_run_group_tests(...)).
 * cmocka leaves what a failed test had allocated behind (an assertion jumps
 * out of it), so a failed run skips the test binary's own leak check, which
 * would bury the failure under its reports; a passing run keeps it. */
int hp_it_result(int cmocka_failed);

/* Monotonic milliseconds. */
long long hp_it_now_ms(void);
void hp_it_sleep_ms(int ms);

#endif
