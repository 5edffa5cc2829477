/* Frame layout of a suspended context on SPARC64 (SPARC V9 ABI): see the diagrams
 * in arch/switch_sparc64_sysv_elf_gas.S. Included by that file and by
 * fiber/src/frame.cpp.
 *
 * The handle (what fiber_prepare_context and fiber_switch_context return, and what
 * fiber_switch_context takes as `to`) is the REAL address of the suspended frame,
 * that is the biased %sp of fiber_switch_context's own window plus the stack bias
 * (2047). It is never the biased %sp: the C++ side reads the data word with a plain
 * load at handle + FIBER_FRAME_DATA, which must be an aligned address inside the
 * frame (a biased %sp is odd and points 2047 bytes below it).
 *
 * The frame is one minimal SPARC V9 frame (176 bytes): the 16-doubleword register
 * window save area, where a window spill of fiber_switch_context's window writes
 * %l0-%l7 and %i0-%i7, followed by the 6-doubleword argument area. The words that
 * matter sit where a spill would write the same values (data in the %l0 slot, the
 * caller's %sp and return address in the %i6 and %i7 slots), so a spill at any
 * instant (signal delivery, preemption) cannot change them; the FSR lives in the
 * argument area, which no spill writes. All offsets are from the real address.
 */
#ifndef FIBER_ARCH_SWITCH_SPARC64_SYSV_ELF_GAS_H
#define FIBER_ARCH_SWITCH_SPARC64_SYSV_ELF_GAS_H

#include "fiber/detail/switch.h"

/* %sp and %fp hold the frame's real address minus this (SCD 2.4.1, SPARC V9 ABI). */
#define FIBER_STACK_BIAS 2047

/* FIBER_FRAME_DATA (0, from switch.h) is the %l0 slot of the switch's window. */
#define FIBER_FRAME_L1 8       /* %l1 slot: unused in a suspended switch frame */
#define FIBER_FRAME_FP 112     /* %i6 slot: the suspended caller's %sp (biased) */
#define FIBER_FRAME_RA 120     /* %i7 slot: address of the caller's call; it resumes at +8 */
#define FIBER_FRAME_FSR 128    /* first argument-area doubleword: the FSR (64-bit, stx %fsr) */
#define FIBER_FRAME_SIZE 176   /* the minimal V9 frame: 128-byte save area + 48-byte argument area */

/* A fresh context is two such frames: the switch frame above, and above it the
 * frame of fiber_trampoline, whose window the first switch fills from its save
 * area. The trampoline finds its entry and argument in %l0 and %l1. */
#define FIBER_FRAME_ENTRY FIBER_FRAME_DATA  /* %l0 slot of the trampoline's frame */
#define FIBER_FRAME_ARG FIBER_FRAME_L1      /* %l1 slot of the trampoline's frame */

/* The FSR control fields, switched per fiber: RD (rounding direction, bits 31:30),
 * TEM (trap enable mask, 27:23), NS (nonstandard floating point, 22). The rest
 * (fcc0-fcc3, aexc, cexc, ftt, qne, ver) is status. */
#define FIBER_FSR_CONTROL 0xcfc00000

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct frame {
  void* data;                // %l0 slot (fresh trampoline frame: entry)
  std::uint64_t l1;          // %l1 slot (fresh trampoline frame: arg)
  std::uint64_t l2_l7[6];    // %l2-%l7 slots: whatever a spill writes
  std::uint64_t i0_i5[6];    // %i0-%i5 slots: likewise
  std::uint64_t fp;          // %i6 slot
  std::uint64_t ra;          // %i7 slot
  std::uint64_t fsr;         // argument area, word 0
  std::uint64_t args[5];     // argument area, words 1-5: unused
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, l1) == FIBER_FRAME_L1);
static_assert(offsetof(frame, data) == FIBER_FRAME_ENTRY);
static_assert(offsetof(frame, l1) == FIBER_FRAME_ARG);
static_assert(offsetof(frame, fp) == FIBER_FRAME_FP);
static_assert(offsetof(frame, ra) == FIBER_FRAME_RA);
static_assert(offsetof(frame, fsr) == FIBER_FRAME_FSR);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
// The window save area is 16 doublewords, as a spill writes them: %l0-%l7, %i0-%i7.
static_assert(FIBER_FRAME_FP == 8 * 14 && FIBER_FRAME_RA == 8 * 15 && FIBER_FRAME_FSR == 8 * 16);
// The ABI keeps %sp + bias 16-byte aligned; frames are multiples of 16 so it stays so.
static_assert(FIBER_FRAME_SIZE % 16 == 0);
static_assert(FIBER_STACK_BIAS == 2047);
}  // namespace fiber::detail::layout
#endif

#endif
