/* The timer lane and heap; see timer.h. A 4-ary heap is shallower than a
 * binary one (half the levels) and its four children share a cache line of
 * pointers. */
#include "io/timer.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "common/fault.h"
#include "runtime/worker.h"

static void place(weft__timers *h, uint32_t i, weft__timer_slot slot)
{
    h->v[i] = slot;
    slot.timer->index = i;
}

static void sift_up(weft__timers *h, uint32_t i)
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

static void sift_down(weft__timers *h, uint32_t i)
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

/* ---- the lane ------------------------------------------------------------ */

/* The first ring's size. */
#define LANE_MIN_SLOTS 64
/* Compaction waits for this many positions, so that a small lane with a
 * few holes is left alone. */
#define LANE_COMPACT_MIN 64
/* A lane keeps its ring up to this many slots (16 KiB) however few timers
 * it holds, even none. */
#define LANE_KEEP_SLOTS 1024

static inline weft__timer_slot *lane_slot(weft__timers *h, uint32_t pos)
{
    return &h->lane[pos & (h->lane_cap - 1)];
}

/* Moves the ring to an array of cap slots (a power of two that holds the
 * span). Positions are free-running, so each keeps its number (and each
 * timer its index): only the slot it maps to changes. */
static int lane_resize(weft__timers *h, uint32_t cap)
{
    weft__timer_slot *v = NULL;
    if (!weft__fault_hit(WEFT_FAULT_ALLOC))
        v = malloc((size_t)cap * sizeof *v);
    if (!v)
        return -ENOMEM;
    for (uint32_t pos = h->lane_head; pos != h->lane_tail; pos++)
        v[pos & (cap - 1)] = *lane_slot(h, pos);
    free(h->lane);
    h->lane = v;
    h->lane_cap = cap;
    return 0;
}

/* Appends t if its deadline keeps the lane in order. False: the heap's. */
static bool lane_add(weft__timers *h, weft__timer *t)
{
    if (h->lane_live && t->when < h->lane_last)
        return false;
    if (h->lane_tail - h->lane_head == h->lane_cap) {
        uint32_t cap = h->lane_cap ? h->lane_cap * 2 : LANE_MIN_SLOTS;
        /* cap 0: 2^32 slots, beyond any lane; the heap takes the timer,
         * as it does when memory runs out. */
        if (cap == 0 || lane_resize(h, cap) < 0)
            return false;
    }
    uint32_t pos = h->lane_tail++;
    *lane_slot(h, pos) = (weft__timer_slot){t->when, t};
    t->index = pos;
    t->in_lane = true;
    h->lane_last = t->when;
    h->lane_live++;
    return true;
}

/* Moves the live timers together at the head, in order, and renumbers
 * them. Reads run ahead of writes, so it works in place. */
static void lane_compact(weft__timers *h)
{
    uint32_t to = h->lane_head;
    for (uint32_t pos = h->lane_head; pos != h->lane_tail; pos++) {
        weft__timer_slot slot = *lane_slot(h, pos);
        if (!slot.timer)
            continue;
        slot.timer->index = to;
        *lane_slot(h, to++) = slot;
    }
    h->lane_tail = to;
}

/* After a disarm: packs the lane when holes outnumber live timers 3 to 1,
 * and gives memory back when the span uses an eighth of the ring or less
 * (halving to a ring of 4 slots or more per position in use, never below
 * LANE_KEEP_SLOTS; an empty lane above that frees its ring). Each costs
 * O(span), after at least as many disarms or firings: amortised O(1). */
static void lane_tidy(weft__timers *h)
{
    uint32_t span = h->lane_tail - h->lane_head;
    if (span >= LANE_COMPACT_MIN && span - h->lane_live > 3 * h->lane_live) {
        lane_compact(h);
        span = h->lane_live;
    }
    if (h->lane_cap <= LANE_KEEP_SLOTS || span > h->lane_cap / 8)
        return;
    if (span == 0) {
        free(h->lane);
        h->lane = NULL;
        h->lane_cap = 0;
        return;
    }
    uint32_t cap = h->lane_cap;
    while (cap / 2 >= LANE_KEEP_SLOTS && span <= cap / 8)
        cap /= 2;
    (void)lane_resize(h, cap); /* no memory: keep the larger ring */
}

static void lane_remove(weft__timers *h, weft__timer *t)
{
    uint32_t pos = t->index;
    lane_slot(h, pos)->timer = NULL;
    h->lane_live--;
    if (h->lane_live == 0) {
        h->lane_head = h->lane_tail; /* only holes were left */
    } else if (pos == h->lane_head) {
        /* Keep the head live: skip the holes behind it (a live timer
         * lies ahead, so this stops before the tail). */
        do
            h->lane_head++;
        while (!lane_slot(h, h->lane_head)->timer);
    } else if (pos == h->lane_tail - 1) {
        /* The last appended timer went (a timeout disarmed when its op
         * completed): the lane's order is now set by the live one before
         * it, so the next in-order deadlines still come here. */
        do
            h->lane_tail--;
        while (!lane_slot(h, h->lane_tail - 1)->timer);
        h->lane_last = lane_slot(h, h->lane_tail - 1)->when;
    }
    lane_tidy(h);
}

/* ---- the heap and the pair ----------------------------------------------- */

int weft__timer_add(weft__timers *h, weft__timer *t)
{
    if (!lane_add(h, t)) {
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
        t->in_lane = false;
        place(h, h->len++, (weft__timer_slot){t->when, t});
        sift_up(h, t->index);
    }
    t->armed = true;
    t->fired = false;
    t->task->armed_timer = t;
    return 0;
}

void weft__timer_remove(weft__timers *h, weft__timer *t)
{
    if (!t->armed)
        return;
    t->armed = false;
    t->task->armed_timer = NULL;
    if (t->in_lane) {
        lane_remove(h, t);
        return;
    }
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

unsigned weft__timer_expire(weft__timers *h, uint64_t now)
{
    unsigned n = 0;
    for (;;) {
        const weft__timer_slot *first = weft__timer_first(h);
        if (!first || first->when > now)
            return n;
        weft__timer *t = first->timer;
        weft__timer_remove(h, t);
        t->fired = true;
        weft__task_wake(t->task);
        n++;
    }
}

void weft__timers_fini(weft__timers *h)
{
    free(h->v);
    free(h->lane);
    *h = (weft__timers){0};
}
