/* Context switch for 32-bit Arm, AAPCS hard-float (armhf), ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_arm_aapcs_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg, limit) -> sp   build a fresh context
 *   fiber_switch_context(to, data)                      -> from switch, passing data
 *
 * What a callee must preserve, per the Procedure Call Standard for the Arm
 * Architecture (AAPCS, ARM IHI 0042), "Core registers", "VFP register usage
 * conventions" and "Stack constraints at a public interface":
 *   - r4-r8, r10, r11 and sp, and r9 where the platform makes it the callee-saved
 *     v6, as GNU/Linux does;
 *   - s16-s31, that is d8-d15 (d0-d7 and d16-d31 are caller-saved);
 *   - FPSCR, except its status bits. "The condition code bits (28-31), the
 *     cumulative saturation (QC) bit (27) and the cumulative exception-status bits
 *     (0-4 and 7) are not preserved across a public interface"; the exception-
 *     control bits (8-12, 15), rounding mode (22-23) and flush-to-zero (24) "may be
 *     modified by calls to specific support functions that affect the global
 *     state of the application" (and by nothing else); the length and stride
 *     fields are zero at every interface (VFP mode); all other bits, default-NaN
 *     (25) and alternative half-precision (26) among them, "must not be
 *     modified". So a switch hands each context back the FPSCR it left with,
 *     status bits aside: those stay as the running code has them.
 *   - sp mod 8 == 0 at a public interface (this file keeps 16 where it chooses).
 * lr is not callee-saved, but it holds where the suspended context resumes.
 *
 * Everything here is Arm (A32) code: it runs on any armhf core, and it is called
 * from Thumb-2 code (Debian's default) as well as from Arm code, because every
 * branch to code outside this file interworks: callers reach it with BL/BLX (the
 * linker turns a Thumb BL into BLX), it returns and resumes with BX or a load to
 * pc, and it calls the entry function with BLX. Its functions' addresses have
 * bit 0 clear, so the address of fiber_trampoline is also the start of the
 * function as the unwinder reports it.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in arch/switch_arm_aapcs_elf_gas.h and checked from C++):
 *
 *          +------------------------+  <- sp + 112: the caller's sp (8-aligned)
 *    +108  | lr (pc)                |  where fiber_switch_context returns
 *    +104  | padding                |  (r12 is pushed to fill it)
 *     +72  | r4 ... r11             |
 *      +8  | d8 ... d15             |
 *      +4  | fpscr (status bits 0)  |
 *      +0  | data                   |  the value passed by the suspending side
 *          +------------------------+  <- saved sp (8-byte aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame with lr pointing
 * into fiber_trampoline, r4 = arg, r5 = entry, every other register 0 (r7 and r11,
 * the Thumb and Arm frame pointers, included), the FPSCR of the thread that
 * prepared it, and four zero words above it:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *          | 0, 0, 0, 0             |  <- sp seen by fiber_trampoline (16-aligned)
 *          | fiber_trampoline       |  lr (pc)
 *          | 0                      |  padding
 *          | 0 ... 0, entry, arg    |  r11 ... r6, r5, r4
 *          | 0 ... 0                |  d8 ... d15
 *          | fpscr                  |
 *          | 0                      |  data
 *          +------------------------+  <- returned sp (16-aligned)
 *
 * Unwind information comes twice. DWARF CFI (.cfi_*, kept in .debug_frame as the
 * compiler does on this platform) serves debuggers; for them fiber_trampoline
 * marks lr undefined, which ends a walk. C++ exceptions and _Unwind_Backtrace use
 * the EHABI tables instead (.ARM.exidx, from .fnstart/.save/.vsave/.pad/.fnend),
 * so every function here has an exidx entry: without one, its code would be taken
 * for part of the function before it. EHABI unwind opcodes cannot say "no caller",
 * and .cantunwind is not it either: the unwinder then refuses the frame before a
 * backtrace ever reports it, so the library, which finds a fiber's outermost frame
 * by the start address the unwinder reports for it, could not find the trampoline.
 * So fiber_trampoline's entry names a personality routine of its own, which
 * answers every request with _URC_END_OF_STACK: a walk reports the trampoline's
 * frame, then ends there, as the DWARF walk does on other targets.
 *
 * FIBER_SHARED_FP_ENV=1 leaves FPSCR alone: faster, but a rounding-mode or
 * flush-to-zero change made in one fiber is then seen by every fiber on the
 * thread. FIBER_SWITCH_WITH_RET=1 resumes with a
 * return (pop into pc) instead of a plain indirect branch; it exists only so
 * bench/ can measure the difference (the return pops a return-stack entry pushed
 * by a different call, so it mispredicts).
 */
#include "switch_arm_aapcs_elf_gas.h"

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

    .syntax unified
    .arm
    .fpu    vfpv3-d16
    .cfi_sections .debug_frame
    .text

/* void* fiber_switch_context(void* to [r0], void* data [r1]) -> from [r0] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), %function
    .p2align 4
SYM(fiber_switch_context):
    .fnstart
    .cfi_startproc
    push    {r4-r12, lr}            /* r12 only fills the padding word */
    .save   {r4-r12, lr}
    .cfi_adjust_cfa_offset 40
    .cfi_rel_offset r4, 0
    .cfi_rel_offset r5, 4
    .cfi_rel_offset r6, 8
    .cfi_rel_offset r7, 12
    .cfi_rel_offset r8, 16
    .cfi_rel_offset r9, 20
    .cfi_rel_offset r10, 24
    .cfi_rel_offset r11, 28
    .cfi_rel_offset lr, 36
    vpush   {d8-d15}
    .vsave  {d8-d15}
    .cfi_adjust_cfa_offset 64
    .cfi_rel_offset d8, 0
    .cfi_rel_offset d9, 8
    .cfi_rel_offset d10, 16
    .cfi_rel_offset d11, 24
    .cfi_rel_offset d12, 32
    .cfi_rel_offset d13, 40
    .cfi_rel_offset d14, 48
    .cfi_rel_offset d15, 56
#if !FIBER_SHARED_FP_ENV
    vmrs    r2, fpscr
    bic     r3, r2, #FIBER_FPSCR_STATUS_HI
    bic     r3, r3, #FIBER_FPSCR_STATUS_LO  /* r3 = what is switched */
#endif
    push    {r1, r3}                /* data, fpscr */
    .pad    #8
    .cfi_adjust_cfa_offset 8

    /* The switch itself. The target's frame has the same layout, so the CFI above
     * stays true for it. */
    mov     ip, sp
    mov     sp, r0
    mov     r0, ip

#if !FIBER_SHARED_FP_ENV
    /* Writing FPSCR can stall the pipeline, and the value rarely differs between
     * fibers: write it only when it changed, keeping the running code's status
     * bits (r2 ^ r3). */
    ldr     r1, [sp, #FIBER_FRAME_FPSCR]
    cmp     r1, r3
    beq     1f
    eor     r2, r2, r3
    orr     r2, r2, r1
    vmsr    fpscr, r2
1:
#endif
    add     sp, sp, #8
    .cfi_adjust_cfa_offset -8
    vpop    {d8-d15}
    .cfi_adjust_cfa_offset -64
    .cfi_restore d8
    .cfi_restore d9
    .cfi_restore d10
    .cfi_restore d11
    .cfi_restore d12
    .cfi_restore d13
    .cfi_restore d14
    .cfi_restore d15
#if FIBER_SWITCH_WITH_RET
    pop     {r4-r12, pc}
#else
    /* The saved lr was written by a different call than the one that brought us
     * here; a branch through ip (not lr, not a pop into pc) leaves the
     * return-stack predictor out of it. */
    ldr     ip, [sp, #FIBER_FRAME_LR - FIBER_FRAME_R4]
    .cfi_register lr, ip
    pop     {r4-r11}
    .cfi_adjust_cfa_offset -32
    .cfi_restore r4
    .cfi_restore r5
    .cfi_restore r6
    .cfi_restore r7
    .cfi_restore r8
    .cfi_restore r9
    .cfi_restore r10
    .cfi_restore r11
    add     sp, sp, #8
    .cfi_adjust_cfa_offset -8
    bx      ip
#endif
    .cfi_endproc
    .fnend
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the branch at the end of
 * fiber_switch_context: r0 = from, r4 = arg, r5 = entry, sp 16-byte aligned. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), %function
    .p2align 4
SYM(fiber_trampoline):
    .fnstart
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined lr
    .personality fiber_trampoline_personality
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up just below it (EHABI: pc - 2), which must fall in this function's table
     * entry, not in the function before it. */
    nop
.Lfiber_trampoline_start:
    mov     r1, r4
    blx     r5
    udf     #0                      /* entry never returns */
    .cfi_endproc
    .fnend
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* _Unwind_Reason_Code fiber_trampoline_personality(_Unwind_State [r0],
 *     _Unwind_Control_Block* [r1], _Unwind_Context* [r2]) -> [r0]
 * The EHABI personality routine of fiber_trampoline's frame, called by the
 * unwinder once it has reported that frame. Whatever it asks (to unwind the frame
 * virtually, for a backtrace or the search phase of an exception, or for real),
 * there is nothing above: _URC_END_OF_STACK. No exception gets here anyway (the
 * entry function catches everything). File-local: only the table refers to it. */
    .type   fiber_trampoline_personality, %function
    .p2align 2
fiber_trampoline_personality:
    .fnstart
    .cfi_startproc
    mov     r0, #5                  /* _URC_END_OF_STACK in unwind-arm-common.h */
    bx      lr
    .cfi_endproc
    .fnend
    .size   fiber_trampoline_personality, .-fiber_trampoline_personality

/* void* fiber_prepare_context(void* stack_top [r0], entry [r1], void* arg [r2],
 *                             void* stack_limit [r3], unused here) -> sp [r0] */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), %function
    .p2align 4
SYM(fiber_prepare_context):
    .fnstart
    .cfi_startproc
    bic     r0, r0, #15
    sub     r0, r0, #16             /* zero words above the first frame */
    mov     ip, #0
    str     ip, [r0]
    str     ip, [r0, #4]
    str     ip, [r0, #8]
    str     ip, [r0, #12]
    sub     r0, r0, #FIBER_FRAME_SIZE
    str     ip, [r0, #FIBER_FRAME_DATA]
    vmrs    r3, fpscr
    bic     r3, r3, #FIBER_FPSCR_STATUS_HI
    bic     r3, r3, #FIBER_FPSCR_STATUS_LO
    str     r3, [r0, #FIBER_FRAME_FPSCR]
    vmov    d0, ip, ip              /* d0 is caller-saved: a zero to store */
    vstr    d0, [r0, #FIBER_FRAME_D8]
    vstr    d0, [r0, #FIBER_FRAME_D8 + 8]
    vstr    d0, [r0, #FIBER_FRAME_D8 + 16]
    vstr    d0, [r0, #FIBER_FRAME_D8 + 24]
    vstr    d0, [r0, #FIBER_FRAME_D8 + 32]
    vstr    d0, [r0, #FIBER_FRAME_D8 + 40]
    vstr    d0, [r0, #FIBER_FRAME_D8 + 48]
    vstr    d0, [r0, #FIBER_FRAME_D8 + 56]
    str     r2, [r0, #FIBER_FRAME_R4]        /* r4 = arg */
    str     r1, [r0, #FIBER_FRAME_R4 + 4]    /* r5 = entry */
    str     ip, [r0, #FIBER_FRAME_R4 + 8]    /* r6-r11 = 0 */
    str     ip, [r0, #FIBER_FRAME_R4 + 12]
    str     ip, [r0, #FIBER_FRAME_R4 + 16]
    str     ip, [r0, #FIBER_FRAME_R4 + 20]
    str     ip, [r0, #FIBER_FRAME_R4 + 24]
    str     ip, [r0, #FIBER_FRAME_R4 + 28]
    str     ip, [r0, #FIBER_FRAME_PAD]
    adr     r3, .Lfiber_trampoline_start     /* pc-relative; an Arm address */
    str     r3, [r0, #FIBER_FRAME_LR]
    bx      lr
    .cfi_endproc
    .fnend
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", %progbits
