/* Fiber set-up for the sanitizers; the switch itself is inline in fiber.h. */
#include "context/fiber.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#ifdef WEFT_TSAN
/* Creating a TSan fiber maps and clears TSan's per-thread state: about
 * 2 ms here, which made every task's first run cost that much and bent the
 * timing of the whole TSan suite. Fibers whose task ended cleanly are kept
 * for the next tasks (their shadow call stacks are empty, see
 * WEFT_NO_TSAN). Every switch synchronises the two fibers (flag 0), so a
 * reused fiber's history adds no ordering that the runtime's own switches
 * had not. */
#define TSAN_FIBER_POOL 1024
static pthread_mutex_t tsan_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static void *tsan_pool[TSAN_FIBER_POOL];
static unsigned tsan_pooled;

static void *tsan_fiber_get(void)
{
    void *f = NULL;
    pthread_mutex_lock(&tsan_pool_lock);
    if (tsan_pooled)
        f = tsan_pool[--tsan_pooled];
    pthread_mutex_unlock(&tsan_pool_lock);
    return f ? f : __tsan_create_fiber(0);
}

static void tsan_fiber_put(void *f, bool reusable)
{
    if (reusable) {
        pthread_mutex_lock(&tsan_pool_lock);
        bool kept = tsan_pooled < TSAN_FIBER_POOL;
        if (kept)
            tsan_pool[tsan_pooled++] = f;
        pthread_mutex_unlock(&tsan_pool_lock);
        if (kept)
            return;
    }
    __tsan_destroy_fiber(f);
}
#endif

void weft__fiber_init_thread(weft__fiber *f)
{
    memset(f, 0, sizeof *f);
#ifdef WEFT_ASAN
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo;
        size_t size;
        if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
            f->stack_lo = lo;
            f->stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
#endif
#ifdef WEFT_TSAN
    f->tsan_fiber = __tsan_get_current_fiber();
#endif
}

int weft__fiber_init(weft__fiber *f, void *lo, size_t size, void (*entry)(void *))
{
#ifdef WEFT_ASAN
    f->stack_lo = lo;
    f->stack_size = size;
    f->asan_fake_stack = NULL;
#endif
#ifdef WEFT_TSAN
    f->tsan_fiber = tsan_fiber_get();
    if (!f->tsan_fiber)
        return -ENOMEM;
    f->owns_tsan_fiber = true;
#endif
    f->sp = weft__ctx_make((char *)lo + size, entry);
    return 0;
}

void weft__fiber_fini(weft__fiber *f, bool reusable)
{
#ifdef WEFT_TSAN
    if (f->owns_tsan_fiber)
        tsan_fiber_put(f->tsan_fiber, reusable);
    f->owns_tsan_fiber = false;
    f->tsan_fiber = NULL;
#else
    (void)f;
    (void)reusable;
#endif
}
