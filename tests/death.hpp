// Runs code that must kill the process (abort, terminate, a fault) in a child, and
// reports how the child died and what it printed on stderr.
#pragma once

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

#include <catch2/catch.hpp>
#include <csignal>
#else
#include <sys/wait.h>
#include <unistd.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <string>

namespace fiber_test {

struct death {
  int signal = 0;       // the signal that ended the child, 0 if it exited
  int exit_code = -1;   // its exit code, if it exited
  std::string stderr_text;
};

#ifdef _WIN32
// Windows has no fork. The child is the test executable run again for the current
// test case alone, with FIBER_TEST_DEATH_CHILD in its environment naming which call
// of run_in_child in that test case is the one to run `f` in (the code before it
// runs again in the child, as it ran in the parent before a fork). A test case may
// call run_in_child several times, provided none is inside a SECTION and the
// assertions on earlier calls are CHECKs (in the child, an earlier call returns an
// empty death, on which a REQUIRE would end the test case before the call wanted).
//
// How the child ended is reported as POSIX would: an unhandled access violation,
// stack overflow or guard-page hit is SIGSEGV, an illegal instruction SIGILL, an
// arithmetic fault SIGFPE, abort() SIGABRT (the Microsoft C runtime's abort()
// exits with status 3; the child's SIGABRT handler makes sure of it; 0xC0000409 is
// UCRT's fast-fail abort); any other status is an exit code.
namespace detail {

inline constexpr const char* death_child_variable = "FIBER_TEST_DEATH_CHILD";
inline constexpr DWORD abort_exit_status = 3;
inline constexpr DWORD child_timeout_ms = 120000;

// Which call of run_in_child this is within the running test case: 1, 2, ...
inline int next_call_in_test_case(const std::string& test) {
  static std::string current;
  static int calls = 0;
  if (test != current) {
    current = test;
    calls = 0;
  }
  return ++calls;
}

inline void on_abort_signal(int) { ::TerminateProcess(::GetCurrentProcess(), abort_exit_status); }

inline LONG WINAPI on_unhandled_exception(EXCEPTION_POINTERS* e) {
  // End the way an unhandled exception ends a process, without a debugger or an
  // error-reporting dialog in between.
  ::TerminateProcess(::GetCurrentProcess(), e->ExceptionRecord->ExceptionCode);
  return EXCEPTION_CONTINUE_SEARCH;
}

// Catch's test-spec syntax gives `\`, `,`, `[` and `]` a meaning; escaped, the
// name matches itself only.
inline std::string catch_test_spec(const std::string& name) {
  std::string spec;
  for (char c : name) {
    if (c == '\\' || c == ',' || c == '[' || c == ']') spec += '\\';
    spec += c;
  }
  return spec;
}

// One argument of a command line, as the C runtime splits it back into argv.
inline std::string quote_argument(const std::string& arg) {
  std::string quoted = "\"";
  std::size_t backslashes = 0;
  for (char c : arg) {
    if (c == '\\') {
      ++backslashes;
      continue;
    }
    quoted.append(c == '"' ? 2 * backslashes + 1 : backslashes, '\\');
    quoted += c;
    backslashes = 0;
  }
  quoted.append(2 * backslashes, '\\');
  quoted += '"';
  return quoted;
}

inline int signal_for_status(DWORD status) {
  switch (status) {
    case abort_exit_status:
    case 0xC0000409:  // STATUS_STACK_BUFFER_OVERRUN: __fastfail, as UCRT's abort() uses
      return SIGABRT;
    case EXCEPTION_ACCESS_VIOLATION:
    case EXCEPTION_STACK_OVERFLOW:
    case EXCEPTION_GUARD_PAGE:
    case EXCEPTION_IN_PAGE_ERROR:
      return SIGSEGV;
    case EXCEPTION_ILLEGAL_INSTRUCTION:
    case EXCEPTION_PRIV_INSTRUCTION:
      return SIGILL;
    case EXCEPTION_INT_DIVIDE_BY_ZERO:
    case EXCEPTION_INT_OVERFLOW:
    case EXCEPTION_FLT_DIVIDE_BY_ZERO:
    case EXCEPTION_FLT_INVALID_OPERATION:
    case EXCEPTION_FLT_OVERFLOW:
    case EXCEPTION_FLT_UNDERFLOW:
    case EXCEPTION_FLT_INEXACT_RESULT:
    case EXCEPTION_FLT_DENORMAL_OPERAND:
    case EXCEPTION_FLT_STACK_CHECK:
      return SIGFPE;
    default:
      return 0;
  }
}

// In the child: report deaths as above, then run.
inline void prepare_child() {
  ::SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX | SEM_NOOPENFILEERRORBOX);
  ::SetUnhandledExceptionFilter(&on_unhandled_exception);
  std::signal(SIGABRT, &on_abort_signal);
}

// In the parent: runs this executable for `test`, telling it to run call `call`.
inline death run_child_process(const std::string& test, int call) {
  death d;
  SECURITY_ATTRIBUTES inherit{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
  HANDLE read_end = nullptr, write_end = nullptr;
  if (!::CreatePipe(&read_end, &write_end, &inherit, 0)) std::abort();
  ::SetHandleInformation(read_end, HANDLE_FLAG_INHERIT, 0);
  HANDLE null_device = ::CreateFileA("NUL", GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE, &inherit,
                                     OPEN_EXISTING, 0, nullptr);
  char exe[32768];
  const DWORD exe_length = ::GetModuleFileNameA(nullptr, exe, sizeof exe);
  if (exe_length == 0 || exe_length >= sizeof exe) std::abort();
  std::string command = quote_argument(exe) + " " + quote_argument(catch_test_spec(test));

  STARTUPINFOA startup{};
  startup.cb = sizeof startup;
  startup.dwFlags = STARTF_USESTDHANDLES;
  startup.hStdInput = null_device;
  startup.hStdOutput = null_device;  // the child's own test report is not ours to show
  startup.hStdError = write_end;
  PROCESS_INFORMATION child{};
  std::fflush(nullptr);
  ::SetEnvironmentVariableA(death_child_variable, std::to_string(call).c_str());
  const BOOL created = ::CreateProcessA(nullptr, command.data(), nullptr, nullptr, TRUE, 0, nullptr, nullptr,
                                        &startup, &child);
  const DWORD create_error = ::GetLastError();
  ::SetEnvironmentVariableA(death_child_variable, nullptr);
  ::CloseHandle(write_end);
  if (null_device != INVALID_HANDLE_VALUE) ::CloseHandle(null_device);
  if (!created) {
    ::CloseHandle(read_end);
    d.stderr_text = "run_in_child: CreateProcess failed with error " + std::to_string(create_error);
    return d;
  }

  // Read stderr while the child runs (a full pipe would block it), but stop when it
  // has ended even if something it started still holds the pipe open.
  auto drain = [&] {
    DWORD available = 0;
    char buf[512];
    while (::PeekNamedPipe(read_end, nullptr, 0, nullptr, &available, nullptr) && available > 0) {
      DWORD got = 0;
      if (!::ReadFile(read_end, buf, available < sizeof buf ? available : DWORD{sizeof buf}, &got, nullptr) || got == 0)
        break;
      d.stderr_text.append(buf, got);
    }
  };
  const ULONGLONG deadline = ::GetTickCount64() + child_timeout_ms;
  for (;;) {
    drain();
    if (::WaitForSingleObject(child.hProcess, 10) == WAIT_OBJECT_0) break;
    if (::GetTickCount64() > deadline) {
      ::TerminateProcess(child.hProcess, WAIT_TIMEOUT);
      ::WaitForSingleObject(child.hProcess, INFINITE);
      d.stderr_text += "\nrun_in_child: the child did not end within " + std::to_string(child_timeout_ms / 1000) + " s";
      break;
    }
  }
  drain();
  ::CloseHandle(read_end);
  DWORD status = 0;
  ::GetExitCodeProcess(child.hProcess, &status);
  ::CloseHandle(child.hProcess);
  ::CloseHandle(child.hThread);
  d.signal = signal_for_status(status);
  if (d.signal == 0) d.exit_code = static_cast<int>(status);
  return d;
}

}  // namespace detail

template <class F>
death run_in_child(F&& f) {
  const std::string test = Catch::getResultCapture().getCurrentTestName();
  const int call = detail::next_call_in_test_case(test);
  char wanted[16];
  const DWORD n = ::GetEnvironmentVariableA(detail::death_child_variable, wanted, sizeof wanted);
  if (n > 0 && n < sizeof wanted) {
    // We are the child.
    if (std::atoi(wanted) == call) {
      detail::prepare_child();
      f();
      std::_Exit(0);
    }
    return death{};
  }
  return detail::run_child_process(test, call);
}

#else
template <class F>
death run_in_child(F&& f) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) std::abort();
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipe_fds[1], 2);
    ::close(pipe_fds[0]);
    f();
    std::_Exit(0);
  }
  ::close(pipe_fds[1]);
  death d;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0) d.stderr_text.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) d.signal = WTERMSIG(status);
  if (WIFEXITED(status)) d.exit_code = WEXITSTATUS(status);
  return d;
}
#endif

}  // namespace fiber_test
