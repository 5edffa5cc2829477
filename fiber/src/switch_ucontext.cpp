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
  void* data;          // what the suspending side passes
  ucontext_t uc;       // its registers while suspended
  frame* resumed_by;   // written by the side that resumes it: that side's frame
};
static_assert(offsetof(frame, data) == FIBER_FRAME_DATA);

struct start {
  frame first;
  fiber_entry_fn entry;
  void* arg;
};

// swapcontext passes nothing across: the switching side writes its own frame into
// the frame it resumes (frame::resumed_by). A fresh context's trampoline also
// needs its start record, which it finds here; it runs at once on the thread that
// switched to it, so a thread-local serves. Nothing is read from thread-local
// storage after a swapcontext returns: the flow may have been resumed on another
// thread, and the compiler may reuse the TLS address computed before the call.
thread_local start* starting;

}  // namespace

extern "C" __attribute__((visibility("hidden"), noreturn)) void fiber_trampoline() {
  start* s = starting;
  s->entry(s->first.resumed_by, s->arg);
  std::abort();  // entry never returns
}

extern "C" void* fiber_prepare_context(void* stack_top, fiber_entry_fn entry, void* arg, void* stack_limit) {
  const auto top = reinterpret_cast<std::uintptr_t>(stack_top) & ~std::uintptr_t{15};
  auto* s = reinterpret_cast<start*>((top - sizeof(start)) & ~std::uintptr_t{15});
  s->first.data = nullptr;
  s->first.resumed_by = nullptr;
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
  self.resumed_by = nullptr;
  auto* target = static_cast<frame*>(to);
  target->resumed_by = &self;
  // Read by fiber_trampoline if `to` is a fresh context (its first frame starts
  // its start record); otherwise unused.
  starting = reinterpret_cast<start*>(target);
  if (swapcontext(&self.uc, &target->uc) != 0) {
    std::perror("fiber: swapcontext");
    std::abort();
  }
  return self.resumed_by;
}
