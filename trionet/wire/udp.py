"""UDP header (RFC 768), over IPv4 or IPv6."""

import struct
from ipaddress import IPv4Address, IPv6Address

import attrs

from .checksum import ones_complement_sum, pseudo_header_sum
from .errors import WireError

UDP_HEADER_LEN = 8

_PROTO_UDP = 17
_MAX_LEN = 0xFFFF
# source port, destination port, length, checksum
_UDP = struct.Struct("!HHHH")


@attrs.frozen(slots=True)
class UdpHeader:
    src_port: int
    dst_port: int


def parse_udp(data, src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, *,
              verify_checksum: bool = True) -> tuple[UdpHeader, memoryview]:
    """Parse a datagram sent from ``src`` to ``dst`` (for the pseudo-header);
    the payload view ends at the UDP length field."""
    n = len(data)
    if n < UDP_HEADER_LEN:
        raise WireError("udp.truncated")
    src_port, dst_port, length, csum = _UDP.unpack_from(data)
    if length < UDP_HEADER_LEN:
        raise WireError("udp.bad_length", str(length))
    if length > n:
        raise WireError("udp.truncated")
    mv = memoryview(data)
    if verify_checksum:
        if csum == 0:
            # RFC 768: zero means the sender computed none (IPv4 only);
            # RFC 8200 8.1: over IPv6 a zero checksum is discarded.
            if dst.version == 6:
                raise WireError("udp.zero_checksum")
        elif ones_complement_sum(mv[:length],
                                 pseudo_header_sum(src, dst, _PROTO_UDP, length)) != 0xFFFF:
            raise WireError("udp.bad_checksum")
    return UdpHeader(src_port, dst_port), mv[UDP_HEADER_LEN:length]


def build_udp(src_port: int, dst_port: int, payload, src: IPv4Address | IPv6Address,
              dst: IPv4Address | IPv6Address, *, compute_checksum: bool = True) -> bytes:
    length = UDP_HEADER_LEN + len(payload)
    if length > _MAX_LEN:
        raise ValueError("udp datagram too long")
    csum = 0
    if compute_checksum:
        # The header words (checksum zero) join the pseudo-header sum, so the
        # payload need not be copied before summing.
        csum = ~ones_complement_sum(
            payload, pseudo_header_sum(src, dst, _PROTO_UDP, length)
            + src_port + dst_port + length) & 0xFFFF
        # RFC 768: a computed zero is sent as all ones; zero means "none".
        if csum == 0:
            csum = 0xFFFF
    try:
        return _UDP.pack(src_port, dst_port, length, csum) + payload
    except struct.error:
        raise ValueError(f"udp port out of range: {src_port!r}, {dst_port!r}") from None
