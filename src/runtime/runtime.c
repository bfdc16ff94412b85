/* weft_run: build a runtime, run the main task to the end of its subtree,
 * tear everything down. Worker 0 runs on the calling thread; workers
 * 1..N-1 on threads named weft-<n>. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft/runtime.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT_HAVE_VALGRIND 1
#endif

#include "common/fault.h"
#include "observe/trace.h"
#include "runtime/config.h"
#include "runtime/worker.h"

static void init_pseudo_root(weft_task *t)
{
    memset(t, 0, sizeof *t);
    atomic_init(&t->state, TASK_RUNNING | TASK_REF_ONE);
#ifndef NDEBUG
    t->magic = TASK_MAGIC_LIVE;
#endif
    t->flags = TASK_F_ROOT;
}

/* Queue names are kept for the life of the process, one copy per distinct
 * name: weft_queue_stats.name may be read after weft_run has returned, and
 * an executor's config need not outlive the create. A program has few
 * distinct queue names, however many runtimes it makes. */
typedef struct kept_name {
    struct kept_name *next;
    char text[];
} kept_name;

static pthread_mutex_t kept_names_lock = PTHREAD_MUTEX_INITIALIZER;
static kept_name *kept_names;

/* fork: held across it, so that a child never inherits the lock taken by a
 * thread it does not have (its own runtime would wait for it for ever). The
 * names stay valid in the child. */
static void kept_names_before_fork(void)
{
    pthread_mutex_lock(&kept_names_lock);
}

static void kept_names_after_fork(void)
{
    pthread_mutex_unlock(&kept_names_lock);
}

static void kept_names_register_fork_handlers(void)
{
    pthread_atfork(kept_names_before_fork, kept_names_after_fork, kept_names_after_fork);
}

static const char *keep_name(const char *name)
{
    static pthread_once_t fork_handlers = PTHREAD_ONCE_INIT;
    pthread_once(&fork_handlers, kept_names_register_fork_handlers);
    pthread_mutex_lock(&kept_names_lock);
    kept_name *k = kept_names;
    while (k && strcmp(k->text, name) != 0)
        k = k->next;
    if (!k) {
        size_t len = strlen(name) + 1;
        k = weft__malloc(sizeof *k + len);
        if (k) {
            memcpy(k->text, name, len);
            k->next = kept_names;
            kept_names = k;
        }
    }
    pthread_mutex_unlock(&kept_names_lock);
    return k ? k->text : NULL;
}

/* The runtime's own copy of the queue specs, with kept names: a caller's
 * config (on its stack, say) may be gone by the time a spawn looks a queue
 * up by name or the stats name one. (The policy tables and their configs
 * are the caller's still: tables are static in practice, and a policy
 * reads its config in init.) */
static int copy_queues(weft__runtime *rt)
{
    size_t n = rt->cfg.nqueues;
    weft_queue_spec *q = weft__malloc(n * sizeof *q);
    if (!q)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        q[i] = rt->cfg.queues[i];
        q[i].name = keep_name(q[i].name);
        if (!q[i].name) {
            free(q);
            return -ENOMEM;
        }
    }
    rt->cfg.queues = q;
    rt->queues_copy = q;
    return 0;
}

int weft__runtime_setup(weft__runtime *rt, const weft_config *cfg)
{
    /* First: teardown, which follows a failed setup too, finishes it. */
    weft__stack_helper_init(&rt->stack_helper, false);
    rt->queues_copy = NULL;
    int r = weft__config_resolve(cfg, &rt->cfg);
    if (r == 0)
        r = copy_queues(rt);
    if (r < 0)
        return r;
    rt->stack_helper.enabled = !rt->cfg.no_stack_helper;
    rt->default_stack_class = weft__stack_class(rt->cfg.stack_size);
    atomic_init(&rt->next_task_id, 1);
    init_pseudo_root(&rt->root);
    init_pseudo_root(&rt->orphans);
    pthread_mutex_init(&rt->lazy_lock, NULL);
    pthread_mutex_init(&rt->inject_lock, NULL);
    return 0;
}

void weft__runtime_teardown(weft__runtime *rt)
{
    weft__stack_helper_fini(&rt->stack_helper);
    /* Signals first: every task has finished, so none can wait for one, and
     * a Ctrl-C while the pool's abandoned jobs are waited for then meets
     * the program's own disposition (it ends the program) instead of a
     * handler that would drop it. */
    weft__signals_fini(rt);
    weft__blocking_fini(rt);
    /* Outside spawns that never ran (the runtime failed to start). */
    weft__inject_drop_all(rt);
    pthread_mutex_destroy(&rt->lazy_lock);
    pthread_mutex_destroy(&rt->inject_lock);
    weft__trace_close(rt);
    free(rt->queues_copy);
    rt->queues_copy = NULL;
}

static bool under_valgrind(void)
{
#ifdef WEFT_HAVE_VALGRIND
    return RUNNING_ON_VALGRIND;
#else
    return false;
#endif
}

/* The CPUs this thread may run on (its affinity, which the workers
 * inherit); 1 when that cannot be read. */
static unsigned allowed_cpus(void)
{
    cpu_set_t set;
    unsigned n = sched_getaffinity(0, sizeof set, &set) == 0 ? (unsigned)CPU_COUNT(&set) : 1;
    return n ? n : 1;
}

/* workers = 0: $WEFT_WORKERS, else the CPUs this thread may run on. */
static int resolve_workers(weft__runtime *rt)
{
    unsigned cpus = allowed_cpus();
    unsigned n = rt->cfg.workers;
    if (n == 0) {
        const char *env = getenv("WEFT_WORKERS");
        if (env && *env) {
            /* Digits only: strtoul would take blanks and a sign, and
             * "-18446744073709551615" would read as 1. */
            char *end = (char *)env;
            unsigned long v = 0;
            if (*env >= '0' && *env <= '9')
                v = strtoul(env, &end, 10);
            if (*end || v == 0 || v > WEFT_MAX_WORKERS)
                return weft__config_reject("WEFT_WORKERS: \"%s\" is not a number in 1..%u", env,
                                           WEFT_MAX_WORKERS);
            n = (unsigned)v;
        } else {
            n = cpus < WEFT_MAX_WORKERS ? cpus : WEFT_MAX_WORKERS;
        }
    }
    rt->nworkers = n;
    rt->threaded = n > 1;
    /* More workers than CPUs to run them (a server started under
     * `taskset -c 0` with two workers, say): an idle worker's spin would
     * only hold off one that has work, so idle workers park at once. */
    rt->spin_idle = n <= cpus;
    return 0;
}

/* Where idle workers sleep: in io_uring_enter, or in ppoll(2) on their
 * ring's fd ($WEFT_PARK=poll, the default under valgrind). Valgrind 3.19
 * treats io_uring_enter as a call that does not block and keeps its global
 * lock through it: a worker parked there would stop every other thread (the
 * other workers, the blocking pool) and the program would hang
 * (docs/stacks.md). */
static int resolve_park(weft__runtime *rt)
{
    const char *env = getenv("WEFT_PARK");
    if (!env || !*env) {
        rt->park_in_poll = under_valgrind();
        return 0;
    }
    if (strcmp(env, "poll") != 0 && strcmp(env, "enter") != 0)
        return weft__config_reject("WEFT_PARK: \"%s\" is neither \"enter\" nor \"poll\"", env);
    rt->park_in_poll = strcmp(env, "poll") == 0;
    return 0;
}

/* Workers 1..N-1 run on threads of their own. A ring must be made on its
 * own thread (SINGLE_ISSUER), so each worker sets itself up there; all meet
 * at two gates: set up (or failed), and out of their loops. Memory moves
 * between workers (a task's stack and record may come from any pool), so
 * the pools are released only after every worker has stopped. */
typedef struct start_sync {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned expected; /* workers that exist: the threads started, plus the caller */
    unsigned ready, done;
} start_sync;

static void gate(start_sync *s, unsigned *count)
{
    pthread_mutex_lock(&s->lock);
    (*count)++;
    pthread_cond_broadcast(&s->cond);
    while (*count < s->expected)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static void record_error(weft__runtime *rt, int r)
{
    int zero = 0;
    if (r < 0)
        atomic_compare_exchange_strong(&rt->start_error, &zero, r);
}

static void *worker_thread(void *arg)
{
    weft__worker *w = arg;
    weft__runtime *rt = w->rt;
    start_sync *sync = rt->start_sync;
    char name[16];
    snprintf(name, sizeof name, "weft-%u", w->index);
    pthread_setname_np(pthread_self(), name);
    int r = weft__worker_init(w, rt, w->index, false);
    record_error(rt, r);
    gate(sync, &sync->ready);
    if (r == 0 && atomic_load(&rt->start_error) == 0) {
        weft__worker_set_self(w);
        weft__worker_run(w);
        weft__worker_set_self(NULL);
    }
    gate(sync, &sync->done);
    if (r == 0)
        weft__worker_fini(w);
    return NULL;
}

static void drop_start_hold(weft__runtime *rt)
{
    if (atomic_fetch_sub(&rt->live_tasks, 1) == 1)
        weft__runtime_wake_all(rt);
}

int weft_run(const weft_config *cfg, weft_fn main_fn, void *arg, void **result)
{
    if (result)
        *result = NULL;
    if (weft__worker_self())
        return -EBUSY;
    weft__runtime *rt = weft__calloc(1, sizeof *rt);
    if (!rt)
        return -ENOMEM;
    int r = weft__runtime_setup(rt, cfg);
    if (r == 0 && !main_fn)
        r = weft__config_reject("main_fn: NULL");
    if (r == 0)
        r = resolve_workers(rt);
    if (r == 0)
        r = resolve_park(rt);
    if (r == 0) {
        rt->direct_tag_base = weft__direct_tags_take(rt->nworkers);
        rt->workers =
            weft__calloc_aligned(rt->nworkers, sizeof(weft__worker), _Alignof(weft__worker));
        if (!rt->workers)
            r = -ENOMEM;
    }
    /* Last, so that a run refused for bad arguments leaves an existing
     * trace file as it was. */
    if (r == 0 && rt->cfg.trace_path)
        r = weft__trace_open(rt, rt->cfg.trace_path);
    /* After every check of the arguments: a refused run must not have
     * replaced the process's signal dispositions, even for a moment. */
    if (r == 0)
        r = weft__signals_catch(rt, rt->cfg.catch_signals, rt->cfg.ncatch_signals);
    if (r < 0) {
        weft__runtime_teardown(rt);
        free(rt->workers);
        free(rt);
        return r;
    }
    /* Held until the main task exists, so that no worker sees an empty
     * runtime and stops before it starts. */
    atomic_store(&rt->live_tasks, 1);
    start_sync sync = {.expected = 1};
    pthread_mutex_init(&sync.lock, NULL);
    pthread_cond_init(&sync.cond, NULL);
    rt->start_sync = &sync;
    for (unsigned i = 1; i < rt->nworkers; i++) {
        rt->workers[i].rt = rt;
        rt->workers[i].index = i;
        pthread_mutex_lock(&sync.lock);
        int e = weft__fault_hit(WEFT_FAULT_THREAD)
                    ? EAGAIN
                    : pthread_create(&rt->workers[i].thread, NULL, worker_thread, &rt->workers[i]);
        if (e == 0)
            sync.expected++;
        pthread_mutex_unlock(&sync.lock);
        if (e) {
            record_error(rt, -e);
            break;
        }
    }
    unsigned started = sync.expected;
    weft__worker *w = &rt->workers[0];
    r = weft__worker_init(w, rt, 0, false);
    record_error(rt, r);
    bool w_up = r == 0;
    gate(&sync, &sync.ready);
    weft_task *main_task = NULL;
    bool held = true;
    if (atomic_load(&rt->start_error) == 0) {
        weft__worker_set_self(w);
        weft_spawn_opts opts = {.name = "main"};
        r = weft_spawn_ex(&main_task, &opts, main_fn, arg);
        if (r == 0) {
            rt->main_task = main_task;
            drop_start_hold(rt);
            held = false;
            weft__worker_run(w);
        }
        record_error(rt, r);
    }
    if (held)
        drop_start_hold(rt); /* nothing ran: this lets the other workers go */
    gate(&sync, &sync.done);
    r = atomic_load(&rt->start_error);
    if (main_task) {
        if (r == 0) {
            r = main_task->outcome;
            if (result)
                *result = main_task->result;
        }
        /* Drop the handle the runtime held; the record is freed here. */
        atomic_fetch_and_explicit(&main_task->state, ~TASK_JOIN_INTEREST, memory_order_relaxed);
        weft__task_ref_drop(main_task);
    }
    weft__worker_set_self(NULL);
    for (unsigned i = 1; i < started; i++)
        pthread_join(rt->workers[i].thread, NULL);
    if (w_up)
        weft__worker_fini(w);
    /* Nothing runs any more: every pool can go (empty for a worker that
     * never started). */
    weft__stack_helper_stop(&rt->stack_helper); /* before the pools it fills */
    int64_t records_held = 0;
    for (unsigned i = 0; i < rt->nworkers; i++)
        records_held += rt->workers[i].records.outstanding;
    for (unsigned i = 0; i < rt->nworkers; i++)
        weft__worker_release_pools(&rt->workers[i], records_held != 0);
    pthread_mutex_destroy(&sync.lock);
    pthread_cond_destroy(&sync.cond);
    weft__runtime_teardown(rt);
    free(rt->workers);
    free(rt);
    return r;
}

int weft_worker_index(void)
{
    weft__worker *w = weft__worker_self();
    return w && w->current ? (int)w->index : -EPERM;
}

unsigned weft_worker_count(void)
{
    weft__worker *w = weft__worker_self();
    return w ? w->rt->nworkers : 0;
}
