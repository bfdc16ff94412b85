/* The shape of every typed wrapper (internal): checks, one SQE, the wait.
 *
 *     ssize_t weft_read(int fd, void *buf, size_t n, uint64_t off)
 *     {
 *         IO_BEGIN(IORING_OP_READ);
 *         io_uring_prep_read(sqe, 0, buf, (unsigned)n, off);
 *         IO_FD(fd);
 *         return IO_WAIT();
 *     }
 *
 * IO_FD goes after the prep (liburing's preps clear sqe->flags).
 */
#ifndef WEFT_IO_OP_MACROS_H
#define WEFT_IO_OP_MACROS_H

#include "io/uapi.h"
#include "ring/op.h"

#define IO_BEGIN(opcode)                                                                           \
    weft__io io_;                                                                                  \
    int io_err_;                                                                                   \
    struct io_uring_sqe *sqe = weft__io_begin(&io_, (opcode), &io_err_);                           \
    if (!sqe)                                                                                      \
    return io_err_

/* liburing 2.3's *_direct preps store file_index + 1 (slot 0 is encoded as
 * 1), so "let the kernel pick" (IORING_FILE_INDEX_ALLOC, all ones) must be
 * passed as one less, or it wraps to 0: no direct slot at all. */
#define WEFT__FILE_INDEX_ALLOC (IORING_FILE_INDEX_ALLOC - 1)

/* The op's result belongs to this ring, e.g. a slot of its file table: the
 * task stays on this worker until it has taken it (see weft__io). */
#define IO_RESULT_BOUND() (io_.result_bound = true)

/* The most one read, write, send or splice moves (the kernel's
 * MAX_RW_COUNT). A longer request becomes a short one, as read(2) makes it;
 * the SQE's 32-bit length would otherwise keep only the low bits, and 4 GiB
 * would read nothing and look like the end of the file. */
#define WEFT__RW_MAX 0x7ffff000u
static inline unsigned weft__rw_len(size_t n)
{
    return n > WEFT__RW_MAX ? WEFT__RW_MAX : (unsigned)n;
}

/* Registered buffer indexes are 16 bits in the SQE, and no ring has more
 * than 16384 buffers: a larger index would alias slot index % 65536. */
#define IO_CHECK_BUF_INDEX(i)                                                                      \
    do {                                                                                           \
        if ((i) > UINT16_MAX)                                                                      \
            return -EINVAL;                                                                        \
    } while (0)

#define IO_FD(fd)   weft__sqe_fd(sqe, (fd))
#define IO_WAIT()   weft__io_wait(&io_)
#define IO_CFLAGS() (io_.cflags)

#endif
