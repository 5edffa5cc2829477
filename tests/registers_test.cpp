// Every callee-saved register survives a round trip through a fiber that overwrites
// all of them. The helpers are per-ISA assembly in tests/arch/.
#include <catch2/catch.hpp>

#include "fiber/context.hpp"

extern "C" unsigned fiber_test_check_registers(void (*fn)(void*), void* arg);
extern "C" void fiber_test_clobber_registers(void (*fn)(void*), void* arg);

using fiber::context;

static void resume_in_place(void* p) {
  auto& c = *static_cast<context*>(p);
  c = std::move(c).resume();
}

TEST_CASE("registers: the resumer's callee-saved registers survive a fiber that clobbers them") {
  context f{[](context&& main) {
    // Switch back to main with every callee-saved register holding garbage.
    fiber_test_clobber_registers(&resume_in_place, &main);
    return std::move(main);
  }};
  const unsigned changed = fiber_test_check_registers(&resume_in_place, &f);
  CHECK(changed == 0u);
  f = std::move(f).resume();  // let it finish
  REQUIRE_FALSE(f);
}

TEST_CASE("registers: a fiber's callee-saved registers survive a resumer that clobbers them") {
  unsigned changed = ~0u;
  context f{[&](context&& main) {
    changed = fiber_test_check_registers(&resume_in_place, &main);
    return std::move(main);
  }};
  fiber_test_clobber_registers(&resume_in_place, &f);  // the fiber suspends inside its check
  REQUIRE(f);
  fiber_test_clobber_registers(&resume_in_place, &f);  // resumed with garbage in every register
  REQUIRE_FALSE(f);
  CHECK(changed == 0u);
}
