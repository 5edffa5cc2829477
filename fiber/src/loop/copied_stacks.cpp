// The buffers of copied-away frames (copied_stacks.hpp): frame_arena.
#include "copied_stacks.hpp"

#include <cstdint>
#include <new>

#if defined(__linux__)
#  include <sys/mman.h>
#endif

namespace fiber::detail {

frame_arena::~frame_arena() {
  for (void* c : chunks_) {
#if defined(__linux__)
    ::munmap(c, chunk_bytes);
#else
    ::operator delete(c, std::align_val_t{granule});
#endif
  }
}

unsigned char* frame_arena::allocate(std::size_t n) noexcept {
  if (n > largest) return static_cast<unsigned char*>(::operator new(n, std::nothrow));
  const std::size_t cap = capacity(n);
  if (free_block*& head = free_[cap / granule - 1]; head) {
    free_block* b = head;
    head = b->next;
    return reinterpret_cast<unsigned char*>(b);
  }
  if (static_cast<std::size_t>(end_ - next_) < cap) {
    void* c = nullptr;
    try {
      chunks_.reserve(chunks_.size() + 1);
    } catch (...) {
      return nullptr;
    }
#if defined(__linux__)
    // 2 MiB aligned, for a huge page: map twice that, keep the aligned half.
    void* m = ::mmap(nullptr, 2 * chunk_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return nullptr;
    const auto at = reinterpret_cast<std::uintptr_t>(m);
    const std::uintptr_t aligned = (at + chunk_bytes - 1) & ~(chunk_bytes - 1);
    if (aligned > at) ::munmap(m, aligned - at);
    if (aligned + chunk_bytes < at + 2 * chunk_bytes)
      ::munmap(reinterpret_cast<void*>(aligned + chunk_bytes), at + 2 * chunk_bytes - (aligned + chunk_bytes));
    c = reinterpret_cast<void*>(aligned);
#  if defined(MADV_HUGEPAGE)
    ::madvise(c, chunk_bytes, MADV_HUGEPAGE);  // (a hint: without it, small pages)
#  endif
#else
    c = ::operator new(chunk_bytes, std::align_val_t{granule}, std::nothrow);
    if (!c) return nullptr;
#endif
    chunks_.push_back(c);
    next_ = static_cast<unsigned char*>(c);
    end_ = next_ + chunk_bytes;
  }
  unsigned char* p = next_;
  next_ += cap;
  return p;
}

void frame_arena::deallocate(unsigned char* p, std::size_t capacity) noexcept {
  if (capacity > largest) {
    ::operator delete(p);
    return;
  }
  auto* b = reinterpret_cast<free_block*>(p);
  b->next = free_[capacity / granule - 1];
  free_[capacity / granule - 1] = b;
}

}  // namespace fiber::detail
