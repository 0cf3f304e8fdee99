"""ICMP errors for TCP (RFC 5927, RFC 1122 4.2.3.9, RFC 1191) over
virtual_cable, in virtual time: hand-built ICMP from a raw endpoint on the
cable, and path MTU discovery through routers with a small-MTU link."""

from __future__ import annotations

import errno
import functools
import hashlib
import random
import struct
from ipaddress import IPv4Address

import pytest
import trio

import trionet
from trionet.tcp.connection import TcpState
from trionet.wire import (ETHERTYPE_IPV4, IcmpMessage, IPv4Header, build_ethernet, build_icmpv4,
                          build_ipv4, quote_for_icmp)


M32 = 0xFFFFFFFF
CLIENT_MAC = bytes.fromhex("02000000c001")
SERVER_MAC = bytes.fromhex("02000000c002")
ROUTER_MAC = bytes.fromhex("02000000c0fe")


def icmp_frame(type_: int, code: int, *, quoted_src, quoted_dst, sport: int, dport: int,
               seq: int, to_ip, to_mac: bytes, length: int = 1500, mtu: int = 0,
               from_ip="10.0.0.254") -> bytes:
    """An ICMP error from ``from_ip`` quoting a TCP segment of ours
    (``length`` bytes of IP datagram) with sequence number ``seq``."""
    tcp = struct.pack("!HHII", sport, dport, seq & M32, 0) + bytes(length - 20 - 12)
    original = build_ipv4(IPv4Header(IPv4Address(quoted_src), IPv4Address(quoted_dst), 6,
                                     dont_fragment=True), tcp)
    icmp = build_icmpv4(IcmpMessage.error(type_, code, quote_for_icmp(original), mtu))
    packet = build_ipv4(IPv4Header(IPv4Address(from_ip), IPv4Address(to_ip), 1), icmp)
    return build_ethernet(to_mac, ROUTER_MAC, ETHERTYPE_IPV4, packet)


def icmp_to_client(net, type_, code, stream, *, seq=None, **kw) -> None:
    """An ICMP error about a segment the client sent on ``stream``
    (default: at SND.UNA, in the window), injected toward the client."""
    m = stream.connection
    net.b.send_frame(icmp_frame(
        type_, code, quoted_src="10.0.0.1", quoted_dst="10.0.0.2",
        sport=stream.local_address[1], dport=stream.remote_address[1],
        seq=m.snd_una if seq is None else seq, to_ip="10.0.0.1", to_mac=CLIENT_MAC, **kw))


@pytest.fixture
def two_stacks(two_stacks):
    """Client and server (known MACs) on a 5 ms cable."""
    return functools.partial(two_stacks, latency=0.005, seed=1, client_mac=CLIENT_MAC,
                             server_mac=SERVER_MAC)


async def connected(net, port=80):
    listener = (await net.server.open_tcp_listeners(port))[0]
    stream = await net.client.open_tcp_stream("10.0.0.2", port)
    server_stream = await listener.accept()
    return stream, server_stream


async def exchange(stream, server_stream, size=200_000, seed=1):
    data = random.Random(seed).randbytes(size)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, data)
        got = bytearray()
        while len(got) < size:
            got += await server_stream.receive_some()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


# --- soft and hard errors -------------------------------------------------------------


@pytest.mark.parametrize("type_, code", [(3, 0), (3, 1), (3, 2), (3, 3), (11, 0), (12, 0)])
async def test_errors_on_an_established_connection_are_soft(two_stacks, autojump_clock, type_, code):
    """RFC 1122 4.2.3.9, RFC 5927 4.2: net/host unreachable, and even port
    or protocol unreachable, time exceeded and parameter problem, are
    recorded on a synchronized connection, never fatal."""
    async with two_stacks() as net:
        stream, server_stream = await connected(net)
        await stream.send_all(b"x" * 50_000)  # data in flight: SND.UNA < SND.NXT
        icmp_to_client(net, type_, code, stream)
        await trio.sleep(0.5)
        assert stream.state is TcpState.ESTABLISHED
        assert stream.info["soft_error"] == f"ICMP type {type_} code {code}"
        assert net.client.stats["tcp.icmp_soft_error"] == 1
        got = 0
        while got < 50_000:
            got += len(await server_stream.receive_some())
        await exchange(stream, server_stream)
        await stream.aclose()
        await server_stream.aclose()


async def test_error_quoting_a_sequence_number_out_of_the_window_is_dropped(two_stacks, autojump_clock):
    async with two_stacks() as net:
        stream, server_stream = await connected(net)
        m = stream.connection
        for seq in (m.snd_una - 1, m.snd_max, m.snd_una + 1_000_000, m.snd_una ^ 0x80000000):
            icmp_to_client(net, 3, 1, stream, seq=seq)
        await trio.sleep(0.1)
        assert net.client.stats["drop.tcp.icmp_out_of_window"] == 4
        assert stream.info["soft_error"] is None
        # Nothing in flight: SND.UNA..SND.NXT is empty, so not even SND.UNA counts.
        icmp_to_client(net, 3, 4, stream, seq=m.snd_una, mtu=600)
        await trio.sleep(0.1)
        assert net.client.stats["drop.tcp.icmp_out_of_window"] == 5
        assert stream.info["mss"] == 1448
        await stream.aclose()
        await server_stream.aclose()


async def test_error_for_no_connection_and_source_quench(two_stacks, autojump_clock):
    async with two_stacks() as net:
        stream, server_stream = await connected(net)
        await stream.send_all(b"x" * 50_000)
        icmp_to_client(net, 4, 0, stream)  # source quench: ignored (RFC 6633)
        net.b.send_frame(icmp_frame(3, 1, quoted_src="10.0.0.1", quoted_dst="10.0.0.2",
                                    sport=1, dport=2, seq=0, to_ip="10.0.0.1",
                                    to_mac=CLIENT_MAC))
        await trio.sleep(0.1)
        assert net.client.stats["tcp.icmp_ignored"] == 1
        assert net.client.stats["drop.tcp.icmp_no_connection"] == 1
        assert stream.info["soft_error"] is None
        await stream.aclose()
        await server_stream.aclose()


@pytest.mark.parametrize("code, errno_", [(3, errno.ECONNREFUSED), (2, errno.ENOPROTOOPT),
                                          (0, errno.ENETUNREACH), (1, errno.EHOSTUNREACH)])
async def test_errors_abort_a_connect_in_syn_sent(two_stacks, autojump_clock, code, errno_):
    async with two_stacks() as net:
        await net.client.ping("10.0.0.2")
        net.a.loss = 1.0  # the SYN goes nowhere; an ICMP error comes back

        async def icmp():
            await trio.sleep(0.2)
            ((key, sock),) = net.client.tcp.connections.items()
            net.b.send_frame(icmp_frame(3, code, quoted_src="10.0.0.1", quoted_dst="10.0.0.2",
                                        sport=key[1], dport=80, seq=sock.machine.iss,
                                        to_ip="10.0.0.1", to_mac=CLIENT_MAC, length=60))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(icmp)
            with pytest.raises(OSError) as info:
                await net.client.open_tcp_stream("10.0.0.2", 80)
        assert info.value.errno == errno_
        assert not net.client.tcp.connections


async def test_unreachable_ends_a_handshake_we_answered(two_stacks, autojump_clock):
    """A SYN-ACK that draws ICMP host unreachable: the SYN was likely spoofed;
    the embryo goes, without a RST (as Linux's tcp_req_err)."""
    async with two_stacks() as net:
        listener = (await net.server.open_tcp_listeners(80))[0]
        await net.client.ping("10.0.0.2")
        net.b.loss = 1.0  # the SYN-ACK never arrives
        async with trio.open_nursery() as nursery:
            async def connect():
                with pytest.raises(OSError):
                    await net.client.open_tcp_stream("10.0.0.2", 80)
            nursery.start_soon(connect)
            await trio.sleep(0.1)
            assert listener.embryos == 1
            ((key, sock),) = net.server.tcp.connections.items()
            iss = sock.machine.iss
            inject = net.a.send_frame

            def icmp(code, seq):
                inject(icmp_frame(3, code, quoted_src="10.0.0.2", quoted_dst="10.0.0.1",
                                  sport=80, dport=key[3], seq=seq, to_ip="10.0.0.2",
                                  to_mac=SERVER_MAC, length=60))
            icmp(1, iss + 1)  # not our SYN-ACK's sequence number
            icmp(3, iss)      # port unreachable: not a reason to drop it
            await trio.sleep(0.1)
            assert listener.embryos == 1
            assert net.server.stats["drop.tcp.icmp_out_of_window"] == 1
            resets = net.server.stats["tcp.tx_reset"]
            icmp(1, iss)
            await trio.sleep(0.1)
            assert listener.embryos == 0 and not net.server.tcp.connections
            assert net.server.stats["tcp.icmp_embryo_dropped"] == 1
            assert net.server.stats["tcp.tx_reset"] == resets
            nursery.cancel_scope.cancel()


async def test_syn_ack_to_a_spoofed_on_link_address_frees_the_syn_queue(two_stacks, autojump_clock):
    """A SYN from an address nobody answers ARP for: after the ARP retries
    the stack's own ICMP host unreachable ends the embryo (3 s, not the
    SYN-ACK retries' minute)."""
    from trionet.wire.tcp import SYN, TcpHeader, TcpOptions, build_tcp
    async with two_stacks() as net:
        listener = (await net.server.open_tcp_listeners(80))[0]
        src, dst = IPv4Address("10.0.0.77"), IPv4Address("10.0.0.2")
        seg = build_tcp(TcpHeader(5555, 80, 1234, 0, SYN, 1000, 0, TcpOptions(mss=1460)),
                        b"", src, dst)
        net.a.send_frame(build_ethernet(SERVER_MAC, bytes.fromhex("02000000cc77"),
                                        ETHERTYPE_IPV4,
                                        build_ipv4(IPv4Header(src, dst, 6), seg)))
        await trio.sleep(0.1)
        assert listener.embryos == 1
        await trio.sleep(4)
        assert listener.embryos == 0
        assert net.server.stats["tcp.icmp_embryo_dropped"] == 1


# --- path MTU discovery ----------------------------------------------------------------


async def test_fragmentation_needed_lowers_the_mss_and_resends(two_stacks, autojump_clock):
    async with two_stacks() as net:
        stream, server_stream = await connected(net)
        net.a.loss = 1.0  # what the client sends now is "too big" somewhere
        await stream.send_all(b"y" * 30_000)
        icmp_to_client(net, 3, 4, stream, mtu=1200)
        await trio.sleep(0.001)
        net.a.loss = 0.0  # the smaller segments get through
        await trio.sleep(0.005)  # the ICMP arrives
        assert stream.info["mss"] == 1200 - 40 - 12
        assert net.client.stats["tcp.pmtu_lowered"] == 1
        retransmits = stream.info["retransmits"]
        assert retransmits >= 1  # resent at once, in smaller pieces
        got = 0
        while got < 30_000:
            got += len(await server_stream.receive_some())
        assert stream.info["rto_count"] == 0
        # Larger MTUs later do not raise it again (RFC 1191 6.3: only down).
        await stream.send_all(b"y" * 10_000)
        icmp_to_client(net, 3, 4, stream, mtu=1400)
        await trio.sleep(0.1)
        assert stream.info["mss"] == 1148
        await stream.aclose()
        await server_stream.aclose()


@pytest.mark.parametrize("mtu, length, mss", [
    (0, 1500, 1492 - 52),    # an RFC 1191 router reporting no MTU: the next plateau
    (100, 1500, 552 - 52),   # below Linux's 552: floored (likely forged, RFC 5927 7)
    (1500, 1500, 1448),      # not smaller than the quoted packet: ignored (RFC 5927 7.2)
    (2000, 1500, 1448),
])
async def test_fragmentation_needed_values(two_stacks, autojump_clock, mtu, length, mss):
    async with two_stacks() as net:
        stream, server_stream = await connected(net)
        await stream.send_all(b"z" * 20_000)
        icmp_to_client(net, 3, 4, stream, mtu=mtu, length=length)
        await trio.sleep(0.006)  # the ICMP arrives (before the ACKs)
        assert stream.info["mss"] == mss
        if mss == 1448:
            assert net.client.stats["drop.tcp.icmp_bad_mtu"] == 1
        got = 0
        while got < 20_000:
            got += len(await server_stream.receive_some())
        await stream.aclose()
        await server_stream.aclose()


async def test_pmtud_through_routers_with_a_small_mtu_link(autojump_clock):
    """client -(1500)- r1 -(1000)- r2 -(1500)- server: both ends announce
    MSS 1460; r1 answers the client's full-sized DF segments with
    "fragmentation needed" (MTU 1000) and the client's MSS comes down to
    fit; a bulk transfer both ways completes byte-exact."""
    c1, r1a = trionet.virtual_cable(latency=0.002, seed=1)
    r1b, r2a = trionet.virtual_cable(latency=0.005, seed=2, mtu=1000)
    r2b, s1 = trionet.virtual_cable(latency=0.002, seed=3)
    size = 500_000
    up = random.Random(1).randbytes(size)
    down = random.Random(2).randbytes(size)
    async with trionet.Stack(seed=1) as client, trionet.Stack(seed=2) as server, \
            trionet.Stack(forwarding=True, seed=3) as r1, \
            trionet.Stack(forwarding=True, seed=4) as r2:
        client.add_interface(c1, "10.0.0.1/24", gateway="10.0.0.254")
        r1.add_interface(r1a, "10.0.0.254/24")
        r1.add_interface(r1b, "10.9.0.1/30")
        r1.add_route("10.1.0.0/24", gateway="10.9.0.2")
        r2.add_interface(r2a, "10.9.0.2/30")
        r2.add_interface(r2b, "10.1.0.254/24")
        r2.add_route("10.0.0.0/24", gateway="10.9.0.1")
        server.add_interface(s1, "10.1.0.1/24", gateway="10.1.0.254")
        listener = (await server.open_tcp_listeners(80))[0]
        stream = await client.open_tcp_stream("10.1.0.1", 80)
        server_stream = await listener.accept()
        assert stream.info["mss"] == server_stream.info["mss"] == 1448
        got = {}

        async def pump(src, dst, data, name):
            async with trio.open_nursery() as nursery:
                async def send():
                    await src.send_all(data)
                    await src.send_eof()
                nursery.start_soon(send)
                chunks = []
                async for chunk in dst:
                    chunks.append(chunk)
                got[name] = b"".join(chunks)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, stream, server_stream, up, "up")
            nursery.start_soon(pump, server_stream, stream, down, "down")
        assert hashlib.sha256(got["up"]).digest() == hashlib.sha256(up).digest()
        assert hashlib.sha256(got["down"]).digest() == hashlib.sha256(down).digest()
        # Both directions found the 1000-byte link.
        assert stream.info["mss"] == server_stream.info["mss"] == 1000 - 40 - 12
        assert client.stats["tcp.pmtu_lowered"] == 1 and server.stats["tcp.pmtu_lowered"] == 1
        assert r1.stats["icmp.tx_error"] >= 1 and r2.stats["icmp.tx_error"] >= 1
        assert stream.info["rto_count"] == 0 and server_stream.info["rto_count"] == 0
        await stream.aclose()
        await server_stream.aclose()
