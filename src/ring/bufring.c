/* Provided buffer rings and buffer leases; see weft/io.h. */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "common/fault.h"
#include "common/memcheck.h"
#include "ring/bufring.h"
#include "ring/op.h"
#include "runtime/worker.h"

/* Group ids of buffer rings: the upper half, so that the legacy
 * weft_buffers_provide groups (below) never collide with them. */
#define GID_FIRST 0x8000u
#define GID_LAST  0xffffu

static unsigned pick_gid(const weft__worker *w)
{
    for (unsigned gid = GID_FIRST; gid <= GID_LAST; gid++) {
        bool used = false;
        for (const weft_buf_ring *br = w->bufrings; br && !used; br = br->next)
            used = br->gid == gid;
        if (!used)
            return gid;
    }
    return 0;
}

static void give_to_kernel(weft_buf_ring *br, unsigned bid)
{
    io_uring_buf_ring_add(br->ring, weft__buf_start(br, bid), (unsigned)br->size,
                          (unsigned short)bid, br->mask, 0);
    io_uring_buf_ring_advance(br->ring, 1);
}

int weft_buf_ring_create(weft_buf_ring **out, unsigned nbufs, size_t size)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    weft__worker *w = weft__worker_self();
    if (!w || !w->current)
        return -EPERM;
    if (nbufs == 0 || nbufs > 32768 || (nbufs & (nbufs - 1)) || size == 0 || size > (1u << 31))
        return -EINVAL;
    if (nbufs * size / nbufs != size)
        return -EINVAL;
    unsigned gid = pick_gid(w);
    if (!gid)
        return -ENOSPC;
    weft_buf_ring *br = weft__calloc(1, sizeof *br);
    if (!br)
        return -ENOMEM;
    br->leases = weft__calloc(nbufs, sizeof *br->leases);
    br->ring_bytes = (size_t)nbufs * sizeof(struct io_uring_buf);
    br->ring = weft__fault_hit(WEFT_FAULT_MMAP) ? MAP_FAILED
                                                : mmap(NULL, br->ring_bytes, PROT_READ | PROT_WRITE,
                                                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    br->bufs = weft__malloc((size_t)nbufs * size);
    int r = -ENOMEM;
    if (!br->leases || br->ring == MAP_FAILED || !br->bufs)
        goto fail;
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)br->ring, .ring_entries = nbufs, .bgid = (uint16_t)gid};
    r = io_uring_register_buf_ring(&w->ring.uring, &reg, 0);
    if (r < 0)
        goto fail;
    br->w = w;
    br->gid = gid;
    br->nbufs = nbufs;
    br->mask = io_uring_buf_ring_mask(nbufs);
    br->size = size;
    io_uring_buf_ring_init(br->ring);
    for (unsigned bid = 0; bid < nbufs; bid++)
        io_uring_buf_ring_add(br->ring, weft__buf_start(br, bid), (unsigned)size,
                              (unsigned short)bid, br->mask, (int)bid);
    io_uring_buf_ring_advance(br->ring, (int)nbufs);
    br->next = w->bufrings;
    w->bufrings = br;
    *out = br;
    return 0;
fail:
    if (br->ring != MAP_FAILED && br->ring)
        munmap(br->ring, br->ring_bytes);
    free(br->bufs);
    free(br->leases);
    free(br);
    return r;
}

static void free_ring(weft_buf_ring *br)
{
    munmap(br->ring, br->ring_bytes);
    free(br->bufs);
    free(br->leases);
    free(br);
}

static void unregister_and_free(weft__worker *w, weft_buf_ring *br)
{
    /* A closed stream freed at teardown comes here after the ring is
     * closed; its fd number may be another ring's by then. */
    if (w->ring.uring.ring_fd >= 0)
        io_uring_unregister_buf_ring(&w->ring.uring, (int)br->gid);
    for (weft_buf_ring **p = &w->bufrings; *p; p = &(*p)->next)
        if (*p == br) {
            *p = br->next;
            break;
        }
    free_ring(br);
}

int weft_buf_ring_destroy(weft_buf_ring *br)
{
    if (!br)
        return -EINVAL;
    weft__worker *w = weft__worker_self();
    if (!w)
        return -EPERM;
    if (br->w != w)
        return -EXDEV;
    if (br->open_users || br->leased || br->doomed)
        return -EBUSY;
    if (br->users) {
        /* Only closed streams, whose kernel side is winding down, still
         * use it: it goes with the last of them. */
        br->doomed = true;
        return 0;
    }
    unregister_and_free(w, br);
    return 0;
}

void weft__buf_ring_unuse(weft_buf_ring *br)
{
    br->users--;
    if (br->doomed && br->users == 0)
        unregister_and_free(br->w, br);
}

void weft__bufrings_fini(weft__worker *w)
{
    /* The ring is going away with them: no unregister needed. */
    while (w->bufrings) {
        weft_buf_ring *br = w->bufrings;
        w->bufrings = br->next;
        free_ring(br);
    }
}

unsigned weft_buf_ring_available(const weft_buf_ring *br)
{
    return br ? br->nbufs - br->leased - br->queued : 0;
}

bool weft__buf_from_cqe(weft_buf_ring *br, int res, uint32_t cflags, weft_buf *out)
{
    if (!(cflags & IORING_CQE_F_BUFFER))
        return false;
    unsigned bid = cflags >> IORING_CQE_BUFFER_SHIFT;
    weft_task *t = weft__task_current();
    if (res <= 0 || !out || !t) {
        give_to_kernel(br, bid); /* nothing in it worth keeping */
        return false;
    }
    struct weft__lease *l = &br->leases[bid];
    l->task = t;
    l->gen = (l->gen + 1) & 0xffff;
    l->datagram_at = 0;
    br->leased++;
    t->ring_bound++;
    out->data = weft__buf_start(br, bid);
    out->len = (size_t)res;
    weft__written(out->data, out->len);
    out->ring = br;
    out->id = bid | l->gen << WEFT__BUF_GEN_SHIFT;
    return true;
}

void weft__buf_recycle(weft_buf_ring *br, uint32_t cflags)
{
    if (cflags & IORING_CQE_F_BUFFER)
        give_to_kernel(br, cflags >> IORING_CQE_BUFFER_SHIFT);
}

static void unlease(weft_buf_ring *br, unsigned bid)
{
    br->leases[bid].task->ring_bound--;
    br->leases[bid].task = NULL;
    br->leased--;
    give_to_kernel(br, bid);
}

int weft_buf_release(weft_buf *b)
{
    if (!b || !b->ring)
        return 0;
    weft_buf_ring *br = b->ring;
    /* The ring's tail, its lease table and the lessee's pin count belong
     * to br->w's thread. */
    if (br->w != weft__worker_self())
        return -EXDEV;
    b->ring = NULL;
    b->data = NULL;
    b->len = 0;
    /* A lease already returned (at its task's end, say) does nothing,
     * even if the buffer is leased again now. */
    unsigned bid = weft__buf_bid(b);
    if (bid < br->nbufs && br->leases[bid].task &&
        br->leases[bid].gen == b->id >> WEFT__BUF_GEN_SHIFT)
        unlease(br, bid);
    return 0;
}

void weft__leases_release_all(weft__worker *w, weft_task *t)
{
    for (weft_buf_ring *br = w->bufrings; br && t->ring_bound; br = br->next)
        for (unsigned bid = 0; br->leased && bid < br->nbufs; bid++)
            if (br->leases[bid].task == t)
                unlease(br, bid);
}

ssize_t weft_recv_buf(int fd, weft_buf_ring *br, weft_buf *out)
{
    if (!br || !out)
        return -EINVAL;
    out->ring = NULL;
    weft__worker *w = weft__worker_self();
    if (w && br->w != w)
        return -EXDEV;
    weft__io io;
    int err;
    struct io_uring_sqe *sqe = weft__io_begin(&io, IORING_OP_RECV, &err);
    if (!sqe)
        return err;
    io_uring_prep_recv(sqe, 0, NULL, (size_t)br->size, 0);
    weft__sqe_fd(sqe, fd);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = (uint16_t)br->gid;
    io.result_bound = true; /* the buffer it picks is one of this worker's ring */
    /* While it waits, br must not be destroyed under it: the completion's
     * buffer is leased from br when this task runs again. */
    br->users++;
    br->open_users++;
    int res = weft__io_wait(&io);
    br->open_users--;
    br->users--;
    weft__buf_from_cqe(br, res, io.cflags, out);
    return res;
}
