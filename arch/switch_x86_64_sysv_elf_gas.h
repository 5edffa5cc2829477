/* Frame layout of a suspended context on x86_64 System V (lean convention): see
 * the diagram in arch/switch_x86_64_sysv_elf_gas.S. Included by that file and by
 * fiber/src/frame.cpp. */
#ifndef FIBER_ARCH_SWITCH_X86_64_SYSV_ELF_GAS_H
#define FIBER_ARCH_SWITCH_X86_64_SYSV_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_MXCSR 8    /* 4 bytes: SSE control/status */
#define FIBER_FRAME_X87CW 12   /* 2 bytes: x87 control word */
/* FIBER_FRAME_RECORD (switch.h) is 16: the suspended flow's fiber record. */
#define FIBER_FRAME_RBP 32
#define FIBER_FRAME_PC 40      /* where the context resumes */
#define FIBER_FRAME_SIZE 48    /* bytes popped before jumping to FIBER_FRAME_PC */

/* A fresh context: the frame, then what fiber_trampoline reads. */
#define FIBER_FRESH_ARG 48
#define FIBER_FRESH_ENTRY 56
#define FIBER_FRESH_SIZE 80    /* frame + arg, entry, null return address, padding */

/* For debuggers: what unwinding a suspended context starts from. tools/gdb/fiber.py
 * reads these (and every FIBER_FRAME_* and FIBER_FRESH_* number above) from the
 * fiber_frame_offsets.json the build preprocesses out of this header, so it never
 * keeps a copy of the layout. The caller stepped over the red zone before jumping
 * in, so its sp is that far above the frame. FIBER_FRAME_UNWIND_<register> is the
 * slot of each register a debugger restores besides sp and pc, named as gdb names
 * the register: the lean switch keeps only rbp (the code around it keeps nothing
 * live in the others). There is no link register: the return address is the pc. */
#define FIBER_FRAME_CALLER_SP (FIBER_FRAME_SIZE + FIBER_RED_ZONE)
#define FIBER_FRAME_FP FIBER_FRAME_RBP
#define FIBER_FRAME_UNWIND_RBP FIBER_FRAME_FP

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct frame {
  void* data;
  std::uint32_t mxcsr;
  std::uint16_t x87_cw;
  std::uint16_t pad;
  void* record;
  void* pad2;
  std::uint64_t rbp;
  void* pc;
};
struct fresh {
  frame f;
  void* arg;
  void* entry;
  void* null_return_address;
  void* padding;
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, mxcsr) == FIBER_FRAME_MXCSR);
static_assert(offsetof(frame, x87_cw) == FIBER_FRAME_X87CW);
static_assert(offsetof(frame, record) == FIBER_FRAME_RECORD);
static_assert(offsetof(frame, rbp) == FIBER_FRAME_RBP);
static_assert(offsetof(frame, pc) == FIBER_FRAME_PC);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
// FIBER_SWITCH_WITH_RET's frame is pushed by a call and a push: pc and rbp on top.
static_assert(FIBER_FRAME_PC == FIBER_FRAME_SIZE - 8 && FIBER_FRAME_RBP == FIBER_FRAME_SIZE - 16);
static_assert(offsetof(fresh, arg) == FIBER_FRESH_ARG);
static_assert(offsetof(fresh, entry) == FIBER_FRESH_ENTRY);
static_assert(sizeof(fresh) == FIBER_FRESH_SIZE);
// A fresh frame starts 16-aligned, so fiber_trampoline finds rsp at arg 16-aligned
// and its call leaves the entry function's rsp at 8 mod 16, as the psABI requires.
static_assert(FIBER_FRESH_SIZE % 16 == 0 && FIBER_FRESH_ARG % 16 == 0);
}  // namespace fiber::detail::layout
#endif

#endif
