// Copied stacks: what copying a suspended flow's frames off a shared stack and
// back needs, for the loop's copied-stack fibers (loop/copied_stacks.hpp) and
// for copied-stack generators (copied_generators.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "fiber/config.h"

#if FIBER_ASAN
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, std::size_t size);
#endif
#if __has_include(<valgrind/memcheck.h>) && !defined(_WIN32)
#  include <valgrind/memcheck.h>
#  define FIBER_STACK_COPY_VALGRIND 1
#else
#  define FIBER_STACK_COPY_VALGRIND 0
#endif

namespace fiber::detail::stack_copy {

// Below a suspended stack pointer, what the switch may have left there: the
// assembly keeps its frame above the pointer it hands out; Boost's and
// ucontext's switches push their registers below the frame they point to.
inline constexpr std::size_t below_sp = FIBER_BACKEND_ASM ? 0 : 1024;

// Under valgrind: bytes about to be written where an earlier flow's stack
// pointer left them inaccessible (memcheck's view of a stack that shrank).
inline void writable([[maybe_unused]] std::uintptr_t at, [[maybe_unused]] std::size_t n) noexcept {
#if FIBER_STACK_COPY_VALGRIND
  (void)VALGRIND_MAKE_MEM_UNDEFINED(reinterpret_cast<void*>(at), n);
#endif
}

// Under ASan: the frames' red zones. The bytes are copied whole, and the frames
// that come back set their own as they return.
inline void unpoison([[maybe_unused]] std::uintptr_t at, [[maybe_unused]] std::size_t n) noexcept {
#if FIBER_ASAN
  __asan_unpoison_memory_region(reinterpret_cast<const void*>(at), n);
#endif
}

}  // namespace fiber::detail::stack_copy
