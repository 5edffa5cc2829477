// The C API (fiber/fiber.h) over the C++ one. Every entry point turns what the C++
// side throws into a fiber_status and a per-thread message; only the library's
// forced unwinding (a loop or fiber destroyed while a task is parked) is let
// through, since it must unwind the task's stack to its base.
#include "fiber/fiber.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
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

struct fiber_s {
  enum class state { created, suspended, running, finished };

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

namespace {
// The fiber_t's running on this thread, innermost last. Several loop tasks may each
// be inside a fiber_t and park in it, so "the current fiber" is the innermost one
// resumed by the task running now (fiber::detail::running(); nullptr outside
// tasks), not simply the last one resumed.
FIBER_PER_THREAD(std::vector<fiber_t*>, running_fibers)

const void* this_task() noexcept { return fiber::detail::running(); }

fiber_t* current_fiber() noexcept {
  const void* task = this_task();
  const std::vector<fiber_t*>& running = running_fibers();
  for (auto it = running.rbegin(); it != running.rend(); ++it)
    if ((*it)->task == task) return *it;
  return nullptr;
}

// Switches into f (it must be created or suspended) until it yields or ends.
void enter(fiber_t* f) {
  f->task = this_task();
  running_fibers().push_back(f);
  f->st = fiber_s::state::running;
  f->ctx = std::move(f->ctx).resume();
  std::vector<fiber_t*>& running = running_fibers();
  running.erase(std::find(running.begin(), running.end(), f));
  if (f->st != fiber_s::state::finished) f->st = fiber_s::state::suspended;
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
    auto owned = std::make_unique<fiber_s>();
    owned->body = body;
    owned->arg = arg;
    fiber_t* self = owned.get();
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
          self->st = fiber_s::state::finished;
          return std::move(self->caller);
        }};
    f = owned.release();
    return FIBER_OK;
  });
  return rc == FIBER_OK ? f : nullptr;
}

int fiber_resume(fiber_t* f, void* in, void** out) {
  if (!f) return fail(FIBER_EINVAL, "fiber_resume: the fiber is NULL");
  switch (f->st) {
    case fiber_s::state::running:
      return fail(FIBER_EINVAL, "fiber_resume: the fiber is running (it cannot resume itself or a fiber that resumed it)");
    case fiber_s::state::finished:
      return fail(FIBER_EINVAL, "fiber_resume: the fiber has finished");
    default:
      break;
  }
  if (f->closing) return fail(FIBER_EINVAL, "fiber_resume: the fiber is being closed");
  f->in = in;
  enter(f);
  if (out) *out = f->out;
  if (f->st == fiber_s::state::finished) {
    if (f->failed) {
      if (out) *out = nullptr;
      return fail(FIBER_EXCEPTION, "fiber_resume: a C++ exception left the fiber's body: " + f->escaped);
    }
    return FIBER_FINISHED;
  }
  return FIBER_OK;
}

int fiber_yield(void* out, void** in) {
  fiber_t* f = current_fiber();
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

fiber_t* fiber_self(void) { return current_fiber(); }

int fiber_close(fiber_t* f) {
  if (!f) return fail(FIBER_EINVAL, "fiber_close: the fiber is NULL");
  switch (f->st) {
    case fiber_s::state::running:
      return fail(FIBER_EINVAL, "fiber_close: the fiber is running");
    case fiber_s::state::finished:
      return FIBER_OK;
    case fiber_s::state::created:
      f->ctx = fiber::context{};  // never started: nothing to unwind
      f->st = fiber_s::state::finished;
      return FIBER_OK;
    case fiber_s::state::suspended:
      break;
  }
  f->closing = true;
  enter(f);
  if (f->st == fiber_s::state::finished) return FIBER_OK;
  return fail(FIBER_EINVAL, "fiber_close: the body yielded again after fiber_yield returned FIBER_CLOSED");
}

void fiber_destroy(fiber_t* f) {
  if (!f) return;
  if (f->st == fiber_s::state::running) {
    std::fprintf(stderr, "fiber_destroy: the fiber is running (destroyed from inside itself?)\n");
    std::abort();
  }
  if (f->st == fiber_s::state::suspended && (f->closing || fiber_close(f) != FIBER_OK)) {
    std::fprintf(stderr,
                 "fiber_destroy: the fiber's body keeps yielding after FIBER_CLOSED; its C frames cannot be "
                 "unwound, so it cannot be freed\n");
    std::abort();
  }
  delete f;
}

int fiber_done(const fiber_t* f) { return f && f->st == fiber_s::state::finished; }

}  // extern "C"

// ---- the event loop ----------------------------------------------------------

struct fiber_loop_s {
  fiber::event_loop loop;
};

struct fiber_task_s {
  fiber::task<void*> task;
  fiber::event_loop* loop = nullptr;
};

struct fiber_chan_s {
  explicit fiber_chan_s(std::size_t capacity) : ch(capacity) {}
  fiber::channel<void*> ch;
};

extern "C" {

fiber_loop* fiber_loop_create(void) {
  fiber_loop* loop = nullptr;
  guarded("fiber_loop_create", [&]() -> int {
    loop = new fiber_loop_s;
    return FIBER_OK;
  });
  return loop;
}

void fiber_loop_destroy(fiber_loop* loop) {
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
}

int fiber_loop_run(fiber_loop* loop) {
  if (!loop) return fail(FIBER_EINVAL, "fiber_loop_run: the loop is NULL");
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

int fiber_loop_run_once(fiber_loop* loop, int timeout_ms, size_t* alive) {
  if (!loop) return fail(FIBER_EINVAL, "fiber_loop_run_once: the loop is NULL");
  return guarded("fiber_loop_run_once", [&]() -> int {
    const std::size_t n = loop->loop.run_once(std::chrono::milliseconds(timeout_ms));
    if (alive) *alive = n;
    return FIBER_OK;
  });
}

int fiber_loop_fd(const fiber_loop* loop) { return loop ? loop->loop.native_handle() : -1; }

int fiber_loop_next_timeout_ms(const fiber_loop* loop) { return loop ? loop->loop.next_timeout_ms() : -1; }

fiber_task* fiber_spawn(fiber_loop* loop, fiber_task_fn fn, void* arg) {
  if (!fn) {
    fail(FIBER_EINVAL, "fiber_spawn: fn is NULL");
    return nullptr;
  }
  fiber::event_loop* l = loop ? &loop->loop : fiber::event_loop::current();
  if (!l) {
    fail(FIBER_NO_LOOP, "fiber_spawn: no loop given and none is running on this thread");
    return nullptr;
  }
  fiber_task* t = nullptr;
  guarded("fiber_spawn", [&]() -> int {
    auto owned = std::make_unique<fiber_task_s>();
    owned->loop = l;
    owned->task = l->spawn([fn, arg]() -> void* { return fn(arg); });
    t = owned.release();
    return FIBER_OK;
  });
  return t;
}

int fiber_task_join(fiber_task* t, void** result) {
  if (!t) return fail(FIBER_EINVAL, "fiber_task_join: the task is NULL");
  return guarded("fiber_task_join", [&]() -> int {
    if (t->task.status() == fiber::task_status::pending) {  // (an ended task's loop may be gone)
      fiber::event_loop* running = fiber::event_loop::current();
      if (!fiber::this_fiber::in_fiber())
        t->loop->run_until(t->task);
      else if (running != t->loop)
        return fail(FIBER_EINVAL, "fiber_task_join: the task belongs to another loop than the joining task's");
    }
    void* r = t->task.get();
    if (result) *result = r;
    return FIBER_OK;
  });
}

int fiber_loop_run_until(fiber_loop* loop, fiber_task* t) {
  if (!loop || !t) return fail(FIBER_EINVAL, "fiber_loop_run_until: the loop or the task is NULL");
  if (&loop->loop != t->loop) return fail(FIBER_EINVAL, "fiber_loop_run_until: the task belongs to another loop");
  return guarded("fiber_loop_run_until", [&]() -> int {
    loop->loop.run_until(t->task);
    return FIBER_OK;
  });
}

int fiber_task_cancel(fiber_task* t) {
  if (!t) return fail(FIBER_EINVAL, "fiber_task_cancel: the task is NULL");
  return guarded("fiber_task_cancel", [&]() -> int {
    t->task.cancel();
    return FIBER_OK;
  });
}

int fiber_task_done(const fiber_task* t) {
  if (!t) return 0;
  try {
    return t->task.status() != fiber::task_status::pending;
  } catch (const fiber::error& e) {
    // From another thread than the one running the task's loop: it has not ended
    // as far as this thread can know.
    fail(FIBER_EINVAL, std::string("fiber_task_done: ") + e.what());
    return 0;
  }
}

void fiber_task_release(fiber_task* t) {
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
    ch = new fiber_chan_s(capacity);
    return FIBER_OK;
  });
  return ch;
}

void fiber_chan_destroy(fiber_chan* ch) { delete ch; }

int fiber_chan_send(fiber_chan* ch, void* v, int64_t timeout_ms) {
  if (!ch) return fail(FIBER_EINVAL, "fiber_chan_send: the channel is NULL");
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

int fiber_chan_recv(fiber_chan* ch, void** out, int64_t timeout_ms) {
  if (!ch) return fail(FIBER_EINVAL, "fiber_chan_recv: the channel is NULL");
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

int fiber_chan_try_send(fiber_chan* ch, void* v) {
  if (!ch) return fail(FIBER_EINVAL, "fiber_chan_try_send: the channel is NULL");
  return guarded("fiber_chan_try_send", [&]() -> int {
    return ch->ch.try_send(v) ? FIBER_OK : fail(FIBER_AGAIN, "fiber_chan_try_send: it would have to wait");
  });
}

int fiber_chan_try_recv(fiber_chan* ch, void** out) {
  if (!ch) return fail(FIBER_EINVAL, "fiber_chan_try_recv: the channel is NULL");
  return guarded("fiber_chan_try_recv", [&]() -> int {
    if (auto v = ch->ch.try_recv()) {
      if (out) *out = *v;
      return FIBER_OK;
    }
    if (ch->ch.closed()) return fail(FIBER_CLOSED, "fiber_chan_try_recv: the channel is closed and drained");
    return fail(FIBER_AGAIN, "fiber_chan_try_recv: nothing to receive yet");
  });
}

int fiber_chan_close(fiber_chan* ch) {
  if (!ch) return fail(FIBER_EINVAL, "fiber_chan_close: the channel is NULL");
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
