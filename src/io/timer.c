/* The timer lanes and heap; see timer.h. A 4-ary heap is shallower than a
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

/* ---- the lanes ----------------------------------------------------------- */

/* The first ring's size. */
#define LANE_MIN_SLOTS 64
/* Compaction waits for this many positions, so that a small lane with a
 * few holes is left alone. */
#define LANE_COMPACT_MIN 64
/* A lane keeps its ring up to this many slots (16 KiB) however few timers
 * it holds, even none. */
#define LANE_KEEP_SLOTS 1024

static inline weft__timer_slot *lane_slot(weft__timer_lane *l, uint32_t pos)
{
    return &l->ring[pos & (l->cap - 1)];
}

/* Moves the ring to an array of cap slots (a power of two that holds the
 * span). Positions are free-running, so each keeps its number (and each
 * timer its index): only the slot it maps to changes. */
static int lane_resize(weft__timer_lane *l, uint32_t cap)
{
    weft__timer_slot *v = NULL;
    if (!weft__fault_hit(WEFT_FAULT_ALLOC))
        v = malloc((size_t)cap * sizeof *v);
    if (!v)
        return -ENOMEM;
    for (uint32_t pos = l->head; pos != l->tail; pos++)
        v[pos & (cap - 1)] = *lane_slot(l, pos);
    free(l->ring);
    l->ring = v;
    l->cap = cap;
    return 0;
}

/* The lane for a timer due at `when`: of the lanes whose last deadline is
 * not after it, the one with the latest (the tightest fit, which leaves
 * lanes ending later to longer timers); else the first empty lane among
 * those used before (it may have kept its ring); else a new one. -1: the
 * heap's. */
static int lane_pick(weft__timers *h, uint64_t when)
{
    int fit = -1, empty = -1;
    for (uint32_t i = 0; i < h->nlanes; i++) {
        const weft__timer_lane *l = &h->lanes[i];
        if (!l->live) {
            if (empty < 0)
                empty = (int)i;
        } else if (l->last <= when && (fit < 0 || l->last > h->lanes[fit].last)) {
            fit = (int)i;
        }
    }
    if (fit >= 0)
        return fit;
    if (empty >= 0)
        return empty;
    if (h->nlanes < WEFT__TIMER_LANES)
        return (int)h->nlanes++;
    return -1;
}

/* Appends t to a lane that stays in order with it. False: the heap's. */
static bool lane_add(weft__timers *h, weft__timer *t)
{
    int i = lane_pick(h, t->when);
    if (i < 0)
        return false;
    weft__timer_lane *l = &h->lanes[i];
    if (l->tail - l->head == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : LANE_MIN_SLOTS;
        /* cap 0: 2^32 slots, beyond any lane; the heap takes the timer,
         * as it does when memory runs out. */
        if (cap == 0 || lane_resize(l, cap) < 0)
            return false;
    }
    uint32_t pos = l->tail++;
    *lane_slot(l, pos) = (weft__timer_slot){t->when, t};
    t->index = pos;
    t->lane = (uint8_t)i;
    l->last = t->when;
    l->live++;
    h->lane_live++;
    return true;
}

/* Moves the live timers together at the head, in order, and renumbers
 * them. Reads run ahead of writes, so it works in place. */
static void lane_compact(weft__timer_lane *l)
{
    uint32_t to = l->head;
    for (uint32_t pos = l->head; pos != l->tail; pos++) {
        weft__timer_slot slot = *lane_slot(l, pos);
        if (!slot.timer)
            continue;
        slot.timer->index = to;
        *lane_slot(l, to++) = slot;
    }
    l->tail = to;
}

/* After a disarm: packs the lane when holes outnumber live timers 3 to 1,
 * and gives memory back when the span uses an eighth of the ring or less
 * (halving to a ring of 4 slots or more per position in use, never below
 * LANE_KEEP_SLOTS; an empty lane above that frees its ring). Each costs
 * O(span), after at least as many disarms or firings: amortised O(1). */
static void lane_tidy(weft__timer_lane *l)
{
    uint32_t span = l->tail - l->head;
    if (span >= LANE_COMPACT_MIN && span - l->live > 3 * l->live) {
        lane_compact(l);
        span = l->live;
    }
    if (l->cap <= LANE_KEEP_SLOTS || span > l->cap / 8)
        return;
    if (span == 0) {
        free(l->ring);
        l->ring = NULL;
        l->cap = 0;
        return;
    }
    uint32_t cap = l->cap;
    while (cap / 2 >= LANE_KEEP_SLOTS && span <= cap / 8)
        cap /= 2;
    (void)lane_resize(l, cap); /* no memory: keep the larger ring */
}

static void lane_remove(weft__timers *h, weft__timer *t)
{
    weft__timer_lane *l = &h->lanes[t->lane];
    uint32_t pos = t->index;
    lane_slot(l, pos)->timer = NULL;
    l->live--;
    h->lane_live--;
    if (l->live == 0) {
        l->head = l->tail; /* only holes were left */
    } else if (pos == l->head) {
        /* Keep the head live: skip the holes behind it (a live timer
         * lies ahead, so this stops before the tail). */
        do
            l->head++;
        while (!lane_slot(l, l->head)->timer);
    } else if (pos == l->tail - 1) {
        /* The last appended timer went (a timeout disarmed when its op
         * completed): the lane's order is now set by the live one before
         * it, so the next in-order deadlines still come here. */
        do
            l->tail--;
        while (!lane_slot(l, l->tail - 1)->timer);
        l->last = lane_slot(l, l->tail - 1)->when;
    }
    lane_tidy(l);
}

/* ---- the heap and the lanes together ------------------------------------- */

/* The heap's smallest array, in entries: it starts there and is never
 * shrunk below it. */
#define HEAP_KEEP 64u

/* Makes room for one more heap entry; false when memory is short. */
static bool heap_reserve(weft__timers *h)
{
    if (h->len < h->cap)
        return true;
    uint32_t cap = h->cap ? h->cap * 2 : HEAP_KEEP;
    weft__timer_slot *v = NULL;
    if (cap != 0 && !weft__fault_hit(WEFT_FAULT_ALLOC))
        v = realloc(h->v, (size_t)cap * sizeof *v);
    if (!v)
        return false;
    h->v = v;
    h->cap = cap;
    return true;
}

/* After a heap removal: gives memory back as the lanes do, halving while
 * an eighth or less is in use, never below HEAP_KEEP entries. Amortised
 * O(1): a halving follows at least as many removals as it copies. */
static void heap_tidy(weft__timers *h)
{
    if (h->cap <= HEAP_KEEP || h->len > h->cap / 8)
        return;
    uint32_t cap = h->cap;
    while (cap / 2 >= HEAP_KEEP && h->len <= cap / 8)
        cap /= 2;
    weft__timer_slot *v = realloc(h->v, (size_t)cap * sizeof *v);
    if (!v)
        return; /* keep the larger one */
    h->v = v;
    h->cap = cap;
}

void weft__timer_add(weft__timers *h, weft__timer *t)
{
    if (lane_add(h, t)) {
        /* placed */
    } else if (heap_reserve(h)) {
        t->lane = WEFT__TIMER_IN_HEAP;
        place(h, h->len++, (weft__timer_slot){t->when, t});
        sift_up(h, t->index);
    } else {
        t->lane = WEFT__TIMER_SPILLED;
        t->spill_prev = NULL;
        t->spill_next = h->spill;
        if (h->spill)
            h->spill->spill_prev = t;
        h->spill = t;
        h->nspill++;
    }
    t->armed = true;
    t->fired = false;
    t->task->armed_timer = t;
}

void weft__timer_remove(weft__timers *h, weft__timer *t)
{
    if (!t->armed)
        return;
    t->armed = false;
    t->task->armed_timer = NULL;
    if (t->lane == WEFT__TIMER_SPILLED) {
        if (t->spill_prev)
            t->spill_prev->spill_next = t->spill_next;
        else
            h->spill = t->spill_next;
        if (t->spill_next)
            t->spill_next->spill_prev = t->spill_prev;
        h->nspill--;
        return;
    }
    if (t->lane != WEFT__TIMER_IN_HEAP) {
        lane_remove(h, t);
        return;
    }
    uint32_t i = t->index;
    weft__timer_slot last = h->v[--h->len];
    if (last.timer != t) {
        place(h, i, last);
        if (i > 0 && h->v[(i - 1) / 4].when > last.when)
            sift_up(h, i);
        else
            sift_down(h, i);
    }
    heap_tidy(h);
}

unsigned weft__timer_expire(weft__timers *h, uint64_t now)
{
    unsigned n = 0;
    for (;;) {
        weft__timer *t = weft__timer_first(h);
        if (!t || t->when > now)
            return n;
        weft__timer_remove(h, t);
        t->fired = true;
        weft__task_wake(t->task);
        n++;
    }
}

void weft__timers_fini(weft__timers *h)
{
    free(h->v);
    for (uint32_t i = 0; i < WEFT__TIMER_LANES; i++)
        free(h->lanes[i].ring);
    *h = (weft__timers){0};
}
