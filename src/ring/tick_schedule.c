/* A ticker's schedule.
 *
 * A ticker is a multishot timeout, armed for a bounded number of ticks at
 * a time (stream.c says why). The kernel takes one relative period for a
 * whole arming, and starts each next tick's period only when the worker
 * runs the last tick's task work, at its next io_uring_enter: every tick
 * comes later than the last by the period plus that delay (the lag, about
 * 25 us on an idle worker of the test machine). Left alone, the ticks
 * drift later and later: 1,000 ticks of 1 ms took 1,025 ms.
 *
 * So each arming is planned against the grid start + k * period: its
 * kernel period is what brings its last tick onto its grid point, spread
 * over its ticks, less the lag the previous armings showed. Between
 * armings the error is corrected; within one it stays about as small as
 * the lag varies. An arming late by less than a period catches up over
 * its ticks (never closer than half a period apart); grid points a whole
 * period or more behind (the worker was held) are skipped, not caught up
 * in a burst, as a Go ticker drops what its reader missed. When wakes get
 * quicker than the estimate (the least lag of the last few armings), ticks
 * come early by the shortfall, added up over the arming's ticks so far,
 * until the next arming corrects it: so each tick's grid point goes with
 * it, and weft_stream_next holds an early one back until then (stream.c):
 * none is handed out early. A slow ticker (one tick an arming) takes no
 * estimate off: each tick aims at its grid point and is late by its own
 * lag only.
 */
#include "common/saturate.h"
#include "ring/tick_schedule.h"

void weft__tick_schedule_set(weft__tick_schedule *ts, uint64_t period)
{
    if (period != ts->period) {
        /* Lags were capped by the old period, and a fast ticker's lag is
         * no guide to a slow one's: learn them again. */
        ts->nlags = 0;
        ts->lag = 0;
    }
    ts->period = period;
    ts->new_grid = true;
    ts->armed_at = 0;
    /* Ticks of the arming planned before (a reset's, still on its way out)
     * belong to no grid now: none is held (weft__tick_schedule_tick). */
    ts->first_due = 0;
}

static unsigned ticks_per_arming(uint64_t period)
{
    uint64_t n = WEFT_TICK_ARMING_NS / period;
    return n < 1 ? 1u : n > WEFT_TICK_ARMING ? WEFT_TICK_ARMING : (unsigned)n;
}

uint64_t weft__tick_schedule_arm(weft__tick_schedule *ts, uint64_t now, unsigned *ticks)
{
    uint64_t p = ts->period;
    unsigned n = ticks_per_arming(p);
    /* The last arming ended otherwise than by running its ticks (an
     * error; re-armed at the next pull): its grid points ran ahead of the
     * ticks that came, so the grid is laid anew. */
    if (ts->armed_at)
        ts->new_grid = true;
    /* Until two armings have shown the lag, short ones: each ends late by
     * its own lags, which a long one would add up past a period. */
    if (ts->nlags < 2 && n > WEFT_TICK_LEARNING)
        n = WEFT_TICK_LEARNING;
    if (ts->new_grid) {
        ts->due = weft__add_sat(now, p);
        ts->new_grid = false;
    } else if (now >= ts->due && now - ts->due >= p) {
        /* Behind by a whole period or more (the worker was held): those
         * grid points are skipped. Less is caught up below. */
        ts->due = weft__add_sat(ts->due, weft__mul_sat((now - ts->due) / p, p));
    }
    if (n == 1 && ts->due <= now)
        ts->due = weft__add_sat(ts->due, p); /* one tick, already late: the next */
    uint64_t last_due = weft__add_sat(ts->due, weft__mul_sat(n - 1, p));
    /* now < last_due, unless the grid ran into UINT64_MAX. Rounded up:
     * a tick late by a nanosecond rather than early by one. */
    uint64_t k = last_due > now ? (last_due - now) / n + ((last_due - now) % n != 0) : p;
    /* One tick an arming (a slow ticker) aims it at its grid point and is
     * late by one lag, which does not add up; several add up their lags
     * unless the estimate is taken off each. */
    if (n > 1)
        k = k > ts->lag ? k - ts->lag : 0;
    /* Within half a period either way: a wild estimate (a worker held
     * through a whole arming) costs at most that for one arming. */
    uint64_t lo = p / 2 ? p / 2 : 1, hi = weft__add_sat(p, p / 2);
    k = k < lo ? lo : k > hi ? hi : k;
    ts->armed_at = now;
    ts->first_tick = 0;
    ts->arming_period = k;
    ts->ticks = n;
    ts->first_due = ts->due;
    ts->seen = 0;
    ts->due = weft__add_sat(last_due, p);
    *ticks = n;
    return k;
}

uint64_t weft__tick_schedule_tick(weft__tick_schedule *ts, uint64_t now)
{
    if (!ts->first_tick)
        ts->first_tick = now;
    if (!ts->first_due)
        return 0; /* an arming planned before the last set: no grid point */
    uint64_t p = ts->period, i = ts->seen++;
    uint64_t due = weft__add_sat(ts->first_due, weft__mul_sat(i, p));
    /* When the arming's plan has the tick come: a tick may come well
     * after its point by plan (an arming that catches up starts late by
     * up to a period, and brings its ticks closer together). */
    uint64_t planned = weft__add_sat(
        ts->armed_at, weft__mul_sat(i + 1, weft__add_sat(ts->arming_period, ts->lag)));
    if (now >= due && now - due >= p && now >= planned && now - planned >= p) {
        /* A whole period later than planned, and as late after its
         * point: the worker was held. The tick stands for the last grid
         * point passed, and the arming's later ticks follow on from it,
         * as the next arming would have them: labelled one by one, the
         * rest of the arming (up to 64 ticks) went on naming points from
         * before the hold, and the points it skipped showed only at the
         * next arming (a review found it). */
        uint64_t skip = weft__mul_sat((now - due) / p, p);
        ts->first_due = weft__add_sat(ts->first_due, skip);
        ts->due = weft__add_sat(ts->due, skip);
        due = weft__add_sat(due, skip);
    }
    return due;
}

void weft__tick_schedule_ended(weft__tick_schedule *ts, uint64_t now)
{
    /* The lag is read from the ticks' spacing, first to last, which the
     * delay before the arming's submission does not enter. */
    bool measured = ts->armed_at && ts->ticks >= 2 && ts->first_tick && now >= ts->first_tick;
    ts->armed_at = 0;
    if (!measured)
        return;
    uint64_t per_tick = (now - ts->first_tick) / (ts->ticks - 1);
    uint64_t lag = per_tick > ts->arming_period ? per_tick - ts->arming_period : 0;
    uint64_t cap = ts->period / 4;
    lag = lag > cap ? cap : lag;
    /* The estimate is the least of the last few armings' lags, once there
     * are two: an arming slowed by a busy task (a high lag) leaves it as
     * it was, and a tick comes early only when its lag is below all of
     * them. */
    ts->lags[ts->nlags++ % WEFT_TICK_LAGS] = lag;
    if (ts->nlags < 2)
        return;
    unsigned have = ts->nlags < WEFT_TICK_LAGS ? ts->nlags : WEFT_TICK_LAGS;
    uint64_t least = ts->lags[0];
    for (unsigned i = 1; i < have; i++)
        least = ts->lags[i] < least ? ts->lags[i] : least;
    ts->lag = least;
}
