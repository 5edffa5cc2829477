// skynet (github.com/atemerev/skynet's shape): a tree of 1M leaves, 10 children
// per node, each node the sum of its children, each leaf its number. Shared by
// fiber_loop_bench (one loop, Boost.Fiber on one thread) and fiber_mt_bench (2
// workers, Boost.Fiber's work_stealing on 2 threads).
#pragma once

#include <boost/fiber/all.hpp>

#include <cstddef>
#include <memory>

namespace skynet {

// The same stack size for every library: a node's frame is a few hundred bytes.
constexpr std::size_t stack_size = 16 * 1024;
constexpr long leaves = 1000000;
constexpr long div = 10;
constexpr long result = 499999500000L;

// Boost.Fiber: each child a bf::fiber on a stack of stack_size, joined in order.
inline long boost_fibers(long num, long size, boost::fibers::fixedsize_stack& stacks) {
  if (size == 1) return num;
  size /= div;
  long results[div];
  boost::fibers::fiber children[div];
  for (long i = 0; i < div; ++i)
    children[i] = boost::fibers::fiber(std::allocator_arg, stacks, [&results, &stacks, i, num, size] {
      results[i] = boost_fibers(num + i * size, size, stacks);
    });
  long sum = 0;
  for (long i = 0; i < div; ++i) {
    children[i].join();
    sum += results[i];
  }
  return sum;
}

}  // namespace skynet
