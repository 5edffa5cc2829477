#include "fiber/context.hpp"
#include "fiber/debug.hpp"

#include <unwind.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace fiber::detail {

void throw_empty_resume() {
  throw error("fiber::context::resume(): the context is empty (moved from, already resumed, or a fiber that has ended)");
}

void throw_stack_too_small(std::size_t size, std::size_t needed) {
  throw error("fiber: a stack of " + std::to_string(size) + " bytes is too small for a fiber (at least " +
              std::to_string(needed) + " bytes are needed)");
}

void fatal(const char* message) noexcept {
  std::fputs(message, stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::abort();
}

forced_unwind::~forced_unwind() {
  if (armed_)
    fatal("fiber: the forced unwind of a fiber being destroyed was caught and not rethrown "
          "(catch (...) without `throw;`); the fiber cannot be ended safely");
}

// The code every fiber starts in, whichever backend switches (arch/*.S,
// switch_boost.cpp, switch_ucontext.cpp): the outermost frame of every fiber.
extern "C" void fiber_trampoline();

namespace {
// Whether the frame the unwinder is at belongs to fiber_trampoline.
bool in_trampoline(_Unwind_Context* ctx) noexcept {
  const auto trampoline = reinterpret_cast<std::uintptr_t>(&fiber_trampoline);
#if defined(__ARM_EABI_UNWINDER__)
  // The Arm EHABI unwinder (32-bit Arm) has no _Unwind_FindEnclosingFunction.
  // During a walk it reports the start of the frame's function, from .ARM.exidx,
  // as the region start; bit 0 of a function's address only marks Thumb code.
  return (_Unwind_GetRegionStart(ctx) | 1) == (trampoline | 1);
#else
  const std::uintptr_t ip = _Unwind_GetIP(ctx);
  // A return address points just past its call: look up the byte before it.
  return ip != 0 && reinterpret_cast<std::uintptr_t>(
                        _Unwind_FindEnclosingFunction(reinterpret_cast<void*>(ip - 1))) == trampoline;
#endif
}

// Whether the running code is on a fiber's stack: the unwinder walks the frames
// and, on a fiber, reaches the trampoline. Used only on the slow path, when a
// context is destroyed; it needs the same unwind information as the forced unwind
// that follows.
bool running_on_fiber_stack() noexcept {
  bool found = false;
  _Unwind_Backtrace(
      [](_Unwind_Context* ctx, void* arg) -> _Unwind_Reason_Code {
        if (in_trampoline(ctx)) {
          *static_cast<bool*>(arg) = true;
          return _URC_END_OF_STACK;
        }
        return _URC_NO_REASON;
      },
      &found);
  return found;
}
}  // namespace

context arrive_slow(void* from, void* data) {
  if (data == unwind_request) {
    // Our context is being destroyed: unwind to the fiber's entry, which then
    // switches back to `from`.
    if (!running_on_fiber_stack())
      fatal("fiber: a fiber::context referring to a thread's own stack (not a fiber) was destroyed while "
            "suspended; that stack cannot be unwound. A fiber's entry must keep the context it is given "
            "(resume it or return it), not drop it. (Or: code without unwind information lies between "
            "this point and the fiber's entry.)");
    throw forced_unwind(from);
  }
  // `from` is a fiber that ended: nothing runs on its stack any more.
  auto* ended = static_cast<record_base*>(data);
  ended->release(ended);
  return context{};
}

void finish(record_base* self, context&& next) noexcept {
  detail::tracked_switch<true>(std::exchange(next.sp_, nullptr), self);
  fatal("fiber: a fiber that had ended was resumed");
}

}  // namespace fiber::detail

namespace fiber {

void context::destroy() noexcept {
  // Ask the fiber to unwind. It ends by switching back here, handing over its
  // record, which arrive() releases; what comes back is therefore empty.
  context back = detail::arrive(detail::tracked_switch(std::exchange(sp_, nullptr), detail::unwind_request));
  if (back) detail::fatal("fiber: a fiber being destroyed switched back without ending");
}

const void* entry_frame_address() noexcept { return reinterpret_cast<const void*>(&detail::fiber_trampoline); }

}  // namespace fiber
