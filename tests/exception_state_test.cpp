// Each flow of control keeps its own C++ exception state across switches: the
// exceptions being handled (std::current_exception(), `throw;`) and the count of
// uncaught ones (std::uncaught_exceptions()), for bare contexts and generators as
// well as loop tasks (event_loop_test.cpp). Also: a flow resumed on another thread,
// and the forced unwind of a generator that swallows it.
#include <catch2/catch.hpp>

#include <csignal>
#include <stdexcept>
#include <string>
#include <thread>

#include "death.hpp"
#include "fiber/context.hpp"
#include "fiber/debug.hpp"
#include "fiber/generator.hpp"

using fiber::context;

namespace {
// What `throw;` rethrows right now, as text ("" if nothing is being handled).
std::string rethrown() {
  if (!std::current_exception()) return "";
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "?";
  }
}

// Calls `on_unwind` from its destructor, which runs during stack unwinding.
template <class F>
struct during_unwind {
  F on_unwind;
  ~during_unwind() { on_unwind(); }
};
template <class F>
during_unwind(F) -> during_unwind<F>;
}  // namespace

TEST_CASE("exception state: a context suspended inside a catch block keeps its exception - its resumer has none") {
  std::string fiber_before, fiber_after;
  context f{[&](context&& main) {
    try {
      throw std::runtime_error("fiber's");
    } catch (...) {
      fiber_before = rethrown();
      main = std::move(main).resume();  // suspended inside the handler
      fiber_after = rethrown();
    }
    return std::move(main);
  }};
  f = std::move(f).resume();
  // The fiber's handler is still open, but it is not ours.
  CHECK(std::current_exception() == nullptr);
  CHECK(std::uncaught_exceptions() == 0);
  std::string main_handled;
  try {
    throw std::logic_error("main's");
  } catch (...) {
    f = std::move(f).resume();  // the fiber ends its handler while ours is open
    main_handled = rethrown();
  }
  CHECK_FALSE(f);
  CHECK(fiber_before == "fiber's");
  CHECK(fiber_after == "fiber's");
  CHECK(main_handled == "main's");
  CHECK(std::current_exception() == nullptr);
}

TEST_CASE("exception state: a context switching from a destructor during unwinding counts its own uncaught exception") {
  int in_destructor = -1, main_while_suspended = -1, after_resume = -1;
  std::string caught;
  context f{[&](context&& main) {
    try {
      during_unwind guard{[&] {
        in_destructor = std::uncaught_exceptions();
        main = std::move(main).resume();  // switch away in the middle of unwinding
        after_resume = std::uncaught_exceptions();
      }};
      throw std::runtime_error("unwinding");
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    return std::move(main);
  }};
  f = std::move(f).resume();
  main_while_suspended = std::uncaught_exceptions();
  // The main flow may itself throw and catch while the fiber is mid-unwind.
  try {
    throw 7;
  } catch (int) {
  }
  f = std::move(f).resume();
  CHECK_FALSE(f);
  CHECK(in_destructor == 1);
  CHECK(main_while_suspended == 0);
  CHECK(after_resume == 1);
  CHECK(caught == "unwinding");
  CHECK(std::uncaught_exceptions() == 0);
}

TEST_CASE("exception state: a generator yielding inside a catch block and from a destructor during unwinding") {
  fiber::generator<int> g{[](auto& co) {
    try {
      throw std::runtime_error("first");
    } catch (...) {
      co.yield(1);  // inside the handler
      if (rethrown() != "first") throw std::logic_error("lost the generator's exception");
    }
    during_unwind guard{[&] {
      co.yield(std::uncaught_exceptions() == 1 ? 2 : -2);  // mid-unwind
      co.yield(std::uncaught_exceptions() == 1 ? 3 : -3);
    }};
    throw std::runtime_error("escapes");
  }};
  CHECK(g.next() == 1);
  CHECK(std::current_exception() == nullptr);
  CHECK(std::uncaught_exceptions() == 0);
  CHECK(g.next() == 2);
  CHECK(std::uncaught_exceptions() == 0);
  std::string consumer_handled;
  try {
    throw std::out_of_range("consumer's");
  } catch (...) {
    CHECK(g.next() == 3);  // the generator goes on unwinding while we handle ours
    consumer_handled = rethrown();
  }
  CHECK(consumer_handled == "consumer's");
  // The exception escaping the body is forwarded to whoever resumes it.
  CHECK_THROWS_WITH(g.next(), "escapes");
  CHECK(g.done());
  CHECK(std::current_exception() == nullptr);
  CHECK(std::uncaught_exceptions() == 0);
}

TEST_CASE("exception state: destroying a generator suspended inside a catch block unwinds it, RAII runs") {
  bool destroyed = false;
  std::string during_close;
  {
    fiber::generator<int> g{[&](auto& co) {
      during_unwind guard{[&] { destroyed = true; }};
      try {
        throw std::runtime_error("held");
      } catch (...) {
        co.yield(1);
      }
    }};
    CHECK(g.next() == 1);
    try {
      throw std::logic_error("outer");
    } catch (...) {
      g.close();  // generator_exit raised inside its handler, while ours is open
      during_close = rethrown();
    }
  }
  CHECK(destroyed);
  CHECK(during_close == "outer");
  CHECK(std::current_exception() == nullptr);
}

TEST_CASE("exception state: a context suspended on one thread and resumed on another keeps its own state") {
  // The switch reads its per-thread state through the thread pointer after every
  // switch, so a flow that moved finds the new thread's state, not the old one's.
  std::string before, after;
  std::uint64_t id_before = 0, id_after = 0;
  context f{[&](context&& resumer) {
    id_before = fiber::this_fiber::id();
    try {
      throw std::runtime_error("travels");
    } catch (...) {
      before = rethrown();
      resumer = std::move(resumer).resume();  // suspends on the main thread...
      after = rethrown();                     // ...resumed on another
      id_after = fiber::this_fiber::id();
    }
    return std::move(resumer);
  }};
  f = std::move(f).resume();
  CHECK(fiber::this_fiber::id() == 0);
  std::string other_thread_handled;
  bool other_clean_after = false;
  std::uint64_t other_thread_id = 99;
  std::thread t([&] {
    try {
      throw std::logic_error("other thread's");
    } catch (...) {
      f = std::move(f).resume();  // runs to its end on this thread
      other_thread_handled = rethrown();
    }
    other_clean_after = std::current_exception() == nullptr && std::uncaught_exceptions() == 0;
    other_thread_id = fiber::this_fiber::id();
  });
  t.join();
  CHECK_FALSE(f);
  CHECK(before == "travels");
  CHECK(after == "travels");
  CHECK(id_before != 0);
  CHECK(id_after == id_before);
  CHECK(other_thread_handled == "other thread's");
  CHECK(other_clean_after);
  CHECK(other_thread_id == 0);
  CHECK(std::current_exception() == nullptr);
}

TEST_CASE("misuse: a generator body that swallows the forced unwind is reported, not ignored") {
  auto d = fiber_test::run_in_child([] {
    fiber::generator<int> g{[](auto& co) {
      for (;;) {
        try {
          co.yield(1);
        } catch (...) {
          // swallows generator_exit and then the forced unwind: no rethrow
        }
      }
    }};
    g.next();
    try {
      g.close();  // generator_exit swallowed: the body yields again
    } catch (const fiber::error&) {
    }
    // Destroying it now unwinds the body by force, which it swallows too.
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("caught and not rethrown"));
}
