/* Context switch for AArch64, AAPCS64, ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_arm64_aapcs_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg) -> sp   build a fresh context
 *   fiber_switch_context(to, data)               -> from switch, passing data
 *
 * What a callee must preserve, per the Procedure Call Standard for the Arm 64-bit
 * Architecture (AAPCS64, ARM IHI 0055), "General-purpose registers" and "SIMD and
 * Floating-Point registers":
 *   - x19-x28, the frame pointer x29 and sp;
 *   - the low 64 bits of v8-v15, that is d8-d15 (the upper halves and v0-v7,
 *     v16-v31 are caller-saved);
 *   - the FPCR mode fields. AAPCS64 ("Floating-point control and status") treats
 *     FPCR's rounding mode, flush-to-zero, default-NaN and alternative half-precision
 *     fields as state a routine must not change unless that is its documented
 *     purpose, so a switch must hand each context back the FPCR it left with. FPSR
 *     (cumulative exception flags) is caller-saved and not switched.
 * x30 (lr) is not callee-saved, but it holds where the suspended context resumes.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in arch/switch_arm64_aapcs_elf_gas.h and checked from C++):
 *
 *          +------------------------+  <- sp + 176 (16-byte aligned)
 *    +160  | d14        | d15       |
 *    +144  | d12        | d13       |
 *    +128  | d10        | d11       |
 *    +112  | d8         | d9        |
 *     +96  | x29 (fp)   | x30 (pc)  |  where the context resumes
 *     +80  | x27        | x28       |
 *     +64  | x25        | x26       |
 *     +48  | x23        | x24       |
 *     +32  | x21        | x22       |
 *     +16  | x19        | x20       |
 *      +0  | data       | fpcr      |
 *          +------------------------+  <- saved sp (16-byte aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame with x30 pointing
 * into fiber_trampoline, x19 = arg, x20 = entry, x29 = 0 (which ends frame-pointer
 * walks at the entry function's frame record) and the FPCR of the thread that
 * prepared it; 16 zero bytes above it pad to the stack top.
 *
 * FIBER_SHARED_FP_ENV=1 leaves FPCR alone: faster, but a rounding-mode or
 * flush-to-zero change made in one fiber is then seen by every fiber on the thread.
 */
#include "switch_arm64_aapcs_elf_gas.h"

#ifndef FIBER_SHARED_FP_ENV
#  define FIBER_SHARED_FP_ENV 0
#endif
#ifndef FIBER_SWITCH_WITH_RET
#  define FIBER_SWITCH_WITH_RET 0
#endif
#ifndef FIBER_ASM_SUFFIX
#  define FIBER_ASM_SUFFIX
#endif
#define FIBER_CAT2(a, b) a##b
#define FIBER_CAT(a, b) FIBER_CAT2(a, b)
#define SYM(name) FIBER_CAT(name, FIBER_ASM_SUFFIX)

    .text

/* void* fiber_switch_context(void* to [x0], void* data [x1]) -> from [x0] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), %function
    .p2align 4
SYM(fiber_switch_context):
    .cfi_startproc
    sub     sp, sp, #FIBER_FRAME_SIZE
    .cfi_def_cfa_offset FIBER_FRAME_SIZE
    stp     x19, x20, [sp, #FIBER_FRAME_X19]
    stp     x21, x22, [sp, #FIBER_FRAME_X21]
    stp     x23, x24, [sp, #FIBER_FRAME_X23]
    stp     x25, x26, [sp, #FIBER_FRAME_X25]
    stp     x27, x28, [sp, #FIBER_FRAME_X27]
    stp     x29, x30, [sp, #FIBER_FRAME_FP]
    .cfi_offset x19, FIBER_FRAME_X19 - FIBER_FRAME_SIZE
    .cfi_offset x20, FIBER_FRAME_X19 + 8 - FIBER_FRAME_SIZE
    .cfi_offset x21, FIBER_FRAME_X21 - FIBER_FRAME_SIZE
    .cfi_offset x22, FIBER_FRAME_X21 + 8 - FIBER_FRAME_SIZE
    .cfi_offset x23, FIBER_FRAME_X23 - FIBER_FRAME_SIZE
    .cfi_offset x24, FIBER_FRAME_X23 + 8 - FIBER_FRAME_SIZE
    .cfi_offset x25, FIBER_FRAME_X25 - FIBER_FRAME_SIZE
    .cfi_offset x26, FIBER_FRAME_X25 + 8 - FIBER_FRAME_SIZE
    .cfi_offset x27, FIBER_FRAME_X27 - FIBER_FRAME_SIZE
    .cfi_offset x28, FIBER_FRAME_X27 + 8 - FIBER_FRAME_SIZE
    .cfi_offset x29, FIBER_FRAME_FP - FIBER_FRAME_SIZE
    .cfi_offset x30, FIBER_FRAME_LR - FIBER_FRAME_SIZE
    stp     d8, d9, [sp, #FIBER_FRAME_D8]
    stp     d10, d11, [sp, #FIBER_FRAME_D10]
    stp     d12, d13, [sp, #FIBER_FRAME_D12]
    stp     d14, d15, [sp, #FIBER_FRAME_D14]
    .cfi_offset d8, FIBER_FRAME_D8 - FIBER_FRAME_SIZE
    .cfi_offset d9, FIBER_FRAME_D8 + 8 - FIBER_FRAME_SIZE
    .cfi_offset d10, FIBER_FRAME_D10 - FIBER_FRAME_SIZE
    .cfi_offset d11, FIBER_FRAME_D10 + 8 - FIBER_FRAME_SIZE
    .cfi_offset d12, FIBER_FRAME_D12 - FIBER_FRAME_SIZE
    .cfi_offset d13, FIBER_FRAME_D12 + 8 - FIBER_FRAME_SIZE
    .cfi_offset d14, FIBER_FRAME_D14 - FIBER_FRAME_SIZE
    .cfi_offset d15, FIBER_FRAME_D14 + 8 - FIBER_FRAME_SIZE
#if !FIBER_SHARED_FP_ENV
    mrs     x9, fpcr
    stp     x1, x9, [sp, #FIBER_FRAME_DATA]
#else
    str     x1, [sp, #FIBER_FRAME_DATA]
#endif

    /* The switch itself. The target's frame has the same layout, so the CFI above
     * stays true for it. */
    mov     x10, sp
    mov     sp, x0
    mov     x0, x10

#if !FIBER_SHARED_FP_ENV
    /* Writing FPCR can stall the pipeline, and the value rarely differs between
     * fibers: write it only when it changed. */
    ldr     x10, [sp, #FIBER_FRAME_FPCR]
    cmp     x10, x9
    b.eq    1f
    msr     fpcr, x10
1:
#endif
    ldp     d8, d9, [sp, #FIBER_FRAME_D8]
    ldp     d10, d11, [sp, #FIBER_FRAME_D10]
    ldp     d12, d13, [sp, #FIBER_FRAME_D12]
    ldp     d14, d15, [sp, #FIBER_FRAME_D14]
    ldp     x19, x20, [sp, #FIBER_FRAME_X19]
    ldp     x21, x22, [sp, #FIBER_FRAME_X21]
    ldp     x23, x24, [sp, #FIBER_FRAME_X23]
    ldp     x25, x26, [sp, #FIBER_FRAME_X25]
    ldp     x27, x28, [sp, #FIBER_FRAME_X27]
    ldp     x29, x30, [sp, #FIBER_FRAME_FP]
    /* Restored: unwinders must no longer look for them in the frame being freed. */
    .cfi_restore x19
    .cfi_restore x20
    .cfi_restore x21
    .cfi_restore x22
    .cfi_restore x23
    .cfi_restore x24
    .cfi_restore x25
    .cfi_restore x26
    .cfi_restore x27
    .cfi_restore x28
    .cfi_restore x29
    .cfi_restore x30
    .cfi_restore d8
    .cfi_restore d9
    .cfi_restore d10
    .cfi_restore d11
    .cfi_restore d12
    .cfi_restore d13
    .cfi_restore d14
    .cfi_restore d15
    add     sp, sp, #FIBER_FRAME_SIZE
    .cfi_def_cfa_offset 0
#if FIBER_SWITCH_WITH_RET
    ret
#else
    /* x30 was written by a different call than the one that brought us here; a
     * plain indirect branch leaves the return-stack predictor out of it. */
    br      x30
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs: x0 = from, x19 = arg, x20 = entry, x29 = 0. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), %function
    .p2align 4
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined x30
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in fiber_switch_context's. */
    nop
.Lfiber_trampoline_start:
    mov     x1, x19
    blr     x20
    brk     #0                      /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [x0], entry [x1], void* arg [x2],
 *                             void* stack_limit [x3], unused here) */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), %function
    .p2align 4
SYM(fiber_prepare_context):
    .cfi_startproc
    and     x0, x0, #~15
    sub     x0, x0, #16             /* 16 zero bytes above the first frame */
    stp     xzr, xzr, [x0]
    sub     x0, x0, #FIBER_FRAME_SIZE
    mrs     x9, fpcr
    stp     xzr, x9, [x0, #FIBER_FRAME_DATA]
    stp     x2, x1, [x0, #FIBER_FRAME_X19]
    stp     xzr, xzr, [x0, #FIBER_FRAME_X21]
    stp     xzr, xzr, [x0, #FIBER_FRAME_X23]
    stp     xzr, xzr, [x0, #FIBER_FRAME_X25]
    stp     xzr, xzr, [x0, #FIBER_FRAME_X27]
    adr     x10, .Lfiber_trampoline_start
    stp     xzr, x10, [x0, #FIBER_FRAME_FP]
    stp     xzr, xzr, [x0, #FIBER_FRAME_D8]
    stp     xzr, xzr, [x0, #FIBER_FRAME_D10]
    stp     xzr, xzr, [x0, #FIBER_FRAME_D12]
    stp     xzr, xzr, [x0, #FIBER_FRAME_D14]
    ret
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", %progbits
