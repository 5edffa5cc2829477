// The workloads of the stackful-vs-stackless comparison, each written twice: with
// fiber (stackful: fiber::generator, fiber::context, the event loop and its
// channels) and with C++20 coroutines (stackless: bench/stackless.hpp), plus the
// plain-code floor where there is one. bench/stackful_vs_stackless.cpp times them;
// tests/stackful_vs_stackless_test.cpp runs each small and checks that both ways
// compute the same thing.
//
//   1 iterate   a generator yields 0..n-1
//   2 tree      in-order walk of a complete binary tree of 2^k - 1 nodes: stackful
//               yields from inside the recursion; stackless needs a generator per
//               level, either re-yielding every element of the level below (nested)
//               or handing the consumer to the innermost one (delegating, as C++23's
//               std::ranges::elements_of)
//   3 deep      one suspension point D calls deep: the driver sends x, the bottom of
//               the call chain receives it and each level adds 1 on the way back up;
//               then the chain is entered again, down to the next suspension.
//               Stackful: ordinary functions; stackless: every level a task awaited
//               by the one above
//   4 pingpong  a round trip between two tasks over two unbuffered channels
//   5 fanout    n tasks that each park on one channel (all at once), then are
//               released with a value each and joined
//   6 create    create a trivial task, run it to its end, destroy it: bare (a
//               fiber::context against a coroutine) and on a loop (spawn + join)
//   7 seed      the seed's producer/consumer (5 sends, close) without printing
//
// Functions with a Sink hand every element to `sink(long)`: the benchmark passes
// benchmark::DoNotOptimize so nothing can be folded away, the test a checksum.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fiber/channel.hpp"
#include "fiber/context.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/generator.hpp"
#include "fiber/stack.hpp"
#include "stackless.hpp"

namespace svs {

/// Keeps `v` in a register across this point: the compiler can neither fold the
/// computation around it nor turn the recursion below it into a loop.
inline void opaque(long& v) {
#if defined(__GNUC__)
  asm volatile("" : "+r"(v));
#else
  volatile long keep = v;
  v = keep;
#endif
}

/// Order-sensitive checksum of a sequence of longs.
struct checksum {
  std::uint64_t value = 1469598103934665603ull;
  std::uint64_t count = 0;
  void operator()(long v) noexcept {
    value = (value ^ static_cast<std::uint64_t>(v)) * 1099511628211ull;
    ++count;
  }
  bool operator==(const checksum&) const = default;
};

// ---- 1. iterate ----

template <class Sink>
void iterate_plain(long n, Sink& sink) {
  for (long i = 0; i < n; ++i) sink(i);
}

template <class Sink>
void iterate_fiber(long n, const fiber::pooled_stack& stacks, Sink& sink) {
  using gen = fiber::generator<long>;
  gen g{std::allocator_arg, stacks, [n](gen::yielder& co) {
          for (long i = 0; i < n; ++i) co.yield(i);
        }};
  for (long v : g) sink(v);
}

inline stackless::pull<long> count_to(long n) {
  for (long i = 0; i < n; ++i) co_yield i;
}

template <class Sink>
void iterate_stackless(long n, Sink& sink) {
  for (long v : count_to(n)) sink(v);
}

// ---- 2. tree ----

/// A complete binary tree of 2^k - 1 nodes in heap order: the children of node i
/// are 2i + 1 and 2i + 2.
struct tree {
  std::vector<long> values;
  explicit tree(int k) : values((std::size_t{1} << k) - 1) {
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<long>((i * 2654435761u) % 1000003u);
  }
  std::size_t size() const noexcept { return values.size(); }
};

template <class Sink>
void walk_plain(const tree& t, std::size_t i, Sink& sink) {
  if (2 * i + 1 < t.size()) walk_plain(t, 2 * i + 1, sink);
  sink(t.values[i]);
  if (2 * i + 2 < t.size()) walk_plain(t, 2 * i + 2, sink);
}

template <class Sink>
void tree_plain(const tree& t, Sink& sink) {
  walk_plain(t, 0, sink);
}

using tree_generator = fiber::generator<long>;

inline void walk_fiber(const tree& t, std::size_t i, tree_generator::yielder& co) {
  if (2 * i + 1 < t.size()) walk_fiber(t, 2 * i + 1, co);
  co.yield(t.values[i]);
  if (2 * i + 2 < t.size()) walk_fiber(t, 2 * i + 2, co);
}

template <class Sink>
void tree_fiber(const tree& t, const fiber::pooled_stack& stacks, Sink& sink) {
  tree_generator g{std::allocator_arg, stacks, [&t](tree_generator::yielder& co) { walk_fiber(t, 0, co); }};
  for (long v : g) sink(v);
}

inline stackless::pull<long> walk_nested(const tree& t, std::size_t i) {
  if (2 * i + 1 < t.size())
    for (long v : walk_nested(t, 2 * i + 1)) co_yield v;
  co_yield t.values[i];
  if (2 * i + 2 < t.size())
    for (long v : walk_nested(t, 2 * i + 2)) co_yield v;
}

template <class Sink>
void tree_stackless_nested(const tree& t, Sink& sink) {
  for (long v : walk_nested(t, 0)) sink(v);
}

inline stackless::recursive_pull<long> walk_delegating(const tree& t, std::size_t i) {
  if (2 * i + 1 < t.size()) co_yield stackless::elements_of(walk_delegating(t, 2 * i + 1));
  co_yield t.values[i];
  if (2 * i + 2 < t.size()) co_yield stackless::elements_of(walk_delegating(t, 2 * i + 2));
}

template <class Sink>
void tree_stackless_delegating(const tree& t, Sink& sink) {
  for (long v : walk_delegating(t, 0)) sink(v);
}

// ---- 3. deep ----

/// The floor: the same descent and ascent, with nothing suspending at the bottom.
[[gnu::noinline]] inline long descend_plain(int d, long x) {
  long r = d == 0 ? x : descend_plain(d - 1, x);
  opaque(r);
  return r + 1;
}

using deep_generator = fiber::generator<long, long>;

[[gnu::noinline]] inline long descend_fiber(int d, deep_generator::yielder& co, long x) {
  long r = d == 0 ? co.yield(x) : descend_fiber(d - 1, co, x);
  opaque(r);
  return r + 1;
}

/// Stackful: the body's loop calls D ordinary functions deep; the bottom one yields.
class deep_fiber {
 public:
  deep_fiber(int depth, const fiber::pooled_stack& stacks)
      : g_{std::allocator_arg, stacks, [depth](deep_generator::yielder& co) {
             long x = 0;
             for (;;) x = descend_fiber(depth, co, x);
           }} {}
  deep_fiber(deep_fiber&&) = delete;
  long start() { return g_.start(); }
  FIBER_SWITCH_INLINE long send(long v) { return g_.send(v); }

 private:
  deep_generator g_;
};

/// Stackless: every level is a task awaited by the level above; the bottom awaits
/// the exchange, which remembers the bottom frame, so send() resumes it directly.
class deep_stackless {
 public:
  explicit deep_stackless(int depth) : top_(body(depth, ex_)) {}
  deep_stackless(deep_stackless&&) = delete;  // the frames point at ex_
  long start() {
    top_.start();
    return ex_.out;
  }
  long send(long v) {
    ex_.in = v;
    ex_.bottom.resume();
    return ex_.out;
  }

 private:
  struct exchange {
    long out = 0, in = 0;
    std::coroutine_handle<> bottom;
    auto yield(long x) noexcept {
      struct awaiter {
        exchange& ex;
        long x;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) const noexcept {
          ex.out = x;
          ex.bottom = h;
        }
        long await_resume() const noexcept { return ex.in; }
      };
      return awaiter{*this, x};
    }
  };
  static stackless::task<long> descend(int d, exchange& ex, long x) {
    long r;
    if (d == 0)
      r = co_await ex.yield(x);
    else
      r = co_await descend(d - 1, ex, x);
    opaque(r);
    co_return r + 1;
  }
  static stackless::task<> body(int depth, exchange& ex) {
    long x = 0;
    for (;;) x = co_await descend(depth, ex, x);
  }
  exchange ex_;
  stackless::task<> top_;
};

// ---- 4. pingpong ----

/// Runs `fn` as a task of `loop` until it ends; returns its value. The benchmark
/// keeps one loop (and one stackless::loop) for all its runs, so that what it
/// times is the workload and not the making of a loop.
template <class F>
auto run_on(fiber::event_loop& loop, F&& fn) {
  auto t = loop.spawn(std::forward<F>(fn));
  loop.run_until(t);
  return t.get();
}

inline long run_on(stackless::loop& lp, stackless::job j) {
  j.spawn(lp);
  lp.run();
  return 0;
}

/// n round trips; returns the sum of what came back.
inline long pingpong_fiber(fiber::event_loop& loop, long n) {
  return run_on(loop, [n] {
    long sum = 0;
    fiber::channel<long> ping, pong;
    auto echo = fiber::spawn([&] {
      while (auto v = ping.recv()) pong.send(*v);
    });
    for (long i = 0; i < n; ++i) {
      ping.send(i);
      sum += *pong.recv();
    }
    ping.close();
    echo.join();
    return sum;
  });
}

namespace stackless_pingpong {
inline stackless::job echo(stackless::channel<long>& ping, stackless::channel<long>& pong, long n) {
  for (long i = 0; i < n; ++i) {
    long v = co_await ping.recv();
    co_await pong.send(v);
  }
}
inline stackless::job driver(stackless::loop& lp, long n, long& sum) {
  stackless::channel<long> ping(lp), pong(lp);
  stackless::job e = echo(ping, pong, n);
  e.spawn(lp);
  for (long i = 0; i < n; ++i) {
    co_await ping.send(i);
    sum += co_await pong.recv();
  }
  co_await e.join();
}
}  // namespace stackless_pingpong

inline long pingpong_stackless(stackless::loop& lp, long n) {
  long sum = 0;
  run_on(lp, stackless_pingpong::driver(lp, n, sum));
  return sum;
}

// ---- 5. fanout ----

/// What fanout_* report: the sum of the task indices (every task ran once) and
/// the most tasks waiting at once.
struct fanout_result {
  long sum = 0;
  long waiting = 0;
  long peak_waiting = 0;
  bool operator==(const fanout_result&) const = default;
};

// Every task parks on the same unbuffered channel `release`; the last to start
// tells the spawner (on `all_parked`) before it parks too, so that all n wait at
// once (peak_waiting == n) and the peak memory is n parked tasks'. The spawner
// then sends each its value (0) and joins them. Go's, Boost.Fiber's and
// asyncio's versions (bench/peers/loop_peer.go, loop_bench.cpp, loop_peer.py) do
// the same. `kind`: the tasks' stacks (fiber_copied: stack_kind::copied).
inline fanout_result fanout_fiber(long n, fiber::stack_kind kind = fiber::stack_kind::own) {
  fanout_result r;
  fiber::run([&] {
    fiber::channel<long> all_parked;
    fiber::channel<long> release;
    std::vector<fiber::task<void>> tasks;
    tasks.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i)
      tasks.push_back(fiber::spawn({.stack = kind}, [&r, &all_parked, &release, i, n] {
        if (++r.waiting > r.peak_waiting) r.peak_waiting = r.waiting;
        if (r.waiting == n) all_parked.send(0);
        const long v = *release.recv();
        --r.waiting;
        r.sum += i + v;
      }));
    if (n > 0) (void)all_parked.recv();
    for (long i = 0; i < n; ++i) release.send(0);
    for (auto& t : tasks) t.join();
  });
  return r;
}

namespace stackless_fanout {
inline stackless::job child(fanout_result& r, long i, long n, stackless::channel<long>& all_parked,
                            stackless::channel<long>& release) {
  if (++r.waiting > r.peak_waiting) r.peak_waiting = r.waiting;
  if (r.waiting == n) co_await all_parked.send(0);
  const long v = co_await release.recv();
  --r.waiting;
  r.sum += i + v;
}
inline stackless::job parent(stackless::loop& lp, fanout_result& r, long n) {
  stackless::channel<long> all_parked(lp);
  stackless::channel<long> release(lp);
  std::vector<stackless::job> jobs;
  jobs.reserve(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) {
    jobs.push_back(child(r, i, n, all_parked, release));
    jobs.back().spawn(lp);
  }
  if (n > 0) (void)co_await all_parked.recv();
  for (long i = 0; i < n; ++i) co_await release.send(0);
  for (auto& j : jobs) co_await j.join();
}
}  // namespace stackless_fanout

inline fanout_result fanout_stackless(long n) {
  fanout_result r;
  stackless::loop lp;
  stackless::job p = stackless_fanout::parent(lp, r, n);
  p.spawn(lp);
  lp.run();
  return r;
}

// ---- 6. create ----

/// Bare: n times, a fiber::context whose entry returns at once, resumed once.
inline long create_fiber_context(long n, const fiber::pooled_stack& stacks) {
  long sum = 0;
  for (long i = 0; i < n; ++i) {
    fiber::context f{std::allocator_arg, stacks, [&sum, i](fiber::context&& caller) {
                       sum += i;
                       return std::move(caller);
                     }};
    f = std::move(f).resume();
  }
  return sum;
}

inline stackless::task<long> trivial(long i) { co_return i; }

inline long create_stackless_task(long n) {
  long sum = 0;
  for (long i = 0; i < n; ++i) sum += trivial(i).run_to_end();
  return sum;
}

/// On a loop: n times, spawn a task that returns its index and join it.
inline long create_fiber_spawn_join(fiber::event_loop& loop, long n) {
  return run_on(loop, [n] {
    long sum = 0;
    for (long i = 0; i < n; ++i) sum += fiber::spawn([i] { return i; }).get();
    return sum;
  });
}

namespace stackless_create {
inline stackless::job child(long& out, long i) {
  out = i;
  co_return;
}
inline stackless::job parent(stackless::loop& lp, long n, long& sum) {
  for (long i = 0; i < n; ++i) {
    long out = 0;
    stackless::job j = child(out, i);
    j.spawn(lp);
    co_await j.join();
    sum += out;
  }
}
}  // namespace stackless_create

inline long create_stackless_spawn_join(stackless::loop& lp, long n) {
  long sum = 0;
  run_on(lp, stackless_create::parent(lp, n, sum));
  return sum;
}

// ---- 7. seed ----

/// The seed's producer without the prints, for either consumer: start, 5 sends;
/// returns the replies received, joined.
template <class Consumer>
std::string seed_produce(Consumer& c) {
  std::string replies;
  c.start();
  int n = 0;
  while (n < 5) {
    n = n + 1;
    replies += c.send(n);
  }
  return replies;
}

/// The seed's consumer (`n = yield r` until n is 0) for fiber::generator, and for
/// any yielder with the same yield(r) (bench/fiber_bench.cpp throws through it).
inline constexpr auto seed_consumer_body = [](auto& co) {
  std::string r;
  while (true) {
    const int n = co.yield(r);
    if (!n) return;
    r = "200 OK";
  }
};
using seed_consumer_t = fiber::generator<std::string, int>;

/// How a seed program closes its consumer: close() (Python's, generator_exit at
/// the pending yield) or close_quietly() (the yield returns 0 and the body returns).
enum class seed_close { raise, quietly };

/// The seed's consumer and producer without the prints, the consumer made with
/// `make()`; returns the replies the producer received, joined.
template <class Make>
std::string seed_program(Make make, seed_close how) {
  seed_consumer_t c = make();
  std::string replies = seed_produce(c);
  if (how == seed_close::raise)
    c.close();
  else
    c.close_quietly();
  return replies;
}

/// The seed's program with the consumer's stack from `stacks`.
template <class StackAllocator>
std::string seed_fiber(const StackAllocator& stacks, seed_close how = seed_close::raise) {
  return seed_program([&] { return seed_consumer_t{std::allocator_arg, stacks, seed_consumer_body}; }, how);
}

/// The seed's program written the obvious way: the generator's default constructor.
inline std::string seed_fiber_default(seed_close how = seed_close::raise) {
  return seed_program([] { return seed_consumer_t{seed_consumer_body}; }, how);
}

inline stackless::generator<std::string, int> seed_consumer() {
  std::string r;
  while (true) {
    const int n = co_yield r;
    if (!n) co_return;
    r = "200 OK";
  }
}

inline std::string seed_stackless() {
  auto c = seed_consumer();
  return seed_produce(c);  // c.close(): destroying the frame runs its locals' destructors
}

}  // namespace svs
