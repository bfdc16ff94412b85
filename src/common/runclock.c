/* The run clock; see runclock.h. */
#include "common/runclock.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <cpuid.h>
#if __has_include(<sys/rseq.h>)
#include <sys/rseq.h>
#define WEFT_HAVE_RSEQ 1
#endif
#endif

/* A real reading whose two bracketing rdtsc are further apart than this was
 * interrupted: its TSC value is not a good match for its time. About 7 us
 * at 3 GHz, where an undisturbed bracket is well under 1 us. */
#define BRACKET_MAX_TICKS 20000u
/* A rate measured over fewer ticks than this is not trusted (a TSC that
 * barely moved in 10 ms is broken). */
#define CAL_MIN_TICKS 1000000u

/* Rates outside 1/32-20 ns a tick (32 GHz-50 MHz) are a measurement gone
 * wrong. */
#define MULT_MIN ((uint64_t)1 << 32 >> 5)
#define MULT_MAX ((uint64_t)20 << 32)

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool tsc_usable;
static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;

/* The calling thread's rseq cpu_id field, or NULL when glibc did not
 * register rseq (valgrind, GLIBC_TUNABLES=glibc.pthread.rseq=0). */
static const volatile uint32_t *rseq_cpu_id(void)
{
#ifdef WEFT_HAVE_RSEQ
    if (__rseq_size == 0)
        return NULL;
    char *tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp)); /* the thread pointer */
    const volatile struct rseq *r = (const volatile struct rseq *)(tp + __rseq_offset);
    if ((int32_t)r->cpu_id < 0) /* RSEQ_CPU_ID_UNINITIALIZED or _REGISTRATION_FAILED */
        return NULL;
    return &r->cpu_id;
#else
    return NULL;
#endif
}

static void probe_tsc(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u)
        return;
    __get_cpuid(0x80000007u, &a, &b, &c, &d);
    if (!(d & (1u << 8))) /* invariant TSC: constant rate, runs in idle states */
        return;
    if (!rseq_cpu_id())
        return;
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
    if (!f)
        return;
    char name[32] = "";
    if (fgets(name, sizeof name, f))
        name[strcspn(name, "\n")] = 0;
    fclose(f);
    tsc_usable = strcmp(name, "tsc") == 0 || strcmp(name, "kvm-clock") == 0;
#endif
}

bool weft__runclock_tsc_usable(void)
{
    pthread_once(&tsc_once, probe_tsc);
    return tsc_usable;
}

void weft__runclock_init(weft__runclock *c, bool use_tsc)
{
    memset(c, 0, sizeof *c);
    c->anchor_cpu = c->cal_cpu = WEFT_RUNCLOCK_NO_CPU;
    if (use_tsc && weft__runclock_tsc_usable()) {
        c->cpu_id = rseq_cpu_id();
        c->tsc = c->cpu_id != NULL;
    }
}

uint64_t weft__runclock_sync(weft__runclock *c)
{
    c->syncs++;
#if defined(__x86_64__)
    if (c->tsc) {
        uint32_t cpu = *c->cpu_id;
        uint64_t t0 = __builtin_ia32_rdtsc();
        uint64_t ns = real_ns();
        uint64_t t1 = __builtin_ia32_rdtsc();
        if (t1 < t0 || t1 - t0 > BRACKET_MAX_TICKS || *c->cpu_id != cpu) {
            /* Interrupted or moved mid-reading: extrapolate nothing until a
             * clean reading anchors again. */
            c->anchor_cpu = WEFT_RUNCLOCK_NO_CPU;
            return ns;
        }
        /* The reading was taken at some tick in [t0, t1]: tsc is that
         * tick give or take half. */
        uint64_t tsc = t0 + (t1 - t0) / 2;
        uint64_t half = (t1 - t0 + 1) / 2;
        if (cpu != c->cal_cpu || tsc < c->cal_tsc + CAL_MIN_TICKS) {
            if (cpu != c->cal_cpu || tsc < c->cal_tsc) {
                c->cal_cpu = cpu; /* (re)start the rate measurement here */
                c->cal_tsc = tsc;
                c->cal_ns = ns;
                c->cal_half = half;
            }
        } else if (ns - c->cal_ns >= WEFT_RUNCLOCK_CAL_NS) {
            /* At least 10 ms and CAL_MIN_TICKS: the quotients fit easily,
             * and the ticks really elapsed exceed the two halves (at most
             * BRACKET_MAX_TICKS together). */
            uint64_t ticks = tsc - c->cal_tsc;
            unsigned __int128 ns_elapsed = (unsigned __int128)(ns - c->cal_ns) << 32;
            uint64_t mult = (uint64_t)(ns_elapsed / ticks);
            if (mult >= MULT_MIN && mult <= MULT_MAX) {
                uint64_t hi = (uint64_t)(ns_elapsed / (ticks - half - c->cal_half));
                c->mult = mult;
                c->mult_hi = hi + hi / 512 + 1;
                c->span_ticks = (uint64_t)(((unsigned __int128)WEFT_RUNCLOCK_SPAN_NS << 32) / mult);
            }
            c->cal_tsc = tsc;
            c->cal_ns = ns;
            c->cal_half = half;
        }
        c->anchor_cpu = cpu;
        c->anchor_tsc = tsc;
        c->anchor_ns = ns;
        c->anchor_half = half;
        return ns;
    }
#endif
    return real_ns();
}
