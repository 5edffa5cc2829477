/* Test helpers for s390x (z/Architecture ELF ABI): see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every callee-saved register (r6-r13,
 *       f8-f15; r15 is the stack pointer and must come back anyway), calls
 *       fn(arg), and returns a bit mask of the registers that no longer hold their
 *       pattern (bits 0-7: r6-r13, bits 8-15: f8-f15).
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       Fills every callee-saved register with garbage, calls fn(arg), restores.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer (r15) at the call: a call does not move it.
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      the FPC's control fields: IEEE masks
 *                                         and DFP/BFP rounding modes (the FPC
 *                                         & 0xff0000ff); flags and DXC are status
 *   void fiber_test_fp_set(uint64_t)      loads the FPC (flags and DXC cleared)
 *   uint64_t fiber_test_fp_unusual(void)  the current state with the BFP rounding
 *                                         mode toward +infinity (2). s390x binary
 *                                         FP has no flush-to-zero mode.
 */
    .text

/* DWARF numbers of f8-f15 (ABI supplement, "DWARF Register Numbers"). */
#define DW_F8 24
#define DW_F9 28
#define DW_F10 25
#define DW_F11 29
#define DW_F12 26
#define DW_F13 30
#define DW_F14 27
#define DW_F15 31

/* r6-r15 go to the caller's register save area; then a 224-byte frame: the
 * 160-byte save area we owe fn, and f8-f15 above it. The CFA is r15 + 160 at
 * entry, r15 + 384 after the frame is allocated. */
#define SAVE_CALLEE_SAVED \
    stmg %r6, %r15, 48(%r15); \
    .cfi_offset %r6, -112; .cfi_offset %r7, -104; .cfi_offset %r8, -96; .cfi_offset %r9, -88; \
    .cfi_offset %r10, -80; .cfi_offset %r11, -72; .cfi_offset %r12, -64; .cfi_offset %r13, -56; \
    .cfi_offset %r14, -48; .cfi_offset %r15, -40; \
    aghi %r15, -224; .cfi_adjust_cfa_offset 224; \
    std %f8, 160(%r15); std %f9, 168(%r15); std %f10, 176(%r15); std %f11, 184(%r15); \
    std %f12, 192(%r15); std %f13, 200(%r15); std %f14, 208(%r15); std %f15, 216(%r15); \
    .cfi_offset DW_F8, -224; .cfi_offset DW_F9, -216; .cfi_offset DW_F10, -208; \
    .cfi_offset DW_F11, -200; .cfi_offset DW_F12, -192; .cfi_offset DW_F13, -184; \
    .cfi_offset DW_F14, -176; .cfi_offset DW_F15, -168

#define RESTORE_CALLEE_SAVED \
    ld %f8, 160(%r15); ld %f9, 168(%r15); ld %f10, 176(%r15); ld %f11, 184(%r15); \
    ld %f12, 192(%r15); ld %f13, 200(%r15); ld %f14, 208(%r15); ld %f15, 216(%r15); \
    lmg %r6, %r15, 224 + 48(%r15); .cfi_def_cfa_offset 160; \
    .cfi_restore %r6; .cfi_restore %r7; .cfi_restore %r8; .cfi_restore %r9; \
    .cfi_restore %r10; .cfi_restore %r11; .cfi_restore %r12; .cfi_restore %r13; \
    .cfi_restore %r14; .cfi_restore %r15; \
    .cfi_restore DW_F8; .cfi_restore DW_F9; .cfi_restore DW_F10; .cfi_restore DW_F11; \
    .cfi_restore DW_F12; .cfi_restore DW_F13; .cfi_restore DW_F14; .cfi_restore DW_F15

/* A 64-bit constant from two 32-bit halves; r0 and r1 are scratch, r2
 * accumulates the mask. */
#define LOADR(reg, hi, lo) llihf reg, hi; oilf reg, lo
#define LOADF(freg, hi, lo) LOADR(%r0, hi, lo); ldgr freg, %r0
#define CHECKR(reg, hi, lo, bit) LOADR(%r0, hi, lo); cgr reg, %r0; je 1f; oilf %r2, (1 << bit); 1:
#define CHECKF(freg, hi, lo, bit) lgdr %r1, freg; CHECKR(%r1, hi, lo, bit)

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, @function
    .p2align 3
fiber_test_check_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    lgr     %r1, %r2
    lgr     %r2, %r3
    LOADR(%r6, 0x1b1b1b1b, 0x1b1b1b00)
    LOADR(%r7, 0x2b2b2b2b, 0x2b2b2b01)
    LOADR(%r8, 0x3c3c3c3c, 0x3c3c3c02)
    LOADR(%r9, 0x4d4d4d4d, 0x4d4d4d03)
    LOADR(%r10, 0x5e5e5e5e, 0x5e5e5e04)
    LOADR(%r11, 0x6f6f6f6f, 0x6f6f6f05)
    LOADR(%r12, 0x1a2a3a4a, 0x5a6a7a06)
    LOADR(%r13, 0x2b3b4b5b, 0x6b7b8b07)
    LOADF(%f8, 0x3ff0f0f0, 0xf0f0f008)
    LOADF(%f9, 0x3ff1f1f1, 0xf1f1f109)
    LOADF(%f10, 0x3ff2f2f2, 0xf2f2f20a)
    LOADF(%f11, 0x3ff3f3f3, 0xf3f3f30b)
    LOADF(%f12, 0x3ff4f4f4, 0xf4f4f40c)
    LOADF(%f13, 0x3ff5f5f5, 0xf5f5f50d)
    LOADF(%f14, 0x3ff6f6f6, 0xf6f6f60e)
    LOADF(%f15, 0x3ff7f7f7, 0xf7f7f70f)
    basr    %r14, %r1
    lghi    %r2, 0
    CHECKR(%r6, 0x1b1b1b1b, 0x1b1b1b00, 0)
    CHECKR(%r7, 0x2b2b2b2b, 0x2b2b2b01, 1)
    CHECKR(%r8, 0x3c3c3c3c, 0x3c3c3c02, 2)
    CHECKR(%r9, 0x4d4d4d4d, 0x4d4d4d03, 3)
    CHECKR(%r10, 0x5e5e5e5e, 0x5e5e5e04, 4)
    CHECKR(%r11, 0x6f6f6f6f, 0x6f6f6f05, 5)
    CHECKR(%r12, 0x1a2a3a4a, 0x5a6a7a06, 6)
    CHECKR(%r13, 0x2b3b4b5b, 0x6b7b8b07, 7)
    CHECKF(%f8, 0x3ff0f0f0, 0xf0f0f008, 8)
    CHECKF(%f9, 0x3ff1f1f1, 0xf1f1f109, 9)
    CHECKF(%f10, 0x3ff2f2f2, 0xf2f2f20a, 10)
    CHECKF(%f11, 0x3ff3f3f3, 0xf3f3f30b, 11)
    CHECKF(%f12, 0x3ff4f4f4, 0xf4f4f40c, 12)
    CHECKF(%f13, 0x3ff5f5f5, 0xf5f5f50d, 13)
    CHECKF(%f14, 0x3ff6f6f6, 0xf6f6f60e, 14)
    CHECKF(%f15, 0x3ff7f7f7, 0xf7f7f70f, 15)
    RESTORE_CALLEE_SAVED
    br      %r14
    .cfi_endproc
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, @function
    .p2align 3
fiber_test_clobber_registers:
    .cfi_startproc
    SAVE_CALLEE_SAVED
    lgr     %r1, %r2
    lgr     %r2, %r3
    LOADR(%r6, 0xdead0000, 0x0000be06)
    LOADR(%r7, 0xdead1111, 0x1111be07)
    LOADR(%r8, 0xdead2222, 0x2222be08)
    LOADR(%r9, 0xdead3333, 0x3333be09)
    LOADR(%r10, 0xdead4444, 0x4444be0a)
    LOADR(%r11, 0xdead5555, 0x5555be0b)
    LOADR(%r12, 0xdead6666, 0x6666be0c)
    LOADR(%r13, 0xdead7777, 0x7777be0d)
    LOADF(%f8, 0xdeadf8f8, 0xf8f8be08)
    LOADF(%f9, 0xdeadf9f9, 0xf9f9be09)
    LOADF(%f10, 0xdeadfafa, 0xfafabe0a)
    LOADF(%f11, 0xdeadfbfb, 0xfbfbbe0b)
    LOADF(%f12, 0xdeadfcfc, 0xfcfcbe0c)
    LOADF(%f13, 0xdeadfdfd, 0xfdfdbe0d)
    LOADF(%f14, 0xdeadfefe, 0xfefebe0e)
    LOADF(%f15, 0xdeadffff, 0xffffbe0f)
    basr    %r14, %r1
    RESTORE_CALLEE_SAVED
    br      %r14
    .cfi_endproc
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, @function
    .p2align 3
fiber_test_caller_sp:
    .cfi_startproc
    lgr     %r2, %r15
    br      %r14
    .cfi_endproc
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, @function
    .p2align 3
fiber_test_fp_get:
    .cfi_startproc
    efpc    %r1
    llgfr   %r2, %r1
    nilf    %r2, 0xff0000ff
    br      %r14
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, @function
    .p2align 3
fiber_test_fp_set:
    .cfi_startproc
    sfpc    %r2
    br      %r14
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, @function
    .p2align 3
fiber_test_fp_unusual:
    .cfi_startproc
    efpc    %r1
    llgfr   %r2, %r1
    nilf    %r2, 0xff0000f8         /* control fields, BFP rounding mode cleared */
    oilf    %r2, 2                  /* BFP rounding toward +infinity */
    br      %r14
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", @progbits
