/* The timer heap; see timer.h. A 4-ary heap is shallower than a binary one
 * (half the levels) and its four children share a cache line of pointers. */
#include "io/timer.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "common/fault.h"
#include "runtime/worker.h"

static void place(weft__timer_heap *h, uint32_t i, weft__timer_slot slot)
{
    h->v[i] = slot;
    slot.timer->index = i;
}

static void sift_up(weft__timer_heap *h, uint32_t i)
{
    weft__timer_slot slot = h->v[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 4;
        if (h->v[parent].when <= slot.when)
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, slot);
}

static void sift_down(weft__timer_heap *h, uint32_t i)
{
    weft__timer_slot slot = h->v[i];
    for (;;) {
        uint32_t first = 4 * i + 1;
        if (first >= h->len)
            break;
        uint32_t best = first;
        uint32_t end = first + 4 < h->len ? first + 4 : h->len;
        for (uint32_t c = first + 1; c < end; c++)
            if (h->v[c].when < h->v[best].when)
                best = c;
        if (h->v[best].when >= slot.when)
            break;
        place(h, i, h->v[best]);
        i = best;
    }
    place(h, i, slot);
}

int weft__timer_add(weft__timer_heap *h, weft__timer *t)
{
    if (h->len == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        weft__timer_slot *v = NULL;
        if (!weft__fault_hit(WEFT_FAULT_ALLOC))
            v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    t->armed = true;
    t->fired = false;
    t->task->armed_timer = t;
    place(h, h->len++, (weft__timer_slot){t->when, t});
    sift_up(h, t->index);
    return 0;
}

void weft__timer_remove(weft__timer_heap *h, weft__timer *t)
{
    if (!t->armed)
        return;
    t->armed = false;
    t->task->armed_timer = NULL;
    uint32_t i = t->index;
    weft__timer_slot last = h->v[--h->len];
    if (last.timer == t)
        return;
    place(h, i, last);
    if (i > 0 && h->v[(i - 1) / 4].when > last.when)
        sift_up(h, i);
    else
        sift_down(h, i);
}

unsigned weft__timer_expire(weft__timer_heap *h, uint64_t now)
{
    unsigned n = 0;
    while (h->len && h->v[0].when <= now) {
        weft__timer *t = h->v[0].timer;
        weft__timer_remove(h, t);
        t->fired = true;
        weft__task_wake(t->task);
        n++;
    }
    return n;
}

void weft__timer_heap_fini(weft__timer_heap *h)
{
    free(h->v);
    *h = (weft__timer_heap){0};
}
