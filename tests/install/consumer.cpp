// A program outside the tree, built against the installed fiber.
#include <fiber/fiber.hpp>

#include <cstdio>

int main() {
  fiber::generator<int> count{[](auto& co) {
    for (int i = 0; i < 5; ++i) co.yield(i);
  }};
  for (int v : count) std::printf("%d ", v);
  std::printf("done\n");
}
