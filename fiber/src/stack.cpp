#include "fiber/stack.hpp"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "fiber/error.hpp"
#include "fiber/context.hpp"  // (FIBER_ASAN)
#include "guarded_stack.hpp"
#include "per_thread.hpp"

namespace fiber {

namespace {

#if defined(__linux__)
// The first number in a /proc file, or false. No allocation (memory may be short).
bool read_proc_number(const char* path, unsigned long long& value) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  char* end = nullptr;
  value = std::strtoull(buf, &end, 10);
  return end != buf;
}
#endif

// Appends to text[0, size), at n; the text is cut at the end of the buffer.
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
void append(char* text, std::size_t size, std::size_t& n, const char* format, ...) noexcept {
  if (n + 1 >= size) return;
  va_list args;
  va_start(args, format);
  const int k = std::vsnprintf(text + n, size - n, format, args);
  va_end(args);
  if (k > 0) n = std::min(n + static_cast<std::size_t>(k), size - 1);
}

// What stack_allocation_error says: the size, the call that failed and why, and
// for ENOMEM the limit hit when it can tell. Composed in a fixed buffer: one
// allocation, for the string.
std::string stack_error_message(std::size_t size, int errno_value, const char* call, std::size_t bytes) {
  char text[512];
  std::size_t n = 0;
#define add(...) append(text, sizeof text, n, __VA_ARGS__)
  add("fiber: cannot allocate a stack of %llu bytes: ", static_cast<unsigned long long>(size));
  if (call) add("%s failed: ", call);
  add("%s", std::strerror(errno_value));
  if (errno_value == ENOMEM) {
#if defined(__linux__)
    unsigned long long max_maps = 0;
    const bool maps_known = read_proc_number("/proc/sys/vm/max_map_count", max_maps);
    rlimit as{};
    const bool as_set = ::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY;
    unsigned long long mapped_pages = 0;
    const unsigned long long mapped =
        read_proc_number("/proc/self/statm", mapped_pages) ? mapped_pages * page_size() : 0;
    // mmap fails with ENOMEM past RLIMIT_AS, and past vm.max_map_count when the
    // new mapping cannot extend another; mprotect of part of a mapping splits it,
    // and fails only at the map count (it maps nothing new).
    const bool is_mprotect = call && std::strcmp(call, "mprotect") == 0;
    const bool over_as = as_set && !is_mprotect && (bytes == 0 || mapped == 0 || mapped + bytes > as.rlim_cur);
    if (over_as) {
      add(" (the address-space limit: ulimit -v, RLIMIT_AS = %llu bytes", static_cast<unsigned long long>(as.rlim_cur));
      if (mapped) add(", %llu mapped", mapped);
      add(")");
    } else if (is_mprotect) {
      add(" (the kernel's limit on memory mappings, vm.max_map_count");
      if (maps_known) add(" = %llu", max_maps);
      add(": each guard page splits a mapping)");
    } else {
      add(" (out of memory, or the kernel's limit on memory mappings, vm.max_map_count");
      if (maps_known) add(" = %llu", max_maps);
      if (as_set) add("; RLIMIT_AS = %llu bytes", static_cast<unsigned long long>(as.rlim_cur));
      add(")");
    }
#elif defined(_WIN32)
    add(" (out of memory or address space)");
    (void)bytes;
#else
    add(" (out of memory or address space, or the process has reached the system's limit on memory mappings)");
    (void)bytes;
#endif
  }
#undef add
  return std::string(text, n);
}

}  // namespace

stack_allocation_error::stack_allocation_error(std::size_t size, int errno_value)
    : stack_allocation_error(size, errno_value, nullptr, 0) {}

stack_allocation_error::stack_allocation_error(std::size_t size, int errno_value, const char* call, std::size_t bytes)
    : size_(size), message_(stack_error_message(size, errno_value, call, bytes)) {}

#ifdef _WIN32
std::size_t page_size() noexcept {
  static const std::size_t size = [] {
    SYSTEM_INFO info;
    ::GetSystemInfo(&info);
    return static_cast<std::size_t>(info.dwPageSize);
  }();
  return size;
}
#else
std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}
#endif

namespace {
std::size_t round_to_pages(std::size_t size) {
  const std::size_t page = page_size();
  if (size < min_stack_size) size = min_stack_size;
  if (size > SIZE_MAX - 2 * page) throw stack_allocation_error(size, ENOMEM);
  return (size + page - 1) / page * page;
}
}  // namespace

protected_stack::protected_stack(std::size_t size) : size_(round_to_pages(size)) {}

#ifdef _WIN32
namespace {
// stack_allocation_error speaks errno; the system error codes VirtualAlloc fails
// with map onto these.
int errno_from_win32(DWORD error) noexcept {
  switch (error) {
    case ERROR_INVALID_PARAMETER:
      return EINVAL;
    case ERROR_ACCESS_DENIED:
      return EACCES;
    default:  // ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY, ERROR_COMMITMENT_LIMIT, ...
      return ENOMEM;
  }
}
}  // namespace

namespace detail {
stack_memory map_guarded_stack(std::size_t size) {
  const std::size_t guard = page_size();
  // Reserve the guard page and the usable range as one allocation, then commit the
  // usable range only: the guard page stays reserved and inaccessible, so touching
  // it raises an access violation. Committed pages are backed only when touched.
  void* p = ::VirtualAlloc(nullptr, size + guard, MEM_RESERVE, PAGE_NOACCESS);
  if (p == nullptr) throw stack_allocation_error(size, errno_from_win32(::GetLastError()));
  char* base = static_cast<char*>(p) + guard;
  if (::VirtualAlloc(base, size, MEM_COMMIT, PAGE_READWRITE) == nullptr) {
    const DWORD e = ::GetLastError();
    ::VirtualFree(p, 0, MEM_RELEASE);
    throw stack_allocation_error(size, errno_from_win32(e));
  }
  return {base, size};
}

void unmap_guarded_stack(stack_memory stack) noexcept {
  ::VirtualFree(static_cast<char*>(stack.base) - page_size(), 0, MEM_RELEASE);
}
}  // namespace detail
#else
namespace detail {
stack_memory map_guarded_stack(std::size_t size) {
  const std::size_t guard = page_size();
  // The guard page and the usable range in one mapping; the kernel backs pages
  // only as the fiber touches them, and reserves no swap for the rest
  // (MAP_NORESERVE: 10^5 stacks of 64 KiB are 6 GiB of address space, of which a
  // few pages each are ever used). The guard's mprotect splits the mapping in two
  // (two of vm.max_map_count's entries per stack).
  void* p = ::mmap(nullptr, size + guard, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) throw stack_allocation_error(size, errno, "mmap", size + guard);
  if (::mprotect(p, guard, PROT_NONE) != 0) {
    const int e = errno;
    ::munmap(p, size + guard);
    throw stack_allocation_error(size, e, "mprotect");
  }
  return {static_cast<char*>(p) + guard, size};
}

void unmap_guarded_stack(stack_memory stack) noexcept {
  const std::size_t guard = page_size();
  forget_stack_shadow(stack.base, stack.size);
  ::munmap(static_cast<char*>(stack.base) - guard, stack.size + guard);
}
}  // namespace detail
#endif

stack_memory protected_stack::allocate() const { return detail::map_guarded_stack(size_); }

void protected_stack::deallocate(stack_memory stack) const noexcept { detail::unmap_guarded_stack(stack); }

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

namespace {
// The calling thread's free stacks for cached_stack, newest last. A fixed array:
// giving a stack back never allocates, so it cannot fail.
struct thread_stack_cache {
  stack_memory free[cached_stack::thread_cache_limit];
  std::size_t count = 0;
  bool exited = false;  // the thread is exiting: stacks given back now are unmapped

  ~thread_stack_cache() {
    exited = true;
    while (count > 0) unmap(free[--count]);
  }
  static void unmap(stack_memory s) noexcept { protected_stack(s.size).deallocate(s); }
};
}  // namespace
FIBER_PER_THREAD(thread_stack_cache, stack_cache)
}  // namespace detail

stack_memory cached_stack::allocate() const {
  detail::thread_stack_cache& cache = detail::stack_cache();
  // The newest stack of the size first: its pages are the likeliest still in cache.
  for (std::size_t i = cache.count; i-- > 0;) {
    if (cache.free[i].size == source_.size()) {
      stack_memory s = cache.free[i];
      cache.free[i] = cache.free[--cache.count];
      return s;
    }
  }
  return source_.allocate();
}

void cached_stack::deallocate(stack_memory stack) const noexcept {
  detail::thread_stack_cache& cache = detail::stack_cache();
  if (cache.count < thread_cache_limit && !cache.exited)
    cache.free[cache.count++] = stack;
  else
    source_.deallocate(stack);
}

std::size_t cached_stack::thread_cached() noexcept { return detail::stack_cache().count; }

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

#ifdef _WIN32
// For arch/switch_x86_64_ms_pe_gas.S: the value of the TIB's DeallocationStack for a
// stack whose lowest usable address is `stack_limit`, i.e. the lowest address of the
// memory reserved for it. That is the base of stack_limit's allocation when only
// inaccessible pages (the guard: reserved, PAGE_NOACCESS or PAGE_GUARD) lie
// between the two, as protected_stack lays it out; otherwise (stack_view memory in
// a heap block, a static array...) the stack owns nothing below stack_limit.
extern "C" void* fiber_stack_deallocation_base(void* stack_limit) noexcept {
  MEMORY_BASIC_INFORMATION usable, below;
  if (::VirtualQuery(stack_limit, &usable, sizeof usable) != sizeof usable || usable.State == MEM_FREE)
    return stack_limit;
  char* const allocation = static_cast<char*>(usable.AllocationBase);
  if (allocation >= static_cast<char*>(stack_limit)) return stack_limit;
  // VirtualQuery describes the run of pages with equal attributes from `allocation` up.
  if (::VirtualQuery(allocation, &below, sizeof below) != sizeof below) return stack_limit;
  const bool inaccessible = below.State == MEM_RESERVE || (below.Protect & (PAGE_NOACCESS | PAGE_GUARD)) != 0;
  if (inaccessible && allocation + below.RegionSize == static_cast<char*>(stack_limit)) return allocation;
  return stack_limit;
}
#endif

#if FIBER_ASAN
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, std::size_t size);
#endif
void fiber::detail::forget_stack_shadow([[maybe_unused]] const void* p, [[maybe_unused]] std::size_t bytes) noexcept {
#if FIBER_ASAN
  __asan_unpoison_memory_region(p, bytes);
#endif
}
