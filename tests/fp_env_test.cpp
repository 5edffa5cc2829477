// The FP control state (rounding mode, flush-to-zero / denormals-are-zero) is per
// fiber by default and shared between fibers with FIBER_SHARED_FP_ENV. Built twice:
// against the library with each policy (FIBER_TEST_EXPECT_SHARED_FP_ENV says which).
#include <catch2/catch.hpp>

#include <cfenv>
#include <cstdint>

#include "fiber/context.hpp"

#if defined(__x86_64__)
#include <xmmintrin.h>
struct fp_state {
  std::uint32_t mxcsr_control;  // MXCSR without the status flags (bits 0-5)
  std::uint16_t x87_cw;
  bool operator==(const fp_state&) const = default;
};
static fp_state read_fp() {
  std::uint16_t cw;
  __asm__ volatile("fnstcw %0" : "=m"(cw));
  return {_mm_getcsr() & ~0x3fu, cw};
}
// Rounding up in both units, plus flush-to-zero (bit 15) and denormals-are-zero (bit 6).
static void set_unusual_fp() {
  std::fesetround(FE_UPWARD);
  _mm_setcsr(_mm_getcsr() | 0x8040u);
}
#elif defined(__aarch64__)
struct fp_state {
  std::uint64_t fpcr;
  bool operator==(const fp_state&) const = default;
};
static fp_state read_fp() { return {__builtin_aarch64_get_fpcr64()}; }
// Rounding toward plus infinity (RMode = 01) and flush-to-zero (FZ, bit 24).
static void set_unusual_fp() {
  std::fesetround(FE_UPWARD);
  __builtin_aarch64_set_fpcr64(__builtin_aarch64_get_fpcr64() | (1u << 24));
}
#endif

using fiber::context;

TEST_CASE("fp env: the build reports its policy") {
  REQUIRE(fiber::shares_fp_env() == bool(FIBER_TEST_EXPECT_SHARED_FP_ENV));
}

TEST_CASE("fp env: rounding mode and denormal flags per fiber, or shared") {
  const fp_state original = read_fp();
  fp_state fiber_before = {}, fiber_after_switch = {}, fiber_unusual = {};
  context f{[&](context&& main) {
    fiber_before = read_fp();
    set_unusual_fp();
    fiber_unusual = read_fp();
    main = std::move(main).resume();
    fiber_after_switch = read_fp();
    return std::move(main);
  }};
  f = std::move(f).resume();
  const fp_state main_after = read_fp();
  f = std::move(f).resume();
  const fp_state main_end = read_fp();

  std::fesetround(FE_TONEAREST);  // leave the thread as we found it
#if defined(__x86_64__)
  _mm_setcsr((_mm_getcsr() & 0x3fu) | original.mxcsr_control);
  __asm__ volatile("fldcw %0" : : "m"(original.x87_cw));
#else
  __builtin_aarch64_set_fpcr64(original.fpcr);
#endif

  REQUIRE(fiber_before == original);    // a new fiber starts with its creator's state
  REQUIRE_FALSE(fiber_unusual == original);
  REQUIRE(fiber_after_switch == fiber_unusual);  // the fiber keeps its own across switches
  if (fiber::shares_fp_env()) {
    REQUIRE(main_after == fiber_unusual);  // shared: main sees the fiber's change
    REQUIRE(main_end == fiber_unusual);
  } else {
    REQUIRE(main_after == original);  // per fiber: main keeps its own
    REQUIRE(main_end == original);
  }
}
