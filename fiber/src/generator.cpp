#include "fiber/generator.hpp"

#include <cxxabi.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <typeinfo>

#include "per_thread.hpp"

namespace fiber::detail {

#if FIBER_CLEANUP_PHASE_RAISE
namespace {
// libstdc++'s __cxa_refcounted_exception and __cxa_exception (unwind-cxx.h): the
// header __cxa_throw puts before a thrown object. Declared member for member and
// nested as there, so that each target's compiler lays them out (the alignment of
// _Unwind_Exception included) as libstdc++'s.
struct cxa_exception_layout {
  std::type_info* exception_type;
  void (*exception_destructor)(void*);
  void (*unexpected_handler)();
  std::terminate_handler terminate_handler;
  void* next_exception;
  int handler_count;
  int handler_switch_value;
  const unsigned char* action_record;
  const unsigned char* language_specific_data;
  _Unwind_Ptr catch_temp;
  void* adjusted_ptr;
  _Unwind_Exception unwind_header;
};
struct cxa_refcounted_exception_layout {
  int reference_count;
  cxa_exception_layout exc;
};

cxa_refcounted_exception_layout* header_of(void* object) noexcept {
  return reinterpret_cast<cxa_refcounted_exception_layout*>(static_cast<char*>(object) -
                                                            sizeof(cxa_refcounted_exception_layout));
}

// One generator_exit per thread, reused by every close() on the thread while
// nothing else refers to it: closing then allocates nothing. The cache holds a
// reference of its own, so the runtime never frees it; a caught generator_exit
// kept in an exception_ptr keeps it busy, and a close meanwhile makes a new one.
struct exit_cache {
  void* object = nullptr;
  ~exit_cache() {
    if (object && __atomic_sub_fetch(&header_of(object)->reference_count, 1, __ATOMIC_ACQ_REL) == 0)
      abi::__cxa_free_exception(object);  // generator_exit has nothing to destroy
  }
};
FIBER_PER_THREAD(exit_cache, thread_exit_cache)  // (per_thread.hpp: emulated TLS on Windows)
}  // namespace

_Unwind_Exception* prepare_generator_exit() noexcept {
  // As __cxa_throw does: the object, its header, one reference (plus the cache's),
  // one more uncaught exception (__cxa_begin_catch takes it back).
  // __cxa_allocate_exception falls back on the runtime's emergency pool and
  // terminates only if that is exhausted, as a throw would.
  exit_cache& exit_object = thread_exit_cache();
  void* object = exit_object.object;
  int references = 2;
  if (object && __atomic_load_n(&header_of(object)->reference_count, __ATOMIC_ACQUIRE) == 1) {
    // Idle (only the cache refers to it): a fresh header, as allocation leaves it.
    std::memset(static_cast<void*>(header_of(object)), 0, sizeof(cxa_refcounted_exception_layout));
  } else {
    object = abi::__cxa_allocate_exception(sizeof(generator_exit));
    ::new (object) generator_exit{};
    if (exit_object.object == nullptr)
      exit_object.object = object;
    else
      references = 1;  // the cached one is busy: this one is the throw's alone
  }
  auto* header = reinterpret_cast<cxa_refcounted_exception_layout*>(
      abi::__cxa_init_primary_exception(object, const_cast<std::type_info*>(&typeid(generator_exit)), nullptr));
  _Unwind_Exception* const unwind = &header->exc.unwind_header;
  if (reinterpret_cast<char*>(unwind + 1) != object || header != header_of(object))
    fatal("fiber: this C++ runtime's exception header is not laid out as fiber/src/generator.cpp expects");
  __atomic_store_n(&header->reference_count, references, __ATOMIC_RELEASE);
  // What the search phase would have found for the handler, a generator_exit
  // caught by reference (it has no base class: the object itself).
  header->exc.adjusted_ptr = object;
  // Nothing has searched: the cleanup phase then stops at no particular frame, and
  // continues until a handler matches.
  unwind->private_1 = 0;
  unwind->private_2 = 0;
  eh_state::globals()->uncaught += 1;
  return unwind;
}
#endif

void report_generator_destruction_error(std::exception_ptr error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fiber: exception ignored while destroying a generator: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "fiber: exception of unknown type ignored while destroying a generator\n");
  }
}

}  // namespace fiber::detail
