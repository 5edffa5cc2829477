// fiber::run on several workers against its peers (bench/report.py runs it).
// A process of its own: a loop runs single-threaded paths until another loop runs
// in the process (scheduler.hpp, "Threads"), so the one-loop benchmarks
// (loop_bench.cpp) must not share a process with these.
//
//   pingpong_mt/...  one op = one round trip between two fibers on two threads over
//                    two unbuffered channels (as loop_bench's pingpong): fiber::run
//                    with 2 workers, the echo fiber on the other worker; Boost.Fiber:
//                    two threads with one fiber each and its unbuffered_channel.
//   fanout_cpu/...   one op = 10^4 tasks of CPU work (about 100 us each: a hash)
//                    spawned from the main task and joined: 1 worker, then 2.
//
//   fiber_mt_bench --skynet=fiber_2workers|boost_work_stealing_2threads
//
// runs skynet (bench/skynet.hpp) on fiber::run with 2 workers, or on Boost.Fiber's
// work_stealing scheduler on 2 threads, once, alone in the process, and prints
// one line of JSON.
#include <benchmark/benchmark.h>

#include <boost/fiber/all.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fiber/channel.hpp"
#include "fiber/event_loop.hpp"
#include "skynet.hpp"

namespace {

namespace bf = boost::fibers;

// ---- pingpong across threads ----

void pingpong_mt_fiber(benchmark::State& state) {
  bool other_thread = false;
  fiber::run(
      [&] {
        fiber::channel<int> ping, pong;
        std::atomic<std::thread::id> echo_thread{};
        // The echo fiber on the other worker (the main task runs on worker 0).
        auto echo = fiber::spawn(fiber::spawn_options{.worker = 1}, [&] {
          echo_thread = std::this_thread::get_id();
          while (auto v = ping.recv()) pong.send(*v);
        });
        ping.send(-1);
        (void)pong.recv();
        other_thread = echo_thread.load() != std::this_thread::get_id();
        int i = 0;
        if (other_thread)
          for (auto _ : state) {
            ping.send(i++);
            benchmark::DoNotOptimize(pong.recv());
          }
        ping.close();
        echo.join();
      },
      fiber::run_options{.threads = 2});
  if (!other_thread) state.SkipWithError("the echo fiber started on the benchmark's worker");
  state.SetItemsProcessed(state.iterations());
}

void pingpong_mt_boost(benchmark::State& state) {
  bf::unbuffered_channel<int> ping, pong;
  std::thread echo([&] {
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

// ---- CPU-bound fan-out ----

constexpr int fanout_tasks = 10000;
constexpr int work_rounds = 60000;  // about 100 us of hashing here

std::uint64_t work(std::uint64_t seed) {
  std::uint64_t h = seed ^ 0xcbf29ce484222325ULL;  // FNV-1a over a counter
  for (int i = 0; i < work_rounds; ++i) {
    h ^= static_cast<std::uint64_t>(i);
    h *= 0x100000001b3ULL;
  }
  return h;
}

void fanout_cpu(benchmark::State& state, unsigned workers) {
  for (auto _ : state) {
    const std::uint64_t sum = fiber::run(
        [] {
          std::vector<fiber::task<std::uint64_t>> ts;
          ts.reserve(fanout_tasks);
          for (int i = 0; i < fanout_tasks; ++i) ts.push_back(fiber::spawn(work, static_cast<std::uint64_t>(i)));
          std::uint64_t s = 0;
          for (auto& t : ts) s += t.get();
          return s;
        },
        fiber::run_options{.threads = workers});
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * fanout_tasks);
}

// ---- skynet on 2 workers ----

constexpr std::size_t skynet_stack_size = skynet::stack_size;
constexpr long skynet_leaves = skynet::leaves;
constexpr long skynet_div = skynet::div;

long skynet(long num, long size) {
  if (size == 1) return num;
  size /= skynet_div;
  fiber::task<long> children[skynet_div];
  for (long i = 0; i < skynet_div; ++i) children[i] = fiber::spawn(skynet, num + i * size, size);
  long sum = 0;
  for (auto& c : children) sum += c.get();
  return sum;
}

// Boost.Fiber's work_stealing on 2 threads: this one and a helper that joins the
// scheduler and waits (its main fiber parked) until the tree is summed.
long skynet_boost_work_stealing() {
  constexpr std::uint32_t threads = 2;
  bf::mutex m;
  bf::condition_variable cv;
  bool finished = false;
  std::thread helper([&] {
    bf::use_scheduling_algorithm<bf::algo::work_stealing>(threads, true);
    std::unique_lock<bf::mutex> lock(m);
    cv.wait(lock, [&] { return finished; });
  });
  bf::use_scheduling_algorithm<bf::algo::work_stealing>(threads, true);
  bf::fixedsize_stack stacks(skynet_stack_size);
  long r = 0;
  bf::fiber(std::allocator_arg, stacks, [&] { r = skynet::boost_fibers(0, skynet_leaves, stacks); }).join();
  {
    std::unique_lock<bf::mutex> lock(m);
    finished = true;
  }
  cv.notify_all();
  helper.join();
  return r;
}

int run_skynet(const std::string& impl) {
  const auto start = std::chrono::steady_clock::now();
  long result = 0;
  if (impl == "fiber_2workers") {
    fiber::event_loop::options opts;
    opts.stack_size = skynet_stack_size;
    result = fiber::run(fiber::run_options{.threads = 2, .loop = opts}, skynet, 0L, skynet_leaves);
  } else if (impl == "boost_work_stealing_2threads") {
    result = skynet_boost_work_stealing();
  } else {
    std::fprintf(stderr, "fiber_mt_bench: --skynet=fiber_2workers or boost_work_stealing_2threads, not '%s'\n",
                 impl.c_str());
    return 2;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"impl\": \"%s\", \"result\": %ld, \"seconds\": %.6f, \"stack_size\": %zu, \"workers\": 2}\n",
              impl.c_str(), result, seconds, skynet_stack_size);
  return result == skynet::result ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--skynet=", 9) == 0) return run_skynet(argv[i] + 9);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RegisterBenchmark("pingpong_mt/fiber_2workers", pingpong_mt_fiber)->UseRealTime();
  benchmark::RegisterBenchmark("pingpong_mt/boost_fibers_2threads", pingpong_mt_boost)->UseRealTime();
  benchmark::RegisterBenchmark("fanout_cpu/fiber_1worker", fanout_cpu, 1u)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("fanout_cpu/fiber_2workers", fanout_cpu, 2u)->UseRealTime()->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
