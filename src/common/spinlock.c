/* The spinlock's slow path; see spinlock.h. */
#include "common/spinlock.h"

#include <sched.h>

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

void weft__backoff(unsigned *spins)
{
    if (++*spins < 64)
        cpu_relax();
    else
        sched_yield();
}

void weft__spin_lock_slow(unsigned *lock)
{
    unsigned spins = 0;
    for (;;) {
        /* Test before test-and-set: spin on a shared cache line. */
        while (__atomic_load_n(lock, __ATOMIC_RELAXED))
            weft__backoff(&spins);
        if (!__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE))
            return;
    }
}
