/* Test helpers for AArch64 AAPCS64: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (x19-x28, x29,
 *       d8-d15), calls fn(arg), and returns a bit mask of the registers that no
 *       longer hold their pattern (bits 0-10: x19-x29, bits 11-18: d8-d15).
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer at the call.
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      FPCR
 *   void fiber_test_fp_set(uint64_t)      writes FPCR
 *   uint64_t fiber_test_fp_unusual(void)  FPCR with RMode = toward +infinity (01)
 *                                         and FZ (flush-to-zero, bit 24) set
 */
    .text

/* Save x19-x30 and d8-d15 in a 176-byte frame (16-byte aligned). Immediates in
 * these macros have no '#': in a macro body the preprocessor would take it as
 * the stringizing operator. */
#define SAVE_CALLEE_SAVED \
    sub sp, sp, 176; .cfi_def_cfa_offset 176; \
    stp x19, x20, [sp, 0]; stp x21, x22, [sp, 16]; stp x23, x24, [sp, 32]; \
    stp x25, x26, [sp, 48]; stp x27, x28, [sp, 64]; stp x29, x30, [sp, 80]; \
    .cfi_offset x19, -176; .cfi_offset x20, -168; .cfi_offset x21, -160; .cfi_offset x22, -152; \
    .cfi_offset x23, -144; .cfi_offset x24, -136; .cfi_offset x25, -128; .cfi_offset x26, -120; \
    .cfi_offset x27, -112; .cfi_offset x28, -104; .cfi_offset x29, -96; .cfi_offset x30, -88; \
    stp d8, d9, [sp, 96]; stp d10, d11, [sp, 112]; stp d12, d13, [sp, 128]; stp d14, d15, [sp, 144]

#define RESTORE_CALLEE_SAVED \
    ldp x19, x20, [sp, 0]; ldp x21, x22, [sp, 16]; ldp x23, x24, [sp, 32]; \
    ldp x25, x26, [sp, 48]; ldp x27, x28, [sp, 64]; ldp x29, x30, [sp, 80]; \
    ldp d8, d9, [sp, 96]; ldp d10, d11, [sp, 112]; ldp d12, d13, [sp, 128]; ldp d14, d15, [sp, 144]; \
    add sp, sp, 176; .cfi_def_cfa_offset 0

/* Build a 64-bit constant from a byte: 0xBB..BB0N style patterns. */
#define LOADX(reg, hi, lo) movz reg, lo; movk reg, hi, lsl 16; movk reg, hi, lsl 32; movk reg, hi, lsl 48
#define LOADD(dreg, hi, lo) LOADX(x9, hi, lo); fmov dreg, x9
#define CHECKX(reg, hi, lo, bit) LOADX(x9, hi, lo); cmp reg, x9; b.eq 1f; orr w0, w0, (1 << bit); 1:
#define CHECKD(dreg, hi, lo, bit) LOADX(x9, hi, lo); fmov x10, dreg; cmp x10, x9; b.eq 1f; orr w0, w0, (1 << bit); 1:

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, %function
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    mov     x11, x0
    mov     x0, x1
    LOADX(x19, 0x1919, 0x0119)
    LOADX(x20, 0x2020, 0x0220)
    LOADX(x21, 0x2121, 0x0321)
    LOADX(x22, 0x2222, 0x0422)
    LOADX(x23, 0x2323, 0x0523)
    LOADX(x24, 0x2424, 0x0624)
    LOADX(x25, 0x2525, 0x0725)
    LOADX(x26, 0x2626, 0x0826)
    LOADX(x27, 0x2727, 0x0927)
    LOADX(x28, 0x2828, 0x0a28)
    LOADX(x29, 0x2929, 0x0b29)
    LOADD(d8, 0x3808, 0x0c08)
    LOADD(d9, 0x3909, 0x0d09)
    LOADD(d10, 0x3a0a, 0x0e0a)
    LOADD(d11, 0x3b0b, 0x0f0b)
    LOADD(d12, 0x3c0c, 0x100c)
    LOADD(d13, 0x3d0d, 0x110d)
    LOADD(d14, 0x3e0e, 0x120e)
    LOADD(d15, 0x3f0f, 0x130f)
    blr     x11
    mov     w0, #0
    CHECKX(x19, 0x1919, 0x0119, 0)
    CHECKX(x20, 0x2020, 0x0220, 1)
    CHECKX(x21, 0x2121, 0x0321, 2)
    CHECKX(x22, 0x2222, 0x0422, 3)
    CHECKX(x23, 0x2323, 0x0523, 4)
    CHECKX(x24, 0x2424, 0x0624, 5)
    CHECKX(x25, 0x2525, 0x0725, 6)
    CHECKX(x26, 0x2626, 0x0826, 7)
    CHECKX(x27, 0x2727, 0x0927, 8)
    CHECKX(x28, 0x2828, 0x0a28, 9)
    CHECKX(x29, 0x2929, 0x0b29, 10)
    CHECKD(d8, 0x3808, 0x0c08, 11)
    CHECKD(d9, 0x3909, 0x0d09, 12)
    CHECKD(d10, 0x3a0a, 0x0e0a, 13)
    CHECKD(d11, 0x3b0b, 0x0f0b, 14)
    CHECKD(d12, 0x3c0c, 0x100c, 15)
    CHECKD(d13, 0x3d0d, 0x110d, 16)
    CHECKD(d14, 0x3e0e, 0x120e, 17)
    CHECKD(d15, 0x3f0f, 0x130f, 18)
    RESTORE_CALLEE_SAVED
    ret
    .cfi_endproc
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, %function
fiber_test_clobber_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    mov     x11, x0
    mov     x0, x1
    LOADX(x19, 0xdead, 0xbe19)
    LOADX(x20, 0xdead, 0xbe20)
    LOADX(x21, 0xdead, 0xbe21)
    LOADX(x22, 0xdead, 0xbe22)
    LOADX(x23, 0xdead, 0xbe23)
    LOADX(x24, 0xdead, 0xbe24)
    LOADX(x25, 0xdead, 0xbe25)
    LOADX(x26, 0xdead, 0xbe26)
    LOADX(x27, 0xdead, 0xbe27)
    LOADX(x28, 0xdead, 0xbe28)
    LOADX(x29, 0xdead, 0xbe29)
    LOADD(d8, 0xdead, 0xbe08)
    LOADD(d9, 0xdead, 0xbe09)
    LOADD(d10, 0xdead, 0xbe10)
    LOADD(d11, 0xdead, 0xbe11)
    LOADD(d12, 0xdead, 0xbe12)
    LOADD(d13, 0xdead, 0xbe13)
    LOADD(d14, 0xdead, 0xbe14)
    LOADD(d15, 0xdead, 0xbe15)
    blr     x11
    RESTORE_CALLEE_SAVED
    ret
    .cfi_endproc
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, %function
fiber_test_caller_sp:
    .cfi_startproc
    mov     x0, sp
    ret
    .cfi_endproc
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, %function
fiber_test_fp_get:
    .cfi_startproc
    mrs     x0, fpcr
    ret
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, %function
fiber_test_fp_set:
    .cfi_startproc
    msr     fpcr, x0
    ret
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, %function
fiber_test_fp_unusual:
    .cfi_startproc
    mrs     x0, fpcr
    and     x0, x0, #~(3 << 22)
    orr     x0, x0, #(1 << 22)
    orr     x0, x0, #(1 << 24)
    ret
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", %progbits
