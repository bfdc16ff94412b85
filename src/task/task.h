/* The task record and its state word (internal).
 *
 * State word, in the Tokio/Ringolo style, one atomic uint64_t:
 *   RUNNING       the scheduler owns the task: it is running or sits in a run
 *                 queue. Cleared only when the task parks (blocks).
 *   NOTIFIED      a wake arrived while RUNNING: the next park returns at once.
 *   COMPLETE      finished; outcome and result are final.
 *   CANCELLED     cancellation requested.
 *   JOIN_INTEREST a join handle exists.
 *   JOIN_WAKER    a joiner is parked and stored in `joiner`.
 *   WAIT_KIDS     parked until live_children reaches 0: the last child to
 *                 leave (on whichever worker) clears it and wakes the task.
 *   WAKE_MOVABLE  parked, and a waker on another worker may keep it
 *                 (WEFT_WAKE_TO_WAKER): set by the owner in the CAS that
 *                 parks the task, cleared by the CAS that claims it, so the
 *                 claimer decides from the word it replaced. The owner may
 *                 take it away while the task is parked (weft_direct_give).
 *   MOVING        a waker on another worker claimed it to keep it and is
 *                 changing its owner; cleared (release) once `owner` is set.
 *   refcount      in units of REF_ONE: one for the handle, one for the runtime.
 * Any thread may wake or cancel a task (fetch_or / CAS on this word); only the
 * owner worker resumes it. Yields and picks do not touch the word at all,
 * which keeps a yield free of atomic read-modify-writes.
 */
#ifndef WEFT_TASK_TASK_H
#define WEFT_TASK_TASK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <weft/sched.h>
#include <weft/task.h>

#include "context/fiber.h"
#include "context/stack.h"

#define TASK_RUNNING       (1ull << 0)
#define TASK_NOTIFIED      (1ull << 1)
#define TASK_COMPLETE      (1ull << 2)
#define TASK_CANCELLED     (1ull << 3)
#define TASK_JOIN_INTEREST (1ull << 4)
#define TASK_JOIN_WAKER    (1ull << 5)
#define TASK_WAIT_KIDS     (1ull << 6)
#define TASK_WAKE_MOVABLE  (1ull << 7)
#define TASK_MOVING        (1ull << 8)
/* Cancelled together with everything below it (by a walk under the tree
 * lock, or born cancelled, whose children are born cancelled in turn): a
 * walk that cancels a subtree need not go below it. A panicking task is
 * cancelled alone, without this bit. */
#define TASK_SUBTREE_CANCELLED (1ull << 9)
#define TASK_REF_ONE           (1ull << 10)
#define TASK_REF_MASK          (~(TASK_REF_ONE - 1))

/* Task flags beyond the public WEFT_TASK_* ones (high bits). `flags` is
 * fixed at spawn, so any thread may read it. */
#define TASK_F_ROOT        (1u << 16) /* a pseudo-task: the root or the orphan root */
#define TASK_F_MAINTENANCE (1u << 17) /* never cancelled by the subtree APIs */
#define TASK_F_UNCOUNTED   (1u << 18) /* the runtime's own errand: not in the task counts */

/* `run_flags`: progress bits only the task itself (its running thread)
 * reads and writes. */
#define TASK_R_STARTED     (1u << 0) /* its function has been entered */
#define TASK_R_PANICKED    (1u << 1)
#define TASK_R_FINISHING   (1u << 2) /* function done; awaiting children/defers */
#define TASK_R_CANCEL_SEEN (1u << 3) /* the function returned after a cancel */
#define TASK_R_NO_STACK    (1u << 4) /* ended unrun: no stack could be had */
/* Ended on another worker than its tree_home: its worker hands the record
 * to tree_home, which unlinks it (release_ended, runtime/worker.c). */
#define TASK_R_UNLINK_AT_HOME (1u << 5)
/* Spawned for another worker (WEFT_TASK_ON_WORKER): it arrives through the
 * hand-over stack, and is no steal there. Cleared on arrival, before the
 * task first runs. */
#define TASK_R_PLACED (1u << 6)

#define TASK_MAGIC_LIVE    0x7466776bu /* "kwft" */
#define TASK_MAGIC_DEAD    0xdeadbeefu
#define TASK_MAX_DEADLINES 16
#define TASK_NAME_MAX      32

/* Bytes kept free between the entry frame and the task function's first
 * frame. When the function returns, the end-of-task protocol (cancel the
 * children, park until they are gone) runs inside this zone, so the dead
 * frames of the function stay intact while children that borrowed them
 * finish. Small enough that a simple task still fits in one page. Under
 * ASan the protocol and the sanitizer's own calls on that path
 * (__asan_handle_no_return before weft__task_finish, the fiber-switch
 * hooks) reach about 2.3 KiB below the entry frame: with 2 KiB they
 * overwrote the top of the dead frame that children still read
 * (test_workers: finishing_parent_awaits_children_on_other_worker). */
#ifdef WEFT_ASAN
#define WEFT__FINISH_ZONE 8192
#else
#define WEFT__FINISH_ZONE 2048
#endif

struct weft__worker;
struct weft__defer;
struct weft__resource;

/* What few tasks need, allocated on first use to keep the record at 256
 * bytes: the deadlines pushed, the ring-bound resources (streams,
 * tickers) the task holds, and the discard callback of its spawn. */
typedef struct weft__task_ext {
    /* The deadlines pushed (as given: 0 counts as 1), innermost last, and the
     * one in force under the first push: the inherited deadline in the
     * function, none in the defers. task->deadline is the earliest. */
    uint64_t deadline_stack[TASK_MAX_DEADLINES];
    uint64_t deadline_base;
    /* Bit i: level i is a weft_deadline_suspend, which lifts every
     * deadline outside it (its deadline_stack entry is unused). */
    uint16_t deadline_suspended;
#define TASK_DEADLINE_LEVEL_BITS 16   /* of deadline_suspended */
    struct weft__resource *resources; /* doubly linked, see ring/resource.h */
    void (*discard)(void *arg);       /* weft_spawn_opts.discard; set at spawn */
    /* The task set it was spawned into (weft_taskset_spawn), or NULL; set
     * at spawn. The links are the set's, under its lock (taskset.c). */
    struct weft_taskset *set;
    struct weft_task *set_prev, *set_next;
} weft__task_ext;

struct weft_task {
    _Atomic uint64_t state;
    uint32_t magic; /* catches use of a joined/detached handle (debug) */
    /* Several workers: 1 + the index of the worker that spawned it, which
     * its parent ran on then; 0 when its parent is a pseudo-root, or with
     * one worker. A task that ends elsewhere leaves its unlink to that
     * worker, so that a parent's child list, its count and the tree lock
     * stay in one core's cache while its children end on others. Fixed
     * at spawn. */
    uint32_t tree_home;
    /* The worker that resumes it. Changes only while the task is queued,
     * by that worker (a hand-over to an idle worker); read it with
     * weft__task_owner() when the task may be on another worker. */
    struct weft__worker *owner;
    struct weft_task *rq_next; /* run queue link (owner only) */
    weft__fiber fiber;
    weft__stack *stack; /* NULL until the first run */
    weft_fn fn;
    void *arg;
    union {
        void *result; /* once COMPLETE */
        /* While live: the timer armed for it on its worker (a sleep or
         * a deadline; a task parks on one at a time), or NULL. A hand-over
         * disarms it (io/timer.h). */
        struct weft__timer *armed_timer;
    };
    int outcome;    /* 0, -ECANCELED or WEFT_EPANIC once COMPLETE */
    unsigned flags; /* WEFT_TASK_* | TASK_F_* */
    uint8_t stack_class;
    uint8_t queue; /* index into the worker's queues */
    uint8_t ndeadlines;
    uint8_t run_flags; /* TASK_R_* */
    uint16_t shield;   /* shield_push depth */
    /* Pins to the owner: ops in flight on its ring. A task with any never
     * migrates (see ring_bound). */
    uint16_t ring_ops;

    /* Task tree: parent and the list of live children. */
    struct weft_task *parent;
    struct weft_task *first_child;
    struct weft_task *next_sibling, *prev_sibling;
    uint32_t live_children;
    /* Ring-bound resources held (streams, tickers, buffer leases, direct
     * descriptors): a task with any, or with ring_ops, never migrates. */
    uint32_t ring_bound;

    struct weft_task *joiner;   /* parked in weft_join, see JOIN_WAKER */
    struct weft__defer *defers; /* LIFO */
    const char *const *tags;
    char *panic_msg;          /* malloc'd; freed with the record */
    uint64_t deadline;        /* innermost effective deadline, 0 = none */
    weft__task_ext *ext;      /* NULL until needed */
    weft_sched_entity entity; /* what the queue's policy sees; id and group live here */
    char *name;               /* NULL or a copy (weft__malloc), at most TASK_NAME_MAX - 1 chars */
};

/* Stealable (DESIGN §6): nothing pins t to its owner's ring, so another
 * worker may run it. */
static inline bool weft__task_stealable(const weft_task *t)
{
    return !(t->flags & (WEFT_TASK_STICKY | TASK_F_MAINTENANCE)) && t->ring_ops == 0 &&
           t->ring_bound == 0;
}

/* The task whose scheduling entity e is. */
static inline weft_task *weft__task_of_entity(weft_sched_entity *e)
{
    return (weft_task *)((char *)e - offsetof(weft_task, entity));
}

static inline struct weft__worker *weft__task_owner(const weft_task *t)
{
    return __atomic_load_n(&t->owner, __ATOMIC_RELAXED);
}

/* Returns the task running on this thread, or NULL. Never inlined: a task
 * may migrate between threads across any blocking call (DESIGN §6). */
weft_task *weft__task_current(void);

/* Makes a parked task runnable; harmless on a running or finished task.
 * Any thread. */
void weft__task_wake(weft_task *t);
/* Parks the current task until woken. Wakes may be spurious: callers loop on
 * their own condition. */
void weft__task_park(void);
/* Parks once, honouring cancellation and the innermost deadline: returns 0
 * after a wake, -ECANCELED or -ETIMEDOUT. Checks before parking too. */
int weft__task_park_interruptible(void);
/* The interruption a blocking call must report now: 0, -ECANCELED or
 * -ETIMEDOUT. */
int weft__task_interrupted(weft_task *t);
/* What a blocking call must return before it starts (argument checks
 * are the caller's, before it): -EPERM outside a task, -ECANCELED /
 * -ETIMEDOUT when the task is interrupted, else 0 with *self set (self
 * may be NULL for a caller that needs only the verdict). */
static inline int weft__task_enter(weft_task **self)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    if (self)
        *self = t;
    return weft__task_interrupted(t);
}

/* weft_spawn_ex into task set `set`, which holds the handle; *id gets the
 * member's id. */
int weft__spawn_into_set(weft_taskset *set, const weft_spawn_opts *o, weft_fn fn, void *arg,
                         uint64_t *id);
/* Called by the spawn, before t can run: t joins set's members. True
 * when the set is being destroyed: t is then to be born cancelled. */
bool weft__taskset_added(weft_taskset *set, weft_task *t);
/* Called by t's end once t is complete: t is ready for the set's join. */
void weft__taskset_finished(weft_taskset *set, weft_task *t);
/* Called as the runtime frees the records of members never joined: the
 * set forgets them, and belongs to no runtime any more. */
void weft__taskset_forget(weft_taskset *set);

/* weft_spawn_ex without the public flag check: internal_flags (TASK_F_*)
 * are added; handle = whether the caller gets a join handle (else *task is
 * borrowed: valid while the task lives). */
int weft__spawn_internal(weft_task **task, const weft_spawn_opts *o, weft_fn fn, void *arg,
                         unsigned internal_flags, bool handle);

/* The same, without a handle, for a runtime errand (uncounted, never
 * cancelled by the subtree calls) owned by another worker of the caller's
 * runtime: it arrives there through the hand-over stack. */
int weft__spawn_on(struct weft__worker *owner, weft_task **task, const weft_spawn_opts *o,
                   weft_fn fn, void *arg);

/* t's extension block, allocated on first use; NULL when out of memory. */
weft__task_ext *weft__task_ext_get(weft_task *t);

void weft__task_ref_drop(weft_task *t);
/* weft_join's end for a task that has finished, from any thread that may
 * reach its runtime's tree (an executor's host): its outcome, with
 * *result set and the handle freed; -EAGAIN while it runs (the handle
 * stays valid); -EINVAL for NULL, WEFT_EHANDLE in debug builds. */
int weft__task_try_join(weft_task *t, void **result);
/* weft_join from a task that must wait whatever happens to it: neither its
 * cancellation nor its deadlines end the wait (for a helper whose memory
 * the caller is about to free, once the helper was cancelled). Returns t's
 * outcome, or weft_join's argument errors. */
int weft__task_join_uninterruptible(weft_task *t, void **result);
/* weft_cancel once the handle is checked: -EPERM from a thread that may not
 * walk t's tree (a one-worker runtime's, or an executor's, is its thread's
 * alone), else cancels t's subtree (nothing once t has finished) and
 * returns 0. */
int weft__task_cancel(weft_task *t);
/* Entry of every task fiber. */
void weft__task_entry(void *transfer);
/* Completes a task that was cancelled before its first run (no stack). */
void weft__task_complete_unstarted(weft_task *t);
/* Completes a task that could get no stack at its first run: its join
 * reports -ENOMEM. */
void weft__task_complete_without_stack(weft_task *t);
struct weft__runtime;
/* Several workers: n tasks (maint of them maintenance tasks) have ended
 * and left the tree; the last wakes every worker. */
void weft__tasks_ended(struct weft__runtime *rt, uint64_t n, uint64_t maint);
/* Runs t's defers, last registered first (t is the current task). */
void weft__task_run_defers(weft_task *t);
/* Runs the end-of-task protocol on the task's stack and never returns. */
_Noreturn void weft__task_finish(weft_task *t, void *result);

/* Tree (tree.c). Link, unlink, adopt and cancel_children_locked must be
 * called under weft__tree_lock; weft__tree_cancel takes it itself. */
void weft__tree_lock(struct weft__runtime *rt);
void weft__tree_unlock(struct weft__runtime *rt);
void weft__tree_link(weft_task *parent, weft_task *child);
void weft__tree_unlink(weft_task *child);
/* Cancels t and its live subtree; counts into stats when non-NULL. */
void weft__tree_cancel(weft_task *t, weft_cancel_stats *stats);
/* Cancels every live child of t, each with its subtree. */
void weft__tree_cancel_children_locked(weft_task *t);
/* Re-parents every live child of t to new_parent. */
void weft__tree_adopt_children(weft_task *t, weft_task *new_parent);
/* False when t has no live child. Without the tree lock: only t itself links
 * children to t, so for the running t a "none" answer cannot turn wrong. */
bool weft__tree_may_have_children(const weft_task *t);
/* Whether t has a child that has not ended (one that ended on another
 * worker may wait in the list for its unlink). Takes the tree lock. */
bool weft__tree_has_live_children(weft_task *t);
/* How many of t's children have not ended. Tree lock held. */
unsigned weft__tree_live_children_locked(const weft_task *t);
/* Before parking until t has no live child: true (and WAIT_KIDS set) when
 * it has some. Disarm after an interrupted wait: true if it still has. */
bool weft__tree_wait_kids_arm(struct weft__runtime *rt, weft_task *t);
bool weft__tree_wait_kids_disarm(struct weft__runtime *rt, weft_task *t);

#endif
