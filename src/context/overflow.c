/* Stack overflow reporting. A task that runs off its stack hits the guard
 * page below it; the SIGSEGV handler runs on an alternate signal stack (the
 * task's own stack is exhausted), recognises the guard and prints
 *   weft: task <id> '<name>' overflowed its <N> KiB stack
 * before aborting. Any other SIGSEGV goes on to the handler that was there
 * before (the program's, ASan's) or to the default action. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ucontext.h>
#include <unistd.h>

#include "common/fault.h"
#include "runtime/worker.h"

/* The handler that was there before weft's, as on_segv and pass_on read
 * it: on any thread, in a signal handler, where no lock can be taken. Each
 * install fills the slot not published and then publishes it, so that a
 * handler running meanwhile reads one whole copy, never a half-written one
 * (a flag of one handler with the function of another). */
static struct sigaction previous_slots[2];
static const struct sigaction *_Atomic previous_segv_at = &previous_slots[0];
static int installed_count; /* runtimes using the handler (under a lock) */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

/* The alternate signal stack belongs to the thread, and one thread may
 * carry several workers: executors its host loop drives, weft_run's worker
 * next to them. The first worker on a thread maps the stack and keeps the
 * thread's own (the host's, or none); the last to go puts that back. Only
 * worker set-up and teardown touch this, on the worker's thread, never a
 * task (DESIGN §6). */
static __thread struct {
    void *sp; /* ALTSTACK_SIZE bytes, while users > 0 */
    unsigned users;
    stack_t previous;
} tls_alt;

#define ALTSTACK_SIZE (64 * 1024)

static size_t put_u64(char *p, unsigned long long v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

static size_t put_str(char *p, const char *s, size_t max)
{
    size_t n = 0;
    while (s[n] && n < max)
        n++;
    memcpy(p, s, n);
    return n;
}

/* If addr is in the guard page below t's stack, reports t's overflow and
 * aborts. */
static void report_if_overflow(const weft_task *t, const char *addr)
{
    if (!t || !t->stack)
        return;
    const char *guard_lo = t->stack->lo - (size_t)sysconf(_SC_PAGESIZE);
    if (addr < guard_lo || addr >= t->stack->lo)
        return;
    char msg[160];
    size_t n = put_str(msg, "weft: task ", 11);
    n += put_u64(msg + n, t->entity.task_id);
    n += put_str(msg + n, " '", 2);
    size_t name_at = n;
    n += put_str(msg + n, t->name ? t->name : "", TASK_NAME_MAX);
    /* One line whatever the name holds, as in the task dump. */
    for (size_t i = name_at; i < n; i++)
        if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
            msg[i] = '?';
    n += put_str(msg + n, "' overflowed its ", 17);
    n += put_u64(msg + n, t->stack->size / 1024);
    n += put_str(msg + n, " KiB stack\n", 11);
    ssize_t wr = write(STDERR_FILENO, msg, n);
    (void)wr;
    signal(SIGABRT, SIG_DFL);
    abort();
}

/* While pass_on runs the previous handler on this thread: the siginfo and
 * context it passed on and its own frame. Left stale when that handler
 * leaves with longjmp, which is harmless: see pass_on. */
static __thread const siginfo_t *tls_passing_info;
static __thread const void *tls_passing_uctx;
static __thread char *tls_passing_frame;

/* SA_RESETHAND: the first fault to reach the handler takes it, as the
 * kernel's reset of the disposition would let only one; set again when a
 * runtime installs weft's handler (the saved handler is new then). */
static _Atomic bool resethand_taken;

/* Below this much of the alternate stack, passing a fault on again would
 * soon run off its end (it has no guard page). */
#define ALTSTACK_RESERVE (8 * 1024)

static bool near_altstack_end(const char *frame)
{
    stack_t ss;
    if (sigaltstack(NULL, &ss) < 0 || !(ss.ss_flags & SS_ONSTACK))
        return false;
    return frame >= (const char *)ss.ss_sp && frame < (const char *)ss.ss_sp + ALTSTACK_RESERVE;
}

/* The default action: the process ends. A real fault repeats when the
 * handler returns, and is then delivered with it; a sent signal is sent
 * again, and delivered once the handler returns. */
static void take_default_action(const siginfo_t *info)
{
    signal(SIGSEGV, SIG_DFL);
    if (info->si_code <= 0)
        raise(SIGSEGV);
}

/* Runs the previous handler as the kernel would have: with its mask, with
 * SIGSEGV unblocked under SA_NODEFER (a handler that leaves with longjmp
 * and probes again needs it), and with the disposition reset to the
 * default first under SA_RESETHAND (else a handler that returns would be
 * called for ever on a fault that repeats). */
static void pass_on(int sig, siginfo_t *info, void *uctx)
{
    /* Entered again, below, with the siginfo or the context we passed on:
     * the handler we run chains back here (it saved this one as its
     * previous, under an earlier runtime), and the fault would bounce
     * between the two. A new fault, nested in that handler or after it
     * left with longjmp, comes with a siginfo and a context of its own
     * from the kernel. A chain that copies both is caught before it runs
     * off the end of the alternate stack. */
    char *frame = __builtin_frame_address(0);
    if (((info == tls_passing_info || uctx == tls_passing_uctx) && frame < tls_passing_frame) ||
        near_altstack_end(frame)) {
        take_default_action(info);
        return;
    }
    struct sigaction prev = *atomic_load_explicit(&previous_segv_at, memory_order_acquire);
    if ((prev.sa_flags & SA_RESETHAND) && atomic_exchange(&resethand_taken, true)) {
        take_default_action(info); /* another fault took the one-shot handler */
        return;
    }
    sigset_t old, block = prev.sa_mask;
    if (!(prev.sa_flags & SA_NODEFER))
        sigaddset(&block, SIGSEGV);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    if ((prev.sa_flags & SA_NODEFER) && !sigismember(&prev.sa_mask, SIGSEGV)) {
        sigset_t segv;
        sigemptyset(&segv);
        sigaddset(&segv, SIGSEGV);
        pthread_sigmask(SIG_UNBLOCK, &segv, NULL);
    }
    const siginfo_t *outer_info = tls_passing_info;
    const void *outer_uctx = tls_passing_uctx;
    char *outer_frame = tls_passing_frame;
    tls_passing_info = info;
    tls_passing_uctx = uctx;
    tls_passing_frame = frame;
    if (prev.sa_flags & SA_SIGINFO)
        prev.sa_sigaction(sig, info, uctx);
    else
        prev.sa_handler(sig);
    tls_passing_info = outer_info;
    tls_passing_uctx = outer_uctx;
    tls_passing_frame = outer_frame;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Whether the faulting context's stack pointer is on t's stack or in its
 * guard page: true of the pushes of a switch away from t, which fault there
 * when they run off its end. (Where the pointer cannot be read, assume so.) */
static bool sp_on_stack_of(const weft_task *t, const void *uctx)
{
    if (!t || !t->stack || !uctx)
        return false;
    const ucontext_t *uc = uctx;
#if defined(__x86_64__)
    const char *sp = (const char *)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    const char *sp = (const char *)uc->uc_mcontext.sp;
#else
    (void)uc;
    return true;
#endif
    const char *guard_lo = t->stack->lo - (size_t)sysconf(_SC_PAGESIZE);
    return sp >= guard_lo && sp <= t->stack->lo + t->stack->size;
}

static void on_segv(int sig, siginfo_t *info, void *uctx)
{
    weft__worker *w = weft__worker_self();
    if (w) {
        report_if_overflow(w->current, info->si_addr);
        /* The task a direct yield is switching away from stays noted until
         * the loop next runs: a fault in its guard made from another
         * stack (a wild write by the task now current) is not its
         * overflow. */
        if (sp_on_stack_of(w->leaving, uctx))
            report_if_overflow(w->leaving, info->si_addr);
    }
    /* Not ours: pass it on, leaving this handler in place. (Putting the
     * previous one back for the process lost weft's report for good the
     * first time a program's handler dealt with a fault of its own, and
     * swallowed a SIGSEGV sent with kill or raise.) */
    const struct sigaction *prev = atomic_load_explicit(&previous_segv_at, memory_order_acquire);
    if ((prev->sa_flags & SA_SIGINFO) ||
        (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN)) {
        pass_on(sig, info, uctx);
        return;
    }
    /* A sent SIGSEGV (si_code <= 0) that was ignored stays ignored. */
    if (info->si_code <= 0 && prev->sa_handler == SIG_IGN)
        return;
    take_default_action(info);
}

/* Under install_lock. */
static void publish_previous(const struct sigaction *sa)
{
    const struct sigaction *cur = atomic_load_explicit(&previous_segv_at, memory_order_relaxed);
    struct sigaction *slot = &previous_slots[cur == &previous_slots[0]];
    *slot = *sa;
    atomic_store_explicit(&previous_segv_at, slot, memory_order_release);
}

/* fork: install_lock is held across it, so that a child never inherits it
 * taken by a thread it does not have. The runtimes counted here ran on the
 * parent's threads, none of which the child has (a child that forks from
 * inside a task may only exec or _exit, docs/blocking.md), so the child
 * starts with none and the handler that was there before weft's, as in a
 * process where no runtime ran: a runtime it starts installs the handler
 * afresh. */
static void install_before_fork(void)
{
    pthread_mutex_lock(&install_lock);
}

static void install_after_fork_parent(void)
{
    pthread_mutex_unlock(&install_lock);
}

static void install_after_fork_child(void)
{
    if (installed_count > 0) {
        installed_count = 0;
        struct sigaction cur;
        if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
            cur.sa_sigaction == on_segv)
            sigaction(SIGSEGV, atomic_load(&previous_segv_at), NULL);
    }
    pthread_mutex_unlock(&install_lock);
}

static void install_register_fork_handlers(void)
{
    pthread_atfork(install_before_fork, install_after_fork_parent, install_after_fork_child);
}

int weft__overflow_install(weft__worker *w)
{
    static pthread_once_t fork_handlers = PTHREAD_ONCE_INIT;
    pthread_once(&fork_handlers, install_register_fork_handlers);
    if (tls_alt.users == 0) {
        void *alt = MAP_FAILED;
        if (!weft__fault_hit(WEFT_FAULT_MMAP))
            alt = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                       0);
        if (alt == MAP_FAILED)
            return -ENOMEM;
        stack_t ss = {.ss_sp = alt, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
        if (sigaltstack(&ss, &tls_alt.previous) < 0) {
            int e = -errno;
            munmap(alt, ALTSTACK_SIZE);
            return e;
        }
        tls_alt.sp = alt;
    }
    tls_alt.users++;
    w->altstack = tls_alt.sp;
    pthread_mutex_lock(&install_lock);
    if (installed_count++ == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        /* Published before on_segv is in place (a fault on another thread
         * may run it at once); and again, in the other slot, if another
         * thread put a handler in between the two calls. */
        struct sigaction old;
        sigaction(SIGSEGV, NULL, &old);
        publish_previous(&old);
        struct sigaction replaced;
        sigaction(SIGSEGV, &sa, &replaced);
        if (replaced.sa_sigaction != old.sa_sigaction || replaced.sa_flags != old.sa_flags)
            publish_previous(&replaced);
        atomic_store(&resethand_taken, false);
    }
    pthread_mutex_unlock(&install_lock);
    return 0;
}

void weft__overflow_remove(weft__worker *w)
{
    if (!w->altstack)
        return;
    pthread_mutex_lock(&install_lock);
    if (--installed_count == 0) {
        /* Unless the program put in a handler of its own meanwhile, which
         * stays. */
        struct sigaction cur;
        if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
            cur.sa_sigaction == on_segv)
            sigaction(SIGSEGV, atomic_load(&previous_segv_at), NULL);
    }
    pthread_mutex_unlock(&install_lock);
    w->altstack = NULL;
    if (--tls_alt.users > 0)
        return;
    /* The thread's own stack again, or none if it had none; unless the
     * host has put another in place since, which stays. */
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == tls_alt.sp)
        sigaltstack(&tls_alt.previous, NULL);
    munmap(tls_alt.sp, ALTSTACK_SIZE);
    tls_alt.sp = NULL;
}
