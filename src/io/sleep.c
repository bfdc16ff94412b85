/* Sleeping: a timer record on the sleeping task's stack, armed in the
 * worker's timers, and a park until it fires. */
#include <errno.h>
#include <weft/io.h>

#include "common/saturate.h"
#include "runtime/worker.h"

/* now: the caller's reading of the clock, so a sleep costs one read. */
static int sleep_until(uint64_t abs_ns, uint64_t now)
{
    weft__worker *w = weft__worker_self();
    weft_task *t = w ? w->current : NULL;
    if (!t)
        return -EPERM;
    int r = weft__task_interrupted(t);
    if (r)
        return r;
    /* A pushed deadline that comes first ends the sleep with -ETIMEDOUT. */
    bool by_deadline = t->deadline && t->deadline < abs_ns;
    weft__timer timer = {.when = by_deadline ? t->deadline : abs_ns, .task = t};
    if (timer.when <= now) {
        if (by_deadline)
            return -ETIMEDOUT;
        return weft_yield();
    }
    weft__timer_add(&w->timers, &timer);
    while (!timer.fired) {
        weft__task_park();
        if ((atomic_load_explicit(&t->state, memory_order_acquire) & TASK_CANCELLED) &&
            !t->shield) {
            weft__timer_remove(&weft__worker_self()->timers, &timer);
            return -ECANCELED;
        }
        /* Woken early and moved to another worker, which disarmed the
         * timer: arm it again on this worker. */
        if (!timer.fired && !timer.armed) {
            if (weft_now_ns() >= timer.when)
                break;
            weft__timer_add(&weft__worker_self()->timers, &timer);
        }
    }
    return by_deadline ? -ETIMEDOUT : 0;
}

int weft_sleep_until(uint64_t abs_ns)
{
    return sleep_until(abs_ns, weft_now_ns());
}

int weft_sleep_ns(uint64_t ns)
{
    weft__worker *w = weft__worker_self();
    if (!w || !w->current)
        return -EPERM;
    if (ns == 0) {
        /* A yield, but a blocking call still: a sleep(0) in a loop must
         * see its cancellation and its deadline before it yields too
         * (weft_yield reports them only after). */
        int intr = weft__task_interrupted(w->current);
        return intr ? intr : weft_yield();
    }
    /* Not weft_now_ns: a vDSO clock_gettime costs 25-35 ns on the KVM
     * guests measured, most of what a sleep costs beyond a park; the run
     * clock's extrapolation from the TSC takes about a third of that, and
     * this reading of it is never behind the real clock, so the sleep is
     * never short (a microsecond or two long at worst). Under a pushed
     * deadline the real clock still decides whether that deadline has
     * passed: a reading ahead of it could say so too early. */
    uint64_t now = w->current->deadline ? weft_now_ns() : weft__runclock_now_no_earlier(&w->clock);
    return sleep_until(weft__add_sat(now, ns), now);
}
