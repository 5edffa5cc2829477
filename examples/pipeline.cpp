// A three-stage pipeline of fibers connected by channels:
//
//   producer --(numbers, capacity 2)--> square --(squares, capacity 0)--> consumer
//
// Each stage ends when its input channel is closed and drained, and then closes its
// output, so the close flows down the pipeline. The output is deterministic.
#include <cstdio>

#include "fiber/channel.hpp"
#include "fiber/event_loop.hpp"

int main() {
  const int total = fiber::run([] {
    fiber::channel<int> numbers(2);
    fiber::channel<int> squares;

    auto producer = fiber::spawn([&] {
      for (int i = 1; i <= 5; ++i) numbers.send(i);
      numbers.close();
    });
    auto square = fiber::spawn([&] {
      for (int v : numbers) squares.send(v * v);
      squares.close();
    });
    auto consumer = fiber::spawn([&] {
      int sum = 0;
      for (int v : squares) {
        std::printf("consumer: got %d\n", v);
        sum += v;
      }
      return sum;
    });
    producer.join();
    square.join();
    return consumer.get();
  });
  std::printf("pipeline closed: sum of squares = %d\n", total);
}
