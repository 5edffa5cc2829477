# Cross-compiling for MIPS64 n64 little-endian with Debian's g++-mips64el-linux-gnuabi64; tests run under qemu-mips64el.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR mips64el)
set(FIBER_CROSS_TRIPLE mips64el-linux-gnuabi64)
set(FIBER_CROSS_QEMU qemu-mips64el)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
