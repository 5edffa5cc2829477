// The switch contract of fiber/detail/switch.h implemented on Boost.Context's
// fcontext, for CPUs without our assembly and to run the tests differentially.
//
// A handle is the address of a `frame` on the suspended side's stack. Its first
// word is the data slot (FIBER_FRAME_DATA == 0); Boost's own handle for the
// suspended side is kept beside it.
#include <boost/context/detail/fcontext.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "fiber/detail/switch.h"

namespace bc = boost::context::detail;

namespace {

struct frame {
  void* data;            // what the suspending side passes
  bc::fcontext_t fctx;   // where it is suspended, in Boost's terms
  frame* target;         // the frame being switched to: a fresh context finds its start record here
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);

// At the top of a fresh context's stack; its frame is the context's first handle.
struct start {
  frame first;
  fiber_entry_fn entry;
  void* arg;
};

// The side that resumed us left its frame in t.data; record where Boost says it
// is suspended so that a switch back finds it.
frame* arrived(bc::transfer_t t) noexcept {
  auto* from = static_cast<frame*>(t.data);
  from->fctx = t.fctx;
  return from;
}

}  // namespace

extern "C" __attribute__((visibility("hidden"), noreturn)) void fiber_trampoline(bc::transfer_t t) {
  frame* from = arrived(t);
  auto* s = reinterpret_cast<start*>(from->target);
  s->entry(from, s->arg);
  std::abort();  // entry never returns
}

extern "C" void* fiber_prepare_context(void* stack_top, fiber_entry_fn entry, void* arg, void* stack_limit) {
  const auto top = reinterpret_cast<std::uintptr_t>(stack_top) & ~std::uintptr_t{15};
  auto* s = reinterpret_cast<start*>((top - sizeof(start)) & ~std::uintptr_t{15});
  s->first.data = nullptr;
  s->first.target = nullptr;
  s->entry = entry;
  s->arg = arg;
  const std::size_t size = reinterpret_cast<std::uintptr_t>(s) - reinterpret_cast<std::uintptr_t>(stack_limit);
  s->first.fctx = bc::make_fcontext(s, size, &fiber_trampoline);
  return &s->first;
}

extern "C" void* fiber_switch_context(void* to, void* data) {
  auto* target = static_cast<frame*>(to);
  frame self{data, nullptr, target};
  return arrived(bc::jump_fcontext(target->fctx, &self));
}
