/* Fiber set-up for the sanitizers; the switch itself is inline in fiber.h. */
#include "context/fiber.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

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
    f->tsan_fiber = __tsan_create_fiber(0);
    if (!f->tsan_fiber)
        return -ENOMEM;
    f->owns_tsan_fiber = true;
#endif
    f->sp = weft__ctx_make((char *)lo + size, entry);
    return 0;
}

void weft__fiber_fini(weft__fiber *f)
{
#ifdef WEFT_TSAN
    if (f->owns_tsan_fiber)
        __tsan_destroy_fiber(f->tsan_fiber);
    f->owns_tsan_fiber = false;
    f->tsan_fiber = NULL;
#else
    (void)f;
#endif
}
