/* io_uring set-up, submission and completion dispatch; see ring.h. */
#include "ring/ring.h"

#include <errno.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/fault.h"
#include "io/uapi.h"

/* Every ring weft has set up in this process (weft__ring_is_weft). */
static pthread_mutex_t listed_lock = PTHREAD_MUTEX_INITIALIZER;
static weft__ring *listed_first;

/* fork: the lock is held across it, so that a child never inherits it
 * taken by a thread it does not have. The list stays as it was: the child
 * shares the parent's rings through the descriptors it inherited, and a
 * CQE it posts on one (weft_msg_ring) would be taken by the parent's
 * worker for an op of its own. */
static void listed_before_fork(void)
{
    pthread_mutex_lock(&listed_lock);
}

static void listed_after_fork(void)
{
    pthread_mutex_unlock(&listed_lock);
}

static void listed_register_fork_handlers(void)
{
    pthread_atfork(listed_before_fork, listed_after_fork, listed_after_fork);
}

static void list_ring(weft__ring *r)
{
    static pthread_once_t fork_handlers = PTHREAD_ONCE_INIT;
    pthread_once(&fork_handlers, listed_register_fork_handlers);
    pthread_mutex_lock(&listed_lock);
    r->listed_prev = NULL;
    r->listed_next = listed_first;
    if (listed_first)
        listed_first->listed_prev = r;
    listed_first = r;
    r->listed = true;
    pthread_mutex_unlock(&listed_lock);
}

static void unlist_ring(weft__ring *r)
{
    if (!r->listed)
        return;
    pthread_mutex_lock(&listed_lock);
    if (r->listed_prev)
        r->listed_prev->listed_next = r->listed_next;
    else
        listed_first = r->listed_next;
    if (r->listed_next)
        r->listed_next->listed_prev = r->listed_prev;
    r->listed = false;
    pthread_mutex_unlock(&listed_lock);
}

bool weft__ring_is_weft(int fd)
{
    if (fd < 0)
        return false;
    pid_t pid = getpid();
    bool found = false;
    pthread_mutex_lock(&listed_lock);
    for (weft__ring *r = listed_first; r && !found; r = r->listed_next)
        found = r->uring.ring_fd == fd ||
                syscall(SYS_kcmp, pid, pid, KCMP_FILE, fd, r->uring.ring_fd) == 0;
    pthread_mutex_unlock(&listed_lock);
    return found;
}

static void probe_opcodes(weft__ring *r)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(&r->uring);
    if (!p)
        return; /* pre-5.6 kernel: everything reports -EOPNOTSUPP */
    for (unsigned op = 0; op <= p->last_op && op < WEFT__MAX_OPCODES; op++)
        if (p->ops[op].flags & IO_URING_OP_SUPPORTED)
            r->supported[op / 64] |= 1ull << (op % 64);
    io_uring_free_probe(p);
}

int weft__ring_init(weft__ring *r, unsigned entries, weft__ring_kind kind)
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
    r->park_in_poll = kind == WEFT__RING_POLL_PARKED;
    bool embedded = kind == WEFT__RING_EMBEDDED;
    int err = -EINVAL;
    for (size_t i = kind == WEFT__RING_PARKED ? 0 : 2; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        /* Room for bursts of multishot completions; CLAMP keeps the large
         * rings config allows within the kernel's 65536 CQEs. */
        p.flags = tries[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
        p.cq_entries = entries * 4;
        err = io_uring_queue_init_params(entries, &r->uring, &p);
        if (err == 0) {
            r->setup_flags = tries[i];
            probe_opcodes(r);
            if (!embedded) {
                list_ring(r);
                return 0;
            }
            r->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (r->event_fd < 0) {
                err = -errno;
            } else if ((err = io_uring_register_eventfd(&r->uring, r->event_fd)) == 0) {
                list_ring(r);
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
    unlist_ring(r);
    io_uring_queue_exit(&r->uring);
    /* Anything that still reaches for the ring gets EBADF, not whatever
     * file reuses the number. */
    r->uring.ring_fd = -1;
    free(r->buffer_used);
    r->buffer_used = NULL;
    if (r->event_fd >= 0)
        close(r->event_fd);
    r->event_fd = -1;
}

void weft__ring_register_tables(weft__ring *r, unsigned direct_fds, unsigned buffers)
{
    if (direct_fds && io_uring_register_files_sparse(&r->uring, direct_fds) == 0) {
        r->direct_slots = direct_fds;
        /* The kernel picks free slots for IORING_FILE_INDEX_ALLOC from the
         * whole table (the default range is the whole table too, but say so
         * explicitly: the range survives a table update). */
        (void)io_uring_register_file_alloc_range(&r->uring, 0, direct_fds);
    }
    if (buffers && (r->buffer_used = calloc(buffers, 1)) != NULL) {
        if (io_uring_register_buffers_sparse(&r->uring, buffers) == 0) {
            r->buffer_slots = buffers;
        } else {
            free(r->buffer_used);
            r->buffer_used = NULL;
        }
    }
}

/* After a submitting enter: what left the SQ is in flight. */
static void account_submitted(weft__ring *r)
{
    unsigned still = io_uring_sq_ready(&r->uring);
    if (still < r->pending_sqes) {
        r->inflight += r->pending_sqes - still;
        r->pending_sqes = still;
    }
}

int weft__ring_submit(weft__ring *r)
{
    if (!r->pending_sqes)
        return 0;
    int n = io_uring_submit(&r->uring);
    account_submitted(r);
    return n < 0 && n != -EAGAIN && n != -EBUSY && n != -EINTR ? n : 0;
}

int weft__ring_submit_rearmed(weft__ring *r)
{
    if (r->setup_flags & IORING_SETUP_DEFER_TASKRUN)
        (void)io_uring_get_events(&r->uring);
    return weft__ring_submit(r);
}

#define SQE_SUBMIT_TRIES 4

struct io_uring_sqe *weft__ring_sqe(weft__ring *r, weft__op *op)
{
    if (weft__fault_hit(WEFT_FAULT_SQE))
        return NULL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    /* A full SQ: submit to make room. A submit that keeps failing (-EBUSY
     * while the CQ's overflow cannot be flushed, which takes reaping
     * CQEs, not done from here) makes this NULL after a few tries, as a
     * caller gets when no SQE can be had: it fails with -EAGAIN. */
    for (int failed = 0; !sqe; sqe = io_uring_get_sqe(&r->uring)) {
        r->sq_full++;
        int n = weft__fault_hit(WEFT_FAULT_SUBMIT) ? -EBUSY : io_uring_submit(&r->uring);
        account_submitted(r);
        if (n < 0 && n != -EINTR && ++failed == SQE_SUBMIT_TRIES)
            return NULL;
    }
    io_uring_sqe_set_data(sqe, op);
    r->pending_sqes++;
    return sqe;
}

/* Negative results that are an opcode's normal outcome, not a failure: a
 * timeout that expired, a cancel or remove whose target had already ended,
 * a read that found its buffer ring empty (a stream re-arms it once the
 * owner gives buffers back: flow control, not an error). */
static bool normal_negative(unsigned opcode, int res)
{
    switch (opcode) {
    case IORING_OP_RECV:
    case IORING_OP_RECVMSG:
    case IORING_OP_READ:
    case WEFT__OP_READ_MULTISHOT: /* a read stream's */
        return res == -ENOBUFS;
    case IORING_OP_TIMEOUT:
    case IORING_OP_LINK_TIMEOUT:
        return res == -ETIME;
    case IORING_OP_ASYNC_CANCEL:
    case IORING_OP_POLL_REMOVE:
    case IORING_OP_TIMEOUT_REMOVE:
        return res == -ENOENT || res == -EALREADY;
    default:
        return false;
    }
}

/* A completion with a negative result, by its op's opcode. */
__attribute__((noinline, cold)) static void count_failure(weft__ring *r, unsigned opcode, int res)
{
    /* An op that weft cancelled on an io-wq thread is interrupted there,
     * and ends with -EINTR or a kernel restart code (512-516): those are
     * cancellations too, not failures. */
    if (res == -ECANCELED || res == -EINTR || (res <= -512 && res >= -516))
        r->ops_cancelled[opcode]++;
    else if (!normal_negative(opcode, res))
        r->ops_failed[opcode]++;
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
        if (((uintptr_t)op & 0xffffffffu) == WEFT__RING_WAKE_TAG) {
            /* Another worker's MSG_RING, which only ended the wait; or our
             * own to worker (high half - 1), which failed. */
            if (res < 0 && ((uintptr_t)op >> 32) && r->wake_failed)
                r->wake_failed(r, (unsigned)(((uintptr_t)op >> 32) - 1));
            continue;
        }
        if (!(flags & IORING_CQE_F_MORE))
            r->inflight--;
        if (op) {
            unsigned k = op->counted;
            if (k) {
                r->ops_done[k - 1] += !(flags & IORING_CQE_F_MORE);
                if (__builtin_expect(res < 0, 0))
                    count_failure(r, k - 1, res);
            }
            op->complete(op, res, flags);
        }
    }
    r->cqes += n;
    return (int)n;
}

/* The wait of a POLL_PARKED ring: hand the SQEs over without waiting, then
 * sleep in ppoll until the ring's fd is readable (a CQE is posted, or
 * something is pending that an enter would post) or the timeout ends. A
 * MSG_RING from another worker posts a CQE, so it ends the sleep as it ends
 * an io_uring_enter; an eventfd write completes the read armed on it. */
static int poll_parked_wait(weft__ring *r, uint64_t timeout_ns)
{
    int ret = io_uring_submit_and_get_events(&r->uring);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return ret;
    /* Completions to reap, or SQEs the kernel did not take (-EAGAIN,
     * -EBUSY): the caller comes back at once rather than sleep on them. */
    if (io_uring_cq_ready(&r->uring) || io_uring_sq_ready(&r->uring))
        return 0;
    struct pollfd pfd = {.fd = r->uring.ring_fd, .events = POLLIN};
    struct timespec ts, *tsp = NULL;
    if (timeout_ns != UINT64_MAX) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000u);
        ts.tv_nsec = (long)(timeout_ns % 1000000000u);
        tsp = &ts;
    }
    if (ppoll(&pfd, 1, tsp, NULL) < 0 && errno != EINTR)
        return -errno;
    /* Posts an overflowed CQ's completions, which make the fd readable
     * but are not in the ring yet. */
    ret = io_uring_submit_and_get_events(&r->uring);
    if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
        return ret;
    return 0;
}

int weft__ring_wait(weft__ring *r, uint64_t timeout_ns)
{
    if (weft__fault_hit(WEFT_FAULT_RING))
        return -EIO;
    int ret;
    if (timeout_ns != 0 && r->park_in_poll) {
        ret = poll_parked_wait(r, timeout_ns);
        if (ret < 0)
            return ret;
    } else if (timeout_ns == 0) {
        /* With DEFER_TASKRUN completions are posted only inside
         * io_uring_enter(GETEVENTS): submit and get events without
         * blocking, in one system call. */
        ret = io_uring_submit_and_get_events(&r->uring);
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
    account_submitted(r);
    if (*r->uring.sq.kflags & IORING_SQ_CQ_OVERFLOW)
        r->cq_overflow++;
    return dispatch(r);
}
