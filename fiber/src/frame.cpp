// Compiles the static_asserts in the frame-layout header of the assembly file this
// build uses (arch/switch_<port>.h, beside arch/switch_<port>.S; FIBER_FRAME_HEADER,
// set by CMake), proving that the offsets the assembly uses describe the struct C++
// expects.
#ifdef FIBER_FRAME_HEADER
#include FIBER_FRAME_HEADER
#endif
