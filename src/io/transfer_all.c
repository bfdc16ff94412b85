/* weft_write_all, weft_send_all, weft_read_all, weft_recv_all, their
 * vectored forms (weft_writev_all, weft_sendv_all, weft_readv_all) and
 * fixed-buffer forms (weft_write_fixed_all, weft_read_fixed_all): one
 * wrapper's op, repeated over short transfers until everything went out
 * (or came in) or something stopped it.
 *
 * The count of bytes moved is exact even when an op is interrupted: an
 * interrupted op that had moved data returns that count (docs/io.md), and
 * one that returns -ECANCELED or -ETIMEDOUT moved nothing, so the caller
 * learns precisely where to resume or what the peer may have seen.
 */
#include <errno.h>
#include <limits.h>
#include <weft/io.h>

#include "common/fault.h"
#include "task/task.h"

typedef enum transfer_kind {
    WRITE,
    WRITEV,
    WRITE_FIXED,
    SEND,
    SENDV,
    READ,
    READV,
    READ_FIXED,
    RECV
} transfer_kind;

/* One op of kind k for what iov[0..iovcnt) still describes (the plain
 * kinds take iov[0] alone). at is where it goes in the file; arg is a send
 * or recv's flags, or a fixed op's buffer index. No file at hand returns 0
 * for a write, so fault injection stands in for one: the op is not issued
 * and seems to have moved nothing. */
static ssize_t one_op(transfer_kind k, int fd, const struct iovec *iov, int iovcnt, uint64_t at,
                      int arg)
{
    int flags = arg;
    if (weft__fault_hit(WEFT_FAULT_ZERO_MOVED))
        return 0;
    switch (k) {
    case WRITE:
        return weft_write(fd, iov->iov_base, iov->iov_len, at);
    case WRITEV:
        return weft_writev(fd, iov, iovcnt, at);
    case WRITE_FIXED:
        return weft_write_fixed(fd, iov->iov_base, iov->iov_len, at, (unsigned)arg);
    case SEND:
        return weft_send(fd, iov->iov_base, iov->iov_len, flags);
    case SENDV: {
        /* The kernel reads msg_iov before the op completes; the entries
         * stay put until the op is done, since the call waits for it. */
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        return weft_sendmsg(fd, &msg, (unsigned)flags);
    }
    case READ:
        return weft_read(fd, iov->iov_base, iov->iov_len, at);
    case READV:
        return weft_readv(fd, iov, iovcnt, at);
    case READ_FIXED:
        return weft_read_fixed(fd, iov->iov_base, iov->iov_len, at, (unsigned)arg);
    case RECV:
        return weft_recv(fd, iov->iov_base, iov->iov_len, flags);
    }
    return -EINVAL;
}

/* Moves iov past got bytes: entries fully moved become empty, the first
 * one moved in part starts further on. */
static void advance_iov(struct iovec *iov, int iovcnt, size_t got)
{
    for (int i = 0; i < iovcnt && got > 0; i++) {
        size_t take = got < iov[i].iov_len ? got : iov[i].iov_len;
        iov[i].iov_base = (char *)iov[i].iov_base + take;
        iov[i].iov_len -= take;
        got -= take;
    }
}

/* Repeats ops until iov[0..iovcnt) is all moved, moving its entries on as
 * bytes go. Each op goes where the last stopped: at off plus what moved
 * (WEFT_OFF_CURRENT: at the file position, which the kernel moves on). An
 * op that moves nothing ends it: for a read, that is the end of the file
 * or stream (-ENODATA); for a write it would loop for ever, and is the
 * file's failure (-EIO). */
static int transfer(transfer_kind k, int fd, struct iovec *iov, int iovcnt, uint64_t off, int arg,
                    size_t *done)
{
    size_t moved = 0;
    int first = 0;
    /* The task checks every call makes on entry, so that a zero-length
     * call is refused where a non-empty one would be for the task's sake:
     * -EPERM outside a task, then the interruption. (What only the op
     * would find, a bad fd say, a zero-length call does not look for.) */
    int r = weft__task_enter(NULL);
    while (r == 0) {
        while (first < iovcnt && iov[first].iov_len == 0)
            first++;
        if (first == iovcnt)
            break; /* all moved */
        uint64_t at = off == WEFT_OFF_CURRENT ? off : off + moved;
        ssize_t got = one_op(k, fd, iov + first, iovcnt - first, at, arg);
        if (got > 0) {
            moved += (size_t)got;
            advance_iov(iov + first, iovcnt - first, (size_t)got);
        } else if (got < 0) {
            r = (int)got;
        } else {
            r = k == READ || k == READV || k == READ_FIXED || k == RECV ? -ENODATA : -EIO;
        }
    }
    if (done)
        *done = moved;
    return r;
}

int weft_write_all(int fd, const void *buf, size_t n, uint64_t off, size_t *done)
{
    /* The op only reads through the entry for a write. */
    struct iovec one = {(void *)buf, n};
    return transfer(WRITE, fd, &one, 1, off, 0, done);
}

/* A call whose own argument check failed: nothing moved, and the task's
 * checks come first, as for every call, then -EINVAL. */
static int refuse(size_t *done)
{
    if (done)
        *done = 0;
    int r = weft__task_enter(NULL);
    return r ? r : -EINVAL;
}

/* The vectored forms' own check of iov: 0, or refuse(). */
static int check_iov(const struct iovec *iov, int iovcnt, size_t *done)
{
    return iovcnt >= 0 && iovcnt <= IOV_MAX && (iov || !iovcnt) ? 0 : refuse(done);
}

int weft_writev_all(int fd, struct iovec *iov, int iovcnt, uint64_t off, size_t *done)
{
    int r = check_iov(iov, iovcnt, done);
    return r ? r : transfer(WRITEV, fd, iov, iovcnt, off, 0, done);
}

int weft_sendv_all(int fd, struct iovec *iov, int iovcnt, int flags, size_t *done)
{
    int r = check_iov(iov, iovcnt, done);
    return r ? r : transfer(SENDV, fd, iov, iovcnt, 0, flags, done);
}

int weft_readv_all(int fd, struct iovec *iov, int iovcnt, uint64_t off, size_t *done)
{
    int r = check_iov(iov, iovcnt, done);
    return r ? r : transfer(READV, fd, iov, iovcnt, off, 0, done);
}

int weft_send_all(int fd, const void *buf, size_t n, int flags, size_t *done)
{
    struct iovec one = {(void *)buf, n};
    return transfer(SEND, fd, &one, 1, 0, flags, done);
}

int weft_read_all(int fd, void *buf, size_t n, uint64_t off, size_t *done)
{
    struct iovec one = {buf, n};
    return transfer(READ, fd, &one, 1, off, 0, done);
}

int weft_recv_all(int fd, void *buf, size_t n, int flags, size_t *done)
{
    struct iovec one = {buf, n};
    return transfer(RECV, fd, &one, 1, 0, flags, done);
}

/* The index is checked first, as by weft_read_fixed: an index the SQE
 * cannot hold would name another slot. */
static int check_buf_index(unsigned buf_index, size_t *done)
{
    return buf_index <= UINT16_MAX ? 0 : refuse(done);
}

int weft_write_fixed_all(int fd, const void *buf, size_t n, uint64_t off, unsigned buf_index,
                         size_t *done)
{
    int r = check_buf_index(buf_index, done);
    struct iovec one = {(void *)buf, n};
    return r ? r : transfer(WRITE_FIXED, fd, &one, 1, off, (int)buf_index, done);
}

int weft_read_fixed_all(int fd, void *buf, size_t n, uint64_t off, unsigned buf_index, size_t *done)
{
    int r = check_buf_index(buf_index, done);
    struct iovec one = {buf, n};
    return r ? r : transfer(READ_FIXED, fd, &one, 1, off, (int)buf_index, done);
}
