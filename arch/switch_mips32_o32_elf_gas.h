/* Frame layout of a suspended context on MIPS32, o32 ABI: see the diagram in
 * arch/switch_mips32_o32_elf_gas.S. Included by that file and by fiber/src/frame.cpp. */
#ifndef FIBER_ARCH_SWITCH_MIPS32_O32_ELF_GAS_H
#define FIBER_ARCH_SWITCH_MIPS32_O32_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_FCSR 4     /* the mode fields of FCSR (FIBER_FCSR_MODE) */
#define FIBER_FRAME_S0 8       /* s0-s7 ($16-$23), 4 bytes each */
#define FIBER_FRAME_S1 12
#define FIBER_FRAME_S2 16
#define FIBER_FRAME_S3 20
#define FIBER_FRAME_S4 24
#define FIBER_FRAME_S5 28
#define FIBER_FRAME_S6 32
#define FIBER_FRAME_S7 36
#define FIBER_FRAME_FP 40      /* fp/s8 ($30) */
#define FIBER_FRAME_RA 44      /* ra ($31): where the context resumes */
#define FIBER_FRAME_F20 48     /* $f20, $f22, ..., $f30 as doubles (8-aligned): */
#define FIBER_FRAME_F22 56     /* with FR=0 each also holds the odd register */
#define FIBER_FRAME_F24 64     /* above it ($f21, ..., $f31) */
#define FIBER_FRAME_F26 72
#define FIBER_FRAME_F28 80
#define FIBER_FRAME_F30 88
#define FIBER_FRAME_PC FIBER_FRAME_RA
#define FIBER_FRAME_SIZE 96

/* FCSR (FCR31) fields a context keeps as its own: RM (bits 0-1, rounding mode),
 * Enables (bits 7-11), bits 21-22 (FN and FO on cores that have them, where they
 * refine flush-to-zero; "Impl" bits elsewhere) and FS (bit 24, flush to zero).
 * The rest is status, left as the running code made it: Flags (2-6), Cause
 * (12-17, cleared when the modes are written, so that a new Enable never meets a
 * stale Cause and traps), the condition codes (23, 25-31) and the per-process
 * NAN2008/ABS2008 (18-19). */
#define FIBER_FCSR_MODE 0x01600F83
#define FIBER_FCSR_CAUSE 0x0003F000

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct frame {
  void* data;
  std::uint32_t fcsr;
  std::uint32_t s0, s1, s2, s3, s4, s5, s6, s7;
  std::uint32_t fp;
  void* ra;
  double f20, f22, f24, f26, f28, f30;
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, fcsr) == FIBER_FRAME_FCSR);
static_assert(offsetof(frame, s0) == FIBER_FRAME_S0);
static_assert(offsetof(frame, s1) == FIBER_FRAME_S1);
static_assert(offsetof(frame, s2) == FIBER_FRAME_S2);
static_assert(offsetof(frame, s3) == FIBER_FRAME_S3);
static_assert(offsetof(frame, s4) == FIBER_FRAME_S4);
static_assert(offsetof(frame, s5) == FIBER_FRAME_S5);
static_assert(offsetof(frame, s6) == FIBER_FRAME_S6);
static_assert(offsetof(frame, s7) == FIBER_FRAME_S7);
static_assert(offsetof(frame, fp) == FIBER_FRAME_FP);
static_assert(offsetof(frame, ra) == FIBER_FRAME_RA);
static_assert(offsetof(frame, ra) == FIBER_FRAME_PC);
static_assert(offsetof(frame, f20) == FIBER_FRAME_F20);
static_assert(offsetof(frame, f22) == FIBER_FRAME_F22);
static_assert(offsetof(frame, f24) == FIBER_FRAME_F24);
static_assert(offsetof(frame, f26) == FIBER_FRAME_F26);
static_assert(offsetof(frame, f28) == FIBER_FRAME_F28);
static_assert(offsetof(frame, f30) == FIBER_FRAME_F30);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
// o32 keeps sp 8-byte aligned, and sdc1/ldc1 need 8-aligned addresses: the frame
// size and every FP slot are multiples of 8. (The size is a multiple of 16 too,
// so a 16-aligned stack top gives 16-aligned frames.)
static_assert(FIBER_FRAME_SIZE % 16 == 0);
static_assert(FIBER_FRAME_F20 % 8 == 0);
// The FCSR fields kept per context and the ones cleared on a write do not overlap.
static_assert((FIBER_FCSR_MODE & FIBER_FCSR_CAUSE) == 0);
}  // namespace fiber::detail::layout
#endif

#endif
