#!/usr/bin/env python3
"""Runs the fiber benchmarks and prints one table, with the acceptance checks.

    python3 bench/report.py BUILD_DIR [--min-time 0.2] [--filter REGEX] [--json OUT.json]
    python3 bench/report.py --load OUT.json          # print a saved run again

Runs BUILD_DIR's fiber_bench and fiber_bench_shared_fp (google benchmark, JSON
output, 3 repetitions, median kept) and bench/peers/seed_generator.py, then prints
for every benchmark its time per operation (real time: one operation is one round
trip, or one create + first switch + destroy) and its ratio to the peer of its
group, measured in the same binary and the same run:

    switch/...     to switch/boost_jump_fcontext (and fiber::context to boost::context::fiber)
    generator/...  to our own switch/fiber_context round trip
    create/...     to boost::context::fiber with the same kind of stack

Python 3 standard library only.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
BINARIES = ('fiber_bench', 'fiber_bench_shared_fp')
PYTHON_PEER = os.path.join(HERE, 'peers', 'seed_generator.py')
PYTHON_ROW = 'generator/python_seed_generator_send'
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
    'create/boost_fiber_pooled_fixedsize_stack': (None, []),
    'create/boost_fiber_protected_fixedsize_stack': (None, []),
}
GROUP_ORDER = ('switch', 'generator', 'create')


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


def list_benchmarks(path, regex):
    done = subprocess.run([path, '--benchmark_list_tests=true', f'--benchmark_filter={regex}'],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return done.stdout.split() if done.returncode == 0 else []


def run_binary(path, min_time, regex):
    cmd = [path, '--benchmark_format=json', f'--benchmark_min_time={min_time}',
           '--benchmark_repetitions=3', '--benchmark_report_aggregates_only=true']
    if regex:
        cmd.append(f'--benchmark_filter={regex}')
    print('running:', ' '.join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f'report.py: {path} failed ({done.returncode}):\n{done.stderr}')
    if not done.stdout.strip():  # the filter matched nothing in this binary
        return {'context': {}, 'benchmarks': []}
    return json.loads(done.stdout)


def run_python_peer():
    cmd = [sys.executable, PYTHON_PEER]
    print('running:', ' '.join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout)


def medians(gbench_json):
    """{benchmark name: (real ns, cpu ns, coefficient of variation of real time or None)}"""
    out, cv = {}, {}
    for b in gbench_json.get('benchmarks', []):
        name = re.sub(r'/real_time$', '', b['run_name'])
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
            peers.update(p for p in [peer] + extra if p and p != PYTHON_ROW and not filter_matches(regex, p))
    if not peers:
        return regex
    return f'({regex})|^({"|".join(sorted(peers))})$'


def collect(args):
    results = {'min_time': args.min_time, 'filter': args.filter, 'binaries': {}, 'python': None}
    regex = with_peers(args.filter)
    for name in BINARIES:
        path = find_binary(args.build_dir, name)
        if args.filter and not list_benchmarks(path, args.filter):
            continue  # nothing selected here: do not run it just for the peers
        results['binaries'][name] = run_binary(path, args.min_time, regex)
    if filter_matches(args.filter, PYTHON_ROW):
        results['python'] = run_python_peer()
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
    return None


def fmt_ns(ns):
    return f'{ns:.0f}' if ns >= 1000 else f'{ns:.1f}' if ns >= 10 else f'{ns:.2f}'


def print_table(results):
    rows = rows_of(results)
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
    print(textwrap.fill(
        f'ns/op = median real (wall-clock) time of 3 repetitions, each of at least '
        f'--benchmark_min_time={results["min_time"]} s; one op = one round trip (two switches), one '
        f'send/yield round trip, or one create + first switch + destroy. ratio = real ns/op divided by '
        f'the peer\'s, from the same binary and run (python\'s: by fiber_bench\'s). cpu ns/op is for reference (for thread_condvar it '
        f'counts the benchmark thread only); ±cv is the spread of the 3 repetitions.', width=110))
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
    print()


def checks_of(results):
    """(description, measured, limit, unit) for each acceptance check; measured None if not run."""
    def ratio(binary, name, peer):
        a, b = time_in(results, binary, name), time_in(results, binary, peer)
        return a / b if a and b else None

    return [
        ('default switch round trip (fiber_bench switch/fiber_context) <= 1.0x boost_jump_fcontext',
         ratio('fiber_bench', OWN_SWITCH, SWITCH_PEER), 1.0, 'x'),
        ('shared-FP switch round trip (fiber_bench_shared_fp switch/fiber_context) <= 0.5x boost_jump_fcontext',
         ratio('fiber_bench_shared_fp', OWN_SWITCH, SWITCH_PEER), 0.5, 'x'),
        ('generator send/yield round trip (generator/fiber_generator) <= 1.3x our switch/fiber_context',
         ratio('fiber_bench', 'generator/fiber_generator', OWN_SWITCH), 1.3, 'x'),
        ('create + first switch + destroy, pooled stack (create/fiber_context_pooled_stack) <= 100 ns',
         time_in(results, 'fiber_bench', 'create/fiber_context_pooled_stack'), 100.0, ' ns'),
    ]


def print_checks(results):
    print()
    print('Acceptance checks:')
    checks = []
    for text, measured, limit, unit in checks_of(results):
        if measured is None:
            verdict, detail = 'SKIP', 'not measured in this run'
        else:
            verdict = 'PASS' if measured <= limit else 'FAIL'
            shown = f'{measured:.2f}{unit}' if unit == 'x' else f'{measured:.1f}{unit}'
            detail = f'measured {shown}'
            if verdict == 'FAIL':
                detail += f', {(measured / limit - 1) * 100:.0f}% over the limit'
        print(f'  {verdict}  {text}: {detail}')
        checks.append({'check': text, 'measured': measured, 'limit': limit, 'verdict': verdict})
    shared = results['binaries'].get('fiber_bench_shared_fp', {}).get('context', {}).get('fiber_shares_fp_env')
    if shared not in (None, 'true'):
        print(f'  NOTE  fiber_bench_shared_fp was linked against a library with fiber_shares_fp_env={shared}')
    return checks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('build_dir', nargs='?', help='the CMake build directory (configured with -DFIBER_BUILD_BENCH=ON)')
    parser.add_argument('--min-time', type=float, default=0.2,
                        help='seconds per repetition, passed as --benchmark_min_time (default 0.2)')
    parser.add_argument('--filter', help='regex passed as --benchmark_filter, widened to the peers of what it '
                                         f'selects (it also selects the python peer, named {PYTHON_ROW})')
    parser.add_argument('--json', metavar='OUT.json', help='also write the raw results and the checks here')
    parser.add_argument('--load', metavar='IN.json', help='print a run saved with --json instead of running')
    args = parser.parse_args()
    if args.load:
        with open(args.load) as f:
            results = json.load(f)
    elif args.build_dir:
        results = collect(args)
    else:
        parser.error('give BUILD_DIR, or --load a saved run')

    print_context(results)
    print_table(results)
    results['checks'] = print_checks(results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
            f.write('\n')


if __name__ == '__main__':
    main()
