/* io_uring UAPI newer than liburing 2.3 (internal, header only).
 *
 * weft builds against liburing 2.3 (Debian 12), whose io_uring.h stops at
 * IORING_OP_SENDMSG_ZC (48), but runs on kernels up to 6.18, which know
 * opcodes 0..62. This header supplies what 2.3 lacks, written from the
 * kernel's include/uapi/linux/io_uring.h and the io_uring/ sources of 6.18:
 *
 *   - opcode numbers 49..62 as WEFT__OP_<NAME>. The kernel declares them as
 *     enumerators, which #ifndef cannot see, so they get names of their own
 *     instead of redefining IORING_OP_<NAME>; that also keeps this header
 *     compiling against a newer liburing that has the enumerators.
 *   - flag macros 2.3 lacks, each under #ifndef for the same reason.
 *   - weft__prep_<op>() for every op 2.3 has no io_uring_prep_* helper for.
 *
 * Several of these ops read SQE fields that 2.3's struct io_uring_sqe does
 * not name (level, optname, optlen, optval, futex_flags, pipe_flags...).
 * They are unions over fields 2.3 does name, so the helpers write through
 * those, with the kernel's name in a comment; the _Static_asserts below pin
 * the byte offsets that makes this correct.
 *
 * Nothing here checks that the running kernel has an op: callers probe
 * first (weft__ring_supports). An unknown opcode completes with -EINVAL.
 */
#ifndef WEFT_IO_UAPI_H
#define WEFT_IO_UAPI_H

#include <liburing.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct epoll_event;

/* ---- Opcodes ---------------------------------------------------------- */

/* The numbers below continue 2.3's enum; an older liburing fails here rather
 * than silently shifting them. */
_Static_assert(IORING_OP_SENDMSG_ZC == 48, "liburing 2.3 or newer is required");

#define WEFT__OP_READ_MULTISHOT   49 /* 6.7 */
#define WEFT__OP_WAITID           50 /* 6.7 */
#define WEFT__OP_FUTEX_WAIT       51 /* 6.7 */
#define WEFT__OP_FUTEX_WAKE       52 /* 6.7 */
#define WEFT__OP_FUTEX_WAITV      53 /* 6.7 */
#define WEFT__OP_FIXED_FD_INSTALL 54 /* 6.8 */
#define WEFT__OP_FTRUNCATE        55 /* 6.9 */
#define WEFT__OP_BIND             56 /* 6.11 */
#define WEFT__OP_LISTEN           57 /* 6.11 */
#define WEFT__OP_RECV_ZC          58 /* 6.15; needs a registered zcrx queue, no helper here */
#define WEFT__OP_EPOLL_WAIT       59 /* 6.15 */
#define WEFT__OP_READV_FIXED      60 /* 6.15 */
#define WEFT__OP_WRITEV_FIXED     61 /* 6.15 */
#define WEFT__OP_PIPE             62 /* 6.16 */
/* IORING_OP_LAST as of 6.18: one past the highest opcode this header knows. */
#define WEFT__OP_LAST 63

/* ---- Flags 2.3 lacks ------------------------------------------------- */

/* Already in 2.3, so not defined here: IORING_FILE_INDEX_ALLOC,
 * IORING_URING_CMD_FIXED, IORING_ASYNC_CANCEL_{ALL,FD,ANY,FD_FIXED},
 * IORING_RECV_MULTISHOT, IORING_ACCEPT_MULTISHOT, struct io_uring_buf,
 * struct io_uring_buf_ring and struct io_uring_buf_reg (whose 16-bit `pad`
 * is the kernel's `flags`). */

/* sqe->install_fd_flags (FIXED_FD_INSTALL): the new fd is O_CLOEXEC unless
 * this is set. 6.8. */
#ifndef IORING_FIXED_FD_NO_CLOEXEC
#define IORING_FIXED_FD_NO_CLOEXEC (1U << 0)
#endif

/* sqe->ioprio of send/recv with IOSQE_BUFFER_SELECT: move several provided
 * buffers in one op. 6.10; advertised by IORING_FEAT_RECVSEND_BUNDLE. */
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif

/* cqe->flags: the buffer named in this CQE is only partly consumed and the
 * kernel keeps filling it; only for rings registered with
 * WEFT__IOU_PBUF_RING_INC. 6.12. */
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

/* io_uring_buf_reg flags (the `pad` field in 2.3). Enumerators upstream, so
 * prefixed. MMAP: 6.4, the kernel allocates the ring; INC: 6.12, buffers
 * are consumed incrementally. */
#define WEFT__IOU_PBUF_RING_MMAP 1
#define WEFT__IOU_PBUF_RING_INC  2

/* sqe->cancel_flags: match on user_data explicitly (6.6), or on opcode, taken
 * from sqe->len (6.6). */
#ifndef IORING_ASYNC_CANCEL_USERDATA
#define IORING_ASYNC_CANCEL_USERDATA (1U << 4)
#endif
#ifndef IORING_ASYNC_CANCEL_OP
#define IORING_ASYNC_CANCEL_OP (1U << 5)
#endif

/* sqe->timeout_flags: a repeating timeout posting a CQE per expiry, sqe->off
 * of them (0 = until cancelled). 6.4. */
#ifndef IORING_TIMEOUT_MULTISHOT
#define IORING_TIMEOUT_MULTISHOT (1U << 6)
#endif

/* futex2 flags, which the FUTEX_* ops take in sqe->fd and futex_waitv takes
 * per waiter. Debian 12's linux/futex.h (6.1) predates them. Only 32-bit
 * futexes are accepted by the kernel so far. */
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE FUTEX_PRIVATE_FLAG
#endif

/* IORING_OP_URING_CMD sub-commands (sqe->cmd_op) on a socket. Enumerators
 * upstream, so prefixed. 6.7. */
#define WEFT__SOCKET_URING_OP_SIOCINQ    0
#define WEFT__SOCKET_URING_OP_SIOCOUTQ   1
#define WEFT__SOCKET_URING_OP_GETSOCKOPT 2
#define WEFT__SOCKET_URING_OP_SETSOCKOPT 3

/* ---- SQE layout ------------------------------------------------------- */

/* The kernel's names for fields 2.3 lacks, and the 2.3 field at the same
 * offset that the helpers write instead:
 *
 *   kernel name                          offset  written through (2.3)
 *   level                                16      first 4 bytes of addr
 *   optname                              20      last 4 bytes of addr
 *   waitid_flags, futex_flags,
 *   install_fd_flags, pipe_flags         28      rw_flags
 *   optlen                               44      file_index
 *   optval                               48      addr3
 *
 * level and optname share addr's 8 bytes, so they are stored with memcpy at
 * their offsets, which is right whatever the byte order. */
#define WEFT__SQE_LEVEL_OFFSET   16
#define WEFT__SQE_OPTNAME_OFFSET 20

_Static_assert(sizeof(struct io_uring_sqe) == 64, "io_uring_sqe is 64 bytes");
/* A URING_CMD's arguments in a 64-byte SQE: from addr3 to the end (rings
 * made with SQE128 would have 80 bytes; weft's are not). */
#define WEFT__URING_CMD_BYTES 16
_Static_assert(sizeof(struct io_uring_sqe) - offsetof(struct io_uring_sqe, cmd) ==
                   WEFT__URING_CMD_BYTES,
               "sqe->cmd");
_Static_assert(offsetof(struct io_uring_sqe, fd) == 4, "sqe->fd");
_Static_assert(offsetof(struct io_uring_sqe, off) == 8, "sqe->off / addr2");
_Static_assert(offsetof(struct io_uring_sqe, cmd_op) == 8, "sqe->cmd_op");
_Static_assert(offsetof(struct io_uring_sqe, addr) == WEFT__SQE_LEVEL_OFFSET, "sqe->level");
_Static_assert(WEFT__SQE_OPTNAME_OFFSET == WEFT__SQE_LEVEL_OFFSET + 4, "sqe->optname");
_Static_assert(sizeof(((struct io_uring_sqe *)0)->addr) == 8, "level + optname fill addr");
_Static_assert(offsetof(struct io_uring_sqe, len) == 24, "sqe->len");
_Static_assert(offsetof(struct io_uring_sqe, rw_flags) == 28, "sqe->rw_flags and its aliases");
_Static_assert(sizeof(((struct io_uring_sqe *)0)->rw_flags) == 4, "op flags are 32-bit");
_Static_assert(offsetof(struct io_uring_sqe, user_data) == 32, "sqe->user_data");
_Static_assert(offsetof(struct io_uring_sqe, buf_index) == 40, "sqe->buf_index / buf_group");
_Static_assert(offsetof(struct io_uring_sqe, file_index) == 44, "sqe->optlen");
_Static_assert(sizeof(((struct io_uring_sqe *)0)->file_index) == 4, "sqe->optlen is 32-bit");
_Static_assert(offsetof(struct io_uring_sqe, addr3) == 48, "sqe->optval");

static inline void weft__sqe_put_u32(struct io_uring_sqe *sqe, size_t offset, uint32_t v)
{
    memcpy((unsigned char *)sqe + offset, &v, sizeof v);
}

/* ---- Helpers ---------------------------------------------------------- */

/* Resets sqe for op as liburing's io_uring_prep_rw does, but by zeroing all
 * 64 bytes, so every union member the kernel checks for "must be zero"
 * (including ones 2.3 cannot name) is zero. user_data survives: weft__ring_sqe
 * has already pointed it at the weft__op. */
static inline void weft__prep_rw(struct io_uring_sqe *sqe, uint8_t op, int fd, const void *addr,
                                 uint32_t len, uint64_t off)
{
    uint64_t user_data = sqe->user_data;

    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = op;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)addr;
    sqe->len = len;
    sqe->off = off;
    sqe->user_data = user_data;
}

/* READ_MULTISHOT (6.7): keeps reading fd into buffers picked from provided
 * buffer group buf_group, one CQE per read, until an error, EOF or the group
 * runs dry. fd must be pollable (a pipe, socket, eventfd...), else -EBADFD.
 * addr and len must be 0 (-EINVAL otherwise): each read fills at most one
 * buffer. off is the file position, (uint64_t)-1 for the current one; it is
 * ignored on streams.
 * CQE: res = bytes read, cflags has IORING_CQE_F_BUFFER with the buffer id in
 * cflags >> IORING_CQE_BUFFER_SHIFT, and IORING_CQE_F_MORE while the read
 * stays armed. The final CQE lacks F_MORE: res 0 at EOF, -ENOBUFS when the
 * group is empty, or another -errno. */
static inline void weft__prep_read_multishot(struct io_uring_sqe *sqe, int fd, uint64_t off,
                                             uint16_t buf_group)
{
    weft__prep_rw(sqe, WEFT__OP_READ_MULTISHOT, fd, NULL, 0, off);
    sqe->buf_group = buf_group;
    sqe->flags = IOSQE_BUFFER_SELECT;
}

/* WAITID (6.7): waitid(idtype, id, infop, options) without blocking a thread.
 * Kernel fields: len = idtype (P_PID, P_ALL, P_PGID, P_PIDFD), fd = id,
 * file_index = options (WEXITED etc., at least one of WEXITED, WSTOPPED,
 * WCONTINUED), addr2 (off) = infop, which may be NULL; waitid_flags = 0.
 * CQE: res = 0 once a child matched, with *infop filled (si_pid, si_status,
 * si_code, si_signo = SIGCHLD); -ECHILD when there is no such child. */
static inline void weft__prep_waitid(struct io_uring_sqe *sqe, int idtype, int id, siginfo_t *infop,
                                     int options)
{
    weft__prep_rw(sqe, WEFT__OP_WAITID, id, NULL, (uint32_t)idtype, (uint64_t)(uintptr_t)infop);
    sqe->file_index = (uint32_t)options;
}

/* FUTEX_WAIT (6.7): futex2 wait. Kernel fields: addr = uaddr, addr2 (off) =
 * the expected value, addr3 = the wake bitset (must be non-zero;
 * FUTEX_BITSET_MATCH_ANY for any), fd = futex2 flags (FUTEX2_SIZE_U32,
 * optionally | FUTEX2_PRIVATE); futex_flags = 0.
 * CQE: res = 0 when woken, -EAGAIN if *uaddr != val when the op is issued,
 * -ECANCELED if cancelled. */
static inline void weft__prep_futex_wait(struct io_uring_sqe *sqe, uint32_t *uaddr, uint64_t val,
                                         uint64_t mask, uint32_t futex2_flags)
{
    weft__prep_rw(sqe, WEFT__OP_FUTEX_WAIT, (int)futex2_flags, uaddr, 0, val);
    sqe->addr3 = mask;
}

/* FUTEX_WAKE (6.7): wakes up to nr waiters on uaddr whose bitset intersects
 * mask. Same fields as FUTEX_WAIT, with addr2 (off) = nr.
 * CQE: res = the number woken, 0 when nobody waits. */
static inline void weft__prep_futex_wake(struct io_uring_sqe *sqe, uint32_t *uaddr, uint64_t nr,
                                         uint64_t mask, uint32_t futex2_flags)
{
    weft__prep_rw(sqe, WEFT__OP_FUTEX_WAKE, (int)futex2_flags, uaddr, 0, nr);
    sqe->addr3 = mask;
}

/* FUTEX_WAITV (6.7): waits on nr (1..FUTEX_WAITV_MAX) futexes at once; each
 * waiter carries its own value and futex2 flags. Kernel fields: addr = the
 * array, len = nr; fd, addr2, addr3 and futex_flags = 0. The array is read
 * when the SQE is submitted.
 * CQE: res = index of the futex that woke it; -EAGAIN if a value differed
 * when armed; -ECANCELED if cancelled. */
static inline void weft__prep_futex_waitv(struct io_uring_sqe *sqe, struct futex_waitv *futexv,
                                          uint32_t nr)
{
    weft__prep_rw(sqe, WEFT__OP_FUTEX_WAITV, 0, futexv, nr, 0);
}

/* FIXED_FD_INSTALL (6.8): installs direct descriptor `slot` (0-based) of the
 * registered file table as a normal fd of the process, the one way to hand a
 * direct descriptor to code outside the ring. Kernel fields: fd = slot with
 * IOSQE_FIXED_FILE (required, else -EBADF), install_fd_flags = flags
 * (IORING_FIXED_FD_NO_CLOEXEC or 0).
 * CQE: res = the new fd (O_CLOEXEC unless NO_CLOEXEC); the slot stays. */
static inline void weft__prep_fixed_fd_install(struct io_uring_sqe *sqe, int slot, uint32_t flags)
{
    weft__prep_rw(sqe, WEFT__OP_FIXED_FD_INSTALL, slot, NULL, 0, 0);
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->rw_flags = (__kernel_rwf_t)flags; /* kernel: sqe->install_fd_flags */
}

/* FTRUNCATE (6.9): ftruncate(fd, length), with the length in off. Always
 * runs on an io-wq worker, as truncation may block.
 * CQE: res = 0 or -errno. */
static inline void weft__prep_ftruncate(struct io_uring_sqe *sqe, int fd, uint64_t length)
{
    weft__prep_rw(sqe, WEFT__OP_FTRUNCATE, fd, NULL, 0, length);
}

/* BIND (6.11): bind(fd, addr, addrlen); addr is copied when the op is
 * prepared. Kernel fields: addr = the sockaddr, addr2 (off) = addrlen.
 * CQE: res = 0 or -errno. */
static inline void weft__prep_bind(struct io_uring_sqe *sqe, int fd, const struct sockaddr *addr,
                                   socklen_t addrlen)
{
    weft__prep_rw(sqe, WEFT__OP_BIND, fd, addr, 0, addrlen);
}

/* LISTEN (6.11): listen(fd, backlog), with the backlog in len.
 * CQE: res = 0 or -errno. */
static inline void weft__prep_listen(struct io_uring_sqe *sqe, int fd, int backlog)
{
    weft__prep_rw(sqe, WEFT__OP_LISTEN, fd, NULL, (uint32_t)backlog, 0);
}

/* EPOLL_WAIT (6.15): epoll_wait(epfd, events, maxevents) as a request that
 * waits by poll, not by blocking a thread. Kernel fields: addr = events,
 * len = maxevents; off, rw_flags and buf_index = 0.
 * CQE: res = the number of events stored (>= 1: with none ready the request
 * waits rather than completing with 0), or -errno. */
static inline void weft__prep_epoll_wait(struct io_uring_sqe *sqe, int epfd,
                                         struct epoll_event *events, int maxevents)
{
    weft__prep_rw(sqe, WEFT__OP_EPOLL_WAIT, epfd, events, (uint32_t)maxevents, 0);
}

/* READV_FIXED / WRITEV_FIXED (6.15): preadv2/pwritev2 whose iovecs all point
 * into registered buffer buf_index, so the pages are not pinned per request.
 * Kernel fields: addr = iov, len = nr, off = offset ((uint64_t)-1 for the
 * current position), buf_index, rw_flags = RWF_* flags.
 * CQE: res = bytes transferred, -EFAULT if an iovec leaves the buffer. */
static inline void weft__prep_readv_fixed(struct io_uring_sqe *sqe, int fd, const struct iovec *iov,
                                          uint32_t nr, uint64_t offset, int rw_flags,
                                          uint16_t buf_index)
{
    weft__prep_rw(sqe, WEFT__OP_READV_FIXED, fd, iov, nr, offset);
    sqe->rw_flags = rw_flags;
    sqe->buf_index = buf_index;
}

static inline void weft__prep_writev_fixed(struct io_uring_sqe *sqe, int fd,
                                           const struct iovec *iov, uint32_t nr, uint64_t offset,
                                           int rw_flags, uint16_t buf_index)
{
    weft__prep_rw(sqe, WEFT__OP_WRITEV_FIXED, fd, iov, nr, offset);
    sqe->rw_flags = rw_flags;
    sqe->buf_index = buf_index;
}

/* PIPE (6.16): pipe2(fds, flags). Kernel fields: addr = int[2], pipe_flags =
 * O_CLOEXEC | O_NONBLOCK | O_DIRECT; fd, off and addr3 = 0.
 * CQE: res = 0 with fds[0] the read end and fds[1] the write end, or -errno
 * (nothing is left open then). */
static inline void weft__prep_pipe(struct io_uring_sqe *sqe, int fds[2], uint32_t flags)
{
    weft__prep_rw(sqe, WEFT__OP_PIPE, 0, fds, 0, 0);
    sqe->rw_flags = (__kernel_rwf_t)flags; /* kernel: sqe->pipe_flags */
}

/* PIPE into the registered file table: slot is the 0-based slot for the read
 * end (the write end goes to slot + 1), or IORING_FILE_INDEX_ALLOC for two
 * free slots. O_CLOEXEC is refused (-EINVAL): direct descriptors have no
 * exec semantics.
 * CQE: res = 0 with the two slot indexes in fds, or -errno. */
static inline void weft__prep_pipe_direct(struct io_uring_sqe *sqe, int fds[2], uint32_t flags,
                                          uint32_t slot)
{
    weft__prep_pipe(sqe, fds, flags);
    /* file_index is slot + 1 (0 means "normal fds"), except for the ALLOC
     * marker, which is passed as is. */
    sqe->file_index = slot == IORING_FILE_INDEX_ALLOC ? slot : slot + 1;
}

/* URING_CMD on a socket (6.7). cmd_op is one of WEFT__SOCKET_URING_OP_*;
 * SIOCINQ and SIOCOUTQ take no further arguments. Kernel fields: fd = the
 * socket, cmd_op, level, optname, optlen (a value, not a pointer), optval
 * (an address). The socket may be a direct descriptor (set
 * IOSQE_FIXED_FILE after this, e.g. through weft__sqe_fd).
 * CQE: SIOCINQ / SIOCOUTQ: res = bytes queued for reading / not yet sent,
 * or -EOPNOTSUPP where the protocol has no ioctl hook (AF_UNIX does not;
 * TCP and UDP do). The sockopt commands: see below. */
static inline void weft__prep_cmd_sock(struct io_uring_sqe *sqe, uint32_t cmd_op, int fd, int level,
                                       int optname, void *optval, int optlen)
{
    weft__prep_rw(sqe, IORING_OP_URING_CMD, fd, NULL, 0, 0);
    sqe->cmd_op = cmd_op;
    weft__sqe_put_u32(sqe, WEFT__SQE_LEVEL_OFFSET, (uint32_t)level);     /* sqe->level */
    weft__sqe_put_u32(sqe, WEFT__SQE_OPTNAME_OFFSET, (uint32_t)optname); /* sqe->optname */
    sqe->file_index = (uint32_t)optlen;                                  /* sqe->optlen */
    sqe->addr3 = (uint64_t)(uintptr_t)optval;                            /* sqe->optval */
}

/* getsockopt through URING_CMD: only level SOL_SOCKET (else -EOPNOTSUPP).
 * optlen is the size of *optval.
 * CQE: res = the length of the value written to optval, or -errno. */
static inline void weft__prep_getsockopt(struct io_uring_sqe *sqe, int fd, int level, int optname,
                                         void *optval, int optlen)
{
    weft__prep_cmd_sock(sqe, WEFT__SOCKET_URING_OP_GETSOCKOPT, fd, level, optname, optval, optlen);
}

/* setsockopt through URING_CMD: any level.
 * CQE: res = 0 or -errno. */
static inline void weft__prep_setsockopt(struct io_uring_sqe *sqe, int fd, int level, int optname,
                                         const void *optval, int optlen)
{
    weft__prep_cmd_sock(sqe, WEFT__SOCKET_URING_OP_SETSOCKOPT, fd, level, optname, NULL, optlen);
    sqe->addr3 = (uint64_t)(uintptr_t)optval; /* sqe->optval, read-only here */
}

#endif
