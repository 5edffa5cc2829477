/* Context switch for i386 (i686), System V ABI, ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_i386_sysv_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg, limit) -> sp   build a fresh context
 *   fiber_switch_context(to, data)                      -> from switch, passing data
 *
 * What a callee must preserve, per the System V ABI Intel386 Architecture Processor
 * Supplement (version 1.1; chapter "Low Level System Information", "Function
 * Calling Sequence", section 2.2.1 "Registers"; the fourth edition says the same
 * about the integer registers on page 3-11):
 *   - ebp, ebx, edi, esi and esp ("belong" to the calling function);
 *   - the control bits of MXCSR ("callee-saved (preserved across calls), while
 *     the status bits are caller-saved");
 *   - the x87 control word ("callee-saved"; the x87 status word is caller-saved).
 * No floating-point data register is callee-saved: st0-st7 (the x87 stack is empty
 * at a call) and xmm0-xmm7 belong to the callee. Arguments are passed on the stack,
 * and the stack is 16-byte aligned at every call (section 2.2.2 "The Stack
 * Frame": the end of the argument area is 16-byte aligned; GCC's default on Linux).
 *
 * Debian's i686 toolchain does not use SSE (__SSE__ is not predefined; x87 does
 * the arithmetic), but code built with -msse/-mfpmath=sse, or a library, may, and
 * then MXCSR holds a rounding mode and flush-to-zero of its own. So both units'
 * control state is switched, as on x86_64. The i686 baseline does not guarantee
 * SSE, though, and stmxcsr/ldmxcsr fault without it. So fiber_prepare_context
 * asks CPUID once per process and, on a CPU without SSE, stores FIBER_NO_MXCSR in
 * the MXCSR slot of the fresh frame; fiber_switch_context copies the target
 * frame's slot into its own and, unless it is FIBER_NO_MXCSR, overwrites it with
 * the real MXCSR. Every frame a thread can switch to was made by one of the two,
 * so every frame carries the answer and MXCSR is never touched without SSE.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in arch/switch_i386_sysv_elf_gas.h and checked from C++):
 *
 *          +------------------------+  <- sp + 32: the caller's esp before its call
 *          | to, data (arguments)   |     (16-byte aligned)
 *     +28  | return address (pc)    |  where fiber_switch_context returns
 *     +24  | ebp                    |
 *     +20  | ebx                    |
 *     +16  | esi                    |
 *     +12  | edi                    |
 *      +8  | x87 cw (2) | pad (2)   |
 *      +4  | mxcsr (or FIBER_NO_MXCSR)
 *      +0  | data                   |  the value passed by the suspending side
 *          +------------------------+  <- saved sp (16-byte aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame with pc pointing
 * into fiber_trampoline, ebx = arg, esi = entry, ebp = 0 and the FP control state
 * of the thread that prepared it; above it sit four zero words, where the
 * trampoline stores the two arguments of its call to entry:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *          | 0, 0 (padding)         |
 *          | 0 -> arg               |  second argument of entry
 *          | 0 -> from              |  <- esp seen by fiber_trampoline (16-aligned)
 *          | fiber_trampoline       |  pc
 *          | 0                      |  ebp: ends the frame-pointer chain
 *          | arg                    |  ebx
 *          | entry                  |  esi
 *          | 0                      |  edi
 *          | x87 cw, mxcsr          |
 *          | 0                      |  data
 *          +------------------------+  <- returned sp
 *
 * Everything is position-independent: the library is built with -fPIC, and the
 * addresses this file needs (fiber_trampoline, its own CPUID cache) are computed
 * from the pc with call/pop, so no text relocation is left for the loader.
 *
 * FIBER_SHARED_FP_ENV=1 leaves MXCSR and the x87 control word alone: faster, but
 * a rounding-mode or flush-to-zero change made in one fiber is then seen by every
 * fiber on the thread. FIBER_SWITCH_WITH_RET=1 returns with `ret` instead of an
 * indirect `jmp`; it exists only so bench/ can measure the difference (the `ret`
 * pops a return-stack-buffer entry pushed by a different call, so it mispredicts).
 */
#include "switch_i386_sysv_elf_gas.h"

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

/* Whether the CPU has SSE, as fiber_prepare_context found it: 0 = not asked yet,
 * 1 = no, 2 = yes. File-local; threads racing to fill it write the same value. */
    .bss
    .p2align 2
.Lsse_state:
    .zero   4

    .text

/* void* fiber_switch_context(void* to [4(%esp)], void* data [8(%esp)]) -> from [eax] */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 4
SYM(fiber_switch_context):
    .cfi_startproc
    pushl   %ebp
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset %ebp, 0
    pushl   %ebx
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset %ebx, 0
    pushl   %esi
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset %esi, 0
    pushl   %edi
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset %edi, 0
    subl    $FIBER_FRAME_EDI, %esp
    .cfi_adjust_cfa_offset FIBER_FRAME_EDI
    /* The arguments sit just above the frame. */
    movl    FIBER_FRAME_SIZE(%esp), %ecx        /* to */
    movl    FIBER_FRAME_SIZE+4(%esp), %edx      /* data */
    movl    %edx, FIBER_FRAME_DATA(%esp)
#if !FIBER_SHARED_FP_ENV
    fnstcw  FIBER_FRAME_X87CW(%esp)
    /* The target's MXCSR slot says whether this CPU has an MXCSR at all; edx keeps
     * it until the load below. */
    movl    FIBER_FRAME_MXCSR(%ecx), %edx
    movl    %edx, FIBER_FRAME_MXCSR(%esp)
    cmpl    $FIBER_NO_MXCSR, %edx
    je      1f
    stmxcsr FIBER_FRAME_MXCSR(%esp)
1:
#endif

    /* The switch itself. From here on the frame being read is the target's; it has
     * the same layout, so the CFI above stays true. */
    movl    %esp, %eax
    movl    %ecx, %esp

#if !FIBER_SHARED_FP_ENV
    /* As on x86_64 (the same cores): MXCSR is loaded whenever the CPU has one, as
     * comparing it first means reading back the value stmxcsr just stored, which
     * measured slower there; fldcw is the expensive one of the x87 pair, and the
     * control word rarely differs: load it only when it does. */
    cmpl    $FIBER_NO_MXCSR, %edx
    je      2f
    ldmxcsr FIBER_FRAME_MXCSR(%esp)
2:
    movw    FIBER_FRAME_X87CW(%esp), %dx
    cmpw    FIBER_FRAME_X87CW(%eax), %dx
    je      3f
    fldcw   FIBER_FRAME_X87CW(%esp)
3:
#endif
    addl    $FIBER_FRAME_EDI, %esp
    .cfi_adjust_cfa_offset -FIBER_FRAME_EDI
    popl    %edi
    .cfi_adjust_cfa_offset -4
    .cfi_restore %edi
    popl    %esi
    .cfi_adjust_cfa_offset -4
    .cfi_restore %esi
    popl    %ebx
    .cfi_adjust_cfa_offset -4
    .cfi_restore %ebx
    popl    %ebp
    .cfi_adjust_cfa_offset -4
    .cfi_restore %ebp
#if FIBER_SWITCH_WITH_RET
    ret
#else
    /* The return address belongs to a different call than the one that brought us
     * here; an indirect jump leaves the return-stack predictor out of it. */
    popl    %ecx
    .cfi_adjust_cfa_offset -4
    .cfi_register %eip, %ecx
    jmp     *%ecx
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the jump at the end of
 * fiber_switch_context: eax = from, ebx = arg, esi = entry, esp 16-byte aligned
 * with two free words at (%esp) and 4(%esp) for the arguments. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), @function
    .p2align 4
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined %eip
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in the function before it. */
    nop
.Lfiber_trampoline_start:
    movl    %eax, (%esp)
    movl    %ebx, 4(%esp)
    call    *%esi           /* esp is 16-aligned at the call, as the ABI requires */
    ud2                     /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [4(%esp)], entry [8(%esp)],
 *                             void* arg [12(%esp)], void* stack_limit [16(%esp)],
 *                             unused here) -> sp [eax] */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), @function
    .p2align 4
SYM(fiber_prepare_context):
    .cfi_startproc
    pushl   %ebx                    /* CPUID writes ebx */
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset %ebx, 0
    call    1f                      /* ecx = address of 1: the pc, for PIC */
1:
    .cfi_adjust_cfa_offset 4
    popl    %ecx
    .cfi_adjust_cfa_offset -4

    /* eax = 2 if the CPU has SSE, else 1, asking CPUID only the first time. */
    movl    .Lsse_state-1b(%ecx), %eax
    testl   %eax, %eax
    jnz     2f
    pushl   %ecx
    .cfi_adjust_cfa_offset 4
    movl    $1, %eax
    cpuid                           /* leaf 1: feature flags; SSE is edx bit 25 */
    popl    %ecx
    .cfi_adjust_cfa_offset -4
    movl    $1, %eax
    btl     $25, %edx
    adcl    $0, %eax
    movl    %eax, .Lsse_state-1b(%ecx)
2:
    movl    8(%esp), %edx           /* stack_top */
    andl    $-16, %edx
    subl    $16, %edx               /* trampoline's esp: 16-aligned, four zero words */
    movl    $0, (%edx)
    movl    $0, 4(%edx)
    movl    $0, 8(%edx)
    movl    $0, 12(%edx)
    subl    $FIBER_FRAME_SIZE, %edx /* the saved sp of the fresh context */
    movl    $0, FIBER_FRAME_DATA(%edx)
    fnstcw  FIBER_FRAME_X87CW(%edx)
    movw    $0, FIBER_FRAME_X87CW+2(%edx)
    cmpl    $2, %eax
    je      3f
    movl    $FIBER_NO_MXCSR, FIBER_FRAME_MXCSR(%edx)
    jmp     4f
3:
    stmxcsr FIBER_FRAME_MXCSR(%edx)
4:
    movl    $0, FIBER_FRAME_EDI(%edx)
    movl    12(%esp), %eax          /* entry */
    movl    %eax, FIBER_FRAME_ESI(%edx)
    movl    16(%esp), %eax          /* arg */
    movl    %eax, FIBER_FRAME_EBX(%edx)
    movl    $0, FIBER_FRAME_EBP(%edx)
    leal    .Lfiber_trampoline_start-1b(%ecx), %eax
    movl    %eax, FIBER_FRAME_PC(%edx)
    movl    %edx, %eax
    popl    %ebx
    .cfi_adjust_cfa_offset -4
    .cfi_restore %ebx
    ret
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
