/* weft_write_all, weft_send_all, weft_read_all and weft_recv_all: one
 * wrapper's op, repeated over short transfers until everything went out
 * (or came in) or something stopped it.
 *
 * The count of bytes moved is exact even when an op is interrupted: an
 * interrupted op that had moved data returns that count (docs/io.md), and
 * one that returns -ECANCELED or -ETIMEDOUT moved nothing, so the caller
 * learns precisely where to resume or what the peer may have seen.
 */
#include <errno.h>
#include <weft/io.h>

#include "common/fault.h"
#include "task/task.h"

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

/* Adds one op's result to *moved. Returns 0 to go on, or the error that
 * ends the loop. A transfer that moved nothing of a non-empty request
 * would loop for ever: it is the file's or the socket's failure (a device
 * that reports 0 bytes written), given as -EIO. */
static int step(ssize_t got, size_t *moved)
{
    if (got < 0)
        return (int)got;
    if (got == 0)
        return -EIO;
    *moved += (size_t)got;
    return 0;
}

/* No file at hand returns 0 for a write, so fault injection stands in for
 * one: the op is not issued and seems to have moved nothing. */
static bool moved_nothing(void)
{
    return weft__fault_hit(WEFT_FAULT_ZERO_MOVED);
}

int weft_write_all(int fd, const void *buf, size_t n, uint64_t off, size_t *done)
{
    const char *p = buf;
    size_t moved = 0;
    int r = enter();
    while (r == 0 && moved < n) {
        /* The kernel advances the file position itself for CURRENT. */
        uint64_t at = off == WEFT_OFF_CURRENT ? off : off + moved;
        r = step(moved_nothing() ? 0 : weft_write(fd, p + moved, n - moved, at), &moved);
    }
    if (done)
        *done = moved;
    return r;
}

int weft_send_all(int fd, const void *buf, size_t n, int flags, size_t *done)
{
    const char *p = buf;
    size_t moved = 0;
    int r = enter();
    while (r == 0 && moved < n)
        r = step(moved_nothing() ? 0 : weft_send(fd, p + moved, n - moved, flags), &moved);
    if (done)
        *done = moved;
    return r;
}

/* For the reads, 0 from the op is the end of the file or the stream, not
 * a failure of the file. */
static int read_step(ssize_t got, size_t *moved)
{
    if (got == 0)
        return -ENODATA;
    return step(got, moved);
}

int weft_read_all(int fd, void *buf, size_t n, uint64_t off, size_t *done)
{
    char *p = buf;
    size_t moved = 0;
    int r = enter();
    while (r == 0 && moved < n) {
        uint64_t at = off == WEFT_OFF_CURRENT ? off : off + moved;
        r = read_step(weft_read(fd, p + moved, n - moved, at), &moved);
    }
    if (done)
        *done = moved;
    return r;
}

int weft_recv_all(int fd, void *buf, size_t n, int flags, size_t *done)
{
    char *p = buf;
    size_t moved = 0;
    int r = enter();
    while (r == 0 && moved < n)
        r = read_step(weft_recv(fd, p + moved, n - moved, flags), &moved);
    if (done)
        *done = moved;
    return r;
}
