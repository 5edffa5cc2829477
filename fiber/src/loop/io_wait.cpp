// What the reactor's events wake: io::stream and listener registrations, and
// io_wait_fd's registrations kept across waits (loop/loop.hpp, loop/reactor.hpp).
#include "loop/loop.hpp"

namespace fiber {

namespace detail {

// ---- IO --------------------------------------------------------------------------

// A fiber waiting for IO counts among the IO waiters of the loop whose epoll
// watches the fd (io_waiting: the loop polls, and blocks in its reactor rather
// than report a deadlock). A wait of a stream (io_wait) may end on another
// worker than it began on when its fiber migrates (its fd stays in the first
// loop's epoll, whose wake finds the fiber where it is); a fiber that waits on
// a stream of another worker's epoll counts there (io_waiting_elsewhere). A
// hooked call's wait (io_wait_fd) keeps the fiber where it is.
struct io_wait_count {
  event_loop::impl* L;  // whose count holds the wait; nullptr once the fiber left it (leave())
  event_loop::impl* elsewhere = nullptr;  // or that other worker's
  fiber_control* f;
  bool movable;
  io_wait_count(event_loop::impl* loop, event_loop::impl* watcher, bool can_move) noexcept
      : L(loop), f(loop->current), movable(can_move) {
    if (watcher && watcher != loop) {
      L = nullptr;
      elsewhere = watcher;
      elsewhere->io_waiting_elsewhere.fetch_add(1, std::memory_order_relaxed);
    } else {
      ++L->io_waiting;
    }
    f->io_count = this;
  }
  ~io_wait_count() {
    f->io_count = nullptr;
    if (L) --L->io_waiting;
    if (elsewhere) elsewhere->io_waiting_elsewhere.fetch_sub(1, std::memory_order_relaxed);
  }
  io_wait_count(const io_wait_count&) = delete;
  io_wait_count& operator=(const io_wait_count&) = delete;
};

}  // namespace detail

bool event_loop::impl::movable(const detail::fiber_control* f) noexcept {
  return f->migratable && !f->pinned && !(f->io_count && !f->io_count->movable);
}

void event_loop::impl::leave(detail::fiber_control* f) noexcept {
  timers.remove(f);  // (its wait ended by a wake: the fiber would remove it where it runs)
  if (detail::io_wait_count* c = f->io_count; c && c->L == this) {
    --io_waiting;
    c->L = nullptr;
  }
}


namespace detail {
bool io_follows(const event_loop* registered) noexcept {
  event_loop::impl* L = running_loop_impl();
  if (!L || !L->current || !L->current->migratable || !L->rt) return false;
  for (loop_core* w : L->rt->workers)
    if (static_cast<event_loop::impl*>(w)->owner == registered) return true;
  return false;
}
}  // namespace detail

namespace detail {

#if FIBER_HAVE_EPOLL
void io_register(io_handle& h) {
  event_loop::impl* L = running_loop_impl();
  if (!L) throw_no_loop("fiber::io");
  if (const int e = L->reactor.add(h.fd, reactor::want_read | reactor::want_write | reactor::edge, &h))
    throw std::system_error(e, std::generic_category(), "fiber::io: epoll_ctl(ADD) of fd " + std::to_string(h.fd));
  h.registered = true;
  h.epfd = L->reactor.native_handle();
  h.core = L;
  h.readable = h.writable = h.hangup = false;
}

void io_unregister(io_handle& h) noexcept {
  if (!h.registered) return;
  h.registered = false;
  reactor::remove_from(h.epfd, h.fd);  // (the reactor of the loop that registered it)
  op_guard guard(h.lock);
  while (waiter* w = claim_front(h.readers)) wake(*w);
  while (waiter* w = claim_front(h.writers)) wake(*w);
}

bool io_wait(io_handle& h, bool write, clock::time_point deadline, const char* operation) {
  if (!operation) operation = write ? "fiber::io: waiting to write" : "fiber::io: waiting to read";
  require_fiber(operation);
  op_guard guard(h.lock);
  bool& flag = write ? h.writable : h.readable;
  if (flag) {
    flag = false;
    return true;
  }
  park_local<waiter> parked;  // (off the stack of a copied-stack fiber)
  waiter& w = *parked;
  enqueue(write ? h.writers : h.readers, w);
  guard.unlock();
  io_wait_count count(running_loop_impl(), static_cast<event_loop::impl*>(h.core), true);
  return park(&w, 1, deadline, operation, wait_on_fd(h.fd)) != park_timeout;
}

// io_wait_fd's registrations, kept across waits.
//
// An fd a fiber waited on stays registered with the epoll of that fiber's loop
// (on N workers: that worker's) after the wait, so that the next wait costs one
// epoll_ctl rather than two (ADD, then DEL; three when a second fiber waited on
// the same fd and needed a dup of it). It is registered EPOLLONESHOT and re-armed
// by each wait (EPOLL_CTL_MOD), rather than edge-triggered and left alone, because:
//   - a wait keeps its level meaning: fiber_wait_fd and io::wait_readable return at
//     once if the fd is ready now (MOD looks at the fd's state), whatever the
//     caller read since its last wait. Edge-triggered, a caller that did not read
//     the fd down to EAGAIN would wait for an edge that may never come;
//   - it repairs itself: epoll drops a registration silently when its fd is closed,
//     and an fd closed without fiber_fd_closing (a C++ program's ::close, libc's own
//     in fclose, anything libfiber_hook does not see) makes the next MOD fail with
//     ENOENT, and that wait registers afresh. Edge-triggered, it would park forever;
//   - one registration serves a reader and a writer at once: it is armed for the
//     union of what the fibers waiting on it want (no dup of the fd any more);
//   - a registration nobody waits on (the waiter timed out) reports at most one
//     more event, which wakes nobody; disarmed, it reports nothing.
//
// The state of each fd is an fd_entry in a table indexed by fd (fd_table.hpp),
// whose entries never move or die: an event that comes late, from an epoll the fd
// has just left, still finds its entry (and wakes its waiters, if any, for
// nothing: they retry). A wait from a fiber of another loop moves the
// registration to that loop's epoll; on N workers a fiber never changes threads,
// so the fd of a fiber that serves one connection stays where it is. Either
// loop's events wake the waiters of both (wake() works across threads). The
// registration leaves epoll when io_fd_closing (fiber_fd_closing, the hook's
// close) says its fd is being closed, and when its loop is destroyed.
struct fd_entry {
  io_handle h;  // h.fd; h.lock guards the rest, and the waiters in h.readers and h.writers
  std::atomic<event_loop::impl*> owner{nullptr};  // the loop whose epoll holds reg_fd; nullptr: none
  int reg_fd = -1;  // what is in owner's epoll: h.fd, or a dup of it (arm()); -1: nothing
};

namespace {
// Linux's fds are below 2^31: 2^12 pointers at the top, 2^13 chunks of 64 entries below each.
constinit fd_table<fd_entry, 6, 13> kept;

void* tagged(fd_entry* e) noexcept { return reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(e) | 1); }

// What the fibers waiting on e want (the caller holds e.h.lock), once.
std::uint32_t wanted(const fd_entry& e) noexcept {
  std::uint32_t interest = reactor::oneshot;
  if (!e.h.readers.empty()) interest |= reactor::want_read;
  if (!e.h.writers.empty()) interest |= reactor::want_write;
  return interest;
}

// Takes e's registration out of its loop's epoll (the caller holds e.h.lock).
void unregister(fd_entry& e) noexcept {
  event_loop::impl* const L = e.owner.load(std::memory_order_relaxed);
  if (!L) return;
  L->reactor.remove(e.reg_fd);  // (fails if the fd is closed: epoll forgot it then)
  if (e.reg_fd != e.h.fd) ::close(e.reg_fd);
  e.reg_fd = -1;
  e.owner.store(nullptr, std::memory_order_release);
  L->kept_fds.fetch_sub(1, std::memory_order_relaxed);
}

void wake_all(fd_entry& e) noexcept {
  while (waiter* w = claim_front(e.h.readers)) wake(*w);
  while (waiter* w = claim_front(e.h.writers)) wake(*w);
}

// Arms e's registration in L's epoll for what its waiters want, registering it
// there first if it is not (the caller holds e.h.lock, its waiter linked).
// 0, or the errno of the failure.
int arm(event_loop::impl* L, fd_entry& e) noexcept {
  const std::uint32_t interest = wanted(e);
  if (e.owner.load(std::memory_order_relaxed) == L) {
    const int err = L->reactor.modify(e.reg_fd, interest, tagged(&e));
    if (err != ENOENT) return err;  // 0, or EBADF: the fd is closed
    // epoll forgot it: the fd was closed without io_fd_closing, and its number
    // may name another file now. Register afresh.
  }
  unregister(e);  // (from another loop's epoll: it moves here)
  const int fd = e.h.fd;
  if (const int err = L->reactor.add(fd, interest, tagged(&e)); err == 0) {
    e.reg_fd = fd;
  } else {
    if (err != EEXIST) return err;
    // epoll keys a registration by (fd, open file), and this key is taken: by an
    // io::stream's or listener's own registration (io_register), or by one of ours
    // that epoll kept after a close because another fd still holds the file.
    // Register a dup (another key for the same file) while fibers wait.
    const int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0) return errno;
    if (const int err = L->reactor.add(d, interest, tagged(&e))) {
      ::close(d);
      return err;
    }
    e.reg_fd = d;
  }
  L->kept_fds.fetch_add(1, std::memory_order_relaxed);
  e.owner.store(L, std::memory_order_release);
  return 0;
}
}  // namespace

bool io_wait_fd(int fd, bool write, clock::time_point deadline, const char* operation) {
  if (!operation) operation = write ? "fiber::io::wait_writable" : "fiber::io::wait_readable";
  require_fiber(operation);
  event_loop::impl* const L = running_loop_impl();
  fd_entry* const e = kept.get(fd);
  if (!e) {
    if (fd < 0)
      throw std::system_error(EBADF, std::generic_category(), std::string(operation) + ": fd " + std::to_string(fd));
    throw std::bad_alloc();
  }
  wait_queue& q = write ? e->h.writers : e->h.readers;
  park_local<waiter> parked;  // (off the stack of a copied-stack fiber)
  waiter& w = *parked;
  {
    op_guard guard(e->h.lock);
    e->h.fd = fd;
    enqueue(q, w);
    if (const int err = arm(L, *e)) {
      q.remove(w);
      wake_all(*e);  // fibers already waiting may have lost their registration: they retry
      guard.unlock();
      throw std::system_error(err, std::generic_category(),
                              std::string(operation) + ": epoll_ctl of fd " + std::to_string(fd));
    }
  }
  struct drop_dup {
    fd_entry* e;
    int fd;
    ~drop_dup() {  // a dup arm() registered goes when nobody waits: it holds the file open
      op_guard guard(e->h.lock);
      if (e->reg_fd >= 0 && e->reg_fd != fd && e->h.readers.empty() && e->h.writers.empty()) unregister(*e);
    }
  } after_wait{e, fd};
  io_wait_count count(L, nullptr, false);
  return park(&w, 1, deadline, operation, wait_on_fd(fd)) != park_timeout;
}

void io_fd_closing(int fd) noexcept {
  fd_entry* const e = kept.find(fd);
  // No registration, no waiter (a waiter's fd is registered): nothing to do, and
  // no lock taken (from a thread outside any loop, one would turn the loops shared).
  if (!e || !e->owner.load(std::memory_order_acquire)) return;
  op_guard guard(e->h.lock);
  // Out of epoll while fd is still open: once closed, epoll could not be told.
  unregister(*e);
  wake_all(*e);  // their retried call fails with EBADF
}

}  // namespace detail

void event_loop::impl::kept_fd_event(detail::fd_entry* e, const detail::reactor::event& ev) noexcept {
  detail::op_guard guard(e->h.lock);
  if (ev.readable)
    while (detail::waiter* w = detail::claim_front(e->h.readers)) detail::wake(*w);
  if (ev.writable)
    while (detail::waiter* w = detail::claim_front(e->h.writers)) detail::wake(*w);
  // Oneshot: the registration is disarmed now. Re-armed for the fibers that still
  // wait (for the other direction); not from an epoll the fd has left since.
  if (e->owner.load(std::memory_order_relaxed) == this && (!e->h.readers.empty() || !e->h.writers.empty()) &&
      detail::arm(this, *e) != 0)
    detail::wake_all(*e);  // they retry, and see what is wrong
}

void event_loop::impl::drop_kept_fds() noexcept {
  detail::kept.for_each([this](int, detail::fd_entry& e) {
    if (e.owner.load(std::memory_order_acquire) != this) return;
    detail::op_guard guard(e.h.lock);
    if (e.owner.load(std::memory_order_relaxed) != this) return;
    detail::unregister(e);
    detail::wake_all(e);  // fibers of other loops that were served through this epoll: they register in theirs
  });
}

namespace detail {
#else
void io_register(io_handle&) { throw error("fiber::io: not supported on this platform (no epoll)"); }
void io_unregister(io_handle&) noexcept {}
bool io_wait(io_handle&, bool, clock::time_point, const char*) {
  throw error("fiber::io: not supported on this platform (no epoll)");
}
bool io_wait_fd(int, bool, clock::time_point, const char*) {
  throw error("fiber::io: not supported on this platform (no epoll)");
}
void io_fd_closing(int) noexcept {}
#endif

}  // namespace detail

}  // namespace fiber
