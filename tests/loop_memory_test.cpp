// The loop's memory under abuse: after a burst of tasks, the memory their stacks
// (and task blocks) used goes back to the system while the loop lives on; stacks
// whose pages went back are reused intact; and when a stack cannot be had, the
// error names the limit that was hit.
#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "death.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/sync.hpp"

#if defined(__linux__)
#  include <sys/mman.h>
#  include <sys/resource.h>
#  include <unistd.h>
#endif
#if defined(__GLIBC__)
#  include <malloc.h>
#endif

namespace {

// Small stacks: thousands at once. (ASan's frames carry redzones: the loop's own
// paths need more than 16 KiB there.)
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t small_stack = 48 * 1024;
#else
constexpr std::size_t small_stack = 16 * 1024;
#endif


#if defined(__linux__)
// The process's resident set or its mapped size (bytes), from /proc/self/statm;
// 0 if unknown.
std::size_t statm_bytes(bool resident) {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, rss = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &rss);
  std::fclose(f);
  return got == 2 ? (resident ? rss : size) * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) : 0;
}

// Under valgrind (its preload library is in LD_PRELOAD): the process's memory is
// valgrind's too (shadow memory it does not give back), and its address space
// is valgrind's to manage.
bool under_valgrind() {
  const char* preload = std::getenv("LD_PRELOAD");
  return preload && std::strstr(preload, "vgpreload");
}

// Whether madvise(MADV_DONTNEED) makes the resident set fall here. qemu-user
// (the cross targets' tests) returns success and does nothing.
bool dontneed_returns_memory() {
  constexpr std::size_t bytes = 8u << 20;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  std::memset(p, 1, bytes);
  const std::size_t touched = statm_bytes(true);
  ::madvise(p, bytes, MADV_DONTNEED);
  const std::size_t after = statm_bytes(true);
  ::munmap(p, bytes);
  return after + bytes / 2 < touched;
}

unsigned long read_max_map_count() {
  unsigned long n = 0;
  if (std::FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    if (std::fscanf(f, "%lu", &n) != 1) n = 0;
    std::fclose(f);
  }
  return n;
}
#endif

// Writes `bytes` of the calling fiber's stack, as a task with a few locals does.
[[gnu::noinline]] void touch_stack(std::size_t bytes) {
  volatile char buf[3 * 1024];
  for (std::size_t i = 0; i < bytes && i < sizeof buf; i += 64) buf[i] = 1;
}

// Fills a frame with a pattern of `seed`, parks on `gate`, and counts in `bad`
// the bytes of the frame that changed meanwhile (a page given back while in use
// reads as zeros).
[[gnu::noinline]] void hold_pattern(std::size_t seed, fiber::wait_group& gate, std::size_t& bad) {
  volatile unsigned char buf[1536];
  for (std::size_t i = 0; i < sizeof buf; ++i) buf[i] = static_cast<unsigned char>(seed * 131 + i * 7 + 1);
  gate.wait();
  for (std::size_t i = 0; i < sizeof buf; ++i)
    if (buf[i] != static_cast<unsigned char>(seed * 131 + i * 7 + 1)) ++bad;
}

}  // namespace

namespace {
// A burst of 10^5 tasks alive at once in a running loop: RSS after it, the loop
// still running, must fall back below twice its value before.
void check_rss_after_burst(bool keep_handles) {
#if !defined(__linux__)
  SUCCEED("skipped: RSS is read from /proc/self/statm (Linux only)");
#else
  if (under_valgrind()) {
    SUCCEED("skipped under valgrind: its shadow memory of the burst's stacks stays");
    return;
  }
#if defined(FIBER_TEST_EMULATED)
  SUCCEED("skipped under qemu-user: the resident set it reports does not follow madvise and malloc_trim");
  return;
#endif
  if (!dontneed_returns_memory()) {
    SUCCEED("skipped: madvise(MADV_DONTNEED) does not lower the resident set here (qemu-user ignores it)");
    return;
  }
  constexpr std::size_t n = 100000;
  fiber::event_loop loop(fiber::event_loop::options{.stack = fiber::stack_kind::own});  // (stacks given back)
  std::size_t before = 0, peak = 0, after = 0;
  auto main = loop.spawn([&] {
    // Warm up: a few tasks, so the loop's first stacks, idle workers, task block
    // caches and the test's own allocations are already there.
    for (int round = 0; round < 4; ++round) {
      std::vector<fiber::task<void>> ts;
      for (int i = 0; i < 64; ++i) ts.push_back(fiber::spawn([] { touch_stack(3 * 1024); }));
      for (auto& t : ts) t.join();
    }
    before = statm_bytes(true);

    // The burst: n tasks alive at once, each with a few KiB of its stack written.
    {
      fiber::wait_group gate(1);
      fiber::wait_group ended(static_cast<std::ptrdiff_t>(n));
      std::size_t parked = 0;
      // With keep_handles, the handles hold the tasks' blocks until every task
      // has ended and its stack went back: the blocks are freed last, all over
      // the C heap.
      std::vector<fiber::task<void>> handles;
      if (keep_handles) handles.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        auto t = fiber::spawn([&] {
          touch_stack(3 * 1024);
          ++parked;
          gate.wait();
          ended.done();
        });
        if (keep_handles)
          handles.push_back(std::move(t));
        else
          t.detach();
      }
      while (parked < n) fiber::this_fiber::yield();
      peak = statm_bytes(true);
      gate.done();
      if (keep_handles)
        for (auto& t : handles) t.join();
      else
        ended.wait();
    }
    // Let the loop finish with them (the last ones end after waking us), and let
    // the stack pool's wait before it gives back an excess (loop_stacks.hpp,
    // cool_interval: 50 ms) pass.
    for (int i = 0; i < 4; ++i) fiber::this_fiber::yield();
    fiber::this_fiber::sleep_for(std::chrono::milliseconds(150));
    REQUIRE(loop.alive() == 1);
    after = statm_bytes(true);  // the loop alive, and running
  });
  loop.run();
  main.get();
  INFO("RSS before the burst " << before << " bytes, at its peak " << peak << ", after it " << after);
  std::printf("loop memory: RSS before the burst %zu bytes, at its peak %zu, after it %zu (loop alive)\n", before,
              peak, after);
  REQUIRE(before > 0);
  REQUIRE(peak > 2 * before);  // the burst did use memory
  REQUIRE(after < 2 * before);
#endif
}
}  // namespace

TEST_CASE("loop memory: RSS after a burst of 10^5 tasks falls back below twice its value before", "[memory]") {
  check_rss_after_burst(false);
}

TEST_CASE("loop memory: RSS after a burst of 10^5 joined tasks, their handles kept to the end, falls back too",
          "[memory]") {
  check_rss_after_burst(true);
}

TEST_CASE("loop memory: stacks whose pages went back are reused intact, next to live ones", "[memory]") {
  // Unguarded stacks mostly (a few guarded), small: thousands at once. Nine
  // tasks in ten end first, so that free stacks turn cold between live ones; new
  // tasks then take the cold stacks back while their neighbours hold data.
  // Every task checks its frame, and the loop its canary.
  fiber::event_loop::options opts;
  opts.stack_size = small_stack;
  opts.guarded_stacks = 64;
  opts.stack = fiber::stack_kind::own;  // (stacks of their own, their canaries checked)
  fiber::event_loop loop(opts);
  std::size_t bad = 0, ran = 0, expected = 0;
  auto main = loop.spawn([&] {
    const std::size_t sizes[] = {3000, 700, 5000, 100, 4000, 2500};
    std::size_t seed = 0;
    for (std::size_t n : sizes) {
      expected += n + n / 3;
      fiber::wait_group first(1), last(1), ended(static_cast<std::ptrdiff_t>(n));
      for (std::size_t i = 0; i < n; ++i)
        fiber::spawn([&, i, s = seed++] {
          hold_pattern(s, i % 10 ? first : last, bad);
          ++ran;
          ended.done();
        }).detach();
      fiber::this_fiber::yield();  // all start and park
      first.done();
      for (int k = 0; k < 4; ++k) fiber::this_fiber::yield();  // nine in ten end
      // A smaller round in the holes, while the others hold their frames.
      fiber::wait_group gate(1), ended2(static_cast<std::ptrdiff_t>(n / 3));
      for (std::size_t i = 0; i < n / 3; ++i)
        fiber::spawn([&, s = seed++] {
          hold_pattern(s, gate, bad);
          ++ran;
          ended2.done();
        }).detach();
      fiber::this_fiber::yield();
      gate.done();
      ended2.wait();
      last.done();
      ended.wait();
    }
  });
  loop.run();
  main.get();
  CHECK(bad == 0);
  CHECK(ran == expected);
}

#if defined(__linux__)
namespace {

constexpr int limit_not_in_force = 3;  // a child's exit code

// In a child process (the limit stays with it): limits the address space to 16
// MiB above what is mapped now, spawns 1024 tasks that each want a 64 KiB stack
// and park, releases them, and reports on stderr. Exits 0 if some tasks got a
// stack and ended well, the others failed with fiber::stack_allocation_error
// naming the address-space limit, and nothing else happened. With
// `heap_room`, the C heap first gets 8 MiB it keeps (the exceptions and their
// messages are malloc'd); without it, the heap has only what it had, and a
// spawn may fail too (std::bad_alloc: the task's block), which ends the
// spawning.
void refused_stacks_child(bool heap_room) {
  if (heap_room) {
#  if defined(__GLIBC__)
    mallopt(M_TRIM_THRESHOLD, 256 << 20);  // keep what is freed
    mallopt(M_MMAP_THRESHOLD, 16 << 20);   // (at most 32 MiB)
    void* volatile room = std::malloc(8u << 20);  // (volatile: a malloc freed unused may go)
    std::free(room);
#  endif
  }
  std::size_t failed = 0, succeeded = 0, other = 0, spawned = 0;
  std::string message, main_error;
  message.reserve(1024);
  main_error.reserve(1024);
  {
    fiber::event_loop loop(fiber::event_loop::options{.stack = fiber::stack_kind::own});  // (stacks to refuse)
    auto main = loop.spawn([&] {
      constexpr int n = 1024;
      std::vector<fiber::task<void>> ts;
      ts.reserve(n);  // before the limit
      fiber::wait_group gate(1);
      const rlimit lim{statm_bytes(false) + (16u << 20), RLIM_INFINITY};
      rlimit now{};
      if (::setrlimit(RLIMIT_AS, &lim) != 0 || ::getrlimit(RLIMIT_AS, &now) != 0 || now.rlim_cur != lim.rlim_cur) {
        std::fprintf(stderr, "setrlimit(RLIMIT_AS) is not in force (qemu-user ignores it)\n");
        std::_Exit(limit_not_in_force);
      }
      try {
        for (int i = 0; i < n; ++i)
          ts.push_back(fiber::spawn([&] {
            touch_stack(1024);
            gate.wait();
          }));
      } catch (const std::bad_alloc& e) {
        if (heap_room) main_error = std::string("spawn threw: ") + e.what();
      }
      spawned = ts.size();
      // Let every task start (or fail to get a stack), then release them.
      try {
        for (int i = 0; i < 8; ++i) fiber::this_fiber::yield();
      } catch (const std::exception& e) {
        main_error = std::string("yield threw: ") + e.what();
      }
      gate.done();
      for (auto& t : ts) {
        try {
          t.get();
          ++succeeded;
        } catch (const fiber::stack_allocation_error& e) {
          if (failed++ == 0) message = e.what();
        } catch (...) {
          ++other;
        }
      }
    });
    try {
      loop.run();
      main.get();
    } catch (const std::exception& e) {
      main_error = std::string("run or the main task threw: ") + e.what();
    }
  }
  std::fprintf(stderr, "spawned %zu: succeeded %zu, failed %zu, other %zu\nmessage: %s\n%s\n", spawned, succeeded,
               failed, other, message.c_str(), main_error.c_str());
  const bool ok = failed > 0 && succeeded > 0 && other == 0 && main_error.empty() &&
                  message.find("RLIMIT_AS") != std::string::npos && message.find("ulimit -v") != std::string::npos;
  std::fflush(stderr);
  std::_Exit(ok ? 0 : 1);
}

}  // namespace
#endif

TEST_CASE("loop memory: a stack refused under ulimit -v names the address-space limit", "[memory]") {
#if !defined(__linux__)
  SUCCEED("skipped: setrlimit(RLIMIT_AS) and fork (Linux)");
#else
  if (under_valgrind()) {
    SUCCEED("skipped under valgrind: the limit would bind valgrind's own mappings");
    return;
  }
  auto d = fiber_test::run_in_child([] { refused_stacks_child(true); });
  INFO(d.stderr_text);
  if (d.signal == 0 && d.exit_code == limit_not_in_force) {
    SUCCEED("skipped: setrlimit(RLIMIT_AS) is not in force here (qemu-user ignores it)");
    return;
  }
  CHECK(d.signal == 0);
  CHECK(d.exit_code == 0);
#endif
}

// The same with the C heap exhausted too, when exceptions can only come from the
// C++ runtime's small emergency pool: a loop that made an exception object for
// each task it could not start ran the pool out, and the process ended with
// "terminate called without an active exception".
TEST_CASE("loop memory: stacks refused under ulimit -v with the C heap full too fail the tasks, not the process",
          "[memory]") {
#if !defined(__linux__)
  SUCCEED("skipped: setrlimit(RLIMIT_AS) and fork (Linux)");
#else
  if (under_valgrind()) {
    SUCCEED("skipped under valgrind: the limit would bind valgrind's own mappings");
    return;
  }
  auto d = fiber_test::run_in_child([] { refused_stacks_child(false); });
  INFO(d.stderr_text);
  if (d.signal == 0 && d.exit_code == limit_not_in_force) {
    SUCCEED("skipped: setrlimit(RLIMIT_AS) is not in force here (qemu-user ignores it)");
    return;
  }
  CHECK(d.signal == 0);
  CHECK(d.exit_code == 0);
#endif
}

TEST_CASE("loop memory: stacks refused at vm.max_map_count name that limit", "[memory]") {
#if !defined(__linux__)
  SUCCEED("skipped: vm.max_map_count is Linux's");
#else
  if (under_valgrind()) {
    SUCCEED("skipped under valgrind: its address-space manager has a lower limit of its own");
    return;
  }
#if defined(FIBER_TEST_EMULATED)
  // 65530 mappings made and unmapped one system call at a time: about 1 s
  // natively, over the 300 s timeout under qemu-sparc64.
  SUCCEED("skipped under qemu-user: too slow to reach the limit");
  return;
#endif
  const unsigned long max_maps = read_max_map_count();
  if (max_maps == 0 || max_maps > 131072) {
    SUCCEED("skipped: vm.max_map_count is " << max_maps << ", too high to reach quickly");
    return;
  }
  // Every stack guarded: a mapping each, split in two by its guard page, so the
  // process runs out of mappings near max_maps / 2 stacks. In a child, which
  // reports on stderr and exits 0 if all went as expected.
  auto d = fiber_test::run_in_child([max_maps] {
    std::size_t failed = 0, succeeded = 0, other = 0;
    std::string message;
    {
      fiber::event_loop::options opts;
      opts.stack_size = 16 * 1024;
      opts.guarded_stacks = 1u << 30;
      opts.stack = fiber::stack_kind::own;  // (mappings to run out of)
      fiber::event_loop loop(opts);
      auto main = loop.spawn([&] {
        const std::size_t n = max_maps / 2 + 4096;
        std::vector<fiber::task<void>> ts;
        ts.reserve(n);
        fiber::wait_group gate(1);
        for (std::size_t i = 0; i < n; ++i) ts.push_back(fiber::spawn([&] { gate.wait(); }));
        for (int i = 0; i < 8; ++i) fiber::this_fiber::yield();
        gate.done();
        for (auto& t : ts) {
          try {
            t.get();
            ++succeeded;
          } catch (const fiber::stack_allocation_error& e) {
            if (failed++ == 0) message = e.what();
          } catch (...) {
            ++other;
          }
        }
      });
      loop.run();
      main.get();
    }
    std::fprintf(stderr, "succeeded %zu, failed %zu, other %zu\nmessage: %s\n", succeeded, failed, other,
                 message.c_str());
    const bool ok = failed > 0 && succeeded > 0 && other == 0 &&
                    message.find("vm.max_map_count = " + std::to_string(max_maps)) != std::string::npos;
    std::fflush(stderr);
    std::_Exit(ok ? 0 : 1);
  });
  INFO(d.stderr_text);
  CHECK(d.signal == 0);
  CHECK(d.exit_code == 0);
#endif
}

TEST_CASE("loop memory: stack_allocation_error names the call that failed and the limit", "[memory]") {
  const fiber::stack_allocation_error plain(65536, ENOMEM);
  CHECK(std::string(plain.what()).find("cannot allocate a stack of 65536 bytes") != std::string::npos);
  CHECK(plain.size() == 65536);
  const fiber::stack_allocation_error other(4096, EINVAL, "mmap", 8192);
  CHECK(std::string(other.what()).find("mmap failed") != std::string::npos);
#if defined(__linux__)
  const fiber::stack_allocation_error split(65536, ENOMEM, "mprotect");
  const std::string text = split.what();
  CHECK(text.find("mprotect failed") != std::string::npos);
  CHECK(text.find("vm.max_map_count") != std::string::npos);
  CHECK(text.find("RLIMIT_AS") == std::string::npos);  // mprotect maps nothing new
#endif
}
