#include "fiber/config.h"
#include "fiber/context.hpp"

namespace fiber {
// FIBER_SHARED_FP_ENV applies to our assembly only: the boost and ucontext
// backends always switch the FP control state.
bool shares_fp_env() noexcept { return FIBER_SHARED_FP_ENV != 0 && FIBER_BACKEND_ASM != 0; }
}  // namespace fiber
