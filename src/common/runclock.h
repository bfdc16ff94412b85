/* The run clock: cheap CLOCK_MONOTONIC nanoseconds for charging task runs.
 *
 * A timed scheduler (several queues, a policy that orders by service, or
 * stats) reads the clock after every task run. clock_gettime costs 24-35 ns
 * on the KVM guests measured (kvm-clock through the vDSO), which was most of
 * what LAS and QLAS cost over FIFO per task (bench/README.md). On x86_64
 * with an invariant TSC, readings between two real ones are extrapolated
 * from rdtsc instead (about 10 ns here):
 *
 *  - each real reading (weft__runclock_sync) anchors the extrapolation, and
 *    a reading more than WEFT_RUNCLOCK_SPAN_NS past the anchor, or on
 *    another CPU than the anchor's (from the thread's rseq area), is a real
 *    one again: a busy worker still reads the real clock once a
 *    millisecond, and TSC offsets between CPUs never enter a reading;
 *  - the rate is measured, not assumed: from two real readings on one CPU
 *    at least WEFT_RUNCLOCK_CAL_NS apart, so it follows CLOCK_MONOTONIC, NTP
 *    slew included. Each real reading is bracketed by two rdtsc, and one
 *    whose bracket is wide (the thread was interrupted) anchors nothing;
 *  - the TSC is used only where the kernel keeps time with it (clocksource
 *    "tsc"), or keeps time with kvm-clock (built on the TSC, with
 *    per-vCPU corrections, so possibly with the TSC marked unstable) and
 *    glibc registered rseq, so that the CPU check above holds. Until a rate
 *    is known, and anywhere else, every reading is a real one.
 *
 * An extrapolated reading may be a little ahead of CLOCK_MONOTONIC or of
 * the next real reading (well under a microsecond, up to the span if the
 * TSC jumps): use it to measure runs, never to fire timers. Per worker: only
 * its own thread reads it.
 */
#ifndef WEFT_COMMON_RUNCLOCK_H
#define WEFT_COMMON_RUNCLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define WEFT_RUNCLOCK_SPAN_NS 1000000ull  /* extrapolate at most 1 ms */
#define WEFT_RUNCLOCK_CAL_NS  10000000ull /* rate from readings >= 10 ms apart */
#define WEFT_RUNCLOCK_NO_CPU  UINT32_MAX  /* anchor_cpu when nothing is anchored */

typedef struct weft__runclock {
    bool tsc;                       /* the TSC may be used at all */
    uint32_t anchor_cpu;            /* CPU of the anchor, or WEFT_RUNCLOCK_NO_CPU */
    uint32_t cal_cpu;               /* CPU of the rate measurement's start */
    uint64_t anchor_tsc, anchor_ns; /* the latest clean real reading */
    uint64_t anchor_half;           /* its TSC is within this many ticks */
    uint64_t cal_tsc, cal_ns;       /* start of the current rate measurement */
    uint64_t cal_half;              /* its TSC is within this many ticks */
    uint64_t mult;                  /* ns per tick << 32; 0 = rate not known */
    uint64_t mult_hi;               /* an upper bound of mult (see _now_no_earlier) */
    uint64_t span_ticks;            /* WEFT_RUNCLOCK_SPAN_NS in ticks */
    uint64_t reads, syncs;          /* readings, of which real ones */
    /* The owning thread's CPU number, kept current by the kernel (its rseq
     * area); NULL when the TSC is not used. */
    const volatile uint32_t *cpu_id;
} weft__runclock;

/* On the thread that will read it. use_tsc false: every reading is real
 * (tests compare with it; embedded executors may be driven from any
 * thread). */
void weft__runclock_init(weft__runclock *c, bool use_tsc);
/* Whether this machine's TSC is fit for the run clock (checked once). */
bool weft__runclock_tsc_usable(void);
/* A real CLOCK_MONOTONIC reading, which also re-anchors and calibrates. */
uint64_t weft__runclock_sync(weft__runclock *c);

static inline uint64_t weft__runclock_now(weft__runclock *c)
{
    c->reads++;
#if defined(__x86_64__)
    if (c->mult && *c->cpu_id == c->anchor_cpu) {
        /* Unsigned: a TSC behind the anchor wraps to a huge delta and takes
         * the real path. */
        uint64_t d = __builtin_ia32_rdtsc() - c->anchor_tsc;
        if (d < c->span_ticks)
            return c->anchor_ns + (uint64_t)(((unsigned __int128)d * c->mult) >> 32);
    }
#endif
    return weft__runclock_sync(c);
}

/* A reading no earlier than CLOCK_MONOTONIC at the call, for deadlines
 * counted from now (a sleep), which must never fall early. It errs late
 * instead: the extrapolation starts from the earliest tick the anchor's
 * reading may have been taken at, and runs at an upper bound of the rate
 * (the measurement's own error, plus 0.2% for the kernel's frequency
 * adjustments since). That is at most a few microseconds late within a
 * span. A real reading when no rate is known. */
static inline uint64_t weft__runclock_now_no_earlier(weft__runclock *c)
{
    c->reads++;
#if defined(__x86_64__)
    if (c->mult_hi && *c->cpu_id == c->anchor_cpu) {
        /* Fenced: a TSC read ahead of the code before it could be behind
         * a clock reading that code made. */
        __builtin_ia32_lfence();
        uint64_t d = __builtin_ia32_rdtsc() - c->anchor_tsc;
        /* Checked again: a move between the two reads would have read
         * another CPU's TSC. */
        if (d < c->span_ticks && *c->cpu_id == c->anchor_cpu)
            return c->anchor_ns +
                   (uint64_t)(((unsigned __int128)(d + c->anchor_half) * c->mult_hi) >> 32);
    }
#endif
    return weft__runclock_sync(c);
}

#endif
