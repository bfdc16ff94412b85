/* Typed wrappers: generic ops, batches, readiness, buffers, the ring
 * itself; see weft/io.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <weft/io.h>

#include "common/fault.h"
#include "io/op_macros.h"
#include "ring/resource.h"
#include "runtime/worker.h"
#include "task/task.h"

#define BATCH_MAX       256
#define BATCH_ON_STACK  16
#define LEGACY_GID_LAST 0x7fffu /* buffer rings take the groups above */

int weft_nop(void)
{
    IO_BEGIN(IORING_OP_NOP);
    io_uring_prep_nop(sqe);
    return IO_WAIT();
}

int weft_batch(const struct io_uring_sqe *sqes, int *res, unsigned n, unsigned flags)
{
    return weft_batch_ex(sqes, res, NULL, n, flags);
}

/* Whether the SQE asks for a multishot op: one that posts a CQE for each
 * result (an accepted fd, a received buffer) until it ends. A batch slot
 * holds one result, and each CQE would overwrite the one before, its fd or
 * buffer lost for good: the streams (weft_accept_stream, ...) are the way
 * to run these. (A zero-copy send's two CQEs are one result and a
 * notification: not multishot.) */
static bool is_multishot(const struct io_uring_sqe *s)
{
    switch (s->opcode) {
    case IORING_OP_ACCEPT:
        return s->ioprio & IORING_ACCEPT_MULTISHOT;
    case IORING_OP_RECV:
    case IORING_OP_RECVMSG:
        return s->ioprio & IORING_RECV_MULTISHOT;
    case IORING_OP_POLL_ADD:
        return s->len & IORING_POLL_ADD_MULTI;
    case IORING_OP_TIMEOUT:
        return s->timeout_flags & IORING_TIMEOUT_MULTISHOT;
    case WEFT__OP_READ_MULTISHOT:
    case WEFT__OP_RECV_ZC:
        return true;
    default:
        return false;
    }
}

static bool cancelled_result(int res)
{
    return res == -ECANCELED || res == -EINTR;
}

static size_t iov_total(const struct iovec *iov, size_t n)
{
    size_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += iov[i].iov_len;
    return sum;
}

/* The most one read, write, send or receive moves: the kernel cuts a
 * longer one to this (MAX_RW_COUNT) and compares its result with that. */
#define RW_COUNT_MAX 0x7ffff000u

/* A send or receive asked to move everything (MSG_WAITALL). */
static bool wants_all(const struct io_uring_sqe *s)
{
    switch (s->opcode) {
    case IORING_OP_SEND:
    case IORING_OP_RECV:
    case IORING_OP_SEND_ZC:
    case IORING_OP_SENDMSG:
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG_ZC:
        return s->msg_flags & MSG_WAITALL;
    default:
        return false;
    }
}

/* Whether a transfer that succeeded moved less than its SQE asked for,
 * which the kernel counts as a failure of the op (it breaks a soft link
 * after it): any read, write, splice or tee, and a send or receive asked
 * to move everything (MSG_WAITALL). A picked buffer's length is the
 * kernel's to know: such ops count as complete. */
static bool short_transfer(const struct io_uring_sqe *s, int res)
{
    if (res < 0 || (s->flags & IOSQE_BUFFER_SELECT))
        return false;
    size_t asked;
    bool capped = true; /* a splice or tee compares with its whole length */
    switch (s->opcode) {
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_READ_FIXED:
    case IORING_OP_WRITE_FIXED:
        asked = s->len;
        break;
    case IORING_OP_SPLICE:
    case IORING_OP_TEE:
        asked = s->len;
        capped = false;
        break;
    case IORING_OP_READV:
    case IORING_OP_WRITEV:
    case WEFT__OP_READV_FIXED:
    case WEFT__OP_WRITEV_FIXED:
        asked = iov_total((const struct iovec *)(uintptr_t)s->addr, s->len);
        break;
    case IORING_OP_SEND:
    case IORING_OP_RECV:
    case IORING_OP_SEND_ZC:
        if (!wants_all(s))
            return false;
        asked = s->len;
        break;
    case IORING_OP_SENDMSG:
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG_ZC: {
        if (!wants_all(s))
            return false;
        const struct msghdr *m = (const struct msghdr *)(uintptr_t)s->addr;
        asked = iov_total(m->msg_iov, m->msg_iovlen);
        break;
    }
    default:
        return false;
    }
    if (capped && asked > RW_COUNT_MAX)
        asked = RW_COUNT_MAX;
    return (size_t)res < asked;
}

/* Whether the kernel marks op s failed, which cancels the rest of its
 * chain unless s itself is hard-linked: a negative result (but a
 * TIMEOUT's -ETIME under IORING_TIMEOUT_ETIME_SUCCESS), or a short
 * transfer. */
static bool fails_in_kernel(const struct io_uring_sqe *s, int res)
{
    if (s->opcode == IORING_OP_TIMEOUT && res == -ETIME &&
        (s->timeout_flags & IORING_TIMEOUT_ETIME_SUCCESS))
        return false;
    return res < 0 || short_transfer(s, res);
}

/* After an interruption, whether it cut an op of the batch short: an op
 * still in flight when the interruption's cancels went out (`interrupted`) that
 * says -ECANCELED or -EINTR for no reason of the kernel's own, or that was
 * asked to move everything (MSG_WAITALL) and moved less. An op that
 * had completed by then was not cut short, whatever its result. Among
 * those in flight, the kernel gives that result by itself to a
 * LINK_TIMEOUT (whose op completed first), to an op whose LINK_TIMEOUT
 * fired (-ETIME after it, or -EALREADY when the op was running), and to
 * the rest of a chain after an op that failed (fails_in_kernel) without
 * a hard link of its own: the whole rest, to the chain's last SQE (the
 * first with no link flag), whatever links those carry. */
static bool cut_short(const struct io_uring_sqe *sqes, const weft__io *ios, unsigned n,
                      unsigned flags)
{
    bool broken = false; /* in a chain after an op that failed */
    for (unsigned i = 0; i < n; i++) {
        const struct io_uring_sqe *s = &sqes[i];
        bool link_timeout = s->opcode == IORING_OP_LINK_TIMEOUT;
        bool timed_out = i + 1 < n && sqes[i + 1].opcode == IORING_OP_LINK_TIMEOUT &&
                         (ios[i + 1].res == -ETIME || ios[i + 1].res == -EALREADY);
        /* A send or receive asked to move everything that the cancel
         * stopped half-way says how much it moved: cut short too. */
        bool cut = cancelled_result(ios[i].res) || (wants_all(s) && short_transfer(s, ios[i].res));
        if (ios[i].interrupted && !link_timeout && cut && !timed_out && !broken)
            return true;
        bool hard = s->flags & IOSQE_IO_HARDLINK;
        bool linked =
            hard || (s->flags & IOSQE_IO_LINK) || ((flags & WEFT_BATCH_CHAIN) && i + 1 < n);
        if (!linked)
            broken = false; /* the chain ends here; the next op starts a new one */
        else if (!link_timeout && !hard && fails_in_kernel(s, ios[i].res))
            broken = true;
    }
    return false;
}

int weft_batch_ex(const struct io_uring_sqe *sqes, int *res, uint32_t *cflags, unsigned n,
                  unsigned flags)
{
    if (!sqes || !res || n == 0 || n > BATCH_MAX || (flags & ~WEFT_BATCH_CHAIN))
        return -EINVAL;
    int err;
    weft__ring *r = weft__io_ring(IORING_OP_NOP, &err);
    if (!r)
        return err;
    /* All SQEs go onto the ring at once: more than it holds never fit. */
    if (n > r->uring.sq.ring_entries)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        /* A skipped success posts no completion to wait for, and a link
         * from the last SQE would chain it to whatever is queued next. A
         * drain would wait for every op on the ring, which other tasks'
         * streams and the worker's own wake-up read keep in flight for
         * ever, and every later SQE (cancels included) would wait behind
         * it: the worker's I/O would stop. */
        if ((sqes[i].flags & (IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_DRAIN)) ||
            (i == n - 1 && (sqes[i].flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK))) ||
            is_multishot(&sqes[i]))
            return -EINVAL;
        if (!weft__ring_supports(r, sqes[i].opcode))
            return -EOPNOTSUPP;
        /* As in weft_msg_ring. (A fixed file cannot be a ring: the kernel
         * keeps io_uring files out of the file table.) */
        if (sqes[i].opcode == IORING_OP_MSG_RING && !(sqes[i].flags & IOSQE_FIXED_FILE) &&
            weft__ring_is_weft(sqes[i].fd))
            return -EINVAL;
    }
    /* All SQEs or none: a chain half on the ring would run half. */
    if (weft__fault_hit(WEFT_FAULT_SQE))
        return -EAGAIN;
    if (io_uring_sq_space_left(&r->uring) < n)
        weft__ring_submit(r);
    if (io_uring_sq_space_left(&r->uring) < n)
        return -EAGAIN;
    weft__io stack_ios[BATCH_ON_STACK];
    weft__io *ios = n <= BATCH_ON_STACK ? stack_ios : weft__malloc(n * sizeof *ios);
    if (!ios)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        weft__io_init(&ios[i]);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
        memcpy(sqe, &sqes[i], sizeof *sqe);
        if (weft_is_direct(sqe->fd)) {
            sqe->fd = weft__direct_slot(r, sqe->fd);
            sqe->flags |= IOSQE_FIXED_FILE;
        }
        if ((flags & WEFT_BATCH_CHAIN) && i + 1 < n)
            sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data(sqe, &ios[i].op);
        r->pending_sqes++;
        r->ops[sqe->opcode]++;
        ios[i].op.counted = (uint8_t)(sqe->opcode + 1);
    }
    int intr = weft__io_wait_all(ios, n);
    int ok = 0;
    for (unsigned i = 0; i < n; i++) {
        res[i] = ios[i].res;
        if (cflags)
            cflags[i] = ios[i].cflags;
        ok += res[i] >= 0;
    }
    /* As for one op: when every op had completed before the interruption
     * could cut one short, the batch reports what they did (a write and
     * its fsync both done are durable), and the next call the interruption. */
    bool cut = intr && cut_short(sqes, ios, n, flags);
    if (ios != stack_ios)
        free(ios);
    return cut ? intr : ok;
}

int weft_uring_op(void (*prep)(struct io_uring_sqe *sqe, void *ctx), void *ctx)
{
    if (!prep)
        return -EINVAL;
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof sqe);
    prep(&sqe, ctx);
    /* A value no CQE carries: it tells a failure before submitting from
     * an interruption after the op went out. */
    int res = INT32_MIN;
    int r = weft_batch(&sqe, &res, 1, 0);
    if (r >= 0 || res == INT32_MIN)
        return r < 0 ? r : res;
    /* Interrupted with the op out: a result it reached before the cancel
     * (bytes read, an fd accepted) is returned, as by every typed call. */
    return cancelled_result(res) ? r : res;
}

int weft_cancel_fd(int fd)
{
    IO_BEGIN(IORING_OP_ASYNC_CANCEL);
    unsigned flags = IORING_ASYNC_CANCEL_ALL;
    if (weft_is_direct(fd)) {
        flags |= IORING_ASYNC_CANCEL_FD_FIXED;
        fd = weft__direct_slot_here(fd);
    }
    io_uring_prep_cancel_fd(sqe, fd, flags);
    int r = IO_WAIT();
    return r == -ENOENT ? 0 : r;
}

int weft_poll(int fd, unsigned events)
{
    IO_BEGIN(IORING_OP_POLL_ADD);
    io_uring_prep_poll_add(sqe, 0, events);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    /* The kernel's EPOLL_CTL takes both as plain descriptors (no fixed
     * files): a direct one would be read as whatever normal fd has the
     * same number. */
    if (weft_is_direct(epfd) || weft_is_direct(fd))
        return weft__task_current() ? -EBADF : -EPERM;
    IO_BEGIN(IORING_OP_EPOLL_CTL);
    io_uring_prep_epoll_ctl(sqe, epfd, fd, op, ev);
    return IO_WAIT();
}

int weft_msg_ring(int ring_fd, int res, uint64_t user_data)
{
    /* A CQE on a ring of weft's would be taken for an op of its own, its
     * user_data for a pointer. */
    if (weft__ring_is_weft(ring_fd))
        return -EINVAL;
    IO_BEGIN(IORING_OP_MSG_RING);
    io_uring_prep_msg_ring(sqe, ring_fd, (unsigned)res, user_data, 0);
    return IO_WAIT();
}

int weft_ring_fd(void)
{
    weft__worker *w = weft__worker_self();
    return w ? w->ring.uring.ring_fd : -EPERM;
}

int weft_buffers_provide(void *base, unsigned len, unsigned n, unsigned gid, unsigned bid)
{
    if (gid > LEGACY_GID_LAST || !base || !len || !n)
        return -EINVAL;
    IO_BEGIN(IORING_OP_PROVIDE_BUFFERS);
    io_uring_prep_provide_buffers(sqe, base, (int)len, (int)n, (int)gid, (int)bid);
    return IO_WAIT();
}

int weft_buffers_remove(unsigned n, unsigned gid)
{
    if (gid > LEGACY_GID_LAST || !n)
        return -EINVAL;
    IO_BEGIN(IORING_OP_REMOVE_BUFFERS);
    io_uring_prep_remove_buffers(sqe, (int)n, (int)gid);
    return IO_WAIT();
}

int weft_direct_table_size(void)
{
    weft__worker *w = weft__worker_self();
    return w ? (int)w->ring.direct_slots : -EPERM;
}

int weft_direct_from_fd(int fd)
{
    if (fd < 0 || weft_is_direct(fd))
        return -EBADF;
    if (weft__direct_table_check() < 0)
        return -ENXIO;
    /* With IORING_FILE_INDEX_ALLOC the kernel writes the slot it picked
     * back into the array, which lives on this stack until the CQE. */
    int fds[1] = {fd};
    IO_BEGIN(IORING_OP_FILES_UPDATE);
    io_uring_prep_files_update(sqe, fds, 1, IORING_FILE_INDEX_ALLOC);
    IO_RESULT_BOUND();
    int r = IO_WAIT();
    return r < 0 ? r : weft__direct_adopt(fds[0]);
}

/* ---- registered buffers --------------------------------------------------- */

/* Registered buffers belong to every worker's ring at the same slots, so a
 * task may use them wherever it runs: each change is made on every ring,
 * each ring's on its own thread (SINGLE_ISSUER), one change at a time. */
enum { BUFFER_USED = 1, BUFFER_ORPHAN = 2 };

typedef struct buffers_change {
    const struct iovec *iov; /* NULL: unregister */
    unsigned first, n;
} buffers_change;

static int buffers_apply(weft__worker *w, void *arg)
{
    buffers_change *c = arg;
    weft__ring *r = &w->ring;
    if (c->iov) {
        int ret = io_uring_register_buffers_update_tag(&r->uring, c->first, c->iov, NULL, c->n);
        if (ret < 0)
            return ret;
        if ((unsigned)ret < c->n) {
            /* The kernel stopped at a buffer it refused, and reports how
             * many it took (noted as used, so that an undo that fails
             * leaves them marked as orphans): fail, with that buffer's own
             * error (asked again, alone), and the caller takes the slots
             * back off every ring. */
            memset(r->buffer_used + c->first, BUFFER_USED, (unsigned)ret);
            int err = io_uring_register_buffers_update_tag(&r->uring, c->first + (unsigned)ret,
                                                           c->iov + ret, NULL, 1);
            return err < 0 ? err : -EFAULT;
        }
        memset(r->buffer_used + c->first, BUFFER_USED, c->n);
        return 0;
    }
    struct iovec empty[16];
    memset(empty, 0, sizeof empty);
    for (unsigned done = 0; done < c->n;) {
        unsigned k = c->n - done < 16 ? c->n - done : 16;
        int ret = io_uring_register_buffers_update_tag(&r->uring, c->first + done, empty, NULL, k);
        if (ret < 0)
            return ret;
        done += k;
    }
    memset(r->buffer_used + c->first, 0, c->n);
    return 0;
}

static void buffers_lock(weft__runtime *rt)
{
    while (atomic_exchange_explicit(&rt->buffers_busy, true, memory_order_acquire))
        weft_yield();
}

static void buffers_unlock(weft__runtime *rt)
{
    atomic_store_explicit(&rt->buffers_busy, false, memory_order_release);
}

/* Whether slot s holds a buffer on any worker's ring. The rings agree but
 * for a change that failed half-way (an errand that could not be
 * spawned): unregistering such a slot again must reach the rings that
 * still have it, and registering must not reuse it until then. Called
 * under buffers_lock, which orders every buffers_apply before it. */
static bool slot_used_anywhere(weft__runtime *rt, unsigned s)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        const weft__ring *r = &rt->workers[i].ring;
        if (s < r->buffer_slots && r->buffer_used[s])
            return true;
    }
    return false;
}

/* A registration failed on some ring, and so did taking it back off the
 * others: the user got an error and no slot number, so nobody else could
 * ever release what is left. Mark it for release_orphans. */
static void mark_orphans(weft__runtime *rt, unsigned first, unsigned n)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__ring *r = &rt->workers[i].ring;
        for (unsigned s = first; s < first + n && s < r->buffer_slots; s++)
            if (r->buffer_used[s])
                r->buffer_used[s] = BUFFER_ORPHAN;
    }
    rt->buffers_orphaned = true;
}

static bool slot_orphaned(weft__runtime *rt, unsigned s)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        const weft__ring *r = &rt->workers[i].ring;
        if (s < r->buffer_slots && r->buffer_used[s] == BUFFER_ORPHAN)
            return true;
    }
    return false;
}

/* Before each change, under buffers_lock: unregister every run of orphaned
 * slots on every ring. What fails again waits for the next change. */
static void release_orphans(weft__runtime *rt, const weft__ring *r)
{
    if (!rt->buffers_orphaned)
        return;
    bool left = false;
    for (unsigned s = 0; s < r->buffer_slots;) {
        if (!slot_orphaned(rt, s)) {
            s++;
            continue;
        }
        unsigned end = s + 1;
        while (end < r->buffer_slots && slot_orphaned(rt, end))
            end++;
        buffers_change c = {NULL, s, end - s};
        if (weft__on_every_worker(buffers_apply, &c) < 0)
            left = true;
        s = end;
    }
    rt->buffers_orphaned = left;
}

int weft_buffers_register(const struct iovec *iov, unsigned n)
{
    if (!iov || n == 0)
        return -EINVAL;
    weft__worker *w = weft__worker_self();
    if (!w || !w->current)
        return -EPERM;
    weft__runtime *rt = w->rt;
    if (!w->ring.buffer_slots)
        return -ENXIO;
    /* Checked once, here: the registration itself is not interruptible
     * (half done, it would have to be undone on every ring anyway). */
    int intr = weft__task_interrupted(w->current);
    if (intr)
        return intr;
    buffers_lock(rt);
    /* First fit: n consecutive free slots (the same on every ring). */
    weft__ring *r = &weft__worker_self()->ring;
    release_orphans(rt, r);
    unsigned run = 0, first = 0;
    for (unsigned s = 0; s < r->buffer_slots && run < n; s++) {
        if (slot_used_anywhere(rt, s)) {
            run = 0;
            first = s + 1;
        } else {
            run++;
        }
    }
    int ret = -ENOSPC;
    if (run == n) {
        buffers_change c = {iov, first, n};
        ret = weft__on_every_worker(buffers_apply, &c);
        if (ret < 0) {
            /* Some rings may have them: take them back off every ring. */
            c.iov = NULL;
            if (weft__on_every_worker(buffers_apply, &c) < 0)
                mark_orphans(rt, first, n);
        } else {
            ret = (int)first;
        }
    }
    buffers_unlock(rt);
    return ret;
}

int weft_buffers_unregister(unsigned first, unsigned n)
{
    weft__worker *w = weft__worker_self();
    if (!w || !w->current)
        return -EPERM;
    weft__runtime *rt = w->rt;
    buffers_lock(rt);
    weft__ring *r = &weft__worker_self()->ring;
    release_orphans(rt, r);
    int ret = 0;
    if (n == 0 || first >= r->buffer_slots || n > r->buffer_slots - first)
        ret = -EINVAL;
    for (unsigned s = first; ret == 0 && s < first + n; s++)
        if (!slot_used_anywhere(rt, s) || slot_orphaned(rt, s))
            ret = -EINVAL; /* an orphan is weft's to release, see above */
    if (ret == 0) {
        buffers_change c = {NULL, first, n};
        ret = weft__on_every_worker(buffers_apply, &c);
    }
    buffers_unlock(rt);
    return ret;
}
