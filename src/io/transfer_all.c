/* weft_write_all, weft_send_all, weft_read_all, weft_recv_all and
 * weft_writev_all: one wrapper's op, repeated over short transfers until
 * everything went out (or came in) or something stopped it.
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

typedef enum transfer_kind { WRITE, SEND, READ, RECV } transfer_kind;

/* The task checks every call makes on entry, so that a zero-length call is
 * refused where a non-empty one would be for the task's sake: -EPERM
 * outside a task, then the interruption. (What only the op would find, a
 * bad fd say, a zero-length call does not look for.) */
static int enter(void)
{
    weft_task *t = weft__task_current();
    if (!t)
        return -EPERM;
    return weft__task_interrupted(t);
}

/* One op of kind k for the bytes from p on. off is where the transfer
 * started (each op goes on where the last stopped; WEFT_OFF_CURRENT: at the
 * file position, which the kernel moves on). No file at hand returns 0 for
 * a write, so fault injection stands in for one: the op is not issued and
 * seems to have moved nothing. */
static ssize_t one_op(transfer_kind k, int fd, char *p, size_t n, uint64_t off, size_t moved,
                      int flags)
{
    if (weft__fault_hit(WEFT_FAULT_ZERO_MOVED))
        return 0;
    uint64_t at = off == WEFT_OFF_CURRENT ? off : off + moved;
    switch (k) {
    case WRITE:
        return weft_write(fd, p, n, at);
    case SEND:
        return weft_send(fd, p, n, flags);
    case READ:
        return weft_read(fd, p, n, at);
    case RECV:
        return weft_recv(fd, p, n, flags);
    }
    return -EINVAL;
}

/* Repeats ops until n bytes have moved. An op that moves nothing ends it:
 * for a read, that is the end of the file or stream (-ENODATA); for a
 * write it would loop for ever, and is the file's failure (-EIO). */
static int transfer(transfer_kind k, int fd, char *p, size_t n, uint64_t off, int flags,
                    size_t *done)
{
    size_t moved = 0;
    int r = enter();
    while (r == 0 && moved < n) {
        ssize_t got = one_op(k, fd, p + moved, n - moved, off, moved, flags);
        if (got > 0)
            moved += (size_t)got;
        else if (got < 0)
            r = (int)got;
        else
            r = k == READ || k == RECV ? -ENODATA : -EIO;
    }
    if (done)
        *done = moved;
    return r;
}

int weft_write_all(int fd, const void *buf, size_t n, uint64_t off, size_t *done)
{
    /* The ops only read through p for a write. */
    return transfer(WRITE, fd, (char *)buf, n, off, 0, done);
}

int weft_send_all(int fd, const void *buf, size_t n, int flags, size_t *done)
{
    return transfer(SEND, fd, (char *)buf, n, 0, flags, done);
}

int weft_read_all(int fd, void *buf, size_t n, uint64_t off, size_t *done)
{
    return transfer(READ, fd, buf, n, off, 0, done);
}

int weft_recv_all(int fd, void *buf, size_t n, int flags, size_t *done)
{
    return transfer(RECV, fd, buf, n, 0, flags, done);
}

/* Moves iov past got bytes: entries fully written become empty, the first
 * one written in part starts further on. */
static void advance_iov(struct iovec *iov, int iovcnt, size_t got)
{
    for (int i = 0; i < iovcnt && got > 0; i++) {
        size_t take = got < iov[i].iov_len ? got : iov[i].iov_len;
        iov[i].iov_base = (char *)iov[i].iov_base + take;
        iov[i].iov_len -= take;
        got -= take;
    }
}

int weft_writev_all(int fd, struct iovec *iov, int iovcnt, uint64_t off, size_t *done)
{
    size_t moved = 0;
    int r = enter(); /* first, as for every call */
    if (r == 0 && (iovcnt < 0 || iovcnt > IOV_MAX || (!iov && iovcnt)))
        r = -EINVAL;
    int first = 0;
    while (r == 0) {
        while (first < iovcnt && iov[first].iov_len == 0)
            first++;
        if (first == iovcnt)
            break; /* all written */
        uint64_t at = off == WEFT_OFF_CURRENT ? off : off + moved;
        ssize_t got = weft__fault_hit(WEFT_FAULT_ZERO_MOVED)
                          ? 0
                          : weft_writev(fd, iov + first, iovcnt - first, at);
        if (got > 0) {
            moved += (size_t)got;
            advance_iov(iov + first, iovcnt - first, (size_t)got);
        } else {
            r = got < 0 ? (int)got : -EIO;
        }
    }
    if (done)
        *done = moved;
    return r;
}
