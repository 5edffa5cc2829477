// The registry's table (registry.cpp), for the library's readers of it: the
// stack-overflow handler and fiber::dump(). tools/gdb/fiber.py reads the same
// symbol, `fiber_debug_registry`, by name.
#pragma once

#include <atomic>
#include <cstdint>

#include "fiber/context.hpp"

namespace fiber::detail {
inline constexpr std::uint32_t registry_chunk_slots = 4096;
inline constexpr std::uint32_t registry_max_chunks = 4096;  // 16M fibers listed at once

// Whether a thread runs `r` now (the state a record never stores). Reads the
// thread list without its lock: a diagnostic.
bool is_running(const record_base* r) noexcept;

// Writes "fiber: stack overflow in fiber 'name' (stack N bytes)" (or the id when
// it has no name) on stderr with write(2): async-signal-safe (overflow.cpp). The
// guard page's handler and the loop's check of unguarded stacks both report so.
void report_stack_overflow(const record_base* r) noexcept;

// After a burst of fibers has ended: gives back to the system the pages of the
// registry's chunks whose slots are all free, and the C heap's free pages
// (glibc's malloc_trim). A few ms; called once per burst (event_loop.cpp,
// loop_stacks.hpp).
void give_back_free_memory() noexcept;

// A new fiber id (unique in the process, from 1), for a loop task.
std::uint64_t new_fiber_id() noexcept;

// Calls f(record_base*) for every listed fiber. Lock-free and async-signal-safe.
template <class F>
void for_each_fiber(F&& f) noexcept;
}  // namespace fiber::detail

extern "C" {
struct fiber_debug_registry_t {
  std::atomic<fiber::detail::record_base*>* chunks[fiber::detail::registry_max_chunks];
  std::atomic<std::uint32_t> high_water;  // slots [0, high_water) may be in use
};
extern fiber_debug_registry_t fiber_debug_registry;
// Every thread that has switched, for debuggers: its thread_state (the running
// fiber). Linked through next_thread.
extern fiber::detail::thread_state* fiber_debug_threads;
}

template <class F>
void fiber::detail::for_each_fiber(F&& f) noexcept {
  const std::uint32_t n = fiber_debug_registry.high_water.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i) {
    auto* chunk = fiber_debug_registry.chunks[i / registry_chunk_slots];
    if (!chunk) break;
    if (record_base* r = chunk[i % registry_chunk_slots].load(std::memory_order_acquire)) f(r);
  }
}
