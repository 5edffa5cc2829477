/* The load of the echo benchmark, the same for every server: C, one thread, epoll.
 *
 *   echo_load PORT [connections=100] [seconds=3] [message_bytes=64] [warmup_seconds=0.5]
 *
 * Opens `connections` connections to 127.0.0.1:PORT; each sends a message of
 * `message_bytes` bytes, waits until the whole echo has come back, and sends the
 * next one (so at most one message per connection is in flight). Runs the warm-up,
 * then counts the echoes completed during `seconds` and prints one line of JSON:
 *   {"messages_per_second": ..., "messages": ..., "seconds": ..., "connections": ..., "bytes": ...}
 * Exits 1 if a connection fails, is closed by the server or gets back other bytes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
  int fd;
  int want_out; /* EPOLLOUT is in the epoll set */
  size_t sent, received; /* of the current message */
  unsigned seq;          /* varies the message so that a wrong echo is seen */
};

static size_t msg_bytes;
static int ep;
static char* out_msg;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char* what) {
  fprintf(stderr, "echo_load: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void fill(struct conn* c) { memset(out_msg, 'a' + (int)(c->seq % 26), msg_bytes); }

static void watch(struct conn* c, int want_out) {
  if (c->want_out == want_out) return;
  c->want_out = want_out;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET | (want_out ? EPOLLOUT : 0), .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) fail("epoll_ctl");
}

/* Sends what is left of the current message; asks for EPOLLOUT if the kernel takes
 * no more (with 64-byte messages it never happens). */
static void pump_send(struct conn* c) {
  fill(c);
  while (c->sent < msg_bytes) {
    ssize_t n = write(c->fd, out_msg + c->sent, msg_bytes - c->sent);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        watch(c, 1);
        return;
      }
      fail("write");
    }
    c->sent += (size_t)n;
  }
  watch(c, 0);
}

/* Reads what has come; returns the number of whole echoes completed (0 or 1: a new
 * message is started after each). Edge-triggered: a short read means drained, and
 * after a completed echo nothing more can be waiting (the next message was not yet
 * sent), so no read ends in EAGAIN but on a spurious edge; bytes arriving later
 * raise a new edge. */
static long pump_recv(struct conn* c) {
  char buf[4096];
  long done = 0;
  for (;;) {
    size_t want = msg_bytes - c->received;
    if (want > sizeof buf) want = sizeof buf;
    ssize_t n = read(c->fd, buf, want);
    if (n == 0) {
      errno = ECONNRESET;
      fail("the server closed a connection");
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return done;
      fail("read");
    }
    for (ssize_t i = 0; i < n; ++i)
      if (buf[i] != (char)('a' + (int)(c->seq % 26))) {
        errno = EPROTO;
        fail("the echo differs from the message");
      }
    c->received += (size_t)n;
    if (c->received == msg_bytes) {
      if (c->sent != msg_bytes) {
        errno = EPROTO;
        fail("echo before the message was sent");
      }
      ++done;
      ++c->seq;
      c->sent = c->received = 0;
      pump_send(c);
      return done;
    }
    if ((size_t)n < want) return done; /* drained */
  }
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: echo_load PORT [connections=100] [seconds=3] [message_bytes=64] [warmup_seconds=0.5]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  int nconn = argc > 2 ? atoi(argv[2]) : 100;
  double seconds = argc > 3 ? atof(argv[3]) : 3.0;
  msg_bytes = argc > 4 ? (size_t)atol(argv[4]) : 64;
  double warmup = argc > 5 ? atof(argv[5]) : 0.5;
  if (nconn <= 0 || msg_bytes == 0 || seconds <= 0) return 2;
  out_msg = malloc(msg_bytes);

  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  ep = epoll_create1(EPOLL_CLOEXEC);
  struct conn* conns = calloc((size_t)nconn, sizeof *conns);
  int one = 1;
  for (int i = 0; i < nconn; ++i) {
    /* Blocking connect (simple and over at once on loopback), then non-blocking. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    if (connect(fd, (struct sockaddr*)&addr, sizeof addr) < 0) fail("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) fail("fcntl");
    conns[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = &conns[i]};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) fail("epoll_ctl");
  }
  for (int i = 0; i < nconn; ++i) pump_send(&conns[i]);

  struct epoll_event events[1024];
  double start = now(), measure_from = start + warmup, end = measure_from + seconds;
  long counted = 0;
  int measuring = 0;
  for (;;) {
    double t = now();
    if (!measuring && t >= measure_from) {
      measuring = 1;
      counted = 0;
      measure_from = t;
      end = t + seconds;
    }
    if (measuring && t >= end) break;
    int n = epoll_wait(ep, events, 1024, 100);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      struct conn* c = events[i].data.ptr;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) {
        errno = ECONNRESET;
        fail("a connection failed");
      }
      if ((events[i].events & EPOLLOUT) && c->sent < msg_bytes) pump_send(c);
      if (events[i].events & EPOLLIN) counted += pump_recv(c);
    }
  }
  double elapsed = now() - measure_from;
  printf("{\"messages_per_second\": %.1f, \"messages\": %ld, \"seconds\": %.3f, \"connections\": %d, \"bytes\": %zu}\n",
         (double)counted / elapsed, counted, elapsed, nconn, msg_bytes);
  for (int i = 0; i < nconn; ++i) close(conns[i].fd);
  return 0;
}
