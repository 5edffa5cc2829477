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
// What each fd is (the two conditions above) is found once and remembered ("what
// the hook remembers of each fd" below). To keep that true, it also interposes the
// calls that change it: fcntl (F_SETFL, F_DUPFD...) and ioctl (FIONBIO) under
// their names (also fcntl64, __fcntl_time64, __ioctl_time64), dup, dup2, dup3,
// setsockopt (SO_RCVTIMEO, SO_SNDTIMEO), and the calls that give out fd numbers
// (socket, socketpair, pipe, pipe2, accept, accept4; close takes them back). They
// do what libc does, and take note.
// The fd stays registered with the epoll of the loop (the worker, with fiber_run)
// whose task waited on it, until close() (fiber_wait_fd, fiber_fd_closing).
// Tasks may run on several threads (fiber_run's workers): the hook's state is
// per fd, lock-free, and a close() on any thread wakes the tasks waiting on the fd.
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
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "fd_table.hpp"
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
  int (*fcntl)(int, int, ...);
  // What fcntl and ioctl are called as where off_t is 64 bits on a 32-bit system
  // (_FILE_OFFSET_BITS=64: fcntl64, glibc 2.28 and later), and time_t too
  // (_TIME_BITS=64: __fcntl_time64, __ioctl_time64, glibc 2.34): absent, libc's
  // fcntl and ioctl. (Interposed under those names as well.)
  int (*fcntl64)(int, int, ...);
  int (*fcntl_time64)(int, int, ...);
  int (*ioctl)(int, unsigned long, ...);
  int (*ioctl_time64)(int, unsigned long, ...);
  int (*dup)(int);
  int (*dup2)(int, int);
  int (*dup3)(int, int, int);
  int (*socket)(int, int, int);
  int (*setsockopt)(int, int, int, const void*, socklen_t);
  int (*socketpair)(int, int, int, int*);
  int (*pipe)(int*);
  int (*pipe2)(int*, int);
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
  resolve(r.fcntl, RTLD_NEXT, "fcntl");
  resolve(r.fcntl64, RTLD_NEXT, "fcntl64");
  if (!r.fcntl64) r.fcntl64 = r.fcntl;
  resolve(r.fcntl_time64, RTLD_NEXT, "__fcntl_time64");
  if (!r.fcntl_time64) r.fcntl_time64 = r.fcntl64;
  resolve(r.ioctl, RTLD_NEXT, "ioctl");
  resolve(r.ioctl_time64, RTLD_NEXT, "__ioctl_time64");
  if (!r.ioctl_time64) r.ioctl_time64 = r.ioctl;
  resolve(r.dup, RTLD_NEXT, "dup");
  resolve(r.dup2, RTLD_NEXT, "dup2");
  resolve(r.dup3, RTLD_NEXT, "dup3");
  resolve(r.socket, RTLD_NEXT, "socket");
  resolve(r.setsockopt, RTLD_NEXT, "setsockopt");
  resolve(r.socketpair, RTLD_NEXT, "socketpair");
  resolve(r.pipe, RTLD_NEXT, "pipe");
  resolve(r.pipe2, RTLD_NEXT, "pipe2");
  if (!r.read || !r.write || !r.readv || !r.writev || !r.recv || !r.recvfrom || !r.recvmsg || !r.send ||
      !r.sendto || !r.sendmsg || !r.accept || !r.accept4 || !r.connect || !r.poll || !r.select || !r.sleep ||
      !r.usleep || !r.nanosleep || !r.close || !r.fcntl || !r.ioctl || !r.dup || !r.dup2 || !r.dup3 || !r.socket ||
      !r.setsockopt || !r.socketpair || !r.pipe || !r.pipe2) {
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

// Whether the hook keeps state: only with libfiber in the process (else every
// call is libc's and there is nothing to remember).
inline bool tracking() {
  libc();
  return fib.in_task != nullptr;
}

// ---- what the hook remembers of each fd ----
//
// Whether a call on an fd may wait on the loop takes two system calls to find
// out (fcntl(F_GETFL), fstat), so the answer is found once and remembered, in one
// 32-bit word per fd of a table indexed by fd (fd_table.hpp: lock-free, grown as
// fds are used, never shrunk):
//   bits 0-1   the type: 0 not known yet; 1 other (a regular file, a directory, a
//              block device, an eventfd, an epoll...: never waits); 2 a socket;
//              3 a pipe, FIFO or character device
//   bit 2      O_NONBLOCK (as last set or seen)
//   bit 3      shared: the fd's open file description (where O_NONBLOCK lives) is
//              shared with another fd (a dup) or with another process (fds 0-2:
//              usually the shell's terminal). Then O_NONBLOCK may change through
//              the other one, and is read (F_GETFL) at each call; the type is
//              still remembered, bits 4 and 5 are not used
//   bits 4, 5  a socket without SO_RCVTIMEO (4) or SO_SNDTIMEO (5): a call that
//              waits need not read them (getsockopt). Set by socket, socketpair
//              and by a wait that read them; cleared by setsockopt(SOL_SOCKET)
//   bit 6      flipped by each setsockopt(SOL_SOCKET), so that a wait that read
//              the timeouts before it does not set bit 4 or 5 after it
//   bits 7-31  a generation, new each time the number comes to name another
//              file: close() (before and after libc's), dup2 and dup3 onto it, and
//              each interposed call that returns it (socket, socketpair, pipe,
//              pipe2, accept, accept4, dup, dup2, dup3, fcntl's F_DUPFD and
//              F_DUPFD_CLOEXEC). Those that know what they made (all but the dups,
//              which inherit their source's type) fill in the type and mode.
// fcntl(F_SETFL) and ioctl(FIONBIO) set bit 2. Every change is a compare-and-swap
// of the whole word, so a classification that raced with a change (it read the
// word before it) is not stored: that call uses what it saw, the next one looks again.
// A task woken from a wait checks that the generation it started with is still
// there; if the fd was closed meanwhile (on any thread), its call fails with EBADF
// instead of going on with whatever file the number names now.
//
// Blind spots. An fd closed behind the hook's back (libc's own close inside
// fclose, close_range, a raw system call) whose number is reused by a call the
// hook does not interpose (open, epoll_create...): a remembered socket that then
// says ENOTSOCK is classified again, and a regular file taken for a pipe does no
// harm (poll says it is ready, the call is libc's); one taken for a blocking
// socket or pipe when it is not (or the reverse) would wait on the loop (or block
// the thread) where libc would not. And O_NONBLOCK changed by another process
// through a shared description, on an fd above 2.

using fd_word = std::atomic<std::uint32_t>;
// 2^11 pointers at the top (16 KiB, untouched until used), chunks of 1024 words (4 KiB).
constinit fiber::detail::fd_table<fd_word, 10, 10> fd_words;

constexpr std::uint32_t type_bits = 3, type_other = 1, type_socket = 2, type_stream = 3;
constexpr std::uint32_t nonblock_bit = 4, shared_bit = 8, no_rcvtimeo_bit = 16, no_sndtimeo_bit = 32;
constexpr std::uint32_t options_flip = 64, gen_unit = 128;
constexpr std::uint32_t gen_of(std::uint32_t w) { return w & ~(gen_unit - 1); }
// The next generation, with nothing known.
constexpr std::uint32_t renumber(std::uint32_t w) { return (w | (gen_unit - 1)) + 1; }

std::uint32_t type_of(const struct stat& st) {
  if (S_ISSOCK(st.st_mode)) return type_socket;
  if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) return type_stream;
  return type_other;
}

// The bookkeeping never changes errno (a successful call may not change it
// either, and programs read it after failures they expect).
struct errno_kept {
  int saved = errno;
  ~errno_kept() { errno = saved; }
};

// fd names another file now, of which `known` (type and mode bits) is known: a
// new generation. make: make its word if there is none.
void renumbered(int fd, std::uint32_t known, bool make) {
  if (!tracking()) return;
  errno_kept keep;
  fd_word* w = make ? fd_words.get(fd) : fd_words.find(fd);
  if (!w) return;
  std::uint32_t v = w->load(std::memory_order_relaxed);
  while (!w->compare_exchange_weak(v, renumber(v) | known, std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
}

// fd's number is free (close), or about to be (dup2 onto it): whatever it names
// next is not known.
void forget(int fd) { renumbered(fd, 0, false); }

// A call made fd, of which it knows this much (type, timeouts), and non-blocking or not.
void made(int fd, std::uint32_t known, bool nonblocking) {
  if (fd >= 0) renumbered(fd, known | (nonblocking ? nonblock_bit : 0), true);
}

// `to` is a dup of `from`: the same open file, of the same type, whose O_NONBLOCK
// they share from now on.
void duplicated(int from, int to) {
  if (!tracking()) return;
  std::uint32_t type = 0;
  {
    errno_kept keep;
    if (fd_word* w = fd_words.get(from)) {
      std::uint32_t v = w->load(std::memory_order_relaxed);
      while (!(v & shared_bit) &&
             !w->compare_exchange_weak(v, v | shared_bit, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      }
      type = v & type_bits;
    }
  }
  renumbered(to, type | shared_bit, true);
}

// setsockopt(SOL_SOCKET) on fd: its timeouts may have changed.
void options_set(int fd) {
  if (!tracking()) return;
  fd_word* w = fd_words.find(fd);
  if (!w) return;
  std::uint32_t v = w->load(std::memory_order_relaxed);
  while (!w->compare_exchange_weak(v, (v & ~(no_rcvtimeo_bit | no_sndtimeo_bit)) ^ options_flip,
                                   std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
}

// fd's O_NONBLOCK was just set to `nonblocking` (fcntl(F_SETFL), ioctl(FIONBIO)).
void mode_set(int fd, bool nonblocking) {
  if (!tracking()) return;
  errno_kept keep;
  // (The word is made if there is none: a classification that made it meanwhile
  // and read the old mode then finds it changed, and does not store that mode.)
  fd_word* w = fd_words.get(fd);
  if (!w) return;
  std::uint32_t v = w->load(std::memory_order_relaxed);
  for (;;) {
    std::uint32_t type = v & type_bits;
    if (!type) {  // fill the type in too: the word changes, and a classification in flight is not stored
      struct stat st;
      if (::fstat(fd, &st) != 0) return;
      type = type_of(st);
    }
    const std::uint32_t nv = (v & ~(type_bits | nonblock_bit)) | type | (nonblocking ? nonblock_bit : 0);
    if (nv == v || w->compare_exchange_weak(v, nv, std::memory_order_acq_rel, std::memory_order_relaxed)) return;
  }
}

// ---- which calls wait on the loop ----

enum class kind { passthrough, socket, stream };

// One call's view of its fd: how it is served, and the generation it started with.
struct fd_use {
  int fd;
  kind k;
  std::uint32_t gen = 0;
  bool checked = false;    // whether a wake checks the generation (not for the hook's own fds)
  std::uint32_t word = 0;  // what was remembered of it then
};

// Only from a task, and only for blocking fds that can wait for readiness.
fd_use classify(int fd) {
  fd_use u{fd, kind::passthrough};
  if (!in_task()) return u;
  fd_word* const w = fd_words.get(fd);
  const std::uint32_t v = w ? w->load(std::memory_order_acquire) : 0;
  std::uint32_t type = v & type_bits;
  bool nonblocking = (v & nonblock_bit) != 0;
  if (!type) {
    const int fl = libc().fcntl(fd, F_GETFL);
    struct stat st;
    if (fl < 0 || ::fstat(fd, &st) != 0) return u;  // (not remembered: EBADF now says nothing of later)
    type = type_of(st);
    nonblocking = (fl & O_NONBLOCK) != 0;
    std::uint32_t expected = v;
    const std::uint32_t known = v | type | (nonblocking ? nonblock_bit : 0) | (fd <= 2 ? shared_bit : 0);
    if (w && w->compare_exchange_strong(expected, known, std::memory_order_acq_rel, std::memory_order_relaxed))
      u.word = known;
    else
      u.word = v;
  } else if ((v & shared_bit) && type != type_other) {
    const int fl = libc().fcntl(fd, F_GETFL);
    if (fl < 0) return u;
    nonblocking = (fl & O_NONBLOCK) != 0;
  }
  if (nonblocking || type == type_other) return u;
  u.k = type == type_socket ? kind::socket : kind::stream;
  u.gen = gen_of(v);
  u.checked = w != nullptr;
  if (u.word == 0) u.word = v;
  return u;
}

// Whether fd has named another file since u was classified (it was closed).
bool renumbered_since(const fd_use& u) {
  if (!u.checked) return false;
  const fd_word* w = fd_words.find(u.fd);
  return w && gen_of(w->load(std::memory_order_acquire)) != u.gen;
}

// A call made as a socket said ENOTSOCK: the number was reused behind the hook's
// back. Forgets what it remembered (if nothing changed since).
void not_a_socket(const fd_use& u) {
  if (!u.checked) return;
  fd_word* w = fd_words.find(u.fd);
  if (!w) return;
  std::uint32_t v = w->load(std::memory_order_relaxed);
  while (gen_of(v) == u.gen &&
         !w->compare_exchange_weak(v, renumber(v), std::memory_order_acq_rel, std::memory_order_relaxed)) {
  }
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

// The socket's SO_RCVTIMEO (reading) or SO_SNDTIMEO, as a deadline from now;
// *none (may be NULL): whether it has none (false also if getsockopt failed).
int64_t socket_deadline(int fd, bool writing, bool* none = nullptr) {
  timeval tv{};
  socklen_t len = sizeof tv;
  if (none) *none = false;
  if (::getsockopt(fd, SOL_SOCKET, writing ? SO_SNDTIMEO : SO_RCVTIMEO, &tv, &len) != 0) return no_deadline;
  if (tv.tv_sec == 0 && tv.tv_usec == 0) {
    if (none) *none = true;
    return no_deadline;
  }
  return now_ns() + static_cast<int64_t>(tv.tv_sec) * 1000000000 + static_cast<int64_t>(tv.tv_usec) * 1000;
}

// A socket timeout read only when a call first has to wait (one getsockopt, or
// none when the hook knows the socket has none), measured from the start of the call.
struct lazy_deadline {
  const fd_use& u;
  bool writing;
  int64_t start = now_ns();
  int64_t value = -1;
  int64_t get() {
    if (value >= 0) return value;
    const std::uint32_t bit = writing ? no_sndtimeo_bit : no_rcvtimeo_bit;
    if (u.checked && (u.word & (bit | shared_bit)) == bit) return value = no_deadline;
    bool none = false;
    value = socket_deadline(u.fd, writing, &none);
    if (value != no_deadline) {
      value -= now_ns() - start;  // from the call's start
    } else if (none && u.checked && !(u.word & shared_bit)) {
      // Remembered, unless the word changed since the call began (a setsockopt among others).
      if (fd_word* w = fd_words.find(u.fd)) {
        std::uint32_t expected = u.word;
        w->compare_exchange_strong(expected, u.word | bit, std::memory_order_acq_rel, std::memory_order_relaxed);
      }
    }
    return value;
  }
};

// Parks until u's fd is ready. 0, or -1 with errno: EAGAIN when the deadline
// passed, EINTR when the task was cancelled, EBADF when the fd was closed
// meanwhile, EIO for anything else (reported on stderr).
int wait_ready(const fd_use& u, bool writing, int64_t deadline) {
  const int fd = u.fd;
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
      if (renumbered_since(u)) {
        errno = EBADF;
        return -1;
      }
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

ssize_t socket_recvmsg(const fd_use& u, msghdr* msg, int flags) {
  const int fd = u.fd;
  lazy_deadline deadline{u, false};
  const bool waitall = (flags & MSG_WAITALL) != 0;
  std::size_t want = 0;
  for (std::size_t i = 0; i < msg->msg_iovlen; ++i) want += msg->msg_iov[i].iov_len;
  // MSG_WAITALL is gathered below for plain data on a stream; with MSG_PEEK or
  // ancillary data the first non-empty receive is returned as it is.
  if (!waitall || want == 0 || (flags & MSG_PEEK) || msg->msg_controllen > 0 || !is_stream_socket(fd)) {
    for (;;) {
      const ssize_t r = libc().recvmsg(fd, msg, flags | MSG_DONTWAIT);
      if (r >= 0 || !would_block()) return r;
      if (wait_ready(u, false, deadline.get()) != 0) return -1;
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
      if (wait_ready(u, false, deadline.get()) != 0) return got ? static_cast<ssize_t>(got) : -1;
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

ssize_t socket_recv(const fd_use& u, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen) {
  iovec v{buf, n};
  msghdr m{};
  m.msg_name = from;
  m.msg_namelen = fromlen ? *fromlen : 0;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  const ssize_t r = socket_recvmsg(u, &m, flags);
  if (r >= 0 && fromlen) *fromlen = m.msg_namelen;
  return r;
}

// A blocking send writes everything on a stream socket: loop over partial sends.
ssize_t socket_sendmsg(const fd_use& u, const msghdr* msg, int flags) {
  const int fd = u.fd;
  lazy_deadline deadline{u, true};
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
      if (wait_ready(u, true, deadline.get()) != 0) return sent ? static_cast<ssize_t>(sent) : -1;
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

ssize_t socket_send(const fd_use& u, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen) {
  iovec v{const_cast<void*>(buf), n};
  msghdr m{};
  m.msg_name = const_cast<sockaddr*>(to);
  m.msg_namelen = tolen;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  return socket_sendmsg(u, &m, flags);
}

// ---- pipes, FIFOs, terminals (and accept) ----

// For fds that have no non-blocking form of the call: waits until poll says fd
// is ready, then makes the (blocking-mode) call, which then does not block.
// -1 with errno if poll fails or the wait ends without readiness.
template <class Call>
auto when_ready(const fd_use& u, bool writing, lazy_deadline* deadline, Call call) -> decltype(call()) {
  for (;;) {
    const int ready = ready_now(u.fd, writing);
    if (ready > 0) return call();
    if (ready < 0 && errno != EINTR) return -1;
    if (wait_ready(u, writing, deadline ? deadline->get() : no_deadline) != 0) return -1;
  }
}

ssize_t stream_read(const fd_use& u, void* buf, size_t n) {
  return when_ready(u, false, nullptr, [&] { return libc().read(u.fd, buf, n); });
}

ssize_t stream_readv(const fd_use& u, const iovec* iov, int count) {
  return when_ready(u, false, nullptr, [&] { return libc().readv(u.fd, iov, count); });
}

// Writes everything, PIPE_BUF bytes at a time once poll says there is room (a
// pipe that polls writable takes PIPE_BUF bytes without blocking).
ssize_t stream_write(const fd_use& u, const void* buf, size_t n) {
  const int fd = u.fd;
  const char* p = static_cast<const char*>(buf);
  std::size_t done = 0;
  do {
    const int ready = ready_now(fd, true);
    if (ready < 0 && errno != EINTR) return done ? static_cast<ssize_t>(done) : -1;
    if (ready <= 0) {
      if (wait_ready(u, true, no_deadline) != 0) return done ? static_cast<ssize_t>(done) : -1;
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
    if (wait_ready(fd_use{ep, kind::stream}, false, deadline) != 0) {
      result = errno == EAGAIN ? 0 : -1;  // the timeout passed: nothing ready
      break;
    }
    result = libc().poll(fds, nfds, 0);
    if (result != 0) break;
  }
  const int saved = errno;
  fib.fd_closing(ep);  // (out of the loop's epoll)
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

// The calls that serve plain fds (read, write, readv, writev) as sockets, retried
// once as what the fd really is if a remembered socket says ENOTSOCK (its number
// was reused behind the hook's back).
template <class Socket, class Stream, class Libc>
auto serve(int fd, Socket as_socket, Stream as_stream, Libc as_libc) -> decltype(as_libc()) {
  fd_use u = classify(fd);
  for (int tries = 0;; ++tries) {
    switch (u.k) {
      case kind::socket: {
        const auto r = as_socket(u);
        if (r >= 0 || errno != ENOTSOCK || tries > 0) return r;
        not_a_socket(u);
        u = classify(fd);
        continue;
      }
      case kind::stream: return as_stream(u);
      default: return as_libc();
    }
  }
}

// fcntl's third argument: an int for these commands; a pointer, or none, for the others.
bool int_argument(int cmd) {
  switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
    case F_SETFD:
    case F_SETFL:
    case F_SETOWN:
#ifdef F_SETSIG
    case F_SETSIG:
#endif
#ifdef F_SETLEASE
    case F_SETLEASE:
#endif
#ifdef F_NOTIFY
    case F_NOTIFY:
#endif
#ifdef F_SETPIPE_SZ
    case F_SETPIPE_SZ:
#endif
#ifdef F_ADD_SEALS
    case F_ADD_SEALS:
#endif
      return true;
    default:
      return false;
  }
}

// fcntl and fcntl64: libc's (`real`), and a note of what changed.
int hooked_fcntl(int (*real_fcntl)(int, int, ...), int fd, int cmd, va_list ap) {
  if (!int_argument(cmd)) {
    // A pointer (F_GETLK, F_SETOWN_EX...), or nothing (F_GETFL...): then what is
    // read here is ignored by the kernel, as in glibc's own fcntl.
    void* const arg = va_arg(ap, void*);
    return real_fcntl(fd, cmd, arg);
  }
  const int arg = va_arg(ap, int);
  const int r = real_fcntl(fd, cmd, arg);
  if (r >= 0) {
    if (cmd == F_SETFL)
      mode_set(fd, (arg & O_NONBLOCK) != 0);
    else if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
      duplicated(fd, r);
  }
  return r;
}

// ioctl: libc's, and a note of FIONBIO.
int hooked_ioctl(int (*real_ioctl)(int, unsigned long, ...), int fd, unsigned long request, void* arg) {
  const int r = real_ioctl(fd, request, arg);
  if (r >= 0 && request == FIONBIO && arg) mode_set(fd, *static_cast<const int*>(arg) != 0);
  return r;
}

// Whether fd is open (dup2 and dup3 check their source first: if it is not, they
// fail and leave their target alone).
bool is_open(int fd) { return libc().fcntl(fd, F_GETFD) >= 0; }

// fd is about to be closed (close, or dup2/dup3 onto it): a new generation, so
// that a task woken from a wait on it fails with EBADF; out of the epoll of the
// loop that waited on it, its waiters woken (whatever their thread).
void closing(int fd) {
  forget(fd);
  if (fib.fd_closing) fib.fd_closing(fd);
}

// The socket calls: a remembered socket that says ENOTSOCK is forgotten (the
// call's answer stands: libc's would be the same).
template <class Call>
auto on_socket(const fd_use& u, Call call) -> decltype(call()) {
  const auto r = call();
  if (r < 0 && errno == ENOTSOCK) not_a_socket(u);
  return r;
}

}  // namespace

// ---- the interposed functions ----

extern "C" {

ssize_t read(int fd, void* buf, size_t n) {
  if (n == 0) return libc().read(fd, buf, n);  // never waits
  return serve(
      fd, [&](const fd_use& u) { return socket_recv(u, buf, n, 0, nullptr, nullptr); },
      [&](const fd_use& u) { return stream_read(u, buf, n); }, [&] { return libc().read(fd, buf, n); });
}

ssize_t write(int fd, const void* buf, size_t n) {
  if (n == 0) return libc().write(fd, buf, n);
  return serve(
      fd, [&](const fd_use& u) { return socket_send(u, buf, n, 0, nullptr, 0); },
      [&](const fd_use& u) { return stream_write(u, buf, n); }, [&] { return libc().write(fd, buf, n); });
}

ssize_t readv(int fd, const iovec* iov, int count) {
  return serve(
      fd,
      [&](const fd_use& u) -> ssize_t {
        if (count < 0 || count > IOV_MAX) {
          errno = EINVAL;
          return -1;
        }
        msghdr m{};
        m.msg_iov = const_cast<iovec*>(iov);
        m.msg_iovlen = static_cast<std::size_t>(count);
        return socket_recvmsg(u, &m, 0);
      },
      [&](const fd_use& u) { return stream_readv(u, iov, count); }, [&] { return libc().readv(fd, iov, count); });
}

ssize_t writev(int fd, const iovec* iov, int count) {
  auto bad_count = [&] {
    if (count >= 0 && count <= IOV_MAX) return false;
    errno = EINVAL;
    return true;
  };
  return serve(
      fd,
      [&](const fd_use& u) -> ssize_t {
        if (bad_count()) return -1;
        msghdr m{};
        m.msg_iov = const_cast<iovec*>(iov);
        m.msg_iovlen = static_cast<std::size_t>(count);
        return socket_sendmsg(u, &m, 0);
      },
      [&](const fd_use& u) -> ssize_t {
        if (bad_count()) return -1;
        std::size_t total = 0;
        for (int i = 0; i < count; ++i) total += iov[i].iov_len;
        if (total <= PIPE_BUF)  // atomic on a pipe, as libc's writev: one call once there is room
          return when_ready(u, true, nullptr, [&] { return libc().writev(fd, iov, count); });
        total = 0;
        for (int i = 0; i < count; ++i) {
          const ssize_t r = stream_write(u, iov[i].iov_base, iov[i].iov_len);
          if (r < 0) return total ? static_cast<ssize_t>(total) : -1;
          total += static_cast<std::size_t>(r);
          if (static_cast<std::size_t>(r) < iov[i].iov_len) break;
        }
        return static_cast<ssize_t>(total);
      },
      [&] { return libc().writev(fd, iov, count); });
}

// Flags with which the kernel never waits (or that waiting cannot serve).
constexpr int no_wait_flags = MSG_DONTWAIT | MSG_ERRQUEUE | MSG_OOB;

ssize_t recv(int fd, void* buf, size_t n, int flags) {
  if (flags & no_wait_flags) return libc().recv(fd, buf, n, flags);
  const fd_use u = classify(fd);
  if (u.k != kind::socket) return libc().recv(fd, buf, n, flags);
  return on_socket(u, [&] { return socket_recv(u, buf, n, flags, nullptr, nullptr); });
}

ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen) {
  if (flags & no_wait_flags) return libc().recvfrom(fd, buf, n, flags, from, fromlen);
  const fd_use u = classify(fd);
  if (u.k != kind::socket) return libc().recvfrom(fd, buf, n, flags, from, fromlen);
  return on_socket(u, [&] { return socket_recv(u, buf, n, flags, from, fromlen); });
}

ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if (flags & no_wait_flags) return libc().recvmsg(fd, msg, flags);
  const fd_use u = classify(fd);
  if (u.k != kind::socket) return libc().recvmsg(fd, msg, flags);
  return on_socket(u, [&] { return socket_recvmsg(u, msg, flags); });
}

ssize_t send(int fd, const void* buf, size_t n, int flags) {
  if (flags & MSG_DONTWAIT) return libc().send(fd, buf, n, flags);
  const fd_use u = classify(fd);
  if (u.k != kind::socket) return libc().send(fd, buf, n, flags);
  return on_socket(u, [&] { return socket_send(u, buf, n, flags, nullptr, 0); });
}

ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen) {
  if (flags & MSG_DONTWAIT) return libc().sendto(fd, buf, n, flags, to, tolen);
  const fd_use u = classify(fd);
  if (u.k != kind::socket) return libc().sendto(fd, buf, n, flags, to, tolen);
  return on_socket(u, [&] { return socket_send(u, buf, n, flags, to, tolen); });
}

ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if (flags & MSG_DONTWAIT) return libc().sendmsg(fd, msg, flags);
  const fd_use u = classify(fd);
  if (u.k != kind::socket) return libc().sendmsg(fd, msg, flags);
  return on_socket(u, [&] { return socket_sendmsg(u, msg, flags); });
}

// accept and accept4 give out a new socket: blocking (Linux does not pass the
// listener's O_NONBLOCK on), unless SOCK_NONBLOCK.
int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  const fd_use u = classify(fd);
  int r;
  if (u.k != kind::socket) {
    r = libc().accept4(fd, addr, len, flags);
  } else {
    lazy_deadline deadline{u, false};  // accept honours SO_RCVTIMEO
    r = on_socket(u, [&] {
      return when_ready(u, false, &deadline, [&] { return libc().accept4(fd, addr, len, flags); });
    });
  }
  made(r, type_socket, (flags & SOCK_NONBLOCK) != 0);
  return r;
}

int accept(int fd, sockaddr* addr, socklen_t* len) {
  const fd_use u = classify(fd);
  int r;
  if (u.k != kind::socket) {
    r = libc().accept(fd, addr, len);
  } else {
    lazy_deadline deadline{u, false};
    r = on_socket(u, [&] { return when_ready(u, false, &deadline, [&] { return libc().accept(fd, addr, len); }); });
  }
  made(r, type_socket, false);
  return r;
}

int connect(int fd, const sockaddr* addr, socklen_t len) {
  const fd_use u = classify(fd);
  if (u.k != kind::socket) return libc().connect(fd, addr, len);
  const int fl = libc().fcntl(fd, F_GETFL);
  libc().fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  int r = libc().connect(fd, addr, len);
  int e = errno;
  if (r != 0 && e == EAGAIN && addr && addr->sa_family == AF_UNIX) {
    // A full listen backlog: a blocking connect would wait for room, which no
    // event announces; retry with a growing sleep (up to 10 ms), until SO_SNDTIMEO.
    lazy_deadline deadline{u, true};
    int64_t nap = 100000;
    while (r != 0 && e == EAGAIN) {
      if (now_ns() + nap > deadline.get() || fiber_sleep_for_ns(nap) != 0) break;
      nap = std::min<int64_t>(nap * 2, 10000000);
      r = libc().connect(fd, addr, len);
      e = errno;
    }
  }
  libc().fcntl(fd, F_SETFL, fl);
  if (r == 0) return 0;
  if (e != EINPROGRESS) {
    if (e == ENOTSOCK) not_a_socket(u);
    errno = e;
    return -1;
  }
  if (wait_ready(u, true, socket_deadline(fd, true)) != 0) {
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
  closing(fd);
  const int r = real.close(fd);
  forget(fd);  // (again: a classification that read the word before the close is not stored)
  return r;
}

// ---- the calls that change what an fd is ----

int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const int r = hooked_fcntl(libc().fcntl, fd, cmd, ap);
  va_end(ap);
  return r;
}

int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const int r = hooked_fcntl(libc().fcntl64, fd, cmd, ap);
  va_end(ap);
  return r;
}

int __fcntl_time64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  const int r = hooked_fcntl(libc().fcntl_time64, fd, cmd, ap);
  va_end(ap);
  return r;
}

int ioctl(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  void* const arg = va_arg(ap, void*);  // (a pointer, an int, or nothing, per request: passed on as it came)
  va_end(ap);
  return hooked_ioctl(libc().ioctl, fd, request, arg);
}

int __ioctl_time64(int fd, unsigned long request, ...) noexcept {
  va_list ap;
  va_start(ap, request);
  void* const arg = va_arg(ap, void*);
  va_end(ap);
  return hooked_ioctl(libc().ioctl_time64, fd, request, arg);
}

int dup(int fd) noexcept {
  const int r = libc().dup(fd);
  if (r >= 0) duplicated(fd, r);
  return r;
}

int dup2(int from, int to) noexcept {
  if (from == to || !tracking() || !is_open(from)) return libc().dup2(from, to);
  closing(to);  // dup2 closes it first
  const int r = libc().dup2(from, to);
  if (r >= 0) duplicated(from, to);
  return r;
}

int dup3(int from, int to, int flags) noexcept {
  if (from == to || !tracking() || !is_open(from)) return libc().dup3(from, to, flags);
  closing(to);
  const int r = libc().dup3(from, to, flags);
  if (r >= 0) duplicated(from, to);
  return r;
}

int setsockopt(int fd, int level, int name, const void* value, socklen_t len) noexcept {
  const int r = libc().setsockopt(fd, level, name, value, len);
  if (r == 0 && level == SOL_SOCKET) options_set(fd);
  return r;
}

int socket(int domain, int type, int protocol) noexcept {
  const int r = libc().socket(domain, type, protocol);
  made(r, type_socket | no_rcvtimeo_bit | no_sndtimeo_bit, (type & SOCK_NONBLOCK) != 0);
  return r;
}

int socketpair(int domain, int type, int protocol, int sv[2]) noexcept {
  const int r = libc().socketpair(domain, type, protocol, sv);
  if (r == 0) {
    made(sv[0], type_socket | no_rcvtimeo_bit | no_sndtimeo_bit, (type & SOCK_NONBLOCK) != 0);
    made(sv[1], type_socket | no_rcvtimeo_bit | no_sndtimeo_bit, (type & SOCK_NONBLOCK) != 0);
  }
  return r;
}

int pipe(int fds[2]) noexcept {
  const int r = libc().pipe(fds);
  if (r == 0) {
    made(fds[0], type_stream, false);
    made(fds[1], type_stream, false);
  }
  return r;
}

int pipe2(int fds[2], int flags) noexcept {
  const int r = libc().pipe2(fds, flags);
  if (r == 0) {
    made(fds[0], type_stream, (flags & O_NONBLOCK) != 0);
    made(fds[1], type_stream, (flags & O_NONBLOCK) != 0);
  }
  return r;
}

}  // extern "C"
