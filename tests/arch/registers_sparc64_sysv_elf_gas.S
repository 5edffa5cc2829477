/* Test helpers for SPARC64, SPARC V9 ABI: see tests/registers_test.cpp.
 *
 *   unsigned fiber_test_check_registers(void (*fn)(void*), void* arg)
 *       Loads a distinct pattern into every register a callee must preserve, in a
 *       chain of windows (see below), calls fn(arg) from the innermost one, and
 *       returns a bit mask of the registers that no longer hold their pattern in any
 *       window of the chain: bits 0-7 %l0-%l7, bits 8-13 %i0-%i5, bit 14 %i6 (%fp
 *       no longer the frame's top: %fp - %sp is not the frame size), bit 15 %i7.
 *       No floating-point register is callee-saved in the SPARC V9 ABI, so none is
 *       checked.
 *   void fiber_test_clobber_registers(void (*fn)(void*), void* arg)
 *       The same chain of windows, filled with garbage, then fn(arg); on return the
 *       windows are popped and the caller's registers are its own again.
 *   uintptr_t fiber_test_caller_sp(void)
 *       The caller's stack pointer at the call, as a REAL address: %sp + 2047 (the
 *       stack bias). A leaf without `save`, so %sp is the caller's. The ABI keeps
 *       this real address 16-byte aligned.
 *
 * What "every register a callee must preserve" means with register windows. A
 * callee preserves its caller's %l0-%l7 and %i0-%i7 by running in windows of its
 * own; the caller's window stays in the register file, or is spilled to the save
 * area at the bottom of the caller's frame and filled back from it. A fiber's code
 * therefore never writes its resumer's registers directly: the danger in a switch
 * is that it restores a window from the register file that belongs to the other
 * stack (no flushw, or flushw in the wrong window), or fills it from the wrong
 * memory. Loading patterns into one window would not show that: the few windows a
 * fiber uses may leave the physical window that held the patterns untouched, and a
 * buggy switch would pass by luck. So both helpers work on a chain of 1 + DEPTH
 * windows, more than any SPARC V9 implementation can have (the architecture allows
 * NWINDOWS up to 32; UltraSPARC, SPARC64 and qemu have 8):
 *   - check_registers fills each window of its chain with patterns that depend on
 *     the window's depth. By the time fn(arg) switches away, the older windows of the
 *     chain were already spilled by overflow traps and the newer ones are still in
 *     the register file: the switch's flushw must write those to this stack, and
 *     every window must come back from this stack, one fill trap at a time, as the
 *     chain is checked and popped.
 *   - clobber_registers fills its chain with garbage, so that every physical window
 *     holds garbage when fn(arg) switches: a switch that took a window from the
 *     register file instead of from the target's stack would hand the target
 *     garbage, which check_registers, on the other side, reports.
 * %i6 and %i7 of the chain's nested windows are patterns too (%i7 via the %o7 set
 * before each `save`; %i6 is the previous %sp, checked as %fp - %sp == frame size),
 * and %i7 of the helper's own window, its return address, is compared with a copy.
 * The nested windows have no CFI of their own (their %i7 is a pattern, not a return
 * address): nothing may unwind through them, so fn must not throw.
 *
 * The FP control state, as one integer (see tests/fp_env_test.cpp):
 *   uint64_t fiber_test_fp_get(void)      the FSR's control fields: RD (31:30),
 *                                         TEM (27:23), NS (22); status bits masked
 *   void fiber_test_fp_set(uint64_t)      writes those fields, keeps the status
 *   uint64_t fiber_test_fp_unusual(void)  the current control fields with RD = 2
 *                                         (toward +infinity) and NS (nonstandard
 *                                         mode) set, if this FPU keeps NS (it is
 *                                         implementation-dependent; probed)
 */
#define BIAS 2047
#define DEPTH 32                   /* nested windows below the helper's own */
#define NEST_FRAME 176             /* the minimal V9 frame */
#define OWN_FRAME 208              /* 176 + 32 bytes of locals: */
#define LOC_BASE 0                 /*   the chain's pattern base */
#define LOC_RA 8                   /*   a copy of our %i7 */
#define LOC_FN 16                  /*   fn */
#define LOC_ARG 24                 /*   arg */
#define LEVEL_STEP 0x40            /* pattern difference between two windows */
#define FSR_CONTROL 0xcfc00000     /* RD, TEM, NS */
#define FSR_RD 0xc0000000
#define FSR_RD_UP 0x80000000       /* RD = 2: toward +infinity */
#define FSR_NS 0x00400000

    .register %g2, #scratch
    .register %g3, #scratch

    .text

/* The helper's own window, with CFI as GCC writes it (return address in %i7, CFA
 * at %fp + bias, the caller's window in the save area). */
#define PROLOGUE \
    save %sp, -OWN_FRAME, %sp; .cfi_window_save; .cfi_register 15, 31; .cfi_def_cfa_register 30

/* %l0-%l7, %i0-%i5 = p + 0 ... p + 13 */
#define FILL(p) \
    add p, 0, %l0; add p, 1, %l1; add p, 2, %l2; add p, 3, %l3; \
    add p, 4, %l4; add p, 5, %l5; add p, 6, %l6; add p, 7, %l7; \
    add p, 8, %i0; add p, 9, %i1; add p, 10, %i2; add p, 11, %i3; add p, 12, %i4; add p, 13, %i5

/* mask (%g1) |= 1 << bit unless reg == %g3 */
#define CHECK(reg, bit) \
    cmp reg, %g3; be,pt %xcc, 9f; mov 1, %g3; sllx %g3, bit, %g3; or %g1, %g3, %g1; 9:

/* Checks %l0-%l7, %i0-%i5 against p + 0 ... p + 13 */
#define CHECK_WINDOW(p) \
    add p, 0, %g3; CHECK(%l0, 0); add p, 1, %g3; CHECK(%l1, 1); \
    add p, 2, %g3; CHECK(%l2, 2); add p, 3, %g3; CHECK(%l3, 3); \
    add p, 4, %g3; CHECK(%l4, 4); add p, 5, %g3; CHECK(%l5, 5); \
    add p, 6, %g3; CHECK(%l6, 6); add p, 7, %g3; CHECK(%l7, 7); \
    add p, 8, %g3; CHECK(%i0, 8); add p, 9, %g3; CHECK(%i1, 9); \
    add p, 10, %g3; CHECK(%i2, 10); add p, 11, %g3; CHECK(%i3, 11); \
    add p, 12, %g3; CHECK(%i4, 12); add p, 13, %g3; CHECK(%i5, 13)

/* Builds the chain: fills the helper's own window with pattern `base` (in %g1),
 * then DEPTH nested windows with base + k * LEVEL_STEP, each window's %i7 being
 * its own pattern + 15; then calls fn(arg) from the innermost window. Expects %g4
 * = the helper's locals, %g1 = base. */
#define BUILD_CHAIN_AND_CALL \
    stx     %g1, [%g4 + LOC_BASE]; \
    FILL(%g1); \
    mov     DEPTH, %g2; \
8:  add     %g1, LEVEL_STEP, %g1; \
    add     %g1, 15, %o7; \
    save    %sp, -NEST_FRAME, %sp; \
    FILL(%g1); \
    subcc   %g2, 1, %g2; \
    bne,pt  %xcc, 8b; \
     nop; \
    ldx     [%g4 + LOC_FN], %o5; \
    call    %o5; \
     ldx    [%g4 + LOC_ARG], %o0

/* Loads a 64-bit constant H:L (32 bits each) into reg, using %g3. */
#define SET64(H, L, reg) \
    sethi %hi(H), reg; or reg, %lo(H), reg; sllx reg, 32, reg; \
    sethi %hi(L), %g3; or %g3, %lo(L), %g3; or reg, %g3, reg

    .globl  fiber_test_check_registers
    .type   fiber_test_check_registers, #function
    .p2align 5
fiber_test_check_registers:
    .cfi_startproc
    PROLOGUE
    add     %fp, BIAS - 32, %g4             /* the locals */
    stx     %i7, [%g4 + LOC_RA]
    stx     %i0, [%g4 + LOC_FN]
    stx     %i1, [%g4 + LOC_ARG]
    SET64(0x5a1b3c4d, 0x6e7f0000, %g1)
    BUILD_CHAIN_AND_CALL
    /* fn returned: %g1-%g4 are the callee's to clobber; find the locals again from
     * %sp (a wrong %sp shows as every pattern wrong). */
    set     DEPTH * NEST_FRAME + NEST_FRAME + BIAS, %g3
    add     %sp, %g3, %g4
    ldx     [%g4 + LOC_BASE], %g2
    set     DEPTH * LEVEL_STEP, %g3
    add     %g2, %g3, %g2                   /* the innermost window's pattern */
    mov     0, %g1                          /* the mask */
1:  CHECK_WINDOW(%g2)
    add     %g2, 15, %g3
    CHECK(%i7, 15)
    add     %sp, NEST_FRAME, %g3
    CHECK(%fp, 14)
    restore                                 /* to the next older window: a fill trap */
    ldx     [%g4 + LOC_BASE], %g3
    sub     %g2, LEVEL_STEP, %g2
    cmp     %g2, %g3
    bne,pt  %xcc, 1b
     nop
    /* The helper's own window. */
    CHECK_WINDOW(%g2)
    ldx     [%g4 + LOC_RA], %g3
    CHECK(%i7, 15)
    add     %sp, OWN_FRAME, %g3
    CHECK(%fp, 14)
    ret
     restore %g1, %g0, %o0
    .cfi_endproc
    .size   fiber_test_check_registers, .-fiber_test_check_registers

    .globl  fiber_test_clobber_registers
    .type   fiber_test_clobber_registers, #function
    .p2align 5
fiber_test_clobber_registers:
    .cfi_startproc
    PROLOGUE
    add     %fp, BIAS - 32, %g4
    stx     %i0, [%g4 + LOC_FN]
    stx     %i1, [%g4 + LOC_ARG]
    SET64(0xdeadbeef, 0xbad00000, %g1)
    BUILD_CHAIN_AND_CALL
    mov     DEPTH, %g1
1:  restore
    subcc   %g1, 1, %g1
    bne,pt  %xcc, 1b
     nop
    ret
     restore
    .cfi_endproc
    .size   fiber_test_clobber_registers, .-fiber_test_clobber_registers

    .globl  fiber_test_caller_sp
    .type   fiber_test_caller_sp, #function
    .p2align 5
fiber_test_caller_sp:
    .cfi_startproc
    retl
     add    %sp, BIAS, %o0
    .cfi_endproc
    .size   fiber_test_caller_sp, .-fiber_test_caller_sp

/* The FSR is read and written only through memory: each helper has a frame, and
 * uses the doubleword at %fp + BIAS - 8 (and - 16). */
    .globl  fiber_test_fp_get
    .type   fiber_test_fp_get, #function
    .p2align 5
fiber_test_fp_get:
    .cfi_startproc
    PROLOGUE
    stx     %fsr, [%fp + BIAS - 8]
    ldx     [%fp + BIAS - 8], %l1
    sethi   %hi(FSR_CONTROL), %l0
    and     %l1, %l0, %i0
    ret
     restore
    .cfi_endproc
    .size   fiber_test_fp_get, .-fiber_test_fp_get

    .globl  fiber_test_fp_set
    .type   fiber_test_fp_set, #function
    .p2align 5
fiber_test_fp_set:
    .cfi_startproc
    PROLOGUE
    stx     %fsr, [%fp + BIAS - 8]
    ldx     [%fp + BIAS - 8], %l1
    sethi   %hi(FSR_CONTROL), %l0
    andn    %l1, %l0, %l1                   /* the status fields as they are */
    and     %i0, %l0, %l2                   /* the requested control fields */
    or      %l1, %l2, %l1
    stx     %l1, [%fp + BIAS - 8]
    ldx     [%fp + BIAS - 8], %fsr
    ret
     restore
    .cfi_endproc
    .size   fiber_test_fp_set, .-fiber_test_fp_set

    .globl  fiber_test_fp_unusual
    .type   fiber_test_fp_unusual, #function
    .p2align 5
fiber_test_fp_unusual:
    .cfi_startproc
    PROLOGUE
    stx     %fsr, [%fp + BIAS - 8]          /* the current FSR, kept to restore */
    ldx     [%fp + BIAS - 8], %l1
    sethi   %hi(FSR_RD), %l0
    andn    %l1, %l0, %l2
    sethi   %hi(FSR_RD_UP), %l0
    or      %l2, %l0, %l2                   /* RD = toward +infinity */
    /* Does this FPU keep NS? Set it, read it back, restore the FSR. */
    sethi   %hi(FSR_NS), %l3
    or      %l2, %l3, %l4
    stx     %l4, [%fp + BIAS - 16]
    ldx     [%fp + BIAS - 16], %fsr
    stx     %fsr, [%fp + BIAS - 16]
    ldx     [%fp + BIAS - 16], %l4
    ldx     [%fp + BIAS - 8], %fsr
    and     %l4, %l3, %l4
    or      %l2, %l4, %l2                   /* NS only if it stuck */
    sethi   %hi(FSR_CONTROL), %l0
    and     %l2, %l0, %i0
    ret
     restore
    .cfi_endproc
    .size   fiber_test_fp_unusual, .-fiber_test_fp_unusual

    .section .note.GNU-stack, "", @progbits
