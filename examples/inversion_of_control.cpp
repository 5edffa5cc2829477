// Turning a callback-only API into a pull-style generator.
//
// legacy_walk() stands for any C library that only offers "call me back for each
// item" (a tree or directory walker, a SAX parser). The caller cannot pause it: it
// owns the loop and the recursion. Calling yield() from inside the callback hands
// each item out and suspends the walker's whole stack, recursion and all, until
// the consumer asks for the next one. A C++20 coroutine cannot do this: it can only
// suspend in its own frame, not inside a C function's callback.
//
// The classic use: comparing two trees' in-order sequences ("same fringe") lazily,
// pulling one item at a time from two walks that run side by side.
#include <cstdio>
#include <memory>

#include "fiber/generator.hpp"

// ---- a legacy C-style API ----
struct node {
  int key;
  node* left = nullptr;
  node* right = nullptr;
};
typedef void (*visit_fn)(const node* n, void* user);

// Visits every node in order. It owns the recursion; there is no iterator.
static void legacy_walk(const node* n, visit_fn visit, void* user) {
  if (!n) return;
  legacy_walk(n->left, visit, user);
  visit(n, user);
  legacy_walk(n->right, visit, user);
}
// ------------------------------

using keys = fiber::generator<int>;

// Pull-style view of legacy_walk: each callback yields one key.
static keys walk_keys(const node* root) {
  return keys{[root](keys::yielder& co) {
    legacy_walk(
        root, [](const node* n, void* user) { static_cast<keys::yielder*>(user)->yield(n->key); }, &co);
  }};
}

static bool same_fringe(const node* a, const node* b, int* visited) {
  keys ka = walk_keys(a), kb = walk_keys(b);
  auto ia = ka.begin(), ib = kb.begin();
  *visited = 0;
  for (; ia != ka.end() && ib != kb.end(); ++ia, ++ib, ++*visited)
    if (*ia != *ib) return false;  // stops both walks here: nothing more is visited
  return (ia == ka.end()) == (ib == kb.end());
}

int main() {
  //      4              2                 4
  //    2   6          1   5             2   6
  //   1 3 5 7            4  6          1 3 5 8
  //                     3    7
  node a1{1}, a3{3}, a5{5}, a7{7}, a2{2, &a1, &a3}, a6{6, &a5, &a7}, a4{4, &a2, &a6};
  node b3{3}, b4{4, &b3, nullptr}, b7{7}, b6{6, nullptr, &b7}, b5{5, &b4, &b6}, b1{1}, b2{2, &b1, &b5};
  node c1{1}, c3{3}, c5{5}, c8{8}, c2{2, &c1, &c3}, c6{6, &c5, &c8}, c4{4, &c2, &c6};

  std::printf("keys of a:");
  for (int k : walk_keys(&a4)) std::printf(" %d", k);
  std::printf("\n");

  int visited = 0;
  bool same = same_fringe(&a4, &b2, &visited);
  std::printf("a and b have the same fringe: %s (%d pairs compared)\n", same ? "yes" : "no", visited);
  same = same_fringe(&a4, &c4, &visited);
  std::printf("a and c have the same fringe: %s (differ after %d equal pairs)\n", same ? "yes" : "no", visited);
}
