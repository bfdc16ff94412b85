/* AArch64 (AAPCS64) stack switch. See switch.h for the contract.
 *
 * Frame saved on the switched-from stack (176 bytes, 16-byte aligned):
 *   x19..x28, x29 (fp), x30 (lr), d8..d15, fpcr, pad
 * d8-d15 are the callee-saved halves of v8-v15; FPCR holds the rounding
 * mode, which the ABI treats as callee-saved state. */
    .text
    .globl  weft__ctx_switch
    .hidden weft__ctx_switch
    .type   weft__ctx_switch, %function
    .p2align 4
weft__ctx_switch:
    sub     sp, sp, #176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x9, sp
    str     x9, [x0]
    mov     sp, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldr     x9, [sp, #160]
    msr     fpcr, x9
    add     sp, sp, #176
    mov     x0, x2
    ret
    .size   weft__ctx_switch, .-weft__ctx_switch

/* weft__ctx_switch already ends in `ret` here: the same function. */
    .globl  weft__ctx_switch_ret
    .hidden weft__ctx_switch_ret
    .set    weft__ctx_switch_ret, weft__ctx_switch

/* A fresh context "returns" here: x19 holds entry, x0 the transfer value.
 * x29 = 0 ends frame-pointer walks; the CFI marks the return address as
 * undefined so DWARF unwinders (gdb, _Unwind_Backtrace) stop here too, as in
 * the x86_64 version. */
    .type   weft_ctx_trampoline, %function
    .p2align 4
weft_ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov     x29, #0
    blr     x19
    brk     #0
    .cfi_endproc
    .size   weft_ctx_trampoline, .-weft_ctx_trampoline

/* void *weft__ctx_make(void *stack_top, void (*entry)(void *)) */
    .globl  weft__ctx_make
    .hidden weft__ctx_make
    .type   weft__ctx_make, %function
    .p2align 4
weft__ctx_make:
    and     x0, x0, #~15
    sub     x0, x0, #176
    mov     x9, #0
    mov     x10, #0
    stp     x9, x10, [x0, #0]
    stp     x9, x10, [x0, #16]
    stp     x9, x10, [x0, #32]
    stp     x9, x10, [x0, #48]
    stp     x9, x10, [x0, #64]
    stp     x9, x10, [x0, #96]
    stp     x9, x10, [x0, #112]
    stp     x9, x10, [x0, #128]
    stp     x9, x10, [x0, #144]
    stp     x9, x10, [x0, #160]     /* fpcr 0: round to nearest, no traps */
    str     x1, [x0, #0]            /* x19 = entry */
    adr     x11, weft_ctx_trampoline
    stp     x9, x11, [x0, #80]      /* x29 = 0, x30 = trampoline */
    ret
    .size   weft__ctx_make, .-weft__ctx_make

    .section .note.GNU-stack,"",%progbits
