"""trionet.Stream against trio's own stream conformance checks, over
virtual_cable, on the real clock and in virtual time."""

import pytest
import trio
import trio.testing

import trionet

pytestmark = pytest.mark.filterwarnings("error::trio.TrioDeprecationWarning")


class StackPair:
    """Two stacks joined by a cable; makes connected stream pairs."""

    def __init__(self, client: trionet.Stack, server: trionet.Stack):
        self.client = client
        self.server = server

    async def pair(self, **options) -> tuple[trionet.Stream, trionet.Stream]:
        listener = (await self.server.open_tcp_listeners(0))[0]
        try:
            client = await self.client.open_tcp_stream("10.0.0.2", listener.port)
            server = await listener.accept()
        finally:
            await listener.aclose()
        for name, value in options.items():
            client.setsockopt(name, value)
            server.setsockopt(name, value)
        return client, server

    async def clogged_pair(self) -> tuple[trionet.Stream, trionet.Stream]:
        """Both directions clogged (send buffer full, the peer's window
        closed): send_all and wait_send_all_might_not_block block until the
        other side reads. check_two_way_stream also uses it flipped."""
        defaults = trionet.TcpConfig()
        for stack in (self.client, self.server):
            stack.tcp.config.send_buffer = 4096
            stack.tcp.config.receive_buffer = 4096
            # Without scaling the window closes to exactly zero (no 2**shift rounding).
            stack.tcp.config.window_scale = False
        try:
            client, server = await self.pair()
        finally:
            for stack in (self.client, self.server):
                stack.tcp.config.send_buffer = defaults.send_buffer
                stack.tcp.config.receive_buffer = defaults.receive_buffer
                stack.tcp.config.window_scale = defaults.window_scale
        for stream in (client, server):
            await fill_until_clogged(stream)
        return client, server


def clogged(stream: trionet.Stream) -> bool:
    info = stream.info
    return stream.connection.send_space == 0 and info["snd_wnd"] == 0 and info["bytes_in_flight"] == 0


async def fill_until_clogged(stream: trionet.Stream) -> None:
    """Send until the buffer is full, everything sent is ACKed and the
    peer's window is zero: decided by state, not by a timeout, so a loaded
    machine cannot make it stop early."""
    with trio.fail_after(60):
        while not clogged(stream):
            with trio.move_on_after(0.05):
                await stream.send_all(b"x" * 512)


async def run_with_pair(test, **cable_options):
    cable_a, cable_b = trionet.virtual_cable(seed=7, **cable_options)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(cable_a, "10.0.0.1/24")
        server.add_interface(cable_b, "10.0.0.2/24")
        await test(StackPair(client, server))
        assert client.stats["drop.internal.error"] == 0
        assert server.stats["drop.internal.error"] == 0


async def test_half_closeable_stream_conformance_virtual_time(autojump_clock):
    async def check(pairs):
        await trio.testing.check_half_closeable_stream(pairs.pair, pairs.clogged_pair)
    await run_with_pair(check, latency=0.001)


async def test_half_closeable_stream_conformance_real_clock():
    async def check(pairs):
        await trio.testing.check_half_closeable_stream(pairs.pair, pairs.clogged_pair)
    await run_with_pair(check)


async def test_conformance_with_nagle_on(autojump_clock):
    async def check(pairs):
        async def maker():
            return await pairs.pair(nodelay=False)
        await trio.testing.check_half_closeable_stream(maker, None)
    await run_with_pair(check, latency=0.002)
