/* A line-echo server written with plain blocking POSIX calls (socket, accept,
 * read, write, close), as legacy code is. handle_client() and accept_loop() are
 * the "unmodified" part: they know nothing of fibers. Only main() chooses how
 * each client's handler runs:
 *
 *   echo_server PORTFILE threads N   one thread per client (the classic way)
 *   echo_server PORTFILE fibers N    one fiber per client, all on this thread
 *                                    (fiber.h); with libfiber_hook loaded, their
 *                                    blocking calls park the fiber, not the thread
 *   echo_server PORTFILE fibersW N   the same on W worker threads (fiber_run):
 *                                    each client's fiber starts on any worker and
 *                                    stays there
 *
 * It listens on 127.0.0.1 (an ephemeral port, written to PORTFILE), serves N
 * clients, then prints two lines: how many it served, the most served at once,
 * and on how many threads the handlers ran; then its peak resident set and the
 * CPU time it used (all its threads). It
 * raises its soft limit of open files to what N clients need (or says why not). */
#include <fiber/fiber.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fd_limit.h"

static int served = 0, active = 0, peak_active = 0;
static pthread_t* handler_threads; /* (as many as clients) */
static int nhandler_threads = 0, max_clients = 0;
static pthread_mutex_t stats = PTHREAD_MUTEX_INITIALIZER;

/* Counts the distinct threads that ran handlers (bookkeeping, not legacy code). */
static void note_handler_thread(void) {
  int i;
  for (i = 0; i < nhandler_threads; ++i)
    if (pthread_equal(handler_threads[i], pthread_self())) return;
  if (nhandler_threads < max_clients) handler_threads[nhandler_threads++] = pthread_self();
}

/* ---- the legacy part: blocking calls only ---- */

static void handle_client(int fd) {
  char buf[4096];
  ssize_t n;
  pthread_mutex_lock(&stats);
  if (++active > peak_active) peak_active = active;
  note_handler_thread();
  pthread_mutex_unlock(&stats);
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    ssize_t off = 0;
    while (off < n) {
      ssize_t w = write(fd, buf + off, (size_t)(n - off));
      if (w <= 0) break;
      off += w;
    }
  }
  close(fd);
  pthread_mutex_lock(&stats);
  --active;
  ++served;
  pthread_mutex_unlock(&stats);
}

static int listen_local(const char* portfile) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int one = 1;
  FILE* f;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(s, (struct sockaddr*)&a, sizeof a) != 0 || listen(s, 1024) != 0) return -1;
  if (getsockname(s, (struct sockaddr*)&a, &len) != 0) return -1;
  f = fopen(portfile, "w");
  if (!f) return -1;
  fprintf(f, "%d\n", ntohs(a.sin_port));
  fclose(f);
  return s;
}

/* Accepts `clients` connections, handing each to start(fd). */
static int accept_loop(int s, int clients, void (*start)(int fd)) {
  int i;
  for (i = 0; i < clients; ++i) {
    int c = accept(s, NULL, NULL);
    if (c < 0) {
      perror("echo_server: accept");
      return -1;
    }
    start(c);
  }
  return 0;
}

/* ---- threads ---- */

static pthread_t* threads;
static int nthreads = 0;

static void* thread_main(void* arg) {
  handle_client((int)(intptr_t)arg);
  return NULL;
}
static void start_thread(int fd) {
  if (pthread_create(&threads[nthreads], NULL, thread_main, (void*)(intptr_t)fd) != 0) {
    perror("echo_server: pthread_create");
    exit(1);
  }
  ++nthreads;
}

/* ---- fibers ---- */

static fiber_task** tasks;
static int ntasks = 0;

static void* task_main(void* arg) {
  handle_client((int)(intptr_t)arg);
  return NULL;
}
static void start_fiber(int fd) {
  tasks[ntasks] = fiber_spawn(NULL, task_main, (void*)(intptr_t)fd);
  if (!tasks[ntasks]) {
    fprintf(stderr, "echo_server: fiber_spawn: %s\n", fiber_last_error());
    exit(1);
  }
  ++ntasks;
}

struct acceptor_args {
  int s, clients;
};
static void* acceptor(void* arg) {
  struct acceptor_args* a = (struct acceptor_args*)arg;
  return (void*)(intptr_t)accept_loop(a->s, a->clients, start_fiber);
}

/* fiber_run's main task: accepts, then waits for every handler (fiber_run
 * cancels the tasks still alive when it returns). */
static void* acceptor_and_join(void* arg) {
  void* r = acceptor(arg);
  int i;
  for (i = 0; i < ntasks; ++i) fiber_task_join(tasks[i], NULL);
  return r;
}

/* The peak resident set of this program, in KiB: VmHWM (ru_maxrss would count
 * the parent's before exec too: a Python driver's 15 MB). */
static long peak_rss_kib(void) {
  char line[256];
  long kib = -1;
  FILE* f = fopen("/proc/self/status", "r");
  if (f) {
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    fclose(f);
  }
  if (kib < 0) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    kib = ru.ru_maxrss;
  }
  return kib;
}

int main(int argc, char** argv) {
  int clients, s, i, workers = 0;
  const char* mode = argc == 4 ? argv[2] : "";
  if (strncmp(mode, "fibers", 6) == 0 && mode[6]) workers = atoi(mode + 6);
  if (argc != 4 ||
      (strcmp(mode, "threads") != 0 && strcmp(mode, "fibers") != 0 && (workers < 1 || workers > 256)) ||
      (clients = atoi(argv[3])) < 1 || clients > 100000) {
    fprintf(stderr, "usage: echo_server PORTFILE threads|fibers|fibersWORKERS CLIENTS(1..100000)\n");
    return 2;
  }
  if (!enough_fds("echo_server", clients)) return 1;
  max_clients = clients;
  handler_threads = calloc((size_t)clients, sizeof *handler_threads);
  threads = calloc((size_t)clients, sizeof *threads);
  tasks = calloc((size_t)clients, sizeof *tasks);
  if (!handler_threads || !threads || !tasks) {
    fprintf(stderr, "echo_server: out of memory\n");
    return 1;
  }
  s = listen_local(argv[1]);
  if (s < 0) {
    perror("echo_server: listen");
    return 1;
  }
  if (strcmp(mode, "threads") == 0) {
    if (accept_loop(s, clients, start_thread) != 0) return 1;
    for (i = 0; i < nthreads; ++i) pthread_join(threads[i], NULL);
  } else if (workers > 0) {
    struct acceptor_args a;
    void* r = NULL;
    int rc;
    a.s = s;
    a.clients = clients;
    rc = fiber_run(acceptor_and_join, &a, (unsigned)workers, &r);
    if (rc != FIBER_OK || r) {
      fprintf(stderr, "echo_server: fiber_run: %s\n", rc != FIBER_OK ? fiber_last_error() : "accept failed");
      return 1;
    }
    for (i = 0; i < ntasks; ++i) fiber_task_release(tasks[i]);
  } else {
    fiber_loop* loop = fiber_loop_create();
    struct acceptor_args a;
    fiber_task* t;
    int rc;
    a.s = s;
    a.clients = clients;
    t = fiber_spawn(loop, acceptor, &a);
    rc = fiber_loop_run(loop);
    if (rc != FIBER_OK) {
      fprintf(stderr, "echo_server: fiber_loop_run: %s\n", fiber_last_error());
      return 1;
    }
    fiber_task_release(t);
    for (i = 0; i < ntasks; ++i) fiber_task_release(tasks[i]);
    fiber_loop_destroy(loop);
  }
  close(s);
  printf("served %d clients, at most %d at once, on %d thread(s)\n", served, peak_active, nhandler_threads);
  {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %ld KiB, CPU %.3f s (user %.3f s, system %.3f s)\n", peak_rss_kib(),
           (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
  }
  free(handler_threads);
  free(threads);
  free(tasks);
  return 0;
}
