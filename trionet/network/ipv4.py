"""IPv4 input, output and forwarding (RFC 791, host rules RFC 1122 3.2.1,
router rules RFC 1812 5)."""

from __future__ import annotations


import attrs
import trio

from ..wire.errors import WireError
from ..wire.icmpv4 import (ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED,
                           TIME_EXCEEDED_TTL, UNREACH_FRAG_NEEDED, UNREACH_NET,
                           UNREACH_PROTOCOL)
from ..wire.ipv4 import IPv4Header, build_ipv4, build_ipv4_plain, parse_ipv4
from .family import IpFamily, with_transport_checksum
from .fragments import fragment
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


class Ipv4(IpFamily):
    """The IPv4 half of the network layer (handed what ``IpFamily`` says)."""

    # --- output ---------------------------------------------------------------

    def _next_id(self) -> int:
        self._ident = (self._ident + 1) & 0xFFFF
        return self._ident

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
        if path.local and not path.interface.loops_back:
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
        # Ours on the interface it came in (an int set: no Python-level
        # hashing of the address), else on any interface (the weak host model).
        if dst._ip not in iface.local_ipv4_ints and not self.routing.is_local(dst):
            dst_int = int(dst)
            if dst_int == _LIMITED_BROADCAST or dst in iface.broadcasts:
                broadcast = True
            elif 0xE0000000 <= dst_int < 0xF0000000:
                raise WireError("ipv4.multicast")
            elif self.intercepts and not link_broadcast and \
                    self._intercept(iface, header, payload, data, verify):
                return
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
            if not broadcast and not link_broadcast:
                self.icmp.unreachable(raw, UNREACH_PROTOCOL)
            raise WireError("ipv4.unknown_protocol")
        if link_broadcast:
            # RFC 1122 3.2.2: no ICMP error about a link-layer broadcast.
            icmp = self.icmp
            icmp.quiet = True
            try:
                handler(iface, header, payload, raw, verify, broadcast)
            finally:
                icmp.quiet = False
            return
        handler(iface, header, payload, raw, verify, broadcast)

    def _intercept(self, iface, header: IPv4Header, payload, raw, verify: bool) -> bool:
        """A datagram to an address not ours, on an interface with a
        forwarder: its transport's handler takes it (True), or it goes on
        as without one (False: forwarded or dropped). Only from a source
        that may be answered (RFC 1122 3.2.1.3) to a unicast address."""
        table = self.intercepts.get(iface)
        if table is None:
            return False
        handler = table.get(header.protocol)
        src, dst = header.src, header.dst
        if (handler is None or not is_unicast_source(src) or src.is_loopback
                or dst.is_loopback or dst.packed[0] == 0 or self.routing.is_broadcast(src)):
            return False
        if header.is_fragment:
            # Reassembled here (RFC 791), as if the destination were ours.
            whole = self.reassembler.add(header, payload, raw, trio.current_time())
            self._reschedule()
            if whole is None:
                return True
            self.stats["ipv4.reassembled"] += 1
            if not handler(iface, whole[0], memoryview(whole[1]), whole[2], verify):
                raise WireError("ipv4.not_for_us")  # whole again: not forwarded
            return True
        return handler(iface, header, payload, raw, verify)

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
            payload = with_transport_checksum(header.src, header.dst, header.protocol, payload)
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
