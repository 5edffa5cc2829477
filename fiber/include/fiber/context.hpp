// fiber::context: the smallest honest primitive, in the shape of WG21 P0876's
// fiber_context. Everything else (generator, scheduler) is built on it.
//
//   fiber::context f{[](fiber::context&& caller) {
//     caller = std::move(caller).resume();   // suspend: back to whoever resumed us
//     return std::move(caller);              // finish: switch to this context
//   }};
//   f = std::move(f).resume();               // run f until it suspends
//
// A context is a move-only handle to a suspended flow of control: a fiber's, or a
// thread's own stack. resume() consumes the handle, switches to it, and returns a
// handle to the context that switched back to us (empty if that was a fiber ending).
//
// Invariants:
//   - A non-empty context refers to exactly one suspended flow of control; resuming
//     it is the only way that flow runs again, which is why the handle is move-only.
//   - A fiber's bookkeeping (entry function, stack allocator) lives at the top of its
//     own stack, so creating a fiber makes one allocation: the stack.
//   - Destroying a non-empty context that refers to a fiber unwinds that fiber's stack
//     (its destructors run) before the memory is released.
#pragma once

#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "fiber/detail/switch.h"
#include "fiber/error.hpp"

// For the functions between user code and the switch: inlined, so that each side
// of a switch returns through its own calls (an out-of-line call left pending
// across a switch costs a mispredicted return on the way back; Clang, left to
// itself, keeps generator::yielder::yield out of line).
#if defined(__GNUC__)
#  define FIBER_SWITCH_INLINE [[gnu::always_inline]] inline
#else
#  define FIBER_SWITCH_INLINE inline
#endif
#include "fiber/stack.hpp"

namespace fiber {

class context;
template <class Yield, class Send>
class generator;

namespace detail {

// What the suspending side leaves in its frame's data slot (FIBER_FRAME_DATA):
//   nullptr          an ordinary switch;
//   unwind_request   "unwind your stack and end": sent when a context is destroyed;
//   a record_base*   "I have ended; release my record and stack".
inline void* const unwind_request = reinterpret_cast<void*>(std::uintptr_t{1});

inline void* frame_data(void* sp) noexcept {
  void* data;
  std::memcpy(&data, static_cast<char*>(sp) + FIBER_FRAME_DATA, sizeof data);
  return data;
}

// Bookkeeping of one fiber, at the top of its stack.
struct record_base {
  void (*release)(record_base*) noexcept;  // destroys the record and frees the stack
};

[[noreturn]] void throw_empty_resume();
[[noreturn]] void throw_stack_too_small(std::size_t size, std::size_t needed);
[[noreturn]] void fatal(const char* message) noexcept;
// The slow path of arriving after a switch: the data slot held a request.
context arrive_slow(void* from, void* data);
// Ends the running fiber: switches to `next` and tells it to release `self`.
[[noreturn]] void finish(record_base* self, context&& next) noexcept;

inline context arrive(void* from);

// Thrown inside a fiber whose context is being destroyed, to unwind its stack.
// Not a std::exception, so `catch (const std::exception&)` lets it pass. It must
// reach the fiber's entry: swallowing it (catch (...) without rethrow) would leave
// a fiber running that its owner believes gone, so that is reported and the
// process terminates.
class forced_unwind {
 public:
  explicit forced_unwind(void* resumer) noexcept : resumer_(resumer) {}
  forced_unwind(const forced_unwind& other) noexcept : resumer_(other.resumer_), armed_(false) {}
  forced_unwind& operator=(const forced_unwind&) = delete;
  ~forced_unwind();
  const char* what() const noexcept { return "fiber::detail::forced_unwind"; }

 private:
  template <class F, class A>
  friend struct record;
  void* resumer_;  // the context that destroyed ours, to switch to when unwound
  bool armed_ = true;
};

template <class F, class A>
struct record final : record_base {
  F fn;
  A allocator;
  stack_memory stack;

  template <class... Args>
  record(A&& a, stack_memory s, Args&&... args)
      : record_base{&release_impl}, fn(std::forward<Args>(args)...), allocator(std::move(a)), stack(s) {}

  static void release_impl(record_base* base) noexcept {
    auto* self = static_cast<record*>(base);
    A a = std::move(self->allocator);
    stack_memory s = self->stack;
    self->~record();
    a.deallocate(s);
  }

  [[noreturn]] static void entry(void* from, void* arg) noexcept;
};

template <class F, class A>
struct made_fiber {
  void* sp;
  F* fn;  // the entry function, stored in the fiber's record
};

// Allocates a stack from `a`, constructs the entry function F(args...) and `a` at its
// top, and prepares the first switch. The one place a fiber is made; context and
// generator both use it.
template <class F, class A, class... Args>
made_fiber<F, A> make_fiber(A a, Args&&... args) {
  using rec_t = record<F, A>;
  stack_memory s = a.allocate();
  constexpr std::size_t align = alignof(rec_t) > 16 ? alignof(rec_t) : 16;
  const auto top = reinterpret_cast<std::uintptr_t>(s.top());
  const std::uintptr_t at = (top - sizeof(rec_t)) & ~std::uintptr_t{align - 1};
  // Room below the record for what the switch needs (stack.hpp).
  constexpr std::size_t headroom = switch_stack_reserve;
  if (s.size < sizeof(rec_t) + align + headroom || at - headroom < reinterpret_cast<std::uintptr_t>(s.base)) {
    a.deallocate(s);
    throw_stack_too_small(s.size, sizeof(rec_t) + align + headroom);
  }
  rec_t* r;
  try {
    r = ::new (reinterpret_cast<void*>(at)) rec_t(std::move(a), s, std::forward<Args>(args)...);
  } catch (...) {
    a.deallocate(s);
    throw;
  }
  return {fiber_prepare_context(r, &rec_t::entry, r, s.base), &r->fn};
}

}  // namespace detail

/// Whether this build of the library leaves the FP control state (rounding mode,
/// flush-to-zero, ...) shared by all fibers of a thread (CMake FIBER_SHARED_FP_ENV).
bool shares_fp_env() noexcept;

class context {
 public:
  /// An empty context: resuming it throws fiber::error.
  context() noexcept = default;

  /// A suspended fiber that, when first resumed, calls `entry(caller)` on a new
  /// stack of default_stack_size from protected_stack. `entry` takes the context
  /// that resumed it (context&&) and returns the context to switch to when it ends.
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, context> && std::is_invocable_r_v<context, std::decay_t<F>&, context &&>)
  explicit context(F&& entry) : context(std::allocator_arg, protected_stack{}, std::forward<F>(entry)) {}

  /// The same, with the stack taken from `allocator` (see stack.hpp).
  /// `entry` must be callable as `context entry(context&& caller)`.
  template <class StackAllocator, class F>
    requires std::is_invocable_r_v<context, std::decay_t<F>&, context &&>
  context(std::allocator_arg_t, StackAllocator allocator, F&& entry)
      : sp_(detail::make_fiber<std::decay_t<F>>(std::move(allocator), std::forward<F>(entry)).sp) {}

  context(context&& other) noexcept : sp_(std::exchange(other.sp_, nullptr)) {}
  /// Destroys what this context held (unwinding a suspended fiber), then takes
  /// `other`'s.
  context& operator=(context&& other) noexcept {
    if (this != &other) {
      if (sp_) destroy();
      sp_ = std::exchange(other.sp_, nullptr);
    }
    return *this;
  }
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  /// Destroying a suspended fiber unwinds its stack: its destructors run, then its
  /// stack is released. (A thread's own stack cannot be unwound; destroying a
  /// non-empty context that refers to one terminates the process with a message.)
  ~context() {
    if (sp_) destroy();
  }

  /// Switches to this context; returns, when something switches back, the context
  /// that did so (empty if it was a fiber that ended). Throws fiber::error if empty.
  [[nodiscard]] FIBER_SWITCH_INLINE context resume() && {
    if (!sp_) [[unlikely]] detail::throw_empty_resume();
    return detail::arrive(detail::switch_context(std::exchange(sp_, nullptr), nullptr));
  }

  explicit operator bool() const noexcept { return sp_ != nullptr; }
  void swap(context& other) noexcept { std::swap(sp_, other.sp_); }

 private:
  friend context detail::arrive(void*);
  friend context detail::arrive_slow(void*, void*);
  friend void detail::finish(detail::record_base*, context&&) noexcept;
  template <class F, class A>
  friend struct detail::record;
  template <class Yield, class Send>
  friend class generator;

  explicit context(void* sp) noexcept : sp_(sp) {}
  void destroy() noexcept;

  void* sp_ = nullptr;  // saved stack pointer of the suspended flow of control
};

namespace detail {

// Runs right after every switch, on the side that was resumed.
FIBER_SWITCH_INLINE context arrive(void* from) {
  void* data = frame_data(from);
  if (data == nullptr) [[likely]]
    return context(from);
  return arrive_slow(from, data);
}

template <class F, class A>
void record<F, A>::entry(void* from, void* arg) noexcept {
  auto* self = static_cast<record*>(arg);
  context caller, next;
  if (frame_data(from) == unwind_request) {
    next = context(from);  // destroyed before it ever ran: nothing to unwind
  } else {
    // Arriving here is like returning from a switch: if the resumer was a fiber
    // that just ended, its record is released and `caller` is empty.
    caller = arrive(from);
    try {
      // `caller` lives outside the try block, so an entry that throws without
      // taking it does not destroy (and unwind) its resumer on the way out.
      next = std::invoke(self->fn, std::move(caller));
    } catch (forced_unwind& unwind) {
      unwind.armed_ = false;
      next = context(unwind.resumer_);
    } catch (...) {
      // P0876: an exception may not leave a fiber's entry function. The handler
      // below runs with the exception active, so std::terminate reports its type.
      std::terminate();
    }
    if (!next) fatal("fiber: a fiber::context entry function returned an empty context; there is nothing to switch to");
    // Neither taken nor returned: destroying it unwinds it (a fiber) or reports
    // that it cannot be (a thread's own stack), rather than leaking it silently.
    { context dropped = std::move(caller); }
  }
  finish(self, std::move(next));
}

}  // namespace detail
}  // namespace fiber
