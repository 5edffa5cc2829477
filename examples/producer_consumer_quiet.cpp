// The seed's producer/consumer with close_quietly(): the consumer's `n = yield r`
// returns 0, and `if not n: return` ends it, as in the seed's own consumer. No
// generator_exit is raised, so closing costs a switch instead of an unwinding
// (bench/fiber_bench.cpp: seed/fiber_generator_quiet_close against
// seed/fiber_generator_default). Prints exactly what the seed prints.
//
//   def consumer():                          def produce(c):
//       r = ''                                   c.send(None)
//       while True:                              n = 0
//           n = yield r                          while n < 5:
//           if not n:                                n = n + 1
//               return                               print('[PRODUCER] Producing %s...' % n)
//           print('[CONSUMER] Consuming %s...' % n)  r = c.send(n)
//           r = '200 OK'                             print('[PRODUCER] Consumer return: %s' % r)
//                                                c.close()
#include <cstdio>
#include <string>

#include "fiber/generator.hpp"

using consumer_t = fiber::generator<std::string, int>;

static consumer_t consumer() {
  return consumer_t{[](consumer_t::yielder& co) {
    std::string r;
    while (true) {
      const int n = co.yield(r);
      if (!n) return;  // close_quietly() makes the pending yield return 0
      std::printf("[CONSUMER] Consuming %d...\n", n);
      r = "200 OK";
    }
  }};
}

static void produce(consumer_t& c) {
  c.start();
  int n = 0;
  while (n < 5) {
    n = n + 1;
    std::printf("[PRODUCER] Producing %d...\n", n);
    const std::string r = c.send(n);
    std::printf("[PRODUCER] Consumer return: %s\n", r.c_str());
  }
  c.close_quietly();
  if (!c.done()) std::printf("the consumer did not finish\n");
}

int main() {
  consumer_t c = consumer();
  produce(c);
}
