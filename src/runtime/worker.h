/* Workers and the runtime (internal).
 *
 * A worker owns one io_uring, its queues, its timers and one stack
 * pool, and resumes only its own tasks. Its scheduler loop runs on the
 * thread's own stack (the worker fiber); a task runs until it yields, parks
 * or ends, and then switches back to that loop.
 *
 * Several workers (docs/workers.md): each is a thread. Other threads reach
 * a worker only through two lock-free stacks (wakes of its tasks, and tasks
 * handed over to it) and, when it is parked in io_uring_enter, a MSG_RING
 * from a worker's ring or an eventfd write from any other thread. Work moves
 * from a busy worker to a hungry one by the busy one handing over about
 * half of its stealable queued tasks at its next pick, so every queue and
 * policy stays owner-only and the hot path takes no lock.
 */
#ifndef WEFT_RUNTIME_WORKER_H
#define WEFT_RUNTIME_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <weft/runtime.h>
#include <weft/stats.h>

#include "context/fiber.h"
#include "context/stack.h"
#include "common/runclock.h"
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
    /* Work moving between workers. An attempt is a spell of hunger (idle
     * with nothing to take); it succeeds when tasks arrive in it. */
    uint64_t steal_attempts, steal_successes, tasks_stolen, tasks_donated;
    uint64_t wakes_sent, wakes_msg_ring; /* to parked workers; the rest by eventfd */
    uint64_t injected;                   /* outside spawns this worker took from the inject queue */
    uint64_t inject_failed;              /* ... and could not spawn (out of memory) */
    uint64_t moved_on_wake;              /* tasks of other workers woken here and kept */
    /* Time parked in io_uring_enter, and time not parked up to busy_since
     * (an embedded worker: time inside weft_executor_run). */
    uint64_t idle_ns, busy_ns, busy_since_ns;
} weft__worker_counters;

struct weft__runtime;

/* A worker's hunger: OFF (busy, or idle and not asking), ON (idle, asking:
 * counted in nhungry), CLAIMED (a busy worker took the request and is about
 * to hand tasks over; it puts ON back if it finds nothing to give). */
enum { WEFT__HUNGER_OFF, WEFT__HUNGER_ON, WEFT__HUNGER_CLAIMED };

#define WEFT__CACHE_LINE 64

typedef struct weft__worker {
    struct weft__runtime *rt;
    unsigned index;
    weft__fiber fiber;  /* the scheduler loop's own context */
    weft_task *current; /* running task, NULL in the loop */
    /* The task that switched straight to current (weft_yield), if current
     * got the CPU that way: that switch ran on its stack after current was
     * set, so an overflow there is its (overflow.c). */
    weft_task *leaving;
    weft__switch_reason reason; /* set by the task before switching back */
    weft__sched sched;
    weft__runclock clock; /* timed runs' clock (common/runclock.h) */
    /* Task ids this worker hands out next, [id_next, id_end): a block taken
     * from the runtime's counter, so that a spawn does no locked add. That
     * add had half of spawn's own profile samples: it waits for the stores
     * to the new record before it to drain. */
    uint64_t id_next, id_end;
    uint64_t run_start_ns;     /* clock at the start of the current run, 0 = not read */
    uint64_t yield_check_skip; /* yield_maybe calls left before the next clock read */
    uint64_t yield_calls;      /* yield_maybe calls since its last clock read */
    uint64_t yield_last_ns;    /* yield_maybe's last clock read */
    weft__stack_pool stacks;
    weft__timers timers;
    weft__ring ring;
    weft__record_pool records; /* task records */
    weft__worker_counters count;
    bool threaded;      /* the runtime has several workers */
    bool wake_to_waker; /* threaded, and wake_placement WEFT_WAKE_TO_WAKER */
    bool woke_parked;   /* woke a parked worker since it last went idle */
    uint64_t owned;     /* live tasks it owns: spawned here or handed over */
    /* Of those, the runtime's own (TASK_F_UNCOUNTED: the maintenance task,
     * errands), which the task counts leave out. Sticky, all in queue 0. */
    uint64_t owned_uncounted;
    unsigned since_inject; /* picks since the inject queue was last looked at */
    /* weft_self_set_queue: the running task's new queue + 1 (0: none),
     * applied when its yield comes back to the loop, after its run so far
     * was charged to the queue it leaves. */
    unsigned queue_move;
    unsigned since_help; /* polls since it last unlinked for the other workers */
    pthread_t thread;    /* workers 1..N-1: their own threads */

    /* What other threads write, and what they read in the same breath,
     * each group on cache lines of its own (the struct is allocated
     * line-aligned: weft__calloc_aligned). Beside the owner's own fields,
     * a worker busy in a cross-worker exchange took the line from its
     * wakers at every run (since_inject) and poll (since_help). */
    /* From other threads, lock-free stacks linked through rq_next: tasks
     * of this worker woken elsewhere, and tasks handed over to it. */
    _Alignas(WEFT__CACHE_LINE) _Atomic(weft_task *) remote_wakes;
    _Atomic(weft_task *) remote_adopt;
    /* Records of this worker's finished tasks whose last reference was
     * dropped on a thread that is no worker of the runtime: taken back
     * into the record pool at the next poll (weft__task_free). */
    _Atomic(weft_task *) freed_elsewhere;
    /* Tasks spawned here that ended on other workers (TASK_R_UNLINK_AT_HOME),
     * each with the runtime's reference: this worker unlinks them from
     * their parents at its next poll, counts them ended and drops it. */
    _Atomic(weft_task *) ended_elsewhere;
    /* Tasks of this worker that a waker on another worker kept
     * (WEFT_WAKE_TO_WAKER): the waker counts them here and in the queue's
     * woken_away, this worker takes them out of owned and live. */
    _Atomic uint64_t woken_away;
    /* Set before io_uring_enter waits: wake it. With the stacks above,
     * since a waker reads it right after its push (notify), and the owner
     * looks at the stacks right after setting it. */
    _Atomic int parked;
    /* WEFT__HUNGER_*: idle, a busy worker may hand tasks over. */
    _Alignas(WEFT__CACHE_LINE) _Atomic int hunger;
    /* The heaviest weight among the queues with work here, published at
     * slice starts (0 when idle): a worker with heavier queued work hands
     * some of it over to a worker running only lighter work. A hint. */
    _Atomic uint32_t best_weight;
    /* Bit i: queue i has work here (WEFT_MAX_QUEUES is 64), published with
     * best_weight: a queue with work on one worker only is spread to the
     * others, since weights hold per worker (docs/workers.md). A hint. */
    _Atomic uint64_t queues_with_work;
    /* This worker's own copies of best_weight and queues_with_work; the
     * owner's fields again. */
    _Alignas(WEFT__CACHE_LINE) uint32_t sched_best_weight;
    uint64_t sched_queues_with_work;
    /* sched.stealable_pushes when donate last found nothing it could give
     * (UINT64_MAX: never). */
    uint64_t donate_found_none_at;
    /* Foreign threads (no ring of their own) wake a parked worker through
     * an eventfd that a read on the ring watches. */
    int wake_fd;
    weft__op wake_op;
    uint64_t wake_buf;
    bool wake_armed;

    /* Ring-bound resources and their cleanup (ring/resource.h). */
    weft_task **direct_owner; /* by direct slot: the holder, NULL when free */
    /* Direct slots waiting for a CLOSE, and the tries each has had. */
    struct weft__close_job {
        unsigned slot, tries;
    } * close_slots;
    unsigned nclose;
    weft__cleanup *cleanup_head, *cleanup_tail;
    weft_task *maint;               /* the maintenance task, NULL when none runs */
    bool maint_waiting;             /* parked for jobs */
    unsigned streams_live;          /* streams whose kernel side has not ended */
    unsigned streams_abandoned;     /* ... of which the cleanup was given up on */
    weft__cleanup *abandoned;       /* their cleanup records */
    struct weft_buf_ring *bufrings; /* provided buffer rings on this ring */
    uint64_t cleanup_done, cleanup_retried, cleanup_failed;

    void *altstack;                /* the thread's alternate stack for the overflow report (shared
                                    * by the workers on one thread), NULL if not installed */
    struct weft__trace_buf *trace; /* NULL unless tracing (observe/trace.h) */
} weft__worker;

typedef struct weft__runtime {
    weft_config cfg;   /* with defaults filled in; its queues are queues_copy */
    void *queues_copy; /* the queue specs, owned; their names are kept (runtime.c) */
    int default_stack_class;
    unsigned nworkers;
    unsigned direct_tag_base; /* the workers' rings' tags (ring/resource.h) */
    weft__worker *workers;
    bool threaded;  /* several workers: the tree lock and live_tasks count */
    bool spin_idle; /* idle workers spin before parking (no more workers than CPUs) */
    _Atomic uint64_t next_task_id; /* where the next block of ids starts */
    _Atomic uint64_t live_tasks;   /* threaded: spawned, not complete (pseudo-roots excluded) */
    _Atomic uint64_t live_maint;   /* threaded: of live_tasks, the workers' maintenance tasks */
    struct weft_task root;         /* parent of background and outside-spawned tasks */
    struct weft_task orphans;      /* adopts children under WEFT_ORPHANS_ADOPT */
    unsigned tree_lock;            /* a spinlock (common/spinlock.h); see task/tree.c */
    uint64_t tree_cancel_steps;    /* tasks the subtree cancels went through (under the lock) */
    weft_task *main_task;
    _Atomic bool main_done;
    bool embedded;            /* driven by weft_executor_run */
    bool park_in_poll;        /* workers sleep in ppoll, not io_uring_enter (see runtime.c) */
    _Atomic unsigned nhungry; /* workers whose hunger is WEFT__HUNGER_ON */
    _Atomic int start_error;  /* the first failure of a worker (to start, or its ring) */
    void *start_sync;         /* weft_run's barriers */

    /* Spawns from threads outside the runtime (weft_runtime_spawn): a
     * locked list that workers look at every inject_interval picks and
     * before parking. inject_pending counts requests not yet spawned; they
     * keep the runtime alive. */
    pthread_mutex_t inject_lock;
    struct weft__inject *inject_head, *inject_tail;
    _Atomic unsigned inject_pending;
    _Atomic unsigned inject_spawns; /* of inject_pending: spawns (what inject_max bounds) */
    _Atomic bool buffers_busy;      /* a registered-buffer change is under way */
    /* Some ring holds a buffer of a registration that failed and whose
     * undoing failed too (BUFFER_ORPHAN slots): the next change under
     * buffers_busy releases it. */
    bool buffers_orphaned;

    /* Services started on first use, guarded by lazy_lock: the blocking
     * pool (runtime/blocking.c) and signal waiting (runtime/signal.c).
     * weft__runtime_teardown stops them. */
    pthread_mutex_t lazy_lock;
    struct weft__blocking *blocking;
    struct weft__signals *signals;

    struct weft__trace *trace;       /* the trace file, NULL unless trace_path (observe/trace.h) */
    weft__stack_helper stack_helper; /* prepares stack slabs ahead (context/stack.h) */
} weft__runtime;

/* Validates cfg into rt->cfg and sets up what every runtime has (task ids,
 * the root and the orphan root); workers are the caller's business, and so
 * is weft__signals_catch, last. Returns 0 or -EINVAL (reason in
 * weft_last_config_error()). */
int weft__runtime_setup(weft__runtime *rt, const weft_config *cfg);
/* Stops what weft__runtime_setup and first use started (blocking pool,
 * signal handlers); call after every worker has stopped. */
void weft__runtime_teardown(weft__runtime *rt);
/* The runtime services' own teardown (blocking.c, signal.c); each is a
 * no-op when its service never started. */
void weft__blocking_fini(weft__runtime *rt);
void weft__signals_fini(weft__runtime *rt);
/* Installs the handlers of the n signals at signos for rt, as its first
 * wait for each would (weft_config.catch_signals): from now on their
 * arrivals are remembered in rt. 0, or -ENOMEM / the error of starting the
 * hub / of sigaction; weft__signals_fini undoes it. The signals must be
 * waitable (weft__signal_waitable). */
int weft__signals_catch(weft__runtime *rt, const int *signos, size_t n);

/* Frees every queued outside spawn request, calling its discard callback:
 * at teardown, for requests no worker took (the runtime failed to start). */
void weft__inject_drop_all(weft__runtime *rt);

/* weft_cancel of t, a live task of rt, from a thread that may not walk
 * rt's task tree (a runtime of one worker, or an executor, from elsewhere):
 * queued with the outside spawns, and made by rt's worker as it takes
 * them in. 0, or -ENOMEM. Any thread. */
int weft__runtime_cancel_remote(weft__runtime *rt, weft_task *t);

/* Wakes every parked worker (the last task finished, or shutdown). */
void weft__runtime_wake_all(weft__runtime *rt);
/* Starts fn(w, arg) on every worker's own thread (the caller's worker runs
 * it inline) and waits for all: for ring-wide changes under SINGLE_ISSUER,
 * such as registering buffers. Returns the first error, else 0. Only from
 * a task (-EPERM otherwise), even with one worker, so that what works on
 * one works on several; not interruptible. */
int weft__on_every_worker(int (*fn)(struct weft__worker *w, void *arg), void *arg);

/* The worker of the calling thread, or NULL. Never inlined (DESIGN §6). */
weft__worker *weft__worker_self(void);
void weft__worker_set_self(weft__worker *w);
/* True on a thread that created an embedded executor and has not destroyed
 * it: the executor's host, which must not sleep on what only the
 * executor's tasks can complete (executor.c). */
bool weft__thread_hosts_executor(void);
/* Whether the calling thread is rt's executor's host, outside a run (rt is
 * an executor's runtime). */
bool weft__executor_host_here(const weft__runtime *rt);

/* embedded: the worker is driven by a host loop (weft_executor_*): its ring
 * posts completions without DEFER_TASKRUN and signals an eventfd. */
int weft__worker_init(weft__worker *w, weft__runtime *rt, unsigned index, bool embedded);
/* Closes the ring and frees what the worker alone uses; on its own thread,
 * after every worker has left its loop. */
void weft__worker_fini(weft__worker *w);
/* Frees its stacks and task records: once no worker runs, since tasks
 * carry both from worker to worker. records_held: see
 * weft__record_pool_fini. */
void weft__worker_release_pools(weft__worker *w, bool records_held);
/* Runs the scheduler loop until the runtime has no live task left. A ring
 * that fails there ends the process (see ring_failed in worker.c). */
void weft__worker_run(weft__worker *w);
/* Arms the worker's wake-up read and its clock; weft__worker_run does it. */
void weft__worker_start(weft__worker *w);
/* Runs ready tasks (and polls without blocking between slices) until none
 * is runnable (returns 0) or the clock passes until_ns (returns 1); -errno
 * from the ring. */
int weft__worker_run_ready(weft__worker *w, uint64_t until_ns);
/* The earliest armed timer, UINT64_MAX when none. */
uint64_t weft__worker_next_deadline(const weft__worker *w);
/* Takes a fresh clock reading as the start of the next timed task run: an
 * embedded executor's host may have been away for a long time, and that
 * time is no task's. */
void weft__worker_sync_clock(weft__worker *w);
/* Live tasks w owns: all of them, and the program's (the runtime's own,
 * TASK_F_UNCOUNTED, left out). */
uint64_t weft__worker_live_tasks(const weft__worker *w);
uint64_t weft__worker_program_tasks(const weft__worker *w);
/* Adds 1 to an eventfd. A failure can only be EAGAIN, a counter already
 * at its maximum: readable anyway. */
void weft__eventfd_signal(int fd);
/* Whether the running task's worker may keep t, a parked task of another
 * worker that its owner marked TASK_WAKE_MOVABLE, when it wakes t. */
bool weft__worker_may_keep(const weft_task *t);
/* Queues t, just claimed by a wake: on this worker when `keep` (the claim
 * set TASK_MOVING), else on its owner; from another thread it goes through
 * the owner's remote stack, and wakes the owner if it is parked. */
void weft__worker_schedule(weft_task *t, bool keep);
/* Hands queued, stealable tasks (a list through rq_next, owners already
 * set to `to`) over to `to`, and wakes it. */
void weft__worker_hand_over(weft__worker *to, weft_task *first, weft_task *last);
/* True when other threads woke tasks of w or handed tasks to it that w has
 * not taken in yet (its remote stacks). */
bool weft__worker_remote_pending(weft__worker *w);
/* weft_yield's shortcut. When the scheduler loop would only put t at the
 * back of its one untimed runnable-FIFO queue and take the next task from
 * the front (mid-slice, nothing due, no LIFO task, no hand-over or inject
 * look pending), it does that itself and switches to that task directly:
 * one context switch instead of two. Returns true once t runs again, false
 * (having switched nowhere) when the loop must decide. */
bool weft__worker_yield_direct(weft__worker *w, weft_task *t);
/* Switches from the running task back to the worker's loop. */
static inline __attribute__((always_inline)) void
weft__worker_switch_out(weft__worker *w, weft_task *t, weft__switch_reason why)
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
