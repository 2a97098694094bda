/*
 * timers.h - deadlines kept in sorted lists and swept by their owner's
 * clock, built on list.h: no libuv handle per deadline.
 *
 * A connection is under one or two deadlines at a time (server/conn.h),
 * and thousands of connections wait on the same few timeouts. A uv_timer_t
 * each would cost 152 bytes per deadline and a heap operation per rearm;
 * here a deadline is a 32-byte node in the list of its kind of timeout,
 * kept in deadline order, and one tick of the owner's sweeps every list
 * from its head, stopping at the first deadline still to come. The price
 * is that a deadline fires up to one tick late.
 *
 * Kept sorted by inserting from the tail backwards past later deadlines:
 * with one timeout for every member of a list (the idle timeout, the head
 * timeout) every insertion is an append; a list whose members' timeouts
 * differ (a body's data-rate deadline) or that a reload shortened walks
 * back as far as it must.
 *
 * Threading: a list and its timers belong to one thread. Allocates nothing.
 */
#ifndef HP_TIMERS_H
#define HP_TIMERS_H

#include "list.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hp_timer_list {
    hp_link_t head; /* timers in deadline order, earliest first */
    size_t n;
} hp_timer_list_t;

typedef struct hp_timer {
    hp_link_t link;
    uint64_t deadline;     /* in the owner's clock (loop milliseconds) */
    hp_timer_list_t *list; /* the list it is on, or NULL */
} hp_timer_t;

void hp_timer_list_init(hp_timer_list_t *l);

/* A timer on no list. */
void hp_timer_init(hp_timer_t *t);

/* Put t on l at deadline, off whatever list it was on. */
void hp_timer_set(hp_timer_t *t, hp_timer_list_t *l, uint64_t deadline);

/* Take t off its list; nothing when it is on none. */
void hp_timer_stop(hp_timer_t *t);

/* The earliest timer of l whose deadline is not after now, or NULL. The
 * caller takes it off (or moves it) before asking again. */
static inline hp_timer_t *hp_timer_expired(const hp_timer_list_t *l, uint64_t now)
{
    if (l->n == 0) return NULL;
    hp_timer_t *t = hp_container_of(l->head.next, hp_timer_t, link);
    return t->deadline <= now ? t : NULL;
}

#endif
