#!/usr/bin/env python3
"""Stackful (fiber) against stackless (C++20 coroutines): runs
bench/stackful_vs_stackless from one or more build trees (one per compiler), the
fan-out workload in a fresh process per point, and the seed's program in Python
(bench/peers/seed_generator.py --program); prints the tables, and can write the
results as JSON and draw the charts.

    compare.py gcc=build/release clang=build/compare-clang --json out.json --charts DIR
    compare.py gcc=build/release --short          # the few lines ./dev.sh demo prints
    compare.py --load out.json --charts DIR       # print and draw a saved run again

Every figure is the median of 3 repetitions (Google Benchmark); fan-out runs once
per point. ns per item: see the top of bench/stackful_vs_stackless.cpp.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_PEER = os.path.join(HERE, 'peers', 'seed_generator.py')
BINARY = os.path.join('bench', 'stackful_vs_stackless')
FANOUT_N = (1000, 10000, 100000, 1000000)
NS_PER_UNIT = {'ns': 1.0, 'us': 1e3, 'ms': 1e6, 's': 1e9}

# The headline: (label, stackful benchmark, stackless benchmark, unit)
HEADLINE = (
    ('iterate 0..9999', 'iterate/fiber', 'iterate/stackless', 'ns per element'),
    ('tree walk, k=20 (delegating)', 'tree/fiber/20', 'tree/stackless_delegating/20', 'ns per node'),
    ('tree walk, k=20 (nested)', 'tree/fiber/20', 'tree/stackless_nested/20', 'ns per node'),
    ('deep suspension, D=1', 'deep/fiber/1', 'deep/stackless/1', 'ns per suspend'),
    ('deep suspension, D=16', 'deep/fiber/16', 'deep/stackless/16', 'ns per suspend'),
    ('deep suspension, D=256', 'deep/fiber/256', 'deep/stackless/256', 'ns per suspend'),
    ('ping-pong over channels', 'pingpong/fiber', 'pingpong/stackless', 'ns per round trip'),
    ('create + run + destroy', 'create/fiber_context', 'create/stackless_task', 'ns per task'),
    ('spawn + join on a loop', 'create/fiber_spawn_join', 'create/stackless_spawn_join', 'ns per task'),
    ("the seed's program", 'seed/fiber_pooled_stack', 'seed/stackless', 'ns per program'),
)
SHORT_FILTER = r'^(iterate/(fiber|stackless)|deep/(fiber|stackless)/(1|16|256)|pingpong/.*|seed/(fiber_pooled_stack|stackless))$'
SHORT_ROWS = ('iterate 0..9999', 'deep suspension, D=1', 'deep suspension, D=16', 'deep suspension, D=256',
              'ping-pong over channels', "the seed's program")


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def compiler_of(build_dir):
    """'GNU 12.2.0' or 'Clang 14.0.6', from CMake's record of the build tree."""
    for path in glob.glob(os.path.join(build_dir, 'CMakeFiles', '*', 'CMakeCXXCompiler.cmake')):
        text = open(path).read()
        cid = re.search(r'set\(CMAKE_CXX_COMPILER_ID "([^"]*)"\)', text)
        ver = re.search(r'set\(CMAKE_CXX_COMPILER_VERSION "([^"]*)"\)', text)
        if cid and ver:
            return f'{cid.group(1)} {ver.group(1)}'
    return 'unknown compiler'


def run_benchmarks(binary, min_time, repetitions, regex):
    cmd = [binary, '--benchmark_format=json', f'--benchmark_min_time={min_time}',
           f'--benchmark_repetitions={repetitions}', '--benchmark_report_aggregates_only=true']
    if regex:
        cmd.append(f'--benchmark_filter={regex}')
    log('running:', ' '.join(cmd))
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f'compare.py: {binary} failed ({done.returncode}):\n{done.stderr}')
    out, cv, single = {}, {}, {}
    for b in json.loads(done.stdout).get('benchmarks', []):
        name = b['run_name']
        if b.get('run_type') == 'iteration':  # one repetition: no aggregates
            single[name] = 1e9 / b['items_per_second']
        elif b.get('aggregate_name') == 'median':
            # ns per item, from items_per_second (every benchmark here sets it)
            out[name] = 1e9 / b['items_per_second']
        elif b.get('aggregate_name') == 'cv':
            cv[name] = b['real_time']
    for name, ns in single.items():
        out.setdefault(name, ns)
    return {name: {'ns': ns, 'cv': cv.get(name)} for name, ns in out.items()}


def run_fanout(binary, impls, ns):
    points = []
    for n in ns:
        for impl in impls:
            cmd = [binary, f'--fanout={impl}', f'--n={n}']
            log('running:', ' '.join(cmd))
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                sys.exit(f'compare.py: {" ".join(cmd)} failed ({done.returncode}):\n{done.stderr}')
            points.append(json.loads(done.stdout))
    return points


def run_python():
    cmd = [sys.executable, PYTHON_PEER, '--program', '--sends', '500000']
    log('running:', ' '.join(cmd))
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout)


def collect(args):
    results = {'builds': [], 'python': None}
    for spec in args.builds:
        if '=' not in spec:
            sys.exit(f'compare.py: {spec!r}: expected LABEL=BUILD_DIR')
        label, build_dir = spec.split('=', 1)
        binary = os.path.join(build_dir, BINARY)
        if not os.access(binary, os.X_OK):
            sys.exit(f'compare.py: {binary} not found (configure with -DFIBER_BUILD_BENCH=ON and build)')
        build = {'label': label, 'compiler': compiler_of(build_dir),
                 'benchmarks': run_benchmarks(binary, args.min_time, args.repetitions,
                                              SHORT_FILTER if args.short else args.filter),
                 'fanout': [] if args.short else run_fanout(binary, ('fiber', 'stackless'), args.fanout_n)}
        results['builds'].append(build)
    if not args.short:
        results['python'] = run_python()
    return results


# ---- printing ----

def fmt_ns(ns):
    if ns is None:
        return '-'
    if ns >= 1e6:
        return f'{ns / 1e6:.2f} ms'
    if ns >= 1e4:
        return f'{ns / 1e3:.1f} us'
    if ns >= 100:
        return f'{ns:.0f} ns'
    if ns >= 10:
        return f'{ns:.1f} ns'
    return f'{ns:.2f} ns'


def fmt_ratio(r):
    if r is None:
        return '-'
    return f'{r:.2f}x' if r < 10 else f'{r:.1f}x'


def table(headers, rows):
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: '  '.join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    print(line(headers))
    print('  '.join('-' * w for w in widths))
    for r in rows:
        print(line(r))


def ns_of(build, name):
    b = build['benchmarks'].get(name)
    return b['ns'] if b else None


def ratio(a, b):
    return a / b if a is not None and b else None


def print_headline(results, rows=None):
    builds = results['builds']
    headers = ['workload', 'unit']
    for b in builds:
        headers += [f'fiber ({b["label"]})', f'stackless ({b["label"]})', f'fiber/stackless ({b["label"]})']
    body = []
    for label, stackful, stackless, unit in HEADLINE:
        if rows and label not in rows:
            continue
        row = [label, unit]
        for b in builds:
            f, s = ns_of(b, stackful), ns_of(b, stackless)
            row += [fmt_ns(f), fmt_ns(s), fmt_ratio(ratio(f, s))]
        body.append(row)
    table(headers, body)


def params_of(build, prefix):
    ps = set()
    for name in build['benchmarks']:
        m = re.match(re.escape(prefix) + r'[^/]+/(\d+)$', name)
        if m:
            ps.add(int(m.group(1)))
    return sorted(ps)


def print_sweep(build, prefix, param, impls, stackful, stackless_impls):
    headers = [param] + list(impls) + [f'fiber/{s}' for s in stackless_impls]
    body = []
    for p in params_of(build, prefix):
        vals = {i: ns_of(build, f'{prefix}{i}/{p}') for i in impls}
        body.append([p] + [fmt_ns(vals[i]) for i in impls] +
                    [fmt_ratio(ratio(vals[stackful], vals[s])) for s in stackless_impls])
    table(headers, body)


def print_fanout(build):
    headers = ['n', 'implementation', 'wall', 'per task (wall / n)', 'peak RSS', 'bytes per task', 'fixed per task']
    body = []
    for p in build['fanout']:
        per_task_ns = p['seconds'] / p['n'] * 1e9 if p['n'] else None
        fixed = (f'{p["stack_bytes_reserved"]} B stack reserved' if 'stack_bytes_reserved' in p
                 else f'{p["frame_bytes"]} B frame')
        body.append([f'{p["n"]:,}', p['impl'], f'{p["seconds"]:.3f} s', fmt_ns(per_task_ns), f'{p["peak_rss_kb"] / 1024:.0f} MB', f'{p["bytes_per_task"]:,.0f}', fixed])
    table(headers, body)


def print_seed(build, python):
    rows = []
    for name in ('seed/fiber_pooled_stack', 'seed/fiber_protected_stack', 'seed/stackless'):
        rows.append([name.split('/')[1], fmt_ns(ns_of(build, name))])
    if python:
        rows.append([f'python generator ({python["python"]})', fmt_ns(python['ns_per_program'])])
    table(['implementation', 'ns per program'], rows)


def print_all(results):
    python = results.get('python')
    print('\n== headline: the stackful/stackless ratio per workload (below 1: fiber is faster) ==')
    print_headline(results)
    for b in results['builds']:
        print(f'\n######## {b["label"]}: {b["compiler"]} ########')
        print('\n-- 1. iterate 0..9999: ns per element --')
        table(['implementation', 'ns per element'],
              [[n.split('/')[1], fmt_ns(ns_of(b, n))] for n in ('iterate/plain_loop', 'iterate/fiber', 'iterate/stackless')])
        print('\n-- 2. tree: in-order walk of 2^k - 1 nodes, ns per node --')
        print_sweep(b, 'tree/', 'k', ('plain_recursion', 'fiber', 'stackless_nested', 'stackless_delegating'),
                    'fiber', ('stackless_nested', 'stackless_delegating'))
        print('\n-- 3. deep: suspend D calls deep, ns per send (down, suspend, resume, up) --')
        print_sweep(b, 'deep/', 'D', ('plain_calls', 'fiber', 'stackless'), 'fiber', ('stackless',))
        print('\n-- 4. ping-pong over two unbuffered channels: ns per round trip --')
        table(['implementation', 'ns per round trip'],
              [[n.split('/')[1], fmt_ns(ns_of(b, n))] for n in ('pingpong/fiber', 'pingpong/stackless')])
        if b['fanout']:
            print('\n-- 5. fan-out: n tasks wait on a timer at once, then finish --')
            print_fanout(b)
            touch = ns_of(b, 'memory/first_touch_page')
            if touch:
                print(f'(the first write to a fresh page costs {fmt_ns(touch)} on this machine: '
                      'memory/first_touch_page, mmap + write + munmap per page)')
        print('\n-- 6. create, run to the end, destroy a trivial task: ns per task --')
        table(['implementation', 'ns per task'],
              [[n.split('/')[1], fmt_ns(ns_of(b, n))] for n in
               ('create/fiber_context', 'create/stackless_task', 'create/fiber_spawn_join', 'create/stackless_spawn_join')])
        print("\n-- 7. the seed's producer/consumer, without printing: ns per program --")
        print_seed(b, python)


# ---- charts ----

def draw_charts(results, out_dir):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    styles = ['-', '--', ':', '-.']
    colors = {'plain_recursion': '#7f7f7f', 'plain_calls': '#7f7f7f', 'fiber': '#1f77b4',
              'stackless_nested': '#d62728', 'stackless_delegating': '#ff7f0e', 'stackless': '#d62728'}

    def sweep(ax, prefix, impls, xlabel, title, logx):
        for bi, b in enumerate(results['builds']):
            for impl in impls:
                ps = [p for p in params_of(b, prefix) if ns_of(b, f'{prefix}{impl}/{p}') is not None]
                if not ps:
                    continue
                ax.plot(ps, [ns_of(b, f'{prefix}{impl}/{p}') for p in ps], marker='o', markersize=3,
                        linestyle=styles[bi % len(styles)], color=colors.get(impl), label=f'{impl} ({b["label"]})')
        if logx:
            ax.set_xscale('log', base=2)
        ax.set_yscale('log')
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=7)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    sweep(a1, 'tree/', ('plain_recursion', 'fiber', 'stackless_nested', 'stackless_delegating'),
          'k (tree of 2^k - 1 nodes, depth k)', 'recursive generator: ns per node (log)', False)
    a1.set_ylabel('ns')
    sweep(a2, 'deep/', ('plain_calls', 'fiber', 'stackless'), 'D (calls between the driver and the suspension)',
          'deep suspension: ns per send (log-log)', True)
    fig.tight_layout()
    path = os.path.join(out_dir, 'stackful-vs-stackless-depth.png')
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log('chart:', path)

    if not any(b['fanout'] for b in results['builds']):
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    for bi, b in enumerate(results['builds']):
        for impl in ('fiber', 'stackless'):
            pts = [p for p in b['fanout'] if p['impl'] == impl and p['n']]
            if not pts:
                continue
            ns = [p['n'] for p in pts]
            style = dict(marker='o', markersize=3, linestyle=styles[bi % len(styles)], color=colors[impl],
                         label=f'{impl} ({b["label"]})')
            a1.plot(ns, [p['seconds'] / p['n'] * 1e9 for p in pts], **style)
            a2.plot(ns, [max(p['bytes_per_task'], 1) for p in pts], **style)
    for ax, title in ((a1, 'fan-out: ns per task, wall / n (log-log)'),
                      (a2, 'fan-out: bytes of peak RSS per task (log-log)')):
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('n (tasks waiting at once)')
        ax.set_title(title, fontsize=10)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out_dir, 'stackful-vs-stackless-fanout.png')
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log('chart:', path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('builds', nargs='*', metavar='LABEL=BUILD_DIR',
                        help='build trees configured with -DFIBER_BUILD_BENCH=ON, e.g. gcc=build/release')
    parser.add_argument('--min-time', type=float, default=0.1, help='--benchmark_min_time (default 0.1 s)')
    parser.add_argument('--repetitions', type=int, default=3, help='repetitions; the median is kept (default 3)')
    parser.add_argument('--filter', help='regex passed as --benchmark_filter')
    parser.add_argument('--fanout-n', type=lambda s: [int(x) for x in s.split(',')], default=list(FANOUT_N),
                        help='fan-out sizes, comma-separated (default 1000,10000,100000,1000000)')
    parser.add_argument('--short', action='store_true', help='a few benchmarks and the headline only (the demo)')
    parser.add_argument('--json', metavar='OUT.json', help='write the results here')
    parser.add_argument('--charts', metavar='DIR', help='draw the charts (PNG) into DIR (needs matplotlib)')
    parser.add_argument('--load', metavar='IN.json', help='print (and draw) a run saved with --json')
    parser.add_argument('--charts-only', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load:
        results = json.load(open(args.load))
    elif args.builds:
        results = collect(args)
    else:
        parser.error('give LABEL=BUILD_DIR (or --load)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
        log('results:', args.json)
    if args.charts_only:
        draw_charts(results, args.charts)
        return
    if args.short:
        print_headline(results, SHORT_ROWS)
    else:
        print_all(results)
    if args.charts:
        charts(results, args)


def charts(results, args):
    """Draws with matplotlib here, or with the system python3 (Debian's
    python3-matplotlib) when this interpreter has none."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        other = '/usr/bin/python3'
        if os.path.realpath(other) != os.path.realpath(sys.executable) and os.access(other, os.X_OK) and \
                subprocess.run([other, '-c', 'import matplotlib'], stderr=subprocess.DEVNULL).returncode == 0:
            if not args.json and not args.load:
                log('compare.py: --charts needs --json when matplotlib comes from another python')
                return
            subprocess.run([other, os.path.abspath(__file__), '--load', args.load or args.json,
                            '--charts', args.charts, '--charts-only'], check=False)
            return
        log('compare.py: no matplotlib (install python3-matplotlib): no charts drawn')
        return
    draw_charts(results, args.charts)


if __name__ == '__main__':
    main()
