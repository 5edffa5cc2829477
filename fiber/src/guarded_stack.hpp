// A guarded stack: one mapping, the usable range with an inaccessible guard
// page below it (stack.cpp). The one place a guarded stack is mapped: both
// fiber::protected_stack and the event loop's stack pool (loop_stacks.hpp) use it.
#pragma once

#include <cstddef>

#include "fiber/stack.hpp"

namespace fiber::detail {

// `size` usable bytes (a multiple of page_size()) above a guard page; throws
// stack_allocation_error.
stack_memory map_guarded_stack(std::size_t size);
// Unmaps what map_guarded_stack() mapped, guard page included.
void unmap_guarded_stack(stack_memory stack) noexcept;

// Before stack memory is unmapped, under AddressSanitizer: the red zones that
// frames which never returned left in its shadow go, so that a later mapping at
// these addresses (a registry chunk, a heap arena) does not inherit them.
void forget_stack_shadow(const void* p, std::size_t bytes) noexcept;

}  // namespace fiber::detail
