/*
 * fixture.h - the processes of one integration test: a hotpath server and,
 * when the test needs one, the upstream stub (both through harness.h).
 *
 * Start them with the assert-on-failure helpers below; stop them with
 * hp_it_fixture_stop, which asserts both exited 0 (under the sanitizer
 * build: no leak). hp_it_fixture_teardown, the cmocka teardown, stops
 * whatever a test that failed midway left running and frees the fixture.
 */
#ifndef HP_IT_FIXTURE_H
#define HP_IT_FIXTURE_H

#include "tests/support/harness.h"

#include <stdbool.h>

typedef struct {
    hp_it_server_t server;
    hp_it_server_t stub;
    bool server_up, stub_up;
} hp_it_fixture_t;

/* A zeroed fixture, stored in *state for the teardown. */
hp_it_fixture_t *hp_it_fixture_new(void **state);

void hp_it_fixture_start_server(hp_it_fixture_t *f, const char *config, const char *const *args);

/* The stub, answering after delay_ms, and the server in front of it
 * (hp_it_start_behind_stub says what upstream and rest add to the config). */
void hp_it_fixture_start_behind_stub(hp_it_fixture_t *f, int delay_ms, const char *const *stub_args,
                                     const char *upstream, const char *rest,
                                     const char *const *server_args);

/* Stop the server, then the stub; both must exit 0. */
void hp_it_fixture_stop(hp_it_fixture_t *f);

int hp_it_fixture_teardown(void **state);

/* POST the stub's /_control?query (e.g. "delay_ms=300"); asserts 200. */
void hp_it_stub_control(int stub_port, const char *query);

/* One figure of the server's /stats ('|'-separated path, as hp_it_json_at);
 * fails the test when /stats does not answer or has no number there (a
 * figure /stats stopped reporting must not read as a zero). */
double hp_it_stat(int port, const char *path);

/* The number at path in root; fails the test when it is absent or not a
 * number. The accessor for assertions (hp_it_json_num's default is for
 * figures that may legitimately be absent). */
double hp_it_json_get(const cJSON *root, const char *path);

#endif
