/* Context switch for x86_64, System V ABI, ELF, GNU assembler.
 *
 * Primitives (contract in fiber/include/fiber/detail/switch.h;
 * offsets in arch/switch_x86_64_sysv_elf_gas.h):
 *   fiber_prepare_context(stack_top, entry, arg, limit) -> sp   build a fresh context
 *   fiber_switch_context(to, data)                      -> from switch, passing data
 *
 * What a callee must preserve, per the System V AMD64 psABI (v1.0, section 3.2.1,
 * "Registers", and Figure 3.4 "Register Usage"):
 *   - rbx, rbp, r12-r15 and rsp ("belong to the calling function");
 *   - the control bits of MXCSR ("callee-saved, while the status bits are
 *     caller-saved");
 *   - the x87 control word ("callee-saved"; the status word is caller-saved).
 * No xmm register is callee-saved on System V.
 *
 * The lean convention. A switch is a call that returns somewhere else, so the code
 * around it has to treat every register the switch does not restore as clobbered.
 * Here that is put to use: fiber_switch_context saves and restores only rbp, rsp,
 * the resume address and the FP control state, and its only caller,
 * fiber::detail::switch_context() (switch.h), is an asm statement that declares
 * rbx, r12-r15 and every caller-saved register clobbered. The compiler then saves
 * around the switch only the registers that hold live values there (in a tight
 * generator loop, often none) instead of the switch saving all six every time.
 * The ABI still holds at every ordinary function boundary: the function containing
 * the asm statement preserves its callee-saved registers for its own caller, which
 * is what tests/registers_test.cpp checks. The asm statement steps over the
 * 128-byte red zone before it jumps in (the compiler may keep data there,
 * believing the statement calls nothing); the CFI below accounts for that 128 so
 * unwinders and debuggers find the caller's frame. A suspended context's caller
 * therefore sees its own stack pointer at saved sp + 32 + 128 (FIBER_FRAME_CALLER_SP),
 * with its pc at the saved pc: that is what a debugger unwinding a suspended fiber
 * starts from.
 *
 * A suspended context, at its saved stack pointer (addresses grow upwards; every
 * offset is named in arch/switch_x86_64_sysv_elf_gas.h and checked from C++):
 *
 *          +------------------------+
 *          | 128-byte red zone      |  stepped over by the caller
 *          +------------------------+  <- sp + 48
 *     +40  | pc                     |  where the suspended side resumes
 *     +32  | rbp                    |
 *     +24  | (padding)              |
 *     +16  | record                 |  its fiber record, or 0 for a thread's own stack
 *     +12  | x87 cw (2) | pad (2)   |
 *      +8  | mxcsr (4)              |
 *      +0  | data                   |  the value passed by the suspending side
 *          +------------------------+  <- saved sp
 *
 * A fresh context from fiber_prepare_context is the same frame with pc pointing into
 * fiber_trampoline, rbp = 0, record = 0 (make_fiber writes the fiber's record there)
 * and the FP control state of the thread that prepared it; above it lie the entry
 * function's argument and address, then a zero word that ends frame-pointer walks:
 *
 *          +------------------------+  <- stack_top rounded down to 16
 *     +72  | 0 (padding)            |
 *     +64  | 0 (null return addr)   |
 *     +56  | entry                  |
 *     +48  | arg                    |  <- sp seen by fiber_trampoline (16-aligned)
 *     +40  | fiber_trampoline       |  pc
 *     +32  | 0                      |  rbp: ends the frame-pointer chain
 *     +16  | 0                      |  record (and padding)
 *      +8  | x87 cw, mxcsr          |
 *      +0  | 0                      |  data
 *          +------------------------+  <- returned sp (16-aligned)
 *
 * The bookkeeping (FIBER_SWITCH_TRACKS, switch.h). Debuggers and fiber::dump() need
 * to know which fiber runs on each thread and where every other one is suspended,
 * and each flow keeps its own C++ exception state. Here rather than around the call
 * in C++, the test for exception state and the bookkeeping cost no register the
 * compiler must keep across the switch and nothing on the resumed side: the
 * suspending side writes its record (the thread's running one) into its own frame
 * and its stack pointer into that record, and the thread's running record becomes
 * the one the target's frame holds. Measured here (bench/fiber_bench.cpp,
 * switch/fiber_context round trip, this AMD EPYC): 10.7 ns (shared FP: 4.0-4.3 ns)
 * with the same work in C++ around the call, 10.3-10.4 ns (3.5 ns) here. What it
 * still costs: a bare loop of this switch took 8.93 ns per round trip without it,
 * 9.47 ns with the exception-state test alone, 9.49 ns with everything (shared FP:
 * 2.27, 2.77, 3.08 ns). Any load that depends on another load and decides a branch
 * cost that much, wherever it stood in the sequence; two loads from fixed
 * addresses cost nothing. STMXCSR itself takes 3.3-3.9 ns on this CPU, twice per
 * round trip: most of the default build's time.
 *
 * FIBER_SHARED_FP_ENV=1 leaves MXCSR and the x87 control word alone: faster, but
 * a rounding-mode or flush-to-zero change made in one fiber is then seen by every
 * fiber on the thread. FIBER_SWITCH_WITH_RET=1 makes the switch a called function
 * that returns with `ret` instead of a jumped-into one that leaves with an indirect
 * `jmp`; it exists only so bench/ can measure the difference (the `ret` pops a
 * return-stack-buffer entry pushed by a different call, so it mispredicts).
 */
#include "switch_x86_64_sysv_elf_gas.h"

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

/* The caller's CFA (its stack pointer before the switch) is the red zone above
 * our stack pointer at entry, plus the return address when entered by a call. */
#define CALLER_CFA_JUMP FIBER_RED_ZONE
#define CALLER_CFA_CALL (FIBER_RED_ZONE + 8)

    .text

/* fiber_switch_context: to [rdi], data [rsi], resume pc [rcx] -> from [rax]
 *
 * Entered by a jump, not a call (FIBER_DETAIL_LEAN_SWITCH_CALL in switch.h): the
 * caller has stepped over its red zone and put the address to resume at in rcx.
 * A call would push a return-stack-buffer entry that no `ret` ever pops, and on
 * the CPUs measured here (bench/) that costs more than the rest of the switch:
 * a round trip through a called switch took 2.7 times as long as through this
 * jumped-into one. Preserves rbp, rsp and the FP control state only (lean
 * convention, above). With FIBER_SWITCH_WITH_RET it is the mismatched call/ret
 * switch instead, entered by a call, for bench/ to compare. */
    .globl  SYM(fiber_switch_context)
    .type   SYM(fiber_switch_context), @function
    .p2align 4
SYM(fiber_switch_context):
    .cfi_startproc
#if FIBER_SWITCH_WITH_RET
    .cfi_def_cfa_offset CALLER_CFA_CALL
    .cfi_offset %rip, -CALLER_CFA_CALL
#else
    .cfi_def_cfa_offset CALLER_CFA_JUMP
    .cfi_register %rip, %rcx
#endif
    .cfi_remember_state     /* for .Lrefuse, which leaves before the frame is made */
    /* Exception state first (switch.h, FIBER_SWITCH_TRACKS): rdx = the thread's
     * tls_state (initial-exec TLS, at a fixed offset from %fs), r8 = where the C++
     * runtime keeps the thread's exception state. Anything there (or the mark of a
     * thread's first switch): refuse, returning null; the C++ side then switches
     * carefully. One or, with the uncaught count, two loads of a line every switch
     * touches anyway. */
    movq    FIBER_THREAD_STATE_SYMBOL@gottpoff(%rip), %rdx
    movq    %fs:FIBER_THREAD_EH(%rdx), %r8
    movl    FIBER_EH_UNCAUGHT(%r8), %r9d
    orq     FIBER_EH_CAUGHT(%r8), %r9
    jnz     .Lrefuse
#if FIBER_SWITCH_WITH_RET
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    subq    $FIBER_FRAME_RBP, %rsp
    .cfi_adjust_cfa_offset FIBER_FRAME_RBP
#else
    subq    $FIBER_FRAME_SIZE, %rsp
    .cfi_adjust_cfa_offset FIBER_FRAME_SIZE
    movq    %rcx, FIBER_FRAME_PC(%rsp)
    .cfi_rel_offset %rip, FIBER_FRAME_PC
    movq    %rbp, FIBER_FRAME_RBP(%rsp)
    .cfi_rel_offset %rbp, FIBER_FRAME_RBP
#endif
#if !FIBER_SHARED_FP_ENV
    stmxcsr FIBER_FRAME_MXCSR(%rsp)
    fnstcw  FIBER_FRAME_X87CW(%rsp)
#endif
    movq    %rsi, FIBER_FRAME_DATA(%rsp)
    movq    %rsp, %rax
    /* The bookkeeping (above): r8 = the record of the flow suspending now, r9 = the
     * target's. A thread's own stack has no record: nothing to note then. */
    movq    %fs:FIBER_THREAD_RUNNING(%rdx), %r8
    movq    %r8, FIBER_FRAME_RECORD(%rsp)
    testq   %r8, %r8
    jz      2f
    movq    %rsp, FIBER_RECORD_SAVED_SP(%r8)
2:
    movq    FIBER_FRAME_RECORD(%rdi), %r9
    movq    %r9, %fs:FIBER_THREAD_RUNNING(%rdx)
#if !FIBER_SHARED_FP_ENV
    /* MXCSR is loaded unconditionally: reading back the value stmxcsr just stored,
     * to skip an unchanged load, measured slower (bench/). fldcw is the expensive
     * one of the x87 pair, and the control word rarely differs: load it only when
     * it does. */
    ldmxcsr FIBER_FRAME_MXCSR(%rdi)
    movw    FIBER_FRAME_X87CW(%rdi), %cx
    cmpw    FIBER_FRAME_X87CW(%rax), %cx
    je      1f
    fldcw   FIBER_FRAME_X87CW(%rdi)
1:
#endif
#if FIBER_SWITCH_WITH_RET
    /* The switch itself. From here on the frame being read is the target's; it has
     * the same layout, so the CFI above stays true. */
    movq    %rdi, %rsp
    addq    $FIBER_FRAME_RBP, %rsp
    .cfi_adjust_cfa_offset -FIBER_FRAME_RBP
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    ret
#else
    /* The switch itself: the target's frame has the same layout, so once rsp
     * points just above it the CFI above describes the target's caller. The target
     * resumes with rsp just above its frame, as a called switch's `ret` would leave
     * it, and jumps from there over its red zone (switch.h). */
    movq    FIBER_FRAME_RBP(%rdi), %rbp
    leaq    FIBER_FRAME_SIZE(%rdi), %rsp
    .cfi_adjust_cfa_offset -FIBER_FRAME_SIZE
    /* Read 8 bytes below rsp, inside the red zone, where no signal can reach. An
     * indirect jump: the return-stack predictor never sees the switch. */
    jmpq    *(FIBER_FRAME_PC - FIBER_FRAME_SIZE)(%rsp)
#endif
    /* Refused (exception state on the thread): back to the caller, unswitched,
     * returning null. */
    .cfi_restore_state
.Lrefuse:
    xorl    %eax, %eax
#if FIBER_SWITCH_WITH_RET
    ret
#else
    jmpq    *%rcx
#endif
    .cfi_endproc
    .size   SYM(fiber_switch_context), .-SYM(fiber_switch_context)

/* First code a fresh context runs, reached by the jump at the end of
 * fiber_switch_context: rax = from, rsp 16-byte aligned and pointing at arg, entry. */
    .globl  SYM(fiber_trampoline)
    .hidden SYM(fiber_trampoline)
    .type   SYM(fiber_trampoline), @function
    .p2align 4
SYM(fiber_trampoline):
    .cfi_startproc
    /* Nothing called this frame: tell unwinders and debuggers that the walk ends. */
    .cfi_undefined %rip
    /* A fresh frame's pc is the next instruction. Unwinders look a return address
     * up at pc - 1, which must fall in this FDE, not in the function before it. */
    nop
.Lfiber_trampoline_start:
    movq    %rax, %rdi
    movq    0(%rsp), %rsi
    callq   *8(%rsp)
    ud2                     /* entry never returns */
    .cfi_endproc
    .size   SYM(fiber_trampoline), .-SYM(fiber_trampoline)

/* void* fiber_prepare_context(void* stack_top [rdi], entry [rsi], void* arg [rdx],
 *                             void* stack_limit [rcx], unused here) */
    .globl  SYM(fiber_prepare_context)
    .type   SYM(fiber_prepare_context), @function
    .p2align 4
SYM(fiber_prepare_context):
    .cfi_startproc
    movq    %rdi, %rax
    andq    $-16, %rax
    subq    $FIBER_FRESH_SIZE, %rax /* the saved sp of the fresh context, 16-aligned */
    movq    $0, FIBER_FRAME_DATA(%rax)
    stmxcsr FIBER_FRAME_MXCSR(%rax)
    fnstcw  FIBER_FRAME_X87CW(%rax)
    movw    $0, FIBER_FRAME_X87CW+2(%rax)
    movq    $0, FIBER_FRAME_RECORD(%rax)
    movq    $0, FIBER_FRAME_RECORD+8(%rax)
    movq    $0, FIBER_FRAME_RBP(%rax)
    leaq    .Lfiber_trampoline_start(%rip), %rcx
    movq    %rcx, FIBER_FRAME_PC(%rax)
    movq    %rdx, FIBER_FRESH_ARG(%rax)
    movq    %rsi, FIBER_FRESH_ENTRY(%rax)
    movq    $0, FIBER_FRESH_ENTRY+8(%rax)
    movq    $0, FIBER_FRESH_ENTRY+16(%rax)
    ret
    .cfi_endproc
    .size   SYM(fiber_prepare_context), .-SYM(fiber_prepare_context)

    .section .note.GNU-stack, "", @progbits
