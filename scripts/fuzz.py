#!/usr/bin/env python3
"""Fuzz a running stack with random and mutated frames while it serves a
TCP echo connection to a second stack.

    python scripts/fuzz.py --frames 1000000 --seed 1

The victim stack has two interfaces: eth0 (10.0.0.1) on a virtual cable to
the peer stack (10.0.0.2), whose client runs an echo connection through it
for the whole run, and eth1 (10.0.1.1 and fd00:1::1, plus its link-local
address) on a second cable whose far end is a raw injector (10.0.1.9,
fd00:1::9 and fe80::ff:fe00:109; it answers ARP and neighbour solicitations
for them). Both cables have no latency and verify checksums
(``checksum_offload=False``), so checksums are exercised.

The injector writes mutations of valid frames into eth1: frames captured
from the echo connection itself (``trionet.Capture``, addresses rewritten
to the injector's, so no mutation can hit the echo connection's 4-tuple;
its TCP segments also carried over IPv6) and frames built with
``trionet.wire``: ARP, ICMP echo/errors, UDP, TCP with options, IPv4
options, fragments; and IPv6 (``ipv6_frames``): ICMPv6 echo and errors,
every Neighbor Discovery message with its options (RS, RA with prefix, MTU
and RDNSS options, NS including DAD and NUD probes, NA, redirect), MLDv1
and MLDv2 queries, UDP and TCP over IPv6, extension headers (hop-by-hop,
destination options of every action, routing type 0, an atomic fragment,
too long a chain) and fragments. Mutations: truncations, bit flips, bad
lengths and offsets, bad IPv4/TCP options, malformed IPv6 extension headers
and options, bad checksums, padding, and fragment series (IPv4 and IPv6)
that overlap, duplicate or never complete. ``--ipv6-share`` (0.1) of the
frames start from an IPv6 base (and as much of the option, checksum and
fragment damage is IPv6's): IPv6 frames cost the stack about twice what
IPv4 ones do, so the default keeps the 1,000,000-frame run near its time
budget; raise it for IPv6-heavy runs (``--ipv6-share 1``: IPv6 only, but
for the noise frames). Checksums are recomputed after most mutations so
that the deeper layers see them. The victim's reassembly timeout is 5 s
(``--reassembly-timeout``), so that its 4 MiB of reassembly buffers both
fill up and turn over during the run; it keeps at most 4 SLAAC addresses,
4 on-link prefixes and 2 default routers, so that fuzzed router
advertisements reach those bounds.

It passes when:
  * no exception escapes a task, and ``drop.internal.error`` is 0 in both
    stacks;
  * the echo connection's bytes are exact (sha256 of everything sent and of
    everything echoed back) and it stays open;
  * memory stays bounded: resident set size is sampled through the run,
    and its growth over the baseline taken after start-up must stay under
    ``--max-growth-mb`` (default 64 MB; a 1,000,000-frame run grows about
    8 MB: the stack's own bounds allow 4 MiB of reassembly buffers, 4096
    half-open connections, 256 x 32 packets waiting for ARP, see README
    "Bounds"; ``--tracemalloc`` also reports the Python heap's peak);
  * every injected frame is accounted for: injected == dropped (counted in
    ``stack.stats`` by reason) + accepted. Each frame's handling at the NIC
    is observed: a frame either raises a ``WireError`` that the NIC counts
    as ``drop.<reason>`` (checked: the very next count is that reason) or
    is accepted (queued for ARP, held for reassembly, or handled by ICMP,
    ICMPv6, UDP or TCP). ARP frames accepted into the ARP queue are followed
    further: each is either parsed (``arp.rx``) or dropped by the ARP task
    with a counted reason. Drops counted later or elsewhere (reassembly
    timeouts, packets that never got an ARP answer, rate-limited ICMP
    errors) are listed separately;
  * in virtual time, after a settling period, the stack's bounded state
    (reassembly buffers, half-open connections, ARP queues) is empty again,
    and any address neighbour discovery still resolves has its timer armed
    (a fuzzed router advertisement may stretch RetransTimer to an hour).

Time is virtual by default (a trio MockClock with autojump: the run replays
from ``--seed``, and the injector advances the clock by ``--frame-time``
seconds per frame); ``--real-clock`` runs on the real clock. Exit status 0
on pass, 1 on failure.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import random
import sys
import time
import traceback
import tracemalloc
from collections import Counter
from ipaddress import IPv4Address, IPv6Address

import trio
import trio.testing

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import trionet  # noqa: E402
from trionet import wire  # noqa: E402
from trionet.interface import AutoconfConfig  # noqa: E402
from trionet.link.capture import read_pcap  # noqa: E402
from trionet.stats import Stats  # noqa: E402
from trionet.wire import (ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETHERTYPE_ARP,  # noqa: E402
                          ETHERTYPE_IPV4, ArpPacket, IcmpMessage, IPv4Header, WireError,
                          build_ethernet, build_icmpv4, build_ipv4, build_udp, internet_checksum)
from trionet.wire.tcp import ACK, FIN, PSH, RST, SYN, TcpHeader, TcpOptions, build_tcp  # noqa: E402
from trionet.wire import icmpv6 as nd  # noqa: E402
from trionet.wire.icmpv6 import (IPV6_ALL_NODES, Icmpv6Message, MldRecord,  # noqa: E402
                                 NeighborAdvertisement, NeighborSolicitation, PrefixInformation,
                                 RdnssOption, Redirect, RouterAdvertisement, RouterSolicitation,
                                 build_icmpv6, link_local_from_mac, multicast_mac,
                                 solicited_node_address)
from trionet.wire.ipv6 import (NH_DSTOPTS, NH_FRAGMENT, NH_HOPOPTS, NH_NONE,  # noqa: E402
                               NH_ROUTING, PROTO_ICMPV6, IPv6Header, build_fragment_header,
                               build_ipv6, build_router_alert_header, fragment_ipv6,
                               quote_for_icmpv6)

VICTIM_IP = IPv4Address("10.0.0.1")
PEER_IP = IPv4Address("10.0.0.2")
VICTIM_FUZZ_IP = IPv4Address("10.0.1.1")
INJECTOR_IP = IPv4Address("10.0.1.9")
VICTIM_MAC = bytes.fromhex("020000000001")
PEER_MAC = bytes.fromhex("020000000002")
VICTIM_FUZZ_MAC = bytes.fromhex("020000000101")
INJECTOR_MAC = bytes.fromhex("020000000109")
ECHO_PORT = 7
MAX_FRAME = 1514
_PEER_IP_BYTES = PEER_IP.packed
_INJECTOR_IP_BYTES = INJECTOR_IP.packed
# IPv6 on the fuzzed link: the victim's eth1 also has VICTIM_FUZZ_IP6 (and
# its own link-local address); the injector answers neighbour solicitations
# for INJECTOR_IP6 and INJECTOR_LL, as it answers ARP for INJECTOR_IP.
VICTIM_FUZZ_IP6 = IPv6Address("fd00:1::1")
INJECTOR_IP6 = IPv6Address("fd00:1::9")
INJECTOR_LL = link_local_from_mac(INJECTOR_MAC)
_INJECTOR_IP6_TARGETS = (INJECTOR_IP6.packed, INJECTOR_LL.packed)
ETHERTYPE_IPV6 = 0x86DD


# --- accounting ------------------------------------------------------------------


class Audit:
    """What happened to each frame, observed at the NIC and the ARP task."""

    def __init__(self) -> None:
        #: (where, reason) the NIC is about to count: set when a frame's
        #: handler raises, cleared by the drop() call that counts it.
        self.expect: tuple | None = None
        #: Where a frame (or ARP packet) is being handled right now.
        self.handling: str | None = None
        self.dropped: Counter = Counter()    # (where, reason) -> frames
        self.accepted: Counter = Counter()   # (where, kind) -> frames
        self.during: Counter = Counter()     # (where, reason): drops counted while handling
        self.outside: Counter = Counter()    # reason: drops counted outside frame handling
        self.errors: list[str] = []


class AuditStats(Stats):
    """``stack.stats`` that also tells the audit about every drop it counts."""

    def __init__(self, audit: Audit) -> None:
        super().__init__()
        self.audit = audit

    def drop(self, reason: str) -> None:
        self["drop." + reason] += 1
        audit = self.audit
        expect = audit.expect
        if expect is not None:
            audit.expect = None
            if reason == expect[1]:
                audit.dropped[expect] += 1
                return
            audit.errors.append(f"{expect[0]}: raised {expect[1]!r} but {reason!r} was counted")
        if audit.handling is not None:
            audit.during[(audit.handling, reason)] += 1
        else:
            audit.outside[reason] += 1


_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp"}


def audit_interface(stack, iface, audit: Audit, where: str) -> None:
    """Observe every frame ``iface``'s NIC task and ARP task handle.

    A frame the handler returns from normally must show what took it: an
    ARP packet is queued for the ARP task (whose every packet is followed
    in turn); an IPv4 datagram counted ``ipv4.rx`` and then either reached
    ICMP, UDP or TCP (``icmp.rx``/``udp.rx``/``tcp.rx``) or, a fragment, is
    held for reassembly; an IPv6 packet counted ``ipv6.rx`` and then
    reached ICMPv6 (neighbour discovery and MLD included), UDP or TCP
    (``icmp6.rx``/``udp.rx``/``tcp.rx``) or, a fragment, is held. Anything
    else is an accounting error: a frame lost without a count.

    The tasks look the handlers up on the instance (``handle =
    self.handle_frame`` when the NIC task starts, ``self.handle_arp(...)``
    per packet), so this must run before the stack's tasks start."""
    handle_frame = iface.handle_frame
    handle_arp = iface.handle_arp
    accepted = audit.accepted
    arp_where = where + "/arp-task"
    stats = iface.stats
    reassembler = stack.network.ipv4.reassembler

    def checked_frame(frame):
        if audit.expect is not None:
            audit.errors.append(f"{audit.expect[0]}: drop {audit.expect[1]!r} was not counted")
            audit.expect = None
        audit.handling = where
        ip_rx = stats["ipv4.rx"]
        ip6_rx = stats["ipv6.rx"]
        icmp6_rx = stats["icmp6.rx"]
        udp_rx = stats["udp.rx"]
        proto_rx = stats["icmp.rx"] + udp_rx + stats["tcp.rx"]
        reassembled = stats["ipv4.reassembled"]
        reassembled6 = stats["ipv6.reassembled"]
        held = reassembler.bytes_held
        try:
            handle_frame(frame)
        except WireError as exc:
            audit.handling = None
            audit.expect = (where, exc.reason)
            raise
        except BaseException:
            audit.handling = None
            raise
        audit.handling = None
        ethertype = frame[12:14]
        if ethertype == b"\x08\x06":
            kind = "arp: queued for the ARP task"
        elif ethertype == b"\x86\xdd":
            kind = ipv6_kind(frame, ip6_rx, icmp6_rx, udp_rx, proto_rx, reassembled6, held)
        elif ethertype != b"\x08\x00" or stats["ipv4.rx"] != ip_rx + 1:
            audit.errors.append(f"{where}: a frame was accepted without a count: {bytes(frame).hex()}")
            kind = "lost"
        elif stats["icmp.rx"] + stats["udp.rx"] + stats["tcp.rx"] == proto_rx + 1:
            kind = _PROTOCOLS.get(frame[23], "?")
            if stats["ipv4.reassembled"] != reassembled:
                kind += ": reassembled datagram"
        elif frame[20] & 0x3F or frame[21]:
            if reassembler.bytes_held > held:
                kind = "ipv4 fragment: held for reassembly"
            else:
                # ipv4.Reassembler ignores an exact duplicate without a count.
                kind = "ipv4 fragment: exact duplicate, ignored"
        else:
            audit.errors.append(f"{where}: an IPv4 datagram reached no protocol and no drop "
                                f"was counted: {bytes(frame).hex()}")
            kind = "lost"
        accepted[(where, kind)] += 1

    def ipv6_kind(frame, ip6_rx, icmp6_rx, udp_rx, proto_rx, reassembled6, held) -> str:
        if stats["ipv6.rx"] != ip6_rx + 1:
            audit.errors.append(f"{where}: an IPv6 frame was accepted without a count: "
                                f"{bytes(frame).hex()}")
            return "lost"
        if stats["icmp.rx"] + stats["udp.rx"] + stats["tcp.rx"] + stats["icmp6.rx"] \
                == proto_rx + icmp6_rx + 1:
            kind = ("icmp6" if stats["icmp6.rx"] != icmp6_rx else
                    "udp6" if stats["udp.rx"] != udp_rx else "tcp6")
            if stats["ipv6.reassembled"] != reassembled6:
                kind += ": reassembled datagram"
            return kind
        if reassembler.bytes_held > held:
            return "ipv6 fragment: held for reassembly"
        walked = upper_layer6(frame)
        if walked is not None and walked[3]:
            # Reassembler.add_ipv6 ignores an exact duplicate without a count.
            return "ipv6 fragment: exact duplicate, ignored"
        audit.errors.append(f"{where}: an IPv6 packet reached no protocol and no drop was "
                            f"counted: {bytes(frame).hex()}")
        return "lost"

    def checked_arp(data):
        audit.handling = arp_where
        try:
            handle_arp(data)
        except WireError as exc:
            audit.handling = None
            audit.expect = (arp_where, exc.reason)
            raise
        except BaseException:
            audit.handling = None
            raise
        audit.handling = None
        accepted[(arp_where, "parsed")] += 1

    iface.handle_frame = checked_frame
    iface.handle_arp = checked_arp


# --- frames ------------------------------------------------------------------------


def fix_checksums(f: bytearray) -> None:
    """Recompute the IPv4 header checksum and, for an unfragmented datagram,
    the ICMP/UDP/TCP checksum, so that a mutation gets past them (IPv6:
    the ICMPv6/UDP/TCP checksum after the extension headers)."""
    if f[12:14] == b"\x86\xdd":
        fix_checksums6(f)
        return
    if len(f) < 34 or f[12] != 8 or f[13] != 0:
        return
    ihl = (f[14] & 0x0F) * 4
    if ihl < 20 or len(f) < 14 + ihl:
        return
    f[24] = f[25] = 0
    csum = internet_checksum(f[14:14 + ihl])
    f[24], f[25] = csum >> 8, csum & 0xFF
    if f[20] & 0x3F or f[21]:
        return  # a fragment: the transport checksum covers the whole datagram
    total = (f[16] << 8) | f[17]
    end = min(len(f), 14 + total)
    start = 14 + ihl
    proto = f[23]
    offset = {6: 16, 17: 6, 1: 2}.get(proto)
    if offset is None or end - start < offset + 2:
        return
    at = start + offset
    f[at] = f[at + 1] = 0
    length = end - start
    if proto == 1:
        csum = internet_checksum(f[start:end])
    else:
        pseudo = (int.from_bytes(f[26:30], "big") + int.from_bytes(f[30:34], "big")
                  + proto + length) % 0xFFFF
        csum = internet_checksum(f[start:end], pseudo)
        if proto == 17 and csum == 0:
            csum = 0xFFFF
    f[at], f[at + 1] = csum >> 8, csum & 0xFF


_EXTENSION_HEADERS = (NH_HOPOPTS, NH_ROUTING, NH_DSTOPTS, NH_FRAGMENT)
_CSUM_OFFSETS6 = {6: 16, 17: 6, 58: 2}


def upper_layer6(f) -> tuple[int, int, int, bool] | None:
    """Walk an IPv6 frame's extension headers: (protocol, where its header
    starts, where the packet ends, a real fragment?); None if the chain runs
    out of the frame."""
    if len(f) < 54:
        return None
    end = min(len(f), 54 + ((f[18] << 8) | f[19]))
    nh, off = f[20], 54
    for _ in range(10):
        if nh not in _EXTENSION_HEADERS:
            return nh, off, end, False
        if off + 8 > end:
            return None
        if nh == NH_FRAGMENT:
            if ((f[off + 2] << 8) | f[off + 3]) & 0xFFF9:
                return f[off], off + 8, end, True
            nh, off = f[off], off + 8
        else:
            nh, off = f[off], off + ((f[off + 1] + 1) << 3)
    return None


def fix_checksums6(f: bytearray) -> None:
    """The ICMPv6/UDP/TCP checksum of an unfragmented IPv6 packet, over the
    pseudo-header (RFC 8200 8.1)."""
    walked = upper_layer6(f)
    if walked is None:
        return
    proto, start, end, fragment = walked
    at = _CSUM_OFFSETS6.get(proto)
    if fragment or at is None or end - start < at + 2:
        return
    at += start
    f[at] = f[at + 1] = 0
    pseudo = (int.from_bytes(f[22:38], "big") + int.from_bytes(f[38:54], "big")
              + proto + end - start) % 0xFFFF
    csum = internet_checksum(f[start:end], pseudo)
    if proto == 17 and csum == 0:
        csum = 0xFFFF
    f[at], f[at + 1] = csum >> 8, csum & 0xFF


def _eth(packet: bytes, dst: bytes = VICTIM_FUZZ_MAC) -> bytes:
    return build_ethernet(dst, INJECTOR_MAC, ETHERTYPE_IPV4, packet)


def _eth6(packet: bytes, dst: bytes = VICTIM_FUZZ_MAC) -> bytes:
    return build_ethernet(dst, INJECTOR_MAC, ETHERTYPE_IPV6, packet)


def _ip6(next_header: int, payload: bytes, *, src=INJECTOR_IP6, dst=VICTIM_FUZZ_IP6,
         hop_limit: int = 64, headers: bytes = b"", first: int | None = None) -> bytes:
    """An IPv6 packet; ``headers`` are extension headers before ``payload``
    (``first`` names the first of them, the last names ``next_header``)."""
    nh = next_header if first is None else first
    if not isinstance(src, IPv6Address):
        src = IPv6Address(src)
    if not isinstance(dst, IPv6Address):
        dst = IPv6Address(dst)
    return build_ipv6(IPv6Header(src, dst, nh, hop_limit), headers + payload)


def _ext(next_header: int, body: bytes) -> bytes:
    """A hop-by-hop, destination options or routing header: Next Header,
    length, ``body`` padded to a multiple of 8 bytes with zeros (Pad1)."""
    raw = bytes((next_header, 0)) + body
    raw += bytes(-len(raw) & 7)
    return bytes((raw[0], len(raw) // 8 - 1)) + raw[2:]


def _icmp6(message: Icmpv6Message, *, src=INJECTOR_IP6, dst=VICTIM_FUZZ_IP6, **kw) -> bytes:
    return _ip6(PROTO_ICMPV6, build_icmpv6(message, IPv6Address(src), IPv6Address(dst)),
                src=src, dst=dst, **kw)


def _nd(build, *, src=INJECTOR_LL, dst=VICTIM_FUZZ_IP6, hop_limit=255, eth_dst=VICTIM_FUZZ_MAC,
        **kw) -> bytes:
    """A neighbour discovery message (``build(src, dst)`` returns its ICMPv6
    bytes), hop limit 255 (RFC 4861 6.1, 7.1)."""
    src, dst = IPv6Address(src), IPv6Address(dst)
    return _eth6(_ip6(PROTO_ICMPV6, build(src, dst), src=src, dst=dst, hop_limit=hop_limit,
                      **kw), eth_dst)


def _tcp6(src_port, dst_port, flags, seq=1000, ack=0, data=b"", options=None, window=65535,
          dst=VICTIM_FUZZ_IP6, **kw) -> bytes:
    header = TcpHeader(src_port, dst_port, seq, ack, flags, window,
                       options=options or TcpOptions())
    dst = IPv6Address(dst)
    return _ip6(wire.PROTO_TCP, build_tcp(header, data, INJECTOR_IP6, dst), dst=dst, **kw)


def _udp6(dst_port, data, src_port=5555, dst=VICTIM_FUZZ_IP6, **kw) -> bytes:
    dst = IPv6Address(dst)
    return _ip6(wire.PROTO_UDP, build_udp(src_port, dst_port, data, INJECTOR_IP6, dst),
                dst=dst, **kw)


def _mld_query(body: bytes, max_response: int = 1000, dst=IPV6_ALL_NODES) -> bytes:
    """An MLD query (RFC 3810 5.1) from the injector's link-local address:
    hop limit 1, a hop-by-hop Router Alert (RFC 3810 5)."""
    dst = IPv6Address(dst)
    message = build_icmpv6(Icmpv6Message(nd.ICMPV6_MLD_QUERY, 0, max_response << 16, body),
                           INJECTOR_LL, dst)
    return _eth6(_ip6(PROTO_ICMPV6, message, src=INJECTOR_LL, dst=dst, hop_limit=1,
                      headers=build_router_alert_header(PROTO_ICMPV6), first=NH_HOPOPTS),
                 multicast_mac(dst))


def ipv6_frames(victim_ll: IPv6Address | None = None) -> list[bytes]:
    """Valid IPv6 frames of every kind the stack handles, to the victim's
    eth1 (its global address, its link-local address ``victim_ll``, or a
    group it joined): ICMPv6 echo and errors, every Neighbor Discovery
    message with its options, MLD queries, UDP and TCP, extension headers
    and fragments."""
    ll = victim_ll or IPv6Address("fe80::1")
    me, victim = INJECTOR_IP6, VICTIM_FUZZ_IP6
    all_nodes_mac = multicast_mac(IPV6_ALL_NODES)
    victim_group = solicited_node_address(victim)
    full = TcpOptions(mss=1440, window_scale=7, sack_permitted=True, timestamps=(12345, 0))
    ours_tcp = build_tcp(TcpHeader(ECHO_PORT, 40001, 5000, 0, SYN | ACK, 1000), b"", victim, me)
    quoted_tcp = quote_for_icmpv6(build_ipv6(IPv6Header(victim, me, wire.PROTO_TCP), ours_tcp))
    quoted_udp = quote_for_icmpv6(build_ipv6(
        IPv6Header(victim, me, wire.PROTO_UDP), build_udp(ECHO_PORT, 5555, b"x", victim, me)))
    quoted_echo = quote_for_icmpv6(build_ipv6(
        IPv6Header(victim, me, PROTO_ICMPV6),
        build_icmpv6(Icmpv6Message.echo_request(1, 1, b"x"), victim, me)))
    echo = Icmpv6Message.echo_request
    err = Icmpv6Message.error
    ra = RouterAdvertisement(
        cur_hop_limit=64, router_lifetime=1800, reachable_time=30000, retrans_timer=1000,
        source_lladdr=INJECTOR_MAC, mtu=1500,
        prefixes=(PrefixInformation(IPv6Address("fd00:1::"), 64, valid_lifetime=600,
                                    preferred_lifetime=300),
                  PrefixInformation(IPv6Address("fd00:77::"), 64, on_link=False,
                                    valid_lifetime=60, preferred_lifetime=0),
                  PrefixInformation(IPv6Address("2001:db8:5::"), 48)),
        rdnss=(RdnssOption(600, (INJECTOR_IP6, IPv6Address("fd00:1::53"))),))
    # Destination options with options of each action (RFC 8200 4.2): PadN,
    # an unknown type to skip (00), to discard (01), to report (10, 11).
    def dstopts(option_type):
        return _ext(wire.PROTO_UDP, bytes((1, 2, 0, 0, option_type, 2, 0xAB, 0xCD)))
    udp_payload = build_udp(5555, ECHO_PORT, b"behind headers", me, victim)
    fragmented_echo = fragment_ipv6(
        IPv6Header(me, victim, PROTO_ICMPV6),
        build_icmpv6(echo(0x66, 1, bytes(range(256)) * 8), me, victim), 1280, 0x5151)
    atomic = build_fragment_header(wire.PROTO_UDP, 0, False, 0x5252)
    frames = [
        # ICMPv6 echo (RFC 4443 4): global, link-local, all-nodes, big, a reply nobody asked.
        _eth6(_icmp6(echo(0x77, 1, bytes(range(64))))),
        _eth6(_icmp6(echo(0x77, 2, bytes(1400)))),
        _eth6(_icmp6(echo(0x77, 3, b"link-local"), src=INJECTOR_LL, dst=ll)),
        _eth6(_icmp6(echo(0x77, 4, b"all nodes"), src=INJECTOR_LL, dst=IPV6_ALL_NODES),
              all_nodes_mac),
        _eth6(_icmp6(Icmpv6Message.echo_reply(0x77, 5, b"unasked"))),
        _eth6(_icmp6(echo(0x77, 6, b"not ours"), dst="fd00:1::77")),
        # ICMPv6 errors quoting what the victim sent (RFC 4443 3).
        _eth6(_icmp6(err(nd.ICMPV6_DEST_UNREACHABLE, 4, quoted_tcp))),
        _eth6(_icmp6(err(nd.ICMPV6_DEST_UNREACHABLE, 4, quoted_udp))),
        _eth6(_icmp6(err(nd.ICMPV6_DEST_UNREACHABLE, 0, quoted_echo))),
        _eth6(_icmp6(err(nd.ICMPV6_PACKET_TOO_BIG, 0, quoted_tcp, mtu=1280))),
        _eth6(_icmp6(err(nd.ICMPV6_PACKET_TOO_BIG, 0, quoted_tcp, mtu=600))),
        _eth6(_icmp6(err(nd.ICMPV6_TIME_EXCEEDED, 0, quoted_echo))),
        _eth6(_icmp6(err(nd.ICMPV6_TIME_EXCEEDED, 1, quoted_udp))),
        _eth6(_icmp6(err(nd.ICMPV6_PARAMETER_PROBLEM, 1, quoted_tcp, pointer=6))),
        _eth6(_icmp6(Icmpv6Message(200, 0, 0, b"unknown informational"))),
        # Neighbor Discovery (RFC 4861 4), each message with its options.
        _nd(lambda s, d: nd.build_router_solicitation(RouterSolicitation(INJECTOR_MAC), s, d),
            dst=nd.IPV6_ALL_ROUTERS, eth_dst=multicast_mac(nd.IPV6_ALL_ROUTERS)),
        _nd(lambda s, d: nd.build_router_advertisement(ra, s, d), dst=IPV6_ALL_NODES,
            eth_dst=all_nodes_mac),
        _nd(lambda s, d: nd.build_router_advertisement(
            RouterAdvertisement(router_lifetime=0, source_lladdr=INJECTOR_MAC, mtu=1280), s, d),
            dst=ll),
        _nd(lambda s, d: nd.build_neighbor_solicitation(
            NeighborSolicitation(victim, INJECTOR_MAC), s, d), src=me, dst=victim_group,
            eth_dst=multicast_mac(victim_group)),
        _nd(lambda s, d: nd.build_neighbor_solicitation(
            NeighborSolicitation(victim, INJECTOR_MAC), s, d), src=me),           # NUD probe
        _nd(lambda s, d: nd.build_neighbor_solicitation(NeighborSolicitation(ll), s, d),
            src="::", dst=solicited_node_address(ll),
            eth_dst=multicast_mac(solicited_node_address(ll))),                   # DAD
        _nd(lambda s, d: nd.build_neighbor_solicitation(
            NeighborSolicitation(IPv6Address("fd00:1::77"), INJECTOR_MAC), s, d), src=me),
        _nd(lambda s, d: nd.build_neighbor_advertisement(NeighborAdvertisement(
            me, solicited=True, override=True, target_lladdr=INJECTOR_MAC), s, d), src=me),
        _nd(lambda s, d: nd.build_neighbor_advertisement(NeighborAdvertisement(
            INJECTOR_LL, router=True, override=True, target_lladdr=INJECTOR_MAC), s, d),
            dst=IPV6_ALL_NODES, eth_dst=all_nodes_mac),
        _nd(lambda s, d: nd.build_neighbor_advertisement(NeighborAdvertisement(
            victim, override=True, target_lladdr=INJECTOR_MAC), s, d), src=me),  # claims ours
        _nd(lambda s, d: nd.build_redirect(Redirect(
            IPv6Address("fe80::99"), IPv6Address("2001:db8:5::1"), INJECTOR_MAC,
            quoted_udp[:200]), s, d)),
        _nd(lambda s, d: nd.build_redirect(Redirect(
            IPv6Address("fd00:1::42"), IPv6Address("fd00:1::42")), s, d)),
        # MLD queries (RFC 2710 3.6 version 1; RFC 3810 5.1 general, group- and
        # source-specific) and a report from someone else.
        _mld_query(bytes(16)),
        _mld_query(bytes(16) + bytes((2, 125, 0, 0)), max_response=10000),
        _mld_query(victim_group.packed + bytes((0x0A, 0x90, 0, 2)) + INJECTOR_IP6.packed
                   + INJECTOR_LL.packed, max_response=0x8123, dst=victim_group),
        _eth6(_ip6(PROTO_ICMPV6, nd.build_mldv2_report(
            [MldRecord(nd.MLD_CHANGE_TO_EXCLUDE, IPv6Address("ff02::1:ff00:9"))], INJECTOR_LL),
            src=INJECTOR_LL, dst=nd.IPV6_ALL_MLDV2_ROUTERS, hop_limit=1,
            headers=build_router_alert_header(PROTO_ICMPV6), first=NH_HOPOPTS),
            multicast_mac(nd.IPV6_ALL_MLDV2_ROUTERS)),
        # UDP (RFC 768, RFC 8200 8.1): echo, a closed port, all-nodes, a zero checksum.
        _eth6(_udp6(ECHO_PORT, b"fuzz me over v6")),
        _eth6(_udp6(ECHO_PORT, bytes(1000))),
        _eth6(_udp6(9, b"closed port")),
        _eth6(_udp6(ECHO_PORT, b"all nodes", dst=IPV6_ALL_NODES), all_nodes_mac),
        _eth6(_ip6(wire.PROTO_UDP, build_udp(5555, ECHO_PORT, b"no checksum", me, victim,
                                              compute_checksum=False))),
        # TCP (RFC 9293): handshakes, data without one, odd flags, a closed port.
        _eth6(_tcp6(40101, ECHO_PORT, SYN, options=full)),
        _eth6(_tcp6(40102, ECHO_PORT, SYN, options=TcpOptions(mss=1220))),
        _eth6(_tcp6(40103, 81, SYN)),
        _eth6(_tcp6(40104, ECHO_PORT, ACK, seq=1001, ack=7777, data=b"data without handshake")),
        _eth6(_tcp6(40105, ECHO_PORT, ACK | PSH | FIN, seq=1001, ack=7777, data=b"x" * 1000)),
        _eth6(_tcp6(40106, ECHO_PORT, RST, seq=1)),
        _eth6(_tcp6(40107, ECHO_PORT, SYN | FIN)),
        _eth6(_tcp6(40108, ECHO_PORT, ACK, options=TcpOptions(timestamps=(1, 2),
                                                           sack_blocks=((10, 20), (30, 40))))),
        _eth6(_tcp6(40109, ECHO_PORT, SYN, dst=ll)),
        # Extension headers (RFC 8200 4): hop-by-hop, destination options of
        # every action, routing (type 0 refused, RFC 5095), an atomic fragment,
        # no next header, an unknown upper layer, a chain too long.
        _eth6(_ip6(wire.PROTO_UDP, udp_payload, first=NH_HOPOPTS,
                   headers=_ext(NH_DSTOPTS, bytes((5, 2, 0, 0, 1, 0)))
                   + dstopts(0x1E))),
        *(_eth6(_ip6(wire.PROTO_UDP, udp_payload, first=NH_DSTOPTS, headers=dstopts(t)))
          for t in (0x1E, 0x5E, 0x9E, 0xDE)),
        _eth6(_ip6(wire.PROTO_UDP, udp_payload, first=NH_ROUTING,
                   headers=_ext(wire.PROTO_UDP, bytes((0, 1, 0, 0, 0, 0)) + INJECTOR_IP6.packed))),
        _eth6(_ip6(wire.PROTO_UDP, udp_payload, first=NH_ROUTING,
                   headers=_ext(wire.PROTO_UDP, bytes((4, 0, 0, 0, 0, 0))))),
        _eth6(_ip6(wire.PROTO_UDP, udp_payload, first=NH_FRAGMENT, headers=atomic)),
        _eth6(_ip6(NH_NONE, b"", first=NH_NONE)),
        _eth6(_ip6(99, b"unknown protocol" + bytes(8))),
        _eth6(_ip6(50, bytes(24))),  # ESP: not handled
        _eth6(_ip6(wire.PROTO_UDP, udp_payload, first=NH_DSTOPTS,
                   headers=b"".join(_ext(NH_DSTOPTS, b"") for _ in range(9))[:-8]
                   + _ext(wire.PROTO_UDP, b""))),
        # A fragmented echo request (RFC 8200 4.5).
        *(_eth6(piece) for piece in fragmented_echo),
        _eth6(_icmp6(echo(0x77, 7, b"bad source"), src="ff02::1")),
    ]
    # Odd addresses and values in otherwise valid messages: sources that
    # cannot be answered (unspecified, loopback, IPv4-mapped, our own),
    # prefixes SLAAC must refuse or that make strange on-link routes, router
    # advertisements with extreme timers and MTUs, solicitations and
    # advertisements for odd targets, Packet Too Big with extreme MTUs.
    odd = [IPv6Address(a) for a in ("::", "::1", "::ffff:10.0.1.9")] + [victim, ll]
    for src in odd:
        frames.append(_eth6(_icmp6(echo(0x78, 1, b"odd source"), src=src)))
        frames.append(_eth6(_ip6(wire.PROTO_TCP, build_tcp(
            TcpHeader(40300, ECHO_PORT, 1, 0, SYN, 1000, options=TcpOptions(mss=100)), b"", src,
            victim), src=src)))
        frames.append(_eth6(_ip6(wire.PROTO_UDP, build_udp(5557, ECHO_PORT, b"odd", src, victim),
                                 src=src)))
    odd_prefixes = tuple(
        PrefixInformation(IPv6Address(prefix), length, valid_lifetime=100, preferred_lifetime=50)
        for prefix, length in (("fe80::", 64), ("ff02::", 64), ("::1", 128), ("::ffff:0:0", 96),
                               ("2001:db8:6::", 64), ("fd00:1::1", 64), ("fd00:1::", 0)))
    for prefixes in (odd_prefixes[:4], odd_prefixes[4:]):
        frames.append(_nd(lambda s, d, prefixes=prefixes: nd.build_router_advertisement(
            RouterAdvertisement(router_lifetime=100, source_lladdr=INJECTOR_MAC,
                                prefixes=prefixes), s, d),
            dst=IPV6_ALL_NODES, eth_dst=all_nodes_mac))
    frames.append(_nd(lambda s, d: nd.build_router_advertisement(RouterAdvertisement(
        cur_hop_limit=255, router_lifetime=0xFFFF, reachable_time=0xFFFFFFFF,
        retrans_timer=0xFFFFFFFF, source_lladdr=INJECTOR_MAC, mtu=0xFFFFFFFF,
        rdnss=(RdnssOption(0xFFFFFFFF, (IPv6Address("::"), IPv6Address("ff02::1"),
                                        IPv6Address("::1"))),)), s, d),
        dst=IPV6_ALL_NODES, eth_dst=all_nodes_mac))
    for target in (ll, IPv6Address("::"), IPv6Address("::1"), victim_group):
        frames.append(_nd(lambda s, d, target=target: nd.build_neighbor_solicitation(
            NeighborSolicitation(target, INJECTOR_MAC), s, d), src=me))
        frames.append(_nd(lambda s, d, target=target: nd.build_neighbor_advertisement(
            NeighborAdvertisement(target, router=True, override=True,
                                  target_lladdr=INJECTOR_MAC), s, d),
            src=me, dst=IPV6_ALL_NODES, eth_dst=all_nodes_mac))
    frames.append(_nd(lambda s, d: nd.build_redirect(Redirect(ll, IPv6Address("::1")), s, d)))
    for mtu in (0, 1279, 0xFFFFFFFF):
        frames.append(_eth6(_icmp6(err(nd.ICMPV6_PACKET_TOO_BIG, 0, quoted_echo, mtu=mtu))))
    return frames


def _ip(protocol: int, payload: bytes, *, src=INJECTOR_IP, dst=VICTIM_FUZZ_IP, **fields) -> bytes:
    return build_ipv4(IPv4Header(IPv4Address(src), IPv4Address(dst), protocol, **fields), payload)


def _tcp(src_port, dst_port, flags, seq=1000, ack=0, data=b"", options=None, window=65535,
         src=INJECTOR_IP, dst=VICTIM_FUZZ_IP) -> bytes:
    header = TcpHeader(src_port, dst_port, seq, ack, flags, window,
                       options=options or TcpOptions())
    return _ip(wire.PROTO_TCP, build_tcp(header, data, src, dst), src=src, dst=dst)


def _udp(dst_port, data, src_port=5555, dst=VICTIM_FUZZ_IP) -> bytes:
    return _ip(wire.PROTO_UDP, build_udp(src_port, dst_port, data, INJECTOR_IP, dst), dst=dst)


def _icmp(message: IcmpMessage, **fields) -> bytes:
    return _ip(wire.PROTO_ICMP, build_icmpv4(message), **fields)


def _arp(operation, target_ip, *, sender_ip=INJECTOR_IP, sender_mac=INJECTOR_MAC,
         target_mac=bytes(6), eth_dst=BROADCAST_MAC) -> bytes:
    packet = ArpPacket(operation, sender_mac, IPv4Address(sender_ip), target_mac,
                       IPv4Address(target_ip))
    return build_ethernet(eth_dst, sender_mac, ETHERTYPE_ARP, packet.build())


def constructed_frames(victim_ll: IPv6Address | None = None) -> list[bytes]:
    """Valid frames of every kind the stack handles, built with trionet.wire
    (IPv6: ``ipv6_frames``)."""
    full = TcpOptions(mss=1460, window_scale=7, sack_permitted=True, timestamps=(12345, 0))
    ours = build_tcp(TcpHeader(ECHO_PORT, 40001, 5000, 0, SYN | ACK, 1000), b"",
                     VICTIM_FUZZ_IP, INJECTOR_IP)
    quoted_tcp = wire.quote_for_icmp(build_ipv4(
        IPv4Header(VICTIM_FUZZ_IP, INJECTOR_IP, wire.PROTO_TCP), ours))
    quoted_udp = wire.quote_for_icmp(build_ipv4(
        IPv4Header(VICTIM_FUZZ_IP, INJECTOR_IP, wire.PROTO_UDP),
        build_udp(ECHO_PORT, 5555, b"x", VICTIM_FUZZ_IP, INJECTOR_IP)))
    quoted_echo = wire.quote_for_icmp(build_ipv4(
        IPv4Header(VICTIM_FUZZ_IP, INJECTOR_IP, wire.PROTO_ICMP),
        build_icmpv4(IcmpMessage.echo_request(1, 1, b"x"))))
    record_route = bytes([7, 11, 4]) + bytes(8) + b"\x01"
    timestamp_opt = bytes([68, 12, 5, 0]) + bytes(8)
    return [
        _arp(ARP_REQUEST, VICTIM_FUZZ_IP),
        _arp(ARP_REPLY, VICTIM_FUZZ_IP, target_mac=VICTIM_FUZZ_MAC, eth_dst=VICTIM_FUZZ_MAC),
        _arp(ARP_REQUEST, "10.0.1.77"),
        _arp(ARP_REQUEST, INJECTOR_IP),  # gratuitous
        _arp(ARP_REQUEST, VICTIM_FUZZ_IP, sender_ip="10.0.1.33",
             sender_mac=bytes.fromhex("02000000aa01")),
        _eth(_icmp(IcmpMessage.echo_request(0x77, 1, bytes(range(64))))),
        _eth(_icmp(IcmpMessage.echo_request(0x77, 2, bytes(1400)))),
        _eth(_icmp(IcmpMessage.echo_request(0x77, 3, b"bcast"), dst="10.0.1.255"),
             dst=BROADCAST_MAC),
        _eth(_icmp(IcmpMessage.echo_request(0x77, 4, b"opts"), options=record_route)),
        _eth(_icmp(IcmpMessage.echo_request(0x77, 5, b"ts"), options=timestamp_opt)),
        _eth(_icmp(IcmpMessage.echo_request(0x77, 6, b"other address"), dst=VICTIM_IP)),
        _eth(_icmp(IcmpMessage.echo_reply(0x77, 7, b"unasked"))),
        _eth(_icmp(IcmpMessage.error(3, 3, quoted_tcp))),
        _eth(_icmp(IcmpMessage.error(3, 1, quoted_tcp))),
        _eth(_icmp(IcmpMessage.error(3, 4, quoted_tcp, 576))),
        _eth(_icmp(IcmpMessage.error(3, 3, quoted_udp))),
        _eth(_icmp(IcmpMessage.error(11, 0, quoted_echo))),
        _eth(_icmp(IcmpMessage(13, 0, 0, bytes(12)))),  # timestamp request: ignored
        _eth(_udp(ECHO_PORT, b"fuzz me")),
        _eth(_udp(ECHO_PORT, bytes(1000))),
        _eth(_udp(9, b"closed port")),
        _eth(_udp(ECHO_PORT, b"bcast", dst=IPv4Address("10.0.1.255")), dst=BROADCAST_MAC),
        _eth(_tcp(40001, ECHO_PORT, SYN, options=full)),
        _eth(_tcp(40002, ECHO_PORT, SYN, options=TcpOptions(mss=536))),
        _eth(_tcp(40003, 81, SYN)),
        _eth(_tcp(40004, ECHO_PORT, ACK, seq=1001, ack=7777, data=b"data without handshake")),
        _eth(_tcp(40005, ECHO_PORT, ACK | PSH | FIN, seq=1001, ack=7777, data=b"x" * 1000)),
        _eth(_tcp(40006, ECHO_PORT, RST, seq=1)),
        _eth(_tcp(40007, ECHO_PORT, SYN | FIN)),
        _eth(_tcp(40008, ECHO_PORT, ACK, options=TcpOptions(timestamps=(1, 2),
                                                          sack_blocks=((10, 20), (30, 40))))),
        _eth(_tcp(40009, ECHO_PORT, SYN, dst=VICTIM_IP)),
        _eth(_ip(99, b"unknown protocol")),
        _eth(_ip(wire.PROTO_UDP, b"\0" * 8, dst=IPv4Address("224.0.0.1")),
             dst=bytes.fromhex("01005e000001")),
        _eth(_ip(wire.PROTO_ICMP, b"\0" * 8, dst=IPv4Address("10.0.1.50"))),
    ] + ipv6_frames(victim_ll)


def rewrite_captured(frame: bytes) -> bytes | None:
    """A frame of the echo connection (either direction) re-addressed as if
    it came from the injector to the victim's eth1, checksums fixed."""
    f = bytearray(frame)
    if len(f) < 14:
        return None
    f[6:12] = INJECTOR_MAC
    if f[0:6] != BROADCAST_MAC:
        f[0:6] = VICTIM_FUZZ_MAC
    if f[12:14] == b"\x08\x06" and len(f) >= 42:
        f[22:28] = INJECTOR_MAC
        f[28:32] = _INJECTOR_IP_BYTES
        if f[32:38] != bytes(6):
            f[32:38] = VICTIM_FUZZ_MAC
        f[38:42] = VICTIM_FUZZ_IP.packed
        return bytes(f)
    if f[12:14] == b"\x08\x00" and len(f) >= 34:
        f[26:30] = _INJECTOR_IP_BYTES
        f[30:34] = VICTIM_FUZZ_IP.packed
        fix_checksums(f)
        return bytes(f)
    return None


def captured_as_ipv6(frame: bytes) -> bytes | None:
    """A TCP segment of the (IPv4) echo connection carried over IPv6 from
    the injector to the victim's IPv6 address: the connection's segments
    mid-stream (options, data, ACKs, FIN), for the IPv6 TCP input."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != wire.PROTO_TCP:
        return None
    ihl = (frame[14] & 0x0F) * 4
    total = (frame[16] << 8) | frame[17]
    if ihl < 20 or total < ihl + 20 or 14 + total > len(frame) or frame[20] & 0x3F or frame[21]:
        return None
    f = bytearray(_eth6(_ip6(wire.PROTO_TCP, frame[14 + ihl:14 + total])))
    fix_checksums(f)
    return bytes(f)


class LimitedPcap(io.RawIOBase):
    """A file for ``trionet.Capture`` that keeps the first ``limit`` records
    (Capture writes the global header, then per frame a record header and
    the frame: two writes)."""

    def __init__(self, limit: int) -> None:
        self.buffer = bytearray()
        self.limit = limit
        self.records = 0
        self._writes = -1
        self._keep = True

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._writes += 1
        if self._writes and self._writes % 2 == 1:  # a record header
            self._keep = self.records < self.limit
            if self._keep:
                self.records += 1
        if self._keep:
            self.buffer += data
        return len(data)


# --- mutations ---------------------------------------------------------------------

_BYTE_VALUES = (0, 1, 2, 4, 5, 6, 0x0F, 0x10, 0x40, 0x44, 0x45, 0x46, 0x4F, 0x50, 0x5F, 0x7F,
                0x80, 0xA0, 0xF0, 0xFE, 0xFF)
_IP_FIELDS = (14, 15, 16, 17, 20, 21, 22, 23, 24, 25, 26, 29, 30, 33)
_ARP_FIELDS = (14, 15, 16, 17, 18, 19, 20, 21, 22, 27, 28, 31, 38, 41)
_TCP_FIELDS = (0, 1, 2, 3, 4, 8, 12, 13, 14, 15, 16, 17, 18, 19)
_UDP_FIELDS = (0, 1, 2, 3, 4, 5, 6, 7)
_ICMP_FIELDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 17, 18, 19)
# IPv6: the fixed header (version/class/flow, payload length, next header,
# hop limit, address bytes), then the first bytes after it (an extension
# header's next header, length and options, or the upper-layer header).
_IP6_FIELDS = (14, 15, 17, 18, 19, 20, 21, 22, 23, 37, 38, 39, 53, 54, 55, 56, 57, 58, 59, 62)
# ICMPv6: type, code, checksum, the word after it, the ND target and the
# type and length of the options that follow NS/NA (24) and RA (16).
_ICMP6_FIELDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 23, 24, 25, 32, 33, 40, 41, 48, 49)
# Options of hop-by-hop and destination options headers (RFC 8200 4.2):
# too much padding, bad lengths, unknown types of each action, Router Alert
# and Jumbo Payload of the wrong sizes, options running past the header.
_BAD_OPTIONS6 = (
    b"\x00" * 8, b"\x01\x06" + bytes(6), b"\x01\x00", b"\x01\xff", b"\x05\x02\x00\x00",
    b"\x05\x03\x00\x00\x00", b"\x05\x01\x00", b"\x05\x00", b"\x1e\x00", b"\x5e\x01\x00",
    b"\x9e\x02\x00\x00", b"\xde\x00", b"\xc2\x04\x00\x01\x00\x00", b"\xc2\x02\xff\xff",
    b"\x04\x01\x04", b"\x07\x30", b"\x63\x00", b"\x26", b"\x8b\x02\x00\x00",
    b"\xc9\x10" + bytes(16), b"\x3e\x02\xab\xcd",
)
_BAD_OPTIONS = (
    b"\x02", b"\x02\x00", b"\x02\x01", b"\x02\x03\x05", b"\x02\x04\x00\x00", b"\x03\x03\xff",
    b"\x03\x02", b"\x04\x03\x00", b"\x05\x01", b"\x05\x03\x00", b"\x05\x0a" + bytes(8),
    b"\x05\xff", b"\x08\x0a" + bytes(6), b"\x08\x09" + bytes(7), b"\x08\x00", b"\xfe\x02",
    b"\xfe\x28", b"\x00\x02\x04", b"\x01\x01\x01", b"\x07\x03\x04", b"\x44\x04\x05\x00",
    b"\x83\x03\x00", b"\x89\x27", b"\x94\x04\x00\x00", b"\xff",
)


class Mutator:
    """Mutated frames from ``bases``; ``ipv6_share`` of them start from an
    IPv6 base (and of the IP-specific mutations, option, checksum and
    fragment damage, that share is IPv6's)."""

    def __init__(self, rng: random.Random, bases: list[bytes], ipv6_share: float = 0.4) -> None:
        self.rng = rng
        self.bases = bases
        self.ipv6_share = ipv6_share
        self.ip_bases = [b for b in bases if b[12:14] == b"\x08\x00" and len(b) >= 34]
        self.ip6_bases = [b for b in bases if b[12:14] == b"\x86\xdd" and len(b) >= 54]
        self.other_bases = [b for b in bases if b[12:14] != b"\x86\xdd"]
        self.kinds = Counter()
        self._next_id = rng.randrange(65536)
        # Weights per operation; a fragment series is about 4 frames.
        self._ops = ([self.valid] * 8 + [self.truncate] * 12 + [self.bitflip] * 18
                     + [self.field] * 22 + [self.options] * 12 + [self.bad_checksum] * 8
                     + [self.resize] * 6 + [self.fragments] * 3 + [self.noise] * 4)

    def next(self) -> list[bytes]:
        frames = self.rng.choice(self._ops)()
        out = []
        for f in frames:
            if len(f) > MAX_FRAME:
                del f[MAX_FRAME:]
            if f[12:14] == b"\x08\x00" and f[26:30] == _PEER_IP_BYTES:
                # Never the echo connection's own source address (a blind
                # in-window injection would corrupt it, not test robustness).
                f[26:30] = _INJECTOR_IP_BYTES
                fix_checksums(f)
            out.append(bytes(f))
        return out

    def _base(self) -> bytearray:
        rng = self.rng
        if rng.random() < self.ipv6_share:
            return bytearray(rng.choice(self.ip6_bases))
        return bytearray(rng.choice(self.other_bases))

    def _maybe_fix(self, f: bytearray, p: float) -> None:
        if self.rng.random() < p:
            fix_checksums(f)

    def valid(self):
        self.kinds["valid"] += 1
        return [self._base()]

    def truncate(self):
        self.kinds["truncate"] += 1
        f = self._base()
        rng = self.rng
        cut = rng.choice((0, 6, 13, 14, 15, 20, 33, 34, 38, 41, 42, 46, 53, 54, 55, 58, 60, 61,
                          62, 66, 70, 74, 78, 94)) \
            if rng.random() < 0.5 else rng.randrange(len(f) + 1)
        del f[cut:]
        self._maybe_fix(f, 0.5)
        return [f]

    def bitflip(self):
        self.kinds["bitflip"] += 1
        f = self._base()
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(f))
            f[pos] ^= 1 << rng.randrange(8)
        self._maybe_fix(f, 0.6)
        return [f]

    def _transport_fields(self, f: bytearray) -> tuple[int, tuple]:
        if f[12:14] == b"\x86\xdd":
            walked = upper_layer6(f)
            if walked is None:
                return 54, ()
            proto, start, _, _ = walked
            return start, {6: _TCP_FIELDS, 17: _UDP_FIELDS, 58: _ICMP6_FIELDS}.get(proto, ())
        ihl = (f[14] & 0x0F) * 4
        start = 14 + max(ihl, 20)
        fields = {6: _TCP_FIELDS, 17: _UDP_FIELDS, 1: _ICMP_FIELDS}.get(f[23], ())
        return start, fields

    def field(self):
        """Bad lengths, offsets, versions, types: one or two header fields set
        to edge values."""
        self.kinds["field"] += 1
        f = self._base()
        rng = self.rng
        for _ in range(rng.randint(1, 2)):
            if f[12:14] == b"\x08\x06":
                pos = rng.choice(_ARP_FIELDS)
            elif f[12:14] == b"\x86\xdd" and len(f) >= 54:
                start, fields = self._transport_fields(f)
                if fields and rng.random() < 0.5:
                    pos = start + rng.choice(fields)
                else:
                    pos = rng.choice(_IP6_FIELDS)
                if pos in (18, 19) and rng.random() < 0.7:  # IPv6 payload length
                    length = len(f) - 54
                    value = rng.choice((0, 1, 7, 8, 40, length - 1, length + 1, length + 8,
                                        0xFFFF, rng.randrange(65536)))
                    f[18:20] = (value & 0xFFFF).to_bytes(2, "big")
                    continue
            elif f[12:14] == b"\x08\x00" and len(f) >= 34:
                start, fields = self._transport_fields(f)
                if fields and rng.random() < 0.5:
                    pos = start + rng.choice(fields)
                else:
                    pos = rng.choice(_IP_FIELDS)
            else:
                pos = rng.choice((12, 13))
            if pos >= len(f):
                continue
            if pos in (16, 17) and rng.random() < 0.7:  # IPv4 total length
                length = len(f) - 14
                value = rng.choice((0, 1, 19, 20, 21, 27, 28, length - 1, length + 1,
                                    length + 8, 0xFFFF, rng.randrange(65536)))
                f[16:18] = (value & 0xFFFF).to_bytes(2, "big")
            elif rng.random() < 0.7:
                f[pos] = rng.choice(_BYTE_VALUES)
            else:
                f[pos] = rng.randrange(256)
        self._maybe_fix(f, 0.75)
        return [f]

    def options(self):
        """IPv4 or TCP options that are malformed (bad lengths, truncated,
        unknown), with the header length adjusted to carry them."""
        self.kinds["options"] += 1
        rng = self.rng
        if rng.random() < self.ipv6_share:
            return self._options6()
        f = bytearray(rng.choice(self.ip_bases))
        ihl = (f[14] & 0x0F) * 4
        opts = b"".join(rng.choice(_BAD_OPTIONS) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.2:
            opts += bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
        opts = opts[:40]
        opts += b"\x00" * (-len(opts) & 3)
        if f[23] == 6 and rng.random() < 0.6 and len(f) >= 14 + ihl + 20:
            t = 14 + ihl
            doff = (f[t + 12] >> 4) * 4
            tcp_opts = opts[:40]
            f[t + 20:t + max(doff, 20)] = tcp_opts
            f[t + 12] = (((20 + len(tcp_opts)) // 4) << 4) | (f[t + 12] & 0x0F)
        else:
            ip_opts = opts[:40]
            f[34:14 + ihl] = ip_opts
            f[14] = 0x40 | ((20 + len(ip_opts)) // 4)
        total = len(f) - 14
        if rng.random() < 0.85:
            f[16:18] = total.to_bytes(2, "big")
        self._maybe_fix(f, 0.9)
        return [f]

    def _options6(self):
        """An IPv6 extension header with malformed options (or a routing
        header of some type and segments left) put in front of the packet's
        chain; sometimes a hop-by-hop header out of place, or a wrong
        header length."""
        rng = self.rng
        f = bytearray(rng.choice(self.ip6_bases))
        ext = rng.choice((NH_HOPOPTS, NH_DSTOPTS, NH_DSTOPTS, NH_ROUTING))
        if ext == NH_ROUTING:
            body = bytes((rng.choice((0, 0, 2, 3, 4, 253)), rng.choice((0, 0, 1, 2, 255)))) \
                + bytes(4) + (INJECTOR_IP6.packed if rng.random() < 0.5 else b"")
        else:
            body = b"".join(rng.choice(_BAD_OPTIONS6) for _ in range(rng.randint(1, 3)))
            if rng.random() < 0.2:
                body += rng.randbytes(rng.randint(1, 12))
            body = body[:62]
        header = bytearray(_ext(f[20], body))
        if rng.random() < 0.15:
            header[1] = rng.choice((0, 1, 2, 7, 255))  # a wrong header length
        inserted = bytes(header)
        if ext == NH_HOPOPTS and rng.random() < 0.3:
            # RFC 8200 4: hop-by-hop after another header is an error.
            inserted = _ext(NH_HOPOPTS, b"") + inserted
            ext = NH_DSTOPTS
        f[54:54] = inserted
        f[20] = ext
        if rng.random() < 0.85:
            f[18:20] = ((len(f) - 54) & 0xFFFF).to_bytes(2, "big")
        self._maybe_fix(f, 0.9)
        return [f]

    def bad_checksum(self):
        self.kinds["bad_checksum"] += 1
        rng = self.rng
        if rng.random() < self.ipv6_share:
            f = bytearray(rng.choice(self.ip6_bases))
            fix_checksums(f)
            start, _ = self._transport_fields(f)
            walked = upper_layer6(f)
            where = start + _CSUM_OFFSETS6.get(walked[0] if walked else 0, 0)
            if where + 1 < len(f):
                value = rng.choice((0, 0xFFFF, rng.randrange(65536)))
                if value == int.from_bytes(f[where:where + 2], "big"):
                    value ^= 0x0101
                f[where:where + 2] = value.to_bytes(2, "big")
            return [f]
        f = bytearray(rng.choice(self.ip_bases))
        fix_checksums(f)
        start, _ = self._transport_fields(f)
        where = rng.choice((24, start + {6: 16, 17: 6, 1: 2}.get(f[23], 0)))
        if where + 1 < len(f):
            value = rng.choice((0, 0xFFFF, rng.randrange(65536)))
            if value == int.from_bytes(f[where:where + 2], "big"):
                value ^= 0x0101
            f[where:where + 2] = value.to_bytes(2, "big")
        return [f]

    def resize(self):
        """Padding after the datagram, or a frame shorter than its IPv4 total
        length claims."""
        self.kinds["resize"] += 1
        rng = self.rng
        f = self._base()
        if rng.random() < 0.5:
            f += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif len(f) > 15:
            del f[rng.randrange(15, len(f)):]
        self._maybe_fix(f, 0.5)
        return [f]

    def noise(self):
        self.kinds["noise"] += 1
        rng = self.rng
        prefix = rng.choice((VICTIM_FUZZ_MAC + INJECTOR_MAC, BROADCAST_MAC + INJECTOR_MAC, b""))
        body = rng.randbytes(rng.randrange(0, 200))
        if prefix and rng.random() < 0.5:
            body = rng.choice((b"\x08\x00", b"\x08\x06", b"\x86\xdd")) + body
        return [bytearray(prefix + body)]

    def fragments(self):
        """A datagram cut into fragments, then: some never sent (it never
        completes), overlapping or duplicated pieces, bad sizes and
        offsets, a last fragment still marked MF, the pieces shuffled."""
        self.kinds["fragments"] += 1
        rng = self.rng
        if rng.random() < self.ipv6_share:
            return self._fragments6()
        protocol, payload = rng.choice(self._fragment_payloads())
        self._next_id = (self._next_id + 1) & 0xFFFF
        ident = self._next_id
        size = rng.choice((8, 64, 256, 512, 1024, 1480, 1480))
        if size < 64:
            payload = payload[:96]
        pieces = []  # (offset, data, more)
        for offset in range(0, len(payload), size):
            chunk = payload[offset:offset + size]
            pieces.append([offset, chunk, offset + size < len(payload)])
        damage = rng.random()
        if damage < 0.2 and len(pieces) > 1:
            del pieces[rng.randrange(len(pieces))]                 # never completes
        elif damage < 0.4:
            i = rng.randrange(len(pieces))                          # overlap
            offset = max(0, pieces[i][0] + rng.choice((-8, 8, -16, 16)))
            pieces.insert(rng.randrange(len(pieces) + 1),
                          [offset, rng.randbytes(len(pieces[i][1]) or 8), True])
        elif damage < 0.5:
            pieces.append(list(rng.choice(pieces)))                 # exact duplicate
        elif damage < 0.6:
            pieces[-1][2] = True                                    # last still MF
        elif damage < 0.7:
            pieces.append([8184 * 8, rng.randbytes(rng.choice((8, 64, 512))),
                           rng.random() < 0.5])                     # past 65535
        elif damage < 0.8:
            i = rng.randrange(len(pieces))
            pieces[i][1] = pieces[i][1][:rng.randrange(1, len(pieces[i][1]) + 1)]
            pieces[i][2] = True                                     # not a multiple of 8
        if rng.random() < 0.5:
            rng.shuffle(pieces)
        if len(pieces) > 16:
            pieces = pieces[:16]
        frames = []
        for offset, chunk, more in pieces:
            offset = min(offset, 8191 * 8) & ~7
            header = IPv4Header(INJECTOR_IP, VICTIM_FUZZ_IP, protocol, identification=ident,
                                more_fragments=more, fragment_offset=offset)
            frames.append(bytearray(_eth(build_ipv4(header, chunk))))
        if frames and rng.random() < 0.3:
            f = rng.choice(frames)
            f[rng.randrange(14, len(f))] ^= 1 << rng.randrange(8)
            self._maybe_fix(f, 0.5)
        return frames

    def _fragments6(self):
        """An IPv6 packet cut into fragments (RFC 8200 4.5), damaged as the
        IPv4 series are, and also: an atomic fragment, a hop-by-hop header
        before the Fragment header, a first fragment too short to hold the
        upper-layer header (RFC 7112), an offset past 65535."""
        rng = self.rng
        protocol, payload = rng.choice(self._fragment_payloads6())
        self._next_id = (self._next_id + 1) & 0xFFFF
        ident = self._next_id | (rng.randrange(1 << 16) << 16)
        size = rng.choice((8, 16, 64, 256, 512, 1024, 1232, 1232))
        if size < 64:
            payload = payload[:96]
        pieces = []  # (offset, data, more)
        for offset in range(0, len(payload), size):
            pieces.append([offset, payload[offset:offset + size], offset + size < len(payload)])
        damage = rng.random()
        if damage < 0.15 and len(pieces) > 1:
            del pieces[rng.randrange(len(pieces))]                 # never completes
        elif damage < 0.3:
            i = rng.randrange(len(pieces))                          # overlap
            offset = max(0, pieces[i][0] + rng.choice((-8, 8, -16, 16)))
            pieces.insert(rng.randrange(len(pieces) + 1),
                          [offset, rng.randbytes(len(pieces[i][1]) or 8), True])
        elif damage < 0.4:
            pieces.append(list(rng.choice(pieces)))                 # exact duplicate
        elif damage < 0.5:
            pieces[-1][2] = True                                    # last still M
        elif damage < 0.6:
            pieces.append([0xFFF8, rng.randbytes(rng.choice((8, 64, 512))),
                           rng.random() < 0.5])                     # past 65535
        elif damage < 0.7:
            i = rng.randrange(len(pieces))
            pieces[i][1] = pieces[i][1][:rng.randrange(1, len(pieces[i][1]) + 1)]
            pieces[i][2] = True                                     # not a multiple of 8
        elif damage < 0.75:
            pieces = [[0, payload[:1232], False]]                   # atomic
        if rng.random() < 0.5:
            rng.shuffle(pieces)
        if len(pieces) > 16:
            pieces = pieces[:16]
        hop_by_hop = rng.random() < 0.15
        frames = []
        for offset, chunk, more in pieces:
            fragment = build_fragment_header(protocol, min(offset, 0xFFF8) & ~7, more, ident)
            if hop_by_hop:  # unfragmentable part: in every fragment
                packet = _ip6(protocol, chunk, first=NH_HOPOPTS,
                              headers=_ext(NH_FRAGMENT, bytes((1, 4)) + bytes(4)) + fragment)
            else:
                packet = _ip6(protocol, chunk, first=NH_FRAGMENT, headers=fragment)
            frames.append(bytearray(_eth6(packet)))
        if frames and rng.random() < 0.3:
            f = rng.choice(frames)
            f[rng.randrange(14, len(f))] ^= 1 << rng.randrange(8)
            self._maybe_fix(f, 0.5)
        return frames

    def _fragment_payloads6(self):
        if self._payloads6 is None:
            echo = build_icmpv6(Icmpv6Message.echo_request(0x66, 1, bytes(range(256)) * 12),
                                INJECTOR_IP6, VICTIM_FUZZ_IP6)
            udp = build_udp(5555, ECHO_PORT, b"fragmented " * 300, INJECTOR_IP6, VICTIM_FUZZ_IP6)
            tcp = build_tcp(TcpHeader(40200, ECHO_PORT, 1, 0, SYN, 65535), b"s" * 2000,
                            INJECTOR_IP6, VICTIM_FUZZ_IP6)
            # Destination options inside the fragmentable part, then UDP.
            behind = _ext(wire.PROTO_UDP, bytes((1, 2, 0, 0))) + build_udp(
                5556, ECHO_PORT, b"behind options " * 40, INJECTOR_IP6, VICTIM_FUZZ_IP6)
            Mutator._payloads6 = [(PROTO_ICMPV6, echo), (wire.PROTO_UDP, udp),
                                  (wire.PROTO_TCP, tcp), (PROTO_ICMPV6, echo[:400]),
                                  (NH_DSTOPTS, behind)]
        return self._payloads6

    _payloads: list | None = None
    _payloads6: list | None = None

    def _fragment_payloads(self):
        if self._payloads is None:
            echo = build_icmpv4(IcmpMessage.echo_request(0x66, 1, bytes(range(256)) * 12))
            udp = build_udp(5555, ECHO_PORT, b"fragmented " * 300, INJECTOR_IP, VICTIM_FUZZ_IP)
            tcp = build_tcp(TcpHeader(40100, ECHO_PORT, 1, 0, SYN, 65535), b"s" * 2000,
                            INJECTOR_IP, VICTIM_FUZZ_IP)
            Mutator._payloads = [(wire.PROTO_ICMP, echo), (wire.PROTO_UDP, udp),
                                 (wire.PROTO_TCP, tcp), (wire.PROTO_ICMP, echo[:400])]
        return self._payloads


# --- memory --------------------------------------------------------------------------


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MemoryWatch:
    def __init__(self, use_tracemalloc: bool) -> None:
        self.use_tracemalloc = use_tracemalloc
        self.baseline = 0
        self.peak = 0
        self.samples = 0

    def start(self) -> None:
        if self.use_tracemalloc:
            tracemalloc.reset_peak()
        self.baseline = self.peak = rss_bytes()

    def sample(self) -> None:
        self.samples += 1
        value = rss_bytes()
        if value > self.peak:
            self.peak = value

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


# --- the run -----------------------------------------------------------------------


class Result:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.injected = 0
        self.generated = 0
        self.inject_seconds = 0.0
        self.echo_bytes = 0
        self.echo_exchanges = 0
        self.victim: trionet.Stack | None = None
        self.peer: trionet.Stack | None = None
        self.audit: Audit | None = None
        self.memory: MemoryWatch | None = None
        self.mutations: Counter = Counter()
        self.injector_rx = 0
        #: ARP replies and neighbour advertisements the injector sent (besides
        #: the fuzz frames).
        self.arp_replies = 0
        self.virtual_seconds = 0.0

    def check(self, condition: bool, message: str) -> None:
        if not condition:
            self.failures.append(message)


async def run(args, result: Result) -> None:
    audit = result.audit = Audit()
    echo_a, echo_b = trionet.virtual_cable(seed=f"{args.seed}-echo", checksum_offload=False)
    fuzz_a, fuzz_b = trionet.virtual_cable(seed=f"{args.seed}-fuzz", checksum_offload=False,
                                           capacity=4096)
    pcap = LimitedPcap(args.capture)
    # A reassembly timeout shorter than the default 30 s, so that the 4 MiB
    # of reassembly buffers both fill up (never-completed series) and turn over.
    # Fewer SLAAC addresses, on-link prefixes and default routers than the
    # defaults (16, 16, 8): fuzzed router advertisements reach those bounds
    # within seconds (so the refusals are exercised), and every address and
    # route held costs each packet's path lookup a little. Duplicate address
    # detection takes 0.2 s instead of 1-2 s (the setup waits for it; a
    # fuzzed advertisement may set another RetransTimer).
    victim = result.victim = trionet.Stack(
        seed=args.seed, reassembly=trionet.ReassemblyConfig(timeout=args.reassembly_timeout),
        autoconf=AutoconfConfig(max_addresses=4, max_prefixes=4, max_routers=2,
                                retrans_timer=0.2, max_rtr_solicitation_delay=0.2),
        stats=AuditStats(audit))
    peer = result.peer = trionet.Stack(seed=args.seed + 1)
    memory = result.memory = MemoryWatch(args.tracemalloc)
    start_time = trio.current_time()

    async with victim, peer:
        eth0 = victim.add_interface(trionet.Capture(echo_a, pcap), f"{VICTIM_IP}/24",
                                    mac=VICTIM_MAC)
        eth1 = victim.add_interface(fuzz_a, f"{VICTIM_FUZZ_IP}/24", mac=VICTIM_FUZZ_MAC)
        eth1.add_address(f"{VICTIM_FUZZ_IP6}/64")
        audit_interface(victim, eth0, audit, "eth0")
        audit_interface(victim, eth1, audit, "eth1")
        peer.add_interface(echo_b, f"{PEER_IP}/24", mac=PEER_MAC)

        async def echo_handler(stream):
            async with stream:
                async for data in stream:
                    await stream.send_all(data)

        async def udp_echo(sock):
            while True:
                try:
                    data, address = await sock.recvfrom()
                except trio.ClosedResourceError:
                    return
                try:
                    await sock.sendto(data, address)
                except (OSError, ValueError):
                    pass  # a spoofed source with no route back, or source port 0

        async def injector_rx():
            """Drain what the victim sends the injector; answer ARP and
            neighbour solicitations for it."""
            while True:
                try:
                    frames = await fuzz_b.receive_batch()
                except trio.ClosedResourceError:
                    return
                result.injector_rx += len(frames)
                for frame in frames:
                    if frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01" \
                            and frame[38:42] == _INJECTOR_IP_BYTES:
                        result.arp_replies += 1
                        reply = ArpPacket(ARP_REPLY, INJECTOR_MAC, INJECTOR_IP, frame[22:28],
                                          IPv4Address(frame[28:32]))
                        fuzz_b.send_frame(build_ethernet(frame[22:28], INJECTOR_MAC,
                                                         ETHERTYPE_ARP, reply.build()))
                    elif (frame[12:14] == b"\x86\xdd" and len(frame) >= 78 and frame[20] == 58
                          and frame[54] == nd.ICMPV6_NEIGHBOR_SOLICITATION
                          and bytes(frame[62:78]) in _INJECTOR_IP6_TARGETS
                          and any(frame[22:38])):  # not DAD (from ::)
                        # RFC 4861 7.2.4: a solicited advertisement to the
                        # solicitation's source, from the target address.
                        result.arp_replies += 1
                        target = IPv6Address(bytes(frame[62:78]))
                        asker = IPv6Address(bytes(frame[22:38]))
                        message = nd.build_neighbor_advertisement(NeighborAdvertisement(
                            target, solicited=True, override=True, target_lladdr=INJECTOR_MAC),
                            target, asker)
                        fuzz_b.send_frame(_eth6(_ip6(PROTO_ICMPV6, message, src=target,
                                                     dst=asker, hop_limit=255), frame[6:12]))

        stop_echo = trio.Event()
        echo_done = trio.Event()
        echo_state = {"sent": hashlib.sha256(), "received": hashlib.sha256(), "error": None}

        async def echo_client():
            echo_rng = random.Random(f"{args.seed}-echo-data")
            try:
                stream = await peer.open_tcp_stream(VICTIM_IP, ECHO_PORT)
                async with stream:
                    while not stop_echo.is_set():
                        data = echo_rng.randbytes(echo_rng.randint(1, args.echo_size))
                        await stream.send_all(data)
                        echo_state["sent"].update(data)
                        got = 0
                        while got < len(data):
                            chunk = await stream.receive_some()
                            if not chunk:
                                raise RuntimeError("echo connection closed early")
                            echo_state["received"].update(chunk)
                            got += len(chunk)
                        if got != len(data):
                            raise RuntimeError(f"echoed {got} bytes for {len(data)} sent")
                        result.echo_bytes += len(data)
                        result.echo_exchanges += 1
                        await trio.sleep(args.echo_pause)
                    await stream.send_eof()
                    if await stream.receive_some() != b"":
                        raise RuntimeError("data after the echo's EOF")
            except Exception as exc:  # reported as a failure, not a crash
                echo_state["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                echo_done.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(victim.serve_tcp, echo_handler, ECHO_PORT)
            nursery.start_soon(udp_echo, await victim.open_udp_socket(ECHO_PORT))
            nursery.start_soon(injector_rx)
            nursery.start_soon(echo_client)

            # Frames to mutate: the echo connection's own, and built ones.
            with trio.move_on_after(30):
                while pcap.records < min(args.capture, 40) and not echo_done.is_set():
                    await trio.sleep(0.01)
            captured = [f for _, f in read_pcap(bytes(pcap.buffer))] if pcap.records else []
            # The victim's IPv6 addresses on eth1 must have passed duplicate
            # address detection (RFC 4862 5.4: until then only ND reaches them).
            with trio.move_on_after(30):
                while not all(a.usable for a in eth1.addresses):
                    await trio.sleep(0.05)
            states = {str(a.interface): a.state.name for a in eth1.addresses}
            result.check(all(a.usable for a in eth1.addresses),
                         f"eth1's addresses are not all usable: {states}")
            victim_ll = next((a.interface.ip for a in eth1.addresses
                              if a.origin == "link-local"), None)
            bases = constructed_frames(IPv6Address(int(victim_ll)) if victim_ll else None)
            built = len(bases)
            seen = set(bases)
            for frame in captured:
                for rewritten in (rewrite_captured(frame), captured_as_ipv6(frame)):
                    if rewritten is not None and rewritten not in seen:
                        seen.add(rewritten)
                        bases.append(rewritten)
            result.check(len(captured) >= 10,
                         f"only {len(captured)} frames captured from the echo connection")
            mutator = Mutator(random.Random(f"{args.seed}-mutate"), bases, args.ipv6_share)
            if not args.quiet:
                ipv6 = sum(1 for b in bases if b[12:14] == b"\x86\xdd")
                print(f"fuzz: {len(bases)} base frames ({len(bases) - built} from the captured "
                      f"echo connection; {ipv6} IPv6), {args.frames} frames to inject, "
                      f"seed {args.seed}, {'real' if args.real_clock else 'virtual'} clock",
                      flush=True)

            await trio.sleep(0.1)
            memory.start()
            victim_rx = fuzz_a.stats
            send = fuzz_b.send_frame
            sent = 0
            batch = args.batch
            frame_time = args.frame_time
            wall = time.perf_counter()
            next_report = wall + 10
            sample_every = max(1, 5000 // batch)
            rounds = 0
            while sent < args.frames:
                target = min(args.frames, sent + batch)
                while sent < target:
                    for frame in mutator.next()[:args.frames - sent]:
                        send(frame)
                        sent += 1
                if not args.real_clock:
                    await trio.sleep(frame_time * batch)
                while victim_rx["rx_frames"] < sent:
                    await trio.sleep(0)
                rounds += 1
                if rounds % sample_every == 0:
                    memory.sample()
                    if not args.quiet and time.perf_counter() > next_report:
                        next_report += 10
                        rate = sent / (time.perf_counter() - wall)
                        print(f"fuzz: {sent} frames, {rate:,.0f}/s, rss growth "
                              f"{memory.growth / 2**20:.1f} MB, echo {result.echo_exchanges} "
                              f"exchanges", flush=True)
                if echo_done.is_set():
                    break
            memory.sample()
            result.inject_seconds = time.perf_counter() - wall
            result.generated = sent
            result.mutations = mutator.kinds

            # Let the echo finish its exchange and close, then let the timers
            # run out: reassembly, handshakes nobody completes, ARP.
            stop_echo.set()
            with trio.move_on_after(60):
                await echo_done.wait()
            result.check(echo_done.is_set(), "the echo client did not finish")
            await trio.sleep(args.settle)
            memory.sample()
            result.virtual_seconds = trio.current_time() - start_time
            result.injected = fuzz_a.stats["rx_frames"]

            result.check(echo_state["error"] is None, f"echo connection: {echo_state['error']}")
            result.check(echo_state["sent"].digest() == echo_state["received"].digest(),
                         "echoed bytes differ from those sent (sha256)")
            result.check(result.echo_exchanges > 0, "no echo exchange completed")
            result.injected -= result.arp_replies
            result.check(fuzz_b.stats["tx_frames"] - result.arp_replies == sent == result.injected,
                         f"cable: {sent} frames generated, {fuzz_b.stats['tx_frames']} sent "
                         f"({result.arp_replies} of them ARP replies), {result.injected} "
                         f"received by the victim ({dict(fuzz_b.stats)})")
            if not args.real_clock:
                held = victim.resources()
                result.check(held["reassembly_datagrams"] == 0 and held["reassembly_bytes"] == 0,
                             f"reassembly still holds {held['reassembly_datagrams']} datagrams "
                             f"({held['reassembly_bytes']} bytes) after {args.settle} s")
                embryos = held["tcp_handshakes"]
                result.check(embryos == 0, f"{embryos} half-open connections after {args.settle} s")
                pending = eth1.arp.pending_addresses() + eth0.arp.pending_addresses()
                result.check(not pending, f"ARP still resolving {pending}")
                # Neighbour solicitations go RetransTimer apart, and a fuzzed
                # router advertisement may have set it up to an hour (RFC 4861
                # 6.3.4): an address still being resolved must at least have
                # its timer armed (it fails within MAX_MULTICAST_SOLICIT timers).
                for iface in (eth0, eth1):
                    if iface.ipv6 is None:
                        continue
                    cache = iface.ipv6.neighbours
                    pending6 = cache.pending_addresses()
                    result.check(not pending6 or cache.next_deadline() < float("inf"),
                                 f"{iface.name}: neighbour discovery resolving {pending6} "
                                 f"with no timer armed")
            nursery.cancel_scope.cancel()

    for name, stack in (("victim", victim), ("peer", peer)):
        result.check(stack.stats["drop.internal.error"] == 0,
                     f"{name}: drop.internal.error = {stack.stats['drop.internal.error']}")
    account(result)
    result.check(memory.growth <= args.max_growth_mb * 2**20,
                 f"memory grew {memory.growth / 2**20:.1f} MB, over the "
                 f"{args.max_growth_mb} MB bound")


def account(result: Result) -> None:
    """injected == dropped (by counted reason) + accepted, and the rest."""
    audit = result.audit
    stats = result.victim.stats
    for message in audit.errors[:10]:
        result.failures.append(f"accounting: {message}")
    if audit.expect is not None:
        result.failures.append(f"accounting: drop {audit.expect} was never counted")
    dropped = sum(n for (where, _), n in audit.dropped.items() if where == "eth1")
    accepted = sum(n for (where, _), n in audit.accepted.items() if where == "eth1")
    # The injector's ARP replies travel the same cable: take them out.
    arp_replies = result.arp_replies
    result.check(result.injected + arp_replies == dropped + accepted,
                 f"accounting: {result.injected} frames injected + {arp_replies} ARP replies "
                 f"!= {dropped} dropped + {accepted} accepted")
    # Every drop the NIC counted is in stack.stats under the same reason.
    by_reason = Counter()
    for (where, reason), n in audit.dropped.items():
        by_reason[reason] += n
    for (where, reason), n in audit.during.items():
        by_reason[reason] += n
    for reason, n in audit.outside.items():
        by_reason[reason] += n
    drops = stats.drops()
    for reason, n in by_reason.items():
        result.check(drops.get(reason, 0) >= n,
                     f"accounting: {n} drops of {reason!r} seen, {drops.get(reason, 0)} counted")
    # ARP packets queued by the NICs were all parsed or dropped, counted.
    queued = sum(n for (where, kind), n in audit.accepted.items() if kind.startswith("arp:"))
    parsed = sum(n for (where, kind), n in audit.accepted.items() if kind == "parsed")
    arp_dropped = sum(n for (where, _), n in audit.dropped.items() if where.endswith("/arp-task"))
    result.check(queued == parsed + arp_dropped,
                 f"accounting: {queued} ARP packets queued != {parsed} parsed + "
                 f"{arp_dropped} dropped")
    # arp.rx counts a packet once parsed; two checks come after it.
    after_parse = sum(n for (where, reason), n in audit.dropped.items()
                      if where.endswith("/arp-task") and reason in ("arp.bad_sender",
                                                                    "arp.address_conflict"))
    result.check(parsed + after_parse == stats["arp.rx"],
                 f"accounting: {parsed} ARP packets handled + {after_parse} refused after "
                 f"parsing, arp.rx = {stats['arp.rx']}")


def report(args, result: Result) -> None:
    audit = result.audit
    victim = result.victim
    print()
    print(f"frames injected       {result.injected:>12,}")
    if result.inject_seconds:
        print(f"injection             {result.inject_seconds:>12.1f} s wall, "
              f"{result.generated / result.inject_seconds:,.0f} frames/s")
    if not args.real_clock:
        print(f"virtual time          {result.virtual_seconds:>12.1f} s")
    memory = result.memory
    if memory is not None:
        print(f"memory (RSS)          baseline {memory.baseline / 2**20:.1f} MB, peak "
              f"{memory.peak / 2**20:.1f} MB, growth {memory.growth / 2**20:.1f} MB "
              f"(bound {args.max_growth_mb} MB, {memory.samples} samples)")
        if args.tracemalloc:
            current, peak = tracemalloc.get_traced_memory()
            print(f"memory (tracemalloc)  current {current / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB")
    print(f"echo connection       {result.echo_exchanges:,} exchanges, {result.echo_bytes:,} bytes, "
          f"sha256 {'equal' if not any('sha256' in f for f in result.failures) else 'DIFFERENT'}")
    print("mutations             " + ", ".join(f"{k} {v:,}" for k, v in result.mutations.most_common()))
    if audit is None or victim is None:
        return
    dropped = Counter()
    for (where, reason), n in audit.dropped.items():
        if where == "eth1":
            dropped[reason] += n
    accepted = Counter()
    for (where, kind), n in audit.accepted.items():
        if where == "eth1":
            accepted[kind] += n
    print()
    print("injected frames: dropped at once (counted in stack.stats)")
    for reason, n in dropped.most_common():
        print(f"  drop.{reason:<38} {n:>10,}")
    print(f"  {'total':<43} {sum(dropped.values()):>10,}")
    print("injected frames: accepted")
    for kind, n in accepted.most_common():
        print(f"  {kind:<43} {n:>10,}")
    print(f"  {'total':<43} {sum(accepted.values()):>10,}")
    later = Counter()
    for (where, reason), n in audit.dropped.items():
        if where != "eth1":
            later[f"{reason} ({where})"] += n
    for (where, reason), n in audit.during.items():
        later[f"{reason} (while handling a frame on {where})"] += n
    for reason, n in audit.outside.items():
        later[f"{reason} (timers, local delivery, other tasks)"] += n
    counted_by_drop = Counter()
    for (_, reason), n in list(audit.dropped.items()) + list(audit.during.items()):
        counted_by_drop[reason] += n
    for reason, n in audit.outside.items():
        counted_by_drop[reason] += n
    for reason, n in victim.stats.drops().items():
        if n > counted_by_drop[reason]:
            later[f"{reason} (counted directly)"] += n - counted_by_drop[reason]
    print("other drops in stack.stats (of accepted frames, and of what the stack sent)")
    for what, n in later.most_common():
        print(f"  drop.{what:<60} {n:>10,}")
    print()
    keys = ("ipv4.rx", "ipv4.reassembled", "icmp.rx", "icmp.tx_echo_reply", "icmp.tx_error",
            "udp.rx", "arp.rx", "arp.tx_reply", "tcp.rx", "tcp.passive_opens", "tcp.tx_reset",
            "tcp.icmp_error", "tcp.time_wait_reused", "ipv6.rx", "ipv6.reassembled",
            "icmp6.rx", "icmp6.rx_error", "icmp6.tx_echo_reply", "icmp6.tx_error",
            "ndp.rx_solicitation", "ndp.rx_advertisement", "ndp.rx_router_advertisement",
            "ndp.rx_redirect", "ndp.tx_advertisement", "ndp.tx_solicitation", "mld.tx_report")
    print("victim traffic: " + ", ".join(f"{k} {victim.stats[k]:,}" for k in keys))
    print()
    print("victim stack.stats drops (all):")
    for reason, n in sorted(victim.stats.drops().items(), key=lambda kv: -kv[1]):
        print(f"  drop.{reason:<38} {n:>10,}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames to inject (1000000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256, help="frames per injected batch")
    parser.add_argument("--real-clock", action="store_true", help="run on the real clock")
    parser.add_argument("--frame-time", type=float, default=40e-6,
                        help="virtual seconds per injected frame (40 us)")
    parser.add_argument("--settle", type=float, default=75.0,
                        help="seconds to let timers run out after injecting (virtual: 75)")
    parser.add_argument("--reassembly-timeout", type=float, default=5.0,
                        help="the victim's IP reassembly timeout (seconds, 5)")
    parser.add_argument("--echo-size", type=int, default=8192, help="largest echo message")
    parser.add_argument("--echo-pause", type=float, default=0.005,
                        help="seconds between echo exchanges")
    parser.add_argument("--ipv6-share", type=float, default=0.1,
                        help="share of the frames mutated from IPv6 ones (0.1)")
    parser.add_argument("--capture", type=int, default=400,
                        help="frames of the echo connection to capture as mutation bases")
    parser.add_argument("--max-growth-mb", type=float, default=64.0,
                        help="fail if resident memory grows more than this (MB)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (slower)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show the stacks' warnings")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.batch < 1:
        parser.error("--frames and --batch must be at least 1")
    if not 0 <= args.ipv6_share <= 1:
        parser.error("--ipv6-share must be between 0 and 1")
    if args.real_clock and args.settle == 75.0:
        args.settle = 1.0
    if not args.verbose:
        # Address conflicts and the like are logged as warnings: expected here.
        logging.getLogger("trionet").setLevel(logging.ERROR)
    if args.tracemalloc:
        tracemalloc.start()
    result = Result()
    clock = None if args.real_clock else trio.testing.MockClock(autojump_threshold=0)
    try:
        trio.run(run, args, result, clock=clock)
    except BaseException as exc:  # a task raised: the stack let an exception escape
        traceback.print_exc()
        result.failures.append(f"an exception escaped: {type(exc).__name__}: {exc}")
    report(args, result)
    print()
    if result.failures:
        for failure in result.failures:
            print(f"FAIL: {failure}")
        return 1
    print(f"PASS: {result.injected:,} frames, every one accounted for; echo exact; "
          f"no internal errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
