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

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "fiber/detail/eh_state.hpp"
#include "fiber/detail/switch.h"
#include "fiber/error.hpp"

// Which sanitizers this translation unit is built with. The library and the code
// using it must agree (the switch path below is inline): build both with the same
// -fsanitize flags.
#if defined(__SANITIZE_ADDRESS__)
#  define FIBER_ASAN 1
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define FIBER_ASAN 1
#  endif
#endif
#if defined(__SANITIZE_THREAD__)
#  define FIBER_TSAN 1
#elif defined(__has_feature)
#  if __has_feature(thread_sanitizer)
#    define FIBER_TSAN 1
#  endif
#endif
#ifndef FIBER_ASAN
#  define FIBER_ASAN 0
#endif
#ifndef FIBER_TSAN
#  define FIBER_TSAN 0
#endif
#define FIBER_SANITIZE (FIBER_ASAN || FIBER_TSAN)

#if FIBER_ASAN
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, std::size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old, std::size_t* size_old);
}
#endif
#if FIBER_TSAN
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#endif

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

// Where a suspended flow's saved registers begin (its stack pointer as the
// switch left it); nullptr for an empty context. A copied stack's bytes in use
// (loop/copied_stacks.hpp) lie from there to the top of its stack.
void* suspended_sp(const context& c) noexcept;

// What the suspending side leaves in its frame's data slot (FIBER_FRAME_DATA):
//   nullptr          an ordinary switch;
//   unwind_request   "unwind your stack and end": sent when a context is destroyed;
//   a record_base*   "I have ended; release my record and stack".
inline void* const unwind_request = reinterpret_cast<void*>(std::uintptr_t{1});

inline void* raw_frame_data(void* sp) noexcept {
  void* data;
  std::memcpy(&data, static_cast<char*>(sp) + FIBER_FRAME_DATA, sizeof data);
  return data;
}

#if FIBER_SANITIZE
// With a sanitizer, every suspended frame's data slot points at one of these, on
// the suspended side's stack (or in a fresh fiber's record): the switching side
// must tell the sanitizer the bounds (and TSan fiber) of the stack it switches to.
struct san_frame {
  void* data;          // what the suspending side passed
  const void* bottom;  // its stack: lowest address and size
  std::size_t size;
  void* tsan_fiber;
};
inline void* frame_data(void* sp) noexcept { return static_cast<san_frame*>(raw_frame_data(sp))->data; }
#else
inline void* frame_data(void* sp) noexcept { return raw_frame_data(sp); }
#endif

/// What a fiber is doing, as debuggers and fiber::dump() see it. A record holds
/// created, suspended (started and not ended: running if a thread's
/// thread_state::running points at it) or ended; running is never stored, so that
/// a switch need not write it.
enum class fiber_state : std::uint8_t { created, running, suspended, ended };

// Bookkeeping of one fiber, at the top of its stack. Besides `release`, what is
// here serves debugging: the registry (registry.cpp) lists every live fiber for
// tools/gdb/fiber.py, fiber::dump() and the stack-overflow handler, which read
// these fields (keep the gdb script in step with their names).
struct record_base {
  void (*release)(record_base*) noexcept;  // destroys the record and frees the stack
  std::uint64_t id = 0;                    // unique in the process, from 1
  void* stack_base = nullptr;              // usable stack: [stack_base, stack_base + stack_size)
  std::size_t stack_size = 0;
  void* saved_sp = nullptr;                // where it is suspended, unless it runs
  const void* task = nullptr;              // the event_loop task it runs (fiber_control*), if any
  std::uint32_t slot = UINT32_MAX;         // its entry in the registry
  unsigned valgrind_stack = 0;             // VALGRIND_STACK_REGISTER's id
  fiber_state state = fiber_state::created;
  char name[32] = {};                      // NUL-terminated, truncated
#if FIBER_SANITIZE
  san_frame first{};                       // what a switch to the fresh fiber reads
#endif
};

#if FIBER_SWITCH_TRACKS
static_assert(offsetof(record_base, saved_sp) == FIBER_RECORD_SAVED_SP, "switch.h: FIBER_RECORD_SAVED_SP");
#endif

// Adds a made fiber to the registry (id, slot; sanitizer and Valgrind
// registration); removes it as it is released. Never throw: a fiber the registry
// has no room for is simply not listed.
void registry_add(record_base* r) noexcept;
void registry_remove(record_base* r) noexcept;
// A listed record's bytes were moved to `r` (a copied stack's, copied away or
// back: loop/copied_stacks.hpp).
void registry_relocate(record_base* r) noexcept;

// Writes `message` and a newline on stderr, then aborts.
[[noreturn]] void fatal(const char* message) noexcept;

// What a thread's exception-state pointer holds until the thread's first switch
// (registry.cpp): its `uncaught` count is not zero, so the fast path's one test for
// exception state (tracked_switch) also sends a thread's first switch down the
// careful path, which lists the thread and finds its real state. Never written.
extern eh_globals_layout first_switch_mark;

// Per-thread switching state: which fiber runs (nullptr: the thread's own stack)
// and where the C++ runtime keeps this thread's exception state. Initial-exec TLS
// where the platform has it: its accesses go through the thread pointer each
// time, so a flow resumed on another thread than it suspended on finds that
// thread's state (tests/exception_state_test.cpp checks it on every target).
// Every thread that switches is on a list (registry.cpp), so that debuggers and
// dump() can tell which fibers run.
struct thread_state {
  record_base* running = nullptr;
  eh_globals_layout* eh = &first_switch_mark;  // the runtime's, from the thread's first switch on
  thread_state* next_thread = nullptr;
  thread_state* prev_thread = nullptr;
#if FIBER_SANITIZE
  const void* stack_bottom = nullptr;  // the thread's own stack
  std::size_t stack_size = 0;
#endif
};
#if FIBER_SWITCH_TRACKS
static_assert(offsetof(thread_state, running) == FIBER_THREAD_RUNNING, "switch.h: FIBER_THREAD_RUNNING");
static_assert(offsetof(thread_state, eh) == FIBER_THREAD_EH, "switch.h: FIBER_THREAD_EH");
static_assert(offsetof(eh_globals_layout, caught) == FIBER_EH_CAUGHT, "switch.h: FIBER_EH_CAUGHT");
static_assert(offsetof(eh_globals_layout, uncaught) == FIBER_EH_UNCAUGHT, "switch.h: FIBER_EH_UNCAUGHT");
#endif
#if defined(__ELF__)
extern constinit thread_local thread_state tls_state [[gnu::tls_model("initial-exec")]];
// The calling thread's state, as an lvalue.
#  define FIBER_DETAIL_THREAD_STATE (::fiber::detail::tls_state)
#else
// Elsewhere (Windows, whose GCC emulates TLS) the state is on the heap, made at the
// thread's first use: emulated TLS can be freed before the thread's C++
// thread_local destructors run, so a thread_state there could not be taken off the
// list of threads at exit. A thread-exit destructor that is handed the state
// itself (a pthread key's) unlists and frees it.
#  define FIBER_DETAIL_THREAD_STATE (*::fiber::detail::this_thread_state())
#endif
thread_state* this_thread_state() noexcept;  // out of line: the calling thread's state, freshly computed
// A thread's first switch: finds its exception state and lists the thread.
eh_globals_layout* first_switch_on_thread(thread_state& t) noexcept;
#if FIBER_SANITIZE
void thread_stack_bounds(thread_state& t) noexcept;  // fills stack_bottom/size
#endif

// How the switch path reaches tls_state. A flow may be resumed on another thread
// than it suspended on, so no thread-pointer value computed before a switch may be
// used after it; but compilers treat the thread pointer as constant within a
// function and reuse it (on AArch64 and Arm, the exception-state test that moves a
// context between threads failed so). On x86 ELF every access to initial-exec TLS
// goes through the segment register, which the switch leaves to each thread, so
// the switch path names tls_state directly. Elsewhere it asks the library
// (this_thread_state(), out of line) once before and once after each switch.
// Named directly, never through a reference: with -fsanitize=null, GCC 12 checks
// such a reference (an initial-exec TLS address) against null, and at -O2 can
// compile that check into a jump on stale flags that always fails ("member access
// within null pointer of type 'struct thread_state'", found by ./dev.sh asan).
#if defined(__ELF__) && (defined(__x86_64__) || defined(__i386__))
#  define FIBER_DETAIL_TLS_FETCH(p) ((void)(p))
#  define FIBER_DETAIL_TLS(p) (::fiber::detail::tls_state)
#else
#  define FIBER_DETAIL_TLS_FETCH(p) ((p) = ::fiber::detail::this_thread_state())
#  define FIBER_DETAIL_TLS(p) (*(p))
#endif
// The thread's exception state (its first switch finds it).
FIBER_SWITCH_INLINE eh_globals_layout* thread_eh([[maybe_unused]] thread_state* p) noexcept {
  eh_globals_layout* g = FIBER_DETAIL_TLS(p).eh;
  if (g == &first_switch_mark) [[unlikely]]
    g = first_switch_on_thread(FIBER_DETAIL_TLS(p));
  return g;
}

// The resumed side's half of the bookkeeping, right after a switch returns (perhaps
// on another thread: `p` must have been fetched after the switch): the flow that
// switched here is suspended at `from`, and `me` runs.
// Where the switch keeps this itself (FIBER_SWITCH_TRACKS, switch.h), nothing.
FIBER_SWITCH_INLINE void note_arrival([[maybe_unused]] thread_state* p, [[maybe_unused]] record_base* me,
                                      [[maybe_unused]] void* from) noexcept {
#if !FIBER_SWITCH_TRACKS
  record_base*& running = FIBER_DETAIL_TLS(p).running;
  if (running) running->saved_sp = from;  // the flow that switched here (a fiber)
  running = me;
#endif
}

// The careful switch: everything the fast path below leaves out. Around the machine
// switch, the running flow's C++ exception state is taken off the thread and given
// back when it is resumed (eh_state.hpp), so each fiber has its own
// std::uncaught_exceptions() and std::current_exception(); a thread's first switch
// lists it; an ending fiber is marked so; and the sanitizers are told of the stack
// change. Out of line: it runs when a switch happens inside a catch block or
// during unwinding, once per thread and once per fiber's end, and on every switch
// of a sanitizer build. `ending`: the running fiber ends with this switch.
template <bool ending>
[[gnu::noinline]] switched careful_switch(void* to, void* data) noexcept {
  [[maybe_unused]] thread_state* ts = nullptr;
  FIBER_DETAIL_TLS_FETCH(ts);
  record_base* const me = FIBER_DETAIL_TLS(ts).running;
  eh_globals_layout* const g = thread_eh(ts);
  // Every flow takes its own state off the thread as it switches away, so the
  // thread's state is empty whenever a flow arrives: only a flow that had state has
  // something to put back.
  const bool handling = eh_state::any(g);
  eh_state saved;
  if (handling) saved = eh_state::take(g);
  if (ending) me->state = fiber_state::ended;
#if FIBER_SANITIZE
  // An ending fiber leaves its frame in its record, which lives until the receiver
  // has read `data`: a local may be on ASan's fake stack (detect_stack_use_after_return),
  // and the ending switch frees that before the receiver runs. (The record's TSan
  // fiber stays: registry_remove destroys it.)
  san_frame local{};
  san_frame& mine = ending ? me->first : local;
  mine.data = data;
  if (me) {
    mine.bottom = me->stack_base;
    mine.size = me->stack_size;
  } else {
    if (!FIBER_DETAIL_TLS(ts).stack_bottom) [[unlikely]]
      thread_stack_bounds(FIBER_DETAIL_TLS(ts));
    mine.bottom = FIBER_DETAIL_TLS(ts).stack_bottom;
    mine.size = FIBER_DETAIL_TLS(ts).stack_size;
  }
  auto* const target = static_cast<san_frame*>(raw_frame_data(to));
#  if FIBER_TSAN
  mine.tsan_fiber = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(target->tsan_fiber, 0);
#  endif
#  if FIBER_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(ending ? nullptr : &fake_stack, target->bottom, target->size);
#  endif
  void* const from = switch_context(to, &mine).from;
#  if FIBER_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#  endif
#else
  void* const from = switch_context(to, data).from;
#endif
  // (A switch that keeps the bookkeeping itself refuses only while the thread has
  // exception state, which was just taken off it.)
  if (FIBER_SWITCH_TRACKS && from == nullptr) fatal("fiber: the switch refused a thread without exception state");
  // Resumed, perhaps on another thread: tls_state is that thread's now.
  FIBER_DETAIL_TLS_FETCH(ts);
  note_arrival(ts, me, from);
  if (handling) saved.restore(thread_eh(ts));
  return {from, frame_data(from)};
}

// Every switch C++ makes goes through here. The fast path, taken when no exception
// is being handled or in flight on the thread (one test: the thread's first switch
// fails it too, see first_switch_mark), keeps only what debuggers and fiber::dump()
// need: which fiber runs on the thread, and where the one that switched away is
// suspended (note_arrival). Where the switch itself does both (FIBER_SWITCH_TRACKS,
// switch.h), the fast path is the switch alone. Everything else is careful_switch's.
template <bool ending = false>
FIBER_SWITCH_INLINE switched tracked_switch(void* to, void* data) noexcept {
  if constexpr (ending || FIBER_SANITIZE) {
    return careful_switch<ending>(to, data);
  } else {
#if FIBER_SWITCH_TRACKS
    const switched s = switch_context(to, data);
    if (s.from == nullptr) [[unlikely]]  // refused: exception state on the thread
      return careful_switch<false>(to, data);
    return s;
#else
    [[maybe_unused]] thread_state* ts = nullptr;
    FIBER_DETAIL_TLS_FETCH(ts);
    if (eh_state::any(FIBER_DETAIL_TLS(ts).eh)) [[unlikely]]
      return careful_switch<false>(to, data);
    record_base* const me = FIBER_DETAIL_TLS(ts).running;
    const switched s = switch_context(to, data);
    FIBER_DETAIL_TLS_FETCH(ts);
    note_arrival(ts, me, s.from);
    return s;
#endif
  }
}

// A fresh fiber's first code, on its own stack: the counterpart of the second half
// of tracked_switch for a flow that did not switch away from anywhere.
FIBER_SWITCH_INLINE void first_arrival(record_base* self, void* from) noexcept {
#if FIBER_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  [[maybe_unused]] thread_state* ts = nullptr;
  FIBER_DETAIL_TLS_FETCH(ts);
  note_arrival(ts, self, from);
  self->state = fiber_state::suspended;  // started: running while a thread says so
  eh_state::clear(thread_eh(ts));
}

[[noreturn]] void throw_empty_resume();
[[noreturn]] void throw_stack_too_small(std::size_t size, std::size_t needed);
// The slow path of arriving after a switch: the data slot held a request.
context arrive_slow(void* from, void* data);
// Ends the running fiber: switches to `next` and tells it to release `self`.
[[noreturn]] void finish(record_base* self, context&& next) noexcept;

inline context arrive(switched s);

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
    registry_remove(base);
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
  record_base* record;
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
  void* const sp = fiber_prepare_context(r, &rec_t::entry, r, s.base);
#if FIBER_SWITCH_TRACKS
  record_base* const as_base = r;  // what the switch makes the running record on arrival
  std::memcpy(static_cast<char*>(sp) + FIBER_FRAME_RECORD, &as_base, sizeof as_base);
#endif
  r->stack_base = s.base;
  r->stack_size = s.size;
  r->saved_sp = sp;
  registry_add(r);
#if FIBER_SANITIZE
  r->first.bottom = s.base;
  r->first.size = s.size;
  san_frame* const first = &r->first;
  std::memcpy(static_cast<char*>(sp) + FIBER_FRAME_DATA, &first, sizeof first);
#endif
  return {sp, &r->fn, r};
}

}  // namespace detail

/// Whether this build of the library leaves the FP control state (rounding mode,
/// flush-to-zero, ...) shared by all fibers of a thread (CMake FIBER_SHARED_FP_ENV).
bool shares_fp_env() noexcept;

class context {
 public:
  /// An empty context: resuming it throws fiber::error.
  context() noexcept = default;

  /// A suspended fiber that, when first resumed, calls `entry(caller)` on a
  /// protected stack of default_stack_size from the thread's cache (cached_stack).
  /// `entry` takes the context that resumed it (context&&) and returns the context
  /// to switch to when it ends.
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, context> && std::is_invocable_r_v<context, std::decay_t<F>&, context &&>)
  explicit context(F&& entry) : context(std::allocator_arg, cached_stack{}, std::forward<F>(entry)) {}

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
    return detail::arrive(detail::tracked_switch(std::exchange(sp_, nullptr), nullptr));
  }

  explicit operator bool() const noexcept { return sp_ != nullptr; }
  void swap(context& other) noexcept { std::swap(sp_, other.sp_); }

 private:
  friend context detail::arrive(detail::switched);
  friend context detail::arrive_slow(void*, void*);
  friend void detail::finish(detail::record_base*, context&&) noexcept;
  friend void* detail::suspended_sp(const context&) noexcept;
  template <class F, class A>
  friend struct detail::record;
  template <class Yield, class Send>
  friend class generator;

  explicit context(void* sp) noexcept : sp_(sp) {}
  void destroy() noexcept;

  void* sp_ = nullptr;  // saved stack pointer of the suspended flow of control
};

namespace detail {

inline void* suspended_sp(const context& c) noexcept { return c.sp_; }

// Runs right after every switch, on the side that was resumed: `s.data` is what
// the side that suspended passed.
FIBER_SWITCH_INLINE context arrive(switched s) {
  if (s.data == nullptr) [[likely]]
    return context(s.from);
  return arrive_slow(s.from, s.data);
}

template <class F, class A>
void record<F, A>::entry(void* from, void* arg) noexcept {
  auto* self = static_cast<record*>(arg);
  context caller, next;
  if (frame_data(from) == unwind_request) {
    first_arrival(self, from);
    next = context(from);  // destroyed before it ever ran: nothing to unwind
  } else {
    // Arriving here is like returning from a switch: if the resumer was a fiber
    // that just ended, its record is released and `caller` is empty.
    first_arrival(self, from);
    caller = arrive({from, frame_data(from)});
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
