"""An interface on a link without Ethernet (``link.ethernet`` False, as
TunLink): frames are bare IP packets, dispatched on the version field (RFC
791 3.1, RFC 8200 3), sent without any header, with no ARP, neighbour
discovery, link-local address or MLD. In memory, virtual time."""

from __future__ import annotations

import io
import struct
from ipaddress import IPv4Address, IPv6Address

import trio

import trionet
from trionet import wire
from trionet.link import Capture, Link, read_pcap

STACK4, PEER4 = IPv4Address("10.0.0.2"), IPv4Address("10.0.0.1")
STACK6, PEER6 = IPv6Address("fd00::2"), IPv6Address("fd00::1")


class IpLink(Link):
    """One end of an in-memory point-to-point link of bare IP packets."""

    ethernet = False
    needs_arp = False

    def __init__(self, mtu: int = 1500) -> None:
        super().__init__()
        self.mtu = mtu
        self.sent: list[bytes] = []
        self.peer: IpLink | None = None
        self._send, self._receive = trio.open_memory_channel(1000)

    def send_frame(self, frame: bytes, gso_size: int = 0) -> None:
        self.sent.append(bytes(frame))
        if self.peer is not None:
            self.peer.inject(frame)

    def inject(self, packet: bytes) -> None:
        self._send.send_nowait(bytes(packet))

    async def receive_batch(self, max_frames: int = 64) -> list[bytes]:
        frames = [await self._receive.receive()]
        while len(frames) < max_frames:
            try:
                frames.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        return frames

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        await trio.lowlevel.checkpoint()


def ip_pair() -> tuple[IpLink, IpLink]:
    a, b = IpLink(), IpLink()
    a.peer, b.peer = b, a
    return a, b


def echo_request4(payload: bytes = b"ping") -> bytes:
    icmp = wire.build_icmpv4(wire.IcmpMessage.echo_request(7, 1, payload))
    return wire.build_ipv4(wire.IPv4Header(PEER4, STACK4, wire.PROTO_ICMP), icmp)


def echo_request6(payload: bytes = b"ping6") -> bytes:
    icmp = wire.build_icmpv6(wire.Icmpv6Message.echo_request(7, 1, payload), PEER6, STACK6)
    return wire.build_ipv6(wire.IPv6Header(PEER6, STACK6, wire.PROTO_ICMPV6, 64), icmp)


async def settle(seconds: float = 1.0) -> None:
    await trio.sleep(seconds)


async def test_echo_requests_of_both_versions_are_answered_with_bare_packets(autojump_clock):
    """RFC 792 / RFC 4443 4.2 echo, over IP framing: the replies are IP
    packets (version nibble first), with no Ethernet header."""
    link = IpLink()
    async with trionet.Stack(seed=1) as stack:
        iface = stack.add_interface(link, f"{STACK4}/24")
        entry = iface.add_address(f"{STACK6}/64")
        # No DAD on a point-to-point IP link: the address is usable at once.
        assert entry.state is trionet.AddressState.PREFERRED
        assert not iface.ethernet and iface.ipv6 is None
        await settle()
        # No link-local address, no router solicitation, no MLD report.
        assert [a.interface for a in iface.addresses] == [
            trionet.interface.addresses.parse_host_address(f"{STACK4}/24"),
            trionet.interface.addresses.parse_host_address(f"{STACK6}/64")]
        assert link.sent == []
        link.inject(echo_request4())
        link.inject(echo_request6())
        await settle()
        assert stack.stats["tun.rx"] == 2
        replies = link.sent
        assert len(replies) == 2
        header4, body4 = wire.parse_ipv4(replies[0])
        assert (header4.src, header4.dst) == (STACK4, PEER4)
        assert wire.parse_icmpv4(body4).type == wire.ICMP_ECHO_REPLY
        header6, body6 = wire.parse_ipv6(replies[1])
        assert (header6.src, header6.dst) == (STACK6, PEER6)
        assert wire.parse_icmpv6(body6, header6.src, header6.dst).type == wire.ICMPV6_ECHO_REPLY


async def test_other_versions_and_empty_packets_are_dropped_and_counted(autojump_clock):
    link = IpLink()
    async with trionet.Stack(seed=2) as stack:
        stack.add_interface(link, f"{STACK4}/24")
        for junk in (b"", b"\x50" + bytes(30), b"\x00" * 20, bytes.fromhex("ffff"),
                     b"\x45", b"\x60\x00"):
            link.inject(junk)
        # An Ethernet frame carrying IPv4 (the wrong framing) is no IP packet.
        link.inject(wire.build_ethernet(b"\x02" * 6, b"\x02" * 6, wire.ETHERTYPE_IPV4,
                                        echo_request4()))
        link.inject(echo_request4())
        await settle()
        stats = stack.stats
        assert stats["tun.rx"] == 8
        assert stats["drop.tun.truncated"] == 1
        assert stats["drop.tun.unknown_version"] == 4  # 5, 0, 15, and the Ethernet frame's 0
        assert stats["ipv4.rx"] + stats["drop.ipv4.truncated"] >= 1
        assert sum(v for k, v in stats.items() if k.startswith("drop.")) >= 7
        assert len(link.sent) == 1 and link.sent[0][0] >> 4 == 4  # only the echo reply


async def test_handle_frame_on_a_tun_interface_takes_ip_packets(autojump_clock):
    link = IpLink()
    async with trionet.Stack(seed=3) as stack:
        iface = stack.add_interface(link, f"{STACK4}/24")
        iface.handle_frame(echo_request4())  # the NIC's entry point, chosen at construction
        assert len(link.sent) == 1 and wire.parse_ipv4(link.sent[0])[0].dst == PEER4


async def test_our_own_addresses_use_the_internal_loopback(autojump_clock):
    """Linux delivers packets to its own TUN address itself (via lo); so
    does the stack: nothing goes out on the TUN."""
    link = IpLink()
    async with trionet.Stack(seed=4) as stack:
        iface = stack.add_interface(link, f"{STACK4}/24")
        iface.add_address(f"{STACK6}/64")
        assert not iface.loops_back
        await stack.ping(str(STACK4), timeout=1)
        await stack.ping(str(STACK6), timeout=1)
        assert link.sent == []


async def test_tcp_and_udp_over_an_ip_link_both_families(autojump_clock):
    a_link, b_link = ip_pair()
    async with trionet.Stack(seed=5) as a, trionet.Stack(seed=6) as b:
        a.add_interface(a_link, f"{PEER4}/24").add_address(f"{PEER6}/64")
        b.add_interface(b_link, f"{STACK4}/24").add_address(f"{STACK6}/64")

        async def echo(stream):
            async with stream:
                async for data in stream:
                    await stream.send_all(data)

        async with trio.open_nursery() as nursery:
            await nursery.start(b.serve_tcp, echo, 7)
            for host in (STACK4, STACK6):
                data = bytes(range(256)) * 400
                async with await a.open_tcp_stream(str(host), 7) as stream:
                    await stream.send_all(data)
                    await stream.send_eof()
                    got = b""
                    async for chunk in stream:
                        got += chunk
                assert got == data
            # Ping both ways, both families.
            await a.ping(str(STACK4), timeout=1)
            await b.ping(str(PEER6), timeout=1)
            nursery.cancel_scope.cancel()
        assert all(p[0] >> 4 in (4, 6) for p in a_link.sent + b_link.sent)
        assert a.stats["arp.tx_request"] == 0 and b.stats["arp.tx_request"] == 0


async def test_capture_of_an_ip_link_is_linktype_raw(autojump_clock):
    """pcap LINKTYPE_RAW (101): records are bare IPv4/IPv6 packets."""
    buffer = io.BytesIO()
    link = IpLink()
    capture = Capture(link, buffer)
    assert capture.ethernet is False and capture.needs_arp is False
    async with trionet.Stack(seed=7) as stack:
        stack.add_interface(capture, f"{STACK4}/24")
        link.inject(echo_request4())
        await settle()
    data = buffer.getvalue()
    assert struct.unpack_from("<I", data, 20)[0] == 101
    frames = [f for _, f in read_pcap(data)]
    assert frames[0] == echo_request4() and wire.parse_ipv4(frames[1])[0].dst == PEER4
    ethernet = io.BytesIO()
    Capture(trionet.LoopbackLink(), ethernet)
    assert struct.unpack_from("<I", ethernet.getvalue(), 20)[0] == 1
