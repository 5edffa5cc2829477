// Stack overflows of event_loop fibers, on every kind of stack the loop gives:
// each is reported with the guard page's message ("fiber: stack overflow in fiber
// ..."), never a bare SIGSEGV and never a process that goes on with another
// fiber's memory overwritten. Each case runs in a child process (death.hpp).
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <string>

#include "death.hpp"
#include "fiber/debug.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/stack.hpp"

namespace {

constexpr std::size_t stack_size = 32 * 1024;

// Recurses without end, writing each frame.
volatile bool forever = true;
[[gnu::noinline]] int bottomless(int depth) {
  volatile char frame[256];
  for (auto& c : frame) c = static_cast<char>(depth);
  if (!forever) return frame[0];
  return bottomless(depth + 1) + frame[depth % 256];
}

// Recurses `depth` frames of over 512 bytes, writing each, then returns.
[[gnu::noinline]] int deep(int depth) {
  volatile char frame[512];
  for (auto& c : frame) c = static_cast<char>(depth);
  if (depth == 0) return frame[7];
  return deep(depth - 1) + frame[depth % 512];
}

// One frame much larger than a page, written at its far (lowest) end only: it
// jumps a guard page unless the compiler probes the pages between.
[[gnu::noinline]] int one_huge_frame() {
  volatile char frame[256 * 1024];
  frame[0] = 1;
  return frame[0];
}

void quiet_death_signals() {
#ifndef _WIN32
  std::signal(SIGABRT, SIG_DFL);  // die quietly: not through Catch's handler
  std::signal(SIGSEGV, SIG_DFL);
  // Ours over the default (whether or not the parent had installed it before
  // the fork, and Catch replaced it since).
  fiber::set_overflow_handler(true);
#endif
}

bool reported(const fiber_test::death& d) {
  return d.signal != 0 && d.stderr_text.find("fiber: stack overflow in fiber") != std::string::npos;
}

}  // namespace

#ifndef _WIN32  // the SIGSEGV handler (overflow.cpp) is POSIX only
TEST_CASE("loop overflow: endless recursion on an unguarded stack is reported", "[overflow]") {
  // It runs through the stacks below it until it faults, which must be within 8
  // MiB of its own stack (overflow.cpp). Natively the slab's end is: the memory
  // below a fresh mapping is free. Not so under qemu-user (guest mappings lie
  // end to end), valgrind and TSan (their own mappings and signal handling).
#if defined(FIBER_TEST_EMULATED) || defined(__SANITIZE_THREAD__)
  SUCCEED("skipped: under an emulator or TSan the memory below a slab may be mapped");
  return;
#endif
  if (const char* preload = std::getenv("LD_PRELOAD"); preload && std::strstr(preload, "vgpreload")) {
    SUCCEED("skipped under valgrind: it reports the overflow itself");
    return;
  }
  auto d = fiber_test::run_in_child([] {
    quiet_death_signals();
    fiber::event_loop::options opts;
    opts.stack_size = stack_size;
    opts.guarded_stacks = 0;  // every stack is carved from a slab, without a guard page
    opts.stack = fiber::stack_kind::own;
    fiber::event_loop loop(opts);
    for (int i = 0; i < 8; ++i) loop.spawn([] { fiber::this_fiber::sleep_for(std::chrono::hours(1)); }).detach();
    loop.spawn(fiber::spawn_options{.name = "bottomless"}, [] { (void)bottomless(0); }).detach();
    loop.run();
  });
  INFO(d.stderr_text);
  CHECK(reported(d));
  CHECK(d.stderr_text.find("'bottomless'") != std::string::npos);
}
#endif

TEST_CASE("loop overflow: an overflow that returned is reported when its fiber yields with nothing else ready",
          "[overflow]") {
  // yield() with nothing else to run returns at once; the stack is checked anyway.
  auto d = fiber_test::run_in_child([] {
    quiet_death_signals();
    fiber::event_loop::options opts;
    opts.stack_size = stack_size;
    opts.guarded_stacks = 0;
    opts.stack = fiber::stack_kind::own;  // (unguarded stacks of their own)
    fiber::event_loop loop(opts);
    loop.spawn([] { fiber::this_fiber::yield(); }).detach();  // the one below: its stack is overrun
    loop.spawn([] {
      fiber::this_fiber::yield();  // the first one has ended: nothing else is ready from here on
      (void)deep(static_cast<int>(stack_size / 512 + 16));  // past the bottom, into the stack below
      fiber::this_fiber::yield();
      std::_Exit(0);  // not reached: an unnoticed overflow exits 0
    }).detach();
    loop.run();
  });
  INFO(d.stderr_text);
  CHECK(reported(d));
}

TEST_CASE("loop overflow: an overflow that returned is reported when its fiber ends", "[overflow]") {
  auto d = fiber_test::run_in_child([] {
    quiet_death_signals();
    fiber::event_loop::options opts;
    opts.stack_size = stack_size;
    opts.guarded_stacks = 0;
    opts.stack = fiber::stack_kind::own;  // (unguarded stacks of their own)
    fiber::event_loop loop(opts);
    loop.spawn([] { fiber::this_fiber::sleep_for(std::chrono::milliseconds(50)); }).detach();
    loop.spawn([] { (void)deep(static_cast<int>(stack_size / 512 + 16)); }).detach();
    loop.run();
    std::_Exit(0);  // not reached
  });
  INFO(d.stderr_text);
  CHECK(reported(d));
}

#ifndef _WIN32  // the SIGSEGV handler (overflow.cpp) is POSIX only
TEST_CASE("loop overflow: a frame larger than a page on a guarded stack is reported", "[overflow]") {
  // The guard page is 4 KiB; the frame is 256 KiB. The library's build compiles
  // with -fstack-clash-protection where the compiler has it (its users too): the
  // probes hit the guard page. Without probes, the write lands below the guard
  // page, and the handler still finds the running fiber's stack just above it.
  auto d = fiber_test::run_in_child([] {
    quiet_death_signals();
    fiber::event_loop::options opts;
    opts.stack_size = stack_size;
    fiber::event_loop loop(opts);
    loop.spawn(fiber::spawn_options{.name = "huge frame"}, [] { (void)one_huge_frame(); }).detach();
    loop.run();
    std::_Exit(0);
  });
  INFO(d.stderr_text);
  CHECK(reported(d));
  CHECK(d.stderr_text.find("'huge frame'") != std::string::npos);
}
#endif

#ifndef _WIN32  // the SIGSEGV handler (overflow.cpp) is POSIX only
TEST_CASE("loop overflow: a frame larger than a page on a generator's stack is reported", "[overflow]") {
  auto d = fiber_test::run_in_child([] {
    quiet_death_signals();
    fiber::context c([](fiber::context&& caller) {
      (void)one_huge_frame();
      return std::move(caller);
    });
    c = std::move(c).resume();
    std::_Exit(0);
  });
  INFO(d.stderr_text);
  CHECK(reported(d));
}
#endif
