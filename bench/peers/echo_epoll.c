/* The floor of the echo benchmark: a plain single-threaded echo server on
 * edge-triggered epoll, no fibers, no coroutines. Prints the port it listens on.
 *
 *   echo_epoll [port]   (0 or none: any free port; 127.0.0.1)
 *
 * Edge-triggered: on each readiness edge a socket is read until it is drained (a
 * short read, or EAGAIN) and what was read is written back at once; what the kernel
 * will not take yet is kept, reading stops, and EPOLLOUT is asked for until it has
 * gone (with 64-byte messages it never happens). Data arriving after the last read
 * raises a new edge, so a short read ends the round without a read that fails. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
  int fd;
  int want_out; /* EPOLLOUT is in the epoll set */
  size_t pending_off, pending_len; /* bytes read and not yet written back */
  char buf[4096];
};

static void close_conn(struct conn* c) {
  close(c->fd);
  free(c);
}

/* Writes back what is pending; 0 when all of it went, 1 if it must wait, -1 on error. */
static int flush_conn(struct conn* c) {
  while (c->pending_len > 0) {
    ssize_t n = write(c->fd, c->buf + c->pending_off, c->pending_len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 1 : -1;
    }
    c->pending_off += (size_t)n;
    c->pending_len -= (size_t)n;
  }
  c->pending_off = 0;
  return 0;
}

static int ep;

static void watch(struct conn* c, int want_out) {
  if (c->want_out == want_out) return;
  c->want_out = want_out;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (want_out ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Echoes until the socket is drained; -1 when the connection is over. */
static int serve_conn(struct conn* c) {
  int r = flush_conn(c);
  if (r < 0) return -1;
  if (r > 0) return 0; /* still waiting for EPOLLOUT */
  watch(c, 0);
  for (;;) {
    ssize_t n = read(c->fd, c->buf, sizeof c->buf);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? 0 : -1;
    }
    c->pending_off = 0;
    c->pending_len = (size_t)n;
    r = flush_conn(c);
    if (r < 0) return -1;
    if (r > 0) {
      watch(c, 1); /* the rest goes on EPOLLOUT; reading waits for it */
      return 0;
    }
    if ((size_t)n < sizeof c->buf) return 0; /* drained */
  }
}

int main(int argc, char** argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0) {
    perror("echo_epoll: bind/listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  getsockname(lfd, (struct sockaddr*)&addr, &len);
  printf("%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL}; /* NULL: the listener */
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("echo_epoll: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      struct conn* c = events[i].data.ptr;
      if (c == NULL) {
        for (;;) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break; /* EAGAIN: all accepted */
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = malloc(sizeof *c);
          c->fd = fd;
          c->pending_off = c->pending_len = 0;
          c->want_out = 0;
          struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
        continue;
      }
      if (serve_conn(c) < 0) close_conn(c); /* close() also removes it from the epoll set */
    }
  }
}
