"""IPv4 (RFC 791), ICMPv4 (RFC 792) and UDP (RFC 768) parse/build."""

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from trionet.wire import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_PARAMETER_PROBLEM,
    ICMP_TIME_EXCEEDED,
    PROTO_ICMP,
    PROTO_UDP,
    TIME_EXCEEDED_TTL,
    UDP_HEADER_LEN,
    UNREACH_FRAG_NEEDED,
    UNREACH_PORT,
    IcmpMessage,
    IPv4Header,
    UdpHeader,
    WireError,
    build_ethernet,
    build_icmpv4,
    build_ipv4,
    build_ipv4_plain,
    build_udp,
    internet_checksum,
    parse_ethernet,
    parse_icmpv4,
    parse_ipv4,
    parse_udp,
    quote_for_icmp,
)


def frame(*lines: str) -> bytes:
    return bytes.fromhex("".join(lines))


LOCALHOST = IPv4Address("127.0.0.1")

# Captured with ``tcpdump -i lo -xx`` (loopback frames carry an all-zero
# Ethernet header): ``ping -c1 -p 7472696f6e6574 127.0.0.1``.
ECHO_REQUEST_FRAME = frame(
    "0000 0000 0000 0000 0000 0000 0800 4500",
    "0054 7677 4000 4001 c62f 7f00 0001 7f00",
    "0001 0800 47f0 0eae 0001 1644 016b 0000",
    "0000 e30b 0300 0000 0000 696f 6e65 7474",
    "7269 6f6e 6574 7472 696f 6e65 7474 7269",
    "6f6e 6574 7472 696f 6e65 7474 7269 6f6e",
    "6574")
ECHO_REPLY_FRAME = frame(
    "0000 0000 0000 0000 0000 0000 0800 4500",
    "0054 7678 0000 4001 062f 7f00 0001 7f00",
    "0001 0000 4ff0 0eae 0001 1644 016b 0000",
    "0000 e30b 0300 0000 0000 696f 6e65 7474",
    "7269 6f6e 6574 7472 696f 6e65 7474 7269",
    "6f6e 6574 7472 696f 6e65 7474 7269 6f6e",
    "6574")
# ``ping -c1 -R -s 8 127.0.0.1``: a 40-byte options area (NOP, record route).
RR_ECHO_REQUEST_FRAME = frame(
    "0000 0000 0000 0000 0000 0000 0800 4f00",
    "004c 78c2 4000 4001 12dc 7f00 0001 7f00",
    "0001 0107 2708 7f00 0001 0000 0000 0000",
    "0000 0000 0000 0000 0000 0000 0000 0000",
    "0000 0000 0000 0000 0000 0800 dd29 0ec5",
    "0001 0001 0203 0405 0607")
RR_ECHO_REPLY_FRAME = frame(
    "0000 0000 0000 0000 0000 0000 0800 4f00",
    "004c 78c3 0000 4001 de47 7f00 0001 7f00",
    "0001 0727 107f 0000 017f 0000 017f 0000",
    "0100 0000 0000 0000 0000 0000 0000 0000",
    "0000 0000 0000 0000 0000 0000 e529 0ec5",
    "0001 0001 0203 0405 0607")
# A UDP datagram to a closed port on lo, and the kernel's port unreachable.
# lo offloads the UDP checksum, so the field holds only the partial
# (pseudo-header) sum: it does not verify.
LO_UDP_FRAME = frame(
    "0000 0000 0000 0000 0000 0000 0800 4500",
    "0027 dc35 4000 4011 608e 7f00 0001 7f00",
    "0001 9c42 9c43 0013 fe26 6e6f 626f 6479",
    "2068 6f6d 65")
PORT_UNREACHABLE_FRAME = frame(
    "0000 0000 0000 0000 0000 0000 0800 45c0",
    "0043 78c0 0000 4001 0338 7f00 0001 7f00",
    "0001 0303 9c0e 0000 0000 4500 0027 dc35",
    "4000 4011 608e 7f00 0001 7f00 0001 9c42",
    "9c43 0013 fe26 6e6f 626f 6479 2068 6f6d",
    "65")
# Full checksums: read from a TAP device (no checksum offload) in a throwaway
# namespace, 10.99.1.1 / fd00:99::1 at 02:00:00:00:00:01 sending to port 53
# of 10.99.1.2 / fd00:99::2 at 02:00:00:00:00:02.
TAP_UDP4_FRAME = frame(
    "020000000002 020000000001 0800",
    "4500 0029 ce7f 4000 4011 557c 0a63 0101 0a63 0102",
    "9c40 0035 0015 484c 6865 6c6c 6f20 7472 696f 6e65 74")
TAP_UDP4_EMPTY_FRAME = frame(
    "020000000002 020000000001 0800",
    "4500 001c ce80 4000 4011 5588 0a63 0101 0a63 0102",
    "9c40 0035 0008 4ca0")
TAP_UDP6_FRAME = frame(
    "020000000002 020000000001 86dd",
    "6009 0941 0015 1140",
    "fd00 0099 0000 0000 0000 0000 0000 0001",
    "fd00 0099 0000 0000 0000 0000 0000 0002",
    "9c40 0035 0015 63de 6865 6c6c 6f20 7472 696f 6e65 74")

ICMP_CAPTURES = [ECHO_REQUEST_FRAME, ECHO_REPLY_FRAME, RR_ECHO_REQUEST_FRAME,
                 RR_ECHO_REPLY_FRAME, PORT_UNREACHABLE_FRAME]
IPV4_CAPTURES = ICMP_CAPTURES + [LO_UDP_FRAME, TAP_UDP4_FRAME, TAP_UDP4_EMPTY_FRAME]

# --- strategies ---------------------------------------------------------------

ipv4_addrs = st.integers(0, 2**32 - 1).map(IPv4Address)
ipv6_addrs = st.integers(0, 2**128 - 1).map(IPv6Address)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
buffer_types = st.sampled_from([bytes, bytearray, lambda b: memoryview(bytes(b))])


@st.composite
def ipv4_headers(draw):
    return IPv4Header(
        src=draw(ipv4_addrs), dst=draw(ipv4_addrs), protocol=draw(u8), ttl=draw(u8),
        identification=draw(u16), dont_fragment=draw(st.booleans()),
        more_fragments=draw(st.booleans()),
        fragment_offset=draw(st.one_of(st.just(0), st.integers(0, 0x1FFF).map(lambda n: n * 8))),
        tos=draw(u8), options=draw(st.one_of(st.just(b""), st.binary(max_size=40))))


icmp_messages = st.builds(IcmpMessage, u8, u8, st.integers(0, 2**32 - 1), st.binary(max_size=600))
udp_endpoints = st.one_of(st.tuples(ipv4_addrs, ipv4_addrs), st.tuples(ipv6_addrs, ipv6_addrs))


def padded(options: bytes) -> bytes:
    return options + bytes(-len(options) % 4)


def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def ip_payload(eth_frame: bytes) -> memoryview:
    return parse_ipv4(parse_ethernet(eth_frame)[1])[1]


def ipv6_addresses_and_payload(eth_frame: bytes):
    """The fixed IPv6 header read by hand (no extension headers here)."""
    packet = eth_frame[14:]
    assert packet[0] >> 4 == 6
    length = int.from_bytes(packet[4:6], "big")
    return IPv6Address(packet[8:24]), IPv6Address(packet[24:40]), packet[6], packet[40:40 + length]


# --- captured IPv4 + ICMP -----------------------------------------------------

def test_captured_echo_request():
    eth, packet = parse_ethernet(ECHO_REQUEST_FRAME)
    assert eth.ethertype == ETHERTYPE_IPV4
    ip, payload = parse_ipv4(packet)
    assert ip == IPv4Header(LOCALHOST, LOCALHOST, PROTO_ICMP, ttl=64, identification=0x7677,
                            dont_fragment=True)
    assert ip.header_length == 20 and not ip.is_fragment
    assert isinstance(payload, memoryview) and payload.obj is ECHO_REQUEST_FRAME
    assert len(payload) == 64
    icmp = parse_icmpv4(payload)
    assert (icmp.type, icmp.code) == (ICMP_ECHO_REQUEST, 0)
    assert icmp.identifier == 3758 and icmp.sequence == 1
    assert not icmp.is_error
    assert len(icmp.payload) == 56
    assert bytes(icmp.payload).endswith(b"trionettrionet")
    assert build_icmpv4(icmp) == bytes(payload)
    assert build_ipv4(ip, build_icmpv4(icmp)) == bytes(packet)
    assert build_ethernet(eth.dst, eth.src, eth.ethertype,
                          build_ipv4(ip, payload)) == ECHO_REQUEST_FRAME


def test_captured_echo_reply_matches_our_reply():
    request = parse_icmpv4(ip_payload(ECHO_REQUEST_FRAME))
    ip, payload = parse_ipv4(parse_ethernet(ECHO_REPLY_FRAME)[1])
    assert ip.identification == 0x7678 and not ip.dont_fragment
    reply = parse_icmpv4(payload)
    assert reply.type == ICMP_ECHO_REPLY
    # RFC 1122 3.2.2.6: same identifier, sequence and data as the request.
    ours = IcmpMessage.echo_reply(request.identifier, request.sequence, request.payload)
    assert ours == reply
    assert build_icmpv4(ours) == bytes(payload)
    assert build_ipv4(IPv4Header(LOCALHOST, LOCALHOST, PROTO_ICMP, identification=0x7678),
                      build_icmpv4(ours)) == ECHO_REPLY_FRAME[14:]


@pytest.mark.parametrize("eth_frame, ident, df, icmp_type", [
    (RR_ECHO_REQUEST_FRAME, 0x78C2, True, ICMP_ECHO_REQUEST),
    (RR_ECHO_REPLY_FRAME, 0x78C3, False, ICMP_ECHO_REPLY),
])
def test_captured_packets_with_options(eth_frame, ident, df, icmp_type):
    packet = eth_frame[14:]
    ip, payload = parse_ipv4(packet)
    assert ip.header_length == 60
    assert ip.options == packet[20:60]
    assert ip.options[0] in (0x01, 0x07)  # NOP or record route (RFC 791 3.1)
    assert (ip.identification, ip.dont_fragment, ip.protocol) == (ident, df, PROTO_ICMP)
    icmp = parse_icmpv4(payload)
    assert icmp.type == icmp_type
    assert (icmp.identifier, icmp.sequence) == (3781, 1)
    assert icmp.payload == bytes(range(8))
    assert build_ipv4(ip, payload) == packet
    assert build_icmpv4(icmp) == bytes(payload)
    # Built from the meaning of the fields rather than from the parse.
    ours = IcmpMessage.echo_request(3781, 1, bytes(range(8))) if icmp_type == ICMP_ECHO_REQUEST \
        else IcmpMessage.echo_reply(3781, 1, bytes(range(8)))
    assert build_icmpv4(ours) == bytes(payload)


def test_captured_port_unreachable():
    original = LO_UDP_FRAME[14:]
    ip, payload = parse_ipv4(parse_ethernet(PORT_UNREACHABLE_FRAME)[1])
    assert ip.tos == 0xC0  # internetwork control precedence
    assert (ip.identification, ip.dont_fragment, ip.ttl) == (0x78C0, False, 64)
    icmp = parse_icmpv4(payload)
    assert (icmp.type, icmp.code, icmp.rest) == (ICMP_DEST_UNREACHABLE, UNREACH_PORT, 0)
    assert icmp.is_error
    # Linux quotes the whole small datagram; RFC 792 asks for at least the
    # header and 8 bytes, which is what quote_for_icmp takes.
    assert icmp.payload == original
    assert quote_for_icmp(original) == original[:28]
    assert build_icmpv4(IcmpMessage.error(ICMP_DEST_UNREACHABLE, UNREACH_PORT, original)) \
        == bytes(payload)
    # The quote is parseable as the offending datagram's headers.
    quoted_ip, quoted = parse_ipv4(original)
    assert quoted_ip.protocol == PROTO_UDP
    hdr, _ = parse_udp(quoted, quoted_ip.src, quoted_ip.dst, verify_checksum=False)
    assert hdr == UdpHeader(40002, 40003)


# --- captured UDP --------------------------------------------------------------

def test_captured_udp4():
    eth, packet = parse_ethernet(TAP_UDP4_FRAME)
    ip, payload = parse_ipv4(packet)
    assert ip == IPv4Header(IPv4Address("10.99.1.1"), IPv4Address("10.99.1.2"), PROTO_UDP,
                            identification=0xCE7F, dont_fragment=True)
    udp, data = parse_udp(payload, ip.src, ip.dst)
    assert udp == UdpHeader(40000, 53)
    assert data == b"hello trionet"
    assert isinstance(data, memoryview) and data.obj is TAP_UDP4_FRAME
    built = build_udp(40000, 53, b"hello trionet", ip.src, ip.dst)
    assert built == bytes(payload)
    assert build_ethernet(eth.dst, eth.src, ETHERTYPE_IPV4, build_ipv4(ip, built)) \
        == TAP_UDP4_FRAME


def test_captured_udp4_empty():
    ip, payload = parse_ipv4(TAP_UDP4_EMPTY_FRAME[14:])
    udp, data = parse_udp(payload, ip.src, ip.dst)
    assert udp == UdpHeader(40000, 53) and len(data) == 0
    assert build_udp(40000, 53, b"", ip.src, ip.dst) == bytes(payload)
    assert build_ipv4(ip, payload) == TAP_UDP4_EMPTY_FRAME[14:]


def test_captured_udp6():
    eth, _ = parse_ethernet(TAP_UDP6_FRAME)
    assert eth.ethertype == ETHERTYPE_IPV6
    src, dst, next_header, segment = ipv6_addresses_and_payload(TAP_UDP6_FRAME)
    assert next_header == PROTO_UDP
    udp, data = parse_udp(segment, src, dst)
    assert udp == UdpHeader(40000, 53) and data == b"hello trionet"
    assert build_udp(40000, 53, b"hello trionet", src, dst) == segment
    with pytest.raises(WireError) as info:
        parse_udp(segment, src, IPv6Address("fd00:99::3"))
    assert info.value.reason == "udp.bad_checksum"


def test_captured_offloaded_udp_checksum():
    ip, payload = parse_ipv4(LO_UDP_FRAME[14:])
    with pytest.raises(WireError) as info:
        parse_udp(payload, ip.src, ip.dst)
    assert info.value.reason == "udp.bad_checksum"
    udp, data = parse_udp(payload, ip.src, ip.dst, verify_checksum=False)
    assert udp == UdpHeader(40002, 40003) and data == b"nobody home"
    # What the kernel would have put there had it finished the sum.
    fixed = build_udp(40002, 40003, b"nobody home", ip.src, ip.dst)
    assert fixed[:6] == bytes(payload[:6]) and fixed[8:] == bytes(payload[8:])
    assert parse_udp(fixed, ip.src, ip.dst)[1] == b"nobody home"


# --- bit flips in captures -------------------------------------------------------

@pytest.mark.parametrize("eth_frame", IPV4_CAPTURES)
def test_every_ipv4_header_bit_flip_detected(eth_frame):
    packet = eth_frame[14:]
    hlen = (packet[0] & 0x0F) * 4
    for bit in range(hlen * 8):
        with pytest.raises(WireError) as info:
            parse_ipv4(flipped(packet, bit))
        if bit // 8 not in (0, 2, 3):  # version/IHL and total length may fail earlier
            assert info.value.reason == "ipv4.bad_checksum"
        elif bit < 4:
            assert info.value.reason == "ipv4.bad_version"
        # A flip outside the header is not the header checksum's business.
    if len(packet) > hlen:
        assert parse_ipv4(flipped(packet, hlen * 8))[0] == parse_ipv4(packet)[0]


@pytest.mark.parametrize("eth_frame", ICMP_CAPTURES)
def test_every_icmp_bit_flip_detected(eth_frame):
    message = bytes(ip_payload(eth_frame))
    for bit in range(len(message) * 8):
        with pytest.raises(WireError) as info:
            parse_icmpv4(flipped(message, bit))
        assert info.value.reason == "icmp.bad_checksum"
    # Off by request, for links that vouch for their frames.
    assert parse_icmpv4(flipped(message, 0), verify_checksum=False).type \
        == parse_icmpv4(message).type ^ 0x80


@pytest.mark.parametrize("eth_frame", [TAP_UDP4_FRAME, TAP_UDP4_EMPTY_FRAME, TAP_UDP6_FRAME])
def test_every_udp_bit_flip_detected(eth_frame):
    if eth_frame is TAP_UDP6_FRAME:
        src, dst, _, segment = ipv6_addresses_and_payload(eth_frame)
    else:
        ip, payload = parse_ipv4(eth_frame[14:])
        src, dst, segment = ip.src, ip.dst, bytes(payload)
    for bit in range(len(segment) * 8):
        with pytest.raises(WireError) as info:
            parse_udp(flipped(segment, bit), src, dst)
        if bit // 8 not in (4, 5):  # the length field may fail earlier
            assert info.value.reason == "udp.bad_checksum"
    # The pseudo-header is covered too (RFC 768): both addresses.
    for bit in range(src.max_prefixlen):
        other_src = type(src)(int(src) ^ (1 << bit))
        other_dst = type(dst)(int(dst) ^ (1 << bit))
        for s, d in ((other_src, dst), (src, other_dst)):
            with pytest.raises(WireError) as info:
                parse_udp(segment, s, d)
            assert info.value.reason == "udp.bad_checksum"


@pytest.mark.parametrize("eth_frame", IPV4_CAPTURES)
def test_captured_ipv4_truncated_at_every_length(eth_frame):
    packet = eth_frame[14:]
    for length in range(len(packet)):
        with pytest.raises(WireError) as info:
            parse_ipv4(packet[:length])
        assert info.value.reason == "ipv4.truncated"


@pytest.mark.parametrize("eth_frame", ICMP_CAPTURES)
def test_captured_icmp_truncated_at_every_length(eth_frame):
    message = bytes(ip_payload(eth_frame))
    for length in range(len(message)):
        with pytest.raises(WireError) as info:
            parse_icmpv4(message[:length])
        assert info.value.reason == ("icmp.truncated" if length < 8 else "icmp.bad_checksum")


@pytest.mark.parametrize("eth_frame", [TAP_UDP4_FRAME, TAP_UDP4_EMPTY_FRAME, LO_UDP_FRAME])
def test_captured_udp_truncated_at_every_length(eth_frame):
    ip, payload = parse_ipv4(eth_frame[14:])
    segment = bytes(payload)
    for length in range(len(segment)):
        with pytest.raises(WireError) as info:
            parse_udp(segment[:length], ip.src, ip.dst, verify_checksum=False)
        assert info.value.reason == "udp.truncated"


# --- IPv4 -----------------------------------------------------------------------

@given(ipv4_headers(), st.binary(max_size=1600), st.binary(max_size=30), buffer_types)
def test_ipv4_round_trip(header, payload, link_padding, make):
    raw = build_ipv4(header, payload)
    assert len(raw) == header.header_length + len(payload)
    assert header.header_length == 20 + len(padded(header.options))
    assert internet_checksum(raw[:header.header_length]) == 0
    if header.fragment_offset + len(payload) > 0xFFFF:
        with pytest.raises(WireError) as info:
            parse_ipv4(make(raw))
        assert info.value.reason == "ipv4.bad_fragment"
        return
    parsed, got = parse_ipv4(make(raw + link_padding))  # padding past total length ignored
    assert parsed == IPv4Header(header.src, header.dst, header.protocol, header.ttl,
                                header.identification, header.dont_fragment,
                                header.more_fragments, header.fragment_offset, header.tos,
                                padded(header.options))
    assert parsed.is_fragment == (header.more_fragments or header.fragment_offset != 0)
    assert bytes(got) == payload
    assert build_ipv4(parsed, got) == raw


@given(ipv4_headers(), st.binary(max_size=64))
def test_ipv4_without_checksum(header, payload):
    raw = build_ipv4(header, payload)
    bare = build_ipv4(header, payload, compute_checksum=False)
    assert bare[10:12] == b"\0\0"
    assert bare[:10] == raw[:10] and bare[12:] == raw[12:]
    assume(raw[10:12] != b"\0\0")
    with pytest.raises(WireError) as info:
        parse_ipv4(bare)
    assert info.value.reason == "ipv4.bad_checksum"
    assume(header.fragment_offset + len(payload) <= 0xFFFF)
    assert parse_ipv4(bare, verify_checksum=False)[0] == parse_ipv4(raw)[0]


@given(ipv4_headers(), st.binary(max_size=64), st.data())
def test_ipv4_header_bit_flip_detected(header, payload, data):
    assume(header.fragment_offset + len(payload) <= 0xFFFF)
    raw = build_ipv4(header, payload)
    # Everything but the IHL nibble, whose flips move the end of the header.
    bit = data.draw(st.integers(0, header.header_length * 8 - 1).filter(lambda b: not 4 <= b < 8))
    with pytest.raises(WireError) as info:
        parse_ipv4(flipped(raw, bit))
    if bit < 4:
        assert info.value.reason == "ipv4.bad_version"
    elif bit // 8 not in (2, 3):
        assert info.value.reason == "ipv4.bad_checksum"


@given(ipv4_headers(), st.binary(max_size=64))
def test_ipv4_truncated_at_every_length(header, payload):
    raw = build_ipv4(header, payload)
    for length in range(len(raw)):
        with pytest.raises(WireError) as info:
            parse_ipv4(raw[:length])
        assert info.value.reason == "ipv4.truncated"


def _reason(data, **kwargs):
    with pytest.raises(WireError) as info:
        parse_ipv4(data, **kwargs)
    return info.value.reason


def test_ipv4_rejections():
    good = TAP_UDP4_FRAME[14:]

    def patched(offset, value: bytes):
        out = bytearray(good)
        out[offset:offset + len(value)] = value
        return bytes(out)

    assert _reason(patched(0, b"\x65")) == "ipv4.bad_version"
    assert _reason(patched(0, b"\x05")) == "ipv4.bad_version"
    for ihl in range(5):
        assert _reason(patched(0, bytes([0x40 | ihl])), verify_checksum=False) \
            == "ipv4.bad_header_length"
    assert _reason(patched(0, b"\x4f"), verify_checksum=False) == "ipv4.truncated"
    assert _reason(patched(2, (19).to_bytes(2, "big")), verify_checksum=False) \
        == "ipv4.bad_total_length"
    assert _reason(patched(2, (0).to_bytes(2, "big")), verify_checksum=False) \
        == "ipv4.bad_total_length"
    assert _reason(patched(2, (len(good) + 1).to_bytes(2, "big")), verify_checksum=False) \
        == "ipv4.truncated"
    assert _reason(patched(10, b"\x00\x00")) == "ipv4.bad_checksum"
    # A shorter total length ends the payload early (the checksum follows).
    short = patched(2, (28).to_bytes(2, "big"))
    assert _reason(short) == "ipv4.bad_checksum"
    assert len(parse_ipv4(short, verify_checksum=False)[1]) == 8


def test_ipv4_bad_fragment():
    src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    last = IPv4Header(src, dst, PROTO_UDP, fragment_offset=0xFFF8, more_fragments=False)
    ok = build_ipv4(last, bytes(7))
    assert parse_ipv4(ok)[0].fragment_offset == 0xFFF8
    assert parse_ipv4(ok)[0].is_fragment
    with pytest.raises(WireError) as info:
        parse_ipv4(build_ipv4(last, bytes(8)))
    assert info.value.reason == "ipv4.bad_fragment"


def test_ipv4_fragment_fields():
    src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    header = IPv4Header(src, dst, PROTO_UDP, identification=0xBEEF, more_fragments=True,
                        fragment_offset=1480)
    raw = build_ipv4(header, bytes(16))
    assert raw[6:8] == (0x2000 | 1480 // 8).to_bytes(2, "big")
    parsed, _ = parse_ipv4(raw)
    assert parsed == header and parsed.is_fragment
    df = build_ipv4(IPv4Header(src, dst, PROTO_UDP, dont_fragment=True), b"")
    assert df[6:8] == b"\x40\x00"
    assert not parse_ipv4(df)[0].is_fragment
    # The reserved flag (RFC 791: must be zero) is ignored on input.
    evil = bytearray(df)
    evil[6] |= 0x80
    evil[10:12] = b"\0\0"
    evil[10:12] = internet_checksum(evil).to_bytes(2, "big")
    assert parse_ipv4(evil)[0] == parse_ipv4(df)[0]


def test_build_ipv4_rejects():
    src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    base = IPv4Header(src, dst, PROTO_UDP)
    assert len(build_ipv4(base, bytes(65535 - 20))) == 65535
    with pytest.raises(ValueError, match="ipv4 packet too long"):
        build_ipv4(base, bytes(65535 - 19))
    with pytest.raises(ValueError, match="ipv4 packet too long"):
        build_ipv4(IPv4Header(src, dst, PROTO_UDP, options=b"\x01"), bytes(65535 - 20))
    with pytest.raises(ValueError):
        build_ipv4(IPv4Header(src, dst, PROTO_UDP, options=bytes(41)), b"")
    for offset in (4, -8, 0x10000, 65536 + 8):
        with pytest.raises(ValueError):
            build_ipv4(IPv4Header(src, dst, PROTO_UDP, fragment_offset=offset), b"")
    for field in ("ttl", "tos", "protocol"):
        with pytest.raises(ValueError):
            build_ipv4(IPv4Header(**{"src": src, "dst": dst, "protocol": 17, field: 256}), b"")
    with pytest.raises(ValueError):
        build_ipv4(IPv4Header(src, dst, PROTO_UDP, identification=-1), b"")


def test_quote_for_icmp():
    udp = TAP_UDP4_FRAME[14:]
    assert quote_for_icmp(udp) == udp[:28]
    assert quote_for_icmp(memoryview(udp)) == udp[:28]
    assert quote_for_icmp(bytearray(udp[:25])) == udp[:25]  # clamped to what exists
    assert quote_for_icmp(b"") == b""
    # Options are part of the header that is quoted.
    rr = RR_ECHO_REQUEST_FRAME[14:]
    assert quote_for_icmp(rr) == rr[:68]
    # A datagram shorter than header + 8: link padding is not quoted.
    empty = TAP_UDP4_EMPTY_FRAME[14:]
    ip, _ = parse_ipv4(empty + bytes(18))
    assert quote_for_icmp(empty + bytes(18)) == empty
    assert quote_for_icmp(build_ipv4(ip, b"ab") + bytes(10)) == build_ipv4(ip, b"ab")
    assert type(quote_for_icmp(memoryview(udp))) is bytes


# --- ICMP -----------------------------------------------------------------------

@given(icmp_messages, buffer_types)
def test_icmp_round_trip(msg, make):
    raw = build_icmpv4(msg)
    assert len(raw) == 8 + len(msg.payload)
    assert internet_checksum(raw) == 0
    parsed = parse_icmpv4(make(raw))
    assert parsed == msg
    assert isinstance(parsed.payload, memoryview)
    assert build_icmpv4(parsed) == raw


@given(icmp_messages, st.data())
def test_icmp_bit_flip_detected(msg, data):
    raw = build_icmpv4(msg)
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    with pytest.raises(WireError) as info:
        parse_icmpv4(flipped(raw, bit))
    assert info.value.reason == "icmp.bad_checksum"


@given(icmp_messages)
def test_icmp_truncated_at_every_length(msg):
    raw = build_icmpv4(msg)
    for length in range(len(raw)):
        try:
            got = parse_icmpv4(raw[:length])
        except WireError as exc:
            assert exc.reason == ("icmp.truncated" if length < 8 else "icmp.bad_checksum")
        else:
            # ICMP has no length field: dropping trailing bytes that sum to
            # zero (say, zeros) is invisible here; the IP total length is what
            # catches truncation.
            assert length >= 8
            assert got.payload == raw[8:length]


@given(u16, u16, st.binary(max_size=100))
def test_icmp_echo_constructors(identifier, sequence, payload):
    req = IcmpMessage.echo_request(identifier, sequence, payload)
    rep = IcmpMessage.echo_reply(identifier, sequence, payload)
    assert (req.type, req.code, rep.type, rep.code) == (ICMP_ECHO_REQUEST, 0, ICMP_ECHO_REPLY, 0)
    for msg in (req, rep):
        assert (msg.identifier, msg.sequence, msg.payload) == (identifier, sequence, payload)
        assert not msg.is_error
        assert parse_icmpv4(build_icmpv4(msg)) == msg


def test_icmp_echo_constructors_reject_out_of_range():
    for ident, seq in ((0x10000, 0), (0, 0x10000), (-1, 0), (0, -1)):
        with pytest.raises(ValueError):
            IcmpMessage.echo_request(ident, seq, b"")
        with pytest.raises(ValueError):
            IcmpMessage.echo_reply(ident, seq, b"")


def test_icmp_errors():
    quoted = quote_for_icmp(TAP_UDP4_FRAME[14:])
    frag = IcmpMessage.error(ICMP_DEST_UNREACHABLE, UNREACH_FRAG_NEEDED, quoted, next_hop_mtu=1400)
    assert frag.is_error and frag.next_hop_mtu == 1400 and frag.rest == 1400
    raw = build_icmpv4(frag)
    # RFC 1191 4: the next-hop MTU is the low-order 16 bits of the word.
    assert raw[4:8] == b"\x00\x00\x05\x78"
    assert parse_icmpv4(raw) == frag
    ttl = IcmpMessage.error(ICMP_TIME_EXCEEDED, TIME_EXCEEDED_TTL, quoted)
    assert ttl.is_error and ttl.rest == 0 and ttl.payload == quoted
    problem = IcmpMessage.error(ICMP_PARAMETER_PROBLEM, 0, quoted, pointer=9)
    assert build_icmpv4(problem)[4:8] == b"\x09\x00\x00\x00"
    assert parse_icmpv4(build_icmpv4(problem)).pointer == 9
    for t in (3, 4, 5, 11, 12):
        assert IcmpMessage(t, 0).is_error
    for t in (0, 8, 13, 14, 255):
        assert not IcmpMessage(t, 0).is_error
    with pytest.raises(ValueError):
        IcmpMessage.error(ICMP_DEST_UNREACHABLE, UNREACH_FRAG_NEEDED, quoted, next_hop_mtu=0x10000)


def test_build_icmp_rejects_bad_fields():
    for msg in (IcmpMessage(256, 0), IcmpMessage(0, 256), IcmpMessage(0, 0, 2**32),
                IcmpMessage(0, 0, -1), IcmpMessage(-1, 0)):
        with pytest.raises(ValueError):
            build_icmpv4(msg)


# --- UDP ------------------------------------------------------------------------

@given(u16, u16, st.binary(max_size=1600), udp_endpoints, st.binary(max_size=20), buffer_types)
def test_udp_round_trip(sport, dport, payload, endpoints, trailing, make):
    src, dst = endpoints
    raw = build_udp(sport, dport, payload, src, dst)
    assert len(raw) == UDP_HEADER_LEN + len(payload)
    assert raw[6:8] != b"\0\0"  # a computed zero goes out as 0xFFFF
    # Bytes after the UDP length (IP padding) are not payload.
    header, got = parse_udp(make(raw + trailing), src, dst)
    assert header == UdpHeader(sport, dport)
    assert bytes(got) == payload
    assert isinstance(got, memoryview)


@given(u16, u16, st.binary(max_size=200), udp_endpoints, st.data())
def test_udp_bit_flip_detected(sport, dport, payload, endpoints, data):
    src, dst = endpoints
    raw = build_udp(sport, dport, payload, src, dst)
    # Everything but the length field, whose flips may move the end of the data.
    bit = data.draw(st.integers(0, len(raw) * 8 - 1).filter(lambda b: b // 8 not in (4, 5)))
    bad = flipped(raw, bit)
    if bad[6:8] == b"\0\0":
        # The checksum field flipped to "none": accepted over IPv4 only.
        if src.version == 4:
            parse_udp(bad, src, dst)
            return
        expected = "udp.zero_checksum"
    else:
        expected = "udp.bad_checksum"
    with pytest.raises(WireError) as info:
        parse_udp(bad, src, dst)
    assert info.value.reason == expected


@given(u16, u16, st.binary(max_size=200), udp_endpoints, st.data())
def test_udp_pseudo_header_bit_flip_detected(sport, dport, payload, endpoints, data):
    src, dst = endpoints
    raw = build_udp(sport, dport, payload, src, dst)
    which = data.draw(st.sampled_from(["src", "dst"]))
    bit = data.draw(st.integers(0, src.max_prefixlen - 1))
    if which == "src":
        src = type(src)(int(src) ^ (1 << bit))
    else:
        dst = type(dst)(int(dst) ^ (1 << bit))
    with pytest.raises(WireError) as info:
        parse_udp(raw, src, dst)
    assert info.value.reason == "udp.bad_checksum"


@given(u16, u16, st.binary(max_size=100), udp_endpoints)
def test_udp_truncated_at_every_length(sport, dport, payload, endpoints):
    src, dst = endpoints
    raw = build_udp(sport, dport, payload, src, dst)
    for length in range(len(raw)):
        with pytest.raises(WireError) as info:
            parse_udp(raw[:length], src, dst)
        assert info.value.reason == "udp.truncated"


def test_udp_zero_checksum():
    v4s, v4d = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    v6s, v6d = IPv6Address("fd00::1"), IPv6Address("fd00::2")
    bare = build_udp(1, 2, b"data", v4s, v4d, compute_checksum=False)
    assert bare[6:8] == b"\0\0"
    # RFC 768: zero means "no checksum" over IPv4 ...
    assert parse_udp(bare, v4s, v4d)[1] == b"data"
    # ... but RFC 8200 8.1 makes it an error over IPv6.
    bare6 = build_udp(1, 2, b"data", v6s, v6d, compute_checksum=False)
    with pytest.raises(WireError) as info:
        parse_udp(bare6, v6s, v6d)
    assert info.value.reason == "udp.zero_checksum"
    assert parse_udp(bare6, v6s, v6d, verify_checksum=False)[1] == b"data"


def test_udp_computed_zero_sent_as_ones():
    src, dst = IPv4Address("0.0.0.0"), IPv4Address("0.0.0.0")
    # Choose the payload so the ones'-complement sum is 0xFFFF, making the
    # computed checksum 0: header words 1 + 2 + 10 (twice, with the
    # pseudo-header length) + 17 = 40, so the payload word is 0xFFFF - 40.
    payload = (0xFFFF - 40).to_bytes(2, "big")
    raw = build_udp(1, 2, payload, src, dst)
    assert raw[6:8] == b"\xff\xff"
    assert parse_udp(raw, src, dst)[1] == payload


def test_udp_rejections():
    src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    good = build_udp(1000, 2000, b"abcdefgh", src, dst)
    for length in range(8):
        bad = good[:4] + length.to_bytes(2, "big") + good[6:]
        with pytest.raises(WireError) as info:
            parse_udp(bad, src, dst)
        assert info.value.reason == "udp.bad_length"
    too_long = good[:4] + (len(good) + 1).to_bytes(2, "big") + good[6:]
    with pytest.raises(WireError) as info:
        parse_udp(too_long, src, dst)
    assert info.value.reason == "udp.truncated"


def test_build_udp_rejects():
    src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    assert len(build_udp(1, 2, bytes(65535 - 8), src, dst)) == 65535
    with pytest.raises(ValueError):
        build_udp(1, 2, bytes(65535 - 7), src, dst)
    for sport, dport in ((-1, 2), (1, -2), (0x10000, 2), (1, 0x10000)):
        with pytest.raises(ValueError):
            build_udp(sport, dport, b"", src, dst)
        with pytest.raises(ValueError):
            build_udp(sport, dport, b"", src, dst, compute_checksum=False)


@given(src=st.integers(0, 2**32 - 1), dst=st.integers(0, 2**32 - 1),
       protocol=st.integers(0, 255), ident=st.integers(0, 0xFFFF), ttl=st.integers(0, 255),
       df=st.booleans(), compute=st.booleans(), payload=st.binary(max_size=64))
def test_build_ipv4_plain_matches_build_ipv4(src, dst, protocol, ident, ttl, df, compute, payload):
    header = IPv4Header(IPv4Address(src), IPv4Address(dst), protocol, ttl=ttl,
                        identification=ident, dont_fragment=df)
    plain = build_ipv4_plain(IPv4Address(src), IPv4Address(dst), protocol, ident, payload,
                             ttl=ttl, dont_fragment=df, compute_checksum=compute)
    assert plain == build_ipv4(header, payload, compute_checksum=compute)
    parsed, body = parse_ipv4(plain, verify_checksum=compute)
    assert parsed == header and bytes(body) == payload


def test_build_ipv4_plain_refuses_an_oversized_packet():
    with pytest.raises(ValueError, match="too long"):
        build_ipv4_plain(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), PROTO_UDP, 1,
                         bytes(65516))
