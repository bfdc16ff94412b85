/* The embedded executor: a runtime of one worker whose loop is the host's.
 * The worker is the same as under weft_run; only who calls it differs. The
 * worker's thread-local pointer is set for the duration of each call, so
 * tasks and the host thread never see each other's state. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft/executor.h>
#include <weft/io.h>

#include "common/saturate.h"
#include "common/fault.h"
#include "observe/trace.h"
#include "runtime/config.h"
#include "runtime/worker.h"

struct weft_executor {
    weft__runtime rt;
    weft__worker worker;
    pthread_t host; /* the thread that created it: every call comes from it */
};

/* Executors the calling thread created and has not destroyed: it is their
 * host, and calls them between its other work. */
static __thread unsigned tls_hosted;

bool weft__thread_hosts_executor(void)
{
    return tls_hosted != 0;
}

bool weft__executor_host_here(const weft__runtime *rt)
{
    const weft_executor *ex =
        (const weft_executor *)((const char *)rt - offsetof(weft_executor, rt));
    return !weft__worker_self() && pthread_equal(ex->host, pthread_self());
}

/* Whether the caller may drive ex: its creating thread, outside any task. */
static bool called_by_host(const weft_executor *ex)
{
    return !weft__worker_self() && pthread_equal(ex->host, pthread_self());
}

/* Frees ex once nothing runs on it, its worker included when that was set
 * up: the ring (on the process's list of weft rings), the alternate signal
 * stack and the fault handler go with the worker, then the pools. */
static void release(weft_executor *ex, bool worker_up)
{
    weft__worker *w = &ex->worker;
    if (worker_up) {
        weft__worker_fini(w);
        weft__stack_helper_stop(&ex->rt.stack_helper); /* before the pool it fills */
        weft__worker_release_pools(w, w->records.outstanding != 0);
    }
    weft__runtime_teardown(&ex->rt);
    free(ex);
}

int weft_executor_create(weft_executor **out, const weft_config *cfg)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (weft__worker_self())
        return -EBUSY;
    weft_executor *ex = weft__calloc_aligned(1, sizeof *ex, _Alignof(weft_executor));
    if (!ex)
        return -ENOMEM;
    int r = weft__runtime_setup(&ex->rt, cfg);
    if (r < 0) {
        release(ex, false); /* teardown follows a failed setup, as in weft_run */
        return r;
    }
    ex->rt.nworkers = 1;
    ex->rt.direct_tag_base = weft__direct_tags_take(1);
    ex->rt.workers = &ex->worker;
    ex->rt.embedded = true;
    if (ex->rt.cfg.workers > 1)
        r = weft__config_reject("workers: %u, but an executor is one worker (0 or 1)",
                                ex->rt.cfg.workers);
    else if (ex->rt.cfg.trace_path)
        r = weft__trace_open(&ex->rt, ex->rt.cfg.trace_path);
    bool worker_up = false;
    if (r == 0) {
        r = weft__worker_init(&ex->worker, &ex->rt, 0, true);
        worker_up = r == 0;
    }
    if (r == 0) /* last, as in weft_run */
        r = weft__signals_catch(&ex->rt, ex->rt.cfg.catch_signals, ex->rt.cfg.ncatch_signals);
    if (r < 0) {
        release(ex, worker_up);
        return r;
    }
    weft__worker_set_self(&ex->worker);
    weft__worker_start(&ex->worker);
    weft__worker_set_self(NULL);
    ex->host = pthread_self();
    tls_hosted++;
    *out = ex;
    return 0;
}

int weft_executor_fd(const weft_executor *ex)
{
    return ex ? ex->worker.ring.event_fd : -EINVAL;
}

int64_t weft_executor_run(weft_executor *ex, uint64_t budget_ns)
{
    if (!ex)
        return -EINVAL;
    if (!called_by_host(ex))
        return -EPERM;
    weft__worker *w = &ex->worker;
    weft__worker_set_self(w);
    /* Consume the readiness first, so completions that arrive while the
     * tasks run make the fd readable again. */
    uint64_t counter;
    ssize_t n = read(w->ring.event_fd, &counter, sizeof counter);
    (void)n;
    weft__worker_sync_clock(w);
    uint64_t now = weft_now_ns();
    w->count.busy_since_ns = now; /* busy from here to the end of the call */
    /* A budget past the clock's range ("no limit") must not wrap round to
     * one that is over at once. */
    uint64_t until = budget_ns ? weft__add_sat(now, budget_ns) : UINT64_MAX;
    int r = weft__worker_run_ready(w, until);
    uint64_t end = weft_now_ns();
    if (end > w->count.busy_since_ns)
        w->count.busy_ns += end - w->count.busy_since_ns;
    if (r >= 0) {
        /* Hand the I/O the tasks started to the kernel before returning to
         * the host: nothing else will. What the kernel did not take (a
         * full completion queue pushing back) needs another run soon,
         * which reaps completions and submits again. */
        int s = weft__ring_submit(&w->ring);
        if (s < 0)
            r = s;
        else if (w->ring.pending_sqes)
            r = 1;
    }
    weft__worker_set_self(NULL);
    if (r < 0)
        return r;
    if (r == 1)
        return 0;
    uint64_t next = weft__worker_next_deadline(w);
    /* A timer past INT64_MAX (a sleep "for ever" of INT64_MAX ns) must not
     * read as -errno. */
    return next > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)next;
}

int weft_executor_spawn(weft_executor *ex, weft_task **t, const weft_spawn_opts *o, weft_fn fn,
                        void *arg)
{
    if (!ex)
        return -EINVAL;
    if (!called_by_host(ex))
        return -EPERM;
    weft__worker_set_self(&ex->worker);
    int r = weft_spawn_ex(t, o, fn, arg);
    weft__worker_set_self(NULL);
    /* The task waits in the worker's own queue, which nothing else makes
     * the fd readable for: a host that was told INT64_MAX ("only the fd")
     * would sleep on it with the task never run. */
    if (r == 0)
        weft__eventfd_signal(ex->worker.ring.event_fd);
    return r;
}

uint64_t weft_executor_tasks(const weft_executor *ex)
{
    return ex ? weft__worker_program_tasks(&ex->worker) : 0;
}

int weft_executor_try_join(weft_executor *ex, weft_task *t, void **result)
{
    if (!ex || !t)
        return -EINVAL;
    if (!called_by_host(ex))
        return -EPERM;
    if (weft__task_owner(t)->rt != &ex->rt)
        return -EXDEV;
    return weft__task_try_join(t, result);
}

weft_runtime *weft_executor_runtime(weft_executor *ex)
{
    return ex ? (weft_runtime *)&ex->rt : NULL;
}

void weft_executor_destroy(weft_executor *ex)
{
    if (!ex)
        return;
    if (weft__worker_self()) {
        /* It would take over this thread's worker, run a loop inside a task
         * and free what that task may be running on. */
        fputs("weft: weft_executor_destroy called from inside a task (or a runtime's thread)\n",
              stderr);
        abort();
    }
    if (!pthread_equal(ex->host, pthread_self())) {
        /* The per-thread state the executor set up (the host count, the
         * alternate signal stack) is the creating thread's. */
        fputs("weft: weft_executor_destroy called from a thread other than the one that "
              "created the executor\n",
              stderr);
        abort();
    }
    /* Like the end of weft_run's main task: outside spawns that come late
     * are refused with -ESHUTDOWN, and any still queued are spawned
     * cancelled, so that no new work can hold the destroy up. Under the
     * inject lock, which weft_runtime_spawn holds while it looks. */
    pthread_mutex_lock(&ex->rt.inject_lock);
    atomic_store_explicit(&ex->rt.main_done, true, memory_order_release);
    pthread_mutex_unlock(&ex->rt.inject_lock);
    weft__worker *w = &ex->worker;
    weft__worker_set_self(w);
    weft__tree_cancel_children_locked(&ex->rt.root);
    weft__tree_cancel_children_locked(&ex->rt.orphans);
    /* Cancelled tasks may still wait for I/O to come back, and queued
     * outside spawns are still to be spawned cancelled (each ends without
     * running, through its discard): drive the worker until none is left. */
    if (weft__worker_live_tasks(w) || atomic_load(&ex->rt.inject_pending))
        weft__worker_run(w);
    weft__worker_set_self(NULL);
    release(ex, true);
    tls_hosted--; /* this thread created it, so counted it */
}
