# Cross-compiling for i386 (i686) with Debian's g++-i686-linux-gnu. The x86_64
# kernel runs i386 code natively; the sysroot's dynamic loader stands in for an
# emulator so that the sysroot's libraries are used (qemu-i386 hangs on threaded
# programs here).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR i686)
set(FIBER_CROSS_TRIPLE i686-linux-gnu)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
set(CMAKE_CROSSCOMPILING_EMULATOR /usr/i686-linux-gnu/lib/ld-linux.so.2 --library-path /usr/i686-linux-gnu/lib)
