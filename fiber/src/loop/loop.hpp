// The loop's state and its scheduling: event_loop::impl, one per event_loop.
// Its parts live in their own files: this header (the ready queue, switching,
// fibers' entry, the scheduler's passes, a runtime worker's donation and idle
// wait); event_loop.cpp (the loop's runs, the event_loop API); tasks.cpp
// (spawn, join, cancel, task blocks); park.cpp (park and wake off the fast
// path); io_wait.cpp (what the reactor's events wake, io_wait_fd's kept
// registrations); reactor.hpp (the OS's wait); timers.hpp; loop_stacks.hpp.
//
// The event loop: ready queue, timers, stacks, park/wake, and what the reactor's
// events mean (the reactor itself: loop/reactor.hpp).
//
// Who runs. The thread that calls run() is the *scheduler*: it runs on the
// thread's own stack and only dispatches; every task runs on a fiber. A fiber that
// parks switches straight to the next ready fiber (no trip through the scheduler),
// up to `direct_budget` times in a row; then, or when nothing is ready, it switches
// to the scheduler, which fires due timers, runs post()ed functions and polls the
// reactor (without blocking when fibers are ready, else until the next timer).
//
// Who resumes whom. Every switch goes through transfer_to(): before resuming the
// target, the switching side records in `save_slot` where its context belongs (its
// fiber_control's ctx, `scheduler`, or an idle worker's); the side that wakes up
// stores the context it was handed (the switcher's, suspended) there. A fiber
// that ends returns the next context from its entry function (P0876), and the
// context the resumed side receives is then empty: nothing to store.
//
// Workers. A fiber's context does not end with its task: up to max_idle_workers
// contexts whose task ended wait, with their stacks, in `idle`, and a task that
// starts takes one (if it wants the loop's default stack size) instead of making a
// context. Starting a task is then one switch, with no stack to find or frame to
// build, and the stack it lands on is warm in the cache.
#pragma once

#include "fiber/event_loop.hpp"

#include "fiber/detail/eh_state.hpp"
#include "loop/copied_stacks.hpp"
#include "loop/reactor.hpp"
#include "loop/runtime.hpp"
#include "loop/snapshot.hpp"
#include "loop/shared.hpp"
#include "loop/timers.hpp"
#include "loop_stacks.hpp"
#include "per_thread.hpp"
#include "registry.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <ostream>
#include <sstream>
#include <thread>
#include <system_error>
#include <typeinfo>
#include <unordered_map>

#if FIBER_HAVE_EPOLL
#  include <fcntl.h>
#  include <unistd.h>
#  include "fd_table.hpp"
#endif

// Where a started fiber may move to another thread (spawn_options::migratable):
// where every access to thread-local storage reads the thread pointer afresh (x86
// ELF: through the segment register), so that code resumed on another thread
// than it parked on, the library's inline fast paths included, finds the new
// thread's state (context.hpp, FIBER_DETAIL_TLS).
#if defined(__ELF__) && (defined(__x86_64__) || defined(__i386__))
#  define FIBER_CAN_MIGRATE 1
#else
#  define FIBER_CAN_MIGRATE 0
#endif
namespace fiber {

// ---- the loop -------------------------------------------------------------------

#if FIBER_HAVE_EPOLL
namespace detail {
struct fd_entry;  // an fd's kept registration (the IO section, at the end)
}
#endif

struct event_loop::impl : detail::loop_core {
  explicit impl(event_loop* self, options opts)
      : owner(self),
        default_stack(opts.stack.value_or(detail::stack_kind_from_environment())),
        stacks(opts.stack_size, opts.guarded_stacks),
        copies(stacks.default_size()) {
    if (opts.cooperative_budget < 0)
      throw error("fiber::event_loop: options::cooperative_budget is negative (" +
                  std::to_string(opts.cooperative_budget) + "; 0 turns the budget off)");
    coop_budget = opts.cooperative_budget == 0 ? INT_MAX : opts.cooperative_budget;
    coop_left = coop_budget;
    idle.reserve(max_idle_workers);  // (going idle must not fail)
  }
  ~impl() {
#if FIBER_HAVE_EPOLL
    if (kept_fds.load(std::memory_order_acquire) > 0) drop_kept_fds();
#endif
  }

  event_loop* owner;
  stack_kind default_stack;  // options::stack, else FIBER_STACK, else own
  detail::loop_stacks stacks;
  detail::copied_stacks copies;  // the shared stack of the copied-stack fibers

  // Scheduling (the rest is in detail::loop_core, detail/loop_core.hpp).
  context scheduler;                          // the scheduler, while a fiber runs
  // Direct switches between two passes of the scheduler (timers, post(), IO). A
  // pass costs an epoll_wait when fibers wait for IO; 256 switches take a few
  // microseconds. It also bounds how long a chain of hand-offs (runnext) keeps the
  // queue waiting, and with it how wide a recursive spawn-and-join tree grows:
  // skynet (bench/) held 20,665 stacks at once with 64, 10,203 with 256.
  static constexpr int direct_switches = 256;

  // Every fiber alive (spawned, not ended).
  detail::fiber_control* all_head = nullptr;
  std::size_t alive = 0;

  // Timers (loop/timers.hpp).
  detail::timer_heap timers;

  // Reactor (loop/reactor.hpp).
  detail::reactor reactor;
  std::size_t io_waiting = 0;
  // Fibers of other workers waiting on fds in this loop's epoll (fibers that
  // migrated since their stream was registered here): the loop must poll for them.
  std::atomic<std::size_t> io_waiting_elsewhere{0};
  std::size_t io_waiters() const noexcept {
    return io_waiting + io_waiting_elsewhere.load(std::memory_order_relaxed);
  }
  std::atomic<int> keep_alive{0};
  std::mutex post_mutex;
  std::deque<std::function<void()>> posted;
  std::atomic<bool> has_posted{false};
  bool foreign_round = false;  // inside run_once: a yield always ends the fiber's turn
#if FIBER_HAVE_EPOLL
  // io_wait_fd's registrations kept in this loop's epoll (the IO section): how
  // many fds, and what takes them out when the loop goes (their fds may live on).
  std::atomic<std::size_t> kept_fds{0};
  void drop_kept_fds() noexcept;
  void kept_fd_event(detail::fd_entry* e, const detail::reactor::event& ev) noexcept;
#endif

  // -- ready queue --
  // A fiber is ready (f->queued) when it is in the queue or in `runnext`: the one
  // slot for the fiber a hand-off chose to run next (a joiner whose task ended, or
  // a task its joiner waits for). runnext goes first while the direct budget lasts;
  // the scheduler puts it back at the tail of the queue before it picks, so a chain
  // of hand-offs never keeps the queue waiting for more than one budget.
  // make_ready(), pop_ready() and next_after_park() are loop_core's.
  void make_ready_front(detail::fiber_control* f) noexcept {
    if (f->queued) return;
    f->queued = true;
    f->ready_prev = nullptr;
    f->ready_next = ready_head;
    if (ready_head)
      ready_head->ready_prev = f;
    else
      ready_tail = f;
    ready_head = f;
  }
  // Makes `f` (ready or not) the fiber to run next; runnext's previous fiber goes
  // to the tail of the queue.
  void make_next(detail::fiber_control* f) noexcept {
    if (runnext == f) return;
    if (f->queued) unqueue(f);
    demote_runnext();
    f->queued = true;
    runnext = f;
  }
  void demote_runnext() noexcept {
    if (detail::fiber_control* r = runnext) {
      runnext = nullptr;
      r->queued = false;
      make_ready(r);
    }
  }
  // Takes a ready fiber out of the queue or runnext; it is then not ready.
  void unqueue(detail::fiber_control* f) noexcept {
    FIBER_ASSERT(f->queued, "a fiber taken out of the ready queue is in it (or in runnext)");
    if (runnext == f) {
      runnext = nullptr;
    } else {
      if (f == lane_tail) lane_tail = f->ready_prev;
      (f->ready_prev ? f->ready_prev->ready_next : ready_head) = f->ready_next;
      (f->ready_next ? f->ready_next->ready_prev : ready_tail) = f->ready_prev;
    }
    f->ready_prev = f->ready_next = nullptr;
    f->queued = false;
  }
  bool any_ready() const noexcept { return ready_head || runnext; }

  // -- timers --
  // Ends the parks whose deadline has passed.
  void fire_timers() {
    if (timers.empty()) return;
    const auto now = clock::now();
    while (!timers.empty() && timers.front()->timer_deadline <= now) {
      detail::fiber_control* f = timers.front();
      end_park(f, f->park_by_scope ? detail::reason_scope : detail::reason_timeout, 0);
      timers.remove(f);  // (shared mode: also when a waker claimed it first)
    }
  }

  // -- parking --
  void unlink_waiters(detail::fiber_control* f) noexcept {
    if (shared.load(std::memory_order_relaxed)) {
      detail::unlink_locked(f->park_waiters, f->park_count);
      return;
    }
    for (std::size_t i = 0; i < f->park_count; ++i) {
      detail::waiter& w = f->park_waiters[i];
      if (w.queue) w.queue->remove(w);
    }
  }
  // Ends f's park (a fiber of this loop; on its thread). In shared mode, only if
  // this end wins f's claim: f unlinks its waiters itself when it runs (false if
  // another end won).
  bool end_park(detail::fiber_control* f, int reason, int result, bool next = false) noexcept {
    if (shared.load(std::memory_order_relaxed)) {
      if (!detail::claim(f, reason, result)) return false;
      timers.remove(f);
      if (next)
        make_next(f);
      else
        make_ready(f);
      return true;
    }
    unlink_waiters(f);
    timers.remove(f);
    f->park_waiters = nullptr;
    f->park_count = 0;
    set_state(f, detail::run_state::started);
    f->park_reason = reason;
    f->park_result = result;
    if (next)
      make_next(f);
    else
      make_ready(f);
    return true;
  }

  // -- switching --
  // An unguarded stack (loop_stacks.hpp) is checked whenever its fiber switches
  // out or ends, on that fiber's own stack: its canary region must be intact, and
  // the caller's frame above it. A stack that overflowed is reported as the guard
  // page's handler reports one (overflow.cpp), then the process aborts: the memory
  // below the stack (another fiber's) may be corrupt.
  [[gnu::always_inline]] void check_canary(detail::fiber_control* f) noexcept {
    if (std::uintptr_t* const c = f->canary) {
      const auto frame = reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
      if (!detail::canary_intact(c)) [[unlikely]]
        canary_overwritten(f, "the canary region at the bottom of its unguarded stack was overwritten");
      if (frame < reinterpret_cast<std::uintptr_t>(c) + detail::canary_bytes) [[unlikely]]
        canary_overwritten(f, "its frame lies below the top of the canary region at the bottom of its unguarded stack");
    }
  }
  [[noreturn, gnu::noinline, gnu::cold]] static void canary_overwritten(detail::fiber_control* f,
                                                                        const char* what) noexcept {
    if (f->record) detail::report_stack_overflow(f->record);
    char msg[400];
    std::snprintf(msg, sizeof msg,
                  "fiber: found when the fiber switched out: %s (give it a larger stack: "
                  "fiber::spawn_options::stack_size; guarded stacks catch an overflow as it happens: "
                  "event_loop::options::guarded_stacks)",
                  what);
    detail::fatal(msg);
  }

  // Stores the context we were handed by whoever switched to us.
  void arrived(context&& from) noexcept {
    if (from) *save_slot = std::move(from);  // else the switcher was a fiber that ended
  }

  // Switches from the running flow (a fiber, or the scheduler when current is
  // nullptr) to `next` (nullptr: the scheduler).
  void transfer_to(detail::fiber_control* next);
  // The context to switch to for `next` to run (nullptr: the scheduler): its
  // own; or, for a copied-stack fiber whose bytes are not on the shared stack,
  // the swapper's, which puts them there first (loop/copied_stacks.hpp).
  context& target_of(detail::fiber_control* next) noexcept {
    if (!next) return scheduler;
    if (next->copied && !copies.ready_to_run(next)) [[unlikely]] {
      copies.target = next;
      return copies.swapper;
    }
    return next->ctx;
  }
  // The swapper: on a stack of its own, it stores the context of whoever
  // switched to it, copies the target's bytes onto the shared stack (or makes
  // its context there) and runs it.
  context swapper_main(context&& caller);
  // Maps the shared stack and makes the swapper, on the first copied-stack
  // fiber's start; throws what the allocations throw.
  bool swapper_made = false;
  void prepare_copies() {
    if (swapper_made) return;
    copies.map();
    copies.swapper = context(std::allocator_arg, cached_stack{},
                             [this](context&& caller) { return swapper_main(std::move(caller)); });
    swapper_made = true;
  }
  // The loop running on the calling thread, read afresh (out of line) after a
  // switch that may have resumed the caller on another thread.
  [[gnu::noinline]] static impl* resumed_on() noexcept;

  // `next`, given a context if it has not run yet. A fiber whose stack cannot be
  // allocated ends at once, failed with the allocation error (its get() rethrows
  // it), and the next ready fiber is tried instead; nullptr means the scheduler.
  detail::fiber_control* startable(detail::fiber_control* next) noexcept;

  // A task that could not start ends failed with what the allocation threw. When
  // memory or mappings run out, thousands do, each holding its error until its
  // get(); one exception object serves all those that failed alike (same type,
  // same message), so that failing allocates nothing that stays: the runtime's
  // emergency pool for exceptions, all there is when malloc fails, would run out
  // and end the process in std::terminate.
  std::exception_ptr start_failure;
  const std::type_info* start_failure_type = nullptr;
  std::string start_failure_what;
  void fail_start(detail::fiber_control* f, const std::exception& e) noexcept {
    f->outcome = task_status::failed;
    if (start_failure && *start_failure_type == typeid(e) && start_failure_what == e.what()) {
      f->error = start_failure;
    } else {
      f->error = std::current_exception();
      try {
        start_failure_what = e.what();
        start_failure_type = &typeid(e);
        start_failure = f->error;
      } catch (...) {
        start_failure = nullptr;  // (no memory for the message: keep none)
      }
    }
    finish(f);
  }

  void switch_away() {
    detail::fiber_control* next = next_after_park();
    transfer_to(next);
  }

  // An idle worker: a context whose task ended, waiting on its own stack for the
  // next task that starts (see the top of the file).
  struct worker {
    context ctx;                          // suspended, while idle
    detail::fiber_control* task = nullptr;  // the task it is given
    std::uintptr_t* canary = nullptr;     // its stack's (nullptr: guarded)
    detail::record_base* record = nullptr;  // its fiber's (for fiber::dump())
  };
  // Each keeps the top page of its stack resident (about 4 KiB): after a burst of
  // 10^5 tasks, 1024 of them held RSS at 2.2x its value before, 128 at 1.5x.
  static constexpr std::size_t max_idle_workers = 128;
  std::vector<worker*> idle;

  context fiber_main(detail::fiber_control* f, context&& caller);

  // Runs f's body on the running fiber and records how it ended.
  void run_task(detail::fiber_control* f);

  // Takes `f` off the list of fibers alive.
  void unlink_alive(detail::fiber_control* f) noexcept {
    (f->all_prev ? f->all_prev->all_next : all_head) = f->all_next;
    if (f->all_next) f->all_next->all_prev = f->all_prev;
    f->all_prev = f->all_next = nullptr;
    --alive;
  }

  void finish(detail::fiber_control* f) noexcept;

  // Publishes how f ended (f->outcome) and wakes its joiners.
  void publish_outcome(detail::fiber_control* f) noexcept {
    if (shared.load(std::memory_order_relaxed)) {
      // Joiners may be fibers of other loops, or threads.
      std::lock_guard lock(f->lock);
      f->status.store(f->outcome, std::memory_order_release);
      while (detail::waiter* w = detail::claim_front(f->joiners)) detail::wake(*w);
    } else {
      f->status.store(f->outcome, std::memory_order_release);
      // The first joiner runs next (a hand-off: this fiber has nothing left to do).
      if (detail::waiter* w = f->joiners.front()) {
        f->joiners.remove(*w);
        end_park(w->fiber, detail::reason_woken, w->index, true);
      }
      while (detail::waiter* w = f->joiners.front()) detail::wake(*w);
    }
  }

  static void report_detached(detail::fiber_control* f) noexcept {
    try {
      std::rethrow_exception(f->error);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fiber: a detached task ended with an exception nobody retrieved: %s: %s\n",
                   typeid(e).name(), e.what());
    } catch (...) {
      std::fprintf(stderr, "fiber: a detached task ended with an exception nobody retrieved (not a std::exception)\n");
    }
  }

  // -- the scheduler --
  bool run_posted() {
    if (!has_posted.load(std::memory_order_acquire)) return false;
    std::deque<std::function<void()>> batch;
    {
      std::lock_guard lock(post_mutex);
      batch.swap(posted);
      has_posted.store(false, std::memory_order_relaxed);
    }
    for (auto& fn : batch) fn();
    return !batch.empty();
  }

  // The scheduler's pass: runs what was posted, ends the parks whose deadline
  // passed and, if `io`, collects the IO that is ready without blocking. The
  // fibers a pass wakes join the *lane*, the head of the ready queue up to
  // `lane_tail` (loop_core), in the order they were woken, ahead of the fibers
  // queued otherwise: a due timer or a ready socket then waits for at most one
  // burst of direct switches, not for a queue of any length (10^5 tasks starting).
  void serve_wakers(bool io) {
    ++passes;
    detail::loop_pass(this);
    stacks.tick();  // (free stacks past what the pool keeps, waiting to turn cold)
    wake_into_lane(io);
    // (The whole queue is back: donate() scans it from its head.)
    if (rt && rt->hungry.load(std::memory_order_relaxed) > 0) donate();
  }
  void wake_into_lane(bool io) {
    // Take the rest of the queue off, let the pass append to the lane, put it back.
    detail::fiber_control* const rest = lane_tail ? lane_tail->ready_next : ready_head;
    detail::fiber_control* const rest_tail = rest ? ready_tail : nullptr;
    if (rest) {
      (lane_tail ? lane_tail->ready_next : ready_head) = nullptr;
      ready_tail = lane_tail;
    }
    struct rejoin {  // whatever happens
      impl& L;
      detail::fiber_control* rest;
      detail::fiber_control* rest_tail;
      ~rejoin() {
        L.lane_tail = L.ready_tail;
        if (!rest) return;
        rest->ready_prev = L.ready_tail;
        (L.ready_tail ? L.ready_tail->ready_next : L.ready_head) = rest;
        L.ready_tail = rest_tail;
      }
    } put_back{*this, rest, rest_tail};
    run_posted();
    take_remote();
    fire_timers();
    if (io) poll(false);
  }
  // The fibers woken from other threads join the queue (the lane, in a pass);
  // so do the tasks other workers placed here (spawn_options::worker, place()):
  // the only fibers not started yet that come this way (a fiber is woken only
  // once it has parked, so after it started).
  void take_remote() noexcept {
    if (!has_remote.load(std::memory_order_acquire)) return;
    detail::fiber_control* f = detail::take_remote(this);
    while (f) {
      detail::fiber_control* next = f->remote_next;
      f->remote_next = nullptr;
      if (state_of(f) == detail::run_state::created)
        adopt(f);
      else
        make_ready(f);
      f = next;
    }
  }
  // The fiber the scheduler runs first after a pass: the queue's head; but every
  // `queue_turn`th pass, the first fiber behind the lane, so that fibers woken on
  // every pass cannot keep the others waiting forever.
  static constexpr unsigned queue_turn = 61;
  unsigned passes = 0;
  detail::fiber_control* first_after_pass() noexcept {
    handed_off = false;  // (runnext was demoted before the pass: the pick is the queue's)
    if (passes % queue_turn == 0 && lane_tail && lane_tail->ready_next) {
      detail::fiber_control* f = lane_tail->ready_next;
      unqueue(f);
      return f;
    }
    return pop_ready();
  }

  // Milliseconds until the first timer is due (0 if due), -1 if there is none.
  int ms_to_next_timer() const {
    if (timers.empty()) return -1;
    auto d = timers.front()->timer_deadline - clock::now();
    if (d <= clock::duration::zero()) return 0;
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(d).count();
    return ms > 1000000 ? 1000000 : static_cast<int>(ms);
  }

  // Waits for IO, a post, or the next timer; without blocking when `block` is false;
  // at most `cap_ms` milliseconds when that is not negative. `spun`: the caller
  // has just spun for a remote wake (idle_wait()), so no spin again before sleeping.
  void poll(bool block, int cap_ms = -1, bool spun = false) {
    int timeout_ms = 0;
    if (block) {
      timeout_ms = ms_to_next_timer();
      if (cap_ms >= 0 && (timeout_ms < 0 || timeout_ms > cap_ms)) timeout_ms = cap_ms;
      // Wake for the pass whose tick() gives back the free stacks that wait.
      if (const int tick_ms = stacks.ms_to_tick(); tick_ms >= 0 && (timeout_ms < 0 || timeout_ms > tick_ms))
        timeout_ms = tick_ms;
    }
    struct asleep {  // (a remote wake pokes the loop only while it sleeps: shared.cpp)
      impl& L;
      bool on;
      ~asleep() {
        if (on) L.sleeping.store(false, std::memory_order_relaxed);
      }
    } sleep{*this, timeout_ms != 0 && shared.load(std::memory_order_relaxed)};
    if (sleep.on) {
      if (!spun && spin_for_remote()) return;
      sleeping.store(true, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (has_remote.load(std::memory_order_relaxed) || (rt && rt->injected.load(std::memory_order_relaxed)))
        return;
    }
    detail::reactor::event events[128];
    const int n = reactor.wait(events, 128, timeout_ms);
    for (int i = 0; i < n; ++i) {
      const detail::reactor::event& ev = events[i];
#if FIBER_HAVE_EPOLL
      if (reinterpret_cast<std::uintptr_t>(ev.data) & 1) {  // an io_wait_fd registration (tagged)
        const auto entry = reinterpret_cast<std::uintptr_t>(ev.data) - 1;
        kept_fd_event(reinterpret_cast<detail::fd_entry*>(entry), ev);
        continue;
      }
#endif
      auto* h = static_cast<detail::io_handle*>(ev.data);  // an io::stream's or listener's (io_register)
      detail::op_guard guard(h->lock);
      if (ev.hangup) h->hangup = true;
      if (ev.readable) {
        if (h->readers.empty()) h->readable = true;
        while (detail::waiter* w = detail::claim_front(h->readers)) detail::wake(*w);
      }
      if (ev.writable) {
        if (h->writers.empty()) h->writable = true;
        while (detail::waiter* w = detail::claim_front(h->writers)) detail::wake(*w);
      }
    }
  }

  // Shared mode, before sleeping: a fiber woken from another thread usually comes
  // within microseconds (a reply on a channel); spinning a little first spares
  // both sides a system call (Go's spinning Ms). True if one came.
  // Bounded in time (spin_time), and in a runtime to half of its workers at
  // once (Go's rule: spinners must not take the CPU from the workers that run).
  // A loop whose fibers wait for IO does not spin: its reactor's wait returns as
  // soon as the IO comes, which a spin does not see (it would only delay it), and
  // the spin takes the CPU from whoever makes that IO (in bench/'s echo with
  // work, the client and the other worker, on two cores: the spins were 20% of a
  // 2-worker server's CPU). A wake from another thread then pokes it.
  static constexpr auto spin_time = std::chrono::microseconds(20);
  bool spin_for_remote() noexcept {
    auto came = [&] {
      return has_remote.load(std::memory_order_relaxed) || has_posted.load(std::memory_order_relaxed) ||
             (rt && (rt->injected.load(std::memory_order_relaxed) || rt->stopping.load(std::memory_order_relaxed) ||
                     rt->deadlocked.load(std::memory_order_relaxed)));
    };
    if (io_waiters() > 0) return came();
    if (rt) {
      // (all of them while each worker has a core of its own; with more workers
      // than cores, half of the cores at most: a spinner would take the CPU from
      // the worker it waits for)
      static const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
      const int workers = static_cast<int>(rt->workers.size());
      const int limit = workers <= cores ? workers : std::max(1, cores / 2);
      if (rt->spinning.fetch_add(1, std::memory_order_relaxed) >= limit) {
        rt->spinning.fetch_sub(1, std::memory_order_relaxed);
        return came();
      }
    }
    const auto until = clock::now() + spin_time;
    bool got = false;
    for (unsigned i = 1;; ++i) {
      if (came()) {
        got = true;
        break;
      }
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      if (i % 64 == 0 && clock::now() >= until) break;
    }
    if (rt) rt->spinning.fetch_sub(1, std::memory_order_relaxed);
    return got;
  }

  // Before a deadlock is reported: another thread may be about to run a loop
  // whose fibers share our primitives (two fiber::run on two threads), or to use
  // them from outside any loop. Give it a moment (at most deadlock_grace): false
  // if something came that may wake our fibers.
  static constexpr auto deadlock_grace = std::chrono::milliseconds(100);
  bool deadlock_confirmed() {
    const auto until = clock::now() + deadlock_grace;
    for (;;) {
      detail::loop_pass(this);  // (a quiescent point: a flip by the newcomer may wait for it)
      if (has_remote.load(std::memory_order_acquire) || has_posted.load(std::memory_order_acquire) ||
          detail::others_may_wake())
        return false;
      if (clock::now() >= until) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  [[noreturn]] void deadlock() {
    std::ostringstream msg;
    msg << "fiber::event_loop::run: deadlock: " << alive
        << " fiber(s) parked and nothing can wake them (no timer, no IO wait, no event_loop::keep_alive):";
    list_tasks(msg, max_listed);
    throw deadlock_error(msg.str());
  }

  // Each task alive on a line of its own, oldest first: what it does or waits
  // for. At most `limit` of them.
  static constexpr std::size_t max_listed = 100;
  void list_tasks(std::ostream& out, std::size_t limit) const {
    std::vector<const detail::fiber_control*> tasks;
    for (const detail::fiber_control* f = all_head; f; f = f->all_next) tasks.push_back(f);
    std::size_t shown = 0;
    for (auto it = tasks.rbegin(); it != tasks.rend() && shown < limit; ++it, ++shown) {
      out << "\n  ";
      detail::describe_task(out, **it);
    }
    if (shown < tasks.size()) out << "\n  ... and " << tasks.size() - shown << " more";
  }

  // -- a worker of a runtime (loop/runtime.hpp) --
  detail::runtime_core* rt = nullptr;
  unsigned worker_index = 0;
  std::atomic<bool> hungry{false};  // in idle_wait(): looking for work
  std::atomic<std::uint32_t> poked{0};  // a wake_hungry() poke is on its way (a word: spin_lock says why)

  // Adopts a task from the inject queue: from now on it is this loop's.
  void adopt(detail::fiber_control* f) noexcept {
    FIBER_ASSERT(!f->queued, "a task adopted from the inject queue is in no loop's ready queue");
    FIBER_ASSERT(f->stack_home == 0, "a copied-stack task below its spawner's frames stays on its spawner's worker");
    {
      std::lock_guard lock(f->lock);
      f->loop = owner;
      f->core = this;
    }
    f->all_prev = nullptr;
    f->all_next = all_head;
    if (all_head) all_head->all_prev = f;
    all_head = f;
    ++alive;
    make_ready(f);
  }
  static constexpr std::size_t inject_batch = 64;
  bool take_injected() noexcept {
    if (!rt || rt->injected.load(std::memory_order_relaxed) == 0) return false;
    detail::fiber_control* f = rt->take(inject_batch);
    if (!f) return false;
    if (rt->injected.load(std::memory_order_relaxed) > 0) rt->wake_hungry();  // more for another
    while (f) {
      detail::fiber_control* next = f->ready_next;
      f->ready_next = nullptr;
      adopt(f);
      f = next;
    }
    return true;
  }
  // Gives up to half of the tasks queued here that have not started, and of the
  // ready fibers that may migrate, to the inject queue, for the hungry workers:
  // the oldest first (from the head), as work stealing takes the oldest, which
  // in a recursive computation are the largest (fewer hand-overs, and joins
  // across workers, for the same work). Not while the inject queue still holds
  // tasks: a hungry worker has those to take (a worker that sleeps takes a few
  // microseconds to come; donating at every pass meanwhile gave away 40 times the
  // tasks it needed, and their joiners parked on the other worker).
  static constexpr std::size_t donation_scan = 64;
  void donate() noexcept {
    if (rt->injected.load(std::memory_order_relaxed) != 0) return;
    detail::fiber_control* found[donation_scan];
    std::size_t n = 0;
    std::size_t scanned = 0;
    for (detail::fiber_control* f = ready_head; f && scanned < donation_scan; f = f->ready_next, ++scanned)
      if ((state_of(f) == detail::run_state::created && !f->pinned) || movable(f)) found[n++] = f;
    if (n == 0 || (n == 1 && !runnext && ready_head == found[0] && !found[0]->ready_next)) return;  // our only work
    const std::size_t give = (n + 1) / 2;
    detail::fiber_control* head = nullptr;
    detail::fiber_control* tail = nullptr;
    for (std::size_t i = 0; i < give; ++i) {
      detail::fiber_control* f = found[i];
      FIBER_ASSERT(f->core == this, "a loop donates only its own tasks");
      unqueue(f);
      if (state_of(f) != detail::run_state::created) leave(f);
      unlink_alive(f);
      f->ready_next = nullptr;
      (tail ? tail->ready_next : head) = f;
      tail = f;
    }
    rt->inject(head, tail, give);
  }
  // Whether a ready fiber that has started may go to another worker now: one that
  // opted in, unless it is inside a wait that holds this loop's state other than
  // its timer and its count of IO waiters (a hooked call's wait: io_wait_fd).
  static bool movable(const detail::fiber_control* f) noexcept;
  // A started fiber leaves this loop (on its thread): what it left here (a timer
  // whose wait was ended by a wake, its place among the IO waiters) goes.
  void leave(detail::fiber_control* f) noexcept;
  // A task spawned by another thread for this worker (spawn_options::worker):
  // it comes through the remote queue, as a fiber woken from another thread
  // does, and take_remote() adopts it. False if this worker has left (its
  // runtime shut down): the caller keeps the task.
  bool remote_closed = false;  // under remote_lock: this worker has left
  bool place(detail::fiber_control* f) noexcept {
    f->loop = owner;
    f->core = this;
    f->remote_next = nullptr;
    remote_lock.lock();
    if (remote_closed) {
      remote_lock.unlock();
      return false;
    }
    (remote_tail ? remote_tail->remote_next : remote_head) = f;
    remote_tail = f;
    has_remote.store(true, std::memory_order_relaxed);
    remote_lock.unlock();
    // Dekker with the worker's sleep, as make_ready_anywhere() (loop/shared.cpp).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping.load(std::memory_order_relaxed)) detail::poke(this);
    return true;
  }
  // The worker leaves: no task may be placed here any more. False if one was
  // placed meanwhile (it must run first).
  bool close_remote() noexcept {
    remote_lock.lock();
    const bool empty = remote_head == nullptr;
    if (empty) remote_closed = true;
    remote_lock.unlock();
    return empty;
  }

  // Nothing to run: hungry; spin a little; then sleep in the reactor until
  // something comes (a remote wake, a post, IO, a timer, injected work). Reports
  // the runtime's deadlock (runtime.hpp) when it is the last worker to go idle.
  void idle_wait() {
    rt->hungry.fetch_add(1, std::memory_order_seq_cst);
    hungry.store(true, std::memory_order_seq_cst);
    struct not_hungry {
      impl& L;
      ~not_hungry() {
        L.hungry.store(false, std::memory_order_relaxed);
        L.rt->hungry.fetch_sub(1, std::memory_order_relaxed);
      }
    } done_waiting{*this};
    if (spin_for_remote()) return;
    const bool stuck = timers.empty() && io_waiters() == 0 && keep_alive.load() == 0;
    if (stuck && enter_stuck()) return;
    struct unstuck {
      impl& L;
      bool on;
      ~unstuck() {
        if (!on) return;
        std::lock_guard lock(L.rt->idle_mutex);
        --L.rt->stuck;
      }
    } leave{*this, stuck};
    poll(true, -1, true);  // (spun above already)
    poked.store(0, std::memory_order_relaxed);
  }
  // True if the runtime is deadlocked (this call found it so, or another did).
  bool enter_stuck() {
    std::lock_guard lock(rt->idle_mutex);
    if (rt->deadlocked.load(std::memory_order_relaxed)) return true;
    if (++rt->stuck < rt->workers.size()) return false;
    bool wakeable = rt->injected.load() > 0 || detail::plain_ops_in_flight() > 0 ||
                    detail::running_loop_count() > static_cast<int>(rt->workers.size());
    for (detail::loop_core* w : rt->workers) {
      auto* W = static_cast<impl*>(w);
      if (W->has_remote.load() || W->has_posted.load() || W->any_ready()) wakeable = true;
    }
    if (wakeable) {
      --rt->stuck;
      return false;
    }
    std::ostringstream msg;
    std::size_t parked = 0;
    for (detail::loop_core* w : rt->workers) parked += static_cast<impl*>(w)->alive;
    msg << "fiber::run: deadlock: " << parked << " fiber(s) parked on " << rt->workers.size()
        << " workers and nothing can wake them (no timer, no IO wait, no event_loop::keep_alive):";
    for (std::size_t i = 0; i < rt->workers.size(); ++i) {
      auto* W = static_cast<impl*>(rt->workers[i]);
      msg << "\n  worker " << i << ": " << W->alive << " task(s)";
      std::ostringstream tasks;
      W->list_tasks(tasks, max_listed);
      std::string t = tasks.str();
      for (std::size_t p = 0; (p = t.find('\n', p)) != std::string::npos; p += 3) t.insert(p + 1, "  ");
      msg << t;
    }
    --rt->stuck;
    rt->report = msg.str();
    rt->deadlocked.store(true, std::memory_order_release);
    rt->poke_all();
    return true;
  }

  // The loops alive, for fiber::dump().
  impl* loops_prev = nullptr;
  impl* loops_next = nullptr;

  // Runs until `until` has ended, or (until == nullptr) no fiber is alive.
  void schedule(detail::fiber_control* until);
  // The same for a worker of a runtime; until == nullptr: until the runtime
  // stops and no fiber is left here.
  void schedule_worker(detail::fiber_control* until);
  // One round for a foreign main loop (event_loop::run_once).
  std::size_t run_once(int timeout_ms);
  // Makes this the running loop of the thread for the scope; throws if one runs.
  struct running_scope;
};

// The loop running on this thread (nullptr: none).
inline event_loop::impl* running_loop_impl() noexcept { return static_cast<event_loop::impl*>(detail::running_core); }

// The library's access to a loop's insides (event_loop::internals() is private).
struct detail::loop_internals {
  static event_loop::impl& of(event_loop& loop) noexcept { return loop.internals(); }
};

}  // namespace fiber
