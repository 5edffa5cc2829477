// Stackful (fiber) against stackless (C++20 coroutines), the same workloads in one
// binary, one run. The workloads are in stackful_vs_stackless.hpp; every benchmark
// reports ns per item (items_per_second), where an item is:
//
//   iterate/<impl>              one element of 0..9999
//   tree/<impl>/<k>             one node of a 2^k - 1 node tree, walked in order
//   deep/<impl>/<D>             one send: down D levels, suspend, resume, back up
//   pingpong/<impl>             one round trip (10^4 per iteration; one loop for all)
//   create/<impl>               create + run to its end + destroy one trivial task
//   seed/<impl>                 the seed's whole program: create the consumer, start
//                               it, 5 sends, close
//   memory/first_touch_page     not a workload: what the first write to a fresh page
//                               costs on this machine (mmap 64 pages, write one word
//                               in each, munmap), the floor under a fresh stack
//
// Before any benchmark runs, main() runs every workload at the benchmark's sizes
// both ways and exits with an error if the results differ.
//
//   stackful_vs_stackless --fanout=fiber|fiber_copied|stackless|boost_fiber --n=N
//
// runs the fan-out workload instead, once, in a fresh process, and prints one line
// of JSON: wall time, the most tasks parked at once (n), the resident memory before the
// tasks were spawned and at the peak (/proc/self/status), and the bytes per task
// that make.
#include <benchmark/benchmark.h>
#include <boost/fiber/all.hpp>

#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "stackful_vs_stackless.hpp"

namespace {

struct opaque_sink {
  void operator()(long v) const { benchmark::DoNotOptimize(v); }
};

constexpr long iterate_n = 10000;
constexpr long pingpong_n = 10000;
constexpr long create_n = 1000;
constexpr int tree_min_k = 4, tree_max_k = 20;
constexpr int deep_max = 256;

const fiber::pooled_stack& stacks() {
  static const fiber::pooled_stack pool;
  return pool;
}

const svs::tree& tree_of(int k) {
  static std::map<int, std::unique_ptr<svs::tree>> trees;
  auto& t = trees[k];
  if (!t) t = std::make_unique<svs::tree>(k);
  return *t;
}

// ---- 1. iterate ----

void iterate_plain(benchmark::State& state) {
  opaque_sink sink;
  for (auto _ : state) svs::iterate_plain(iterate_n, sink);
  state.SetItemsProcessed(state.iterations() * iterate_n);
}
void iterate_fiber(benchmark::State& state) {
  opaque_sink sink;
  for (auto _ : state) svs::iterate_fiber(iterate_n, stacks(), sink);
  state.SetItemsProcessed(state.iterations() * iterate_n);
}
void iterate_stackless(benchmark::State& state) {
  opaque_sink sink;
  for (auto _ : state) svs::iterate_stackless(iterate_n, sink);
  state.SetItemsProcessed(state.iterations() * iterate_n);
}

// ---- 2. tree ----

template <void (*Walk)(const svs::tree&, opaque_sink&)>
void tree_bench(benchmark::State& state) {
  const svs::tree& t = tree_of(static_cast<int>(state.range(0)));
  opaque_sink sink;
  for (auto _ : state) Walk(t, sink);
  state.SetItemsProcessed(state.iterations() * static_cast<long>(t.size()));
}
void walk_plain(const svs::tree& t, opaque_sink& sink) { svs::tree_plain(t, sink); }
void walk_fiber(const svs::tree& t, opaque_sink& sink) { svs::tree_fiber(t, stacks(), sink); }
void walk_nested(const svs::tree& t, opaque_sink& sink) { svs::tree_stackless_nested(t, sink); }
void walk_delegating(const svs::tree& t, opaque_sink& sink) { svs::tree_stackless_delegating(t, sink); }

// ---- 3. deep ----

void deep_plain(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  long x = 0;
  for (auto _ : state) {
    x = svs::descend_plain(depth, x);
    benchmark::DoNotOptimize(x);
  }
  state.SetItemsProcessed(state.iterations());
}
template <class Driver, class... Extra>
void deep_bench(benchmark::State& state, const Extra&... extra) {
  Driver d(static_cast<int>(state.range(0)), extra...);
  long x = d.start();
  for (auto _ : state) {
    x = d.send(x);
    benchmark::DoNotOptimize(x);
  }
  state.SetItemsProcessed(state.iterations());
}
void deep_fiber(benchmark::State& state) { deep_bench<svs::deep_fiber>(state, stacks()); }
void deep_stackless(benchmark::State& state) { deep_bench<svs::deep_stackless>(state); }

// ---- 4, 6, 7: whole runs ----

template <long N, long (*Run)(long)>
void batch_bench(benchmark::State& state) {
  for (auto _ : state) {
    long r = Run(N);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * N);
}
long create_fiber_context(long n) { return svs::create_fiber_context(n, stacks()); }
fiber::event_loop& the_loop() {
  static fiber::event_loop loop;
  return loop;
}
stackless::loop the_stackless_loop;
long pingpong_fiber(long n) { return svs::pingpong_fiber(the_loop(), n); }
long pingpong_stackless(long n) { return svs::pingpong_stackless(the_stackless_loop, n); }
long create_fiber_spawn_join(long n) { return svs::create_fiber_spawn_join(the_loop(), n); }
long create_stackless_spawn_join(long n) { return svs::create_stackless_spawn_join(the_stackless_loop, n); }

template <class Program>
void seed_bench(benchmark::State& state, Program program) {
  for (auto _ : state) {
    std::string r = program();
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- memory: the cost of a fresh page ----

void first_touch_page(benchmark::State& state) {
  constexpr std::size_t pages = 64, page = 4096;
  for (auto _ : state) {
    void* m = mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      state.SkipWithError("mmap failed");
      break;
    }
    for (std::size_t i = 0; i < pages; ++i) static_cast<volatile char*>(m)[i * page] = 1;
    munmap(m, pages * page);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<long>(pages));
}

// ---- the setup check ----

int mismatches = 0;
template <class A, class B>
void expect_same(const char* what, const A& a, const B& b) {
  if (a == b) return;
  std::fprintf(stderr, "stackful_vs_stackless: %s: the two implementations disagree\n", what);
  ++mismatches;
}

// Runs every workload at the sizes benchmarked, both ways.
// Boost.Fiber's fan-out: the same workload as svs::fanout_fiber, its fibers on
// this thread (the main context is a fiber too), its default stacks.
svs::fanout_result fanout_boost_fiber(long n) {
  svs::fanout_result r;
  boost::fibers::unbuffered_channel<long> all_parked;
  boost::fibers::unbuffered_channel<long> release;
  std::vector<boost::fibers::fiber> fibers;
  fibers.reserve(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i)
    fibers.emplace_back([&r, &all_parked, &release, i, n] {
      if (++r.waiting > r.peak_waiting) r.peak_waiting = r.waiting;
      if (r.waiting == n) all_parked.push(0);
      long v = -1;
      release.pop(v);
      --r.waiting;
      r.sum += i + v;
    });
  long token = 0;
  if (n > 0) all_parked.pop(token);
  for (long i = 0; i < n; ++i) release.push(0);
  for (auto& f : fibers) f.join();
  return r;
}

void verify() {
  {
    svs::checksum plain, stackful, stackless;
    svs::iterate_plain(iterate_n, plain);
    svs::iterate_fiber(iterate_n, stacks(), stackful);
    svs::iterate_stackless(iterate_n, stackless);
    expect_same("iterate (fiber)", plain, stackful);
    expect_same("iterate (stackless)", plain, stackless);
  }
  for (int k = tree_min_k; k <= tree_max_k; ++k) {
    svs::checksum plain, stackful, nested, delegating;
    svs::tree_plain(tree_of(k), plain);
    svs::tree_fiber(tree_of(k), stacks(), stackful);
    svs::tree_stackless_nested(tree_of(k), nested);
    svs::tree_stackless_delegating(tree_of(k), delegating);
    expect_same("tree (fiber)", plain, stackful);
    expect_same("tree (stackless, nested)", plain, nested);
    expect_same("tree (stackless, delegating)", plain, delegating);
  }
  for (int depth = 1; depth <= deep_max; depth *= 2) {
    svs::deep_fiber stackful(depth, stacks());
    svs::deep_stackless stackless(depth);
    expect_same("deep (start)", stackful.start(), stackless.start());
    for (long i = 0; i < 1000; ++i) {
      const long want = svs::descend_plain(depth, i);
      expect_same("deep (fiber)", stackful.send(i), want);
      expect_same("deep (stackless)", stackless.send(i), want);
    }
  }
  expect_same("pingpong", pingpong_fiber(pingpong_n), pingpong_stackless(pingpong_n));
  expect_same("create", svs::create_fiber_context(create_n, stacks()), svs::create_stackless_task(create_n));
  expect_same("create on a loop", create_fiber_spawn_join(create_n), create_stackless_spawn_join(create_n));
  expect_same("seed", svs::seed_fiber(stacks()), svs::seed_stackless());
  expect_same("seed (protected stack)", svs::seed_fiber(fiber::protected_stack{}), svs::seed_stackless());
  expect_same("fanout", svs::fanout_fiber(1000), svs::fanout_stackless(1000));
  expect_same("fanout (copied stacks)", svs::fanout_fiber(1000, fiber::stack_kind::copied),
              svs::fanout_stackless(1000));
  expect_same("fanout (Boost.Fiber)", fanout_boost_fiber(1000), svs::fanout_stackless(1000));
}

void register_all() {
  using benchmark::RegisterBenchmark;
  RegisterBenchmark("iterate/plain_loop", iterate_plain);
  RegisterBenchmark("iterate/fiber", iterate_fiber);
  RegisterBenchmark("iterate/stackless", iterate_stackless);

  auto depths = [](benchmark::internal::Benchmark* b) {
    for (int k = tree_min_k; k <= tree_max_k; ++k) b->Arg(k);
  };
  RegisterBenchmark("tree/plain_recursion", tree_bench<walk_plain>)->Apply(depths);
  RegisterBenchmark("tree/fiber", tree_bench<walk_fiber>)->Apply(depths);
  RegisterBenchmark("tree/stackless_nested", tree_bench<walk_nested>)->Apply(depths);
  RegisterBenchmark("tree/stackless_delegating", tree_bench<walk_delegating>)->Apply(depths);

  RegisterBenchmark("deep/plain_calls", deep_plain)->RangeMultiplier(2)->Range(1, deep_max);
  RegisterBenchmark("deep/fiber", deep_fiber)->RangeMultiplier(2)->Range(1, deep_max);
  RegisterBenchmark("deep/stackless", deep_stackless)->RangeMultiplier(2)->Range(1, deep_max);

  RegisterBenchmark("pingpong/fiber", batch_bench<pingpong_n, pingpong_fiber>);
  RegisterBenchmark("pingpong/stackless", batch_bench<pingpong_n, pingpong_stackless>);

  RegisterBenchmark("create/fiber_context", batch_bench<create_n, create_fiber_context>);
  RegisterBenchmark("create/stackless_task", batch_bench<create_n, svs::create_stackless_task>);
  RegisterBenchmark("create/fiber_spawn_join", batch_bench<create_n, create_fiber_spawn_join>);
  RegisterBenchmark("create/stackless_spawn_join", batch_bench<create_n, create_stackless_spawn_join>);

  RegisterBenchmark("seed/fiber_pooled_stack", seed_bench<std::string (*)()>,
                    +[] { return svs::seed_fiber(stacks()); });
  RegisterBenchmark("seed/fiber_protected_stack", seed_bench<std::string (*)()>,
                    +[] { return svs::seed_fiber(fiber::protected_stack{}); });
  RegisterBenchmark("seed/stackless", seed_bench<std::string (*)()>, svs::seed_stackless);

  RegisterBenchmark("memory/first_touch_page", first_touch_page);
}

// ---- fan-out, one process per point ----

// From /proc/self/status: VmRSS (resident now) or VmHWM (the peak), in KiB. Not
// getrusage's ru_maxrss: Linux carries that over an execve from the process
// before, so a small child of a bigger parent would report the parent's peak.
long status_kb(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  const std::size_t len = std::strlen(field);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, field, len) == 0 && line[len] == ':') kb = std::atol(line + len + 1);
  std::fclose(f);
  return kb;
}

// Makes VmHWM start again from VmRSS (proc(5), clear_refs "5").
void reset_peak_rss() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

int run_fanout(const std::string& impl, long n) {
  // Warm up the code paths (and the allocator) on a few tasks, so that "before"
  // holds what every run needs whatever n is.
  (void)svs::fanout_fiber(10);
  (void)svs::fanout_fiber(10, fiber::stack_kind::copied);
  (void)svs::fanout_stackless(10);
  (void)fanout_boost_fiber(10);
  reset_peak_rss();
  const long before_kb = status_kb("VmRSS");
  long per_task_fixed = 0;  // the stack reserved, or the frame allocated, per task
  const auto t0 = std::chrono::steady_clock::now();
  svs::fanout_result r;
  if (impl == "fiber") {
    r = svs::fanout_fiber(n);
    per_task_fixed = static_cast<long>(fiber::default_stack_size);
  } else if (impl == "fiber_copied") {
    r = svs::fanout_fiber(n, fiber::stack_kind::copied);
    per_task_fixed = 0;  // (the bytes in use, copied to a buffer of their size)
  } else if (impl == "stackless") {
    r = svs::fanout_stackless(n);
    per_task_fixed = static_cast<long>(stackless::frame_bytes);
  } else if (impl == "boost_fiber") {
    r = fanout_boost_fiber(n);
    per_task_fixed = static_cast<long>(boost::context::stack_traits::default_size());
  } else {
    std::fprintf(stderr, "stackful_vs_stackless: --fanout=%s: expected fiber, fiber_copied, stackless or boost_fiber\n",
                 impl.c_str());
    return 2;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long peak_kb = status_kb("VmHWM");
  if (r.sum != n * (n - 1) / 2 || r.peak_waiting != n || r.waiting != 0) {
    std::fprintf(stderr, "stackful_vs_stackless: fanout %s: wrong result (sum %ld, peak waiting %ld of %ld)\n",
                 impl.c_str(), r.sum, r.peak_waiting, n);
    return 1;
  }
  std::printf(
      "{\"impl\": \"%s\", \"n\": %ld, \"seconds\": %.6f, \"peak_waiting\": %ld, "
      "\"rss_before_kb\": %ld, \"peak_rss_kb\": %ld, \"bytes_per_task\": %.1f, \"%s\": %ld}\n",
      impl.c_str(), n, seconds, r.peak_waiting, before_kb, peak_kb,
      n ? (peak_kb - before_kb) * 1024.0 / static_cast<double>(n) : 0.0,
      impl == "stackless" ? "frame_bytes" : "stack_bytes_reserved", per_task_fixed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string fanout;
  long n = -1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--fanout=", 9) == 0) fanout = argv[i] + 9;
    if (std::strncmp(argv[i], "--n=", 4) == 0) n = std::atol(argv[i] + 4);
  }
  if (!fanout.empty()) {
    if (n < 0) {
      std::fprintf(stderr, "stackful_vs_stackless: --fanout needs --n=N (N >= 0)\n");
      return 2;
    }
    return run_fanout(fanout, n);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  verify();
  if (mismatches) return 1;
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
