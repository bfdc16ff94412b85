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
#include "ring/resource.h"
#include "ring/ring.h"
#include "sched/sched.h"
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
    weft__sched sched;
    uint64_t run_start_ns;     /* clock at the start of the current run, 0 = not read */
    uint64_t yield_check_skip; /* yield_maybe calls left before the next clock read */
    uint64_t yield_calls;      /* yield_maybe calls since its last clock read */
    uint64_t yield_last_ns;    /* yield_maybe's last clock read */
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

    /* Ring-bound resources and their cleanup (ring/resource.h). */
    weft_task **direct_owner; /* by direct slot: the holder, NULL when free */
    unsigned *close_slots;    /* direct slots waiting for a CLOSE */
    unsigned nclose;
    weft__cleanup *cleanup_head, *cleanup_tail;
    weft_task *maint;               /* the maintenance task, NULL when none runs */
    bool maint_waiting;             /* parked for jobs */
    unsigned streams_live;          /* streams whose kernel side has not ended */
    unsigned streams_abandoned;     /* ... of which the cleanup was given up on */
    weft__cleanup *abandoned;       /* their cleanup records */
    struct weft_buf_ring *bufrings; /* provided buffer rings on this ring */
    uint64_t cleanup_done, cleanup_retried, cleanup_failed;

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
    bool embedded; /* driven by weft_executor_run */
} weft__runtime;

/* Validates cfg into rt->cfg and sets up what every runtime has (task ids,
 * the root and the orphan root); workers are the caller's business.
 * Returns 0 or -EINVAL (reason in weft_last_config_error()). */
int weft__runtime_setup(weft__runtime *rt, const weft_config *cfg);

/* The worker of the calling thread, or NULL. Never inlined (DESIGN §6). */
weft__worker *weft__worker_self(void);
void weft__worker_set_self(weft__worker *w);

/* embedded: the worker is driven by a host loop (weft_executor_*): its ring
 * posts completions without DEFER_TASKRUN and signals an eventfd. */
int weft__worker_init(weft__worker *w, weft__runtime *rt, unsigned index, bool embedded);
void weft__worker_fini(weft__worker *w);
/* Runs the scheduler loop until the runtime has no live task left. */
int weft__worker_run(weft__worker *w);
/* Arms the worker's wake-up read and its clock; weft__worker_run does it. */
void weft__worker_start(weft__worker *w);
/* Runs ready tasks (and polls without blocking between slices) until none
 * is runnable (returns 0) or the clock passes until_ns (returns 1); -errno
 * from the ring. */
int weft__worker_run_ready(weft__worker *w, uint64_t until_ns);
/* The earliest armed timer, UINT64_MAX when none. */
uint64_t weft__worker_next_deadline(const weft__worker *w);
uint64_t weft__worker_live_tasks(const weft__worker *w);
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
