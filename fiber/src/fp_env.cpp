#include "fiber/context.hpp"

namespace fiber {
bool shares_fp_env() noexcept { return FIBER_SHARED_FP_ENV != 0; }
}  // namespace fiber
