/* The blocking pool (weft_spawn_blocking), weft_getaddrinfo and
 * weft_signal_wait. Cases named *_2w rerun a case with two workers and are
 * skipped while weft_run answers -ENOTSUP for that.
 *
 * Nothing here bounds wall-clock time: jobs wait on gates the test opens,
 * and "in place" checks poll with short sleeps. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "common/fault.h"
#include "ring/ring.h"
#include "runtime/config.h"
#include "runtime/blocking.h"
#include "runtime/worker.h"
#include "test.h"

#define SLEEP_NS 100000ull /* between polls */

/* Runs fn(arg) on a runtime with `workers` workers and returns its result. */
static void *run_workers(unsigned workers, weft_fn fn, void *arg)
{
    weft_config cfg = {.workers = workers};
    void *res = NULL;
    int r = weft_run(&cfg, fn, arg, &res);
    if (r != 0)
        FAILF("weft_run: %d (%s) %s", r, weft_strerror(r), weft_last_config_error());
    return res;
}

/* One case on one worker and a twin on two. */
#define BOTH_WORKERS(name, fn, arg)                                                                \
    TEST(name)                                                                                     \
    {                                                                                              \
        run_workers(1, fn, arg);                                                                   \
    }                                                                                              \
    TEST(name##_2w)                                                                                \
    {                                                                                              \
        run_workers(2, fn, arg);                                                                   \
    }

/* A gate jobs wait on until the test opens it. */
static _Atomic int gate_open, gated_started, gated_finished;

static void *gated(void *arg)
{
    atomic_fetch_add(&gated_started, 1);
    while (!atomic_load(&gate_open))
        usleep(100);
    atomic_fetch_add(&gated_finished, 1);
    return arg;
}

static void wait_until_started(int n)
{
    while (atomic_load(&gated_started) < n)
        ASSERT_OK(weft_sleep_ns(SLEEP_NS));
}

static int threads_named(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* the thread just exited */
        if (fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = 0;
            n += strcmp(comm, name) == 0;
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* Whether no thread is named `name`, waiting for stragglers: pthread_join
 * returns once the kernel clears the thread's tid, a moment before the
 * thread leaves /proc/self/task, so a joined thread can still be listed.
 * The bound is on a hang, not on time. */
static bool no_thread_named(const char *name)
{
    for (int tries = 0; tries < 10000; tries++) {
        if (threads_named(name) == 0)
            return true;
        usleep(1000);
    }
    return false;
}

/* ---- weft_spawn_blocking ------------------------------------------------- */

static void *double_it_named(void *arg)
{
    char name[16] = {0};
    ASSERT_OK(pthread_getname_np(pthread_self(), name, sizeof name));
    ASSERT_STREQ(name, "weft-blocking");
    /* Not a task: blocking calls refuse. */
    ASSERT_EQ(weft_spawn_blocking(double_it_named, NULL, NULL), -EPERM);
    return (void *)((intptr_t)arg * 2);
}

static void *main_result(void *arg)
{
    void *res = NULL;
    ASSERT_OK(weft_spawn_blocking(double_it_named, (void *)21, &res));
    ASSERT_EQ((intptr_t)res, 42);
    /* result may be NULL; the pool's thread is reused. */
    ASSERT_OK(weft_spawn_blocking(double_it_named, (void *)1, NULL));
    ASSERT_OK(weft_spawn_blocking(double_it_named, (void *)5, &res));
    ASSERT_EQ((intptr_t)res, 10);
    return NULL;
}
BOTH_WORKERS(spawn_blocking_returns_result, main_result, NULL)

static void *gated_child(void *arg)
{
    void *res = NULL;
    ASSERT_OK(weft_spawn_blocking(gated, arg, &res));
    return res;
}

static void *main_others_run(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, gated_child, (void *)7));
    wait_until_started(1);
    /* The job holds its pool thread, not the worker: this task (and any
     * other) keeps running. */
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(weft_yield());
    ASSERT_EQ(atomic_load(&gated_finished), 0);
    atomic_store(&gate_open, 1);
    void *res = NULL;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, 7);
    return NULL;
}
BOTH_WORKERS(other_tasks_run_while_one_blocks, main_others_run, NULL)

#define MANY 16
static _Atomic int running, max_running;

/* Returns only once all MANY jobs run at the same time: proves the pool grew
 * to MANY threads. */
static void *all_together(void *arg)
{
    atomic_fetch_add(&running, 1);
    while (atomic_load(&running) < MANY)
        usleep(100);
    return (void *)((intptr_t)arg * 3 + 1);
}

static void *many_child(void *arg)
{
    void *res = NULL;
    ASSERT_OK(weft_spawn_blocking(all_together, arg, &res));
    ASSERT_EQ((intptr_t)res, (intptr_t)arg * 3 + 1);
    return res;
}

static void *main_many(void *arg)
{
    weft_task *t[MANY];
    for (intptr_t i = 0; i < MANY; i++)
        ASSERT_OK(weft_spawn(&t[i], many_child, (void *)i));
    for (intptr_t i = 0; i < MANY; i++) {
        void *res = NULL;
        ASSERT_OK(weft_join(t[i], &res));
        ASSERT_EQ((intptr_t)res, i * 3 + 1);
    }
    ASSERT_GE(threads_named("weft-blocking"), MANY);
    return NULL;
}
BOTH_WORKERS(many_concurrent_jobs_use_many_threads, main_many, NULL)

static void *counted(void *arg)
{
    int now = atomic_fetch_add(&running, 1) + 1;
    int seen = atomic_load(&max_running);
    while (now > seen && !atomic_compare_exchange_weak(&max_running, &seen, now))
        ;
    usleep(500);
    atomic_fetch_sub(&running, 1);
    return (void *)((intptr_t)arg + 100);
}

static void *counted_child(void *arg)
{
    void *res = NULL;
    ASSERT_OK(weft_spawn_blocking(counted, arg, &res));
    return res;
}

static void *main_capped(void *arg)
{
    weft_task *t[10];
    for (intptr_t i = 0; i < 10; i++)
        ASSERT_OK(weft_spawn(&t[i], counted_child, (void *)i));
    for (intptr_t i = 0; i < 10; i++) {
        void *res = NULL;
        ASSERT_OK(weft_join(t[i], &res));
        ASSERT_EQ((intptr_t)res, i + 100);
    }
    ASSERT_LE(atomic_load(&max_running), 2);
    ASSERT_LE(threads_named("weft-blocking"), 2);
    return NULL;
}
TEST(jobs_queue_beyond_the_thread_cap)
{
    weft__blocking_max_threads = 2;
    run_workers(1, main_capped, NULL);
}

static _Atomic int child_rc, main_returned;
static void *_Atomic child_res;

static void *gated_child_rc(void *arg)
{
    void *res = (void *)1;
    atomic_store(&child_rc, weft_spawn_blocking(gated, arg, &res));
    atomic_store(&child_res, res);
    return NULL;
}

static void *main_cancel(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, gated_child_rc, (void *)9));
    wait_until_started(1);
    ASSERT_OK(weft_cancel(t));
    /* The task gives up at once although the job cannot finish yet. */
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&child_rc), -ECANCELED);
    ASSERT(atomic_load(&child_res) == NULL);
    ASSERT_EQ(atomic_load(&gated_finished), 0);
    if (arg)
        atomic_store(&gate_open, 1); /* else a thread opens it after this returns */
    atomic_store(&main_returned, 1);
    return NULL;
}

static void *open_gate_after_main(void *arg)
{
    while (!atomic_load(&main_returned))
        usleep(100);
    atomic_store(&gate_open, 1);
    return NULL;
}

TEST(cancel_returns_at_once_and_the_job_finishes_later)
{
    run_workers(1, main_cancel, (void *)1);
    /* weft_run waited for the abandoned job. */
    ASSERT_EQ(atomic_load(&gated_finished), 1);
}
TEST(cancel_returns_at_once_and_the_job_finishes_later_2w)
{
    run_workers(2, main_cancel, (void *)1);
    ASSERT_EQ(atomic_load(&gated_finished), 1);
}
TEST(runtime_end_waits_for_an_abandoned_job)
{
    /* The gate opens only after the main task is done: weft_run must wait
     * for the job and still end cleanly. */
    pthread_t opener;
    ASSERT_OK(pthread_create(&opener, NULL, open_gate_after_main, NULL));
    run_workers(1, main_cancel, NULL);
    ASSERT_EQ(atomic_load(&gated_finished), 1);
    ASSERT_OK(pthread_join(opener, NULL));
}

/* weft_config.blocking_exit_wait_ns: weft_run waits that long at most for
 * an abandoned job still running. One left behind finishes on its own,
 * its release runs, and its thread exits (with nothing leaked: ASan's
 * leak check sees the pool, which that thread frees). */
static _Atomic int released, run_returned, opened_by_timer;

static void count_release(void *arg, void *result)
{
    ASSERT(arg == (void *)5 && result == (void *)5);
    atomic_fetch_add(&released, 1);
}

static void *gated_child_ex(void *arg)
{
    atomic_store(&child_rc, weft_spawn_blocking_ex(gated, arg, NULL, count_release));
    return NULL;
}

static void *main_abandon_gated(void *arg)
{
    (void)arg;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, gated_child_ex, (void *)5));
    wait_until_started(1);
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&child_rc), -ECANCELED);
    return NULL;
}

/* Opens the gate after 20 s if weft_run has not returned by then: a bound
 * on a hang, not on time. */
static void *open_gate_if_stuck(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000 && !atomic_load(&run_returned); i++)
        usleep(1000);
    if (!atomic_load(&run_returned)) {
        atomic_store(&opened_by_timer, 1);
        atomic_store(&gate_open, 1);
    }
    return NULL;
}

TEST(runtime_end_leaves_a_job_behind_past_the_exit_wait)
{
    pthread_t timer;
    ASSERT_OK(pthread_create(&timer, NULL, open_gate_if_stuck, NULL));
    weft_config cfg = {.workers = 1, .blocking_exit_wait_ns = 1000000};
    ASSERT_OK(weft_run(&cfg, main_abandon_gated, NULL, NULL));
    atomic_store(&run_returned, 1);
    ASSERT_OK(pthread_join(timer, NULL));
    ASSERT(!atomic_load(&opened_by_timer));
    /* The gate is still shut: the job runs on, and its thread with it. */
    ASSERT_EQ(atomic_load(&gated_finished), 0);
    ASSERT_EQ(atomic_load(&released), 0);
    ASSERT_EQ(threads_named("weft-blocking"), 1);
    atomic_store(&gate_open, 1);
    while (atomic_load(&released) < 1 || threads_named("weft-blocking") > 0)
        usleep(1000);
    ASSERT_EQ(atomic_load(&gated_finished), 1);
    ASSERT_EQ(atomic_load(&released), 1);
    /* The next runtime starts a pool of its own. */
    run_workers(1, main_result, NULL);
}

TEST(runtime_end_waits_for_a_job_that_ends_within_the_exit_wait)
{
    pthread_t opener;
    ASSERT_OK(pthread_create(&opener, NULL, open_gate_after_main, NULL));
    weft_config cfg = {.workers = 1, .blocking_exit_wait_ns = 60 * 1000000000ull};
    ASSERT_OK(weft_run(&cfg, main_cancel, NULL, NULL));
    /* Nothing left behind: the job ended, its thread was joined. */
    ASSERT_EQ(atomic_load(&gated_finished), 1);
    ASSERT(no_thread_named("weft-blocking"));
    ASSERT_OK(pthread_join(opener, NULL));
}

/* While weft_run waits for an abandoned job, the signal handlers it
 * installed are gone already: a second Ctrl-C then meets the program's
 * own disposition (it was taken by weft's handler and dropped). A thread
 * watches SIGUSR1's disposition while the job holds the runtime's end,
 * for 20 s at most (a bound on the hang), then lets the job end. */
static _Atomic int default_seen_while_waiting;

static void *watch_disposition_then_open(void *arg)
{
    (void)arg;
    while (!atomic_load(&main_returned))
        usleep(100);
    for (int i = 0; i < 20000; i++) {
        struct sigaction now;
        ASSERT_OK(sigaction(SIGUSR1, NULL, &now));
        if (!(now.sa_flags & SA_SIGINFO) && now.sa_handler == SIG_DFL) {
            atomic_store(&default_seen_while_waiting, 1);
            break;
        }
        usleep(1000);
    }
    ASSERT_EQ(atomic_load(&gated_finished), 0); /* the job still held the end */
    atomic_store(&gate_open, 1);
    return NULL;
}

TEST(signal_handlers_are_given_back_before_the_wait_for_jobs)
{
    static const int caught[] = {SIGUSR1};
    weft_config cfg = {.workers = 1, .catch_signals = caught, .ncatch_signals = 1};
    pthread_t watcher;
    ASSERT_OK(pthread_create(&watcher, NULL, watch_disposition_then_open, NULL));
    ASSERT_OK(weft_run(&cfg, main_cancel, NULL, NULL));
    ASSERT_OK(pthread_join(watcher, NULL));
    ASSERT_EQ(atomic_load(&gated_finished), 1);
    ASSERT(atomic_load(&default_seen_while_waiting));
}

static void *main_deadline(void *arg)
{
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 2000000));
    void *res = (void *)1;
    ASSERT_EQ(weft_spawn_blocking(gated, (void *)3, &res), -ETIMEDOUT);
    ASSERT(res == NULL);
    ASSERT_OK(weft_deadline_pop());
    atomic_store(&gate_open, 1);
    return NULL;
}
BOTH_WORKERS(deadline_times_out, main_deadline, NULL)

static _Atomic int marks;
static void *mark(void *arg)
{
    atomic_fetch_add(&marks, 1);
    return NULL;
}

static void *cancelled_child(void *arg)
{
    /* Cancelled while it yields: the next blocking call refuses at once. */
    while (weft_yield() == 0)
        ;
    atomic_store(&child_rc, weft_spawn_blocking(mark, NULL, NULL));
    return NULL;
}

static void *main_already_cancelled(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, cancelled_child, NULL));
    ASSERT_OK(weft_yield());
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&child_rc), -ECANCELED);
    return NULL;
}
TEST(a_cancelled_task_starts_no_job)
{
    run_workers(1, main_already_cancelled, NULL);
    ASSERT_EQ(atomic_load(&marks), 0);
}

static void *mark_child(void *arg)
{
    atomic_store(&child_rc, 1);
    atomic_store(&child_rc, weft_spawn_blocking(mark, NULL, NULL));
    return NULL;
}

static void *main_abandoned_queued(void *arg)
{
    /* One thread, held by a gated job: the next job queues. */
    weft_task *g, *t;
    ASSERT_OK(weft_spawn(&g, gated_child, NULL));
    wait_until_started(1);
    ASSERT_OK(weft_spawn(&t, mark_child, NULL));
    while (atomic_load(&child_rc) == 0)
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_yield()); /* one worker: the child is parked now */
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&child_rc), -ECANCELED);
    ASSERT_EQ(atomic_load(&marks), 0);
    atomic_store(&gate_open, 1);
    ASSERT_OK(weft_join(g, NULL));
    return NULL;
}
TEST(an_abandoned_queued_job_still_runs)
{
    weft__blocking_max_threads = 1;
    run_workers(1, main_abandoned_queued, NULL);
    /* Documented: once accepted, fn runs exactly once. */
    ASSERT_EQ(atomic_load(&marks), 1);
}

static void *main_misuse(void *arg)
{
    void *res = (void *)1;
    ASSERT_EQ(weft_spawn_blocking(NULL, NULL, &res), -EINVAL);
    ASSERT(res == NULL);
    return NULL;
}
TEST(misuse)
{
    void *res = (void *)1;
    ASSERT_EQ(weft_spawn_blocking(mark, NULL, &res), -EPERM);
    ASSERT(res == NULL);
    ASSERT_EQ(weft_spawn_blocking(NULL, NULL, NULL), -EINVAL);
    run_workers(1, main_misuse, NULL);
    ASSERT_EQ(atomic_load(&marks), 0);
}

static void *main_keepalive(void *arg)
{
    ASSERT_OK(weft_spawn_blocking(mark, NULL, NULL));
    while (threads_named("weft-blocking") > 0)
        ASSERT_OK(weft_sleep_ns(SLEEP_NS));
    /* The exited thread is joined and a new one started. */
    ASSERT_OK(weft_spawn_blocking(mark, NULL, NULL));
    ASSERT_EQ(atomic_load(&marks), 2);
    return NULL;
}
TEST(idle_threads_exit_after_the_keepalive)
{
    weft__blocking_keepalive_ns = 1000000;
    run_workers(1, main_keepalive, NULL);
}

static void *main_alloc_failures(void *arg)
{
    /* The pool; then the job (after the pool); then the thread record
     * (after the job, the pool exists now). */
    static const uint64_t nth[] = {1, 2, 2};
    for (size_t i = 0; i < 3; i++) {
        weft__fault_arm(WEFT_FAULT_ALLOC, nth[i]);
        ASSERT_EQ(weft_spawn_blocking(mark, NULL, NULL), -ENOMEM);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
    }
    ASSERT_EQ(atomic_load(&marks), 0);
    ASSERT_OK(weft_spawn_blocking(mark, NULL, NULL));
    ASSERT_EQ(atomic_load(&marks), 1);
    /* weft_getaddrinfo: its request, then the job. */
    for (uint64_t k = 1; k <= 2; k++) {
        struct addrinfo *ai = NULL;
        weft__fault_arm(WEFT_FAULT_ALLOC, k);
        ASSERT_EQ(weft_getaddrinfo("127.0.0.1", NULL, NULL, &ai), -ENOMEM);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        ASSERT(ai == NULL);
    }
    return NULL;
}
TEST(allocation_failures)
{
    run_workers(1, main_alloc_failures, NULL);
}

/* ---- weft_getaddrinfo ---------------------------------------------------- */

static void *main_gai_numeric(void *arg)
{
    struct addrinfo hints = {.ai_family = AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    ASSERT_OK(weft_getaddrinfo("127.0.0.1", "8080", &hints, &ai));
    ASSERT(ai != NULL);
    ASSERT_EQ(ai->ai_family, AF_INET);
    ASSERT_EQ(ai->ai_socktype, SOCK_STREAM);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
    ASSERT_EQ(ntohs(sin->sin_port), 8080);
    ASSERT_EQ(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    freeaddrinfo(ai);

    hints.ai_family = AF_INET6;
    ASSERT_OK(weft_getaddrinfo("::1", "443", &hints, &ai));
    ASSERT_EQ(ai->ai_family, AF_INET6);
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ai->ai_addr;
    ASSERT_EQ(ntohs(sin6->sin6_port), 443);
    ASSERT(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    freeaddrinfo(ai);

    /* No hints, no service. */
    ASSERT_OK(weft_getaddrinfo("10.1.2.3", NULL, NULL, &ai));
    ASSERT(ai != NULL);
    freeaddrinfo(ai);
    return NULL;
}
BOTH_WORKERS(getaddrinfo_numeric, main_gai_numeric, NULL)

static bool hosts_has_localhost(void)
{
    FILE *f = fopen("/etc/hosts", "r");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        for (char *tok = strtok(line, " \t\n"); tok && !found; tok = strtok(NULL, " \t\n"))
            found = strcmp(tok, "localhost") == 0;
    }
    fclose(f);
    return found;
}

static void *main_gai_localhost(void *arg)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int r = weft_getaddrinfo("localhost", "80", &hints, &ai);
    if (r != 0)
        FAILF("localhost: %d (%s)", r, weft_strerror(r));
    bool loopback = false;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        if (p->ai_family == AF_INET)
            loopback |= (ntohl(((struct sockaddr_in *)p->ai_addr)->sin_addr.s_addr) >> 24) == 127;
        else if (p->ai_family == AF_INET6)
            loopback |= IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr);
    }
    ASSERT(loopback);
    freeaddrinfo(ai);
    return NULL;
}
TEST(getaddrinfo_localhost)
{
    if (!hosts_has_localhost())
        SKIP("/etc/hosts has no localhost entry (the test never asks DNS)");
    run_workers(1, main_gai_localhost, NULL);
}

static void *main_gai_errors(void *arg)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST};
    struct addrinfo *ai = (struct addrinfo *)1;
    int r = weft_getaddrinfo("not a host", NULL, &hints, &ai);
    ASSERT_EQ(r, WEFT_EAI(EAI_NONAME));
    ASSERT(ai == NULL);
    ASSERT(WEFT_IS_EAI(r));
    ASSERT_EQ(WEFT_EAI_CODE(r), EAI_NONAME);
    ASSERT_STREQ(weft_strerror(r), gai_strerror(EAI_NONAME));
    /* No collision with -errno codes or weft's own. */
    ASSERT_LT(r, -4000);
    ASSERT(!WEFT_IS_EAI(-ENOENT) && !WEFT_IS_EAI(WEFT_EPANIC) && !WEFT_IS_EAI(0));

    hints = (struct addrinfo){.ai_family = 12345};
    ASSERT_EQ(weft_getaddrinfo("127.0.0.1", NULL, &hints, &ai), WEFT_EAI(EAI_FAMILY));
    hints = (struct addrinfo){.ai_flags = AI_NUMERICSERV};
    ASSERT_EQ(weft_getaddrinfo("127.0.0.1", "http", &hints, &ai), WEFT_EAI(EAI_NONAME));
    ASSERT_EQ(weft_getaddrinfo("127.0.0.1", NULL, NULL, NULL), -EINVAL);
    return NULL;
}
TEST(getaddrinfo_errors)
{
    struct addrinfo *ai = (struct addrinfo *)1;
    ASSERT_EQ(weft_getaddrinfo("127.0.0.1", NULL, NULL, &ai), -EPERM);
    ASSERT(ai == NULL);
    run_workers(1, main_gai_errors, NULL);
}

static void *gai_child(void *arg)
{
    struct addrinfo *ai = (struct addrinfo *)1;
    atomic_store(&child_rc, 1);
    atomic_store(&child_rc, weft_getaddrinfo("127.0.0.1", "80", NULL, &ai));
    atomic_store(&child_res, (void *)ai);
    return NULL;
}

static void *main_gai_abandoned(void *arg)
{
    weft_task *g, *t;
    ASSERT_OK(weft_spawn(&g, gated_child, NULL));
    wait_until_started(1);
    ASSERT_OK(weft_spawn(&t, gai_child, NULL));
    while (atomic_load(&child_rc) == 0)
        ASSERT_OK(weft_yield());
    ASSERT_OK(weft_yield()); /* one worker: the child is parked now */
    if (arg) {
        ASSERT_OK(weft_cancel(t));
        ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
        ASSERT_EQ(atomic_load(&child_rc), -ECANCELED);
        ASSERT(atomic_load(&child_res) == NULL);
    }
    atomic_store(&gate_open, 1);
    if (!arg) {
        ASSERT_OK(weft_join(t, NULL));
        ASSERT_OK(atomic_load(&child_rc));
        freeaddrinfo(atomic_load(&child_res));
    }
    ASSERT_OK(weft_join(g, NULL));
    return NULL;
}
TEST(getaddrinfo_cancelled_while_queued_is_dropped)
{
    /* ASan's leak check proves the request is freed either way. */
    weft__blocking_max_threads = 1;
    run_workers(1, main_gai_abandoned, (void *)1);
}
TEST(getaddrinfo_queued_then_run)
{
    weft__blocking_max_threads = 1;
    run_workers(1, main_gai_abandoned, NULL);
}

static void *gai_deadline(void *arg)
{
    /* Passed already: nothing is submitted and nothing leaks. */
    ASSERT_OK(weft_deadline_push(weft_now_ns()));
    struct addrinfo *ai = NULL;
    ASSERT_EQ(weft_getaddrinfo("127.0.0.1", NULL, NULL, &ai), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}
TEST(getaddrinfo_past_deadline)
{
    run_workers(1, gai_deadline, NULL);
}

/* ---- weft_signal_wait ---------------------------------------------------- */

static void wait_for_waiters(int signo, unsigned n)
{
    while (weft__signal_waiters(signo) < n)
        ASSERT_OK(weft_sleep_ns(SLEEP_NS));
}

static void *signal_waiter(void *arg)
{
    return (void *)(intptr_t)weft_signal_wait((int)(intptr_t)arg);
}

/* TSan runs a handler late when the signal lands on a thread that is in a
 * system call it does not intercept (a worker in io_uring_enter) and does
 * not return from it, so under TSan the killer sends the signal to itself.
 * Elsewhere it sends it to the process: the kernel then prefers the main
 * thread, a worker parked in io_uring_enter. */
#if defined(__SANITIZE_THREAD__)
#define SIGNAL_THE_PROCESS(signo) raise(signo)
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SIGNAL_THE_PROCESS(signo) raise(signo)
#endif
#endif
#ifndef SIGNAL_THE_PROCESS
#define SIGNAL_THE_PROCESS(signo) kill(getpid(), (signo))
#endif

static void *killer_thread(void *arg)
{
    ASSERT_OK(SIGNAL_THE_PROCESS((int)(intptr_t)arg));
    return NULL;
}

static void *main_signal(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter, (void *)SIGUSR1));
    wait_for_waiters(SIGUSR1, 1);
    ASSERT_OK(raise(SIGUSR1));
    void *res = NULL;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR1);

    /* From a thread the runtime does not know: the handler runs there. */
    ASSERT_OK(weft_spawn(&t, signal_waiter, (void *)SIGUSR1));
    wait_for_waiters(SIGUSR1, 1);
    pthread_t killer;
    ASSERT_OK(pthread_create(&killer, NULL, killer_thread, (void *)SIGUSR1));
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR1);
    ASSERT_OK(pthread_join(killer, NULL));
    return NULL;
}
BOTH_WORKERS(signal_wait_returns_the_signal, main_signal, NULL)

static void *main_signal_broadcast(void *arg)
{
    weft_task *t[3];
    for (int i = 0; i < 3; i++)
        ASSERT_OK(weft_spawn(&t[i], signal_waiter, (void *)SIGUSR2));
    wait_for_waiters(SIGUSR2, 3);
    ASSERT_OK(raise(SIGUSR2));
    for (int i = 0; i < 3; i++) {
        void *res = NULL;
        ASSERT_OK(weft_join(t[i], &res));
        ASSERT_EQ((intptr_t)res, SIGUSR2);
    }
    return NULL;
}
BOTH_WORKERS(signal_wakes_every_waiter, main_signal_broadcast, NULL)

static void *main_signal_pending(void *arg)
{
    /* The first wait installs the handler; a signal before it would have
     * had the default disposition. */
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter, (void *)SIGUSR1));
    wait_for_waiters(SIGUSR1, 1);
    ASSERT_OK(raise(SIGUSR1));
    ASSERT_OK(weft_join(t, NULL));

    /* Nobody waits: remembered. (raise returns after the handler ran.) */
    ASSERT_OK(raise(SIGUSR1));
    ASSERT_EQ(weft_signal_wait(SIGUSR1), SIGUSR1);

    /* Two arrivals with nobody waiting coalesce into one. */
    ASSERT_OK(raise(SIGUSR1));
    ASSERT_OK(raise(SIGUSR1));
    ASSERT_EQ(weft_signal_wait(SIGUSR1), SIGUSR1);
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 2000000));
    ASSERT_EQ(weft_signal_wait(SIGUSR1), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}
BOTH_WORKERS(signal_arriving_with_no_waiter_is_remembered, main_signal_pending, NULL)

/* One arrival, one waiter: between the wake and the waiter's run, a new
 * wait took the same arrival for one that had found no waiter, and
 * returned at once. */
static void *main_signal_reported_once(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter, (void *)SIGUSR1));
    wait_for_waiters(SIGUSR1, 1);
    ASSERT_OK(raise(SIGUSR1));
    /* Hold the only worker until the helper thread has woken the waiter,
     * which then waits in this worker's queue of remote wakes. */
    while (!weft__worker_remote_pending(weft__worker_self()))
        usleep(1000);
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 20000000));
    ASSERT_EQ(weft_signal_wait(SIGUSR1), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    void *res = NULL;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR1);
    return NULL;
}
TEST(one_arrival_is_reported_once)
{
    run_workers(1, main_signal_reported_once, NULL);
}

/* Windows that only a slow thread opens. This program links with
 * -Wl,--wrap=pthread_mutex_lock (tests/CMakeLists.txt): every lock taken in
 * it, weft's included, comes through here, and an armed case stalls one
 * thread at its next lock. */
int __real_pthread_mutex_lock(pthread_mutex_t *m);
int __wrap_pthread_mutex_lock(pthread_mutex_t *m);
static _Atomic uint64_t raise_at_lock_in_task; /* a task id; 0: off */
static _Atomic bool hold_signal_helper;        /* stall weft-signals at its next lock */
static _Atomic bool signal_helper_held;
static _Atomic uint64_t raise_both_at_lock_in_task; /* a task id: raise USR2, USR1; 0: off */
static _Thread_local bool in_lock_wrapper;

static void stall_at_lock(void)
{
    uint64_t both = atomic_load(&raise_both_at_lock_in_task);
    if (both && weft_self_id() == both &&
        atomic_compare_exchange_strong(&raise_both_at_lock_in_task, &both, 0)) {
        /* Both arrive as this task is about to take the hub lock. */
        raise(SIGUSR2);
        raise(SIGUSR1);
    }
    uint64_t id = atomic_load(&raise_at_lock_in_task);
    if (id && weft_self_id() == id &&
        atomic_compare_exchange_strong(&raise_at_lock_in_task, &id, 0)) {
        /* The signal arrives here, and the helper passes it on before this
         * task goes on: it wakes the task, which is running (NOTIFIED). */
        raise(SIGUSR1);
        while (!(atomic_load(&weft__task_current()->state) & TASK_NOTIFIED))
            usleep(1000);
    }
    char name[16] = "";
    if (atomic_load(&hold_signal_helper) &&
        pthread_getname_np(pthread_self(), name, sizeof name) == 0 &&
        strcmp(name, "weft-signals") == 0) {
        atomic_store(&signal_helper_held, true);
        while (atomic_load(&hold_signal_helper))
            usleep(1000);
    }
}

int __wrap_pthread_mutex_lock(pthread_mutex_t *m)
{
    if (!in_lock_wrapper &&
        (atomic_load_explicit(&raise_at_lock_in_task, memory_order_relaxed) ||
         atomic_load_explicit(&raise_both_at_lock_in_task, memory_order_relaxed) ||
         atomic_load_explicit(&hold_signal_helper, memory_order_relaxed))) {
        in_lock_wrapper = true;
        stall_at_lock();
        in_lock_wrapper = false;
    }
    return __real_pthread_mutex_lock(m);
}

/* Holds the weft-signals helper back at its next lock, raises signo and
 * returns once the helper is held: the arrival is counted, and no waiter
 * has been settled with it yet. atomic_store(&hold_signal_helper, false)
 * lets the helper go on. */
static void raise_with_the_helper_held(int signo)
{
    atomic_store(&signal_helper_held, false);
    atomic_store(&hold_signal_helper, true);
    ASSERT_OK(raise(signo));
    while (!atomic_load(&signal_helper_held))
        usleep(1000);
}

/* One arrival, one waiter: a new wait in the same runtime, before the helper
 * thread has even looked at the waiters, took it for one that had found
 * nobody waiting, and both reported it. */
static void *main_signal_reported_once_early(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter, (void *)SIGUSR1));
    wait_for_waiters(SIGUSR1, 1);
    raise_with_the_helper_held(SIGUSR1);
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 20000000));
    ASSERT_EQ(weft_signal_wait(SIGUSR1), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    atomic_store(&hold_signal_helper, false);
    void *res = NULL;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR1);
    return NULL;
}
TEST(one_arrival_is_reported_once_before_the_helper_runs)
{
    run_workers(1, main_signal_reported_once_early, NULL);
}

/* A cancelled wait, on its way out (before it takes the lock to leave the
 * list), is still listed when a signal arrives: the helper counts the
 * arrival as delivered to it. The wait returned -ECANCELED and the next
 * one timed out: the arrival was lost. */
static _Atomic int cancelled_wait_result;
static void *signal_waiter_noting(void *arg)
{
    atomic_store(&cancelled_wait_result, weft_signal_wait(SIGUSR1));
    return NULL;
}

static void *main_signal_cancel_race(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter_noting, NULL));
    wait_for_waiters(SIGUSR1, 1);
    atomic_store(&raise_at_lock_in_task, weft_task_id(t));
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&raise_at_lock_in_task), 0); /* the signal was raised */
    /* Arrived while the wait was listed: it reports it, and so consumes it. */
    ASSERT_EQ(atomic_load(&cancelled_wait_result), SIGUSR1);
    ASSERT_OK(weft_deadline_push(weft_now_ns() + 20000000));
    ASSERT_EQ(weft_signal_wait(SIGUSR1), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
    return NULL;
}
BOTH_WORKERS(an_arrival_as_a_cancelled_wait_leaves_is_reported, main_signal_cancel_race, NULL)

static void *main_signal_cancel(void *arg)
{
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter, (void *)SIGUSR1));
    wait_for_waiters(SIGUSR1, 1);
    ASSERT_OK(weft_cancel(t));
    /* The join reports the cancellation; the waiter's own return was
     * -ECANCELED too, and it left the wait list. */
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(weft__signal_waiters(SIGUSR1), 0);
    /* A cancelled wait consumed nothing. */
    ASSERT_OK(raise(SIGUSR1));
    ASSERT_EQ(weft_signal_wait(SIGUSR1), SIGUSR1);
    return NULL;
}
BOTH_WORKERS(signal_wait_cancelled, main_signal_cancel, NULL)

/* ---- weft_signal_wait_any ---------------------------------------------------- */

static const int usr12[] = {SIGUSR1, SIGUSR2};

static void *signal_waiter_any(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)weft_signal_wait_any(usr12, 2);
}

/* Expects an arrival of signo to be remembered: the wait returns at once
 * (a deadline turns a lost one into a failure instead of a hang). */
static void expect_remembered(int signo)
{
    ASSERT_OK(weft_deadline_push_in(5000000000ull));
    ASSERT_EQ(weft_signal_wait(signo), signo);
    ASSERT_OK(weft_deadline_pop());
}

/* Expects no arrival of signo to be left for this runtime. */
static void expect_nothing_remembered(int signo)
{
    ASSERT_OK(weft_deadline_push_in(20000000));
    ASSERT_EQ(weft_signal_wait(signo), -ETIMEDOUT);
    ASSERT_OK(weft_deadline_pop());
}

static void *main_signal_any(void *arg)
{
    (void)arg;
    /* NULL and 0 mean the runtime's caught signals: none yet. */
    ASSERT_EQ(weft_signal_wait_any(NULL, 0), -EINVAL);
    /* Either signal ends the wait, and the wait says which. */
    for (int i = 0; i < 2; i++) {
        weft_task *t;
        ASSERT_OK(weft_spawn(&t, signal_waiter_any, NULL));
        wait_for_waiters(usr12[i], 1);
        ASSERT_OK(raise(usr12[i]));
        void *res = NULL;
        ASSERT_OK(weft_join(t, &res));
        ASSERT_EQ((intptr_t)res, usr12[i]);
    }

    /* Both remembered: the lowest first, and the other is kept for the
     * next wait, not swallowed. */
    ASSERT_OK(raise(SIGUSR2));
    ASSERT_OK(raise(SIGUSR1));
    ASSERT_EQ(weft_signal_wait_any(usr12, 2), SIGUSR1);
    ASSERT_EQ(weft_signal_wait_any(usr12, 2), SIGUSR2);
    expect_nothing_remembered(SIGUSR1);
    expect_nothing_remembered(SIGUSR2);

    /* Both arrive while a wait is listed (the helper held back until
     * both have): it takes the lowest; the other stays remembered. */
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter_any, NULL));
    wait_for_waiters(SIGUSR1, 1);
    raise_with_the_helper_held(SIGUSR2);
    ASSERT_OK(raise(SIGUSR1));
    atomic_store(&hold_signal_helper, false);
    void *res = NULL;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR1);
    expect_remembered(SIGUSR2);
    expect_nothing_remembered(SIGUSR2);

    /* The same with a second task waiting for SIGUSR2 alone: each gets
     * its own, and nothing is left over. */
    weft_task *alone;
    ASSERT_OK(weft_spawn(&t, signal_waiter_any, NULL));
    ASSERT_OK(weft_spawn(&alone, signal_waiter, (void *)SIGUSR2));
    wait_for_waiters(SIGUSR2, 2);
    raise_with_the_helper_held(SIGUSR2);
    ASSERT_OK(raise(SIGUSR1));
    atomic_store(&hold_signal_helper, false);
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR1);
    ASSERT_OK(weft_join(alone, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR2);
    expect_nothing_remembered(SIGUSR1);
    expect_nothing_remembered(SIGUSR2);

    /* A signal listed twice is one signal. */
    ASSERT_OK(raise(SIGUSR1));
    ASSERT_EQ(weft_signal_wait_any((const int[]){SIGUSR1, SIGUSR1}, 2), SIGUSR1);

    /* Bad sets are refused before anything is installed or consumed. */
    ASSERT_EQ(weft_signal_wait_any(NULL, 1), -EINVAL);
    ASSERT_EQ(weft_signal_wait_any(usr12, 0), -EINVAL);
    ASSERT_EQ(weft_signal_wait_any((const int[]){SIGUSR1, SIGKILL}, 2), -EINVAL);
    ASSERT_EQ(weft_signal_wait_any((const int[]){SIGUSR1, 0}, 2), -EINVAL);
    ASSERT_EQ(weft_signal_wait_any((const int[]){SIGUSR1, NSIG}, 2), -EINVAL);
    ASSERT_EQ(weft_signal_wait_any((const int[]){SIGUSR1, SIGRTMIN - 1}, 2), -EINVAL);
    return NULL;
}
BOTH_WORKERS(signal_wait_any_returns_one_and_keeps_the_others, main_signal_any, NULL)

/* An arrival after a waiter was settled, before it left, is nobody's: it
 * stays remembered. W waits for SIGUSR2 and is given USR2 #1 (the helper
 * is held after that, so it settles nothing more); X, for USR1 or USR2, is
 * listed after it; USR2 #2 and USR1 arrive as W is about to leave. X takes
 * USR1, W reports USR2 #1, and USR2 #2 is the next wait's. (The leaving
 * waiter consumed it, and it was lost.) */
static void *main_signal_after_settle(void *arg)
{
    (void)arg;
    weft_task *w, *x;
    ASSERT_OK(weft_spawn(&w, signal_waiter, (void *)SIGUSR2));
    wait_for_waiters(SIGUSR2, 1);
    atomic_store(&raise_both_at_lock_in_task, weft_task_id(w));
    raise_with_the_helper_held(SIGUSR2);
    ASSERT_OK(weft_spawn(&x, signal_waiter_any, NULL));
    void *res = NULL;
    ASSERT_OK(weft_join(w, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR2);
    ASSERT_OK(weft_join(x, &res));
    ASSERT_EQ(atomic_load(&raise_both_at_lock_in_task), 0); /* they were raised */
    atomic_store(&hold_signal_helper, false);
    ASSERT_EQ((intptr_t)res, SIGUSR1);
    expect_remembered(SIGUSR2);
    expect_nothing_remembered(SIGUSR2);
    return NULL;
}
TEST(an_arrival_after_the_waiter_was_settled_is_remembered)
{
    run_workers(1, main_signal_after_settle, NULL);
}

/* A wait interrupted after its signal arrived, before the helper passed
 * the arrival on (held), reports it: the leaving waiter settles itself. */
static void *main_signal_cancel_before_helper(void *arg)
{
    (void)arg;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter_noting, NULL));
    wait_for_waiters(SIGUSR1, 1);
    raise_with_the_helper_held(SIGUSR1);
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    atomic_store(&hold_signal_helper, false);
    ASSERT_EQ(atomic_load(&cancelled_wait_result), SIGUSR1);
    expect_nothing_remembered(SIGUSR1);
    return NULL;
}
TEST(a_wait_cancelled_before_the_helper_ran_reports_its_signal)
{
    run_workers(1, main_signal_cancel_before_helper, NULL);
}

/* Two runtimes (weft_run on two threads) share the hub: one arrival is
 * each runtime's, once. */
static _Atomic int two_runtimes_result[2];

static void *main_one_of_two_runtimes(void *arg)
{
    intptr_t i = (intptr_t)arg;
    atomic_store(&two_runtimes_result[i], weft_signal_wait(SIGUSR1));
    expect_nothing_remembered(SIGUSR1);
    return NULL;
}

static void *run_one_of_two_runtimes(void *arg)
{
    weft_config cfg = {.workers = 1};
    run_main(&cfg, main_one_of_two_runtimes, arg);
    return NULL;
}

TEST(two_runtimes_each_get_an_arrival_once)
{
    pthread_t th[2];
    for (intptr_t i = 0; i < 2; i++)
        ASSERT_OK(pthread_create(&th[i], NULL, run_one_of_two_runtimes, (void *)i));
    while (weft__signal_waiters(SIGUSR1) < 2)
        usleep(1000);
    /* raise: the handler runs on this thread at once, TSan or not. */
    ASSERT_OK(raise(SIGUSR1));
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(pthread_join(th[i], NULL));
        ASSERT_EQ(atomic_load(&two_runtimes_result[i]), SIGUSR1);
    }
}

/* fork while a runtime waits for a signal, from a thread outside it: the
 * child starts from an empty hub. A runtime there starts its own helper,
 * so its wait ends (with the parent's hub inherited it found a helper
 * "running", none in fact, and its handler woke the parent's helper
 * through the shared eventfd), and the disposition weft replaced for the
 * parent is given back in the child. */
static void *main_wait_usr1(void *arg)
{
    (void)arg;
    ASSERT_EQ(weft_signal_wait(SIGUSR1), SIGUSR1);
    return NULL;
}

static void *run_wait_usr1(void *arg)
{
    weft_config cfg = {.workers = 1};
    run_main(&cfg, main_wait_usr1, arg);
    return NULL;
}

static void *main_child_after_fork(void *arg)
{
    (void)arg;
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter, (void *)(intptr_t)SIGUSR2));
    wait_for_waiters(SIGUSR2, 1);
    ASSERT_OK(raise(SIGUSR2));
    /* A bound on a hang, not on time: without the helper the wait never
     * ends. */
    ASSERT_OK(weft_deadline_push_in(10 * 1000000000ull));
    void *res;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_OK(weft_deadline_pop());
    ASSERT_EQ((intptr_t)res, SIGUSR2);
    return NULL;
}

TEST(a_forked_child_starts_from_an_empty_signal_hub)
{
#ifdef TEST_TSAN
    SKIP("TSan does not support threads in the child of a multi-threaded fork");
#endif
#ifdef TEST_LSAN
    /* Seen: the child's new thread waits for ever on an allocator region
     * lock that a thread of the parent held at the fork (gcc 12's
     * libasan does not take those locks around fork). */
    SKIP("ASan's allocator can deadlock a thread started in the child of a multi-threaded fork");
#endif
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, run_wait_usr1, NULL));
    while (weft__signal_waiters(SIGUSR1) < 1)
        usleep(1000);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        /* Only this thread here: no waiter, and SIGUSR1 as it was. */
        struct sigaction now;
        if (weft__signal_waiters(SIGUSR1) != 0 || sigaction(SIGUSR1, NULL, &now) != 0 ||
            now.sa_handler != SIG_DFL)
            _exit(2);
        weft_config cfg = {.workers = 1};
        run_main(&cfg, main_child_after_fork, NULL);
        _exit(0);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_OK(raise(SIGUSR1)); /* the parent's wait ends as usual */
    ASSERT_OK(pthread_join(th, NULL));
}

/* fork while one runtime runs (waiting for a signal) and another thread
 * starts and ends runtimes without pause, from a third thread outside
 * both: the child inherits none of weft's process-wide locks taken, and
 * none of the parent's runtimes. Checked in each child: the SIGSEGV
 * disposition weft installed for the parent's runtimes is given back (with
 * the parent's count inherited, a runtime of the child never put it back
 * when it ended); the parent's rings, which the child shares through the
 * descriptors it inherited, still count as weft's (weft_msg_ring refuses
 * them); and a runtime with
 * named queues starts and ends (without the handlers a child whose fork
 * met the churning thread inside a lock waited for ever; the churning
 * thread keeps the queue-name list long, so that its walk holds that lock
 * for a while). */
static atomic_bool churn_stop;

static void *churn_runtimes(void *arg)
{
    (void)arg;
    char names[WEFT_MAX_QUEUES][16];
    weft_queue_spec q[WEFT_MAX_QUEUES];
    for (unsigned round = 0; !atomic_load(&churn_stop); round++) {
        for (unsigned i = 0; i < WEFT_MAX_QUEUES; i++) {
            snprintf(names[i], sizeof names[i], "c%u.%u", round % 64, i);
            q[i] = (weft_queue_spec){.name = names[i], .weight = 1};
        }
        weft_config cfg = {.workers = 1, .queues = q, .nqueues = WEFT_MAX_QUEUES};
        run_main(&cfg, return_arg, NULL);
        for (int i = 0; i < 100; i++) /* the ring list's lock, taken */
            (void)weft__ring_is_weft(0);
    }
    return NULL;
}

static bool sigsegv_is_default(void)
{
    struct sigaction now;
    return sigaction(SIGSEGV, NULL, &now) == 0 && !(now.sa_flags & SA_SIGINFO) &&
           now.sa_handler == SIG_DFL;
}

/* In the child: 0, or which check failed. */
static int child_after_fork_with_churn(void)
{
    if (!sigsegv_is_default())
        return 2;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 3;
    struct dirent *e;
    int parents_rings = 0;
    while ((e = readdir(d))) {
        char path[300], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0)
            continue;
        link[n] = 0;
        parents_rings += strstr(link, "io_uring") && weft__ring_is_weft(atoi(e->d_name));
    }
    closedir(d);
    if (parents_rings < 1) /* the waiting runtime's, at least */
        return 4;
    static const weft_queue_spec q[] = {{.name = "child", .weight = 1}};
    weft_config cfg = {.workers = 1, .queues = q, .nqueues = 1};
    if (weft_run(&cfg, return_arg, NULL, NULL) != 0)
        return 5;
    if (!sigsegv_is_default())
        return 6;
    return 0;
}

TEST(a_forked_child_inherits_no_lock_and_no_runtime)
{
#ifdef TEST_TSAN
    SKIP("TSan does not support threads in the child of a multi-threaded fork");
#endif
#ifdef TEST_LSAN
    SKIP("ASan's allocator can deadlock the child of a multi-threaded fork");
#endif
    ASSERT(sigsegv_is_default());
    pthread_t waiter, churn;
    ASSERT_OK(pthread_create(&waiter, NULL, run_wait_usr1, NULL));
    while (weft__signal_waiters(SIGUSR1) < 1)
        usleep(1000);
    atomic_store(&churn_stop, false);
    ASSERT_OK(pthread_create(&churn, NULL, churn_runtimes, NULL));
    for (int i = 0; i < 100; i++) {
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0)
            _exit(child_after_fork_with_churn());
        /* A bound on a hang, not on time. */
        int status = 0;
        pid_t got = 0;
        for (int waited = 0; got == 0 && waited < 20000; waited++) {
            got = waitpid(pid, &status, WNOHANG);
            if (got == 0)
                usleep(1000);
        }
        if (got == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            FAILF("fork %d: the child did not finish in 20 s (a lock inherited taken?)", i);
        }
        ASSERT_EQ(got, pid);
        ASSERT(WIFEXITED(status));
        if (WEXITSTATUS(status) != 0)
            FAILF("fork %d: the child's check %d failed", i, WEXITSTATUS(status));
    }
    atomic_store(&churn_stop, true);
    ASSERT_OK(pthread_join(churn, NULL));
    ASSERT_OK(raise(SIGUSR1));
    ASSERT_OK(pthread_join(waiter, NULL));
}

/* catch_signals at start, with each allocation of the run failing in
 * turn: a run that fails says -ENOMEM and leaves the disposition, the
 * descriptors and the threads as they were. */
TEST(catch_signals_under_allocation_failures)
{
    static const int caught[] = {SIGUSR1};
    weft_config cfg = {.workers = 1, .catch_signals = caught, .ncatch_signals = 1};
    int fds = count_fds();
    int failed = 0;
    for (uint64_t n = 1; n < 40; n++) {
        weft__fault_arm(WEFT_FAULT_ALLOC, n);
        int r = weft_run(&cfg, return_arg, NULL, NULL);
        weft__fault_arm(WEFT_FAULT_ALLOC, 0);
        if (r != 0 && r != -ENOMEM)
            FAILF("allocation %llu failing: weft_run says %d", (unsigned long long)n, r);
        failed += r != 0;
        struct sigaction now;
        ASSERT_OK(sigaction(SIGUSR1, NULL, &now));
        ASSERT(now.sa_handler == SIG_DFL);
        ASSERT_EQ(count_fds(), fds);
        ASSERT(no_thread_named("weft-signals"));
    }
    ASSERT_GT(failed, 0); /* the sweep reached failure points */
}

static void *main_signal_bad(void *arg)
{
    static const int bad[] = {0, -1, NSIG, 1000, SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_EQ(weft_signal_wait(bad[i]), -EINVAL);
    return NULL;
}
TEST(signal_wait_bad_signo)
{
    ASSERT_EQ(weft_signal_wait(SIGUSR1), -EPERM);
    ASSERT_EQ(weft_signal_wait_any(usr12, 2), -EPERM);
    ASSERT_EQ(weft_signal_wait(SIGKILL), -EINVAL);
    run_workers(1, main_signal_bad, NULL);
}

static _Atomic int user_handler_calls;
static void user_handler(int signo)
{
    atomic_fetch_add(&user_handler_calls, 1);
}

static void *main_signal_once(void *arg)
{
    ASSERT_OK(raise(SIGUSR2)); /* the user's handler, still */
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, signal_waiter, (void *)SIGUSR2));
    wait_for_waiters(SIGUSR2, 1);
    ASSERT_OK(raise(SIGUSR2));
    void *res = NULL;
    ASSERT_OK(weft_join(t, &res));
    ASSERT_EQ((intptr_t)res, SIGUSR2);
    return NULL;
}
TEST(runtime_end_restores_the_disposition)
{
    struct sigaction sa = {.sa_handler = user_handler}, now;
    sigemptyset(&sa.sa_mask);
    ASSERT_OK(sigaction(SIGUSR2, &sa, NULL));
    int fds = count_fds();
    for (int round = 0; round < 2; round++) {
        run_workers(1, main_signal_once, NULL);
        ASSERT_OK(sigaction(SIGUSR2, NULL, &now));
        ASSERT(now.sa_handler == user_handler);
        ASSERT_EQ(atomic_load(&user_handler_calls), round + 1);
        ASSERT_EQ(count_fds(), fds); /* eventfd closed */
        ASSERT(no_thread_named("weft-signals"));
    }
    ASSERT_OK(raise(SIGUSR2));
    ASSERT_EQ(atomic_load(&user_handler_calls), 3);
}

/* weft_config.catch_signals: a signal that arrives before any task waits
 * for it (whose default would end the process) is remembered from the
 * start, and the disposition comes back when the runtime ends. */
static void *main_caught_from_the_start(void *arg)
{
    (void)arg;
    ASSERT_OK(raise(SIGUSR1)); /* no wait yet */
    ASSERT_OK(raise(SIGUSR2));
    ASSERT_OK(weft_deadline_push_in(5000000000ull));
    ASSERT_EQ(weft_signal_wait_any(usr12, 2), SIGUSR1);
    ASSERT_EQ(weft_signal_wait(SIGUSR2), SIGUSR2);
    /* NULL and 0: any of the caught ones, without naming them again. */
    ASSERT_OK(raise(SIGUSR2));
    ASSERT_EQ(weft_signal_wait_any(NULL, 0), SIGUSR2);
    ASSERT_OK(weft_deadline_pop());
    expect_nothing_remembered(SIGUSR1);
    return NULL;
}
TEST(caught_signals_are_remembered_from_the_start)
{
    struct sigaction before, after;
    ASSERT_OK(sigaction(SIGUSR1, NULL, &before));
    ASSERT(before.sa_handler == SIG_DFL);
    int fds = count_fds();
    static const int caught[] = {SIGUSR1, SIGUSR2};
    weft_config cfg = {.workers = 1, .catch_signals = caught, .ncatch_signals = 2};
    run_main(&cfg, main_caught_from_the_start, NULL);
    ASSERT_OK(sigaction(SIGUSR1, NULL, &after));
    ASSERT(after.sa_handler == SIG_DFL);
    ASSERT_EQ(count_fds(), fds);
    ASSERT(no_thread_named("weft-signals"));
}

/* A signal that lands the moment weft's handler is in place belongs to the
 * wait (or the catch_signals run) that put it there. weft's sigaction call
 * comes through __wrap_sigaction (-Wl,--wrap=sigaction, tests/CMakeLists.txt),
 * which raises SIGUSR1 right after installing the handler when armed.
 * Before 2026-12-07 the arrival count was read after the install, and that
 * arrival was taken as seen: lost. */
int __real_sigaction(int signo, const struct sigaction *sa, struct sigaction *old);
int __wrap_sigaction(int signo, const struct sigaction *sa, struct sigaction *old);
static _Atomic bool raise_after_install;
static _Atomic int usr1_installs; /* weft's handler put in for SIGUSR1 */

int __wrap_sigaction(int signo, const struct sigaction *sa, struct sigaction *old)
{
    int r = __real_sigaction(signo, sa, old);
    if (r == 0 && signo == SIGUSR1 && sa && sa->sa_handler != SIG_DFL && sa->sa_handler != SIG_IGN)
        atomic_fetch_add(&usr1_installs, 1);
    bool armed = true;
    if (r == 0 && signo == SIGUSR1 && sa && sa->sa_handler != SIG_DFL &&
        sa->sa_handler != SIG_IGN &&
        atomic_compare_exchange_strong(&raise_after_install, &armed, false))
        raise(SIGUSR1);
    return r;
}

static void *waits_for_usr1_installing(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_deadline_push_in(5000000000ull)); /* a hang guard */
    int r = weft_signal_wait(SIGUSR1);
    ASSERT_OK(weft_deadline_pop());
    return (void *)(intptr_t)r;
}

/* A run refused for its arguments never installs a handler, even for a
 * moment: catching the signals comes after every check (a bad queue, a
 * trace file that cannot be opened). A run that fails later, starting a
 * worker thread, puts the old disposition back. */
TEST(a_refused_run_never_touches_the_dispositions)
{
    static const int caught[] = {SIGUSR1};
    weft_queue_spec dup[] = {{.name = "q", .weight = 1}, {.name = "q", .weight = 1}};
    weft_config bad_queues = {
        .workers = 1, .catch_signals = caught, .ncatch_signals = 1, .queues = dup, .nqueues = 2};
    weft_config bad_trace = {.workers = 1,
                             .catch_signals = caught,
                             .ncatch_signals = 1,
                             .trace_path = "/nonexistent-dir-of-weft/trace.json"};
    atomic_store(&usr1_installs, 0);
    ASSERT_EQ(weft_run(&bad_queues, return_arg, NULL, NULL), -EINVAL);
    ASSERT_LT(weft_run(&bad_trace, return_arg, NULL, NULL), 0);
    ASSERT_EQ(atomic_load(&usr1_installs), 0);
    /* The wrapper sees weft's installs: a good run makes one. */
    weft_config good = {.workers = 1, .catch_signals = caught, .ncatch_signals = 1};
    ASSERT_OK(weft_run(&good, return_arg, NULL, NULL));
    ASSERT_EQ(atomic_load(&usr1_installs), 1);
    struct sigaction now;
    ASSERT_OK(sigaction(SIGUSR1, NULL, &now));
    ASSERT(now.sa_handler == SIG_DFL);
}

TEST(an_arrival_as_the_handler_goes_in_is_kept)
{
    /* The first wait installs the handler. */
    atomic_store(&raise_after_install, true);
    weft_config one = {.workers = 1};
    ASSERT_EQ((intptr_t)run_main(&one, waits_for_usr1_installing, NULL), SIGUSR1);
    ASSERT(!atomic_load(&raise_after_install)); /* it was raised */
    /* catch_signals installs it at the start. */
    static const int caught[] = {SIGUSR1};
    weft_config cfg = {.workers = 1, .catch_signals = caught, .ncatch_signals = 1};
    atomic_store(&raise_after_install, true);
    ASSERT_EQ((intptr_t)run_main(&cfg, waits_for_usr1_installing, NULL), SIGUSR1);
    ASSERT(!atomic_load(&raise_after_install));
}

/* weft_spawn_blocking_ex: release(arg, result) once for every failure
 * (at once before the job is queued, on the pool thread after fn for an
 * abandoned one), never on success. The args and results are heap blocks,
 * so a missed release is also a leak under ASan. */
static _Atomic int released;
static void *_Atomic released_result;

static void release_both(void *arg, void *result)
{
    ASSERT(arg != NULL);
    free(arg);
    free(result);
    atomic_store(&released_result, result);
    atomic_fetch_add(&released, 1);
}

static void *gated_reply(void *arg)
{
    gated(NULL);
    int *reply = malloc(sizeof *reply);
    *reply = *(int *)arg + 1;
    return reply;
}

static _Atomic int ex_rc;

static void *ex_caller(void *arg)
{
    (void)arg;
    int *rq = malloc(sizeof *rq);
    *rq = 41;
    void *res = (void *)1;
    atomic_store(&ex_rc, weft_spawn_blocking_ex(gated_reply, rq, &res, release_both));
    ASSERT(res == NULL);
    return NULL;
}

static void *main_blocking_ex(void *arg)
{
    (void)arg;
    /* Success: no release, arg and result are the caller's. */
    atomic_store(&gate_open, 1);
    int *rq = malloc(sizeof *rq);
    *rq = 1;
    void *res = NULL;
    ASSERT_OK(weft_spawn_blocking_ex(gated_reply, rq, &res, release_both));
    ASSERT_EQ(*(int *)res, 2);
    ASSERT_EQ(atomic_load(&released), 0);
    free(res);
    free(rq);

    /* Refused before queueing: released at once, with no result. */
    ASSERT_EQ(weft_spawn_blocking_ex(NULL, malloc(8), &res, release_both), -EINVAL);
    ASSERT_EQ(atomic_load(&released), 1);
    ASSERT(atomic_load(&released_result) == NULL);

    /* Abandoned while running: released after fn, with fn's result. */
    atomic_store(&gate_open, 0);
    atomic_store(&gated_started, 0);
    weft_task *t;
    ASSERT_OK(weft_spawn(&t, ex_caller, NULL));
    wait_until_started(1);
    ASSERT_OK(weft_cancel(t));
    ASSERT_EQ(weft_join(t, NULL), -ECANCELED);
    ASSERT_EQ(atomic_load(&ex_rc), -ECANCELED);
    ASSERT_EQ(atomic_load(&released), 1); /* fn has not returned */
    atomic_store(&gate_open, 1);
    while (atomic_load(&released) < 2)
        ASSERT_OK(weft_sleep_ns(SLEEP_NS));
    ASSERT(atomic_load(&released_result) != NULL); /* fn's reply, freed */
    return NULL;
}
TEST(spawn_blocking_ex_releases_what_an_abandoned_job_owns)
{
    run_main(NULL, main_blocking_ex, NULL);
    ASSERT_EQ(atomic_load(&released), 2);
}

/* A job runs with the mask of the worker that started its pool thread
 * (the program's own: a program a job starts inherits it), and starting
 * one leaves the worker's mask as it was (the mask is blocked around
 * pthread_create, so that the new thread is quiet from its first
 * instruction). The worker blocks SIGUSR2 here so that the job's mask
 * cannot match by chance: a thread that blocked everything would have
 * SIGUSR1 blocked, one with an empty mask SIGUSR2 unblocked. */
static void *mask_of_job(void *arg)
{
    sigset_t *out = arg;
    pthread_sigmask(SIG_BLOCK, NULL, out);
    return NULL;
}

static void *main_pool_masks(void *arg)
{
    (void)arg;
    sigset_t usr2, before, after, job_mask;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    ASSERT_OK(pthread_sigmask(SIG_BLOCK, &usr2, &before));
    ASSERT_EQ(sigismember(&before, SIGUSR1), 0);
    ASSERT_EQ(sigismember(&before, SIGUSR2), 0);
    ASSERT_OK(pthread_sigmask(SIG_BLOCK, NULL, &before));
    ASSERT_OK(weft_spawn_blocking(mask_of_job, &job_mask, NULL));
    ASSERT_OK(pthread_sigmask(SIG_BLOCK, NULL, &after));
    static const int sigs[] = {SIGUSR1, SIGUSR2, SIGINT, SIGTERM, SIGCHLD, SIGSEGV, SIGBUS};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        ASSERT_EQ(sigismember(&after, sigs[i]), sigismember(&before, sigs[i]));
        ASSERT_EQ(sigismember(&job_mask, sigs[i]), sigismember(&before, sigs[i]));
    }
    ASSERT_EQ(sigismember(&job_mask, SIGUSR2), 1);
    ASSERT_EQ(sigismember(&job_mask, SIGUSR1), 0);
    ASSERT_OK(pthread_sigmask(SIG_UNBLOCK, &usr2, NULL));
    return NULL;
}
TEST(jobs_run_with_the_mask_of_the_worker_that_started_their_thread)
{
    /* One worker, and a fresh runtime: the job starts the pool's first
     * thread from this task's thread. */
    run_main_one_worker(NULL, main_pool_masks, NULL);
}

TEST_MAIN(CASE(spawn_blocking_returns_result), CASE(spawn_blocking_returns_result_2w),
          CASE(one_arrival_is_reported_once),
          CASE(one_arrival_is_reported_once_before_the_helper_runs),
          CASE(an_arrival_as_a_cancelled_wait_leaves_is_reported),
          CASE(an_arrival_as_a_cancelled_wait_leaves_is_reported_2w),
          CASE(other_tasks_run_while_one_blocks), CASE(other_tasks_run_while_one_blocks_2w),
          CASE(many_concurrent_jobs_use_many_threads),
          CASE(many_concurrent_jobs_use_many_threads_2w), CASE(jobs_queue_beyond_the_thread_cap),
          CASE(cancel_returns_at_once_and_the_job_finishes_later),
          CASE(cancel_returns_at_once_and_the_job_finishes_later_2w),
          CASE(runtime_end_waits_for_an_abandoned_job),
          CASE(runtime_end_leaves_a_job_behind_past_the_exit_wait),
          CASE(signal_handlers_are_given_back_before_the_wait_for_jobs),
          CASE(runtime_end_waits_for_a_job_that_ends_within_the_exit_wait),
          CASE(deadline_times_out), CASE(deadline_times_out_2w),
          CASE(a_cancelled_task_starts_no_job), CASE(an_abandoned_queued_job_still_runs),
          CASE(misuse), CASE(jobs_run_with_the_mask_of_the_worker_that_started_their_thread),
          CASE(spawn_blocking_ex_releases_what_an_abandoned_job_owns),
          CASE(idle_threads_exit_after_the_keepalive), CASE(allocation_failures),
          CASE(getaddrinfo_numeric), CASE(getaddrinfo_numeric_2w), CASE(getaddrinfo_localhost),
          CASE(getaddrinfo_errors), CASE(getaddrinfo_cancelled_while_queued_is_dropped),
          CASE(getaddrinfo_queued_then_run), CASE(getaddrinfo_past_deadline),
          CASE(signal_wait_returns_the_signal), CASE(signal_wait_returns_the_signal_2w),
          CASE(signal_wakes_every_waiter), CASE(signal_wakes_every_waiter_2w),
          CASE(signal_arriving_with_no_waiter_is_remembered),
          CASE(signal_arriving_with_no_waiter_is_remembered_2w), CASE(signal_wait_cancelled),
          CASE(signal_wait_cancelled_2w), CASE(signal_wait_bad_signo),
          CASE(signal_wait_any_returns_one_and_keeps_the_others),
          CASE(signal_wait_any_returns_one_and_keeps_the_others_2w),
          CASE(runtime_end_restores_the_disposition),
          CASE(caught_signals_are_remembered_from_the_start),
          CASE(an_arrival_as_the_handler_goes_in_is_kept),
          CASE(a_refused_run_never_touches_the_dispositions),
          CASE(an_arrival_after_the_waiter_was_settled_is_remembered),
          CASE(a_wait_cancelled_before_the_helper_ran_reports_its_signal),
          CASE(two_runtimes_each_get_an_arrival_once),
          CASE(a_forked_child_starts_from_an_empty_signal_hub),
          CASE(a_forked_child_inherits_no_lock_and_no_runtime),
          CASE(catch_signals_under_allocation_failures))
