/* The contract between the C++ library and the per-architecture assembly in arch/.
 *
 * Included by C, C++ and every assembly file in arch/ (through the C preprocessor),
 * and the backends in fiber/src/. Each assembly file arch/switch_<stem>.S has one
 * header, fiber/src/frame/<stem>.h, that writes its frame layout down once: the
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
 */
#ifndef FIBER_DETAIL_SWITCH_H
#define FIBER_DETAIL_SWITCH_H

/* Offset of the pointer-sized value passed by the suspending side. Same on every
 * architecture, so C++ never needs per-architecture code to read it. */
#define FIBER_FRAME_DATA 0


#ifndef __ASSEMBLER__
#ifdef __cplusplus
extern "C" {
#endif

typedef void (*fiber_entry_fn)(void* from, void* arg);

void* fiber_prepare_context(void* stack_top, fiber_entry_fn entry, void* arg, void* stack_limit);
void* fiber_switch_context(void* to, void* data);

#ifdef __cplusplus
}
#endif
#endif /* __ASSEMBLER__ */

#endif /* FIBER_DETAIL_SWITCH_H */
