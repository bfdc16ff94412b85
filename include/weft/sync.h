/* weft/sync.h - channels, broadcast channels, mutexes, semaphores, events,
 * wait groups and watermarks for tasks.
 *
 * Rules shared by everything here (docs/sync.md has the long form):
 * - A call that may wait (send, recv, lock, acquire, event wait, wait-group
 *   wait, watermark wait) must be made from a task; elsewhere it returns
 *   -EPERM. It returns -ECANCELED in a cancelled task (unless shielded) and
 *   -ETIMEDOUT past the task's innermost deadline, both checked on entry
 *   and while waiting.
 * - An interrupted call has no effect: a send that fails did not deliver its
 *   element, a recv that fails consumed nothing, a lock or acquire that fails
 *   holds nothing. A grant that raced with the interruption is kept: the call
 *   then returns 0.
 * - Waiters are served first come, first served: unlock and release hand
 *   the mutex or the unit straight to the longest waiter.
 * - Everything works across worker threads. The calls that never wait and
 *   belong to no task (the channel's try_send, try_recv, try_recv_many,
 *   send_evict and close; the broadcast channel's send, try_recv,
 *   subscribe, unsubscribe and close; the
 *   semaphore's try_acquire and release, the event's notify_*, the wait
 *   group's add and done, the watermark's advance and fail) may also be
 *   made from any thread, runtime worker or not. A mutex belongs to the task
 *   that locked it: trylock, like lock, needs a task, and only the holder
 *   unlocks. weft_chan_send_blocking, weft_chan_recv_blocking and
 *   weft_chan_recv_many_blocking (and their _for forms, with a time
 *   limit) are for threads that are not running a
 *   task. None of these is
 *   async-signal-safe (a spinlock is taken): from a signal handler, use
 *   weft_signal_wait in a task instead.
 * - NULL arguments give -EINVAL (void functions ignore NULL).
 *
 * weft_mutex, weft_sem, weft_event, weft_waitgroup and weft_watermark are
 * small blocks the caller allocates; their fields are private. Initialise
 * them with the *_INIT macros or the *_init functions, and never copy or
 * move one while a task may be using it (waiters link themselves to it by
 * address).
 */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include <sys/types.h> /* ssize_t */
#include <weft/common.h>
#include <weft/task.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Private: a FIFO of waiters, each a node on its waiting task's stack. */
struct weft__waiter;
typedef struct weft__waitlist {
    struct weft__waiter *_first, *_last;
} weft__waitlist;

/* ---- channel --------------------------------------------------------------
 * A bounded multi-producer multi-consumer queue of fixed-size elements,
 * copied in and out by value. Capacity 0 makes a rendezvous channel: a send
 * completes only when a receiver takes the element. Elements come out in the
 * order their sends completed. */
typedef struct weft_chan weft_chan;

/* Creates a channel of elements of elem_size bytes (>= 1) holding at most
 * capacity of them. Returns 0 and *c, -EINVAL (NULL c, elem_size 0, size
 * overflow) or -ENOMEM. Any thread. */
WEFT_API int weft_chan_create(weft_chan **c, size_t elem_size, size_t capacity);
/* Copies elem_size bytes from elem into the channel, waiting for room (or,
 * for capacity 0, for a receiver). Returns 0, -EPIPE once the channel is
 * closed (also when it closes while waiting: the element was not sent),
 * -ECANCELED, -ETIMEDOUT, -EPERM outside a task, -EINVAL. */
WEFT_API int weft_chan_send(weft_chan *c, const void *elem);
/* Takes the oldest element into elem, waiting for one. Buffered elements
 * are still delivered after a close; returns -EPIPE once the channel is
 * closed and empty. Otherwise 0, -ECANCELED, -ETIMEDOUT, -EPERM, -EINVAL. */
WEFT_API int weft_chan_recv(weft_chan *c, void *elem);
/* weft_chan_send without waiting: 0, -EAGAIN when full (for capacity 0: no
 * receiver is waiting), -EPIPE when closed, -EINVAL. Any thread. */
WEFT_API int weft_chan_try_send(weft_chan *c, const void *elem);
/* weft_chan_recv without waiting: 0, -EAGAIN when empty (for capacity 0: no
 * sender is waiting), -EPIPE when closed and empty, -EINVAL. Any thread. */
WEFT_API int weft_chan_try_recv(weft_chan *c, void *elem);
/* Batch receive: waits as weft_chan_recv does for one element, then takes
 * as many more as are there at that moment, up to max in all, into
 * elems[0..max) (max * elem_size bytes), oldest first. Returns how many
 * (>= 1), or -EPIPE once the channel is closed and empty, -ECANCELED,
 * -ETIMEDOUT, -EPERM outside a task, -EINVAL (NULL, max 0, max *
 * elem_size overflowing). A failed call took nothing. */
WEFT_API ssize_t weft_chan_recv_many(weft_chan *c, void *elems, size_t max);
/* weft_chan_recv_many without waiting: -EAGAIN when nothing is there, as
 * weft_chan_try_recv. Any thread. */
WEFT_API ssize_t weft_chan_try_recv_many(weft_chan *c, void *elems, size_t max);
/* Sends without ever waiting, evicting the oldest element when the channel
 * is full: for lossy feeds where the newest data matters most (a slow
 * subscriber's queue). The evicted element is copied into `evicted` when
 * non-NULL (to release what it holds). Returns 0 (sent, nothing evicted), 1
 * (sent, the oldest evicted), -EPIPE when closed, -EINVAL (NULL c or elem,
 * capacity 0: a rendezvous holds nothing to evict, or evicted overlapping
 * elem). An evicting send goes ahead of senders waiting for room. Any
 * thread. */
WEFT_API int weft_chan_send_evict(weft_chan *c, const void *elem, void *evicted);
/* weft_chan_send / weft_chan_recv / weft_chan_recv_many for a thread that is
 * not running a task (a plain pthread): they block the thread until done or
 * until the channel is closed. No cancellation or deadline applies (see
 * the _for forms below for a time limit). Returns
 * 0 (recv_many: the count taken), -EPIPE, -EINVAL,
 * or -EDEADLK on a runtime worker thread outside any task, and on a thread
 * that hosts an executor (created one, weft/executor.h, and has not
 * destroyed it): waiting there would stall the tasks that could complete
 * the call. Called from a task they behave exactly as the task calls. */
WEFT_API int weft_chan_send_blocking(weft_chan *c, const void *elem);
WEFT_API int weft_chan_recv_blocking(weft_chan *c, void *elem);
WEFT_API ssize_t weft_chan_recv_many_blocking(weft_chan *c, void *elems, size_t max);
/* The same with a time limit: -ETIMEDOUT once timeout_ns has passed with
 * nothing done (a send that times out delivered nothing, a recv took
 * nothing); an element handed over at that moment is kept and the call
 * returns 0. UINT64_MAX: no limit. From a task: the task call under
 * weft_deadline_push_in(timeout_ns) (whose errors it may return too). */
WEFT_API int weft_chan_send_blocking_for(weft_chan *c, const void *elem, uint64_t timeout_ns);
WEFT_API int weft_chan_recv_blocking_for(weft_chan *c, void *elem, uint64_t timeout_ns);
WEFT_API ssize_t weft_chan_recv_many_blocking_for(weft_chan *c, void *elems, size_t max,
                                                  uint64_t timeout_ns);
/* Closes the channel: every waiting sender fails with -EPIPE, receivers get
 * what is buffered and then -EPIPE. Idempotent. Any thread. */
WEFT_API void weft_chan_close(weft_chan *c);
/* Frees the channel, with any elements still buffered. No task or thread
 * may be waiting on it or use it afterwards: close it and let the users
 * finish first (their calls have returned). Debug builds assert that no
 * waiter is queued; a use after the destroy is not caught. */
WEFT_API void weft_chan_destroy(weft_chan *c);
/* Elements buffered now (a snapshot), and the capacity given at creation.
 * 0 for NULL. Any thread. */
WEFT_API size_t weft_chan_len(weft_chan *c);
WEFT_API size_t weft_chan_capacity(const weft_chan *c);

/* ---- broadcast channel ----------------------------------------------------
 * Any number of senders, many receivers, each receiving every message: a chat room's
 * fan-out, cache invalidations, configuration updates. A subscriber gets
 * every message sent after it subscribed, in order. The channel keeps the
 * last `capacity` messages; a send never waits, and a subscriber that
 * falls more than `capacity` behind loses the oldest of what it had not
 * read: its next receive skips to the oldest message still kept and says
 * how many it missed. A slow subscriber never holds up the sender or the
 * others. (A lossless fan-out, where a slow reader slows the sender, is a
 * weft_chan per subscriber.) Messages are copied in and out by value. */
typedef struct weft_broadcast weft_broadcast;
typedef struct weft_broadcast_sub weft_broadcast_sub;

/* Creates a broadcast channel of elements of elem_size bytes keeping the
 * last capacity messages (both >= 1). Returns 0 and *b, -EINVAL (NULL b,
 * a size of 0, size overflow) or -ENOMEM. Any thread. */
WEFT_API int weft_broadcast_create(weft_broadcast **b, size_t elem_size, size_t capacity);
/* A new subscription, which will receive what is sent from now on.
 * Returns 0 and *sub, -EINVAL, -ENOMEM, -EOVERFLOW past UINT_MAX
 * subscriptions. Any thread; also after a close (it then only sees the
 * end). */
WEFT_API int weft_broadcast_subscribe(weft_broadcast *b, weft_broadcast_sub **sub);
/* Ends a subscription and frees it. No task may be waiting on it or use
 * it afterwards. NULL is ignored. Any thread. */
WEFT_API void weft_broadcast_unsubscribe(weft_broadcast_sub *sub);
/* Copies elem_size bytes from elem into the channel for every subscriber,
 * overwriting the oldest kept message when it is full, and wakes the
 * waiting receivers. Never waits. Returns the number of subscriptions at
 * that moment (0: nobody will see it), -EPIPE once closed, -EINVAL. Any
 * thread. */
WEFT_API int weft_broadcast_send(weft_broadcast *b, const void *elem);
/* Takes sub's next message into elem, waiting for one. *missed (unless
 * NULL) gets how many messages sub lost before this one by falling more
 * than the capacity behind (0 normally). Returns 0; -EPIPE once the
 * channel is closed and sub has read everything still kept; -ECANCELED,
 * -ETIMEDOUT (nothing taken); -EPERM outside a task; -EINVAL. */
WEFT_API int weft_broadcast_recv(weft_broadcast_sub *sub, void *elem, uint64_t *missed);
/* weft_broadcast_recv without waiting: -EAGAIN when there is nothing new.
 * Any thread. */
WEFT_API int weft_broadcast_try_recv(weft_broadcast_sub *sub, void *elem, uint64_t *missed);
/* Closes the channel: sends fail with -EPIPE; receivers get what they
 * have not read yet, then -EPIPE. Idempotent. Any thread. */
WEFT_API void weft_broadcast_close(weft_broadcast *b);
/* Frees the channel: 0, or -EBUSY while subscriptions remain (unsubscribe
 * them first: each would point at freed memory). NULL: 0. Any thread. */
WEFT_API int weft_broadcast_destroy(weft_broadcast *b);
/* Subscriptions now (a snapshot). 0 for NULL. Any thread. */
WEFT_API unsigned weft_broadcast_subscribers(weft_broadcast *b);

/* ---- select ---------------------------------------------------------------
 * Waits on several operations at once and performs exactly one of them,
 * as Go's select does: whichever can go first. Each case is a receive
 * from a channel, a send on a channel, a broadcast subscription's next
 * message, the join of a task set's next member to finish (a JOIN case
 * needs a task: -EPERM from the calls below outside one), an event's
 * notification, a semaphore's unit, a wait group reaching zero (what
 * weft_event_wait, weft_sem_acquire and weft_waitgroup_wait wait for), so
 * that a loop can wait for its work and for a shutdown event in one call,
 * or a descriptor's readiness (what weft_poll waits for), so that a
 * task can read its socket and its channel in one loop.
 * When several cases can go at the moment of the call, one of them is
 * picked at random, so that no case starves the others. A case whose `op`
 * is 0 is off and skipped (a way to drop a channel from a loop once it is
 * closed, as Go's nil channel does).
 *
 *     weft_select_case cases[] = {
 *         {.op = WEFT_SELECT_RECV, .chan = jobs, .elem = &job},
 *         {.op = WEFT_SELECT_BROADCAST, .sub = control, .elem = &cmd},
 *         {.op = WEFT_SELECT_EVENT, .event = &stop},
 *     };
 *     int k = weft_select(cases, 3);
 *     if (k == 0 && cases[0].result == 0) run(&job);
 *
 * The rules of the calls above hold: the other cases have no effect (no
 * element, notification or unit taken or sent), and the interruptions are
 * the same. */
enum {
    WEFT_SELECT_RECV = 1,  /* take an element of chan into elem */
    WEFT_SELECT_SEND,      /* send the element at elem on chan */
    WEFT_SELECT_BROADCAST, /* take sub's next message into elem */
    WEFT_SELECT_JOIN,      /* join set's next member to finish (weft_taskset_join_next) */
    WEFT_SELECT_EVENT,     /* take event's notification (weft_event_wait) */
    WEFT_SELECT_ACQUIRE,   /* take one unit of sem (weft_sem_acquire) */
    WEFT_SELECT_WAITGROUP, /* see wg at zero (weft_waitgroup_wait); takes nothing */
    WEFT_SELECT_POLL,      /* see fd ready for events (weft_poll); takes nothing */
};

/* Most POLL cases one select takes (more: -EINVAL; a set of many
 * descriptors is an epoll's job, weft_epoll_wait). */
#define WEFT_SELECT_POLL_MAX 8

typedef struct weft_select_case {
    int op;                  /* WEFT_SELECT_*, or 0: off */
    weft_chan *chan;         /* RECV and SEND */
    weft_broadcast_sub *sub; /* BROADCAST; a subscription may be in one case only */
    weft_taskset *set;       /* JOIN; a set may be in one case only */
    /* RECV, BROADCAST: where the element goes; SEND: the element; JOIN:
     * a void * that gets the member's return value, or NULL; EVENT,
     * ACQUIRE, WAITGROUP: unused (may be NULL). */
    void *elem;
    /* Set in the case that went (the others are left as they were):
     * POLL: the events that are ready (revents: those asked for, and
     * POLLERR and POLLHUP), -EBADF for a descriptor not open, or an
     * error the poll ended with;
     * 0 (always, for EVENT, ACQUIRE and WAITGROUP), or -EPIPE: the
     * channel is closed (RECV, BROADCAST: and read to its end); JOIN: the member's outcome (as
     * weft_join's: 0, -ECANCELED, WEFT_EPANIC, -ENOMEM), -ECHILD when the set has no member left,
     * -EDEADLK when the selecting task is the only member left (it would wait for itself), -EXDEV
     * for another runtime's set. */
    int result;
    uint64_t missed;           /* BROADCAST: as weft_broadcast_recv's *missed */
    uint64_t id;               /* JOIN: the member's weft_task_id */
    struct weft_event *event;  /* EVENT */
    struct weft_sem *sem;      /* ACQUIRE */
    struct weft_waitgroup *wg; /* WAITGROUP */
    int fd;                    /* POLL: a plain descriptor (not WEFT_DIRECT) */
    unsigned events;           /* POLL: POLLIN, POLLOUT, ... (poll(2)'s bits; not 0) */
} weft_select_case;

/* Most cases one select takes. */
#define WEFT_SELECT_MAX 64

/* Waits until one of cases[0..n) can go, performs it and returns its
 * index; cases[index].result says how it went. A closed channel's case
 * goes at once, with result -EPIPE. As every blocking call here, a
 * cancelled task (or one past its deadline) is refused on entry, even
 * when a case could go. Returns -ECANCELED or -ETIMEDOUT (no case went),
 * -EPERM outside a task, -ENOMEM (more than 8 cases on and none could go
 * at once: their waiter nodes are allocated), -EINVAL: cases NULL, n 0 or
 * above WEFT_SELECT_MAX, no case on, an unknown op, a NULL chan, sub,
 * set, event, sem or wg, or a NULL elem in a RECV, SEND or BROADCAST
 * case, in a case that is on, or one subscription or set in two cases; a
 * POLL case with a negative or direct fd, no events or events past
 * poll(2)'s 16 bits (epoll's flags such as EPOLLET), or more than
 * WEFT_SELECT_POLL_MAX of them. -EAGAIN: a POLL case's poll could not
 * be put on the ring (no SQE), nothing done. Each POLL case's poll is
 * cancelled and reaped before the call returns.
 * The select may touch any of its sources until it returns (only the
 * source of the case that went is left alone once it is woken, unless
 * that source is in another case of the select too): free none of them
 * before that. */
WEFT_API WEFT_MUST_CHECK int weft_select(weft_select_case *cases, size_t n);
/* weft_select without waiting: -EAGAIN when no case can go now, -EINVAL
 * as above; it never allocates. Any thread. */
WEFT_API WEFT_MUST_CHECK int weft_try_select(weft_select_case *cases, size_t n);
/* weft_select for a thread that is not running a task (it sleeps; it is
 * not interrupted), with its -EINVAL and -ENOMEM: in a task it is
 * weft_select; -EDEADLK on a runtime worker thread outside any task or on
 * a thread hosting an executor; -EPERM with a JOIN or POLL case (their
 * waits need a task). */
WEFT_API WEFT_MUST_CHECK int weft_select_blocking(weft_select_case *cases, size_t n);
/* The same with a time limit, as weft_chan_recv_blocking_for: -ETIMEDOUT
 * once timeout_ns has passed with no case gone (none went). UINT64_MAX:
 * no limit. From a task: weft_select under weft_deadline_push_in. */
WEFT_API WEFT_MUST_CHECK int weft_select_blocking_for(weft_select_case *cases, size_t n,
                                                      uint64_t timeout_ns);

/* ---- mutex ----------------------------------------------------------------
 * A task mutex: waiting for it parks only the task. Not recursive. Unlock
 * hands the mutex to the longest waiter, so no waiter is starved. The task
 * that locked it must unlock it (checked in debug builds); it may have moved
 * to another worker in between. */
typedef struct weft_mutex {
    unsigned _lock;   /* spinlock over the fields below */
    unsigned _locked; /* 1 while held */
    weft_task *_owner;
    weft__waitlist _waiters;
} weft_mutex;
/* clang-format off */
#define WEFT_MUTEX_INIT {0, 0, 0, {0, 0}}
/* clang-format on */

/* Returns 0, or -EINVAL for NULL. Any thread. */
WEFT_API int weft_mutex_init(weft_mutex *m);
/* Locks m, waiting while another task holds it. Returns 0, -ECANCELED,
 * -ETIMEDOUT (m not held), -EDEADLK when the caller already holds it,
 * -EPERM outside a task, -EINVAL. A cancelled task gets -ECANCELED even
 * for a free m, and then does not hold it: shield the lock (weft_shield_push)
 * where cleanup must take it, and lift the deadlines too
 * (weft_deadline_suspend) where that cleanup may run past one. */
WEFT_API WEFT_MUST_CHECK int weft_mutex_lock(weft_mutex *m);
/* Locks m if it is free: 0, -EBUSY (also when the caller holds it), -EPERM
 * outside a task, -EINVAL. It never waits, and works in a cancelled task or
 * past a deadline too. */
WEFT_API WEFT_MUST_CHECK int weft_mutex_trylock(weft_mutex *m);
/* Releases m, handing it to the longest waiter if there is one. Only the
 * task holding m may unlock it (debug builds abort otherwise). */
WEFT_API void weft_mutex_unlock(weft_mutex *m);

/* ---- semaphore ------------------------------------------------------------
 * A counting semaphore. Release hands its unit straight to the longest
 * waiter when there is one. */
typedef struct weft_sem {
    unsigned _lock;  /* spinlock over the fields below */
    unsigned _count; /* units available; 0 whenever a task waits */
    weft__waitlist _waiters;
} weft_sem;
/* clang-format off */
#define WEFT_SEM_INIT(n) {0, (n), {0, 0}}
/* clang-format on */

/* Sets the count to n. Returns 0, or -EINVAL for NULL. Any thread. */
WEFT_API int weft_sem_init(weft_sem *s, unsigned n);
/* Takes one unit, waiting while there is none. Returns 0, -ECANCELED,
 * -ETIMEDOUT (nothing taken), -EPERM outside a task, -EINVAL. */
WEFT_API WEFT_MUST_CHECK int weft_sem_acquire(weft_sem *s);
/* Takes one unit if one is available: 0, -EAGAIN, -EINVAL. Any thread. */
WEFT_API WEFT_MUST_CHECK int weft_sem_try_acquire(weft_sem *s);
/* Gives one unit back (to the longest waiter, if any). Any thread. A
 * release with no waiter at a count of UINT_MAX is a bug: debug builds
 * abort, release builds drop the unit. */
WEFT_API void weft_sem_release(weft_sem *s);
/* Units available now (a snapshot: 0 while tasks wait), as weft_chan_len
 * is for a channel: for stats, and for a check at the end of a program
 * that every unit came back. 0 for NULL. Any thread. */
WEFT_API unsigned weft_sem_available(weft_sem *s);

/* ---- event ----------------------------------------------------------------
 * A notification point with one pending slot, so that no notification is
 * lost between a task's check of its condition and its wait:
 * - notify_one wakes the longest waiter; when no task waits, the event is
 *   left "pending" instead (at most one notification is remembered).
 * - notify_all wakes every task waiting now and also leaves it pending.
 * - wait returns at once, clearing it, when the event is pending.
 * Waits may also return without a matching notify: always re-check the
 * condition in a loop. weft_event_wait_locked is the condition-variable form
 * for conditions guarded by a weft_mutex; docs/sync.md shows both patterns. */
typedef struct weft_event {
    unsigned _lock;    /* spinlock over the fields below */
    unsigned _pending; /* a notification no waiter has taken yet */
    weft__waitlist _waiters;
} weft_event;
/* clang-format off */
#define WEFT_EVENT_INIT {0, 0, {0, 0}}
/* clang-format on */

/* Returns 0, or -EINVAL for NULL. Any thread. */
WEFT_API int weft_event_init(weft_event *e);
/* Waits for a notification (or takes the pending one). Returns 0,
 * -ECANCELED, -ETIMEDOUT, -EPERM outside a task, -EINVAL. */
WEFT_API int weft_event_wait(weft_event *e);
/* Like weft_event_wait, for a caller holding m: registers as a waiter, then
 * unlocks m, waits, and locks m again before returning, whatever it returns
 * (the re-lock ignores cancellation and deadlines). A notify made by any task
 * after this call unlocked m wakes it. A notification already pending is
 * taken at once, without unlocking m. Returns as weft_event_wait, or
 * -EPERM when the caller does not hold m (m is then left alone). */
WEFT_API int weft_event_wait_locked(weft_event *e, weft_mutex *m);
/* Wakes one waiter, or leaves the event pending. Any thread. */
WEFT_API void weft_event_notify_one(weft_event *e);
/* Wakes every waiter and leaves the event pending. Any thread. */
WEFT_API void weft_event_notify_all(weft_event *e);

/* ---- wait group -----------------------------------------------------------
 * A counter that tasks can wait on until it reaches zero: add before
 * starting work, done when a piece finishes, wait for all of it. */
typedef struct weft_waitgroup {
    unsigned _lock; /* spinlock over the fields below */
    int _count;
    weft__waitlist _waiters;
} weft_waitgroup;
/* clang-format off */
#define WEFT_WAITGROUP_INIT {0, 0, {0, 0}}
/* clang-format on */

/* Sets the count to 0. Returns 0, or -EINVAL for NULL. Any thread. */
WEFT_API int weft_waitgroup_init(weft_waitgroup *w);
/* Adds n (which may be negative) to the count; reaching 0 wakes every
 * waiter. Taking the count below 0 (or past INT_MAX) is a caller bug: debug
 * builds print a message and abort, release builds clamp. Any thread. */
WEFT_API void weft_waitgroup_add(weft_waitgroup *w, int n);
/* weft_waitgroup_add(w, -1). Any thread. */
WEFT_API void weft_waitgroup_done(weft_waitgroup *w);
/* Waits until the count is 0. Returns 0, -ECANCELED, -ETIMEDOUT, -EPERM
 * outside a task, -EINVAL. */
WEFT_API int weft_waitgroup_wait(weft_waitgroup *w);

/* ---- watermark ------------------------------------------------------------
 * A 64-bit level that only rises, which tasks wait on until it reaches a
 * value of their own: the classic use is group commit, where a log writer
 * raises it to the last sequence number made durable and each committer
 * waits until it covers its own record. A failure can be published too:
 * waits the level has not satisfied then return that error instead of
 * waiting for ever. Waiters are kept in target order (equal targets in
 * waiting order): an advance wakes exactly the waiters it satisfies, in
 * that order, and costs a step for each of them; a wait costs a step for
 * each waiter with a higher target (none when targets come in rising
 * order). */
typedef struct weft_watermark {
    unsigned _lock; /* spinlock over the fields below */
    int _error;     /* 0, or the negative errno given to weft_watermark_fail */
    uint64_t _level;
    weft__waitlist _waiters; /* by target; each waiter's buf points at it */
} weft_watermark;
/* clang-format off */
#define WEFT_WATERMARK_INIT(level) {0, 0, (level), {0, 0}}
/* clang-format on */

/* Sets the level, clears any failure. Returns 0, or -EINVAL for NULL. Any
 * thread, with no task waiting. */
WEFT_API int weft_watermark_init(weft_watermark *m, uint64_t level);
/* Raises the level to level (a lower or equal one changes nothing) and
 * wakes every waiter whose target it reaches. Any thread. */
WEFT_API void weft_watermark_advance(weft_watermark *m, uint64_t level);
/* Publishes a failure: error (a negative errno, say -EIO from the fsync)
 * wakes every waiter, and every later wait whose target is above the level
 * returns it at once. Targets at or below the level still return 0: what
 * was covered stays covered. Only the first failure is kept (until
 * weft_watermark_recover). An error that
 * is not negative, or that a wait returns for itself (-ECANCELED,
 * -ETIMEDOUT, -EPERM, -EINVAL), is published as -EIO. The level may still
 * advance. Any thread. */
WEFT_API void weft_watermark_fail(weft_watermark *m, int error);
/* Clears a published failure, keeping the level and any waiter: waits
 * started from then on wait for the level again. For a writer that
 * recovers (space freed after -ENOSPC) and goes on from the level it
 * reached; the waits the failure ended have returned it already. Any
 * thread. */
WEFT_API void weft_watermark_recover(weft_watermark *m);
/* The level now (a snapshot); 0 for NULL. Any thread. */
WEFT_API uint64_t weft_watermark_level(weft_watermark *m);
/* Waits until the level is at least target. Returns 0 (at once when it is
 * already), the failure given to weft_watermark_fail, -ECANCELED,
 * -ETIMEDOUT, -EPERM outside a task, -EINVAL. */
WEFT_API WEFT_MUST_CHECK int weft_watermark_wait(weft_watermark *m, uint64_t target);

#ifdef __cplusplus
}
#endif
#endif
