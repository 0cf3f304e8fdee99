"""ICMP for IPv4 (RFC 792, host rules in RFC 1122 3.2.2)."""

import struct

import attrs

from .checksum import internet_checksum, ones_complement_sum
from .errors import WireError

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACHABLE = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETER_PROBLEM = 12

UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4
TIME_EXCEEDED_TTL = 0
TIME_EXCEEDED_REASSEMBLY = 1

ICMP_HEADER_LEN = 8

# Destination unreachable, source quench, redirect, time exceeded, parameter
# problem: the error messages of RFC 792 (RFC 1122 3.2.2).
_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))

# type, code, checksum, rest of header
_ICMP = struct.Struct("!BBHI")


class EchoFields:
    """Echo identifier and sequence number: the two halves of ``rest``, in
    ICMP (RFC 792) as in ICMPv6 (RFC 4443 4.1)."""

    __slots__ = ()
    rest: int

    @property
    def identifier(self) -> int:
        return self.rest >> 16

    @property
    def sequence(self) -> int:
        return self.rest & 0xFFFF


@attrs.frozen(slots=True)
class IcmpMessage(EchoFields):
    type: int
    code: int
    #: The 32-bit word after the checksum ("rest of header").
    rest: int = 0
    payload: bytes = b""

    @property
    def next_hop_mtu(self) -> int:
        """Fragmentation needed: the low 16 bits of rest (RFC 1191 4)."""
        return self.rest & 0xFFFF

    @property
    def pointer(self) -> int:
        """Parameter problem: the octet the error points at (RFC 792)."""
        return self.rest >> 24

    @property
    def is_error(self) -> bool:
        return self.type in _ERROR_TYPES

    @classmethod
    def echo_request(cls, identifier: int, sequence: int, payload=b"") -> "IcmpMessage":
        return cls(ICMP_ECHO_REQUEST, 0, _echo_rest(identifier, sequence), payload)

    @classmethod
    def echo_reply(cls, identifier: int, sequence: int, payload=b"") -> "IcmpMessage":
        # RFC 1122 3.2.2.6: the reply returns identifier, sequence and data.
        return cls(ICMP_ECHO_REPLY, 0, _echo_rest(identifier, sequence), payload)

    @classmethod
    def error(cls, type: int, code: int, quoted: bytes, next_hop_mtu: int = 0, *,
              pointer: int = 0) -> "IcmpMessage":
        """An error message quoting ``quoted`` (see ``ipv4.quote_for_icmp``).
        ``pointer`` is for parameter problem (type 12)."""
        if not (0 <= next_hop_mtu <= 0xFFFF and 0 <= pointer <= 0xFF):
            raise ValueError("next_hop_mtu or pointer out of range")
        return cls(type, code, (pointer << 24) | next_hop_mtu, quoted)


def _echo_rest(identifier: int, sequence: int) -> int:
    if not (0 <= identifier <= 0xFFFF and 0 <= sequence <= 0xFFFF):
        raise ValueError("echo identifier and sequence must fit in 16 bits")
    return (identifier << 16) | sequence


def parse_icmpv4(data, *, verify_checksum: bool = True) -> IcmpMessage:
    """Parse one message (the whole IPv4 payload); ``payload`` is a
    zero-copy view of everything after the 8-byte header."""
    if len(data) < ICMP_HEADER_LEN:
        raise WireError("icmp.truncated")
    type_, code, _csum, rest = _ICMP.unpack_from(data)
    mv = memoryview(data)
    # RFC 792: the checksum covers the whole message.
    if verify_checksum and ones_complement_sum(mv) != 0xFFFF:
        raise WireError("icmp.bad_checksum")
    return IcmpMessage(type_, code, rest, mv[ICMP_HEADER_LEN:])


def build_icmpv4(msg: IcmpMessage) -> bytes:
    type_, code, rest, payload = msg.type, msg.code, msg.rest, msg.payload
    try:
        # Header words (checksum field zero) are added to the payload's sum
        # instead of concatenating first.
        csum = internet_checksum(payload, ((type_ << 8) | code) + rest)
        return _ICMP.pack(type_, code, csum, rest) + payload
    except struct.error as exc:
        raise ValueError(f"bad icmp field: {exc}") from None
