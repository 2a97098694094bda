/*
 * load.c - build/hotpath-load, the open-loop, fixed-rate HTTP/1.1 load
 * generator of the threshold sweep.
 *
 * wrk is a closed-loop tool: each connection sends its next request when the
 * previous answer arrives, so a server that stalls for 10 ms simply receives
 * fewer requests during those 10 ms and the stall hides from the latency
 * figures ("coordinated omission"). A fixed-rate sweep needs the opposite:
 * request i is *due* at t0 + i / rate whatever the server does, and its
 * latency runs from that intended time to the end of its answer. A server
 * that falls behind then shows it in every later request, as real users
 * would see it.
 *
 * How it works: one thread, one libuv loop (this tool runs pinned on its own
 * CPU). A periodic Linux timerfd on CLOCK_MONOTONIC, watched by a uv_poll,
 * ticks on the schedule's own grid (request i is due at t0 + i * period,
 * period = 1/rate in whole nanoseconds): every request at rates up to 40k
 * req/s, every 25 us or so above, so a tick then sends a few. libuv's own
 * timers tick in milliseconds, which would add up to 1 ms of invented
 * latency at low rates; spinning would burn the CPU the upstream stub shares
 * with us; and every wake costs: on this project's 2-vCPU VM a tick every
 * 10 us took ~94% of the generator's CPU at 50k req/s, every 50 us ~72%.
 * Each tick sends every request that is due by then: requests go
 * round-robin over the open connections and a connection's requests of one
 * tick leave in one write.
 * A connection still waiting for earlier answers simply pipelines the new
 * request behind them (HTTP/1.1 answers arrive in order, so a per-connection
 * FIFO of intended times pairs each answer with its request).
 *
 * --spin polls the loop without ever sleeping. Measured on this project's
 * 2-vCPU VM: a cross-CPU wake-up costs the waker ~20 us (perf: 60% of the
 * sleeping generator's CPU in the hypervisor's irq-enable, under
 * sock_def_readable), so at 10k req/s the sleeping generator used 47% of its
 * CPU and the server ~20 us per request, most of both spent waking the
 * other. Spinning, nobody has to wake the generator: it holds 120k req/s
 * with send lag p99 under 1 ms, and the server pays for its own work only,
 * as it would with clients on other machines. Its CPU share then reads
 * 100% by construction; whether it kept up is its send lag.
 *
 * Latencies go into a log-bucketed histogram in nanoseconds, HdrHistogram
 * style: 128 sub-buckets per power of two, so a reported percentile is
 * within 1/128 (0.8%) of the true value. A second histogram records how
 * late the generator itself sent each request (its "send lag"): if that
 * grows, the generator, not the server, is the bottleneck, and the output
 * says so, as does the share of its CPU it used.
 *
 * Timeline: connect all connections (at most 2 s), then warm-up (requests
 * sent, answers not recorded), then the measured window of --duration
 * seconds, then a drain of at most --drain seconds for the answers still
 * owed. An answer still missing at the end counts as a timeout *and* enters
 * the histogram at its latency so far - a lower bound, which is honest where
 * leaving it out would flatter a saturated server.
 *
 * Bounded by construction: requests are scheduled only inside the window,
 * and a timer ends the run after the drain. Loopback only: any --host
 * other than 127.0.0.1 or localhost is refused.
 *
 * Output: two phase lines as the run crosses into its measured window and
 * out of it ("HOTPATH_PHASE measure", "HOTPATH_PHASE drain", flushed at
 * once, so a runner reading the pipe can sample the server's CPU over
 * exactly that window), then one line, "HOTPATH_RESULT {json}", on stdout.
 * The generator's CPU share is its own over the measured window.
 */
#include "runtime/alloc.h"
#include "runtime/errors.h"

#include <errno.h>
#include <getopt.h>
#include <llhttp.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define PATH_MAX_LEN    4096          /* a request target this long is already silly */
#define CONNECT_WAIT_NS 2000000000ull /* connect phase bound: 2 s */
#define MAX_CONNECTIONS 10000         /* hotpath's default limits.max_connections */
#define MAX_RATE        5e6           /* far beyond what one core can parse; a typo guard */
#define MIN_TICK_NS     25000         /* above 40k req/s, a tick sends several requests */
#define READ_BUF        65536         /* one shared read buffer: every read is parsed at once */

/* --- histogram -------------------------------------------------------------- */

#define SUB_BITS   7
#define SUB_COUNT  (1u << SUB_BITS) /* 128 sub-buckets: 0.8% precision */
#define MAX_SHIFT  34               /* values up to 2^42 ns (73 minutes) */
#define HIST_SLOTS (2 * SUB_COUNT + MAX_SHIFT * SUB_COUNT)

typedef struct {
    uint64_t counts[HIST_SLOTS];
    uint64_t total; /* values recorded */
    uint64_t max;   /* exact, in ns */
    double sum;     /* for the mean, in ns */
} histo_t;

/* Values below 256 have a slot each; above, a value v with its top bit at
 * position m lands in power-of-two bucket m - 7, sub-bucket v >> (m - 7). */
static size_t histo_index(uint64_t v)
{
    if (v < 2 * SUB_COUNT) return (size_t)v;
    unsigned shift = 63 - (unsigned)__builtin_clzll(v) - SUB_BITS;
    if (shift > MAX_SHIFT) return HIST_SLOTS - 1;
    return 2 * SUB_COUNT + (shift - 1) * SUB_COUNT + (size_t)((v >> shift) - SUB_COUNT);
}

/* The largest value a slot holds (HdrHistogram's "highest equivalent"). */
static uint64_t histo_value(size_t i)
{
    if (i < 2 * SUB_COUNT) return i;
    unsigned shift = (unsigned)((i - 2 * SUB_COUNT) / SUB_COUNT) + 1;
    uint64_t sub = (i - 2 * SUB_COUNT) % SUB_COUNT + SUB_COUNT;
    return ((sub + 1) << shift) - 1;
}

static void histo_record(histo_t *h, uint64_t v)
{
    h->counts[histo_index(v)]++;
    h->total++;
    h->sum += (double)v;
    if (v > h->max) h->max = v;
}

/* The p-th percentile (0 < p <= 100) in ns; 0 for an empty histogram. */
static uint64_t histo_percentile(const histo_t *h, double p)
{
    if (h->total == 0) return 0;
    uint64_t want = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (want == 0) want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_SLOTS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = histo_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* --- the run -------------------------------------------------------------- */

/* CLOSED: no handle (closed, or never retried after a failed connect). */
enum { CONN_CONNECTING, CONN_OPEN, CONN_CLOSING, CONN_CLOSED };

struct load;

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    llhttp_t parser;
    struct load *ld;
    int state;
    bool was_open; /* connected once: a close after that reconnects */
    int status;    /* status code of the answer being parsed */
    uint64_t *due; /* ring: intended times of the requests in flight, oldest first */
    size_t head, count, cap;
    unsigned batch; /* requests queued this tick, written at its end */
} conn_t;

typedef struct {
    uv_write_t req;
    conn_t *c;
    char data[]; /* the request bytes, batch times over */
} wreq_t;

typedef struct {
    uint64_t connect, read, write, timeout, status, unsent;
} errors_t;

typedef struct load {
    /* options */
    int port;
    const char *path;
    double rate;
    unsigned nconns;
    double duration_s, warmup_s, drain_s;
    bool spin; /* busy-poll instead of sleeping in epoll_wait */

    uv_loop_t loop;
    struct sockaddr_in addr;
    char *request; /* "GET path HTTP/1.1\r\nHost: ...\r\n\r\n" */
    size_t request_len;
    conn_t *conns;
    conn_t **dirty; /* connections with a batch this tick */
    unsigned ndirty, rr, connected;
    llhttp_settings_t settings;
    char rbuf[READ_BUF];

    int tfd; /* the schedule's timerfd */
    uv_poll_t tick;
    uv_timer_t phase; /* connect-phase bound, then the drain bound */
    bool ticking, finished;

    uint64_t t_connect;          /* when the connect phase began */
    uint64_t t0, t_warm, t_stop; /* schedule start, measured window [t_warm, t_stop) */
    uint64_t period_ns;          /* between two requests: round(1e9 / rate) */
    uint64_t seq, next_due;
    uint64_t sent, completed, completed_in_window, in_flight, max_in_flight;
    bool measuring;                /* the window's start was announced */
    double cpu_warm, cpu_stop;     /* own CPU seconds at the window's edges */
    uint64_t wall_warm, wall_stop; /* and the clock there */
    histo_t latency, send_lag;
    errors_t err;
} load_t;

static load_t load_state; /* two 37 KB histograms and the read buffer: not on the stack */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* This process's CPU (user + system) so far, in seconds. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Announce a phase on stdout at once; the runner samples the server there. */
static void phase(const char *name, double *cpu, uint64_t *wall)
{
    *cpu = cpu_seconds();
    *wall = now_ns();
    printf("HOTPATH_PHASE %s\n", name);
    fflush(stdout);
}

/* Integer nanoseconds, so the timer's grid and the schedule coincide. */
static uint64_t due_at(const load_t *ld, uint64_t seq)
{
    return ld->t0 + seq * ld->period_ns;
}

static void conn_connect(conn_t *c);
static void run_finish(load_t *ld);

/* --- a connection's in-flight FIFO ---------------------------------------- */

static void fifo_push(conn_t *c, uint64_t due)
{
    if (c->count == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        uint64_t *d = hp_malloc(cap * sizeof(*d));
        for (size_t i = 0; i < c->count; i++)
            d[i] = c->due[(c->head + i) % c->cap];
        hp_free(c->due);
        c->due = d;
        c->head = 0;
        c->cap = cap;
    }
    c->due[(c->head + c->count) % c->cap] = due;
    c->count++;
}

static uint64_t fifo_pop(conn_t *c)
{
    uint64_t d = c->due[c->head];
    c->head = (c->head + 1) % c->cap;
    c->count--;
    return d;
}

/* An answer that will never come: counted under why, and - when the request
 * belongs to the measured window - recorded at its latency so far. */
static void lose_in_flight(conn_t *c, uint64_t *why)
{
    load_t *ld = c->ld;
    uint64_t now = now_ns();
    while (c->count) {
        uint64_t due = fifo_pop(c);
        ld->in_flight--;
        (*why)++;
        if (due >= ld->t_warm && due < ld->t_stop) histo_record(&ld->latency, now - due);
    }
}

/* --- connections ----------------------------------------------------------- */

/* A connection the server closed after serving it (idle timeout, an error
 * answer with Connection: close) reconnects while the schedule runs; one
 * that never connected does not, so a refusing server costs one error per
 * connection rather than a busy loop of retries. */
static void close_cb(uv_handle_t *h)
{
    conn_t *c = h->data;
    load_t *ld = c->ld;
    c->state = CONN_CLOSED;
    if (c->was_open && !ld->finished) conn_connect(c);
}

/* Close a connection, counting what it still owed under why; it reconnects
 * while the schedule runs. Never frees: connections live for the run. */
static void conn_fail(conn_t *c, uint64_t *why)
{
    if (c->state != CONN_OPEN) return;
    c->ld->connected--;
    c->state = CONN_CLOSING;
    c->batch = 0;
    lose_in_flight(c, why);
    uv_close((uv_handle_t *)&c->tcp, close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    *buf = uv_buf_init(c->ld->rbuf, sizeof(c->ld->rbuf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (nread > 0) {
        if (llhttp_execute(&c->parser, buf->base, (size_t)nread) != HPE_OK)
            conn_fail(c, &c->ld->err.read);
        return;
    }
    if (nread < 0) conn_fail(c, &c->ld->err.read); /* EOF or error: reconnects */
}

static int on_status_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    c->status = llhttp_get_status_code(p);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn_t *c = p->data;
    load_t *ld = c->ld;
    if (c->count == 0) return -1; /* an answer nobody asked for: protocol error */
    uint64_t now = now_ns();
    uint64_t due = fifo_pop(c);
    ld->in_flight--;
    ld->completed++;
    if (now >= ld->t_warm && now < ld->t_stop) ld->completed_in_window++;
    if (due >= ld->t_warm && due < ld->t_stop) {
        histo_record(&ld->latency, now - due);
        if (c->status < 200 || c->status > 299) ld->err.status++;
    }
    if (!ld->ticking && ld->in_flight == 0 && !ld->finished) run_finish(ld);
    return 0;
}

static void connect_cb(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    load_t *ld = c->ld;
    if (c->state != CONN_CONNECTING) return; /* closed by run_finish meanwhile */
    if (status < 0) {
        ld->err.connect++;
        c->state = CONN_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, close_cb);
        return;
    }
    llhttp_init(&c->parser, HTTP_RESPONSE, &ld->settings);
    c->parser.data = c;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
        ld->err.read++;
        c->state = CONN_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, close_cb);
        return;
    }
    c->state = CONN_OPEN;
    c->was_open = true;
    ld->connected++;
}

static void conn_connect(conn_t *c)
{
    load_t *ld = c->ld;
    c->state = CONN_CONNECTING;
    HP_MUST(uv_tcp_init(&ld->loop, &c->tcp)); /* no socket yet: it cannot fail */
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    c->connect_req.data = c;
    int rc =
        uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&ld->addr, connect_cb);
    if (rc != 0) {
        ld->err.connect++;
        c->state = CONN_CLOSING;
        c->was_open = false;
        uv_close((uv_handle_t *)&c->tcp, close_cb);
    }
}

/* --- sending --------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    if (status < 0 && status != UV_ECANCELED) conn_fail(w->c, &w->c->ld->err.write);
    hp_free(w);
}

static void conn_flush(conn_t *c)
{
    load_t *ld = c->ld;
    unsigned n = c->batch;
    c->batch = 0;
    wreq_t *w = hp_malloc(sizeof(*w) + (size_t)n * ld->request_len);
    w->c = c;
    for (unsigned i = 0; i < n; i++)
        memcpy(w->data + i * ld->request_len, ld->request, ld->request_len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)(n * ld->request_len));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
        hp_free(w);
        conn_fail(c, &ld->err.write);
    }
}

static conn_t *pick(load_t *ld)
{
    for (unsigned tries = 0; tries < ld->nconns; tries++) {
        conn_t *c = &ld->conns[ld->rr];
        ld->rr = (ld->rr + 1) % ld->nconns;
        if (c->state == CONN_OPEN) return c;
    }
    return NULL;
}

/* Tick from at (absolute), every period ns; period 0 with at 0 disarms. */
static void arm(load_t *ld, uint64_t at, uint64_t period)
{
    struct itimerspec its = {0};
    its.it_value.tv_sec = (time_t)(at / 1000000000ull);
    its.it_value.tv_nsec = (long)(at % 1000000000ull);
    its.it_interval.tv_sec = (time_t)(period / 1000000000ull);
    its.it_interval.tv_nsec = (long)(period % 1000000000ull);
    timerfd_settime(ld->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void drain_cb(uv_timer_t *t)
{
    run_finish(t->data);
}

/* One tick of the schedule: send everything due by now. */
static void tick_cb(uv_poll_t *h, int status, int events)
{
    load_t *ld = h->data;
    uint64_t expirations;
    if (read(ld->tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN) return;
    uint64_t now = now_ns();
    if (!ld->measuring && now >= ld->t_warm) {
        ld->measuring = true;
        phase("measure", &ld->cpu_warm, &ld->wall_warm);
    }
    while (ld->next_due <= now && ld->next_due < ld->t_stop) {
        conn_t *c = pick(ld);
        if (c) {
            fifo_push(c, ld->next_due);
            if (c->batch++ == 0) ld->dirty[ld->ndirty++] = c;
            ld->sent++;
            if (++ld->in_flight > ld->max_in_flight) ld->max_in_flight = ld->in_flight;
            if (ld->next_due >= ld->t_warm) histo_record(&ld->send_lag, now - ld->next_due);
        } else if (ld->next_due >= ld->t_warm) {
            ld->err.unsent++;
        }
        ld->next_due = due_at(ld, ++ld->seq);
    }
    for (unsigned i = 0; i < ld->ndirty; i++)
        if (ld->dirty[i]->state == CONN_OPEN && ld->dirty[i]->batch) conn_flush(ld->dirty[i]);
    ld->ndirty = 0;
    if (ld->next_due < ld->t_stop) return;
    phase("drain", &ld->cpu_stop, &ld->wall_stop);
    ld->ticking = false;
    arm(ld, 0, 0);
    uv_poll_stop(&ld->tick);
    if (ld->in_flight == 0) {
        run_finish(ld);
        return;
    }
    uv_timer_start(&ld->phase, drain_cb, (uint64_t)(ld->drain_s * 1000.0), 0);
}

/* Connected (or out of patience): fix the schedule and start it. */
static void schedule_start(load_t *ld)
{
    uv_timer_stop(&ld->phase);
    ld->t0 = now_ns() + 1000000; /* 1 ms from now */
    ld->t_warm = ld->t0 + (uint64_t)(ld->warmup_s * 1e9);
    ld->t_stop = ld->t_warm + (uint64_t)(ld->duration_s * 1e9);
    ld->seq = 0;
    ld->next_due = ld->t0;
    ld->ticking = true;
    uint64_t per_tick = (MIN_TICK_NS + ld->period_ns - 1) / ld->period_ns;
    arm(ld, ld->t0, ld->period_ns * per_tick);
    uv_poll_start(&ld->tick, UV_READABLE, tick_cb);
}

static void connect_wait_cb(uv_timer_t *t)
{
    load_t *ld = t->data;
    if (ld->connected == ld->nconns || now_ns() - ld->t_connect >= CONNECT_WAIT_NS)
        schedule_start(ld);
}

static void run_finish(load_t *ld)
{
    if (ld->finished) return;
    ld->finished = true;
    ld->ticking = false;
    uv_timer_stop(&ld->phase);
    uv_close((uv_handle_t *)&ld->phase, NULL);
    uv_poll_stop(&ld->tick);
    uv_close((uv_handle_t *)&ld->tick, NULL);
    for (unsigned i = 0; i < ld->nconns; i++) {
        conn_t *c = &ld->conns[i];
        lose_in_flight(c, &ld->err.timeout);
        /* Closing a connecting handle cancels its connect: connect_cb then
         * sees the state and returns. CLOSING and CLOSED ones need nothing. */
        if (c->state == CONN_OPEN || c->state == CONN_CONNECTING) {
            c->state = CONN_CLOSING;
            uv_close((uv_handle_t *)&c->tcp, NULL);
        }
    }
}

/* --- output ---------------------------------------------------------------- */

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

/* The share of one CPU this process used over the measured window: near
 * 1.0 the generator, not the server, sets the pace. */
static double cpu_share(const load_t *ld)
{
    if (!ld->measuring || ld->wall_stop <= ld->wall_warm) return 0;
    return (ld->cpu_stop - ld->cpu_warm) / ((double)(ld->wall_stop - ld->wall_warm) / 1e9);
}

static void print_result(const load_t *ld)
{
    const histo_t *h = &ld->latency;
    printf("HOTPATH_RESULT {\"tool\":\"hotpath-load\",\"path\":\"%s\",\"connections\":%u,"
           "\"duration_s\":%.3f,\"warmup_s\":%.3f,\"offered_rps\":%.1f,\"achieved_rps\":%.1f,"
           "\"sent\":%llu,\"completed\":%llu,\"recorded\":%llu,\"max_in_flight\":%llu,"
           "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p99_9\":%.1f,"
           "\"max\":%.1f,\"mean\":%.1f},"
           "\"send_lag_us\":{\"p50\":%.1f,\"p99\":%.1f,\"max\":%.1f},\"generator_cpu_share\":%.3f,"
           "\"errors\":{\"connect\":%llu,\"read\":%llu,\"write\":%llu,\"timeout\":%llu,"
           "\"status\":%llu,\"unsent\":%llu}}\n",
           ld->path, ld->nconns, ld->duration_s, ld->warmup_s, 1e9 / (double)ld->period_ns,
           (double)ld->completed_in_window / ld->duration_s, (unsigned long long)ld->sent,
           (unsigned long long)ld->completed, (unsigned long long)h->total,
           (unsigned long long)ld->max_in_flight, us(histo_percentile(h, 50)),
           us(histo_percentile(h, 90)), us(histo_percentile(h, 99)), us(histo_percentile(h, 99.9)),
           us(h->max), h->total ? h->sum / (double)h->total / 1e3 : 0,
           us(histo_percentile(&ld->send_lag, 50)), us(histo_percentile(&ld->send_lag, 99)),
           us(ld->send_lag.max), cpu_share(ld), (unsigned long long)ld->err.connect,
           (unsigned long long)ld->err.read, (unsigned long long)ld->err.write,
           (unsigned long long)ld->err.timeout, (unsigned long long)ld->err.status,
           (unsigned long long)ld->err.unsent);
    fflush(stdout);
}

/* --- process --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: hotpath-load --port N --rate R [options]\n"
               "Open-loop, fixed-rate HTTP/1.1 GETs against 127.0.0.1; latency from each\n"
               "request's intended send time (no coordinated omission).\n"
               "  --host H          127.0.0.1 or localhost only (default 127.0.0.1)\n"
               "  --port N          target port (required)\n"
               "  --path P          request target (default /plaintext)\n"
               "  --rate R          requests per second, all connections together (required)\n"
               "  --connections C   connections, requests round-robin over them (default 64)\n"
               "  --duration S      measured seconds (default 10)\n"
               "  --warmup S        seconds sent but not recorded, before (default 2)\n"
               "  --drain S         at most this long for owed answers, after (default 2)\n"
               "  --spin            busy-poll instead of sleeping between events (a whole\n"
               "                    CPU, but no wake-up costs on either side)\n"
               "  --help            this text\n"
               "Prints one line: HOTPATH_RESULT {json} (rates, latency percentiles in us,\n"
               "the generator's own send lag, errors).\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static bool path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > PATH_MAX_LEN || p[0] != '/') return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f) return false;
    return true;
}

static int parse_args(int argc, char **argv, load_t *ld)
{
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"path", required_argument, NULL, 'P'},
        {"rate", required_argument, NULL, 'r'},
        {"connections", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"drain", required_argument, NULL, 'D'},
        {"spin", no_argument, NULL, 's'},
        {"help", no_argument, NULL, '?' + 256},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    double v;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'h': host = optarg; break;
        case 'p':
            if (!parse_num(optarg, 1, 65535, &v) || v != floor(v)) goto bad;
            ld->port = (int)v;
            break;
        case 'P':
            if (!path_ok(optarg)) goto bad;
            ld->path = optarg;
            break;
        case 'r':
            if (!parse_num(optarg, 1, MAX_RATE, &ld->rate)) goto bad;
            break;
        case 'c':
            if (!parse_num(optarg, 1, MAX_CONNECTIONS, &v) || v != floor(v)) goto bad;
            ld->nconns = (unsigned)v;
            break;
        case 'd':
            if (!parse_num(optarg, 0.1, 3600, &ld->duration_s)) goto bad;
            break;
        case 'w':
            if (!parse_num(optarg, 0, 3600, &ld->warmup_s)) goto bad;
            break;
        case 'D':
            if (!parse_num(optarg, 0, 60, &ld->drain_s)) goto bad;
            break;
        case 's': ld->spin = true; break;
        case '?' + 256: usage(stdout); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "hotpath-load: unexpected argument: %s\n", argv[optind]);
        return 2;
    }
    if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "localhost") != 0) {
        fprintf(stderr, "hotpath-load: refusing host %s: loopback (127.0.0.1) only\n", host);
        return 2;
    }
    if (ld->port == 0 || ld->rate == 0) {
        fprintf(stderr, "hotpath-load: --port and --rate are required\n");
        usage(stderr);
        return 2;
    }
    return 0;
bad:
    fprintf(stderr, "hotpath-load: bad value for --%s: %s\n", argv[optind - 1] + 2, optarg);
    return 2;
}

int main(int argc, char **argv)
{
    hp_alloc_install();
    signal(SIGPIPE, SIG_IGN);
    load_t *ld = &load_state;
    ld->path = "/plaintext";
    ld->nconns = 64;
    ld->duration_s = 10;
    ld->warmup_s = 2;
    ld->drain_s = 2;
    int rc = parse_args(argc, argv, ld);
    if (rc) return rc;

    /* Wake-ups at the nanosecond we ask for, not up to 50 us later. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    ld->period_ns = (uint64_t)llround(1e9 / ld->rate);
    if (ld->period_ns == 0) ld->period_ns = 1;
    uv_ip4_addr("127.0.0.1", ld->port, &ld->addr);
    char req[PATH_MAX_LEN + 128];
    ld->request_len = (size_t)snprintf(
        req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", ld->path, ld->port);
    ld->request = req;

    llhttp_settings_init(&ld->settings);
    ld->settings.on_status_complete = on_status_complete;
    ld->settings.on_message_complete = on_message_complete;

    rc = uv_loop_init(&ld->loop);
    if (rc < 0) {
        fprintf(stderr, "hotpath-load: uv_loop_init: %s\n", uv_strerror(rc));
        return 1;
    }
    ld->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ld->tfd < 0) {
        perror("hotpath-load: timerfd_create");
        return 1;
    }
    rc = uv_poll_init(&ld->loop, &ld->tick, ld->tfd);
    if (rc < 0) {
        fprintf(stderr, "hotpath-load: uv_poll_init: %s\n", uv_strerror(rc));
        return 1;
    }
    ld->tick.data = ld;
    HP_MUST(uv_timer_init(&ld->loop, &ld->phase));
    ld->phase.data = ld;

    ld->conns = hp_calloc(ld->nconns, sizeof(*ld->conns));
    ld->dirty = hp_calloc(ld->nconns, sizeof(*ld->dirty));
    for (unsigned i = 0; i < ld->nconns; i++) {
        ld->conns[i].ld = ld;
        conn_connect(&ld->conns[i]);
    }
    /* Poll every millisecond until every connection is open or 2 s passed. */
    ld->t_connect = now_ns();
    uv_timer_start(&ld->phase, connect_wait_cb, 1, 1);
    /* --spin: poll without sleeping, so an answer never has to wake us. */
    if (ld->spin)
        while (uv_run(&ld->loop, UV_RUN_NOWAIT) != 0)
            continue;
    else
        uv_run(&ld->loop, UV_RUN_DEFAULT);

    rc = uv_loop_close(&ld->loop);
    close(ld->tfd);
    print_result(ld);
    for (unsigned i = 0; i < ld->nconns; i++)
        hp_free(ld->conns[i].due);
    hp_free(ld->conns);
    hp_free(ld->dirty);
    if (rc != 0) fprintf(stderr, "hotpath-load: loop not clean at exit: %s\n", uv_strerror(rc));
    return 0;
}
