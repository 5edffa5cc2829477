// fiber::run on N worker threads (runtime.hpp).
#include "runtime.hpp"

#include "shared.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <thread>

namespace fiber::detail {

void runtime_core::inject(fiber_control* head, fiber_control* tail, std::size_t n) noexcept {
  {
    std::lock_guard lock(inject_mutex);
    (inject_tail ? inject_tail->ready_next : inject_head) = head;
    inject_tail = tail;
    injected.fetch_add(n, std::memory_order_relaxed);
  }
  // Dekker with a worker about to sleep (it sets `sleeping`, then looks at `injected`).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  wake_hungry();
}

fiber_control* runtime_core::take(std::size_t max) noexcept {
  std::lock_guard lock(inject_mutex);
  const std::size_t n = injected.load(std::memory_order_relaxed);
  if (n == 0) return nullptr;
  std::size_t k = (n + 1) / 2;
  if (k > max) k = max;
  fiber_control* head = inject_head;
  fiber_control* last = head;
  for (std::size_t i = 1; i < k; ++i) last = last->ready_next;
  inject_head = last->ready_next;
  if (!inject_head) inject_tail = nullptr;
  last->ready_next = nullptr;
  injected.store(n - k, std::memory_order_relaxed);
  return head;
}

void runtime_core::wake_hungry() noexcept {
  // One worker per call, and not one that was poked already and is on its way
  // (Go's wakep): a burst of spawns then wakes one worker after another, each
  // waking the next when it finds more injected than it takes.
  for (loop_core* w : workers)
    if (worker_hungry(w) && worker_sleeping(w) && worker_claim_poke(w)) {
      poke(w);
      return;
    }
}

void runtime_core::poke_all() noexcept {
  for (loop_core* w : workers) poke(w);
}

struct runtime::state {
  explicit state(unsigned n) : core(n) {}
  runtime_core core;
  std::vector<std::unique_ptr<event_loop>> loops;
  std::vector<std::thread> threads;
};

runtime::runtime(unsigned threads, const event_loop::options& opts) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  s_ = std::make_unique<state>(threads);
  // Guarded stacks are the process's budget of mappings (vm.max_map_count: each
  // guard page splits one); the workers share options::guarded_stacks.
  event_loop::options each = opts;
  each.guarded_stacks = opts.guarded_stacks / threads;
  for (unsigned i = 0; i < threads; ++i) {
    s_->loops.push_back(std::make_unique<event_loop>(each));
    make_worker(*s_->loops.back(), &s_->core, i);
  }
  s_->threads.reserve(threads - 1);
  for (unsigned i = 1; i < threads; ++i)
    s_->threads.emplace_back([this, i] {
      try {
        s_->loops[i]->run();  // (goes idle at once: hungry until the first spawns come)
      } catch (const std::exception& e) {
        std::fprintf(stderr, "fiber::run: worker %u failed: %s\n", i, e.what());
        std::abort();
      }
    });
  // Wait until the workers are ready for work, so that the main task's first
  // spawns already spread over them (donated to the hungry workers).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (s_->core.hungry.load() < static_cast<int>(threads) - 1 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::microseconds(50));
}

runtime::~runtime() {
  stop();
  for (std::thread& t : s_->threads) t.join();
}

event_loop& runtime::main_loop() noexcept { return *s_->loops[0]; }
std::size_t runtime::workers() const noexcept { return s_->loops.size(); }

void runtime::stop() noexcept {
  s_->core.stopping.store(true, std::memory_order_release);
  s_->core.poke_all();
}

void runtime::shutdown() {
  // Every task still alive is cancelled, on its own worker's thread.
  for (std::size_t i = 1; i < s_->loops.size(); ++i) {
    event_loop* L = s_->loops[i].get();
    L->post([L] { L->cancel_all(); });
  }
  s_->loops[0]->cancel_all();
  stop();
  // Worker 0 runs until its fibers have ended (and helps with injected ones);
  // then the others are joined; what was injected late is run here.
  s_->loops[0]->run();
  for (std::thread& t : s_->threads) t.join();
  s_->threads.clear();
}

}  // namespace fiber::detail
