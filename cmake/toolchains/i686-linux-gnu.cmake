# Cross-compiling for i386 (i686) with Debian's g++-i686-linux-gnu; tests run under
# qemu-i386. They are linked statically: under qemu-i386 7.2 a dynamically linked
# program hangs at its first fork() or thread, and a statically linked one does
# not. (Running i386 code natively needs a kernel with IA32 emulation, which CI's
# kernel lacks.)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR i686)
set(FIBER_CROSS_TRIPLE i686-linux-gnu)
set(FIBER_CROSS_QEMU qemu-i386)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
