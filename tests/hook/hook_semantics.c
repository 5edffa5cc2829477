/* libfiber_hook, call by call (linked with the hook, compiled as C): inside fibers
 * the blocking calls park only their fiber (a ticker fiber keeps counting while
 * they wait) and return what libc would; outside fibers, on regular files and on
 * O_NONBLOCK fds they are libc's. What the hook remembers of each fd follows
 * fcntl(F_SETFL), ioctl(FIONBIO), dup2 and the reuse of closed numbers; a close on
 * another thread wakes a fiber waiting on the fd; and the calls work from tasks of
 * fiber_run's workers. Prints one line per failed check; exit 1 if any. */
#include <fiber/fiber.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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

/* ---- what the hook remembers of each fd ---- */

/* Writes `c` to fd after ms milliseconds, from a task. */
struct late_write {
  int fd, ms;
  char c;
};
static void* write_later(void* arg) {
  struct late_write* w = (struct late_write*)arg;
  fiber_sleep_ms(w->ms);
  CHECK(write(w->fd, &w->c, 1) == 1);
  return NULL;
}

/* A hooked read of one byte from `fd` while a task of this loop writes it 20 ms
 * later: 1 if it read the byte, which it can only get if it parked (a read that
 * blocked the thread would hang the test: see hung()). */
static int read_parks(int fd, int write_fd) {
  struct late_write w;
  fiber_task* t;
  char c = 0;
  int ok;
  w.fd = write_fd;
  w.ms = 20;
  w.c = 'p';
  t = fiber_spawn(NULL, write_later, &w);
  ok = read(fd, &c, 1) == 1 && c == 'p';
  fiber_task_join(t, NULL);
  fiber_task_release(t);
  return ok;
}

/* A hooked read that fails with EAGAIN at once, without parking (the ticker did
 * not run meanwhile). */
static int read_says_eagain(int fd) {
  char c;
  int before = ticks;
  errno = 0;
  return read(fd, &c, 1) == -1 && errno == EAGAIN && ticks == before;
}

static void* mode_changes(void* arg) {
  int sv[2], fl, on = 1, off = 0;
  (void)arg;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(read_parks(sv[0], sv[1])); /* remembered: a blocking socket */
  fl = fcntl(sv[0], F_GETFL);
  CHECK(fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) == 0);
  CHECK(read_says_eagain(sv[0]));
  CHECK(read_says_eagain(sv[0])); /* (from what is remembered now) */
  CHECK(fcntl(sv[0], F_SETFL, fl & ~O_NONBLOCK) == 0);
  CHECK(read_parks(sv[0], sv[1]));
  CHECK(ioctl(sv[0], FIONBIO, &on) == 0);
  CHECK(read_says_eagain(sv[0]));
  CHECK(ioctl(sv[0], FIONBIO, &off) == 0);
  CHECK(read_parks(sv[0], sv[1]));
  /* The same on a pipe, and a pipe made non-blocking by pipe2. */
  CHECK(pipe(pipe_fds) == 0);
  CHECK(read_parks(pipe_fds[0], pipe_fds[1]));
  CHECK(ioctl(pipe_fds[0], FIONBIO, &on) == 0);
  CHECK(read_says_eagain(pipe_fds[0]));
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  CHECK(pipe2(pipe_fds, O_NONBLOCK) == 0);
  CHECK(read_says_eagain(pipe_fds[0]));
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

/* SO_RCVTIMEO set on a socket the hook knows had none; and inherited by accept. */
static void* timeouts_change(void* arg) {
  int sv[2], l, c, a;
  struct timeval tv = {0, 30000}, none = {0, 0};
  struct sockaddr_in addr;
  socklen_t len = sizeof addr;
  double t0;
  char ch;
  (void)arg;
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(read_parks(sv[0], sv[1])); /* no timeout: remembered */
  CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  t0 = now_s();
  errno = 0;
  CHECK(read(sv[0], &ch, 1) == -1 && errno == EAGAIN);
  CHECK(now_s() - t0 >= 0.025);
  CHECK(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none) == 0);
  CHECK(read_parks(sv[0], sv[1]));
  close(sv[0]);
  close(sv[1]);
  /* A listener's SO_RCVTIMEO goes to the sockets it accepts. */
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  l = socket(AF_INET, SOCK_STREAM, 0);
  c = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  CHECK(bind(l, (struct sockaddr*)&addr, sizeof addr) == 0 && listen(l, 8) == 0);
  CHECK(getsockname(l, (struct sockaddr*)&addr, &len) == 0);
  CHECK(connect(c, (struct sockaddr*)&addr, sizeof addr) == 0);
  a = accept(l, NULL, NULL);
  CHECK(a >= 0);
  t0 = now_s();
  errno = 0;
  CHECK(read(a, &ch, 1) == -1 && errno == EAGAIN);
  CHECK(now_s() - t0 >= 0.025);
  close(a);
  close(c);
  close(l);
  return NULL;
}

/* A regular file holding "file!" (made by main()), opened for reading: it takes
 * the lowest free fd number. */
static char text_path[] = "/tmp/fiber_hook_fileXXXXXX";
static int file_with_text(void) {
  return open(text_path, O_RDONLY); /* (not an interposed call: the hook does not see it) */
}
static int make_text_file(void) {
  int fd = mkstemp(text_path), ok;
  if (fd < 0) return 0;
  ok = write(fd, "file!", 5) == 5;
  close(fd);
  return ok;
}

/* Opens the file in place of `number`, just closed (the lowest free number). */
static int reuses(int number) {
  int fd = file_with_text();
  if (fd != number) printf("note: fd %d did not reuse number %d\n", fd, number);
  return fd;
}

static int reads_file_text(int fd) {
  char buf[8] = {0};
  return read(fd, buf, sizeof buf) == 5 && memcmp(buf, "file!", 5) == 0;
}

static void* reused_numbers(void* arg) {
  int sv[2], p[2], number, fd;
  (void)arg;
  /* A socket, remembered as one, closed; a regular file gets its number. */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(read_parks(sv[0], sv[1]));
  number = sv[0];
  close(sv[0]);
  fd = reuses(number);
  CHECK(fd == number);
  CHECK(reads_file_text(fd)); /* read as a file: not recv'd as a socket, not parked */
  close(fd);
  /* The same with the socket closed behind the hook's back (a raw system call):
   * the remembered socket says ENOTSOCK, and is looked at again. */
  close(sv[1]);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(read_parks(sv[0], sv[1]));
  number = sv[0];
  CHECK(syscall(SYS_close, sv[0]) == 0);
  fd = reuses(number);
  CHECK(fd == number);
  CHECK(reads_file_text(fd));
  close(fd);
  close(sv[1]);
  /* A closed pipe's number, taken by a non-blocking eventfd (made by a call the
   * hook does not see): its read says EAGAIN at once, as libc's. */
  CHECK(pipe(p) == 0);
  CHECK(read_parks(p[0], p[1]));
  number = p[0];
  close(p[0]);
  fd = eventfd(0, EFD_NONBLOCK);
  CHECK(fd == number);
  {
    uint64_t v;
    errno = 0;
    CHECK(read(fd, &v, sizeof v) == -1 && errno == EAGAIN);
  }
  close(fd);
  close(p[1]);
  /* accept4(SOCK_NONBLOCK) returns the number of a pipe closed behind the hook's
   * back: what it returns is new, non-blocking (EAGAIN at once). */
  {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(l, (struct sockaddr*)&a, sizeof a) == 0 && listen(l, 8) == 0);
    CHECK(getsockname(l, (struct sockaddr*)&a, &len) == 0);
    CHECK(connect(c, (struct sockaddr*)&a, sizeof a) == 0);
    CHECK(pipe(p) == 0);
    CHECK(read_parks(p[0], p[1]));
    number = p[0];
    CHECK(syscall(SYS_close, p[0]) == 0);
    fd = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    CHECK(fd == number);
    CHECK(read_says_eagain(fd));
    close(fd);
    close(p[1]);
    close(c);
    close(l);
  }
  /* A pipe gets the number of a closed socket: it waits as a pipe. */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(read_parks(sv[0], sv[1]));
  number = sv[0];
  close(sv[0]);
  CHECK(pipe(p) == 0);
  CHECK(p[0] == number);
  CHECK(read_parks(p[0], p[1]));
  close(p[0]);
  close(p[1]);
  close(sv[1]);
  return NULL;
}

/* dup2 onto an fd the hook remembers, and the O_NONBLOCK a dup shares. */
static int dup2_target = -1;
static ssize_t dup2_waiter_result = 0;
static int dup2_waiter_errno = 0;
static void* waits_on_dup2_target(void* arg) {
  char c;
  (void)arg;
  errno = 0;
  dup2_waiter_result = read(dup2_target, &c, 1);
  dup2_waiter_errno = errno;
  return NULL;
}
static void* dup_semantics(void* arg) {
  int p[2], sv[2], file, d;
  fiber_task* t;
  struct flock lk;
  (void)arg;
  CHECK(pipe(p) == 0);
  CHECK(read_parks(p[0], p[1])); /* remembered: a blocking pipe */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(dup2(sv[0], p[0]) == p[0]); /* p[0] is that socket now */
  CHECK(read_parks(p[0], sv[1]));
  /* The dup shares its file's O_NONBLOCK: set through the other fd, it holds here. */
  CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
  CHECK(read_says_eagain(p[0]));
  CHECK(fcntl(sv[0], F_SETFL, 0) == 0);
  CHECK(read_parks(p[0], sv[1]));
  /* dup2 onto an fd a fiber waits on: it wakes with EBADF, as from a close. */
  file = file_with_text();
  CHECK(file >= 0);
  dup2_target = p[0];
  t = fiber_spawn(NULL, waits_on_dup2_target, NULL);
  fiber_sleep_ms(10);
  CHECK(dup2(file, p[0]) == p[0]);
  fiber_task_join(t, NULL);
  fiber_task_release(t);
  CHECK(dup2_waiter_result == -1 && dup2_waiter_errno == EBADF);
  CHECK(reads_file_text(p[0])); /* a regular file now */
  /* dup3, and fcntl's F_DUPFD and F_DUPFD_CLOEXEC: the new fd is the same socket. */
  CHECK(dup3(sv[0], p[0], O_CLOEXEC) == p[0]);
  CHECK(read_parks(p[0], sv[1]));
  d = fcntl(sv[0], F_DUPFD, 40);
  CHECK(d >= 40);
  CHECK(read_parks(d, sv[1]));
  close(d);
  d = fcntl(sv[0], F_DUPFD_CLOEXEC, 50);
  CHECK(d >= 50 && (fcntl(d, F_GETFD) & FD_CLOEXEC));
  CHECK(read_parks(d, sv[1]));
  close(d);
  /* fcntl's other commands pass through: an int, a pointer, nothing. */
  CHECK(fcntl(file, F_SETFD, FD_CLOEXEC) == 0 && fcntl(file, F_GETFD) == FD_CLOEXEC);
  memset(&lk, 0, sizeof lk);
  lk.l_type = F_RDLCK;
  lk.l_whence = SEEK_SET;
  CHECK(fcntl(file, F_GETLK, &lk) == 0 && lk.l_type == F_UNLCK);
  memset(&lk, 0, sizeof lk);
  lk.l_type = F_RDLCK;
  CHECK(fcntl64(file, F_GETLK, &lk) == 0 && lk.l_type == F_UNLCK);
  CHECK(fcntl(p[1], F_SETPIPE_SZ, 65536) >= 65536 && fcntl(p[1], F_GETPIPE_SZ) >= 65536);
  errno = 0;
  CHECK(fcntl(-1, F_GETFL) == -1 && errno == EBADF);
  errno = 0;
  CHECK(dup2(-1, p[0]) == -1 && errno == EBADF);
  CHECK(reads_file_text(file) == 0); /* (still open: at its end) */
  close(file);
  close(p[0]);
  close(p[1]);
  close(sv[0]);
  close(sv[1]);
  return NULL;
}

/* close() on a thread outside the loop wakes the fiber waiting on the fd. The
 * closing thread is told to go by a fiber that runs after the reader parked (a
 * handshake, which also orders the close after the read for ThreadSanitizer): a
 * read that blocked the thread would hang the test. */
static int other_thread_fd = -1, go = 0;
static pthread_mutex_t go_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go_cond = PTHREAD_COND_INITIALIZER;
static ssize_t other_thread_result = 0;
static int other_thread_errno = 0;
static void* closes_when_told(void* arg) {
  (void)arg;
  pthread_mutex_lock(&go_lock);
  while (!go) pthread_cond_wait(&go_cond, &go_lock);
  pthread_mutex_unlock(&go_lock);
  CHECK(close(other_thread_fd) == 0);
  return NULL;
}
static void* blocked_in_read(void* arg) {
  char c;
  (void)arg;
  errno = 0;
  other_thread_result = read(other_thread_fd, &c, 1);
  other_thread_errno = errno;
  return NULL;
}
static void* close_on_other_thread(void* arg) {
  pthread_t th;
  fiber_task* r;
  (void)arg;
  CHECK(pipe(pipe_fds) == 0);
  other_thread_fd = pipe_fds[0];
  go = 0;
  CHECK(pthread_create(&th, NULL, closes_when_told, NULL) == 0);
  r = fiber_spawn(NULL, blocked_in_read, NULL);
  fiber_sleep_ms(10); /* the reader parks */
  pthread_mutex_lock(&go_lock);
  go = 1;
  pthread_cond_signal(&go_cond);
  pthread_mutex_unlock(&go_lock);
  fiber_task_join(r, NULL);
  fiber_task_release(r);
  pthread_join(th, NULL);
  CHECK(other_thread_result == -1 && other_thread_errno == EBADF);
  close(pipe_fds[1]);
  return NULL;
}

/* ---- on fiber_run's workers ---- */

/* Pairs of tasks (on whichever workers they start) ping-pong over socketpairs
 * and pipes with the hooked blocking calls. */
enum { pairs = 32, exchanges = 200 };
static pthread_mutex_t worker_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t worker_threads[16];
static int nworker_threads = 0, pongs_ok = 0;
static void note_worker(void) {
  int i;
  pthread_mutex_lock(&worker_lock);
  for (i = 0; i < nworker_threads; ++i)
    if (pthread_equal(worker_threads[i], pthread_self())) break;
  if (i == nworker_threads && nworker_threads < 16) worker_threads[nworker_threads++] = pthread_self();
  pthread_mutex_unlock(&worker_lock);
}
struct pair_ends {
  int in, out;
};
static void* ponger(void* arg) {
  struct pair_ends* e = (struct pair_ends*)arg;
  int i;
  char c;
  note_worker();
  for (i = 0; i < exchanges; ++i) {
    if (read(e->in, &c, 1) != 1 || write(e->out, &c, 1) != 1) return (void*)1;
  }
  return NULL;
}
static void* pinger(void* arg) {
  int sv[2], p[2], i, ok = 1;
  struct pair_ends e;
  fiber_task* t;
  void* r = NULL;
  char c;
  (void)arg;
  note_worker();
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || pipe(p) != 0) return (void*)1;
  e.in = p[0];  /* the ponger reads the pipe, */
  e.out = sv[1]; /* answers on the socket */
  t = fiber_spawn(NULL, ponger, &e);
  for (i = 0; i < exchanges && ok; ++i) {
    char want = (char)('a' + i % 26);
    ok = write(p[1], &want, 1) == 1 && read(sv[0], &c, 1) == 1 && c == want;
  }
  fiber_task_join(t, &r);
  fiber_task_release(t);
  close(sv[0]);
  close(sv[1]);
  close(p[0]);
  close(p[1]);
  if (ok && !r) {
    pthread_mutex_lock(&worker_lock);
    ++pongs_ok;
    pthread_mutex_unlock(&worker_lock);
  }
  return NULL;
}
static void* spawn_pairs(void* arg) {
  fiber_task* t[pairs];
  int i;
  (void)arg;
  for (i = 0; i < pairs; ++i) t[i] = fiber_spawn(NULL, pinger, NULL);
  for (i = 0; i < pairs; ++i) {
    fiber_task_join(t[i], NULL);
    fiber_task_release(t[i]);
  }
  return NULL;
}
static void test_on_workers(void) {
  CHECK(fiber_run(spawn_pairs, NULL, 2, NULL) == FIBER_OK);
  CHECK(pongs_ok == pairs);
  printf("hook_semantics: %d pairs of tasks ping-ponged on %d worker thread(s)\n", pongs_ok, nworker_threads);
}

/* A check that would wait forever (a read taken for a blocking one) ends the
 * test here rather than at CTest's timeout. */
static void hung(int sig) {
  static const char msg[] = "hook_semantics: no progress for 200 s: a call waits that should not\n";
  (void)sig;
  (void)!write(2, msg, sizeof msg - 1);
  _exit(1);
}

int main(void) {
  signal(SIGALRM, hung);
  alarm(200);
  CHECK(make_text_file());
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
  run_with_ticker(mode_changes, NULL);
  run_with_ticker(reused_numbers, NULL);
  run_with_ticker(dup_semantics, NULL);
  run_with_ticker(timeouts_change, NULL);
  run_with_ticker(close_on_other_thread, NULL);
  test_on_workers();
  unlink(text_path);
  if (failures) {
    printf("hook_semantics: %d check(s) failed\n", failures);
    return 1;
  }
  printf("hook_semantics: all checks passed\n");
  return 0;
}
