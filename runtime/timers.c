/*
 * timers.c - sorted deadline lists (see timers.h).
 */
#include "timers.h"

void hp_timer_list_init(hp_timer_list_t *l)
{
    hp_link_init(&l->head);
    l->n = 0;
}

void hp_timer_init(hp_timer_t *t)
{
    hp_link_init(&t->link);
    t->deadline = 0;
    t->list = NULL;
}

void hp_timer_stop(hp_timer_t *t)
{
    if (t->list == NULL) return;
    hp_link_remove(&t->link);
    t->list->n--;
    t->list = NULL;
}

void hp_timer_set(hp_timer_t *t, hp_timer_list_t *l, uint64_t deadline)
{
    hp_timer_stop(t);
    t->deadline = deadline;
    t->list = l;
    hp_link_t *after = l->head.prev;
    while (after != &l->head && hp_container_of(after, hp_timer_t, link)->deadline > deadline)
        after = after->prev;
    hp_link_insert_after(after, &t->link);
    l->n++;
}
