/* void *weft__ctx_call(void *(*fn)(void *), void *arg, void *sp)
 * See call_x86_64.S: calls fn(arg) on a stack pointer moved down to sp. */
    .text
    .globl  weft__ctx_call
    .hidden weft__ctx_call
    .type   weft__ctx_call, %function
    .p2align 4
weft__ctx_call:
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    mov     sp, x2
    mov     x9, x0
    mov     x0, x1
    blr     x9
    mov     sp, x29
    ldp     x29, x30, [sp], #16
    ret
    .size   weft__ctx_call, .-weft__ctx_call
    .section .note.GNU-stack,"",%progbits
