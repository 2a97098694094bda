/*
 * test_timers.c - runtime/timers.c: deadlines kept in order whatever order
 * they are set in, moved between lists, stopped, and found expired from the
 * head; a list's count follows.
 */
#include "runtime/timers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* The deadlines of l, in list order, into out; returns how many. */
static size_t order(const hp_timer_list_t *l, uint64_t *out, size_t max)
{
    size_t n = 0;
    for (const hp_link_t *k = l->head.next; k != &l->head && n < max; k = k->next)
        out[n++] = hp_container_of(k, hp_timer_t, link)->deadline;
    return n;
}

static void kept_in_deadline_order(void **state)
{
    hp_timer_list_t l;
    hp_timer_list_init(&l);
    hp_timer_t t[6];
    static const uint64_t at[6] = {50, 10, 30, 30, 70, 20};
    for (int i = 0; i < 6; i++) {
        hp_timer_init(&t[i]);
        hp_timer_set(&t[i], &l, at[i]);
    }
    assert_int_equal(l.n, 6);
    uint64_t got[8];
    assert_int_equal(order(&l, got, 8), 6);
    static const uint64_t want[6] = {10, 20, 30, 30, 50, 70};
    assert_memory_equal(got, want, sizeof(want));
    /* Equal deadlines keep their arrival order: an append, not a walk. */
    assert_ptr_equal(hp_container_of(l.head.next->next->next, hp_timer_t, link), &t[2]);
}

static void expired_from_the_head(void **state)
{
    hp_timer_list_t l;
    hp_timer_list_init(&l);
    hp_timer_t t[3];
    for (int i = 0; i < 3; i++) {
        hp_timer_init(&t[i]);
        hp_timer_set(&t[i], &l, 100 + 10 * (uint64_t)i);
    }
    assert_null(hp_timer_expired(&l, 99));
    assert_ptr_equal(hp_timer_expired(&l, 100), &t[0]);
    int fired = 0;
    hp_timer_t *x;
    while ((x = hp_timer_expired(&l, 115)) != NULL) {
        hp_timer_stop(x);
        fired++;
    }
    assert_int_equal(fired, 2);
    assert_int_equal(l.n, 1);
    assert_ptr_equal(hp_timer_expired(&l, 1000), &t[2]);
}

static void moved_and_stopped(void **state)
{
    hp_timer_list_t a, b;
    hp_timer_list_init(&a);
    hp_timer_list_init(&b);
    hp_timer_t t;
    hp_timer_init(&t);
    assert_null(t.list);
    hp_timer_stop(&t); /* on no list: nothing */
    hp_timer_set(&t, &a, 5);
    assert_ptr_equal(t.list, &a);
    hp_timer_set(&t, &b, 7); /* moves */
    assert_int_equal(a.n, 0);
    assert_int_equal(b.n, 1);
    assert_ptr_equal(t.list, &b);
    hp_timer_set(&t, &b, 3); /* re-set on the same list */
    assert_int_equal(b.n, 1);
    assert_int_equal(t.deadline, 3);
    hp_timer_stop(&t);
    hp_timer_stop(&t);
    assert_null(t.list);
    assert_int_equal(b.n, 0);
    assert_true(hp_link_empty(&b.head));
    assert_null(hp_timer_expired(&b, UINT64_MAX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kept_in_deadline_order),
        cmocka_unit_test(expired_from_the_head),
        cmocka_unit_test(moved_and_stopped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
