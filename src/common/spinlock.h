/* A small spinlock for short critical sections shared between worker
 * threads (the sync primitives' state, the task tree). A pthread mutex
 * costs a futex system call on every contended unlock, which showed up as a
 * third of the time of spawn+join with two workers; these sections are a
 * few dozen instructions, so spinning is cheaper. The slow path spins with a
 * pause, then yields the CPU: the holder may have been preempted, and on a
 * shared machine spinning against it only wastes its time. */
#ifndef WEFT_COMMON_SPINLOCK_H
#define WEFT_COMMON_SPINLOCK_H

void weft__spin_lock_slow(unsigned *lock);

static inline void weft__spin_lock(unsigned *lock)
{
    /* Pairs with the release in weft__spin_unlock. */
    if (__builtin_expect(!__atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE), 1))
        return;
    weft__spin_lock_slow(lock);
}

static inline void weft__spin_unlock(unsigned *lock)
{
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

/* One step of a wait loop: a pause for the first 64 steps, then
 * sched_yield (the other side may be a preempted thread). */
void weft__backoff(unsigned *spins);

#endif
