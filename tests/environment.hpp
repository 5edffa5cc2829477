// What the tests run under, for the few that must know.
#pragma once

#include <cstdlib>
#include <cstring>
#include <utility>

namespace fiber_test {

// Under valgrind (its preload library is in LD_PRELOAD): 20-50x slower, and it
// emulates some system calls its own way.
inline bool under_valgrind() {
  const char* preload = std::getenv("LD_PRELOAD");
  return preload && std::strstr(preload, "vgpreload");
}

// Of per-message delivery counts: how many were never delivered, and how many
// more than once (the randomized channel tests).
template <class Counts>
std::pair<int, int> missing_and_duplicated(const Counts& received) {
  int missing = 0, duplicated = 0;
  for (auto& r : received) {
    if (r == 0) ++missing;
    if (r > 1) ++duplicated;
  }
  return {missing, duplicated};
}

}  // namespace fiber_test
