/* Test helpers for MIPS64 n64: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (s0-s7, s8/fp,
 *       gp, $f24-$f31), calls fn(arg), and returns a bit mask of the registers
 *       that no longer hold their pattern (bits 0-7: s0-s7, bit 8: s8, bit 9: gp,
 *       bits 10-17: $f24-$f31).
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer at the call.
 *
 * fn is called through $t9, as n64 PIC requires: it finds its own gp from $t9,
 * so the garbage in gp does not reach it (and gp is callee-saved, so every
 * switch in between must bring the pattern back).
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      the mode fields of FCSR: RM (bits 0-1),
 *                                         Enables (7-11), FN/FO (21-22), FS (24)
 *   void fiber_test_fp_set(uint64_t)      writes those fields, keeps the status
 *                                         bits, clears Cause
 *   uint64_t fiber_test_fp_unusual(void)  the current modes with RM = toward
 *                                         +infinity (2) and FS (flush to zero) set
 * (The mask is FIBER_FCSR_MODE of arch/switch_mips64_n64_elf_gas.h, which the
 * tests do not include.)
 */
#define FCSR_MODE 0x01600F83
#define FCSR_KEEP (~(FCSR_MODE | 0x0003F000) & 0xffffffff)

    .text
    .set    noreorder       /* every branch delay slot below is filled by hand */

/* A 160-byte frame: s0-s7 at 0-56, s8 at 64, gp at 72, ra at 80, $f24-$f31 at
 * 96-152. DWARF numbers: $n is n, $fn is 32 + n. */
#define SAVE_CALLEE_SAVED \
    daddiu $sp, $sp, -160; .cfi_def_cfa_offset 160; \
    sd $s0, 0($sp); sd $s1, 8($sp); sd $s2, 16($sp); sd $s3, 24($sp); \
    sd $s4, 32($sp); sd $s5, 40($sp); sd $s6, 48($sp); sd $s7, 56($sp); \
    sd $fp, 64($sp); sd $gp, 72($sp); sd $ra, 80($sp); \
    .cfi_offset 16, -160; .cfi_offset 17, -152; .cfi_offset 18, -144; .cfi_offset 19, -136; \
    .cfi_offset 20, -128; .cfi_offset 21, -120; .cfi_offset 22, -112; .cfi_offset 23, -104; \
    .cfi_offset 30, -96; .cfi_offset 28, -88; .cfi_offset 31, -80; \
    sdc1 $f24, 96($sp); sdc1 $f25, 104($sp); sdc1 $f26, 112($sp); sdc1 $f27, 120($sp); \
    sdc1 $f28, 128($sp); sdc1 $f29, 136($sp); sdc1 $f30, 144($sp); sdc1 $f31, 152($sp); \
    .cfi_offset 56, -64; .cfi_offset 57, -56; .cfi_offset 58, -48; .cfi_offset 59, -40; \
    .cfi_offset 60, -32; .cfi_offset 61, -24; .cfi_offset 62, -16; .cfi_offset 63, -8

/* Restores everything and returns (the last instruction sits in the delay slot). */
#define RESTORE_CALLEE_SAVED_AND_RETURN \
    ld $s0, 0($sp); ld $s1, 8($sp); ld $s2, 16($sp); ld $s3, 24($sp); \
    ld $s4, 32($sp); ld $s5, 40($sp); ld $s6, 48($sp); ld $s7, 56($sp); \
    ld $fp, 64($sp); ld $gp, 72($sp); ld $ra, 80($sp); \
    ldc1 $f24, 96($sp); ldc1 $f25, 104($sp); ldc1 $f26, 112($sp); ldc1 $f27, 120($sp); \
    ldc1 $f28, 128($sp); ldc1 $f29, 136($sp); ldc1 $f30, 144($sp); ldc1 $f31, 152($sp); \
    jr $ra; daddiu $sp, $sp, 160

#define LOADD(freg, value) dli $t0, value; dmtc1 $t0, freg
/* v0 |= (reg != value) << bit, without branches. */
#define CHECKX(reg, value, bit) \
    dli $t1, value; xor $t1, $t1, reg; sltu $t1, $zero, $t1; sll $t1, $t1, bit; or $v0, $v0, $t1
#define CHECKD(freg, value, bit) dmfc1 $t2, freg; CHECKX($t2, value, bit)

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, @function
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    move    $t9, $a0
    move    $a0, $a1
    dli     $s0, 0x1010101010101001
    dli     $s1, 0x1111111111111102
    dli     $s2, 0x1212121212121203
    dli     $s3, 0x1313131313131304
    dli     $s4, 0x1414141414141405
    dli     $s5, 0x1515151515151506
    dli     $s6, 0x1616161616161607
    dli     $s7, 0x1717171717171708
    dli     $fp, 0x1e1e1e1e1e1e1e09
    dli     $gp, 0x1c1c1c1c1c1c1c0a
    LOADD($f24, 0x381818181818180b)
    LOADD($f25, 0x391919191919190c)
    LOADD($f26, 0x3a1a1a1a1a1a1a0d)
    LOADD($f27, 0x3b1b1b1b1b1b1b0e)
    LOADD($f28, 0x3c1c1c1c1c1c1c0f)
    LOADD($f29, 0x3d1d1d1d1d1d1d10)
    LOADD($f30, 0x3e1e1e1e1e1e1e11)
    LOADD($f31, 0x3f1f1f1f1f1f1f12)
    jalr    $t9
    nop
    move    $v0, $zero
    CHECKX($s0, 0x1010101010101001, 0)
    CHECKX($s1, 0x1111111111111102, 1)
    CHECKX($s2, 0x1212121212121203, 2)
    CHECKX($s3, 0x1313131313131304, 3)
    CHECKX($s4, 0x1414141414141405, 4)
    CHECKX($s5, 0x1515151515151506, 5)
    CHECKX($s6, 0x1616161616161607, 6)
    CHECKX($s7, 0x1717171717171708, 7)
    CHECKX($fp, 0x1e1e1e1e1e1e1e09, 8)
    CHECKX($gp, 0x1c1c1c1c1c1c1c0a, 9)
    CHECKD($f24, 0x381818181818180b, 10)
    CHECKD($f25, 0x391919191919190c, 11)
    CHECKD($f26, 0x3a1a1a1a1a1a1a0d, 12)
    CHECKD($f27, 0x3b1b1b1b1b1b1b0e, 13)
    CHECKD($f28, 0x3c1c1c1c1c1c1c0f, 14)
    CHECKD($f29, 0x3d1d1d1d1d1d1d10, 15)
    CHECKD($f30, 0x3e1e1e1e1e1e1e11, 16)
    CHECKD($f31, 0x3f1f1f1f1f1f1f12, 17)
    RESTORE_CALLEE_SAVED_AND_RETURN
    .cfi_endproc
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, @function
fiber_test_clobber_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    move    $t9, $a0
    move    $a0, $a1
    dli     $s0, 0xdead00000000be10
    dli     $s1, 0xdead11111111be11
    dli     $s2, 0xdead22222222be12
    dli     $s3, 0xdead33333333be13
    dli     $s4, 0xdead44444444be14
    dli     $s5, 0xdead55555555be15
    dli     $s6, 0xdead66666666be16
    dli     $s7, 0xdead77777777be17
    dli     $fp, 0xdead88888888be1e
    dli     $gp, 0xdead99999999be1c
    LOADD($f24, 0xdeadaaaaaaaabe24)
    LOADD($f25, 0xdeadbbbbbbbbbe25)
    LOADD($f26, 0xdeadccccccccbe26)
    LOADD($f27, 0xdeadddddddddbe27)
    LOADD($f28, 0xdeadeeeeeeeebe28)
    LOADD($f29, 0xdeadffffffffbe29)
    LOADD($f30, 0xdead12121212be30)
    LOADD($f31, 0xdead34343434be31)
    jalr    $t9
    nop
    RESTORE_CALLEE_SAVED_AND_RETURN
    .cfi_endproc
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, @function
fiber_test_caller_sp:
    .cfi_startproc
    jr      $ra
    move    $v0, $sp
    .cfi_endproc
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, @function
fiber_test_fp_get:
    .cfi_startproc
    cfc1    $v0, $31
    li      $t0, FCSR_MODE
    jr      $ra
    and     $v0, $v0, $t0
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, @function
fiber_test_fp_set:
    .cfi_startproc
    cfc1    $t0, $31
    li      $t1, FCSR_KEEP
    and     $t0, $t0, $t1
    li      $t1, FCSR_MODE
    and     $t1, $a0, $t1
    or      $t0, $t0, $t1
    ctc1    $t0, $31
    jr      $ra
    nop
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, @function
fiber_test_fp_unusual:
    .cfi_startproc
    cfc1    $v0, $31
    li      $t0, FCSR_MODE & ~3         /* the modes, rounding mode cleared */
    and     $v0, $v0, $t0
    ori     $v0, $v0, 2                 /* RM = 2: toward +infinity */
    li      $t0, 1 << 24                /* FS: flush denormals to zero */
    jr      $ra
    or      $v0, $v0, $t0
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", @progbits
