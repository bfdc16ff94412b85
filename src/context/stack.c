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
    unsigned populated;   /* slots below this index have their top page in */
    bool guarded;         /* every slot's guard was installed at mapping time */
    weft__stack stacks[]; /* descriptors, carved in order */
} weft__slab;

static size_t page_size(void)
{
    static size_t cached;
    if (!cached)
        cached = (size_t)sysconf(_SC_PAGESIZE);
    return cached;
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

/* Installs the guards of all slots of a fresh slab with one process_madvise
 * call (0.9 us a guard instead of 1.35 us with one madvise each, measured on
 * Linux 6.18). Returns false when the kernel cannot, and the guards are then
 * installed one by one as slots are carved. */
static bool guard_slab(char *base, size_t slot_len, unsigned n)
{
    if (atomic_load(&batch_mode) == 2 || atomic_load(&guard_mode) == 2)
        return false;
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

/* Faults in the top page of the next POPULATE_BATCH slots, the page a task's
 * first frames land on, with one call. A fresh stack's first touch otherwise
 * takes a page fault at its first run; batching them costs about half as
 * much per stack on the virtual machines measured (bench/README.md). */
static void populate_tops(weft__slab *slab)
{
    unsigned from = slab->populated, n = slab->capacity - from;
    if (n > POPULATE_BATCH)
        n = POPULATE_BATCH;
    slab->populated = from + n;
    if (atomic_load(&populate_mode) == 2)
        return;
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
}

static int slab_new(weft__stack_pool *p, int size_class, weft__slab **out)
{
    unsigned capacity = 8;
    for (weft__slab *s = p->slabs; s; s = s->next)
        if (s->slot_len == page_size() + weft__stack_class_size(size_class) && capacity < 1024)
            capacity *= 2;
    size_t slot_len = page_size() + weft__stack_class_size(size_class);
    /* Huge stacks: keep a slab under 64 GiB of address space. */
    while (capacity > 1 && slot_len * capacity > ((size_t)64 << 30))
        capacity /= 2;

    weft__slab *slab = weft__malloc(sizeof *slab + capacity * sizeof(weft__stack));
    if (!slab)
        return -ENOMEM;
    void *base = MAP_FAILED;
    if (!weft__fault_hit(WEFT_FAULT_MMAP))
        base = mmap(NULL, slot_len * capacity, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
        free(slab);
        return -ENOMEM;
    }
    slab->base = base;
    slab->map_len = slot_len * capacity;
    slab->slot_len = slot_len;
    slab->capacity = capacity;
    slab->carved = 0;
    slab->populated = 0;
    slab->guarded = guard_slab(base, slot_len, capacity);
    slab->next = p->slabs;
    p->slabs = slab;
    p->bytes_mapped += slab->map_len;
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
        *out = s;
        return 0;
    }
    weft__slab *slab = p->carving[size_class];
    if (!slab || slab->carved == slab->capacity) {
        int r = slab_new(p, size_class, &slab);
        if (r < 0)
            return r;
        p->carving[size_class] = slab;
    }
    char *slot = slab->base + (size_t)slab->carved * slab->slot_len;
    if (!slab->guarded && install_guard(slot) < 0)
        return -ENOMEM;
    if (slab->carved >= slab->populated)
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
    *out = s;
    return 0;
}

int weft__stack_reserve(weft__stack_pool *p, int size_class)
{
    weft__slab *slab = p->carving[size_class];
    if (p->free[size_class] || (slab && slab->carved < slab->capacity))
        return 0;
    int r = slab_new(p, size_class, &slab);
    if (r < 0)
        return r;
    p->carving[size_class] = slab;
    return 0;
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
    p->live--;
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
        if (!s->trimmed && now - s->released_ns < WEFT_STACK_TRIM_AGE_NS)
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
    weft__slab *slab = p->slabs;
    while (slab) {
        weft__slab *next = slab->next;
#ifdef WEFT_HAVE_VALGRIND
        for (unsigned i = 0; i < slab->carved; i++)
            VALGRIND_STACK_DEREGISTER(slab->stacks[i].valgrind_id);
#endif
        munmap(slab->base, slab->map_len);
        free(slab);
        slab = next;
    }
    *p = (weft__stack_pool){0};
}
