// qsort(3), driven one comparison at a time from outside.
//
// qsort calls its comparator and owns the algorithm: there is no way to pause it
// between two comparisons. Run qsort inside a fiber::generator whose comparator
// yields the pair it is asked about and returns the answer it is sent: the sort
// becomes a sequence of questions that the caller answers when it likes (from a
// user, a network peer, a slow oracle...). Here the driver answers from a table
// of "votes" and can interleave two sorts, question by question, on one thread.
//
// Rules that keep C frames safe: the comparator never lets an exception out
// (qsort is C), and each sort runs to its end (a generator closed early would
// unwind qsort's frames).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "fiber/generator.hpp"

namespace {

struct question {
  const char* a;
  const char* b;
};

// Yields each comparison qsort asks for; receives <0, 0 or >0 back.
using sorting = fiber::generator<question, int>;

thread_local sorting::yielder* current_sort = nullptr;

int ask(const void* x, const void* y) {
  sorting::yielder* co = current_sort;
  const int answer = co->yield({*static_cast<const char* const*>(x), *static_cast<const char* const*>(y)});
  current_sort = co;  // another sort may have run while this one waited
  return answer;
}

sorting sort_by_questions(std::vector<const char*>& items) {
  return sorting{[&items](sorting::yielder& co) {
    current_sort = &co;
    std::qsort(items.data(), items.size(), sizeof(const char*), ask);
  }};
}

// Drives a sort to its end, answering each question with `answer`. Returns the
// number of questions.
template <class Answer>
int drive(sorting& s, Answer answer) {
  int questions = 0;
  try {
    question q = s.start();
    for (;;) {
      ++questions;
      q = s.send(answer(q));
    }
  } catch (const fiber::stop_iteration&) {
    // qsort returned: the body ended
  }
  return questions;
}

int by_length_then_text(question q) {
  const std::size_t la = std::strlen(q.a), lb = std::strlen(q.b);
  if (la != lb) return la < lb ? -1 : 1;
  return std::strcmp(q.a, q.b);
}

}  // namespace

int main() {
  std::vector<const char*> words = {"pear", "fig", "banana", "kiwi", "apple", "plum", "cherry", "date"};
  sorting s = sort_by_questions(words);
  const int asked = drive(s, by_length_then_text);
  std::printf("sorted by length, then text:");
  for (const char* w : words) std::printf(" %s", w);
  std::printf("\n%s\n", asked > 0 ? "every comparison was answered from outside qsort" : "no comparison asked?");

  // Two sorts side by side, one question each in turn, on one thread.
  std::vector<const char*> up = {"c", "a", "d", "b"}, down = {"w", "z", "x", "y"};
  sorting s1 = sort_by_questions(up), s2 = sort_by_questions(down);
  auto ascending = [](question q) { return std::strcmp(q.a, q.b); };
  auto descending = [](question q) { return std::strcmp(q.b, q.a); };
  bool done1 = false, done2 = false;
  question q1{}, q2{};
  try {
    q1 = s1.start();
  } catch (const fiber::stop_iteration&) {
    done1 = true;
  }
  try {
    q2 = s2.start();
  } catch (const fiber::stop_iteration&) {
    done2 = true;
  }
  int turns = 0;
  while (!done1 || !done2) {
    ++turns;
    if (!done1) try {
        q1 = s1.send(ascending(q1));
      } catch (const fiber::stop_iteration&) {
        done1 = true;
      }
    if (!done2) try {
        q2 = s2.send(descending(q2));
      } catch (const fiber::stop_iteration&) {
        done2 = true;
      }
  }
  std::printf("interleaved: ascending");
  for (const char* w : up) std::printf(" %s", w);
  std::printf(", descending");
  for (const char* w : down) std::printf(" %s", w);
  std::printf("\n");
  return asked > 0 && turns > 0 ? 0 : 1;
}
