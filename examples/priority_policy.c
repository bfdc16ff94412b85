/* A complete user-defined policy, as a template for your own: strict
 * priority by spawn group, FIFO within a priority.
 *
 * The state is 64 FIFO lists and a bitmap of the non-empty ones, so every
 * operation is O(1): push appends, pop takes the head of the lowest set bit.
 * The entity's link[0] and link[1] are the list pointers (a policy may use
 * link[] freely while it holds a task). There is no service accounting, so
 * charge is left NULL: the runtime then does not time runs for it unless
 * something else needs the clock.
 *
 * Build with -DPRIORITY_POLICY_DEMO for a small demonstration program. */
#include "priority_policy.h"

#include <errno.h>
#include <stdio.h>

#include <errno.h>
#include <string.h>

#define LEVELS 64

typedef struct level {
    weft_sched_entity *head, *tail;
} level;

typedef struct priority_state {
    level levels[LEVELS];
    uint64_t nonempty; /* bit i: levels[i] has tasks */
} priority_state;

static unsigned level_of(const weft_sched_entity *e)
{
    if (!(e->group >> 63))
        return LEVELS - 1; /* not spawned with EXAMPLE_PRIORITY() */
    uint64_t p = e->group & ~(1ull << 63);
    return p < LEVELS ? (unsigned)p : LEVELS - 1;
}

static int prio_init(void *state, const void *config)
{
    if (config)
        return -EINVAL; /* takes no configuration */
    memset(state, 0, sizeof(priority_state));
    return 0;
}

static void prio_push(void *state, weft_sched_entity *e)
{
    priority_state *s = state;
    unsigned i = level_of(e);
    level *l = &s->levels[i];
    e->link[0] = NULL;    /* next */
    e->link[1] = l->tail; /* prev */
    if (l->tail)
        l->tail->link[0] = e;
    else
        l->head = e;
    l->tail = e;
    s->nonempty |= 1ull << i;
}

static void unlink_entity(priority_state *s, weft_sched_entity *e)
{
    unsigned i = level_of(e);
    level *l = &s->levels[i];
    weft_sched_entity *next = e->link[0], *prev = e->link[1];
    if (prev)
        prev->link[0] = next;
    else
        l->head = next;
    if (next)
        next->link[1] = prev;
    else
        l->tail = prev;
    if (!l->head)
        s->nonempty &= ~(1ull << i);
}

static weft_sched_entity *prio_pop(void *state)
{
    priority_state *s = state;
    if (!s->nonempty)
        return NULL;
    weft_sched_entity *e = s->levels[__builtin_ctzll(s->nonempty)].head;
    unlink_entity(s, e);
    return e;
}

static void prio_remove(void *state, weft_sched_entity *e)
{
    unlink_entity(state, e);
}

const weft_policy example_priority_policy = {
    .name = "strict_priority",
    .state_size = sizeof(priority_state),
    .init = prio_init,
    .push = prio_push,
    .pop = prio_pop,
    .remove = prio_remove,
};

#ifdef PRIORITY_POLICY_DEMO
static void *job(void *arg)
{
    printf("  ran priority %ld\n", (long)(intptr_t)arg);
    return NULL;
}

static void *demo(void *arg)
{
    static const int prios[] = {5, 1, 9, 0, 1, 3};
    for (int i = 0; i < 6; i++) {
        weft_spawn_opts o = {.queue = "prio", .group = EXAMPLE_PRIORITY(prios[i])};
        weft_spawn_ex(NULL, &o, job, (void *)(intptr_t)prios[i]);
    }
    printf("spawned priorities 5 1 9 0 1 3; they run as:\n");
    return (void *)(intptr_t)weft_wait_children();
}

int main(void)
{
    /* The main task goes to the first queue: keep it out of "prio". One
     * worker: a policy orders the tasks of its own worker's queue, and with
     * several workers an idle one is handed some of them (docs/workers.md),
     * so the order would hold per worker only. */
    weft_queue_spec q[] = {{.name = "main", .weight = 1},
                           {.name = "prio", .weight = 1, .policy = &example_priority_policy}};
    weft_config cfg = {.workers = 1, .queues = q, .nqueues = 2};
    return weft_run(&cfg, demo, NULL, NULL) < 0;
}
#endif
