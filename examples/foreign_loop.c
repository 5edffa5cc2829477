/* Fibers inside someone else's main loop: a legacy poll() loop, in C, that owns
 * its own fds, drives a fiber loop through fiber.h alongside them.
 *
 * The legacy loop waits in poll() on its own pipe AND on fiber_loop_fd(loop)
 * (readable when a fiber's IO is ready), with the timeout that
 * fiber_loop_next_timeout_ms() gives (the fibers' next timer); whenever that fd
 * is readable or the timeout passed, it calls fiber_loop_run_once(loop, 0).
 *
 * The fibers and the legacy code talk over two pipes:
 *   - the "reporter" fiber writes "tick N" lines into the legacy loop's pipe,
 *     sleeping 5 ms first (a fiber timer);
 *   - the legacy loop answers each with "ack N" on a second pipe;
 *   - the "listener" fiber waits on that pipe (fiber_wait_fd), reads the ack and
 *     hands it to the reporter over a channel, which then sends the next tick.
 * So every line below comes in a fixed order. */
#include <fiber/fiber.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { TICKS = 5 };

static int to_legacy[2]; /* fibers -> legacy loop */
static int to_fibers[2]; /* legacy loop -> fibers */
static fiber_chan* acks;

static void* reporter(void* arg) {
  intptr_t n;
  (void)arg;
  for (n = 1; n <= TICKS; ++n) {
    char line[32];
    void* ack = NULL;
    int len = snprintf(line, sizeof line, "tick %d\n", (int)n);
    fiber_sleep_ms(5);
    if (write(to_legacy[1], line, (size_t)len) != len) return (void*)1;
    if (fiber_chan_recv(acks, &ack, -1) != FIBER_OK || (intptr_t)ack != n) return (void*)1;
    printf("fiber reporter: tick %d acknowledged\n", (int)n);
  }
  close(to_legacy[1]); /* the legacy loop sees EOF */
  return NULL;
}

static void* listener(void* arg) {
  char buf[64];
  size_t have = 0;
  (void)arg;
  for (;;) {
    ssize_t r;
    char* nl;
    if (fiber_wait_fd(to_fibers[0], FIBER_READABLE, -1, NULL) != FIBER_OK) return (void*)1;
    r = read(to_fibers[0], buf + have, sizeof buf - 1 - have); /* non-blocking fd */
    if (r == 0) return NULL;
    if (r < 0) {
      if (errno == EAGAIN) continue;
      return (void*)1;
    }
    have += (size_t)r;
    buf[have] = 0;
    while ((nl = strchr(buf, '\n')) != NULL) {
      int n = 0;
      *nl = 0;
      sscanf(buf, "ack %d", &n);
      printf("fiber listener: got '%s'\n", buf);
      fiber_chan_send(acks, (void*)(intptr_t)n, -1);
      have -= (size_t)(nl + 1 - buf);
      memmove(buf, nl + 1, have + 1);
      if (n == TICKS) return NULL;
    }
  }
}

int main(void) {
  fiber_loop* loop = fiber_loop_create();
  fiber_task* tasks[2];
  size_t alive = 1;
  int legacy_open = 1, rounds = 0;
  char pending[64];
  size_t have = 0;

  if (!loop || pipe(to_legacy) != 0 || pipe(to_fibers) != 0) return 1;
  fcntl(to_fibers[0], F_SETFL, O_NONBLOCK);
  acks = fiber_chan_create(0);
  tasks[0] = fiber_spawn(loop, reporter, NULL);
  tasks[1] = fiber_spawn(loop, listener, NULL);
  setvbuf(stdout, NULL, _IOLBF, 0);

  /* ---- the legacy main loop ---- */
  while (legacy_open || alive > 0) {
    struct pollfd fds[2];
    int timeout = fiber_loop_next_timeout_ms(loop);
    fds[0].fd = legacy_open ? to_legacy[0] : -1;
    fds[0].events = POLLIN;
    fds[1].fd = fiber_loop_fd(loop);
    fds[1].events = POLLIN;
    if (poll(fds, 2, timeout) < 0 && errno != EINTR) return 1;
    ++rounds;
    if (fds[0].revents & (POLLIN | POLLHUP)) { /* its own fd */
      ssize_t r = read(to_legacy[0], pending + have, sizeof pending - 1 - have);
      if (r <= 0) {
        legacy_open = 0;
        printf("legacy loop: the fibers closed their pipe\n");
      } else {
        char* nl;
        have += (size_t)r;
        pending[have] = 0;
        while ((nl = strchr(pending, '\n')) != NULL) {
          int n = 0;
          char ack[32];
          int len;
          *nl = 0;
          sscanf(pending, "tick %d", &n);
          printf("legacy loop: got '%s'\n", pending);
          len = snprintf(ack, sizeof ack, "ack %d\n", n);
          if (write(to_fibers[1], ack, (size_t)len) != len) return 1;
          have -= (size_t)(nl + 1 - pending);
          memmove(pending, nl + 1, have + 1);
        }
      }
    }
    /* The fibers' turn: IO ready, a timer due, or just started. */
    if (fiber_loop_run_once(loop, 0, &alive) != FIBER_OK) {
      fprintf(stderr, "fiber_loop_run_once: %s\n", fiber_last_error());
      return 1;
    }
  }
  printf("legacy loop: done, the fibers have ended (%s)\n", rounds > TICKS ? "several rounds" : "too few rounds?");
  fiber_task_release(tasks[0]);
  fiber_task_release(tasks[1]);
  fiber_chan_destroy(acks);
  fiber_loop_destroy(loop);
  close(to_legacy[0]);
  close(to_fibers[0]);
  close(to_fibers[1]);
  return 0;
}
