/* The blocking pool: threads for work that would stall a worker (a library
 * without an async API, getaddrinfo, heavy CPU work), so that only the
 * calling task waits. See docs/blocking.md.
 *
 * One pool per runtime, started on first use under rt->lazy_lock. A job that
 * finds no idle thread starts one, up to max_threads; beyond that jobs queue
 * (FIFO). A thread idle for keepalive_ns exits; whoever next takes the pool
 * lock (a submitter or weft__blocking_fini) joins it, so no thread is ever
 * left detached.
 *
 * The job record is on the heap because the waiting task may stop waiting
 * (cancellation, deadline) while fn still runs: it then marks the job
 * ABANDONED and the pool thread, which finishes last, frees it. The job's
 * mutex orders that hand-over and the wake: the pool thread publishes DONE
 * and wakes the task while holding it, and the task takes it once before
 * freeing the job, so the wake never touches a job or a task that is gone.
 */
#include "runtime/blocking.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <weft/runtime.h>

#include "common/fault.h"
#include "runtime/worker.h"

unsigned weft__blocking_max_threads = 64;
uint64_t weft__blocking_keepalive_ns = 10ull * 1000 * 1000 * 1000;

enum job_state {
    JOB_PENDING,   /* queued or running; the task waits */
    JOB_DONE,      /* result set; the task frees the job */
    JOB_ABANDONED, /* the task gave up; the pool thread frees the job */
};

typedef struct job {
    struct job *next; /* queue link (pool lock) */
    void *(*fn)(void *);
    void *arg;
    void *result; /* written before DONE is published */
    /* For a job whose caller gave up: release(arg, result) once fn has
     * returned (result NULL when fn was skipped); may be NULL. */
    void (*release)(void *arg, void *result);
    bool skip_if_abandoned; /* an abandoned job that has not started never runs */
    weft_task *task;        /* the waiting task; touched only while PENDING */
    _Atomic int state;      /* enum job_state; changed under mu */
    pthread_mutex_t mu;     /* see the top of the file */
} job;

typedef struct pool_thread {
    pthread_t id;
    struct weft__blocking *pool;
    sigset_t mask;            /* what jobs run with: the mask of the worker that started it */
    struct pool_thread *next; /* on the pool's exited list */
} pool_thread;

struct weft__blocking {
    pthread_mutex_t lock;
    pthread_cond_t work; /* a job was queued, or stopping (CLOCK_MONOTONIC) */
    pthread_cond_t gone; /* a thread exited (weft__blocking_fini waits on it) */
    job *head, *tail;    /* queued, not started */
    unsigned queued;     /* length of that queue */
    unsigned threads;    /* started and not exited */
    unsigned idle;       /* ... of which waiting on `work` */
    unsigned max_threads;
    uint64_t keepalive_ns;
    bool stopping; /* the runtime is ending: run what is queued, then exit */
    /* The runtime has ended without waiting for the threads still running
     * (weft_config.blocking_exit_wait_ns): each detaches itself as it
     * exits, and the last one frees the pool. */
    bool left_behind;
    pool_thread *exited; /* ended, waiting to be joined */
};

/* ---- pool threads --------------------------------------------------------- */

int weft__thread_start_quiet(pthread_t *id, void *(*fn)(void *), void *arg)
{
    sigset_t set, old;
    sigfillset(&set);
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
        sigdelset(&set, faults[i]);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int r = pthread_create(id, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

static void job_free(job *j)
{
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* The pool thread's end of a job: publish the result and wake the task, or
 * clean up after a task that gave up. */
static void job_finish(job *j, void *result)
{
    pthread_mutex_lock(&j->mu);
    if (atomic_load_explicit(&j->state, memory_order_relaxed) == JOB_ABANDONED) {
        pthread_mutex_unlock(&j->mu);
        if (j->release)
            j->release(j->arg, result);
        job_free(j);
        return;
    }
    j->result = result;
    /* Pairs with the acquire loads in wait_job. */
    atomic_store_explicit(&j->state, JOB_DONE, memory_order_release);
    weft__task_wake(j->task);
    pthread_mutex_unlock(&j->mu);
}

/* CLOCK_MONOTONIC now + ns, for the pool's timed waits (a wait of more
 * than 68 years is cut to that). */
static struct timespec monotonic_after(uint64_t ns)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t sec = ns / 1000000000u;
    t.tv_sec += sec > (uint64_t)INT32_MAX ? INT32_MAX : (time_t)sec;
    t.tv_nsec += (long)(ns % 1000000000u);
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

static void pool_free(struct weft__blocking *pool)
{
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->gone);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

static void *pool_thread_main(void *p)
{
    pool_thread *self = p;
    struct weft__blocking *pool = self->pool;
    pthread_setname_np(pthread_self(), "weft-blocking");
    /* Started quiet; jobs run with the program's own mask, as they would
     * on any thread of it: a program a job starts inherits the mask, and
     * one with SIGTERM blocked ignores it. */
    pthread_sigmask(SIG_SETMASK, &self->mask, NULL);

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        job *j = pool->head;
        if (j) {
            pool->head = j->next;
            if (!pool->head)
                pool->tail = NULL;
            pool->queued--;
            pthread_mutex_unlock(&pool->lock);
            if (j->skip_if_abandoned &&
                atomic_load_explicit(&j->state, memory_order_acquire) == JOB_ABANDONED)
                job_finish(j, NULL);
            else
                job_finish(j, j->fn(j->arg));
            pthread_mutex_lock(&pool->lock);
            continue;
        }
        if (pool->stopping)
            break;
        struct timespec until = monotonic_after(pool->keepalive_ns);
        int r = 0;
        pool->idle++;
        while (!pool->head && !pool->stopping && r != ETIMEDOUT)
            r = pthread_cond_timedwait(&pool->work, &pool->lock, &until);
        pool->idle--;
        if (!pool->head && !pool->stopping)
            break; /* idle past the keep-alive */
    }
    pool->threads--;
    if (pool->left_behind) {
        /* Nobody joins or frees after the runtime: this thread does. */
        bool last = pool->threads == 0;
        pthread_mutex_unlock(&pool->lock);
        pthread_detach(pthread_self());
        free(self);
        if (last)
            pool_free(pool);
        return NULL;
    }
    self->next = pool->exited;
    pool->exited = self;
    pthread_cond_broadcast(&pool->gone);
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Starts one thread; call with the pool lock held. 0 or -errno. */
static int pool_grow(struct weft__blocking *pool)
{
    pool_thread *t = weft__malloc(sizeof *t);
    if (!t)
        return -ENOMEM;
    t->pool = pool;
    pthread_sigmask(SIG_BLOCK, NULL, &t->mask);
    int r = weft__thread_start_quiet(&t->id, pool_thread_main, t);
    if (r) {
        free(t);
        return -r;
    }
    pool->threads++;
    return 0;
}

static void join_exited(pool_thread *list)
{
    while (list) {
        pool_thread *next = list->next;
        pthread_join(list->id, NULL);
        free(list);
        list = next;
    }
}

/* The runtime's pool, started on first use; NULL when out of memory. */
static struct weft__blocking *pool_get(weft__runtime *rt)
{
    pthread_mutex_lock(&rt->lazy_lock);
    struct weft__blocking *pool = rt->blocking;
    if (!pool && (pool = weft__calloc(1, sizeof *pool)) != NULL) {
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&pool->work, &attr);
        pthread_cond_init(&pool->gone, &attr);
        pthread_condattr_destroy(&attr);
        pthread_mutex_init(&pool->lock, NULL);
        pool->max_threads = weft__blocking_max_threads ? weft__blocking_max_threads : 1;
        pool->keepalive_ns = weft__blocking_keepalive_ns;
        rt->blocking = pool;
    }
    pthread_mutex_unlock(&rt->lazy_lock);
    return pool;
}

/* Queues j, starting a thread when no idle one is left for it. 0, or -errno
 * when no thread exists and none could be started (j is not queued then). */
static int pool_submit(struct weft__blocking *pool, job *j)
{
    pthread_mutex_lock(&pool->lock);
    pool_thread *exited = pool->exited;
    pool->exited = NULL;
    j->next = NULL;
    if (pool->tail)
        pool->tail->next = j;
    else
        pool->head = j;
    pool->tail = j;
    pool->queued++;
    int r = 0;
    if (pool->idle >= pool->queued) {
        pthread_cond_signal(&pool->work);
    } else if (pool->threads < pool->max_threads) {
        r = pool_grow(pool);
        /* With threads running, the job waits for one of them. */
        if (r < 0 && pool->threads > 0)
            r = 0;
    }
    if (r < 0) {
        /* Nobody will run it: take it back (it is the only one queued). */
        pool->head = pool->tail = NULL;
        pool->queued = 0;
    }
    pthread_mutex_unlock(&pool->lock);
    join_exited(exited);
    return r;
}

void weft__blocking_fini(weft__runtime *rt)
{
    struct weft__blocking *pool = rt->blocking;
    if (!pool)
        return;
    /* Every task has finished, so the queue and the running jobs are
     * abandoned ones: they run to their end, as documented, with the
     * runtime waiting for them, or for blocking_exit_wait_ns at most. */
    uint64_t wait_ns = rt->cfg.blocking_exit_wait_ns;
    struct timespec until = monotonic_after(wait_ns);
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work);
    int r = 0;
    while (pool->threads > 0 && r != ETIMEDOUT)
        r = wait_ns ? pthread_cond_timedwait(&pool->gone, &pool->lock, &until)
                    : pthread_cond_wait(&pool->gone, &pool->lock);
    pool_thread *exited = pool->exited;
    pool->exited = NULL;
    bool left_behind = pool->threads > 0;
    pool->left_behind = left_behind;
    pthread_mutex_unlock(&pool->lock);
    join_exited(exited);
    if (!left_behind)
        pool_free(pool);
    rt->blocking = NULL;
}

/* ---- the waiting task ----------------------------------------------------- */

/* Parks until j is DONE (returns 0) or the task is interrupted (returns
 * -ECANCELED / -ETIMEDOUT, and j then belongs to the pool thread). */
static int wait_job(job *j)
{
    while (atomic_load_explicit(&j->state, memory_order_acquire) != JOB_DONE) {
        int r = weft__task_park_interruptible();
        if (r == 0)
            continue; /* a wake, maybe spurious: look again */
        pthread_mutex_lock(&j->mu);
        bool done = atomic_load_explicit(&j->state, memory_order_relaxed) == JOB_DONE;
        if (!done)
            atomic_store_explicit(&j->state, JOB_ABANDONED, memory_order_relaxed);
        pthread_mutex_unlock(&j->mu);
        if (!done)
            return r;
        /* It finished as we gave up: report the real result. */
    }
    /* The pool thread may still be inside weft__task_wake: let it leave. */
    pthread_mutex_lock(&j->mu);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

/* The checks and allocations before a job reaches the pool; 0 or -errno. */
static int job_submit(job **out, void *(*fn)(void *), void *arg, void (*release)(void *, void *),
                      bool skip_if_abandoned)
{
    if (!fn)
        return -EINVAL;
    weft_task *self;
    int r = weft__task_enter(&self);
    if (r)
        return r;
    struct weft__blocking *pool = pool_get(weft__worker_self()->rt);
    if (!pool)
        return -ENOMEM;
    job *j = weft__malloc(sizeof *j);
    if (!j)
        return -ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->result = NULL;
    j->release = release;
    j->skip_if_abandoned = skip_if_abandoned;
    j->task = self;
    atomic_init(&j->state, JOB_PENDING);
    pthread_mutex_init(&j->mu, NULL);
    r = pool_submit(pool, j);
    if (r < 0) {
        job_free(j);
        return r;
    }
    *out = j;
    return 0;
}

int weft__blocking_call(void *(*fn)(void *), void *arg, void **result,
                        void (*release)(void *, void *), bool skip_if_abandoned)
{
    if (result)
        *result = NULL;
    job *j = NULL; /* set by job_submit on success; gcc -O2 cannot see that */
    int r = job_submit(&j, fn, arg, release, skip_if_abandoned);
    if (r < 0) {
        if (release)
            release(arg, NULL);
        return r;
    }
    r = wait_job(j);
    if (r < 0)
        return r;
    if (result)
        *result = j->result;
    job_free(j);
    return 0;
}

int weft_spawn_blocking(void *(*fn)(void *), void *arg, void **result)
{
    return weft__blocking_call(fn, arg, result, NULL, false);
}

int weft_spawn_blocking_ex(void *(*fn)(void *), void *arg, void **result,
                           void (*release)(void *arg, void *result))
{
    return weft__blocking_call(fn, arg, result, release, false);
}

/* ---- getaddrinfo ---------------------------------------------------------- */

_Static_assert(EAI_NONAME<0 && EAI_NONAME> - 200 && EAI_SYSTEM < 0 && EAI_SYSTEM > -200,
               "WEFT_EAI assumes glibc/musl's small negative EAI_* codes");

typedef struct lookup {
    const char *node, *service; /* into the same allocation, or NULL */
    struct addrinfo hints;
    bool has_hints;
    struct addrinfo *res;
    int rc;  /* getaddrinfo's return */
    int err; /* errno for EAI_SYSTEM */
} lookup;

static void *lookup_run(void *arg)
{
    lookup *l = arg;
    l->rc = getaddrinfo(l->node, l->service, l->has_hints ? &l->hints : NULL, &l->res);
    l->err = l->rc == EAI_SYSTEM ? errno : 0;
    return l;
}

/* An abandoned lookup: the pool thread frees what it found. */
static void lookup_release(void *arg, void *result)
{
    (void)result; /* l itself */
    lookup *l = arg;
    if (l->rc == 0 && l->res)
        freeaddrinfo(l->res);
    free(l);
}

static char *copy_into(char **p, const char *s, size_t len)
{
    if (!s)
        return NULL;
    char *d = *p;
    memcpy(d, s, len + 1);
    *p += len + 1;
    return d;
}

int weft_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                     struct addrinfo **res)
{
    if (!res)
        return -EINVAL;
    *res = NULL;
    if (!weft__task_current())
        return -EPERM;
    /* The lookup may outlive the call (when the task gives up), so it owns
     * copies of everything it reads. */
    size_t nlen = node ? strlen(node) : 0, slen = service ? strlen(service) : 0;
    lookup *l = weft__malloc(sizeof *l + (node ? nlen + 1 : 0) + (service ? slen + 1 : 0));
    if (!l)
        return -ENOMEM;
    char *p = (char *)(l + 1);
    l->node = copy_into(&p, node, nlen);
    l->service = copy_into(&p, service, slen);
    memset(&l->hints, 0, sizeof l->hints);
    l->has_hints = hints != NULL;
    if (hints) {
        /* POSIX: the other members of hints must be zero or NULL. */
        l->hints.ai_flags = hints->ai_flags;
        l->hints.ai_family = hints->ai_family;
        l->hints.ai_socktype = hints->ai_socktype;
        l->hints.ai_protocol = hints->ai_protocol;
    }
    l->res = NULL;
    l->rc = 0;
    l->err = 0;
    int r = weft__blocking_call(lookup_run, l, NULL, lookup_release, true);
    if (r < 0)
        return r; /* l was released, now or by the pool thread */
    if (l->rc == 0)
        *res = l->res;
    else
        r = weft__eai_error(l->rc, l->err);
    free(l);
    return r;
}

int weft__eai_error(int rc, int err)
{
    if (rc == EAI_SYSTEM)
        return err > 0 ? -err : -EIO;
    if (rc == EAI_MEMORY)
        return -ENOMEM;
    return WEFT_EAI(rc);
}
