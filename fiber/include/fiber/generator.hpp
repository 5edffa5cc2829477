// fiber::generator<Yield, Send>: Python's generators, stackful.
//
//   fiber::generator<std::string, int> consumer{[](auto& co) {
//     std::string reply;
//     while (int n = co.yield(reply))   // n = yield r
//       reply = "200 OK";
//   }};
//   consumer.start();                   // c.send(None): run to the first yield
//   std::string r = consumer.send(1);   // r = c.send(1)
//   consumer.close();                   // c.close()
//
// The body runs on its own stack, so any function it calls, however deep, can
// yield through the yielder reference; a C++20 coroutine can only suspend in its
// own frame.
//
// Rules (Python's):
//   - start() runs the body to its first yield and returns the yielded value.
//   - send(x) resumes the body, making its pending yield() return x, and returns the
//     next yielded value. send() before start() is an error.
//   - If the body returns instead of yielding, start()/send()/next() throw
//     fiber::stop_iteration; so does any resumption of a finished generator.
//   - An exception escaping the body propagates out of the call that resumed it.
//   - close() raises fiber::generator_exit at the pending yield so the body's stack
//     unwinds; it succeeds if the body lets that propagate or returns, and throws
//     fiber::error if the body yields again. Closing an unstarted or finished
//     generator just finishes it. Destroying an unfinished generator closes it.
//   - Not Python's: close_quietly() ends the body without an exception: its pending
//     yield returns an empty value (Send{}), closing() is true, and the body returns
//     (if it yields again instead, close() follows). examples/producer_consumer_quiet.cpp.
//   - throw_exception(e) raises e at the pending yield (Python's throw()).
//   - With Send = void, a generator is an input range: for (auto& v : g).
#pragma once

#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "fiber/context.hpp"
#include "fiber/detail/raise.hpp"

namespace fiber {

namespace detail {
struct no_send_value {};
void report_generator_destruction_error(std::exception_ptr error) noexcept;
}  // namespace detail

template <class Yield, class Send = void>
class generator {
  static_assert(std::is_object_v<Yield> && !std::is_array_v<Yield>,
                "fiber::generator<Yield, Send>: Yield must be an object type");
  static_assert(std::is_void_v<Send> || (std::is_object_v<Send> && !std::is_array_v<Send>),
                "fiber::generator<Yield, Send>: Send must be void or an object type");

  using send_arg = std::conditional_t<std::is_void_v<Send>, detail::no_send_value, Send>;

 public:
  /// What the body receives. Lives on the generator's own stack.
  class yielder {
   public:
    /// Suspends the body, handing `value` to whoever resumed it; returns the value
    /// sent by the next send() (nothing when Send = void). Throws what close() or
    /// throw_exception() raise at this point. After close_quietly() it returns a
    /// value-initialized Send instead, and closing() is true.
    FIBER_SWITCH_INLINE Send yield(Yield value) {
      out_ = std::addressof(value);
      caller_ = std::move(caller_).resume();
      if (wake_ != wake::with_value) [[unlikely]] {
        const wake w = std::exchange(wake_, wake::with_value);
        // Thrown here, in the body's own frame, so that the unwinder walks no frame
        // of ours on the way to the body's handlers.
        if (w == wake::with_exit) detail::raise_generator_exit();
        if (w == wake::with_exception) rethrow_injected();
        if constexpr (!std::is_void_v<Send>) return Send{};  // wake::quietly
      }
      if constexpr (!std::is_void_v<Send>) return std::move(*in_);
    }

    /// True while the generator is being closed (close() or close_quietly()): a
    /// body woken by close_quietly() checks it and returns.
    bool closing() const noexcept { return closing_; }

    yielder(const yielder&) = delete;
    yielder& operator=(const yielder&) = delete;

   private:
    friend class generator;
    yielder() = default;

    // Out of line, and rare: the code of every yield stays small (each frame that
    // yields keeps room for what it inlines; SPARC's 5000-deep recursion test
    // overflowed its stack when this was inline).
    [[noreturn, gnu::noinline]] void rethrow_injected() { std::rethrow_exception(std::exchange(inject_, nullptr)); }

    // What the pending yield() does when the body is resumed.
    enum class wake : unsigned char {
      with_value,      // returns the value sent (send(), next())
      with_exit,       // throws generator_exit (close())
      with_exception,  // rethrows inject_ (throw_exception())
      quietly,         // returns a value-initialized Send (close_quietly())
    };

    context caller_;               // who resumed the body: where yield() goes
    Yield* out_ = nullptr;         // the value being yielded, in yield()'s frame
    send_arg* in_ = nullptr;       // the value being sent, in send()'s frame
    std::exception_ptr inject_;    // raised at the pending yield (wake::with_exception)
    std::exception_ptr* escaped_ = nullptr;  // where an exception leaving the body goes
    wake wake_ = wake::with_value;
    bool closing_ = false;         // inside close() or close_quietly()
  };

  /// A generator whose body is `body(yielder&)`, on a protected stack of
  /// default_stack_size from the thread's cache (cached_stack). Nothing runs until
  /// start() (or next(), or begin()).
  template <class F>
    requires(!std::is_same_v<std::decay_t<F>, generator> && std::is_invocable_v<std::decay_t<F>&, yielder&>)
  explicit generator(F&& body) : generator(std::allocator_arg, cached_stack{}, std::forward<F>(body)) {}

  /// The same, with the stack taken from `allocator` (see stack.hpp).
  /// `body` must be callable as `body(yielder&)`.
  template <class StackAllocator, class F>
    requires std::is_invocable_v<std::decay_t<F>&, yielder&>
  generator(std::allocator_arg_t, StackAllocator allocator, F&& body) {
    auto made = detail::make_fiber<body_fiber<std::decay_t<F>>>(std::move(allocator), std::forward<F>(body));
    fiber_ = context(made.sp);
    y_ = made.fn;
    y_->escaped_ = &escaped_;
  }

  generator(generator&& other) noexcept
      : fiber_(std::move(other.fiber_)),
        y_(std::exchange(other.y_, nullptr)),
        escaped_(std::move(other.escaped_)),
        started_(std::exchange(other.started_, true)) {  // moved-from: done
    if (y_) y_->escaped_ = &escaped_;
  }
  generator& operator=(generator&& other) noexcept {
    generator(std::move(other)).swap(*this);
    return *this;
  }
  generator(const generator&) = delete;
  generator& operator=(const generator&) = delete;

  ~generator() {
    if (!fiber_ || !started_) return;  // an unstarted fiber is ended by ~context
    try {
      close();
    } catch (...) {
      // As Python does for a generator collected while suspended: report, go on.
      detail::report_generator_destruction_error(std::current_exception());
    }
    // If the body yielded again after generator_exit, ~context unwinds it by force.
  }

  void swap(generator& other) noexcept {
    fiber_.swap(other.fiber_);
    std::swap(y_, other.y_);
    escaped_.swap(other.escaped_);
    std::swap(started_, other.started_);
    if (y_) y_->escaped_ = &escaped_;
    if (other.y_) other.y_->escaped_ = &other.escaped_;
  }

  /// Python's send(None) on a new generator: runs the body to its first yield.
  Yield start() {
    check_not_running("start");
    if (done()) throw stop_iteration("fiber::generator::start(): the generator has finished");
    if (started_) throw error("fiber::generator::start(): the generator has already started");
    started_ = true;
    return resume_for_value();
  }

  /// Resumes the body, whose pending yield() returns `value`; returns what it
  /// yields next. Throws stop_iteration if the body has finished or finishes now.
  FIBER_SWITCH_INLINE Yield send(send_arg value)
    requires(!std::is_void_v<Send>)
  {
    if (!started_ || !fiber_) [[unlikely]]
      send_refused();
    y_->in_ = std::addressof(value);
    return resume_for_value();
  }

  /// The next yielded value, starting the generator if needed (Python's next()).
  FIBER_SWITCH_INLINE Yield next()
    requires(std::is_void_v<Send>)
  {
    if (!fiber_) [[unlikely]] {  // running (called from its body) or finished
      check_not_running("next");
      throw stop_iteration("fiber::generator::next(): the generator has finished");
    }
    started_ = true;
    return resume_for_value();
  }

  /// Raises `e` at the pending yield and returns the next yielded value (Python's
  /// throw()). On an unstarted generator the body never runs and `e` is rethrown;
  /// on a finished one `e` is rethrown.
  Yield throw_exception(std::exception_ptr e) {
    check_not_running("throw_exception");
    if (!e) throw error("fiber::generator::throw_exception(): null exception_ptr");
    if (!started_) {
      started_ = true;
      fiber_ = context{};
      y_ = nullptr;
    }
    if (!fiber_) std::rethrow_exception(e);
    y_->inject_ = std::move(e);
    y_->wake_ = yielder::wake::with_exception;
    return resume_for_value();
  }
  template <class E>
  Yield throw_exception(E&& e) {
    return throw_exception(std::make_exception_ptr(std::forward<E>(e)));
  }

  /// Raises generator_exit at the pending yield so the body unwinds (Python's
  /// close()). Throws fiber::error if the body yields instead, and propagates any
  /// other exception the body throws while closing. The generator_exit is thrown
  /// in the body's frame and caught where the body was called, so it crosses only
  /// the body's frames, once.
  void close() { end(yielder::wake::with_exit, "close"); }

  /// Ends the body without an exception: its pending yield returns a
  /// value-initialized Send (nothing, for Send = void) and the body's closing()
  /// is true, so a body written for it checks and returns:
  ///
  ///   while (int n = co.yield(reply)) ...   // n == 0 after close_quietly()
  ///
  /// Much cheaper than close() (no unwinder runs). If the body yields again
  /// instead of returning, close() follows (generator_exit at that yield), so the
  /// generator is finished either way. Exceptions from the body propagate.
  void close_quietly()
    requires(std::is_void_v<Send> || std::is_default_constructible_v<Send>)
  {
    end(yielder::wake::quietly, "close_quietly");
    if (fiber_) close();
  }

  /// True once the body has finished (returned, thrown, or been closed).
  bool done() const noexcept { return started_ && !fiber_; }
  bool started() const noexcept { return started_; }

  // ---- input range, for Send = void ----
  class iterator {
   public:
    using value_type = Yield;
    using difference_type = std::ptrdiff_t;
    using reference = Yield&;
    using iterator_concept = std::input_iterator_tag;

    iterator() = default;
    Yield& operator*() const { return *g_->y_->out_; }
    Yield* operator->() const { return g_->y_->out_; }
    iterator& operator++() {
      if (!g_->fiber_) throw stop_iteration("fiber::generator: iterator incremented past the end");
      g_->resume();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept { return !it.g_ || it.g_->done(); }

   private:
    friend class generator;
    explicit iterator(generator* g) : g_(g) {}
    generator* g_ = nullptr;
  };

  /// Resumes the body to its next yield (the first, on a new generator): a
  /// generator is a single-pass range, so after next() a range-for goes on with
  /// the value after the one next() returned, as Python's `for` does.
  iterator begin()
    requires(std::is_void_v<Send>)
  {
    check_not_running("begin");
    started_ = true;
    if (fiber_) resume();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  template <class F>
  struct body_fiber : yielder {
    template <class G>
    explicit body_fiber(G&& g) : body(std::forward<G>(g)) {}

    context operator()(context&& caller) {
      this->caller_ = std::move(caller);
      try {
        std::invoke(body, static_cast<yielder&>(*this));
      } catch (const generator_exit&) {
        // close(): the body let it through, which ends it cleanly. Raised by the
        // body on its own, it propagates, as any other exception does. (First: the
        // handler close() looks for is matched without a type comparison before it.)
        if (!this->closing_) *this->escaped_ = std::current_exception();
      } catch (const detail::forced_unwind&) {
        throw;  // the generator is being destroyed: let the context layer end us
      } catch (...) {
        *this->escaped_ = std::current_exception();
      }
      return std::move(this->caller_);
    }

    F body;
  };

  // close() and close_quietly(): wakes the pending yield with `how`, once.
  void end(typename yielder::wake how, const char* operation) {
    check_not_running(operation);
    if (!fiber_) return;
    if (!started_) {  // never ran: nothing to unwind
      started_ = true;
      fiber_ = context{};
      y_ = nullptr;
      return;
    }
    y_->wake_ = how;
    y_->closing_ = true;
    if (!resume()) return;  // finished (or threw: resume() rethrew it)
    y_->closing_ = false;
    if (how == yielder::wake::with_exit)
      throw error("fiber::generator::close(): the body yielded after generator_exit instead of finishing");
  }

  // While the body runs, its context is out of fiber_ (inside resume()), but the
  // record is alive: that is how a call from inside the body itself is recognised.
  void check_not_running(const char* operation) const {
    if (y_ != nullptr && !fiber_) [[unlikely]]
      throw error(std::string("fiber::generator::") + operation + "(): the generator is already executing (called from inside its own body)");
  }

  // Why send() cannot resume: out of line, off its path.
  [[noreturn, gnu::noinline]] void send_refused() const {
    check_not_running("send");
    if (!started_) throw error("fiber::generator::send(): the generator has not started; call start() first");
    throw stop_iteration("fiber::generator::send(): the generator has finished");
  }

  // Resumes the body. Returns true if it yielded, false if it returned; rethrows
  // what escaped it (the body's record points escaped_ at ours: set as it is made
  // and whenever the generator moves).
  FIBER_SWITCH_INLINE bool resume() {
    fiber_ = std::move(fiber_).resume();
    if (fiber_) [[likely]]
      return true;
    y_ = nullptr;  // the record holding it is gone with the fiber
    if (escaped_) std::rethrow_exception(std::exchange(escaped_, nullptr));
    return false;
  }

  FIBER_SWITCH_INLINE Yield resume_for_value() {
    if (!resume()) throw stop_iteration("fiber::generator: the body returned instead of yielding");
    return std::move(*y_->out_);
  }

  context fiber_;                 // the body's fiber while it is suspended
  yielder* y_ = nullptr;          // inside the fiber's record; null once it ended
  std::exception_ptr escaped_;    // filled by the body's fiber as it ends by exception
  bool started_ = false;
};

}  // namespace fiber
