/* Telling valgrind's memcheck what the kernel wrote (internal).
 *
 * io_uring fills a read's buffer while the kernel works through the ring,
 * outside any system call memcheck follows: data read into a heap buffer
 * would look never written, and every branch on it would be reported. So
 * each op that hands the kernel a buffer to fill marks, on completion, the
 * bytes its result says were written. Outside valgrind each mark is a few
 * instructions that do nothing; without valgrind's headers, nothing. Raw
 * ops (weft_batch, weft_uring_op) are the caller's to mark. */
#ifndef WEFT_COMMON_MEMCHECK_H
#define WEFT_COMMON_MEMCHECK_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define WEFT__HAVE_MEMCHECK 1
#endif

static inline void weft__written(const void *p, size_t n)
{
#ifdef WEFT__HAVE_MEMCHECK
    if (p && n)
        (void)VALGRIND_MAKE_MEM_DEFINED(p, n);
#else
    (void)p;
    (void)n;
#endif
}

/* The first n bytes across iov[0..cnt). */
static inline void weft__written_iov(const struct iovec *iov, size_t cnt, size_t n)
{
    for (size_t i = 0; i < cnt && n; i++) {
        size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
        weft__written(iov[i].iov_base, k);
        n -= k;
    }
}

/* An address the kernel wrote with its length: it writes at most the room
 * there was (room) and sets the length to the address's whole size. */
static inline void weft__written_addr(const void *addr, socklen_t room, socklen_t len)
{
    weft__written(addr, len < room ? len : room);
}

#endif
