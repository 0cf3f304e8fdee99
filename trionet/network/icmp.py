"""ICMP for IPv4 (RFC 792, host rules RFC 1122 3.2.2, router rules RFC
1812 4.3): echo, ping, the errors we send, and the errors we receive, handed
to the transport whose datagram they quote as an ``IcmpError``.

Every quoted datagram is parsed in one place (``wire.ipv4.parse_ipv4_quote``)
and every ICMP type/code -> errno decision is the table here.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ..stats import Stats
from ..validate import IPAddress
from ..wire.errors import WireError
from ..wire.icmpv4 import (ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
                           ICMP_PARAMETER_PROBLEM, ICMP_TIME_EXCEEDED, UNREACH_FRAG_NEEDED,
                           UNREACH_HOST, UNREACH_NET, UNREACH_PORT, UNREACH_PROTOCOL,
                           IcmpMessage, build_icmpv4, parse_icmpv4)
from ..wire.ipv4 import PROTO_ICMP, parse_ipv4, parse_ipv4_quote, quote_for_icmp
from .ipv4 import is_unicast_source
from .routes import Path

log = logging.getLogger("trionet.icmp")

#: RFC 792 types that are errors: never answered with another error (RFC 1122 3.2.2).
ERROR_TYPES = frozenset((3, 4, 5, 11, 12))
#: Destination unreachable codes as errno values (Linux's icmp_err_convert);
#: 6 and 7 are "network / host unknown".
UNREACH_ERRNO = {UNREACH_NET: errno.ENETUNREACH, UNREACH_HOST: errno.EHOSTUNREACH,
                 UNREACH_PROTOCOL: errno.ENOPROTOOPT, UNREACH_PORT: errno.ECONNREFUSED,
                 UNREACH_FRAG_NEEDED: errno.EMSGSIZE, 6: errno.ENETUNREACH,
                 7: errno.EHOSTUNREACH}
#: RFC 1191 7: MTU plateaus, for routers that report no next-hop MTU.
MTU_PLATEAUS = (32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)


class ErrorKind:
    """What an ICMP error says, whatever the family."""
    UNREACHABLE = "unreachable"          # ICMP destination unreachable (not "frag needed")
    PACKET_TOO_BIG = "packet_too_big"    # fragmentation needed (RFC 1191)
    TIME_EXCEEDED = "time_exceeded"
    PARAMETER_PROBLEM = "parameter_problem"
    OTHER = "other"                      # source quench, redirect: ignored (RFC 6633)


@attrs.frozen(slots=True)
class IcmpError:
    """A received ICMP (or ICMPv6) error about a datagram we sent."""
    kind: str
    #: The raw ICMP type and code (for messages and logs).
    type: int
    code: int
    #: The quoted datagram's addresses and protocol.
    src: IPAddress
    dst: IPAddress
    protocol: int
    #: The quoted transport bytes (at least 8: ports and, for TCP, SEG.SEQ).
    transport: bytes
    #: The quoted datagram's own length, its IP header included (IPv4's
    #: total length; IPv6's payload length plus 40).
    quoted_length: int
    #: The errno a socket reports for it (Linux's icmp_err_convert / icmpv6_err_convert).
    errno: int
    #: "Network or host unreachable" (or unknown): a SYN-ACK to such a host
    #: likely answered a spoofed SYN (Linux's tcp_req_err).
    net_or_host: bool = False
    #: The next-hop MTU of a "packet too big" (0 when the router gave none).
    mtu: int = 0

    def describe(self) -> str:
        family = "ICMPv6" if getattr(self.src, "version", 4) == 6 else "ICMP"
        return f"{family} type {self.type} code {self.code}"

    def describe_errno(self) -> str:
        return f"{os.strerror(self.errno)} ({self.describe()} from the network)"


_KINDS = {ICMP_DEST_UNREACHABLE: ErrorKind.UNREACHABLE, ICMP_TIME_EXCEEDED: ErrorKind.TIME_EXCEEDED,
          ICMP_PARAMETER_PROBLEM: ErrorKind.PARAMETER_PROBLEM}


class TokenBucket:
    """ICMP error rate limit (RFC 1812 4.3.2.8; Linux: 1000/s, burst 50)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, float(burst), None

    def take(self, now: float) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@attrs.define(slots=True)
class PingWaiter:
    payload: bytes
    sent_at: float
    event: trio.Event = attrs.Factory(trio.Event)
    rtt: float | None = None
    error: OSError | None = None


class IcmpCommon:
    """What ICMP and ICMPv6 share: ``routing`` (paths, our addresses),
    ``error_handlers`` (IP protocol -> the transport's ``icmp_error``), the
    rate limit of errors sent, and pings in progress. Subclasses give
    ``_STATS`` (their counters' prefix), ``_PROTOCOL`` and ``_echo_request``."""

    _STATS = "icmp"
    _PROTOCOL = PROTO_ICMP

    def __init__(self, stats: Stats, routing: Any, *, rate: float, burst: int,
                 ping_ident: int):
        self.stats = stats
        self.routing = routing
        self.error_handlers: dict[int, Callable[[IcmpError], bool | None]] = {}
        #: Set while a frame that came as a link-layer broadcast (or
        #: multicast) is handled: no error may answer it.
        self.quiet = False
        self._bucket = TokenBucket(rate, burst)
        self._ping_ident = ping_ident
        self._ping_seq = 0
        self._pings: dict[tuple[int, int], PingWaiter] = {}

    @property
    def pings_in_progress(self) -> int:
        return len(self._pings)

    def _echo_reply_received(self, identifier: int, sequence: int, payload) -> None:
        waiter = self._pings.get((identifier, sequence))
        if waiter is None or waiter.event.is_set():
            raise WireError(self._STATS + ".unexpected_echo_reply")
        if bytes(payload) != waiter.payload:
            raise WireError(self._STATS + ".echo_payload_mismatch")
        waiter.rtt = trio.current_time() - waiter.sent_at
        waiter.event.set()

    def _ping_failed(self, transport: bytes, error: IcmpError) -> bool:
        """An error quoting one of our echo requests fails that ping; True
        if it was one in progress."""
        key = (int.from_bytes(transport[4:6], "big"), int.from_bytes(transport[6:8], "big"))
        waiter = self._pings.get(key)
        if waiter is None or waiter.event.is_set():
            return False
        waiter.error = OSError(error.errno, f"{error.describe()} for ping")
        waiter.event.set()
        return True

    def _echo_request(self, identifier: int, sequence: int, payload: bytes, src, dst) -> bytes:
        raise NotImplementedError

    async def ping(self, path: Path, dst: IPAddress, size: int, timeout: float,
                   ttl: int = 64) -> float:
        """Send one echo request; the round trip in seconds. TimeoutError
        without a reply; OSError when an ICMP error comes back."""
        self._ping_seq = (self._ping_seq + 1) & 0xFFFF
        key = (self._ping_ident, self._ping_seq)
        payload = bytes((i + self._ping_seq) & 0xFF for i in range(size))
        waiter = self._pings[key] = PingWaiter(payload, trio.current_time())
        try:
            message = self._echo_request(key[0], key[1], payload, path.source, dst)
            path.output(path, path.source, dst, self._PROTOCOL, message, ttl=ttl)
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            del self._pings[key]
        if waiter.error is not None:
            raise waiter.error
        if waiter.rtt is None:
            raise TimeoutError(f"no echo reply from {dst} within {timeout} s")
        return waiter.rtt


class Icmp4(IcmpCommon):
    """ICMPv4 of one stack. ``routing`` gives paths (``path_to``, ``is_local``,
    ``is_broadcast``); ``error_handlers`` maps an IP protocol to the
    transport's ``icmp_error(IcmpError)``."""

    # --- input --------------------------------------------------------------

    def input(self, iface, header, payload, raw, verify: bool, broadcast: bool) -> None:
        msg = parse_icmpv4(payload, verify_checksum=verify)
        self.stats["icmp.rx"] += 1
        if msg.type == ICMP_ECHO_REQUEST:
            if broadcast:  # RFC 1122 3.2.2.6 lets us ignore these (as Linux does)
                raise WireError("icmp.broadcast_echo")
            reply = build_icmpv4(IcmpMessage.echo_reply(msg.identifier, msg.sequence,
                                                        bytes(msg.payload)))
            try:
                path = self.routing.path_to(header.src)
            except OSError:
                raise WireError("icmp.no_route_back") from None
            path.output(path, header.dst, header.src, PROTO_ICMP, reply)
            self.stats["icmp.tx_echo_reply"] += 1
        elif msg.type == ICMP_ECHO_REPLY:
            self._echo_reply_received(msg.identifier, msg.sequence, msg.payload)
        elif msg.type in ERROR_TYPES:
            self._error_input(msg)
        else:
            self.stats["icmp.ignored"] += 1

    def _error_input(self, msg: IcmpMessage) -> None:
        """Hand an ICMP error to whoever sent the datagram it quotes."""
        quoted, transport, length = parse_ipv4_quote(msg.payload)
        self.stats["icmp.rx_error"] += 1
        kind = _KINDS.get(msg.type, ErrorKind.OTHER)
        mtu = 0
        if msg.type == ICMP_DEST_UNREACHABLE and msg.code == UNREACH_FRAG_NEEDED:
            kind = ErrorKind.PACKET_TOO_BIG
            mtu = msg.next_hop_mtu
            if mtu == 0:  # an RFC 1191 5 router: guess the next plateau down
                mtu = next((p for p in MTU_PLATEAUS if p < length), 68)
        code = msg.code
        if kind == ErrorKind.UNREACHABLE or kind == ErrorKind.PACKET_TOO_BIG:
            error_number = UNREACH_ERRNO.get(code, errno.EHOSTUNREACH)
        else:
            error_number = errno.EHOSTUNREACH
        error = IcmpError(kind, msg.type, code, quoted.src, quoted.dst, quoted.protocol,
                          bytes(transport), length, error_number,
                          kind == ErrorKind.UNREACHABLE and code in (0, 1, 6, 7), mtu)
        if quoted.protocol == PROTO_ICMP and transport[0] == ICMP_ECHO_REQUEST:
            self._ping_failed(bytes(transport), error)
            return
        handler = self.error_handlers.get(quoted.protocol)
        if handler is not None:
            handler(error)

    # --- errors we send -------------------------------------------------------

    def error(self, original, type_: int, code: int, next_hop_mtu: int = 0) -> None:
        """Send an ICMP error about ``original`` (raw IPv4 bytes), unless
        RFC 1122 3.2.2 forbids it or the rate limit says no."""
        if self.quiet:
            return  # RFC 1122 3.2.2: not about a link-layer broadcast
        try:
            header, payload = parse_ipv4(original, verify_checksum=False)
        except WireError:
            return
        routing = self.routing
        src = header.src
        if header.fragment_offset or not is_unicast_source(src) or routing.is_broadcast(src):
            return
        if header.dst.is_multicast or routing.is_broadcast(header.dst):
            return
        if header.protocol == PROTO_ICMP and (len(payload) < 1 or payload[0] in ERROR_TYPES):
            return
        # RFC 1812 4.3.2.8: limit the errors sent to the network; those to
        # our own senders (ARP failures) are not limited (nor are they on Linux).
        if not routing.is_local(src) and not self._bucket.take(trio.current_time()):
            self.stats.drop("icmp.rate_limited")
            return
        try:
            path = routing.path_to(src)
        except OSError:
            return
        source = header.dst if routing.is_local(header.dst) else path.source
        message = IcmpMessage.error(type_, code, quote_for_icmp(original), next_hop_mtu)
        path.output(path, source, src, PROTO_ICMP, build_icmpv4(message))
        self.stats["icmp.tx_error"] += 1

    def unreachable(self, original, code: int, next_hop_mtu: int = 0) -> None:
        self.error(original, ICMP_DEST_UNREACHABLE, code, next_hop_mtu)

    def _echo_request(self, identifier: int, sequence: int, payload: bytes, src, dst) -> bytes:
        return build_icmpv4(IcmpMessage.echo_request(identifier, sequence, payload))
