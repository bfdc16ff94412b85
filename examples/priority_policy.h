/* A user-defined scheduling policy: strict priority. See priority_policy.c. */
#ifndef WEFT_EXAMPLE_PRIORITY_POLICY_H
#define WEFT_EXAMPLE_PRIORITY_POLICY_H

#include <weft.h>

/* Priority p (0 = most urgent .. 63) travels in the spawn group, tagged with
 * the top bit so that it cannot be mistaken for the task id weft uses as the
 * group of an ungrouped task. Ungrouped tasks get the lowest priority.
 * Tasks of one priority run first in, first out. */
#define EXAMPLE_PRIORITY(p) ((1ull << 63) | (uint64_t)(p))
extern const weft_policy example_priority_policy;

#endif
