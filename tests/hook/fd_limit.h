/* Shared by the hooked echo server and its client (tests/hook/). */
#ifndef FIBER_TESTS_HOOK_FD_LIMIT_H
#define FIBER_TESTS_HOOK_FD_LIMIT_H

#include <stdio.h>
#include <sys/resource.h>

/* Makes room for `clients` connections (and a few more fds) in the soft limit;
 * 0, with a message naming `program`, if the hard limit is too low. */
static int enough_fds(const char* program, int clients) {
  struct rlimit rl;
  rlim_t need = (rlim_t)clients + 64;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
      fprintf(stderr, "%s: %d clients need %lu open files; the hard limit is %lu (raise it: ulimit -Hn)\n", program,
              clients, (unsigned long)need, (unsigned long)rl.rlim_max);
      return 0;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      fprintf(stderr, "%s: setrlimit(RLIMIT_NOFILE): ", program);
      perror("");
      return 0;
    }
  }
  return 1;
}

#endif
