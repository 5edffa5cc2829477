// The timers of one loop: a binary min-heap of parked fibers, ordered by
// (deadline, the order they were added in), so that fibers due at the same
// instant fire in the order they went to sleep. Each fiber knows its slot in the
// heap (fiber_control::timer_slot, npos when it has no timer), so removing the
// timer of a fiber woken early is O(log n). Only the loop's own thread uses it.
#pragma once

#include "fiber/event_loop.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fiber::detail {

class timer_heap {
 public:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  // The fiber due first (the heap must not be empty).
  fiber_control* front() const noexcept { return heap_.front(); }

  // `f` (which has no timer) is due at `when`. Throws std::bad_alloc.
  void add(fiber_control* f, clock::time_point when) {
    f->timer_deadline = when;
    f->timer_seq = seq_++;
    heap_.push_back(f);
    up(heap_.size() - 1);
  }

  // Takes f's timer out, if it has one.
  void remove(fiber_control* f) noexcept {
    const std::size_t i = f->timer_slot;
    if (i == npos) return;
    f->timer_slot = npos;
    fiber_control* last = heap_.back();
    heap_.pop_back();
    if (last == f) return;
    place(i, last);
    if (i > 0 && earlier(last, heap_[(i - 1) / 2]))
      up(i);
    else
      down(i);
  }

 private:
  static bool earlier(const fiber_control* a, const fiber_control* b) noexcept {
    return a->timer_deadline < b->timer_deadline ||
           (a->timer_deadline == b->timer_deadline && a->timer_seq < b->timer_seq);
  }
  void place(std::size_t i, fiber_control* f) noexcept {
    heap_[i] = f;
    f->timer_slot = i;
  }
  void up(std::size_t i) noexcept {
    fiber_control* f = heap_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!earlier(f, heap_[parent])) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, f);
  }
  void down(std::size_t i) noexcept {
    fiber_control* f = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && earlier(heap_[c + 1], heap_[c])) ++c;
      if (!earlier(heap_[c], f)) break;
      place(i, heap_[c]);
      i = c;
    }
    place(i, f);
  }

  std::vector<fiber_control*> heap_;
  std::uint64_t seq_ = 0;
};

}  // namespace fiber::detail
