// The loop's timer heap on its own (fiber/src/loop/timers.hpp): the order timers
// fire in, removal from any slot, and the slots each fiber records.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <random>
#include <set>
#include <utility>

#include "loop/timers.hpp"

namespace {

struct sleeper final : fiber::detail::fiber_control {
  void run_body() override {}
};

using fiber::detail::timer_heap;
using time_point = fiber::clock::time_point;

time_point at(int ms) { return time_point{} + std::chrono::milliseconds(ms); }

// Takes the first fiber out, as the loop does when it fires it.
fiber::detail::fiber_control* pop(timer_heap& h) {
  fiber::detail::fiber_control* f = h.front();
  h.remove(f);
  return f;
}

}  // namespace

TEST_CASE("timer heap: fibers due at once fire in the order they were added, the earliest first", "[timers]") {
  auto s = std::make_unique<sleeper[]>(6);
  timer_heap h;
  const int due[6] = {30, 10, 30, 20, 10, 30};
  for (int i = 0; i < 6; ++i) h.add(&s[i], at(due[i]));
  CHECK(h.size() == 6);
  const int order[6] = {1, 4, 3, 0, 2, 5};
  for (int k : order) CHECK(pop(h) == &s[k]);
  CHECK(h.empty());
  for (int i = 0; i < 6; ++i) CHECK(s[i].timer_slot == timer_heap::npos);
}

TEST_CASE("timer heap: removing a fiber without a timer, or twice, changes nothing", "[timers]") {
  auto s = std::make_unique<sleeper[]>(2);
  timer_heap h;
  h.remove(&s[0]);
  CHECK(h.empty());
  h.add(&s[0], at(5));
  h.add(&s[1], at(1));
  h.remove(&s[1]);
  h.remove(&s[1]);
  CHECK(h.size() == 1);
  CHECK(h.front() == &s[0]);
}

TEST_CASE("timer heap: 10^5 random adds and removes fire in (deadline, order added) order, slots kept right",
          "[timers]") {
  constexpr int n = 2000;
  auto s = std::make_unique<sleeper[]>(n);
  timer_heap h;
  std::set<std::pair<time_point, std::uint64_t>> model;  // (deadline, sequence) of each timer
  std::uint64_t seq = 0;
  std::mt19937 rng(12345);
  for (int step = 0; step < 100000; ++step) {
    sleeper& f = s[rng() % n];
    const unsigned what = rng() % 3;
    if (f.timer_slot == timer_heap::npos && what != 2) {
      const time_point when = at(static_cast<int>(rng() % 50));
      h.add(&f, when);
      model.emplace(when, seq++);
      REQUIRE(f.timer_seq == seq - 1);
    } else if (f.timer_slot != timer_heap::npos) {
      model.erase({f.timer_deadline, f.timer_seq});
      h.remove(&f);
    } else if (!h.empty()) {
      fiber::detail::fiber_control* first = pop(h);
      REQUIRE(std::make_pair(first->timer_deadline, first->timer_seq) == *model.begin());
      model.erase(model.begin());
    }
    REQUIRE(h.size() == model.size());
  }
  while (!h.empty()) {
    fiber::detail::fiber_control* first = pop(h);
    REQUIRE(std::make_pair(first->timer_deadline, first->timer_seq) == *model.begin());
    model.erase(model.begin());
  }
  CHECK(model.empty());
  for (int i = 0; i < n; ++i) REQUIRE(s[i].timer_slot == timer_heap::npos);
}
