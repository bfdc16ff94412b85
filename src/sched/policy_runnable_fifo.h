/* The runnable-FIFO policy's list, inline: the vtable in policy_fifo.c wraps
 * these, and the scheduler calls them directly for a queue using that
 * policy, which is the default and the hot path (an indirect call per push
 * and pop showed up in the yield cost). An intrusive doubly linked list
 * through link[0] (next) and link[1] (prev). */
#ifndef WEFT_SCHED_POLICY_RUNNABLE_FIFO_H
#define WEFT_SCHED_POLICY_RUNNABLE_FIFO_H

#include <weft/sched.h>

typedef struct weft__rfifo {
    weft_sched_entity *head, *tail;
} weft__rfifo;

#define WEFT__RFIFO_NEXT(e) ((weft_sched_entity *)(e)->link[0])
#define WEFT__RFIFO_PREV(e) ((weft_sched_entity *)(e)->link[1])

static inline void weft__rfifo_push(weft__rfifo *s, weft_sched_entity *e)
{
    e->link[0] = NULL;
    e->link[1] = s->tail;
    if (s->tail)
        s->tail->link[0] = e;
    else
        s->head = e;
    s->tail = e;
}

static inline weft_sched_entity *weft__rfifo_pop(weft__rfifo *s)
{
    weft_sched_entity *e = s->head;
    if (e) {
        s->head = WEFT__RFIFO_NEXT(e);
        if (s->head)
            s->head->link[1] = NULL;
        else
            s->tail = NULL;
    }
    return e;
}

static inline void weft__rfifo_remove(weft__rfifo *s, weft_sched_entity *e)
{
    if (WEFT__RFIFO_PREV(e))
        WEFT__RFIFO_PREV(e)->link[0] = WEFT__RFIFO_NEXT(e);
    else
        s->head = WEFT__RFIFO_NEXT(e);
    if (WEFT__RFIFO_NEXT(e))
        WEFT__RFIFO_NEXT(e)->link[1] = WEFT__RFIFO_PREV(e);
    else
        s->tail = WEFT__RFIFO_PREV(e);
}

#endif
