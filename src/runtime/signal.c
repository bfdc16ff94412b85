/* Waiting for signals: weft_signal_wait. See docs/blocking.md.
 *
 * Dispositions are process-wide and the kernel may run a handler on any
 * thread that does not block the signal (a worker, the main thread, a thread
 * the application made), so the machinery is process-wide too - the hub:
 *   - a handler for each signal some runtime waits for, which counts the
 *     arrival in arrivals[signo] and writes to an eventfd;
 *   - a helper thread ("weft-signals") that reads the eventfd and settles
 *     the parked waiters (below);
 *   - the list of parked waiters, whatever runtime or worker they are on.
 * The handler does only async-signal-safe things (lock-free atomics and
 * write(2)); a wake takes locks, which is why a helper does it.
 *
 * Each runtime keeps, in rt->signals, how many arrivals of each signal it has
 * delivered (seen[]): an arrival that found no waiter is remembered until the
 * next wait in that runtime, and several coalesce into one.
 *
 * Settling, the one rule for who gets an arrival. A waiter waits for a set
 * of signals; it is settled when one of them has arrived since it was
 * listed: it is given the lowest such signal (`delivered`), that signal's
 * arrivals count as delivered in its runtime, and it is woken. Everything
 * that decides under the hub lock settles first: the helper after each
 * arrival, a new wait before it looks for remembered arrivals, a waiter on
 * its way out. So an arrival goes to every waiter listed for it (a
 * broadcast) unless a waiter took a lower signal of its set, and what no
 * waiter took stays remembered for the next wait; none is reported twice
 * in one runtime or lost.
 *
 * Lifetime: the hub starts with the first runtime that waits for a signal
 * (or names it in weft_config.catch_signals, at its start) and stops in the
 * last such runtime's weft__signals_fini. A handler is installed by the
 * first such wait or start in the process, and the previous disposition
 * is restored when the last runtime that used it ends.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <weft/runtime.h>

#include "common/fault.h"
#include "runtime/blocking.h"
#include "runtime/worker.h"

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "the signal handler needs lock-free atomics to be async-signal-safe");

/* A task parked in weft_signal_wait_any; lives on its stack, linked under
 * the hub lock. */
typedef struct sig_waiter {
    struct sig_waiter *next, *prev;
    weft_task *task;
    struct weft__signals *sigs; /* of the waiter's runtime */
    sigset_t set;               /* the signals it waits for */
    int delivered;              /* the signal it was given; 0 until settled */
    uint64_t seen[NSIG];        /* arrivals[] of its signals when it was listed */
} sig_waiter;

/* One start of the helper thread; a new one is made when the hub restarts,
 * so a stopping helper never races a starting one. */
typedef struct hub_helper {
    int efd; /* the handler writes, the helper reads */
    pthread_t thread;
    _Atomic bool stop;
} hub_helper;

struct weft__signals {
    uint64_t seen[NSIG];  /* arrivals delivered in this runtime (hub lock) */
    bool installed[NSIG]; /* holds a reference on the signal's handler (hub lock) */
};

static struct {
    pthread_mutex_t lock;
    unsigned runtimes;  /* runtimes with rt->signals */
    hub_helper *helper; /* non-NULL exactly while runtimes > 0 */
    sig_waiter *waiters;
    unsigned refs[NSIG]; /* runtimes that waited for the signal */
    struct sigaction previous[NSIG];
} hub = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Read by the handler: plain lock-free atomics, sequentially consistent. */
static _Atomic uint64_t arrivals[NSIG];
static _Atomic int notify_fd = -1;
static _Atomic unsigned in_handler; /* handlers between loading notify_fd and leaving */

static void on_signal(int signo)
{
    int saved_errno = errno;
    atomic_fetch_add(&in_handler, 1);
    /* Count first: whoever the write wakes must see the new count. */
    atomic_fetch_add(&arrivals[signo], 1);
    int fd = atomic_load(&notify_fd);
    if (fd >= 0) {
        uint64_t one = 1;
        ssize_t n = write(fd, &one, sizeof one);
        (void)n;
    }
    atomic_fetch_sub(&in_handler, 1);
    errno = saved_errno;
}

/* The lowest signal of w's set that arrived since w was listed; 0 if none. */
static int first_arrived(const sig_waiter *w)
{
    for (int signo = 1; signo < NSIG; signo++)
        if (sigismember(&w->set, signo) == 1 && atomic_load(&arrivals[signo]) != w->seen[signo])
            return signo;
    return 0;
}

/* Marks signo's arrivals until now as delivered in runtime s. */
static void consume(struct weft__signals *s, int signo)
{
    uint64_t now = atomic_load(&arrivals[signo]);
    if (now > s->seen[signo])
        s->seen[signo] = now;
}

/* Settles every listed waiter that a signal of its set has reached (see the
 * top of the file); hub lock held. */
static void settle_waiters(void)
{
    for (sig_waiter *w = hub.waiters; w; w = w->next) {
        if (w->delivered)
            continue;
        int signo = first_arrived(w);
        if (!signo)
            continue;
        w->delivered = signo;
        consume(w->sigs, signo);
        /* A waiter settling itself on its way out is running: a wake
         * would only make its next park return at once. */
        if (w->task != weft__task_current())
            weft__task_wake(w->task);
    }
}

static void *helper_main(void *p)
{
    hub_helper *h = p;
    pthread_setname_np(pthread_self(), "weft-signals");
    for (;;) {
        uint64_t n;
        if (read(h->efd, &n, sizeof n) < 0 && errno == EINTR)
            continue;
        if (atomic_load(&h->stop))
            break;
        pthread_mutex_lock(&hub.lock);
        settle_waiters();
        pthread_mutex_unlock(&hub.lock);
    }
    return NULL;
}

/* fork: the child has only the forking thread, so no helper, no parked
 * waiter, and none of the runtimes that used the hub; but it inherited the
 * hub's record of them, the handlers, and the helper's eventfd, which it
 * shares with the parent (a handler in the child would wake the parent's
 * helper, and a runtime started in the child would find a helper "running"
 * and never start its own: its signal waits would never end). The child
 * starts from an empty hub, with the dispositions weft replaced given
 * back, as in a process where no runtime used signals. The lock is held
 * across the fork so that the child inherits a consistent hub. */
static void hub_before_fork(void)
{
    pthread_mutex_lock(&hub.lock);
}

static void hub_after_fork_parent(void)
{
    pthread_mutex_unlock(&hub.lock);
}

static void hub_after_fork_child(void)
{
    for (int signo = 1; signo < NSIG; signo++)
        if (hub.refs[signo]) {
            sigaction(signo, &hub.previous[signo], NULL);
            hub.refs[signo] = 0;
        }
    hub_helper *h = hub.helper;
    if (h) {
        atomic_store(&notify_fd, -1);
        close(h->efd); /* the child's reference; the parent's stays open */
        free(h);
        hub.helper = NULL;
    }
    hub.runtimes = 0;
    hub.waiters = NULL; /* they were on the stacks of threads the child lacks */
    atomic_store(&in_handler, 0);
    pthread_mutex_unlock(&hub.lock);
}

static void hub_register_fork_handlers(void)
{
    pthread_atfork(hub_before_fork, hub_after_fork_parent, hub_after_fork_child);
}

/* Starts the helper; hub lock held. 0 or -errno. */
static int helper_start(void)
{
    static pthread_once_t fork_handlers = PTHREAD_ONCE_INIT;
    pthread_once(&fork_handlers, hub_register_fork_handlers);

    hub_helper *h = weft__malloc(sizeof *h);
    if (!h)
        return -ENOMEM;
    h->efd = eventfd(0, EFD_CLOEXEC);
    if (h->efd < 0) {
        int r = -errno;
        free(h);
        return r;
    }
    atomic_init(&h->stop, false);
    int r = weft__thread_start_quiet(&h->thread, helper_main, h);
    if (r) {
        close(h->efd);
        free(h);
        return -r;
    }
    hub.helper = h;
    atomic_store(&notify_fd, h->efd);
    return 0;
}

/* Stops a helper taken off the hub. */
static void helper_stop(hub_helper *h)
{
    atomic_store(&h->stop, true);
    weft__eventfd_signal(h->efd);
    pthread_join(h->thread, NULL);
    /* notify_fd no longer names h->efd, but a handler may have loaded it
     * just before: wait until none is inside before the number can be
     * reused. (A handler that loaded the fd incremented in_handler first;
     * sequential consistency makes this load see it.) */
    while (atomic_load(&in_handler) != 0)
        sched_yield();
    close(h->efd);
    free(h);
}

/* The runtime's signal state, made (and the hub joined) on first use. */
static int signals_get(weft__runtime *rt, struct weft__signals **out)
{
    int r = 0;
    pthread_mutex_lock(&rt->lazy_lock);
    struct weft__signals *s = rt->signals;
    if (!s) {
        s = weft__calloc(1, sizeof *s);
        if (!s) {
            r = -ENOMEM;
        } else {
            pthread_mutex_lock(&hub.lock);
            if (!hub.helper)
                r = helper_start();
            if (r == 0)
                hub.runtimes++;
            pthread_mutex_unlock(&hub.lock);
            if (r == 0) {
                rt->signals = s;
            } else {
                free(s);
                s = NULL;
            }
        }
    }
    pthread_mutex_unlock(&rt->lazy_lock);
    *out = s;
    return r;
}

/* Takes s's reference on signo's handler, installing it if it is the first;
 * hub lock held. 0 or -errno from sigaction. */
static int handler_ref(struct weft__signals *s, int signo)
{
    if (s->installed[signo])
        return 0;
    /* Arrivals before this runtime asked are not its to remember; one from
     * the moment the handler is in place is. So the count is read before
     * the handler goes in: read after, an arrival in between was counted
     * as seen and lost (the old disposition never had it either). */
    uint64_t before = atomic_load(&arrivals[signo]);
    if (hub.refs[signo] == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        /* SA_ONSTACK: a worker has an alternate stack, and a task stack may
         * be nearly full when the signal lands. */
        sa.sa_flags = SA_RESTART | SA_ONSTACK;
        if (sigaction(signo, &sa, &hub.previous[signo]) < 0)
            return -errno;
    }
    hub.refs[signo]++;
    s->installed[signo] = true;
    s->seen[signo] = before;
    return 0;
}

bool weft__signal_waitable(int signo)
{
    if (signo <= 0 || signo >= NSIG)
        return false;
    switch (signo) {
    case SIGKILL:
    case SIGSTOP:
    /* Faults: returning from a real one re-runs the faulting instruction,
     * and the runtime's overflow report (and ASan) own SIGSEGV. */
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
        return false;
    }
    /* The C library keeps a few for itself (its thread cancellation and
     * setxid signals), and sigaddset refuses those. */
    sigset_t probe;
    sigemptyset(&probe);
    return sigaddset(&probe, signo) == 0;
}

int weft_signal_wait_any(const int *signos, unsigned n)
{
    /* NULL and 0 together: the runtime's own set, below. */
    if (!signos != (n == 0))
        return -EINVAL;
    sigset_t set;
    sigemptyset(&set);
    for (unsigned i = 0; i < n; i++) {
        if (!weft__signal_waitable(signos[i]))
            return -EINVAL;
        sigaddset(&set, signos[i]);
    }
    /* An interrupted task neither installs anything nor consumes an
     * arrival that another wait could report. */
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    struct weft__signals *s;
    r = signals_get(weft__worker_self()->rt, &s);
    if (r < 0)
        return r;

    pthread_mutex_lock(&hub.lock);
    if (n == 0) {
        /* Every signal this runtime has a handler for: catch_signals', and
         * those earlier waits named. */
        bool any = false;
        for (int signo = 1; signo < NSIG; signo++)
            if (s->installed[signo]) {
                sigaddset(&set, signo);
                any = true;
            }
        if (!any) {
            pthread_mutex_unlock(&hub.lock);
            return -EINVAL;
        }
    }
    sig_waiter w = {.task = self, .sigs = s, .set = set};
    for (int signo = 1; signo < NSIG && r == 0; signo++)
        if (sigismember(&set, signo) == 1)
            r = handler_ref(s, signo);
    if (r < 0) {
        pthread_mutex_unlock(&hub.lock);
        return r;
    }
    /* Arrivals that listed waiters of this runtime are owed go to them
     * first; what is left over arrived while nobody here waited for it. */
    settle_waiters();
    for (int signo = 1; signo < NSIG; signo++) {
        if (sigismember(&set, signo) != 1)
            continue;
        if (atomic_load(&arrivals[signo]) != s->seen[signo]) {
            consume(s, signo);
            pthread_mutex_unlock(&hub.lock);
            return signo; /* remembered */
        }
        w.seen[signo] = s->seen[signo];
    }
    w.next = hub.waiters;
    if (hub.waiters)
        hub.waiters->prev = &w;
    hub.waiters = &w;
    pthread_mutex_unlock(&hub.lock);

    /* An arrival after the check above reaches us through the helper,
     * which settles the list under the lock we just released. The
     * unlocked first_arrived is only a hint to stop parking. */
    for (;;) {
        r = weft__task_park_interruptible();
        if (r < 0 || first_arrived(&w))
            break;
    }

    pthread_mutex_lock(&hub.lock);
    /* An arrival before this point is ours even when we were interrupted
     * meanwhile: settle, which may give it to us now. */
    settle_waiters();
    /* What arrived after we were settled is nobody's yet: it stays
     * remembered for the next wait. */
    if (w.delivered)
        r = w.delivered;
    if (w.prev)
        w.prev->next = w.next;
    else
        hub.waiters = w.next;
    if (w.next)
        w.next->prev = w.prev;
    pthread_mutex_unlock(&hub.lock);
    return r;
}

int weft_signal_wait(int signo)
{
    return weft_signal_wait_any(&signo, 1);
}

int weft__signals_catch(weft__runtime *rt, const int *signos, size_t n)
{
    if (n == 0)
        return 0;
    struct weft__signals *s;
    int r = signals_get(rt, &s);
    if (r < 0)
        return r;
    pthread_mutex_lock(&hub.lock);
    for (size_t i = 0; i < n && r == 0; i++)
        r = handler_ref(s, signos[i]);
    pthread_mutex_unlock(&hub.lock);
    return r;
}

unsigned weft__signal_waiters(int signo)
{
    unsigned n = 0;
    pthread_mutex_lock(&hub.lock);
    for (sig_waiter *w = hub.waiters; w; w = w->next)
        n += sigismember(&w->set, signo) == 1;
    pthread_mutex_unlock(&hub.lock);
    return n;
}

void weft__signals_fini(weft__runtime *rt)
{
    struct weft__signals *s = rt->signals;
    if (!s)
        return;
    hub_helper *stop = NULL;
    pthread_mutex_lock(&hub.lock);
    for (int signo = 1; signo < NSIG; signo++)
        if (s->installed[signo] && --hub.refs[signo] == 0)
            sigaction(signo, &hub.previous[signo], NULL);
    if (--hub.runtimes == 0) {
        stop = hub.helper;
        hub.helper = NULL;
        atomic_store(&notify_fd, -1);
    }
    pthread_mutex_unlock(&hub.lock);
    if (stop)
        helper_stop(stop);
    free(s);
    rt->signals = NULL;
}
