/* Typed wrappers: files, paths, pipes, splice; see weft/io.h. */
#include <errno.h>
#include <linux/stat.h>
#include <unistd.h>
#include <weft/io.h>

#include "common/memcheck.h"
#include "io/op_macros.h"
#include "ring/resource.h"
#include "runtime/worker.h"

int weft_openat(int dfd, const char *path, int flags, mode_t mode)
{
    if (((unsigned)flags & WEFT_DIRECT) && weft__direct_table_check() < 0)
        return -ENXIO;
    IO_BEGIN(IORING_OP_OPENAT);
    if ((unsigned)flags & WEFT_DIRECT) {
        /* A direct descriptor is in no fd table, so exec cannot inherit it:
         * the kernel refuses O_CLOEXEC for it, and it is dropped rather
         * than failing (as weft_accept drops SOCK_CLOEXEC). */
        io_uring_prep_openat_direct(sqe, dfd, path, flags & ~(int)(WEFT_DIRECT | O_CLOEXEC), mode,
                                    WEFT__FILE_INDEX_ALLOC);
        IO_RESULT_BOUND();
        return weft__direct_adopt(IO_WAIT());
    }
    io_uring_prep_openat(sqe, dfd, path, flags, mode);
    return IO_WAIT();
}

int weft_openat2(int dfd, const char *path, struct open_how *how)
{
    if (!how)
        return -EFAULT;
    bool direct = how->flags & WEFT_DIRECT;
    if (direct && weft__direct_table_check() < 0)
        return -ENXIO;
    struct open_how h = *how; /* the kernel reads it at submission: copy lives on this stack */
    h.flags &= ~(uint64_t)WEFT_DIRECT;
    if (direct)
        h.flags &= ~(uint64_t)O_CLOEXEC; /* as in weft_openat */
    IO_BEGIN(IORING_OP_OPENAT2);
    if (direct) {
        io_uring_prep_openat2_direct(sqe, dfd, path, &h, WEFT__FILE_INDEX_ALLOC);
        IO_RESULT_BOUND();
        return weft__direct_adopt(IO_WAIT());
    }
    io_uring_prep_openat2(sqe, dfd, path, &h);
    return IO_WAIT();
}

/* weft_close when no SQE can be had (a full SQ whose submits keep failing):
 * it must close all the same, without the ring. A direct descriptor's slot
 * is emptied by a files update, a system call of its own, which cannot
 * tell an empty slot: that gives 0 here where the op would give -EBADF.
 * Synchronous, so no other task can take the slot before it is forgotten;
 * a failed update leaves the slot with its holder. */
static int close_without_sqe(int fd)
{
    if (weft_is_direct(fd)) {
        weft__worker *w = weft__worker_self();
        int at = weft__direct_slot(&w->ring, fd);
        if (at < 0)
            return -EBADF;
        int none = -1;
        int r = io_uring_register_files_update(&w->ring.uring, (unsigned)at, &none, 1);
        if (r < 0)
            return r;
        weft__direct_forget(w, (unsigned)at);
        return 0;
    }
    /* Linux frees the descriptor even when close(2) reports EINTR. */
    return close(fd) == 0 || errno == EINTR ? 0 : -errno;
}

int weft_close(int fd)
{
    weft__io io_;
    int io_err_;
    struct io_uring_sqe *sqe = weft__io_begin(&io_, IORING_OP_CLOSE, &io_err_);
    if (!sqe)
        return io_err_ == -EAGAIN ? close_without_sqe(fd) : io_err_;
    if (weft_is_direct(fd)) {
        weft__worker *w = weft__worker_self();
        int at = weft__direct_slot(&w->ring, fd);
        if (at < 0) {
            /* Another ring's: nothing here is closed, and the kernel
             * answers -EBADF for the SQE already taken. */
            io_uring_prep_close(sqe, -1);
            return IO_WAIT();
        }
        unsigned slot = (unsigned)at;
        /* The slot is nobody's from now on: once the kernel has emptied it,
         * it may hand it to another task of this worker, which may run
         * before this one does again, and adopt it. */
        weft__direct_forget(w, slot);
        io_uring_prep_close_direct(sqe, slot);
        /* The table entry to update is this ring's: stay here until then. */
        IO_RESULT_BOUND();
        int r = IO_WAIT();
        /* Cancelled before it ran: the descriptor is still there, and this
         * task holds it (its end closes it if nothing else does). */
        if ((r == -ECANCELED || r == -ETIMEDOUT) && slot < w->ring.direct_slots &&
            !w->direct_owner[slot])
            weft__direct_adopt((int)slot);
        return r;
    }
    io_uring_prep_close(sqe, fd);
    return IO_WAIT();
}

ssize_t weft_read(int fd, void *buf, size_t n, uint64_t off)
{
    IO_BEGIN(IORING_OP_READ);
    io_uring_prep_read(sqe, 0, buf, weft__rw_len(n), off);
    IO_FD(fd);
    int r = IO_WAIT();
    if (r > 0)
        weft__written(buf, (size_t)r);
    return r;
}

ssize_t weft_write(int fd, const void *buf, size_t n, uint64_t off)
{
    IO_BEGIN(IORING_OP_WRITE);
    io_uring_prep_write(sqe, 0, buf, weft__rw_len(n), off);
    IO_FD(fd);
    return IO_WAIT();
}

ssize_t weft_readv(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    IO_BEGIN(IORING_OP_READV);
    io_uring_prep_readv(sqe, 0, iov, (unsigned)iovcnt, off);
    IO_FD(fd);
    int r = IO_WAIT();
    if (r > 0)
        weft__written_iov(iov, (size_t)iovcnt, (size_t)r);
    return r;
}

ssize_t weft_writev(int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    IO_BEGIN(IORING_OP_WRITEV);
    io_uring_prep_writev(sqe, 0, iov, (unsigned)iovcnt, off);
    IO_FD(fd);
    return IO_WAIT();
}

ssize_t weft_read_fixed(int fd, void *buf, size_t n, uint64_t off, unsigned buf_index)
{
    IO_CHECK_BUF_INDEX(buf_index);
    IO_BEGIN(IORING_OP_READ_FIXED);
    io_uring_prep_read_fixed(sqe, 0, buf, weft__rw_len(n), off, (int)buf_index);
    IO_FD(fd);
    int r = IO_WAIT();
    if (r > 0)
        weft__written(buf, (size_t)r);
    return r;
}

ssize_t weft_write_fixed(int fd, const void *buf, size_t n, uint64_t off, unsigned buf_index)
{
    IO_CHECK_BUF_INDEX(buf_index);
    IO_BEGIN(IORING_OP_WRITE_FIXED);
    io_uring_prep_write_fixed(sqe, 0, buf, weft__rw_len(n), off, (int)buf_index);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_fsync(int fd, unsigned flags)
{
    IO_BEGIN(IORING_OP_FSYNC);
    io_uring_prep_fsync(sqe, 0, flags);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_sync_file_range(int fd, uint64_t off, uint32_t len, unsigned flags)
{
    IO_BEGIN(IORING_OP_SYNC_FILE_RANGE);
    io_uring_prep_sync_file_range(sqe, 0, len, off, (int)flags);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_fallocate(int fd, int mode, uint64_t off, uint64_t len)
{
    IO_BEGIN(IORING_OP_FALLOCATE);
    io_uring_prep_fallocate(sqe, 0, mode, off, len);
    IO_FD(fd);
    return IO_WAIT();
}

int weft_fadvise(int fd, uint64_t off, uint64_t len, int advice)
{
    IO_BEGIN(IORING_OP_FADVISE);
    io_uring_prep_fadvise(sqe, 0, off, (off_t)len, advice);
    /* As for weft_madvise below, with the whole length in `addr`. */
    if (len > UINT32_MAX) {
        sqe->len = 0;
        sqe->addr = len;
    }
    IO_FD(fd);
    return IO_WAIT();
}

int weft_madvise(void *addr, size_t len, int advice)
{
    IO_BEGIN(IORING_OP_MADVISE);
    io_uring_prep_madvise(sqe, addr, (off_t)len, advice);
    /* The 32-bit length field would keep the low bits of a larger one:
     * newer kernels (6.18 here, tests/test_ops.c) take the whole length
     * in `off`, and an older one refuses a nonzero `off` with -EINVAL,
     * which beats advising a fraction of the range. */
    if (len > UINT32_MAX) {
        sqe->len = 0;
        sqe->off = len;
    }
    return IO_WAIT();
}

int weft_statx(int dfd, const char *path, int flags, unsigned mask, struct statx *out)
{
    IO_BEGIN(IORING_OP_STATX);
    io_uring_prep_statx(sqe, dfd, path, flags, mask, out);
    int r = IO_WAIT();
    if (r == 0)
        weft__written(out, sizeof *out);
    return r;
}

int weft_renameat(int olddfd, const char *oldpath, int newdfd, const char *newpath, unsigned flags)
{
    IO_BEGIN(IORING_OP_RENAMEAT);
    io_uring_prep_renameat(sqe, olddfd, oldpath, newdfd, newpath, flags);
    return IO_WAIT();
}

int weft_unlinkat(int dfd, const char *path, int flags)
{
    IO_BEGIN(IORING_OP_UNLINKAT);
    io_uring_prep_unlinkat(sqe, dfd, path, flags);
    return IO_WAIT();
}

int weft_mkdirat(int dfd, const char *path, mode_t mode)
{
    IO_BEGIN(IORING_OP_MKDIRAT);
    io_uring_prep_mkdirat(sqe, dfd, path, mode);
    return IO_WAIT();
}

int weft_symlinkat(const char *target, int newdfd, const char *linkpath)
{
    IO_BEGIN(IORING_OP_SYMLINKAT);
    io_uring_prep_symlinkat(sqe, target, newdfd, linkpath);
    return IO_WAIT();
}

int weft_linkat(int olddfd, const char *oldpath, int newdfd, const char *newpath, int flags)
{
    IO_BEGIN(IORING_OP_LINKAT);
    io_uring_prep_linkat(sqe, olddfd, oldpath, newdfd, newpath, flags);
    return IO_WAIT();
}

int weft_setxattr(const char *path, const char *name, const void *value, size_t len, int flags)
{
    if (len > UINT32_MAX)
        return -E2BIG; /* as the kernel says for anything over 64 KiB */
    IO_BEGIN(IORING_OP_SETXATTR);
    io_uring_prep_setxattr(sqe, name, (const char *)value, path, flags, (unsigned)len);
    return IO_WAIT();
}

int weft_fsetxattr(int fd, const char *name, const void *value, size_t len, int flags)
{
    if (len > UINT32_MAX)
        return -E2BIG;
    IO_BEGIN(IORING_OP_FSETXATTR);
    io_uring_prep_fsetxattr(sqe, 0, name, (const char *)value, flags, (unsigned)len);
    IO_FD(fd);
    return IO_WAIT();
}

ssize_t weft_getxattr(const char *path, const char *name, void *value, size_t len)
{
    IO_BEGIN(IORING_OP_GETXATTR);
    /* No value is longer than 64 KiB: a larger buffer is as good as that. */
    io_uring_prep_getxattr(sqe, name, (char *)value, path,
                           len > UINT32_MAX ? UINT32_MAX : (unsigned)len);
    int r = IO_WAIT();
    if (r > 0 && len)
        weft__written(value, (size_t)r);
    return r;
}

ssize_t weft_fgetxattr(int fd, const char *name, void *value, size_t len)
{
    IO_BEGIN(IORING_OP_FGETXATTR);
    io_uring_prep_fgetxattr(sqe, 0, name, (char *)value,
                            len > UINT32_MAX ? UINT32_MAX : (unsigned)len);
    IO_FD(fd);
    int r = IO_WAIT();
    if (r > 0 && len)
        weft__written(value, (size_t)r);
    return r;
}

/* splice and tee: the input side takes the fixed-file flag in the SQE's
 * splice_flags (SPLICE_F_FD_IN_FIXED), the output side in sqe->flags. */
static void splice_fds(struct io_uring_sqe *sqe, int fd_in, int fd_out)
{
    if (weft_is_direct(fd_in)) {
        sqe->splice_fd_in = weft__direct_slot_here(fd_in);
        sqe->splice_flags |= SPLICE_F_FD_IN_FIXED;
    } else {
        sqe->splice_fd_in = fd_in;
    }
    weft__sqe_fd(sqe, fd_out);
}

ssize_t weft_splice(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t n,
                    unsigned flags)
{
    IO_BEGIN(IORING_OP_SPLICE);
    io_uring_prep_splice(sqe, 0, off_in, 0, off_out, weft__rw_len(n), flags);
    splice_fds(sqe, fd_in, fd_out);
    return IO_WAIT();
}

ssize_t weft_tee(int fd_in, int fd_out, size_t n, unsigned flags)
{
    IO_BEGIN(IORING_OP_TEE);
    io_uring_prep_tee(sqe, 0, 0, weft__rw_len(n), flags);
    splice_fds(sqe, fd_in, fd_out);
    return IO_WAIT();
}
