# Cross-compiling for AArch64 Linux with Debian's g++-aarch64-linux-gnu; tests run
# under qemu-aarch64 with the cross sysroot as its library path.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(FIBER_CROSS_TRIPLE aarch64-linux-gnu)
set(FIBER_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
