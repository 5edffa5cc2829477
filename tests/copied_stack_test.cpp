// Copied stacks (stack_kind::copied, event_loop.hpp; src/loop/copied_stacks.hpp):
// fibers that run on their loop's shared stack and keep only the bytes they use
// while parked. (The whole loop suite also runs with every task on a copied
// stack: tests/CMakeLists.txt, FIBER_STACK=copied.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <csignal>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fiber/channel.hpp"
#include "fiber/debug.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/sync.hpp"

#include "death.hpp"
#include "environment.hpp"

using namespace std::chrono_literals;

namespace {

constexpr fiber::spawn_options copied{.stack = fiber::stack_kind::copied};
constexpr fiber::spawn_options own{.stack = fiber::stack_kind::own};

#if defined(FIBER_TEST_EMULATED) || defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int scale = 10;
#else
constexpr int scale = 1;
#endif

// Fills a frame of `depth` nested calls with a pattern of `seed`, parks in the
// innermost on `ch`, then checks every byte: a frame that was copied away and
// back, or overwritten by another fiber's, shows.
[[gnu::noinline]] bool nest_and_park(fiber::channel<int>& ch, int seed, int depth) {
  volatile unsigned char local[200];
  for (std::size_t i = 0; i < sizeof local; ++i) local[i] = static_cast<unsigned char>(seed * 31 + depth * 7 + i);
  bool ok = true;
  if (depth > 0)
    ok = nest_and_park(ch, seed, depth - 1);
  else
    (void)ch.recv();
  for (std::size_t i = 0; i < sizeof local; ++i)
    if (local[i] != static_cast<unsigned char>(seed * 31 + depth * 7 + i)) ok = false;
  return ok;
}

}  // namespace

TEST_CASE("copied stacks: parked fibers' frames come back intact, at every depth, with fibers of both kinds",
          "[loop][copied]") {
  fiber::channel<int> ch;
  int intact = 0;
  fiber::run([&] {
    std::vector<fiber::task<bool>> ts;
    for (int i = 0; i < 200; ++i)
      ts.push_back(fiber::spawn(i % 3 == 2 ? own : copied, [&ch, i] { return nest_and_park(ch, i, i % 17); }));
    fiber::this_fiber::yield();  // each of them parks
    for (int i = 0; i < 200; ++i) ch.send(i);
    for (auto& t : ts) intact += t.get() ? 1 : 0;
  });
  REQUIRE(intact == 200);
}

TEST_CASE("copied stacks: a copied-stack spawner's locals stay put for its copied-stack children", "[loop][copied]") {
  long total = 0;
  fiber::event_loop loop;
  auto parent = loop.spawn(copied, [&] {
    long sum = 0;  // the children add to it by reference while the parent is parked
    std::string text(100, 'x');
    std::vector<fiber::task<void>> kids;
    for (int i = 0; i < 100; ++i)
      kids.push_back(fiber::spawn(copied, [&sum, &text, i] {
        fiber::this_fiber::sleep_for(std::chrono::microseconds(i % 7));
        sum += i + static_cast<long>(text.size());
        fiber::this_fiber::yield();
      }));
    for (auto& k : kids) k.join();
    total = sum;
  });
  loop.run();
  parent.get();
  REQUIRE(total == 99 * 100 / 2 + 100 * 100);
}

TEST_CASE("copied stacks: a randomized mix of kinds over channels, select, mutex and sleeps loses and duplicates "
          "nothing",
          "[loop][copied]") {
  const std::uint64_t seed = GENERATE(1, 2, 3);
  const int threads = GENERATE(1, 2);
  INFO("seed " << seed << ", " << threads << " worker(s)");
  constexpr int producers = 8, consumers = 8, channels = 3;
  // (Under valgrind, 20-50x slower and one thread at a time: as under the emulators.)
  const int per_producer = 20000 / (fiber_test::under_valgrind() ? 10 : scale);
  std::vector<std::unique_ptr<fiber::channel<std::string>>> chans;
  for (std::size_t cap : {0, 1, 16}) chans.push_back(std::make_unique<fiber::channel<std::string>>(cap));
  std::vector<std::atomic<int>> received(static_cast<std::size_t>(producers * per_producer));
  std::atomic<int> bad{0};
  fiber::mutex m;
  long under_lock = 0;
  fiber::run(
      [&] {
        fiber::select_seed(seed);
        std::mt19937_64 kinds(seed);
        fiber::wait_group producing(producers);
        std::vector<fiber::task<void>> ts;
        for (int p = 0; p < producers; ++p)
          ts.push_back(fiber::spawn(kinds() % 2 ? copied : own, [&, p] {
            std::mt19937_64 rng(seed * 100 + static_cast<std::uint64_t>(p));
            for (int s = 0; s < per_producer; ++s) {
              // Long enough to live on the heap, and short (in the string's own
              // bytes): both must survive a copy of their sender's frames.
              std::string msg = std::to_string(p) + ":" + std::to_string(s) + (s % 2 ? std::string(40, '.') : "");
              const std::size_t a = rng() % channels;
              switch (rng() % 4) {
                case 0: {
                  const std::size_t b = (a + 1) % channels;
                  std::string copy = msg;
                  const int which = fiber::select(fiber::on_send(*chans[a], std::move(msg)),
                                                  fiber::on_send(*chans[b], std::move(copy)));
                  // The case not taken keeps its value.
                  if ((which == 0 ? copy : msg).rfind(std::to_string(p) + ":", 0) != 0) ++bad;
                  break;
                }
                case 1:
                  while (!chans[a]->send_for(msg, 1ms)) {
                  }
                  break;
                default:
                  chans[a]->send(std::move(msg));
              }
              if (s % 64 == 0) {
                std::lock_guard lock(m);
                ++under_lock;
                fiber::this_fiber::yield();
              }
            }
            producing.done();
          }));
        for (int c = 0; c < consumers; ++c)
          ts.push_back(fiber::spawn(kinds() % 2 ? copied : own, [&, c] {
            std::vector<bool> open(channels, true);
            std::size_t still_open = channels;
            std::mt19937 rng(static_cast<unsigned>(seed) + 77u * static_cast<unsigned>(c));
            auto take = [&](const std::string& v) {
              const auto colon = v.find(':');
              const int p = std::stoi(v.substr(0, colon));
              const int s = std::stoi(v.substr(colon + 1));
              if (p < 0 || p >= producers || s < 0 || s >= per_producer) {
                ++bad;
                return;
              }
              ++received[static_cast<std::size_t>(p * per_producer + s)];
            };
            while (still_open) {
              if (rng() % 2) {
                const std::size_t ch = rng() % channels;
                if (!open[ch]) continue;
                auto r = chans[ch]->recv_for(1ms);
                if (r.status == fiber::channel_status::ok)
                  take(*r.value);
                else if (r.status == fiber::channel_status::closed)
                  open[ch] = false, --still_open;
              } else {
                auto on = [&](std::size_t ch) {
                  return fiber::on_recv(*chans[ch], [&, ch](std::optional<std::string> v) {
                    if (v)
                      take(*v);
                    else if (open[ch])
                      open[ch] = false, --still_open;
                  });
                };
                fiber::select(on(0), on(1), on(2));
              }
            }
          }));
        producing.wait();
        for (auto& ch : chans) ch->close();
        for (auto& t : ts) t.get();
      },
      {.threads = static_cast<unsigned>(threads)});
  const auto [missing, duplicated] = fiber_test::missing_and_duplicated(received);
  CHECK(bad == 0);
  CHECK(missing == 0);
  CHECK(duplicated == 0);
  CHECK(under_lock == producers * ((per_producer + 63) / 64));
}

TEST_CASE("copied stacks: 10^5 copied-stack fibers parked at once, each in a fraction of a page", "[loop][copied]") {
  const long n = fiber_test::under_valgrind() ? 5000 : 100000;
  long woken = 0;
  fiber::run([&] {
    fiber::channel<long> release;
    long parked = 0;
    std::vector<fiber::task<void>> ts;
    ts.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i)
      ts.push_back(fiber::spawn(copied, [&] {
        ++parked;
        woken += *release.recv();
      }));
    while (parked < n) fiber::this_fiber::yield();
    // Every one of them is parked now, its frames copied away but for the last's.
    std::ostringstream text;
    fiber::dump(text);
    const std::string listed = text.str();
    CHECK(std::count(listed.begin(), listed.end(), '\n') > n);  // each listed
    for (long i = 0; i < n; ++i) release.send(1);
    for (auto& t : ts) t.join();
  });
  REQUIRE(woken == n);
}

TEST_CASE("copied stacks: cancellation, exceptions across a park, and a loop destroyed with copied-stack fibers "
          "parked",
          "[loop][copied]") {
  int unwound = 0;
  {
    fiber::event_loop loop;
    fiber::channel<int> never;
    struct guard {
      int& n;
      ~guard() { ++n; }
    };
    for (int i = 0; i < 10; ++i)
      loop.spawn(copied, [&] {
        guard g{unwound};
        (void)never.recv();
      }).detach();
    auto cancelled = loop.spawn(copied, [&] {
      guard g{unwound};
      (void)never.recv();
    });
    auto thrower = loop.spawn(copied, [] {
      try {
        throw std::runtime_error("in flight");
      } catch (const std::runtime_error& e) {
        // Parked inside a catch block while other copied-stack fibers run.
        fiber::this_fiber::sleep_for(1ms);
        return std::string(e.what()) + (std::current_exception() ? " and current" : "");
      }
    });
    auto canceller = loop.spawn(copied, [&] {
      fiber::this_fiber::sleep_for(2ms);
      cancelled.cancel();
    });
    (void)loop.run_once(0ms);
    for (int i = 0; i < 50 && !(thrower.done() && cancelled.done()); ++i) (void)loop.run_once(5ms);
    REQUIRE_THROWS_AS(cancelled.get(), fiber::cancelled);
    REQUIRE(thrower.get() == "in flight and current");
    REQUIRE(unwound == 1);
  }  // the ten parked ones unwind
  REQUIRE(unwound == 11);
}

TEST_CASE("copied stacks: misuse is refused with a message", "[loop][copied]") {
  fiber::run([] {
    REQUIRE_THROWS_WITH(fiber::spawn({.stack_size = 1 << 24, .stack = fiber::stack_kind::copied}, [] {}),
                        Catch::Contains("copied-stack") && Catch::Contains("stack_size"));
  });
  fiber::run(
      [] {
        REQUIRE_THROWS_WITH(fiber::spawn({.stack = fiber::stack_kind::copied, .migratable = true}, [] {}),
                            Catch::Contains("copied-stack") && Catch::Contains("migratable"));
      },
      {.threads = 2});
}

#if FIBER_CHECKS && !defined(_WIN32)
TEST_CASE("copied stacks: a waiter left on a parked copied-stack fiber's frames is reported (FIBER_CHECKS)",
          "[loop][copied]") {
  // What the library's primitives never do (their waiters and values are off
  // the stack of a copied-stack fiber), done here on purpose: a waiter on the
  // fiber's own frames, whose bytes then leave for another copied-stack fiber.
  auto d = fiber_test::run_in_child([] {
    std::signal(SIGABRT, SIG_DFL);  // die quietly: not through Catch's handler
    fiber::run([] {
      auto stray = fiber::spawn(copied, [] {
        fiber::detail::waiter w;  // on the shared stack
        (void)fiber::detail::park(&w, 1, std::chrono::steady_clock::now() + 1h, "test: a stray waiter");
      });
      fiber::this_fiber::yield();  // it parks
      fiber::spawn(copied, [] {}).join();  // its bytes go
      stray.cancel();
    });
  });
  INFO(d.stderr_text);
  CHECK(d.signal != 0);
  CHECK_THAT(d.stderr_text, Catch::Contains("lies on the shared stack"));
}
#endif
