/* Frame layout of a suspended context on 64-bit PowerPC, ELF V1 ABI (big-endian
 * ppc64, function descriptors): see the diagrams in arch/switch_ppc64_elfv1_elf_gas.S.
 * Included by that file and by fiber/src/frame.cpp.
 *
 * Unlike on x86_64 and AArch64, the handle is NOT the saved stack pointer itself:
 * the ABI wants the doubleword at 0(r1) to be the back chain at all times, so it
 * cannot hold the data slot. The handle is the saved r1 plus FIBER_FRAME_HANDLE,
 * the first byte past the ABI's 48-byte fixed frame header; the data slot sits
 * there, at FIBER_FRAME_DATA (0) bytes above the handle, as switch.h requires.
 * Every other FIBER_FRAME_* offset below counts from the saved r1 ("sp").
 */
#ifndef FIBER_ARCH_SWITCH_PPC64_ELFV1_ELF_GAS_H
#define FIBER_ARCH_SWITCH_PPC64_ELFV1_ELF_GAS_H

#include "fiber/detail/switch.h"

#define FIBER_FRAME_HANDLE 48   /* handle = sp + 48; sp = handle - 48 */
#define FIBER_FRAME_FPSCR 56    /* 8 bytes: FPSCR in the low word, as mffs stores it */
#define FIBER_FRAME_R2 64       /* TOC pointer */
#define FIBER_FRAME_CR 72       /* 4 bytes: CR (fields 2-4 are restored) */
#define FIBER_FRAME_VRSAVE 76   /* 4 bytes: VRSAVE, where AltiVec is switched */
#define FIBER_FRAME_R14 80      /* r14..r31, 8 bytes each */
#define FIBER_FRAME_F14 224     /* f14..f31, 8 bytes each */
#define FIBER_FRAME_V20 368     /* v20..v31, 16 bytes each, where AltiVec is switched */
#define FIBER_FRAME_SIZE 560    /* what fiber_switch_context allocates (stdu) */
/* Where the context resumes: the LR save doubleword of the frame above, as the
 * ABI has every function save LR (at 16 bytes above its caller's r1). */
#define FIBER_FRAME_PC (FIBER_FRAME_SIZE + 16)

/* The frame fiber_prepare_context puts above a fresh context, in which
 * fiber_trampoline runs and calls the entry function: the ELFv1 minimum frame,
 * 48 bytes of header and the 64-byte parameter save area every caller provides. */
#define FIBER_TRAMPOLINE_FRAME_SIZE 112

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
  std::uint64_t cr_save, lr_save, compiler_reserved, linker_reserved, toc_save;
  void* data;  // the handle points here
  std::uint64_t fpscr;
  std::uint64_t r2;
  std::uint32_t cr, vrsave;
  std::uint64_t r14_r31[18];
  double f14_f31[18];
  vector_register v20_v31[12];
};
// The part of the frame above it that the switch uses: its caller's header.
struct caller_header {
  std::uint64_t back_chain, cr_save;
  std::uint64_t lr_save;  // the resume address
};
static_assert(offsetof(frame, data) == FIBER_FRAME_HANDLE + FIBER_FRAME_DATA);
static_assert(offsetof(frame, fpscr) == FIBER_FRAME_FPSCR);
static_assert(offsetof(frame, r2) == FIBER_FRAME_R2);
static_assert(offsetof(frame, cr) == FIBER_FRAME_CR);
static_assert(offsetof(frame, vrsave) == FIBER_FRAME_VRSAVE);
static_assert(offsetof(frame, r14_r31) == FIBER_FRAME_R14);
static_assert(offsetof(frame, f14_f31) == FIBER_FRAME_F14);
static_assert(offsetof(frame, v20_v31) == FIBER_FRAME_V20);
static_assert(sizeof(frame) == FIBER_FRAME_SIZE);
static_assert(sizeof(frame) + offsetof(caller_header, lr_save) == FIBER_FRAME_PC);
// The ELFv1 supplement (3.2.2, "The Stack Frame") keeps r1 quadword aligned, and
// stvx/lvx need 16-byte aligned addresses for the vector save area.
static_assert(FIBER_FRAME_SIZE % 16 == 0 && FIBER_FRAME_V20 % 16 == 0);
static_assert(FIBER_TRAMPOLINE_FRAME_SIZE % 16 == 0 && FIBER_TRAMPOLINE_FRAME_SIZE >= 112);
}  // namespace fiber::detail::layout
#endif

#endif
