/* Test helpers for i386 System V: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (ebx, esi, edi,
 *       ebp), calls fn(arg), and returns a bit mask of the registers that no
 *       longer hold their pattern (bit i = i-th register in that order). i386 has
 *       no callee-saved floating-point data register (st0-st7 and xmm0-xmm7 all
 *       belong to the callee), so there is none to check.
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer at the call instruction (before the push).
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      (x87 control word << 32) | MXCSR without
 *                                         its status flags (bits 0-5); the MXCSR
 *                                         half is 0 on a CPU without SSE
 *   void fiber_test_fp_set(uint64_t)      loads both (MXCSR only if the CPU has it)
 *   uint64_t fiber_test_fp_unusual(void)  the current state with both units
 *                                         rounding upward, plus flush-to-zero in
 *                                         MXCSR (x87 has no flush-to-zero)
 * 64-bit values travel in edx:eax (results) and as two stack words (arguments).
 */
    .text

#define SAVE_CALLEE_SAVED \
    pushl %ebp; .cfi_adjust_cfa_offset 4; .cfi_rel_offset %ebp, 0; \
    pushl %ebx; .cfi_adjust_cfa_offset 4; .cfi_rel_offset %ebx, 0; \
    pushl %esi; .cfi_adjust_cfa_offset 4; .cfi_rel_offset %esi, 0; \
    pushl %edi; .cfi_adjust_cfa_offset 4; .cfi_rel_offset %edi, 0

#define RESTORE_CALLEE_SAVED \
    popl %edi; .cfi_adjust_cfa_offset -4; .cfi_restore %edi; \
    popl %esi; .cfi_adjust_cfa_offset -4; .cfi_restore %esi; \
    popl %ebx; .cfi_adjust_cfa_offset -4; .cfi_restore %ebx; \
    popl %ebp; .cfi_adjust_cfa_offset -4; .cfi_restore %ebp

/* After SAVE_CALLEE_SAVED, fn is at 20(%esp) and arg at 24(%esp). The call keeps
 * esp 16-byte aligned: entry 12 mod 16, four pushes, 8 bytes of padding and the
 * pushed argument bring it back to 0 mod 16. fn is kept in eax (caller-saved, not
 * one of the registers under test). */
#define CALL_FN_ARG \
    movl 20(%esp), %eax; movl 24(%esp), %ecx; \
    subl $8, %esp; .cfi_adjust_cfa_offset 8; \
    pushl %ecx; .cfi_adjust_cfa_offset 4

#define AFTER_CALL \
    addl $12, %esp; .cfi_adjust_cfa_offset -12

#define CHECK(reg, value, bit) \
    cmpl $value, reg; je 1f; orl $(1 << bit), %eax; 1:

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, @function
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    CALL_FN_ARG
    movl    $0x1b1b1b01, %ebx
    movl    $0x2c2c2c02, %esi
    movl    $0x3d3d3d03, %edi
    movl    $0x4e4e4e04, %ebp
    calll   *%eax
    AFTER_CALL
    xorl    %eax, %eax
    CHECK(%ebx, 0x1b1b1b01, 0)
    CHECK(%esi, 0x2c2c2c02, 1)
    CHECK(%edi, 0x3d3d3d03, 2)
    CHECK(%ebp, 0x4e4e4e04, 3)
    RESTORE_CALLEE_SAVED
    ret
    .cfi_endproc
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, @function
fiber_test_clobber_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    CALL_FN_ARG
    movl    $0xdead00be, %ebx
    movl    $0xdead11be, %esi
    movl    $0xdead22be, %edi
    movl    $0xdead33be, %ebp
    calll   *%eax
    AFTER_CALL
    RESTORE_CALLEE_SAVED
    ret
    .cfi_endproc
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, @function
fiber_test_caller_sp:
    .cfi_startproc
    leal    4(%esp), %eax
    ret
    .cfi_endproc
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

/* eax = 1 if the CPU has SSE (CPUID leaf 1, edx bit 25), else 0. Clobbers ecx, edx;
 * preserves ebx, which CPUID writes. */
    .type   has_sse, @function
has_sse:
    .cfi_startproc
    pushl   %ebx
    .cfi_adjust_cfa_offset 4
    .cfi_rel_offset %ebx, 0
    movl    $1, %eax
    cpuid
    xorl    %eax, %eax
    btl     $25, %edx
    adcl    $0, %eax
    popl    %ebx
    .cfi_adjust_cfa_offset -4
    .cfi_restore %ebx
    ret
    .cfi_endproc
    .size   has_sse, .-has_sse

/* The helpers below keep 16 bytes of scratch below their return address:
 * 0(%esp) MXCSR, 4(%esp) x87 control word. */
    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, @function
fiber_test_fp_get:
    .cfi_startproc
    subl    $12, %esp
    .cfi_adjust_cfa_offset 12
    movl    $0, (%esp)
    call    has_sse
    testl   %eax, %eax
    jz      1f
    stmxcsr (%esp)
1:
    movl    $0, 4(%esp)
    fnstcw  4(%esp)
    movl    (%esp), %eax
    andl    $~0x3f, %eax
    movl    4(%esp), %edx
    addl    $12, %esp
    .cfi_adjust_cfa_offset -12
    ret
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, @function
fiber_test_fp_set:
    .cfi_startproc
    subl    $12, %esp
    .cfi_adjust_cfa_offset 12
    call    has_sse
    testl   %eax, %eax
    jz      1f
    movl    16(%esp), %eax          /* low word: MXCSR */
    movl    %eax, (%esp)
    ldmxcsr (%esp)
1:
    movl    20(%esp), %eax          /* high word: x87 control word */
    movl    %eax, 4(%esp)
    fldcw   4(%esp)
    addl    $12, %esp
    .cfi_adjust_cfa_offset -12
    ret
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, @function
fiber_test_fp_unusual:
    .cfi_startproc
    subl    $12, %esp
    .cfi_adjust_cfa_offset 12
    call    has_sse
    movl    %eax, (%esp)
    call    fiber_test_fp_get
    andl    $~0x0c00, %edx          /* x87 RC = up (10b in bits 10-11) */
    orl     $0x0800, %edx
    cmpl    $0, (%esp)
    je      1f
    andl    $~0x6000, %eax          /* MXCSR RC = up (10b in bits 13-14), FTZ */
    orl     $0xc000, %eax
1:
    addl    $12, %esp
    .cfi_adjust_cfa_offset -12
    ret
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", @progbits
