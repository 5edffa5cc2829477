// The loop's reactor: where a loop waits when it has nothing to run, for IO on
// the fds registered with it, for a poke from another thread, or for a timeout.
// One implementation per OS mechanism, one file each: reactor_epoll.cpp (Linux)
// and reactor_wait.cpp (elsewhere: no fd is watched; a condition variable waits
// for pokes). kqueue or io_uring would be one more file. The reactor knows
// nothing of fibers: the loop (event_loop.cpp) decides what an event means
// (poll(): whose waiters it wakes).
#pragma once

#include <cstdint>

#if defined(__linux__)
#  define FIBER_HAVE_EPOLL 1
#else
#  define FIBER_HAVE_EPOLL 0
#  include <condition_variable>
#  include <mutex>
#endif

namespace fiber::detail {

class reactor {
 public:
  reactor();  // throws std::system_error, naming the call that failed
  ~reactor();
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  // Whether fds can be registered (false: fiber::io is not supported here).
  static constexpr bool watches_fds = FIBER_HAVE_EPOLL;

  // What a registration waits for (add(), modify()).
  enum interest : std::uint32_t {
    want_read = 1,   // readable, or the peer hung up
    want_write = 2,  // writable
    edge = 4,        // reported once per change of state (else: for as long as it holds)
    oneshot = 8,     // reported once, then disarmed until modify()
  };
  // 0, or the errno of the failure: ENOENT (not registered: its fd was closed
  // since, which drops it), EEXIST (this fd's file is registered already), EBADF.
  int add(int fd, std::uint32_t interest, void* data) noexcept;
  int modify(int fd, std::uint32_t interest, void* data) noexcept;
  int remove(int fd) noexcept;
  // Removes fd from the reactor whose native_handle() is `handle` (a
  // registration that outlives its loop's turn: io::stream, listener).
  static void remove_from(int handle, int fd) noexcept;

  struct event {
    void* data;     // as registered
    bool readable;  // readable, an error, or the peer hung up: readers should look
    bool writable;  // writable, or an error: writers should look
    bool hangup;    // an error, or the peer hung up
  };
  // Waits at most timeout_ms (-1: no limit; 0: does not block) for events or a
  // poke; fills at most `max` events (a poke is consumed, not reported) and
  // returns how many. 0 also after a signal interrupted the wait. Throws
  // std::system_error if the wait fails.
  int wait(event* out, int max, int timeout_ms);
  // Ends a wait() in progress, or the next one, from any thread.
  void poke() noexcept;
  // The OS handle a foreign main loop can watch (an epoll fd: readable when
  // the loop has something to do); -1 if none.
  int native_handle() const noexcept;

 private:
#if FIBER_HAVE_EPOLL
  int epfd_ = -1;
  int wake_fd_ = -1;  // an eventfd in the epoll: written by poke()
#else
  std::mutex mutex_;
  std::condition_variable cv_;
  bool poked_ = false;  // under mutex_
#endif
};

}  // namespace fiber::detail
