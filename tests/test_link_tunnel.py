import functools
import socket
import subprocess
import sys
import textwrap

import pytest
import trio
import trio.testing

from trionet.link import Link, UdpTunnelLink

LOCAL = ("127.0.0.1", 0)


def pair():
    a = UdpTunnelLink(LOCAL, ("127.0.0.1", 9))
    b = UdpTunnelLink(LOCAL, a.local_address)
    a.remote_address = b.local_address
    return a, b


def numbered(n, size=60):
    return [i.to_bytes(4, "big") + bytes(size - 4) for i in range(n)]


async def receive_n(link, n):
    got = []
    with trio.fail_after(5):
        while len(got) < n:
            got.extend(await link.receive_batch())
    return got


async def test_two_links_exchange_frames():
    a, b = pair()
    async with a, b:
        assert isinstance(a, Link)
        assert a.local_address[0] == "127.0.0.1" and a.local_address[1] > 0
        assert a.remote_address == b.local_address
        sent = numbered(20)
        for f in sent:
            a.send_frame(f)
        assert await receive_n(b, 20) == sent
        b.send_frame(b"reply" * 12)
        assert await receive_n(a, 1) == [b"reply" * 12]
        assert a.stats["tx_frames"] == 20 and b.stats["rx_frames"] == 20


async def test_batches_are_bounded():
    a, b = pair()
    async with a, b:
        for f in numbered(10):
            a.send_frame(f)
        # Loopback delivers within sendto(): readable now means all ten are there.
        await trio.lowlevel.wait_readable(b.fileno())
        assert len(await b.receive_batch(max_frames=4)) == 4
        assert len(await receive_n(b, 6)) == 6


async def test_stranger_is_dropped_and_counted():
    a, b = pair()
    async with a, b:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind(("127.0.0.1", 0))
            stranger.sendto(b"intruder" * 8, a.local_address)
        await trio.lowlevel.wait_readable(a.fileno())  # the intruder is queued first
        b.send_frame(b"friend" * 10)
        assert await receive_n(a, 1) == [b"friend" * 10]
        assert a.stats["rx_dropped_stranger"] == 1


async def test_oversize_dropped_both_ways():
    a = UdpTunnelLink(LOCAL, ("127.0.0.1", 9), mtu=100)
    b = UdpTunnelLink(LOCAL, a.local_address, mtu=1500)
    a.remote_address = b.local_address
    async with a, b:
        a.send_frame(b"x" * 115)
        assert a.stats["tx_dropped_oversize"] == 1
        b.send_frame(b"y" * 200)  # too long for a
        b.send_frame(b"z" * 60)
        assert await receive_n(a, 1) == [b"z" * 60]
        assert a.stats["rx_dropped_oversize"] == 1


async def test_close():
    a, b = pair()
    await b.aclose()

    async def reader():
        with pytest.raises(trio.ClosedResourceError):
            await a.receive_batch()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await a.receive_batch()
    a.send_frame(b"x" * 60)
    assert a.stats["tx_dropped_closed"] == 1


async def test_bad_addresses():
    with pytest.raises(ValueError, match="port"):
        UdpTunnelLink(("127.0.0.1", 70000), ("127.0.0.1", 9))
    with pytest.raises(ValueError, match="families"):
        UdpTunnelLink(("127.0.0.1", 0), ("::1", 9))


async def test_cable_between_two_processes():
    """A child process echoes every frame back through its own tunnel."""
    a = UdpTunnelLink(LOCAL, ("127.0.0.1", 9))
    child = textwrap.dedent(f"""
        import sys, trio
        from trionet.link import UdpTunnelLink

        async def main():
            async with UdpTunnelLink(("127.0.0.1", 0), {a.local_address!r}) as b:
                print(b.local_address[1], flush=True)
                got = 0
                while got < 3:
                    for frame in await b.receive_batch():
                        b.send_frame(frame[::-1])
                        got += 1

        trio.run(main)
    """)
    async with a:
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(functools.partial(
                trio.run_process, [sys.executable, "-c", child], stdout=subprocess.PIPE))
            with trio.fail_after(10):
                line = b""
                while not line.endswith(b"\n"):
                    line += await proc.stdout.receive_some()
            a.remote_address = ("127.0.0.1", int(line))
            sent = numbered(3)
            for f in sent:
                a.send_frame(f)
            assert await receive_n(a, 3) == [f[::-1] for f in sent]
        assert proc.returncode == 0
