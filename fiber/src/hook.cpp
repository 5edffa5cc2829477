// libfiber_hook: the blocking libc calls, made to yield inside fibers.
//
// Linked into a program or loaded with LD_PRELOAD, this library interposes read,
// write, readv, writev, recv, recvfrom, recvmsg, send, sendto, sendmsg, accept,
// accept4, connect, poll, select, sleep, usleep, nanosleep and close. Each one
// goes straight to libc (found with dlsym(RTLD_NEXT)) unless all of these hold:
//   - it is called from a task of a running fiber loop (fiber_in_task(), found
//     with dlsym(RTLD_DEFAULT): a program without libfiber is never affected);
//   - for the fd calls: the fd is in blocking mode (O_NONBLOCK clear) and is a
//     socket, a pipe/FIFO or a character device (not a regular file, directory or
//     block device, which never wait for readiness).
// Then the call tries the operation without blocking; when it would block, the
// task parks on the loop (fiber_wait_fd) and the thread runs the other tasks.
// What the caller sees is what a blocking call returns: same results, same errno,
// writes that write everything (or stop at an error), SO_RCVTIMEO/SO_SNDTIMEO
// honoured (EAGAIN on timeout; EINPROGRESS for connect), MSG_DONTWAIT and
// MSG_WAITALL honoured. A task cancelled while it waits sees EINTR. The fd's flags
// are never changed, except connect's O_NONBLOCK for the time of the call.
//
// The libfiber the program uses must be visible to dlsym(RTLD_DEFAULT): a shared
// libfiber, or an executable linked with -rdynamic (CMake: ENABLE_EXPORTS).
#ifndef _GNU_SOURCE
#  define _GNU_SOURCE 1
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fiber/fiber.h"

namespace {

// ---- the real functions and libfiber's, resolved once ----

struct real_functions {
  ssize_t (*read)(int, void*, size_t);
  ssize_t (*write)(int, const void*, size_t);
  ssize_t (*readv)(int, const iovec*, int);
  ssize_t (*writev)(int, const iovec*, int);
  ssize_t (*recv)(int, void*, size_t, int);
  ssize_t (*recvfrom)(int, void*, size_t, int, sockaddr*, socklen_t*);
  ssize_t (*recvmsg)(int, msghdr*, int);
  ssize_t (*send)(int, const void*, size_t, int);
  ssize_t (*sendto)(int, const void*, size_t, int, const sockaddr*, socklen_t);
  ssize_t (*sendmsg)(int, const msghdr*, int);
  int (*accept)(int, sockaddr*, socklen_t*);
  int (*accept4)(int, sockaddr*, socklen_t*, int);
  int (*connect)(int, const sockaddr*, socklen_t);
  int (*poll)(pollfd*, nfds_t, int);
  int (*select)(int, fd_set*, fd_set*, fd_set*, timeval*);
  unsigned (*sleep)(unsigned);
  int (*usleep)(useconds_t);
  int (*nanosleep)(const timespec*, timespec*);
  int (*close)(int);
};

struct fiber_functions {
  int (*in_task)(void);
  int (*wait_fd)(int, int, int64_t, int*);
  int (*sleep_ns)(int64_t);
  void (*fd_closing)(int);
  const char* (*last_error)(void);
};

template <class F>
void resolve(F*& slot, void* handle, const char* name) {
  slot = reinterpret_cast<F*>(dlsym(handle, name));
}

real_functions real;
fiber_functions fib;

void resolve_all() {
  real_functions r{};
  resolve(r.read, RTLD_NEXT, "read");
  resolve(r.write, RTLD_NEXT, "write");
  resolve(r.readv, RTLD_NEXT, "readv");
  resolve(r.writev, RTLD_NEXT, "writev");
  resolve(r.recv, RTLD_NEXT, "recv");
  resolve(r.recvfrom, RTLD_NEXT, "recvfrom");
  resolve(r.recvmsg, RTLD_NEXT, "recvmsg");
  resolve(r.send, RTLD_NEXT, "send");
  resolve(r.sendto, RTLD_NEXT, "sendto");
  resolve(r.sendmsg, RTLD_NEXT, "sendmsg");
  resolve(r.accept, RTLD_NEXT, "accept");
  resolve(r.accept4, RTLD_NEXT, "accept4");
  resolve(r.connect, RTLD_NEXT, "connect");
  resolve(r.poll, RTLD_NEXT, "poll");
  resolve(r.select, RTLD_NEXT, "select");
  resolve(r.sleep, RTLD_NEXT, "sleep");
  resolve(r.usleep, RTLD_NEXT, "usleep");
  resolve(r.nanosleep, RTLD_NEXT, "nanosleep");
  resolve(r.close, RTLD_NEXT, "close");
  if (!r.read || !r.write || !r.readv || !r.writev || !r.recv || !r.recvfrom || !r.recvmsg || !r.send ||
      !r.sendto || !r.sendmsg || !r.accept || !r.accept4 || !r.connect || !r.poll || !r.select || !r.sleep ||
      !r.usleep || !r.nanosleep || !r.close) {
    static const char msg[] = "libfiber_hook: dlsym(RTLD_NEXT) did not find the libc functions to wrap\n";
    (void)!::syscall(SYS_write, 2, msg, sizeof msg - 1);  // not write(): that is ours
    std::abort();
  }
  fiber_functions f{};
  resolve(f.in_task, RTLD_DEFAULT, "fiber_in_task");
  resolve(f.wait_fd, RTLD_DEFAULT, "fiber_wait_fd");
  resolve(f.sleep_ns, RTLD_DEFAULT, "fiber_sleep_ns");
  resolve(f.fd_closing, RTLD_DEFAULT, "fiber_fd_closing");
  resolve(f.last_error, RTLD_DEFAULT, "fiber_last_error");
  if (!f.in_task || !f.wait_fd || !f.sleep_ns || !f.fd_closing || !f.last_error)
    f = fiber_functions{};  // no libfiber in the process: everything passes through
  real = r;
  fib = f;
}

// Resolved once, on first use (from any thread: a function-local static).
inline const real_functions& libc() {
  static const bool done = (resolve_all(), true);
  (void)done;
  return real;
}

__attribute__((constructor)) void resolve_at_load() { libc(); }

inline bool in_task() {
  libc();
  return fib.in_task && fib.in_task();
}

// ---- which calls wait on the loop ----

enum class kind { passthrough, socket, stream };

// Only from a task, and only for blocking fds that can wait for readiness.
kind classify(int fd) {
  if (!in_task()) return kind::passthrough;
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || (fl & O_NONBLOCK)) return kind::passthrough;
  struct stat st;
  if (::fstat(fd, &st) != 0) return kind::passthrough;
  if (S_ISSOCK(st.st_mode)) return kind::socket;
  if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) return kind::stream;
  return kind::passthrough;
}

// A deadline in steady-clock nanoseconds; INT64_MAX: none.
constexpr int64_t no_deadline = INT64_MAX;
// The longest sleep handed to the loop (about 31 years): longer ones are clamped.
constexpr int64_t longest_sleep_ns = 1000000000000000000;

int64_t saturating_ns(int64_t seconds, int64_t nanos) {
  if (seconds > longest_sleep_ns / 1000000000) return longest_sleep_ns;
  return seconds * 1000000000 + nanos;
}

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t deadline_after_ms(int ms) { return ms < 0 ? no_deadline : now_ns() + static_cast<int64_t>(ms) * 1000000; }

// The socket's SO_RCVTIMEO (reading) or SO_SNDTIMEO, as a deadline from now.
int64_t socket_deadline(int fd, bool writing) {
  timeval tv{};
  socklen_t len = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, writing ? SO_SNDTIMEO : SO_RCVTIMEO, &tv, &len) != 0) return no_deadline;
  if (tv.tv_sec == 0 && tv.tv_usec == 0) return no_deadline;
  return now_ns() + static_cast<int64_t>(tv.tv_sec) * 1000000000 + static_cast<int64_t>(tv.tv_usec) * 1000;
}

// A socket timeout read only when a call first has to wait (one getsockopt),
// measured from the start of the call.
struct lazy_deadline {
  int fd;
  bool writing;
  int64_t start = now_ns();
  int64_t value = -1;
  int64_t get() {
    if (value < 0) {
      value = socket_deadline(fd, writing);
      if (value != no_deadline) value -= now_ns() - start;  // from the call's start
    }
    return value;
  }
};

// Parks until fd is ready. 0, or -1 with errno: EAGAIN when the deadline passed,
// EINTR when the task was cancelled, EIO for anything else (reported on stderr).
int wait_ready(int fd, bool writing, int64_t deadline) {
  int64_t timeout_ms = -1;
  if (deadline != no_deadline) {
    const int64_t left = deadline - now_ns();
    if (left <= 0) {
      errno = EAGAIN;
      return -1;
    }
    timeout_ms = (left + 999999) / 1000000;
  }
  const int rc = fib.wait_fd(fd, writing ? FIBER_WRITABLE : FIBER_READABLE, timeout_ms, nullptr);
  switch (rc) {
    case FIBER_OK:
      return 0;
    case FIBER_TIMEOUT:
      errno = EAGAIN;
      return -1;
    case FIBER_CANCELLED:
      errno = EINTR;
      return -1;
    default:
      std::fprintf(stderr, "libfiber_hook: waiting on fd %d failed: %s\n", fd, fib.last_error());
      errno = EIO;
      return -1;
  }
}

bool would_block() { return errno == EAGAIN || errno == EWOULDBLOCK; }

// Whether fd is ready now for reading (or writing), by poll with no timeout.
int ready_now(int fd, bool writing) {
  pollfd p{fd, static_cast<short>(writing ? POLLOUT : POLLIN), 0};
  return libc().poll(&p, 1, 0);
}

bool is_stream_socket(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

// ---- sockets ----

ssize_t socket_recvmsg(int fd, msghdr* msg, int flags) {
  lazy_deadline deadline{fd, false};
  const bool waitall = (flags & MSG_WAITALL) != 0;
  std::size_t want = 0;
  for (std::size_t i = 0; i < msg->msg_iovlen; ++i) want += msg->msg_iov[i].iov_len;
  // MSG_WAITALL is gathered below for plain data on a stream; with MSG_PEEK or
  // ancillary data the first non-empty receive is returned as it is.
  if (!waitall || want == 0 || (flags & MSG_PEEK) || msg->msg_controllen > 0 || !is_stream_socket(fd)) {
    for (;;) {
      const ssize_t r = libc().recvmsg(fd, msg, flags | MSG_DONTWAIT);
      if (r >= 0 || !would_block()) return r;
      if (wait_ready(fd, false, deadline.get()) != 0) return -1;
    }
  }
  // MSG_WAITALL on a stream: gather until `want` bytes, EOF, or an error.
  std::vector<iovec> iov(msg->msg_iov, msg->msg_iov + msg->msg_iovlen);
  msghdr m = *msg;
  std::size_t got = 0, first = 0;
  while (got < want) {
    m.msg_iov = iov.data() + first;
    m.msg_iovlen = iov.size() - first;
    const ssize_t r = libc().recvmsg(fd, &m, (flags & ~MSG_WAITALL) | MSG_DONTWAIT);
    if (r == 0) break;
    if (r < 0) {
      if (!would_block()) return got ? static_cast<ssize_t>(got) : -1;
      if (wait_ready(fd, false, deadline.get()) != 0) return got ? static_cast<ssize_t>(got) : -1;
      continue;
    }
    got += static_cast<std::size_t>(r);
    for (std::size_t left = static_cast<std::size_t>(r); left > 0 && first < iov.size();) {
      const std::size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
  }
  msg->msg_flags = m.msg_flags;
  msg->msg_namelen = m.msg_namelen;
  return static_cast<ssize_t>(got);
}

ssize_t socket_recv(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen) {
  iovec v{buf, n};
  msghdr m{};
  m.msg_name = from;
  m.msg_namelen = fromlen ? *fromlen : 0;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  const ssize_t r = socket_recvmsg(fd, &m, flags);
  if (r >= 0 && fromlen) *fromlen = m.msg_namelen;
  return r;
}

// A blocking send writes everything on a stream socket: loop over partial sends.
ssize_t socket_sendmsg(int fd, const msghdr* msg, int flags) {
  lazy_deadline deadline{fd, true};
  std::vector<iovec> iov(msg->msg_iov, msg->msg_iov + msg->msg_iovlen);
  msghdr m = *msg;
  std::size_t want = 0, sent = 0, first = 0;
  for (const iovec& v : iov) want += v.iov_len;
  bool stream = false, checked = false;
  for (;;) {
    m.msg_iov = iov.data() + first;
    m.msg_iovlen = iov.size() - first;
    const ssize_t r = libc().sendmsg(fd, &m, flags | MSG_DONTWAIT);
    if (r < 0) {
      if (!would_block()) return sent ? static_cast<ssize_t>(sent) : -1;
      if (wait_ready(fd, true, deadline.get()) != 0) return sent ? static_cast<ssize_t>(sent) : -1;
      continue;
    }
    sent += static_cast<std::size_t>(r);
    if (sent >= want) return static_cast<ssize_t>(sent);
    if (!checked) {
      stream = is_stream_socket(fd);
      checked = true;
    }
    if (!stream) return static_cast<ssize_t>(sent);
    for (std::size_t left = static_cast<std::size_t>(r); left > 0 && first < iov.size();) {
      const std::size_t take = std::min(left, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + take;
      iov[first].iov_len -= take;
      left -= take;
      if (iov[first].iov_len == 0) ++first;
    }
    // The rest is plain data: ancillary data (SCM_RIGHTS...) and the address go
    // with the first part only, or the peer would get them twice.
    m.msg_control = nullptr;
    m.msg_controllen = 0;
    m.msg_name = nullptr;
    m.msg_namelen = 0;
  }
}

ssize_t socket_send(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen) {
  iovec v{const_cast<void*>(buf), n};
  msghdr m{};
  m.msg_name = const_cast<sockaddr*>(to);
  m.msg_namelen = tolen;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  return socket_sendmsg(fd, &m, flags);
}

// ---- pipes, FIFOs, terminals (and accept) ----

// For fds that have no non-blocking form of the call: waits until poll says fd
// is ready, then makes the (blocking-mode) call, which then does not block.
// -1 with errno if poll fails or the wait ends without readiness.
template <class Call>
auto when_ready(int fd, bool writing, lazy_deadline* deadline, Call call) -> decltype(call()) {
  for (;;) {
    const int ready = ready_now(fd, writing);
    if (ready > 0) return call();
    if (ready < 0 && errno != EINTR) return -1;
    if (wait_ready(fd, writing, deadline ? deadline->get() : no_deadline) != 0) return -1;
  }
}

ssize_t stream_read(int fd, void* buf, size_t n) {
  return when_ready(fd, false, nullptr, [&] { return libc().read(fd, buf, n); });
}

ssize_t stream_readv(int fd, const iovec* iov, int count) {
  return when_ready(fd, false, nullptr, [&] { return libc().readv(fd, iov, count); });
}

// Writes everything, PIPE_BUF bytes at a time once poll says there is room (a
// pipe that polls writable takes PIPE_BUF bytes without blocking).
ssize_t stream_write(int fd, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  std::size_t done = 0;
  do {
    const int ready = ready_now(fd, true);
    if (ready < 0 && errno != EINTR) return done ? static_cast<ssize_t>(done) : -1;
    if (ready <= 0) {
      if (wait_ready(fd, true, no_deadline) != 0) return done ? static_cast<ssize_t>(done) : -1;
      continue;
    }
    const std::size_t chunk = std::min<std::size_t>(n - done, PIPE_BUF);
    const ssize_t r = libc().write(fd, p + done, chunk);
    if (r < 0) return done ? static_cast<ssize_t>(done) : -1;
    done += static_cast<std::size_t>(r);
  } while (done < n);
  return static_cast<ssize_t>(done);
}

// ---- poll and select ----

int fiber_poll(pollfd* fds, nfds_t nfds, int timeout_ms) {
  const int first = libc().poll(fds, nfds, 0);
  if (first != 0 || timeout_ms == 0) return first;
  const int64_t deadline = deadline_after_ms(timeout_ms);
  if (nfds == 0) {  // a sleep; "forever" is as long as the loop can wait
    const int rc = fib.sleep_ns(timeout_ms < 0 ? longest_sleep_ns : static_cast<int64_t>(timeout_ms) * 1000000);
    if (rc == FIBER_CANCELLED) {
      errno = EINTR;
      return -1;
    }
    return 0;
  }
  // Every fd of the set in one epoll instance, which the task waits on.
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return -1;
  for (nfds_t i = 0; i < nfds; ++i) {
    if (fds[i].fd < 0) continue;
    epoll_event ev{};
    ev.events = static_cast<std::uint16_t>(fds[i].events);  // POLL* and EPOLL* bits are the same on Linux
    ev.data.fd = fds[i].fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i].fd, &ev) != 0 && errno == EEXIST) {
      // the same fd twice in the set: wait for the union of its events
      for (nfds_t j = 0; j < i; ++j)
        if (fds[j].fd == fds[i].fd) ev.events |= static_cast<std::uint16_t>(fds[j].events);
      epoll_ctl(ep, EPOLL_CTL_MOD, fds[i].fd, &ev);
    }
  }
  int result;
  for (;;) {
    if (wait_ready(ep, false, deadline) != 0) {
      result = errno == EAGAIN ? 0 : -1;  // the timeout passed: nothing ready
      break;
    }
    result = libc().poll(fds, nfds, 0);
    if (result != 0) break;
  }
  const int saved = errno;
  libc().close(ep);
  errno = saved;
  return result;
}

int fiber_select(int nfds, fd_set* r, fd_set* w, fd_set* e, timeval* timeout) {
  if (nfds < 0) {
    errno = EINVAL;
    return -1;
  }
  if (nfds > FD_SETSIZE) nfds = FD_SETSIZE;  // an fd_set holds no more
  int timeout_ms = -1;
  if (timeout) {
    if (timeout->tv_sec < 0 || timeout->tv_usec < 0 || timeout->tv_usec >= 1000000) {
      errno = EINVAL;
      return -1;
    }
    const int64_t ms = timeout->tv_sec > INT_MAX / 1000 ? INT_MAX
                                                        : static_cast<int64_t>(timeout->tv_sec) * 1000 +
                                                              (timeout->tv_usec + 999) / 1000;
    timeout_ms = ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
  }
  std::vector<pollfd> fds;
  for (int fd = 0; fd < nfds; ++fd) {
    short ev = 0;
    if (r && FD_ISSET(fd, r)) ev |= POLLIN;
    if (w && FD_ISSET(fd, w)) ev |= POLLOUT;
    if (e && FD_ISSET(fd, e)) ev |= POLLPRI;
    if (ev) fds.push_back(pollfd{fd, ev, 0});
  }
  const int64_t start = now_ns();
  const int n = fiber_poll(fds.data(), fds.size(), timeout_ms);
  if (n < 0) return -1;
  for (const pollfd& p : fds)
    if (p.revents & POLLNVAL) {
      errno = EBADF;
      return -1;
    }
  if (r) FD_ZERO(r);
  if (w) FD_ZERO(w);
  if (e) FD_ZERO(e);
  int count = 0;
  for (const pollfd& p : fds) {
    if (r && (p.events & POLLIN) && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
      FD_SET(p.fd, r);
      ++count;
    }
    if (w && (p.events & POLLOUT) && (p.revents & (POLLOUT | POLLERR))) {
      FD_SET(p.fd, w);
      ++count;
    }
    if (e && (p.events & POLLPRI) && (p.revents & POLLPRI)) {
      FD_SET(p.fd, e);
      ++count;
    }
  }
  if (timeout) {  // Linux select leaves the time not slept in *timeout
    int64_t left = saturating_ns(timeout->tv_sec, static_cast<int64_t>(timeout->tv_usec) * 1000) - (now_ns() - start);
    if (left < 0 || count > 0) left = count > 0 ? std::max<int64_t>(left, 0) : 0;
    timeout->tv_sec = left / 1000000000;
    timeout->tv_usec = (left % 1000000000) / 1000;
  }
  return count;
}

// Sleeps the task; 0, or -1 (EINTR) if it was cancelled.
int fiber_sleep_for_ns(int64_t ns) { return fib.sleep_ns(ns) == FIBER_OK ? 0 : (errno = EINTR, -1); }

}  // namespace

// ---- the interposed functions ----

extern "C" {

ssize_t read(int fd, void* buf, size_t n) {
  if (n == 0) return libc().read(fd, buf, n);  // never waits
  switch (classify(fd)) {
    case kind::socket: return socket_recv(fd, buf, n, 0, nullptr, nullptr);
    case kind::stream: return stream_read(fd, buf, n);
    default: return libc().read(fd, buf, n);
  }
}

ssize_t write(int fd, const void* buf, size_t n) {
  if (n == 0) return libc().write(fd, buf, n);
  switch (classify(fd)) {
    case kind::socket: return socket_send(fd, buf, n, 0, nullptr, 0);
    case kind::stream: return stream_write(fd, buf, n);
    default: return libc().write(fd, buf, n);
  }
}

ssize_t readv(int fd, const iovec* iov, int count) {
  switch (classify(fd)) {
    case kind::socket: {
      msghdr m{};
      m.msg_iov = const_cast<iovec*>(iov);
      m.msg_iovlen = static_cast<std::size_t>(count < 0 ? 0 : count);
      if (count < 0 || count > IOV_MAX) {
        errno = EINVAL;
        return -1;
      }
      return socket_recvmsg(fd, &m, 0);
    }
    case kind::stream: return stream_readv(fd, iov, count);
    default: return libc().readv(fd, iov, count);
  }
}

ssize_t writev(int fd, const iovec* iov, int count) {
  const kind k = classify(fd);
  if (k == kind::passthrough) return libc().writev(fd, iov, count);
  if (count < 0 || count > IOV_MAX) {
    errno = EINVAL;
    return -1;
  }
  if (k == kind::socket) {
    msghdr m{};
    m.msg_iov = const_cast<iovec*>(iov);
    m.msg_iovlen = static_cast<std::size_t>(count);
    return socket_sendmsg(fd, &m, 0);
  }
  std::size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  if (total <= PIPE_BUF)  // atomic on a pipe, as libc's writev: one call once there is room
    return when_ready(fd, true, nullptr, [&] { return libc().writev(fd, iov, count); });
  total = 0;
  for (int i = 0; i < count; ++i) {
    const ssize_t r = stream_write(fd, iov[i].iov_base, iov[i].iov_len);
    if (r < 0) return total ? static_cast<ssize_t>(total) : -1;
    total += static_cast<std::size_t>(r);
    if (static_cast<std::size_t>(r) < iov[i].iov_len) break;
  }
  return static_cast<ssize_t>(total);
}

// Flags with which the kernel never waits (or that waiting cannot serve).
constexpr int no_wait_flags = MSG_DONTWAIT | MSG_ERRQUEUE | MSG_OOB;

ssize_t recv(int fd, void* buf, size_t n, int flags) {
  if ((flags & no_wait_flags) || classify(fd) != kind::socket) return libc().recv(fd, buf, n, flags);
  return socket_recv(fd, buf, n, flags, nullptr, nullptr);
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen) {
  if ((flags & no_wait_flags) || classify(fd) != kind::socket) return libc().recvfrom(fd, buf, n, flags, from, fromlen);
  return socket_recv(fd, buf, n, flags, from, fromlen);
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if ((flags & no_wait_flags) || classify(fd) != kind::socket) return libc().recvmsg(fd, msg, flags);
  return socket_recvmsg(fd, msg, flags);
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  if ((flags & MSG_DONTWAIT) || classify(fd) != kind::socket) return libc().send(fd, buf, n, flags);
  return socket_send(fd, buf, n, flags, nullptr, 0);
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen) {
  if ((flags & MSG_DONTWAIT) || classify(fd) != kind::socket) return libc().sendto(fd, buf, n, flags, to, tolen);
  return socket_send(fd, buf, n, flags, to, tolen);
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if ((flags & MSG_DONTWAIT) || classify(fd) != kind::socket) return libc().sendmsg(fd, msg, flags);
  return socket_sendmsg(fd, msg, flags);
}

int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (classify(fd) != kind::socket) return libc().accept4(fd, addr, len, flags);
  lazy_deadline deadline{fd, false};  // accept honours SO_RCVTIMEO
  return when_ready(fd, false, &deadline, [&] { return libc().accept4(fd, addr, len, flags); });
}

int accept(int fd, sockaddr* addr, socklen_t* len) {
  if (classify(fd) != kind::socket) return libc().accept(fd, addr, len);
  lazy_deadline deadline{fd, false};
  return when_ready(fd, false, &deadline, [&] { return libc().accept(fd, addr, len); });
}

int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (classify(fd) != kind::socket) return libc().connect(fd, addr, len);
  const int fl = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  int r = libc().connect(fd, addr, len);
  int e = errno;
  if (r != 0 && e == EAGAIN && addr && addr->sa_family == AF_UNIX) {
    // A full listen backlog: a blocking connect would wait for room, which no
    // event announces; retry with a growing sleep (up to 10 ms), until SO_SNDTIMEO.
    lazy_deadline deadline{fd, true};
    int64_t nap = 100000;
    while (r != 0 && e == EAGAIN) {
      if (now_ns() + nap > deadline.get() || fiber_sleep_for_ns(nap) != 0) break;
      nap = std::min<int64_t>(nap * 2, 10000000);
      r = libc().connect(fd, addr, len);
      e = errno;
    }
  }
  ::fcntl(fd, F_SETFL, fl);
  if (r == 0) return 0;
  if (e != EINPROGRESS) {
    errno = e;
    return -1;
  }
  if (wait_ready(fd, true, socket_deadline(fd, true)) != 0) {
    if (errno == EAGAIN) errno = EINPROGRESS;  // what a blocking connect says when SO_SNDTIMEO passes
    return -1;
  }
  // Connected, or why not. The error is taken from a failing system call (a peek)
  // rather than from SO_ERROR's value: qemu-user hands SO_ERROR through untranslated,
  // which is wrong for guests whose errno numbers differ (MIPS, SPARC).
  sockaddr_storage peer;
  socklen_t plen = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) return 0;
  char c;
  if (libc().recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
      errno != ENOTCONN)
    return -1;  // errno: the connect's error (ECONNREFUSED, ETIMEDOUT, ...)
  int err = 0;
  socklen_t elen = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) return -1;
  errno = err ? err : ENOTCONN;
  return -1;
}

int poll(pollfd* fds, nfds_t nfds, int timeout) {
  if (!in_task()) return libc().poll(fds, nfds, timeout);
  return fiber_poll(fds, nfds, timeout);
}

int select(int nfds, fd_set* r, fd_set* w, fd_set* e, timeval* timeout) {
  if (!in_task()) return libc().select(nfds, r, w, e, timeout);
  return fiber_select(nfds, r, w, e, timeout);
}

unsigned sleep(unsigned seconds) {
  if (!in_task()) return libc().sleep(seconds);
  const int64_t start = now_ns();
  if (fiber_sleep_for_ns(saturating_ns(seconds, 0)) == 0) return 0;
  const int64_t left = saturating_ns(seconds, 0) - (now_ns() - start);
  return left > 0 ? static_cast<unsigned>((left + 999999999) / 1000000000) : 0;
}

int usleep(useconds_t us) {
  if (!in_task()) return libc().usleep(us);
  return fiber_sleep_for_ns(static_cast<int64_t>(us) * 1000);
}

int nanosleep(const timespec* req, timespec* rem) {
  if (!in_task()) return libc().nanosleep(req, rem);
  if (!req || req->tv_nsec < 0 || req->tv_nsec >= 1000000000 || req->tv_sec < 0) {
    errno = EINVAL;
    return -1;
  }
  const int64_t want = saturating_ns(req->tv_sec, req->tv_nsec);
  const int64_t start = now_ns();
  if (fiber_sleep_for_ns(want) == 0) return 0;
  if (rem) {
    const int64_t left = std::max<int64_t>(0, want - (now_ns() - start));
    rem->tv_sec = left / 1000000000;
    rem->tv_nsec = left % 1000000000;
  }
  return -1;  // EINTR
}

int close(int fd) {
  libc();
  if (fib.fd_closing) fib.fd_closing(fd);
  return real.close(fd);
}

}  // extern "C"
