/* Awaiting ops with cancellation safety; see op.h. */
#include "ring/op.h"

#include <errno.h>

#include "runtime/worker.h"
#include "task/task.h"

int weft__direct_slot_here(int fd)
{
    weft__worker *w = weft__worker_self();
    return w ? weft__direct_slot(&w->ring, fd) : -1;
}

void weft__io_complete(weft__op *op, int res, uint32_t cflags)
{
    weft__io *io = (weft__io *)op;
    if (cflags & IORING_CQE_F_NOTIF) {
        /* A zero-copy send's buffer notification: the kernel is done with
         * the buffer; the result came in the first CQE. */
        io->done = true;
    } else {
        /* The kernel's restart codes (ERESTARTSYS and kin: 512-516) never
         * reach user space from a system call; an op that a signal to its
         * io-wq worker interrupted (a cancelled SPLICE or TEE) posts them
         * as they are. They mean EINTR, as READ and WRITE already say.
         * 515 among them is no restart code: ioctl(2) reports it ENOTTY. */
        if (res == -515) /* ENOIOCTLCMD: a uring_cmd the file lacks, ENOTTY to ioctl(2) */
            res = -ENOTTY;
        else if (res <= -512 && res >= -516)
            res = -EINTR;
        io->res = res;
        io->cflags = cflags;
        io->done = !(cflags & IORING_CQE_F_MORE);
    }
    if (io->done) {
        /* The kernel is done with it: from now the op no longer ties the
         * task to this ring, so a runnable task may be handed over before
         * it even resumes. (This runs on the owner, in its dispatcher.) */
        if (io->pinning && !io->result_bound) {
            io->pinning = false;
            io->task->ring_ops--;
        }
        weft__task_wake(io->task);
    }
}

weft__ring *weft__io_ring(unsigned opcode, int *err)
{
    weft__worker *w = weft__worker_self();
    weft_task *t = w ? w->current : NULL;
    if (!t) {
        *err = -EPERM;
        return NULL;
    }
    if (!weft__ring_supports(&w->ring, opcode)) {
        *err = -EOPNOTSUPP;
        return NULL;
    }
    /* A close goes out even from a cancelled task: it is how that task
     * cleans up, and refusing it would leak the descriptor. */
    int intr = opcode == IORING_OP_CLOSE ? 0 : weft__task_interrupted(t);
    if (intr) {
        *err = intr;
        return NULL;
    }
    return &w->ring;
}

void weft__io_init(weft__io *io)
{
    io->op.complete = weft__io_complete;
    io->op.counted = 0;
    io->task = weft__task_current();
    io->res = 0;
    io->cflags = 0;
    io->done = false;
    io->pinning = false;
    io->result_bound = false;
    io->uninterruptible = false;
    io->interrupted = false;
}

struct io_uring_sqe *weft__io_begin(weft__io *io, unsigned opcode, int *err)
{
    weft__ring *r = weft__io_ring(opcode, err);
    if (!r)
        return NULL;
    struct io_uring_sqe *sqe = weft__ring_sqe(r, &io->op);
    if (!sqe) {
        *err = -EAGAIN;
        return NULL;
    }
    r->ops[opcode]++;
    weft__io_init(io);
    io->op.counted = (uint8_t)(opcode + 1);
    io->uninterruptible = opcode == IORING_OP_CLOSE;
    return sqe;
}

static void ignore_cqe(weft__op *op, int res, uint32_t cflags)
{
    (void)op, (void)res, (void)cflags;
}

/* The user_data of every cancel that weft__io_cancel_op queues: its result
 * is counted and otherwise dropped. Shared, and never written. */
static weft__op cancel_op = {.complete = ignore_cqe, .counted = IORING_OP_ASYNC_CANCEL + 1};

bool weft__io_cancel_op(weft__ring *r, const weft__op *target)
{
    struct io_uring_sqe *sqe = weft__ring_sqe(r, &cancel_op);
    if (!sqe)
        return false;
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)target, 0);
    io_uring_sqe_set_data(sqe, &cancel_op);
    r->ops[IORING_OP_ASYNC_CANCEL]++;
    return true;
}

int weft__io_wait(weft__io *io)
{
    int intr = weft__io_wait_all(io, 1);
    if (intr && (io->res == -ECANCELED || io->res == -EINTR))
        return intr;
    return io->res;
}

/* See weft__io_wait_all: how soon cancels that missed go again, doubling
 * from RECANCEL_NS up to RECANCEL_MAX_NS (an op that never ends, such as a
 * zero-copy send whose peer never reads, must not wake its task a thousand
 * times a second for ever). */
#define RECANCEL_NS     1000000ull
#define RECANCEL_MAX_NS 100000000ull

/* weft__io_wait_all, from an interruption intr already come (0: none),
 * whose cancels the caller may have sent already (cancels_sent). */
static int wait_all_from(weft__io *ios, unsigned n, int intr, bool cancels_sent)
{
    weft_task *t = ios[0].task;
    /* Every op still in the kernel pins the task to this ring until its
     * last CQE (io_complete takes the count back). */
    for (unsigned i = 0; i < n; i++)
        if (!ios[i].done && !ios[i].pinning) {
            ios[i].pinning = true;
            t->ring_ops++;
        }
    uint64_t recancel_ns = RECANCEL_NS;
    for (;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < n; i++)
            left += !ios[i].done;
        if (!left)
            break;
        if (!intr) {
            if (ios[0].uninterruptible)
                weft__task_park(); /* a close: wait for it, whatever comes */
            else
                intr = weft__task_park_interruptible();
            continue;
        }
        if (cancels_sent) {
            /* An op of a chain that had not started when its cancel came
             * (-ENOENT) starts once the op before it ends, and one that was
             * running then (-EALREADY) may run on: a cancel that missed is
             * sent again after each completion and after a pause (see
             * RECANCEL_NS), until every op is back. */
            weft__worker *w = weft__worker_self();
            weft__timer again = {.when = weft_now_ns() + recancel_ns, .task = t};
            if (recancel_ns < RECANCEL_MAX_NS)
                recancel_ns *= 2;
            weft__timer_add(&w->timers, &again);
            weft__task_park();
            if (!again.fired)
                weft__timer_remove(&w->timers, &again);
            cancels_sent = false;
            continue;
        }
        /* Interrupted with ops still in the kernel: cancel them there and
         * wait for their completions, which will come (with -ECANCELED, or
         * the real result for an op that won the race). A task with ops in
         * flight never migrates, so this is still the ring they went to. */
        weft__ring *r = &weft__worker_self()->ring;
        cancels_sent = true;
        for (unsigned i = 0; i < n; i++) {
            if (ios[i].done)
                continue;
            ios[i].interrupted = true;
            if (!weft__io_cancel_op(r, &ios[i].op))
                cancels_sent = false;
        }
        if (!cancels_sent)
            weft_yield(); /* fault injection took an SQE: the rest again */
    }
    /* Ops whose result belongs to this ring pinned the task until now; the
     * caller takes that result before its next scheduling point. */
    for (unsigned i = 0; i < n; i++)
        if (ios[i].pinning) {
            ios[i].pinning = false;
            t->ring_ops--;
        }
    return intr;
}

int weft__io_wait_all(weft__io *ios, unsigned n)
{
    return wait_all_from(ios, n, 0, false);
}

void weft__io_abandon(weft__io *ios, unsigned n, bool cancels_sent)
{
    (void)wait_all_from(ios, n, -ECANCELED, cancels_sent);
}
