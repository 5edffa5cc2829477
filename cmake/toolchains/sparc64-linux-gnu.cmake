# Cross-compiling for SPARC64 with Debian's g++-sparc64-linux-gnu; tests run under qemu-sparc64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR sparc64)
set(FIBER_CROSS_TRIPLE sparc64-linux-gnu)
set(FIBER_CROSS_QEMU qemu-sparc64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
