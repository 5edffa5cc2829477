/* The work every server of the "echo with work" benchmark does (bench/report.py,
 * group echo_work): the same deterministic hashing, in C (echo_epoll.c), C++
 * (bench/echo_work_server.cpp, which includes this header) and Go (echo_server.go,
 * echoWork: the same loop, kept in step with this one by hand).
 *
 * FNV-1a, 64-bit, over the bytes just read, `passes` times in a row, each pass
 * starting from the hash the previous one left. The hash is a chain of
 * dependent xor-multiply steps (one per byte), so no compiler can vectorize or
 * shorten it: the three languages run it at the speed of the multiplier's
 * latency. The work is per byte received (passes steps for each), so it does not
 * depend on how the kernel splits the stream into reads: a 64-byte message costs
 * 64 * passes steps wherever its bytes land.
 *
 * The servers keep one running hash per connection, add it into a process-wide
 * sink when the connection ends (so the work cannot be optimized away), and echo
 * the bytes unchanged (so the client checks every reply as for plain echo).
 *
 * report.py passes the same `passes` (ECHO_WORK_PASSES there) to every server:
 * calibrated once, to about 20 us per 64-byte message on the 2-core machine the
 * project runs on (`echo_epoll --calibrate PASSES` prints the time of one
 * message's work here). */
#ifndef FIBER_BENCH_ECHO_WORK_H
#define FIBER_BENCH_ECHO_WORK_H

#include <stddef.h>
#include <stdint.h>

#define ECHO_WORK_BASIS 0xcbf29ce484222325ULL /* FNV-1a's offset basis: a connection's first hash */
#define ECHO_WORK_PRIME 0x100000001b3ULL

static inline uint64_t echo_work(uint64_t h, const unsigned char* bytes, size_t n, unsigned passes) {
  for (unsigned k = 0; k < passes; ++k)
    for (size_t i = 0; i < n; ++i) {
      h ^= bytes[i];
      h *= ECHO_WORK_PRIME;
    }
  return h;
}

#endif
