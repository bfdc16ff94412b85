/* The run clock; see runclock.h. */
#include "common/runclock.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* A real reading whose two bracketing rdtsc are further apart than this was
 * interrupted: its TSC value is not a good match for its time. About 7 us
 * at 3 GHz, where an undisturbed bracket is well under 1 us. */
#define BRACKET_MAX_TICKS 20000u

/* Rates outside 0.05-20 ns a tick (20 GHz-50 MHz) are a measurement gone
 * wrong, e.g. across a migration between CPUs whose TSCs differ. */
#define MULT_MIN ((uint64_t)1 << 32 >> 5) /* 1/32 ns a tick */
#define MULT_MAX ((uint64_t)20 << 32)

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool tsc_usable;
static pthread_once_t tsc_once = PTHREAD_ONCE_INIT;

/* Invariant TSC (CPUID 0x80000007 EDX bit 8), and a kernel that keeps time
 * with it: its clocksource is "tsc", or "kvm-clock" in a KVM guest, whose
 * host then vouches for a stable TSC. Anything else (hpet, acpi_pm, a
 * kernel that marked the TSC unstable) means the TSC is not to be trusted
 * across CPUs. */
static void probe_tsc(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000000u, &a, &b, &c, &d) || a < 0x80000007u)
        return;
    __get_cpuid(0x80000007u, &a, &b, &c, &d);
    if (!(d & (1u << 8)))
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
    c->tsc = use_tsc && weft__runclock_tsc_usable();
}

uint64_t weft__runclock_sync(weft__runclock *c)
{
    c->syncs++;
#if defined(__x86_64__)
    if (c->tsc) {
        uint64_t t0 = __builtin_ia32_rdtsc();
        uint64_t ns = real_ns();
        uint64_t t1 = __builtin_ia32_rdtsc();
        if (t1 < t0 || t1 - t0 > BRACKET_MAX_TICKS) {
            /* Interrupted (or moved to another CPU) mid-reading: stop
             * extrapolating until a clean reading anchors it again (the
             * TSC counts from boot, so every delta from 0 is past the
             * span). */
            c->anchor_tsc = 0;
            return ns;
        }
        uint64_t tsc = t0 + (t1 - t0) / 2;
        if (!c->cal_ns || tsc < c->cal_tsc) {
            c->cal_tsc = tsc;
            c->cal_ns = ns;
        } else if (ns - c->cal_ns >= WEFT_RUNCLOCK_CAL_NS) {
            uint64_t mult =
                (uint64_t)(((unsigned __int128)(ns - c->cal_ns) << 32) / (tsc - c->cal_tsc));
            if (mult >= MULT_MIN && mult <= MULT_MAX) {
                c->mult = mult;
                c->span_ticks =
                    (uint64_t)(((unsigned __int128)WEFT_RUNCLOCK_SPAN_NS << 32) / mult);
            }
            c->cal_tsc = tsc;
            c->cal_ns = ns;
        }
        c->anchor_tsc = tsc;
        c->anchor_ns = ns;
        return ns;
    }
#endif
    return real_ns();
}
