/* weft/task.h - stackful tasks, join handles and structured concurrency.
 *
 * A task is a C function running on its own stack inside a worker. Blocking
 * calls (join, sleep, I/O, ...) suspend only the calling task. Every blocking
 * call made outside a task returns -EPERM; inside a cancelled task it returns
 * -ECANCELED (weft_join: -EINTR, since its -ECANCELED is the joined task's
 * outcome); past the innermost deadline it returns -ETIMEDOUT.
 *
 * Every task has a parent (the task that spawned it, or the root for
 * WEFT_TASK_BACKGROUND tasks and tasks spawned outside any task). Under the
 * default orphan policy a task that ends cancels and awaits its live children
 * before it completes, so children may borrow their parent's stack.
 */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include <weft/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_task weft_task; /* join handle, opaque */
typedef void *(*weft_fn)(void *arg);

/* Spawn flags (weft_spawn_opts.flags). Under WEFT_ORPHANS_ADOPT, the tasks
 * below one with WEFT_TASK_CANCEL_CHILDREN end as under WEFT_ORPHANS_CANCEL,
 * so that its end can await its whole subtree. */
#define WEFT_TASK_BACKGROUND      (1u << 0) /* parent is the root, not the spawner */
#define WEFT_TASK_STICKY          (1u << 1) /* never migrates to another worker */
#define WEFT_TASK_CANCEL_CHILDREN (1u << 2) /* cancel+await subtree on exit even under ADOPT */
#define WEFT_TASK_SPAWN_LIFO      (1u << 3) /* hint: run before other runnable tasks */
#define WEFT_TASK_SPAWN_FIFO      (1u << 4) /* hint: run after other runnable tasks (default) */
/* Runs on worker weft_spawn_opts.worker, for its whole life (it is STICKY
 * too): one acceptor per worker on SO_REUSEPORT sockets, a task that owns
 * a worker's buffer ring or direct descriptors. */
#define WEFT_TASK_ON_WORKER (1u << 5)
/* Starts bound by the spawner's innermost deadline (weft_deadline_push), as
 * if that deadline were pushed around the task's function, where it cannot
 * be popped or moved (its defers run without it): a request's deadline
 * then bounds the subtasks it fans out to. The deadline is copied at the spawn; moving or popping
 * the spawner's later does not reach the child. Nothing is inherited outside a task or when the
 * spawner has no deadline. */
#define WEFT_TASK_INHERIT_DEADLINE (1u << 6)

typedef struct weft_spawn_opts {
    const char *queue;       /* queue name; NULL = the spawner's queue (the first
                                queue for WEFT_TASK_BACKGROUND or a spawn from
                                outside a task) */
    uint64_t group;          /* scheduling group; 0 = the task is its own group */
    unsigned flags;          /* WEFT_TASK_* */
    size_t stack_size;       /* 0 = runtime default; 16 KiB .. 1 GiB */
    const char *name;        /* shown in stats, traces, dumps, panics; copied, at most
                                31 bytes (cut before a UTF-8 character that would
                                not fit whole) */
    const char *const *tags; /* NULL-terminated array of static strings; not copied */
    /* Called as discard(arg) when the task ends without fn ever having
     * started: cancelled before its first run (a child of a cancelled task
     * is born cancelled), no stack could be had for it (join: -ENOMEM), or
     * an outside spawn (weft_runtime_spawn) that could not start. So what
     * arg carries for fn (a buffer, a socket) is released either way: once
     * fn has started, it is fn's to release and discard is never called.
     * Called once, before the task's join returns, on the worker's thread
     * but outside any task: it must not block or spawn (close(2) and free
     * are fine). NULL = none. */
    void (*discard)(void *arg);
    /* With WEFT_TASK_ON_WORKER: the index of the worker it runs on, 0 ..
     * weft_worker_count() - 1 (-EINVAL beyond). Ignored otherwise. */
    unsigned worker;
} weft_spawn_opts;

/* Spawns fn(arg) as a new task of the current runtime. If t is non-NULL it
 * receives a join handle that must be passed to weft_join or weft_detach
 * exactly once; if t is NULL the task is detached. May be called from a task
 * or from the thread running weft_run's main task.
 * Returns 0, -EINVAL (fn NULL, bad options), -ENOENT (unknown queue name),
 * -ENOMEM, or -EPERM when no runtime is running on this thread. */
WEFT_API int weft_spawn(weft_task **t, weft_fn fn, void *arg);
WEFT_API int weft_spawn_ex(weft_task **t, const weft_spawn_opts *o, weft_fn fn, void *arg);

/* Waits for t to finish, stores its return value in *result (if non-NULL;
 * NULL when t did not finish normally) and frees the handle. On the
 * caller's own errors below *result is left as it was. Returns 0 for a
 * normal finish, -ECANCELED for a task that was cancelled (at any time
 * before its function returned, even one that then returned normally: its
 * return value is dropped; docs/tasks.md, "Join outcomes"), WEFT_EPANIC
 * for a task that panicked under WEFT_PANIC_CATCH,
 * -ENOMEM for a task that never ran because no stack could be had for it.
 * If the caller itself is cancelled while waiting, returns -EINTR, or past
 * its own deadline -ETIMEDOUT, and the handle stays valid (join it again or
 * detach it); -ECANCELED is always t's outcome, with the handle freed. (A
 * cancelled caller joining a child cancelled with it gets either, as the
 * child ends before or after the caller's wait is interrupted.) In debug
 * builds WEFT_EHANDLE for a handle already
 * joined or detached. -EPERM outside a task,
 * -EDEADLK when a task joins itself, -EXDEV for a task of another runtime
 * (an executor's, or another weft_run's; the handle stays valid there),
 * -EINVAL for NULL. */
WEFT_API int weft_join(weft_task *t, void **result);
/* Waits for the first of tasks[0..n) to finish and joins it, as weft_join
 * does (its handle is freed): *index says which, *result (if non-NULL) gets
 * its return value, and the return is its outcome. NULL entries are
 * skipped, so a caller can clear each slot it has joined and call again;
 * the other handles stay valid. Each handle at most once (debug builds
 * return WEFT_EHANDLE otherwise). When several have finished, the lowest
 * index is joined. The caller's own errors leave every handle valid:
 * -EINTR (cancelled while waiting), -ETIMEDOUT (its deadline), -EINVAL
 * (NULL tasks or index, or no non-NULL entry), -EPERM outside a task,
 * -EDEADLK (its own handle among them), -EXDEV (a task of another
 * runtime), WEFT_EHANDLE in debug builds. */
WEFT_API int weft_join_any(weft_task *const *tasks, size_t n, size_t *index, void **result);

/* ---- task sets -------------------------------------------------------------
 * A set of tasks joined in the order they finish, however many there are:
 * a crawler's fetches, a fan-out's requests, the connections a server wants
 * to reap as they end (Tokio's JoinSet). The set holds the members' handles:
 * weft_taskset_join_next joins the next member to finish, each call O(1),
 * where weft_join_any looks at every handle it is given. Members are the
 * spawner's children like any task, under the orphan policy. */
typedef struct weft_taskset weft_taskset;

/* Creates an empty set: 0, -EINVAL (NULL), -ENOMEM. Any thread. */
WEFT_API int weft_taskset_create(weft_taskset **s);
/* Spawns fn(arg) into the set, as weft_spawn_ex(.., o, fn, arg) would (o
 * NULL: the defaults); *id (unless NULL) gets its weft_task_id. Returns 0,
 * or weft_spawn_ex's errors (nothing spawned), -EXDEV when the set's
 * members belong to another runtime, -ESHUTDOWN while the set is being
 * destroyed. */
WEFT_API int weft_taskset_spawn(weft_taskset *s, const weft_spawn_opts *o, weft_fn fn, void *arg,
                                uint64_t *id);
/* Waits for the next member to finish and joins it, as weft_join does:
 * *id (unless NULL) gets its id, *result (unless NULL) its return value,
 * and the return is its outcome (0, -ECANCELED, WEFT_EPANIC, -ENOMEM).
 * Members are joined in the order they finished. -ECHILD when the set has
 * no member left; the caller's own errors join nothing: -EINTR (cancelled
 * while waiting), -ETIMEDOUT (its deadline), -EDEADLK (the caller is the
 * set's only member left, still running, with no spawn into the set under
 * way: at the call, or once the others are joined elsewhere while it
 * waits), -EPERM outside a task, -EXDEV
 * from another runtime's task, -EINVAL (NULL s). */
WEFT_API int weft_taskset_join_next(weft_taskset *s, uint64_t *id, void **result);
/* weft_taskset_join_next without waiting: -EAGAIN when members remain but
 * none has finished. From a task. */
WEFT_API int weft_taskset_try_join_next(weft_taskset *s, uint64_t *id, void **result);
/* What weft_taskset_join_next_ex joined. */
typedef struct weft_taskset_joined {
    uint64_t id;
    void *result;
    /* With WEFT_EPANIC: the member's panic message, which the caller now
     * owns (free() it); NULL otherwise, or when memory was too short to
     * keep it. */
    char *panic_message;
} weft_taskset_joined;
#define WEFT_TASKSET_NO_WAIT 1u /* as weft_taskset_try_join_next */
/* weft_taskset_join_next (flags 0) or _try_join_next (WEFT_TASKSET_NO_WAIT)
 * that also hands over a panicked member's message, which the plain calls
 * free with the member. The same returns; -EINVAL for a NULL j or an
 * unknown flag. */
WEFT_API int weft_taskset_join_next_ex(weft_taskset *s, weft_taskset_joined *j, unsigned flags);
/* Cancels the member whose id is id (weft_cancel: subtree and all), as
 * Tokio's AbortHandle: it stays in the set, to be joined. 0 (also when it
 * was cancelled already), -EALREADY when it has finished and waits to be
 * joined, -ESRCH when no member of the set has that id (never one, or
 * joined), -EINVAL for NULL s or id 0, or weft_cancel's own error (-ENOMEM
 * from a plain thread when the cancel could not be queued: nothing done).
 * Looks at every member: O(members). From a task of the set's runtime or
 * any thread, as weft_cancel. */
WEFT_API int weft_taskset_cancel(weft_taskset *s, uint64_t id);
/* Members not yet joined (running or finished). 0 for NULL. Any thread. */
WEFT_API size_t weft_taskset_len(weft_taskset *s);
/* Cancels every member that has not finished (weft_cancel, subtree and
 * all); they stay in the set, to be joined. Returns how many were
 * cancelled. NULL: 0. From a task of the set's runtime or any thread, as
 * weft_cancel. */
WEFT_API size_t weft_taskset_cancel_all(weft_taskset *s);
/* Closes the set to new members, cancels those left, waits for each to
 * end (the wait is not interrupted: a shutdown's cancellation of the
 * caller does not cut it short, nor does a deadline), joins them, waits
 * for other tasks still in join_next to leave it (with -ECHILD), and
 * frees the set. Returns 0; -EPERM outside a task while members remain,
 * -EBUSY outside a task while tasks are in join_next (or in a select with
 * the set in a JOIN case), -EXDEV from another runtime's task, -EDEADLK
 * from a member of the set (nothing done in these cases). NULL: 0. A set whose runtime ended
 * forgets the members it had not joined (they are freed with the
 * runtime): it is then empty, and may be destroyed from anywhere. */
WEFT_API int weft_taskset_destroy(weft_taskset *s);

/* Gives up the handle; the task keeps running (subject to its parent's
 * orphan policy). From any thread; a handle of another runtime's task is
 * given up too, its record staying with that runtime until it ends. */
WEFT_API void weft_detach(weft_task *t);

/* Requests cancellation of t and its whole subtree. A task cancelled before
 * its first run never runs its function. Idempotent; returns 0, -EINVAL
 * for NULL, and in debug builds WEFT_EHANDLE for a handle already joined
 * or detached (in release builds that is undefined: the record may be
 * another task's by then). Callable from any thread. A runtime of one
 * worker (or an executor) keeps its task tree unlocked, for that thread
 * alone: from elsewhere (another thread, another runtime's task) the
 * cancel is queued for the worker, as an outside spawn is (docs/tasks.md),
 * and the call returns 0 at once, or -ENOMEM (nothing queued). */
WEFT_API int weft_cancel(weft_task *t);

WEFT_API bool weft_task_finished(const weft_task *t);
/* t's id (0 for NULL): unique in its runtime, never reused, increasing with
 * each spawn from one worker. With several workers ids are not in spawn
 * order across workers: each worker takes them in blocks. */
WEFT_API uint64_t weft_task_id(const weft_task *t);
/* The panic message of a task that finished with WEFT_EPANIC, else NULL.
 * Valid until the handle is joined. */
WEFT_API const char *weft_task_panic_message(const weft_task *t);

/* The id of the calling task, 0 outside a task. Ids start at 1. */
WEFT_API uint64_t weft_self_id(void);
/* The name of the calling task's queue (weft_config.queues; "default"
 * without any), NULL outside a task. Valid for the runtime's life. */
WEFT_API const char *weft_self_queue(void);
/* Moves the calling task to the queue named name (weft_config.queues) and
 * yields, so that it runs next in that queue's turn. What it ran so far is
 * charged to the queue it leaves, what it runs from then on to the new
 * one. Children it spawns afterwards inherit the new queue; those spawned
 * before stay where they are. For a task whose kind of work is known only
 * once it has started: a connection that turns out to be a bulk upload, a
 * request that turns out to be a report. Returns 0 (at once, without a
 * yield, when it is in that queue already), -EINVAL for NULL or a name no
 * queue has, -EPERM outside a task. A cancelled task moves too, and sees
 * its cancellation at its next blocking call. */
WEFT_API int weft_self_set_queue(const char *name);

/* ---- cancel handles -------------------------------------------------------
 * A cancel handle lets its holder cancel one task and see whether it has
 * finished, without owning the task's join: a broker that stops a slow
 * subscriber, a watchdog, a task that hands out a way to stop itself. Any
 * number may exist for a task beside its join handle, and they do not
 * change it: the task is still joined or detached as before, and joining
 * or detaching leaves its cancel handles valid. Each keeps the task's
 * record (256 bytes; not its stack), so a handle never names another task
 * however long after the end it is used. Drop each one, from any thread,
 * before its runtime ends: the records go with the runtime
 * (docs/tasks.md, Cancel handles). */
typedef struct weft_cancel_handle weft_cancel_handle;

/* A cancel handle for the task of join handle t, from any thread. 0,
 * -EINVAL (t or out NULL), in debug builds WEFT_EHANDLE for t already
 * joined or detached. */
WEFT_API int weft_cancel_handle_of(weft_task *t, weft_cancel_handle **out);
/* A cancel handle for the calling task. 0, -EINVAL (out NULL), -EPERM
 * outside a task. */
WEFT_API int weft_cancel_handle_self(weft_cancel_handle **out);
/* A second cancel handle for h's task, to drop separately. 0, -EINVAL. */
WEFT_API int weft_cancel_handle_dup(weft_cancel_handle *h, weft_cancel_handle **out);
/* weft_cancel for h's task and its subtree, from any thread, as
 * weft_cancel. 0 also when the task has finished: there is nothing left
 * to cancel. -EINVAL for NULL, -ENOMEM as weft_cancel. */
WEFT_API int weft_cancel_via(weft_cancel_handle *h);
/* Whether h's task has finished (false for NULL). */
WEFT_API bool weft_cancel_handle_finished(const weft_cancel_handle *h);
/* The id of h's task (weft_task_id), 0 for NULL. */
WEFT_API uint64_t weft_cancel_handle_task_id(const weft_cancel_handle *h);
/* Gives h up, from any thread; NULL is ignored. */
WEFT_API void weft_cancel_handle_drop(weft_cancel_handle *h);
/* True when the calling task has a pending cancellation. */
WEFT_API bool weft_cancelled(void);
/* Lets other runnable tasks run: the task goes back to its queue, at the
 * place its queue's policy gives it (the back, for the default runnable
 * FIFO; its arrival place, ahead of later arrivals, for arrival FIFO;
 * its service's place for LAS and QLAS). Returns 0, -ECANCELED,
 * -ETIMEDOUT (past the innermost deadline, so that a CPU-bound loop that
 * yields stops with its deadline), -EPERM. Either error comes after the
 * yield, which has happened. */
WEFT_API int weft_yield(void);
/* Yields only when the worker's time slice is used up or a preemption is
 * pending; nearly free otherwise. It reads the clock every few calls (at
 * most every 16th) at the rate of the last calls: see docs/scheduling.md.
 * Returns 0, -ECANCELED, -ETIMEDOUT (past the innermost deadline, seen
 * when it reads the clock: at most 15 calls late), -EPERM. */
WEFT_API int weft_yield_maybe(void);
/* Registers fn(arg) to run when the calling task ends, however it ends
 * (return, cancellation, panic). Defers run last-in first-out, after the
 * task's children have finished. A task cancelled before its first run
 * never runs, so it has registered none: cleanup of what its spawner
 * handed it (a descriptor, a channel to close) goes in
 * weft_spawn_opts.discard as well (docs/tasks.md). Returns 0, -EINVAL
 * (NULL fn), -ENOMEM, -EPERM. */
WEFT_API int weft_defer(void (*fn)(void *), void *arg);
/* Ends the calling task with a formatted message: its defers run, then by
 * runtime policy the process aborts (default) or the task completes with
 * WEFT_EPANIC. Outside a task it prints the message and aborts, and so
 * does a panic inside a defer or in a task already ending, whatever the
 * policy (docs/tasks.md). */
WEFT_API _Noreturn void weft_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Waits until every child the calling task has now has finished (a nursery
 * join). Returns 0, -ECANCELED (caller cancelled), -ETIMEDOUT, -EPERM.
 * A cancelled caller returns at once, its children maybe still running:
 * memory they use must not be freed after a wait that did not return 0.
 * Free it in a defer (weft_defer), which runs once the children are gone,
 * or wait inside a shield (docs/tasks.md, Ending a task). */
WEFT_API int weft_wait_children(void);

/* Panics the current task when cond is false, naming the file and line. */
#define WEFT_ASSERT(cond)                                                                          \
    ((cond) ? (void)0 : weft_panic("assertion failed: %s (%s:%d)", #cond, __FILE__, __LINE__))

/* ---- structured cancellation --------------------------------------------
 * Each call acts on part of the calling task's subtree (the caller itself is
 * never cancelled), fills *stats when non-NULL and returns 0, or -EPERM
 * outside a task. `visited` counts the live tasks examined, `cancelled` the
 * tasks whose cancellation this call requested (tasks already cancelled are
 * not counted again, and cancelling a task also counts the descendants it
 * newly cancels). Maintenance tasks are never touched. */
typedef struct weft_cancel_stats {
    uint64_t visited;
    uint64_t cancelled;
} weft_cancel_stats;

/* Cancels every descendant. */
WEFT_API int weft_cancel_children(weft_cancel_stats *stats);
/* Cancels the descendants that have no live children of their own. */
WEFT_API int weft_cancel_leaves(weft_cancel_stats *stats);
/* Cancels each descendant (with its subtree) that carries any / all of the
 * NULL-terminated tags; tags are compared as strings. -EINVAL for NULL tags
 * (both) and for an empty list (tagged_all, which every task would match;
 * tagged_any matches nothing and returns 0), besides the returns above. */
WEFT_API int weft_cancel_tagged_any(const char *const *tags, weft_cancel_stats *stats);
WEFT_API int weft_cancel_tagged_all(const char *const *tags, weft_cancel_stats *stats);
/* Cancels every task adopted by the orphan root (WEFT_ORPHANS_ADOPT). */
WEFT_API int weft_cancel_orphans(weft_cancel_stats *stats);

/* ---- deadlines and shielding ---------------------------------------------
 * Deadlines nest: every blocking call fails with -ETIMEDOUT once the innermost
 * (earliest) pushed deadline has passed. Shielded regions are not interrupted
 * by cancellation (for cleanup I/O); deadlines still apply (until a
 * weft_deadline_suspend). The pushes
 * return 0 or -EPERM outside a task; the deadline pushes also -EOVERFLOW past
 * 16 levels and -ENOMEM, weft_shield_push -EOVERFLOW past 65535 levels. The
 * pops return 0, or -EINVAL when nothing is pushed. A push that failed
 * pushed nothing: pop only after one that succeeded (the deadline pushes
 * are WEFT_MUST_CHECK for that reason). To move a deadline
 * later (an idle timeout), pop it and push the new one: a push right after
 * a pop never fails (docs/tasks.md), or use weft_deadline_move. */
WEFT_API WEFT_MUST_CHECK int weft_deadline_push(uint64_t abs_ns);
/* weft_deadline_push(weft_now_ns() + ns), the sum capped at UINT64_MAX (a
 * deadline that never comes): for "this much time from now". */
WEFT_API WEFT_MUST_CHECK int weft_deadline_push_in(uint64_t ns);
/* Moves the innermost pushed deadline to abs_ns (later or earlier), as a
 * pop and a push would, still bounded by the outer ones: for an idle
 * timeout that starts again after each read. 0, -EINVAL when none is
 * pushed, -EPERM outside a task; it cannot fail otherwise. _in: from now,
 * capped as weft_deadline_push_in. */
WEFT_API int weft_deadline_move(uint64_t abs_ns);
WEFT_API int weft_deadline_move_in(uint64_t ns);
WEFT_API int weft_deadline_pop(void);
/* Lifts every deadline in force, pushed or inherited, until the matching
 * weft_deadline_pop: for cleanup that must finish even past a deadline (a
 * lock taken to drop a reference, a goodbye), which a shield alone does
 * not allow. Inside it, pushes bound calls again; with weft_shield_push
 * too, nothing interrupts the calls. Counts as a level: 0, -EPERM outside
 * a task, -EOVERFLOW, -ENOMEM as the pushes; weft_deadline_move on it says
 * -EINVAL. */
WEFT_API WEFT_MUST_CHECK int weft_deadline_suspend(void);
/* The calling task's innermost deadline (a weft_now_ns() time, 1 for one
 * pushed as 0), 0 when none is in force or outside a task: to hand a
 * request's deadline to a task that serves it (a pool behind a channel
 * pushes it around that request), or to size a wait by what is left. */
WEFT_API uint64_t weft_deadline_innermost(void);
WEFT_API int weft_shield_push(void);
WEFT_API int weft_shield_pop(void);

#ifdef __cplusplus
}
#endif
#endif
