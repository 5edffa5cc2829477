// Copied-stack generators (stack_kind::copied; the rules: generator.hpp).
//
// Each thread has shared stacks for its copied-stack generators, mapped as
// needed: usually one. A generator takes one as it first runs: the first whose
// occupant (the generator whose bytes are on it) is not in the middle of its
// body, so that a generator first run by another one's body (a pipeline) runs
// on the next stack, and both stay in place. Its context is made at the top
// (its record there), and from then on it always runs there.
//
// A generator that yields leaves its bytes where they are: resumed again with
// nobody else there, it costs what an own-stack generator does. Resuming
// another one of that stack copies the occupant's bytes, from below its stack
// pointer to the top, to a buffer of their size, and the other's back to the
// addresses they came from: every pointer inside them (frame links, the switch
// frame, the record at the top) holds again. The copying runs on the resumer's
// stack. When that is the very stack (a generator's body resumes one of its own
// stack), the resumer is the occupant, in the middle of its body: a small
// context of its own (a *swapper*) copies the resumer's bytes away, runs the
// other generator until it yields, and puts the resumer's back.
//
// What the resumer reaches of a generator (its body, the yielder, the yielded
// value) lives on the heap (generator.hpp's copied_body); the record moves with
// the bytes and the registry is told where it is (fiber::dump(), debuggers).
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <utility>
#include <vector>

#include "fiber/detail/loop_core.hpp"
#include "fiber/error.hpp"
#include "fiber/generator.hpp"
#include "guarded_stack.hpp"
#include "per_thread.hpp"
#include "stack_copy.hpp"

namespace fiber::detail {

namespace {

struct shared_stack {
  stack_memory mem;
  copied_frames* occupant = nullptr;  // whose bytes are on it, all of them
  std::uintptr_t top() const noexcept { return reinterpret_cast<std::uintptr_t>(mem.top()); }
  bool has(std::uintptr_t a) const noexcept { return a >= reinterpret_cast<std::uintptr_t>(mem.base) && a < top(); }
};

// A resume handed to a swapper (the resumer runs on the generator's stack).
struct swap_request {
  copied_frames* target;
  context ctx;          // the target's context (empty: made by the swapper)
  copied_frames* up;    // the resumer: the stack's occupant, in the middle of its body
  context result;       // where the target stopped
  std::exception_ptr error;
};

class thread_stacks;
void unref(thread_stacks* t) noexcept;

}  // namespace

struct copied_frames {
  void* body;
  void (*drop)(void*) noexcept;
  context (*make)(void*, copied_frames*);
  void (*keep)(void*) noexcept;
  thread_stacks* owner = nullptr;  // the thread it first ran on: from then on, its only one
  shared_stack* stack = nullptr;  // from its first run
  record_base* record = nullptr;  // while its context lives: on the stack, or in `saved`
  unsigned char* saved = nullptr; // its bytes while they are away: [top - saved_size, top)
  std::size_t saved_size = 0;
  std::size_t saved_capacity = 0;
  void* sp = nullptr;             // where it is suspended
  bool running = false;           // resumed and not back: its bytes are in use
  bool abandoned = false;         // destroyed on another thread with its bytes in place: kept
};

namespace {

class thread_stacks {
 public:
  ~thread_stacks() {
    swappers.clear();
    for (auto& s : stacks_) unmap_guarded_stack(s->mem);
  }
  std::atomic<std::size_t> refs{1};  // the thread's, and one per generator
  std::vector<context> swappers;     // idle ones
  swap_request* pending = nullptr;   // for the swapper about to run

  // A stack for a generator's first run: the first whose occupant is not in
  // the middle of its body; a new one if none.
  shared_stack* pick() {
    for (auto& s : stacks_)
      if (!s->occupant || !s->occupant->running) return s.get();
    stacks_.reserve(stacks_.size() + 1);
    auto s = std::make_unique<shared_stack>();
    s->mem = map_guarded_stack(default_stack_size);
    stacks_.push_back(std::move(s));
    return stacks_.back().get();
  }

 private:
  std::vector<std::unique_ptr<shared_stack>> stacks_;
};

void unref(thread_stacks* t) noexcept {
  if (t->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete t;
}

// The thread's stacks; they outlive the thread while a generator of theirs lives.
struct thread_holder {
  thread_stacks* stacks = nullptr;
  ~thread_holder() {
    if (!stacks) return;
    stacks->swappers.clear();  // (each unwinds out of swapper_main)
    unref(std::exchange(stacks, nullptr));
  }
};
FIBER_PER_THREAD(thread_holder, this_thread_holder)

thread_stacks& this_thread_stacks() {
  thread_holder& h = this_thread_holder();
  if (!h.stacks) h.stacks = new thread_stacks;
  return *h.stacks;
}
const thread_stacks* this_thread_stacks_if_any() noexcept { return this_thread_holder().stacks; }

// Whether the caller runs on `s` (then it is its occupant's body).
[[gnu::noinline]] bool runs_on(const shared_stack& s) noexcept {
  return s.has(reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)));
}

void move_record(copied_frames& f, std::uintptr_t to) noexcept {
  f.record = reinterpret_cast<record_base*>(to);
  registry_relocate(f.record);
}

// The occupant's bytes (it is suspended) go to its buffer; the stack is free.
void save(shared_stack& s, copied_frames& f) noexcept {
  const auto base = reinterpret_cast<std::uintptr_t>(s.mem.base);
  const auto sp = reinterpret_cast<std::uintptr_t>(f.sp);
  const std::uintptr_t lo = sp - base < stack_copy::below_sp ? base : sp - stack_copy::below_sp;
  const std::size_t n = s.top() - lo;
  if (f.saved_capacity < n) {
    auto* bytes = static_cast<unsigned char*>(std::malloc(n));
    if (!bytes) fatal("fiber: out of memory: the frames of a suspended copied-stack generator could not be saved");
    std::free(f.saved);
    f.saved = bytes;
    f.saved_capacity = n;
  }
  stack_copy::unpoison(lo, n);
  std::memcpy(f.saved, reinterpret_cast<const void*>(lo), n);
  f.saved_size = n;
  // (The red zones its frames left: the next occupant's frames, or the bytes
  // coming back, carry none.)
  stack_copy::unpoison(reinterpret_cast<std::uintptr_t>(s.mem.base), s.mem.size);
  move_record(f, reinterpret_cast<std::uintptr_t>(f.saved) + (reinterpret_cast<std::uintptr_t>(f.record) - lo));
  s.occupant = nullptr;
}

// f's bytes come back to where they were; f is the occupant.
void restore(shared_stack& s, copied_frames& f) noexcept {
  const std::uintptr_t lo = s.top() - f.saved_size;
  stack_copy::writable(lo, f.saved_size);
  std::memcpy(reinterpret_cast<void*>(lo), f.saved, f.saved_size);
  move_record(f, lo + (reinterpret_cast<std::uintptr_t>(f.record) - reinterpret_cast<std::uintptr_t>(f.saved)));
  f.saved_size = 0;
  s.occupant = &f;
}

// f runs (its bytes in place, or its context to be made there); returns where it stopped.
context run(copied_frames& f, context&& target) {
  f.running = true;
  context back = std::move(target).resume();
  f.running = false;
  if (back) f.sp = suspended_sp(back);
  return back;
}

// f's context, made on its stack (the caller made f the occupant).
context make(copied_frames& f) {
  try {
    return f.make(f.body, &f);
  } catch (...) {
    f.stack->occupant = nullptr;
    throw;
  }
}

context swapper_main(context&& from) {
  for (;;) {
    // The request is among the resumer's frames, which go away now: what it
    // says is read first, and the answer written once they are back.
    swap_request* const request = std::exchange(this_thread_stacks().pending, nullptr);
    copied_frames& f = *request->target;
    copied_frames& up = *request->up;
    context ctx = std::move(request->ctx);
    shared_stack& s = *f.stack;
    // The resumer, suspended on the stack in the middle of its body: away.
    up.sp = suspended_sp(from);
    up.running = false;
    save(s, up);
    context result;
    std::exception_ptr error;
    if (ctx) {
      restore(s, f);
    } else {
      s.occupant = &f;
      try {
        ctx = make(f);
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (ctx) {
      try {
        result = run(f, std::move(ctx));
      } catch (const forced_unwind&) {
        // The target was unwound by force (its fiber's context destroyed while
        // it was parked in its body) and its record released: this swapper,
        // its resumer, goes too, and with it the resumer's context: back in
        // place first, to be unwound there.
        f.running = false;
        restore(s, up);
        up.running = true;
        throw;
      }
      if (result) {
        f.keep(f.body);  // (its value, before its frames go)
        save(s, f);
      }  // (else it ended: its record is gone, the stack free)
    }
    restore(s, up);
    up.running = true;
    request->result = std::move(result);
    request->error = std::move(error);
    from = std::move(from).resume();
  }
}

// A resume from the body of the generator whose bytes are on the target's stack.
context resume_through_swapper(thread_stacks& t, copied_frames& f, context&& target) {
  shared_stack& s = *f.stack;
  // (What may throw first: the target's context is taken only then.)
  context swapper;
  if (t.swappers.empty()) {
    t.swappers.reserve(1);  // (room to give it back)
    swapper = context(std::allocator_arg, protected_stack(), swapper_main);
  } else {
    swapper = std::move(t.swappers.back());
    t.swappers.pop_back();
  }
  swap_request r{&f, std::move(target), s.occupant, {}, nullptr};
  FIBER_ASSERT(r.up && r.up->running, "the flow on a shared stack is its occupant's");
  t.pending = &r;
  context back = std::move(swapper).resume();
  t.swappers.push_back(std::move(back));
  if (r.error) std::rethrow_exception(r.error);
  return std::move(r.result);
}

[[noreturn]] void refuse(const char* why) {
  throw error(std::string("fiber::generator: a copied-stack generator cannot run now: ") + why);
}

}  // namespace

copied_frames* copied_frames_make(void* body, void (*drop)(void*) noexcept, context (*make)(void*, copied_frames*),
                                  void (*keep)(void*) noexcept) {
  return new copied_frames{body, drop, make, keep};
}

void copied_frames_free(copied_frames* f) noexcept {
  f->drop(f->body);
  if (f->abandoned) return;  // (its bytes are on its thread's stack, which may copy them yet)
  FIBER_ASSERT(!f->record, "a copied-stack generator's context has ended before its frames go");
  if (f->stack && f->stack->occupant == f) f->stack->occupant = nullptr;
  std::free(f->saved);
  if (f->owner) unref(f->owner);
  delete f;
}

void copied_check(const copied_frames* f) {
  const thread_stacks* t = this_thread_stacks_if_any();
  if (f->owner && f->owner != t)
    refuse("it is resumed on another thread than the one it first ran on (its frames go to and from that "
           "thread's shared stack)");
  if (const fiber_control* task = running(); task && task->migratable)
    refuse("it is resumed by a task that may migrate (spawn_options::migratable): its frames stay on one thread's "
           "shared stack");
  if (!f->stack || runs_on(*f->stack)) return;
  if (const copied_frames* o = f->stack->occupant; o && o != f && o->running)
    refuse("another copied-stack generator of its stack is in the middle of its body (its fiber parked there, or "
           "it resumed this one from a context of another stack); generators that park are best given their own "
           "stacks");
}

context copied_resume(copied_frames* f, context&& target) {
  copied_check(f);
  thread_stacks& t = this_thread_stacks();
  if (!f->owner) {
    f->owner = &t;
    t.refs.fetch_add(1, std::memory_order_relaxed);
  }
  if (!f->stack) f->stack = t.pick();
  shared_stack& s = *f->stack;
  if (runs_on(s)) return resume_through_swapper(t, *f, std::move(target));
  if (s.occupant != f) {
    if (copied_frames* o = s.occupant) save(s, *o);  // (not running: copied_check())
    if (target)
      restore(s, *f);
    else
      s.occupant = f;
  }
  if (!target) target = make(*f);
  return run(*f, std::move(target));
}

bool copied_unwind_in_place(copied_frames* f) noexcept {
  shared_stack& s = *f->stack;
  const bool here = f->owner == this_thread_stacks_if_any();
  if (here && !runs_on(s) && (!s.occupant || s.occupant == f || !s.occupant->running)) {
    if (s.occupant != f) {
      if (s.occupant) save(s, *s.occupant);
      restore(s, *f);
    }
    f->running = true;  // (its unwinding runs its destructors: as if resumed)
    return true;
  }
  std::fputs("fiber: a suspended copied-stack generator was destroyed where its frames could not be put back (on "
             "another thread than its own, or while another generator of its stack was in the middle of its body): "
             "they were dropped without being unwound, and their destructors did not run\n",
             stderr);
  if (!here && s.occupant == f) {
    // Its bytes are on its thread's stack, which that thread alone touches:
    // left there, with its record, until that thread copies them away.
    f->abandoned = true;
    return false;
  }
  record_base* r = f->record;  // (in its buffer: its own)
  r->release(r);
  return false;
}

stack_memory copied_generator_stack::allocate() const noexcept { return frames->stack->mem; }

void copied_generator_stack::deallocate(stack_memory m) const noexcept {
  shared_stack& s = *frames->stack;
  frames->record = nullptr;
  if (s.occupant != frames) return;  // (dropped while away)
  s.occupant = nullptr;
  // (Its frames that never returned left their red zones there.)
  forget_stack_shadow(m.base, m.size);
}

void copied_made(copied_frames* f, record_base* record) noexcept { f->record = record; }

}  // namespace fiber::detail
