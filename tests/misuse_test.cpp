// Misuse is an error, not undefined behaviour: each misuse of the library throws
// fiber::error (or, where nothing can be thrown, ends the process with a message),
// naming the operation and what was wrong. The audit, and where each case is tested:
//
//   resuming a finished fiber: an empty context        context_test ("misuse: resuming an empty context")
//   resuming a finished generator: stop_iteration      generator_test ("start runs to the first yield, ...")
//   a generator resuming itself from its body          generator_test ("misuse is reported", "already executing")
//     (a fiber::context cannot be resumed while it runs: its handle does not exist
//     then; the empty-context error above is what resuming a used handle gives)
//   fiber-only calls outside a fiber: yield, sleep,    event_loop_test ("blocking operations outside a fiber")
//     spawn, deadline_scope; any wait in a function
//     posted to a loop (outside its fibers)
//   (a thread outside any loop may wait on a channel,  threads_test)
//     mutex, semaphore, wait_group or task: it blocks)
//   a loop run inside one of its own fibers            event_loop_test ("run() from inside a fiber")
//   a stream destroyed under a blocked fiber (fatal)   io_test
//   the C API's misuse on one thread                   c_api_test.c (status codes, fiber_last_error())
//
// and here, what is not tested elsewhere:
//   a loop used from another thread than the one running it (refused; its task
//   handles, channels and semaphores work there); the same through the C API; a
//   task joining itself; joining a task of another loop; destroying a
//   loop while it runs (fatal, from its own fiber or from another thread);
//   destroying a loop with live fibers (not misuse: they are unwound).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "death.hpp"
#include "fiber/channel.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/fiber.h"
#include "fiber/sync.hpp"

using namespace std::chrono_literals;

namespace {

// The message of the fiber::error that fn() throws ("" if it throws none; a
// test failure if it throws something else).
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const fiber::error& e) {
    return e.what();
  }
  return {};
}

struct sets_on_destroy {
  bool* flag;
  ~sets_on_destroy() { *flag = true; }
};

}  // namespace

TEST_CASE("misuse: a loop refuses run, run_once, spawn and cancel_all from another thread - its task handles, "
          "channels and semaphores work there",
          "[misuse][threads]") {
  fiber::event_loop loop;
  fiber::semaphore go(0);
  fiber::channel<int> ch;
  fiber::channel<int> full(1);
  // While the other thread works, the loop must not call it a deadlock.
  auto keep = std::make_unique<fiber::event_loop::keep_alive>(loop);

  auto waiter = loop.spawn([&] {
    go.acquire();
    return 5;
  });
  auto receiver = loop.spawn([&] { return ch.recv(); });
  auto sender = loop.spawn([&] {
    full.send(1);
    full.send(2);  // parks: the buffer is full
  });

  std::vector<std::string> errors;
  std::thread other;
  fiber::task_status before = fiber::task_status::succeeded;
  bool sent = false;
  std::optional<int> first, second;
  int joined = 0;
  loop.spawn([&] {
    // The others are parked now; the other thread runs while the loop does.
    other = std::thread([&] {
      errors.push_back(error_of([&] { loop.run(); }));
      errors.push_back(error_of([&] { loop.run_once(); }));
      errors.push_back(error_of([&] { (void)loop.spawn([] {}); }));
      errors.push_back(error_of([&] { loop.cancel_all(); }));
      // What works from here: the task handles, the channels, the semaphore.
      before = waiter.status();
      sent = ch.try_send(7);     // to the parked receiver
      first = full.try_recv();   // 1; the parked sender refills the buffer with 2
      second = full.recv();      // 2: ready, so it does not block
      go.release();              // wakes the waiter, on the loop's thread
      joined = waiter.get();     // blocks this thread until the task has ended
      keep.reset();
    });
  }).detach();
  loop.run();
  other.join();

  REQUIRE(errors.size() == 4);
  const char* operations[] = {"fiber::event_loop::run", "fiber::event_loop::run_once", "fiber::spawn",
                              "fiber::event_loop::cancel_all"};
  for (std::size_t i = 0; i < errors.size(); ++i) {
    INFO("attempt " << i << ": " << errors[i]);
    CHECK_THAT(errors[i], Catch::StartsWith(std::string(operations[i]) + ": "));
    CHECK_THAT(errors[i], Catch::Contains("another thread"));
  }
  CHECK(before == fiber::task_status::pending);
  CHECK(sent);
  CHECK(first == 1);
  CHECK(second == 2);
  CHECK(joined == 5);
  REQUIRE(receiver.get() == 7);
  sender.get();
  REQUIRE_FALSE(ch.closed());
  REQUIRE(full.empty());
}

TEST_CASE("misuse: the C API reports use from another thread with FIBER_EINVAL and fiber_last_error()",
          "[misuse][c_api]") {
  fiber_loop* loop = fiber_loop_create();
  REQUIRE(loop);
  fiber_chan* ch = fiber_chan_create(0);
  static fiber_chan* gate;  // the task waits on it
  gate = ch;
  fiber_task* t = fiber_spawn(
      loop,
      [](void*) -> void* {
        void* v = nullptr;
        fiber_chan_recv(gate, &v, -1);
        return v;
      },
      nullptr);
  REQUIRE(t);
  struct outcome {
    int status;
    std::string message;
  };
  std::vector<outcome> seen;
  std::thread other;
  // Started from a task, so that it runs while the loop does; the loop waits for
  // it (a deadlock otherwise) in a task that sleeps until it is done.
  static std::atomic<bool> done{false};
  done = false;
  struct shared_state {
    fiber_loop* loop;
    fiber_task* t;
    fiber_chan* ch;
    std::vector<outcome>* seen;
    std::thread* other;
    void* result;
  } ctx{loop, t, ch, &seen, &other, nullptr};
  fiber_task* starter = fiber_spawn(
      loop,
      [](void* arg) -> void* {
        auto* c = static_cast<shared_state*>(arg);
        *c->other = std::thread([c] {
          auto record = [&](int status) { c->seen->push_back({status, fiber_last_error()}); };
          record(fiber_loop_run(c->loop));
          record(fiber_loop_run_once(c->loop, 0, nullptr));
          record(fiber_spawn(c->loop, [](void*) -> void* { return nullptr; }, nullptr) ? FIBER_OK : FIBER_EINVAL);
          record(fiber_chan_send(c->ch, nullptr, -1));  // not a task: refused before anything
          record(fiber_task_done(c->t));                // 0: it waits on the channel
          record(fiber_chan_try_send(c->ch, reinterpret_cast<void*>(42)));  // the task waits on it: works
          record(fiber_task_join(c->t, &c->result));   // blocks this thread until the task has ended
          record(fiber_task_done(c->t));
          done = true;
        });
        while (!done) fiber_sleep_ms(1);
        return nullptr;
      },
      &ctx);
  REQUIRE(fiber_loop_run(loop) == FIBER_OK);
  other.join();
  REQUIRE(ctx.result == reinterpret_cast<void*>(42));

  REQUIRE(seen.size() == 8);
  const int statuses[] = {FIBER_EINVAL, FIBER_EINVAL, FIBER_EINVAL, FIBER_NO_LOOP, 0, FIBER_OK, FIBER_OK, 1};
  const char* words[] = {"fiber::event_loop::run", "fiber::event_loop::run_once", "fiber::spawn",
                         "fiber_chan_send: not called from a task"};
  for (std::size_t i = 0; i < seen.size(); ++i) {
    INFO("call " << i << ": " << fiber_status_name(seen[i].status) << ": " << seen[i].message);
    CHECK(seen[i].status == statuses[i]);
    if (i < 4) CHECK_THAT(seen[i].message, Catch::Contains(words[i]));
  }
  fiber_task_release(starter);
  fiber_task_release(t);
  fiber_chan_destroy(ch);
  fiber_loop_destroy(loop);
}

TEST_CASE("misuse: a task joining itself throws fiber::error instead of deadlocking", "[misuse]") {
  fiber::run([] {
    fiber::task<int>* self = nullptr;
    std::vector<std::string> errors;
    auto t = fiber::spawn([&] {
      errors.push_back(error_of([&] { self->join(); }));
      errors.push_back(error_of([&] { (void)self->get(); }));
      errors.push_back(error_of([&] { (void)self->join_for(1s); }));
      errors.push_back(error_of([&] { (void)fiber::gather(*self); }));
      return 3;
    });
    self = &t;
    REQUIRE(t.get() == 3);
    REQUIRE(errors.size() == 4);
    CHECK_THAT(errors[0], Catch::StartsWith("fiber::task::join: a task cannot wait for itself"));
    CHECK_THAT(errors[1], Catch::StartsWith("fiber::task::get: a task cannot wait for itself"));
    CHECK_THAT(errors[2], Catch::StartsWith("fiber::task::join_until: a task cannot wait for itself"));
    CHECK_THAT(errors[3], Catch::StartsWith("fiber::gather: a task cannot wait for itself"));
  });
}

TEST_CASE("misuse: waiting for a task of another event_loop throws fiber::error", "[misuse]") {
  fiber::event_loop other;
  auto foreign = other.spawn([] { return 1; });
  fiber::run([&] {
    CHECK_THAT(error_of([&] { foreign.join(); }),
               Catch::StartsWith("fiber::task::join: the task belongs to another event_loop"));
    CHECK_THAT(error_of([&] { (void)foreign.get(); }),
               Catch::StartsWith("fiber::task::get: the task belongs to another event_loop"));
    auto mine = fiber::spawn([] { fiber::this_fiber::sleep_for(1ms); return 2; });
    std::vector<fiber::task<int>> both;
    both.push_back(std::move(mine));
    both.push_back(std::move(foreign));
    CHECK_THAT(error_of([&] { (void)fiber::wait_any(both); }),
               Catch::StartsWith("fiber::wait_any: the task belongs to another event_loop"));
    CHECK_THAT(error_of([&] { (void)fiber::gather(both); }),
               Catch::StartsWith("fiber::gather: the task belongs to another event_loop"));
    foreign = std::move(both[1]);
    REQUIRE(both[0].get() == 2);
  });
  // Its own loop runs it.
  other.run();
  REQUIRE(foreign.get() == 1);
}

TEST_CASE("misuse: destroying a loop from one of its own fibers ends the process with a message", "[misuse]") {
  auto d = fiber_test::run_in_child([] {
#ifndef _WIN32
    std::signal(SIGABRT, SIG_DFL);  // die quietly: not through Catch's handler
#endif
    auto* loop = new fiber::event_loop;
    loop->spawn([loop] { delete loop; }).detach();
    loop->run();
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("fiber::event_loop::~event_loop: the loop is destroyed while it runs, "
                                            "from one of its own fibers"));
}

TEST_CASE("misuse: destroying a loop while it runs on another thread ends the process with a message", "[misuse]") {
  auto d = fiber_test::run_in_child([] {
#ifndef _WIN32
    std::signal(SIGABRT, SIG_DFL);
#endif
    auto* loop = new fiber::event_loop;
    std::atomic<bool> running{false};
    loop->spawn([&] {
      running = true;
      fiber::this_fiber::sleep_for(1h);
    }).detach();
    std::thread runner([&] { loop->run(); });
    while (!running) std::this_thread::sleep_for(1ms);
    delete loop;  // it still runs there, for an hour: fatal
    runner.join();
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("fiber::event_loop::~event_loop: the loop is destroyed on one thread "
                                            "while it runs on another"));
}

TEST_CASE("misuse: a task handle destroyed on another thread than its loop's detaches the task", "[misuse][threads]") {
  fiber::event_loop loop;
  std::atomic<bool> running{false};
  bool finished = false;
  fiber::channel<int> go;
  auto keep = std::make_unique<fiber::event_loop::keep_alive>(loop);
  auto t = std::make_unique<fiber::task<void>>(loop.spawn([&] {
    running = true;
    go.recv();
    finished = true;
  }));
  std::thread runner([&] { loop.run(); });
  while (!running) std::this_thread::sleep_for(1ms);
  t.reset();    // detached, from this thread
  go.send(1);   // a thread outside any loop: blocks until the task takes it
  keep.reset();
  runner.join();
  CHECK(finished);
}

TEST_CASE("misuse: a loop destroyed with live fibers unwinds them: suspended, ready and not started", "[misuse]") {
  bool sleeper_unwound = false, yielder_unwound = false, parked_unwound = false;
  auto captured = std::make_shared<int>(0);
  fiber::task<void> sleeper, yielder, parked, unstarted;
  fiber::semaphore never(0);
  {
    fiber::event_loop loop;
    sleeper = loop.spawn([&] {
      sets_on_destroy s{&sleeper_unwound};
      fiber::this_fiber::sleep_for(1h);
    });
    yielder = loop.spawn([&] {
      sets_on_destroy s{&yielder_unwound};
      for (;;) fiber::this_fiber::yield();
    });
    parked = loop.spawn([&] {
      sets_on_destroy s{&parked_unwound};
      never.acquire();
    });
    REQUIRE(loop.run_once() == 3);  // each ran up to its wait; the yielder is ready again
    unstarted = loop.spawn([captured] { FAIL("a task spawned into a loop being destroyed ran"); });
    REQUIRE(captured.use_count() == 2);
    REQUIRE(loop.alive() == 4);
  }  // no run() to end them: the destructor unwinds their stacks
  CHECK(sleeper_unwound);
  CHECK(yielder_unwound);
  CHECK(parked_unwound);
  for (auto* t : {&sleeper, &yielder, &parked, &unstarted}) {
    CHECK(t->status() == fiber::task_status::cancelled);
    CHECK_THROWS_AS(t->get(), fiber::cancelled);
  }
  REQUIRE(never.available() == 0);
  unstarted = {};                    // the last reference to the task that never started
  CHECK(captured.use_count() == 1);  // its function (and what it captured) is gone
}
