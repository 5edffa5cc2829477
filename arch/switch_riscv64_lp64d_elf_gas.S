/* Context switch for RISC-V 64 (RV64GC), lp64d ABI, ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_riscv64_lp64d_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg) -> sp   build a fresh context
 *   fiber_switch_context(to, data)               -> from switch, passing data
 *
 * What a callee must preserve, per the RISC-V ABIs Specification
 * (riscv-non-isa/riscv-elf-psabi-doc), chapter "RISC-V Calling Conventions":
 *   - "Integer Register Convention": s0-s11 (x8-x9, x18-x27) and sp are
 *     "preserved across calls"; ra is not (but it holds where the suspended
 *     context resumes). gp and tp are "Unallocatable": "procedures should not
 *     modify the integer registers tp and gp", so they are neither saved nor
 *     touched here (tp is per thread, not per fiber).
 *   - "Floating-Point Register Convention" and "Hardware Floating-Point Calling
 *     Convention": "Floating-point registers fs0-fs11 shall be preserved across
 *     procedure calls, provided they hold values no more than ABI_FLEN bits wide";
 *     ABI_FLEN is 64 under lp64d, so the full 64 bits of fs0-fs11 (f8-f9,
 *     f18-f27) are saved. ft*, fa* are temporaries.
 *   - fcsr: "The Floating-Point Control and Status Register (fcsr) must have
 *     thread storage duration in accordance with C11 section 7.6". C11 7.6 in
 *     turn sets the convention that "a function call does not alter its
 *     caller's floating-point control modes, clear its caller's floating-point
 *     status flags, nor depend on the state of its caller's floating-point
 *     status flags unless the function is so documented". fcsr's one control
 *     mode is frm, the dynamic rounding mode (bits 7:5); fflags (bits 4:0,
 *     the accrued exceptions) are status. So frm is switched, as the other ports
 *     switch MXCSR's or FPCR's control fields, and fflags stay with the thread.
 *     RISC-V has no flush-to-zero or trap-enable control.
 *   - The stack: "the stack pointer shall be aligned to a 128-bit boundary upon
 *     procedure entry" and "must remain aligned throughout procedure execution".
 * Vector registers (V extension) are all caller-saved in the standard calling
 * convention, so none is saved here.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in arch/switch_riscv64_lp64d_elf_gas.h and checked from C++):
 *
 *          +------------------------+  <- sp + 224 (16-byte aligned): the CFA
 *    +216  | ra (pc)                |  where fiber_switch_context returns
 *    +208  | s0 (fp)                |  with ra: a frame record at CFA-16, so
 *    +200  | pad                    |  frame-pointer walks stay valid
 *    +192  | fs11                   |
 *          | ...                    |
 *    +104  | fs0                    |
 *     +96  | s11                    |
 *          | ...                    |
 *     +16  | s1                     |
 *      +8  | frm                    |  fcsr.frm, 3 bits in a doubleword
 *      +0  | data                   |  the value passed by the suspending side
 *          +------------------------+  <- saved sp (16-byte aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame with ra pointing at
 * fiber_trampoline, s1 = arg, s2 = entry, s0 = 0, every other register zero and
 * the frm of the thread that prepared it; above it sits a zeroed 16-byte frame
 * record (a null fp and a null return address) that ends frame-pointer walks:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *          | 0                      |  null return address
 *          | 0                      |  null previous fp
 *          +------------------------+  <- sp seen by fiber_trampoline (16-aligned)
 *          | fiber_trampoline       |  ra (pc)
 *          | 0                      |  s0: ends the frame-pointer chain
 *          | 0                      |  pad
 *          | 0 ... 0                |  fs11 ... fs0
 *          | 0 ... 0                |  s11 ... s3
 *          | entry                  |  s2
 *          | arg                    |  s1
 *          | frm                    |  the preparing thread's rounding mode
 *          | 0                      |  data
 *          +------------------------+  <- returned sp
 *
 * FIBER_SHARED_FP_ENV=1 leaves frm alone: faster, but a rounding-mode change
 * made in one fiber is then seen by every fiber on the thread.
 *
 * FIBER_SWITCH_WITH_RET: RISC-V has no return instruction; `ret` is `jalr x0,
 * 0(ra)`, a jump through a register like any other. What differs is the hint the
 * register operands give the return-address stack (RAS): per the RISC-V
 * Unprivileged ISA, "Unconditional Jumps", table "Return-address stack
 * prediction hints encoded in the register operands of a JALR instruction", a
 * JALR with rd = x0 and rs1 = x1 or x5 (a link register) pops the RAS, and one
 * with rs1 any other register is a plain indirect jump. FIBER_SWITCH_WITH_RET=1
 * returns with `ret` (a pop: it mispredicts, since the entry on top was pushed
 * by a different call); the default jumps through t1 (x6, not a link register),
 * which leaves the RAS out of it, as the x86_64 port's `jmp` does. Cores without
 * a RAS treat the two the same.
 */
#include "switch_riscv64_lp64d_elf_gas.h"

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

#if !defined(__riscv) || __riscv_xlen != 64 || !defined(__riscv_float_abi_double)
#  error "this file implements the RV64 lp64d ABI (64-bit integer, 64-bit FP registers)"
#endif

    .text

/* void* fiber_switch_context(void* to [a0], void* data [a1]) -> from [a0] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 2
SYM(fiber_switch_context):
    .cfi_startproc
    addi    sp, sp, -FIBER_FRAME_SIZE
    .cfi_def_cfa_offset FIBER_FRAME_SIZE
    sd      s0, FIBER_FRAME_S0(sp)
    sd      ra, FIBER_FRAME_RA(sp)
    sd      s1, FIBER_FRAME_S1(sp)
    sd      s2, FIBER_FRAME_S2(sp)
    sd      s3, FIBER_FRAME_S3(sp)
    sd      s4, FIBER_FRAME_S4(sp)
    sd      s5, FIBER_FRAME_S5(sp)
    sd      s6, FIBER_FRAME_S6(sp)
    sd      s7, FIBER_FRAME_S7(sp)
    sd      s8, FIBER_FRAME_S8(sp)
    sd      s9, FIBER_FRAME_S9(sp)
    sd      s10, FIBER_FRAME_S10(sp)
    sd      s11, FIBER_FRAME_S11(sp)
    .cfi_offset s0, FIBER_FRAME_S0 - FIBER_FRAME_SIZE
    .cfi_offset ra, FIBER_FRAME_RA - FIBER_FRAME_SIZE
    .cfi_offset s1, FIBER_FRAME_S1 - FIBER_FRAME_SIZE
    .cfi_offset s2, FIBER_FRAME_S2 - FIBER_FRAME_SIZE
    .cfi_offset s3, FIBER_FRAME_S3 - FIBER_FRAME_SIZE
    .cfi_offset s4, FIBER_FRAME_S4 - FIBER_FRAME_SIZE
    .cfi_offset s5, FIBER_FRAME_S5 - FIBER_FRAME_SIZE
    .cfi_offset s6, FIBER_FRAME_S6 - FIBER_FRAME_SIZE
    .cfi_offset s7, FIBER_FRAME_S7 - FIBER_FRAME_SIZE
    .cfi_offset s8, FIBER_FRAME_S8 - FIBER_FRAME_SIZE
    .cfi_offset s9, FIBER_FRAME_S9 - FIBER_FRAME_SIZE
    .cfi_offset s10, FIBER_FRAME_S10 - FIBER_FRAME_SIZE
    .cfi_offset s11, FIBER_FRAME_S11 - FIBER_FRAME_SIZE
    fsd     fs0, FIBER_FRAME_FS0(sp)
    fsd     fs1, FIBER_FRAME_FS1(sp)
    fsd     fs2, FIBER_FRAME_FS2(sp)
    fsd     fs3, FIBER_FRAME_FS3(sp)
    fsd     fs4, FIBER_FRAME_FS4(sp)
    fsd     fs5, FIBER_FRAME_FS5(sp)
    fsd     fs6, FIBER_FRAME_FS6(sp)
    fsd     fs7, FIBER_FRAME_FS7(sp)
    fsd     fs8, FIBER_FRAME_FS8(sp)
    fsd     fs9, FIBER_FRAME_FS9(sp)
    fsd     fs10, FIBER_FRAME_FS10(sp)
    fsd     fs11, FIBER_FRAME_FS11(sp)
    .cfi_offset fs0, FIBER_FRAME_FS0 - FIBER_FRAME_SIZE
    .cfi_offset fs1, FIBER_FRAME_FS1 - FIBER_FRAME_SIZE
    .cfi_offset fs2, FIBER_FRAME_FS2 - FIBER_FRAME_SIZE
    .cfi_offset fs3, FIBER_FRAME_FS3 - FIBER_FRAME_SIZE
    .cfi_offset fs4, FIBER_FRAME_FS4 - FIBER_FRAME_SIZE
    .cfi_offset fs5, FIBER_FRAME_FS5 - FIBER_FRAME_SIZE
    .cfi_offset fs6, FIBER_FRAME_FS6 - FIBER_FRAME_SIZE
    .cfi_offset fs7, FIBER_FRAME_FS7 - FIBER_FRAME_SIZE
    .cfi_offset fs8, FIBER_FRAME_FS8 - FIBER_FRAME_SIZE
    .cfi_offset fs9, FIBER_FRAME_FS9 - FIBER_FRAME_SIZE
    .cfi_offset fs10, FIBER_FRAME_FS10 - FIBER_FRAME_SIZE
    .cfi_offset fs11, FIBER_FRAME_FS11 - FIBER_FRAME_SIZE
#if !FIBER_SHARED_FP_ENV
    frrm    t0
    sd      t0, FIBER_FRAME_FRM(sp)
#endif
    sd      a1, FIBER_FRAME_DATA(sp)

    /* The switch itself. The target's frame has the same layout, so the CFI above
     * stays true for it. */
    mv      t2, sp
    mv      sp, a0
    mv      a0, t2

#if !FIBER_SHARED_FP_ENV
    /* Writing frm can serialize the FP pipeline, and the value rarely differs
     * between fibers: write it only when it changed. fsrm writes frm alone and
     * leaves the accrued flags (fflags) as they are. */
    ld      t1, FIBER_FRAME_FRM(sp)
    beq     t1, t0, 1f
    fsrm    t1
1:
#endif
    fld     fs0, FIBER_FRAME_FS0(sp)
    fld     fs1, FIBER_FRAME_FS1(sp)
    fld     fs2, FIBER_FRAME_FS2(sp)
    fld     fs3, FIBER_FRAME_FS3(sp)
    fld     fs4, FIBER_FRAME_FS4(sp)
    fld     fs5, FIBER_FRAME_FS5(sp)
    fld     fs6, FIBER_FRAME_FS6(sp)
    fld     fs7, FIBER_FRAME_FS7(sp)
    fld     fs8, FIBER_FRAME_FS8(sp)
    fld     fs9, FIBER_FRAME_FS9(sp)
    fld     fs10, FIBER_FRAME_FS10(sp)
    fld     fs11, FIBER_FRAME_FS11(sp)
    ld      s1, FIBER_FRAME_S1(sp)
    ld      s2, FIBER_FRAME_S2(sp)
    ld      s3, FIBER_FRAME_S3(sp)
    ld      s4, FIBER_FRAME_S4(sp)
    ld      s5, FIBER_FRAME_S5(sp)
    ld      s6, FIBER_FRAME_S6(sp)
    ld      s7, FIBER_FRAME_S7(sp)
    ld      s8, FIBER_FRAME_S8(sp)
    ld      s9, FIBER_FRAME_S9(sp)
    ld      s10, FIBER_FRAME_S10(sp)
    ld      s11, FIBER_FRAME_S11(sp)
    ld      s0, FIBER_FRAME_S0(sp)
#if FIBER_SWITCH_WITH_RET
    ld      ra, FIBER_FRAME_RA(sp)
    addi    sp, sp, FIBER_FRAME_SIZE
    .cfi_def_cfa_offset 0
#else
    /* ra is not preserved across calls, so the resumed code does not read it: the
     * return address goes to t1 only. */
    ld      t1, FIBER_FRAME_RA(sp)
    addi    sp, sp, FIBER_FRAME_SIZE
    .cfi_def_cfa_offset 0
    .cfi_register ra, t1
#endif
    .cfi_restore s0
    .cfi_restore s1
    .cfi_restore s2
    .cfi_restore s3
    .cfi_restore s4
    .cfi_restore s5
    .cfi_restore s6
    .cfi_restore s7
    .cfi_restore s8
    .cfi_restore s9
    .cfi_restore s10
    .cfi_restore s11
    .cfi_restore fs0
    .cfi_restore fs1
    .cfi_restore fs2
    .cfi_restore fs3
    .cfi_restore fs4
    .cfi_restore fs5
    .cfi_restore fs6
    .cfi_restore fs7
    .cfi_restore fs8
    .cfi_restore fs9
    .cfi_restore fs10
    .cfi_restore fs11
#if FIBER_SWITCH_WITH_RET
    .cfi_restore ra
    ret
#else
    /* The return address belongs to a different call than the one that brought us
     * here; a jump through a non-link register leaves the return-address stack out
     * of it. */
    jr      t1
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the jump at the end of
 * fiber_switch_context: a0 = from, s1 = arg, s2 = entry, s0 = 0, sp 16-aligned. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), @function
    .p2align 2
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined ra
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in the function before it. */
    nop
.Lfiber_trampoline_start:
    mv      a1, s1
    jalr    s2
    unimp                           /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [a0], entry [a1], void* arg [a2],
 *                             void* stack_limit [a3], unused here) */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), @function
    .p2align 2
SYM(fiber_prepare_context):
    .cfi_startproc
    andi    a0, a0, -16
    addi    a0, a0, -16             /* zeroed frame record above the first frame */
    sd      zero, 0(a0)
    sd      zero, 8(a0)
    addi    a0, a0, -FIBER_FRAME_SIZE
    sd      zero, FIBER_FRAME_DATA(a0)
    frrm    t0
    sd      t0, FIBER_FRAME_FRM(a0)
    sd      a2, FIBER_FRAME_S1(a0)
    sd      a1, FIBER_FRAME_S2(a0)
    sd      zero, FIBER_FRAME_S3(a0)
    sd      zero, FIBER_FRAME_S4(a0)
    sd      zero, FIBER_FRAME_S5(a0)
    sd      zero, FIBER_FRAME_S6(a0)
    sd      zero, FIBER_FRAME_S7(a0)
    sd      zero, FIBER_FRAME_S8(a0)
    sd      zero, FIBER_FRAME_S9(a0)
    sd      zero, FIBER_FRAME_S10(a0)
    sd      zero, FIBER_FRAME_S11(a0)
    sd      zero, FIBER_FRAME_FS0(a0)
    sd      zero, FIBER_FRAME_FS1(a0)
    sd      zero, FIBER_FRAME_FS2(a0)
    sd      zero, FIBER_FRAME_FS3(a0)
    sd      zero, FIBER_FRAME_FS4(a0)
    sd      zero, FIBER_FRAME_FS5(a0)
    sd      zero, FIBER_FRAME_FS6(a0)
    sd      zero, FIBER_FRAME_FS7(a0)
    sd      zero, FIBER_FRAME_FS8(a0)
    sd      zero, FIBER_FRAME_FS9(a0)
    sd      zero, FIBER_FRAME_FS10(a0)
    sd      zero, FIBER_FRAME_FS11(a0)
    sd      zero, FIBER_FRAME_PAD(a0)
    sd      zero, FIBER_FRAME_S0(a0)
    lla     t0, .Lfiber_trampoline_start
    sd      t0, FIBER_FRAME_RA(a0)
    ret
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
