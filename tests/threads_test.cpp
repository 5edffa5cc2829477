// Fibers on several threads: fiber::run on N workers, and primitives shared
// between loops and with threads outside any loop (scheduler.hpp, "Threads";
// src/loop/shared.cpp, src/loop/runtime.cpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#  include <sys/socket.h>
#  include <unistd.h>
#endif

#include "fiber/channel.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/sync.hpp"
#if defined(__linux__)
#  include "fiber/io.hpp"
#endif

#include "environment.hpp"

using namespace std::chrono_literals;

namespace {

// A runtime whose tasks have stacks of their own, for the tests of where tasks
// run: a copied-stack task spawned by a copied-stack task stays on its
// spawner's worker (stack_kind::copied), which the copied-stack run of this
// suite would otherwise show here.
fiber::run_options own_stacks(unsigned threads) {
  return {.threads = threads, .loop = {.stack = fiber::stack_kind::own}};
}

// How much of a workload to run: sanitizers and emulators are 10-50x slower.
#if defined(FIBER_TEST_EMULATED) || defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int scale = 10;
#else
constexpr int scale = 1;
#endif

// The calling thread, asked afresh: std::this_thread::get_id() is pthread_self(),
// which glibc declares const, so a compiler may ask once per function and reuse
// the answer across a blocking call, after which a fiber that migrates runs on
// another thread (the hazard spawn_options::migratable documents).
[[gnu::noipa]] std::thread::id this_thread() { return std::this_thread::get_id(); }

// The distinct threads in `ids`.
std::size_t distinct(const std::vector<std::thread::id>& ids) {
  return std::set<std::thread::id>(ids.begin(), ids.end()).size();
}

// Work without a park: while one worker is busy with it, the others take the
// tasks queued behind it (a task that parked at once would let its own worker
// start them all first).
void busy_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
  }
}

}  // namespace

// ---- separate loops, threads outside any loop --------------------------------------

TEST_CASE("threads: two fiber::run on two threads share channels: ping-pong, select, close", "[threads]") {
  fiber::channel<int> ping;
  fiber::channel<int> pong(4);
  fiber::channel<int> side;
  const int n = 20000 / scale;
  long long sum = 0;
  int side_seen = 0;
  std::thread a([&] {
    fiber::run([&] {
      for (int i = 0; i < n; ++i) {
        ping.send(i);
        REQUIRE(pong.recv() == i);
      }
      ping.close();
    });
  });
  std::thread b([&] {
    fiber::run([&] {
      bool open = true;
      while (open) {
        fiber::select(fiber::on_recv(ping,
                                     [&](std::optional<int> v) {
                                       if (!v) {
                                         open = false;
                                         return;
                                       }
                                       sum += *v;
                                       pong.send(*v);
                                     }),
                      fiber::on_recv(side, [&](std::optional<int>) { ++side_seen; }));
      }
    });
  });
  a.join();
  b.join();
  CHECK(sum == static_cast<long long>(n) * (n - 1) / 2);
  CHECK(side_seen == 0);
}

TEST_CASE("threads: a thread outside any loop waits on channels, mutexes, semaphores, wait_groups and tasks",
          "[threads]") {
  fiber::channel<int> values;
  fiber::mutex m;
  fiber::semaphore units(0);
  fiber::wait_group group(1);
  fiber::channel<int> go;
  std::atomic<bool> fiber_holds_mutex{false};
  std::atomic<bool> plain_holds_mutex{false};
  fiber::event_loop loop;
  fiber::task<int> answer;
  std::thread runner([&] {
    loop.spawn([&] {
      answer = fiber::spawn([&] {
        go.recv();
        return 42;
      });
      {
        std::lock_guard lock(m);
        fiber_holds_mutex = true;
        fiber::this_fiber::sleep_for(20ms);
        CHECK_FALSE(plain_holds_mutex.load());
      }
      for (int i = 0; i < 100; ++i) values.send(i);
      values.close();
      units.release(3);
      fiber::this_fiber::sleep_for(5ms);
      group.done();
      answer.join();
    }).detach();
    loop.run();
  });
  while (!fiber_holds_mutex) std::this_thread::sleep_for(1ms);
  {
    std::lock_guard lock(m);  // blocks this thread until the fiber unlocks
    plain_holds_mutex = true;
    CHECK(m.owned_by_caller());
  }
  plain_holds_mutex = false;
  int expected = 0;
  while (auto v = values.recv()) CHECK(*v == expected++);  // blocks between values
  CHECK(expected == 100);
  for (int i = 0; i < 3; ++i) units.acquire();
  CHECK_FALSE(units.try_acquire());
  group.wait();
  // A timed wait that times out, on a thread.
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(go.recv_for(20ms).status == fiber::channel_status::timeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 20ms);
  go.send(1);  // blocks until the task takes it
  while (!answer) std::this_thread::sleep_for(1ms);
  runner.join();
  CHECK(answer.get() == 42);
}

TEST_CASE("threads: select, once parked, picks either of two send cases on one channel", "[threads][channel]") {
  // Go queues a parked select's cases in its random order: with two send cases
  // waiting on one unbuffered channel, either may be the one a receiver meets.
  std::map<int, int> won;
  fiber::run([&] {
    for (int round = 0; round < 200; ++round) {
      fiber::channel<int> ch;
      auto sender = fiber::spawn([&] { fiber::select(fiber::on_send(ch, 1), fiber::on_send(ch, 2)); });
      fiber::this_fiber::yield();  // the select parks: no receiver yet
      ++won[*ch.recv()];
      sender.join();
    }
  });
  CHECK(won[1] > 20);
  CHECK(won[2] > 20);
}

// ---- the runtime: fiber::run on N workers -------------------------------------------

TEST_CASE("runtime: tasks spread over the workers - a started fiber never changes threads", "[threads][runtime]") {
  // A ring of fibers passing a token through unbuffered channels: 10^5 blocking
  // operations, most of them waking a fiber of another worker. Each checks its
  // thread after every one.
  constexpr int fibers = 8;
  const int laps = 100000 / fibers / 2 / scale;
  std::vector<std::thread::id> started_on(fibers);
  std::atomic<int> moved{0};
  fiber::run(
      [&] {
        std::vector<std::unique_ptr<fiber::channel<int>>> ring;
        for (int i = 0; i < fibers; ++i) ring.push_back(std::make_unique<fiber::channel<int>>());
        std::vector<fiber::task<void>> ts;
        for (int i = 0; i < fibers; ++i)
          ts.push_back(fiber::spawn([&, i] {
            busy_for(3ms);
            const auto me = this_thread();
            started_on[i] = me;
            fiber::channel<int>& in = *ring[i];
            fiber::channel<int>& out = *ring[(i + 1) % fibers];
            if (i == 0) out.send(0);
            for (int lap = 0; lap < laps; ++lap) {
              auto v = in.recv();
              if (this_thread() != me) ++moved;
              if (i == 0 && lap == laps - 1) break;
              out.send(*v + 1);
              if (this_thread() != me) ++moved;
            }
          }));
        for (auto& t : ts) t.join();
      },
      own_stacks(4));
  CHECK(moved == 0);
  INFO("the ring's fibers started on " << distinct(started_on) << " threads");
  CHECK(distinct(started_on) >= 2);
}

TEST_CASE("runtime: 8 workers on this machine: every queued task runs, on several threads", "[threads][runtime]") {
  const int n = 10000 / scale;
  std::vector<std::thread::id> ran_on(static_cast<std::size_t>(n));
  std::atomic<int> ran{0};
  const int total = fiber::run(
      [&] {
        std::vector<fiber::task<int>> ts;
        for (int i = 0; i < n; ++i)
          ts.push_back(fiber::spawn([&, i] {
            ran_on[static_cast<std::size_t>(i)] = this_thread();
            ++ran;
            // A little work, and a park now and then: the workers must share.
            volatile unsigned x = 0;
            for (int k = 0; k < 2000; ++k) x = x + static_cast<unsigned>(k);
            if (i % 7 == 0) fiber::this_fiber::yield();
            return 1;
          }));
        int sum = 0;
        for (auto& t : ts) sum += t.get();
        return sum;
      },
      own_stacks(8));
  CHECK(total == n);
  CHECK(ran == n);
  INFO("the tasks ran on " << distinct(ran_on) << " threads");
  CHECK(distinct(ran_on) >= 2);
}

TEST_CASE("runtime: migratable tasks move to an idle worker while ready - yields, sleeps and mutexes still work",
          "[threads][runtime]") {
  // Eight tasks that opted in, all started on worker 0 (eager spawns), each doing
  // work between yields, sleeps and a shared mutex: worker 1, idle, takes ready
  // ones. Where the target cannot migrate a started fiber, none moves.
  constexpr int fibers = 8;
  const int rounds = std::max(30, 300 / scale);
  std::atomic<int> moved{0};
  std::atomic<int> may{0};
  long counter = 0;
  fiber::run(
      [&] {
        fiber::mutex m;
        std::vector<fiber::task<void>> ts;
        for (int i = 0; i < fibers; ++i)
          ts.push_back(fiber::spawn(
              fiber::spawn_options{.eager = true, .migratable = true}, [&] {
                if (fiber::this_fiber::may_migrate()) ++may;
                std::set<std::thread::id> seen{this_thread()};
                for (int r = 0; r < rounds; ++r) {
                  busy_for(50us);
                  switch (r % 3) {
                    case 0:
                      fiber::this_fiber::yield();
                      break;
                    case 1:
                      fiber::this_fiber::sleep_for(20us);
                      break;
                    default: {
                      std::lock_guard lock(m);
                      const long c = counter;
                      fiber::this_fiber::yield();  // (holding it: the others park on it)
                      counter = c + 1;
                    }
                  }
                  seen.insert(this_thread());
                }
                if (seen.size() > 1) ++moved;
              }));
        for (auto& t : ts) t.join();
      },
      fiber::run_options{.threads = 2});
  CHECK(counter == static_cast<long>(fibers) * ((rounds + 0) / 3));
  INFO(moved << " of " << fibers << " tasks ran on more than one thread; may_migrate: " << may);
  if (may == fibers)
    CHECK(moved >= 1);
  else
    CHECK(moved == 0);
}

#if defined(__linux__)
TEST_CASE("runtime: a migratable task's stream keeps working on the worker it moved to", "[threads][runtime][io]") {
  // A task that opted in echoes on a stream made on worker 0, while two pinned
  // tasks keep worker 0 busy: woken by its socket, it is taken by worker 1 and
  // reads and writes the same stream there (its fd stays in worker 0's epoll).
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  // At least `messages` round trips; then on until the task has moved (at most
  // `cap`): the last reply is `stop`.
  const int messages = std::max(50, 500 / scale);
  const int cap = 100 * messages;
  constexpr std::uint32_t stop = 0xffffffffu;
  std::atomic<bool> done{false};
  std::atomic<int> answered{0};  // (Catch's checks are for the test's thread)
  std::thread peer([&] {
    for (int i = 0; i < cap; ++i) {
      std::uint32_t v = static_cast<std::uint32_t>(i), back = 0;
      if (::write(sv[1], &v, sizeof v) != sizeof v) break;
      std::size_t got = 0;
      while (got < sizeof back) {
        const ssize_t n = ::read(sv[1], reinterpret_cast<char*>(&back) + got, sizeof back - got);
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
      }
      if (got != sizeof back || (back != v * 2 + 1 && back != stop)) break;
      ++answered;
      if (back == stop) break;
    }
    ::close(sv[1]);
  });
  std::size_t threads_seen = 0;
  bool may = false;
  int echoed = 0;
  fiber::run(
      [&] {
        std::vector<fiber::task<void>> load;
        for (int i = 0; i < 2; ++i)
          load.push_back(fiber::spawn(fiber::spawn_options{.eager = true}, [&] {
            while (!done) {
              busy_for(200us);
              fiber::this_fiber::yield();
            }
          }));
        auto echo = fiber::spawn(
            fiber::spawn_options{.eager = true, .migratable = true}, [&] {
              may = fiber::this_fiber::may_migrate();
              // The stream is made here: the task counts as moved once it reads
              // or writes it on another thread (it may have moved before its
              // first read, and stayed there).
              fiber::io::stream s = fiber::io::stream::adopt(sv[0]);
              std::set<std::thread::id> seen{this_thread()};
              for (int i = 0; i < cap; ++i) {
                std::uint32_t v = 0;
                s.read_exact(&v, sizeof v);
                seen.insert(this_thread());
                const bool last = i + 1 == cap || (i + 1 >= messages && (seen.size() > 1 || !may));
                v = last ? stop : v * 2 + 1;
                s.write_all(&v, sizeof v);
                ++echoed;
                if (last) break;
              }
              threads_seen = seen.size();
            });
        echo.get();
        done = true;
        for (auto& t : load) t.join();
      },
      fiber::run_options{.threads = 2});
  peer.join();
  CHECK(echoed >= messages);
  CHECK(answered == echoed);
  INFO("the echoing task ran on " << threads_seen << " threads; may_migrate: " << may);
  if (may)
    CHECK(threads_seen >= 2);
  else
    CHECK(threads_seen == 1);
}

#endif

namespace {
// skynet: each task spawns `div` children (lazily: they queue unstarted) and
// joins them in order; the leaves return their number. Every join of a child
// not started yet races the donation of that child to a hungry worker.
long fan_out_sum(long num, long size, std::atomic<long>& leaves) {
  if (size == 1) {
    ++leaves;
    return num;
  }
  constexpr long div = 10;
  size /= div;
  fiber::task<long> children[div];
  for (long i = 0; i < div; ++i) children[i] = fiber::spawn(fan_out_sum, num + i * size, size, std::ref(leaves));
  long sum = 0;
  for (auto& c : children) sum += c.get();
  return sum;
}
}  // namespace

TEST_CASE("runtime: a recursive fan-out over 2 workers runs each task once - joins race the donation of unstarted "
          "children",
          "[threads][runtime]") {
  // (A join of a queued child ran it next on the joiner's worker; reading the
  // child's loop and its queued flag apart, a child donated meanwhile and adopted
  // by the other worker was run by both: "a fiber that had ended was resumed",
  // or a lost task and a shutdown that never ended.)
  // (Under valgrind, which runs one thread at a time and 20-50x slower: 10^5, once.)
  const bool valgrind = fiber_test::under_valgrind();
  const long size = valgrind ? 100000 : scale == 1 ? 1000000 : 10000;
  const int rounds = valgrind ? 1 : scale == 1 ? 3 : 2;
  // (Own stacks: a copied-stack task's children live below its frames and stay
  // on its worker, never donated: there would be no race to test.)
  fiber::event_loop::options opts;
  opts.stack_size = 16 * 1024;
  opts.stack = fiber::stack_kind::own;
  for (int round = 0; round < rounds; ++round) {
    std::atomic<long> leaves{0};
    const long sum = fiber::run(fiber::run_options{.threads = 2, .loop = opts}, fan_out_sum, 0L, size, std::ref(leaves));
    INFO("round " << round);
    CHECK(leaves.load() == size);
    CHECK(sum == size * (size - 1) / 2);
  }
}

TEST_CASE("runtime: cancellation across workers - shutdown with fibers parked on other workers", "[threads][runtime]") {
  std::atomic<int> cancelled{0};
  std::atomic<int> parked{0};
  fiber::channel<int> never;
  std::vector<std::thread::id> threads;
  std::mutex threads_mutex;
  fiber::run(
      [&] {
        auto park_forever = [&] {
          busy_for(3ms);
          {
            std::lock_guard lock(threads_mutex);
            threads.push_back(this_thread());
          }
          ++parked;
          try {
            never.recv();
          } catch (const fiber::cancelled&) {
            ++cancelled;
            throw;
          }
        };
        std::vector<fiber::task<void>> ts;
        for (int i = 0; i < 16; ++i) ts.push_back(fiber::spawn(park_forever));
        while (parked < 16) fiber::this_fiber::sleep_for(1ms);
        // Cancel half of them from here (a fiber of worker 0): each is woken on its own worker.
        for (int i = 0; i < 8; ++i) ts[static_cast<std::size_t>(i)].cancel();
        for (int i = 0; i < 8; ++i) REQUIRE_THROWS_AS(ts[static_cast<std::size_t>(i)].join(), fiber::cancelled);
        CHECK(cancelled == 8);
        for (int i = 8; i < 16; ++i) ts[static_cast<std::size_t>(i)].detach();
        // Return with 8 fibers parked: run() cancels them and waits for them.
      },
      own_stacks(3));
  CHECK(cancelled == 16);
  INFO("the parked fibers ran on " << distinct(threads) << " threads");
  CHECK(distinct(threads) >= 2);
}

TEST_CASE("runtime: a deadlock is reported with every worker's parked tasks", "[threads][runtime]") {
  fiber::channel<int> never;
  std::string what;
  try {
    fiber::run(
        [&] {
          std::vector<fiber::task<void>> ts;
          for (int i = 0; i < 6; ++i)
            ts.push_back(fiber::spawn(fiber::spawn_options{.name = "stuck"}, [&] { never.recv(); }));
          for (auto& t : ts) t.join();
        },
        own_stacks(2));
  } catch (const fiber::deadlock_error& e) {
    what = e.what();
  }
  INFO(what);
  CHECK_THAT(what, Catch::StartsWith("fiber::run: deadlock: 7 fiber(s) parked on 2 workers"));
  CHECK_THAT(what, Catch::Contains("worker 0: ") && Catch::Contains("worker 1: "));
  CHECK_THAT(what, Catch::Contains("\"stuck\": parked in fiber::channel::recv"));
  CHECK_THAT(what, Catch::Contains("parked in fiber::task::join"));
}

TEST_CASE("runtime: a randomized model of producers and consumers over the workers loses, duplicates and reorders "
          "nothing",
          "[threads][runtime]") {
  // Producers send (producer, sequence) to random channels of mixed capacities,
  // by send or by a select over two channels; consumers receive by recv or by a
  // select over every channel until all are closed. Every message must arrive
  // exactly once, and each consumer must see each producer's messages on a
  // channel in the order they were sent there.
  const std::uint64_t seed = GENERATE(1, 2, 3, 4, 5);
  constexpr int producers = 6;
  constexpr int consumers = 5;
  constexpr int channels = 4;
  const int per_producer = 500000 / producers / scale;  // 5x10^5 messages: 10^6 operations or more per seed
  const std::size_t capacities[channels] = {0, 1, 3, 64};
  std::vector<std::unique_ptr<fiber::channel<std::uint64_t>>> chans;
  for (std::size_t c : capacities) chans.push_back(std::make_unique<fiber::channel<std::uint64_t>>(c));
  std::vector<std::atomic<int>> received(static_cast<std::size_t>(producers * per_producer));
  std::atomic<long> operations{0};
  std::atomic<int> order_violations{0};
  std::atomic<int> out_of_range{0};
  INFO("seed " << seed);
  fiber::run(
      [&] {
        fiber::select_seed(seed);
        fiber::wait_group producing(producers);
        std::vector<fiber::task<void>> ts;
        for (int p = 0; p < producers; ++p)
          ts.push_back(fiber::spawn([&, p] {
            std::mt19937_64 rng(seed * 1000 + static_cast<std::uint64_t>(p));
            for (int s = 0; s < per_producer; ++s) {
              const std::uint64_t msg = static_cast<std::uint64_t>(p) << 32 | static_cast<std::uint64_t>(s);
              const std::size_t a = rng() % channels;
              if (rng() % 4 == 0) {
                const std::size_t b = (a + 1 + rng() % (channels - 1)) % channels;
                fiber::select(fiber::on_send(*chans[a], msg), fiber::on_send(*chans[b], msg));
              } else {
                chans[a]->send(msg);
              }
              ++operations;
            }
            producing.done();
          }));
        for (int c = 0; c < consumers; ++c)
          ts.push_back(fiber::spawn([&, c] {
            std::map<std::pair<int, std::size_t>, std::int64_t> last;  // (producer, channel) -> sequence
            auto take = [&](std::size_t ch, std::uint64_t msg) {
              const int p = static_cast<int>(msg >> 32);
              const auto s = static_cast<std::int64_t>(msg & 0xffffffffu);
              if (p >= producers || s >= per_producer) {
                ++out_of_range;
                return;
              }
              auto [it, fresh] = last.emplace(std::make_pair(p, ch), s);
              if (!fresh) {
                if (s <= it->second) ++order_violations;
                it->second = s;
              }
              ++received[static_cast<std::size_t>(p * per_producer + s)];
              ++operations;
            };
            std::vector<bool> open(channels, true);
            std::size_t still_open = channels;
            std::mt19937 rng(static_cast<unsigned>(seed) + 77u * static_cast<unsigned>(c));
            while (still_open) {
              if (rng() % 2) {
                // (One channel only: not for long, or every consumer could wait
                // where no producer sends.)
                const std::size_t ch = rng() % channels;
                if (!open[ch]) continue;
                auto r = chans[ch]->recv_for(1ms);
                if (r.status == fiber::channel_status::ok)
                  take(ch, *r.value);
                else if (r.status == fiber::channel_status::closed)
                  open[ch] = false, --still_open;
              } else {
                auto on = [&](std::size_t ch) {
                  return fiber::on_recv(*chans[ch], [&, ch](std::optional<std::uint64_t> v) {
                    if (v)
                      take(ch, *v);
                    else if (open[ch])
                      open[ch] = false, --still_open;
                  });
                };
                fiber::select(on(0), on(1), on(2), on(3));
              }
            }
          }));
        producing.wait();
        for (auto& ch : chans) ch->close();
        for (auto& t : ts) t.join();
      },
      fiber::run_options{.threads = 4});
  CHECK(out_of_range == 0);
  CHECK(order_violations == 0);
  const auto [lost, duplicated] = fiber_test::missing_and_duplicated(received);
  CHECK(lost == 0);
  CHECK(duplicated == 0);
  CHECK(operations >= 2L * producers * per_producer);
}

// ---- placing a task on a worker: spawn_options::worker --------------------------------

TEST_CASE("runtime: spawn_options::worker runs each task on the worker it names, on that worker's thread",
          "[threads][runtime]") {
  constexpr unsigned workers = 3;
  constexpr int per_worker = 40 / scale + 4;
  struct where {
    unsigned worker = 99;
    std::thread::id thread;
  };
  std::vector<where> ran(workers * per_worker);
  unsigned seen_workers = 0;
  fiber::run(
      [&] {
        seen_workers = fiber::this_runtime::workers();
        CHECK(fiber::this_runtime::worker() == 0);  // the main task runs on worker 0
        std::vector<fiber::task<void>> ts;
        for (int i = 0; i < per_worker; ++i)
          for (unsigned w = 0; w < workers; ++w)
            ts.push_back(fiber::spawn({.worker = w}, [&, w, i] {
              // Busy without a park: the idle workers would take unplaced tasks meanwhile.
              busy_for(200us);
              ran[w * per_worker + static_cast<unsigned>(i)] = {fiber::this_runtime::worker(),
                                                                std::this_thread::get_id()};
            }));
        for (auto& t : ts) t.join();
      },
      fiber::run_options{.threads = workers});
  CHECK(seen_workers == workers);
  std::vector<std::thread::id> thread_of(workers);
  for (unsigned w = 0; w < workers; ++w) {
    thread_of[w] = ran[w * per_worker].thread;
    for (int i = 0; i < per_worker; ++i) {
      const where& r = ran[w * per_worker + static_cast<unsigned>(i)];
      INFO("worker " << w << ", task " << i);
      CHECK(r.worker == w);
      CHECK(r.thread == thread_of[w]);
    }
  }
  CHECK(distinct(thread_of) == workers);
}

TEST_CASE("runtime: tasks placed on another worker spawn, join and cancel across workers", "[threads][runtime]") {
  std::atomic<int> leaves{0};
  std::atomic<int> cancelled{0};
  std::atomic<int> waiting{0};
  std::atomic<int> misplaced{0};
  fiber::channel<int> never;  // (outlives the tasks parked on it)
  const int sum = fiber::run(
      [&] {
        // A task on worker 1 spawns on workers 0 and 1 and joins them.
        // (Catch's checks are for the test's thread, worker 0: the others count.)
        auto parent = fiber::spawn({.worker = 1}, [&] {
          if (fiber::this_runtime::worker() != 1) ++misplaced;
          std::vector<fiber::task<int>> children;
          for (int i = 0; i < 10; ++i)
            children.push_back(fiber::spawn({.worker = static_cast<unsigned>(i % 2)}, [&, i] {
              if (fiber::this_runtime::worker() != static_cast<unsigned>(i % 2)) ++misplaced;
              fiber::this_fiber::yield();
              ++leaves;
              return i;
            }));
          int s = 0;
          for (auto& c : children) s += c.get();
          return s;
        });
        // Tasks placed on worker 1 that wait forever: one cancelled from here
        // (worker 0), the other left to the shutdown (cancelled and waited for).
        auto wait_forever = [&] {
          ++waiting;
          try {
            never.recv();
          } catch (const fiber::cancelled&) {
            ++cancelled;
            throw;
          }
        };
        auto waiter = fiber::spawn({.worker = 1}, wait_forever);
        fiber::spawn({.worker = 1}, wait_forever).detach();
        while (waiting < 2) fiber::this_fiber::sleep_for(1ms);
        waiter.cancel();
        CHECK_THROWS_AS(waiter.join(), fiber::cancelled);
        CHECK(cancelled == 1);
        // Cancelled at once: before it starts (its body never runs), or parked.
        auto early = fiber::spawn({.worker = 1}, wait_forever);
        early.cancel();
        CHECK_THROWS_AS(early.join(), fiber::cancelled);
        return parent.get();
      },
      fiber::run_options{.threads = 2});
  CHECK(sum == 45);
  CHECK(leaves == 10);
  CHECK(misplaced == 0);
  CHECK(cancelled >= 2);  // (and the third, if it had started)
}

TEST_CASE("runtime: spawn_options::worker beyond the workers throws, a loop of its own is worker 0",
          "[threads][runtime]") {
  CHECK(fiber::this_runtime::workers() == 0);  // no loop on this thread
  CHECK(fiber::this_runtime::worker() == 0);
  fiber::run([] {
    CHECK(fiber::this_runtime::workers() == 1);
    CHECK(fiber::this_runtime::worker() == 0);
    CHECK(fiber::spawn({.worker = 0}, [] { return 7; }).get() == 7);
    CHECK_THROWS_WITH(fiber::spawn({.worker = 1}, [] {}),
                      Catch::Contains("spawn_options::worker is 1, but the runtime has 1 worker(s)"));
  });
  fiber::run(
      [] {
        CHECK_THROWS_AS(fiber::spawn({.worker = 2}, [] {}), fiber::error);
        CHECK_THROWS_AS(fiber::spawn({.worker = fiber::spawn_options::any_worker - 1}, [] {}), fiber::error);
      },
      fiber::run_options{.threads = 2});
}

TEST_CASE("runtime: a task placed on a worker that has left, during the shutdown, runs on the spawner's",
          "[threads][runtime]") {
  // The main task returns with a task parked on worker 0; cancelled, it waits
  // until worker 1 has surely left (nothing runs there), then places a task on
  // it: that task still runs, here.
  std::atomic<bool> placed_ran{false};
  std::atomic<unsigned> placed_on{99};
  fiber::channel<int> never;
  fiber::run(
      [&] {
        fiber::spawn({.worker = 0}, [&] {
          try {
            never.recv();
          } catch (const fiber::cancelled&) {
            fiber::this_fiber::sleep_for(100ms);
            fiber::spawn({.worker = 1}, [&] {
              placed_on = fiber::this_runtime::worker();
              placed_ran = true;
            }).join();
            throw;
          }
        }).detach();
        fiber::this_fiber::sleep_for(1ms);  // (it parks in recv)
      },
      fiber::run_options{.threads = 2});
  CHECK(placed_ran);
  INFO("the task placed on worker 1 ran on worker " << placed_on);
  CHECK(placed_on <= 1);
}
