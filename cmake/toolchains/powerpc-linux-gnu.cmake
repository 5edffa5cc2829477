# Cross-compiling for POWER 32-bit (ppc) with Debian's g++-powerpc-linux-gnu; tests run under qemu-ppc.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ppc)
set(FIBER_CROSS_TRIPLE powerpc-linux-gnu)
set(FIBER_CROSS_QEMU qemu-ppc)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
