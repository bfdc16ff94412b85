/* What weft_select (select.c) needs from its sources (internal): each
 * source's lock, the list a select node joins, and the step that does not
 * wait, made under that lock. */
#ifndef WEFT_SYNC_SELECT_H
#define WEFT_SYNC_SELECT_H

#include <stdbool.h>
#include <stdint.h>
#include <weft/sync.h>

#include "sync/waitlist.h"

unsigned *weft__chan_lock(weft_chan *c);
/* The senders' list (senders true) or the receivers'. */
weft__waitlist *weft__chan_waiters(weft_chan *c, bool senders);
/* weft_chan_try_send's and weft_chan_try_recv's steps: 0, -EPIPE or
 * -EAGAIN; *wake gets a claimed waiter to wake after the unlock, or NULL. */
int weft__chan_send_locked(weft_chan *c, const void *elem, weft__waiter **wake);
int weft__chan_recv_locked(weft_chan *c, void *elem, weft__waiter **wake);

unsigned *weft__broadcast_lock(weft_broadcast_sub *s);
weft__waitlist *weft__broadcast_waiters(weft_broadcast_sub *s);
/* weft_broadcast_try_recv's step: 0, -EPIPE or -EAGAIN. */
int weft__broadcast_read_locked(weft_broadcast_sub *s, void *elem, uint64_t *missed);

/* Events, semaphores and wait groups (event.c, mutex.c): the steps of
 * weft_event_wait, weft_sem_acquire and weft_waitgroup_wait that do not
 * wait, made under the primitive's lock: 0 (the notification or the unit
 * taken; the count at zero) or -EAGAIN. Their notify_*, release and add
 * claim waiters with waitlist_claim_first_live / _all_live, passing a
 * select's stale nodes by. */
int weft__event_take_locked(weft_event *e);
int weft__sem_take_locked(weft_sem *s);
int weft__waitgroup_zero_locked(const weft_waitgroup *w);

/* Task sets (task/taskset.c). */
unsigned *weft__taskset_lock(weft_taskset *s);
weft__waitlist *weft__taskset_waiters(weft_taskset *s);
/* join_next's step that does not wait: 0 with *t, a finished member taken
 * out of the set (join it with weft_join after the unlock), -ECHILD,
 * -EXDEV, -EDEADLK (the calling task is the only member left) or -EAGAIN. *wake gets a chain of
 * joiners to wake after the unlock (the set emptied), or NULL. */
int weft__taskset_take_locked(weft_taskset *s, weft_task **t, weft__waiter **wake);
/* A select's node joins or leaves the set's waiters: it counts as a task
 * in join_next, which a destroy waits for. The leave returns a chain to
 * wake after the unlock (a destroy waiting for the last joiner), or NULL. */
void weft__taskset_joiner_in(weft_taskset *s);
weft__waiter *weft__taskset_joiner_out(weft_taskset *s);

#endif
