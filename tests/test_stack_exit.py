"""Leaving ``async with Stack()``: a normal exit closes connections with FIN
and waits at most ``close_timeout``; an exit by exception or cancellation
resets them at once; either way no task is left behind. The peer stack's
side of the cable is captured to see which of FIN and RST went out."""

from __future__ import annotations

import io
from ipaddress import IPv4Address

import pytest
import trio

import trionet
from trionet.link.capture import read_pcap
from trionet.tcp.connection import TcpState
from trionet.wire import ETHERTYPE_IPV4, PROTO_TCP, parse_ethernet, parse_ipv4
from trionet.wire.tcp import FIN, RST, parse_tcp


CLIENT_IP = IPv4Address("10.0.0.1")


def tasks_under(*roots) -> set:
    """The tasks of these tasks' or nurseries' whole trees."""
    found = set()
    todo = [child for root in roots for child in
            (root.child_tasks if isinstance(root, trio.Nursery) else [root])]
    while todo:
        task = todo.pop()
        found.add(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return found


def live_tasks() -> set:
    """Every task of this trio run."""
    return tasks_under(trio.lowlevel.current_root_task())


def flags_from(pcap: io.BytesIO, src=CLIENT_IP) -> list[int]:
    """TCP flags of every segment from ``src`` the capture saw."""
    out = []
    for _, frame in read_pcap(pcap.getvalue()):
        eth, payload = parse_ethernet(frame)
        if eth.ethertype != ETHERTYPE_IPV4:
            continue
        ip, segment = parse_ipv4(payload, verify_checksum=False)
        if ip.protocol == PROTO_TCP and ip.src == src:
            out.append(parse_tcp(segment, ip.src, ip.dst, verify_checksum=False)[0].flags)
    return out


def saw(flags: list[int], bit: int) -> bool:
    return any(f & bit for f in flags)


async def receive_all(stream) -> bytes:
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
    return b"".join(chunks)


class Setup:
    """A server stack (captured) that outlives client stacks on one cable."""

    def __init__(self, latency=0.005):
        self.cable_a, self.cable_b = trionet.virtual_cable(latency=latency, seed=5)
        self.pcap = io.BytesIO()
        self.server = trionet.Stack(seed=2)

    def client(self, **kwargs) -> trionet.Stack:
        stack = trionet.Stack(seed=1, **kwargs)
        stack.add_interface(self.cable_a, "10.0.0.1/24")
        return stack

    async def __aenter__(self):
        await self.server.__aenter__()
        self.server.add_interface(trionet.Capture(self.cable_b, self.pcap), "10.0.0.2/24")
        self.listener = (await self.server.open_tcp_listeners(80))[0]
        return self

    async def __aexit__(self, *exc):
        return await self.server.__aexit__(*exc)

    @property
    def client_flags(self) -> list[int]:
        return flags_from(self.pcap)


async def test_normal_exit_sends_fin_after_the_buffered_data(autojump_clock):
    data = bytes(range(256)) * 1200  # 300 KB: more than the send buffer holds
    async with Setup(latency=0.01) as net, trio.open_nursery() as nursery:
        got = {}

        async def serve():
            peer = await net.listener.accept()
            got["data"] = await receive_all(peer)  # ends at the client's FIN
            got["error"] = peer.connection.error

        nursery.start_soon(serve)
        client = net.client()
        async with client:
            stream = await client.open_tcp_stream("10.0.0.2", 80)
            await stream.send_all(data)  # returns with up to 256 KB still buffered
            assert stream.connection.unacked_bytes > 0
            ours = set(client.tasks())
            start = trio.current_time()
        elapsed = trio.current_time() - start
        await trio.sleep(1)
        assert got["data"] == data and got["error"] is None
        assert saw(net.client_flags, FIN) and not saw(net.client_flags, RST)
        assert elapsed < client.close_timeout
        assert not client.tcp.connections
        assert len(ours) >= 4 and not ours & live_tasks()


async def test_exit_waits_close_timeout_at_most_then_resets(autojump_clock):
    async with Setup() as net:
        net.server.tcp.config.receive_buffer = 4096  # and nobody reads: zero window
        client = net.client(close_timeout=1.5)
        async with client:
            stream = await client.open_tcp_stream("10.0.0.2", 80)
            peer = await net.listener.accept()
            with trio.move_on_after(1):
                await stream.send_all(bytes(100_000))  # stuck behind the zero window
            start = trio.current_time()
        assert trio.current_time() - start == pytest.approx(1.5, abs=0.01)
        await trio.sleep(0.1)
        # Our FIN never fit in the window; at the deadline the connection was reset.
        assert saw(net.client_flags, RST) and not saw(net.client_flags, FIN)
        with pytest.raises(trio.BrokenResourceError):
            while True:
                await peer.receive_some()
        assert not client.tcp.connections


@pytest.mark.parametrize("how", ["exception", "cancelled"])
async def test_exit_by_exception_or_cancellation_resets_at_once(autojump_clock, how):
    async with Setup() as net:
        client = net.client()
        deadline = trio.current_time() + 10
        with trio.move_on_at(deadline), pytest.raises(KeyError) if how == "exception" \
                else _nothing():
            async with client:
                stream = await client.open_tcp_stream("10.0.0.2", 80)
                peer = await net.listener.accept()
                await stream.send_all(b"queued")
                start = trio.current_time()
                if how == "exception":
                    raise KeyError("boom")
                await trio.sleep_forever()  # cancelled by move_on_after
        assert trio.current_time() == (deadline if how == "cancelled" else start)
        await trio.sleep(0.1)
        assert saw(net.client_flags, RST) and not saw(net.client_flags, FIN)
        assert await peer.receive_some() == b"queued"
        with pytest.raises(trio.BrokenResourceError):
            await peer.receive_some()
        assert not client.tcp.connections


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


async def test_close_timeout_zero_resets_at_once(autojump_clock):
    async with Setup() as net:
        client = net.client(close_timeout=0)
        async with client:
            await client.open_tcp_stream("10.0.0.2", 80)
            peer = await net.listener.accept()
            start = trio.current_time()
        assert trio.current_time() == start
        await trio.sleep(0.1)
        assert saw(net.client_flags, RST) and not saw(net.client_flags, FIN)
        with pytest.raises(trio.BrokenResourceError):
            await peer.receive_some()


async def test_peer_closed_first_both_sides_end_cleanly(autojump_clock):
    async with Setup() as net:
        client = net.client()
        async with client:
            stream = await client.open_tcp_stream("10.0.0.2", 80)
            peer = await net.listener.accept()
            await peer.send_all(b"bye")
            await peer.aclose()  # FIN from the server: the client is in CLOSE-WAIT
            assert await receive_all(stream) == b"bye"
            assert stream.state is TcpState.CLOSE_WAIT
            start = trio.current_time()
        assert trio.current_time() - start < 0.1  # one round trip for our FIN's ACK
        assert saw(net.client_flags, FIN) and not saw(net.client_flags, RST)
        # The server saw our FIN and its connection ended without error.
        assert peer.connection.state is TcpState.TIME_WAIT and peer.connection.error is None


async def test_time_wait_and_fin_wait_2_end_silently(autojump_clock):
    async with Setup() as net:
        client = net.client()
        async with client:
            done = await client.open_tcp_stream("10.0.0.2", 80)
            done_peer = await net.listener.accept()
            half = await client.open_tcp_stream("10.0.0.2", 80)
            half_peer = await net.listener.accept()
            await done.aclose()
            assert await done_peer.receive_some() == b""
            await done_peer.aclose()
            await half.aclose()
            await trio.sleep(0.1)
            assert done.connection.state is TcpState.TIME_WAIT
            assert half.connection.state is TcpState.FIN_WAIT_2
            start = trio.current_time()
        assert trio.current_time() == start  # nothing to wait for (TIME-WAIT lasts 60 s)
        await trio.sleep(0.1)
        assert not saw(net.client_flags, RST)
        assert half_peer.state is TcpState.CLOSE_WAIT  # it got our FIN, and nothing else
        assert not client.tcp.connections


async def test_connections_nobody_accepted_are_reset(autojump_clock):
    """A server's normal exit: its listener closes and resets what was never
    accepted (as Linux does); accepted connections get FIN."""
    cable_a, cable_b = trionet.virtual_cable(latency=0.005, seed=8)
    async with trionet.Stack(seed=1) as client:
        client.add_interface(cable_a, "10.0.0.1/24")
        server = trionet.Stack(seed=2)
        async with server:
            server.add_interface(cable_b, "10.0.0.2/24")
            listener = (await server.open_tcp_listeners(80))[0]
            accepted = await client.open_tcp_stream("10.0.0.2", 80)
            await listener.accept()
            waiting = await client.open_tcp_stream("10.0.0.2", 80)  # never accepted
        await trio.sleep(0.1)
        assert await accepted.receive_some() == b""
        with pytest.raises(trio.BrokenResourceError):
            await waiting.receive_some()
        assert not server.tcp.connections and not server.tcp.listeners


async def test_connect_in_progress_ends_with_the_stack(autojump_clock):
    async with Setup() as net:
        net.cable_a.loss = 1.0  # SYNs go nowhere
        errors = []
        async with trio.open_nursery() as nursery:
            client = net.client()
            async with client:
                async def connect():
                    try:
                        await client.open_tcp_stream("10.0.0.2", 80)
                    except OSError as exc:
                        errors.append(exc)
                nursery.start_soon(connect)
                await trio.sleep(0.5)
                start = trio.current_time()
            assert trio.current_time() == start
        assert len(errors) == 1
        assert not client.tcp.connections


async def test_no_task_left_behind_whatever_the_states(autojump_clock):
    async with Setup() as net:
        net.server.tcp.config.receive_buffer = 2048
        tasks_before = live_tasks()
        client = net.client(close_timeout=2.0)
        async with client:
            listener = (await client.open_tcp_listeners(9000))[0]  # a listener of our own
            streams = [await client.open_tcp_stream("10.0.0.2", 80) for _ in range(6)]
            peers = [await net.listener.accept() for _ in range(6)]
            await streams[0].aclose()                      # FIN-WAIT-2
            await peers[1].aclose()                        # CLOSE-WAIT
            with trio.move_on_after(0.5):
                await streams[2].send_all(bytes(50_000))   # stuck: zero window
            await streams[3].send_all(b"x" * 5000)         # ESTABLISHED, data in flight
            await peers[4].send_all(b"unread")             # unread data: RST on close
            await trio.sleep(0.05)
            assert listener.port == 9000
            ours = set(client.tasks())
            assert len(ours) >= 6
            start = trio.current_time()
        assert trio.current_time() - start <= 2.0 + 1e-6
        assert not ours & live_tasks()
        # What is left is what was there before, and the server's side of the connections.
        assert live_tasks() - tasks_before <= set(net.server.tasks())
        assert not client.tcp.connections and not client.tcp.listeners
        assert not client.running
