// The C++ runtime's per-thread exception-handling state, kept per flow of control.
//
// The Itanium C++ ABI (section 2.4.2, as implemented by libsupc++ in libstdc++)
// keeps, per thread, a stack of the exceptions being handled (`catch` blocks that
// have not ended; std::current_exception() and `throw;` read its top) and the
// count of uncaught exceptions (std::uncaught_exceptions()). Fibers share their
// thread, so a fiber that switches away inside a catch block would otherwise
// leave its exception on that stack for the next fiber to find, and take back
// whatever the others left there. Each side of a switch therefore saves the state
// before switching away and puts it back when it is resumed; a fresh fiber starts
// with none.
//
// The layout is libsupc++'s __cxa_eh_globals: caughtExceptions, uncaughtExceptions,
// and on Arm's EHABI also propagatingExceptions.
#pragma once

#include <cxxabi.h>

namespace fiber::detail {

struct eh_globals_layout {
  void* caught;
  unsigned int uncaught;
#if defined(__ARM_EABI__) && !defined(__ARM_DWARF_EH__)
  void* propagating;
#endif
};

class eh_state {
 public:
  // The running flow's state, taken off the thread (which is left with none).
  // `g` is the thread's, from globals() (cache it: it is a call into the runtime).
  static eh_state take(eh_globals_layout* g = globals()) noexcept {
    eh_state s;
    copy(s.saved_, *g);
    g->caught = nullptr;
    g->uncaught = 0;
#if defined(__ARM_EABI__) && !defined(__ARM_DWARF_EH__)
    g->propagating = nullptr;
#endif
    return s;
  }
  // Gives the state back to the thread, for the flow that saved it.
  void restore(eh_globals_layout* g = globals()) const noexcept { copy(*g, saved_); }
  // Gives the state back while an exception propagates through the flow that
  // saved it (a context being destroyed unwinds it): the exception in flight
  // stays counted as uncaught.
  void restore_unwinding(eh_globals_layout* g = globals()) const noexcept {
    eh_globals_layout now = *g;
    eh_globals_layout s = saved_;
    s.uncaught += now.uncaught;
#if defined(__ARM_EABI__) && !defined(__ARM_DWARF_EH__)
    // EHABI resumes unwinding after each cleanup from this chain: it is the
    // exception in flight's, not the saved state's.
    s.propagating = now.propagating;
#endif
    *g = s;
  }
  // Whether the thread has any exception state (a handler open, an exception in
  // flight).
  static bool any(const eh_globals_layout* g) noexcept {
#if defined(__ARM_EABI__) && !defined(__ARM_DWARF_EH__)
    return g->caught != nullptr || g->uncaught != 0 || g->propagating != nullptr;
#else
    return g->caught != nullptr || g->uncaught != 0;
#endif
  }
  // Starts a fresh flow with no exception state.
  static void clear(eh_globals_layout* g = globals()) noexcept { *g = eh_globals_layout{}; }

  static eh_globals_layout* globals() noexcept {
    return reinterpret_cast<eh_globals_layout*>(abi::__cxa_get_globals());
  }

 private:
  // Field by field, never as one block: the compiler would otherwise move the
  // 12-byte struct with one 16-byte load right after two smaller stores to the
  // same place, which the CPU cannot forward (a store-forwarding stall, measured
  // at 40% of park()'s time on x86_64).
  static void copy(eh_globals_layout& to, const eh_globals_layout& from) noexcept {
    to.caught = from.caught;
    to.uncaught = from.uncaught;
#if defined(__ARM_EABI__) && !defined(__ARM_DWARF_EH__)
    to.propagating = from.propagating;
#endif
  }

  eh_globals_layout saved_{};
};

// Keeps the running flow's state across one switch: takes it off the thread when
// made; gives it back when the flow is resumed (say so with resumed()), or, if the
// switch throws instead (the suspended flow is destroyed: a forced unwind), gives it
// back with the exception in flight still counted.
class eh_keeper {
 public:
  explicit eh_keeper(eh_globals_layout* g) noexcept : g_(g), saved_(eh_state::take(g)) {}
  eh_keeper(const eh_keeper&) = delete;
  eh_keeper& operator=(const eh_keeper&) = delete;
  ~eh_keeper() {
    if (resumed_)
      saved_.restore(g_);
    else
      saved_.restore_unwinding(g_);
  }
  void resumed() noexcept { resumed_ = true; }

 private:
  eh_globals_layout* g_;
  eh_state saved_;
  bool resumed_ = false;
};

}  // namespace fiber::detail
