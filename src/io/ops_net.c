/* Typed wrappers: sockets; see weft/io.h. */
#include <errno.h>
#include <weft/io.h>

#include "common/memcheck.h"
#include "io/op_macros.h"
#include "ring/resource.h"
#include "runtime/worker.h"

int weft_socket(int domain, int type, int protocol, unsigned flags)
{
    if (flags & ~WEFT_DIRECT)
        return -EINVAL;
    if ((flags & WEFT_DIRECT) && weft__direct_table_check() < 0)
        return -ENXIO;
    IO_BEGIN(IORING_OP_SOCKET);
    if (flags & WEFT_DIRECT) {
        /* No close-on-exec for a descriptor in no fd table: the kernel
         * refuses the flag, weft drops it (as weft_accept does). */
        io_uring_prep_socket_direct_alloc(sqe, domain, type & ~SOCK_CLOEXEC, protocol, 0);
        IO_RESULT_BOUND();
        return weft__direct_adopt(IO_WAIT());
    }
    io_uring_prep_socket(sqe, domain, type, protocol, 0);
    return IO_WAIT();
}

int weft_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    IO_BEGIN(IORING_OP_CONNECT);
    io_uring_prep_connect(sqe, 0, addr, len);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_accept(int fd, struct sockaddr *addr, socklen_t *len, unsigned flags)
{
    /* An address without its length: the kernel would take the connection
     * and then fail to write the address (-EFAULT), and the connection
     * would be lost. */
    if ((flags & ~(WEFT_DIRECT | SOCK_CLOEXEC | SOCK_NONBLOCK)) || (addr && !len))
        return -EINVAL;
    if ((flags & WEFT_DIRECT) && weft__direct_table_check() < 0)
        return -ENXIO;
    socklen_t room = addr && len ? *len : 0;
    IO_BEGIN(IORING_OP_ACCEPT);
    if (flags & WEFT_DIRECT) {
        /* A direct descriptor has no exec semantics; the kernel rejects
         * SOCK_CLOEXEC for it, so it is dropped rather than failing. */
        io_uring_prep_accept_direct(sqe, 0, addr, len, (int)(flags & ~(WEFT_DIRECT | SOCK_CLOEXEC)),
                                    WEFT__FILE_INDEX_ALLOC);
        IO_FD(fd);
        IO_RESULT_BOUND();
    } else {
        io_uring_prep_accept(sqe, 0, addr, len, (int)flags);
        IO_FD(fd);
    }
    int r = IO_WAIT();
    if (flags & WEFT_DIRECT)
        r = weft__direct_adopt(r);
    if (r >= 0 && room)
        weft__written_addr(addr, room, *len);
    return r;
}

ssize_t weft_send(int fd, const void *buf, size_t n, int flags)
{
    IO_BEGIN(IORING_OP_SEND);
    io_uring_prep_send(sqe, 0, buf, weft__rw_len(n), flags);
    IO_FD(fd);
    return IO_WAIT();
}

ssize_t weft_recv(int fd, void *buf, size_t n, int flags)
{
    IO_BEGIN(IORING_OP_RECV);
    io_uring_prep_recv(sqe, 0, buf, weft__rw_len(n), flags);
    IO_FD(fd);
    int r = IO_WAIT();
    if (r > 0)
        weft__written(buf, (size_t)r < n ? (size_t)r : n); /* MSG_TRUNC: r may be more */
    return r;
}

ssize_t weft_sendmsg(int fd, const struct msghdr *msg, unsigned flags)
{
    IO_BEGIN(IORING_OP_SENDMSG);
    io_uring_prep_sendmsg(sqe, 0, msg, flags);
    IO_FD(fd);
    return IO_WAIT();
}

ssize_t weft_recvmsg(int fd, struct msghdr *msg, unsigned flags)
{
    /* The room there was for the address and the control data: the
     * kernel sets the lengths to what it wrote (the address's: its whole
     * size). */
    socklen_t name_room = msg ? msg->msg_namelen : 0;
    size_t control_room = msg ? msg->msg_controllen : 0;
    IO_BEGIN(IORING_OP_RECVMSG);
    io_uring_prep_recvmsg(sqe, 0, msg, flags);
    IO_FD(fd);
    int r = IO_WAIT();
    if (r >= 0) {
        size_t room = 0;
        for (size_t i = 0; i < msg->msg_iovlen; i++)
            room += msg->msg_iov[i].iov_len;
        weft__written_iov(msg->msg_iov, msg->msg_iovlen, (size_t)r < room ? (size_t)r : room);
        weft__written_addr(msg->msg_name, name_room, msg->msg_namelen);
        weft__written(&msg->msg_flags, sizeof msg->msg_flags); /* written back, always */
        weft__written(msg->msg_control,
                      msg->msg_controllen < control_room ? msg->msg_controllen : control_room);
    }
    return r;
}

/* sendto(2) and recvfrom(2): io_uring's SEND and RECV take no address
 * (liburing 2.3 has no prep for SEND's destination), so these go through
 * SENDMSG and RECVMSG with a msghdr on the task's stack, which lives until
 * the op is done, as every op's arguments do. */
ssize_t weft_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                    socklen_t addrlen)
{
    if (!addr != !addrlen)
        return -EINVAL;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = weft__rw_len(n)};
    struct msghdr msg = {
        .msg_name = (void *)addr, .msg_namelen = addrlen, .msg_iov = &iov, .msg_iovlen = 1};
    return weft_sendmsg(fd, &msg, (unsigned)flags);
}

ssize_t weft_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
                      socklen_t *addrlen)
{
    if (addr && !addrlen)
        return -EINVAL;
    struct iovec iov = {.iov_base = buf, .iov_len = n};
    struct msghdr msg = {
        .msg_name = addr, .msg_namelen = addr ? *addrlen : 0, .msg_iov = &iov, .msg_iovlen = 1};
    ssize_t r = weft_recvmsg(fd, &msg, (unsigned)flags);
    if (r >= 0 && addr)
        *addrlen = msg.msg_namelen;
    return r;
}

ssize_t weft_send_zc(int fd, const void *buf, size_t n, int flags)
{
    IO_BEGIN(IORING_OP_SEND_ZC);
    io_uring_prep_send_zc(sqe, 0, buf, weft__rw_len(n), flags, 0);
    IO_FD(fd);
    return IO_WAIT();
}

ssize_t weft_sendmsg_zc(int fd, const struct msghdr *msg, unsigned flags)
{
    IO_BEGIN(IORING_OP_SENDMSG_ZC);
    io_uring_prep_sendmsg_zc(sqe, 0, msg, flags);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_shutdown(int fd, int how)
{
    IO_BEGIN(IORING_OP_SHUTDOWN);
    io_uring_prep_shutdown(sqe, 0, how);
    IO_FD(fd);
    return IO_WAIT();
}
