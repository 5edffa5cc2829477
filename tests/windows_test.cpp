// Windows only: what the system expects of a thread's stack holds on a fiber's. The
// Thread Information Block describes the fiber's stack while it runs (and the
// thread's own again when it does), so stack probes, C++ exceptions (dispatched by
// the system's SEH unwinder, which refuses frames outside the TIB's bounds) and
// stack queries work inside fibers. See arch/switch_x86_64_ms_pe_gas.S.
#include <catch2/catch.hpp>

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

#include "fiber/context.hpp"

using fiber::context;

extern "C" void fiber_trampoline();  // the outermost frame of every fiber (arch/)

namespace {

const NT_TIB* current_tib() {
  // NtCurrentTeb() reads gs:[0x30]; GCC 12 takes the inlined segment read for an
  // access through address 0x30 and warns (-Warray-bounds) wrongly.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
  return reinterpret_cast<const NT_TIB*>(NtCurrentTeb());
#pragma GCC diagnostic pop
}

struct stack_description {
  std::uintptr_t base = 0, limit = 0;              // TIB StackBase, StackLimit
  std::uintptr_t low = 0, high = 0;                // GetCurrentThreadStackLimits
  void* fiber_data = nullptr;                      // TIB FiberData

  static stack_description current() {
    stack_description d;
    const NT_TIB* tib = current_tib();
    d.base = reinterpret_cast<std::uintptr_t>(tib->StackBase);
    d.limit = reinterpret_cast<std::uintptr_t>(tib->StackLimit);
    ULONG_PTR low = 0, high = 0;
    ::GetCurrentThreadStackLimits(&low, &high);
    d.low = low;
    d.high = high;
    d.fiber_data = tib->FiberData;
    return d;
  }
  bool operator==(const stack_description&) const = default;
};

// A protected_stack that remembers the last stack it handed out.
struct recording_stack {
  fiber::protected_stack inner;
  fiber::stack_memory* last;
  fiber::stack_memory allocate() const { return *last = inner.allocate(); }
  void deallocate(fiber::stack_memory s) const noexcept { inner.deallocate(s); }
};

std::uintptr_t address(const volatile void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// More than a page of locals: the compiler probes the frame (__chkstk) before
// moving rsp. Touched from the top down, as a growing stack is.
__attribute__((noinline)) long big_frame(std::uintptr_t* lowest, std::uintptr_t* highest) {
  volatile char big[32 * 1024];
  for (std::size_t i = sizeof big; i-- > 0;) big[i] = static_cast<char>(i);
  long sum = 0;
  for (std::size_t i = 0; i < sizeof big; i += 4096) sum += big[i];
  *lowest = address(&big[0]);
  *highest = address(&big[sizeof big - 1]);
  return sum;
}

__attribute__((noinline)) void throw_from_depth(int depth, int* unwound) {
  struct counts {
    int* n;
    ~counts() { ++*n; }
  } guard{unwound};
  if (depth == 0) throw std::runtime_error("thrown " + std::to_string(*unwound));
  throw_from_depth(depth - 1, unwound);
}

}  // namespace

TEST_CASE("windows: inside a fiber the TIB describes the fiber's stack - back in main, main's again") {
  const stack_description main_before = stack_description::current();
  REQUIRE(main_before.limit < address(&main_before));
  REQUIRE(address(&main_before) < main_before.base);

  fiber::stack_memory stack;
  stack_description in_fiber, in_fiber_after_switch;
  std::uintptr_t local_address = 0;
  context f{std::allocator_arg, recording_stack{fiber::protected_stack(64 * 1024), &stack}, [&](context&& main) {
    volatile int local = 0;
    local_address = address(&local);
    in_fiber = stack_description::current();
    main = std::move(main).resume();
    in_fiber_after_switch = stack_description::current();
    return std::move(main);
  }};
  const auto base = reinterpret_cast<std::uintptr_t>(stack.base);
  const auto top = reinterpret_cast<std::uintptr_t>(stack.top());

  f = std::move(f).resume();
  CHECK(stack_description::current() == main_before);
  CHECK(in_fiber.limit == base);                        // the whole usable range is committed
  CHECK(in_fiber.base <= top);                          // the fiber's record sits above its stack
  CHECK(in_fiber.base > top - 1024);
  CHECK(in_fiber.limit < local_address);
  CHECK(local_address < in_fiber.base);
  CHECK(in_fiber.low == base - fiber::page_size());     // DeallocationStack: the guard page too
  CHECK(in_fiber.high == in_fiber.base);
  CHECK(in_fiber.fiber_data == nullptr);                // not a Win32 fiber

  f = std::move(f).resume();
  REQUIRE_FALSE(f);
  CHECK(in_fiber_after_switch == in_fiber);
  CHECK(stack_description::current() == main_before);
}

TEST_CASE("windows: a stack_view's stack owns nothing below its base") {
  alignas(16) static char memory[64 * 1024];
  stack_description in_fiber;
  context f{std::allocator_arg, fiber::stack_view{memory, sizeof memory}, [&](context&& main) {
    in_fiber = stack_description::current();
    return std::move(main);
  }};
  f = std::move(f).resume();
  CHECK(in_fiber.limit == address(memory));
  CHECK(in_fiber.low == address(memory));
  CHECK(in_fiber.base <= address(memory + sizeof memory));
  CHECK(in_fiber.base > address(memory + sizeof memory) - 1024);
}

TEST_CASE("windows: a frame larger than a page (probed by __chkstk) works on a fiber with room for it") {
  stack_description in_fiber;
  std::uintptr_t lowest = 0, highest = 0;
  long sum = -1;
  context f{std::allocator_arg, fiber::protected_stack(128 * 1024), [&](context&& main) {
    in_fiber = stack_description::current();
    sum = big_frame(&lowest, &highest);
    return std::move(main);
  }};
  f = std::move(f).resume();
  long expected = 0;
  for (std::size_t i = 0; i < 32 * 1024; i += 4096) expected += static_cast<char>(i);
  CHECK(sum == expected);
  CHECK(in_fiber.limit <= lowest);
  CHECK(highest < in_fiber.base);
}

TEST_CASE("windows: a C++ exception thrown and caught inside a fiber, before and after a switch") {
  std::string caught_first, caught_second;
  context f{[&](context&& main) {
    try {
      throw std::runtime_error("first");
    } catch (const std::runtime_error& e) {
      caught_first = e.what();
    }
    main = std::move(main).resume();
    try {
      throw std::runtime_error("second");
    } catch (const std::runtime_error& e) {
      caught_second = e.what();
    }
    return std::move(main);
  }};
  f = std::move(f).resume();
  CHECK(caught_first == "first");
  CHECK(caught_second.empty());
  f = std::move(f).resume();
  REQUIRE_FALSE(f);
  CHECK(caught_second == "second");
}

TEST_CASE("windows: a C++ exception thrown from nested calls is caught in the fiber's entry") {
  int unwound = 0;
  std::string caught;
  context f{[&](context&& main) {
    main = std::move(main).resume();  // the throw happens on a resumed fiber
    try {
      throw_from_depth(20, &unwound);
    } catch (const std::exception& e) {
      caught = e.what();
    }
    return std::move(main);
  }};
  f = std::move(f).resume();
  f = std::move(f).resume();
  REQUIRE_FALSE(f);
  CHECK(caught == "thrown 0");
  CHECK(unwound == 21);  // every frame's destructor ran
}

TEST_CASE("windows: the system's stack walk in a fiber ends at fiber_trampoline") {
  void* frames[128] = {};
  USHORT count = 0;
  context f{[&](context&& main) {
    count = ::RtlCaptureStackBackTrace(0, 128, frames, nullptr);
    return std::move(main);
  }};
  f = std::move(f).resume();
  REQUIRE(count > 1);
  REQUIRE(count < 128);
  // The last return address is the one in fiber_trampoline: nothing beyond it.
  DWORD64 image_base = 0;
  const auto ip = reinterpret_cast<DWORD64>(frames[count - 1]) - 1;
  const RUNTIME_FUNCTION* function = ::RtlLookupFunctionEntry(ip, &image_base, nullptr);
  REQUIRE(function != nullptr);
  CHECK(image_base + function->BeginAddress == reinterpret_cast<DWORD64>(&fiber_trampoline));
}

TEST_CASE("windows: a fiber resumed by another thread carries its stack description there") {
  stack_description before, on_thread, thread_own_before, thread_own_after;
  context f{[&](context&& main) {
    before = stack_description::current();
    main = std::move(main).resume();
    on_thread = stack_description::current();
    return std::move(main);
  }};
  f = std::move(f).resume();
  std::thread t([&] {
    thread_own_before = stack_description::current();
    f = std::move(f).resume();
    thread_own_after = stack_description::current();
  });
  t.join();
  REQUIRE_FALSE(f);
  CHECK(on_thread == before);
  CHECK(thread_own_after == thread_own_before);
  CHECK(thread_own_before.base != before.base);
}
