// Fiber-aware synchronisation for the fibers of one event_loop: mutex,
// condition_variable, semaphore and wait_group (Go's WaitGroup).
//
// Waiting parks only the calling fiber (detail::park); the thread goes on running
// the loop's other fibers. Every operation that may wait has a timed form, and each
// of them honours cancellation (throws fiber::cancelled) and the deadline of an
// enclosing fiber::deadline_scope (throws fiber::timed_out). An operation that can
// complete at once does so without waiting, and so without delivering either (as
// asyncio's Lock.acquire() does on a free lock); this_fiber::check_cancelled() is
// there for loops that never have to wait. They work between fibers of different
// loops (the workers of a fiber::run runtime) and with threads that run no loop,
// whose waits block the thread (scheduler.hpp, "Threads"); in a function posted to
// a loop (outside its fibers), a wait throws fiber::error instead.
//
// Invariants (each primitive keeps them between any two of its operations):
//   - Waiters queue in FIFO order, and what a waiter waits for is *handed* to it
//     by whoever makes it available: unlock() makes the first waiter the owner,
//     release() takes the count for the waiters it wakes, notify_one() picks the
//     first waiter. A woken waiter therefore never re-checks or competes: nobody
//     can barge in between the wake and the moment the woken fiber runs.
//   - mutex: owner == nullptr implies waiters.empty(). A fiber that finds the
//     mutex owned (by another) queues; lock() is never granted out of turn.
//   - semaphore: count > 0 implies waiters.empty().
//   - wait_group: counter >= 0, and counter == 0 implies waiters.empty().
//   - A waiter is linked in a queue only while its fiber is parked and not yet
//     woken (detail/scheduler.hpp). A fiber whose wait ends by a timeout, a
//     cancellation or a deadline_scope is unlinked by park() before anyone else
//     runs, so it can never be handed anything. Conversely, a fiber that was
//     handed something (woken) and is cancelled before it runs still gets it: its
//     wait returns normally and the cancellation is delivered by its next wait.
//     So a hand-off is never lost, and a cancelled waiter never eats a wake-up
//     meant for another.
//   - condition_variable::wait*() return, or throw, with the lock held again:
//     re-locking ignores cancellation and deadline scopes (a cancellation that
//     arrives meanwhile stays pending for the next wait).
//
// Misuse is reported by throwing fiber::error: unlocking a mutex the caller does
// not own, locking one it already owns, a wait_group counter going negative,
// waiting (or locking) in a function posted to a loop.
//
// Not checked: a task must unlock what it locked before it ends; a primitive must
// outlive its waiters.
#pragma once

#include <chrono>
#include <condition_variable>  // std::cv_status
#include <cstddef>
#include <exception>
#include <mutex>  // std::unique_lock
#include <string>
#include <type_traits>
#include <utility>

#include "fiber/detail/scheduler.hpp"
#include "fiber/error.hpp"
#include "fiber/event_loop.hpp"

namespace fiber {

namespace detail {

// Converts a relative timeout to a deadline on fiber::clock, never earlier.
template <class Rep, class Period>
clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout) {
  const auto now = clock::now();
  const auto d = std::chrono::ceil<clock::duration>(timeout);
  if (d > clock::time_point::max() - now) return no_deadline;
  return now + d;
}

// Converts a deadline of any clock to fiber::clock (never earlier than asked).
template <class Clock, class Duration>
clock::time_point to_loop_clock(std::chrono::time_point<Clock, Duration> t) {
  if constexpr (std::is_same_v<Clock, clock>) {
    return std::chrono::ceil<clock::duration>(t);
  } else {
    return deadline_after(t - Clock::now());
  }
}

// Who waits: the running fiber, or outside any loop the thread's stand-in
// (waiting_self()); throws fiber::error naming `operation` on a loop's thread
// outside its fibers.
inline fiber_control* require_running(const char* operation) {
  if (fiber_control* self = running()) return self;
  check_may_wait(operation);
  return waiting_self();
}

// While alive, the running fiber's parks ignore cancellation (it stays pending) and
// deadline scopes: for the waits that must complete (re-locking after a
// condition_variable wait).
class shield {
 public:
  explicit shield(fiber_control* self) noexcept : self_(self), saved_(self->park_shielded) {
    self_->park_shielded = true;
  }
  ~shield() { self_->park_shielded = saved_; }
  shield(const shield&) = delete;
  shield& operator=(const shield&) = delete;

 private:
  fiber_control* self_;
  bool saved_;
};

}  // namespace detail

/// A mutex for fibers: lock() parks the fiber, not the thread. Not recursive.
/// Fair: unlock() hands the mutex to the first waiter (FIFO), so a fiber that
/// calls lock() later cannot take it first. Meets Lockable and TimedLockable, so
/// std::lock_guard, std::unique_lock and std::scoped_lock work with it.
class mutex {
 public:
  mutex() = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  /// Waits until the fiber owns the mutex. Throws fiber::cancelled or
  /// fiber::timed_out (deadline_scope) if the wait ends that way, without owning it.
  void lock() { (void)lock_until("fiber::mutex::lock", detail::no_deadline); }

  /// Takes the mutex if it is free now.
  bool try_lock() {
    detail::fiber_control* self = detail::require_running("fiber::mutex::try_lock");
    detail::op_guard guard(lock_);
    detail::fiber_control* const owner = owner_.load(std::memory_order_relaxed);
    if (owner == self) throw error("fiber::mutex::try_lock: the calling fiber already owns the mutex");
    if (owner) return false;
    owner_.store(self, std::memory_order_relaxed);
    return true;
  }

  /// lock(), waiting at most until `deadline`: false if it passed first.
  template <class Clock, class Duration>
  bool try_lock_until(std::chrono::time_point<Clock, Duration> deadline) {
    return lock_until("fiber::mutex::try_lock_until", detail::to_loop_clock(deadline));
  }
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return lock_until("fiber::mutex::try_lock_for", detail::deadline_after(timeout));
  }

  /// Releases the mutex, handing it to the first waiter if there is one. Throws
  /// fiber::error if the caller does not own it.
  void unlock() {
    detail::fiber_control* self = caller();
    detail::op_guard guard(lock_);
    detail::fiber_control* const owner = owner_.load(std::memory_order_relaxed);
    if (!owner || owner != self)
      throw error(owner ? "fiber::mutex::unlock: the mutex is owned by another fiber"
                        : "fiber::mutex::unlock: the mutex is not locked");
    if (detail::waiter* w = detail::claim_front(waiters_)) {
      owner_.store(w->fiber, std::memory_order_relaxed);
      waiters_.remove(*w);
      detail::wake(*w);
    } else {
      owner_.store(nullptr, std::memory_order_relaxed);
    }
  }

  /// Whether the calling fiber (or thread, outside any loop) owns the mutex.
  bool owned_by_caller() const noexcept {
    detail::fiber_control* const owner = owner_.load(std::memory_order_relaxed);
    return owner && owner == caller();
  }
  /// Whether any fiber owns it.
  bool locked() const noexcept { return owner_.load(std::memory_order_relaxed) != nullptr; }

 private:
  friend class condition_variable;

  // The fiber that calls, or (outside any loop) the thread's stand-in.
  static detail::fiber_control* caller() noexcept {
    if (detail::fiber_control* self = detail::running()) return self;
    return detail::running_core ? nullptr : detail::waiting_self();
  }

  bool lock_until(const char* operation, clock::time_point deadline) {
    detail::fiber_control* self = detail::require_running(operation);
    if (owner_.load(std::memory_order_relaxed) == self)
      throw error(std::string(operation) + ": the calling fiber already owns the mutex (deadlock)");
    detail::coop_tick();  // (may yield: the owner is read again below)
    detail::op_guard guard(lock_);
    if (!owner_.load(std::memory_order_relaxed)) {
      owner_.store(self, std::memory_order_relaxed);
      return true;
    }
    detail::park_local<detail::waiter> parked;  // (off the stack of a copied-stack fiber)
    detail::waiter& w = *parked;
    detail::enqueue(waiters_, w);
    guard.unlock();
    // Woken only by unlock(), which made us the owner first.
    return detail::park(&w, 1, deadline, operation, detail::wait_on(this)) != detail::park_timeout;
  }

  // Atomic only so that locked() may be read from any thread; changed under lock_.
  std::atomic<detail::fiber_control*> owner_{nullptr};
  detail::spin_lock lock_;
  detail::wait_queue waiters_{&lock_};
};

/// A condition variable for fibers, used with std::unique_lock<fiber::mutex>.
/// notify_one() wakes the longest waiting fiber. No spurious wake-ups (but use a
/// predicate anyway: the state may change before the woken fiber re-locks).
class condition_variable {
 public:
  condition_variable() = default;
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;

  void notify_one() noexcept {
    detail::op_guard guard(lock_);
    if (detail::waiter* w = detail::claim_front(waiters_)) detail::wake(*w);
  }
  void notify_all() noexcept {
    detail::op_guard guard(lock_);
    while (detail::waiter* w = detail::claim_front(waiters_)) detail::wake(*w);
  }

  /// Unlocks `lock`, waits for a notification, locks again. On fiber::cancelled
  /// or fiber::timed_out the lock is held again too.
  void wait(std::unique_lock<mutex>& lock) { (void)wait_impl("fiber::condition_variable::wait", lock, detail::no_deadline); }
  template <class Predicate>
  void wait(std::unique_lock<mutex>& lock, Predicate pred) {
    while (!pred()) wait(lock);
  }

  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<mutex>& lock, std::chrono::time_point<Clock, Duration> deadline) {
    return wait_impl("fiber::condition_variable::wait_until", lock, detail::to_loop_clock(deadline));
  }
  template <class Clock, class Duration, class Predicate>
  bool wait_until(std::unique_lock<mutex>& lock, std::chrono::time_point<Clock, Duration> deadline, Predicate pred) {
    const clock::time_point d = detail::to_loop_clock(deadline);
    while (!pred())
      if (wait_impl("fiber::condition_variable::wait_until", lock, d) == std::cv_status::timeout) return pred();
    return true;
  }
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lock, std::chrono::duration<Rep, Period> timeout) {
    return wait_impl("fiber::condition_variable::wait_for", lock, detail::deadline_after(timeout));
  }
  template <class Rep, class Period, class Predicate>
  bool wait_for(std::unique_lock<mutex>& lock, std::chrono::duration<Rep, Period> timeout, Predicate pred) {
    const clock::time_point d = detail::deadline_after(timeout);
    while (!pred())
      if (wait_impl("fiber::condition_variable::wait_for", lock, d) == std::cv_status::timeout) return pred();
    return true;
  }

 private:
  std::cv_status wait_impl(const char* operation, std::unique_lock<mutex>& lock, clock::time_point deadline) {
    detail::fiber_control* self = detail::require_running(operation);
    if (!lock.owns_lock() || !lock.mutex()->owned_by_caller())
      throw error(std::string(operation) + ": the lock does not hold the mutex for the calling fiber");
    mutex& m = *lock.mutex();
    detail::park_local<detail::waiter> parked;  // (off the stack of a copied-stack fiber)
    detail::waiter& w = *parked;
    {
      detail::op_guard guard(lock_);
      detail::enqueue(waiters_, w);
    }
    m.unlock();  // may hand the mutex to another fiber; a notify finds us queued already
    int r = 0;
    std::exception_ptr failure;
    try {
      r = detail::park(&w, 1, deadline, operation, detail::wait_on(this));
    } catch (const detail::forced_unwind&) {
      // The loop is being destroyed: nothing can wait any more. Leave the
      // unique_lock without the mutex, so that its destructor does not unlock.
      (void)lock.release();
      throw;
    } catch (...) {
      // Re-lock outside the handler: parking inside it would let other fibers'
      // catches change what `throw;` rethrows (the thread's caught-exception
      // stack is shared by its fibers).
      failure = std::current_exception();
    }
    relock(self, m);
    if (failure) std::rethrow_exception(failure);
    return r == detail::park_timeout ? std::cv_status::timeout : std::cv_status::no_timeout;
  }

  static void relock(detail::fiber_control* self, mutex& m) {
    detail::shield s(self);
    m.lock();
  }

  detail::spin_lock lock_;
  detail::wait_queue waiters_{&lock_};
};

/// A counting semaphore for fibers. release() hands the count to waiting fibers in
/// FIFO order, so a later acquire() cannot take it before them.
class semaphore {
 public:
  explicit semaphore(std::ptrdiff_t initial = 0) : count_(initial) {
    if (initial < 0) throw error("fiber::semaphore: the initial count is negative");
  }
  semaphore(const semaphore&) = delete;
  semaphore& operator=(const semaphore&) = delete;

  /// Waits until a unit is available and takes it.
  void acquire() { (void)acquire_until("fiber::semaphore::acquire", detail::no_deadline); }
  /// Takes a unit if one is available now (callable outside fibers too).
  bool try_acquire() noexcept {
    detail::op_guard guard(lock_);
    const std::ptrdiff_t c = count_.load(std::memory_order_relaxed);
    if (c <= 0) return false;
    count_.store(c - 1, std::memory_order_relaxed);
    return true;
  }
  template <class Clock, class Duration>
  bool try_acquire_until(std::chrono::time_point<Clock, Duration> deadline) {
    return acquire_until("fiber::semaphore::try_acquire_until", detail::to_loop_clock(deadline));
  }
  template <class Rep, class Period>
  bool try_acquire_for(std::chrono::duration<Rep, Period> timeout) {
    return acquire_until("fiber::semaphore::try_acquire_for", detail::deadline_after(timeout));
  }

  /// Adds `n` units, waking up to `n` waiters (each takes one). Never blocks:
  /// callable outside fibers too (on the loop's thread, e.g. from event_loop::post).
  void release(std::ptrdiff_t n = 1) {
    if (n < 0) throw error("fiber::semaphore::release: negative count");
    detail::op_guard guard(lock_);
    while (n > 0) {
      detail::waiter* w = detail::claim_front(waiters_);
      if (!w) break;
      --n;
      waiters_.remove(*w);
      detail::wake(*w);
    }
    count_.store(count_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  /// Units available now.
  std::ptrdiff_t available() const noexcept { return count_.load(std::memory_order_relaxed); }

 private:
  bool acquire_until(const char* operation, clock::time_point deadline) {
    detail::require_running(operation);
    detail::coop_tick();
    detail::op_guard guard(lock_);
    const std::ptrdiff_t c = count_.load(std::memory_order_relaxed);
    if (c > 0) {
      count_.store(c - 1, std::memory_order_relaxed);
      return true;
    }
    detail::park_local<detail::waiter> parked;  // (off the stack of a copied-stack fiber)
    detail::waiter& w = *parked;
    detail::enqueue(waiters_, w);
    guard.unlock();
    // Woken only by release(), which kept the unit for us.
    return detail::park(&w, 1, deadline, operation, detail::wait_on(this)) != detail::park_timeout;
  }

  // Atomic only so that available() may be read from any thread; changed under lock_.
  std::atomic<std::ptrdiff_t> count_;
  detail::spin_lock lock_;
  detail::wait_queue waiters_{&lock_};
};

/// Go's sync.WaitGroup: add(n) before starting work, done() when a piece ends,
/// wait() until the counter is back to zero.
class wait_group {
 public:
  explicit wait_group(std::ptrdiff_t initial = 0) : counter_(initial) {
    if (initial < 0) throw error("fiber::wait_group: the initial counter is negative");
  }
  wait_group(const wait_group&) = delete;
  wait_group& operator=(const wait_group&) = delete;

  /// Adds `n` (which may be negative) to the counter; at zero, every waiter is
  /// woken. Throws fiber::error, leaving the counter as it was, if it would go
  /// below zero. Never blocks.
  void add(std::ptrdiff_t n = 1) {
    detail::op_guard guard(lock_);
    const std::ptrdiff_t c = counter_.load(std::memory_order_relaxed);
    if (n < 0 && c + n < 0)
      throw error("fiber::wait_group: the counter would become negative (" + std::to_string(c + n) +
                  "): more done() than add()");
    counter_.store(c + n, std::memory_order_relaxed);
    if (c + n == 0)
      while (detail::waiter* w = detail::claim_front(waiters_)) detail::wake(*w);
  }
  void done() { add(-1); }

  /// Waits until the counter is zero.
  void wait() { (void)wait_until_impl("fiber::wait_group::wait", detail::no_deadline); }
  template <class Clock, class Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) {
    return wait_until_impl("fiber::wait_group::wait_until", detail::to_loop_clock(deadline));
  }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_until_impl("fiber::wait_group::wait_for", detail::deadline_after(timeout));
  }

  std::ptrdiff_t count() const noexcept { return counter_.load(std::memory_order_relaxed); }

 private:
  bool wait_until_impl(const char* operation, clock::time_point deadline) {
    detail::require_running(operation);
    detail::op_guard guard(lock_);
    if (counter_.load(std::memory_order_relaxed) == 0) return true;
    detail::park_local<detail::waiter> parked;  // (off the stack of a copied-stack fiber)
    detail::waiter& w = *parked;
    detail::enqueue(waiters_, w);
    guard.unlock();
    return detail::park(&w, 1, deadline, operation, detail::wait_on(this)) != detail::park_timeout;
  }

  // Atomic only so that count() may be read from any thread; changed under lock_.
  std::atomic<std::ptrdiff_t> counter_;
  detail::spin_lock lock_;
  detail::wait_queue waiters_{&lock_};
};

}  // namespace fiber
