/* The run clock: cheap CLOCK_MONOTONIC nanoseconds for charging task runs.
 *
 * A timed scheduler (several queues, a policy that orders by service, or
 * stats) reads the clock after every task run. clock_gettime costs 24-35 ns
 * on the KVM guests measured (kvm-clock through the vDSO), which was most of
 * what LAS and QLAS cost over FIFO per task (bench/README.md). On x86_64
 * with an invariant TSC, readings between two real ones are extrapolated
 * from rdtsc instead (about 5-10 ns):
 *
 *  - each real reading (weft__runclock_sync) anchors the extrapolation, and
 *    a reading more than WEFT_RUNCLOCK_SPAN_NS past the anchor is a real one
 *    again, so a busy worker still reads the real clock once a millisecond;
 *  - the rate is measured, not assumed: from two real readings at least
 *    WEFT_RUNCLOCK_CAL_NS apart, so it follows CLOCK_MONOTONIC, NTP slew
 *    included. Each real reading is bracketed by two rdtsc, and one whose
 *    bracket is wide (the thread was interrupted) is not used for the rate;
 *  - until a rate is known, and without an invariant TSC or on a kernel
 *    whose clocksource is not TSC-based (a sign the TSC is not trusted),
 *    every reading is a real one.
 *
 * A reading may be a few nanoseconds behind the previous one when a real
 * reading replaces an extrapolation; callers that need monotonic values
 * clamp (run_task does). Per worker: only its own thread reads it.
 */
#ifndef WEFT_COMMON_RUNCLOCK_H
#define WEFT_COMMON_RUNCLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define WEFT_RUNCLOCK_SPAN_NS 1000000ull  /* extrapolate at most 1 ms */
#define WEFT_RUNCLOCK_CAL_NS  10000000ull /* rate from readings >= 10 ms apart */

typedef struct weft__runclock {
    bool tsc;                        /* the TSC may be used at all */
    uint64_t anchor_tsc, anchor_ns;  /* the latest real reading */
    uint64_t cal_tsc, cal_ns;        /* start of the current rate measurement */
    uint64_t mult;                   /* ns per tick << 32; 0 = rate not known */
    uint64_t span_ticks;             /* WEFT_RUNCLOCK_SPAN_NS in ticks */
    uint64_t reads, syncs;           /* readings, of which real ones */
} weft__runclock;

/* use_tsc false: every reading is real (tests use it to compare). */
void weft__runclock_init(weft__runclock *c, bool use_tsc);
/* Whether this machine's TSC is fit for the run clock (checked once). */
bool weft__runclock_tsc_usable(void);
/* A real CLOCK_MONOTONIC reading, which also re-anchors and calibrates. */
uint64_t weft__runclock_sync(weft__runclock *c);

static inline uint64_t weft__runclock_now(weft__runclock *c)
{
    c->reads++;
#if defined(__x86_64__)
    if (c->mult) {
        /* Unsigned: a TSC behind the anchor wraps to a huge delta and takes
         * the real path. */
        uint64_t d = __builtin_ia32_rdtsc() - c->anchor_tsc;
        if (d < c->span_ticks)
            return c->anchor_ns + (uint64_t)(((unsigned __int128)d * c->mult) >> 32);
    }
#endif
    return weft__runclock_sync(c);
}

#endif
