/* Standalone self-test of the raw stack switch (src/context/switch_*.S).
 *
 * Built without the weft library, without liburing and without sanitizers:
 * it drives weft__ctx_switch / weft__ctx_make directly on whatever
 * architecture it is compiled for (natively, or for AArch64 under
 * qemu-aarch64 via run-aarch64.sh).
 *
 *   a) ping-pong between main and a fiber, transfer values both ways
 *   b) callee-saved registers survive a switch (asm helper that loads known
 *      patterns, switches, and records what came back; the other side loads
 *      different patterns before switching), plus integer and double values
 *      kept live across switches by compiled code
 *   c) FP control state (rounding mode) is per context
 *   d) stack alignment in a fresh fiber and in nested calls, for stack tops
 *      that are not 16-byte aligned; backtrace() from a fiber terminates
 *   e) 1000 fibers on their own 64 KiB malloc'd stacks, round-robin from main,
 *      then a ring of direct fiber-to-fiber switches, made once with
 *      weft__ctx_switch and once with weft__ctx_switch_ret
 *
 * Prints "N passed, N failed" and exits 0 only when nothing failed.
 */
#include "../../src/context/switch.h"

#include <execinfo.h>
#include <fenv.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Checks                                                              */

static unsigned g_passed, g_failed;

static void check_report(int ok, const char *file, int line, const char *expr, const char *lhs_s,
                         const char *rhs_s)
{
    if (ok) {
        g_passed++;
        return;
    }
    g_failed++;
    if (g_failed <= 50)
        fprintf(stderr, "FAIL %s:%d: %s (lhs %s, rhs %s)\n", file, line, expr, lhs_s, rhs_s);
}

#define CHECK_EQ_U(a, b)                                                                           \
    do {                                                                                           \
        uint64_t ca_ = (uint64_t)(a), cb_ = (uint64_t)(b);                                         \
        char sa_[48], sb_[48];                                                                     \
        snprintf(sa_, sizeof sa_, "0x%" PRIx64 " (%" PRIu64 ")", ca_, ca_);                        \
        snprintf(sb_, sizeof sb_, "0x%" PRIx64 " (%" PRIu64 ")", cb_, cb_);                        \
        check_report(ca_ == cb_, __FILE__, __LINE__, #a " == " #b, sa_, sb_);                      \
    } while (0)

#define CHECK_EQ_P(a, b)                                                                           \
    do {                                                                                           \
        const void *pa_ = (const void *)(a), *pb_ = (const void *)(b);                             \
        char sa_[32], sb_[32];                                                                     \
        snprintf(sa_, sizeof sa_, "%p", pa_);                                                      \
        snprintf(sb_, sizeof sb_, "%p", pb_);                                                      \
        check_report(pa_ == pb_, __FILE__, __LINE__, #a " == " #b, sa_, sb_);                      \
    } while (0)

#define CHECK_EQ_D(a, b)                                                                           \
    do {                                                                                           \
        double da_ = (a), db_ = (b);                                                               \
        char sa_[40], sb_[40];                                                                     \
        snprintf(sa_, sizeof sa_, "%.17g", da_);                                                   \
        snprintf(sb_, sizeof sb_, "%.17g", db_);                                                   \
        check_report(memcmp(&da_, &db_, sizeof da_) == 0, __FILE__, __LINE__, #a " == " #b, sa_,   \
                     sb_);                                                                         \
    } while (0)

/* A relation between two unsigned values, e.g. CHECK_REL_U(x, <, y). */
#define CHECK_REL_U(a, op, b)                                                                      \
    do {                                                                                           \
        uint64_t ca_ = (uint64_t)(a), cb_ = (uint64_t)(b);                                         \
        char sa_[48], sb_[48];                                                                     \
        snprintf(sa_, sizeof sa_, "0x%" PRIx64, ca_);                                              \
        snprintf(sb_, sizeof sb_, "0x%" PRIx64, cb_);                                              \
        check_report(ca_ op cb_, __FILE__, __LINE__, #a " " #op " " #b, sa_, sb_);                 \
    } while (0)

/* Hide a value from the optimiser so alignment checks are done at run time. */
static inline uintptr_t launder(uintptr_t v)
{
    __asm__ volatile("" : "+r"(v));
    return v;
}

/* ------------------------------------------------------------------ */
/* Per-architecture pieces                                             */

/* void *ctx_test_regs_switch(void **save, void *load, void *transfer,
 *                            uint64_t *out, const uint64_t *in);
 * Saves its caller's callee-saved registers, loads every callee-saved
 * register from in[], calls weft__ctx_switch(save, load, transfer), and when
 * that returns stores the callee-saved registers into out[0..NREGS-1],
 * the stack pointer after the switch into out[NREGS] and the one before it
 * into out[NREGS + 1]; then restores the caller's registers and returns the
 * switch's result. */
void *ctx_test_regs_switch(void **save, void *load, void *transfer, uint64_t *out,
                           const uint64_t *in);

#if defined(__x86_64__)

#define ARCH_NAME "x86_64"
#define NREGS     6
static const char *const reg_names[NREGS] = {"rbx", "rbp", "r12", "r13", "r14", "r15"};

__asm__(".text\n"
        ".globl  ctx_test_regs_switch\n"
        ".hidden ctx_test_regs_switch\n"
        ".type   ctx_test_regs_switch, @function\n"
        ".p2align 4\n"
        "ctx_test_regs_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq  $24, %rsp\n" /* 6 pushes + 24: 16-aligned at the call */
        "    movq  %rcx, 0(%rsp)\n"
        "    movq  %rsp, 8(%rsp)\n"
        "    movq  0(%r8), %rbx\n"
        "    movq  8(%r8), %rbp\n"
        "    movq  16(%r8), %r12\n"
        "    movq  24(%r8), %r13\n"
        "    movq  32(%r8), %r14\n"
        "    movq  40(%r8), %r15\n"
        "    call  weft__ctx_switch\n"
        "    movq  0(%rsp), %rcx\n"
        "    movq  %rbx, 0(%rcx)\n"
        "    movq  %rbp, 8(%rcx)\n"
        "    movq  %r12, 16(%rcx)\n"
        "    movq  %r13, 24(%rcx)\n"
        "    movq  %r14, 32(%rcx)\n"
        "    movq  %r15, 40(%rcx)\n"
        "    movq  %rsp, 48(%rcx)\n"
        "    movq  8(%rsp), %rdx\n"
        "    movq  %rdx, 56(%rcx)\n"
        "    addq  $24, %rsp\n"
        "    popq  %r15\n"
        "    popq  %r14\n"
        "    popq  %r13\n"
        "    popq  %r12\n"
        "    popq  %rbx\n"
        "    popq  %rbp\n"
        "    ret\n"
        ".size   ctx_test_regs_switch, .-ctx_test_regs_switch\n");

/* MXCSR control bits (status flags masked off) and the x87 control word. */
static uint64_t fp_control(void)
{
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return ((uint64_t)cw << 32) | (mxcsr & ~UINT32_C(0x3f));
}

static int have_sp(uintptr_t *sp)
{
    (void)sp;
    return 0; /* rsp inside a C body says nothing reliable about entry */
}

#elif defined(__aarch64__)

#define ARCH_NAME "aarch64"
#define NREGS     19
static const char *const reg_names[NREGS] = {"x19", "x20", "x21", "x22", "x23", "x24", "x25",
                                             "x26", "x27", "x28", "x29", "d8",  "d9",  "d10",
                                             "d11", "d12", "d13", "d14", "d15"};

__asm__(".text\n"
        ".globl  ctx_test_regs_switch\n"
        ".hidden ctx_test_regs_switch\n"
        ".type   ctx_test_regs_switch, %function\n"
        ".p2align 4\n"
        "ctx_test_regs_switch:\n"
        "    stp   x29, x30, [sp, #-176]!\n"
        "    mov   x29, sp\n"
        "    stp   x19, x20, [sp, #16]\n"
        "    stp   x21, x22, [sp, #32]\n"
        "    stp   x23, x24, [sp, #48]\n"
        "    stp   x25, x26, [sp, #64]\n"
        "    stp   x27, x28, [sp, #80]\n"
        "    stp   d8,  d9,  [sp, #96]\n"
        "    stp   d10, d11, [sp, #112]\n"
        "    stp   d12, d13, [sp, #128]\n"
        "    stp   d14, d15, [sp, #144]\n"
        "    mov   x9, sp\n"
        "    stp   x3, x9, [sp, #160]\n" /* out, sp before the switch */
        "    ldp   x19, x20, [x4, #0]\n"
        "    ldp   x21, x22, [x4, #16]\n"
        "    ldp   x23, x24, [x4, #32]\n"
        "    ldp   x25, x26, [x4, #48]\n"
        "    ldp   x27, x28, [x4, #64]\n"
        "    ldp   d8,  d9,  [x4, #88]\n"
        "    ldp   d10, d11, [x4, #104]\n"
        "    ldp   d12, d13, [x4, #120]\n"
        "    ldp   d14, d15, [x4, #136]\n"
        "    ldr   x29, [x4, #80]\n"
        "    bl    weft__ctx_switch\n"
        "    ldr   x9, [sp, #160]\n"
        "    stp   x19, x20, [x9, #0]\n"
        "    stp   x21, x22, [x9, #16]\n"
        "    stp   x23, x24, [x9, #32]\n"
        "    stp   x25, x26, [x9, #48]\n"
        "    stp   x27, x28, [x9, #64]\n"
        "    str   x29, [x9, #80]\n"
        "    stp   d8,  d9,  [x9, #88]\n"
        "    stp   d10, d11, [x9, #104]\n"
        "    stp   d12, d13, [x9, #120]\n"
        "    stp   d14, d15, [x9, #136]\n"
        "    mov   x10, sp\n"
        "    ldr   x11, [sp, #168]\n"
        "    stp   x10, x11, [x9, #152]\n"
        "    ldp   x19, x20, [sp, #16]\n"
        "    ldp   x21, x22, [sp, #32]\n"
        "    ldp   x23, x24, [sp, #48]\n"
        "    ldp   x25, x26, [sp, #64]\n"
        "    ldp   x27, x28, [sp, #80]\n"
        "    ldp   d8,  d9,  [sp, #96]\n"
        "    ldp   d10, d11, [sp, #112]\n"
        "    ldp   d12, d13, [sp, #128]\n"
        "    ldp   d14, d15, [sp, #144]\n"
        "    ldp   x29, x30, [sp], #176\n"
        "    ret\n"
        ".size   ctx_test_regs_switch, .-ctx_test_regs_switch\n");

static uint64_t fp_control(void)
{
    uint64_t v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}

static int have_sp(uintptr_t *sp)
{
    uintptr_t v;
    __asm__ volatile("mov %0, sp" : "=r"(v));
    *sp = v;
    return 1;
}

#else
#error "ctx_selftest supports x86_64 and aarch64"
#endif

/* ------------------------------------------------------------------ */
/* Fibers                                                              */

#define STACK_SIZE (64 * 1024)

struct fiber {
    void *sp;
    unsigned char *stack;
    size_t size;
    unsigned id;
};

static void *g_main_sp;

static void fiber_alloc(struct fiber *f, unsigned id)
{
    memset(f, 0, sizeof *f);
    f->stack = malloc(STACK_SIZE);
    if (!f->stack) {
        fprintf(stderr, "out of memory for fiber stacks\n");
        exit(1);
    }
    f->size = STACK_SIZE;
    f->id = id;
}

static void fiber_start(struct fiber *f, size_t top_offset, void (*entry)(void *))
{
    f->sp = weft__ctx_make(f->stack + f->size - top_offset, entry);
}

static void fiber_free(struct fiber *f)
{
    free(f->stack);
    f->stack = NULL;
}

static uintptr_t stack_lo(const struct fiber *f)
{
    return (uintptr_t)f->stack;
}

static uintptr_t stack_hi(const struct fiber *f)
{
    return (uintptr_t)(f->stack + f->size);
}

/* Called by a fiber that is done: hand `last` to main and never come back. */
__attribute__((noreturn)) static void fiber_exit(struct fiber *f, void *last)
{
    weft__ctx_switch(&f->sp, g_main_sp, last);
    fprintf(stderr, "FATAL: finished fiber %u was resumed\n", f->id);
    abort();
}

static void *to_fiber(struct fiber *f, void *transfer)
{
    return weft__ctx_switch(&g_main_sp, f->sp, transfer);
}

static void *to_main(struct fiber *f, void *transfer)
{
    return weft__ctx_switch(&f->sp, g_main_sp, transfer);
}

#define U2P(x) ((void *)(uintptr_t)(x))
#define P2U(p) ((uintptr_t)(p))

/* ------------------------------------------------------------------ */
/* (a) ping-pong                                                       */

#define PP_ROUNDS 100000u
#define PP_FIRST  U2P(0x5eed1234u)

static struct fiber g_pp;
static unsigned g_pp_fiber_bad;
static uintptr_t g_pp_first_bad = UINTPTR_MAX;

static void pp_entry(void *transfer)
{
    struct fiber *f = &g_pp;
    CHECK_EQ_P(transfer, PP_FIRST);
    /* main sends 2k, the fiber answers 2k + 1. */
    void *r = to_main(f, U2P(1));
    for (uintptr_t k = 1; k <= PP_ROUNDS; k++) {
        if (P2U(r) != 2 * k) {
            if (g_pp_fiber_bad++ == 0)
                g_pp_first_bad = P2U(r);
        }
        r = to_main(f, U2P(2 * k + 1));
    }
    CHECK_EQ_U(P2U(r), 0xdeadu);
    fiber_exit(f, U2P(0xd0e));
}

static void test_pingpong(void)
{
    struct fiber *f = &g_pp;
    fiber_alloc(f, 0);
    fiber_start(f, 0, pp_entry);

    void *r = to_fiber(f, PP_FIRST);
    CHECK_EQ_U(P2U(r), 1u);
    unsigned bad = 0;
    uintptr_t first_bad = 0;
    for (uintptr_t k = 1; k <= PP_ROUNDS; k++) {
        r = to_fiber(f, U2P(2 * k));
        if (P2U(r) != 2 * k + 1 && bad++ == 0)
            first_bad = P2U(r);
    }
    CHECK_EQ_U(bad, 0u);
    if (bad)
        fprintf(stderr, "  main: first bad reply %#" PRIxPTR "\n", first_bad);
    CHECK_EQ_U(g_pp_fiber_bad, 0u);
    if (g_pp_fiber_bad)
        fprintf(stderr, "  fiber: first bad value %#" PRIxPTR "\n", g_pp_first_bad);
    r = to_fiber(f, U2P(0xdead));
    CHECK_EQ_U(P2U(r), 0xd0eu);
    fiber_free(f);
}

/* ------------------------------------------------------------------ */
/* (b) callee-saved registers                                          */

#define REG_ROUNDS 50

static struct fiber g_rf;

static void fill_pattern(uint64_t *in, uint64_t seed)
{
    for (int i = 0; i < NREGS; i++) {
        uint64_t v =
            seed * UINT64_C(0x9e3779b97f4a7c15) + (uint64_t)i * UINT64_C(0x0101010101010101);
        v ^= v >> 29;
        in[i] = v | 1; /* never zero, never equal between main and fiber */
    }
}

static void check_regs(const char *who, int round, const uint64_t *out, const uint64_t *in)
{
    for (int i = 0; i < NREGS; i++) {
        if (out[i] != in[i]) {
            fprintf(stderr, "  %s round %d: %s lost its value\n", who, round, reg_names[i]);
        }
        CHECK_EQ_U(out[i], in[i]);
    }
    CHECK_EQ_U(out[NREGS], out[NREGS + 1]); /* stack pointer survived */
}

static void regs_entry(void *transfer)
{
    struct fiber *f = &g_rf;
    uint64_t in[NREGS], out[NREGS + 2];
    CHECK_EQ_U(P2U(transfer), 100u);
    for (int round = 0; round < REG_ROUNDS; round++) {
        fill_pattern(in, UINT64_C(0xf1be7) + (uint64_t)round);
        void *r = ctx_test_regs_switch(&f->sp, g_main_sp, U2P(200 + round), out, in);
        CHECK_EQ_U(P2U(r), 101u + (unsigned)round);
        check_regs("fiber", round, out, in);
    }
    fiber_exit(f, U2P(0x7e9));
}

/* Lots of integer and double values that compiled code must keep live across
 * a switch; the fiber side does the same with different values. */
static uint64_t g_seed = 12345;
static volatile double g_dseed = 1.25;

static __attribute__((noinline)) void live_values_switch(struct fiber *f, int to_fib,
                                                         uint64_t *isum, double *dsum)
{
    uint64_t s = g_seed;
    double d = g_dseed;
    uint64_t a0 = s * 3, a1 = s * 5, a2 = s * 7, a3 = s * 11, a4 = s * 13;
    uint64_t a5 = s * 17, a6 = s * 19, a7 = s * 23, a8 = s * 29, a9 = s * 31;
    double d0 = d * 3, d1 = d * 5, d2 = d * 7, d3 = d * 11, d4 = d * 13;
    double d5 = d * 17, d6 = d * 19, d7 = d * 23, d8 = d * 29, d9 = d * 31;
    if (to_fib)
        to_fiber(f, U2P(1));
    else
        to_main(f, U2P(2));
    *isum = a0 + 2 * a1 + 3 * a2 + 4 * a3 + 5 * a4 + 6 * a5 + 7 * a6 + 8 * a7 + 9 * a8 + 10 * a9;
    *dsum = d0 + 2 * d1 + 3 * d2 + 4 * d3 + 5 * d4 + 6 * d5 + 7 * d6 + 8 * d7 + 9 * d8 + 10 * d9;
}

static struct fiber g_lf;

static void expected_live(uint64_t s, double d, uint64_t *isum, double *dsum)
{
    static const unsigned m[10] = {3, 5, 7, 11, 13, 17, 19, 23, 29, 31};
    uint64_t is = 0;
    double ds = 0;
    for (int i = 0; i < 10; i++)
        is += (uint64_t)(i + 1) * (s * m[i]);
    /* Same association order as live_values_switch. */
    ds = d * 3 + 2 * (d * 5) + 3 * (d * 7) + 4 * (d * 11) + 5 * (d * 13) + 6 * (d * 17) +
         7 * (d * 19) + 8 * (d * 23) + 9 * (d * 29) + 10 * (d * 31);
    *isum = is;
    *dsum = ds;
}

static void live_entry(void *transfer)
{
    struct fiber *f = &g_lf;
    (void)transfer;
    for (int round = 0; round < 20; round++) {
        g_seed = 777 + (uint64_t)round;
        g_dseed = 0.375 + round;
        uint64_t is, eis;
        double ds, eds;
        expected_live(g_seed, g_dseed, &eis, &eds);
        live_values_switch(f, 0, &is, &ds);
        CHECK_EQ_U(is, eis);
        CHECK_EQ_D(ds, eds);
    }
    fiber_exit(f, NULL);
}

static void test_callee_saved(void)
{
    struct fiber *f = &g_rf;
    uint64_t in[NREGS], out[NREGS + 2];
    fiber_alloc(f, 1);
    fiber_start(f, 0, regs_entry);

    for (int round = 0; round < REG_ROUNDS; round++) {
        fill_pattern(in, UINT64_C(0x3a17) + (uint64_t)round);
        void *r = ctx_test_regs_switch(&g_main_sp, f->sp, U2P(100 + round), out, in);
        CHECK_EQ_U(P2U(r), 200u + (unsigned)round);
        check_regs("main", round, out, in);
    }
    void *r = to_fiber(f, U2P(100 + REG_ROUNDS));
    CHECK_EQ_U(P2U(r), 0x7e9u);
    fiber_free(f);

    /* Compiled code keeping values live across switches, both directions. */
    f = &g_lf;
    fiber_alloc(f, 2);
    fiber_start(f, 0, live_entry);
    to_fiber(f, NULL); /* fiber sets up its round and switches back */
    for (int round = 0; round < 20; round++) {
        g_seed = 99991 + (uint64_t)round * 7;
        g_dseed = 2.5 + round * 0.125;
        uint64_t is, eis;
        double ds, eds;
        expected_live(g_seed, g_dseed, &eis, &eds);
        live_values_switch(f, 1, &is, &ds); /* resumes the fiber's round */
        CHECK_EQ_U(is, eis);
        CHECK_EQ_D(ds, eds);
    }
    fiber_free(f);
}

/* ------------------------------------------------------------------ */
/* (c) FP control state is per context                                 */

static volatile double g_one = 1.0, g_three = 3.0;

static __attribute__((noinline)) double third(void)
{
    volatile double r = g_one / g_three;
    return r;
}

static struct fiber g_ff;
static uint64_t g_fiber_fpctl;
static double g_fiber_third_up;

static void fp_entry(void *transfer)
{
    struct fiber *f = &g_ff;
    (void)transfer;
    /* A fresh context starts in round-to-nearest whatever main uses. */
    CHECK_EQ_U(fegetround(), FE_TONEAREST);
    CHECK_EQ_U(fesetround(FE_UPWARD), 0);
    CHECK_EQ_U(fegetround(), FE_UPWARD);
    uint64_t mine = fp_control();
    g_fiber_third_up = third();

    to_main(f, U2P(1));
    CHECK_EQ_U(fegetround(), FE_UPWARD);
    CHECK_EQ_U(fp_control(), mine);
    g_fiber_fpctl = fp_control();
    CHECK_EQ_D(third(), g_fiber_third_up); /* arithmetic really rounds up */

    CHECK_EQ_U(fesetround(FE_TOWARDZERO), 0);
    to_main(f, U2P(2));
    CHECK_EQ_U(fegetround(), FE_TOWARDZERO);
    fiber_exit(f, U2P(3));
}

static void test_fp_control(void)
{
    struct fiber *f = &g_ff;
    fiber_alloc(f, 3);
    fiber_start(f, 0, fp_entry);

    CHECK_EQ_U(fegetround(), FE_TONEAREST);
    double nearest = third();
    CHECK_EQ_U(fesetround(FE_DOWNWARD), 0);
    uint64_t mine = fp_control();
    double down = third();

    void *r = to_fiber(f, NULL);
    CHECK_EQ_U(P2U(r), 1u);
    CHECK_EQ_U(fegetround(), FE_DOWNWARD);
    CHECK_EQ_U(fp_control(), mine);
    CHECK_EQ_D(third(), down);
    /* The fiber's upward 1/3 is one ulp above main's downward one. */
    CHECK_EQ_D(nextafter(down, 1.0), g_fiber_third_up);

    r = to_fiber(f, NULL);
    CHECK_EQ_U(P2U(r), 2u);
    CHECK_EQ_U(fegetround(), FE_DOWNWARD);
    CHECK_EQ_U(fp_control(), mine);
    CHECK_REL_U(g_fiber_fpctl, !=, mine);

    r = to_fiber(f, NULL);
    CHECK_EQ_U(P2U(r), 3u);
    CHECK_EQ_U(fegetround(), FE_DOWNWARD);

    CHECK_EQ_U(fesetround(FE_TONEAREST), 0);
    CHECK_EQ_D(third(), nearest);
    fiber_free(f);
}

/* ------------------------------------------------------------------ */
/* (d) stack alignment                                                 */

static struct fiber g_af;

static void check_frame_here(const char *where, int depth, uintptr_t parent_frame,
                             uintptr_t *frame_out)
{
    const struct fiber *f = &g_af;
    _Alignas(16) unsigned char obj[16];
    memset(obj, depth, sizeof obj);
    uintptr_t a = launder((uintptr_t)obj);
    uintptr_t fa = launder((uintptr_t)__builtin_frame_address(0));
    uintptr_t sp;

    if (a % 16 != 0)
        fprintf(stderr, "  %s depth %d: local at %#" PRIxPTR "\n", where, depth, a);
    CHECK_EQ_U(a % 16, 0u);
    CHECK_REL_U(a, >=, stack_lo(f));
    CHECK_REL_U(a, <, stack_hi(f));
    CHECK_EQ_U(fa % 16, 0u);
    CHECK_REL_U(fa, >, stack_lo(f));
    CHECK_REL_U(fa, <, stack_hi(f));
    if (parent_frame)
        CHECK_REL_U(fa, <, parent_frame);
    if (have_sp(&sp)) {
        CHECK_EQ_U(sp % 16, 0u);
        CHECK_REL_U(sp, >, stack_lo(f));
        CHECK_REL_U(sp, <, stack_hi(f));
    }
    __asm__ volatile("" : : "r"(obj) : "memory");
    *frame_out = fa;
}

static __attribute__((noinline)) void nested(int depth, uintptr_t parent_frame)
{
    uintptr_t me;
    check_frame_here("nested", depth, parent_frame, &me);
    if (depth < 4) {
        /* A variable-length array moves the stack pointer by an odd amount. */
        volatile unsigned char vla[(unsigned)depth * 7 + 5];
        vla[0] = (unsigned char)depth;
        nested(depth + 1, me);
        CHECK_EQ_U(vla[0], (unsigned)depth);
    }
}

/* An unwinder walking out of a fiber must stop at the trampoline (CFI marks
 * the return address undefined there) rather than run off the stack. */
static __attribute__((noinline)) int unwind_depth(void)
{
    void *frames[64];
    return backtrace(frames, 64);
}

static void align_entry(void *transfer)
{
    struct fiber *f = &g_af;
    uintptr_t me;
    CHECK_EQ_U(P2U(transfer), 0xa11u);
    check_frame_here("entry", 0, 0, &me);
    nested(1, me);
    int depth = unwind_depth();
    CHECK_REL_U(depth, >=, 2);
    CHECK_REL_U(depth, <, 16);
    fiber_exit(f, U2P(0xa12));
}

static void test_alignment(void)
{
    static const size_t offsets[] = {0, 1, 7, 8, 9, 15, 16, 24, 4096 + 3};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        struct fiber *f = &g_af;
        fiber_alloc(f, 4);
        fiber_start(f, offsets[i], align_entry);
        CHECK_EQ_U(P2U(f->sp) % 16, 0u);
        CHECK_REL_U(P2U(f->sp), <, stack_hi(f) - offsets[i]);
        CHECK_REL_U(P2U(f->sp), >, stack_hi(f) - offsets[i] - 512);
        void *r = to_fiber(f, U2P(0xa11));
        CHECK_EQ_U(P2U(r), 0xa12u);
        fiber_free(f);
    }
}

/* ------------------------------------------------------------------ */
/* (e) many fibers                                                     */

#define NFIBERS     1000u
#define MANY_ROUNDS 20u
#define RING_LAPS   5u
#define FINISHED    0xf1000000u

static struct fiber *g_many;
static unsigned g_many_bad;

static uintptr_t many_encode(unsigned id, unsigned round)
{
    return ((uintptr_t)id << 16) | round;
}

static void many_entry(void *transfer)
{
    struct fiber *f = transfer;
    /* Something on this fiber's own stack that must survive. */
    volatile uint64_t canary[4];
    for (int i = 0; i < 4; i++)
        canary[i] = ((uint64_t)f->id << 32) ^ (uint64_t)i ^ UINT64_C(0xa5a5a5a5);

    for (unsigned round = 0; round < MANY_ROUNDS; round++) {
        void *r = to_main(f, U2P(many_encode(f->id, round)));
        if (P2U(r) != round + 1u)
            g_many_bad++;
    }
    for (int i = 0; i < 4; i++) {
        if (canary[i] != (((uint64_t)f->id << 32) ^ (uint64_t)i ^ UINT64_C(0xa5a5a5a5)))
            g_many_bad++;
    }
    fiber_exit(f, U2P(FINISHED | f->id));
}

/* Ring: each fiber passes the token straight to the next fiber. */
struct token {
    unsigned hops;
    unsigned bad;
};

static unsigned g_ring_next; /* id of the fiber being switched to */
/* The switch the ring's fiber-to-fiber hops use. */
static void *(*g_ring_switch)(void **, void *, void *) = weft__ctx_switch;

static void ring_entry(void *transfer)
{
    struct fiber *f = &g_many[g_ring_next];
    struct token *t = transfer;
    unsigned lap = 0;
    for (;;) {
        if (t->hops != lap * NFIBERS + f->id)
            t->bad++;
        t->hops++;
        if (t->hops == RING_LAPS * NFIBERS) {
            t = weft__ctx_switch(&f->sp, g_main_sp, t);
        } else {
            unsigned next = (f->id + 1) % NFIBERS;
            g_ring_next = next;
            t = g_ring_switch(&f->sp, g_many[next].sp, t);
        }
        lap++;
    }
}

static void test_many(void)
{
    g_many = calloc(NFIBERS, sizeof *g_many);
    if (!g_many) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (unsigned i = 0; i < NFIBERS; i++) {
        fiber_alloc(&g_many[i], i);
        fiber_start(&g_many[i], 0, many_entry);
    }

    unsigned bad = 0;
    for (unsigned round = 0; round < MANY_ROUNDS; round++) {
        for (unsigned i = 0; i < NFIBERS; i++) {
            void *msg = round == 0 ? (void *)&g_many[i] : U2P(round);
            void *r = to_fiber(&g_many[i], msg);
            if (P2U(r) != many_encode(i, round)) {
                if (bad++ == 0)
                    fprintf(stderr, "  fiber %u round %u answered %#" PRIxPTR "\n", i, round,
                            P2U(r));
            }
        }
    }
    CHECK_EQ_U(bad, 0u);
    bad = 0;
    for (unsigned i = 0; i < NFIBERS; i++) {
        void *r = to_fiber(&g_many[i], U2P(MANY_ROUNDS));
        if (P2U(r) != (FINISHED | i))
            bad++;
    }
    CHECK_EQ_U(bad, 0u);
    CHECK_EQ_U(g_many_bad, 0u);

    /* Reuse the stacks for the ring of direct switches, with each switch. */
    void *(*const ring_switches[])(void **, void *, void *) = {weft__ctx_switch,
                                                               weft__ctx_switch_ret};
    for (unsigned k = 0; k < 2; k++) {
        g_ring_switch = ring_switches[k];
        for (unsigned i = 0; i < NFIBERS; i++)
            fiber_start(&g_many[i], 0, ring_entry);
        struct token tok = {0, 0};
        g_ring_next = 0;
        void *r = to_fiber(&g_many[0], &tok);
        CHECK_EQ_P(r, &tok);
        CHECK_EQ_U(tok.hops, RING_LAPS * NFIBERS);
        CHECK_EQ_U(tok.bad, 0u);
    }

    for (unsigned i = 0; i < NFIBERS; i++)
        fiber_free(&g_many[i]);
    free(g_many);
    g_many = NULL;
}

/* ------------------------------------------------------------------ */

static void run(const char *name, void (*fn)(void))
{
    unsigned failed_before = g_failed, passed_before = g_passed;
    fn();
    printf("%-4s %-18s (%u checks)\n", g_failed == failed_before ? "ok" : "FAIL", name,
           (g_passed - passed_before) + (g_failed - failed_before));
    fflush(stdout);
}

int main(void)
{
    printf("ctx_selftest on %s\n", ARCH_NAME);
    run("pingpong", test_pingpong);
    run("callee_saved", test_callee_saved);
    run("fp_control", test_fp_control);
    run("alignment", test_alignment);
    run("many_fibers", test_many);
    printf("%u passed, %u failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
