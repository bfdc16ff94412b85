/* weft_dump_tasks: the live task tree, one line a task, indented under its
 * parent. The tree is walked under the tree lock (task/tree.c), which keeps
 * every linked record alive and its links still; the text is built in
 * memory there and written to the caller's stream after the lock is let go,
 * so a slow stream does not hold up spawns on other workers. Only fields
 * that are fixed at spawn, atomic, or guarded by the tree lock are read:
 * the other workers keep running. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft/stats.h>

#include "common/fault.h"
#include "common/utf8.h"
#include "runtime/worker.h"

/* t's state, from s, one reading of its state word. */
static const char *state_of(const weft__worker *self, const weft_task *t, uint64_t s)
{
    if (t == self->current)
        return "running (the caller)";
    if (s & TASK_COMPLETE)
        return "complete";
    if (s & TASK_RUNNING)
        return "ready or running";
    if (s & TASK_WAIT_KIDS)
        return "waiting for its children";
    return "blocked";
}

static void put_quoted(FILE *m, const char *s)
{
    fputc('\'', m);
    weft__write_one_line(m, s, true);
    fputc('\'', m);
}

static void print_task(FILE *m, const weft__worker *self, const weft_task *t, unsigned depth)
{
    const weft__runtime *rt = self->rt;
    uint64_t s = atomic_load_explicit(&t->state, memory_order_acquire);
    fprintf(m, "%*stask %llu", (int)(2 * depth), "", (unsigned long long)t->entity.task_id);
    if (t->name) {
        fputc(' ', m);
        put_quoted(m, t->name);
    }
    /* Queue names stay unquoted, as the config spelled them, but one line
     * each too. */
    fprintf(m, ": %s, worker %u, queue ", state_of(self, t, s), weft__task_owner(t)->index);
    weft__write_one_line(m, rt->cfg.queues[t->queue].name, false);
    unsigned kids = weft__tree_live_children_locked(t);
    if (kids)
        fprintf(m, ", %u child%s", kids, kids == 1 ? "" : "ren");
    if (s & TASK_CANCELLED)
        fputs(", cancelled", m);
    if (t->flags & WEFT_TASK_STICKY)
        fputs(", sticky", m);
    if (t->flags & TASK_F_MAINTENANCE)
        fputs(", runtime", m);
    if (t->tags && t->tags[0]) { /* static strings, fixed at spawn */
        fputs(", tags", m);
        for (const char *const *tag = t->tags; *tag; tag++) {
            fputc(tag == t->tags ? ' ' : ',', m);
            put_quoted(m, *tag);
        }
    }
    fputc('\n', m);
}

/* Every task below top, depth-first, each child list newest first (the
 * order the tree keeps). Returns how many. */
static unsigned print_subtree(FILE *m, const weft__worker *self, const weft_task *top,
                              unsigned depth)
{
    unsigned n = 0;
    const weft_task *t = top->first_child;
    while (t) {
        /* Ended on another worker, not yet unlinked by the one that
         * spawned it (task/tree.c): gone, and it has no children. */
        if (!weft_task_finished(t)) {
            print_task(m, self, t, depth);
            n++;
        }
        if (t->first_child) {
            t = t->first_child;
            depth++;
            continue;
        }
        while (!t->next_sibling && t->parent != top) {
            t = t->parent;
            depth--;
        }
        t = t->next_sibling;
    }
    return n;
}

int weft_dump_tasks(FILE *f)
{
    if (!f)
        return -EINVAL;
    weft__worker *self = weft__worker_self();
    if (!self)
        return -EPERM;
    weft__runtime *rt = self->rt;
    char *text = NULL;
    size_t len = 0;
    FILE *m = weft__fault_hit(WEFT_FAULT_ALLOC) ? NULL : open_memstream(&text, &len);
    if (!m)
        return -ENOMEM;
    weft__tree_lock(rt);
    unsigned n = print_subtree(m, self, &rt->root, 0);
    if (weft__tree_live_children_locked(&rt->orphans)) {
        fputs("orphans (adopted by the runtime):\n", m);
        n += print_subtree(m, self, &rt->orphans, 1);
    }
    weft__tree_unlock(rt);
    bool failed = ferror(m) != 0;
    if (fclose(m) != 0 || failed) {
        free(text);
        return -ENOMEM;
    }
    int r = 0;
    if (fprintf(f, "weft: %u live task%s on %u worker%s\n", n, n == 1 ? "" : "s", rt->nworkers,
                rt->nworkers == 1 ? "" : "s") < 0 ||
        fwrite(text, 1, len, f) != len || fflush(f) != 0)
        r = -EIO;
    free(text);
    return r;
}
