// What the C API does with C++ exceptions (tests/c_api_test.c covers the rest, as C):
// none crosses the boundary; each becomes FIBER_EXCEPTION with its message. And
// event_loop::run_once / native_handle / next_timeout_ms from C++.
#include <catch2/catch.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

#include "fiber/channel.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/fiber.h"

#if defined(__linux__)
#  include <poll.h>
#  include <unistd.h>

#  include "fiber/io.hpp"
#endif

namespace {
void* throws_in_fiber(void*) { throw std::runtime_error("boom in a fiber"); }
void* throws_in_task(void*) {
  fiber_sleep_ms(1);
  throw std::runtime_error("boom in a task");
}
void* yields_then_throws(void*) {
  fiber_yield(nullptr, nullptr);
  throw 42;  // not a std::exception
}
}  // namespace

TEST_CASE("c api: a C++ exception leaving a fiber's body is FIBER_EXCEPTION, with its message", "[c_api]") {
  fiber_t* f = fiber_create(throws_in_fiber, nullptr, 0);
  REQUIRE(f);
  void* out = reinterpret_cast<void*>(1);
  CHECK(fiber_resume(f, nullptr, &out) == FIBER_EXCEPTION);
  CHECK(out == nullptr);
  CHECK(std::string(fiber_last_error()).find("boom in a fiber") != std::string::npos);
  CHECK(fiber_done(f));
  fiber_destroy(f);

  f = fiber_create(yields_then_throws, nullptr, 0);
  CHECK(fiber_resume(f, nullptr, nullptr) == FIBER_OK);
  CHECK(fiber_resume(f, nullptr, nullptr) == FIBER_EXCEPTION);
  CHECK(std::string(fiber_last_error()).find("unknown type") != std::string::npos);
  fiber_destroy(f);
}

TEST_CASE("c api: a task whose function throws is joined as FIBER_EXCEPTION", "[c_api]") {
  fiber_loop* loop = fiber_loop_create();
  fiber_task* t = fiber_spawn(loop, throws_in_task, nullptr);
  void* r = nullptr;
  CHECK(fiber_task_join(t, &r) == FIBER_EXCEPTION);
  CHECK(std::string(fiber_last_error()).find("boom in a task") != std::string::npos);
  fiber_task_release(t);
  fiber_loop_destroy(loop);
}

TEST_CASE("c api: destroying a loop with a task parked in C code cancels it, and the task returns", "[c_api]") {
  static int status = 0;
  fiber_loop* loop = fiber_loop_create();
  fiber_task* t = fiber_spawn(
      loop, [](void*) -> void* {
        status = fiber_sleep_ms(60000);
        return nullptr;
      },
      nullptr);
  std::size_t alive = 0;
  CHECK(fiber_loop_run_once(loop, 0, &alive) == FIBER_OK);
  CHECK(alive == 1);
  fiber_task_release(t);
  fiber_loop_destroy(loop);
  CHECK(status == FIBER_CANCELLED);
}

TEST_CASE("event_loop::run_once runs one round and reports the fibers alive", "[loop][run_once]") {
  fiber::event_loop loop;
  int steps = 0;
  auto t = loop.spawn([&] {
    for (int i = 0; i < 3; ++i) {
      ++steps;
      fiber::this_fiber::yield();
    }
  });
  CHECK(loop.next_timeout_ms() == 0);  // a fiber is ready
  CHECK(loop.run_once() == 1);
  CHECK(steps == 1);  // one turn, not the whole task
  CHECK(loop.run_once() == 1);
  CHECK(steps == 2);
  while (loop.run_once() > 0) {
  }
  CHECK(steps == 3);
  CHECK(t.status() == fiber::task_status::succeeded);
  CHECK(loop.next_timeout_ms() == -1);  // nothing pending at all
}

TEST_CASE("event_loop::run_once waits up to its timeout for a timer, and next_timeout_ms says when", "[loop][run_once]") {
  fiber::event_loop loop;
  bool woke = false;
  auto t = loop.spawn([&] {
    fiber::this_fiber::sleep_for(std::chrono::milliseconds(50));
    woke = true;
  });
  loop.run_once();  // starts it; it sleeps
  const int next = loop.next_timeout_ms();
  CHECK(next > 0);
  CHECK(next <= 50);
  const auto t0 = fiber::clock::now();
  loop.run_once(std::chrono::milliseconds(5));  // the timer is not due: returns after ~5 ms
  CHECK(!woke);
  CHECK(fiber::clock::now() - t0 >= std::chrono::milliseconds(4));
  while (loop.run_once(std::chrono::milliseconds(100)) > 0) {
  }
  CHECK(woke);
}

#if defined(__linux__)
TEST_CASE("event_loop::run_once(0) collects a post, so native_handle() stops being readable", "[loop][run_once]") {
  fiber::event_loop loop;
  int ran = 0;
  loop.post([&] { ++ran; });
  pollfd p{loop.native_handle(), POLLIN, 0};
  CHECK(::poll(&p, 1, 0) == 1);  // the post woke it
  loop.run_once();
  CHECK(ran == 1);
  p.revents = 0;
  CHECK(::poll(&p, 1, 0) == 0);  // nothing left: a foreign loop would not spin
}
#endif

#if defined(__linux__)
TEST_CASE("fiber_fd_closing: the woken waiter's cleanup leaves a new wait on the reused fd number alone", "[c_api]") {
  fiber::event_loop loop;
  int first[2], second[2] = {-1, -1};
  REQUIRE(::pipe(first) == 0);
  bool first_woke = false, second_got = false;
  auto a = loop.spawn([&] { first_woke = fiber::io::wait_readable(first[0]); });
  auto b = loop.spawn([&] {
    fiber::this_fiber::yield();  // a is waiting now
    const int number = first[0];
    fiber_fd_closing(number);  // wakes a (it has not run yet)
    ::close(number);
    REQUIRE(::pipe(second) == 0);
    CHECK(second[0] == number);  // the number is reused at once
    auto w = fiber::spawn([&] {
      fiber::this_fiber::sleep_for(std::chrono::milliseconds(20));
      CHECK(::write(second[1], "x", 1) == 1);
    });
    // Registered before a runs its cleanup: that cleanup must not remove it.
    second_got = fiber::io::wait_readable(second[0], fiber::clock::now() + std::chrono::seconds(5));
    w.join();
  });
  loop.run();
  CHECK(first_woke);
  CHECK(second_got);
  ::close(first[1]);
  ::close(second[0]);
  ::close(second[1]);
}
#endif

TEST_CASE("event_loop::run_once from inside the running loop is an error", "[loop][run_once]") {
  fiber::event_loop loop;
  std::string message;
  auto t = loop.spawn([&] {
    try {
      loop.run_once();
    } catch (const fiber::error& e) {
      message = e.what();
    }
  });
  loop.run();
  CHECK(message.find("already running") != std::string::npos);
#if defined(__linux__)
  CHECK(loop.native_handle() >= 0);
#endif
}
