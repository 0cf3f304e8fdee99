"""ICMPv6 (RFC 4443): echo, ping, the errors we send (with the rules of
2.4(e) and a rate limit, 2.4(f)), the errors we receive (handed to the
transport whose packet they quote, as an ``IcmpError``; Packet Too Big also
lowers the path MTU, RFC 8201), and Neighbor Discovery and MLD messages,
handed to the interface they arrived on (RFC 4861, RFC 3810)."""

from __future__ import annotations

import errno

import trio

from ..wire.errors import WireError
from ..wire.icmpv6 import (ICMPV6_DEST_UNREACHABLE, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
                           ICMPV6_MLD_QUERY, ICMPV6_NEIGHBOR_ADVERTISEMENT,
                           ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_PACKET_TOO_BIG,
                           ICMPV6_PARAMETER_PROBLEM, ICMPV6_REDIRECT,
                           ICMPV6_ROUTER_ADVERTISEMENT, ICMPV6_ROUTER_SOLICITATION,
                           ICMPV6_TIME_EXCEEDED, Icmpv6Message, build_icmpv6, parse_icmpv6)
from ..wire.ipv6 import (IPV6_MIN_MTU, PROTO_ICMPV6, parse_extension_headers, parse_ipv6_quote,
                         quote_for_icmpv6)
from .icmp import ErrorKind, IcmpCommon, IcmpError

#: Destination unreachable codes as errno values (Linux's icmpv6_err_convert).
UNREACH_ERRNO = {0: errno.ENETUNREACH, 1: errno.EACCES, 2: errno.EHOSTUNREACH,
                 3: errno.EHOSTUNREACH, 4: errno.ECONNREFUSED, 5: errno.EACCES,
                 6: errno.EACCES}
_KINDS = {ICMPV6_DEST_UNREACHABLE: ErrorKind.UNREACHABLE,
          ICMPV6_PACKET_TOO_BIG: ErrorKind.PACKET_TOO_BIG,
          ICMPV6_TIME_EXCEEDED: ErrorKind.TIME_EXCEEDED,
          ICMPV6_PARAMETER_PROBLEM: ErrorKind.PARAMETER_PROBLEM}
#: Neighbor Discovery messages the interface handles.
ND_TYPES = frozenset((ICMPV6_ROUTER_SOLICITATION, ICMPV6_ROUTER_ADVERTISEMENT,
                      ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_NEIGHBOR_ADVERTISEMENT,
                      ICMPV6_REDIRECT))
#: Seconds a Packet Too Big keeps a lower path MTU (RFC 8201 4: at least 5 minutes).
PMTU_EXPIRES = 600.0


class Icmp6(IcmpCommon):
    """ICMPv6 of one stack. ``routing`` gives paths, our addresses and the
    path-MTU table; ``error_handlers`` maps an IP protocol to the
    transport's ``icmp_error(IcmpError)``."""

    _STATS = "icmp6"
    _PROTOCOL = PROTO_ICMPV6

    # --- input --------------------------------------------------------------

    def input(self, iface, header, payload, raw, verify: bool, multicast: bool) -> None:
        msg = parse_icmpv6(payload, header.src, header.dst, verify_checksum=verify)
        stats = self.stats
        stats["icmp6.rx"] += 1
        kind = msg.type
        if kind == ICMPV6_ECHO_REQUEST:
            self._echo_reply(iface, header, msg)
        elif kind == ICMPV6_ECHO_REPLY:
            self._echo_reply_received(msg.identifier, msg.sequence, msg.payload)
        elif kind < 128:
            self._error_input(iface, msg)
        elif kind in ND_TYPES:
            # RFC 4861 6.1, 7.1: only from the link itself (hop limit 255), code 0.
            if header.hop_limit != 255 or msg.code != 0:
                raise WireError("icmp6.nd_not_on_link")
            iface.nd_input(msg, header)
        elif kind == ICMPV6_MLD_QUERY:
            iface.mld_query(msg, header)
        else:
            stats["icmp6.ignored"] += 1

    def _echo_reply(self, iface, header, msg: Icmpv6Message) -> None:
        """RFC 4443 4.2: the reply returns identifier, sequence and data, from
        the address the request went to (one of ours on the interface if it
        went to a multicast group)."""
        source = header.dst
        if source.is_multicast:
            source = iface.source_for(header.src)
            if source is None:
                raise WireError("icmp6.no_source")
        try:
            path = self.routing.path_to(header.src)
        except OSError:
            raise WireError("icmp6.no_route_back") from None
        reply = Icmpv6Message.echo_reply(msg.identifier, msg.sequence, bytes(msg.payload))
        path.output(path, source, header.src, PROTO_ICMPV6,
                    build_icmpv6(reply, source, header.src))
        self.stats["icmp6.tx_echo_reply"] += 1

    def _error_input(self, iface, msg: Icmpv6Message) -> None:
        """Hand an ICMPv6 error to whoever sent the packet it quotes."""
        quoted, rest, length = parse_ipv6_quote(msg.payload)
        try:
            chain = parse_extension_headers(quoted.next_header, rest)
        except WireError:
            raise WireError("icmp6.bad_quote") from None
        transport = bytes(chain.payload)
        if len(transport) < 8:
            raise WireError("icmp6.bad_quote", "fewer than 8 transport bytes")
        self.stats["icmp6.rx_error"] += 1
        kind = _KINDS.get(msg.type, ErrorKind.OTHER)
        code = msg.code
        mtu = 0
        error_number = errno.EHOSTUNREACH
        if kind == ErrorKind.UNREACHABLE:
            error_number = UNREACH_ERRNO.get(code, errno.EHOSTUNREACH)
        elif kind == ErrorKind.PACKET_TOO_BIG:
            error_number = errno.EMSGSIZE
            mtu = max(msg.mtu, IPV6_MIN_MTU)  # RFC 8201 4: never below 1280
        elif kind == ErrorKind.PARAMETER_PROBLEM:
            error_number = errno.EPROTO
        routing = self.routing
        src, dst = routing.scoped(quoted.src, iface), routing.scoped(quoted.dst, iface)
        if not routing.is_local(src):
            raise WireError("icmp6.not_our_packet")  # it quotes a packet we did not send
        error = IcmpError(kind, msg.type, code, src, dst, chain.protocol, transport,
                          length + 40, error_number,
                          kind == ErrorKind.UNREACHABLE and code in (0, 3), mtu)
        if chain.protocol == PROTO_ICMPV6 and transport[0] == ICMPV6_ECHO_REQUEST:
            taken = self._ping_failed(transport, error)
        else:
            handler = self.error_handlers.get(chain.protocol)
            taken = handler is not None and handler(error) is not False
        if mtu and taken:
            # RFC 8201 4 (RFC 5927 7): the path MTU goes down only when the
            # transport found the quoted packet plausibly ours (TCP: in its
            # window), so a forged Packet Too Big cannot stall a connection.
            routing.lower_path_mtu(dst, mtu, trio.current_time() + PMTU_EXPIRES)

    # --- errors we send -------------------------------------------------------

    def error(self, original, type_: int, code: int, *, mtu: int = 0, pointer: int = 0,
              to_multicast: bool = False, iface=None) -> None:
        """Send an ICMPv6 error about ``original`` (a raw IPv6 packet),
        unless RFC 4443 2.4(e) forbids it or the rate limit (2.4(f)) says no.
        ``to_multicast``: allowed although the packet went to a multicast
        group (Packet Too Big, and parameter problem code 2 for an option
        whose type asks for it)."""
        try:
            quoted, rest, _ = parse_ipv6_quote(original)
        except WireError:
            return
        src, dst = quoted.src, quoted.dst
        if src.is_multicast or src.is_unspecified:
            return  # 2.4(e) (b), (d): no error to an address that cannot be one source
        if (dst.is_multicast or self.quiet) and not (to_multicast or type_ == ICMPV6_PACKET_TOO_BIG):
            return  # 2.4(e.3), (e.4), (e.5): multicast, link-layer multicast or broadcast
        if quoted.next_header == PROTO_ICMPV6 and len(rest) >= 1 and (
                rest[0] < 128 or rest[0] == ICMPV6_REDIRECT):
            return  # 2.4(e) (a): never about an error or a redirect
        routing = self.routing
        src = routing.scoped(src, iface)
        if not routing.is_local(src) and not self._bucket.take(trio.current_time()):
            self.stats.drop("icmp6.rate_limited")
            return
        try:
            path = routing.path_to(src)
        except OSError:
            return
        scoped_dst = routing.scoped(dst, iface)
        source = scoped_dst if routing.is_local(scoped_dst) else path.source
        rest_word = mtu if type_ == ICMPV6_PACKET_TOO_BIG else pointer
        message = Icmpv6Message(type_, code, rest_word, quote_for_icmpv6(original))
        path.output(path, source, src, PROTO_ICMPV6, build_icmpv6(message, source, src))
        self.stats["icmp6.tx_error"] += 1

    def unreachable(self, original, code: int, iface=None) -> None:
        self.error(original, ICMPV6_DEST_UNREACHABLE, code, iface=iface)

    def _echo_request(self, identifier: int, sequence: int, payload: bytes, src, dst) -> bytes:
        return build_icmpv6(Icmpv6Message.echo_request(identifier, sequence, payload), src, dst)
