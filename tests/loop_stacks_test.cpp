// The loop's stack pool on its own (fiber/src/loop_stacks.hpp): guarded stacks
// up to the budget, then unguarded ones with a canary; reuse, last freed first;
// pools by size; the free stacks past the hot limit turning cold (their pages
// given back) once few stacks are alive, and cold stacks reused after the hot.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "loop_stacks.hpp"

namespace {

using fiber::stack_memory;
using fiber::detail::loop_stacks;

// 16 KiB, or a page where pages are larger (ppc64: 64 KiB): the pool rounds up.
const std::size_t size = (16 * 1024 + fiber::page_size() - 1) / fiber::page_size() * fiber::page_size();

struct taken {
  stack_memory s;
  bool guarded;
};

taken take(loop_stacks& pool, std::size_t n = size) {
  taken t{};
  t.s = pool.allocate(n, t.guarded);
  return t;
}

// A word near the top of the stack, where a fiber's first frames go.
volatile std::uint64_t* top_word(stack_memory s) {
  return reinterpret_cast<volatile std::uint64_t*>(static_cast<char*>(s.base) + s.size - 64);
}

}  // namespace

TEST_CASE("loop stacks: guarded up to the budget, then unguarded with an intact canary", "[stacks]") {
  loop_stacks pool(size, 3);
  std::vector<taken> t;
  for (int i = 0; i < 5; ++i) t.push_back(take(pool));
  CHECK(t[0].guarded);
  CHECK(t[1].guarded);
  CHECK(t[2].guarded);
  CHECK_FALSE(t[3].guarded);
  CHECK_FALSE(t[4].guarded);
  CHECK(pool.guarded_live == 3);
  CHECK(pool.plain_live == 2);
  std::set<void*> bases;
  for (auto& x : t) {
    CHECK(x.s.size == size);
    bases.insert(x.s.base);
    *top_word(x.s) = 42;  // every stack is usable to its top
  }
  CHECK(bases.size() == 5);
  for (int i = 3; i < 5; ++i)
    CHECK(fiber::detail::canary_intact(static_cast<const std::uintptr_t*>(t[static_cast<std::size_t>(i)].s.base)));
  for (auto& x : t) pool.deallocate(x.s, x.guarded);
  CHECK(pool.guarded_live == 0);
  CHECK(pool.plain_live == 0);
}

TEST_CASE("loop stacks: sizes are rounded up to size classes (powers of two), which share a pool", "[stacks]") {
  loop_stacks pool(size, 100);
  const std::size_t page = fiber::page_size();
  // Just above a class: the next one (twice the size), usable to its top.
  taken a = take(pool, size + 1);
  CHECK(a.s.size == 2 * size);
  *top_word(a.s) = 5;
  pool.deallocate(a.s, a.guarded);
  // Another size of the same class reuses that stack.
  taken b = take(pool, 2 * size - page);
  CHECK(b.s.size == 2 * size);
  CHECK(b.s.base == a.s.base);
  CHECK(*top_word(b.s) == 5);
  // The smallest stack is a page or min_stack_size, rounded up likewise.
  taken c = take(pool, 1);
  CHECK(c.s.size >= fiber::min_stack_size);
  CHECK(c.s.size >= page);
  CHECK((c.s.size & (c.s.size - 1)) == 0);
  pool.deallocate(b.s, b.guarded);
  pool.deallocate(c.s, c.guarded);
  // A size no class holds is refused with the error of a failed allocation.
  bool guarded = false;
  CHECK_THROWS_AS(pool.allocate(SIZE_MAX - page, guarded), fiber::stack_allocation_error);
  CHECK(pool.guarded_live + pool.plain_live == 0);
}

TEST_CASE("loop stacks: a freed stack is reused first, of its own size and kind, with what its pages held", "[stacks]") {
  loop_stacks pool(size, 100);
  taken a = take(pool);
  taken b = take(pool);
  *top_word(b.s) = 7;
  pool.deallocate(a.s, a.guarded);
  pool.deallocate(b.s, b.guarded);
  taken c = take(pool);
  CHECK(c.s.base == b.s.base);  // the last freed
  CHECK(*top_word(c.s) == 7);   // hot: its pages stayed
  taken d = take(pool);
  CHECK(d.s.base == a.s.base);
  // Another size has a pool of its own: not one of these.
  taken e = take(pool, 2 * size);
  CHECK(e.s.size == 2 * size);
  CHECK(e.s.base != a.s.base);
  CHECK(e.s.base != b.s.base);
  pool.deallocate(e.s, e.guarded);
  taken f = take(pool, 2 * size);
  CHECK(f.s.base == e.s.base);
  // 0 and the default size are the same pool.
  pool.deallocate(d.s, d.guarded);
  taken g = take(pool, 0);
  CHECK(g.s.base == d.s.base);
  CHECK(g.s.size == size);
  for (taken* x : {&c, &f, &g}) pool.deallocate(x->s, x->guarded);
}

TEST_CASE("loop stacks: past the hot limit, free stacks turn cold once few are alive - reused after the hot ones",
          "[stacks]") {
  // hot_limit(): as many free stacks stay hot as make 2 MiB (128 of 16 KiB), 16 at least.
  const std::size_t hot = loop_stacks::hot_limit(size);
  REQUIRE(hot == std::max<std::size_t>(16, (2u << 20) / size));
  const std::size_t n = hot + 72;
  loop_stacks pool(size, 10 * n);
  std::vector<taken> t;
  for (std::size_t i = 0; i < n; ++i) {
    t.push_back(take(pool));
    REQUIRE(t.back().guarded);
    *top_word(t.back().s) = 1000 + i;
  }
  // Freed in order: the last ones freed are the hot ones at the end. The excess
  // waits loop_stacks::cool_interval (a load that comes back at once keeps its
  // pages): not cold yet; then tick() (the loop's passes) gives it back.
  const auto freed_at = std::chrono::steady_clock::now();
  for (auto& x : t) pool.deallocate(x.s, x.guarded);
  if (std::chrono::steady_clock::now() - freed_at < loop_stacks::cool_interval) CHECK(pool.ms_to_tick() >= 0);
  std::this_thread::sleep_for(loop_stacks::cool_interval + std::chrono::milliseconds(2));
  pool.tick();
  CHECK(pool.ms_to_tick() == -1);
  std::set<void*> hot_bases;
  for (std::size_t i = n - hot; i < n; ++i) hot_bases.insert(t[i].s.base);
  std::size_t reused_hot = 0;
  std::size_t zeroed = 0;
  std::vector<taken> again;
  for (std::size_t i = 0; i < n; ++i) {
    again.push_back(take(pool));
    const taken& x = again.back();
    if (i < hot) {
      // The hot ones first, with what their pages held.
      CHECK(hot_bases.count(x.s.base) == 1);
      if (hot_bases.count(x.s.base)) ++reused_hot;
    } else {
      CHECK(hot_bases.count(x.s.base) == 0);  // then the cold ones
#if !defined(_WIN32)
      if (*top_word(x.s) == 0) ++zeroed;  // their pages went back (MADV_DONTNEED: they read as zero)
#endif
    }
  }
  CHECK(reused_hot == hot);
#if !defined(_WIN32)
  CHECK(zeroed == n - hot);
#endif
  CHECK(pool.guarded_live == n);
  for (auto& x : again) pool.deallocate(x.s, x.guarded);
}

TEST_CASE("loop stacks: while as many stacks are alive as free, none turns cold (a load that goes up and down)",
          "[stacks]") {
  const std::size_t hot = loop_stacks::hot_limit(size);
  const std::size_t n = 2 * hot + 10;
  loop_stacks pool(size, 10 * n);
  std::vector<taken> t;
  for (std::size_t i = 0; i < 2 * n; ++i) t.push_back(take(pool));
  for (std::size_t i = 0; i < 2 * n; ++i) *top_word(t[i].s) = 1 + i;
  // Free half: n stay alive, n are free, more than the hot limit.
  for (std::size_t i = n; i < 2 * n; ++i) pool.deallocate(t[i].s, t[i].guarded);
  std::size_t kept = 0;
  std::vector<taken> again;
  for (std::size_t i = 0; i < n; ++i) {
    again.push_back(take(pool));
    if (*top_word(again.back().s) != 0) ++kept;
  }
  CHECK(kept == n);  // every one came back hot
  for (auto& x : again) pool.deallocate(x.s, x.guarded);
  for (std::size_t i = 0; i < n; ++i) pool.deallocate(t[i].s, t[i].guarded);
}

TEST_CASE("loop stacks: an excess of free stacks freed and taken again within the interval stays hot", "[stacks]") {
  // A worker whose load goes from many stacks to none and back within
  // microseconds (skynet on 2 workers): the pages stay, none is given back.
  const std::size_t hot = loop_stacks::hot_limit(size);
  const std::size_t n = hot + 64;
  loop_stacks pool(size, 10 * n);
  std::vector<taken> t;
  for (std::size_t i = 0; i < n; ++i) t.push_back(take(pool));
  for (std::size_t i = 0; i < n; ++i) *top_word(t[i].s) = 1 + i;
  const auto freed_at = std::chrono::steady_clock::now();
  for (auto& x : t) pool.deallocate(x.s, x.guarded);
  pool.tick();
  std::size_t kept = 0;
  std::vector<taken> again;
  for (std::size_t i = 0; i < n; ++i) {
    again.push_back(take(pool));
    if (*top_word(again.back().s) != 0) ++kept;
  }
  // (Unless this thread was descheduled for the whole interval meanwhile.)
  if (std::chrono::steady_clock::now() - freed_at < loop_stacks::cool_interval) CHECK(kept == n);
  for (auto& x : again) pool.deallocate(x.s, x.guarded);
}
