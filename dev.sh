#!/usr/bin/env bash
# The developer's entry point. Each command installs the Debian packages it needs
# (once; idempotent), configures, builds and runs.
#
#   ./dev.sh demo    the seed's producer/consumer, then a short stackful-vs-stackless table
#   ./dev.sh test    every test: native (static and shared), then cross-built for AArch64 under qemu
#   ./dev.sh bench   every benchmark, one table with ratios to Boost.Context, then
#                    the stackful-vs-stackless comparison (GCC)
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
configure_and_build() {
  local dir=$1; shift
  mkdir -p "$(dirname "$dir")"
  cmake -S "$ROOT" -B "$dir" -G Ninja \
    -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache "$@" >"$dir.configure.log" 2>&1 \
    || { cat "$dir.configure.log"; return 1; }
  cmake --build "$dir"
}

TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY=()

# run_ctest LABEL BUILD_DIR: runs the suite, records passed/failed for the summary.
run_ctest() {
  local label=$1 dir=$2 out rc=0
  log "testing: $label"
  out=$(cd "$dir" && ctest -j2 --timeout 300 --output-on-failure 2>&1) || rc=$?
  printf '%s\n' "$out"
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
  SUMMARY+=("$(printf '%-28s %4d passed, %d failed' "$label" $((total - failed)) "$failed")")
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
    if configure_and_build "build/$name" -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/toolchains/$toolchain.cmake"; then
      run_ctest "$name ($runner, asm)" "build/$name"
    else
      SUMMARY+=("$(printf '%-28s BUILD FAILED' "$name ($runner, asm)")")
      TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
  done
}

print_summary() {
  log "summary"
  printf '%-28s %s\n' "target (runner, backend)" "tests"
  printf '%s\n' "${SUMMARY[@]}"
  echo "dev.sh: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
  [ "$TOTAL_FAILED" -eq 0 ]
}

cmd_test() {
  ensure_packages "${BASE_PACKAGES[@]}"
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
    configure_and_build "build/native-$backend" -DFIBER_BACKEND=$backend
    run_ctest "$(uname -m) (native, $backend)" "build/native-$backend"
  done
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
  bench) cmd_bench ;;
  compare) cmd_compare ;;
  cross) shift; cmd_cross "$@"; print_summary ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
