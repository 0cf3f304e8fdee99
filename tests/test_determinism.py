"""A seeded stack repeats everything random (ISNs, ports, MACs, timestamp
offsets, SYN-cookie secrets, IP and ping identifiers): two runs of one
scenario in virtual time write the same capture, byte for byte."""

from __future__ import annotations

import hashlib
import io

import trio
import trio.testing

import trionet
from trionet.link.capture import read_pcap


async def scenario(pcap: io.BytesIO, seed: int) -> None:
    """Ping, UDP, a TCP echo through 2% loss with reordering, a SYN-cookie
    handshake and a closed port, all captured at the client's end."""
    a, b = trionet.virtual_cable(latency=0.002, loss=0.02, reorder=0.02, seed=seed)
    link = trionet.Capture(a, pcap, clock=trio.current_time)
    async with trionet.Stack(seed=seed) as client, trionet.Stack(seed=seed + 1) as server:
        client.add_interface(link, "10.0.0.1/24")
        server.add_interface(b, "10.0.0.2/24")
        server.tcp.syncookies = 2  # every SYN answered with a cookie

        async def echo(stream):
            async with stream:
                async for data in stream:
                    await stream.send_all(data)

        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_tcp, echo, 7)
            for _ in range(3):
                try:
                    await client.ping("10.0.0.2", timeout=0.5)
                except TimeoutError:
                    pass  # a lost echo is part of the scenario too
            sock = await server.open_udp_socket(53)
            peer = await client.open_udp_socket()
            await peer.sendto(b"question", ("10.0.0.2", 53))
            data = bytes(range(256)) * 400
            async with await client.open_tcp_stream("10.0.0.2", 7) as stream:
                await stream.send_all(data)
                await stream.send_eof()
                back = b""
                async for chunk in stream:
                    back += chunk
            assert back == data
            try:
                await client.open_tcp_stream("10.0.0.2", 9)
            except ConnectionRefusedError:
                pass
            await sock.aclose()
            nursery.cancel_scope.cancel()


def capture_of(seed: int) -> bytes:
    pcap = io.BytesIO()
    trio.run(scenario, pcap, seed, clock=trio.testing.MockClock(autojump_threshold=0))
    return pcap.getvalue()


def test_two_runs_of_a_seeded_scenario_capture_the_same_frames():
    first, second = capture_of(5), capture_of(5)
    frames = read_pcap(first)
    assert len(frames) > 200  # the scenario really ran
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    # Another seed: other MACs, ports, ISNs, timestamps, losses.
    other = read_pcap(capture_of(6))
    assert [f for _, f in other] != [f for _, f in frames]


def test_a_run_replays_in_another_process():
    """What a failing test printed replays elsewhere: another interpreter,
    with another hash seed, writes the same capture."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, hashlib; sys.path.insert(0, sys.argv[1])\n"
            "import test_determinism as t\n"
            "print(hashlib.sha256(t.capture_of(5)).hexdigest())")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == hashlib.sha256(capture_of(5)).hexdigest()
