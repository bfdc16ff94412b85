/* Group records for the built-in policies (DESIGN §4).
 *
 * arrival_fifo, las and qlas order a task by something that belongs to its
 * group (first arrival, attained service), so each policy state keeps a
 * weft__group record per group, made when needed and freed when the group's
 * last accounted task leaves: memory follows the live groups, not every group
 * ever seen.
 *
 * Which tasks are accounted must be remembered outside the tasks, since a
 * policy owns e->link[] only while e is queued. A task is accounted from the
 * call that takes it in (adopt, or join when its group already has a record)
 * until its exit or remove (remove is how a task leaves this worker, e.g.
 * when it is stolen, and it may exit elsewhere). A task that is its own group,
 * the default, needs only the record's `self` flag; other tasks are kept in a
 * second table, task id -> record.
 *
 * A lookup in a table of a million live tasks is a cache miss, and two per
 * task made arrival_fifo's spawn+join 3x FIFO's. So tasks that are their own
 * group are taken in lazily:
 *  - las and qlas join at push only if the group already has a record, and
 *    adopt at the task's first charge: a task that has not run has no
 *    service to account;
 *  - arrival_fifo notes only the task's arrival, in `seen` (below); a record
 *    made later for its id, by a task naming it as group, takes it over.
 * With the default one group per task, spawn+run+exit then meets an empty
 * table or one of a few hot entries.
 *
 * The tables are open-addressing hash maps with linear probing, capacity a
 * power of two, Fibonacci hashing (ids are often sequential), growth by
 * doubling at 3/4 load and backward-shift deletion (no tombstones, so a
 * long-lived table with churn never degrades). Lookups are inline: push, pop
 * and charge are on the scheduler's hot path.
 *
 * When memory runs out (a record, or a table that cannot grow) adopt returns
 * NULL and the task is not accounted: the policy treats it as a group of its
 * own with no service. Nothing is lost or leaked, and the next call tries
 * again. All calls come from the owning worker.
 */
#ifndef WEFT_SCHED_GROUP_TABLE_H
#define WEFT_SCHED_GROUP_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <weft/sched.h>

#include "common/fault.h"

/* heap_index values of a group that is not in a policy's heap. */
#define WEFT__GROUP_IDLE UINT32_MAX        /* no runnable task */
#define WEFT__GROUP_LANE (UINT32_MAX - 1u) /* las: in the zero-service lane */

typedef struct weft__group {
    uint64_t id;         /* the group id */
    uint64_t service_ns; /* las, qlas: ran_ns charged to the group's tasks */
    union {
        uint64_t first_ns; /* arrival_fifo: spawned_ns of the first task seen */
        uint64_t seq;      /* las: when the group last became runnable */
    };
    weft_sched_entity *head, *tail; /* las: the group's runnable tasks, FIFO */
    /* las: neighbours in the zero-service lane; `next` also links the cache
     * of free records. */
    struct weft__group *prev, *next;
    uint32_t tasks;      /* tasks accounted to the group (see above) */
    uint32_t heap_index; /* las: index in the heap, or WEFT__GROUP_IDLE/_LANE */
    bool self;           /* the task whose id is `id` is accounted */
    uint8_t bucket;      /* qlas: bucket of service_ns */
} weft__group;

typedef struct weft__group_slot {
    uint64_t key;
    void *value; /* NULL: the slot is empty */
} weft__group_slot;

typedef struct weft__group_table {
    weft__group_slot *slots; /* NULL until the first insert */
    size_t mask;             /* capacity - 1 */
    unsigned shift;          /* 64 - log2(capacity): the hash keeps the top bits */
    size_t count;
} weft__group_table;

/* arrival_fifo must remember every live task that is its own group, since a
 * task naming it as group later arrives with it. Task ids are handed out in
 * order, so the ids live on a worker come in runs: they are kept in pages of
 * 64 consecutive ids (a bitmap and each task's spawned_ns), found through a
 * small table of pages and a cached page for each direction, which makes
 * spawn and exit in id order touch memory in order. A page is freed when its
 * last task leaves, except the one new ids go to; at worst, one live task per
 * page, that is 520 bytes a task. */
#define WEFT__SEEN_PAGE_IDS 64

typedef struct weft__seen_page {
    uint64_t live; /* bit i: task (key * 64 + i) is remembered */
    uint64_t spawned_ns[WEFT__SEEN_PAGE_IDS];
} weft__seen_page;

typedef struct weft__seen {
    weft__group_table pages; /* task id / 64 -> page */
    uint64_t add_key, remove_key;
    weft__seen_page *add_page, *remove_page; /* the pages used last, or NULL */
    weft__seen_page *spare;                  /* an emptied page kept for reuse */
} weft__seen;

typedef struct weft__groups {
    weft__group_table by_group; /* group id -> record */
    weft__group_table by_task;  /* task id -> record, tasks not their own group */
    weft__group *cache;         /* freed records kept for reuse, through `next` */
    unsigned cached;
    /* arrival_fifo: tasks that are their own group and have no record. A
     * record created for such a task's id takes the task in, with its
     * spawned_ns as the group's first arrival. */
    weft__seen seen;
} weft__groups;

/* realloc that honours WEFT_FAULT_ALLOC like weft__malloc/weft__calloc, so
 * that the policies' growable arrays take part in fault-injection tests. */
static inline void *weft__sched_realloc(void *p, size_t n)
{
    if (weft__fault_hit(WEFT_FAULT_ALLOC))
        return NULL;
    return realloc(p, n);
}

static inline size_t weft__group_table_home(const weft__group_table *t, uint64_t key)
{
    return (size_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> t->shift);
}

/* Returns the value stored for key, or NULL. */
static inline void *weft__group_table_find(const weft__group_table *t, uint64_t key)
{
    if (t->count == 0)
        return NULL;
    for (size_t i = weft__group_table_home(t, key);; i = (i + 1) & t->mask) {
        const weft__group_slot *s = &t->slots[i];
        if (!s->value)
            return NULL;
        if (s->key == key)
            return s->value;
    }
}

/* Stores key -> value (non-NULL); key must not be present. Returns 0, or
 * -ENOMEM when the table is full and cannot grow (it still accepts entries
 * up to 7/8 load when growing fails). */
int weft__group_table_insert(weft__group_table *t, uint64_t key, void *value);
/* Removes key; returns its value, or NULL when it was not present. */
void *weft__group_table_erase(weft__group_table *t, uint64_t key);
/* Frees the slots (not the values). */
void weft__group_table_fini(weft__group_table *t);

/* Remembers task id as seen and live, with its spawned_ns. Returns 0 or
 * -ENOMEM. */
int weft__seen_add(weft__seen *m, uint64_t id, uint64_t spawned_ns);
/* Forgets task id; returns whether it was remembered, and then its
 * spawned_ns in *spawned_ns (if non-NULL). */
bool weft__seen_remove(weft__seen *m, uint64_t id, uint64_t *spawned_ns);

void weft__groups_init(weft__groups *s);
/* Frees every record, including groups whose tasks never exited. */
void weft__groups_fini(weft__groups *s);
/* Accounts e to its group, creating the record when `create`. Use the
 * wrappers below. */
weft__group *weft__groups_account(weft__groups *s, const weft_sched_entity *e, bool create);
/* Ends e's accounting; see weft__groups_release. */
void weft__groups_unaccount(weft__groups *s, const weft_sched_entity *e);

/* Returns e's group record, accounting e to it first if it is not, or NULL
 * when memory runs out. A new record starts with zero service and first_ns =
 * e->spawned_ns, or takes over the task named by the group id from `seen`
 * with its spawned_ns. */
static inline weft__group *weft__groups_adopt(weft__groups *s, const weft_sched_entity *e)
{
    return weft__groups_account(s, e, true);
}

/* Like adopt, but never creates a record: NULL when e's group has none (or
 * when memory for remembering e runs out). Inline for the common case of a
 * policy with no records at all, e.g. spawn+run+exit with las. */
static inline weft__group *weft__groups_join(weft__groups *s, const weft_sched_entity *e)
{
    return s->by_group.count ? weft__groups_account(s, e, false) : NULL;
}

/* For a policy's exit of e while e's charge is still pending; popped_solo:
 * e was the last task popped, and from no group. Returns the record e's
 * service should go to, or NULL, and sets *accounted to whether e must still
 * be released. A task that is its own group and has no record is not
 * accounted (an accounted task keeps its record alive). One popped solo
 * whose charge never applied has no record unless a task named its id
 * since, and every such task is in by_task: with that table empty there is
 * nothing to look up, which is the common spawn-run-exit. */
static inline weft__group *weft__groups_exit_pending(weft__groups *s, const weft_sched_entity *e,
                                                     bool popped_solo, bool *accounted)
{
    bool self = e->group == e->task_id;
    weft__group *g = popped_solo && self && s->by_task.count == 0 ? NULL : weft__groups_join(s, e);
    *accounted = g || !self;
    return g;
}

/* Ends e's accounting, if it is accounted, and frees its group's record when
 * that was the group's last task. The caller must have unqueued e. */
static inline void weft__groups_release(weft__groups *s, const weft_sched_entity *e)
{
    if (s->by_group.count) /* else no task is accounted */
        weft__groups_unaccount(s, e);
}

#endif
