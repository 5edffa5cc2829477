// Runs code that must kill the process (abort, terminate, a fault) in a child, and
// reports how the child died and what it printed on stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace fiber_test {

struct death {
  int signal = 0;       // the signal that ended the child, 0 if it exited
  int exit_code = -1;   // its exit code, if it exited
  std::string stderr_text;
};

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

}  // namespace fiber_test
