/* Test helpers for x86_64 System V: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (rbx, rbp,
 *       r12-r15), calls fn(arg), and returns a bit mask of the registers that no
 *       longer hold their pattern (bit i = i-th register in that order).
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer at the call instruction (before the push).
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      (x87 control word << 32) | MXCSR without
 *                                         its status flags (bits 0-5)
 *   void fiber_test_fp_set(uint64_t)      loads both
 *   uint64_t fiber_test_fp_unusual(void)  the current state with both units
 *                                         rounding upward, plus flush-to-zero and
 *                                         denormals-are-zero
 */
    .text

#define SAVE_CALLEE_SAVED \
    pushq %rbp; .cfi_adjust_cfa_offset 8; .cfi_rel_offset %rbp, 0; \
    pushq %rbx; .cfi_adjust_cfa_offset 8; .cfi_rel_offset %rbx, 0; \
    pushq %r12; .cfi_adjust_cfa_offset 8; .cfi_rel_offset %r12, 0; \
    pushq %r13; .cfi_adjust_cfa_offset 8; .cfi_rel_offset %r13, 0; \
    pushq %r14; .cfi_adjust_cfa_offset 8; .cfi_rel_offset %r14, 0; \
    pushq %r15; .cfi_adjust_cfa_offset 8; .cfi_rel_offset %r15, 0; \
    subq $8, %rsp; .cfi_adjust_cfa_offset 8

#define RESTORE_CALLEE_SAVED \
    addq $8, %rsp; .cfi_adjust_cfa_offset -8; \
    popq %r15; .cfi_adjust_cfa_offset -8; .cfi_restore %r15; \
    popq %r14; .cfi_adjust_cfa_offset -8; .cfi_restore %r14; \
    popq %r13; .cfi_adjust_cfa_offset -8; .cfi_restore %r13; \
    popq %r12; .cfi_adjust_cfa_offset -8; .cfi_restore %r12; \
    popq %rbx; .cfi_adjust_cfa_offset -8; .cfi_restore %rbx; \
    popq %rbp; .cfi_adjust_cfa_offset -8; .cfi_restore %rbp

#define CHECK(reg, value, bit) \
    movabsq $value, %rcx; cmpq %rcx, reg; je 1f; orl $(1 << bit), %eax; 1:

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, @function
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    movq    %rdi, %rax
    movq    %rsi, %rdi
    movabsq $0x1b1b1b1b1b1b1b01, %rbx
    movabsq $0x2b2b2b2b2b2b2b02, %rbp
    movabsq $0x3c3c3c3c3c3c3c03, %r12
    movabsq $0x4d4d4d4d4d4d4d04, %r13
    movabsq $0x5e5e5e5e5e5e5e05, %r14
    movabsq $0x6f6f6f6f6f6f6f06, %r15
    callq   *%rax
    xorl    %eax, %eax
    CHECK(%rbx, 0x1b1b1b1b1b1b1b01, 0)
    CHECK(%rbp, 0x2b2b2b2b2b2b2b02, 1)
    CHECK(%r12, 0x3c3c3c3c3c3c3c03, 2)
    CHECK(%r13, 0x4d4d4d4d4d4d4d04, 3)
    CHECK(%r14, 0x5e5e5e5e5e5e5e05, 4)
    CHECK(%r15, 0x6f6f6f6f6f6f6f06, 5)
    RESTORE_CALLEE_SAVED
    ret
    .cfi_endproc
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, @function
fiber_test_clobber_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    movq    %rdi, %rax
    movq    %rsi, %rdi
    movabsq $0xdead00000000beef, %rbx
    movabsq $0xdead11111111beef, %rbp
    movabsq $0xdead22222222beef, %r12
    movabsq $0xdead33333333beef, %r13
    movabsq $0xdead44444444beef, %r14
    movabsq $0xdead55555555beef, %r15
    callq   *%rax
    RESTORE_CALLEE_SAVED
    ret
    .cfi_endproc
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, @function
fiber_test_caller_sp:
    .cfi_startproc
    leaq    8(%rsp), %rax
    ret
    .cfi_endproc
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

/* The leaf helpers below use the red zone (128 bytes below rsp) as scratch. */
    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, @function
fiber_test_fp_get:
    .cfi_startproc
    stmxcsr -8(%rsp)
    fnstcw  -4(%rsp)
    movl    -8(%rsp), %eax
    andl    $~0x3f, %eax
    movzwl  -4(%rsp), %ecx
    shlq    $32, %rcx
    orq     %rcx, %rax
    ret
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, @function
fiber_test_fp_set:
    .cfi_startproc
    movl    %edi, -8(%rsp)
    ldmxcsr -8(%rsp)
    shrq    $32, %rdi
    movw    %di, -4(%rsp)
    fldcw   -4(%rsp)
    ret
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, @function
fiber_test_fp_unusual:
    .cfi_startproc
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    callq   fiber_test_fp_get
    addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    movabsq $~0x00000c0000006000, %rcx   /* both rounding-control fields */
    andq    %rcx, %rax
    movabsq $0x000008000000c040, %rcx    /* x87 RC=up; MXCSR RC=up, FTZ, DAZ */
    orq     %rcx, %rax
    ret
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", @progbits
