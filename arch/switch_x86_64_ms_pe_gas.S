/* Context switch for x86_64 Windows: Microsoft x64 calling convention, PE/COFF, GNU
 * assembler (MinGW-w64).
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_x86_64_ms_pe_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg, stack_limit) -> sp   build a fresh context
 *   fiber_switch_context(to, data)                            -> from switch, passing data
 * Arguments arrive in rcx, rdx, r8, r9; the result leaves in rax.
 *
 * What a callee must preserve, per Microsoft's "x64 calling convention" / "x64
 * software conventions" documentation (learn.microsoft.com, cpp/build):
 *   - rbx, rbp, rdi, rsi, rsp and r12-r15 ("Register usage": nonvolatile, "must be
 *     preserved by callee");
 *   - xmm6-xmm15 (nonvolatile; only their low 128 bits: the upper halves of the ymm
 *     and zmm registers are volatile);
 *   - MXCSR bits 6-15, the control bits ("MxCsr": "the remainder of the register,
 *     MXCSR[6:15], is considered nonvolatile"; the status flags 0-5 are volatile);
 *   - the x87 control word ("FpCsr": "the calling convention dictates this register
 *     to be nonvolatile").
 *
 * What Windows itself needs: the Thread Information Block (NT_TIB, at the start of
 * the TEB, which gs addresses) describes the stack the thread runs on, and the
 * system reads it. Exception dispatch (RtlDispatchException, RtlUnwindEx) refuses
 * frames outside [StackLimit, StackBase), so without it no C++ exception could be
 * thrown on a fiber; MSVC's __chkstk probes only the pages below StackLimit;
 * GetCurrentThreadStackLimits returns [DeallocationStack, StackBase); stack-overflow
 * handling uses DeallocationStack as the floor. So every context carries its own
 * copy of these fields, as Win32 fibers (SwitchToFiber) do:
 *   gs:[0x08] StackBase           highest address of the stack, exclusive
 *   gs:[0x10] StackLimit          lowest usable (committed) address
 *   gs:[0x1478] DeallocationStack lowest address of the stack's reservation, guard included
 *   gs:[0x20] FiberData           the Win32 fiber's data (GetFiberData/GetCurrentFiber)
 *   gs:[0x00] ExceptionList       unused by 64-bit Windows, but Wine chains its own
 *                                 handler frames there, on the stack they guard, and
 *                                 its dispatcher calls each one below the frame being
 *                                 unwound: a thread's frames must not be seen from a
 *                                 fiber's stack. A fresh context starts with -1, the
 *                                 end-of-chain marker: an empty chain.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in arch/switch_x86_64_ms_pe_gas.h and checked from C++):
 *
 *          +--------------------------+  <- sp + 288 (the caller's rsp: 16-aligned)
 *    +280  | return address (pc)      |  where fiber_switch_context returns
 *    +272  | rbp                      |
 *    +264  | rbx                      |
 *    +256  | rdi                      |
 *    +248  | rsi                      |
 *    +240  | r12                      |
 *    +232  | r13                      |
 *    +224  | r14                      |
 *    +216  | r15                      |  (pushed; everything below is one allocation)
 *    +208  | StackBase                |
 *    +200  | StackLimit               |
 *    +192  | DeallocationStack        |
 *    +184  | FiberData                |
 *    +176  | ExceptionList            |
 *     +16  | xmm6 ... xmm15 (10 x 16) |  movaps: 16-byte aligned
 *     +12  | x87 cw (2) | pad (2)     |
 *      +8  | mxcsr (4)                |
 *      +0  | data                     |  the value passed by the suspending side
 *          +--------------------------+  <- saved sp (16-aligned)
 *
 * A fresh context from fiber_prepare_context is the same frame with pc pointing into
 * fiber_trampoline (just past its prologue), rbx = arg, r12 = entry, every other
 * register 0, the TIB fields describing the new stack, and the FP control state of
 * the thread that prepared it. Above it sits the frame fiber_trampoline's unwind
 * information describes, which ends every stack walk on the fiber:
 *
 *          +--------------------------+  <- stack_top rounded down to 16 = StackBase
 *          | 0 (null return address)  |  unwinding the trampoline pops this...
 *          | 0 (its "saved rbp")      |
 *          | shadow space (32 bytes)  |  for the trampoline's call of entry
 *          +--------------------------+  <- rsp in fiber_trampoline (16-aligned)
 *          | pc = fiber_trampoline's  |
 *          |   body; rbp rbx rdi rsi  |
 *          |   r12..r15;              |
 *          |   TIB: StackBase,        |  stack_top & -16
 *          |   StackLimit,            |  stack_limit
 *          |   DeallocationStack,     |  the base of stack_limit's reservation when
 *          |                          |  only guard pages lie between (stack.cpp)
 *          |   FiberData,             |  0
 *          |   ExceptionList;         |  -1
 *          |   xmm6-15 = 0;           |
 *          |   FP control; data = 0   |  the preparer's; 0
 *          +--------------------------+  <- returned sp
 *
 * ...so that the unwound rsp equals StackBase with a null return address: where
 * RtlDispatchException, RtlUnwindEx and RtlVirtualUnwind-based walkers (libgcc's
 * _Unwind_Backtrace, RtlCaptureStackBackTrace) stop.
 *
 * Unwind information comes twice. SEH (.pdata/.xdata, from the .seh_* directives)
 * is what the system and libgcc use on x64 Windows: exceptions, _Unwind_Backtrace,
 * RtlCaptureStackBackTrace. It describes fiber_switch_context's prologue; after
 * the stack pointer moves, the frame being unwound is the target's, which has the
 * same layout, so the information stays true. The exception is the last
 * instructions, from `addq` to the `jmp`: Windows' epilogue recognition accepts
 * only `ret` (or a direct jmp) at the end, so with the default indirect jump a
 * sampling profiler stopping exactly there gets a wrong caller. No exception or
 * backtrace can start there (nothing is called), and FIBER_SWITCH_WITH_RET=1
 * makes it exact. DWARF CFI (.cfi_*, in .debug_frame, as GCC emits it on this
 * target with -g) serves debuggers: gdb prefers it to SEH where a function has
 * both. It is exact at every instruction, epilogue included, and in
 * fiber_trampoline it marks the return address undefined, which ends gdb's walk
 * cleanly instead of at the null return address.
 *
 * FIBER_SHARED_FP_ENV=1 leaves MXCSR and the x87 control word alone: faster, but
 * a rounding-mode or flush-to-zero change made in one fiber is then seen by every
 * fiber on the thread. FIBER_SWITCH_WITH_RET=1 returns with `ret` instead of an
 * indirect `jmp`; it exists so bench/ can measure the difference (the `ret` pops a
 * return-stack-buffer entry pushed by a different call, so it mispredicts).
 */
#include "switch_x86_64_ms_pe_gas.h"

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

/* A global function symbol in COFF. */
#define FUNCTION(name) .globl name; .def name; .scl 2; .type 32; .endef

#define XMM_SLOT(n) (FIBER_FRAME_XMM6 + 16 * ((n) - 6))

/* A push, for both unwind formats. */
#define PUSH(reg) pushq reg; .seh_pushreg reg; .cfi_adjust_cfa_offset 8; .cfi_rel_offset reg, 0
/* A pop in an epilogue: SEH needs no directive there, DWARF one per change. */
#define POP(reg) popq reg; .cfi_adjust_cfa_offset -8; .cfi_restore reg
/* xmm<n> to its slot, for both formats. */
#define SAVE_XMM(n) movaps %xmm##n, XMM_SLOT(n)(%rsp); .seh_savexmm %xmm##n, XMM_SLOT(n); \
                    .cfi_rel_offset %xmm##n, XMM_SLOT(n)

/* .cfi_startproc, with the return address in rip's column (16) and at CFA - 8, as
 * in GCC's own .debug_frame on this target. GNU as 2.40 makes column 32 the return
 * address column of PE x86-64 CIEs (saved at CFA - 8); in the psABI numbering that
 * gdb reads, 32 is xmm15, which this file saves too. The two lines after
 * .cfi_startproc undo that (and change nothing where the assembler does not do it). */
#define CFI_STARTPROC .cfi_startproc; .cfi_return_column %rip; .cfi_offset %rip, -8; \
                      .cfi_same_value %xmm15

    .cfi_sections .debug_frame
    .text

/* void* fiber_switch_context(void* to [rcx], void* data [rdx]) -> from [rax] */
    FUNCTION(SYM(fiber_switch_context))
    .p2align 4
SYM(fiber_switch_context):
    .seh_proc SYM(fiber_switch_context)
    CFI_STARTPROC
    PUSH(%rbp)
    PUSH(%rbx)
    PUSH(%rdi)
    PUSH(%rsi)
    PUSH(%r12)
    PUSH(%r13)
    PUSH(%r14)
    PUSH(%r15)
    subq    $FIBER_FRAME_R15, %rsp
    .seh_stackalloc FIBER_FRAME_R15
    .cfi_adjust_cfa_offset FIBER_FRAME_R15
    SAVE_XMM(6)
    SAVE_XMM(7)
    SAVE_XMM(8)
    SAVE_XMM(9)
    SAVE_XMM(10)
    SAVE_XMM(11)
    SAVE_XMM(12)
    SAVE_XMM(13)
    SAVE_XMM(14)
    SAVE_XMM(15)
    .seh_endprologue
#if !FIBER_SHARED_FP_ENV
    stmxcsr FIBER_FRAME_MXCSR(%rsp)
    fnstcw  FIBER_FRAME_X87CW(%rsp)
#endif
    movq    %gs:FIBER_TEB_EXCEPTION_LIST, %rax
    movq    %gs:FIBER_TEB_FIBER_DATA, %r8
    movq    %gs:FIBER_TEB_DEALLOCATION_STACK, %r9
    movq    %gs:FIBER_TEB_STACK_LIMIT, %r10
    movq    %gs:FIBER_TEB_STACK_BASE, %r11
    movq    %rax, FIBER_FRAME_EXCEPTION_LIST(%rsp)
    movq    %r8, FIBER_FRAME_FIBER_DATA(%rsp)
    movq    %r9, FIBER_FRAME_DEALLOCATION_STACK(%rsp)
    movq    %r10, FIBER_FRAME_STACK_LIMIT(%rsp)
    movq    %r11, FIBER_FRAME_STACK_BASE(%rsp)
    movq    %rdx, FIBER_FRAME_DATA(%rsp)

    /* The switch itself. From here on the frame being read is the target's; it has
     * the same layout, so the unwind information above stays true. */
    movq    %rsp, %rax
    movq    %rcx, %rsp

    /* The stack just changed: tell the system before anything else can look. */
    movq    FIBER_FRAME_EXCEPTION_LIST(%rsp), %rdx
    movq    FIBER_FRAME_FIBER_DATA(%rsp), %r8
    movq    FIBER_FRAME_DEALLOCATION_STACK(%rsp), %r9
    movq    FIBER_FRAME_STACK_LIMIT(%rsp), %r10
    movq    FIBER_FRAME_STACK_BASE(%rsp), %r11
    movq    %rdx, %gs:FIBER_TEB_EXCEPTION_LIST
    movq    %r8, %gs:FIBER_TEB_FIBER_DATA
    movq    %r9, %gs:FIBER_TEB_DEALLOCATION_STACK
    movq    %r10, %gs:FIBER_TEB_STACK_LIMIT
    movq    %r11, %gs:FIBER_TEB_STACK_BASE

#if !FIBER_SHARED_FP_ENV
    /* Loading MXCSR or the x87 control word stalls the pipeline on many cores, and
     * the value rarely differs between fibers: load only what changed. */
    movl    FIBER_FRAME_MXCSR(%rsp), %ecx
    cmpl    FIBER_FRAME_MXCSR(%rax), %ecx
    je      1f
    ldmxcsr FIBER_FRAME_MXCSR(%rsp)
1:
    movw    FIBER_FRAME_X87CW(%rsp), %cx
    cmpw    FIBER_FRAME_X87CW(%rax), %cx
    je      2f
    fldcw   FIBER_FRAME_X87CW(%rsp)
2:
#endif
    movaps  XMM_SLOT(6)(%rsp), %xmm6
    movaps  XMM_SLOT(7)(%rsp), %xmm7
    movaps  XMM_SLOT(8)(%rsp), %xmm8
    movaps  XMM_SLOT(9)(%rsp), %xmm9
    movaps  XMM_SLOT(10)(%rsp), %xmm10
    movaps  XMM_SLOT(11)(%rsp), %xmm11
    movaps  XMM_SLOT(12)(%rsp), %xmm12
    movaps  XMM_SLOT(13)(%rsp), %xmm13
    movaps  XMM_SLOT(14)(%rsp), %xmm14
    movaps  XMM_SLOT(15)(%rsp), %xmm15
    /* Restored: DWARF readers must no longer look for them below rsp, where
     * Windows may overwrite memory at any time (there is no red zone). */
    .cfi_restore %xmm6
    .cfi_restore %xmm7
    .cfi_restore %xmm8
    .cfi_restore %xmm9
    .cfi_restore %xmm10
    .cfi_restore %xmm11
    .cfi_restore %xmm12
    .cfi_restore %xmm13
    .cfi_restore %xmm14
    .cfi_restore %xmm15
    addq    $FIBER_FRAME_R15, %rsp
    .cfi_adjust_cfa_offset -FIBER_FRAME_R15
    POP(%r15)
    POP(%r14)
    POP(%r13)
    POP(%r12)
    POP(%rsi)
    POP(%rdi)
    POP(%rbx)
    POP(%rbp)
#if FIBER_SWITCH_WITH_RET
    ret
#else
    /* The return address belongs to a different call than the one that brought us
     * here; an indirect jump leaves the return-stack predictor out of it. */
    popq    %rcx
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rcx
    jmpq    *%rcx
#endif
    .cfi_endproc
    .seh_endproc

/* First code a fresh context runs, reached by the jump at the end of
 * fiber_switch_context: rax = from, rbx = arg, r12 = entry, rsp 16-aligned with 32
 * bytes of shadow space above it.
 *
 * The prologue is never executed: the fresh frame's pc is .Ltrampoline_body. It is
 * there for the unwind information, which thus says that this frame saved rbp and
 * allocated 32 bytes below a return address; in the fresh frame those hold 0 and
 * 0, and the unwound rsp is StackBase, where every Windows stack walk ends. (The
 * switch arrives with rsp 16-aligned, not 8 off as after a call, so a prologue
 * run from here would put the unwound rsp 8 off StackBase.) The function starts at
 * fiber_trampoline itself, so the unwinder's lookup of any address in it, such as
 * the return address of the call below, gives back &fiber_trampoline: that is how
 * fiber/src/context.cpp recognises a fiber's outermost frame. */
    FUNCTION(SYM(fiber_trampoline))
    .p2align 4
SYM(fiber_trampoline):
    .seh_proc SYM(fiber_trampoline)
    CFI_STARTPROC
    /* Nothing called this frame: for DWARF readers the walk ends here (the CFA,
     * rsp + 48 in the body, is StackBase, as for SEH). */
    .cfi_undefined %rip
    PUSH(%rbp)
    subq    $32, %rsp
    .seh_stackalloc 32
    .cfi_adjust_cfa_offset 32
    .seh_endprologue
.Ltrampoline_body:
    movq    %rax, %rcx      /* from */
    movq    %rbx, %rdx      /* arg */
    callq   *%r12
    ud2                     /* entry never returns */
    .cfi_endproc
    .seh_endproc

/* void* fiber_prepare_context(void* stack_top [rcx], entry [rdx], void* arg [r8],
 *                             void* stack_limit [r9]) -> sp [rax] */
    FUNCTION(SYM(fiber_prepare_context))
    .p2align 4
SYM(fiber_prepare_context):
    .seh_proc SYM(fiber_prepare_context)
    CFI_STARTPROC
    PUSH(%rbx)
    PUSH(%rsi)
    PUSH(%rdi)
    PUSH(%r12)
    subq    $40, %rsp               /* shadow space, and rsp 16-aligned at the call */
    .seh_stackalloc 40
    .cfi_adjust_cfa_offset 40
    .seh_endprologue
    movq    %rcx, %rbx              /* stack_top */
    movq    %rdx, %rsi              /* entry */
    movq    %r8, %rdi               /* arg */
    movq    %r9, %r12               /* stack_limit */
    movq    %r9, %rcx
    callq   fiber_stack_deallocation_base   /* fiber/src/stack.cpp */

    movq    %rbx, %rcx
    andq    $-16, %rcx              /* StackBase */
    leaq    -FIBER_TRAMPOLINE_FRAME(%rcx), %rdx   /* the trampoline's rsp */
    xorl    %r8d, %r8d
    movq    %r8, 40(%rdx)           /* null return address */
    movq    %r8, 32(%rdx)           /* "saved rbp" */
    movq    %r8, 24(%rdx)           /* shadow space, zeroed for tidiness */
    movq    %r8, 16(%rdx)
    movq    %r8, 8(%rdx)
    movq    %r8, (%rdx)
    subq    $FIBER_FRAME_SIZE, %rdx /* the saved sp of the fresh context */

    movq    %r8, FIBER_FRAME_DATA(%rdx)
    stmxcsr FIBER_FRAME_MXCSR(%rdx)
    fnstcw  FIBER_FRAME_X87CW(%rdx)
    movw    %r8w, FIBER_FRAME_X87CW+2(%rdx)
    movq    $FIBER_EXCEPTION_LIST_END, FIBER_FRAME_EXCEPTION_LIST(%rdx)
    movq    %r8, FIBER_FRAME_FIBER_DATA(%rdx)
    movq    %rax, FIBER_FRAME_DEALLOCATION_STACK(%rdx)
    movq    %r12, FIBER_FRAME_STACK_LIMIT(%rdx)
    movq    %rcx, FIBER_FRAME_STACK_BASE(%rdx)
    xorps   %xmm0, %xmm0
    movaps  %xmm0, XMM_SLOT(6)(%rdx)
    movaps  %xmm0, XMM_SLOT(7)(%rdx)
    movaps  %xmm0, XMM_SLOT(8)(%rdx)
    movaps  %xmm0, XMM_SLOT(9)(%rdx)
    movaps  %xmm0, XMM_SLOT(10)(%rdx)
    movaps  %xmm0, XMM_SLOT(11)(%rdx)
    movaps  %xmm0, XMM_SLOT(12)(%rdx)
    movaps  %xmm0, XMM_SLOT(13)(%rdx)
    movaps  %xmm0, XMM_SLOT(14)(%rdx)
    movaps  %xmm0, XMM_SLOT(15)(%rdx)
    movq    %r8, FIBER_FRAME_R15(%rdx)
    movq    %r8, FIBER_FRAME_R14(%rdx)
    movq    %r8, FIBER_FRAME_R13(%rdx)
    movq    %rsi, FIBER_FRAME_R12(%rdx)   /* entry */
    movq    %r8, FIBER_FRAME_RSI(%rdx)
    movq    %r8, FIBER_FRAME_RDI(%rdx)
    movq    %rdi, FIBER_FRAME_RBX(%rdx)   /* arg */
    movq    %r8, FIBER_FRAME_RBP(%rdx)
    leaq    .Ltrampoline_body(%rip), %rcx
    movq    %rcx, FIBER_FRAME_PC(%rdx)
    movq    %rdx, %rax

    addq    $40, %rsp
    .cfi_adjust_cfa_offset -40
    POP(%r12)
    POP(%rdi)
    POP(%rsi)
    POP(%rbx)
    ret
    .cfi_endproc
    .seh_endproc
