/* Frame layout of a suspended context on RISC-V 64, lp64d: see the diagrams in
 * arch/switch_riscv64_lp64d_elf_gas.S. Included by that file and by fiber/src/frame.cpp. */
#ifndef FIBER_ARCH_SWITCH_RISCV64_LP64D_ELF_GAS_H
#define FIBER_ARCH_SWITCH_RISCV64_LP64D_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_FRM 8      /* dynamic rounding mode (fcsr.frm), as read by frrm */
#define FIBER_FRAME_S1 16      /* s1-s11, 8 bytes apart */
#define FIBER_FRAME_S2 24
#define FIBER_FRAME_S3 32
#define FIBER_FRAME_S4 40
#define FIBER_FRAME_S5 48
#define FIBER_FRAME_S6 56
#define FIBER_FRAME_S7 64
#define FIBER_FRAME_S8 72
#define FIBER_FRAME_S9 80
#define FIBER_FRAME_S10 88
#define FIBER_FRAME_S11 96
#define FIBER_FRAME_FS0 104    /* fs0-fs11 (f8-f9, f18-f27), 8 bytes apart */
#define FIBER_FRAME_FS1 112
#define FIBER_FRAME_FS2 120
#define FIBER_FRAME_FS3 128
#define FIBER_FRAME_FS4 136
#define FIBER_FRAME_FS5 144
#define FIBER_FRAME_FS6 152
#define FIBER_FRAME_FS7 160
#define FIBER_FRAME_FS8 168
#define FIBER_FRAME_FS9 176
#define FIBER_FRAME_FS10 184
#define FIBER_FRAME_FS11 192
#define FIBER_FRAME_PAD 200
#define FIBER_FRAME_S0 208     /* s0 (fp), then ra: a frame record just below the CFA */
#define FIBER_FRAME_RA 216
#define FIBER_FRAME_PC FIBER_FRAME_RA  /* where the context resumes */
#define FIBER_FRAME_SIZE 224   /* bytes popped before jumping to FIBER_FRAME_PC */

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct frame {
  void* data;
  std::uint64_t frm;
  std::uint64_t s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11;
  double fs0, fs1, fs2, fs3, fs4, fs5, fs6, fs7, fs8, fs9, fs10, fs11;
  std::uint64_t pad;
  std::uint64_t s0;
  void* ra;
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, frm) == FIBER_FRAME_FRM);
static_assert(offsetof(frame, s1) == FIBER_FRAME_S1);
static_assert(offsetof(frame, s2) == FIBER_FRAME_S2);
static_assert(offsetof(frame, s3) == FIBER_FRAME_S3);
static_assert(offsetof(frame, s4) == FIBER_FRAME_S4);
static_assert(offsetof(frame, s5) == FIBER_FRAME_S5);
static_assert(offsetof(frame, s6) == FIBER_FRAME_S6);
static_assert(offsetof(frame, s7) == FIBER_FRAME_S7);
static_assert(offsetof(frame, s8) == FIBER_FRAME_S8);
static_assert(offsetof(frame, s9) == FIBER_FRAME_S9);
static_assert(offsetof(frame, s10) == FIBER_FRAME_S10);
static_assert(offsetof(frame, s11) == FIBER_FRAME_S11);
static_assert(offsetof(frame, fs0) == FIBER_FRAME_FS0);
static_assert(offsetof(frame, fs1) == FIBER_FRAME_FS1);
static_assert(offsetof(frame, fs2) == FIBER_FRAME_FS2);
static_assert(offsetof(frame, fs3) == FIBER_FRAME_FS3);
static_assert(offsetof(frame, fs4) == FIBER_FRAME_FS4);
static_assert(offsetof(frame, fs5) == FIBER_FRAME_FS5);
static_assert(offsetof(frame, fs6) == FIBER_FRAME_FS6);
static_assert(offsetof(frame, fs7) == FIBER_FRAME_FS7);
static_assert(offsetof(frame, fs8) == FIBER_FRAME_FS8);
static_assert(offsetof(frame, fs9) == FIBER_FRAME_FS9);
static_assert(offsetof(frame, fs10) == FIBER_FRAME_FS10);
static_assert(offsetof(frame, fs11) == FIBER_FRAME_FS11);
static_assert(offsetof(frame, pad) == FIBER_FRAME_PAD);
static_assert(offsetof(frame, s0) == FIBER_FRAME_S0);
static_assert(offsetof(frame, ra) == FIBER_FRAME_RA);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
// The psABI: "the stack pointer shall be aligned to a 128-bit boundary upon
// procedure entry" and "must remain aligned throughout procedure execution".
static_assert(FIBER_FRAME_SIZE % 16 == 0);
// The frame record convention puts the caller's fp at CFA-16 and ra at CFA-8.
static_assert(FIBER_FRAME_SIZE - FIBER_FRAME_S0 == 16 && FIBER_FRAME_SIZE - FIBER_FRAME_RA == 8);
}  // namespace fiber::detail::layout
#endif

#endif
