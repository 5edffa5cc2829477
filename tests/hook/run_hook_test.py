#!/usr/bin/env python3
"""The hooked echo server test: the same blocking C server (tests/hook/echo_server.c)
and client (echo_client.c), run four ways.

  1. one thread per client, no hook: the reference transcript;
  2. one fiber per client on one thread, libfiber_hook by LD_PRELOAD;
  3. the same with the hook linked into the server instead;
  4. fibers without the hook: the first client's blocking read holds the thread,
     so the client must time out (exit 3) -- the hook is what makes 2 and 3 work.

2 and 3 must print the same transcript as 1, serve every client at once (the
server reports its peak) and run every handler on one thread.

With --workers W, 2 and 3 run the fibers on W worker threads (fiber_run; the
server's mode fibersW), and their handlers must have run on 1 to W threads
(which, is up to the runtime: it says how many); 4 is not run.

    run_hook_test.py --server S --linked-server S2 --client C --hook LIB [--workers W] [-- EMULATOR ARGS...]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time


def start_server(args, server, mode, preload, workdir):
    portfile = os.path.join(workdir, f'port-{mode}-{time.monotonic_ns()}')
    env = dict(os.environ)
    env.pop('LD_PRELOAD', None)
    if preload:
        if args.emulator and 'qemu' in os.path.basename(args.emulator[0]):
            env['QEMU_SET_ENV'] = f'LD_PRELOAD={preload}'  # for the guest, not for qemu itself
        else:
            env['LD_PRELOAD'] = preload
    cmd = args.emulator + [server, portfile, mode, str(args.clients)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.exists(portfile):
            with open(portfile) as f:
                text = f.read()
            if text.endswith('\n'):
                return proc, int(text)
        if proc.poll() is not None:
            sys.exit(f'server exited early ({proc.returncode}): {proc.stderr.read()}')
        time.sleep(0.02)
    proc.kill()
    sys.exit('server did not start listening within 60 s')


def run(args, server, mode, preload, workdir, expect_rc=0):
    proc, port = start_server(args, server, mode, preload, workdir)
    client = subprocess.run(args.emulator + [args.client, str(port), str(args.clients), str(args.rounds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    out, err = proc.communicate(timeout=120)
    label = f'{mode}{" + hook (" + preload + ")" if preload else ""} [{os.path.basename(server)}]'
    if client.returncode != expect_rc:
        sys.exit(f'{label}: client exited {client.returncode}, expected {expect_rc}\n'
                 f'client stderr: {client.stderr}\nserver stderr: {err}')
    if proc.returncode != 0:
        sys.exit(f'{label}: server exited {proc.returncode}: {err}')
    print(f'{label}: client exit {client.returncode}; server: {"; ".join(out.strip().splitlines())}')
    return client.stdout, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--server', required=True)
    p.add_argument('--linked-server', required=True)
    p.add_argument('--client', required=True)
    p.add_argument('--hook', required=True)
    p.add_argument('--clients', type=int, default=50)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--workers', type=int, default=0, help='run the fibers on this many worker threads')
    argv = sys.argv[1:]
    emulator = []
    if '--' in argv:  # the cross-compiling emulator and its options (e.g. qemu-aarch64 -L ...)
        emulator = argv[argv.index('--') + 1:]
        argv = argv[:argv.index('--')]
    args = p.parse_args(argv)
    args.emulator = [a for a in emulator if a]

    with tempfile.TemporaryDirectory() as workdir:
        reference, _ = run(args, args.server, 'threads', None, workdir)
        lines = reference.splitlines()
        if len(lines) != args.clients * args.rounds:
            sys.exit(f'threads: {len(lines)} replies, expected {args.clients * args.rounds}')
        mode = f'fibers{args.workers}' if args.workers else 'fibers'
        want = re.compile(rf'served {args.clients} clients, at most {args.clients} at once, on (\d+) thread\(s\)')
        threads = []
        for server, preload in ((args.server, args.hook), (args.linked_server, None)):
            transcript, summary = run(args, server, mode, preload, workdir)
            if transcript != reference:
                sys.exit(f'{mode} ({server}): the transcript differs from the threads run')
            first = summary.strip().splitlines()[0] if summary.strip() else ''
            m = want.fullmatch(first)
            if not m or not 1 <= int(m.group(1)) <= max(1, args.workers):
                sys.exit(f'{mode} ({server}): server said {first!r}, expected {want.pattern!r} with '
                         f'1..{max(1, args.workers)} thread(s)')
            threads.append(m.group(1))
        if args.workers:
            print(f'hooked echo server: identical transcripts, all {args.clients} clients at once on '
                  f'{args.workers} workers (handlers on {" and ".join(threads)} thread(s))')
            return
        run(args, args.server, 'fibers', None, workdir, expect_rc=3)
    print('hooked echo server: identical transcripts, all clients at once on one thread; unhooked fibers block')


if __name__ == '__main__':
    main()
