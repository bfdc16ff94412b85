/* The per-worker maintenance task: asynchronous cleanup of ring-bound
 * resources; see resource.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/fault.h"
#include "observe/trace.h"
#include "ring/op.h"
#include "runtime/worker.h"

/* Jobs submitted together per round: one batch, one wait. */
#define ROUND_MAX 64
/* The wait before a round that follows one in which every job came back
 * -EALREADY/-ENOENT: from PAUSE_MIN_NS, doubling up to PAUSE_MAX_NS. */
#define PAUSE_MIN_NS 20000ull
#define PAUSE_MAX_NS 5000000ull

/* -ENOENT (the target already finished) counts as success, and so does
 * -EBADF for a CLOSE (the slot is already empty). -EALREADY is neither: the
 * target was running at that instant, and a multishot op carries on after
 * it, so the job simply goes again (see finish_round). */
static bool cleanup_ok(unsigned opcode, int res)
{
    return res >= 0 || res == -ENOENT || (opcode == IORING_OP_CLOSE && res == -EBADF);
}

/* Decides what happens after a failed cleanup; true = queue it again. */
static bool cleanup_failed(weft__worker *w, unsigned opcode, unsigned tries, int res)
{
    const weft_config *cfg = &w->rt->cfg;
    switch (cfg->on_cleanup_error) {
    case WEFT_CLEANUP_ABORT:
        fprintf(stderr, "weft: cleanup %s failed: %s (on_cleanup_error = abort)\n",
                weft_opcode_name(opcode), weft_strerror(res));
        weft__trace_abort(w);
        abort();
    case WEFT_CLEANUP_IGNORE:
        w->cleanup_failed++;
        return false;
    case WEFT_CLEANUP_RETRY:
    default:
        if (tries < cfg->cleanup_retries) {
            w->cleanup_retried++;
            return true;
        }
        w->cleanup_failed++;
        fprintf(stderr, "weft: cleanup %s failed %u times, giving up: %s\n",
                weft_opcode_name(opcode), tries, weft_strerror(res));
        return false;
    }
}

typedef struct job {
    weft__io io;
    weft__cleanup *c;             /* NULL for a direct CLOSE */
    struct weft__close_job close; /* a direct CLOSE's slot and tries */
    unsigned opcode;
    bool faulted; /* fault injection: a NOP went instead, the result is -EIO */
} job;

static void push_back(weft__worker *w, weft__cleanup *c)
{
    c->next = NULL;
    if (w->cleanup_tail)
        w->cleanup_tail->next = c;
    else
        w->cleanup_head = c;
    w->cleanup_tail = c;
}

/* Takes up to ROUND_MAX jobs off the queues and prepares their SQEs.
 * Returns how many were prepared. */
static unsigned prepare_round(weft__worker *w, job *jobs)
{
    unsigned n = 0;
    while (n < ROUND_MAX && (w->cleanup_head || w->nclose)) {
        job *j = &jobs[n];
        int err;
        if (w->cleanup_head) {
            weft__cleanup *c = w->cleanup_head;
            struct io_uring_sqe *sqe = weft__io_begin(&j->io, c->opcode, &err);
            if (!sqe)
                break; /* no SQE now (fault injection): next round */
            w->cleanup_head = c->next;
            if (!w->cleanup_head)
                w->cleanup_tail = NULL;
            j->c = c;
            j->opcode = c->opcode;
            /* Fault injection fails the job without doing it, so the
             * target really is still there, as after a real failure. */
            j->faulted = weft__fault_hit(WEFT_FAULT_CLEANUP);
            if (j->faulted)
                io_uring_prep_nop(sqe);
            else if (c->opcode == IORING_OP_POLL_REMOVE)
                io_uring_prep_poll_remove(sqe, c->target);
            else if (c->opcode == IORING_OP_TIMEOUT_REMOVE)
                io_uring_prep_timeout_remove(sqe, c->target, 0);
            else
                io_uring_prep_cancel64(sqe, c->target, 0);
        } else {
            struct io_uring_sqe *sqe = weft__io_begin(&j->io, IORING_OP_CLOSE, &err);
            if (!sqe)
                break;
            j->c = NULL;
            j->close = w->close_slots[--w->nclose];
            j->opcode = IORING_OP_CLOSE;
            j->faulted = weft__fault_hit(WEFT_FAULT_CLEANUP);
            if (j->faulted)
                io_uring_prep_nop(sqe);
            else
                io_uring_prep_close_direct(sqe, j->close.slot);
        }
        n++;
    }
    return n;
}

/* The op the job should have ended may run on: the worker stops waiting for
 * it (shutdown would never come), and its object is released when its last
 * CQE comes or the ring goes. */
static void abandon(weft__worker *w, weft__cleanup *c)
{
    c->abandoned = true;
    c->aprev = NULL;
    c->anext = w->abandoned;
    if (c->anext)
        c->anext->aprev = c;
    w->abandoned = c;
    w->streams_abandoned++;
}

static void unabandon(weft__worker *w, weft__cleanup *c)
{
    if (c->aprev)
        c->aprev->anext = c->anext;
    else
        w->abandoned = c->anext;
    if (c->anext)
        c->anext->aprev = c->aprev;
    c->abandoned = false;
    w->streams_abandoned--;
}

void weft__cleanup_target_ended(weft__worker *w, weft__cleanup *c)
{
    c->target_ended = true;
    if (c->abandoned)
        unabandon(w, c);
    if (!c->queued)
        c->release(c);
}

void weft__cleanup_fini(weft__worker *w)
{
    /* Jobs still queued: the runtime ended without a maintenance task to
     * run them (none could be spawned, out of memory). The ring is gone,
     * and with it their ops' kernel side and the direct slots. */
    while (w->cleanup_head) {
        weft__cleanup *c = w->cleanup_head;
        w->cleanup_head = c->next;
        c->queued = false;
        c->release(c);
    }
    w->cleanup_tail = NULL;
    w->nclose = 0;
    while (w->abandoned) {
        weft__cleanup *c = w->abandoned;
        unabandon(w, c);
        c->release(c);
    }
}

/* The maintenance task is done with job c. */
static void job_done(weft__worker *w, weft__cleanup *c, bool gave_up)
{
    c->queued = false;
    if (c->target_ended)
        c->release(c);
    else if (gave_up)
        abandon(w, c);
    /* else: the op's last CQE is on its way and releases c. */
}

/* Returns how many jobs went round again: their target was between two
 * shots (-EALREADY, -ENOENT), or they failed and are to be tried again. */
static unsigned finish_round(weft__worker *w, job *jobs, unsigned n)
{
    unsigned again = 0;
    for (unsigned i = 0; i < n; i++) {
        job *j = &jobs[i];
        int res = weft__io_wait(&j->io);
        if (j->faulted)
            res = -EIO;
        weft__cleanup *c = j->c;
        if (c && c->target_ended) {
            w->cleanup_done++; /* whatever the result said, the op is over */
            job_done(w, c, false);
            continue;
        }
        /* -EALREADY: the target was running at that instant. -ENOENT while
         * its last CQE has not come: a multishot op between two shots (with
         * DEFER_TASKRUN a ticker that fired is off the kernel's list until
         * the next enter re-arms it). Either way it is still live: again. */
        if (c && (res == -EALREADY || res == -ENOENT)) {
            push_back(w, c);
            again++;
            continue;
        }
        unsigned tries = c ? ++c->tries : ++j->close.tries;
        if (cleanup_ok(j->opcode, res)) {
            w->cleanup_done++;
            if (c)
                job_done(w, c, false);
            continue;
        }
        if (!cleanup_failed(w, j->opcode, tries, res)) {
            if (c)
                job_done(w, c, true);
            continue;
        }
        if (c)
            push_back(w, c);
        else
            w->close_slots[w->nclose++] = j->close;
        again++;
    }
    return again;
}

/* No task of the program is left to queue more cleanup, and no stream is
 * still winding down (its last CQEs must be reaped before the ring goes):
 * the maintenance task may end. */
static bool nothing_left(const weft__worker *w)
{
    return weft__worker_program_tasks(w) == 0 && w->streams_live == w->streams_abandoned;
}

static void *maintenance_main(void *arg)
{
    weft__worker *w = arg;
    job jobs[ROUND_MAX];
    uint64_t pause_ns = 0;
    for (;;) {
        if (w->cleanup_head || w->nclose) {
            unsigned n = prepare_round(w, jobs);
            if (n == 0) {
                weft_yield();
                continue;
            }
            /* A ticker's TIMEOUT_REMOVE must come right after the task work
             * that re-arms a fired tick (see weft__ring_submit_rearmed). */
            weft__ring_submit_rearmed(&w->ring);
            if (finish_round(w, jobs, n) < n) {
                pause_ns = 0;
                continue;
            }
            /* Every job found its target between two shots, or failed:
             * going round again at once would spin. A ticker's kernel side
             * ends by itself soon anyway (stream.c, WEFT_TICK_ARMING_NS). */
            pause_ns = pause_ns ? pause_ns * 2 : PAUSE_MIN_NS;
            if (pause_ns > PAUSE_MAX_NS)
                pause_ns = PAUSE_MAX_NS;
            weft_sleep_ns(pause_ns);
            continue;
        }
        /* Nothing queued. Streams still winding down may queue nothing
         * more, but their last CQEs must be reaped before the ring goes:
         * stay until they are, and until no user task could queue more. */
        if (nothing_left(w))
            break;
        w->maint_waiting = true;
        weft__task_park();
        w->maint_waiting = false;
    }
    w->maint = NULL;
    return NULL;
}

static void wake_maintenance(weft__worker *w)
{
    if (w->maint) {
        if (w->maint_waiting)
            weft__task_wake(w->maint);
        return;
    }
    /* A background task belongs to the root, outside any task's subtree;
     * the flag makes the subtree cancellation calls pass it by. */
    weft_spawn_opts o = {.flags = WEFT_TASK_STICKY | WEFT_TASK_BACKGROUND,
                         .name = "weft-maintenance"};
    weft_task *t;
    int r = weft__spawn_internal(&t, &o, maintenance_main, w, TASK_F_MAINTENANCE | TASK_F_UNCOUNTED,
                                 false);
    if (r == 0)
        w->maint = t;
    /* Without a task (out of memory) the jobs stay queued; the next
     * queued job or idle pass tries again. */
}

void weft__cleanup_queue(weft__worker *w, weft__cleanup *c)
{
    c->tries = 0;
    c->queued = true;
    c->target_ended = false;
    c->abandoned = false;
    push_back(w, c);
    wake_maintenance(w);
}

void weft__cleanup_close_direct(weft__worker *w, unsigned slot)
{
    w->close_slots[w->nclose++] = (struct weft__close_job){.slot = slot};
    wake_maintenance(w);
}

void weft__maintenance_idle(weft__worker *w)
{
    if (w->cleanup_head || w->nclose) {
        wake_maintenance(w);
        return;
    }
    if (w->maint && w->maint_waiting && nothing_left(w))
        weft__task_wake(w->maint);
}
