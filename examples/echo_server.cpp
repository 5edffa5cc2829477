// A TCP echo server: one fiber per connection, all on one thread.
//
//   echo_server [port] [--once N] [--host HOST]
//
// Listens on HOST (default 127.0.0.1) and PORT (default 0: any free port), prints
// the port on a line of its own, and echoes whatever each connection sends until
// it closes. Runs until killed, or with --once N, until N connections have been
// served.
//
// Under abuse it goes on serving the connections it has: out of fds (ulimit -n),
// accept() waits until some close (fiber::io::listener::accept), and a connection
// whose fiber cannot be made (no memory for it) is closed with a line on stderr.
// (A fiber that cannot get its stack when it first runs ends failed; the loop
// says so on stderr, and its connection is closed with it.)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "fiber/event_loop.hpp"
#include "fiber/io.hpp"

static void echo(fiber::io::stream conn) {
  char buf[16 * 1024];
  try {
    while (std::size_t n = conn.read(buf, sizeof buf)) conn.write_all(buf, n);
  } catch (const std::system_error&) {
    // The client went away mid-stream (ECONNRESET, EPIPE): nothing to do.
  }
}

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  long port = 0;
  long once = -1;  // serve forever
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--once") && i + 1 < argc) {
      once = std::atol(argv[++i]);
    } else if (!std::strcmp(argv[i], "--host") && i + 1 < argc) {
      host = argv[++i];
    } else if (argv[i][0] != '-' && port == 0) {
      port = std::atol(argv[i]);
    } else {
      std::fprintf(stderr, "usage: %s [port] [--once N] [--host HOST]\n", argv[0]);
      return 2;
    }
  }
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "echo_server: bad port %ld\n", port);
    return 2;
  }

  try {
    return fiber::run([&] {
      auto server = fiber::io::listen(host, static_cast<std::uint16_t>(port), 1024);
      std::printf("%u\n", server.local_port());
      std::fflush(stdout);
      std::vector<fiber::task<void>> served;
      for (long n = 0; once < 0 || n < once; ++n) {
        fiber::io::stream conn = server.accept();
        try {
          auto task = fiber::spawn(echo, std::move(conn));
          if (once < 0)
            task.detach();
          else
            served.push_back(std::move(task));
        } catch (const std::bad_alloc& e) {  // fiber::stack_allocation_error is one
          conn.close();  // (if spawn had not taken it yet)
          std::fprintf(stderr, "echo_server: dropped a connection: %s\n", e.what());
        }
      }
      for (auto& conn : served) {
        try {
          conn.join();
        } catch (const std::exception& e) {  // e.g. its fiber got no stack
          std::fprintf(stderr, "echo_server: a connection failed: %s\n", e.what());
        }
      }
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
}
