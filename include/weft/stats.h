/* weft/stats.h - runtime counters.
 *
 * Cheap counters are always on. A snapshot is a plain struct copied out of the
 * runtime; print it as a text table or as JSON.
 */
#ifndef WEFT_STATS_H
#define WEFT_STATS_H

#include <stdio.h>
#include <weft/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_stats {
    uint64_t tasks_spawned;
    uint64_t tasks_completed; /* finished normally */
    uint64_t tasks_cancelled; /* finished with -ECANCELED */
    uint64_t tasks_panicked;  /* finished with WEFT_EPANIC */
    uint64_t tasks_live;      /* spawned and not yet finished */
    uint64_t context_switches;
    uint64_t stacks_live;   /* handed to running tasks */
    uint64_t stacks_pooled; /* mapped, free, ready for reuse */
    uint64_t stack_bytes_mapped;
    uint64_t timers_armed; /* sleepers and deadlines waiting now */
    uint64_t parks;        /* times the worker slept in io_uring_enter */
} weft_stats;

/* Copies the current runtime's counters into *out. Returns 0, -EPERM outside
 * a runtime, -EINVAL for NULL. */
WEFT_API int weft_stats_snapshot(weft_stats *out);
/* Writes s as an aligned two-column text table / a single JSON object. */
WEFT_API void weft_stats_print(FILE *f, const weft_stats *s);
WEFT_API void weft_stats_print_json(FILE *f, const weft_stats *s);

#ifdef __cplusplus
}
#endif
#endif
