# Cross-compiling for 32-bit ARM, AAPCS hard-float (armhf) with Debian's g++-arm-linux-gnueabihf;
# tests run under qemu-arm.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(FIBER_CROSS_TRIPLE arm-linux-gnueabihf)
set(FIBER_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
