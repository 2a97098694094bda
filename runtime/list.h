/*
 * list.h - an intrusive, circular, doubly linked list with a sentinel head
 * (libuv's QUEUE, typed). Embed an hp_link_t in the element, keep one as
 * the head, and get back to the element with hp_container_of. O(1) insert
 * and remove, no allocation. Used by the upstream client's pool and queues
 * and by the stub.
 */
#ifndef HP_LIST_H
#define HP_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct hp_link {
    struct hp_link *prev, *next;
} hp_link_t;

#define hp_container_of(p, type, field) ((type *)((char *)(p)-offsetof(type, field)))

/* An empty list, or an element in none. */
static inline void hp_link_init(hp_link_t *l)
{
    l->prev = l->next = l;
}

static inline bool hp_link_empty(const hp_link_t *l)
{
    return l->next == l;
}

static inline void hp_link_insert_after(hp_link_t *at, hp_link_t *n)
{
    n->prev = at;
    n->next = at->next;
    at->next->prev = n;
    at->next = n;
}

static inline void hp_link_push_front(hp_link_t *head, hp_link_t *n)
{
    hp_link_insert_after(head, n);
}

static inline void hp_link_push_back(hp_link_t *head, hp_link_t *n)
{
    hp_link_insert_after(head->prev, n);
}

/* Unlink n; it is then an empty list of its own (removing it again is
 * harmless). */
static inline void hp_link_remove(hp_link_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    hp_link_init(n);
}

#endif
