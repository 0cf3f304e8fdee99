"""ARP for IPv4 over Ethernet (RFC 826)."""

import struct
from ipaddress import IPv4Address

import attrs

from .errors import WireError

ARP_REQUEST = 1
ARP_REPLY = 2
ARP_PACKET_LEN = 28

_HTYPE_ETHERNET = 1
_PTYPE_IPV4 = 0x0800
# hardware type, protocol type, hlen, plen: the only combination we speak.
_FIXED = struct.Struct("!HHBB")
_ETH_IPV4_PREFIX = _FIXED.pack(_HTYPE_ETHERNET, _PTYPE_IPV4, 6, 4)
_ARP = struct.Struct("!6sH6sI6sI")  # the prefix above, op, addresses


@attrs.frozen(slots=True)
class ArpPacket:
    operation: int
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address

    def build(self) -> bytes:
        """The 28-byte packet (an Ethernet frame pads it to 46 bytes if the
        link wants; RFC 826 lets receivers ignore the padding)."""
        if len(self.sender_mac) != 6 or len(self.target_mac) != 6:
            raise ValueError("MAC addresses must be 6 bytes")
        try:
            return _ARP.pack(
                _ETH_IPV4_PREFIX, self.operation, self.sender_mac, int(self.sender_ip),
                self.target_mac, int(self.target_ip))
        except struct.error:
            raise ValueError(f"bad ARP operation {self.operation!r}") from None


def parse_arp(data) -> ArpPacket:
    """Parse an Ethernet/IPv4 ARP packet; trailing padding is ignored."""
    n = len(data)
    if n < 6:
        raise WireError("arp.truncated")
    # RFC 826: check hardware and protocol space (and their address lengths)
    # before reading addresses whose layout they define.
    if data[:6] != _ETH_IPV4_PREFIX:
        raise WireError("arp.unsupported")
    if n < ARP_PACKET_LEN:
        raise WireError("arp.truncated")
    _, op, sha, spa, tha, tpa = _ARP.unpack_from(data)
    if op != ARP_REQUEST and op != ARP_REPLY:
        raise WireError("arp.bad_operation", str(op))
    return ArpPacket(op, sha, IPv4Address(spa), tha, IPv4Address(tpa))
