"""What each IP family's half of the network layer is handed, and what
both do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..link.loopback import LoopbackLink
from ..stats import Stats
from ..wire.checksum import internet_checksum, pseudo_header_sum
from ..wire.ipv4 import PROTO_TCP, PROTO_UDP
from .fragments import Reassembler


class IpFamily:
    """Handed what it needs: ``routing`` (paths and our addresses), ``icmp``
    (the family's ICMP: its ``error``), ``protocols`` (IP protocol -> the
    transport's input), the stack's ``local_link`` (packets to our own
    addresses), the ``reassembler`` (one for both families, one memory
    bound) and ``reschedule`` (its deadline moved); ``first_id`` starts the
    identifications of the datagrams (or fragments) sent."""

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
        self._ident = first_id
        self._reschedule = reschedule
        #: Interface -> {IP protocol: handler(iface, header, payload, raw,
        #: verify) -> bool}: packets to addresses not ours arriving there go
        #: to the handler first (forwarders, as gVisor's tcp.Forwarder);
        #: False when it does not take one. Empty unless a forwarder is open.
        self.intercepts: dict[Any, dict[int, Callable]] = {}


_CHECKSUM_OFFSET = {PROTO_TCP: 16, PROTO_UDP: 6}


def with_transport_checksum(src, dst, protocol: int, payload) -> bytes:
    """A TCP or UDP payload with its checksum filled in (RFC 9293 3.1, RFC
    768, RFC 8200 8.1): for one built for an offload link that leaves the
    network layer by another way (forwarded, or fragmented)."""
    offset = _CHECKSUM_OFFSET.get(protocol)
    if offset is None or len(payload) < offset + 2:
        return payload
    data = bytearray(payload)
    data[offset:offset + 2] = b"\0\0"
    checksum = internet_checksum(data, pseudo_header_sum(src, dst, protocol, len(data)))
    if protocol == PROTO_UDP and checksum == 0:
        checksum = 0xFFFF
    data[offset:offset + 2] = checksum.to_bytes(2, "big")
    return bytes(data)
