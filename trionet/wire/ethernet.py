"""Ethernet II framing (IEEE 802.3 with an EtherType, RFC 894) and MAC helpers.

Frames carry no preamble and no FCS: links hand us what a TAP device does.
"""

import os
import random
import struct

import attrs

from .errors import WireError

ETH_HEADER_LEN = 14
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
BROADCAST_MAC = b"\xff" * 6

_ETH = struct.Struct("!6s6sH")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@attrs.frozen(slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    #: 802.1Q tagged frames show up as 0x8100; the stack drops what it does
    #: not know.
    ethertype: int


def parse_ethernet(frame) -> tuple[EthernetHeader, memoryview]:
    """Split a frame into its header and a zero-copy view of the payload.

    The payload includes any padding up to the 60-byte minimum frame; the
    layer above trims it by its own length field.
    """
    if len(frame) < ETH_HEADER_LEN:
        raise WireError("ethernet.truncated")
    dst, src, ethertype = _ETH.unpack_from(frame)
    return EthernetHeader(dst, src, ethertype), memoryview(frame)[ETH_HEADER_LEN:]


def build_ethernet(dst: bytes, src: bytes, ethertype: int, payload) -> bytes:
    # struct's "6s" would silently pad or cut a wrong-sized address.
    if len(dst) != 6 or len(src) != 6:
        raise ValueError("MAC addresses must be 6 bytes")
    try:
        return _ETH.pack(dst, src, ethertype) + payload
    except struct.error:
        raise ValueError(f"bad ethertype {ethertype!r}") from None


def mac_from_str(text: str) -> bytes:
    """``"02:00:00:00:00:01"`` (or with ``-`` separators) to 6 bytes."""
    sep = ":" if ":" in text else "-"
    parts = text.split(sep)
    if len(parts) != 6 or any(len(p) != 2 or not _HEX_DIGITS.issuperset(p) for p in parts):
        raise ValueError(f"bad MAC address {text!r}")
    return bytes.fromhex("".join(parts))


def mac_to_str(mac: bytes) -> str:
    """6 bytes to the lowercase colon form, ``"02:00:00:00:00:01"``."""
    if len(mac) != 6:
        raise ValueError(f"bad MAC address {bytes(mac)!r}")
    return bytes(mac).hex(":")


def random_local_mac(rng: random.Random | None = None) -> bytes:
    """A random locally administered unicast address (IEEE 802: bit 0x02 of
    the first octet set, group bit 0x01 clear)."""
    raw = bytearray(rng.randbytes(6) if rng is not None else os.urandom(6))
    raw[0] = (raw[0] | 0x02) & 0xFE
    return bytes(raw)


def is_multicast_mac(mac) -> bool:
    """True for group addresses (first octet's low bit), broadcast included."""
    return bool(mac[0] & 0x01)
