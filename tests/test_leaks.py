"""No leaks: after 10,000 connections opened and closed in every way
(gracefully, by RST, by timeout, half-open), both stacks' tasks, connection
tables, listener state, and memory are back to their baseline. Virtual time
(autojump), so TIME-WAIT and every timeout pass at once."""

from __future__ import annotations

import gc
import tracemalloc

import pytest
import trio

import trionet
from trionet.tcp.connection import TcpConnection
from trionet.tcp.socket import TcpSocket


PORT = 80
BATCH = 250
#: Connections per way of ending; four ways.
PER_KIND = 2500


def live(cls) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is cls)


def state_of(stack: trionet.Stack) -> dict:
    """Everything that must return to its baseline."""
    held = stack.resources()
    return {
        "tasks": held["tasks"],
        "connections": held["tcp_connections"],
        "connecting": held["tcp_connecting"],
        "listeners": sorted(map(str, stack.tcp.listeners)),
        "embryos": held["tcp_handshakes"],
        "accept queue": held["tcp_accept_queue"],
        "udp": held["udp_sockets"],
        "pings": held["pings"],
        "reassembly": held["reassembly_datagrams"],
        "arp pending": held["arp_pending"],
        "arp entries": held["arp_entries"],
        "arp queue": held["arp_queue"],
    }


class Bench:
    def __init__(self, client, server, cable_a, cable_b):
        self.client, self.server = client, server
        self.a, self.b = cable_a, cable_b
        self.outcomes: dict[str, int] = {}

    def count(self, what: str) -> None:
        self.outcomes[what] = self.outcomes.get(what, 0) + 1

    async def handler(self, stream) -> None:
        try:
            async with stream:
                async for data in stream:
                    await stream.send_all(data)
            self.count("server: closed")
        except trio.BrokenResourceError:
            self.count("server: broken")

    async def connect(self):
        return await self.client.open_tcp_stream("10.0.0.2", PORT)

    # --- the four ways to end -----------------------------------------------------

    async def graceful(self) -> None:
        async with await self.connect() as stream:
            await stream.send_all(b"hello")
            assert await stream.receive_some() == b"hello"
        self.count("graceful")

    async def reset(self) -> None:
        stream = await self.connect()
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"hello"
        await trio.aclose_forcefully(stream)
        self.count("reset")

    async def timeouts(self, n: int) -> None:
        """Half the connections are open when the cable is cut: the client's
        retransmissions run out, the server's keepalive finds the peer dead.
        The other half try to connect while it is cut: the SYNs time out."""
        streams = []
        async with trio.open_nursery() as nursery:
            async def open_one():
                stream = await self.connect()
                await stream.send_all(b"x")
                assert await stream.receive_some() == b"x"
                streams.append(stream)
            for _ in range(n // 2):
                nursery.start_soon(open_one)
        self.a.unplugged = True
        async with trio.open_nursery() as nursery:
            async def retransmit_out(stream):
                await stream.send_all(b"lost")
                with pytest.raises(trio.BrokenResourceError):
                    await stream.receive_some()
                await stream.aclose()
                self.count("timeout: retransmissions")

            async def syn_out():
                with pytest.raises(OSError):  # TimeoutError (or EHOSTUNREACH once ARP expires)
                    await self.connect()
                self.count("timeout: connect")
            for stream in streams:
                nursery.start_soon(retransmit_out, stream)
            for _ in range(n - n // 2):
                nursery.start_soon(syn_out)
        await trio.sleep(30)  # the server's keepalives give up too
        self.a.unplugged = False

    async def half_open(self, n: int) -> None:
        """Half: handshakes left half-done (every SYN-ACK is lost; the server's
        embryos time out). Half: the client resets, the RST is lost, and the
        server's half-open connection learns it by a keepalive's RST reply."""
        self.b.loss = 1.0
        async with trio.open_nursery() as nursery:
            async def embryo():
                with pytest.raises(TimeoutError):
                    await self.connect()
                self.count("half-open: handshake")
            for _ in range(n // 2):
                nursery.start_soon(embryo)
        await trio.sleep(30)  # past the server's SYN-ACK retries
        self.b.loss = 0.0
        streams = []
        async with trio.open_nursery() as nursery:
            async def open_one():
                stream = await self.connect()
                await stream.send_all(b"x")
                assert await stream.receive_some() == b"x"
                streams.append(stream)
            for _ in range(n - n // 2):
                nursery.start_soon(open_one)
        self.a.loss = 1.0
        for stream in streams:
            await trio.aclose_forcefully(stream)  # the RST goes nowhere
            self.count("half-open: reset lost")
        self.a.loss = 0.0
        await trio.sleep(30)  # keepalive probe -> RST from the client -> gone

    async def run(self, kind: str, n: int) -> None:
        if kind in ("graceful", "reset"):
            for start in range(0, n, BATCH):
                async with trio.open_nursery() as nursery:
                    for _ in range(min(BATCH, n - start)):
                        nursery.start_soon(getattr(self, kind))
        else:
            for start in range(0, n, BATCH):
                await getattr(self, kind)(min(BATCH, n - start))
        await trio.sleep(70)  # TIME-WAIT (2 MSL = 60 s) and the last timers


def configure(client: trionet.Stack, server: trionet.Stack) -> None:
    client.tcp.config.max_retries = 3
    client.tcp.config.syn_retries = 1
    server.tcp.config.synack_retries = 2
    server.tcp.config.keepalive = True
    server.tcp.config.keepalive_idle = 5.0
    server.tcp.config.keepalive_interval = 1.0
    server.tcp.config.keepalive_count = 2


async def test_ten_thousand_connections_leave_nothing_behind(autojump_clock):
    cable_a, cable_b = trionet.virtual_cable(latency=0.001, seed=9)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(cable_a, "10.0.0.1/24")
        server.add_interface(cable_b, "10.0.0.2/24")
        configure(client, server)
        bench = Bench(client, server, cable_a, cable_b)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_tcp, bench.handler, PORT)
            kinds = ("graceful", "reset", "timeouts", "half_open")
            for kind in kinds:  # warm up: caches, interned objects, first-use paths
                await bench.run(kind, 4)
            gc.collect()
            baseline = {"client": state_of(client), "server": state_of(server)}
            objects = (live(TcpSocket), live(TcpConnection), live(trionet.Stream))
            bench.outcomes.clear()
            # Memory: sets and dicts (the trio runner's task set, the connection
            # table) keep the size they grew to, so the first half of the run
            # is measured against the second: what still grows then grows with
            # the number of connections.
            tracemalloc.start()
            try:
                for kind in kinds:
                    await bench.run(kind, PER_KIND // 2)
                gc.collect()
                half = tracemalloc.get_traced_memory()[0]
                for kind in kinds:
                    await bench.run(kind, PER_KIND - PER_KIND // 2)
                gc.collect()
                grown = tracemalloc.get_traced_memory()[0] - half
            finally:
                tracemalloc.stop()
            after = {"client": state_of(client), "server": state_of(server)}
            assert after == baseline
            assert (live(TcpSocket), live(TcpConnection), live(trionet.Stream)) == objects
            # 5,000 connections leaking even 16 bytes each would be 80 kB.
            assert grown < 64 * 1024, f"{grown} bytes more after 5,000 more connections"
            n = PER_KIND
            assert bench.outcomes["graceful"] == n and bench.outcomes["reset"] == n
            assert bench.outcomes["timeout: retransmissions"] + \
                bench.outcomes["timeout: connect"] == n
            assert bench.outcomes["half-open: handshake"] + \
                bench.outcomes["half-open: reset lost"] == n
            assert server.stats["tcp.passive_opens"] >= 3 * n
            nursery.cancel_scope.cancel()


# --- the leaks found, one by one (each left a task and a table entry behind) -------


async def test_forceful_close_ends_the_connection_task(autojump_clock):
    """aclose() in a cancelled scope resets the connection; its task used to
    wait for a segment that never came."""
    cable_a, cable_b = trionet.virtual_cable(latency=0.001, seed=3)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(cable_a, "10.0.0.1/24")
        server.add_interface(cable_b, "10.0.0.2/24")
        listener = (await server.open_tcp_listeners(80))[0]
        await trio.sleep(0.01)  # the interfaces' tasks have started
        tasks = client.resources()["tasks"]
        stream = await client.open_tcp_stream("10.0.0.2", 80)
        peer = await listener.accept()
        await peer.send_all(b"unread")  # so that a plain aclose() resets too
        await trio.aclose_forcefully(stream)
        other = await client.open_tcp_stream("10.0.0.2", 80)
        other_peer = await listener.accept()
        await other_peer.send_all(b"unread")
        await trio.sleep(0.1)
        await other.aclose()  # unread data: RST (RFC 2525 2.17)
        await trio.sleep(0.1)
        assert not client.tcp.connections
        assert client.resources()["tasks"] == tasks


async def test_cancelled_or_failed_connect_ends_the_connection_task(autojump_clock):
    cable_a, cable_b = trionet.virtual_cable(latency=0.001, seed=3)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(cable_a, "10.0.0.1/24")
        server.add_interface(cable_b, "10.0.0.2/24")
        await client.ping("10.0.0.2")
        tasks = client.resources()["tasks"]
        cable_a.loss = 1.0
        with trio.move_on_after(0.5):
            await client.open_tcp_stream("10.0.0.2", 80)  # SYNs lost: cancelled
        with pytest.raises(OSError):
            await client.open_tcp_stream("10.0.0.99", 80)  # ARP fails: EHOSTUNREACH
        await trio.sleep(0.01)  # the tasks run to their end
        assert not client.tcp.connections and client.resources()["tcp_connecting"] == 0
        assert client.resources()["tasks"] == tasks


async def test_closed_listener_ends_its_pending_connections(autojump_clock):
    cable_a, cable_b = trionet.virtual_cable(latency=0.001, seed=3)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server:
        client.add_interface(cable_a, "10.0.0.1/24")
        server.add_interface(cable_b, "10.0.0.2/24")
        await trio.sleep(0.01)  # the interfaces' tasks have started
        tasks = server.resources()["tasks"]
        listener = (await server.open_tcp_listeners(80))[0]
        await client.open_tcp_stream("10.0.0.2", 80)  # established, never accepted
        cable_b.loss = 1.0  # SYN-ACKs lost: the next handshake stays half-done

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.open_tcp_stream, "10.0.0.2", 80)
            await trio.sleep(0.1)
            assert len(server.tcp.connections) == 2
            await listener.aclose()
            nursery.cancel_scope.cancel()
        await trio.sleep(0.01)
        assert not server.tcp.connections
        assert server.resources()["tasks"] == tasks
