/* io_uring set-up, submission and completion dispatch; see ring.h. */
#include "ring/ring.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/fault.h"

int weft__ring_init(weft__ring *r, unsigned entries, bool embedded)
{
    /* Newest first; each step drops what an older kernel rejects. */
    static const unsigned tries[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
            IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
        IORING_SETUP_SUBMIT_ALL,
        0,
    };
    memset(r, 0, sizeof *r);
    r->event_fd = -1;
    int err = -EINVAL;
    for (size_t i = embedded ? 2 : 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4; /* room for bursts of multishot completions */
        err = io_uring_queue_init_params(entries, &r->uring, &p);
        if (err == 0) {
            r->setup_flags = tries[i];
            if (!embedded)
                return 0;
            r->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (r->event_fd < 0) {
                err = -errno;
            } else if ((err = io_uring_register_eventfd(&r->uring, r->event_fd)) == 0) {
                return 0;
            } else {
                close(r->event_fd);
                r->event_fd = -1;
            }
            io_uring_queue_exit(&r->uring);
            return err;
        }
        if (err != -EINVAL)
            return err;
    }
    return err;
}

void weft__ring_fini(weft__ring *r)
{
    io_uring_queue_exit(&r->uring);
    if (r->event_fd >= 0)
        close(r->event_fd);
    r->event_fd = -1;
}

struct io_uring_sqe *weft__ring_sqe(weft__ring *r, weft__op *op)
{
    if (weft__fault_hit(WEFT_FAULT_SQE))
        return NULL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    while (!sqe) {
        r->sq_full++;
        int n = io_uring_submit(&r->uring);
        if (n > 0) {
            r->inflight += (unsigned)n;
            r->pending_sqes -= (unsigned)n < r->pending_sqes ? (unsigned)n : r->pending_sqes;
        }
        sqe = io_uring_get_sqe(&r->uring);
    }
    io_uring_sqe_set_data(sqe, op);
    r->pending_sqes++;
    return sqe;
}

static int dispatch(weft__ring *r)
{
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&r->uring, head, cqe)
    {
        weft__op *op = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        uint32_t flags = cqe->flags;
        /* Advance before the callback: it may submit and wait again. */
        io_uring_cq_advance(&r->uring, 1);
        n++;
        if (!(flags & IORING_CQE_F_MORE))
            r->inflight--;
        if (op)
            op->complete(op, res, flags);
    }
    r->cqes += n;
    return (int)n;
}

int weft__ring_wait(weft__ring *r, uint64_t timeout_ns)
{
    int ret;
    unsigned submitted_before = r->pending_sqes;
    if (timeout_ns == 0) {
        /* With DEFER_TASKRUN completions are posted only inside
         * io_uring_enter(GETEVENTS); io_uring_get_events does that without
         * blocking (and submits what is pending). */
        ret = io_uring_get_events(&r->uring);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            return ret;
    } else if (timeout_ns == UINT64_MAX) {
        ret = io_uring_submit_and_wait(&r->uring, 1);
        if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY)
            return ret;
    } else {
        struct __kernel_timespec ts = {
            .tv_sec = (long long)(timeout_ns / 1000000000u),
            .tv_nsec = (long long)(timeout_ns % 1000000000u),
        };
        struct io_uring_cqe *cqe;
        ret = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, &ts, NULL);
        if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EAGAIN && ret != -EBUSY)
            return ret;
    }
    /* Everything prepared before this call has been handed to the kernel. */
    r->inflight += submitted_before;
    r->pending_sqes = 0;
    if (*r->uring.sq.kflags & IORING_SQ_CQ_OVERFLOW)
        r->cq_overflow++;
    return dispatch(r);
}
