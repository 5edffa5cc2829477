/* Context switch for SPARC64: SPARC V9 ABI (64-bit), ELF, Linux, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_sparc64_sysv_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg) -> handle   build a fresh context
 *   fiber_switch_context(to, data)               -> from     switch, passing data
 *
 * The handle is the REAL address of a suspended frame: the biased %sp of the
 * switch's window plus the stack bias, 2047. Data is at handle + 0.
 *
 * What a callee must preserve, per the SPARC V9 ABI of the SPARC Compliance
 * Definition 2.4.1 (its low-level system information: registers, the stack frame),
 * as restated in Oracle's SPARC Assembly Language Reference Manual, sections 6.2
 * "Register Usage" and 6.4.2 (the 176-byte minimum frame):
 *   - %l0-%l7 and %i0-%i7 (%i6 = %fp, %i7 = return address - 8) of the caller's
 *     window, and every older window. A callee preserves them by executing `save`
 *     (a fresh window) and `restore`; the hardware spills windows to, and fills them
 *     from, the 16-doubleword save area at the bottom of each window's own frame
 *     (%sp + 2047). A switch therefore executes `flushw` (every window except the
 *     current one written to its frame) before it changes %sp, and `restore`s into
 *     the target's window: with no valid window left in the register file, that
 *     `restore` traps and the kernel fills the window from the target's stack.
 *     Nothing else carries the caller's %l/%i, so nothing else is saved by hand.
 *   - %o6 = %sp, biased: the real stack pointer is %sp + 2047, 16-byte aligned, with
 *     at least 176 bytes at its bottom (16 doublewords of window save area, then 6
 *     of argument area) that the caller owns and a spill may overwrite at any time.
 *   - %g1 is scratch (and used by PLT stubs), %g2-%g4 are caller-saved application
 *     registers, %g5 is reserved, %g6/%g7 belong to the system (%g7 is the thread
 *     pointer). Of the globals, this file writes only %g1.
 *   - No floating-point register is callee-saved: %f0-%f62 are all volatile (GCC's
 *     sparc64 CALL_USED_REGISTERS agrees), so none is saved here.
 *   - The FSR: no field of it is callee-saved. Its condition codes (fcc0-fcc3) and
 *     exception fields (aexc, cexc) are volatile; its control fields RD (rounding
 *     direction), TEM (trap enables) and NS (nonstandard mode) are treated as global
 *     state that code changes only on purpose (fesetround, fesetenv). As on the
 *     other ports, each context keeps its own: the switch hands the resumed context
 *     back the control fields it left with, and the status fields carry on as they
 *     are.
 * %o7 holds the return address minus 8 of a call; %o0-%o5 are argument/scratch.
 *
 * A suspended context: fiber_switch_context's own window frame (one minimal frame),
 * below its caller's. Real addresses grow upwards; every offset is named in
 * arch/switch_sparc64_sysv_elf_gas.h and checked from C++:
 *
 *          +------------------------+  <- caller's %sp + 2047 (its frame: its
 *          |  caller's frame ...    |     %l/%i, spilled there by flushw)
 *          +------------------------+  <- handle + 176
 *    +136  | (argument area, unused)|
 *    +128  | fsr                    |  64-bit FSR (stx %fsr)
 *    +120  | %i7: caller's call addr|  the caller resumes at +8
 *    +112  | %i6: caller's %sp      |  biased; the target's window is filled from
 *          |                        |  (this + 2047) by the switch's `restore`
 *     +64  | %i0-%i5 slots (unused) |
 *      +8  | %l1-%l7 slots (unused) |
 *      +0  | %l0: data              |  the value passed by the suspending side
 *          +------------------------+  <- handle = switch's %sp + 2047 (16-aligned)
 *
 * The meaningful words are the ones a spill of the switch's window would write
 * with the same values (%l0 = data, %i6, %i7) or that no spill writes (the FSR, in
 * the argument area), so a window spill at any instant cannot corrupt them.
 *
 * A fresh context from fiber_prepare_context is two frames. The lower one is the
 * switch frame above, resuming at fiber_trampoline; the upper one is the frame of
 * fiber_trampoline, whose window the first switch's `restore` fills from it:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *    +128  | argument area (0)      |  entry(from, arg) may spill its arguments here
 *    +120  | %i7 = 0                |  null return address
 *    +112  | %i6 = 0                |  null frame pointer: ends %fp walks
 *      +8  | %l1 = arg, rest 0      |
 *      +0  | %l0 = entry            |
 *          +------------------------+  <- T (16-aligned); trampoline's %sp = T - 2047
 *    +128  | fsr of the preparer    |
 *    +120  | fiber_trampoline - 8   |
 *    +112  | T - 2047               |
 *      +0  | 0 ... (data = 0)       |
 *          +------------------------+  <- returned handle = T - 176
 *
 * FIBER_SHARED_FP_ENV=1 leaves the FSR alone: faster, but a rounding-mode change
 * made in one fiber is then seen by every fiber on the thread.
 * FIBER_SWITCH_WITH_RET=1 returns with `ret` (jmpl %i7 + 8, %g0), the form that
 * UltraSPARC's return-address stack predicts, and mispredicts here, because the
 * entry it pops was pushed by a different call; the default jumps through %g1,
 * which the predictor leaves alone. It exists only so bench/ can measure the
 * difference.
 */
#include "switch_sparc64_sysv_elf_gas.h"

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

/* DWARF register numbers: %o7 = 15 (the return-address column), %l3 = 19, %fp = 30,
 * %i7 = 31. */
#define DW_O7 15
#define DW_L3 19
#define DW_FP 30
#define DW_I7 31

    .text

/* void* fiber_switch_context(void* to [%o0], void* data [%o1]) -> from [%o0] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), #function
    .p2align 5
SYM(fiber_switch_context):
    .cfi_startproc
    save    %sp, -FIBER_FRAME_SIZE, %sp
    .cfi_window_save
    .cfi_register DW_O7, DW_I7
    .cfi_def_cfa_register DW_FP
    /* Every window but this one, the caller's first, to its own frame on this
     * stack. From here on no window of the suspending context is in the register
     * file, so the `restore` below cannot pick one up by mistake. */
    flushw
    mov     %i1, %l0                /* data, where a spill of this window puts %l0 */
    stx     %l0, [%sp + FIBER_STACK_BIAS + FIBER_FRAME_DATA]
    stx     %fp, [%sp + FIBER_STACK_BIAS + FIBER_FRAME_FP]
    stx     %i7, [%sp + FIBER_STACK_BIAS + FIBER_FRAME_RA]
#if !FIBER_SHARED_FP_ENV
    stx     %fsr, [%sp + FIBER_STACK_BIAS + FIBER_FRAME_FSR]
#endif

    /* The target's words, into registers whose slots in our frame are unused (a
     * spill while %sp is still ours writes them there harmlessly). */
    ldx     [%i0 + FIBER_FRAME_FP], %l2
    ldx     [%i0 + FIBER_FRAME_RA], %l3

#if !FIBER_SHARED_FP_ENV
    /* Loading the FSR can serialize the FPU, and the control fields rarely differ
     * between fibers: load only when they do, and then keep the status fields
     * (condition codes, accrued exceptions) as they are now. */
    ldx     [%sp + FIBER_STACK_BIAS + FIBER_FRAME_FSR], %l4
    ldx     [%i0 + FIBER_FRAME_FSR], %l5
    sethi   %hi(FIBER_FSR_CONTROL), %l6
    xor     %l4, %l5, %l5
    andcc   %l5, %l6, %l5           /* control bits that differ */
    be,pt   %xcc, 1f
     xor    %l4, %l5, %l4           /* ours, with the target's control fields */
    /* The target's frame is dead once read: use its FSR word as the memory
     * operand that ldx %fsr needs. */
    stx     %l4, [%i0 + FIBER_FRAME_FSR]
    ldx     [%i0 + FIBER_FRAME_FSR], %fsr
1:
#endif

    /* The switch itself. After this instruction a spill of this window lands in the
     * target's frame, whose words we already hold in registers. */
    add     %sp, FIBER_STACK_BIAS, %l7      /* from: our frame's real address */
    sub     %i0, FIBER_STACK_BIAS, %sp
    /* The target's caller's %sp and return address. The CFI above (CFA = %fp + bias,
     * window saved, return address in %i7) then describes the target's caller; in
     * between, for one instruction, the CFA is already the target's and its return
     * address still in %l3. */
    mov     %l2, %fp
    .cfi_register DW_O7, DW_L3
    mov     %l3, %i7
    .cfi_register DW_O7, DW_I7
#if FIBER_SWITCH_WITH_RET
    ret
     restore %l7, %g0, %o0          /* fills the target's window from %fp + 2047; from in %o0 */
#else
    add     %i7, 8, %g1
    jmp     %g1
     restore %l7, %g0, %o0          /* fills the target's window from %fp + 2047; from in %o0 */
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the jump at the end of
 * fiber_switch_context, in its own window as if it had executed `save`: that
 * window was filled from its frame, so %l0 = entry, %l1 = arg, %i6 = %i7 = 0, and
 * the restore left from in %o0. The call of entry is made from here, so the
 * unwinder finds this function as the outermost frame of every fiber. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), #function
    .p2align 5
SYM(fiber_trampoline):
    .cfi_startproc
    .cfi_window_save
    .cfi_def_cfa_register DW_FP
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined DW_O7
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in the function before it. */
    nop
.Lfiber_trampoline_start:
    call    %l0                     /* entry(from, arg) */
     mov    %l1, %o1
    illtrap 0                       /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [%o0], entry [%o1], void* arg [%o2],
 *                             void* stack_limit [%o3], unused here) -> handle [%o0]
 * A leaf: runs in its caller's window and touches only %o0-%o5 and %g1. */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), #function
    .p2align 5
SYM(fiber_prepare_context):
    .cfi_startproc
    and     %o0, -16, %o0                       /* top, 16-aligned */
    sub     %o0, 2 * FIBER_FRAME_SIZE, %o4      /* the switch frame: the handle */
    mov     %o4, %o5
1:  stx     %g0, [%o5]                          /* both frames start zeroed */
    add     %o5, 8, %o5
    cmp     %o5, %o0
    bne,pt  %xcc, 1b
     nop
    add     %o4, FIBER_FRAME_SIZE, %o5          /* T: the trampoline's frame */
    stx     %o1, [%o5 + FIBER_FRAME_ENTRY]
    stx     %o2, [%o5 + FIBER_FRAME_ARG]
    sub     %o5, FIBER_STACK_BIAS, %o5          /* the trampoline's %sp, biased */
    stx     %o5, [%o4 + FIBER_FRAME_FP]
2:  rd      %pc, %g1                            /* position-independent address of */
    add     %g1, (.Lfiber_trampoline_start - 8) - 2b, %g1   /* the trampoline, minus 8 */
    stx     %g1, [%o4 + FIBER_FRAME_RA]
    stx     %fsr, [%o4 + FIBER_FRAME_FSR]       /* a new fiber starts with our FSR */
    retl
     mov    %o4, %o0
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
