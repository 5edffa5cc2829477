/* Frame layout of a suspended context on x86_64 System V: see the diagram in
 * arch/switch_x86_64_sysv_elf_gas.S. Included by that file and by fiber/src/frame.cpp. */
#ifndef FIBER_FRAME_X86_64_SYSV_ELF_GAS_H
#define FIBER_FRAME_X86_64_SYSV_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_MXCSR 8   /* 4 bytes: SSE control/status */
#define FIBER_FRAME_X87CW 12  /* 2 bytes: x87 control word */
#define FIBER_FRAME_R15 16
#define FIBER_FRAME_R14 24
#define FIBER_FRAME_R13 32
#define FIBER_FRAME_R12 40
#define FIBER_FRAME_RBX 48
#define FIBER_FRAME_RBP 56
#define FIBER_FRAME_PC 64      /* where the context resumes */
#define FIBER_FRAME_SIZE 72    /* bytes popped before jumping to FIBER_FRAME_PC */

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct frame {
  void* data;
  std::uint32_t mxcsr;
  std::uint16_t x87_cw;
  std::uint16_t pad;
  std::uint64_t r15, r14, r13, r12, rbx, rbp;
  void* pc;
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, mxcsr) == FIBER_FRAME_MXCSR);
static_assert(offsetof(frame, x87_cw) == FIBER_FRAME_X87CW);
static_assert(offsetof(frame, r15) == FIBER_FRAME_R15);
static_assert(offsetof(frame, r14) == FIBER_FRAME_R14);
static_assert(offsetof(frame, r13) == FIBER_FRAME_R13);
static_assert(offsetof(frame, r12) == FIBER_FRAME_R12);
static_assert(offsetof(frame, rbx) == FIBER_FRAME_RBX);
static_assert(offsetof(frame, rbp) == FIBER_FRAME_RBP);
static_assert(offsetof(frame, pc) == FIBER_FRAME_PC);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
// The caller's rsp is 16-aligned before its call, so the saved sp is 8 mod 16 and
// popping the frame leaves rsp aligned again, as the psABI requires at a call.
static_assert((FIBER_FRAME_SIZE + 8) % 16 == 0);
}  // namespace fiber::detail::layout
#endif

#endif
