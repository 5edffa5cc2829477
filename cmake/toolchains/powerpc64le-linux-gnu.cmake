# Cross-compiling for POWER little-endian, ELFv2 (ppc64le) with Debian's g++-powerpc64le-linux-gnu; tests run under qemu-ppc64le.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ppc64le)
set(FIBER_CROSS_TRIPLE powerpc64le-linux-gnu)
set(FIBER_CROSS_QEMU qemu-ppc64le)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
