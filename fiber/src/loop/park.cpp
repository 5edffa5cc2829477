// Park and wake off their inline fast paths (detail/loop_core.hpp): checks,
// pending cancellations, deadlines, shared mode's claims (loop/loop.hpp).
#include "loop/loop.hpp"

#include <cstring>

namespace fiber {

// ---- detail: park, wake ---------------------------------------------------------------

namespace detail {

void rethrow_outcome(fiber_control* f) {
  if (f->status == task_status::failed || f->status == task_status::cancelled) std::rethrow_exception(f->error);
}

void throw_no_loop(const char* operation) {
  throw error(std::string(operation) + ": no fiber::event_loop is running on this thread");
}
void throw_empty_task(const char* operation) {
  throw error(std::string("fiber::task::") + operation + ": the task handle is empty (moved from, or detached)");
}
void throw_task_wrong_thread(const char* operation) {
  throw error(std::string("fiber::task::") + operation +
              ": called on another thread than the one running the task's event_loop (a task handle belongs to its "
              "loop's thread while the loop runs; post() to it)");
}

void check_waker_slow(const loop_core* core, const char* operation) {
  if (!runs_elsewhere(core)) return;  // its loop's thread, or a loop that runs nowhere
  throw error(std::string(operation) +
              (running_core ? ": a fiber of an event_loop running on another thread waits on it (it belongs to that "
                              "loop's thread)"
                            : ": not called from a fiber of a running event_loop, and a fiber of an event_loop "
                              "running on another thread waits on it (it belongs to that loop's thread)"));
}

void require_fiber(const char* operation) {
  if (!running()) {
    throw error(std::string(operation) +
                ": not called from a fiber of a running event_loop (the caller is not a fiber: waiting here would "
                "block its thread forever)");
  }
}

namespace {
void unlink_all(waiter* waiters, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i)
    if (waiters[i].queue) waiters[i].queue->remove(waiters[i]);
}
}  // namespace

// How a park that did not end by a wake ends: a result, or an exception.
int resume_shared(fiber_control* self);
int park_outcome(fiber_control* self) {
  if (self->claim.load(std::memory_order_acquire) != 0) return resume_shared(self);
  switch (self->park_reason) {
    case reason_woken:
      return self->park_result;
    case reason_timeout:
      return park_timeout;
    case reason_scope:
      throw timed_out{};
    case reason_cancelled:
      throw cancelled{};
    default:
      fatal("fiber: a parked fiber resumed without being woken");
  }
}

// Shared mode: a fiber runs again after its park was claimed (scheduler.hpp,
// "Threads"): it unlinks its other waiters and its timer, then reports how the
// park ended, as the claim word says.
int resume_shared(fiber_control* self) {
  const std::uint32_t c = self->claim.load(std::memory_order_acquire);
  unlink_locked(self->park_waiters, self->park_count);
  if (event_loop::impl* L = event_loop::impl::resumed_on()) L->timers.remove(self);
  self->park_waiters = nullptr;
  self->park_count = 0;
  set_state(self, run_state::started);
  self->claim.store(0, std::memory_order_release);
  self->park_reason = static_cast<int>(c >> 24);
  self->park_result = static_cast<int>(c & 0xffffffu);
  return park_outcome(self);
}

namespace {
// What a parked fiber waits for (fiber::dump(), the deadlock report), and that it is parked.
void begin_park(fiber_control* self, waiter* waiters, std::size_t count, const char* operation, std::uintptr_t object,
                bool by_scope) noexcept {
  self->park_operation = operation;
  self->park_object = object;
  self->park_waiters = waiters;
  self->park_count = count;
  set_state(self, run_state::parked);
  self->park_reason = reason_pending;
  self->park_by_scope = by_scope;
}
}  // namespace

namespace {
// The shared-mode park (scheduler.hpp, "Threads"): the waiters were linked, with
// their fiber and index, under their primitives' locks, so a waker of another
// thread may have claimed us already. Whatever would end the park here (a
// pending cancellation, a deadline passed) must win the claim first; if a waker
// won, it is on its way to our remote queue: switch out and be woken.
int park_shared(event_loop::impl* L, fiber_control* self, waiter* waiters, std::size_t count,
                clock::time_point deadline, const char* operation, std::uintptr_t object) {
  if (!L) return park_thread(waiters, count, deadline);  // a thread outside any loop
  auto give_up = [&](int reason) {
    if (!claim(self, reason, 0)) return false;
    unlink_locked(waiters, count);
    self->claim.store(0, std::memory_order_release);
    return true;
  };
  if (!self) {  // (check_may_wait() keeps the primitives from linking waiters here)
    unlink_locked(waiters, count);
    require_fiber(operation);
    return park_timeout;  // (not reached)
  }
  if (L->tearing_down && give_up(reason_cancelled))
    throw error(std::string(operation) +
                ": called while its event_loop is being destroyed (it unwinds its fibers: nothing can wait now)");
  const bool shielded = self->park_shielded;
  bool by_scope = false;
  if (!shielded && self->scope_deadline <= deadline) {
    deadline = self->scope_deadline;
    by_scope = deadline != no_deadline;
  }
  if (!shielded && self->cancel_pending && give_up(reason_cancelled)) {
    self->cancel_pending = false;
    throw cancelled{};
  }
  if (deadline != no_deadline && (count > 0 || by_scope) && deadline <= clock::now() &&
      give_up(by_scope ? reason_scope : reason_timeout)) {
    if (by_scope) throw timed_out{};
    return park_timeout;
  }
  begin_park(self, waiters, count, operation, object, by_scope);
  if (deadline != no_deadline && self->claim.load(std::memory_order_relaxed) == 0) L->timers.add(self, deadline);
  L->switch_away();
  return resume_shared(self);
}
}  // namespace

// Every park but the common one (a fiber of a running loop, nothing pending, no
// deadline of its own or of a scope): checks, pending cancellation, deadlines.
int park_slow(waiter* waiters, std::size_t count, clock::time_point deadline, const char* operation,
              std::uintptr_t object) {
  event_loop::impl* L = running_loop_impl();
  fiber_control* self = L ? L->current : nullptr;
  if (!operation) operation = "fiber: a blocking operation";
  if (shared_mode()) return park_shared(L, self, waiters, count, deadline, operation, object);
  if (!self) {
    unlink_all(waiters, count);
    require_fiber(operation);
  }
  if (L->tearing_down) {
    unlink_all(waiters, count);
    throw error(std::string(operation) +
                ": called while its event_loop is being destroyed (it unwinds its fibers: nothing can wait now)");
  }
  const bool shielded = self->park_shielded;
  if (!shielded && self->cancel_pending) {
    self->cancel_pending = false;
    unlink_all(waiters, count);
    throw cancelled{};
  }
  bool by_scope = false;
  if (!shielded && self->scope_deadline <= deadline) {
    deadline = self->scope_deadline;
    by_scope = deadline != no_deadline;
  }
  // A deadline already past ends the wait at once; but a plain sleep (nothing to
  // wait for) still goes through the timers, so that sleepers wake in deadline
  // order even when one is late to fall asleep.
  if (deadline != no_deadline && (count > 0 || by_scope) && deadline <= clock::now()) {
    unlink_all(waiters, count);
    if (by_scope) throw timed_out{};
    return park_timeout;
  }
  for (std::size_t i = 0; i < count; ++i) {
    waiters[i].fiber = self;
    waiters[i].index = static_cast<int>(i);
  }
  begin_park(self, waiters, count, operation, object, by_scope);
  if (deadline != no_deadline) L->timers.add(self, deadline);
  L->switch_away();
  return park_outcome(self);
}

void wake_slow(fiber_control* f, int index) noexcept {
  static_cast<event_loop::impl*>(f->core)->end_park(f, reason_woken, index);
}

void transfer_slow(fiber_control* next) { static_cast<event_loop::impl*>(running_core)->transfer_to(next); }

}  // namespace detail

}  // namespace fiber
