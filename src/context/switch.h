/* The raw stack switch, written in assembly per architecture.
 *
 * weft__ctx_switch saves the callee-saved registers (and the FP control
 * words) on the current stack, stores the stack pointer in *save_sp, loads
 * load_sp, restores that context's registers and returns `transfer` there.
 * A fresh context made by weft__ctx_make starts in entry(transfer) instead;
 * entry must never return.
 */
#ifndef WEFT_CONTEXT_SWITCH_H
#define WEFT_CONTEXT_SWITCH_H

void *weft__ctx_switch(void **save_sp, void *load_sp, void *transfer);
/* The same switch, ending in a plain return (see switch_x86_64.S): for
 * switches between contexts that were suspended at the same call site. */
void *weft__ctx_switch_ret(void **save_sp, void *load_sp, void *transfer);
void *weft__ctx_make(void *stack_top, void (*entry)(void *transfer));
/* Calls fn(arg) with the stack pointer set to sp (16-byte aligned, below the
 * caller's frame on the same stack); returns fn's result. */
void *weft__ctx_call(void *(*fn)(void *), void *arg, void *sp);

#endif
