/* Stack slabs and the per-worker pool; see stack.h. */
#include "context/stack.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/fault.h"
#include "context/fiber.h"
#include "runtime/blocking.h" /* weft__thread_start_quiet */

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT_HAVE_VALGRIND 1
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 UAPI; not yet in Debian 12's headers */
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
/* Linux UAPI: "the calling thread", fork-safe; process_madvise acts on its
 * memory, which is the whole process's. Kernels without it answer EBADF. */
#define PIDFD_SELF_THREAD (-10000)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#define POPULATE_BATCH 64 /* top pages faulted in per call */

/* A slab is one mapping carved into `capacity` slots of guard + stack. Slabs
 * of a class double in size up to 1024 slots, so small programs map little
 * and a million stacks need only about a thousand mappings. */
typedef struct weft__slab {
    struct weft__slab *next;
    char *base;
    size_t map_len;
    size_t slot_len; /* guard page + stack size */
    unsigned capacity;
    unsigned carved;
    /* The worker's side: slots below `populated` have had their top page
     * faulted in or are being faulted in now by the carving worker (it
     * jumps to `capacity` when the two sides meet). The helper's: slots
     * from `back` up have theirs in, on a slab it handed over before it
     * was done (make_ready_slab). Atomic: the helper reads the one and
     * writes the other while the worker carves. */
    _Atomic unsigned populated, back;
    bool guarded;         /* every slot's guard was installed at mapping time */
    bool touch_tops;      /* the helper's: fault tops in by touch if advice fails */
    weft__stack stacks[]; /* descriptors, carved in order */
} weft__slab;

static size_t page_size(void)
{
    /* Atomic: the stack helper's thread asks too. */
    static _Atomic size_t cached;
    size_t v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!v) {
        v = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}

/* 0 = not probed, 1 = madvise guards work, 2 = use mprotect. */
static _Atomic int guard_mode;

bool weft__stack_guard_madvise(void)
{
    return atomic_load(&guard_mode) != 2;
}

int weft__stack_class(size_t size)
{
    if (size < WEFT_STACK_MIN || size > WEFT_STACK_MAX)
        return -EINVAL;
    int c = 0;
    while (((size_t)WEFT_STACK_MIN << c) < size)
        c++;
    return c;
}

size_t weft__stack_class_size(int size_class)
{
    return (size_t)WEFT_STACK_MIN << size_class;
}

void weft__stack_pool_init(weft__stack_pool *p)
{
    *p = (weft__stack_pool){0};
}

static int install_guard(char *guard)
{
    int mode = atomic_load(&guard_mode);
    if (mode != 2) {
        if (madvise(guard, page_size(), MADV_GUARD_INSTALL) == 0) {
            atomic_store(&guard_mode, 1);
            return 0;
        }
        if (errno != EINVAL)
            return -errno;
        atomic_store(&guard_mode, 2); /* kernel before 6.13 */
    }
    return mprotect(guard, page_size(), PROT_NONE) == 0 ? 0 : -errno;
}

/* 0 = not probed, 1 = process_madvise takes guard advice, 2 = it does not. */
static _Atomic int batch_mode;

/* Valgrind 3.19 does not know process_madvise: it fails it (ENOSYS) with a
 * warning that every run would print, so weft does not try it there. */
static bool process_madvise_unknown(void)
{
#ifdef WEFT_HAVE_VALGRIND
    return RUNNING_ON_VALGRIND;
#else
    return false;
#endif
}

/* Installs the guards of all slots of a fresh slab with one process_madvise
 * call (0.9 us a guard instead of 1.35 us with one madvise each, measured on
 * Linux 6.18). Returns false when the kernel cannot, and the guards are then
 * installed one by one as slots are carved. */
static bool guard_slab(char *base, size_t slot_len, unsigned n)
{
    if (atomic_load(&batch_mode) == 2 || atomic_load(&guard_mode) == 2)
        return false;
    if (process_madvise_unknown()) {
        atomic_store(&batch_mode, 2);
        return false;
    }
    struct iovec iov[64];
    unsigned done = 0;
    while (done < n) {
        unsigned k = n - done < 64 ? n - done : 64;
        for (unsigned i = 0; i < k; i++) {
            iov[i].iov_base = base + (size_t)(done + i) * slot_len;
            iov[i].iov_len = page_size();
        }
        long r = syscall(SYS_process_madvise, PIDFD_SELF_THREAD, iov, k, MADV_GUARD_INSTALL, 0);
        if (r != (long)(k * page_size())) {
            if (done == 0) {
                atomic_store(&batch_mode, 2);
                return false;
            }
            /* Partly done: finish slot by slot. */
            for (unsigned i = done; i < n; i++)
                if (madvise(base + (size_t)i * slot_len, page_size(), MADV_GUARD_INSTALL) < 0)
                    return false;
            return true;
        }
        atomic_store(&batch_mode, 1);
        atomic_store(&guard_mode, 1);
        done += k;
    }
    return true;
}

/* 0 = not probed, 1 = process_madvise takes populate advice, 2 = it does not
 * (kernels without the PIDFD_SELF sentinels, or that allow only a few
 * advices there). */
static _Atomic int populate_mode;

/* Faults in the top page of slots [from, from + n), n <= POPULATE_BATCH,
 * the page a task's first frames land on, with one call; true if it did. A fresh stack's first
 * touch otherwise takes a page fault at its first run; batching them costs about half as much per
 * stack on the virtual machines measured (bench/README.md). */
static bool populate_range(weft__slab *slab, unsigned from, unsigned n, bool may_touch)
{
    if (atomic_load(&populate_mode) == 0 && process_madvise_unknown())
        atomic_store(&populate_mode, 2);
    if (atomic_load(&populate_mode) == 2) {
        /* The stack helper's slabs get their tops touched instead, by the
         * helper before it hands one over, or by the worker that carves
         * it (slots it has not carved yet); a worker's own slabs leave
         * them to the first run. Never after the hand-over by the helper
         * (may_touch): the worker may be running tasks on those slots. */
        if (!slab->touch_tops || !may_touch)
            return false;
        for (unsigned i = 0; i < n; i++)
            *(volatile char *)(slab->base + (size_t)(from + i + 1) * slab->slot_len - 1) = 0;
        return true;
    }
    struct iovec iov[POPULATE_BATCH];
    for (unsigned i = 0; i < n; i++) {
        iov[i].iov_base = slab->base + (size_t)(from + i + 1) * slab->slot_len - page_size();
        iov[i].iov_len = page_size();
    }
    long r = syscall(SYS_process_madvise, PIDFD_SELF_THREAD, iov, n, MADV_POPULATE_WRITE, 0);
    /* Out of memory shows later as an ordinary fault; only a refusal of
     * the advice itself stops the batching. */
    if (r < 0 && (errno == EINVAL || errno == ENOSYS || errno == EBADF || errno == EPERM))
        atomic_store(&populate_mode, 2);
    else if (r >= 0)
        atomic_store(&populate_mode, 1);
    return r >= 0;
}

/* The carving side: the next batch from the front, up to what the helper
 * has done from the back. */
static void populate_tops(weft__slab *slab)
{
    unsigned from = atomic_load_explicit(&slab->populated, memory_order_relaxed);
    unsigned limit = atomic_load_explicit(&slab->back, memory_order_relaxed);
    if (from >= limit) {
        atomic_store_explicit(&slab->populated, slab->capacity, memory_order_relaxed);
        return;
    }
    unsigned n = limit - from < POPULATE_BATCH ? limit - from : POPULATE_BATCH;
    atomic_store_explicit(&slab->populated, from + n, memory_order_relaxed);
    populate_range(slab, from, n, true);
}

static size_t slot_len_of(int size_class)
{
    return page_size() + weft__stack_class_size(size_class);
}

/* Slots in the pool's next slab of a class: 8, doubling with each slab the
 * pool has of it, up to 1024. Huge stacks: under 64 GiB of address space. */
static unsigned next_capacity(const weft__stack_pool *p, int size_class)
{
    unsigned capacity = 8;
    for (const weft__slab *s = p->slabs; s; s = s->next)
        if (s->slot_len == slot_len_of(size_class) && capacity < 1024)
            capacity *= 2;
    while (capacity > 1 && slot_len_of(size_class) * capacity > ((size_t)64 << 30))
        capacity /= 2;
    return capacity;
}

/* Maps a slab and guards its slots. `injected`: the fault-injection points
 * apply (a worker's call; the helper's slabs are extra, and a test that
 * fails the Nth mmap counts the worker's). */
static weft__slab *slab_map(int size_class, unsigned capacity, bool injected)
{
    size_t slot_len = slot_len_of(size_class);
    size_t bytes = sizeof(weft__slab) + capacity * sizeof(weft__stack);
    weft__slab *slab = injected ? weft__malloc(bytes) : malloc(bytes);
    if (!slab)
        return NULL;
    void *base = MAP_FAILED;
    if (!injected || !weft__fault_hit(WEFT_FAULT_MMAP))
        base = mmap(NULL, slot_len * capacity, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
        free(slab);
        return NULL;
    }
    slab->base = base;
    slab->map_len = slot_len * capacity;
    slab->slot_len = slot_len;
    slab->capacity = capacity;
    slab->carved = 0;
    atomic_init(&slab->populated, 0);
    atomic_init(&slab->back, capacity);
    slab->touch_tops = !injected;
    slab->guarded = guard_slab(base, slot_len, capacity);
    return slab;
}

static void slab_unmap(weft__slab *slab)
{
    munmap(slab->base, slab->map_len);
    free(slab);
}

static void slab_adopt(weft__stack_pool *p, weft__slab *slab)
{
    slab->next = p->slabs;
    p->slabs = slab;
    p->bytes_mapped += slab->map_len;
}

static bool helper_request(weft__stack_helper *h, weft__stack_pool *p, int size_class,
                           unsigned capacity);

/* The slab to carve next for a class: the one the helper made, or a new
 * one mapped here. A large one in use asks the helper for the one after. */
static int slab_next(weft__stack_pool *p, int size_class, weft__slab **out)
{
    weft__slab *slab = NULL;
    uint32_t bit = 1u << size_class;
    if (p->helper && atomic_load_explicit(&p->ready[size_class], memory_order_relaxed)) {
        slab = atomic_exchange_explicit(&p->ready[size_class], NULL, memory_order_acquire);
        atomic_fetch_and_explicit(&p->requested, ~bit, memory_order_relaxed);
        p->slabs_from_helper++;
    } else {
        /* None ready (the helper is still on it, when it was asked): map
         * a whole one here, and the helper's serves the next time. Small
         * slabs to bridge the wait were tried: the worker's mappings then
         * waited on the helper's madvise calls (mmap_lock), and the cold
         * round got slower, not faster (docs/stacks.md). */
        slab = slab_map(size_class, next_capacity(p, size_class), true);
        if (!slab)
            return -ENOMEM;
    }
    slab_adopt(p, slab);
    p->carving[size_class] = slab;
    if (p->helper && p->helper->enabled && slab->capacity >= 256 &&
        !(atomic_load_explicit(&p->requested, memory_order_relaxed) & bit) &&
        !atomic_load_explicit(&p->ready[size_class], memory_order_relaxed)) {
        atomic_fetch_or_explicit(&p->requested, bit, memory_order_relaxed);
        if (!helper_request(p->helper, p, size_class, next_capacity(p, size_class)))
            atomic_fetch_and_explicit(&p->requested, ~bit, memory_order_relaxed);
    }
    *out = slab;
    return 0;
}

static void untrimmed_unlink(weft__stack_pool *p, weft__stack *s)
{
    if (s->prev_untrimmed)
        s->prev_untrimmed->next_untrimmed = s->next_untrimmed;
    else
        p->untrimmed = s->next_untrimmed;
    if (s->next_untrimmed)
        s->next_untrimmed->prev_untrimmed = s->prev_untrimmed;
    else
        p->untrimmed_tail = s->prev_untrimmed;
    s->on_untrimmed = false;
}

int weft__stack_acquire(weft__stack_pool *p, int size_class, weft__stack **out)
{
    weft__stack *s = p->free[size_class];
    if (s) {
        p->free[size_class] = s->next;
        s->in_pool = false;
        /* Off the trim list now: the stack may be released into another
         * worker's pool, whose list it must then join. */
        if (s->on_untrimmed)
            untrimmed_unlink(p, s);
        p->pooled--;
        p->live++;
        s->lent_by = p;
        *out = s;
        return 0;
    }
    weft__slab *slab = p->carving[size_class];
    if (!slab || slab->carved == slab->capacity) {
        int r = slab_next(p, size_class, &slab);
        if (r < 0)
            return r;
    }
    char *slot = slab->base + (size_t)slab->carved * slab->slot_len;
    if (!slab->guarded && install_guard(slot) < 0)
        return -ENOMEM;
    if (slab->carved >= atomic_load_explicit(&slab->populated, memory_order_relaxed))
        populate_tops(slab);
    s = &slab->stacks[slab->carved++];
    s->next = NULL;
    s->lo = slot + page_size();
    s->size = slab->slot_len - page_size();
    s->slab = slab;
    s->size_class = (uint8_t)size_class;
    s->trimmed = true; /* fresh pages: nothing to return */
    s->valgrind_id = 0;
    s->in_pool = false;
    s->on_untrimmed = false;
#ifdef WEFT_HAVE_VALGRIND
    s->valgrind_id = VALGRIND_STACK_REGISTER(s->lo, s->lo + s->size);
#endif
    p->live++;
    s->lent_by = p;
    *out = s;
    return 0;
}

uint64_t weft__stack_pool_live(const weft__stack_pool *p)
{
    return p->live - atomic_load_explicit(&p->released_away, memory_order_relaxed);
}

int weft__stack_reserve(weft__stack_pool *p, int size_class)
{
    weft__slab *slab = p->carving[size_class];
    if (p->free[size_class] || (slab && slab->carved < slab->capacity))
        return 0;
    return slab_next(p, size_class, &slab);
}

void weft__stack_release(weft__stack_pool *p, weft__stack *s)
{
#ifdef WEFT_ASAN
    /* Frames of the finished task may still be poisoned; the next task that
     * gets this stack must start clean. */
    __asan_unpoison_memory_region(s->lo, s->size);
#endif
    s->next = p->free[s->size_class];
    p->free[s->size_class] = s;
    s->in_pool = true;
    if (s->lent_by == p)
        p->live--;
    else /* its task moved here from the pool that lent it */
        atomic_fetch_add_explicit(&s->lent_by->released_away, 1, memory_order_relaxed);
    p->pooled++;
    if (s->size > WEFT_STACK_HIGHWATER) {
        s->trimmed = false;
        s->released_ns = p->clock_ns;
        if (!s->on_untrimmed) {
            s->on_untrimmed = true;
            s->next_untrimmed = NULL;
            s->prev_untrimmed = p->untrimmed_tail;
            if (p->untrimmed_tail)
                p->untrimmed_tail->next_untrimmed = s;
            else
                p->untrimmed = s;
            p->untrimmed_tail = s;
        }
    }
}

unsigned weft__stack_trim(weft__stack_pool *p, unsigned max, uint64_t now)
{
    /* Oldest first; a recently released one ends the pass, as everything
     * behind it is about as recent. Only pooled stacks are on the list. */
    p->clock_ns = now;
    unsigned done = 0;
    while (p->untrimmed && done < max) {
        weft__stack *s = p->untrimmed;
        /* Signed: a stamp from the run clock's extrapolation may be a
         * little ahead of this real reading, and is then young, not old. */
        if (!s->trimmed && (int64_t)(now - s->released_ns) < (int64_t)WEFT_STACK_TRIM_AGE_NS)
            break;
        untrimmed_unlink(p, s);
        if (s->trimmed)
            continue;
        madvise(s->lo, s->size - WEFT_STACK_HIGHWATER, MADV_DONTNEED);
        s->trimmed = true;
        done++;
    }
    return done;
}

void weft__stack_pool_fini(weft__stack_pool *p)
{
    /* Made by the helper (stopped by now) and never carved. */
    for (int c = 0; c < WEFT_STACK_CLASSES; c++) {
        weft__slab *ready = atomic_exchange(&p->ready[c], NULL);
        if (ready)
            slab_adopt(p, ready);
    }
    weft__slab *slab = p->slabs;
    while (slab) {
        weft__slab *next = slab->next;
#ifdef WEFT_HAVE_VALGRIND
        for (unsigned i = 0; i < slab->carved; i++)
            VALGRIND_STACK_DEREGISTER(slab->stacks[i].valgrind_id);
#endif
        slab_unmap(slab);
        slab = next;
    }
    *p = (weft__stack_pool){0};
}

/* ---- the stack helper ---------------------------------------------------- */

_Atomic int weft__stack_helper_fail;

void weft__stack_helper_init(weft__stack_helper *h, bool enabled)
{
    *h = (weft__stack_helper){.enabled = enabled};
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->work, NULL);
}

/* One slab, mapped and guarded. Where the advice works, its top pages are
 * left to populate_from_back(), after the slab is handed over; otherwise
 * (not probed yet, or touching instead) every one is in before. */
static weft__slab *make_ready_slab(int size_class, unsigned capacity, bool *share)
{
    if (atomic_load_explicit(&weft__stack_helper_fail, memory_order_relaxed) == 2)
        return NULL;
    weft__slab *slab = slab_map(size_class, capacity, false);
    if (!slab)
        return NULL;
    *share = atomic_load(&populate_mode) == 1;
    if (!*share)
        while (atomic_load_explicit(&slab->populated, memory_order_relaxed) < slab->capacity)
            populate_tops(slab);
    return slab;
}

/* Loads the byte at p and drops it, unseen by the compiler's memory model
 * and the sanitizers: the helper's read of a top page a task may be
 * running on by now (the write is the task's own; the read changes
 * nothing). Under a hypervisor without nested paging (PVM) the first
 * access through each mapping costs the host a shadow entry, 5-7 µs,
 * even for a page MADV_POPULATE_WRITE has put in: paid here, on the
 * helper's CPU, the task's first frames find it done. */
static void read_once(const char *p)
{
#if defined(__x86_64__)
    unsigned v;
    __asm__ volatile("movzbl (%1), %0" : "=r"(v) : "r"(p));
#elif defined(__aarch64__)
    unsigned v;
    __asm__ volatile("ldrb %w0, [%1]" : "=r"(v) : "r"(p));
#else
    (void)p;
#endif
}

/* Faults in a handed-over slab's top pages from its last slot down, while
 * the worker that took it populates from the front as it carves, until the
 * two meet. A worker that took a finished slab had carved through it at
 * about twice the speed the helper could fault it in: it then mapped and
 * populated the next one itself, about half the slabs of a growing pool
 * (docs/stacks.md). Advice only: it never writes to a slot, which the
 * worker may be using by now, and a slot done twice is no harm. */
static void populate_from_back(weft__stack_helper *h, weft__slab *slab)
{
    for (;;) {
        unsigned b = atomic_load_explicit(&slab->back, memory_order_relaxed);
        unsigned front = atomic_load_explicit(&slab->populated, memory_order_relaxed);
        if (b <= front || atomic_load(&populate_mode) != 1 ||
            atomic_load_explicit(&h->stop, memory_order_relaxed))
            return;
        unsigned n = b - front < POPULATE_BATCH ? b - front : POPULATE_BATCH;
        if (!populate_range(slab, b - n, n, false))
            return; /* left to the worker, as it carves */
        for (unsigned i = b - n; i < b; i++)
            read_once(slab->base + (size_t)(i + 1) * slab->slot_len - 1);
        atomic_store_explicit(&slab->back, b - n, memory_order_relaxed);
    }
}

static void *helper_main(void *arg)
{
    weft__stack_helper *h = arg;
    pthread_setname_np(pthread_self(), "weft-stacks");
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->stop && h->count == 0)
            pthread_cond_wait(&h->work, &h->lock);
        if (h->stop)
            break;
        weft__stack_request q = h->queue[h->head];
        h->head = (h->head + 1) % WEFT_STACK_HELPER_QUEUE;
        h->count--;
        pthread_mutex_unlock(&h->lock);
        /* The pool outlives this: weft__stack_helper_stop joins this
         * thread before any pool is finished. */
        bool share = false;
        weft__slab *slab = make_ready_slab(q.size_class, q.capacity, &share);
        /* Published, the request stays marked until the pool takes the
         * slab (and clears the mark): clearing it here would let a pool
         * that takes the slab in between see its request still out, and
         * not ask for the next. Not published: the pool may ask again.
         * The pool asks only with its slot empty; a CAS all the same, so
         * that a slot never loses a slab it holds. */
        weft__slab *none = NULL;
        if (slab &&
            atomic_compare_exchange_strong_explicit(&q.pool->ready[q.size_class], &none, slab,
                                                    memory_order_release, memory_order_relaxed)) {
            /* Release: who sees the count sees the slab in its slot. */
            atomic_fetch_add_explicit(&h->slabs_made, 1, memory_order_release);
            /* The pool unmaps its slabs only after this thread is joined
             * (weft__stack_helper_stop), taken or not. */
            if (share)
                populate_from_back(h, slab);
        } else {
            if (slab)
                slab_unmap(slab);
            atomic_fetch_and_explicit(&q.pool->requested, ~(1u << q.size_class),
                                      memory_order_release);
        }
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* Queues a request. False when it was not taken (the thread could not
 * start the last time it tried, or is stopping; the queue is full): the pool then maps its next
 * slab itself, and asks again at the one after. The first request leaves
 * the thread to start to weft__stack_helper_start: this may run on a
 * task's stack (a spawn reserving a slab, a direct yield to a task's first
 * run), perhaps a 16 KiB one, too small for pthread_create. */
static bool helper_request(weft__stack_helper *h, weft__stack_pool *p, int size_class,
                           unsigned capacity)
{
    bool taken = false;
    pthread_mutex_lock(&h->lock);
    if (h->failed && h->refuse_left)
        h->refuse_left--;
    else
        h->failed = false; /* refused enough: this one tries the start again */
    if (!h->failed && !h->stop && h->count < WEFT_STACK_HELPER_QUEUE) {
        h->queue[(h->head + h->count) % WEFT_STACK_HELPER_QUEUE] =
            (weft__stack_request){.pool = p, .size_class = size_class, .capacity = capacity};
        h->count++;
        if (h->started)
            pthread_cond_signal(&h->work);
        else
            p->helper_start_wanted = true;
        taken = true;
    }
    pthread_mutex_unlock(&h->lock);
    return taken;
}

void weft__stack_helper_start(weft__stack_pool *p)
{
    p->helper_start_wanted = false;
    weft__stack_helper *h = p->helper;
    pthread_mutex_lock(&h->lock);
    if (!h->started && !h->failed && !h->stop) {
        if (atomic_load_explicit(&weft__stack_helper_fail, memory_order_relaxed) != 1 &&
            weft__thread_start_quiet(&h->thread, helper_main, h) == 0) {
            h->started = true;
            pthread_cond_signal(&h->work);
        } else {
            /* The requests queued go back to their pools, and the next
             * ones are refused for a while (helper_request). */
            h->failed = true;
            h->refuse_next = h->refuse_next ? 2 * h->refuse_next : 1;
            if (h->refuse_next > WEFT_STACK_HELPER_RETRY_MAX)
                h->refuse_next = WEFT_STACK_HELPER_RETRY_MAX;
            h->refuse_left = h->refuse_next;
            for (; h->count; h->count--, h->head = (h->head + 1) % WEFT_STACK_HELPER_QUEUE) {
                weft__stack_request *q = &h->queue[h->head];
                atomic_fetch_and_explicit(&q->pool->requested, ~(1u << q->size_class),
                                          memory_order_relaxed);
            }
        }
    }
    pthread_mutex_unlock(&h->lock);
}

void weft__stack_helper_stop(weft__stack_helper *h)
{
    pthread_mutex_lock(&h->lock);
    h->stop = true;
    h->count = 0;
    pthread_cond_signal(&h->work);
    bool started = h->started;
    h->started = false;
    pthread_mutex_unlock(&h->lock);
    if (started)
        pthread_join(h->thread, NULL);
}

void weft__stack_helper_fini(weft__stack_helper *h)
{
    weft__stack_helper_stop(h);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->work);
}
