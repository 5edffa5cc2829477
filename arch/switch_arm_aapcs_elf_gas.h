/* Frame layout of a suspended context on 32-bit Arm, AAPCS hard-float: see the
 * diagram in arch/switch_arm_aapcs_elf_gas.S. Included by that file and by
 * fiber/src/frame.cpp. */
#ifndef FIBER_ARCH_SWITCH_ARM_AAPCS_ELF_GAS_H
#define FIBER_ARCH_SWITCH_ARM_AAPCS_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_FPSCR 4    /* FPSCR without its status bits (see below) */
#define FIBER_FRAME_D8 8       /* d8-d15, 8 bytes each */
#define FIBER_FRAME_R4 72      /* r4-r11, 4 bytes each */
#define FIBER_FRAME_PAD 104    /* keeps the frame a multiple of 8 bytes */
#define FIBER_FRAME_LR 108
#define FIBER_FRAME_PC FIBER_FRAME_LR  /* where the context resumes */
#define FIBER_FRAME_SIZE 112

/* The FPSCR bits that AAPCS does not preserve across calls (condition flags N, Z,
 * C, V in 31-28, cumulative saturation QC in 27; cumulative exception flags IDC,
 * IXC, UFC, OFC, DZC, IOC in 7 and 4-0): the switch leaves them to the running
 * code and switches every other bit. Two halves, each an Arm immediate. */
#define FIBER_FPSCR_STATUS_HI 0xf8000000
#define FIBER_FPSCR_STATUS_LO 0x0000009f

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct frame {
  void* data;
  std::uint32_t fpscr;
  double d8, d9, d10, d11, d12, d13, d14, d15;
  std::uint32_t r4, r5, r6, r7, r8, r9, r10, r11;
  std::uint32_t pad;
  void* lr;
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, fpscr) == FIBER_FRAME_FPSCR);
static_assert(offsetof(frame, d8) == FIBER_FRAME_D8);
static_assert(offsetof(frame, d15) == FIBER_FRAME_D8 + 7 * 8);
static_assert(offsetof(frame, r4) == FIBER_FRAME_R4);
static_assert(offsetof(frame, r11) == FIBER_FRAME_R4 + 7 * 4);
static_assert(offsetof(frame, pad) == FIBER_FRAME_PAD);
static_assert(offsetof(frame, lr) == FIBER_FRAME_LR);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
static_assert(sizeof(void*) == 4);
// AAPCS requires sp mod 8 == 0 at a public interface; a frame that is a multiple
// of 16 also keeps a fresh context's 16-byte alignment, which is stricter.
static_assert(FIBER_FRAME_SIZE % 16 == 0);
}  // namespace fiber::detail::layout
#endif

#endif
