/* The contract between the C++ library and the per-architecture assembly in arch/.
 *
 * Included by C, C++ and every assembly file in arch/ (through the C preprocessor), so that the
 * layout of a suspended context is written down exactly once. C++ checks the numbers
 * below with static_assert (fiber/src/switch_layout.cpp); the assembly uses them as
 * offsets.
 *
 * The two primitives every architecture provides:
 *
 *   void* fiber_prepare_context(void* stack_top, fiber_entry_fn entry, void* arg);
 *       Builds, just below stack_top, a frame that looks like a context suspended
 *       inside fiber_switch_context, and returns its stack pointer. The first switch
 *       to it calls entry(from, arg) on that stack, where `from` is what a normal
 *       switch would return. entry must never return (it ends by switching away).
 *
 *   void* fiber_switch_context(void* to, void* data);
 *       Saves the caller's callee-saved state on the caller's stack, with `data` in
 *       the frame's data slot, switches to the context whose saved stack pointer is
 *       `to`, restores its state, and returns there. The value returned, in the
 *       context that resumes, is the saved stack pointer of the context that
 *       suspended (the handle with which to switch back), and that context's
 *       `data` is readable at FIBER_FRAME_DATA bytes above it until it is resumed.
 *
 * Passing data through the suspended frame, rather than as a second return value,
 * keeps the C prototype a plain pointer-in, pointer-out call on every ABI (no
 * struct returns, which differ between ABIs).
 */
#ifndef FIBER_DETAIL_SWITCH_H
#define FIBER_DETAIL_SWITCH_H

/* Offset of the pointer-sized value passed by the suspending side. Same on every
 * architecture, so C++ never needs per-architecture code to read it. */
#define FIBER_FRAME_DATA 0

#if defined(__x86_64__) && !defined(_WIN32)
/* x86_64 System V: see arch/switch_x86_64_sysv_elf_gas.S for the diagram. */
#  define FIBER_FRAME_MXCSR 8   /* 4 bytes: SSE control/status */
#  define FIBER_FRAME_X87CW 12  /* 2 bytes: x87 control word */
#  define FIBER_FRAME_R15 16
#  define FIBER_FRAME_R14 24
#  define FIBER_FRAME_R13 32
#  define FIBER_FRAME_R12 40
#  define FIBER_FRAME_RBX 48
#  define FIBER_FRAME_RBP 56
#  define FIBER_FRAME_PC 64      /* where the context resumes */
#  define FIBER_FRAME_SIZE 72    /* bytes popped before jumping to FIBER_FRAME_PC */
#elif defined(__aarch64__)
/* AArch64 AAPCS64: see arch/switch_arm64_aapcs_elf_gas.S for the diagram. */
#  define FIBER_FRAME_FPCR 8
#  define FIBER_FRAME_X19 16
#  define FIBER_FRAME_X21 32
#  define FIBER_FRAME_X23 48
#  define FIBER_FRAME_X25 64
#  define FIBER_FRAME_X27 80
#  define FIBER_FRAME_FP 96      /* x29, then x30 (lr) at +8 */
#  define FIBER_FRAME_LR 104
#  define FIBER_FRAME_D8 112
#  define FIBER_FRAME_D10 128
#  define FIBER_FRAME_D12 144
#  define FIBER_FRAME_D14 160
#  define FIBER_FRAME_PC FIBER_FRAME_LR
#  define FIBER_FRAME_SIZE 176
#else
#  error "fiber: no context-switch assembly for this architecture yet"
#endif

#ifndef __ASSEMBLER__
#ifdef __cplusplus
extern "C" {
#endif

typedef void (*fiber_entry_fn)(void* from, void* arg);

void* fiber_prepare_context(void* stack_top, fiber_entry_fn entry, void* arg);
void* fiber_switch_context(void* to, void* data);

#ifdef __cplusplus
}
#endif
#endif /* __ASSEMBLER__ */

#endif /* FIBER_DETAIL_SWITCH_H */
