/* weft/runtime.h - starting a runtime and its configuration.
 *
 * Config structs follow one rule: all-zero (or a NULL pointer) means the
 * defaults, and fields are only ever appended.
 */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <weft/task.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum weft_orphan_policy {
    WEFT_ORPHANS_CANCEL = 0, /* a finishing task cancels and awaits its live children */
    WEFT_ORPHANS_ADOPT = 1,  /* live children are re-parented to the orphan root */
} weft_orphan_policy;

typedef enum weft_cleanup_policy {
    WEFT_CLEANUP_RETRY = 0,
    WEFT_CLEANUP_IGNORE = 1,
    WEFT_CLEANUP_ABORT = 2,
} weft_cleanup_policy;

typedef enum weft_panic_policy {
    WEFT_PANIC_ABORT = 0, /* print the message, the task's name and id, abort() */
    WEFT_PANIC_CATCH = 1, /* the task completes with WEFT_EPANIC (a panic in a defer aborts) */
} weft_panic_policy;

/* Where a task woken by a task running on another worker runs next. */
typedef enum weft_wake_placement {
    /* It moves to the waker's worker when nothing pins it to its own (the
     * stealability rules of docs/workers.md, no timer armed, a queue policy without an
     * exit hook such as the default runnable FIFO), as Tokio and Go place a
     * woken task; otherwise, as for every wake from outside a task, it goes
     * to its owner's remote queue. */
    WEFT_WAKE_TO_WAKER = 0,
    WEFT_WAKE_TO_OWNER = 1, /* always the owner's remote queue */
} weft_wake_placement;

struct weft_policy;
typedef struct weft_queue_spec {
    const char *name;                 /* unique */
    uint32_t weight;                  /* share, 1..10000 */
    const struct weft_policy *policy; /* NULL = runnable FIFO */
    const void *policy_config;
} weft_queue_spec;

typedef struct weft_config {
    unsigned workers;              /* 0 = $WEFT_WORKERS if set, else the CPUs this thread may run on
                                      (at most 1023, as for the field: -EINVAL above);
                                      1 = one worker on the calling thread */
    const weft_queue_spec *queues; /* NULL = one queue "default" */
    size_t nqueues;                /* at most 64 */
    size_t stack_size;             /* 0 = 256 KiB (virtual; pages touched lazily) */
    unsigned ring_entries;         /* 0 = 1024 */
    unsigned direct_fds;           /* per ring; 0 = 1024 */
    weft_orphan_policy orphans;    /* default WEFT_ORPHANS_CANCEL */
    weft_cleanup_policy on_cleanup_error; /* default WEFT_CLEANUP_RETRY */
    unsigned cleanup_retries;             /* tries per cleanup op before giving up; 0 = 3 */
    weft_panic_policy on_panic;           /* default WEFT_PANIC_ABORT */
    uint64_t sched_latency_ns, min_slice_ns, io_poll_interval_ns; /* 0 = 2 ms, 100 us, 500 us;
                                                                     at most 60 s each */
    unsigned max_runs_per_slice;                                  /* 0 = 61 */
    bool lifo_slot;                                               /* default off */
    unsigned lifo_skip_interval;                                  /* 0 = 16 */
    bool stats; /* collect stats (cheap counters are always on) */
    /* Non-NULL: write a Perfetto/Chrome trace-event file there, a slice
     * per task run on a track per worker (docs/observe.md). Created when
     * the runtime starts; weft_run returns -errno if it cannot be. */
    const char *trace_path;
    unsigned fixed_buffers;   /* registered-buffer slots per ring; 0 = 64 */
    unsigned inject_interval; /* task runs between a busy worker's looks at the
                                 queue of outside spawns; 0 = 31 */
    /* With several workers: where a task woken from another worker runs
     * (docs/workers.md). Default WEFT_WAKE_TO_WAKER. */
    weft_wake_placement wake_placement;
    /* Default false: once a worker has carved 248 stacks of one size, a
     * helper thread maps, guards and faults in its next slab of that size
     * ahead of use (docs/stacks.md). true: workers do it themselves as
     * they need stacks, and no helper thread starts. */
    bool no_stack_helper;
    /* Outside spawns (weft_runtime_spawn) queued and not yet spawned, at
     * most; past it weft_runtime_spawn returns -EAGAIN. 0 = no limit. */
    unsigned inject_max;
    /* Signals caught from the start, the ncatch_signals numbers at
     * catch_signals (say {SIGINT, SIGTERM}): their handlers are installed
     * before the main task runs, so one that arrives before the first
     * weft_signal_wait for it is remembered for that wait instead of
     * meeting the old disposition (docs/blocking.md). Each must be a
     * signal weft_signal_wait accepts. The old disposition is replaced,
     * SIG_IGN too (nohup's SIGHUP), until the runtime ends: a signal
     * named here that no task waits for is swallowed. The array is read
     * when the runtime starts, and need not outlive that. */
    const int *catch_signals;
    size_t ncatch_signals;
    /* At its end weft_run (weft_executor_destroy) waits for the blocking
     * jobs still running, all abandoned by then (their tasks gave up):
     * until they end (0, the default), or at most this long. Past it, it
     * returns and leaves the pool's threads to finish those jobs on their
     * own, release what weft_spawn_blocking_ex jobs own, and exit. A name
     * lookup that waits for a silent DNS server then no longer holds up a
     * program's exit for its resolver's time-outs; but a job left behind
     * must touch nothing the program ends or frees after weft_run (the
     * runtime included: docs/blocking.md). */
    uint64_t blocking_exit_wait_ns;
} weft_config;

/* Runs main_fn(arg) as the main task of a new runtime and returns when the
 * main task and its whole subtree are done (background tasks are cancelled
 * and awaited, every worker's cleanup is drained). cfg may be NULL. The
 * calling thread is worker 0; with workers = N > 1, workers 1..N-1 run on
 * threads named "weft-<n>" that end before weft_run returns.
 * Returns 0 and stores the main task's result in *result (if non-NULL);
 * -ECANCELED if the main task was cancelled; WEFT_EPANIC if it panicked under
 * WEFT_PANIC_CATCH; -EINVAL for a bad config (see weft_last_config_error(),
 * nothing is started); -EBUSY when called from inside a runtime; -ENOMEM,
 * the error of io_uring setup, or of creating a worker thread. A worker
 * whose io_uring fails while tasks run (its fd closed behind weft's back,
 * say) cannot finish them: weft prints the error and aborts. */
WEFT_API int weft_run(const weft_config *cfg, weft_fn main_fn, void *arg, void **result);

/* A human-readable reason for the last -EINVAL from weft_run or
 * weft_executor_create on this thread (about the configuration; a NULL
 * out pointer sets none), or "" when there is none. */
WEFT_API const char *weft_last_config_error(void);

/* A running runtime, for threads outside it. */
typedef struct weft_runtime weft_runtime;

/* The runtime of the calling task (NULL outside one). The pointer stays
 * valid until weft_run returns (weft_executor_destroy for an executor's)
 * and no longer: nothing counts the threads that hold it. So a thread given
 * it must be told to stop and be joined before the main task returns, for
 * example by a task that calls pthread_join through weft_spawn_blocking.
 * weft_runtime_spawn's -ESHUTDOWN (the main task has finished) is no safe
 * signal to stop: the runtime may be freed right after it. */
WEFT_API weft_runtime *weft_runtime_current(void);

/* Spawns fn(arg) from any thread, including threads outside the runtime:
 * the request goes to the runtime's inject queue and a worker spawns it
 * within inject_interval task runs (at once when one is idle; an embedded
 * executor's fd becomes readable, so its host loop calls
 * weft_executor_run). The task is
 * a background task (a child of the root, no join handle). opts may give
 * queue, group, WEFT_TASK_STICKY / WEFT_TASK_CANCEL_CHILDREN /
 * WEFT_TASK_ON_WORKER (with worker), stack_size, name (copied) and discard
 * (called if the task never starts, as for weft_spawn_ex: see
 * weft_spawn_opts). Returns 0, -EINVAL (NULL rt or fn, other flags, a
 * worker index past the last, bad stack size), -ENOENT (unknown queue),
 * -ENOMEM, -EAGAIN
 * when weft_config.inject_max requests wait already, or -ESHUTDOWN once
 * the main task has finished. A request still queued when
 * the main task finishes is spawned cancelled: it never runs, like every
 * other background task at shutdown. A worker spawns the request later, and may
 * then find no memory for its record or name, or no stack to reserve: the
 * task never runs, stderr says so, and weft_stats counts it in
 * inject_failed. (Like any task, it can also end without running if its
 * stack, reserved then, cannot be had at its first run.) */
WEFT_API int weft_runtime_spawn(weft_runtime *rt, const weft_spawn_opts *opts, weft_fn fn,
                                void *arg);

/* Index (0..N-1) of the worker running the calling task, -EPERM outside a task. */
WEFT_API int weft_worker_index(void);
/* Number of workers of the current runtime; 0 outside a runtime. */
WEFT_API unsigned weft_worker_count(void);

/* ---- blocking work, name lookup and signals -------------------------------
 * (runtime/blocking.c, runtime/signal.c; the long form is docs/blocking.md) */

/* Runs fn(arg) on a thread of the runtime's blocking pool and suspends only
 * the calling task: its worker keeps running other tasks. The pool starts on
 * first use, grows on demand to 64 threads (more jobs queue), and a thread
 * idle for 10 s exits. Returns 0 and stores fn's return value in *result
 * (result may be NULL; *result is NULL on failure); -EINVAL for a NULL fn;
 * -EPERM outside a task; -ENOMEM, or -EAGAIN (or another pthread_create
 * error) when no pool thread exists and none could be started; -ECANCELED / -ETIMEDOUT at once when
 * the task is cancelled or passes its deadline: fn cannot be interrupted, so it still runs to its
 * end in the background and its result is dropped. arg must therefore stay valid until fn returns,
 * not just until this call does: do not point it into the task's stack unless the call is shielded
 * and has no deadline. weft_run returns only after every job, abandoned ones included, has
 * finished (or, with weft_config.blocking_exit_wait_ns, after that long at most). */
WEFT_API int weft_spawn_blocking(void *(*fn)(void *arg), void *arg, void **result);
/* weft_spawn_blocking for a job that owns what it works on, so that nothing
 * leaks when its task gives up: the call takes arg, and every outcome but
 * success ends with one call of release(arg, result) (release may be NULL).
 *  - 0: release is not called; arg is the caller's again and *result is
 *    fn's return value.
 *  - Any error, at once (-EINVAL, -EPERM, -ENOMEM, -EAGAIN, or -ECANCELED /
 *    -ETIMEDOUT before fn was queued): release(arg, NULL) has been called
 *    before the call returns.
 *  - -ECANCELED / -ETIMEDOUT while fn was queued or running: fn still runs
 *    to its end, and release(arg, its result) is then called on the pool
 *    thread (so release must be thread-safe with respect to the program).
 * The caller cannot tell the last two apart, and need not: either way arg
 * and the result are release's. */
WEFT_API int weft_spawn_blocking_ex(void *(*fn)(void *arg), void *arg, void **result,
                                    void (*release)(void *arg, void *result));

/* getaddrinfo(3) failures as weft codes: EAI_* codes are small negative
 * numbers that would collide with -errno, so they move below -4100.
 * WEFT_EAI(EAI_NONAME) is what weft_getaddrinfo returns for that code;
 * WEFT_EAI_CODE gives the EAI_* code back (for gai_strerror); weft_strerror
 * describes them. */
#define WEFT_EAI_BASE      (-4100)
#define WEFT_EAI(code)     (WEFT_EAI_BASE + (code))
#define WEFT_EAI_CODE(err) ((err)-WEFT_EAI_BASE)
#define WEFT_IS_EAI(err)   ((err) < WEFT_EAI_BASE && (err) > WEFT_EAI_BASE - 200)

struct addrinfo;
/* getaddrinfo(3) on the blocking pool. node, service and hints (of which
 * ai_flags, ai_family, ai_socktype and ai_protocol are read) are copied and
 * need not outlive the call. Returns 0 and stores the list in *res (free it
 * with freeaddrinfo); -EINVAL for a NULL res; -EPERM outside a task; -ENOMEM
 * (EAI_MEMORY too); the -errno behind EAI_SYSTEM; WEFT_EAI(code) for any
 * other EAI_* code; -ECANCELED / -ETIMEDOUT at once: the lookup is dropped
 * (never started, or its result freed by the pool; getaddrinfo itself
 * cannot be stopped, and weft_run waits for one still running unless
 * weft_config.blocking_exit_wait_ns says otherwise); -EAGAIN (or another
 * pthread_create error) when no pool thread exists and none can start, as
 * for weft_spawn_blocking. */
WEFT_API int weft_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                              struct addrinfo **res);

/* Parks the calling task until signal signo arrives; returns signo. The
 * first wait for signo in the process (or a runtime that names it in
 * weft_config.catch_signals, at its start) installs a handler (SA_RESTART
 * | SA_ONSTACK) in place of the previous disposition, which comes back
 * when the last runtime that used signo ends. Any thread may receive the
 * signal, and one at least must not block it, or the wait never ends. A
 * child made by fork starts with none of the parent's handlers or
 * waiters (docs/blocking.md). An arrival wakes every task waiting for signo (a broadcast); one
 * that finds no waiter in a runtime is remembered there, so the next wait
 * returns at once, and several such arrivals coalesce into one. Returns
 * -EINVAL for SIGKILL, SIGSTOP, the fault signals (SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL), the C library's reserved signals and numbers that are no
 * signal; -EPERM outside a task; -ECANCELED / -ETIMEDOUT (an interrupted
 * wait consumes nothing); -ENOMEM, or the error of starting the helper
 * thread and eventfd on first use. */
WEFT_API int weft_signal_wait(int signo);
/* weft_signal_wait for several signals, the n numbers at signos (say
 * {SIGINT, SIGTERM}): parks until any of them arrives and returns it (the
 * lowest-numbered, when several have). Each signal follows the rules
 * above; an arrival of another of them that this call does not return
 * stays remembered for the next wait. signos NULL with n 0 means every
 * signal the runtime has a handler for: those of weft_config.catch_signals
 * and those earlier waits named, so a program that catches {SIGINT,
 * SIGTERM} from the start waits for either with weft_signal_wait_any(NULL,
 * 0). Returns -EINVAL for NULL signos with n > 0 or n 0 with signos, for
 * NULL and 0 when the runtime has no handler yet, and when any of the
 * signals could not be waited for alone; otherwise as weft_signal_wait. */
WEFT_API int weft_signal_wait_any(const int *signos, unsigned n);

/* int main(argc, argv) that runs fn(argv) on a default runtime (argv is
 * main's, NULL-terminated: char **argv = arg); the process exits 0 when fn
 * returns NULL, else with (int)(intptr_t) of its result. For a config of
 * your own, write main and call weft_run. */
#define WEFT_MAIN(fn)                                                                              \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        (void)argc;                                                                                \
        void *weft_main_result_ = NULL;                                                            \
        int weft_main_rc_ = weft_run(NULL, (fn), argv, &weft_main_result_);                        \
        if (weft_main_rc_ < 0) {                                                                   \
            fprintf(stderr, "weft_run: %s\n", weft_strerror(weft_main_rc_));                       \
            return 1;                                                                              \
        }                                                                                          \
        return (int)(intptr_t)weft_main_result_;                                                   \
    }

#ifdef __cplusplus
}
#endif
#endif
