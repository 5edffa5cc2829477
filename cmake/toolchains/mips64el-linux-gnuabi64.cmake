# Cross-compiling for MIPS64 n64 little-endian with Debian's g++-mips64el-linux-gnuabi64; tests run under qemu-mips64el.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR mips64el)
set(FIBER_CROSS_TRIPLE mips64el-linux-gnuabi64)
# qemu's default CPU for n64 binaries (5KEf) ignores every write to FCSR, so not even
# fesetround() works there; MIPS64R2-generic is the same ISA with a writable FCSR.
set(FIBER_CROSS_QEMU qemu-mips64el -cpu MIPS64R2-generic)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
