#!/usr/bin/env python3
"""Soak test: many TCP connections echoing random-size messages through an
impaired link, every byte checked.

    python scripts/soak.py --minutes 1

Two stacks on a virtual cable (real clock) that loses, duplicates, reorders
and corrupts frames (``checksum_offload=False``, so checksums must catch the
damage). The server echoes; each of ``--connections`` clients (100) sends
messages of random size (1 byte to ``--max-size``) and checks that exactly
the same bytes come back, until the time is up. Then every connection is
closed and the stacks exit.

Prints throughput, per-connection figures and both stacks' counters; exits
non-zero on any mismatch, any broken connection, any exception escaping a
task, or any ``drop.internal.error``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import sys
import time
import traceback

import trio

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import trionet  # noqa: E402

PORT = 7


class Soak:
    def __init__(self, args) -> None:
        self.args = args
        self.failures: list[str] = []
        self.exchanges = 0
        self.bytes = 0
        self.per_connection: list[int] = []
        self.sent_digest = hashlib.sha256()
        self.echo_digest = hashlib.sha256()
        self.client: trionet.Stack | None = None
        self.server: trionet.Stack | None = None
        self.cable_a = self.cable_b = None
        self.elapsed = 0.0
        self.retransmits = 0

    def fail(self, message: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(message)


async def echo_handler(stream) -> None:
    """The server side: every byte back, until the client's FIN."""
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def client_loop(soak: Soak, index: int, deadline: float, started) -> None:
    args = soak.args
    rng = random.Random(f"{args.seed}-{index}")
    stream = await soak.client.open_tcp_stream("10.0.0.2", PORT)
    started()
    done = 0
    try:
        async with stream:
            while trio.current_time() < deadline:
                # Sizes spread over orders of magnitude: 1 B .. max_size.
                size = max(1, int(args.max_size ** rng.random()))
                message = rng.randbytes(size)
                await stream.send_all(message)
                got = bytearray()
                while len(got) < size:
                    chunk = await stream.receive_some(size - len(got))
                    if not chunk:
                        soak.fail(f"connection {index}: EOF after {len(got)} of {size} bytes")
                        return
                    got += chunk
                if got != message:
                    where = next(i for i, (x, y) in enumerate(zip(got, message)) if x != y)
                    soak.fail(f"connection {index}: echo differs at byte {where} of {size}")
                    return
                soak.sent_digest.update(message)
                soak.echo_digest.update(got)
                soak.exchanges += 1
                soak.bytes += size
                done += 1
            soak.retransmits += stream.info.get("retransmits", 0)
            await stream.send_eof()
            if await stream.receive_some() != b"":
                soak.fail(f"connection {index}: data after EOF")
    except (trio.BrokenResourceError, OSError) as exc:
        soak.fail(f"connection {index}: broken after {done} exchanges: {exc!r}")
    finally:
        soak.per_connection.append(done)


async def run(soak: Soak) -> None:
    args = soak.args
    a, b = trionet.virtual_cable(latency=args.latency, loss=args.loss, duplicate=args.duplicate,
                                 reorder=args.reorder, corrupt=args.corrupt,
                                 checksum_offload=False, seed=args.seed, capacity=4096)
    soak.cable_a, soak.cable_b = a, b
    soak.client = trionet.Stack(seed=args.seed)
    soak.server = trionet.Stack(seed=args.seed + 1)
    async with soak.client as client, soak.server as server:
        client.add_interface(a, "10.0.0.1/24")
        server.add_interface(b, "10.0.0.2/24")
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_tcp, echo_handler, PORT)
            duration = args.minutes * 60
            start = trio.current_time()
            deadline = start + duration
            opened = [0]

            def started():
                opened[0] += 1

            async with trio.open_nursery() as clients:
                for index in range(args.connections):
                    clients.start_soon(client_loop, soak, index, deadline, started)
                if not args.quiet:
                    clients.start_soon(progress, soak, start, deadline)
            soak.elapsed = trio.current_time() - start
            if opened[0] != args.connections:
                soak.fail(f"only {opened[0]} of {args.connections} connections opened")
            nursery.cancel_scope.cancel()
    if soak.sent_digest.digest() != soak.echo_digest.digest():
        soak.fail("sha256 of everything echoed differs from everything sent")
    for name, stack in (("client", soak.client), ("server", soak.server)):
        if stack.stats["drop.internal.error"]:
            soak.fail(f"{name}: drop.internal.error = {stack.stats['drop.internal.error']}")
        if stack.tcp.connections:
            soak.fail(f"{name}: {len(stack.tcp.connections)} connections left after exit")


async def progress(soak: Soak, start: float, deadline: float) -> None:
    while trio.current_time() + 10 < deadline:
        await trio.sleep(10)
        elapsed = trio.current_time() - start
        print(f"soak: {elapsed:5.0f} s, {soak.exchanges:,} exchanges, "
              f"{soak.bytes / elapsed / 1e6:.2f} MB/s echoed", flush=True)


def report(soak: Soak) -> None:
    args = soak.args
    elapsed = soak.elapsed or 1e-9
    print()
    print(f"connections           {args.connections} (sizes 1 B .. {args.max_size:,} B)")
    print(f"link                  latency {args.latency * 1000:g} ms, loss {args.loss:.1%}, "
          f"duplicate {args.duplicate:.1%}, reorder {args.reorder:.1%}, "
          f"corrupt {args.corrupt:.1%}, checksums verified")
    print(f"duration              {elapsed:.1f} s")
    print(f"exchanges             {soak.exchanges:,} ({soak.exchanges / elapsed:,.0f}/s)")
    print(f"bytes echoed          {soak.bytes:,} ({soak.bytes / elapsed / 1e6:.2f} MB/s each way, "
          f"{2 * soak.bytes / elapsed / 1e6:.2f} MB/s on the wire)")
    if soak.per_connection:
        per = sorted(soak.per_connection)
        print(f"exchanges/connection  min {per[0]}, median {per[len(per) // 2]}, max {per[-1]}")
    print(f"retransmissions       {soak.retransmits:,} (client side)")
    for name, end in (("a->b", soak.cable_a), ("b->a", soak.cable_b)):
        if end is not None:
            keys = ("tx_frames", "tx_dropped_loss", "tx_duplicated", "tx_reordered",
                    "tx_corrupted", "tx_dropped_full")
            print(f"cable {name}            " + ", ".join(f"{k} {end.stats[k]:,}" for k in keys))
    for name, stack in (("client", soak.client), ("server", soak.server)):
        if stack is None:
            continue
        stats = stack.stats
        traffic = ", ".join(f"{k} {stats[k]:,}" for k in ("ethernet.rx", "ipv4.rx", "ipv4.tx",
                                                          "tcp.rx", "tcp.tx"))
        print(f"{name} stats          {traffic}")
        drops = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.drops().items(),
                                                            key=lambda kv: -kv[1]))
        print(f"{name} drops          {drops or 'none'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--max-size", type=int, default=65536, help="largest message (bytes)")
    parser.add_argument("--latency", type=float, default=0.002, help="one way, seconds")
    parser.add_argument("--loss", type=float, default=0.01)
    parser.add_argument("--duplicate", type=float, default=0.01)
    parser.add_argument("--reorder", type=float, default=0.01)
    parser.add_argument("--corrupt", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show the stacks' warnings")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.connections < 1 or args.max_size < 1:
        parser.error("--minutes, --connections and --max-size must be positive")
    if not args.verbose:
        logging.getLogger("trionet").setLevel(logging.ERROR)
    soak = Soak(args)
    wall = time.perf_counter()
    try:
        trio.run(run, soak)
    except BaseException as exc:
        traceback.print_exc()
        soak.fail(f"an exception escaped: {type(exc).__name__}: {exc}")
    report(soak)
    print(f"wall time             {time.perf_counter() - wall:.1f} s")
    print()
    if soak.failures:
        for failure in soak.failures:
            print(f"FAIL: {failure}")
        return 1
    print(f"PASS: {soak.exchanges:,} echoes, {soak.bytes:,} bytes, every byte exact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
