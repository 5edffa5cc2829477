// Shared mode: what lets fibers of different loops, and threads outside any
// loop, use the same primitives (scheduler.hpp, "Threads").
//
// When a loop turns shared. A loop runs *single* (no lock, no atomic
// read-modify-write on its paths) while nothing else could touch what its fibers
// wait on. It turns shared, for good, when another loop runs at the same time or
// a thread outside any loop uses a primitive (plain_enter()). The switch is made
// by the loop's own thread, at a point where none of its fibers is inside an
// operation (loop_pass(), at every pass of its scheduler, or when it starts), so
// that no operation ever runs half single and half shared. Whoever needs the
// switch (flip_all()) sets `flipped` and waits until every loop that runs single
// has passed such a point; from then on every loop that starts runs shared.
//
// Claims. In shared mode a parked fiber may be woken from several threads at
// once (a select over channels that two threads use, its own timer, a
// cancellation); the claim word (event_loop.hpp) decides which end wins. The
// winner wakes the fiber through its loop's remote queue when it runs on another
// thread; the fiber itself unlinks its other waiters when it runs again.
#include "shared.hpp"

#include "../per_thread.hpp"

#include "fiber/event_loop.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace fiber::detail {

namespace {
std::atomic<int> running_loops{0};  // loops inside run() or run_once()
std::atomic<int> plain_ops{0};      // threads outside any loop inside a primitive's operation
std::atomic<bool> flipped{false};   // every loop runs shared from now on

std::mutex& flip_mutex() {
  static std::mutex* m = new std::mutex;  // (never destroyed: loops may outlive statics)
  return *m;
}

// Makes every running loop shared, and waits until each has switched.
void flip_all() {
  std::lock_guard lock(flip_mutex());
  if (flipped.load(std::memory_order_acquire)) return;  // (a flip finished before we got here)
  flipped.store(true, std::memory_order_seq_cst);
  std::vector<loop_core*> waiting = loops_running_single();
  auto pause = std::chrono::microseconds(5);
  while (!waiting.empty()) {
    for (std::size_t i = 0; i < waiting.size();) {
      loop_core* L = waiting[i];
      if (L->shared.load(std::memory_order_acquire) || !L->runner.load(std::memory_order_acquire)) {
        waiting[i] = waiting.back();
        waiting.pop_back();
      } else {
        poke(L);  // (it may sleep in its reactor)
        ++i;
      }
    }
    if (waiting.empty()) break;
    std::this_thread::sleep_for(pause);
    if (pause < std::chrono::milliseconds(1)) pause *= 2;
  }
}

// A thread outside any loop that waits: its stand-in in the waiters it links.
struct thread_waiter final : fiber_control {
  void run_body() override {}
  std::mutex m;
  std::condition_variable cv;
  bool signalled = false;
};
// (Per thread as per_thread.hpp keeps state: on Windows, GCC's emulated TLS
// freed a plain thread_local waiter under a waker; wine saw writes into its vtable.)
struct thread_waiter_box {
  thread_waiter w;
};
FIBER_PER_THREAD(thread_waiter_box, thread_waiter_storage)
thread_waiter& this_thread_waiter() { return thread_waiter_storage().w; }

void signal_thread(fiber_control* f) noexcept {
  auto* w = static_cast<thread_waiter*>(f);
  // Notified under the lock: once it is released, the waiting thread may return
  // and end, and its waiter with it.
  std::lock_guard lock(w->m);
  w->signalled = true;
  w->cv.notify_one();
}
}  // namespace

void loop_started(loop_core* L) noexcept {
  const int before = running_loops.fetch_add(1, std::memory_order_seq_cst);
  if (L->shared.load(std::memory_order_relaxed) || flipped.load(std::memory_order_seq_cst) || before > 0 ||
      plain_ops.load(std::memory_order_seq_cst) > 0) {
    L->shared.store(true, std::memory_order_seq_cst);  // (first: a flip of another thread may wait for us)
    flip_all();
  }
}

void loop_stopped(loop_core*) noexcept { running_loops.fetch_sub(1, std::memory_order_seq_cst); }

void loop_pass_slow(loop_core* L) noexcept {
  L->shared.store(true, std::memory_order_release);
  if (running_core == L) thread_shared = true;
}
bool flip_requested() noexcept { return flipped.load(std::memory_order_acquire); }

int running_loop_count() noexcept { return running_loops.load(std::memory_order_acquire); }
int plain_ops_in_flight() noexcept { return plain_ops.load(std::memory_order_acquire); }

bool others_may_wake() noexcept {
  return running_loops.load(std::memory_order_acquire) > 1 || plain_ops.load(std::memory_order_acquire) > 0;
}

void plain_enter() noexcept {
  plain_ops.fetch_add(1, std::memory_order_seq_cst);
  if (!flipped.load(std::memory_order_seq_cst) && running_loops.load(std::memory_order_seq_cst) > 0) flip_all();
}
void plain_exit() noexcept { plain_ops.fetch_sub(1, std::memory_order_release); }

void yield_thread() noexcept { std::this_thread::yield(); }

fiber_control* waiting_self() noexcept {
  if (loop_core* L = running_core) return L->current;
  return &this_thread_waiter();
}

waiter* claim_front_shared(wait_queue& q) noexcept {
  while (waiter* w = q.front()) {
    if (claim(w->fiber, reason_woken, w->index)) return w;
    q.remove(*w);  // its fiber was woken by something else: it unlinks the rest itself
  }
  return nullptr;
}

void make_ready_anywhere(fiber_control* f) noexcept {
  loop_core* const c = f->core;
  if (!c) {
    signal_thread(f);
  } else if (c == running_core) {
    c->make_ready(f);
  } else {
    c->remote_lock.lock();
    f->remote_next = nullptr;
    (c->remote_tail ? c->remote_tail->remote_next : c->remote_head) = f;
    c->remote_tail = f;
    c->has_remote.store(true, std::memory_order_relaxed);
    c->remote_lock.unlock();
    // Dekker with the loop's sleep (loop_core::sleeping): either it sees the
    // fiber before it sleeps, or we see it asleep and poke it.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (c->sleeping.load(std::memory_order_relaxed)) poke(c);
  }
}

void wake_claimed(waiter& w) noexcept {
  if (w.queue) w.queue->remove(w);  // (the caller holds its lock)
  make_ready_anywhere(w.fiber);
}

fiber_control* take_remote(loop_core* L) noexcept {
  L->remote_lock.lock();
  fiber_control* f = L->remote_head;
  L->remote_head = L->remote_tail = nullptr;
  L->has_remote.store(false, std::memory_order_relaxed);
  L->remote_lock.unlock();
  return f;
}

void unlink_locked(waiter* waiters, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) {
    waiter& w = waiters[i];
    if (spin_lock* l = w.lock) {
      l->lock();
      if (w.queue) w.queue->remove(w);
      l->unlock();
    }
  }
}

int park_thread(waiter* waiters, std::size_t count, clock::time_point deadline) {
  thread_waiter& me = this_thread_waiter();
  std::unique_lock lock(me.m);
  while (!me.signalled) {
    if (deadline == no_deadline) {
      me.cv.wait(lock);
    } else if (me.cv.wait_until(lock, deadline) == std::cv_status::timeout && !me.signalled) {
      if (claim(&me, reason_timeout, 0)) {
        lock.unlock();
        unlink_locked(waiters, count);
        me.claim.store(0, std::memory_order_release);
        return park_timeout;
      }
      deadline = no_deadline;  // a waker claimed us first: its signal is on the way
    }
  }
  me.signalled = false;
  lock.unlock();
  unlink_locked(waiters, count);
  const std::uint32_t c = me.claim.exchange(0, std::memory_order_acq_rel);
  return static_cast<int>(c & 0xffffffu);
}

}  // namespace fiber::detail
