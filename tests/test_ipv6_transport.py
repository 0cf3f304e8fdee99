"""TCP, UDP, ICMPv6 and the Trio socket layer over IPv6 and dual-stack, in
virtual time (virtual_cable + autojump_clock).

Two stacks share one cable, each with an IPv4 and an IPv6 address on one
interface (``dual_stacks``); hand-built frames come from the cable ends
(as tests/test_icmp_tcp.py and tests/test_blind_injection.py do for IPv4)
or from ``RawHost6``, a raw cable end that answers neighbour solicitations.
Each test names the RFC clause it checks.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import random
import socket as stdlib
import struct
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import attrs
import pytest
import trio

import trionet
from trionet.link.capture import read_pcap
from trionet.tcp.connection import TcpState
from trionet.tcp.cookies import MSS_TABLE_V6, SynCookies
from trionet.network.fragments import fragment as fragment_ipv4
from trionet.wire import (ETHERTYPE_IPV6, ICMPV6_DEST_UNREACHABLE, ICMPV6_PACKET_TOO_BIG,
                          ICMPV6_TIME_EXCEEDED, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, IPv4Header,
                          IPv6Header, Icmpv6Message, build_ethernet, build_icmpv6, build_ipv4,
                          build_ipv6, build_ipv6_plain, build_udp, parse_ethernet, parse_icmpv6,
                          parse_ipv6, quote_for_icmpv6)
from trionet.wire.icmpv6 import (ICMPV6_NEIGHBOR_SOLICITATION, NeighborAdvertisement,
                                 build_neighbor_advertisement, parse_neighbor_solicitation)
from trionet.wire.ipv6 import NH_FRAGMENT, build_fragment_header
from trionet.wire.tcp import ACK, RST, SYN, TcpHeader, TcpOptions, build_tcp, parse_tcp

from test_blind_injection import GARBAGE, injections
from test_stack_support import RawHost

M32 = 0xFFFFFFFF
CLIENT_MAC = bytes.fromhex("02000000c001")
SERVER_MAC = bytes.fromhex("02000000c002")
ROUTER_MAC = bytes.fromhex("02000000c0fe")
HOST_MAC = bytes.fromhex("020000000009")

C4, S4 = "10.0.0.1", "10.0.0.2"
C6, S6 = "fd00::1", "fd00::2"
ROUTER6 = "fd00::fe"


#: Virtual seconds a test may run inside ``dual_stacks`` or
#: ``stack_and_raw_host``: with autojump, a wait for something that never
#: comes would otherwise spin through virtual time for ever. (A fixture
#: cannot do this: pytest-trio runs only the async fixtures a test names,
#: never autouse ones.)
VIRTUAL_TIME_LIMIT = 1000.0


# --- topology ------------------------------------------------------------------------------


@attrs.define
class DualStacks:
    """``client`` (10.0.0.1, fd00::1) on cable end ``a`` and ``server``
    (10.0.0.2, fd00::2) on end ``b``, both addresses on one interface each;
    the IPv6 addresses have passed duplicate address detection."""
    client: Any
    server: Any
    a: Any
    b: Any

    def __iter__(self):
        return iter((self.client, self.server, self.a, self.b))


async def until(predicate, timeout: float = 10.0, step: float = 0.01) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


def link_local(stack, index: int = 0) -> IPv6Address:
    """The interface's link-local address, scoped ("fe80::...%eth0")."""
    iface = stack.interfaces[index]
    (entry,) = [e for e in iface.addresses if e.origin == "link-local"]
    return entry.ip


async def ready(stack, *addresses) -> None:
    """Until every address given, and the link-local ones, are usable (DAD
    done: RFC 4862 5.4 drops packets to a tentative address)."""
    await until(lambda: all(stack.is_local_address(a) for a in addresses)
                and all(e.usable for i in stack.interfaces for e in i.addresses))


@asynccontextmanager
async def dual_stacks(*, latency: float = 0.005, seed: int = 1, client_kwargs=None,
                      server_kwargs=None, capture=None, **cable):
    """Two running stacks on a ``virtual_cable(latency=, seed=, **cable)``
    (see ``DualStacks``); ``capture`` (a binary file) records the client's
    end as pcap, stamped with the virtual clock."""
    a, b = trionet.virtual_cable(latency=latency, seed=seed, **cable)
    link_a = trionet.Capture(a, capture, clock=trio.current_time) if capture is not None else a
    async with trionet.Stack(seed=1, **(client_kwargs or {})) as client, \
            trionet.Stack(seed=2, **(server_kwargs or {})) as server:
        client.add_interface(link_a, f"{C4}/24", mac=CLIENT_MAC).add_address(f"{C6}/64")
        server.add_interface(b, f"{S4}/24", mac=SERVER_MAC).add_address(f"{S6}/64")
        await ready(client, C6)
        await ready(server, S6)
        with trio.fail_after(VIRTUAL_TIME_LIMIT):
            yield DualStacks(client, server, a, b)


async def read_all(stream) -> bytes:
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
    return b"".join(chunks)


async def echo(stream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def echo_once(stream, data: bytes) -> bytes:
    async with trio.open_nursery() as nursery:
        async def send():
            await stream.send_all(data)
            await stream.send_eof()
        nursery.start_soon(send)
        back = await read_all(stream)
    await stream.aclose()
    return back


# --- a raw IPv6 host -------------------------------------------------------------------------


class RawHost6(RawHost):
    """A raw cable end with an IPv6 address: it answers neighbour
    solicitations for it and for fe80::9 (RFC 4861 7.2.4) and builds and
    reads IPv6."""

    def __init__(self, end, ip6: str = "fd00::9", mac: bytes = HOST_MAC):
        super().__init__(end, "10.0.0.9", mac, ipv6=True)
        self.ip6 = IPv6Address(ip6)
        self.link_local = IPv6Address("fe80::9")

    def _maybe_answer_arp(self, frame: bytes) -> None:
        super()._maybe_answer_arp(frame)
        eth, payload = parse_ethernet(frame)
        if eth.ethertype != ETHERTYPE_IPV6:
            return
        header, body = parse_ipv6(payload)
        if header.next_header != PROTO_ICMPV6 or header.src.is_unspecified:
            return
        msg = parse_icmpv6(body, header.src, header.dst)
        if msg.type != ICMPV6_NEIGHBOR_SOLICITATION:
            return
        target = parse_neighbor_solicitation(msg).target
        if target not in (self.ip6, self.link_local):
            return
        na = build_neighbor_advertisement(
            NeighborAdvertisement(target, solicited=True, override=True,
                                  target_lladdr=self.mac), target, header.src)
        self.send_frame(build_ethernet(eth.src, self.mac, ETHERTYPE_IPV6, build_ipv6_plain(
            target, header.src, PROTO_ICMPV6, na, hop_limit=255)))

    def send_ip6(self, packet: bytes, dst_mac: bytes = SERVER_MAC) -> None:
        self.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV6, packet))

    def udp6(self, dst, dst_port: int, data: bytes, src_port: int = 5555, *, src=None,
             checksum: bool = True) -> bytes:
        """An IPv6 packet carrying a UDP datagram (``checksum`` False: zero)."""
        src = IPv6Address(src) if src is not None else self.ip6
        dst = IPv6Address(dst)
        udp = build_udp(src_port, dst_port, data, src, dst, compute_checksum=checksum)
        return build_ipv6_plain(src, dst, PROTO_UDP, udp)

    async def receive_icmp6(self, timeout: float = 10.0):
        """The next ICMPv6 message that is not neighbour discovery or MLD:
        (arrival time, IPv6 header, Icmpv6Message)."""
        def wanted(frame):
            eth, payload = parse_ethernet(frame)
            if eth.ethertype != ETHERTYPE_IPV6:
                return False
            header, body = parse_ipv6(payload)
            return header.next_header == PROTO_ICMPV6 and body[0] < 130
        at, frame = await self.receive(wanted, timeout)
        header, body = parse_ipv6(parse_ethernet(frame)[1])
        return at, header, parse_icmpv6(bytes(body), header.src, header.dst)

    def icmp6_errors(self) -> list[Icmpv6Message]:
        """Every ICMPv6 error received so far (consumed or not)."""
        found = []
        for _, frame in self.frames:
            eth, payload = parse_ethernet(frame)
            if eth.ethertype != ETHERTYPE_IPV6:
                continue
            header, body = parse_ipv6(payload)
            if header.next_header == PROTO_ICMPV6 and body[0] < 128:
                found.append(parse_icmpv6(bytes(body), header.src, header.dst))
        return found


@asynccontextmanager
async def stack_and_raw_host(*, stack_kwargs=None, latency: float = 0.001, **cable):
    """A server stack (10.0.0.2, fd00::2, MAC SERVER_MAC) on end ``b`` and a
    RawHost6 (10.0.0.9, fd00::9) on end ``a``."""
    a, b = trionet.virtual_cable(latency=latency, seed=7, **cable)
    async with trio.open_nursery() as nursery:
        host = RawHost6(a)
        await nursery.start(host.run)
        async with trionet.Stack(seed=2, **(stack_kwargs or {})) as stack:
            stack.add_interface(b, f"{S4}/24", mac=SERVER_MAC).add_address(f"{S6}/64")
            await ready(stack, S6)
            with trio.fail_after(VIRTUAL_TIME_LIMIT):
                yield stack, host
        nursery.cancel_scope.cancel()


def tcp_options_of(frames, flags: int) -> list[TcpHeader]:
    """The TCP headers with exactly ``flags`` (of SYN|ACK|RST) among IPv6 frames."""
    found = []
    for _, frame in frames:
        eth, payload = parse_ethernet(frame)
        if eth.ethertype != ETHERTYPE_IPV6:
            continue
        header, body = parse_ipv6(payload)
        if header.next_header != PROTO_TCP:
            continue
        tcp, _ = parse_tcp(body, header.src, header.dst, verify_checksum=False)
        if tcp.flags & (SYN | ACK | RST) == flags:
            found.append(tcp)
    return found


# --- dual-stack TCP (RFC 4213 2, RFC 3493 3.7) -------------------------------------------------


async def test_rfc4213_2_tcp_over_either_family_one_listener_for_both(autojump_clock):
    """RFC 4213 2 (a dual-stack node speaks both) and RFC 3493 3.7 (one
    listener on "any" of both families): open_tcp_listeners(port) with host
    None accepts an IPv4 and an IPv6 client; each stream's addresses are
    of the family its connection uses."""
    async with dual_stacks() as net:
        listeners = await net.server.open_tcp_listeners(8000)
        assert len(listeners) == 1
        (listener,) = listeners
        for dst, src in ((S4, C4), (S6, C6)):
            stream = await net.client.open_tcp_stream(dst, 8000)
            accepted = await listener.accept()
            assert stream.remote_address == (dst, 8000)
            assert stream.local_address[0] == src
            assert accepted.local_address == (dst, 8000)
            assert accepted.remote_address == stream.local_address
            await stream.send_all(b"over " + dst.encode())
            assert await accepted.receive_some() == b"over " + dst.encode()
            await accepted.send_all(b"back")
            assert await stream.receive_some() == b"back"
            await stream.aclose()
            await accepted.aclose()
        assert net.server.stats["tcp.passive_opens"] == 2
        await listener.aclose()


@pytest.mark.parametrize("host, v4, v6", [("0.0.0.0", True, False), ("::", True, True),
                                          (S4, True, False), (S6, False, True)])
async def test_rfc3493_3_8_listener_wildcards_choose_their_families(autojump_clock, host, v4, v6):
    """RFC 3493 3.8 (in6addr_any), 5.3 (IPV6_V6ONLY off by default): a
    listener on "0.0.0.0" takes IPv4 only, one on "::" both families, one
    on an address that address only; the other family is refused with RST
    (RFC 9293 3.10.7.1)."""
    async with dual_stacks() as net:
        (listener,) = await net.server.open_tcp_listeners(8001, host=host)
        for dst, expected in ((S4, v4), (S6, v6)):
            if expected:
                stream = await net.client.open_tcp_stream(dst, 8001)
                accepted = await listener.accept()
                assert accepted.local_address == (dst, 8001)
                await stream.aclose()
                await accepted.aclose()
            else:
                with pytest.raises(ConnectionRefusedError):
                    await net.client.open_tcp_stream(dst, 8001)
        await listener.aclose()


# --- dual-stack UDP ------------------------------------------------------------------------


async def test_rfc768_udp_over_both_families_recvfrom_names_ipv6_senders(autojump_clock):
    """RFC 768 over IPv6 (RFC 8200 8.1 pseudo-header): a socket on every
    address (None) receives datagrams of both families and recvfrom names
    the sender in its own family; the answer goes back over it."""
    async with dual_stacks() as net:
        server_sock = await net.server.open_udp_socket(5300)
        v6_sock = await net.client.open_udp_socket(local_address="::")
        v4_sock = await net.client.open_udp_socket(local_address="0.0.0.0")
        for sock, dst, src in ((v6_sock, S6, C6), (v4_sock, S4, C4)):
            await sock.sendto(b"hello " + dst.encode(), (dst, 5300))
            data, sender, destination = await server_sock.recvfrom_to()
            assert data == b"hello " + dst.encode()
            assert sender == (src, sock.local_port)
            assert destination == dst
            await server_sock.sendto(b"reply", sender)
            assert await sock.recvfrom() == (b"reply", (dst, 5300))
        # A socket bound to one family cannot send to the other.
        with pytest.raises(OSError) as info:
            await v4_sock.sendto(b"x", (S6, 5300))
        assert info.value.errno == errno.EAFNOSUPPORT
        for sock in (server_sock, v6_sock, v4_sock):
            await sock.aclose()


async def test_rfc1122_4_1_3_5_udp_answers_from_the_address_a_request_came_to(autojump_clock):
    """RFC 1122 4.1.3.5 (and RFC 3542 6, IPV6_PKTINFO): a socket on every
    address of a stack with two IPv6 addresses learns from recvfrom_to
    which one a request went to, and sendto(source_address=) answers from
    it: the client sees the reply come from the address it asked."""
    async with dual_stacks() as net:
        net.server.interfaces[0].add_address("fd00::3/64")
        await ready(net.server, "fd00::3")
        server_sock = await net.server.open_udp_socket(5301, local_address="::")
        client_sock = await net.client.open_udp_socket()
        for dst in ("fd00::3", S6, "fd00::3"):
            await client_sock.sendto(b"q", (dst, 5301))
            data, sender, destination = await server_sock.recvfrom_to()
            assert destination == dst
            await server_sock.sendto(b"a", sender, source_address=destination)
            assert await client_sock.recvfrom() == (b"a", (dst, 5301))
        # Without source_address, the route's choice: the same for both.
        await client_sock.sendto(b"q", ("fd00::3", 5301))
        _, sender, _ = await server_sock.recvfrom_to()
        await server_sock.sendto(b"a", sender)
        _, (source, _) = await client_sock.recvfrom()
        assert source == str(net.server.path_to(IPv6Address(C6)).source)
        # source_address must be one of ours, and of the destination's family.
        with pytest.raises(OSError):
            await server_sock.sendto(b"a", sender, source_address="fd00::77")
        with pytest.raises(ValueError):
            await server_sock.sendto(b"a", sender, source_address=S4)
        await server_sock.aclose()
        await client_sock.aclose()


async def test_rfc3493_5_3_binding_rules_of_the_family_wildcards(autojump_clock):
    """RFC 3493 5.3: an IPV6_V6ONLY socket on "::" and one on "0.0.0.0"
    share a port (as Linux: they take disjoint datagrams); bindings that
    would take the same datagrams raise EADDRINUSE (RFC 6056 keeps ports
    per transport: TCP and UDP do not collide)."""
    async with dual_stacks() as net:
        server = net.server
        # UDP: "0.0.0.0" and "::" v6only (the socket layer's IPV6_V6ONLY).
        v4 = await server.open_udp_socket(5400, local_address="0.0.0.0")
        with trionet.use_stack(server):
            v6only = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_DGRAM)
            v6only.setsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY, 1)
            await v6only.bind(("::", 5400))
            # A second v6only "::" on the port overlaps it.
            again = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_DGRAM)
            again.setsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY, 1)
            with pytest.raises(OSError) as info:
                await again.bind(("::", 5400))
            assert info.value.errno == errno.EADDRINUSE
            again.close()
        client_sock = await net.client.open_udp_socket()
        await client_sock.sendto(b"four", (S4, 5400))
        await client_sock.sendto(b"six", (S6, 5400))
        assert (await v4.recvfrom())[0] == b"four"
        data, sender = await v6only.recvfrom(100)
        assert data == b"six" and sender[0] == C6 and len(sender) == 4
        # Overlapping ones: "::"/None takes both families; an address is
        # inside its family's wildcard.
        for address in (None, "::", S4, "0.0.0.0"):
            with pytest.raises(OSError) as info:
                await server.open_udp_socket(5400, local_address=address)
            assert info.value.errno == errno.EADDRINUSE, address
        v6only.close()
        # Now IPv6 is free again: S6 binds; "::" (both families) still not.
        s6 = await server.open_udp_socket(5400, local_address=S6)
        with pytest.raises(OSError) as info:
            await server.open_udp_socket(5400, local_address="::")
        assert info.value.errno == errno.EADDRINUSE
        # TCP: the same rules on its own ports.
        (l4,) = await server.open_tcp_listeners(5400, host="0.0.0.0")
        (l6,) = await server.open_tcp_listeners(5400, host=S6)
        for host in (None, "::", S4):
            with pytest.raises(OSError) as info:
                await server.open_tcp_listeners(5400, host=host)
            assert info.value.errno == errno.EADDRINUSE, host
        for closeable in (v4, s6, client_sock, l4, l6):
            await closeable.aclose()


# --- link-local peers (RFC 4007 6, 11) -------------------------------------------------------


async def test_rfc4007_11_link_local_peer_with_a_scope(autojump_clock):
    """RFC 4007 11 (the "%zone" text form) and RFC 4291 2.5.6: TCP, UDP and
    ping to the other stack's link-local address with its interface as
    scope; the streams name both ends with the scope."""
    async with dual_stacks() as net:
        server_ll = link_local(net.server)
        client_ll = link_local(net.client)
        assert server_ll.scope_id == "eth0" and server_ll.is_link_local
        peer = f"{IPv6Address(int(server_ll))}%eth0"
        assert await net.client.ping(peer) > 0
        (listener,) = await net.server.open_tcp_listeners(8100)
        stream = await net.client.open_tcp_stream(peer, 8100)
        accepted = await listener.accept()
        assert stream.remote_address == (peer, 8100)
        assert stream.local_address[0] == str(client_ll)
        assert accepted.remote_address == stream.local_address
        assert accepted.local_address == (str(server_ll), 8100)
        await stream.send_all(b"link-local")
        assert await accepted.receive_some() == b"link-local"
        await stream.aclose()
        await accepted.aclose()
        # UDP: the sender is named with its scope, and answered through it.
        server_sock = await net.server.open_udp_socket(8101)
        client_sock = await net.client.open_udp_socket()
        await client_sock.sendto(b"ll", (peer, 8101))
        data, sender, destination = await server_sock.recvfrom_to()
        assert sender == (str(client_ll), client_sock.local_port)
        assert destination == str(server_ll)
        await server_sock.sendto(b"back", sender)
        assert await client_sock.recvfrom() == (b"back", (peer, 8101))
        await server_sock.aclose()
        await client_sock.aclose()
        await listener.aclose()
        # With a single IPv6 interface the scope may be left out (as the
        # only choice; RFC 4007 6 lets a node have a default zone).
        assert await net.client.ping(str(IPv6Address(int(server_ll))))


async def test_rfc4007_6_link_local_without_a_scope_is_einval_with_several_interfaces(
        autojump_clock):
    """RFC 4007 6: a link-local address is ambiguous on a node with several
    links; without a zone, connect, sendto and ping fail with EINVAL (as
    Linux's connect() without sin6_scope_id); an unknown zone is ENODEV."""
    async with dual_stacks() as net:
        extra, _ = trionet.virtual_cable(seed=9)
        net.client.add_interface(extra, "fd01::1/64", name="eth1")
        await ready(net.client, "fd01::1")
        bare = str(IPv6Address(int(link_local(net.server))))
        (listener,) = await net.server.open_tcp_listeners(8102)
        with pytest.raises(OSError) as info:
            await net.client.open_tcp_stream(bare, 8102)
        assert info.value.errno == errno.EINVAL
        with pytest.raises(OSError) as info:
            await net.client.ping(bare)
        assert info.value.errno == errno.EINVAL
        sock = await net.client.open_udp_socket()
        with pytest.raises(OSError) as info:
            await sock.sendto(b"x", (bare, 9))
        assert info.value.errno == errno.EINVAL
        with pytest.raises(OSError) as info:
            await net.client.open_tcp_stream(bare + "%eth7", 8102)
        assert info.value.errno == errno.ENODEV
        # With the zone, it works; through the wrong zone nobody answers.
        stream = await net.client.open_tcp_stream(bare + "%eth0", 8102)
        await (await listener.accept()).aclose()
        await stream.aclose()
        with pytest.raises(TimeoutError):
            await net.client.ping(bare + "%eth1", timeout=0.5)
        await sock.aclose()
        await listener.aclose()


@pytest.mark.parametrize("size", [56, 1452, 4000, 20_000])
async def test_rfc4443_4_1_echo_over_ipv6_with_fragments_and_scope(autojump_clock, size):
    """RFC 4443 4.1 and 4.2: echo requests of any size (fragmented by the
    source beyond the MTU, RFC 8200 4.5) are answered with the same data,
    to a global address and to a link-local one with its zone."""
    async with dual_stacks() as net:
        assert await net.client.ping(S6, size=size) > 0
        ll = f"{IPv6Address(int(link_local(net.server)))}%eth0"
        assert await net.client.ping(ll, size=size) > 0
        fragmented = size + 48 > 1500
        assert net.client.stats["ipv6.tx_fragments"] > 0 if fragmented else \
            net.client.stats["ipv6.tx_fragments"] == 0
        assert net.server.stats["icmp6.tx_echo_reply"] == 2


# --- TCP over IPv6 ------------------------------------------------------------------------------


@pytest.mark.parametrize("mtu", [1500, 1400, 1280, 9000])
async def test_rfc8200_8_3_syn_mss_is_the_mtu_less_60(autojump_clock, mtu):
    """RFC 8200 8.3 / RFC 9293 3.7.1: the MSS option is the MTU less the
    IPv6 (40) and TCP (20) headers, in the SYN and the SYN-ACK, as read
    off the wire (a pcap Capture); over IPv4 on the same link, MTU - 40."""
    pcap = io.BytesIO()
    async with dual_stacks(capture=pcap, mtu=mtu) as net:
        (listener,) = await net.server.open_tcp_listeners(8200)
        stream6 = await net.client.open_tcp_stream(S6, 8200)
        accepted6 = await listener.accept()
        stream4 = await net.client.open_tcp_stream(S4, 8200)
        accepted4 = await listener.accept()
        frames = read_pcap(pcap.getvalue())
        (syn,) = tcp_options_of(frames, SYN)
        (synack,) = tcp_options_of(frames, SYN | ACK)
        assert syn.options.mss == mtu - 60
        assert synack.options.mss == mtu - 60
        # Both ends use it, less the timestamp option (RFC 7323 2.2 / RFC 6691).
        assert stream6.info["mss"] == accepted6.info["mss"] == mtu - 60 - 12
        assert stream4.info["mss"] == mtu - 40 - 12
        for s in (stream6, accepted6, stream4, accepted4):
            await s.aclose()
        await listener.aclose()


async def test_rfc9293_3_10_bulk_transfer_over_ipv6_with_loss_is_byte_exact(autojump_clock):
    """RFC 9293 3.10 (and RFC 6298 retransmission, RFC 2018 SACK): 1 MB
    each way over IPv6 on a cable losing 3 % of frames both ways, echoed
    back byte-exact."""
    size = 1_000_000
    data = random.Random(11).randbytes(size)
    async with dual_stacks(loss=0.03, seed=12, latency=0.003) as net:
        async with trio.open_nursery() as nursery:
            await nursery.start(net.server.serve_tcp, echo, 8201)
            stream = await net.client.open_tcp_stream(S6, 8201)
            back = await echo_once(stream, data)
            nursery.cancel_scope.cancel()
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        assert stream.info["retransmits"] > 0
        assert net.client.stats["ipv6.tx"] > 300 and net.client.stats["ipv4.tx"] == 0


@pytest.mark.parametrize("mtu, peer_mss", [(1500, 1440), (1400, 1220), (9000, 8940),
                                           (1280, 1220)])
async def test_rfc4987_3_6_syn_cookies_over_ipv6_carry_the_ipv6_mss_table(
        autojump_clock, mtu, peer_mss):
    """RFC 4987 3.6 over IPv6 (syncookies = 2: every SYN answered
    statelessly): the client's MSS (MTU - 60) comes back from the cookie
    rounded down to Linux's IPv6 table (1220, 1420, 1440, 8940); options
    ride in the timestamp, as over IPv4; data flows both ways."""
    async with dual_stacks(mtu=mtu) as net:
        net.server.tcp.syncookies = 2
        (listener,) = await net.server.open_tcp_listeners(8300)
        stream = await net.client.open_tcp_stream(S6, 8300)
        accepted = await listener.accept()
        assert net.server.stats["tcp.syncookies_sent"] == 1
        assert net.server.stats["tcp.syncookies_ok"] == 1
        assert listener.embryos == 0
        info = accepted.info
        assert peer_mss in MSS_TABLE_V6
        assert info["peer_mss"] == peer_mss
        assert info["mss"] == peer_mss - 12
        assert stream.info["mss"] == mtu - 60 - 12
        assert info["sack"] and info["timestamps"]
        assert info["snd_wscale"] == stream.info["rcv_wscale"]
        data = random.Random(3).randbytes(200_000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, data)
            got = bytearray()
            while len(got) < len(data):
                got += await accepted.receive_some()
        assert got == data
        await accepted.send_all(b"cookie ok")
        assert await stream.receive_some() == b"cookie ok"
        # The IPv4 side of the same listener keeps the IPv4 table.
        stream4 = await net.client.open_tcp_stream(S4, 8300)
        accepted4 = await listener.accept()
        assert accepted4.info["peer_mss"] == {1500: 1460, 1400: 1300, 9000: 1460,
                                              1280: 536}[mtu]
        assert net.server.stats["tcp.syncookies_ok"] == 2
        for s in (stream, accepted, stream4, accepted4):
            await s.aclose()
        await listener.aclose()


def test_rfc8200_5_cookie_without_an_mss_option_carries_1220_over_ipv6():
    """RFC 9293 3.7.1 with RFC 8200 5 (and Linux's IPv6 msstab): a SYN
    without an MSS option is taken as 1220 over IPv6 (536 over IPv4); a
    cookie carries the largest table value not above the peer's MSS and
    is bound to the IPv6 4-tuple."""
    cookies = SynCookies(b"k" * 32)
    local, remote = (IPv6Address(S6), 80), (IPv6Address(C6), 40000)
    for peer_mss, expected in ((None, 1220), (536, 1220), (1220, 1220), (1419, 1220),
                               (1420, 1420), (1439, 1420), (1440, 1440), (8939, 1440),
                               (8940, 8940), (65535, 8940)):
        cookie = cookies.encode(local, remote, 7, peer_mss, 100.0)
        assert cookies.decode(local, remote, 7, cookie, 100.0) == expected, peer_mss
        assert cookies.decode(local, (IPv6Address("fd00::3"), 40000), 7, cookie, 100.0) is None
    assert MSS_TABLE_V6 == (1220, 1420, 1440, 8940)


def spoofed_frame6(header: TcpHeader, payload: bytes, *, src, dst, sport: int, dport: int,
                   src_mac: bytes, dst_mac: bytes) -> bytes:
    """A TCP segment over IPv6 claiming to come from ``src`` (the IPv6
    twin of test_blind_injection.spoofed_frame)."""
    h = TcpHeader(sport, dport, header.seq, header.ack, header.flags, header.window, 0,
                  header.options)
    src, dst = IPv6Address(src), IPv6Address(dst)
    packet = build_ipv6_plain(src, dst, PROTO_TCP, build_tcp(h, payload, src, dst))
    return build_ethernet(dst_mac, src_mac, ETHERTYPE_IPV6, packet)


async def test_rfc5961_and_rfc7323_5_blind_injection_over_ipv6_is_harmless(autojump_clock):
    """RFC 5961 3-5 (challenge ACKs for in-window RST and SYN, ACK
    acceptability) with section 7's rate limit, and RFC 7323 5 (PAWS), work the same
    over IPv6: spoofed segments of every kind (tests/test_blind_injection's
    ``injections``) during a 600 kB echo change nothing; the transfer is
    byte-exact and the challenge ACKs are rate limited."""
    size = 600_000
    data = random.Random(1).randbytes(size)
    rng = random.Random(2)
    async with dual_stacks(latency=0.005, seed=3) as net:
        client, server, a, b = net
        (listener,) = await server.open_tcp_listeners(7)
        done = trio.Event()
        sent_kinds: dict[str, int] = {}
        echoed = []
        accepted = []

        async def serve():
            accepted.append(await listener.accept())
            await echo(accepted[0])

        async def inject(c_machine, s_machine, cport):
            while not done.is_set():
                await trio.sleep(0.002)
                now = trio.current_time()
                for kind, h, payload in injections(s_machine, rng, c_machine.tsval(now)):
                    a.send_frame(spoofed_frame6(h, payload, src=C6, dst=S6, sport=cport,
                                                dport=7, src_mac=CLIENT_MAC,
                                                dst_mac=SERVER_MAC))
                    sent_kinds[kind] = sent_kinds.get(kind, 0) + 1
                for kind, h, payload in injections(c_machine, rng, s_machine.tsval(now)):
                    b.send_frame(spoofed_frame6(h, payload, src=S6, dst=C6, sport=7,
                                                dport=cport, src_mac=SERVER_MAC,
                                                dst_mac=CLIENT_MAC))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            stream = await client.open_tcp_stream(S6, 7)
            await until(lambda: accepted)
            c_machine, s_machine = stream.connection, accepted[0].connection
            nursery.start_soon(inject, c_machine, s_machine, stream.local_address[1])

            async def send():
                await stream.send_all(data)
                await stream.send_eof()
            nursery.start_soon(send)
            async for chunk in stream:
                echoed.append(chunk)
            done.set()
        await stream.aclose()
        back = b"".join(echoed)
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
        assert "data_paws_old" in sent_kinds and sum(sent_kinds.values()) > 200, sent_kinds
        for info in (stream.info, accepted[0].info):
            assert info["error"] is None
            assert 0 < info["challenge_acks"] < info["challenge_acks_limited"]


async def test_rfc5961_7_challenge_acks_over_ipv6_are_rate_limited(autojump_clock):
    """RFC 5961 3.2 and 7: on an idle IPv6 connection, 25 in-window RSTs at
    once draw exactly 10 challenge ACKs (challenge_ack_limit a second) and
    the connection stays; a RST at exactly RCV.NXT still resets it."""
    rng = random.Random(9)
    async with dual_stacks(latency=0.005, seed=4) as net:
        client, server, a, b = net
        (listener,) = await server.open_tcp_listeners(7)
        stream = await client.open_tcp_stream(S6, 7)
        accepted = await listener.accept()
        await stream.send_all(b"x" * 10_000)
        got = 0
        while got < 10_000:
            got += len(await accepted.receive_some())
        await trio.sleep(1.0)
        m = accepted.connection
        cport = stream.local_address[1]
        rx_before = client.stats["tcp.rx"]
        now_ts = stream.connection.tsval(trio.current_time())
        for _ in range(25):
            h = next(h for kind, h, _ in injections(m, rng, now_ts)
                     if kind == "rst_in_window_challenge")
            a.send_frame(spoofed_frame6(h, b"", src=C6, dst=S6, sport=cport, dport=7,
                                        src_mac=CLIENT_MAC, dst_mac=SERVER_MAC))
        await trio.sleep(0.5)
        assert client.stats["tcp.rx"] - rx_before == 10
        assert accepted.info["challenge_acks"] == 10
        assert accepted.info["challenge_acks_limited"] == 15
        assert accepted.state is TcpState.ESTABLISHED
        await accepted.send_all(b"still here")
        assert await stream.receive_some() == b"still here"
        # RFC 5961 3.2: a RST exactly at RCV.NXT is a genuine reset.
        rst = TcpHeader(0, 0, m.rcv_nxt & M32, 0, RST, 0, 0, h.options)
        a.send_frame(spoofed_frame6(rst, b"", src=C6, dst=S6, sport=cport, dport=7,
                                    src_mac=CLIENT_MAC, dst_mac=SERVER_MAC))
        with pytest.raises(trio.BrokenResourceError):
            with trio.fail_after(1):
                await accepted.receive_some()
        await stream.aclose()


async def test_rfc7323_5_3_paws_drops_an_old_timestamp_even_at_rcv_nxt(autojump_clock):
    """RFC 7323 5.3 R1 over IPv6: a segment exactly at RCV.NXT with a good
    ACK but a TSval older than TS.Recent is dropped (and acknowledged),
    not delivered; without a timestamp it is dropped too (RFC 7323 3.2);
    the genuine bytes that follow arrive intact."""
    async with dual_stacks(latency=0.005, seed=5) as net:
        client, server, a, b = net
        (listener,) = await server.open_tcp_listeners(7)
        stream = await client.open_tcp_stream(S6, 7)
        accepted = await listener.accept()
        await stream.send_all(b"warm up")
        assert await accepted.receive_some() == b"warm up"
        m = accepted.connection
        recent = m.timestamps.recent
        cport = stream.local_address[1]
        rx_acks = client.stats["tcp.rx"]
        for options in (TcpOptions(timestamps=((recent - 1000) & M32, 0)), TcpOptions()):
            forged = TcpHeader(0, 0, m.rcv_nxt & M32, m.snd_una & M32, ACK, 65535, 0, options)
            a.send_frame(spoofed_frame6(forged, GARBAGE, src=C6, dst=S6, sport=cport, dport=7,
                                        src_mac=CLIENT_MAC, dst_mac=SERVER_MAC))
        await trio.sleep(0.1)
        assert accepted.info["state"] == "ESTABLISHED" and accepted.info["unread"] == 0
        assert client.stats["tcp.rx"] - rx_acks == 1  # the PAWS drop is acknowledged
        await stream.send_all(b"genuine")
        assert await accepted.receive_some() == b"genuine"
        await stream.aclose()
        await accepted.aclose()


# --- ICMPv6 errors handed to TCP (RFC 5927, RFC 4443, RFC 8201) --------------------------


def icmp6_frame(type_: int, code: int, *, quoted_src, quoted_dst, sport: int, dport: int,
                seq: int, to_ip, to_mac: bytes = CLIENT_MAC, length: int = 1500,
                mtu: int = 0, from_ip: str = ROUTER6) -> bytes:
    """An ICMPv6 error from ``from_ip`` quoting a TCP segment of ours that
    was ``length`` bytes long on the wire (IPv6 header included), with
    sequence number ``seq``."""
    tcp = struct.pack("!HHII", sport, dport, seq & M32, 0) + bytes(length - 40 - 12)
    original = build_ipv6_plain(IPv6Address(quoted_src), IPv6Address(quoted_dst), PROTO_TCP,
                                tcp)
    src, dst = IPv6Address(from_ip), IPv6Address(to_ip)
    message = Icmpv6Message.error(type_, code, quote_for_icmpv6(original), mtu=mtu)
    packet = build_ipv6_plain(src, dst, PROTO_ICMPV6, build_icmpv6(message, src, dst))
    return build_ethernet(to_mac, ROUTER_MAC, ETHERTYPE_IPV6, packet)


def icmp6_to_client(net, type_: int, code: int, stream, *, seq=None, **kw) -> None:
    """An ICMPv6 error about a segment the client sent on ``stream``
    (default: at SND.UNA, in the window), injected toward the client."""
    m = stream.connection
    net.b.send_frame(icmp6_frame(type_, code, quoted_src=C6, quoted_dst=S6,
                                 sport=stream.local_address[1], dport=stream.remote_address[1],
                                 seq=m.snd_una if seq is None else seq, to_ip=C6, **kw))


async def connected6(net, port: int = 80):
    (listener,) = await net.server.open_tcp_listeners(port)
    stream = await net.client.open_tcp_stream(S6, port)
    accepted = await listener.accept()
    return stream, accepted


@pytest.mark.parametrize("code, errno_", [(0, errno.ENETUNREACH), (1, errno.EACCES),
                                          (3, errno.EHOSTUNREACH), (4, errno.ECONNREFUSED)])
async def test_rfc5927_4_1_and_rfc4443_3_1_unreachable_fails_a_connect_in_progress(
        autojump_clock, code, errno_):
    """RFC 1122 4.2.3.9 / RFC 5927 4.1 over IPv6: an ICMPv6 destination
    unreachable quoting our SYN's sequence number fails the connect with
    Linux's errno for its code (icmpv6_err_convert); one quoting another
    sequence number is dropped and counted."""
    async with dual_stacks() as net:
        await net.client.ping(S6)  # neighbours resolved
        net.a.loss = 1.0  # the SYN goes nowhere; an ICMPv6 error comes back

        async def icmp():
            await trio.sleep(0.2)
            # Internals: the connection table is the only view of a connect
            # in progress (its port and ISS).
            ((key, sock),) = net.client.tcp.connections.items()
            assert sock.machine.state is TcpState.SYN_SENT
            frame = functools.partial(icmp6_frame, ICMPV6_DEST_UNREACHABLE, code, quoted_src=C6,
                                      quoted_dst=S6, sport=key[1], dport=80, to_ip=C6,
                                      length=80)
            net.b.send_frame(frame(seq=sock.machine.iss + 1))  # not our SYN's
            await trio.sleep(0.1)
            assert net.client.stats["drop.tcp.icmp_out_of_window"] == 1
            assert sock.machine.state is TcpState.SYN_SENT
            net.b.send_frame(frame(seq=sock.machine.iss))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(icmp)
            with pytest.raises(OSError) as info:
                await net.client.open_tcp_stream(S6, 80)
        assert info.value.errno == errno_
        assert trio.current_time() < 5  # at once, not after the SYN retries
        assert not net.client.tcp.connections


async def test_rfc5927_4_1_errors_quoting_sequence_numbers_out_of_the_window_are_dropped(
        autojump_clock):
    """RFC 5927 4.1: on a synchronized IPv6 connection, ICMPv6 errors whose
    quoted sequence number is outside SND.UNA..SND.NXT are dropped and
    counted; an in-window one is a soft error, never fatal (RFC 5927 4.2,
    RFC 1122 4.2.3.9)."""
    async with dual_stacks() as net:
        stream, accepted = await connected6(net)
        m = stream.connection
        for seq in (m.snd_una - 1, m.snd_max, m.snd_una + 1_000_000, m.snd_una ^ 0x80000000):
            icmp6_to_client(net, ICMPV6_DEST_UNREACHABLE, 3, stream, seq=seq)
        await trio.sleep(0.1)
        assert net.client.stats["drop.tcp.icmp_out_of_window"] == 4
        assert stream.info["soft_error"] is None
        # In the window, with data in flight: soft.
        await stream.send_all(b"x" * 50_000)
        for type_, code in ((ICMPV6_DEST_UNREACHABLE, 0), (ICMPV6_DEST_UNREACHABLE, 4),
                            (ICMPV6_TIME_EXCEEDED, 0)):
            icmp6_to_client(net, type_, code, stream)
        await trio.sleep(0.5)
        assert stream.state is TcpState.ESTABLISHED
        assert stream.info["soft_error"] == "ICMPv6 type 3 code 0"
        assert net.client.stats["tcp.icmp_soft_error"] == 3
        got = 0
        while got < 50_000:
            got += len(await accepted.receive_some())
        await stream.aclose()
        await accepted.aclose()


async def test_rfc5927_4_2_unreachable_for_our_syn_ack_ends_the_handshake(autojump_clock):
    """RFC 5927 4.2 as Linux's tcp_req_err, over IPv6: an ICMPv6 no-route
    or address-unreachable quoting our SYN-ACK's ISS means the SYN was
    likely spoofed: the embryo goes, without a RST; one quoting another
    sequence number is dropped, and port unreachable is no reason."""
    async with dual_stacks() as net:
        (listener,) = await net.server.open_tcp_listeners(80)
        await net.client.ping(S6)
        net.b.loss = 1.0  # the SYN-ACK never arrives
        async with trio.open_nursery() as nursery:
            async def connect():
                with pytest.raises(OSError):
                    await net.client.open_tcp_stream(S6, 80)
            nursery.start_soon(connect)
            await trio.sleep(0.1)
            assert listener.embryos == 1
            # Internals: the embryo's ISS has no public view.
            ((key, sock),) = net.server.tcp.connections.items()
            iss = sock.machine.iss

            def icmp(code, seq):
                net.a.send_frame(icmp6_frame(ICMPV6_DEST_UNREACHABLE, code, quoted_src=S6,
                                             quoted_dst=C6, sport=80, dport=key[3], seq=seq,
                                             to_ip=S6, to_mac=SERVER_MAC, length=80))
            icmp(3, iss + 1)  # not our SYN-ACK's sequence number
            icmp(4, iss)      # port unreachable: soft
            await trio.sleep(0.1)
            assert listener.embryos == 1
            assert net.server.stats["drop.tcp.icmp_out_of_window"] == 1
            resets = net.server.stats["tcp.tx_reset"]
            icmp(3, iss)
            await trio.sleep(0.1)
            assert listener.embryos == 0 and not net.server.tcp.connections
            assert net.server.stats["tcp.icmp_embryo_dropped"] == 1
            assert net.server.stats["tcp.tx_reset"] == resets
            nursery.cancel_scope.cancel()


async def test_rfc4861_7_2_2_syn_from_an_unresolvable_neighbour_frees_the_syn_queue(
        autojump_clock):
    """RFC 4861 7.2.2 (address resolution fails after MAX_MULTICAST_SOLICIT
    solicitations: ICMPv6 address unreachable, RFC 4443 3.1 code 3) with
    RFC 5927 4.2: a SYN from an on-link address nobody answers for is
    answered into the void; after the solicitations, the stack's own
    address-unreachable ends the embryo (seconds, not the SYN-ACK retries'
    minute)."""
    async with dual_stacks() as net:
        (listener,) = await net.server.open_tcp_listeners(80)
        src, dst = IPv6Address("fd00::77"), IPv6Address(S6)
        seg = build_tcp(TcpHeader(5555, 80, 1234, 0, SYN, 1000, 0, TcpOptions(mss=1440)),
                        b"", src, dst)
        net.a.send_frame(build_ethernet(SERVER_MAC, bytes.fromhex("02000000cc77"),
                                        ETHERTYPE_IPV6, build_ipv6_plain(src, dst, PROTO_TCP,
                                                                         seg)))
        await trio.sleep(0.1)
        assert listener.embryos == 1
        await trio.sleep(4)
        assert listener.embryos == 0
        assert net.server.stats["tcp.icmp_embryo_dropped"] == 1
        await listener.aclose()


@pytest.mark.parametrize("mtu, mss", [(1280, 1280 - 60 - 12), (1400, 1400 - 60 - 12),
                                      (600, 1280 - 60 - 12)])
async def test_rfc8201_4_packet_too_big_lowers_the_mss_and_resends(autojump_clock, mtu, mss):
    """RFC 8201 4 and RFC 5927 7: a Packet Too Big quoting an in-flight
    segment lowers the connection's MSS to the MTU less 60 (never below
    IPv6's 1280 minimum) and the lost data is resent in smaller pieces at
    once; the stack's path MTU follows. A later larger MTU does not raise
    it (RFC 8201 4)."""
    async with dual_stacks() as net:
        stream, accepted = await connected6(net)
        net.a.loss = 1.0  # what the client sends now is "too big" somewhere
        await stream.send_all(b"y" * 30_000)
        icmp6_to_client(net, ICMPV6_PACKET_TOO_BIG, 0, stream, mtu=mtu)
        await trio.sleep(0.001)
        net.a.loss = 0.0  # the smaller segments get through
        await trio.sleep(0.005)  # the ICMPv6 arrives
        assert stream.info["mss"] == mss
        assert net.client.stats["tcp.pmtu_lowered"] == 1
        assert net.client.path_to(IPv6Address(S6)).mtu == max(mtu, 1280)
        assert stream.info["retransmits"] >= 1
        got = 0
        while got < 30_000:
            got += len(await accepted.receive_some())
        assert stream.info["rto_count"] == 0
        await stream.send_all(b"y" * 10_000)
        icmp6_to_client(net, ICMPV6_PACKET_TOO_BIG, 0, stream, mtu=1500, length=1500)
        await trio.sleep(0.1)
        assert stream.info["mss"] == mss
        await stream.aclose()
        await accepted.aclose()


async def test_rfc5927_7_an_out_of_window_packet_too_big_changes_nothing(autojump_clock):
    """RFC 5927 4.1 and 7 (a Packet Too Big that fails the sequence check is
    likely forged): with nothing in flight even SND.UNA is out of the
    window; the message is dropped and counted, the MSS and the path MTU
    stay, and data keeps flowing."""
    async with dual_stacks() as net:
        stream, accepted = await connected6(net)
        icmp6_to_client(net, ICMPV6_PACKET_TOO_BIG, 0, stream, mtu=1280)
        await trio.sleep(0.1)
        assert net.client.stats["drop.tcp.icmp_out_of_window"] == 1
        assert stream.info["mss"] == 1500 - 60 - 12
        with trio.fail_after(10):
            await stream.send_all(b"x" * 50_000)
            got = 0
            while got < 50_000:
                got += len(await accepted.receive_some())
        assert net.client.stats["drop.ipv6.too_big"] == 0
        assert net.client.path_to(IPv6Address(S6)).mtu == 1500
        await stream.aclose()
        await accepted.aclose()


async def test_rfc8201_5_2_a_path_mtu_learned_from_udp_also_applies_to_tcp(autojump_clock):
    """RFC 8201 5.2 and 5.4 (RFC 1981's same sections): the PMTU is kept
    per destination and every packetization layer using the path uses it;
    a Packet Too Big for a large UDP datagram to the server lowers it to
    1280, and an open TCP connection to the same address sends segments
    that fit (as Linux's tcp_sync_mss from dst_mtu) instead of stalling."""
    async with dual_stacks() as net:
        stream, accepted = await connected6(net)
        sock = await net.client.open_udp_socket()
        await sock.sendto(b"u" * 1400, (S6, 9999))
        udp = build_udp(sock.local_port, 9999, b"u" * 1400, IPv6Address(C6), IPv6Address(S6))
        original = build_ipv6_plain(IPv6Address(C6), IPv6Address(S6), PROTO_UDP, udp)
        src, dst = IPv6Address(ROUTER6), IPv6Address(C6)
        message = Icmpv6Message.error(ICMPV6_PACKET_TOO_BIG, 0, quote_for_icmpv6(original),
                                      mtu=1280)
        net.b.send_frame(build_ethernet(CLIENT_MAC, ROUTER_MAC, ETHERTYPE_IPV6, build_ipv6_plain(
            src, dst, PROTO_ICMPV6, build_icmpv6(message, src, dst))))
        await trio.sleep(0.1)
        assert net.client.path_to(IPv6Address(S6)).mtu == 1280
        with trio.fail_after(10):
            await stream.send_all(b"x" * 50_000)
            got = 0
            while got < 50_000:
                got += len(await accepted.receive_some())
        assert net.client.stats["drop.ipv6.too_big"] == 0
        await sock.aclose()
        await stream.aclose()
        await accepted.aclose()


async def test_rfc8201_4_packet_too_big_just_below_the_packet_size_is_honoured(autojump_clock):
    """RFC 8201 4 / RFC 5927 7.2: a full-sized (1500-byte) segment answered
    by a Packet Too Big with MTU 1480 (a 6in4 tunnel, common) is smaller
    than the quoted packet: the MSS goes down to 1480 - 60 and the
    transfer completes without a retransmission timeout."""
    async with dual_stacks() as net:
        stream, accepted = await connected6(net)
        net.a.loss = 1.0
        await stream.send_all(b"z" * 30_000)
        icmp6_to_client(net, ICMPV6_PACKET_TOO_BIG, 0, stream, mtu=1480, length=1500)
        await trio.sleep(0.001)
        net.a.loss = 0.0
        await trio.sleep(0.005)
        assert net.client.stats["drop.tcp.icmp_bad_mtu"] == 0
        assert stream.info["mss"] == 1480 - 60 - 12
        with trio.fail_after(2):
            got = 0
            while got < 30_000:
                got += len(await accepted.receive_some())
        assert stream.info["rto_count"] == 0
        await stream.aclose()
        await accepted.aclose()


# --- UDP over IPv6 ------------------------------------------------------------------------------


async def test_rfc8200_8_1_udp_with_a_zero_checksum_is_dropped(autojump_clock):
    """RFC 8200 8.1: over IPv6 the UDP checksum is mandatory; a datagram
    with checksum 0 is discarded (and counted), while the same datagram
    with its checksum is delivered. (Over IPv4, RFC 768, zero means "no
    checksum" and is accepted.) The cable checks checksums here
    (checksum_offload=False): with offload the link stands for them."""
    async with stack_and_raw_host(checksum_offload=False) as (stack, host):
        sock = await stack.open_udp_socket(5500)
        host.send_ip6(host.udp6(S6, 5500, b"no checksum", checksum=False))
        host.send_ip6(host.udp6(S6, 5500, b"with checksum"))
        with trio.fail_after(1):
            data, sender = await sock.recvfrom()
        assert data == b"with checksum" and sender == (str(host.ip6), 5555)
        assert stack.stats["drop.udp.zero_checksum"] == 1
        # IPv4: zero is "none computed" (RFC 768), delivered.
        src, dst = IPv4Address("10.0.0.9"), IPv4Address(S4)
        udp4 = build_udp(5555, 5500, b"ipv4 no checksum", src, dst, compute_checksum=False)
        host.send_ip(build_ipv4(IPv4Header(src, dst, PROTO_UDP), udp4), dst_mac=SERVER_MAC)
        with trio.fail_after(1):
            assert (await sock.recvfrom())[0] == b"ipv4 no checksum"
        assert not host.icmp6_errors()  # a bad datagram is not answered
        await sock.aclose()


@pytest.mark.parametrize("size", [1452, 1453, 4000, 20_000, 65_527])
async def test_rfc8200_4_5_fragmented_udp_datagrams_are_reassembled(autojump_clock, size):
    """RFC 8200 4.5 (the source fragments, the destination reassembles) and
    RFC 8200 5 (every link carries 1280; larger datagrams are fragmented):
    UDP datagrams of up to 65527 bytes (the payload length field's limit
    less the UDP header) go out in fragments and come back whole."""
    data = random.Random(size).randbytes(size)
    async with dual_stacks(mtu=1500) as net:
        # Neighbours resolved first: fragments waiting for resolution are
        # bounded in number (NdpConfig), a 64 kB datagram's 46 do not fit.
        await net.client.ping(S6)
        server_sock = await net.server.open_udp_socket(5501)
        client_sock = await net.client.open_udp_socket()
        await client_sock.sendto(data, (S6, 5501))
        with trio.fail_after(1):
            got, sender = await server_sock.recvfrom()
        assert got == data and sender == (C6, client_sock.local_port)
        await server_sock.sendto(got, sender)
        with trio.fail_after(1):
            assert (await client_sock.recvfrom())[0] == data
        pieces = net.client.stats["ipv6.tx_fragments"]
        assert pieces == (0 if size + 48 <= 1500 else -(-(size + 8) // 1448))
        assert net.server.stats["ipv6.reassembled"] == (1 if pieces else 0)
        assert net.server.resources()["reassembly_bytes"] == 0
        with pytest.raises(OSError) as info:
            await client_sock.sendto(b"x" * 65_528, (S6, 5501))
        assert info.value.errno == errno.EMSGSIZE
        await server_sock.aclose()
        await client_sock.aclose()


async def test_rfc4861_7_2_2_a_large_first_datagram_waits_for_resolution_in_a_bounded_queue(
        autojump_clock):
    """RFC 4861 7.2.2 (packets queued while the neighbour is resolved, the
    queue bounded): the 46 fragments of a 65527-byte datagram sent before
    the peer's MAC is known overflow the default queue (32 packets; the
    oldest are dropped, "drop.ndp.queue_overflow") and the datagram is
    lost; with NdpConfig(max_pending_packets=64) all wait and it arrives.
    (Linux bounds this queue by bytes, unres_qlen_bytes = 212992, and so
    delivers it.)"""
    data = random.Random(7).randbytes(65_527)
    for pending, delivered in ((None, False), (64, True)):
        kwargs = {} if pending is None else dict(
            ndp=trionet.NdpConfig(max_pending_packets=pending))
        async with dual_stacks(client_kwargs=kwargs) as net:
            server_sock = await net.server.open_udp_socket(5503)
            client_sock = await net.client.open_udp_socket()
            await client_sock.sendto(data, (S6, 5503))
            got = None
            with trio.move_on_after(1):
                got, _ = await server_sock.recvfrom()
            assert (got == data) is delivered
            assert net.client.stats["ipv6.tx_fragments"] == 46
            assert (net.client.stats["drop.ndp.queue_overflow"] == 0) is delivered
            assert (net.server.stats["ipv6.reassembled"] == 1) is delivered
            await server_sock.aclose()
            await client_sock.aclose()


async def test_rfc4443_3_1_closed_port_is_answered_with_port_unreachable(autojump_clock):
    """RFC 4443 3.1 (code 4, port unreachable; RFC 1122 4.1.3.1): a UDP
    datagram to a closed port draws an ICMPv6 destination unreachable from
    the address it was sent to, quoting the datagram (RFC 4443 2.4(c));
    not for one sent to a multicast group (RFC 4443 2.4(e.3))."""
    async with stack_and_raw_host() as (stack, host):
        packet = host.udp6(S6, 5502, b"anyone?")
        host.send_ip6(packet)
        _, header, message = await host.receive_icmp6()
        assert (message.type, message.code) == (ICMPV6_DEST_UNREACHABLE, 4)
        assert header.src == IPv6Address(S6) and header.dst == host.ip6
        assert bytes(message.payload) == packet  # all of it fits in 1280
        assert stack.stats["drop.udp.no_socket"] == 1
        # To all-nodes (ff02::1, 33:33:00:00:00:01): dropped silently.
        group = IPv6Address("ff02::1")
        host.send_ip6(host.udp6(group, 5502, b"anyone at all?"),
                      dst_mac=bytes.fromhex("333300000001"))
        # And to a link-local unicast address of ours: answered from it.
        ll = IPv6Address(int(link_local(stack)))
        host.send_ip6(host.udp6(ll, 5502, b"link-local?", src="fe80::9"))
        _, header, message = await host.receive_icmp6()
        assert (message.type, message.code) == (ICMPV6_DEST_UNREACHABLE, 4)
        assert header.src == ll and header.dst == IPv6Address("fe80::9")
        await trio.sleep(0.5)
        assert stack.stats["drop.udp.no_socket"] == 3
        assert len(host.icmp6_errors()) == 2


async def test_rfc4443_2_4_e_no_error_for_a_link_layer_broadcast_or_multicast(autojump_clock):
    """RFC 4443 2.4(e.4) and (e.5): no ICMPv6 error is originated for a
    packet sent as a link-layer multicast or broadcast, even to a unicast
    IPv6 address of ours."""
    async with stack_and_raw_host() as (stack, host):
        host.send_ip6(host.udp6(S6, 5502, b"link broadcast"), dst_mac=b"\xff" * 6)
        host.send_ip6(host.udp6(S6, 5503, b"link multicast"),
                      dst_mac=bytes.fromhex("333300000001"))
        await trio.sleep(0.5)
        assert stack.stats["drop.udp.no_socket"] == 2
        assert host.icmp6_errors() == []


async def test_rfc4443_2_4_f_icmpv6_errors_are_rate_limited(autojump_clock):
    """RFC 4443 2.4(f): ICMPv6 errors are rate limited (a token bucket,
    Stack(icmp_error_rate=, icmp_error_burst=)): 30 datagrams to closed
    ports at once draw the burst of 5 errors, the rest are counted; once
    the bucket has refilled, another burst of 5."""
    async with stack_and_raw_host(stack_kwargs=dict(icmp_error_rate=2.0,
                                                    icmp_error_burst=5)) as (stack, host):
        await trio.sleep(5)  # the bucket is full
        for i in range(30):
            host.send_ip6(host.udp6(S6, 6000 + i, b"x"))
        await trio.sleep(0.5)
        assert len(host.icmp6_errors()) == 5
        assert stack.stats["drop.icmp6.rate_limited"] == 25
        assert stack.stats["drop.udp.no_socket"] == 30
        await trio.sleep(3.0)  # 2 tokens a second, up to the burst
        for i in range(10):
            host.send_ip6(host.udp6(S6, 7000 + i, b"x"))
        await trio.sleep(0.5)
        assert len(host.icmp6_errors()) == 10
        assert stack.stats["drop.icmp6.rate_limited"] == 30


@pytest.mark.parametrize("mtu, path_mtu", [(1400, 1400), (1000, 1280)])
async def test_rfc8201_4_udp_after_packet_too_big_fits_the_path_mtu(autojump_clock, mtu,
                                                                   path_mtu):
    """RFC 8201 4: a Packet Too Big for one of our UDP datagrams lowers the
    path MTU to the destination (never below 1280, RFC 8200 5); later
    datagrams there go out in fragments that fit it (read off the wire)
    and arrive whole."""
    pcap = io.BytesIO()
    async with dual_stacks(capture=pcap) as net:
        server_sock = await net.server.open_udp_socket(5700)
        client_sock = await net.client.open_udp_socket()
        data = random.Random(5).randbytes(1452)
        await client_sock.sendto(data, (S6, 5700))
        with trio.fail_after(1):
            assert (await server_sock.recvfrom())[0] == data
        udp = build_udp(client_sock.local_port, 5700, data, IPv6Address(C6), IPv6Address(S6))
        original = build_ipv6_plain(IPv6Address(C6), IPv6Address(S6), PROTO_UDP, udp)
        src, dst = IPv6Address(ROUTER6), IPv6Address(C6)
        message = Icmpv6Message.error(ICMPV6_PACKET_TOO_BIG, 0, quote_for_icmpv6(original),
                                      mtu=mtu)
        net.b.send_frame(build_ethernet(CLIENT_MAC, ROUTER_MAC, ETHERTYPE_IPV6, build_ipv6_plain(
            src, dst, PROTO_ICMPV6, build_icmpv6(message, src, dst))))
        await trio.sleep(0.01)
        assert net.client.path_to(IPv6Address(S6)).mtu == path_mtu
        before = len(read_pcap(pcap.getvalue()))
        await client_sock.sendto(data, (S6, 5700))
        with trio.fail_after(1):
            assert (await server_sock.recvfrom())[0] == data
        sent = [frame for _, frame in read_pcap(pcap.getvalue())[before:]
                if frame[6:12] == CLIENT_MAC and frame[12:14] == b"\x86\xdd"
                and frame[14 + 6] == NH_FRAGMENT]
        assert len(sent) == 2 and max(len(f) - 14 for f in sent) <= path_mtu
        # Other destinations keep the link MTU.
        assert net.client.path_to(link_local(net.server)).mtu == 1500
        await server_sock.aclose()
        await client_sock.aclose()


# --- reassembly (RFC 8200 4.5, RFC 5722) -------------------------------------------------------


def fragment6(src, dst, protocol: int, payload: bytes, offset: int, more: bool,
              ident: int) -> bytes:
    """One IPv6 fragment packet: ``payload`` at byte ``offset`` of the
    fragmentable part (a multiple of 8)."""
    fh = build_fragment_header(protocol, offset, more, ident)
    return build_ipv6(IPv6Header(IPv6Address(src), IPv6Address(dst), NH_FRAGMENT), fh + payload)


async def test_rfc5722_overlapping_fragments_discard_the_datagram(autojump_clock):
    """RFC 5722 4: when any fragment overlaps another, the whole datagram is
    silently discarded (no ICMPv6) and what it held is freed; the rest of
    it arriving later does not complete it. (As Linux, the datagram is
    forgotten: a complete resend under the same identification would be
    reassembled afresh, short of RFC 5722's "those not yet received".) A
    well-formed datagram from the same host still gets through."""
    async with stack_and_raw_host() as (stack, host):
        sock = await stack.open_udp_socket(5600)
        data = random.Random(1).randbytes(3000)
        udp = build_udp(5555, 5600, data, host.ip6, IPv6Address(S6))
        # 0..1232, then 1224..2456 (overlaps by 8 bytes), then the rest.
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[:1232], 0, True, 77))
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[1224:2456], 1224, True, 77))
        await trio.sleep(0.1)
        assert stack.stats["drop.ipv6.fragment_overlap"] == 1
        assert stack.resources()["reassembly_bytes"] == 0
        # The rest, without overlap: nothing is whole (the first part went).
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[1232:2464], 1232, True, 77))
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[2464:], 2464, False, 77))
        await trio.sleep(0.1)
        assert sock.queued == 0
        # An overlap in the middle of a datagram that had tiled perfectly:
        # the same bytes again at a shifted offset.
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[:1232], 0, True, 78))
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[1232:2464], 1232, True, 78))
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[1240:2464], 1240, True, 78))
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[2464:], 2464, False, 78))
        await trio.sleep(0.1)
        assert sock.queued == 0
        assert stack.stats["drop.ipv6.fragment_overlap"] == 2
        # An exact duplicate is not an overlap (RFC 8200 4.5 leaves it;
        # it is ignored), and the datagram completes.
        for offset, end, more in ((0, 1232, True), (0, 1232, True), (1232, 2464, True),
                                  (2464, len(udp), False)):
            host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[offset:end], offset, more, 79))
        with trio.fail_after(1):
            assert await sock.recvfrom() == (data, (str(host.ip6), 5555))
        assert stack.stats["drop.ipv6.fragment_overlap"] == 2
        assert not host.icmp6_errors()
        await sock.aclose()


@pytest.mark.parametrize("with_first", [True, False])
async def test_rfc8200_4_5_reassembly_timeout_sends_time_exceeded_with_the_first_fragment(
        autojump_clock, with_first):
    """RFC 8200 4.5: a datagram not reassembled within the timeout (60 s
    in the RFC, Stack(reassembly=ReassemblyConfig(timeout=)) here) is
    discarded; if its first fragment arrived, an ICMPv6 time exceeded,
    code 1 ("fragment reassembly time exceeded", RFC 4443 3.3) quoting it
    goes back to the source; without the first fragment, nothing."""
    config = trionet.ReassemblyConfig(timeout=60.0)
    async with stack_and_raw_host(stack_kwargs=dict(reassembly=config)) as (stack, host):
        sock = await stack.open_udp_socket(5601)
        udp = build_udp(5555, 5601, bytes(3000), host.ip6, IPv6Address(S6))
        first = fragment6(host.ip6, S6, PROTO_UDP, udp[:1232], 0, True, 99)
        if with_first:
            host.send_ip6(first)
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[2464:], 2464, False, 99))
        await trio.sleep(59.0)
        assert stack.resources()["reassembly_datagrams"] == 1
        assert not host.icmp6_errors()
        await trio.sleep(2.0)
        assert stack.resources()["reassembly_datagrams"] == 0
        assert stack.resources()["reassembly_bytes"] == 0
        assert stack.stats["drop.ipv6.reassembly_timeout"] == 1
        assert stack.stats["drop.ipv4.reassembly_timeout"] == 0
        errors = host.icmp6_errors()
        if with_first:
            (message,) = errors
            assert (message.type, message.code) == (ICMPV6_TIME_EXCEEDED, 1)
            # As much of it as fits in 1280 bytes (RFC 4443 2.4(c)).
            assert bytes(message.payload) == first[:1280 - 48]
        else:
            assert errors == []
        assert sock.queued == 0
        await sock.aclose()


async def test_rfc8200_4_5_default_ipv6_reassembly_timeout_is_60_seconds(autojump_clock):
    """RFC 8200 4.5: reassembly is abandoned if the fragments are not all
    there within 60 seconds of the first one; with a default Stack an
    IPv6 datagram waits that long (IPv4 keeps RFC 1122's / Linux's 30 s)."""
    async with stack_and_raw_host() as (stack, host):
        sock = await stack.open_udp_socket(5603)
        udp = build_udp(5555, 5603, bytes(3000), host.ip6, IPv6Address(S6))
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[:1232], 0, True, 98))
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[2464:], 2464, False, 98))
        await trio.sleep(45.0)
        assert stack.stats["drop.ipv6.reassembly_timeout"] == 0
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp[1232:2464], 1232, True, 98))
        with trio.fail_after(1):
            assert (await sock.recvfrom())[0] == bytes(3000)
        await sock.aclose()


async def test_rfc8200_4_5_reassembly_memory_bound_is_shared_with_ipv4(autojump_clock):
    """RFC 8200 4.5 / RFC 815 (resources for reassembly are bounded): one
    bound, Stack(reassembly=ReassemblyConfig(max_bytes=)), holds partial
    datagrams of both families; once IPv4 fragments fill it an IPv6
    fragment is dropped ("drop.ipv6.reassembly_full") and the other way
    round; when the IPv4 datagram completes, IPv6 datagrams fit again."""
    config = trionet.ReassemblyConfig(max_bytes=9000)
    async with stack_and_raw_host(stack_kwargs=dict(reassembly=config)) as (stack, host):
        sock = await stack.open_udp_socket(5602)
        src4, dst4 = IPv4Address("10.0.0.9"), IPv4Address(S4)
        data4 = random.Random(4).randbytes(5000)
        udp4 = build_udp(5555, 5602, data4, src4, dst4)
        # IPv4: the first 3 of 4 fragments of a 5 kB datagram (each counts
        # its bytes and some overhead, the first its raw copy too).
        # (fragment_ipv4: the stack's own IPv4 fragmenter, internal; no
        # public builder of IPv4 fragments exists.)
        pieces4 = [build_ipv4(h, bytes(p)) for h, p in fragment_ipv4(
            IPv4Header(src4, dst4, PROTO_UDP, identification=4444), udp4, 1500)]
        assert len(pieces4) == 4
        for packet in pieces4[:3]:
            host.send_ip(packet, dst_mac=SERVER_MAC)
        await trio.sleep(0.1)
        held = stack.resources()["reassembly_bytes"]
        assert 4500 < held <= 9000
        # IPv6: a 1.2 kB fragment does not fit beside them.
        data6 = random.Random(6).randbytes(2000)
        udp6 = build_udp(5555, 5602, data6, host.ip6, IPv6Address(S6))
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp6[:1232], 0, True, 66))
        await trio.sleep(0.1)
        assert stack.stats["drop.ipv6.reassembly_full"] == 1
        assert stack.resources()["reassembly_bytes"] == held
        # The IPv4 datagram completes and frees its share ...
        for packet in pieces4[2:]:
            host.send_ip(packet, dst_mac=SERVER_MAC)
        with trio.fail_after(1):
            assert (await sock.recvfrom())[0] == data4
        assert stack.resources()["reassembly_bytes"] == 0
        # ... and the IPv6 one fits now; while it is held, IPv4 is refused.
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp6[:1232], 0, True, 67))
        await trio.sleep(0.1)
        assert stack.resources()["reassembly_bytes"] > 2400
        assert stack.stats["drop.ipv4.reassembly_full"] == 0
        big4 = [build_ipv4(h, bytes(p)) for h, p in fragment_ipv4(
            IPv4Header(src4, dst4, PROTO_UDP, identification=4445),
            build_udp(5555, 5602, bytes(9000), src4, dst4), 1500)]
        for packet in big4[:4]:
            host.send_ip(packet, dst_mac=SERVER_MAC)
        await trio.sleep(0.1)
        assert stack.stats["drop.ipv4.reassembly_full"] >= 1
        host.send_ip6(fragment6(host.ip6, S6, PROTO_UDP, udp6[1232:], 1232, False, 67))
        with trio.fail_after(1):
            assert (await sock.recvfrom())[0] == data6
        await sock.aclose()


# --- the Trio socket layer (RFC 3493, RFC 4291 2.5.5.2) -----------------------------------------


async def test_rfc3493_3_3_trio_open_tcp_stream_to_an_ipv6_literal(autojump_clock):
    """RFC 3493 3.3 (sockaddr_in6) inside use_stack: trio.open_tcp_stream
    ("fd00::2", port) makes an AF_INET6 socket whose getsockname and
    getpeername are 4-tuples (host, port, flowinfo 0, scope id 0)."""
    async with dual_stacks() as net:
        (listener,) = await net.server.open_tcp_listeners(8400)
        with trionet.use_stack(net.client):
            stream = await trio.open_tcp_stream(S6, 8400)
        accepted = await listener.accept()
        sock = stream.socket
        assert sock.family == stdlib.AF_INET6
        assert sock.getpeername() == (S6, 8400, 0, 0)
        assert sock.getsockname() == (C6, accepted.remote_address[1], 0, 0)
        await stream.send_all(b"via trio")
        assert await accepted.receive_some() == b"via trio"
        await accepted.send_all(b"and back")
        assert await stream.receive_some() == b"and back"
        await stream.aclose()
        await accepted.aclose()
        await listener.aclose()


async def test_rfc3493_5_3_trio_serve_tcp_has_a_listener_per_family(autojump_clock):
    """RFC 3493 5.3: trio.serve_tcp(port) inside use_stack opens one socket
    per family on the port, the AF_INET6 one with IPV6_V6ONLY (as Trio sets
    it); clients of each family reach the listener of theirs and the
    handler sees the peer in its socket's family."""
    peers = []

    async def handler(stream: trio.SocketStream) -> None:
        peers.append((stream.socket.family, stream.socket.getpeername(),
                      stream.socket.getsockname()))
        await echo(stream)

    async with dual_stacks() as net:
        async with trio.open_nursery() as nursery:
            with trionet.use_stack(net.server):
                listeners = await nursery.start(trio.serve_tcp, handler, 8401)
            by_family = {l.socket.family: l.socket for l in listeners}
            assert set(by_family) == {stdlib.AF_INET, stdlib.AF_INET6}
            assert by_family[stdlib.AF_INET6].getsockopt(stdlib.IPPROTO_IPV6,
                                                         stdlib.IPV6_V6ONLY) == 1
            assert by_family[stdlib.AF_INET6].getsockname() == ("::", 8401, 0, 0)
            with trionet.use_stack(net.client):
                for host in (S6, S4):
                    stream = await trio.open_tcp_stream(host, 8401)
                    await stream.send_all(b"echo " + host.encode())
                    assert await stream.receive_some() == b"echo " + host.encode()
                    await stream.aclose()
            nursery.cancel_scope.cancel()
        cport6 = peers[0][1][1]
        cport4 = peers[1][1][1]
        assert peers == [(stdlib.AF_INET6, (C6, cport6, 0, 0), (S6, 8401, 0, 0)),
                         (stdlib.AF_INET, (C4, cport4), (S4, 8401))]


async def test_rfc3493_3_3_af_inet6_udp_sockets_use_4_tuples(autojump_clock):
    """RFC 3493 3.3 / RFC 4291 2.5.5.2: AF_INET6 UDP sockets send to and
    receive from 4-tuple sockaddrs (a 2-tuple is taken too, as Python's);
    a dual-stack socket reaches an IPv4 peer through its IPv4-mapped
    address and sees it as ::ffff:a.b.c.d; an IPV6_V6ONLY one cannot."""
    async with dual_stacks() as net:
        with trionet.use_stack(net.server):
            server = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_DGRAM)
            assert server.getsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY) == 0
            await server.bind(("::", 8402))
            assert server.getsockname() == ("::", 8402, 0, 0)
        with trionet.use_stack(net.client):
            client = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_DGRAM)
            await client.bind(("::", 0))
            await client.sendto(b"4-tuple", (S6, 8402, 0, 0))
            data, sender = await server.recvfrom(100)
            assert data == b"4-tuple" and sender == (C6, client.getsockname()[1], 0, 0)
            await server.sendto(b"reply", sender)
            assert await client.recvfrom(100) == (b"reply", (S6, 8402, 0, 0))
            await client.sendto(b"2-tuple", (S6, 8402))
            assert (await server.recvfrom(100))[0] == b"2-tuple"
            # IPv4 through the mapped address, both ways.
            await client.sendto(b"mapped", (f"::ffff:{S4}", 8402, 0, 0))
            data, sender = await server.recvfrom(100)
            assert data == b"mapped" and sender == (f"::ffff:{C4}", sender[1], 0, 0)
            await server.sendto(b"mapped reply", sender)
            assert await client.recvfrom(100) == (b"mapped reply", (f"::ffff:{S4}", 8402, 0, 0))
            v6only = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_DGRAM)
            v6only.setsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY, 1)
            with pytest.raises(OSError) as info:  # as Linux's udpv6_sendmsg
                await v6only.sendto(b"no", (f"::ffff:{S4}", 8402, 0, 0))
            assert info.value.errno == errno.ENETUNREACH
            for sock in (client, server, v6only):
                sock.close()


async def test_rfc3493_5_3_ipv6_v6only_default_off_and_ipv4_mapped_peers(autojump_clock):
    """RFC 3493 5.3 (IPV6_V6ONLY, off by default as Linux's bindv6only=0)
    and RFC 4291 2.5.5.2: an AF_INET6 listener on "::" accepts an IPv4
    client, seen as ::ffff:10.0.0.1 (accept, getpeername, getsockname);
    with IPV6_V6ONLY set, the IPv4 client is refused and IPv6 still works."""
    async with dual_stacks() as net:
        with trionet.use_stack(net.server):
            dual = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_STREAM)
            assert dual.getsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY) == 0
            await dual.bind(("::", 8403))
            dual.listen(5)
            only6 = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_STREAM)
            only6.setsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY, 1)
            assert only6.getsockopt(stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY) == 1
            await only6.bind(("::", 8404))
            only6.listen(5)
        stream = await net.client.open_tcp_stream(S4, 8403)
        conn, address = await dual.accept()
        assert address == (f"::ffff:{C4}", stream.local_address[1], 0, 0)
        assert conn.getpeername() == address
        assert conn.getsockname() == (f"::ffff:{S4}", 8403, 0, 0)
        await stream.send_all(b"v4 in v6")
        assert await conn.recv(100) == b"v4 in v6"
        conn.close()
        await stream.aclose()
        with pytest.raises(ConnectionRefusedError):
            await net.client.open_tcp_stream(S4, 8404)
        stream = await net.client.open_tcp_stream(S6, 8404)
        conn, address = await only6.accept()
        assert address == (C6, stream.local_address[1], 0, 0)
        conn.close()
        await stream.aclose()
        dual.close()
        only6.close()


async def test_rfc4007_11_socket_addresses_carry_the_scope_id_of_link_local_peers(autojump_clock):
    """RFC 4007 11 / RFC 3493 3.3 (sin6_scope_id): connecting to a
    link-local peer by (address, port, 0, interface index) or by
    "fe80::...%eth0" works; getpeername and getsockname name it with the
    interface ("%eth0" and its index, as Python shows a kernel socket's)."""
    async with dual_stacks() as net:
        server_ll = IPv6Address(int(link_local(net.server)))
        client_ll = IPv6Address(int(link_local(net.client)))
        index = net.client.interfaces[0].index
        assert index >= 1
        (listener,) = await net.server.open_tcp_listeners(8405)
        with trionet.use_stack(net.client):
            for address in ((str(server_ll), 8405, 0, index), (f"{server_ll}%eth0", 8405)):
                sock = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_STREAM)
                await sock.connect(address)
                accepted = await listener.accept()
                assert sock.getpeername() == (f"{server_ll}%eth0", 8405, 0, index)
                assert sock.getsockname() == (f"{client_ll}%eth0", sock.getsockname()[1], 0,
                                              index)
                assert accepted.remote_address == (f"{client_ll}%eth0", sock.getsockname()[1])
                sock.close()
                await accepted.aclose()
            # An index no interface has: ENODEV (as Linux).
            sock = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_STREAM)
            with pytest.raises(OSError) as info:
                await sock.connect((str(server_ll), 8405, 0, 77))
            assert info.value.errno == errno.ENODEV
        await listener.aclose()


async def test_rfc4007_11_trio_open_tcp_stream_keeps_the_zone_of_a_link_local_literal(
        autojump_clock):
    """RFC 4007 11 (the zone is part of the textual address) and RFC 3493
    6.1 (getaddrinfo returns it as sin6_scope_id): on a client with two
    interfaces, trio.open_tcp_stream("fe80::...%eth0", port) connects on
    eth0; stack.getaddrinfo answers scope id = eth0's index, as the
    kernel's getaddrinfo does."""
    async with dual_stacks() as net:
        extra, _ = trionet.virtual_cable(seed=9)
        net.client.add_interface(extra, "fd01::1/64", name="eth1")
        await ready(net.client, "fd01::1")
        server_ll = IPv6Address(int(link_local(net.server)))
        (listener,) = await net.server.open_tcp_listeners(8406)
        infos = await net.client.getaddrinfo(f"{server_ll}%eth0", 8406,
                                             type=stdlib.SOCK_STREAM)
        assert infos[0][4][3] == net.client.interfaces[0].index
        with trionet.use_stack(net.client):
            with trio.fail_after(5):
                stream = await trio.open_tcp_stream(f"{server_ll}%eth0", 8406)
        accepted = await listener.accept()
        await stream.aclose()
        await accepted.aclose()
        await listener.aclose()


async def test_rfc2732_httpx_fetches_over_ipv6_from_an_h11_server(autojump_clock):
    """RFC 2732 / RFC 3986 3.2.2 (an IPv6 literal in a URL, in brackets):
    httpx inside use_stack(client) fetches http://[fd00::2]:8080/ from an
    h11 server run by trio.serve_tcp inside use_stack(server); the pooled
    IPv6 connection is reused."""
    httpx = pytest.importorskip("httpx")
    h11 = pytest.importorskip("h11")
    body = b"<html>served over IPv6 by trionet</html>" * 300
    seen = []

    async def http_server(stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        seen.append(stream.socket.getpeername())
        async with stream:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some())
                    continue
                if isinstance(event, h11.Request):
                    assert event.target == b"/"
                    assert dict(event.headers)[b"host"] == b"[fd00::2]:8080"
                    response = h11.Response(status_code=200, headers=[
                        ("Content-Length", str(len(body))), ("Content-Type", "text/html")])
                    await stream.send_all(connection.send(response) + connection.send(
                        h11.Data(data=body)) + connection.send(h11.EndOfMessage()))
                elif isinstance(event, h11.EndOfMessage):
                    if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
                        try:
                            connection.start_next_cycle()
                        except h11.LocalProtocolError:
                            return
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return

    async with dual_stacks(latency=0.002) as net:
        async with trio.open_nursery() as nursery:
            with trionet.use_stack(net.server):
                await nursery.start(trio.serve_tcp, http_server, 8080)
            with trionet.use_stack(net.client):
                async with httpx.AsyncClient() as client:
                    for _ in range(3):
                        response = await client.get("http://[fd00::2]:8080/")
                        assert response.status_code == 200 and response.content == body
            nursery.cancel_scope.cancel()
        assert net.server.stats["tcp.passive_opens"] == 1
        assert [peer[0] for peer in seen] == [C6]
        assert net.client.stats["ipv4.tx"] == 0


async def test_rfc1122_4_1_3_3_connected_af_inet6_udp_socket_reports_port_unreachable(
        autojump_clock):
    """RFC 1122 4.1.3.3 with RFC 4443 3.1 code 4: a connected AF_INET6 UDP
    socket learns of the ICMPv6 port unreachable its datagram drew; the
    next recv raises ECONNREFUSED (as Linux's icmpv6_err_convert)."""
    async with dual_stacks() as net:
        with trionet.use_stack(net.client):
            sock = trio.socket.socket(stdlib.AF_INET6, stdlib.SOCK_DGRAM)
            await sock.connect((S6, 9, 0, 0))
            assert sock.getpeername() == (S6, 9, 0, 0)
            assert sock.getsockname()[0] == C6
            await sock.send(b"anyone?")
            await trio.sleep(0.1)  # the error is back before recv is called
            assert sock.is_readable()
            with trio.fail_after(1):
                with pytest.raises(ConnectionRefusedError):
                    await sock.recv(100)
            sock.close()
        assert net.server.stats["icmp6.tx_error"] == 1
        assert net.client.stats["udp.icmp_error"] == 1


@pytest.mark.parametrize("family, server", [(stdlib.AF_INET6, S6), (stdlib.AF_INET, S4)],
                         ids=["ipv6", "ipv4"])
async def test_rfc1122_4_1_3_3_a_blocked_recv_is_woken_by_port_unreachable(
        autojump_clock, family, server):
    """RFC 1122 4.1.3.3 (UDP passes ICMP errors to the application), as
    Linux does for a connected socket: a recv already waiting when the
    ICMPv6 port unreachable arrives raises ECONNREFUSED at once (a DNS
    client learns the server is down without its timeout)."""
    async with dual_stacks() as net:
        with trionet.use_stack(net.client):
            sock = trio.socket.socket(family, stdlib.SOCK_DGRAM)
            await sock.connect((server, 9))
            await sock.send(b"anyone?")
            with trio.fail_after(1):
                with pytest.raises(ConnectionRefusedError):
                    await sock.recv(100)
            sock.close()