"""The Internet checksum (RFC 1071) against a plain word-by-word sum."""

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, strategies as st

from trionet.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_sum


def reference_sum(data: bytes, initial: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@given(st.binary(max_size=200), st.integers(0, 0x3FFFF))
def test_ones_complement_sum_matches_word_sum(data, initial):
    got = ones_complement_sum(data, initial)
    want = reference_sum(data, initial)
    # 0 and 0xFFFF are the same number in ones' complement; a non-zero input
    # gives 0xFFFF ("negative zero"), all-zero input 0.
    if want in (0, 0xFFFF):
        assert got == (0xFFFF if (initial or any(data)) else 0)
    else:
        assert got == want
    assert ones_complement_sum(memoryview(data), initial) == got


def test_rfc1071_example():
    # RFC 1071 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (ones' complement).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


@given(st.binary(max_size=64).map(lambda b: b + b"\0" * (len(b) % 2)))
def test_checksum_of_data_with_its_checksum_verifies(data):
    field = internet_checksum(data)
    assert ones_complement_sum(data + field.to_bytes(2, "big")) == 0xFFFF


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 255),
       st.integers(0, 0xFFFF))
def test_pseudo_header_sum_matches_packed_words(src, dst, protocol, length):
    a, b = IPv4Address(src), IPv4Address(dst)
    words = a.packed + b.packed + bytes((0, protocol)) + length.to_bytes(2, "big")
    assert pseudo_header_sum(a, b, protocol, length) % 0xFFFF == reference_sum(words) % 0xFFFF
    a6, b6 = IPv6Address(src << 64), IPv6Address(dst)
    words6 = a6.packed + b6.packed + length.to_bytes(4, "big") + bytes((0, 0, 0, protocol))
    assert pseudo_header_sum(a6, b6, protocol, length) % 0xFFFF == reference_sum(words6) % 0xFFFF
