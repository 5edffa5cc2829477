// The ready queue on its own (detail/loop_core.hpp): first in, first out; a fiber
// queued once however often it is made ready; runnext ahead of the queue while
// the direct-switch budget lasts, and nothing (the scheduler's turn) after it;
// the lane's end forgotten when the fiber that ends it leaves the queue.
#include <catch2/catch.hpp>

#include <csignal>
#include <memory>
#include <vector>

#include "death.hpp"
#include "fiber/event_loop.hpp"

namespace {

struct ready_fiber final : fiber::detail::fiber_control {
  void run_body() override {}
};

using fiber::detail::fiber_control;
using fiber::detail::loop_core;

std::vector<fiber_control*> drain(loop_core& q) {
  std::vector<fiber_control*> out;
  while (fiber_control* f = q.pop_ready()) out.push_back(f);
  return out;
}

}  // namespace

TEST_CASE("ready queue: first in, first out, each fiber once however often it is made ready", "[queue]") {
  auto f = std::make_unique<ready_fiber[]>(4);
  loop_core q;
  CHECK(q.pop_ready() == nullptr);
  q.make_ready(&f[2]);
  q.make_ready(&f[0]);
  q.make_ready(&f[2]);  // already queued: stays where it is
  q.make_ready(&f[3]);
  q.make_ready(&f[1]);
  CHECK(f[2].queued);
  CHECK(drain(q) == std::vector<fiber_control*>{&f[2], &f[0], &f[3], &f[1]});
  for (int i = 0; i < 4; ++i) {
    CHECK_FALSE(f[i].queued);
    CHECK(f[i].ready_next == nullptr);
  }
  CHECK(q.ready_head == nullptr);
  CHECK(q.ready_tail == nullptr);
  // Made ready again after it was taken: queued again, at the tail.
  q.make_ready(&f[1]);
  q.make_ready(&f[2]);
  q.make_ready(&f[1]);
  CHECK(drain(q) == std::vector<fiber_control*>{&f[1], &f[2]});
}

TEST_CASE("ready queue: runnext goes first while the direct budget lasts, then the queue's head, then the scheduler",
          "[queue]") {
  auto f = std::make_unique<ready_fiber[]>(3);
  loop_core q;
  q.make_ready(&f[0]);
  q.make_ready(&f[1]);
  q.runnext = &f[2];
  f[2].queued = true;
  q.direct_budget = 2;
  CHECK(q.next_after_park() == &f[2]);
  CHECK(q.runnext == nullptr);
  CHECK_FALSE(f[2].queued);
  CHECK(q.next_after_park() == &f[0]);
  CHECK(q.direct_budget == 0);
  // The budget is spent: the scheduler's turn (nullptr), the queue untouched.
  CHECK(q.next_after_park() == nullptr);
  CHECK(q.ready_head == &f[1]);
  q.direct_budget = 5;
  CHECK(q.next_after_park() == &f[1]);
  CHECK(q.next_after_park() == nullptr);  // nothing ready: the scheduler
  CHECK(q.direct_budget == 4);
}

TEST_CASE("ready queue: the lane's end is forgotten when the fiber that ends it is taken", "[queue]") {
  auto f = std::make_unique<ready_fiber[]>(3);
  loop_core q;
  for (int i = 0; i < 3; ++i) q.make_ready(&f[i]);
  q.lane_tail = &f[1];  // the lane: f[0], f[1]
  CHECK(q.pop_ready() == &f[0]);
  CHECK(q.lane_tail == &f[1]);
  CHECK(q.pop_ready() == &f[1]);
  CHECK(q.lane_tail == nullptr);
  CHECK(q.pop_ready() == &f[2]);
  CHECK(q.pop_ready() == nullptr);
}

TEST_CASE("fiber state: created, started, parked, started again, ended - each change checked", "[queue][state]") {
  using fiber::detail::run_state;
  using fiber::detail::set_state;
  using fiber::detail::state_of;
  ready_fiber f;
  CHECK(state_of(&f) == run_state::created);
  set_state(&f, run_state::started);
  set_state(&f, run_state::parked);
  CHECK(state_of(&f) == run_state::parked);
  set_state(&f, run_state::started);
  set_state(&f, run_state::ended);
  CHECK(state_of(&f) == run_state::ended);
  ready_fiber never_ran;
  set_state(&never_ran, run_state::ended);  // a failed start, a loop torn down
  CHECK(state_of(&never_ran) == run_state::ended);
#if FIBER_CHECKS
  // A change outside the life (a fiber resumed after it ended, a parked one
  // parked again) ends the process with what broke.
  auto d = fiber_test::run_in_child([] {
#ifndef _WIN32
    std::signal(SIGABRT, SIG_DFL);  // die quietly: not through Catch's handler
#endif
    ready_fiber g;
    set_state(&g, run_state::started);
    set_state(&g, run_state::ended);
    set_state(&g, run_state::parked);
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("went from ended to parked"));
#endif
}
