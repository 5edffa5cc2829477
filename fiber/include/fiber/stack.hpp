// Stacks for fibers.
//
// A stack allocator is any copyable type with
//     stack_memory allocate();                  // throws on failure
//     void deallocate(stack_memory) noexcept;
// A fiber keeps its allocator (a copy) for as long as it lives and gives the stack
// back to it when it ends. Four are provided:
//   cached_stack     protected stacks from a small per-thread cache: the default of
//                    context and generator;
//   protected_stack  one mmap per stack, with a PROT_NONE guard page below it;
//   pooled_stack     protected stacks kept for reuse after a fiber ends (bounded,
//                    shared by its copies across threads);
//   stack_view       memory the caller owns, for code that cannot or will not mmap.
#pragma once

#include <cstddef>
#include <memory>

#include "fiber/config.h"

namespace fiber {

/// Usable size of a stack when none is given.
inline constexpr std::size_t default_stack_size = 64 * 1024;

/// Bytes below a fiber's bookkeeping that switching needs on the fiber's stack:
/// the first frames (up to 672 bytes, on ppc64 ELFv1); the dynamic linker's
/// lazy-binding resolver, which runs on whatever stack makes a first call through
/// the PLT (the library's own, when it is a shared library) and saves the whole
/// vector register state there (about 2.7 KiB with AVX-512); and, with the
/// ucontext backend, the ucontext_t each switch keeps on the stack.
inline constexpr std::size_t switch_stack_reserve = FIBER_BACKEND_UCONTEXT ? 8192 : 4096;

/// The smallest usable size any allocator accepts: room for the fiber's own
/// bookkeeping, the switch's reserve and a few frames. Real code wants much more.
inline constexpr std::size_t min_stack_size = 2 * switch_stack_reserve;

/// A usable stack range: [base, base + size). The stack grows down from base + size.
struct stack_memory {
  void* base = nullptr;
  std::size_t size = 0;
  void* top() const noexcept { return static_cast<char*>(base) + size; }
};

/// Where a fiber's frames live while it runs and while it is parked
/// (spawn_options::stack, event_loop::options::stack), or a generator's while it
/// is suspended (generator.hpp).
enum class stack_kind : unsigned char {
  /// A stack of its own (the default): a parked fiber keeps the pages it
  /// touched, at least one (4 KiB).
  own,
  /// Copied (libco's and libaco's idea): the fiber runs on a stack its loop
  /// shares among its copied-stack fibers. It leaves its frames there when it
  /// parks; when another copied-stack fiber of the loop is resumed, the bytes in
  /// use (from its stack pointer to the top: a few hundred bytes for a fiber
  /// parked in a channel's recv) are copied to a buffer of their size, and back
  /// to the same addresses before it runs again. A parked fiber then costs its
  /// task block and those bytes instead of a page; a resume through another
  /// copied-stack fiber costs the two copies. Channels, select, sleeps,
  /// mutexes, joins and IO work as for any fiber, with fibers of either kind.
  ///
  /// The rule: nothing may use a pointer into the frames of a parked
  /// copied-stack fiber (its locals; what it passed by reference to a task it
  /// joins) while another copied-stack fiber of its loop runs: those addresses
  /// hold the other fiber's frames then. The library keeps what it must reach
  /// of a parked fiber (its waiters, the values a channel hands over) off the
  /// stack; a fiber that shares a local with other fibers gives it a stack of
  /// its own, or puts the local on the heap. A task that may migrate
  /// (spawn_options::migratable) cannot have a copied stack (fiber::error).
  ///
  /// Generators of this kind share a stack per thread in the same way (a second
  /// one for a generator started while the first is in use up the call chain);
  /// their rules are in generator.hpp.
  copied
};

/// The system's page size.
std::size_t page_size() noexcept;

/// One mmap per stack: `size` usable bytes (rounded up to whole pages, committed by
/// the OS only when touched) above one inaccessible guard page, so running off the
/// end faults instead of silently overwriting other memory.
class protected_stack {
 public:
  explicit protected_stack(std::size_t size = default_stack_size);
  /// Throws stack_allocation_error (a std::bad_alloc) naming the size on failure.
  stack_memory allocate() const;
  void deallocate(stack_memory stack) const noexcept;
  std::size_t size() const noexcept { return size_; }

 private:
  std::size_t size_;
};

/// Protected stacks (guard page and all, as protected_stack makes them) taken from
/// a cache that each thread keeps: what the default constructors of context and
/// generator use, so that making and destroying fibers costs no system call in a
/// steady state. A stack given back goes to the cache of the thread that gives it
/// back (any thread: a stack is not tied to the thread that made it), unless that
/// cache already holds `thread_cache_limit` stacks, in which case it is unmapped;
/// a thread's cache is unmapped when the thread exits. A cached stack keeps the
/// pages its last fiber touched. No lock, no atomic operation: the cache is the
/// calling thread's alone.
class cached_stack {
 public:
  /// Stacks one thread keeps at most, of every size together.
  static constexpr std::size_t thread_cache_limit = 16;

  explicit cached_stack(std::size_t size = default_stack_size) : source_(size) {}
  /// Throws stack_allocation_error (a std::bad_alloc) naming the size on failure.
  stack_memory allocate() const;
  void deallocate(stack_memory stack) const noexcept;
  std::size_t size() const noexcept { return source_.size(); }
  /// Stacks the calling thread's cache holds now, of every size.
  static std::size_t thread_cached() noexcept;

 private:
  protected_stack source_;
};

namespace detail {
class stack_pool;
}

/// Protected stacks of one size, kept after their fiber ends for the next fiber
/// instead of being unmapped: no system call on the common path. At most
/// `max_cached` free stacks are kept; beyond that they are unmapped. Copies share
/// one pool, which is safe to use from several threads and lives as long as its
/// last copy (or last fiber using it).
class pooled_stack {
 public:
  explicit pooled_stack(std::size_t size = default_stack_size, std::size_t max_cached = 256);
  stack_memory allocate() const;
  void deallocate(stack_memory stack) const noexcept;
  std::size_t size() const noexcept;
  /// Free stacks held now, for reuse.
  std::size_t cached() const;

 private:
  std::shared_ptr<detail::stack_pool> pool_;
};

/// Caller-supplied memory: `size` bytes at `pointer`, used as one fiber's stack.
/// There is no guard page; the memory must outlive the fiber and serve one fiber
/// at a time. allocate() throws fiber::error if the range is null or smaller than
/// min_stack_size.
struct stack_view {
  void* pointer = nullptr;
  std::size_t size = 0;

  stack_memory allocate() const;
  void deallocate(stack_memory) const noexcept {}
};

}  // namespace fiber
