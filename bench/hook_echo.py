#!/usr/bin/env python3
"""The hooked echo server against itself with one thread per client: the same
blocking C program (tests/hook/echo_server.c), run as

  fibers   one fiber per client on one thread, libfiber_hook.so by LD_PRELOAD
  fibers2  one fiber per client on 2 worker threads (fiber_run), the same hook
  threads  one thread per client, no hook

and loaded by tests/hook/echo_client.c (CLIENTS connections, ROUNDS rounds, one
line per connection per round, all sent before any reply is read). For each
number of clients, runs each mode --repeat times, interleaved, and prints the
median messages per second, the server's peak resident set (the largest of the
runs), the CPU time the server used per message (all its threads: on a machine
busy with other work, a steadier figure than messages per second), how many
clients it served and at most at once, and the rows of issue 18:

  at 100 clients:   fibers2 msgs/s >= 1.0x threads'
  at 5,000 clients: fibers2 serves every client, with peak RSS <= 0.25x threads'

    hook_echo.py BUILD_DIR [--clients 100,5000] [--rounds N] [--repeat 3] [--modes fibers,fibers2,threads]

--rounds defaults to 2000 at 100 clients or fewer, else to about 200,000 messages
in all. 5,000 clients need 5,064 open files in the server and in the client:
the soft limit is raised here (the programs raise it too), and the hard limit
must allow it (ulimit -Hn).
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

LABELS = {
    'fibers': 'one fiber per client, 1 thread, libfiber_hook',
    'fibers2': 'one fiber per client, 2 workers, libfiber_hook',
    'threads': 'one thread per client, no hook',
}


def run_once(build, mode, clients, rounds, workdir):
    server = os.path.join(build, 'bench', 'hook_echo_server_bench')
    client = os.path.join(build, 'bench', 'hook_echo_client_bench')
    hook = os.path.join(os.path.abspath(build), 'libfiber_hook.so')
    portfile = os.path.join(workdir, f'port-{mode}-{time.monotonic_ns()}')
    env = dict(os.environ)
    env.pop('LD_PRELOAD', None)
    if mode.startswith('fibers'):
        env['LD_PRELOAD'] = hook
    proc = subprocess.Popen([server, portfile, mode, str(clients)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (os.path.exists(portfile) and open(portfile).read().endswith('\n')):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            sys.exit(f'hook_echo.py: the {mode} server did not start: {proc.communicate()[1]}')
        time.sleep(0.01)
    port = int(open(portfile).read())
    client_run = subprocess.run([client, str(port), str(clients), str(rounds), 'QUIET'], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    if client_run.returncode != 0:
        proc.kill()
        sys.exit(f'hook_echo.py: {mode}, {clients} clients: the client failed ({client_run.returncode}): '
                 f'{client_run.stderr.strip()}\nserver: {proc.communicate()[1].strip()}')
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        sys.exit(f'hook_echo.py: {mode}, {clients} clients: the server failed ({proc.returncode}): {err.strip()}')
    rate = float(re.search(r'([0-9.]+) msg/s', client_run.stdout).group(1))
    served = re.search(r'served (\d+) clients, at most (\d+) at once, on (\d+) thread', out)
    rss_kib = int(re.search(r'peak RSS (\d+) KiB', out).group(1))
    cpu_s = float(re.search(r'CPU ([0-9.]+) s', out).group(1))
    messages = clients * rounds
    return rate, rss_kib, cpu_s * 1e6 / messages, (int(served.group(1)), int(served.group(2)), int(served.group(3)))


def raise_fd_limit(clients):
    need = clients + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        sys.exit(f'hook_echo.py: {clients} clients need {need} open files in the server and the client; '
                 f'the hard limit is {hard}: raise it (ulimit -Hn {need}, as root, or limits.conf)')
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('build_dir')
    p.add_argument('--clients', default='100,5000', help='comma-separated numbers of clients')
    p.add_argument('--rounds', type=int, default=0, help='rounds per run (default: see above)')
    p.add_argument('--repeat', type=int, default=3)
    p.add_argument('--modes', default='fibers,fibers2,threads')
    args = p.parse_args()
    modes = args.modes.split(',')
    for m in modes:
        if m not in LABELS:
            sys.exit(f'hook_echo.py: unknown mode {m!r} (fibers, fibers2, threads)')
    counts = [int(c) for c in args.clients.split(',')]
    raise_fd_limit(max(counts))
    with tempfile.TemporaryDirectory() as workdir:
        for clients in counts:
            rounds = args.rounds or (2000 if clients <= 100 else max(10, 200000 // clients))
            rates = {m: [] for m in modes}
            rss = {m: [] for m in modes}
            cpu = {m: [] for m in modes}
            served = {}
            for _ in range(args.repeat):
                for mode in modes:
                    rate, rss_kib, cpu_us, served[mode] = run_once(args.build_dir, mode, clients, rounds, workdir)
                    rates[mode].append(rate)
                    rss[mode].append(rss_kib)
                    cpu[mode].append(cpu_us)
            print(f'hooked echo server, {clients} clients x {rounds} rounds, median of {args.repeat} runs:')
            for mode in modes:
                runs = ', '.join(f'{r:,.0f}' for r in rates[mode])
                n, at_once, threads = served[mode]
                print(f'  {mode:8s} {LABELS[mode]:48s} {statistics.median(rates[mode]):>10,.0f} msg/s  '
                      f'peak RSS {max(rss[mode]) / 1024:7.1f} MiB  '
                      f'server CPU {statistics.median(cpu[mode]):5.2f} us/msg  '
                      f'(runs: {runs})  served {n}, at most {at_once} at once, on {threads} thread(s)')
            if 'threads' not in modes:
                continue
            for mode in (m for m in modes if m != 'threads'):
                speed = statistics.median(rates[mode]) / statistics.median(rates['threads'])
                memory = max(rss[mode]) / max(rss['threads'])
                work = statistics.median(cpu[mode]) / statistics.median(cpu['threads'])
                print(f'  {mode} / threads: {speed:.2f}x msg/s, {memory:.2f}x peak RSS, '
                      f'{work:.2f}x server CPU per message')
            if 'fibers2' in modes:
                speed = statistics.median(rates['fibers2']) / statistics.median(rates['threads'])
                memory = max(rss['fibers2']) / max(rss['threads'])
                all_served = served['fibers2'][0] == clients
                if clients <= 100:
                    verdict = 'PASS' if speed >= 1.0 else 'FAIL'
                    print(f'  row "on 2 workers >= 1.0x thread-per-client at {clients} clients": '
                          f'{speed:.2f}x: {verdict}')
                else:
                    verdict = 'PASS' if all_served and memory <= 0.25 else 'FAIL'
                    print(f'  row "at {clients} clients, serves all with peak RSS <= 0.25x thread-per-client": '
                          f'served {served["fibers2"][0]}/{clients}, {memory:.2f}x: {verdict}')


if __name__ == '__main__':
    main()
