/* Stacks: size classes, pooling, guard pages, the overflow report, and a
 * million guarded stacks under the default vm.max_map_count. */
#include "test.h"

#include <setjmp.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "context/stack.h"
#include "runtime/worker.h"

TEST(size_classes)
{
    ASSERT_EQ(weft__stack_class(16 * 1024), 0);
    ASSERT_EQ(weft__stack_class(16 * 1024 + 1), 1);
    ASSERT_EQ(weft__stack_class(256 * 1024), 4);
    ASSERT_EQ(weft__stack_class((size_t)1 << 30), 16);
    ASSERT_EQ(weft__stack_class(((size_t)1 << 30) + 1), -EINVAL);
    ASSERT_EQ(weft__stack_class(4096), -EINVAL);
    ASSERT_EQ(weft__stack_class_size(4), 256 * 1024);
}

TEST(pool_reuses_lifo)
{
    weft__stack_pool p;
    weft__stack_pool_init(&p);
    weft__stack *a, *b, *c;
    ASSERT_OK(weft__stack_acquire(&p, 0, &a));
    ASSERT_OK(weft__stack_acquire(&p, 0, &b));
    ASSERT(a != b);
    ASSERT_EQ(a->size, 16 * 1024);
    memset(a->lo, 1, a->size); /* the whole usable range is writable */
    weft__stack_release(&p, a);
    ASSERT_EQ(p.live, 1);
    ASSERT_EQ(p.pooled, 1);
    ASSERT_OK(weft__stack_acquire(&p, 0, &c));
    ASSERT(c == a);
    weft__stack_release(&p, b);
    weft__stack_release(&p, c);
    weft__stack_pool_fini(&p);
}

/* A task's stack comes from the pool of the worker it first ran on and
 * goes back to that of the worker it ends on. Each pool's live count is
 * the stacks it handed out still in use: the one that took the stack back
 * counted it down and wrapped below zero, while the lender kept it. */
TEST(a_stack_released_into_another_pool_leaves_both_counts_right)
{
    weft__stack_pool a, b;
    weft__stack_pool_init(&a);
    weft__stack_pool_init(&b);
    weft__stack *s, *t;
    ASSERT_OK(weft__stack_acquire(&a, 0, &s));
    ASSERT_EQ(weft__stack_pool_live(&a), 1);
    weft__stack_release(&b, s); /* its task ended on b's worker */
    ASSERT_EQ(weft__stack_pool_live(&a), 0);
    ASSERT_EQ(weft__stack_pool_live(&b), 0);
    ASSERT_EQ(b.pooled, 1);
    ASSERT_OK(weft__stack_acquire(&b, 0, &t)); /* b lends it now */
    ASSERT(t == s);
    ASSERT_EQ(weft__stack_pool_live(&b), 1);
    weft__stack_release(&a, t);
    ASSERT_EQ(weft__stack_pool_live(&a), 0);
    ASSERT_EQ(weft__stack_pool_live(&b), 0);
    ASSERT_OK(weft__stack_acquire(&a, 0, &t));
    weft__stack_release(&a, t);
    ASSERT_EQ(weft__stack_pool_live(&a), 0);
    ASSERT_EQ(a.pooled, 1);
    weft__stack_pool_fini(&b);
    weft__stack_pool_fini(&a);
}

TEST(trim_returns_pages_below_high_water)
{
    weft__stack_pool p;
    weft__stack_pool_init(&p);
    weft__stack *s;
    ASSERT_OK(weft__stack_acquire(&p, 4, &s)); /* 256 KiB */
    memset(s->lo, 7, s->size);
    weft__stack_trim(&p, 64, 1000); /* the pool's clock: released at t = 1000 */
    weft__stack_release(&p, s);
    /* Too recent to trim; old enough one trim age later; only once. */
    ASSERT_EQ(weft__stack_trim(&p, 64, 1000 + WEFT_STACK_TRIM_AGE_NS - 1), 0);
    ASSERT_EQ(s->lo[0], 7);
    ASSERT_EQ(weft__stack_trim(&p, 64, 1000 + WEFT_STACK_TRIM_AGE_NS), 1);
    ASSERT_EQ(weft__stack_trim(&p, 64, 1000 + 2 * WEFT_STACK_TRIM_AGE_NS), 0);
    /* Deep pages read back as zero (returned); the top is kept. */
    ASSERT_EQ(s->lo[0], 0);
    ASSERT_EQ(s->lo[s->size - 1], 7);
    ASSERT_EQ(s->lo[s->size - WEFT_STACK_HIGHWATER], 7);
    weft__stack_pool_fini(&p);
}

static char *guard_addr;

static void touch_guard(void)
{
    *(volatile char *)guard_addr = 1;
}

TEST(guard_page_faults)
{
    weft__stack_pool p;
    weft__stack_pool_init(&p);
    weft__stack *s;
    ASSERT_OK(weft__stack_acquire(&p, 0, &s));
    guard_addr = s->lo - 1;
    char out[256];
    int status = run_captured(touch_guard, out, sizeof out);
    ASSERT(died_of_segv(status, out));
    weft__stack_release(&p, s);
    weft__stack_pool_fini(&p);
}

static int (*volatile recurse_ptr)(int);

/* Calls itself through a volatile pointer so the compiler can neither see
 * the infinite recursion nor turn it into a loop. */
static int recurse(int depth)
{
    volatile char pad[512];
    pad[0] = (char)depth;
    return recurse_ptr(depth + 1) + pad[0];
}

static void *overflow(void *arg)
{
    recurse_ptr = recurse;
    return (void *)(intptr_t)recurse(0);
}

/* Spawns a task named by arg that overflows its 64 KiB stack. */
static void *main_overflow(void *arg)
{
    weft_spawn_opts o = {.name = arg, .stack_size = 64 * 1024};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, overflow, NULL));
    weft_join(t, NULL);
    return NULL;
}

static void run_overflow(void)
{
    weft_run(NULL, main_overflow, "deep", NULL);
}

/* A name with a line break in it: the report stays on one line. */
static void run_overflow_odd_name(void)
{
    weft_run(NULL, main_overflow, "deep\nin\tit", NULL);
}

/* Runs fn in a child, which must abort after writing report to stderr
 * (weft's overflow report, which ASan replaces with its own). */
static void expect_overflow_report(void (*fn)(void), const char *report)
{
#ifdef __SANITIZE_ADDRESS__
    SKIP("ASan reports stack overflows itself");
#endif
    expect_abort_with(fn, report);
}

TEST(overflow_is_reported_and_aborts)
{
    expect_overflow_report(run_overflow, "weft: task 2 'deep' overflowed its 64 KiB stack");
    expect_overflow_report(run_overflow_odd_name, "'deep?in?it' overflowed its 64 KiB stack");
}

/* A direct yield (weft__worker_yield_direct) makes the next task current
 * before the switch has finished pushing onto the yielding task's stack; a
 * fault in those few pushes is the yielding task's, which the handler finds
 * through w->leaving. The window cannot be hit on purpose, so this sets
 * leaving by hand, as that switch does, and pushes into the leaving task's
 * guard page with the stack pointer moved onto that stack, as the switch's
 * pushes would. */
static weft_task *leaver;

static void *park_forever(void *arg)
{
    weft_sleep_ns(3600ull * 1000000000);
    return arg;
}

static void *fault_in_leavers_guard(void *arg)
{
    (void)arg;
    weft__worker *w = weft__worker_self();
    ASSERT(leaver->stack && w->current != leaver);
    w->leaving = leaver;
#if defined(__x86_64__)
    /* The second push lands just below the leaver's stack, in its guard. */
    char *bottom = leaver->stack->lo + 8;
    __asm__ volatile("mov %%rsp, %%r12\n\t"
                     "mov %0, %%rsp\n\t"
                     "push %%rax\n\t"
                     "push %%rax\n\t"
                     "mov %%r12, %%rsp" ::"r"(bottom)
                     : "r12", "memory");
#else
    SKIP("the switch's pushes are imitated for x86_64 only");
#endif
    return NULL;
}

static void *main_leaving(void *arg)
{
    (void)arg;
    weft_spawn_opts lo = {.name = "leaver", .stack_size = 64 * 1024}, fo = {.name = "faulter"};
    ASSERT_OK(weft_spawn_ex(&leaver, &lo, park_forever, NULL));
    weft_yield(); /* let it take its stack and park */
    weft_task *f;
    ASSERT_OK(weft_spawn_ex(&f, &fo, fault_in_leavers_guard, NULL));
    weft_join(f, NULL);
    return NULL;
}

static void run_leaving(void)
{
    weft_config one = {.workers = 1};
    weft_run(&one, main_leaving, NULL, NULL);
}

TEST(a_fault_in_the_leaving_tasks_guard_is_its_overflow)
{
    expect_overflow_report(run_leaving, " 'leaver' overflowed its 64 KiB stack");
}

/* The mark of a direct yield stays until the loop runs again, through the
 * whole run of the task yielded to. A wild write of that task into the
 * yielding task's guard page was reported as the yielding task's overflow,
 * and aborted, where it is a plain SIGSEGV (for the program's handler, if
 * any). */
static weft_task *yielder;

static void *yields_once(void *arg)
{
    (void)arg;
    weft_yield();
    return NULL;
}

static void *writes_below_the_yielder(void *arg)
{
    (void)arg;
    ASSERT(weft__worker_self()->leaving == yielder); /* the case: a direct yield */
    *((volatile char *)yielder->stack->lo - 100) = 1;
    return NULL;
}

static void *main_wild_write(void *arg)
{
    (void)arg;
    weft_spawn_opts yo = {.name = "yielder", .stack_size = 64 * 1024};
    ASSERT_OK(weft_spawn_ex(&yielder, &yo, yields_once, NULL));
    weft_task *w;
    ASSERT_OK(weft_spawn(&w, writes_below_the_yielder, NULL));
    weft_join(yielder, NULL);
    weft_join(w, NULL);
    return NULL;
}

static void run_wild_write(void)
{
    weft_config one = {.workers = 1};
    weft_run(&one, main_wild_write, NULL, NULL);
}

TEST(a_wild_write_into_a_yielding_tasks_guard_is_no_overflow)
{
    char out[512];
    int status = run_captured(run_wild_write, out, sizeof out);
    if (!died_of_segv(status, out) || strstr(out, "overflowed"))
        FAILF("expected a plain SIGSEGV, got status %#x: %s", status, out);
}

static size_t count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ASSERT(f);
    size_t n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

/* The alternate signal stack belongs to the thread: a host that had its
 * own gets it back when the last worker on its thread goes, and while
 * any is left the overflow report still has a stack to run on. */
static char host_alt[64 * 1024];

static void expect_alt_stack(bool host)
{
    stack_t cur;
    ASSERT_OK(sigaltstack(NULL, &cur));
    ASSERT_EQ(cur.ss_flags & SS_DISABLE, 0);
    if (host) {
        ASSERT(cur.ss_sp == host_alt);
        ASSERT_EQ(cur.ss_size, sizeof host_alt);
    } else {
        ASSERT(cur.ss_sp != host_alt);
    }
}

static void *alt_stack_is_weft_s(void *arg)
{
    (void)arg;
    expect_alt_stack(false);
    return NULL;
}

TEST(a_host_alternate_stack_survives_workers_on_its_thread)
{
    stack_t mine = {.ss_sp = host_alt, .ss_size = sizeof host_alt};
    ASSERT_OK(sigaltstack(&mine, NULL));
    weft_executor *a, *b;
    ASSERT_OK(weft_executor_create(&a, NULL));
    expect_alt_stack(false);
    ASSERT_OK(weft_executor_create(&b, NULL));
    weft_executor_destroy(a);
    expect_alt_stack(false); /* b still needs weft's */
    run_main_one_worker(NULL, alt_stack_is_weft_s, NULL);
    expect_alt_stack(false);
    weft_executor_destroy(b);
    expect_alt_stack(true);
    run_main_one_worker(NULL, alt_stack_is_weft_s, NULL);
    expect_alt_stack(true);
    /* A stack the host puts in place while weft's is there stays. */
    static char newer[64 * 1024];
    ASSERT_OK(weft_executor_create(&a, NULL));
    stack_t replaced = {.ss_sp = newer, .ss_size = sizeof newer};
    ASSERT_OK(sigaltstack(&replaced, NULL));
    weft_executor_destroy(a);
    stack_t cur;
    ASSERT_OK(sigaltstack(NULL, &cur));
    ASSERT(cur.ss_sp == newer);
}

static void run_overflow_in_the_second_executor(void)
{
    weft_executor *a, *b;
    if (weft_executor_create(&a, NULL) != 0 || weft_executor_create(&b, NULL) != 0)
        _exit(3);
    weft_executor_destroy(a);
    weft_spawn_opts o = {.name = "deep", .stack_size = 64 * 1024};
    if (weft_executor_spawn(b, NULL, &o, overflow, NULL) != 0)
        _exit(4);
    weft_executor_run(b, 0);
}

TEST(overflow_is_reported_after_another_executor_on_the_thread_went)
{
    expect_overflow_report(run_overflow_in_the_second_executor,
                           "'deep' overflowed its 64 KiB stack");
}

TEST(a_million_guarded_stacks)
{
    enum { N = 1000000 };
    weft__stack_pool p;
    weft__stack_pool_init(&p);
    weft__stack *first;
    ASSERT_OK(weft__stack_acquire(&p, 0, &first));
    /* The kernel, asked directly, decides the skip: weft's own probe
     * falling back to mprotect on a kernel that has the advice would be
     * weft's bug, and must fail here. */
    long pg = sysconf(_SC_PAGESIZE);
    char *scratch =
        mmap(NULL, 2 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(scratch != MAP_FAILED);
    int advised = madvise(scratch, (size_t)pg, 102 /* MADV_GUARD_INSTALL, Linux 6.13 */);
    int advise_errno = errno;
    munmap(scratch, 2 * (size_t)pg);
    if (advised < 0 && advise_errno == EINVAL)
        SKIP("kernel lacks MADV_GUARD_INSTALL (Linux 6.13+); mprotect guards split VMAs");
    ASSERT_EQ(advised, 0);
    ASSERT(weft__stack_guard_madvise());
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long max_map = 65530;
    if (f) {
        ASSERT_EQ(fscanf(f, "%ld", &max_map), 1);
        fclose(f);
    }
    weft__stack **all = malloc(N * sizeof *all);
    ASSERT(all);
    all[0] = first;
    for (int i = 1; i < N; i++)
        ASSERT_OK(weft__stack_acquire(&p, 0, &all[i]));
    size_t maps = count_mappings();
    ASSERT_LT(maps, (size_t)max_map);
    ASSERT_EQ(p.live, N);
    /* Each one is usable at both ends and guarded below. */
    for (int i = 0; i < N; i += 9973) {
        all[i]->lo[0] = 1;
        all[i]->lo[all[i]->size - 1] = 1;
    }
    guard_addr = all[N / 2]->lo - 1;
    char out[256];
    int status = run_captured(touch_guard, out, sizeof out);
    ASSERT(died_of_segv(status, out));
    for (int i = 0; i < N; i++)
        weft__stack_release(&p, all[i]);
    free(all);
    weft__stack_pool_fini(&p);
}

/* ---- the stack helper (context/stack.h) --------------------------------- */

static size_t page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* The top page of s is in memory (mincore), without touching it. */
static bool top_resident(const weft__stack *s)
{
    unsigned char v = 0;
    ASSERT_OK(mincore(s->lo + s->size - page(), page(), &v));
    return v & 1;
}

#define HELPER_LIMIT_NS (20ull * 1000 * 1000 * 1000)

/* Polls cond every millisecond; fails after HELPER_LIMIT_NS. */
#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        for (uint64_t waited_ = 0; !(cond); waited_ += 1000000) {                                  \
            if (waited_ > HELPER_LIMIT_NS)                                                         \
                FAILF("gave up waiting for %s", #cond);                                            \
            nanosleep(&(struct timespec){0, 1000000}, NULL);                                       \
        }                                                                                          \
    } while (0)

/* Slabs of a class hold 8, 16, 32, 64, 128, then 256 slots: the 249th stack
 * opens the first slab of 256, and the pool asks the helper for the next. */
#define FIRST_ASKING (WEFT_STACK_HELPER_FROM + 1)

typedef struct helped_pool {
    weft__stack_helper h;
    weft__stack_pool p;
    weft__stack *held[4608];
    int n;
} helped_pool;

static void helped_pool_init(helped_pool *hp)
{
    weft__stack_helper_init(&hp->h, true);
    weft__stack_pool_init(&hp->p);
    hp->p.helper = &hp->h;
    hp->n = 0;
}

/* Takes a stack, and starts the helper's thread when the pool asks, as a
 * worker does before its next task run. */
static void take(helped_pool *hp)
{
    ASSERT_LT(hp->n, 4608);
    ASSERT_OK(weft__stack_acquire(&hp->p, 0, &hp->held[hp->n++]));
    if (hp->p.helper_start_wanted)
        weft__stack_helper_start(&hp->p);
}

static void helped_pool_fini(helped_pool *hp)
{
    for (int i = 0; i < hp->n; i++)
        weft__stack_release(&hp->p, hp->held[i]);
    weft__stack_helper_stop(&hp->h);
    weft__stack_pool_fini(&hp->p); /* unmaps the slab made and never taken */
    weft__stack_helper_fini(&hp->h);
}

TEST(the_helper_makes_the_next_slab_ahead)
{
    static helped_pool hp;
    helped_pool_init(&hp);
    while (hp.n < FIRST_ASKING - 1)
        take(&hp);
    ASSERT_EQ(atomic_load(&hp.p.requested), 0);
    ASSERT(!hp.h.started); /* no thread for a small pool */
    take(&hp);
    ASSERT_EQ(atomic_load(&hp.p.requested), 1); /* class 0 asked */
    /* The count goes up after the slab is in its slot. */
    WAIT_FOR(atomic_load(&hp.h.slabs_made) == 1);
    ASSERT(atomic_load(&hp.p.ready[0]) != NULL);
    ASSERT_EQ(atomic_load(&hp.p.requested), 1); /* until the pool takes it */
    /* The rest of the 256 slab is the pool's own; then the helper's. */
    while (hp.n < WEFT_STACK_HELPER_FROM + 256)
        take(&hp);
    ASSERT_EQ(hp.p.slabs_from_helper, 0);
    take(&hp);
    ASSERT_EQ(hp.p.slabs_from_helper, 1);
    /* Its 512 stacks have their top page in before anything touched them,
     * are usable at both ends, and are guarded. */
    int first = hp.n - 1;
    while (hp.n < first + 512)
        take(&hp);
    for (int i = first; i < hp.n; i++) {
        ASSERT(top_resident(hp.held[i]));
        hp.held[i]->lo[0] = 1;
        hp.held[i]->lo[hp.held[i]->size - 1] = 1;
    }
    guard_addr = hp.held[first + 300]->lo - 1;
    char out[256];
    ASSERT(died_of_segv(run_captured(touch_guard, out, sizeof out), out));
    /* Taking it cleared the mark and asked for the one after, which is
     * marked until the pool takes it. */
    WAIT_FOR(atomic_load(&hp.h.slabs_made) == 2);
    ASSERT(atomic_load(&hp.p.ready[0]) != NULL);
    ASSERT_EQ(atomic_load(&hp.p.requested), 1);
    helped_pool_fini(&hp);
}

/* The helper hands a slab over as soon as it is mapped and guarded, and
 * faults its tops in from the last slot down while the pool carves it
 * from the front. Every stack taken must have its top page in, and the
 * helper, which only advises on a slab it has handed over, must leave
 * every byte the pool's tasks write there as written. Whether a round's
 * carving overlaps the helper's work is up to timing: a tenth to a half of
 * them did in a review's runs. */
TEST(the_helper_and_the_pool_share_a_slab)
{
    static helped_pool hp;
    for (int round = 0; round < 40; round++) {
        helped_pool_init(&hp);
        while (hp.n < FIRST_ASKING)
            take(&hp);
        int first = WEFT_STACK_HELPER_FROM + 256;
        while (hp.n < first)
            take(&hp); /* the rest of the pool's own slab */
        /* Spinning, to take the slab the moment it is handed over, while
         * the helper is still at it (WAIT_FOR's millisecond naps let it
         * finish first). */
        uint64_t spins = 0;
        while (!atomic_load(&hp.h.slabs_made))
            if (++spins > 20000000000ull)
                FAILF("the helper never handed a slab over");
        for (int i = first; i < first + 512; i++) {
            take(&hp);
            weft__stack *st = hp.held[i];
            ASSERT(top_resident(st));
            memset(st->lo + st->size - page(), (i ^ round) & 0xff, page());
        }
        ASSERT_EQ(hp.p.slabs_from_helper, 1);
        weft__stack_helper_stop(&hp.h); /* whatever it was doing is done */
        for (int i = first; i < first + 512; i++) {
            const unsigned char *top =
                (const unsigned char *)hp.held[i]->lo + hp.held[i]->size - page();
            for (size_t b = 0; b < page(); b++)
                if (top[b] != ((i ^ round) & 0xff))
                    FAILF("round %d: stack %d's top page changed at byte %zu", round, i, b);
        }
        helped_pool_fini(&hp);
    }
}

/* A helper whose thread cannot start, or whose slabs fail, leaves every
 * slab to the pool, which carries on. */
static void helper_that_fails(int how)
{
    static helped_pool hp;
    atomic_store(&weft__stack_helper_fail, how);
    helped_pool_init(&hp);
    while (hp.n < FIRST_ASKING)
        take(&hp);
    WAIT_FOR(atomic_load(&hp.p.requested) == 0);
    ASSERT(atomic_load(&hp.p.ready[0]) == NULL);
    ASSERT_EQ(hp.h.failed, how == 1);
    while (hp.n < 2000)
        take(&hp);
    ASSERT_EQ(hp.p.slabs_from_helper, 0);
    ASSERT_EQ(atomic_load(&hp.h.slabs_made), 0);
    for (int i = 0; i < hp.n; i += 97)
        hp.held[i]->lo[hp.held[i]->size - 1] = 1;
    helped_pool_fini(&hp);
    atomic_store(&weft__stack_helper_fail, 0);
}

TEST(a_helper_that_cannot_start_leaves_the_slabs_to_the_pool)
{
    helper_that_fails(1);
}

/* A start that failed is tried again after some refused requests, twice
 * as many after each failure: a passing EAGAIN must not leave the workers
 * to map every slab for the rest of the run, and a lasting one must not
 * cost a pthread_create per slab. Requests come as slabs start: of 256,
 * 512 and 1024 stacks, then 1024 each (the cap). */
static void take_until(helped_pool *hp, int n)
{
    while (hp->n < n)
        take(hp);
}

TEST(a_helper_that_could_not_start_is_tried_again)
{
    static helped_pool hp;
    atomic_store(&weft__stack_helper_fail, 1);
    helped_pool_init(&hp);
    int at = FIRST_ASKING;
    take_until(&hp, at); /* request 1: the start fails */
    ASSERT(hp.h.failed && !hp.h.started);
    ASSERT_EQ(hp.h.refuse_next, 1);
    ASSERT_EQ(atomic_load(&hp.p.requested), 0); /* the request went back */
    take_until(&hp, at += 256);                 /* request 2: refused */
    ASSERT_EQ(hp.h.refuse_left, 0);
    take_until(&hp, at += 512); /* request 3: tried, and fails again */
    ASSERT(hp.h.failed && !hp.h.started);
    ASSERT_EQ(hp.h.refuse_next, 2);
    ASSERT_EQ(hp.h.refuse_left, 2);
    ASSERT_EQ(atomic_load(&hp.p.requested), 0);
    atomic_store(&weft__stack_helper_fail, 0);
    take_until(&hp, at += 1024); /* requests 4 and 5: refused */
    take_until(&hp, at += 1024);
    ASSERT(!hp.h.started);
    ASSERT_EQ(hp.h.refuse_left, 0);
    ASSERT_EQ(atomic_load(&hp.p.requested), 0);
    ASSERT_EQ(hp.p.slabs_from_helper, 0);
    take_until(&hp, at += 1024); /* request 6 starts the thread */
    ASSERT(hp.h.started && !hp.h.failed);
    WAIT_FOR(atomic_load(&hp.h.slabs_made) == 1);
    helped_pool_fini(&hp);
}

TEST(a_helper_whose_slabs_fail_leaves_them_to_the_pool)
{
    helper_that_fails(2);
}

/* In a runtime: the helper starts once a worker runs past 248 stacks, and
 * never with no_stack_helper. */
static void *sleep_a_while(void *arg)
{
    (void)arg;
    ASSERT_OK(weft_sleep_ns(20 * 1000 * 1000));
    return NULL;
}

static void *main_many_sleepers(void *arg)
{
    bool expect = arg != NULL;
    enum { N = 600 };
    static weft_task *h[N];
    for (int i = 0; i < N; i++)
        ASSERT_OK(weft_spawn(&h[i], sleep_a_while, NULL));
    ASSERT_OK(weft_yield()); /* they run, each on a stack of its own, and sleep */
    weft__runtime *rt = weft__worker_self()->rt;
    pthread_mutex_lock(&rt->stack_helper.lock);
    bool started = rt->stack_helper.started;
    pthread_mutex_unlock(&rt->stack_helper.lock);
    ASSERT_EQ(started, expect);
    for (int i = 0; i < N; i++)
        ASSERT_OK(weft_join(h[i], NULL));
    return NULL;
}

TEST(the_runtime_starts_the_helper_unless_told_not_to)
{
    weft_config cfg = {0};
    run_main_one_worker(&cfg, main_many_sleepers, (void *)1);
    cfg.no_stack_helper = true;
    run_main_one_worker(&cfg, main_many_sleepers, NULL);
}

/* A worker that never goes idle still moves its pool's clock (at each poll
 * of its ring), so that a stack released during a long busy stretch is
 * stamped with the time of its release. The clock used to move only when
 * the worker went idle and trimmed: after a busy second, the stacks just
 * released looked a second old and were trimmed, still hot. */
static void *yields_forever(void *arg)
{
    (void)arg;
    while (weft_yield() == 0)
        ;
    return NULL;
}

static void *main_pool_clock_moves_while_busy(void *arg)
{
    (void)arg;
    weft_task *other;
    ASSERT_OK(weft_spawn(&other, yields_forever, NULL)); /* never idle from here */
    ASSERT_OK(weft_yield());
    uint64_t before = weft_now_ns();
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(weft_yield()); /* the worker polls at slice ends */
    ASSERT_GE(weft__worker_self()->stacks.clock_ns, before);
    ASSERT_OK(weft_cancel(other));
    ASSERT_EQ(weft_join(other, NULL), -ECANCELED);
    return NULL;
}
TEST(a_busy_worker_keeps_its_pool_clock_current)
{
    run_main_one_worker(NULL, main_pool_clock_moves_while_busy, NULL);
}

/* ---- other SIGSEGVs go on to the program's handler -------------------- */

/* A program that handles faults of its own (a GC's write barrier, say):
 * its handler unprotects the page and the access goes on. weft's handler
 * used to put the program's back for the whole process on the first such
 * fault, so a later overflow went unreported (a plain SIGSEGV). */
/* Volatile: the store below faults and the handler changes both, which
 * the optimiser cannot see (it moved the check before the store). */
static volatile char *barrier_page;
static volatile int barrier_hits;

static void barrier_handler(int sig, siginfo_t *info, void *uctx)
{
    (void)sig, (void)uctx;
    char *a = info->si_addr;
    char *page = (char *)barrier_page;
    if (a >= page && a < page + 4096) {
        barrier_hits++;
        mprotect(page, 4096, PROT_READ | PROT_WRITE);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
}

static void *touch_the_barrier_then_overflow(void *arg)
{
    barrier_page[0] = 1; /* faults once, and the program's handler fixes it */
    if (barrier_hits != 1 || barrier_page[0] != 1)
        _exit(3);
    return overflow(arg);
}

static void *main_barrier(void *arg)
{
    weft_spawn_opts o = {.name = "deep", .stack_size = 64 * 1024};
    weft_task *t;
    ASSERT_OK(weft_spawn_ex(&t, &o, touch_the_barrier_then_overflow, NULL));
    weft_join(t, NULL);
    return NULL;
}

static void run_barrier_then_overflow(void)
{
    barrier_page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = barrier_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    weft_run(NULL, main_barrier, NULL, NULL);
}

TEST(a_fault_the_program_handles_leaves_the_overflow_report_in_place)
{
    expect_overflow_report(run_barrier_then_overflow,
                           "weft: task 2 'deep' overflowed its 64 KiB stack");
}

/* A SIGSEGV sent with raise or kill is no fault to repeat: it was
 * swallowed, and the process went on. */
static void *raise_segv(void *arg)
{
    raise(SIGSEGV);
    return NULL;
}

static void run_raise(void)
{
    weft_run(NULL, spawn_and_join, &(task_body){raise_segv, NULL}, NULL);
    fputs("still alive after raise(SIGSEGV)\n", stderr);
}

TEST(a_sent_sigsegv_takes_its_default_action)
{
    char out[4096];
    int status = run_captured(run_raise, out, sizeof out);
    if (!died_of_segv(status, out))
        FAILF("status %#x, stderr: %s", status, out);
}

/* A handler the program installs while the runtime runs stays after it:
 * the runtime's end put back the one from before its start. */
static void program_handler(int sig)
{
    (void)sig;
}

static void *main_installs_a_handler(void *arg)
{
    signal(SIGSEGV, program_handler);
    return NULL;
}

TEST(a_handler_installed_during_the_run_stays)
{
    run_main(NULL, main_installs_a_handler, NULL);
    struct sigaction cur;
    ASSERT_OK(sigaction(SIGSEGV, NULL, &cur));
    ASSERT(cur.sa_handler == program_handler);
}

/* The previous handler runs as the kernel would run it. SA_RESETHAND: a
 * handler that returns is called once, then the fault kills (it was
 * called for ever). SA_NODEFER: a handler that leaves with longjmp can
 * fault again (the second fault killed the process). A handler that
 * chains back to weft's, installed under an earlier runtime: the fault
 * ends the process (it bounced between the two until the stack ran out). */
static int handler_calls;
static sigjmp_buf probe_env;

/* Installs fn as the program's SIGSEGV handler (a plain one). */
static void set_segv_handler(void (*fn)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    ASSERT_OK(sigaction(SIGSEGV, &sa, NULL));
}

static void count_and_return(int sig)
{
    (void)sig;
    handler_calls++;
}

static void *null_write(void *arg)
{
    *(volatile int *)arg = 1;
    return NULL;
}

static void run_resethand(void)
{
    set_segv_handler(count_and_return, SA_RESETHAND);
    weft_run(NULL, spawn_and_join, &(task_body){null_write, (void *)16}, NULL);
}

TEST(a_resethand_handler_is_called_once)
{
#ifdef __SANITIZE_ADDRESS__
    SKIP("ASan replaces the program's SIGSEGV handler");
#endif
    char out[4096];
    int status = run_captured(run_resethand, out, sizeof out);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSEGV)
        FAILF("status %#x, stderr: %s", status, out);
}

static void jump_back(int sig)
{
    (void)sig;
    handler_calls++;
    siglongjmp(probe_env, 1);
}

/* Opaque to the optimiser, which would otherwise warn about (and may
 * assume away) a write to a constant bad address. */
static int *volatile unmapped = (int *)16;

static void *probe_three_times(void *arg)
{
    for (volatile int i = 0; i < 3; i++)
        if (sigsetjmp(probe_env, 0) == 0)
            *unmapped = i;
    return NULL;
}

TEST(a_nodefer_handler_that_jumps_out_can_fault_again)
{
#ifdef __SANITIZE_ADDRESS__
    SKIP("ASan replaces the program's SIGSEGV handler");
#endif
    set_segv_handler(jump_back, SA_NODEFER);
    run_main_one_worker(NULL, spawn_and_join, &(task_body){probe_three_times, NULL});
    ASSERT_EQ(handler_calls, 3);
}

/* A thread of the program's own (no alternate stack) whose handler jumps
 * out probes twice, the second time from deeper in its stack; and a
 * SA_NODEFER handler faults inside itself. Both were taken for a handler
 * chaining back to weft's (the stack was deeper than the first pass) and
 * ended with the default action. */
static void probe_once(void)
{
    if (sigsetjmp(probe_env, 1) == 0)
        *unmapped = 1;
}

static void __attribute__((noinline)) probe_deeper(int n)
{
    volatile char pad[512];
    pad[0] = 0;
    if (n)
        probe_deeper(n - 1);
    else
        probe_once();
    (void)pad;
}

static void *thread_probes(void *arg)
{
    probe_once();
    probe_deeper(8);
    return NULL;
}

static void *main_thread_probes(void *arg)
{
    pthread_t th;
    ASSERT_OK(pthread_create(&th, NULL, thread_probes, NULL));
    ASSERT_OK(pthread_join(th, NULL));
    return NULL;
}

static sigjmp_buf inner_env;
static volatile int in_handler;

static void probes_inside(int sig)
{
    (void)sig;
    handler_calls++;
    if (in_handler)
        siglongjmp(inner_env, 1);
    in_handler = 1;
    if (sigsetjmp(inner_env, 1) == 0)
        *unmapped = 2; /* faults again, inside the handler */
    in_handler = 0;
    siglongjmp(probe_env, 1);
}

static void *task_probes_once(void *arg)
{
    probe_once();
    return NULL;
}

TEST(new_faults_after_or_inside_a_handler_reach_it)
{
#ifdef __SANITIZE_ADDRESS__
    SKIP("ASan replaces the program's SIGSEGV handler");
#endif
#ifdef __SANITIZE_THREAD__
    SKIP("TSan's interceptors allocate under a handler that jumps out of a fault");
#endif
    set_segv_handler(jump_back, 0);
    handler_calls = 0;
    run_main_one_worker(NULL, main_thread_probes, NULL);
    ASSERT_EQ(handler_calls, 2);
    set_segv_handler(probes_inside, SA_NODEFER);
    handler_calls = 0;
    run_main_one_worker(NULL, spawn_and_join, &(task_body){task_probes_once, NULL});
    ASSERT_EQ(handler_calls, 2);
}

static struct sigaction chained_to;
static bool chain_copies; /* passes a copy of the siginfo on, not its own */

static void chains_back(int sig, siginfo_t *info, void *uctx)
{
    if (++handler_calls == 2) {
        static const char msg[] = "the chaining handler ran twice\n";
        ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)n;
    }
    siginfo_t copy = *info;
    if (chained_to.sa_flags & SA_SIGINFO)
        chained_to.sa_sigaction(sig, chain_copies ? &copy : info, uctx);
    else
        signal(SIGSEGV, SIG_DFL);
}

static void *install_chaining_handler(void *arg)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = chains_back;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, &chained_to); /* weft's, as the runtime runs */
    return NULL;
}

static void run_chain_loop(void)
{
    weft_run(NULL, install_chaining_handler, NULL, NULL);
    weft_run(NULL, spawn_and_join, &(task_body){null_write, (void *)16}, NULL);
    fprintf(stderr, "handler calls: %d\n", handler_calls);
}

TEST(a_handler_chaining_back_to_weft_does_not_loop)
{
    char out[4096];
    int status = run_captured(run_chain_loop, out, sizeof out);
    if (!died_of_segv(status, out) || strstr(out, "twice"))
        FAILF("status %#x, stderr: %s", status, out);
    /* The same with a handler that passes a copy of the siginfo on (it
     * went round until it ran off the end of the alternate stack). */
    chain_copies = true;
    status = run_captured(run_chain_loop, out, sizeof out);
    if (!died_of_segv(status, out) || strstr(out, "twice"))
        FAILF("with a copy: status %#x, stderr: %s", status, out);
}

TEST_MAIN(CASE(a_busy_worker_keeps_its_pool_clock_current), CASE(size_classes),
          CASE(a_resethand_handler_is_called_once),
          CASE(a_nodefer_handler_that_jumps_out_can_fault_again),
          CASE(a_handler_chaining_back_to_weft_does_not_loop),
          CASE(new_faults_after_or_inside_a_handler_reach_it),
          CASE(a_fault_the_program_handles_leaves_the_overflow_report_in_place),
          CASE(a_sent_sigsegv_takes_its_default_action),
          CASE(a_handler_installed_during_the_run_stays), CASE(pool_reuses_lifo),
          CASE(a_stack_released_into_another_pool_leaves_both_counts_right),
          CASE(trim_returns_pages_below_high_water),
          CASE(a_host_alternate_stack_survives_workers_on_its_thread),
          CASE(overflow_is_reported_after_another_executor_on_the_thread_went),
          CASE(guard_page_faults), CASE(overflow_is_reported_and_aborts),
          CASE(a_fault_in_the_leaving_tasks_guard_is_its_overflow),
          CASE(a_wild_write_into_a_yielding_tasks_guard_is_no_overflow),
          CASE(a_million_guarded_stacks), CASE(the_helper_makes_the_next_slab_ahead),
          CASE(the_helper_and_the_pool_share_a_slab),
          CASE(a_helper_that_cannot_start_leaves_the_slabs_to_the_pool),
          CASE(a_helper_that_could_not_start_is_tried_again),
          CASE(a_helper_whose_slabs_fail_leaves_them_to_the_pool),
          CASE(the_runtime_starts_the_helper_unless_told_not_to))
