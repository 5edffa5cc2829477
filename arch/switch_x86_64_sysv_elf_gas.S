/* Context switch for x86_64, System V ABI, ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in fiber/src/frame/x86_64_sysv_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg) -> sp   build a fresh context
 *   fiber_switch_context(to, data)               -> from switch, passing data
 *
 * What a callee must preserve, per the System V AMD64 psABI (v1.0, section 3.2.1,
 * "Registers", and Figure 3.4 "Register Usage"):
 *   - rbx, rbp, r12-r15 and rsp ("belong to the calling function");
 *   - the control bits of MXCSR ("callee-saved, while the status bits are
 *     caller-saved");
 *   - the x87 control word ("callee-saved"; the status word is caller-saved).
 * No xmm register is callee-saved on System V, so none is saved here.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in fiber/src/frame/x86_64_sysv_elf_gas.h and checked from C++):
 *
 *          +------------------------+  <- sp + 72 (16-byte aligned)
 *     +64  | return address (pc)    |  where fiber_switch_context returns
 *     +56  | rbp                    |
 *     +48  | rbx                    |
 *     +40  | r12                    |
 *     +32  | r13                    |
 *     +24  | r14                    |
 *     +16  | r15                    |
 *     +12  | x87 cw (2) | pad (2)   |
 *      +8  | mxcsr (4)              |
 *      +0  | data                   |  the value passed by the suspending side
 *          +------------------------+  <- saved sp (8 mod 16)
 *
 * A fresh context from fiber_prepare_context is the same frame with pc pointing at
 * fiber_trampoline, rbx = arg, r12 = entry, rbp = 0 and the FP control state of the
 * thread that prepared it; above it sits one zero word, a null return address
 * that ends frame-pointer walks:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *          | 0 (padding)            |
 *          | 0 (null return addr)   |  <- sp seen by fiber_trampoline (16-aligned)
 *          | fiber_trampoline       |  pc
 *          | 0                      |  rbp: ends the frame-pointer chain
 *          | arg                    |  rbx
 *          | entry                  |  r12
 *          | 0, 0, 0                |  r13, r14, r15
 *          | x87 cw, mxcsr          |
 *          | 0                      |  data
 *          +------------------------+  <- returned sp
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

    .text

/* void* fiber_switch_context(void* to [rdi], void* data [rsi]) -> from [rax] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 4
SYM(fiber_switch_context):
    .cfi_startproc
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r12, 0
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r13, 0
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r14, 0
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r15, 0
    subq    $FIBER_FRAME_R15, %rsp
    .cfi_adjust_cfa_offset FIBER_FRAME_R15
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
    /* Loading MXCSR or the x87 control word stalls the pipeline on many cores, and
     * the value rarely differs between fibers: load only what changed. */
    movl    FIBER_FRAME_MXCSR(%rsp), %ecx
    cmpl    FIBER_FRAME_MXCSR(%rax), %ecx
    je      1f
    ldmxcsr FIBER_FRAME_MXCSR(%rsp)
1:
    movw    FIBER_FRAME_X87CW(%rsp), %cx
    cmpw    FIBER_FRAME_X87CW(%rax), %cx
    je      2f
    fldcw   FIBER_FRAME_X87CW(%rsp)
2:
#endif
    addq    $FIBER_FRAME_R15, %rsp
    .cfi_adjust_cfa_offset -FIBER_FRAME_R15
    popq    %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r15
    popq    %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r14
    popq    %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r13
    popq    %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
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
 * fiber_switch_context: rax = from, rbx = arg, r12 = entry, rsp 16-byte aligned. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), @function
    .p2align 4
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined %rip
    movq    %rax, %rdi
    movq    %rbx, %rsi
    callq   *%r12
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
    subq    $16, %rax               /* trampoline's rsp: 16-aligned, null word above */
    movq    $0, (%rax)
    movq    $0, 8(%rax)
    subq    $FIBER_FRAME_SIZE, %rax /* the saved sp of the fresh context */
    movq    $0, FIBER_FRAME_DATA(%rax)
    stmxcsr FIBER_FRAME_MXCSR(%rax)
    fnstcw  FIBER_FRAME_X87CW(%rax)
    movw    $0, FIBER_FRAME_X87CW+2(%rax)
    movq    $0, FIBER_FRAME_R15(%rax)
    movq    $0, FIBER_FRAME_R14(%rax)
    movq    $0, FIBER_FRAME_R13(%rax)
    movq    %rsi, FIBER_FRAME_R12(%rax)
    movq    %rdx, FIBER_FRAME_RBX(%rax)
    movq    $0, FIBER_FRAME_RBP(%rax)
    leaq    SYM(fiber_trampoline)(%rip), %rcx
    movq    %rcx, FIBER_FRAME_PC(%rax)
    ret
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
