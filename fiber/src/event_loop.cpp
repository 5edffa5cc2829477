// The event loop's runs and its API (event_loop.hpp); the loop itself is
// event_loop::impl (loop/loop.hpp).
#include "loop/loop.hpp"

namespace fiber {

namespace detail {
constinit thread_local loop_core* running_core = nullptr;
constinit thread_local bool thread_shared = true;
}

event_loop::impl* event_loop::impl::resumed_on() noexcept { return running_loop_impl(); }

stack_kind detail::stack_kind_from_environment() noexcept {
  static const stack_kind kind = [] {
    const char* v = std::getenv("FIBER_STACK");
    if (!v || !*v || std::strcmp(v, "own") == 0) return stack_kind::own;
    if (std::strcmp(v, "copied") == 0) return stack_kind::copied;
    detail::fatal("fiber: the environment variable FIBER_STACK is neither \"own\" nor \"copied\"");
  }();
  return kind;
}

// The switch, a task's start and end: defined here, once, so that they inline
// into each other (the other parts call them).
void event_loop::impl::transfer_to(detail::fiber_control* next) {
  detail::fiber_control* self = current;
  next = startable(next);
  if (next == self) return;  // a fiber to itself, or the scheduler with nothing to run
  FIBER_ASSERT(!next || next->core == this, "a loop resumes only its own fibers");
  FIBER_ASSERT(!next || next->ctx || next->copied, "a fiber resumed is suspended: not running elsewhere, not ended");
  if (self) check_canary(self);
  current = next;
  save_slot = self ? &self->ctx : &scheduler;
  context& target = target_of(next);
  // resume() keeps our exceptions in flight ours (eh_state.hpp): a fiber may
  // park in a catch block while others throw and catch.
  context from = std::move(target).resume();
  // A fiber that may migrate can be resumed by another worker's loop.
  impl* const L = self && self->migratable ? resumed_on() : this;
  L->arrived(std::move(from));
  L->coop_left = L->coop_budget;  // our new turn
}

detail::fiber_control* event_loop::impl::startable(detail::fiber_control* next) noexcept {
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
    if (f->copied) {
      // Its context is made on the shared stack when it first runs (swapper_main).
      try {
        prepare_copies();
        break;
      } catch (const std::exception& e) {
        fail_start(f, e);
        next = next_after_park();
        continue;
      }
    }
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

context event_loop::impl::fiber_main(detail::fiber_control* f, context&& caller) {
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
    const bool reusable = f->stack_size == stacks.default_size() && !migratable && !f->copied;
    if (f->copied) copies.give_back(f);  // (its bytes are all in place: it runs)
    // (A task that may migrate ends on whichever loop runs it now.)
    impl* const L = migratable ? resumed_on() : this;
    L->finish(f);  // may free f
    if (L->rt && L->rt->hungry.load(std::memory_order_relaxed) > 0) L->donate();
    detail::fiber_control* next = L->startable(L->next_after_park());
    L->current = next;
    context& target = L->target_of(next);
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

context event_loop::impl::swapper_main(context&& caller) {
  for (;;) {
    arrived(std::move(caller));  // (a copied-stack fiber that ended was released: the stack is free)
    detail::fiber_control* const f = copies.target;
    copies.target = nullptr;
    FIBER_ASSERT(f && f->copied && current == f, "the swapper runs the copied-stack fiber the loop switches to");
    copies.take(f);
    if (!f->ctx)
      f->ctx = context(std::allocator_arg, detail::copied_stack_allocator{&copies, f},
                       [this, f](context&& c) { return fiber_main(f, std::move(c)); });
    save_slot = &copies.swapper;
    caller = std::move(f->ctx).resume();
  }
}

void event_loop::impl::run_task(detail::fiber_control* f) {
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

void event_loop::impl::finish(detail::fiber_control* f) noexcept {
  set_state(f, detail::run_state::ended);
  if (detail::fiber_control* parent = std::exchange(f->stack_parent, nullptr)) detail::release(parent);
  publish_outcome(f);
  unlink_alive(f);
  if (f->detached.load(std::memory_order_acquire) && f->status.load(std::memory_order_relaxed) == task_status::failed)
    report_detached(f);
  f->ctx = context{};  // empty already: the fiber is running
  f->loop = nullptr;
  detail::release(f);  // the loop's reference
}

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
      if (f->copied && f->ctx) L.copies.take(f);  // (its bytes back on the shared stack, to unwind there)
      context c = std::move(f->ctx);
      event_loop::impl* const saved_loop = running_loop_impl();
      detail::fiber_control* const saved_current = L.current;
      const bool saved_shared = detail::thread_shared;
      detail::running_core = impl_.get();
      detail::thread_shared = L.shared.load(std::memory_order_relaxed);
      L.current = f;
      c = context{};  // unwinds the fiber's stack
      if (f->copied) L.copies.give_back(f);
      if (detail::fiber_control* parent = std::exchange(f->stack_parent, nullptr)) detail::release(parent);
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
  L.copies.swapper = context{};  // unwinds out of swapper_main
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
