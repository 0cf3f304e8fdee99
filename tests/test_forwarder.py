"""Forwarders: ``stack.open_tcp_forwarder(interface)`` and
``stack.open_udp_forwarder(interface)`` take flows to *any* address that
arrive on an interface (as gVisor's tcp.Forwarder, the base of tun2socks),
in virtual time over virtual_cable.

``client`` (10.0.0.1, fd00::1) routes everything via ``fwd`` (10.0.0.2,
fd00::2), which runs the forwarder: the client reaches "the Internet"
(198.51.100.0/24, 2001:db8::/32, documentation addresses, RFC 5737 and RFC
3849) and ``fwd`` answers for every address as if it were its own.
"""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from ipaddress import IPv4Address

import attrs
import pytest
import trio

import trionet
from trionet import wire
from trionet.wire.tcp import ACK, RST, SYN, TcpHeader, TcpOptions, build_tcp, parse_tcp

from test_stack_support import STACK_MAC, RawHost

C4, F4 = "10.0.0.1", "10.0.0.2"
C6, F6 = "fd00::1", "fd00::2"
VIRTUAL_TIME_LIMIT = 1000.0


@attrs.define
class Net:
    client: trionet.Stack
    fwd: trionet.Stack


async def until(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@asynccontextmanager
async def forwarding_net(*, fwd_kwargs=None):
    a, b = trionet.virtual_cable(latency=0.002, seed=7)
    async with trionet.Stack(seed=1) as client, \
            trionet.Stack(seed=2, **(fwd_kwargs or {})) as fwd:
        client.add_interface(a, f"{C4}/24", gateway=F4).add_address(f"{C6}/64")
        fwd.add_interface(b, f"{F4}/24", mac=STACK_MAC).add_address(f"{F6}/64")
        await until(lambda: client.is_local_address(C6) and fwd.is_local_address(F6))
        client.add_route("::/0", gateway=F6)
        with trio.fail_after(VIRTUAL_TIME_LIMIT):
            yield Net(client, fwd)


async def read_all(stream) -> bytes:
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
    return b"".join(chunks)


# --- TCP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("destination", [("198.51.100.7", 443), ("2001:db8::7", 8080)])
async def test_tcp_forwarder_takes_any_destination(autojump_clock, destination):
    # The handshake is completed as if the destination were ours; the stream
    # shows it as its local address, and data and half-close go both ways
    # (RFC 9293 3.6: each side closes its own direction).
    async with forwarding_net() as net:
        forwarder = await net.fwd.open_tcp_forwarder(net.fwd.interfaces[0])
        host, port = destination
        async with trio.open_nursery() as nursery:
            async def server():
                stream = await forwarder.accept()
                assert stream.local_address == (host, port)
                client_ip = C4 if ":" not in host else C6
                assert stream.remote_address[0] == client_ip
                assert await read_all(stream) == b"request" * 1000  # until the client's FIN
                await stream.send_all(b"answer" * 5000)
                await stream.aclose()
            nursery.start_soon(server)
            stream = await net.client.open_tcp_stream(host, port)
            assert stream.remote_address == (host, port)
            await stream.send_all(b"request" * 1000)
            await stream.send_eof()
            assert await read_all(stream) == b"answer" * 5000
            await stream.aclose()
        assert net.fwd.stats["tcp.passive_opens"] == 1
        await forwarder.aclose()


async def test_tcp_forwarder_with_serve_listeners_many_destinations(autojump_clock):
    async with forwarding_net() as net:
        forwarder = await net.fwd.open_tcp_forwarder("eth0")
        seen = []

        async def handler(stream):
            seen.append(stream.local_address)
            async with stream:
                data = await read_all(stream)
                await stream.send_all(f"{stream.local_address}".encode() + data)

        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, [forwarder])
            destinations = [(f"198.51.100.{i}", 1000 + i) for i in range(1, 11)] + \
                [(f"2001:db8::{i:x}", 2000 + i) for i in range(1, 6)]

            async def one(host, port):
                stream = await net.client.open_tcp_stream(host, port)
                await stream.send_all(b"!")
                await stream.send_eof()
                assert await read_all(stream) == f"{(host, port)}".encode() + b"!"
                await stream.aclose()

            async with trio.open_nursery() as clients:
                for host, port in destinations:
                    clients.start_soon(one, host, port)
            nursery.cancel_scope.cancel()
        assert sorted(seen) == sorted(destinations)


async def test_own_listener_ping_and_closed_ports_beside_the_forwarder(autojump_clock):
    # Our own addresses keep their meaning: their listeners, ping, RST for
    # a closed port (RFC 9293 3.10.7.1); ping to other addresses is not
    # answered for them (only TCP and UDP are forwarded).
    async with forwarding_net() as net:
        forwarder = await net.fwd.open_tcp_forwarder(net.fwd.interfaces[0])
        (listener,) = await net.fwd.open_tcp_listeners(80)
        for own in (F4, F6):
            async with trio.open_nursery() as nursery:
                async def accept():
                    stream = await listener.accept()
                    assert stream.local_address == (own, 80)
                    await stream.send_all(b"own")
                    await stream.aclose()
                nursery.start_soon(accept)
                stream = await net.client.open_tcp_stream(own, 80)
                assert await read_all(stream) == b"own"
                await stream.aclose()
            with pytest.raises(ConnectionRefusedError):
                await net.client.open_tcp_stream(own, 81)
            await net.client.ping(own)
        assert forwarder.accept_queue == 0 and not net.fwd.tcp.forwarders[
            net.fwd.interfaces[0]].embryos
        assert net.fwd.stats["tcp.passive_opens"] == 2
        for other in ("198.51.100.1", "2001:db8::1"):
            with pytest.raises(TimeoutError):
                await net.client.ping(other, timeout=1)
        await forwarder.aclose()


async def test_closing_the_forwarder_keeps_its_streams(autojump_clock):
    async with forwarding_net() as net:
        iface = net.fwd.interfaces[0]
        forwarder = await net.fwd.open_tcp_forwarder(iface)
        client_stream = await net.client.open_tcp_stream("198.51.100.9", 22)
        server_stream = await forwarder.accept()
        await forwarder.aclose()
        assert net.fwd.resources()["tcp_forwarders"] == 0
        # The stream made before goes on.
        await client_stream.send_all(b"still here")
        assert await server_stream.receive_some() == b"still here"
        await server_stream.send_all(b"yes")
        assert await client_stream.receive_some() == b"yes"
        # New flows are treated as without a forwarder: not for us, dropped
        # (the stack does not route); our own closed ports answer RST.
        before = net.fwd.stats["drop.ipv4.not_for_us"]
        with trio.move_on_after(3):
            await net.client.open_tcp_stream("198.51.100.10", 22)
            pytest.fail("a connection went through a closed forwarder")
        assert net.fwd.stats["drop.ipv4.not_for_us"] > before
        with pytest.raises(ConnectionRefusedError):
            await net.client.open_tcp_stream(F4, 22)
        await client_stream.aclose()
        assert await read_all(server_stream) == b""
        await server_stream.aclose()
        await until(lambda: not net.fwd.tcp.connections, timeout=300)
        # The last forwarded connection gone: nothing is intercepted now.
        assert not net.fwd.network.ipv4.intercepts
        # A new forwarder works again; a second on the same interface does not.
        again = await net.fwd.open_tcp_forwarder(iface)
        with pytest.raises(OSError):
            await net.fwd.open_tcp_forwarder(iface)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(net.client.open_tcp_stream, "198.51.100.11", 22)
            stream = await again.accept()
            assert stream.local_address == ("198.51.100.11", 22)
        await again.aclose()


async def test_forwarded_connections_count_against_max_connections(autojump_clock):
    async with forwarding_net(fwd_kwargs={"max_connections": 8}) as net:
        forwarder = await net.fwd.open_tcp_forwarder(net.fwd.interfaces[0])
        streams = []
        for i in range(8):
            streams.append(await net.client.open_tcp_stream(f"198.51.100.{i + 1}", 80))
            streams.append(await forwarder.accept())
        assert len(net.fwd.tcp.connections) == 8
        with trio.move_on_after(3):
            await net.client.open_tcp_stream("198.51.100.99", 80)
            pytest.fail("a ninth connection was taken")
        assert net.fwd.stats["drop.tcp.too_many_connections"] >= 1
        for stream in streams:
            await stream.aclose()
        await forwarder.aclose()


async def test_syn_flood_to_random_destinations_is_absorbed(nursery, autojump_clock):
    # RFC 4987 3.6: beyond the SYN queue, SYN cookies; nothing is kept for
    # them, whatever destinations the SYNs name.
    a, b = trionet.virtual_cable(latency=0.001, seed=3)
    host = RawHost(b, "10.0.0.9")
    await nursery.start(host.run)
    async with trionet.Stack(seed=4) as stack:
        stack.add_interface(a, f"{F4}/24", mac=STACK_MAC)
        forwarder = await stack.open_tcp_forwarder(stack.interfaces[0])
        forwarder.syn_backlog = 64
        rng = random.Random(5)
        destinations = set()
        for i in range(2000):
            dst = IPv4Address(rng.randrange(0x01000000, 0xDF000000))
            if dst.is_loopback or dst in stack.interfaces[0].addresses[0].network:
                dst = IPv4Address("198.51.100.1")
            dport = rng.randrange(1, 65536)
            destinations.add((dst, dport))
            syn = TcpHeader(rng.randrange(1024, 65536), dport, rng.randrange(1 << 32), 0, SYN,
                            65535, 0, TcpOptions(mss=1460))
            host.send_ip(host.ip_packet(dst, wire.PROTO_TCP,
                                        build_tcp(syn, b"", host.ip, dst)))
            if i % 100 == 99:
                await trio.sleep(0.01)
        await trio.sleep(0.5)
        resources = stack.resources()
        assert resources["tcp_handshakes"] <= 64
        assert resources["tcp_connections"] <= 64
        assert resources["tcp_accept_queue"] == 0
        assert stack.stats["tcp.syncookies_sent"] >= 2000 - 64
        # Every SYN-ACK comes from the address the SYN was sent to.
        sources = set()
        verify = not b.checksum_offload
        for _, header, payload in host.ip_frames():
            if header.protocol == wire.PROTO_TCP:
                tcp, _ = parse_tcp(payload, header.src, header.dst, verify_checksum=verify)
                assert tcp.flags == SYN | ACK
                sources.add((header.src, tcp.src_port))
        assert sources <= destinations and len(sources) > 1900
        # The flood's handshakes time out and are forgotten.
        await trio.sleep(200)
        assert stack.resources()["tcp_handshakes"] == 0
        assert not stack.tcp.connections
        await forwarder.aclose()


async def test_cookie_ack_to_a_random_destination_makes_the_stream(nursery, autojump_clock):
    a, b = trionet.virtual_cable(latency=0.001, seed=3)
    host = RawHost(b, "10.0.0.9")
    await nursery.start(host.run)
    async with trionet.Stack(seed=4) as stack:
        stack.add_interface(a, f"{F4}/24", mac=STACK_MAC)
        forwarder = await stack.open_tcp_forwarder(stack.interfaces[0])
        forwarder.syn_backlog = 0
        dst = IPv4Address("203.0.113.77")
        syn = TcpHeader(40000, 993, 1000, 0, SYN, 65535, 0, TcpOptions(mss=1460))
        host.send_ip(host.ip_packet(dst, wire.PROTO_TCP, build_tcp(syn, b"", host.ip, dst)))
        _, header, payload = await host.receive_ip(wire.PROTO_TCP)
        verify = not b.checksum_offload
        synack, _ = parse_tcp(payload, header.src, header.dst, verify_checksum=verify)
        assert header.src == dst and synack.flags == SYN | ACK
        assert stack.stats["tcp.syncookies_sent"] == 1 and not stack.tcp.connections
        ack = TcpHeader(40000, 993, 1001, (synack.seq + 1) & 0xFFFFFFFF, ACK, 65535, 0,
                        TcpOptions())
        host.send_ip(host.ip_packet(dst, wire.PROTO_TCP, build_tcp(ack, b"hi", host.ip, dst)))
        stream = await forwarder.accept()
        assert stream.local_address == (str(dst), 993)
        assert await stream.receive_some() == b"hi"
        # A stray segment for no connection: RST from that address.
        stray = TcpHeader(40001, 994, 5, 7, ACK, 65535, 0, TcpOptions())
        host.send_ip(host.ip_packet(dst, wire.PROTO_TCP, build_tcp(stray, b"", host.ip, dst)))
        while True:
            _, header, payload = await host.receive_ip(wire.PROTO_TCP)
            seg, _ = parse_tcp(payload, header.src, header.dst, verify_checksum=verify)
            if seg.flags & RST:
                break
        assert header.src == dst and seg.src_port == 994 and seg.seq == 7
        await stream.aclose()
        await forwarder.aclose()


# --- UDP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("destination", [("198.51.100.53", 53), ("2001:db8::53", 5353)])
async def test_udp_forwarder_both_addresses_and_reply_from_the_destination(autojump_clock,
                                                                           destination):
    async with forwarding_net() as net:
        forwarder = await net.fwd.open_udp_forwarder(net.fwd.interfaces[0])
        own = await net.fwd.open_udp_socket(53)
        sock = await net.client.open_udp_socket()
        await sock.sendto(b"query", destination)
        data, source, dest = await forwarder.receive()
        assert data == b"query" and dest == destination
        assert source == ((C4 if ":" not in destination[0] else C6), sock.local_port)
        await forwarder.sendto(b"answer", source, source_address=dest)
        data, sender = await sock.recvfrom()
        assert data == b"answer" and sender == destination
        # Our own address with a socket: the socket's, not the forwarder's.
        mine = F4 if ":" not in destination[0] else F6
        await sock.sendto(b"to the stack", (mine, 53))
        data, _ = await own.recvfrom()
        assert data == b"to the stack" and forwarder.queued == 0
        with pytest.raises(ValueError):
            await forwarder.sendto(b"x", source, source_address=("224.0.0.1", 5))
        await forwarder.aclose()
        assert net.fwd.resources()["udp_forwarders"] == 0
        # Closed: later datagrams are not for us, dropped as before.
        before = net.fwd.stats.drops()
        await sock.sendto(b"late", destination)
        await trio.sleep(1)
        assert net.fwd.stats.drops() != before


async def test_udp_forwarder_queue_is_bounded(autojump_clock):
    async with forwarding_net() as net:
        forwarder = await net.fwd.open_udp_forwarder("eth0", queue_size=4)
        sock = await net.client.open_udp_socket()
        for i in range(10):
            await sock.sendto(b"%d" % i, ("198.51.100.1", 9))
        await until(lambda: net.fwd.stats["udp.rx"] == 10)
        assert forwarder.queued == 4 and forwarder.dropped == 6
        assert net.fwd.stats["drop.udp.forwarder_queue_full"] == 6
        assert net.fwd.resources()["udp_forwarder_queue"] == 4
        for i in range(4):
            assert (await forwarder.receive())[0] == b"%d" % i
        forwarder.close()
        with pytest.raises(trio.ClosedResourceError):
            await forwarder.receive()


async def test_forwarder_arguments_are_checked(autojump_clock):
    async with forwarding_net() as net:
        with pytest.raises(ValueError):
            await net.fwd.open_tcp_forwarder("nope")
        with pytest.raises(TypeError):
            await net.fwd.open_udp_forwarder(3)
        with pytest.raises(ValueError):
            await net.fwd.open_tcp_forwarder(net.client.interfaces[0])
        udp = await net.fwd.open_udp_forwarder("eth0")
        with pytest.raises(OSError):
            await net.fwd.open_udp_forwarder("eth0")
        udp.close()
