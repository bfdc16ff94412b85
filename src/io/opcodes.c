/* Which weft call covers which io_uring opcode, and per-opcode counts. The
 * table is what the opcode coverage test walks: every opcode the kernel's
 * probe reports must have a row here and a test that runs it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <weft/io.h>

#include "runtime/worker.h"

typedef struct opcode_row {
    const char *name;
    const char *wrapper;
} opcode_row;

static const opcode_row rows[] = {
    [0] = {"NOP", "weft_nop"},
    [1] = {"READV", "weft_readv"},
    [2] = {"WRITEV", "weft_writev"},
    [3] = {"FSYNC", "weft_fsync"},
    [4] = {"READ_FIXED", "weft_read_fixed"},
    [5] = {"WRITE_FIXED", "weft_write_fixed"},
    [6] = {"POLL_ADD", "weft_poll"},
    [7] = {"POLL_REMOVE", "weft_stream_close"},
    [8] = {"SYNC_FILE_RANGE", "weft_sync_file_range"},
    [9] = {"SENDMSG", "weft_sendmsg"},
    [10] = {"RECVMSG", "weft_recvmsg"},
    [11] = {"TIMEOUT", "weft_ticker"},
    [12] = {"TIMEOUT_REMOVE", "weft_ticker_reset"},
    [13] = {"ACCEPT", "weft_accept"},
    [14] = {"ASYNC_CANCEL", "weft_cancel_fd"},
    [15] = {"LINK_TIMEOUT", "weft_batch"},
    [16] = {"CONNECT", "weft_connect"},
    [17] = {"FALLOCATE", "weft_fallocate"},
    [18] = {"OPENAT", "weft_openat"},
    [19] = {"CLOSE", "weft_close"},
    [20] = {"FILES_UPDATE", "weft_direct_from_fd"},
    [21] = {"STATX", "weft_statx"},
    [22] = {"READ", "weft_read"},
    [23] = {"WRITE", "weft_write"},
    [24] = {"FADVISE", "weft_fadvise"},
    [25] = {"MADVISE", "weft_madvise"},
    [26] = {"SEND", "weft_send"},
    [27] = {"RECV", "weft_recv"},
    [28] = {"OPENAT2", "weft_openat2"},
    [29] = {"EPOLL_CTL", "weft_epoll_ctl"},
    [30] = {"SPLICE", "weft_splice"},
    [31] = {"PROVIDE_BUFFERS", "weft_buffers_provide"},
    [32] = {"REMOVE_BUFFERS", "weft_buffers_remove"},
    [33] = {"TEE", "weft_tee"},
    [34] = {"SHUTDOWN", "weft_shutdown"},
    [35] = {"RENAMEAT", "weft_renameat"},
    [36] = {"UNLINKAT", "weft_unlinkat"},
    [37] = {"MKDIRAT", "weft_mkdirat"},
    [38] = {"SYMLINKAT", "weft_symlinkat"},
    [39] = {"LINKAT", "weft_linkat"},
    [40] = {"MSG_RING", "weft_msg_ring"},
    [41] = {"FSETXATTR", "weft_fsetxattr"},
    [42] = {"SETXATTR", "weft_setxattr"},
    [43] = {"FGETXATTR", "weft_fgetxattr"},
    [44] = {"GETXATTR", "weft_getxattr"},
    [45] = {"SOCKET", "weft_socket"},
    [46] = {"URING_CMD", "weft_getsockopt"},
    [47] = {"SEND_ZC", "weft_send_zc"},
    [48] = {"SENDMSG_ZC", "weft_sendmsg_zc"},
    [49] = {"READ_MULTISHOT", "weft_read_stream"},
    [50] = {"WAITID", "weft_waitid"},
    [51] = {"FUTEX_WAIT", "weft_futex_wait"},
    [52] = {"FUTEX_WAKE", "weft_futex_wake"},
    [53] = {"FUTEX_WAITV", "weft_futex_waitv"},
    [54] = {"FIXED_FD_INSTALL", "weft_direct_to_fd"},
    [55] = {"FTRUNCATE", "weft_ftruncate"},
    [56] = {"BIND", "weft_bind"},
    [57] = {"LISTEN", "weft_listen"},
    [58] = {"RECV_ZC", NULL}, /* needs a NIC queue with header split: see docs/io.md */
    [59] = {"EPOLL_WAIT", "weft_epoll_wait"},
    [60] = {"READV_FIXED", "weft_readv_fixed"},
    [61] = {"WRITEV_FIXED", "weft_writev_fixed"},
    [62] = {"PIPE", "weft_pipe"},
};

#define NROWS (sizeof rows / sizeof rows[0])

int weft_opcode_supported(unsigned opcode)
{
    weft__worker *w = weft__worker_self();
    if (w)
        return weft__ring_supports(&w->ring, opcode);
    /* Outside a runtime: ask the kernel through a throwaway ring. */
    struct io_uring_probe *p = io_uring_get_probe();
    if (!p)
        return 0;
    int ok = opcode <= p->last_op && (p->ops[opcode].flags & IO_URING_OP_SUPPORTED);
    io_uring_free_probe(p);
    return ok;
}

const char *weft_opcode_wrapper(unsigned opcode)
{
    return opcode < NROWS ? rows[opcode].wrapper : NULL;
}

const char *weft_opcode_name(unsigned opcode)
{
    return opcode < NROWS ? rows[opcode].name : NULL;
}

/* Where the workers' per-opcode counters are summed: issued counts only
 * (weft_ops_by_opcode) or whole weft_op_counts rows. */
typedef struct op_sums {
    uint64_t *issued;
    weft_op_counts *counts;
    unsigned n;
} op_sums;

/* On each worker's own thread, where its counters are plain fields; the
 * workers add into the one array at the same time. */
static int add_worker_ops(weft__worker *w, void *arg)
{
    op_sums *s = arg;
    const weft__ring *r = &w->ring;
    if (s->issued) {
        for (unsigned i = 0; i < s->n; i++)
            __atomic_fetch_add(&s->issued[i], r->ops[i], __ATOMIC_RELAXED);
        return 0;
    }
    for (unsigned i = 0; i < s->n; i++) {
        weft_op_counts *c = &s->counts[i];
        __atomic_fetch_add(&c->issued, r->ops[i], __ATOMIC_RELAXED);
        __atomic_fetch_add(&c->completed, r->ops_done[i], __ATOMIC_RELAXED);
        __atomic_fetch_add(&c->cancelled, r->ops_cancelled[i], __ATOMIC_RELAXED);
        __atomic_fetch_add(&c->failed, r->ops_failed[i], __ATOMIC_RELAXED);
    }
    return 0;
}

/* Zeroes the first n entries of s's array (n capped at the opcodes weft
 * knows) and sums every worker's counters into them. */
static int sum_ops(op_sums s, size_t entry_size)
{
    if (!s.issued && !s.counts)
        return -EINVAL;
    if (!weft__worker_self())
        return -EPERM;
    if (s.n > WEFT__MAX_OPCODES)
        s.n = WEFT__MAX_OPCODES;
    memset(s.issued ? (void *)s.issued : (void *)s.counts, 0, s.n * entry_size);
    int r = weft__on_every_worker(add_worker_ops, &s);
    return r < 0 ? r : (int)s.n;
}

int weft_op_counts_by_opcode(weft_op_counts *counts, unsigned n)
{
    return sum_ops((op_sums){.counts = counts, .n = n}, sizeof *counts);
}

/* A name for every opcode, known to weft or not. */
static const char *name_or_number(unsigned op, char *buf, size_t cap)
{
    const char *name = weft_opcode_name(op);
    if (name)
        return name;
    snprintf(buf, cap, "OP_%u", op);
    return buf;
}

void weft_op_counts_print(FILE *f, const weft_op_counts *counts, unsigned n)
{
    if (!f)
        return;
    fprintf(f, "%-18s %12s %12s %12s %12s %10s\n", "opcode", "issued", "completed", "cancelled",
            "failed", "in flight");
    for (unsigned i = 0; counts && i < n; i++) {
        const weft_op_counts *c = &counts[i];
        if (!c->issued && !c->completed)
            continue;
        char buf[16];
        fprintf(f, "%-18s %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %10" PRIu64 "\n",
                name_or_number(i, buf, sizeof buf), c->issued, c->completed, c->cancelled,
                c->failed, c->issued > c->completed ? c->issued - c->completed : 0);
    }
}

void weft_op_counts_print_json(FILE *f, const weft_op_counts *counts, unsigned n)
{
    if (!f)
        return;
    const char *sep = "";
    fputc('{', f);
    for (unsigned i = 0; counts && i < n; i++) {
        const weft_op_counts *c = &counts[i];
        if (!c->issued && !c->completed)
            continue;
        char buf[16];
        fprintf(f,
                "%s\"%s\": {\"issued\": %" PRIu64 ", \"completed\": %" PRIu64
                ", \"cancelled\": %" PRIu64 ", \"failed\": %" PRIu64 "}",
                sep, name_or_number(i, buf, sizeof buf), c->issued, c->completed, c->cancelled,
                c->failed);
        sep = ", ";
    }
    fputs("}\n", f);
}

int weft_ops_by_opcode(uint64_t *ops, unsigned n)
{
    return sum_ops((op_sums){.issued = ops, .n = n}, sizeof *ops);
}
