/* weft/io.h - time and io_uring operations.
 *
 * Clocks are CLOCK_MONOTONIC nanoseconds. Sleeping tasks live in a user-space
 * timer heap per worker behind one kernel timeout, so a million sleepers cost
 * one heap entry each and no kernel objects.
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <weft/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CLOCK_MONOTONIC in nanoseconds. Callable from any thread. */
WEFT_API uint64_t weft_now_ns(void);
/* Suspends the calling task for at least ns nanoseconds (0 = yield).
 * Returns 0, -ECANCELED, -ETIMEDOUT (a pushed deadline passed first), -EPERM. */
WEFT_API int weft_sleep_ns(uint64_t ns);
/* Suspends the calling task until weft_now_ns() >= abs_ns. Same returns. */
WEFT_API int weft_sleep_until(uint64_t abs_ns);

#ifdef __cplusplus
}
#endif
#endif
