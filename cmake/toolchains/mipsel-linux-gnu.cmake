# Cross-compiling for MIPS32 o32 little-endian with Debian's g++-mipsel-linux-gnu; tests run under qemu-mipsel.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR mipsel)
set(FIBER_CROSS_TRIPLE mipsel-linux-gnu)
set(FIBER_CROSS_QEMU qemu-mipsel)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
