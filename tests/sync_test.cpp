// fiber::mutex, condition_variable, semaphore and wait_group.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "fiber/event_loop.hpp"
#include "fiber/sync.hpp"

using namespace std::chrono_literals;
using clk = fiber::clock;
using fiber::task_status;

namespace {
// Spawns `n` fibers, each running body(i), and yields until they all ran to their
// first wait (they queue in the order 0, 1, ...).
template <class F>
std::vector<fiber::task<void>> start(int n, F body) {
  std::vector<fiber::task<void>> ts;
  for (int i = 0; i < n; ++i) {
    ts.push_back(fiber::spawn(body, i));
    fiber::this_fiber::yield();
  }
  return ts;
}
void join_all(std::vector<fiber::task<void>>& ts) {
  for (auto& t : ts) t.join();
}
}  // namespace

// ---- mutex ----------------------------------------------------------------------

TEST_CASE("sync: mutex excludes, and works with lock_guard, unique_lock and scoped_lock", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    int inside = 0, max_inside = 0, total = 0;
    auto ts = start(8, [&](int) {
      for (int k = 0; k < 20; ++k) {
        std::lock_guard<fiber::mutex> lk(m);
        ++inside;
        max_inside = std::max(max_inside, inside);
        fiber::this_fiber::yield();  // others run, and must wait
        ++total;
        --inside;
      }
    });
    join_all(ts);
    REQUIRE(max_inside == 1);
    REQUIRE(total == 160);
    REQUIRE_FALSE(m.locked());

    {
      std::unique_lock<fiber::mutex> lk(m);
      REQUIRE(m.owned_by_caller());
      lk.unlock();
      REQUIRE_FALSE(m.locked());
      REQUIRE(lk.try_lock());
      lk.unlock();
      REQUIRE(lk.try_lock_for(1ms));
    }
    fiber::mutex m2;
    {
      std::scoped_lock both(m, m2);
      REQUIRE(m.owned_by_caller());
      REQUIRE(m2.owned_by_caller());
    }
    REQUIRE_FALSE(m.locked());
    REQUIRE_FALSE(m2.locked());
  });
}

TEST_CASE("sync: mutex unlock hands the lock to the first waiter (FIFO, no barging)", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    std::vector<int> order;
    m.lock();
    auto ts = start(5, [&](int i) {
      m.lock();
      order.push_back(i);
      fiber::this_fiber::yield();
      m.unlock();
    });
    m.unlock();
    // Handed to waiter 0 already: nobody can take it now, not even the fiber that
    // just released it.
    REQUIRE(m.locked());
    REQUIRE_FALSE(m.owned_by_caller());
    REQUIRE_FALSE(m.try_lock());
    // A late-comer queues behind every waiter.
    m.lock();
    order.push_back(99);
    m.unlock();
    join_all(ts);
    REQUIRE(order == std::vector<int>{0, 1, 2, 3, 4, 99});
  });
}

TEST_CASE("sync: mutex misuse throws fiber::error", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    REQUIRE_THROWS_AS(m.unlock(), fiber::error);  // not locked
    m.lock();
    REQUIRE_THROWS_AS(m.lock(), fiber::error);  // would deadlock
    REQUIRE_THROWS_AS(m.try_lock(), fiber::error);
    auto other = fiber::spawn([&] { REQUIRE_THROWS_WITH(m.unlock(), Catch::Contains("another fiber")); });
    other.get();
    REQUIRE(m.owned_by_caller());
    m.unlock();
  });
}

TEST_CASE("sync: mutex timed lock never gives up early, and succeeds when handed the lock", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    m.lock();
    bool gave_up_twice = false;
    auto ts = start(1, [&](int) {
      const auto t0 = clk::now();
      REQUIRE_FALSE(m.try_lock_for(3ms));
      REQUIRE(clk::now() - t0 >= 3ms);
      const auto until = clk::now() + 2ms;
      REQUIRE_FALSE(m.try_lock_until(until));
      REQUIRE(clk::now() >= until);
      gave_up_twice = true;
      REQUIRE(m.try_lock_for(10s));  // main unlocks meanwhile
      m.unlock();
    });
    // Unlock only once both timed attempts have given up (not after a fixed time:
    // on a loaded machine they may take longer than it).
    while (!gave_up_twice) fiber::this_fiber::sleep_for(1ms);
    m.unlock();
    join_all(ts);
    REQUIRE_FALSE(m.locked());
  });
}

TEST_CASE("sync: mutex: a waiter cancelled or timed out leaves the queue consistent", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    std::vector<std::string> log;
    m.lock();
    auto a = fiber::spawn([&] {
      std::lock_guard<fiber::mutex> lk(m);
      log.push_back("a");
    });
    auto b = fiber::spawn([&] {
      fiber::deadline_scope scope(2ms);
      try {
        std::lock_guard<fiber::mutex> lk(m);
        log.push_back("b");
      } catch (const fiber::timed_out&) {
        log.push_back("b timed out");
      }
    });
    auto c = fiber::spawn([&] {
      std::lock_guard<fiber::mutex> lk(m);
      log.push_back("c");
    });
    fiber::this_fiber::yield();
    a.cancel();
    REQUIRE_THROWS_AS(a.join(), fiber::cancelled);
    fiber::this_fiber::sleep_for(5ms);  // b's scope expires
    REQUIRE(b.done());
    m.unlock();  // to c, the only waiter left
    c.join();
    REQUIRE(log == std::vector<std::string>{"b timed out", "c"});
    REQUIRE_FALSE(m.locked());
  });
}

TEST_CASE("sync: mutex: a hand-off to a waiter cancelled at the same moment is not lost", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    std::vector<std::string> log;
    m.lock();
    auto a = fiber::spawn([&] {
      std::lock_guard<fiber::mutex> lk(m);
      log.push_back("a locked");
      fiber::this_fiber::sleep_for(1h);  // the cancellation arrives here
      log.push_back("a not cancelled");
    });
    auto b = fiber::spawn([&] {
      std::lock_guard<fiber::mutex> lk(m);
      log.push_back("b locked");
    });
    fiber::this_fiber::yield();
    m.unlock();  // hands the mutex to a...
    a.cancel();  // ...which is cancelled before it runs
    REQUIRE_THROWS_AS(a.join(), fiber::cancelled);
    b.join();  // a's unwinding unlocked, and b got it
    REQUIRE(log == std::vector<std::string>{"a locked", "b locked"});
    REQUIRE_FALSE(m.locked());
  });
}

// ---- condition_variable -----------------------------------------------------------

TEST_CASE("sync: condition_variable notify_one wakes the waiters in FIFO order, notify_all wakes all", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    fiber::condition_variable cv;
    std::vector<int> woke;
    auto ts = start(4, [&](int i) {
      std::unique_lock<fiber::mutex> lk(m);
      cv.wait(lk);
      REQUIRE(lk.owns_lock());
      REQUIRE(m.owned_by_caller());
      woke.push_back(i);
    });
    cv.notify_one();
    fiber::this_fiber::sleep_for(1ms);
    REQUIRE(woke == std::vector<int>{0});
    cv.notify_one();
    cv.notify_one();
    fiber::this_fiber::sleep_for(1ms);
    REQUIRE(woke == std::vector<int>{0, 1, 2});
    cv.notify_all();
    join_all(ts);
    REQUIRE(woke == std::vector<int>{0, 1, 2, 3});
    cv.notify_one();  // nobody waits: nothing happens
    cv.notify_all();

    // notify_all with several waiters wakes them all, in order.
    woke.clear();
    ts = start(3, [&](int i) {
      std::unique_lock<fiber::mutex> lk(m);
      cv.wait(lk);
      woke.push_back(i);
    });
    {
      std::lock_guard<fiber::mutex> lk(m);
      cv.notify_all();  // under the lock: they re-lock after we release it
    }
    join_all(ts);
    REQUIRE(woke == std::vector<int>{0, 1, 2});
  });
}

TEST_CASE("sync: condition_variable predicate waits and timed waits", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    fiber::condition_variable cv;
    int value = 0;
    auto consumer = fiber::spawn([&] {
      std::unique_lock<fiber::mutex> lk(m);
      cv.wait(lk, [&] { return value >= 3; });
      return value;
    });
    auto producer = fiber::spawn([&] {
      for (int i = 0; i < 5; ++i) {
        fiber::this_fiber::sleep_for(100us);
        std::lock_guard<fiber::mutex> lk(m);
        ++value;
        cv.notify_all();
      }
    });
    REQUIRE(consumer.get() >= 3);
    producer.join();

    std::unique_lock<fiber::mutex> lk(m);
    auto t0 = clk::now();
    REQUIRE(cv.wait_for(lk, 2ms) == std::cv_status::timeout);
    REQUIRE(clk::now() - t0 >= 2ms);
    REQUIRE(lk.owns_lock());
    t0 = clk::now();
    REQUIRE_FALSE(cv.wait_for(lk, 2ms, [] { return false; }));
    REQUIRE(clk::now() - t0 >= 2ms);
    const auto until = clk::now() + 2ms;
    REQUIRE(cv.wait_until(lk, until) == std::cv_status::timeout);
    REQUIRE(clk::now() >= until);
    REQUIRE_FALSE(cv.wait_until(lk, clk::now() + 1ms, [] { return false; }));
    REQUIRE(cv.wait_for(lk, 0ms, [] { return true; }));  // true at once

    // A notification before the timeout: no_timeout.
    auto notifier = fiber::spawn([&] {
      std::lock_guard<fiber::mutex> g(m);
      value = 100;
      cv.notify_one();
    });
    REQUIRE(cv.wait_for(lk, 10s) == std::cv_status::no_timeout);
    REQUIRE(value == 100);
    lk.unlock();
    notifier.join();
  });
}

TEST_CASE("sync: condition_variable: cancelled or timed-out waits hold the lock again", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    fiber::condition_variable cv;
    bool held_after_cancel = false, held_after_timeout = false;
    auto a = fiber::spawn([&] {
      std::unique_lock<fiber::mutex> lk(m);
      try {
        cv.wait(lk);
      } catch (const fiber::cancelled&) {
        held_after_cancel = lk.owns_lock() && m.owned_by_caller();
        throw;
      }
    });
    auto b = fiber::spawn([&] {
      std::unique_lock<fiber::mutex> lk(m);
      fiber::deadline_scope scope(2ms);
      try {
        cv.wait(lk);
      } catch (const fiber::timed_out&) {
        held_after_timeout = lk.owns_lock() && m.owned_by_caller();
      }
    });
    fiber::this_fiber::yield();
    {
      // The waiters' re-locking must wait for us, past b's deadline: it still
      // completes.
      std::lock_guard<fiber::mutex> lk(m);
      a.cancel();
      fiber::this_fiber::sleep_for(5ms);
    }
    REQUIRE_THROWS_AS(a.join(), fiber::cancelled);
    b.join();
    REQUIRE(held_after_cancel);
    REQUIRE(held_after_timeout);
    REQUIRE_FALSE(m.locked());

    // Waiting without holding the mutex is misuse.
    std::unique_lock<fiber::mutex> unlocked(m, std::defer_lock);
    REQUIRE_THROWS_AS(cv.wait(unlocked), fiber::error);
  });
}

TEST_CASE("sync: condition_variable: a cancelled waiter does not eat a notification", "[sync]") {
  fiber::run([] {
    fiber::mutex m;
    fiber::condition_variable cv;
    std::vector<std::string> log;
    auto waiter = [&](std::string name) {
      return fiber::spawn([&, name] {
        std::unique_lock<fiber::mutex> lk(m);
        cv.wait(lk);
        log.push_back(name + " woke");
        fiber::this_fiber::sleep_for(1ms);  // a cancellation that came late lands here
        log.push_back(name + " done");
      });
    };
    // Cancelled before the notification: the notification goes to the next waiter.
    auto a = waiter("a");
    auto b = waiter("b");
    fiber::this_fiber::yield();
    a.cancel();
    cv.notify_one();
    REQUIRE_THROWS_AS(a.join(), fiber::cancelled);
    b.join();
    REQUIRE(log == std::vector<std::string>{"b woke", "b done"});

    // Notified, then cancelled before it runs: the wait returns, the next wait throws.
    log.clear();
    auto c = waiter("c");
    fiber::this_fiber::yield();
    cv.notify_one();
    c.cancel();
    REQUIRE_THROWS_AS(c.join(), fiber::cancelled);
    REQUIRE(log == std::vector<std::string>{"c woke"});
  });
}

// ---- semaphore ----------------------------------------------------------------------

TEST_CASE("sync: semaphore counts, and release hands units to waiters in FIFO order", "[sync]") {
  fiber::run([] {
    fiber::semaphore sem(2);
    REQUIRE(sem.available() == 2);
    sem.acquire();
    REQUIRE(sem.try_acquire());
    REQUIRE_FALSE(sem.try_acquire());
    std::vector<int> order;
    auto ts = start(4, [&](int i) {
      sem.acquire();
      order.push_back(i);
    });
    sem.release();  // to waiter 0, not to us
    REQUIRE(sem.available() == 0);
    REQUIRE_FALSE(sem.try_acquire());
    fiber::this_fiber::yield();
    REQUIRE(order == std::vector<int>{0});
    sem.release(5);  // 3 to the waiters, 2 left
    REQUIRE(sem.available() == 2);
    join_all(ts);
    REQUIRE(order == std::vector<int>{0, 1, 2, 3});
    REQUIRE(sem.try_acquire());
    REQUIRE(sem.try_acquire());
    REQUIRE_FALSE(sem.try_acquire());
    REQUIRE_THROWS_AS(sem.release(-1), fiber::error);
    REQUIRE_THROWS_AS(fiber::semaphore(-1), fiber::error);

    // Bounds concurrency.
    fiber::semaphore slots(3);
    int inside = 0, max_inside = 0;
    ts = start(10, [&](int) {
      slots.acquire();
      max_inside = std::max(max_inside, ++inside);
      fiber::this_fiber::sleep_for(100us);
      --inside;
      slots.release();
    });
    join_all(ts);
    REQUIRE(max_inside == 3);
    REQUIRE(slots.available() == 3);
  });
}

TEST_CASE("sync: semaphore timed acquire never gives up early", "[sync]") {
  fiber::run([] {
    fiber::semaphore sem(0);
    auto t0 = clk::now();
    REQUIRE_FALSE(sem.try_acquire_for(3ms));
    REQUIRE(clk::now() - t0 >= 3ms);
    const auto until = clk::now() + 2ms;
    REQUIRE_FALSE(sem.try_acquire_until(until));
    REQUIRE(clk::now() >= until);
    auto releaser = fiber::spawn([&] {
      fiber::this_fiber::sleep_for(1ms);
      sem.release();
    });
    REQUIRE(sem.try_acquire_for(10s));
    releaser.join();
    REQUIRE(sem.available() == 0);
  });
}

TEST_CASE("sync: semaphore: cancellation and deadline_scope during acquire - no unit is lost", "[sync]") {
  fiber::run([] {
    fiber::semaphore sem(0);
    std::vector<std::string> log;
    auto a = fiber::spawn([&] {
      sem.acquire();
      log.push_back("a acquired");
      fiber::this_fiber::sleep_for(1h);
    });
    auto c = fiber::spawn([&] {
      sem.acquire();
      log.push_back("c acquired");
    });
    fiber::this_fiber::yield();  // a and c wait in acquire, in that order
    auto b = fiber::spawn([&] {
      fiber::deadline_scope scope(2ms);
      REQUIRE_THROWS_AS(sem.acquire(), fiber::timed_out);
      log.push_back("b timed out");
    });
    b.join();  // (its deadline passed, however late it was to wait: a and c still wait)
    sem.release();  // handed to a...
    a.cancel();     // ...cancelled at the same moment: a still got it
    REQUIRE_THROWS_AS(a.join(), fiber::cancelled);
    REQUIRE(sem.available() == 0);
    REQUIRE(c.status() == task_status::pending);
    auto d = fiber::spawn([&] { sem.acquire(); });
    fiber::this_fiber::yield();
    d.cancel();  // cancelled while waiting: the next unit goes to c
    REQUIRE_THROWS_AS(d.join(), fiber::cancelled);
    sem.release();
    c.join();
    REQUIRE(log == std::vector<std::string>{"b timed out", "a acquired", "c acquired"});
    REQUIRE(sem.available() == 0);
  });
}

// ---- wait_group ---------------------------------------------------------------------

TEST_CASE("sync: wait_group waits for the counter to reach zero", "[sync]") {
  fiber::run([] {
    fiber::wait_group wg;
    wg.wait();  // zero: at once
    int done = 0;
    std::vector<fiber::task<void>> ts;
    for (int i = 0; i < 10; ++i) {
      wg.add();
      ts.push_back(fiber::spawn([&, i] {
        fiber::this_fiber::sleep_for(std::chrono::microseconds(100 * i));
        ++done;
        wg.done();
      }));
    }
    REQUIRE(wg.count() == 10);
    // Several waiters: all woken.
    int waiters_woken = 0;
    auto w1 = fiber::spawn([&] {
      wg.wait();
      ++waiters_woken;
    });
    auto w2 = fiber::spawn([&] {
      REQUIRE(wg.wait_for(10s));
      ++waiters_woken;
    });
    wg.wait();
    REQUIRE(done == 10);
    REQUIRE(wg.count() == 0);
    w1.join();
    w2.join();
    REQUIRE(waiters_woken == 2);
    join_all(ts);
  });
}

TEST_CASE("sync: wait_group: a negative counter throws and changes nothing", "[sync]") {
  fiber::run([] {
    fiber::wait_group wg(1);
    REQUIRE_THROWS_AS(wg.add(-2), fiber::error);
    REQUIRE(wg.count() == 1);
    wg.done();
    REQUIRE_THROWS_AS(wg.done(), fiber::error);
    REQUIRE(wg.count() == 0);
    REQUIRE_THROWS_AS(fiber::wait_group(-1), fiber::error);
  });
}

TEST_CASE("sync: wait_group: timed waits, cancellation and deadline_scope", "[sync]") {
  fiber::run([] {
    fiber::wait_group wg(1);
    auto t0 = clk::now();
    REQUIRE_FALSE(wg.wait_for(3ms));
    REQUIRE(clk::now() - t0 >= 3ms);
    const auto until = clk::now() + 2ms;
    REQUIRE_FALSE(wg.wait_until(until));
    REQUIRE(clk::now() >= until);
    {
      fiber::deadline_scope scope(2ms);
      t0 = clk::now();
      REQUIRE_THROWS_AS(wg.wait(), fiber::timed_out);
      REQUIRE(clk::now() - t0 >= 2ms);
    }
    bool unwound = false;
    auto t = fiber::spawn([&] {
      struct flag {
        bool* f;
        ~flag() { *f = true; }
      } guard{&unwound};
      wg.wait();
    });
    auto other = fiber::spawn([&] { wg.wait(); });
    fiber::this_fiber::yield();
    t.cancel();
    REQUIRE_THROWS_AS(t.join(), fiber::cancelled);
    REQUIRE(unwound);
    REQUIRE(other.status() == task_status::pending);
    wg.done();
    other.join();
  });
}

// ---- outside fibers, and from post() ------------------------------------------------

TEST_CASE("sync: releasing and notifying work from a posted function", "[sync]") {
  fiber::semaphore sem(0);
  fiber::wait_group wg(1);
  fiber::mutex m;
  fiber::condition_variable cv;
  bool ready = false;
  fiber::event_loop loop;
  auto t = loop.spawn([&] {
    sem.acquire();
    wg.wait();
    std::unique_lock<fiber::mutex> lk(m);
    cv.wait(lk, [&] { return ready; });
  });
  auto poster = loop.spawn([&] {
    fiber::this_fiber::sleep_for(1ms);
    loop.post([&] {
      sem.release();
      wg.done();
      ready = true;  // the waiter re-checks after the notification
      cv.notify_all();
    });
  });
  loop.run();
  t.get();
  poster.get();
}
