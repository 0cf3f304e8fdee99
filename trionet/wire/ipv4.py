"""IPv4 header (RFC 791, with the host rules of RFC 1122 3.2.1)."""

import struct
from ipaddress import IPv4Address

import attrs

from .checksum import internet_checksum, ones_complement_sum
from .errors import WireError
from .fast import slot_constructor

IPV4_MIN_HEADER_LEN = 20
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

_MAX_TOTAL_LEN = 0xFFFF
_MAX_OPTIONS_LEN = 40  # IHL is 4 bits: at most 60 header bytes (RFC 791 3.1)
_FLAG_DF = 0x4000
_FLAG_MF = 0x2000
_OFFSET_MASK = 0x1FFF

# version/IHL, TOS, total length, identification, flags/fragment offset,
# TTL, protocol, header checksum, source, destination.
_IPV4 = struct.Struct("!BBHHHBBHII")


@attrs.frozen(slots=True)
class IPv4Header:
    src: IPv4Address
    dst: IPv4Address
    protocol: int
    ttl: int = 64
    identification: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    #: In bytes, always a multiple of 8 (the wire field counts 8-byte units).
    fragment_offset: int = 0
    tos: int = 0
    #: Raw option bytes, not interpreted; padded with zeros when built.
    options: bytes = b""

    @property
    def header_length(self) -> int:
        return IPV4_MIN_HEADER_LEN + ((len(self.options) + 3) & ~3)

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.fragment_offset != 0


# The per-datagram constructors (``fast.py``): the same objects, less work.
_parsed_header = slot_constructor(IPv4Header)


def _address(value: int, _new=object.__new__, _cls=IPv4Address) -> IPv4Address:
    """``IPv4Address(value)`` without its range check (a 32-bit field is
    always in range)."""
    a = _new(_cls)
    a._ip = value
    return a


def parse_ipv4(data, *, verify_checksum: bool = True) -> tuple[IPv4Header, memoryview]:
    """Parse a datagram; the payload view ends at the total length, so any
    link-layer padding after it is dropped."""
    n = len(data)
    if n < IPV4_MIN_HEADER_LEN:
        raise WireError("ipv4.truncated")
    (ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, _csum,
     src, dst) = _IPV4.unpack_from(data)
    if ver_ihl >> 4 != 4:
        raise WireError("ipv4.bad_version", str(ver_ihl >> 4))
    hlen = (ver_ihl & 0x0F) << 2
    if hlen < IPV4_MIN_HEADER_LEN:
        raise WireError("ipv4.bad_header_length", str(hlen))
    if n < hlen:
        raise WireError("ipv4.truncated")
    if total_length < hlen:
        raise WireError("ipv4.bad_total_length", str(total_length))
    if total_length > n:
        raise WireError("ipv4.truncated")
    mv = memoryview(data)
    # RFC 1122 3.2.1.2: silently discard a datagram whose checksum fails.
    if verify_checksum and ones_complement_sum(mv[:hlen]) != 0xFFFF:
        raise WireError("ipv4.bad_checksum")
    frag_offset = (flags_frag & _OFFSET_MASK) << 3
    # The last fragment must not reach past the 65535-byte datagram limit.
    if frag_offset and frag_offset + total_length - hlen > _MAX_TOTAL_LEN:
        raise WireError("ipv4.bad_fragment")
    # The reserved flag bit (RFC 791 3.1, "must be zero") is ignored.
    header = _parsed_header(
        _address(src), _address(dst), proto, ttl, ident,
        bool(flags_frag & _FLAG_DF), bool(flags_frag & _FLAG_MF), frag_offset, tos,
        bytes(mv[IPV4_MIN_HEADER_LEN:hlen]) if hlen > IPV4_MIN_HEADER_LEN else b"")
    return header, mv[hlen:total_length]


def build_ipv4(header: IPv4Header, payload, *, compute_checksum: bool = True) -> bytes:
    options = header.options
    if options:
        if len(options) > _MAX_OPTIONS_LEN:
            raise ValueError("ipv4 options too long")
        # RFC 791 3.1: the header is padded with zeros to a 32-bit boundary.
        options = bytes(options) + b"\0" * (-len(options) & 3)
    hlen = IPV4_MIN_HEADER_LEN + len(options)
    total_length = hlen + len(payload)
    if total_length > _MAX_TOTAL_LEN:
        raise ValueError("ipv4 packet too long")
    frag = header.fragment_offset
    if frag and (frag & 7 or not 0 < frag <= _OFFSET_MASK << 3):
        raise ValueError(f"bad ipv4 fragment offset {frag!r}")
    flags_frag = frag >> 3
    if header.dont_fragment:
        flags_frag |= _FLAG_DF
    if header.more_fragments:
        flags_frag |= _FLAG_MF
    vihl = 0x40 | (hlen >> 2)
    src = int(header.src)
    dst = int(header.dst)
    try:
        raw = _IPV4.pack(vihl, header.tos, total_length, header.identification, flags_frag,
                         header.ttl, header.protocol, 0, src, dst)
        if options:
            raw += options
        if compute_checksum:
            raw = _IPV4.pack(vihl, header.tos, total_length, header.identification, flags_frag,
                             header.ttl, header.protocol, internet_checksum(raw), src, dst
                             ) + options
    except struct.error as exc:
        raise ValueError(f"bad ipv4 header field: {exc}") from None
    return raw + payload


def build_ipv4_plain(src, dst, protocol: int, identification: int, payload, *, ttl: int = 64,
                     dont_fragment: bool = False, compute_checksum: bool = True) -> bytes:
    """``build_ipv4`` for the common case, without an ``IPv4Header``: no
    options, not a fragment, TOS 0 (the per-packet output path)."""
    total_length = IPV4_MIN_HEADER_LEN + len(payload)
    if total_length > _MAX_TOTAL_LEN:
        raise ValueError("ipv4 packet too long")
    flags_frag = _FLAG_DF if dont_fragment else 0
    src = int(src)
    dst = int(dst)
    try:
        if compute_checksum:
            raw = _IPV4.pack(0x45, 0, total_length, identification, flags_frag, ttl, protocol, 0,
                             src, dst)
            raw = _IPV4.pack(0x45, 0, total_length, identification, flags_frag, ttl, protocol,
                             internet_checksum(raw), src, dst)
        else:
            raw = _IPV4.pack(0x45, 0, total_length, identification, flags_frag, ttl, protocol, 0,
                             src, dst)
    except struct.error as exc:
        raise ValueError(f"bad ipv4 header field: {exc}") from None
    return raw + payload


def parse_ipv4_quote(data) -> tuple[IPv4Header, memoryview, int]:
    """The datagram an ICMP error quotes (RFC 792: its IP header and at
    least 8 bytes of its payload): (header, the quoted payload bytes, the
    original total length). The quote is cut short by design, so the total
    length is not checked against it, nor the header checksum (RFC 1812
    4.3.2.3 lets routers change the datagram after sending it)."""
    n = len(data)
    if n < IPV4_MIN_HEADER_LEN:
        raise WireError("icmp.bad_quote", "shorter than an IPv4 header")
    (ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, _csum,
     src, dst) = _IPV4.unpack_from(data)
    hlen = (ver_ihl & 0x0F) << 2
    if ver_ihl >> 4 != 4 or hlen < IPV4_MIN_HEADER_LEN or n < hlen + 8:
        raise WireError("icmp.bad_quote", "not an IPv4 header with 8 payload bytes")
    mv = memoryview(data)
    header = IPv4Header(
        IPv4Address(src), IPv4Address(dst), proto, ttl, ident,
        bool(flags_frag & _FLAG_DF), bool(flags_frag & _FLAG_MF),
        (flags_frag & _OFFSET_MASK) << 3, tos,
        bytes(mv[IPV4_MIN_HEADER_LEN:hlen]) if hlen > IPV4_MIN_HEADER_LEN else b"")
    return header, mv[hlen:], total_length


def quote_for_icmp(packet) -> bytes:
    """What an ICMP error carries: the offending datagram's IP header plus
    the first 8 bytes of its payload (RFC 792), clamped to the bytes that
    exist. Never raises, whatever ``packet`` holds."""
    n = len(packet)
    if n == 0:
        return b""
    end = ((packet[0] & 0x0F) << 2) + 8
    if n >= 4:
        # Stop at the total length so that link padding is not quoted.
        total_length = (packet[2] << 8) | packet[3]
        if IPV4_MIN_HEADER_LEN <= total_length < end:
            end = total_length
    return bytes(packet[:end])
