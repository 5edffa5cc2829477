/* Frame layout of a suspended context on x86_64 Windows (Microsoft x64 ABI, PE/COFF):
 * see the diagrams in arch/switch_x86_64_ms_pe_gas.S. Included by that file and by
 * fiber/src/frame.cpp. */
#ifndef FIBER_ARCH_SWITCH_X86_64_MS_PE_GAS_H
#define FIBER_ARCH_SWITCH_X86_64_MS_PE_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_MXCSR 8          /* 4 bytes: SSE control/status */
#define FIBER_FRAME_X87CW 12         /* 2 bytes: x87 control word */
#define FIBER_FRAME_XMM6 16          /* xmm6..xmm15, 16 bytes each, 16-byte aligned */
#define FIBER_FRAME_XMM_SIZE 160
/* The Thread Information Block fields that describe the running stack, saved per
 * context; their gs: offsets are below. */
#define FIBER_FRAME_EXCEPTION_LIST 176
#define FIBER_FRAME_FIBER_DATA 184
#define FIBER_FRAME_DEALLOCATION_STACK 192
#define FIBER_FRAME_STACK_LIMIT 200
#define FIBER_FRAME_STACK_BASE 208
#define FIBER_FRAME_R15 216          /* also the size of the fixed allocation below the pushes */
#define FIBER_FRAME_R14 224
#define FIBER_FRAME_R13 232
#define FIBER_FRAME_R12 240
#define FIBER_FRAME_RSI 248
#define FIBER_FRAME_RDI 256
#define FIBER_FRAME_RBX 264
#define FIBER_FRAME_RBP 272
#define FIBER_FRAME_PC 280           /* where the context resumes */
#define FIBER_FRAME_SIZE 288         /* bytes popped before jumping to FIBER_FRAME_PC */

/* A fresh context: fiber_trampoline finds arg in rbx and calls entry from r12. */
#define FIBER_FRESH_ARG FIBER_FRAME_RBX
#define FIBER_FRESH_ENTRY FIBER_FRAME_R12

/* For debuggers: what unwinding a suspended context starts from. tools/gdb/fiber.py
 * reads these (and every FIBER_FRAME_* and FIBER_FRESH_* number above) from the
 * fiber_frame_offsets.json the build preprocesses out of this header, so it never
 * keeps a copy of the layout. The switch is called, so popping the frame gives the
 * caller's sp. FIBER_FRAME_UNWIND_<register> is the slot of each register a
 * debugger restores besides sp and pc, named as gdb names the register: the
 * nonvolatile general registers (xmm6-xmm15 are left out: only floating-point
 * locals of the innermost caller would show them). There is no link register: the
 * return address is the pc. */
#define FIBER_FRAME_CALLER_SP FIBER_FRAME_SIZE
#define FIBER_FRAME_FP FIBER_FRAME_RBP
#define FIBER_FRAME_UNWIND_R15 FIBER_FRAME_R15
#define FIBER_FRAME_UNWIND_R14 FIBER_FRAME_R14
#define FIBER_FRAME_UNWIND_R13 FIBER_FRAME_R13
#define FIBER_FRAME_UNWIND_R12 FIBER_FRAME_R12
#define FIBER_FRAME_UNWIND_RSI FIBER_FRAME_RSI
#define FIBER_FRAME_UNWIND_RDI FIBER_FRAME_RDI
#define FIBER_FRAME_UNWIND_RBX FIBER_FRAME_RBX
#define FIBER_FRAME_UNWIND_RBP FIBER_FRAME_FP

/* Offsets in the Thread Environment Block, addressed through gs (x64 TEB, whose
 * first member is the NT_TIB). */
#define FIBER_TEB_EXCEPTION_LIST 0x00
#define FIBER_TEB_STACK_BASE 0x08
#define FIBER_TEB_STACK_LIMIT 0x10
#define FIBER_TEB_FIBER_DATA 0x20
#define FIBER_TEB_DEALLOCATION_STACK 0x1478

/* ExceptionList of a fresh context: the end of an (empty) chain of frames. */
#define FIBER_EXCEPTION_LIST_END (-1)

/* What fiber_trampoline's never-executed prologue accounts for: a saved rbp and 32
 * bytes of shadow space (see the fresh-frame diagram in the .S file). */
#define FIBER_TRAMPOLINE_FRAME 48

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct alignas(16) xmm_register {
  std::uint64_t lo, hi;
};
struct frame {
  void* data;
  std::uint32_t mxcsr;
  std::uint16_t x87_cw;
  std::uint16_t pad0;
  xmm_register xmm[10];  // xmm6..xmm15
  void* exception_list;
  void* fiber_data;
  void* deallocation_stack;
  void* stack_limit;
  void* stack_base;
  std::uint64_t r15, r14, r13, r12, rsi, rdi, rbx, rbp;
  void* pc;
  std::uint64_t pad1;  // not part of the frame: only rounds sizeof to alignof
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(frame, mxcsr) == FIBER_FRAME_MXCSR);
static_assert(offsetof(frame, x87_cw) == FIBER_FRAME_X87CW);
static_assert(offsetof(frame, xmm) == FIBER_FRAME_XMM6);
static_assert(sizeof(frame::xmm) == FIBER_FRAME_XMM_SIZE);
static_assert(offsetof(frame, exception_list) == FIBER_FRAME_EXCEPTION_LIST);
static_assert(offsetof(frame, fiber_data) == FIBER_FRAME_FIBER_DATA);
static_assert(offsetof(frame, deallocation_stack) == FIBER_FRAME_DEALLOCATION_STACK);
static_assert(offsetof(frame, stack_limit) == FIBER_FRAME_STACK_LIMIT);
static_assert(offsetof(frame, stack_base) == FIBER_FRAME_STACK_BASE);
static_assert(offsetof(frame, r15) == FIBER_FRAME_R15);
static_assert(offsetof(frame, r14) == FIBER_FRAME_R14);
static_assert(offsetof(frame, r13) == FIBER_FRAME_R13);
static_assert(offsetof(frame, r12) == FIBER_FRAME_R12);
static_assert(offsetof(frame, rsi) == FIBER_FRAME_RSI);
static_assert(offsetof(frame, rdi) == FIBER_FRAME_RDI);
static_assert(offsetof(frame, rbx) == FIBER_FRAME_RBX);
static_assert(offsetof(frame, rbp) == FIBER_FRAME_RBP);
static_assert(offsetof(frame, pc) == FIBER_FRAME_PC);
static_assert(offsetof(frame, pad1) == FIBER_FRAME_SIZE);
// The eight pushes sit right above the fixed allocation, the return address above them.
static_assert(FIBER_FRAME_R15 + 8 * 8 == FIBER_FRAME_PC);
// The caller's rsp is 16-aligned before its call; the return address and eight
// pushes (72 bytes) plus the fixed allocation leave the saved sp 16-aligned, so the
// xmm slots can be stored with movaps. Popping the frame restores the caller's rsp.
static_assert((8 + 8 * 8 + FIBER_FRAME_R15) % 16 == 0);
static_assert(FIBER_FRAME_SIZE % 16 == 0 && FIBER_FRAME_XMM6 % 16 == 0);
// The SEH unwind code UWOP_SAVE_XMM128 stores the slot offset divided by 16.
static_assert(FIBER_FRAME_XMM6 % 16 == 0 && FIBER_FRAME_XMM_SIZE == 10 * 16);
// The trampoline's frame: its rsp is 16-aligned at its call (shadow space above it),
// and unwinding it (32 bytes, the rbp slot, the null return address) lands on the top.
static_assert(FIBER_TRAMPOLINE_FRAME == 32 + 8 + 8 && FIBER_TRAMPOLINE_FRAME % 16 == 0);
}  // namespace fiber::detail::layout
#endif

#endif
