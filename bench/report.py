#!/usr/bin/env python3
"""Runs the fiber benchmarks and prints one table, with the acceptance checks.

    python3 bench/report.py BUILD_DIR [--min-time 0.2] [--filter REGEX] [--json OUT.json]
    python3 bench/report.py --load OUT.json          # print a saved run again
    python3 bench/report.py BUILD_DIR --check [--json OUT.json]   # the acceptance rows only

Runs BUILD_DIR's fiber_bench and fiber_bench_shared_fp (google benchmark, JSON
output, 3 repetitions randomly interleaved, median kept), bench/peers/seed_generator.py
(the send round trip once, the seed's whole program 3 times), then prints
for every benchmark its time per operation (real time: one operation is one round
trip, or one create + first switch + destroy) and its ratio to the peer of its
group, measured in the same binary and the same run:

    switch/...     to switch/boost_jump_fcontext (and fiber::context to boost::context::fiber)
    generator/...  to our own switch/fiber_context round trip
    create/...     to boost::context::fiber with the same kind of stack
    seed/...       the seed's program (new generator, start, 5 sends, close), to CPython's
    close/...      closing a suspended generator, to a plain C++ throw + catch

Then the event loop against its peers (bench/loop_bench.cpp, bench/peers/), each
group compared with one peer, measured in the same run:

    pingpong/, buffered/, spawn_join/   to Boost.Fiber (google benchmark, same binary:
                                        fiber_loop_bench); Go (GOMAXPROCS=1) and Python
                                        asyncio doing the same (bench/peers/loop_peer.*)
    skynet/    to Go: 1M leaves, each implementation in its own process, wall time
               and peak RSS (ru_maxrss from os.wait4)
    fanout_1e4/, fanout_1e5/, fanout_1e6/
               to Go (GOMAXPROCS=1): n tasks parked at once on one channel, then
               released and joined (stackful_vs_stackless --fanout=IMPL --n=N, the
               peers' `fanout N`), each in its own process: wall time and peak RSS;
               also Boost.Fiber, C++20 stackless coroutines and Python asyncio. The
               chart beside the main one (-fanout.png): time and bytes per task
    echo/      to the C epoll server (bench/peers/echo_epoll.c): messages/s of our
               examples/echo_server, Go's, asyncio's and C's, all loaded by
               bench/peers/echo_load.c (100 connections, 64 bytes), server and client
               pinned to different cores with taskset
    echo_work/ echo where every server hashes each message (bench/peers/echo_work.h,
               ECHO_WORK_PASSES: ~20 us per message) before echoing it: our
               bench/echo_work_server on 2 workers (the listener spread over them)
               to the same on 1 worker; also the C epoll server on 2 threads
               (SO_REUSEPORT) and Go with GOMAXPROCS=2, and, for reference, the C
               server on 1 thread. Same client; nothing pinned (the servers'
               threads and the client share the machine's cores)

Go programs are built with `go build` into BUILD_DIR/bench/go (GOPATH mode, caches
under the build tree, no network). A peer that is missing (no go, no echo_server)
makes its rows say why they were skipped. --chart draws our ratio to each peer
(matplotlib, Agg; run with the system python3 if this one has no matplotlib).

Acceptance rows (ACCEPTANCE below) end both the full report and --check. --check runs
only the benchmarks behind them, shortened (google benchmark: 9 repetitions of
0.05 s, randomly interleaved; the seed's Python program 3 times; skynet once each,
without Boost.Fiber's; echo 5 rounds of 1 s per server), prints each row with the
median and the spread (min-max) of its ratio or value, writes JSON (by default
BUILD_DIR/bench-check.json) and exits 1 if a row FAILs. A ratio of two figures
measured together (same binary: repetition by repetition; echo: round by round) is
the median of the per-repetition ratios; otherwise (Go's skynet, CPython's program)
our median over the peer's median (CPython: its best, as timeit keeps), the spread
then over every pair. A row whose benchmark is not in the binary, or whose peer is
missing (no go), says SKIP and why. Run it after every change to arch/, context.hpp,
the event loop, channels or generators.

Python 3 standard library only (matplotlib for --chart).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BINARIES = ('fiber_bench', 'fiber_bench_shared_fp')
PYTHON_PEER = os.path.join(HERE, 'peers', 'seed_generator.py')
PYTHON_ROW = 'generator/python_seed_generator_send'
PY_PROGRAM_ROW = 'seed/python_seed_program'  # seed_generator.py --program
PYTHON_ROWS = (PYTHON_ROW, PY_PROGRAM_ROW)
PY_PROGRAM_RUNS = 3  # runs of seed_generator.py --program (each the best of its own 5)
NS_PER_UNIT = {'ns': 1.0, 'us': 1e3, 'ms': 1e6, 's': 1e9}

# (benchmark, its peer in the same binary, further comparisons in the same binary)
SWITCH_PEER = 'switch/boost_jump_fcontext'
OWN_SWITCH = 'switch/fiber_context'
PEERS = {
    'switch/fiber_context': (SWITCH_PEER, ['switch/boost_fiber']),
    'switch/fiber_switch_context': (SWITCH_PEER, []),
    'switch/fiber_switch_context_ret': (SWITCH_PEER, ['switch/fiber_switch_context']),
    'switch/fiber_switch_context_sharedfp': (SWITCH_PEER, ['switch/fiber_switch_context']),
    'switch/boost_jump_fcontext': (None, []),
    'switch/boost_fiber': (SWITCH_PEER, []),
    'switch/ucontext_swapcontext': (SWITCH_PEER, []),
    'generator/fiber_generator': (OWN_SWITCH, ['generator/stackless_coroutine', PYTHON_ROW]),
    'generator/stackless_coroutine': (OWN_SWITCH, []),
    'generator/thread_condvar': (OWN_SWITCH, []),
    PYTHON_ROW: (OWN_SWITCH, []),
    'create/fiber_context_pooled_stack': ('create/boost_fiber_pooled_fixedsize_stack', []),
    'create/fiber_context_protected_stack': ('create/boost_fiber_protected_fixedsize_stack', []),
    'create/fiber_context_default_stack': ('create/boost_fiber_protected_fixedsize_stack',
                                           ['create/fiber_context_protected_stack']),
    'create/boost_fiber_pooled_fixedsize_stack': (None, []),
    'create/boost_fiber_protected_fixedsize_stack': (None, []),
    'seed/fiber_generator_default': (PY_PROGRAM_ROW, []),
    'seed/fiber_generator_quiet_close': (PY_PROGRAM_ROW, ['seed/fiber_generator_default']),
    PY_PROGRAM_ROW: (None, []),
    'close/fiber_generator_close': ('close/cxx_throw_catch', []),
    'close/cxx_throw_catch': (None, []),
}
GROUP_ORDER = ('switch', 'generator', 'create', 'seed', 'close')


def find_binary(build_dir, name):
    for candidate in (os.path.join(build_dir, 'bench', name), os.path.join(build_dir, name)):
        if os.access(candidate, os.X_OK):
            return candidate
    sys.exit(f'report.py: no {name} in {build_dir} or {build_dir}/bench '
             '(configure with -DFIBER_BUILD_BENCH=ON and build first)')


def filter_matches(regex, name):
    """google benchmark's --benchmark_filter: a regex searched in the name, '-' negates."""
    if not regex:
        return True
    if regex.startswith('-'):
        return not re.search(regex[1:], name)
    return re.search(regex, name) is not None


def base_name(name):
    """A benchmark's name without the suffixes google benchmark adds (/real_time, /min_time:...)."""
    return re.sub(r'(/(real_time|manual_time|process_time|min_time:[^/]*|iterations:\d+|repeats:\d+|threads:\d+))+$',
                  '', name)


def list_benchmarks(path, regex=None):
    cmd = [path, '--benchmark_list_tests=true']
    if regex:
        cmd.append(f'--benchmark_filter={regex}')
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return [base_name(n) for n in done.stdout.split()] if done.returncode == 0 else []


def exact(names):
    """A --benchmark_filter selecting exactly these benchmarks (whatever suffixes they carry)."""
    return '^(' + '|'.join(re.escape(n) for n in sorted(names)) + ')(/.*)?$'


_INTERLEAVING = {}


def random_interleaving(path):
    """Whether this google benchmark has --benchmark_enable_random_interleaving (1.6 and later)."""
    if path not in _INTERLEAVING:
        done = subprocess.run([path, '--help'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _INTERLEAVING[path] = 'benchmark_enable_random_interleaving' in done.stdout
    return _INTERLEAVING[path]


def run_binary(path, min_time, regex, repetitions=3):
    """google benchmark's JSON: every repetition, then the aggregates (median, cv, ...)
    of each benchmark. The repetitions of all the selected benchmarks are run in a random
    order where the library can, so that a burst of load on the machine is spread over
    every benchmark instead of falling on one."""
    cmd = [path, '--benchmark_format=json', f'--benchmark_min_time={min_time}',
           f'--benchmark_repetitions={repetitions}']
    interleaved = random_interleaving(path)
    if interleaved:
        cmd.append('--benchmark_enable_random_interleaving=true')
    if regex:
        cmd.append(f'--benchmark_filter={regex}')
    print('running:', ' '.join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f'report.py: {path} failed ({done.returncode}):\n{done.stderr}')
    if not done.stdout.strip():  # the filter matched nothing in this binary
        return {'context': {}, 'benchmarks': []}
    return dict(json.loads(done.stdout), random_interleaving=interleaved)


def run_python_peer(program=False, runs=1):
    """seed_generator.py's JSON (--program: the seed's whole program, `runs` times: its
    runs and, as ns_per_program, the best of them)."""
    cmd = [sys.executable, PYTHON_PEER] + (['--program'] if program else [])
    out = []
    for _ in range(runs):
        print('running:', ' '.join(cmd), file=sys.stderr, flush=True)
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        out.append(json.loads(done.stdout))
    if not program:
        return out[0]
    return dict(out[0], runs=[r['ns_per_program'] for r in out], ns_per_program=min(r['ns_per_program'] for r in out))


def repetitions_of(gbench_json):
    """({benchmark name: [real ns of each repetition, by repetition index]}, {name: error})
    (an old run saved with aggregates only gives its medians, one value each)."""
    reps, errors = {}, {}
    for b in gbench_json.get('benchmarks', []):
        if b.get('run_type', 'iteration') != 'iteration':
            continue
        name = base_name(b['run_name'])
        if b.get('error_occurred'):
            errors[name] = b.get('error_message') or 'error'
            continue
        reps.setdefault(name, []).append((b.get('repetition_index', 0),
                                          b['real_time'] * NS_PER_UNIT[b.get('time_unit', 'ns')]))
    out = {name: [v for _, v in sorted(values)] for name, values in reps.items()}
    for name, (real, _, _) in medians(gbench_json).items():
        out.setdefault(name, [real])
    return out, errors


def medians(gbench_json):
    """{benchmark name: (real ns, cpu ns, coefficient of variation of real time or None)}"""
    out, cv = {}, {}
    for b in gbench_json.get('benchmarks', []):
        name = base_name(b['run_name'])
        scale = NS_PER_UNIT[b.get('time_unit', 'ns')]
        if b.get('aggregate_name') == 'median':
            out[name] = (b['real_time'] * scale, b['cpu_time'] * scale)
        elif b.get('aggregate_name') == 'cv':
            cv[name] = b['real_time']  # a fraction, not a time
    return {name: (real, cpu, cv.get(name)) for name, (real, cpu) in out.items()}


def with_peers(regex):
    """The filter, widened to the peers the selected benchmarks are compared with, so
    that e.g. --filter generator still shows the ratios to switch/fiber_context."""
    if not regex or regex.startswith('-'):
        return regex
    peers = set()
    for name, (peer, extra) in PEERS.items():
        if filter_matches(regex, name):
            peers.update(p for p in [peer] + extra if p and p not in PYTHON_ROWS and not filter_matches(regex, p))
    if not peers:
        return regex
    return f'({regex})|{exact(peers)}'


def python_selected(regex, row):
    """Whether the filter selects a python row, or a benchmark compared with it."""
    return filter_matches(regex, row) or any(
        filter_matches(regex, name) for name, (peer, extra) in PEERS.items() if row == peer or row in extra)


def collect(args):
    results = {'mode': 'check' if args.check else 'full', 'min_time': args.min_time,
               'repetitions': args.repetitions, 'filter': args.filter, 'binaries': {}, 'available': {},
               'python': None, 'python_program': None}
    if args.check:  # only what the acceptance rows compare
        wanted = acceptance_figures()
        for name in BINARIES:
            path = find_binary(args.build_dir, name)
            results['available'][name] = list_benchmarks(path)
            names = [n for n in wanted.get(name, ()) if n in results['available'][name]]
            if names:
                results['binaries'][name] = run_binary(path, args.min_time, exact(names), args.repetitions)
        # CPython's program, if a benchmark compared with it is in the build.
        if any(peer and peer[:2] == (PY, PY_PROGRAM_ROW) and ours[1] in results['available'].get(ours[0], ())
               for _, ours, peer, _, _, _ in ACCEPTANCE):
            results['python_program'] = run_python_peer(program=True, runs=PY_PROGRAM_RUNS)
        results['loop'] = collect_loop(args, wanted.get(LOOP, set()))
        return results
    regex = with_peers(args.filter)
    for name in BINARIES:
        if args.filter and not any(filter_matches(args.filter, b) for b in PEERS):
            continue  # only the loop section is selected
        path = find_binary(args.build_dir, name)
        results['available'][name] = list_benchmarks(path)
        if args.filter and not list_benchmarks(path, args.filter):
            continue  # nothing selected here: do not run it just for the peers
        results['binaries'][name] = run_binary(path, args.min_time, regex, args.repetitions)
    if python_selected(args.filter, PYTHON_ROW):
        results['python'] = run_python_peer()
    if python_selected(args.filter, PY_PROGRAM_ROW):
        results['python_program'] = run_python_peer(program=True, runs=PY_PROGRAM_RUNS)
    results['loop'] = collect_loop(args)
    return results


def rows_of(results):
    """One row per measurement: (binary, benchmark, real ns, cpu ns or None, cv or None)."""
    rows = []
    for binary in BINARIES:
        for name, (real, cpu, cv) in medians(results['binaries'].get(binary, {})).items():
            rows.append((binary, name, real, cpu, cv))
    if results.get('python'):
        p = results['python']
        rows.append(('python ' + p.get('python', ''), PYTHON_ROW, p['ns_per_round_trip'], None, None))
    if results.get('python_program'):
        p = results['python_program']
        rows.append(('python ' + p.get('python', ''), PY_PROGRAM_ROW, p['ns_per_program'], None, None))
    group = {g: i for i, g in enumerate(GROUP_ORDER)}
    order = {name: i for i, name in enumerate(PEERS)}
    rows.sort(key=lambda r: (group.get(r[1].split('/')[0], 99), r[0].startswith('python'),
                             BINARIES.index(r[0]) if r[0] in BINARIES else 9, order.get(r[1], 99)))
    return rows


def time_in(results, binary, name):
    m = medians(results['binaries'].get(binary, {}))
    if name in m:
        return m[name][0]
    if name == PYTHON_ROW and results.get('python'):
        return results['python']['ns_per_round_trip']
    if name == PY_PROGRAM_ROW and results.get('python_program'):
        return results['python_program']['ns_per_program']
    return None


def fmt_ns(ns):
    return f'{ns:.0f}' if ns >= 1000 else f'{ns:.1f}' if ns >= 10 else f'{ns:.2f}'


def print_table(results):
    rows = rows_of(results)
    if not rows and results.get('loop'):
        return  # only the loop section was selected
    header = ['binary', 'benchmark', 'real ns/op', '±cv', 'cpu ns/op', 'ratio', 'to', 'also']
    lines = []
    for binary, name, real, cpu, cv in rows:
        # The python peer's figures are compared with fiber_bench's.
        home = binary if binary in BINARIES else 'fiber_bench'
        peer, extra = PEERS.get(name, (None, []))
        ratio, to = '', ''
        if peer is None:
            to = 'peer' if name in {p for p, _ in PEERS.values()} else ''
        else:
            peer_ns = time_in(results, home, peer)
            if peer_ns:
                ratio, to = f'{real / peer_ns:.2f}x', peer
            else:
                to = f'({peer} not run)'
        also = []
        for other in extra:
            other_ns = time_in(results, home, other)
            if other_ns:
                also.append(f'{real / other_ns:.2f}x {other.split("/", 1)[1]}')
        lines.append([binary, name, fmt_ns(real), f'{cv * 100:.0f}%' if cv is not None else '',
                      fmt_ns(cpu) if cpu is not None else '', ratio, to, ', '.join(also)])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)] if lines else [len(h) for h in header]
    right = {2, 3, 4, 5}

    def fmt(cells):
        return '  '.join((c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(fmt(header))
    print(fmt(['-' * w for w in widths]))
    group = None
    for line in lines:
        g = line[1].split('/')[0]
        if group is not None and g != group:
            print()
        group = g
        print(fmt(line))


def print_context(results):
    n = results.get('repetitions', 3)
    print(textwrap.fill(
        f'ns/op = median real (wall-clock) time of {n} repetitions (randomly interleaved), each of at least '
        f'--benchmark_min_time={results["min_time"]} s; one op = one round trip (two switches), one '
        f'send/yield round trip, one create + first switch + destroy, one run of the seed\'s program, or one '
        f'close. ratio = real ns/op divided by '
        f'the peer\'s, from the same binary and run (python\'s: by fiber_bench\'s). cpu ns/op is for reference (for thread_condvar it '
        f'counts the benchmark thread only); ±cv is the spread of the {n} repetitions.', width=110))
    if results.get('filter'):
        print(f'Filter: {results["filter"]} (and the peers of what it selects)')
    for binary in BINARIES:
        ctx = results['binaries'].get(binary, {}).get('context', {})
        if ctx:
            load = ctx.get('load_avg') or []
            print(f'{binary}: fiber_shares_fp_env={ctx.get("fiber_shares_fp_env", "?")}, '
                  f'{ctx.get("num_cpus", "?")} cpus at {ctx.get("mhz_per_cpu", "?")} MHz, '
                  f'load average {", ".join(f"{x:.2f}" for x in load) or "?"}, '
                  f'google benchmark library built as {ctx.get("library_build_type", "?")}')
    if results.get('python'):
        p = results['python']
        print(f'python peer: {p.get("python", "?")}, best of {p.get("repeat", "?")} runs of '
              f'{p.get("sends", "?")} sends (wall-clock)')
    if results.get('python_program'):
        p = results['python_program']
        print(f'python seed program: {p.get("python", "?")}, best of {len(p.get("runs", [0]))} processes, each '
              f'the best of {p.get("repeat", "?")} runs of {p.get("programs", "?")} programs (wall-clock)')
    print()


# ---- the event loop against its peers (fiber_loop_bench, bench/peers/) ----------------

LOOP_BINARY = 'fiber_loop_bench'
MT_BINARY = 'fiber_mt_bench'  # fiber::run on several workers, a process of its own (mt_bench.cpp)
SKYNET_RESULT = 499999500000
GO_SOURCES = {'loop_peer': 'loop_peer.go', 'echo_server': 'echo_server.go'}
PY_LOOP_PEER = os.path.join(HERE, 'peers', 'loop_peer.py')
# Boost.Fiber's skynet allocates all 1.1M stacks (16 KiB, malloc) before the leaves
# run: about 6 GB resident. Skipped when less than this is available.
BOOST_SKYNET_MIN_AVAILABLE_KB = 8 * 1024 * 1024

# group: (unit, higher is better, our row, the group's peer (ratio column), rows in order)
COPIED_LIVE_BYTES = (32, 256, 1024, 4096, 8192)  # copied_resume/: bytes of locals per fiber
LOOP_GROUPS = {
    'pingpong': ('ns', False, 'pingpong/fiber_channel', 'pingpong/boost_fibers_unbuffered_channel', [
        'pingpong/fiber_channel', 'pingpong/boost_fibers_unbuffered_channel',
        'pingpong/go_unbuffered_chan', 'pingpong/python_asyncio_queue']),
    'buffered': ('ns', False, 'buffered/fiber_channel_128', 'buffered/boost_fibers_buffered_channel_128', [
        'buffered/fiber_channel_128', 'buffered/boost_fibers_buffered_channel_128',
        'buffered/go_chan_128', 'buffered/python_asyncio_queue_128']),
    'spawn_join': ('ns', False, 'spawn_join/fiber_spawn_join', 'spawn_join/boost_fibers_fiber_join', [
        'spawn_join/fiber_spawn_join', 'spawn_join/boost_fibers_fiber_join',
        'spawn_join/boost_fibers_fiber_join_pooled_stack', 'spawn_join/go_goroutine_waitgroup',
        'spawn_join/python_asyncio_create_task', 'spawn_join/fiber_spawn_join_eager',
        'spawn_join/boost_fibers_fiber_join_dispatch']),
    'skynet': ('s', False, 'skynet/fiber', 'skynet/go', [
        'skynet/fiber', 'skynet/fiber_eager', 'skynet/boost_fibers', 'skynet/go', 'skynet/python_asyncio',
        'skynet/fiber_2workers', 'skynet/go_gomaxprocs2', 'skynet/boost_fibers_work_stealing_2threads']),
    # Fan-out (Light fibers): n tasks parked at once on one channel, released and
    # joined (stackful_vs_stackless --fanout=IMPL --n=N and the peers' `fanout N`),
    # each in its own process: wall time, peak RSS.
    # fiber_copied: the same tasks on copied stacks (stack_kind::copied); 10^7 of
    # them alone (Go would need ~27 GB).
    **{f'fanout_{k}': ('s', False, f'fanout_{k}/fiber', f'fanout_{k}/go', [
        f'fanout_{k}/fiber', f'fanout_{k}/go', f'fanout_{k}/fiber_copied', f'fanout_{k}/boost_fibers',
        f'fanout_{k}/stackless', f'fanout_{k}/python_asyncio']) for k in ('1e4', '1e5', '1e6')},
    'fanout_1e7': ('s', False, 'fanout_1e7/fiber_copied', 'fanout_1e6/go', ['fanout_1e7/fiber_copied']),
    # Copied stacks: a round trip of two resumes between two fibers that yield to
    # each other, each keeping B bytes of locals (fiber_loop_bench); and two
    # generators resumed in turn.
    'copied_resume': ('ns', False, 'copied_resume/fiber_copied_256', 'copied_resume/fiber_own_256', [
        f'copied_resume/{what}_{kind}_{b}' for what in ('fiber', 'generator') for kind in ('copied', 'own')
        for b in COPIED_LIVE_BYTES]),
    # Every core (fiber_mt_bench): two threads, on this machine's cores.
    'pingpong_mt': ('ns', False, 'pingpong_mt/fiber_2workers', 'pingpong_mt/boost_fibers_2threads', [
        'pingpong_mt/fiber_2workers', 'pingpong_mt/boost_fibers_2threads']),
    'fanout_cpu': ('ms', False, 'fanout_cpu/fiber_2workers', 'fanout_cpu/fiber_1worker', [
        'fanout_cpu/fiber_2workers', 'fanout_cpu/fiber_1worker']),
    'echo': ('msg/s', True, 'echo/fiber_echo_server', 'echo/c_epoll', [
        'echo/fiber_echo_server', 'echo/c_epoll', 'echo/go', 'echo/python_asyncio']),
    # Echo with ~20 us of hashing per message in every server: the server, not the
    # client, is the bottleneck, so 2 workers can show what a second core buys.
    # (c_epoll_1thread: no acceptance row, so only in the full report: what a second
    # thread buys the C server on the same machine, the client sharing its cores.)
    'echo_work': ('msg/s', True, 'echo_work/fiber_2workers', 'echo_work/fiber_1worker', [
        'echo_work/fiber_2workers', 'echo_work/fiber_1worker', 'echo_work/c_epoll_2threads',
        'echo_work/go_gomaxprocs2', 'echo_work/c_epoll_1thread']),
}
SVS_BINARY = 'stackful_vs_stackless'
FANOUT_N = {'1e4': 10 ** 4, '1e5': 10 ** 5, '1e6': 10 ** 6, '1e7': 10 ** 7}
# Boost.Fiber's fan-out holds n stacks of 128 KiB (malloc) with ~9 KB of each
# touched: skipped when less than this per task is available.
BOOST_FANOUT_KB_PER_TASK = 12
# The echo_work servers' work: passes of FNV-1a over each message (peers/echo_work.h),
# the same number for every server. Calibrated once on the project's 2-core machine
# (AMD EPYC, `echo_epoll --calibrate 250`, and echo_server.go's -calibrate: 19.7 us
# per 64-byte message in both) and then fixed: the rows compare servers doing
# identical work, whatever the machine.
ECHO_WORK_PASSES = 250
# The peers' micro figures (loop_peer micro) by row.
MICRO_KEYS = {'pingpong_ns': 'pingpong', 'buffered_ns': 'buffered', 'spawn_join_ns': 'spawn_join'}
GO_MICRO_ROWS = {'pingpong': 'pingpong/go_unbuffered_chan', 'buffered': 'buffered/go_chan_128',
                 'spawn_join': 'spawn_join/go_goroutine_waitgroup'}
PY_MICRO_ROWS = {'pingpong': 'pingpong/python_asyncio_queue', 'buffered': 'buffered/python_asyncio_queue_128',
                 'spawn_join': 'spawn_join/python_asyncio_create_task'}


def loop_group_selected(regex, group):
    return any(filter_matches(regex, name) for name in LOOP_GROUPS[group][4])


def optional_binary(build_dir, *relative):
    for rel in relative:
        candidate = os.path.join(build_dir, rel)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def build_go_peers(build_dir):
    """Builds bench/peers/*.go into BUILD_DIR/bench/go with `go build` (GOPATH mode: no
    modules, no network; caches under the build tree). Returns ({name: path}, None) or
    ({}, reason)."""
    import shutil
    go = shutil.which('go')
    if not go:
        return {}, 'go not installed'
    out_dir = os.path.join(os.path.abspath(build_dir), 'bench', 'go')
    env = dict(os.environ, GO111MODULE='off', GOFLAGS='', GOPROXY='off', GOTOOLCHAIN='local',
               GOTELEMETRY='off', CGO_ENABLED='0', GOCACHE=os.path.join(out_dir, 'cache'),
               GOPATH=os.path.join(out_dir, 'gopath'))
    built = {}
    for name, source in GO_SOURCES.items():
        target = os.path.join(out_dir, name)
        cmd = [go, 'build', '-o', target, os.path.join(HERE, 'peers', source)]
        log('running:', ' '.join(cmd))
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            return {}, f'go build {source} failed: {done.stdout.strip()[:300]}'
        built[name] = target
    return built, None


def go_env(procs=1):
    return dict(os.environ, GOMAXPROCS=str(procs))


def run_measured(cmd, env=None, timeout=900):
    """Runs cmd as its own process; returns (parsed JSON of its last stdout line, peak RSS
    in KB, error or None). Peak RSS is ru_maxrss of this child alone (os.wait4)."""
    import tempfile
    import time
    log('running:', ' '.join(cmd))
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        try:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        except OSError as e:
            return None, None, str(e)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                return None, None, f'timed out after {timeout} s'
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read()
    lines = [line for line in text.splitlines() if line.strip().startswith('{')]
    if not lines:
        return None, usage.ru_maxrss, f'exit {proc.returncode}, no JSON output: {errors.strip()[-300:]}'
    data = json.loads(lines[-1])
    if proc.returncode != 0:
        return data, usage.ru_maxrss, f'exit {proc.returncode}: {errors.strip()[-300:]}'
    return data, usage.ru_maxrss, None


def run_processes(runs, wanted, skipped, wrong, rows):
    """Runs each (row name, command, environment, why it is skipped or None) that is
    wanted, each in its own process (run_measured); a row is its wall seconds and peak
    RSS, unless it failed or wrong(its JSON) says what is wrong with its result.
    Returns {row name: its JSON} for the rows made."""
    made = {}
    for name, cmd, env, why in runs:
        if name not in wanted:
            continue
        if why:
            skipped[name] = why
            continue
        data, rss, err = run_measured(cmd, env)
        err = err or wrong(data)
        if err:
            skipped[name] = f'failed: {err}'
            continue
        rows[name] = {'value': data['seconds'], 'unit': 's', 'rss_kb': rss, 'by': name.split('/')[1],
                      'samples': [data['seconds']], 'rss_samples': [rss]}
        made[name] = data
    return made


def mem_available_kb():
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def pinning():
    """taskset prefixes (server, client): different cores when there are at least two."""
    import shutil
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else []
    if shutil.which('taskset') and len(cpus) >= 2:
        return ['taskset', '-c', str(cpus[0])], ['taskset', '-c', str(cpus[1])], f'server on cpu {cpus[0]}, client on cpu {cpus[1]}'
    return [], [], 'not pinned (no taskset or a single cpu)'


def run_echo(server_cmd, client, seconds, env=None, pinned=True):
    """Starts an echo server (given a free port as its argument), waits until it prints
    its port or accepts a connection, loads it with echo_load, stops it. `pinned`:
    the server on one core and the client on another (pinning()); else neither.
    Returns (echo_load's JSON, error or None)."""
    import signal
    import socket
    import tempfile
    import time
    pin_server, pin_client, _ = pinning() if pinned else ([], [], '')
    port = free_port()
    cmd = pin_server + server_cmd + [str(port)]
    log('running:', ' '.join(cmd))
    with tempfile.TemporaryFile('w+') as out:
        try:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            return None, str(e)
        try:
            deadline, ready = time.monotonic() + 15, False
            while time.monotonic() < deadline and not ready:
                if proc.poll() is not None:
                    out.seek(0)
                    return None, f'the server exited with {proc.returncode} before listening: {out.read().strip()[-300:]}'
                out.seek(0)
                first = out.readline()
                if first.endswith('\n'):
                    numbers = re.findall(r'\d+', first)
                    if str(port) not in numbers:
                        return None, f'the server was given port {port} and printed: {first.strip()[:200]}'
                    ready = True
                    break
                try:  # a server that buffers its stdout: ready once it accepts
                    with socket.create_connection(('127.0.0.1', port), timeout=0.2):
                        ready = True
                except OSError:
                    time.sleep(0.05)
            if not ready:
                return None, 'the server did not listen within 15 s'
            ccmd = pin_client + [client, str(port), '100', str(seconds), '64']
            log('running:', ' '.join(ccmd))
            done = subprocess.run(ccmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  timeout=seconds + 60)
            if done.returncode != 0 or not done.stdout.strip():
                return None, f'echo_load failed ({done.returncode}): {done.stderr.strip()[-300:]}'
            return json.loads(done.stdout.strip().splitlines()[-1]), None
        except subprocess.TimeoutExpired:
            return None, 'echo_load timed out'
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()


def collect_loop(args, wanted=None):
    """Every figure of the loop section: {'rows': {name: figure}, 'skipped': {name: why}, 'info': {...}}.
    Runs the rows of the groups the filter selects, or (--check) only the rows named in `wanted`.
    A figure's 'samples' are its values per repetition (google benchmark), round (echo) or
    run; 'paired_by' names what measured a row's samples together with its peer's."""
    loop = {'rows': {}, 'skipped': {}, 'info': {}}
    rows, skipped, info = loop['rows'], loop['skipped'], loop['info']
    if wanted is None:
        groups = [g for g in LOOP_GROUPS if loop_group_selected(args.filter, g)]
        wanted = {n for g in groups for n in LOOP_GROUPS[g][4]}
    else:
        groups = [g for g in LOOP_GROUPS if any(n in wanted for n in LOOP_GROUPS[g][4])]
    if not groups:
        return None
    build_dir = args.build_dir

    def skip(names, why):
        for n in names:
            skipped.setdefault(n, why)

    micro = [g for g in groups if g in ('pingpong', 'buffered', 'spawn_join', 'copied_resume')]
    bench = optional_binary(build_dir, os.path.join('bench', LOOP_BINARY), LOOP_BINARY)
    if micro:
        names = [n for g in micro for n in LOOP_GROUPS[g][4]
                 if n in wanted and not ('/go_' in n or '/python_' in n)]
        if bench:
            available = list_benchmarks(bench)
            skip([n for n in names if n not in available], 'not in this build')
            names = [n for n in names if n in available]
        if bench and names:
            data = run_binary(bench, args.min_time, exact(names), args.repetitions)
            info['gbench_context'] = data.get('context', {})
            samples, errors = repetitions_of(data)
            for name, error in errors.items():
                skipped.setdefault(name, f'failed: {error}')
            for name, (real, cpu, cv) in medians(data).items():
                rows[name] = {'value': real, 'unit': 'ns', 'cpu': cpu, 'cv': cv, 'by': LOOP_BINARY,
                              'samples': samples.get(name, [real]), 'paired_by': LOOP_BINARY}
        elif not bench:
            skip(names, f'{LOOP_BINARY} not built')

    # The benchmarks of several workers, in their own process.
    mt = [g for g in groups if g in ('pingpong_mt', 'fanout_cpu')]
    if mt:
        names = [n for g in mt for n in LOOP_GROUPS[g][4] if n in wanted]
        mt_bench = optional_binary(build_dir, os.path.join('bench', MT_BINARY), MT_BINARY)
        if mt_bench:
            available = list_benchmarks(mt_bench)
            skip([n for n in names if n not in available], 'not in this build')
            names = [n for n in names if n in available]
            if names:
                data = run_binary(mt_bench, args.min_time, exact(names), args.repetitions)
                samples, errors = repetitions_of(data)
                for name, error in errors.items():
                    skipped.setdefault(name, f'failed: {error}')
                for name, (real, cpu, cv) in medians(data).items():
                    if name in errors:
                        continue
                    unit = LOOP_GROUPS[name.split('/')[0]][0]
                    scale = 1e-6 if unit == 'ms' else 1.0
                    rows[name] = {'value': real * scale, 'unit': unit, 'cpu': cpu, 'cv': cv, 'by': MT_BINARY,
                                  'samples': [v * scale for v in samples.get(name, [real])], 'paired_by': MT_BINARY}
        else:
            skip(names, f'{MT_BINARY} not built')

    go_bins, go_why = ({}, None)
    go_rows = set(GO_MICRO_ROWS.values()) | {'skynet/go', 'skynet/go_gomaxprocs2', 'echo/go',
                                             'echo_work/go_gomaxprocs2'} | {f'fanout_{k}/go' for k in FANOUT_N}
    if wanted & go_rows:
        go_bins, go_why = build_go_peers(build_dir)

    # Go and asyncio micro benchmarks.
    if micro:
        for label, cmd, env, row_of, why in (
                ('go', [go_bins.get('loop_peer', ''), 'micro', str(args.min_time)], go_env(), GO_MICRO_ROWS, go_why),
                ('python', [sys.executable, PY_LOOP_PEER, 'micro', str(args.min_time)], None, PY_MICRO_ROWS, None)):
            wanted_here = [row_of[g] for g in micro if g in row_of and row_of[g] in wanted]
            if not wanted_here:
                continue
            if why:
                skip(wanted_here, f'skipped: {why}')
                continue
            data, _, err = run_measured(cmd, env)
            if err:
                skip(wanted_here, f'failed: {err}')
                continue
            info[label + '_micro'] = {k: v for k, v in data.items() if not k.endswith('_ns')}
            for key, group in MICRO_KEYS.items():
                if group in micro and key in data:
                    rows[row_of[group]] = {'value': data[key], 'unit': 'ns', 'by': label, 'samples': [data[key]]}

    if 'skynet' in groups:
        avail = mem_available_kb()
        mt_bin = optional_binary(build_dir, os.path.join('bench', MT_BINARY), MT_BINARY)
        runs = [('skynet/fiber', [bench, '--skynet=fiber'] if bench else None, None,
                 None if bench else f'{LOOP_BINARY} not built'),
                ('skynet/fiber_eager', [bench, '--skynet=fiber_eager'] if bench else None, None,
                 None if bench else f'{LOOP_BINARY} not built'),
                ('skynet/boost_fibers', [bench, '--skynet=boost'] if bench else None, None,
                 f'{LOOP_BINARY} not built' if not bench else
                 'skipped: --no-boost-skynet' if args.no_boost_skynet else
                 f'skipped: needs ~6 GB of memory, {avail // 1024} MB available'
                 if avail is not None and avail < BOOST_SKYNET_MIN_AVAILABLE_KB else None),
                ('skynet/go', [go_bins.get('loop_peer', ''), 'skynet'], go_env(), f'skipped: {go_why}' if go_why else None),
                ('skynet/fiber_2workers', [mt_bin, '--skynet=fiber_2workers'] if mt_bin else None, None,
                 None if mt_bin else f'{MT_BINARY} not built'),
                ('skynet/go_gomaxprocs2', [go_bins.get('loop_peer', ''), 'skynet'], go_env(2),
                 f'skipped: {go_why}' if go_why else None),
                # Boost.Fiber's work_stealing on 2 threads, reported beside the 2-worker row
                ('skynet/boost_fibers_work_stealing_2threads',
                 [mt_bin, '--skynet=boost_work_stealing_2threads'] if mt_bin else None, None,
                 f'{MT_BINARY} not built' if not mt_bin else
                 'skipped: --no-boost-skynet' if args.no_boost_skynet else
                 f'skipped: needs ~6 GB of memory, {avail // 1024} MB available'
                 if avail is not None and avail < BOOST_SKYNET_MIN_AVAILABLE_KB else None),
                ('skynet/python_asyncio', [sys.executable, PY_LOOP_PEER, 'skynet'], None, None)]
        wrong = (lambda data: None if data.get('result') == SKYNET_RESULT else
                 f'result {data.get("result")}, not {SKYNET_RESULT}')
        for name, data in run_processes(runs, wanted, skipped, wrong, rows).items():
            for key in ('peak_alive', 'peak_stacks'):
                if key in data and name.startswith('skynet/fiber'):  # counted by fiber's loop only
                    rows[name][key] = data[key]

    fanout_groups = [g for g in groups if g.startswith('fanout_') and g[len('fanout_'):] in FANOUT_N]
    if fanout_groups:
        svs = optional_binary(build_dir, os.path.join('bench', SVS_BINARY), SVS_BINARY)
        avail = mem_available_kb()
        for group in fanout_groups:
            n = FANOUT_N[group[len('fanout_'):]]
            no_svs = None if svs else f'{SVS_BINARY} not built'
            boost_why = no_svs or (f'skipped: needs ~{n * BOOST_FANOUT_KB_PER_TASK // 1024} MB of memory, '
                                   f'{avail // 1024} MB available'
                                   if avail is not None and avail < n * BOOST_FANOUT_KB_PER_TASK else None)
            runs = [(f'{group}/fiber', [svs, '--fanout=fiber', f'--n={n}'], None, no_svs),
                    (f'{group}/fiber_copied', [svs, '--fanout=fiber_copied', f'--n={n}'], None, no_svs),
                    (f'{group}/go', [go_bins.get('loop_peer', ''), 'fanout', str(n)], go_env(),
                     f'skipped: {go_why}' if go_why else None),
                    (f'{group}/boost_fibers', [svs, '--fanout=boost_fiber', f'--n={n}'], None, boost_why),
                    (f'{group}/stackless', [svs, '--fanout=stackless', f'--n={n}'], None, no_svs),
                    (f'{group}/python_asyncio', [sys.executable, PY_LOOP_PEER, 'fanout', str(n)], None, None)]
            want_sum = n * (n - 1) // 2
            wrong = (lambda data, n=n, want_sum=want_sum:
                     None if data.get('sum', want_sum) == want_sum and data.get('peak_waiting') == n else
                     f'sum {data.get("sum")}, {data.get("peak_waiting")} parked at once (expected {want_sum}, {n})')
            for name in run_processes(runs, wanted, skipped, wrong, rows):
                rows[name]['n'] = n

    if 'echo' in groups or 'echo_work' in groups:
        client = optional_binary(build_dir, os.path.join('bench', 'echo_load'), 'echo_load')
        c_server = optional_binary(build_dir, os.path.join('bench', 'echo_epoll'), 'echo_epoll')
        ours = optional_binary(build_dir, os.path.join('examples', 'echo_server'), 'echo_server')
        ours_work = optional_binary(build_dir, os.path.join('bench', 'fiber_echo_work_server'),
                                    'fiber_echo_work_server')
        go_server = go_bins.get('echo_server', '')
        go_skip = f'skipped: {go_why}' if go_why else None
        work = ['--work', str(ECHO_WORK_PASSES)]
        # (name, command, environment, why it is skipped, pinned): the plain echo
        # rows pin the server and the client to a core each; the rows with work pin
        # nothing (a server on 2 threads needs both cores, which the client shares).
        servers = [('echo/fiber_echo_server', [ours] if ours else None, None,
                    None if ours else 'examples/echo_server not built', True),
                   ('echo/c_epoll', [c_server] if c_server else None, None,
                    None if c_server else 'bench/echo_epoll not built', True),
                   ('echo/go', [go_server], go_env(), go_skip, True),
                   ('echo/python_asyncio', [sys.executable, PY_LOOP_PEER, 'echo_server'], None, None, True),
                   ('echo_work/fiber_2workers', [ours_work, '--threads', '2'] + work if ours_work else None, None,
                    None if ours_work else 'bench/fiber_echo_work_server not built', False),
                   ('echo_work/fiber_1worker', [ours_work, '--threads', '1'] + work if ours_work else None, None,
                    None if ours_work else 'bench/fiber_echo_work_server not built', False),
                   ('echo_work/c_epoll_2threads', [c_server, '--threads', '2'] + work if c_server else None, None,
                    None if c_server else 'bench/echo_epoll not built', False),
                   ('echo_work/go_gomaxprocs2', [go_server, '-work', str(ECHO_WORK_PASSES)], go_env(2), go_skip,
                    False),
                   ('echo_work/c_epoll_1thread', [c_server, '--threads', '1'] + work if c_server else None, None,
                    None if c_server else 'bench/echo_epoll not built', False)]
        servers = [s for s in servers if s[0] in wanted]
        if 'echo' in groups:
            info['echo'] = {'connections': 100, 'message_bytes': 64, 'seconds': args.echo_seconds,
                            'rounds': args.echo_rounds, 'pinning': pinning()[2]}
        if 'echo_work' in groups:
            info['echo_work'] = {'connections': 100, 'message_bytes': 64, 'seconds': args.echo_seconds,
                                 'rounds': args.echo_rounds, 'pinning': 'not pinned',
                                 'work_passes': ECHO_WORK_PASSES}
            if c_server:  # the work's time per message on this machine, now
                done = subprocess.run([c_server, '--calibrate', str(ECHO_WORK_PASSES)], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
                if done.returncode == 0 and done.stdout.strip():
                    info['echo_work']['work_us'] = json.loads(done.stdout.strip().splitlines()[-1])[
                        'us_per_64_byte_message']
        # Rounds interleave the servers, so that a burst of load on the machine falls on
        # all of them; each server keeps its best round.
        for round_ in range(args.echo_rounds):
            for name, cmd, env, why, pinned in servers:
                if not client:
                    skipped[name] = 'bench/echo_load not built'
                    continue
                if why:
                    skipped[name] = why
                    continue
                if name in skipped:
                    continue  # failed in an earlier round
                data, err = run_echo(cmd, client, args.echo_seconds, env, pinned)
                if err:
                    skipped[name] = f'failed: {err}'
                    rows.pop(name, None)
                    continue
                row = rows.setdefault(name, {'value': 0.0, 'unit': 'msg/s', 'rounds': [], 'by': name.split('/')[1],
                                             'paired_by': 'echo round'})
                row['rounds'].append(data['messages_per_second'])
                row['value'] = max(row['rounds'])
    return loop


def loop_value(results, name):
    loop = results.get('loop') or {}
    row = loop.get('rows', {}).get(name)
    return row['value'] if row else None


def loop_rss(results, name):
    loop = results.get('loop') or {}
    row = loop.get('rows', {}).get(name)
    return row.get('rss_kb') if row else None


def fmt_ratio(r):
    return f'{r:.2f}x' if r >= 0.1 else f'{r:.2g}x'


def short(name):
    return name.split('/', 1)[1]


def fmt_value(value, unit):
    if unit == 'ns':
        return fmt_ns(value) + ' ns'
    if unit == 'ms':
        return f'{value:.1f} ms'
    if unit == 's':
        return f'{value:.2f} s'
    return f'{value:,.0f} msg/s'


def print_loop_table(results):
    loop = results.get('loop')
    if not loop:
        return
    print()
    print(textwrap.fill(
        'Event loop against its peers. ns = per op (pingpong: one round trip over two unbuffered channels; '
        'buffered: one message through a 128-slot channel; spawn_join: start a fiber that does nothing and wait '
        f'for it), median of {results.get("repetitions", 3)} (Boost.Fiber and fiber: google benchmark in one binary; Go with GOMAXPROCS=1 and '
        'Python asyncio: bench/peers/loop_peer.*). skynet: 1M leaves (1,111,111 fibers), one run, wall time and '
        'peak RSS of its own process. echo: one server thread, 100 connections each sending 64 bytes and waiting '
        'for the echo, all loaded by bench/peers/echo_load.c. echo_work: the same, each server hashing every '
        'message (bench/peers/echo_work.h) before echoing it, on 2 threads (fiber: 2 workers, the listener '
        'spread over them) and on 1. ratio = this row / the group\'s peer (for msg/s, '
        'higher is better); "also" = our row / each other peer.', width=110))
    if loop['info'].get('echo'):
        e = loop['info']['echo']
        print(f'echo: best of {e.get("rounds", 1)} rounds (the servers in turn) of {e["seconds"]} s per server '
              f'after a 0.5 s warm-up, {e["pinning"]}')
    if loop['info'].get('echo_work'):
        e = loop['info']['echo_work']
        us = f', {e["work_us"]:.1f} us per message here' if e.get('work_us') else ''
        print(f'echo_work: {e.get("work_passes")} passes of FNV-1a over each 64-byte message{us}; best of '
              f'{e.get("rounds", 1)} rounds (all echo servers in turn) of {e["seconds"]} s per server, {e["pinning"]}')
    for key in ('go_micro', 'python_micro'):
        if loop['info'].get(key):
            print(f'{key.split("_")[0]}: ' + ', '.join(f'{k}={v}' for k, v in loop['info'][key].items()))
    header = ['group', 'implementation', 'value', '±cv', 'peak RSS', 'ratio', 'to', 'also']
    lines = []
    for group, (unit, higher, ours, peer, names) in LOOP_GROUPS.items():
        shown = [n for n in names if n in loop['rows'] or n in loop['skipped']]
        if not shown:
            continue
        if lines:
            lines.append(None)
        peer_value = loop_value(results, peer)
        for name in shown:
            row = loop['rows'].get(name)
            if not row:
                lines.append(('skipped', group, short(name), loop['skipped'][name]))
                continue
            ratio = to = ''
            if name == peer:
                to = 'peer'
            elif peer_value:
                ratio, to = fmt_ratio(row["value"] / peer_value), short(peer)
            else:
                to = f'({short(peer)} not run)'
            also = []
            if name == ours:
                for other in names:
                    if other not in (ours, peer) and loop_value(results, other):
                        also.append(f'{fmt_ratio(row["value"] / loop_value(results, other))} {short(other)}')
                rss, peer_rss = row.get('rss_kb'), loop_rss(results, peer)
                if rss and peer_rss:
                    also.insert(0, f'RSS {fmt_ratio(rss / peer_rss)} {short(peer)}')
            if 'peak_alive' in row:
                also.append(f'peak {row["peak_alive"]:,} fibers alive, {row.get("peak_stacks", 0):,} stacks')
            cv = row.get('cv')
            lines.append([group, short(name), fmt_value(row['value'], row['unit']),
                          f'{cv * 100:.0f}%' if cv is not None else '',
                          f'{row["rss_kb"] / 1024:.0f} MB' if row.get('rss_kb') else '', ratio, to, ', '.join(also)])
    real = [l for l in lines if isinstance(l, list)] or [[g, short(n), '', '', '', '', '', '']
                                                         for g, (_, _, _, _, ns) in LOOP_GROUPS.items() for n in ns]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *real)]
    right = {2, 3, 4, 5}

    def fmt(cells):
        return '  '.join((c.rjust(w) if i in right else c.ljust(w)) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(fmt(header))
    print(fmt(['-' * w for w in widths]))
    for line in lines:
        if line is None:
            print()
        elif isinstance(line, tuple):  # skipped: the reason, unpadded
            print(f'{line[1].ljust(widths[0])}  {line[2].ljust(widths[1])}  {line[3]}')
        else:
            print(fmt(line))


def chart_ratios(results):
    """(label, our ratio, target or None, higher is better) for every comparison of the loop section."""
    loop = results.get('loop') or {}
    out = []
    targets = {(ours[1], peer[1]): limit for _, ours, peer, _, limit, _ in ACCEPTANCE
               if peer and ours[0] == LOOP and len(ours) == 2}
    for group, (unit, higher, ours, peer, names) in LOOP_GROUPS.items():
        mine = loop_value(results, ours)
        if not mine:
            continue
        for other in names:
            if other == ours or not loop_value(results, other):
                continue
            out.append((f'{group} vs {short(other)}', mine / loop_value(results, other),
                        targets.get((ours, other)), higher))
        if group == 'skynet' and loop_rss(results, ours) and loop_rss(results, 'skynet/go'):
            out.append(('skynet peak RSS vs go', loop_rss(results, ours) / loop_rss(results, 'skynet/go'), 1.0, False))
    return out


def draw_chart(results, path):
    """Our ratio to each peer, one bar each (log scale), with the target where there is one."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    items = chart_ratios(results)
    if not items:
        print(f'report.py: nothing to chart (no loop figures): {path} not written', file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(items) + 1.6))
    ys = list(range(len(items)))[::-1]
    for y, (label, value, target, higher) in zip(ys, items):
        if target is None:
            color = '#8c8c8c'
        else:
            color = '#2ca02c' if (value >= target if higher else value <= target) else '#d62728'
        ax.barh(y, value, color=color, height=0.6)
        ax.text(value * 1.05, y, f'{value:.3g}x', va='center', fontsize=8)
        if target is not None:
            ax.plot([target, target], [y - 0.4, y + 0.4], color='black', linewidth=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([f'{label} ({"msg/s, higher" if higher else "lower"} is better)'
                        for label, _, _, higher in items], fontsize=8)
    ax.set_xscale('log')
    ax.axvline(1.0, color='#555555', linewidth=0.8, linestyle=':')
    ax.set_xlabel('ours / peer, same run (log scale)')
    ax.set_title('fiber event loop against its peers\n'
                 'black tick: acceptance target; green: met, red: missed, grey: no target', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f'chart: {path}', file=sys.stderr)
    draw_fanout_chart(results, os.path.splitext(path)[0] + '-fanout' + os.path.splitext(path)[1])
    draw_copied_chart(results, os.path.splitext(path)[0] + '-copied' + os.path.splitext(path)[1])


def draw_copied_chart(results, path):
    """Copied stacks: ns per resume against the bytes of locals each fiber keeps."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = (results.get('loop') or {}).get('rows', {})
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for what, label in (('fiber', 'loop fibers'), ('generator', 'generators')):
        for kind in ('copied', 'own'):
            points = [(b, rows[f'copied_resume/{what}_{kind}_{b}']['value'] / 2) for b in COPIED_LIVE_BYTES
                      if f'copied_resume/{what}_{kind}_{b}' in rows]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker='o', label=f'{label}, {kind} stacks')
                drawn = True
    if not drawn:
        plt.close(fig)
        return
    ax.set_xscale('log', base=2)
    ax.set_xlabel("bytes of locals each keeps across the yield (plus its own frames)")
    ax.set_ylabel('ns per resume')
    ax.grid(True, which='both', linewidth=0.3)
    ax.legend(fontsize=8)
    save_chart(fig, path, 'resume cost against live stack (same run)')


def save_chart(fig, path, title):
    """Titles, lays out, writes and closes a chart of its own (the fan-out's, copied stacks')."""
    import matplotlib.pyplot as plt
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f'chart: {path}', file=sys.stderr)


def draw_fanout_chart(results, path):
    """Fan-out: time and peak RSS per task against n, one line per implementation."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = (results.get('loop') or {}).get('rows', {})
    impls = {}
    for k, n in FANOUT_N.items():
        for name in LOOP_GROUPS[f'fanout_{k}'][4]:
            row = rows.get(name)
            if row and row.get('rss_kb'):
                impls.setdefault(name.split('/')[1], []).append((n, row['value'] / n * 1e9, row['rss_kb'] * 1024 / n))
    if not impls:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for impl, points in impls.items():
        ns = [p[0] for p in points]
        left.plot(ns, [p[1] for p in points], marker='o', label=impl)
        right.plot(ns, [p[2] for p in points], marker='o', label=impl)
    for ax, what in ((left, 'ns per task (wall time / n)'), (right, 'bytes of peak RSS per task')):
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('n tasks parked at once')
        ax.set_ylabel(what)
        ax.grid(True, which='both', linewidth=0.3)
    left.legend(fontsize=8)
    save_chart(fig, path, 'fan-out: n tasks park on one channel, then are released and joined (same run)')


def chart(results, path, json_path):
    """Draws with matplotlib here, or with the system python3 (Debian's python3-matplotlib)
    when this interpreter has no matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        for other in ('/usr/bin/python3',):
            if os.path.realpath(other) != os.path.realpath(sys.executable) and os.access(other, os.X_OK) and \
                    subprocess.run([other, '-c', 'import matplotlib'], stderr=subprocess.DEVNULL).returncode == 0:
                if not json_path:
                    print('report.py: --chart needs --json when matplotlib comes from another python', file=sys.stderr)
                    return
                subprocess.run([other, os.path.abspath(__file__), '--load', json_path, '--chart', path, '--chart-only'],
                               check=False)
                return
        print(f'report.py: no matplotlib (install python3-matplotlib): {path} not drawn', file=sys.stderr)
        return
    draw_chart(results, path)


# ---- the acceptance rows ----------------------------------------------------------

FB, SFP, LOOP, PY = 'fiber_bench', 'fiber_bench_shared_fp', 'loop', 'python'
P, B, S = 'pingpong/', 'buffered/', 'spawn_join/'
# (description, our figure, the peer's figure or None for an absolute limit, '<=' or '>=',
# limit, unit). A figure is (source, benchmark[, 'rss']): source is a google benchmark
# binary above, LOOP (the loop section: fiber_loop_bench's rows and the peers' processes)
# or PY (seed_generator.py). The full report and --check print these same rows.
ACCEPTANCE = [
    ('default switch round trip (fiber_bench switch/fiber_context) <= 0.9x boost_jump_fcontext',
     (FB, OWN_SWITCH), (FB, SWITCH_PEER), '<=', 0.9, 'x'),
    ('shared-FP switch round trip (fiber_bench_shared_fp switch/fiber_context) <= 0.3x boost_jump_fcontext',
     (SFP, OWN_SWITCH), (SFP, SWITCH_PEER), '<=', 0.3, 'x'),
    ('generator send/yield round trip (generator/fiber_generator) <= 1.1x our switch/fiber_context',
     (FB, 'generator/fiber_generator'), (FB, OWN_SWITCH), '<=', 1.1, 'x'),
    ('create + first switch + destroy, pooled stack (create/fiber_context_pooled_stack) <= 100 ns',
     (FB, 'create/fiber_context_pooled_stack'), None, '<=', 100.0, ' ns'),
    ('create + first switch + destroy, default constructor (create/fiber_context_default_stack) <= 100 ns',
     (FB, 'create/fiber_context_default_stack'), None, '<=', 100.0, ' ns'),
    ("the seed's program: new generator, start, 5 sends, close (seed/fiber_generator_default) "
     "<= 1.5x CPython's (seed_generator.py --program)",
     (FB, 'seed/fiber_generator_default'), (PY, PY_PROGRAM_ROW), '<=', 1.5, 'x'),
    ("the seed's program with an exception-free close (seed/fiber_generator_quiet_close) "
     "<= 0.25x CPython's (seed_generator.py --program)",
     (FB, 'seed/fiber_generator_quiet_close'), (PY, PY_PROGRAM_ROW), '<=', 0.25, 'x'),
    ('close of a suspended generator (close/fiber_generator_close) <= 0.5x a C++ throw + catch '
     'through the same frames (close/cxx_throw_catch)',
     (FB, 'close/fiber_generator_close'), (FB, 'close/cxx_throw_catch'), '<=', 0.5, 'x'),
    ('unbuffered ping-pong round trip (pingpong/fiber_channel) <= 0.12x Boost.Fiber unbuffered_channel',
     (LOOP, P + 'fiber_channel'), (LOOP, P + 'boost_fibers_unbuffered_channel'), '<=', 0.12, 'x'),
    ('buffered channel, per message (buffered/fiber_channel_128) <= 0.5x Boost.Fiber buffered_channel',
     (LOOP, B + 'fiber_channel_128'), (LOOP, B + 'boost_fibers_buffered_channel_128'), '<=', 0.5, 'x'),
    ('spawn + join (spawn_join/fiber_spawn_join) <= 0.2x Boost.Fiber fiber + join',
     (LOOP, S + 'fiber_spawn_join'), (LOOP, S + 'boost_fibers_fiber_join'), '<=', 0.2, 'x'),
    ('spawn + join, eager (spawn_join/fiber_spawn_join_eager) <= 0.25x Boost.Fiber launch::dispatch + join',
     (LOOP, S + 'fiber_spawn_join_eager'), (LOOP, S + 'boost_fibers_fiber_join_dispatch'), '<=', 0.25, 'x'),
    ('skynet 1M wall time (skynet/fiber) <= 0.5x Go (GOMAXPROCS=1)',
     (LOOP, 'skynet/fiber'), (LOOP, 'skynet/go'), '<=', 0.5, 'x'),
    ("skynet 1M peak RSS (skynet/fiber) <= 1.0x Go's",
     (LOOP, 'skynet/fiber', 'rss'), (LOOP, 'skynet/go', 'rss'), '<=', 1.0, 'x'),
    ('skynet 1M wall time, eager spawn (skynet/fiber_eager) <= 0.5x Go (GOMAXPROCS=1)',
     (LOOP, 'skynet/fiber_eager'), (LOOP, 'skynet/go'), '<=', 0.5, 'x'),
    ("skynet 1M peak RSS, eager spawn (skynet/fiber_eager) <= 1.0x Go's",
     (LOOP, 'skynet/fiber_eager', 'rss'), (LOOP, 'skynet/go', 'rss'), '<=', 1.0, 'x'),
    # Light fibers: 10^6 tasks parked at once (fan-out), default stacks.
    ('fan-out 10^6, default stacks, wall time (fanout_1e6/fiber) <= 0.5x Go (GOMAXPROCS=1)',
     (LOOP, 'fanout_1e6/fiber'), (LOOP, 'fanout_1e6/go'), '<=', 0.5, 'x'),
    ("fan-out 10^6, default stacks, peak RSS (fanout_1e6/fiber) <= 1.0x Go's",
     (LOOP, 'fanout_1e6/fiber', 'rss'), (LOOP, 'fanout_1e6/go', 'rss'), '<=', 1.0, 'x'),
    # ... and on copied stacks (stack_kind::copied); 10^7 of them on this 24 GB machine.
    ('fan-out 10^6, copied stacks, wall time (fanout_1e6/fiber_copied) <= 0.5x Go (GOMAXPROCS=1)',
     (LOOP, 'fanout_1e6/fiber_copied'), (LOOP, 'fanout_1e6/go'), '<=', 0.5, 'x'),
    ("fan-out 10^6, copied stacks, peak RSS (fanout_1e6/fiber_copied) <= 0.25x Go's",
     (LOOP, 'fanout_1e6/fiber_copied', 'rss'), (LOOP, 'fanout_1e6/go', 'rss'), '<=', 0.25, 'x'),
    ('copied-stack resume with 256 B of locals: a round trip of two resumes (copied_resume/fiber_copied_256; '
     "the loop's own frames add about 1 KiB copied) <= 80 ns (40 ns a resume)",
     (LOOP, 'copied_resume/fiber_copied_256'), None, '<=', 80.0, 'ns'),
    ('copied-stack generators resumed in turn with 256 B of locals: two resumes, each copying '
     '(copied_resume/generator_copied_256) <= 80 ns (40 ns a resume)',
     (LOOP, 'copied_resume/generator_copied_256'), None, '<=', 80.0, 'ns'),
    ('fan-out 10^7 copied-stack fibers parked at once (fanout_1e7/fiber_copied): done, peak RSS (kB) within '
     "this machine's 24 GB",
     (LOOP, 'fanout_1e7/fiber_copied', 'rss'), None, '<=', 24 * 1024 * 1024, 'kB'),
    # Every core: two workers on this 2-core machine.
    ('skynet 1M on 2 workers, wall time (skynet/fiber_2workers) <= 0.5x Go (GOMAXPROCS=2)',
     (LOOP, 'skynet/fiber_2workers'), (LOOP, 'skynet/go_gomaxprocs2'), '<=', 0.5, 'x'),
    ("skynet 1M on 2 workers, peak RSS (skynet/fiber_2workers) <= 1.0x Go's (GOMAXPROCS=2)",
     (LOOP, 'skynet/fiber_2workers', 'rss'), (LOOP, 'skynet/go_gomaxprocs2', 'rss'), '<=', 1.0, 'x'),
    ('cross-worker ping-pong round trip (pingpong_mt/fiber_2workers) <= 0.5x Boost.Fiber, two threads '
     'with one fiber each (pingpong_mt/boost_fibers_2threads)',
     (LOOP, 'pingpong_mt/fiber_2workers'), (LOOP, 'pingpong_mt/boost_fibers_2threads'), '<=', 0.5, 'x'),
    ('CPU-bound fan-out, 10^4 tasks of ~100 us: 2 workers >= 1.8x the throughput of 1, i.e. '
     'fanout_cpu/fiber_2workers time <= 0.556x fanout_cpu/fiber_1worker',
     (LOOP, 'fanout_cpu/fiber_2workers'), (LOOP, 'fanout_cpu/fiber_1worker'), '<=', 0.556, 'x'),
    ('echo msgs/s (echo/fiber_echo_server) >= 1.0x Go (GOMAXPROCS=1)',
     (LOOP, 'echo/fiber_echo_server'), (LOOP, 'echo/go'), '>=', 1.0, 'x'),
    ('echo msgs/s (echo/fiber_echo_server) >= 0.9x the C epoll server',
     (LOOP, 'echo/fiber_echo_server'), (LOOP, 'echo/c_epoll'), '>=', 0.9, 'x'),
    ('echo msgs/s (echo/fiber_echo_server) >= 3x Python asyncio',
     (LOOP, 'echo/fiber_echo_server'), (LOOP, 'echo/python_asyncio'), '>=', 3.0, 'x'),
    # Every core, with IO: echo where each server hashes every message (~20 us).
    ('echo with work msgs/s, 2 workers (echo_work/fiber_2workers) >= 1.6x 1 worker (echo_work/fiber_1worker)',
     (LOOP, 'echo_work/fiber_2workers'), (LOOP, 'echo_work/fiber_1worker'), '>=', 1.6, 'x'),
    ('echo with work msgs/s, 2 workers (echo_work/fiber_2workers) >= 0.9x the C epoll server on 2 threads '
     'with SO_REUSEPORT (echo_work/c_epoll_2threads)',
     (LOOP, 'echo_work/fiber_2workers'), (LOOP, 'echo_work/c_epoll_2threads'), '>=', 0.9, 'x'),
    ('echo with work msgs/s, 2 workers (echo_work/fiber_2workers) >= 1.0x Go (GOMAXPROCS=2)',
     (LOOP, 'echo_work/fiber_2workers'), (LOOP, 'echo_work/go_gomaxprocs2'), '>=', 1.0, 'x'),
]


def acceptance_figures():
    """{source: {benchmark names}}: what the acceptance rows compare (what --check runs)."""
    out = {}
    for _, ours, peer, _, _, _ in ACCEPTANCE:
        for source, name, *_ in [f for f in (ours, peer) if f]:
            out.setdefault(source, set()).add(name)
    return out


def figure(results, ref):
    """One figure of a row: ({'samples': [values, one per repetition, run or round],
    'paired_by': what measured it together with the figures of the same paired_by and
    index, or None, 'best': True if its single value is its best (min) sample, not its
    median}, None), or (None, why it is missing)."""
    source, name, *what = ref
    if source in BINARIES:
        data = results.get('binaries', {}).get(source)
        available = results.get('available', {}).get(source)
        if available is not None and name not in available:
            return None, f'not in this build ({source} has no {name})'
        if not data:
            return None, 'not measured in this run'
        samples, errors = repetitions_of(data)
        if name in samples:
            only_median = not any(b.get('run_type') == 'iteration' for b in data.get('benchmarks', []))
            return {'samples': samples[name], 'paired_by': source, 'best': False,
                    'single': 'median only' if only_median else 'one repetition'}, None
        return None, f'{name}: failed: {errors[name]}' if name in errors else f'{name}: not measured in this run'
    if source == PY:
        p = results.get('python_program')
        if not p:
            return None, 'seed_generator.py --program not run'
        return {'samples': p.get('runs') or [p['ns_per_program']], 'paired_by': None, 'best': True}, None
    loop = results.get('loop') or {}
    row = loop.get('rows', {}).get(name)
    if not row:
        why = loop.get('skipped', {}).get(name)
        return None, f'{short(name)}: {why}' if why else f'{short(name)}: not measured in this run'
    if what == ['rss']:
        samples = row.get('rss_samples') or ([row['rss_kb']] if row.get('rss_kb') else None)
        if not samples:
            return None, f'{short(name)}: no peak RSS'
        return {'samples': samples, 'paired_by': None, 'best': False}, None
    samples = row.get('samples') or row.get('rounds') or [row['value']]
    return {'samples': samples, 'paired_by': row.get('paired_by'), 'best': False,
            'single': 'median only' if row.get('by') == LOOP_BINARY and 'samples' not in row else 'one run'}, None


def measure(results, ours, peer):
    """(value, spread min, spread max, count of samples or why there is no spread, why not
    measured) of a row. A ratio of two
    figures measured together (same binary, same echo round) is the median of the ratios
    of each repetition or round; otherwise it is our median over the peer's median (or
    best), its spread over every pair of samples."""
    a, why = figure(results, ours)
    if not a:
        return None, None, None, 0, why
    b, why = (None, None) if peer is None else figure(results, peer)
    if peer is not None and not b:
        return None, None, None, 0, why
    xs = a['samples']
    single = a.get('single', 'one run') if peer is None or len(xs) < 2 else b.get('single', 'one run')
    if peer is None:
        return statistics.median(xs), min(xs), max(xs), len(xs) if len(xs) > 1 else single, None
    ys = b['samples']
    if a['paired_by'] and a['paired_by'] == b['paired_by']:
        ratios = [x / y for x, y in zip(xs, ys)]
        return (statistics.median(ratios), min(ratios), max(ratios),
                len(ratios) if len(ratios) > 1 else single, None)
    pairs = [x / y for x in xs for y in ys]
    return (statistics.median(xs) / (min(ys) if b['best'] else statistics.median(ys)),
            min(pairs), max(pairs), len(pairs) if len(pairs) > 1 else single, None)


def evaluate(results):
    """Every acceptance row, measured: a list of dicts (what --json saves as 'checks')."""
    out = []
    for text, ours, peer, op, limit, unit in ACCEPTANCE:
        value, lo, hi, n, why = measure(results, ours, peer)
        if value is None:
            verdict = 'SKIP'
        else:
            verdict = 'PASS' if (value <= limit if op == '<=' else value >= limit) else 'FAIL'
        out.append({'check': text, 'measured': value, 'spread': [lo, hi] if value is not None else None,
                    'samples': n if isinstance(n, int) else 1, 'no_spread': None if isinstance(n, int) else n,
                    'limit': limit, 'op': op, 'unit': unit, 'verdict': verdict, 'why': why})
    return out


def fmt_number(value, unit):
    if unit == 'x':
        return f'{value:.2f}' if value >= 0.1 else f'{value:.2g}'
    return f'{value:.1f}'


def print_checks(results, title='Acceptance checks:'):
    print()
    print(title)
    checks = evaluate(results)
    for c in checks:
        if c['verdict'] == 'SKIP':
            print(f'  SKIP  {c["check"]}: {c["why"]}')
            continue
        value, (lo, hi), unit, limit = c['measured'], c['spread'], c['unit'], c['limit']
        detail = f'measured {fmt_number(value, unit)}{unit}'
        if c['samples'] > 1:
            detail += f' [spread {fmt_number(lo, unit)}–{fmt_number(hi, unit)}]'
        else:
            detail += f' [{c.get("no_spread") or "one run"}]'
        if c['verdict'] == 'FAIL':
            if c['op'] == '<=':
                detail += f', {(value / limit - 1) * 100:.0f}% over the limit'
            else:
                detail += f', {(1 - value / limit) * 100:.0f}% under the target'
        print(f'  {c["verdict"]}  {c["check"]}: {detail}')
    shared = results['binaries'].get('fiber_bench_shared_fp', {}).get('context', {}).get('fiber_shares_fp_env')
    if shared not in (None, 'true'):
        print(f'  NOTE  fiber_bench_shared_fp was linked against a library with fiber_shares_fp_env={shared}')
    return checks


def print_check_report(results):
    """--check's output: what ran, each acceptance row, a summary line."""
    ctx = next((d.get('context') for d in results['binaries'].values() if d.get('context')), {})
    load = ', '.join(f'{x:.2f}' for x in ctx.get('load_avg') or []) or '?'
    interleaved = any(d.get('random_interleaving') for d in results['binaries'].values())
    print(textwrap.fill(
        f'bench check: google benchmark, {results["repetitions"]} repetitions of {results["min_time"]} s'
        f'{" randomly interleaved" if interleaved else ""}: a ratio of two benchmarks of one binary is the '
        f'median of the per-repetition ratios, [spread] their min–max. Echo: {results.get("echo_rounds")} rounds '
        f'of {results.get("echo_seconds")} s per server, the median of the per-round ratios. Against another '
        f'process (CPython\'s seed program: the best of {PY_PROGRAM_RUNS} runs; skynet: one run each): our median '
        f'over its figure, [spread] over every pair. {ctx.get("num_cpus", "?")} cpus, load average {load} '
        f'at the start.', width=110))
    checks = print_checks(results, 'Acceptance rows:')
    counts = {v: sum(c['verdict'] == v for c in checks) for v in ('PASS', 'FAIL', 'SKIP')}
    wall = f' in {results["wall_seconds"]:.0f} s' if results.get('wall_seconds') else ''
    print(f'\nbench check: {counts["PASS"]} PASS, {counts["FAIL"]} FAIL, {counts["SKIP"]} SKIP{wall}')
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('build_dir', nargs='?', help='the CMake build directory (configured with -DFIBER_BUILD_BENCH=ON)')
    parser.add_argument('--check', action='store_true',
                        help='only the benchmarks behind the acceptance rows, shortened; prints the rows with '
                             'their spread, writes JSON (BUILD_DIR/bench-check.json unless --json), exits 1 if '
                             'a row FAILs')
    parser.add_argument('--min-time', type=float,
                        help='seconds per repetition, passed as --benchmark_min_time (default 0.2; --check: 0.05)')
    parser.add_argument('--repetitions', type=int,
                        help='google benchmark repetitions, randomly interleaved (default 3; --check: 9)')
    parser.add_argument('--filter', help='regex passed as --benchmark_filter, widened to the peers of what it '
                                         f'selects (it also selects the python peer, named {PYTHON_ROW}); '
                                         'a loop group (pingpong, buffered, spawn_join, skynet, fanout_1e4/1e5/1e6, echo, echo_work) runs, with '
                                         'all its peers, when it matches one of its rows')
    parser.add_argument('--echo-seconds', type=float,
                        help='seconds of load on each echo server, after a 0.5 s warm-up (default 3; --check: 1)')
    parser.add_argument('--echo-rounds', type=int,
                        help='rounds of the echo benchmark, the servers in turn; the table keeps each one\'s best, '
                             'the acceptance rows the median of the per-round ratios (default 2; --check: 5)')
    parser.add_argument('--no-boost-skynet', action='store_true',
                        help='skip Boost.Fiber\'s skynets, on one thread and work_stealing on 2 (about 40 s and 6 GB, 15 s and 3 GB here)')
    parser.add_argument('--json', metavar='OUT.json', help='also write the raw results and the checks here')
    parser.add_argument('--chart', metavar='OUT.png', help='draw our ratio to each peer of the loop section '
                                                           '(matplotlib; the system python3\'s if need be)')
    parser.add_argument('--chart-only', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--load', metavar='IN.json', help='print a run saved with --json instead of running')
    args = parser.parse_args()
    for name, full, check in (('min_time', 0.2, 0.05), ('repetitions', 3, 9), ('echo_seconds', 3.0, 1.0),
                              ('echo_rounds', 2, 5)):
        if getattr(args, name) is None:
            setattr(args, name, check if args.check else full)
    if args.repetitions < 2:
        parser.error('--repetitions must be at least 2 (google benchmark reports no median of one)')
    start = time.monotonic()
    if args.load:
        with open(args.load) as f:
            results = json.load(f)
    elif args.build_dir:
        if args.check and (args.filter or args.chart):
            parser.error('--check runs the acceptance rows: no --filter, no --chart')
        results = collect(args)
        results['echo_seconds'], results['echo_rounds'] = args.echo_seconds, args.echo_rounds
        results['wall_seconds'] = time.monotonic() - start
    else:
        parser.error('give BUILD_DIR, or --load a saved run')
    if args.chart_only:
        draw_chart(results, args.chart)
        return

    if results.get('mode') == 'check':
        results['checks'] = print_check_report(results)
        out = args.json or (None if args.load else os.path.join(args.build_dir, 'bench-check.json'))
        if out:
            with open(out, 'w') as f:
                json.dump(results, f, indent=1)
                f.write('\n')
            print(f'JSON: {out}')
        sys.exit(1 if any(c['verdict'] == 'FAIL' for c in results['checks']) else 0)

    print_context(results)
    print_table(results)
    print_loop_table(results)
    results['checks'] = print_checks(results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
            f.write('\n')
    if args.chart:
        chart(results, args.chart, args.json or args.load)


if __name__ == '__main__':
    main()
