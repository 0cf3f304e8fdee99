"""Internet checksum (RFC 1071) without a Python loop over words.

A big integer read big-endian is a polynomial in 2**16; since 2**16 == 1
(mod 0xFFFF), the integer mod 0xFFFF is the ones'-complement sum of its 16-bit
words, computed in C.
"""

from ipaddress import IPv4Address, IPv6Address


def ones_complement_sum(data, initial: int = 0) -> int:
    """Ones'-complement sum of ``data`` (odd length padded with a zero byte)
    plus ``initial``, folded to 16 bits. Returns 0xFFFF rather than 0 for a
    non-zero sum ("negative zero"), so a valid packet sums to 0xFFFF."""
    # Read little-endian (faster in CPython): each word then comes byte-swapped,
    # which multiplies it by 2**8 modulo 0xFFFF (RFC 1071 2(B), byte order
    # independence), so shifting the sum by 8 restores the big-endian one. An
    # odd last byte lands in the low half of its word, as the zero pad wants.
    value = int.from_bytes(data, "little")
    total = (((value % 0xFFFF) << 8) + initial) % 0xFFFF
    if total == 0 and (value or initial):
        return 0xFFFF
    return total


def internet_checksum(data, initial: int = 0) -> int:
    """The 16-bit field to store: complement of the ones'-complement sum."""
    return ~ones_complement_sum(data, initial) & 0xFFFF


def pseudo_header_sum(src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address,
                      protocol: int, length: int) -> int:
    """Sum of the pseudo-header for TCP/UDP checksums: RFC 9293 3.1 (IPv4)
    and RFC 8200 8.1 (IPv6). Added as ``initial`` to the segment's sum."""
    # An address read as one big-endian integer is congruent (mod 0xFFFF) to
    # the sum of its 16-bit words, so int() serves as well as the bytes.
    return (int(src) + int(dst) + protocol + length) % 0xFFFF
