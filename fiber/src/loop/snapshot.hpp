// What fiber::dump() shows of each event_loop: event_loop.cpp takes the
// snapshot, dump.cpp writes it out (the loop calls nothing of dump's to be
// listed, and dump reads no loop's insides).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fiber/event_loop.hpp"

namespace fiber::detail {

struct loop_snapshot {
  enum class runner { this_thread, other_thread, none };
  std::uintptr_t loop = 0;  // the event_loop's address
  runner where = runner::none;
  std::size_t alive = 0;    // tasks alive
  // Only for a loop not running on another thread (its tasks belong to that thread):
  std::vector<const fiber_control*> not_started;  // oldest first
  std::vector<const fiber_control*> ready;        // runnext first, then the queue
  std::size_t idle_workers = 0;                   // fibers whose task ended, kept for the next
  std::vector<std::uint64_t> idle_ids;            // the first idle_shown of them
  static constexpr std::size_t idle_shown = 16;
};

// Every event_loop alive, newest first.
std::vector<loop_snapshot> snapshot_loops();

}  // namespace fiber::detail
