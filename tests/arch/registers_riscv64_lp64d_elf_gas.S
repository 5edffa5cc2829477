/* Test helpers for RISC-V 64 lp64d: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (s0-s11,
 *       fs0-fs11), calls fn(arg), and returns a bit mask of the registers that no
 *       longer hold their pattern (bits 0-11: s0-s11, bits 12-23: fs0-fs11).
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer at the call (a call does not move sp).
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      frm, the dynamic rounding mode (fcsr
 *                                         bits 7:5); the accrued flags are status
 *   void fiber_test_fp_set(uint64_t)      writes frm
 *   uint64_t fiber_test_fp_unusual(void)  RUP (3): rounding toward +infinity.
 *                                         RISC-V has no flush-to-zero mode.
 */
    .text

/* Save ra, s0-s11 and fs0-fs11 in a 208-byte frame (16-byte aligned). */
#define SAVE_CALLEE_SAVED \
    addi sp, sp, -208; .cfi_def_cfa_offset 208; \
    sd ra, 200(sp); sd s0, 192(sp); sd s1, 184(sp); sd s2, 176(sp); sd s3, 168(sp); \
    sd s4, 160(sp); sd s5, 152(sp); sd s6, 144(sp); sd s7, 136(sp); sd s8, 128(sp); \
    sd s9, 120(sp); sd s10, 112(sp); sd s11, 104(sp); \
    .cfi_offset ra, -8; .cfi_offset s0, -16; .cfi_offset s1, -24; .cfi_offset s2, -32; \
    .cfi_offset s3, -40; .cfi_offset s4, -48; .cfi_offset s5, -56; .cfi_offset s6, -64; \
    .cfi_offset s7, -72; .cfi_offset s8, -80; .cfi_offset s9, -88; .cfi_offset s10, -96; \
    .cfi_offset s11, -104; \
    fsd fs0, 0(sp); fsd fs1, 8(sp); fsd fs2, 16(sp); fsd fs3, 24(sp); fsd fs4, 32(sp); \
    fsd fs5, 40(sp); fsd fs6, 48(sp); fsd fs7, 56(sp); fsd fs8, 64(sp); fsd fs9, 72(sp); \
    fsd fs10, 80(sp); fsd fs11, 88(sp)

#define RESTORE_CALLEE_SAVED \
    ld ra, 200(sp); ld s0, 192(sp); ld s1, 184(sp); ld s2, 176(sp); ld s3, 168(sp); \
    ld s4, 160(sp); ld s5, 152(sp); ld s6, 144(sp); ld s7, 136(sp); ld s8, 128(sp); \
    ld s9, 120(sp); ld s10, 112(sp); ld s11, 104(sp); \
    fld fs0, 0(sp); fld fs1, 8(sp); fld fs2, 16(sp); fld fs3, 24(sp); fld fs4, 32(sp); \
    fld fs5, 40(sp); fld fs6, 48(sp); fld fs7, 56(sp); fld fs8, 64(sp); fld fs9, 72(sp); \
    fld fs10, 80(sp); fld fs11, 88(sp); \
    addi sp, sp, 208; .cfi_def_cfa_offset 0; \
    .cfi_restore ra; .cfi_restore s0; .cfi_restore s1; .cfi_restore s2; .cfi_restore s3; \
    .cfi_restore s4; .cfi_restore s5; .cfi_restore s6; .cfi_restore s7; .cfi_restore s8; \
    .cfi_restore s9; .cfi_restore s10; .cfi_restore s11

/* t3 accumulates the mask; t4, t5 are scratch. */
#define LOADF(freg, value) li t4, value; fmv.d.x freg, t4
#define CHECKX(reg, value, bit) li t4, value; beq reg, t4, 1f; li t4, (1 << bit); or t3, t3, t4; 1:
#define CHECKF(freg, value, bit) fmv.x.d t5, freg; CHECKX(t5, value, bit)

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, @function
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    mv      t6, a0
    mv      a0, a1
    li      s0, 0x1b1b1b1b1b1b1b00
    li      s1, 0x2b2b2b2b2b2b2b01
    li      s2, 0x3c3c3c3c3c3c3c02
    li      s3, 0x4d4d4d4d4d4d4d03
    li      s4, 0x5e5e5e5e5e5e5e04
    li      s5, 0x6f6f6f6f6f6f6f05
    li      s6, 0x1a2a3a4a5a6a7a06
    li      s7, 0x2b3b4b5b6b7b8b07
    li      s8, 0x3c4c5c6c7c8c9c08
    li      s9, 0x4d5d6d7d8d9dad09
    li      s10, 0x5e6e7e8e9eaebe0a
    li      s11, 0x6f7f8f9fafbfcf0b
    LOADF(fs0, 0x3ff0f0f0f0f0f00c)
    LOADF(fs1, 0x3ff1f1f1f1f1f10d)
    LOADF(fs2, 0x3ff2f2f2f2f2f20e)
    LOADF(fs3, 0x3ff3f3f3f3f3f30f)
    LOADF(fs4, 0x3ff4f4f4f4f4f410)
    LOADF(fs5, 0x3ff5f5f5f5f5f511)
    LOADF(fs6, 0x3ff6f6f6f6f6f612)
    LOADF(fs7, 0x3ff7f7f7f7f7f713)
    LOADF(fs8, 0x3ff8f8f8f8f8f814)
    LOADF(fs9, 0x3ff9f9f9f9f9f915)
    LOADF(fs10, 0x3ffafafafafafa16)
    LOADF(fs11, 0x3ffbfbfbfbfbfb17)
    jalr    t6
    li      t3, 0
    CHECKX(s0, 0x1b1b1b1b1b1b1b00, 0)
    CHECKX(s1, 0x2b2b2b2b2b2b2b01, 1)
    CHECKX(s2, 0x3c3c3c3c3c3c3c02, 2)
    CHECKX(s3, 0x4d4d4d4d4d4d4d03, 3)
    CHECKX(s4, 0x5e5e5e5e5e5e5e04, 4)
    CHECKX(s5, 0x6f6f6f6f6f6f6f05, 5)
    CHECKX(s6, 0x1a2a3a4a5a6a7a06, 6)
    CHECKX(s7, 0x2b3b4b5b6b7b8b07, 7)
    CHECKX(s8, 0x3c4c5c6c7c8c9c08, 8)
    CHECKX(s9, 0x4d5d6d7d8d9dad09, 9)
    CHECKX(s10, 0x5e6e7e8e9eaebe0a, 10)
    CHECKX(s11, 0x6f7f8f9fafbfcf0b, 11)
    CHECKF(fs0, 0x3ff0f0f0f0f0f00c, 12)
    CHECKF(fs1, 0x3ff1f1f1f1f1f10d, 13)
    CHECKF(fs2, 0x3ff2f2f2f2f2f20e, 14)
    CHECKF(fs3, 0x3ff3f3f3f3f3f30f, 15)
    CHECKF(fs4, 0x3ff4f4f4f4f4f410, 16)
    CHECKF(fs5, 0x3ff5f5f5f5f5f511, 17)
    CHECKF(fs6, 0x3ff6f6f6f6f6f612, 18)
    CHECKF(fs7, 0x3ff7f7f7f7f7f713, 19)
    CHECKF(fs8, 0x3ff8f8f8f8f8f814, 20)
    CHECKF(fs9, 0x3ff9f9f9f9f9f915, 21)
    CHECKF(fs10, 0x3ffafafafafafa16, 22)
    CHECKF(fs11, 0x3ffbfbfbfbfbfb17, 23)
    sext.w  a0, t3
    RESTORE_CALLEE_SAVED
    ret
    .cfi_endproc
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, @function
fiber_test_clobber_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    mv      t6, a0
    mv      a0, a1
    li      s0, 0xdead00000000be00
    li      s1, 0xdead11111111be01
    li      s2, 0xdead22222222be02
    li      s3, 0xdead33333333be03
    li      s4, 0xdead44444444be04
    li      s5, 0xdead55555555be05
    li      s6, 0xdead66666666be06
    li      s7, 0xdead77777777be07
    li      s8, 0xdead88888888be08
    li      s9, 0xdead99999999be09
    li      s10, 0xdeadaaaaaaaabe0a
    li      s11, 0xdeadbbbbbbbbbe0b
    LOADF(fs0, 0xdeadf0f0f0f0be0c)
    LOADF(fs1, 0xdeadf1f1f1f1be0d)
    LOADF(fs2, 0xdeadf2f2f2f2be0e)
    LOADF(fs3, 0xdeadf3f3f3f3be0f)
    LOADF(fs4, 0xdeadf4f4f4f4be10)
    LOADF(fs5, 0xdeadf5f5f5f5be11)
    LOADF(fs6, 0xdeadf6f6f6f6be12)
    LOADF(fs7, 0xdeadf7f7f7f7be13)
    LOADF(fs8, 0xdeadf8f8f8f8be14)
    LOADF(fs9, 0xdeadf9f9f9f9be15)
    LOADF(fs10, 0xdeadfafafafabe16)
    LOADF(fs11, 0xdeadfbfbfbfbbe17)
    jalr    t6
    RESTORE_CALLEE_SAVED
    ret
    .cfi_endproc
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, @function
fiber_test_caller_sp:
    .cfi_startproc
    mv      a0, sp
    ret
    .cfi_endproc
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, @function
fiber_test_fp_get:
    .cfi_startproc
    frrm    a0
    ret
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, @function
fiber_test_fp_set:
    .cfi_startproc
    fsrm    a0
    ret
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, @function
fiber_test_fp_unusual:
    .cfi_startproc
    li      a0, 3                   /* RUP: round toward +infinity */
    ret
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", @progbits
