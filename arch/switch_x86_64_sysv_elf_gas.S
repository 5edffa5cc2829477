/* Context switch for x86_64, System V ABI, ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in fiber/src/frame/x86_64_sysv_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg, limit) -> sp   build a fresh context
 *   fiber_switch_context(to, data)                      -> from switch, passing data
 *
 * What a callee must preserve, per the System V AMD64 psABI (v1.0, section 3.2.1,
 * "Registers", and Figure 3.4 "Register Usage"):
 *   - rbx, rbp, r12-r15 and rsp ("belong to the calling function");
 *   - the control bits of MXCSR ("callee-saved, while the status bits are
 *     caller-saved");
 *   - the x87 control word ("callee-saved"; the status word is caller-saved).
 * No xmm register is callee-saved on System V.
 *
 * The lean convention. A switch is a call that returns somewhere else, so the code
 * around it has to treat every register the switch does not restore as clobbered.
 * Here that is put to use: fiber_switch_context saves and restores only rbp, rsp,
 * the return address and the FP control state, and its only caller,
 * fiber::detail::switch_context() (switch.h), is an asm statement that declares
 * rbx, r12-r15 and every caller-saved register clobbered. The compiler then saves
 * around the switch only the registers that hold live values there (in a tight
 * generator loop, often none) instead of the switch saving all six every time.
 * The ABI still holds at every ordinary function boundary: the function containing
 * the asm statement preserves its callee-saved registers for its own caller, which
 * is what tests/registers_test.cpp checks. The asm statement steps over the
 * 128-byte red zone before its call (the compiler may keep data there, believing
 * the statement calls nothing); the CFI below accounts for that 128 so unwinders
 * and debuggers find the caller's frame.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in fiber/src/frame/x86_64_sysv_elf_gas.h and checked from C++):
 *
 *          +------------------------+
 *          | 128-byte red zone      |  stepped over by the caller
 *          +------------------------+  <- sp + 32
 *     +24  | return address (pc)    |  where fiber_switch_context returns
 *     +16  | rbp                    |
 *     +12  | x87 cw (2) | pad (2)   |
 *      +8  | mxcsr (4)              |
 *      +0  | data                   |  the value passed by the suspending side
 *          +------------------------+  <- saved sp
 *
 * A fresh context from fiber_prepare_context is the same frame with pc pointing into
 * fiber_trampoline, rbp = 0 and the FP control state of the thread that prepared
 * it; above it lie the entry function's argument and address, then a zero word
 * that ends frame-pointer walks:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *     +56  | 0 (padding)            |
 *     +48  | 0 (null return addr)   |
 *     +40  | entry                  |
 *     +32  | arg                    |  <- sp seen by fiber_trampoline (16-aligned)
 *     +24  | fiber_trampoline       |  pc
 *     +16  | 0                      |  rbp: ends the frame-pointer chain
 *      +8  | x87 cw, mxcsr          |
 *      +0  | 0                      |  data
 *          +------------------------+  <- returned sp (16-aligned)
 *
 * FIBER_SHARED_FP_ENV=1 leaves MXCSR and the x87 control word alone: faster, but
 * a rounding-mode or flush-to-zero change made in one fiber is then seen by every
 * fiber on the thread. FIBER_SWITCH_WITH_RET=1 returns with `ret` instead of an
 * indirect `jmp`; it exists only so bench/ can measure the difference (the `ret`
 * pops a return-stack-buffer entry pushed by a different call, so it mispredicts).
 */
#include "frame/x86_64_sysv_elf_gas.h"

#ifndef FIBER_SHARED_FP_ENV
#  define FIBER_SHARED_FP_ENV 0
#endif
#ifndef FIBER_SWITCH_WITH_RET
#  define FIBER_SWITCH_WITH_RET 0
#endif
/* bench/ assembles this file again with a suffix to link several variants at once. */
#ifndef FIBER_ASM_SUFFIX
#  define FIBER_ASM_SUFFIX
#endif
#define FIBER_CAT2(a, b) a##b
#define FIBER_CAT(a, b) FIBER_CAT2(a, b)
#define SYM(name) FIBER_CAT(name, FIBER_ASM_SUFFIX)

/* The caller's CFA is 128 (red zone) + 8 (return address) above rsp at entry. */
#define CALLER_CFA (FIBER_RED_ZONE + 8)

    .text

/* void* fiber_switch_context(void* to [rdi], void* data [rsi]) -> from [rax]
 * Lean convention: preserves rbp, rsp and the FP control state only. */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 4
SYM(fiber_switch_context):
    .cfi_startproc
    .cfi_def_cfa_offset CALLER_CFA
    .cfi_offset %rip, -CALLER_CFA
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    subq    $FIBER_FRAME_RBP, %rsp
    .cfi_adjust_cfa_offset FIBER_FRAME_RBP
#if !FIBER_SHARED_FP_ENV
    stmxcsr FIBER_FRAME_MXCSR(%rsp)
    fnstcw  FIBER_FRAME_X87CW(%rsp)
#endif
    movq    %rsi, FIBER_FRAME_DATA(%rsp)

    /* The switch itself. From here on the frame being read is the target's; it has
     * the same layout, so the CFI above stays true. */
    movq    %rsp, %rax
    movq    %rdi, %rsp

#if !FIBER_SHARED_FP_ENV
    /* MXCSR is loaded unconditionally: reading back the value stmxcsr just stored,
     * to skip an unchanged load, measured slower (bench/). fldcw is the expensive
     * one of the x87 pair, and the control word rarely differs: load it only when
     * it does. */
    ldmxcsr FIBER_FRAME_MXCSR(%rsp)
    movw    FIBER_FRAME_X87CW(%rsp), %cx
    cmpw    FIBER_FRAME_X87CW(%rax), %cx
    je      1f
    fldcw   FIBER_FRAME_X87CW(%rsp)
1:
#endif
    addq    $FIBER_FRAME_RBP, %rsp
    .cfi_adjust_cfa_offset -FIBER_FRAME_RBP
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
#if FIBER_SWITCH_WITH_RET
    ret
#else
    /* The return address belongs to a different call than the one that brought us
     * here; an indirect jump leaves the return-stack predictor out of it. */
    popq    %rcx
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rcx
    jmpq    *%rcx
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the jump at the end of
 * fiber_switch_context: rax = from, rsp 16-byte aligned and pointing at arg, entry. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), @function
    .p2align 4
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined %rip
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in the function before it. */
    nop
.Lfiber_trampoline_start:
    movq    %rax, %rdi
    movq    0(%rsp), %rsi
    callq   *8(%rsp)
    ud2                     /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [rdi], entry [rsi], void* arg [rdx],
 *                             void* stack_limit [rcx], unused here) */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), @function
    .p2align 4
SYM(fiber_prepare_context):
    .cfi_startproc
    movq    %rdi, %rax
    andq    $-16, %rax
    subq    $FIBER_FRESH_SIZE, %rax /* the saved sp of the fresh context, 16-aligned */
    movq    $0, FIBER_FRAME_DATA(%rax)
    stmxcsr FIBER_FRAME_MXCSR(%rax)
    fnstcw  FIBER_FRAME_X87CW(%rax)
    movw    $0, FIBER_FRAME_X87CW+2(%rax)
    movq    $0, FIBER_FRAME_RBP(%rax)
    leaq    .Lfiber_trampoline_start(%rip), %rcx
    movq    %rcx, FIBER_FRAME_PC(%rax)
    movq    %rdx, FIBER_FRESH_ARG(%rax)
    movq    %rsi, FIBER_FRESH_ENTRY(%rax)
    movq    $0, FIBER_FRESH_ENTRY+8(%rax)
    movq    $0, FIBER_FRESH_ENTRY+16(%rax)
    ret
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
