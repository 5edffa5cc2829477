/* Test helpers for MIPS32 o32: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (s0-s7, fp,
 *       and $f20, $f22, ..., $f30 as doubles, which with FR=0 covers $f21, ...,
 *       $f31 too), calls fn(arg), and returns a bit mask of the registers that no
 *       longer hold their pattern (bits 0-7: s0-s7, bit 8: fp, bits 9-14: $f20,
 *       $f22, ..., $f30).
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *       It fills gp with garbage too: gp is caller-saved in o32, and the switch
 *       relies on that (it does not save it), so every caller must survive it.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer at the call.
 *
 * fn is called through $t9, as o32 PIC requires, with the 16 bytes of argument
 * space at the bottom of our frame.
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      the mode fields of FCSR: RM (bits 0-1),
 *                                         Enables (7-11), FN/FO (21-22), FS (24)
 *   void fiber_test_fp_set(uint64_t)      writes those fields, keeps the status
 *                                         bits, clears Cause
 *   uint64_t fiber_test_fp_unusual(void)  the current modes with RM = toward
 *                                         +infinity (2) and FS (flush to zero) set
 * (The mask is FIBER_FCSR_MODE of arch/switch_mips32_o32_elf_gas.h, which the
 * tests do not include.)
 */
#define FCSR_MODE 0x01600F83
#define FCSR_KEEP (~(FCSR_MODE | 0x0003F000) & 0xffffffff)

/* A uint64_t is passed in a0/a1 and returned in v0/v1, most significant word
 * first in memory order. */
#if defined(__MIPSEB__)
#  define ARG64_LO $a1
#  define RET64_LO $v1
#  define RET64_HI $v0
#else
#  define ARG64_LO $a0
#  define RET64_LO $v0
#  define RET64_HI $v1
#endif

    .text
    .set    noreorder       /* every branch delay slot below is filled by hand */

/* A 128-byte frame: 0-15 argument space for fn, 16-23 scratch, gp at 24,
 * $f20-$f30 at 32-72, s0-s7 at 80-108, fp at 112, ra at 116. DWARF numbers: $n is
 * n, $fn is 32 + n; a double saved from $f(2k) is described in the FR=0 view. */
#if defined(__MIPSEB__)
#  define CFI_DOUBLE(dweven, off) .cfi_offset dweven + 1, off; .cfi_offset dweven, (off) + 4
#else
#  define CFI_DOUBLE(dweven, off) .cfi_offset dweven, off; .cfi_offset dweven + 1, (off) + 4
#endif
#define SAVE_CALLEE_SAVED \
    addiu $sp, $sp, -128; .cfi_def_cfa_offset 128; \
    sw $s0, 80($sp); sw $s1, 84($sp); sw $s2, 88($sp); sw $s3, 92($sp); \
    sw $s4, 96($sp); sw $s5, 100($sp); sw $s6, 104($sp); sw $s7, 108($sp); \
    sw $fp, 112($sp); sw $ra, 116($sp); sw $gp, 24($sp); \
    .cfi_offset 16, -48; .cfi_offset 17, -44; .cfi_offset 18, -40; .cfi_offset 19, -36; \
    .cfi_offset 20, -32; .cfi_offset 21, -28; .cfi_offset 22, -24; .cfi_offset 23, -20; \
    .cfi_offset 30, -16; .cfi_offset 31, -12; .cfi_offset 28, -104; \
    sdc1 $f20, 32($sp); sdc1 $f22, 40($sp); sdc1 $f24, 48($sp); \
    sdc1 $f26, 56($sp); sdc1 $f28, 64($sp); sdc1 $f30, 72($sp); \
    CFI_DOUBLE(52, -96); CFI_DOUBLE(54, -88); CFI_DOUBLE(56, -80); \
    CFI_DOUBLE(58, -72); CFI_DOUBLE(60, -64); CFI_DOUBLE(62, -56)

/* Restores everything and returns (the last instruction sits in the delay slot). */
#define RESTORE_CALLEE_SAVED_AND_RETURN \
    lw $s0, 80($sp); lw $s1, 84($sp); lw $s2, 88($sp); lw $s3, 92($sp); \
    lw $s4, 96($sp); lw $s5, 100($sp); lw $s6, 104($sp); lw $s7, 108($sp); \
    lw $fp, 112($sp); lw $ra, 116($sp); lw $gp, 24($sp); \
    ldc1 $f20, 32($sp); ldc1 $f22, 40($sp); ldc1 $f24, 48($sp); \
    ldc1 $f26, 56($sp); ldc1 $f28, 64($sp); ldc1 $f30, 72($sp); \
    jr $ra; addiu $sp, $sp, 128

/* A double built in memory: the word at the lower address first, whatever the
 * endianness, so loading and checking see the same 64 bits. */
#define LOADD(freg, first, second) \
    li $t0, first; sw $t0, 16($sp); li $t0, second; sw $t0, 20($sp); ldc1 freg, 16($sp)
/* v0 |= (reg != value) << bit, without branches. */
#define CHECKX(reg, value, bit) \
    li $t1, value; xor $t1, $t1, reg; sltu $t1, $zero, $t1; sll $t1, $t1, bit; or $v0, $v0, $t1
#define CHECKD(freg, first, second, bit) \
    sdc1 freg, 16($sp); lw $t2, 16($sp); li $t1, first; xor $t2, $t2, $t1; \
    lw $t3, 20($sp); li $t1, second; xor $t3, $t3, $t1; or $t2, $t2, $t3; \
    sltu $t2, $zero, $t2; sll $t2, $t2, bit; or $v0, $v0, $t2

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, @function
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    move    $t9, $a0
    move    $a0, $a1
    li      $s0, 0x10101001
    li      $s1, 0x11111102
    li      $s2, 0x12121203
    li      $s3, 0x13131304
    li      $s4, 0x14141405
    li      $s5, 0x15151506
    li      $s6, 0x16161607
    li      $s7, 0x17171708
    li      $fp, 0x1e1e1e09
    LOADD($f20, 0x2020200a, 0x34141414)
    LOADD($f22, 0x2222220b, 0x36161616)
    LOADD($f24, 0x2424240c, 0x38181818)
    LOADD($f26, 0x2626260d, 0x3a1a1a1a)
    LOADD($f28, 0x2828280e, 0x3c1c1c1c)
    LOADD($f30, 0x3030300f, 0x3e1e1e1e)
    jalr    $t9
    nop
    move    $v0, $zero
    CHECKX($s0, 0x10101001, 0)
    CHECKX($s1, 0x11111102, 1)
    CHECKX($s2, 0x12121203, 2)
    CHECKX($s3, 0x13131304, 3)
    CHECKX($s4, 0x14141405, 4)
    CHECKX($s5, 0x15151506, 5)
    CHECKX($s6, 0x16161607, 6)
    CHECKX($s7, 0x17171708, 7)
    CHECKX($fp, 0x1e1e1e09, 8)
    CHECKD($f20, 0x2020200a, 0x34141414, 9)
    CHECKD($f22, 0x2222220b, 0x36161616, 10)
    CHECKD($f24, 0x2424240c, 0x38181818, 11)
    CHECKD($f26, 0x2626260d, 0x3a1a1a1a, 12)
    CHECKD($f28, 0x2828280e, 0x3c1c1c1c, 13)
    CHECKD($f30, 0x3030300f, 0x3e1e1e1e, 14)
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
    li      $s0, 0xdead0010
    li      $s1, 0xdead1111
    li      $s2, 0xdead2212
    li      $s3, 0xdead3313
    li      $s4, 0xdead4414
    li      $s5, 0xdead5515
    li      $s6, 0xdead6616
    li      $s7, 0xdead7717
    li      $fp, 0xdead881e
    li      $gp, 0xdead991c
    LOADD($f20, 0xdeadbe20, 0xdeadbe21)
    LOADD($f22, 0xdeadbe22, 0xdeadbe23)
    LOADD($f24, 0xdeadbe24, 0xdeadbe25)
    LOADD($f26, 0xdeadbe26, 0xdeadbe27)
    LOADD($f28, 0xdeadbe28, 0xdeadbe29)
    LOADD($f30, 0xdeadbe30, 0xdeadbe31)
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
    cfc1    $t0, $31
    li      $t1, FCSR_MODE
    and     RET64_LO, $t0, $t1
    jr      $ra
    move    RET64_HI, $zero
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
    and     $t1, ARG64_LO, $t1
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
    cfc1    $t0, $31
    li      $t1, FCSR_MODE & ~3         /* the modes, rounding mode cleared */
    and     $t0, $t0, $t1
    ori     $t0, $t0, 2                 /* RM = 2: toward +infinity */
    li      $t1, 1 << 24                /* FS: flush denormals to zero */
    or      RET64_LO, $t0, $t1
    jr      $ra
    move    RET64_HI, $zero
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", @progbits
