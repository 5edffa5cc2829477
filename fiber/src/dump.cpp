// fiber::dump() (debug.hpp): every live fiber, from the registry, and every
// event_loop's tasks; and the description of what a loop's task does or waits for,
// which the deadlock report (event_loop.cpp) shares.
//
// What a parked task waits for comes from what park() stored (detail/loop_core.hpp):
// the operation's name and a tagged word (scheduler.hpp, wait_on()): an address,
// an fd or a task; a park on several waiters (select, wait_any) has one per
// waiter. A deadline is the task's timer. All of it is read without a lock: a
// snapshot, exact for the calling thread's loop and best effort for the others
// (whose tasks are not described while their loop runs).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ostream>
#include <sstream>
#include <vector>

#include "fiber/debug.hpp"
#include "fiber/event_loop.hpp"
#include "loop/snapshot.hpp"
#include "registry.hpp"

namespace fiber::detail {

namespace {

void write_hex(std::ostream& out, std::uintptr_t v) { out << "0x" << std::hex << v << std::dec; }

const char* state_name(fiber_state s) noexcept {
  switch (s) {
    case fiber_state::created: return "created";
    case fiber_state::running: return "running";
    case fiber_state::suspended: return "suspended";
    case fiber_state::ended: return "ended";
  }
  return "?";
}

// A task's name: while it runs, its fiber's (this_fiber::set_name may have
// changed it); before, the one it was spawned with.
const char* task_name(const fiber_control& f) noexcept { return f.record ? f.record->name : f.name; }

void write_object(std::ostream& out, std::uintptr_t object) {
  switch (object & 3u) {
    case 1:
      out << "fd " << (object >> 2);
      break;
    case 2:
      write_task_ref(out, *reinterpret_cast<const fiber_control*>(object & ~std::uintptr_t{3}));
      break;
    default:
      write_hex(out, object);
      break;
  }
}

// "in 12 ms", or "3 ms ago" for a deadline that has passed.
void write_deadline(std::ostream& out, clock::time_point deadline, clock::time_point now) {
  using ms = std::chrono::milliseconds;
  if (deadline >= now)
    out << "in " << std::chrono::ceil<ms>(deadline - now).count() << " ms";
  else
    out << std::chrono::floor<ms>(now - deadline).count() << " ms ago";
}

}  // namespace

void write_task_ref(std::ostream& out, const fiber_control& f) {
  out << "task " << f.id;
  if (const char* name = task_name(f); *name) out << " \"" << name << '"';
}

void describe_wait(std::ostream& out, const fiber_control& f) {
  if (f.status != task_status::pending) {
    out << "ended";
    return;
  }
  if (state_of(&f) == run_state::created) {
    out << "spawned, not started";
    return;
  }
  if (f.core && f.core->current == &f) {
    out << "running";
    return;
  }
  if (state_of(&f) != run_state::parked) {
    out << (f.queued ? "ready to run" : "suspended");
    return;
  }
  out << "parked in " << (f.park_operation ? f.park_operation : "a wait of unknown kind");
  if (f.park_object) {
    out << " on ";
    write_object(out, f.park_object);
  } else if (f.park_count > 0 && f.park_waiters) {
    // Several waiters (select, wait_any, gather): what each waits on.
    out << " on ";
    for (std::size_t i = 0; i < f.park_count; ++i) {
      const waiter& w = f.park_waiters[i];
      if (i) out << ", ";
      if ((w.object & 3u) == 0) out << (w.sending ? "send to " : "recv from ");  // a select's channel case
      write_object(out, w.object);
    }
  }
  if (f.timer_slot != static_cast<std::size_t>(-1)) {
    out << ", deadline ";
    write_deadline(out, f.timer_deadline, clock::now());
    if (f.park_by_scope) out << " (a deadline_scope's)";
  }
  if (f.cancel_pending) out << ", cancellation pending";
}

void describe_task(std::ostream& out, const fiber_control& f) {
  write_task_ref(out, f);
  out << ": ";
  describe_wait(out, f);
}

namespace {
// An event_loop: where it runs, its tasks not started and ready, its idle workers.
void write_loop(std::ostream& out, const loop_snapshot& l) {
  out << "event_loop ";
  write_hex(out, l.loop);
  out << ": "
      << (l.where == loop_snapshot::runner::this_thread    ? "running on this thread"
          : l.where == loop_snapshot::runner::other_thread ? "running on another thread"
                                                           : "not running")
      << ", " << l.alive << " task(s) alive\n";
  if (l.where == loop_snapshot::runner::other_thread) {
    out << "  (its tasks are not listed: they belong to the thread running it)\n";
    return;
  }
  auto list = [&](const char* what, const std::vector<const fiber_control*>& fs) {
    out << "  " << what << ":";
    for (std::size_t i = 0; i < fs.size(); ++i) {
      out << (i ? ", " : " ");
      write_task_ref(out, *fs[i]);
    }
    out << (fs.empty() ? " none\n" : "\n");
  };
  list("not started", l.not_started);
  list("ready to run", l.ready);
  if (l.idle_workers != 0) {
    // Fibers whose task ended, kept (with their stacks) for the next tasks.
    out << "  idle workers (fibers kept for the next tasks): " << l.idle_workers << ":";
    for (std::size_t i = 0; i < l.idle_ids.size(); ++i) out << (i ? ", fiber " : " fiber ") << l.idle_ids[i];
    out << (l.idle_workers > l.idle_ids.size() ? ", ...\n" : "\n");
  }
}
}  // namespace

}  // namespace fiber::detail

namespace fiber {

void dump(std::ostream& out) {
  using namespace detail;
  std::vector<const record_base*> fibers;
  for_each_fiber([&](const record_base* r) {
    try {
      fibers.push_back(r);
    } catch (...) {
    }
  });
  std::sort(fibers.begin(), fibers.end(), [](const record_base* a, const record_base* b) { return a->id < b->id; });
  const record_base* const running_here = FIBER_DETAIL_THREAD_STATE.running;
  std::ostringstream s;
  s << "fiber::dump: " << fibers.size() << " fiber(s)\n";
  for (const record_base* r : fibers) {
    s << "fiber " << r->id;
    if (r->name[0]) s << " \"" << r->name << '"';
    // A record never stores "running" (context.hpp): a thread says so.
    const bool running = r == running_here || is_running(r);
    s << ": " << (running ? "running" : state_name(r->state)) << ", stack ";
    const auto base = reinterpret_cast<std::uintptr_t>(r->stack_base);
    write_hex(s, base);
    s << '-';
    write_hex(s, base + r->stack_size);
    if (r->stack_size % 1024 == 0)
      s << " (" << r->stack_size / 1024 << " KiB)";
    else
      s << " (" << r->stack_size << " bytes)";
    if (const auto* f = static_cast<const fiber_control*>(r->task)) {
      if (f->core && runs_elsewhere(f->core)) {
        s << ", a task of an event_loop running on another thread";
      } else {
        s << ", event_loop task: ";
        describe_wait(s, *f);
      }
    }
    s << '\n';
  }
  for (const loop_snapshot& l : snapshot_loops()) write_loop(s, l);
  out << s.str();
}

}  // namespace fiber
