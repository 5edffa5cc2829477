/* The echo server's client, with plain blocking POSIX calls.
 *
 *   echo_client PORT CLIENTS ROUNDS
 *
 * Opens CLIENTS connections first, then for each round sends one line on every
 * connection before reading any reply: a server that handles one client at a
 * time on one thread can answer only the first, and the client then gives up
 * (SO_RCVTIMEO, 5 s) and exits with 3. It prints each reply (the transcript;
 * every line has the same length),
 * and with ROUNDS > 1000 only a final count and the messages per second (also
 * with QUIET as a fourth argument). It raises its soft limit of open files to
 * what CLIENTS connections need (or says why it cannot). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "fd_limit.h"

/* Reads exactly n bytes (the echo of what was sent). */
static int read_exact(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  buf[n] = 0;
  return 0;
}

int main(int argc, char** argv) {
  int port, clients, rounds, i, r, quiet, width = 4;
  int* fds;
  struct timespec t0, t1;
  long messages = 0;
  if ((argc != 4 && !(argc == 5 && strcmp(argv[4], "QUIET") == 0)) || (port = atoi(argv[1])) <= 0 ||
      (clients = atoi(argv[2])) < 1 || (rounds = atoi(argv[3])) < 1) {
    fprintf(stderr, "usage: echo_client PORT CLIENTS ROUNDS [QUIET]\n");
    return 2;
  }
  quiet = rounds > 1000 || argc == 5;
  for (i = clients - 1; i >= 10000; i /= 10) ++width; /* every line the same length */
  if (!enough_fds("echo_client", clients)) return 1;
  fds = calloc((size_t)clients, sizeof *fds);
  for (i = 0; i < clients; ++i) {
    struct sockaddr_in a;
    struct timeval tv = {5, 0};
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((unsigned short)port);
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fds[i], (struct sockaddr*)&a, sizeof a) != 0) {
      perror("echo_client: connect");
      free(fds);
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (r = 0; r < rounds; ++r) {
    char line[128], reply[128];
    int n = 0;
    for (i = 0; i < clients; ++i) {
      n = snprintf(line, sizeof line, "round %06d client %0*d\n", r, width, i);
      if (write(fds[i], line, (size_t)n) != n) {
        perror("echo_client: write");
        free(fds);
        return 1;
      }
    }
    for (i = 0; i < clients; ++i) {
      if (read_exact(fds[i], reply, (size_t)n) < 0) {
        fprintf(stderr, "echo_client: no reply on connection %d in round %d (%s): the server is not serving "
                        "the clients concurrently\n", i, r, errno == EAGAIN ? "timed out" : "closed");
        free(fds);
        return 3;
      }
      ++messages;
      if (!quiet) fputs(reply, stdout);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  for (i = 0; i < clients; ++i) close(fds[i]);
  if (quiet) {
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%ld messages in %.3f s: %.0f msg/s\n", messages, s, (double)messages / s);
  }
  free(fds);
  return 0;
}
