/* Provided buffer rings (internal side); see weft/io.h. */
#ifndef WEFT_RING_BUFRING_H
#define WEFT_RING_BUFRING_H

#include <liburing.h>
#include <stdbool.h>
#include <weft/io.h>

struct weft__worker;

/* A weft_buf's id: the buffer id (below 32768) in the low 16 bits, the
 * lease's generation (mod 65536) above them. */
#define WEFT__BUF_GEN_SHIFT 16

struct weft_buf_ring {
    struct io_uring_buf_ring *ring; /* shared with the kernel */
    size_t ring_bytes;
    char *bufs; /* nbufs * size bytes */
    size_t size;
    unsigned nbufs, mask, gid;
    struct weft__worker *w;
    /* By buffer id: the task holding it (NULL = the kernel's), and how many
     * times it was leased, so that a stale weft_buf cannot release the
     * lease of whoever holds the buffer now (WEFT__BUF_GEN_SHIFT). */
    struct weft__lease {
        struct weft_task *task;
        unsigned gen;
        /* A recvmsg stream's lease: where the payload starts in the
         * buffer, past the header, address and control room (0 for any
         * other lease), for weft_buf_datagram to check b->data against. */
        unsigned datagram_at;
    } * leases;
    unsigned leased;
    unsigned queued;     /* in streams' queues: received, not yet pulled */
    unsigned users;      /* streams reading into it, closed ones included until freed */
    unsigned open_users; /* ... not yet closed */
    bool doomed;         /* destroyed while closed streams wound down: freed with the last */
    struct weft_buf_ring *next;
};

/* The buffer id of a lease (its generation dropped). */
static inline unsigned weft__buf_bid(const weft_buf *b)
{
    return b->id & ((1u << WEFT__BUF_GEN_SHIFT) - 1);
}

/* Where buffer bid starts. */
static inline char *weft__buf_start(const weft_buf_ring *br, unsigned bid)
{
    return br->bufs + (size_t)bid * br->size;
}

/* A CQE that may carry a selected buffer: with res > 0 and out non-NULL
 * the buffer is leased to the current task and described in *out (true);
 * otherwise it goes straight back to the kernel (false). */
bool weft__buf_from_cqe(weft_buf_ring *br, int res, uint32_t cflags, weft_buf *out);
/* Gives the CQE's buffer, if it has one, back to the kernel. */
void weft__buf_recycle(weft_buf_ring *br, uint32_t cflags);
void weft__bufrings_fini(struct weft__worker *w);
/* A stream using br is gone; frees br if it was destroyed meanwhile. */
void weft__buf_ring_unuse(weft_buf_ring *br);

#endif
