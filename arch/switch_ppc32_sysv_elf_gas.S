/* Context switch for 32-bit PowerPC, System V ABI, ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_ppc32_sysv_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg) -> handle   build a fresh context
 *   fiber_switch_context(to, data)               -> from     switch, passing data
 *
 * What a callee must preserve, per the System V Application Binary Interface,
 * PowerPC Processor Supplement (September 1995), chapter 3 "Low-Level System
 * Information", "Function Calling Sequence": "Registers" and "The Stack Frame":
 *   - r14-r31 (nonvolatile) and the stack pointer r1;
 *   - CR fields CR2-CR4 (nonvolatile);
 *   - f14-f31 (nonvolatile);
 *   - not r2 (reserved for the system: the thread pointer on Linux) nor r13 (the
 *     small-data-area pointer): both are fixed for the whole thread or process,
 *     so this code never writes them.
 * The 1995 supplement predates AltiVec; its extension (the AltiVec Technology
 * Programming Interface Manual's ABI chapter, implemented by GCC's -mabi=altivec,
 * and repeated by the 64-bit supplement's "processors with the VMX feature"
 * table) makes v20-v31 and VRSAVE non-volatile. See AltiVec below.
 * The FPSCR is volatile in that ABI. The library's policy (see FIBER_SHARED_FP_ENV)
 * is nevertheless that each fiber keeps its own FP control state, as C's
 * fesetround() means it and as the later ABIs (ELFv2's "limited-access" bits)
 * codify: the switch hands each context back its FPSCR control fields, VE OE UE
 * ZE XE (exception enables), NI (non-IEEE mode) and RN (rounding mode), i.e.
 * FPSCR fields 6 and 7. The status bits are not switched.
 *
 * Floating point. Debian's powerpc compiler is hard-float (FPRs, no __NO_FPRS__,
 * no _SOFT_FLOAT): this file requires it. e500/SPE targets (no FPRs, 64-bit GPRs
 * whose upper halves are callee-saved) are refused at build time.
 *
 * AltiVec. Debian's powerpc compiler targets the generic PowerPC (no -mcpu, no
 * __ALTIVEC__, -mabi=no-altivec): code it builds never holds values in vector
 * registers. Code built with -maltivec (which turns on -mabi=altivec) may keep
 * values in v20-v31 across a call that switches fibers, even if this library
 * was built without it. So, FIBER_PPC_VMX:
 *   1  v20-v31 and VRSAVE are always switched (the default when __ALTIVEC__:
 *      this build requires an AltiVec CPU anyway);
 *   2  switched when the CPU has AltiVec, as the kernel reports in AT_HWCAP, read
 *      from the copy glibc keeps in the thread control block (at -0x7040(r2)),
 *      as GCC's __builtin_cpu_supports does; like GCC, this object then refers to
 *      __parse_hwcap_and_convert_at_platform so that a C library without that
 *      copy (glibc < 2.23, others) fails at link time instead of reading garbage
 *      (the default otherwise: a G3 has no AltiVec, a G4 has);
 *   0  never (for a non-glibc system whose code never uses AltiVec).
 * The frame has room for them in every case.
 *
 * Position-independent: fiber_prepare_context finds fiber_trampoline relative to
 * its own address (bcl 20,31 / mflr), so there is no text relocation.
 *
 * A suspended context. r1 points at the ABI's back chain, so the handle is r1 + 8
 * (FIBER_FRAME_HANDLE), where the data slot lives. Addresses grow upwards; every
 * offset is named in arch/switch_ppc32_sysv_elf_gas.h and checked from C++:
 *
 *          +------------------------+
 *    +452  | LR save = resume pc    |  in the caller's frame header, where the ABI
 *    +448  | (caller's back chain)  |  has every function save its LR
 *          +------------------------+  <- sp + 448 = the caller's r1
 *    +256  | v20 .. v31   (12 x 16) |  16-byte aligned; AltiVec only
 *    +248  | pad                    |
 *    +104  | f14 .. f31   (18 x 8)  |
 *     +32  | r14 .. r31   (18 x 4)  |
 *     +24  | VRSAVE | pad           |  AltiVec only
 *     +16  | FPSCR (8, as mffs)     |  only fields 6-7 are restored
 *     +12  | CR                     |  only CR2-CR4 are restored
 *      +8  | data                   |  <- the handle (sp + FIBER_FRAME_HANDLE)
 *      +4  | LR save word           |  reserved for functions this frame calls
 *      +0  | back chain             |  = sp + 448
 *          +------------------------+  <- saved r1 (16-byte aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame, zeroed, with
 * r14 = arg, r15 = entry and the FPSCR of the thread that prepared it. Above it
 * sits a minimum frame in which fiber_trampoline runs; its LR save word is the
 * resume pc:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *      +8  | 0, 0 (padding)         |
 *      +4  | fiber_trampoline       |  the switch frame's resume pc
 *      +0  | 0 (back chain)         |  ends back-chain walks
 *          +------------------------+  <- r1 seen by fiber_trampoline (16-aligned)
 *          | 0, data, CR=0, FPSCR   |
 *          | r14=arg, r15=entry, 0..|
 *          | back chain -> above    |
 *          +------------------------+  <- sp; returned handle = sp + 8
 *
 * FIBER_SHARED_FP_ENV=1 leaves the FPSCR alone: faster (mffs and mtfsf are slow),
 * but a rounding-mode or exception-enable change made in one fiber is then seen
 * by every fiber on the thread. FIBER_SWITCH_WITH_RET=1 returns with `blr` instead
 * of `bctr`; it exists only so bench/ can measure the difference: blr pops the
 * link-stack (return-address) predictor, whose top entry belongs to the call that
 * brought us here, not to the call in the context we resume, so it mispredicts;
 * bctr goes through the indirect-branch predictor instead (where there is one).
 */
#include "switch_ppc32_sysv_elf_gas.h"

#ifdef __powerpc64__
#  error "fiber: this file is for 32-bit PowerPC"
#endif

#if defined(__NO_FPRS__) || defined(_SOFT_FLOAT) || defined(__SPE__)
#  error "fiber: this switch needs the classic FPRs (hard float, not e500/SPE); use FIBER_BACKEND=ucontext"
#endif

#ifndef FIBER_SHARED_FP_ENV
#  define FIBER_SHARED_FP_ENV 0
#endif
#ifndef FIBER_SWITCH_WITH_RET
#  define FIBER_SWITCH_WITH_RET 0
#endif
#ifndef FIBER_PPC_VMX
#  ifdef __ALTIVEC__
#    define FIBER_PPC_VMX 1
#  else
#    define FIBER_PPC_VMX 2
#  endif
#endif
/* bench/ assembles this file again with a suffix to link several variants at once. */
#ifndef FIBER_ASM_SUFFIX
#  define FIBER_ASM_SUFFIX
#endif
#define FIBER_CAT2(a, b) a##b
#define FIBER_CAT(a, b) FIBER_CAT2(a, b)
#define SYM(name) FIBER_CAT(name, FIBER_ASM_SUFFIX)

/* glibc's copy of AT_HWCAP in the thread control block, and its AltiVec bit. */
#define TCB_HWCAP -0x7040
#define PPC_FEATURE_HAS_ALTIVEC_HI 0x1000   /* 0x10000000 >> 16 */

/* The FPSCR word of what stfd stores after mffs. */
#ifdef __LITTLE_ENDIAN__
#  define FPSCR_WORD 0
#else
#  define FPSCR_WORD 4
#endif

/* DWARF register numbers (as GCC emits them for PowerPC): r0-r31 = 0-31, f0-f31 =
 * 32-63, LR = 65, CR2 = 70 (its slot stands for the whole nonvolatile CR),
 * v0-v31 = 77-108. */
#define DW_LR 65
#define DW_CR2 70

    .text

/* void* fiber_switch_context(void* to [r3], void* data [r4]) -> from [r3] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 5
SYM(fiber_switch_context):
    .cfi_startproc
    mflr    %r0
    stw     %r0, 4(%r1)             /* LR save word of our caller's frame */
    .cfi_offset DW_LR, 4
    stwu    %r1, -FIBER_FRAME_SIZE(%r1)
    .cfi_def_cfa_offset FIBER_FRAME_SIZE
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    stw     %r\n, FIBER_FRAME_R14 + 4 * (\n - 14)(%r1)
    .cfi_offset \n, FIBER_FRAME_R14 + 4 * (\n - 14) - FIBER_FRAME_SIZE
    .endr
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    stfd    %f\n, FIBER_FRAME_F14 + 8 * (\n - 14)(%r1)
    .cfi_offset 32 + \n, FIBER_FRAME_F14 + 8 * (\n - 14) - FIBER_FRAME_SIZE
    .endr
    mfcr    %r0
    stw     %r0, FIBER_FRAME_CR(%r1)
    .cfi_offset DW_CR2, FIBER_FRAME_CR - FIBER_FRAME_SIZE
    stw     %r4, FIBER_FRAME_HANDLE + FIBER_FRAME_DATA(%r1)
#if FIBER_PPC_VMX == 2
    lwz     %r7, TCB_HWCAP(%r2)
    andis.  %r7, %r7, PPC_FEATURE_HAS_ALTIVEC_HI   /* r7 != 0: AltiVec (kept below) */
    beq     1f
#endif
#if FIBER_PPC_VMX
    .machine push
    .machine altivec
    mfvrsave %r0
    stw     %r0, FIBER_FRAME_VRSAVE(%r1)
    /* stvx takes no displacement: a pair at a time, two index registers. */
    .irp    n, 20,22,24,26,28,30
    li      %r11, FIBER_FRAME_V20 + 16 * (\n - 20)
    li      %r12, FIBER_FRAME_V20 + 16 * (\n - 19)
    stvx    \n, %r1, %r11
    stvx    \n + 1, %r1, %r12
#  if FIBER_PPC_VMX == 1  /* the CFI cannot say "saved, on some CPUs" */
    .cfi_offset 77 + \n, FIBER_FRAME_V20 + 16 * (\n - 20) - FIBER_FRAME_SIZE
    .cfi_offset 78 + \n, FIBER_FRAME_V20 + 16 * (\n - 19) - FIBER_FRAME_SIZE
#  endif
    .endr
    .machine pop
1:
#endif
#if !FIBER_SHARED_FP_ENV
    mffs    %f0                     /* f0 is volatile */
    stfd    %f0, FIBER_FRAME_FPSCR(%r1)
#endif

    /* The switch itself: r1 goes from one complete frame to another, so a signal
     * taken anywhere here sees a valid back chain. The target's frame has the same
     * layout, so the CFI above stays true for it. */
    addi    %r10, %r1, FIBER_FRAME_HANDLE
    addi    %r1, %r3, -FIBER_FRAME_HANDLE
    mr      %r3, %r10               /* return value: our handle */

#if !FIBER_SHARED_FP_ENV
    /* mtfsf is expensive and the control fields rarely differ between fibers:
     * write them only when they changed. */
    lwz     %r8, FIBER_FRAME_FPSCR + FPSCR_WORD - FIBER_FRAME_HANDLE(%r10)
    lwz     %r9, FIBER_FRAME_FPSCR + FPSCR_WORD(%r1)
    xor     %r0, %r8, %r9
    andi.   %r0, %r0, 0xff          /* VE OE UE ZE XE NI RN */
    beq     2f
    lfd     %f0, FIBER_FRAME_FPSCR(%r1)
    mtfsf   0x03, %f0               /* FPSCR fields 6 and 7 only */
2:
#endif
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    lwz     %r\n, FIBER_FRAME_R14 + 4 * (\n - 14)(%r1)
    .endr
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    lfd     %f\n, FIBER_FRAME_F14 + 8 * (\n - 14)(%r1)
    .endr
#if FIBER_PPC_VMX == 2
    cmpwi   %r7, 0
    beq     3f
#endif
#if FIBER_PPC_VMX
    .machine push
    .machine altivec
    .irp    n, 20,22,24,26,28,30
    li      %r11, FIBER_FRAME_V20 + 16 * (\n - 20)
    li      %r12, FIBER_FRAME_V20 + 16 * (\n - 19)
    lvx     \n, %r1, %r11
    lvx     \n + 1, %r1, %r12
    .endr
    lwz     %r0, FIBER_FRAME_VRSAVE(%r1)
    mtvrsave %r0
    .machine pop
3:
#endif
    lwz     %r0, FIBER_FRAME_CR(%r1)
    mtcrf   0x20, %r0               /* one field each: mtocrf where it exists, */
    mtcrf   0x10, %r0               /* cheaper than a multi-field mtcrf */
    mtcrf   0x08, %r0
    lwz     %r0, FIBER_FRAME_PC(%r1)
    /* Restored: unwinders must no longer look for them in the frame being freed,
     * which is below r1 once it moves up, where a signal handler's frame may land
     * before the branch. (LR stays where it is: in the caller's frame.) */
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .cfi_restore \n
    .cfi_restore 32 + \n
    .endr
#if FIBER_PPC_VMX == 1
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    .cfi_restore 77 + \n
    .endr
#endif
    .cfi_restore DW_CR2
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
 * pointing at a zeroed minimum frame. */
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
    mtctr   %r15
    mr      %r4, %r14
    bctrl
    trap                            /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [r3], entry [r4], void* arg [r5],
 *                             void* stack_limit [r6], unused here) */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), @function
    .p2align 4
SYM(fiber_prepare_context):
    .cfi_startproc
    clrrwi  %r3, %r3, 4
    addi    %r3, %r3, -FIBER_TRAMPOLINE_FRAME_SIZE  /* r1 of fiber_trampoline */
    addi    %r10, %r3, -FIBER_FRAME_SIZE            /* sp of the fresh context */
    /* Zero both frames. */
    li      %r0, 0
    li      %r11, (FIBER_FRAME_SIZE + FIBER_TRAMPOLINE_FRAME_SIZE) / 4
    mtctr   %r11
    addi    %r11, %r10, -4
1:  stwu    %r0, 4(%r11)
    bdnz    1b
    stw     %r3, 0(%r10)            /* back chain; the trampoline's stays 0 */
    /* fiber_trampoline's address, relative to ours: bcl 20,31 is the form the
     * link-stack predictor ignores. */
    mflr    %r0
    .cfi_register DW_LR, 0
    bcl     20, 31, 2f
2:  mflr    %r9
    mtlr    %r0
    .cfi_restore DW_LR
    addis   %r9, %r9, (.Lfiber_trampoline_start - 2b)@ha
    addi    %r9, %r9, (.Lfiber_trampoline_start - 2b)@l
    stw     %r9, FIBER_FRAME_PC(%r10)
    stw     %r5, FIBER_FRAME_R14(%r10)
    stw     %r4, FIBER_FRAME_R14 + 4(%r10)
    mffs    %f0
    stfd    %f0, FIBER_FRAME_FPSCR(%r10)
    addi    %r3, %r10, FIBER_FRAME_HANDLE
    blr
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

#if FIBER_PPC_VMX == 2
/* See "AltiVec" above: the TCB's hwcap copy exists only where this symbol does. */
    .section ".data.rel.ro", "aw"
    .p2align 2
    .long   __parse_hwcap_and_convert_at_platform
#endif

    .section .note.GNU-stack, "", @progbits
