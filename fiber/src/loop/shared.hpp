// Shared mode, the library's side (shared.cpp; the header-only side is in
// fiber/event_loop.hpp). See scheduler.hpp, "Threads".
#pragma once

#include "fiber/event_loop.hpp"

#include <vector>

namespace fiber::detail {

// A loop starts or stops running on its thread (running_scope, event_loop.cpp).
void loop_started(loop_core* L) noexcept;
void loop_stopped(loop_core* L) noexcept;
// At every pass of a running loop's scheduler: turns it shared if a flip asks.
bool flip_requested() noexcept;
void loop_pass_slow(loop_core* L) noexcept;
inline void loop_pass(loop_core* L) noexcept {
  if (!L->shared.load(std::memory_order_relaxed) && flip_requested()) [[unlikely]]
    loop_pass_slow(L);
}
// Whether something outside this loop might still wake its fibers: another loop
// runs, or a thread outside any loop is inside an operation.
bool others_may_wake() noexcept;

// From event_loop.cpp: the loops running single now; wakes a loop that may sleep.
std::vector<loop_core*> loops_running_single();
void poke(loop_core* L) noexcept;

// Makes `f` (claimed) ready, from any thread: its loop's queue on its thread,
// the remote queue from another, or the waiting thread's signal.
void make_ready_anywhere(fiber_control* f) noexcept;
// The loop's thread takes the fibers woken from elsewhere (a list through remote_next).
fiber_control* take_remote(loop_core* L) noexcept;
// Unlinks each of the waiters still linked, under its primitive's lock.
void unlink_locked(waiter* waiters, std::size_t count) noexcept;
// A thread outside any loop waits for one of `waiters` (linked by enqueue()):
// the index woken, or park_timeout.
int park_thread(waiter* waiters, std::size_t count, clock::time_point deadline);

}  // namespace fiber::detail

namespace fiber::detail {
// Loops running now, and threads outside any loop inside an operation.
int running_loop_count() noexcept;
int plain_ops_in_flight() noexcept;
}  // namespace fiber::detail
