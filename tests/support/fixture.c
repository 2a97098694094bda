/*
 * fixture.c - one integration test's processes (see fixture.h).
 */
#include "fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

hp_it_fixture_t *hp_it_fixture_new(void **state)
{
    hp_it_fixture_t *f = calloc(1, sizeof(*f));
    *state = f;
    return f;
}

void hp_it_fixture_start_server(hp_it_fixture_t *f, const char *config, const char *const *args)
{
    assert_int_equal(hp_it_server_start(&f->server, config, args), 0);
    f->server_up = true;
}

void hp_it_fixture_start_behind_stub(hp_it_fixture_t *f, int delay_ms, const char *const *stub_args,
                                     const char *upstream, const char *rest,
                                     const char *const *server_args)
{
    assert_int_equal(hp_it_start_behind_stub(&f->server, &f->stub, delay_ms, stub_args, upstream,
                                             rest, server_args),
                     0);
    f->server_up = f->stub_up = true;
}

void hp_it_fixture_stop(hp_it_fixture_t *f)
{
    if (f->server_up) {
        f->server_up = false;
        assert_int_equal(hp_it_server_stop(&f->server), 0);
    }
    if (f->stub_up) {
        f->stub_up = false;
        assert_int_equal(hp_it_upstream_stop(&f->stub), 0);
    }
}

int hp_it_fixture_teardown(void **state)
{
    hp_it_fixture_t *f = *state;
    if (f == NULL) return 0;
    /* Only a test that failed midway leaves these running. */
    if (f->server_up) hp_it_server_stop(&f->server);
    if (f->stub_up) hp_it_upstream_stop(&f->stub);
    free(f);
    *state = NULL;
    return 0;
}

void hp_it_stub_control(int stub_port, const char *query)
{
    hp_it_client_t c;
    hp_it_resp_t r;
    char target[256];
    snprintf(target, sizeof(target), "/_control?%s", query);
    assert_int_equal(hp_it_client_open(&c, stub_port), 0);
    assert_int_equal(hp_it_client_request(&c, "POST", target, "Content-Length: 0\r\n", &r), 0);
    if (r.status != 200) fprintf(stderr, "stub %s: %d %s\n", target, r.status, r.body);
    assert_int_equal(r.status, 200);
    hp_it_resp_free(&r);
    hp_it_client_close(&c);
}

double hp_it_json_get(const cJSON *root, const char *path)
{
    const cJSON *v = hp_it_json_at(root, path);
    if (!cJSON_IsNumber(v))
        fail_msg("/stats: %s is %s", path, v ? "not a number" : "missing (renamed? a typo?)");
    return v->valuedouble;
}

double hp_it_stat(int port, const char *path)
{
    cJSON *s = hp_it_stats(port);
    assert_non_null(s);
    double v = hp_it_json_get(s, path);
    cJSON_Delete(s);
    return v;
}
