#!/usr/bin/env python3
"""Python asyncio peer of bench/loop_bench.cpp (and of bench/peers/loop_peer.go).

    loop_peer.py micro [min_seconds]   JSON: ns per ping-pong round trip, per buffered
                                       message, per spawn + join
    loop_peer.py skynet                JSON: skynet's result and wall seconds
    loop_peer.py fanout N              JSON: fan-out of N tasks (all parked at once
                                       on one queue, then released), wall seconds
    loop_peer.py echo_server [port]    an echo server, a coroutine per connection
                                       (asyncio streams); prints the port

asyncio has no channel: its channel is asyncio.Queue. The unbuffered channel of the
ping-pong is a Queue(maxsize=1) each way (the round trip waits for the answer, so
at most one value is ever in flight); the buffered channel is a Queue(maxsize=128),
ended by a None. Spawn + join is asyncio.create_task(f()) then `await` the task.
Skynet: each node creates 10 child tasks until 1M leaves, a leaf returns its index,
a parent awaits and sums its children: 499999500000. The default event loop (no
uvloop). Standard library only.
"""
import asyncio
import json
import platform
import sys
import time


async def pingpong(n):
    ping, pong = asyncio.Queue(1), asyncio.Queue(1)

    async def echo():
        while True:
            v = await ping.get()
            if v is None:
                return
            await pong.put(v)

    t = asyncio.create_task(echo())
    for i in range(n):
        await ping.put(i)
        await pong.get()
    await ping.put(None)
    await t


async def buffered(n):
    ch = asyncio.Queue(128)

    async def consume():
        total = 0
        while True:
            v = await ch.get()
            if v is None:
                return total
            total += v

    t = asyncio.create_task(consume())
    for i in range(n):
        await ch.put(i)
    await ch.put(None)
    await t


async def noop():
    pass


async def spawn_join(n):
    for _ in range(n):
        await asyncio.create_task(noop())


async def ns_per_op(f, min_seconds):
    """n doubled until a run lasts min_seconds / 4, then the median of 3 runs of 4n."""
    n = 100
    while True:
        start = time.perf_counter()
        await f(n)
        if time.perf_counter() - start >= min_seconds / 4:
            break
        n *= 2
    n *= 4
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        await f(n)
        runs.append((time.perf_counter() - start) * 1e9 / n)
    return sorted(runs)[1]


async def micro(min_seconds):
    return {'pingpong_ns': await ns_per_op(pingpong, min_seconds),
            'buffered_ns': await ns_per_op(buffered, min_seconds),
            'spawn_join_ns': await ns_per_op(spawn_join, min_seconds)}


async def skynet(num, size, div):
    if size == 1:
        return num
    size //= div
    tasks = [asyncio.create_task(skynet(num + i * size, size, div)) for i in range(div)]
    total = 0
    for t in tasks:
        total += await t
    return total


async def echo_server(port):
    async def serve(reader, writer):
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, '127.0.0.1', port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


async def fanout(n):
    """N tasks each wait on one queue (the last to start tells main first, so that
    all N wait at once), then main puts a 0 for each and waits for all to end: the
    workload of bench/stackful_vs_stackless.hpp's fanout_fiber (asyncio has no
    unbuffered channel: an unbounded Queue, whose get() parks while it is empty)."""
    loop = asyncio.get_running_loop()
    all_parked = loop.create_future()
    release = asyncio.Queue()
    state = {'waiting': 0, 'peak': 0, 'sum': 0}

    async def one(i):
        state['waiting'] += 1
        state['peak'] = max(state['peak'], state['waiting'])
        if state['waiting'] == n:
            all_parked.set_result(None)
        v = await release.get()
        state['waiting'] -= 1
        state['sum'] += i + v

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    if n > 0:
        await all_parked
    for _ in range(n):
        release.put_nowait(0)
    for t in tasks:
        await t
    return state['sum'], state['peak']


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else 'micro'
    out = {'python': platform.python_version()}
    if mode == 'micro':
        out.update(asyncio.run(micro(float(sys.argv[2]) if len(sys.argv) > 2 else 0.2)))
    elif mode == 'skynet':
        start = time.perf_counter()
        out['result'] = asyncio.run(skynet(0, 1000000, 10))
        out['seconds'] = time.perf_counter() - start
    elif mode == 'fanout':
        n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
        start = time.perf_counter()
        out['sum'], out['peak_waiting'] = asyncio.run(fanout(n))
        out['seconds'] = time.perf_counter() - start
        out['n'] = n
    elif mode == 'echo_server':
        try:
            asyncio.run(echo_server(int(sys.argv[2]) if len(sys.argv) > 2 else 0))
        except KeyboardInterrupt:
            pass
        return
    else:
        sys.exit('usage: loop_peer.py [micro [min_seconds] | skynet | fanout N | echo_server [port]]')
    print(json.dumps(out))


if __name__ == '__main__':
    main()
