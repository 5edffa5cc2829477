// fiber's server of the "echo with work" benchmark (bench/report.py, the echo_work/
// rows): examples/echo_server's echo, one fiber per connection, where the server
// hashes what it reads before echoing it (peers/echo_work.h: the same work as
// echo_epoll.c's and echo_server.go's), on 1 worker or on N.
//
//   fiber_echo_work_server [--threads N] [--work PASSES] [--spread reuseport|deal|none] [--stats] [port]
//
// Listens on 127.0.0.1 (port 0 or none: any free port), prints the port on a line of
// its own, and serves until killed. With N workers the listener is spread over
// them (--spread):
//
//   reuseport  (the default) one listener per worker, all on the port (SO_REUSEPORT):
//              each worker's acceptor takes the connections the kernel gives its
//              socket, and serves each on its own worker (spawn_options::worker).
//              No connection crosses threads.
//   deal       one listener on worker 0, whose acceptor deals the connections out
//              in turn, connection i to worker i % N (spawn_options::worker).
//   none       one listener, and plain spawns: the runtime places each connection's
//              fiber (the spawner's worker, or an idle one: run_options).
//
// --stats: every second, a line on stderr with the connections and the reads each
// worker served so far.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "echo_work.h"
#include "fiber/event_loop.hpp"
#include "fiber/io.hpp"

namespace {

unsigned passes = 0;                  // --work
std::atomic<std::uint64_t> sink{0};   // every connection's hash, added when it ends

// --stats: connections and reads served by each worker.
struct alignas(64) served {
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> reads{0};
};
std::vector<served> per_worker(64);
bool stats = false;

void echo(fiber::io::stream conn) {
  char buf[16 * 1024];
  std::uint64_t h = ECHO_WORK_BASIS;
  served& mine = per_worker[fiber::this_runtime::worker() % per_worker.size()];
  if (stats) mine.connections.fetch_add(1, std::memory_order_relaxed);
  try {
    while (std::size_t n = conn.read(buf, sizeof buf)) {
      if (passes) h = echo_work(h, reinterpret_cast<const unsigned char*>(buf), n, passes);
      conn.write_all(buf, n);
      if (stats) mine.reads.fetch_add(1, std::memory_order_relaxed);
    }
  } catch (const std::system_error&) {
    // The client went away mid-stream (ECONNRESET, EPIPE): nothing to do.
  }
  sink.fetch_add(h, std::memory_order_relaxed);
}

fiber::io::listen_options options(bool reuse_port) { return {.backlog = 1024, .reuse_port = reuse_port}; }

}  // namespace

int main(int argc, char** argv) {
  unsigned threads = 1;
  long port = 0;
  std::string spread = "reuseport";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--work") && i + 1 < argc) {
      passes = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--spread") && i + 1 < argc) {
      spread = argv[++i];
    } else if (!std::strcmp(argv[i], "--stats")) {
      stats = true;
    } else if (argv[i][0] != '-') {
      port = std::atol(argv[i]);
    } else {
      std::fprintf(stderr, "usage: %s [--threads N] [--work PASSES] [--spread reuseport|deal|none] [--stats] [port]\n",
                   argv[0]);
      return 2;
    }
  }
  if (port < 0 || port > 65535 || threads < 1 || (spread != "reuseport" && spread != "deal" && spread != "none")) {
    std::fprintf(stderr, "fiber_echo_work_server: bad arguments\n");
    return 2;
  }
  try {
    fiber::run(
        [&] {
          const unsigned workers = fiber::this_runtime::workers();
          const bool reuse_port = workers > 1 && spread == "reuseport";
          // Every listener is made before the port is printed (the client connects then).
          std::vector<fiber::io::listener> listeners;
          listeners.push_back(fiber::io::listen("127.0.0.1", static_cast<std::uint16_t>(port), options(reuse_port)));
          const std::uint16_t bound = listeners[0].local_port();
          for (unsigned w = 1; reuse_port && w < workers; ++w)
            listeners.push_back(fiber::io::listen("127.0.0.1", bound, options(true)));
          std::printf("%u\n", bound);
          std::fflush(stdout);
          std::vector<fiber::task<void>> acceptors;
          if (stats)
            fiber::spawn([workers] {
              for (;;) {
                fiber::this_fiber::sleep_for(std::chrono::seconds(1));
                std::string line = "served (connections/reads) by worker:";
                for (unsigned w = 0; w < workers; ++w) {
                  char item[64];
                  std::snprintf(item, sizeof item, " %llu/%llu",
                                static_cast<unsigned long long>(per_worker[w].connections.load()),
                                static_cast<unsigned long long>(per_worker[w].reads.load()));
                  line += item;
                }
                std::fprintf(stderr, "%s\n", line.c_str());
              }
            }).detach();
          if (reuse_port) {
            // One acceptor per worker, on its own listener; each connection stays there.
            for (unsigned w = 0; w < workers; ++w)
              acceptors.push_back(fiber::spawn({.worker = w}, [l = std::move(listeners[w])]() mutable {
                const unsigned here = fiber::this_runtime::worker();
                for (;;) fiber::spawn({.worker = here}, echo, l.accept()).detach();
              }));
          } else {
            fiber::io::listener& l = listeners[0];
            const bool deal = workers > 1 && spread == "deal";
            for (unsigned i = 0;; ++i) {
              fiber::spawn_options where;
              if (deal) where.worker = i % workers;
              fiber::spawn(where, echo, l.accept()).detach();
            }
          }
          for (auto& a : acceptors) a.join();
        },
        fiber::run_options{.threads = threads});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fiber_echo_work_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
