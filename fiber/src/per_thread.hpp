// One T per thread, destroyed when the thread exits: FIBER_PER_THREAD(T, name)
// declares `T& name()`. (registry.cpp uses per_thread<> itself for thread_state.)
//
// On ELF it is a plain thread_local. Elsewhere (Windows) GCC emulates TLS, and a
// thread's emulated TLS can be freed before its C++ thread_local destructors run,
// which then read freed memory (a cache of free task blocks walked a freed list
// forever, so a thread that had spawned from the wrong thread never exited). There
// the T is on the heap, only its address is in TLS, and a pthread key's destructor,
// which is handed the T itself, deletes it.
#pragma once

#if defined(__ELF__)

#  define FIBER_PER_THREAD(T, name) \
    thread_local T name##_storage;  \
    inline T& name() noexcept { return name##_storage; }

#else

#  include <pthread.h>

#  include <new>

namespace fiber::detail {
[[noreturn]] void fatal(const char* message) noexcept;

// at_exit, if given, runs on the thread's T just before it is deleted.
template <class T, void (*at_exit)(T&) noexcept = nullptr>
struct per_thread {
  static T& get() noexcept {
    static constinit thread_local T* mine = nullptr;
    if (!mine) [[unlikely]]
      mine = make();
    return *mine;
  }

 private:
  static void destroy(void* p) noexcept {
    T* t = static_cast<T*>(p);
    if constexpr (at_exit != nullptr) at_exit(*t);
    delete t;
  }
  static T* make() noexcept {
    static const pthread_key_t key = [] {
      pthread_key_t k;
      if (pthread_key_create(&k, &destroy) != 0) fatal("fiber: pthread_key_create failed");
      return k;
    }();
    T* t = new (std::nothrow) T();
    if (!t || pthread_setspecific(key, t) != 0) fatal("fiber: out of memory for per-thread state");
    return t;
  }
};
}  // namespace fiber::detail

#  define FIBER_PER_THREAD(T, name) \
    inline T& name() noexcept { return ::fiber::detail::per_thread<T>::get(); }

#endif
