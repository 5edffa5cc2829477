/* Context switch for s390x (64-bit z/Architecture), ELF ABI, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_s390x_sysv_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg) -> sp   build a fresh context
 *   fiber_switch_context(to, data)               -> from switch, passing data
 *
 * What a callee must preserve, per the "ELF Application Binary Interface s390x
 * Supplement" (IBM, version 1.7), section 1.2.1 "Registers", "Register
 * Preservation Rules" (table "Register usage across function calls"):
 *   - "Registers r6 through r13, r15, and f8 through f15 are nonvolatile";
 *     r14 (return address) is volatile, but it holds where the suspended context
 *     resumes. The left halves of v8-v15 are f8-f15 and so are saved with them;
 *     everything else of the vector registers is volatile.
 *   - "Access registers a0 and a1 are reserved" (they hold the thread pointer):
 *     not touched. The program mask must be zero at entry and exit: not touched.
 *   - r15 "shall maintain an 8-byte alignment"; each frame is a multiple of 8
 *     bytes long (section 1.2.2 "The Stack Frame").
 *   - The FPC (floating-point control register: IEEE exception masks, flags,
 *     data-exception code, BFP and DFP rounding modes). The supplement lists fpc
 *     among the processor state but gives it no rule in the preservation table;
 *     it is silent. We follow C11 7.6, where "a function call does not alter its
 *     caller's floating-point control modes ... unless the function is so
 *     documented", which is also IBM's own linkage rule for the FPC on z/OS
 *     (MVS Assembler Services Guide, "Linkage convention for the floating point
 *     control register": non-volatile except the IEEE flags and the DXC). So the
 *     control fields are switched: the masks (FPC byte 0) and the rounding modes
 *     (byte 3); the flags (byte 1) and the DXC (byte 2) stay with the thread, as
 *     the AArch64 port leaves FPSR alone. (Field layout: z/Architecture Principles
 *     of Operation, SA22-7832, "Floating-Point-Control (FPC) Register".)
 *
 * The stack frame (supplement, "The Stack Frame"): every caller provides, at its
 * r15, a 160-byte register save area that "may be used by the called function in
 * any way", except its first doubleword (the back-chain slot), which "is
 * preserved across function calls". The switch therefore does what a compiled
 * function does: it stores r6-r15 in their customary slots of its caller's save
 * area (stmg %r6,%r15,48(%r15)), then lowers r15 by FIBER_FRAME_SIZE for a frame
 * of its own holding data, the FPC and f8-f15. The saved stack pointer is that
 * frame's; its first doubleword is the data slot (FIBER_FRAME_DATA == 0), not a
 * back chain: back chains are optional and off by default on Linux (the switch is
 * a leaf and no frame points to it).
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in arch/switch_s390x_sysv_elf_gas.h and checked from C++):
 *
 *          +------------------------+  <- sp + 240: the CFA
 *    +208  | f0, f2, f4, f6 slots   |  (unused)
 *    +200  | r15                    |  = sp + 80, the suspended caller's r15
 *    +192  | r14 (pc)               |  where fiber_switch_context returns
 *    +128  | r6 ... r13             |
 *     +96  | r2 ... r5 slots        |  (unused)
 *     +88  | unused                 |
 *     +80  | back chain (caller's)  |  never written by the switch
 *          +------------------------+  <- sp + 80: the caller's r15 at its call
 *     +72  | f15                    |
 *          | ...                    |
 *     +16  | f8                     |
 *     +12  | pad (4)                |
 *      +8  | fpc (4)                |
 *      +0  | data                   |  the value passed by the suspending side
 *          +------------------------+  <- saved sp
 *
 * A fresh context from fiber_prepare_context is the same two areas, 240 bytes
 * below stack_top rounded down to 16; the upper one is the register save area
 * that fiber_trampoline hands to entry, as the ABI requires of any caller, with a
 * zero back chain:
 *
 *          +------------------------+  <- stack_top rounded down to 16 (the CFA)
 *          | 0                      |  f0-f6 slots
 *          | sp + 80                |  r15: the trampoline's stack pointer
 *          | fiber_trampoline       |  r14 (pc)
 *          | 0 ... 0                |  r13 ... r9
 *          | entry                  |  r8
 *          | arg                    |  r7
 *          | 0                      |  r6
 *          | 0 ... 0                |  r2-r5 slots, unused
 *          | 0                      |  back chain: none
 *          +------------------------+  <- r15 seen by fiber_trampoline (16-aligned)
 *          | 0 ... 0                |  f15 ... f8
 *          | fpc                    |  the preparing thread's
 *          | 0                      |  data
 *          +------------------------+  <- returned sp
 *
 * FIBER_SHARED_FP_ENV=1 leaves the FPC alone: faster, but a rounding-mode or mask
 * change made in one fiber is then seen by every fiber on the thread.
 *
 * FIBER_SWITCH_WITH_RET: z/Architecture has no return instruction and defines no
 * branch hint for returns: a return is BCR 15 through a register (`br %r14`), like
 * any indirect branch. FIBER_SWITCH_WITH_RET=1 returns with `br %r14`, the very
 * idiom a compiler uses, which a core whose branch predictor pairs calls with
 * returns through the link register might predict from the wrong call. The
 * default copies the address to r1 and branches through it, which no such
 * predictor would treat as a return. Where the core has no such predictor the two
 * are equivalent (the default costs one lgr); the macro exists so bench/ can
 * measure the difference.
 */
#include "switch_s390x_sysv_elf_gas.h"

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

#if !defined(__s390x__)
#  error "this file implements the 64-bit s390x ABI"
#endif

/* The FPC's control fields, as the low word of a register: IEEE masks (bits 0-7
 * in the architecture's numbering, the top byte here) and the DFP and BFP
 * rounding modes (bits 24-31, the low byte). The rest is the IEEE flags and the
 * data-exception code. Unassigned bits of those bytes are always zero. */
#define FIBER_FPC_CONTROL 0xff0000ff

/* The slot of register n in the save area above the switch's frame. */
#define FIBER_FRAME_GPR(n) (FIBER_FRAME_R6 + 8 * ((n) - 6))

/* DWARF numbers of f8-f15 (supplement, "DWARF Register Numbers": 16-31 are f0, f2,
 * f4, f6, f1, f3, f5, f7, f8, f10, f12, f14, f9, f11, f13, f15). CFI directives
 * name them by number: GNU as 2.40 maps "%fN" to 16 + N, which is the ABI's
 * number for f8 only. */
#define DW_F8 24
#define DW_F9 28
#define DW_F10 25
#define DW_F11 29
#define DW_F12 26
#define DW_F13 30
#define DW_F14 27
#define DW_F15 31

/* The CFA is r15 + 160 at entry (the caller's r15 plus its register save area),
 * FIBER_FRAME_EXTENT bytes above the switch's own frame. */
#define CFA_OFFSET(slot) ((slot) - FIBER_FRAME_EXTENT)

    .text

/* void* fiber_switch_context(void* to [r2], void* data [r3]) -> from [r2] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 4
SYM(fiber_switch_context):
    .cfi_startproc
    stmg    %r6, %r15, FIBER_FRAME_R6 - FIBER_FRAME_SIZE(%r15)
    .cfi_offset %r6, CFA_OFFSET(FIBER_FRAME_GPR(6))
    .cfi_offset %r7, CFA_OFFSET(FIBER_FRAME_GPR(7))
    .cfi_offset %r8, CFA_OFFSET(FIBER_FRAME_GPR(8))
    .cfi_offset %r9, CFA_OFFSET(FIBER_FRAME_GPR(9))
    .cfi_offset %r10, CFA_OFFSET(FIBER_FRAME_GPR(10))
    .cfi_offset %r11, CFA_OFFSET(FIBER_FRAME_GPR(11))
    .cfi_offset %r12, CFA_OFFSET(FIBER_FRAME_GPR(12))
    .cfi_offset %r13, CFA_OFFSET(FIBER_FRAME_GPR(13))
    .cfi_offset %r14, CFA_OFFSET(FIBER_FRAME_GPR(14))
    .cfi_offset %r15, CFA_OFFSET(FIBER_FRAME_GPR(15))
    aghi    %r15, -FIBER_FRAME_SIZE
    .cfi_adjust_cfa_offset FIBER_FRAME_SIZE
    std     %f8, FIBER_FRAME_F8(%r15)
    std     %f9, FIBER_FRAME_F9(%r15)
    std     %f10, FIBER_FRAME_F10(%r15)
    std     %f11, FIBER_FRAME_F11(%r15)
    std     %f12, FIBER_FRAME_F12(%r15)
    std     %f13, FIBER_FRAME_F13(%r15)
    std     %f14, FIBER_FRAME_F14(%r15)
    std     %f15, FIBER_FRAME_F15(%r15)
    .cfi_offset DW_F8, CFA_OFFSET(FIBER_FRAME_F8)
    .cfi_offset DW_F9, CFA_OFFSET(FIBER_FRAME_F9)
    .cfi_offset DW_F10, CFA_OFFSET(FIBER_FRAME_F10)
    .cfi_offset DW_F11, CFA_OFFSET(FIBER_FRAME_F11)
    .cfi_offset DW_F12, CFA_OFFSET(FIBER_FRAME_F12)
    .cfi_offset DW_F13, CFA_OFFSET(FIBER_FRAME_F13)
    .cfi_offset DW_F14, CFA_OFFSET(FIBER_FRAME_F14)
    .cfi_offset DW_F15, CFA_OFFSET(FIBER_FRAME_F15)
#if !FIBER_SHARED_FP_ENV
    efpc    %r0
    st      %r0, FIBER_FRAME_FPC(%r15)
#endif
    stg     %r3, FIBER_FRAME_DATA(%r15)

    /* The switch itself. The target's frame and save area have the same layout,
     * so the CFI above stays true for them. */
    lgr     %r1, %r15
    lgr     %r15, %r2
    lgr     %r2, %r1

#if !FIBER_SHARED_FP_ENV
    /* Setting the FPC can serialize the FP pipeline, and its control fields
     * rarely differ between fibers: set it only when they changed, flipping just
     * the control bits that differ, so the current flags and DXC stay. */
    l       %r1, FIBER_FRAME_FPC(%r15)
    xr      %r1, %r0
    nilf    %r1, FIBER_FPC_CONTROL
    je      1f
    xr      %r0, %r1
    sfpc    %r0
1:
#endif
    ld      %f8, FIBER_FRAME_F8(%r15)
    ld      %f9, FIBER_FRAME_F9(%r15)
    ld      %f10, FIBER_FRAME_F10(%r15)
    ld      %f11, FIBER_FRAME_F11(%r15)
    ld      %f12, FIBER_FRAME_F12(%r15)
    ld      %f13, FIBER_FRAME_F13(%r15)
    ld      %f14, FIBER_FRAME_F14(%r15)
    ld      %f15, FIBER_FRAME_F15(%r15)
    /* r15 comes back too: the saved sp + FIBER_FRAME_SIZE. */
    lmg     %r6, %r15, FIBER_FRAME_R6(%r15)
    .cfi_def_cfa_offset FIBER_FRAME_SAVE_AREA_SIZE
    .cfi_restore %r6
    .cfi_restore %r7
    .cfi_restore %r8
    .cfi_restore %r9
    .cfi_restore %r10
    .cfi_restore %r11
    .cfi_restore %r12
    .cfi_restore %r13
    .cfi_restore %r14
    .cfi_restore %r15
    .cfi_restore DW_F8
    .cfi_restore DW_F9
    .cfi_restore DW_F10
    .cfi_restore DW_F11
    .cfi_restore DW_F12
    .cfi_restore DW_F13
    .cfi_restore DW_F14
    .cfi_restore DW_F15
#if FIBER_SWITCH_WITH_RET
    br      %r14
#else
    /* r14 was set by a different call than the one that brought us here; branch
     * through another register so that nothing takes this for that call's return. */
    lgr     %r1, %r14
    br      %r1
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the branch at the end of
 * fiber_switch_context: r2 = from, r7 = arg, r8 = entry, r15 16-aligned with a
 * register save area (zero back chain) for entry to use. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), @function
    .p2align 4
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined %r14
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in the function before it. */
    nopr %r0
.Lfiber_trampoline_start:
    lgr     %r3, %r7
    basr    %r14, %r8
    .short  0                       /* entry never returns: an invalid opcode */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [r2], entry [r3], void* arg [r4],
 *                             void* stack_limit [r5], unused here) */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), @function
    .p2align 4
SYM(fiber_prepare_context):
    .cfi_startproc
    nill    %r2, 0xfff0             /* round down to 16 */
    aghi    %r2, -FIBER_FRAME_EXTENT
    xc      0(FIBER_FRAME_EXTENT, %r2), 0(%r2)   /* zero both areas */
    efpc    %r0
    st      %r0, FIBER_FRAME_FPC(%r2)
    stg     %r4, FIBER_FRAME_GPR(7)(%r2)
    stg     %r3, FIBER_FRAME_GPR(8)(%r2)
    larl    %r1, .Lfiber_trampoline_start
    stg     %r1, FIBER_FRAME_GPR(14)(%r2)
    la      %r1, FIBER_FRAME_SAVE_AREA(%r2)
    stg     %r1, FIBER_FRAME_GPR(15)(%r2)
    br      %r14
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
