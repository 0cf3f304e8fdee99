"""DHCPv4 messages (RFC 2131 section 2, RFC 2132 options, RFC 3396 long
options): captured bytes, the client's messages, round trips, every
malformed-input branch, fuzzing."""

from ipaddress import IPv4Address

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trionet.wire.dhcp import (
    BOOTP_MIN_LEN,
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    DEFAULT_PARAMETER_REQUEST_LIST,
    DHCP_MIN_LEN,
    DHCPACK,
    DHCPDECLINE,
    DHCPDISCOVER,
    DHCPNAK,
    DHCPOFFER,
    DHCPRELEASE,
    DHCPREQUEST,
    MAGIC_COOKIE,
    OPTION_CLIENT_ID,
    OPTION_DNS_SERVERS,
    OPTION_DOMAIN_NAME,
    OPTION_HOSTNAME,
    OPTION_INTERFACE_MTU,
    OPTION_LEASE_TIME,
    OPTION_MESSAGE,
    OPTION_MESSAGE_TYPE,
    OPTION_OVERLOAD,
    OPTION_PARAMETER_REQUEST_LIST,
    OPTION_REBINDING_TIME,
    OPTION_RENEWAL_TIME,
    OPTION_REQUESTED_IP,
    OPTION_ROUTER,
    OPTION_SERVER_ID,
    OPTION_SUBNET_MASK,
    DhcpMessage,
    build_dhcp,
    parse_dhcp,
)
from trionet.wire.errors import WireError


def capture(header: str, options: str, total: int) -> bytes:
    """A message from its first 44 bytes (op to chaddr) and its cookie and
    options, as hex; sname and file (192 bytes) and the tail are zeros."""
    raw = bytes.fromhex(header) + bytes(192) + bytes.fromhex(options)
    assert len(raw) <= total
    return raw + bytes(total - len(raw))


MAC = bytes.fromhex("020000000001")
SERVER = IPv4Address("10.77.0.1")
OFFERED = IPv4Address("10.77.0.55")
XID = 0x5472696F
REBOOT_XID = 0x6E657400

# Captured from dnsmasq 2.90 (Debian 12's dnsmasq-base) in a throwaway pair
# of network namespaces joined by a veth: dnsmasq on 10.77.0.1/24 with
#   --dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,3600 --dhcp-authoritative
#   --dhcp-option=option:router,10.77.0.1
#   --dhcp-option=option:dns-server,10.77.0.1,10.77.0.2
#   --dhcp-option=option:domain-name,trionet.test --dhcp-option=option:mtu,1400
# and, in the other namespace, a Python AF_PACKET socket at 02:00:00:00:00:01
# sending the three client messages below (built by build_dhcp; dnsmasq's log
# showed it accepted each) and reading the UDP payloads of the answers.
DISCOVER = capture(
    "01010600 5472696f 00008000 00000000 00000000 00000000 00000000 02000000 00010000"
    "00000000 00000000",
    "63825363 3501010c 07747269 6f6e6574 37080103 060f1a33 3a3bff", 300)
OFFER = capture(
    "02010600 5472696f 00008000 00000000 0a4d0037 0a4d0001 00000000 02000000 00010000"
    "00000000 00000000",
    "63825363 35010236 040a4d00 01330400 000e103a 04000007 083b0400 000c4e01 04ffffff"
    "001c040a 4d00ff1a 0205780f 0c747269 6f6e6574 2e746573 7406080a 4d00010a 4d000203"
    "040a4d00 01ff", 314)
REQUEST = capture(
    "01010600 5472696f 00008000 00000000 00000000 00000000 00000000 02000000 00010000"
    "00000000 00000000",
    "63825363 35010332 040a4d00 3736040a 4d00010c 07747269 6f6e6574 37080103 060f1a33"
    "3a3bff", 300)
ACK = capture(
    "02010600 5472696f 00008000 00000000 0a4d0037 0a4d0001 00000000 02000000 00010000"
    "00000000 00000000",
    "63825363 35010536 040a4d00 01330400 000e103a 04000007 083b0400 000c4e01 04ffffff"
    "001c040a 4d00ff1a 0205780f 0c747269 6f6e6574 2e746573 7406080a 4d00010a 4d000203"
    "040a4d00 01ff", 314)
# An INIT-REBOOT REQUEST for an address outside the server's subnet, and the NAK.
REBOOT_REQUEST = capture(
    "01010600 6e657400 00008000 00000000 00000000 00000000 00000000 02000000 00010000"
    "00000000 00000000",
    "63825363 35010332 040a6363 63370801 03060f1a 333a3bff", 300)
NAK = capture(
    "02010600 6e657400 00008000 00000000 00000000 00000000 00000000 02000000 00010000"
    "00000000 00000000",
    "63825363 35010636 040a4d00 01380d77 726f6e67 20616464 72657373 ff", 300)

CAPTURES = [DISCOVER, OFFER, REQUEST, ACK, REBOOT_REQUEST, NAK]

buffer_types = st.sampled_from([bytes, bytearray, lambda b: memoryview(bytes(b))])
ipv4_addrs = st.integers(0, 2**32 - 1).map(IPv4Address)


def reason_of(data) -> str:
    with pytest.raises(WireError) as info:
        parse_dhcp(data)
    return info.value.reason


def with_options(options_hex: str, *, base: bytes = OFFER) -> bytes:
    """``base``'s fixed part and cookie with other options after them."""
    return base[:DHCP_MIN_LEN] + bytes.fromhex(options_hex)


# --- captured -------------------------------------------------------------------

@pytest.mark.parametrize("data, kind", [(OFFER, DHCPOFFER), (ACK, DHCPACK)])
def test_captured_offer_and_ack(data, kind):
    msg = parse_dhcp(data)
    assert (msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs) == \
        (BOOTREPLY, 1, 6, 0, XID, 0)
    assert msg.flags == BROADCAST_FLAG and msg.broadcast  # echoed from the request
    assert msg.chaddr == MAC
    assert msg.ciaddr == IPv4Address(0) and msg.giaddr == IPv4Address(0)
    assert msg.yiaddr == OFFERED and msg.siaddr == SERVER
    assert msg.message_type == kind
    assert msg.server_id == SERVER
    assert (msg.lease_time, msg.renewal_time, msg.rebinding_time) == (3600, 1800, 3150)
    assert msg.subnet_mask == IPv4Address("255.255.255.0")
    assert msg.routers == (SERVER,)
    assert msg.dns_servers == (SERVER, IPv4Address("10.77.0.2"))
    assert msg.domain_name == "trionet.test"
    assert msg.interface_mtu == 1400
    assert msg.option(28) == IPv4Address("10.77.0.255").packed  # broadcast, no accessor
    assert [code for code, _ in msg.options] == [53, 54, 51, 58, 59, 1, 28, 26, 15, 6, 3]
    assert msg.hostname is None and msg.requested_ip is None and msg.message is None
    assert msg.client_id is None and msg.parameter_request_list == ()
    # The same bytes back: same option order, END, no padding past 300.
    assert build_dhcp(msg) == data


def test_captured_offer_and_ack_differ_only_in_type():
    assert attrs.evolve(parse_dhcp(OFFER),
                        options=[(c, b"\x05" if c == 53 else v)
                                 for c, v in parse_dhcp(OFFER).options]) == parse_dhcp(ACK)


def test_captured_nak():
    msg = parse_dhcp(NAK)
    assert (msg.op, msg.xid, msg.chaddr) == (BOOTREPLY, REBOOT_XID, MAC)
    assert msg.message_type == DHCPNAK
    assert msg.server_id == SERVER
    assert msg.message == "wrong address"
    assert msg.yiaddr == IPv4Address(0) and msg.lease_time is None
    assert len(NAK) == BOOTP_MIN_LEN
    assert build_dhcp(msg) == NAK  # dnsmasq pads to 300 bytes as we do


def test_client_messages_that_dnsmasq_answered():
    """Our builders produce the exact bytes that dnsmasq accepted."""
    discover = DhcpMessage.discover(XID, MAC, hostname="trionet")
    assert build_dhcp(discover) == DISCOVER
    offer = parse_dhcp(OFFER)
    request = DhcpMessage.request_selecting(XID, MAC, offer.yiaddr, offer.server_id,
                                            hostname="trionet")
    assert build_dhcp(request) == REQUEST
    reboot = DhcpMessage.request_init_reboot(REBOOT_XID, MAC, IPv4Address("10.99.99.99"))
    assert build_dhcp(reboot) == REBOOT_REQUEST
    for raw, built in ((DISCOVER, discover), (REQUEST, request), (REBOOT_REQUEST, reboot)):
        assert parse_dhcp(raw) == built


@pytest.mark.parametrize("data", CAPTURES)
def test_captures_truncated_at_every_length(data):
    for length in range(DHCP_MIN_LEN):
        assert reason_of(data[:length]) == "dhcp.truncated"
    # Cut inside the options: the option that straddles the end is bad.
    end = DHCP_MIN_LEN + len(bytes(data[DHCP_MIN_LEN:]).rstrip(b"\0")) - 1  # the END byte
    for length in range(DHCP_MIN_LEN, end):
        try:
            msg = parse_dhcp(data[:length])
        except WireError as exc:
            assert exc.reason == "dhcp.bad_option"
        else:  # cut between two options: what was whole is kept, in order
            assert msg.options == parse_dhcp(data).options[:len(msg.options)]


@pytest.mark.parametrize("data", CAPTURES)
def test_captures_in_any_buffer(data):
    for make in (bytearray, memoryview):
        assert parse_dhcp(make(data)) == parse_dhcp(data)


# --- the client's messages (RFC 2131 4.4.1 table 5, 4.3.2) ----------------------

def fields(msg: DhcpMessage):
    return (msg.message_type, msg.ciaddr, msg.requested_ip, msg.server_id, msg.broadcast)


ADDR = IPv4Address("192.0.2.10")
SRV = IPv4Address("192.0.2.1")
ZERO = IPv4Address(0)


def test_discover():
    msg = DhcpMessage.discover(7, MAC, secs=3)
    assert fields(msg) == (DHCPDISCOVER, ZERO, None, None, True)
    assert (msg.op, msg.xid, msg.secs, msg.chaddr, msg.htype) == (BOOTREQUEST, 7, 3, MAC, 1)
    assert msg.parameter_request_list == DEFAULT_PARAMETER_REQUEST_LIST
    assert msg.options[0] == (OPTION_MESSAGE_TYPE, bytes([DHCPDISCOVER]))
    hinted = DhcpMessage.discover(7, MAC, broadcast=False, requested_ip=ADDR, lease_time=600,
                                  client_id=b"\x01" + MAC, hostname="box",
                                  parameters=(1, 3), extra_options=[(60, b"trionet")])
    assert fields(hinted) == (DHCPDISCOVER, ZERO, ADDR, None, False)
    assert hinted.flags == 0
    assert hinted.lease_time == 600 and hinted.client_id == b"\x01" + MAC
    assert hinted.hostname == "box" and hinted.parameter_request_list == (1, 3)
    assert hinted.option(60) == b"trionet"
    assert DhcpMessage.discover(7, MAC, parameters=()).option(OPTION_PARAMETER_REQUEST_LIST) \
        is None


def test_requests_per_state():
    selecting = DhcpMessage.request_selecting(9, MAC, ADDR, SRV)
    assert fields(selecting) == (DHCPREQUEST, ZERO, ADDR, SRV, True)
    reboot = DhcpMessage.request_init_reboot(9, MAC, ADDR)
    assert fields(reboot) == (DHCPREQUEST, ZERO, ADDR, None, True)
    renewing = DhcpMessage.request_renewing(9, MAC, ADDR, secs=2)
    assert fields(renewing) == (DHCPREQUEST, ADDR, None, None, False)
    rebinding = DhcpMessage.request_rebinding(9, MAC, ADDR, secs=2)
    assert fields(rebinding) == (DHCPREQUEST, ADDR, None, None, False)
    assert renewing == rebinding  # only the destination differs
    for msg in (selecting, reboot, renewing):
        assert msg.parameter_request_list == DEFAULT_PARAMETER_REQUEST_LIST  # RFC 2131 4.4.1


def test_decline_and_release():
    decline = DhcpMessage.decline(5, MAC, ADDR, SRV, message="in use")
    assert fields(decline) == (DHCPDECLINE, ZERO, ADDR, SRV, False)
    release = DhcpMessage.release(6, MAC, ADDR, SRV, client_id=b"\x01" + MAC)
    assert fields(release) == (DHCPRELEASE, ADDR, None, SRV, False)
    assert decline.message == "in use" and release.client_id == b"\x01" + MAC
    for msg in (decline, release):
        # Table 5: MUST NOT parameter list or lease time; secs 0.
        assert msg.option(OPTION_PARAMETER_REQUEST_LIST) is None
        assert msg.lease_time is None and msg.secs == 0


# --- build ------------------------------------------------------------------------

def test_build_pads_to_bootp_minimum():
    raw = build_dhcp(DhcpMessage(BOOTREQUEST, 1, MAC))
    assert len(raw) == BOOTP_MIN_LEN
    assert raw[236:241] == MAGIC_COOKIE + b"\xff" and raw[241:] == bytes(59)
    big = DhcpMessage(BOOTREQUEST, 1, MAC, [(224, bytes(100))])
    assert len(build_dhcp(big)) == DHCP_MIN_LEN + 102 + 1


def test_build_splits_long_options():
    # RFC 3396: over 255 bytes goes as consecutive instances, joined on parse.
    value = bytes(range(256)) * 2 + b"tail"
    msg = DhcpMessage(BOOTREPLY, 1, MAC, [(OPTION_DNS_SERVERS, bytes(4) * 70), (224, value)])
    raw = build_dhcp(msg)
    assert raw[DHCP_MIN_LEN:DHCP_MIN_LEN + 2] == bytes([6, 255])
    assert raw.count(bytes([224, 255])) >= 2
    assert parse_dhcp(raw) == msg
    assert parse_dhcp(raw).dns_servers == (ZERO,) * 70


def test_build_empty_option():
    msg = DhcpMessage(BOOTREQUEST, 1, MAC, [(80, b"")])  # rapid commit (RFC 4039)
    raw = build_dhcp(msg)
    assert raw[DHCP_MIN_LEN:DHCP_MIN_LEN + 3] == bytes([80, 0, 255])
    assert parse_dhcp(raw).option(80) == b""


@pytest.mark.parametrize("msg", [
    DhcpMessage(3, 1, MAC),
    DhcpMessage(0, 1, MAC),
    DhcpMessage(BOOTREQUEST, 1, bytes(17)),
    DhcpMessage(BOOTREQUEST, 2**32, MAC),
    DhcpMessage(BOOTREQUEST, 1, MAC, secs=0x10000),
    DhcpMessage(BOOTREQUEST, 1, MAC, flags=-1),
    DhcpMessage(BOOTREQUEST, 1, MAC, hops=256),
])
def test_build_rejects_bad_fields(msg):
    with pytest.raises(ValueError):
        build_dhcp(msg)


@pytest.mark.parametrize("options", [
    [(0, b"x")],
    [(255, b"x")],
    [(256, b"x")],
    [(53, b"\x01"), (53, b"\x02")],
    [(OPTION_MESSAGE_TYPE, b"")],
    [(OPTION_LEASE_TIME, b"\0\0\0")],
    [(OPTION_ROUTER, bytes(6))],
    [(OPTION_CLIENT_ID, b"\x01")],
    [(OPTION_INTERFACE_MTU, b"\x05\xdc\x00")],
])
def test_message_rejects_bad_options(options):
    with pytest.raises(ValueError):
        DhcpMessage(BOOTREQUEST, 1, MAC, options)


def test_options_from_mapping_keep_order():
    msg = DhcpMessage(BOOTREQUEST, 1, MAC, {61: b"\x00id", 12: b"h", 53: b"\x01"})
    assert msg.options == ((61, b"\x00id"), (12, b"h"), (53, b"\x01"))
    assert msg.option(12) == b"h" and msg.option(13) is None


# --- parse: options ------------------------------------------------------------------

def test_pad_and_end():
    # PADs anywhere between options (RFC 2132 3.1); END stops parsing, so
    # bytes after it, even ill-formed ones, are not read (3.2).
    data = with_options("00 00 350102 00 330400000e10 00 ff 36 ff 0000")
    msg = parse_dhcp(data)
    assert msg.options == ((53, b"\x02"), (51, b"\0\0\x0e\x10"))
    # Without END the options just stop with the data.
    assert parse_dhcp(with_options("350102 0000")).options == ((53, b"\x02"),)
    assert parse_dhcp(with_options("")).options == ()


def test_repeated_option_is_one_long_option():
    # RFC 3396: instances of one code are concatenated, in order.
    msg = parse_dhcp(with_options("0602 0a4d 0f03 abcd 65 0602 0001 ff"))
    assert msg.dns_servers == (IPv4Address("10.77.0.1"),)
    assert msg.domain_name == "\ufffd\ufffde"  # not UTF-8: replaced, never raises
    assert reason_of(with_options("350102 350102 ff")) == "dhcp.bad_option"


@pytest.mark.parametrize("options_hex", [
    "35",  # a code and nothing more
    "3501",  # length but no value
    "0f05 6162",  # value runs past the end
    "350102 0c",  # a code with no length after a good option
])
def test_option_running_past_the_end(options_hex):
    assert reason_of(with_options(options_hex)) == "dhcp.bad_option"


@pytest.mark.parametrize("code, value", [
    (OPTION_MESSAGE_TYPE, ""),
    (OPTION_MESSAGE_TYPE, "0102"),
    (OPTION_SUBNET_MASK, "ffffff"),
    (OPTION_ROUTER, ""),
    (OPTION_ROUTER, "0a4d000100"),
    (OPTION_DNS_SERVERS, "0a4d00"),
    (OPTION_HOSTNAME, ""),
    (OPTION_DOMAIN_NAME, ""),
    (OPTION_INTERFACE_MTU, "05"),
    (OPTION_REQUESTED_IP, "0a4d0037ff"),
    (OPTION_LEASE_TIME, "000e10"),
    (OPTION_OVERLOAD, "0101"),
    (OPTION_SERVER_ID, ""),
    (OPTION_PARAMETER_REQUEST_LIST, ""),
    (OPTION_MESSAGE, ""),
    (57, "02"),
    (OPTION_RENEWAL_TIME, "0000070800"),
    (OPTION_REBINDING_TIME, "00"),
    (OPTION_CLIENT_ID, "01"),
])
def test_typed_option_with_bad_length(code, value):
    data = with_options(f"{code:02x}{len(value) // 2:02x}{value}ff")
    assert reason_of(data) == "dhcp.bad_option"


def test_unknown_options_of_any_length_kept():
    msg = parse_dhcp(with_options("e000 fe03 616263 ff"))
    assert msg.options == ((224, b""), (254, b"abc"))


def test_text_options():
    msg = parse_dhcp(with_options("0c04 626f7800 0f01 78 3805 6e6f7065 21 ff"))
    assert msg.hostname == "box"  # trailing NUL dropped
    assert msg.domain_name == "x" and msg.message == "nope!"


def overloaded(overload: int, options: str, file: str = "", sname: str = "") -> bytes:
    data = bytearray(with_options(f"3401{overload:02x} {options}"))
    file_bytes, sname_bytes = bytes.fromhex(file), bytes.fromhex(sname)
    data[108:108 + len(file_bytes)] = file_bytes
    data[44:44 + len(sname_bytes)] = sname_bytes
    return bytes(data)


def test_option_overload():
    # RFC 2131 4.1 and RFC 3396: options, then 'file', then 'sname', joined.
    both = overloaded(3, "0604 0a000001 ff", file="0604 0a000002 3501 05 ff",
                      sname="0604 0a000003 ff")
    msg = parse_dhcp(both)
    assert msg.dns_servers == tuple(IPv4Address(f"10.0.0.{i}") for i in (1, 2, 3))
    assert msg.message_type == DHCPACK
    only_file = parse_dhcp(overloaded(1, "ff", file="350102", sname="350105"))
    assert only_file.message_type == DHCPOFFER
    only_sname = parse_dhcp(overloaded(2, "ff", file="350102", sname="350105"))
    assert only_sname.message_type == DHCPACK
    # Values that name neither field: the fields are not read.
    assert parse_dhcp(overloaded(0, "ff", file="350102")).message_type is None
    assert parse_dhcp(overloaded(4, "ff", sname="350102")).message_type is None
    # Rebuilt, everything sits in the options field and parses the same.
    assert parse_dhcp(build_dhcp(msg)) == msg


def test_option_overload_errors():
    # An option that runs past the end of 'sname' (64 bytes) is bad, even
    # though the bytes after it exist.
    assert reason_of(overloaded(2, "ff", sname="00" * 62 + "0c05")) == "dhcp.bad_option"
    assert reason_of(overloaded(1, "ff", file="00" * 127 + "0c")) == "dhcp.bad_option"
    assert reason_of(overloaded(3, "ff", file="350102", sname="350105")) == "dhcp.bad_option"


# --- parse: header ---------------------------------------------------------------------

@pytest.mark.parametrize("op", [0, 3, 0x80, 0xFF])
def test_bad_op(op):
    assert reason_of(bytes([op]) + OFFER[1:]) == "dhcp.bad_op"


def test_bad_cookie():
    for i in range(4):
        data = bytearray(OFFER)
        data[236 + i] ^= 0x01
        assert reason_of(data) == "dhcp.bad_cookie"
    # A BOOTP message without the cookie at all.
    assert reason_of(OFFER[:236] + bytes(64)) == "dhcp.bad_cookie"


def test_hardware_address_length():
    assert reason_of(OFFER[:2] + bytes([17]) + OFFER[3:]) == "dhcp.bad_hlen"
    long = parse_dhcp(OFFER[:2] + bytes([16]) + OFFER[3:])
    assert long.hlen == 16 and long.chaddr == MAC + bytes(10)
    none = parse_dhcp(OFFER[:2] + bytes([0]) + OFFER[3:])
    assert none.chaddr == b"" and none.hlen == 0
    assert build_dhcp(long)[28:44] == MAC + bytes(10)


def test_sname_and_file_ignored():
    data = bytearray(OFFER)
    data[44:108] = b"s" * 64
    data[108:236] = b"f" * 128
    assert parse_dhcp(data) == parse_dhcp(OFFER)


# --- round trips and fuzzing ----------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)

typed_values = {
    OPTION_MESSAGE_TYPE: st.binary(min_size=1, max_size=1),
    OPTION_SERVER_ID: st.binary(min_size=4, max_size=4),
    OPTION_LEASE_TIME: st.binary(min_size=4, max_size=4),
    OPTION_ROUTER: st.integers(1, 80).flatmap(lambda n: st.binary(min_size=4 * n,
                                                                  max_size=4 * n)),
    OPTION_DOMAIN_NAME: st.binary(min_size=1, max_size=300),
    OPTION_INTERFACE_MTU: st.binary(min_size=2, max_size=2),
    OPTION_CLIENT_ID: st.binary(min_size=2, max_size=20),
}


@st.composite
def option_lists(draw):
    codes = draw(st.lists(st.integers(1, 254).filter(lambda c: c != OPTION_OVERLOAD),
                          unique=True, max_size=10))
    out = []
    for code in codes:
        strategy = typed_values.get(code)
        if strategy is None:
            if code in (OPTION_SUBNET_MASK, OPTION_REQUESTED_IP, OPTION_RENEWAL_TIME,
                        OPTION_REBINDING_TIME):
                strategy = st.binary(min_size=4, max_size=4)
            elif code in (OPTION_DNS_SERVERS,):
                strategy = st.binary(min_size=4, max_size=8).filter(lambda b: len(b) % 4 == 0)
            elif code in (57, OPTION_INTERFACE_MTU):
                strategy = st.binary(min_size=2, max_size=2)
            elif code in (OPTION_HOSTNAME, OPTION_PARAMETER_REQUEST_LIST, OPTION_MESSAGE):
                strategy = st.binary(min_size=1, max_size=40)
            else:
                strategy = st.binary(max_size=600)
        out.append((code, draw(strategy)))
    return out


@st.composite
def messages(draw):
    return DhcpMessage(
        draw(st.sampled_from([BOOTREQUEST, BOOTREPLY])), draw(u32),
        draw(st.binary(max_size=16)), draw(option_lists()), htype=draw(u8), hops=draw(u8),
        secs=draw(u16), flags=draw(u16), ciaddr=draw(ipv4_addrs), yiaddr=draw(ipv4_addrs),
        siaddr=draw(ipv4_addrs), giaddr=draw(ipv4_addrs))


@given(messages(), buffer_types)
def test_round_trip(msg, make):
    raw = build_dhcp(msg)
    assert len(raw) >= BOOTP_MIN_LEN
    assert parse_dhcp(make(raw)) == msg
    assert build_dhcp(parse_dhcp(raw)) == raw


def accessors(msg: DhcpMessage):
    return (msg.message_type, msg.server_id, msg.requested_ip, msg.lease_time,
            msg.renewal_time, msg.rebinding_time, msg.subnet_mask, msg.routers,
            msg.dns_servers, msg.domain_name, msg.interface_mtu, msg.parameter_request_list,
            msg.client_id, msg.hostname, msg.message, msg.broadcast, msg.hlen)


def attempt(data):
    """Parse: a message or WireError("dhcp.*"); a parsed message's accessors
    never fail and it rebuilds to bytes that parse the same."""
    try:
        msg = parse_dhcp(data)
    except WireError as exc:
        assert exc.reason.startswith("dhcp.") and "." in exc.reason
        return None
    accessors(msg)
    assert parse_dhcp(build_dhcp(msg)) == msg
    return msg


@st.composite
def mutated(draw, packets):
    data = bytearray(draw(packets))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "extend"]))
        # Mostly in the options, where the structure is.
        last = max(len(data) - 1, 0)
        pos = draw(st.one_of(st.integers(0, last), st.integers(min(DHCP_MIN_LEN, last), last)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x34, 0x35, 0xFE, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif op == "cut":
            del data[pos:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=40))
    return bytes(data)


@settings(max_examples=500)
@given(st.binary(max_size=700), buffer_types)
def test_random_bytes(data, make):
    attempt(make(data))


@settings(max_examples=500)
@given(st.binary(max_size=200), u8, buffer_types)
def test_random_options_after_a_valid_header(options, overload, make):
    # With and without an overload option ahead of them.
    attempt(make(OFFER[:DHCP_MIN_LEN] + options))
    attempt(make(OFFER[:DHCP_MIN_LEN] + bytes([OPTION_OVERLOAD, 1, overload]) + options))


@settings(max_examples=500)
@given(mutated(st.one_of(st.sampled_from(CAPTURES), messages().map(build_dhcp))),
       buffer_types)
def test_mutated_messages(data, make):
    attempt(make(data))
