// The FP control state (rounding mode, flush-to-zero / denormals-are-zero) is per
// fiber by default and shared between fibers with FIBER_SHARED_FP_ENV. Built twice:
// against the library with each policy (FIBER_TEST_EXPECT_SHARED_FP_ENV says which).
// Reading and setting the state is per-ISA assembly in tests/arch/.
#include <catch2/catch.hpp>

#include <cstdint>

#include "fiber/context.hpp"

extern "C" std::uint64_t fiber_test_fp_get(void);
extern "C" void fiber_test_fp_set(std::uint64_t);
extern "C" std::uint64_t fiber_test_fp_unusual(void);

using fiber::context;

TEST_CASE("fp env: the build reports its policy") {
  REQUIRE(fiber::shares_fp_env() == bool(FIBER_TEST_EXPECT_SHARED_FP_ENV));
}

TEST_CASE("fp env: rounding mode and denormal flags per fiber, or shared") {
  const std::uint64_t original = fiber_test_fp_get();
  const std::uint64_t unusual = fiber_test_fp_unusual();
  REQUIRE(unusual != original);
  std::uint64_t fiber_before = 0, fiber_set = 0, fiber_after_switch = 0;
  context f{[&](context&& main) {
    fiber_before = fiber_test_fp_get();
    fiber_test_fp_set(unusual);
    fiber_set = fiber_test_fp_get();
    main = std::move(main).resume();
    fiber_after_switch = fiber_test_fp_get();
    return std::move(main);
  }};
  f = std::move(f).resume();
  const std::uint64_t main_after = fiber_test_fp_get();
  f = std::move(f).resume();
  const std::uint64_t main_end = fiber_test_fp_get();
  fiber_test_fp_set(original);  // leave the thread as we found it

  REQUIRE(fiber_before == original);  // a new fiber starts with its creator's state
  REQUIRE(fiber_set == unusual);
  REQUIRE(fiber_after_switch == unusual);  // the fiber keeps its own across switches
  if (fiber::shares_fp_env()) {
    REQUIRE(main_after == unusual);  // shared: main sees the fiber's change
    REQUIRE(main_end == unusual);
  } else {
    REQUIRE(main_after == original);  // per fiber: main keeps its own
    REQUIRE(main_end == original);
  }
}

TEST_CASE("fp env: a new fiber starts with its creator's state (shared: the thread's current one)") {
  const std::uint64_t original = fiber_test_fp_get();
  const std::uint64_t unusual = fiber_test_fp_unusual();
  fiber_test_fp_set(unusual);
  std::uint64_t seen = 0;
  context f{[&](context&& main) {
    seen = fiber_test_fp_get();
    return std::move(main);
  }};
  fiber_test_fp_set(original);
  f = std::move(f).resume();
  const std::uint64_t main_after = fiber_test_fp_get();
  fiber_test_fp_set(original);
  REQUIRE(seen == (fiber::shares_fp_env() ? original : unusual));
  REQUIRE(main_after == original);
}
