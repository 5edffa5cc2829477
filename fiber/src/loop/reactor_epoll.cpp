// The reactor on Linux: epoll, and an eventfd for pokes (reactor.hpp).
#include "reactor.hpp"

#if FIBER_HAVE_EPOLL

#include <cerrno>
#include <cstdint>
#include <system_error>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace fiber::detail {

namespace {
std::uint32_t epoll_events(std::uint32_t interest) noexcept {
  std::uint32_t ev = 0;
  if (interest & reactor::want_read) ev |= EPOLLIN | EPOLLRDHUP;
  if (interest & reactor::want_write) ev |= EPOLLOUT;
  if (interest & reactor::edge) ev |= EPOLLET;
  if (interest & reactor::oneshot) ev |= EPOLLONESHOT;
  return ev;
}
int ctl(int epfd, int op, int fd, std::uint32_t interest, void* data) noexcept {
  epoll_event ev{};
  ev.events = epoll_events(interest);
  ev.data.ptr = data;
  return epoll_ctl(epfd, op, fd, &ev) == 0 ? 0 : errno;
}
}  // namespace

reactor::reactor() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw std::system_error(errno, std::generic_category(), "fiber::event_loop: epoll_create1");
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    const int e = errno;
    close(epfd_);
    throw std::system_error(e, std::generic_category(), "fiber::event_loop: eventfd");
  }
  if (const int e = ctl(epfd_, EPOLL_CTL_ADD, wake_fd_, want_read, this)) {
    close(wake_fd_);
    close(epfd_);
    throw std::system_error(e, std::generic_category(), "fiber::event_loop: epoll_ctl(eventfd)");
  }
}

reactor::~reactor() {
  close(wake_fd_);
  close(epfd_);
}

int reactor::add(int fd, std::uint32_t interest, void* data) noexcept {
  return ctl(epfd_, EPOLL_CTL_ADD, fd, interest, data);
}
int reactor::modify(int fd, std::uint32_t interest, void* data) noexcept {
  return ctl(epfd_, EPOLL_CTL_MOD, fd, interest, data);
}
int reactor::remove(int fd) noexcept { return epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) == 0 ? 0 : errno; }
void reactor::remove_from(int handle, int fd) noexcept { epoll_ctl(handle, EPOLL_CTL_DEL, fd, nullptr); }

int reactor::wait(event* out, int max, int timeout_ms) {
  constexpr int batch = 128;
  epoll_event events[batch];
  const int n = epoll_wait(epfd_, events, max < batch ? max : batch, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw std::system_error(errno, std::generic_category(), "fiber::event_loop: epoll_wait");
  }
  int k = 0;
  for (int i = 0; i < n; ++i) {
    if (events[i].data.ptr == this) {  // a poke
      std::uint64_t v;
      while (read(wake_fd_, &v, sizeof v) > 0) {
      }
      continue;
    }
    const std::uint32_t e = events[i].events;
    out[k++] = event{events[i].data.ptr, (e & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0,
                     (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0, (e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0};
  }
  return k;
}

void reactor::poke() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto r = write(wake_fd_, &one, sizeof one);
}

int reactor::native_handle() const noexcept { return epfd_; }

}  // namespace fiber::detail

#endif
