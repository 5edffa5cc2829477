// Debugging fibers: names and ids, a dump of every live fiber, the stack-overflow
// handler. See also tools/gdb/fiber.py (`info fibers`, `fiber bt <id>`).
//
// Every fiber (a fiber::context, a generator's body, an event_loop task) has an id,
// unique in the process, and may have a name (at most 31 bytes are kept). The
// library keeps a registry of the live ones, which the gdb extension, dump() and
// the overflow handler read.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>

namespace fiber {

namespace this_fiber {
/// The running fiber's id, or 0 on a thread's own stack (outside any fiber).
std::uint64_t id() noexcept;
/// The running fiber's name ("" if it has none, or outside any fiber).
std::string name();
/// Names the running fiber (truncated to 31 bytes). Throws fiber::error outside a
/// fiber. An event_loop task may also be named when spawned (spawn_options::name).
void set_name(std::string_view name);
}  // namespace this_fiber

/// Prints every live fiber: id, name, state, stack range, and for a fiber of an
/// event_loop what it waits on (a channel, a timer, an fd, a task, ...). For
/// diagnosing deadlocks; a snapshot taken without stopping other threads.
void dump(std::ostream& out);

/// The stack-overflow handler (SIGSEGV/SIGBUS on an alternate signal stack): it
/// recognises a fault in the guard page below a fiber's stack, prints
///   fiber: stack overflow in fiber <name or id> (stack <size> bytes)
/// and the process dies of the signal (its default action, re-raised); every other
/// fault goes to the handler installed before it. It is installed when the first
/// fiber stack is allocated, unless disabled here first or by the environment
/// variable FIBER_OVERFLOW_HANDLER=0. Disabling after it is installed restores the
/// previous handlers. No effect on Windows.
void set_overflow_handler(bool enabled);
/// Whether the handler is installed now.
bool overflow_handler_installed() noexcept;

/// The address of the code every fiber starts in (fiber_trampoline, in arch/*.S or
/// the fallback backend): the outermost frame of every fiber's stack, where a
/// stack walker (a profiler, a crash reporter) has reached the bottom. On 32-bit
/// Arm bit 0 marks Thumb code, as in a function pointer.
const void* entry_frame_address() noexcept;

}  // namespace fiber
