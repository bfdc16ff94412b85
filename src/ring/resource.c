/* Which task holds which ring-bound resource, and releasing what a task
 * still holds when it ends; see resource.h. */
#include "ring/resource.h"

#include <errno.h>
#include <weft/io.h>

#include "ring/op.h"
#include "runtime/worker.h"

int weft__resource_attach(weft_task *t, weft__resource *r)
{
    weft__task_ext *ext = weft__task_ext_get(t);
    if (!ext)
        return -ENOMEM;
    r->prev = NULL;
    r->next = ext->resources;
    if (r->next)
        r->next->prev = r;
    ext->resources = r;
    t->ring_bound++;
    return 0;
}

void weft__resource_detach(weft_task *t, weft__resource *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        t->ext->resources = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
    t->ring_bound--;
}

void weft__resources_release(weft__worker *w, weft_task *t)
{
    while (t->ext && t->ext->resources)
        t->ext->resources->release(t->ext->resources); /* detaches itself */
    /* What is left are leases and direct descriptors: */
    if (t->ring_bound)
        weft__leases_release_all(w, t);
    if (t->ring_bound)
        weft__direct_release_all(w, t);
}

/* ---- direct descriptors --------------------------------------------------- */

unsigned weft__direct_tags_take(unsigned n)
{
    /* 64 bits: no wrap, which would break the cycle of 1,023. */
    static _Atomic uint64_t taken;
    return (unsigned)(atomic_fetch_add_explicit(&taken, n, memory_order_relaxed) % 1023);
}

int weft__direct_table_check(void)
{
    /* Asked before the op, not learnt from its result: an accept would
     * first take the connection off the listen queue, then drop it. */
    weft__worker *w = weft__worker_self();
    return w && !w->ring.direct_slots ? -ENXIO : 0;
}

int weft__direct_adopt(int res)
{
    if (res < 0)
        return res;
    weft__worker *w = weft__worker_self();
    if ((unsigned)res >= w->ring.direct_slots)
        return -ENXIO;
    /* The kernel gives out only empty slots: an owner still noted here
     * held what was closed under it (weft_close by another task). */
    weft__direct_forget(w, (unsigned)res);
    w->direct_owner[res] = w->current;
    w->current->ring_bound++;
    return weft__direct_encode(&w->ring, (unsigned)res);
}

void weft__direct_forget(weft__worker *w, unsigned slot)
{
    if (slot >= w->ring.direct_slots || !w->direct_owner[slot])
        return;
    w->direct_owner[slot]->ring_bound--;
    w->direct_owner[slot] = NULL;
}

void weft__direct_release_all(weft__worker *w, weft_task *t)
{
    for (unsigned s = 0; s < w->ring.direct_slots && t->ring_bound; s++)
        if (w->direct_owner[s] == t) {
            weft__direct_forget(w, s);
            weft__cleanup_close_direct(w, s);
        }
}

int weft_direct_give(int direct, weft_task *to)
{
    weft__worker *w = weft__worker_self();
    weft_task *self = w ? w->current : NULL;
    if (!self)
        return -EPERM;
    if (!weft_is_direct(direct) || !to)
        return -EBADF;
    int at = weft__direct_slot(&w->ring, direct);
    if (at < 0)
        return -EBADF; /* another ring's */
    unsigned slot = (unsigned)at;
    if (slot >= w->ring.direct_slots || w->direct_owner[slot] != self)
        return -EBADF;
    /* Once `to` holds a descriptor of this ring it must stay here. If it is
     * parked with the mark that lets a waker on another worker keep it,
     * take the mark away, in a CAS that a waker's claim cannot slip past;
     * if such a waker already claimed it, it is on its way elsewhere. */
    uint64_t s = atomic_load_explicit(&to->state, memory_order_acquire);
    for (;;) {
        if (s & TASK_COMPLETE)
            return -ESRCH;
        if (s & TASK_MOVING)
            return -EXDEV;
        if (!(s & TASK_WAKE_MOVABLE))
            break;
        if (atomic_compare_exchange_weak_explicit(&to->state, &s, s & ~TASK_WAKE_MOVABLE,
                                                  memory_order_acq_rel, memory_order_acquire))
            break;
    }
    if (__atomic_load_n(&to->owner, __ATOMIC_RELAXED) != w)
        return -EXDEV;
    weft__direct_forget(w, slot);
    w->direct_owner[slot] = to;
    to->ring_bound++;
    return 0;
}
