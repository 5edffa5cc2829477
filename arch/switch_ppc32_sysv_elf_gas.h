/* Frame layout of a suspended context on 32-bit PowerPC, System V ABI: see the
 * diagrams in arch/switch_ppc32_sysv_elf_gas.S. Included by that file and by
 * fiber/src/frame.cpp.
 *
 * Unlike on x86_64 and AArch64, the handle is NOT the saved stack pointer itself:
 * the ABI wants the word at 0(r1) to be the back chain at all times, so it cannot
 * hold the data slot. The handle is the saved r1 plus FIBER_FRAME_HANDLE, the
 * first byte past the ABI's 8-byte frame header (back chain, LR save word); the
 * data slot sits there, at FIBER_FRAME_DATA (0) bytes above the handle, as
 * switch.h requires. Every other FIBER_FRAME_* offset below counts from the saved
 * r1 ("sp").
 */
#ifndef FIBER_ARCH_SWITCH_PPC32_SYSV_ELF_GAS_H
#define FIBER_ARCH_SWITCH_PPC32_SYSV_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_HANDLE 8    /* handle = sp + 8; sp = handle - 8 */
#define FIBER_FRAME_CR 12       /* CR (fields 2-4 are restored) */
#define FIBER_FRAME_FPSCR 16    /* 8 bytes: FPSCR in the low word, as mffs stores it */
#define FIBER_FRAME_VRSAVE 24   /* VRSAVE, where AltiVec is switched (+ 4 bytes pad) */
#define FIBER_FRAME_R14 32      /* r14..r31, 4 bytes each */
#define FIBER_FRAME_F14 104     /* f14..f31, 8 bytes each (+ 8 bytes pad) */
#define FIBER_FRAME_V20 256     /* v20..v31, 16 bytes each, where AltiVec is switched */
#define FIBER_FRAME_SIZE 448    /* what fiber_switch_context allocates (stwu) */
/* Where the context resumes: the LR save word of the frame above, as the ABI has
 * every function save LR (at 4 bytes above its caller's r1). */
#define FIBER_FRAME_PC (FIBER_FRAME_SIZE + 4)

/* The frame fiber_prepare_context puts above a fresh context, in which
 * fiber_trampoline runs and calls the entry function: back chain and LR save
 * word, padded to the stack's 16-byte alignment. */
#define FIBER_TRAMPOLINE_FRAME_SIZE 16

#if defined(__cplusplus) && !defined(__ASSEMBLER__)
#include <cstddef>
#include <cstdint>
namespace fiber::detail::layout {
struct alignas(16) vector_register {
  unsigned char bytes[16];
};
struct frame {
  // The ABI's header: the back chain (sp + FIBER_FRAME_SIZE), and the LR save
  // word reserved for functions called from this frame (none is).
  std::uint32_t back_chain, lr_save;
  void* data;  // the handle points here
  std::uint32_t cr;
  std::uint64_t fpscr;
  std::uint32_t vrsave, pad0;
  std::uint32_t r14_r31[18];
  double f14_f31[18];
  std::uint64_t pad1;
  vector_register v20_v31[12];
};
// The part of the frame above it that the switch uses: its caller's header.
struct caller_header {
  std::uint32_t back_chain;
  std::uint32_t lr_save;  // the resume address
};
static_assert(sizeof(void*) == 4);
static_assert(offsetof(frame, data) == FIBER_FRAME_HANDLE + FIBER_FRAME_DATA);
static_assert(offsetof(frame, cr) == FIBER_FRAME_CR);
static_assert(offsetof(frame, fpscr) == FIBER_FRAME_FPSCR);
static_assert(offsetof(frame, vrsave) == FIBER_FRAME_VRSAVE);
static_assert(offsetof(frame, r14_r31) == FIBER_FRAME_R14);
static_assert(offsetof(frame, f14_f31) == FIBER_FRAME_F14);
static_assert(offsetof(frame, v20_v31) == FIBER_FRAME_V20);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
static_assert(sizeof(frame) + offsetof(caller_header, lr_save) == FIBER_FRAME_PC);
// The SysV ABI keeps r1 16-byte aligned, and stvx/lvx need 16-byte aligned
// addresses for the vector save area.
static_assert(FIBER_FRAME_SIZE % 16 == 0 && FIBER_FRAME_V20 % 16 == 0);
static_assert(FIBER_TRAMPOLINE_FRAME_SIZE % 16 == 0 && FIBER_TRAMPOLINE_FRAME_SIZE >= 8);
}  // namespace fiber::detail::layout
#endif

#endif
