"""TCP header codec (trionet.wire.tcp) and sequence/ISN/port helpers."""

import errno
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trionet.tcp.isn import IsnGenerator
from trionet.transport.ports import EphemeralPortAllocator
from trionet.tcp.seq import (seq_add, seq_diff, seq_ge, seq_gt, seq_in_window, seq_le,
                             seq_lt, unwrap)
from trionet.wire.errors import WireError
from trionet.wire.tcp import (ACK, NO_OPTIONS, PSH, RST, SYN, TcpHeader, TcpOptions,
                              build_tcp, encode_options, options_length, parse_tcp)

LO = ip_address("127.0.0.1")
V6A = ip_address("2001:db8::1")
V6B = ip_address("2001:db8::2")

# Captured with `tcpdump -i lo -xx` while connecting to closed port 9 on
# 127.0.0.1 (Linux 6.x). TCP part only, after the 20-byte IPv4 header.
# The SYN's checksum field is the offloaded partial sum loopback leaves in
# place (CHECKSUM_PARTIAL), so it does not verify; the kernel's RST does.
LINUX_SYN = bytes.fromhex(
    "d9dc00097c9f761800000000a002ffd7fe3000000204ffd70402080a4cc0e144000000000103030a")
LINUX_RST = bytes.fromhex("0009d9dc000000007c9f761950140000e52f0000")


def test_parse_linux_syn():
    h, payload = parse_tcp(LINUX_SYN, LO, LO, verify_checksum=False)
    assert (h.src_port, h.dst_port) == (55772, 9)
    assert h.seq == 2090825240 and h.ack == 0
    assert h.flags == SYN and h.syn and not h.ack_flag
    assert h.window == 65495
    assert h.options == TcpOptions(mss=65495, window_scale=10, sack_permitted=True,
                                   timestamps=(1287708996, 0))
    assert len(payload) == 0
    # Our encoder lays the options out exactly as Linux did.
    assert encode_options(h.options) == LINUX_SYN[20:]
    rebuilt = build_tcp(h, b"", LO, LO, compute_checksum=False)
    assert rebuilt[:16] == LINUX_SYN[:16] and rebuilt[18:] == LINUX_SYN[18:]


def test_parse_linux_rst_with_checksum():
    h, payload = parse_tcp(LINUX_RST, LO, LO)
    assert (h.src_port, h.dst_port) == (9, 55772)
    assert h.seq == 0 and h.ack == 2090825241
    assert h.flags == RST | ACK and h.window == 0 and h.options is NO_OPTIONS
    assert build_tcp(h, b"", LO, LO) == LINUX_RST


def test_bad_checksum():
    data = bytearray(LINUX_RST)
    data[5] ^= 1
    with pytest.raises(WireError) as e:
        parse_tcp(bytes(data), LO, LO)
    assert e.value.reason == "tcp.bad_checksum"
    parse_tcp(bytes(data), LO, LO, verify_checksum=False)


def test_truncated_and_bad_offset():
    with pytest.raises(WireError) as e:
        parse_tcp(LINUX_RST[:19], LO, LO)
    assert e.value.reason == "tcp.truncated"
    bad = bytearray(LINUX_RST)
    bad[12] = 0x40  # offset 4 words < 5
    with pytest.raises(WireError) as e:
        parse_tcp(bytes(bad), LO, LO, verify_checksum=False)
    assert e.value.reason == "tcp.bad_offset"
    bad[12] = 0x60  # offset 24 bytes > 20 available
    with pytest.raises(WireError) as e:
        parse_tcp(bytes(bad), LO, LO, verify_checksum=False)
    assert e.value.reason == "tcp.truncated"


def _with_options(opts: bytes) -> bytes:
    h = TcpHeader(1, 2, 3, 4, ACK, 5)
    base = bytearray(build_tcp(h, b"", LO, LO))
    base[12] = ((20 + len(opts)) // 4) << 4
    return bytes(base) + opts


@pytest.mark.parametrize("opts", [
    b"\x02\x00\x00\x00",          # length 0
    b"\x02\x01\x00\x00",          # length 1
    b"\x01\x01\x01\x08",          # kind 8 with no length byte
    b"\x08\x0a\x00\x00",          # runs past the header
    b"\xfe\x06\x00\x00",          # unknown kind running past the header
])
def test_bad_option_lengths(opts):
    with pytest.raises(WireError) as e:
        parse_tcp(_with_options(opts), LO, LO, verify_checksum=False)
    assert e.value.reason == "tcp.bad_option"


def test_unknown_options_skipped_and_known_bad_sizes_ignored():
    opts = b"\xfe\x04\xab\xcd" + b"\x02\x03\x05" + b"\x01" + b"\x02\x04\x05\xb4" + b"\x00\x00\x00\x00"
    h, _ = parse_tcp(_with_options(opts), LO, LO, verify_checksum=False)
    assert h.options.mss == 1460
    # EOL ends parsing: what follows is not read.
    h, _ = parse_tcp(_with_options(b"\x00\x02\x04\x05"), LO, LO, verify_checksum=False)
    assert h.options.mss is None


def test_round_trip_all_options_v4_and_v6():
    opts = TcpOptions(mss=1460, window_scale=7, sack_permitted=True, timestamps=(1, 2))
    h = TcpHeader(1234, 80, 0xFFFFFFFF, 17, SYN | ACK, 65535, 0, opts)
    for src, dst in ((LO, LO), (V6A, V6B)):
        raw = build_tcp(h, b"", src, dst)
        assert len(raw) == 40
        h2, p = parse_tcp(raw, src, dst)
        assert h2 == h and len(p) == 0


def test_round_trip_sack_blocks_and_payload():
    blocks = ((100, 200), (300, 400), (500, 600), (700, 800), (900, 1000))
    h = TcpHeader(1, 2, 3, 4, ACK | PSH, 5, 0, TcpOptions(timestamps=(9, 8), sack_blocks=blocks))
    raw = build_tcp(h, b"x" * 1001, LO, LO)
    h2, p = parse_tcp(raw, LO, LO)
    assert h2.options.sack_blocks == blocks[:3]  # 3 fit next to timestamps
    assert bytes(p) == b"x" * 1001
    h = TcpHeader(1, 2, 3, 4, ACK, 5, 0, TcpOptions(sack_blocks=blocks))
    h2, _ = parse_tcp(build_tcp(h, b"", LO, LO), LO, LO)
    assert h2.options.sack_blocks == blocks[:4]
    assert options_length(h.options) == len(encode_options(h.options)) == 36


def test_timestamp_fast_path_layout():
    h = TcpHeader(1, 2, 3, 4, ACK, 5, 0, TcpOptions(timestamps=(0x11223344, 0x55667788)))
    raw = build_tcp(h, b"abc", LO, LO)
    assert raw[20:32] == bytes.fromhex("0101080a1122334455667788")
    h2, p = parse_tcp(raw, LO, LO)
    assert h2 == h and bytes(p) == b"abc"


def test_payload_is_zero_copy():
    raw = bytearray(build_tcp(TcpHeader(1, 2, 3, 4, ACK, 5), b"hello", LO, LO))
    _, p = parse_tcp(raw, LO, LO)
    assert isinstance(p, memoryview)
    raw[-1] = ord("!")
    assert bytes(p) == b"hell!"


def test_layouts_match_linux():
    # SYN without SACK: MSS, NOP NOP TS, NOP WS; SACK without TS: NOP NOP SACKOK.
    assert encode_options(TcpOptions(mss=1460, window_scale=7, timestamps=(1, 0))) == \
        bytes.fromhex("020405b4" "0101080a0000000100000000" "01030307")
    assert encode_options(TcpOptions(mss=1460, sack_permitted=True)) == \
        bytes.fromhex("020405b4" "01010402")
    assert encode_options(TcpOptions(sack_blocks=((1, 2),))) == \
        bytes.fromhex("0101050a" "00000001" "00000002")


opt_strategy = st.builds(
    TcpOptions,
    mss=st.none() | st.integers(0, 65535),
    window_scale=st.none() | st.integers(0, 255),
    sack_permitted=st.booleans(),
    timestamps=st.none() | st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    sack_blocks=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
                         max_size=2).map(tuple),
)


@settings(max_examples=300, deadline=None)
@given(sport=st.integers(0, 65535), dport=st.integers(0, 65535),
       seq=st.integers(0, 2**32 - 1), ack=st.integers(0, 2**32 - 1),
       flags=st.integers(0, 255), window=st.integers(0, 65535), urg=st.integers(0, 65535),
       opts=opt_strategy, payload=st.binary(max_size=64), v6=st.booleans())
def test_round_trip_property(sport, dport, seq, ack, flags, window, urg, opts, payload, v6):
    h = TcpHeader(sport, dport, seq, ack, flags, window, urg, opts)
    src, dst = (V6A, V6B) if v6 else (LO, LO)
    raw = build_tcp(h, payload, src, dst)
    h2, p = parse_tcp(raw, src, dst)
    expect = opts if opts != NO_OPTIONS else NO_OPTIONS
    assert h2 == TcpHeader(sport, dport, seq, ack, flags, window, urg, expect)
    assert bytes(p) == payload


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_parse_garbage_never_crashes(data):
    try:
        parse_tcp(data, LO, LO, verify_checksum=False)
    except WireError:
        pass


# -- sequence numbers ------------------------------------------------------

def test_seq_comparisons_wrap():
    assert seq_lt(0xFFFFFFF0, 0x10) and seq_gt(0x10, 0xFFFFFFF0)
    assert seq_le(5, 5) and seq_ge(5, 5) and not seq_lt(5, 5)
    assert seq_add(0xFFFFFFFF, 2) == 1
    assert seq_diff(1, 0xFFFFFFFF) == 2 and seq_diff(0xFFFFFFFF, 1) == -2
    assert seq_in_window(2, 0xFFFFFFFE, 10) and not seq_in_window(9, 0xFFFFFFFE, 10)
    assert unwrap(5, 2**32 - 10) == 2**32 + 5
    assert unwrap(2**32 - 3, 2**32 + 5) == 2**32 - 3


@given(st.integers(0, 2**32 - 1), st.integers(-(2**31) + 1, 2**31 - 1))
def test_seq_property(a, d):
    b = seq_add(a, d)
    assert seq_diff(b, a) == d
    assert seq_lt(a, b) == (d > 0) and seq_gt(a, b) == (d < 0)
    assert seq_le(a, b) == (d >= 0) and seq_ge(a, b) == (d <= 0)


# -- ISN and ephemeral ports -----------------------------------------------

def test_isn_clock_and_hash():
    t = [100.0]
    g = IsnGenerator(b"k" * 16, clock=lambda: t[0])
    a = g.isn(LO, 1000, LO, 80)
    assert g(LO, 1000, LO, 80) == a
    t[0] += 1.0  # 250000 ticks of 4 us
    assert g.isn(LO, 1000, LO, 80) == (a + 250_000) & 0xFFFFFFFF
    assert g.isn(LO, 1001, LO, 80) != g.isn(LO, 1000, LO, 80)
    assert IsnGenerator(b"other", clock=lambda: t[0]).isn(LO, 1000, LO, 80) != \
        g.isn(LO, 1000, LO, 80)
    assert IsnGenerator().isn(V6A, 1, V6B, 2) < 2**32


def test_ephemeral_ports():
    import random
    alloc = EphemeralPortAllocator(40000, 40009, rng=random.Random(1))
    used = set()
    for _ in range(10):
        p = alloc.allocate(LO, LO, 80, used.__contains__)
        assert 40000 <= p <= 40009 and p not in used
        used.add(p)
    with pytest.raises(OSError) as e:
        alloc.allocate(LO, LO, 80, used.__contains__)
    assert e.value.errno == errno.EADDRNOTAVAIL
    # Successive allocations to one destination do not repeat a port at once.
    alloc = EphemeralPortAllocator(rng=random.Random(2))
    ports = [alloc.allocate(LO, LO, 443, lambda p: False) for _ in range(5)]
    assert len(set(ports)) == 5
    with pytest.raises(ValueError):
        EphemeralPortAllocator(10, 5)
