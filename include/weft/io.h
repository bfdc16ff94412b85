/* weft/io.h - time and io_uring operations.
 *
 * Every blocking call here suspends only the calling task: it prepares an SQE
 * on the worker's ring, parks, and resumes when the completion arrives. SQEs
 * are batched and reach the kernel at scheduling points and before the
 * worker parks.
 *
 * The rules every call follows (docs/io.md has the long form):
 *  - Results are the CQE's: >= 0 on success, -errno on failure.
 *  - Outside a task: -EPERM (after the checks of the arguments alone, such
 *    as -EINVAL for a NULL array). An opcode the running kernel lacks:
 *    -EOPNOTSUPP. No SQE to be had (a full submission queue that the
 *    kernel keeps refusing to take): -EAGAIN, with nothing submitted.
 *  - In a cancelled task: -ECANCELED; past the innermost deadline
 *    (weft_deadline_push): -ETIMEDOUT. Both are checked before submitting.
 *    weft_close is the exception: it always closes, and waits for that (with
 *    no SQE to be had it closes without the ring, and then answers 0 for a
 *    direct descriptor whose slot was empty already, where the op says
 *    -EBADF).
 *  - Lengths above 0x7ffff000 (the kernel's most for one read or write)
 *    are cut to it: the call moves less, as read(2) does.
 *  - A call interrupted while in flight cancels the op in the kernel
 *    (ASYNC_CANCEL) and waits for its completion before returning, so
 *    buffers (stack ones too) are never written after the call returns. If
 *    the op completed first, its real result is returned (no data is lost)
 *    and the next blocking call reports the interruption.
 *  - Any fd argument may be a normal descriptor or a direct one (an int with
 *    WEFT_DIRECT_BIT set, as returned by calls given WEFT_DIRECT), except
 *    the directory of a path call (openat, statx, unlinkat, ...) and both
 *    fds of weft_epoll_ctl, where the kernel takes only normal ones: a
 *    direct one there gets -EBADF.
 *
 * Clocks are CLOCK_MONOTONIC nanoseconds. Sleeping tasks live in user-space
 * timer lanes and a heap per worker behind one kernel timeout, so a million
 * sleepers cost one timer record each and no kernel objects.
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <weft/common.h>
#include <weft/task.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct io_uring_sqe;
struct statx;
struct open_how;
struct epoll_event;
struct futex_waitv;

/* ---- time --------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. Callable from any thread. */
WEFT_API uint64_t weft_now_ns(void);
/* Suspends the calling task for at least ns nanoseconds (0 = yield, after
 * the same checks). Returns 0, -ECANCELED, -ETIMEDOUT (a pushed deadline
 * passed first), -EPERM. */
WEFT_API int weft_sleep_ns(uint64_t ns);
/* Suspends the calling task until weft_now_ns() >= abs_ns. Same returns. */
WEFT_API int weft_sleep_until(uint64_t abs_ns);

/* ---- direct descriptors ------------------------------------------------- */

/* Flag for weft_socket, weft_accept, weft_openat, weft_openat2 and the accept
 * stream: create a direct descriptor (a slot in the worker ring's file
 * table) instead of a normal fd. When the ring has no table (the kernel
 * refused it at start: it may not be larger than RLIMIT_NOFILE), these
 * calls and weft_direct_from_fd return -ENXIO before anything is done:
 * an accept leaves the connection queued. A full table gives -ENFILE from
 * the kernel, after the fact: an accept has then dropped the connection
 * (the client sees a reset), so a server bounds its connections below
 * weft_config.direct_fds. */
#define WEFT_DIRECT 0x40000000u
/* Set in the int that names a direct descriptor; every wrapper accepts it
 * in place of an fd. Direct descriptors belong to the ring of the worker
 * that made them and to the task that made them: they pin the task to its
 * worker, and a task that ends still holding one has it closed for it.
 * Bits 20-29 of the int name that ring, and the low 20 bits its slot: used
 * on another worker of its runtime it is -EBADF, never that ring's slot of
 * the same number; so it is in the next runtimes made (tags repeat only
 * after 1,023 rings). An int made by hand as
 * WEFT_DIRECT_BIT | slot (a slot a raw op returned) names the calling
 * worker's ring. */
#define WEFT_DIRECT_BIT 0x40000000
static inline int weft_is_direct(int fd)
{
    return fd >= 0 && (fd & WEFT_DIRECT_BIT) != 0;
}

/* The slots in the calling worker's file table: weft_config.direct_fds
 * (1024 by default), or 0 when the kernel refused the table (see
 * WEFT_DIRECT); -EPERM on a thread that runs no worker. Each worker's
 * ring registers its own table, all of the same size unless the kernel
 * refused one of them (out of memory, say): a server that places a task
 * on each worker asks in each, and bounds its direct connections below
 * the answer. */
WEFT_API int weft_direct_table_size(void);
/* Installs a normal fd into the ring's file table (FILES_UPDATE); returns a
 * direct descriptor. The normal fd stays open and independent. */
WEFT_API int weft_direct_from_fd(int fd);
/* Makes a normal fd from a direct one (FIXED_FD_INSTALL, O_CLOEXEC unless
 * flags has WEFT_FD_INHERIT). The direct descriptor stays valid. */
#define WEFT_FD_INHERIT 1u
WEFT_API int weft_direct_to_fd(int direct, unsigned flags);
/* Hands ownership of a direct descriptor to another task on the same worker
 * (for instance a connection handler just spawned with WEFT_TASK_STICKY).
 * From then on `to` stays on this worker until it gives the descriptor up.
 * Returns 0, -EBADF (not a direct descriptor this task holds), -ESRCH (`to`
 * has finished) or -EXDEV (`to` is on another worker, or a wake from another
 * worker is moving it there right now). */
WEFT_API int weft_direct_give(int direct, weft_task *to);

/* ---- generic ------------------------------------------------------------ */

/* A no-op round trip through the ring. */
WEFT_API int weft_nop(void);
/* Escape hatch: prep fills the SQE (liburing's io_uring_prep_* helpers are
 * fine); weft sets user_data, submits and awaits it like any other op. An fd
 * with WEFT_DIRECT_BIT in sqe->fd is turned into a fixed-file reference.
 * -EINVAL if prep sets IOSQE_CQE_SKIP_SUCCESS, IOSQE_IO_DRAIN or a link
 * flag, or makes a multishot op (see weft_batch). Results are returned raw: a direct descriptor
 * slot made by a *_direct prep, or a buffer picked with IOSQE_BUFFER_SELECT, is not adopted (not
 * closed at the task's end, not pinning it to this worker's ring); spawn a task that makes such
 * results WEFT_TASK_STICKY, or use the typed calls (weft_accept with WEFT_DIRECT, weft_recv_buf,
 * ...). The same holds for weft_batch. The CQE's flags (the picked buffer's id) come only from
 * weft_batch_ex. Under valgrind, what such an op read into memory is not marked written for
 * memcheck as the typed calls mark it (docs/stacks.md): VALGRIND_MAKE_MEM_DEFINED it. */
WEFT_API int weft_uring_op(void (*prep)(struct io_uring_sqe *sqe, void *ctx), void *ctx);

/* Batches: n SQEs prepared by the caller in an array (with liburing's
 * io_uring_prep_* helpers), copied onto the ring together and awaited
 * together; res[i] receives the result of sqes[i]. With WEFT_BATCH_CHAIN
 * they are linked (IOSQE_IO_LINK), run in order and a failure cancels the
 * rest (-ECANCELED); a LINK_TIMEOUT SQE placed after an op bounds it.
 * Returns the number of ops that succeeded (res >= 0), or -errno before
 * anything was submitted (-EOPNOTSUPP if one opcode is unknown, -EINVAL for
 * n == 0, n > 256 or n > the ring's size (weft_config.ring_entries), for an
 * SQE with IOSQE_CQE_SKIP_SUCCESS, whose success would post nothing to wait
 * for, or IOSQE_IO_DRAIN, which would stall every op of the worker behind
 * it, for a link flag on the last SQE, which would chain it to an
 * unrelated op, and for a multishot op (accept, recv, recvmsg, poll,
 * timeout, READ_MULTISHOT, RECV_ZC), whose every result but the last
 * would be lost: use the streams; -EAGAIN when the ring has no room right
 * now). Interruption
 * cancels every op still in flight (again, for one that starts later in a
 * chain) and waits for all of them; the call then returns -ECANCELED or
 * -ETIMEDOUT if that cut an op short (one still out then that ends with
 * -ECANCELED or -EINTR not of the kernel's own doing: a LINK_TIMEOUT's
 * after its op completed, an op's whose LINK_TIMEOUT fired, or a chained
 * op's after a failure or a short transfer; docs/io.md), or else the
 * count as above: when every op completed first, as one op's
 * real result is returned, the next call reports the interruption. Either
 * way res[] holds every op's own result, the real one for each op that
 * completed before its cancel (no data is lost there). */
#define WEFT_BATCH_CHAIN 1u
WEFT_API int weft_batch(const struct io_uring_sqe *sqes, int *res, unsigned n, unsigned flags);
/* weft_batch that also gives each op's CQE flags in cflags[i] (NULL: not
 * wanted): with IOSQE_BUFFER_SELECT, IORING_CQE_F_BUFFER and the id of the
 * buffer the kernel picked (cflags >> IORING_CQE_BUFFER_SHIFT), which the
 * caller then owns; IORING_CQE_F_SOCK_NONEMPTY; and so on. For one SQE
 * whose flags matter, use this with n = 1 in place of weft_uring_op. */
WEFT_API int weft_batch_ex(const struct io_uring_sqe *sqes, int *res, uint32_t *cflags, unsigned n,
                           unsigned flags);

/* Cancels every op in flight on fd in this worker's ring (ASYNC_CANCEL with
 * CANCEL_FD | CANCEL_ALL); returns how many were cancelled. */
WEFT_API int weft_cancel_fd(int fd);

/* ---- files -------------------------------------------------------------- */

WEFT_API int weft_openat(int dfd, const char *path, int flags, mode_t mode);
WEFT_API int weft_openat2(int dfd, const char *path, struct open_how *how);
/* Closes a normal or a direct descriptor, also in a cancelled task or past
 * a deadline (cleanup must not leak it): never -ECANCELED or -ETIMEDOUT. */
WEFT_API int weft_close(int fd);
WEFT_API ssize_t weft_read(int fd, void *buf, size_t n, uint64_t off);
WEFT_API ssize_t weft_write(int fd, const void *buf, size_t n, uint64_t off);
WEFT_API ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
WEFT_API ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt, uint64_t off);
/* off = WEFT_OFF_CURRENT uses and advances the file position (pipes,
 * sockets and ttys need it or ignore off); it is the kernel's own -1.
 * Unlike read(2) and write(2), io_uring takes no lock on the position:
 * two such ops on one regular file that overlap (tasks on two workers,
 * or any two in flight at once) may both start at the same place, and
 * one write then lands on the other. Share a file position behind a
 * weft_mutex, or open with O_APPEND (writes go at the end, whole), or
 * give each op its offset (docs/io.md). Not for O_DIRECT files: io_uring
 * does not advance the position after a direct read or write that
 * completes asynchronously (Linux 6.18), so each op starts at the same
 * place (three writes of 4 KiB landed on one another). Give O_DIRECT ops
 * their offsets; the same goes for the *_all calls and weft_reader, which
 * read or write at WEFT_OFF_CURRENT when asked to. */
#define WEFT_OFF_CURRENT ((uint64_t)-1)
/* Writes past RLIMIT_FSIZE raise SIGXFSZ, as write(2) does, which ends
 * the process unless it is ignored or caught; then the write stops short
 * at the limit, or fails with -EFBIG at it. */
/* Writes all n bytes of buf at off (each next write where the last one
 * stopped; WEFT_OFF_CURRENT: at the file position), repeating the write
 * over short ones: a pipe or socket that takes part, a file that grows
 * past RLIMIT_FSIZE. Returns 0 once all n bytes are written (at once for
 * n == 0), or the error of the write that stopped it (-ECANCELED and
 * -ETIMEDOUT too); a write that moves nothing gives -EIO. *done, unless
 * NULL, gets the bytes written in either case, exactly: an interrupted
 * write moved nothing, or returned what it moved. -EPERM outside a task.
 * A pipe or socket whose reader is gone gives -EPIPE and raises SIGPIPE,
 * as write(2) does (weft_send_all does not: io_uring's sends never raise
 * it, MSG_NOSIGNAL or not). */
WEFT_API WEFT_MUST_CHECK int weft_write_all(int fd, const void *buf, size_t n, uint64_t off,
                                            size_t *done);
/* The reading counterpart: reads until all n bytes are in buf, repeating
 * the read over short ones (a socket or pipe that has part of it yet, a
 * read longer than one op moves). The end of the file or stream before
 * that gives -ENODATA, with *done saying how much came. Otherwise the same
 * returns and *done as weft_write_all. */
WEFT_API WEFT_MUST_CHECK int weft_read_all(int fd, void *buf, size_t n, uint64_t off, size_t *done);
/* weft_write_all for the bytes iov[0..iovcnt) describes (a record's header
 * and payload in one go; sockets and pipes take it too, at
 * WEFT_OFF_CURRENT). iov is the call's scratch: its entries are moved past
 * what was written, so after a failure they describe exactly what was
 * not. Same returns and *done as weft_write_all; -EINVAL (after the task
 * checks) for iovcnt < 0 or > IOV_MAX, or a NULL iov with iovcnt > 0. A
 * socket whose peer is gone raises SIGPIPE, as writev(2) does; on a
 * socket, weft_sendv_all does not. */
WEFT_API WEFT_MUST_CHECK int weft_writev_all(int fd, struct iovec *iov, int iovcnt, uint64_t off,
                                             size_t *done);
/* weft_read_all into the buffers iov[0..iovcnt) describes (a header and
 * a body read in one go), with iov as scratch as for weft_writev_all:
 * after a failure its entries describe exactly what is still to fill.
 * -ENODATA at the end of the file or stream before they are full; the
 * same returns, *done and -EINVAL as weft_writev_all. */
WEFT_API WEFT_MUST_CHECK int weft_readv_all(int fd, struct iovec *iov, int iovcnt, uint64_t off,
                                            size_t *done);
/* Registered buffers (weft_buffers_register): buf must lie inside buffer
 * buf_index. A buf outside it, or a buf_index that holds no buffer, is the
 * kernel's -EFAULT; a buf_index over 65535 (the SQE's field is 16 bits) is
 * -EINVAL, before anything else. */
WEFT_API ssize_t weft_read_fixed(int fd, void *buf, size_t n, uint64_t off, unsigned buf_index);
WEFT_API ssize_t weft_write_fixed(int fd, const void *buf, size_t n, uint64_t off,
                                  unsigned buf_index);
WEFT_API ssize_t weft_readv_fixed(int fd, const struct iovec *iov, int iovcnt, uint64_t off,
                                  unsigned buf_index);
WEFT_API ssize_t weft_writev_fixed(int fd, const struct iovec *iov, int iovcnt, uint64_t off,
                                   unsigned buf_index);
/* weft_write_all and weft_read_all with weft_write_fixed/weft_read_fixed:
 * the same returns and *done (-ENODATA at the end of the file for a read),
 * and -EINVAL (after the task checks) for a buf_index over 65535. */
WEFT_API WEFT_MUST_CHECK int weft_write_fixed_all(int fd, const void *buf, size_t n, uint64_t off,
                                                  unsigned buf_index, size_t *done);
WEFT_API WEFT_MUST_CHECK int weft_read_fixed_all(int fd, void *buf, size_t n, uint64_t off,
                                                 unsigned buf_index, size_t *done);
/* flags: 0 or WEFT_FSYNC_DATASYNC (the kernel's IORING_FSYNC_DATASYNC). A
 * deadline does not bound it: an fsync under way runs to its end, and its
 * real result is returned (docs/io.md, Cancellation and deadlines). */
#define WEFT_FSYNC_DATASYNC 1u
WEFT_API int weft_fsync(int fd, unsigned flags);
/* len 0: from off to the end of the file. The SQE holds 32 bits of length:
 * a larger range takes several calls, or len 0. */
WEFT_API int weft_sync_file_range(int fd, uint64_t off, uint32_t len, unsigned flags);
WEFT_API int weft_fallocate(int fd, int mode, uint64_t off, uint64_t len);
/* len 0: from off to the end of the file. A len over 32 bits goes in the
 * SQE's 64-bit field, which kernels before 6.7 refuse (-EINVAL) rather
 * than advise a fraction of the range; so does weft_madvise. */
WEFT_API int weft_fadvise(int fd, uint64_t off, uint64_t len, int advice);
WEFT_API int weft_madvise(void *addr, size_t len, int advice);
WEFT_API int weft_ftruncate(int fd, uint64_t len);
/* fstat of an open fd: weft_statx(fd, "", AT_EMPTY_PATH, mask, &st). A NULL
 * path is the kernel's -EFAULT here, as io_uring's STATX has it (statx(2)
 * takes NULL since Linux 6.11). */
WEFT_API int weft_statx(int dfd, const char *path, int flags, unsigned mask, struct statx *out);
WEFT_API int weft_renameat(int olddfd, const char *oldpath, int newdfd, const char *newpath,
                           unsigned flags);
WEFT_API int weft_unlinkat(int dfd, const char *path, int flags);
WEFT_API int weft_mkdirat(int dfd, const char *path, mode_t mode);
WEFT_API int weft_symlinkat(const char *target, int newdfd, const char *linkpath);
WEFT_API int weft_linkat(int olddfd, const char *oldpath, int newdfd, const char *newpath,
                         int flags);
WEFT_API int weft_setxattr(const char *path, const char *name, const void *value, size_t len,
                           int flags);
WEFT_API int weft_fsetxattr(int fd, const char *name, const void *value, size_t len, int flags);
/* Returns the value's length. */
WEFT_API ssize_t weft_getxattr(const char *path, const char *name, void *value, size_t len);
WEFT_API ssize_t weft_fgetxattr(int fd, const char *name, void *value, size_t len);
/* off_in/off_out: -1 (WEFT_OFF_CURRENT's bits) for a pipe or socket, or a
 * file's own position; one end must be a pipe. 0 at the end of the input,
 * and for n = 0. docs/io.md, "Files to sockets". */
WEFT_API ssize_t weft_splice(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t n,
                             unsigned flags);
WEFT_API ssize_t weft_tee(int fd_in, int fd_out, size_t n, unsigned flags);
/* fds[0] reads, fds[1] writes; flags as pipe2 (O_CLOEXEC, O_NONBLOCK). */
WEFT_API int weft_pipe(int fds[2], int flags);

/* ---- sockets ------------------------------------------------------------ */

struct addrinfo;

/* type takes SOCK_CLOEXEC and SOCK_NONBLOCK as socket(2) does; flags:
 * WEFT_DIRECT for a direct descriptor. SOCK_NONBLOCK changes nothing for
 * weft's calls, which wait for their task alone either way (io_uring polls
 * a socket that is not ready); it is for plain calls (recv(2), send(2)) on
 * the same socket that must not block the worker. */
WEFT_API int weft_socket(int domain, int type, int protocol, unsigned flags);
/* BIND and LISTEN need Linux 6.11 (-EOPNOTSUPP before): a program for
 * older kernels calls bind(2) and listen(2), which do not block. */
WEFT_API int weft_bind(int fd, const struct sockaddr *addr, socklen_t len);
WEFT_API int weft_listen(int fd, int backlog);
/* A time limit on the connect is a deadline around it (weft_deadline_push_in
 * then weft_deadline_pop): -ETIMEDOUT when it passes, the socket then
 * unconnected (close it; docs/io.md's relay example). */
WEFT_API int weft_connect(int fd, const struct sockaddr *addr, socklen_t len);

/* Connecting by name (docs/io.md, "Connecting by name"). Options of
 * weft_dial and weft_dial_addrs; NULL or all zero: the defaults. */
typedef struct weft_dial_opts {
    /* weft_dial's lookup: AF_UNSPEC (0: IPv4 and IPv6), AF_INET or
     * AF_INET6. weft_dial_addrs tries the list it is given. */
    int family;
    /* 0 or SOCK_STREAM (TCP), or SOCK_DGRAM (a connected UDP socket);
     * weft_dial_addrs skips the entries of another ai_socktype. */
    int type;
    /* Time each address may take before the next one is tried; 0: no
     * limit of its own (an address that never answers then holds the
     * dial until the caller's deadline, if any). */
    uint64_t attempt_timeout_ns;
    /* TCP_NODELAY on the connected socket (TCP only): for request and
     * response protocols that write small messages. */
    bool nodelay;
    /* 0: one address at a time. Else, where the list has two families,
     * they race (RFC 8305's "happy eyeballs"): the addresses of the first
     * entry's family are tried in a task of their own, those of the other
     * family in a second one started this long after (RFC 8305 suggests
     * 250 ms, Go uses 300 ms) or as soon as the first has failed, and the
     * first socket to connect wins. */
    uint64_t race_delay_ns;
    /* A local address to bind each socket to before its connect (the
     * source address: which interface or which of the host's addresses a
     * proxy dials from), and its length; NULL and 0: the kernel's choice.
     * AF_INET or AF_INET6; only entries of its family are tried (weft_dial
     * looks up that family alone). Its port 0 lets the kernel pick a port
     * at the connect, one free for that peer (IP_BIND_ADDRESS_NO_PORT, on
     * TCP), so that many dials from one address do not run out of ports;
     * a fixed port fails with -EADDRINUSE while another socket holds it. */
    const struct sockaddr *local_addr;
    socklen_t local_addrlen;
} weft_dial_opts;

/* Connects to host:service, as Go's net.Dial and Tokio's
 * TcpStream::connect do: looks the name up (weft_getaddrinfo, on the
 * blocking pool; host a name or an address as getaddrinfo takes it, "::1"
 * without brackets, or NULL for the loopback address; service a port
 * number or a name from /etc/services), then weft_dial_addrs on the
 * list. Returns
 * the connected socket (SOCK_CLOEXEC; close it with weft_close), or:
 * -EINVAL (service NULL, bad opts), -EPERM outside a task, the lookup's
 * errors (WEFT_EAI(code), -ENOMEM, ...; see weft_getaddrinfo), or
 * weft_dial_addrs's. The caller's deadlines and cancellation bound the
 * whole of it, lookup included. */
WEFT_API WEFT_MUST_CHECK int weft_dial(const char *host, const char *service,
                                       const weft_dial_opts *opts);
/* Tries each address of the list in its order (getaddrinfo's, RFC 6724:
 * usually IPv6 first where the host has IPv6), one at a time, each within
 * attempt_timeout_ns if set, until one connects; returns that socket. An
 * entry's ai_family, ai_protocol and ai_addr are used; one whose
 * ai_socktype is set and is not opts' type is skipped. When every address
 * failed, returns the last one's error (-ECONNREFUSED, -ENETUNREACH,
 * -ETIMEDOUT for an attempt past its own time, ...); every socket tried
 * is closed. -ENOENT when no entry is of the type; -ECANCELED or
 * -ETIMEDOUT once the caller is cancelled or past its own deadline: no
 * further address is tried. With attempt_timeout_ns, -EOVERFLOW (16
 * deadline levels in force already) or -ENOMEM when its deadline cannot
 * be pushed, before any address is tried. A local address's bind errors
 * (-EADDRINUSE, -EADDRNOTAVAIL) are an attempt's. Racing (race_delay_ns),
 * the error is that of the lane (family) that ended last. What the race
 * needs (a task set, two tasks, a timer for the delay) failing to be had
 * does not fail the dial: it goes on without (one address at a time, or
 * no delay; docs/io.md). A cancelled caller in a shield does not race
 * (the lanes, its children, would be cancelled): it dials one address at
 * a time. -EINVAL for a NULL list or bad opts (an unknown family or type,
 * a local address that is not IPv4 or IPv6, shorter than its family's,
 * NULL with a length, or of another family than `family`), -EPERM
 * outside a task. */
WEFT_API WEFT_MUST_CHECK int weft_dial_addrs(const struct addrinfo *addrs,
                                             const weft_dial_opts *opts);
/* Listening by name (docs/io.md, "Listening by name"). Options of
 * weft_listen_on; NULL or all zero: the defaults. */
typedef struct weft_listen_opts {
    /* The lookup: AF_UNSPEC (0), AF_INET or AF_INET6 (whose socket then
     * takes IPv6 alone, as Go's "tcp6": IPV6_V6ONLY). */
    int family;
    /* 0 or SOCK_STREAM (a listening TCP socket), or SOCK_DGRAM (a bound
     * UDP socket). */
    int type;
    /* listen(2)'s backlog: the connections the kernel completes and keeps
     * until accepted. 0: SOMAXCONN (4096; the kernel caps it at
     * net.core.somaxconn). */
    int backlog;
    /* SO_REUSEPORT: several sockets may listen on the same port, each
     * made with it, and the kernel spreads the connections between them
     * (a listener per worker, each accepting on its own ring). */
    bool reuseport;
    /* IPv6 sockets only take IPv6 (IPV6_V6ONLY). By default an IPv6
     * socket is dual-stack: bound to the wildcard it takes IPv4 too. */
    bool v6only;
    /* TCP_NODELAY on the listener, which every accepted socket inherits:
     * for request and response protocols that write small messages. */
    bool nodelay;
} weft_listen_opts;

/* A socket listening on host:service, as Go's net.Listen and Tokio's
 * TcpListener::bind make one: looks the address up (weft_getaddrinfo, on
 * the blocking pool; host a name or an address, or NULL or "" for every
 * address of the host; service a port, "0" for one the kernel picks
 * (getsockname(2) says which), or a name from /etc/services), then makes
 * a socket for the first entry that can be bound (SOCK_CLOEXEC,
 * SO_REUSEADDR for TCP) and listens on it. The wildcard is taken on IPv6
 * first, dual-stack, so that one socket gets both families, and on IPv4
 * only where the host has no IPv6 (its other errors, such as the port in
 * use, are returned); a name's addresses are tried IPv4 first, as Go's
 * net.Listen does (a "localhost" listener on ::1 alone would refuse
 * clients of 127.0.0.1). Returns the socket (accept on it with
 * weft_accept or weft_accept_stream; close it with weft_close), or
 * -EINVAL (service NULL, bad opts: an unknown family or type, a negative
 * backlog), the lookup's errors (WEFT_EAI(code), -ENOMEM), or the last
 * entry's error (-EADDRINUSE: another socket holds the port;
 * -EADDRNOTAVAIL: not an address of this host; -EACCES: a port below 1024
 * without the privilege). From a task the lookup runs on the blocking
 * pool, bounded by the caller's deadlines and cancellation; from a thread
 * with no runtime (a server that listens before weft_run) it runs in the
 * calling thread; -EPERM on a runtime's worker thread outside a task. */
WEFT_API WEFT_MUST_CHECK int weft_listen_on(const char *host, const char *service,
                                            const weft_listen_opts *opts);

/* flags: SOCK_CLOEXEC, SOCK_NONBLOCK, WEFT_DIRECT (which ignores
 * SOCK_CLOEXEC: direct descriptors are not inherited). addr NULL: no
 * address wanted (len is then ignored); else *len is its room, and is set
 * to the address's size. An addr without len is -EINVAL, before anything
 * is accepted (the kernel would take the connection, fail to write the
 * address and lose the connection). Closing fd does not end an accept waiting on it; shutdown(fd,
 * SHUT_RDWR) does (-EINVAL), as does cancelling the task (docs/io.md). */
WEFT_API int weft_accept(int fd, struct sockaddr *addr, socklen_t *len, unsigned flags);
WEFT_API ssize_t weft_send(int fd, const void *buf, size_t n, int flags);
/* weft_write_all for weft_send: sends all n bytes, repeating the send over
 * short ones. Same returns and *done. A stream socket whose peer is gone
 * gives -EPIPE, and no SIGPIPE: io_uring's sends never raise it (the
 * kernel adds MSG_NOSIGNAL to each), unlike send(2) and weft_write. */
WEFT_API WEFT_MUST_CHECK int weft_send_all(int fd, const void *buf, size_t n, int flags,
                                           size_t *done);
/* weft_writev_all for a socket, by sendmsg with flags (MSG_DONTWAIT, say):
 * a gone peer gives -EPIPE and no SIGPIPE, as for weft_send_all. No
 * ancillary data: a repeated send would repeat it. iov is scratch as for
 * weft_writev_all; the same returns, *done and -EINVAL. */
WEFT_API WEFT_MUST_CHECK int weft_sendv_all(int fd, struct iovec *iov, int iovcnt, int flags,
                                            size_t *done);
/* weft_read_all for weft_recv (a frame header, a length-prefixed body):
 * -ENODATA when the peer ends the stream first. */
WEFT_API WEFT_MUST_CHECK int weft_recv_all(int fd, void *buf, size_t n, int flags, size_t *done);
WEFT_API ssize_t weft_recv(int fd, void *buf, size_t n, int flags);
WEFT_API ssize_t weft_sendmsg(int fd, const struct msghdr *msg, unsigned flags);
WEFT_API ssize_t weft_recvmsg(int fd, struct msghdr *msg, unsigned flags);
/* sendto(2) and recvfrom(2), for datagram sockets: through SENDMSG and
 * RECVMSG. recvfrom fills addr up to *addrlen and sets *addrlen to the
 * sender's address length; with MSG_TRUNC in flags it returns the
 * datagram's real length when buf was too small (as recvfrom(2) does).
 * -EINVAL for addr without its length (sendto: either without the other). */
WEFT_API ssize_t weft_sendto(int fd, const void *buf, size_t n, int flags,
                             const struct sockaddr *addr, socklen_t addrlen);
WEFT_API ssize_t weft_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
                               socklen_t *addrlen);
/* Zero-copy sends: return once the kernel no longer needs buf (both the
 * result and the buffer notification have arrived). The notification
 * comes when the kernel lets go of the pages (for TCP once the peer has
 * taken the data): a cancel or deadline ends the send itself, but once the
 * data is queued it cannot shorten that wait, and a peer that stops
 * reading holds the call until the connection is aborted (SO_LINGER 0 and
 * a close, from another task; docs/io.md). */
WEFT_API ssize_t weft_send_zc(int fd, const void *buf, size_t n, int flags);
WEFT_API ssize_t weft_sendmsg_zc(int fd, const struct msghdr *msg, unsigned flags);
/* ---- buffered reading --------------------------------------------------------
 * A reader over a socket, pipe or file (read at WEFT_OFF_CURRENT), for the
 * protocols that read by lines or by frames: what has come in and not been
 * taken stays in the reader's buffer across calls, and across an
 * interruption (a cancelled or timed-out call consumes nothing). One task
 * uses a reader at a time. The struct's fields are weft's; read them only
 * through these calls. (io/reader.c; docs/io.md, Reading lines and
 * frames.) */
typedef struct weft_reader {
    int fd;
    char *buf;
    size_t cap, start, end; /* buf[start..end) is buffered */
    bool eof, owned, follow;
} weft_reader;
/* Sets r up to read fd through buf[0..cap), or, with buf NULL, through cap
 * bytes weft allocates (weft_reader_free gives them back). A line or a
 * header that must be seen whole must fit in cap. No I/O, no task needed.
 * 0, -EINVAL (NULL r, cap 0), -ENOMEM. */
WEFT_API int weft_reader_init(weft_reader *r, int fd, void *buf, size_t cap);
/* Frees the buffer weft allocated, if it did; not the fd. */
WEFT_API void weft_reader_free(weft_reader *r);
/* Follow mode (on: true), for a file that grows, as tail -f reads it: the
 * end of the file is where the file ends now, not for good. A call that
 * meets it returns what it would at the end (0, -ENODATA, a short fill)
 * and the next call reads again; weft_reader_until keeps a last line
 * without its delim buffered until the rest of it comes (it is not handed
 * out as a last piece), while weft_reader_read_all's -ENODATA has taken
 * *done bytes into dst, as always: ask for the rest into dst + *done.
 * Waiting for the file to grow is the caller's (a
 * ticker, inotify). A file truncated or replaced under the reader is the
 * caller's to notice too (statx, then a new reader). 0, -EINVAL for NULL. */
WEFT_API int weft_reader_follow(weft_reader *r, bool on);
/* The next line, or any record that ends with delim: *out points at its
 * bytes, delim included, in the reader's buffer, valid until the next call
 * on r (not NUL-terminated: use the count, or copy before str* calls);
 * returns their count, and they are consumed. Reads as needed. At
 * the end of the stream, what is left without a delim comes as a last
 * piece (check its last byte), then 0. -EMSGSIZE when cap bytes hold no
 * delim, a last piece of cap bytes too (nothing consumed: weft_reader_fill
 * shows them); -ECANCELED,
 * -ETIMEDOUT or weft_read's error with nothing consumed (what came stays
 * for the next call); -EINVAL for NULL r or out; -EPERM outside a task. */
WEFT_API ssize_t weft_reader_until(weft_reader *r, int delim, const char **out);
/* Makes at least min bytes buffered, reading as needed, without consuming
 * them: *out points at all that is buffered (valid until the next call on
 * r), and the count is returned, min or more, or less at the end of the
 * stream (0 when nothing is left). For a fixed header: fill, parse, then
 * weft_reader_consume. A min of 0 reads nothing: it shows what is
 * buffered, 0 bytes not meaning the end there. -EMSGSIZE for min > cap; else as
 * weft_reader_until. */
WEFT_API ssize_t weft_reader_fill(weft_reader *r, size_t min, const char **out);
/* Drops n buffered bytes. 0, or -EINVAL for NULL r or more than are
 * buffered. */
WEFT_API int weft_reader_consume(weft_reader *r, size_t n);
/* Up to n bytes into dst: what is buffered, or else one read (straight
 * into dst when n is at least cap). 0 at the end of the stream; errors as
 * weft_reader_until. */
WEFT_API ssize_t weft_reader_read(weft_reader *r, void *dst, size_t n);
/* Exactly n bytes into dst (a frame body after its header): what is
 * buffered, then weft_read_all for the rest, straight into dst. As
 * weft_read_all: 0, or -ENODATA if the stream ends first, or the
 * interruption or error, with *done (if non-NULL) the bytes taken into dst
 * in every case, and those are consumed. */
WEFT_API WEFT_MUST_CHECK int weft_reader_read_all(weft_reader *r, void *dst, size_t n,
                                                  size_t *done);
/* Bytes buffered and not consumed (*out, if non-NULL, points at them):
 * to hand them on when the protocol changes hands (an upgrade, a relay). */
WEFT_API size_t weft_reader_buffered(const weft_reader *r, const char **out);
/* ---- relaying between two sockets ------------------------------------------
 * What a proxy does with each connection: copies a -> b and b -> a between
 * two stream sockets (TCP, AF_UNIX SOCK_STREAM) at once,
 * each direction in a child task of the caller, until both have ended. An
 * end of stream from one side is passed on as shutdown(SHUT_WR) to the
 * other (half-closed protocols keep working), and that direction is done.
 * The call returns:
 * - 0 when both directions ended so;
 * - the first error of either direction (-ECONNRESET, -EPIPE: no SIGPIPE
 *   is raised), the other direction being stopped;
 * - -ETIMEDOUT when no byte moved either way for opts->idle_ns, or at the
 *   caller's deadline; -ECANCELED when the caller is cancelled (also
 *   inside a shield: its pumps would start cancelled);
 * - -EINVAL for a == b or buf_size above 64 MiB, -EBADF or -ENOTSOCK for
 *   an fd that is no socket (plain fds, not WEFT_DIRECT slots),
 *   -EOPNOTSUPP for a datagram or seqpacket socket (messages have no end
 *   of stream, and their boundaries would not be kept), -EPERM
 *   outside a task, -ENOMEM (the buffers, the two tasks, their stacks),
 *   -EOVERFLOW with an idle limit when the caller already has the 16
 *   deadlines a task may push (the limit takes one).
 * In every case both directions have stopped when it returns, and *moved
 * (unless NULL) holds the bytes each delivered, exactly. The sockets stay
 * open: the caller closes them. docs/io.md has a proxy built on it. */
typedef struct weft_relay_opts {
    size_t buf_size;  /* bytes per direction; 0 = 64 KiB */
    uint64_t idle_ns; /* end after this long without a byte either way; 0 (or
                         anything past the clock's range) = never */
} weft_relay_opts;
typedef struct weft_relay_counts {
    uint64_t a_to_b, b_to_a; /* bytes sent to b, and to a */
} weft_relay_counts;
WEFT_API WEFT_MUST_CHECK int weft_relay(int a, int b, const weft_relay_opts *opts,
                                        weft_relay_counts *moved);

/* shutdown(2): SHUT_RD, SHUT_WR or SHUT_RDWR. Like every call but
 * weft_close, it is refused in a cancelled task (-ECANCELED): a goodbye
 * made during cleanup goes inside weft_shield_push. */
WEFT_API int weft_shutdown(int fd, int how);
/* Socket options through IORING_OP_URING_CMD. getsockopt returns the
 * option's length. */
WEFT_API int weft_getsockopt(int fd, int level, int name, void *val, socklen_t len);
WEFT_API int weft_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
/* IORING_OP_URING_CMD: command cmd_op of fd's own driver, its len <= 16
 * bytes of arguments copied into the SQE's command area (the rest is
 * zero). Returns the CQE's result; -EINVAL for len > 16 or NULL arg with
 * len > 0; -EOPNOTSUPP from a file or protocol without the command. The
 * socket commands below take no arguments and return a byte count (TCP
 * and UDP have them; AF_UNIX does not). */
WEFT_API int weft_uring_cmd(int fd, uint32_t cmd_op, const void *arg, size_t len);
/* cmd_op values for sockets (the kernel's SOCKET_URING_OP_*, Linux 6.7):
 * bytes queued for reading, and bytes not yet sent (or, for TCP, not yet
 * acknowledged). */
#define WEFT_SOCKET_CMD_SIOCINQ  0u
#define WEFT_SOCKET_CMD_SIOCOUTQ 1u

/* ---- readiness, processes, futexes, epoll ------------------------------- */

/* Waits until fd is ready for one of events (POLLIN, ...); returns revents. */
WEFT_API int weft_poll(int fd, unsigned events);
/* waitid(2) as an op (IORING_OP_WAITID, Linux 6.7; -EOPNOTSUPP before):
 * idtype/id/options as there (P_PID, P_PGID, P_ALL, P_PIDFD; WEXITED
 * reaps the child, as waitid does), info points at a siginfo_t (void *
 * so that this header does not need POSIX feature macros) and may be
 * NULL. -ECHILD at once when there is no such child (P_ALL with none: a
 * reaping loop must stop on it); with SIGCHLD ignored (SIG_IGN reaps
 * children by itself), -ECHILD once the child has exited. Interrupted (-ECANCELED, -ETIMEDOUT), it
 * has reaped nothing: an exit it took is returned as its result
 * instead, so no exit is lost (docs/blocking.md, Child processes). */
WEFT_API int weft_waitid(int idtype, int id, void *info, int options);
/* futex2 calls (FUTEX2_SIZE_U32 | FUTEX2_PRIVATE when flags is 0; a mask of
 * 0 is FUTEX_BITSET_MATCH_ANY). wait returns 0 when woken, -EAGAIN if
 * *addr != val; wake returns how many it woke, at most n, and any n past
 * INT_MAX (UINT64_MAX, UINT32_MAX) wakes them all: the kernel counts in an
 * int. */
WEFT_API int weft_futex_wait(uint32_t *addr, uint64_t val, uint64_t mask, unsigned flags);
WEFT_API int weft_futex_wake(uint32_t *addr, uint64_t n, uint64_t mask, unsigned flags);
/* Returns the index of the futex that woke. */
WEFT_API int weft_futex_waitv(struct futex_waitv *v, unsigned n);
WEFT_API int weft_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
WEFT_API int weft_epoll_wait(int epfd, struct epoll_event *events, int maxevents);
/* Posts a CQE (res, user_data) on another io_uring (MSG_RING); for rings
 * that are not weft's, whose user_data weft cannot interpret: -EINVAL for
 * a ring of weft's (weft_ring_fd of any worker or executor in the process,
 * through any descriptor of it). weft_batch and weft_uring_op refuse a
 * MSG_RING SQE aimed at one the same way. */
WEFT_API int weft_msg_ring(int ring_fd, int res, uint64_t user_data);
/* The fd of the calling worker's ring, or -EPERM. */
WEFT_API int weft_ring_fd(void);

/* ---- registered buffers and provided buffer rings ----------------------- */

/* Registers buffers with every worker's ring (registered, "fixed" buffers:
 * no page pinning per op) at n consecutive free slots, the first that fit
 * (slots freed by weft_buffers_unregister are reused). Returns the first
 * slot, or -EPERM outside a task, -EINVAL for NULL iov or n == 0, -ENXIO
 * when the rings have no buffer table (the kernel refused to make one),
 * -ENOSPC when no n free slots follow each other, -ENOMEM, or the
 * kernel's error for a buffer it refuses. On an error no slot is yours:
 * if a ring could not be reached to take the buffers back off, weft
 * releases them there at the next register or unregister call. A task
 * already cancelled or past its deadline gets -ECANCELED/-ETIMEDOUT after
 * the argument checks, before anything is done; once begun, the call is
 * not interrupted: it waits for every worker to reach a scheduling point
 * and apply it (only its own task waits), so a task that holds a worker
 * without one delays it, deadline or not. Unregistering waits the same
 * way, and goes ahead in a cancelled task (its cleanup). */
WEFT_API int weft_buffers_register(const struct iovec *iov, unsigned n);
/* Releases slots [first, first + n): 0, -EPERM outside a task, -EINVAL
 * when one of them is not registered, or -ENOMEM when another worker could
 * not be reached: the slots may then still hold the buffers on its ring
 * (they are not given out again), and calling this again releases them. */
WEFT_API int weft_buffers_unregister(unsigned first, unsigned n);

/* Legacy provided buffers (PROVIDE_BUFFERS / REMOVE_BUFFERS): n buffers of
 * len bytes from base, ids bid.. in group gid (at most 32767, -EINVAL
 * above); remove returns the count. */
WEFT_API int weft_buffers_provide(void *base, unsigned len, unsigned n, unsigned gid, unsigned bid);
WEFT_API int weft_buffers_remove(unsigned n, unsigned gid);

/* A provided buffer ring: nbufs (a power of two, at most 32768) buffers of
 * size bytes (1 .. 2 GiB) that the kernel picks from when data arrives
 * (recv streams, weft_recv_buf). Bound to the calling worker's ring.
 * Returns 0, -EINVAL (NULL out, bad nbufs or size), -EPERM outside a task,
 * -ENOSPC (no buffer group id left on the ring) or -ENOMEM. */
typedef struct weft_buf_ring weft_buf_ring;
WEFT_API int weft_buf_ring_create(weft_buf_ring **out, unsigned nbufs, size_t size);
/* Fails with -EBUSY while an open stream or a weft_recv_buf uses it, or a
 * buffer is leased; -EINVAL for NULL, -EPERM outside a task, -EXDEV on
 * another worker than the ring's.
 * Streams closed but still winding down in the kernel are waited for: the
 * ring is released with the last of them. */
WEFT_API int weft_buf_ring_destroy(weft_buf_ring *br);
/* Buffers currently in the kernel's hands (not leased, and not waiting in
 * a stream's queue to be pulled). */
WEFT_API unsigned weft_buf_ring_available(const weft_buf_ring *br);

/* A leased buffer: data the kernel wrote into a buffer of a ring. The task
 * owns it until weft_buf_release (or until it ends, when it is returned for
 * it). weft_buf_release returns 0, or -EXDEV from another worker than the
 * ring's (the buffer stays leased until its task ends); releasing an
 * already released buffer does nothing, even once the same buffer is
 * leased again (until 65,536 more leases of it make a stale copy match). */
typedef struct weft_buf {
    void *data;
    size_t len;
    weft_buf_ring *ring; /* private */
    unsigned id;         /* private */
} weft_buf;
WEFT_API int weft_buf_release(weft_buf *b);
/* One recv into a buffer the kernel picks from br; returns the length (0 =
 * end of stream) with *out leased when > 0, -ENOBUFS when br is empty,
 * -EINVAL for a NULL br or out, -EXDEV for a ring of another worker, or
 * the errors of every blocking call. */
WEFT_API ssize_t weft_recv_buf(int fd, weft_buf_ring *br, weft_buf *out);

/* ---- multishot streams -------------------------------------------------- */

/* One multishot op whose completions queue up for the task that opened it,
 * which pulls them with weft_stream_next. Streams are ring-bound: they pin
 * the task to its worker, and closing one (or ending the task) cancels the
 * kernel side through the worker's maintenance task. The openers return 0,
 * -EPERM outside a task, -ECANCELED / -ETIMEDOUT in a task already
 * cancelled or past its deadline (as every blocking call), -EINVAL (bad
 * accept flags, a NULL br, a ticker period of 0), -EXDEV for a br of
 * another worker, -ENXIO for WEFT_DIRECT without a file table
 * (weft_direct_table_size), -EOPNOTSUPP where the kernel lacks the op,
 * -ENOMEM, or -EAGAIN when the ring has no SQE right now. */
typedef struct weft_stream weft_stream;
/* Accepted fds (flags: SOCK_CLOEXEC, SOCK_NONBLOCK, WEFT_DIRECT). */
WEFT_API int weft_accept_stream(weft_stream **out, int fd, unsigned flags);
/* Data received into buffers of br: for stream sockets. On a datagram
 * socket each item is one datagram, but without its sender's address, and
 * one larger than a buffer comes cut to it with no sign of the cut: use
 * weft_recvmsg_stream there. */
WEFT_API int weft_recv_stream(weft_stream **out, int fd, weft_buf_ring *br);
/* Datagrams (multishot RECVMSG) into buffers of br, each item one
 * datagram, for datagram and seqpacket sockets (-EOPNOTSUPP for a stream
 * socket, -ENOTSOCK for no socket): weft_stream_next returns its payload's
 * length (0 for an empty datagram, leased all the same), and
 * weft_buf_datagram gives its sender and whether it was cut. A socket
 * error (an ICMP error: -ECONNREFUSED, -EHOSTUNREACH) is returned once
 * and the stream goes on. Each buffer starts with the kernel's header and
 * room for the address (WEFT_DATAGRAM_HEADER bytes), so a buffer keeps
 * size - WEFT_DATAGRAM_HEADER bytes of payload; a br whose buffers are no
 * larger gives -EINVAL. To end it, weft_stream_stop (then -ESHUTDOWN once
 * what came is handed out): a shutdown(SHUT_RD) of the socket does not
 * reach a multishot receive. */
WEFT_API int weft_recvmsg_stream(weft_stream **out, int fd, weft_buf_ring *br);
#define WEFT_DATAGRAM_HEADER (16 + sizeof(struct sockaddr_storage))
/* weft_recvmsg_stream with room for control_len bytes of ancillary data
 * per datagram (what the socket was asked for with setsockopt:
 * IP_PKTINFO, SO_TIMESTAMPNS, SCM_RIGHTS on a Unix socket; size it with
 * CMSG_SPACE), which weft_buf_datagram hands out. The room, rounded up to
 * a multiple of 8, comes after the header in each buffer, so a buffer
 * keeps size - WEFT_DATAGRAM_HEADER - room bytes of payload: -EINVAL when
 * that leaves none, or for a control_len above 65536. 0 is
 * weft_recvmsg_stream. */
WEFT_API int weft_recvmsg_stream_ex(weft_stream **out, int fd, weft_buf_ring *br,
                                    size_t control_len);
/* What a recvmsg stream's item says besides its payload. */
typedef struct weft_datagram {
    struct sockaddr_storage from; /* the sender */
    socklen_t fromlen;
    size_t len;     /* the datagram's real length: more than the lease's when cut */
    bool truncated; /* larger than the buffer could keep (MSG_TRUNC) */
    /* The ancillary data (weft_recvmsg_stream_ex), in the leased buffer
     * until its release: msg_control and msg_controllen are set (0 and
     * NULL without room or data), so that CMSG_FIRSTHDR(&d.control) and
     * CMSG_NXTHDR(&d.control, c) walk it. */
    struct msghdr control;
    bool control_truncated; /* more than the room (MSG_CTRUNC); SCM_RIGHTS
                               descriptors that did not fit are closed */
    /* (Those that did fit are the program's to close; a stream closes
     * those of datagrams it never handed out.) */
} weft_datagram;
/* Fills *out for b, a lease from a recvmsg stream not yet released, with
 * b->data as the stream set it. Returns 0, -EXDEV off the ring's worker,
 * or -EINVAL for NULL, a released lease, a buffer of another kind of
 * stream, or a moved b->data. */
WEFT_API int weft_buf_datagram(const weft_buf *b, weft_datagram *out);
/* Data read (READ_MULTISHOT) into buffers of br: pipes and other pollable
 * fds. */
WEFT_API int weft_read_stream(weft_stream **out, int fd, weft_buf_ring *br);
/* Readiness (multishot POLL_ADD); each item is the revents. */
WEFT_API int weft_poll_stream(weft_stream **out, int fd, unsigned events);
/* A ticker (multishot TIMEOUT): one item per period_ns, on the grid
 * start + k * period_ns. The kernel starts each tick's period late (when
 * the worker runs the last tick's task work); weft plans each arming's
 * period against the grid, so that the delay does not add up: 1,000 ticks
 * of 1 ms took 1,001 ms on the 2-vCPU test machine (1,048 ms before).
 * Grid points a whole period or more behind (a worker held that long)
 * are skipped, not made up in a burst. No tick is handed out before its
 * grid point: the kernel's can come early (when the worker's wakes get
 * quicker than it measured), and weft_stream_next then waits for the
 * point, interruptibly, the tick staying queued (docs/io.md, Tickers).
 * The grid starts when weft_ticker arms it. Ticks not yet pulled queue
 * up, and coalesce into one item once the queue (16 items) is full: an
 * owner that was busy elsewhere gets the queued ones one after another,
 * at once (weft_ticker_next says which point each stands for). */
WEFT_API int weft_ticker(weft_stream **out, uint64_t period_ns);
/* Changes a ticker's period (its arming is removed and armed again), from
 * the task that opened it (-EPERM for another task, -EXDEV on another
 * worker, -EINVAL for NULL, a stream that is no ticker or a period of 0).
 * The remove is a blocking call: its -ECANCELED, -ETIMEDOUT or -EAGAIN (no
 * SQE) come back too, and the new period then takes effect at the next
 * arming all the same. A remove that meets a tick as it fires tries again.
 * A ticker too fast for the reset to find it armed (a period of a few
 * microseconds) takes the new period at its next arming instead, after at
 * most 64 ticks (docs/io.md, Tickers). */
WEFT_API int weft_ticker_reset(weft_stream *s, uint64_t period_ns);
/* What weft_ticker_next says of a tick besides its coming. */
typedef struct weft_tick {
    /* The tick's grid point (weft_now_ns's clock), never after the call
     * returned it. A tick that belongs to no grid any more (its arming was
     * removed by weft_ticker_reset) gives the time it was handed out. */
    uint64_t due_ns;
    /* Grid points since the last tick handed out (by this call or by
     * weft_stream_next) that came with no tick of their own: skipped while
     * the worker was held, or coalesced in a full queue. 0 for the first
     * tick and the first after a reset. A loop that must run once per
     * period runs missed + 1 times; one that must not burst ignores it. */
    uint64_t missed;
} weft_tick;
/* weft_stream_next for a ticker, with the tick's grid point and how many
 * grid points went by without a tick (*out filled on 0). Returns what
 * weft_stream_next returns, and -EINVAL for a NULL out or a stream that is
 * no ticker. */
WEFT_API int weft_ticker_next(weft_stream *s, weft_tick *out);
/* The next item, for the task that opened the stream (-EPERM for another
 * task, -EXDEV on another worker, -EBADF for NULL,
 * -EINVAL for a recv or read stream without buf): an accepted fd, a received
 * length (buf leased, 0 = end of stream), revents, or 0 for a tick (not
 * before the tick's grid point, which it waits for when the kernel's tick
 * came early). -ECANCELED/-ETIMEDOUT as any blocking call (what is queued
 * stays queued); an error that ended the kernel
 * side is returned once, then an accept stream re-arms and a recv, read or
 * poll stream reports -EPIPE from then on (0 after the end of the stream;
 * -ECANCELED from weft_cancel_fd on its fd ends it too). -ENOBUFS when nothing is
 * queued here and the kernel has no buffer of the ring left: every one is
 * leased, or waits in another stream's queue (pull or release some first).
 * -ENOMEM once, when the queue is empty, after a completion could not be
 * queued for want of memory (an accepted connection is closed then, a
 * buffer returned; the stream goes on). -EAGAIN when the queue is empty
 * and the kernel side must be armed again (a ticker's arming ran out,
 * an accept stream re-arms) but no SQE could be had, as for any call
 * (top of this file): nothing is lost, pull again. */
WEFT_API int weft_stream_next(weft_stream *s, weft_buf *buf);
/* Items queued and not yet pulled. */
WEFT_API unsigned weft_stream_pending(const weft_stream *s);
/* Stops an accept, recv, recvmsg, read or poll stream without losing anything: its
 * kernel side is cancelled (the call waits for that, briefly, shielded)
 * and never armed again. weft_stream_next then hands out what it had
 * already taken from the fd, and returns -ESHUTDOWN once the kernel side
 * has ended and nothing is left (0 first if the peer closed, -EPIPE after
 * an error, as before). From then on the fd is the program's alone: plain
 * reads or accepts see whatever comes next. Returns 0 (also when stopped
 * already), -EBADF (NULL, closed), -EINVAL for a ticker (close it), -EPERM
 * and -EXDEV as for weft_stream_close, or the cancel's error (the stream
 * then goes on as before). */
WEFT_API int weft_stream_stop(weft_stream *s);
/* Closes the stream; queued fds are closed and queued buffers returned. The
 * kernel side is cancelled asynchronously; never blocks. Until it has
 * ended it may still take what arrives (data read from the fd is dropped,
 * its buffer returned; connections accepted are closed): a program that
 * goes on reading the fd itself stops the stream first (weft_stream_stop)
 * and pulls until -ESHUTDOWN, or it may lose what comes in meanwhile. The
 * handle is
 * invalid afterwards, as after free: no call may be given it again (its
 * memory goes once the kernel side has ended). Only the task that opened
 * the stream closes it: another task gets -EPERM, as does a call outside
 * any task (to stop an owner parked in weft_stream_next, cancel the
 * owner: its end closes the stream), and -EXDEV comes from a task on
 * another worker. Returns 0, -EBADF for NULL. */
WEFT_API int weft_stream_close(weft_stream *s);

/* ---- introspection ------------------------------------------------------ */

/* 1 if the running kernel supports the IORING_OP_* opcode, else 0. */
WEFT_API int weft_opcode_supported(unsigned opcode);
/* The weft function that covers an opcode ("weft_read", ...), or NULL. */
WEFT_API const char *weft_opcode_wrapper(unsigned opcode);
/* The opcode's name ("READ"), or NULL past the last known one. */
WEFT_API const char *weft_opcode_name(unsigned opcode);
/* Ops issued per opcode since the runtime started, summed over its workers
 * as weft_stats_snapshot's ops_issued is (ops[0..n)). Call it from a task.
 * Returns how many entries it filled, -EPERM outside a task, -EINVAL for a
 * NULL ops, -ENOMEM when the other workers could not be asked. */
WEFT_API int weft_ops_by_opcode(uint64_t *ops, unsigned n);

/* What became of the ops of one opcode, summed over the workers. */
typedef struct weft_op_counts {
    uint64_t issued;    /* SQEs prepared (weft_ops_by_opcode's figure) */
    uint64_t completed; /* ops whose last completion was reaped; a multishot
                           op, or a zero-copy send with its notification,
                           completes once */
    uint64_t cancelled; /* completions with -ECANCELED, or -EINTR (an op
                           cancelled while a kernel worker thread ran it,
                           such as a SPLICE, ends so) */
    uint64_t failed;    /* completions with another negative result, except
                           outcomes that are normal for the opcode: a
                           timeout's -ETIME (it expired), a cancel's or
                           remove's -ENOENT / -EALREADY (its target had
                           ended), a RECV's, RECVMSG's, READ's or
                           READ_MULTISHOT's -ENOBUFS (its buffer ring was
                           empty: a stream re-arms).
                           A LINK_TIMEOUT whose op ended in time is
                           cancelled: that is its normal end. An accept
                           stopped by shutdown(2) ends with -EINVAL and
                           counts here: the kernel says the same of a
                           socket that never listened. */
} weft_op_counts;
/* Fills counts[0..n) by opcode, as weft_ops_by_opcode does: returns how
 * many entries it filled, -EPERM outside a task, -EINVAL for NULL counts,
 * -ENOMEM when the other workers could not be asked. issued - completed is
 * what is still in the kernel (or waiting to be submitted). */
WEFT_API int weft_op_counts_by_opcode(weft_op_counts *counts, unsigned n);
/* Writes the opcodes of counts[0..n) that were issued, one row each (name,
 * issued, completed, cancelled, failed, in flight) / as a JSON object keyed
 * by opcode name. Nothing for a NULL f; a NULL counts is no opcode. */
WEFT_API void weft_op_counts_print(FILE *f, const weft_op_counts *counts, unsigned n);
WEFT_API void weft_op_counts_print_json(FILE *f, const weft_op_counts *counts, unsigned n);

#ifdef __cplusplus
}
#endif
#endif
