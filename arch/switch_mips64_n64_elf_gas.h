/* Frame layout of a suspended context on MIPS64, n64 ABI: see the diagram in
 * arch/switch_mips64_n64_elf_gas.S. Included by that file and by fiber/src/frame.cpp. */
#ifndef FIBER_ARCH_SWITCH_MIPS64_N64_ELF_GAS_H
#define FIBER_ARCH_SWITCH_MIPS64_N64_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_FCSR 8     /* 4 bytes: the mode fields of FCSR (FIBER_FCSR_MODE) */
#define FIBER_FRAME_S0 16      /* s0-s7 ($16-$23), 8 bytes each */
#define FIBER_FRAME_S1 24
#define FIBER_FRAME_S2 32
#define FIBER_FRAME_S3 40
#define FIBER_FRAME_S4 48
#define FIBER_FRAME_S5 56
#define FIBER_FRAME_S6 64
#define FIBER_FRAME_S7 72
#define FIBER_FRAME_FP 80      /* s8/fp ($30) */
#define FIBER_FRAME_GP 88      /* gp ($28): callee-saved in n64 */
#define FIBER_FRAME_RA 96      /* ra ($31): where the context resumes */
#define FIBER_FRAME_F24 104    /* $f24-$f31, 64-bit each (FR=1) */
#define FIBER_FRAME_F25 112
#define FIBER_FRAME_F26 120
#define FIBER_FRAME_F27 128
#define FIBER_FRAME_F28 136
#define FIBER_FRAME_F29 144
#define FIBER_FRAME_F30 152
#define FIBER_FRAME_F31 160
#define FIBER_FRAME_PAD 168    /* keeps the frame a multiple of 16 */
#define FIBER_FRAME_PC FIBER_FRAME_RA
#define FIBER_FRAME_SIZE 176

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
  std::uint32_t fcsr_pad;
  std::uint64_t s0, s1, s2, s3, s4, s5, s6, s7;
  std::uint64_t fp, gp;
  void* ra;
  double f24, f25, f26, f27, f28, f29, f30, f31;
  std::uint64_t pad;
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
static_assert(offsetof(frame, gp) == FIBER_FRAME_GP);
static_assert(offsetof(frame, ra) == FIBER_FRAME_RA);
static_assert(offsetof(frame, ra) == FIBER_FRAME_PC);
static_assert(offsetof(frame, f24) == FIBER_FRAME_F24);
static_assert(offsetof(frame, f25) == FIBER_FRAME_F25);
static_assert(offsetof(frame, f26) == FIBER_FRAME_F26);
static_assert(offsetof(frame, f27) == FIBER_FRAME_F27);
static_assert(offsetof(frame, f28) == FIBER_FRAME_F28);
static_assert(offsetof(frame, f29) == FIBER_FRAME_F29);
static_assert(offsetof(frame, f30) == FIBER_FRAME_F30);
static_assert(offsetof(frame, f31) == FIBER_FRAME_F31);
static_assert(offsetof(frame, pad) == FIBER_FRAME_PAD);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
// n64 keeps sp 16-byte aligned at all times; the caller's sp is, so the saved sp is.
static_assert(FIBER_FRAME_SIZE % 16 == 0);
// Every offset is reachable from sp with the 16-bit signed immediate of ld/sd/ldc1.
static_assert(FIBER_FRAME_SIZE <= 32767);
// The FCSR fields kept per context and the ones cleared on a write do not overlap.
static_assert((FIBER_FCSR_MODE & FIBER_FCSR_CAUSE) == 0);
}  // namespace fiber::detail::layout
#endif

#endif
