# Cross-compiling for POWER big-endian 64-bit, ELFv1 (ppc64) with Debian's g++-powerpc64-linux-gnu; tests run under qemu-ppc64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ppc64)
set(FIBER_CROSS_TRIPLE powerpc64-linux-gnu)
set(FIBER_CROSS_QEMU qemu-ppc64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
