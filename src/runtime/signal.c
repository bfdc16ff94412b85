/* Waiting for signals: weft_signal_wait. See docs/blocking.md.
 *
 * Dispositions are process-wide and the kernel may run a handler on any
 * thread that does not block the signal (a worker, the main thread, a thread
 * the application made), so the machinery is process-wide too - the hub:
 *   - a handler for each signal some runtime waits for, which counts the
 *     arrival in arrivals[signo] and writes to an eventfd;
 *   - a helper thread ("weft-signals") that reads the eventfd and wakes
 *     every parked waiter whose signal's count moved;
 *   - the list of parked waiters, whatever runtime or worker they are on.
 * The handler does only async-signal-safe things (lock-free atomics and
 * write(2)); a wake takes locks, which is why a helper does it.
 *
 * Each runtime keeps, in rt->signals, how many arrivals of each signal it has
 * delivered (seen[]): an arrival that found no waiter is remembered until the
 * next wait in that runtime, and several coalesce into one.
 *
 * Lifetime: the hub starts with the first runtime that waits for a signal
 * and stops in the last such runtime's weft__signals_fini. A handler is
 * installed by the first wait for its signal in the process and the previous
 * disposition is restored when the last runtime that waited for it ends.
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

/* A task parked in weft_signal_wait; lives on its stack, linked under the
 * hub lock. */
typedef struct sig_waiter {
    struct sig_waiter *next, *prev;
    weft_task *task;
    struct weft__signals *sigs; /* of the waiter's runtime */
    int signo;
    uint64_t seen; /* arrivals[signo] when it started waiting */
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
        for (sig_waiter *w = hub.waiters; w; w = w->next) {
            uint64_t now = atomic_load(&arrivals[w->signo]);
            if (now == w->seen)
                continue;
            /* Delivered to w from now on: a wait that starts in this
             * runtime before w runs must not take the same arrivals for
             * ones that found no waiter. */
            if (now > w->sigs->seen[w->signo])
                w->sigs->seen[w->signo] = now;
            weft__task_wake(w->task);
        }
        pthread_mutex_unlock(&hub.lock);
    }
    return NULL;
}

/* Starts the helper; hub lock held. 0 or -errno. */
static int helper_start(void)
{
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
    /* Arrivals before this runtime asked are not its to remember. */
    s->seen[signo] = atomic_load(&arrivals[signo]);
    return 0;
}

static bool waitable(int signo)
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
    return true;
}

int weft_signal_wait(int signo)
{
    if (!waitable(signo))
        return -EINVAL;
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    /* An interrupted task neither installs anything nor consumes an
     * arrival that another wait could report. */
    int r = weft__task_interrupted(self);
    if (r)
        return r;
    struct weft__signals *s;
    r = signals_get(weft__worker_self()->rt, &s);
    if (r < 0)
        return r;

    pthread_mutex_lock(&hub.lock);
    r = handler_ref(s, signo);
    if (r < 0) {
        pthread_mutex_unlock(&hub.lock);
        return r;
    }
    uint64_t now = atomic_load(&arrivals[signo]);
    if (now != s->seen[signo]) {
        /* Arrivals since a waiter of this runtime was listed are that
         * waiter's, even before the helper has walked the list and moved
         * seen[] (it will report them: see below). Others were remembered:
         * they arrived while nobody here waited. */
        bool owned = false;
        for (sig_waiter *o = hub.waiters; o && !owned; o = o->next)
            owned = o->sigs == s && o->signo == signo && o->seen != now;
        s->seen[signo] = now;
        if (!owned) {
            pthread_mutex_unlock(&hub.lock);
            return signo;
        }
    }
    sig_waiter w = {
        .next = hub.waiters, .prev = NULL, .task = self, .sigs = s, .signo = signo, .seen = now};
    if (hub.waiters)
        hub.waiters->prev = &w;
    hub.waiters = &w;
    pthread_mutex_unlock(&hub.lock);

    /* An arrival after the check above wakes us through the helper, which
     * looks at the list under the lock we just released. */
    for (;;) {
        r = weft__task_park_interruptible();
        if (atomic_load(&arrivals[signo]) != w.seen) {
            r = signo; /* arrived, even if we were interrupted meanwhile */
            break;
        }
        if (r < 0)
            break;
    }

    pthread_mutex_lock(&hub.lock);
    /* An arrival since the check above, while we were still listed, may
     * already count as delivered here (the helper or a new wait moved
     * seen[] for us): report it, or nobody would. */
    if (r != signo && atomic_load(&arrivals[signo]) != w.seen)
        r = signo;
    if (w.prev)
        w.prev->next = w.next;
    else
        hub.waiters = w.next;
    if (w.next)
        w.next->prev = w.prev;
    if (r == signo) {
        /* Delivered: what arrived until now is consumed (coalesced). */
        now = atomic_load(&arrivals[signo]);
        if (now > s->seen[signo])
            s->seen[signo] = now;
    }
    pthread_mutex_unlock(&hub.lock);
    return r;
}

unsigned weft__signal_waiters(int signo)
{
    unsigned n = 0;
    pthread_mutex_lock(&hub.lock);
    for (sig_waiter *w = hub.waiters; w; w = w->next)
        n += w->signo == signo;
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
