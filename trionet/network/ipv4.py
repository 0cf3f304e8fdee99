"""IPv4 input, output and forwarding (RFC 791, host rules RFC 1122 3.2.1,
router rules RFC 1812 5)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from ..link.loopback import LoopbackLink
from ..stats import Stats
from ..wire.checksum import internet_checksum, pseudo_header_sum
from ..wire.errors import WireError
from ..wire.icmpv4 import (ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED, TIME_EXCEEDED_REASSEMBLY,
                           TIME_EXCEEDED_TTL, UNREACH_FRAG_NEEDED, UNREACH_NET,
                           UNREACH_PROTOCOL)
from ..wire.ipv4 import (PROTO_TCP, PROTO_UDP, IPv4Header, build_ipv4, build_ipv4_plain,
                         parse_ipv4)
from .fragments import Reassembler, fragment
from .routes import Path

_LIMITED_BROADCAST = 0xFFFFFFFF


def is_unicast_source(address) -> bool:
    """RFC 1122 3.2.1.3 / RFC 1812 5.3.7: a source that may be answered."""
    # Not 0.0.0.0 and nothing from 224.0.0.0 up: multicast (224/4), reserved
    # (240/4) and the limited broadcast.
    return 0 < int(address) < 0xE0000000


def is_acceptable_source(address) -> bool:
    """RFC 1122 3.2.1.3: a source a datagram for us may carry: a unicast
    one, or 0.0.0.0 (a host learning its address, as DHCP)."""
    return int(address) < 0xE0000000


class Ipv4:
    """The IPv4 half of the network layer.

    Handed what it needs: ``routing`` (paths and our addresses), ``icmp``
    (its ``error``), ``protocols`` (IP protocol -> the transport's input),
    the stack's ``local_link`` (packets to our own addresses), a
    ``reassembler`` and ``reschedule`` (its deadline moved)."""

    def __init__(self, stats: Stats, routing: Any, icmp: Any, protocols: dict[int, Callable],
                 reassembler: Reassembler, local_link: LoopbackLink, *, forwarding: bool,
                 first_id: int, reschedule: Callable[[], None]):
        self.stats = stats
        self.routing = routing
        self.icmp = icmp
        self.protocols = protocols
        self.reassembler = reassembler
        self.local_link = local_link
        self.forwarding = forwarding
        self._ip_id = first_id
        self._reschedule = reschedule

    # --- output ---------------------------------------------------------------

    def _next_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def output(self, path: Path, src, dst, protocol: int, payload: bytes, *, ttl: int = 64,
               dont_fragment: bool = False, gso_size: int = 0) -> None:
        """Send ``payload`` as one IPv4 datagram, fragmented to the path MTU
        unless ``dont_fragment`` (then it is dropped, counted, if too big).

        ``gso_size`` (TCP, with ``dont_fragment``, on a path with
        ``tso_max``): a datagram over the MTU goes whole, for the link to cut
        into segments of ``gso_size`` payload bytes; never fragmented."""
        compute = not path.offload
        size = 20 + len(payload)
        if size <= path.mtu:
            self._transmit(path, build_ipv4_plain(
                src, dst, protocol, self._next_id(), payload, ttl=ttl,
                dont_fragment=dont_fragment, compute_checksum=compute))
        elif gso_size and dont_fragment and size <= path.tso_max:
            self.stats["ipv4.tx_gso"] += 1
            self._transmit(path, build_ipv4_plain(
                src, dst, protocol, self._next_id(), payload, ttl=ttl, dont_fragment=True,
                compute_checksum=compute), gso_size)
        elif dont_fragment:
            self.stats.drop("ipv4.too_big")
        else:
            header = IPv4Header(src, dst, protocol, ttl=ttl, identification=self._next_id(),
                                dont_fragment=dont_fragment)
            for piece, chunk in fragment(header, payload, path.mtu):
                self.stats["ipv4.tx_fragments"] += 1
                self._transmit(path, build_ipv4(piece, chunk, compute_checksum=compute))

    def _transmit(self, path: Path, packet: bytes, gso_size: int = 0) -> None:
        self.stats["ipv4.tx"] += 1
        if path.local and path.interface.needs_arp:
            self.local_link.send_frame(packet)
        else:
            path.interface.send_ip(packet, path.next_hop, gso_size)

    # --- input ----------------------------------------------------------------

    def input(self, iface, data, link_broadcast: bool, verify: bool | None = None) -> None:
        if verify is None:
            verify = not iface.checksum_offload
        header, payload = parse_ipv4(data, verify_checksum=verify)
        stats = self.stats
        stats["ipv4.rx"] += 1
        dst = header.dst
        broadcast = False
        if not self.routing.is_local(dst):
            dst_int = int(dst)
            if dst_int == _LIMITED_BROADCAST or dst in iface.broadcasts:
                broadcast = True
            elif 0xE0000000 <= dst_int < 0xF0000000:
                raise WireError("ipv4.multicast")
            elif self.forwarding and not link_broadcast:
                self._forward(header, payload, data, verify)
                return
            else:
                raise WireError("ipv4.not_for_us")
        if not is_acceptable_source(header.src):
            raise WireError("ipv4.bad_source")  # RFC 1122 3.2.1.3
        raw = data
        if header.is_fragment:
            whole = self.reassembler.add(header, payload, data, trio.current_time())
            self._reschedule()
            if whole is None:
                return
            header, payload, raw = whole[0], memoryview(whole[1]), whole[2]
            stats["ipv4.reassembled"] += 1
        handler = self.protocols.get(header.protocol)
        if handler is None:
            if not broadcast:
                self.icmp.unreachable(raw, UNREACH_PROTOCOL)
            raise WireError("ipv4.unknown_protocol")
        handler(iface, header, payload, raw, verify, broadcast)

    def _forward(self, header: IPv4Header, payload, raw, verified: bool) -> None:
        """RFC 1812 5.2 / 5.3.1: decrement TTL, route, fragment or refuse."""
        src, dst = header.src, header.dst
        routing = self.routing
        # RFC 1812 5.3.7: never forward from or to a martian address (nor
        # answer it with an ICMP error).
        if (not is_unicast_source(src) or src.is_loopback or routing.is_broadcast(src)
                or dst.is_loopback or dst.is_reserved or dst.packed[0] == 0):
            raise WireError("ipv4.martian")
        if routing.is_broadcast(dst):  # RFC 2644: directed broadcasts are not forwarded
            raise WireError("ipv4.directed_broadcast")
        if header.ttl <= 1:
            self.icmp.error(raw, ICMP_TIME_EXCEEDED, TIME_EXCEEDED_TTL)
            raise WireError("ipv4.ttl_expired")
        try:
            path = routing.path_to(dst)
        except OSError:
            self.icmp.unreachable(raw, UNREACH_NET)
            raise WireError("ipv4.no_route") from None
        if not verified and not path.offload and not header.is_fragment:
            # From a link that skips checksums to one that does not.
            payload = _with_transport_checksum(header, payload)
        out = attrs.evolve(header, ttl=header.ttl - 1)
        compute = not path.offload
        if out.header_length + len(payload) <= path.mtu:
            self._transmit(path, build_ipv4(out, payload, compute_checksum=compute))
        elif header.dont_fragment:
            self.icmp.error(raw, ICMP_DEST_UNREACHABLE, UNREACH_FRAG_NEEDED, path.mtu)
            raise WireError("ipv4.fragmentation_needed")
        else:
            for piece, chunk in fragment(out, payload, path.mtu):
                self._transmit(path, build_ipv4(piece, chunk, compute_checksum=compute))
        self.stats["ipv4.forwarded"] += 1

    # --- reassembly timeouts ---------------------------------------------------

    def expire(self, now: float) -> None:
        """Give up datagrams whose time ran out. Every one counts, with or
        without its first fragment; only those with it are answered (RFC
        792, RFC 1122 3.3.2: time exceeded, code 1)."""
        reassembler = self.reassembler
        timed_out = reassembler.timed_out
        quotes = reassembler.expire(now)
        self.stats["drop.ipv4.reassembly_timeout"] += reassembler.timed_out - timed_out
        for first_fragment in quotes:
            self.icmp.error(first_fragment, ICMP_TIME_EXCEEDED, TIME_EXCEEDED_REASSEMBLY)


def _with_transport_checksum(header: IPv4Header, payload) -> bytes:
    """TCP/UDP payload with its checksum filled in (RFC 9293 3.1, RFC 768)."""
    offset = {PROTO_TCP: 16, PROTO_UDP: 6}.get(header.protocol)
    if offset is None or len(payload) < offset + 2:
        return payload
    data = bytearray(payload)
    data[offset:offset + 2] = b"\0\0"
    checksum = internet_checksum(data, pseudo_header_sum(header.src, header.dst, header.protocol, len(data)))
    if header.protocol == PROTO_UDP and checksum == 0:
        checksum = 0xFFFF
    data[offset:offset + 2] = checksum.to_bytes(2, "big")
    return bytes(data)
