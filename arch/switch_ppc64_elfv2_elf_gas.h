/* Frame layout of a suspended context on 64-bit POWER, ELF V2 ABI (ppc64le): see
 * the diagrams in arch/switch_ppc64_elfv2_elf_gas.S. Included by that file and by
 * fiber/src/frame.cpp.
 *
 * Unlike on x86_64 and AArch64, the handle is NOT the saved stack pointer itself:
 * the ABI wants the doubleword at 0(r1) to be the back chain at all times, so it
 * cannot hold the data slot. The handle is the saved r1 plus FIBER_FRAME_HANDLE,
 * the first byte past the ABI's fixed frame header; the data slot sits there, at
 * FIBER_FRAME_DATA (0) bytes above the handle, as switch.h requires. Every other
 * FIBER_FRAME_* offset below counts from the saved r1 ("sp").
 */
#ifndef FIBER_ARCH_SWITCH_PPC64_ELFV2_ELF_GAS_H
#define FIBER_ARCH_SWITCH_PPC64_ELFV2_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_HANDLE 32   /* handle = sp + 32; sp = handle - 32 */
#define FIBER_FRAME_FPSCR 40    /* 8 bytes: the 64-bit FPSCR as mffs reads it */
#define FIBER_FRAME_R2 48       /* TOC pointer */
#define FIBER_FRAME_CR 56       /* 4 bytes: CR (fields 2-4 are restored) */
#define FIBER_FRAME_VSCR 60     /* 4 bytes: VSCR (only NJ is restored) */
#define FIBER_FRAME_R14 64      /* r14..r31, 8 bytes each */
#define FIBER_FRAME_F14 208     /* f14..f31, 8 bytes each */
#define FIBER_FRAME_V20 352     /* v20..v31, 16 bytes each, 16-byte aligned */
#define FIBER_FRAME_SIZE 544    /* what fiber_switch_context allocates (stdu) */
/* Where the context resumes: the LR save doubleword of the frame above, as the
 * ABI has every function save LR (at 16 bytes above its caller's r1). */
#define FIBER_FRAME_PC (FIBER_FRAME_SIZE + 16)

/* The frame fiber_prepare_context puts above a fresh context, in which
 * fiber_trampoline runs and calls the entry function: the ELFv2 minimum frame
 * (back chain, CR save word, reserved word, LR save, TOC save). The entry has a
 * prototype and two register arguments, so no parameter save area is needed. */
#define FIBER_TRAMPOLINE_FRAME_SIZE 32

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct alignas(16) vector_register {
  unsigned char bytes[16];
};
struct frame {
  // The ABI's fixed header: written by fiber_switch_context (back chain) or
  // reserved for functions called from this frame (none is).
  std::uint64_t back_chain;  // sp + FIBER_FRAME_SIZE
  std::uint32_t cr_save_word, reserved_word;
  std::uint64_t lr_save, toc_save;
  void* data;  // the handle points here
  std::uint64_t fpscr;
  std::uint64_t r2;
  std::uint32_t cr, vscr;
  std::uint64_t r14_r31[18];
  double f14_f31[18];
  vector_register v20_v31[12];
};
// The part of the frame above it that the switch uses: its caller's header.
struct caller_header {
  std::uint64_t back_chain;
  std::uint32_t cr_save_word, reserved_word;
  std::uint64_t lr_save;  // the resume address
};
static_assert(offsetof(frame, data) == FIBER_FRAME_HANDLE + FIBER_FRAME_DATA);
static_assert(offsetof(frame, fpscr) == FIBER_FRAME_FPSCR);
static_assert(offsetof(frame, r2) == FIBER_FRAME_R2);
static_assert(offsetof(frame, cr) == FIBER_FRAME_CR);
static_assert(offsetof(frame, vscr) == FIBER_FRAME_VSCR);
static_assert(offsetof(frame, r14_r31) == FIBER_FRAME_R14);
static_assert(offsetof(frame, f14_f31) == FIBER_FRAME_F14);
static_assert(offsetof(frame, v20_v31) == FIBER_FRAME_V20);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
static_assert(sizeof(frame) + offsetof(caller_header, lr_save) == FIBER_FRAME_PC);
// ELFv2 2.2.2.1 "General Stack Frame Requirements": the stack is quadword aligned,
// and stvx/lvx need 16-byte aligned addresses for the vector save area.
static_assert(FIBER_FRAME_SIZE % 16 == 0 && FIBER_FRAME_V20 % 16 == 0);
static_assert(FIBER_FRAME_HANDLE >= 32);  // past the minimum frame header
static_assert(FIBER_TRAMPOLINE_FRAME_SIZE % 16 == 0 && FIBER_TRAMPOLINE_FRAME_SIZE >= 32);
}  // namespace fiber::detail::layout
#endif

#endif
