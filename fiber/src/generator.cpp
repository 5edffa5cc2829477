#include "fiber/generator.hpp"

#include <cstdio>

namespace fiber::detail {

void report_generator_destruction_error(std::exception_ptr error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fiber: exception ignored while destroying a generator: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "fiber: exception of unknown type ignored while destroying a generator\n");
  }
}

}  // namespace fiber::detail
