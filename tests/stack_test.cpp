#include <catch2/catch.hpp>

#include <csignal>
#include <cstdint>
#include <algorithm>
#include <iterator>
#include <new>
#include <thread>
#include <vector>

#include "fiber/generator.hpp"

#include "death.hpp"
#include "fiber/context.hpp"
#include "fiber/stack.hpp"

TEST_CASE("protected_stack: rounded to pages, writable, with a guard page below") {
  fiber::protected_stack alloc(10000);
  REQUIRE(alloc.size() % fiber::page_size() == 0);
  REQUIRE(alloc.size() >= 10000);
  REQUIRE(fiber::protected_stack().size() == fiber::default_stack_size);
  fiber::stack_memory s = alloc.allocate();
  REQUIRE(s.size == alloc.size());
  REQUIRE(reinterpret_cast<std::uintptr_t>(s.base) % fiber::page_size() == 0);
  static_cast<volatile char*>(s.base)[0] = 1;              // lowest usable byte
  static_cast<volatile char*>(s.top())[-1] = 1;            // highest usable byte
  auto d = fiber_test::run_in_child([&] { static_cast<volatile char*>(s.base)[-1] = 1; });  // guard page
  REQUIRE(d.signal == SIGSEGV);
  alloc.deallocate(s);
}

TEST_CASE("protected_stack: running off the end of a fiber's stack faults instead of corrupting memory") {
  auto d = fiber_test::run_in_child([] {
    fiber::context f{std::allocator_arg, fiber::protected_stack(16 * 1024), [](fiber::context&& main) {
      volatile char big[64 * 1024];  // larger than the whole stack
      for (std::size_t i = sizeof big; i-- > 0;) big[i] = 1;
      return std::move(main);
    }};
    f = std::move(f).resume();
  });
  REQUIRE(d.signal == SIGSEGV);
}

TEST_CASE("protected_stack: allocation failure is a std::bad_alloc naming the size") {
  // More than any address space holds: 2^56 where size_t has 64 bits, else 3.75 GiB.
  constexpr std::size_t huge_size =
      sizeof(std::size_t) >= 8 ? static_cast<std::size_t>(std::uint64_t{1} << 56) : std::size_t{0xF0000000};
  fiber::protected_stack huge(huge_size);
  try {
    (void)huge.allocate();
    FAIL("a stack larger than the address space was allocated");
  } catch (const std::bad_alloc& e) {
    REQUIRE_THAT(e.what(), Catch::Contains(std::to_string(huge_size)));
  }
  REQUIRE_THROWS_AS(fiber::protected_stack(SIZE_MAX - 10), std::bad_alloc);
}

TEST_CASE("pooled_stack: reuses freed stacks and keeps at most max_cached") {
  fiber::pooled_stack pool(16 * 1024, 2);
  REQUIRE(pool.size() == 16 * 1024);
  fiber::stack_memory a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  REQUIRE(pool.cached() == 0);
  pool.deallocate(a);
  pool.deallocate(b);
  pool.deallocate(c);  // beyond the bound: unmapped
  REQUIRE(pool.cached() == 2);
  fiber::stack_memory again = pool.allocate();
  REQUIRE((again.base == a.base || again.base == b.base));
  REQUIRE(pool.cached() == 1);
  fiber::pooled_stack copy = pool;  // copies share the pool
  copy.deallocate(again);
  REQUIRE(pool.cached() == 2);
}

TEST_CASE("stack_view: the caller's memory is used as is - bad ranges are refused") {
  alignas(16) static char memory[fiber::min_stack_size + 4096];
  fiber::stack_memory s = fiber::stack_view{memory, sizeof memory}.allocate();
  REQUIRE(s.base == memory);
  REQUIRE(s.size == sizeof memory);
  REQUIRE_THROWS_AS(fiber::stack_view{}.allocate(), fiber::error);
  REQUIRE_THROWS_WITH((fiber::stack_view{memory, 16}.allocate()), Catch::Contains("16 bytes"));
}

TEST_CASE("pooled_stack: shared by fibers on several threads at once") {
  fiber::pooled_stack pool(16 * 1024, 8);
  auto work = [pool] {
    long sum = 0;
    for (int i = 0; i < 2000; ++i) {
      fiber::generator<int> g{std::allocator_arg, pool, [i](auto& co) {
        co.yield(i);
        co.yield(1);
      }};
      for (int v : g) sum += v;
    }
    return sum;
  };
  long a = 0, b = 0;
  std::thread t1([&] { a = work(); }), t2([&] { b = work(); });
  t1.join();
  t2.join();
  const long expected = 2000L * 1999 / 2 + 2000;
  REQUIRE(a == expected);
  REQUIRE(b == expected);
  REQUIRE(pool.cached() <= 8);
}

TEST_CASE("pooled_stack: a pool kept alive only by a fiber's copy outlives its other handles") {
  fiber::generator<int> g{std::allocator_arg, fiber::pooled_stack(16 * 1024, 2), [](auto& co) { co.yield(5); }};
  REQUIRE(g.next() == 5);  // the only handle to the pool is inside the fiber's record
}

TEST_CASE("stack_view: the smallest accepted stack runs a fiber without writing below its base") {
  alignas(16) static unsigned char memory[4096 + fiber::min_stack_size];
  std::fill(std::begin(memory), std::end(memory), 0xA5);
  unsigned char* base = memory + 4096;
  int ran = 0;
  {
    fiber::context f{std::allocator_arg, fiber::stack_view{base, fiber::min_stack_size}, [&](fiber::context&& main) {
      ran = 1;
      return std::move(main);
    }};
    f = std::move(f).resume();
  }
  REQUIRE(ran == 1);
  bool untouched = true;
  for (std::size_t i = 0; i < 4096; ++i) untouched = untouched && memory[i] == 0xA5;
  REQUIRE(untouched);
}

// The address of a local of a default-constructed context's entry: where on which
// stack it ran.
static std::uintptr_t local_address_in_default_context() {
  std::uintptr_t where = 0;
  fiber::context f{[&where](fiber::context&& caller) {
    volatile char local = 0;
    where = reinterpret_cast<std::uintptr_t>(&local);
    return std::move(caller);
  }};
  f = std::move(f).resume();
  return where;
}

TEST_CASE("cached_stack: the default constructors reuse the thread's cached stacks, without a new mapping") {
  // Run on a thread of its own, so that the cache starts empty and others' tests
  // do not touch it.
  std::thread([] {
    REQUIRE(fiber::cached_stack::thread_cached() == 0);
    const std::uintptr_t first = local_address_in_default_context();
    REQUIRE(fiber::cached_stack::thread_cached() == 1);  // given back when the fiber ended
    // The next default fiber runs on the same stack, at the same depth.
    REQUIRE(local_address_in_default_context() == first);
    REQUIRE(fiber::cached_stack::thread_cached() == 1);
    fiber::generator<int> g{[](auto& co) { co.yield(1); }};  // takes the cached stack
    REQUIRE(fiber::cached_stack::thread_cached() == 0);
    REQUIRE(g.next() == 1);
  }).join();
}

TEST_CASE("cached_stack: a thread keeps at most thread_cache_limit stacks, and the stacks are guarded") {
  std::thread([] {
    const std::size_t limit = fiber::cached_stack::thread_cache_limit;
    {
      std::vector<fiber::context> many;
      for (std::size_t i = 0; i < limit + 8; ++i)
        many.emplace_back([](fiber::context&& caller) { return std::move(caller); });
      REQUIRE(fiber::cached_stack::thread_cached() == 0);
    }  // destroyed before they ran: each stack goes back, the cache keeps `limit`
    REQUIRE(fiber::cached_stack::thread_cached() == limit);
    // Stacks of another size are kept apart: a request for one maps a new stack.
    fiber::cached_stack big(4 * fiber::default_stack_size);
    fiber::stack_memory s = big.allocate();
    REQUIRE(s.size == big.size());
    REQUIRE(fiber::cached_stack::thread_cached() == limit);
    big.deallocate(s);  // the cache is full: unmapped
    REQUIRE(fiber::cached_stack::thread_cached() == limit);
  }).join();
  // A cached stack keeps its guard page: running off its end faults.
  fiber::cached_stack alloc;
  fiber::stack_memory s = alloc.allocate();
  alloc.deallocate(s);
  s = alloc.allocate();  // the one just cached
  auto d = fiber_test::run_in_child([&] { static_cast<volatile char*>(s.base)[-1] = 1; });
  REQUIRE(d.signal == SIGSEGV);
  alloc.deallocate(s);
}

TEST_CASE("cached_stack: a stack made on one thread may be given back on another") {
  fiber::context f{[](fiber::context&& caller) { return std::move(caller).resume(); }};
  f = std::move(f).resume();  // suspended inside its entry, on a stack from this thread's cache
  std::thread([&f] {
    const std::size_t before = fiber::cached_stack::thread_cached();
    f = std::move(f).resume();  // it ends here: its stack goes to this thread's cache
    REQUIRE(!f);
    REQUIRE(fiber::cached_stack::thread_cached() == before + 1);
  }).join();
}
