#include <catch2/catch.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fiber/generator.hpp"

#if FIBER_TEST_COPIED_GENERATORS
// The same tests with every generator made from a body alone on a copied stack
// (fiber_generator_copied_tests, tests/CMakeLists.txt); those given a stack
// allocator keep it.
#  include <type_traits>
#  include <utility>
template <class Yield, class Send = void>
struct generator : fiber::generator<Yield, Send> {
  using base = fiber::generator<Yield, Send>;
  using base::base;
  template <class F>
    requires(!std::is_base_of_v<base, std::decay_t<F>> && std::is_invocable_v<std::decay_t<F>&, typename base::yielder&>)
  explicit generator(F&& body) : base(fiber::stack_kind::copied, std::forward<F>(body)) {}
};
#else
using fiber::generator;
#endif

TEST_CASE("generator: start runs to the first yield, send exchanges values both ways") {
  std::vector<int> received;
  generator<std::string, int> g{[&](auto& co) {
    int n = co.yield("ready");
    while (n != 0) {
      received.push_back(n);
      n = co.yield("got " + std::to_string(n));
    }
  }};
  REQUIRE_FALSE(g.started());
  REQUIRE(received.empty());  // nothing runs before start()
  REQUIRE(g.start() == "ready");
  REQUIRE(g.send(1) == "got 1");
  REQUIRE(g.send(2) == "got 2");
  REQUIRE(received == std::vector<int>{1, 2});
  REQUIRE_FALSE(g.done());
  REQUIRE_THROWS_AS(g.send(0), fiber::stop_iteration);  // the body returns instead of yielding
  REQUIRE(g.done());
  REQUIRE_THROWS_AS(g.send(5), fiber::stop_iteration);  // finished: Python's StopIteration
}

TEST_CASE("generator: values survive 10^6 round trips in both directions") {
  generator<long, long> g{[](auto& co) {
    long x = co.yield(-1);
    for (;;) x = co.yield(x * 3 + 1);
  }};
  REQUIRE(g.start() == -1);
  long bad = 0;
  for (long i = 0; i < 1000000; ++i)
    if (g.send(i) != i * 3 + 1) ++bad;
  REQUIRE(bad == 0);
}

TEST_CASE("generator: the seed's producer/consumer exchange") {
  std::string log;
  generator<std::string, int> c{[&](auto& co) {
    std::string r;
    for (;;) {
      int n = co.yield(r);
      if (!n) return;
      log += "[CONSUMER] " + std::to_string(n) + "\n";
      r = "200 OK";
    }
  }};
  REQUIRE(c.start().empty());
  for (int n = 1; n <= 5; ++n) REQUIRE(c.send(n) == "200 OK");
  c.close();
  REQUIRE(c.done());
  REQUIRE(log == "[CONSUMER] 1\n[CONSUMER] 2\n[CONSUMER] 3\n[CONSUMER] 4\n[CONSUMER] 5\n");
}

struct counts_destruction {
  int* count;
  ~counts_destruction() { ++*count; }
};

TEST_CASE("generator: close raises generator_exit at the yield and the stack unwinds") {
  int destroyed = 0;
  bool saw_exit = false, after = false;
  generator<int, int> g{[&](auto& co) {
    counts_destruction guard{&destroyed};
    try {
      co.yield(1);
    } catch (const fiber::generator_exit&) {
      saw_exit = true;
      throw;
    }
    after = true;
  }};
  g.start();
  g.close();
  REQUIRE(saw_exit);
  REQUIRE_FALSE(after);
  REQUIRE(destroyed == 1);
  REQUIRE(g.done());
  g.close();  // closing a finished generator does nothing
  REQUIRE_THROWS_AS(g.send(1), fiber::stop_iteration);
}

TEST_CASE("generator: generator_exit is not a std::exception, so catch(std::exception&) lets it pass") {
  bool caught_as_std = false;
  generator<int> g{[&](auto& co) {
    try {
      co.yield(1);
    } catch (const std::exception&) {
      caught_as_std = true;
    }
  }};
  g.next();
  g.close();
  REQUIRE_FALSE(caught_as_std);
  REQUIRE(g.done());
}

TEST_CASE("generator: a body that returns on generator_exit closes cleanly") {
  generator<int> g{[](auto& co) {
    try {
      co.yield(1);
    } catch (const fiber::generator_exit&) {
      return;
    }
  }};
  g.next();
  REQUIRE_NOTHROW(g.close());
  REQUIRE(g.done());
}

TEST_CASE("generator: a body that yields after generator_exit makes close() throw") {
  int attempts = 0;
  generator<int> g{[&](auto& co) {
    for (;;) {
      try {
        co.yield(1);
      } catch (const fiber::generator_exit&) {
        if (++attempts > 1) throw;
      }
    }
  }};
  g.next();
  REQUIRE_THROWS_WITH(g.close(), Catch::Contains("yielded after generator_exit"));
  REQUIRE_FALSE(g.done());
  REQUIRE_NOTHROW(g.close());  // the second time it lets generator_exit through
  REQUIRE(g.done());
}

TEST_CASE("generator: an exception thrown while closing propagates out of close()") {
  generator<int> g{[](auto& co) {
    try {
      co.yield(1);
    } catch (const fiber::generator_exit&) {
      throw std::runtime_error("cleanup failed");
    }
  }};
  g.next();
  REQUIRE_THROWS_WITH(g.close(), "cleanup failed");
  REQUIRE(g.done());
}

TEST_CASE("generator: close() raises a real generator_exit: caught by reference, counted, rethrowable, deep") {
  // close() starts the unwinder at the yield without a search phase where the
  // platform allows (fiber/detail/raise.hpp): the handler must still see the
  // object itself, std::uncaught_exceptions() must count it while destructors run,
  // and `throw;` and std::current_exception() must work on it.
  struct watches_unwinding {
    int* seen;
    ~watches_unwinding() { *seen = std::uncaught_exceptions(); }
  };
  const void* caught_at = nullptr;
  const void* recaught_at = nullptr;
  int uncaught_in_destructor = -1, uncaught_in_handler = -1;
  bool rethrown_reached_caller = false;
  std::exception_ptr kept;
  std::function<void(generator<int>::yielder&, int)> descend = [&](generator<int>::yielder& co, int depth) {
    watches_unwinding w{&uncaught_in_destructor};
    if (depth > 0) return descend(co, depth - 1);  // 20 frames between the yield and the body
    co.yield(1);
  };
  generator<int> g{[&](auto& co) {
    try {
      descend(co, 20);
    } catch (const fiber::generator_exit& e) {
      caught_at = &e;
      uncaught_in_handler = std::uncaught_exceptions();
      kept = std::current_exception();
      try {
        throw;  // a rethrow takes the ordinary, searching path
      } catch (const fiber::generator_exit& again) {
        recaught_at = &again;
      }
      rethrown_reached_caller = true;
      throw;
    }
  }};
  g.next();
  REQUIRE(std::uncaught_exceptions() == 0);
  g.close();
  REQUIRE(g.done());
  REQUIRE(rethrown_reached_caller);
  REQUIRE(caught_at != nullptr);
  REQUIRE(caught_at == recaught_at);  // the same object as the searching path finds
  REQUIRE(uncaught_in_destructor == 1);
  REQUIRE(uncaught_in_handler == 0);
  REQUIRE(std::uncaught_exceptions() == 0);
  REQUIRE(kept);
  REQUIRE_THROWS_AS(std::rethrow_exception(kept), fiber::generator_exit);  // outlives the close
}

TEST_CASE("generator: closes in a row, one while an earlier generator_exit is still held") {
  // close() reuses one exception object per thread while nothing holds it
  // (generator.cpp): a held one must stay intact and a new one be used meanwhile.
  auto closed_keeping = [](std::exception_ptr* keep) {
    generator<int> g{[keep](auto& co) {
      try {
        co.yield(1);
      } catch (const fiber::generator_exit&) {
        if (keep) *keep = std::current_exception();
        throw;
      }
    }};
    g.next();
    g.close();
    REQUIRE(g.done());
  };
  std::exception_ptr held;
  closed_keeping(&held);
  for (int i = 0; i < 100; ++i) closed_keeping(nullptr);
  std::exception_ptr second;
  closed_keeping(&second);
  REQUIRE(held != second);
  REQUIRE_THROWS_AS(std::rethrow_exception(held), fiber::generator_exit);
  held = nullptr;
  for (int i = 0; i < 100; ++i) closed_keeping(nullptr);
  REQUIRE_THROWS_AS(std::rethrow_exception(second), fiber::generator_exit);
  REQUIRE(std::uncaught_exceptions() == 0);
}

TEST_CASE("generator: generator_exit raised by the body itself, outside close(), propagates") {
  generator<int> g{[](auto& co) {
    co.yield(1);
    throw fiber::generator_exit{};
  }};
  g.next();
  REQUIRE_THROWS_AS(g.next(), fiber::generator_exit);
  REQUIRE(g.done());
}

TEST_CASE("generator: close_quietly() wakes the yield with an empty value, and the body returns") {
  int destroyed = 0;
  std::vector<int> received;
  bool closing_seen = false;
  generator<std::string, int> c{[&](auto& co) {
    counts_destruction guard{&destroyed};
    std::string r;
    while (true) {
      const int n = co.yield(r);
      if (!n) {
        closing_seen = co.closing();
        return;
      }
      received.push_back(n);
      r = "200 OK";
    }
  }};
  c.start();
  REQUIRE(c.send(7) == "200 OK");
  c.close_quietly();
  REQUIRE(c.done());
  REQUIRE(closing_seen);
  REQUIRE(destroyed == 1);
  REQUIRE(received == std::vector<int>{7});
  REQUIRE_NOTHROW(c.close_quietly());  // finished: nothing to do
  REQUIRE_THROWS_AS(c.send(1), fiber::stop_iteration);
}

TEST_CASE("generator: close_quietly() on a body that yields again falls back to close()") {
  int destroyed = 0;
  bool saw_exit = false;
  generator<int, int> g{[&](auto& co) {
    counts_destruction guard{&destroyed};
    try {
      for (;;) co.yield(1);  // ignores the empty value
    } catch (const fiber::generator_exit&) {
      saw_exit = true;
      throw;
    }
  }};
  g.start();
  g.close_quietly();
  REQUIRE(g.done());
  REQUIRE(saw_exit);
  REQUIRE(destroyed == 1);
}

TEST_CASE("generator: close_quietly() with Send = void, on an unstarted generator, and with an exception") {
  generator<int> g{[](auto& co) {
    for (int i = 0; !co.closing(); ++i) co.yield(i);
  }};
  REQUIRE(g.next() == 0);
  REQUIRE(g.next() == 1);
  g.close_quietly();
  REQUIRE(g.done());

  bool ran = false;
  generator<int> unstarted{[&](auto& co) {
    ran = true;
    co.yield(1);
  }};
  unstarted.close_quietly();
  REQUIRE(unstarted.done());
  REQUIRE_FALSE(ran);

  generator<int, int> failing{[](auto& co) {
    if (!co.yield(1)) throw std::runtime_error("cleanup failed");
  }};
  failing.start();
  REQUIRE_THROWS_WITH(failing.close_quietly(), "cleanup failed");
  REQUIRE(failing.done());
}

TEST_CASE("generator: closing an unstarted generator never runs the body") {
  bool ran = false;
  generator<int> g{[&](auto& co) {
    ran = true;
    co.yield(1);
  }};
  g.close();
  REQUIRE_FALSE(ran);
  REQUIRE(g.done());
  REQUIRE_THROWS_AS(g.next(), fiber::stop_iteration);
}

TEST_CASE("generator: throw_exception raises at the yield - the body may handle it and yield") {
  generator<std::string, int> g{[](auto& co) {
    for (;;) {
      try {
        co.yield("waiting");
      } catch (const std::invalid_argument& e) {
        co.yield(std::string("handled ") + e.what());
      }
    }
  }};
  REQUIRE(g.start() == "waiting");
  REQUIRE(g.throw_exception(std::invalid_argument("x")) == "handled x");
  REQUIRE(g.send(0) == "waiting");
  // Not handled: it propagates out of throw_exception and the generator is done.
  REQUIRE_THROWS_AS(g.throw_exception(std::out_of_range("y")), std::out_of_range);
  REQUIRE(g.done());
  REQUIRE_THROWS_AS(g.throw_exception(std::out_of_range("z")), std::out_of_range);  // finished: raised here
  REQUIRE_THROWS_AS(g.throw_exception(std::exception_ptr{}), fiber::error);
}

TEST_CASE("generator: throw_exception on an unstarted generator raises without running the body") {
  bool ran = false;
  generator<int> g{[&](auto& co) {
    ran = true;
    co.yield(1);
  }};
  REQUIRE_THROWS_AS(g.throw_exception(std::logic_error("early")), std::logic_error);
  REQUIRE_FALSE(ran);
  REQUIRE(g.done());
}

TEST_CASE("generator: an exception escaping the body propagates out of start/send") {
  generator<int, int> g{[](auto& co) {
    int n = co.yield(0);
    if (n == 42) throw std::domain_error("forty-two");
    co.yield(n);
  }};
  g.start();
  REQUIRE_THROWS_WITH(g.send(42), "forty-two");
  REQUIRE(g.done());
  REQUIRE_THROWS_AS(g.send(1), fiber::stop_iteration);

  generator<int> early{[](auto&) { throw std::domain_error("at once"); }};
  REQUIRE_THROWS_WITH(early.next(), "at once");
}

TEST_CASE("generator: destroying an unfinished generator closes it") {
  int destroyed = 0;
  bool saw_exit = false;
  {
    generator<int> g{[&](auto& co) {
      counts_destruction guard{&destroyed};
      try {
        for (int i = 0;; ++i) co.yield(i);
      } catch (const fiber::generator_exit&) {
        saw_exit = true;
        throw;
      }
    }};
    REQUIRE(g.next() == 0);
    REQUIRE(g.next() == 1);
  }
  REQUIRE(saw_exit);
  REQUIRE(destroyed == 1);
}

TEST_CASE("generator: one that ignores generator_exit is still unwound when destroyed") {
  int destroyed = 0;
  {
    generator<int> g{[&](auto& co) {
      counts_destruction guard{&destroyed};
      for (;;) {
        try {
          co.yield(1);
        } catch (const fiber::generator_exit&) {
          // ignored: keeps yielding
        }
      }
    }};
    g.next();
  }  // close() fails (reported on stderr), then the stack is unwound by force
  REQUIRE(destroyed == 1);
}

TEST_CASE("generator: misuse is reported") {
  generator<int, int> g{[](auto& co) { co.yield(co.yield(1)); }};
  REQUIRE_THROWS_WITH(g.send(1), Catch::Contains("call start() first"));
  g.start();
  REQUIRE_THROWS_WITH(g.start(), Catch::Contains("already started"));

  // Resuming a generator from inside its own body (Python: "generator already executing").
  generator<int>* self = nullptr;
  std::string what;
  generator<int> r{[&](auto& co) {
    try {
      self->next();
    } catch (const fiber::error& e) {
      what = e.what();
    }
    co.yield(1);
  }};
  self = &r;
  REQUIRE(r.next() == 1);
  REQUIRE_THAT(what, Catch::Contains("already executing"));
}

TEST_CASE("generator: an input range with Send = void") {
  generator<int> g{[](auto& co) {
    for (int i = 1; i <= 5; ++i) co.yield(i * i);
  }};
  std::vector<int> seen;
  for (int& v : g) seen.push_back(v);
  REQUIRE(seen == std::vector<int>{1, 4, 9, 16, 25});
  REQUIRE(g.done());
  static_assert(std::ranges::input_range<generator<int>>);

  generator<int> empty{[](auto&) {}};
  int n = 0;
  for (int v : empty) n += v + 1;
  REQUIRE(n == 0);
}

TEST_CASE("generator: breaking out of a range-for and destroying the generator unwinds it") {
  int destroyed = 0;
  {
    generator<int> g{[&](auto& co) {
      counts_destruction guard{&destroyed};
      for (int i = 0;; ++i) co.yield(i);
    }};
    for (int v : g)
      if (v == 3) break;
  }
  REQUIRE(destroyed == 1);
}

// Ordinary functions, not coroutines, yield from any depth: the point of a stack.
struct tree {
  int value;
  std::unique_ptr<tree> left, right;
};

static std::unique_ptr<tree> build(int lo, int hi) {
  if (lo > hi) return nullptr;
  int mid = lo + (hi - lo) / 2;
  return std::unique_ptr<tree>(new tree{mid, build(lo, mid - 1), build(mid + 1, hi)});
}

static void walk(const tree* t, generator<int>::yielder& co) {
  if (!t) return;
  walk(t->left.get(), co);
  co.yield(t->value);
  walk(t->right.get(), co);
}

static void descend(int depth, generator<int>::yielder& co) {
  if (depth == 0) {
    co.yield(-1);
    return;
  }
  descend(depth - 1, co);
  co.yield(depth);
}

TEST_CASE("generator: yields from deep recursion in ordinary functions") {
  auto t = build(0, 4095);
  generator<int> in_order{[&](auto& co) { walk(t.get(), co); }};
  int expected = 0;
  bool ordered = true;
  for (int v : in_order) ordered = ordered && v == expected++;
  REQUIRE(ordered);
  REQUIRE(expected == 4096);

  // 5000 frames of descend(): 240 bytes each on sparc64 (its register window save
  // area alone is 176), 1.2 MB. AddressSanitizer's redzones make each frame several
  // times larger.
  constexpr std::size_t deep_stack = (FIBER_ASAN ? 8 : 2) * 1024 * 1024;
  generator<int> deep{std::allocator_arg, fiber::protected_stack(deep_stack), [](auto& co) { descend(5000, co); }};
  REQUIRE(deep.next() == -1);  // suspended 5000 calls down
  REQUIRE(deep.next() == 1);
  int last = 1;
  for (int v : deep) last = v;  // goes on from 2
  REQUIRE(last == 5000);
}

TEST_CASE("generator: move-only values in both directions") {
  generator<std::unique_ptr<int>, std::unique_ptr<int>> g{[](auto& co) {
    auto in = co.yield(std::make_unique<int>(1));
    for (;;) in = co.yield(std::make_unique<int>(*in + 100));
  }};
  REQUIRE(*g.start() == 1);
  REQUIRE(*g.send(std::make_unique<int>(5)) == 105);
}

TEST_CASE("generator: moving a suspended generator keeps it working") {
  generator<int> a{[](auto& co) {
    for (int i = 0;; ++i) co.yield(i);
  }};
  REQUIRE(a.next() == 0);
  generator<int> b = std::move(a);
  REQUIRE(b.next() == 1);
  generator<int> c{[](auto& co) { co.yield(100); }};
  c = std::move(b);
  REQUIRE(c.next() == 2);
}

TEST_CASE("generator: a moved-from generator is finished, not broken") {
  generator<int> a{[](auto& co) { co.yield(1); }};
  generator<int> b = std::move(a);
  REQUIRE(a.done());  // NOLINT: testing use after move
  REQUIRE_THROWS_AS(a.next(), fiber::stop_iteration);
  REQUIRE_THROWS_AS(a.start(), fiber::stop_iteration);
  int n = 0;
  for (int v : a) n += v + 1;
  REQUIRE(n == 0);
  REQUIRE(b.next() == 1);
}

TEST_CASE("generator: a range-for goes on from where next() or an earlier loop stopped, as in Python") {
  generator<std::string> g{[](auto& co) {
    co.yield("one");
    co.yield("two");
    co.yield("three");
    co.yield("four");
  }};
  REQUIRE(g.next() == "one");
  std::vector<std::string> seen;
  for (auto& v : g) {
    seen.push_back(v);
    if (v == "two") break;
  }
  for (auto& v : g) seen.push_back(v);
  REQUIRE(seen == std::vector<std::string>{"two", "three", "four"});
}

TEST_CASE("generator: every resumption from inside its own body is refused") {
  generator<int, int>* self = nullptr;
  std::vector<std::string> errors;
  generator<int, int> g{[&](auto& co) {
    auto attempt = [&](auto&& op) {
      try {
        op();
      } catch (const fiber::error& e) {
        errors.emplace_back(e.what());
      }
    };
    attempt([&] { self->send(1); });
    attempt([&] { self->close(); });
    attempt([&] { self->throw_exception(std::runtime_error("x")); });
    attempt([&] { self->start(); });
    co.yield(0);
  }};
  self = &g;
  REQUIRE(g.start() == 0);
  REQUIRE(errors.size() == 4);
  for (auto& e : errors) REQUIRE_THAT(e, Catch::Contains("already executing"));

  generator<int>* self2 = nullptr;
  bool refused = false;
  generator<int> r{[&](auto& co) {
    try {
      (void)self2->begin();
    } catch (const fiber::error&) {
      refused = true;
    }
    co.yield(1);
  }};
  self2 = &r;
  REQUIRE(r.next() == 1);
  REQUIRE(refused);
}

TEST_CASE("generator: runs on pooled stacks and on caller-supplied memory") {
  fiber::pooled_stack pool(32 * 1024, 4);
  for (int round = 0; round < 10; ++round) {
    generator<int> g{std::allocator_arg, pool, [](auto& co) { co.yield(7); }};
    REQUIRE(g.next() == 7);
  }
  REQUIRE(pool.cached() == 1);  // one stack, reused every round

  alignas(16) static char memory[32 * 1024];
  generator<int> v{std::allocator_arg, fiber::stack_view{memory, sizeof memory}, [](auto& co) {
    volatile char buffer[8 * 1024] = {};  // really uses the caller's memory
    co.yield(buffer[0] + 3);
  }};
  REQUIRE(v.next() == 3);
}
