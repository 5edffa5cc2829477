// The scheduler's state that the inline fast paths need, for fiber/event_loop.hpp
// (which includes it; use that header): what the loop knows of one fiber
// (fiber_control, the shared state of a task), the loop's scheduling core
// (loop_core), park() and wake() for their common case, and the guards of shared
// mode. Internals: nothing here is API. event_loop.cpp and loop/ implement it;
// scheduler.hpp states the rules; docs/design.md draws the layers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <optional>
#include <type_traits>
#include <variant>

#include "fiber/context.hpp"
#include "fiber/detail/eh_state.hpp"
#include "fiber/detail/scheduler.hpp"

// FIBER_ASSERT(condition, "what must hold"): the scheduler's invariants
// (docs/design.md), checked in debug builds (no NDEBUG), under the sanitizers,
// or with -DFIBER_CHECKS=1; a broken one ends the process with its words
// (detail::fatal) where it would otherwise corrupt a queue silently and fail
// far from the cause. Compiled out otherwise: the fast paths pay nothing.
#if !defined(FIBER_CHECKS)
#  if !defined(NDEBUG) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#    define FIBER_CHECKS 1
#  else
#    define FIBER_CHECKS 0
#  endif
#endif
#if FIBER_CHECKS
#  define FIBER_ASSERT(condition, what) \
    ((condition) ? static_cast<void>(0) : ::fiber::detail::fatal("fiber: invariant broken: " what))
#else
#  define FIBER_ASSERT(condition, what) static_cast<void>(0)
#endif

namespace fiber {

class event_loop;
template <class T>
class task;
struct spawn_options;

/// How a task ended, or that it has not yet.
enum class task_status { pending, succeeded, failed, cancelled };

namespace detail {

class loop_stacks;
struct loop_core;

// A fiber's life, one state at a time:
//
//   created --it starts (startable())--> started --park()--> parked
//   parked --woken, timed out or cancelled--> started
//   started --its body returned or threw (finish())--> ended
//   created --it ends before it started (a failed start, a loop torn down)--> ended
//
// A park ends on the fiber's loop's thread at the wake (single mode), or when the
// fiber runs again (shared mode: resume_shared(), after a claim). Changed only
// on the fiber's loop's thread (created -> started under the fiber's lock in
// shared mode: cancel() reads it from any thread); set_state() checks each change
// with FIBER_ASSERT. Where a fiber is meanwhile is not part of its state: a
// created or started fiber may sit in its loop's ready queue (`queued`, the
// queue's link flag), a created one in a runtime's inject queue or a worker's
// remote queue; a started one runs (its loop's `current`) or waits its turn.
enum class run_state : std::uint8_t { created, started, parked, ended };

// What the loop knows of one fiber; a task<T>'s shared state derives from it.
struct fiber_control {
  fiber_control() = default;
  fiber_control(const fiber_control&) = delete;
  fiber_control& operator=(const fiber_control&) = delete;
  virtual ~fiber_control() = default;

  // Task blocks are recycled through a small per-thread cache (event_loop.cpp):
  // a spawn + join then costs no malloc/free in the steady state.
  static void* operator new(std::size_t size);
  static void operator delete(void* p, std::size_t size) noexcept;
  static void* operator new(std::size_t size, std::align_val_t al) { return ::operator new(size, al); }
  static void operator delete(void* p, std::size_t, std::align_val_t al) noexcept { ::operator delete(p, al); }

  // Runs the body and stores its outcome (value or exception). Called once, on the
  // fiber's own stack.
  virtual void run_body() = 0;

  // The fields park(), wake() and a switch touch come first, in the first two
  // cache lines; the rest (bookkeeping of tasks, debugging) after them.
  loop_core* core = nullptr;            // loop's scheduling state (below)
  context ctx;                          // the suspended fiber (empty: running or not started)
  fiber_control* ready_next = nullptr;  // ready-queue links
  fiber_control* ready_prev = nullptr;
  bool queued = false;                  // in the ready queue (its link flag; not a state)
  std::atomic<run_state> state{run_state::created};  // (relaxed: set_state(), state_of())
  bool migratable = false;              // spawn_options::migratable, where it takes effect
  bool pinned = false;                  // spawn_options::worker: never handed to another worker
  bool copied = false;                  // stack_kind::copied: runs on its loop's shared stack
  // Park bookkeeping (event_loop.cpp). park_operation and park_object say what a
  // parked fiber waits for (park_object: see wait_on() in scheduler.hpp); they are
  // meaningful only while it is parked.
  bool park_shielded = false;
  bool park_by_scope = false;           // the timer is the deadline_scope's
  std::atomic<bool> cancel_pending{false};  // cancel() asked; delivered at the next park
  int park_result = 0;
  int park_reason = 0;
  waiter* park_waiters = nullptr;
  std::size_t park_count = 0;
  std::size_t timer_slot = static_cast<std::size_t>(-1);
  clock::time_point scope_deadline = no_deadline;  // innermost deadline_scope
  std::uintptr_t* canary = nullptr;     // bottom of an unguarded stack
  const char* park_operation = nullptr;
  std::uintptr_t park_object = 0;
  // Shared mode (scheduler.hpp, "Threads"): 0, or how the park was ended by the
  // claim that won (claim_word()); the fiber resets it once it has cleaned up.
  std::atomic<std::uint32_t> claim{0};
  // Set (release) once the outcome (error, value) is stored; read from any thread.
  std::atomic<task_status> status{task_status::pending};
  task_status outcome = task_status::pending;  // how the body ended, until finish() publishes it
  std::atomic<int> refs{1};             // task handles (the loop holds its own while alive)

  event_loop* loop = nullptr;
  std::size_t stack_size = 0;
  fiber_control* all_prev = nullptr;    // the loop's list of fibers alive
  fiber_control* all_next = nullptr;
  std::atomic<bool> detached{false};
  spin_lock lock;                       // joiners and the status change, in shared mode
  wait_queue joiners{&lock};            // fibers waiting for this one to end
  std::exception_ptr error;             // the body's exception, when status is failed or cancelled
  fiber_control* remote_next = nullptr;  // in its loop's remote queue
  // While the fiber waits for IO (event_loop.cpp, io_wait_count): the count of
  // waiters it is in, which a migration moves.
  struct io_wait_count* io_count = nullptr;
  clock::time_point timer_deadline{};
  std::uint64_t timer_seq = 0;

  // For debugging (fiber::dump(), the deadlock report): the task's fiber id, given
  // at spawn (task::id(), this_fiber::id() inside it); the fiber that runs it,
  // while it runs; its spawn_options::name (NUL-terminated, set by submit()).
  std::uint64_t id = 0;
  record_base* record = nullptr;
  char name[32];

  // A copied-stack fiber's place on its loop's shared stack, and its bytes
  // copied away (loop/copied_stacks.hpp): its home (0: the top), and, while
  // saved_size is not 0, the saved_size bytes below stack_split are in
  // saved_bytes (a buffer of saved_capacity), those above it in place.
  std::uintptr_t stack_home = 0;
  std::uintptr_t stack_split = 0;
  fiber_control* stack_parent = nullptr;  // the spawner below whose frames the home is (a reference)
  unsigned char* saved_bytes = nullptr;
  std::size_t saved_size = 0;
  std::size_t saved_capacity = 0;
};

inline run_state state_of(const fiber_control* f) noexcept { return f->state.load(std::memory_order_relaxed); }
[[noreturn]] void bad_state_change(const fiber_control* f, run_state from, run_state to) noexcept;
// f's state becomes `to`: FIBER_ASSERT checks that the change is one of the life's.
inline void set_state(fiber_control* f, run_state to) noexcept {
#if FIBER_CHECKS
  const run_state from = state_of(f);
  const bool allowed = (from == run_state::created && (to == run_state::started || to == run_state::ended)) ||
                       (from == run_state::started && (to == run_state::parked || to == run_state::ended)) ||
                       (from == run_state::parked && to == run_state::started);
  if (!allowed) [[unlikely]]
    bad_state_change(f, from, to);
#endif
  f->state.store(to, std::memory_order_relaxed);
}

template <class T>
struct task_state : fiber_control {
  std::optional<std::conditional_t<std::is_void_v<T>, std::monostate, T>> value;
};

template <class T, class F>
struct task_impl final : task_state<T> {
  explicit task_impl(F&& f) : fn(std::move(f)) {}
  void run_body() override {
    if constexpr (std::is_void_v<T>) {
      std::invoke(fn);
      this->value.emplace();
    } else {
      this->value.emplace(std::invoke(fn));
    }
  }
  F fn;
};

void submit(event_loop& loop, fiber_control* f, const spawn_options& opts);
// Drops a reference; release_handle() is a task handle's (the task is detached
// if it has not ended).
void release(fiber_control* f) noexcept;
void release_handle(fiber_control* f) noexcept;
void cancel(fiber_control* f) noexcept;
// Waits until `f` ends; timed. Returns false on timeout. Throws like park(), and
// fiber::error, naming `operation`, if the caller is `f` or not a fiber of f's loop.
bool join(fiber_control* f, clock::time_point deadline, const char* operation);
// Waits, ignoring cancellation and deadline scopes, until every fiber ends.
void join_shielded(fiber_control* const* fibers, std::size_t count);
// Waits until one of `fibers` has ended; returns its index, or -1 on timeout.
int join_any(fiber_control* const* fibers, std::size_t count, clock::time_point deadline);
[[noreturn]] void throw_no_loop(const char* operation);
[[noreturn]] void throw_empty_task(const char* operation);
[[noreturn]] void throw_task_wrong_thread(const char* operation);
void rethrow_outcome(fiber_control* f);

// fiber::dump() and the deadlock report. describe_wait: what `f` does or waits
// for ("parked in fiber::channel::recv on 0x..., deadline in 12 ms"); describe_task:
// the same after `task <id> "<name>": `. Both for the loop's thread only (dump.cpp).
void describe_wait(std::ostream& out, const fiber_control& f);
void describe_task(std::ostream& out, const fiber_control& f);
void write_task_ref(std::ostream& out, const fiber_control& f);  // task <id> "<name>"

// ---- the scheduler's fast paths ----
//
// park() and wake() (specified in scheduler.hpp) run inline in the primitives for
// their common case (one waiter, no deadline, nothing pending, the next fiber
// already started): a channel hand-off then makes no call into the library. All
// else goes to event_loop.cpp.

enum park_reason_t : int { reason_pending = 0, reason_woken, reason_timeout, reason_scope, reason_cancelled };

// The scheduling state of a loop that the fast paths use; event_loop.cpp's loop
// derives from it. See event_loop.cpp for the rules (ready queue, runnext, budget).
struct loop_core {
  fiber_control* current = nullptr;     // the running fiber; nullptr: the scheduler
  fiber_control* ready_head = nullptr;  // the ready queue (doubly linked)
  fiber_control* ready_tail = nullptr;
  fiber_control* runnext = nullptr;     // the hand-off slot, ahead of the queue
  fiber_control* lane_tail = nullptr;   // the last fiber of the lane (event_loop.cpp), if any
  context* save_slot = nullptr;         // where the switcher's context goes
  int direct_budget = 0;                // direct switches left before the scheduler's turn
  bool handed_off = false;              // next_after_park()'s last fiber came from runnext
  // The cooperative budget (coop_tick below): operations left in the running
  // fiber's turn, and the number each turn starts with (INT_MAX: off).
  int coop_left = 128;
  int coop_budget = 128;
  bool tearing_down = false;
  // Shared mode (scheduler.hpp, "Threads"): set by the loop's own thread, at a
  // point where none of its fibers is inside an operation; never cleared.
  std::atomic<bool> shared{false};
  // Fibers woken from other threads, for the loop's thread to take in.
  spin_lock remote_lock;
  fiber_control* remote_head = nullptr;
  fiber_control* remote_tail = nullptr;
  std::atomic<bool> has_remote{false};
  // The loop's thread waits in the reactor (or is about to): a remote wake must
  // poke it (loop/shared.cpp).
  std::atomic<bool> sleeping{false};
  // The thread running the loop (its tls_state), while run() or run_once() runs:
  // what the checks against using the loop from other threads compare with.
  std::atomic<const thread_state*> runner{nullptr};
  eh_globals_layout* eh_globals = eh_state::globals();  // the running thread's

  void make_ready(fiber_control* f) noexcept {
    if (f->queued) return;
    f->queued = true;
    f->ready_next = nullptr;
    f->ready_prev = ready_tail;
    if (ready_tail)
      ready_tail->ready_next = f;
    else
      ready_head = f;
    ready_tail = f;
  }
  fiber_control* pop_ready() noexcept {
    fiber_control* f = ready_head;
    if (f) {
      FIBER_ASSERT(f->queued, "a fiber in the ready queue is marked queued");
      ready_head = f->ready_next;
      if (f == lane_tail) lane_tail = nullptr;
      if (ready_head)
        ready_head->ready_prev = nullptr;
      else
        ready_tail = nullptr;
      f->queued = false;
      f->ready_next = nullptr;
    }
    return f;
  }
  // The next flow to run after the running fiber parks: runnext, else the head of
  // the queue, while the direct budget lasts; else (nullptr) the scheduler.
  fiber_control* next_after_park() noexcept {
    if (direct_budget > 0) {
      if (fiber_control* f = runnext) {
        runnext = nullptr;
        handed_off = true;
        f->queued = false;
        --direct_budget;
        return f;
      }
      if (fiber_control* f = pop_ready()) {
        handed_off = false;
        --direct_budget;
        return f;
      }
    }
    return nullptr;
  }
};

// The loop running on this thread (constinit: no TLS init wrapper on access).
extern constinit thread_local loop_core* running_core;
// Whether this thread runs shared (scheduler.hpp, "Threads"): true outside any
// loop; on a loop's thread, its loop's `shared`. Kept with running_core (one
// load where two would do).
extern constinit thread_local bool thread_shared;

// Whether `core`'s loop runs on another thread than the caller's. (The caller's
// thread state is asked for out of line: a fiber may have been resumed on another
// thread since its function last read the thread pointer; context.hpp.)
inline bool runs_elsewhere(const loop_core* core) noexcept {
  const thread_state* const r = core->runner.load(std::memory_order_relaxed);
  return r && r != this_thread_state();
}

// Whether `loop` runs on another thread than the caller's.
bool loop_runs_elsewhere(const event_loop& loop) noexcept;

// Before a waiter is linked: throws fiber::error, naming `operation`, where no
// wait may be: on a loop's thread outside its fibers (a posted function). A
// thread outside any loop may wait (it blocks).
inline void check_may_wait(const char* operation) {
  loop_core* const L = running_core;
  if (L && !L->current) [[unlikely]]
    require_fiber(operation);
}

// Out of line: everything but the common cases.
int park_slow(waiter* waiters, std::size_t count, clock::time_point deadline, const char* operation,
              std::uintptr_t object);
int park_outcome(fiber_control* self);
void transfer_slow(fiber_control* next);  // the running fiber switches to next (nullptr: the scheduler)
void wake_slow(fiber_control* f, int index) noexcept;

inline fiber_control* running() noexcept {
  loop_core* L = running_core;
  return L ? L->current : nullptr;
}

// Whether the running fiber runs on a copied stack (stack_kind::copied): its
// frames leave their addresses while it is parked, so what a waker reaches (its
// waiters, where a channel's value goes) must then live off its stack.
inline bool running_copied() noexcept {
  const fiber_control* f = running();
  return f && f->copied;
}

// An object a waker reaches while its fiber is parked (a waiter): in the
// operation's frame, or on the heap for a fiber on a copied stack, where it
// stays put while the fiber's bytes are away.
template <class T>
class park_local {
 public:
  park_local() : p_(running_copied() ? new T() : ::new (static_cast<void*>(local_)) T()) {}
  ~park_local() {
    if (p_ == reinterpret_cast<T*>(local_))
      p_->~T();
    else
      delete p_;
  }
  park_local(const park_local&) = delete;
  park_local& operator=(const park_local&) = delete;
  T& operator*() const noexcept { return *p_; }
  T* operator->() const noexcept { return p_; }
  T* get() const noexcept { return p_; }

 private:
  alignas(T) unsigned char local_[sizeof(T)];
  T* p_;
};

// The cooperative budget. Every operation that may park (a channel's send and
// recv, a select without a default case, a mutex's lock, a stream's read and
// write, an accept), and a spawn, calls coop_tick() first; a fiber's turn (from when it is
// resumed until it parks) may make event_loop::options::cooperative_budget of
// them. The one that finds the budget spent first yields the fiber through the
// scheduler (coop_yield(): posted functions, due timers and ready IO are served,
// and the fibers queued run), then goes on. Without this, a fiber whose
// operations always find their data ready (a greedy client on a fast socket, a
// select on a closed channel) would never park, and nothing else on its loop would
// run. Outside a loop's fiber, nothing.
void coop_yield();
FIBER_SWITCH_INLINE void coop_tick() {
  loop_core* const L = running_core;
  if (L && --L->coop_left < 0) [[unlikely]]
    coop_yield();
}

FIBER_SWITCH_INLINE int park(waiter* waiters, std::size_t count, clock::time_point deadline = no_deadline,
                             const char* operation = nullptr, std::uintptr_t object = 0) {
  loop_core* const L = running_core;
  fiber_control* const self = L ? L->current : nullptr;
  if (count != 1 || !self || L->tearing_down || self->cancel_pending.load(std::memory_order_relaxed) || deadline != no_deadline ||
      self->scope_deadline != no_deadline || L->shared.load(std::memory_order_relaxed)) [[unlikely]]
    return park_slow(waiters, count, deadline, operation, object);
  waiters->fiber = self;
  waiters->index = 0;
  self->park_operation = operation;  // for fiber::dump()
  self->park_object = object;
  self->park_waiters = waiters;
  self->park_count = 1;
  set_state(self, run_state::parked);
  self->park_reason = reason_pending;
  self->park_by_scope = false;
  fiber_control* const next = L->next_after_park();
  if (!next || state_of(next) == run_state::created || self->canary || next->copied) [[unlikely]] {
    transfer_slow(next);  // the scheduler, a fiber to start, a canary to check, a copied stack
  } else {
    L->current = next;
    L->save_slot = &self->ctx;
    // (resume() keeps our exceptions in flight ours: context.hpp, eh_state.hpp.)
    context from = std::move(next->ctx).resume();
    if (from) *L->save_slot = std::move(from);  // else the switcher was a fiber that ended
  }
  L->coop_left = L->coop_budget;  // a new turn
  if (self->park_reason == reason_woken) [[likely]]
    return self->park_result;
  return park_outcome(self);
}

// ---- shared mode (scheduler.hpp, "Threads"; loop/shared.cpp) ----

// Whether the caller runs shared: always outside a loop; on a loop's thread,
// once that loop turned shared.
inline bool shared_mode() noexcept { return thread_shared; }

// A thread outside any loop uses a primitive: while it does (plain_enter() to
// plain_exit(), a wait included), every loop that runs is shared.
void plain_enter() noexcept;
void plain_exit() noexcept;

// Guards a primitive's operation: in shared mode, holds its lock from the
// constructor to unlock() (before a park) or the end of the scope; in single
// mode, nothing (one relaxed load).
class op_guard {
 public:
  explicit op_guard(spin_lock& l) noexcept : state_(thread_shared ? enter(l) : 0) {}
  ~op_guard() {
    if (state_) [[unlikely]]
      leave();
  }
  op_guard(const op_guard&) = delete;
  op_guard& operator=(const op_guard&) = delete;
  // Whether the operation runs shared (scheduler.hpp, "Threads").
  bool shared() const noexcept { return state_ != 0; }
  void unlock() noexcept {
    if (state_ & held) {
      lock_of()->unlock();
      state_ &= ~held;
    }
  }

 private:
  // state_: the lock's address, | held while it is held, | plain for a thread
  // outside any loop (plain_exit() at the end); 0 in single mode.
  static constexpr std::uintptr_t held = 1, plain = 2;
  static_assert(alignof(spin_lock) >= 4, "op_guard: the flags need two free low bits in a spin_lock's address");
  spin_lock* lock_of() const noexcept { return reinterpret_cast<spin_lock*>(state_ & ~(held | plain)); }
  static std::uintptr_t enter(spin_lock& l) noexcept {
    std::uintptr_t s = reinterpret_cast<std::uintptr_t>(&l) | held;
    if (!running_core) {
      s |= plain;
      plain_enter();
    }
    l.lock();
    return s;
  }
  void leave() noexcept {
    unlock();
    if (state_ & plain) plain_exit();
  }
  std::uintptr_t state_;
};

// The claim word: how a park ended, for the fiber to read when it runs again.
inline constexpr std::uint32_t claim_word(int reason, int index) noexcept {
  return static_cast<std::uint32_t>(reason) << 24 | (static_cast<std::uint32_t>(index) & 0xffffffu);
}
// Claims `f`'s park for an end by `reason` (and waiter `index`): true if this
// claim is the one that won.
inline bool claim(fiber_control* f, int reason, int index) noexcept {
  std::uint32_t none = 0;
  return f->claim.compare_exchange_strong(none, claim_word(reason, index), std::memory_order_acq_rel,
                                          std::memory_order_relaxed);
}
// Shared mode: the first waiter of `q` whose fiber this call claimed (the
// others, claimed already, are unlinked on the way), or nullptr. The caller holds
// q's lock, fills the waiter's slot, then calls wake() on it.
waiter* claim_front_shared(wait_queue& q) noexcept;
// The first waiter of `q` that may be woken (single mode: the first), or nullptr.
inline waiter* claim_front(wait_queue& q, bool shared) noexcept {
  waiter* w = q.front();
  if (!w || !shared) [[likely]]
    return w;
  return claim_front_shared(q);
}
inline waiter* claim_front(wait_queue& q) noexcept { return claim_front(q, shared_mode()); }
// Shared mode: wakes the fiber of `w`, claimed by claim_front().
void wake_claimed(waiter& w) noexcept;
// In shared mode, sets the waiter's fiber and index before it is linked (a
// waker of another thread reads them at once); single mode: park() does.
inline void enqueue(wait_queue& q, waiter& w, bool shared, int index = 0) noexcept;
inline void enqueue(wait_queue& q, waiter& w, int index = 0) noexcept { enqueue(q, w, shared_mode(), index); }

// `shared`: the caller's mode (shared_mode(), or its op_guard's).
inline void wake(waiter& w, bool shared) noexcept {
  if (shared) [[unlikely]] {
    wake_claimed(w);
    return;
  }
  fiber_control* const f = w.fiber;
  if (w.queue) w.queue->remove(w);
  if (f->park_count == 1 && f->timer_slot == static_cast<std::size_t>(-1)) [[likely]] {
    // Its only waiter is w, now unlinked, and no timer runs: just make it ready.
    f->park_waiters = nullptr;
    f->park_count = 0;
    set_state(f, run_state::started);
    f->park_reason = reason_woken;
    f->park_result = w.index;
    f->core->make_ready(f);
    return;
  }
  wake_slow(f, w.index);
}
inline void wake(waiter& w) noexcept { wake(w, shared_mode()); }

// The fiber (or, outside any loop, the thread's stand-in) that waits, in shared mode.
fiber_control* waiting_self() noexcept;
inline void enqueue(wait_queue& q, waiter& w, bool shared, int index) noexcept {
  if (shared) [[unlikely]] {
    w.fiber = waiting_self();
    w.index = index;
  }
  q.push_back(w);
}

template <class F, class... Args>
auto bind_task(F&& fn, Args&&... args) {
  return [fn = std::forward<F>(fn), ... args = std::forward<Args>(args)]() mutable -> decltype(auto) {
    return std::invoke(std::move(fn), std::move(args)...);
  };
}

}  // namespace detail

}  // namespace fiber
