/* A ticker's schedule: keeps its ticks on the grid start + k * period
 * although the kernel starts each tick's period late (see tick_schedule.c). */
#ifndef WEFT_RING_TICK_SCHEDULE_H
#define WEFT_RING_TICK_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

/* The lag estimate is the least of this many armings' lags. */
#define WEFT_TICK_LAGS 4

typedef struct weft__tick_schedule {
    uint64_t period;               /* asked for */
    bool new_grid;                 /* lay the grid anew at the next arming */
    uint64_t due;                  /* grid time of the next arming's first tick */
    uint64_t armed_at;             /* when the current arming was planned */
    uint64_t arming_period;        /* the current arming's kernel period */
    unsigned ticks;                /* the current arming's tick count */
    uint64_t first_due;            /* the grid point of its first tick */
    unsigned seen;                 /* its ticks that came so far */
    uint64_t first_tick;           /* when its first tick came; 0: none yet */
    uint64_t lag;                  /* how late a tick comes after its kernel period */
    uint64_t lags[WEFT_TICK_LAGS]; /* the last armings' */
    unsigned nlags;                /* armings seen (wraps harmlessly) */
} weft__tick_schedule;

/* At most this many ticks, and about this much time, per arming. */
#define WEFT_TICK_ARMING    64u
#define WEFT_TICK_ARMING_NS 100000000ull
/* The ticks of each of the first two armings, which learn the lag. */
#define WEFT_TICK_LEARNING 4u

/* A ticker's schedule, for tests: NULL for a stream that is no ticker
 * (stream.c). */
struct weft_stream;
const weft__tick_schedule *weft__ticker_schedule(const struct weft_stream *s);

/* A new period (> 0), or the same one after an arming was removed: the
 * grid starts afresh at the next arming. A different period forgets the
 * lags measured with the old one. */
void weft__tick_schedule_set(weft__tick_schedule *ts, uint64_t period);
/* Plans the arming made at now: returns its kernel period (>= 1 ns) and
 * sets *ticks to its tick count. Grid points already past are skipped. */
uint64_t weft__tick_schedule_arm(weft__tick_schedule *ts, uint64_t now, unsigned *ticks);
/* A tick of the planned arming came at now: returns its grid point, which
 * now may be short of (the arming's period has the lag estimate taken off:
 * weft_stream_next holds such a tick back until its point), the last
 * point passed for a tick a whole period late (the arming's later ticks
 * follow on from it), or 0 for a
 * tick of an arming planned before the last weft__tick_schedule_set (a
 * reset's old arming: its grid is gone, and the tick is not held). */
uint64_t weft__tick_schedule_tick(weft__tick_schedule *ts, uint64_t now);
/* The planned arming ran all its ticks; the last one came at now. */
void weft__tick_schedule_ended(weft__tick_schedule *ts, uint64_t now);

#endif
