/* The contract between the C++ library and the per-architecture assembly in arch/.
 *
 * Included by C, C++ and every assembly file in arch/ (through the C preprocessor),
 * and the backends in fiber/src/. Each assembly file arch/switch_<stem>.S has one
 * header beside it, arch/switch_<stem>.h, that writes its frame layout down once: the
 * assembly uses its FIBER_FRAME_* numbers as offsets, and the library checks them
 * against a C++ struct with static_assert (fiber/src/frame.cpp). Nothing here
 * depends on the architecture, so the public headers build anywhere a backend
 * exists.
 *
 * The two primitives every architecture provides:
 *
 *   void* fiber_prepare_context(void* stack_top, fiber_entry_fn entry, void* arg,
 *                               void* stack_limit);
 *       Builds, just below stack_top, a frame that looks like a context suspended
 *       inside fiber_switch_context, and returns its stack pointer. stack_limit is
 *       the lowest usable address of the stack (ABIs that track the stack's bounds,
 *       such as Windows' TIB, need it; the others ignore it). The first switch
 *       to it calls entry(from, arg) on that stack, where `from` is what a normal
 *       switch would return. entry must never return (it ends by switching away).
 *
 *   void* fiber_switch_context(void* to, void* data);
 *       Saves the caller's callee-saved state on the caller's stack, with `data` in
 *       the frame's data slot, switches to the context whose saved stack pointer is
 *       `to`, restores its state, and returns there. The value returned, in the
 *       context that resumes, is the saved stack pointer of the context that
 *       suspended (the handle with which to switch back), and that context's
 *       `data` is readable at FIBER_FRAME_DATA bytes above it until it is resumed.
 *
 * Passing data through the suspended frame, rather than as a second return value,
 * keeps the C prototype a plain pointer-in, pointer-out call on every ABI (no
 * struct returns, which differ between ABIs).
 *
 * One exception: where FIBER_LEAN_SWITCH is 1 (our x86_64 System V assembly),
 * fiber_switch_context preserves only the frame pointer, the stack pointer and the
 * FP control state, and must be called through fiber::detail::switch_context(),
 * whose asm statement tells the compiler that every other register is clobbered.
 * See arch/switch_x86_64_sysv_elf_gas.S for why.
 *
 * Where FIBER_SWITCH_TRACKS is 1 (the same assembly), fiber_switch_context also
 * does what the C++ side does around the call elsewhere (fiber::detail::
 * tracked_switch, context.hpp), so that the common switch is one short sequence:
 *   - It first tests the calling thread's C++ exception state (tls_state.eh, at
 *     FIBER_THREAD_EH in fiber::detail::thread_state; the runtime's caught and
 *     uncaught fields at FIBER_EH_CAUGHT and FIBER_EH_UNCAUGHT). If an exception is
 *     being handled or is in flight (or the thread has not switched before: see
 *     first_switch_mark), it does not switch: it returns null at once, and the
 *     caller takes the careful path (careful_switch), which takes that state off
 *     the thread and calls it again.
 *   - It keeps the bookkeeping debuggers read (note_arrival elsewhere): it stores
 *     the thread's running fiber record (tls_state.running, at
 *     FIBER_THREAD_RUNNING) in its frame at FIBER_FRAME_RECORD and, when that
 *     record is not null, its own stack pointer in the record's saved_sp (at
 *     FIBER_RECORD_SAVED_SP); then it makes the record found in the target's frame
 *     the thread's running one. fiber_prepare_context leaves a fresh frame's record
 *     null; the library writes the fiber's record there (make_fiber).
 *   - The resumed side finds the suspending side's `data` in rsi as well as in its
 *     frame (the registers pass through the jump untouched).
 */
#ifndef FIBER_DETAIL_SWITCH_H
#define FIBER_DETAIL_SWITCH_H

/* Offset of the pointer-sized value passed by the suspending side. Same on every
 * architecture, so C++ never needs per-architecture code to read it. */
#define FIBER_FRAME_DATA 0

/* Bytes below the stack pointer that the ABI lets a function use without moving
 * it (x86_64 System V's red zone); a call from an asm statement steps over them. */
#define FIBER_RED_ZONE 128

#ifndef __ASSEMBLER__
#include "fiber/config.h"
#endif
#if FIBER_BACKEND_ASM && defined(__x86_64__) && !defined(_WIN32)
#  define FIBER_LEAN_SWITCH 1
#  define FIBER_SWITCH_TRACKS 1
#else
#  define FIBER_LEAN_SWITCH 0
#  define FIBER_SWITCH_TRACKS 0
#endif

/* For FIBER_SWITCH_TRACKS: the frame slot of the suspended flow's record (the same
 * on every such port; its arch header places it), offsets into
 * fiber::detail::thread_state and record_base (context.hpp checks them with
 * static_assert), and the thread_state's symbol. */
#define FIBER_FRAME_RECORD 16
#define FIBER_THREAD_RUNNING 0
#define FIBER_THREAD_EH 8
#define FIBER_EH_CAUGHT 0
#define FIBER_EH_UNCAUGHT 8
#define FIBER_RECORD_SAVED_SP 32
#define FIBER_THREAD_STATE_SYMBOL _ZN5fiber6detail9tls_stateE


#ifndef __ASSEMBLER__
#ifdef __cplusplus
extern "C" {
#endif

typedef void (*fiber_entry_fn)(void* from, void* arg);

void* fiber_prepare_context(void* stack_top, fiber_entry_fn entry, void* arg, void* stack_limit);
void* fiber_switch_context(void* to, void* data);

#ifdef __cplusplus
}

namespace fiber::detail {

#if FIBER_LEAN_SWITCH
/* Switches through a lean switch `symbol`: every register but rbp and rsp is
 * declared clobbered; `data` (an lvalue) is passed in rsi and, on the resumed side,
 * holds the data of the side that suspended (FIBER_SWITCH_TRACKS, above), so the compiler keeps live values elsewhere around it. The
 * switch is entered by a jump with the resume address in rcx, not by a call
 * (arch/switch_x86_64_sysv_elf_gas.S says why), and is reached through the GOT so
 * that no lazy-binding stub runs on the way; a static link relaxes that to a
 * direct jump. The resume address is aligned to 16 bytes (the padding follows an
 * unconditional jump, so it never runs): unaligned, the shared-FP round trip
 * measured 4.8-5.8 ns in some runs and 2.7 ns in others, aligned 2.6-3.2 ns in
 * every run (bench/). bench/ uses this to call its variants of the switch too. */
#  define FIBER_DETAIL_LEAN_SWITCH_CALL(symbol, to, data, from)                                         \
    do {                                                                                                 \
      void* fiber_to_ = (to);                                                                            \
      __asm__ volatile("lea -128(%%rsp), %%rsp\n\t"                                                      \
                       "lea 1f(%%rip), %%rcx\n\t"                                                        \
                       "jmp *" symbol "@GOTPCREL(%%rip)\n\t"                                             \
                       ".p2align 4\n"                                                                    \
                       "1:\n\t"                                                                          \
                       "lea 128(%%rsp), %%rsp"                                                            \
                       : "=a"(from), "+D"(fiber_to_), "+S"(data)                                          \
                       :                                                                                 \
                       : "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",        \
                         "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",   \
                         "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)",   \
                         "st(3)", "st(4)", "st(5)", "st(6)", "st(7)", "mm0", "mm1", "mm2", "mm3", "mm4",  \
                         "mm5", "mm6", "mm7", FIBER_DETAIL_AVX512_CLOBBERS "memory", "cc");              \
    } while (0)
#  ifdef __AVX512F__
#    define FIBER_DETAIL_AVX512_CLOBBERS                                                                  \
      "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", \
          "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7",
#  else
#    define FIBER_DETAIL_AVX512_CLOBBERS
#  endif
#endif

/* What the resumed side of a switch learns: the handle of the flow that suspended
 * (null: FIBER_SWITCH_TRACKS refused to switch) and the data it passed. */
struct switched {
  void* from;
  void* data;
};

/* The one way C++ switches: the plain call, or the lean one where it exists. */
inline switched switch_context(void* to, void* data) noexcept {
#if FIBER_LEAN_SWITCH
  void* from;
  FIBER_DETAIL_LEAN_SWITCH_CALL("fiber_switch_context", to, data, from);
  return {from, data};
#else
  void* const from = fiber_switch_context(to, data);
  void* passed;
  __builtin_memcpy(&passed, static_cast<char*>(from) + FIBER_FRAME_DATA, sizeof passed);
  return {from, passed};
#endif
}

}  // namespace fiber::detail
#endif
#endif /* __ASSEMBLER__ */

#endif /* FIBER_DETAIL_SWITCH_H */
