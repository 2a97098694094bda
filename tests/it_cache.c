/*
 * it_cache.c - integration tests for GET /cache/{key}: the real server, one
 * worker, in front of the real upstream stub, both on ephemeral loopback
 * ports, spoken to over sockets.
 *
 * Each test starts its own stub and server (the cache's counters, its table
 * and its clock then start from nothing, which the exact figures below rely
 * on) and stops both asserting exit status 0: under the sanitizer build a
 * leak check of each after its scenario.
 *
 * The stub's own counters (/_stats: "items" counts every /items request it
 * received) say how many fills reached the upstream; its items carry
 * "served": n, the running count, so a body says which fetch produced it.
 * Settings change live through POST /_control.
 *
 * What is checked: hit after miss (GET and HEAD), single-flight under 50
 * concurrent misses, TTL expiry, eviction under a 4 KiB bound,
 * stale-while-revalidate, upstream errors not cached, pipelined answers in
 * order behind a slow upstream request, and the allocations per hit, per
 * miss and per /upstream request in both modes, from /stats route deltas.
 * And what a client that leaves does to a fill (issue #12): a fill others
 * share goes on; one nobody waits for any more is dropped while still
 * queued, and completes into the cache once sent.
 */
#include "tests/support/fixture.h"

#include "runtime/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef hp_it_fixture_t fixture_t;

/* A stub answering after delay_ms, and hotpath (one worker, mode) whose
 * upstream is that stub; cache and upstream are JSON members (without
 * braces, may be "") added to those config sections. */
static fixture_t *start(void **state, int delay_ms, const char *cache, const char *upstream,
                        const char *mode)
{
    fixture_t *f = hp_it_fixture_new(state);
    char rest[1024];
    /* A short drain: a test that fails midway leaves connections open. */
    snprintf(rest, sizeof(rest), "\"cache\": {%s}, \"limits\": {\"drain_timeout_ms\": 1000}",
             cache);
    const char *args[] = {"--mode", mode, NULL};
    hp_it_fixture_start_behind_stub(f, delay_ms, NULL, upstream, rest, args);
    return f;
}

/* --- the stub ------------------------------------------------------------ */

static cJSON *stub_stats(fixture_t *f)
{
    hp_it_resp_t r;
    assert_int_equal(hp_it_get(f->stub.port, "/_stats", &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *root = cJSON_ParseWithLength(r.body, r.body_len);
    hp_it_resp_free(&r);
    assert_non_null(root);
    return root;
}

/* /items requests the stub has received. */
static int stub_items(fixture_t *f)
{
    cJSON *s = stub_stats(f);
    double n = hp_it_json_get(s, "items");
    cJSON_Delete(s);
    assert_true(n >= 0);
    return (int)n;
}

/* The stub's answer for /items/{key} when it was its served-th item. */
static char *item_body(char *buf, size_t len, const char *key, int served)
{
    uint32_t h = 2166136261u; /* FNV-1a, as the stub */
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    snprintf(buf, len, "{\"key\":\"%s\",\"value\":\"value-of-%s-%08x\",\"served\":%d}", key, key, h,
             served);
    return buf;
}

/* --- the server ---------------------------------------------------------- */

static double delta(const cJSON *a, const cJSON *b, const char *path)
{
    return hp_it_json_get(b, path) - hp_it_json_get(a, path);
}

/* GET (or HEAD) /cache/{key} on c; checks status and X-Cache; returns the
 * milliseconds it took. */
static long long cache_req(hp_it_client_t *c, const char *method, const char *key, int status,
                           const char *xcache, hp_it_resp_t *r)
{
    char target[300];
    snprintf(target, sizeof(target), "/cache/%s", key);
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_client_request(c, method, target, NULL, r), 0);
    long long ms = hp_it_now_ms() - t0;
    if (r->status != status || hp_it_header(r, "X-Cache") == NULL ||
        strcmp(hp_it_header(r, "X-Cache"), xcache) != 0)
        fprintf(stderr, "%s %s: status %d X-Cache %s (expected %d %s), body \"%s\"\n", method,
                target, r->status, hp_it_header(r, "X-Cache") ? hp_it_header(r, "X-Cache") : "-",
                status, xcache, r->body);
    assert_int_equal(r->status, status);
    assert_non_null(hp_it_header(r, "X-Cache"));
    assert_string_equal(hp_it_header(r, "X-Cache"), xcache);
    assert_int_equal(hp_it_header_count(r, "X-Cache"), 1);
    return ms;
}

/* A 200 of /items/{key} from its served-th fetch, with the given X-Cache. */
static void expect_item(hp_it_client_t *c, const char *key, const char *xcache, int served)
{
    hp_it_resp_t r;
    char body[512];
    cache_req(c, "GET", key, 200, xcache, &r);
    assert_string_equal(r.body, item_body(body, sizeof(body), key, served));
    assert_string_equal(hp_it_header(&r, "Content-Type"), "application/json");
    hp_it_resp_free(&r);
}

/* --- hit and miss ---------------------------------------------------------- */

static void miss_then_hit_and_head(void **state)
{
    fixture_t *f = start(state, 20, "", "", "valuetask");
    hp_it_client_t c;
    hp_it_resp_t r;
    char body[512];
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    int items = stub_items(f);

    expect_item(&c, "k", "miss", items + 1);
    assert_int_equal(stub_items(f), items + 1);
    expect_item(&c, "k", "hit", items + 1);
    expect_item(&c, "k", "hit", items + 1);
    assert_int_equal(stub_items(f), items + 1);

    /* HEAD of a hit: the GET's headers, no body. */
    cache_req(&c, "HEAD", "k", 200, "hit", &r);
    item_body(body, sizeof(body), "k", items + 1);
    char len[16];
    snprintf(len, sizeof(len), "%zu", strlen(body));
    assert_string_equal(hp_it_header(&r, "Content-Length"), len);
    assert_string_equal(hp_it_header(&r, "Content-Type"), "application/json");
    assert_string_equal(hp_it_header(&r, "Server"), "hotpath");
    assert_int_equal(r.body_len, 0);
    hp_it_resp_free(&r);

    /* HEAD of a miss fills the cache like a GET. */
    cache_req(&c, "HEAD", "h", 200, "miss", &r);
    item_body(body, sizeof(body), "h", items + 2);
    snprintf(len, sizeof(len), "%zu", strlen(body));
    assert_string_equal(hp_it_header(&r, "Content-Length"), len);
    assert_int_equal(r.body_len, 0);
    hp_it_resp_free(&r);
    expect_item(&c, "h", "hit", items + 2);
    /* The connection is still usable after the bodiless answers. */
    expect_item(&c, "k", "hit", items + 1);
    assert_int_equal(stub_items(f), items + 2);

    cJSON *s = hp_it_stats(f->server.port);
    assert_non_null(s);
    assert_int_equal(hp_it_json_get(s, "cache|misses"), 2);
    assert_int_equal(hp_it_json_get(s, "cache|hits"), 5);
    assert_int_equal(hp_it_json_get(s, "cache|fills"), 2);
    assert_int_equal(hp_it_json_get(s, "cache|entries"), 2);
    assert_int_equal(hp_it_json_get(s, "routes|/cache/|valuetask|requests"), 7);
    assert_int_equal(hp_it_json_get(s, "routes|/cache/|valuetask|status|2xx"), 7);
    cJSON_Delete(s);

    /* A key must be one non-empty path segment. */
    assert_int_equal(hp_it_client_request(&c, "GET", "/cache/", NULL, &r), 0);
    assert_int_equal(r.status, 400);
    hp_it_resp_free(&r);
    assert_int_equal(hp_it_client_request(&c, "GET", "/cache/a/b", NULL, &r), 0);
    assert_int_equal(r.status, 400);
    hp_it_resp_free(&r);
    assert_int_equal(stub_items(f), items + 2);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

/* --- single flight ------------------------------------------------------ */

#define CONCURRENT 50

static void concurrent_misses_share_one_fill(void **state)
{
    /* 300 ms: every request arrives while the first one's fill runs. */
    fixture_t *f = start(state, 300, "", "", "valuetask");
    static hp_it_client_t c[CONCURRENT];
    for (int i = 0; i < CONCURRENT; i++)
        assert_int_equal(hp_it_client_open(&c[i], f->server.port), 0);
    int items = stub_items(f);
    cJSON *before = hp_it_stats(f->server.port);
    assert_non_null(before);

    long long t0 = hp_it_now_ms();
    for (int i = 0; i < CONCURRENT; i++)
        assert_int_equal(
            hp_it_client_sendf(&c[i], "GET /cache/together HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            0);
    int miss = 0, coalesced = 0;
    char body[512];
    item_body(body, sizeof(body), "together", items + 1);
    for (int i = 0; i < CONCURRENT; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_read(&c[i], &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, body);
        const char *x = hp_it_header(&r, "X-Cache");
        assert_non_null(x);
        miss += strcmp(x, "miss") == 0;
        coalesced += strcmp(x, "coalesced") == 0;
        hp_it_resp_free(&r);
    }
    long long ms = hp_it_now_ms() - t0;
    for (int i = 0; i < CONCURRENT; i++)
        hp_it_client_close(&c[i]);

    cJSON *after = hp_it_stats(f->server.port);
    assert_non_null(after);
    printf("it_cache: %d concurrent misses in %lld ms: %d miss, %d coalesced, %d upstream "
           "fetch(es)\n",
           CONCURRENT, ms, miss, coalesced, stub_items(f) - items);
    assert_int_equal(miss, 1);
    assert_int_equal(coalesced, CONCURRENT - 1);
    assert_int_equal(stub_items(f), items + 1);
    assert_int_equal(delta(before, after, "cache|misses"), 1);
    assert_int_equal(delta(before, after, "cache|coalesced"), CONCURRENT - 1);
    assert_int_equal(delta(before, after, "cache|fills"), 1);
    assert_int_equal(delta(before, after, "upstream|requests"), 1);
    assert_int_equal(delta(before, after, "routes|/cache/|valuetask|requests"), CONCURRENT);
    /* One task, many waiters: the cache's own continuation and the 50
     * requests'. The first sits in the task; the rest in an array that
     * grows at the 2nd, 4th, 6th, 10th, 18th and 34th waiter. */
    assert_int_equal(delta(before, after, "runtime|task_waiters"), CONCURRENT + 1);
    assert_int_equal(delta(before, after, "runtime|task_waiter_allocations"), 6);
    /* And the whole batch allocated what one miss does (entry, upstream
     * request, task, buffer; plus the pool's first connection, this
     * server's first upstream call) and those 6 array growths: 11. The
     * 49 coalesced requests themselves allocate nothing else. */
    assert_int_equal(delta(before, after, "upstream|pool|connections_opened"), 1);
    assert_int_equal(delta(before, after, "routes|/cache/|valuetask|allocations"), 4 + 1 + 6);
    assert_true(ms >= 250); /* all of them waited for the one fetch */
    cJSON_Delete(before);
    cJSON_Delete(after);

    /* And then it is a plain hit. */
    hp_it_client_t one;
    assert_int_equal(hp_it_client_open(&one, f->server.port), 0);
    expect_item(&one, "together", "hit", items + 1);
    hp_it_client_close(&one);
    hp_it_fixture_stop(f);
}

/* --- expiry and eviction ----------------------------------------------- */

#define TTL_MS 300

static void value_expires_after_ttl(void **state)
{
    char cache[128];
    snprintf(cache, sizeof(cache), "\"ttl_ms\": %d, \"stale_ms\": 0", TTL_MS);
    fixture_t *f = start(state, 0, cache, "", "valuetask");
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    int items = stub_items(f);
    long long t0 = hp_it_now_ms();
    expect_item(&c, "t", "miss", items + 1);
    expect_item(&c, "t", "hit", items + 1);
    /* A hit needs the value younger than the TTL: only meaningful if the
     * two requests above took less. */
    assert_true(hp_it_now_ms() - t0 < TTL_MS);
    hp_it_sleep_ms(TTL_MS + 150);
    expect_item(&c, "t", "miss", items + 2);
    assert_int_equal(stub_items(f), items + 2);
    expect_item(&c, "t", "hit", items + 2);
    assert_int_equal(hp_it_stat(f->server.port, "cache|expirations"), 1);
    assert_int_equal(hp_it_stat(f->server.port, "cache|stale"), 0);
    assert_int_equal(hp_it_stat(f->server.port, "cache|misses"), 2);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

#define EVICT_KEYS 60

static void eviction_keeps_the_memory_bound(void **state)
{
    fixture_t *f = start(state, 0, "\"max_bytes\": 4096", "", "valuetask");
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    int items = stub_items(f);
    double first_cost = 0;
    for (int i = 0; i < EVICT_KEYS; i++) {
        char key[16];
        snprintf(key, sizeof(key), "ev-%02d", i);
        expect_item(&c, key, "miss", items + 1 + i);
        cJSON *s = hp_it_stats(f->server.port);
        assert_non_null(s);
        double bytes = hp_it_json_get(s, "cache|bytes");
        assert_int_equal(hp_it_json_get(s, "cache|max_bytes"), 4096);
        if (bytes > 4096) fprintf(stderr, "after %s: cache.bytes %.0f > 4096\n", key, bytes);
        assert_true(bytes > 0 && bytes <= 4096);
        if (i == 0) first_cost = bytes;
        cJSON_Delete(s);
    }
    cJSON *s = hp_it_stats(f->server.port);
    assert_non_null(s);
    double entries = hp_it_json_get(s, "cache|entries");
    double evictions = hp_it_json_get(s, "cache|evictions");
    printf("it_cache: %d keys under max_bytes 4096 (one entry: %.0f bytes): %.0f resident, %.0f "
           "evicted, %.0f bytes\n",
           EVICT_KEYS, first_cost, entries, evictions, hp_it_json_get(s, "cache|bytes"));
    assert_true(evictions > 0);
    assert_int_equal(entries + evictions, EVICT_KEYS); /* nothing expired, nothing lost */
    assert_int_equal(hp_it_json_get(s, "cache|expirations"), 0);
    assert_int_equal(hp_it_json_get(s, "cache|misses"), EVICT_KEYS);
    /* Bodies grow by a digit past served 9, so later entries cost a byte
     * more than the first; none fits twice. */
    assert_true(entries <= 4096 / first_cost);
    cJSON_Delete(s);

    /* The newest key is resident; the oldest (never hit: first in line)
     * was evicted and misses again. */
    char key[16];
    snprintf(key, sizeof(key), "ev-%02d", EVICT_KEYS - 1);
    expect_item(&c, key, "hit", items + EVICT_KEYS);
    expect_item(&c, "ev-00", "miss", items + EVICT_KEYS + 1);
    assert_int_equal(stub_items(f), items + EVICT_KEYS + 1);
    assert_true(hp_it_stat(f->server.port, "cache|bytes") <= 4096);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

/* --- stale-while-revalidate -------------------------------------------- */

#define SWR_TTL_MS   1000
#define SWR_DELAY_MS 400 /* the refresh's upstream delay */
#define SWR_REQUESTS 10

static void stale_value_served_while_one_refresh_runs(void **state)
{
    char cache[128];
    snprintf(cache, sizeof(cache), "\"ttl_ms\": %d, \"stale_ms\": 5000", SWR_TTL_MS);
    fixture_t *f = start(state, 0, cache, "", "valuetask");
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    int items = stub_items(f);
    long long born = hp_it_now_ms();
    expect_item(&c, "s", "miss", items + 1);
    expect_item(&c, "s", "hit", items + 1);
    assert_true(hp_it_now_ms() - born < SWR_TTL_MS);

    char q[64];
    snprintf(q, sizeof(q), "delay_ms=%d", SWR_DELAY_MS);
    hp_it_stub_control(f->stub.port, q);
    hp_it_sleep_ms(SWR_TTL_MS + 150);

    cJSON *before = hp_it_stats(f->server.port);
    assert_non_null(before);
    long long t0 = hp_it_now_ms(), slowest = 0;
    for (int i = 0; i < SWR_REQUESTS; i++) {
        hp_it_resp_t r;
        char body[512];
        long long ms = cache_req(&c, "GET", "s", 200, "stale", &r);
        if (ms > slowest) slowest = ms;
        assert_string_equal(r.body, item_body(body, sizeof(body), "s", items + 1));
        hp_it_resp_free(&r);
    }
    long long total = hp_it_now_ms() - t0;
    printf("it_cache: %d stale answers in %lld ms (slowest %lld ms; the refresh takes %d ms)\n",
           SWR_REQUESTS, total, slowest, SWR_DELAY_MS);
    /* None of them waited for the refresh. */
    assert_true(total < SWR_DELAY_MS);

    /* Wait (bounded) for the refresh to complete. */
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    cJSON *after = NULL;
    for (;;) {
        after = hp_it_stats(f->server.port);
        assert_non_null(after);
        if (delta(before, after, "upstream|responses") >= 1 || hp_it_now_ms() > deadline) break;
        cJSON_Delete(after);
        hp_it_sleep_ms(20);
    }
    assert_int_equal(delta(before, after, "upstream|responses"), 1);
    assert_int_equal(delta(before, after, "upstream|requests"), 1);
    assert_int_equal(delta(before, after, "cache|stale"), SWR_REQUESTS);
    assert_int_equal(delta(before, after, "cache|refreshes"), 1);
    assert_int_equal(delta(before, after, "cache|fills"), 1);
    assert_int_equal(delta(before, after, "cache|misses"), 0);
    cJSON_Delete(before);
    cJSON_Delete(after);
    assert_int_equal(stub_items(f), items + 2);

    /* The refreshed value, fresh. */
    expect_item(&c, "s", "hit", items + 2);
    assert_int_equal(stub_items(f), items + 2);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

/* --- upstream errors ----------------------------------------------------- */

static void upstream_errors_are_not_cached(void **state)
{
    fixture_t *f = start(state, 0, "", "", "valuetask");
    hp_it_client_t c;
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    int items = stub_items(f);

    hp_it_stub_control(f->stub.port, "status=500&fail_rate=1");
    cache_req(&c, "GET", "x", 500, "miss", &r);
    assert_string_equal(r.body, "injected failure\n"); /* passed through */
    hp_it_resp_free(&r);
    /* Not stored: the next get misses and fetches again. */
    cache_req(&c, "GET", "x", 500, "miss", &r);
    hp_it_resp_free(&r);
    hp_it_stub_control(f->stub.port, "status=503");
    cache_req(&c, "GET", "x", 503, "miss", &r);
    assert_string_equal(r.body, "injected failure\n");
    hp_it_resp_free(&r);
    assert_int_equal(stub_items(f), items + 3);

    hp_it_stub_control(f->stub.port, "fail_rate=0");
    expect_item(&c, "x", "miss", items + 4);
    expect_item(&c, "x", "hit", items + 4);
    assert_int_equal(stub_items(f), items + 4);

    cJSON *s = hp_it_stats(f->server.port);
    assert_non_null(s);
    assert_int_equal(hp_it_json_get(s, "cache|fill_failures"), 3);
    assert_int_equal(hp_it_json_get(s, "cache|misses"), 4);
    assert_int_equal(hp_it_json_get(s, "cache|entries"), 1);
    assert_int_equal(hp_it_json_get(s, "routes|/cache/|valuetask|status|5xx"), 3);
    cJSON_Delete(s);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

/* --- pipelining ------------------------------------------------------------ */

#define SLOW_MS  150
#define HOT_HITS 5

static void pipelined_answers_keep_request_order(void **state)
{
    fixture_t *f = start(state, 0, "", "", "valuetask");
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, f->server.port), 0);
    int items = stub_items(f);
    expect_item(&c, "hot", "miss", items + 1);

    char q[32];
    snprintf(q, sizeof(q), "delay_ms=%d", SLOW_MS);
    hp_it_stub_control(f->stub.port, q);
    char batch[1024];
    size_t len = (size_t)snprintf(batch, sizeof(batch),
                                  "GET /upstream/items/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    for (int i = 0; i < HOT_HITS; i++)
        len += (size_t)snprintf(batch + len, sizeof(batch) - len,
                                "GET /cache/hot HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    long long t0 = hp_it_now_ms();
    assert_int_equal(hp_it_client_send(&c, batch, len), 0);

    hp_it_resp_t r;
    char body[512];
    assert_int_equal(hp_it_client_read(&c, &r, false), 0);
    long long first = hp_it_now_ms() - t0;
    assert_int_equal(r.status, 200);
    assert_null(hp_it_header(&r, "X-Cache"));
    assert_string_equal(r.body, item_body(body, sizeof(body), "slow", items + 2));
    hp_it_resp_free(&r);
    for (int i = 0; i < HOT_HITS; i++) {
        assert_int_equal(hp_it_client_read(&c, &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(hp_it_header(&r, "X-Cache"), "hit");
        assert_string_equal(r.body, item_body(body, sizeof(body), "hot", items + 1));
        hp_it_resp_free(&r);
    }
    long long all = hp_it_now_ms() - t0;
    printf("it_cache: pipelined slow upstream + %d hits: first answer after %lld ms, all after "
           "%lld ms (upstream delay %d ms)\n",
           HOT_HITS, first, all, SLOW_MS);
    /* The stub's timer may fire a little early against this clock. */
    assert_true(first >= SLOW_MS - 10);
    assert_int_equal(stub_items(f), items + 2);
    assert_int_equal(hp_it_stat(f->server.port, "cache|hits"), HOT_HITS);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

/* --- allocations per request ------------------------------------------- */

#define HITS     200
#define MISSES   10
#define UPSTREAM 50

/* n sequential GETs of target on c, each 200 with that X-Cache (NULL: no
 * check); returns the route's allocations over them, asserting it counted
 * exactly n requests. */
static double route_allocs(hp_it_client_t *c, int port, const char *mode, const char *route,
                           const char *const *targets, int n, const char *xcache)
{
    char path[128];
    cJSON *before = hp_it_stats(port);
    assert_non_null(before);
    for (int i = 0; i < n; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_request(c, "GET", targets[i], NULL, &r), 0);
        assert_int_equal(r.status, 200);
        if (xcache) assert_string_equal(hp_it_header(&r, "X-Cache"), xcache);
        hp_it_resp_free(&r);
    }
    cJSON *after = hp_it_stats(port);
    assert_non_null(after);
    snprintf(path, sizeof(path), "routes|%s|%s|requests", route, mode);
    assert_int_equal(delta(before, after, path), n);
    snprintf(path, sizeof(path), "routes|%s|%s|allocations", route, mode);
    double a = delta(before, after, path);
    cJSON_Delete(before);
    cJSON_Delete(after);
    return a;
}

/* Targets /cache/{prefix}{first..first+n-1}, in static storage. */
static const char *const *keys(const char *prefix, int first, int n)
{
    static char buf[HITS][64];
    static const char *ptrs[HITS];
    for (int i = 0; i < n; i++) {
        snprintf(buf[i], sizeof(buf[i]), "/cache/%s%d", prefix, first + i);
        ptrs[i] = buf[i];
    }
    return ptrs;
}

static const char *const *same(const char *target, int n)
{
    static const char *ptrs[HITS];
    for (int i = 0; i < n; i++)
        ptrs[i] = target;
    return ptrs;
}

typedef struct {
    double hit, miss, miss_growing, upstream;
} costs_t;

/* The cache's table starts at 16 buckets and doubles (one allocation) when
 * an entry is added to a table that holds 16 or more. So: one warm-up key,
 * MISSES keys that keep the count at 11 (no growth), then 6 more keys, the
 * 6th of which is the 17th entry and grows the table exactly once. */
static costs_t measure(fixture_t *f, const char *mode)
{
    costs_t k;
    hp_it_server_t *srv = &f->server;
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, srv->port), 0);
    /* Warm-up: the upstream pool's connection, the request context, the
     * buffers; the warm key is then the one the hits read. */
    route_allocs(&c, srv->port, mode, "/cache/", same("/cache/warm", 1), 1, "miss");
    route_allocs(&c, srv->port, mode, "/cache/", same("/cache/warm", 20), 20, "hit");
    route_allocs(&c, srv->port, mode, "/upstream/", same("/upstream/items/warm", 5), 5, NULL);

    k.hit = route_allocs(&c, srv->port, mode, "/cache/", same("/cache/warm", HITS), HITS, "hit");
    k.miss = route_allocs(&c, srv->port, mode, "/cache/", keys("m", 0, MISSES), MISSES, "miss");
    assert_int_equal(hp_it_stat(srv->port, "cache|entries"), 1 + MISSES);
    k.miss_growing = route_allocs(&c, srv->port, mode, "/cache/", keys("g", 0, 6), 6, "miss");
    assert_int_equal(hp_it_stat(srv->port, "cache|entries"), 17);
    k.upstream = route_allocs(&c, srv->port, mode, "/upstream/",
                              same("/upstream/items/u", UPSTREAM), UPSTREAM, NULL);
    printf("it_cache: %-9s allocations: hit %.3f/request (%d), miss %.3f/request (%d), "
           "6 misses growing the table %.0f, upstream %.3f/request (%d)\n",
           mode, k.hit / HITS, HITS, k.miss / MISSES, MISSES, k.miss_growing, k.upstream / UPSTREAM,
           UPSTREAM);
    hp_it_client_close(&c);
    return k;
}

static void allocations_per_request_in_both_modes(void **state)
{
    fixture_t *f = start(state, 0, "", "", "valuetask");
    costs_t v = measure(f, "valuetask");
    hp_it_fixture_stop(f);
    free(f);
    *state = NULL;
    f = start(state, 0, "", "", "task");
    costs_t t = measure(f, "task");
    hp_it_fixture_stop(f);
    /* A hit: nothing in valuetask mode; in task mode one heap task per
     * layer that returned a valuetask: 3 middleware, the handler, the
     * cache get. */
    assert_int_equal(v.hit, 0);
    assert_int_equal(t.hit, 5 * HITS);
    /* A miss: the entry, the upstream's request, task and buffer, and the
     * fill task's waiter array (the cache's continuation is its first
     * waiter, the handler's the second) are the same in both modes; task
     * mode adds the 4 layers that pend (3 middleware + handler) as heap
     * tasks instead of pooled sources. */
    assert_int_equal(t.miss - v.miss, 4 * MISSES);
    assert_int_equal(v.miss, 5 * MISSES);
    assert_int_equal(t.miss, 9 * MISSES);
    /* Six more, and the one table growth among them. */
    assert_int_equal(v.miss_growing, 6 * 5 + 1);
    assert_int_equal(t.miss_growing, 6 * 9 + 1);
    /* Upstream: the handler's own task in both modes; task mode adds the 3
     * middleware's heap tasks. */
    assert_int_equal(t.upstream - v.upstream, 3 * UPSTREAM);
    assert_int_equal(v.upstream, 4 * UPSTREAM);
    assert_int_equal(t.upstream, 7 * UPSTREAM);
}

/* --- clients that leave ------------------------------------------------ */

/* GET /cache/{key} on a fresh connection, without reading the answer. */
static void send_cache_get(hp_it_client_t *c, int port, const char *key)
{
    assert_int_equal(hp_it_client_open(c, port), 0);
    assert_int_equal(hp_it_client_sendf(c, "GET /cache/%s HTTP/1.1\r\nHost: h\r\n\r\n", key), 0);
}

static double wait_for(int port, const char *path, double want)
{
    long long deadline = hp_it_now_ms() + HP_IT_TIMEOUT_MS;
    double v;
    while ((v = hp_it_stat(port, path)) < want && hp_it_now_ms() < deadline)
        hp_it_sleep_ms(5);
    return v;
}

/* Three requests wait on one fill; the one that started it leaves. The
 * fill is not cancelled for the two still waiting: they get the value. */
static void a_shared_fill_outlives_a_waiter_that_leaves(void **state)
{
    fixture_t *f = start(state, 400, "", "", "valuetask");
    int port = f->server.port;
    hp_it_client_t c[3];
    for (int i = 0; i < 3; i++) {
        send_cache_get(&c[i], port, "shared");
        assert_int_equal(wait_for(port, "cache|misses", 1) + hp_it_stat(port, "cache|coalesced"),
                         i + 1);
    }
    hp_it_client_close(&c[0]);
    assert_int_equal(wait_for(port, "cache|waiters_left", 1), 1);
    for (int i = 1; i < 3; i++) {
        hp_it_resp_t r;
        assert_int_equal(hp_it_client_read(&c[i], &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(hp_it_header(&r, "X-Cache"), "coalesced");
        assert_non_null(strstr(r.body, "\"key\":\"shared\""));
        hp_it_resp_free(&r);
        hp_it_client_close(&c[i]);
    }
    assert_int_equal(hp_it_stat(port, "upstream|cancelled"), 0);
    assert_int_equal(hp_it_stat(port, "cache|entries"), 1);
    assert_int_equal(stub_items(f), 1);
    hp_it_fixture_stop(f);
}

/* The only waiter of a fill still queued (a stalled request holds the one
 * connection) leaves: the fill is dropped and never reaches the upstream.
 * The only waiter of a fill already sent leaves: the fill completes into
 * the cache, and the next request for the key is a hit. */
static void a_fill_nobody_waits_for_is_dropped_only_while_queued(void **state)
{
    fixture_t *f = start(state, 300, "", "\"pool_size\": 1", "valuetask");
    int port = f->server.port;
    hp_it_client_t hold, gone;
    assert_int_equal(hp_it_client_open(&hold, port), 0);
    assert_int_equal(
        hp_it_client_sendf(&hold, "GET /upstream/hold?delay_ms=1000 HTTP/1.1\r\nHost: h\r\n\r\n"),
        0);
    assert_int_equal(wait_for(port, "upstream|pool|busy", 1), 1);
    send_cache_get(&gone, port, "queued");
    assert_int_equal(wait_for(port, "upstream|pool|queued", 1), 1);
    hp_it_client_close(&gone);
    assert_int_equal(wait_for(port, "upstream|cancelled", 1), 1);
    assert_int_equal(wait_for(port, "cache|fill_failures", 1), 1);
    assert_int_equal(hp_it_stat(port, "cache|waiters_left"), 1);
    assert_int_equal(hp_it_stat(port, "cache|pending_fills"), 0);
    assert_int_equal(hp_it_stat(port, "upstream|pool|busy"), 1); /* the hold, untouched */
    hp_it_resp_t r;
    assert_int_equal(hp_it_client_read(&hold, &r, false), 0);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    hp_it_client_close(&hold);
    assert_int_equal(stub_items(f), 0); /* /items/queued never went out */

    send_cache_get(&gone, port, "sent");
    assert_int_equal(wait_for(port, "upstream|pool|busy", 1), 1);
    hp_it_client_close(&gone);
    assert_int_equal(wait_for(port, "cache|waiters_left", 2), 2);
    assert_int_equal(wait_for(port, "cache|entries", 1), 1);
    assert_int_equal(hp_it_stat(port, "upstream|cancelled"), 1);
    hp_it_client_t c;
    assert_int_equal(hp_it_client_open(&c, port), 0);
    expect_item(&c, "sent", "hit", 1);
    hp_it_client_close(&c);
    hp_it_fixture_stop(f);
}

int main(void)
{
    hp_alloc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(miss_then_hit_and_head, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(concurrent_misses_share_one_fill, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(value_expires_after_ttl, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(eviction_keeps_the_memory_bound, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(stale_value_served_while_one_refresh_runs,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(upstream_errors_are_not_cached, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(pipelined_answers_keep_request_order, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(allocations_per_request_in_both_modes, hp_it_fixture_teardown),
        cmocka_unit_test_teardown(a_shared_fill_outlives_a_waiter_that_leaves,
                                  hp_it_fixture_teardown),
        cmocka_unit_test_teardown(a_fill_nobody_waits_for_is_dropped_only_while_queued,
                                  hp_it_fixture_teardown),
    };
    return hp_it_result(cmocka_run_group_tests(tests, NULL, NULL));
}
