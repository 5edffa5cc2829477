/* The C API (fiber/fiber.h), compiled as C99: fibers with payloads, closing,
 * misuse, the event loop, tasks, sleep, channels of void*, cancellation, deadlock,
 * fiber_run on two workers, run_once, and waiting on a pipe. Prints one line per check that fails and exits
 * with 1 if any did. */
#include <fiber/fiber.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if !defined(_WIN32)
#  include <unistd.h>
#endif

static int failures = 0;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      printf("%s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__, __LINE__, #cond, \
             fiber_last_error());                                                     \
      ++failures;                                                                     \
    }                                                                                 \
  } while (0)

#define CHECK_STATUS(expr, want)                                                             \
  do {                                                                                       \
    int got_ = (expr);                                                                       \
    if (got_ != (want)) {                                                                    \
      printf("%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, __LINE__, #expr, \
             fiber_status_name(got_), fiber_status_name(want), fiber_last_error());          \
      ++failures;                                                                            \
    }                                                                                        \
  } while (0)

#define P(i) ((void*)(intptr_t)(i))
#define I(p) ((intptr_t)(p))

/* ---- fibers ---- */

/* Yields n, n+1, ... adding what it receives; returns the sum received. */
static void* accumulate(void* arg) {
  intptr_t next = I(arg), sum = 0;
  for (;;) {
    void* in = NULL;
    if (fiber_yield(P(next), &in) != FIBER_OK) return P(-1);
    if (I(in) == 0) return P(sum);
    sum += I(in);
    ++next;
  }
}

static void test_fibers(void) {
  fiber_t* f = fiber_create(accumulate, P(10), 0);
  void* out = NULL;
  CHECK(f != NULL);
  CHECK(!fiber_done(f));
  CHECK_STATUS(fiber_resume(f, P(999), &out), FIBER_OK); /* the first resume's value is ignored */
  CHECK(I(out) == 10);
  CHECK_STATUS(fiber_resume(f, P(5), &out), FIBER_OK);
  CHECK(I(out) == 11);
  CHECK_STATUS(fiber_resume(f, P(7), &out), FIBER_OK);
  CHECK(I(out) == 12);
  CHECK_STATUS(fiber_resume(f, P(0), &out), FIBER_FINISHED);
  CHECK(I(out) == 12); /* 5 + 7 */
  CHECK(fiber_done(f));
  CHECK_STATUS(fiber_resume(f, NULL, &out), FIBER_EINVAL);
  CHECK(strstr(fiber_last_error(), "finished") != NULL);
  fiber_destroy(f);
}

static int closed_seen = 0;
static void* until_closed(void* arg) {
  (void)arg;
  for (;;) {
    int rc = fiber_yield(P(1), NULL);
    if (rc == FIBER_CLOSED) {
      ++closed_seen;
      return NULL;
    }
  }
}

/* Ignores the first FIBER_CLOSED (yields again), returns on the second. */
static void* stubborn(void* arg) {
  int closes = 0;
  (void)arg;
  while (closes < 2)
    if (fiber_yield(P(2), NULL) == FIBER_CLOSED) ++closes;
  return NULL;
}

static void test_close(void) {
  fiber_t* f = fiber_create(until_closed, NULL, 0);
  CHECK_STATUS(fiber_resume(f, NULL, NULL), FIBER_OK);
  CHECK_STATUS(fiber_close(f), FIBER_OK);
  CHECK(closed_seen == 1);
  CHECK(fiber_done(f));
  CHECK_STATUS(fiber_resume(f, NULL, NULL), FIBER_EINVAL);
  fiber_destroy(f);

  /* Never started: closing just finishes it; the body never runs. */
  f = fiber_create(until_closed, NULL, 0);
  CHECK_STATUS(fiber_close(f), FIBER_OK);
  CHECK(closed_seen == 1);
  fiber_destroy(f);

  /* Destroying a suspended fiber closes it. */
  f = fiber_create(until_closed, NULL, 0);
  CHECK_STATUS(fiber_resume(f, NULL, NULL), FIBER_OK);
  fiber_destroy(f);
  CHECK(closed_seen == 2);

  /* A body that yields after FIBER_CLOSED: reported, and it stays suspended. */
  f = fiber_create(stubborn, NULL, 0);
  CHECK_STATUS(fiber_resume(f, NULL, NULL), FIBER_OK);
  CHECK_STATUS(fiber_close(f), FIBER_EINVAL);
  CHECK(strstr(fiber_last_error(), "yielded again") != NULL);
  CHECK(!fiber_done(f));
  CHECK_STATUS(fiber_resume(f, NULL, NULL), FIBER_EINVAL); /* being closed */
  CHECK_STATUS(fiber_close(f), FIBER_OK);                 /* the second close ends it */
  CHECK(fiber_done(f));
  fiber_destroy(f);
}

static void* resume_self(void* arg) {
  (void)arg;
  return P(fiber_resume(fiber_self(), NULL, NULL));
}

static void* inner_body(void* arg) {
  fiber_yield(P(I(arg) * 2), NULL);
  return P(100);
}
/* A fiber that drives another fiber. */
static void* outer_body(void* arg) {
  fiber_t* inner = fiber_create(inner_body, arg, 0);
  void* v = NULL;
  intptr_t total = 0;
  while (fiber_resume(inner, NULL, &v) == FIBER_OK) {
    total += I(v);
    CHECK(fiber_self() != inner); /* back in the outer fiber */
    fiber_yield(v, NULL);
  }
  total += I(v);
  fiber_destroy(inner);
  return P(total);
}

static void test_misuse_and_nesting(void) {
  void* out = NULL;
  fiber_t* f;
  CHECK_STATUS(fiber_yield(NULL, NULL), FIBER_EINVAL); /* not inside a fiber */
  CHECK(strstr(fiber_last_error(), "not called from inside a fiber_t") != NULL);
  CHECK(fiber_self() == NULL);
  CHECK(fiber_create(NULL, NULL, 0) == NULL);
  CHECK_STATUS(fiber_resume(NULL, NULL, NULL), FIBER_EINVAL);

  f = fiber_create(resume_self, NULL, 0);
  CHECK_STATUS(fiber_resume(f, NULL, &out), FIBER_FINISHED);
  CHECK(I(out) == FIBER_EINVAL);
  fiber_destroy(f);

  f = fiber_create(outer_body, P(21), 0);
  CHECK_STATUS(fiber_resume(f, NULL, &out), FIBER_OK);
  CHECK(I(out) == 42);
  CHECK_STATUS(fiber_resume(f, NULL, &out), FIBER_FINISHED);
  CHECK(I(out) == 142);
  fiber_destroy(f);
}

/* Two loop tasks, each inside a fiber_t whose body parks on the loop: each yield
 * goes back to the task that resumed that fiber, whatever ran in between. */
static void* parks_then_yields(void* arg) {
  CHECK_STATUS(fiber_sleep_ms(I(arg)), FIBER_OK);
  CHECK_STATUS(fiber_yield(arg, NULL), FIBER_CLOSED);
  return NULL;
}
static void* task_in_fiber(void* arg) {
  fiber_t* f = fiber_create(parks_then_yields, arg, 0);
  void* out = NULL;
  CHECK_STATUS(fiber_resume(f, NULL, &out), FIBER_OK);
  CHECK(out == arg);
  CHECK(fiber_self() == NULL); /* back in the task, outside any fiber_t */
  fiber_destroy(f);
  return out;
}
static void test_fibers_inside_tasks(void) {
  fiber_loop* loop = fiber_loop_create();
  fiber_task* slow = fiber_spawn(loop, task_in_fiber, P(40));
  fiber_task* fast = fiber_spawn(loop, task_in_fiber, P(5));
  void* r = NULL;
  CHECK_STATUS(fiber_task_join(slow, &r), FIBER_OK);
  CHECK(I(r) == 40);
  CHECK_STATUS(fiber_task_join(fast, &r), FIBER_OK);
  CHECK(I(r) == 5);
  fiber_task_release(slow);
  fiber_task_release(fast);
  fiber_loop_destroy(loop);
}

/* ---- the event loop ---- */

static char order[64];
static size_t order_len = 0;
static void note(char c) {
  if (order_len + 1 < sizeof order) order[order_len++] = c;
  order[order_len] = 0;
}

static void* sleeper(void* arg) {
  CHECK_STATUS(fiber_sleep_ms(I(arg) == 'a' ? 30 : 5), FIBER_OK);
  note((char)I(arg));
  return P(I(arg) + 1);
}

static void* spawner(void* arg) {
  fiber_task* a = fiber_spawn(NULL, sleeper, P('a')); /* NULL: the running loop */
  fiber_task* b = fiber_spawn(NULL, sleeper, P('b'));
  void* r = NULL;
  (void)arg;
  CHECK(fiber_in_task());
  CHECK_STATUS(fiber_task_join(a, &r), FIBER_OK);
  CHECK(I(r) == 'a' + 1);
  CHECK(fiber_task_done(b)); /* b slept less */
  CHECK_STATUS(fiber_task_join(b, &r), FIBER_OK);
  CHECK(I(r) == 'b' + 1);
  fiber_task_release(a);
  fiber_task_release(b);
  return P(7);
}

static void test_loop_tasks(void) {
  fiber_loop* loop = fiber_loop_create();
  fiber_task* t = fiber_spawn(loop, spawner, NULL);
  void* r = NULL;
  CHECK(!fiber_in_task());
  CHECK_STATUS(fiber_sleep_ms(1), FIBER_NO_LOOP);
  CHECK(strstr(fiber_last_error(), "not called from a task") != NULL);
  CHECK_STATUS(fiber_task_yield(), FIBER_NO_LOOP);
  CHECK(fiber_spawn(NULL, sleeper, NULL) == NULL); /* no loop runs */
  CHECK_STATUS(fiber_task_join(t, &r), FIBER_OK);  /* from outside: runs the loop */
  CHECK(I(r) == 7);
  CHECK(strcmp(order, "ba") == 0);
  fiber_task_release(t);
  CHECK_STATUS(fiber_loop_run(loop), FIBER_OK);
  fiber_loop_destroy(loop);
}

struct pingpong {
  fiber_chan* ping;
  fiber_chan* pong;
};

static void* echo(void* arg) {
  struct pingpong* pp = (struct pingpong*)arg;
  void* v = NULL;
  int rc;
  while ((rc = fiber_chan_recv(pp->ping, &v, -1)) == FIBER_OK) CHECK_STATUS(fiber_chan_send(pp->pong, v, -1), FIBER_OK);
  CHECK_STATUS(rc, FIBER_CLOSED);
  return NULL;
}

static void* pinger(void* arg) {
  struct pingpong* pp = (struct pingpong*)arg;
  fiber_task* e = fiber_spawn(NULL, echo, pp);
  intptr_t i, sum = 0;
  void* v = NULL;
  for (i = 1; i <= 100; ++i) {
    CHECK_STATUS(fiber_chan_send(pp->ping, P(i), -1), FIBER_OK);
    CHECK_STATUS(fiber_chan_recv(pp->pong, &v, -1), FIBER_OK);
    sum += I(v);
  }
  CHECK_STATUS(fiber_chan_close(pp->ping), FIBER_OK);
  CHECK_STATUS(fiber_chan_close(pp->ping), FIBER_CLOSED); /* twice */
  CHECK_STATUS(fiber_chan_send(pp->ping, P(1), -1), FIBER_CLOSED);
  CHECK_STATUS(fiber_task_join(e, NULL), FIBER_OK);
  fiber_task_release(e);
  /* Nobody sends on pong any more: a timed recv times out. */
  CHECK_STATUS(fiber_chan_recv(pp->pong, &v, 20), FIBER_TIMEOUT);
  return P(sum);
}

static void test_channels(void) {
  fiber_loop* loop = fiber_loop_create();
  struct pingpong pp;
  fiber_chan* buf = fiber_chan_create(2);
  fiber_task* t;
  void* r = NULL;
  pp.ping = fiber_chan_create(0);
  pp.pong = fiber_chan_create(0);
  t = fiber_spawn(loop, pinger, &pp);
  CHECK_STATUS(fiber_task_join(t, &r), FIBER_OK);
  CHECK(I(r) == 5050);
  fiber_task_release(t);

  /* Buffered, without a loop: the try forms never park. */
  CHECK_STATUS(fiber_chan_try_send(buf, P(1)), FIBER_OK);
  CHECK_STATUS(fiber_chan_try_send(buf, P(2)), FIBER_OK);
  CHECK_STATUS(fiber_chan_try_send(buf, P(3)), FIBER_AGAIN);
  CHECK_STATUS(fiber_chan_send(buf, P(3), -1), FIBER_NO_LOOP);
  CHECK_STATUS(fiber_chan_try_recv(buf, &r), FIBER_OK);
  CHECK(I(r) == 1);
  CHECK_STATUS(fiber_chan_close(buf), FIBER_OK);
  CHECK_STATUS(fiber_chan_try_recv(buf, &r), FIBER_OK); /* drained after close */
  CHECK(I(r) == 2);
  CHECK_STATUS(fiber_chan_try_recv(buf, &r), FIBER_CLOSED);
  CHECK_STATUS(fiber_chan_try_send(NULL, P(1)), FIBER_EINVAL);

  fiber_chan_destroy(buf);
  fiber_chan_destroy(pp.ping);
  fiber_chan_destroy(pp.pong);
  fiber_loop_destroy(loop);
}

static void* sleeps_long(void* arg) {
  int* status = (int*)arg;
  *status = fiber_sleep_ms(60000);
  return NULL;
}

static void* waits_forever(void* arg) {
  fiber_chan* ch = (fiber_chan*)arg;
  return P(fiber_chan_recv(ch, NULL, -1));
}

static void test_cancel_and_deadlock(void) {
  fiber_loop* loop = fiber_loop_create();
  int status = 12345;
  fiber_task* t = fiber_spawn(loop, sleeps_long, &status);
  fiber_chan* ch = fiber_chan_create(0);
  void* r = NULL;
  size_t alive = 0;
  CHECK_STATUS(fiber_loop_run_once(loop, 0, &alive), FIBER_OK); /* it starts and sleeps */
  CHECK(alive == 1);
  CHECK(!fiber_task_done(t));
  CHECK_STATUS(fiber_task_cancel(t), FIBER_OK);
  CHECK_STATUS(fiber_loop_run(loop), FIBER_OK);
  CHECK(status == FIBER_CANCELLED);
  CHECK(fiber_task_done(t));
  fiber_task_release(t);

  /* A task that waits on a channel nobody else has: the loop reports a deadlock. */
  t = fiber_spawn(loop, waits_forever, ch);
  CHECK_STATUS(fiber_loop_run(loop), FIBER_DEADLOCK);
  CHECK(strstr(fiber_last_error(), "deadlock") != NULL);
  fiber_task_release(t);
  /* Destroying the loop cancels it: its recv returns FIBER_CANCELLED and it ends. */
  fiber_loop_destroy(loop);
  fiber_chan_destroy(ch);
  (void)r;
}

#if !defined(_WIN32)
struct pipe_pair {
  int fds[2];
  int got;
};

static void* pipe_reader(void* arg) {
  struct pipe_pair* p = (struct pipe_pair*)arg;
  int ready = -1;
  char c = 0;
  CHECK_STATUS(fiber_wait_fd(p->fds[0], FIBER_READABLE, 10, &ready), FIBER_TIMEOUT);
  CHECK(ready == 0);
  CHECK_STATUS(fiber_wait_fd(p->fds[0], FIBER_READABLE, -1, &ready), FIBER_OK);
  CHECK(ready == FIBER_READABLE);
  CHECK(read(p->fds[0], &c, 1) == 1);
  p->got = c;
  return NULL;
}

static void* pipe_writer(void* arg) {
  struct pipe_pair* p = (struct pipe_pair*)arg;
  CHECK_STATUS(fiber_sleep_ms(30), FIBER_OK);
  CHECK_STATUS(fiber_wait_fd(p->fds[1], FIBER_WRITABLE, -1, NULL), FIBER_OK);
  CHECK(write(p->fds[1], "x", 1) == 1);
  return NULL;
}

static void test_fds_and_run_once(void) {
  fiber_loop* loop = fiber_loop_create();
  struct pipe_pair p;
  fiber_task* r;
  fiber_task* w;
  size_t alive = 1;
  int rounds = 0;
  CHECK(pipe(p.fds) == 0);
  p.got = 0;
  CHECK(fiber_loop_fd(loop) >= 0);
  CHECK_STATUS(fiber_wait_fd(p.fds[0], 3, -1, NULL), FIBER_EINVAL);
  r = fiber_spawn(loop, pipe_reader, &p);
  w = fiber_spawn(loop, pipe_writer, &p);
  /* Driven one round at a time, as a foreign main loop would. */
  while (alive > 0 && rounds < 1000) {
    CHECK_STATUS(fiber_loop_run_once(loop, 100, &alive), FIBER_OK);
    ++rounds;
  }
  CHECK(alive == 0);
  CHECK(p.got == 'x');
  fiber_task_release(r);
  fiber_task_release(w);
  close(p.fds[0]);
  close(p.fds[1]);
  fiber_loop_destroy(loop);
}
#endif

/* ---- a runtime of several workers (fiber_run) ---- */

static fiber_chan* run_results;

static void* run_worker_task(void* arg) {
  /* Work without a wait, so that the other worker takes some of the queued tasks. */
  volatile intptr_t x = 0;
  intptr_t k;
  for (k = 0; k < 500000; ++k) x += k;
  if (fiber_chan_send(run_results, arg, -1) != FIBER_OK) return P(-1000);
  return arg;
}

/* Spawns n tasks; each sends its number (1..n) over a channel and returns it. */
static void* run_main(void* arg) {
  intptr_t n = I(arg), i, sum = 0, joined = 0;
  fiber_task* ts[64];
  for (i = 0; i < n; ++i) ts[i] = fiber_spawn(NULL, run_worker_task, P(i + 1));
  for (i = 0; i < n; ++i) {
    void* v = NULL;
    if (fiber_chan_recv(run_results, &v, -1) == FIBER_OK) sum += I(v);
  }
  for (i = 0; i < n; ++i) {
    void* r = NULL;
    if (ts[i] && fiber_task_join(ts[i], &r) == FIBER_OK) joined += I(r);
    fiber_task_release(ts[i]);
  }
  return P(sum == joined ? sum : -1);
}

static void test_run_threads(void) {
  void* r = NULL;
  run_results = fiber_chan_create(4);
  CHECK_STATUS(fiber_run(run_main, P(64), 2, &r), FIBER_OK);
  CHECK(I(r) == 64 * 65 / 2);
  r = NULL;
  CHECK_STATUS(fiber_run(run_main, P(16), 1, &r), FIBER_OK); /* one thread: a single loop */
  CHECK(I(r) == 16 * 17 / 2);
  CHECK_STATUS(fiber_run(NULL, NULL, 2, &r), FIBER_EINVAL);
  fiber_chan_destroy(run_results);
}

int main(void) {
  test_fibers();
  test_close();
  test_misuse_and_nesting();
  test_fibers_inside_tasks();
  test_loop_tasks();
  test_channels();
  test_cancel_and_deadlock();
  test_run_threads();
#if !defined(_WIN32)
  test_fds_and_run_once();
#endif
  CHECK(strcmp(fiber_status_name(FIBER_TIMEOUT), "FIBER_TIMEOUT") == 0);
  if (failures) {
    printf("c_api_test: %d check(s) failed\n", failures);
    return 1;
  }
  printf("c_api_test: all checks passed\n");
  return 0;
}
