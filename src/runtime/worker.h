/* Workers and the runtime (internal).
 *
 * A worker owns one io_uring, one run queue, one timer heap and one stack
 * pool, and resumes only its own tasks. Its scheduler loop runs on the
 * thread's own stack (the worker fiber); a task runs until it yields, parks
 * or ends, and then switches back to that loop.
 */
#ifndef WEFT_RUNTIME_WORKER_H
#define WEFT_RUNTIME_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <weft/runtime.h>
#include <weft/stats.h>

#include "context/fiber.h"
#include "context/stack.h"
#include "io/timer.h"
#include "ring/ring.h"
#include "sched/runqueue.h"
#include "task/record.h"
#include "task/task.h"

/* Why a task switched back to its worker. */
typedef enum weft__switch_reason {
    SWITCH_YIELD, /* requeue at the back */
    SWITCH_PARK,  /* blocked: requeue only if a wake raced the park */
    SWITCH_EXIT,  /* finished: release its stack and the runtime's reference */
} weft__switch_reason;

typedef struct weft__worker_counters {
    uint64_t spawned, completed, cancelled, panicked;
    uint64_t switches, parks;
} weft__worker_counters;

struct weft__runtime;

typedef struct weft__worker {
    struct weft__runtime *rt;
    unsigned index;
    weft__fiber fiber;          /* the scheduler loop's own context */
    weft_task *current;         /* running task, NULL in the loop */
    weft__switch_reason reason; /* set by the task before switching back */
    weft__runqueue runq;
    weft__stack_pool stacks;
    weft__timer_heap timers;
    weft__ring ring;
    weft__record_pool records; /* task records */
    weft__worker_counters count;

    /* Wakes from other threads: a locked inbox plus an eventfd that a read
     * on the ring watches, so a parked worker wakes at once. */
    pthread_mutex_t inbox_lock;
    weft_task *inbox_head, *inbox_tail;
    _Atomic bool inbox_nonempty;
    int wake_fd;
    weft__op wake_op;
    uint64_t wake_buf;
    bool wake_armed;

    void *altstack; /* for the stack-overflow report */
    size_t altstack_size;
} weft__worker;

typedef struct weft__runtime {
    weft_config cfg; /* with defaults filled in */
    int default_stack_class;
    unsigned nworkers;
    weft__worker *workers;
    _Atomic uint64_t next_task_id;
    _Atomic uint64_t live_tasks; /* spawned, not complete (pseudo-roots excluded) */
    struct weft_task root;       /* parent of background and outside-spawned tasks */
    struct weft_task orphans;    /* adopts children under WEFT_ORPHANS_ADOPT */
    weft_task *main_task;
    bool main_done;
} weft__runtime;

/* The worker of the calling thread, or NULL. Never inlined (DESIGN §6). */
weft__worker *weft__worker_self(void);
void weft__worker_set_self(weft__worker *w);

int weft__worker_init(weft__worker *w, weft__runtime *rt, unsigned index);
void weft__worker_fini(weft__worker *w);
/* Runs the scheduler loop until the runtime has no live task left. */
int weft__worker_run(weft__worker *w);
/* Queues a runnable task on its owner; from another thread it goes through
 * the owner's inbox. */
void weft__worker_schedule(weft_task *t);
/* Switches from the running task back to the worker's loop. */
static inline void weft__worker_switch_out(weft__worker *w, weft_task *t, weft__switch_reason why)
{
    w->reason = why;
    weft__fiber_switch(&t->fiber, &w->fiber, NULL, why == SWITCH_EXIT);
}

/* Task records, from the worker's slab (task/record.h). */
weft_task *weft__task_alloc(weft__worker *w);
void weft__task_free(weft__worker *w, weft_task *t);

/* Overflow reporting (overflow.c). */
int weft__overflow_install(weft__worker *w);
void weft__overflow_remove(weft__worker *w);

#endif
