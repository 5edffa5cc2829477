/* Frame layout of a suspended context on AArch64 AAPCS64: see the diagram in
 * arch/switch_arm64_aapcs_elf_gas.S. Included by that file and by fiber/src/frame.cpp. */
#ifndef FIBER_ARCH_SWITCH_ARM64_AAPCS_ELF_GAS_H
#define FIBER_ARCH_SWITCH_ARM64_AAPCS_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_FPCR 8
#define FIBER_FRAME_X19 16
#define FIBER_FRAME_X21 32
#define FIBER_FRAME_X23 48
#define FIBER_FRAME_X25 64
#define FIBER_FRAME_X27 80
#define FIBER_FRAME_FP 96      /* x29, then x30 (lr) at +8 */
#define FIBER_FRAME_LR 104
#define FIBER_FRAME_D8 112
#define FIBER_FRAME_D10 128
#define FIBER_FRAME_D12 144
#define FIBER_FRAME_D14 160
#define FIBER_FRAME_PC FIBER_FRAME_LR
#define FIBER_FRAME_SIZE 176

/* A fresh context: fiber_trampoline finds arg in x19 and calls entry from x20. */
#define FIBER_FRESH_ARG FIBER_FRAME_X19
#define FIBER_FRESH_ENTRY (FIBER_FRAME_X19 + 8)

/* For debuggers: what unwinding a suspended context starts from. tools/gdb/fiber.py
 * reads these (and every FIBER_FRAME_* and FIBER_FRESH_* number above) from the
 * fiber_frame_offsets.json the build preprocesses out of this header, so it never
 * keeps a copy of the layout. Popping the frame gives the caller's sp.
 * FIBER_FRAME_UNWIND_<register> is the slot of each register a debugger restores
 * besides sp and pc, named as gdb names the register: x19-x30 (d8-d15 are left
 * out: only floating-point locals of the innermost caller would show them). */
#define FIBER_FRAME_CALLER_SP FIBER_FRAME_SIZE
#define FIBER_FRAME_UNWIND_X19 FIBER_FRAME_X19
#define FIBER_FRAME_UNWIND_X20 (FIBER_FRAME_X19 + 8)
#define FIBER_FRAME_UNWIND_X21 FIBER_FRAME_X21
#define FIBER_FRAME_UNWIND_X22 (FIBER_FRAME_X21 + 8)
#define FIBER_FRAME_UNWIND_X23 FIBER_FRAME_X23
#define FIBER_FRAME_UNWIND_X24 (FIBER_FRAME_X23 + 8)
#define FIBER_FRAME_UNWIND_X25 FIBER_FRAME_X25
#define FIBER_FRAME_UNWIND_X26 (FIBER_FRAME_X25 + 8)
#define FIBER_FRAME_UNWIND_X27 FIBER_FRAME_X27
#define FIBER_FRAME_UNWIND_X28 (FIBER_FRAME_X27 + 8)
#define FIBER_FRAME_UNWIND_X29 FIBER_FRAME_FP
#define FIBER_FRAME_UNWIND_X30 FIBER_FRAME_LR

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct frame {
  void* data;
  std::uint64_t fpcr;
  std::uint64_t x19, x20, x21, x22, x23, x24, x25, x26, x27, x28;
  std::uint64_t fp, lr;
  double d8, d9, d10, d11, d12, d13, d14, d15;
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, fpcr) == FIBER_FRAME_FPCR);
static_assert(offsetof(frame, x19) == FIBER_FRAME_X19);
static_assert(offsetof(frame, x21) == FIBER_FRAME_X21);
static_assert(offsetof(frame, x23) == FIBER_FRAME_X23);
static_assert(offsetof(frame, x25) == FIBER_FRAME_X25);
static_assert(offsetof(frame, x27) == FIBER_FRAME_X27);
static_assert(offsetof(frame, fp) == FIBER_FRAME_FP);
static_assert(offsetof(frame, lr) == FIBER_FRAME_LR);
static_assert(offsetof(frame, x20) == FIBER_FRAME_UNWIND_X20 && offsetof(frame, x20) == FIBER_FRESH_ENTRY);
static_assert(offsetof(frame, x22) == FIBER_FRAME_UNWIND_X22);
static_assert(offsetof(frame, x24) == FIBER_FRAME_UNWIND_X24);
static_assert(offsetof(frame, x26) == FIBER_FRAME_UNWIND_X26);
static_assert(offsetof(frame, x28) == FIBER_FRAME_UNWIND_X28);
static_assert(offsetof(frame, d8) == FIBER_FRAME_D8);
static_assert(offsetof(frame, d10) == FIBER_FRAME_D10);
static_assert(offsetof(frame, d12) == FIBER_FRAME_D12);
static_assert(offsetof(frame, d14) == FIBER_FRAME_D14);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
// AAPCS64 requires sp to be 16-aligned whenever it is used to access memory.
static_assert(FIBER_FRAME_SIZE % 16 == 0);
}  // namespace fiber::detail::layout
#endif

#endif
