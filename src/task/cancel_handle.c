/* Cancel handles: extra references to a task record that may cancel the
 * task but never join it (weft/task.h, docs/tasks.md).
 *
 * A weft_cancel_handle is the record itself under another type, so that
 * the compiler refuses it to weft_join. Each handle is one reference in
 * the state word: the record outlives the task until the last handle of
 * either kind is gone, and a handle can only be made by a holder of a
 * reference (a join handle, another cancel handle, or the task itself,
 * whose runtime's reference lasts while it runs). */
#include <errno.h>
#include <weft/task.h>

#include "task/task.h"

static weft_task *task_of(const weft_cancel_handle *h)
{
    return (weft_task *)h;
}

static weft_cancel_handle *take(weft_task *t)
{
    atomic_fetch_add_explicit(&t->state, TASK_REF_ONE, memory_order_relaxed);
    return (weft_cancel_handle *)t;
}

/* Debug builds catch a handle used after its drop, as long as no task has
 * taken the record since (ASan catches that too: a free record is
 * poisoned). */
static int check(const weft_cancel_handle *h)
{
    if (!h)
        return -EINVAL;
#ifndef NDEBUG
    if (task_of(h)->magic != TASK_MAGIC_LIVE)
        return WEFT_EHANDLE;
#endif
    return 0;
}

int weft_cancel_handle_of(weft_task *t, weft_cancel_handle **out)
{
    if (!t || !out)
        return -EINVAL;
#ifndef NDEBUG
    if (t->magic != TASK_MAGIC_LIVE ||
        !(atomic_load_explicit(&t->state, memory_order_relaxed) & TASK_JOIN_INTEREST))
        return WEFT_EHANDLE;
#endif
    *out = take(t);
    return 0;
}

int weft_cancel_handle_self(weft_cancel_handle **out)
{
    if (!out)
        return -EINVAL;
    weft_task *self = weft__task_current();
    if (!self)
        return -EPERM;
    *out = take(self);
    return 0;
}

int weft_cancel_handle_dup(weft_cancel_handle *h, weft_cancel_handle **out)
{
    int r = check(h);
    if (r)
        return r;
    if (!out)
        return -EINVAL;
    *out = take(task_of(h));
    return 0;
}

int weft_cancel_via(weft_cancel_handle *h)
{
    int r = check(h);
    return r ? r : weft__task_cancel(task_of(h));
}

bool weft_cancel_handle_finished(const weft_cancel_handle *h)
{
    return h && (atomic_load_explicit(&task_of(h)->state, memory_order_acquire) & TASK_COMPLETE);
}

uint64_t weft_cancel_handle_task_id(const weft_cancel_handle *h)
{
    return h ? task_of(h)->entity.task_id : 0;
}

void weft_cancel_handle_drop(weft_cancel_handle *h)
{
    if (check(h))
        return;
    weft__task_ref_drop(task_of(h));
}
