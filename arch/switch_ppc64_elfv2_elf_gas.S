/* Context switch for 64-bit POWER, ELF V2 ABI (ppc64le), ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_ppc64_elfv2_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg) -> handle   build a fresh context
 *   fiber_switch_context(to, data)               -> from     switch, passing data
 *
 * What a callee must preserve, per the 64-Bit ELF V2 ABI Specification, Power
 * Architecture (OpenPOWER ABI for Linux Supplement), chapter 2 "Low-Level System
 * Information", section 2.2.1 "Registers" (tables "Register Roles", "Floating-Point
 * Register Roles for Binary Floating-Point Types", "... for Decimal Floating-Point
 * Types", "Vector Register Roles") and 2.2.1.2 "Limited-Access Bits":
 *   - r14-r31 and the stack pointer r1 ("Nonvolatile");
 *   - r2, the TOC pointer: nonvolatile between functions of one module, saved and
 *     restored by linker-inserted code around calls into another module. The
 *     context we resume may have called us from another module than the one that
 *     calls us now, so each context keeps its own r2;
 *   - CR fields CR2, CR3 and CR4 ("The value on entry must be restored on exit");
 *   - f14-f31, the classic FPRs, i.e. doubleword 0 of VSR14-VSR31 (the other half
 *     of those VSRs, and VSR0-13, are volatile);
 *   - v20-v31 (VSR52-VSR63), all 128 bits;
 *   - the "limited-access" bits, which a function may change only if that is its
 *     documented purpose (fesetround, feenableexcept...): FPSCR [VE] [OE] [UE] [ZE]
 *     [XE] (exception enables), [RN] (binary rounding mode), [DRN] (decimal
 *     rounding mode), and VSCR [NJ] (vector non-Java mode). A switch must therefore
 *     hand each context back the values it left with. NI (non-IEEE mode) shares
 *     an FPSCR field with XE and RN and is switched with them. The FPSCR status
 *     bits (FX, FEX, the sticky exception bits, FPRF...) and VSCR [SAT] are
 *     volatile: not switched, like FPSR on AArch64.
 * VRSAVE is "Reserved" in ELFv2 ("should not be read or written by application
 * software"), and GCC does not maintain it on Linux (-mvrsave is off): untouched.
 * LR is volatile, but it holds where the suspended context resumes.
 *
 * Instructions: Power ISA 2.07 (POWER8), the floor of every ELFv2 ABI revision
 * and Debian's ppc64el baseline (-mcpu=power8): the direct moves mffprd, mfvrwz
 * and mtvrwz, and mtfsf with W=1 (ISA 2.05) to reach DRN.
 *
 * A suspended context. r1 points at the ABI's back chain, so the handle is r1 + 32
 * (FIBER_FRAME_HANDLE), where the data slot lives. Addresses grow upwards; every
 * offset is named in arch/switch_ppc64_elfv2_elf_gas.h and checked from C++:
 *
 *          +------------------------+
 *    +560  | LR save = resume pc    |  in the caller's frame header, where the ABI
 *    +552  | (caller's CR save...)  |  has every function save its LR
 *    +544  | (caller's back chain)  |  <- sp + 544 = the caller's r1
 *          +------------------------+
 *    +352  | v20 .. v31   (12 x 16) |  16-byte aligned
 *    +208  | f14 .. f31   (18 x 8)  |
 *     +64  | r14 .. r31   (18 x 8)  |
 *     +60  | VSCR (4)               |  only NJ is restored
 *     +56  | CR (4)                 |  only CR2-CR4 are restored
 *     +48  | r2 (TOC)               |
 *     +40  | FPSCR (8, as mffs)     |  only the limited-access fields are restored
 *     +32  | data                   |  <- the handle (sp + FIBER_FRAME_HANDLE)
 *     +24  | TOC save    \          |
 *     +16  | LR save      | header  |  ABI minimum frame: reserved for functions
 *      +8  | CR save word |         |  this frame calls (none)
 *      +0  | back chain  /          |  = sp + 544
 *          +------------------------+  <- saved r1 (16-byte aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame, zeroed, with
 * r14 = arg, r15 = entry, r2 = the preparing side's TOC and the FP control state
 * (FPSCR, VSCR) of the thread that prepared it. Above it sits a minimum frame in
 * which fiber_trampoline runs; its LR save doubleword is the resume pc:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *     +24  | 0 (TOC save)           |
 *     +16  | fiber_trampoline       |  the switch frame's resume pc
 *      +8  | 0 (CR save word)       |
 *      +0  | 0 (back chain)         |  ends back-chain walks
 *          +------------------------+  <- r1 seen by fiber_trampoline (16-aligned)
 *          | 0, data, FPSCR, r2=TOC |
 *          | CR=0, VSCR             |
 *          | r14=arg, r15=entry, 0..|
 *          | f14..f31 = 0           |
 *          | v20..v31 = 0           |
 *          | back chain -> above    |
 *          +------------------------+  <- sp; returned handle = sp + 32
 *
 * FIBER_SHARED_FP_ENV=1 leaves FPSCR and VSCR alone: faster (mffs and mfvscr are
 * slow, mtfsf and mtvscr slower), but a rounding-mode or exception-enable change
 * made in one fiber is then seen by every fiber on the thread.
 * FIBER_SWITCH_WITH_RET=1 returns with `blr` instead of `bctr`; it exists only so
 * bench/ can measure the difference: blr pops the link-stack (return-address)
 * predictor, whose top entry belongs to the call that brought us here, not to the
 * call in the context we resume, so it mispredicts; bctr goes through the count
 * cache (indirect-branch predictor) instead.
 */
#include "switch_ppc64_elfv2_elf_gas.h"

#if !defined(_CALL_ELF) || _CALL_ELF != 2
#  error "fiber: this file is for the 64-bit ELF V2 ABI (_CALL_ELF == 2)"
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

/* DWARF register numbers (as GCC emits them for POWER): r0-r31 = 0-31, f0-f31 =
 * 32-63, LR = 65, CR2-CR4 = 70-72, v0-v31 = 77-108. */
#define DW_LR 65
#define DW_CR2 70

/* The FPSCR limited-access bits, in the 64-bit image mffs returns: VE OE UE ZE XE
 * NI RN in the low byte (FPSCR fields 14-15, mtfsf 0x03 with W=0), DRN in bits
 * 32-34 (in field 7 of the upper word, mtfsf 0x01 with W=1). VSCR [NJ] = 0x10000. */
#define FPSCR_CONTROL_LOW 0xff
#define VSCR_NJ_HI 0x0001       /* andis./xoris immediate for 0x00010000 */

/* v(n) and v(n+1) to and from their slots, with their CFI. */
    .macro VSAVE2 n, base
    li      %r11, FIBER_FRAME_V20 + 16 * (\n - 20)
    li      %r12, FIBER_FRAME_V20 + 16 * (\n - 19)
    stvx    \n, \base, %r11
    stvx    \n + 1, \base, %r12
    .cfi_offset 77 + \n, FIBER_FRAME_V20 + 16 * (\n - 20) - FIBER_FRAME_SIZE
    .cfi_offset 78 + \n, FIBER_FRAME_V20 + 16 * (\n - 19) - FIBER_FRAME_SIZE
    .endm
    .macro VLOAD2 n
    li      %r11, FIBER_FRAME_V20 + 16 * (\n - 20)
    li      %r12, FIBER_FRAME_V20 + 16 * (\n - 19)
    lvx     \n, %r1, %r11
    lvx     \n + 1, %r1, %r12
    .endm

    .abiversion 2
    .text

/* void* fiber_switch_context(void* to [r3], void* data [r4]) -> from [r3]
 * Needs no TOC of its own, so it has a single entry point (st_other 0): it returns
 * with r2 as the resumed context had it when it called us, which is what that
 * caller expects whether it called from this module or through a PLT stub. */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 5
SYM(fiber_switch_context):
    .cfi_startproc
    mflr    %r0
    std     %r0, 16(%r1)            /* LR save doubleword of our caller's frame */
    .cfi_offset DW_LR, 16
    stdu    %r1, -FIBER_FRAME_SIZE(%r1)
    .cfi_def_cfa_offset FIBER_FRAME_SIZE
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    std     %r\n, FIBER_FRAME_R14 + 8 * (\n - 14)(%r1)
    .cfi_offset \n, FIBER_FRAME_R14 + 8 * (\n - 14) - FIBER_FRAME_SIZE
    .endr
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    stfd    %f\n, FIBER_FRAME_F14 + 8 * (\n - 14)(%r1)
    .cfi_offset 32 + \n, FIBER_FRAME_F14 + 8 * (\n - 14) - FIBER_FRAME_SIZE
    .endr
    /* stvx takes no displacement: a pair at a time, two index registers. */
    .irp    n, 20,22,24,26,28,30
    VSAVE2  \n, %r1
    .endr
    mfcr    %r0
    stw     %r0, FIBER_FRAME_CR(%r1)
    .cfi_offset DW_CR2, FIBER_FRAME_CR - FIBER_FRAME_SIZE
    .cfi_offset DW_CR2 + 1, FIBER_FRAME_CR - FIBER_FRAME_SIZE
    .cfi_offset DW_CR2 + 2, FIBER_FRAME_CR - FIBER_FRAME_SIZE
    std     %r2, FIBER_FRAME_R2(%r1)
    .cfi_offset 2, FIBER_FRAME_R2 - FIBER_FRAME_SIZE
    std     %r4, FIBER_FRAME_HANDLE + FIBER_FRAME_DATA(%r1)
#if !FIBER_SHARED_FP_ENV
    mffs    %f0                     /* f0 and v0 are volatile */
    stfd    %f0, FIBER_FRAME_FPSCR(%r1)
    mfvscr  %v0                     /* VSCR lands in word 3 */
    vspltw  %v0, %v0, 3
    mfvrwz  %r9, %v0                /* r9 = our VSCR */
    stw     %r9, FIBER_FRAME_VSCR(%r1)
#endif

    /* The switch itself: r1 goes from one complete frame to another, so a signal
     * taken anywhere here sees a valid back chain. The target's frame has the same
     * layout, so the CFI above stays true for it. */
    addi    %r10, %r1, FIBER_FRAME_HANDLE
    addi    %r1, %r3, -FIBER_FRAME_HANDLE
    mr      %r3, %r10               /* return value: our handle */

#if !FIBER_SHARED_FP_ENV
    /* mtfsf and mtvscr are expensive and the values rarely differ between fibers:
     * write only the limited-access fields that changed. */
    mffprd  %r8, %f0                /* our FPSCR */
    ld      %r11, FIBER_FRAME_FPSCR(%r1)
    xor     %r0, %r8, %r11
    andi.   %r12, %r0, FPSCR_CONTROL_LOW
    rldicl  %r0, %r0, 32, 61        /* DRN difference */
    or.     %r0, %r0, %r12
    beq     1f
    lfd     %f0, FIBER_FRAME_FPSCR(%r1)
    mtfsf   0x03, %f0               /* VE OE UE ZE XE NI RN */
    mtfsf   0x01, %f0, 0, 1         /* DRN */
1:
    lwz     %r11, FIBER_FRAME_VSCR(%r1)
    xor     %r0, %r9, %r11
    andis.  %r0, %r0, VSCR_NJ_HI
    beq     2f
    xoris   %r9, %r9, VSCR_NJ_HI    /* our VSCR with NJ flipped; SAT stays */
    mtvrwz  %v0, %r9
    vspltw  %v0, %v0, 1             /* mtvscr reads word 3 */
    mtvscr  %v0
2:
#endif
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      %r\n, FIBER_FRAME_R14 + 8 * (\n - 14)(%r1)
    .endr
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    lfd     %f\n, FIBER_FRAME_F14 + 8 * (\n - 14)(%r1)
    .endr
    .irp    n, 20,22,24,26,28,30
    VLOAD2  \n
    .endr
    lwz     %r0, FIBER_FRAME_CR(%r1)
    mtcrf   0x20, %r0               /* one field each: mtocrf, cheaper than a */
    mtcrf   0x10, %r0               /* multi-field mtcrf */
    mtcrf   0x08, %r0
    ld      %r2, FIBER_FRAME_R2(%r1)
    ld      %r0, FIBER_FRAME_PC(%r1)
    /* Restored: unwinders must no longer look for them in the frame being freed,
     * which is below r1 once it moves up, where a signal handler's frame may land
     * before the branch. (LR stays where it is: in the caller's frame.) */
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .cfi_restore \n
    .cfi_restore 32 + \n
    .endr
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    .cfi_restore 77 + \n
    .endr
    .cfi_restore 2
    .cfi_restore DW_CR2
    .cfi_restore DW_CR2 + 1
    .cfi_restore DW_CR2 + 2
    addi    %r1, %r1, FIBER_FRAME_SIZE
    .cfi_def_cfa_offset 0
#if FIBER_SWITCH_WITH_RET
    mtlr    %r0
    blr
#else
    /* The resume address belongs to a different call than the one that brought
     * us here: an indirect branch through CTR leaves the link stack out of it. */
    mtctr   %r0
    bctr
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the bctr at the end of
 * fiber_switch_context: r3 = from, r14 = arg, r15 = entry, r1 16-byte aligned
 * pointing at a zeroed minimum frame. Its address is what C++ compares with
 * _Unwind_FindEnclosingFunction (on ELFv2 a function pointer is the global entry
 * point, which is where this symbol and its FDE start). */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), @function
    .p2align 4
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined DW_LR
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in the function before it. */
    nop
.Lfiber_trampoline_start:
    mr      %r4, %r14
    mr      %r12, %r15              /* an indirect call enters at the global entry */
    mtctr   %r12                    /* point, which finds its TOC from r12 */
    bctrl
    trap                            /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [r3], entry [r4], void* arg [r5],
 *                             void* stack_limit [r6], unused here)
 * Uses the TOC to find fiber_trampoline, so it has the ABI's two entry points: the
 * global one derives r2 from r12, a caller in this module enters after that. */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), @function
    .p2align 4
SYM(fiber_prepare_context):
    .cfi_startproc
0:  addis   %r2, %r12, .TOC.-0b@ha
    addi    %r2, %r2, .TOC.-0b@l
    .localentry SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)
    clrrdi  %r3, %r3, 4
    addi    %r3, %r3, -FIBER_TRAMPOLINE_FRAME_SIZE  /* r1 of fiber_trampoline */
    addi    %r10, %r3, -FIBER_FRAME_SIZE            /* sp of the fresh context */
    /* Zero both frames. */
    li      %r0, 0
    li      %r11, (FIBER_FRAME_SIZE + FIBER_TRAMPOLINE_FRAME_SIZE) / 8
    mtctr   %r11
    addi    %r11, %r10, -8
1:  stdu    %r0, 8(%r11)
    bdnz    1b
    std     %r3, 0(%r10)            /* back chain; the trampoline's stays 0 */
    addis   %r9, %r2, .Lfiber_trampoline_start@toc@ha
    addi    %r9, %r9, .Lfiber_trampoline_start@toc@l
    std     %r9, FIBER_FRAME_PC(%r10)
    std     %r5, FIBER_FRAME_R14(%r10)
    std     %r4, FIBER_FRAME_R14 + 8(%r10)
    std     %r2, FIBER_FRAME_R2(%r10)
    mffs    %f0
    stfd    %f0, FIBER_FRAME_FPSCR(%r10)
    mfvscr  %v0
    vspltw  %v0, %v0, 3
    mfvrwz  %r9, %v0
    stw     %r9, FIBER_FRAME_VSCR(%r10)
    addi    %r3, %r10, FIBER_FRAME_HANDLE
    blr
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
