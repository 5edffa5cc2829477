/* Test helpers for 32-bit Arm, AAPCS hard-float: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (r4-r11, r9
 *       included as Linux makes it callee-saved, and d8-d15), calls fn(arg), and
 *       returns a bit mask of the registers that no longer hold their pattern
 *       (bits 0-7: r4-r11, bits 8-15: d8-d15).
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer at the call.
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      FPSCR without its status bits (condition
 *                                         flags, QC, cumulative exception flags),
 *                                         which AAPCS does not preserve
 *   void fiber_test_fp_set(uint64_t)      writes FPSCR
 *   uint64_t fiber_test_fp_unusual(void)  that, with RMode = toward +infinity (01,
 *                                         bits 22-23) and FZ (flush-to-zero, bit 24)
 *
 * Arm (A32) code, called from Thumb-2 C++ through interworking BL/BLX, returning
 * with BX; fn is called with BLX. 64-bit results are returned in r0 (low), r1.
 */
/* The FPSCR status bits: N, Z, C, V, QC (31-27) and IDC, IXC, UFC, OFC, DZC, IOC
 * (7, 4-0). */
#define FPSCR_STATUS_HI 0xf8000000
#define FPSCR_STATUS_LO 0x9f

    .syntax unified
    .arm
    .fpu    vfpv3-d16
    .cfi_sections .debug_frame
    .text

/* Save r4-r11 (with r12 as padding) and lr, then d8-d15: 104 bytes, so sp stays
 * 8-byte aligned for the call. Immediates in these macros have no '#': in a
 * macro body the preprocessor would take it as the stringizing operator. */
#define SAVE_CALLEE_SAVED \
    push {r4-r12, lr}; .save {r4-r12, lr}; .cfi_adjust_cfa_offset 40; \
    .cfi_rel_offset r4, 0; .cfi_rel_offset r5, 4; .cfi_rel_offset r6, 8; .cfi_rel_offset r7, 12; \
    .cfi_rel_offset r8, 16; .cfi_rel_offset r9, 20; .cfi_rel_offset r10, 24; .cfi_rel_offset r11, 28; \
    .cfi_rel_offset lr, 36; \
    vpush {d8-d15}; .vsave {d8-d15}; .cfi_adjust_cfa_offset 64; \
    .cfi_rel_offset d8, 0; .cfi_rel_offset d9, 8; .cfi_rel_offset d10, 16; .cfi_rel_offset d11, 24; \
    .cfi_rel_offset d12, 32; .cfi_rel_offset d13, 40; .cfi_rel_offset d14, 48; .cfi_rel_offset d15, 56

#define RESTORE_CALLEE_SAVED_AND_RETURN \
    vpop {d8-d15}; .cfi_adjust_cfa_offset -64; \
    pop {r4-r12, lr}; .cfi_adjust_cfa_offset -40; bx lr

/* A 32-bit constant, and a double from two of them (through r2, r3). */
#define LOADR(reg, hi, lo) movw reg, lo; movt reg, hi
#define LOADD(dreg, hi1, lo1, hi0, lo0) LOADR(r2, hi0, lo0); LOADR(r3, hi1, lo1); vmov dreg, r2, r3
#define CHECKR(reg, hi, lo, bit) \
    LOADR(r2, hi, lo); cmp reg, r2; orrne r0, r0, (1 << bit)
#define CHECKD(dreg, hi1, lo1, hi0, lo0, bit) \
    vmov r1, ip, dreg; LOADR(r2, hi0, lo0); LOADR(r3, hi1, lo1); \
    cmp r1, r2; cmpeq ip, r3; orrne r0, r0, (1 << bit)

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, %function
    .p2align 2
fiber_test_check_registers:
    .fnstart
    .cfi_startproc
    SAVE_CALLEE_SAVED
    mov     ip, r0
    mov     r0, r1
    LOADD(d8,  0x3808, 0x0808, 0x3800, 0x0908)
    LOADD(d9,  0x3909, 0x0909, 0x3900, 0x0a09)
    LOADD(d10, 0x3a0a, 0x0a0a, 0x3a00, 0x0b0a)
    LOADD(d11, 0x3b0b, 0x0b0b, 0x3b00, 0x0c0b)
    LOADD(d12, 0x3c0c, 0x0c0c, 0x3c00, 0x0d0c)
    LOADD(d13, 0x3d0d, 0x0d0d, 0x3d00, 0x0e0d)
    LOADD(d14, 0x3e0e, 0x0e0e, 0x3e00, 0x0f0e)
    LOADD(d15, 0x3f0f, 0x0f0f, 0x3f00, 0x100f)
    LOADR(r4,  0x1404, 0x0104)
    LOADR(r5,  0x1505, 0x0205)
    LOADR(r6,  0x1606, 0x0306)
    LOADR(r7,  0x1707, 0x0407)
    LOADR(r8,  0x1808, 0x0508)
    LOADR(r9,  0x1909, 0x0609)
    LOADR(r10, 0x1a0a, 0x070a)
    LOADR(r11, 0x1b0b, 0x080b)
    blx     ip
    mov     r0, #0
    CHECKR(r4,  0x1404, 0x0104, 0)
    CHECKR(r5,  0x1505, 0x0205, 1)
    CHECKR(r6,  0x1606, 0x0306, 2)
    CHECKR(r7,  0x1707, 0x0407, 3)
    CHECKR(r8,  0x1808, 0x0508, 4)
    CHECKR(r9,  0x1909, 0x0609, 5)
    CHECKR(r10, 0x1a0a, 0x070a, 6)
    CHECKR(r11, 0x1b0b, 0x080b, 7)
    CHECKD(d8,  0x3808, 0x0808, 0x3800, 0x0908, 8)
    CHECKD(d9,  0x3909, 0x0909, 0x3900, 0x0a09, 9)
    CHECKD(d10, 0x3a0a, 0x0a0a, 0x3a00, 0x0b0a, 10)
    CHECKD(d11, 0x3b0b, 0x0b0b, 0x3b00, 0x0c0b, 11)
    CHECKD(d12, 0x3c0c, 0x0c0c, 0x3c00, 0x0d0c, 12)
    CHECKD(d13, 0x3d0d, 0x0d0d, 0x3d00, 0x0e0d, 13)
    CHECKD(d14, 0x3e0e, 0x0e0e, 0x3e00, 0x0f0e, 14)
    CHECKD(d15, 0x3f0f, 0x0f0f, 0x3f00, 0x100f, 15)
    RESTORE_CALLEE_SAVED_AND_RETURN
    .cfi_endproc
    .fnend
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, %function
    .p2align 2
fiber_test_clobber_registers:
    .fnstart
    .cfi_startproc
    SAVE_CALLEE_SAVED
    mov     ip, r0
    mov     r0, r1
    LOADD(d8,  0xdead, 0xbe08, 0xdead, 0x0008)
    LOADD(d9,  0xdead, 0xbe09, 0xdead, 0x0009)
    LOADD(d10, 0xdead, 0xbe10, 0xdead, 0x0010)
    LOADD(d11, 0xdead, 0xbe11, 0xdead, 0x0011)
    LOADD(d12, 0xdead, 0xbe12, 0xdead, 0x0012)
    LOADD(d13, 0xdead, 0xbe13, 0xdead, 0x0013)
    LOADD(d14, 0xdead, 0xbe14, 0xdead, 0x0014)
    LOADD(d15, 0xdead, 0xbe15, 0xdead, 0x0015)
    LOADR(r4,  0xdead, 0xbe04)
    LOADR(r5,  0xdead, 0xbe05)
    LOADR(r6,  0xdead, 0xbe06)
    LOADR(r7,  0xdead, 0xbe07)
    LOADR(r8,  0xdead, 0xbe08)
    LOADR(r9,  0xdead, 0xbe09)
    LOADR(r10, 0xdead, 0xbe10)
    LOADR(r11, 0xdead, 0xbe11)
    blx     ip
    RESTORE_CALLEE_SAVED_AND_RETURN
    .cfi_endproc
    .fnend
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, %function
    .p2align 2
fiber_test_caller_sp:
    .fnstart
    .cfi_startproc
    mov     r0, sp
    bx      lr
    .cfi_endproc
    .fnend
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, %function
    .p2align 2
fiber_test_fp_get:
    .fnstart
    .cfi_startproc
    vmrs    r0, fpscr
    bic     r0, r0, #FPSCR_STATUS_HI
    bic     r0, r0, #FPSCR_STATUS_LO
    mov     r1, #0
    bx      lr
    .cfi_endproc
    .fnend
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, %function
    .p2align 2
fiber_test_fp_set:
    .fnstart
    .cfi_startproc
    vmsr    fpscr, r0
    bx      lr
    .cfi_endproc
    .fnend
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, %function
    .p2align 2
fiber_test_fp_unusual:
    .fnstart
    .cfi_startproc
    vmrs    r0, fpscr
    bic     r0, r0, #FPSCR_STATUS_HI
    bic     r0, r0, #FPSCR_STATUS_LO
    bic     r0, r0, #(3 << 22)
    orr     r0, r0, #(1 << 22)
    orr     r0, r0, #(1 << 24)
    mov     r1, #0
    bx      lr
    .cfi_endproc
    .fnend
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", %progbits
