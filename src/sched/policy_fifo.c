/* The two FIFO policies (DESIGN §4).
 *
 * runnable_fifo is an intrusive doubly linked list through link[0] (next)
 * and link[1] (prev): push, pop and remove are O(1) and never allocate.
 *
 * arrival_fifo orders tasks by the key (first arrival of the task's group,
 * the task's spawned_ns, task_id), and a task that sleeps comes back to its
 * old place, so it needs a priority queue. Most pushes are new tasks whose
 * key is larger than every key pushed before (spawns come in time order), so
 * the queue is two parts: a *lane*, an intrusive list that accepts a task
 * whose key is not below the lane's last key (O(1), no allocation), and a
 * binary min-heap for everything else (woken sleepers, groups that arrived
 * earlier). pop takes the smaller of the lane's head and the heap's top.
 *
 * The heap is an array of {key, entity} owned by the state, the entity's
 * index kept in link[0] so that remove is O(log n). When the array cannot
 * grow, push puts the task on an overflow list instead of losing it; each
 * heap pop moves one overflowed task into the slot it freed; with the heap
 * empty, a pop tries to grow it again, else the oldest overflowed task
 * competes with the lane's head. So under memory pressure overflowed tasks
 * may run later than their key says, but every task runs.
 *
 * A group's first arrival is the spawned_ns of the first of its tasks this
 * policy saw (pushed), kept while any of its tasks seen here is live (not
 * exited or removed): so a task keeps its place across sleeps, and children
 * naming their parent's id as group arrive with the parent. It comes from
 * group_table.h: a record once a group has a task not named by its id, else
 * the task's entry in the seen pages, which cost no lookup in a big table.
 *
 * Entity links while queued in arrival_fifo: link[0] = heap index or
 * LANE/OVERFLOW; link[1], link[2] = next, prev in the lane or overflow list;
 * link[3] = the group's first arrival (the part of the key not in e).
 */
#include <errno.h>
#include <assert.h>
#include <string.h>
#include <weft/sched.h>

#include "sched/group_table.h"
#include "sched/policy_runnable_fifo.h"

_Static_assert(sizeof(void *) >= sizeof(uint64_t), "link[] words hold 64-bit keys and indices");

/* ---- runnable_fifo ---------------------------------------------------- */

/* The list itself is inline in policy_runnable_fifo.h, shared with the
 * scheduler's direct path. */
typedef weft__rfifo runnable_fifo_state;

static int runnable_fifo_init(void *state, const void *config)
{
    if (config)
        return -EINVAL; /* takes none: a config meant for another policy */
    memset(state, 0, sizeof(runnable_fifo_state));
    return 0;
}

static void runnable_fifo_fini(void *state)
{
    (void)state;
}

static void runnable_fifo_push(void *state, weft_sched_entity *e)
{
    weft__rfifo_push(state, e);
}

static weft_sched_entity *runnable_fifo_pop(void *state)
{
    return weft__rfifo_pop(state);
}

static void runnable_fifo_remove(void *state, weft_sched_entity *e)
{
    weft__rfifo_remove(state, e);
}

static void runnable_fifo_charge(void *state, weft_sched_entity *e, uint64_t ran_ns)
{
    (void)state, (void)e, (void)ran_ns;
}

static void runnable_fifo_exit(void *state, weft_sched_entity *e)
{
    (void)state, (void)e;
}

WEFT_API const weft_policy weft_policy_runnable_fifo = {
    .name = "runnable_fifo",
    .state_size = sizeof(runnable_fifo_state),
    .init = runnable_fifo_init,
    .fini = runnable_fifo_fini,
    .push = runnable_fifo_push,
    .pop = runnable_fifo_pop,
    .remove = runnable_fifo_remove,
    .charge = runnable_fifo_charge,
    .exit = runnable_fifo_exit,
};

#undef NEXT
#undef PREV

/* ---- arrival_fifo ----------------------------------------------------- */

#define WHERE_LANE        UINTPTR_MAX
#define WHERE_OVERFLOW    (UINTPTR_MAX - 1)
#define HEAP_MIN_CAPACITY 64
/* Shrink the heap array below 1/8 use, so that a burst of sleepers does not
 * pin its memory for the worker's lifetime; never below this. */
#define HEAP_SHRINK_FLOOR 1024

typedef struct arrival_key {
    uint64_t first_ns, spawned_ns;
} arrival_key;

typedef struct arrival_entry {
    arrival_key key;
    weft_sched_entity *e;
} arrival_entry;

typedef struct arrival_list {
    weft_sched_entity *head, *tail;
} arrival_list;

typedef struct arrival_state {
    arrival_entry *heap;
    size_t size, capacity;
    arrival_list lane;     /* keys non-decreasing from head to tail */
    arrival_list overflow; /* tasks the heap had no room for, push order */
    weft__groups groups;   /* first arrival per group */
} arrival_state;

#define WHERE(e) ((uintptr_t)(e)->link[0])
#define LNEXT(e) ((weft_sched_entity *)(e)->link[1])
#define LPREV(e) ((weft_sched_entity *)(e)->link[2])
#define FIRST(e) ((uint64_t)(uintptr_t)(e)->link[3])

static inline bool key_less(arrival_key a, const weft_sched_entity *ae, arrival_key b,
                            const weft_sched_entity *be)
{
    if (a.first_ns != b.first_ns)
        return a.first_ns < b.first_ns;
    if (a.spawned_ns != b.spawned_ns)
        return a.spawned_ns < b.spawned_ns;
    return ae->task_id < be->task_id;
}

static inline arrival_key key_of(const weft_sched_entity *e)
{
    return (arrival_key){FIRST(e), e->spawned_ns};
}

static inline bool entry_less(const arrival_entry *a, const arrival_entry *b)
{
    return key_less(a->key, a->e, b->key, b->e);
}

static void list_append(arrival_list *l, weft_sched_entity *e, uintptr_t where)
{
    e->link[0] = (void *)where;
    e->link[1] = NULL;
    e->link[2] = l->tail;
    if (l->tail)
        l->tail->link[1] = e;
    else
        l->head = e;
    l->tail = e;
}

static void list_unlink(arrival_list *l, weft_sched_entity *e)
{
    if (LPREV(e))
        LPREV(e)->link[1] = LNEXT(e);
    else
        l->head = LNEXT(e);
    if (LNEXT(e))
        LNEXT(e)->link[2] = LPREV(e);
    else
        l->tail = LPREV(e);
}

static inline void heap_place(arrival_state *s, size_t i, arrival_entry entry)
{
    s->heap[i] = entry;
    entry.e->link[0] = (void *)(uintptr_t)i;
}

static void heap_sift_up(arrival_state *s, size_t i, arrival_entry entry)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!entry_less(&entry, &s->heap[parent]))
            break;
        heap_place(s, i, s->heap[parent]);
        i = parent;
    }
    heap_place(s, i, entry);
}

static void heap_sift_down(arrival_state *s, size_t i, arrival_entry entry)
{
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->size)
            break;
        if (child + 1 < s->size && entry_less(&s->heap[child + 1], &s->heap[child]))
            child++;
        if (!entry_less(&s->heap[child], &entry))
            break;
        heap_place(s, i, s->heap[child]);
        i = child;
    }
    heap_place(s, i, entry);
}

static void heap_insert(arrival_state *s, weft_sched_entity *e)
{
    assert(s->size < s->capacity);
    heap_sift_up(s, s->size++, (arrival_entry){key_of(e), e});
}

/* Takes the entry at i out of the heap. */
static void heap_delete(arrival_state *s, size_t i)
{
    arrival_entry last = s->heap[--s->size];
    if (i == s->size)
        return;
    if (i > 0 && entry_less(&last, &s->heap[(i - 1) / 2]))
        heap_sift_up(s, i, last);
    else
        heap_sift_down(s, i, last);
}

static bool heap_reserve(arrival_state *s)
{
    if (s->size < s->capacity)
        return true;
    size_t capacity = s->capacity ? s->capacity * 2 : HEAP_MIN_CAPACITY;
    arrival_entry *heap = weft__sched_realloc(s->heap, capacity * sizeof *heap);
    if (!heap)
        return false;
    s->heap = heap;
    s->capacity = capacity;
    return true;
}

static void heap_maybe_shrink(arrival_state *s)
{
    if (s->capacity <= HEAP_SHRINK_FLOOR || s->size >= s->capacity / 8)
        return;
    /* Failing to shrink is harmless: keep the bigger array. */
    arrival_entry *heap = weft__sched_realloc(s->heap, s->capacity / 2 * sizeof *heap);
    if (heap) {
        s->heap = heap;
        s->capacity /= 2;
    }
}

static int arrival_init(void *state, const void *config)
{
    if (config)
        return -EINVAL; /* takes none: a config meant for another policy */
    arrival_state *s = state;
    memset(s, 0, sizeof *s);
    weft__groups_init(&s->groups);
    return 0;
}

static void arrival_fini(void *state)
{
    arrival_state *s = state;
    free(s->heap);
    weft__groups_fini(&s->groups);
    memset(s, 0, sizeof *s);
}

/* The first arrival of e's group, taking e in. */
static uint64_t arrival_first_ns(arrival_state *s, const weft_sched_entity *e)
{
    weft__group *g;
    if (e->group != e->task_id) {
        /* Without memory for a record the task is a group of its own,
         * arrived when spawned. */
        g = weft__groups_adopt(&s->groups, e);
        return g ? g->first_ns : e->spawned_ns;
    }
    if ((g = weft__groups_join(&s->groups, e)))
        return g->first_ns;
    /* Alone in its group so far, the task needs no record: remembering its
     * arrival is enough for tasks that may name it as their group later. If
     * memory runs out, such a group starts at its first other task. */
    (void)weft__seen_add(&s->groups.seen, e->task_id, e->spawned_ns);
    return e->spawned_ns;
}

/* e exits or leaves: the inverse of arrival_first_ns. */
static void arrival_forget(arrival_state *s, const weft_sched_entity *e)
{
    if (e->group == e->task_id && weft__seen_remove(&s->groups.seen, e->task_id, NULL))
        return;
    weft__groups_release(&s->groups, e);
}

static void arrival_push(void *state, weft_sched_entity *e)
{
    arrival_state *s = state;
    uint64_t first = arrival_first_ns(s, e);
    e->link[3] = (void *)(uintptr_t)first;
    arrival_key key = {first, e->spawned_ns};
    weft_sched_entity *tail = s->lane.tail;
    if (!tail || !key_less(key, e, key_of(tail), tail))
        list_append(&s->lane, e, WHERE_LANE);
    else if (heap_reserve(s))
        heap_insert(s, e);
    else
        list_append(&s->overflow, e, WHERE_OVERFLOW);
}

/* With the heap empty, nothing moves overflowed tasks into it (heap pops
 * do): give them another try at the room, and let the oldest of those
 * that get none compete with the lane's head, or a steady stream of
 * spawns would keep them waiting for the lane to drain. */
static weft_sched_entity *take_overflow_before_lane(arrival_state *s)
{
    weft_sched_entity *waiting;
    while ((waiting = s->overflow.head) && heap_reserve(s)) {
        list_unlink(&s->overflow, waiting);
        heap_insert(s, waiting);
    }
    weft_sched_entity *lane = s->lane.head;
    if (!waiting || s->size > 0 ||
        (lane && !key_less(key_of(waiting), waiting, key_of(lane), lane)))
        return NULL;
    list_unlink(&s->overflow, waiting);
    return waiting;
}

static weft_sched_entity *arrival_pop(void *state)
{
    arrival_state *s = state;
    if (s->overflow.head && s->size == 0) {
        weft_sched_entity *e = take_overflow_before_lane(s);
        if (e)
            return e;
    }
    weft_sched_entity *lane = s->lane.head;
    if (lane && (s->size == 0 || key_less(key_of(lane), lane, s->heap[0].key, s->heap[0].e))) {
        list_unlink(&s->lane, lane);
        return lane;
    }
    if (s->size > 0) {
        weft_sched_entity *e = s->heap[0].e;
        heap_delete(s, 0);
        weft_sched_entity *waiting = s->overflow.head;
        if (waiting) {
            list_unlink(&s->overflow, waiting);
            heap_insert(s, waiting);
        } else {
            heap_maybe_shrink(s);
        }
        return e;
    }
    weft_sched_entity *e = s->overflow.head;
    if (e)
        list_unlink(&s->overflow, e);
    return e;
}

static void arrival_remove(void *state, weft_sched_entity *e)
{
    arrival_state *s = state;
    uintptr_t where = WHERE(e);
    if (where == WHERE_LANE)
        list_unlink(&s->lane, e);
    else if (where == WHERE_OVERFLOW)
        list_unlink(&s->overflow, e);
    else
        heap_delete(s, where);
    /* The task leaves this worker's queue (stolen, or cancelled): it may
     * exit elsewhere, so stop counting it in its group here. */
    arrival_forget(s, e);
}

static void arrival_charge(void *state, weft_sched_entity *e, uint64_t ran_ns)
{
    (void)state, (void)e, (void)ran_ns;
}

static void arrival_exit(void *state, weft_sched_entity *e)
{
    arrival_forget(state, e);
}

WEFT_API const weft_policy weft_policy_arrival_fifo = {
    .name = "arrival_fifo",
    .state_size = sizeof(arrival_state),
    .init = arrival_init,
    .fini = arrival_fini,
    .push = arrival_push,
    .pop = arrival_pop,
    .remove = arrival_remove,
    .charge = arrival_charge,
    .exit = arrival_exit,
};
