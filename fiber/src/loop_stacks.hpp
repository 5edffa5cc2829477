// The stacks of an event loop's fibers: a pool per stack size, the guard-page
// policy (event_loop.hpp, "Stacks"), and the allocator a loop fiber's context is
// made with.
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fiber/event_loop.hpp"
#include "fiber/stack.hpp"
#include "guarded_stack.hpp"
#include "registry.hpp"

#if defined(_WIN32)
#  include <windows.h>
#else
#  include <sys/mman.h>
#endif

namespace fiber::detail {

// An unguarded stack's lowest canary_bytes hold canary_value in every word: a
// frame that runs past the bottom of the stack writes there (a call writes its
// return address at least every frame), and the loop checks the region whenever
// the fiber switches out or ends (event_loop.cpp).
constexpr std::uintptr_t canary_value = static_cast<std::uintptr_t>(0x5afe5afe5afe5afeULL);
constexpr std::size_t canary_words = 32;
constexpr std::size_t canary_bytes = canary_words * sizeof(std::uintptr_t);

inline void set_canary(void* base) noexcept {
  auto* w = static_cast<std::uintptr_t*>(base);
  for (std::size_t i = 0; i < canary_words; ++i) w[i] = canary_value;
}
inline bool canary_intact(const std::uintptr_t* w) noexcept {
  std::uintptr_t diff = 0;
  for (std::size_t i = 0; i < canary_words; ++i) diff |= w[i] ^ canary_value;
  return diff == 0;
}

// ---- stacks -------------------------------------------------------------------

// The loop's stack pool (the policy is in event_loop.hpp). Guarded stacks are one
// mapping each, with a PROT_NONE page below; unguarded ones are carved from
// slabs and carry a canary region at their lowest bytes.
//
// Memory after a burst. A free stack keeps the pages its last fiber touched
// while it is hot. The free stacks of each size and kind (guarded, unguarded)
// stay hot up to hot_limit() of them (32 of 64 KiB), or up to as many as there
// are stacks alive if that is more (a loop whose load goes up and down then
// does not give back pages it takes again soon after: skynet, bench/, holds
// 10^4 stacks with 10^3 free at a time). Past that, once the excess has waited
// cool_interval (50 ms: a load that comes back soon keeps its pages), the
// stacks idle longest (reuse is LIFO) turn cold: their pages go back (madvise
// MADV_DONTNEED; Windows: MEM_RESET, then out of the working set) and they stay
// mapped, for reuse once no hot one is left; a cold guarded stack stays in its
// list, below the hot ones, a cold unguarded one is a bit in its slab's bitmap.
// Pages go back in batches (`pending_`: batch_ranges ranges, address-adjacent
// ones merged into one call): each call costs a TLB flush, tens of
// microseconds in a VM, and a call per stack made the end of a burst of 10^5
// tasks take seconds. Free guarded stacks past max_cached_guarded, and past
// as many as are alive, are unmapped in the same batches. And as a burst ends, the C heap gives back what the
// burst's task blocks freed (trim_heap()). So a loop that ran 10^5 tasks at
// once keeps a few MiB afterwards, not the 450 MB they touched. Freeing and
// reusing stacks makes no system call while no more than hot_limit() of a
// kind are free, or no more than are alive; a cold stack reused costs the page
// faults of a new one.
class loop_stacks {
 public:
  loop_stacks(std::size_t default_size, std::size_t guarded_budget)
      : default_size_(round(default_size)), guarded_budget_(guarded_budget) {}
  ~loop_stacks() {
    for (std::size_t i = 0; i < pending_count_; ++i)
      if (pending_[i].unmap) apply(pending_[i]);
    unmap_all_guarded();
    for (auto& sl : slabs_) unmap(sl.base, sl.bytes);
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
    if (p.guarded.hot() != 0) {
      guarded = true;
      ++guarded_live;
      return p.guarded.pop();
    }
    if (p.guarded.first != 0) {  // cold guarded stacks (and no hot one)
      flush();  // (the pages of one may still be in the batch)
      guarded = true;
      ++guarded_live;
      --p.guarded.first;
      return p.guarded.pop();
    }
    if (p.plain.hot() != 0) {
      guarded = false;
      ++plain_live;
      stack_memory s = p.plain.pop();
      set_canary(s);
      return s;
    }
    if (p.plain_cold != 0) {
      stack_memory s = take_cold(p, size);
      guarded = false;
      ++plain_live;
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
    if (pending_count_ != 0) [[unlikely]]
      flush();  // the new stack's canary page may be the last one's top, in the batch
    stack_memory s = carve(p, size);
    ++plain_live;
    set_canary(s);
    return s;
  }

  // The loop goes: the stacks freed from now on are unmapped with the pool, so
  // none is given back first (the teardown of a runtime spent 0.1 s cooling them).
  bool closing = false;

  void deallocate(stack_memory s, bool guarded) noexcept {
    pool& p = find(s.size);
    if (closing) [[unlikely]] {
      if (guarded) {
        --guarded_live;
        if (p.guarded.push(s)) return;
        flush();
        add_pending(guarded_range(s), true);
      } else {
        --plain_live;  // (its slab is unmapped whole)
      }
      return;
    }
    if (guarded) {
      --guarded_live;
      if (!p.guarded.push(s)) [[unlikely]] {  // no memory to list it
        flush();  // (its pages may be in the batch)
        add_pending(guarded_range(s), true);  // unmapped
        return;
      }
      if (p.guarded.hot() > p.hot_max && p.guarded.hot() > guarded_live + plain_live) [[unlikely]]
        note_excess(p);
      else if (p.guarded.stacks.size() > cache_cap() && !p.over_cap) [[unlikely]]
        note_over_cap(p, std::chrono::steady_clock::now());
    } else {
      --plain_live;
      // Slab memory is reused, never unmapped singly.
      if (!p.plain.push(s)) [[unlikely]] {
        cool_plain(p, s);  // no memory to list it: it waits in its slab's bitmap
        return;
      }
      if (p.plain.hot() > p.hot_max && p.plain.hot() > guarded_live + plain_live) [[unlikely]]
        note_excess(p);
    }
  }

  // An excess of free hot stacks waits cool_interval before it turns cold, and
  // free guarded stacks past the cache's cap wait unmap_interval before they are
  // unmapped (note_excess()). The loop calls tick() at its scheduler's passes,
  // and sleeps no longer than ms_to_tick() (-1: nothing waits).
  static constexpr auto cool_interval = std::chrono::milliseconds(50);
  static constexpr auto unmap_interval = std::chrono::milliseconds(1000);
  int ms_to_tick() const noexcept {
    if (waiting_ == 0) return -1;
    auto due = std::chrono::steady_clock::time_point::max();
    for (auto& [size, p] : pools_) {
      if (p.excess && p.excess_since + cool_interval < due) due = p.excess_since + cool_interval;
      if (p.over_cap && p.over_cap_since + unmap_interval < due) due = p.over_cap_since + unmap_interval;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(due - std::chrono::steady_clock::now()).count();
    return left < 0 ? 0 : static_cast<int>(left);
  }
  // Gives back what has waited long enough.
  void tick() noexcept {
    if (waiting_ == 0) return;
    const auto now = std::chrono::steady_clock::now();
    for (auto& [size, p] : pools_) {
      if (p.excess && now - p.excess_since >= cool_interval) cool_now(p, now);
      if (p.over_cap && now - p.over_cap_since >= unmap_interval) trim_cache(p);
    }
  }

  // Free stacks of `size` of a kind kept hot while few stacks are alive: as
  // many as make resident_free_bytes of stack, at least min_resident_free.
  static std::size_t hot_limit(std::size_t size) noexcept {
    const std::size_t n = resident_free_bytes / size;
    return n > min_resident_free ? n : min_resident_free;
  }

 private:
  // Free stacks of a kind, the last freed at the back (reused first): the hot
  // ones are stacks[first, size()). Below `first`, guarded stacks are cold
  // (their pages went back, or are in the batch); unguarded ones are dead
  // entries (a cold unguarded stack is a bit in its slab's bitmap), dropped
  // once they are half the list.
  struct free_list {
    std::vector<stack_memory> stacks;
    std::size_t first = 0;

    std::size_t hot() const noexcept { return stacks.size() - first; }
    stack_memory pop() noexcept {
      stack_memory s = stacks.back();
      stacks.pop_back();
      return s;
    }
    bool push(stack_memory s) noexcept {
      try {
        stacks.push_back(s);
        return true;
      } catch (...) {  // no memory for a longer list
        return false;
      }
    }
  };
  struct pool {
    std::size_t hot_max = 0;     // hot_limit() of the pool's size
    bool excess = false;         // more free stacks hot than kept, since excess_since
    std::chrono::steady_clock::time_point excess_since{};
    bool over_cap = false;       // more guarded stacks free than cache_cap(), since over_cap_since
    std::chrono::steady_clock::time_point over_cap_since{};
    free_list guarded;           // cold ones included
    free_list plain;             // hot unguarded stacks
    std::size_t plain_cold = 0;  // cold unguarded stacks (in the slabs' bitmaps)
    char* slab_next = nullptr;   // unused part of the current slab
    char* slab_end = nullptr;
  };
  // A mapping that unguarded stacks of one size are carved from (carve()), and
  // which of them are cold: bit i for the i-th stack of the slab. (In the slab's
  // entry, not a heap block of its own: blocks allocated during a burst and kept
  // after it each keep a page of the C heap resident.)
  static constexpr std::size_t slab_bytes = 4u << 20;
  static constexpr std::size_t slab_words = slab_bytes / min_stack_size / 64 + 1;
  struct slab {
    char* base;
    std::size_t bytes;
    std::size_t stack_size;
    std::uint64_t cold[slab_words];
  };
  // Memory to give back: pages to discard, or a guarded stack to unmap.
  struct range {
    char* lo;
    char* hi;
    bool unmap;
  };

  // The pool of `size`; the last one used is remembered (fibers of one size are
  // the common case).
  pool& find(std::size_t size) {
    if (size != last_size_ || !last_pool_) {
      auto [it, made] = pools_.try_emplace(size);
      if (made) {
        pool& p = it->second;
        p.hot_max = hot_limit(size);
      }
      last_pool_ = &it->second;  // unordered_map: references stay valid
      last_size_ = size;
    }
    return *last_pool_;
  }
  static constexpr std::size_t max_cached_guarded = 1024;
  static constexpr std::size_t resident_free_bytes = 2u << 20;
  static constexpr std::size_t min_resident_free = 16;
  // (The batch is sorted on whichever fiber's stack frees or takes a stack: 64
  // ranges keep that shallow. 4096 made the sort's recursion overflow a 48 KiB
  // stack under ASan.)
  static constexpr std::size_t batch_ranges = 64;
  static constexpr std::size_t trim_min = 256;

  std::size_t cached_guarded() const noexcept {
    std::size_t n = 0;
    for (auto& [size, p] : pools_) n += p.guarded.stacks.size();
    return n;
  }

  // ---- giving memory back ----

  // A guarded stack's mapping: its guard page and the stack (Windows: the stack
  // only, for MEM_RESET; VirtualFree finds the allocation from its base).
  static range guarded_range(stack_memory s) noexcept {
    char* const base = static_cast<char*>(s.base);
#if defined(_WIN32)
    return {base, base + s.size, false};
#else
    return {base - page_size(), base + s.size, false};
#endif
  }
  void add_pending(range r, bool unmap) noexcept {
    if (pending_count_ == batch_ranges) flush();
    r.unmap = unmap;
    pending_[pending_count_++] = r;
    ++given_back_;
  }
  // More stacks of pool `p` are free and hot than hot_max and than the stacks
  // alive (the second bound keeps a loop whose load goes up and down from
  // giving pages back that it takes again soon after: skynet, bench/, holds
  // 10^4 stacks with 10^3 free at a time): the ones idle longest turn cold.
  //
  // Not at once, though: a worker of a runtime that runs the subtrees other
  // workers hand it (skynet on 2 workers, bench/) goes from thousands of stacks
  // alive to none and back every few hundred microseconds; cooling each time
  // gave back pages it faulted in again at once, and each madvise, with a second
  // thread running, flushes that CPU's TLB too (an IPI): 40% of the run. So an
  // excess waits until it is cool_interval old (checked as stacks are freed, and
  // by tick(), which the loop calls at its scheduler's passes and at least every
  // cool_interval while it sleeps); then the excess of that moment turns cold.
  void note_excess(pool& p) noexcept {
    const auto now = std::chrono::steady_clock::now();
    if (!p.excess) {
      p.excess = true;
      p.excess_since = now;
      ++waiting_;
    } else if (now - p.excess_since >= cool_interval) {
      cool_now(p, now);
    }
    if (p.over_cap && now - p.over_cap_since >= unmap_interval) trim_cache(p);
  }
  void cool_now(pool& p, std::chrono::steady_clock::time_point now) noexcept {
    if (p.excess) {
      p.excess = false;
      --waiting_;
    }
    cool_excess(p);
    if (p.guarded.stacks.size() > cache_cap() && !p.over_cap) note_over_cap(p, now);
  }
  // Free guarded stacks are kept mapped (cold ones too) up to max_cached_guarded,
  // or as many as are alive if that is more: each is two of the process's
  // vm.max_map_count mappings. Past that, once the excess has lasted
  // unmap_interval (a worker whose load comes back keeps its mappings: unmapping
  // and mapping them again cost skynet on 2 workers 20% of its time), the idle
  // longest (the cold ones first) are unmapped.
  std::size_t cache_cap() const noexcept {
    const std::size_t live = guarded_live + plain_live;
    return max_cached_guarded > live ? max_cached_guarded : live;
  }
  void note_over_cap(pool& p, std::chrono::steady_clock::time_point now) noexcept {
    p.over_cap = true;
    p.over_cap_since = now;
    ++waiting_;
  }
  [[gnu::noinline]] void trim_cache(pool& p) noexcept {
    p.over_cap = false;
    --waiting_;
    free_list& g = p.guarded;
    const std::size_t cap = cache_cap();
    if (g.stacks.size() <= cap) return;
    const std::size_t drop = g.stacks.size() - cap;
    flush();  // (the pages of some may be in the batch, to discard)
    for (std::size_t i = 0; i < drop; ++i) add_pending(guarded_range(g.stacks[i]), true);
    g.stacks.erase(g.stacks.begin(), g.stacks.begin() + static_cast<std::ptrdiff_t>(drop));
    g.first = g.first > drop ? g.first - drop : 0;
    flush();
  }
  [[gnu::noinline]] void cool_excess(pool& p) noexcept {
    const std::size_t live = guarded_live + plain_live;
    const std::size_t keep = p.hot_max > live ? p.hot_max : live;
    free_list& g = p.guarded;
    while (g.hot() > keep) add_pending(guarded_range(g.stacks[g.first++]), false);
    free_list& l = p.plain;
    while (l.hot() > keep) cool_plain(p, l.stacks[l.first++]);
    if (l.first >= 64 && l.first * 2 >= l.stacks.size()) {
      l.stacks.erase(l.stacks.begin(), l.stacks.begin() + static_cast<std::ptrdiff_t>(l.first));
      l.first = 0;
      if (l.stacks.capacity() > 4 * (keep + 64)) {  // after a burst: the list's memory goes too
        try {
          l.stacks.shrink_to_fit();
        } catch (...) {
        }
      }
    }
    // Few stacks left alive: the burst is over, or nearly; what the batch holds
    // goes now rather than when the next burst ends.
    if (live < p.hot_max) flush();
  }
  // A free unguarded stack of pool `p` turns cold: its slab marks it, and its
  // pages go in the batch. Its lowest and highest pages are shared (carve()):
  // the lowest holds the top of the stack below, the highest the canary region
  // of the stack above. A shared page goes only if the neighbour is cold too,
  // or is not there (below the slab's first stack; above the last one carved): a
  // neighbour live, or free but hot, keeps it, and gives it back when it turns
  // cold in turn. (The neighbours' state is the slab's bitmap, not their memory:
  // reading a page that went back maps a new one, on kernels that do not map
  // the shared zero page for reads.) A stack carved or reused later writes its
  // canary region again (allocate()).
  void cool_plain(pool& p, stack_memory s) noexcept {
    const std::size_t page = page_size();
    char* const base = static_cast<char*>(s.base);
    slab& sl = slab_of(base);
    const std::size_t i = index_in(sl, s);
    sl.cold[i / 64] |= std::uint64_t{1} << (i % 64);
    ++p.plain_cold;
    char* lo = base + canary_bytes;                  // its first page of its own
    char* hi = base + s.size + canary_bytes - page;  // its top page: shared with the stack above
    char* const end = sl.base + sl.bytes;
    const bool above = base + 2 * s.size <= end && (p.slab_end != end || base + s.size < p.slab_next);
    if (!above || is_cold(sl, i + 1)) hi += page;
    if (i == 0 || is_cold(sl, i - 1)) lo -= page;
    add_pending({lo, hi, false}, false);
  }
  // A cold unguarded stack of pool `p` (there is one), taken out of its slab's
  // bitmap. The search starts at the slab the last one came from.
  stack_memory take_cold(pool& p, std::size_t size) noexcept {
    flush();  // its pages, or those it shares with a neighbour, may be in the batch
    const std::size_t n = slabs_.size();
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t j = (cold_hint_ + k) % n;
      slab& sl = slabs_[j];
      if (sl.stack_size != size) continue;
      for (std::size_t w = 0; w < slab_words; ++w) {
        if (sl.cold[w] == 0) continue;
        const std::size_t i = w * 64 + static_cast<std::size_t>(count_trailing_zeros(sl.cold[w]));
        sl.cold[w] &= sl.cold[w] - 1;
        --p.plain_cold;
        cold_hint_ = j;
        return {sl.base + page_size() - canary_bytes + i * size, size};
      }
    }
    std::abort();  // p.plain_cold said there was one
  }
  static int count_trailing_zeros(std::uint64_t x) noexcept {
#if defined(__GNUC__)
    return __builtin_ctzll(x);
#else
    int n = 0;
    while (!(x & 1)) {
      x >>= 1;
      ++n;
    }
    return n;
#endif
  }
  static bool is_cold(const slab& sl, std::size_t i) noexcept { return (sl.cold[i / 64] >> (i % 64)) & 1; }
  static std::size_t index_in(const slab& sl, stack_memory s) noexcept {
    return static_cast<std::size_t>(static_cast<char*>(s.base) - (sl.base + page_size() - canary_bytes)) / s.size;
  }
  static bool below(const char* p, const slab& sl) noexcept { return p < sl.base; }
  // The slab that holds `p` (slabs_ is sorted by address).
  slab& slab_of(const char* p) noexcept {
    auto it = std::upper_bound(slabs_.begin(), slabs_.end(), p, below);
    return *(it - 1);
  }
  // Gives back what the batch holds: the ranges in address order, adjacent ones
  // of the same kind in one call (Windows: one call each).
  [[gnu::noinline]] void flush() noexcept {
    const std::size_t n = pending_count_;
    pending_count_ = 0;
    if (n == 0) return;
#if defined(_WIN32)
    for (std::size_t i = 0; i < n; ++i) apply(pending_[i]);
#else
    std::sort(pending_, pending_ + n, [](const range& a, const range& b) { return a.lo < b.lo; });
    range run = pending_[0];
    for (std::size_t i = 1; i < n; ++i) {
      const range& r = pending_[i];
      if (r.unmap == run.unmap && r.lo <= run.hi) {
        if (r.hi > run.hi) run.hi = r.hi;
      } else {
        apply(run);
        run = r;
      }
    }
    apply(run);
#endif
    if (given_back_ >= trim_min && given_back_ >= guarded_live + plain_live) trim_heap();
  }
  // Called from flush() when the stacks given back since the last trim (at least
  // trim_min) outnumber those alive: a burst is ending. Its tasks' blocks
  // (fiber_control, malloc'd) left free chunks all over the C heap, between
  // blocks still in use (the fiber registry's chunks, whatever else was
  // allocated during the burst), and glibc gives back by itself only the top of
  // its heap (10^5 tasks left 31 MB of 35 MB free and resident); malloc_trim
  // gives back every free page (madvise). 2-10 ms for those 35 MB; as a burst
  // ends it runs about once each time the stacks alive halve.
  void trim_heap() noexcept {
    given_back_ = 0;
    give_back_free_memory();  // (registry.hpp)
  }
  static void apply(const range& r) noexcept {
    if (r.hi <= r.lo) return;
    const std::size_t bytes = static_cast<std::size_t>(r.hi - r.lo);
#if defined(_WIN32)
    if (r.unmap) {
      unmap(r.lo - page_size(), bytes + page_size());
    } else if (VirtualAlloc(r.lo, bytes, MEM_RESET, PAGE_READWRITE)) {
      // Pages not locked leave the working set (the call then fails: not locked).
      VirtualUnlock(r.lo, bytes);
    }
#else
    if (r.unmap)
      unmap(r.lo, bytes);
    else
      madvise(r.lo, bytes, MADV_DONTNEED);
#endif
  }

  // ---- getting memory ----

  // Size classes: a size asked for is rounded up to a power of two of at least a
  // page, so that tasks asking for sizes close to one another share a pool and
  // reuse each other's stacks (rather than one pool per page count). The rounding
  // costs address space only: a stack's untouched pages take no memory.
  static std::size_t round(std::size_t size) {
    if (size > SIZE_MAX / 2 + 1) throw stack_allocation_error(size, ENOMEM);  // (no power of two holds it)
    return std::bit_ceil(std::max({size, min_stack_size, page_size()}));
  }
  static void set_canary(stack_memory s) noexcept { detail::set_canary(s.base); }

  static stack_memory map_guarded(std::size_t size) { return map_guarded_stack(size); }  // (guarded_stack.hpp)
  // The cached guarded stacks, as the loop goes. Mappings made one after another
  // usually lie end to end: one munmap per run of adjacent ones (10^4 calls took
  // 0.2 s with a second thread alive, each a TLB flush on its CPU too).
  void unmap_all_guarded() noexcept {
#if defined(_WIN32)
    for (auto& [size, p] : pools_)
      for (auto& s : p.guarded.stacks) unmap_guarded(s);
#else
    std::vector<range> all;
    try {
      for (auto& [size, p] : pools_)
        for (auto& s : p.guarded.stacks) all.push_back(guarded_range(s));
    } catch (...) {  // no memory to sort them: one call each
      for (auto& [size, p] : pools_)
        for (auto& s : p.guarded.stacks) unmap_guarded(s);
      return;
    }
    std::sort(all.begin(), all.end(), [](const range& a, const range& b) { return a.lo < b.lo; });
    for (std::size_t i = 0; i < all.size();) {
      char* const lo = all[i].lo;
      char* hi = all[i].hi;
      while (++i < all.size() && all[i].lo == hi) hi = all[i].hi;
      unmap(lo, static_cast<std::size_t>(hi - lo));
    }
#endif
  }
  static void unmap_guarded(stack_memory s) noexcept { unmap_guarded_stack(s); }
  static void unmap(void* p, std::size_t bytes) noexcept {
    forget_stack_shadow(p, bytes);
#if defined(_WIN32)
    (void)bytes;
    VirtualFree(p, 0, MEM_RELEASE);
#else
    munmap(p, bytes);
#endif
  }
  // Stacks lie end to end in a slab, each starting canary_bytes below a page
  // boundary: a stack's canary region ends the page that holds the top of
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
      if (m == MAP_FAILED) throw stack_allocation_error(size, errno, "mmap", bytes);
#endif
      char* const b = static_cast<char*>(m);
      try {
        const auto at = std::upper_bound(slabs_.begin(), slabs_.end(), b, below);
        slabs_.insert(at, slab{b, bytes, size, {}});  // sorted by address: slab_of()
      } catch (...) {
        unmap(m, bytes);
        throw;
      }
      p.slab_next = b + page_size() - canary_bytes;
      p.slab_end = b + bytes;
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
  std::vector<slab> slabs_;  // by address
  range pending_[batch_ranges];
  std::size_t pending_count_ = 0;
  std::size_t given_back_ = 0;  // stacks cooled or unmapped since the last trim_heap()
  std::size_t cold_hint_ = 0;   // the slab take_cold() found one in last
  std::size_t waiting_ = 0;  // pools' excesses and caches over their cap that wait (note_excess())
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
