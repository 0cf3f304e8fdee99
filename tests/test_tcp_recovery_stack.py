"""Loss recovery and congestion control through whole stacks over
virtual_cable, in virtual time (autojump clock)."""

import functools
import hashlib
import random

import pytest
import trio



@pytest.fixture
def two_stacks(two_stacks):
    """As test_tcp_stack's: the stacks seeded 11 and 12."""
    return functools.partial(two_stacks, client_seed=11, server_seed=12)


async def _reader(stream, sink: bytearray):
    async for chunk in stream:
        sink += chunk


async def test_tail_loss_repaired_by_probe_through_stacks(two_stacks, autojump_clock):
    async with two_stacks(latency=0.01, seed=21) as net:
        listener = (await net.server.open_tcp_listeners(7000))[0]
        got = bytearray()
        async with trio.open_nursery() as nursery:
            async def serve():
                server = await listener.accept()
                async with server:
                    await _reader(server, got)
            nursery.start_soon(serve)
            stream = await net.client.open_tcp_stream("10.0.0.2", 7000)
            mss = stream.info["mss"]
            head = random.Random(1).randbytes(40 * mss)
            tail = random.Random(2).randbytes(2 * mss)
            await stream.send_all(head)
            while len(got) < len(head):
                await trio.sleep(0.005)
            await trio.sleep(0.5)       # quiet: everything acknowledged
            net.a.loss = 1.0      # the last two segments vanish
            await stream.send_all(tail)
            await trio.sleep(0.001)
            net.a.loss = 0.0
            with trio.fail_after(1.0):  # well before a backed-off RTO chain
                while len(got) < len(head) + len(tail):
                    await trio.sleep(0.005)
            info = stream.info
            assert net.a.stats["tx_dropped_loss"] >= 2
            assert info["tlp_count"] >= 1
            assert info["rto_count"] == 0
            assert bytes(got) == head + tail
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_lossy_bulk_with_controller_switch_through_stacks(two_stacks, autojump_clock):
    size = 600_000
    up = random.Random(5).randbytes(size)
    async with two_stacks(latency=0.005, loss=0.02, reorder=0.02, seed=22) as net:
        listener = (await net.server.open_tcp_listeners(7001))[0]
        got = bytearray()
        async with trio.open_nursery() as nursery:
            async def serve():
                server = await listener.accept()
                async with server:
                    await _reader(server, got)
            nursery.start_soon(serve)
            stream = await net.client.open_tcp_stream("10.0.0.2", 7001)
            assert stream.info["congestion"] == "cubic"
            await stream.send_all(up[:size // 2])
            # Per-connection controller switch (TcpConnection.set_option).
            stream.connection.set_option("congestion", "newreno", trio.current_time())
            assert stream.info["congestion"] == "newreno"
            await stream.send_all(up[size // 2:])
            await stream.send_eof()
            with trio.fail_after(120):
                while len(got) < size:
                    await trio.sleep(0.01)
            info = stream.info
            assert hashlib.sha256(got).digest() == hashlib.sha256(up).digest()
            assert info["retransmits"] > 0
            assert info["fast_recoveries"] + info["tlp_count"] > 0
            await stream.aclose()
            nursery.cancel_scope.cancel()
