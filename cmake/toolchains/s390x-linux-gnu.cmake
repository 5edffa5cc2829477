# Cross-compiling for s390x (z/Architecture) with Debian's g++-s390x-linux-gnu; tests run under qemu-s390x.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR s390x)
set(FIBER_CROSS_TRIPLE s390x-linux-gnu)
set(FIBER_CROSS_QEMU qemu-s390x)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
