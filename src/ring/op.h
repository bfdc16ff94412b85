/* Awaiting one op (internal): the pattern every wrapper follows.
 *
 *     weft__io io;
 *     int err;
 *     struct io_uring_sqe *sqe = weft__io_begin(&io, IORING_OP_READ, &err);
 *     if (!sqe)
 *         return err;
 *     io_uring_prep_read(sqe, 0, buf, n, off);
 *     weft__sqe_fd(sqe, fd);
 *     return weft__io_wait(&io);
 *
 * The record lives on the waiting task's stack; the SQE's user_data points
 * at it. weft__io_wait returns only once the op's last CQE was reaped, so the
 * record and every buffer the op names stay valid for as long as the kernel
 * may touch them.
 */
#ifndef WEFT_RING_OP_H
#define WEFT_RING_OP_H

#include <liburing.h>
#include <stdbool.h>
#include <weft/io.h>

#include "ring/ring.h"

typedef struct weft__io {
    weft__op op;
    struct weft_task *task;
    int res;         /* from the first CQE (a zero-copy send's notification
                        does not overwrite it) */
    uint32_t cflags; /* likewise */
    bool done;       /* the last CQE (no IORING_CQE_F_MORE) arrived */
    bool pinning;    /* counted in its task's ring_ops until done */
    /* The result belongs to this ring (a direct descriptor's slot, a
     * selected buffer): the op pins its task until the wait returns, not
     * only until the CQE, so that the task takes the result on this ring's
     * worker and not after a hand-over to another. Set after
     * weft__io_begin (IO_RESULT_BOUND). */
    bool result_bound;
    /* Neither refused nor cancelled when its task is interrupted: a close,
     * which a cancelled task's cleanup needs done (weft_close). */
    bool uninterruptible;
    /* Still in flight when its task's interruption sent the cancels: a
     * cancelled result may be the interruption's doing (weft_batch). */
    bool interrupted;
} weft__io;

/* The worker ring of the calling task, after the checks every blocking call
 * makes: -EPERM outside a task, -EOPNOTSUPP for an opcode the kernel lacks,
 * -ECANCELED / -ETIMEDOUT when the task is already interrupted. */
weft__ring *weft__io_ring(unsigned opcode, int *err);

/* Those checks, then a fresh SQE whose user_data is io. NULL with *err set
 * on failure (-EAGAIN only under SQE fault injection). */
struct io_uring_sqe *weft__io_begin(weft__io *io, unsigned opcode, int *err);

/* Parks until io's last CQE. An interruption (cancel, deadline) while in
 * flight cancels the op in the kernel and keeps waiting; the interruption is
 * returned only when the op was cancelled (its res is -ECANCELED, or -EINTR
 * for some ops), otherwise the real result. */
int weft__io_wait(weft__io *io);

/* weft__io_wait for n ops prepared together: an interruption cancels all
 * that are still in flight. Returns the interruption (0 if none); each
 * ios[i].res holds its op's result. */
int weft__io_wait_all(weft__io *ios, unsigned n);

/* Cancels those of ios[0..n) still in the kernel and waits, whatever
 * comes, until every one has its last CQE (an op whose caller no longer
 * wants its result, but whose record the kernel may still write).
 * cancels_sent: the caller has queued their cancels (weft__io_cancel_op);
 * only a cancel that missed is sent again. */
void weft__io_abandon(weft__io *ios, unsigned n, bool cancels_sent);

/* The completion of a weft__io (its op.complete): records the result,
 * unpins and wakes the task. For an op that does more at its completion
 * and then this. */
void weft__io_complete(weft__op *op, int res, uint32_t cflags);

/* Prepares io for an SQE the caller fills itself (batches). */
void weft__io_init(weft__io *io);

/* A direct descriptor is WEFT_DIRECT_BIT | tag << 20 | slot: the tag
 * (1..1023) names the ring whose table holds the slot, so that one used on
 * another worker's ring, or another runtime's, is refused instead of
 * naming that ring's slot of the same number. A tag of 0 (an int made by
 * hand from a raw op's slot) names the calling worker's ring. */
#define WEFT__DIRECT_TAG_SHIFT 20
#define WEFT__DIRECT_SLOT_MASK ((1u << WEFT__DIRECT_TAG_SHIFT) - 1)
#define WEFT__DIRECT_TAG_MASK  0x3ffu

/* The descriptor for slot of ring r. */
static inline int weft__direct_encode(const weft__ring *r, unsigned slot)
{
    return (int)(WEFT_DIRECT_BIT | (r->direct_tag << WEFT__DIRECT_TAG_SHIFT) | slot);
}

/* The slot that direct descriptor fd names in ring r's table, or -1 when
 * it belongs to another ring (no slot has that number: the kernel answers
 * -EBADF). */
static inline int weft__direct_slot(const weft__ring *r, int fd)
{
    unsigned tag = ((unsigned)fd >> WEFT__DIRECT_TAG_SHIFT) & WEFT__DIRECT_TAG_MASK;
    if (tag && tag != r->direct_tag)
        return -1;
    return (int)((unsigned)fd & WEFT__DIRECT_SLOT_MASK);
}

/* weft__direct_slot on the calling worker's ring. */
int weft__direct_slot_here(int fd);

/* Points sqe at fd, which may be a direct descriptor (WEFT_DIRECT_BIT). */
static inline void weft__sqe_fd(struct io_uring_sqe *sqe, int fd)
{
    if (weft_is_direct(fd)) {
        sqe->fd = weft__direct_slot_here(fd);
        sqe->flags |= IOSQE_FIXED_FILE;
    } else {
        sqe->fd = fd;
    }
}

/* Queues an ASYNC_CANCEL for the op whose user_data is target, on ring r,
 * whose own completion is ignored. false when no SQE could be had (fault
 * injection): the caller retries. */
bool weft__io_cancel_op(weft__ring *r, const weft__op *target);

#endif
