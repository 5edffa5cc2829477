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
#pragma once

#include <coroutine>
#include <exception>
#include <memory>
#include <stdexcept>
#include <utility>

namespace stackless {

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

  generator(generator&& other) noexcept : h_(std::exchange(other.h_, nullptr)) {}
  generator& operator=(generator&& other) noexcept {
    std::swap(h_, other.h_);
    return *this;
  }
  generator(const generator&) = delete;
  generator& operator=(const generator&) = delete;
  ~generator() {
    if (h_) h_.destroy();
  }

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

  handle h_;
};

}  // namespace stackless
