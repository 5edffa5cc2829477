// The seed's producer/consumer again (see producer_consumer.cpp for the generator
// version), now as two fibers on an event loop that talk over channels: the producer
// sends each `n` on one channel and waits for the consumer's reply on another; closing
// the first channel ends the consumer (the generator version's c.close()).
#include <cstdio>
#include <string>

#include "fiber/channel.hpp"
#include "fiber/event_loop.hpp"

int main() {
  fiber::run([] {
    fiber::channel<int> numbers;         // capacity 0: each send waits for the consumer
    fiber::channel<std::string> replies;

    auto consumer = fiber::spawn([&] {
      for (int n : numbers) {
        std::printf("[CONSUMER] Consuming %d...\n", n);
        replies.send("200 OK");
      }
    });

    int n = 0;
    while (n < 5) {
      n = n + 1;
      std::printf("[PRODUCER] Producing %d...\n", n);
      numbers.send(n);
      const std::string r = *replies.recv();
      std::printf("[PRODUCER] Consumer return: %s\n", r.c_str());
    }
    numbers.close();
    consumer.join();
  });
}
