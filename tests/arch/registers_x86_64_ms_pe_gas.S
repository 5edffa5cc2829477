/* Test helpers for x86_64 Windows (Microsoft x64 ABI, PE/COFF): see
 * tests/registers_test.cpp. Arguments arrive in rcx, rdx; every call gets 32 bytes
 * of shadow space; the stack is 16-aligned at calls; there is no red zone.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (rbx, rbp,
 *       r12-r15, rdi, rsi, and all 128 bits of xmm6-xmm15), calls fn(arg), and
 *       returns a bit mask of the registers that no longer hold their pattern:
 *       bits 0-7 = rbx, rbp, r12, r13, r14, r15, rdi, rsi; bits 8-17 = xmm6-xmm15.
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
#define FUNCTION(name) .globl name; .def name; .scl 2; .type 32; .endef

/* The frame of the two register helpers, below their eight pushes:
 *   [rsp, rsp+32)     shadow space for the call of fn
 *   [rsp+32, rsp+48)  scratch
 *   [rsp+48, rsp+208) xmm6..xmm15 of the caller (16-aligned)
 *   [rsp+208, +216)   pad: the return address and 8 pushes are 72 bytes */
#define FRAME 216
#define SLOT(n) (48 + 16 * ((n) - 6))

#define SAVE_XMM(n) movaps %xmm##n, SLOT(n)(%rsp); .seh_savexmm %xmm##n, SLOT(n)
#define LOAD_XMM(n) movaps SLOT(n)(%rsp), %xmm##n

#define PROLOGUE \
    pushq %rbp; .seh_pushreg %rbp; \
    pushq %rbx; .seh_pushreg %rbx; \
    pushq %rdi; .seh_pushreg %rdi; \
    pushq %rsi; .seh_pushreg %rsi; \
    pushq %r12; .seh_pushreg %r12; \
    pushq %r13; .seh_pushreg %r13; \
    pushq %r14; .seh_pushreg %r14; \
    pushq %r15; .seh_pushreg %r15; \
    subq $FRAME, %rsp; .seh_stackalloc FRAME; \
    SAVE_XMM(6); SAVE_XMM(7); SAVE_XMM(8); SAVE_XMM(9); SAVE_XMM(10); \
    SAVE_XMM(11); SAVE_XMM(12); SAVE_XMM(13); SAVE_XMM(14); SAVE_XMM(15); \
    .seh_endprologue

#define EPILOGUE \
    LOAD_XMM(6); LOAD_XMM(7); LOAD_XMM(8); LOAD_XMM(9); LOAD_XMM(10); \
    LOAD_XMM(11); LOAD_XMM(12); LOAD_XMM(13); LOAD_XMM(14); LOAD_XMM(15); \
    addq $FRAME, %rsp; \
    popq %r15; popq %r14; popq %r13; popq %r12; \
    popq %rsi; popq %rdi; popq %rbx; popq %rbp; \
    ret

/* Patterns: the k-th xmm register gets the 16 bytes at table + 16*(n-6). */
    .section .rdata, "dr"
    .p2align 4
.Lxmm_pattern:
    .quad 0x0606060606060616, 0x6060606060606061
    .quad 0x0707070707070717, 0x7070707070707071
    .quad 0x0808080808080818, 0x8080808080808081
    .quad 0x0909090909090919, 0x9090909090909091
    .quad 0x0a0a0a0a0a0a0a1a, 0xa0a0a0a0a0a0a0a1
    .quad 0x0b0b0b0b0b0b0b1b, 0xb0b0b0b0b0b0b0b1
    .quad 0x0c0c0c0c0c0c0c1c, 0xc0c0c0c0c0c0c0c1
    .quad 0x0d0d0d0d0d0d0d1d, 0xd0d0d0d0d0d0d0d1
    .quad 0x0e0e0e0e0e0e0e1e, 0xe0e0e0e0e0e0e0e1
    .quad 0x0f0f0f0f0f0f0f1f, 0xf0f0f0f0f0f0f0f1
.Lxmm_garbage:
    .quad 0xdead66666666beef, 0xbad0000000000006
    .quad 0xdead77777777beef, 0xbad0000000000007
    .quad 0xdead88888888beef, 0xbad0000000000008
    .quad 0xdead99999999beef, 0xbad0000000000009
    .quad 0xdeadaaaaaaaabeef, 0xbad000000000000a
    .quad 0xdeadbbbbbbbbbeef, 0xbad000000000000b
    .quad 0xdeadccccccccbeef, 0xbad000000000000c
    .quad 0xdeaddddddddddeef, 0xbad000000000000d
    .quad 0xdeadeeeeeeeebeef, 0xbad000000000000e
    .quad 0xdeadffffffffbeef, 0xbad000000000000f

    .text

#define PATTERN(n) .Lxmm_pattern + 16 * ((n) - 6)(%rip)
#define GARBAGE(n) .Lxmm_garbage + 16 * ((n) - 6)(%rip)

#define CHECK(reg, value, bit) \
    movabsq $value, %rcx; cmpq %rcx, reg; je 1f; orl $(1 << (bit)), %eax; 1:
/* All 16 bytes equal: pcmpeqb sets every byte of the register to 0xff. */
#define CHECK_XMM(n) \
    pcmpeqb PATTERN(n), %xmm##n; pmovmskb %xmm##n, %ecx; cmpl $0xffff, %ecx; je 1f; \
    orl $(1 << (8 + (n) - 6)), %eax; 1:

    FUNCTION(fiber_test_check_registers)
    .p2align 4
fiber_test_check_registers:
    .seh_proc fiber_test_check_registers
    PROLOGUE
    movq    %rcx, %rax
    movq    %rdx, %rcx
    movabsq $0x1b1b1b1b1b1b1b01, %rbx
    movabsq $0x2b2b2b2b2b2b2b02, %rbp
    movabsq $0x3c3c3c3c3c3c3c03, %r12
    movabsq $0x4d4d4d4d4d4d4d04, %r13
    movabsq $0x5e5e5e5e5e5e5e05, %r14
    movabsq $0x6f6f6f6f6f6f6f06, %r15
    movabsq $0x7a7a7a7a7a7a7a07, %rdi
    movabsq $0x8b8b8b8b8b8b8b08, %rsi
    movaps  PATTERN(6), %xmm6
    movaps  PATTERN(7), %xmm7
    movaps  PATTERN(8), %xmm8
    movaps  PATTERN(9), %xmm9
    movaps  PATTERN(10), %xmm10
    movaps  PATTERN(11), %xmm11
    movaps  PATTERN(12), %xmm12
    movaps  PATTERN(13), %xmm13
    movaps  PATTERN(14), %xmm14
    movaps  PATTERN(15), %xmm15
    callq   *%rax
    xorl    %eax, %eax
    CHECK(%rbx, 0x1b1b1b1b1b1b1b01, 0)
    CHECK(%rbp, 0x2b2b2b2b2b2b2b02, 1)
    CHECK(%r12, 0x3c3c3c3c3c3c3c03, 2)
    CHECK(%r13, 0x4d4d4d4d4d4d4d04, 3)
    CHECK(%r14, 0x5e5e5e5e5e5e5e05, 4)
    CHECK(%r15, 0x6f6f6f6f6f6f6f06, 5)
    CHECK(%rdi, 0x7a7a7a7a7a7a7a07, 6)
    CHECK(%rsi, 0x8b8b8b8b8b8b8b08, 7)
    CHECK_XMM(6)
    CHECK_XMM(7)
    CHECK_XMM(8)
    CHECK_XMM(9)
    CHECK_XMM(10)
    CHECK_XMM(11)
    CHECK_XMM(12)
    CHECK_XMM(13)
    CHECK_XMM(14)
    CHECK_XMM(15)
    EPILOGUE
    .seh_endproc

    FUNCTION(fiber_test_clobber_registers)
    .p2align 4
fiber_test_clobber_registers:
    .seh_proc fiber_test_clobber_registers
    PROLOGUE
    movq    %rcx, %rax
    movq    %rdx, %rcx
    movabsq $0xdead00000000beef, %rbx
    movabsq $0xdead11111111beef, %rbp
    movabsq $0xdead22222222beef, %r12
    movabsq $0xdead33333333beef, %r13
    movabsq $0xdead44444444beef, %r14
    movabsq $0xdead55555555beef, %r15
    movabsq $0xdeadaaaaaaaabeef, %rdi
    movabsq $0xdeadbbbbbbbbbeef, %rsi
    movaps  GARBAGE(6), %xmm6
    movaps  GARBAGE(7), %xmm7
    movaps  GARBAGE(8), %xmm8
    movaps  GARBAGE(9), %xmm9
    movaps  GARBAGE(10), %xmm10
    movaps  GARBAGE(11), %xmm11
    movaps  GARBAGE(12), %xmm12
    movaps  GARBAGE(13), %xmm13
    movaps  GARBAGE(14), %xmm14
    movaps  GARBAGE(15), %xmm15
    callq   *%rax
    EPILOGUE
    .seh_endproc

    FUNCTION(fiber_test_caller_sp)
    .p2align 4
fiber_test_caller_sp:
    .seh_proc fiber_test_caller_sp
    .seh_endprologue
    leaq    8(%rsp), %rax
    ret
    .seh_endproc

/* The leaf helpers below use their own shadow space (rsp+8..rsp+40, owned by the
 * callee) as scratch: the Microsoft ABI has no red zone. */
    FUNCTION(fiber_test_fp_get)
    .p2align 4
fiber_test_fp_get:
    .seh_proc fiber_test_fp_get
    .seh_endprologue
    stmxcsr 8(%rsp)
    fnstcw  12(%rsp)
    movl    8(%rsp), %eax
    andl    $~0x3f, %eax
    movzwl  12(%rsp), %ecx
    shlq    $32, %rcx
    orq     %rcx, %rax
    ret
    .seh_endproc

    FUNCTION(fiber_test_fp_set)
    .p2align 4
fiber_test_fp_set:
    .seh_proc fiber_test_fp_set
    .seh_endprologue
    movl    %ecx, 8(%rsp)
    ldmxcsr 8(%rsp)
    shrq    $32, %rcx
    movw    %cx, 12(%rsp)
    fldcw   12(%rsp)
    ret
    .seh_endproc

    FUNCTION(fiber_test_fp_unusual)
    .p2align 4
fiber_test_fp_unusual:
    .seh_proc fiber_test_fp_unusual
    subq    $40, %rsp               /* shadow space; rsp 16-aligned at the call */
    .seh_stackalloc 40
    .seh_endprologue
    callq   fiber_test_fp_get
    addq    $40, %rsp
    movabsq $~0x00000c0000006000, %rcx   /* both rounding-control fields */
    andq    %rcx, %rax
    movabsq $0x000008000000c040, %rcx    /* x87 RC=up; MXCSR RC=up, FTZ, DAZ */
    orq     %rcx, %rax
    ret
    .seh_endproc
