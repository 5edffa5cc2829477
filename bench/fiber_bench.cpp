// fiber against its peers: Boost.Context, ucontext, C++20 stackless coroutines and
// threads. One benchmark iteration is one round trip (two switches) or one
// create + first switch + destroy, so the time reported per iteration is the time
// per round trip; every benchmark also counts one item per iteration.
//
// Groups (bench/report.py compares each benchmark with the peer of its group):
//   switch/...     round trip between the thread's stack and one suspended context;
//   generator/...  one send() and the yield that answers it;
//   create/...     make a fiber, switch to it once, let it end, free its stack;
//   seed/...       the seed's whole program: a new consumer generator, start,
//                  five sends, close (bench/stackful_vs_stackless.hpp);
//   close/...      close() of a generator suspended at its yield, against a plain
//                  throw and catch of generator_exit through the same frames.
//
// Built twice (bench/CMakeLists.txt): fiber_bench has everything, against the
// library as configured; fiber_bench_shared_fp (FIBER_BENCH_SWITCH_ONLY) has only
// the fiber::context round trip and its Boost peer, against the library built to
// share the FP environment, so each binary compares itself with Boost in one run.
#include <benchmark/benchmark.h>

#include <boost/context/detail/fcontext.hpp>

#include <cstddef>
#include <cstring>
#include <memory>
#include <type_traits>

#include "fiber/context.hpp"
#include "fiber/detail/switch.h"

#ifndef FIBER_BENCH_SWITCH_ONLY
#  define FIBER_BENCH_SWITCH_ONLY 0
#endif
// Whether the switch variants assembled from arch/ are linked in (bench/CMakeLists.txt).
#ifndef FIBER_BENCH_ASM_VARIANTS
#  define FIBER_BENCH_ASM_VARIANTS 0
#endif

#if !FIBER_BENCH_SWITCH_ONLY
#  include <ucontext.h>

#  include <boost/context/fiber.hpp>
#  include <boost/context/pooled_fixedsize_stack.hpp>
#  include <boost/context/protected_fixedsize_stack.hpp>
#  include <condition_variable>
#  include <mutex>
#  include <thread>

#  include <chrono>

#  include "fiber/generator.hpp"
#  include "stackful_vs_stackless.hpp"
#  include "stackless.hpp"

#  if FIBER_BENCH_ASM_VARIANTS
// The raw switch assembled again from arch/ with other options (bench/CMakeLists.txt),
// with the prototypes of fiber_switch_context / fiber_prepare_context in switch.h.
extern "C" {
// Returns with `ret` instead of an indirect `jmp`.
void* fiber_switch_context_ret(void* to, void* data);
void* fiber_prepare_context_ret(void* stack_top, fiber_entry_fn entry, void* arg, void* stack_limit);
// Leaves MXCSR and the x87 control word alone (FIBER_SHARED_FP_ENV=1).
void* fiber_switch_context_sharedfp(void* to, void* data);
void* fiber_prepare_context_sharedfp(void* stack_top, fiber_entry_fn entry, void* arg, void* stack_limit);
}
static_assert(std::is_same_v<decltype(fiber_switch_context_ret), decltype(fiber_switch_context)> &&
                  std::is_same_v<decltype(fiber_switch_context_sharedfp), decltype(fiber_switch_context)> &&
                  std::is_same_v<decltype(fiber_prepare_context_ret), decltype(fiber_prepare_context)> &&
                  std::is_same_v<decltype(fiber_prepare_context_sharedfp), decltype(fiber_prepare_context)>,
              "bench: the switch variants must keep switch.h's prototypes");
#  endif
#endif

namespace {

// Stack size for every fiber here: fiber's default, also given to Boost's allocators.
constexpr std::size_t stack_size = fiber::default_stack_size;

// A plain heap stack for the raw switches, which have no allocator of their own.
struct raw_stack {
  std::unique_ptr<std::byte[]> memory{new std::byte[stack_size]};
  void* base() const noexcept { return memory.get(); }
  void* top() const noexcept { return memory.get() + stack_size; }
};

// ---- switch: fiber::context ----

// main resumes the fiber, the fiber resumes main: one round trip per iteration.
void switch_fiber_context(benchmark::State& state) {
  bool stop = false;
  fiber::context f{std::allocator_arg, fiber::protected_stack{stack_size}, [&stop](fiber::context&& caller) {
                     while (!stop) caller = std::move(caller).resume();
                     return std::move(caller);
                   }};
  for (auto _ : state) {
    f = std::move(f).resume();
    benchmark::DoNotOptimize(f);
  }
  stop = true;
  f = std::move(f).resume();  // the fiber returns: f is empty and its stack freed
  state.SetItemsProcessed(state.iterations());
}

// ---- switch: boost::context::detail::jump_fcontext ----

namespace bctx = boost::context::detail;

// Sends back whatever it is sent, forever.
void fcontext_echo(bctx::transfer_t t) {
  for (;;) t = bctx::jump_fcontext(t.fctx, t.data);
}

void switch_boost_jump_fcontext(benchmark::State& state) {
  raw_stack stack;
  bctx::fcontext_t fiber = bctx::make_fcontext(stack.top(), stack_size, &fcontext_echo);
  long value = 0;
  bctx::transfer_t t = bctx::jump_fcontext(fiber, nullptr);  // run to its first jump
  for (auto _ : state) {
    benchmark::DoNotOptimize(value);
    t = bctx::jump_fcontext(t.fctx, &value);
    benchmark::DoNotOptimize(t.data);
  }
  // The echo stays suspended on `stack`, which owns nothing: freeing it ends it.
  state.SetItemsProcessed(state.iterations());
}

#if !FIBER_BENCH_SWITCH_ONLY

// ---- switch: the raw fiber_switch_context, in each assembled variant ----

using switch_fn = void* (*)(void*, void*) noexcept;
using prepare_fn = decltype(&fiber_prepare_context);

// The data word the suspended context `sp` passed when it switched away.
void* frame_data(void* sp) noexcept {
  void* data;
  std::memcpy(&data, static_cast<char*>(sp) + FIBER_FRAME_DATA, sizeof data);
  return data;
}

// Each variant of the switch, called as the library calls it: through the lean
// convention's asm statement where there is one (switch.h), else as a plain call.
void* call_switch(void* to, void* data) noexcept { return fiber::detail::switch_context(to, data).from; }
#  if FIBER_BENCH_ASM_VARIANTS
void* call_switch_ret(void* to, void* data) noexcept {
#    if FIBER_LEAN_SWITCH
  // The `ret` variant is a called function (FIBER_SWITCH_WITH_RET in arch/): the
  // lean asm statement of switch.h, with a call where that one jumps.
  void* from;
  __asm__ volatile("lea -128(%%rsp), %%rsp\n\t"
                   "call fiber_switch_context_ret\n\t"
                   "lea 128(%%rsp), %%rsp"
                   : "=a"(from), "+D"(to), "+S"(data)
                   :
                   : "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "xmm0", "xmm1",
                     "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                     "xmm13", "xmm14", "xmm15", "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)",
                     "mm0", "mm1", "mm2", "mm3", "mm4", "mm5", "mm6", "mm7", FIBER_DETAIL_AVX512_CLOBBERS "memory",
                     "cc");
  return from;
#    else
  return fiber_switch_context_ret(to, data);
#    endif
}
void* call_switch_sharedfp(void* to, void* data) noexcept {
#    if FIBER_LEAN_SWITCH
  void* from;
  FIBER_DETAIL_LEAN_SWITCH_CALL("fiber_switch_context_sharedfp", to, data, from);
  return from;
#    else
  return fiber_switch_context_sharedfp(to, data);
#    endif
}
#  endif

// Sends back whatever it is sent, forever (as fcontext_echo does).
template <switch_fn Switch>
void raw_echo(void* from, void*) {
  for (;;) from = Switch(from, frame_data(from));
}

template <switch_fn Switch, prepare_fn Prepare>
void switch_raw(benchmark::State& state) {
  // Our assembly keeps the library's bookkeeping and refuses to switch (returns
  // null) until the thread's first switch through the library has set it up
  // (switch.h, FIBER_SWITCH_TRACKS): make one.
  {
    fiber::context first{[](fiber::context&& caller) { return std::move(caller); }};
    first = std::move(first).resume();
  }
  raw_stack stack;
  long value = 0;
  void* fiber = Switch(Prepare(stack.top(), &raw_echo<Switch>, nullptr, stack.base()), nullptr);  // to its first switch
  if (!fiber) {
    state.SkipWithError("the raw switch refused to switch");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(value);
    fiber = Switch(fiber, &value);
    benchmark::DoNotOptimize(frame_data(fiber));
  }
  // The echo stays suspended on `stack`, which owns nothing: freeing it ends it.
  state.SetItemsProcessed(state.iterations());
}

// ---- switch: boost::context::fiber ----

void switch_boost_fiber(benchmark::State& state) {
  namespace ctx = boost::context;
  bool stop = false;
  ctx::fiber f{std::allocator_arg, ctx::protected_fixedsize_stack{stack_size}, [&stop](ctx::fiber&& caller) {
                 while (!stop) caller = std::move(caller).resume();
                 return std::move(caller);
               }};
  for (auto _ : state) {
    f = std::move(f).resume();
    benchmark::DoNotOptimize(f);
  }
  stop = true;
  f = std::move(f).resume();
  state.SetItemsProcessed(state.iterations());
}

// ---- switch: ucontext ----

// makecontext passes only ints to the entry, so the two contexts are globals.
ucontext_t ucontext_main, ucontext_fiber;

void ucontext_echo() {
  for (;;) swapcontext(&ucontext_fiber, &ucontext_main);
}

void switch_ucontext(benchmark::State& state) {
  raw_stack stack;
  getcontext(&ucontext_fiber);
  ucontext_fiber.uc_stack.ss_sp = stack.base();
  ucontext_fiber.uc_stack.ss_size = stack_size;
  ucontext_fiber.uc_link = nullptr;
  makecontext(&ucontext_fiber, &ucontext_echo, 0);
  for (auto _ : state) {
    swapcontext(&ucontext_main, &ucontext_fiber);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- generator: fiber::generator ----

void generator_fiber(benchmark::State& state) {
  using gen = fiber::generator<long, long>;
  gen g{std::allocator_arg, fiber::protected_stack{stack_size}, [](gen::yielder& co) {
          long r = 0;
          for (;;) r = co.yield(r) + 1;  // n = yield r; r = n + 1
        }};
  g.start();
  long n = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(n);
    long r = g.send(n);
    benchmark::DoNotOptimize(r);
    ++n;
  }
  state.SetItemsProcessed(state.iterations());
  // ~generator closes the body: generator_exit unwinds it from its pending yield.
}

// ---- generator: C++20 stackless coroutine ----

stackless::generator<long, long> stackless_consumer() {
  long r = 0;
  for (;;) r = (co_yield r) + 1;  // n = yield r; r = n + 1
}

void generator_stackless(benchmark::State& state) {
  auto g = stackless_consumer();
  g.start();
  long n = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(n);
    long r = g.send(n);
    benchmark::DoNotOptimize(r);
    ++n;
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- generator: two threads, mutex + condition variable ----

// The benchmark thread hands a value to a worker thread and waits for the answer.
void generator_thread_condvar(benchmark::State& state) {
  enum class turn { main, worker, stop };
  std::mutex m;
  std::condition_variable cv;
  turn whose = turn::main;
  long value = 0;

  std::thread worker([&] {
    std::unique_lock<std::mutex> lock(m);
    for (;;) {
      cv.wait(lock, [&] { return whose != turn::main; });
      if (whose == turn::stop) return;
      value += 1;
      whose = turn::main;
      lock.unlock();
      cv.notify_one();
      lock.lock();
    }
  });

  long n = 0;
  for (auto _ : state) {
    {
      std::lock_guard<std::mutex> lock(m);
      value = n;
      whose = turn::worker;
    }
    cv.notify_one();
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return whose == turn::main; });
    benchmark::DoNotOptimize(value);
    ++n;
  }
  {
    std::lock_guard<std::mutex> lock(m);
    whose = turn::stop;
  }
  cv.notify_one();
  worker.join();
  state.SetItemsProcessed(state.iterations());
}

// ---- create + first switch + destroy ----

// The entry returns its caller at once: the fiber ends on its first switch, and
// the resumer frees the stack as it arrives back.
template <class StackAllocator>
void create_fiber_context(benchmark::State& state) {
  StackAllocator allocator{stack_size};
  for (auto _ : state) {
    fiber::context f{std::allocator_arg, allocator, [](fiber::context&& caller) { return std::move(caller); }};
    f = std::move(f).resume();
    benchmark::DoNotOptimize(f);
  }
  state.SetItemsProcessed(state.iterations());
}

template <class StackAllocator>
void create_boost_fiber(benchmark::State& state) {
  namespace ctx = boost::context;
  StackAllocator allocator{stack_size};
  for (auto _ : state) {
    ctx::fiber f{std::allocator_arg, allocator, [](ctx::fiber&& caller) { return std::move(caller); }};
    f = std::move(f).resume();
    benchmark::DoNotOptimize(f);
  }
  state.SetItemsProcessed(state.iterations());
}

// The same with the default constructor (cached_stack).
void create_fiber_context_default(benchmark::State& state) {
  for (auto _ : state) {
    fiber::context f{[](fiber::context&& caller) { return std::move(caller); }};
    f = std::move(f).resume();
    benchmark::DoNotOptimize(f);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- seed: the seed's program, as its user would write it ----

void seed_fiber_generator(benchmark::State& state, svs::seed_close how) {
  for (auto _ : state) {
    std::string replies = svs::seed_fiber_default(how);
    benchmark::DoNotOptimize(replies);
  }
  state.SetItemsProcessed(state.iterations());
}

// ---- close: close() alone, and the throw it is measured against ----

// Each iteration times one operation by hand (the set-up is not timed): both
// benchmarks read the clock the same way, so its cost does not skew the ratio.
template <class F>
void time_one(benchmark::State& state, F&& op) {
  const auto start = std::chrono::steady_clock::now();
  op();
  state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

// A consumer suspended at its yield, with "200 OK" in its string, closed: the
// generator_exit is thrown at the yield and caught where the body was called.
void close_fiber_generator(benchmark::State& state) {
  for (auto _ : state) {
    svs::seed_consumer_t c{svs::seed_consumer_body};
    c.start();
    benchmark::DoNotOptimize(c.send(1));
    time_one(state, [&] { c.close(); });
  }
  state.SetItemsProcessed(state.iterations());
}

// The same body on the thread's own stack, its yield throwing generator_exit at
// once, caught where the body is called: the frames close() unwinds, without the
// switches.
struct throwing_yielder {
  int yield(const std::string& r) {
    benchmark::DoNotOptimize(r);
    throw fiber::generator_exit{};
  }
};
void close_cxx_throw_catch(benchmark::State& state) {
  for (auto _ : state) {
    throwing_yielder co;
    time_one(state, [&] {
      try {
        svs::seed_consumer_body(co);
      } catch (const fiber::generator_exit&) {
      }
    });
  }
  state.SetItemsProcessed(state.iterations());
}

#endif  // !FIBER_BENCH_SWITCH_ONLY

void register_benchmarks() {
  benchmark::RegisterBenchmark("switch/fiber_context", switch_fiber_context);
  benchmark::RegisterBenchmark("switch/boost_jump_fcontext", switch_boost_jump_fcontext);
#if !FIBER_BENCH_SWITCH_ONLY
  benchmark::RegisterBenchmark("switch/fiber_switch_context", switch_raw<call_switch, fiber_prepare_context>);
#  if FIBER_BENCH_ASM_VARIANTS
  benchmark::RegisterBenchmark("switch/fiber_switch_context_ret",
                               switch_raw<call_switch_ret, fiber_prepare_context_ret>);
  benchmark::RegisterBenchmark("switch/fiber_switch_context_sharedfp",
                               switch_raw<call_switch_sharedfp, fiber_prepare_context_sharedfp>);
#  endif
  benchmark::RegisterBenchmark("switch/boost_fiber", switch_boost_fiber);
  benchmark::RegisterBenchmark("switch/ucontext_swapcontext", switch_ucontext);

  benchmark::RegisterBenchmark("generator/fiber_generator", generator_fiber);
  benchmark::RegisterBenchmark("generator/stackless_coroutine", generator_stackless);
  // The benchmark thread sleeps while the worker runs: only wall-clock time means anything.
  benchmark::RegisterBenchmark("generator/thread_condvar", generator_thread_condvar)->UseRealTime();

  namespace ctx = boost::context;
  benchmark::RegisterBenchmark("create/fiber_context_pooled_stack", create_fiber_context<fiber::pooled_stack>);
  benchmark::RegisterBenchmark("create/fiber_context_protected_stack", create_fiber_context<fiber::protected_stack>);
  benchmark::RegisterBenchmark("create/fiber_context_default_stack", create_fiber_context_default);
  benchmark::RegisterBenchmark("create/boost_fiber_pooled_fixedsize_stack",
                               create_boost_fiber<ctx::pooled_fixedsize_stack>);
  benchmark::RegisterBenchmark("create/boost_fiber_protected_fixedsize_stack",
                               create_boost_fiber<ctx::protected_fixedsize_stack>);

  benchmark::RegisterBenchmark("seed/fiber_generator_default", seed_fiber_generator, svs::seed_close::raise);
  benchmark::RegisterBenchmark("seed/fiber_generator_quiet_close", seed_fiber_generator, svs::seed_close::quietly);
  benchmark::RegisterBenchmark("close/fiber_generator_close", close_fiber_generator)->UseManualTime();
  benchmark::RegisterBenchmark("close/cxx_throw_catch", close_cxx_throw_catch)->UseManualTime();
#endif
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Which FP-environment policy fiber::context was measured with (report.py checks it).
  benchmark::AddCustomContext("fiber_shares_fp_env", fiber::shares_fp_env() ? "true" : "false");
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
