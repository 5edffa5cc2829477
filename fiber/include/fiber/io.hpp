// fiber::io: file descriptors and TCP sockets whose blocking operations park the
// calling fiber, never the thread (Linux: epoll; elsewhere every function throws
// fiber::error "not supported on this platform").
//
//   fiber::run([] {
//     auto server = fiber::io::listen("127.0.0.1", 0);
//     auto echo = fiber::spawn([&] {
//       fiber::io::stream s = server.accept();
//       char buf[4096];
//       while (std::size_t n = s.read(buf, sizeof buf)) s.write_all(buf, n);
//     });
//     fiber::io::stream c = fiber::io::connect("127.0.0.1", server.local_port());
//     c.write_all("hello\n");
//     auto line = c.read_line();                      // "hello"
//   });
//
// How it works. Every fd is non-blocking. An operation first tries the system call;
// only when it says EAGAIN does the fiber park on the loop's reactor, then retries.
// A stream, listener or connecting socket registers its fd with the loop once
// (edge-triggered), the first time it has to wait, and unregisters it when closed:
// waiting costs no system call of its own and reads/writes allocate nothing.
//
// Waits go through the scheduler's park(), so all of them honour cancellation
// (fiber::cancelled) and fiber::deadline_scope (fiber::timed_out). The timed forms
// (a deadline or a timeout as last argument) throw fiber::io::timeout_error, a
// fiber::timed_out, when theirs passes; wait_readable/wait_writable return false
// instead. Waiting outside a fiber of a running loop throws fiber::error.
//
// Errors are std::system_error carrying the errno, with the operation named in
// what(), e.g. "fiber::io::connect 127.0.0.1:1: Connection refused". A peer that
// goes away is an ordinary outcome: read() returns 0 at EOF, read_exact() throws
// fiber::io::incomplete_read, read_line() returns std::nullopt, and writes throw
// std::system_error with EPIPE or ECONNRESET. Sockets are written with
// MSG_NOSIGNAL, so no SIGPIPE is raised for them. Pipes cannot be: writing to a
// pipe whose reader has closed raises SIGPIPE, which kills the process unless it
// is ignored (std::signal(SIGPIPE, SIG_IGN)); then the write throws EPIPE.
//
// Running out of fds or memory: listener::accept() waits it out (see there); any
// other operation throws a std::system_error with the errno (EMFILE, ENFILE,
// ENOBUFS, ENOMEM), naming the system call that failed when it is not the
// operation's own, e.g. "fiber::io::connect 127.0.0.1:80: socket: Too many open
// files".
//
// Rules. A stream or listener belongs to the loop (thread) it first waits on, and
// cannot move to another loop, not even a later one on the same thread (release()
// its fd inside the first loop and adopt() it again); but a task that may migrate
// (spawn_options::migratable) keeps using its streams on whichever worker of the
// runtime it moves to (the first loop's reactor still watches the fd, and wakes
// the task where it runs). Two fibers may use one stream
// at once if one only reads and the other only writes. close() from another fiber
// wakes the fibers blocked on the object, which then throw std::system_error
// (EBADF); destroying it while a fiber is blocked on it aborts with a message. The free
// functions on raw fds register the fd for each wait (two system calls more), and
// must not be used on an fd that a stream holds: for repeated IO on one fd, adopt
// it in a stream.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "fiber/event_loop.hpp"

namespace fiber::io {

/// Thrown by a timed operation whose own deadline passed. It is a fiber::timed_out,
/// so one handler serves both it and an enclosing deadline_scope.
class timeout_error : public timed_out {
 public:
  explicit timeout_error(const char* operation);
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

/// Thrown by read_exact() when the peer closes (EOF) before `expected` bytes came;
/// `received` of them were stored in the buffer.
class incomplete_read : public std::runtime_error {
 public:
  incomplete_read(std::size_t expected, std::size_t received);
  std::size_t expected() const noexcept { return expected_; }
  std::size_t received() const noexcept { return received_; }

 private:
  std::size_t expected_;
  std::size_t received_;
};

namespace detail {
// now + timeout, saturated (a huge timeout means no deadline); never earlier.
template <class Rep, class Period>
clock::time_point deadline_after(std::chrono::duration<Rep, Period> timeout) {
  const auto now = clock::now();
  if (std::chrono::duration<double>(timeout) >= std::chrono::duration<double>(clock::time_point::max() - now))
    return clock::time_point::max();
  return now + std::chrono::ceil<clock::duration>(timeout);
}
}  // namespace detail

inline constexpr clock::time_point no_deadline = clock::time_point::max();

// ---- raw file descriptors ------------------------------------------------------

/// Sets O_NONBLOCK on `fd` (which the functions below need; they set it themselves).
void set_nonblocking(int fd);

/// Parks until `fd` is readable (data, EOF or an error pending) or writable; returns
/// false if `deadline` passes first (never earlier). Returns at once if it already is.
bool wait_readable(int fd, clock::time_point deadline = no_deadline);
bool wait_writable(int fd, clock::time_point deadline = no_deadline);
template <class Rep, class Period>
bool wait_readable(int fd, std::chrono::duration<Rep, Period> timeout) {
  return wait_readable(fd, detail::deadline_after(timeout));
}
template <class Rep, class Period>
bool wait_writable(int fd, std::chrono::duration<Rep, Period> timeout) {
  return wait_writable(fd, detail::deadline_after(timeout));
}

/// Reads up to `n` bytes of `fd` (made non-blocking), parking the fiber while there
/// are none; returns how many (0: EOF). Throws std::system_error, or timeout_error.
std::size_t read(int fd, void* buf, std::size_t n, clock::time_point deadline = no_deadline);
/// Writes some of the `n` bytes (at least one), parking while `fd` is full.
std::size_t write(int fd, const void* buf, std::size_t n, clock::time_point deadline = no_deadline);

// ---- streams ----------------------------------------------------------------------

/// A connected socket, or a pipe or other fd, that it owns: closed on destruction.
/// Move-only. Reads are buffered only by read_line(); read() and read_exact() take
/// what it buffered first.
class stream {
 public:
  stream() noexcept;
  ~stream();
  stream(stream&& other) noexcept;
  stream& operator=(stream&& other) noexcept;
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  /// Takes ownership of `fd` (a socket, socketpair or pipe end...) and makes it
  /// non-blocking. Throws std::system_error if fcntl fails (the fd is then closed).
  static stream adopt(int fd);

  explicit operator bool() const noexcept;
  /// The fd, or -1 when empty or closed.
  int fd() const noexcept;
  /// Gives the fd up (still registered nowhere, still non-blocking); -1 if none.
  int release() noexcept;
  /// Unregisters and closes the fd; wakes fibers blocked on it. Idempotent.
  void close() noexcept;

  /// Reads up to `n` bytes (at least one unless at EOF; n must be > 0, as 0 is
  /// what EOF returns). Throws std::system_error (e.g. ECONNRESET) or timeout_error.
  std::size_t read(void* buf, std::size_t n, clock::time_point deadline = no_deadline);
  template <class Rep, class Period>
  std::size_t read(void* buf, std::size_t n, std::chrono::duration<Rep, Period> timeout) {
    return read(buf, n, detail::deadline_after(timeout));
  }
  /// Reads exactly `n` bytes; throws incomplete_read at a premature EOF.
  void read_exact(void* buf, std::size_t n, clock::time_point deadline = no_deadline);
  template <class Rep, class Period>
  void read_exact(void* buf, std::size_t n, std::chrono::duration<Rep, Period> timeout) {
    read_exact(buf, n, detail::deadline_after(timeout));
  }
  /// The next line, without its '\n'; the last line may lack one. std::nullopt at
  /// EOF. Throws std::length_error if a line grows past `max_length` bytes.
  std::optional<std::string> read_line(clock::time_point deadline = no_deadline,
                                       std::size_t max_length = 1 << 20);
  template <class Rep, class Period>
  std::optional<std::string> read_line(std::chrono::duration<Rep, Period> timeout,
                                       std::size_t max_length = 1 << 20) {
    return read_line(detail::deadline_after(timeout), max_length);
  }

  /// Writes some of the `n` bytes (at least one if n > 0); returns how many.
  /// Throws std::system_error (EPIPE, ECONNRESET...) or timeout_error.
  std::size_t write(const void* buf, std::size_t n, clock::time_point deadline = no_deadline);
  template <class Rep, class Period>
  std::size_t write(const void* buf, std::size_t n, std::chrono::duration<Rep, Period> timeout) {
    return write(buf, n, detail::deadline_after(timeout));
  }
  /// Writes all `n` bytes. If it throws, an unknown part of them was written.
  void write_all(const void* buf, std::size_t n, clock::time_point deadline = no_deadline);
  template <class Rep, class Period>
  void write_all(const void* buf, std::size_t n, std::chrono::duration<Rep, Period> timeout) {
    write_all(buf, n, detail::deadline_after(timeout));
  }
  void write_all(std::string_view s, clock::time_point deadline = no_deadline) {
    write_all(s.data(), s.size(), deadline);
  }
  template <class Rep, class Period>
  void write_all(std::string_view s, std::chrono::duration<Rep, Period> timeout) {
    write_all(s.data(), s.size(), detail::deadline_after(timeout));
  }

  /// Sockets: shutdown(SHUT_WR), the peer reads EOF while this side can still read.
  /// (For a pipe, close() its write end instead.)
  void shutdown_write();
  /// TCP_NODELAY (set by connect() and accept()).
  void set_nodelay(bool on);

  /// Parks until the stream has something to read (or EOF, or an error), or is
  /// writable; false if `deadline` passes first.
  bool wait_readable(clock::time_point deadline = no_deadline);
  bool wait_writable(clock::time_point deadline = no_deadline);
  template <class Rep, class Period>
  bool wait_readable(std::chrono::duration<Rep, Period> timeout) {
    return wait_readable(detail::deadline_after(timeout));
  }
  template <class Rep, class Period>
  bool wait_writable(std::chrono::duration<Rep, Period> timeout) {
    return wait_writable(detail::deadline_after(timeout));
  }

  // Internal: the fd and its reactor registration, on the heap so that the loop can
  // point at it while the stream moves.
  struct state;
  explicit stream(std::unique_ptr<state> s) noexcept;

 private:
  std::unique_ptr<state> s_;
};

/// A listening TCP socket. Move-only; closed on destruction.
class listener {
 public:
  listener() noexcept;
  ~listener();
  listener(listener&& other) noexcept;
  listener& operator=(listener&& other) noexcept;
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  /// Parks until a connection comes; returns it (non-blocking, TCP_NODELAY).
  ///
  /// Errors that concern one incoming connection only do not reach the caller:
  /// accept() takes the next connection at once after ECONNABORTED (the client
  /// reset it while it was queued), EPROTO, EPERM (a firewall rule refused it),
  /// the network errors Linux reports for the new socket (ENETDOWN, ENOPROTOOPT,
  /// EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH), and EINTR.
  ///
  /// Running out of resources does not fail it either, so that a server goes on
  /// serving the connections it has: on EMFILE (the process's RLIMIT_NOFILE),
  /// ENFILE (the system's file table), ENOBUFS or ENOMEM, accept() waits and tries
  /// again, as Go's net/http server does: 5 ms, then twice as long after each
  /// new failure, at most 1 s between attempts (each call starts at 5 ms again).
  /// Meanwhile the fiber is parked on the listener: the other fibers run (and
  /// may close fds), new connections wait in the listen backlog, and the wait
  /// honours `deadline` (timeout_error when it passes, also in the middle of a
  /// wait), deadline_scope, cancellation (fiber::cancelled) and close() (EBADF at
  /// once). Each wait counts in resource_waits() and nothing is logged;
  /// fiber::dump() shows the fiber "parked in fiber::io::listener::accept
  /// (backing off: out of fds or memory)". With set_resource_backoff(false),
  /// these errors are thrown instead, like any other.
  ///
  /// Any other error is thrown as std::system_error naming accept, e.g. EBADF
  /// after close(), EINVAL if the socket does not listen.
  stream accept(clock::time_point deadline = no_deadline);
  template <class Rep, class Period>
  stream accept(std::chrono::duration<Rep, Period> timeout) {
    return accept(detail::deadline_after(timeout));
  }

  /// Whether accept() waits out EMFILE, ENFILE, ENOBUFS and ENOMEM (true, the
  /// default) or throws them as std::system_error (false: for a server that
  /// sheds load itself, e.g. by closing idle connections).
  void set_resource_backoff(bool on) noexcept { resource_backoff_ = on; }
  bool resource_backoff() const noexcept { return resource_backoff_; }
  /// How many times accept() found the process or the system out of fds or
  /// memory and waited (each attempt that failed so counts once).
  std::uint64_t resource_waits() const noexcept { return resource_waits_; }

  /// The port it listens on (useful after listen(host, 0)).
  std::uint16_t local_port() const;
  explicit operator bool() const noexcept;
  int fd() const noexcept;
  /// Unregisters and closes; a fiber blocked in accept() wakes and throws EBADF.
  void close() noexcept;

  explicit listener(std::unique_ptr<stream::state> s) noexcept;  // internal

 private:
  std::unique_ptr<stream::state> s_;
  std::uint64_t resource_waits_ = 0;
  bool resource_backoff_ = true;
};

/// Options of listen().
struct listen_options {
  /// The length of the queue of connections not yet accepted (listen(2)).
  int backlog = 128;
  /// SO_REUSEPORT: several listening sockets may take the same address and port
  /// (each must set it; in this process or another of the same user), and the
  /// kernel spreads the incoming connections over them, by a hash of each
  /// connection's addresses and ports. One listener per worker of a runtime,
  /// each accepted on by a fiber of its own worker, spreads a server over the
  /// workers' reactors with no hand-over between threads (README, "Every core"):
  ///
  ///   for (unsigned w = 0; w < fiber::this_runtime::workers(); ++w)
  ///     fiber::spawn({.worker = w}, [l = fiber::io::listen(host, port, {.reuse_port = true})]() mutable {
  ///       for (;;) fiber::spawn({.worker = fiber::this_runtime::worker()}, serve, l.accept()).detach();
  ///     }).detach();
  ///
  /// (A listener or stream registers with the reactor of the worker it first
  /// waits on, so it may be made on another.) With port 0, make the first one,
  /// then the others on its local_port(). A listener closed while its queue
  /// holds connections resets them: the kernel does not move them to the others.
  bool reuse_port = false;
};

/// Listens on `host` ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::"; "" means
/// every address) and `port` (0: one the system picks), with SO_REUSEADDR. Names are
/// resolved with getaddrinfo, on the calling thread.
listener listen(const std::string& host, std::uint16_t port, const listen_options& options);
inline listener listen(const std::string& host, std::uint16_t port, int backlog = 128) {
  return listen(host, port, listen_options{.backlog = backlog});
}

/// Connects to `host`:`port`, trying each address getaddrinfo gives in turn (so
/// "localhost" reaches a server on ::1 or on 127.0.0.1). The connection itself
/// parks the fiber; resolving a name that is not numeric blocks the thread
/// (it reads /etc/hosts or asks DNS). Throws std::system_error (ECONNREFUSED,
/// ENETUNREACH...; EAI errors of getaddrinfo as std::system_error too) or timeout_error.
stream connect(const std::string& host, std::uint16_t port, clock::time_point deadline = no_deadline);
template <class Rep, class Period>
stream connect(const std::string& host, std::uint16_t port, std::chrono::duration<Rep, Period> timeout) {
  return connect(host, port, detail::deadline_after(timeout));
}

}  // namespace fiber::io
