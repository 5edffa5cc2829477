// What the tests run under, for the few that must know.
#pragma once

#include <cstdlib>
#include <cstring>

namespace fiber_test {

// Under valgrind (its preload library is in LD_PRELOAD): 20-50x slower, and it
// emulates some system calls its own way.
inline bool under_valgrind() {
  const char* preload = std::getenv("LD_PRELOAD");
  return preload && std::strstr(preload, "vgpreload");
}

}  // namespace fiber_test
