/* Typed wrappers for the opcodes newer than liburing 2.3 (6.7 .. 6.16),
 * prepared from the kernel UAPI by io/uapi.h; see weft/io.h. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/epoll.h>
#include <string.h>
#include <weft/io.h>

#include "common/memcheck.h"
#include "io/op_macros.h"
#include "ring/resource.h"
#include "runtime/worker.h"

ssize_t weft_readv_fixed(int fd, const struct iovec *iov, int iovcnt, uint64_t off,
                         unsigned buf_index)
{
    IO_CHECK_BUF_INDEX(buf_index);
    IO_BEGIN(WEFT__OP_READV_FIXED);
    weft__prep_readv_fixed(sqe, 0, iov, (uint32_t)iovcnt, off, 0, (uint16_t)buf_index);
    IO_FD(fd);
    int r = IO_WAIT();
    if (r > 0)
        weft__written_iov(iov, (size_t)iovcnt, (size_t)r);
    return r;
}

ssize_t weft_writev_fixed(int fd, const struct iovec *iov, int iovcnt, uint64_t off,
                          unsigned buf_index)
{
    IO_CHECK_BUF_INDEX(buf_index);
    IO_BEGIN(WEFT__OP_WRITEV_FIXED);
    weft__prep_writev_fixed(sqe, 0, iov, (uint32_t)iovcnt, off, 0, (uint16_t)buf_index);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_ftruncate(int fd, uint64_t len)
{
    IO_BEGIN(WEFT__OP_FTRUNCATE);
    weft__prep_ftruncate(sqe, 0, len);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_pipe(int fds[2], int flags)
{
    if (!fds || (flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT)))
        return -EINVAL;
    /* The kernel writes the pair at completion: keep it on this stack and
     * copy it out only on success. */
    int pair[2] = {-1, -1};
    IO_BEGIN(WEFT__OP_PIPE);
    weft__prep_pipe(sqe, pair, (uint32_t)flags);
    int r = IO_WAIT();
    if (r == 0) {
        weft__written(pair, sizeof pair);
        fds[0] = pair[0];
        fds[1] = pair[1];
    }
    return r;
}

int weft_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    IO_BEGIN(WEFT__OP_BIND);
    weft__prep_bind(sqe, 0, addr, len);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_listen(int fd, int backlog)
{
    IO_BEGIN(WEFT__OP_LISTEN);
    weft__prep_listen(sqe, 0, backlog);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_getsockopt(int fd, int level, int name, void *val, socklen_t len)
{
    IO_BEGIN(IORING_OP_URING_CMD);
    weft__prep_getsockopt(sqe, 0, level, name, val, (int)len);
    IO_FD(fd);
    int r = IO_WAIT();
    if (r > 0) /* the option's length */
        weft__written(val, (socklen_t)r < len ? (size_t)r : len);
    return r;
}

int weft_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    IO_BEGIN(IORING_OP_URING_CMD);
    weft__prep_setsockopt(sqe, 0, level, name, val, (int)len);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_uring_cmd(int fd, uint32_t cmd_op, const void *arg, size_t len)
{
    if (len > WEFT__URING_CMD_BYTES || (!arg && len))
        return -EINVAL;
    IO_BEGIN(IORING_OP_URING_CMD);
    weft__prep_rw(sqe, IORING_OP_URING_CMD, 0, NULL, 0, 0);
    sqe->cmd_op = cmd_op;
    if (len)
        memcpy(sqe->cmd, arg, len);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_waitid(int idtype, int id, void *info, int options)
{
    IO_BEGIN(WEFT__OP_WAITID);
    weft__prep_waitid(sqe, idtype, id, info, options);
    int r = IO_WAIT();
    if (r >= 0)
        weft__written(info, sizeof(siginfo_t));
    return r;
}

static uint32_t futex_flags(unsigned flags)
{
    return flags ? flags : FUTEX2_SIZE_U32 | FUTEX2_PRIVATE;
}

int weft_futex_wait(uint32_t *addr, uint64_t val, uint64_t mask, unsigned flags)
{
    IO_BEGIN(WEFT__OP_FUTEX_WAIT);
    weft__prep_futex_wait(sqe, addr, val, mask ? mask : FUTEX_BITSET_MATCH_ANY, futex_flags(flags));
    return IO_WAIT();
}

int weft_futex_wake(uint32_t *addr, uint64_t n, uint64_t mask, unsigned flags)
{
    /* The kernel takes the count as an int: UINT64_MAX was -EINVAL, and
     * UINT32_MAX (-1 there) woke one. Any count past INT_MAX means all. */
    if (n > INT_MAX)
        n = INT_MAX;
    IO_BEGIN(WEFT__OP_FUTEX_WAKE);
    weft__prep_futex_wake(sqe, addr, n, mask ? mask : FUTEX_BITSET_MATCH_ANY, futex_flags(flags));
    return IO_WAIT();
}

int weft_futex_waitv(struct futex_waitv *v, unsigned n)
{
    IO_BEGIN(WEFT__OP_FUTEX_WAITV);
    weft__prep_futex_waitv(sqe, v, n);
    return IO_WAIT();
}

int weft_epoll_wait(int epfd, struct epoll_event *events, int maxevents)
{
    IO_BEGIN(WEFT__OP_EPOLL_WAIT);
    weft__prep_epoll_wait(sqe, 0, events, maxevents);
    IO_FD(epfd); /* a direct descriptor too */
    int r = IO_WAIT();
    if (r > 0)
        weft__written(events, (size_t)r * sizeof *events);
    return r;
}

int weft_direct_to_fd(int direct, unsigned flags)
{
    if (!weft_is_direct(direct) || (flags & ~WEFT_FD_INHERIT))
        return -EINVAL;
    IO_BEGIN(WEFT__OP_FIXED_FD_INSTALL);
    weft__prep_fixed_fd_install(sqe, weft__direct_slot_here(direct),
                                (flags & WEFT_FD_INHERIT) ? IORING_FIXED_FD_NO_CLOEXEC : 0);
    return IO_WAIT();
}
