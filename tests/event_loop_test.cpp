// The event loop: tasks, sleeping, cancellation, deadlines, gather, post, deadlock
// detection and the stack policy.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "death.hpp"
#include "fiber/channel.hpp"
#include "fiber/debug.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/sync.hpp"

using namespace std::chrono_literals;
using clk = fiber::clock;
using fiber::task_status;

namespace {

// Sets a flag when destroyed: shows that a stack unwound.
struct sets_on_destroy {
  bool* flag;
  ~sets_on_destroy() { *flag = true; }
};

// Deterministic pseudo-random numbers (xorshift).
struct rng {
  std::uint32_t s;
  std::uint32_t next() {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    return s;
  }
};

// (ASan's frames carry redzones: the loop's own paths need more than 16 KiB there.)
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t small_stack = 48 * 1024;
#else
constexpr std::size_t small_stack = 16 * 1024;
#endif

std::string dump_text() {
  std::ostringstream out;
  fiber::dump(out);
  return out.str();
}

// The line of fiber::dump()'s output that starts with `prefix` ("" if none).
std::string line_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return line;
  return {};
}

// An address as fiber::dump() writes it.
std::string hex_address(const void* p) {
  std::ostringstream out;
  out << "0x" << std::hex << reinterpret_cast<std::uintptr_t>(p);
  return out.str();
}

}  // namespace

TEST_CASE("loop: fiber::run returns the main task's value and rethrows its exception", "[loop]") {
  REQUIRE(fiber::run([] { return 42; }) == 42);
  REQUIRE(fiber::run([](int a, std::string b) { return b + std::to_string(a); }, 7, std::string("x")) == "x7");
  REQUIRE_THROWS_WITH(fiber::run([]() -> int { throw std::runtime_error("boom"); }), "boom");
  fiber::run([] {});  // void
  REQUIRE(fiber::event_loop::current() == nullptr);
}

TEST_CASE("loop: spawn, get, join, detach - get twice and moved-from handles throw", "[loop]") {
  fiber::run([] {
    REQUIRE(fiber::this_fiber::in_fiber());
    auto a = fiber::spawn([] {
      fiber::this_fiber::sleep_for(1ms);
      return 1;
    });
    auto b = fiber::spawn([](int x) { return x * 2; }, 21);
    REQUIRE(a.status() == task_status::pending);
    REQUIRE(a.get() + b.get() == 43);
    REQUIRE(a.status() == task_status::succeeded);
    REQUIRE(a.done());
    REQUIRE_THROWS_AS(a.get(), fiber::error);  // the value was taken

    bool ran = false;
    auto c = fiber::spawn([&] { ran = true; });
    c.join();
    REQUIRE(ran);
    c.join();  // joining again is fine

    auto failing = fiber::spawn([]() -> int { throw std::logic_error("bad"); });
    REQUIRE_THROWS_WITH(failing.join(), "bad");
    REQUIRE(failing.status() == task_status::failed);
    REQUIRE_THROWS_WITH(failing.get(), "bad");

    auto d = fiber::spawn([] { return 5; });
    auto e = std::move(d);
    REQUIRE_FALSE(d);
    REQUIRE_THROWS_AS(d.get(), fiber::error);
    REQUIRE_THROWS_AS(d.join(), fiber::error);
    REQUIRE_THROWS_AS(d.cancel(), fiber::error);
    REQUIRE_THROWS_AS(d.status(), fiber::error);
    REQUIRE_THROWS_AS(d.detach(), fiber::error);
    REQUIRE_THROWS_AS(d.join_for(1ms), fiber::error);
    REQUIRE(e.get() == 5);

    bool detached_ran = false;
    auto f = fiber::spawn([&] {
      fiber::this_fiber::sleep_for(1ms);
      detached_ran = true;
    });
    f.detach();
    REQUIRE_FALSE(f);
    REQUIRE_THROWS_AS(f.get(), fiber::error);
    // (Its start may take a while: under TSan a new fiber's state costs 10-15 ms.)
    for (int i = 0; i < 5000 && !detached_ran; ++i) fiber::this_fiber::sleep_for(1ms);
    REQUIRE(detached_ran);
  });
}

TEST_CASE("loop: a detached task's exception is reported, not fatal", "[loop]") {
  fiber::event_loop loop;
  loop.spawn([] { throw std::runtime_error("nobody listens"); }).detach();
  loop.spawn([] {
    fiber::this_fiber::sleep_for(1ms);
    throw 17;  // not a std::exception
  });  // the handle is dropped: detached too
  loop.run();
  REQUIRE(loop.alive() == 0);
}

TEST_CASE("loop: yield interleaves fibers round-robin", "[loop]") {
  std::string trace;
  fiber::run([&] {
    std::vector<fiber::task<void>> ts;
    for (char c : std::string("abc"))
      ts.push_back(fiber::spawn([&trace, c] {
        for (int i = 0; i < 4; ++i) {
          trace += c;
          fiber::this_fiber::yield();
        }
      }));
    for (auto& t : ts) t.join();
  });
  REQUIRE(trace == "abcabcabcabc");
}

TEST_CASE("loop: a fiber that only yields does not starve timers", "[loop]") {
  fiber::run([] {
    bool flag = false;
    auto sleeper = fiber::spawn([&] {
      fiber::this_fiber::sleep_for(2ms);
      flag = true;
    });
    const auto give_up = clk::now() + 5s;
    while (!flag && clk::now() < give_up) fiber::this_fiber::yield();
    REQUIRE(flag);
    sleeper.join();
  });
}

TEST_CASE("loop: sleep_for and sleep_until never wake early", "[loop]") {
  fiber::run([] {
    std::vector<fiber::task<void>> ts;
    for (int i = 0; i < 20; ++i) {
      ts.push_back(fiber::spawn([i] {
        const auto d = std::chrono::microseconds(i * 250 + 1);
        const auto t0 = clk::now();
        fiber::this_fiber::sleep_for(d);
        REQUIRE(clk::now() - t0 >= d);
        const auto until = clk::now() + d;
        fiber::this_fiber::sleep_until(until);
        REQUIRE(clk::now() >= until);
      }));
    }
    for (auto& t : ts) t.join();
    // A deadline in the past returns at once.
    fiber::this_fiber::sleep_until(clk::now() - 1s);
    fiber::this_fiber::sleep_for(0ms);
  });
}

TEST_CASE("loop: 10^5 sleeping fibers wake in deadline order, none early", "[loop]") {
  constexpr int n = 100000;
  struct woke {
    clk::time_point deadline, at;
  };
  std::vector<woke> order;
  order.reserve(n);
  fiber::event_loop::options opts;
  opts.stack_size = small_stack;
  opts.guarded_stacks = 1024;  // fewer mappings: quicker to make and unmap
  fiber::event_loop loop(opts);
  rng r{12345};
  for (int i = 0; i < n; ++i) {
    const auto offset = std::chrono::microseconds(1000 + r.next() % 100000);
    loop.spawn([&order, offset] {
      const auto deadline = clk::now() + offset;
      fiber::this_fiber::sleep_until(deadline);
      order.push_back({deadline, clk::now()});
    }).detach();
  }
  loop.run();
  REQUIRE(order.size() == n);
  std::size_t early = 0, out_of_order = 0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    if (order[i].at < order[i].deadline) ++early;
    if (i > 0 && order[i].deadline < order[i - 1].deadline) ++out_of_order;
  }
  REQUIRE(early == 0);
  REQUIRE(out_of_order == 0);
}

TEST_CASE("loop: cancelling a task interrupts its current blocking operation", "[loop]") {
  // Each blocking operation, cancelled while the task waits in it.
  const char* const ops[] = {"sleep", "join", "mutex", "condition_variable", "semaphore", "wait_group", "join_for"};
  for (const char* op : ops) {
    INFO("operation: " << op);
    fiber::run([op] {
      fiber::mutex m;
      fiber::condition_variable cv;
      fiber::semaphore sem(0);
      fiber::wait_group wg(1);
      auto forever = fiber::spawn([] { fiber::this_fiber::sleep_for(1h); });
      std::unique_lock<fiber::mutex> held(m);  // the main fiber holds the mutex
      bool unwound = false, after = false, entered = false;
      const std::string what = op;
      auto t = fiber::spawn([&] {
        sets_on_destroy guard{&unwound};
        entered = true;
        if (what == "sleep") {
          fiber::this_fiber::sleep_for(1h);
        } else if (what == "join") {
          forever.join();
        } else if (what == "join_for") {
          (void)forever.join_for(1h);
        } else if (what == "mutex") {
          std::lock_guard<fiber::mutex> lk(m);
        } else if (what == "condition_variable") {
          fiber::mutex m2;
          std::unique_lock<fiber::mutex> lk(m2);
          cv.wait(lk);
        } else if (what == "semaphore") {
          sem.acquire();
        } else if (what == "wait_group") {
          wg.wait();
        }
        after = true;
      });
      fiber::this_fiber::sleep_for(1ms);
      REQUIRE(entered);
      REQUIRE(t.status() == task_status::pending);
      t.cancel();
      REQUIRE_THROWS_AS(t.join(), fiber::cancelled);
      REQUIRE_THROWS_AS(t.get(), fiber::cancelled);
      REQUIRE(t.status() == task_status::cancelled);
      REQUIRE(unwound);
      REQUIRE_FALSE(after);
      t.cancel();  // no effect on a task that has ended
      // The primitives are still usable.
      held.unlock();
      REQUIRE(m.try_lock());
      m.unlock();
      sem.release();
      REQUIRE(sem.try_acquire());
      wg.done();
      wg.wait();
      forever.cancel();
    });
  }
}

TEST_CASE("loop: a task cancelled before it ever ran never runs its body", "[loop]") {
  fiber::run([] {
    bool ran = false;
    auto t = fiber::spawn([&] { ran = true; });
    t.cancel();
    REQUIRE_THROWS_AS(t.get(), fiber::cancelled);
    REQUIRE(t.status() == task_status::cancelled);
    REQUIRE_FALSE(ran);
  });
}

TEST_CASE("loop: a cancellation is delivered once", "[loop]") {
  fiber::run([] {
    int caught = 0;
    bool finished = false;
    auto t = fiber::spawn([&] {
      try {
        fiber::this_fiber::sleep_for(1h);
      } catch (const fiber::cancelled&) {
        ++caught;
      }
      fiber::this_fiber::sleep_for(1ms);  // proceeds: the cancellation was consumed
      finished = true;
      return 3;
    });
    fiber::this_fiber::yield();
    t.cancel();
    REQUIRE(t.get() == 3);
    REQUIRE(caught == 1);
    REQUIRE(finished);

    // A cancellation asked while the task runs is delivered by its next wait.
    auto u = fiber::spawn([&] {
      fiber::this_fiber::check_cancelled();  // nothing pending yet
      fiber::this_fiber::yield();            // main cancels us here
      REQUIRE_THROWS_AS(fiber::this_fiber::check_cancelled(), fiber::cancelled);
      fiber::this_fiber::check_cancelled();  // once
      fiber::this_fiber::sleep_for(1ms);
    });
    fiber::this_fiber::yield();
    u.cancel();
    u.join();
  });
}

TEST_CASE("loop: deadline_scope: nested scopes, the earliest wins, timed_out is thrown", "[loop]") {
  fiber::run([] {
    REQUIRE(fiber::this_fiber::deadline() == clk::time_point::max());
    auto t0 = clk::now();
    {
      fiber::deadline_scope outer(5ms);
      const auto outer_deadline = fiber::this_fiber::deadline();
      {
        fiber::deadline_scope inner(1h);  // later: the outer one still rules
        REQUIRE(fiber::this_fiber::deadline() == outer_deadline);
        REQUIRE_THROWS_AS(fiber::this_fiber::sleep_for(1h), fiber::timed_out);
      }
      REQUIRE(clk::now() >= outer_deadline);
      REQUIRE(fiber::this_fiber::deadline() == outer_deadline);
    }
    REQUIRE(fiber::this_fiber::deadline() == clk::time_point::max());

    t0 = clk::now();
    {
      fiber::deadline_scope outer(1h);
      fiber::deadline_scope inner(3ms);  // earlier: wins
      REQUIRE_THROWS_AS(fiber::this_fiber::sleep_for(1h), fiber::timed_out);
      REQUIRE(clk::now() - t0 >= 3ms);
      REQUIRE(clk::now() - t0 < 30min);
    }
    // A timed operation whose own timeout comes first just times out.
    {
      fiber::deadline_scope scope(1h);
      auto slow = fiber::spawn([] { fiber::this_fiber::sleep_for(1h); });
      REQUIRE_FALSE(slow.join_for(2ms));
      slow.cancel();
      REQUIRE_THROWS_AS(slow.join(), fiber::cancelled);
    }
    // A scope that has expired already fails the next wait at once.
    fiber::deadline_scope past(clk::now() - 1ms);
    REQUIRE_THROWS_AS(fiber::this_fiber::sleep_for(1ms), fiber::timed_out);
  });
}

TEST_CASE("loop: join_for times out, and succeeds when the task ends in time", "[loop]") {
  fiber::run([] {
    auto slow = fiber::spawn([] {
      fiber::this_fiber::sleep_for(20ms);
      return 1;
    });
    const auto t0 = clk::now();
    REQUIRE_FALSE(slow.join_for(2ms));
    REQUIRE(clk::now() - t0 >= 2ms);
    REQUIRE(slow.status() == task_status::pending);
    REQUIRE(slow.join_for(10s));
    REQUIRE(slow.get() == 1);
    REQUIRE(slow.join_until(clk::now()));  // ended: true at once
  });
}

TEST_CASE("loop: gather returns the values in order", "[loop]") {
  fiber::run([] {
    std::vector<fiber::task<int>> ts;
    for (int i = 0; i < 10; ++i)
      ts.push_back(fiber::spawn([i] {
        fiber::this_fiber::sleep_for(std::chrono::microseconds((10 - i) * 200));
        return i * i;
      }));
    auto values = fiber::gather(ts);
    REQUIRE(values == std::vector<int>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81});

    auto a = fiber::spawn([] { return std::string("a"); });
    auto b = fiber::spawn([] { return 2; });
    auto c = fiber::spawn([] {});
    auto [x, y, z] = fiber::gather(a, b, c);
    REQUIRE(x == "a");
    REQUIRE(y == 2);
    (void)z;
  });
}

TEST_CASE("loop: gather: the first failure cancels the rest and propagates", "[loop]") {
  fiber::run([] {
    int cancelled = 0;
    std::vector<fiber::task<int>> ts;
    for (int i = 0; i < 5; ++i)
      ts.push_back(fiber::spawn([i, &cancelled]() -> int {
        try {
          fiber::this_fiber::sleep_for(i == 2 ? 1ms : 1h);
        } catch (const fiber::cancelled&) {
          ++cancelled;
          throw;
        }
        throw std::runtime_error("task 2 failed");
      }));
    REQUIRE_THROWS_WITH(fiber::gather(ts), "task 2 failed");
    REQUIRE(cancelled == 4);
    for (int i = 0; i < 5; ++i) REQUIRE(ts[i].status() == (i == 2 ? task_status::failed : task_status::cancelled));
  });
}

TEST_CASE("loop: gather reports the failure that came first in time, not in order", "[loop]") {
  fiber::run([] {
    // Both fail before the gathering fiber runs again: t1 first.
    auto t0 = fiber::spawn([]() -> int {
      fiber::this_fiber::yield();
      throw std::runtime_error("second");
    });
    auto t1 = fiber::spawn([]() -> int { throw std::runtime_error("first"); });
    std::vector<fiber::task<int>> ts;
    ts.push_back(std::move(t0));
    ts.push_back(std::move(t1));
    REQUIRE_THROWS_WITH(fiber::gather(ts), "first");
  });
}

TEST_CASE("loop: gather under a deadline_scope cancels the stragglers and throws timed_out", "[loop]") {
  fiber::run([] {
    std::vector<fiber::task<int>> ts;
    for (int i = 0; i < 6; ++i)
      ts.push_back(fiber::spawn([i] {
        fiber::this_fiber::sleep_for(i < 3 ? std::chrono::microseconds(100 * (i + 1)) : std::chrono::microseconds(3600000000LL));
        return i;
      }));
    const auto t0 = clk::now();
    {
      fiber::deadline_scope scope(20ms);
      REQUIRE_THROWS_AS(fiber::gather(ts), fiber::timed_out);
    }
    REQUIRE(clk::now() - t0 >= 20ms);
    for (int i = 0; i < 6; ++i) {
      INFO("task " << i);
      REQUIRE(ts[i].status() == (i < 3 ? task_status::succeeded : task_status::cancelled));
    }
    REQUIRE(ts[1].get() == 1);
  });
}

TEST_CASE("loop: gather of a cancelled gatherer cancels its tasks", "[loop]") {
  fiber::run([] {
    std::vector<fiber::task<int>> inner;
    auto gatherer = fiber::spawn([&] {
      for (int i = 0; i < 3; ++i)
        inner.push_back(fiber::spawn([] {
          fiber::this_fiber::sleep_for(1h);
          return 0;
        }));
      return fiber::gather(inner);
    });
    fiber::this_fiber::sleep_for(1ms);
    gatherer.cancel();
    REQUIRE_THROWS_AS(gatherer.get(), fiber::cancelled);
    for (auto& t : inner) REQUIRE(t.status() == task_status::cancelled);
  });
}

TEST_CASE("loop: wait_any_until returns the first to end, or nullopt at the deadline", "[loop]") {
  fiber::run([] {
    std::vector<fiber::task<int>> ts;
    ts.push_back(fiber::spawn([] {
      fiber::this_fiber::sleep_for(30ms);
      return 0;
    }));
    ts.push_back(fiber::spawn([] {
      fiber::this_fiber::sleep_for(2ms);
      return 1;
    }));
    const auto t0 = clk::now();
    REQUIRE_FALSE(fiber::wait_any_until(ts, clk::now() + 1ms).has_value());
    REQUIRE(clk::now() - t0 >= 1ms);
    auto i = fiber::wait_any_until(ts, clk::now() + 10s);
    REQUIRE(i == std::optional<std::size_t>(1));
    REQUIRE(ts[1].get() == 1);
    REQUIRE(ts[0].status() == task_status::pending);  // nothing cancelled
    REQUIRE(fiber::wait_any(ts) == 1);                // already ended: at once
    ts.erase(ts.begin() + 1);
    REQUIRE(fiber::wait_any(ts) == 0);
    REQUIRE(ts[0].get() == 0);
  });
}

TEST_CASE("loop: post from another thread wakes a sleeping loop and runs on the loop's thread", "[loop]") {
  fiber::semaphore sem(0);
  fiber::event_loop loop;
  const auto loop_thread = std::this_thread::get_id();
  std::thread::id ran_on;
  int got = 0;
  auto alive = std::make_unique<fiber::event_loop::keep_alive>(loop);
  auto t = loop.spawn([&] {
    sem.acquire();  // nothing in the loop can wake this: only the post
    got = 1;
    alive.reset();  // let run() end
  });
  const auto t0 = clk::now();  // before the thread starts: it posts 20 ms after
  std::thread other([&] {
    std::this_thread::sleep_for(20ms);  // the loop is asleep in poll by then
    loop.post([&] {
      ran_on = std::this_thread::get_id();
      REQUIRE_FALSE(fiber::this_fiber::in_fiber());
      sem.release();
    });
  });
  loop.run();
  other.join();
  REQUIRE(got == 1);
  REQUIRE(ran_on == loop_thread);
  REQUIRE(clk::now() - t0 >= 20ms);
  t.get();
}

TEST_CASE("loop: fibers parked with nothing to wake them: run() reports a deadlock", "[loop]") {
  bool unwound = false;
  {
    fiber::semaphore sem(0);  // outlive the loop: its destructor unwinds the fibers
    fiber::mutex m;
    fiber::event_loop loop;
    loop.spawn([&] {
      std::lock_guard<fiber::mutex> lk(m);  // held while parked: released by the unwinding
      sets_on_destroy guard{&unwound};
      sem.acquire();
    }).detach();
    loop.spawn([&] {
      fiber::this_fiber::yield();
      std::lock_guard<fiber::mutex> lk(m);
    }).detach();
    REQUIRE_THROWS_WITH(loop.run(), Catch::Contains("deadlock") && Catch::Contains("2 fiber"));
    REQUIRE(loop.alive() == 2);
  }  // the loop unwinds the parked fibers
  REQUIRE(unwound);

  // fiber::run too.
  REQUIRE_THROWS_AS(fiber::run([] {
                      fiber::wait_group wg(1);
                      wg.wait();
                    }),
                    fiber::error);
}

TEST_CASE("loop: run() from inside a fiber throws fiber::error, and the loop goes on", "[loop]") {
  fiber::event_loop loop;
  auto t = loop.spawn([&] {
    REQUIRE_THROWS_AS(loop.run(), fiber::error);
    REQUIRE_THROWS_WITH(loop.run(), Catch::StartsWith("fiber::event_loop::run: the loop is already running"));
    REQUIRE_THROWS_WITH(loop.run_once(), Catch::StartsWith("fiber::event_loop::run_once: the loop is already running"));
    REQUIRE_THROWS_AS(fiber::run([] { return 1; }), fiber::error);  // a second loop on this thread
    REQUIRE_THROWS_WITH(fiber::run([] { return 1; }), Catch::Contains("another event_loop is running on this thread"));
    REQUIRE(fiber::event_loop::current() == &loop);
    fiber::this_fiber::sleep_for(1ms);  // still a fiber of a running loop
    return 7;
  });
  loop.run();
  REQUIRE(t.get() == 7);
}

TEST_CASE("loop: fiber-only operations outside a fiber throw fiber::error - waits in a posted function too",
          "[loop]") {
  REQUIRE_FALSE(fiber::this_fiber::in_fiber());
  REQUIRE_THROWS_AS(fiber::this_fiber::sleep_for(1ms), fiber::error);
  REQUIRE_THROWS_AS(fiber::this_fiber::yield(), fiber::error);
  REQUIRE_THROWS_AS(fiber::spawn([] {}), fiber::error);
  REQUIRE_THROWS_AS(fiber::deadline_scope(1s), fiber::error);
  // Each message names the operation and what was wrong.
  const auto not_a_fiber = Catch::Contains(": not called from a fiber of a running event_loop");
  REQUIRE_THROWS_WITH(fiber::this_fiber::sleep_for(1ms), Catch::StartsWith("fiber::this_fiber::sleep") && not_a_fiber);
  REQUIRE_THROWS_WITH(fiber::this_fiber::yield(), Catch::StartsWith("fiber::this_fiber::yield") && not_a_fiber);
  REQUIRE_THROWS_WITH(fiber::spawn([] {}), "fiber::spawn: no fiber::event_loop is running on this thread");
  REQUIRE_THROWS_WITH(fiber::deadline_scope(1s), Catch::StartsWith("fiber::deadline_scope") && not_a_fiber);
  // The primitives' operations that need no wait work on any thread.
  fiber::mutex m;
  REQUIRE_THROWS_WITH(m.unlock(), "fiber::mutex::unlock: the mutex is not locked");
  fiber::semaphore s(1);
  REQUIRE(s.try_acquire());
  s.release();
  fiber::wait_group wg(1);

  // Outside a fiber but inside run(): a posted function must not wait (it would
  // block the loop's thread, and with it the fibers that could end the wait).
  fiber::event_loop loop;
  bool checked = false;
  loop.post([&] {
    REQUIRE_THROWS_AS(fiber::this_fiber::sleep_for(1ms), fiber::error);
    REQUIRE_THROWS_WITH(s.acquire(), Catch::StartsWith("fiber::semaphore::acquire") && not_a_fiber);
    REQUIRE_THROWS_WITH(m.lock(), Catch::StartsWith("fiber::mutex::lock") && not_a_fiber);
    REQUIRE_THROWS_WITH(wg.wait(), Catch::StartsWith("fiber::wait_group::wait") && not_a_fiber);
    checked = true;
  });
  loop.spawn([] { fiber::this_fiber::sleep_for(1ms); }).detach();
  loop.run();
  REQUIRE(checked);

  // And a task handle of a loop that is not running: nothing could end the wait.
  fiber::event_loop idle;
  auto t = idle.spawn([] { return 1; });
  REQUIRE_THROWS_AS(t.join(), fiber::error);
  REQUIRE_THROWS_WITH(t.get(), Catch::StartsWith("fiber::task::get") && not_a_fiber);
}

TEST_CASE("loop: 10^5 fibers alive at once on 16 KiB stacks", "[loop]") {
  constexpr std::size_t n = 100000;
  fiber::event_loop::options opts;
  opts.stack_size = small_stack;
  opts.guarded_stacks = 1024;  // fewer mappings: quicker to make and unmap
  opts.stack = fiber::stack_kind::own;  // (stacks of their own: what the test counts)
  fiber::event_loop loop(opts);
  auto main = loop.spawn([&] {
    fiber::wait_group gate(1);
    std::size_t parked = 0;
    std::vector<fiber::task<void>> ts;
    ts.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
      ts.push_back(fiber::spawn([&] {
        ++parked;
        gate.wait();
      }));
    while (parked < n) fiber::this_fiber::yield();
    REQUIRE(loop.alive() == n + 1);  // and the main task
    REQUIRE(loop.guarded_stacks() <= opts.guarded_stacks);
    REQUIRE(loop.guarded_stacks() + loop.unguarded_stacks() == loop.alive());
    gate.done();
    for (auto& t : ts) t.join();
    REQUIRE(loop.alive() == 1);
  });
  loop.run();
  main.get();
  REQUIRE(loop.alive() == 0);
  REQUIRE(loop.guarded_stacks() + loop.unguarded_stacks() == 0);
}

namespace {
// Writes every byte of a 16 KiB frame.
[[gnu::noinline]] int flood() {
  volatile char big[16 * 1024];
  for (auto& c : big) c = 1;
  return big[0];
}
// Recurses (writing each frame's buffer) until a frame lies below `zone`, then
// floods from there. Recursion alone leaves holes: parts of each frame are never
// written (win64's 32-byte home area, SPARC's argument dump area), and a canary
// in such a hole survived; the flood's one array has none.
[[gnu::noinline]] int dig(char* zone, int depth) {
  volatile char buf[256];
  for (auto& c : buf) c = static_cast<char>(depth);
  if (const_cast<char*>(&buf[0]) > zone) return dig(zone, depth + 1) + buf[depth % 256];
  return flood() + buf[0];
}
}  // namespace

TEST_CASE("loop: a stack overflow in an unguarded fiber is detected (canary)", "[loop]") {
  auto d = fiber_test::run_in_child([] {
#ifndef _WIN32
    std::signal(SIGABRT, SIG_DFL);  // die quietly: not through Catch's handler
#endif
    fiber::event_loop::options opts;
    opts.stack_size = small_stack;
    opts.guarded_stacks = 0;  // every stack carries a canary instead of a guard page
    opts.stack = fiber::stack_kind::own;
    fiber::event_loop loop(opts);
    const std::size_t page = fiber::page_size();
    const std::size_t size = (small_stack + page - 1) / page * page;
    // The first fiber's stack lies just below the second's (one slab): the second
    // overruns into it, not into unmapped memory, and the canary between is hit.
    loop.spawn([] { fiber::this_fiber::sleep_for(1h); }).detach();
    loop.spawn([size] {
      char here;
      // Down to 8 KiB above the bottom, then 16 KiB written at once: the flood
      // covers the canary and reaches about 8 KiB past it.
      (void)dig(&here - size + 8192, 0);
      fiber::this_fiber::yield();  // the canary is checked when the fiber suspends
    }).detach();
    loop.run();
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("stack overflow") && Catch::Contains("canary"));
}

TEST_CASE("loop: each fiber keeps its own exceptions in flight across switches", "[loop]") {
  // Two fibers park inside catch blocks, interleaved; each then sees its own
  // exception (std::current_exception, `throw;`) and std::uncaught_exceptions().
  std::string a_seen, b_seen;
  int a_uncaught = -1, b_uncaught = -1;
  fiber::run([&] {
    auto a = fiber::spawn([&] {
      try {
        throw std::runtime_error("a");
      } catch (...) {
        fiber::this_fiber::sleep_for(2ms);  // b throws and catches meanwhile
        a_uncaught = std::uncaught_exceptions();
        try {
          throw;
        } catch (const std::runtime_error& e) {
          a_seen = e.what();
        }
      }
    });
    auto b = fiber::spawn([&] {
      try {
        throw std::logic_error("b");
      } catch (...) {
        fiber::this_fiber::sleep_for(4ms);  // a ends its handler meanwhile
        b_uncaught = std::uncaught_exceptions();
        try {
          std::rethrow_exception(std::current_exception());
        } catch (const std::logic_error& e) {
          b_seen = e.what();
        }
      }
    });
    a.join();
    b.join();
    // And the main task, which caught nothing, has nothing in flight.
    CHECK(std::current_exception() == nullptr);
  });
  CHECK(a_seen == "a");
  CHECK(b_seen == "b");
  CHECK(a_uncaught == 0);
  CHECK(b_uncaught == 0);
}

TEST_CASE("loop: a task that starts after another ended runs on its stack, with a clean state", "[loop]") {
  fiber::event_loop loop(fiber::event_loop::options{.stack = fiber::stack_kind::own});
  std::uintptr_t first = 0, second = 0, other_size = 0;
  std::size_t stacks_between = 99, alive_between = 99;
  int second_uncaught = -1;
  bool second_clean = false;
  auto main = loop.spawn([&] {
    fiber::spawn([&] {
      char here;
      first = reinterpret_cast<std::uintptr_t>(&here);
      try {
        throw std::runtime_error("first");
      } catch (...) {
      }
    }).join();
    // The first task's context waits for the next task, its stack no longer counted.
    stacks_between = loop.guarded_stacks() + loop.unguarded_stacks();
    alive_between = loop.alive();
    fiber::spawn([&] {
      char here;
      second = reinterpret_cast<std::uintptr_t>(&here);
      second_uncaught = std::uncaught_exceptions();
      second_clean = std::current_exception() == nullptr;
    }).join();
    // A task that asks for another stack size gets a stack of its own.
    fiber::spawn_options big;
    big.stack_size = 2 * fiber::default_stack_size;
    fiber::spawn(big, [&] {
      char here;
      other_size = reinterpret_cast<std::uintptr_t>(&here);
    }).join();
  });
  loop.run();
  main.get();
  const auto distance = [](std::uintptr_t a, std::uintptr_t b) { return a > b ? a - b : b - a; };
  CHECK(stacks_between == alive_between);  // only the main task's
  CHECK(distance(first, second) < 4096);   // the same frame, give or take
  CHECK(distance(first, other_size) >= fiber::default_stack_size);
  CHECK(second_uncaught == 0);
  CHECK(second_clean);
  CHECK(loop.guarded_stacks() + loop.unguarded_stacks() == 0);
}

TEST_CASE("loop: a loop destroyed with idle workers and suspended fibers frees them", "[loop]") {
  bool unwound = false;
  {
    fiber::event_loop loop;
    auto main = loop.spawn([&] {
      std::vector<fiber::task<void>> quick;
      for (int i = 0; i < 3; ++i) quick.push_back(fiber::spawn([] {}));
      for (auto& t : quick) t.join();  // three idle workers now
      fiber::spawn([&] {
        sets_on_destroy s{&unwound};
        fiber::this_fiber::sleep_for(1h);
      }).detach();
      fiber::this_fiber::yield();  // the sleeper starts, on an idle worker
    });
    loop.run_until(main);
    main.get();
    CHECK(loop.alive() == 1);  // the sleeper
    CHECK(!unwound);
  }
  CHECK(unwound);
}

TEST_CASE("loop: joining a task that has not started runs it next, and its end hands back to the joiner", "[loop]") {
  std::vector<std::string> log;
  fiber::run([&] {
    auto a = fiber::spawn([&] { log.push_back("a"); });
    auto b = fiber::spawn([&] { log.push_back("b"); });
    b.join();  // b has not started: it runs now, before a
    log.push_back("main");  // b's end hands the CPU straight back here
    a.join();
  });
  CHECK(log == std::vector<std::string>{"b", "main", "a"});
}

TEST_CASE("loop: hand-offs do not starve the ready queue", "[loop]") {
  // Every spawn + join here is two direct switches (to the task, back to the
  // joiner); the fiber queued before them must still get its turn soon.
  long rounds = 0;
  fiber::run([&] {
    bool other_ran = false;
    auto other = fiber::spawn([&] { other_ran = true; });
    while (!other_ran && rounds < 100000) {
      fiber::spawn([] {}).join();
      ++rounds;
    }
    other.join();
  });
  CHECK(rounds > 0);
  CHECK(rounds < 1000);
}

TEST_CASE("loop: after a budget of hand-offs, every fiber queued meanwhile runs before the chain goes on", "[loop]") {
  // The scheduler's turn puts the hand-off fiber behind the queue: 20 queued
  // fibers all run within about one budget of spawn + join rounds, not one budget
  // each.
  long rounds = 0;
  fiber::run([&] {
    int others_ran = 0;
    std::vector<fiber::task<void>> others;
    for (int i = 0; i < 20; ++i) others.push_back(fiber::spawn([&] { ++others_ran; }));
    while (others_ran < 20 && rounds < 100000) {
      fiber::spawn([] {}).join();
      ++rounds;
    }
    for (auto& t : others) t.join();
  });
  CHECK(rounds > 0);
  CHECK(rounds < 1000);
}

// ---- names and ids -----------------------------------------------------------------

TEST_CASE("loop: a task has an id and a name: task::id(), spawn_options::name, this_fiber inside it", "[loop][debug]") {
  REQUIRE(fiber::this_fiber::id() == 0);  // the thread's own stack
  REQUIRE(fiber::this_fiber::name().empty());
  std::uint64_t main_id = 0;
  fiber::event_loop loop;
  auto main = loop.spawn(fiber::spawn_options{.name = "main task"}, [&] {
    main_id = fiber::this_fiber::id();
    REQUIRE(fiber::this_fiber::name() == "main task");
    std::vector<std::uint64_t> seen;
    std::vector<std::string> names;
    auto record = [&] {
      seen.push_back(fiber::this_fiber::id());
      names.push_back(fiber::this_fiber::name());
    };
    // Each task in turn runs on the same (reused) worker fiber: each has its own
    // id and name all the same, and an unnamed one has none.
    auto a = fiber::spawn(fiber::spawn_options{.name = std::string("alpha")}, record);
    a.join();
    auto b = fiber::spawn(record);
    b.join();
    auto c = fiber::spawn(fiber::spawn_options{.name = "a name much longer than thirty-one bytes"}, [&] {
      record();
      fiber::this_fiber::set_name("renamed");
      REQUIRE(fiber::this_fiber::name() == "renamed");
    });
    c.join();
    REQUIRE(seen == std::vector<std::uint64_t>{a.id(), b.id(), c.id()});
    REQUIRE(names == std::vector<std::string>{"alpha", "", "a name much longer than thirty-"});
    REQUIRE(names[2].size() == 31);
    REQUIRE(a.id() != b.id());
    REQUIRE(b.id() != c.id());
    REQUIRE(a.id() != main_id);
    // A task's id is known as soon as it is spawned, and stays after it ends.
    auto late = fiber::spawn([] { return fiber::this_fiber::id(); });
    const std::uint64_t late_id = late.id();
    REQUIRE(late_id != 0);
    REQUIRE(late.get() == late_id);
    REQUIRE(late.id() == late_id);
  });
  REQUIRE(main.id() != 0);
  loop.run();
  main.get();
  REQUIRE(main_id == main.id());
}

TEST_CASE("loop: fiber::dump() shows each task's fiber, what it waits for, and the tasks not started", "[loop][debug]") {
  fiber::channel<int> ch;
  fiber::mutex m;
  std::string text;
  fiber::event_loop loop(fiber::event_loop::options{.stack = fiber::stack_kind::own});  // (sizes in KiB)
  auto main = loop.spawn(fiber::spawn_options{.name = "dumper"}, [&] {
    auto receiver = fiber::spawn(fiber::spawn_options{.name = "receiver"}, [&] { return ch.recv(); });
    auto sleeper = fiber::spawn(fiber::spawn_options{.name = "sleeper"}, [] { fiber::this_fiber::sleep_for(1h); });
    auto joiner = fiber::spawn(fiber::spawn_options{.name = "joiner"}, [&] { sleeper.join(); });
    auto locker = fiber::spawn(fiber::spawn_options{.name = "locker"}, [&] { std::lock_guard<fiber::mutex> lk(m); });
    m.lock();
    fiber::this_fiber::yield();  // each of them parks
    auto unstarted = fiber::spawn(fiber::spawn_options{.name = "not yet"}, [] {});
    text = dump_text();
    INFO(text);
    CHECK_THAT(line_starting(text, "fiber " + std::to_string(fiber::this_fiber::id()) + " \"dumper\": running, stack 0x"),
               Catch::Contains("event_loop task: running"));
    CHECK_THAT(line_starting(text, "fiber " + std::to_string(receiver.id()) + " \"receiver\": suspended"),
               Catch::EndsWith("event_loop task: parked in fiber::channel::recv on " + hex_address(&ch)));
    CHECK_THAT(line_starting(text, "fiber " + std::to_string(sleeper.id()) + " \"sleeper\": suspended"),
               Catch::Contains("parked in fiber::this_fiber::sleep, deadline in 3599") ||
                   Catch::Contains("parked in fiber::this_fiber::sleep, deadline in 3600000 ms"));
    CHECK_THAT(line_starting(text, "fiber " + std::to_string(joiner.id()) + " \"joiner\""),
               Catch::EndsWith("parked in fiber::task::join on task " + std::to_string(sleeper.id()) + " \"sleeper\""));
    CHECK_THAT(line_starting(text, "fiber " + std::to_string(locker.id()) + " \"locker\""),
               Catch::EndsWith("parked in fiber::mutex::lock on " + hex_address(&m)));
    // A stack range and size.
    CHECK_THAT(line_starting(text, "fiber " + std::to_string(receiver.id())), Catch::Contains(" KiB)"));
    // The loop: running here, with the task not started listed, also as ready to run.
    const std::string loop_line = line_starting(text, "event_loop " + hex_address(&loop));
    CHECK_THAT(loop_line, Catch::Contains("running on this thread") && Catch::Contains("6 task(s) alive"));
    CHECK_THAT(text, Catch::Contains("  not started: task " + std::to_string(unstarted.id()) + " \"not yet\"\n"));
    CHECK_THAT(text, Catch::Contains("  ready to run: task " + std::to_string(unstarted.id()) + " \"not yet\"\n"));
    m.unlock();
    ch.send(1);
    sleeper.cancel();
    REQUIRE(receiver.get() == 1);
    REQUIRE_THROWS_AS(joiner.get(), fiber::cancelled);
    locker.get();
    unstarted.get();
  });
  loop.run();
  main.get();
  // Ended tasks are gone from the dump, and their worker fibers (kept for the next
  // task) do not carry their ids on.
  const std::string after = dump_text();
  INFO(after);
  CHECK_THAT(after, !Catch::Contains("\"receiver\"") && !Catch::Contains("fiber " + std::to_string(main.id()) + " "));
  CHECK_THAT(line_starting(after, "event_loop " + hex_address(&loop)), Catch::Contains("not running, 0 task(s) alive"));
}
