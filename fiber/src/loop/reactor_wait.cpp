// The reactor where there is no epoll (reactor.hpp): no fd is watched; a wait
// ends with a poke or its timeout (a condition variable).
#include "reactor.hpp"

#if !FIBER_HAVE_EPOLL

#include <cerrno>
#include <chrono>
#include <utility>

namespace fiber::detail {

reactor::reactor() = default;
reactor::~reactor() = default;

int reactor::add(int, std::uint32_t, void*) noexcept { return ENOSYS; }
int reactor::modify(int, std::uint32_t, void*) noexcept { return ENOSYS; }
int reactor::remove(int) noexcept { return ENOSYS; }
void reactor::remove_from(int, int) noexcept {}

int reactor::wait(event*, int, int timeout_ms) {
  if (timeout_ms == 0) return 0;
  std::unique_lock lock(mutex_);
  auto poked = [this] { return std::exchange(poked_, false); };
  if (timeout_ms < 0)
    cv_.wait(lock, poked);
  else
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), poked);
  return 0;
}

void reactor::poke() noexcept {
  {
    std::lock_guard lock(mutex_);
    poked_ = true;
  }
  cv_.notify_one();
}

int reactor::native_handle() const noexcept { return -1; }

}  // namespace fiber::detail

#endif
