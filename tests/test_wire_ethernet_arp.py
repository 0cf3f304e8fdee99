"""Ethernet framing, MAC helpers and ARP (RFC 826) parse/build."""

import random
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trionet.wire import (
    ARP_PACKET_LEN,
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETH_HEADER_LEN,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ArpPacket,
    EthernetHeader,
    WireError,
    build_ethernet,
    is_multicast_mac,
    mac_from_str,
    mac_to_str,
    parse_arp,
    parse_ethernet,
    random_local_mac,
)

# Captured with tcpdump -xx on one end of a veth pair between two throwaway
# network namespaces (10.99.0.1 at 02:00:00:00:00:01 pinging 10.99.0.2 at
# 02:00:00:00:00:02), namespaces deleted afterwards.
ARP_REQUEST_FRAME = bytes.fromhex(
    "ffffffffffff 020000000001 0806"
    "0001 0800 06 04 0001 020000000001 0a630001 000000000000 0a630002")
ARP_REPLY_FRAME = bytes.fromhex(
    "020000000001 020000000002 0806"
    "0001 0800 06 04 0002 020000000002 0a630002 020000000001 0a630001")

MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")

macs = st.binary(min_size=6, max_size=6)
ipv4_addrs = st.integers(0, 2**32 - 1).map(IPv4Address)
buffer_types = st.sampled_from([bytes, bytearray, lambda b: memoryview(bytes(b))])


# --- Ethernet ---------------------------------------------------------------

def test_parse_captured_arp_request_frame():
    eth, payload = parse_ethernet(ARP_REQUEST_FRAME)
    assert eth == EthernetHeader(BROADCAST_MAC, MAC1, ETHERTYPE_ARP)
    assert isinstance(payload, memoryview)
    assert payload.obj is ARP_REQUEST_FRAME  # zero-copy view of the input
    assert len(payload) == ARP_PACKET_LEN
    assert build_ethernet(eth.dst, eth.src, eth.ethertype, payload) == ARP_REQUEST_FRAME


def test_parse_ethernet_accepts_every_buffer_type():
    for make in (bytes, bytearray, memoryview):
        eth, payload = parse_ethernet(make(ARP_REPLY_FRAME))
        assert eth == EthernetHeader(MAC1, MAC2, ETHERTYPE_ARP)
        assert bytes(payload) == ARP_REPLY_FRAME[ETH_HEADER_LEN:]


def test_ethernet_header_only_and_vlan_tag():
    eth, payload = parse_ethernet(MAC1 + MAC2 + b"\x81\x00")
    assert eth.ethertype == 0x8100
    assert len(payload) == 0


@pytest.mark.parametrize("length", range(ETH_HEADER_LEN))
def test_ethernet_truncated(length):
    with pytest.raises(WireError) as info:
        parse_ethernet(ARP_REQUEST_FRAME[:length])
    assert info.value.reason == "ethernet.truncated"


@given(macs, macs, st.integers(0, 0xFFFF), st.binary(max_size=1500), buffer_types)
def test_ethernet_round_trip(dst, src, ethertype, payload, make):
    frame = build_ethernet(dst, src, ethertype, payload)
    assert len(frame) == ETH_HEADER_LEN + len(payload)
    eth, got = parse_ethernet(make(frame))
    assert eth == EthernetHeader(dst, src, ethertype)
    assert bytes(got) == payload


def test_build_ethernet_rejects_bad_fields():
    with pytest.raises(ValueError):
        build_ethernet(MAC1[:5], MAC2, ETHERTYPE_IPV4, b"")
    with pytest.raises(ValueError):
        build_ethernet(MAC1, MAC2 + b"\0", ETHERTYPE_IPV4, b"")
    with pytest.raises(ValueError):
        build_ethernet(MAC1, MAC2, 0x10000, b"")


# --- MAC helpers ------------------------------------------------------------

def test_mac_from_str_and_back():
    assert mac_from_str("02:00:00:00:00:01") == MAC1
    assert mac_from_str("02-00-00-00-00-01") == MAC1
    assert mac_from_str("AA:bb:CC:dd:EE:ff") == bytes.fromhex("aabbccddeeff")
    assert mac_to_str(bytes.fromhex("aabbccddeeff")) == "aa:bb:cc:dd:ee:ff"
    assert mac_to_str(BROADCAST_MAC) == "ff:ff:ff:ff:ff:ff"


@pytest.mark.parametrize("text", [
    "", "02:00:00:00:00", "02:00:00:00:00:01:02", "02:00:00:00:00:1", "02:00:00:00:00:001",
    "02:00:00:00:00:0g", "02:00-00:00:00:01", "0200.0000.0001", "02:00:00:00:00: 1",
    "02:00:00:00:00:+1", "02:00:00:00:00:_1", "020000000001",
])
def test_mac_from_str_rejects(text):
    with pytest.raises(ValueError) as info:
        mac_from_str(text)
    assert repr(text) in str(info.value)


@given(macs)
def test_mac_str_round_trip(mac):
    text = mac_to_str(mac)
    assert text == text.lower() and len(text) == 17
    assert mac_from_str(text) == mac
    assert mac_from_str(text.replace(":", "-").upper()) == mac


def test_mac_to_str_rejects_wrong_length():
    with pytest.raises(ValueError):
        mac_to_str(b"\x02\x00")


def test_random_local_mac():
    rng = random.Random(1234)
    seen = set()
    for _ in range(200):
        mac = random_local_mac(rng)
        assert len(mac) == 6
        assert mac[0] & 0x02  # locally administered
        assert not mac[0] & 0x01  # unicast
        assert not is_multicast_mac(mac)
        seen.add(mac)
    assert len(seen) == 200
    # Reproducible from a seeded generator; random without one.
    assert random_local_mac(random.Random(7)) == random_local_mac(random.Random(7))
    assert random_local_mac() != random_local_mac()
    assert random_local_mac()[0] & 0x03 == 0x02


def test_is_multicast_mac():
    assert is_multicast_mac(BROADCAST_MAC)
    assert is_multicast_mac(bytes.fromhex("01005e000001"))  # IPv4 multicast
    assert is_multicast_mac(bytes.fromhex("333300000001"))  # IPv6 multicast
    assert not is_multicast_mac(MAC1)


# --- ARP --------------------------------------------------------------------

def test_parse_captured_arp_request():
    _, payload = parse_ethernet(ARP_REQUEST_FRAME)
    arp = parse_arp(payload)
    assert arp == ArpPacket(ARP_REQUEST, MAC1, IPv4Address("10.99.0.1"),
                            bytes(6), IPv4Address("10.99.0.2"))
    assert arp.build() == bytes(payload)


def test_parse_captured_arp_reply():
    _, payload = parse_ethernet(ARP_REPLY_FRAME)
    arp = parse_arp(payload)
    assert arp.operation == ARP_REPLY
    assert arp.sender_mac == MAC2
    assert arp.sender_ip == IPv4Address("10.99.0.2")
    assert arp.target_mac == MAC1
    assert arp.target_ip == IPv4Address("10.99.0.1")
    frame = build_ethernet(MAC1, MAC2, ETHERTYPE_ARP, arp.build())
    assert frame == ARP_REPLY_FRAME


def test_arp_with_ethernet_padding():
    # A minimum-size frame pads the 28-byte packet to 46 bytes (RFC 826
    # receivers ignore what follows the packet).
    padded = ARP_REPLY_FRAME + bytes(18)
    _, payload = parse_ethernet(padded)
    assert len(payload) == 46
    assert parse_arp(payload) == parse_arp(ARP_REPLY_FRAME[ETH_HEADER_LEN:])


@pytest.mark.parametrize("length", range(ARP_PACKET_LEN))
def test_arp_truncated(length):
    with pytest.raises(WireError) as info:
        parse_arp(ARP_REQUEST_FRAME[ETH_HEADER_LEN:ETH_HEADER_LEN + length])
    assert info.value.reason == "arp.truncated"


@pytest.mark.parametrize("offset, value", [
    (0, 0x01), (1, 0x06),  # hardware type 0x0101, or 6 (IEEE 802), not 1
    (2, 0x86), (3, 0xDD),  # protocol type
    (4, 8),  # hardware address length
    (5, 16),  # protocol address length
])
def test_arp_unsupported(offset, value):
    packet = bytearray(ARP_REQUEST_FRAME[ETH_HEADER_LEN:])
    packet[offset] = value
    with pytest.raises(WireError) as info:
        parse_arp(packet)
    assert info.value.reason == "arp.unsupported"
    # Checked before the length: a short packet of another kind is unsupported.
    with pytest.raises(WireError) as info:
        parse_arp(packet[:7])
    assert info.value.reason == "arp.unsupported"


@pytest.mark.parametrize("operation", [0, 3, 4, 8, 9, 0x100, 0xFFFF])
def test_arp_bad_operation(operation):
    packet = bytearray(ARP_REQUEST_FRAME[ETH_HEADER_LEN:])
    packet[6:8] = operation.to_bytes(2, "big")
    with pytest.raises(WireError) as info:
        parse_arp(packet)
    assert info.value.reason == "arp.bad_operation"


@given(st.sampled_from([ARP_REQUEST, ARP_REPLY]), macs, ipv4_addrs, macs, ipv4_addrs,
       st.binary(max_size=32), buffer_types)
def test_arp_round_trip(op, sha, spa, tha, tpa, padding, make):
    arp = ArpPacket(op, sha, spa, tha, tpa)
    raw = arp.build()
    assert len(raw) == ARP_PACKET_LEN
    assert parse_arp(make(raw + padding)) == arp


@given(st.sampled_from([ARP_REQUEST, ARP_REPLY]), macs, ipv4_addrs, macs, ipv4_addrs)
def test_arp_truncated_at_every_length(op, sha, spa, tha, tpa):
    raw = ArpPacket(op, sha, spa, tha, tpa).build()
    for length in range(ARP_PACKET_LEN):
        with pytest.raises(WireError) as info:
            parse_arp(raw[:length])
        assert info.value.reason == "arp.truncated"


def test_arp_build_rejects_bad_fields():
    ip = IPv4Address("10.0.0.1")
    with pytest.raises(ValueError):
        ArpPacket(ARP_REQUEST, MAC1[:5], ip, MAC2, ip).build()
    with pytest.raises(ValueError):
        ArpPacket(ARP_REQUEST, MAC1, ip, MAC2 + b"\0", ip).build()
    with pytest.raises(ValueError):
        ArpPacket(0x10000, MAC1, ip, MAC2, ip).build()
