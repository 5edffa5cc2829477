// Errors a user of fiber can cause, each naming what went wrong.
#pragma once

#include <cstddef>
#include <new>
#include <stdexcept>
#include <string>

namespace fiber {

/// Misuse of the library: resuming an empty context, sending to a generator that
/// has not started, a stack too small to hold a fiber, and the like.
class error : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// event_loop::run: every fiber is parked and nothing (no timer, no IO wait, no
/// keep_alive) could wake one. A fiber::error, with the count in what().
class deadlock_error : public error {
 public:
  using error::error;
};

/// A stack could not be allocated. It is a std::bad_alloc, so code that handles
/// exhausted memory handles it, and what() names the size and the reason.
class stack_allocation_error : public std::bad_alloc {
 public:
  stack_allocation_error(std::size_t size, int errno_value);
  /// The same, knowing the call that failed ("mmap", "mprotect"...) and, for a
  /// mapping, its length: what() then names the limit hit when it can tell
  /// (Linux: the address-space limit, RLIMIT_AS; vm.max_map_count).
  stack_allocation_error(std::size_t size, int errno_value, const char* call, std::size_t bytes = 0);
  const char* what() const noexcept override { return message_.c_str(); }
  std::size_t size() const noexcept { return size_; }

 private:
  std::size_t size_;
  std::string message_;
};

/// Python's StopIteration: a generator was resumed but has finished (or finished
/// during this resumption instead of yielding).
class stop_iteration : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Python's GeneratorExit: raised at the suspended yield by generator::close().
/// Deliberately not a std::exception, so `catch (const std::exception&)` in a
/// generator body does not swallow it (as `except Exception` does not in Python).
class generator_exit {
 public:
  const char* what() const noexcept { return "fiber::generator_exit"; }
};

}  // namespace fiber
