// The event loop against Boost.Fiber (boost::fibers, default round_robin scheduler,
// one thread), side by side in one run. bench/report.py runs this and the Go and
// Python asyncio peers (bench/peers/loop_peer.*), which do the same workloads:
//
//   pingpong/...    one op = one round trip between two fibers over two unbuffered
//                   channels, one each way: the benchmark's fiber sends an int on
//                   `ping`, the echo fiber receives it and sends it back on `pong`,
//                   the benchmark's fiber receives it;
//   buffered/...    one op = one message from a producer (the benchmark's fiber) to a
//                   consumer fiber through a channel of capacity 128 (Boost's
//                   buffered_channel(128) holds 127: its capacity is a power of two
//                   and one slot stays free);
//   spawn_join/...  one op = start a fiber that does nothing and wait for it
//                   (fiber::spawn(f).join() against boost::fibers::fiber(f).join());
//   copied_resume/fiber_{copied,own}_<B>
//                   one op = one round trip between two fibers that yield to each
//                   other, each keeping B bytes of its own locals in use across
//                   the yield: two resumes. On copied stacks (stack_kind::copied)
//                   each resume copies the other's frames away and its own back
//                   (B plus the loop's own frames, about 1 KiB); beside it, the
//                   same on stacks of their own.
//   copied_resume/generator_{copied,own}_<B>
//                   the same with two generators (fiber::generator) that the
//                   benchmark's loop resumes in turn, each keeping B bytes of
//                   locals across its yield: one op = two resumes (and the two
//                   yields that answer them). On copied stacks each resume copies
//                   the other generator's bytes away and its own back (B plus its
//                   body's frames), on the resumer's stack: no loop, no swapper.
//
// Every fiber here has its library's default stack: fiber's loop takes 64 KiB
// stacks from its pool; Boost.Fiber's default is fixedsize_stack (malloc); the
// *_pooled_stack row gives Boost its pooled_fixedsize_stack, for reference.
//
//   fiber_loop_bench --skynet=fiber|boost
//
// runs skynet instead of the benchmarks, once, in this process alone (so that
// report.py can read its peak RSS from wait4) and prints one line of JSON:
// {"impl": ..., "result": 499999500000, "seconds": wall time}. Skynet: each node
// spawns 10 children until 1M leaves (1,111,111 fibers in all), a leaf returns its
// index, a parent sums its children. Stacks: 16 KiB for every fiber, in both
// libraries (skynet_stack_size below): a node's frame is a few hundred bytes, so
// 16 KiB leaves ample room for the library's entry and switch frames, while keeping
// the address space of 111,111 parents waiting at once near 2 GiB (fiber's 64 KiB
// default would reserve 7 GiB). fiber gets it through event_loop::options (every
// spawn inherits it); Boost through boost::fibers::fixedsize_stack(16 KiB) (malloc,
// no guard page: protected_fixedsize_stack would need a mapping per fiber, past
// vm.max_map_count).
#include <benchmark/benchmark.h>

#include <boost/fiber/all.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "fiber/channel.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/generator.hpp"
#include "skynet.hpp"

namespace {

namespace bf = boost::fibers;

constexpr std::size_t buffered_capacity = 128;
constexpr std::size_t skynet_stack_size = skynet::stack_size;
constexpr long skynet_leaves = skynet::leaves;
constexpr long skynet_div = skynet::div;

// ---- pingpong ----

void pingpong_fiber(benchmark::State& state) {
  fiber::run([&] {
    fiber::channel<int> ping, pong;  // capacity 0: rendezvous
    auto echo = fiber::spawn([&] {
      while (auto v = ping.recv()) pong.send(*v);
    });
    int i = 0;
    for (auto _ : state) {
      ping.send(i++);
      auto r = pong.recv();
      benchmark::DoNotOptimize(r);
    }
    ping.close();
    echo.join();
  });
  state.SetItemsProcessed(state.iterations());
}

void pingpong_boost(benchmark::State& state) {
  bf::unbuffered_channel<int> ping, pong;
  bf::fiber echo([&] {
    int v;
    while (ping.pop(v) == bf::channel_op_status::success) pong.push(v);
  });
  int i = 0;
  for (auto _ : state) {
    ping.push(i++);
    int r = 0;
    pong.pop(r);
    benchmark::DoNotOptimize(r);
  }
  ping.close();
  echo.join();
  state.SetItemsProcessed(state.iterations());
}

// ---- copied_resume ----

void copied_resume(benchmark::State& state, fiber::stack_kind kind, std::size_t live) {
  fiber::run([&] {
    bool done = false;
    auto other = fiber::spawn({.stack = kind}, [&] {
      auto* mine = static_cast<unsigned char*>(__builtin_alloca(live));
      std::memset(mine, 1, live);
      while (!done) {
        fiber::this_fiber::yield();
        benchmark::DoNotOptimize(mine);
      }
    });
    auto driver = fiber::spawn({.stack = kind}, [&] {
      auto* mine = static_cast<unsigned char*>(__builtin_alloca(live));
      std::memset(mine, 2, live);
      for (auto _ : state) {
        fiber::this_fiber::yield();
        benchmark::DoNotOptimize(mine);
      }
      done = true;
    });
    driver.join();
    other.join();
  });
  state.SetItemsProcessed(state.iterations() * 2);  // (resumes)
}

void copied_resume_generators(benchmark::State& state, fiber::stack_kind kind, std::size_t live) {
  auto make = [&](unsigned char fill) {
    return fiber::generator<int>{kind, [live, fill](auto& co) {
      auto* mine = static_cast<unsigned char*>(__builtin_alloca(live));
      std::memset(mine, fill, live);
      for (;;) {
        co.yield(mine[live - 1]);
        benchmark::DoNotOptimize(mine);
      }
    }};
  };
  auto a = make(1);
  auto b = make(2);
  long sum = 0;
  for (auto _ : state) {
    sum += a.next();
    sum += b.next();
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations() * 2);  // (resumes)
}

// ---- buffered ----

void buffered_fiber(benchmark::State& state) {
  long sum = 0;
  fiber::run([&] {
    fiber::channel<int> ch(buffered_capacity);
    auto consumer = fiber::spawn([&] {
      long s = 0;
      while (auto v = ch.recv()) s += *v;
      return s;
    });
    int i = 0;
    for (auto _ : state) ch.send(i++);
    ch.close();
    sum = consumer.get();
  });
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}

void buffered_boost(benchmark::State& state) {
  bf::buffered_channel<int> ch(buffered_capacity);
  long sum = 0;
  bf::fiber consumer([&] {
    int v;
    while (ch.pop(v) == bf::channel_op_status::success) sum += v;
  });
  int i = 0;
  for (auto _ : state) ch.push(i++);
  ch.close();
  consumer.join();
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}

// ---- spawn_join ----

void spawn_join_fiber(benchmark::State& state) {
  fiber::run([&] {
    for (auto _ : state) fiber::spawn([] {}).join();
  });
  state.SetItemsProcessed(state.iterations());
}

// Eager spawn: the task starts at once (spawn_options::eager); its peer is Boost's
// launch::dispatch, which does the same.
void spawn_join_fiber_eager(benchmark::State& state) {
  fiber::run([&] {
    for (auto _ : state) fiber::spawn(fiber::spawn_options{.eager = true}, [] {}).join();
  });
  state.SetItemsProcessed(state.iterations());
}

void spawn_join_boost_dispatch(benchmark::State& state) {
  for (auto _ : state) bf::fiber(bf::launch::dispatch, [] {}).join();
  state.SetItemsProcessed(state.iterations());
}

void spawn_join_boost(benchmark::State& state) {
  for (auto _ : state) bf::fiber([] {}).join();
  state.SetItemsProcessed(state.iterations());
}

void spawn_join_boost_pooled(benchmark::State& state) {
  bf::pooled_fixedsize_stack stacks;
  for (auto _ : state) bf::fiber(std::allocator_arg, stacks, [] {}).join();
  state.SetItemsProcessed(state.iterations());
}

// ---- skynet ----

// `eager`: children start at once (spawn_options::eager), so the tree is walked
// depth first and only a path of parents holds stacks at any time; without it every
// child waits in the ready queue (first in, first out) and the 111,111 parents are
// all alive at once.
// The most fibers alive (spawned, not ended) and the most stacks in use at once,
// sampled at every leaf.
std::size_t skynet_peak_alive = 0;
std::size_t skynet_peak_stacks = 0;

long skynet_fiber(long num, long size, bool eager) {
  if (size == 1) {
    const fiber::event_loop& loop = *fiber::event_loop::current();
    skynet_peak_alive = std::max(skynet_peak_alive, loop.alive());
    skynet_peak_stacks = std::max(skynet_peak_stacks, loop.guarded_stacks() + loop.unguarded_stacks());
    return num;
  }
  size /= skynet_div;
  fiber::task<long> children[skynet_div];
  for (long i = 0; i < skynet_div; ++i)
    children[i] = fiber::spawn(fiber::spawn_options{.eager = eager}, skynet_fiber, num + i * size, size, eager);
  long sum = 0;
  for (auto& c : children) sum += c.get();
  return sum;
}

int run_skynet(const std::string& impl) {
  auto start = std::chrono::steady_clock::now();
  long result;
  if (impl == "fiber" || impl == "fiber_eager") {
    fiber::event_loop::options opts;
    opts.stack_size = skynet_stack_size;
    fiber::event_loop loop(opts);
    auto root = loop.spawn(skynet_fiber, 0L, skynet_leaves, impl == "fiber_eager");
    loop.run();
    result = root.get();
  } else if (impl == "boost") {
    bf::fixedsize_stack stacks(skynet_stack_size);
    long r = 0;
    bf::fiber(std::allocator_arg, stacks, [&] { r = skynet::boost_fibers(0, skynet_leaves, stacks); }).join();
    result = r;
  } else {
    std::fprintf(stderr, "fiber_loop_bench: --skynet=fiber, fiber_eager or boost, not '%s'\n", impl.c_str());
    return 2;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "{\"impl\": \"%s\", \"result\": %ld, \"seconds\": %.6f, \"stack_size\": %zu, \"peak_alive\": %zu, "
      "\"peak_stacks\": %zu}\n",
      impl.c_str(), result, seconds, skynet_stack_size, skynet_peak_alive, skynet_peak_stacks);
  return result == 499999500000L ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--skynet=", 9) == 0) return run_skynet(argv[i] + 9);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RegisterBenchmark("pingpong/fiber_channel", pingpong_fiber);
  benchmark::RegisterBenchmark("pingpong/boost_fibers_unbuffered_channel", pingpong_boost);
  benchmark::RegisterBenchmark("buffered/fiber_channel_128", buffered_fiber);
  benchmark::RegisterBenchmark("buffered/boost_fibers_buffered_channel_128", buffered_boost);
  benchmark::RegisterBenchmark("spawn_join/fiber_spawn_join", spawn_join_fiber);
  benchmark::RegisterBenchmark("spawn_join/boost_fibers_fiber_join", spawn_join_boost);
  benchmark::RegisterBenchmark("spawn_join/boost_fibers_fiber_join_pooled_stack", spawn_join_boost_pooled);
  benchmark::RegisterBenchmark("spawn_join/fiber_spawn_join_eager", spawn_join_fiber_eager);
  benchmark::RegisterBenchmark("spawn_join/boost_fibers_fiber_join_dispatch", spawn_join_boost_dispatch);
  for (std::size_t live : {32, 256, 1024, 4096, 8192}) {
    benchmark::RegisterBenchmark(("copied_resume/fiber_copied_" + std::to_string(live)).c_str(),
                                 [live](benchmark::State& s) { copied_resume(s, fiber::stack_kind::copied, live); });
    benchmark::RegisterBenchmark(("copied_resume/fiber_own_" + std::to_string(live)).c_str(),
                                 [live](benchmark::State& s) { copied_resume(s, fiber::stack_kind::own, live); });
  }
  for (std::size_t live : {32, 256, 1024, 4096, 8192}) {
    benchmark::RegisterBenchmark(
        ("copied_resume/generator_copied_" + std::to_string(live)).c_str(),
        [live](benchmark::State& s) { copied_resume_generators(s, fiber::stack_kind::copied, live); });
    benchmark::RegisterBenchmark(
        ("copied_resume/generator_own_" + std::to_string(live)).c_str(),
        [live](benchmark::State& s) { copied_resume_generators(s, fiber::stack_kind::own, live); });
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
