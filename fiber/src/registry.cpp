// The registry of live fibers, for debugging: tools/gdb/fiber.py, fiber::dump()
// and the stack-overflow handler list fibers from here.
//
// A table of slots, each holding one record_base* (or null), in chunks allocated
// as the table grows and never freed. Making and releasing a fiber takes a slot
// from, and gives it back to, a per-thread cache of free slot numbers, so neither
// makes an atomic read-modify-write or takes a lock in the steady state; the cache
// is refilled from (and spills to) a global free list under a mutex, 64 slots at a
// time. Readers (a debugger with the process stopped, a signal handler about to
// abort, dump()) scan slots [0, high_water) without locking: each slot is written
// with one atomic store, so a reader sees a record or null, never half a pointer.
// Records found while they are being made or released may show stale fields;
// dump() documents that it is a diagnostic, not a synchronised snapshot.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include <bit>

#if defined(__linux__)
#include <pthread.h>
#endif
#if !defined(_WIN32)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if __has_include(<valgrind/valgrind.h>) && !defined(_WIN32)
#include <valgrind/valgrind.h>
#define FIBER_HAVE_VALGRIND 1
#else
#define FIBER_HAVE_VALGRIND 0
#endif

#include "fiber/context.hpp"
#include "per_thread.hpp"
#include "registry.hpp"

namespace fiber::detail {

// overflow.cpp: the stack-overflow handler, armed by each thread's first fiber.
#if defined(__ELF__)
extern constinit thread_local bool overflow_armed [[gnu::tls_model("initial-exec")]];
#else
extern constinit thread_local bool overflow_armed;
#endif
void arm_overflow_handler() noexcept;

namespace {
std::mutex& threads_mutex() {
  static std::mutex* m = new std::mutex;  // never destroyed: threads may outlive statics
  return *m;
}
// Takes an exiting thread off the list.
void unlist(thread_state* t) noexcept {
  std::lock_guard<std::mutex> lock(threads_mutex());
  (t->prev_thread ? t->prev_thread->next_thread : fiber_debug_threads) = t->next_thread;
  if (t->next_thread) t->next_thread->prev_thread = t->prev_thread;
}
}  // namespace

eh_globals_layout first_switch_mark{nullptr, 1};

#if defined(__ELF__)
constinit thread_local thread_state tls_state [[gnu::tls_model("initial-exec")]];

thread_state* this_thread_state() noexcept { return &tls_state; }

namespace {
// Unlists the thread when it exits. ELF TLS stays until every thread_local
// destructor has run.
struct thread_listing {
  thread_state* listed = nullptr;
  ~thread_listing() {
    if (listed) unlist(listed);
  }
};
thread_local thread_listing listing;
}  // namespace
#else
namespace {
// Before a thread's state is freed at its exit: off the list, if its first switch
// listed it.
void unlist_exiting(thread_state& t) noexcept {
  if (t.eh != &first_switch_mark) unlist(&t);
}
}  // namespace

// On the heap, only its address in (emulated) TLS: per_thread.hpp. Should a
// thread_local destructor use fibers after the state was freed, a new one is made
// and freed again at the end of the thread's exit.
thread_state* this_thread_state() noexcept { return &per_thread<thread_state, &unlist_exiting>::get(); }
#endif

eh_globals_layout* first_switch_on_thread(thread_state& t) noexcept {
  {
    std::lock_guard<std::mutex> lock(threads_mutex());
    t.prev_thread = nullptr;
    t.next_thread = fiber_debug_threads;
    if (fiber_debug_threads) fiber_debug_threads->prev_thread = &t;
    fiber_debug_threads = &t;
  }
#if defined(__ELF__)
  listing.listed = &t;
#endif
  return t.eh = eh_state::globals();
}

bool is_running(const record_base* r) noexcept {
  for (const thread_state* t = fiber_debug_threads; t; t = t->next_thread)
    if (t->running == r) return true;
  return false;
}

#if FIBER_SANITIZE
void thread_stack_bounds(thread_state& t) noexcept {
#if defined(__linux__)
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    void* addr = nullptr;
    std::size_t size = 0;
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    t.stack_bottom = addr;
    t.stack_size = size;
    return;
  }
#endif
  t.stack_bottom = nullptr;
  t.stack_size = 0;
}
#endif

namespace {

constexpr std::uint32_t batch = 64;
constexpr std::size_t chunk_bytes = registry_chunk_slots * sizeof(std::atomic<record_base*>);

// A chunk of null slots. Mapped on its own where pages can be given back
// (give_back_free_memory); never freed: readers scan without a lock.
std::atomic<record_base*>* new_chunk() noexcept {
#if !defined(_WIN32)
  void* p = ::mmap(nullptr, chunk_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  return static_cast<std::atomic<record_base*>*>(p);  // zero pages: null pointers
#else
  auto* c = new (std::nothrow) std::atomic<record_base*>[registry_chunk_slots];
  if (c)
    for (std::uint32_t i = 0; i < registry_chunk_slots; ++i) c[i].store(nullptr, std::memory_order_relaxed);
  return c;
#endif
}

struct global_registry {
  std::mutex mutex;
  // The slots given back and in no thread's cache: bit s % 64 of free_bits[s / 64].
  // A bitmap, not a list: after a burst of 10^6 fibers it holds 122 KB, not 4 MB.
  std::vector<std::uint64_t> free_bits;
  std::size_t free_count = 0;
  std::size_t first_word = 0;  // no word below it has a bit set
  std::uint64_t next_id = 1;

  std::uint32_t take() noexcept {
    while (free_bits[first_word] == 0) ++first_word;
    std::uint64_t& w = free_bits[first_word];
    const auto bit = static_cast<std::uint32_t>(std::countr_zero(w));
    w &= w - 1;
    --free_count;
    return static_cast<std::uint32_t>(first_word) * 64 + bit;
  }
  void give(std::uint32_t slot) {
    const std::size_t word = slot / 64;
    if (word >= free_bits.size()) free_bits.resize(word + 1);  // may throw: the slot is then lost
    free_bits[word] |= std::uint64_t{1} << (slot % 64);
    ++free_count;
    if (word < first_word) first_word = word;
  }
  // Whether every slot of `chunk` is free here.
  bool chunk_free(std::uint32_t chunk) const noexcept {
    const std::size_t words = registry_chunk_slots / 64;
    if ((chunk + 1) * words > free_bits.size()) return false;
    for (std::size_t i = chunk * words; i < (chunk + 1) * words; ++i)
      if (free_bits[i] != ~std::uint64_t{0}) return false;
    return true;
  }
};

global_registry& global() {
  static global_registry* g = new global_registry;  // never destroyed: fibers may outlive statics
  return *g;
}

// The slot's address, allocating its chunk if needed (under the global mutex).
std::atomic<record_base*>* slot_address(std::uint32_t slot) noexcept {
  return &fiber_debug_registry.chunks[slot / registry_chunk_slots][slot % registry_chunk_slots];
}

// Reserves `count` more slots and ids for this thread. Returns false if the table
// is full or a chunk cannot be allocated.
struct thread_cache {
  std::uint32_t slots[2 * batch];
  std::uint32_t count = 0;
  std::uint64_t next_id = 0;
  std::uint64_t end_id = 0;

  bool refill() noexcept {
    global_registry& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    while (count < batch && g.free_count > 0) slots[count++] = g.take();
    while (count < batch) {
      const std::uint32_t hw = fiber_debug_registry.high_water.load(std::memory_order_relaxed);
      if (hw >= registry_max_chunks * registry_chunk_slots) break;
      auto& chunk = fiber_debug_registry.chunks[hw / registry_chunk_slots];
      if (!chunk) {
        auto* c = new_chunk();
        if (!c) break;
        chunk = c;
      }
      slots[count++] = hw;
      fiber_debug_registry.high_water.store(hw + 1, std::memory_order_release);
    }
    return count > 0;
  }
  void spill(std::uint32_t keep) noexcept {
    global_registry& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    try {
      while (count > keep) {
        g.give(slots[count - 1]);
        --count;
      }
    } catch (...) {
      // Lost slots are only unused table entries.
      count = keep;
    }
  }
  std::uint64_t take_id() noexcept {
    if (next_id == end_id) {
      global_registry& g = global();
      std::lock_guard<std::mutex> lock(g.mutex);
      next_id = g.next_id;
      g.next_id += batch;
      end_id = next_id + batch;
    }
    return next_id++;
  }
  ~thread_cache() {
    if (count) spill(0);
  }
};

// (Emulated TLS, on Windows, may free a plain thread_local before its destructor
// runs: the spill then gave garbage slots, or slots twice: per_thread.hpp.)
FIBER_PER_THREAD(thread_cache, thread_slots)

}  // namespace

void give_back_free_memory() noexcept {
#if !defined(_WIN32)
  {
    // The chunks whose every slot is free: their pages go back and read as zero,
    // null slots, to a reader that scans them meanwhile; a slot taken later
    // faults a zero page in again. (Slots in a thread's cache are not free here.)
    global_registry& g = global();
    std::lock_guard<std::mutex> lock(g.mutex);
    const std::uint32_t chunks =
        (fiber_debug_registry.high_water.load(std::memory_order_relaxed) + registry_chunk_slots - 1) /
        registry_chunk_slots;
    for (std::uint32_t c = 0; c < chunks; ++c)
      if (fiber_debug_registry.chunks[c] && g.chunk_free(c))
        ::madvise(static_cast<void*>(fiber_debug_registry.chunks[c]), chunk_bytes, MADV_DONTNEED);
  }
#endif
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

std::uint64_t new_fiber_id() noexcept { return thread_slots().take_id(); }

void registry_add(record_base* r) noexcept {
  if (!overflow_armed) [[unlikely]]
    arm_overflow_handler();
  thread_cache& cache = thread_slots();
  r->id = cache.take_id();
#if FIBER_TSAN
  r->first.tsan_fiber = __tsan_create_fiber(0);
#endif
#if FIBER_HAVE_VALGRIND
  if (RUNNING_ON_VALGRIND)
    r->valgrind_stack = VALGRIND_STACK_REGISTER(r->stack_base, static_cast<char*>(r->stack_base) + r->stack_size);
#endif
  if (cache.count == 0 && !cache.refill()) return;  // not listed
  const std::uint32_t slot = cache.slots[--cache.count];
  r->slot = slot;
  slot_address(slot)->store(r, std::memory_order_release);
}

void registry_remove(record_base* r) noexcept {
#if FIBER_TSAN
  if (r->first.tsan_fiber) __tsan_destroy_fiber(r->first.tsan_fiber);
#endif
#if FIBER_HAVE_VALGRIND
  if (r->valgrind_stack) VALGRIND_STACK_DEREGISTER(r->valgrind_stack);
#endif
  r->state = fiber_state::ended;
  if (r->slot == UINT32_MAX) return;
  thread_cache& cache = thread_slots();
  slot_address(r->slot)->store(nullptr, std::memory_order_release);
  if (cache.count == 2 * batch) cache.spill(batch);
  cache.slots[cache.count++] = r->slot;
  r->slot = UINT32_MAX;
}

void registry_relocate(record_base* r) noexcept {
  if (r->slot != UINT32_MAX) slot_address(r->slot)->store(r, std::memory_order_release);
}

}  // namespace fiber::detail

// Outside any namespace, with C linkage: the name debuggers look up.
extern "C" {
fiber_debug_registry_t fiber_debug_registry = {};
fiber::detail::thread_state* fiber_debug_threads = nullptr;
}

#include <string>

#include "fiber/debug.hpp"
#include "fiber/error.hpp"

namespace fiber::this_fiber {

std::uint64_t id() noexcept {
  const detail::record_base* r = detail::this_thread_state()->running;
  return r ? r->id : 0;
}

std::string name() {
  const detail::record_base* r = detail::this_thread_state()->running;
  return r ? std::string(r->name) : std::string();
}

void set_name(std::string_view name) {
  detail::record_base* r = detail::this_thread_state()->running;
  if (!r) throw error("fiber::this_fiber::set_name(): not called from a fiber");
  const std::size_t n = std::min(name.size(), sizeof r->name - 1);
  std::memcpy(r->name, name.data(), n);
  r->name[n] = '\0';
}

}  // namespace fiber::this_fiber
