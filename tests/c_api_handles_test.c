/* The C API's handles under abuse, compiled as C99: for each kind of handle
 * (fiber_t, fiber_chan, fiber_task, fiber_loop), a use after destroy returns
 * FIBER_EINVAL with a message naming the call, a second destroy is reported (on
 * stderr and in fiber_last_error) and otherwise ignored, and a handle of another
 * kind is refused. Run under ASan, a read of freed memory fails it.
 *
 * With no argument it runs every section; with arguments, the sections named
 * (fibers, channels, tasks, loops, kinds, churn, race). Prints one line per check
 * that fails and exits with 1 if any did. */
#include <fiber/fiber.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#  include <pthread.h>
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

#define CHECK_STATUS(expr, want)                                                                 \
  do {                                                                                           \
    int got_ = (expr);                                                                           \
    if (got_ != (want)) {                                                                        \
      printf("%s:%d: %s returned %s, expected %s (last error: %s)\n", __FILE__, __LINE__, #expr, \
             fiber_status_name(got_), fiber_status_name(want), fiber_last_error());              \
      ++failures;                                                                                \
    }                                                                                            \
  } while (0)

#define P(i) ((void*)(intptr_t)(i))
#define I(p) ((intptr_t)(p))

/* Does the last error start with "call: " and contain `word`? */
static int error_names(const char* call, const char* word) {
  const char* e = fiber_last_error();
  const size_t n = strlen(call);
  return strncmp(e, call, n) == 0 && e[n] == ':' && strstr(e, word) != NULL;
}

/* expr (a call on a bad handle) returns FIBER_EINVAL and says which call and why. */
#define CHECK_REFUSED(expr, call, word)                                                      \
  do {                                                                                       \
    CHECK_STATUS(expr, FIBER_EINVAL);                                                        \
    if (!error_names(call, word))                                                            \
      printf("%s:%d: after %s, last error \"%s\" does not name %s and %s\n", __FILE__, __LINE__, \
             #expr, fiber_last_error(), call, word),                                         \
          ++failures;                                                                        \
  } while (0)

/* Leaves a known message in fiber_last_error(), so a check can see it change. */
static void reset_last_error(void) { (void)fiber_resume(NULL, NULL, NULL); }

/* ---- what a void call writes on stderr ---- */

#if !defined(_WIN32)
static char captured[4096];
static int saved_stderr = -1;
static FILE* capture_file = NULL;

static void capture_stderr(void) {
  fflush(stderr);
  capture_file = tmpfile();
  if (!capture_file) {
    perror("tmpfile");
    exit(2);
  }
  saved_stderr = dup(2);
  dup2(fileno(capture_file), 2);
}

/* Restores stderr and returns what was written to it meanwhile. */
static const char* captured_stderr(void) {
  size_t n;
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  rewind(capture_file);
  n = fread(captured, 1, sizeof captured - 1, capture_file);
  captured[n] = 0;
  fclose(capture_file);
  return captured;
}
#else
static void capture_stderr(void) {}
static const char* captured_stderr(void) { return NULL; } /* not captured on this system */
#endif

/* stmt (a second destroy, or a destroy of a handle of another kind) does not
 * crash, and is reported on stderr and in fiber_last_error(), naming call. */
#define CHECK_DESTROY_REPORTED(stmt, call)                                                          \
  do {                                                                                              \
    const char* err_;                                                                               \
    reset_last_error();                                                                             \
    capture_stderr();                                                                               \
    stmt;                                                                                           \
    err_ = captured_stderr();                                                                       \
    if (!error_names(call, "handle"))                                                               \
      printf("%s:%d: after %s, last error \"%s\" does not name %s\n", __FILE__, __LINE__, #stmt,    \
             fiber_last_error(), call),                                                             \
          ++failures;                                                                               \
    if (err_ && !strstr(err_, call))                                                                \
      printf("%s:%d: after %s, stderr \"%s\" does not name %s\n", __FILE__, __LINE__, #stmt, err_, \
             call),                                                                                 \
          ++failures;                                                                               \
  } while (0)

/* A NULL handle given to a destroy is ignored without a word. */
#define CHECK_NULL_IGNORED(stmt)                                                                  \
  do {                                                                                            \
    const char* err_;                                                                             \
    reset_last_error();                                                                           \
    capture_stderr();                                                                             \
    stmt;                                                                                         \
    err_ = captured_stderr();                                                                     \
    CHECK(error_names("fiber_resume", "NULL"));                                                   \
    if (err_ && err_[0] != 0)                                                                     \
      printf("%s:%d: %s wrote \"%s\" on stderr\n", __FILE__, __LINE__, #stmt, err_), ++failures; \
  } while (0)

/* ---- bodies ---- */

static fiber_t* self_seen = NULL;

/* Yields 0, 1, 2, ... until closed; notes fiber_self() first. */
static void* counts(void* arg) {
  intptr_t i;
  (void)arg;
  self_seen = fiber_self();
  for (i = 0;; ++i)
    if (fiber_yield(P(i), NULL) != FIBER_OK) return NULL;
}

static void* returns_arg(void* arg) { return arg; }

/* ---- fiber_t ---- */

static void test_fibers(void) {
  fiber_t* f = fiber_create(counts, NULL, 0);
  fiber_chan* ch;
  void* out = NULL;
  int i;
  CHECK(f != NULL);
  CHECK_STATUS(fiber_resume(f, NULL, &out), FIBER_OK);
  CHECK(self_seen == f); /* fiber_self() is the handle fiber_create gave */
  CHECK_STATUS(fiber_resume(f, NULL, &out), FIBER_OK);
  CHECK(I(out) == 1);
  fiber_destroy(f);

  CHECK_REFUSED(fiber_resume(f, NULL, &out), "fiber_resume", "destroyed");
  CHECK_REFUSED(fiber_close(f), "fiber_close", "destroyed");
  CHECK_REFUSED(fiber_done(f), "fiber_done", "destroyed");
  CHECK_DESTROY_REPORTED(fiber_destroy(f), "fiber_destroy");
  CHECK_DESTROY_REPORTED(fiber_destroy(f), "fiber_destroy"); /* a third time too */
  CHECK_NULL_IGNORED(fiber_destroy(NULL));
  CHECK(fiber_done(NULL) == 0); /* NULL keeps its old answers */

  /* Never started, or finished: the same. */
  f = fiber_create(returns_arg, P(3), 0);
  fiber_destroy(f);
  CHECK_REFUSED(fiber_resume(f, NULL, &out), "fiber_resume", "destroyed");
  CHECK_DESTROY_REPORTED(fiber_destroy(f), "fiber_destroy");
  f = fiber_create(returns_arg, P(3), 0);
  CHECK_STATUS(fiber_resume(f, NULL, &out), FIBER_FINISHED);
  CHECK(I(out) == 3);
  fiber_destroy(f);
  CHECK_REFUSED(fiber_resume(f, NULL, &out), "fiber_resume", "destroyed");
  CHECK_DESTROY_REPORTED(fiber_destroy(f), "fiber_destroy");

  /* Still refused after many other handles came and went since. */
  for (i = 0; i < 1000; ++i) {
    ch = fiber_chan_create(1);
    fiber_chan_destroy(ch);
  }
  CHECK_REFUSED(fiber_resume(f, NULL, &out), "fiber_resume", "destroyed");
  CHECK_DESTROY_REPORTED(fiber_destroy(f), "fiber_destroy");
}

/* ---- fiber_chan ---- */

static void* uses_dead_channel(void* arg) {
  fiber_chan* ch = (fiber_chan*)arg;
  void* v = NULL;
  CHECK_REFUSED(fiber_chan_send(ch, P(1), -1), "fiber_chan_send", "destroyed");
  CHECK_REFUSED(fiber_chan_recv(ch, &v, 10), "fiber_chan_recv", "destroyed");
  return P(1);
}

static void test_channels(void) {
  fiber_chan* ch = fiber_chan_create(1);
  fiber_loop* loop;
  fiber_task* t;
  void* v = NULL;
  CHECK_STATUS(fiber_chan_try_send(ch, P(1)), FIBER_OK);
  fiber_chan_destroy(ch);

  CHECK_REFUSED(fiber_chan_try_send(ch, P(2)), "fiber_chan_try_send", "destroyed");
  CHECK_REFUSED(fiber_chan_try_recv(ch, &v), "fiber_chan_try_recv", "destroyed");
  CHECK_REFUSED(fiber_chan_close(ch), "fiber_chan_close", "destroyed");
  /* From outside a task: the handle is checked first. */
  CHECK_REFUSED(fiber_chan_send(ch, P(2), -1), "fiber_chan_send", "destroyed");
  CHECK_REFUSED(fiber_chan_recv(ch, &v, -1), "fiber_chan_recv", "destroyed");
  CHECK_DESTROY_REPORTED(fiber_chan_destroy(ch), "fiber_chan_destroy");
  CHECK_NULL_IGNORED(fiber_chan_destroy(NULL));

  /* From a task: refused, not parked. */
  loop = fiber_loop_create();
  t = fiber_spawn(loop, uses_dead_channel, ch);
  CHECK_STATUS(fiber_task_join(t, &v), FIBER_OK);
  CHECK(I(v) == 1);
  fiber_task_release(t);
  fiber_loop_destroy(loop);
}

/* ---- fiber_task ---- */

static void test_tasks(void) {
  fiber_loop* loop = fiber_loop_create();
  fiber_loop* other = fiber_loop_create();
  fiber_task* t = fiber_spawn(loop, returns_arg, P(5));
  fiber_task* u;
  void* r = NULL;
  CHECK_STATUS(fiber_task_join(t, &r), FIBER_OK);
  CHECK(I(r) == 5);
  fiber_task_release(t);

  CHECK_REFUSED(fiber_task_join(t, &r), "fiber_task_join", "destroyed");
  CHECK_REFUSED(fiber_task_cancel(t), "fiber_task_cancel", "destroyed");
  CHECK_REFUSED(fiber_task_done(t), "fiber_task_done", "destroyed");
  CHECK_REFUSED(fiber_loop_run_until(loop, t), "fiber_loop_run_until", "destroyed");
  CHECK_DESTROY_REPORTED(fiber_task_release(t), "fiber_task_release");
  CHECK_NULL_IGNORED(fiber_task_release(NULL));
  CHECK(fiber_task_done(NULL) == 0);

  /* Released while still pending (detached): the handle is dead all the same. */
  u = fiber_spawn(other, returns_arg, P(6));
  fiber_task_release(u);
  CHECK_REFUSED(fiber_task_join(u, &r), "fiber_task_join", "destroyed");
  CHECK_DESTROY_REPORTED(fiber_task_release(u), "fiber_task_release");
  CHECK_STATUS(fiber_loop_run(other), FIBER_OK);

  fiber_loop_destroy(loop);
  fiber_loop_destroy(other);
}

/* ---- fiber_loop ---- */

static void test_loops(void) {
  fiber_loop* loop = fiber_loop_create();
  size_t alive = 99;
  CHECK_STATUS(fiber_loop_run(loop), FIBER_OK);
  fiber_loop_destroy(loop);

  CHECK_REFUSED(fiber_loop_run(loop), "fiber_loop_run", "destroyed");
  CHECK_REFUSED(fiber_loop_run_once(loop, 0, &alive), "fiber_loop_run_once", "destroyed");
  CHECK(alive == 99);
  reset_last_error();
  CHECK(fiber_loop_fd(loop) == -1);
  CHECK(error_names("fiber_loop_fd", "destroyed"));
  reset_last_error();
  CHECK(fiber_loop_next_timeout_ms(loop) == 0); /* run_once now, and see the error */
  CHECK(error_names("fiber_loop_next_timeout_ms", "destroyed"));
  reset_last_error();
  CHECK(fiber_spawn(loop, returns_arg, NULL) == NULL);
  CHECK(error_names("fiber_spawn", "destroyed"));
  CHECK_DESTROY_REPORTED(fiber_loop_destroy(loop), "fiber_loop_destroy");
  CHECK_NULL_IGNORED(fiber_loop_destroy(NULL));
  CHECK(fiber_loop_fd(NULL) == -1);
}

/* ---- a handle of another kind ---- */

static void test_kinds(void) {
  fiber_t* f = fiber_create(counts, NULL, 0);
  fiber_chan* ch = fiber_chan_create(1);
  fiber_loop* loop = fiber_loop_create();
  fiber_task* t = fiber_spawn(loop, returns_arg, P(8));
  void* v = NULL;
  size_t alive = 0;

  CHECK_REFUSED(fiber_resume((fiber_t*)ch, NULL, &v), "fiber_resume", "fiber_chan");
  CHECK_REFUSED(fiber_close((fiber_t*)t), "fiber_close", "fiber_task");
  CHECK_REFUSED(fiber_done((fiber_t*)loop), "fiber_done", "fiber_loop");
  CHECK_REFUSED(fiber_chan_try_send((fiber_chan*)f, P(1)), "fiber_chan_try_send", "fiber_t");
  CHECK_REFUSED(fiber_chan_try_recv((fiber_chan*)loop, &v), "fiber_chan_try_recv", "fiber_loop");
  CHECK_REFUSED(fiber_chan_close((fiber_chan*)t), "fiber_chan_close", "fiber_task");
  CHECK_REFUSED(fiber_task_join((fiber_task*)loop, &v), "fiber_task_join", "fiber_loop");
  CHECK_REFUSED(fiber_task_cancel((fiber_task*)ch), "fiber_task_cancel", "fiber_chan");
  CHECK_REFUSED(fiber_task_done((fiber_task*)f), "fiber_task_done", "fiber_t");
  CHECK_REFUSED(fiber_loop_run((fiber_loop*)t), "fiber_loop_run", "fiber_task");
  CHECK_REFUSED(fiber_loop_run_once((fiber_loop*)f, 0, &alive), "fiber_loop_run_once", "fiber_t");
  CHECK_REFUSED(fiber_loop_run_until((fiber_loop*)ch, t), "fiber_loop_run_until", "fiber_chan");
  CHECK_REFUSED(fiber_loop_run_until(loop, (fiber_task*)ch), "fiber_loop_run_until", "fiber_chan");
  CHECK(fiber_spawn((fiber_loop*)ch, returns_arg, NULL) == NULL);
  CHECK(error_names("fiber_spawn", "fiber_chan"));

  /* Destroying through the wrong kind is refused, and the object lives on. */
  CHECK_DESTROY_REPORTED(fiber_destroy((fiber_t*)ch), "fiber_destroy");
  CHECK_DESTROY_REPORTED(fiber_chan_destroy((fiber_chan*)f), "fiber_chan_destroy");
  CHECK_DESTROY_REPORTED(fiber_task_release((fiber_task*)loop), "fiber_task_release");
  CHECK_DESTROY_REPORTED(fiber_loop_destroy((fiber_loop*)t), "fiber_loop_destroy");
  CHECK_STATUS(fiber_resume(f, NULL, &v), FIBER_OK);
  CHECK_STATUS(fiber_chan_try_send(ch, P(1)), FIBER_OK);
  CHECK_STATUS(fiber_task_join(t, &v), FIBER_OK);
  CHECK(I(v) == 8);
  CHECK_STATUS(fiber_loop_run(loop), FIBER_OK);

  fiber_task_release(t);
  fiber_loop_destroy(loop);
  fiber_chan_destroy(ch);
  fiber_destroy(f);
}

/* ---- many handles: boxes are reused, and live handles keep working ---- */

#define MANY 5000

static void test_churn(void) {
  static fiber_chan* chans[MANY];
  fiber_chan* last = NULL;
  void* v = NULL;
  int round, i;
  for (round = 0; round < 3; ++round) {
    for (i = 0; i < MANY; ++i) {
      chans[i] = fiber_chan_create(1);
      CHECK(chans[i] != NULL);
      CHECK_STATUS(fiber_chan_try_send(chans[i], P(i)), FIBER_OK);
    }
    for (i = 0; i < MANY; ++i) {
      CHECK_STATUS(fiber_chan_try_recv(chans[i], &v), FIBER_OK);
      CHECK(I(v) == i);
      fiber_chan_destroy(chans[i]);
    }
    last = chans[MANY - 1];
    CHECK_REFUSED(fiber_chan_try_send(last, P(1)), "fiber_chan_try_send", "destroyed");
    CHECK_DESTROY_REPORTED(fiber_chan_destroy(last), "fiber_chan_destroy");
  }
}

/* ---- two threads destroy the same handle at once: exactly one does ---- */

#if !defined(_WIN32)
struct race {
  pthread_barrier_t start;
  fiber_chan* ch;
  int reported[2];
};

static struct race the_race;

static void* destroys(void* arg) {
  int me = (int)I(arg);
  pthread_barrier_wait(&the_race.start);
  fiber_chan_destroy(the_race.ch);
  the_race.reported[me] = fiber_last_error()[0] != 0; /* this thread's message */
  return NULL;
}

static void test_race(void) {
  int round;
  capture_stderr();
  for (round = 0; round < 200; ++round) {
    pthread_t a, b;
    the_race.ch = fiber_chan_create(0);
    the_race.reported[0] = the_race.reported[1] = 0;
    pthread_barrier_init(&the_race.start, NULL, 2);
    pthread_create(&a, NULL, destroys, P(0));
    pthread_create(&b, NULL, destroys, P(1));
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    pthread_barrier_destroy(&the_race.start);
    CHECK(the_race.reported[0] + the_race.reported[1] == 1);
  }
  (void)captured_stderr();
}
#else
static void test_race(void) {}
#endif

struct section {
  const char* name;
  void (*run)(void);
};

int main(int argc, char** argv) {
  static const struct section sections[] = {{"fibers", test_fibers}, {"channels", test_channels},
                                            {"tasks", test_tasks},   {"loops", test_loops},
                                            {"kinds", test_kinds},   {"churn", test_churn},
                                            {"race", test_race}};
  const size_t count = sizeof sections / sizeof sections[0];
  size_t i;
  int a;
  if (argc == 1)
    for (i = 0; i < count; ++i) sections[i].run();
  for (a = 1; a < argc; ++a) {
    for (i = 0; i < count && strcmp(sections[i].name, argv[a]) != 0; ++i) {
    }
    if (i == count) {
      printf("c_api_handles_test: no section %s\n", argv[a]);
      return 2;
    }
    sections[i].run();
  }
  if (failures) {
    printf("c_api_handles_test: %d check(s) failed\n", failures);
    return 1;
  }
  printf("c_api_handles_test: all checks passed\n");
  return 0;
}
