/* The floor of the echo benchmark: a plain echo server on edge-triggered epoll,
 * no fibers, no coroutines. Prints the port it listens on.
 *
 *   echo_epoll [--threads T] [--work PASSES] [port]   (port 0 or none: any free port; 127.0.0.1)
 *   echo_epoll --calibrate PASSES                     (the work's time per 64-byte message)
 *
 * By default one thread, and a plain echo. --threads T: T threads, each with its
 * own listening socket on the same port (SO_REUSEPORT: the kernel spreads the
 * connections over them) and its own epoll; a connection stays on the thread
 * that accepted it. --work PASSES: before echoing what it read, the server hashes
 * it PASSES times (echo_work.h, the "echo with work" rows of bench/report.py).
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
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "echo_work.h"

static unsigned work_passes; /* --work */
static uint64_t work_sink;   /* each connection's hash is added here when it ends */

struct conn {
  int fd;
  uint64_t hash; /* echo_work over what it sent so far */
  int want_out; /* EPOLLOUT is in the epoll set */
  size_t pending_off, pending_len; /* bytes read and not yet written back */
  char buf[4096];
};

static void close_conn(struct conn* c) {
  __atomic_fetch_add(&work_sink, c->hash, __ATOMIC_RELAXED);
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

static _Thread_local int ep; /* this thread's */

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
    if (work_passes) c->hash = echo_work(c->hash, (const unsigned char*)c->buf, (size_t)n, work_passes);
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

/* A listening socket on 127.0.0.1:port (SO_REUSEPORT with several threads); -1 on error. */
static int listen_on(int port, int reuse_port) {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port) setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0) {
    perror("echo_epoll: bind/listen");
    close(lfd);
    return -1;
  }
  return lfd;
}

/* One thread's loop: accepts on its own listener, serves what it accepted. */
static void* serve(void* arg) {
  int lfd = (int)(intptr_t)arg;
  int one = 1;
  ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL}; /* NULL: the listener */
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("echo_epoll: epoll_wait");
      exit(1);
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
          c->hash = ECHO_WORK_BASIS;
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
  return NULL;
}

/* --calibrate: the work of one 64-byte message, timed (the best of many tries). */
static int calibrate(unsigned passes) {
  unsigned char msg[64];
  memset(msg, 'a', sizeof msg);
  uint64_t h = ECHO_WORK_BASIS;
  double best = 1e9;
  for (int round = 0; round < 200; ++round) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int k = 0; k < 100; ++k) h = echo_work(h, msg, sizeof msg, passes);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double us = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 1e3 / 100;
    if (us < best) best = us;
  }
  printf("{\"passes\": %u, \"us_per_64_byte_message\": %.3f, \"hash\": %llu}\n", passes, best,
         (unsigned long long)h);
  return 0;
}

int main(int argc, char** argv) {
  int port = 0, threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--work") && i + 1 < argc) {
      work_passes = (unsigned)atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--calibrate") && i + 1 < argc) {
      return calibrate((unsigned)atoi(argv[++i]));
    } else if (argv[i][0] != '-') {
      port = atoi(argv[i]);
    } else {
      fprintf(stderr, "usage: echo_epoll [--threads T] [--work PASSES] [port] | --calibrate PASSES\n");
      return 2;
    }
  }
  if (threads < 1) threads = 1;
  /* Every listener is made before the port is printed: no connection comes before. */
  int* lfds = calloc((size_t)threads, sizeof *lfds);
  for (int t = 0; t < threads; ++t) {
    lfds[t] = listen_on(port, threads > 1);
    if (lfds[t] < 0) return 1;
    if (t == 0) {
      struct sockaddr_in addr;
      socklen_t len = sizeof addr;
      getsockname(lfds[0], (struct sockaddr*)&addr, &len);
      port = ntohs(addr.sin_port);
    }
  }
  printf("%d\n", port);
  fflush(stdout);
  for (int t = 1; t < threads; ++t) {
    pthread_t th;
    if (pthread_create(&th, NULL, serve, (void*)(intptr_t)lfds[t]) != 0) {
      perror("echo_epoll: pthread_create");
      return 1;
    }
  }
  serve((void*)(intptr_t)lfds[0]);
  return 0;
}
