"""TAP offloads (IFF_VNET_HDR, checksum offload, TSO): the virtio-net header
the link writes, the checks it makes on what it reads, TCP coalescing into
GSO segments, and the IP/interface/capture plumbing of ``gso_size``.

Most tests run without a kernel: ``GsoEnd`` below wraps a virtual_cable end
and does to each frame what the kernel does to one written to an offload
TAP (complete NEEDS_CSUM checksums, cut GSO frames as tcp_gso_segment does),
so whole stacks exchange data over it in virtual time. The tests marked
``kernel`` open real TAP devices (root, /dev/net/tun)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import struct
import subprocess
from collections import Counter
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import attrs
import pytest
import trio

import trionet
from trionet import wire
from trionet.link import Capture, Link, TapLink, TunLink, read_pcap
from trionet.link import tap as tap_module
from trionet.tcp.socket import send_coalesced
from trionet.wire.ipv6 import build_router_alert_header
from trionet.wire.checksum import ones_complement_sum, pseudo_header_sum
from trionet.wire.tcp import ACK, CWR, FIN, PSH, SYN, TcpHeader, TcpOptions, build_tcp, parse_tcp

try:
    from . import netns
    from .test_link_tun import refuse
except ImportError:
    import netns
    from test_link_tun import refuse

SRC = IPv4Address("10.0.0.1")
DST = IPv4Address("10.0.0.2")
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
VNET = struct.Struct("=BBHHHH")
NEEDS_CSUM, DATA_VALID, GSO_TCPV4 = 1, 2, 1


# --- helpers: frames, and the kernel's side of a virtio-net header ----------


def ip_frame(protocol: int, l4: bytes, *, ident: int = 7, options: bytes = b"",
             fragment: bool = False, checksum: bool = False) -> bytes:
    header = wire.IPv4Header(SRC, DST, protocol, identification=ident, dont_fragment=not fragment,
                             more_fragments=fragment, options=options)
    packet = wire.build_ipv4(header, l4, compute_checksum=checksum)
    return wire.build_ethernet(MAC_B, MAC_A, wire.ETHERTYPE_IPV4, packet)


def tcp_frame(payload: bytes = b"data", *, flags: int = ACK | PSH, checksum: bool = False,
              options: TcpOptions = TcpOptions(), ip_options: bytes = b"") -> bytes:
    header = TcpHeader(40000, 80, 1000, 2000, flags, 512, options=options)
    return ip_frame(wire.PROTO_TCP, build_tcp(header, payload, SRC, DST, compute_checksum=checksum),
                    options=ip_options, checksum=checksum)


def kernel_takes(iov: list) -> tuple[tuple, bytes]:
    """What the kernel reads from one writev: the header fields and the frame."""
    header = VNET.unpack(bytes(iov[0]))
    return header, b"".join(bytes(part) for part in iov[1:])


def complete(header: tuple, frame: bytes) -> bytes:
    """The kernel completing a NEEDS_CSUM checksum (skb_checksum_help): the
    field holds the pseudo-header sum; the sum from csum_start goes in."""
    flags, _, _, _, start, offset = header
    if not flags & NEEDS_CSUM:
        return frame
    data = bytearray(frame)
    value = ~ones_complement_sum(data[start:]) & 0xFFFF
    data[start + offset:start + offset + 2] = value.to_bytes(2, "big")
    return bytes(data)


def gso_segment(header: tuple, frame: bytes) -> list[bytes]:
    """The kernel cutting a GSO TCPV4 frame (tcp_gso_segment): each piece
    gets the IP and TCP headers (options included), its own length, IP ID
    and sequence number; FIN and PSH stay on the last piece only, CWR on the
    first only. The big frame's checksum field must hold the pseudo-header
    sum of the whole segment."""
    flags, gso_type, hdr_len, gso_size, start, offset = header
    assert gso_type == GSO_TCPV4 and flags & NEEDS_CSUM and gso_size > 0
    ihl = (frame[14] & 0x0F) * 4
    l4 = 14 + ihl
    assert start == l4 and offset == 16
    assert hdr_len == l4 + (frame[l4 + 12] >> 4) * 4
    src, dst = IPv4Address(frame[26:30]), IPv4Address(frame[30:34])
    field = int.from_bytes(frame[l4 + 16:l4 + 18], "big")
    expected = pseudo_header_sum(src, dst, 6, len(frame) - l4)
    assert field % 0xFFFF == expected % 0xFFFF
    payload = frame[hdr_len:]
    ident = int.from_bytes(frame[18:20], "big")
    seq = int.from_bytes(frame[l4 + 4:l4 + 8], "big")
    pieces = []
    for k, at in enumerate(range(0, len(payload), gso_size)):
        chunk = payload[at:at + gso_size]
        last = at + gso_size >= len(payload)
        ip = bytearray(frame[14:l4])
        ip[2:4] = (hdr_len - 14 + len(chunk)).to_bytes(2, "big")
        ip[4:6] = ((ident + k) & 0xFFFF).to_bytes(2, "big")
        ip[10:12] = b"\0\0"
        ip[10:12] = (~ones_complement_sum(ip) & 0xFFFF).to_bytes(2, "big")
        tcp = bytearray(frame[l4:hdr_len])
        tcp[4:8] = ((seq + at) & 0xFFFFFFFF).to_bytes(4, "big")
        if not last:
            tcp[13] &= ~(FIN | PSH) & 0xFF
        if k:
            tcp[13] &= ~CWR & 0xFF
        tcp[16:18] = b"\0\0"
        s = ones_complement_sum(bytes(tcp) + chunk,
                                pseudo_header_sum(src, dst, 6, len(tcp) + len(chunk)))
        tcp[16:18] = (~s & 0xFFFF).to_bytes(2, "big")
        pieces.append(frame[:14] + bytes(ip) + bytes(tcp) + chunk)
    return pieces


class GsoEnd(Link):
    """A virtual_cable end seen through an offload TAP: frames go through
    ``TapLink``'s own header code, then through what the kernel does with
    them. ``gso_frames`` records (gso_size, pieces) for every GSO frame."""

    tso_max = 65535 + 14
    checksum_offload = True

    def __init__(self, inner: Link):
        super().__init__()
        self.inner = inner
        self.mtu = inner.mtu
        self.gso_frames: list[tuple[int, list[bytes]]] = []

    def send_frame(self, frame: bytes, gso_size: int = 0) -> None:
        assert len(frame) <= (self.tso_max if gso_size else self.mtu + 14)
        iov = tap_module._offload_iov(frame, gso_size)
        assert iov is not None
        header, data = kernel_takes(iov)
        if gso_size:
            pieces = gso_segment(header, data)
            self.gso_frames.append((gso_size, pieces))
        else:
            pieces = [complete(header, data)]
        for piece in pieces:
            self.inner.send_frame(piece)

    async def receive_batch(self, max_frames: int = 64) -> list[bytes]:
        return await self.inner.receive_batch(max_frames)

    async def aclose(self) -> None:
        await self.inner.aclose()


# --- the virtio-net header a frame goes out with -----------------------------


def test_tcp_frame_gets_needs_csum_and_the_pseudo_header_sum():
    frame = tcp_frame(b"hello world")
    header, data = kernel_takes(tap_module._offload_iov(frame, 0))
    assert header == (NEEDS_CSUM, 0, 0, 0, 34, 16)
    # Untouched but for the two checksum fields.
    assert data[:24] == frame[:24] and data[26:50] == frame[26:50] and data[52:] == frame[52:]
    ip, segment = wire.parse_ipv4(memoryview(complete(header, data))[14:])  # IP checksum checked
    tcp, payload = parse_tcp(segment, ip.src, ip.dst)  # TCP checksum checked
    assert bytes(payload) == b"hello world" and tcp.flags == ACK | PSH


def test_an_already_computed_checksum_is_replaced_consistently():
    frame = tcp_frame(b"x" * 1000, checksum=True)
    header, data = kernel_takes(tap_module._offload_iov(frame, 0))
    assert complete(header, data) == frame


def test_udp_frame_and_ip_options():
    udp = wire.build_udp(5000, 53, b"query", SRC, DST, compute_checksum=False)
    frame = ip_frame(wire.PROTO_UDP, udp, options=b"\x94\x04\x00\x00")  # router alert
    header, data = kernel_takes(tap_module._offload_iov(frame, 0))
    assert header == (NEEDS_CSUM, 0, 0, 0, 38, 6)
    ip, body = wire.parse_ipv4(memoryview(complete(header, data))[14:])
    udp_header, payload = wire.parse_udp(body, ip.src, ip.dst)
    assert bytes(payload) == b"query"


def test_icmp_and_fragments_get_only_the_ip_header_checksum():
    icmp = wire.build_icmpv4(wire.IcmpMessage.echo_request(1, 2, b"ping"))
    for frame in (ip_frame(wire.PROTO_ICMP, icmp),
                  ip_frame(wire.PROTO_UDP, b"\x13\x88\x00\x35" + bytes(20), fragment=True)):
        header, data = kernel_takes(tap_module._offload_iov(frame, 0))
        assert header == (0, 0, 0, 0, 0, 0)
        assert data[14:] == wire.build_ipv4(wire.parse_ipv4(frame[14:], verify_checksum=False)[0],
                                            frame[34:])
    header, data = kernel_takes(tap_module._offload_iov(ip_frame(wire.PROTO_ICMP, icmp), 0))
    wire.parse_icmpv4(wire.parse_ipv4(data[14:])[1])


def test_arp_and_runts_pass_unchanged():
    arp = wire.build_ethernet(wire.BROADCAST_MAC, MAC_A, wire.ETHERTYPE_ARP, bytes(28))
    for frame in (arp, bytes(20)):
        iov = tap_module._offload_iov(frame, 0)
        assert iov == [bytes(10), frame]


def test_gso_frame_header():
    opts = TcpOptions(timestamps=(1, 2))
    frame = tcp_frame(bytes(4000), flags=ACK | PSH, options=opts)
    header, data = kernel_takes(tap_module._offload_iov(frame, 1448))
    assert header == (NEEDS_CSUM, GSO_TCPV4, 14 + 20 + 32, 1448, 34, 16)
    pieces = gso_segment(header, data)
    assert [len(p) - 66 for p in pieces] == [1448, 1448, 1104]
    parsed = [parse_tcp(wire.parse_ipv4(p[14:])[1], SRC, DST) for p in pieces]
    assert [h.flags for h, _ in parsed] == [ACK, ACK, ACK | PSH]
    assert [h.seq - 1000 for h, _ in parsed] == [0, 1448, 2896]
    assert all(h.options == opts for h, _ in parsed)


def test_gso_is_refused_for_anything_but_tcp():
    udp = ip_frame(wire.PROTO_UDP, wire.build_udp(1, 2, bytes(3000), SRC, DST))
    arp = wire.build_ethernet(wire.BROADCAST_MAC, MAC_A, wire.ETHERTYPE_ARP, bytes(28))
    icmp = ip_frame(wire.PROTO_ICMP, wire.build_icmpv4(wire.IcmpMessage.echo_request(1, 2, b"")))
    for frame in (udp, arp, icmp, bytes(10)):
        assert tap_module._offload_iov(frame, 1000) is None


# --- IPv6: the same jobs, with IPv6's pseudo-header (RFC 8200 8.1) ------------

SRC6 = IPv6Address("fd00::1")
DST6 = IPv6Address("fd00::2")
GSO_TCPV6 = 4


def ip6_frame(protocol: int, l4: bytes) -> bytes:
    return wire.build_ethernet(MAC_B, MAC_A, wire.ETHERTYPE_IPV6,
                               wire.build_ipv6_plain(SRC6, DST6, protocol, l4))


def tcp6_frame(payload: bytes = b"data", *, checksum: bool = False,
               options: TcpOptions = TcpOptions()) -> bytes:
    header = TcpHeader(40000, 80, 1000, 2000, ACK | PSH, 512, options=options)
    return ip6_frame(wire.PROTO_TCP, build_tcp(header, payload, SRC6, DST6,
                                               compute_checksum=checksum))


def test_ipv6_tcp_and_udp_get_needs_csum_with_the_ipv6_pseudo_header():
    for frame, offset in ((tcp6_frame(b"hello six"), 16),
                          (ip6_frame(wire.PROTO_UDP, wire.build_udp(
                              5000, 53, b"query", SRC6, DST6, compute_checksum=False)), 6)):
        header, data = kernel_takes(tap_module._offload_iov(frame, 0))
        assert header == (NEEDS_CSUM, 0, 0, 0, 54, offset)
        assert data[:54] == frame[:54]  # no IPv6 header checksum to fill in
        ip, body = wire.parse_ipv6(memoryview(complete(header, data))[14:])
        if offset == 16:
            assert bytes(parse_tcp(body, ip.src, ip.dst)[1]) == b"hello six"  # checked
        else:
            assert bytes(wire.parse_udp(body, ip.src, ip.dst)[1]) == b"query"  # checked
    # A computed checksum is replaced by the same.
    frame = tcp6_frame(b"x" * 1000, checksum=True)
    assert complete(*kernel_takes(tap_module._offload_iov(frame, 0))) == frame


def test_ipv6_icmp_and_extension_headers_pass_complete():
    icmp = wire.build_icmpv6(wire.Icmpv6Message.echo_request(1, 2, b"ping"), SRC6, DST6)
    for frame in (ip6_frame(wire.PROTO_ICMPV6, icmp),
                  ip6_frame(0, build_router_alert_header(wire.PROTO_ICMPV6) + icmp)):
        assert tap_module._offload_iov(frame, 0) == [bytes(10), frame]
        assert tap_module._offload_iov(frame, 1000) is None  # GSO is for TCP only


def test_ipv6_gso_frame_header():
    frame = tcp6_frame(bytes(4000), options=TcpOptions(timestamps=(1, 2)))
    header, data = kernel_takes(tap_module._offload_iov(frame, 1428))
    assert header == (NEEDS_CSUM, GSO_TCPV6, 14 + 40 + 32, 1428, 54, 16)
    field = int.from_bytes(data[54 + 16:54 + 18], "big")
    assert field % 0xFFFF == pseudo_header_sum(SRC6, DST6, 6, len(frame) - 54) % 0xFFFF


def test_checksums_ok_ipv6():
    good = tcp6_frame(b"abc", checksum=True)
    assert tap_module.checksums_ok(good)
    bad = bytearray(good)
    bad[-1] ^= 1
    assert not tap_module.checksums_ok(bytes(bad))
    icmp = ip6_frame(wire.PROTO_ICMPV6,
                     wire.build_icmpv6(wire.Icmpv6Message.echo_request(1, 2, b"p"), SRC6, DST6))
    assert tap_module.checksums_ok(icmp)
    bad = bytearray(icmp)
    bad[-1] ^= 1
    assert not tap_module.checksums_ok(bytes(bad))
    # RFC 8200 8.1: a zero UDP checksum is not "none" over IPv6.
    zero = ip6_frame(wire.PROTO_UDP, wire.build_udp(1, 2, b"x", SRC6, DST6,
                                                    compute_checksum=False))
    assert not tap_module.checksums_ok(zero)
    # Extension headers and truncated frames: left to the stack.
    assert tap_module.checksums_ok(ip6_frame(0, bytes(16)))
    assert tap_module.checksums_ok(good[:50])


# --- what the link checks on frames the kernel did not vouch for -------------


def test_checksums_ok():
    good_tcp = tcp_frame(b"abc", checksum=True)
    assert tap_module.checksums_ok(good_tcp)
    bad = bytearray(good_tcp)
    bad[-1] ^= 1
    assert not tap_module.checksums_ok(bytes(bad))
    bad_ip = bytearray(good_tcp)
    bad_ip[22] ^= 1  # TTL changed, header checksum not updated
    assert not tap_module.checksums_ok(bytes(bad_ip))
    udp = wire.build_udp(1, 2, b"payload", SRC, DST)
    good_udp = ip_frame(wire.PROTO_UDP, udp, checksum=True)
    assert tap_module.checksums_ok(good_udp)
    bad = bytearray(good_udp)
    bad[-1] ^= 1
    assert not tap_module.checksums_ok(bytes(bad))
    # UDP without a checksum (RFC 768: zero) passes.
    no_sum = ip_frame(wire.PROTO_UDP, wire.build_udp(1, 2, b"x", SRC, DST, compute_checksum=False),
                      checksum=True)
    assert no_sum[40:42] == b"\0\0" and tap_module.checksums_ok(no_sum)
    icmp = ip_frame(wire.PROTO_ICMP, wire.build_icmpv4(wire.IcmpMessage.echo_request(1, 2, b"p")),
                    checksum=True)
    assert tap_module.checksums_ok(icmp)
    bad = bytearray(icmp)
    bad[-1] ^= 1
    assert not tap_module.checksums_ok(bytes(bad))
    # Fragments (transport checksum spans the datagram), ARP, truncated:
    # left to the stack.
    assert tap_module.checksums_ok(ip_frame(wire.PROTO_UDP, bytes(16), fragment=True, checksum=True))
    assert tap_module.checksums_ok(wire.build_ethernet(MAC_B, MAC_A, wire.ETHERTYPE_ARP, bytes(28)))
    assert tap_module.checksums_ok(good_tcp[:40])


# --- coalescing the TCP machine's output -------------------------------------


@attrs.frozen
class FakePath:
    tso_max: int = 65535
    offload: bool = True
    output: object = None


class FakeStack:
    def __init__(self):
        self.sent = []
        self.stats = Counter()

    def ip_send(self, path, src, dst, protocol, segment, *, dont_fragment=False, gso_size=0):
        assert dont_fragment and protocol == wire.PROTO_TCP
        header, payload = parse_tcp(segment, src, dst, verify_checksum=False)
        self.sent.append((header.seq, header.flags, len(payload), gso_size, bytes(payload)))


def segments(*specs, start=1000, window=512, options=TcpOptions(timestamps=(5, 6))):
    """(length, flags) specs, contiguous from ``start``; a dict spec overrides
    header fields."""
    out = []
    seq = start
    for spec in specs:
        fields = {}
        if isinstance(spec, dict):
            fields = dict(spec)
            spec = fields.pop("spec")
        length, flags = spec
        header = TcpHeader(40000, 80, fields.pop("seq", seq), 2000, flags,
                           fields.pop("window", window), options=fields.pop("options", options))
        out.append((header, bytes([len(out) & 0xFF]) * length))
        seq += length + (1 if flags & FIN else 0)
    return out


def coalesce(out, tso_max=65535):
    stack = FakeStack()
    send_coalesced(FakePath(tso_max, output=stack.ip_send), stack.stats, SRC, DST, out)
    # Byte for byte, the data sent is the data given.
    assert b"".join(p for *_, p in stack.sent) == b"".join(p for _, p in out)
    return [(seq - 1000, flags, n, gso) for seq, flags, n, gso, _ in stack.sent], stack


def test_a_run_of_full_segments_goes_as_one_with_psh_from_the_last():
    sent, stack = coalesce(segments((1000, ACK), (1000, ACK), (1000, ACK), (400, ACK | PSH)))
    assert sent == [(0, ACK | PSH, 3400, 1000)]
    assert stack.stats["tcp.tx_coalesced"] == 1


def test_fin_on_the_last_segment_joins_the_run():
    sent, _ = coalesce(segments((1000, ACK), (1000, ACK | PSH | FIN)))
    assert sent == [(0, ACK | PSH | FIN, 2000, 1000)]


def test_what_breaks_a_run():
    # A pure ACK, then data: the ACK alone.
    sent, _ = coalesce(segments((0, ACK), (1000, ACK), (1000, ACK)))
    assert sent == [(0, ACK, 0, 0), (0, ACK, 2000, 1000)]
    # A short segment ends a run; PSH ends a run; the next starts after.
    sent, _ = coalesce(segments((1000, ACK), (500, ACK), (1000, ACK), (1000, ACK | PSH),
                                (1000, ACK), (1000, ACK)))
    assert sent == [(0, ACK, 1500, 1000), (1500, ACK | PSH, 2000, 1000), (3500, ACK, 2000, 1000)]
    # A different window, options or a gap in the sequence numbers.
    for change in ({"window": 9}, {"options": TcpOptions(timestamps=(5, 7))}, {"seq": 2100}):
        sent, _ = coalesce(segments((1000, ACK), (1000, ACK), {"spec": (1000, ACK), **change}))
        assert [(s, n, g) for s, _, n, g in sent] == [(0, 2000, 1000), (sent[1][0], 1000, 0)]
    # A longer segment after a short first one; a PSH first segment; a SYN.
    sent, _ = coalesce(segments((500, ACK), (1000, ACK)))
    assert sent == [(0, ACK, 500, 0), (500, ACK, 1000, 0)]
    sent, _ = coalesce(segments((1000, ACK | PSH), (1000, ACK)))
    assert [g for *_, g in sent] == [0, 0]
    sent, _ = coalesce(segments((1000, SYN | ACK), (1000, ACK)))
    assert [g for *_, g in sent] == [0, 0]


def test_runs_are_cut_to_the_tso_limit():
    out = segments(*[(1448, ACK)] * 100, options=TcpOptions(timestamps=(1, 1)))
    sent, _ = coalesce(out)
    per = (65535 - 20 - 32) // 1448  # 45 segments in one datagram
    assert [n // 1448 for _, _, n, _ in sent] == [per, per, 100 - 2 * per]
    sent, _ = coalesce(out, tso_max=20 + 32 + 3 * 1448)
    assert {n for _, _, n, _ in sent} == {3 * 1448, 1448} and len(sent) == 34


def test_the_non_tso_path_is_unchanged():
    sent, stack = coalesce(segments((1000, ACK)))
    assert sent == [(0, ACK, 1000, 0)] and not stack.stats


# --- stacks over a TSO link, in virtual time ----------------------------------


async def _bulk_over_gso(size: int, loss: float, seed: int):
    rng = random.Random(seed)
    up, down = rng.randbytes(size), rng.randbytes(size)
    # Checksums are verified on the plain end: the GSO end's must be right.
    end_a, end_b = trionet.virtual_cable(latency=0.002, loss=loss, seed=seed,
                                         checksum_offload=False)
    gso = GsoEnd(end_a)
    async with trionet.Stack(seed=1) as a, trionet.Stack(seed=2) as b:
        a.add_interface(gso, "10.0.0.1/24")
        b.add_interface(end_b, "10.0.0.2/24")

        async def serve(stream):
            async with stream:
                got = []
                async for chunk in stream:
                    got.append(chunk)
                assert hashlib.sha256(b"".join(got)).digest() == hashlib.sha256(up).digest()
                await stream.send_all(down)

        async with trio.open_nursery() as nursery:
            await nursery.start(b.serve_tcp, serve, 80)
            async with await a.open_tcp_stream("10.0.0.2", 80) as stream:
                await stream.send_all(up)
                await stream.send_eof()
                got = []
                async for chunk in stream:
                    got.append(chunk)
                assert b"".join(got) == down
            nursery.cancel_scope.cancel()
    for stack in (a, b):
        assert stack.stats["drop.internal.error"] == 0
        assert not any("checksum" in k for k in stack.stats.drops()), stack.stats.drops()
    return a, b, gso


async def test_bulk_over_a_tso_link_is_byte_exact(autojump_clock):
    a, b, gso = await _bulk_over_gso(1_000_000, 0.0, 3)
    assert a.stats["tcp.tx_coalesced"] > 0 and a.stats["ipv4.tx_gso"] == len(gso.gso_frames)
    mss = 1460 - 12  # timestamps on
    for gso_size, pieces in gso.gso_frames:
        assert gso_size == mss and len(pieces) >= 2
        flags = [p[14 + 20 + 13] for p in pieces]
        assert all(not f & (PSH | FIN) for f in flags[:-1])
    # Fewer, larger writes than segments: the point of TSO.
    assert b.stats["tcp.rx"] > 2 * a.stats["ipv4.tx_gso"]


async def test_bulk_over_a_lossy_tso_link(autojump_clock):
    a, b, gso = await _bulk_over_gso(300_000, 0.02, 4)
    assert a.stats["tcp.tx_coalesced"] > 0


# --- ip_send, Interface.send_ip and Capture with gso_size ---------------------


class Recorder(Link):
    """Takes every frame; records (frame, gso_size)."""

    mtu = 1500
    checksum_offload = True
    needs_arp = False

    def __init__(self, tso_max: int = 0):
        super().__init__()
        self.tso_max = tso_max
        self.frames: list[tuple[bytes, int]] = []

    def send_frame(self, frame: bytes, gso_size: int = 0) -> None:
        self.frames.append((frame, gso_size))

    async def receive_batch(self, max_frames: int = 64) -> list[bytes]:
        await trio.sleep_forever()

    async def aclose(self) -> None:
        pass


class OldStyleLink(Recorder):
    """A link written before gso_size existed."""

    def send_frame(self, frame: bytes) -> None:  # noqa: D401 - the old signature
        self.frames.append((frame, 0))


async def test_ip_send_passes_gso_through_only_when_needed():
    link = Recorder(tso_max=65535 + 14)
    stack = trionet.Stack()
    stack.add_interface(link, "10.0.0.1/24")
    path = stack.path_to(IPv4Address("10.0.0.2"))
    assert path.tso_max == 65535 and path.offload
    dst = IPv4Address("10.0.0.2")
    stack.network.send(path, path.source, dst, wire.PROTO_TCP, bytes(1000), dont_fragment=True,
                  gso_size=1448)
    stack.network.send(path, path.source, dst, wire.PROTO_TCP, bytes(30000), dont_fragment=True,
                  gso_size=1448)
    stack.network.send(path, path.source, dst, wire.PROTO_TCP, bytes(65535 - 20 + 1),
                  dont_fragment=True, gso_size=1448)
    assert [(len(f) - 34, g) for f, g in link.frames] == [(1000, 0), (30000, 1448)]
    assert stack.stats["drop.ipv4.too_big"] == 1 and stack.stats["ipv4.tx_gso"] == 1
    # Without DF, or on a link without TSO: fragmented / refused as before.
    stack.network.send(path, path.source, dst, wire.PROTO_UDP, bytes(3000), gso_size=1448)
    assert all(g == 0 for f, g in link.frames[2:]) and len(link.frames) == 5


async def test_links_without_tso_never_see_gso_size():
    for link in (Recorder(), OldStyleLink()):
        stack = trionet.Stack()
        stack.add_interface(link, "10.0.0.1/24")
        path = stack.path_to(IPv4Address("10.0.0.2"))
        assert path.tso_max == 0
        stack.network.send(path, path.source, IPv4Address("10.0.0.2"), wire.PROTO_TCP, bytes(30000),
                      dont_fragment=True, gso_size=1448)
        assert link.frames == [] and stack.stats["drop.ipv4.too_big"] == 1
        stack.network.send(path, path.source, IPv4Address("10.0.0.2"), wire.PROTO_TCP, bytes(100),
                      dont_fragment=True, gso_size=1448)
        assert len(link.frames) == 1


async def test_capture_records_the_gso_frame_and_passes_gso_size_on():
    inner = Recorder(tso_max=65535 + 14)
    buffer = io.BytesIO()
    cap = Capture(inner, buffer)
    assert cap.tso_max == 65535 + 14
    frame = tcp_frame(bytes(20000))
    cap.send_frame(frame, 1448)
    cap.send_frame(b"small")
    assert inner.frames == [(frame, 1448), (b"small", 0)]
    assert [f for _, f in read_pcap(buffer.getvalue())] == [frame, b"small"]
    assert Capture(Recorder(), io.BytesIO()).tso_max == 0


async def test_gso_packet_waiting_for_arp_is_dropped_and_counted():
    link = Recorder(tso_max=65535 + 14)
    link.needs_arp = True
    stack = trionet.Stack()
    iface = stack.add_interface(link, "10.0.0.1/24")
    packet = wire.build_ipv4(wire.IPv4Header(iface.ip, DST, wire.PROTO_TCP, dont_fragment=True),
                             bytes(20000))
    iface.send_ip(packet, DST, 1448)
    iface.send_ip(packet, DST, 1448)
    assert stack.stats["drop.arp.gso_unresolved"] == 2
    # ARP requests (no entry pending, so one for each), no IP frame.
    assert [f[12:14] for f, _ in link.frames] == [b"\x08\x06"] * 2
    # Resolved: the frame goes whole, with its gso_size.
    iface.arp.learn(DST, MAC_B, trio.current_time(), create=True)
    link.frames.clear()
    iface.send_ip(packet, DST, 1448)
    assert [(len(f), g) for f, g in link.frames] == [(14 + len(packet), 1448)]


# --- real TAP devices ---------------------------------------------------------


def tun_flags(name: str) -> int:
    with open(f"/sys/class/net/{name}/tun_flags") as f:
        return int(f.read(), 16)


@pytest.mark.kernel
@netns.requires_kernel_peer
async def test_offload_tap_attributes_and_cleanup():
    name = netns.unique_name("to")
    link = TapLink(name, offload=True)
    try:
        assert link.offload and link.checksum_offload and link.offload_error is None
        assert link.tso_max == 65535 + 14 and link.mtu == 1500 and link.needs_arp
        assert tun_flags(name) & 0x5002 == 0x5002  # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
        assert "offload" in repr(link) and link.name == name
        link.send_frame(bytes(60))  # down: dropped, counted
        assert link.stats["tx_dropped_down"] == 1
        link.send_frame(bytes(1600))
        link.send_frame(bytes(70000), 1448)
        assert link.stats["tx_dropped_oversize"] == 2
    finally:
        await link.aclose()
    assert not os.path.exists(f"/sys/class/net/{name}")
    with pytest.raises(trio.ClosedResourceError):
        await link.receive_batch()
    with pytest.raises(ValueError, match="longer than 15"):
        TapLink("x" * 16, offload=True)
    with pytest.raises(OSError, match="'lo'.*not a TAP"):
        TapLink("lo", offload=True)


@pytest.mark.kernel
@netns.requires_kernel_peer
@pytest.mark.parametrize("cls", [TapLink, TunLink], ids=["tap", "tun"])
@pytest.mark.parametrize("refused", ["TUNSETOFFLOAD", "TUNSETVNETHDRSZ", "IFF_VNET_HDR"])
async def test_refused_offload_falls_back_to_a_plain_tap(monkeypatch, caplog, refused, cls):
    refuse(monkeypatch, refused)  # an ioctl, or the open with IFF_VNET_HDR
    name = netns.unique_name("tf")
    logger = f"trionet.link.{cls.kind.lower()}"
    with caplog.at_level(logging.WARNING, logger=logger):
        link = cls(name)  # offload=True is the default
    try:
        assert not link.offload and not link.checksum_offload and link.tso_max == 0
        assert link.stats["offload_refused"] == 1 and "Invalid argument" in link.offload_error
        assert link.offload_error.startswith(refused)
        assert any("refused" in r.getMessage() and r.name == logger for r in caplog.records)
        assert tun_flags(name) & 0x4000 == 0  # reopened without IFF_VNET_HDR
        async with trionet.Stack() as stack:
            stack.add_interface(link, "10.0.0.2/24")
            with netns.NetNamespace.create("tf") as ns:
                ns.move_link(name, "10.0.0.1/24")
                result = await netns.kernel_ping(ns, "10.0.0.2", count=2, interval=0.05)
                assert result.received == 2
                assert await stack.ping("10.0.0.1", timeout=2) > 0
    finally:
        await link.aclose()
    # Where the plain open fails too, its error (with advice) is raised.
    with pytest.raises(OSError, match=f"'lo'.*not a {cls.kind}"):
        cls("lo")


# argv: ifname, the stack's MAC (or "" on a TUN: bare packets), source and
# destination IPv4 addresses. Sends a UDP datagram with a bad checksum, then
# a good one, from a packet socket: the kernel vouches for neither.
BAD_PACKET_SENDER = r"""
import socket, struct, sys
ifname, dst_mac, src, dst = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4]
if dst_mac:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    src_mac = s.getsockname()[4]
else:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
def packet(ident, corrupt):
    payload = b"not verified by the kernel"
    udp = struct.pack("!HHHH", 9, 9999, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    csum = checksum(pseudo + udp) ^ (0x0101 if corrupt else 0)
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    return ip + udp
for ident, corrupt in ((1, True), (2, False)):
    if dst_mac:
        s.send(dst_mac + src_mac + b"\x08\x00" + packet(ident, corrupt))
    else:
        s.sendto(packet(ident, corrupt), (ifname, 0x0800))
"""


@pytest.mark.kernel
@netns.requires_kernel_peer
@pytest.mark.parametrize("cls", [TapLink, TunLink], ids=["tap", "tun"])
async def test_kernel_frames_with_bad_checksums_are_dropped_by_the_link(cls):
    """Frames the kernel did not checksum-check itself (here raw frames
    from a packet socket) are checked by the link: the bad one is dropped
    and counted, the good one reaches the stack."""
    name = netns.unique_name("tb")
    link = cls(name, offload=True)
    assert link.offload, link.offload_error
    with trio.fail_after(30):
        async with trionet.Stack() as stack:
            iface = stack.add_interface(link, "10.0.0.2/24")
            sock = await stack.open_udp_socket(9999)
            with netns.NetNamespace.create("tb") as ns:
                ns.move_link(name, "10.0.0.1/24")
                mac = iface.mac.hex() if cls is TapLink else ""  # "": bare packets
                await ns.run_async(*ns.python(BAD_PACKET_SENDER), name, mac, "10.0.0.1",
                                   "10.0.0.2", timeout=20)
                data, (host, port) = await sock.recvfrom()
                assert data == b"not verified by the kernel" and port == 9
                with trio.move_on_after(0.3):
                    await sock.recvfrom()
                    raise AssertionError("the corrupted datagram was delivered")
                assert link.stats["rx_dropped_checksum"] == 1
            await sock.aclose()


OPEN_AND_REPORT = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
import trio, trionet
link = getattr(trionet, sys.argv[2])(sys.argv[1])
with open(f"/sys/class/net/{sys.argv[1]}/tun_flags") as f:
    flags = int(f.read(), 16)
print(json.dumps({"offload": link.offload, "error": link.offload_error, "flags": flags}))
trio.run(link.aclose)
"""


@pytest.mark.kernel
@netns.requires_kernel_peer
@pytest.mark.parametrize("cls", [TapLink, TunLink], ids=["tap", "tun"])
async def test_persistent_devices_without_vnet_hdr_open_with_offload(cls):
    """TAPs and TUNs made without vnet_hdr (``ip tuntap add NAME mode
    tap``, and scripts/setup_tap.sh, here inside a namespace) open with the
    offloads by default: TUNSETIFF sets the header flag on each attach.
    Closed, the device stays, and opens plain for whoever asks for that."""
    name = netns.unique_name("tp")
    mode = cls.kind.lower()
    subprocess.run(["ip", "tuntap", "add", name, "mode", mode], check=True, timeout=10)
    try:
        assert tun_flags(name) & 0x4000 == 0
        link = cls(name)
        assert link.offload and link.offload_error is None and tun_flags(name) & 0x4000
        await link.aclose()
        link = cls(name, offload=False)
        assert not link.offload and tun_flags(name) & 0x4000 == 0
        await link.aclose()
        assert os.path.exists(f"/sys/class/net/{name}")
    finally:
        subprocess.run(["ip", "tuntap", "del", name, "mode", mode], timeout=10)
    root = Path(__file__).resolve().parent.parent
    with netns.NetNamespace.create("tp") as ns:
        made = subprocess.run(["bash", root / "scripts" / "setup_tap.sh", name, "10.97.3.1/24",
                               *(["--tun"] if mode == "tun" else []), "--netns", ns.name,
                               "--user", "nobody"], capture_output=True, text=True, timeout=30)
        assert made.returncode == 0, made.stderr
        proc = await ns.run_async(*ns.python(OPEN_AND_REPORT), name, cls.__name__, root,
                                  timeout=30)
        report = json.loads(proc.stdout)
        assert report == {"offload": True, "error": None, "flags": report["flags"]}, report
        assert report["flags"] & 0x4000  # IFF_VNET_HDR
