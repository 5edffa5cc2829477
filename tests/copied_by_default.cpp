// fiber_loop_copied_tests: the loop suite with every task whose spawn does not
// say on a copied stack (event_loop::options::stack, FIBER_STACK), set before
// any loop reads the variable.
#include <cstdlib>

namespace {
[[maybe_unused]] const bool copied_by_default = [] {
#if defined(_WIN32)
  return _putenv_s("FIBER_STACK", "copied") == 0;
#else
  return ::setenv("FIBER_STACK", "copied", 1) == 0;
#endif
}();
}  // namespace
