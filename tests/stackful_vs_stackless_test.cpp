// Every workload of bench/stackful_vs_stackless.cpp, run small: the stackful and
// the stackless implementation compute the same thing (and the right thing), so
// the benchmark compares equal work.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "stackful_vs_stackless.hpp"

namespace {

struct collect {
  std::vector<long> values;
  void operator()(long v) { values.push_back(v); }
};

std::vector<long> iota(long n) {
  std::vector<long> v;
  for (long i = 0; i < n; ++i) v.push_back(i);
  return v;
}

}  // namespace

TEST_CASE("stackful vs stackless: iterate yields 0..n-1 both ways", "[svs]") {
  fiber::pooled_stack stacks;
  for (long n : {0L, 1L, 1000L}) {
    collect plain, stackful, stackless;
    svs::iterate_plain(n, plain);
    svs::iterate_fiber(n, stacks, stackful);
    svs::iterate_stackless(n, stackless);
    CHECK(plain.values == iota(n));
    CHECK(stackful.values == plain.values);
    CHECK(stackless.values == plain.values);
  }
}

TEST_CASE("stackful vs stackless: the tree walks give the same in-order sequence", "[svs]") {
  fiber::pooled_stack stacks;
  for (int k : {1, 2, 4, 10}) {
    svs::tree t(k);
    collect plain, stackful, nested, delegating;
    svs::tree_plain(t, plain);
    svs::tree_fiber(t, stacks, stackful);
    svs::tree_stackless_nested(t, nested);
    svs::tree_stackless_delegating(t, delegating);
    REQUIRE(plain.values.size() == t.size());
    // In order: the root comes after its whole left subtree.
    CHECK(plain.values[t.size() / 2] == t.values[0]);
    CHECK(plain.values.front() == t.values[(std::size_t{1} << (k - 1)) - 1]);  // the leftmost leaf
    CHECK(stackful.values == plain.values);
    CHECK(nested.values == plain.values);
    CHECK(delegating.values == plain.values);
  }
}

TEST_CASE("stackless: an exception thrown deep in a delegating walk reaches the consumer", "[svs]") {
  struct boom {};
  auto thrower = [](int depth) -> stackless::recursive_pull<long> {
    // A lambda coroutine cannot call itself; a chain of nested pulls does the same.
    co_yield 1;
    if (depth == 0) throw boom{};
  };
  auto outer = [&](int) -> stackless::recursive_pull<long> {
    co_yield 0;
    co_yield stackless::elements_of(thrower(0));
    co_yield 2;  // never reached
  };
  std::vector<long> seen;
  auto g = outer(0);
  CHECK_THROWS_AS([&] {
    for (long v : g) seen.push_back(v);
  }(), boom);
  CHECK(seen == std::vector<long>{0, 1});
}

TEST_CASE("stackful vs stackless: deep suspension sends and receives the same values", "[svs]") {
  fiber::pooled_stack stacks;
  for (int depth : {0, 1, 7, 64}) {
    svs::deep_fiber stackful(depth, stacks);
    svs::deep_stackless stackless(depth);
    CHECK(stackful.start() == 0);
    CHECK(stackless.start() == 0);
    for (long i = 0; i < 100; ++i) {
      // Each of the depth + 1 levels adds 1 on the way up to the body's loop.
      const long want = i + depth + 1;
      CHECK(stackful.send(i) == want);
      CHECK(stackless.send(i) == want);
      CHECK(svs::descend_plain(depth, i) == want);
    }
  }
}

TEST_CASE("stackful vs stackless: ping-pong echoes every value", "[svs]") {
  for (long n : {0L, 1L, 1000L}) {
    const long want = n * (n - 1) / 2;
    fiber::event_loop loop;
    stackless::loop lp;
    CHECK(svs::pingpong_fiber(loop, n) == want);
    CHECK(svs::pingpong_stackless(lp, n) == want);
    // Again on the same loops: nothing is left over from the first run.
    CHECK(svs::pingpong_fiber(loop, n) == want);
    CHECK(svs::pingpong_stackless(lp, n) == want);
    CHECK(loop.alive() == 0);
  }
}

TEST_CASE("stackful vs stackless: fan-out runs every task once, all waiting at once", "[svs]") {
  for (long n : {0L, 1L, 2L, 500L}) {
    const svs::fanout_result stackful = svs::fanout_fiber(n);
    const svs::fanout_result stackless = svs::fanout_stackless(n);
    CHECK(stackful.sum == n * (n - 1) / 2);
    CHECK(stackful.waiting == 0);
    CHECK(stackful.peak_waiting == n);
    CHECK(stackful == stackless);
  }
}

TEST_CASE("stackful vs stackless: create runs each trivial task once", "[svs]") {
  fiber::pooled_stack stacks;
  const long n = 300, want = n * (n - 1) / 2;
  CHECK(svs::create_fiber_context(n, stacks) == want);
  CHECK(svs::create_stackless_task(n) == want);
  fiber::event_loop loop;
  stackless::loop lp;
  CHECK(svs::create_fiber_spawn_join(loop, n) == want);
  CHECK(svs::create_stackless_spawn_join(lp, n) == want);
}

TEST_CASE("stackful vs stackless: the seed's producer gets the same replies", "[svs]") {
  const std::string want = "200 OK200 OK200 OK200 OK200 OK";
  CHECK(svs::seed_fiber(fiber::pooled_stack{}) == want);
  CHECK(svs::seed_fiber(fiber::protected_stack{}) == want);
  CHECK(svs::seed_stackless() == want);
}

TEST_CASE("stackless: frames are allocated through frame_new, which records their size", "[svs]") {
  stackless::frame_bytes = 0;
  CHECK(svs::create_stackless_task(1) == 0);
  CHECK(stackless::frame_bytes > 0);
}
