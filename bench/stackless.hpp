// stackless::generator<Yield, Send>: the seed's send/yield exchange as a C++20
// (stackless) coroutine, the peer that fiber::generator is measured against.
//
//   stackless::generator<long, long> consumer() {
//     long r = 0;
//     for (;;) {
//       long n = co_yield r;   // n = yield r
//       r = n + 1;
//     }
//   }
//   auto c = consumer();
//   c.start();                 // c.send(None): run to the first co_yield
//   long r = c.send(1);        // r = c.send(1)
//
// `co_yield v` is `co_await promise.yield_value(v)`: yield_value records where v
// is and returns an awaiter that suspends, and whose await_resume hands the body
// the value that send() left in the promise. Both values stay where they are (in
// the coroutine frame and in send()'s frame) and the promise only points at them:
// each lives until the other side has read it, because the co_yield expression
// and send() are both still in progress while the other side runs.
//
// Deliberately small: no iterator, no close()/throw(). Destroying the generator
// destroys the suspended frame, which runs the destructors of its locals.
//
// The other types here are the stackless peers of the rest of fiber, written the
// way a C++20 user would write them, for bench/stackful_vs_stackless.cpp:
//
//   pull<T>                 an input range: `co_yield v` hands v to the loop over it
//   recursive_pull<T>       the same, plus `co_yield elements_of(inner)`, which hands
//                           on every element of a nested pull without re-yielding it
//                           at each level (the consumer resumes the innermost frame
//                           directly, as std::generator does in C++23)
//   task<T>                 a lazy coroutine awaited by another (`co_await t`); its end
//                           transfers to the awaiter (symmetric transfer)
//   loop, job, channel<T>   a single-threaded scheduler: a ready queue, timers,
//                           spawned jobs that can be joined, and an unbuffered
//                           awaitable channel. A suspending coroutine transfers
//                           straight to the next ready one, as a parking fiber does.
//
// Every promise_type allocates its frame through frame_new(), which records the
// size in frame_bytes: that is how the benchmark reports bytes per task exactly.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <queue>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace stackless {

/// Size of the last coroutine frame allocated (bytes, as the compiler asked for it).
inline std::size_t frame_bytes = 0;

inline void* frame_new(std::size_t n) {
  frame_bytes = n;
  return ::operator new(n);
}
inline void frame_delete(void* p, [[maybe_unused]] std::size_t n) noexcept {
#if defined(__cpp_sized_deallocation)
  ::operator delete(p, n);
#else
  ::operator delete(p);  // Clang without -fsized-deallocation
#endif
}

/// A coroutine handle that owns its frame: move-only, and destroys the frame with
/// itself. Every type below holds one, so they are all move-only (rule of zero).
template <class Promise>
struct owned_handle : std::coroutine_handle<Promise> {
  using base = std::coroutine_handle<Promise>;
  owned_handle() = default;
  explicit owned_handle(base h) noexcept : base(h) {}
  owned_handle(owned_handle&& other) noexcept : base(other.release()) {}
  owned_handle& operator=(owned_handle&& other) noexcept {
    base h = other.release();
    if (*this) this->destroy();
    base::operator=(h);
    return *this;
  }
  ~owned_handle() {
    if (*this) this->destroy();
  }
  base release() noexcept { return std::exchange(static_cast<base&>(*this), base{}); }
};

#define STACKLESS_FRAME_ALLOCATION                                              \
  static void* operator new(std::size_t n) { return ::stackless::frame_new(n); } \
  static void operator delete(void* p, std::size_t n) noexcept { ::stackless::frame_delete(p, n); }

template <class Yield, class Send>
class generator {
 public:
  struct promise_type {
    const Yield* out = nullptr;  // the value of the pending co_yield
    Send* in = nullptr;          // the value being sent, in send()'s frame
    std::exception_ptr escaped;  // an exception that left the body

    generator get_return_object() noexcept { return generator(handle::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { escaped = std::current_exception(); }
    STACKLESS_FRAME_ALLOCATION

    // Suspends the body at `co_yield value`; the co_yield evaluates to the value
    // passed to the next send().
    auto yield_value(const Yield& value) noexcept {
      out = std::addressof(value);
      struct receive {
        promise_type* promise;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<>) const noexcept {}
        Send await_resume() const { return std::move(*promise->in); }
      };
      return receive{this};
    }
  };


  /// Runs the body to its first co_yield and returns the value yielded.
  Yield start() { return resume_for_value(); }

  /// Resumes the body, whose pending co_yield evaluates to `value`; returns what it
  /// yields next.
  Yield send(Send value) {
    h_.promise().in = std::addressof(value);
    return resume_for_value();
  }

 private:
  using handle = std::coroutine_handle<promise_type>;
  explicit generator(handle h) noexcept : h_(h) {}

  Yield resume_for_value() {
    if (h_.done()) throw std::logic_error("stackless::generator: the body has finished");
    h_.resume();
    promise_type& p = h_.promise();
    if (p.escaped) std::rethrow_exception(std::exchange(p.escaped, nullptr));
    if (h_.done()) throw std::logic_error("stackless::generator: the body returned instead of yielding");
    return *p.out;
  }

  owned_handle<promise_type> h_;
};

// ---- pull<T> ----

/// The input iterator of pull and recursive_pull: Owner::advance(h) runs the body
/// to its next value (in the root's promise).
template <class Owner>
class pull_iterator {
 public:
  using handle = typename Owner::handle;
  using value_type = typename Owner::value_type;
  using difference_type = std::ptrdiff_t;
  pull_iterator& operator++() {
    Owner::advance(h_);
    return *this;
  }
  void operator++(int) { ++*this; }
  const value_type& operator*() const noexcept { return *h_.promise().value; }
  friend bool operator==(const pull_iterator& it, std::default_sentinel_t) noexcept { return it.h_.done(); }

 private:
  friend Owner;
  explicit pull_iterator(handle h) : h_(h) {}
  handle h_;
};

template <class T>
class pull {
 public:
  using value_type = T;
  struct promise_type {
    const T* value = nullptr;
    std::exception_ptr escaped;

    pull get_return_object() noexcept { return pull(handle::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(const T& v) noexcept {
      value = std::addressof(v);
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { escaped = std::current_exception(); }
    STACKLESS_FRAME_ALLOCATION
  };
  using handle = std::coroutine_handle<promise_type>;
  using iterator = pull_iterator<pull>;

  iterator begin() {
    if (!h_) throw std::logic_error("stackless::pull: moved from");
    advance(h_);
    return iterator(h_);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  friend iterator;
  explicit pull(handle h) noexcept : h_(h) {}
  static void advance(handle h) {
    h.resume();
    if (h.promise().escaped) std::rethrow_exception(std::exchange(h.promise().escaped, nullptr));
  }
  owned_handle<promise_type> h_;
};

// ---- recursive_pull<T> ----

template <class T>
class recursive_pull;

/// `co_yield elements_of(g)` in a recursive_pull body: g's elements, in place.
template <class T>
struct elements_of_t {
  recursive_pull<T> inner;
};
template <class T>
elements_of_t<T> elements_of(recursive_pull<T>&& g) {
  return {std::move(g)};
}

template <class T>
class recursive_pull {
 public:
  using value_type = T;
  struct promise_type {
    // The outermost frame (the one the consumer holds) keeps the value being
    // yielded and the innermost frame running; each frame knows its parent.
    promise_type* root = this;
    std::coroutine_handle<promise_type> current;  // root only
    std::coroutine_handle<promise_type> parent;
    const T* value = nullptr;  // root only
    std::exception_ptr escaped;

    recursive_pull get_return_object() noexcept { return recursive_pull(handle::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    auto final_suspend() noexcept {
      struct to_parent {
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(handle h) const noexcept {
          promise_type& p = h.promise();
          if (!p.parent) return std::noop_coroutine();  // the root ended: back to the consumer
          p.root->current = p.parent;
          return p.parent;  // the parent resumes after its co_yield elements_of(...)
        }
        void await_resume() const noexcept {}
      };
      return to_parent{};
    }
    std::suspend_always yield_value(const T& v) noexcept {
      root->value = std::addressof(v);
      return {};
    }
    auto yield_value(elements_of_t<T> nested) noexcept {
      struct enter {
        recursive_pull<T> inner;
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(handle h) noexcept {
          promise_type& p = inner.h_.promise();
          p.root = h.promise().root;
          p.parent = h;
          p.root->current = inner.h_;
          return inner.h_;
        }
        void await_resume() {
          if (auto e = std::exchange(inner.h_.promise().escaped, nullptr)) std::rethrow_exception(e);
        }
      };
      return enter{std::move(nested.inner)};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { escaped = std::current_exception(); }
    STACKLESS_FRAME_ALLOCATION
  };
  using handle = std::coroutine_handle<promise_type>;
  using iterator = pull_iterator<recursive_pull>;

  iterator begin() {
    if (!h_) throw std::logic_error("stackless::recursive_pull: moved from");
    h_.promise().current = h_;
    advance(h_);
    return iterator(h_);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  friend iterator;
  explicit recursive_pull(handle h) noexcept : h_(h) {}
  // Resumes the innermost frame; it runs until some frame yields a value or the
  // root ends. An exception escaping a nested frame is rethrown in its parent (at
  // the co_yield elements_of), so only the root's reaches the consumer.
  static void advance(handle root) {
    root.promise().current.resume();
    if (root.promise().escaped) std::rethrow_exception(std::exchange(root.promise().escaped, nullptr));
  }
  owned_handle<promise_type> h_;
};

// ---- task<T> ----

namespace detail {
template <class T>
struct task_result {
  std::optional<T> value;
  void return_value(T v) { value.emplace(std::move(v)); }
  T take() { return std::move(*value); }
};
template <>
struct task_result<void> {
  void return_void() noexcept {}
  void take() noexcept {}
};
}  // namespace detail

template <class T = void>
class task {
 public:
  struct promise_type : detail::task_result<T> {
    std::coroutine_handle<> continuation;
    std::exception_ptr escaped;

    task get_return_object() noexcept { return task(handle::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    auto final_suspend() noexcept {
      struct to_continuation {
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(handle h) const noexcept {
          auto c = h.promise().continuation;
          return c ? c : std::noop_coroutine();
        }
        void await_resume() const noexcept {}
      };
      return to_continuation{};
    }
    void unhandled_exception() noexcept { escaped = std::current_exception(); }
    STACKLESS_FRAME_ALLOCATION
  };
  using handle = std::coroutine_handle<promise_type>;


  // co_await t: starts t (symmetric transfer) and resumes the awaiter when t ends.
  auto operator co_await() && noexcept {
    struct awaiter {
      handle h;
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) const noexcept {
        h.promise().continuation = awaiting;
        return h;
      }
      T await_resume() const {
        if (h.promise().escaped) std::rethrow_exception(h.promise().escaped);
        return h.promise().take();
      }
    };
    return awaiter{h_};
  }

  /// Runs the task from ordinary code up to its first suspension.
  void start() { h_.resume(); }

  /// Runs the task to completion from ordinary code, when it never suspends
  /// waiting for something else (it would return here unfinished: an error).
  T run_to_end() {
    h_.resume();
    if (!h_.done()) throw std::logic_error("stackless::task::run_to_end: the task suspended");
    if (h_.promise().escaped) std::rethrow_exception(h_.promise().escaped);
    return h_.promise().take();
  }

  handle release() noexcept { return h_.release(); }

 private:
  explicit task(handle h) noexcept : h_(h) {}
  owned_handle<promise_type> h_;
};

// ---- loop, job, channel ----

using clock = std::chrono::steady_clock;

/// A single-threaded scheduler of coroutines: a FIFO ready queue and a timer heap.
/// A suspending coroutine hands the thread straight to the next ready one (up to
/// `direct_budget` times in a row before run() looks at the timers again), as a
/// parking fiber does in fiber's event_loop.
class loop {
 public:
  static constexpr int direct_budget = 256;

  void make_ready(std::coroutine_handle<> h) { ready_.push_back(h); }

  /// What a suspending coroutine returns from await_suspend: the next ready one,
  /// or back to run().
  std::coroutine_handle<> next() noexcept {
    if (ready_.empty() || ++direct_ >= direct_budget) return std::noop_coroutine();
    auto h = ready_.front();
    ready_.pop_front();
    return h;
  }

  /// `co_await lp.sleep_for(d)`.
  auto sleep_for(clock::duration d) {
    struct awaiter {
      loop& lp;
      clock::time_point when;
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) {
        lp.timers_.push(timer{when, lp.timer_seq_++, h});
        return lp.next();
      }
      void await_resume() const noexcept {}
    };
    return awaiter{*this, clock::now() + d};
  }

  /// Runs until nothing is ready and no timer is pending.
  void run() {
    for (;;) {
      direct_ = 0;
      if (!ready_.empty()) {
        auto h = ready_.front();
        ready_.pop_front();
        h.resume();
        continue;
      }
      if (timers_.empty()) return;
      auto now = clock::now();
      if (timers_.top().when > now) {
        std::this_thread::sleep_until(timers_.top().when);
        now = clock::now();
      }
      while (!timers_.empty() && timers_.top().when <= now) {
        ready_.push_back(timers_.top().h);
        timers_.pop();
      }
    }
  }

 private:
  struct timer {
    clock::time_point when;
    unsigned long seq;  // FIFO among equal deadlines
    std::coroutine_handle<> h;
    bool operator>(const timer& o) const noexcept { return when != o.when ? when > o.when : seq > o.seq; }
  };
  std::deque<std::coroutine_handle<>> ready_;
  std::priority_queue<timer, std::vector<timer>, std::greater<>> timers_;
  unsigned long timer_seq_ = 0;
  int direct_ = 0;
};

/// A spawned coroutine: loop::spawn puts it on the ready queue; `co_await j.join()`
/// waits for its end (its last act transfers to the joiner); the job object owns
/// the frame and destroys it (a job must have ended, or never started, by then).
class job {
 public:
  struct promise_type {
    loop* lp = nullptr;
    std::coroutine_handle<> joiner;
    std::exception_ptr escaped;

    job get_return_object() noexcept { return job(handle::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    auto final_suspend() noexcept {
      struct to_joiner {
        bool await_ready() const noexcept { return false; }
        std::coroutine_handle<> await_suspend(handle h) const noexcept {
          promise_type& p = h.promise();
          return p.joiner ? p.joiner : p.lp->next();
        }
        void await_resume() const noexcept {}
      };
      return to_joiner{};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { escaped = std::current_exception(); }
    STACKLESS_FRAME_ALLOCATION
  };
  using handle = std::coroutine_handle<promise_type>;

  job() = default;

  /// Queues the job on `lp` (it runs when the loop reaches it).
  void spawn(loop& lp) {
    h_.promise().lp = &lp;
    lp.make_ready(h_);
  }

  /// `co_await j.join()` from a coroutine on the same loop; rethrows what escaped.
  auto join() noexcept {
    struct awaiter {
      handle h;
      bool await_ready() const noexcept { return h.done(); }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> joiner) const noexcept {
        h.promise().joiner = joiner;
        return h.promise().lp->next();
      }
      void await_resume() const {
        if (h.promise().escaped) std::rethrow_exception(h.promise().escaped);
      }
    };
    return awaiter{h_};
  }

 private:
  explicit job(handle h) noexcept : h_(h) {}
  owned_handle<promise_type> h_;
};

/// An unbuffered channel, Go's rules without close: send parks until a receiver
/// takes the value, recv until a value comes. Waiters are served in FIFO order; a
/// woken waiter goes to the ready queue and the waker goes on (as in fiber).
template <class T>
class channel {
  struct waiter {
    std::coroutine_handle<> h;
    T* value;  // a sender's value, or a receiver's slot
    waiter* next = nullptr;
  };
  struct fifo {
    waiter* head = nullptr;
    waiter* tail = nullptr;
    void push(waiter* w) noexcept {
      (tail ? tail->next : head) = w;
      tail = w;
    }
    waiter* pop() noexcept {
      waiter* w = head;
      if (w && !(head = w->next)) tail = nullptr;
      return w;
    }
  };

 public:
  explicit channel(loop& lp) : lp_(lp) {}

  auto send(T v) {
    struct awaiter {
      channel& ch;
      T v;
      waiter w{};
      bool await_ready() {
        if (waiter* r = ch.receivers_.pop()) {
          *r->value = std::move(v);
          ch.lp_.make_ready(r->h);
          return true;
        }
        return false;
      }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) {
        w.h = h;
        w.value = &v;
        ch.senders_.push(&w);
        return ch.lp_.next();
      }
      void await_resume() const noexcept {}
    };
    return awaiter{*this, std::move(v)};
  }

  auto recv() {
    struct awaiter {
      channel& ch;
      T slot{};
      waiter w{};
      bool await_ready() {
        if (waiter* s = ch.senders_.pop()) {
          slot = std::move(*s->value);
          ch.lp_.make_ready(s->h);
          return true;
        }
        return false;
      }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) {
        w.h = h;
        w.value = &slot;
        ch.receivers_.push(&w);
        return ch.lp_.next();
      }
      T await_resume() { return std::move(slot); }
    };
    return awaiter{*this};
  }

 private:
  loop& lp_;
  fifo senders_, receivers_;
};

}  // namespace stackless
