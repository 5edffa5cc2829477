/* Test helpers for 64-bit POWER, ELF V2 ABI (ppc64le): see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (r14-r31,
 *       f14-f31, v20-v31, CR fields 2-4), calls fn(arg), and returns a bit mask
 *       of the registers that no longer hold their pattern. There are 51 of them,
 *       more than `unsigned` has bits, so register i of this list sets bit i % 32:
 *         i =  0..17  r14..r31
 *         i = 18..35  f14..f31
 *         i = 36..47  v20..v31
 *         i = 48..50  CR2, CR3, CR4
 *       (r2 is restored from the TOC save slot by the caller after any indirect
 *       call, so it is not checked; VRSAVE is reserved in ELFv2 and not touched.)
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer (r1) at the call.
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp): the ELFv2
 * "limited-access" bits, laid out as in the 64-bit FPSCR image of mffs, plus NJ:
 *   bits 0-7    FPSCR VE OE UE ZE XE NI RN (RN = bits 0-1)
 *   bits 32-34  FPSCR DRN (decimal rounding mode)
 *   bit  48     VSCR NJ (vector non-Java mode)
 *   uint64_t fiber_test_fp_get(void)
 *   void fiber_test_fp_set(uint64_t)
 *   uint64_t fiber_test_fp_unusual(void)  the current state with RN = toward
 *                                         +infinity (0b10), NI (non-IEEE mode) set,
 *                                         DRN = toward +infinity (0b010), NJ flipped
 */
    .abiversion 2
    .text

/* The helpers' frame: the ABI's 32-byte header (our callee may use its LR, CR and
 * TOC save slots), 16 bytes of scratch, CR, then every callee-saved register. */
#define T_SCRATCH 32
#define T_CR 48
#define T_R14 64
#define T_F14 208
#define T_V20 352
#define T_SIZE 544

/* reg = a 64-bit constant */
    .macro LOAD64 reg, val
    lis     \reg, (\val)@highest
    ori     \reg, \reg, (\val)@higher
    sldi    \reg, \reg, 32
    oris    \reg, \reg, (\val)@h
    ori     \reg, \reg, (\val)@l
    .endm

/* result (r3) |= 1 << (bit % 32) */
    .macro SETBIT bit
    .if ((\bit) % 32) < 16
    ori     %r3, %r3, 1 << ((\bit) % 32)
    .else
    oris    %r3, %r3, 1 << (((\bit) % 32) - 16)
    .endif
    .endm

    .macro SAVE_CALLEE_SAVED
    mflr    %r0
    std     %r0, 16(%r1)
    .cfi_offset 65, 16
    stdu    %r1, -T_SIZE(%r1)
    .cfi_def_cfa_offset T_SIZE
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    std     \n, T_R14 + 8 * (\n - 14)(%r1)
    .cfi_offset \n, T_R14 + 8 * (\n - 14) - T_SIZE
    stfd    \n, T_F14 + 8 * (\n - 14)(%r1)
    .cfi_offset 32 + \n, T_F14 + 8 * (\n - 14) - T_SIZE
    .endr
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    li      %r12, T_V20 + 16 * (\n - 20)
    stvx    \n, %r1, %r12
    .cfi_offset 77 + \n, T_V20 + 16 * (\n - 20) - T_SIZE
    .endr
    mfcr    %r0
    stw     %r0, T_CR(%r1)
    .cfi_offset 70, T_CR - T_SIZE
    .cfi_offset 71, T_CR - T_SIZE
    .cfi_offset 72, T_CR - T_SIZE
    .endm

    .macro RESTORE_CALLEE_SAVED
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ld      \n, T_R14 + 8 * (\n - 14)(%r1)
    lfd     \n, T_F14 + 8 * (\n - 14)(%r1)
    .endr
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    li      %r12, T_V20 + 16 * (\n - 20)
    lvx     \n, %r1, %r12
    .endr
    lwz     %r0, T_CR(%r1)
    mtcrf   0x38, %r0
    addi    %r1, %r1, T_SIZE
    .cfi_def_cfa_offset 0
    ld      %r0, 16(%r1)
    mtlr    %r0
    .endm

/* v(n) = four words (base | n << 16 | k << 8 | n), k = 0..3, through the scratch */
    .macro LOADV n, base
    .irp    k, 0,1,2,3
    lis     %r12, ((\base) | (\n << 16) | (\k << 8) | \n)@h
    ori     %r12, %r12, ((\base) | (\n << 16) | (\k << 8) | \n)@l
    stw     %r12, T_SCRATCH + 4 * \k(%r1)
    .endr
    li      %r12, T_SCRATCH
    lvx     \n, %r1, %r12
    .endm

/* Load every callee-saved register with a pattern derived from `base`. */
    .macro LOAD_ALL base, vbase, crbits
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    LOAD64  \n, (\base) + (\n << 40) + (\n << 24) + \n
    LOAD64  %r12, (\base) + (0x11 << 48) + (\n << 40) + (\n << 16) + \n
    mtfprd  \n, %r12
    .endr
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    LOADV   \n, \vbase
    .endr
    lis     %r12, (\crbits)@h
    ori     %r12, %r12, (\crbits)@l
    mtcrf   0x38, %r12
    .endm

/* fn [r3](arg [r4]) through a function pointer: r12 = entry, TOC saved around it. */
    .macro CALL_FN
    mr      %r12, %r3
    mtctr   %r12
    mr      %r3, %r4
    std     %r2, 24(%r1)
    bctrl
    ld      %r2, 24(%r1)
    .endm

#define GPR_BASE 0x5a5a000000000000
#define VR_BASE 0x70000000
#define CR_BITS 0x00a59000      /* CR2 = 0xa, CR3 = 0x5, CR4 = 0x9 */
#define JUNK_BASE 0x5eed000000000000
#define JUNK_VR_BASE 0x0dd00000
#define JUNK_CR 0x00369000

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, @function
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    LOAD_ALL GPR_BASE, VR_BASE, CR_BITS
    CALL_FN
    mfcr    %r4                     /* before any compare touches CR */
    li      %r3, 0
    .set    bit, 0
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    LOAD64  %r12, GPR_BASE + (\n << 40) + (\n << 24) + \n
    cmpd    \n, %r12
    beq     1f
    SETBIT  bit
1:  .set    bit, bit + 1
    .endr
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    LOAD64  %r12, GPR_BASE + (0x11 << 48) + (\n << 40) + (\n << 16) + \n
    mffprd  %r11, \n
    cmpd    %r11, %r12
    beq     1f
    SETBIT  bit
1:  .set    bit, bit + 1
    .endr
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    LOADV   0, VR_BASE | (\n << 16) | \n
    vcmpequw. 0, 0, \n
    blt     %cr6, 1f                /* all elements equal */
    SETBIT  bit
1:  .set    bit, bit + 1
    .endr
    .irp    f, 2,3,4
    rlwinm  %r12, %r4, 4 + 4 * \f, 28, 31
    cmpwi   %r12, (CR_BITS >> (28 - 4 * \f)) & 0xf
    beq     1f
    SETBIT  bit
1:  .set    bit, bit + 1
    .endr
    RESTORE_CALLEE_SAVED
    blr
    .cfi_endproc
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, @function
fiber_test_clobber_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    LOAD_ALL JUNK_BASE, JUNK_VR_BASE, JUNK_CR
    CALL_FN
    RESTORE_CALLEE_SAVED
    blr
    .cfi_endproc
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, @function
fiber_test_caller_sp:
    .cfi_startproc
    mr      %r3, %r1
    blr
    .cfi_endproc
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

/* r3 = the FP control state; clobbers r0, r4, f0, v0. */
    .macro FP_GET
    mffs    %f0
    mffprd  %r3, %f0
    andi.   %r4, %r3, 0xff          /* VE OE UE ZE XE NI RN */
    rldicl  %r3, %r3, 32, 61        /* DRN ... */
    sldi    %r3, %r3, 32            /* ... back in bits 32-34 */
    or      %r3, %r3, %r4
    mfvscr  %v0
    vspltw  %v0, %v0, 3
    mfvrwz  %r4, %v0
    rlwinm  %r4, %r4, 0, 15, 15     /* NJ (0x10000) */
    sldi    %r4, %r4, 32
    or      %r3, %r3, %r4
    .endm

    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, @function
fiber_test_fp_get:
    .cfi_startproc
    FP_GET
    blr
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, @function
fiber_test_fp_set:
    .cfi_startproc
    mtfprd  %f0, %r3                /* the value is laid out as the FPSCR image */
    mtfsf   0x03, %f0               /* VE OE UE ZE XE NI RN */
    mtfsf   0x01, %f0, 0, 1         /* DRN */
    mfvscr  %v0
    vspltw  %v0, %v0, 3
    mfvrwz  %r4, %v0
    rlwinm  %r4, %r4, 0, 16, 14     /* VSCR without NJ */
    srdi    %r5, %r3, 32
    rlwinm  %r5, %r5, 0, 15, 15     /* the requested NJ */
    or      %r4, %r4, %r5
    mtvrwz  %v0, %r4
    vspltw  %v0, %v0, 1
    mtvscr  %v0
    blr
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, @function
fiber_test_fp_unusual:
    .cfi_startproc
    FP_GET
    rldicr  %r3, %r3, 0, 61         /* RN = 0 ... */
    ori     %r3, %r3, 0x6           /* ... then RN = 0b10 (toward +inf), NI = 1 */
    li      %r4, 7
    sldi    %r4, %r4, 32
    andc    %r3, %r3, %r4           /* DRN = 0 ... */
    li      %r4, 2
    sldi    %r4, %r4, 32
    or      %r3, %r3, %r4           /* ... then DRN = 0b010 (toward +inf) */
    li      %r4, 1
    sldi    %r4, %r4, 48
    xor     %r3, %r3, %r4           /* NJ flipped */
    blr
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", @progbits
