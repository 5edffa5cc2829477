/* Context switch for 64-bit PowerPC, ELF V1 ABI (big-endian ppc64, function
 * descriptors), ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_ppc64_elfv1_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg) -> handle   build a fresh context
 *   fiber_switch_context(to, data)               -> from     switch, passing data
 *
 * What a callee must preserve, per the 64-bit PowerPC ELF Application Binary
 * Interface Supplement 1.9, section 3.2.1 "Registers" (and 3.2.2 "The Stack Frame"):
 *   - r14-r31 ("Nonvolatile registers used for local variables") and r1;
 *   - r2, the TOC pointer: callers within a module rely on it; calls into another
 *     module go through stubs that save it at 40(r1) and restore it. The context
 *     we resume may have called us from another module than the one that calls us
 *     now, so each context keeps its own r2;
 *   - CR fields CR2-CR4 ("Nonvolatile condition code register fields");
 *   - f14-f31 ("Nonvolatile registers");
 *   - "On processors with the VMX feature": v20-v31 ("Non-volatile registers") and
 *     VRSAVE ("Non-volatile 32-bit register"). See AltiVec below.
 * The same table calls the whole FPSCR volatile. The library's policy (see
 * FIBER_SHARED_FP_ENV) is nevertheless that each fiber keeps its own FP control
 * state, as C's fesetround() means it and as the later ABIs (ELFv2's
 * "limited-access" bits) codify: the switch hands each context back its FPSCR
 * control fields, VE OE UE ZE XE (exception enables), NI (non-IEEE mode) and RN
 * (rounding mode), i.e. FPSCR fields 6 and 7. The status bits are not switched.
 * (DRN, the decimal rounding mode, exists from ISA 2.05 on and is out of reach of
 * the POWER4 baseline this target is built for; VSCR is not in the ELFv1 table.)
 *
 * Function descriptors (3.2.5): the symbol of a function is its descriptor in .opd
 * (code address, TOC base, environment pointer); the code has a local label. So:
 *   - `entry`, as passed to fiber_prepare_context, points at a descriptor:
 *     fiber_trampoline loads the code address, r2 and r11 from it;
 *   - fiber_trampoline itself has NO descriptor: its symbol is the code address.
 *     Nothing calls it through a pointer; C++ only compares &fiber_trampoline with
 *     what _Unwind_FindEnclosingFunction returns for a fiber's outermost frame,
 *     which is the start of the code its FDE covers. A descriptor's address would
 *     never match; this way it does, with no per-ABI code in fiber/src/context.cpp.
 *
 * AltiVec. Debian's powerpc64 compiler targets POWER4 (-mcpu=power4): no
 * __ALTIVEC__, so code it builds never holds values in vector registers. But it
 * enables -mabi=altivec, the vector ABI, in which v20-v31 are callee-saved; code
 * built with -maltivec or -mcpu=power7 may keep values there across a call that
 * switches fibers, even if this library was built without it. So, FIBER_PPC_VMX:
 *   1  v20-v31 and VRSAVE are always switched (the default when __ALTIVEC__:
 *      this build requires an AltiVec CPU anyway);
 *   2  switched when the CPU has AltiVec, as the kernel reports in AT_HWCAP, read
 *      from the copy glibc keeps in the thread control block (at -0x7068(r13)),
 *      as GCC's __builtin_cpu_supports does; like GCC, this object then refers to
 *      __parse_hwcap_and_convert_at_platform so that a C library without that
 *      copy (glibc < 2.23, others) fails at link time instead of reading garbage
 *      (the default otherwise);
 *   0  never (for a non-glibc system whose code never uses AltiVec).
 * The frame has room for them in every case.
 *
 * A suspended context. r1 points at the ABI's back chain, so the handle is r1 + 48
 * (FIBER_FRAME_HANDLE), where the data slot lives. Addresses grow upwards; every
 * offset is named in arch/switch_ppc64_elfv1_elf_gas.h and checked from C++:
 *
 *          +------------------------+
 *    +576  | LR save = resume pc    |  in the caller's frame header, where the ABI
 *    +568  | (caller's CR save)     |  has every function save its LR
 *    +560  | (caller's back chain)  |  <- sp + 560 = the caller's r1
 *          +------------------------+
 *    +368  | v20 .. v31   (12 x 16) |  16-byte aligned; AltiVec only
 *    +224  | f14 .. f31   (18 x 8)  |
 *     +80  | r14 .. r31   (18 x 8)  |
 *     +76  | VRSAVE (4)             |  AltiVec only
 *     +72  | CR (4)                 |  only CR2-CR4 are restored
 *     +64  | r2 (TOC)               |
 *     +56  | FPSCR (8, as mffs)     |  only fields 6-7 are restored
 *     +48  | data                   |  <- the handle (sp + FIBER_FRAME_HANDLE)
 *      +8  | CR, LR, 2 reserved, TOC|  ABI header: reserved for functions this
 *      +0  | back chain             |  frame calls (none); back chain = sp + 560
 *          +------------------------+  <- saved r1 (16-byte aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame, zeroed, with
 * r14 = arg, r15 = entry (a descriptor), r2 = the preparing side's TOC and the
 * FPSCR of the thread that prepared it. Above it sits a minimum frame (header and
 * parameter save area) in which fiber_trampoline runs; its LR save doubleword is
 * the resume pc:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *     +48  | 0 (parameter save area)|  64 bytes, for the entry function's use
 *     +16  | fiber_trampoline       |  the switch frame's resume pc
 *      +0  | 0 (back chain)         |  ends back-chain walks
 *          +------------------------+  <- r1 seen by fiber_trampoline (16-aligned)
 *          | 0, data, FPSCR, r2=TOC |
 *          | r14=arg, r15=entry, 0..|
 *          | back chain -> above    |
 *          +------------------------+  <- sp; returned handle = sp + 48
 *
 * FIBER_SHARED_FP_ENV=1 leaves the FPSCR alone: faster (mffs and mtfsf are slow),
 * but a rounding-mode or exception-enable change made in one fiber is then seen
 * by every fiber on the thread. FIBER_SWITCH_WITH_RET=1 returns with `blr` instead
 * of `bctr`; it exists only so bench/ can measure the difference: blr pops the
 * link-stack (return-address) predictor, whose top entry belongs to the call that
 * brought us here, not to the call in the context we resume, so it mispredicts;
 * bctr goes through the indirect-branch predictor instead.
 */
#include "switch_ppc64_elfv1_elf_gas.h"

/* CMake picks this file for every big-endian ppc64; a big-endian ELFv2 system
 * (musl, FreeBSD) needs arch/switch_ppc64_elfv2_elf_gas.S instead. */
#if defined(_CALL_ELF) && _CALL_ELF != 1
#  error "fiber: this file is for the 64-bit ELF V1 ABI (function descriptors); see switch_ppc64_elfv2_elf_gas.S"
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
#define TCB_HWCAP -0x7068
#define PPC_FEATURE_HAS_ALTIVEC_HI 0x1000   /* 0x10000000 >> 16 */

/* DWARF register numbers (3.6.2 "DWARF Register Number Mapping"): r0-r31 = 0-31,
 * f0-f31 = 32-63, LR = 65, CR2 = 70 (on ELFv1 the CR2 slot stands for the whole
 * nonvolatile CR, as GCC emits it), v0-v31 = 77-108, VRSAVE = 109. */
#define DW_LR 65
#define DW_CR2 70

/* A function: its descriptor in .opd under the symbol, its code at .L.<name>. */
    .macro FUNCTION name
    .section ".opd", "aw"
    .p2align 3
    .globl  \name
\name:
    .quad   .L.\name, .TOC.@tocbase, 0
    .previous
    .type   \name, @function
    .p2align 5
.L.\name:
    .endm
    .macro END_FUNCTION name
    .size   \name, .-.L.\name
    .endm

    .text

/* void* fiber_switch_context(void* to [r3], void* data [r4]) -> from [r3] */
    FUNCTION SYM(fiber_switch_context)
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
    mfcr    %r0
    stw     %r0, FIBER_FRAME_CR(%r1)
    .cfi_offset DW_CR2, FIBER_FRAME_CR - FIBER_FRAME_SIZE
    std     %r2, FIBER_FRAME_R2(%r1)
    .cfi_offset 2, FIBER_FRAME_R2 - FIBER_FRAME_SIZE
    std     %r4, FIBER_FRAME_HANDLE + FIBER_FRAME_DATA(%r1)
#if FIBER_PPC_VMX == 2
    lwz     %r7, TCB_HWCAP(%r13)
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
     * write them only when they changed. The FPSCR is the low (big-endian: second)
     * word of what stfd stored. */
    lwz     %r8, FIBER_FRAME_FPSCR + 4 - FIBER_FRAME_HANDLE(%r10)
    lwz     %r9, FIBER_FRAME_FPSCR + 4(%r1)
    xor     %r0, %r8, %r9
    andi.   %r0, %r0, 0xff          /* VE OE UE ZE XE NI RN */
    beq     2f
    lfd     %f0, FIBER_FRAME_FPSCR(%r1)
    mtfsf   0x03, %f0               /* FPSCR fields 6 and 7 only */
2:
#endif
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      %r\n, FIBER_FRAME_R14 + 8 * (\n - 14)(%r1)
    .endr
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    lfd     %f\n, FIBER_FRAME_F14 + 8 * (\n - 14)(%r1)
    .endr
#if FIBER_PPC_VMX == 2
    cmpdi   %r7, 0
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
#if FIBER_PPC_VMX == 1
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    .cfi_restore 77 + \n
    .endr
#endif
    .cfi_restore 2
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
    END_FUNCTION SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the bctr at the end of
 * fiber_switch_context: r3 = from, r14 = arg, r15 = the entry's descriptor, r1
 * 16-byte aligned pointing at a zeroed minimum frame. A code symbol, not a
 * descriptor: see "Function descriptors" above. */
    .text
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
    ld      %r0, 0(%r15)            /* entry point */
    ld      %r11, 16(%r15)          /* environment pointer */
    mtctr   %r0
    ld      %r2, 8(%r15)            /* TOC base */
    mr      %r4, %r14
    bctrl
    trap                            /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [r3], entry [r4], void* arg [r5],
 *                             void* stack_limit [r6], unused here)
 * Called through its descriptor, so r2 is this module's TOC. */
    FUNCTION SYM(fiber_prepare_context)
    .cfi_startproc
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
    addi    %r3, %r10, FIBER_FRAME_HANDLE
    blr
    .cfi_endproc
    END_FUNCTION SYM(fiber_prepare_context)

#if FIBER_PPC_VMX == 2
/* See "AltiVec" above: the TCB's hwcap copy exists only where this symbol does. */
    .section ".data.rel.ro", "aw"
    .p2align 3
    .quad   __parse_hwcap_and_convert_at_platform
#endif

    .section .note.GNU-stack, "", @progbits
