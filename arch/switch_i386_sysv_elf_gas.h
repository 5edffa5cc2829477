/* Frame layout of a suspended context on i386 System V: see the diagram in
 * arch/switch_i386_sysv_elf_gas.S. Included by that file and by fiber/src/frame.cpp. */
#ifndef FIBER_ARCH_SWITCH_I386_SYSV_ELF_GAS_H
#define FIBER_ARCH_SWITCH_I386_SYSV_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_MXCSR 4   /* 4 bytes: SSE control/status, or FIBER_NO_MXCSR */
#define FIBER_FRAME_X87CW 8   /* 2 bytes: x87 control word */
#define FIBER_FRAME_EDI 12
#define FIBER_FRAME_ESI 16
#define FIBER_FRAME_EBX 20
#define FIBER_FRAME_EBP 24
#define FIBER_FRAME_PC 28      /* where the context resumes */
#define FIBER_FRAME_SIZE 32    /* bytes popped before jumping to FIBER_FRAME_PC */

/* What the MXCSR slot holds when the CPU has no SSE (no MXCSR): a value with
 * reserved bits set, which no real MXCSR can hold (bits 16-31 are reserved and
 * loading them faults), so it can never be confused with a saved MXCSR. */
#define FIBER_NO_MXCSR 0xffffffff

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct frame {
  void* data;
  std::uint32_t mxcsr;
  std::uint16_t x87_cw;
  std::uint16_t pad;
  std::uint32_t edi, esi, ebx, ebp;
  void* pc;
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, mxcsr) == FIBER_FRAME_MXCSR);
static_assert(offsetof(frame, x87_cw) == FIBER_FRAME_X87CW);
static_assert(offsetof(frame, edi) == FIBER_FRAME_EDI);
static_assert(offsetof(frame, esi) == FIBER_FRAME_ESI);
static_assert(offsetof(frame, ebx) == FIBER_FRAME_EBX);
static_assert(offsetof(frame, ebp) == FIBER_FRAME_EBP);
static_assert(offsetof(frame, pc) == FIBER_FRAME_PC);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
static_assert(sizeof(void*) == 4);
// The caller's esp is 16-aligned before its call (the Linux i386 psABI), so the
// saved sp (the frame, return address included) is 16-aligned too, and popping
// the frame leaves esp aligned again, as it was before the call.
static_assert(FIBER_FRAME_SIZE % 16 == 0);
}  // namespace fiber::detail::layout
#endif

#endif
