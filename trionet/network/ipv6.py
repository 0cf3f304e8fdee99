"""IPv6 input, output and forwarding (RFC 8200; host rules RFC 1122's
counterparts in RFC 8504, routers RFC 8200 and RFC 4443).

Link-local addresses (fe80::/10) are only meaningful on one link: inside
the stack they carry that interface's name as their scope
(``IPv6Address("fe80::1%eth0")``), so that the same address on two links is
two addresses, as with Linux's scope ids; packets carry them without it.
"""

from __future__ import annotations

from ipaddress import IPv6Address

import attrs
import trio

from ..wire.errors import WireError
from ..wire.icmpv6 import (ICMPV6_DEST_UNREACHABLE, ICMPV6_PACKET_TOO_BIG,
                           ICMPV6_PARAM_NEXT_HEADER, ICMPV6_PARAMETER_PROBLEM,
                           ICMPV6_TIME_EXCEEDED, ICMPV6_TIME_EXCEEDED_HOP_LIMIT,
                           ICMPV6_UNREACH_BEYOND_SCOPE, ICMPV6_UNREACH_NO_ROUTE)
from ..wire.ipv6 import (IPV6_HEADER_LEN, NH_NONE, PROTO_TCP, PROTO_UDP, IPv6Header,
                         ParameterProblem, build_ipv6_plain, fragment_ipv6, is_extension_header,
                         parse_extension_headers, parse_ipv6)
from .family import IpFamily, with_transport_checksum
from .routes import Path, needs_scope

_LINK_LOCAL_TOP10 = 0x3FA  # fe80::/10
_MULTICAST_TOP8 = 0xFF     # ff00::/8
#: Addresses ``Ipv6`` keeps made (received packets' sources and destinations).
ADDRESS_CACHE_SIZE = 4096


def is_link_local(address: IPv6Address) -> bool:
    return int(address) >> 118 == _LINK_LOCAL_TOP10


def scoped(address: IPv6Address, interface_name: str) -> IPv6Address:
    """``address`` with ``interface_name`` as its scope if it needs one."""
    if address.scope_id is None and needs_scope(address):
        return IPv6Address(f"{address}%{interface_name}")
    return address


@attrs.frozen(slots=True)
class _FirstFragment:
    """What reassembly needs back from the first fragment: where the
    fragmentable part's headers start and the field that names them."""
    protocol: int
    base: int
    next_header_pointer: int


class Ipv6(IpFamily):
    """The IPv6 half of the network layer (handed what ``IpFamily`` says)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._addresses: dict[bytes, IPv6Address] = {}

    # --- output ---------------------------------------------------------------

    def output(self, path: Path, src, dst, protocol: int, payload: bytes, *,
               ttl: int | None = None, dont_fragment: bool = False, gso_size: int = 0) -> None:
        """Send ``payload`` as one IPv6 packet with hop limit ``ttl`` (None:
        the interface's, which routers may advertise, RFC 4861 6.3.4);
        fragmented by us, the source, when larger than the path MTU (RFC
        8200 4.5) unless ``dont_fragment`` (TCP: its segments fit the path
        MTU; one that does not is dropped and counted)."""
        if ttl is None:
            ttl = path.interface.hop_limit
        size = IPV6_HEADER_LEN + len(payload)
        if size <= path.mtu:
            self._transmit(path, build_ipv6_plain(src, dst, protocol, payload, hop_limit=ttl))
        elif gso_size and dont_fragment and size <= path.tso_max:
            # One TCP segment for the link to cut into gso_size pieces (TSO).
            self.stats["ipv6.tx_gso"] += 1
            self._transmit(path, build_ipv6_plain(src, dst, protocol, payload, hop_limit=ttl),
                           gso_size)
        elif dont_fragment:
            self.stats.drop("ipv6.too_big")
        else:
            if path.offload and not path.local:
                # The link completes checksums of whole packets only.
                payload = with_transport_checksum(src, dst, protocol, payload)
            self._ident = (self._ident + 1) & 0xFFFFFFFF
            for piece in fragment_ipv6(IPv6Header(src, dst, protocol, ttl), payload, path.mtu,
                                       self._ident):
                self.stats["ipv6.tx_fragments"] += 1
                self._transmit(path, piece)

    def _transmit(self, path: Path, packet: bytes, gso_size: int = 0) -> None:
        self.stats["ipv6.tx"] += 1
        if path.local and not path.interface.loops_back:
            self.local_link.send_frame(packet)
        else:
            path.interface.send_ipv6(packet, path.next_hop, gso_size)

    # --- input ------------------------------------------------------------------

    def input(self, iface, data, link_multicast: bool, verify: bool | None = None) -> None:
        """One packet from ``iface``; ``link_multicast``: it came in a
        link-layer multicast or broadcast frame (never forwarded, no ICMPv6
        error but the exceptions of RFC 4443 2.4(e.3))."""
        if not link_multicast:
            self._input(iface, data, False, verify)
            return
        icmp = self.icmp
        icmp.quiet = True
        try:
            self._input(iface, data, True, verify)
        finally:
            icmp.quiet = False

    def intern(self, packed: bytes) -> IPv6Address:
        """The address of these 16 bytes, the same object each time (bounded):
        tables keyed by addresses then match by identity, without
        ``IPv6Address.__eq__``, and no object is made per packet."""
        address = self._addresses.get(packed)
        if address is None:
            if len(self._addresses) >= ADDRESS_CACHE_SIZE:
                self._addresses.clear()
            address = self._addresses[packed] = IPv6Address(packed)
        return address

    def _input(self, iface, data, link_multicast: bool, verify: bool | None) -> None:
        if verify is None:
            verify = not iface.checksum_offload
        header, payload = parse_ipv6(data, self.intern)
        stats = self.stats
        stats["ipv6.rx"] += 1
        src, dst = header.src, header.dst
        s0, d0 = data[8], data[24]  # the first bytes of the addresses
        if s0 == _MULTICAST_TOP8:
            raise WireError("ipv6.bad_source")  # RFC 4291 2.7
        multicast = d0 == _MULTICAST_TOP8
        if (s0 == 0xFE and data[9] & 0xC0 == 0x80) or (d0 == 0xFE and data[25] & 0xC0 == 0x80) \
                or (multicast and data[25] & 0x0F in (1, 2)):
            # Link-local unicast or link-scoped multicast: with the interface as scope.
            name = iface.name
            src, dst = scoped(src, name), scoped(dst, name)
            header = attrs.evolve(header, src=src, dst=dst)
        if multicast:
            if not iface.in_group(dst):
                raise WireError("ipv6.multicast")  # a group we did not join
        elif not self.routing.is_local(dst):
            if self.intercepts and not link_multicast and \
                    self._intercept(iface, header, payload, data, verify):
                return
            if self.forwarding and not link_multicast:
                self._forward(iface, header, data[:IPV6_HEADER_LEN + len(payload)], verify)
                return
            raise WireError("ipv6.not_for_us")
        next_header = header.next_header
        if not is_extension_header(next_header):
            # No extension header (the common case): the upper layer's at once.
            handler = self.protocols.get(next_header)
            if handler is not None:
                handler(iface, header, payload, data, verify, multicast)
                return
        try:
            chain = parse_extension_headers(next_header, payload)
        except ParameterProblem as problem:
            if problem.should_report(dst):
                self.icmp.error(data, ICMPV6_PARAMETER_PROBLEM, problem.code,
                                pointer=problem.pointer, to_multicast=problem.to_multicast,
                                iface=iface)
            raise
        raw = data
        protocol = chain.protocol
        body = chain.payload
        if chain.fragment is not None:
            fragment = chain.fragment
            whole = self.reassembler.add_ipv6(
                src, dst, fragment.identification, fragment.offset_bytes, fragment.more,
                body, data, _FirstFragment(protocol, chain.offset, chain.next_header_pointer),
                trio.current_time())
            self._reschedule()
            if whole is None:
                return
            first, fragmentable, raw = whole
            stats["ipv6.reassembled"] += 1
            # RFC 8200 4.5: after reassembly, on with the headers after the
            # Fragment header (RFC 7112: they are all in the first fragment).
            chain = parse_extension_headers(first.protocol, fragmentable, base=first.base,
                                            next_header_pointer=first.next_header_pointer)
            if chain.fragment is not None:
                raise WireError("ipv6.bad_fragment", "a fragment inside a fragment")
            protocol, body = chain.protocol, chain.payload
        handler = self.protocols.get(protocol)
        if handler is None:
            if protocol == NH_NONE:
                raise WireError("ipv6.no_next_header")  # RFC 8200 4.7: nothing follows
            if not multicast:
                # RFC 8200 4: an unrecognized Next Header is a parameter problem.
                self.icmp.error(raw, ICMPV6_PARAMETER_PROBLEM, ICMPV6_PARAM_NEXT_HEADER,
                                pointer=chain.next_header_pointer, iface=iface)
            raise WireError("ipv6.unknown_protocol")
        handler(iface, header, body, raw, verify, multicast)

    def _intercept(self, iface, header: IPv6Header, payload, raw, verify: bool) -> bool:
        """A packet to an address not ours, on an interface with a
        forwarder: its transport's handler takes it (True), or it goes on
        as without one (False: forwarded or dropped). Only a global
        unicast destination, a source that may be answered, and the
        transport header right after the IPv6 header (no extension
        headers, so no fragments)."""
        table = self.intercepts.get(iface)
        if table is None:
            return False
        handler = table.get(header.next_header)
        src, dst = header.src, header.dst
        if (handler is None or is_link_local(dst) or dst.is_loopback or dst.is_unspecified
                or src.is_loopback or src.is_unspecified):
            return False
        return handler(iface, header, payload, raw[:IPV6_HEADER_LEN + len(payload)], verify)

    def _forward(self, iface, header: IPv6Header, raw, verified: bool) -> None:
        """RFC 8200 3: decrement the hop limit, route, never fragment
        (Packet Too Big instead, RFC 4443 3.2)."""
        src, dst = header.src, header.dst
        if dst.is_unspecified or dst.is_loopback or src.is_loopback or src.is_unspecified:
            raise WireError("ipv6.martian")
        if is_link_local(dst):
            raise WireError("ipv6.link_local_not_forwarded")  # RFC 4291 2.5.6
        icmp = self.icmp
        if header.hop_limit <= 1:
            icmp.error(raw, ICMPV6_TIME_EXCEEDED, ICMPV6_TIME_EXCEEDED_HOP_LIMIT, iface=iface)
            raise WireError("ipv6.hop_limit_exceeded")
        if is_link_local(src):
            # RFC 4443 3.1: the source's scope does not reach the destination.
            icmp.error(raw, ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_BEYOND_SCOPE, iface=iface)
            raise WireError("ipv6.link_local_not_forwarded")
        try:
            path = self.routing.path_to(dst)
        except OSError:
            icmp.error(raw, ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_NO_ROUTE, iface=iface)
            raise WireError("ipv6.no_route") from None
        if len(raw) > path.mtu:
            icmp.error(raw, ICMPV6_PACKET_TOO_BIG, 0, mtu=path.mtu, iface=iface)
            raise WireError("ipv6.packet_too_big")
        if not verified and not path.offload and header.next_header in (PROTO_TCP, PROTO_UDP):
            # From a link that skips checksums to one that does not.
            raw = bytes(raw[:IPV6_HEADER_LEN]) + with_transport_checksum(
                src, dst, header.next_header, bytes(raw[IPV6_HEADER_LEN:]))
        packet = bytearray(raw)
        packet[7] = header.hop_limit - 1
        self._transmit(path, bytes(packet))
        self.stats["ipv6.forwarded"] += 1
