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
//
// Copied stacks: generator(fiber::stack_kind::copied, body) runs the body on a
// stack its thread shares among its copied-stack generators (stack.hpp). When it
// yields, its frames stay there; when another copied-stack generator needs the
// place, the bytes in use (from its stack pointer to the top: a few hundred for
// a simple body) are copied to a buffer of their size, and back, to the same
// addresses, before it runs again. A suspended generator then costs that buffer
// and a small block instead of a stack of its own (4 KiB at least). The rules:
//   - nothing may use a pointer into a suspended copied-stack generator's frames
//     (its locals) while another copied-stack generator of the thread runs. The
//     values it yields are moved to a slot off its stack (what start(), send(),
//     next() return, and what a range-for's iterator refers to, stay valid);
//   - it runs on the thread it first ran on (its frames go to and from that
//     thread's shared stack), and not from a task that may migrate
//     (spawn_options::migratable): fiber::error otherwise, before anything
//     changes. Destroyed on another thread, it is not unwound (stderr says so);
//   - a body that parks its fiber (an event loop's sleep, a channel, IO) holds
//     its shared stack until it yields: resuming meanwhile another copied-stack
//     generator that started on that stack throws fiber::error naming it (a
//     generator started meanwhile takes another stack). Generators that park
//     are best given their own stacks.
// A copied-stack generator may resume another one, on the same stack or not
// (the caller's frames are then copied away while the other runs).
#pragma once

#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "fiber/context.hpp"
#include "fiber/detail/raise.hpp"

namespace fiber {

namespace detail {
struct no_send_value {};
void report_generator_destruction_error(std::exception_ptr error) noexcept;

// Copied-stack generators (stack_kind::copied): fiber/src/copied_generators.cpp.
// A generator's place among its thread's shared stacks, and its copied frames.
struct copied_frames;
// `body` is the generator's body, off the stack, destroyed by `drop`; `make`
// makes its context on the shared stack as it first runs; `keep` moves the
// value it yielded off its frames (called before they are copied away while its
// resumer waits: a resume from its own stack). Throws bad_alloc.
copied_frames* copied_frames_make(void* body, void (*drop)(void*) noexcept, context (*make)(void*, copied_frames*),
                                  void (*keep)(void*) noexcept);
// Frees what copied_frames_make() made (the context has ended or was dropped).
void copied_frames_free(copied_frames* f) noexcept;
// Switches to the generator (its context, or, the first time, none: made then)
// with its bytes in place; returns where it stopped (context::resume()). Throws
// fiber::error when it cannot run now (its stack in use mid-body, another thread,
// a task that may migrate), before anything has changed: copied_check().
context copied_resume(copied_frames* f, context&& target);
void copied_check(const copied_frames* f);
// Before its suspended context is destroyed (unwound): puts its bytes in place.
// False if they cannot be (a running generator holds its stack, or another
// thread destroys it): its record is then released without unwinding, and that
// is reported on stderr.
bool copied_unwind_in_place(copied_frames* f) noexcept;
// The stack of a copied-stack generator's context, and its record once made.
struct copied_generator_stack {
  copied_frames* frames;
  stack_memory allocate() const noexcept;
  void deallocate(stack_memory s) const noexcept;
};
void copied_made(copied_frames* f, record_base* record) noexcept;
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
      out_ = std::addressof(value);  // (on a copied stack, moved off it once suspended: resume_copied())
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
    Yield* out_ = nullptr;         // the value being yielded, in yield()'s frame (or box_)
    std::optional<Yield>* box_ = nullptr;     // a copied-stack generator's: the value yielded,
    std::optional<send_arg>* in_box_ = nullptr;  // and the value sent
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

  /// The same on a stack of the given kind: stack_kind::own as above, or
  /// stack_kind::copied (the thread's shared stack; the rules are at the top of
  /// this file). Throws fiber::error for any other value.
  template <class F>
    requires std::is_invocable_v<std::decay_t<F>&, yielder&>
  generator(stack_kind kind, F&& body) {
    using D = std::decay_t<F>;
    if (kind == stack_kind::own) {
      generator(std::allocator_arg, cached_stack{}, std::forward<F>(body)).swap(*this);
      return;
    }
    if (kind != stack_kind::copied) throw error("fiber::generator: no such stack_kind");
    auto* b = new copied_body<D>(std::forward<F>(body));
    try {
      copied_ = detail::copied_frames_make(b, &drop_copied<D>, &make_copied<D>, &keep_copied<D>);
    } catch (...) {
      delete b;
      throw;
    }
    y_ = &*b->fiber;
    y_->escaped_ = &b->escaped;
    y_->box_ = &b->box;
    y_->in_box_ = &b->in_box;
  }

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
        copied_(std::exchange(other.copied_, nullptr)),
        started_(std::exchange(other.started_, true)) {  // moved-from: done
    if (y_ && !copied_) y_->escaped_ = &escaped_;
  }
  generator& operator=(generator&& other) noexcept {
    generator(std::move(other)).swap(*this);
    return *this;
  }
  generator(const generator&) = delete;
  generator& operator=(const generator&) = delete;

  ~generator() {
    // (An unstarted fiber is ended by ~context.)
    if (fiber_ && started_) {
      try {
        close();
      } catch (...) {
        // As Python does for a generator collected while suspended: report, go on.
        detail::report_generator_destruction_error(std::current_exception());
      }
    }
    // If the body yielded again after generator_exit, ~context unwinds it by force.
    if (copied_) [[unlikely]] drop_copied_frames();
  }

  void swap(generator& other) noexcept {
    fiber_.swap(other.fiber_);
    std::swap(y_, other.y_);
    escaped_.swap(other.escaped_);
    std::swap(copied_, other.copied_);
    std::swap(started_, other.started_);
    if (y_ && !copied_) y_->escaped_ = &escaped_;
    if (other.y_ && !other.copied_) other.y_->escaped_ = &other.escaped_;
  }

  /// Python's send(None) on a new generator: runs the body to its first yield.
  Yield start() {
    check_not_running("start");
    if (copied_) [[unlikely]] detail::copied_check(copied_);
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
    if (!started_ || !fiber_ || copied_) [[unlikely]]
      return send_slow(std::move(value));
    y_->in_ = std::addressof(value);
    return resume_own_for_value();
  }

  /// The next yielded value, starting the generator if needed (Python's next()).
  FIBER_SWITCH_INLINE Yield next()
    requires(std::is_void_v<Send>)
  {
    if (!fiber_ || copied_) [[unlikely]]
      return next_slow();
    started_ = true;
    return resume_own_for_value();
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
    if (copied_) [[unlikely]] detail::copied_check(copied_);
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
    if (copied_ && resumable()) [[unlikely]] detail::copied_check(copied_);
    const bool go = resumable();
    started_ = true;
    if (go) resume();
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

  // A copied-stack generator's body and yielded value, on the heap: what its
  // resumer reaches of it stays put while its frames are copied away.
  template <class F>
  struct copied_body {
    template <class G>
    explicit copied_body(G&& g) : fiber(std::in_place, std::forward<G>(g)) {}
    std::optional<body_fiber<F>> fiber;  // until its context ends, as in a record
    std::optional<Yield> box;
    std::optional<send_arg> in_box;
    std::exception_ptr escaped;
  };
  // Its context's entry function (in its record, on the shared stack). As the
  // record goes, so do the body and its yielder (the resumer's context
  // included: a body unwound by force unwinds its resumer, as on a stack of
  // its own).
  template <class F>
  struct copied_entry {
    explicit copied_entry(copied_body<F>* body) noexcept : b(body) {}
    copied_entry(copied_entry&& other) noexcept : b(std::exchange(other.b, nullptr)) {}
    copied_entry& operator=(copied_entry&&) = delete;
    ~copied_entry() {
      if (b) b->fiber.reset();
    }
    context operator()(context&& caller) { return (*b->fiber)(std::move(caller)); }
    copied_body<F>* b;
  };
  template <class F>
  static void drop_copied(void* b) noexcept {
    delete static_cast<copied_body<F>*>(b);
  }
  // The value a suspended copied-stack body yielded, moved off its frames (a
  // move that throws here ends the process: its resumer waits on another stack).
  static void keep_value(yielder& y) {
    if (y.box_->has_value() && y.out_ == std::addressof(**y.box_)) return;  // (kept already)
    y.out_ = std::addressof(y.box_->emplace(std::move(*y.out_)));
  }
  template <class F>
  static void keep_copied(void* b) noexcept {
    keep_value(*static_cast<copied_body<F>*>(b)->fiber);
  }
  template <class F>
  static context make_copied(void* b, detail::copied_frames* f) {
    auto made = detail::make_fiber<copied_entry<F>>(detail::copied_generator_stack{f},
                                                   copied_entry<F>(static_cast<copied_body<F>*>(b)));
    detail::copied_made(f, made.record);
    return context(made.sp);
  }
  // Out of line, off the destructor's path: unwinds a suspended copied-stack
  // body with its bytes in place (or drops it: copied_unwind_in_place), then
  // frees its frames and body.
  [[gnu::noinline]] void drop_copied_frames() noexcept {
    if (fiber_ && !detail::copied_unwind_in_place(copied_)) fiber_.sp_ = nullptr;
    fiber_ = context{};
    detail::copied_frames_free(std::exchange(copied_, nullptr));
  }

  // Whether resume() has a body to run: a suspended one, or (copied stacks) one
  // whose context is made as it first runs.
  bool resumable() const noexcept { return fiber_ || (copied_ && !started_); }

  // close() and close_quietly(): wakes the pending yield with `how`, once.
  void end(typename yielder::wake how, const char* operation) {
    check_not_running(operation);
    if (!resumable()) return;
    if (!started_) {  // never ran: nothing to unwind
      started_ = true;
      fiber_ = context{};
      y_ = nullptr;
      return;
    }
    if (copied_) [[unlikely]] detail::copied_check(copied_);
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
    if (y_ != nullptr && !fiber_ && started_) [[unlikely]]
      throw error(std::string("fiber::generator::") + operation + "(): the generator is already executing (called from inside its own body)");
  }

  // send() and next() off their path: refused, or on a copied stack.
  [[gnu::noinline]] Yield send_slow(send_arg value) {
    if (!started_ || !fiber_) send_refused();
    detail::copied_check(copied_);
    // Off the sender's stack: its frames may go away while the body runs.
    y_->in_ = std::addressof(y_->in_box_->emplace(std::move(value)));
    return resume_for_value();
  }
  [[gnu::noinline]] Yield next_slow() {
    if (!resumable()) {  // running (called from its body) or finished
      check_not_running("next");
      throw stop_iteration("fiber::generator::next(): the generator has finished");
    }
    if (copied_) detail::copied_check(copied_);
    started_ = true;
    return resume_for_value();
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
    if (copied_) [[unlikely]]
      return resume_copied();
    return resume_own();
  }
  // resume() on a stack of its own.
  FIBER_SWITCH_INLINE bool resume_own() {
    fiber_ = std::move(fiber_).resume();
    if (fiber_) [[likely]]
      return true;
    y_ = nullptr;  // the record holding it is gone with the fiber
    if (escaped_) std::rethrow_exception(std::exchange(escaped_, nullptr));
    return false;
  }

  // resume() of a copied-stack generator: what its body writes is off the
  // stack (copied_body), the generator object included, which may live among
  // frames copied away while the body runs.
  [[gnu::noinline]] bool resume_copied() {
    std::exception_ptr* const escaped = y_->escaped_;
    y_->box_->reset();  // (the value yielded last goes as the body resumes, as on its own stack)
    fiber_ = detail::copied_resume(copied_, std::move(fiber_));
    if (fiber_) {
      keep_value(*y_);  // (its frames are in place until another copied-stack generator runs)
      return true;
    }
    y_ = nullptr;
    if (*escaped) std::rethrow_exception(std::exchange(*escaped, nullptr));
    return false;
  }

  FIBER_SWITCH_INLINE Yield resume_own_for_value() {
    if (!resume_own()) throw stop_iteration("fiber::generator: the body returned instead of yielding");
    return std::move(*y_->out_);
  }

  FIBER_SWITCH_INLINE Yield resume_for_value() {
    if (!resume()) throw stop_iteration("fiber::generator: the body returned instead of yielding");
    return std::move(*y_->out_);
  }

  context fiber_;                 // the body's fiber while it is suspended
  yielder* y_ = nullptr;          // inside the fiber's record; null once it ended
  std::exception_ptr escaped_;    // filled by the body's fiber as it ends by exception
  detail::copied_frames* copied_ = nullptr;  // a copied-stack generator's frames
  bool started_ = false;
};

}  // namespace fiber
