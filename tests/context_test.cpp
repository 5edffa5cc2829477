#include <catch2/catch.hpp>

#include <csignal>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "death.hpp"
#include "fiber/context.hpp"

extern "C" std::uintptr_t fiber_test_caller_sp(void);

using fiber::context;

TEST_CASE("a context runs its entry on first resume and ends by returning a context") {
  int steps = 0;
  context f{[&](context&& caller) {
    steps = 1;
    caller = std::move(caller).resume();
    steps = 2;
    return std::move(caller);
  }};
  REQUIRE(f);
  REQUIRE(steps == 0);
  f = std::move(f).resume();
  REQUIRE(steps == 1);
  REQUIRE(f);
  f = std::move(f).resume();
  REQUIRE(steps == 2);
  REQUIRE_FALSE(f);  // it ended: what came back is empty
}

TEST_CASE("values pass both ways across 10^6 switches") {
  constexpr long n = 1000000;
  long to_fiber = 0, to_main = 0;
  context f{[&](context&& main) {
    for (;;) {
      to_main = to_fiber * 2 + 1;
      main = std::move(main).resume();
      if (to_fiber < 0) break;
    }
    return std::move(main);
  }};
  long checked = 0;
  for (long i = 0; i < n / 2; ++i) {  // each iteration is two switches
    to_fiber = i;
    f = std::move(f).resume();
    if (to_main != 2 * i + 1) break;
    ++checked;
  }
  REQUIRE(checked == n / 2);
  to_fiber = -1;
  f = std::move(f).resume();
  REQUIRE_FALSE(f);
}

TEST_CASE("10^4 contexts alive at once, resumed interleaved") {
  constexpr int count = 10000;
  constexpr int rounds = 5;
  std::vector<int> progress(count, 0);
  std::vector<context> fibers;
  fibers.reserve(count);
  for (int id = 0; id < count; ++id) {
    fibers.emplace_back(std::allocator_arg, fiber::protected_stack(16 * 1024), [id, &progress](context&& main) {
      for (int r = 0; r < rounds; ++r) {
        ++progress[static_cast<size_t>(id)];  // a local copy of id survives every switch
        main = std::move(main).resume();
      }
      return std::move(main);
    });
  }
  for (int r = 0; r < rounds; ++r)
    for (int id = count - 1; id >= 0; --id) fibers[static_cast<size_t>(id)] = std::move(fibers[static_cast<size_t>(id)]).resume();
  bool all = true;
  for (int p : progress) all = all && p == rounds;
  REQUIRE(all);
  for (auto& f : fibers) f = std::move(f).resume();  // each ends now
  for (auto& f : fibers) REQUIRE_FALSE(f);
}

static std::uintptr_t sp_in_callee() { return fiber_test_caller_sp(); }

// The stack alignment each ABI demands at calls: 8 bytes on s390x ("shall maintain
// an 8-byte alignment"), 32-bit Arm (AAPCS, at public interfaces) and MIPS o32; 16
// on the others. Objects that ask for more still get it.
#if defined(__s390x__) || defined(__arm__) || (defined(__mips__) && _MIPS_SIM == _ABIO32)
constexpr std::uintptr_t abi_stack_alignment = 8;
#else
constexpr std::uintptr_t abi_stack_alignment = 16;
#endif

TEST_CASE("the stack is aligned as the ABI demands at entry and at calls") {
  std::uintptr_t sp_at_entry_call = 1, sp_nested = 1, local_address = 1;
  context f{[&](context&& main) {
    sp_at_entry_call = fiber_test_caller_sp();
    sp_nested = sp_in_callee();
    alignas(16) volatile char local[16] = {};
    local_address = reinterpret_cast<std::uintptr_t>(&local[0]);
    return std::move(main);
  }};
  f = std::move(f).resume();
  CHECK(sp_at_entry_call % abi_stack_alignment == 0);
  CHECK(sp_nested % abi_stack_alignment == 0);
  CHECK(local_address % 16 == 0);
}

static long recurse(int depth, context& main, int yield_at) {
  volatile char frame[64];
  frame[0] = static_cast<char>(depth);
  if (depth == yield_at) main = std::move(main).resume();
  if (depth == 0) return frame[0];
  return recurse(depth - 1, main, yield_at) + 1 + (frame[0] - static_cast<char>(depth));
}

TEST_CASE("deep recursion inside a fiber, suspended at the bottom") {
  constexpr int depth = 10000;
  // AddressSanitizer's redzones make each frame several times larger.
  constexpr std::size_t stack_size = (FIBER_ASAN ? 16 : 4) * 1024 * 1024;
  long result = -1;
  context f{std::allocator_arg, fiber::protected_stack(stack_size), [&](context&& main) {
    result = recurse(depth, main, 0);
    return std::move(main);
  }};
  f = std::move(f).resume();  // suspended 10^4 frames down
  REQUIRE(f);
  REQUIRE(result == -1);
  f = std::move(f).resume();
  REQUIRE_FALSE(f);
  REQUIRE(result == depth);
}

TEST_CASE("a fiber can resume another fiber and be handed back") {
  std::string trace;
  context b{[&](context&& from_a) {
    trace += "b";
    return std::move(from_a);  // ends, resuming a
  }};
  context a{[&](context&& main) {
    trace += "a";
    context after_b = std::move(b).resume();
    trace += after_b ? "?" : "A";  // b ended, so what came back is empty
    return std::move(main);
  }};
  a = std::move(a).resume();
  REQUIRE(trace == "abA");
  REQUIRE_FALSE(a);
}

struct sets_flag {
  bool* flag;
  ~sets_flag() { *flag = true; }
};

TEST_CASE("destroying a suspended context unwinds its stack") {
  bool destroyed = false, finished = false;
  {
    context f{[&](context&& main) {
      sets_flag guard{&destroyed};
      main = std::move(main).resume();
      finished = true;  // never reached
      return std::move(main);
    }};
    f = std::move(f).resume();
    REQUIRE(f);
    REQUIRE_FALSE(destroyed);
  }
  REQUIRE(destroyed);
  REQUIRE_FALSE(finished);
}

TEST_CASE("destroying a context that never ran does not run its entry") {
  bool ran = false;
  { context f{[&](context&& main) { ran = true; return std::move(main); }}; }
  REQUIRE_FALSE(ran);
}

TEST_CASE("the entry's captures are destroyed when the fiber ends") {
  auto token = std::make_shared<int>(7);
  std::weak_ptr<int> watch = token;
  context f{[token = std::move(token)](context&& main) { return std::move(main); }};
  REQUIRE_FALSE(watch.expired());
  f = std::move(f).resume();
  REQUIRE(watch.expired());
}

TEST_CASE("misuse: resuming an empty context throws fiber::error") {
  context empty;
  REQUIRE_FALSE(empty);
  REQUIRE_THROWS_AS(std::move(empty).resume(), fiber::error);
  REQUIRE_THROWS_WITH(std::move(empty).resume(), Catch::Contains("empty"));

  context f{[](context&& main) { return std::move(main); }};
  context moved = std::move(f);
  REQUIRE_THROWS_AS(std::move(f).resume(), fiber::error);  // NOLINT: testing use after move
  moved = std::move(moved).resume();                        // runs to the end
  REQUIRE_THROWS_AS(std::move(moved).resume(), fiber::error);
}

TEST_CASE("misuse: a stack too small for a fiber is refused with the size named") {
  alignas(16) static char tiny[4096];
  REQUIRE_THROWS_WITH((context{std::allocator_arg, fiber::stack_view{tiny, 100}, [](context&& c) { return std::move(c); }}),
                      Catch::Contains("100 bytes"));
  REQUIRE_THROWS_AS((context{std::allocator_arg, fiber::stack_view{nullptr, 4096}, [](context&& c) { return std::move(c); }}),
                    fiber::error);
}

TEST_CASE("misuse: an exception escaping a context's entry terminates, naming its type") {
  auto d = fiber_test::run_in_child([] {
    context f{[](context&&) -> context { throw std::runtime_error("boom"); }};
    f = std::move(f).resume();
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("std::runtime_error"));
}

TEST_CASE("misuse: returning an empty context from an entry is reported") {
  auto d = fiber_test::run_in_child([] {
    context f{[](context&&) { return context{}; }};
    f = std::move(f).resume();
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("returned an empty context"));
}

TEST_CASE("misuse: swallowing the forced unwind is reported, not ignored") {
  auto d = fiber_test::run_in_child([] {
    context f{[](context&& main) {
      try {
        main = std::move(main).resume();
      } catch (...) {
        // swallowed: no rethrow
      }
      return std::move(main);
    }};
    f = std::move(f).resume();
    f = context{};  // destroy: forced unwind
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("caught and not rethrown"));
}

TEST_CASE("misuse: dropping the context of a thread's own stack is reported, not unwound") {
  auto d = fiber_test::run_in_child([] {
    context f{[](context&& main) {
      { context dropped = std::move(main); }  // destroys the only handle to the thread's stack
      return context{};
    }};
    f = std::move(f).resume();
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("thread's own stack"));
}

TEST_CASE("a fiber can destroy another suspended fiber") {
  bool inner_unwound = false;
  context inner{[&](context&& back) {
    sets_flag guard{&inner_unwound};
    back = std::move(back).resume();
    return std::move(back);
  }};
  context outer{[&](context&& main) {
    inner = std::move(inner).resume();  // inner suspends, handing back to us
    inner = context{};                  // unwinds inner from inside this fiber
    return std::move(main);
  }};
  outer = std::move(outer).resume();
  REQUIRE(inner_unwound);
  REQUIRE_FALSE(outer);
}

TEST_CASE("a fresh fiber started by a fiber that ends receives an empty caller, and the ended one is released") {
  auto token = std::make_shared<int>(1);
  std::weak_ptr<int> a_capture = token;
  bool b_saw_caller = true;
  context main_handle;
  context b{[&](context&& from_a) {
    b_saw_caller = bool(from_a);  // a ended to start us: nothing to go back to
    return std::move(main_handle);
  }};
  context a{[&, token = std::move(token)](context&& main) {
    main_handle = std::move(main);
    return std::move(b);  // end, and start b
  }};
  a = std::move(a).resume();
  REQUIRE_FALSE(a);  // b ended, back to us
  REQUIRE_FALSE(b_saw_caller);
  REQUIRE(a_capture.expired());  // a's record (and captures) released
}

TEST_CASE("an entry that neither takes nor returns its caller has the caller unwound") {
  context main_handle;
  bool y_unwound = false;
  context x{[&](context&&) { return std::move(main_handle); }};  // drops its caller, y
  context y{[&](context&& main) {
    sets_flag guard{&y_unwound};
    main_handle = std::move(main);
    x = std::move(x).resume();  // x ends by switching to main; y is never resumed
    return std::move(x);
  }};
  context back = std::move(y).resume();
  REQUIRE_FALSE(back);  // x ended
  REQUIRE(y_unwound);
}

TEST_CASE("a context that never ran releases its entry's captures when destroyed") {
  auto token = std::make_shared<int>(7);
  std::weak_ptr<int> watch = token;
  { context f{[token = std::move(token)](context&& main) { return std::move(main); }}; }
  REQUIRE(watch.expired());
}

#include <unwind.h>

TEST_CASE("unwinding from inside a fiber ends at the fiber's first frame") {
  int frames = 0;
  _Unwind_Reason_Code end = _URC_NO_REASON;
  context f{[&](context&& main) {
    end = _Unwind_Backtrace(
        [](_Unwind_Context*, void* n) -> _Unwind_Reason_Code {
#if defined(__ARM_EABI_UNWINDER__)  // Arm EHABI has a single failure code
          return ++*static_cast<int*>(n) > 1000 ? _URC_FAILURE : _URC_NO_REASON;
#else
          return ++*static_cast<int*>(n) > 1000 ? _URC_FATAL_PHASE1_ERROR : _URC_NO_REASON;
#endif
        },
        &frames);
    return std::move(main);
  }};
  f = std::move(f).resume();
  CHECK(end == _URC_END_OF_STACK);
  CHECK(frames < 20);  // the lambda, std::invoke's frames, the entry, the trampoline
}
