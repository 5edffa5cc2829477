// Under abuse: a server out of file descriptors keeps serving.
//
//   emfile_echo_test [--clients N] [--nofile N] [--seconds S] [--] COMMAND...
//
// Runs COMMAND (examples/echo_server, possibly behind a cross-compiling emulator)
// with RLIMIT_NOFILE lowered to N (default 64: about 58 connections at once), by
// `sh -c 'ulimit -n N && exec COMMAND'`, and reads the port it listens on from
// the first line of its stdout. After one client served alone, opens N clients
// (default 200) to it at once, from this process (whose own limit is raised as far
// as it goes), each sending a distinct line and expecting it echoed back before
// closing. Passes if every client is served within S seconds (default 60) and the
// server still answers and runs at the end; it is then killed.
//
// A server whose accept() fails on EMFILE instead of backing off dies at the 59th
// connection, and the clients it had not served see it close.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "fiber/event_loop.hpp"
#include "fiber/io.hpp"

namespace {

using namespace std::chrono_literals;

struct server_process {
  pid_t pid = -1;
  int out = -1;  // the read end of its stdout
};

// Starts the command `argv` (null-terminated) with RLIMIT_NOFILE = nofile, soft
// and hard, and its stdout on a pipe. The shell's `ulimit -n` sets it, rather
// than setrlimit() here after fork(): under valgrind (./dev.sh valgrind runs this
// program under memcheck), the forked child is still valgrind's, which only
// pretends to lower the limit, and the server it then runs natively would not
// have it.
server_process start_server(char** argv, long nofile) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    std::perror("emfile_echo_test: pipe2");
    std::exit(1);
  }
  const std::string limit = std::to_string(nofile);
  std::vector<const char*> args = {"sh", "-c", "ulimit -n \"$0\" && exec \"$@\"", limit.c_str()};
  for (char** a = argv; *a; ++a) args.push_back(*a);
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("emfile_echo_test: fork");
    std::exit(1);
  }
  if (pid == 0) {
    // (Only async-signal-safe calls here.)
    if (::dup2(p[1], STDOUT_FILENO) < 0) ::_exit(126);
    ::execv("/bin/sh", const_cast<char* const*>(args.data()));
    const char msg[] = "emfile_echo_test: exec of /bin/sh failed\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(p[1]);
  return {pid, p[0]};
}

// The server's first line of output (its port), or "" if it ends or says nothing
// before `deadline`.
std::string read_first_line(int fd, std::chrono::steady_clock::time_point deadline) {
  std::string line;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) return "";
    pollfd pfd{fd, POLLIN, 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return "";
    char c;
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "";
    if (c == '\n') return line;
    line += c;
  }
}

// "running", or how it ended.
std::string server_status(pid_t pid) {
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) return "running";
  if (r < 0) return std::string("waitpid: ") + std::strerror(errno);
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + std::to_string(WTERMSIG(status));
  return "ended";
}

}  // namespace

int main(int argc, char** argv) {
  int clients = 200;
  long nofile = 64;
  long seconds = 60;
  int i = 1;
  for (; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--clients") && i + 1 < argc) {
      clients = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--nofile") && i + 1 < argc) {
      nofile = std::atol(argv[++i]);
    } else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = std::atol(argv[++i]);
    } else if (!std::strcmp(argv[i], "--")) {
      ++i;
      break;
    } else {
      break;
    }
  }
  if (i >= argc || clients <= 0 || nofile <= 0 || seconds <= 0) {
    std::fprintf(stderr, "usage: %s [--clients N] [--nofile N] [--seconds S] [--] COMMAND...\n", argv[0]);
    return 2;
  }

  // This side needs a socket per client: raise its own soft limit as far as allowed.
  rlimit own{};
  if (::getrlimit(RLIMIT_NOFILE, &own) == 0) {
    const rlim_t want = static_cast<rlim_t>(clients) + 64;
    if (own.rlim_cur != RLIM_INFINITY && own.rlim_cur < want) {
      own.rlim_cur = own.rlim_max == RLIM_INFINITY || own.rlim_max > want ? want : own.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &own);
    }
  }

  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::seconds(seconds);
  server_process server = start_server(argv + i, nofile);
  const std::string first = read_first_line(server.out, deadline);
  char* end = nullptr;
  const long port = std::strtol(first.c_str(), &end, 10);
  if (first.empty() || *end != '\0' || port <= 0 || port > 65535) {
    std::fprintf(stderr, "emfile_echo_test: no port from the server (first line \"%s\"); server %s\n", first.c_str(),
                 server_status(server.pid).c_str());
    ::kill(server.pid, SIGKILL);
    ::waitpid(server.pid, nullptr, 0);
    return 1;
  }
  std::printf("server pid %d listens on port %ld with RLIMIT_NOFILE %ld; %d clients\n", static_cast<int>(server.pid),
              port, nofile, clients);
  std::fflush(stdout);

  int served = 0;
  std::vector<std::string> failures;
  try {
    fiber::run([&] {
      const fiber::clock::time_point until = deadline;  // (fiber::clock is steady_clock)
      // First one client alone, served to the end (the server has closed its side
      // when this one reads EOF), before the server runs out of fds. Under UBSan,
      // the server's vptr check reads a vtable through a pipe the first time it
      // meets a type, which fails with no fd free and is reported as an error;
      // the types of a connection's whole life are met here.
      try {
        fiber::io::stream first = fiber::io::connect("127.0.0.1", static_cast<std::uint16_t>(port), until);
        first.write_all("first\n", until);
        const auto reply = first.read_line(until);
        first.shutdown_write();
        char c;
        if (reply != "first" || first.read(&c, 1, until) != 0)
          failures.push_back("the first client: no echo, or no end of stream after it");
      } catch (const std::exception& e) {
        failures.push_back(std::string("the first client: ") + e.what());
      }
      // All connected at once first (on loopback the kernel completes each
      // connection before the server accepts it): the server has `clients`
      // connections to serve, far more than its fds.
      std::vector<fiber::io::stream> conns(static_cast<std::size_t>(clients));
      for (int c = 0; c < clients; ++c) {
        try {
          conns[static_cast<std::size_t>(c)] = fiber::io::connect("127.0.0.1", static_cast<std::uint16_t>(port), until);
        } catch (const std::exception& e) {
          failures.push_back("client " + std::to_string(c) + ": " + e.what());
        }
      }
      std::vector<fiber::task<void>> tasks;
      tasks.reserve(static_cast<std::size_t>(clients));
      for (int c = 0; c < clients; ++c) {
        if (!conns[static_cast<std::size_t>(c)]) continue;
        tasks.push_back(fiber::spawn([&, c] {
          fiber::io::stream& s = conns[static_cast<std::size_t>(c)];
          const std::string message = "client " + std::to_string(c) + " of " + std::to_string(clients) + " says " +
                                      std::string(static_cast<std::size_t>(c % 50), static_cast<char>('a' + c % 26));
          try {
            s.write_all(message + "\n", until);
            const auto reply = s.read_line(until);
            if (!reply)
              failures.push_back("client " + std::to_string(c) + ": the server closed the connection unanswered");
            else if (*reply != message)
              failures.push_back("client " + std::to_string(c) + ": got \"" + *reply + "\"");
            else
              ++served;
          } catch (const std::exception& e) {
            failures.push_back("client " + std::to_string(c) + ": " + e.what());
          }
          s.close();
        }));
      }
      for (auto& t : tasks) t.join();
      // And the server still answers (a check that a server on its way out
      // cannot pass, as waitpid() alone might).
      try {
        fiber::io::stream last = fiber::io::connect("127.0.0.1", static_cast<std::uint16_t>(port), until);
        last.write_all("last\n", until);
        if (last.read_line(until) != "last") failures.push_back("the last client: no echo");
      } catch (const std::exception& e) {
        failures.push_back(std::string("the last client: ") + e.what());
      }
    });
  } catch (const std::exception& e) {
    failures.push_back(std::string("the clients' loop: ") + e.what());
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const std::string status = server_status(server.pid);
  if (status == "running") {
    ::kill(server.pid, SIGKILL);
    ::waitpid(server.pid, nullptr, 0);
  }
  ::close(server.out);

  std::printf("%d of %d clients served in %.2f s; the server was %s at the end\n", served, clients, took,
              status.c_str());
  const std::size_t shown = failures.size() < 10 ? failures.size() : 10;
  for (std::size_t f = 0; f < shown; ++f) std::printf("  %s\n", failures[f].c_str());
  if (failures.size() > shown) std::printf("  ... and %zu more\n", failures.size() - shown);
  const bool ok = served == clients && failures.empty() && status == "running";
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
