// A table indexed by file descriptor, for state kept per fd between calls: the
// reactor's kept registrations (event_loop.cpp, io_wait_fd) and libfiber_hook's
// classification of each fd (hook.cpp). Header-only: the hook does not link
// libfiber.
//
//   - Lazily grown: an fd's index splits into [top | middle | low]; the top level
//     is a fixed array of pointers (a few KiB, zero until used), the middle
//     levels and the chunks of entries are mapped when an fd of their range is
//     first used. Every fd in [0, INT_MAX] has a place; a process that uses fds
//     0..N pays for about N entries.
//   - Stable: nothing is ever freed or moved, so a pointer to an entry stays
//     valid for the life of the process (epoll's data may point at one, and an
//     event that comes late finds it still there).
//   - Lock-free: any number of threads look up and grow it at once (a chunk is
//     installed with a compare-and-swap; the loser unmaps its own). Entries are
//     T's: their own synchronisation is theirs.
//   - Usable from a signal handler: chunks come from mmap, never from malloc
//     (close() and read() are async-signal-safe, and the hook's run from them).
//
// Linux (or any system with mmap) only.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <new>

namespace fiber::detail {

// T: default-constructible. An fd's index is [top: 31 - ChunkBits - MidBits bits |
// MidBits | ChunkBits]. Constant-initialized: usable before (and after) static
// constructors run.
template <class T, unsigned ChunkBits, unsigned MidBits>
class fd_table {
  static constexpr unsigned top_bits = 31 - ChunkBits - MidBits;
  static constexpr std::size_t chunk_size = std::size_t{1} << ChunkBits;
  static constexpr std::size_t mid_size = std::size_t{1} << MidBits;
  static_assert(ChunkBits + MidBits < 31, "fd_table: the top level needs at least one bit");

  struct chunk {
    T entries[chunk_size];
  };
  struct middle {
    std::atomic<chunk*> chunks[mid_size];
  };

 public:
  constexpr fd_table() noexcept = default;
  fd_table(const fd_table&) = delete;
  fd_table& operator=(const fd_table&) = delete;

  // The entry of fd if its chunk exists, else nullptr (also for fd < 0).
  T* find(int fd) const noexcept {
    if (fd < 0) return nullptr;
    const auto i = static_cast<unsigned>(fd);
    middle* m = top_[i >> (ChunkBits + MidBits)].load(std::memory_order_acquire);
    if (!m) return nullptr;
    chunk* c = m->chunks[(i >> ChunkBits) & (mid_size - 1)].load(std::memory_order_acquire);
    return c ? &c->entries[i & (chunk_size - 1)] : nullptr;
  }

  // The entry of fd, its chunk made if needed; nullptr if fd < 0 or mmap failed.
  T* get(int fd) noexcept {
    if (fd < 0) return nullptr;
    const auto i = static_cast<unsigned>(fd);
    middle* m = install(top_[i >> (ChunkBits + MidBits)]);
    if (!m) return nullptr;
    chunk* c = install(m->chunks[(i >> ChunkBits) & (mid_size - 1)]);
    return c ? &c->entries[i & (chunk_size - 1)] : nullptr;
  }

  // Calls fn(fd, entry) for every entry made so far (in no particular order, and
  // while other threads may add chunks: those may be missed).
  template <class F>
  void for_each(F&& fn) const {
    for (std::size_t t = 0; t < (std::size_t{1} << top_bits); ++t) {
      middle* m = top_[t].load(std::memory_order_acquire);
      if (!m) continue;
      for (std::size_t k = 0; k < mid_size; ++k) {
        chunk* c = m->chunks[k].load(std::memory_order_acquire);
        if (!c) continue;
        const std::size_t base = (t << (ChunkBits + MidBits)) | (k << ChunkBits);
        for (std::size_t j = 0; j < chunk_size; ++j) fn(static_cast<int>(base | j), c->entries[j]);
      }
    }
  }

 private:
  template <class U>
  static U* install(std::atomic<U*>& slot) noexcept {
    U* p = slot.load(std::memory_order_acquire);
    if (p) return p;
    void* mem = ::mmap(nullptr, sizeof(U), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return nullptr;
    U* made = ::new (mem) U();
    if (slot.compare_exchange_strong(p, made, std::memory_order_acq_rel, std::memory_order_acquire)) return made;
    made->~U();  // another thread installed one first: use theirs
    ::munmap(mem, sizeof(U));
    return p;
  }

  std::atomic<middle*> top_[std::size_t{1} << top_bits]{};
};

}  // namespace fiber::detail
