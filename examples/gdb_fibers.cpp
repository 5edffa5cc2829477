// A program for tools/gdb/fiber.py to look at: it makes fibers of every kind,
// leaves them suspended in known places, then calls fiber_gdb_breakpoint(), where
// a debugger stops it (tests/gdb/ does; README.md, "Debugging with gdb", shows the
// session):
//
//   gdb -ex 'source tools/gdb/fiber.py' -ex 'break fiber_gdb_breakpoint' -ex run
//       -ex 'info fibers' build/native/examples/gdb_fibers    (one line)
//
// At the breakpoint:
//   - "tree-walker", a generator suspended at a yield two calls deep in the
//     recursive walk_tree() (its body is tree_body());
//   - a fiber::context that was never resumed ("created");
//   - event_loop tasks "receiver" (parked in a channel's recv()) and "sleeper"
//     (parked in sleep_for());
//   - the loop's main task, "main-task", running: it is the one calling
//     fiber_gdb_breakpoint().
// Everything is deterministic: the tasks run in the order they were spawned.
#include <chrono>
#include <cstdio>
#include <utility>

#include <fiber/channel.hpp>
#include <fiber/context.hpp>
#include <fiber/debug.hpp>
#include <fiber/event_loop.hpp>
#include <fiber/generator.hpp>

// Where the debugger stops. noinline and with a side effect the compiler cannot
// see through, so that the call and the symbol both survive optimisation.
extern "C" [[gnu::noinline]] void fiber_gdb_breakpoint() { __asm__ volatile("" ::: "memory"); }

namespace {

struct node {
  int value;
  const node* left;
  const node* right;
};

using tree_walker = fiber::generator<int>;

// In-order walk that yields every value. The recursive call on the left is not a
// tail call (a yield follows it), so each level keeps its frame: suspended at the
// first value, the generator's stack holds walk_tree twice.
[[gnu::noinline]] void walk_tree(const node* n, tree_walker::yielder& co) {
  if (!n) return;
  walk_tree(n->left, co);
  co.yield(n->value);
  walk_tree(n->right, co);
}

const node leaf1{1, nullptr, nullptr};
const node leaf3{3, nullptr, nullptr};
const node root{2, &leaf1, &leaf3};

[[gnu::noinline]] void tree_body(tree_walker::yielder& co) {
  fiber::this_fiber::set_name("tree-walker");
  walk_tree(&root, co);
}

}  // namespace

int main() {
  tree_walker walker{[](tree_walker::yielder& co) { tree_body(co); }};
  const int first = *walker.begin();  // runs the body to its first yield: 1

  // Made, never resumed.
  fiber::context never_started{[](fiber::context&& caller) { return std::move(caller); }};

  int received = fiber::run([] {
    fiber::this_fiber::set_name("main-task");
    fiber::channel<int> ch;
    auto receiver = fiber::spawn([&ch] {
      fiber::this_fiber::set_name("receiver");
      return ch.recv().value_or(-1);
    });
    auto sleeper = fiber::spawn([] {
      fiber::this_fiber::set_name("sleeper");
      fiber::this_fiber::sleep_for(std::chrono::hours(1));
    });
    // Both run (first in, first out) and park before this task goes on.
    fiber::this_fiber::yield();
    fiber_gdb_breakpoint();
    sleeper.cancel();
    ch.send(7);
    return receiver.get();
  });

  std::printf("first value %d, received %d\n", first, received);
  return first == 1 && received == 7 ? 0 : 1;
}
