/* The task tree: parent links, live-children lists and the structured
 * cancellation APIs. Walks are iterative (threaded through parent and
 * sibling links) so a deep tree cannot overflow the caller's stack.
 *
 * With several workers a parent and its children may run on different
 * threads, so every read or change of the links and of live_children
 * happens under the runtime's tree lock (one spinlock: spawns and
 * completions hold it for a few stores; only a cancellation walks under
 * it). One worker takes no lock at all. A task that ends on another worker
 * than the one that spawned it is unlinked later, by that one, in a batch
 * (see is_leaf() below and docs/workers.md). */
#include <errno.h>
#include <string.h>

#include "common/spinlock.h"
#include "runtime/worker.h"
#include "task/task.h"

void weft__tree_lock(weft__runtime *rt)
{
    if (rt->threaded)
        weft__spin_lock(&rt->tree_lock);
}

void weft__tree_unlock(weft__runtime *rt)
{
    if (rt->threaded)
        weft__spin_unlock(&rt->tree_lock);
}

/* The runtime a task belongs to, from any thread: its owner's, whose tree
 * lock guards it (a task of another runtime, cancelled from here, is
 * walked under its own runtime's lock); the caller's for the root
 * pseudo-tasks, which have no owner. */
static weft__runtime *runtime_of(const weft_task *t)
{
    weft__worker *owner = weft__task_owner(t);
    if (owner)
        return owner->rt;
    return weft__worker_self()->rt;
}

void weft__tree_link(weft_task *parent, weft_task *child)
{
    child->parent = parent;
    child->prev_sibling = NULL;
    child->next_sibling = parent->first_child;
    if (parent->first_child)
        parent->first_child->prev_sibling = child;
    /* Atomic for weft__tree_may_have_children, which reads it without the lock. */
    __atomic_store_n(&parent->first_child, child, __ATOMIC_RELAXED);
    parent->live_children++;
}

void weft__tree_unlink(weft_task *child)
{
    weft_task *p = child->parent;
    if (!p)
        return;
    if (child->prev_sibling)
        child->prev_sibling->next_sibling = child->next_sibling;
    else
        __atomic_store_n(&p->first_child, child->next_sibling, __ATOMIC_RELEASE);
    if (child->next_sibling)
        child->next_sibling->prev_sibling = child->prev_sibling;
    child->parent = child->prev_sibling = child->next_sibling = NULL;
    if (--p->live_children == 0) {
        uint64_t prev = atomic_fetch_and_explicit(&p->state, ~TASK_WAIT_KIDS, memory_order_acq_rel);
        if (prev & TASK_WAIT_KIDS)
            weft__task_wake(p);
    }
}

bool weft__tree_may_have_children(const weft_task *t)
{
    return __atomic_load_n(&t->first_child, __ATOMIC_ACQUIRE) != NULL;
}

bool weft__tree_wait_kids_arm(weft__runtime *rt, weft_task *t)
{
    weft__tree_lock(rt);
    bool any = t->live_children != 0;
    if (any)
        atomic_fetch_or_explicit(&t->state, TASK_WAIT_KIDS, memory_order_acq_rel);
    weft__tree_unlock(rt);
    return any;
}

bool weft__tree_wait_kids_disarm(weft__runtime *rt, weft_task *t)
{
    weft__tree_lock(rt);
    atomic_fetch_and_explicit(&t->state, ~TASK_WAIT_KIDS, memory_order_acq_rel);
    bool any = t->live_children != 0;
    weft__tree_unlock(rt);
    return any;
}

void weft__tree_adopt_children(weft_task *t, weft_task *new_parent)
{
    while (t->first_child) {
        weft_task *c = t->first_child;
        weft__tree_unlink(c);
        weft__tree_link(new_parent, c);
    }
}

/* No child that has not ended. A task that ended on another worker than
 * the one that spawned it stays in its parent's list, complete and
 * childless, until that worker unlinks it (release_ended,
 * runtime/worker.c): this and the walks pass over it as gone
 * (weft_task_finished). */
static bool is_leaf(const weft_task *t)
{
    for (const weft_task *c = t->first_child; c; c = c->next_sibling)
        if (!weft_task_finished(c))
            return false;
    return true;
}

bool weft__tree_has_live_children(weft_task *t)
{
    if (!weft__tree_may_have_children(t))
        return false;
    weft__runtime *rt = runtime_of(t);
    weft__tree_lock(rt);
    bool live = !is_leaf(t);
    weft__tree_unlock(rt);
    return live;
}

unsigned weft__tree_live_children_locked(const weft_task *t)
{
    unsigned n = 0;
    for (const weft_task *c = t->first_child; c; c = c->next_sibling)
        n += !weft_task_finished(c);
    return n;
}

/* The first task after n's subtree, in pre-order, within top's. */
static weft_task *next_past_subtree(weft_task *n, const weft_task *top)
{
    while (n != top) {
        if (n->next_sibling)
            return n->next_sibling;
        n = n->parent;
    }
    return NULL;
}

/* Pre-order successor of n within the subtree rooted at top. */
static weft_task *next_in_subtree(weft_task *n, const weft_task *top)
{
    return n->first_child ? n->first_child : next_past_subtree(n, top);
}

/* Requests cancellation of one task; true if this call newly cancelled it.
 * `mark` is TASK_SUBTREE_CANCELLED when the caller's walk cancels the
 * task's whole subtree too, else 0. *prev gets the state before. */
static bool cancel_one_prev(weft_task *t, uint64_t mark, uint64_t *prev)
{
    *prev = 0;
    if (t->flags & (TASK_F_ROOT | TASK_F_MAINTENANCE))
        return false;
    *prev = atomic_fetch_or_explicit(&t->state, TASK_CANCELLED | mark, memory_order_acq_rel);
    if (*prev & (TASK_CANCELLED | TASK_COMPLETE))
        return false;
    weft__task_wake(t);
    return true;
}

/* A subtree already cancelled whole is passed over: each task that ends
 * cancels its children's subtrees (finish), and a chain of D tasks, each
 * joining the next, took O(D^2) to end (20,000 deep: 2.7 s), every end
 * walking what was left below it (a file tree copier's trial). */
static void cancel_subtree(weft__runtime *rt, weft_task *t, weft_cancel_stats *stats)
{
    for (weft_task *n = t; n;) {
        uint64_t prev;
        rt->tree_cancel_steps++;
        if (cancel_one_prev(n, TASK_SUBTREE_CANCELLED, &prev) && stats)
            stats->cancelled++;
        n = prev & TASK_SUBTREE_CANCELLED ? next_past_subtree(n, t) : next_in_subtree(n, t);
    }
}

void weft__tree_cancel(weft_task *t, weft_cancel_stats *stats)
{
    weft__runtime *rt = runtime_of(t);
    weft__tree_lock(rt);
    cancel_subtree(rt, t, stats);
    weft__tree_unlock(rt);
}

void weft__tree_cancel_children_locked(weft_task *t)
{
    weft__runtime *rt = runtime_of(t);
    for (weft_task *c = t->first_child; c; c = c->next_sibling)
        cancel_subtree(rt, c, NULL);
}

static bool has_tag(const weft_task *t, const char *tag)
{
    if (!t->tags)
        return false;
    for (const char *const *p = t->tags; *p; p++)
        if (*p == tag || strcmp(*p, tag) == 0)
            return true;
    return false;
}

typedef enum { SELECT_ALL, SELECT_LEAVES, SELECT_TAG_ANY, SELECT_TAG_ALL } select_mode;

static bool selected(const weft_task *t, select_mode mode, const char *const *tags)
{
    switch (mode) {
    case SELECT_ALL:
        return true;
    case SELECT_LEAVES:
        return is_leaf(t);
    case SELECT_TAG_ANY:
        for (const char *const *p = tags; *p; p++)
            if (has_tag(t, *p))
                return true;
        return false;
    case SELECT_TAG_ALL:
        for (const char *const *p = tags; *p; p++)
            if (!has_tag(t, *p))
                return false;
        return true;
    }
    return false;
}

/* Counts one task of a walk as visited and, if `cancel`, cancels it (with
 * `mark`: cancel_one_prev); false for one the walks pass over. */
static bool visit(weft_task *n, bool cancel, uint64_t mark, const weft_task *self,
                  weft_cancel_stats *s)
{
    uint64_t prev;
    if ((n->flags & TASK_F_MAINTENANCE) || weft_task_finished(n))
        return false;
    s->visited++;
    if (cancel && n != self && cancel_one_prev(n, mark, &prev))
        s->cancelled++;
    return true;
}

/* Whether t lies below top. */
static bool is_below(const weft_task *t, const weft_task *top)
{
    for (const weft_task *a = t->parent; a; a = a->parent)
        if (a == top)
            return true;
    return false;
}

/* Visits every live descendant of top; each selected one is cancelled with
 * its subtree. The caller is never cancelled.
 *
 * Each task is read once, before this walk cancels it. A task cancelled
 * here may end at once on another worker, without the tree lock: one that
 * ended away from the worker that spawned it stays linked, complete, until
 * that one unlinks it (release_ended, runtime/worker.c). A tagged task's
 * subtree is therefore counted in the pass that cancels it, and the walk
 * then goes on past it; a second pass over it could find some of it ended
 * and miss them from `visited`. */
static int cancel_where(weft_task *top, select_mode mode, const char *const *tags,
                        weft_cancel_stats *stats)
{
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    weft_cancel_stats local = {0, 0};
    weft__runtime *rt = weft__worker_self()->rt;
    bool by_tag = mode == SELECT_TAG_ANY || mode == SELECT_TAG_ALL;
    weft__tree_lock(rt);
    /* The caller is spared: where it lies in the walked tree (an orphan
     * cancelling the orphans), the tasks above it are cancelled without
     * their whole subtree, and a later walk must still go below them. */
    uint64_t mark = is_below(self, top) ? 0 : TASK_SUBTREE_CANCELLED;
    weft_task *n = top->first_child;
    while (n) {
        bool hit = n != self && selected(n, mode, tags);
        if (!visit(n, hit, mark, self, &local) || !hit || !by_tag) {
            n = next_in_subtree(n, top);
            continue;
        }
        for (weft_task *m = next_in_subtree(n, n); m; m = next_in_subtree(m, n))
            visit(m, true, mark, self, &local);
        n = next_past_subtree(n, top);
    }
    weft__tree_unlock(rt);
    if (stats)
        *stats = local;
    return 0;
}

int weft_cancel_children(weft_cancel_stats *stats)
{
    weft_task *self = weft__task_current();
    return self ? cancel_where(self, SELECT_ALL, NULL, stats) : -EPERM;
}

int weft_cancel_leaves(weft_cancel_stats *stats)
{
    weft_task *self = weft__task_current();
    return self ? cancel_where(self, SELECT_LEAVES, NULL, stats) : -EPERM;
}

int weft_cancel_tagged_any(const char *const *tags, weft_cancel_stats *stats)
{
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    if (!tags)
        return -EINVAL;
    return cancel_where(self, SELECT_TAG_ANY, tags, stats);
}

int weft_cancel_tagged_all(const char *const *tags, weft_cancel_stats *stats)
{
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    if (!tags || !*tags)
        return -EINVAL; /* "all of nothing" would select everything */
    return cancel_where(self, SELECT_TAG_ALL, tags, stats);
}

int weft_cancel_orphans(weft_cancel_stats *stats)
{
    weft__worker *w = weft__worker_self();
    if (!w || !w->current)
        return -EPERM;
    return cancel_where(&w->rt->orphans, SELECT_ALL, NULL, stats);
}
