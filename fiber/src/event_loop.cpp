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
#include "fiber/event_loop.hpp"

#include "fiber/detail/eh_state.hpp"
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
  explicit impl(event_loop* self, options opts) : owner(self), stacks(opts.stack_size, opts.guarded_stacks) {
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
  detail::loop_stacks stacks;

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
  void transfer_to(detail::fiber_control* next) {
    detail::fiber_control* self = current;
    next = startable(next);
    if (next == self) return;  // a fiber to itself, or the scheduler with nothing to run
    FIBER_ASSERT(!next || next->core == this, "a loop resumes only its own fibers");
    FIBER_ASSERT(!next || next->ctx, "a fiber resumed is suspended: not running elsewhere, not ended");
    if (self) check_canary(self);
    current = next;
    save_slot = self ? &self->ctx : &scheduler;
    context& target = next ? next->ctx : scheduler;
    // resume() keeps our exceptions in flight ours (eh_state.hpp): a fiber may
    // park in a catch block while others throw and catch.
    context from = std::move(target).resume();
    // A fiber that may migrate can be resumed by another worker's loop.
    impl* const L = self && self->migratable ? resumed_on() : this;
    L->arrived(std::move(from));
    L->coop_left = L->coop_budget;  // our new turn
  }
  // The loop running on the calling thread, read afresh (out of line) after a
  // switch that may have resumed the caller on another thread.
  [[gnu::noinline]] static impl* resumed_on() noexcept;

  // `next`, given a context if it has not run yet. A fiber whose stack cannot be
  // allocated ends at once, failed with the allocation error (its get() rethrows
  // it), and the next ready fiber is tried instead; nullptr means the scheduler.
  detail::fiber_control* startable(detail::fiber_control* next) noexcept {
    // About to start a task taken from the queue while a worker is hungry: the
    // tasks queued behind it are shared first (a chain of direct switches never
    // reaches a pass). Not for a hand-off (runnext: a task its joiner waits for),
    // which keeps the work where it is: donating there too gave skynet on 2
    // workers 1.4 s instead of 0.6 (the tree spread breadth first over both).
    if (next && state_of(next) == detail::run_state::created && !handed_off && rt && rt->hungry.load(std::memory_order_relaxed) > 0) [[unlikely]]
      donate();
    while (next && state_of(next) == detail::run_state::created) {
      if (shared.load(std::memory_order_relaxed)) {
        std::lock_guard guard(next->lock);  // (a canceller of another thread reads it: cancel())
        set_state(next, detail::run_state::started);
      } else {
        set_state(next, detail::run_state::started);
      }
      detail::fiber_control* f = next;
      if (f->migratable) {
        // Its stack goes back to the cache of whichever thread it ends on.
        try {
          f->ctx = context(std::allocator_arg, cached_stack(f->stack_size),
                           [this, f](context&& caller) { return fiber_main(f, std::move(caller)); });
          break;
        } catch (const std::exception& e) {
          fail_start(f, e);
          next = next_after_park();
          continue;
        }
      }
      if (!idle.empty() && f->stack_size == stacks.default_size()) {
        worker* w = idle.back();
        idle.pop_back();
        stacks.from_idle(w->canary == nullptr);
        w->task = f;
        f->canary = w->canary;
        f->ctx = std::move(w->ctx);
        break;
      }
      try {
        f->ctx = context(std::allocator_arg, detail::loop_stack_allocator{&stacks, f, f->stack_size},
                         [this, f](context&& caller) { return fiber_main(f, std::move(caller)); });
        break;
      } catch (const std::exception& e) {
        fail_start(f, e);
        next = next_after_park();
      } catch (...) {
        f->outcome = task_status::failed;
        f->error = std::current_exception();
        finish(f);
        next = next_after_park();
      }
    }
    return next;
  }

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

  context fiber_main(detail::fiber_control* f, context&& caller) {
    arrived(std::move(caller));
    worker self;
    detail::record_base* const record = FIBER_DETAIL_THREAD_STATE.running;  // this fiber's
    const std::uint64_t worker_id = record->id;
    self.record = record;
    for (;;) {
      // While the task runs, the fiber has its id and name (this_fiber::id(),
      // fiber::dump(), debuggers).
      record->id = f->id;
      if (f->name[0] || record->name[0]) std::memcpy(record->name, f->name, sizeof record->name);
      record->task = f;
      f->record = record;
      run_task(f);
      record->task = nullptr;
      f->record = nullptr;
      self.canary = f->canary;
      const bool migratable = f->migratable;
      const bool reusable = f->stack_size == stacks.default_size() && !migratable;
      // (A task that may migrate ends on whichever loop runs it now.)
      impl* const L = migratable ? resumed_on() : this;
      L->finish(f);  // may free f
      if (L->rt && L->rt->hungry.load(std::memory_order_relaxed) > 0) L->donate();
      detail::fiber_control* next = L->startable(L->next_after_park());
      L->current = next;
      context& target = next ? next->ctx : L->scheduler;
      if (!reusable || tearing_down || idle.size() >= max_idle_workers) {
        // End; this fiber's stack is freed by whoever arrives.
        L->save_slot = nullptr;
        return std::move(target);
      }
      // Wait for a task to start on this stack. Destroying the loop destroys the
      // context here: the forced unwind leaves through this frame.
      idle.push_back(&self);
      stacks.to_idle(self.canary == nullptr);
      self.task = nullptr;
      record->id = worker_id;
      record->name[0] = '\0';
      save_slot = &self.ctx;
      arrived(std::move(target).resume());
      f = self.task;
    }
  }

  // Runs f's body on the running fiber and records how it ended.
  void run_task(detail::fiber_control* f) {
    detail::eh_state::clear(eh_globals);
    coop_left = coop_budget;
    if (f->cancel_pending) {
      // Cancelled before it ever ran: the body never starts.
      f->cancel_pending = false;
      f->outcome = task_status::cancelled;
      f->error = std::make_exception_ptr(cancelled{});
    } else {
      try {
        f->run_body();
        f->outcome = task_status::succeeded;
      } catch (const detail::forced_unwind&) {
        throw;  // the loop is being destroyed: let the context unwind us
      } catch (const cancelled&) {
        f->outcome = task_status::cancelled;
        f->error = std::current_exception();
      } catch (...) {
        f->outcome = task_status::failed;
        f->error = std::current_exception();
      }
    }
    check_canary(f);
  }

  // Takes `f` off the list of fibers alive.
  void unlink_alive(detail::fiber_control* f) noexcept {
    (f->all_prev ? f->all_prev->all_next : all_head) = f->all_next;
    if (f->all_next) f->all_next->all_prev = f->all_prev;
    f->all_prev = f->all_next = nullptr;
    --alive;
  }

  void finish(detail::fiber_control* f) noexcept {
    set_state(f, detail::run_state::ended);
    publish_outcome(f);
    unlink_alive(f);
    if (f->detached.load(std::memory_order_acquire) && f->status.load(std::memory_order_relaxed) == task_status::failed)
      report_detached(f);
    f->ctx = context{};  // empty already: the fiber is running
    f->loop = nullptr;
    detail::release(f);  // the loop's reference
  }

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

namespace detail {
constinit thread_local loop_core* running_core = nullptr;
constinit thread_local bool thread_shared = true;
}

namespace {
event_loop::impl* running_loop_impl() noexcept { return static_cast<event_loop::impl*>(detail::running_core); }
}

// The library's access to a loop's insides (event_loop::internals() is private).
struct detail::loop_internals {
  static event_loop::impl& of(event_loop& loop) noexcept { return loop.internals(); }
};

struct event_loop::impl::running_scope {
  running_scope(impl& L, const char* operation) : loop(L) {
    if (running_loop_impl() == &L)
      throw error(std::string(operation) +
                  ": the loop is already running on this thread (called from one of its fibers, or from a function "
                  "it runs: a loop cannot run inside itself)");
    if (running_loop_impl()) throw error(std::string(operation) + ": another event_loop is running on this thread");
    const detail::thread_state* expected = nullptr;
    if (!L.runner.compare_exchange_strong(expected, &FIBER_DETAIL_THREAD_STATE, std::memory_order_acquire))
      throw error(std::string(operation) +
                  ": the loop is running on another thread (a loop runs on one thread at a time; other threads may "
                  "only post() to it)");
    detail::running_core = &L;
    L.eh_globals = detail::eh_state::globals();  // a loop may be run by another thread than made it
    detail::loop_started(&L);
    detail::thread_shared = L.shared.load(std::memory_order_relaxed);
    L.take_remote();
  }
  ~running_scope() {
    detail::loop_stopped(&loop);
    detail::running_core = nullptr;
    detail::thread_shared = true;
    loop.runner.store(nullptr, std::memory_order_release);
  }
  impl& loop;
  running_scope(const running_scope&) = delete;
  running_scope& operator=(const running_scope&) = delete;
};

namespace {
// Keeps a task alive (one reference more) while a scheduler looks at it.
struct held_task {
  detail::fiber_control* f;
  explicit held_task(detail::fiber_control* task) noexcept : f(task) {
    if (f) ++f->refs;
  }
  ~held_task() {
    if (f) detail::release(f);
  }
  held_task(const held_task&) = delete;
  held_task& operator=(const held_task&) = delete;
};
}  // namespace

void event_loop::impl::schedule(detail::fiber_control* until) {
  if (rt) {
    schedule_worker(until);
    return;
  }
  running_scope running(*this, "fiber::event_loop::run");
  // Keep `until` alive while we look at it.
  const held_task keep_until(until);
  for (;;) {
    if (until ? until->status != task_status::pending : alive == 0) return;
    serve_wakers(any_ready() && io_waiters());
    demote_runnext();  // the queue's turn: see "ready queue"
    if (detail::fiber_control* f = first_after_pass()) {
      direct_budget = direct_switches;
      transfer_to(f);
      continue;
    }
    if (until ? until->status != task_status::pending : alive == 0) return;
    if (timers.empty() && io_waiters() == 0 && keep_alive.load() == 0 && !has_posted.load() &&
        !has_remote.load(std::memory_order_acquire) &&
        !(shared.load(std::memory_order_relaxed) && detail::others_may_wake()) && deadlock_confirmed())
      deadlock();
    poll(true);
  }
}

void event_loop::impl::schedule_worker(detail::fiber_control* until) {
  running_scope running(*this, "fiber::run");
  const held_task keep_until(until);
  auto done = [&] {
    return until ? until->status.load(std::memory_order_acquire) != task_status::pending
                 : rt->stopping.load(std::memory_order_acquire) && alive == 0 && rt->injected.load() == 0;
  };
  // Leaving for good (until == nullptr): the tasks placed here first.
  auto leave = [&] { return done() && (until || close_remote()); };
  for (;;) {
    if (leave()) return;
    serve_wakers(any_ready() && io_waiters());
    demote_runnext();
    if (detail::fiber_control* f = first_after_pass()) {
      direct_budget = direct_switches;
      transfer_to(f);
      continue;
    }
    if (take_injected()) continue;
    if (leave()) return;
    idle_wait();
    if (rt->deadlocked.load(std::memory_order_acquire)) {
      if (worker_index == 0) throw deadlock_error(rt->report);
      return;
    }
  }
}

std::size_t event_loop::impl::run_once(int timeout_ms) {
  running_scope running(*this, "fiber::event_loop::run_once");
  struct round {
    bool& flag;
    explicit round(bool& f) : flag(f) { flag = true; }
    ~round() { flag = false; }
  } in_round(foreign_round);
  detail::loop_pass(this);
  run_posted();
  take_remote();
  fire_timers();
  // Always collect what epoll has (a post's eventfd, edges on registered fds),
  // or native_handle() would stay readable and the foreign loop would spin.
  poll(!any_ready() && timeout_ms != 0, timeout_ms);
  run_posted();
  take_remote();
  fire_timers();
  // Each fiber alive at the start gets at most one turn (a turn may run up to the
  // direct-switch budget of others): a round always ends.
  for (std::size_t turns = alive; turns > 0; --turns) {
    demote_runnext();
    detail::fiber_control* f = pop_ready();
    if (!f) break;
    direct_budget = direct_switches;
    transfer_to(f);
  }
  return alive;
}

// ---- event_loop ---------------------------------------------------------------

namespace {
// Every event_loop alive, for fiber::dump(); never destroyed (loops may outlive statics).
struct loop_list {
  std::mutex mutex;
  event_loop::impl* head = nullptr;
};
loop_list& loops() {
  static loop_list* l = new loop_list;
  return *l;
}
}  // namespace

event_loop::event_loop() : event_loop(options{}) {}
event_loop::event_loop(options opts) : impl_(std::make_unique<impl>(this, opts)) {
  loop_list& l = loops();
  std::lock_guard lock(l.mutex);
  impl_->loops_next = l.head;
  if (l.head) l.head->loops_prev = impl_.get();
  l.head = impl_.get();
}

event_loop::~event_loop() {
  impl& L = *impl_;
  // Its run() is on some stack: the loop cannot go away under it.
  if (const detail::thread_state* r = L.runner.load(std::memory_order_acquire)) {
    detail::fatal(r == &FIBER_DETAIL_THREAD_STATE
                      ? "fiber::event_loop::~event_loop: the loop is destroyed while it runs, from one of its own "
                        "fibers or from a function it runs (destroy it after run() returns)"
                      : "fiber::event_loop::~event_loop: the loop is destroyed on one thread while it runs on "
                        "another (destroy it after run() returns)");
  }
  {
    loop_list& l = loops();
    std::lock_guard lock(l.mutex);
    (L.loops_prev ? L.loops_prev->loops_next : l.head) = L.loops_next;
    if (L.loops_next) L.loops_next->loops_prev = L.loops_prev;
  }
  L.tearing_down = true;
  L.stacks.closing = true;  // (what the fibers free now is unmapped with the pool: nothing to give back first)
  // Fibers still alive: those never started just end; suspended ones are unwound
  // by destroying their context.
  while (detail::fiber_control* f = L.all_head) {
    ++f->refs;
    if (f->queued) L.unqueue(f);
    L.unlink_waiters(f);
    L.timers.remove(f);
    f->park_waiters = nullptr;
    f->park_count = 0;
    if (state_of(f) == detail::run_state::parked) set_state(f, detail::run_state::started);
    {
      // While its stack unwinds, the fiber is the running one (its destructors may
      // unlock a fiber::mutex, which checks who calls). Restore what was running:
      // a loop may be destroyed inside a fiber of another loop.
      context c = std::move(f->ctx);
      event_loop::impl* const saved_loop = running_loop_impl();
      detail::fiber_control* const saved_current = L.current;
      const bool saved_shared = detail::thread_shared;
      detail::running_core = impl_.get();
      detail::thread_shared = L.shared.load(std::memory_order_relaxed);
      L.current = f;
      c = context{};  // unwinds the fiber's stack
      L.current = saved_current;
      detail::running_core = saved_loop;
      detail::thread_shared = saved_shared;
    }
    if (f->status.load(std::memory_order_relaxed) == task_status::pending) {
      f->outcome = task_status::cancelled;
      f->error = std::make_exception_ptr(cancelled{});
      if (L.shared.load(std::memory_order_relaxed)) {
        L.publish_outcome(f);  // (joiners of other loops, or threads, must not wait forever)
      } else {
        f->status.store(task_status::cancelled, std::memory_order_release);
      }
    }
    if (f->all_prev || L.all_head == f) {
      L.unlink_alive(f);
      f->loop = nullptr;
      detail::release(f);  // the loop's reference
    }
    detail::release(f);
  }
  // Idle workers: their contexts unwind out of fiber_main and free their stacks.
  while (!L.idle.empty()) {
    impl::worker* w = L.idle.back();
    L.idle.pop_back();
    L.stacks.from_idle(w->canary == nullptr);
    context c = std::move(w->ctx);
    c = context{};
  }
}

event_loop* event_loop::current() noexcept { return running_loop_impl() ? running_loop_impl()->owner : nullptr; }

void event_loop::run() { impl_->schedule(nullptr); }

std::size_t event_loop::run_once(std::chrono::milliseconds timeout) {
  const auto ms = timeout.count();
  return impl_->run_once(ms < 0 ? -1 : ms > 1000000 ? 1000000 : static_cast<int>(ms));
}

int event_loop::native_handle() const noexcept { return impl_->reactor.native_handle(); }

int event_loop::next_timeout_ms() const {
  const impl& L = *impl_;
  if (L.any_ready() || L.has_posted.load(std::memory_order_acquire)) return 0;
  return L.ms_to_next_timer();
}
void event_loop::run_until_done(detail::fiber_control* f) { impl_->schedule(f); }

void event_loop::cancel_all() {
  if (detail::runs_elsewhere(impl_.get()))
    throw error("fiber::event_loop::cancel_all: the loop runs on another thread (post() the call to it)");
  // A worker's tasks include those placed on it and still on their way
  // (spawn_options::worker): take them in first.
  if (impl_->rt) impl_->take_remote();
  for (detail::fiber_control* f = impl_->all_head; f; f = f->all_next) detail::cancel(f);
}

void event_loop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(impl_->post_mutex);
    impl_->posted.push_back(std::move(fn));
    impl_->has_posted.store(true, std::memory_order_release);
  }
  impl_->reactor.poke();
}

namespace this_runtime {
unsigned workers() noexcept {
  const event_loop::impl* L = running_loop_impl();
  if (!L) return 0;
  return L->rt ? static_cast<unsigned>(L->rt->workers.size()) : 1;
}
unsigned worker() noexcept {
  const event_loop::impl* L = running_loop_impl();
  return L && L->rt ? L->worker_index : 0;
}
}  // namespace this_runtime

namespace detail {
void make_worker(event_loop& loop, runtime_core* rt, unsigned index) noexcept {
  event_loop::impl& L = detail::loop_internals::of(loop);
  L.rt = rt;
  L.worker_index = index;
  L.shared.store(true, std::memory_order_relaxed);  // (its fibers meet the other workers' from the start)
  rt->workers[index] = &L;
}
bool core_is_worker(loop_core* core) noexcept { return static_cast<event_loop::impl*>(core)->rt != nullptr; }
bool worker_hungry(loop_core* core) noexcept { return static_cast<event_loop::impl*>(core)->hungry.load(); }
bool worker_sleeping(loop_core* core) noexcept { return core->sleeping.load(); }
bool worker_claim_poke(loop_core* core) noexcept {
  return !static_cast<event_loop::impl*>(core)->poked.exchange(1);
}
std::size_t worker_alive(loop_core* core) noexcept { return static_cast<event_loop::impl*>(core)->alive; }

void poke(loop_core* core) noexcept { static_cast<event_loop::impl*>(core)->reactor.poke(); }

bool loop_runs_elsewhere(const event_loop& loop) noexcept {
  return runs_elsewhere(&detail::loop_internals::of(const_cast<event_loop&>(loop)));
}

std::vector<loop_core*> loops_running_single() {
  std::vector<loop_core*> out;
  loop_list& l = loops();
  std::lock_guard lock(l.mutex);
  for (event_loop::impl* L = l.head; L; L = L->loops_next)
    if (L->runner.load(std::memory_order_acquire) && !L->shared.load(std::memory_order_acquire)) out.push_back(L);
  return out;
}
}  // namespace detail

event_loop::keep_alive::keep_alive(event_loop& loop) : loop_(loop) { ++loop_.impl_->keep_alive; }
event_loop::keep_alive::~keep_alive() {
  --loop_.impl_->keep_alive;
  loop_.post([] {});  // let a loop that waits only for us notice
}

namespace detail {

std::vector<loop_snapshot> snapshot_loops() {
  std::vector<loop_snapshot> out;
  loop_list& l = loops();
  std::lock_guard lock(l.mutex);
  const thread_state* const here = &FIBER_DETAIL_THREAD_STATE;
  for (const event_loop::impl* L = l.head; L; L = L->loops_next) {
    loop_snapshot& s = out.emplace_back();
    s.loop = reinterpret_cast<std::uintptr_t>(L->owner);
    const thread_state* const r = L->runner.load(std::memory_order_acquire);
    s.where = r == here ? loop_snapshot::runner::this_thread
              : r       ? loop_snapshot::runner::other_thread
                        : loop_snapshot::runner::none;
    s.alive = L->alive;
    if (s.where == loop_snapshot::runner::other_thread) continue;
    for (const fiber_control* f = L->all_head; f; f = f->all_next)
      if (state_of(f) == detail::run_state::created) s.not_started.push_back(f);
    std::reverse(s.not_started.begin(), s.not_started.end());  // (the list is newest first)
    if (L->runnext) s.ready.push_back(L->runnext);
    for (const fiber_control* f = L->ready_head; f; f = f->ready_next) s.ready.push_back(f);
    s.idle_workers = L->idle.size();
    for (std::size_t i = 0; i < L->idle.size() && i < loop_snapshot::idle_shown; ++i)
      s.idle_ids.push_back(L->idle[i]->record->id);
  }
  return out;
}

}  // namespace detail

std::size_t event_loop::alive() const noexcept { return impl_->alive; }
std::size_t event_loop::guarded_stacks() const noexcept { return impl_->stacks.guarded_live; }
std::size_t event_loop::unguarded_stacks() const noexcept { return impl_->stacks.plain_live; }

// ---- detail: tasks ----------------------------------------------------------------

namespace detail {
void bad_state_change(const fiber_control* f, run_state from, run_state to) noexcept {
  static const char* const names[] = {"created", "started", "parked", "ended"};
  char msg[200];
  std::snprintf(msg, sizeof msg, "fiber: invariant broken: fiber %llu went from %s to %s (run_state, loop_core.hpp)",
                static_cast<unsigned long long>(f->id), names[static_cast<int>(from)], names[static_cast<int>(to)]);
  fatal(msg);
}
}  // namespace detail

namespace detail {

namespace {
// Sized deallocation where the compiler provides it (Clang enables it only with
// -fsized-deallocation).
inline void sized_delete(void* p, [[maybe_unused]] std::size_t size) noexcept {
#if defined(__cpp_sized_deallocation)
  ::operator delete(p, size);
#else
  ::operator delete(p);
#endif
}

// Freed task blocks of up to max_size bytes, kept per thread by size class (64
// bytes apart), at most max_count per class; the rest go back to the heap. A block
// freed on another thread than allocated it joins that thread's cache: they all
// come from ::operator new.
class task_block_cache {
 public:
  static constexpr std::size_t granule = 64;
  static constexpr std::size_t classes = 8;  // up to 512 bytes
  static constexpr std::size_t max_count = 256;

  ~task_block_cache() {
    for (std::size_t c = 0; c < classes; ++c)
      while (node* n = free_[c]) {
        free_[c] = n->next;
        sized_delete(static_cast<void*>(n), (c + 1) * granule);
      }
  }
  static std::size_t size_class(std::size_t size) noexcept { return (size - 1) / granule; }

  // Task blocks alive (made on this thread, less those freed on it), and their
  // peak since the heap was last trimmed. When a burst of tasks ends, their blocks
  // are free chunks scattered through the C heap, which glibc gives back only at
  // its top: once the blocks alive fall to an eighth of a peak of at least
  // trim_peak, give_back_free_memory() gives back every free page (malloc_trim; a
  // few ms, once per burst;
  // loop_stacks.hpp does the same as the burst's stacks go back, while the task
  // handles may still hold their blocks).
  static constexpr std::ptrdiff_t trim_peak = 4096;
  void made() noexcept {
    if (++alive_ > peak_) peak_ = alive_;
  }
  void freed() noexcept {
    if (--alive_ < peak_ / 8 && peak_ >= trim_peak) [[unlikely]] {
      peak_ = alive_;
      give_back_free_memory();
    }
  }

  void* take(std::size_t c) noexcept {
    node* n = free_[c];
    if (n) {
      free_[c] = n->next;
      --count_[c];
    }
    return n;
  }
  bool give(void* p, std::size_t c) noexcept {
    if (count_[c] >= max_count) return false;
    node* n = static_cast<node*>(p);
    n->next = free_[c];
    free_[c] = n;
    ++count_[c];
    return true;
  }

 private:
  struct node {
    node* next;
  };
  node* free_[classes] = {};
  std::size_t count_[classes] = {};
  std::ptrdiff_t alive_ = 0;
  std::ptrdiff_t peak_ = 0;
};
FIBER_PER_THREAD(task_block_cache, task_blocks)
}  // namespace

void* fiber_control::operator new(std::size_t size) {
  if (size == 0 || size > task_block_cache::granule * task_block_cache::classes) return ::operator new(size);
  const std::size_t c = task_block_cache::size_class(size);
  task_block_cache& cache = task_blocks();
  cache.made();
  if (void* p = cache.take(c)) return p;
  try {
    return ::operator new((c + 1) * task_block_cache::granule);
  } catch (...) {
    cache.freed();
    throw;
  }
}

void fiber_control::operator delete(void* p, std::size_t size) noexcept {
  if (size == 0 || size > task_block_cache::granule * task_block_cache::classes) {
    sized_delete(p, size);
    return;
  }
  const std::size_t c = task_block_cache::size_class(size);
  task_block_cache& cache = task_blocks();
  if (!cache.give(p, c)) sized_delete(p, (c + 1) * task_block_cache::granule);
  cache.freed();
}

void submit(event_loop& loop, fiber_control* f, const spawn_options& opts) {
  const std::size_t stack_size = opts.stack_size;
  event_loop::impl& L = detail::loop_internals::of(loop);
  if (L.tearing_down) {
    delete f;
    throw error("fiber::spawn: the event_loop is being destroyed");
  }
  if (&L != running_core && runs_elsewhere(&L)) {  // (the first test: the common case, cheaply)
    delete f;
    throw error(
        "fiber::spawn: the event_loop runs on another thread (spawn from that thread, e.g. in a function given to "
        "event_loop::post())");
  }
  f->id = new_fiber_id();
  const std::size_t name_size = std::min(opts.name.size(), sizeof f->name - 1);
  if (name_size) std::memcpy(f->name, opts.name.data(), name_size);
  f->name[name_size] = '\0';
  f->loop = &loop;
  f->core = &L;
  f->stack_size = stack_size ? stack_size : L.stacks.default_size();
  if (f->stack_size < min_stack_size) {
    delete f;
    throw error("fiber::spawn: stack_size " + std::to_string(stack_size) + " is below fiber::min_stack_size (" +
                std::to_string(min_stack_size) + ")");
  }
  f->refs.store(2, std::memory_order_relaxed);  // the task handle and the loop
  f->migratable = FIBER_CAN_MIGRATE && opts.migratable && opts.worker == spawn_options::any_worker && L.rt &&
                  L.rt->workers.size() > 1;
  if (opts.worker != spawn_options::any_worker) {
    // Placed on a worker (spawn_options::worker): never donated nor injected.
    const std::size_t workers = L.rt ? L.rt->workers.size() : 1;
    if (opts.worker >= workers) {
      delete f;
      throw error("fiber::spawn: spawn_options::worker is " + std::to_string(opts.worker) + ", but the runtime has " +
                  std::to_string(workers) + " worker(s) (fiber::this_runtime::workers())");
    }
    f->pinned = true;
    if (L.rt && opts.worker != L.worker_index) {
      if (static_cast<event_loop::impl*>(L.rt->workers[opts.worker])->place(f)) return;
      f->loop = &loop;  // (that worker has left: the runtime shuts down; it runs here)
      f->core = &L;
    }
  }
  f->all_next = L.all_head;
  if (L.all_head) L.all_head->all_prev = f;
  L.all_head = f;
  ++L.alive;
  if (opts.eager && running_loop_impl() == &L && L.current) {
    // Run it now; the spawner is next (eager tasks).
    L.make_ready_front(L.current);
    L.transfer_to(f);
  } else {
    L.make_ready(f);
  }
}

void release(fiber_control* f) noexcept {
  if (shared_mode()) {
    if (f->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete f;
    return;
  }
  // Single mode: no other thread holds a reference (release_handle() below).
  const int n = f->refs.load(std::memory_order_relaxed);
  f->refs.store(n - 1, std::memory_order_relaxed);
  if (n == 1) delete f;
}

void release_handle(fiber_control* f) noexcept {
  // From a thread outside any loop: the loops turn shared first (their own
  // releases then count atomically too).
  const bool plain = !running_core;
  if (plain) plain_enter();
  if (f->status.load(std::memory_order_acquire) == task_status::pending)
    f->detached.store(true, std::memory_order_release);
  release(f);
  if (plain) plain_exit();
}

namespace {
loop_core* core_of(fiber_control* f) noexcept;
// On f's loop's thread.
void cancel_here(fiber_control* f) noexcept {
  if (f->status.load(std::memory_order_relaxed) != task_status::pending || !f->loop) return;
  if (f->migratable && core_of(f) != running_core) {
    cancel(f);  // it moved to another worker meanwhile: ask that one
    return;
  }
  event_loop::impl& L = detail::loop_internals::of(*f->loop);
  if (!(state_of(f) == run_state::parked && !f->park_shielded && L.end_park(f, reason_cancelled, 0)))
    f->cancel_pending = true;  // (shared mode: also when a wake won the claim; the next park delivers it)
}
}  // namespace

void cancel(fiber_control* f) noexcept {
  if (f->status.load(std::memory_order_acquire) != task_status::pending) return;
  loop_core* core;
  {
    op_guard guard(f->lock);
    if (state_of(f) == run_state::created) {  // (it may start on another worker: it finds this when it does)
      f->cancel_pending.store(true, std::memory_order_relaxed);
      return;
    }
    core = f->core;  // (one that may migrate: cancel_here() follows it)
  }
  if (core == running_core || !runs_elsewhere(core)) {
    cancel_here(f);
    return;
  }
  // From another thread: its loop's thread does it (a cancellation touches the
  // fiber's park, which only that thread may).
  f->refs.fetch_add(1, std::memory_order_relaxed);
  try {
    static_cast<event_loop::impl*>(core)->owner->post([f] {
      cancel_here(f);
      release(f);
    });
  } catch (...) {
    release(f);
    fatal("fiber::task::cancel: out of memory while asking the task's loop to cancel it");
  }
}

void rethrow_outcome(fiber_control* f) {
  if (f->status == task_status::failed || f->status == task_status::cancelled) std::rethrow_exception(f->error);
}

void throw_no_loop(const char* operation) {
  throw error(std::string(operation) + ": no fiber::event_loop is running on this thread");
}
void throw_empty_task(const char* operation) {
  throw error(std::string("fiber::task::") + operation + ": the task handle is empty (moved from, or detached)");
}
void throw_task_wrong_thread(const char* operation) {
  throw error(std::string("fiber::task::") + operation +
              ": called on another thread than the one running the task's event_loop (a task handle belongs to its "
              "loop's thread while the loop runs; post() to it)");
}

void check_waker_slow(const loop_core* core, const char* operation) {
  if (!runs_elsewhere(core)) return;  // its loop's thread, or a loop that runs nowhere
  throw error(std::string(operation) +
              (running_core ? ": a fiber of an event_loop running on another thread waits on it (it belongs to that "
                              "loop's thread)"
                            : ": not called from a fiber of a running event_loop, and a fiber of an event_loop "
                              "running on another thread waits on it (it belongs to that loop's thread)"));
}

void require_fiber(const char* operation) {
  if (!running()) {
    throw error(std::string(operation) +
                ": not called from a fiber of a running event_loop (the caller is not a fiber: waiting here would "
                "block its thread forever)");
  }
}

namespace {
void unlink_all(waiter* waiters, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i)
    if (waiters[i].queue) waiters[i].queue->remove(waiters[i]);
}
}  // namespace

// How a park that did not end by a wake ends: a result, or an exception.
int resume_shared(fiber_control* self);
int park_outcome(fiber_control* self) {
  if (self->claim.load(std::memory_order_acquire) != 0) return resume_shared(self);
  switch (self->park_reason) {
    case reason_woken:
      return self->park_result;
    case reason_timeout:
      return park_timeout;
    case reason_scope:
      throw timed_out{};
    case reason_cancelled:
      throw cancelled{};
    default:
      fatal("fiber: a parked fiber resumed without being woken");
  }
}

// Shared mode: a fiber runs again after its park was claimed (scheduler.hpp,
// "Threads"): it unlinks its other waiters and its timer, then reports how the
// park ended, as the claim word says.
int resume_shared(fiber_control* self) {
  const std::uint32_t c = self->claim.load(std::memory_order_acquire);
  unlink_locked(self->park_waiters, self->park_count);
  if (event_loop::impl* L = event_loop::impl::resumed_on()) L->timers.remove(self);
  self->park_waiters = nullptr;
  self->park_count = 0;
  set_state(self, run_state::started);
  self->claim.store(0, std::memory_order_release);
  self->park_reason = static_cast<int>(c >> 24);
  self->park_result = static_cast<int>(c & 0xffffffu);
  return park_outcome(self);
}

namespace {
// The shared-mode park (scheduler.hpp, "Threads"): the waiters were linked, with
// their fiber and index, under their primitives' locks, so a waker of another
// thread may have claimed us already. Whatever would end the park here (a
// pending cancellation, a deadline passed) must win the claim first; if a waker
// won, it is on its way to our remote queue: switch out and be woken.
int park_shared(event_loop::impl* L, fiber_control* self, waiter* waiters, std::size_t count,
                clock::time_point deadline, const char* operation, std::uintptr_t object) {
  if (!L) return park_thread(waiters, count, deadline);  // a thread outside any loop
  auto give_up = [&](int reason) {
    if (!claim(self, reason, 0)) return false;
    unlink_locked(waiters, count);
    self->claim.store(0, std::memory_order_release);
    return true;
  };
  if (!self) {  // (check_may_wait() keeps the primitives from linking waiters here)
    unlink_locked(waiters, count);
    require_fiber(operation);
    return park_timeout;  // (not reached)
  }
  if (L->tearing_down && give_up(reason_cancelled))
    throw error(std::string(operation) +
                ": called while its event_loop is being destroyed (it unwinds its fibers: nothing can wait now)");
  const bool shielded = self->park_shielded;
  bool by_scope = false;
  if (!shielded && self->scope_deadline <= deadline) {
    deadline = self->scope_deadline;
    by_scope = deadline != no_deadline;
  }
  if (!shielded && self->cancel_pending && give_up(reason_cancelled)) {
    self->cancel_pending = false;
    throw cancelled{};
  }
  if (deadline != no_deadline && (count > 0 || by_scope) && deadline <= clock::now() &&
      give_up(by_scope ? reason_scope : reason_timeout)) {
    if (by_scope) throw timed_out{};
    return park_timeout;
  }
  self->park_operation = operation;
  self->park_object = object;
  self->park_waiters = waiters;
  self->park_count = count;
  set_state(self, run_state::parked);
  self->park_reason = reason_pending;
  self->park_by_scope = by_scope;
  if (deadline != no_deadline && self->claim.load(std::memory_order_relaxed) == 0) L->timers.add(self, deadline);
  L->switch_away();
  return resume_shared(self);
}
}  // namespace

// Every park but the common one (a fiber of a running loop, nothing pending, no
// deadline of its own or of a scope): checks, pending cancellation, deadlines.
int park_slow(waiter* waiters, std::size_t count, clock::time_point deadline, const char* operation,
              std::uintptr_t object) {
  event_loop::impl* L = running_loop_impl();
  fiber_control* self = L ? L->current : nullptr;
  if (!operation) operation = "fiber: a blocking operation";
  if (shared_mode()) return park_shared(L, self, waiters, count, deadline, operation, object);
  if (!self) {
    unlink_all(waiters, count);
    require_fiber(operation);
  }
  if (L->tearing_down) {
    unlink_all(waiters, count);
    throw error(std::string(operation) +
                ": called while its event_loop is being destroyed (it unwinds its fibers: nothing can wait now)");
  }
  const bool shielded = self->park_shielded;
  if (!shielded && self->cancel_pending) {
    self->cancel_pending = false;
    unlink_all(waiters, count);
    throw cancelled{};
  }
  bool by_scope = false;
  if (!shielded && self->scope_deadline <= deadline) {
    deadline = self->scope_deadline;
    by_scope = deadline != no_deadline;
  }
  // A deadline already past ends the wait at once; but a plain sleep (nothing to
  // wait for) still goes through the timers, so that sleepers wake in deadline
  // order even when one is late to fall asleep.
  if (deadline != no_deadline && (count > 0 || by_scope) && deadline <= clock::now()) {
    unlink_all(waiters, count);
    if (by_scope) throw timed_out{};
    return park_timeout;
  }
  for (std::size_t i = 0; i < count; ++i) {
    waiters[i].fiber = self;
    waiters[i].index = static_cast<int>(i);
  }
  self->park_operation = operation;
  self->park_object = object;
  self->park_waiters = waiters;
  self->park_count = count;
  set_state(self, run_state::parked);
  self->park_reason = reason_pending;
  self->park_by_scope = by_scope;
  if (deadline != no_deadline) L->timers.add(self, deadline);
  L->switch_away();
  return park_outcome(self);
}

void wake_slow(fiber_control* f, int index) noexcept {
  static_cast<event_loop::impl*>(f->core)->end_park(f, reason_woken, index);
}

void transfer_slow(fiber_control* next) { static_cast<event_loop::impl*>(running_core)->transfer_to(next); }

namespace {
// Before waiting for `f` to end: throws fiber::error, naming `operation`, unless
// the caller is a fiber of f's loop (so that something can run f meanwhile).
// f's loop. A task not started yet may move to another worker of a runtime
// (adopt()), which changes it under f's lock.
loop_core* core_of(fiber_control* f) noexcept {
  if (!thread_shared) return f->core;
  op_guard guard(f->lock);
  return f->core;
}

// Whether f is a task not started yet in the running fiber's loop's ready queue.
// Read in one hold of f's lock: a task this loop donated (donate()) keeps its
// `core` until a hungry worker adopts it, which sets `core`, then queues it
// there; read apart, the old `core` and the new `queued` would let this loop
// take it off another loop's queue and run it twice. (Only this loop's thread
// donates its tasks: once seen queued here, it stays here until we act.)
bool queued_here_unstarted(fiber_control* f) noexcept {
  if (!running()) return false;
  auto here = [&] { return f->core == running_core && state_of(f) == run_state::created && f->queued; };
  if (!thread_shared) return here();
  op_guard guard(f->lock);
  return here();
}

void check_joinable(fiber_control* f, const char* operation) {
  if (f == running())
    throw error(std::string(operation) + ": a task cannot wait for itself (it would never end: a deadlock)");
  loop_core* const core = core_of(f);
  if (core == running_core) return;
  check_may_wait(operation);
  // A fiber of another loop, or a thread outside any loop: the task's loop must
  // run on another thread, or the wait could never end. (A loop that stopped
  // because its tasks ended: then the task ended too, and the wait ends at once.)
  // (The runner is read once: a loop whose last task ends stops, and clears it,
  // only after that task's status was published, so a loop seen stopped here
  // shows the end of the task too.)
  if (core->runner.load(std::memory_order_acquire)) return;
  if (f->status.load(std::memory_order_acquire) != task_status::pending) return;
  if (!running_core)
    throw error(std::string(operation) +
                ": not called from a fiber of a running event_loop, and the task's event_loop is not running "
                "(nothing would ever end the wait)");
  if (!core_is_worker(core))
    throw error(std::string(operation) +
                ": the task belongs to another event_loop than the calling fiber's, and that loop does not run (so "
                "the wait could never end)");
}

// Links `w` (index `index`) among f's joiners, unless f has ended: false then.
bool link_joiner(fiber_control* f, waiter& w, int index = 0) {
  if (!thread_shared) {
    f->joiners.push_back(w);  // (single mode: it has not ended, the caller saw)
    return true;
  }
  op_guard guard(f->lock);
  if (f->status.load(std::memory_order_acquire) != task_status::pending) return false;
  enqueue(f->joiners, w, true, index);
  return true;
}
}  // namespace

// Links ws[k] among the joiners of tasks[k], for each k < n. In shared mode a
// task may end meanwhile: then the wait is over (every waiter unlinked), and its
// k is returned; else -1: park.
int link_joiners(fiber_control* const* tasks, waiter* ws, std::size_t n) {
  if (!shared_mode()) {
    for (std::size_t k = 0; k < n; ++k) tasks[k]->joiners.push_back(ws[k]);
    return -1;
  }
  for (std::size_t k = 0; k < n; ++k)
    if (!link_joiner(tasks[k], ws[k], static_cast<int>(k))) {
      fiber_control* self = waiting_self();
      if (claim(self, reason_woken, static_cast<int>(k))) {
        unlink_locked(ws, n);
        self->claim.store(0, std::memory_order_release);
        return static_cast<int>(k);
      }
      return -1;  // a task linked before ended first: its wake is on the way
    }
  return -1;
}

// (GCC 12 sees the joiner's waiter, a local, linked into f's queue, and warns;
// the waiter is unlinked before join() returns, by the waker or by park().)
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wdangling-pointer"
#endif
bool join(fiber_control* f, clock::time_point deadline, const char* operation) {
  if (f->status.load(std::memory_order_acquire) != task_status::pending) return true;
  check_joinable(f, operation);
  // A task that has not started runs next: its joiner has nothing to do before it.
  if (queued_here_unstarted(f)) running_loop_impl()->make_next(f);
  waiter w;
  if (!link_joiner(f, w)) return true;
  return park(&w, 1, deadline, operation, wait_on_task(f)) != park_timeout;
}
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#  pragma GCC diagnostic pop
#endif

void join_shielded(fiber_control* const* fibers, std::size_t count) {
  fiber_control* self = running();
  if (!self) return;
  const bool saved = self->park_shielded;
  self->park_shielded = true;
  for (std::size_t i = 0; i < count; ++i) {
    if (fibers[i] == self) continue;
    while (fibers[i]->status.load(std::memory_order_acquire) == task_status::pending) {
      waiter w;
      if (!link_joiner(fibers[i], w)) break;
      try {
        park(&w, 1, no_deadline, "fiber::gather: waiting for the cancelled tasks to end", wait_on_task(fibers[i]));
      } catch (const forced_unwind&) {
        self->park_shielded = saved;
        throw;
      } catch (...) {
      }
    }
  }
  self->park_shielded = saved;
}

int join_any(fiber_control* const* fibers, std::size_t count, clock::time_point deadline) {
  for (std::size_t i = 0; i < count; ++i)
    if (fibers[i]->status != task_status::pending) return static_cast<int>(i);
  if (count == 0) throw error("fiber::wait_any: no tasks to wait for");
  for (std::size_t i = 0; i < count; ++i) check_joinable(fibers[i], "fiber::wait_any");
  std::vector<waiter> ws(count);
  for (std::size_t i = 0; i < count; ++i) ws[i].object = wait_on_task(fibers[i]);
  const int ended = link_joiners(fibers, ws.data(), count);
  if (ended >= 0) return ended;
  return park(ws.data(), count, deadline, "fiber::wait_any");
}

void gather_all(fiber_control* const* fibers, std::size_t count) {
  auto cancel_rest = [&] {
    for (std::size_t i = 0; i < count; ++i) cancel(fibers[i]);
    join_shielded(fibers, count);
  };
  std::vector<waiter> ws;
  std::vector<std::size_t> which;
  std::size_t first = count;  // the task whose end woke us last: checked first
  for (;;) {
    ws.clear();
    which.clear();
    if (first < count) {
      const task_status s = fibers[first]->status;
      if (s == task_status::failed || s == task_status::cancelled) {
        cancel_rest();
        rethrow_outcome(fibers[first]);
      }
    }
    for (std::size_t i = 0; i < count; ++i) {
      const task_status s = fibers[i]->status;
      if (s == task_status::failed || s == task_status::cancelled) {
        cancel_rest();
        rethrow_outcome(fibers[i]);
      }
      if (s == task_status::pending) which.push_back(i);
    }
    if (which.empty()) return;
    for (std::size_t k : which) check_joinable(fibers[k], "fiber::gather");
    ws.resize(which.size());
    std::vector<fiber_control*> pending(which.size());
    for (std::size_t k = 0; k < which.size(); ++k) {
      ws[k].object = wait_on_task(fibers[which[k]]);
      pending[k] = fibers[which[k]];
    }
    if (const int ended = link_joiners(pending.data(), ws.data(), ws.size()); ended >= 0) {
      first = which[static_cast<std::size_t>(ended)];
      continue;
    }
    // cancel_rest() parks: not inside the handler, where another fiber's catch
    // would change what `throw;` rethrows (the thread's caught-exception stack is
    // shared by its fibers).
    std::exception_ptr failure;
    try {
      first = which[static_cast<std::size_t>(park(ws.data(), ws.size(), no_deadline, "fiber::gather"))];
    } catch (const forced_unwind&) {
      throw;
    } catch (...) {
      failure = std::current_exception();
    }
    if (failure) {
      cancel_rest();
      std::rethrow_exception(failure);
    }
  }
}

// ---- IO --------------------------------------------------------------------------

// A fiber waiting for IO counts among the IO waiters of the loop whose epoll
// watches the fd (io_waiting: the loop polls, and blocks in its reactor rather
// than report a deadlock). A wait of a stream (io_wait) may end on another
// worker than it began on when its fiber migrates (its fd stays in the first
// loop's epoll, whose wake finds the fiber where it is); a fiber that waits on
// a stream of another worker's epoll counts there (io_waiting_elsewhere). A
// hooked call's wait (io_wait_fd) keeps the fiber where it is.
struct io_wait_count {
  event_loop::impl* L;  // whose count holds the wait; nullptr once the fiber left it (leave())
  event_loop::impl* elsewhere = nullptr;  // or that other worker's
  fiber_control* f;
  bool movable;
  io_wait_count(event_loop::impl* loop, event_loop::impl* watcher, bool can_move) noexcept
      : L(loop), f(loop->current), movable(can_move) {
    if (watcher && watcher != loop) {
      L = nullptr;
      elsewhere = watcher;
      elsewhere->io_waiting_elsewhere.fetch_add(1, std::memory_order_relaxed);
    } else {
      ++L->io_waiting;
    }
    f->io_count = this;
  }
  ~io_wait_count() {
    f->io_count = nullptr;
    if (L) --L->io_waiting;
    if (elsewhere) elsewhere->io_waiting_elsewhere.fetch_sub(1, std::memory_order_relaxed);
  }
  io_wait_count(const io_wait_count&) = delete;
  io_wait_count& operator=(const io_wait_count&) = delete;
};

}  // namespace detail

bool event_loop::impl::movable(const detail::fiber_control* f) noexcept {
  return f->migratable && !f->pinned && !(f->io_count && !f->io_count->movable);
}

void event_loop::impl::leave(detail::fiber_control* f) noexcept {
  timers.remove(f);  // (its wait ended by a wake: the fiber would remove it where it runs)
  if (detail::io_wait_count* c = f->io_count; c && c->L == this) {
    --io_waiting;
    c->L = nullptr;
  }
}

event_loop::impl* event_loop::impl::resumed_on() noexcept { return running_loop_impl(); }

namespace detail {
bool io_follows(const event_loop* registered) noexcept {
  event_loop::impl* L = running_loop_impl();
  if (!L || !L->current || !L->current->migratable || !L->rt) return false;
  for (loop_core* w : L->rt->workers)
    if (static_cast<event_loop::impl*>(w)->owner == registered) return true;
  return false;
}
}  // namespace detail

namespace detail {

#if FIBER_HAVE_EPOLL
void io_register(io_handle& h) {
  event_loop::impl* L = running_loop_impl();
  if (!L) throw_no_loop("fiber::io");
  if (const int e = L->reactor.add(h.fd, reactor::want_read | reactor::want_write | reactor::edge, &h))
    throw std::system_error(e, std::generic_category(), "fiber::io: epoll_ctl(ADD) of fd " + std::to_string(h.fd));
  h.registered = true;
  h.epfd = L->reactor.native_handle();
  h.core = L;
  h.readable = h.writable = h.hangup = false;
}

void io_unregister(io_handle& h) noexcept {
  if (!h.registered) return;
  h.registered = false;
  reactor::remove_from(h.epfd, h.fd);  // (the reactor of the loop that registered it)
  op_guard guard(h.lock);
  while (waiter* w = claim_front(h.readers)) wake(*w);
  while (waiter* w = claim_front(h.writers)) wake(*w);
}

bool io_wait(io_handle& h, bool write, clock::time_point deadline, const char* operation) {
  if (!operation) operation = write ? "fiber::io: waiting to write" : "fiber::io: waiting to read";
  require_fiber(operation);
  op_guard guard(h.lock);
  bool& flag = write ? h.writable : h.readable;
  if (flag) {
    flag = false;
    return true;
  }
  waiter w;
  enqueue(write ? h.writers : h.readers, w);
  guard.unlock();
  io_wait_count count(running_loop_impl(), static_cast<event_loop::impl*>(h.core), true);
  return park(&w, 1, deadline, operation, wait_on_fd(h.fd)) != park_timeout;
}

// io_wait_fd's registrations, kept across waits.
//
// An fd a fiber waited on stays registered with the epoll of that fiber's loop
// (on N workers: that worker's) after the wait, so that the next wait costs one
// epoll_ctl rather than two (ADD, then DEL; three when a second fiber waited on
// the same fd and needed a dup of it). It is registered EPOLLONESHOT and re-armed
// by each wait (EPOLL_CTL_MOD), rather than edge-triggered and left alone, because:
//   - a wait keeps its level meaning: fiber_wait_fd and io::wait_readable return at
//     once if the fd is ready now (MOD looks at the fd's state), whatever the
//     caller read since its last wait. Edge-triggered, a caller that did not read
//     the fd down to EAGAIN would wait for an edge that may never come;
//   - it repairs itself: epoll drops a registration silently when its fd is closed,
//     and an fd closed without fiber_fd_closing (a C++ program's ::close, libc's own
//     in fclose, anything libfiber_hook does not see) makes the next MOD fail with
//     ENOENT, and that wait registers afresh. Edge-triggered, it would park forever;
//   - one registration serves a reader and a writer at once: it is armed for the
//     union of what the fibers waiting on it want (no dup of the fd any more);
//   - a registration nobody waits on (the waiter timed out) reports at most one
//     more event, which wakes nobody; disarmed, it reports nothing.
//
// The state of each fd is an fd_entry in a table indexed by fd (fd_table.hpp),
// whose entries never move or die: an event that comes late, from an epoll the fd
// has just left, still finds its entry (and wakes its waiters, if any, for
// nothing: they retry). A wait from a fiber of another loop moves the
// registration to that loop's epoll; on N workers a fiber never changes threads,
// so the fd of a fiber that serves one connection stays where it is. Either
// loop's events wake the waiters of both (wake() works across threads). The
// registration leaves epoll when io_fd_closing (fiber_fd_closing, the hook's
// close) says its fd is being closed, and when its loop is destroyed.
struct fd_entry {
  io_handle h;  // h.fd; h.lock guards the rest, and the waiters in h.readers and h.writers
  std::atomic<event_loop::impl*> owner{nullptr};  // the loop whose epoll holds reg_fd; nullptr: none
  int reg_fd = -1;  // what is in owner's epoll: h.fd, or a dup of it (arm()); -1: nothing
};

namespace {
// Linux's fds are below 2^31: 2^12 pointers at the top, 2^13 chunks of 64 entries below each.
constinit fd_table<fd_entry, 6, 13> kept;

void* tagged(fd_entry* e) noexcept { return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(e) | 1); }

// What the fibers waiting on e want (the caller holds e.h.lock), once.
std::uint32_t wanted(const fd_entry& e) noexcept {
  std::uint32_t interest = reactor::oneshot;
  if (!e.h.readers.empty()) interest |= reactor::want_read;
  if (!e.h.writers.empty()) interest |= reactor::want_write;
  return interest;
}

// Takes e's registration out of its loop's epoll (the caller holds e.h.lock).
void unregister(fd_entry& e) noexcept {
  event_loop::impl* const L = e.owner.load(std::memory_order_relaxed);
  if (!L) return;
  L->reactor.remove(e.reg_fd);  // (fails if the fd is closed: epoll forgot it then)
  if (e.reg_fd != e.h.fd) ::close(e.reg_fd);
  e.reg_fd = -1;
  e.owner.store(nullptr, std::memory_order_release);
  L->kept_fds.fetch_sub(1, std::memory_order_relaxed);
}

void wake_all(fd_entry& e) noexcept {
  while (waiter* w = claim_front(e.h.readers)) wake(*w);
  while (waiter* w = claim_front(e.h.writers)) wake(*w);
}

// Arms e's registration in L's epoll for what its waiters want, registering it
// there first if it is not (the caller holds e.h.lock, its waiter linked).
// 0, or the errno of the failure.
int arm(event_loop::impl* L, fd_entry& e) noexcept {
  const std::uint32_t interest = wanted(e);
  if (e.owner.load(std::memory_order_relaxed) == L) {
    const int err = L->reactor.modify(e.reg_fd, interest, tagged(&e));
    if (err != ENOENT) return err;  // 0, or EBADF: the fd is closed
    // epoll forgot it: the fd was closed without io_fd_closing, and its number
    // may name another file now. Register afresh.
  }
  unregister(e);  // (from another loop's epoll: it moves here)
  const int fd = e.h.fd;
  if (const int err = L->reactor.add(fd, interest, tagged(&e)); err == 0) {
    e.reg_fd = fd;
  } else {
    if (err != EEXIST) return err;
    // epoll keys a registration by (fd, open file), and this key is taken: by an
    // io::stream's or listener's own registration (io_register), or by one of ours
    // that epoll kept after a close because another fd still holds the file.
    // Register a dup (another key for the same file) while fibers wait.
    const int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) return errno;
    if (const int err = L->reactor.add(d, interest, tagged(&e))) {
      ::close(d);
      return err;
    }
    e.reg_fd = d;
  }
  L->kept_fds.fetch_add(1, std::memory_order_relaxed);
  e.owner.store(L, std::memory_order_release);
  return 0;
}
}  // namespace

bool io_wait_fd(int fd, bool write, clock::time_point deadline, const char* operation) {
  if (!operation) operation = write ? "fiber::io::wait_writable" : "fiber::io::wait_readable";
  require_fiber(operation);
  event_loop::impl* const L = running_loop_impl();
  fd_entry* const e = kept.get(fd);
  if (!e) {
    if (fd < 0)
      throw std::system_error(EBADF, std::generic_category(), std::string(operation) + ": fd " + std::to_string(fd));
    throw std::bad_alloc();
  }
  wait_queue& q = write ? e->h.writers : e->h.readers;
  waiter w;
  {
    op_guard guard(e->h.lock);
    e->h.fd = fd;
    enqueue(q, w);
    if (const int err = arm(L, *e)) {
      q.remove(w);
      wake_all(*e);  // fibers already waiting may have lost their registration: they retry
      guard.unlock();
      throw std::system_error(err, std::generic_category(),
                              std::string(operation) + ": epoll_ctl of fd " + std::to_string(fd));
    }
  }
  struct drop_dup {
    fd_entry* e;
    int fd;
    ~drop_dup() {  // a dup arm() registered goes when nobody waits: it holds the file open
      op_guard guard(e->h.lock);
      if (e->reg_fd >= 0 && e->reg_fd != fd && e->h.readers.empty() && e->h.writers.empty()) unregister(*e);
    }
  } after_wait{e, fd};
  io_wait_count count(L, nullptr, false);
  return park(&w, 1, deadline, operation, wait_on_fd(fd)) != park_timeout;
}

void io_fd_closing(int fd) noexcept {
  fd_entry* const e = kept.find(fd);
  // No registration, no waiter (a waiter's fd is registered): nothing to do, and
  // no lock taken (from a thread outside any loop, one would turn the loops shared).
  if (!e || !e->owner.load(std::memory_order_acquire)) return;
  op_guard guard(e->h.lock);
  // Out of epoll while fd is still open: once closed, epoll could not be told.
  unregister(*e);
  wake_all(*e);  // their retried call fails with EBADF
}

}  // namespace detail

void event_loop::impl::kept_fd_event(detail::fd_entry* e, const detail::reactor::event& ev) noexcept {
  detail::op_guard guard(e->h.lock);
  if (ev.readable)
    while (detail::waiter* w = detail::claim_front(e->h.readers)) detail::wake(*w);
  if (ev.writable)
    while (detail::waiter* w = detail::claim_front(e->h.writers)) detail::wake(*w);
  // Oneshot: the registration is disarmed now. Re-armed for the fibers that still
  // wait (for the other direction); not from an epoll the fd has left since.
  if (e->owner.load(std::memory_order_relaxed) == this && (!e->h.readers.empty() || !e->h.writers.empty()) &&
      detail::arm(this, *e) != 0)
    detail::wake_all(*e);  // they retry, and see what is wrong
}

void event_loop::impl::drop_kept_fds() noexcept {
  detail::kept.for_each([this](int, detail::fd_entry& e) {
    if (e.owner.load(std::memory_order_acquire) != this) return;
    detail::op_guard guard(e.h.lock);
    if (e.owner.load(std::memory_order_relaxed) != this) return;
    detail::unregister(e);
    detail::wake_all(e);  // fibers of other loops that were served through this epoll: they register in theirs
  });
}

namespace detail {
#else
void io_register(io_handle&) { throw error("fiber::io: not supported on this platform (no epoll)"); }
void io_unregister(io_handle&) noexcept {}
bool io_wait(io_handle&, bool, clock::time_point, const char*) {
  throw error("fiber::io: not supported on this platform (no epoll)");
}
bool io_wait_fd(int, bool, clock::time_point, const char*) {
  throw error("fiber::io: not supported on this platform (no epoll)");
}
void io_fd_closing(int) noexcept {}
#endif

}  // namespace detail

// ---- this_fiber, deadline_scope ------------------------------------------------------

namespace detail {

// A fiber that spent its turn's budget (coop_tick, event_loop.hpp) yields, as
// this_fiber::yield() does. A pending cancellation is delivered here, as a park
// would: a fiber whose operations never wait can still be cancelled.
void coop_yield() {
  event_loop::impl* L = running_loop_impl();
  fiber_control* self = L->current;
  L->coop_left = L->coop_budget;
  if (!self || L->tearing_down || L->coop_budget == INT_MAX) return;
  if (self->cancel_pending && !self->park_shielded) {
    self->cancel_pending = false;
    throw cancelled{};
  }
  // Straight to the next ready fiber, as a park does (the scheduler's pass comes
  // within direct_switches); through the scheduler when no other fiber is ready,
  // so that timers and IO are looked at before this fiber goes on.
  const bool others_ready = L->any_ready();
  L->make_ready(self);
  L->transfer_to(others_ready ? L->next_after_park() : nullptr);
  if (self->migratable) L = event_loop::impl::resumed_on();
  L->coop_left = L->coop_budget - 1;  // the operation that yielded is the new turn's first
}

}  // namespace detail

namespace this_fiber {

void yield() {
  detail::require_fiber("fiber::this_fiber::yield");
  event_loop::impl* L = running_loop_impl();
  detail::fiber_control* self = L->current;
  if (self->cancel_pending && !self->park_shielded) {
    self->cancel_pending = false;
    throw cancelled{};
  }
  // Nothing else ready: still go through the scheduler if it has timers, IO or
  // posted functions to look at, or a fiber that yields in a loop, waiting for a
  // sleeper, would never let it wake. Under run_once, always: the foreign main
  // loop around it is work the loop cannot see.
  if (!L->any_ready() && L->timers.empty() && L->io_waiters() == 0 && !L->has_remote.load(std::memory_order_relaxed) &&
      !L->has_posted.load(std::memory_order_relaxed) && !L->foreign_round) {
    L->check_canary(self);  // (a switch-out that did not happen is still one)
    return;
  }
  const bool others_ready = L->any_ready();
  L->make_ready(self);
  // Through the scheduler now and then, so that timers and IO are not starved by
  // fibers that only yield (and always when no other fiber is ready).
  L->transfer_to(others_ready ? L->next_after_park() : nullptr);
}

void sleep_until(clock::time_point deadline) {
  detail::require_fiber("fiber::this_fiber::sleep");
  detail::park(nullptr, 0, deadline, "fiber::this_fiber::sleep");
}

bool in_fiber() noexcept { return detail::running() != nullptr; }

bool may_migrate() noexcept {
  detail::fiber_control* self = detail::running();
  return self && self->migratable;
}

clock::time_point deadline() noexcept {
  detail::fiber_control* self = detail::running();
  return self ? self->scope_deadline : detail::no_deadline;
}

void check_cancelled() {
  detail::fiber_control* self = detail::running();
  if (self && self->cancel_pending && !self->park_shielded) {
    self->cancel_pending = false;
    throw cancelled{};
  }
}

}  // namespace this_fiber

deadline_scope::deadline_scope(clock::time_point deadline) : fiber_(detail::running()) {
  if (!fiber_) detail::require_fiber("fiber::deadline_scope");
  saved_ = fiber_->scope_deadline;
  if (deadline < fiber_->scope_deadline) fiber_->scope_deadline = deadline;
}

deadline_scope::~deadline_scope() { fiber_->scope_deadline = saved_; }

}  // namespace fiber
