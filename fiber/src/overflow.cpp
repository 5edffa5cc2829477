// The stack-overflow handler: a fiber that runs off the end of its stack hits the
// PROT_NONE guard page below it (protected_stack, pooled_stack, the event loop's
// guarded stacks) and the process dies with
//   fiber: stack overflow in fiber 'name' (stack 65536 bytes)     or
//   fiber: stack overflow in fiber 42 (stack 65536 bytes)
// on stderr instead of a bare "Segmentation fault".
//
// How. A SIGSEGV and SIGBUS handler (SA_SIGINFO | SA_ONSTACK), installed once for
// the process when the first thread makes its first fiber (registry_add calls
// arm_overflow_handler), runs on an alternate signal stack: the overflowing
// fiber's own stack has no room left for a signal frame. Each thread that makes a
// fiber gets one (sigaltstack), unless it already has one (a sanitizer's, the
// application's), which it keeps; ours is unmapped when the thread exits.
//
// The handler looks for a fault address (si_addr) in [stack_base - page,
// stack_base) of a fiber the registry lists. If it finds one, it writes the line
// above with write(2), restores the default disposition and re-raises the signal,
// so the process dies by SIGSEGV (or SIGBUS) as it would have without us, core
// dump included, and the handler installed before ours is not called: the fault
// is ours to explain. Any other fault, and any signal sent with kill(), goes to the
// handler installed before ours, unchanged: its sa_sigaction/sa_handler is called
// with the same arguments; if it was SIG_DFL (or SIG_IGN, which the kernel does
// not honour for a fault), the default disposition is restored and the handler
// returns, so the faulting instruction runs again and kills the process normally.
//
// The handler takes no lock and allocates nothing: it reads the registry's slots
// with atomic loads (registry.hpp), formats the numbers itself and writes with
// write(2). It misses an overflow (the process still dies by SIGSEGV, without the
// message) if the registry could not list the fiber (out of slots), if a frame
// larger than a page jumped past the guard page (the fault address then lies
// below it), on a stack without a guard page (stack_view, the loop's unguarded
// stacks), or if the faulting thread has no alternate stack (a fiber made on one
// thread and resumed on another that never made one): the kernel then cannot
// deliver the signal and kills the process.
//
// Disabled by FIBER_OVERFLOW_HANDLER=0 in the environment (read when the first
// fiber is made) or by fiber::set_overflow_handler(false), which, after
// installation, puts the previous handlers back where ours is still the one
// installed (a handler installed after ours stays; if it chains to ours, ours
// passes everything on). set_overflow_handler(true) installs ours (again) on top
// of whatever is there, overriding the environment. Windows: no-ops.
#include "fiber/debug.hpp"

#include "registry.hpp"

#ifdef _WIN32
#include <cstdio>
#include <cstring>
#else
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#endif

namespace fiber::detail {

#ifdef _WIN32

// Nothing to arm: registry_add never calls arm_overflow_handler().
constinit thread_local bool overflow_armed = true;
void arm_overflow_handler() noexcept {}

void report_stack_overflow(const record_base* r) noexcept {
  char name[sizeof r->name + 1] = {};
  std::memcpy(name, r->name, sizeof r->name);
  if (name[0])
    std::fprintf(stderr, "fiber: stack overflow in fiber '%s' (stack %zu bytes)\n", name, r->stack_size);
  else
    std::fprintf(stderr, "fiber: stack overflow in fiber %llu (stack %zu bytes)\n",
                 static_cast<unsigned long long>(r->id), r->stack_size);
  std::fflush(stderr);
}

}  // namespace fiber::detail

namespace fiber {
void set_overflow_handler(bool) {}
bool overflow_handler_installed() noexcept { return false; }
}  // namespace fiber

#else

#if defined(__ELF__)
constinit thread_local bool overflow_armed [[gnu::tls_model("initial-exec")]] = false;
#else
constinit thread_local bool overflow_armed = false;
#endif

namespace {

constexpr int handled_signals[2] = {SIGSEGV, SIGBUS};

// What the handler reads. The handler installed before ours, per signal: written
// under `handler_lock` into the slot the handler is not reading, then published,
// before ours is installed.
struct sigaction previous[2][2];
std::atomic<int> previous_slot[2] = {0, 0};
std::atomic<bool> handler_active{false};  // the handler explains overflows (else it only chains)
std::size_t guard_size = 0;               // page_size(), cached for the handler

// Decided under `handler_lock`: -1 until the first fiber (then the environment
// decides), else whether the handler is wanted.
std::mutex handler_lock;
int wanted = -1;

int index_of(int sig) noexcept { return sig == SIGBUS ? 1 : 0; }

// Where this thread's handler stands while it calls the previous handler: a
// handler installed after ours that chains to ours, under which ours was
// installed again, would call ours back with the same arguments, deeper on the
// same stack. Such a loop is broken by letting the fault take its default course.
struct chaining {
  const siginfo_t* info;
  std::uintptr_t frame;
};
#if defined(__ELF__)
constinit thread_local chaining in_chain [[gnu::tls_model("initial-exec")]] = {nullptr, 0};
#else
constinit thread_local chaining in_chain = {nullptr, 0};
#endif

// ---- inside the handler: async-signal-safe only ----------------------------

void write_all(const char* p, std::size_t n) noexcept {
  while (n > 0) {
    const ssize_t w = ::write(STDERR_FILENO, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Appends the decimal digits of v at `out`; returns the end.
char* put_number(char* out, std::uint64_t v) noexcept {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *out++ = digits[--n];
  return out;
}

char* put_text(char* out, const char* s) noexcept {
  while (*s) *out++ = *s++;
  return out;
}

}  // namespace

void report_stack_overflow(const record_base* r) noexcept {
  char line[160];  // 31 + 30 + 31 + 2 + 20 + 20 + 8 at most
  char* p = put_text(line, "fiber: stack overflow in fiber ");
  char name[sizeof r->name];
  std::size_t n = 0;
  while (n < sizeof name - 1 && r->name[n] != '\0') {  // the record may change under us: copy once
    name[n] = r->name[n];
    ++n;
  }
  if (n > 0) {
    *p++ = '\'';
    for (std::size_t i = 0; i < n; ++i) *p++ = name[i];
    *p++ = '\'';
  } else {
    p = put_number(p, r->id);
  }
  p = put_text(p, " (stack ");
  p = put_number(p, r->stack_size);
  p = put_text(p, " bytes)\n");
  write_all(line, static_cast<std::size_t>(p - line));
}

namespace {

void set_default(int sig) noexcept {
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  ::sigaction(sig, &dfl, nullptr);
}

// Dies by `sig` with its default disposition. The signal is blocked while its
// handler runs: raised, it waits until unblocked, then kills the process.
void die_by(int sig) noexcept {
  set_default(sig);
  ::raise(sig);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  // Not reached. If it were, returning re-runs the faulting access under SIG_DFL.
}

// How far below the bottom of the running fiber's stack a fault still counts as
// its overflow: a frame larger than the guard page jumps it (code built without
// -fstack-clash-protection), and an unguarded stack (the loop's, carved from 4
// MiB slabs) runs through the stacks below it before it reaches unmapped memory.
constexpr std::uintptr_t overflow_reach = std::uintptr_t{8} << 20;

// The fiber whose stack overflowed into `addr`, if any: one whose guard page
// holds it, or the fiber running on this thread if `addr` lies less than
// overflow_reach below its stack.
const record_base* overflowed_fiber(std::uintptr_t addr) noexcept {
  const record_base* hit = nullptr;
  const std::size_t guard = guard_size;
  for_each_fiber([&](const record_base* r) {
    if (hit) return;
    const auto base = reinterpret_cast<std::uintptr_t>(r->stack_base);
    if (base >= guard && addr < base && addr >= base - guard) hit = r;
  });
#if defined(__ELF__)
  if (!hit) {
    const record_base* r = FIBER_DETAIL_THREAD_STATE.running;
    const auto base = r ? reinterpret_cast<std::uintptr_t>(r->stack_base) : 0;
    if (base != 0 && addr < base && base - addr <= overflow_reach) hit = r;
  }
#endif
  return hit;
}

void chain(int sig, siginfo_t* info, void* ucontext) noexcept {
  const int i = index_of(sig);
  const struct sigaction& prev = previous[i][previous_slot[i].load(std::memory_order_acquire)];
  const bool default_action = !(prev.sa_flags & SA_SIGINFO) && (prev.sa_handler == SIG_DFL || prev.sa_handler == SIG_IGN);
  if (default_action) {
    if (info->si_code > 0) {
      // A fault: with the default disposition back, the access faults again when
      // we return and the kernel ends the process (ignoring a fault is not possible).
      set_default(sig);
    } else if (prev.sa_handler == SIG_DFL) {
      // Sent by kill() or raise(): nothing runs again; raise it under SIG_DFL (it
      // is delivered when this handler returns).
      set_default(sig);
      ::raise(sig);
    }
    return;
  }
  if (prev.sa_flags & SA_RESETHAND) set_default(sig);
  const chaining outer = in_chain;
  // This frame's place on the stack (the frame address, not a local's: under ASan
  // locals may live on a fake stack elsewhere).
  in_chain = {info, reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0))};
  if (prev.sa_flags & SA_SIGINFO)
    prev.sa_sigaction(sig, info, ucontext);
  else
    prev.sa_handler(sig);
  in_chain = outer;  // (not reached if the previous handler jumped out: see on_fault)
}

void on_fault(int sig, siginfo_t* info, void* ucontext) {
  const int saved_errno = errno;
  if (in_chain.info == info && reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0)) < in_chain.frame) {
    // Called back, with our own arguments, by the handler we chained to: a loop.
    set_default(sig);
    errno = saved_errno;
    return;
  }
  // (A previous handler that jumped out with siglongjmp left in_chain set; a new
  // fault is delivered at that frame's place or above it, never below.)
  in_chain = {nullptr, 0};
  // si_code > 0: the kernel reports a fault (SEGV_MAPERR, SEGV_ACCERR, BUS_ADRERR...);
  // for a signal sent with kill(), si_addr is not an address.
  if (handler_active.load(std::memory_order_acquire) && info->si_code > 0) {
    if (const record_base* r = overflowed_fiber(reinterpret_cast<std::uintptr_t>(info->si_addr))) {
      report_stack_overflow(r);
      die_by(sig);
    }
  }
  chain(sig, info, ucontext);
  errno = saved_errno;
}

// ---- installation (not in the handler) -------------------------------------

bool is_ours(const struct sigaction& a) noexcept {
  return (a.sa_flags & SA_SIGINFO) && a.sa_sigaction == &on_fault;
}

// Under `handler_lock`.
void install() noexcept {
  guard_size = page_size();
  for (int sig : handled_signals) {
    const int i = index_of(sig);
    struct sigaction now;
    if (::sigaction(sig, nullptr, &now) != 0 || is_ours(now)) continue;
    // Ours goes on top of whatever is there (another handler may have replaced
    // ours since it was installed last); the one below is published first.
    const int slot = 1 - previous_slot[i].load(std::memory_order_relaxed);
    previous[i][slot] = now;
    previous_slot[i].store(slot, std::memory_order_release);
    struct sigaction ours;
    std::memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = &on_fault;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    ::sigaction(sig, &ours, nullptr);
  }
  handler_active.store(true, std::memory_order_release);
}

// Under `handler_lock`.
void uninstall() noexcept {
  handler_active.store(false, std::memory_order_release);
  for (int sig : handled_signals) {
    const int i = index_of(sig);
    struct sigaction now;
    // Put the previous handler back only where ours is the one installed; one
    // installed after ours stays (and, if it chains to ours, ours now passes
    // every fault on).
    if (::sigaction(sig, nullptr, &now) == 0 && is_ours(now))
      ::sigaction(sig, &previous[i][previous_slot[i].load(std::memory_order_relaxed)], nullptr);
  }
}

bool environment_disables() noexcept {
  const char* v = std::getenv("FIBER_OVERFLOW_HANDLER");
  return v != nullptr && std::strcmp(v, "0") == 0;
}

// This thread's alternate signal stack, if we made it: unmapped at thread exit.
struct alt_stack {
  void* mapping = nullptr;
  std::size_t mapping_size = 0;
  void* stack = nullptr;

  ~alt_stack() {
    if (!mapping) return;
    stack_t now;
    if (::sigaltstack(nullptr, &now) != 0) return;
    if (now.ss_sp == stack && !(now.ss_flags & SS_DISABLE)) {
      if (now.ss_flags & SS_ONSTACK) return;  // running on it: leave it mapped
      stack_t off;
      std::memset(&off, 0, sizeof off);
      off.ss_flags = SS_DISABLE;
      if (::sigaltstack(&off, nullptr) != 0) return;
    }
    ::munmap(mapping, mapping_size);
  }
};

std::size_t alt_stack_size() noexcept {
  std::size_t size = 64 * 1024;
#ifdef _SC_SIGSTKSZ
  const long s = ::sysconf(_SC_SIGSTKSZ);
  if (s > 0) size = std::max(size, static_cast<std::size_t>(s));
#endif
  const std::size_t page = page_size();
  return (size + page - 1) / page * page;
}

// Gives the calling thread an alternate signal stack unless it has one.
void ensure_alt_stack() noexcept {
  stack_t now;
  if (::sigaltstack(nullptr, &now) != 0) return;
  if (!(now.ss_flags & SS_DISABLE)) return;  // one exists (ours, a sanitizer's, the application's): keep it
  static thread_local alt_stack mine;
  if (mine.mapping) return;
  const std::size_t page = page_size();
  const std::size_t size = alt_stack_size();
  // A guard page below it too: a handler that overflowed it would fault cleanly.
  void* p = ::mmap(nullptr, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;  // no alternate stack: an overflow dies by SIGSEGV, unexplained
  ::mprotect(p, page, PROT_NONE);
  stack_t st;
  std::memset(&st, 0, sizeof st);
  st.ss_sp = static_cast<char*>(p) + page;
  st.ss_size = size;
  st.ss_flags = 0;
  if (::sigaltstack(&st, nullptr) != 0) {
    ::munmap(p, size + page);
    return;
  }
  mine.mapping = p;
  mine.mapping_size = size + page;
  mine.stack = st.ss_sp;
}

}  // namespace

void arm_overflow_handler() noexcept {
  overflow_armed = true;
  bool enabled;
  {
    std::lock_guard<std::mutex> guard(handler_lock);
    if (wanted < 0) {
      wanted = environment_disables() ? 0 : 1;
      if (wanted) install();
    }
    enabled = wanted == 1;
  }
  if (enabled) ensure_alt_stack();
}

}  // namespace fiber::detail

namespace fiber {

void set_overflow_handler(bool enabled) {
  using namespace detail;
  {
    std::lock_guard<std::mutex> guard(handler_lock);
    wanted = enabled ? 1 : 0;
    if (enabled)
      install();  // (again, if another handler replaced ours)
    else if (handler_active.load(std::memory_order_relaxed))
      uninstall();
  }
  if (enabled) {
    ensure_alt_stack();
    overflow_armed = true;
  }
}

bool overflow_handler_installed() noexcept {
  if (!detail::handler_active.load(std::memory_order_acquire)) return false;
  struct sigaction now;
  return ::sigaction(SIGSEGV, nullptr, &now) == 0 && detail::is_ours(now);
}

}  // namespace fiber

#endif
