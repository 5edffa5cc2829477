// Load for an echo server: many connections from fibers on one thread.
//
//   echo_client host port connections messages size
//
// Opens `connections` connections, then each sends `messages` messages of `size`
// bytes, one at a time, waiting for each to come back before the next. Prints the
// round trips per second of all connections together (from the moment all are
// connected), e.g.
//
//   100 connections, 10000 messages of 64 bytes each: 1000000 messages in 1.234 s, 810373 messages/s
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "fiber/event_loop.hpp"
#include "fiber/io.hpp"

static long talk(fiber::io::stream& conn, long messages, std::size_t size, int id) {
  std::vector<char> out(size), in(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>('a' + (id + i) % 26);
  long wrong = 0;
  for (long m = 0; m < messages; ++m) {
    conn.write_all(out.data(), size);
    conn.read_exact(in.data(), size);
    if (std::memcmp(in.data(), out.data(), size) != 0) ++wrong;
  }
  return wrong;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s host port connections messages size\n", argv[0]);
    return 2;
  }
  const std::string host = argv[1];
  const long port = std::atol(argv[2]);
  const long connections = std::atol(argv[3]);
  const long messages = std::atol(argv[4]);
  const long size = std::atol(argv[5]);
  if (port <= 0 || port > 65535 || connections <= 0 || messages < 0 || size <= 0) {
    std::fprintf(stderr, "echo_client: bad arguments\n");
    return 2;
  }

  try {
    return fiber::run([&] {
      std::vector<fiber::io::stream> conns;
      for (long c = 0; c < connections; ++c)
        conns.push_back(fiber::io::connect(host, static_cast<std::uint16_t>(port)));

      const auto start = std::chrono::steady_clock::now();
      std::vector<fiber::task<long>> clients;
      for (long c = 0; c < connections; ++c)
        clients.push_back(fiber::spawn(talk, std::ref(conns[c]), messages, static_cast<std::size_t>(size), int(c)));
      long wrong = 0;
      for (auto& t : clients) wrong += t.get();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

      const double total = double(connections) * double(messages);
      std::printf("%ld connections, %ld messages of %ld bytes each: %.0f messages in %.3f s, %.0f messages/s\n",
                  connections, messages, size, total, seconds, seconds > 0 ? total / seconds : 0.0);
      if (wrong) {
        std::fprintf(stderr, "echo_client: %ld echoes differed from what was sent\n", wrong);
        return 1;
      }
      return 0;
    });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_client: %s\n", e.what());
    return 1;
  }
}
