"""TCP through whole stacks over virtual_cable, in virtual time."""

import errno
import functools
import hashlib
import random

import pytest
import trio

import trionet
from trionet.tcp.connection import TcpState


async def receive_all(stream: trionet.Stream) -> bytes:
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def two_stacks(two_stacks):
    """Client and server on a cable with no latency unless given."""
    return functools.partial(two_stacks, latency=0.0, client_seed=11, server_seed=12)


@pytest.mark.parametrize("loss, duplicate, reorder, seed", [
    (0.0, 0.0, 0.0, 1),
    (0.01, 0.0, 0.0, 2),
    (0.05, 0.02, 0.02, 3),
    (0.1, 0.05, 0.05, 4),
    (0.3, 0.0, 0.0, 5),
])
async def test_bulk_both_ways_byte_exact(two_stacks, autojump_clock, loss, duplicate, reorder, seed):
    size = 200_000 if loss < 0.3 else 60_000
    rng = random.Random(seed)
    up = rng.randbytes(size)
    down = rng.randbytes(size)
    async with two_stacks(latency=0.005, loss=loss, duplicate=duplicate, reorder=reorder,
                          seed=seed) as net:
        listener = (await net.server.open_tcp_listeners(5000))[0]
        got = {}

        async def server_side():
            stream = await listener.accept()
            async with stream:
                async with trio.open_nursery() as nursery:
                    async def send_down():
                        await stream.send_all(down)
                        await stream.send_eof()
                    nursery.start_soon(send_down)
                    got["up"] = await receive_all(stream)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_side)
            stream = await net.client.open_tcp_stream("10.0.0.2", 5000)
            async with stream:
                async def send_up():
                    await stream.send_all(up)
                    await stream.send_eof()
                nursery.start_soon(send_up)
                got["down"] = await receive_all(stream)
        assert hashlib.sha256(got["up"]).digest() == hashlib.sha256(up).digest()
        assert hashlib.sha256(got["down"]).digest() == hashlib.sha256(down).digest()
        if loss:
            assert net.a.stats["tx_dropped_loss"] + net.b.stats["tx_dropped_loss"] > 0


async def test_connect_to_closed_port_is_refused(two_stacks, autojump_clock):
    async with two_stacks(latency=0.001) as net:
        with pytest.raises(ConnectionRefusedError) as info:
            await net.client.open_tcp_stream("10.0.0.2", 9)
        assert info.value.errno == errno.ECONNREFUSED
        assert net.server.stats["tcp.tx_reset"] == 1


async def test_connect_times_out_after_syn_retries(two_stacks, autojump_clock):
    async with two_stacks(latency=0.001) as net:
        await net.client.ping("10.0.0.2")  # ARP resolved: the SYNs leave, and are lost
        net.a.loss = 1.0
        net.client.tcp.config.syn_retries = 3
        start = trio.current_time()
        with pytest.raises(TimeoutError) as info:
            await net.client.open_tcp_stream("10.0.0.2", 80)
        assert info.value.errno == errno.ETIMEDOUT
        # RFC 6298: 1 s initial RTO doubling per retry: 1 + 2 + 4 + 8 s.
        # (Were ARP to fail instead, connect would fail with EHOSTUNREACH:
        # tests/test_errors.py.)
        assert trio.current_time() - start == pytest.approx(15.0, abs=0.01)
        assert not net.client.tcp.connections


async def test_no_route_raises_enetunreach(two_stacks, autojump_clock):
    async with two_stacks() as net:
        with pytest.raises(OSError) as info:
            await net.client.open_tcp_stream("192.168.77.1", 80)
        assert info.value.errno == errno.ENETUNREACH


async def test_keepalive_detects_dead_peer(two_stacks, autojump_clock):
    async with two_stacks(latency=0.001) as net:
        listener = (await net.server.open_tcp_listeners(6000))[0]
        stream = await net.client.open_tcp_stream("10.0.0.2", 6000)
        server = await listener.accept()
        stream.setsockopt("keepalive", True)
        stream.setsockopt("keepalive_idle", 10.0)
        stream.setsockopt("keepalive_interval", 2.0)
        stream.setsockopt("keepalive_count", 3)
        await trio.sleep(30)  # probes are answered: still alive
        assert stream.state is TcpState.ESTABLISHED
        assert net.server.stats["tcp.rx"] >= 3
        await server.send_all(b"last words")
        assert await stream.receive_some() == b"last words"
        net.a.unplugged = True
        start = trio.current_time()
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        # RFC 1122 4.2.3.6: dead after idle + interval * count without a reply.
        assert trio.current_time() - start == pytest.approx(10.0 + 2.0 * 3, abs=0.05)


async def test_keepalive_off_sends_nothing_when_idle(two_stacks, autojump_clock):
    async with two_stacks(latency=0.001) as net:
        listener = (await net.server.open_tcp_listeners(6001))[0]
        stream = await net.client.open_tcp_stream("10.0.0.2", 6001)
        server = await listener.accept()
        sent_before = (net.client.stats["tcp.tx"], net.server.stats["tcp.tx"])
        await trio.sleep(3 * 3600)
        assert (net.client.stats["tcp.tx"], net.server.stats["tcp.tx"]) == sent_before
        assert stream.state is TcpState.ESTABLISHED and server.state is TcpState.ESTABLISHED


async def test_time_wait_lasts_two_msl(two_stacks, autojump_clock):
    async with two_stacks(latency=0.001) as net:
        net.client.tcp.config.msl = 5.0
        listener = (await net.server.open_tcp_listeners(7000))[0]
        stream = await net.client.open_tcp_stream("10.0.0.2", 7000)
        server = await listener.accept()
        await stream.aclose()  # the client closes first: it ends in TIME-WAIT
        assert await server.receive_some() == b""
        await server.aclose()
        key = next(iter(net.client.tcp.connections))
        while net.client.tcp.connections[key].machine.state is not TcpState.TIME_WAIT:
            await trio.sleep(0.001)
        entered = trio.current_time()
        while key in net.client.tcp.connections:
            await trio.sleep(0.01)
        assert trio.current_time() - entered == pytest.approx(10.0, abs=0.02)
        assert not net.server.tcp.connections


async def test_simultaneous_open(two_stacks, autojump_clock):
    async with two_stacks(latency=0.01) as net:
        async with trio.open_nursery() as nursery:
            streams = {}

            async def open_from(name, stack, peer):
                streams[name] = await stack.open_tcp_stream(peer, 4444, local_port=4444)
            nursery.start_soon(open_from, "a", net.client, "10.0.0.2")
            nursery.start_soon(open_from, "b", net.server, "10.0.0.1")
        a, b = streams["a"], streams["b"]
        await a.send_all(b"ping")
        assert await b.receive_some() == b"ping"
        await b.send_all(b"pong")
        assert await a.receive_some() == b"pong"
        await a.aclose()
        await b.aclose()


async def test_backlog_overflow_is_dropped_not_grown(two_stacks, autojump_clock):
    async with two_stacks(latency=0.001) as net:
        net.client.tcp.config.syn_retries = 2
        listener = (await net.server.open_tcp_listeners(8000, backlog=2))[0]
        results = []

        async def connect(i):
            try:
                stream = await net.client.open_tcp_stream("10.0.0.2", 8000)
                results.append(("ok", i))
                await trio.sleep_forever()
            except TimeoutError:
                results.append(("timeout", i))

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(connect, i)
            await trio.sleep(20)  # nobody accepts: all SYN retries are spent
            assert sum(1 for r in results if r[0] == "ok") == 2
            assert sum(1 for r in results if r[0] == "timeout") == 3
            assert net.server.stats["drop.tcp.accept_queue_full"] >= 3
            # The two queued connections are accepted and work.
            for _ in range(2):
                server_stream = await listener.accept()
                await server_stream.send_all(b"hi")
            nursery.cancel_scope.cancel()


async def test_serve_tcp_with_handler_closing_gracefully(two_stacks, autojump_clock):
    async with two_stacks(latency=0.002) as net:
        async def handler(stream):
            async with stream:
                data = await stream.receive_some()
                await stream.send_all(data.upper())

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(net.server.serve_tcp, handler, 0)
            port = listeners[0].port
            for _ in range(3):
                async with await net.client.open_tcp_stream("10.0.0.2", port) as stream:
                    await stream.send_all(b"hello")
                    assert await receive_all(stream) == b"HELLO"
            nursery.cancel_scope.cancel()


async def test_aclose_in_cancelled_scope_resets_peer(two_stacks, autojump_clock):
    async with two_stacks(latency=0.002) as net:
        listener = (await net.server.open_tcp_listeners(9000))[0]
        stream = await net.client.open_tcp_stream("10.0.0.2", 9000)
        server = await listener.accept()
        with trio.CancelScope() as scope:
            scope.cancel()
            await stream.aclose()
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"x")


async def test_stream_addresses_info_and_options(two_stacks, autojump_clock):
    async with two_stacks(latency=0.003) as net:
        listener = (await net.server.open_tcp_listeners(9100))[0]
        stream = await net.client.open_tcp_stream("10.0.0.2", 9100)
        server = await listener.accept()
        assert stream.remote_address == ("10.0.0.2", 9100)
        assert server.local_address == ("10.0.0.2", 9100)
        assert server.remote_address == stream.local_address
        await stream.send_all(b"x" * 100_000)
        received = 0
        while received < 100_000:
            received += len(await server.receive_some())
        info = stream.info
        assert info["state"] == "ESTABLISHED"
        assert info["srtt"] == pytest.approx(0.006, abs=0.005)
        for key in ("rto", "cwnd", "ssthresh", "bytes_in_flight", "retransmits"):
            assert key in info
        assert stream.getsockopt("nodelay") is True
        stream.setsockopt("nodelay", False)
        assert stream.getsockopt("nodelay") is False
        assert stream.getsockopt("congestion") == "cubic"
        stream.setsockopt("congestion", "newreno")
        assert stream.getsockopt("congestion") == "newreno" and stream.info["congestion"] == "newreno"
        with pytest.raises(ValueError, match="congestion"):
            stream.setsockopt("congestion", "bbr9")
        with pytest.raises(ValueError, match="unknown option"):
            stream.setsockopt("bogus", 1)
        with pytest.raises(ValueError, match="keepalive_idle"):
            stream.setsockopt("keepalive_idle", -1)
        assert "una" in stream.window_diagram() or "nxt" in stream.window_diagram()


async def test_listener_port_in_use_and_bad_arguments(two_stacks, autojump_clock):
    async with two_stacks() as net:
        await net.server.open_tcp_listeners(9200)
        with pytest.raises(OSError) as info:
            await net.server.open_tcp_listeners(9200)
        assert info.value.errno == errno.EADDRINUSE
        with pytest.raises(ValueError, match="port"):
            await net.client.open_tcp_stream("10.0.0.2", 70000)
        with pytest.raises(ValueError, match="host"):
            await net.client.open_tcp_stream(None, 80)
        # A name is resolved (issue 12); one nobody knows: gaierror.
        with pytest.raises(OSError):
            await net.client.open_tcp_stream("not-an-address", 80)
        with pytest.raises(TypeError, match="port"):
            await net.client.open_tcp_stream("10.0.0.2", "80")


async def test_stack_exit_closes_open_connections(autojump_clock):
    cable_a, cable_b = trionet.virtual_cable(latency=0.001, seed=3)
    async with trionet.Stack(seed=1) as server:
        server.add_interface(cable_b, "10.0.0.2/24")
        listener = (await server.open_tcp_listeners(9300))[0]
        async with trionet.Stack(seed=2) as client:
            client.add_interface(cable_a, "10.0.0.1/24")
            stream = await client.open_tcp_stream("10.0.0.2", 9300)
            server_stream = await listener.accept()
        # The client stack is gone: its connection was closed with FIN (a
        # normal exit; tests/test_stack_exit.py has the rest), not left half-open.
        assert await server_stream.receive_some() == b""
        assert not client.tcp.connections
