// The switch contract of fiber/detail/switch.h implemented on POSIX ucontext
// (swapcontext), for CPUs without our assembly and to run the tests
// differentially. Slow: swapcontext saves and restores the signal mask with a
// system call on every switch.
//
// A handle is the address of a `frame` on the suspended side's stack. Its first
// word is the data slot (FIBER_FRAME_DATA == 0).
#include <ucontext.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fiber/detail/switch.h"

namespace {

struct frame {
  void* data;         // what the suspending side passes
  ucontext_t uc;      // its registers while suspended
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);

struct start {
  frame first;
  fiber_entry_fn entry;
  void* arg;
};

// swapcontext passes nothing across, so the switching side leaves its frame and
// its target here, for the side that resumes to pick up.
thread_local frame* switching_from;
thread_local frame* switching_to;

}  // namespace

extern "C" __attribute__((visibility("hidden"), noreturn)) void fiber_trampoline() {
  frame* from = switching_from;
  auto* s = reinterpret_cast<start*>(switching_to);
  s->entry(from, s->arg);
  std::abort();  // entry never returns
}

extern "C" void* fiber_prepare_context(void* stack_top, fiber_entry_fn entry, void* arg, void* stack_limit) {
  const auto top = reinterpret_cast<std::uintptr_t>(stack_top) & ~std::uintptr_t{15};
  auto* s = reinterpret_cast<start*>((top - sizeof(start)) & ~std::uintptr_t{15});
  s->first.data = nullptr;
  s->entry = entry;
  s->arg = arg;
  if (getcontext(&s->first.uc) != 0) {
    std::perror("fiber: getcontext");
    std::abort();
  }
  s->first.uc.uc_link = nullptr;
  s->first.uc.uc_stack.ss_sp = stack_limit;
  s->first.uc.uc_stack.ss_size = reinterpret_cast<std::uintptr_t>(s) - reinterpret_cast<std::uintptr_t>(stack_limit);
  makecontext(&s->first.uc, &fiber_trampoline, 0);
  return &s->first;
}

extern "C" void* fiber_switch_context(void* to, void* data) {
  frame self;
  self.data = data;
  switching_from = &self;
  switching_to = static_cast<frame*>(to);
  if (swapcontext(&self.uc, &switching_to->uc) != 0) {
    std::perror("fiber: swapcontext");
    std::abort();
  }
  return switching_from;
}
