/* x86_64 System V stack switch. See switch.h for the contract.
 *
 * Frame saved on the switched-from stack, lowest address first:
 *   [mxcsr:4 | x87 cw:2 | pad:2] r15 r14 r13 r12 rbx rbp <return address>
 * MXCSR control bits and the x87 control word are callee-saved in the ABI, so
 * a task that changes the rounding mode cannot leak it into another task. */
/* Both switches share this body: save this context, load the other.
 *
 * The CFI lets a debugger or profiler unwind from any instruction here to
 * the caller. The other context's stack holds a frame of the same layout,
 * so after the switch of %rsp the same rules find the caller of the
 * context being resumed. */
    .macro SAVE reg
    pushq   \reg
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset \reg, 0
    .endm
    .macro RESTORE reg
    popq    \reg
    .cfi_adjust_cfa_offset -8
    .cfi_restore \reg
    .endm
    .macro SWITCH_STACKS
    SAVE    %rbp
    SAVE    %rbx
    SAVE    %r12
    SAVE    %r13
    SAVE    %r14
    SAVE    %r15
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    RESTORE %r15
    RESTORE %r14
    RESTORE %r13
    RESTORE %r12
    RESTORE %rbx
    RESTORE %rbp
    movq    %rdx, %rax
    .endm

    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, @function
    .p2align 4
weft__ctx_switch:
    .cfi_startproc
    SWITCH_STACKS
    /* Not `ret`: the return-stack predictor remembers the caller on the old
     * stack and would mispredict every switch between a task and the
     * scheduler loop. An indirect jump is predicted from its own history
     * instead (half the cost measured). */
    popq    %rcx
    .cfi_adjust_cfa_offset -8
    .cfi_register rip, rcx
    jmpq    *%rcx
    .cfi_endproc
    .size   weft__ctx_switch, .-weft__ctx_switch

/* For a switch between two contexts suspended at the same call site (one
 * task yielding straight to another that yielded the same way): there the
 * return-stack predictor's entry is right, and the returns that follow stay
 * paired with their calls. The jump above would leave the predictor one
 * entry off, and every return after it mispredicted. */
    .globl  weft__ctx_switch_ret
    .hidden weft__ctx_switch_ret
    .type   weft__ctx_switch_ret, @function
    .p2align 4
weft__ctx_switch_ret:
    .cfi_startproc
    SWITCH_STACKS
    ret
    .cfi_endproc
    .size   weft__ctx_switch_ret, .-weft__ctx_switch_ret

/* First "return" into a fresh context lands here with the entry function in
 * r12 and the transfer value in rax. The stack is 16-byte aligned so the call
 * enters entry() with the alignment the ABI requires. */
    .type   weft_ctx_trampoline, @function
    .p2align 4
weft_ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %rax, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   weft_ctx_trampoline, .-weft_ctx_trampoline

/* void *weft__ctx_make(void *stack_top, void (*entry)(void *)) */
    .globl  weft__ctx_make
    .hidden weft__ctx_make
    .type   weft__ctx_make, @function
    .p2align 4
weft__ctx_make:
    .cfi_startproc
    movq    %rdi, %rax
    andq    $-16, %rax
    subq    $80, %rax              /* 8 fp + 6 regs + ret + 2 pad = 80 */
    movl    $0x1f80, (%rax)        /* default MXCSR: all exceptions masked */
    movw    $0x037f, 4(%rax)       /* default x87 control word */
    movw    $0, 6(%rax)
    movq    $0, 8(%rax)            /* r15 */
    movq    $0, 16(%rax)           /* r14 */
    movq    $0, 24(%rax)           /* r13 */
    movq    %rsi, 32(%rax)         /* r12 = entry */
    movq    $0, 40(%rax)           /* rbx */
    movq    $0, 48(%rax)           /* rbp: ends frame-pointer walks */
    leaq    weft_ctx_trampoline(%rip), %rcx
    movq    %rcx, 56(%rax)
    movq    $0, 64(%rax)
    movq    $0, 72(%rax)
    ret
    .cfi_endproc
    .size   weft__ctx_make, .-weft__ctx_make

    .section .note.GNU-stack,"",@progbits
