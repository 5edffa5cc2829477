#!/usr/bin/env python3
"""The seed's producer/consumer generator exchange, timed: the Python peer of
generator/fiber_generator.

The consumer and the producer are the seed's, without the prints: the consumer
answers each `n = yield r`, the producer drives it with `r = c.send(n)`. One
round trip is one send() and the yield that answers it, with the producer's loop
around it. Prints one JSON object:

    {"name": "python_seed_generator_send", "ns_per_round_trip": X, ...}

With --program, one run is the seed's whole program instead (a new consumer,
started, 5 sends, closed), timed per program; the JSON then has
"ns_per_program" (the peer of seed/... in bench/stackful_vs_stackless.cpp).

Like timeit, the best of --repeat runs is kept: the slower ones measure the
machine's other work, not the exchange. Python 3 standard library only.
"""
import argparse
import json
import platform
import sys
import timeit


def consumer():
    r = ''
    while True:
        n = yield r
        if not n:
            return
        r = '200 OK'


def produce(c, sends):
    c.send(None)
    n = 0
    while n < sends:
        n = n + 1
        r = c.send(n)
    c.close()
    return r


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sends', type=int, default=1_000_000, help='send() calls per run (default 10^6)')
    parser.add_argument('--repeat', type=int, default=5, help='runs; the fastest is kept (default 5)')
    parser.add_argument('--program', action='store_true',
                        help="time the seed's whole program (5 sends, close), --sends/5 times per run")
    args = parser.parse_args()
    if args.sends < 1 or args.repeat < 1:
        parser.error('--sends and --repeat must be at least 1')

    if args.program:
        programs = max(1, args.sends // 5)
        timer = timeit.Timer(lambda: produce(consumer(), 5))
        best = min(timer.repeat(repeat=args.repeat, number=programs))
        json.dump({
            'name': 'python_seed_program',
            'ns_per_program': best / programs * 1e9,
            'programs': programs,
            'repeat': args.repeat,
            'python': f'{platform.python_implementation()} {platform.python_version()}',
        }, sys.stdout)
        sys.stdout.write('\n')
        return

    timer = timeit.Timer(lambda: produce(consumer(), args.sends))
    best = min(timer.repeat(repeat=args.repeat, number=1))
    json.dump({
        'name': 'python_seed_generator_send',
        'ns_per_round_trip': best / args.sends * 1e9,
        'sends': args.sends,
        'repeat': args.repeat,
        'python': f'{platform.python_implementation()} {platform.python_version()}',
    }, sys.stdout)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
