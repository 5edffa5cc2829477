// Generators on copied stacks (fiber::stack_kind::copied; generator.hpp): frames
// intact however generators interleave and nest, values that outlive the
// frames they came from, unwinding, memory, and the rules' errors.
// (generator_test.cpp runs again with every generator on a copied stack:
// fiber_generator_copied_tests.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "environment.hpp"
#include "fiber/channel.hpp"
#include "fiber/debug.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/generator.hpp"

namespace {

constexpr auto copied = fiber::stack_kind::copied;

using checker = fiber::generator<long, int>;

// Recurses `depth` frames, each with a pattern of its own, then yields: after
// every resume, each frame's pattern is checked (all of them came back).
void descend(checker::yielder& co, long id, int depth, std::vector<const long*>& frames, int rounds) {
  long pattern[6];
  for (long& p : pattern) p = id * 1000 + depth;
  frames.push_back(pattern);
  if (depth > 0) {
    descend(co, id, depth - 1, frames, rounds);
  } else {
    for (int k = 0; k < rounds; ++k) {
      bool intact = true;
      for (std::size_t i = 0; i < frames.size(); ++i)
        for (int j = 0; j < 6; ++j)
          if (frames[i][j] != id * 1000 + static_cast<long>(frames.size() - 1 - i)) intact = false;
      const int got = co.yield(intact ? id * 100000 + k : -1);
      if (got != k + 1) throw std::logic_error("a send came back wrong");
    }
  }
  frames.pop_back();
}

checker make_checker(long id, int depth, int rounds) {
  return checker{copied, [=](checker::yielder& co) {
    std::vector<const long*> frames;
    descend(co, id, depth, frames, rounds);
  }};
}

long rss_bytes() {
#if defined(__linux__)
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * 4096;
#else
  return 0;
#endif
}

}  // namespace

TEST_CASE("copied generators: the seed's exchange on a copied stack") {
  std::vector<std::string> log;
  fiber::generator<std::string, int> c{copied, [&](auto& co) {
    std::string r;
    for (;;) {
      const int n = co.yield(r);
      if (!n) return;
      log.push_back("consuming " + std::to_string(n));
      r = "200 OK";
    }
  }};
  REQUIRE(c.start().empty());
  for (int n = 1; n <= 5; ++n) REQUIRE(c.send(n) == "200 OK");
  c.close();
  REQUIRE(c.done());
  REQUIRE(log.size() == 5);
  REQUIRE(log.back() == "consuming 5");
}

TEST_CASE("copied generators: 64 generators resumed in random order keep every frame, at every depth") {
  const std::uint64_t seed = GENERATE(1, 2, 3);
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  constexpr int count = 64, rounds = 40;
  std::vector<checker> gens;
  std::vector<int> next(count, 0);
  for (int i = 0; i < count; ++i) gens.push_back(make_checker(i + 1, static_cast<int>(rng() % 48), rounds));
  for (int i = 0; i < count; ++i) REQUIRE(gens[static_cast<std::size_t>(i)].start() == (i + 1) * 100000L);
  int left = count;
  while (left > 0) {
    const auto i = static_cast<std::size_t>(rng() % count);
    if (gens[i].done()) continue;
    const int k = ++next[i];
    if (k == rounds) {
      REQUIRE_THROWS_AS(gens[i].send(k), fiber::stop_iteration);  // the body returns
      --left;
      continue;
    }
    REQUIRE(gens[i].send(k) == static_cast<long>(i + 1) * 100000 + k);
  }
}

TEST_CASE("copied generators: pipelines - a generator pulling from another on the same stack or on the next") {
  auto numbers = [](int n) {
    return fiber::generator<int>{copied, [n](auto& co) {
      for (int i = 1; i <= n; ++i) co.yield(i);
    }};
  };
  auto squares_of = [](fiber::generator<int>& source) {
    return fiber::generator<long>{copied, [&source](auto& co) {
      for (int v : source) co.yield(static_cast<long>(v) * v);
    }};
  };
  SECTION("the source started first, by the caller: both on one stack, the puller's frames copied away") {
    auto source = numbers(100);
    REQUIRE(source.next() == 1);
    auto squares = squares_of(source);
    long sum = 0;
    for (long v : squares) sum += v;
    REQUIRE(sum == 338350 - 1);  // 2..100 squared: 1 was taken by next()
  }
  SECTION("the source first run by the puller: on a stack of its own") {
    auto source = numbers(100);
    auto squares = squares_of(source);
    long sum = 0;
    for (long v : squares) sum += v;
    REQUIRE(sum == 338350);
  }
  SECTION("a chain of three consumers, each primed by the caller, each sending to the next") {
    using consumer = fiber::generator<std::string, int>;
    std::vector<int> last;
    consumer c3{copied, [&](auto& co) {
      while (int n = co.yield("c3 ok")) last.push_back(n);
    }};
    consumer c2{copied, [&](auto& co) {
      std::string r;
      while (int n = co.yield(r)) r = "c2 <- " + c3.send(n * 10);
    }};
    consumer c1{copied, [&](auto& co) {
      std::string r;
      while (int n = co.yield(r)) r = "c1 <- " + c2.send(n + 1);
    }};
    c3.start();
    c2.start();
    c1.start();
    for (int n = 1; n <= 200; ++n) REQUIRE(c1.send(n) == "c1 <- c2 <- c3 ok");
    c1.close();
    c2.close();
    c3.close();
    REQUIRE(last.size() == 200);
    REQUIRE(last.back() == 2010);
  }
}

TEST_CASE("copied generators: a yielded value stays valid while other generators run") {
  auto words = [](const char* prefix) {
    return fiber::generator<std::string>{copied, [prefix](auto& co) {
      for (int i = 0; i < 50; ++i) {
        std::string local = std::string(prefix) + std::to_string(i) + std::string(i % 2 ? 40 : 0, '.');
        co.yield(local);
      }
    }};
  };
  auto a = words("a");
  auto b = words("b");
  int i = 0;
  for (const std::string& word : a) {  // a reference to the yielded value
    const std::string copy = word;
    REQUIRE(b.next().rfind("b", 0) == 0);  // b's frames take the place of a's
    REQUIRE(word == copy);
    ++i;
  }
  REQUIRE(i == 50);
}

TEST_CASE("copied generators: close, exceptions and destruction unwind frames that were copied away") {
  auto destroyed = std::make_shared<int>(0);
  struct guard {
    std::shared_ptr<int> count;
    ~guard() { ++*count; }
  };
  auto holder = [&](int depth) {
    return fiber::generator<int>{copied, [destroyed, depth](auto& co) {
      auto nest = [&](auto& self, int d) -> void {
        guard g{destroyed};
        if (d == 0) {
          for (int i = 0; i < 1000000; ++i) co.yield(d);  // (closed long before)
          return;
        }
        self(self, d - 1);
      };
      nest(nest, depth);
    }};
  };
  {
    auto a = holder(5);
    auto b = holder(7);
    a.next();
    b.next();  // a's frames away
    a.close();  // back, unwound
    REQUIRE(*destroyed == 6);
    REQUIRE(a.done());
  }  // b, in place, unwound by its destructor
  REQUIRE(*destroyed == 6 + 8);
  {
    auto a = holder(3);
    auto b = holder(3);
    a.next();
    b.next();
  }  // b destroyed first, then a (copied away): unwound too
  REQUIRE(*destroyed == 14 + 8);

  fiber::generator<int, int> thrower{copied, [](auto& co) {
    int n = co.yield(0);
    try {
      n = co.yield(n);
    } catch (const std::invalid_argument&) {
      co.yield(-1);
    }
    throw std::runtime_error("from the body " + std::to_string(n));
  }};
  auto other = holder(2);
  thrower.start();
  REQUIRE(thrower.send(4) == 4);
  other.next();  // thrower's frames away
  REQUIRE(thrower.throw_exception(std::invalid_argument("x")) == -1);
  other.close();
  REQUIRE_THROWS_WITH(thrower.send(1), "from the body 4");
  REQUIRE(thrower.done());
}

TEST_CASE("copied generators: 10^5 suspended at once, each in a fraction of a page") {
  const int n = fiber_test::under_valgrind() ? 2000 : 100000;
  const long before = rss_bytes();
  std::vector<checker> gens;
  gens.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    gens.push_back(make_checker(i, i % 4, 2));
    REQUIRE(gens.back().start() == static_cast<long>(i) * 100000);
  }
  const long grown = rss_bytes() - before;
  INFO("RSS grew by " << grown << " bytes for " << n << " suspended generators");
  // (The assembly's switch leaves nothing below the stack pointer; Boost's and
  // ucontext's leave up to 1 KiB there, copied too.)
#if defined(__linux__) && !defined(FIBER_TEST_EMULATED) && !FIBER_ASAN && !FIBER_TSAN && FIBER_BACKEND_ASM
  if (!fiber_test::under_valgrind()) CHECK(grown / n < 2048);  // an own stack touches 4 KiB at least
#endif
  std::ostringstream listed;
  fiber::dump(listed);
  const std::string text = listed.str();
  CHECK(static_cast<long>(std::count(text.begin(), text.end(), '\n')) >= n);  // each listed
  for (int i = n - 1; i >= 0; --i) REQUIRE(gens[static_cast<std::size_t>(i)].send(1) == static_cast<long>(i) * 100000 + 1);
  gens.clear();  // each unwound
}

TEST_CASE("copied generators: misuse is refused with a message") {
  fiber::generator<int> g{copied, [](auto& co) {
    for (;;) co.yield(1);
  }};
  REQUIRE(g.next() == 1);
  std::string what;
  std::thread([&] {
    try {
      g.next();
    } catch (const fiber::error& e) {
      what = e.what();
    }
  }).join();
  CHECK(what.find("another thread") != std::string::npos);
  REQUIRE(g.next() == 1);  // still fine on its own thread
  REQUIRE_THROWS_AS((fiber::generator<int>{static_cast<fiber::stack_kind>(9), [](auto& co) { co.yield(1); }}),
                    fiber::error);
}

TEST_CASE("copied generators: a body parked in an event loop holds its stack until it yields") {
  fiber::run([] {
    fiber::channel<int> wake;
    fiber::generator<int> before{copied, [](auto& co) {
      for (int i = 0;; ++i) co.yield(i);
    }};
    REQUIRE(before.next() == 0);  // on the first shared stack
    fiber::generator<int> parks{copied, [&](auto& co) {
      co.yield(*wake.recv());  // parks its task in the middle of its body
    }};
    auto task = fiber::spawn([&] { return parks.next(); });
    while (!parks.started()) fiber::this_fiber::yield();
    fiber::this_fiber::yield();
    // `parks` took the first stack (`before` was only suspended there) and is
    // in the middle of its body: `before` cannot come back now.
    std::string what;
    try {
      before.next();
    } catch (const fiber::error& e) {
      what = e.what();
    }
    CHECK(what.find("in the middle of its body") != std::string::npos);
    // A generator started now takes another stack.
    fiber::generator<int> fresh{copied, [](auto& co) { co.yield(42); }};
    REQUIRE(fresh.next() == 42);
    wake.send(7);
    REQUIRE(task.get() == 7);
    REQUIRE(before.next() == 1);  // its stack is free again
  });
}

TEST_CASE("copied generators: driven by loop tasks of both stack kinds, across their parks") {
  for (auto kind : {fiber::stack_kind::own, fiber::stack_kind::copied}) {
    std::atomic<long> total{0};
    fiber::run(
        [&] {
          std::vector<fiber::task<void>> ts;
          for (int t = 0; t < 8; ++t)
            ts.push_back(fiber::spawn([&, t] {
              auto g = make_checker(t + 1, t * 3, 30);
              long sum = g.start();
              for (int k = 1; k < 30; ++k) {
                fiber::this_fiber::yield();  // the other tasks and their generators run
                sum += g.send(k);
              }
              total += sum;
            }));
          for (auto& t : ts) t.join();
        },
        {.threads = 1, .loop = {.stack = kind}});
    long expected = 0;
    for (int t = 0; t < 8; ++t)
      for (int k = 0; k < 30; ++k) expected += (t + 1) * 100000L + k;
    REQUIRE(total == expected);
  }
}

TEST_CASE("copied generators: a refused resume changes nothing, and its thread is the one of its first run") {
  fiber::generator<int> g{copied, [](auto& co) {
    for (int i = 0;; ++i) co.yield(i);
  }};
  REQUIRE(g.next() == 0);  // its first run: this thread's from now on
  int refused = 0;
  std::thread([&] {
    auto attempt = [&](auto&& op) {
      try {
        op();
      } catch (const fiber::error&) {
        ++refused;
      }
    };
    attempt([&] { (void)g.next(); });
    attempt([&] { g.close(); });
    attempt([&] { (void)g.throw_exception(std::runtime_error("x")); });
  }).join();
  REQUIRE(refused == 3);
  REQUIRE_FALSE(g.done());
  REQUIRE(g.next() == 1);  // neither the close nor the exception was left pending
  g.close();
  REQUIRE(g.done());

  // Made here, run on another thread only.
  fiber::generator<int> elsewhere{copied, [](auto& co) { co.yield(5); }};
  int got = 0;
  bool done = false;
  std::thread([&] {
    got = elsewhere.next();
    elsewhere.close();
    done = elsewhere.done();
  }).join();
  REQUIRE(got == 5);
  REQUIRE(done);
}

TEST_CASE("copied generators: a loop destroyed with a task parked inside nested generators of one stack unwinds "
          "them all") {
  int unwound = 0;
  struct guard {
    int& n;
    ~guard() { ++n; }
  };
  fiber::channel<int> never;
  fiber::generator<int> inner{copied, [&](auto& co) {
    guard g{unwound};
    co.yield(0);
    co.yield(*never.recv());  // parks its task here, resumed from outer's body
  }};
  REQUIRE(inner.next() == 0);  // on the first shared stack
  fiber::generator<int> outer{copied, [&](auto& co) {
    guard g{unwound};
    co.yield(inner.next());  // inner shares outer's stack: through a swapper
  }};
  {
    fiber::event_loop loop;
    auto t = loop.spawn([&] { return outer.next(); });
    (void)loop.run_once(std::chrono::milliseconds(0));
    REQUIRE_FALSE(t.done());
    t.detach();
  }  // the parked task unwinds through inner's frames and then outer's
  CHECK(unwound == 2);
  CHECK(inner.done());
  CHECK(outer.done());
}
