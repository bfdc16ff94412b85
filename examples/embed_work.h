/* The workload both embedding examples run: tasks that sleep, yield, spawn
 * and join inside an executor driven by a foreign loop. Returns 0 when every
 * result is what it should be. */
#ifndef WEFT_EXAMPLE_EMBED_WORK_H
#define WEFT_EXAMPLE_EMBED_WORK_H

#include <weft.h>

static int embed_done, embed_failed; /* parents finished, and how many saw a bad result */

static void *embed_sleeper(void *arg)
{
    uint64_t ms = (uint64_t)(intptr_t)arg;
    uint64_t t0 = weft_now_ns();
    if (weft_sleep_ns(ms * 1000000) < 0)
        return (void *)1;
    for (int i = 0; i < 10; i++)
        weft_yield();
    return weft_now_ns() - t0 >= ms * 1000000 ? NULL : (void *)1;
}

static void *embed_parent(void *arg)
{
    weft_task *kids[8];
    int n = 0;
    intptr_t bad = 0;
    /* A spawn that fails (out of memory) counts as a bad result; the kids
     * spawned so far are still joined, and the parent still counts as
     * done, which is what the host loop waits for. */
    for (; n < 8; n++)
        if (weft_spawn(&kids[n], embed_sleeper, (void *)(intptr_t)(n * 5)) < 0) {
            bad++;
            break;
        }
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        if (weft_join(kids[i], &r) < 0)
            bad++;
        bad += (intptr_t)r;
    }
    embed_done++;
    embed_failed += bad != 0;
    return (void *)bad;
}

#endif
