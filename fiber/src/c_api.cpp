// The C API (fiber/fiber.h) over the C++ one. Every entry point turns what the C++
// side throws into a fiber_status and a per-thread message; only the library's
// forced unwinding (a loop or fiber destroyed while a task is parked) is let
// through, since it must unwind the task's stack to its base.
//
// Every handle it gives out points to a handle_box (below), not to its object, so
// that a handle used after its destroy, destroyed twice, or of another kind is
// refused with a message instead of reaching freed memory.
#include "fiber/fiber.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>
#include <algorithm>

#include "fiber/channel.hpp"
#include "fiber/detail/scheduler.hpp"
#include "fiber/context.hpp"
#include "fiber/error.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/io.hpp"
#include "fiber/stack.hpp"
#include "per_thread.hpp"

namespace {

FIBER_PER_THREAD(std::string, last_error)

int fail(int status, const std::string& message) {
  last_error() = message;
  return status;
}

// Runs fn() (which returns a fiber_status) and maps what it throws.
template <class F>
int guarded(const char* operation, F&& fn) {
  try {
    return fn();
  } catch (const fiber::detail::forced_unwind&) {
    throw;  // the fiber's stack is being unwound by the library: not an error
  } catch (const fiber::cancelled&) {
    return fail(FIBER_CANCELLED, std::string(operation) + ": the task was cancelled");
  } catch (const fiber::timed_out& e) {
    return fail(FIBER_TIMEOUT, std::string(operation) + ": " + e.what());
  } catch (const fiber::channel_closed& e) {
    return fail(FIBER_CLOSED, std::string(operation) + ": " + e.what());
  } catch (const std::bad_alloc& e) {
    return fail(FIBER_ENOMEM, std::string(operation) + ": " + e.what());
  } catch (const fiber::error& e) {
    return fail(FIBER_EINVAL, e.what());
  } catch (const std::exception& e) {
    return fail(FIBER_EXCEPTION, std::string(operation) + ": C++ exception: " + e.what());
  } catch (...) {
    return fail(FIBER_EXCEPTION, std::string(operation) + ": a C++ exception of unknown type");
  }
}

// ---- handles -------------------------------------------------------------------
//
// A fiber_t*, fiber_loop*, fiber_task* or fiber_chan* points to a handle_box, which
// points to the object. A call checks its handle with one atomic load and compare
// (object_of), and a destroy takes it out of service with one compare-exchange
// (retire). The invariants that make a stale handle safe to look at:
//  1. A box is never returned to malloc: boxes come in chunks that live as long as
//     the process, so reading a stale handle's box is defined (and clean under ASan).
//  2. A box's tag is its object's kind and whether it is live; it is live exactly
//     from the end of the create to the start of the destroy. Of two destroys of a
//     handle, even on two threads, exactly one turns it from live to dead and
//     frees the object; the other is refused.
//  3. A dead box waits in a FIFO and is given out again only when more than
//     `quarantine` boxes wait: a handle is known to be destroyed for at least the
//     next `quarantine` destroys of any kind. After that its box may hold a new
//     object (fiber.h says so): the price of never growing without bound.
// A pointer that never was a handle is refused only if its memory does not happen
// to hold a live tag: the tags carry a magic number, but this is not a guarantee.

enum class handle_kind : std::uint32_t { fiber = 1, loop = 2, task = 3, chan = 4 };

constexpr std::uint32_t tag_magic = 0xf1be0000;
constexpr std::uint32_t tag_live = 0x100;
constexpr std::uint32_t tag_kind = 0xff;

constexpr std::uint32_t live_tag(handle_kind k) { return tag_magic | tag_live | static_cast<std::uint32_t>(k); }
constexpr std::uint32_t dead_tag(handle_kind k) { return tag_magic | static_cast<std::uint32_t>(k); }

struct handle_box {
  std::atomic<std::uint32_t> tag{0};  // 0: never given out
  std::atomic<void*> object{nullptr};
  handle_box* next_free = nullptr;  // while dead: the next in the FIFO
};

// 4096 boxes of 24 bytes: at most 96 KiB held back, for a detection window of
// 4096 destroys (fiber.h's Errors section gives the number).
constexpr std::size_t quarantine = 4096;

struct box_chunk {
  static constexpr std::size_t size = 1024;
  explicit box_chunk(box_chunk* older) : next(older) {}
  box_chunk* next;  // every chunk stays reachable from box_registry::chunks
  handle_box boxes[size];
};

struct box_registry {
  std::mutex mutex;
  box_chunk* chunks = nullptr;  // the newest first
  std::size_t fresh = 0;        // boxes at the end of chunks->boxes never given out
  handle_box* oldest_free = nullptr;
  handle_box* newest_free = nullptr;
  std::size_t free_count = 0;
};

// Never destroyed: a static destructor elsewhere may still destroy a handle at exit.
box_registry& registry() {
  static box_registry* const r = new box_registry;
  return *r;
}

// A box for a new handle, not live yet. Throws std::bad_alloc.
handle_box* take_box() {
  box_registry& r = registry();
  handle_box* box;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    if (r.free_count > quarantine) {
      box = r.oldest_free;
      r.oldest_free = box->next_free;
      --r.free_count;
    } else {
      if (r.fresh == 0) {
        r.chunks = new box_chunk(r.chunks);
        r.fresh = box_chunk::size;
      }
      box = &r.chunks->boxes[box_chunk::size - r.fresh--];
    }
  }
  return box;
}

// Puts a box that is not live (retired, or taken and not used) at the end of the FIFO.
void free_box(handle_box* box) {
  box_registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  box->next_free = nullptr;
  (r.newest_free ? r.newest_free->next_free : r.oldest_free) = box;
  r.newest_free = box;
  ++r.free_count;
}

struct fiber_object;
struct loop_object;
struct task_object;
struct chan_object;

template <class Handle>
struct handle_traits;
template <>
struct handle_traits<fiber_t> {
  using object = fiber_object;
  static constexpr handle_kind kind = handle_kind::fiber;
};
template <>
struct handle_traits<fiber_loop> {
  using object = loop_object;
  static constexpr handle_kind kind = handle_kind::loop;
};
template <>
struct handle_traits<fiber_task> {
  using object = task_object;
  static constexpr handle_kind kind = handle_kind::task;
};
template <>
struct handle_traits<fiber_chan> {
  using object = chan_object;
  static constexpr handle_kind kind = handle_kind::chan;
};
template <class Handle>
using object_t = typename handle_traits<Handle>::object;

template <class Handle>
handle_box* box_of(const Handle* h) noexcept {
  return reinterpret_cast<handle_box*>(const_cast<Handle*>(h));
}

// The handle of a new object, make(handle) (a std::unique_ptr), which the box then
// owns. The box is taken first: making an object may start something (a task), and
// it must not be left without its handle for want of a box.
template <class Handle, class Make>
Handle* give_out(Make&& make) {
  handle_box* box = take_box();
  Handle* handle = reinterpret_cast<Handle*>(box);
  object_t<Handle>* object;
  try {
    object = make(handle).release();
  } catch (...) {
    free_box(box);
    throw;
  }
  box->object.store(object, std::memory_order_relaxed);
  box->tag.store(live_tag(handle_traits<Handle>::kind), std::memory_order_release);
  return handle;
}

// The object of a live handle of the right kind; nullptr for NULL, a destroyed
// handle or one of another kind (then refuse() says which).
template <class Handle>
object_t<Handle>* object_of(const Handle* h) noexcept {
  if (!h) return nullptr;
  const handle_box* box = box_of(h);
  if (box->tag.load(std::memory_order_acquire) != live_tag(handle_traits<Handle>::kind)) [[unlikely]]
    return nullptr;
  return static_cast<object_t<Handle>*>(box->object.load(std::memory_order_relaxed));
}

struct kind_names {
  const char* type;
  const char* create;
  const char* destroy;
};

const kind_names& names_of(std::uint32_t kind) {
  static const kind_names names[] = {{"handle", "its create function", "its destroy function"},
                                     {"fiber_t", "fiber_create", "fiber_destroy"},
                                     {"fiber_loop", "fiber_loop_create", "fiber_loop_destroy"},
                                     {"fiber_task", "fiber_spawn", "fiber_task_release"},
                                     {"fiber_chan", "fiber_chan_create", "fiber_chan_destroy"}};
  return names[kind < std::size(names) ? kind : 0];
}

// FIBER_EINVAL, with a message saying why object_of() refused h.
int refuse(const char* call, const void* h, handle_kind want) {
  const kind_names& wanted = names_of(static_cast<std::uint32_t>(want));
  const std::string head = std::string(call) + ": the ";
  if (!h) return fail(FIBER_EINVAL, head + wanted.type + " is NULL");
  const std::uint32_t tag = static_cast<const handle_box*>(h)->tag.load(std::memory_order_relaxed);
  const kind_names& found = names_of(tag & tag_kind);
  if (tag == dead_tag(want))
    return fail(FIBER_EINVAL,
                head + wanted.type + " handle is not live: it was destroyed already (" + wanted.destroy + ")");
  if ((tag & ~(tag_live | tag_kind)) == tag_magic && (tag & tag_live))
    return fail(FIBER_EINVAL, head + "handle is a " + found.type + ", not a " + wanted.type);
  if ((tag & ~(tag_live | tag_kind)) == tag_magic)
    return fail(FIBER_EINVAL, head + "handle is not a live " + wanted.type + ": it is a destroyed " + found.type);
  return fail(FIBER_EINVAL, head + wanted.type + " handle is not live (destroyed long ago, or never created by " +
                                wanted.create + ")");
}

template <class Handle>
int refuse(const char* call, const Handle* h) {
  return refuse(call, static_cast<const void*>(box_of(h)), handle_traits<Handle>::kind);
}

// Takes a live handle out of service and returns its object, for the caller to
// destroy and then hand the box to free_box(). nullptr for NULL (ignored) and for
// a handle that is not live or of another kind: reported on stderr and in
// fiber_last_error(), and otherwise ignored, since a void destroy has no status to
// return and a second free must never happen.
template <class Handle>
object_t<Handle>* retire(const char* call, Handle* h) {
  if (!h) return nullptr;
  handle_box* box = box_of(h);
  std::uint32_t live = live_tag(handle_traits<Handle>::kind);
  // Loaded first, so that a pointer that is not a handle is not written to.
  if (box->tag.load(std::memory_order_relaxed) == live &&
      box->tag.compare_exchange_strong(live, dead_tag(handle_traits<Handle>::kind), std::memory_order_acq_rel))
    return static_cast<object_t<Handle>*>(box->object.load(std::memory_order_relaxed));
  refuse(call, h);
  last_error() += "; this call does nothing";
  std::fprintf(stderr, "%s\n", last_error().c_str());
  return nullptr;
}

// The blocking calls must come from a task of the running loop.
bool in_task(const char* operation) {
  if (fiber::this_fiber::in_fiber()) return true;
  last_error() = std::string(operation) + ": not called from a task of a running fiber_loop";
  return false;
}

// The longest wait handed to the loop (about 31 years); longer ones are clamped.
constexpr std::int64_t longest_wait_ms = 1000000000000;

fiber::clock::time_point deadline_of(std::int64_t timeout_ms) {
  if (timeout_ms < 0) return fiber::clock::time_point::max();
  return fiber::clock::now() + std::chrono::milliseconds(std::min(timeout_ms, longest_wait_ms));
}

}  // namespace

// ---- fibers -------------------------------------------------------------------

namespace {
struct fiber_object {
  enum class state { created, suspended, running, finished };

  fiber_t* handle = nullptr;  // what fiber_create gave out (fiber_self returns it)

  fiber_fn body = nullptr;
  void* arg = nullptr;
  fiber::context ctx;     // the body, while suspended (or not started)
  fiber::context caller;  // while running: whoever resumed it
  void* in = nullptr;     // what resume handed in
  void* out = nullptr;    // what the body yielded or returned
  state st = state::created;
  bool closing = false;
  const void* task = nullptr;  // while running: the loop task (or nullptr) that resumed it
  std::string escaped;       // what() of a C++ exception that left the body
  bool failed = false;
};

// The fiber_t's running on this thread, innermost last. Several loop tasks may each
// be inside a fiber_t and park in it, so "the current fiber" is the innermost one
// resumed by the task running now (fiber::detail::running(); nullptr outside
// tasks), not simply the last one resumed.
FIBER_PER_THREAD(std::vector<fiber_object*>, running_fibers)

const void* this_task() noexcept { return fiber::detail::running(); }

fiber_object* current_fiber() noexcept {
  const void* task = this_task();
  const std::vector<fiber_object*>& running = running_fibers();
  for (auto it = running.rbegin(); it != running.rend(); ++it)
    if ((*it)->task == task) return *it;
  return nullptr;
}

// Switches into f (it must be created or suspended) until it yields or ends.
void enter(fiber_object* f) {
  f->task = this_task();
  running_fibers().push_back(f);
  f->st = fiber_object::state::running;
  f->ctx = std::move(f->ctx).resume();
  std::vector<fiber_object*>& running = running_fibers();
  running.erase(std::find(running.begin(), running.end(), f));
  if (f->st != fiber_object::state::finished) f->st = fiber_object::state::suspended;
}

// fiber_close, on a fiber known to be live (fiber_destroy closes one it has retired).
int close_fiber(fiber_object* f) {
  switch (f->st) {
    case fiber_object::state::running:
      return fail(FIBER_EINVAL, "fiber_close: the fiber is running");
    case fiber_object::state::finished:
      return FIBER_OK;
    case fiber_object::state::created:
      f->ctx = fiber::context{};  // never started: nothing to unwind
      f->st = fiber_object::state::finished;
      return FIBER_OK;
    case fiber_object::state::suspended:
      break;
  }
  f->closing = true;
  enter(f);
  if (f->st == fiber_object::state::finished) return FIBER_OK;
  return fail(FIBER_EINVAL, "fiber_close: the body yielded again after fiber_yield returned FIBER_CLOSED");
}
}  // namespace

extern "C" {

const char* fiber_last_error(void) { return last_error().c_str(); }

const char* fiber_status_name(int status) {
  switch (status) {
    case FIBER_OK: return "FIBER_OK";
    case FIBER_FINISHED: return "FIBER_FINISHED";
    case FIBER_CLOSED: return "FIBER_CLOSED";
    case FIBER_TIMEOUT: return "FIBER_TIMEOUT";
    case FIBER_AGAIN: return "FIBER_AGAIN";
    case FIBER_CANCELLED: return "FIBER_CANCELLED";
    case FIBER_NO_LOOP: return "FIBER_NO_LOOP";
    case FIBER_EINVAL: return "FIBER_EINVAL";
    case FIBER_ENOMEM: return "FIBER_ENOMEM";
    case FIBER_DEADLOCK: return "FIBER_DEADLOCK";
    case FIBER_EXCEPTION: return "FIBER_EXCEPTION";
    default: return "(not a fiber_status)";
  }
}

fiber_t* fiber_create(fiber_fn body, void* arg, size_t stack_size) {
  if (!body) {
    fail(FIBER_EINVAL, "fiber_create: body is NULL");
    return nullptr;
  }
  fiber_t* f = nullptr;
  const int rc = guarded("fiber_create", [&]() -> int {
    f = give_out<fiber_t>([&](fiber_t* handle) {
      auto owned = std::make_unique<fiber_object>();
      owned->handle = handle;
      owned->body = body;
      owned->arg = arg;
      fiber_object* self = owned.get();
      owned->ctx = fiber::context{
          std::allocator_arg, fiber::protected_stack{stack_size ? stack_size : fiber::default_stack_size},
          [self](fiber::context&& caller) {
            self->caller = std::move(caller);
            try {
              self->out = self->body(self->arg);
            } catch (const fiber::detail::forced_unwind&) {
              throw;
            } catch (const std::exception& e) {
              self->failed = true;
              self->escaped = e.what();
            } catch (...) {
              self->failed = true;
              self->escaped = "a C++ exception of unknown type";
            }
            self->st = fiber_object::state::finished;
            return std::move(self->caller);
          }};
      return owned;
    });
    return FIBER_OK;
  });
  return rc == FIBER_OK ? f : nullptr;
}

int fiber_resume(fiber_t* handle, void* in, void** out) {
  fiber_object* f = object_of(handle);
  if (!f) return refuse("fiber_resume", handle);
  switch (f->st) {
    case fiber_object::state::running:
      return fail(FIBER_EINVAL, "fiber_resume: the fiber is running (it cannot resume itself or a fiber that resumed it)");
    case fiber_object::state::finished:
      return fail(FIBER_EINVAL, "fiber_resume: the fiber has finished");
    default:
      break;
  }
  if (f->closing) return fail(FIBER_EINVAL, "fiber_resume: the fiber is being closed");
  f->in = in;
  enter(f);
  if (out) *out = f->out;
  if (f->st == fiber_object::state::finished) {
    if (f->failed) {
      if (out) *out = nullptr;
      return fail(FIBER_EXCEPTION, "fiber_resume: a C++ exception left the fiber's body: " + f->escaped);
    }
    return FIBER_FINISHED;
  }
  return FIBER_OK;
}

int fiber_yield(void* out, void** in) {
  fiber_object* f = current_fiber();
  if (!f) return fail(FIBER_EINVAL, "fiber_yield: not called from inside a fiber_t");
  f->out = out;
  f->caller = std::move(f->caller).resume();
  if (f->closing) {
    if (in) *in = nullptr;
    return fail(FIBER_CLOSED, "fiber_yield: the fiber is being closed: return from its body");
  }
  if (in) *in = f->in;
  return FIBER_OK;
}

fiber_t* fiber_self(void) {
  const fiber_object* f = current_fiber();
  return f ? f->handle : nullptr;
}

int fiber_close(fiber_t* handle) {
  fiber_object* f = object_of(handle);
  return f ? close_fiber(f) : refuse("fiber_close", handle);
}

void fiber_destroy(fiber_t* handle) {
  fiber_object* f = retire("fiber_destroy", handle);
  if (!f) return;
  if (f->st == fiber_object::state::running) {
    std::fprintf(stderr, "fiber_destroy: the fiber is running (destroyed from inside itself?)\n");
    std::abort();
  }
  if (f->st == fiber_object::state::suspended && (f->closing || close_fiber(f) != FIBER_OK)) {
    std::fprintf(stderr,
                 "fiber_destroy: the fiber's body keeps yielding after FIBER_CLOSED; its C frames cannot be "
                 "unwound, so it cannot be freed\n");
    std::abort();
  }
  delete f;
  free_box(box_of(handle));
}

int fiber_done(const fiber_t* handle) {
  if (!handle) return 0;
  const fiber_object* f = object_of(handle);
  if (!f) return refuse("fiber_done", handle);
  return f->st == fiber_object::state::finished;
}

}  // extern "C"

// ---- the event loop ----------------------------------------------------------

namespace {
struct loop_object {
  fiber::event_loop loop;
};

struct task_object {
  fiber::task<void*> task;
  fiber::event_loop* loop = nullptr;
};

struct chan_object {
  explicit chan_object(std::size_t capacity) : ch(capacity) {}
  fiber::channel<void*> ch;
};
}  // namespace

extern "C" {

fiber_loop* fiber_loop_create(void) {
  fiber_loop* loop = nullptr;
  guarded("fiber_loop_create", [&]() -> int {
    loop = give_out<fiber_loop>([](fiber_loop*) { return std::make_unique<loop_object>(); });
    return FIBER_OK;
  });
  return loop;
}

void fiber_loop_destroy(fiber_loop* handle) {
  loop_object* loop = retire("fiber_loop_destroy", handle);
  if (!loop) return;
  if (fiber::event_loop::current() == &loop->loop) {
    std::fprintf(stderr, "fiber_loop_destroy: called from a task of the loop being destroyed\n");
    std::abort();
  }
  // Tasks still alive are cancelled and run to their ends first, so a C task sees
  // FIBER_CANCELLED from its wait and returns, instead of having its frames unwound.
  // Cancelled again each round, for code that retries after EINTR; after that,
  // ~event_loop unwinds what is left. (Not possible from a task of another loop:
  // this one cannot run there.)
  if (!fiber::event_loop::current()) {
    try {
      for (int round = 0; round < 100 && loop->loop.alive() > 0; ++round) {
        loop->loop.cancel_all();
        loop->loop.run_once(std::chrono::milliseconds(10));
      }
    } catch (...) {
    }
  }
  delete loop;
  free_box(box_of(handle));
}

int fiber_loop_run(fiber_loop* handle) {
  loop_object* loop = object_of(handle);
  if (!loop) return refuse("fiber_loop_run", handle);
  try {
    loop->loop.run();
    return FIBER_OK;
  } catch (const fiber::deadlock_error& e) {
    return fail(FIBER_DEADLOCK, e.what());
  } catch (const fiber::error& e) {
    return fail(FIBER_EINVAL, e.what());
  } catch (const std::exception& e) {
    return fail(FIBER_EXCEPTION, std::string("fiber_loop_run: ") + e.what());
  }
}

int fiber_loop_run_once(fiber_loop* handle, int timeout_ms, size_t* alive) {
  loop_object* loop = object_of(handle);
  if (!loop) return refuse("fiber_loop_run_once", handle);
  return guarded("fiber_loop_run_once", [&]() -> int {
    const std::size_t n = loop->loop.run_once(std::chrono::milliseconds(timeout_ms));
    if (alive) *alive = n;
    return FIBER_OK;
  });
}

int fiber_loop_fd(const fiber_loop* handle) {
  if (!handle) return -1;
  const loop_object* loop = object_of(handle);
  if (!loop) return refuse("fiber_loop_fd", handle), -1;
  return loop->loop.native_handle();
}

int fiber_loop_next_timeout_ms(const fiber_loop* handle) {
  if (!handle) return -1;
  const loop_object* loop = object_of(handle);
  // 0: a foreign loop calls fiber_loop_run_once at once, which returns the error,
  // rather than sleeping forever on a dead loop.
  if (!loop) return refuse("fiber_loop_next_timeout_ms", handle), 0;
  return loop->loop.next_timeout_ms();
}

int fiber_run(fiber_task_fn fn, void* arg, unsigned threads, void** result) {
  if (!fn) return fail(FIBER_EINVAL, "fiber_run: fn is NULL");
  try {
    void* r = fiber::run([fn, arg]() -> void* { return fn(arg); }, fiber::run_options{.threads = threads});
    if (result) *result = r;
    return FIBER_OK;
  } catch (const fiber::deadlock_error& e) {
    return fail(FIBER_DEADLOCK, e.what());
  } catch (const fiber::error& e) {
    return fail(FIBER_EINVAL, e.what());
  } catch (const std::bad_alloc& e) {
    return fail(FIBER_ENOMEM, std::string("fiber_run: ") + e.what());
  } catch (const std::exception& e) {
    return fail(FIBER_EXCEPTION, std::string("fiber_run: ") + e.what());
  }
}

fiber_task* fiber_spawn(fiber_loop* loop, fiber_task_fn fn, void* arg) {
  if (!fn) {
    fail(FIBER_EINVAL, "fiber_spawn: fn is NULL");
    return nullptr;
  }
  fiber::event_loop* l = fiber::event_loop::current();
  if (loop) {
    loop_object* o = object_of(loop);
    if (!o) {
      refuse("fiber_spawn", loop);
      return nullptr;
    }
    l = &o->loop;
  }
  if (!l) {
    fail(FIBER_NO_LOOP, "fiber_spawn: no loop given and none is running on this thread");
    return nullptr;
  }
  fiber_task* t = nullptr;
  guarded("fiber_spawn", [&]() -> int {
    t = give_out<fiber_task>([&](fiber_task*) {
      auto owned = std::make_unique<task_object>();
      owned->loop = l;
      owned->task = l->spawn([fn, arg]() -> void* { return fn(arg); });
      return owned;
    });
    return FIBER_OK;
  });
  return t;
}

int fiber_task_join(fiber_task* handle, void** result) {
  task_object* t = object_of(handle);
  if (!t) return refuse("fiber_task_join", handle);
  return guarded("fiber_task_join", [&]() -> int {
    if (t->task.status() == fiber::task_status::pending) {  // (an ended task's loop may be gone)
      if (!fiber::this_fiber::in_fiber()) {
        // Outside any task: run the loop until the task ends, or, when the loop
        // runs on another thread, wait there (get() blocks this thread).
        if (!fiber::detail::loop_runs_elsewhere(*t->loop)) t->loop->run_until(t->task);
      }
    }
    void* r = t->task.get();
    if (result) *result = r;
    return FIBER_OK;
  });
}

int fiber_loop_run_until(fiber_loop* loop_handle, fiber_task* task_handle) {
  loop_object* loop = object_of(loop_handle);
  if (!loop) return refuse("fiber_loop_run_until", loop_handle);
  task_object* t = object_of(task_handle);
  if (!t) return refuse("fiber_loop_run_until", task_handle);
  if (&loop->loop != t->loop) return fail(FIBER_EINVAL, "fiber_loop_run_until: the task belongs to another loop");
  return guarded("fiber_loop_run_until", [&]() -> int {
    loop->loop.run_until(t->task);
    return FIBER_OK;
  });
}

int fiber_task_cancel(fiber_task* handle) {
  task_object* t = object_of(handle);
  if (!t) return refuse("fiber_task_cancel", handle);
  return guarded("fiber_task_cancel", [&]() -> int {
    t->task.cancel();
    return FIBER_OK;
  });
}

int fiber_task_done(const fiber_task* handle) {
  if (!handle) return 0;
  const task_object* t = object_of(handle);
  if (!t) return refuse("fiber_task_done", handle);
  try {
    return t->task.status() != fiber::task_status::pending;
  } catch (const fiber::error& e) {
    // From another thread than the one running the task's loop: it has not ended
    // as far as this thread can know.
    fail(FIBER_EINVAL, std::string("fiber_task_done: ") + e.what());
    return 0;
  }
}

void fiber_task_release(fiber_task* handle) {
  task_object* t = retire("fiber_task_release", handle);
  if (!t) return;
  try {
    if (t->task.status() == fiber::task_status::pending) t->task.detach();
  } catch (const fiber::error& e) {
    // The handle cannot be let go on this thread while the loop runs on another,
    // and there is no status to return it with.
    std::fprintf(stderr, "fiber_task_release: %s\n", e.what());
    std::abort();
  }
  delete t;
  free_box(box_of(handle));
}

int fiber_task_yield(void) {
  if (!in_task("fiber_task_yield")) return FIBER_NO_LOOP;
  return guarded("fiber_task_yield", []() -> int {
    fiber::this_fiber::yield();
    return FIBER_OK;
  });
}

int fiber_sleep_ms(int64_t ms) {
  if (!in_task("fiber_sleep_ms")) return FIBER_NO_LOOP;
  return guarded("fiber_sleep_ms", [ms]() -> int {
    fiber::this_fiber::sleep_until(deadline_of(ms < 0 ? 0 : ms));
    return FIBER_OK;
  });
}

int fiber_sleep_ns(int64_t ns) {
  if (!in_task("fiber_sleep_ns")) return FIBER_NO_LOOP;
  return guarded("fiber_sleep_ns", [ns]() -> int {
    const std::int64_t longest_ns = longest_wait_ms * 1000000;
    fiber::this_fiber::sleep_for(std::chrono::nanoseconds(ns < 0 ? 0 : std::min(ns, longest_ns)));
    return FIBER_OK;
  });
}

int fiber_in_task(void) { return fiber::this_fiber::in_fiber(); }

// ---- channels -------------------------------------------------------------------

fiber_chan* fiber_chan_create(size_t capacity) {
  fiber_chan* ch = nullptr;
  guarded("fiber_chan_create", [&]() -> int {
    ch = give_out<fiber_chan>([capacity](fiber_chan*) { return std::make_unique<chan_object>(capacity); });
    return FIBER_OK;
  });
  return ch;
}

void fiber_chan_destroy(fiber_chan* handle) {
  chan_object* ch = retire("fiber_chan_destroy", handle);
  if (!ch) return;
  delete ch;
  free_box(box_of(handle));
}

int fiber_chan_send(fiber_chan* handle, void* v, int64_t timeout_ms) {
  chan_object* ch = object_of(handle);
  if (!ch) return refuse("fiber_chan_send", handle);
  if (!in_task("fiber_chan_send")) return FIBER_NO_LOOP;
  return guarded("fiber_chan_send", [&]() -> int {
    if (timeout_ms < 0) {
      ch->ch.send(v);
      return FIBER_OK;
    }
    return ch->ch.send_until(v, deadline_of(timeout_ms)) ? FIBER_OK
                                                         : fail(FIBER_TIMEOUT, "fiber_chan_send: timed out");
  });
}

int fiber_chan_recv(fiber_chan* handle, void** out, int64_t timeout_ms) {
  chan_object* ch = object_of(handle);
  if (!ch) return refuse("fiber_chan_recv", handle);
  if (!in_task("fiber_chan_recv")) return FIBER_NO_LOOP;
  return guarded("fiber_chan_recv", [&]() -> int {
    auto r = ch->ch.recv_until(deadline_of(timeout_ms));
    switch (r.status) {
      case fiber::channel_status::ok:
        if (out) *out = *r.value;
        return FIBER_OK;
      case fiber::channel_status::closed:
        return fail(FIBER_CLOSED, "fiber_chan_recv: the channel is closed and drained");
      default:
        return fail(FIBER_TIMEOUT, "fiber_chan_recv: timed out");
    }
  });
}

int fiber_chan_try_send(fiber_chan* handle, void* v) {
  chan_object* ch = object_of(handle);
  if (!ch) return refuse("fiber_chan_try_send", handle);
  return guarded("fiber_chan_try_send", [&]() -> int {
    return ch->ch.try_send(v) ? FIBER_OK : fail(FIBER_AGAIN, "fiber_chan_try_send: it would have to wait");
  });
}

int fiber_chan_try_recv(fiber_chan* handle, void** out) {
  chan_object* ch = object_of(handle);
  if (!ch) return refuse("fiber_chan_try_recv", handle);
  return guarded("fiber_chan_try_recv", [&]() -> int {
    if (auto v = ch->ch.try_recv()) {
      if (out) *out = *v;
      return FIBER_OK;
    }
    if (ch->ch.closed()) return fail(FIBER_CLOSED, "fiber_chan_try_recv: the channel is closed and drained");
    return fail(FIBER_AGAIN, "fiber_chan_try_recv: nothing to receive yet");
  });
}

int fiber_chan_close(fiber_chan* handle) {
  chan_object* ch = object_of(handle);
  if (!ch) return refuse("fiber_chan_close", handle);
  return guarded("fiber_chan_close", [&]() -> int {
    ch->ch.close();
    return FIBER_OK;
  });
}

// ---- file descriptors -----------------------------------------------------------

void fiber_fd_closing(int fd) { fiber::detail::io_fd_closing(fd); }

int fiber_wait_fd(int fd, int events, int64_t timeout_ms, int* ready) {
  if (events != FIBER_READABLE && events != FIBER_WRITABLE)
    return fail(FIBER_EINVAL, "fiber_wait_fd: events must be FIBER_READABLE or FIBER_WRITABLE");
  if (!in_task("fiber_wait_fd")) return FIBER_NO_LOOP;
  return guarded("fiber_wait_fd", [&]() -> int {
    const auto deadline = deadline_of(timeout_ms);
    const bool ok = events == FIBER_READABLE ? fiber::io::wait_readable(fd, deadline)
                                             : fiber::io::wait_writable(fd, deadline);
    if (ready) *ready = ok ? events : 0;
    return ok ? FIBER_OK : fail(FIBER_TIMEOUT, "fiber_wait_fd: timed out");
  });
}

}  // extern "C"
