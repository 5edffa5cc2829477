// Stack walks inside fibers: what the unwind information of arch/*.S (the CFI of
// fiber_trampoline and fiber_switch_context; on Arm the EHABI tables, on Windows
// SEH) and the zeroed frame pointer of a fresh fiber give a debugger, a profiler
// or the C++ runtime.
//
//   - _Unwind_Backtrace from three nested frames inside a fiber (a fiber::context,
//     a generator's body, a fiber resumed by another fiber, and after the fiber
//     has been suspended and resumed from elsewhere) reports those three frames in
//     order, then the fiber's own frames up to fiber_trampoline, and ends there
//     with _URC_END_OF_STACK: it never wanders into the frames of whoever resumed
//     the fiber, nor off its stack.
//   - Where frame pointers are the convention (x86_64, i386, AArch64, RISC-V 64;
//     this file is built with -fno-omit-frame-pointer), the frame-pointer chain
//     inside a fiber stays on the fiber's stack, passes through the nested frames
//     and ends with a null frame pointer just above fiber_trampoline. On POWER the
//     ABI's back chain, always there, ends with a null back chain the same way.
#include <unwind.h>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "fiber/config.h"
#include "fiber/context.hpp"
#include "fiber/debug.hpp"
#include "fiber/generator.hpp"


// Frames that must stay frames: not inlined, not cloned or specialised by GCC's
// interprocedural passes (a clone would have another address than the function).
#if defined(__GNUC__) && !defined(__clang__)
#  define WALK_FRAME __attribute__((noinline, noipa))
#else
#  define WALK_FRAME __attribute__((noinline))
#endif
// After a call: keeps the call from being a tail call, so the caller's frame stays.
#define KEEP_FRAME() __asm__ volatile("" ::: "memory")

namespace {

using address = std::uintptr_t;

// Where a C++ function's code starts (what an unwinder reports as a frame's
// function start).
template <class R, class... A>
address code_of(R (*f)(A...)) {
  auto a = reinterpret_cast<address>(f);
#if defined(__powerpc64__) && (!defined(_CALL_ELF) || _CALL_ELF == 1)
  a = *reinterpret_cast<const address*>(a);  // ELFv1: a function descriptor; its first word is the code
#endif
#if defined(__arm__)
  a &= ~address{1};  // the Thumb bit
#endif
  return a;
}

// fiber_trampoline, the outermost frame of every fiber, is a code symbol in every
// arch/ file (even on ELFv1, where C++ functions are descriptors), so its address
// is its code. The library exports it (the symbol itself is hidden).
address trampoline() {
  auto a = reinterpret_cast<address>(fiber::entry_frame_address());
#if defined(__arm__)
  a &= ~address{1};
#endif
  return a;
}

// A fiber's stack, in memory the test owns (fiber::stack_view), so that it knows
// the bounds every frame of the fiber must lie within.
struct test_stack {
  static constexpr std::size_t size = 64 * 1024;
  struct alignas(64) block {
    unsigned char bytes[size];
  };
  std::unique_ptr<block> memory = std::make_unique<block>();
  address low() const { return reinterpret_cast<address>(memory->bytes); }
  address high() const { return low() + size; }
  fiber::stack_view view() const { return {memory->bytes, size}; }
};

// ---- _Unwind_Backtrace ----

struct frame_walk {
  std::vector<address> functions;  // each reported frame's function start
  std::vector<address> cfas;       // and its canonical frame address
  std::vector<address> ips;        // and its pc (0 for libgcc's end-of-stack marker)
  _Unwind_Reason_Code end = _URC_NO_REASON;
};

_Unwind_Reason_Code record_frame(_Unwind_Context* ctx, void* arg) {
  auto& w = *static_cast<frame_walk*>(arg);
  if (w.functions.size() >= 100) {  // a runaway walk: stop it, the test reports it
#if defined(__ARM_EABI_UNWINDER__)  // Arm EHABI has a single failure code
    return _URC_FAILURE;
#else
    return _URC_FATAL_PHASE1_ERROR;
#endif
  }
  address start = static_cast<address>(_Unwind_GetRegionStart(ctx));
#if defined(__arm__)
  start &= ~address{1};
#endif
  w.functions.push_back(start);
  w.ips.push_back(static_cast<address>(_Unwind_GetIP(ctx)));
#if defined(__ARM_EABI_UNWINDER__)
  w.cfas.push_back(static_cast<address>(_Unwind_GetGR(ctx, 13)));  // sp: EHABI has no CFA
#else
  w.cfas.push_back(static_cast<address>(_Unwind_GetCFA(ctx)));
#endif
  return _URC_NO_REASON;
}

WALK_FRAME int walk_level3(frame_walk& w) {
  w.functions.reserve(128);
  w.cfas.reserve(128);
  w.ips.reserve(128);
  w.end = _Unwind_Backtrace(record_frame, &w);
  return static_cast<int>(w.functions.size());
}
WALK_FRAME int walk_level2(frame_walk& w) {
  const int n = walk_level3(w);
  KEEP_FRAME();
  return n + 1;
}
WALK_FRAME int walk_level1(frame_walk& w) {
  const int n = walk_level2(w);
  KEEP_FRAME();
  return n + 1;
}

std::ptrdiff_t index_of(const std::vector<address>& v, address a) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (v[i] == a) return static_cast<std::ptrdiff_t>(i);
  return -1;
}

// Whether frame i of the walk is one of `function` (a few dozen bytes long).
// The function start the unwinder reports says so exactly, except with the Arm
// EHABI tables: the linker merges the .ARM.exidx entries of adjacent functions
// that unwind alike, so a frame's reported start may be that of a function before
// its own. There the frame's pc says it: a return address inside the function.
bool frame_is(const frame_walk& w, std::size_t i, address function) {
  if (i >= w.functions.size()) return false;
#if defined(__ARM_EABI_UNWINDER__)
  return w.functions[i] <= function && w.ips[i] > function && w.ips[i] - function < 512;
#else
  return w.functions[i] == function;
#endif
}

std::ptrdiff_t index_of_frame(const frame_walk& w, address function) {
  for (std::size_t i = 0; i < w.functions.size(); ++i)
    if (frame_is(w, i, function)) return static_cast<std::ptrdiff_t>(i);
  return -1;
}

// What every walk from walk_level1 inside a fiber on `stack` must show.
void check_walk(const frame_walk& w, const test_stack& stack, address must_not_appear = 0) {
  INFO("frames reported: " << w.functions.size());
  CHECK(w.end == _URC_END_OF_STACK);
  // The three nested frames, innermost first, at the start of the walk (DWARF and
  // EHABI report walk_level3 first; SEH first reports _Unwind_Backtrace itself).
  const std::ptrdiff_t l3 = index_of_frame(w, code_of(&walk_level3));
  REQUIRE(l3 >= 0);
  CHECK(l3 <= 1);
  REQUIRE(static_cast<std::size_t>(l3 + 2) < w.functions.size());
  CHECK(frame_is(w, static_cast<std::size_t>(l3 + 1), code_of(&walk_level2)));
  CHECK(frame_is(w, static_cast<std::size_t>(l3 + 2), code_of(&walk_level1)));
  // Then the fiber's own frames (the test's lambda, the entry's), and the
  // trampoline, where the walk ends. (Its start is exact everywhere: on Arm its
  // table entry names a personality routine of its own, so it is never merged.)
  const std::ptrdiff_t t = index_of(w.functions, trampoline());
  REQUIRE(t > l3 + 2);
  CHECK(t < l3 + 30);
#if FIBER_BACKEND_ASM
  // Nothing after it: the walk ended at the trampoline's frame. (libgcc's DWARF
  // unwinder then reports one more "frame" with a null pc as it finds the end:
  // the trampoline's return address is undefined. That is the end marker, not a
  // frame.)
  for (std::size_t i = static_cast<std::size_t>(t) + 1; i < w.ips.size(); ++i) {
    INFO("frame " << i << " after the trampoline");
    CHECK(w.ips[i] == 0);
  }
  CHECK(w.ips.size() <= static_cast<std::size_t>(t) + 2);
#endif
  // Every frame up to the trampoline on the fiber's stack (the trampoline's own
  // CFA may lie just past it: on SPARC its frame pointer is 0 by design).
  for (std::ptrdiff_t i = l3; i < t; ++i) {
    INFO("frame " << i << " CFA " << w.cfas[i] << ", stack [" << stack.low() << ", " << stack.high() << ")");
    CHECK(w.cfas[i] >= stack.low());
    CHECK(w.cfas[i] <= stack.high());
  }
  if (must_not_appear) CHECK(index_of_frame(w, must_not_appear) < 0);
}

// The resumer of a fiber, as a frame the walk inside the fiber must not reach.
WALK_FRAME void resume_from_marker(fiber::context& f) {
  f = std::move(f).resume();
  KEEP_FRAME();
}

// ---- frame-pointer and back-chain walks ----

#if FIBER_BACKEND_ASM && !defined(_WIN32) &&                                                     \
    (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) ||                         \
     (defined(__riscv) && __riscv_xlen == 64) || defined(__powerpc__) || defined(__powerpc64__))
#  define WALK_FRAME_CHAIN 1
// Each record of the chain: the next (older) frame pointer, and the return
// address of the call that made the frame, relative to the frame pointer.
#  if defined(__riscv)
constexpr int next_slot = -2, return_slot = -1;  // fp is the CFA; ra at fp-8, old fp at fp-16
#    define WALK_RETURN_ADDRESSES 1
#  elif defined(__powerpc__) || defined(__powerpc64__)
constexpr int next_slot = 0, return_slot = 0;  // the back chain; the LR save word belongs to the caller
#    define WALK_RETURN_ADDRESSES 0
#  else
constexpr int next_slot = 0, return_slot = 1;  // [old fp, return address]
#    define WALK_RETURN_ADDRESSES 1
#  endif

struct chain_walk {
  std::vector<address> frames;
  std::vector<address> returns;
  bool null_end = false;   // the chain ended with a null pointer
  bool left_stack = false;  // a pointer outside the fiber's stack, or not going up
};

// Follows the chain from `fp`, reading only inside [low, high).
WALK_FRAME void follow_chain(const address* fp, address low, address high, chain_walk& w) {
  for (int i = 0; fp && i < 64; ++i) {
    const auto at = reinterpret_cast<address>(fp);
    // The words read, fp[next_slot] and fp[return_slot], lie within two words
    // below and two above fp.
    if (at % sizeof(address) != 0 || at < low + 2 * sizeof(address) || at + 2 * sizeof(address) > high ||
        (!w.frames.empty() && at <= w.frames.back())) {
      w.left_stack = true;
      return;
    }
    w.frames.push_back(at);
    w.returns.push_back(fp[return_slot]);
    fp = reinterpret_cast<const address*>(fp[next_slot]);
  }
  w.null_end = fp == nullptr;
}

WALK_FRAME void chain_level3(chain_walk& w, address low, address high) {
  follow_chain(static_cast<const address*>(__builtin_frame_address(0)), low, high, w);
  KEEP_FRAME();
}
WALK_FRAME void chain_level2(chain_walk& w, address low, address high) {
  chain_level3(w, low, high);
  KEEP_FRAME();
}
WALK_FRAME void chain_level1(chain_walk& w, address low, address high) {
  chain_level2(w, low, high);
  KEEP_FRAME();
}

#  if WALK_RETURN_ADDRESSES
// Whether `ret` is a return address inside the function starting at `start`
// (these functions are a few dozen bytes long).
bool returns_into(address ret, address start, address within = 512) { return ret > start && ret - start < within; }
#  endif

void check_chain(const chain_walk& w) {
  INFO("records: " << w.frames.size());
  CHECK_FALSE(w.left_stack);
  CHECK(w.null_end);
  REQUIRE(w.frames.size() >= 4);  // chain_level3, 2, 1 and the fiber's entry, at least
#  if WALK_RETURN_ADDRESSES
  // chain_level3's record returns into chain_level2, whose record returns into
  // chain_level1; the last record is the entry function's, called by the trampoline.
  CHECK(returns_into(w.returns[0], code_of(&chain_level2)));
  CHECK(returns_into(w.returns[1], code_of(&chain_level1)));
  CHECK(returns_into(w.returns.back(), trampoline(), 64));
#  endif
}
#endif

}  // namespace

TEST_CASE("unwind: inside a context, a backtrace sees the nested frames and ends at fiber_trampoline") {
  test_stack stack;
  frame_walk first, again;
  fiber::context f{std::allocator_arg, stack.view(), [&](fiber::context&& caller) {
                     walk_level1(first);
                     caller = std::move(caller).resume();
                     walk_level1(again);  // resumed from elsewhere: resume_from_marker
                     return std::move(caller);
                   }};
  f = std::move(f).resume();
  check_walk(first, stack);
  resume_from_marker(f);
  CHECK_FALSE(f);
  check_walk(again, stack, code_of(&resume_from_marker));
}

TEST_CASE("unwind: inside a generator's body, a backtrace sees the nested frames and ends at fiber_trampoline") {
  test_stack stack;
  frame_walk before_yield, after_yield;
  fiber::generator<int> g{std::allocator_arg, stack.view(), [&](fiber::generator<int>::yielder& co) {
                            walk_level1(before_yield);
                            co.yield(1);
                            walk_level1(after_yield);
                            co.yield(2);
                          }};
  CHECK(g.start() == 1);
  check_walk(before_yield, stack);
  CHECK(g.next() == 2);
  check_walk(after_yield, stack);
}

TEST_CASE("unwind: a fiber resumed by another fiber: the walk ends at its own trampoline") {
  test_stack outer_stack, inner_stack;
  frame_walk inner_walk;
  fiber::context inner{std::allocator_arg, inner_stack.view(), [&](fiber::context&& caller) {
                         walk_level1(inner_walk);
                         return std::move(caller);
                       }};
  fiber::context outer{std::allocator_arg, outer_stack.view(), [&](fiber::context&& caller) {
                         resume_from_marker(inner);  // on the outer fiber's stack
                         return std::move(caller);
                       }};
  outer = std::move(outer).resume();
  CHECK_FALSE(outer);
  CHECK_FALSE(inner);
  check_walk(inner_walk, inner_stack, code_of(&resume_from_marker));
}

#if WALK_FRAME_CHAIN
TEST_CASE("unwind: inside a context, the frame-pointer chain stays on its stack and ends with a null pointer") {
  test_stack stack;
  chain_walk first, again;
  fiber::context f{std::allocator_arg, stack.view(), [&](fiber::context&& caller) {
                     chain_level1(first, stack.low(), stack.high());
                     caller = std::move(caller).resume();
                     chain_level1(again, stack.low(), stack.high());
                     return std::move(caller);
                   }};
  f = std::move(f).resume();
  check_chain(first);
  f = std::move(f).resume();
  CHECK_FALSE(f);
  check_chain(again);
}

TEST_CASE("unwind: inside a generator's body, the frame-pointer chain ends with a null pointer") {
  test_stack stack;
  chain_walk w;
  fiber::generator<int> g{std::allocator_arg, stack.view(), [&](fiber::generator<int>::yielder& co) {
                            co.yield(1);
                            chain_level1(w, stack.low(), stack.high());
                            co.yield(2);
                          }};
  CHECK(g.start() == 1);
  CHECK(g.next() == 2);
  check_chain(w);
}
#endif
