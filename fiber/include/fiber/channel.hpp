// Go's channels and select, for the fibers of an event_loop.
//
//   fiber::channel<int> ch;            // capacity 0: a rendezvous
//   fiber::channel<int> buf(16);       // buffered: up to 16 values wait in it
//
//   ch.send(v);                        // parks until a receiver takes v (or the buffer has room)
//   std::optional<int> v = ch.recv();  // parks until a value comes; empty once closed and drained
//   ch.close();                        // no more sends; receivers drain what is buffered
//   for (int v : ch) { ... }           // recv() until closed and drained
//
//   int fired = fiber::select(
//       fiber::on_recv(a, [](std::optional<int> v) { ... }),   // v empty: a is closed and drained
//       fiber::on_send(b, 42, [] { ... }),
//       fiber::on_default([] { ... }));                        // optional: makes select not block
//
// API (T must be nothrow move constructible and nothrow destructible):
//
//   channel<T>(std::size_t capacity = 0)
//   void send(const T&) / send(T&&)            parks; throws channel_closed if closed (also while parked)
//   bool send_until(const T&/T&&, time_point)  false on timeout (the value is left as it was)
//   bool send_for(const T&/T&&, duration)
//   bool try_send(const T&) / try_send(T&&)    never parks; false when it would have to (the
//                                              value is then left as it was: moved only on success);
//                                              throws channel_closed if closed
//   std::optional<T> recv()                    parks; empty once the channel is closed and drained
//   recv_result<T> recv_until(time_point)      .status: ok (then .value holds it), closed, or timeout
//   recv_result<T> recv_for(duration)
//   std::optional<T> try_recv()                never parks; empty if nothing is ready or closed and
//                                              drained (tell the two apart with closed() && empty())
//   void close()                               throws channel_closed if already closed
//   bool closed(), std::size_t size() (values buffered), capacity(), bool empty()
//   begin()/end()                              an input range over recv(): ends at close
//
//   int select(cases...)                       runs one ready case, or parks until one is;
//   int select_until(time_point, cases...)     returns the index of the case that ran (its position
//   int select_for(duration, cases...)         in the argument list), or -1 on timeout
//   on_recv(channel<T>&, fn)                   fn(std::optional<T>): empty when the channel is closed
//                                              and drained (a closed channel is always ready)
//   on_send(channel<T>&, value, fn)            fn(): the value was sent. An rvalue is moved from only
//                                              if this case runs; a const lvalue is copied (when the
//                                              case is made). Sending to a closed channel throws
//                                              channel_closed, as send does.
//   on_default(fn)                             at most one: runs when no other case is ready
//   select_seed(std::uint64_t)                 reseeds this thread's select shuffle (tests)
//
// Case objects refer to their channel and (for an rvalue) to the value: make them in
// the argument list of the select call, as above.
//
// Rules (Go's, with C++ exceptions for Go's panics):
//   - Sending to a closed channel throws fiber::channel_closed; so does closing it twice.
//     close() wakes every parked receiver (they get an empty optional) and every parked
//     sender (they throw channel_closed); values already buffered stay, and receivers get
//     them before they see the channel closed.
//   - Waiters are served first come, first served. When several cases of a select are
//     ready it picks one at random (the cases are polled in a shuffled order); a select
//     that parks queues its cases in that order too, so of two cases waiting on one
//     channel, either may be served first.
//   - Blocking operations park only the calling fiber; they throw fiber::cancelled when
//     the task is cancelled and fiber::timed_out past an enclosing deadline_scope, and
//     then leave the channel as if they had never been called (a send's value is not
//     consumed). On a loop's thread outside its fibers (a function given to
//     event_loop::post) they throw fiber::error rather than block the loop; on a thread
//     that runs no loop they block the thread. try_send/try_recv/close (and a select
//     with a default case) never park and work anywhere.
//   - Threads: a channel may be shared by the fibers of several loops (the workers of a
//     fiber::run runtime, or loops on separate threads) and by threads that run no loop.
//     Its state is then guarded by a spin lock (scheduler.hpp, "Threads"). Do not destroy
//     a channel that fibers wait on (if it happens, they are woken as by close()).
//
// Cost: no allocation per operation. The buffer is allocated once, by the constructor;
// waiters live on the parked fibers' stacks; select keeps its cases and waiters on the
// caller's stack; nothing is virtual or type-erased.
//
// Invariants (each holds between operations, under the lock in shared mode):
//   (1) count_ <= cap_; the buffered values are buf_[head_], buf_[head_+1], ... (mod cap_),
//       oldest first. An unbuffered channel (cap_ == 0) has count_ == 0 and no buf_.
//   (2) sendq_ non-empty implies count_ == cap_: a sender parks only when the buffer is full,
//       and a receiver that frees a slot refills it at once from the first parked sender.
//   (3) recvq_ non-empty implies count_ == 0: a receiver parks only on an empty buffer, and a
//       sender that finds a parked receiver hands it the value directly.
//   (4) So at most one of sendq_ and recvq_ is non-empty - except that a fiber parked in a
//       select with both a send and a recv case on this channel sits in both; then every
//       waiter in the one queue belongs to a fiber that also has one in the other, and each
//       of those fibers is parked only in selects (Go's chan.go has the same exception).
//   (5) closed_ implies sendq_ and recvq_ are empty: close() wakes everyone, and no one parks
//       on a closed channel (send throws; recv returns at once, draining the buffer).
//   (6) A waiter in recvq_ has slot pointing at an empty std::optional<T> on its fiber's
//       stack; a waiter in sendq_ has slot pointing at the T to be sent, on its fiber's stack.
//       Whoever takes a waiter out of a queue fills/moves that slot first, then calls
//       detail::wake() (which unlinks every waiter of that fiber: a waiter found in a queue
//       always belongs to a parked fiber not yet woken). close() instead sets slot = nullptr
//       before waking: a woken waiter with a null slot learns that the channel was closed.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "fiber/detail/scheduler.hpp"
#include "fiber/error.hpp"
#include "fiber/event_loop.hpp"

namespace fiber {

/// Thrown by a send (or a select's send case) on a closed channel, by a sender that
/// was parked when the channel was closed, and by close() of a closed channel.
class channel_closed : public error {
 public:
  explicit channel_closed(const std::string& what) : error(what) {}
};

/// How a timed receive ended.
enum class channel_status {
  ok,       ///< a value was received
  closed,   ///< the channel is closed and drained
  timeout,  ///< the deadline passed first
};

/// The result of recv_until/recv_for: `value` holds the value iff status == ok.
template <class T>
struct recv_result {
  std::optional<T> value;
  channel_status status = channel_status::timeout;
  explicit operator bool() const noexcept { return status == channel_status::ok; }
};

template <class T>
class channel;

namespace detail {

// Puts a value taken for a send that did not happen back where it came from.
template <class T>
void move_back(T& to, T& from) noexcept {
  if constexpr (std::is_move_assignable_v<T>) {
    to = std::move(from);
  } else {
    std::destroy_at(&to);
    std::construct_at(&to, std::move(from));
  }
}

inline thread_local std::uint64_t select_rng = 0x9e3779b97f4a7c15ULL;

// A uniform number in [0, n) (xorshift64*; plenty for shuffling select cases).
inline std::uint32_t select_random(std::uint32_t n) noexcept {
  std::uint64_t x = select_rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  select_rng = x;
  const std::uint64_t r = (x * 0x2545f4914f6cdd1dULL) >> 32;
  return static_cast<std::uint32_t>((r * n) >> 32);
}

[[noreturn]] inline void throw_channel_closed(const char* operation) {
  throw channel_closed(std::string(operation) + ": the channel is closed");
}

template <class T, class F>
struct recv_case;
template <class T, class F, bool Owned>
struct send_case;
template <class F>
struct default_case;

}  // namespace detail

/// Reseeds the random order in which this thread's selects poll their cases (for
/// reproducible tests). The default seed is fixed.
inline void select_seed(std::uint64_t seed) noexcept { detail::select_rng = seed ? seed : 0x9e3779b97f4a7c15ULL; }

/// A channel of T between the fibers of one loop. See the top of this file.
template <class T>
class channel {
  static_assert(std::is_object_v<T> && !std::is_const_v<T>, "fiber::channel<T>: T must be a non-const object type");
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_destructible_v<T>,
                "fiber::channel<T>: T must be nothrow move constructible and nothrow destructible");

 public:
  using value_type = T;

  /// capacity 0: every send waits for a receiver. Otherwise up to `capacity` values
  /// wait in the channel (the buffer is allocated here, once).
  explicit channel(std::size_t capacity = 0) : cap_(capacity) {
    if (cap_) buf_ = std::allocator<T>().allocate(cap_);
  }
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;
  ~channel() {
    {
      detail::op_guard guard(lock_);
      wake_all_closed();
    }
    while (count_) pop_front_destroy();
    if (buf_) std::allocator<T>().deallocate(buf_, cap_);
  }

  // -- send --

  FIBER_SWITCH_INLINE void send(const T& v) { send_wait(v, detail::no_deadline, "fiber::channel::send"); }
  FIBER_SWITCH_INLINE void send(T&& v) { send_wait(std::move(v), detail::no_deadline, "fiber::channel::send"); }

  /// False if `deadline` passed first (then `v` is left as it was).
  bool send_until(const T& v, clock::time_point deadline) {
    return send_wait(v, deadline, "fiber::channel::send_until");
  }
  bool send_until(T&& v, clock::time_point deadline) {
    return send_wait(std::move(v), deadline, "fiber::channel::send_until");
  }
  template <class Rep, class Period>
  bool send_for(const T& v, std::chrono::duration<Rep, Period> timeout) {
    return send_wait(v, after(timeout), "fiber::channel::send_for");
  }
  template <class Rep, class Period>
  bool send_for(T&& v, std::chrono::duration<Rep, Period> timeout) {
    return send_wait(std::move(v), after(timeout), "fiber::channel::send_for");
  }

  /// Sends only if no wait is needed (a receiver is parked, or the buffer has room).
  /// On false, `v` is untouched. Throws channel_closed on a closed channel.
  bool try_send(const T& v) { return try_offer(v, "fiber::channel::try_send"); }
  bool try_send(T&& v) { return try_offer(std::move(v), "fiber::channel::try_send"); }

  // -- receive --

  /// The next value; empty once the channel is closed and drained.
  FIBER_SWITCH_INLINE std::optional<T> recv() {
    detail::coop_tick();
    std::optional<T> out;
    detail::op_guard guard(lock_);
    if (poll_recv(out, guard.shared()) == not_ready) {
      detail::check_may_wait("fiber::channel::recv");
      if (detail::running_copied()) [[unlikely]] {
        park_recv_boxed(guard, out, detail::no_deadline, "fiber::channel::recv");
        return out;
      }
      detail::waiter w;
      w.slot = &out;
      detail::enqueue(recvq_, w, guard.shared());
      guard.unlock();
      detail::park(&w, 1, detail::no_deadline, "fiber::channel::recv", detail::wait_on(this));
    }
    return out;
  }

  /// Timed recv: status ok (value set), closed (closed and drained) or timeout.
  recv_result<T> recv_until(clock::time_point deadline) { return recv_wait(deadline, "fiber::channel::recv_until"); }
  template <class Rep, class Period>
  recv_result<T> recv_for(std::chrono::duration<Rep, Period> timeout) {
    return recv_wait(after(timeout), "fiber::channel::recv_for");
  }

  /// A value if one is ready now (buffered, or from a parked sender); else empty.
  std::optional<T> try_recv() {
    std::optional<T> out;
    detail::op_guard guard(lock_);
    poll_recv(out, guard.shared());
    return out;
  }

  // -- close --

  /// No more sends. Parked receivers get an empty optional, parked senders throw
  /// channel_closed; buffered values stay for receivers. Closing twice throws.
  void close() {
    detail::op_guard guard(lock_);
    check_invariants();
    if (closed_) throw channel_closed("fiber::channel::close: the channel is already closed");
    closed_ = true;
    wake_all_closed();
  }

  bool closed() const noexcept {
    detail::op_guard guard(lock_);
    return closed_;
  }
  /// Values waiting in the buffer (from another thread: a snapshot).
  std::size_t size() const noexcept {
    detail::op_guard guard(lock_);
    return count_;
  }
  bool empty() const noexcept { return size() == 0; }
  std::size_t capacity() const noexcept { return cap_; }

  // -- range --

  /// for (auto v : ch): each step is a recv(); the range ends when the channel is
  /// closed and drained. (For a move-only T, write `for (auto& v : ch)` and move.)
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using reference = T&;
    using pointer = T*;

    iterator() = default;
    T& operator*() const { return *cur_; }
    T* operator->() const { return &*cur_; }
    iterator& operator++() {
      cur_ = ch_->recv();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return !it.cur_; }

   private:
    friend class channel;
    explicit iterator(channel* ch) : ch_(ch), cur_(ch->recv()) {}
    channel* ch_ = nullptr;
    mutable std::optional<T> cur_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  template <class, class>
  friend struct detail::recv_case;
  template <class, class, bool>
  friend struct detail::send_case;

  enum : int { not_ready = -1, got_closed = 0, got_value = 1 };

  template <class Rep, class Period>
  static clock::time_point after(std::chrono::duration<Rep, Period> d) {
    return clock::now() + std::chrono::ceil<clock::duration>(d);
  }

  // Sends without waiting, if it can: into a parked receiver's slot (no trip through
  // the buffer), else into the buffer. `v` is moved from (or copied) only on success.
  // Invariants (1), (2), (3) and (5) (top of the file), checked as each operation
  // starts, under the lock (FIBER_ASSERT: debug and sanitizer builds).
  void check_invariants() const noexcept {
    FIBER_ASSERT(count_ <= cap_, "channel (1): no more values buffered than its capacity");
    FIBER_ASSERT(sendq_.empty() || count_ == cap_, "channel (2): a sender waits only while the buffer is full");
    FIBER_ASSERT(recvq_.empty() || count_ == 0, "channel (3): a receiver waits only while the buffer is empty");
    FIBER_ASSERT(!closed_ || (sendq_.empty() && recvq_.empty()), "channel (5): nobody waits on a closed channel");
  }

  template <class U>
  bool offer(U&& v, const char* operation, bool shared) {
    check_invariants();
    if (closed_) detail::throw_channel_closed(operation);
    if (detail::waiter* w = detail::claim_front(recvq_, shared)) {
      static_cast<std::optional<T>*>(w->slot)->emplace(std::forward<U>(v));
      detail::wake(*w, shared);
      return true;
    }
    const std::size_t n = count_;
    if (n < cap_) {
      std::size_t tail = head_ + n;
      if (tail >= cap_) tail -= cap_;
      ::new (static_cast<void*>(buf_ + tail)) T(std::forward<U>(v));
      count_ = n + 1;
      return true;
    }
    return false;
  }
  template <class U>
  bool try_offer(U&& v, const char* operation) {
    detail::op_guard guard(lock_);
    return offer(std::forward<U>(v), operation, guard.shared());
  }

  template <class U>
  FIBER_SWITCH_INLINE bool send_wait(U&& v, clock::time_point deadline, const char* operation) {
    detail::coop_tick();
    detail::op_guard guard(lock_);
    if (offer(std::forward<U>(v), operation, guard.shared())) return true;
    detail::check_may_wait(operation);
    if constexpr (std::is_lvalue_reference_v<U>) {
      T copy(v);  // a parked sender's value must be movable by the receiver
      return park_send(guard, copy, deadline, operation);
    } else {
      return park_send(guard, v, deadline, operation);
    }
  }

  FIBER_SWITCH_INLINE bool park_send(detail::op_guard& guard, T& v, clock::time_point deadline,
                                     const char* operation) {
    if (detail::running_copied()) [[unlikely]]
      return park_send_boxed(guard, v, deadline, operation);
    detail::waiter w;
    w.slot = &v;
    detail::enqueue(sendq_, w, guard.shared());
    guard.unlock();
    if (detail::park(&w, 1, deadline, operation, detail::wait_on(this)) == detail::park_timeout) return false;
    if (!w.slot) detail::throw_channel_closed(operation);
    return true;
  }

  // A fiber on a copied stack (stack_kind::copied) parks with its waiter and
  // the value handed over off its stack: its frames are away while it is parked.
  struct parked_value {
    detail::waiter w;
    std::optional<T> value;
  };
  [[gnu::noinline]] int park_recv_boxed(detail::op_guard& guard, std::optional<T>& out, clock::time_point deadline,
                                       const char* operation) {
    const auto box = std::make_unique<parked_value>();
    box->w.slot = &box->value;
    detail::enqueue(recvq_, box->w, guard.shared());
    guard.unlock();
    const int r = detail::park(&box->w, 1, deadline, operation, detail::wait_on(this));
    out = std::move(box->value);
    return r;
  }
  [[gnu::noinline]] bool park_send_boxed(detail::op_guard& guard, T& v, clock::time_point deadline,
                                        const char* operation) {
    const auto box = std::make_unique<parked_value>();
    box->value.emplace(std::move(v));
    box->w.slot = &*box->value;
    detail::enqueue(sendq_, box->w, guard.shared());
    guard.unlock();
    int r;
    try {
      r = detail::park(&box->w, 1, deadline, operation, detail::wait_on(this));
    } catch (...) {
      detail::move_back(v, *box->value);  // not sent: `v` is as it was
      throw;
    }
    if (r == detail::park_timeout || !box->w.slot) {
      detail::move_back(v, *box->value);
      if (r == detail::park_timeout) return false;
      detail::throw_channel_closed(operation);
    }
    return true;
  }

  recv_result<T> recv_wait(clock::time_point deadline, const char* operation) {
    detail::coop_tick();
    recv_result<T> r;
    detail::op_guard guard(lock_);
    const int p = poll_recv(r.value, guard.shared());
    if (p != not_ready) {
      r.status = p == got_value ? channel_status::ok : channel_status::closed;
      return r;
    }
    detail::check_may_wait(operation);
    if (detail::running_copied()) [[unlikely]] {
      if (park_recv_boxed(guard, r.value, deadline, operation) == detail::park_timeout)
        r.status = channel_status::timeout;
      else
        r.status = r.value ? channel_status::ok : channel_status::closed;
      return r;
    }
    detail::waiter w;
    w.slot = &r.value;
    detail::enqueue(recvq_, w, guard.shared());
    guard.unlock();
    if (detail::park(&w, 1, deadline, operation, detail::wait_on(this)) == detail::park_timeout)
      r.status = channel_status::timeout;
    else
      r.status = r.value ? channel_status::ok : channel_status::closed;
    return r;
  }

  // Receives without waiting, into `out` (empty): from the buffer (refilled from the
  // first parked sender, keeping invariant 2), else straight from a parked sender.
  // The caller holds the guard.
  int poll_recv(std::optional<T>& out, bool shared) {
    check_invariants();
    if (count_) {
      out.emplace(std::move(buf_[head_]));
      pop_front_destroy();
      if (detail::waiter* w = detail::claim_front(sendq_, shared)) {
        const std::size_t n = count_;
        std::size_t tail = head_ + n;
        if (tail >= cap_) tail -= cap_;
        ::new (static_cast<void*>(buf_ + tail)) T(std::move(*static_cast<T*>(w->slot)));
        count_ = n + 1;
        detail::wake(*w, shared);
      }
      return got_value;
    }
    if (detail::waiter* w = detail::claim_front(sendq_, shared)) {
      out.emplace(std::move(*static_cast<T*>(w->slot)));
      detail::wake(*w, shared);
      return got_value;
    }
    return closed_ ? got_closed : not_ready;
  }

  void pop_front_destroy() noexcept {
    buf_[head_].~T();
    if (++head_ == cap_) head_ = 0;
    --count_;
  }

  void wake_all_closed() noexcept {
    while (detail::waiter* w = detail::claim_front(recvq_)) {
      w->slot = nullptr;
      detail::wake(*w);
    }
    while (detail::waiter* w = detail::claim_front(sendq_)) {
      w->slot = nullptr;
      detail::wake(*w);
    }
  }

  T* buf_ = nullptr;
  std::size_t cap_ = 0;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  mutable detail::spin_lock lock_;
  detail::wait_queue sendq_{&lock_};
  detail::wait_queue recvq_{&lock_};
  bool closed_ = false;
};

// ---- select -------------------------------------------------------------------------

namespace detail {

// A select case: poll() tries it without waiting (true: done, and finish() may run the
// callback); enqueue() links a waiter for it; complete() finishes it after its waiter
// was woken.
template <class T, class F>
struct recv_case {
  static constexpr bool is_default = false;
  channel<T>* ch;
  F fn;
  std::optional<T> slot{};
  std::unique_ptr<std::optional<T>> box{};  // where the value goes, for a fiber on a copied stack

  spin_lock* lock() const noexcept { return &ch->lock_; }
  bool poll(bool shared) { return ch->poll_recv(slot, shared) != channel<T>::not_ready; }
  // `boxed`: the caller runs on a copied stack (stack_kind::copied); what the
  // waker writes must then stay off it.
  void make_box() { box = std::make_unique<std::optional<T>>(); }
  void enqueue(waiter& w, int index, bool boxed) noexcept {
    w.slot = boxed ? box.get() : &slot;
    w.sending = false;
    w.object = wait_on(ch);
    detail::enqueue(ch->recvq_, w, index);
  }
  void unbox() noexcept {}
  void finish() { fn(std::move(slot)); }
  void complete(waiter&) {  // a null slot (closed) left `slot` empty
    if (box) slot = std::move(*box);
    finish();
  }
};

template <class T, class F, bool Owned>
struct send_case {
  static constexpr bool is_default = false;
  channel<T>* ch;
  std::conditional_t<Owned, T, T*> value;
  F fn;

  T& ref() noexcept {
    if constexpr (Owned)
      return value;
    else
      return *value;
  }
  std::unique_ptr<std::optional<T>> box{};  // the value while parked, for a fiber on a copied stack

  spin_lock* lock() const noexcept { return &ch->lock_; }
  bool poll(bool shared) { return ch->offer(std::move(ref()), "fiber::select: a send case", shared); }
  void make_box() { box = std::make_unique<std::optional<T>>(); }
  void enqueue(waiter& w, int index, bool boxed) noexcept {
    if (boxed) box->emplace(std::move(ref()));
    w.slot = boxed ? &**box : &ref();
    w.sending = true;
    w.object = wait_on(ch);
    detail::enqueue(ch->sendq_, w, index);
  }
  // The value was not sent: back where it came from.
  void unbox() noexcept {
    if (box && *box) move_back(ref(), **box);
    box.reset();
  }
  void finish() { fn(); }
  void complete(waiter& w) {
    if (!w.slot) {
      unbox();
      throw_channel_closed("fiber::select: a send case");
    }
    box.reset();
    finish();
  }
};

template <class F>
struct default_case {
  static constexpr bool is_default = true;
  F fn;
  void finish() { fn(); }
};

template <class C>
inline constexpr bool is_default_case_v = std::remove_reference_t<C>::is_default;

// Calls f(case) for the case at argument position i.
template <class Tuple, class Fn, std::size_t... I>
inline void visit_case(Tuple& cases, std::size_t i, Fn&& f, std::index_sequence<I...>) {
  ((i == I ? (void)f(std::get<I>(cases)) : (void)0), ...);
}

// Shared mode: the locks of a select's channels, each once, taken in address
// order (so that two selects never deadlock) and held from the first poll until
// the select's waiters are linked; nothing in single mode.
template <std::size_t M>
class select_locks {
 public:
  select_locks() noexcept : shared_(thread_shared), plain_(thread_shared && !running_core) {}
  ~select_locks() {
    unlock();
    if (plain_ && entered_) plain_exit();
  }
  select_locks(const select_locks&) = delete;
  select_locks& operator=(const select_locks&) = delete;
  bool shared() const noexcept { return shared_; }
  void add(spin_lock* l) noexcept { locks_[n_++] = l; }
  void lock() noexcept {
    if (plain_) {
      plain_enter();
      entered_ = true;
    }
    // (An insertion sort: a select has a few cases.)
    for (std::size_t i = 1; i < n_; ++i)
      for (std::size_t j = i; j > 0 && std::less<spin_lock*>()(locks_[j], locks_[j - 1]); --j)
        std::swap(locks_[j], locks_[j - 1]);
    n_ = static_cast<std::size_t>(std::unique(locks_, locks_ + n_) - locks_);
    for (std::size_t i = 0; i < n_; ++i) locks_[i]->lock();
    held_ = true;
  }
  void unlock() noexcept {
    if (!held_) return;
    held_ = false;
    for (std::size_t i = n_; i-- > 0;) locks_[i]->unlock();
  }

 private:
  spin_lock* locks_[M ? M : 1];
  std::size_t n_ = 0;
  bool shared_ = false;
  bool plain_ = false;
  bool entered_ = false;
  bool held_ = false;
};

template <class... C>
int select_impl(clock::time_point deadline, C&... cs) {
  constexpr std::size_t n = sizeof...(C);
  constexpr std::size_t defaults = (std::size_t{0} + ... + (is_default_case_v<C> ? 1u : 0u));
  static_assert(defaults <= 1, "fiber::select: at most one on_default case");
  constexpr std::size_t m = n - defaults;  // channel cases
  static_assert(n < 256, "fiber::select: too many cases");
  using seq = std::index_sequence_for<C...>;
  std::tuple<C&...> cases(cs...);
  if constexpr (defaults == 0) coop_tick();  // (a select with a default case never yields)

  // Argument positions of the channel cases, and of the default case.
  std::uint8_t pos[m ? m : 1];
  int default_pos = -1;
  {
    std::size_t k = 0;
    std::size_t i = 0;
    ((is_default_case_v<C> ? (void)(default_pos = static_cast<int>(i++))
                           : (void)(pos[k++] = static_cast<std::uint8_t>(i++))),
     ...);
  }

  // Poll in a random order (Fisher-Yates), so that no ready case is favoured.
  // perm: the channel cases (by their rank among them) in that order.
  std::uint8_t perm[m ? m : 1];
  for (std::size_t k = 0; k < m; ++k) perm[k] = static_cast<std::uint8_t>(k);
  for (std::size_t k = m; k > 1; --k) std::swap(perm[k - 1], perm[select_random(static_cast<std::uint32_t>(k))]);
  std::uint8_t order[m ? m : 1];  // their argument positions
  for (std::size_t k = 0; k < m; ++k) order[k] = pos[perm[k]];
  // A fiber on a copied stack may park with its waiters and values off it:
  // their places are made now, before any lock is taken (a failed allocation
  // then leaves nothing linked).
  const bool boxed = defaults == 0 && running_copied();
  std::unique_ptr<waiter[]> boxed_ws;
  if (boxed) {
    boxed_ws.reset(new waiter[m ? m : 1]);
    for (std::size_t i = 0; i < n; ++i)
      visit_case(cases, i, [](auto& c) {
        if constexpr (!is_default_case_v<decltype(c)>) c.make_box();
      }, seq{});
  }
  select_locks<m> locks;
  if (locks.shared() && m) {
    for (std::size_t k = 0; k < m; ++k)
      visit_case(cases, pos[k], [&](auto& c) {
        if constexpr (!is_default_case_v<decltype(c)>) locks.add(c.lock());
      }, seq{});
    locks.lock();
  }
  for (std::size_t k = 0; k < m; ++k) {
    bool done = false;
    visit_case(cases, order[k], [&](auto& c) {
      if constexpr (!is_default_case_v<decltype(c)>) done = c.poll(locks.shared());
    }, seq{});
    if (done) {
      locks.unlock();  // (the callback runs unlocked)
      visit_case(cases, order[k], [](auto& c) { c.finish(); }, seq{});
      return order[k];
    }
  }
  if (default_pos >= 0) {
    locks.unlock();
    visit_case(cases, static_cast<std::size_t>(default_pos), [](auto& c) { c.finish(); }, seq{});
    return default_pos;
  }

  // Nothing ready: park on every case at once (ws[j]: the j-th channel case),
  // queued in the shuffled order too (as Go's select does), so that of two cases
  // waiting on one channel, either may be the one served first.
  check_may_wait("fiber::select");
  // On a copied stack (stack_kind::copied), the waiters and the values live off
  // it while the fiber is parked (boxes made before the locks were taken); the
  // send cases not taken get their values back.
  waiter local_ws[m ? m : 1];
  waiter* const ws = boxed ? boxed_ws.get() : local_ws;
  struct give_back {
    std::tuple<C&...>& cases;
    int taken;
    bool on;
    void give() noexcept {
      if (!on) return;
      on = false;
      for (std::size_t i = 0; i < n; ++i)
        if (static_cast<int>(i) != taken)
          visit_case(cases, i, [](auto& c) {
            if constexpr (!is_default_case_v<decltype(c)>) c.unbox();
          }, seq{});
    }
    ~give_back() { give(); }
  } unboxed{cases, -1, boxed};
  for (std::size_t k = 0; k < m; ++k)
    visit_case(cases, order[k], [&](auto& c) {
      if constexpr (!is_default_case_v<decltype(c)>) c.enqueue(ws[perm[k]], perm[k], boxed);
    }, seq{});
  locks.unlock();
  const int r = park(ws, m, deadline, "fiber::select");
  unboxed.taken = r == park_timeout ? -1 : pos[r];
  unboxed.give();
  if (r == park_timeout) return -1;
  visit_case(cases, pos[r], [&](auto& c) {
    if constexpr (!is_default_case_v<decltype(c)>) c.complete(ws[r]);
  }, seq{});
  return pos[r];
}

}  // namespace detail

/// A receive case: fn(std::optional<T>) runs with the value, or with an empty optional
/// when the channel is closed and drained.
template <class T, class F>
[[nodiscard]] detail::recv_case<T, std::decay_t<F>> on_recv(channel<T>& ch, F&& fn) {
  static_assert(std::is_invocable_v<std::decay_t<F>&, std::optional<T>&&>,
                "fiber::on_recv: the callback must accept a std::optional<T>");
  return {&ch, std::forward<F>(fn)};
}

/// A send case: fn() runs once `v` was sent. `v` (an rvalue) is moved from only if this
/// case runs; it must outlive the select call (a temporary in its argument list does).
template <class T, class F>
[[nodiscard]] detail::send_case<T, std::decay_t<F>, false> on_send(channel<T>& ch, std::type_identity_t<T>&& v,
                                                                    F&& fn) {
  return {&ch, &v, std::forward<F>(fn)};
}
/// A send case of a copy of `v` (made now).
template <class T, class F>
[[nodiscard]] detail::send_case<T, std::decay_t<F>, true> on_send(channel<T>& ch, const std::type_identity_t<T>& v,
                                                                   F&& fn) {
  return {&ch, v, std::forward<F>(fn)};
}
/// Without a callback.
template <class T>
[[nodiscard]] auto on_send(channel<T>& ch, std::type_identity_t<T>&& v) {
  return on_send(ch, std::move(v), [] {});
}
template <class T>
[[nodiscard]] auto on_send(channel<T>& ch, const std::type_identity_t<T>& v) {
  return on_send(ch, v, [] {});
}

/// The case that runs when no other is ready: with it, select never parks.
template <class F>
[[nodiscard]] detail::default_case<std::decay_t<F>> on_default(F&& fn) {
  return {std::forward<F>(fn)};
}
[[nodiscard]] inline auto on_default() {
  return on_default([] {});
}

/// Runs one ready case (chosen at random among the ready ones), or the default case
/// if none is ready, or parks until one is. Returns the argument position of the case
/// that ran. Throws like recv/send (cancelled, timed_out, channel_closed for a send case
/// on a closed channel, fiber::error when it would park outside a fiber); a callback's
/// exception propagates.
template <class... Cases>
int select(Cases&&... cases) {
  return detail::select_impl(detail::no_deadline, cases...);
}
/// The same, but gives up at `deadline`: returns -1 then.
template <class... Cases>
int select_until(clock::time_point deadline, Cases&&... cases) {
  return detail::select_impl(deadline, cases...);
}
template <class Rep, class Period, class... Cases>
int select_for(std::chrono::duration<Rep, Period> timeout, Cases&&... cases) {
  return detail::select_impl(clock::now() + std::chrono::ceil<clock::duration>(timeout), cases...);
}

}  // namespace fiber
