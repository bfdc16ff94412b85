/* What weft_select (select.c) needs from the channel and the broadcast
 * channel (internal): each source's lock, the list a select node joins,
 * and the step that does not wait, made under that lock. */
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

#endif
