// Proves that the frame layout the assembly uses (fiber/detail/switch.h) is the one
// C++ assumes, and that the frame sizes keep the stack aligned as each ABI demands.
#include <cstddef>
#include <cstdint>

#include "fiber/detail/switch.h"

namespace fiber::detail {

#if defined(__x86_64__)
struct x86_64_frame {
  void* data;
  std::uint32_t mxcsr;
  std::uint16_t x87_cw;
  std::uint16_t pad;
  std::uint64_t r15, r14, r13, r12, rbx, rbp;
  void* pc;
};
static_assert(offsetof(x86_64_frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(x86_64_frame, mxcsr) == FIBER_FRAME_MXCSR);
static_assert(offsetof(x86_64_frame, x87_cw) == FIBER_FRAME_X87CW);
static_assert(offsetof(x86_64_frame, r15) == FIBER_FRAME_R15);
static_assert(offsetof(x86_64_frame, r14) == FIBER_FRAME_R14);
static_assert(offsetof(x86_64_frame, r13) == FIBER_FRAME_R13);
static_assert(offsetof(x86_64_frame, r12) == FIBER_FRAME_R12);
static_assert(offsetof(x86_64_frame, rbx) == FIBER_FRAME_RBX);
static_assert(offsetof(x86_64_frame, rbp) == FIBER_FRAME_RBP);
static_assert(offsetof(x86_64_frame, pc) == FIBER_FRAME_PC);
static_assert(sizeof(x86_64_frame) == FIBER_FRAME_SIZE);
// The caller's rsp is 16-aligned before its call, so the saved sp is 8 mod 16 and
// popping the frame leaves rsp aligned again, as the psABI requires at a call.
static_assert((FIBER_FRAME_SIZE + 8) % 16 == 0);
#elif defined(__aarch64__)
struct aarch64_frame {
  void* data;
  std::uint64_t fpcr;
  std::uint64_t x19, x20, x21, x22, x23, x24, x25, x26, x27, x28;
  std::uint64_t fp, lr;
  double d8, d9, d10, d11, d12, d13, d14, d15;
};
static_assert(offsetof(aarch64_frame, data) == FIBER_FRAME_DATA);
static_assert(offsetof(aarch64_frame, fpcr) == FIBER_FRAME_FPCR);
static_assert(offsetof(aarch64_frame, x19) == FIBER_FRAME_X19);
static_assert(offsetof(aarch64_frame, x21) == FIBER_FRAME_X21);
static_assert(offsetof(aarch64_frame, x23) == FIBER_FRAME_X23);
static_assert(offsetof(aarch64_frame, x25) == FIBER_FRAME_X25);
static_assert(offsetof(aarch64_frame, x27) == FIBER_FRAME_X27);
static_assert(offsetof(aarch64_frame, fp) == FIBER_FRAME_FP);
static_assert(offsetof(aarch64_frame, lr) == FIBER_FRAME_LR);
static_assert(offsetof(aarch64_frame, d8) == FIBER_FRAME_D8);
static_assert(offsetof(aarch64_frame, d10) == FIBER_FRAME_D10);
static_assert(offsetof(aarch64_frame, d12) == FIBER_FRAME_D12);
static_assert(offsetof(aarch64_frame, d14) == FIBER_FRAME_D14);
static_assert(sizeof(aarch64_frame) == FIBER_FRAME_SIZE);
// AAPCS64 requires sp to be 16-aligned at all times it is used to access memory.
static_assert(FIBER_FRAME_SIZE % 16 == 0);
#endif

}  // namespace fiber::detail

namespace fiber {
/// Whether this build leaves the FP control state shared between fibers.
bool shares_fp_env() noexcept { return FIBER_SHARED_FP_ENV != 0; }
}  // namespace fiber
