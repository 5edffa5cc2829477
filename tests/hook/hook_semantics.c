/* libfiber_hook, call by call (linked with the hook, compiled as C): inside fibers
 * the blocking calls park only their fiber (a ticker fiber keeps counting while
 * they wait) and return what libc would; outside fibers, on regular files and on
 * O_NONBLOCK fds they are libc's. Prints one line per failed check; exit 1 if any. */
#include <fiber/fiber.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static int failures = 0;
#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      printf("%s:%d: CHECK(%s) failed (errno %d: %s)\n", __FILE__, __LINE__, #cond, errno, \
             strerror(errno));                                                              \
      ++failures;                                                                           \
    }                                                                                       \
  } while (0)

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A fiber that counts while the others wait: if a hooked call blocked the
 * thread, it would not count. */
static volatile int ticks = 0;
static volatile int stop_ticking = 0;
static void* ticker(void* arg) {
  (void)arg;
  while (!stop_ticking) {
    ++ticks;
    fiber_sleep_ms(1);
  }
  return NULL;
}

/* Runs fn as a task beside the ticker, on a fresh loop. */
static void run_with_ticker(fiber_task_fn fn, void* arg) {
  fiber_loop* loop = fiber_loop_create();
  fiber_task* t = fiber_spawn(loop, ticker, NULL);
  fiber_task* m;
  stop_ticking = 0;
  ticks = 0;
  m = fiber_spawn(loop, fn, arg);
  CHECK(fiber_task_join(m, NULL) == FIBER_OK);
  stop_ticking = 1;
  CHECK(fiber_loop_run(loop) == FIBER_OK);
  fiber_task_release(m);
  fiber_task_release(t);
  fiber_loop_destroy(loop);
}

/* ---- outside fibers: libc ---- */

static void test_outside_fibers(void) {
  int p[2];
  char c = 0;
  struct timespec bad = {0, 2000000000L};
  CHECK(pipe(p) == 0);
  CHECK(write(p[1], "a", 1) == 1);
  CHECK(read(p[0], &c, 1) == 1 && c == 'a');
  CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
  errno = 0;
  CHECK(read(p[0], &c, 1) == -1 && errno == EAGAIN);
  errno = 0;
  CHECK(nanosleep(&bad, NULL) == -1 && errno == EINVAL);
  CHECK(usleep(1000) == 0);
  CHECK(close(p[0]) == 0 && close(p[1]) == 0);
  errno = 0;
  CHECK(close(p[0]) == -1 && errno == EBADF);
}

/* ---- inside fibers ---- */

static void* sleeps(void* arg) {
  struct timespec ts = {0, 30000000L}, bad = {0, -1};
  double t0 = now_s();
  int before;
  (void)arg;
  before = ticks;
  CHECK(usleep(30000) == 0);
  CHECK(nanosleep(&ts, NULL) == 0);
  CHECK(sleep(0) == 0);
  CHECK(now_s() - t0 >= 0.059);
  CHECK(ticks - before >= 10); /* the ticker ran while this fiber slept */
  errno = 0;
  CHECK(nanosleep(&bad, NULL) == -1 && errno == EINVAL);
  return NULL;
}

static void* regular_file(void* arg) {
  char path[] = "/tmp/fiber_hook_testXXXXXX";
  int fd = mkstemp(path);
  char buf[8] = {0};
  (void)arg;
  CHECK(fd >= 0);
  CHECK(write(fd, "hello", 5) == 5);
  CHECK(lseek(fd, 0, SEEK_SET) == 0);
  CHECK(read(fd, buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
  CHECK(read(fd, buf, sizeof buf) == 0); /* EOF, no waiting */
  CHECK(close(fd) == 0);
  unlink(path);
  return NULL;
}

static int pipe_fds[2];
static void* late_writer(void* arg) {
  (void)arg;
  fiber_sleep_ms(30);
  CHECK(write(pipe_fds[1], "xyz", 3) == 3);
  return NULL;
}

static void* pipe_read_waits(void* arg) {
  char buf[8];
  int before = ticks;
  fiber_task* w;
  (void)arg;
  CHECK(pipe(pipe_fds) == 0);
  w = fiber_spawn(NULL, late_writer, NULL);
  CHECK(read(pipe_fds[0], buf, sizeof buf) == 3); /* blocks this fiber only */
  CHECK(memcmp(buf, "xyz", 3) == 0);
  CHECK(ticks - before >= 5);
  fiber_task_join(w, NULL);
  fiber_task_release(w);
  /* O_NONBLOCK stays libc's: EAGAIN at once. */
  CHECK(fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK) == 0);
  errno = 0;
  CHECK(read(pipe_fds[0], buf, sizeof buf) == -1 && errno == EAGAIN);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  return NULL;
}

/* A 1 MiB write to a pipe completes (all of it) while another fiber drains it. */
static size_t drained = 0;
static void* drain(void* arg) {
  static char buf[65536]; /* not on the fiber's 64 KiB stack */
  ssize_t n;
  (void)arg;
  while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0) drained += (size_t)n;
  return NULL;
}
static void* big_pipe_write(void* arg) {
  static char big[1 << 20];
  fiber_task* d;
  (void)arg;
  memset(big, 'b', sizeof big);
  CHECK(pipe(pipe_fds) == 0);
  d = fiber_spawn(NULL, drain, NULL);
  CHECK(write(pipe_fds[1], big, sizeof big) == (ssize_t)sizeof big);
  close(pipe_fds[1]);
  fiber_task_join(d, NULL);
  fiber_task_release(d);
  CHECK(drained == sizeof big);
  close(pipe_fds[0]);
  return NULL;
}

static void* socket_timeouts(void* arg) {
  int sv[2];
  char c;
  struct timeval tv = {0, 50000};
  double t0;
  int before = ticks;
  struct iovec iov[2];
  char a[3], b[4];
  (void)arg;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  t0 = now_s();
  errno = 0;
  CHECK(read(sv[0], &c, 1) == -1 && errno == EAGAIN); /* SO_RCVTIMEO: EAGAIN, as libc */
  CHECK(now_s() - t0 >= 0.045);
  CHECK(ticks - before >= 10);
  errno = 0;
  CHECK(recv(sv[0], &c, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN);
  /* MSG_WAITALL gathers across sends; readv/writev across buffers. */
  CHECK(send(sv[1], "ab", 2, 0) == 2);
  CHECK(send(sv[1], "cdefg", 5, 0) == 5);
  iov[0].iov_base = a;
  iov[0].iov_len = sizeof a;
  iov[1].iov_base = b;
  iov[1].iov_len = sizeof b;
  {
    char all[7];
    CHECK(recv(sv[0], all, sizeof all, MSG_WAITALL) == 7 && memcmp(all, "abcdefg", 7) == 0);
  }
  iov[0].iov_base = (void*)"123";
  iov[1].iov_base = (void*)"4567";
  CHECK(writev(sv[1], iov, 2) == 7);
  iov[0].iov_base = a;
  iov[1].iov_base = b;
  CHECK(readv(sv[0], iov, 2) == 7 && memcmp(a, "123", 3) == 0 && memcmp(b, "4567", 4) == 0);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

static int poll_pipes[2][2];
static void* write_second_later(void* arg) {
  (void)arg;
  fiber_sleep_ms(20);
  CHECK(write(poll_pipes[1][1], "!", 1) == 1);
  return NULL;
}

static void* poll_and_select(void* arg) {
  struct pollfd fds[2];
  fiber_task* w;
  int before = ticks;
  fd_set rs;
  struct timeval tv = {0, 20000};
  (void)arg;
  CHECK(pipe(poll_pipes[0]) == 0 && pipe(poll_pipes[1]) == 0);
  fds[0].fd = poll_pipes[0][0];
  fds[0].events = POLLIN;
  fds[1].fd = poll_pipes[1][0];
  fds[1].events = POLLIN;
  CHECK(poll(fds, 2, 10) == 0); /* timeout: nothing ready */
  w = fiber_spawn(NULL, write_second_later, NULL);
  CHECK(poll(fds, 2, -1) == 1);
  CHECK(fds[0].revents == 0 && (fds[1].revents & POLLIN));
  CHECK(ticks - before >= 10);
  fiber_task_join(w, NULL);
  fiber_task_release(w);
  FD_ZERO(&rs);
  FD_SET(poll_pipes[0][0], &rs);
  CHECK(select(poll_pipes[0][0] + 1, &rs, NULL, NULL, &tv) == 0); /* times out */
  FD_ZERO(&rs);
  FD_SET(poll_pipes[0][0], &rs);
  FD_SET(poll_pipes[1][0], &rs);
  tv.tv_sec = 1;
  tv.tv_usec = 0;
  CHECK(select((poll_pipes[0][0] > poll_pipes[1][0] ? poll_pipes[0][0] : poll_pipes[1][0]) + 1, &rs, NULL, NULL,
               &tv) == 1);
  CHECK(!FD_ISSET(poll_pipes[0][0], &rs) && FD_ISSET(poll_pipes[1][0], &rs));
  close(poll_pipes[0][0]);
  close(poll_pipes[0][1]);
  close(poll_pipes[1][0]);
  close(poll_pipes[1][1]);
  return NULL;
}

static int listener = -1, accepted = -1;
static void* acceptor(void* arg) {
  (void)arg;
  accepted = accept(listener, NULL, NULL);
  return NULL;
}

static void* tcp_connect_accept(void* arg) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  int c, refused;
  fiber_task* t;
  char buf[4];
  (void)arg;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  listener = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(bind(listener, (struct sockaddr*)&a, sizeof a) == 0 && listen(listener, 8) == 0);
  CHECK(getsockname(listener, (struct sockaddr*)&a, &len) == 0);
  t = fiber_spawn(NULL, acceptor, NULL); /* parks in accept */
  fiber_sleep_ms(10);
  c = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(connect(c, (struct sockaddr*)&a, sizeof a) == 0);
  CHECK((fcntl(c, F_GETFL) & O_NONBLOCK) == 0); /* connect left the flags as they were */
  fiber_task_join(t, NULL);
  fiber_task_release(t);
  CHECK(accepted >= 0);
  CHECK(write(c, "ping", 4) == 4);
  CHECK(read(accepted, buf, 4) == 4 && memcmp(buf, "ping", 4) == 0);
  close(c);
  close(accepted);
  close(listener);
  /* Nobody listens on that port any more: refused, with libc's errno. */
  refused = socket(AF_INET, SOCK_STREAM, 0);
  errno = 0;
  CHECK(connect(refused, (struct sockaddr*)&a, sizeof a) == -1 && errno == ECONNREFUSED);
  close(refused);
  return NULL;
}

/* close() of an fd a fiber is blocked on wakes it: its read fails with EBADF. */
static int closing_pipe[2];
static ssize_t closed_read_result = 0;
static int closed_read_errno = 0;
static void* blocked_reader(void* arg) {
  char c;
  (void)arg;
  errno = 0;
  closed_read_result = read(closing_pipe[0], &c, 1);
  closed_read_errno = errno;
  return NULL;
}
static void* close_wakes(void* arg) {
  fiber_task* r;
  (void)arg;
  CHECK(pipe(closing_pipe) == 0);
  r = fiber_spawn(NULL, blocked_reader, NULL);
  fiber_sleep_ms(10);
  CHECK(close(closing_pipe[0]) == 0);
  fiber_task_join(r, NULL);
  fiber_task_release(r);
  CHECK(closed_read_result == -1 && closed_read_errno == EBADF);
  close(closing_pipe[1]);
  return NULL;
}

/* A fiber cancelled while it waits in a hooked call sees EINTR. */
static int cancel_errno = 0;
static void* waits_in_sleep(void* arg) {
  (void)arg;
  errno = 0;
  if (usleep(10000000) == -1) cancel_errno = errno;
  return NULL;
}
static void* cancel_in_call(void* arg) {
  fiber_task* t = fiber_spawn(NULL, waits_in_sleep, NULL);
  (void)arg;
  fiber_sleep_ms(10);
  fiber_task_cancel(t);
  fiber_task_join(t, NULL);
  fiber_task_release(t);
  CHECK(cancel_errno == EINTR);
  return NULL;
}

int main(void) {
  test_outside_fibers();
  run_with_ticker(sleeps, NULL);
  run_with_ticker(regular_file, NULL);
  run_with_ticker(pipe_read_waits, NULL);
  run_with_ticker(big_pipe_write, NULL);
  run_with_ticker(socket_timeouts, NULL);
  run_with_ticker(poll_and_select, NULL);
  run_with_ticker(tcp_connect_accept, NULL);
  run_with_ticker(close_wakes, NULL);
  run_with_ticker(cancel_in_call, NULL);
  if (failures) {
    printf("hook_semantics: %d check(s) failed\n", failures);
    return 1;
  }
  printf("hook_semantics: all checks passed\n");
  return 0;
}
