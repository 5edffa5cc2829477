// Tasks: spawn (submit), the task blocks' cache, release, cancel, join (loop/loop.hpp).
#include "loop/loop.hpp"

#include <cstring>

namespace fiber {

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
  // A task whose kind is the loop's default (spawn_options::stack unset) gets a
  // stack of its own where a copied one cannot serve it.
  const bool wants_copied =
      opts.stack ? *opts.stack == stack_kind::copied
                 : L.default_stack == stack_kind::copied && !opts.migratable && stack_size <= L.copies.size();
  if (wants_copied) {
    const char* wrong = opts.migratable ? "it cannot be migratable (its frames live on its loop's shared stack)"
                        : stack_size > L.copies.size()
                            ? "its stack_size is above the loop's (the size of the shared stack it runs on)"
                            : nullptr;
    if (wrong) {
      delete f;
      throw error(std::string("fiber::spawn: a copied-stack task (stack_kind::copied): ") + wrong);
    }
    f->copied = true;
    f->stack_size = L.copies.size();
    // (Placed on another worker, it runs at the top of that worker's shared stack.)
    const bool elsewhere = opts.worker != spawn_options::any_worker && L.rt && opts.worker != L.worker_index;
    fiber_control* const spawner = running_loop_impl() == &L && !elsewhere ? L.current : nullptr;
    f->stack_home = L.copies.home_for(spawner, __builtin_frame_address(0));
    if (f->stack_home) {
      // Below its spawner's frames: it runs where they are in place (copied_stacks.hpp),
      // so on this worker only, and its spawner's block lives as long as it does.
      std::size_t depth = 2;
      for (const fiber_control* p = spawner->stack_parent; p; p = p->stack_parent) ++depth;
      try {
        L.copies.reserve_chain(depth);
      } catch (...) {
        delete f;
        throw;
      }
      f->stack_parent = spawner;
      spawner->refs.fetch_add(1, std::memory_order_relaxed);
      f->pinned = true;
    }
  }
  f->refs.store(2, std::memory_order_relaxed);  // the task handle and the loop
  f->migratable = FIBER_CAN_MIGRATE && opts.migratable && opts.worker == spawn_options::any_worker && L.rt &&
                  L.rt->workers.size() > 1;
  if (opts.worker != spawn_options::any_worker) {
    // Placed on a worker (spawn_options::worker): never donated nor injected.
    const std::size_t workers = L.rt ? L.rt->workers.size() : 1;
    if (opts.worker >= workers) {
      if (f->stack_parent) release(f->stack_parent);
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
  park_local<waiter> parked;  // (off the stack of a copied-stack fiber)
  waiter& w = *parked;
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
      park_local<waiter> parked;  // (off the stack of a copied-stack fiber)
      waiter& w = *parked;
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

}  // namespace detail

}  // namespace fiber
