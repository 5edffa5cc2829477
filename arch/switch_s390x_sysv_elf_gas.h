/* Frame layout of a suspended context on s390x (z/Architecture ELF ABI): see the
 * diagrams in arch/switch_s390x_sysv_elf_gas.S. Included by that file and by
 * fiber/src/frame.cpp.
 *
 * Unlike the other ports, a suspended context spans two areas: the switch's own
 * frame (FIBER_FRAME_SIZE bytes at the saved stack pointer: data, FPC, f8-f15),
 * and, right above it, the 160-byte register save area that the ABI makes every
 * caller provide for its callee, where the switch keeps r6-r15 in their
 * customary slots. */
#ifndef FIBER_ARCH_SWITCH_S390X_SYSV_ELF_GAS_H
#define FIBER_ARCH_SWITCH_S390X_SYSV_ELF_GAS_H

#include "fiber/detail/switch.h"

/* The switch's own frame. */
#define FIBER_FRAME_FPC 8       /* 4 bytes: the floating-point control register */
#define FIBER_FRAME_F8 16       /* f8-f15, 8 bytes apart */
#define FIBER_FRAME_F9 24
#define FIBER_FRAME_F10 32
#define FIBER_FRAME_F11 40
#define FIBER_FRAME_F12 48
#define FIBER_FRAME_F13 56
#define FIBER_FRAME_F14 64
#define FIBER_FRAME_F15 72
#define FIBER_FRAME_SIZE 80     /* r15 goes down by this much; a multiple of 8 (and 16) */

/* Above it: the register save area of the frame that called the switch (ABI,
 * "Register Save Area"), 160 bytes from its back-chain slot. */
#define FIBER_FRAME_SAVE_AREA FIBER_FRAME_SIZE
#define FIBER_FRAME_SAVE_AREA_SIZE 160
#define FIBER_FRAME_BACK_CHAIN (FIBER_FRAME_SAVE_AREA + 0)  /* the caller's: never written */
#define FIBER_FRAME_R6 (FIBER_FRAME_SAVE_AREA + 48)         /* r6-r15, 8 bytes apart */
#define FIBER_FRAME_R14 (FIBER_FRAME_SAVE_AREA + 112)
#define FIBER_FRAME_R15 (FIBER_FRAME_SAVE_AREA + 120)
#define FIBER_FRAME_PC FIBER_FRAME_R14                      /* where the context resumes */
#define FIBER_FRAME_EXTENT (FIBER_FRAME_SAVE_AREA + FIBER_FRAME_SAVE_AREA_SIZE)

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
// The register save area at the bottom of every s390x stack frame, as the ABI's
// "customary" slot assignment names it.
struct register_save_area {
  std::uint64_t back_chain;
  std::uint64_t unused;
  std::uint64_t r2, r3, r4, r5;
  std::uint64_t r6, r7, r8, r9, r10, r11, r12, r13;
  void* r14;  // return address
  std::uint64_t r15;  // stack pointer
  double f0, f2, f4, f6;
};
struct frame {
  void* data;
  std::uint32_t fpc;
  std::uint32_t pad;
  double f8, f9, f10, f11, f12, f13, f14, f15;
  register_save_area caller;  // belongs to the frame above; r6-r15 live here
};
static_assert(sizeof(register_save_area) == FIBER_FRAME_SAVE_AREA_SIZE);
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, fpc) == FIBER_FRAME_FPC);
static_assert(offsetof(frame, f8) == FIBER_FRAME_F8);
static_assert(offsetof(frame, f9) == FIBER_FRAME_F9);
static_assert(offsetof(frame, f10) == FIBER_FRAME_F10);
static_assert(offsetof(frame, f11) == FIBER_FRAME_F11);
static_assert(offsetof(frame, f12) == FIBER_FRAME_F12);
static_assert(offsetof(frame, f13) == FIBER_FRAME_F13);
static_assert(offsetof(frame, f14) == FIBER_FRAME_F14);
static_assert(offsetof(frame, f15) == FIBER_FRAME_F15);
static_assert(offsetof(frame, caller) == FIBER_FRAME_SAVE_AREA);
static_assert(offsetof(frame, caller) + offsetof(register_save_area, back_chain) == FIBER_FRAME_BACK_CHAIN);
static_assert(offsetof(frame, caller) + offsetof(register_save_area, r6) == FIBER_FRAME_R6);
static_assert(offsetof(frame, caller) + offsetof(register_save_area, r14) == FIBER_FRAME_R14);
static_assert(offsetof(frame, caller) + offsetof(register_save_area, r15) == FIBER_FRAME_R15);
static_assert(offsetof(register_save_area, r15) - offsetof(register_save_area, r6) == 9 * 8);  // one stmg/lmg
static_assert(sizeof(frame) == FIBER_FRAME_EXTENT);
// The ABI: every stack frame is "aligned on an 8-byte boundary" and a multiple
// of 8 bytes long. 16 keeps a 16-aligned stack 16-aligned, which costs nothing.
static_assert(FIBER_FRAME_SIZE % 16 == 0 && FIBER_FRAME_SAVE_AREA_SIZE % 16 == 0);
}  // namespace fiber::detail::layout
#endif

#endif
