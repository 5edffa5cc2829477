// The seed's asyncio, with fibers for coroutines: an event loop per thread that
// runs many fibers, each written as plain blocking-looking code.
//
//   int main() {
//     return fiber::run([] {
//       auto a = fiber::spawn([] { fiber::this_fiber::sleep_for(10ms); return 1; });
//       auto b = fiber::spawn([] { return 2; });
//       return a.get() + b.get();          // 3
//     });
//   }
//
// - fiber::run(fn) makes a loop on this thread, runs fn as its main task until it
//   returns, then cancels the tasks still alive and waits for them (asyncio.run).
// - fiber::spawn(fn, args...) starts a task on the running loop and returns a
//   fiber::task<T>: get() waits and returns the value (or rethrows what the body
//   threw), join() waits, detach() lets it run on alone, cancel() asks it to stop.
// - Blocking operations (this_fiber::sleep_for, channel send/recv, mutex lock, io
//   reads...) park only the calling fiber. Each has a timed form; a
//   fiber::deadline_scope bounds all of them at once and throws fiber::timed_out.
// - Cancelling a task makes its current blocking operation, or its next one, throw
//   fiber::cancelled (once); the stack unwinds and get()/join() rethrow it.
// - Order. Ready fibers run first in, first out, but for one hand-off slot ahead of
//   the queue: joining a task that has not started runs it next, and a task that
//   ends hands over to its (first) joiner. Hand-offs are bounded (event_loop.cpp):
//   every 256 direct switches the scheduler's turn comes and the queue's head runs.
//
// Debugging. A task has an id, unique in the process (task::id(), and
// this_fiber::id() inside it), and may have a name (spawn_options::name,
// this_fiber::set_name). fiber::dump() (debug.hpp) shows what each task does or
// waits for (the operation, and the channel, fd, task or deadline); run()'s
// deadlock report (fiber::deadlock_error) lists each parked task the same way.
//
// Stacks. Loop fibers get their stacks from a per-loop pool and allocate one only
// when they first run, so a task that is spawned and waits in the ready queue costs
// one small heap block. The pool keeps stacks by size class (powers of two): tasks
// asking for sizes close to one another reuse each other's stacks. A finished
// fiber's context waits on its stack (up to 128 of them) for the next task that
// starts, which then needs no new frame. After a
// burst, free stacks beyond a small bound (2 MiB worth, or as many as are alive)
// give their pages back (madvise) while the loop lives on; reusing one costs
// page faults (loop_stacks.hpp). The
// first `guarded_stacks` stacks alive at once (16384 by default) each get a
// PROT_NONE guard page, so an overflow faults; past that, stacks come from larger
// mappings without guard pages and with a 256-byte canary region at the bottom
// that is checked, with the fiber's frame, whenever the fiber switches out or ends
// (an overflow is reported as a guard page's is, and the process aborts). Linux caps a process at vm.max_map_count mappings (65530 by
// default) and every guard page splits one, so guarding every stack would stop near
// 32K fibers; this policy runs a million. When memory or mappings run out, the
// task that could not get a stack ends failed with fiber::stack_allocation_error
// (its get() rethrows it), whose message names the size and the limit hit.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "fiber/context.hpp"
#include "fiber/detail/eh_state.hpp"
#include "fiber/detail/scheduler.hpp"
#include "fiber/detail/loop_core.hpp"
#include "fiber/error.hpp"
#include "fiber/stack.hpp"

namespace fiber {

/// Thrown by a blocking operation of a task that was cancelled (task::cancel()),
/// and rethrown by get()/join() of a task that ended because of it.
class cancelled : public std::exception {
 public:
  const char* what() const noexcept override { return "fiber::cancelled: the task was cancelled"; }
};

/// Thrown by a blocking operation when the deadline of an enclosing
/// fiber::deadline_scope passes.
class timed_out : public std::runtime_error {
 public:
  timed_out() : std::runtime_error("fiber::timed_out: the deadline of a fiber::deadline_scope passed") {}
};

// task_status (how a task ended) is declared with the scheduler's internals, in
// detail/loop_core.hpp: what the loop knows of a fiber stores it.

namespace detail {
struct loop_internals;  // the library's access to an event_loop's insides (event_loop.cpp)
}

/// Options of a spawn.
// (stack_kind, where a fiber's frames live: stack.hpp.)

struct spawn_options {
  /// Usable stack of the new fiber (0: the loop's, event_loop::options), at
  /// least this: the pool rounds it up to its size class, a power of two of at
  /// least a page (address space only: untouched pages take no memory). A size
  /// no stack can have ends the task failed with fiber::stack_allocation_error.
  /// A copied-stack fiber (below) runs on its loop's shared stack, of the
  /// loop's size: a larger stack_size throws fiber::error.
  std::size_t stack_size = 0;
  /// The kind of stack the fiber runs on (stack_kind): its own, or its loop's
  /// shared stack, copied away while it is parked. Unset: the loop's
  /// (event_loop::options::stack).
  std::optional<stack_kind> stack{};
  /// Start the task at once, on the spawner's time, rather than when the loop
  /// reaches it (Python 3.12's eager tasks, Boost.Fiber's launch::dispatch): the
  /// spawner waits at the head of the ready queue and goes on as soon as the task
  /// parks or ends. Recursive spawners then run depth first, holding few stacks
  /// at once. Ignored (the task is queued) when the spawner is not a fiber of the
  /// loop.
  bool eager = false;
  /// The task's name, for debugging: fiber::this_fiber::name() inside it,
  /// fiber::dump(), the deadlock report. Copied; at most 31 bytes are kept.
  std::string_view name{};
  /// On a runtime of several workers (fiber::run with run_options::threads > 1):
  /// the task may move to another worker's thread whenever it is ready to run
  /// again (after it yields, or a wait of it ends), as a goroutine may: an idle
  /// worker takes it from a busy one. By default a task that has started never
  /// changes threads, so that its thread_local state, errno and the locks it
  /// holds stay valid across every blocking call; opt in only for code that
  /// keeps none of these across one (the compiler may also reuse the address of
  /// a thread_local variable read before a blocking call after it). Its streams
  /// keep working on the new thread. Its stack is always guarded (a cached
  /// protected stack, not the loop's pool). Where the thread pointer is not read
  /// afresh by every access to thread-local storage (every target but x86 and
  /// x86-64 ELF), and outside a runtime of several workers, the task stays on
  /// the worker where it started: fiber::this_fiber::may_migrate() tells.
  bool migratable = false;
  /// The worker of the runtime (fiber::run with run_options::threads) the task
  /// runs on, from 0 to fiber::this_runtime::workers() - 1; any_worker (the
  /// default): the spawner's, unless an idle worker takes it first (run_options).
  /// A task placed so is never handed to another worker. On another worker than
  /// the spawner's, it goes to that worker's queue (as a wake from another thread
  /// does; eager is then ignored). A loop of its own (not a runtime) is worker 0.
  /// Throws fiber::error if there is no such worker. Once the runtime shuts down
  /// (its main task returned), a worker that has left takes no more tasks: the
  /// task then runs on the spawner's worker.
  ///
  /// One acceptor per worker (io.hpp, listen_options::reuse_port), or one that
  /// deals its connections out: `fiber::spawn({.worker = i}, serve, l.accept())`.
  static constexpr unsigned any_worker = static_cast<unsigned>(-1);
  unsigned worker = any_worker;
};

/// One event loop per thread: a ready queue, timers and (on Linux) an epoll
/// reactor. Not movable. Of the loop itself, only post() (and keep_alive) may be
/// used from other threads: while it runs, run(), run_once(), spawn() and
/// cancel_all() throw fiber::error when called from another thread. Its tasks'
/// handles, and the channels and sync primitives its fibers wait on, work from
/// any thread (scheduler.hpp, "Threads").
class event_loop {
 public:
  struct options {
    std::size_t stack_size = default_stack_size;  ///< usable stack of each fiber
    std::size_t guarded_stacks = 16384;           ///< stacks alive at once with a guard page
    /// Operations that complete without waiting (a channel's send or recv, a
    /// select, a mutex's lock, a stream's read or write, an accept, a spawn) a fiber
    /// may make in a row before the next one yields it, letting the other fibers, the timers
    /// and the IO of the loop have their turn (Tokio's budget). A fiber that parks
    /// starts its next turn with a full budget. 0: off (a fiber then runs until it
    /// parks or yields, and can starve the loop).
    int cooperative_budget = 128;
    /// The kind of stack of the tasks whose spawn does not say
    /// (spawn_options::stack). Unset: the environment variable FIBER_STACK
    /// (`own` or `copied`), read once per process, else stack_kind::own. (The
    /// variable runs a program's fibers on copied stacks without changing it:
    /// the test suite runs so a second time.)
    std::optional<stack_kind> stack{};
  };

  event_loop();
  explicit event_loop(options opts);
  /// Fibers still suspended are destroyed: their stacks unwind (forced unwinding),
  /// and tasks that never started just end; all of them end cancelled. Destroying
  /// a loop while it runs (from one of its fibers, or from another thread) ends
  /// the process with a message.
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  /// The loop running on this thread (inside run()), or nullptr.
  static event_loop* current() noexcept;

  /// Starts `fn(args...)` as a task of this loop; it runs once the loop runs.
  template <class F, class... Args>
  auto spawn(F&& fn, Args&&... args) {
    return spawn(spawn_options{}, std::forward<F>(fn), std::forward<Args>(args)...);
  }
  template <class F, class... Args>
  auto spawn(spawn_options opts, F&& fn, Args&&... args) {
    detail::coop_tick();  // a spawner that never parks must not hold up the loop
    auto body = detail::bind_task(std::forward<F>(fn), std::forward<Args>(args)...);
    using R = std::invoke_result_t<decltype(body)&>;
    using T = std::conditional_t<std::is_reference_v<R>, std::decay_t<R>, R>;
    auto* s = new detail::task_impl<T, decltype(body)>(std::move(body));
    s->refs.store(1, std::memory_order_relaxed);
    detail::submit(*this, s, opts);
    return task<T>(s);
  }

  /// Runs fibers until none is left. Throws fiber::error if fibers remain parked
  /// with nothing that could wake them (no timer, no IO, no keep_alive).
  void run();
  /// Runs until `t` has ended (other fibers run too; they stay as they are).
  template <class T>
  void run_until(const task<T>& t) {
    run_until_done(t.state_);
  }

  /// For a foreign main loop (a poll() loop, glib, Qt, libuv): one round, then
  /// return. Runs what was posted and the timers that are due; if no fiber is
  /// ready, first waits up to `timeout` (negative: no limit) for IO, a post or the
  /// next timer; then gives each fiber that is ready one turn. Returns the number
  /// of fibers alive (0: nothing left to run). Never reports a deadlock: the
  /// foreign loop may be what wakes the fibers. Throws fiber::error if this or
  /// another loop is already running on the thread.
  std::size_t run_once(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
  /// The loop's pollable descriptor (Linux: its epoll fd): readable when a fiber's
  /// IO is ready or something was posted. Wait on it (with next_timeout_ms()) in
  /// the foreign loop, then call run_once(0). -1 where there is none.
  int native_handle() const noexcept;
  /// How long the foreign loop may sleep before run_once has work: 0 if a fiber is
  /// ready or something was posted, the time to the next timer (ms, rounded up),
  /// or -1 if only IO or a post can wake a fiber.
  int next_timeout_ms() const;

  /// Cancels every task alive (as task::cancel() does).
  void cancel_all();

  /// Thread-safe: runs fn on the loop's thread, outside any fiber (so it must not
  /// block; it may spawn, or send with try_send). Wakes the loop if it sleeps.
  void post(std::function<void()> fn);

  /// While a keep_alive exists, run() waits for post() instead of reporting a
  /// deadlock when every fiber is parked.
  class keep_alive {
   public:
    explicit keep_alive(event_loop& loop);
    ~keep_alive();
    keep_alive(const keep_alive&) = delete;
    keep_alive& operator=(const keep_alive&) = delete;

   private:
    event_loop& loop_;
  };

  /// Fibers spawned and not yet ended.
  std::size_t alive() const noexcept;
  /// Stacks allocated now: with a guard page, and without one (canary only).
  std::size_t guarded_stacks() const noexcept;
  std::size_t unguarded_stacks() const noexcept;

  struct impl;  // (opaque: event_loop.cpp)

 private:
  // The library's own functions reach the loop's insides through
  // detail::loop_internals (event_loop.cpp); nothing public does.
  friend struct detail::loop_internals;
  impl& internals() noexcept { return *impl_; }
  void run_until_done(detail::fiber_control* f);
  std::unique_ptr<impl> impl_;
};

/// A handle to a spawned task. Move-only. Destroying a handle detaches the task.
template <class T>
class task {
 public:
  task() noexcept = default;
  task(task&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::exchange(other.state_, nullptr);
    }
    return *this;
  }
  ~task() { reset(); }

  explicit operator bool() const noexcept { return state_ != nullptr; }
  /// The task's fiber id, unique in the process: fiber::this_fiber::id() inside
  /// it, and the id fiber::dump() shows.
  std::uint64_t id() const {
    check("id");
    return state_->id;
  }
  task_status status() const {
    check("status");
    return state_->status;
  }
  bool done() const { return status() != task_status::pending; }

  /// Waits for the task to end; rethrows the exception that ended it (fiber::cancelled
  /// if it was cancelled). A task that has not started yet runs next.
  void join() {
    check("join");
    detail::join(state_, detail::no_deadline, "fiber::task::join");
    detail::rethrow_outcome(state_);
  }
  /// Waits at most until `deadline`; false if the task is still running then.
  bool join_until(clock::time_point deadline) {
    check("join_until");
    if (!detail::join(state_, deadline, "fiber::task::join_until")) return false;
    detail::rethrow_outcome(state_);
    return true;
  }
  template <class Rep, class Period>
  bool join_for(std::chrono::duration<Rep, Period> timeout) {
    return join_until(clock::now() + std::chrono::ceil<clock::duration>(timeout));
  }
  /// Waits and returns the value (moved out: once), or rethrows.
  T get() {
    check("get");
    detail::join(state_, detail::no_deadline, "fiber::task::get");
    detail::rethrow_outcome(state_);
    if (!state_->value) throw error("fiber::task::get: the value was already taken");
    if constexpr (std::is_void_v<T>) {
      state_->value.reset();
    } else {
      T v = std::move(*state_->value);
      state_->value.reset();
      return v;
    }
  }
  /// Asks the task to stop: its current or next blocking operation throws
  /// fiber::cancelled. No effect on a task that has ended.
  void cancel() {
    check("cancel");
    detail::cancel(state_);
  }
  /// Lets the task run on without this handle. An exception that then ends it is
  /// reported on stderr (there is nobody left to rethrow it to).
  void detach() {
    check("detach");
    reset();
  }

 private:
  friend class event_loop;
  template <class U>
  friend class task;
  template <class... U>
  friend auto gather(task<U>&... tasks);
  template <class U>
  friend std::vector<U> gather(std::vector<task<U>>& tasks);
  template <class U>
  friend std::optional<std::size_t> wait_any_until(std::vector<task<U>>& tasks, clock::time_point deadline);
  friend struct detail::fiber_control;

  explicit task(detail::task_state<T>* s) noexcept : state_(s) {}
  void check(const char* op) const {
    if (!state_) detail::throw_empty_task(op);
  }
  void reset() noexcept {
    if (state_) detail::release_handle(std::exchange(state_, nullptr));
  }
  detail::task_state<T>* state_ = nullptr;
};

/// Starts a task on the loop running this thread (throws fiber::error if none).
template <class F, class... Args>
auto spawn(F&& fn, Args&&... args) {
  event_loop* loop = event_loop::current();
  if (!loop) detail::throw_no_loop("fiber::spawn");
  return loop->spawn(std::forward<F>(fn), std::forward<Args>(args)...);
}
template <class F, class... Args>
auto spawn(spawn_options opts, F&& fn, Args&&... args) {
  event_loop* loop = event_loop::current();
  if (!loop) detail::throw_no_loop("fiber::spawn");
  return loop->spawn(opts, std::forward<F>(fn), std::forward<Args>(args)...);
}

/// Options of fiber::run.
struct run_options {
  /// Worker threads, each running an event_loop with its own reactor. 1 (the
  /// default): everything runs on the calling thread, as event_loop::run does.
  /// N > 1: the calling thread is worker 0 and N-1 threads are started. 0: one
  /// per core (std::thread::hardware_concurrency()).
  ///
  /// The rule on N workers: a task that has not started yet may start on any
  /// worker (spawn queues it on the spawner's worker; idle workers take queued
  /// tasks from busy ones). A fiber that has started never changes threads:
  /// thread_local state, errno, thread ids and locks held by legacy code stay
  /// valid across every blocking operation. Channels, select, the sync
  /// primitives, task handles and post() work between fibers of different workers.
  unsigned threads = 1;
  /// Each worker loop's options; but guarded_stacks is the runtime's total, shared
  /// by the workers (each guard page costs one of the process's vm.max_map_count
  /// mappings).
  event_loop::options loop{};
};

namespace detail {
// N loops, one per worker thread, the caller's thread being worker 0
// (src/loop/runtime.cpp). Starts workers 1..N-1; the destructor stops and joins them.
class runtime {
 public:
  runtime(unsigned threads, const event_loop::options& opts);
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;
  event_loop& main_loop() noexcept;
  std::size_t workers() const noexcept;
  // After the main task: cancels every task on every worker, waits for them all.
  void shutdown();

 private:
  void stop() noexcept;
  struct state;
  std::unique_ptr<state> s_;
};
}  // namespace detail

/// asyncio.run: runs `fn(args...)` as the main task of a loop on this thread (or
/// of a runtime of opts.threads workers); when it returns, the tasks still alive
/// are cancelled and waited for; then its value is returned (or its exception
/// rethrown).
template <class F, class... Args>
auto run(run_options opts, F&& fn, Args&&... args) {
  if (opts.threads == 1) {
    event_loop loop(opts.loop);
    auto main = loop.spawn(std::forward<F>(fn), std::forward<Args>(args)...);
    loop.run_until(main);
    loop.cancel_all();
    loop.run();
    return main.get();
  }
  detail::runtime rt(opts.threads, opts.loop);
  auto main = rt.main_loop().spawn(std::forward<F>(fn), std::forward<Args>(args)...);
  rt.main_loop().run_until(main);
  rt.shutdown();
  return main.get();
}
template <class F, class... Args>
auto run(F&& fn, Args&&... args) {
  return run(run_options{}, std::forward<F>(fn), std::forward<Args>(args)...);
}
/// fiber::run(fn, {.threads = 4})
template <class F>
auto run(F&& fn, run_options opts) {
  return run(opts, std::forward<F>(fn));
}

namespace this_runtime {
/// The workers of the runtime the caller runs on (fiber::run's
/// run_options::threads, 0 resolved to the cores): 1 on a loop of its own, 0 on a
/// thread that runs no loop.
unsigned workers() noexcept;
/// The index of the worker the caller runs on, from 0 to workers() - 1 (0 on a
/// loop of its own, and on a thread that runs no loop). A fiber that has started
/// never changes workers, so the answer holds for the rest of its life.
unsigned worker() noexcept;
}  // namespace this_runtime

namespace this_fiber {
/// Lets the other ready fibers run, then continues.
void yield();
/// Parks the fiber until `deadline` (never returns earlier).
void sleep_until(clock::time_point deadline);
template <class Rep, class Period>
void sleep_for(std::chrono::duration<Rep, Period> d) {
  sleep_until(clock::now() + std::chrono::ceil<clock::duration>(d));
}
/// Whether the caller is a fiber of a running loop.
bool in_fiber() noexcept;
/// Whether the calling fiber may move to another worker's thread when it is
/// ready to run again (spawn_options::migratable, where it takes effect).
bool may_migrate() noexcept;
/// The innermost deadline_scope's deadline (clock::time_point::max() if none).
clock::time_point deadline() noexcept;
/// Throws fiber::cancelled now if this task's cancellation is pending.
void check_cancelled();
}  // namespace this_fiber

/// Bounds every blocking operation of this fiber until the scope ends: past
/// `deadline`, they throw fiber::timed_out. Scopes nest (the earliest deadline wins).
class deadline_scope {
 public:
  explicit deadline_scope(clock::time_point deadline);
  template <class Rep, class Period>
  explicit deadline_scope(std::chrono::duration<Rep, Period> timeout)
      : deadline_scope(clock::now() + std::chrono::ceil<clock::duration>(timeout)) {}
  ~deadline_scope();
  deadline_scope(const deadline_scope&) = delete;
  deadline_scope& operator=(const deadline_scope&) = delete;

 private:
  detail::fiber_control* fiber_;
  clock::time_point saved_;
};

/// Waits for every task and returns their values in order. The first task to fail
/// (in time) has the others cancelled and waited for, then its exception is
/// rethrown; so is fiber::timed_out or fiber::cancelled if the gathering fiber's
/// own wait ends that way (the tasks are cancelled first, as well).
template <class T>
std::vector<T> gather(std::vector<task<T>>& tasks);
template <class... T>
auto gather(task<T>&... tasks);

/// Waits until one of `tasks` has ended and returns its index, or std::nullopt if
/// `deadline` passes first. Cancels nothing.
template <class T>
std::optional<std::size_t> wait_any_until(std::vector<task<T>>& tasks, clock::time_point deadline);
template <class T>
std::size_t wait_any(std::vector<task<T>>& tasks) {
  return *wait_any_until(tasks, detail::no_deadline);
}

namespace detail {
// gather's engine: waits for all of `fibers`; on the first failure, or when the
// wait itself throws, cancels the rest, waits for them, and rethrows.
void gather_all(fiber_control* const* fibers, std::size_t count);
}  // namespace detail

template <class T>
std::vector<T> gather(std::vector<task<T>>& tasks) {
  std::vector<detail::fiber_control*> fibers;
  fibers.reserve(tasks.size());
  for (auto& t : tasks) {
    t.check("gather");
    fibers.push_back(t.state_);
  }
  detail::gather_all(fibers.data(), fibers.size());
  std::vector<T> out;
  out.reserve(tasks.size());
  for (auto& t : tasks) out.push_back(t.get());
  return out;
}

template <class... T>
auto gather(task<T>&... tasks) {
  (tasks.check("gather"), ...);
  detail::fiber_control* fibers[] = {tasks.state_...};
  detail::gather_all(fibers, sizeof...(T));
  auto value = [](auto& t) {
    if constexpr (std::is_void_v<decltype(t.get())>) {
      t.get();
      return std::monostate{};
    } else {
      return t.get();
    }
  };
  return std::tuple{value(tasks)...};
}

template <class T>
std::optional<std::size_t> wait_any_until(std::vector<task<T>>& tasks, clock::time_point deadline) {
  std::vector<detail::fiber_control*> fibers;
  fibers.reserve(tasks.size());
  for (auto& t : tasks) {
    t.check("wait_any");
    fibers.push_back(t.state_);
  }
  int i = detail::join_any(fibers.data(), fibers.size(), deadline);
  if (i < 0) return std::nullopt;
  return static_cast<std::size_t>(i);
}

}  // namespace fiber
