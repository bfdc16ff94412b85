/* The worker's run queue: an intrusive FIFO of runnable tasks, owner-only.
 * The two-level scheduler of DESIGN §4 sits behind this interface. */
#ifndef WEFT_SCHED_RUNQUEUE_H
#define WEFT_SCHED_RUNQUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "task/task.h"

typedef struct weft__runqueue {
    weft_task *head, *tail;
    size_t len;
} weft__runqueue;

static inline void weft__runqueue_push(weft__runqueue *q, weft_task *t)
{
    t->rq_next = NULL;
    if (q->tail)
        q->tail->rq_next = t;
    else
        q->head = t;
    q->tail = t;
    q->len++;
}

static inline void weft__runqueue_push_front(weft__runqueue *q, weft_task *t)
{
    t->rq_next = q->head;
    q->head = t;
    if (!q->tail)
        q->tail = t;
    q->len++;
}

static inline weft_task *weft__runqueue_pop(weft__runqueue *q)
{
    weft_task *t = q->head;
    if (t) {
        q->head = t->rq_next;
        if (!q->head)
            q->tail = NULL;
        q->len--;
    }
    return t;
}

static inline bool weft__runqueue_empty(const weft__runqueue *q)
{
    return q->head == NULL;
}

#endif
