#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fiber/channel.hpp"
#include "fiber/event_loop.hpp"

using namespace std::chrono_literals;
using fiber::channel;
using fiber::channel_status;
using strings = std::vector<std::string>;

namespace {

void yield_n(int n) {
  for (int i = 0; i < n; ++i) fiber::this_fiber::yield();
}

}  // namespace

// ---- rendezvous, buffering, order ---------------------------------------------------

TEST_CASE("channel: a rendezvous send waits until a receiver takes the value", "[channel]") {
  strings log;
  fiber::run([&] {
    channel<int> ch;
    auto sender = fiber::spawn([&] {
      log.push_back("send");
      ch.send(1);
      log.push_back("sent");
    });
    yield_n(5);
    REQUIRE(log == strings{"send"});  // parked: nobody received yet
    log.push_back("recv");
    auto v = ch.recv();
    log.push_back("got " + std::to_string(v.value()));
    sender.join();
  });
  REQUIRE(log == strings{"send", "recv", "got 1", "sent"});
}

TEST_CASE("channel: a sender finding a parked receiver hands the value over without waiting", "[channel]") {
  strings log;
  fiber::run([&] {
    channel<int> ch;
    auto receiver = fiber::spawn([&] {
      log.push_back("recv");
      auto v = ch.recv();
      log.push_back("got " + std::to_string(v.value()));
    });
    yield_n(3);
    log.push_back("send");
    ch.send(7);
    log.push_back("sent");  // before the receiver runs again
    receiver.join();
  });
  REQUIRE(log == strings{"recv", "send", "sent", "got 7"});
}

TEST_CASE("channel: a buffered channel holds up to its capacity, then senders park", "[channel]") {
  fiber::run([] {
    channel<int> ch(3);
    REQUIRE(ch.capacity() == 3);
    int sent = 0;
    auto sender = fiber::spawn([&] {
      for (int i = 0; i < 10; ++i) {
        ch.send(i);
        ++sent;
      }
      ch.close();
    });
    yield_n(5);
    REQUIRE(sent == 3);
    REQUIRE(ch.size() == 3);
    REQUIRE(ch.recv() == 0);
    // The parked sender's value went straight into the freed slot.
    REQUIRE(ch.size() == 3);
    yield_n(5);
    REQUIRE(sent == 4);
    REQUIRE(ch.size() == 3);
    std::vector<int> rest;
    for (int v : ch) rest.push_back(v);
    REQUIRE(rest == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9});
    REQUIRE(sent == 10);
    sender.join();
  });
}

TEST_CASE("channel: values come out in FIFO order - parked senders and receivers are served in order",
          "[channel]") {
  fiber::run([] {
    channel<int> buffered(100);
    for (int i = 0; i < 100; ++i) REQUIRE(buffered.try_send(i));
    REQUIRE_FALSE(buffered.try_send(100));
    for (int i = 0; i < 100; ++i) REQUIRE(buffered.try_recv() == i);
    REQUIRE_FALSE(buffered.try_recv());

    // The ring wraps around.
    channel<int> ring(3);
    int next_in = 0, next_out = 0;
    for (int round = 0; round < 20; ++round) {
      while (ring.try_send(next_in)) ++next_in;
      REQUIRE(ring.recv() == next_out++);
      if (round % 3 == 0) REQUIRE(ring.recv() == next_out++);
    }

    // Parked senders, served first come first served.
    channel<int> ch;
    std::vector<fiber::task<void>> senders;
    for (int i = 0; i < 4; ++i) senders.push_back(fiber::spawn([&ch, i] { ch.send(i); }));
    yield_n(3);
    for (int i = 0; i < 4; ++i) REQUIRE(ch.recv() == i);
    for (auto& t : senders) t.join();

    // A select's recv case also takes from the first parked sender.
    senders.clear();
    for (int i = 0; i < 4; ++i) senders.push_back(fiber::spawn([&ch, i] { ch.send(i); }));
    yield_n(3);
    for (int i = 0; i < 4; ++i) {
      int got = -1;
      fiber::select(fiber::on_recv(ch, [&](std::optional<int> v) { got = *v; }));
      REQUIRE(got == i);
    }
    for (auto& t : senders) t.join();

    // Parked receivers likewise.
    std::vector<int> got(4, -1);
    std::vector<fiber::task<void>> receivers;
    for (int i = 0; i < 4; ++i) receivers.push_back(fiber::spawn([&ch, &got, i] { got[i] = ch.recv().value(); }));
    yield_n(3);
    for (int i = 0; i < 4; ++i) ch.send(10 + i);
    for (auto& t : receivers) t.join();
    REQUIRE(got == std::vector<int>{10, 11, 12, 13});
  });
}

// ---- close ------------------------------------------------------------------------

TEST_CASE("channel: after close, receivers drain the buffer, then see it closed", "[channel]") {
  fiber::run([] {
    channel<int> ch(4);
    ch.send(1);
    ch.send(2);
    ch.close();
    REQUIRE(ch.closed());
    REQUIRE(ch.recv() == 1);
    REQUIRE(ch.recv_for(1s).value == 2);
    REQUIRE(ch.recv() == std::nullopt);
    REQUIRE(ch.try_recv() == std::nullopt);
    auto r = ch.recv_for(10s);
    REQUIRE(r.status == channel_status::closed);  // at once: not a timeout
    REQUIRE_FALSE(r);
    REQUIRE_FALSE(r.value);
  });
}

TEST_CASE("channel: send on a closed channel and closing twice throw channel_closed", "[channel]") {
  fiber::run([] {
    channel<int> ch(4);
    ch.close();
    REQUIRE_THROWS_AS(ch.send(1), fiber::channel_closed);
    REQUIRE_THROWS_AS(ch.try_send(1), fiber::channel_closed);
    REQUIRE_THROWS_AS(ch.send_for(1, 1s), fiber::channel_closed);
    REQUIRE_THROWS_WITH(ch.send(1), Catch::Contains("fiber::channel::send") && Catch::Contains("closed"));
    REQUIRE_THROWS_AS(ch.close(), fiber::channel_closed);
    REQUIRE_THROWS_WITH(ch.close(), Catch::Contains("already closed"));
    REQUIRE_THROWS_AS(fiber::select(fiber::on_send(ch, 1)), fiber::channel_closed);
    // channel_closed is a fiber::error (misuse, as Go's panic).
    REQUIRE_THROWS_AS(ch.send(1), fiber::error);
    REQUIRE(ch.size() == 0);
  });
}

TEST_CASE("channel: close wakes parked senders (they throw) and parked receivers (they get nothing)",
          "[channel]") {
  fiber::run([] {
    channel<int> full(1);
    full.send(0);
    int senders_closed = 0;
    std::vector<fiber::task<void>> tasks;
    for (int i = 0; i < 3; ++i)
      tasks.push_back(fiber::spawn([&] {
        try {
          full.send(1);
        } catch (const fiber::channel_closed&) {
          ++senders_closed;
        }
      }));
    tasks.push_back(fiber::spawn([&] {
      try {
        fiber::select(fiber::on_send(full, 2));
      } catch (const fiber::channel_closed&) {
        ++senders_closed;
      }
    }));
    yield_n(3);
    full.close();
    for (auto& t : tasks) t.join();
    REQUIRE(senders_closed == 4);
    REQUIRE(full.recv() == 0);  // the buffered value survives the close
    REQUIRE(full.recv() == std::nullopt);

    channel<int> empty;
    int receivers_closed = 0;
    tasks.clear();
    for (int i = 0; i < 3; ++i)
      tasks.push_back(fiber::spawn([&] {
        if (!empty.recv()) ++receivers_closed;
      }));
    tasks.push_back(fiber::spawn([&] {
      if (empty.recv_for(10s).status == channel_status::closed) ++receivers_closed;
    }));
    tasks.push_back(fiber::spawn([&] {
      fiber::select(fiber::on_recv(empty, [&](std::optional<int> v) {
        if (!v) ++receivers_closed;
      }));
    }));
    yield_n(3);
    empty.close();
    for (auto& t : tasks) t.join();
    REQUIRE(receivers_closed == 5);
  });
}

// ---- try_ and timed forms ------------------------------------------------------------

TEST_CASE("channel: try_send and try_recv never park", "[channel]") {
  fiber::run([] {
    channel<int> ch;
    REQUIRE_FALSE(ch.try_send(1));  // nobody receives
    REQUIRE_FALSE(ch.try_recv());   // nobody sends

    auto receiver = fiber::spawn([&] { return ch.recv(); });
    yield_n(2);
    REQUIRE(ch.try_send(5));  // a receiver is parked: handed over
    REQUIRE(receiver.get() == 5);

    auto sender = fiber::spawn([&] { ch.send(6); });
    yield_n(2);
    REQUIRE(ch.try_recv() == 6);  // taken from the parked sender
    sender.join();

    channel<std::unique_ptr<int>> boxes(1);
    REQUIRE(boxes.try_send(std::make_unique<int>(1)));
    auto box = std::make_unique<int>(2);
    REQUIRE_FALSE(boxes.try_send(std::move(box)));
    REQUIRE(box);  // not lost on failure
    REQUIRE(*box == 2);
    REQUIRE(**boxes.try_recv() == 1);
    REQUIRE(boxes.try_send(std::move(box)));
    REQUIRE_FALSE(box);  // moved on success
  });
}

TEST_CASE("channel: timed forms time out, never early, and leave the value to the caller", "[channel]") {
  fiber::run([] {
    channel<std::unique_ptr<int>> ch;
    auto t0 = fiber::clock::now();
    auto r = ch.recv_for(30ms);
    REQUIRE(fiber::clock::now() - t0 >= 30ms);
    REQUIRE(r.status == channel_status::timeout);
    REQUIRE_FALSE(r.value);

    auto box = std::make_unique<int>(3);
    t0 = fiber::clock::now();
    REQUIRE_FALSE(ch.send_for(std::move(box), 30ms));
    REQUIRE(fiber::clock::now() - t0 >= 30ms);
    REQUIRE(box);
    REQUIRE(*box == 3);

    auto deadline = fiber::clock::now() + 25ms;
    REQUIRE_FALSE(ch.send_until(std::move(box), deadline));
    REQUIRE(fiber::clock::now() >= deadline);
    deadline = fiber::clock::now() + 25ms;
    REQUIRE(ch.recv_until(deadline).status == channel_status::timeout);
    REQUIRE(fiber::clock::now() >= deadline);

    // A deadline already passed: a timeout at once, unless a value is ready.
    REQUIRE(ch.recv_until(fiber::clock::time_point{}).status == channel_status::timeout);
    REQUIRE_FALSE(ch.send_until(std::move(box), fiber::clock::time_point{}));
    REQUIRE(box);

    // Values that come in time are received.
    auto sender = fiber::spawn([&] {
      fiber::this_fiber::sleep_for(5ms);
      ch.send(std::make_unique<int>(4));
    });
    r = ch.recv_for(10s);
    REQUIRE(r.status == channel_status::ok);
    REQUIRE(r);
    REQUIRE(**r.value == 4);
    sender.join();
    auto receiver = fiber::spawn([&] {
      fiber::this_fiber::sleep_for(5ms);
      return ch.recv();
    });
    REQUIRE(ch.send_for(std::move(box), 10s));
    REQUIRE(**receiver.get() == 3);

    // select_for
    t0 = fiber::clock::now();
    bool ran = false;
    REQUIRE(fiber::select_for(30ms, fiber::on_recv(ch, [&](auto) { ran = true; })) == -1);
    REQUIRE(fiber::clock::now() - t0 >= 30ms);
    REQUIRE_FALSE(ran);
  });
}

// ---- range-for, move-only values ---------------------------------------------------------

TEST_CASE("channel: range-for receives until the channel is closed", "[channel]") {
  fiber::run([] {
    channel<int> ch;
    auto producer = fiber::spawn([&] {
      for (int i = 1; i <= 5; ++i) ch.send(i);
      ch.close();
    });
    std::vector<int> got;
    for (auto v : ch) got.push_back(v);
    REQUIRE(got == std::vector<int>{1, 2, 3, 4, 5});
    producer.join();
    int more = 0;
    for (auto v : ch) more += v;  // closed and drained: an empty range
    REQUIRE(more == 0);
  });
}

TEST_CASE("channel: move-only values (std::unique_ptr) pass through every path", "[channel]") {
  using box = std::unique_ptr<int>;
  fiber::run([] {
    for (std::size_t cap : {0, 1, 4}) {
      channel<box> ch(cap);
      auto producer = fiber::spawn([&] {
        for (int i = 0; i < 10; ++i) {
          if (i % 3 == 0) {
            ch.send(std::make_unique<int>(i));
          } else if (i % 3 == 1) {
            auto b = std::make_unique<int>(i);
            fiber::select(fiber::on_send(ch, std::move(b), [] {}));
          } else {
            REQUIRE(ch.send_for(std::make_unique<int>(i), 10s));
          }
        }
        ch.close();
      });
      std::vector<int> got;
      int k = 0;
      for (;;) {
        std::optional<box> b;
        if (k++ % 2) {
          b = ch.recv();
          if (!b) break;
        } else {
          bool closed = false;
          fiber::select(fiber::on_recv(ch, [&](std::optional<box> v) {
            if (v)
              b = std::move(v);
            else
              closed = true;
          }));
          if (closed) break;
        }
        got.push_back(**b);
      }
      REQUIRE(got == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
      producer.join();
    }
    // Range-for over move-only values: by reference, then move.
    channel<box> ch(2);
    ch.send(std::make_unique<int>(1));
    ch.send(std::make_unique<int>(2));
    ch.close();
    std::vector<box> kept;
    for (auto& b : ch) kept.push_back(std::move(b));
    REQUIRE(kept.size() == 2);
    REQUIRE(*kept[1] == 2);
    // A select that does not run a send case leaves its value alone.
    channel<box> nobody;
    auto b = std::make_unique<int>(9);
    REQUIRE(fiber::select(fiber::on_send(nobody, std::move(b), [] {}), fiber::on_default()) == 1);
    REQUIRE(b);
  });
}

// ---- outside a fiber ---------------------------------------------------------------------

TEST_CASE("channel: outside a loop, try_ forms work and ready operations do not block - a posted function may "
          "not wait",
          "[channel]") {
  channel<int> buffered(2);
  REQUIRE(buffered.try_send(1));
  REQUIRE(buffered.try_send(2));
  REQUIRE_FALSE(buffered.try_send(3));
  REQUIRE(buffered.recv() == 1);  // ready: does not block
  REQUIRE(buffered.try_recv() == 2);
  REQUIRE_FALSE(buffered.try_recv());
  REQUIRE(fiber::select(fiber::on_recv(buffered, [](auto) {}), fiber::on_default()) == 1);
  buffered.close();
  REQUIRE(buffered.recv() == std::nullopt);  // closed: does not block either

  // A function posted to the loop (outside any fiber) may wake a parked receiver,
  // but not wait.
  fiber::event_loop loop;
  channel<int> handoff;
  channel<int> never;
  bool sent = false;
  std::string refused;
  auto receiver = loop.spawn([&] { return handoff.recv(); });
  auto poster = loop.spawn([&] {
    loop.post([&] {
      sent = handoff.try_send(42);
      try {
        never.recv();
      } catch (const fiber::error& e) {
        refused = e.what();
      }
    });
  });
  loop.run();
  REQUIRE(sent);
  REQUIRE(receiver.get() == 42);
  CHECK_THAT(refused, Catch::StartsWith("fiber::channel::recv") && Catch::Contains("not a fiber"));
}

// ---- cancellation, deadline_scope ------------------------------------------------------

TEST_CASE("channel: cancelling a task parked in send, recv or select leaves the channel consistent",
          "[channel]") {
  fiber::run([] {
    channel<int> ch;
    int cancelled = 0;
    auto count = [&](auto fn) {
      return [&cancelled, fn] {
        try {
          fn();
        } catch (const fiber::cancelled&) {
          ++cancelled;
          throw;
        }
      };
    };

    // Three parked senders; cancel the middle one.
    auto s0 = fiber::spawn([&] { ch.send(0); });
    auto s1 = fiber::spawn(count([&] { ch.send(1); }));
    auto s2 = fiber::spawn([&] { ch.send(2); });
    yield_n(3);
    s1.cancel();
    REQUIRE_THROWS_AS(s1.join(), fiber::cancelled);
    REQUIRE(cancelled == 1);
    REQUIRE(ch.recv() == 0);
    REQUIRE(ch.recv() == 2);
    REQUIRE_FALSE(ch.try_recv());
    s0.join();
    s2.join();

    // A parked receiver.
    auto r = fiber::spawn(count([&] { ch.recv(); }));
    yield_n(3);
    r.cancel();
    REQUIRE_THROWS_AS(r.join(), fiber::cancelled);
    REQUIRE(cancelled == 2);
    REQUIRE_FALSE(ch.try_send(5));  // nobody is left receiving

    // A parked select over both directions of two channels.
    channel<int> other(1);
    other.send(0);  // full: the send case cannot go
    auto sel = fiber::spawn(count([&] {
      fiber::select(fiber::on_recv(ch, [](auto) {}), fiber::on_send(other, 7, [] {}));
    }));
    yield_n(3);
    sel.cancel();
    REQUIRE_THROWS_AS(sel.join(), fiber::cancelled);
    REQUIRE(cancelled == 3);
    REQUIRE_FALSE(ch.try_send(5));
    REQUIRE(other.recv() == 0);
    REQUIRE_FALSE(other.try_recv());  // the cancelled select's 7 was not sent

    // Everything still works.
    auto receiver = fiber::spawn([&] { return ch.recv(); });
    ch.send(8);
    REQUIRE(receiver.get() == 8);
    auto sender = fiber::spawn([&] { ch.send(9); });
    REQUIRE(ch.recv() == 9);
    sender.join();
  });
}

TEST_CASE("channel: a deadline_scope bounds recv, send and select with fiber::timed_out", "[channel]") {
  fiber::run([] {
    channel<int> ch;
    auto t0 = fiber::clock::now();
    {
      fiber::deadline_scope scope(20ms);
      REQUIRE_THROWS_AS(ch.recv(), fiber::timed_out);
    }
    REQUIRE(fiber::clock::now() - t0 >= 20ms);
    {
      fiber::deadline_scope scope(5ms);
      REQUIRE_THROWS_AS(ch.send(1), fiber::timed_out);
      REQUIRE_THROWS_AS(fiber::select(fiber::on_recv(ch, [](auto) {}), fiber::on_send(ch, 2)), fiber::timed_out);
      // The scope's deadline is earlier than the operation's own: the scope wins.
      REQUIRE_THROWS_AS(ch.recv_for(10s), fiber::timed_out);
    }
    // Consistent afterwards.
    REQUIRE_FALSE(ch.try_send(3));
    REQUIRE_FALSE(ch.try_recv());
    auto r = fiber::spawn([&] { return ch.recv(); });
    ch.send(4);
    REQUIRE(r.get() == 4);
  });
}

// ---- select ---------------------------------------------------------------------------

TEST_CASE("channel: select runs a ready case, else the default, else parks until one is ready", "[channel]") {
  fiber::run([] {
    channel<int> a(1), b;
    std::string log;
    // Nothing ready: the default runs.
    REQUIRE(fiber::select(fiber::on_recv(a, [&](auto) { log += "a"; }), fiber::on_recv(b, [&](auto) { log += "b"; }),
                          fiber::on_default([&] { log += "d"; })) == 2);
    REQUIRE(log == "d");

    // A ready case runs; the index is its position in the argument list.
    a.send(1);
    log.clear();
    REQUIRE(fiber::select(fiber::on_default([&] { log += "d"; }),
                          fiber::on_recv(b, [&](auto) { log += "b"; }),
                          fiber::on_recv(a, [&](std::optional<int> v) { log += "a" + std::to_string(*v); })) == 2);
    REQUIRE(log == "a1");

    // A send case into the buffer.
    log.clear();
    REQUIRE(fiber::select(fiber::on_send(a, 5, [&] { log += "sent"; })) == 0);
    REQUIRE(log == "sent");
    REQUIRE(a.recv() == 5);

    // Parks until a sender comes.
    auto sender = fiber::spawn([&] {
      yield_n(2);
      b.send(3);
    });
    int got = 0;
    REQUIRE(fiber::select(fiber::on_recv(a, [](auto) {}), fiber::on_recv(b, [&](std::optional<int> v) { got = *v; })) ==
            1);
    REQUIRE(got == 3);
    sender.join();

    // Parks on a send until a receiver comes.
    auto receiver = fiber::spawn([&] {
      yield_n(2);
      return b.recv();
    });
    bool sent = false;
    const int value = 11;
    REQUIRE(fiber::select(fiber::on_recv(b, [](auto) {}), fiber::on_send(b, value, [&] { sent = true; })) == 1);
    REQUIRE(sent);
    REQUIRE(receiver.get() == 11);

    // Woken by a close: the recv case gets nothing.
    auto closer = fiber::spawn([&] {
      yield_n(2);
      b.close();
    });
    bool closed = false;
    REQUIRE(fiber::select(fiber::on_recv(b, [&](std::optional<int> v) { closed = !v; })) == 0);
    REQUIRE(closed);
    closer.join();
    // A closed channel's recv case is always ready.
    REQUIRE(fiber::select(fiber::on_recv(b, [](auto) {}), fiber::on_default()) == 0);
  });
}

TEST_CASE("channel: two selects with both directions on one rendezvous channel meet once", "[channel]") {
  fiber::run([] {
    channel<int> ch;
    std::vector<int> got(2, -1), sent(2, -1);
    auto side = [&](int me) {
      return fiber::spawn([&, me] {
        fiber::select(fiber::on_send(ch, 100 + me, [&, me] { sent[me] = 100 + me; }),
                      fiber::on_recv(ch, [&, me](std::optional<int> v) { got[me] = *v; }));
      });
    };
    auto x = side(0);
    yield_n(2);  // x parks in both queues of ch
    auto y = side(1);
    x.join();
    y.join();
    // Exactly one value went from one side to the other.
    const bool x_to_y = sent[0] == 100 && got[1] == 100 && got[0] == -1 && sent[1] == -1;
    const bool y_to_x = sent[1] == 101 && got[0] == 101 && got[1] == -1 && sent[0] == -1;
    REQUIRE((x_to_y || y_to_x));
    REQUIRE_FALSE(ch.try_send(1));
    REQUIRE_FALSE(ch.try_recv());
  });
}

TEST_CASE("channel: select picks among ready cases at random, each half of the time", "[channel]") {
  fiber::run([] {
    channel<int> a(1), b(1);
    a.send(1);
    b.send(2);
    int na = 0, nb = 0;
    const int n = 100000;
    for (int i = 0; i < n; ++i) {
      fiber::select(fiber::on_recv(a, [&](std::optional<int>) {
                      ++na;
                      a.try_send(1);
                    }),
                    fiber::on_recv(b, [&](std::optional<int>) {
                      ++nb;
                      b.try_send(2);
                    }));
    }
    CAPTURE(na, nb);
    REQUIRE(na + nb == n);
    REQUIRE(std::abs(na - n / 2) <= n / 50);

    // Three always-ready cases (two closed channels and a send with room).
    channel<int> c, d, e(1);
    c.close();
    d.close();
    int counts[3] = {};
    for (int i = 0; i < 30000; ++i) {
      const int k = fiber::select(fiber::on_recv(c, [](auto) {}), fiber::on_recv(d, [](auto) {}),
                                  fiber::on_send(e, 1, [&] { e.try_recv(); }));
      ++counts[k];
    }
    for (int k = 0; k < 3; ++k) {
      CAPTURE(k, counts[k]);
      REQUIRE(std::abs(counts[k] - 10000) <= 600);
    }
  });
}

// ---- randomized model test -------------------------------------------------------------------------

namespace {

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  return std::strtoull(s, nullptr, 0);
}

// Many fibers doing random channel operations on channels of mixed capacities, checked
// against a reference model: every value carries (sender, channel, sequence number);
// the model records what each sender got through (the sequence numbers of a
// (sender, channel) pair that went through are exactly 0..sent-1) and what receivers
// got. At the end every value sent was received exactly once, on the channel it was
// sent on, and each receiver saw each sender's values on each channel in order.
struct model {
  static constexpr int n_channels = 4;
  static constexpr int n_senders = 8;
  static constexpr int n_receivers = 8;
  static constexpr std::uint64_t seq_mask = (std::uint64_t{1} << 40) - 1;

  std::uint64_t seed;
  int ops_per_sender;
  std::uint64_t ops = 0;        // channel operations started (all kinds)
  std::uint64_t transfers = 0;  // values received
  std::uint64_t closed_on_waiters = 0;
  std::string failure;

  std::vector<std::unique_ptr<channel<std::uint64_t>>> chans;
  std::vector<std::vector<std::uint64_t>> sent;                  // [sender][channel]: values through
  std::vector<std::vector<std::vector<std::uint8_t>>> received;  // [sender][channel][seq]: times received
  std::vector<std::vector<std::vector<std::int64_t>>> last;      // [receiver][sender][channel]: last seq
  std::uint64_t progress = 0;
  int senders_alive = n_senders;

  void fail(const std::string& what) {
    if (failure.empty()) failure = what;
  }
  static std::uint64_t encode(int s, int c, std::uint64_t seq) {
    return (std::uint64_t(s) << 48) | (std::uint64_t(c) << 40) | seq;
  }
  std::uint64_t next_value(int s, int c) const { return encode(s, c, sent[s][c]); }

  void got(int r, int c, std::uint64_t v) {
    ++transfers;
    const int s = int(v >> 48);
    const int vc = int((v >> 40) & 0xff);
    const std::uint64_t seq = v & seq_mask;
    if (s >= n_senders || vc != c) {
      fail("receiver " + std::to_string(r) + " got a value of sender " + std::to_string(s) + " for channel " +
           std::to_string(vc) + " from channel " + std::to_string(c));
      return;
    }
    auto& times = received[s][c];
    if (seq >= times.size()) times.resize(seq + 1, 0);
    if (times[seq]++) fail("duplicate: " + std::to_string(s) + "/" + std::to_string(c) + "/" + std::to_string(seq));
    auto& l = last[r][s][c];
    if (std::int64_t(seq) <= l)
      fail("order: receiver " + std::to_string(r) + " got seq " + std::to_string(seq) + " after " +
           std::to_string(l) + " of sender " + std::to_string(s) + " on channel " + std::to_string(c));
    l = std::int64_t(seq);
  }

  void check_capacities() {
    for (auto& ch : chans)
      if (ch->size() > ch->capacity()) fail("a channel holds more than its capacity");
  }

  // Up to k distinct channels for which pred(c) holds, in random order.
  template <class Pred>
  static std::vector<int> pick(std::mt19937_64& rng, std::size_t k, Pred pred) {
    std::vector<int> open;
    for (int c = 0; c < n_channels; ++c)
      if (pred(c)) open.push_back(c);
    std::shuffle(open.begin(), open.end(), rng);
    if (open.size() > k) open.resize(k);
    return open;
  }

  void sender(int s) {
    std::mt19937_64 rng(seed * 31 + 1000 + s);
    std::vector<bool> closed(n_channels, false);
    auto open = [&](int c) { return !closed[c]; };
    for (int op = 0; op < ops_per_sender; ++op) {
      std::vector<int> cs = pick(rng, 2 + rng() % 2, open);
      if (cs.empty()) break;
      ++ops;
      ++progress;
      const int c = cs[0];
      auto& ch = *chans[c];
      try {
        const int kind = int(rng() % 20);
        if (kind < 8) {
          ch.send(next_value(s, c));
          ++sent[s][c];
        } else if (kind < 11) {
          if (ch.try_send(next_value(s, c))) ++sent[s][c];
        } else if (kind < 12) {
          if (ch.send_until(next_value(s, c), fiber::clock::time_point{})) ++sent[s][c];
        } else {
          int hit = -1;
          const bool with_default = rng() % 3 == 0;
          const bool past_deadline = !with_default && rng() % 4 == 0;
          const auto deadline = past_deadline ? fiber::clock::time_point{} : fiber::clock::time_point::max();
          auto send_to = [&](int k) {
            const int to = cs[std::size_t(k)];
            const std::uint64_t v = next_value(s, to);  // a const lvalue: the case keeps a copy
            return fiber::on_send(*chans[to], v, [&hit, to] { hit = to; });
          };
          int r;
          if (cs.size() == 1) {
            r = with_default ? fiber::select(send_to(0), fiber::on_default())
                             : fiber::select_until(deadline, send_to(0));
          } else if (cs.size() == 2) {
            r = with_default ? fiber::select(send_to(0), fiber::on_default(), send_to(1))
                             : fiber::select_until(deadline, send_to(0), send_to(1));
          } else {
            // An rvalue send case: moved from only if it runs.
            std::uint64_t v2 = next_value(s, cs[2]);
            const int to2 = cs[2];
            r = with_default
                    ? fiber::select(send_to(0), send_to(1),
                                    fiber::on_send(*chans[to2], std::move(v2), [&hit, to2] { hit = to2; }),
                                    fiber::on_default())
                    : fiber::select_until(deadline, send_to(0), send_to(1),
                                          fiber::on_send(*chans[to2], std::move(v2), [&hit, to2] { hit = to2; }));
          }
          if (hit >= 0) {
            ++sent[s][hit];
          } else if (r >= 0 && !with_default) {
            fail("select returned " + std::to_string(r) + " without running a case");
          }
        }
      } catch (const fiber::channel_closed&) {
        bool any = false;
        for (int k : cs)
          if (chans[k]->closed()) any = closed[k] = true;
        if (!any) fail("channel_closed from an open channel");
      }
      check_capacities();
    }
    --senders_alive;
  }

  void receiver(int r) {
    std::mt19937_64 rng(seed * 31 + 2000 + r);
    std::vector<bool> done(n_channels, false);  // closed and drained
    auto open = [&](int c) { return !done[c]; };
    for (;;) {
      std::vector<int> cs = pick(rng, 2 + rng() % 2, open);
      if (cs.empty()) break;
      ++ops;
      ++progress;
      const int c = cs[0];
      auto& ch = *chans[c];
      const int kind = int(rng() % 20);
      if (kind < 8) {
        if (auto v = ch.recv())
          got(r, c, *v);
        else
          done[c] = true;
      } else if (kind < 11) {
        if (auto v = ch.try_recv())
          got(r, c, *v);
        else if (ch.closed() && ch.empty())
          done[c] = true;
      } else if (kind < 12) {
        auto res = ch.recv_until(fiber::clock::time_point{});
        if (res.status == channel_status::ok)
          got(r, c, *res.value);
        else if (res.status == channel_status::closed)
          done[c] = true;
      } else {
        const bool with_default = rng() % 3 == 0;
        const bool past_deadline = !with_default && rng() % 4 == 0;
        const auto deadline = past_deadline ? fiber::clock::time_point{} : fiber::clock::time_point::max();
        int ran = -1;
        auto from = [&](int k) {
          const int c2 = cs[std::size_t(k)];
          return fiber::on_recv(*chans[c2], [&, c2](std::optional<std::uint64_t> v) {
            ran = c2;
            if (v)
              got(r, c2, *v);
            else
              done[c2] = true;
          });
        };
        int res;
        if (cs.size() == 1) {
          res = with_default ? fiber::select(from(0), fiber::on_default()) : fiber::select_until(deadline, from(0));
        } else if (cs.size() == 2) {
          res = with_default ? fiber::select(fiber::on_default(), from(0), from(1))
                             : fiber::select_until(deadline, from(0), from(1));
        } else {
          res = with_default ? fiber::select(from(0), from(1), from(2), fiber::on_default())
                             : fiber::select_until(deadline, from(0), from(1), from(2));
        }
        if (res >= 0 && !with_default && ran < 0) fail("select returned without running a case");
      }
      check_capacities();
    }
  }

  // Closes channels: some early, at random points; one whenever every other fiber is
  // parked with no one left to wake it; the rest once every sender is done.
  void closer() {
    std::mt19937_64 rng(seed * 31 + 3000);
    std::vector<std::uint64_t> close_at(n_channels, ~std::uint64_t{0});
    const std::uint64_t expected = std::uint64_t(ops_per_sender) * n_senders * 2;
    for (auto& at : close_at)
      if (rng() % 4 == 0) at = rng() % expected;
    auto close = [&](int c) {
      auto& ch = *chans[c];
      if (ch.closed()) return;
      ch.close();
    };
    int stalls = 0;
    for (;;) {
      std::vector<int> open = pick(rng, n_channels, [&](int c) { return !chans[c]->closed(); });
      if (open.empty()) break;
      if (senders_alive == 0) {
        for (int c : open) close(c);
        break;
      }
      for (int c : open)
        if (progress >= close_at[std::size_t(c)]) close(c);
      const std::uint64_t before = progress;
      fiber::this_fiber::yield();
      if (progress != before) {
        stalls = 0;
      } else if (++stalls >= 3) {
        ++closed_on_waiters;
        close(open[0]);
        stalls = 0;
      }
    }
  }

  void run() {
    fiber::select_seed(seed);
    std::mt19937_64 rng(seed);
    static constexpr std::size_t capacities[] = {0, 0, 1, 2, 5, 64};
    for (int c = 0; c < n_channels; ++c)
      chans.push_back(std::make_unique<channel<std::uint64_t>>(capacities[rng() % 6]));
    sent.assign(n_senders, std::vector<std::uint64_t>(n_channels, 0));
    received.assign(n_senders, std::vector<std::vector<std::uint8_t>>(n_channels));
    last.assign(n_receivers, std::vector<std::vector<std::int64_t>>(n_senders, std::vector<std::int64_t>(n_channels, -1)));
    fiber::run([&] {
      std::vector<fiber::task<void>> tasks;
      for (int s = 0; s < n_senders; ++s) tasks.push_back(fiber::spawn([this, s] { sender(s); }));
      for (int r = 0; r < n_receivers; ++r) tasks.push_back(fiber::spawn([this, r] { receiver(r); }));
      tasks.push_back(fiber::spawn([this] { closer(); }));
      for (auto& t : tasks) t.join();
    });
    for (int c = 0; c < n_channels; ++c) {
      if (!chans[c]->closed()) fail("channel " + std::to_string(c) + " was not closed");
      if (!chans[c]->empty()) fail("channel " + std::to_string(c) + " was not drained");
    }
    for (int s = 0; s < n_senders; ++s)
      for (int c = 0; c < n_channels; ++c) {
        const auto& times = received[s][c];
        if (times.size() > sent[s][c]) fail("received a value that was never sent");
        for (std::uint64_t k = 0; k < sent[s][c]; ++k)
          if (k >= times.size() || times[k] != 1) {
            fail("lost: " + std::to_string(s) + "/" + std::to_string(c) + "/" + std::to_string(k));
            break;
          }
      }
  }
};

}  // namespace

TEST_CASE("channel: the deadlock report names each parked fiber and the channel operation it waits in", "[channel]") {
  auto address = [](const void* p) {
    std::ostringstream out;
    out << "0x" << std::hex << reinterpret_cast<std::uintptr_t>(p);
    return out.str();
  };
  channel<int> requests, replies, events, audit;
  fiber::event_loop loop;
  // The client sends a request nobody reads: the server waits for a reply instead.
  auto client = loop.spawn(fiber::spawn_options{.name = "client"}, [&] { requests.send(1); });
  auto server = loop.spawn(fiber::spawn_options{.name = "server"}, [&] { return replies.recv(); });
  auto watcher = loop.spawn(fiber::spawn_options{.name = "watcher"}, [&] {
    return fiber::select(fiber::on_recv(events, [](std::optional<int>) {}), fiber::on_send(audit, 2));
  });
  auto timed = loop.spawn([&] { return events.recv_for(1h); });  // a timer: no deadlock while it waits
  loop.spawn([&] {
    fiber::this_fiber::yield();
    timed.cancel();
  }).detach();
  std::string what;
  try {
    loop.run();
  } catch (const fiber::deadlock_error& e) {
    what = e.what();
  }
  INFO(what);
  REQUIRE_THAT(what, Catch::StartsWith("fiber::event_loop::run: deadlock: 3 fiber(s) parked"));
  // Each parked task on a line: its id and name, the operation and the channel.
  CHECK_THAT(what, Catch::Contains("\n  task " + std::to_string(client.id()) +
                                   " \"client\": parked in fiber::channel::send on " + address(&requests) + "\n"));
  CHECK_THAT(what, Catch::Contains("\n  task " + std::to_string(server.id()) +
                                   " \"server\": parked in fiber::channel::recv on " + address(&replies) + "\n"));
  CHECK_THAT(what, Catch::EndsWith("\n  task " + std::to_string(watcher.id()) +
                                   " \"watcher\": parked in fiber::select on recv from " + address(&events) +
                                   ", send to " + address(&audit)));
  // The cancelled one is gone.
  CHECK_THAT(what, !Catch::Contains("task " + std::to_string(timed.id())));
  REQUIRE_THROWS_AS(timed.get(), fiber::cancelled);
}

TEST_CASE("channel: randomized model test (FIBER_MODEL_SEED, FIBER_MODEL_OPS)", "[channel]") {
  const std::uint64_t seed = env_u64("FIBER_MODEL_SEED", 0x5eed'c4a2);
  const std::uint64_t target = env_u64("FIBER_MODEL_OPS", 1'000'000);
  CAPTURE(seed, target);
  std::uint64_t ops = 0, transfers = 0, rounds = 0, closed_on_waiters = 0;
  while (ops < target) {
    model m;
    m.seed = seed + rounds * 0x9e3779b97f4a7c15ULL;
    m.ops_per_sender = 4000;
    m.run();
    const std::uint64_t round = rounds;
    INFO("round " << round << " (seed " << m.seed << "): " << m.failure);
    REQUIRE(m.failure.empty());
    ops += m.ops;
    transfers += m.transfers;
    closed_on_waiters += m.closed_on_waiters;
    ++rounds;
  }
  CAPTURE(ops, transfers, rounds, closed_on_waiters);
  REQUIRE(ops >= target);
  REQUIRE(transfers >= ops / 10);
  REQUIRE(closed_on_waiters > 0);  // closes that woke parked fibers happened
}
