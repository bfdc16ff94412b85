/* Counter snapshots and their text and JSON forms. */
#include <errno.h>
#include <inttypes.h>
#include <weft/stats.h>

#include "runtime/worker.h"

int weft_stats_snapshot(weft_stats *out)
{
    if (!out)
        return -EINVAL;
    weft__worker *self = weft__worker_self();
    if (!self)
        return -EPERM;
    weft__runtime *rt = self->rt;
    *out = (weft_stats){0};
    for (unsigned i = 0; i < rt->nworkers; i++) {
        const weft__worker *w = &rt->workers[i];
        out->tasks_spawned += w->count.spawned;
        out->tasks_completed += w->count.completed;
        out->tasks_cancelled += w->count.cancelled;
        out->tasks_panicked += w->count.panicked;
        out->context_switches += w->count.switches;
        out->parks += w->count.parks;
        out->stacks_live += w->stacks.live;
        out->stacks_pooled += w->stacks.pooled;
        out->stack_bytes_mapped += w->stacks.bytes_mapped;
        out->timers_armed += w->timers.len;
    }
    out->tasks_live =
        out->tasks_spawned - out->tasks_completed - out->tasks_cancelled - out->tasks_panicked;
    return 0;
}

#define STATS_FIELDS(X)                                                                            \
    X(tasks_spawned)                                                                               \
    X(tasks_completed)                                                                             \
    X(tasks_cancelled)                                                                             \
    X(tasks_panicked)                                                                              \
    X(tasks_live)                                                                                  \
    X(context_switches)                                                                            \
    X(stacks_live)                                                                                 \
    X(stacks_pooled)                                                                               \
    X(stack_bytes_mapped)                                                                          \
    X(timers_armed)                                                                                \
    X(parks)

void weft_stats_print(FILE *f, const weft_stats *s)
{
#define ROW(name) fprintf(f, "%-20s %20" PRIu64 "\n", #name, s->name);
    STATS_FIELDS(ROW)
#undef ROW
}

void weft_stats_print_json(FILE *f, const weft_stats *s)
{
    const char *sep = "{";
#define FIELD(name)                                                                                \
    fprintf(f, "%s\"%s\": %" PRIu64, sep, #name, s->name);                                         \
    sep = ", ";
    STATS_FIELDS(FIELD)
#undef FIELD
    fprintf(f, "}\n");
}
