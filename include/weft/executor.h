/* weft/executor.h - one weft worker driven by someone else's event loop.
 *
 * For programs that already have a loop (libuv, libevent, GLib, epoll):
 * create an executor, watch weft_executor_fd() for readability in the host
 * loop, and call weft_executor_run() when it is readable or when the deadline
 * it last returned has passed. Tasks inside sleep, yield, join and do
 * io_uring I/O exactly as under weft_run. Every call must come from the
 * thread that created the executor, and none from inside a task (nor from a
 * spawn's discard callback, which runs inside a run): run and spawn return
 * -EPERM otherwise, destroy prints a message and aborts.
 *
 * What the host thread may call between runs, outside any task: the
 * executor calls; weft_cancel (made at once there; from another thread it
 * is queued for the host's next run, since the executor's task tree has no
 * lock, and makes the fd readable); the foreign-thread
 * forms of weft/sync.h, which other threads may call too (a channel's try_send,
 * an event's notify, a semaphore's release, ...; the _blocking channel
 * calls return -EDEADLK on a thread that hosts an executor, since they
 * would stop the loop that runs the tasks they wait for). Not weft_join
 * (-EPERM), which would wait: weft_executor_try_join takes a finished
 * task's result and frees its handle, or says it still runs; not weft_stats_snapshot or
 * weft_dump_tasks (-EPERM): spawn a task that takes them. Several executors
 * may share one thread (each with its own fd), and weft_run may be called
 * on it between runs (the executors wait meanwhile). A signal caught with
 * weft_config.catch_signals may land on the host thread and interrupt its
 * wait (EINTR): the host loop must retry, as libuv's does.
 */
#ifndef WEFT_EXECUTOR_H
#define WEFT_EXECUTOR_H

#include <weft/runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_executor weft_executor;

/* Creates an executor with the queues, policies and limits of cfg (NULL =
 * defaults; cfg->workers must be 0 or 1). cfg need not outlive the call:
 * the queue specs and their names are copied (the policy tables they
 * point to are not, and must stay valid; a policy reads its config in
 * init, at the create). Returns 0, -EINVAL (see
 * weft_last_config_error()), -EBUSY when called from a runtime's thread,
 * -ENOMEM, or the error of io_uring setup. */
WEFT_API int weft_executor_create(weft_executor **ex, const weft_config *cfg);

/* A file descriptor that becomes readable when the executor has work: an
 * I/O completion or a wake from another thread. Owned by the executor:
 * weft_executor_run empties it (do not read it), and weft_executor_destroy
 * closes it, so stop watching it (uv_poll_stop, EPOLL_CTL_DEL) before the
 * destroy. Level- and edge-triggered watching both work. */
WEFT_API int weft_executor_fd(const weft_executor *ex);

/* Runs ready tasks for up to budget_ns (0 = until none is ready: a task that
 * loops on weft_yield is always ready, so a shared loop should pass a budget,
 * 1 ms say), fires due timers, and submits the I/O the tasks started. The budget is looked at
 * between slices (a slice ends after io_poll_interval, 500 us by default,
 * or max_runs_per_slice task runs; a task runs until it yields), so a run
 * may last that much past it. With a single queue, slices are counted in
 * runs only: a task that runs long between yields should yield with
 * weft_yield_maybe, which ends the slice on time (a weft_yield loop of
 * 500 us runs holds the run for max_runs_per_slice of them). Returns the CLOCK_MONOTONIC time
 * (weft_now_ns) by which it must be called again: 0 when work is still
 * ready (budget used up, or I/O the kernel did not take yet), the next
 * timer's deadline, or INT64_MAX when only the fd can bring more work.
 * -EPERM from a task or another thread, -errno from the ring. */
WEFT_API int64_t weft_executor_run(weft_executor *ex, uint64_t budget_ns);

/* Spawns fn(arg) into the executor from the host (its parent is the root).
 * Same options and errors as weft_spawn_ex. The task first runs in the next
 * weft_executor_run; the spawn makes weft_executor_fd() readable, so a host
 * that waits on it calls that run. */
WEFT_API int weft_executor_spawn(weft_executor *ex, weft_task **t, const weft_spawn_opts *o,
                                 weft_fn fn, void *arg);

/* Live tasks (spawned, not finished). */
WEFT_API uint64_t weft_executor_tasks(const weft_executor *ex);

/* weft_join for the host, between runs, without waiting: for a task of
 * this executor that has finished, its outcome as weft_join returns it
 * (0, -ECANCELED, WEFT_EPANIC, -ENOMEM), *result (if non-NULL) set and
 * the handle freed; -EAGAIN while it has not finished, the handle still
 * valid (call again after a later run, or detach it). -EINVAL for NULL ex
 * or t, -EPERM from a task or another thread, -EXDEV for a task of
 * another runtime, WEFT_EHANDLE in debug builds for a handle joined or
 * detached already. */
WEFT_API int weft_executor_try_join(weft_executor *ex, weft_task *t, void **result);

/* The executor's runtime, for weft_runtime_spawn from other threads (a
 * feeder pthread), without a task that reads weft_runtime_current for the
 * host; NULL for NULL. Valid until weft_executor_destroy returns, with
 * the same rule as weft_runtime_current's: tell such threads to stop, and
 * join them, before the destroy. */
WEFT_API weft_runtime *weft_executor_runtime(weft_executor *ex);

/* Cancels every task, runs the executor until all have finished (blocking
 * the host for that long), and frees everything. Handles not joined are
 * invalid afterwards. From the start of the call, weft_runtime_spawn into
 * the executor's runtime returns -ESHUTDOWN, and requests still queued
 * never run; other threads must stop using the runtime before the call
 * returns, since it is freed then. It also waits for the executor's
 * blocking-pool jobs (weft_spawn_blocking, weft_getaddrinfo) still running,
 * which cannot be interrupted (docs/blocking.md). If the ring fails while
 * tasks are left to finish, destroy prints the error and aborts, as
 * weft_run does. */
WEFT_API void weft_executor_destroy(weft_executor *ex);

#ifdef __cplusplus
}
#endif
#endif
