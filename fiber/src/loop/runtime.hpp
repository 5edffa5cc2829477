// A runtime of N worker threads, each running one event_loop (runtime.cpp;
// fiber::run with run_options::threads > 1). What a worker loop knows of its
// runtime: the inject queue, the hungry workers, the shutdown, the deadlock.
//
// Where tasks run. A fiber that has started stays on its worker (it never
// changes threads). A task that has not started may start on any worker: spawn
// queues it on the spawner's worker (locality); while a worker is *hungry* (it
// has nothing to run), busy workers give up to half of their queued, unstarted
// tasks, the oldest first, to the inject queue at each pass and as each task
// ends, once the inject queue is empty (work donation: the thief asks, the owner
// gives, so the owner's queue needs no atomics). A hungry worker takes a batch from the inject
// queue; failing that, it spins briefly, then sleeps in its reactor until poked.
#pragma once

#include "fiber/event_loop.hpp"

#include <atomic>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

namespace fiber::detail {

struct runtime_core {
  explicit runtime_core(unsigned n) : workers(n, nullptr) {}

  std::vector<loop_core*> workers;
  std::atomic<int> hungry{0};        // workers with nothing to run
  std::atomic<int> spinning{0};      // of them, those spinning before they sleep
  std::atomic<bool> stopping{false};  // the main task ended: workers leave once their fibers have

  // Inject queue: tasks not started yet, linked through ready_next.
  std::mutex inject_mutex;
  fiber_control* inject_head = nullptr;
  fiber_control* inject_tail = nullptr;
  std::atomic<std::size_t> injected{0};

  // Adds the list head..tail (n tasks) and wakes a sleeping hungry worker.
  void inject(fiber_control* head, fiber_control* tail, std::size_t n) noexcept;
  // Takes up to half of the queue (at least one, at most max), or nullptr.
  fiber_control* take(std::size_t max) noexcept;
  // Pokes one hungry worker that sleeps (a spinning one will look by itself).
  void wake_hungry() noexcept;
  void poke_all() noexcept;

  // Deadlock: every worker is idle with nothing that could wake it (no timer,
  // no IO, no keep_alive, nothing posted or woken from outside), nothing is
  // injected, and no loop outside the runtime or thread outside any loop could
  // wake anything. The last worker to go idle sees it, writes the report (every
  // worker's tasks), and pokes the others; all of them leave, worker 0 throws.
  std::mutex idle_mutex;
  unsigned stuck = 0;
  std::atomic<bool> deadlocked{false};
  std::string report;
};

}  // namespace fiber::detail

namespace fiber::detail {
// From event_loop.cpp.
void make_worker(event_loop& loop, runtime_core* rt, unsigned index) noexcept;
bool worker_hungry(loop_core* core) noexcept;
bool core_is_worker(loop_core* core) noexcept;
bool worker_sleeping(loop_core* core) noexcept;
bool worker_claim_poke(loop_core* core) noexcept;  // true if not poked already since it went to sleep
}  // namespace fiber::detail
