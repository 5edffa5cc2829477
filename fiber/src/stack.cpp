#include "fiber/stack.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "fiber/error.hpp"

namespace fiber {

stack_allocation_error::stack_allocation_error(std::size_t size, int errno_value)
    : size_(size),
      message_("fiber: cannot allocate a stack of " + std::to_string(size) + " bytes: " + std::strerror(errno_value)) {}

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

namespace {
std::size_t round_to_pages(std::size_t size) {
  const std::size_t page = page_size();
  if (size < min_stack_size) size = min_stack_size;
  if (size > SIZE_MAX - 2 * page) throw stack_allocation_error(size, ENOMEM);
  return (size + page - 1) / page * page;
}
}  // namespace

protected_stack::protected_stack(std::size_t size) : size_(round_to_pages(size)) {}

stack_memory protected_stack::allocate() const {
  const std::size_t guard = page_size();
  // Reserve the guard page and the usable range in one mapping; the kernel commits
  // pages only as the fiber touches them.
  void* p = ::mmap(nullptr, size_ + guard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) throw stack_allocation_error(size_, errno);
  if (::mprotect(p, guard, PROT_NONE) != 0) {
    const int e = errno;
    ::munmap(p, size_ + guard);
    throw stack_allocation_error(size_, e);
  }
  return {static_cast<char*>(p) + guard, size_};
}

void protected_stack::deallocate(stack_memory stack) const noexcept {
  const std::size_t guard = page_size();
  ::munmap(static_cast<char*>(stack.base) - guard, stack.size + guard);
}

namespace detail {

class stack_pool {
 public:
  stack_pool(std::size_t size, std::size_t max_cached) : source_(size), max_cached_(max_cached) {
    free_.reserve(max_cached < 1024 ? max_cached : 1024);
  }
  ~stack_pool() {
    for (stack_memory s : free_) source_.deallocate(s);
  }

  stack_memory allocate() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        stack_memory s = free_.back();
        free_.pop_back();
        return s;
      }
    }
    return source_.allocate();
  }

  void deallocate(stack_memory s) noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (free_.size() < max_cached_) {
        try {
          free_.push_back(s);
          return;
        } catch (...) {
          // No room to remember it: give it back to the system instead.
        }
      }
    }
    source_.deallocate(s);
  }

  std::size_t size() const noexcept { return source_.size(); }
  std::size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return free_.size();
  }

 private:
  protected_stack source_;
  std::size_t max_cached_;
  std::mutex mutex_;
  std::vector<stack_memory> free_;
};

}  // namespace detail

pooled_stack::pooled_stack(std::size_t size, std::size_t max_cached)
    : pool_(std::make_shared<detail::stack_pool>(size, max_cached)) {}
stack_memory pooled_stack::allocate() const { return pool_->allocate(); }
void pooled_stack::deallocate(stack_memory stack) const noexcept { pool_->deallocate(stack); }
std::size_t pooled_stack::size() const noexcept { return pool_->size(); }
std::size_t pooled_stack::cached() const { return pool_->cached(); }

stack_memory stack_view::allocate() const {
  if (pointer == nullptr) throw error("fiber::stack_view: null pointer");
  if (size < min_stack_size)
    throw error("fiber::stack_view: " + std::to_string(size) + " bytes is too small for a stack (at least " +
                std::to_string(min_stack_size) + ")");
  return {pointer, size};
}

}  // namespace fiber
