/* weft/common.h - conventions shared by every weft header.
 *
 * Every function that can fail returns >= 0 on success and -errno on failure
 * (liburing's convention); weft never sets errno. Codes specific to weft live
 * below -4000 and weft_strerror() knows all of them.
 */
#ifndef WEFT_COMMON_H
#define WEFT_COMMON_H

#include <errno.h> /* every call returns -errno codes */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WEFT_BUILDING)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

/* On calls whose result must be looked at: a lock or a unit that a
 * cancelled task did not get (-ECANCELED) must not be released, a
 * watermark wait may report a failure, a transfer that must be whole may
 * not have been, and a deadline push that failed pushed nothing
 * (tests/must_check checks that compilers complain). */
#if defined(__GNUC__) || defined(__clang__)
#define WEFT_MUST_CHECK __attribute__((warn_unused_result))
#else
#define WEFT_MUST_CHECK
#endif

/* A task panicked (weft_panic, WEFT_ASSERT) under WEFT_PANIC_CATCH. */
#define WEFT_EPANIC (-4001)
/* A handle was joined or detached twice (detected in debug builds). */
#define WEFT_EHANDLE (-4002)

/* Returns a static, human-readable description of a weft return code: either
 * a negated errno value or one of the WEFT_E* codes above. Never NULL. */
WEFT_API const char *weft_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
