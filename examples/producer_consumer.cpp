// The seed's producer/consumer (Python generators with send/yield), stackful.
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
//
// `producer_consumer copied` runs the consumer on a copied stack
// (fiber::stack_kind::copied: the thread's shared stack, its frames copied
// away when another generator needs the place); the output is the same.
#include <cstdio>
#include <cstring>
#include <string>

#include "fiber/generator.hpp"

using consumer_t = fiber::generator<std::string, int>;

static consumer_t consumer(fiber::stack_kind stack) {
  return consumer_t{stack, [](consumer_t::yielder& co) {
    std::string r;
    while (true) {
      const int n = co.yield(r);
      if (!n) return;
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
  c.close();
}

int main(int argc, char** argv) {
  const bool copied = argc > 1 && std::strcmp(argv[1], "copied") == 0;
  if (argc > 1 && !copied) {
    std::fprintf(stderr, "usage: %s [copied]\n", argv[0]);
    return 2;
  }
  consumer_t c = consumer(copied ? fiber::stack_kind::copied : fiber::stack_kind::own);
  produce(c);
}
