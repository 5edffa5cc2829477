// Raising generator_exit for generator::close(), at the lowest cost the platform
// allows.
//
// A C++ throw runs the unwinder twice over the frames it crosses: a search phase
// that finds the handler, then a cleanup phase that runs destructors and enters
// the handler. close() knows a handler exists without searching: the generator's
// own catch where the body was called (generator.hpp, body_fiber) catches every
// exception. So where the unwinder is the Itanium ABI's DWARF one and the runtime
// is libstdc++, close() builds the exception as __cxa_throw would and starts the
// cleanup phase directly with _Unwind_Resume, from the body's own frame (this is
// inlined into the yield the body is suspended in): the personality routines then
// run the cleanups and enter the first matching handler, the body's own
// `catch (const generator_exit&)` included, exactly as after a search. Measured
// here (bench/fiber_bench.cpp, close/): about half the cost of a throw through
// the same frames.
//
// What is assumed of libstdc++ (its unwind-cxx.h; the same facts a debugger's
// pretty-printers rely on): the layout of __cxa_refcounted_exception below, and
// that __cxa_begin_catch hands the handler `adjustedPtr`, which a search phase
// would have filled in. tests/generator_test.cpp catches the exception by
// reference and compares addresses on every target.
//
// Elsewhere (Arm's EHABI, SJLJ, Windows SEH, libc++, sanitizer builds, whose
// runtimes intercept __cxa_throw) close() simply throws.
#pragma once

#include <exception>

#include "fiber/context.hpp"  // FIBER_SWITCH_INLINE, FIBER_SANITIZE
#include "fiber/error.hpp"

#if defined(__GLIBCXX__) && !defined(__ARM_EABI__) && !defined(__USING_SJLJ_EXCEPTIONS__) && !defined(__SEH__) && \
    !defined(_WIN32) && !FIBER_SANITIZE
#  define FIBER_CLEANUP_PHASE_RAISE 1
#  include <unwind.h>
#else
#  define FIBER_CLEANUP_PHASE_RAISE 0
#endif

namespace fiber::detail {

#if FIBER_CLEANUP_PHASE_RAISE
// A generator_exit, made as __cxa_throw makes a thrown object (counted as
// uncaught), ready for _Unwind_Resume. Out of line: only the unwinder's entry
// needs to be in the body's frame.
_Unwind_Exception* prepare_generator_exit() noexcept;
#endif

// Raises generator_exit in the calling frame. Inlined into yield(), so that the
// unwinder starts in the body's frame.
[[noreturn]] FIBER_SWITCH_INLINE void raise_generator_exit() {
#if FIBER_CLEANUP_PHASE_RAISE
  _Unwind_Resume(prepare_generator_exit());
  __builtin_unreachable();  // _Unwind_Resume does not return; unwind.h does not say so
#else
  throw generator_exit{};
#endif
}

}  // namespace fiber::detail
