// The scheduler's internals that the header-only parts of the runtime (task<T>,
// channel<T>, select, the sync primitives, io) are written against. Not a public
// API: names and shapes may change.
//
// The model. A loop (event_loop.hpp) runs fibers on one thread. A fiber that
// cannot go on *parks*: it links one or more `waiter`s (on its own stack) into the
// `wait_queue`s of what it waits for, then calls park(), which switches straight
// to the next ready fiber (or to the loop, which polls for IO and timers when
// nothing is ready). Whoever makes the wait end (a sender, an unlock, an IO event)
// takes a waiter out of its queue and calls wake() on it: the parked fiber becomes
// ready, and learns from park() which of its waiters fired. A timeout or a
// cancellation ends the park too; then park() unlinks every waiter itself.
//
// Invariants:
//   - A waiter is in at most one queue, and only while its fiber is parked: the
//     first wake() of any of a fiber's waiters unlinks all of them. So a waiter
//     found in a queue always belongs to a parked fiber that no one has woken yet,
//     and wake() on it is always valid.
//   - A fiber is in the ready queue at most once, and never while parked.
//
// Threads. A loop runs *single* until a second thread could touch what its fibers
// wait on (another loop runs in the process, or a thread outside any loop uses a
// primitive); from then on it runs *shared* (loop/shared.cpp). Single: none of
// the below, and the rules above hold as written. Shared:
//   - Every primitive guards its state with its spin_lock (op_guard), from the
//     first look at it until its waiter is linked; park() comes after the unlock.
//   - A waker first *claims* the fiber of a waiter it found (claim(): one atomic
//     compare-and-swap on the fiber's claim word); only the one claim that wins
//     may fill the waiter's slot and wake it. A waiter whose fiber is claimed
//     already (another case of its select, its timer, a cancellation) is skipped
//     and unlinked: claim_front(). The woken fiber unlinks its other waiters
//     itself, under their locks, when it runs again.
//   - A fiber woken by another thread goes to its loop's remote queue; the loop
//     takes it in at its next pass (so a fiber never runs on two threads: only
//     its own loop's thread resumes it).
//   - A thread outside any loop that blocks (a channel's recv, a mutex's lock...)
//     waits as a thread, with a stand-in fiber_control (loop/shared.cpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>

namespace fiber {

using clock = std::chrono::steady_clock;

class event_loop;

namespace detail {

struct fiber_control;
class wait_queue;

inline constexpr clock::time_point no_deadline = clock::time_point::max();

// What a parked fiber waits on, as fiber::dump() and the deadlock report show it:
// an object's address (a channel, a mutex...), an fd, or a task it joins; the two
// low bits tell which (the objects are pointer-aligned). 0: nothing in particular.
inline std::uintptr_t wait_on(const void* object) noexcept { return reinterpret_cast<std::uintptr_t>(object); }
inline std::uintptr_t wait_on_fd(int fd) noexcept {
  return static_cast<std::uintptr_t>(static_cast<unsigned>(fd)) << 2 | 1u;
}
inline std::uintptr_t wait_on_task(const fiber_control* task) noexcept {
  return reinterpret_cast<std::uintptr_t>(task) | 2u;
}

// A test-and-test-and-set lock for the primitives' state in shared mode: held
// for a few dozen instructions, never across a park. A waiter that spins for long
// yields its CPU (with more threads than cores, the holder may be preempted).
// Aligned to 4: op_guard keeps two flags in the low bits of its address.
void yield_thread() noexcept;  // std::this_thread::yield(), out of line
class alignas(4) spin_lock {
 public:
  void lock() noexcept {
    while (locked_.exchange(1, std::memory_order_acquire)) {
      for (unsigned spins = 0; locked_.load(std::memory_order_relaxed); ++spins) {
        if (spins < 128)
          relax();
        else
          yield_thread();
      }
    }
  }
  bool try_lock() noexcept { return !locked_.exchange(1, std::memory_order_acquire); }
  void unlock() noexcept { locked_.store(0, std::memory_order_release); }

 private:
  static void relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  // A word, not a bool: an exchange of one byte is a call into libatomic on
  // RISC-V (GCC 12), a word's is one instruction everywhere.
  std::atomic<std::uint32_t> locked_{0};
};

// One thing a parked fiber waits for. Lives on the parked fiber's stack.
struct waiter {
  fiber_control* fiber = nullptr;  // set by park() (shared mode: by enqueue())
  wait_queue* queue = nullptr;     // the queue this waiter is linked in, if any
  spin_lock* lock = nullptr;       // that queue's primitive's lock (set when linked)
  waiter* prev = nullptr;
  waiter* next = nullptr;
  void* slot = nullptr;            // for the primitive: e.g. where a channel value goes
  int index = 0;                   // set by park(): position in the array it was given
  bool sending = false;            // for the primitive (select: a send case)
  // For a park on several waiters (select, wait_any): what this one waits on
  // (wait_on() above), for fiber::dump(). A park on one gives it to park().
  std::uintptr_t object = 0;
};

// Intrusive FIFO of waiters.
class wait_queue {
 public:
  // `lock`: the lock of the primitive the queue belongs to (shared mode).
  explicit wait_queue(spin_lock* lock) noexcept : lock_(lock) {}
  wait_queue(const wait_queue&) = delete;
  wait_queue& operator=(const wait_queue&) = delete;

  bool empty() const noexcept { return head_ == nullptr; }
  waiter* front() const noexcept { return head_; }
  spin_lock* lock() const noexcept { return lock_; }

  void push_back(waiter& w) noexcept {
    w.queue = this;
    w.lock = lock_;
    w.next = nullptr;
    w.prev = tail_;
    if (tail_)
      tail_->next = &w;
    else
      head_ = &w;
    tail_ = &w;
  }
  waiter* pop_front() noexcept {
    waiter* w = head_;
    if (w) remove(*w);
    return w;
  }
  void remove(waiter& w) noexcept {
    (w.prev ? w.prev->next : head_) = w.next;
    (w.next ? w.next->prev : tail_) = w.prev;
    w.prev = w.next = nullptr;
    w.queue = nullptr;
  }

 private:
  waiter* head_ = nullptr;
  waiter* tail_ = nullptr;
  spin_lock* lock_;
};

// What park() reports when it returns normally.
inline constexpr int park_timeout = -1;

// park(), wake() and running() are defined inline in event_loop.hpp (their common
// paths run inline in the primitives), after the loop's fiber bookkeeping:
//
// int park(waiter* waiters, std::size_t count, clock::time_point deadline = no_deadline,
//          const char* operation = nullptr, std::uintptr_t object = 0);
//   Parks the running fiber until one of `waiters[0..count)` is woken (returns its
//   index) or `deadline` passes (returns park_timeout). Each waiter must already be
//   linked in a queue; park() sets its `fiber` and `index` first. Throws
//   fiber::cancelled if the running task is cancelled (a pending cancellation is
//   delivered before parking), and fiber::timed_out if the deadline of an enclosing
//   fiber::deadline_scope passes; in every case but a wake, park() unlinks the
//   waiters before returning or throwing. Throws fiber::error, naming `operation`,
//   when not called from a fiber of a running event_loop (it would block the
//   thread forever). `operation` (a string that lives at least as long as the wait,
//   e.g. "fiber::channel::recv") and `object` (wait_on() above) say what the fiber
//   waits for, in fiber::dump() and the deadlock report.
//
// void wake(waiter& w) noexcept;
//   Ends the park of `w`'s fiber: it is woken with w's index and all its waiters
//   are unlinked (w included, if still linked). The fiber runs when the loop
//   reaches it.
//
// fiber_control* running() noexcept;
//   The running loop fiber, or nullptr when the caller is not one.

// Throws fiber::error, naming `operation`, unless the caller may park.
void require_fiber(const char* operation);

// IO readiness, from the loop's reactor (epoll on Linux; elsewhere these throw
// fiber::error). An io_handle keeps its fd registered, edge-triggered, from
// io_register() to io_unregister() (which must come before the fd is closed), so
// that waiting costs no system call of its own. Wait only after the fd said
// EAGAIN: an edge seen while nobody waited is remembered (readable/writable) and
// ends the next wait at once, which may then find EAGAIN again; loop on that.
struct io_handle {
  int fd = -1;
  spin_lock lock;  // readers, writers and the flags, in shared mode
  wait_queue readers{&lock};
  wait_queue writers{&lock};
  bool readable = false;
  bool writable = false;
  bool hangup = false;  // an edge said the peer hung up or the fd has an error (sticky)
  bool registered = false;
  int epfd = -1;                     // the native handle of the reactor it is registered with (its loop's)
  struct loop_core* core = nullptr;  // that loop
};
void io_register(io_handle& h);  // throws std::system_error
void io_unregister(io_handle& h) noexcept;
// Whether the calling fiber may wait on a handle registered by `registered`,
// another loop than its own: it may migrate, and both loops are workers of one
// runtime (the registering worker's reactor wakes it where it runs).
bool io_follows(const event_loop* registered) noexcept;
// Parks until h's fd is readable (write == false) or writable; false on timeout.
// Throws like park(); `operation` names the wait there and in fiber::dump().
bool io_wait(io_handle& h, bool write, clock::time_point deadline, const char* operation = nullptr);
// The same for an fd that has no io_handle. The fd stays registered with the
// calling fiber's loop after the wait (one-shot, re-armed by each wait: one system
// call per wait), until io_fd_closing(fd), a wait from a fiber of another loop
// (it moves there) or the loop's end; an fd closed without io_fd_closing is
// registered afresh by its next wait. Returns at once if the fd is ready now; may
// return true without the fd being ready (rarely: retry). Throws std::system_error
// if epoll refuses the fd.
bool io_wait_fd(int fd, bool write, clock::time_point deadline, const char* operation = nullptr);
// `fd` is about to be closed (epoll would forget it silently): takes it out of
// the epoll io_wait_fd registered it with, and wakes every fiber waiting on it in
// io_wait_fd, of any loop; their waits return true and the retried call fails with
// EBADF. From any thread; nothing if no fiber ever waited on fd.
void io_fd_closing(int fd) noexcept;

}  // namespace detail
}  // namespace fiber
