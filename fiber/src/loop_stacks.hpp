// The stacks of an event loop's fibers: a pool per stack size, the guard-page
// policy (event_loop.hpp, "Stacks"), and the allocator a loop fiber's context is
// made with.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fiber/event_loop.hpp"
#include "fiber/stack.hpp"

#if defined(_WIN32)
#  include <windows.h>
#else
#  include <sys/mman.h>
#endif

namespace fiber::detail {

constexpr std::uintptr_t canary_value = static_cast<std::uintptr_t>(0x5afe5afe5afe5afeULL);

// ---- stacks -------------------------------------------------------------------

// The loop's stack pool (the policy is in event_loop.hpp). Guarded stacks are one
// mapping each, with a PROT_NONE page below; unguarded ones are carved from
// slabs and carry a canary at their lowest word.
class loop_stacks {
 public:
  loop_stacks(std::size_t default_size, std::size_t guarded_budget)
      : default_size_(round(default_size)), guarded_budget_(guarded_budget) {}
  ~loop_stacks() {
    for (auto& [size, p] : pools_)
      for (auto& s : p.guarded) unmap_guarded(s);
    for (auto& slab : slabs_) unmap(slab.first, slab.second);
  }

  std::size_t default_size() const noexcept { return default_size_; }
  std::size_t guarded_live = 0;
  std::size_t plain_live = 0;
  std::size_t idle_guarded = 0;  // guarded stacks held by idle workers (not live)

  // A worker going idle with its stack, or taking a task again.
  void to_idle(bool guarded) noexcept {
    if (guarded) {
      --guarded_live;
      ++idle_guarded;
    } else {
      --plain_live;
    }
  }
  void from_idle(bool guarded) noexcept {
    if (guarded) {
      ++guarded_live;
      --idle_guarded;
    } else {
      ++plain_live;
    }
  }

  stack_memory allocate(std::size_t size, bool& guarded) {
    size = (size == 0 || size == default_size_) ? default_size_ : round(size);
    pool& p = find(size);
    if (!p.guarded.empty()) {
      guarded = true;
      ++guarded_live;
      stack_memory s = p.guarded.back();
      p.guarded.pop_back();
      return s;
    }
    if (!p.plain.empty()) {
      guarded = false;
      ++plain_live;
      stack_memory s = p.plain.back();
      p.plain.pop_back();
      set_canary(s);
      return s;
    }
    if (guarded_live + idle_guarded + cached_guarded() < guarded_budget_) {
      guarded = true;
      stack_memory s = map_guarded(size);
      ++guarded_live;
      return s;
    }
    guarded = false;
    stack_memory s = carve(p, size);
    ++plain_live;
    set_canary(s);
    return s;
  }

  void deallocate(stack_memory s, bool guarded) noexcept {
    pool& p = find(s.size);
    if (guarded) {
      --guarded_live;
      if (p.guarded.size() < max_cached_guarded)
        p.guarded.push_back(s);
      else
        unmap_guarded(s);
    } else {
      --plain_live;
      p.plain.push_back(s);  // slab memory is reused, never unmapped singly
    }
  }

 private:
  struct pool {
    std::vector<stack_memory> guarded;
    std::vector<stack_memory> plain;
    char* slab_next = nullptr;  // unused part of the current slab
    char* slab_end = nullptr;
  };
  // The pool of `size`; the last one used is remembered (fibers of one size are
  // the common case).
  pool& find(std::size_t size) {
    if (size != last_size_ || !last_pool_) {
      last_pool_ = &pools_[size];  // unordered_map: references stay valid
      last_size_ = size;
    }
    return *last_pool_;
  }
  static constexpr std::size_t max_cached_guarded = 1024;
  static constexpr std::size_t slab_bytes = 4u << 20;

  std::size_t cached_guarded() const noexcept {
    std::size_t n = 0;
    for (auto& [size, p] : pools_) n += p.guarded.size();
    return n;
  }
  static std::size_t round(std::size_t size) {
    const std::size_t page = page_size();
    if (size < min_stack_size) size = min_stack_size;
    return (size + page - 1) / page * page;
  }
  static void set_canary(stack_memory s) noexcept { *static_cast<std::uintptr_t*>(s.base) = canary_value; }

  static stack_memory map_guarded(std::size_t size) {
    const std::size_t page = page_size();
#if defined(_WIN32)
    void* p = VirtualAlloc(nullptr, size + page, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    if (!p) throw stack_allocation_error(size, ENOMEM);
    DWORD old;
    VirtualProtect(p, page, PAGE_NOACCESS, &old);
#else
    void* p = mmap(nullptr, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw stack_allocation_error(size, errno);
    if (mprotect(p, page, PROT_NONE) != 0) {
      int e = errno;
      munmap(p, size + page);
      throw stack_allocation_error(size, e);
    }
#endif
    return {static_cast<char*>(p) + page, size};
  }
  static void unmap_guarded(stack_memory s) noexcept { unmap(static_cast<char*>(s.base) - page_size(), s.size + page_size()); }
  static void unmap(void* p, std::size_t bytes) noexcept {
#if defined(_WIN32)
    (void)bytes;
    VirtualFree(p, 0, MEM_RELEASE);
#else
    munmap(p, bytes);
#endif
  }
  // Stacks lie end to end in a slab, each starting one word below a page
  // boundary: a stack's canary is the last word of the page that holds the top of
  // the stack below it. A fiber that stays shallow touches one page, not one at
  // its top and another for its canary (a page fault and 4 KiB each).
  stack_memory carve(pool& p, std::size_t size) {
    if (p.slab_next == nullptr || static_cast<std::size_t>(p.slab_end - p.slab_next) < size) {
      const std::size_t bytes = std::max(slab_bytes, size + page_size());
#if defined(_WIN32)
      void* m = VirtualAlloc(nullptr, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
      if (!m) throw stack_allocation_error(size, ENOMEM);
#else
      void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m == MAP_FAILED) throw stack_allocation_error(size, errno);
#endif
      slabs_.emplace_back(m, bytes);
      p.slab_next = static_cast<char*>(m) + page_size() - sizeof(canary_value);
      p.slab_end = static_cast<char*>(m) + bytes;
    }
    stack_memory s{p.slab_next, size};
    p.slab_next += size;
    return s;
  }

  std::size_t default_size_;
  std::size_t guarded_budget_;
  std::unordered_map<std::size_t, pool> pools_;
  std::size_t last_size_ = 0;
  pool* last_pool_ = nullptr;
  std::vector<std::pair<void*, std::size_t>> slabs_;
};

// The StackAllocator a loop fiber's context is made with.
struct loop_stack_allocator {
  loop_stacks* stacks;
  fiber_control* fiber;
  std::size_t size;
  mutable bool guarded = true;

  stack_memory allocate() const {
    stack_memory s = stacks->allocate(size, guarded);
    fiber->canary = guarded ? nullptr : static_cast<std::uintptr_t*>(s.base);
    return s;
  }
  void deallocate(stack_memory s) const noexcept { stacks->deallocate(s, guarded); }
};

}  // namespace fiber::detail
