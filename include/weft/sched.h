/* weft/sched.h - scheduling inside a worker: weighted queues and the
 * pluggable in-queue policies (docs/scheduling.md).
 *
 * Every worker has the queues declared in weft_config.queues. The top level
 * picks among runnable queues by virtual runtime (EEVDF: the eligible queue
 * with the earliest virtual deadline); inside a queue, the queue's policy
 * picks the task. A policy is a table of functions over an opaque state that
 * weft allocates (state_size bytes) per queue per worker; it sees tasks only
 * as weft_sched_entity records and may use their link[] words freely while
 * it holds them. All policy calls come from the owning worker's thread.
 */
#ifndef WEFT_SCHED_H
#define WEFT_SCHED_H

#include <weft/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_sched_entity {
    uint64_t task_id, group;          /* group: tasks sharing one service account */
    uint64_t spawned_ns, runnable_ns; /* arrival; last became runnable */
    uint64_t service_ns;              /* CPU time this task has had */
    void *link[4];                    /* policy-owned scratch, intrusive */
} weft_sched_entity;

/* push and pop are required (weft_run and weft_executor_create refuse a
 * queue whose policy lacks either, with -EINVAL); every other hook may be
 * NULL. A pop does not always lead to a run: a worker handing tasks to an
 * idle one pops its whole queue and pushes back, unrun and uncharged and in
 * the order they were popped, the tasks that stay. A policy whose pushes
 * in pop order restore its order (FIFO among equals, as every built-in)
 * keeps it; one that pops LIFO sees its stack reversed, and one that keeps
 * state across pops (QLAS's round-robin turn) sees it advance. */
typedef struct weft_policy {
    const char *name;
    size_t state_size; /* zeroed before init */
    /* Returns 0 or -errno (the runtime then fails to start with it). Called
     * once per worker, and once more (then fini) on a scratch state while
     * the config is checked, on the thread starting the runtime, so that a
     * refused policy_config is reported there (weft_last_config_error). */
    int (*init)(void *state, const void *config);
    void (*fini)(void *state);
    /* e became runnable. */
    void (*push)(void *state, weft_sched_entity *e);
    /* The next entity to run, removed from the policy; NULL when empty. */
    weft_sched_entity *(*pop)(void *state);
    /* e leaves without being popped. The runtime does not call this today:
     * every task leaves its policy through pop (a cancelled queued task is
     * popped like any other, then ends or sees its cancellation; a task
     * handed to another worker is popped, then exit is called). The
     * built-ins implement it, and their tests call it directly. */
    void (*remove)(void *state, weft_sched_entity *e);
    /* e ran for ran_ns (called after each run, before e is pushed again).
     * e may never have been pushed: a task the LIFO slot ran (spawned with
     * WEFT_TASK_SPAWN_LIFO, or woken with lifo_slot) bypasses push and
     * pop, so charge and exit must take a task they have not seen. */
    void (*charge)(void *state, weft_sched_entity *e, uint64_t ran_ns);
    /* e's task finished, or moved to another worker after a pop (its
     * account there starts afresh); it is not in the policy. */
    void (*exit)(void *state, weft_sched_entity *e);
} weft_policy;

/* The built-ins. Only QLAS takes a policy_config; the others refuse one
 * (-EINVAL: weft_run and weft_executor_create fail, naming the queue). */
/* Order of becoming runnable: a woken task goes to the back. */
WEFT_API extern const weft_policy weft_policy_runnable_fifo;
/* Groups ordered by first arrival, FIFO inside a group; a task keeps its
 * place across sleeps and yields: a yield lets other queues run, but in
 * this queue only what arrived earlier (a task that yields in a loop
 * holds its later siblings off until it parks or ends). */
WEFT_API extern const weft_policy weft_policy_arrival_fifo;
/* Least attained service of the task's group first; FIFO among equals. */
WEFT_API extern const weft_policy weft_policy_las;
/* Quantised LAS: FIFO buckets by log2 of the group's attained service,
 * lowest bucket first, with a periodic round-robin pass over the buckets so
 * that old groups are never starved. Config: weft_qlas_config or NULL. */
WEFT_API extern const weft_policy weft_policy_qlas;

typedef struct weft_qlas_config {
    uint64_t quantum_ns;  /* service below this is bucket 0; 0 = 100 us; at most 60 s */
    unsigned rr_interval; /* every Nth pick is a round-robin pick; 0 = 16; at most 2^20 */
} weft_qlas_config;

#ifdef __cplusplus
}
#endif
#endif
