/* Child processes: weft_process_*. See include/weft/process.h and
 * docs/blocking.md ("Child processes").
 *
 * The child is started with posix_spawn (glibc's uses CLONE_VFORK, so the
 * calling thread waits only until the exec) and is then held by a pidfd,
 * or by its pid where no pidfd can be had (see await_exit).
 * Every wait is the same loop: look with waitid(WNOWAIT | WNOHANG)
 * whether the child has exited, without reaping it; if not, wait for the
 * pidfd to become readable (it does at the exit), in a task with weft_poll
 * and elsewhere with poll(2); once it has, one waiter claims the reap
 * (state RUNNING -> REAPING), reaps with waitid, which cannot block then,
 * and publishes the status (EXITED). The claim is what lets several tasks
 * wait together: only one reaps, and the others read its status. Looking
 * before reaping keeps an interrupted wait from reaping anything, and
 * lets weft_process_stop kill the group while the exited child still
 * holds its id.
 *
 * Output (weft_process_output) reads both pipes from the calling task
 * through an epoll set it parks on; see collect_both.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft/io.h>
#include <weft/process.h>

#include "common/saturate.h"
#include "common/fault.h"
#include "task/task.h"

extern char **environ;

enum { PROC_RUNNING, PROC_REAPING, PROC_EXITED, PROC_LOST };

struct weft_process {
    pid_t pid;
    int pidfd;
    int fds[3]; /* the parent's pipe ends, -1 when none */
    bool group;
    /* weft_process_output read this stream's pipe to its end and closed
     * it: later calls give "" for it, not NULL. */
    bool drained[3];
    uint64_t wait_delay_ns; /* weft_process_opts' */
    size_t output_limit;    /* weft_process_opts' */
    _Atomic int state;
    int wstatus; /* written before state becomes PROC_EXITED */
};

static int sys_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int sys_pidfd_send_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* waitpid's status word from waitid's siginfo. */
static int wait_status(const siginfo_t *si)
{
    switch (si->si_code) {
    case CLD_EXITED:
        return (si->si_status & 0xff) << 8;
    case CLD_DUMPED:
        return (si->si_status & 0x7f) | 0x80;
    default: /* CLD_KILLED */
        return si->si_status & 0x7f;
    }
}

/* Checks a spawn's stdio options; see weft_process_opts.fd. */
static int check_opts(const weft_process_opts *o)
{
    for (int i = 0; i < 3; i++) {
        if ((unsigned)o->stdio[i] > WEFT_STDIO_FD)
            return -EINVAL;
        if (o->stdio[i] != WEFT_STDIO_FD)
            continue;
        int fd = o->fd[i];
        if (fd < 0)
            return -EBADF;
        /* Descriptor fd of the child is replaced before stream i is set
         * up (unless it is fd itself, duplicated onto itself). */
        if (fd < i && o->stdio[fd] != WEFT_STDIO_INHERIT &&
            !(o->stdio[fd] == WEFT_STDIO_FD && o->fd[fd] == fd))
            return -EINVAL;
    }
    return 0;
}

static void close_if_open(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Moves *fd to a number above 2. A program that closed its standard
 * descriptors gets them back from pipe2: the child's end of a pipe could
 * then be a stream that an earlier file action replaces. */
static int above_std(int *fd)
{
    if (*fd > 2)
        return 0;
    int moved = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (moved < 0)
        return -errno;
    close(*fd);
    *fd = moved;
    return 0;
}

/* The file actions that put each stream in place in the child. child_end
 * holds the child's ends of the pipes. */
static int build_actions(posix_spawn_file_actions_t *fa, const weft_process_opts *o,
                         const int child_end[3])
{
    for (int i = 0; i < 3; i++) {
        int e = 0;
        switch (o->stdio[i]) {
        case WEFT_STDIO_INHERIT:
            break;
        case WEFT_STDIO_PIPE:
            e = posix_spawn_file_actions_adddup2(fa, child_end[i], i);
            break;
        case WEFT_STDIO_NULL:
            e = posix_spawn_file_actions_addopen(fa, i, "/dev/null", i ? O_WRONLY : O_RDONLY, 0);
            break;
        case WEFT_STDIO_FD:
            /* glibc clears O_CLOEXEC when the two are the same descriptor. */
            e = posix_spawn_file_actions_adddup2(fa, o->fd[i], i);
            break;
        }
        if (e)
            return -e;
    }
    if (o->cwd) {
        int e = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
        if (e)
            return -e;
    }
    return 0;
}

static int build_attr(posix_spawnattr_t *attr, const weft_process_opts *o)
{
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (o->new_session)
        flags |= POSIX_SPAWN_SETSID; /* a group of its own too */
    else if (o->new_process_group)
        flags |= POSIX_SPAWN_SETPGROUP;
    int e = posix_spawnattr_setsigmask(attr, &none);
    if (!e)
        e = posix_spawnattr_setsigdefault(attr, &def);
    if (!e && o->new_process_group && !o->new_session)
        e = posix_spawnattr_setpgroup(attr, 0);
    if (!e)
        e = posix_spawnattr_setflags(attr, flags);
    return -e;
}

/* Starts the child; fills p->pid and the parent's pipe ends. */
static int start_child(weft_process *p, const char *file, char *const argv[],
                       const weft_process_opts *o)
{
    int child_end[3] = {-1, -1, -1};
    int r = 0;
    for (int i = 0; i < 3 && !r; i++) {
        if (o->stdio[i] != WEFT_STDIO_PIPE)
            continue;
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) {
            r = -errno;
            break;
        }
        /* stdin: the child reads fds[0]; stdout, stderr: it writes fds[1]. */
        child_end[i] = i == WEFT_STDIN ? fds[0] : fds[1];
        p->fds[i] = i == WEFT_STDIN ? fds[1] : fds[0];
        r = above_std(&child_end[i]);
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool have_fa = false, have_attr = false;
    if (!r) {
        r = -posix_spawn_file_actions_init(&fa);
        have_fa = r == 0;
    }
    if (!r) {
        r = -posix_spawnattr_init(&attr);
        have_attr = r == 0;
    }
    if (!r)
        r = build_actions(&fa, o, child_end);
    if (!r)
        r = build_attr(&attr, o);
    if (!r && weft__fault_hit(WEFT_FAULT_ALLOC))
        r = -ENOMEM; /* stands for posix_spawn's own allocation failing */
    if (!r) {
        char *const *envp = o->envp ? o->envp : environ;
        r = -(o->search_path ? posix_spawnp(&p->pid, file, &fa, &attr, argv, envp)
                             : posix_spawn(&p->pid, file, &fa, &attr, argv, envp));
    }
    if (have_fa)
        posix_spawn_file_actions_destroy(&fa);
    if (have_attr)
        posix_spawnattr_destroy(&attr);
    for (int i = 0; i < 3; i++) {
        close_if_open(&child_end[i]);
        if (r)
            close_if_open(&p->fds[i]);
    }
    return r;
}

int weft_process_spawn(weft_process **out, const char *file, char *const argv[],
                       const weft_process_opts *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!file || !argv || !argv[0])
        return -EINVAL;
    static const weft_process_opts defaults;
    const weft_process_opts *o = opts ? opts : &defaults;
    int r = check_opts(o);
    if (r)
        return r;
    weft_process *p = weft__calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->pidfd = -1;
    for (int i = 0; i < 3; i++)
        p->fds[i] = -1;
    p->group = o->new_process_group || o->new_session;
    p->wait_delay_ns = o->wait_delay_ns;
    p->output_limit = o->output_limit;
    atomic_init(&p->state, PROC_RUNNING);
    r = start_child(p, file, argv, o);
    if (r) {
        free(p);
        return r;
    }
    /* Nothing else may reap the child before this (see weft_process_wait's
     * -ECHILD), so the pid still names it here. Without a pidfd (valgrind
     * 3.19 does not know pidfd_open, Linux before 5.3 has none, or the
     * descriptors ran out), the child is held by its pid: it started, and
     * failing now would mean killing it and whatever it started. */
    p->pidfd = weft__fault_hit(WEFT_FAULT_PIDFD) ? -1 : sys_pidfd_open(p->pid);
    *out = p;
    return 0;
}

int weft_process_pid(const weft_process *p)
{
    return p ? p->pid : -EINVAL;
}

int weft_process_fd(const weft_process *p, int stream)
{
    if (!p || stream < 0 || stream > 2)
        return -EINVAL;
    return p->fds[stream] >= 0 ? p->fds[stream] : -EBADF;
}

int weft_process_take_fd(weft_process *p, int stream)
{
    int fd = weft_process_fd(p, stream);
    if (fd >= 0)
        p->fds[stream] = -1;
    return fd;
}

int weft_process_close_fd(weft_process *p, int stream)
{
    if (!p || stream < 0 || stream > 2)
        return -EINVAL;
    if (p->fds[stream] < 0)
        return -EBADF;
    close_if_open(&p->fds[stream]);
    return 0;
}

/* waitid(2) on the child, by its pidfd or else its pid: 0 or -errno. */
static int child_waitid(const weft_process *p, siginfo_t *si, int options)
{
    memset(si, 0, sizeof *si);
    int r;
    do
        r = p->pidfd >= 0 ? waitid(P_PIDFD, (id_t)p->pidfd, si, options)
                          : waitid(P_PID, (id_t)p->pid, si, options);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

/* Waits until the child has exited (without reaping it) or, in a task,
 * until the wait is interrupted. The pidfd becomes readable at the exit;
 * without one, a task looks again after naps that grow from 1 ms to
 * 32 ms (*nap), and a thread blocks in waitid with WNOWAIT. */
static int await_exit(weft_process *p, bool in_task, uint64_t *nap)
{
    if (p->pidfd >= 0 && in_task) {
        int r = weft_poll(p->pidfd, POLLIN);
        return r < 0 ? r : 0;
    }
    if (p->pidfd >= 0) {
        struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
        while (poll(&pfd, 1, -1) < 0) {
            if (errno != EINTR)
                return -errno;
        }
        return 0;
    }
    if (in_task) {
        int r = weft_sleep_ns(*nap);
        if (*nap < 32 * 1000000ull)
            *nap *= 2;
        return r;
    }
    siginfo_t si;
    return child_waitid(p, &si, WEXITED | WNOWAIT);
}

/* One look at the child, without reaping it: 0 when it has exited (a
 * zombie: its pid and group id still taken), -EAGAIN while it runs, 1
 * when weft reaped it or is reaping it, -ECHILD when something else did
 * (reaped behind weft's back, for good), or waitid's error. */
static int look(weft_process *p)
{
    for (;;) {
        int st = atomic_load_explicit(&p->state, memory_order_acquire);
        if (st == PROC_EXITED || st == PROC_REAPING)
            return 1;
        if (st == PROC_LOST)
            return -ECHILD;
        siginfo_t si;
        int r = child_waitid(p, &si, WEXITED | WNOHANG | WNOWAIT);
        if (r == -ECHILD) {
            /* While RUNNING: not weft's reap. Else another waiter's claim
             * came in between: look at the state again. */
            int expect = PROC_RUNNING;
            if (atomic_compare_exchange_strong(&p->state, &expect, PROC_LOST))
                return -ECHILD;
            continue;
        }
        if (r < 0)
            return r;
        return si.si_pid ? 0 : -EAGAIN;
    }
}

/* look, and with block, waits while the child runs: never -EAGAIN then. */
static int await_zombie(weft_process *p, bool block)
{
    bool in_task = weft__task_current() != NULL;
    uint64_t nap = 1000000; /* without a pidfd: 1 ms, then more */
    for (;;) {
        int r = look(p);
        if (r != -EAGAIN || !block)
            return r;
        r = await_exit(p, in_task, &nap);
        /* -ECHILD: another waiter reaped it meanwhile (a thread's
         * blocking waitid by pid sees that): look again. */
        if (r && r != -ECHILD)
            return r;
    }
}

/* Waits for the exit (block) or looks once, and reaps: one waiter claims
 * the reap, the others read the status it publishes. */
static int reap(weft_process *p, int *wstatus, bool block)
{
    for (;;) {
        int r = await_zombie(p, block);
        if (r == 1) {
            if (atomic_load_explicit(&p->state, memory_order_acquire) == PROC_EXITED) {
                if (wstatus)
                    *wstatus = p->wstatus;
                return 0;
            }
            /* Another waiter is between its waitid and its store: it does
             * not wait there, so this is short. */
            if (weft__task_current())
                (void)weft_yield();
            else
                sched_yield();
            continue;
        }
        if (r < 0)
            return r;
        int expect = PROC_RUNNING;
        if (!atomic_compare_exchange_strong(&p->state, &expect, PROC_REAPING))
            continue;
        siginfo_t si;
        r = child_waitid(p, &si, WEXITED);
        if (r < 0) {
            atomic_store_explicit(&p->state, PROC_LOST, memory_order_release);
            return r;
        }
        p->wstatus = wait_status(&si);
        atomic_store_explicit(&p->state, PROC_EXITED, memory_order_release);
    }
}

int weft_process_wait(weft_process *p, int *wstatus)
{
    if (!p)
        return -EINVAL;
    return reap(p, wstatus, true);
}

int weft_process_try_wait(weft_process *p, int *wstatus)
{
    if (!p)
        return -EINVAL;
    return reap(p, wstatus, false);
}

int weft_process_kill(weft_process *p, int sig)
{
    if (!p)
        return -EINVAL;
    int st = atomic_load_explicit(&p->state, memory_order_acquire);
    if (st == PROC_EXITED)
        return -ESRCH;
    if (p->pidfd >= 0)
        return sys_pidfd_send_signal(p->pidfd, sig) < 0 ? -errno : 0;
    /* By pid: it names the child only until the child is reaped. */
    if (st != PROC_RUNNING)
        return -ESRCH;
    return kill(p->pid, sig) < 0 ? -errno : 0;
}

int weft_process_kill_group(weft_process *p, int sig)
{
    if (!p || !p->group)
        return -EINVAL;
    return kill(-p->pid, sig) < 0 ? -errno : 0;
}

int weft_process_stop(weft_process *p, int sig, uint64_t grace_ns, int *wstatus)
{
    if (!p)
        return -EINVAL;
    if (!weft__task_current())
        return -EPERM;
    int st = atomic_load_explicit(&p->state, memory_order_acquire);
    if (st == PROC_EXITED || st == PROC_LOST)
        /* Reaped before: its group id may be another group's by now. */
        return weft_process_try_wait(p, wstatus);
    /* The grace is pushed before anything is sent: a push that fails
     * (-EOVERFLOW, -ENOMEM) has sent nothing. */
    uint64_t now = weft_now_ns();
    uint64_t grace_end = weft__add_sat(now, grace_ns);
    int r = weft_deadline_push(grace_end);
    if (r)
        return r;
    r = p->group ? weft_process_kill_group(p, sig) : weft_process_kill(p, sig);
    if (r && r != -ESRCH) {
        (void)weft_deadline_pop();
        return r; /* a bad signal, say: nothing sent */
    }
    r = await_zombie(p, true);
    (void)weft_deadline_pop();
    /* The grace's end, not an earlier deadline of the caller's. */
    if (r == -ETIMEDOUT && weft_now_ns() >= grace_end) {
        if (p->group)
            (void)weft_process_kill_group(p, SIGKILL);
        (void)weft_process_kill(p, SIGKILL);
        r = await_zombie(p, true);
    }
    if (r < 0)
        return r;
    /* What the child left in its group goes with it, while the unreaped
     * child still holds the group's id. */
    if (r == 0 && p->group)
        (void)weft_process_kill_group(p, SIGKILL);
    return weft_process_wait(p, wstatus);
}

/* ---- collecting output ----------------------------------------------------- */

/* One pipe read to its end into a growing buffer. */
typedef struct collector {
    int fd; /* -1: not a pipe, or read to its end */
    char *buf;
    size_t len, cap;
    size_t limit;   /* the most kept (output_limit); 0: no limit */
    bool truncated; /* bytes past the limit came, and were dropped */
} collector;

/* Makes room in c for a byte and the NUL (c->len is below any limit). */
static int grow(collector *c)
{
    if (c->cap - c->len >= 2)
        return 0;
    size_t cap = c->cap ? c->cap * 2 : 4096;
    if (c->limit && cap > c->limit + 1)
        cap = c->limit + 1; /* still >= len + 2: len < limit */
    char *b = weft__malloc(cap);
    if (!b)
        return -ENOMEM;
    if (c->len)
        memcpy(b, c->buf, c->len);
    free(c->buf);
    c->buf = b;
    c->cap = cap;
    return 0;
}

/* Reads what c's pipe holds: called when epoll says it is readable, so
 * the read does not block (this task is its only reader). 1 at its end. */
static ssize_t read_retrying(int fd, void *buf, size_t n)
{
    ssize_t r;
    do
        r = read(fd, buf, n);
    while (r < 0 && errno == EINTR);
    return r;
}

static int take(collector *c)
{
    ssize_t n;
    if (c->limit && c->len >= c->limit) {
        /* Full: the rest is read and dropped, so that the child is not
         * stalled on a full pipe. */
        char sink[4096];
        n = read_retrying(c->fd, sink, sizeof sink);
        if (n > 0)
            c->truncated = true;
    } else {
        int r = grow(c);
        if (r)
            return r;
        /* The buffer is no larger than the limit and the NUL: a read
         * fills it to the limit at most. */
        n = read_retrying(c->fd, c->buf + c->len, c->cap - c->len - 1);
        if (n > 0)
            c->len += (size_t)n;
    }
    if (n < 0)
        return errno == EAGAIN ? 0 : -errno; /* O_NONBLOCK set by the program */
    return n == 0;
}

/* One look at what epoll says is ready, without waiting: reads each ready
 * pipe once (a pipe at its end leaves the set: *open goes down). 0, 1
 * when the pidfd (event 2) was among them, or a read's error. */
static int take_ready(int ep, collector c[2], int *open)
{
    struct epoll_event ev[3];
    int n = epoll_wait(ep, ev, 3, 0);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int r = 0;
    bool exited = false;
    for (int k = 0; k < n && !r; k++) {
        if (ev[k].data.u32 == 2) {
            exited = true;
            continue;
        }
        collector *x = &c[ev[k].data.u32];
        r = take(x);
        if (r == 1) { /* its end: the fd stays open until the output is done */
            (void)epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
            x->fd = -1;
            (*open)--;
            r = 0;
        }
    }
    return r ? r : exited;
}

/* Reads both pipes to their ends at once, in this task: an epoll set holds
 * them, and the task parks on it with weft_poll (one op, whichever pipe
 * has something). No helper task: a spawn from a cancelled task, though
 * shielded, would be born cancelled, and a helper left running by an
 * interruption would write into this frame after the return. */
static int collect_both(weft_process *p, collector c[2], bool *held_open)
{
    *held_open = false;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    int r = 0, open = 0;
    for (int i = 0; i < 2 && !r; i++) {
        if (c[i].fd < 0)
            continue;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) < 0)
            r = -errno;
        open++;
    }
    /* With a wait delay the pidfd joins the set: from the child's exit,
     * the reading goes on for wait_delay_ns at most, under a deadline of
     * its own, which tells itself from the caller's by the time. */
    if (!r && open && p->wait_delay_ns && p->pidfd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 2};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, p->pidfd, &ev) < 0)
            r = -errno;
    }
    uint64_t stop_at = 0;
    bool pushed = false;
    while (!r && open) {
        r = weft_poll(ep, POLLIN);
        if (r < 0) {
            if (r == -ETIMEDOUT && pushed && weft_now_ns() >= stop_at) {
                /* Take what is in the pipes already (the poll looked at
                 * the deadline before the pipes); what holds them open
                 * may go on writing, so a bounded number of reads. */
                r = 0;
                for (int round = 0; round < 64 && !r && open; round++)
                    r = take_ready(ep, c, &open);
                if (r > 0)
                    r = 0;
                *held_open = open > 0;
            }
            break;
        }
        r = take_ready(ep, c, &open);
        if (r == 1) { /* the child has exited */
            (void)epoll_ctl(ep, EPOLL_CTL_DEL, p->pidfd, NULL);
            uint64_t now = weft_now_ns();
            stop_at = weft__add_sat(now, p->wait_delay_ns);
            /* A deadline that cannot be pushed (-EOVERFLOW: 16 levels
             * already) leaves the reading as without a delay. */
            pushed = weft_deadline_push(stop_at) == 0;
            r = 0;
        }
    }
    if (pushed)
        (void)weft_deadline_pop();
    close(ep);
    return r;
}

/* Hands what c read to *buf and *len, NUL-terminated. */
static void hand_over(collector *c, bool piped, char **buf, size_t *len)
{
    if (!piped)
        return;
    if (!c->buf)
        c->buf = weft__calloc(1, 1); /* NULL when memory is short: nothing read */
    else
        c->buf[c->len] = '\0';
    *buf = c->buf;
    *len = c->buf ? c->len : 0;
}

int weft_process_output(weft_process *p, weft_output *o, int *wstatus)
{
    if (!o)
        return -EINVAL;
    memset(o, 0, sizeof *o);
    if (!p)
        return -EINVAL;
    if (!weft__task_current())
        return -EPERM;
    close_if_open(&p->fds[WEFT_STDIN]);
    collector c[2] = {{.fd = p->fds[WEFT_STDOUT], .limit = p->output_limit},
                      {.fd = p->fds[WEFT_STDERR], .limit = p->output_limit}};
    int r = c[0].fd >= 0 || c[1].fd >= 0 ? collect_both(p, c, &o->held_open) : 0;
    bool piped[2];
    for (int i = 0; i < 2; i++)
        piped[i] = p->fds[1 + i] >= 0 || p->drained[1 + i];
    hand_over(&c[0], piped[0], &o->out, &o->out_len);
    hand_over(&c[1], piped[1], &o->err, &o->err_len);
    o->out_truncated = c[0].truncated;
    o->err_truncated = c[1].truncated;
    if (!r && ((piped[0] && !o->out) || (piped[1] && !o->err)))
        r = -ENOMEM;
    if (r)
        return r;
    for (int i = 1; i < 3; i++) {
        if (p->fds[i] >= 0)
            p->drained[i] = true;
        close_if_open(&p->fds[i]);
    }
    return weft_process_wait(p, wstatus);
}

void weft_output_free(weft_output *o)
{
    if (!o)
        return;
    free(o->out);
    free(o->err);
    memset(o, 0, sizeof *o);
}

void weft_process_destroy(weft_process *p)
{
    if (!p)
        return;
    for (int i = 0; i < 3; i++)
        close_if_open(&p->fds[i]);
    int st = atomic_load_explicit(&p->state, memory_order_acquire);
    if (st != PROC_EXITED && st != PROC_LOST) {
        (void)weft_process_kill(p, SIGKILL);
        /* In a task, park for the exit, with cancellation and deadlines
         * lifted; if they cannot be lifted, block: a killed child exits at
         * once unless it is stuck in the kernel. */
        bool lifted = false, shielded = false;
        if (weft__task_current()) {
            shielded = weft_shield_push() == 0;
            lifted = shielded && weft_deadline_suspend() == 0;
        }
        /* A park that cannot be had (no SQE, say) falls back on blocking. */
        int r = lifted ? reap(p, NULL, true) : -EPERM;
        if (lifted)
            (void)weft_deadline_pop();
        if (r != 0 && r != -ECHILD) {
            siginfo_t si;
            (void)child_waitid(p, &si, WEXITED);
        }
        if (shielded)
            (void)weft_shield_pop();
    }
    if (p->pidfd >= 0)
        close(p->pidfd);
    free(p);
}
