/* Least-attained-service policies (DESIGN §4): las and qlas.
 *
 * Both charge service to the task's group and order by it, FIFO among
 * equals; group_table.h keeps the group records. A task that names another
 * task's group is accounted to it from its first push, so that the group's
 * tasks queue together from the start. A task that is its own group, the
 * default, is accounted at push only if its group already has a record
 * (tasks name it as their group, or it has run and slept before), and
 * otherwise at its first charge: until it has run it has no service, and
 * finding it in a table of every live task would cost a cache miss per
 * spawn. So a task queued before any task named its id runs once as a group
 * of its own, and adds its service to the shared account from then on.
 *
 * That first charge is also held back by one call: most spawned tasks run
 * once and exit, and would make their record only to free it. The charge
 * waits in `pending`, every other entry point applies it first (so the delay
 * is never visible), and an exit applies it only to a record that outlives
 * the task.
 *
 * las orders groups by (service_ns, seq), seq counting when a group became
 * runnable, each group holding an intrusive FIFO of its runnable tasks
 * (link[0] next, link[1] prev, link[2] the group). Clockworker's LAS put
 * every task in a heap and cost about 16x its FIFO; here:
 *  - a group with zero service sorts before all others, and among those by
 *    seq, i.e. in the order they became runnable: they wait in O(1) FIFO
 *    lanes, not in the heap. There are two lanes, merged by seq at pop: one
 *    of groups with a record, and one of *solo* tasks, tasks with no record
 *    (link[2] NULL, seq in link[3]), which is where every newly spawned task
 *    of the default one-group-per-task setting goes;
 *  - the heap holds groups with service, not tasks; a group moves only when
 *    it is charged or becomes runnable or idle. It is an array of
 *    {service, seq, group}, the index kept in the record. When the array
 *    cannot grow, the group waits in the lane as if it had no service until
 *    memory is back; it is never lost.
 *
 * qlas replaces the heap by 64 FIFO buckets (intrusive lists through
 * link[0..1], the bucket in link[2], the group or NULL in link[3]) and a
 * bitmap of the non-empty ones: a task goes to the bucket of its group's
 * service when it is pushed (0 without a record), pop takes the lowest
 * non-empty bucket, and every rr_interval-th pop instead takes the first
 * non-empty bucket after a round-robin cursor, so that long-running groups
 * in high buckets still get a share. Every operation is O(1).
 */
#include <errno.h>
#include <assert.h>
#include <string.h>
#include <weft/sched.h>

#include "common/saturate.h"
#include "sched/group_table.h"

#define HEAP_MIN_CAPACITY 64
#define HEAP_SHRINK_FLOOR 1024

/* ---- the ledger both policies keep ---------------------------------------- */

/* The group records, the last task popped and the deferred first charge:
 * the bookkeeping of the file comment that las and qlas share. Each policy
 * passes its own way of adding service to a group (re-sorting the heap,
 * moving to another bucket); the helpers are inlined with it. */
typedef struct ledger {
    /* The last task popped and its group (NULL: solo), so that the charge
     * that follows needs no lookup. Cleared when that task exits or is
     * removed, which may free the group. */
    weft_sched_entity *last;
    weft__group *last_group;
    /* A charge whose group is not known yet (see ledger_charge). */
    weft_sched_entity *pending;
    uint64_t pending_ns;
    weft__groups groups;
} ledger;

typedef void add_service_fn(void *state, weft__group *g, uint64_t ran_ns);

/* Applies a pending charge: every entry point does this first, so that the
 * deferral is never visible. */
static inline __attribute__((always_inline)) void ledger_flush(ledger *l, void *state,
                                                               add_service_fn *add)
{
    weft_sched_entity *e = l->pending;
    if (__builtin_expect(e == NULL, 1))
        return;
    l->pending = NULL;
    weft__group *g = weft__groups_adopt(&l->groups, e);
    if (!g) /* no memory for a record: the task stays without service */
        return;
    add(state, g, l->pending_ns);
    /* e is accounted now: its later charges go to g directly, and its
     * exit must not take the solo shortcut (weft__groups_exit_pending). */
    if (l->last == e)
        l->last_group = g;
}

static inline __attribute__((always_inline)) void
ledger_charge(ledger *l, void *state, add_service_fn *add, weft_sched_entity *e, uint64_t ran_ns)
{
    if (ran_ns == 0)
        return;
    if (l->pending == e) {
        l->pending_ns = weft__add_sat(l->pending_ns, ran_ns);
        return;
    }
    ledger_flush(l, state, add);
    if (l->last == e && l->last_group) {
        add(state, l->last_group, ran_ns);
        return;
    }
    /* A solo task that ran for the first time (or one the runtime ran
     * without popping it): see the file comment. */
    l->pending = e;
    l->pending_ns = ran_ns;
}

static inline __attribute__((always_inline)) void
ledger_exit(ledger *l, void *state, add_service_fn *add, weft_sched_entity *e)
{
    bool accounted = true;
    if (l->pending == e) {
        /* Its service matters only to a group that outlives it. */
        l->pending = NULL;
        weft__group *g =
            weft__groups_exit_pending(&l->groups, e, l->last == e && !l->last_group, &accounted);
        if (g)
            add(state, g, l->pending_ns);
    } else {
        ledger_flush(l, state, add);
    }
    if (l->last == e)
        l->last = NULL;
    if (accounted)
        weft__groups_release(&l->groups, e);
}

/* A task popped: the charge that follows goes to g (NULL: not known yet). */
static inline void ledger_popped(ledger *l, weft_sched_entity *e, weft__group *g)
{
    l->last = e;
    l->last_group = g;
}

/* e leaves without exiting (removed from the queue). */
static inline void ledger_removed(ledger *l, weft_sched_entity *e)
{
    if (l->last == e)
        l->last = NULL;
    /* The task leaves this worker's queue (stolen, or cancelled): it may
     * exit elsewhere, so stop counting it in its group here. */
    weft__groups_release(&l->groups, e);
}

/* ---- las -------------------------------------------------------------- */

/* (service_ns, seq) as one 128-bit number: one comparison, which compiles
 * without branches, where the pair needed two. */
typedef unsigned __int128 las_key;

typedef struct las_entry {
    las_key key;
    weft__group *g;
} las_entry;

typedef struct las_state {
    las_entry *heap; /* runnable groups with service > 0 */
    size_t size, capacity;
    weft__group *lane_head, *lane_tail;       /* runnable groups with service 0, by seq */
    weft_sched_entity *solo_head, *solo_tail; /* runnable tasks with no record, by seq */
    uint64_t next_seq;
    ledger led;
} las_state;

#define NEXT(e)     ((weft_sched_entity *)(e)->link[0])
#define PREV(e)     ((weft_sched_entity *)(e)->link[1])
#define GROUP(e)    ((weft__group *)(e)->link[2])
#define SOLO_SEQ(e) ((uint64_t)(uintptr_t)(e)->link[3])

static inline las_key las_key_of(const weft__group *g)
{
    return (las_key)g->service_ns << 64 | g->seq;
}

static inline void las_place(las_state *s, size_t i, las_entry entry)
{
    s->heap[i] = entry;
    entry.g->heap_index = (uint32_t)i;
}

/* Moves entry up from the hole at i, but not above top. */
static void las_sift_up(las_state *s, size_t i, size_t top, las_entry entry)
{
    while (i > top) {
        size_t parent = (i - 1) / 2;
        if (!(entry.key < s->heap[parent].key))
            break;
        las_place(s, i, s->heap[parent]);
        i = parent;
    }
    las_place(s, i, entry);
}

static void las_sift_down(las_state *s, size_t i, las_entry entry)
{
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= s->size)
            break;
        child += child + 1 < s->size && s->heap[child + 1].key < s->heap[child].key;
        if (!(s->heap[child].key < entry.key))
            break;
        las_place(s, i, s->heap[child]);
        i = child;
    }
    las_place(s, i, entry);
}

static void las_heap_delete(las_state *s, size_t i)
{
    s->heap[i].g->heap_index = WEFT__GROUP_IDLE;
    las_entry last = s->heap[--s->size];
    if (i == s->size)
        return;
    if (i > 0 && last.key < s->heap[(i - 1) / 2].key) {
        las_sift_up(s, i, 0, last);
        return;
    }
    /* The last leaf almost always belongs near the bottom again, so walk
     * the hole down to a leaf (one comparison a level, not two) and let it
     * rise from there (Floyd). */
    size_t hole = i;
    for (;;) {
        size_t child = 2 * hole + 1;
        if (child >= s->size)
            break;
        child += child + 1 < s->size && s->heap[child + 1].key < s->heap[child].key;
        las_place(s, hole, s->heap[child]);
        hole = child;
    }
    las_sift_up(s, hole, i, last);
}

/* Room for one more group in the heap; false when the array cannot grow. The
 * index must fit the record's 32-bit heap_index, below the two tags. */
static bool las_heap_reserve(las_state *s)
{
    if (s->size < s->capacity)
        return true;
    size_t capacity = s->capacity ? s->capacity * 2 : HEAP_MIN_CAPACITY;
    if (capacity >= WEFT__GROUP_LANE)
        return false;
    las_entry *heap = weft__sched_realloc(s->heap, capacity * sizeof *heap);
    if (!heap)
        return false;
    s->heap = heap;
    s->capacity = capacity;
    return true;
}

static void las_heap_maybe_shrink(las_state *s)
{
    if (s->capacity <= HEAP_SHRINK_FLOOR || s->size >= s->capacity / 8)
        return;
    las_entry *heap = weft__sched_realloc(s->heap, s->capacity / 2 * sizeof *heap);
    if (heap) {
        s->heap = heap;
        s->capacity /= 2;
    }
}

static void lane_append(las_state *s, weft__group *g)
{
    g->heap_index = WEFT__GROUP_LANE;
    g->next = NULL;
    g->prev = s->lane_tail;
    if (s->lane_tail)
        s->lane_tail->next = g;
    else
        s->lane_head = g;
    s->lane_tail = g;
}

static void lane_unlink(las_state *s, weft__group *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else
        s->lane_head = g->next;
    if (g->next)
        g->next->prev = g->prev;
    else
        s->lane_tail = g->prev;
    g->heap_index = WEFT__GROUP_IDLE;
}

/* g became runnable, or was charged in the lane: put it where its service
 * says, keeping its seq. */
static void las_enqueue_group(las_state *s, weft__group *g)
{
    if (g->service_ns == 0 || !las_heap_reserve(s))
        lane_append(s, g);
    else
        las_sift_up(s, s->size++, 0, (las_entry){las_key_of(g), g});
}

/* g has no runnable task left. */
static void las_dequeue_group(las_state *s, weft__group *g)
{
    if (g->heap_index == WEFT__GROUP_LANE)
        lane_unlink(s, g);
    else
        las_heap_delete(s, g->heap_index);
}

/* Unlinks e from a FIFO with the given head and tail. */
static inline void fifo_unlink(weft_sched_entity **head, weft_sched_entity **tail,
                               weft_sched_entity *e)
{
    if (PREV(e))
        PREV(e)->link[0] = NEXT(e);
    else
        *head = NEXT(e);
    if (NEXT(e))
        NEXT(e)->link[1] = PREV(e);
    else
        *tail = PREV(e);
}

static inline void fifo_append(weft_sched_entity **head, weft_sched_entity **tail,
                               weft_sched_entity *e)
{
    e->link[0] = NULL;
    e->link[1] = *tail;
    if (*tail)
        (*tail)->link[0] = e;
    else
        *head = e;
    *tail = e;
}

static void las_add_service(void *state, weft__group *g, uint64_t ran_ns)
{
    las_state *s = state;
    g->service_ns = weft__add_sat(g->service_ns, ran_ns);
    if (g->heap_index == WEFT__GROUP_LANE) {
        /* Other tasks of the group are queued: it now sorts after the
         * zero-service groups, by (service, seq) like any other. */
        if (las_heap_reserve(s)) {
            lane_unlink(s, g);
            las_enqueue_group(s, g);
        }
    } else if (g->heap_index != WEFT__GROUP_IDLE) {
        size_t i = g->heap_index;
        s->heap[i].key = las_key_of(g);
        las_sift_down(s, i, s->heap[i]);
    }
}

static inline void las_flush(las_state *s)
{
    ledger_flush(&s->led, s, las_add_service);
}

static int las_init(void *state, const void *config)
{
    if (config)
        return -EINVAL; /* takes none: a config meant for another policy */
    las_state *s = state;
    memset(s, 0, sizeof *s);
    weft__groups_init(&s->led.groups);
    return 0;
}

static void las_fini(void *state)
{
    las_state *s = state;
    free(s->heap);
    weft__groups_fini(&s->led.groups);
    memset(s, 0, sizeof *s);
}

/* The record of e's group at push, if it has one or needs one. A task that
 * is its own group and has run (e->service_ns, kept by the scheduler) but
 * has no record here ran on another worker and was handed over: its record
 * there went with its exit, so its service comes along in a record made
 * here, and it does not start again at zero. (Groups that several tasks
 * share keep one account per worker: docs/workers.md.) */
static weft__group *record_at_push(weft__groups *groups, weft_sched_entity *e, bool *carried)
{
    if (e->group != e->task_id)
        return weft__groups_adopt(groups, e);
    weft__group *g = weft__groups_join(groups, e);
    if (g || e->service_ns == 0)
        return g;
    g = weft__groups_adopt(groups, e);
    if (g && g->service_ns < e->service_ns) {
        g->service_ns = e->service_ns;
        *carried = true;
    }
    return g;
}

static void las_push(void *state, weft_sched_entity *e)
{
    las_state *s = state;
    las_flush(s);
    bool carried = false; /* las keys by service_ns itself */
    weft__group *g = record_at_push(&s->led.groups, e, &carried);
    e->link[2] = g;
    if (!g) {
        e->link[3] = (void *)(uintptr_t)s->next_seq++;
        fifo_append(&s->solo_head, &s->solo_tail, e);
        return;
    }
    bool idle = !g->head;
    fifo_append(&g->head, &g->tail, e);
    if (idle) {
        g->seq = s->next_seq++;
        las_enqueue_group(s, g);
    }
}

static weft_sched_entity *las_pop(void *state)
{
    las_state *s = state;
    las_flush(s);
    weft_sched_entity *e = s->solo_head;
    weft__group *g = s->lane_head;
    if (e && (!g || SOLO_SEQ(e) < g->seq)) {
        fifo_unlink(&s->solo_head, &s->solo_tail, e);
        ledger_popped(&s->led, e, NULL);
        return e;
    }
    if (!g) {
        if (s->size == 0)
            return NULL;
        g = s->heap[0].g;
    }
    e = g->head;
    fifo_unlink(&g->head, &g->tail, e);
    if (!g->head) {
        las_dequeue_group(s, g);
        las_heap_maybe_shrink(s);
    }
    ledger_popped(&s->led, e, g);
    return e;
}

static void las_remove(void *state, weft_sched_entity *e)
{
    las_state *s = state;
    las_flush(s);
    weft__group *g = GROUP(e);
    if (!g) {
        fifo_unlink(&s->solo_head, &s->solo_tail, e);
    } else {
        fifo_unlink(&g->head, &g->tail, e);
        if (!g->head)
            las_dequeue_group(s, g);
    }
    ledger_removed(&s->led, e);
}

static void las_charge(void *state, weft_sched_entity *e, uint64_t ran_ns)
{
    las_state *s = state;
    ledger_charge(&s->led, s, las_add_service, e, ran_ns);
}

static void las_exit(void *state, weft_sched_entity *e)
{
    las_state *s = state;
    ledger_exit(&s->led, s, las_add_service, e);
}

WEFT_API const weft_policy weft_policy_las = {
    .name = "las",
    .state_size = sizeof(las_state),
    .init = las_init,
    .fini = las_fini,
    .push = las_push,
    .pop = las_pop,
    .remove = las_remove,
    .charge = las_charge,
    .exit = las_exit,
};

/* ---- qlas ------------------------------------------------------------- */

#define QLAS_BUCKETS             64
#define QLAS_DEFAULT_QUANTUM_NS  100000u
#define QLAS_DEFAULT_RR_INTERVAL 16u
/* Beyond these the configuration is surely a unit mistake: a quantum of over
 * a minute puts every group in bucket 0 for the life of most programs, and
 * a round-robin pass every million picks is no starvation guard at all. */
#define QLAS_MAX_QUANTUM_NS  (60ull * 1000 * 1000 * 1000)
#define QLAS_MAX_RR_INTERVAL (1u << 20)

typedef struct qlas_state {
    weft_sched_entity *head[QLAS_BUCKETS], *tail[QLAS_BUCKETS];
    uint64_t nonempty; /* bit b: bucket b has tasks */
    uint64_t quantum_ns;
    unsigned rr_interval;
    unsigned until_rr; /* pops left before the next round-robin pick */
    unsigned cursor;   /* bucket of the last round-robin pick */
    ledger led;
} qlas_state;

#define BUCKET(e) ((unsigned)(uintptr_t)(e)->link[2])

static uint8_t qlas_bucket(uint64_t service_ns, uint64_t quantum_ns)
{
    if (service_ns < quantum_ns)
        return 0;
    unsigned b = 1 + (63 - (unsigned)__builtin_clzll(service_ns / quantum_ns));
    return b < QLAS_BUCKETS ? (uint8_t)b : QLAS_BUCKETS - 1;
}

static void qlas_add_service(void *state, weft__group *g, uint64_t ran_ns)
{
    qlas_state *s = state;
    g->service_ns = weft__add_sat(g->service_ns, ran_ns);
    /* Computed here rather than at each push: the bucket changes only when
     * the service does, and push is the hotter call. */
    g->bucket = qlas_bucket(g->service_ns, s->quantum_ns);
}

/* A task whose group gets no record (no memory) stays in bucket 0. */
static inline void qlas_flush(qlas_state *s)
{
    ledger_flush(&s->led, s, qlas_add_service);
}

static int qlas_init(void *state, const void *config)
{
    const weft_qlas_config *c = config;
    qlas_state *s = state;
    memset(s, 0, sizeof *s);
    s->quantum_ns = c && c->quantum_ns ? c->quantum_ns : QLAS_DEFAULT_QUANTUM_NS;
    s->rr_interval = c && c->rr_interval ? c->rr_interval : QLAS_DEFAULT_RR_INTERVAL;
    if (s->quantum_ns > QLAS_MAX_QUANTUM_NS || s->rr_interval > QLAS_MAX_RR_INTERVAL)
        return -EINVAL;
    s->until_rr = s->rr_interval;
    weft__groups_init(&s->led.groups);
    return 0;
}

static void qlas_fini(void *state)
{
    qlas_state *s = state;
    weft__groups_fini(&s->led.groups);
    memset(s, 0, sizeof *s);
}

static void qlas_push(void *state, weft_sched_entity *e)
{
    qlas_state *s = state;
    qlas_flush(s);
    bool carried = false;
    weft__group *g = record_at_push(&s->led.groups, e, &carried);
    if (carried)
        g->bucket = qlas_bucket(g->service_ns, s->quantum_ns);
    unsigned b = g ? g->bucket : 0;
    e->link[2] = (void *)(uintptr_t)b;
    e->link[3] = g;
    fifo_append(&s->head[b], &s->tail[b], e);
    s->nonempty |= UINT64_C(1) << b;
}

static void qlas_unlink(qlas_state *s, weft_sched_entity *e)
{
    unsigned b = BUCKET(e);
    fifo_unlink(&s->head[b], &s->tail[b], e);
    if (!s->head[b])
        s->nonempty &= ~(UINT64_C(1) << b);
}

static weft_sched_entity *qlas_pop(void *state)
{
    qlas_state *s = state;
    qlas_flush(s);
    if (!s->nonempty)
        return NULL;
    unsigned b;
    if (--s->until_rr == 0) {
        s->until_rr = s->rr_interval;
        /* The first non-empty bucket after the cursor, wrapping around
         * (for cursor 63 the unsigned shift gives 0: no bucket is after). */
        uint64_t after = s->nonempty & ~((UINT64_C(2) << s->cursor) - 1);
        b = (unsigned)__builtin_ctzll(after ? after : s->nonempty);
        s->cursor = b;
    } else {
        b = (unsigned)__builtin_ctzll(s->nonempty);
    }
    weft_sched_entity *e = s->head[b];
    qlas_unlink(s, e);
    ledger_popped(&s->led, e, e->link[3]);
    return e;
}

static void qlas_remove(void *state, weft_sched_entity *e)
{
    qlas_state *s = state;
    qlas_flush(s);
    qlas_unlink(s, e);
    ledger_removed(&s->led, e);
}

static void qlas_charge(void *state, weft_sched_entity *e, uint64_t ran_ns)
{
    qlas_state *s = state;
    ledger_charge(&s->led, s, qlas_add_service, e, ran_ns);
}

static void qlas_exit(void *state, weft_sched_entity *e)
{
    qlas_state *s = state;
    ledger_exit(&s->led, s, qlas_add_service, e);
}

WEFT_API const weft_policy weft_policy_qlas = {
    .name = "qlas",
    .state_size = sizeof(qlas_state),
    .init = qlas_init,
    .fini = qlas_fini,
    .push = qlas_push,
    .pop = qlas_pop,
    .remove = qlas_remove,
    .charge = qlas_charge,
    .exit = qlas_exit,
};
