// The stack-overflow handler (fiber/src/overflow.cpp): a fiber running off its
// stack dies by SIGSEGV with "fiber: stack overflow in fiber <'name' or id> (stack
// <size> bytes)" on stderr; every other fault goes where it went without us.
//
// Each case runs in a forked child (tests/death.hpp) and checks the child's whole
// stderr and how it died. POSIX only: on Windows the handler is a no-op.
//
// Catch2 puts its own SIGSEGV handler and alternate signal stack in place while a
// test case runs, so in a child the handler below ours is Catch's unless the case
// sets another first: the cases about faults that are not overflows set SIG_DFL
// (what a plain program has) or their own handler before the first fiber.
//
// Some cases need a process in which no fiber was made yet (the first fiber
// installs the handler and reads the environment). CTest runs each test case in a
// process of its own, where the child's first fiber is the process's first (id
// 1). Run together in one process (the executable without a filter), those cases
// say so with a WARN and check nothing; the others install ours explicitly there
// (set_overflow_handler(true)) where the first fiber would have.
//
// Under AddressSanitizer (FIBER_ASAN) its SIGSEGV handler is there before any
// fiber: ours goes on top of it, and overflows are still ours; the cases that set
// SIG_DFL or their own handler take ASan's out of the way in the child.
#ifndef _WIN32

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "death.hpp"
#include "fiber/context.hpp"
#include "fiber/debug.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/generator.hpp"
#include "fiber/stack.hpp"

namespace {

constexpr std::size_t stack_size = 64 * 1024;

volatile int never = -1;

// Recurses until the stack runs out: a volatile array in each frame, written
// before and after the call, so the frames are real and the call is no tail call.
[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[256];
  frame[depth % 256] = static_cast<char>(depth);
  if (depth == never) return 0;
  const int below = recurse(depth + 1);
  frame[(depth + 1) % 256] = static_cast<char>(below);
  return frame[depth % 256] + frame[(depth + 1) % 256];
}

// Straight to stderr (fd 2 is the pipe run_in_child reads), unbuffered: the
// process dies before any stdio buffer would be flushed. A string_view, so that a
// signal handler can say a literal without allocating (async-signal-safe).
void say(std::string_view s) {
  const char* p = s.data();
  std::size_t n = s.size();
  while (n > 0) {
    const ssize_t w = ::write(2, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

std::string yes_no(bool b) { return b ? "yes" : "no"; }

// In a fiber: tells the parent the running fiber's id, then overflows its stack.
void announce_and_overflow() {
  say("id=" + std::to_string(fiber::this_fiber::id()) + "\n");
  recurse(0);
  say("recursion ended\n");  // not reached
}

// What follows `before` in the stderr of a child that ran announce_and_overflow():
// the id line, then our line naming `name` if given, else the id.
std::string expected_overflow(const std::string& text, const std::string& before = "", const std::string& name = "",
                              std::size_t size = stack_size) {
  const std::string prefix = before + "id=";
  if (text.compare(0, prefix.size(), prefix) != 0) return "(not what the child should print first)";
  const std::string id = text.substr(prefix.size(), text.find('\n', prefix.size()) - prefix.size());
  return prefix + id + "\nfiber: stack overflow in fiber " + (name.empty() ? id : "'" + name + "'") + " (stack " +
         std::to_string(size) + " bytes)\n";
}

// The same without our line: an overflow with the handler out of the way.
std::string expected_unexplained_overflow(const std::string& text, const std::string& before) {
  const std::string prefix = before + "id=";
  if (text.compare(0, prefix.size(), prefix) != 0) return "(not what the child should print first)";
  return text.substr(0, text.find('\n', prefix.size()) + 1);
}

// A fault that is not an overflow: a write through a null pointer the compiler
// cannot see is null (and UBSan, where it is on, lets through to the fault).
int* volatile null_pointer = nullptr;
__attribute__((noinline, no_sanitize("null"))) void write_through_null() { *null_pointer = 1; }

// Runs `body` in a fiber on a 64 KiB protected_stack.
void run_fiber(void (*body)()) {
  fiber::context f{std::allocator_arg, fiber::protected_stack(stack_size), [body](fiber::context&& caller) {
    body();
    return std::move(caller);
  }};
  f = std::move(f).resume();
}

// Makes a fiber and returns its id: 1 if it is the process's first.
std::uint64_t make_a_fiber() {
  std::uint64_t id = 0;
  fiber::context f{[&id](fiber::context&& caller) {
    id = fiber::this_fiber::id();
    return std::move(caller);
  }};
  f = std::move(f).resume();
  return id;
}

void set_action(int sig, void (*handler)(int), void (*siginfo_handler)(int, siginfo_t*, void*) = nullptr) {
  struct sigaction a;
  std::memset(&a, 0, sizeof a);
  sigemptyset(&a.sa_mask);
  if (siginfo_handler) {
    a.sa_sigaction = siginfo_handler;
    a.sa_flags = SA_SIGINFO;
  } else {
    a.sa_handler = handler;
  }
  ::sigaction(sig, &a, nullptr);
}

// Ours on top of what is installed now: put there by the first fiber, or, in a
// process where that was made already, explicitly.
void ours_on_top() {
  if (make_a_fiber() != 1) fiber::set_overflow_handler(true);
  struct sigaction now;
  ::sigaction(SIGSEGV, nullptr, &now);
  const bool on_top = fiber::overflow_handler_installed() &&
                      (now.sa_flags & (SA_SIGINFO | SA_ONSTACK)) == (SA_SIGINFO | SA_ONSTACK);
  say("ours on top: " + yes_no(on_top) + "\n");
}

// A plain program's SIGSEGV and SIGBUS dispositions (the defaults), then ours.
void plain_program_then_ours() {
  set_action(SIGSEGV, SIG_DFL);
  set_action(SIGBUS, SIG_DFL);
  ours_on_top();
}

bool default_disposition(int sig) {
  struct sigaction now;
  return ::sigaction(sig, nullptr, &now) == 0 && !(now.sa_flags & SA_SIGINFO) && now.sa_handler == SIG_DFL;
}

// Whether [p, p + 1 page) is mapped (mincore fails with ENOMEM where it is not).
bool mapped(const void* p) {
  const std::size_t page = fiber::page_size();
  void* start = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(p) / page * page);
  std::vector<unsigned char> vec(1);
  return ::mincore(start, page, vec.data()) == 0;
}

// What the child wrote on stderr. Under qemu-user (the cross targets' tests) the
// emulator adds "qemu: uncaught target signal 11 (Segmentation fault) - core
// dumped" when the program dies by a signal: that line is qemu's, not the child's.
std::string child_stderr(const fiber_test::death& d) {
  std::string out;
  std::size_t at = 0;
  while (at < d.stderr_text.size()) {
    std::size_t end = d.stderr_text.find('\n', at);
    end = end == std::string::npos ? d.stderr_text.size() : end + 1;
    const std::string line = d.stderr_text.substr(at, end - at);
    if (line.rfind("qemu: uncaught target signal ", 0) != 0) out += line;
    at = end;
  }
  return out;
}

constexpr const char* not_fresh = "not the process's first fiber\n";

bool skip_if_not_fresh(const fiber_test::death& d) {
  if (child_stderr(d) != not_fresh) return false;
  WARN("fibers were made in this process before this test: run it alone (as ctest does) to check it");
  return true;
}

}  // namespace

TEST_CASE("overflow: the first fiber installs the handler, and each thread making fibers gets an alternate stack") {
  auto d = fiber_test::run_in_child([] {
    set_action(SIGSEGV, SIG_DFL);
    stack_t main_before;
    ::sigaltstack(nullptr, &main_before);
    const bool before = fiber::overflow_handler_installed();
    if (make_a_fiber() != 1) {
      say(not_fresh);
      return;
    }
    say("before: " + yes_no(before) + ", after: " + yes_no(fiber::overflow_handler_installed()) + "\n");
    struct sigaction now;
    ::sigaction(SIGSEGV, nullptr, &now);
    say(std::string("flags: ") +
        ((now.sa_flags & (SA_SIGINFO | SA_ONSTACK)) == (SA_SIGINFO | SA_ONSTACK) ? "SA_SIGINFO|SA_ONSTACK" : "other") +
        "\n");
    // A thread that had one (Catch's, a sanitizer's) keeps it; else it gets ours.
    stack_t main_after;
    ::sigaltstack(nullptr, &main_after);
    const bool main_ok = (main_before.ss_flags & SS_DISABLE)
                             ? !(main_after.ss_flags & SS_DISABLE) && main_after.ss_size >= 64 * 1024
                             : main_after.ss_sp == main_before.ss_sp;
    say("main thread's alternate stack: " + yes_no(main_ok) + "\n");
    // A new thread has none until it makes a fiber (under ASan it has ASan's, which
    // it keeps); then one of 64 KiB at least, unmapped when the thread exits.
    void* ours = nullptr;
    std::thread t([&ours] {
      stack_t before, after;
      ::sigaltstack(nullptr, &before);
      make_a_fiber();
      ::sigaltstack(nullptr, &after);
      if (!(before.ss_flags & SS_DISABLE)) {
        say("thread: had one, kept: " + yes_no(after.ss_sp == before.ss_sp) + "\n");
        return;
      }
      ours = after.ss_sp;
      say("thread: got one of 64 KiB or more: " +
          yes_no(!(after.ss_flags & SS_DISABLE) && after.ss_size >= 64 * 1024 && mapped(after.ss_sp)) + "\n");
    });
    t.join();
    if (ours) say("unmapped at the thread's exit: " + yes_no(!mapped(ours)) + "\n");
  });
  if (skip_if_not_fresh(d)) return;
  CHECK(d.exit_code == 0);
  const std::string common =
      "before: no, after: yes\n"
      "flags: SA_SIGINFO|SA_ONSTACK\n"
      "main thread's alternate stack: yes\n";
  const std::string got_ours = common + "thread: got one of 64 KiB or more: yes\nunmapped at the thread's exit: yes\n";
#if FIBER_ASAN
  // ASan gives each thread an alternate stack, unless run with use_sigaltstack=0.
  const std::string had_asans = common + "thread: had one, kept: yes\n";
  CHECK((child_stderr(d) == got_ours || child_stderr(d) == had_asans));
#else
  CHECK(child_stderr(d) == got_ours);
#endif
}

TEST_CASE("overflow: a context running off a 64 KiB protected_stack is named by its id and dies by SIGSEGV") {
  auto d = fiber_test::run_in_child([] { run_fiber(&announce_and_overflow); });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d)));
}

TEST_CASE("overflow: a named fiber on a pooled_stack is named by its name") {
  auto d = fiber_test::run_in_child([] {
    fiber::context f{std::allocator_arg, fiber::pooled_stack(stack_size), [](fiber::context&& caller) {
      fiber::this_fiber::set_name("deep");
      announce_and_overflow();
      return std::move(caller);
    }};
    f = std::move(f).resume();
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d), "", "deep"));
}

TEST_CASE("overflow: the stack size reported is the fiber's") {
  const std::size_t size = fiber::protected_stack(256 * 1024).size();
  auto d = fiber_test::run_in_child([size] {
    fiber::context f{std::allocator_arg, fiber::protected_stack(size), [](fiber::context&& caller) {
      announce_and_overflow();
      return std::move(caller);
    }};
    f = std::move(f).resume();
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d), "", "", size));
}

TEST_CASE("overflow: a generator's body overflowing") {
  auto d = fiber_test::run_in_child([] {
    fiber::generator<int> g{[](auto& co) {
      announce_and_overflow();
      co.yield(1);
    }};
    for (int v : g) (void)v;
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d)));
}

TEST_CASE("overflow: an event_loop task overflowing") {
  auto d = fiber_test::run_in_child([] {
    fiber::run([] {
      auto t = fiber::spawn([] {
        fiber::this_fiber::set_name("task");
        announce_and_overflow();
      });
      t.join();
    });
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d), "", "task"));
}

TEST_CASE("overflow: the main task of fiber::run overflowing") {
  auto d = fiber_test::run_in_child([] { fiber::run([] { announce_and_overflow(); }); });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d)));
}

TEST_CASE("overflow: a fiber overflowing on a second thread") {
  auto d = fiber_test::run_in_child([] {
    std::thread t([] { run_fiber(&announce_and_overflow); });
    t.join();
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d)));
}

// A fault that is not an overflow ends as it would without ours: here by the
// default disposition, SIGSEGV, without our message.
TEST_CASE("overflow: a null-pointer write on the thread's own stack is not an overflow") {
  auto d = fiber_test::run_in_child([] {
    plain_program_then_ours();
    write_through_null();
    say("survived\n");
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == "ours on top: yes\n");
}

TEST_CASE("overflow: a null-pointer write inside a fiber is not an overflow") {
  auto d = fiber_test::run_in_child([] {
    plain_program_then_ours();
    run_fiber([] {
      say("in fiber " + std::to_string(fiber::this_fiber::id()) + "\n");
      write_through_null();
      say("survived\n");
    });
  });
  CHECK(d.signal == SIGSEGV);
  CHECK_THAT(child_stderr(d), Catch::Matches("ours on top: yes\nin fiber [0-9]+\n"));
}

TEST_CASE("overflow: a fault in the guard page of a stack no fiber runs on is not an overflow") {
  auto d = fiber_test::run_in_child([] {
    plain_program_then_ours();
    const fiber::protected_stack alloc(stack_size);
    const fiber::stack_memory s = alloc.allocate();
    static_cast<volatile char*>(s.base)[-1] = 1;
    say("survived\n");
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == "ours on top: yes\n");
}

TEST_CASE("overflow: a SIGSEGV sent with raise() in a fiber is not an overflow") {
  auto d = fiber_test::run_in_child([] {
    plain_program_then_ours();
    run_fiber([] {
      ::raise(SIGSEGV);
      say("survived\n");
    });
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == "ours on top: yes\n");
}

// Chaining: an application's handler, installed before the first fiber, still
// gets every fault that is not an overflow, with its arguments.
namespace {
void user_handler(int sig) {
  say(sig == SIGSEGV ? "user handler: SIGSEGV\n" : "user handler: another signal\n");
  ::_exit(3);
}
void user_siginfo_handler(int sig, siginfo_t* info, void* ucontext) {
  const bool same = sig == SIGSEGV && info && info->si_code > 0 &&
                    info->si_addr == static_cast<void*>(null_pointer) && ucontext != nullptr;
  say(same ? "user siginfo handler: the fault's own arguments\n" : "user siginfo handler: other arguments\n");
  ::_exit(4);
}
}  // namespace

TEST_CASE("overflow: a handler installed before the first fiber gets the faults that are not overflows") {
  auto d = fiber_test::run_in_child([] {
    set_action(SIGSEGV, &user_handler);
    ours_on_top();
    run_fiber(&write_through_null);
  });
  CHECK(d.exit_code == 3);
  CHECK(child_stderr(d) == "ours on top: yes\nuser handler: SIGSEGV\n");
}

TEST_CASE("overflow: an SA_SIGINFO handler installed before gets the fault's own arguments") {
  auto d = fiber_test::run_in_child([] {
    set_action(SIGSEGV, nullptr, &user_siginfo_handler);
    ours_on_top();
    write_through_null();
  });
  CHECK(d.exit_code == 4);
  CHECK(child_stderr(d) == "ours on top: yes\nuser siginfo handler: the fault's own arguments\n");
}

TEST_CASE("overflow: with a handler installed before, an overflow is still named and dies by SIGSEGV") {
  auto d = fiber_test::run_in_child([] {
    set_action(SIGSEGV, &user_handler);
    ours_on_top();
    run_fiber(&announce_and_overflow);
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d), "ours on top: yes\n"));
}

TEST_CASE("overflow: a handler installed after ours that chains to it makes no loop when ours is put on top again") {
  // Ours, then the application's on top saving ours, then ours on top again: for
  // a fault that is not an overflow ours calls the application's, which calls
  // ours back. Ours breaks the loop by letting the fault take its default course.
  static struct sigaction saved;  // what the application's handler chains to
  auto d = fiber_test::run_in_child([] {
    plain_program_then_ours();
    struct sigaction mine;
    std::memset(&mine, 0, sizeof mine);
    sigemptyset(&mine.sa_mask);
    mine.sa_flags = SA_SIGINFO;
    mine.sa_sigaction = [](int sig, siginfo_t* info, void* ucontext) {
      say("application's handler\n");
      saved.sa_sigaction(sig, info, ucontext);
    };
    ::sigaction(SIGSEGV, &mine, &saved);
    fiber::set_overflow_handler(true);
    run_fiber(&write_through_null);
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == "ours on top: yes\napplication's handler\n");
}

TEST_CASE("overflow: FIBER_OVERFLOW_HANDLER=0 leaves the handler out") {
  auto d = fiber_test::run_in_child([] {
    ::setenv("FIBER_OVERFLOW_HANDLER", "0", 1);
    set_action(SIGSEGV, SIG_DFL);
    if (make_a_fiber() != 1) {
      say(not_fresh);
      return;
    }
    say("installed: " + yes_no(fiber::overflow_handler_installed()) + "\n");
    run_fiber(&announce_and_overflow);
  });
  if (skip_if_not_fresh(d)) return;
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_unexplained_overflow(child_stderr(d), "installed: no\n"));
}

TEST_CASE("overflow: set_overflow_handler(false) before the first fiber leaves the handler out") {
  auto d = fiber_test::run_in_child([] {
    fiber::set_overflow_handler(false);
    set_action(SIGSEGV, SIG_DFL);
    run_fiber([] {
      say("installed: " + yes_no(fiber::overflow_handler_installed()) + "\n");
      announce_and_overflow();
    });
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_unexplained_overflow(child_stderr(d), "installed: no\n"));
}

TEST_CASE("overflow: set_overflow_handler(false) after installation puts the previous handlers back") {
  auto d = fiber_test::run_in_child([] {
    plain_program_then_ours();
    fiber::set_overflow_handler(false);
    say("installed: " + yes_no(fiber::overflow_handler_installed()) +
        ", defaults back: " + yes_no(default_disposition(SIGSEGV) && default_disposition(SIGBUS)) + "\n");
    run_fiber(&announce_and_overflow);
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) ==
        expected_unexplained_overflow(child_stderr(d), "ours on top: yes\ninstalled: no, defaults back: yes\n"));
}

TEST_CASE("overflow: set_overflow_handler(true) after (false) installs it again") {
  auto d = fiber_test::run_in_child([] {
    make_a_fiber();
    fiber::set_overflow_handler(false);
    fiber::set_overflow_handler(true);
    say("installed: " + yes_no(fiber::overflow_handler_installed()) + "\n");
    run_fiber(&announce_and_overflow);
  });
  CHECK(d.signal == SIGSEGV);
  CHECK(child_stderr(d) == expected_overflow(child_stderr(d), "installed: yes\n"));
}

#endif  // _WIN32
