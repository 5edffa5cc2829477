/* fiber.h: the C API of fiber (C99 and C++). Fibers and generators with void*
 * payloads, an event loop with tasks, sleeping, channels of void* and waits on
 * file descriptors.
 *
 *   static void* body(void* arg) {          // a generator: yields 1, 2, 3
 *     for (intptr_t i = 1; i <= 3; ++i) {
 *       void* in;
 *       if (fiber_yield((void*)i, &in) != FIBER_OK) break;   // closed: return
 *     }
 *     return NULL;
 *   }
 *   fiber_t* f = fiber_create(body, NULL, 0);
 *   void* v;
 *   while (fiber_resume(f, NULL, &v) == FIBER_OK) printf("%d\n", (int)(intptr_t)v);
 *   fiber_destroy(f);
 *
 * Errors. Every function that can fail returns a fiber_status (0 is FIBER_OK,
 * failures are negative) or NULL, and leaves a message for the calling thread in
 * fiber_last_error(). No C++ exception crosses this API: one thrown by the library
 * or by C++ code running inside a fiber is caught at the boundary and reported as
 * FIBER_EXCEPTION with its what() in the message.
 *
 * Handles (fiber_t*, fiber_loop*, fiber_task*, fiber_chan*) are checked by every
 * call, in every build, at the cost of a load and a compare. A handle already
 * destroyed (fiber_destroy, fiber_loop_destroy, fiber_task_release,
 * fiber_chan_destroy) or of another kind (a fiber_chan* cast to fiber_t*) is
 * refused: FIBER_EINVAL with a message naming the call; fiber_done and
 * fiber_task_done return FIBER_EINVAL too (negative: test them with == 1),
 * fiber_spawn NULL, fiber_loop_fd -1 and fiber_loop_next_timeout_ms 0 (so that a
 * foreign loop's next fiber_loop_run_once reports it). A second destroy, or a
 * destroy given a handle of another kind, is reported on stderr and in
 * fiber_last_error() and otherwise does nothing: never a second free, never an
 * abort; of two threads destroying one handle at once, exactly one destroys it.
 * NULL keeps the meaning each function gives it (destroys ignore it silently).
 * Limits: this is a net for bugs, not a contract to build on. A destroyed handle
 * is recognised as such for at least the next 4096 destroys (of any kind) after
 * its own; its memory (never freed) may then serve a new object, which the stale
 * handle would reach. A pointer the API never gave out is refused only as far as
 * its memory does not look like a live handle. Nor is a destroy racing with
 * another call on the same handle detected.
 *
 * Fibers (fiber_create/fiber_resume/fiber_yield) are the bare, symmetric form: the
 * resumer hands a value in, the body hands one out at each yield. They belong to
 * the thread that first resumes them. A body must return rather than yield again
 * once fiber_yield has returned FIBER_CLOSED (fiber_close or fiber_destroy): C
 * frames cannot be unwound, so a body that keeps yielding is reported, and
 * destroying it then aborts with a message.
 *
 * The event loop (fiber_loop_*) runs tasks, each a fiber of its own; the blocking
 * calls (fiber_sleep_ms, fiber_task_join, fiber_chan_send/recv, fiber_wait_fd)
 * park the calling task only, and must be called from a task of the running loop
 * (else FIBER_NO_LOOP). A channel holds void* values and belongs to one loop.
 */
#ifndef FIBER_FIBER_H
#define FIBER_FIBER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fiber_status {
  FIBER_OK = 0,
  FIBER_FINISHED = -1,  /* the fiber's body returned (its value is in *out) */
  FIBER_CLOSED = -2,    /* fiber_yield: the fiber is being closed; channels: closed (and drained) */
  FIBER_TIMEOUT = -3,   /* the deadline passed */
  FIBER_AGAIN = -4,     /* try_send/try_recv: it would have to wait */
  FIBER_CANCELLED = -5, /* the task was cancelled while it waited */
  FIBER_NO_LOOP = -6,   /* not called from a task of a running loop */
  FIBER_EINVAL = -7,    /* misuse: bad argument, wrong state, wrong thread */
  FIBER_ENOMEM = -8,    /* no memory (or no stack could be mapped) */
  FIBER_DEADLOCK = -9,  /* fiber_loop_run: tasks wait and nothing can wake them */
  FIBER_EXCEPTION = -10 /* a C++ exception reached the boundary: see fiber_last_error() */
} fiber_status;

/* The message of the last failure on this thread ("" if none). Valid until the
 * next call into this API on the thread. */
const char* fiber_last_error(void);
/* "FIBER_OK", "FIBER_CLOSED", ...: the name of a status. */
const char* fiber_status_name(int status);

/* ---- fibers: resume / yield with payloads ---- */

typedef struct fiber_s fiber_t;
typedef void* (*fiber_fn)(void* arg);

/* A fiber running body(arg) on its own stack of stack_size bytes (0: the
 * default, 64 KiB), with a guard page. Nothing runs until the first resume.
 * NULL on failure. */
fiber_t* fiber_create(fiber_fn body, void* arg, size_t stack_size);
/* Runs the fiber until it yields (FIBER_OK, *out = the value yielded) or returns
 * (FIBER_FINISHED, *out = its return value). `in` is what the pending
 * fiber_yield receives (ignored on the first resume). out may be NULL.
 * FIBER_EINVAL if the fiber is running, finished or closed. */
int fiber_resume(fiber_t* f, void* in, void** out);
/* From inside a fiber: hands `out` to the resumer and suspends; *in receives the
 * next resume's `in`. FIBER_OK, or FIBER_CLOSED when the fiber is being closed
 * (then return from the body), or FIBER_EINVAL outside any fiber_t. in may be NULL. */
int fiber_yield(void* out, void** in);
/* The fiber running on this thread (NULL outside any fiber_t). */
fiber_t* fiber_self(void);
/* Closes a suspended fiber: its pending fiber_yield returns FIBER_CLOSED and the
 * body must return. FIBER_OK (also for a fiber never started or finished), or
 * FIBER_EINVAL if the body yielded again (it stays suspended) or f is running. */
int fiber_close(fiber_t* f);
/* Closes (if suspended) and frees the fiber. Aborting with a message if the body
 * ignores the close. Destroying a running fiber aborts too. NULL is ignored; a
 * handle already destroyed is reported and ignored (see Errors above). */
void fiber_destroy(fiber_t* f);
/* 1 if the fiber has finished (returned, or closed), else 0 (also for NULL);
 * FIBER_EINVAL if f is not a live fiber_t. */
int fiber_done(const fiber_t* f);

/* ---- the event loop ---- */

typedef struct fiber_loop_s fiber_loop;
typedef struct fiber_task_s fiber_task;
typedef void* (*fiber_task_fn)(void* arg);

fiber_loop* fiber_loop_create(void);
/* Tasks still suspended are cancelled and their stacks freed. NULL is ignored; a
 * handle already destroyed is reported and ignored. */
void fiber_loop_destroy(fiber_loop* loop);
/* Runs until no task is alive. FIBER_DEADLOCK if tasks wait with nothing to wake them. */
int fiber_loop_run(fiber_loop* loop);
/* One round, for a foreign main loop: waits up to timeout_ms (0: not at all; -1:
 * no limit) if no task is ready, then gives each ready task one turn. *alive (may
 * be NULL) receives the number of tasks alive. */
int fiber_loop_run_once(fiber_loop* loop, int timeout_ms, size_t* alive);
/* The loop's pollable fd (Linux: epoll), readable when run_once has IO work; -1 if
 * none (or if loop is NULL or not live). */
int fiber_loop_fd(const fiber_loop* loop);
/* How long a foreign loop may sleep before run_once has work (ms; -1: until the fd,
 * also for NULL; 0 if loop is not live, for run_once to report it). */
int fiber_loop_next_timeout_ms(const fiber_loop* loop);

/* Runs fn(arg) as the main task of a runtime of `threads` worker threads, each with
 * a loop of its own (the calling thread is worker 0; 0: one per core; 1: a single
 * loop on this thread). Returns once fn has returned and every task has ended
 * (those still alive are cancelled); *result (may be NULL) receives fn's value.
 * Tasks spawned inside with fiber_spawn(NULL, ...) are queued on the spawner's
 * worker and may start on any; a task that has started never changes threads.
 * Channels and task handles work between the workers. FIBER_DEADLOCK if every
 * worker's tasks wait with nothing to wake them. */
int fiber_run(fiber_task_fn fn, void* arg, unsigned threads, void** result);

/* Starts fn(arg) as a task of `loop` (NULL: the running loop). The handle must be
 * released with fiber_task_release (which detaches a task still running). NULL on
 * failure. */
fiber_task* fiber_spawn(fiber_loop* loop, fiber_task_fn fn, void* arg);
/* Waits for the task's end; *result (may be NULL) receives its return value.
 * From a task: parks; FIBER_CANCELLED if the task was cancelled. From outside any
 * task: runs `loop` until the task ends (fiber_loop_run_until). */
int fiber_task_join(fiber_task* t, void** result);
/* Runs the task's loop until that task has ended (from outside any task). */
int fiber_loop_run_until(fiber_loop* loop, fiber_task* t);
/* Asks the task to stop: its current or next wait returns FIBER_CANCELLED. */
int fiber_task_cancel(fiber_task* t);
/* 1 once the task has ended (returned or cancelled), else 0 (also for NULL);
 * FIBER_EINVAL if t is not a live fiber_task. */
int fiber_task_done(const fiber_task* t);
/* Frees the handle; the task runs on, detached. NULL is ignored; a handle already
 * released is reported and ignored. */
void fiber_task_release(fiber_task* t);

/* From a task: lets the other ready tasks run, then continues. */
int fiber_task_yield(void);
/* From a task: parks it for at least ms milliseconds (ns nanoseconds). */
int fiber_sleep_ms(int64_t ms);
int fiber_sleep_ns(int64_t ns);
/* 1 inside a task of a running loop, else 0. */
int fiber_in_task(void);

/* ---- channels of void* ---- */

typedef struct fiber_chan_s fiber_chan;

/* capacity 0: a rendezvous. NULL on failure. */
fiber_chan* fiber_chan_create(size_t capacity);
/* NULL is ignored; a handle already destroyed is reported and ignored. */
void fiber_chan_destroy(fiber_chan* ch);
/* Parks until a receiver takes v (or the buffer has room). FIBER_CLOSED if closed.
 * timeout_ms < 0: no limit; else FIBER_TIMEOUT when it passes. */
int fiber_chan_send(fiber_chan* ch, void* v, int64_t timeout_ms);
/* Parks until a value comes (*out). FIBER_CLOSED once closed and drained. */
int fiber_chan_recv(fiber_chan* ch, void** out, int64_t timeout_ms);
/* Never park: FIBER_AGAIN when they would have to. */
int fiber_chan_try_send(fiber_chan* ch, void* v);
int fiber_chan_try_recv(fiber_chan* ch, void** out);
/* No more sends; receivers drain what is buffered. FIBER_CLOSED if already closed. */
int fiber_chan_close(fiber_chan* ch);

/* ---- waiting on file descriptors (Linux) ---- */

enum { FIBER_READABLE = 1, FIBER_WRITABLE = 2 };
/* Call before closing an fd that fiber_wait_fd has waited on: it leaves the epoll
 * it is registered with, and the tasks waiting on it (of any loop or worker) wake
 * (FIBER_OK); their next call on the fd fails with EBADF. (epoll forgets a closed
 * fd without a word.) From any thread; cheap for an fd never waited on.
 * libfiber_hook's close() calls it. */
void fiber_fd_closing(int fd);
/* From a task: parks until fd is readable (events = FIBER_READABLE) or writable
 * (FIBER_WRITABLE), or timeout_ms passes (FIBER_TIMEOUT; < 0: no limit). *ready
 * (may be NULL) receives the event that is ready, or 0. Returns at once if the fd
 * is ready now; rarely, returns FIBER_OK when it is not (retry the call, and wait
 * again on EAGAIN). The fd stays registered with the epoll of the task's loop (its
 * worker's, with fiber_run) after the wait, so that the next wait costs one system
 * call: until fiber_fd_closing(fd), a wait from a task of another worker (it moves
 * there) or the loop's end. An fd closed without fiber_fd_closing is registered
 * afresh by its next wait, but a task still waiting on it is not woken. */
int fiber_wait_fd(int fd, int events, int64_t timeout_ms, int* ready);

#ifdef __cplusplus
}
#endif

#endif /* FIBER_FIBER_H */
