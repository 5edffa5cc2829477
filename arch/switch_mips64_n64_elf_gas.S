/* Context switch for MIPS64, n64 ABI, ELF, GNU assembler (mips64el and mips64).
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_mips64_n64_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg, limit) -> sp   build a fresh context
 *   fiber_switch_context(to, data)                      -> from switch, passing data
 *
 * What a callee must preserve, per SGI's "MIPSpro N32 ABI Handbook" (007-2816),
 * chapter 2 "Calling Convention Implementations": the section "N32 and Native
 * 64-Bit (N64) Subprogram Interface for MIPS Architectures" and Table 2-4 "ABI
 * Attribute Summary" ("Callee-saved FP registers: $f24..$f31 all (64-bit)" for
 * n64; "GP register: callee saved"), and chapter 3, "Caller $gp (o32) vs. Callee
 * Saved $gp (n32 and n64)":
 *   - s0-s7 ($16-$23), s8/fp ($30), sp ($29) and gp ($28): unlike o32, n64 code
 *     sets gp up in its prologue and expects it intact after every call;
 *   - $f24-$f31, all 64 bits (n64 runs the FPU with FR=1: 32 64-bit registers);
 *   - sp 16-byte aligned (Table 2-4, "Stack region alignment: 16 byte").
 * ra ($31) is not callee-saved, but it holds where the suspended context resumes.
 * The FP control/status register FCSR (FCR31) is not classed by the handbook. Its
 * rounding mode, exception enables and flush-to-zero bits are modes that code
 * relies on without passing them (C's <fenv.h> treats them so; AAPCS64 writes
 * the same rule down for FPCR): a routine leaves them as it found them unless
 * changing them is its purpose. So a switch hands each context back the modes
 * it left with (FIBER_FCSR_MODE); the flags, cause bits and condition codes are
 * status and stay as they are.
 *
 * Position-independent code: a PIC function finds its gp from $t9 ($25), which
 * must hold its address when it is called, so the trampoline calls `entry`
 * through $t9. Nothing here reads the GOT, so nothing here needs gp; the address
 * inside fiber_trampoline that a fresh context resumes at is taken PC-relative
 * (bal), which holds whether or not the caller set $t9.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in arch/switch_mips64_n64_elf_gas.h and checked from C++):
 *
 *          +------------------------+  <- sp + 176 (16-byte aligned)
 *    +168  | pad                    |
 *    +104  | $f24 ... $f31          |  8 bytes each
 *     +96  | ra (pc)                |  where fiber_switch_context returns
 *     +88  | gp                     |
 *     +80  | s8 (fp)                |
 *     +16  | s0 ... s7              |  8 bytes each
 *      +8  | fcsr (4) | pad (4)     |  FCSR & FIBER_FCSR_MODE
 *      +0  | data                   |  the value passed by the suspending side
 *          +------------------------+  <- saved sp (16-byte aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame with pc pointing
 * into fiber_trampoline (past its first instruction, see there), s0 = arg,
 * s1 = entry, s8 = 0, gp as the preparing code had it, the FCSR modes of the
 * thread that prepared it and every other slot zero; above it sit 16 zero bytes,
 * the bottom of the trampoline's frame:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *          | 0, 0                   |
 *          +------------------------+  <- sp seen by fiber_trampoline (16-aligned)
 *          | 0                      |  pad
 *          | 0 x 8                  |  $f24-$f31
 *          | fiber_trampoline + 4   |  pc (ra)
 *          | gp                     |
 *          | 0                      |  s8: ends frame-pointer chains
 *          | 0 x 6                  |  s2-s7
 *          | entry                  |  s1
 *          | arg                    |  s0
 *          | fcsr modes, 0          |
 *          | 0                      |  data
 *          +------------------------+  <- returned sp
 *
 * FIBER_SHARED_FP_ENV=1 leaves FCSR alone: faster, but a rounding-mode or
 * flush-to-zero change made in one fiber is then seen by every fiber on the
 * thread. FIBER_SWITCH_WITH_RET: MIPS has no return instruction of its own; a
 * return is `jr $ra`, and cores with a return-address prediction stack treat a
 * `jr` through $31 as a return (they pop the stack) and a `jr` through any other
 * register as an ordinary indirect jump. FIBER_SWITCH_WITH_RET=1 leaves through
 * `jr $ra`; the default loads the resume address into $t9 and leaves through
 * `jr $t9`, because the address belongs to a different call than the one that
 * brought us here and popping the prediction stack for it would mispredict. It
 * exists so that bench/ can measure the difference.
 */
#include "switch_mips64_n64_elf_gas.h"

#if !defined(__mips_hard_float)
#  error "arch/switch_mips64_n64_elf_gas.S saves FP registers: it needs a hard-float ABI"
#endif

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

/* DWARF register numbers: $n is n, $fn is 32 + n. CFA offsets are from the CFA,
 * which is sp + FIBER_FRAME_SIZE while the frame is allocated. */
#define CFI_SAVED(dwreg, off) .cfi_offset dwreg, (off) - FIBER_FRAME_SIZE

    .text
    .set    noreorder       /* every branch delay slot below is filled by hand */

/* void* fiber_switch_context(void* to [a0], void* data [a1]) -> from [v0] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 3
SYM(fiber_switch_context):
    .cfi_startproc
    daddiu  $sp, $sp, -FIBER_FRAME_SIZE
    .cfi_def_cfa_offset FIBER_FRAME_SIZE
    sd      $s0, FIBER_FRAME_S0($sp)
    sd      $s1, FIBER_FRAME_S1($sp)
    sd      $s2, FIBER_FRAME_S2($sp)
    sd      $s3, FIBER_FRAME_S3($sp)
    sd      $s4, FIBER_FRAME_S4($sp)
    sd      $s5, FIBER_FRAME_S5($sp)
    sd      $s6, FIBER_FRAME_S6($sp)
    sd      $s7, FIBER_FRAME_S7($sp)
    sd      $fp, FIBER_FRAME_FP($sp)
    sd      $gp, FIBER_FRAME_GP($sp)
    sd      $ra, FIBER_FRAME_RA($sp)
    CFI_SAVED(16, FIBER_FRAME_S0)
    CFI_SAVED(17, FIBER_FRAME_S1)
    CFI_SAVED(18, FIBER_FRAME_S2)
    CFI_SAVED(19, FIBER_FRAME_S3)
    CFI_SAVED(20, FIBER_FRAME_S4)
    CFI_SAVED(21, FIBER_FRAME_S5)
    CFI_SAVED(22, FIBER_FRAME_S6)
    CFI_SAVED(23, FIBER_FRAME_S7)
    CFI_SAVED(30, FIBER_FRAME_FP)
    CFI_SAVED(28, FIBER_FRAME_GP)
    CFI_SAVED(31, FIBER_FRAME_RA)
    sdc1    $f24, FIBER_FRAME_F24($sp)
    sdc1    $f25, FIBER_FRAME_F25($sp)
    sdc1    $f26, FIBER_FRAME_F26($sp)
    sdc1    $f27, FIBER_FRAME_F27($sp)
    sdc1    $f28, FIBER_FRAME_F28($sp)
    sdc1    $f29, FIBER_FRAME_F29($sp)
    sdc1    $f30, FIBER_FRAME_F30($sp)
    sdc1    $f31, FIBER_FRAME_F31($sp)
    CFI_SAVED(56, FIBER_FRAME_F24)
    CFI_SAVED(57, FIBER_FRAME_F25)
    CFI_SAVED(58, FIBER_FRAME_F26)
    CFI_SAVED(59, FIBER_FRAME_F27)
    CFI_SAVED(60, FIBER_FRAME_F28)
    CFI_SAVED(61, FIBER_FRAME_F29)
    CFI_SAVED(62, FIBER_FRAME_F30)
    CFI_SAVED(63, FIBER_FRAME_F31)
#if !FIBER_SHARED_FP_ENV
    cfc1    $t0, $31                        /* t0 = FCSR */
    lui     $t1, (FIBER_FCSR_MODE >> 16)
    ori     $t1, $t1, (FIBER_FCSR_MODE & 0xffff)
    and     $t2, $t0, $t1                   /* t2 = our modes */
    sw      $t2, FIBER_FRAME_FCSR($sp)
#endif
    sd      $a1, FIBER_FRAME_DATA($sp)

    /* The switch itself. From here on the frame being read is the target's; it has
     * the same layout, so the CFI above stays true. */
    move    $v0, $sp
    move    $sp, $a0

#if !FIBER_SHARED_FP_ENV
    /* Writing FCSR can stall the pipeline, and the modes rarely differ between
     * fibers: write it only when they changed. */
    lw      $t3, FIBER_FRAME_FCSR($sp)
    beq     $t3, $t2, 1f
    ld      $s0, FIBER_FRAME_S0($sp)        /* (delay slot) */
    lui     $t1, ((~(FIBER_FCSR_MODE | FIBER_FCSR_CAUSE) >> 16) & 0xffff)
    ori     $t1, $t1, (~(FIBER_FCSR_MODE | FIBER_FCSR_CAUSE) & 0xffff)
    and     $t0, $t0, $t1                   /* the status bits, cause cleared */
    or      $t0, $t0, $t3                   /* the target's modes */
    ctc1    $t0, $31
1:
#else
    ld      $s0, FIBER_FRAME_S0($sp)
#endif
    ld      $s1, FIBER_FRAME_S1($sp)
    ld      $s2, FIBER_FRAME_S2($sp)
    ld      $s3, FIBER_FRAME_S3($sp)
    ld      $s4, FIBER_FRAME_S4($sp)
    ld      $s5, FIBER_FRAME_S5($sp)
    ld      $s6, FIBER_FRAME_S6($sp)
    ld      $s7, FIBER_FRAME_S7($sp)
    ld      $fp, FIBER_FRAME_FP($sp)
    ld      $gp, FIBER_FRAME_GP($sp)
    ldc1    $f24, FIBER_FRAME_F24($sp)
    ldc1    $f25, FIBER_FRAME_F25($sp)
    ldc1    $f26, FIBER_FRAME_F26($sp)
    ldc1    $f27, FIBER_FRAME_F27($sp)
    ldc1    $f28, FIBER_FRAME_F28($sp)
    ldc1    $f29, FIBER_FRAME_F29($sp)
    ldc1    $f30, FIBER_FRAME_F30($sp)
    ldc1    $f31, FIBER_FRAME_F31($sp)
    /* Restored: unwinders must no longer look for them in the frame being freed. */
    .cfi_restore 16
    .cfi_restore 17
    .cfi_restore 18
    .cfi_restore 19
    .cfi_restore 20
    .cfi_restore 21
    .cfi_restore 22
    .cfi_restore 23
    .cfi_restore 30
    .cfi_restore 28
    .cfi_restore 56
    .cfi_restore 57
    .cfi_restore 58
    .cfi_restore 59
    .cfi_restore 60
    .cfi_restore 61
    .cfi_restore 62
    .cfi_restore 63
#if FIBER_SWITCH_WITH_RET
    ld      $ra, FIBER_FRAME_RA($sp)
    .cfi_restore 31
    jr      $ra
    daddiu  $sp, $sp, FIBER_FRAME_SIZE      /* (delay slot) */
#else
    /* The resume address was written by a different call than the one that brought
     * us here; a jump through $t9 leaves the return predictor out of it. */
    ld      $t9, FIBER_FRAME_RA($sp)
    .cfi_register 31, 25
    jr      $t9
    daddiu  $sp, $sp, FIBER_FRAME_SIZE      /* (delay slot) */
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the jump at the end of
 * fiber_switch_context: v0 = from, s0 = arg, s1 = entry, sp 16-byte aligned. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), @function
    .p2align 3
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined 31
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in fiber_switch_context's. */
    nop
.Lfiber_trampoline_start:
    move    $a0, $v0
    move    $t9, $s1                        /* PIC: the callee finds its gp from $t9 */
    jalr    $t9
    move    $a1, $s0                        /* (delay slot) */
    teq     $zero, $zero                    /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [a0], entry [a1], void* arg [a2],
 *                             void* stack_limit [a3], unused here) */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), @function
    .p2align 3
SYM(fiber_prepare_context):
    .cfi_startproc
    daddiu  $t0, $zero, -16
    and     $v0, $a0, $t0
    daddiu  $v0, $v0, -16                   /* trampoline's sp: 16-aligned, zeros above */
    sd      $zero, 0($v0)
    sd      $zero, 8($v0)
    daddiu  $v0, $v0, -FIBER_FRAME_SIZE     /* the saved sp of the fresh context */
    sd      $zero, FIBER_FRAME_DATA($v0)
    cfc1    $t0, $31
    lui     $t1, (FIBER_FCSR_MODE >> 16)
    ori     $t1, $t1, (FIBER_FCSR_MODE & 0xffff)
    and     $t0, $t0, $t1
    sw      $t0, FIBER_FRAME_FCSR($v0)
    sw      $zero, FIBER_FRAME_FCSR + 4($v0)
    sd      $a2, FIBER_FRAME_S0($v0)
    sd      $a1, FIBER_FRAME_S1($v0)
    sd      $zero, FIBER_FRAME_S2($v0)
    sd      $zero, FIBER_FRAME_S3($v0)
    sd      $zero, FIBER_FRAME_S4($v0)
    sd      $zero, FIBER_FRAME_S5($v0)
    sd      $zero, FIBER_FRAME_S6($v0)
    sd      $zero, FIBER_FRAME_S7($v0)
    sd      $zero, FIBER_FRAME_FP($v0)
    sd      $gp, FIBER_FRAME_GP($v0)
    sd      $zero, FIBER_FRAME_F24($v0)
    sd      $zero, FIBER_FRAME_F25($v0)
    sd      $zero, FIBER_FRAME_F26($v0)
    sd      $zero, FIBER_FRAME_F27($v0)
    sd      $zero, FIBER_FRAME_F28($v0)
    sd      $zero, FIBER_FRAME_F29($v0)
    sd      $zero, FIBER_FRAME_F30($v0)
    sd      $zero, FIBER_FRAME_F31($v0)
    sd      $zero, FIBER_FRAME_PAD($v0)
    /* The resume address, PC-relative: bal leaves the address of label 2 in ra
     * (this is a leaf, so ra waits in t1 meanwhile). */
    move    $t1, $ra
    .cfi_register 31, 13
    bal     2f
    nop                                     /* (delay slot) */
2:  daddiu  $t0, $ra, .Lfiber_trampoline_start - 2b
    move    $ra, $t1
    .cfi_restore 31
    jr      $ra
    sd      $t0, FIBER_FRAME_PC($v0)        /* (delay slot) */
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
