// fiber::io: socketpairs, pipes and loopback TCP, driven by fibers on one thread.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "death.hpp"
#include "fiber/debug.hpp"
#include "fiber/event_loop.hpp"
#include "fiber/fiber.h"
#include "fiber/io.hpp"
#include "environment.hpp"

using namespace std::chrono_literals;
using fiber::io::stream;

namespace {

std::pair<stream, stream> socket_pair() {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  return {stream::adopt(fds[0]), stream::adopt(fds[1])};
}

// {read end, write end}
std::pair<stream, stream> pipe_pair() {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  return {stream::adopt(fds[0]), stream::adopt(fds[1])};
}

bool ipv6_loopback_available() {
  const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Echoes every connection `server` accepts, `count` of them, each in its own fiber.
fiber::task<void> spawn_echo_server(fiber::io::listener& server, int count) {
  return fiber::spawn([&server, count] {
    std::vector<fiber::task<void>> conns;
    for (int i = 0; i < count; ++i)
      conns.push_back(fiber::spawn([c = server.accept()]() mutable {
        char buf[4096];
        while (std::size_t n = c.read(buf, sizeof buf)) c.write_all(buf, n);
      }));
    for (auto& t : conns) t.join();
  });
}

std::vector<char> pattern(std::size_t n, unsigned seed) {
  std::vector<char> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& c : v) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return v;
}

int error_code(const std::system_error& e) { return e.code().value(); }

}  // namespace

TEST_CASE("io: a socketpair carries bytes both ways between two fibers", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    auto peer = fiber::spawn([&b] {
      char buf[16];
      b.read_exact(buf, 5);
      REQUIRE(std::string(buf, 5) == "ping!");
      b.write_all("pong");
    });
    a.write_all("ping!");
    char buf[16];
    a.read_exact(buf, 4);
    REQUIRE(std::string(buf, 4) == "pong");
    peer.get();
    b.close();
    REQUIRE(a.read(buf, sizeof buf) == 0);  // EOF
    REQUIRE(a.read(buf, sizeof buf) == 0);  // and again
  });
}

TEST_CASE("io: a pipe: the reader parks until the writer writes, then sees EOF", "[io]") {
  fiber::run([] {
    stream r, w;
    std::tie(r, w) = pipe_pair();
    std::string got;
    auto reader = fiber::spawn([&r, &got] {
      char buf[64];
      while (std::size_t n = r.read(buf, sizeof buf)) got.append(buf, n);
    });
    fiber::this_fiber::yield();  // the reader is parked now
    REQUIRE(got.empty());
    w.write_all("abc");
    // The reader wakes when the loop next polls. A timer that is already due may
    // run first (under valgrind 5 ms pass before the loop polls), so wait in
    // short sleeps, up to 5 s.
    for (int i = 0; got.empty() && i < 5000; ++i) fiber::this_fiber::sleep_for(1ms);
    REQUIRE(got == "abc");
    w.write_all("def");
    w.close();  // EOF for the reader
    reader.get();
    REQUIRE(got == "abcdef");
  });
}

TEST_CASE("io: a pipe whose reader closed: write throws EPIPE (SIGPIPE ignored)", "[io]") {
  auto old = std::signal(SIGPIPE, SIG_IGN);
  fiber::run([] {
    stream r, w;
    std::tie(r, w) = pipe_pair();
    r.close();
    try {
      w.write_all("x");
      FAIL("write_all did not throw");
    } catch (const std::system_error& e) {
      REQUIRE(error_code(e) == EPIPE);
      REQUIRE(std::string(e.what()).find("fiber::io::stream::write_all") != std::string::npos);
    }
  });
  std::signal(SIGPIPE, old);
}

TEST_CASE("io: raw fds: read, write and wait_readable on a pipe", "[io]") {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  fiber::run([&fds] {
    auto t0 = fiber::clock::now();
    REQUIRE_FALSE(fiber::io::wait_readable(fds[0], 20ms));
    REQUIRE(fiber::clock::now() - t0 >= 20ms);
    REQUIRE(fiber::io::wait_writable(fds[1], 1s));
    auto writer = fiber::spawn([&fds] {
      fiber::this_fiber::sleep_for(5ms);
      REQUIRE(fiber::io::write(fds[1], "hello", 5) == 5);
    });
    char buf[8];
    REQUIRE(fiber::io::read(fds[0], buf, sizeof buf) == 5);  // parks until the writer wrote
    REQUIRE(std::string(buf, 5) == "hello");
    writer.get();
    REQUIRE((::fcntl(fds[0], F_GETFL) & O_NONBLOCK) != 0);
    REQUIRE_THROWS_AS(fiber::io::read(fds[0], buf, sizeof buf, fiber::clock::now() + 10ms), fiber::io::timeout_error);
    REQUIRE(fiber::io::wait_readable(fds[0], fiber::clock::now()) == false);
    REQUIRE(fiber::io::write(fds[1], "x", 1) == 1);
    REQUIRE(fiber::io::wait_readable(fds[0], fiber::clock::now() + 1s));
  });
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("io: loopback TCP over IPv4: listen, accept, connect, echo", "[io]") {
  fiber::run([] {
    auto server = fiber::io::listen("127.0.0.1", 0);
    REQUIRE(server.local_port() != 0);
    auto echo = spawn_echo_server(server, 1);
    auto c = fiber::io::connect("127.0.0.1", server.local_port());
    c.write_all("hello\nworld\n");
    REQUIRE(c.read_line() == "hello");
    REQUIRE(c.read_line() == "world");
    c.shutdown_write();  // the echo sees EOF and closes: so do we
    REQUIRE(c.read_line() == std::nullopt);
    echo.get();
  });
}

TEST_CASE("io: loopback TCP over IPv6 (skipped without ::1)", "[io]") {
  if (!ipv6_loopback_available()) {
    WARN("::1 is not available here: IPv6 test skipped");
    return;
  }
  fiber::run([] {
    auto server = fiber::io::listen("::1", 0);
    auto echo = spawn_echo_server(server, 1);
    auto c = fiber::io::connect("::1", server.local_port());
    const auto data = pattern(100000, 6);
    auto writer = fiber::spawn([&] {
      c.write_all(data.data(), data.size());
      c.shutdown_write();
    });
    std::vector<char> back(data.size());
    c.read_exact(back.data(), back.size());
    REQUIRE((back == data));
    writer.get();
    echo.get();
  });
}

TEST_CASE("io: connect(\"localhost\") reaches a server on 127.0.0.1", "[io]") {
  fiber::run([] {
    auto server = fiber::io::listen("127.0.0.1", 0);
    auto echo = spawn_echo_server(server, 1);
    auto c = fiber::io::connect("localhost", server.local_port());
    c.write_all("x\n");
    REQUIRE(c.read_line() == "x");
    c.close();
    echo.get();
  });
}

TEST_CASE("io: 100 connections echo concurrently on one thread", "[io]") {
  static constexpr int connections = 100;
  static constexpr int messages = 50;
  fiber::run([] {
    auto server = fiber::io::listen("127.0.0.1", 0);
    auto echo = spawn_echo_server(server, connections);
    std::vector<fiber::task<int>> clients;
    for (int i = 0; i < connections; ++i)
      clients.push_back(fiber::spawn([i, port = server.local_port()] {
        auto c = fiber::io::connect("127.0.0.1", port);
        int ok = 0;
        for (int m = 0; m < messages; ++m) {
          const std::string msg = "client " + std::to_string(i) + " message " + std::to_string(m) + "\n";
          c.write_all(msg);
          auto line = c.read_line();
          if (line && *line + "\n" == msg) ++ok;
          if (m % 7 == 0) fiber::this_fiber::yield();
        }
        return ok;
      }));
    for (auto& t : clients) REQUIRE(t.get() == messages);
    echo.get();
  });
}

TEST_CASE("io: a reader parks and the other fibers run meanwhile", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    std::vector<std::string> log;
    auto reader = fiber::spawn([&log, &a = a] {
      log.push_back("reader waits");
      char c;
      a.read_exact(&c, 1);
      log.push_back(std::string("reader got ") + c);
    });
    fiber::this_fiber::yield();  // the reader starts and parks
    auto counter = fiber::spawn([&log] {
      for (int i = 0; i < 3; ++i) {
        log.push_back("tick " + std::to_string(i));
        fiber::this_fiber::sleep_for(1ms);
      }
    });
    counter.get();
    log.push_back("write");
    b.write_all("!");
    reader.get();
    REQUIRE(log == std::vector<std::string>{"reader waits", "tick 0", "tick 1", "tick 2", "write", "reader got !"});
  });
}

TEST_CASE("io: a peer closing mid-stream is an ordinary outcome", "[io]") {
  fiber::run([] {
    SECTION("read returns 0, read_line nullopt, read_exact throws incomplete_read") {
      stream a, b;
    std::tie(a, b) = socket_pair();
      b.write_all("abc");
      b.close();
      char buf[8];
      try {
        a.read_exact(buf, 8);
        FAIL("read_exact did not throw");
      } catch (const fiber::io::incomplete_read& e) {
        REQUIRE(e.expected() == 8);
        REQUIRE(e.received() == 3);
        REQUIRE(std::string(buf, 3) == "abc");
      }
      REQUIRE(a.read(buf, sizeof buf) == 0);
      REQUIRE(a.read_line() == std::nullopt);
    }
    SECTION("socketpair: write throws EPIPE, no SIGPIPE") {
      stream a, b;
    std::tie(a, b) = socket_pair();
      b.close();
      try {
        a.write_all("x");
        FAIL("write_all did not throw");
      } catch (const std::system_error& e) {
        REQUIRE((error_code(e) == EPIPE || error_code(e) == ECONNRESET));
      }
    }
    SECTION("TCP: the server closes while the client writes a stream of data") {
      auto server = fiber::io::listen("127.0.0.1", 0);
      auto closer = fiber::spawn([&server] {
        auto c = server.accept();
        char buf[1000];
        c.read_exact(buf, sizeof buf);  // some, then goes away with data unread
      });
      auto c = fiber::io::connect("127.0.0.1", server.local_port());
      const auto chunk = pattern(64 * 1024, 1);
      int code = 0;
      try {
        for (int i = 0; i < 10000; ++i) c.write_all(chunk.data(), chunk.size());
      } catch (const std::system_error& e) {
        code = error_code(e);
      }
      REQUIRE((code == EPIPE || code == ECONNRESET));
      closer.get();
    }
  });
}

TEST_CASE("io: a refused connection throws std::system_error ECONNREFUSED naming it", "[io]") {
  fiber::run([] {
    std::uint16_t port;
    {
      auto l = fiber::io::listen("127.0.0.1", 0);
      port = l.local_port();
    }  // closed: nobody listens there now
    try {
      fiber::io::connect("127.0.0.1", port);
      FAIL("connect did not throw");
    } catch (const std::system_error& e) {
      REQUIRE(e.code() == std::errc::connection_refused);
      const std::string what = e.what();
      REQUIRE(what.find("fiber::io::connect 127.0.0.1:" + std::to_string(port)) == 0);
    }
    if (ipv6_loopback_available()) {
      try {
        fiber::io::connect("::1", port);
        FAIL("connect did not throw");
      } catch (const std::system_error& e) {
        REQUIRE(e.code() == std::errc::connection_refused);
        REQUIRE(std::string(e.what()).find("[::1]:") != std::string::npos);
      }
    }
  });
}

TEST_CASE("io: timeouts end the wait, never early", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    char buf[4];
    auto t0 = fiber::clock::now();
    REQUIRE_THROWS_AS(a.read(buf, sizeof buf, 30ms), fiber::io::timeout_error);
    REQUIRE(fiber::clock::now() - t0 >= 30ms);

    t0 = fiber::clock::now();
    REQUIRE_FALSE(a.wait_readable(20ms));
    REQUIRE(fiber::clock::now() - t0 >= 20ms);
    REQUIRE(a.wait_writable(20ms));

    t0 = fiber::clock::now();
    REQUIRE_THROWS_AS(a.read_line(fiber::clock::now() + 20ms), fiber::timed_out);  // a timeout_error is a timed_out
    REQUIRE(fiber::clock::now() - t0 >= 20ms);

    // The stream is fine after a timeout, and data already there beats the deadline.
    b.write_all("ok");
    REQUIRE(a.wait_readable(fiber::clock::now()));
    REQUIRE(a.read(buf, sizeof buf, fiber::clock::now()) == 2);

    auto server = fiber::io::listen("127.0.0.1", 0);
    t0 = fiber::clock::now();
    REQUIRE_THROWS_AS(server.accept(20ms), fiber::io::timeout_error);
    REQUIRE(fiber::clock::now() - t0 >= 20ms);

    try {
      a.read_exact(buf, 1, 5ms);
      FAIL("no timeout");
    } catch (const fiber::io::timeout_error& e) {
      REQUIRE(std::string(e.what()) == "fiber::io::stream::read_exact: timed out");
    }
  });
}

TEST_CASE("io: a deadline_scope around a read throws fiber::timed_out", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    char buf[4];
    const auto t0 = fiber::clock::now();
    try {
      fiber::deadline_scope scope(25ms);
      a.read(buf, sizeof buf);
      FAIL("no timeout");
    } catch (const fiber::io::timeout_error&) {
      FAIL("the scope's deadline, not the read's own");
    } catch (const fiber::timed_out&) {
    }
    REQUIRE(fiber::clock::now() - t0 >= 25ms);
    // The scope bounds write_all too: a socketpair fills up.
    const auto chunk = pattern(1 << 20, 2);
    REQUIRE_THROWS_AS(([&] {
                        fiber::deadline_scope scope(20ms);
                        for (;;) a.write_all(chunk.data(), chunk.size());
                      }()),
                      fiber::timed_out);
  });
}

TEST_CASE("io: cancelling a task blocked in read or accept - the objects stay usable", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    bool saw_cancel = false;
    auto reader = fiber::spawn([&a, &saw_cancel] {
      char buf[4];
      try {
        a.read(buf, sizeof buf);
      } catch (const fiber::cancelled&) {
        saw_cancel = true;
        throw;
      }
    });
    fiber::this_fiber::yield();
    reader.cancel();
    REQUIRE_THROWS_AS(reader.get(), fiber::cancelled);
    REQUIRE(saw_cancel);
    // Still usable: a new reader gets the data.
    b.write_all("hi");
    char buf[2];
    a.read_exact(buf, 2);
    REQUIRE(std::string(buf, 2) == "hi");

    auto server = fiber::io::listen("127.0.0.1", 0);
    auto acceptor = fiber::spawn([&server] { server.accept(); });
    fiber::this_fiber::sleep_for(2ms);
    acceptor.cancel();
    REQUIRE_THROWS_AS(acceptor.get(), fiber::cancelled);
    auto echo = spawn_echo_server(server, 1);
    auto c = fiber::io::connect("127.0.0.1", server.local_port());
    c.write_all("again\n");
    REQUIRE(c.read_line() == "again");
    c.close();
    echo.get();
    a.close();
    REQUIRE_FALSE(a);
  });
}

TEST_CASE("io: close() from another fiber wakes a blocked reader with EBADF", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    auto reader = fiber::spawn([&a] {
      char buf[4];
      a.read(buf, sizeof buf);
    });
    fiber::this_fiber::yield();
    a.close();
    try {
      reader.get();
      FAIL("read did not throw");
    } catch (const std::system_error& e) {
      REQUIRE(error_code(e) == EBADF);
    }
  });
}

TEST_CASE("io: read_line over a stream split at awkward places", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    auto writer = fiber::spawn([&b] {
      for (const char* piece : {"hel", "lo\nwor", "ld\n", "\n", "a", "b\nc", "d\nrest of it", "\nlast"}) {
        b.write_all(piece);
        fiber::this_fiber::sleep_for(1ms);
      }
      b.close();
    });
    std::vector<std::string> lines;
    while (auto line = a.read_line()) lines.push_back(*line);
    REQUIRE(lines == std::vector<std::string>{"hello", "world", "", "ab", "cd", "rest of it", "last"});
    writer.get();
  });
}

TEST_CASE("io: read() and read_exact() take what read_line() buffered first", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    b.write_all("header\nbody-bytes");
    REQUIRE(a.read_line() == "header");
    char buf[10];
    a.read_exact(buf, 4);
    REQUIRE(std::string(buf, 4) == "body");
    REQUIRE(a.read(buf, sizeof buf) == 6);
    REQUIRE(std::string(buf, 6) == "-bytes");
    // A line longer than the buffer, and one longer than the limit.
    const std::string big(100000, 'x');
    auto writer = fiber::spawn([&] { b.write_all(big + "\n" + big + "\n"); });
    REQUIRE((a.read_line() == big));
    REQUIRE_THROWS_AS(a.read_line(fiber::io::no_deadline, 1000), std::length_error);
    writer.get();
  });
}

TEST_CASE("io: 8 MB through a socketpair, both sides in fibers", "[io]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    const auto data = pattern(8 << 20, 3);
    auto writer = fiber::spawn([&] {
      std::size_t off = 0;
      std::size_t step = 1;
      while (off < data.size()) {  // assorted write sizes
        const std::size_t n = std::min(step, data.size() - off);
        b.write_all(data.data() + off, n);
        off += n;
        step = step * 3 % 300007 + 1;
      }
      b.shutdown_write();
    });
    std::vector<char> got;
    got.reserve(data.size());
    std::vector<char> buf(100000);
    while (std::size_t n = a.read(buf.data(), buf.size())) got.insert(got.end(), buf.begin(), buf.begin() + n);
    writer.get();
    REQUIRE(got.size() == data.size());
    REQUIRE((got == data));  // a bool: Catch would print 8 MB
  });
}

TEST_CASE("io: misuse is reported", "[io]") {
  stream a, b;
    std::tie(a, b) = socket_pair();
  char c;
  // Outside a fiber: data already there is read; a read that would wait throws.
  b.write_all("x");
  REQUIRE(a.read(&c, 1) == 1);
  REQUIRE_THROWS_AS(a.read(&c, 1), fiber::error);
  stream empty;
  REQUIRE_FALSE(empty);
  REQUIRE(empty.fd() == -1);
  REQUIRE_THROWS_AS(empty.read(&c, 1), std::system_error);
  REQUIRE_THROWS_AS(stream::adopt(-1), std::system_error);
  // Moving keeps the fd.
  const int fd = a.fd();
  stream moved = std::move(a);
  REQUIRE(moved.fd() == fd);
  REQUIRE_FALSE(a);
}

TEST_CASE("io: destroying a stream while a fiber is blocked on it aborts with a message", "[io]") {
  auto d = fiber_test::run_in_child([] {
    std::signal(SIGABRT, SIG_DFL);  // die quietly: not through Catch's handler
    fiber::run([] {
      auto pair = std::make_unique<std::pair<stream, stream>>(socket_pair());
      auto reader = fiber::spawn([&] {
        char c;
        (void)pair->first.read(&c, 1);  // parks: nothing was written
      });
      fiber::this_fiber::yield();  // the reader is parked in read() now
      pair.reset();                // destroys the stream under it
    });
  });
  CHECK(d.signal == SIGABRT);
  CHECK_THAT(d.stderr_text, Catch::Contains("destroyed while a fiber was blocked on it"));
}

TEST_CASE("io: after a short read: data and the end of stream in one edge, datagrams queued together", "[io]") {
  // After a read that comes back short from a byte stream, the next read waits for
  // a new edge first. That must neither miss an end of stream that came with the
  // data, nor apply to datagrams, where a short read leaves the next one queued.
  fiber::run([] {
    SECTION("byte stream: data, then shutdown, before the reader looks") {
      stream a, b;
      std::tie(a, b) = socket_pair();
      char buf[64];
      auto reader = fiber::spawn([&] {
        std::string got;
        while (std::size_t n = a.read(buf, sizeof buf, 2s)) got.append(buf, n);
        return got;
      });
      fiber::this_fiber::yield();  // the reader parks: registered now
      b.write_all("x");
      fiber::this_fiber::sleep_for(2ms);  // the reader takes "x" (short) and waits
      b.write_all("yz");
      b.shutdown_write();  // one edge for "yz" and the end
      CHECK(reader.get() == "xyz");  // and the end of stream, without a timeout
    }
    SECTION("datagrams: two queued, each read is short") {
      int fds[2];
      REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
      stream a = stream::adopt(fds[0]), b = stream::adopt(fds[1]);
      char buf[64];
      auto reader = fiber::spawn([&] {
        std::vector<std::string> got;
        for (int i = 0; i < 3; ++i) {
          const std::size_t n = a.read(buf, sizeof buf, 2s);
          got.emplace_back(buf, n);
        }
        return got;
      });
      fiber::this_fiber::yield();  // the reader parks: registered now
      b.write_all("one");
      fiber::this_fiber::sleep_for(2ms);  // the reader takes "one" (short) and waits
      b.write_all("two");
      b.write_all("three");  // queued behind "two": no edge of its own after the read of "two"
      CHECK(reader.get() == std::vector<std::string>{"one", "two", "three"});
    }
  });
}

TEST_CASE("io: fiber::dump() names the fd a parked fiber waits on", "[io][debug]") {
  auto [a, b] = socket_pair();
  int raw[2];
  REQUIRE(::pipe2(raw, O_CLOEXEC) == 0);
  fiber::run([&, &a = a, &b = b] {
    auto streamer = fiber::spawn(fiber::spawn_options{.name = "stream reader"}, [&] {
      char c;
      return a.read(&c, 1);
    });
    auto piper = fiber::spawn(fiber::spawn_options{.name = "pipe reader"}, [&] {
      char c;
      return fiber::io::read(raw[0], &c, 1, fiber::clock::now() + 1h);
    });
    fiber::this_fiber::yield();  // both park
    std::ostringstream out;
    fiber::dump(out);
    const std::string text = out.str();
    INFO(text);
    CHECK_THAT(text, Catch::Contains("fiber " + std::to_string(streamer.id()) +
                                     " \"stream reader\": suspended, stack ") &&
                         Catch::Contains("event_loop task: parked in fiber::io::stream::read on fd " +
                                         std::to_string(a.fd()) + "\n"));
    CHECK_THAT(text, Catch::Contains("event_loop task: parked in fiber::io::read on fd " + std::to_string(raw[0]) +
                                     ", deadline in 3"));
    REQUIRE(b.write("x", 1) == 1);
    REQUIRE(::write(raw[1], "y", 1) == 1);
    REQUIRE(streamer.get() == 1);
    REQUIRE(piper.get() == 1);
  });
  ::close(raw[0]);
  ::close(raw[1]);
}

// ---- out of file descriptors ------------------------------------------------------
//
// These tests fill the process's fd table for a moment. In that window only the
// code under test runs, and what it did is recorded and checked once the table is
// restored: UBSan's vptr check, the first time it meets a pair of static and
// dynamic types, reads the vtable through a pipe (sanitizer_common's
// IsAccessibleMemoryRange), which fails with no fd free, and then reports a sound
// object (GCC's libubsan even reads its options and suppressions at its first
// report, which fails too). A pair it has met is in its table. So there is no
// Catch assertion in the window, and each fiber function, exception type and
// fiber::dump() it runs has run before the window opens.

namespace {

// Fills this process's fd table, so that the next call that makes an fd fails
// with EMFILE: lowers RLIMIT_NOFILE to a few above the lowest free fd and dups
// until EMFILE. Gives fds back with release(), and everything (the fds, the limit)
// with restore() or when destroyed. The whole test process shares the table: make
// what needs fds (the loop's epoll fd, sockets) before.
class fd_table_full {
 public:
  fd_table_full() {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    const int probe = ::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);  // the lowest free fd
    REQUIRE(probe >= 0);
    fillers_.push_back(probe);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(probe) + 8;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    lowered_ = true;
    int error = 0;
    for (int i = 0; i < 1000 && !error; ++i) {  // (only the holes below the limit to fill)
      const int fd = ::fcntl(probe, F_DUPFD_CLOEXEC, 0);
      if (fd >= 0)
        fillers_.push_back(fd);
      else
        error = errno;
    }
    if (error != EMFILE) {
      restore();
      FAIL("the fd table did not fill up: " << std::strerror(error));
    }
  }
  ~fd_table_full() { restore(); }
  fd_table_full(const fd_table_full&) = delete;
  fd_table_full& operator=(const fd_table_full&) = delete;

  // Closes `n` of the fds that fill the table.
  void release(std::size_t n) noexcept {
    for (; n && !fillers_.empty(); --n) {
      ::close(fillers_.back());
      fillers_.pop_back();
    }
  }
  void restore() noexcept {
    release(fillers_.size());
    if (lowered_) ::setrlimit(RLIMIT_NOFILE, &saved_);
    lowered_ = false;
  }

 private:
  rlimit saved_{};
  bool lowered_ = false;
  std::vector<int> fillers_;
};

// The exception `fn` throws, or none.
template <class F>
std::exception_ptr thrown_by(F&& fn) {
  try {
    fn();
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

// Rethrows `e` to catch it as an E: its what(), or the reason it is not one.
template <class E>
std::string what_of(const std::exception_ptr& e) {
  if (!e) return "(nothing thrown)";
  try {
    std::rethrow_exception(e);
  } catch (const E& x) {
    return x.what();
  } catch (const std::exception& x) {
    return std::string("(another exception: ") + x.what() + ")";
  } catch (...) {
    return "(not a std::exception)";
  }
}

int errno_of(const std::exception_ptr& e) {
  try {
    if (e) std::rethrow_exception(e);
  } catch (const std::system_error& x) {
    return x.code().value();
  } catch (...) {
  }
  return 0;
}

std::string strerror_of(int e) { return std::strerror(e); }

// Under valgrind (its preload library is in LD_PRELOAD), which emulates the fd
// limit after the call: accept4 takes a connection, and valgrind closes the fd it
// got and says EMFILE; with none queued, accept4 says EAGAIN. The kernel looks
// for a free fd first: EMFILE even with the queue empty, and the connections stay
// queued. The tests below are skipped there.
using fiber_test::under_valgrind;

}  // namespace

TEST_CASE("io: out of fds, accept() waits (parked, backing off) and returns the connection once fds are freed",
          "[io][emfile]") {
  if (under_valgrind()) {
    SUCCEED("skipped under valgrind: its accept4 says EMFILE only after taking a connection, which it drops");
    return;
  }
  fiber::run([] {
    auto server = fiber::io::listen("127.0.0.1", 0);
    const auto port = server.local_port();
    std::uint16_t closed_port;
    {
      auto l = fiber::io::listen("127.0.0.1", 0);
      closed_port = l.local_port();
    }
    bool accepted = false;
    auto accept_one = [&] {
      stream s = server.accept();
      accepted = true;
      return s;
    };

    // The same steps first, with fds to spare.
    stream first_client = fiber::io::connect("127.0.0.1", port);
    auto first = fiber::spawn(accept_one);
    REQUIRE(first.get());
    std::ostringstream dump_before;
    fiber::dump(dump_before);
    const auto refused = thrown_by([&] { fiber::io::connect("127.0.0.1", closed_port); });
    REQUIRE(errno_of(refused) == ECONNREFUSED);

    stream client = fiber::io::connect("127.0.0.1", port);  // queued: the kernel completed it
    accepted = false;
    bool accepted_early = true, done_early = true, joined = false;
    std::uint64_t waits = 0;
    std::string dump_text;
    std::exception_ptr connect_error, listen_error;
    fiber::clock::duration took{};
    fiber::task<stream> acceptor;
    {
      fd_table_full full;
      acceptor = fiber::spawn(accept_one);  // EMFILE: waits
      // Meanwhile other fibers run: this one, for a start.
      fiber::this_fiber::sleep_for(60ms);
      accepted_early = accepted;
      done_early = acceptor.done();
      waits = server.resource_waits();
      std::ostringstream out;
      fiber::dump(out);
      dump_text = out.str();
      // The other calls that make an fd throw std::system_error EMFILE, naming the call.
      connect_error = thrown_by([&] { fiber::io::connect("127.0.0.1", port); });
      listen_error = thrown_by([&] { fiber::io::listen("127.0.0.1", 0); });
      full.release(2);
      const auto t0 = fiber::clock::now();
      joined = acceptor.join_for(5s);
      took = fiber::clock::now() - t0;
    }
    CHECK_FALSE(accepted_early);
    CHECK_FALSE(done_early);
    CHECK(waits >= 3);   // after 5, 10, 20 ms: 5 ms, doubling
    CHECK(waits <= 10);  // not a busy loop
    INFO(dump_text);
    CHECK_THAT(dump_text, Catch::Contains("parked in fiber::io::listener::accept (backing off: out of fds or "
                                          "memory) on fd " +
                                          std::to_string(server.fd())));
    CHECK(errno_of(connect_error) == EMFILE);
    CHECK(what_of<std::system_error>(connect_error) ==
          "fiber::io::connect 127.0.0.1:" + std::to_string(port) + ": socket: " + strerror_of(EMFILE));
    CHECK(errno_of(listen_error) == EMFILE);
    CHECK(what_of<std::system_error>(listen_error) == "fiber::io::listen 127.0.0.1:0: socket: " + strerror_of(EMFILE));
    if (!joined) {  // (it must end before the listener goes)
      server.close();
      (void)thrown_by([&] { acceptor.join(); });
      FAIL("accept() did not return within 5 s of fds being freed");
    }
    CHECK(took < 1s);  // at the end of the wait under way (40 or 80 ms)
    stream conn = acceptor.get();
    REQUIRE(conn);
    client.write_all("ping\n");
    CHECK(conn.read_line(5s) == "ping");
    conn.write_all("pong\n");
    CHECK(client.read_line(5s) == "pong");
  });
}

TEST_CASE("io: out of fds, a timed accept() throws timeout_error at its deadline, in the middle of a wait",
          "[io][emfile]") {
  if (under_valgrind()) {
    SUCCEED("skipped under valgrind: its accept4 says EMFILE only after taking a connection, which it drops");
    return;
  }
  fiber::run([] {
    auto server = fiber::io::listen("127.0.0.1", 0);
    auto timed_accept = [&](fiber::clock::time_point deadline) {
      return thrown_by([&] { (void)server.accept(deadline); });
    };
    auto scoped_accept = [&](fiber::clock::duration timeout) {
      return thrown_by([&] {
        fiber::deadline_scope scope(timeout);
        (void)server.accept();
      });
    };
    // The same steps first, with fds to spare (nothing to accept yet).
    REQUIRE(what_of<fiber::io::timeout_error>(timed_accept(fiber::clock::now() + 1ms)) ==
            "fiber::io::listener::accept: timed out");
    REQUIRE(what_of<fiber::timed_out>(scoped_accept(1ms)) == fiber::timed_out().what());

    stream client = fiber::io::connect("127.0.0.1", server.local_port());  // queued
    std::exception_ptr timed, at_once, scoped;
    fiber::clock::duration took{};
    std::uint64_t waits = 0;
    {
      fd_table_full full;
      // The waits: 5, 10, 20, ... 640 ms, this one from 635 ms to 1275 ms: the
      // deadline, at 700 ms, comes in the middle of it.
      const auto t0 = fiber::clock::now();
      timed = timed_accept(t0 + 700ms);
      took = fiber::clock::now() - t0;
      waits = server.resource_waits();
      // A deadline already passed: at once.
      at_once = timed_accept(fiber::clock::now());
      // A deadline_scope's deadline: fiber::timed_out, not the accept's own timeout_error.
      scoped = scoped_accept(30ms);
    }
    CHECK(what_of<fiber::io::timeout_error>(timed) == "fiber::io::listener::accept: timed out");
    CHECK(took >= 700ms);
    CHECK(took < 1200ms);
    CHECK(waits >= 7);  // 8 unless the retries came late
    CHECK(waits <= 8);
    CHECK(what_of<fiber::io::timeout_error>(at_once) == "fiber::io::listener::accept: timed out");
    CHECK(what_of<fiber::timed_out>(scoped) == fiber::timed_out().what());
    CHECK(what_of<fiber::io::timeout_error>(scoped) != "fiber::io::listener::accept: timed out");
    // The connection is still there.
    REQUIRE(server.accept(5s));
  });
}

TEST_CASE("io: out of fds, accept() throws EMFILE without the backoff, and its wait ends on cancel() and close()",
          "[io][emfile]") {
  if (under_valgrind()) {
    SUCCEED("skipped under valgrind: its accept4 says EMFILE only after taking a connection, which it drops");
    return;
  }
  fiber::run([] {
    auto server = fiber::io::listen("127.0.0.1", 0);
    auto strict = fiber::io::listen("127.0.0.1", 0);
    strict.set_resource_backoff(false);
    CHECK(server.resource_backoff());
    CHECK_FALSE(strict.resource_backoff());
    auto accept_on = [](fiber::io::listener* l) { (void)l->accept(); };

    // The same steps first, with fds to spare (nothing to accept).
    {
      auto other = fiber::io::listen("127.0.0.1", 0);
      auto cancelled = fiber::spawn(accept_on, &other);
      fiber::this_fiber::sleep_for(1ms);
      cancelled.cancel();
      REQUIRE_THROWS_AS(cancelled.join(), fiber::cancelled);
      auto closed = fiber::spawn(accept_on, &other);
      fiber::this_fiber::sleep_for(1ms);
      other.close();
      REQUIRE(errno_of(thrown_by([&] { closed.join(); })) == EBADF);
    }

    std::exception_ptr strict_error, cancel_error, close_error;
    fiber::clock::duration close_took{};
    {
      fd_table_full full;
      strict_error = thrown_by([&] { (void)strict.accept(); });

      auto cancelled = fiber::spawn(accept_on, &server);
      fiber::this_fiber::sleep_for(20ms);
      cancelled.cancel();
      cancel_error = thrown_by([&] { cancelled.join(); });

      // close() from another fiber, while a long wait is under way (from 635 ms to 1275 ms).
      auto closed = fiber::spawn(accept_on, &server);
      fiber::this_fiber::sleep_for(700ms);
      const auto t0 = fiber::clock::now();
      server.close();
      close_error = thrown_by([&] { closed.join(); });
      close_took = fiber::clock::now() - t0;
    }
    CHECK(errno_of(strict_error) == EMFILE);
    CHECK(what_of<std::system_error>(strict_error) == "fiber::io::listener::accept: " + strerror_of(EMFILE));
    CHECK(strict.resource_waits() == 0);
    CHECK(what_of<fiber::cancelled>(cancel_error) == fiber::cancelled().what());
    CHECK(errno_of(close_error) == EBADF);
    CHECK(close_took < 300ms);
  });
}

// ---- a listener spread over the workers of a runtime ----------------------------------

namespace {

// Serves 64 connections on a runtime of 2 workers: `reuse_port`, one listener per
// worker (SO_REUSEPORT) with an acceptor on each, every connection served on the
// acceptor's worker; else one listener whose acceptor deals the connections out
// in turn (spawn_options::worker). Each connection answers each line with the
// worker that serves it. Returns how many connections each worker served; checks
// that each was served whole, and on its worker's one thread.
std::vector<int> serve_spread(bool reuse_port) {
  constexpr int connections = 64;
  constexpr int lines = 3;
  constexpr unsigned workers = 2;
  std::vector<int> per_worker(workers);
  std::vector<std::set<std::thread::id>> threads(workers);
  std::mutex m;
  std::atomic<int> finished{0};
  int clients_ok = 0;
  fiber::run(
      [&] {
        REQUIRE(fiber::this_runtime::workers() == workers);
        auto serve = [&](stream c) {
          const unsigned w = fiber::this_runtime::worker();
          {
            std::lock_guard lock(m);
            ++per_worker[w];
            threads[w].insert(std::this_thread::get_id());
          }
          while (auto line = c.read_line()) c.write_all(std::to_string(w) + " " + *line + "\n");
          ++finished;
        };
        std::vector<fiber::io::listener> listeners;
        listeners.push_back(fiber::io::listen("127.0.0.1", 0, {.reuse_port = reuse_port}));
        const std::uint16_t port = listeners[0].local_port();
        std::vector<fiber::task<void>> acceptors;
        if (reuse_port) {
          listeners.push_back(fiber::io::listen("127.0.0.1", port, {.reuse_port = true}));
          for (unsigned w = 0; w < workers; ++w)
            acceptors.push_back(fiber::spawn({.worker = w}, [&, l = std::move(listeners[w])]() mutable {
              for (;;) fiber::spawn({.worker = fiber::this_runtime::worker()}, serve, l.accept()).detach();
            }));
        } else {
          acceptors.push_back(fiber::spawn({.worker = 0}, [&] {
            for (unsigned i = 0;; ++i)
              fiber::spawn({.worker = i % workers}, serve, listeners[0].accept()).detach();
          }));
        }
        std::vector<fiber::task<bool>> clients;
        for (int i = 0; i < connections; ++i)
          clients.push_back(fiber::spawn({.worker = 0}, [i, port] {
            auto c = fiber::io::connect("127.0.0.1", port);
            std::string first;
            bool ok = true;
            for (int k = 0; k < lines; ++k) {
              const std::string msg = "client " + std::to_string(i) + " line " + std::to_string(k);
              c.write_all(msg + "\n");
              auto reply = c.read_line();
              if (!reply || reply->size() < 2 || reply->substr(2) != msg) ok = false;
              if (reply && k == 0) first = reply->substr(0, 1);
              if (reply && reply->substr(0, 1) != first) ok = false;  // one worker per connection
            }
            return ok;
          }));
        for (auto& t : clients) clients_ok += t.get() ? 1 : 0;
        const auto give_up = std::chrono::steady_clock::now() + 10s;
        while (finished < connections && std::chrono::steady_clock::now() < give_up)
          fiber::this_fiber::sleep_for(1ms);
        for (auto& a : acceptors) a.cancel();
        for (auto& a : acceptors) CHECK_THROWS_AS(a.join(), fiber::cancelled);
      },
      fiber::run_options{.threads = workers});
  CHECK(clients_ok == connections);
  CHECK(finished == connections);
  CHECK(per_worker[0] + per_worker[1] == connections);
  CHECK(threads[0].size() == 1);
  CHECK(threads[1].size() == 1);
  CHECK(threads[0] != threads[1]);
  return per_worker;
}

}  // namespace

TEST_CASE("io: listen_options reuse_port - two listeners on one port, which plain listeners cannot share", "[io]") {
  fiber::run([] {
    auto a = fiber::io::listen("127.0.0.1", 0, {.reuse_port = true});
    auto b = fiber::io::listen("127.0.0.1", a.local_port(), {.reuse_port = true});
    CHECK(b.local_port() == a.local_port());
    auto plain = fiber::io::listen("127.0.0.1", 0);
    try {
      fiber::io::listen("127.0.0.1", plain.local_port());
      FAIL("a second plain listener on the port was accepted");
    } catch (const std::system_error& e) {
      CHECK(error_code(e) == EADDRINUSE);
    }
  });
}

TEST_CASE("io: a listener spread over 2 workers (SO_REUSEPORT, an acceptor per worker) - both workers serve, "
          "every connection is served",
          "[io][threads]") {
  const std::vector<int> served = serve_spread(true);
  INFO("connections served by worker 0: " << served[0] << ", by worker 1: " << served[1]);
  CHECK(served[0] > 0);
  CHECK(served[1] > 0);
}

TEST_CASE("io: one acceptor deals its connections out to 2 workers - each stream works on the worker it is "
          "handed to",
          "[io][threads]") {
  const std::vector<int> served = serve_spread(false);
  CHECK(served[0] == 32);
  CHECK(served[1] == 32);
}

// ---- raw fds: the registration io::wait_readable/wait_writable keep -------------------

namespace {

// How many registrations of `fd` the epoll `epfd` holds (its /proc fdinfo), or -1
// where that cannot be read (under an emulator).
int registrations(int epfd, int fd) {
#if defined(FIBER_TEST_EMULATED)
  (void)epfd;
  (void)fd;
  return -1;
#else
  std::ifstream info("/proc/self/fdinfo/" + std::to_string(epfd));
  if (!info) return -1;
  int n = 0;
  for (std::string line; std::getline(info, line);) {
    std::istringstream words(line);
    std::string key;
    int tfd = -1;
    if (words >> key >> tfd && key == "tfd:" && tfd == fd) ++n;
  }
  return n;
#endif
}

}  // namespace

TEST_CASE("io: wait_readable keeps its fd in the loop's epoll after the wait, until fiber_fd_closing", "[io][kept]") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  fiber::event_loop loop;
  const int epfd = loop.native_handle();
  auto t = loop.spawn([&] {
    for (int round = 0; round < 3; ++round) {
      auto writer = fiber::spawn([&] {
        fiber::this_fiber::sleep_for(2ms);
        REQUIRE(::write(p[1], "x", 1) == 1);
      });
      REQUIRE(fiber::io::wait_readable(p[0], 5s));
      char c;
      REQUIRE(::read(p[0], &c, 1) == 1);
      writer.join();
      const int n = registrations(epfd, p[0]);
      if (n >= 0) CHECK(n == 1);  // still there, once, after each wait
    }
    // A wait on a fd that is ready returns at once, though the registration is not new.
    REQUIRE(::write(p[1], "y", 1) == 1);
    const auto t0 = fiber::clock::now();
    REQUIRE(fiber::io::wait_readable(p[0], 5s));
    CHECK(fiber::clock::now() - t0 < 1s);
    fiber_fd_closing(p[0]);
    const int n = registrations(epfd, p[0]);
    if (n >= 0) CHECK(n == 0);
  });
  loop.run();
  t.get();
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("io: an fd closed without fiber_fd_closing: a wait on the reused number registers it afresh", "[io][kept]") {
  fiber::run([] {
    int first[2], second[2];
    REQUIRE(::pipe2(first, O_CLOEXEC) == 0);
    REQUIRE_FALSE(fiber::io::wait_readable(first[0], 5ms));  // registered, armed, timed out
    const int number = first[0];
    ::close(first[0]);  // epoll forgets it silently
    ::close(first[1]);
    REQUIRE(::pipe2(second, O_CLOEXEC) == 0);
    REQUIRE(second[0] == number);
    auto writer = fiber::spawn([&] {
      fiber::this_fiber::sleep_for(5ms);
      REQUIRE(::write(second[1], "z", 1) == 1);
    });
    CHECK(fiber::io::wait_readable(second[0], 5s));
    writer.join();
    ::close(second[0]);
    ::close(second[1]);
  });
}

TEST_CASE("io: a reader and a writer wait on one socket at once, through one registration", "[io][kept]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
  fiber::run([&] {
    static char junk[1 << 16];
    while (::send(sv[0], junk, sizeof junk, MSG_DONTWAIT) > 0) {
    }
    REQUIRE(errno == EAGAIN);  // sv[0] cannot write until sv[1] reads
    bool readable = false, writable = false;
    auto reader = fiber::spawn([&] { readable = fiber::io::wait_readable(sv[0], 5s); });
    auto writer = fiber::spawn([&] { writable = fiber::io::wait_writable(sv[0], 5s); });
    fiber::this_fiber::sleep_for(5ms);
    REQUIRE(::write(sv[1], "r", 1) == 1);  // wakes the reader only
    reader.join();
    CHECK(readable);
    CHECK_FALSE(writer.done());
    while (::recv(sv[1], junk, sizeof junk, MSG_DONTWAIT) > 0) {  // room again: wakes the writer
    }
    writer.join();
    CHECK(writable);
  });
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST_CASE("io: loops on two threads waiting on one fd in turn move its registration each time", "[io][kept]") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  constexpr int rounds = 40;
  std::atomic<int> announced{0}, done{0};
  std::atomic<int> epfds[2] = {-1, -1};
  std::atomic<int> failures{0};
  auto side = [&](int k) {
    fiber::event_loop loop;
    epfds[k] = loop.native_handle();
    auto t = loop.spawn([&] {
      for (int i = k; i < rounds; i += 2) {
        while (done.load() != i) fiber::this_fiber::sleep_for(std::chrono::microseconds(50));
        announced.store(i + 1);
        char c = 0;
        if (!fiber::io::wait_readable(p[0], 5s) || ::read(p[0], &c, 1) != 1 || c != static_cast<char>('a' + i % 26))
          failures.fetch_add(1);
        done.store(i + 1);
      }
    });
    loop.run();
    t.get();
    // Still registered with the loop of the last wait (until the loop ends).
    if (k == (rounds - 1) % 2) {
      const int n = registrations(loop.native_handle(), p[0]);
      if (n >= 0 && n != 1) failures.fetch_add(1);
    }
    while (done.load() < rounds) std::this_thread::yield();  // (both loops alive to the end)
  };
  std::thread a(side, 0), b(side, 1);
  for (int i = 0; i < rounds; ++i) {
    while (announced.load() != i + 1) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // (mostly after the wait began)
    const char c = static_cast<char>('a' + i % 26);
    REQUIRE(::write(p[1], &c, 1) == 1);
  }
  a.join();
  b.join();
  CHECK(failures.load() == 0);
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("io: fiber_fd_closing from a thread outside any loop wakes a fiber waiting on the fd", "[io][kept]") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  std::atomic<bool> waiting{false};
  bool woke = false;
  std::thread closer([&] {
    while (!waiting.load()) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);  // (the fiber parks meanwhile)
    fiber_fd_closing(p[0]);
  });
  fiber::run([&] {
    waiting.store(true);
    woke = fiber::io::wait_readable(p[0], 10s);  // woken well before the timeout
  });
  closer.join();
  CHECK(woke);
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("io: a loop that ends takes its fds out of its epoll, and a wait of another loop on them works",
          "[io][kept]") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  fiber::run([&] { REQUIRE_FALSE(fiber::io::wait_readable(p[0], 2ms)); });
  fiber::run([&] {  // (an epoll of the same number, probably: the first loop's entry must not point at it)
    auto writer = fiber::spawn([&] {
      fiber::this_fiber::sleep_for(2ms);
      REQUIRE(::write(p[1], "w", 1) == 1);
    });
    CHECK(fiber::io::wait_readable(p[0], 5s));
    writer.join();
  });
  ::close(p[0]);
  ::close(p[1]);
}

TEST_CASE("io: wait_readable on an io::stream's fd, beside the stream's own registration", "[io][kept]") {
  fiber::run([] {
    stream a, b;
    std::tie(a, b) = socket_pair();
    char buf[8];
    auto reader = fiber::spawn([&] { return a.read(buf, sizeof buf); });  // registers a's fd for the stream
    fiber::this_fiber::sleep_for(2ms);
    bool ready = false;
    auto raw = fiber::spawn([&] { ready = fiber::io::wait_readable(a.fd(), 5s); });  // the same fd, raw
    fiber::this_fiber::sleep_for(2ms);
    b.write_all("hi");
    CHECK(reader.get() == 2);
    raw.join();
    CHECK(ready);
    b.write_all("again");  // the stream still gets its events
    CHECK(a.read(buf, sizeof buf) == 5);
  });
}
