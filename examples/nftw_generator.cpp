// A callback-only C library turned into a pull-style generator: nftw(3) from libc.
//
// nftw walks a directory tree and calls you back for each entry; it owns the loop,
// the recursion and the open directory handles, and offers no "next". Run inside
// a fiber::generator, the callback yields each path and the whole walk (nftw's
// frames, its open directories) waits on the generator's stack until the
// consumer asks for the next entry. Stop early and the generator is closed: the
// callback catches generator_exit and returns non-zero, so nftw stops and cleans
// up (closes its directories) by itself before the body returns. No C++
// exception crosses nftw's C frames.
//
//   nftw_generator DIR      prints every entry under DIR (relative, sorted), then
//                           pulls two entries only and closes the walk early
#include <ftw.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fiber/generator.hpp"

namespace {

using paths = fiber::generator<std::string>;

// nftw's callback takes no user pointer: the running walk's yielder is kept here.
// It is set again after every yield, since another walk may run in between.
thread_local paths::yielder* current_walk = nullptr;
thread_local bool walk_closed = false;

int visit(const char* path, const struct stat*, int, struct FTW*) {
  paths::yielder* co = current_walk;
  try {
    co->yield(path);
  } catch (const fiber::generator_exit&) {
    walk_closed = true;
    return 1;  // nftw stops, closes its directories and returns 1
  }
  current_walk = co;
  return 0;
}

// Every path under `root`, pulled one at a time.
paths walk(std::string root) {
  return paths{[root = std::move(root)](paths::yielder& co) {
    current_walk = &co;
    walk_closed = false;
    const int rc = nftw(root.c_str(), visit, 8, FTW_PHYS);
    if (rc == -1) std::fprintf(stderr, "nftw %s: %s\n", root.c_str(), std::strerror(errno));
    // Closed early: returning ends the generator, so close() succeeds.
  }};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: nftw_generator DIR\n");
    return 2;
  }
  const std::string root = argv[1];

  std::vector<std::string> all;
  for (const std::string& p : walk(root)) all.push_back(p == root ? "." : p.substr(root.size() + 1));
  std::sort(all.begin(), all.end());
  std::printf("%zu entries:\n", all.size());
  for (const std::string& p : all) std::printf("  %s\n", p.c_str());

  {
    paths w = walk(root);
    int pulled = 0;
    for (auto it = w.begin(); it != w.end() && pulled < 2; ++it) ++pulled;
    w.close();  // generator_exit at the pending yield: visit() returns 1 to nftw
    std::printf("pulled %d entries, then closed the walk: nftw %s\n", pulled,
                walk_closed ? "stopped and returned" : "was not stopped");
  }
  return walk_closed ? 0 : 1;
}
