/* Test helpers for 32-bit PowerPC, System V ABI: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (r14-r31,
 *       f14-f31, CR fields 2-4, and on a CPU with AltiVec v20-v31 and VRSAVE),
 *       calls fn(arg), and returns a bit mask of the registers that no longer hold
 *       their pattern. There are up to 52 of them, more than `unsigned` has bits,
 *       so register i of this list sets bit i % 32:
 *         i =  0..17  r14..r31
 *         i = 18..35  f14..f31
 *         i = 36..47  v20..v31     (AltiVec only)
 *         i = 48..50  CR2, CR3, CR4
 *         i = 51      VRSAVE       (AltiVec only)
 *       (r2, the thread pointer, and r13, the small-data pointer, are fixed for
 *       the thread or process and nobody may change them: not checked.)
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer (r1) at the call.
 *
 * Whether the CPU has AltiVec is decided as arch/switch_ppc32_sysv_elf_gas.S
 * decides it (FIBER_PPC_VMX, same default).
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp): FPSCR fields 6
 * and 7, VE OE UE ZE XE NI RN, in bits 0-7 (RN = bits 0-1), as in the FPSCR. A
 * uint64_t travels in r3 (high word) and r4 (low word).
 *   uint64_t fiber_test_fp_get(void)
 *   void fiber_test_fp_set(uint64_t)
 *   uint64_t fiber_test_fp_unusual(void)  the current state with RN = toward
 *                                         +infinity (0b10) and NI (non-IEEE mode)
 */
#ifndef FIBER_PPC_VMX
#  ifdef __ALTIVEC__
#    define FIBER_PPC_VMX 1
#  else
#    define FIBER_PPC_VMX 2
#  endif
#endif
#define TCB_HWCAP -0x7040
#define PPC_FEATURE_HAS_ALTIVEC_HI 0x1000
#ifdef __LITTLE_ENDIAN__
#  define HI_WORD 4
#  define LO_WORD 0
#else
#  define HI_WORD 0
#  define LO_WORD 4
#endif

/* The helpers' frame: back chain and LR save word (for fn), 16 bytes of scratch,
 * CR and VRSAVE, then every callee-saved register. */
#define T_SCRATCH 16
#define T_CR 32
#define T_VRSAVE 36
#define T_R14 40
#define T_F14 112
#define T_V20 256
#define T_SIZE 448

/* result (r3) |= 1 << (bit % 32) */
    .macro SETBIT bit
    .if ((\bit) % 32) < 16
    ori     %r3, %r3, 1 << ((\bit) % 32)
    .else
    oris    %r3, %r3, 1 << (((\bit) % 32) - 16)
    .endif
    .endm

/* reg = a 32-bit constant */
    .macro LOAD32 reg, val
    lis     \reg, (\val)@h
    ori     \reg, \reg, (\val)@l
    .endm

/* Branch to `label` if the CPU has no AltiVec (clobbers r0, cr0). */
    .macro IF_NO_VMX label
#if FIBER_PPC_VMX == 2
    lwz     %r0, TCB_HWCAP(%r2)
    andis.  %r0, %r0, PPC_FEATURE_HAS_ALTIVEC_HI
    beq     \label
#elif FIBER_PPC_VMX == 0
    b       \label
#endif
    .endm

    .macro SAVE_CALLEE_SAVED
    mflr    %r0
    stw     %r0, 4(%r1)
    .cfi_offset 65, 4
    stwu    %r1, -T_SIZE(%r1)
    .cfi_def_cfa_offset T_SIZE
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    stw     \n, T_R14 + 4 * (\n - 14)(%r1)
    .cfi_offset \n, T_R14 + 4 * (\n - 14) - T_SIZE
    stfd    \n, T_F14 + 8 * (\n - 14)(%r1)
    .cfi_offset 32 + \n, T_F14 + 8 * (\n - 14) - T_SIZE
    .endr
    mfcr    %r0
    stw     %r0, T_CR(%r1)
    .cfi_offset 70, T_CR - T_SIZE
    IF_NO_VMX 9f
    mfvrsave %r0
    stw     %r0, T_VRSAVE(%r1)
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    li      %r12, T_V20 + 16 * (\n - 20)
    stvx    \n, %r1, %r12
    .endr
9:
    .endm

    .macro RESTORE_CALLEE_SAVED
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    lwz     \n, T_R14 + 4 * (\n - 14)(%r1)
    lfd     \n, T_F14 + 8 * (\n - 14)(%r1)
    .endr
    IF_NO_VMX 9f
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    li      %r12, T_V20 + 16 * (\n - 20)
    lvx     \n, %r1, %r12
    .endr
    lwz     %r0, T_VRSAVE(%r1)
    mtvrsave %r0
9:
    lwz     %r0, T_CR(%r1)
    mtcrf   0x38, %r0
    addi    %r1, %r1, T_SIZE
    .cfi_def_cfa_offset 0
    lwz     %r0, 4(%r1)
    mtlr    %r0
    .endm

/* v(n) = four words (base | n << 16 | k << 8 | n), k = 0..3, through the scratch */
    .macro LOADV n, base
    .irp    k, 0,1,2,3
    LOAD32  %r12, (\base) | (\n << 16) | (\k << 8) | \n
    stw     %r12, T_SCRATCH + 4 * \k(%r1)
    .endr
    li      %r12, T_SCRATCH
    lvx     \n, %r1, %r12
    .endm

/* Load every callee-saved register with a pattern derived from the bases. */
    .macro LOAD_ALL gbase, fbase, vbase, crbits, vrsave
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    LOAD32  \n, (\gbase) + (\n << 16) + (\n << 8) + \n
    LOAD32  %r12, (\fbase) + (\n << 16) + \n
    stw     %r12, T_SCRATCH + HI_WORD(%r1)
    LOAD32  %r12, 0x11000000 + (\n << 8) + \n
    stw     %r12, T_SCRATCH + LO_WORD(%r1)
    lfd     \n, T_SCRATCH(%r1)
    .endr
    IF_NO_VMX 9f
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    LOADV   \n, \vbase
    .endr
    LOAD32  %r12, \vrsave
    mtvrsave %r12
9:
    LOAD32  %r12, \crbits
    mtcrf   0x38, %r12
    .endm

/* fn [r3](arg [r4]) */
    .macro CALL_FN
    mtctr   %r3
    mr      %r3, %r4
    bctrl
    .endm

#define GPR_BASE 0x5a000000
#define FPR_BASE 0x3c000000
#define VR_BASE 0x70000000
#define CR_BITS 0x00a59000      /* CR2 = 0xa, CR3 = 0x5, CR4 = 0x9 */
#define VRSAVE_BITS 0x12345678
#define JUNK_GPR_BASE 0x5e000000
#define JUNK_FPR_BASE 0x3e000000
#define JUNK_VR_BASE 0x0dd00000
#define JUNK_CR 0x00369000
#define JUNK_VRSAVE 0x0badf00d

    .machine push
    .machine altivec
    .text

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, @function
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    LOAD_ALL GPR_BASE, FPR_BASE, VR_BASE, CR_BITS, VRSAVE_BITS
    CALL_FN
    mfcr    %r4                     /* before any compare touches CR */
    li      %r3, 0
    .set    bit, 0
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    LOAD32  %r12, GPR_BASE + (\n << 16) + (\n << 8) + \n
    cmpw    \n, %r12
    beq     1f
    SETBIT  bit
1:  .set    bit, bit + 1
    .endr
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    stfd    \n, T_SCRATCH(%r1)
    lwz     %r11, T_SCRATCH + HI_WORD(%r1)
    LOAD32  %r12, FPR_BASE + (\n << 16) + \n
    cmpw    %r11, %r12
    bne     2f
    lwz     %r11, T_SCRATCH + LO_WORD(%r1)
    LOAD32  %r12, 0x11000000 + (\n << 8) + \n
    cmpw    %r11, %r12
    beq     1f
2:  SETBIT  bit
1:  .set    bit, bit + 1
    .endr
    IF_NO_VMX 8f
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    LOADV   0, VR_BASE | (\n << 16) | \n
    vcmpequw. 0, 0, \n
    blt     %cr6, 1f                /* all elements equal */
    SETBIT  bit
1:  .set    bit, bit + 1
    .endr
    mfvrsave %r11
    LOAD32  %r12, VRSAVE_BITS
    cmpw    %r11, %r12
    beq     8f
    SETBIT  51
8:  .set    bit, 48
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
    LOAD_ALL JUNK_GPR_BASE, JUNK_FPR_BASE, JUNK_VR_BASE, JUNK_CR, JUNK_VRSAVE
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

/* The SysV ABI has no red zone: the FP helpers take a 16-byte frame as scratch. */
    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, @function
fiber_test_fp_get:
    .cfi_startproc
    stwu    %r1, -16(%r1)
    .cfi_def_cfa_offset 16
    mffs    %f0
    stfd    %f0, 8(%r1)
    lwz     %r4, 8 + LO_WORD(%r1)   /* the FPSCR */
    andi.   %r4, %r4, 0xff
    li      %r3, 0
    addi    %r1, %r1, 16
    .cfi_def_cfa_offset 0
    blr
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, @function
fiber_test_fp_set:
    .cfi_startproc
    stwu    %r1, -16(%r1)
    .cfi_def_cfa_offset 16
    stw     %r3, 8 + HI_WORD(%r1)
    stw     %r4, 8 + LO_WORD(%r1)
    lfd     %f0, 8(%r1)
    mtfsf   0x03, %f0               /* fields 6 and 7 */
    addi    %r1, %r1, 16
    .cfi_def_cfa_offset 0
    blr
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, @function
fiber_test_fp_unusual:
    .cfi_startproc
    stwu    %r1, -16(%r1)
    .cfi_def_cfa_offset 16
    mffs    %f0
    stfd    %f0, 8(%r1)
    lwz     %r4, 8 + LO_WORD(%r1)
    andi.   %r4, %r4, 0xfc          /* RN = 0 ... */
    ori     %r4, %r4, 0x6           /* ... then RN = 0b10 (toward +inf), NI = 1 */
    li      %r3, 0
    addi    %r1, %r1, 16
    .cfi_def_cfa_offset 0
    blr
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .machine pop

#if FIBER_PPC_VMX == 2
    .section ".data.rel.ro", "aw"
    .p2align 2
    .long   __parse_hwcap_and_convert_at_platform
#endif

    .section .note.GNU-stack, "", @progbits
