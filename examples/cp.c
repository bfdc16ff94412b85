/* cp.c - copy a file with registered buffers and linked read->write pairs.
 *
 * What it shows:
 *  - registered ("fixed") buffers: four 128 KiB buffers registered once
 *    with weft_buffers_register, so the kernel does not pin and unpin pages
 *    for every read and write;
 *  - linked ops: each chunk is one weft_batch(..., WEFT_BATCH_CHAIN) of a
 *    READ_FIXED and a WRITE_FIXED prepared with liburing's helpers; the
 *    kernel starts the write as soon as the read is done, with no trip
 *    back to the task in between;
 *  - parallelism with tasks: four copier tasks, each owning one buffer, take
 *    chunks from a shared cursor, so four chains are in flight at once;
 *  - handling what a chain can return: a short read breaks the link (the
 *    write comes back -ECANCELED) and the bytes that were read are written
 *    on their own; a short write is finished the same way;
 *  - a clean stop: SIGINT/SIGTERM cancel the copy job (and with it every
 *    copier and the ops they have in flight), and a partial DST that the
 *    copy created is removed.
 *
 * usage: weft_cp SRC DST
 *   Copies the regular file SRC to DST (or into DST/ when DST is a
 *   directory) and fsyncs it. As with cp(1), a new DST gets the permission
 *   bits of SRC less the umask (never set-user-ID, set-group-ID or sticky),
 *   and an existing DST keeps its mode and owner and is overwritten in
 *   place: a failed copy removes a DST it created, and leaves an existing
 *   one partly overwritten. Exits 0 on success, 1 after an error
 *   ("weft_cp: <path>: <reason>"), 128 + the signal number when
 *   interrupted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <liburing.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <weft.h>

#define COPIERS      4            /* tasks, each with one registered buffer */
#define BUFFER_BYTES (128 * 1024) /* one chunk */

typedef struct copy {
    const char *src_path, *dst_path;
    int src, dst;
    uint64_t size; /* SRC's size when the copy started */
    uint64_t next; /* the next chunk to hand out (copiers are STICKY on one worker: no lock) */
    uint64_t end;  /* where SRC ended: size, or less if it shrank meanwhile */
    char *buffers[COPIERS];
    unsigned first_slot; /* buffers[i] is registered buffer first_slot + i */
    bool dst_created;    /* DST did not exist: a failed copy removes it */
    int err;             /* the first error (-errno), 0 if none */
    const char *err_path;
    const char *err_text; /* what to print instead of strerror(-err) */
} copy;

typedef struct copier {
    copy *c;
    unsigned index; /* which buffer this copier owns */
} copier;

/* Records the first error, naming the file it concerns. */
static int fail(copy *c, const char *path, int err)
{
    if (!c->err) {
        c->err = err;
        c->err_path = path;
    }
    return err;
}

/* The same for errors that have no errno of their own. */
static int fail_text(copy *c, const char *path, const char *text)
{
    if (!c->err)
        c->err_text = text;
    return fail(c, path, -EINVAL);
}

/* Writes buf[0..n) at off with WRITE_FIXED until all of it is written. */
static int write_rest(copy *c, const copier *w, const char *buf, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = weft_write_fixed(c->dst, buf, n, off, c->first_slot + w->index);
        if (r < 0)
            return r == -ECANCELED ? (int)r : fail(c, c->dst_path, (int)r);
        if (r == 0)
            return fail(c, c->dst_path, -EIO);
        buf += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Copies [off, off + len) through this copier's buffer: one linked
 * read -> write chain, plus a plain write when the read came up short. */
static int copy_chunk(copy *c, const copier *w, uint64_t off, size_t len)
{
    char *buf = c->buffers[w->index];
    int slot = (int)(c->first_slot + w->index);
    while (len > 0) {
        struct io_uring_sqe sqes[2];
        memset(sqes, 0, sizeof sqes);
        io_uring_prep_read_fixed(&sqes[0], c->src, buf, (unsigned)len, off, slot);
        io_uring_prep_write_fixed(&sqes[1], c->dst, buf, (unsigned)len, off, slot);
        int res[2];
        int r = weft_batch(sqes, res, 2, WEFT_BATCH_CHAIN);
        if (r == -EAGAIN && (r = weft_yield()) == 0)
            continue; /* no room on the ring this time */
        if (r < 0)
            return r == -ECANCELED ? r : fail(c, c->src_path, r);
        if (res[0] < 0)
            return fail(c, c->src_path, res[0]);
        if (res[0] == 0) {
            /* SRC ends here: it shrank since we looked at its size, or
             * said none (see copy_file). */
            if (off < c->end)
                c->end = off;
            return 0;
        }
        size_t got = (size_t)res[0];
        if (res[1] != res[0]) {
            /* A short read cancels the linked write (-ECANCELED); a short
             * write stops part way. Either way, write what is missing. */
            if (res[1] < 0 && res[1] != -ECANCELED)
                return fail(c, c->dst_path, res[1]);
            size_t written = res[1] > 0 ? (size_t)res[1] : 0;
            if ((r = write_rest(c, w, buf + written, got - written, off + written)) < 0)
                return r;
        }
        off += got;
        len -= got;
    }
    return 0;
}

static void *copier_task(void *arg)
{
    copier *w = arg;
    copy *c = w->c;
    while (!c->err && c->next < c->end) {
        uint64_t off = c->next;
        size_t len = c->end - off < BUFFER_BYTES ? (size_t)(c->end - off) : BUFFER_BYTES;
        c->next += len;
        if (copy_chunk(c, w, off, len) < 0)
            break;
    }
    return NULL;
}

/* Gives DST its final length and makes it durable. */
static int finish_dst(copy *c)
{
    if (c->end < c->size && ftruncate(c->dst, (off_t)c->end) < 0)
        return fail(c, c->dst_path, -errno);
    int r = weft_fsync(c->dst, 0);
    return r < 0 ? fail(c, c->dst_path, r) : 0;
}

/* The copy job: the copiers are its children, so cancelling it cancels
 * them (and their ops in flight) and waits for them; that is also why they
 * may use the copiers array on this task's stack. */
static void *copy_job(void *arg)
{
    copy *c = arg;
    copier copiers[COPIERS];
    for (unsigned i = 0; i < COPIERS; i++) {
        copiers[i] = (copier){c, i};
        /* STICKY: the copiers share the job's counters without a lock, so
         * they must all stay on this worker (with several workers a
         * hand-over would otherwise put them on different threads). */
        weft_spawn_opts o = {.flags = WEFT_TASK_STICKY, .name = "copier"};
        int r = weft_spawn_ex(NULL, &o, copier_task, &copiers[i]);
        if (r < 0) {
            fail(c, c->dst_path, r);
            break;
        }
    }
    weft_wait_children();
    /* Finished here, while the signal watcher still watches: a signal
     * during the final fsync stops the copy too (the fsync runs to its
     * end, and the job's join then says it was cancelled). */
    if (c->err == 0 && !weft_cancelled())
        finish_dst(c);
    return NULL;
}

/* ---- set-up, signals, finishing ------------------------------------------ */

typedef struct app {
    const char *src_path, *dst_arg;
    int signal_fd;
    weft_task *job; /* NULL once joined */
    int signo;      /* the signal that stopped us, 0 if none */
} app;

static void *watch_signals(void *arg)
{
    app *a = arg;
    struct signalfd_siginfo si;
    if (weft_read(a->signal_fd, &si, sizeof si, WEFT_OFF_CURRENT) == (ssize_t)sizeof si) {
        a->signo = (int)si.ssi_signo;
        if (a->job)
            weft_cancel(a->job);
    }
    return NULL;
}

/* Registers the buffers; returns the first slot or -errno. */
static int buffers_setup(copy *c)
{
    struct iovec iov[COPIERS];
    for (unsigned i = 0; i < COPIERS; i++) {
        c->buffers[i] = aligned_alloc(4096, BUFFER_BYTES);
        if (!c->buffers[i])
            return -ENOMEM;
        iov[i] = (struct iovec){c->buffers[i], BUFFER_BYTES};
    }
    return weft_buffers_register(iov, COPIERS);
}

/* Runs the copy job with a signal watcher beside it. Returns 0, -ECANCELED
 * (stopped by a signal) or the job's first error (in c->err). */
static int run_copy(app *a, copy *c)
{
    weft_task *watcher;
    int r = weft_spawn(&a->job, copy_job, c);
    if (r < 0)
        return fail(c, c->dst_path, r);
    if ((r = weft_spawn(&watcher, watch_signals, a)) < 0) {
        weft_cancel(a->job);
        fail(c, c->dst_path, r);
    }
    int joined = weft_join(a->job, NULL);
    a->job = NULL;
    if (r == 0) {
        weft_cancel(watcher);
        weft_join(watcher, NULL);
    }
    return joined == -ECANCELED ? -ECANCELED : c->err;
}

/* Opens DST (DST/basename(SRC) when DST is a directory) for writing. */
static int open_dst(copy *c, const struct statx *src, char *path, size_t path_size)
{
    struct statx st;
    int r = weft_statx(AT_FDCWD, c->dst_path, 0, STATX_TYPE | STATX_INO, &st);
    if (r == 0 && S_ISDIR(st.stx_mode)) {
        char base[PATH_MAX];
        snprintf(base, sizeof base, "%s", c->src_path);
        if (snprintf(path, path_size, "%s/%s", c->dst_path, basename(base)) >= (int)path_size)
            return fail(c, c->dst_path, -ENAMETOOLONG);
        c->dst_path = path;
        r = weft_statx(AT_FDCWD, c->dst_path, 0, STATX_TYPE | STATX_INO, &st);
    }
    if (r == 0 && !S_ISREG(st.stx_mode))
        return fail_text(c, c->dst_path,
                         S_ISDIR(st.stx_mode) ? "Is a directory" : "not a regular file");
    if (r == 0 && st.stx_ino == src->stx_ino && st.stx_dev_major == src->stx_dev_major &&
        st.stx_dev_minor == src->stx_dev_minor)
        return fail_text(c, c->dst_path, "the same file as the source");
    /* As cp(1) does: a new DST gets SRC's permission bits, less the umask
     * (which open applies) and less set-user-ID, set-group-ID and sticky;
     * an existing one keeps its mode and owner and is overwritten in place.
     * Only a DST made here is removed when the copy fails: an existing
     * file, perhaps someone else's, is never deleted. */
    c->dst = weft_openat(AT_FDCWD, c->dst_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                         src->stx_mode & 0777);
    if (c->dst >= 0)
        c->dst_created = true;
    else if (c->dst == -EEXIST)
        c->dst = weft_openat(AT_FDCWD, c->dst_path, O_WRONLY | O_TRUNC | O_CLOEXEC, 0);
    if (c->dst < 0)
        return fail(c, c->dst_path, c->dst);
    return 0;
}

/* Everything from opening SRC to the fsync of DST. Returns 0, -ECANCELED
 * when stopped by a signal, or the first error (recorded in c). */
static int copy_file(app *a, copy *c, char *dst_path, size_t dst_path_size)
{
    c->src = weft_openat(AT_FDCWD, c->src_path, O_RDONLY | O_CLOEXEC, 0);
    if (c->src < 0)
        return fail(c, c->src_path, c->src);
    struct statx st;
    int r = weft_statx(c->src, "", AT_EMPTY_PATH, STATX_TYPE | STATX_MODE | STATX_SIZE | STATX_INO,
                       &st);
    if (r < 0)
        return fail(c, c->src_path, r);
    if (!S_ISREG(st.stx_mode))
        return fail_text(c, c->src_path,
                         S_ISDIR(st.stx_mode) ? "Is a directory" : "not a regular file");
    /* The size is a hint: files in /proc say 0 and have content. Then the
     * copy reads until a read finds the end (copy_chunk). */
    c->size = st.stx_size;
    c->end = st.stx_size ? st.stx_size : UINT64_MAX;
    if ((r = open_dst(c, &st, dst_path, dst_path_size)) < 0)
        return r;
    if ((r = buffers_setup(c)) < 0)
        return fail_text(c, "registering buffers", strerror(-r));
    c->first_slot = (unsigned)r;
    r = run_copy(a, c);
    weft_buffers_unregister(c->first_slot, COPIERS);
    return r;
}

static void *app_main(void *arg)
{
    app *a = arg;
    char dst_path[PATH_MAX];
    copy c = {.src_path = a->src_path, .dst_path = a->dst_arg, .src = -1, .dst = -1};
    int r = copy_file(a, &c, dst_path, sizeof dst_path);
    int status = 0;
    if (r == -ECANCELED && a->signo) {
        fprintf(stderr, "weft_cp: %s%s\n", strsignal(a->signo),
                c.dst_created ? ", partial copy removed"
                : c.dst >= 0  ? ", the existing DST is left partly overwritten"
                              : "");
        status = 128 + a->signo;
    } else if (r < 0) {
        fprintf(stderr, "weft_cp: %s: %s\n", c.err_path,
                c.err_text ? c.err_text : strerror(-c.err));
        status = 1;
    }
    if (c.dst >= 0)
        weft_close(c.dst);
    if (status != 0 && c.dst_created)
        weft_unlinkat(AT_FDCWD, c.dst_path, 0);
    if (c.src >= 0)
        weft_close(c.src);
    for (unsigned i = 0; i < COPIERS; i++)
        free(c.buffers[i]);
    return (void *)(intptr_t)status;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: weft_cp SRC DST\n");
        return 2;
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    app a = {
        .src_path = argv[1], .dst_arg = argv[2], .signal_fd = signalfd(-1, &stop, SFD_CLOEXEC)};
    if (a.signal_fd < 0) {
        perror("weft_cp: signalfd");
        return 1;
    }
    void *status = NULL;
    int r = weft_run(NULL, app_main, &a, &status);
    close(a.signal_fd);
    if (r < 0) {
        fprintf(stderr, "weft_cp: weft_run: %s\n", weft_strerror(r));
        return 1;
    }
    return (int)(intptr_t)status;
}
