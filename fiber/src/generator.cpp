#include "fiber/generator.hpp"

#include <cxxabi.h>

#include <cstdio>
#include <new>
#include <typeinfo>

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
}  // namespace

_Unwind_Exception* prepare_generator_exit() noexcept {
  // As __cxa_throw does: the object, its header, one reference, one more uncaught
  // exception (__cxa_begin_catch takes it back). __cxa_allocate_exception falls
  // back on the runtime's emergency pool and terminates only if that is exhausted,
  // as a throw would.
  void* object = abi::__cxa_allocate_exception(sizeof(generator_exit));
  ::new (object) generator_exit{};
  auto* header = reinterpret_cast<cxa_refcounted_exception_layout*>(
      abi::__cxa_init_primary_exception(object, const_cast<std::type_info*>(&typeid(generator_exit)), nullptr));
  _Unwind_Exception* const unwind = &header->exc.unwind_header;
  if (reinterpret_cast<char*>(unwind + 1) != object)
    fatal("fiber: this C++ runtime's exception header is not laid out as fiber/src/generator.cpp expects");
  header->reference_count = 1;
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
