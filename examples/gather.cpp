// asyncio's classic, with fibers: start many tasks that each sleep a while and
// return a value, gather their results under a timeout, and cancel the stragglers.
//
//   async def work(i, delay): await asyncio.sleep(delay); return i * i
//   async with asyncio.timeout(0.15): await asyncio.gather(*tasks)
//
// The delays are pseudo-random but fixed (a seeded LCG), and far from the timeout
// on either side, so the output is the same on every run and machine.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "fiber/event_loop.hpp"

using namespace std::chrono_literals;

namespace {

// Delays: 10..50 ms (done in time) or 300..500 ms (too late for the 150 ms timeout).
std::vector<std::chrono::milliseconds> make_delays(int n) {
  std::uint32_t state = 2024;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return state >> 16;
  };
  std::vector<std::chrono::milliseconds> delays;
  for (int i = 0; i < n; ++i) {
    const std::uint32_t r = next();
    delays.push_back(r % 3 != 0 ? std::chrono::milliseconds(10 + 10 * (r / 3 % 5))
                                : std::chrono::milliseconds(300 + 50 * (r / 3 % 5)));
  }
  return delays;
}

const char* describe(fiber::task_status s) {
  switch (s) {
    case fiber::task_status::pending: return "pending";
    case fiber::task_status::succeeded: return "finished";
    case fiber::task_status::failed: return "failed";
    case fiber::task_status::cancelled: return "cancelled";
  }
  return "?";
}

}  // namespace

int main() {
  constexpr int n = 12;
  constexpr auto timeout = 150ms;
  return fiber::run([&] {
    const auto delays = make_delays(n);
    std::vector<fiber::task<int>> tasks;
    for (int i = 0; i < n; ++i)
      tasks.push_back(fiber::spawn([i, d = delays[i]] {
        fiber::this_fiber::sleep_for(d);
        return i * i;
      }));

    std::printf("gathering %d tasks with a %lld ms timeout\n", n, static_cast<long long>(timeout.count()));
    bool all_in_time = true;
    try {
      fiber::deadline_scope scope(timeout);
      fiber::gather(tasks);  // on timed_out, gather has cancelled the rest and waited for them
    } catch (const fiber::timed_out&) {
      all_in_time = false;
    }
    std::printf("all in time: %s\n", all_in_time ? "yes" : "no");

    int finished = 0, cancelled = 0, sum = 0;
    for (int i = 0; i < n; ++i) {
      const fiber::task_status s = tasks[i].status();
      std::printf("task %2d: sleeps %3lld ms -> %s", i, static_cast<long long>(delays[i].count()), describe(s));
      if (s == fiber::task_status::succeeded) {
        const int v = tasks[i].get();
        sum += v;
        ++finished;
        std::printf(", value %d", v);
      } else if (s == fiber::task_status::cancelled) {
        ++cancelled;
      }
      std::printf("\n");
    }
    std::printf("%d finished (sum of values %d), %d cancelled\n", finished, sum, cancelled);
    return finished + cancelled == n ? 0 : 1;
  });
}
