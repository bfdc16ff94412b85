/* void *weft__ctx_call(void *(*fn)(void *), void *arg, void *sp)
 * Calls fn(arg) with the stack pointer moved down to sp (16-byte aligned,
 * below the caller's frame) and returns its result with the caller's stack
 * pointer restored. The task entry uses it to leave a zone between its own
 * frame and the task function's frames, so the end-of-task protocol runs
 * without overwriting frames that children may still borrow. */
    .text
    .globl  weft__ctx_call
    .hidden weft__ctx_call
    .type   weft__ctx_call, @function
    .p2align 4
weft__ctx_call:
    .cfi_startproc
    pushq   %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset rbp, -16
    movq    %rsp, %rbp
    .cfi_def_cfa_register rbp
    movq    %rdx, %rsp
    movq    %rdi, %rax
    movq    %rsi, %rdi
    callq   *%rax
    movq    %rbp, %rsp
    popq    %rbp
    .cfi_def_cfa rsp, 8
    ret
    .cfi_endproc
    .size   weft__ctx_call, .-weft__ctx_call
    .section .note.GNU-stack,"",@progbits
