// Copied stacks (stack_kind::copied, event_loop.hpp): the stack a loop shares
// among its copied-stack fibers, and the copies of their frames.
//
// Each copied-stack fiber has a *home* on the shared stack, the address below
// which its frames live: the top of the shared stack; or, for a fiber spawned
// by a copied-stack fiber of the loop, just below its spawner's frames at the
// spawn (when at least half of the shared stack lies below them), so that the
// spawner's locals, which its child may use by reference (a captured [&]),
// keep their addresses while the child runs.
//
// A fiber that runs may grow down to the bottom of the shared stack: before it
// runs, every other fiber's bytes below its home are copied away (`take()`):
// each fiber keeps the bytes of its frames that lie below the *split* in a
// buffer of their size, those above it on the shared stack. A fiber that parks
// leaves its bytes where they are (a switch to a fiber of its own stack, or to
// the scheduler, copies nothing); they are copied away only when another
// copied-stack fiber needs their place, and back, to the addresses they came
// from, before the fiber runs again, so that every pointer inside them (frame
// links, the switch frame, the record at the top) holds again. Copying never
// runs on the shared stack: the loop switches to a small context of its own
// (the *swapper*, event_loop.cpp) to run a copied-stack fiber whose bytes are
// not all in place, or that needs another's place.
//
// What the library reaches of a parked fiber while it is parked (its waiters,
// the values a channel hands over) lives off the stack of a copied-stack fiber
// (detail::park_local, channel.hpp's boxes). Its record (the registry's entry,
// for fiber::dump() and debuggers) moves with its bytes: the registry is told
// where it is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <new>
#include <vector>

#include "fiber/config.h"
#include "fiber/event_loop.hpp"
#include "../guarded_stack.hpp"
#include "../stack_copy.hpp"

namespace fiber::detail {

// The buffers of the copied-away frames of one loop's fibers (used on its thread
// only): size classes of 16 bytes up to 8 KiB, carved from 2 MiB chunks that
// the kernel may back with huge pages (MADV_HUGEPAGE: a million parked fibers
// take a few hundred page faults, not a few hundred thousand); larger ones
// from the heap. What is given back is kept for the next, until the loop goes.
class frame_arena {
 public:
  frame_arena() = default;
  ~frame_arena();
  frame_arena(const frame_arena&) = delete;
  frame_arena& operator=(const frame_arena&) = delete;

  // The capacity a buffer of `n` bytes gets.
  static std::size_t capacity(std::size_t n) noexcept {
    return n <= largest ? (n + granule - 1) & ~(granule - 1) : n;
  }
  // A buffer of capacity(n) bytes, or nullptr.
  unsigned char* allocate(std::size_t n) noexcept;
  void deallocate(unsigned char* p, std::size_t capacity) noexcept;

 private:
  static constexpr std::size_t granule = 16, largest = 8192, chunk_bytes = std::size_t{2} << 20;
  struct free_block {
    free_block* next;
  };
  free_block* free_[largest / granule] = {};
  unsigned char* next_ = nullptr;  // the current chunk's unused bytes
  unsigned char* end_ = nullptr;
  std::vector<void*> chunks_;
};

// The environment variable FIBER_STACK ("own" or "copied"; event_loop::options::stack),
// read once; anything else there ends the process with a message.
stack_kind stack_kind_from_environment() noexcept;

class copied_stacks {
 public:
  explicit copied_stacks(std::size_t size) noexcept : size_(size) {}
  ~copied_stacks() {
    if (mem_.base) unmap_guarded_stack(mem_);
  }
  copied_stacks(const copied_stacks&) = delete;
  copied_stacks& operator=(const copied_stacks&) = delete;

  std::size_t size() const noexcept { return size_; }
  // Maps the shared stack (a guarded mapping); throws stack_allocation_error.
  void map() {
    if (!mem_.base) mem_ = map_guarded_stack(size_);
  }

  // The home of a fiber spawned now by `spawner` (the running fiber, or
  // nullptr): below the spawner's frames if it is a copied-stack fiber of this
  // loop with room below it (`sp`: an address in the spawn's frame), else 0
  // (the top, once the stack is mapped).
  std::uintptr_t home_for(const fiber_control* spawner, const void* sp) const noexcept {
    if (!spawner || !spawner->copied || !mem_.base) return 0;
    const auto base = reinterpret_cast<std::uintptr_t>(mem_.base);
    const std::uintptr_t at = (reinterpret_cast<std::uintptr_t>(sp) - spawn_gap) & ~std::uintptr_t{63};
    return at > base + size_ / 2 && at < top() ? at : 0;
  }

  // Whether `f` may run as its bytes are: all of them in place, and no other
  // fiber's below its home. (One below its spawner's frames always goes through
  // take(), which puts its spawners' frames in place too.)
  bool ready_to_run(const fiber_control* f) const noexcept {
    if (f->saved_size != 0 || !f->ctx || f->stack_parent) return false;
    for (const fiber_control* g : residents_)
      if (g != f && first_in_place(g) < home(f)) return false;
    return true;
  }

  // Makes `f` ready to run, with the frames of its spawners (the chain of
  // fibers below whose frames it and they live) in place above its home: the
  // bytes of every other fiber there, and of each spawner below its child's
  // home, are copied away; then the spawners' and f's own are copied back. A
  // fiber not started yet has no bytes: its context is then made at its home
  // (copied_stack_allocator). Never called on the shared stack.
  void take(fiber_control* f) noexcept {
    chain_.clear();
    chain_.push_back(f);
    for (fiber_control* p = f->stack_parent; p && p->copied && state_of(p) != run_state::ended; p = p->stack_parent)
      chain_.push_back(p);  // (capacity: reserve_chain() before the switch)
    const std::uintptr_t zone = home(chain_.back());
    // Away: the others' bytes below the chain's top; each spawner's below its child's home.
    for (std::size_t i = 0; i < residents_.size();) {
      fiber_control* g = residents_[i];
      const auto at = std::find(chain_.begin(), chain_.end(), g);
      const std::uintptr_t limit = at == chain_.end() ? zone : at == chain_.begin() ? 0 : home(*(at - 1));
      if (first_in_place(g) < limit && save_below(g, limit)) {
        residents_[i] = residents_.back();  // (all of g is away)
        residents_.pop_back();
      } else {
        ++i;
      }
    }
    // (The red zones that frames which never returned left on the shared
    // stack: the bytes coming back, or a fresh context's, carry none.)
    unpoison(reinterpret_cast<std::uintptr_t>(mem_.base), zone - reinterpret_cast<std::uintptr_t>(mem_.base));
    // Back: each spawner's above its child's home, then f's.
    for (std::size_t i = 1; i < chain_.size(); ++i) restore_above(chain_[i], home(chain_[i - 1]));
    if (f->saved_size)
      restore(f);
    else if (!f->ctx)  // (its context is made there next)
      writable(reinterpret_cast<std::uintptr_t>(mem_.base), home(f) - reinterpret_cast<std::uintptr_t>(mem_.base));
  }
  // Room for a chain of `depth` fibers, outside the switch.
  void reserve_chain(std::size_t depth) { chain_.reserve(depth); }

  // f runs (it ended, or is unwound): its buffer goes back.
  void give_back(fiber_control* f) noexcept {
    if (f->saved_bytes) frames_.deallocate(f->saved_bytes, f->saved_capacity);
    f->saved_bytes = nullptr;
    f->saved_capacity = 0;
  }

  // A fiber's context is made at its home (it is resident from then on), or
  // its record is released (it ended, or was unwound: it has no bytes left).
  void hold(fiber_control* f) noexcept {
    f->saved_size = 0;
    residents_.push_back(f);
  }
  void vacate(const fiber_control* f) noexcept {
    for (std::size_t i = 0; i < residents_.size(); ++i)
      if (residents_[i] == f) {
        residents_[i] = residents_.back();
        residents_.pop_back();
        return;
      }
  }
  // The stack a context made at f's home has.
  stack_memory stack_of(const fiber_control* f) const noexcept {
    return {mem_.base, home(f) - reinterpret_cast<std::uintptr_t>(mem_.base)};
  }
  // The swapper (event_loop.cpp): its suspended context, and the fiber it is
  // to run next.
  context swapper;
  fiber_control* target = nullptr;

 private:
  static constexpr std::size_t below_sp = stack_copy::below_sp;
  // Between a spawner's frame and its child's home: what the spawner's calls
  // below the spawn's frame may have left (the spawn returns through them).
  static constexpr std::size_t spawn_gap = 512;

  std::uintptr_t top() const noexcept { return reinterpret_cast<std::uintptr_t>(mem_.top()); }
  std::uintptr_t home(const fiber_control* f) const noexcept { return f->stack_home ? f->stack_home : top(); }
  // The lowest byte of a suspended fiber's frames.
  // A fiber that parked inside a context of its own stack (a fiber_t of the C
  // API, a generator) was suspended there: its bytes on the shared stack go
  // down to where it resumed that context, which nothing records; all of them
  // from the bottom to its home are then taken as its.
  std::uintptr_t low(const fiber_control* f) const noexcept {
    const auto base = reinterpret_cast<std::uintptr_t>(mem_.base);
    const auto sp = reinterpret_cast<std::uintptr_t>(suspended_sp(f->ctx));
    if (sp < base || sp >= home(f)) return base;
    return sp - base < below_sp ? base : sp - below_sp;
  }

  // The lowest byte of a resident fiber's on the shared stack (0 while it runs:
  // it may be anywhere).
  std::uintptr_t first_in_place(const fiber_control* g) const noexcept {
    return g->saved_size ? g->stack_split : g->ctx ? low(g) : 0;
  }

  // Copies g's bytes below `limit` away (g is suspended). True if none of its
  // bytes is left on the shared stack.
  bool save_below(fiber_control* g, std::uintptr_t limit) noexcept {
    const std::uintptr_t lo = low(g);
    const std::uintptr_t from = g->saved_size ? g->stack_split : lo;  // its first byte in place
    std::uintptr_t to = limit < home(g) ? limit : home(g);
    if (from >= to) return false;
    // Its record (at the top of its bytes) moves whole or not at all: the
    // registry's entry must point at all of it.
    const auto rec = reinterpret_cast<std::uintptr_t>(g->record);
    if (rec && to > rec) to = home(g);
    check_nothing_reached(g, from, to);
    const std::size_t n = to - lo;
    if (g->saved_capacity < n) {
      unsigned char* const bytes = frames_.allocate(n);
      if (!bytes) fatal("fiber: out of memory: the frames of a parked copied-stack fiber could not be saved");
      if (g->saved_size) std::memcpy(bytes, g->saved_bytes, g->saved_size);
      if (g->saved_bytes) frames_.deallocate(g->saved_bytes, g->saved_capacity);
      g->saved_bytes = bytes;
      g->saved_capacity = frame_arena::capacity(n);
    }
    unpoison(from, to - from);
    std::memcpy(g->saved_bytes + (from - lo), reinterpret_cast<const void*>(from), to - from);
    g->saved_size = n;
    g->stack_split = to;
    if (rec >= from && rec < to) move_record(g, reinterpret_cast<std::uintptr_t>(g->saved_bytes) - lo);
    return to == home(g);
  }

  // FIBER_CHECKS: what a waker reaches of a parked fiber (its waiters, where
  // they hand a value) must not be among the bytes about to leave their
  // addresses; a primitive that left one on the stack is reported here, before
  // a waker writes into another fiber's frames.
  static void check_nothing_reached([[maybe_unused]] const fiber_control* g, [[maybe_unused]] std::uintptr_t from,
                                    [[maybe_unused]] std::uintptr_t to) noexcept {
#if FIBER_CHECKS
    auto inside = [&](const void* p) {
      const auto a = reinterpret_cast<std::uintptr_t>(p);
      return a >= from && a < to;
    };
    for (std::size_t i = 0; i < g->park_count; ++i) {
      const waiter& w = g->park_waiters[i];
      if (inside(&w) || inside(w.slot))
        fatal("fiber: a parked copied-stack fiber's waiter, or where it is to receive a value, lies on the shared "
              "stack, among the bytes copied away while it is parked: a waker would write into another fiber's "
              "frames (a pointer into a parked copied-stack fiber's frames; spawn_options::stack)");
    }
#endif
  }

  // Copies f's saved bytes above `addr` back (f is suspended).
  void restore_above(fiber_control* f, std::uintptr_t addr) noexcept {
    if (!f->saved_size || f->stack_split <= addr) return;
    const std::uintptr_t split = f->stack_split;
    const std::uintptr_t lo = split - f->saved_size;
    const std::uintptr_t from = addr > lo ? addr : lo;
    const auto buf = reinterpret_cast<std::uintptr_t>(f->saved_bytes);
    writable(from, split - from);
    std::memcpy(reinterpret_cast<void*>(from), f->saved_bytes + (from - lo), split - from);
    const auto rec = reinterpret_cast<std::uintptr_t>(f->record);
    if (rec >= buf + (from - lo) && rec < buf + f->saved_size) move_record(f, lo - buf);
    if (split == home(f)) residents_.push_back(f);
    f->stack_split = from;
    f->saved_size = from - lo;
  }

  void restore(fiber_control* f) noexcept {
    const std::uintptr_t split = f->stack_split;
    const std::uintptr_t lo = split - f->saved_size;
    writable(lo, f->saved_size);
    std::memcpy(reinterpret_cast<void*>(lo), f->saved_bytes, f->saved_size);
    const auto rec = reinterpret_cast<std::uintptr_t>(f->record);
    const auto buf = reinterpret_cast<std::uintptr_t>(f->saved_bytes);
    if (rec >= buf && rec < buf + f->saved_size) move_record(f, lo - buf);
    if (split == home(f)) residents_.push_back(f);
    f->saved_size = 0;
    f->stack_split = 0;
  }

  // f's record moved by `delta` bytes (modulo the word: either way).
  static void move_record(fiber_control* f, std::uintptr_t delta) noexcept {
    f->record = reinterpret_cast<record_base*>(reinterpret_cast<std::uintptr_t>(f->record) + delta);
    registry_relocate(f->record);
  }

  static void writable(std::uintptr_t at, std::size_t n) noexcept { stack_copy::writable(at, n); }
  static void unpoison(std::uintptr_t at, std::size_t n) noexcept { stack_copy::unpoison(at, n); }

  stack_memory mem_{};
  std::size_t size_;
  frame_arena frames_;
  std::vector<fiber_control*> residents_;  // the fibers with bytes on the shared stack
  std::vector<fiber_control*> chain_;      // take()'s: the fiber and its spawners
};

// The stack of a copied-stack fiber's context: the shared one, which the fiber
// holds from then on; released when the fiber ends (or is unwound).
// The context holds a reference to its fiber's block until its record is
// released (by whoever the ending fiber switched to): until then the fiber is
// among the residents, whose blocks take() and ready_to_run() read.
struct copied_stack_allocator {
  copied_stacks* stacks;
  fiber_control* fiber;
  stack_memory allocate() const noexcept {
    stacks->hold(fiber);
    fiber->refs.fetch_add(1, std::memory_order_relaxed);
    return stacks->stack_of(fiber);
  }
  void deallocate(stack_memory s) const noexcept {
    stacks->vacate(fiber);
    // (Its frames that never returned left their red zones there: frames that
    // come later, a resident's deeper calls, must not meet them.)
    forget_stack_shadow(s.base, s.size);
    release(fiber);
  }
};

}  // namespace fiber::detail
