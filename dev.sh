#!/usr/bin/env bash
# The developer's entry point. Each command installs the Debian packages it needs
# (once; idempotent), configures, builds and runs.
#
#   ./dev.sh demo    the seed's producer/consumer, then a short stackful-vs-stackless table
#   ./dev.sh test    every test: native (static, shared, boost and ucontext backends),
#                    then under ASan+UBSan, TSan and Valgrind memcheck (the three
#                    modes below), then cross-built for 12 targets under qemu and wine
#   ./dev.sh asan    the whole suite built with -fsanitize=address,undefined (build/asan;
#                    ASAN_OPTIONS include detect_stack_use_after_return=1)
#   ./dev.sh tsan    the whole suite built with -fsanitize=thread (build/tsan)
#   ./dev.sh valgrind  build/native's tests, each program under valgrind memcheck
#                    (errors and definite leaks fail; so does a stack switch
#                    valgrind was not told of); generated CTest tree in build/valgrind
#   ./dev.sh bench   every benchmark, one table with ratios to Boost.Context, then
#                    the stackful-vs-stackless comparison (GCC)
#   ./dev.sh bench --check   only the benchmarks behind the acceptance rows, short
#                    (under 3 minutes): each row's median ratio or value with its
#                    spread, PASS/FAIL/SKIP; exits 1 if a row FAILs; JSON in
#                    build/release/bench-check.json. Run it after every change to
#                    arch/, context.hpp, the event loop, channels or generators, and
#                    never land a change that turns a row to FAIL
#   ./dev.sh compare the stackful-vs-stackless comparison built with GCC and with
#                    Clang: tables, JSON and charts (docs/stackful-vs-stackless.md)
#   ./dev.sh cross [TARGET...]   only the cross-architecture part of `test`
#                    (all targets, or the named ones: aarch64, i686, armhf, ...)
#
# Build trees live in build/<config>; they are reused between runs (and ccache
# keeps compiled objects across clean clones).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
# ccache hits across clones at other paths (CI builds a fresh clone each run):
# paths under the tree are hashed relative to it, and the build directory is not
# hashed (debug info may then name the clone that filled the cache).
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1

BASE_PACKAGES=(g++ cmake ninja-build ccache pkg-config python3 catch2 gdb)
BACKEND_PACKAGES=(libboost-context-dev)
BENCH_PACKAGES=(libbenchmark-dev libboost-context-dev libboost-fiber-dev)
# valgrind also provides valgrind/valgrind.h, which the library compiles in when
# present (fiber/src/registry.cpp registers each fiber's stack): it is installed
# before build/native is configured, since build/native is what ./dev.sh valgrind
# runs. (The sanitizer runtimes come with g++.)
CHECK_PACKAGES=(valgrind)

# Cross targets: name, CMake toolchain file (cmake/toolchains/), how its tests
# run, Debian packages. Each runs the whole suite.
CROSS_TARGETS=(
  "aarch64  aarch64-linux-gnu       qemu-aarch64   g++-aarch64-linux-gnu qemu-user"
  "i686     i686-linux-gnu          qemu-i386      g++-i686-linux-gnu qemu-user"
  "armhf    arm-linux-gnueabihf     qemu-arm       g++-arm-linux-gnueabihf qemu-user"
  "riscv64  riscv64-linux-gnu       qemu-riscv64   g++-riscv64-linux-gnu qemu-user"
  "ppc64le  powerpc64le-linux-gnu   qemu-ppc64le   g++-powerpc64le-linux-gnu qemu-user"
  "ppc64    powerpc64-linux-gnu     qemu-ppc64     g++-powerpc64-linux-gnu qemu-user"
  "ppc      powerpc-linux-gnu       qemu-ppc       g++-powerpc-linux-gnu qemu-user"
  "s390x    s390x-linux-gnu         qemu-s390x     g++-s390x-linux-gnu qemu-user"
  "mips64el mips64el-linux-gnuabi64 qemu-mips64el  g++-mips64el-linux-gnuabi64 qemu-user"
  "mipsel   mipsel-linux-gnu        qemu-mipsel    g++-mipsel-linux-gnu qemu-user"
  "sparc64  sparc64-linux-gnu       qemu-sparc64   g++-sparc64-linux-gnu qemu-user"
  "win64    x86_64-w64-mingw32      wine64         g++-mingw-w64-x86-64-posix wine64"
)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

APT_UPDATED=0
# Installs whichever of the given Debian packages are missing.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "dev.sh: missing packages: ${missing[*]} (run as root to install them)" >&2; exit 1; }
    sudo=(sudo)
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  [ $APT_UPDATED = 1 ] || "${sudo[@]}" apt-get update -qq
  APT_UPDATED=1
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# configure_and_build BUILD_DIR [cmake options...]
# Wall time of the last configure_and_build, for the summary.
LAST_BUILD_SECONDS=
configure_and_build() {
  local dir=$1; shift
  local start=$SECONDS
  mkdir -p "$(dirname "$dir")"
  cmake -S "$ROOT" -B "$dir" -G Ninja \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir"
  LAST_BUILD_SECONDS=$((SECONDS - start))
}

# Debug info for the configurations no debugger reads: line tables only (-g1).
# Crash backtraces and the sanitizers' reports keep their files and lines; the
# compile takes a third less than with -g (a third of ./dev.sh test's time is
# compiling 19 configurations). build/native keeps full -g: the gdb test and
# valgrind read it.
LINES_ONLY=(-DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG")

minutes() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY=()

# run_ctest LABEL BUILD_DIR [TIMEOUT]: runs the suite (each test at most TIMEOUT
# seconds, 300 by default), records passed/failed and wall times for the summary.
run_ctest() {
  local label=$1 dir=$2 timeout=${3:-300} out rc=0 start=$SECONDS times
  log "testing: $label"
  out=$(cd "$dir" && ctest -j2 --timeout "$timeout" --output-on-failure 2>&1) || rc=$?
  printf '%s\n' "$out"
  times="test $(minutes $((SECONDS - start)))"
  [ -z "$LAST_BUILD_SECONDS" ] || times="build $(minutes "$LAST_BUILD_SECONDS"), $times"
  LAST_BUILD_SECONDS=
  local line total failed
  line=$(printf '%s\n' "$out" | grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' | tail -1)
  if [ -z "$line" ]; then
    SUMMARY+=("$label: ctest did not run (exit $rc)")
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
    return
  fi
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
  TOTAL_PASSED=$((TOTAL_PASSED + total - failed))
  TOTAL_FAILED=$((TOTAL_FAILED + failed))
  SUMMARY+=("$(printf '%-28s %4d passed, %d failed  (%s)' "$label" $((total - failed)) "$failed" "$times")")
}

cmd_cross() {
  local t name toolchain runner packages selected=("$@") want
  for t in "${CROSS_TARGETS[@]}"; do
    read -r name toolchain runner packages <<<"$t"
    if [ ${#selected[@]} -gt 0 ]; then
      want=0
      for s in "${selected[@]}"; do [ "$s" = "$name" ] && want=1; done
      [ $want = 1 ] || continue
    fi
    # shellcheck disable=SC2086
    ensure_packages "${BASE_PACKAGES[@]}" $packages
    log "cross-building for $name"
    # (The loop suite on copied stacks: on aarch64 only, of the emulated targets; tests/CMakeLists.txt.)
    if configure_and_build "build/$name" -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/toolchains/$toolchain.cmake" \
      -DFIBER_TEST_COPIED_STACKS=$([ "$name" = aarch64 ] && echo ON || echo OFF) "${LINES_ONLY[@]}"; then
      run_ctest "$name ($runner, asm)" "build/$name"
    else
      SUMMARY+=("$(printf '%-28s BUILD FAILED' "$name ($runner, asm)")")
      TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
  done
}

# ---- Sanitizers and Valgrind ----------------------------------------------------

# sanitized_suite PRESET LABEL: builds build/PRESET with CMakePresets.json's preset
# of that name (FIBER_SANITIZE=...) and runs its whole suite; tests/CMakeLists.txt
# gives every test the sanitizers' options (ASAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS).
sanitized_suite() {
  local preset=$1 label=$2
  log "building with $label (build/$preset)"
  if configure_and_build "build/$preset" --preset "$preset" "${LINES_ONLY[@]}"; then
    run_ctest "$label" "build/$preset"
  else
    SUMMARY+=("$(printf '%-28s BUILD FAILED' "$label")")
    TOTAL_FAILED=$((TOTAL_FAILED + 1))
  fi
}

# The program every test of build/valgrind runs its programs through.
write_memcheck_wrapper() {
  cat >"$1" <<'EOF'
#!/usr/bin/env bash
# Written by dev.sh valgrind. Runs a program under valgrind memcheck:
#   memcheck PROGRAM ARGS...             the program (and any fork of it);
#   memcheck --children PROGRAM ARGS...  also the programs it runs, except the
#       toolchain: compilers, linker, ninja, pkg-config, and cmake's configure,
#       build and install steps (tests/install's script runs them).
# Exit status: the program's, or 99 if memcheck found an error or a definite leak
# in it or in a program it ran (--children), or if valgrind saw a stack switch it
# was not told of (a fiber stack left unregistered: fiber/src/registry.cpp). The
# errors of a forked copy of the program do not count: in this suite a fork is a
# death test, whose child faults or aborts on purpose (tests/death.hpp). The logs
# of a failed run are printed on stderr; those of a run that passes are deleted.
set -u
here=$(cd "$(dirname "$0")" && pwd)
logs=$(mktemp -d "$here/logs/run.XXXXXX")
# --read-inline-info=no halves the start-up of a test program (each test starts
# one); frames of inlined functions then go unnamed in reports, but keep their
# file and line.
opts=(--tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
      --num-callers=30 --read-inline-info=no "--log-file=$logs/%p.log")
if [ "${1:-}" = --children ]; then
  shift
  opts+=(--trace-children=yes
    "--trace-children-skip=*/c++,*/cc,*/g++*,*/gcc*,*/cc1*,*/collect2,*/ld,*/ld.*,*/as,*/ninja,*/pkg-config,*/pkgconf,*/ccache"
    "--trace-children-skip-by-arg=--build,--install,-S")
fi
rc=0
valgrind "${opts[@]}" "$@" || rc=$?
# The program's own log is the one whose parent is this script; a fork's log
# names the same command as its parent's, a program it ran (--children) another.
top=$(grep -l "^==[0-9]*== Parent PID: $$\$" "$logs"/*.log 2>/dev/null | head -1)
command_of() { grep -m1 "^==[0-9]*== Command: " "$1" | sed 's/^==[0-9]*== //'; }
errors=0
if [ -z "$top" ]; then
  echo "memcheck: no valgrind log for the program" >&2
  errors=1
else
  for f in "$logs"/*.log; do
    [ "$f" = "$top" ] || [ "$(command_of "$f")" != "$(command_of "$top")" ] || continue
    if grep -q "ERROR SUMMARY: [1-9]" "$f"; then errors=1; fi
  done
fi
if grep -q "client switching stacks" "$logs"/*.log 2>/dev/null; then
  echo "memcheck: valgrind saw a stack switch it was not told of. If every one is a" \
    "switch to a fiber, build/native was compiled without valgrind/valgrind.h (a stale" \
    "ccache entry? rebuild it with CCACHE_RECACHE=1)." >&2
  errors=1
fi
[ "$errors" = 0 ] || rc=99
if [ "$rc" -ne 0 ]; then
  for f in "$logs"/*.log; do printf '%s\n' "--- $f" >&2; cat "$f" >&2; done
else
  rm -rf "$logs"
fi
exit "$rc"
EOF
  chmod +x "$1"
}

# valgrind_suite: every test of build/native, with the programs it runs under
# valgrind memcheck. build/valgrind holds a CTest file generated from build/native's
# (ctest --show-only=json-v1) in which each test runs through build/valgrind/memcheck:
# a test program directly; an example whose output is compared, as the comparison
# script's EMULATOR; the hook's servers and clients, as the emulator the hook test's
# driver takes after `--`; the install test with --children, so the consumers it
# builds run under memcheck too. The gdb test runs as it is: gdb drives its program
# itself (a program under valgrind is debugged through vgdb instead).
valgrind_suite() {
  local native=build/native out=build/valgrind
  log "valgrind memcheck over build/native's tests ($out)"
  rm -rf "$out"
  mkdir -p "$out/logs"
  write_memcheck_wrapper "$out/memcheck"
  (cd "$native" && ctest --show-only=json-v1) | python3 -c '
import json, sys
wrapper, native = sys.argv[1], sys.argv[2]
def arg(v):
    if isinstance(v, bool): v = "ON" if v else "OFF"
    if isinstance(v, list): v = ";".join(str(x) for x in v)
    v = str(v)
    assert "]==]" not in v, v
    return "[==[" + v + "]==]"
def is_elf(path):
    try:
        with open(path, "rb") as f: return f.read(4) == b"\x7fELF"
    except OSError: return False
# Tests that cannot pass under valgrind, with the reason.
skipped = {
    "fp env: rounding mode and denormal flags per fiber": "valgrind does not emulate MXCSR flush-to-zero "
        "and denormals-are-zero (\"Emulation warning: unsupported action: Setting %mxcsr.fz\"), so a fiber "
        "cannot be seen keeping them",
    "fp env: a new fiber starts with its creator": "the same: the state it checks includes MXCSR.FZ and DAZ",
}
print("# Generated by dev.sh valgrind from build/native: every test with its programs under valgrind memcheck.")
for t in json.load(sys.stdin)["tests"]:
    name, cmd = t["name"], list(t["command"])
    wrapped = True
    if cmd[0].startswith(native + "/") and is_elf(cmd[0]):
        cmd = [wrapper] + cmd
    elif any(c.startswith("-DEMULATOR=") for c in cmd):
        cmd = ["-DEMULATOR=" + wrapper if c.startswith("-DEMULATOR=") else c for c in cmd]
    elif cmd[-1] == "--" and any(c.endswith("run_hook_test.py") for c in cmd):
        cmd = cmd + [wrapper]
    elif any(c.endswith("check_install.cmake") for c in cmd):
        cmd = [wrapper, "--children"] + cmd
    elif any(c.endswith("run_gdb_test.py") for c in cmd):
        wrapped = False
    elif any(c.endswith("check_test_names.cmake") for c in cmd):
        wrapped = False  # reads the test sources; runs no program of ours
    else:
        sys.exit("dev.sh valgrind: no rule to run this test under valgrind: %s (%s)" % (name, " ".join(cmd)))
    if name.startswith("fiber_loop_copied_tests:"):
        continue  # (the loop suite on copied stacks runs natively and under the sanitizers: tests/CMakeLists.txt)
    print("add_test(%s %s)" % (arg(name), " ".join(arg(c) for c in cmd)))
    for p in t.get("properties", []):
        value = p["value"]
        if p["name"] == "TIMEOUT" and wrapped: value = value * 5
        print("set_tests_properties(%s PROPERTIES %s %s)" % (arg(name), p["name"], arg(value)))
    for pattern, reason in skipped.items():
        if pattern in name:
            print("# Skipped: %s." % reason)
            print("set_tests_properties(%s PROPERTIES DISABLED TRUE)" % arg(name))
' "$ROOT/$out/memcheck" "$ROOT/$native" >"$out/CTestTestfile.cmake"
  LAST_BUILD_SECONDS=
  run_ctest "$(uname -m) (valgrind memcheck)" "$out" 1500
}

cmd_sanitizers() {  # asan | tsan | valgrind
  ensure_packages "${BASE_PACKAGES[@]}" "${CHECK_PACKAGES[@]}"
  case $1 in
    asan) sanitized_suite asan "$(uname -m) (ASan+UBSan)" ;;
    tsan) sanitized_suite tsan "$(uname -m) (TSan)" ;;
    valgrind)
      log "building natively ($(uname -m))"
      configure_and_build build/native
      valgrind_suite ;;
  esac
  print_summary
}

print_summary() {
  log "summary"
  printf '%-28s %s\n' "target (runner, backend)" "tests"
  printf '%s\n' "${SUMMARY[@]}"
  echo "dev.sh: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
  [ "$TOTAL_FAILED" -eq 0 ]
}

cmd_test() {
  ensure_packages "${BASE_PACKAGES[@]}" "${CHECK_PACKAGES[@]}"
  log "building natively ($(uname -m))"
  configure_and_build build/native
  run_ctest "$(uname -m) (native, asm backend)" build/native
  log "building natively as a shared library"
  configure_and_build build/native-shared -DBUILD_SHARED_LIBS=ON
  run_ctest "$(uname -m) (native, asm, shared)" build/native-shared
  ensure_packages "${BACKEND_PACKAGES[@]}"
  local backend
  for backend in boost ucontext; do
    log "building natively with FIBER_BACKEND=$backend"
    configure_and_build "build/native-$backend" -DFIBER_BACKEND=$backend "${LINES_ONLY[@]}"
    run_ctest "$(uname -m) (native, $backend)" "build/native-$backend"
  done
  sanitized_suite asan "$(uname -m) (ASan+UBSan)"
  sanitized_suite tsan "$(uname -m) (TSan)"
  valgrind_suite
  cmd_cross
  print_summary
}

build_release() {
  ensure_packages "${BASE_PACKAGES[@]}" "${BENCH_PACKAGES[@]}"
  configure_and_build build/release -DCMAKE_BUILD_TYPE=Release -DFIBER_BUILD_BENCH=ON -DFIBER_BUILD_TESTS=OFF
}

cmd_demo() {
  build_release
  log "the seed's producer/consumer (examples/producer_consumer.cpp)"
  build/release/examples/producer_consumer
  log "stackful vs stackless, short (the whole comparison: ./dev.sh compare; Google Benchmark, this machine, now)"
  python3 bench/compare.py gcc=build/release --short --min-time 0.05
}

cmd_bench() {
  if [ "${1:-}" = --check ]; then
    build_release
    (ensure_packages golang-go) || log "golang-go not installed: the Go rows are skipped"
    log "acceptance rows (bench/report.py --check)"
    python3 bench/report.py build/release --check --json build/release/bench-check.json
    return
  fi
  [ $# -eq 0 ] || { echo "dev.sh bench: unknown argument: $1 (only --check)" >&2; exit 2; }
  build_release
  # The event loop's peers (bench/peers/): Go and matplotlib are optional; without
  # them (e.g. offline) the Go rows say "skipped" and no chart is drawn.
  (ensure_packages golang-go python3-matplotlib) || log "golang-go / python3-matplotlib not installed: their rows and the chart are skipped"
  python3 bench/report.py build/release --json build/release/bench.json --chart build/release/bench.png
  log "raw figures: build/release/bench.json, chart: build/release/bench.png"
  log "stackful vs stackless (bench/compare.py; with Clang too: ./dev.sh compare)"
  python3 bench/compare.py gcc=build/release --json build/release/compare.json --charts build/release
  log "the hooked blocking echo server: fibers on one thread against one thread per client (bench/hook_echo.py)"
  python3 bench/hook_echo.py build/release
}

cmd_compare() {
  build_release
  ensure_packages clang
  (ensure_packages python3-matplotlib) || log "python3-matplotlib not installed: no charts"
  log "building the comparison with Clang"
  configure_and_build build/compare-clang -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=Release -DFIBER_BUILD_BENCH=ON -DFIBER_BUILD_TESTS=OFF
  python3 bench/compare.py gcc=build/release clang=build/compare-clang \
    --json build/compare.json --charts build/compare-charts
  log "raw figures: build/compare.json, charts: build/compare-charts/*.png"
}

case "${1:-}" in
  demo) cmd_demo ;;
  test) cmd_test ;;
  asan|tsan|valgrind) cmd_sanitizers "$1" ;;
  bench) shift; cmd_bench "$@" ;;
  compare) cmd_compare ;;
  cross) shift; cmd_cross "$@"; print_summary ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
