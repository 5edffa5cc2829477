/* Test helpers for 64-bit PowerPC, ELF V1 ABI (big-endian ppc64): see
 * tests/registers_test.cpp.
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
 *       (r2 is restored from the TOC save slot by the caller after any call
 *       through a descriptor, so it is not checked.)
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer (r1) at the call.
 * `fn` is a function pointer, i.e. the address of a descriptor (code address,
 * TOC base, environment pointer).
 *
 * Whether the CPU has AltiVec is decided as arch/switch_ppc64_elfv1_elf_gas.S
 * decides it (FIBER_PPC_VMX, same default).
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp): FPSCR fields 6
 * and 7, VE OE UE ZE XE NI RN, in bits 0-7 (RN = bits 0-1), as in the FPSCR.
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
#define TCB_HWCAP -0x7068
#define PPC_FEATURE_HAS_ALTIVEC_HI 0x1000

/* The helpers' frame: the ABI's 48-byte header and the 64-byte parameter save
 * area (for fn), 16 bytes of scratch, CR and VRSAVE, then every callee-saved
 * register. */
#define T_SCRATCH 112
#define T_CR 128
#define T_VRSAVE 132
#define T_R14 144
#define T_F14 288
#define T_V20 432
#define T_SIZE 624

    .macro FUNCTION name
    .section ".opd", "aw"
    .p2align 3
    .globl  \name
\name:
    .quad   .L.\name, .TOC.@tocbase, 0
    .previous
    .type   \name, @function
    .p2align 4
.L.\name:
    .endm
    .macro END_FUNCTION name
    .size   \name, .-.L.\name
    .endm

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

/* Branch to `label` if the CPU has no AltiVec (clobbers r0, cr0). */
    .macro IF_NO_VMX label
#if FIBER_PPC_VMX == 2
    lwz     %r0, TCB_HWCAP(%r13)
    andis.  %r0, %r0, PPC_FEATURE_HAS_ALTIVEC_HI
    beq     \label
#elif FIBER_PPC_VMX == 0
    b       \label
#endif
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
    ld      \n, T_R14 + 8 * (\n - 14)(%r1)
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
    .macro LOAD_ALL base, vbase, crbits, vrsave
    .irp    n, 14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    LOAD64  \n, (\base) + (\n << 40) + (\n << 24) + \n
    LOAD64  %r12, (\base) + (0x11 << 48) + (\n << 40) + (\n << 16) + \n
    std     %r12, T_SCRATCH(%r1)
    lfd     \n, T_SCRATCH(%r1)
    .endr
    IF_NO_VMX 9f
    .irp    n, 20,21,22,23,24,25,26,27,28,29,30,31
    LOADV   \n, \vbase
    .endr
    lis     %r12, (\vrsave)@h
    ori     %r12, %r12, (\vrsave)@l
    mtvrsave %r12
9:
    lis     %r12, (\crbits)@h
    ori     %r12, %r12, (\crbits)@l
    mtcrf   0x38, %r12
    .endm

/* fn [r3](arg [r4]) through its descriptor, our TOC saved around it. */
    .macro CALL_FN
    ld      %r0, 0(%r3)
    ld      %r11, 16(%r3)
    std     %r2, 40(%r1)
    mtctr   %r0
    ld      %r2, 8(%r3)
    mr      %r3, %r4
    bctrl
    ld      %r2, 40(%r1)
    .endm

#define GPR_BASE 0x5a5a000000000000
#define VR_BASE 0x70000000
#define CR_BITS 0x00a59000      /* CR2 = 0xa, CR3 = 0x5, CR4 = 0x9 */
#define VRSAVE_BITS 0x12345678
#define JUNK_BASE 0x5eed000000000000
#define JUNK_VR_BASE 0x0dd00000
#define JUNK_CR 0x00369000
#define JUNK_VRSAVE 0x0badf00d

    .machine push
    .machine altivec
    .text

    FUNCTION fiber_test_check_registers
    .cfi_startproc
    SAVE_CALLEE_SAVED
    LOAD_ALL GPR_BASE, VR_BASE, CR_BITS, VRSAVE_BITS
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
    stfd    \n, T_SCRATCH(%r1)
    ld      %r11, T_SCRATCH(%r1)
    cmpd    %r11, %r12
    beq     1f
    SETBIT  bit
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
    lis     %r12, VRSAVE_BITS@h
    ori     %r12, %r12, VRSAVE_BITS@l
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
    END_FUNCTION fiber_test_check_registers

    FUNCTION fiber_test_clobber_registers
    .cfi_startproc
    SAVE_CALLEE_SAVED
    LOAD_ALL JUNK_BASE, JUNK_VR_BASE, JUNK_CR, JUNK_VRSAVE
    CALL_FN
    RESTORE_CALLEE_SAVED
    blr
    .cfi_endproc
    END_FUNCTION fiber_test_clobber_registers

    FUNCTION fiber_test_caller_sp
    .cfi_startproc
    mr      %r3, %r1
    blr
    .cfi_endproc
    END_FUNCTION fiber_test_caller_sp

/* The leaf helpers below use the 288-byte protected zone below r1 as scratch. */
    FUNCTION fiber_test_fp_get
    .cfi_startproc
    mffs    %f0
    stfd    %f0, -8(%r1)
    lwz     %r3, -4(%r1)            /* the FPSCR: the low word */
    andi.   %r3, %r3, 0xff
    blr
    .cfi_endproc
    END_FUNCTION fiber_test_fp_get

    FUNCTION fiber_test_fp_set
    .cfi_startproc
    std     %r3, -8(%r1)
    lfd     %f0, -8(%r1)
    mtfsf   0x03, %f0               /* fields 6 and 7 */
    blr
    .cfi_endproc
    END_FUNCTION fiber_test_fp_set

    FUNCTION fiber_test_fp_unusual
    .cfi_startproc
    mffs    %f0
    stfd    %f0, -8(%r1)
    lwz     %r3, -4(%r1)
    andi.   %r3, %r3, 0xfc          /* RN = 0 ... */
    ori     %r3, %r3, 0x6           /* ... then RN = 0b10 (toward +inf), NI = 1 */
    blr
    .cfi_endproc
    END_FUNCTION fiber_test_fp_unusual

    .machine pop

#if FIBER_PPC_VMX == 2
    .section ".data.rel.ro", "aw"
    .p2align 3
    .quad   __parse_hwcap_and_convert_at_platform
#endif

    .section .note.GNU-stack, "", @progbits
