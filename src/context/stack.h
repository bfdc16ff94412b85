/* Guarded, pooled task stacks (DESIGN §9).
 *
 * Stacks are carved from large MAP_NORESERVE slabs. Each slot is a guard page
 * followed by the usable stack; the guard is installed with
 * MADV_GUARD_INSTALL (Linux 6.13+), which does not split the VMA, so a
 * million guarded stacks fit under the default vm.max_map_count; older
 * kernels fall back to mprotect(PROT_NONE). Freed stacks return to the
 * pool of the worker where their task ended (a task may have moved) with
 * their touched pages; when the worker goes idle it trims
 * stacks that have sat unused in the pool for WEFT_STACK_TRIM_AGE_NS
 * pooled stacks to a high-water mark with MADV_DONTNEED.
 */
#ifndef WEFT_CONTEXT_STACK_H
#define WEFT_CONTEXT_STACK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEFT_STACK_MIN         (16u * 1024)
#define WEFT_STACK_MAX         ((size_t)1 << 30)
#define WEFT_STACK_DEFAULT     (256u * 1024)
#define WEFT_STACK_HIGHWATER   (32u * 1024)  /* touched bytes a pooled stack keeps */
#define WEFT_STACK_CLASSES     17            /* 16 KiB << 0 .. 16 KiB << 16 = 1 GiB */
#define WEFT_STACK_TRIM_AGE_NS 1000000000ull /* pooled this long: deep pages go back */

struct weft__slab;
struct weft__stack_pool;

/* The stack helper: one thread per runtime, started (by the worker loop,
 * at its next task run) once a worker's pool has grown past
 * WEFT_STACK_HELPER_FROM stacks of one size and asked. It maps the
 * pool's next slab of that size, installs its guards and faults in the top
 * page of every slot, ahead of use, so that a worker whose tasks multiply
 * runs them on memory that is already there (each fresh page costs 1-2 us
 * on the virtual machines measured, and a fresh stack needs one). The
 * work is the same; it moves to a CPU that is otherwise idle, or shares
 * one with the worker. Requests go through a lock, slabs come back
 * through the pools' atomic ready slots; a worker's hot path touches
 * neither. docs/stacks.md. */
#define WEFT_STACK_HELPER_FROM      248 /* stacks of one class carved (8+16+...+128) */
#define WEFT_STACK_HELPER_QUEUE     64  /* requests waiting; more are refused */
#define WEFT_STACK_HELPER_RETRY_MAX 64  /* refused requests between two start tries, at most */

typedef struct weft__stack_request {
    struct weft__stack_pool *pool;
    int size_class;
    unsigned capacity;
} weft__stack_request;

typedef struct weft__stack_helper {
    bool enabled; /* fixed at init: false = workers make every slab */
    pthread_mutex_t lock;
    pthread_cond_t work;
    weft__stack_request queue[WEFT_STACK_HELPER_QUEUE];
    unsigned head, count;
    bool started, failed; /* failed: the thread's last start failed */
    /* After a failed start: requests to refuse before the next try (a
     * passing EAGAIN should not turn the helper off for the whole run, and
     * a lasting one should not cost a pthread_create per slab). Doubles with
     * each failure, up to WEFT_STACK_HELPER_RETRY_MAX. */
    unsigned refuse_left, refuse_next;
    /* Set under the lock; read without it too, by the thread's work on a
     * slab it has handed over, which it then leaves to the worker rather
     * than hold up a shutdown. */
    _Atomic bool stop;
    pthread_t thread;
    _Atomic uint64_t slabs_made; /* for tests and stats */
} weft__stack_helper;

/* For tests: 1 = the helper's thread fails to start, 2 = the slabs it
 * makes fail (the fault-injection points count the workers' mappings
 * only, so that a test that fails the Nth is not raced by the helper). */
extern _Atomic int weft__stack_helper_fail;

void weft__stack_helper_init(weft__stack_helper *h, bool enabled);
/* Starts the helper's thread for the requests a pool has queued
 * (p->helper_start_wanted), if it is not running yet. Call on a stack of
 * the thread's own (the worker loop's), not a task's: pthread_create needs
 * a few KiB. After a start that fails, the pools map their slabs
 * themselves, and the helper refuses requests for a while (stack.c,
 * helper_request) before the next try. */
void weft__stack_helper_start(struct weft__stack_pool *p);
/* Stops the thread, if it started, and waits for it; it takes no request
 * after. Slabs it made that no pool took stay in their pools' `ready`
 * slots, which pool_fini unmaps. Call before any pool that used h is
 * finished. Idempotent. */
void weft__stack_helper_stop(weft__stack_helper *h);
/* Stops it and frees what init made. */
void weft__stack_helper_fini(weft__stack_helper *h);

typedef struct weft__stack {
    struct weft__stack *next;           /* pool free list */
    struct weft__stack *next_untrimmed; /* pool's list of stacks to trim, */
    struct weft__stack *prev_untrimmed; /* doubly linked */
    char *lo;                           /* lowest usable byte, just above the guard */
    size_t size;                        /* usable bytes */
    struct weft__slab *slab;
    struct weft__stack_pool *lent_by; /* the pool that handed it out last */
    unsigned valgrind_id;
    uint8_t size_class;
    bool trimmed;         /* pages below the high-water mark returned */
    bool in_pool;         /* on a free list now */
    bool on_untrimmed;    /* on the pool's untrimmed list */
    uint64_t released_ns; /* pool clock when it was last released */
} weft__stack;

typedef struct weft__stack_pool {
    weft__stack *free[WEFT_STACK_CLASSES];
    struct weft__slab *carving[WEFT_STACK_CLASSES]; /* slab with uncarved slots */
    struct weft__slab *slabs;                       /* every slab, for teardown */
    weft__stack *untrimmed, *untrimmed_tail;        /* FIFO of released stacks to trim */
    uint64_t clock_ns; /* the owner's last clock reading: each poll of its ring, and trims */
    /* Handed out by this pool: live less those released into another
     * worker's pool (their tasks moved there), which that worker counts in
     * released_away. Read both with weft__stack_pool_live. */
    uint64_t live;
    _Atomic uint64_t released_away;
    uint64_t pooled; /* free in the pool */
    uint64_t bytes_mapped;
    /* NULL, or the helper that prepares this pool's next slabs: one for a
     * class at a time, left in ready[] until the pool starts carving it. */
    weft__stack_helper *helper;
    struct weft__slab *_Atomic ready[WEFT_STACK_CLASSES];
    _Atomic uint32_t requested; /* classes with a request out or a slab ready (bit each) */
    bool helper_start_wanted;   /* a request waits for weft__stack_helper_start */
    uint64_t slabs_from_helper; /* slabs this pool took from the helper */
} weft__stack_pool;

/* Rounds a requested stack size up to its class. Returns the class index,
 * or -EINVAL when size is outside [WEFT_STACK_MIN, WEFT_STACK_MAX]. */
int weft__stack_class(size_t size);
size_t weft__stack_class_size(int size_class);

void weft__stack_pool_init(weft__stack_pool *p);
/* Stacks this pool handed out that are still in use (by the owner). */
uint64_t weft__stack_pool_live(const weft__stack_pool *p);
/* Unmaps every slab; every stack must have been released. */
void weft__stack_pool_fini(weft__stack_pool *p);
/* Takes a stack of the given class. Returns 0 or -ENOMEM. */
int weft__stack_acquire(weft__stack_pool *p, int size_class, weft__stack **out);
/* Makes sure acquire can succeed without a new mapping: a pooled stack or
 * an uncarved slot exists, or a new slab is mapped now. Returns 0 or -ENOMEM.
 * This is how spawn reports "no stacks" while the stack itself is taken at
 * the first run. */
int weft__stack_reserve(weft__stack_pool *p, int size_class);
void weft__stack_release(weft__stack_pool *p, weft__stack *s);
/* Trims up to max pooled stacks released at least WEFT_STACK_TRIM_AGE_NS
 * before now (returning their pages below the high-water mark); returns how
 * many it trimmed. Also records now as the pool's clock for releases. */
unsigned weft__stack_trim(weft__stack_pool *p, unsigned max, uint64_t now);

/* True when MADV_GUARD_INSTALL guards stacks (else mprotect does). */
bool weft__stack_guard_madvise(void);

#endif
