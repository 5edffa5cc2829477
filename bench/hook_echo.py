#!/usr/bin/env python3
"""The hooked echo server against itself with one thread per client: the same
blocking C program (tests/hook/echo_server.c), run as

  fibers  one fiber per client on one thread, libfiber_hook.so by LD_PRELOAD
  threads one thread per client, no hook

and loaded by tests/hook/echo_client.c (CLIENTS connections, ROUNDS rounds, one
line per connection per round, all sent before any reply is read). Runs each mode
--repeat times, interleaved, and prints the median messages per second, how many
clients the server served at once, and the ratio.

    hook_echo.py BUILD_DIR [--clients 100] [--rounds 2000] [--repeat 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def run_once(build, mode, clients, rounds, workdir):
    server = os.path.join(build, 'bench', 'hook_echo_server_bench')
    client = os.path.join(build, 'bench', 'hook_echo_client_bench')
    hook = os.path.join(build, 'libfiber_hook.so')
    portfile = os.path.join(workdir, f'port-{mode}-{time.monotonic_ns()}')
    env = dict(os.environ)
    env.pop('LD_PRELOAD', None)
    if mode == 'fibers':
        env['LD_PRELOAD'] = hook
    proc = subprocess.Popen([server, portfile, mode, str(clients)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (os.path.exists(portfile) and open(portfile).read().endswith('\n')):
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit(f'hook_echo.py: the {mode} server did not start')
        time.sleep(0.01)
    port = int(open(portfile).read())
    out = subprocess.run([client, str(port), str(clients), str(rounds)], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    summary, _ = proc.communicate(timeout=60)
    rate = float(re.search(r'([0-9.]+) msg/s', out).group(1))
    return rate, summary.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('build_dir')
    p.add_argument('--clients', type=int, default=100)
    p.add_argument('--rounds', type=int, default=2000)
    p.add_argument('--repeat', type=int, default=3)
    args = p.parse_args()
    rates = {'fibers': [], 'threads': []}
    summaries = {}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeat):
            for mode in ('fibers', 'threads'):
                rate, summaries[mode] = run_once(args.build_dir, mode, args.clients, args.rounds, workdir)
                rates[mode].append(rate)
    print(f'hooked echo server, {args.clients} clients x {args.rounds} rounds, median of {args.repeat} runs:')
    for mode, label in (('fibers', 'one fiber per client, one thread, libfiber_hook'),
                        ('threads', 'one thread per client, no hook')):
        runs = ', '.join(f'{r:,.0f}' for r in rates[mode])
        print(f'  {label:48s} {statistics.median(rates[mode]):>10,.0f} msg/s  (runs: {runs})  server: {summaries[mode]}')
    ratio = statistics.median(rates['fibers']) / statistics.median(rates['threads'])
    print(f'  fibers / threads: {ratio:.2f}x')


if __name__ == '__main__':
    main()
