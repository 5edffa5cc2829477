// fiber::io (io.hpp): non-blocking fds and TCP sockets over the loop's epoll
// reactor (scheduler.hpp: io_register, io_wait...). Linux only; elsewhere every
// operation throws fiber::error.
//
// Every operation tries its system call first and parks only on EAGAIN, so a
// reader that finds data costs one read(2) and nothing else.

#include "fiber/io.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "fiber/detail/scheduler.hpp"
#include "fiber/error.hpp"

#if defined(__linux__)
#  include <arpa/inet.h>
#  include <fcntl.h>
#  include <netdb.h>
#  include <netinet/in.h>
#  include <netinet/tcp.h>
#  include <poll.h>
#  include <sys/socket.h>
#  include <sys/stat.h>
#  include <sys/types.h>
#  include <unistd.h>
#  include <cerrno>
#endif

namespace fiber::io {

namespace sched = ::fiber::detail;

timeout_error::timeout_error(const char* operation) : message_(std::string(operation) + ": timed out") {}

incomplete_read::incomplete_read(std::size_t expected, std::size_t received)
    : std::runtime_error("fiber::io::stream::read_exact: end of stream after " + std::to_string(received) + " of " +
                         std::to_string(expected) + " bytes"),
      expected_(expected),
      received_(received) {}

// The fd, its registration with a loop, and read_line()'s buffer. On the heap, as
// the loop's epoll points at `h`.
struct stream::state {
  enum class kind : unsigned char { unknown, socket, other };

  explicit state(int fd) noexcept { h.fd = fd; }
  state(const state&) = delete;
  state& operator=(const state&) = delete;
  ~state() {
    // A fiber parked on this object would wake up in freed memory: refuse loudly.
    if (!h.readers.empty() || !h.writers.empty())
      fiber::detail::fatal("fiber::io: a stream or listener was destroyed while a fiber was blocked on it (close() it "
                           "first: the blocked fibers then get EBADF)");
    close();
  }

  void close() noexcept;

  sched::io_handle h;
  event_loop* loop = nullptr;  // the loop `h` is registered with
  kind fd_kind = kind::unknown;
  // Whether a short read means the fd had no more to give (a byte stream: a
  // SOCK_STREAM socket, a pipe), so that after one the next read waits for an
  // edge first instead of trying a read that would say EAGAIN. Not for datagram
  // sockets, where a short read is just a small datagram and more may be queued.
  enum class drains : unsigned char { unknown, yes, no };
  drains short_read_drains = drains::unknown;
  bool drained = false;  // the last read was short: nothing left until the next edge
  // read_line(): bytes [begin, end) of buf are read and not yet consumed.
  std::unique_ptr<char[]> buf;
  std::size_t cap = 0;
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t scanned = 0;  // bytes after `begin` known to hold no '\n'

  std::size_t buffered() const noexcept { return end - begin; }
  std::size_t take_buffered(void* to, std::size_t n) noexcept {
    if (n > end - begin) n = end - begin;
    std::memcpy(to, buf.get() + begin, n);
    begin += n;
    scanned = scanned > n ? scanned - n : 0;
    if (begin == end) begin = end = scanned = 0;
    return n;
  }
};

stream::stream() noexcept = default;
stream::stream(std::unique_ptr<state> s) noexcept : s_(std::move(s)) {}
stream::~stream() = default;
stream::stream(stream&& other) noexcept = default;
stream& stream::operator=(stream&& other) noexcept = default;
stream::operator bool() const noexcept { return s_ && s_->h.fd >= 0; }
int stream::fd() const noexcept { return s_ ? s_->h.fd : -1; }

listener::listener() noexcept = default;
listener::listener(std::unique_ptr<stream::state> s) noexcept : s_(std::move(s)) {}
listener::~listener() = default;
listener::listener(listener&& other) noexcept = default;
listener& listener::operator=(listener&& other) noexcept = default;
listener::operator bool() const noexcept { return s_ && s_->h.fd >= 0; }
int listener::fd() const noexcept { return s_ ? s_->h.fd : -1; }
void listener::close() noexcept {
  if (s_) s_->close();
}
void stream::close() noexcept {
  if (s_) s_->close();
}

#if defined(__linux__)

namespace {

[[noreturn]] void throw_errno(int e, const std::string& what) { throw std::system_error(e, std::generic_category(), what); }

// getaddrinfo's EAI_* codes.
class gai_category_t : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return gai_strerror(code); }
};
const std::error_category& gai_category() {
  static const gai_category_t c;
  return c;
}

stream::state& need(const std::unique_ptr<stream::state>& s, const char* op) {
  if (!s) throw_errno(EBADF, op);
  return *s;
}

// Registers `s` with the running loop the first time it has to wait.
void prepare_wait(stream::state& s, const char* op) {
  sched::require_fiber(op);
  if (!s.h.registered) {
    if (s.h.fd < 0) throw_errno(EBADF, op);
    sched::io_register(s.h);
    s.loop = event_loop::current();
  } else if (s.loop != event_loop::current() && !sched::io_follows(s.loop)) {
    throw error(std::string(op) + ": the fd is registered with another event_loop");
  }
}

// Parks until `s` may be readable (write == false) or writable.
void wait(stream::state& s, bool write, clock::time_point deadline, const char* op) {
  prepare_wait(s, op);
  if (!sched::io_wait(s.h, write, deadline, op)) throw timeout_error(op);
}

// Whether an errno says the process or the system ran out of fds or memory: not
// this call's fault, and it may pass once other fds are closed.
bool out_of_resources(int e) noexcept { return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM; }

bool short_read_drains(stream::state& s) noexcept {
  using drains = stream::state::drains;
  if (s.short_read_drains == drains::unknown) {
    bool yes = false;
    struct stat st;
    if (::fstat(s.h.fd, &st) == 0) {
      if (S_ISFIFO(st.st_mode)) {
        yes = true;
      } else if (S_ISSOCK(st.st_mode)) {
        int type = 0;
        socklen_t len = sizeof type;
        yes = ::getsockopt(s.h.fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
      }
    }
    s.short_read_drains = yes ? drains::yes : drains::no;
  }
  return s.short_read_drains == drains::yes;
}

// Reads what is there, parking on EAGAIN. The fd is edge-triggered (io_register),
// so once a read came back short from a byte stream, data that arrives later
// raises a new edge: the next read waits for it before trying, which saves the
// read that would fail with EAGAIN (one system call in three for an echo server).
// Not once an edge has reported a hang-up or an error: it may have come with the
// data just read, and then no edge follows for the end of stream still to read.
std::size_t read_some(stream::state& s, void* buf, std::size_t n, clock::time_point deadline, const char* op) {
  sched::coop_tick();  // a reader that always finds data yields now and then (detail/loop_core.hpp)
  if (s.drained) {
    s.drained = false;
    if (!s.h.hangup) wait(s, false, deadline, op);
  }
  for (;;) {
    const ssize_t r = ::read(s.h.fd, buf, n);
    if (r >= 0) {
      if (r > 0 && static_cast<std::size_t>(r) < n && s.h.registered && short_read_drains(s)) s.drained = true;
      return static_cast<std::size_t>(r);
    }
    const int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK)
      wait(s, false, deadline, op);
    else if (e != EINTR)
      throw_errno(e, op);
  }
}

std::size_t write_some(stream::state& s, const void* buf, std::size_t n, clock::time_point deadline, const char* op) {
  sched::coop_tick();
  for (;;) {
    ssize_t r;
    if (s.fd_kind != stream::state::kind::other) {
      // MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
      r = ::send(s.h.fd, buf, n, MSG_NOSIGNAL);
      if (r < 0 && errno == ENOTSOCK) {
        s.fd_kind = stream::state::kind::other;
        continue;
      }
    } else {
      r = ::write(s.h.fd, buf, n);
    }
    if (r >= 0) return static_cast<std::size_t>(r);
    const int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK)
      wait(s, true, deadline, op);
    else if (e != EINTR)
      throw_errno(e, op);
  }
}

void make_nonblocking(int fd, const char* op) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw_errno(errno, op);
  if (!(flags & O_NONBLOCK) && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) throw_errno(errno, op);
}

std::string host_port(const std::string& host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool is_localhost(const std::string& host) noexcept {
  std::string h;
  for (char c : host) h += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (!h.empty() && h.back() == '.') h.pop_back();
  return h == "localhost" || (h.size() > 10 && h.compare(h.size() - 10, 10, ".localhost") == 0);
}

struct addresses {
  addrinfo* list = nullptr;
  addresses(const std::string& host, std::uint16_t port, bool passive, const std::string& what) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    const std::string service = std::to_string(port);
    int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &list);
    if (rc == EAI_NONAME && is_localhost(host)) {
      // RFC 6761, 6.3: "localhost" is the loopback address, even where the system
      // has no name for it (a bare container without /etc/hosts).
      hints.ai_flags |= AI_NUMERICHOST;
      rc = ::getaddrinfo("127.0.0.1", service.c_str(), &hints, &list);
    }
    if (rc == EAI_SYSTEM) throw_errno(errno, what + ": getaddrinfo");  // e.g. EMFILE: /etc/hosts unread
    if (rc != 0) throw std::system_error(rc, gai_category(), what);
  }
  ~addresses() {
    if (list) ::freeaddrinfo(list);
  }
  addresses(const addresses&) = delete;
  addresses& operator=(const addresses&) = delete;
};

void set_nodelay(int fd, bool on) {
  const int v = on ? 1 : 0;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
}

}  // namespace

void stream::state::close() noexcept {
  if (h.fd < 0) return;
  sched::io_unregister(h);  // wakes the fibers blocked on it: they find EBADF
  ::close(h.fd);
  h.fd = -1;
  h.readable = h.writable = false;
  drained = false;
  loop = nullptr;
}

// ---- raw fds ------------------------------------------------------------------------

void set_nonblocking(int fd) { make_nonblocking(fd, "fiber::io::set_nonblocking"); }

bool wait_readable(int fd, clock::time_point deadline) {
  return sched::io_wait_fd(fd, false, deadline, "fiber::io::wait_readable");
}
bool wait_writable(int fd, clock::time_point deadline) {
  return sched::io_wait_fd(fd, true, deadline, "fiber::io::wait_writable");
}

namespace {
// A raw-fd read or write: `sock` (recv/send with MSG_DONTWAIT) first; an fd that
// is no socket gets O_NONBLOCK set once and `plain` (read/write) instead; the
// fiber waits on EAGAIN.
template <class Sock, class Plain>
std::size_t transfer_fd(int fd, bool writing, clock::time_point deadline, const char* op, Sock sock, Plain plain) {
  sched::coop_tick();
  bool flags_set = false;
  for (;;) {
    ssize_t r = sock();
    if (r < 0 && errno == ENOTSOCK) {
      if (!flags_set) make_nonblocking(fd, op);
      flags_set = true;
      r = plain();
    }
    if (r >= 0) return static_cast<std::size_t>(r);
    const int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      if (!sched::io_wait_fd(fd, writing, deadline, op)) throw timeout_error(op);
    } else if (e != EINTR) {
      throw_errno(e, op);
    }
  }
}
}  // namespace

std::size_t read(int fd, void* buf, std::size_t n, clock::time_point deadline) {
  return transfer_fd(
      fd, false, deadline, "fiber::io::read", [&] { return ::recv(fd, buf, n, MSG_DONTWAIT); },
      [&] { return ::read(fd, buf, n); });
}

std::size_t write(int fd, const void* buf, std::size_t n, clock::time_point deadline) {
  return transfer_fd(
      fd, true, deadline, "fiber::io::write", [&] { return ::send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL); },
      [&] { return ::write(fd, buf, n); });
}

// ---- stream -------------------------------------------------------------------------

stream stream::adopt(int fd) {
  if (fd < 0) throw_errno(EBADF, "fiber::io::stream::adopt");
  auto s = std::make_unique<state>(fd);  // closes fd if what follows throws
  make_nonblocking(fd, "fiber::io::stream::adopt");
  return stream(std::move(s));
}

int stream::release() noexcept {
  if (!s_ || s_->h.fd < 0) return -1;
  sched::io_unregister(s_->h);
  s_->drained = false;
  const int fd = std::exchange(s_->h.fd, -1);
  s_->loop = nullptr;
  return fd;
}

std::size_t stream::read(void* buf, std::size_t n, clock::time_point deadline) {
  state& s = need(s_, "fiber::io::stream::read");
  if (s.buffered() && n) return s.take_buffered(buf, n);
  return read_some(s, buf, n, deadline, "fiber::io::stream::read");
}

void stream::read_exact(void* buf, std::size_t n, clock::time_point deadline) {
  state& s = need(s_, "fiber::io::stream::read_exact");
  auto* p = static_cast<char*>(buf);
  std::size_t got = s.buffered() ? s.take_buffered(p, n) : 0;
  while (got < n) {
    const std::size_t r = read_some(s, p + got, n - got, deadline, "fiber::io::stream::read_exact");
    if (r == 0) throw incomplete_read(n, got);
    got += r;
  }
}

std::optional<std::string> stream::read_line(clock::time_point deadline, std::size_t max_length) {
  static constexpr const char* op = "fiber::io::stream::read_line";
  state& s = need(s_, op);
  if (!s.buf) {
    s.cap = 8192;
    s.buf = std::make_unique_for_overwrite<char[]>(s.cap);
  }
  for (;;) {
    char* start = s.buf.get() + s.begin;
    if (auto* nl = static_cast<char*>(std::memchr(start + s.scanned, '\n', s.buffered() - s.scanned))) {
      std::string line(start, nl);
      s.begin += line.size() + 1;
      s.scanned = 0;
      if (s.begin == s.end) s.begin = s.end = 0;
      return line;
    }
    s.scanned = s.buffered();
    if (s.buffered() >= max_length)
      throw std::length_error(std::string(op) + ": a line longer than " + std::to_string(max_length) + " bytes");
    if (s.end == s.cap) {
      if (s.begin > 0) {
        std::memmove(s.buf.get(), start, s.buffered());
      } else {
        auto bigger = std::make_unique_for_overwrite<char[]>(s.cap * 2);
        std::memcpy(bigger.get(), s.buf.get(), s.cap);
        s.buf = std::move(bigger);
        s.cap *= 2;
      }
      s.end -= s.begin;
      s.begin = 0;
    }
    const std::size_t r = read_some(s, s.buf.get() + s.end, s.cap - s.end, deadline, op);
    if (r == 0) {
      if (!s.buffered()) return std::nullopt;
      std::string last(s.buf.get() + s.begin, s.buffered());
      s.begin = s.end = s.scanned = 0;
      return last;
    }
    s.end += r;
  }
}

std::size_t stream::write(const void* buf, std::size_t n, clock::time_point deadline) {
  state& s = need(s_, "fiber::io::stream::write");
  return write_some(s, buf, n, deadline, "fiber::io::stream::write");
}

void stream::write_all(const void* buf, std::size_t n, clock::time_point deadline) {
  state& s = need(s_, "fiber::io::stream::write_all");
  const auto* p = static_cast<const char*>(buf);
  while (n) {
    const std::size_t w = write_some(s, p, n, deadline, "fiber::io::stream::write_all");
    p += w;
    n -= w;
  }
}

void stream::shutdown_write() {
  state& s = need(s_, "fiber::io::stream::shutdown_write");
  if (::shutdown(s.h.fd, SHUT_WR) != 0) throw_errno(errno, "fiber::io::stream::shutdown_write");
}

void stream::set_nodelay(bool on) {
  state& s = need(s_, "fiber::io::stream::set_nodelay");
  const int v = on ? 1 : 0;
  if (::setsockopt(s.h.fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0)
    throw_errno(errno, "fiber::io::stream::set_nodelay");
}

namespace {
// Edge-triggered registration cannot tell "ready now": ask poll(2), then wait for an
// edge, and ask again (an edge may be stale).
bool wait_ready(stream::state& s, bool write, clock::time_point deadline, const char* op) {
  for (;;) {
    pollfd p{s.h.fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
    const int r = ::poll(&p, 1, 0);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) throw_errno(errno, op);
    if (r == 0) {
      try {
        wait(s, write, deadline, op);
      } catch (const timeout_error&) {
        return false;
      }
    }
  }
}
}  // namespace

bool stream::wait_readable(clock::time_point deadline) {
  state& s = need(s_, "fiber::io::stream::wait_readable");
  if (s.buffered()) return true;
  return wait_ready(s, false, deadline, "fiber::io::stream::wait_readable");
}

bool stream::wait_writable(clock::time_point deadline) {
  state& s = need(s_, "fiber::io::stream::wait_writable");
  return wait_ready(s, true, deadline, "fiber::io::stream::wait_writable");
}

// ---- TCP ------------------------------------------------------------------------------

namespace {
// The state of a TCP socket this file made (listen, accept, connect): a byte
// stream, so a short read means drained, and no fstat/getsockopt to learn it.
std::unique_ptr<stream::state> tcp_state(int fd) {
  auto s = std::make_unique<stream::state>(fd);
  s->fd_kind = stream::state::kind::socket;
  s->short_read_drains = stream::state::drains::yes;
  return s;
}

// A non-blocking socket for `a`, or nullptr with the reason in `err`.
std::unique_ptr<stream::state> open_socket(const addrinfo* a, int& err) {
  const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
  if (fd < 0) {
    err = errno;
    return nullptr;
  }
  return tcp_state(fd);
}

// listener::accept's wait after EMFILE and the like: parks the fiber until `until`,
// on the listener's own wait list rather than in a plain sleep, so that close()
// ends it at once (EBADF) and destroying the listener under it is refused as for
// any blocked fiber. The connections that come meanwhile do not end it. fiber::dump()
// shows the fiber "parked in" `waiting`.
void accept_back_off(stream::state& s, clock::time_point until, const char* op) {
  static constexpr const char* waiting = "fiber::io::listener::accept (backing off: out of fds or memory)";
  for (;;) {
    if (s.h.fd < 0) throw_errno(EBADF, op);  // closed meanwhile
    prepare_wait(s, op);
    if (!sched::io_wait(s.h, false, until, waiting) || clock::now() >= until) return;
  }
}
}  // namespace

listener listen(const std::string& host, std::uint16_t port, const listen_options& options) {
  const std::string what = "fiber::io::listen " + host_port(host, port);
  addresses addrs(host, port, true, what);
  int err = EADDRNOTAVAIL;
  const char* failed_call = nullptr;  // named in the error when not bind or listen
  for (addrinfo* a = addrs.list; a; a = a->ai_next) {
    auto s = open_socket(a, err);
    if (!s) {
      // Out of fds or memory: no other address would do better.
      if (out_of_resources(err)) throw_errno(err, what + ": socket");
      failed_call = "socket";  // e.g. EAFNOSUPPORT: IPv6 disabled; try the next one
      continue;
    }
    const int fd = s->h.fd;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (options.reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      throw_errno(errno, what + ": setsockopt(SO_REUSEPORT)");
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, options.backlog) == 0)
      return listener(std::move(s));
    err = errno;
    failed_call = nullptr;
  }
  throw_errno(err, failed_call ? what + ": " + failed_call : what);
}

stream listener::accept(clock::time_point deadline) {
  static constexpr const char* op = "fiber::io::listener::accept";
  stream::state& s = need(s_, op);
  sched::coop_tick();  // a flood of connections does not hold up the ones accepted
  // The wait after running out of fds or memory (io.hpp): Go's net/http server's.
  constexpr clock::duration first_delay = std::chrono::milliseconds(5);
  constexpr clock::duration max_delay = std::chrono::seconds(1);
  clock::duration delay{};
  for (;;) {
    const int fd = ::accept4(s.h.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      set_nodelay(fd, true);
      return stream(tcp_state(fd));
    }
    switch (const int e = errno) {
      case EAGAIN:
#  if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#  endif
        wait(s, false, deadline, op);
        break;
      // Out of fds (the process's RLIMIT_NOFILE: EMFILE; the system's: ENFILE) or
      // of memory for the new socket: wait and try again. (Linux takes the fd
      // before it looks at the queue: EMFILE comes even with no connection pending.)
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM: {
        if (!resource_backoff_) throw_errno(e, op);
        const clock::time_point now = clock::now();
        if (now >= deadline) throw timeout_error(op);
        delay = delay == clock::duration::zero() ? first_delay : std::min(2 * delay, max_delay);
        ++resource_waits_;
        const clock::time_point until = deadline - now > delay ? now + delay : deadline;
        accept_back_off(s, until, op);
        if (until == deadline) throw timeout_error(op);
        break;
      }
      // The connection died before we took it, or (Linux) a network error pending
      // on it, or a firewall rule refused it (EPERM): take the next one.
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case EPERM:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH:
        break;
      default:
        throw_errno(e, op);
    }
  }
}

std::uint16_t listener::local_port() const {
  if (!s_ || s_->h.fd < 0) throw_errno(EBADF, "fiber::io::listener::local_port");
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (::getsockname(s_->h.fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw_errno(errno, "fiber::io::listener::local_port");
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
}

stream connect(const std::string& host, std::uint16_t port, clock::time_point deadline) {
  const std::string what = "fiber::io::connect " + host_port(host, port);
  addresses addrs(host, port, false, what);
  int err = EADDRNOTAVAIL;
  const char* failed_call = nullptr;  // named in the error when not connect itself
  for (addrinfo* a = addrs.list; a; a = a->ai_next) {
    auto s = open_socket(a, err);
    if (!s) {
      // Out of fds or memory: no other address would do better.
      if (out_of_resources(err)) throw_errno(err, what + ": socket");
      failed_call = "socket";  // e.g. EAFNOSUPPORT: IPv6 disabled; try the next one
      continue;
    }
    failed_call = nullptr;
    const int fd = s->h.fd;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err != EINPROGRESS && err != EINTR) continue;  // the next address
      // Writable once connected or failed: getpeername() tells which. A failed
      // connect leaves its error pending on the socket; a one-byte read returns
      // it as errno. (Not SO_ERROR: qemu-user passes its value through in the
      // host's errno numbering, which differs from MIPS's, for one.)
      wait(*s, true, deadline, what.c_str());
      sockaddr_storage peer{};
      socklen_t peer_len = sizeof peer;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
        char byte;
        err = ::read(fd, &byte, 1) < 0 ? errno : ECONNRESET;
        if (err == EAGAIN || err == EWOULDBLOCK) {
          socklen_t len = sizeof err;
          if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = ENOTCONN;
        }
        continue;
      }
    }
    set_nodelay(fd, true);
    return stream(std::move(s));
  }
  throw_errno(err, failed_call ? what + ": " + failed_call : what);
}

#else  // !__linux__

namespace {
[[noreturn]] void unsupported(const char* op) {
  throw error(std::string(op) + ": not supported on this platform");
}
}  // namespace

void stream::state::close() noexcept { h.fd = -1; }

void set_nonblocking(int) { unsupported("fiber::io::set_nonblocking"); }
bool wait_readable(int, clock::time_point) { unsupported("fiber::io::wait_readable"); }
bool wait_writable(int, clock::time_point) { unsupported("fiber::io::wait_writable"); }
std::size_t read(int, void*, std::size_t, clock::time_point) { unsupported("fiber::io::read"); }
std::size_t write(int, const void*, std::size_t, clock::time_point) { unsupported("fiber::io::write"); }

stream stream::adopt(int) { unsupported("fiber::io::stream::adopt"); }
int stream::release() noexcept { return -1; }
std::size_t stream::read(void*, std::size_t, clock::time_point) { unsupported("fiber::io::stream::read"); }
void stream::read_exact(void*, std::size_t, clock::time_point) { unsupported("fiber::io::stream::read_exact"); }
std::optional<std::string> stream::read_line(clock::time_point, std::size_t) {
  unsupported("fiber::io::stream::read_line");
}
std::size_t stream::write(const void*, std::size_t, clock::time_point) { unsupported("fiber::io::stream::write"); }
void stream::write_all(const void*, std::size_t, clock::time_point) { unsupported("fiber::io::stream::write_all"); }
void stream::shutdown_write() { unsupported("fiber::io::stream::shutdown_write"); }
void stream::set_nodelay(bool) { unsupported("fiber::io::stream::set_nodelay"); }
bool stream::wait_readable(clock::time_point) { unsupported("fiber::io::stream::wait_readable"); }
bool stream::wait_writable(clock::time_point) { unsupported("fiber::io::stream::wait_writable"); }

listener listen(const std::string&, std::uint16_t, const listen_options&) { unsupported("fiber::io::listen"); }
stream listener::accept(clock::time_point) { unsupported("fiber::io::listener::accept"); }
std::uint16_t listener::local_port() const { unsupported("fiber::io::listener::local_port"); }
stream connect(const std::string&, std::uint16_t, clock::time_point) { unsupported("fiber::io::connect"); }

#endif

}  // namespace fiber::io
