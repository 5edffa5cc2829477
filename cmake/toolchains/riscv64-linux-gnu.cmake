# Cross-compiling for RISC-V 64, lp64d with Debian's g++-riscv64-linux-gnu; tests run under qemu-riscv64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR riscv64)
set(FIBER_CROSS_TRIPLE riscv64-linux-gnu)
set(FIBER_CROSS_QEMU qemu-riscv64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
