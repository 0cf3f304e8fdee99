"""IPv6 (RFC 8200), ICMPv6 (RFC 4443), Neighbor Discovery (RFC 4861, RFC
8106) and MLDv2 (RFC 3810) parse/build."""

from ipaddress import IPv6Address

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from trionet.wire import ipv6 as ipv6_module
from trionet.wire.errors import WireError
from trionet.wire.icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_MLD_QUERY,
    ICMPV6_MLDV2_REPORT,
    ICMPV6_NEIGHBOR_ADVERTISEMENT,
    ICMPV6_NEIGHBOR_SOLICITATION,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_PARAM_HEADER_FIELD,
    ICMPV6_PARAM_NEXT_HEADER,
    ICMPV6_PARAM_OPTION,
    ICMPV6_PARAMETER_PROBLEM,
    ICMPV6_REDIRECT,
    ICMPV6_ROUTER_ADVERTISEMENT,
    ICMPV6_ROUTER_SOLICITATION,
    ICMPV6_TIME_EXCEEDED,
    ICMPV6_UNREACH_PORT,
    INFINITE_LIFETIME,
    IPV6_ALL_MLDV2_ROUTERS,
    IPV6_ALL_NODES,
    IPV6_ALL_ROUTERS,
    MLD_ALLOW_NEW_SOURCES,
    MLD_CHANGE_TO_EXCLUDE,
    MLD_MODE_IS_INCLUDE,
    Icmpv6Message,
    MldQuery,
    MldRecord,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInformation,
    RdnssOption,
    Redirect,
    RouterAdvertisement,
    RouterSolicitation,
    build_icmpv6,
    build_mldv2_report,
    build_neighbor_advertisement,
    build_neighbor_solicitation,
    build_redirect,
    build_router_advertisement,
    build_router_solicitation,
    interface_id_from_mac,
    link_local_from_mac,
    multicast_mac,
    parse_icmpv6,
    parse_mld_query,
    parse_mldv2_report,
    parse_neighbor_advertisement,
    parse_neighbor_solicitation,
    parse_redirect,
    parse_router_advertisement,
    parse_router_solicitation,
    solicited_node_address,
)
from trionet.wire.ipv6 import (
    IPV6_HEADER_LEN,
    MAX_EXTENSION_HEADERS,
    NH_DSTOPTS,
    NH_FRAGMENT,
    NH_HOPOPTS,
    NH_NONE,
    NH_ROUTING,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    FragmentHeader,
    HeaderChain,
    IPv6Header,
    ParameterProblem,
    build_fragment_header,
    build_ipv6,
    build_ipv6_plain,
    fragment_ipv6,
    parse_extension_headers,
    parse_ipv6,
    parse_ipv6_quote,
    quote_for_icmpv6,
)
from trionet.wire.udp import UdpHeader, parse_udp


def frame(*lines: str) -> bytes:
    return bytes.fromhex("".join(lines))


# --- captures ---------------------------------------------------------------------
#
# Captured with an AF_PACKET socket on one end of a veth pair joining two
# throwaway network namespaces (Linux 6.18): A is fd00:99::1 at
# 02:00:00:00:00:01 (link-local fe80::ff:fe00:1), B is fd00:99::2 at
# 02:00:00:00:00:02 (fe80::ff:fe00:2). "Kernel" frames were built by Linux;
# "ours" were built with trionet.wire and sent from A through an AF_PACKET
# socket, and what the kernel did with them is the known answer.

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
GA, GB = IPv6Address("fd00:99::1"), IPv6Address("fd00:99::2")
LL_A, LL_B = IPv6Address("fe80::ff:fe00:1"), IPv6Address("fe80::ff:fe00:2")
UNSPECIFIED = IPv6Address("::")

# Kernel: B's MLDv2 report as its link comes up (hop-by-hop header with a
# router alert and a PadN, hop limit 1).
MLDV2_REPORT_FRAME = frame(
    "3333 0000 0016 0200 0000 0002 86dd 6000",
    "0000 0024 0001 fe80 0000 0000 0000 0000",
    "00ff fe00 0002 ff02 0000 0000 0000 0000",
    "0000 0000 0016 3a00 0502 0000 0100 8f00",
    "7205 0000 0001 0400 0000 ff02 0000 0000",
    "0000 0000 0001 ff00 0002")
# Kernel: B's duplicate address detection for its link-local address, with
# a nonce option (type 14, RFC 7527) this module does not know.
DAD_NS_FRAME = frame(
    "3333 ff00 0002 0200 0000 0002 86dd 6000",
    "0000 0020 3aff 0000 0000 0000 0000 0000",
    "0000 0000 0000 ff02 0000 0000 0000 0000",
    "0001 ff00 0002 8700 5056 0000 0000 fe80",
    "0000 0000 0000 0000 00ff fe00 0002 0e01",
    "64e6 f516 c4c6")
# Kernel: B's router solicitation.
RS_FRAME = frame(
    "3333 0000 0002 0200 0000 0002 86dd 6000",
    "0000 0010 3aff fe80 0000 0000 0000 0000",
    "00ff fe00 0002 ff02 0000 0000 0000 0000",
    "0000 0000 0002 8500 7b2a 0000 0000 0101",
    "0200 0000 0002")
# Kernel: A resolves fd00:99::2 (before a ping), B answers (solicited, override).
NS_FRAME = frame(
    "3333 ff00 0002 0200 0000 0001 86dd 6000",
    "0000 0020 3aff fd00 0099 0000 0000 0000",
    "0000 0000 0001 ff02 0000 0000 0000 0000",
    "0001 ff00 0002 8700 7c65 0000 0000 fd00",
    "0099 0000 0000 0000 0000 0000 0002 0101",
    "0200 0000 0001")
NA_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6000",
    "0000 0020 3aff fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 8800 1acf 6000 0000 fd00",
    "0099 0000 0000 0000 0000 0000 0002 0201",
    "0200 0000 0002")
# Kernel: B probes A's reachability (unicast, from its link-local address);
# A answers solicited, without override and without a link-layer option.
NUD_NS_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6000",
    "0000 0020 3aff fe80 0000 0000 0000 0000",
    "00ff fe00 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 8700 7ce9 0000 0000 fd00",
    "0099 0000 0000 0000 0000 0000 0001 0101",
    "0200 0000 0002")
NUD_NA_FRAME = frame(
    "0200 0000 0002 0200 0000 0001 86dd 6000",
    "0000 0018 3aff fd00 0099 0000 0000 0000",
    "0000 0000 0001 fe80 0000 0000 0000 0000",
    "00ff fe00 0002 8800 3ef4 4000 0000 fd00",
    "0099 0000 0000 0000 0000 0000 0001")
# Kernel: an echo request from a raw ICMPv6 socket on A, B's reply (both
# with flow labels).
ECHO_REQUEST_FRAME = frame(
    "0200 0000 0002 0200 0000 0001 86dd 600a",
    "662b 0019 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 8000 df63 1234 0001 7472",
    "696f 6e65 7420 6970 7636 2065 6368 6f")
ECHO_REPLY_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 600b",
    "6646 0019 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 8100 de63 1234 0001 7472",
    "696f 6e65 7420 6970 7636 2065 6368 6f")
# Ours: an echo request built here (sequence 8), and B's reply.
OUR_ECHO_REQUEST_FRAME = frame(
    "0200 0000 0002 0200 0000 0001 86dd 6000",
    "0000 0018 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 8000 37f0 4242 0008 6275",
    "696c 7420 6279 2074 7269 6f6e 6574")
OUR_ECHO_REPLY_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 600b",
    "6646 0018 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 8100 36f0 4242 0008 6275",
    "696c 7420 6279 2074 7269 6f6e 6574")
# Kernel: a UDP datagram to a closed port of B (veth offloads the UDP
# checksum: the field holds only the pseudo-header sum), and B's error.
UDP_FRAME = frame(
    "0200 0000 0002 0200 0000 0001 86dd 6005",
    "2968 0013 1140 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 9c42 9c43 0013 fb5a 6e6f",
    "626f 6479 2068 6f6d 65")
PORT_UNREACHABLE_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 600a",
    "4eff 0043 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 0104 0f2e 0000 0000 6005",
    "2968 0013 1140 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 9c42 9c43 0013 fb5a 6e6f",
    "626f 6479 2068 6f6d 65")

# Kernel: a 3000-byte UDP payload, bytes(range(256)) * 11 + bytes(184),
# from A to the closed port, which A fragmented for its 1500-byte MTU.
# Stored as each frame's Ethernet, IPv6 and fragment headers; the data is
# the datagram (UDP header below, with the kernel's full checksum, then the
# payload) cut at the fragment offsets.
UDP_BIG_PAYLOAD = bytes(range(256)) * 11 + bytes(184)
UDP_BIG_DATAGRAM = bytes.fromhex("9c42 9c43 0bc0 71f4") + UDP_BIG_PAYLOAD
UDP_FRAGMENT_HEADS = [frame(
    "020000000002 020000000001 86dd",
    f"6005 2968 {plen} 2c40 fd00 0099 0000 0000 0000 0000 0000 0001",
    "fd00 0099 0000 0000 0000 0000 0000 0002",
    f"1100 {field} db10 494b") for plen, field in
    (("05b0", "0001"), ("05b0", "05a9"), ("0078", "0b50"))]
UDP_FRAGMENT_FRAMES = [
    head + UDP_BIG_DATAGRAM[start:start + length] for head, start, length in
    zip(UDP_FRAGMENT_HEADS, (0, 1448, 2896), (1448, 1448, 112))]
# B's port unreachable for the reassembled datagram: headers as captured,
# then 1232 quoted bytes (the error fills the minimum MTU, 1280 bytes).
BIG_PORT_UNREACHABLE_HEAD = frame(
    "020000000001 020000000002 86dd",
    "600a 4eff 04d8 3a40 fd00 0099 0000 0000 0000 0000 0000 0002",
    "fd00 0099 0000 0000 0000 0000 0000 0001",
    "0104 dcbb 0000 0000")
# ... whose quote begins with the reassembled packet's header.
REASSEMBLED_UDP_HEADER = frame(
    "6005 2968 0bc0 1140 fd00 0099 0000 0000 0000 0000 0000 0001",
    "fd00 0099 0000 0000 0000 0000 0000 0002")

# Ours: an echo request with 2000 data bytes, fragmented here for a
# 1280-byte MTU with identification 0xc0ffee; B reassembled it and its reply
# (kernel) came back in two fragments for its 1500-byte MTU.
ECHO_BIG_DATA = bytes(i & 0xFF for i in range(2000))
OUR_FRAGMENT_HEADS = [frame(
    "020000000002 020000000001 86dd",
    f"6000 0000 {plen} 2c40 fd00 0099 0000 0000 0000 0000 0000 0001",
    "fd00 0099 0000 0000 0000 0000 0000 0002",
    f"3a00 {field} 00c0 ffee") for plen, field in (("04d8", "0001"), ("0310", "04d0"))]
ECHO_BIG_REQUEST = bytes.fromhex("8000 f642 4242 0009") + ECHO_BIG_DATA
ECHO_BIG_REPLY = bytes.fromhex("8100 f542 4242 0009") + ECHO_BIG_DATA
REPLY_FRAGMENT_HEADS = [frame(
    "020000000001 020000000002 86dd",
    f"600b 6646 {plen} 2c40 fd00 0099 0000 0000 0000 0000 0000 0002",
    "fd00 0099 0000 0000 0000 0000 0000 0001",
    f"3a00 {field} 0ce6 5c70") for plen, field in (("05b0", "0001"), ("0238", "05a8"))]
REPLY_FRAGMENT_FRAMES = [
    REPLY_FRAGMENT_HEADS[0] + ECHO_BIG_REPLY[:1448],
    REPLY_FRAGMENT_HEADS[1] + ECHO_BIG_REPLY[1448:]]

# Kernel: B's parameter problems for packets built here, each quoting the
# whole invoking packet: a type 0 routing header with segments left 1 ...
RH0_PROBLEM_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6005",
    "341b 0048 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 0400 40ed 0000 002a 6000",
    "0000 0018 2b40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 3b02 0001 0000 0000 fd00",
    "0099 0000 0000 0000 0000 0000 0003")
# ... an unknown destination option 0x9e (action 10) ...
OPTION_10_PROBLEM_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6003",
    "5bde 0038 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 0402 8ea8 0000 002a 6000",
    "0000 0008 3c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 3b00 9e00 0102 0000")
# ... 0xde (action 11) to a unicast address ...
OPTION_11_PROBLEM_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6003",
    "5bde 0038 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 0402 4ea8 0000 002a 6000",
    "0000 0008 3c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 3b00 de00 0102 0000")
# ... 0x9e (action 10) to ff02::1, which is reported even so ...
OPTION_10_MULTICAST_PROBLEM_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6003",
    "5bde 0038 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 0402 8d40 0000 002a 6000",
    "0000 0008 3c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 ff02 0000 0000 0000 0000",
    "0000 0000 0001 3b00 9e00 0102 0000")
# ... hop-by-hop options after destination options ...
MISPLACED_HBH_PROBLEM_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6000",
    "e537 0040 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 0401 2b96 0000 0028 6000",
    "0000 0010 3c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 0000 0104 0000 0000 3b00",
    "0104 0000 0000")
# ... a first fragment (M set) whose length is not a multiple of 8 ...
FRAGMENT_LENGTH_PROBLEM_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6005",
    "341b 0046 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 0400 8e66 0000 0004 6000",
    "0000 0016 2c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 3a00 0001 0000 abce 8000",
    "07ef 4242 000a 6174 6f6d 6963")
# ... and a fragment at offset 65528 with 16 bytes, past 65535.
FRAGMENT_OFFSET_PROBLEM_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 6005",
    "341b 0048 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 0400 92c4 0000 002a 6000",
    "0000 0018 2c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 3a00 fff8 0000 abcf 0000",
    "0000 0000 0000 0000 0000 0000 0000")
# Ours, which B dropped without a word: option 0xde (action 11) to ff02::1,
# and option 0x5e (action 01).
OPTION_11_MULTICAST_FRAME = frame(
    "3333 0000 0001 0200 0000 0001 86dd 6000",
    "0000 0008 3c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 ff02 0000 0000 0000 0000",
    "0000 0000 0001 3b00 de00 0102 0000")
OPTION_01_FRAME = frame(
    "0200 0000 0002 0200 0000 0001 86dd 6000",
    "0000 0017 3c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 3a00 5e00 0102 0000 8000",
    "dfec 4242 0007 736b 6970 206d 65")
# Ours: option 0x1e (action 00) before an echo request, which B answered ...
OPTION_00_FRAME = frame(
    "0200 0000 0002 0200 0000 0001 86dd 6000",
    "0000 0017 3c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 3a00 1e00 0102 0000 8000",
    "dfec 4242 0007 736b 6970 206d 65")
OPTION_00_REPLY_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 600b",
    "6646 000f 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 8100 deec 4242 0007 736b",
    "6970 206d 65")
# ... and an echo request in an atomic fragment (RFC 6946), also answered.
ATOMIC_FRAGMENT_FRAME = frame(
    "0200 0000 0002 0200 0000 0001 86dd 6000",
    "0000 0016 2c40 fd00 0099 0000 0000 0000",
    "0000 0000 0001 fd00 0099 0000 0000 0000",
    "0000 0000 0002 3a00 0000 0000 abcd 8000",
    "07ef 4242 000a 6174 6f6d 6963")
ATOMIC_FRAGMENT_REPLY_FRAME = frame(
    "0200 0000 0001 0200 0000 0002 86dd 600b",
    "6646 000e 3a40 fd00 0099 0000 0000 0000",
    "0000 0000 0002 fd00 0099 0000 0000 0000",
    "0000 0000 0001 8100 06ef 4242 000a 6174",
    "6f6d 6963")
# Ours: a router advertisement from A. B took it: it configured
# 2001:db8:1::ff:fe00:2/64 (valid 86400 s, preferred 14400 s), a default
# route via fe80::ff:fe00:1 with lifetime 1800 s, hop limit 64 and MTU 1400,
# and set its interface's IPv6 MTU to 1400.
RA_FRAME = frame(
    "3333 0000 0001 0200 0000 0001 86dd 6000",
    "0000 0058 3aff fe80 0000 0000 0000 0000",
    "00ff fe00 0001 ff02 0000 0000 0000 0000",
    "0000 0000 0001 8600 e37c 4040 0708 0000",
    "0000 0000 0000 0101 0200 0000 0001 0501",
    "0000 0000 0578 0304 40c0 0001 5180 0000",
    "3840 0000 0000 2001 0db8 0001 0000 0000",
    "0000 0000 0000 1903 0000 0000 0258 2001",
    "0db8 0000 0000 0000 0000 0000 0053")
# Kernel: B's duplicate address detection for the address the RA gave it.
SLAAC_DAD_NS_FRAME = frame(
    "3333 ff00 0002 0200 0000 0002 86dd 6000",
    "0000 0020 3aff 0000 0000 0000 0000 0000",
    "0000 0000 0000 ff02 0000 0000 0000 0000",
    "0001 ff00 0002 8700 cd52 0000 0000 2001",
    "0db8 0001 0000 0000 00ff fe00 0002 0e01",
    "13b5 1323 4bb6")

ICMPV6_CAPTURES = {
    "mldv2_report": MLDV2_REPORT_FRAME, "dad_ns": DAD_NS_FRAME, "rs": RS_FRAME, "ns": NS_FRAME,
    "na": NA_FRAME, "nud_ns": NUD_NS_FRAME, "nud_na": NUD_NA_FRAME,
    "echo_request": ECHO_REQUEST_FRAME, "echo_reply": ECHO_REPLY_FRAME,
    "our_echo_request": OUR_ECHO_REQUEST_FRAME, "our_echo_reply": OUR_ECHO_REPLY_FRAME,
    "port_unreachable": PORT_UNREACHABLE_FRAME, "rh0_problem": RH0_PROBLEM_FRAME,
    "option_10_problem": OPTION_10_PROBLEM_FRAME, "option_11_problem": OPTION_11_PROBLEM_FRAME,
    "option_10_multicast_problem": OPTION_10_MULTICAST_PROBLEM_FRAME,
    "misplaced_hbh_problem": MISPLACED_HBH_PROBLEM_FRAME,
    "fragment_length_problem": FRAGMENT_LENGTH_PROBLEM_FRAME,
    "fragment_offset_problem": FRAGMENT_OFFSET_PROBLEM_FRAME,
    "option_00_reply": OPTION_00_REPLY_FRAME, "atomic_fragment_reply": ATOMIC_FRAGMENT_REPLY_FRAME,
    "ra": RA_FRAME, "slaac_dad_ns": SLAAC_DAD_NS_FRAME}
# Every IPv6 capture whose extension headers walk cleanly ...
WALKABLE_CAPTURES = {
    **ICMPV6_CAPTURES, "udp": UDP_FRAME, "option_00": OPTION_00_FRAME,
    "atomic_fragment": ATOMIC_FRAGMENT_FRAME,
    **{f"udp_fragment_{i}": f for i, f in enumerate(UDP_FRAGMENT_FRAMES)},
    **{f"reply_fragment_{i}": f for i, f in enumerate(REPLY_FRAGMENT_FRAMES)}}
# ... and all of them.
IPV6_CAPTURES = {**WALKABLE_CAPTURES, "option_11_multicast": OPTION_11_MULTICAST_FRAME,
                 "option_01": OPTION_01_FRAME}

# --- helpers and strategies ----------------------------------------------------------

ipv6_addrs = st.integers(0, 2**128 - 1).map(IPv6Address)
unicast_addrs = st.integers(0, 2**128 - 1).filter(lambda n: n >> 120 != 0xFF).map(IPv6Address)
macs = st.binary(min_size=6, max_size=6)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
buffer_types = st.sampled_from([bytes, bytearray, lambda b: memoryview(bytes(b))])


@st.composite
def ipv6_headers(draw):
    return IPv6Header(draw(ipv6_addrs), draw(ipv6_addrs), draw(u8), draw(u8), draw(u8),
                      draw(st.integers(0, 0xFFFFF)))


def packet_of(eth_frame: bytes) -> bytes:
    assert eth_frame[12:14] == b"\x86\xdd"
    return eth_frame[14:]


def icmp_of(eth_frame: bytes):
    """(IPv6 header, the checksum-verified ICMPv6 message) of a frame."""
    ip, payload = parse_ipv6(packet_of(eth_frame))
    chain = parse_extension_headers(ip.next_header, payload)
    assert chain.protocol == PROTO_ICMPV6 and chain.fragment is None
    return ip, parse_icmpv6(chain.payload, ip.src, ip.dst)


def icmp_bytes_of(eth_frame: bytes) -> bytes:
    ip, payload = parse_ipv6(packet_of(eth_frame))
    return bytes(parse_extension_headers(ip.next_header, payload).payload)


def flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def word_sum(data: bytes) -> int:
    """Ones'-complement sum, one 16-bit word at a time (RFC 1071 4.1)."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def reference_icmpv6_checksum(message: bytes, src: IPv6Address, dst: IPv6Address) -> int:
    """The checksum field, computed the slow way from the pseudo-header's
    bytes as RFC 8200 8.1 draws them (checksum field taken as zero)."""
    pseudo = (src.packed + dst.packed + len(message).to_bytes(4, "big")
              + bytes(3) + bytes((PROTO_ICMPV6,)))
    return ~word_sum(pseudo + message[:2] + b"\0\0" + message[4:]) & 0xFFFF


def reason_of(call, *args, **kwargs) -> str:
    with pytest.raises(WireError) as info:
        call(*args, **kwargs)
    assert type(info.value) is WireError, "expected a silent drop, not a ParameterProblem"
    return info.value.reason


def problem_of(call, *args, **kwargs) -> ParameterProblem:
    with pytest.raises(ParameterProblem) as info:
        call(*args, **kwargs)
    return info.value


def options_header(next_header: int, options: bytes) -> bytes:
    """A hop-by-hop or destination options header; ``options`` must fill it
    to a multiple of 8 bytes with the two header bytes."""
    assert (len(options) + 2) % 8 == 0
    return bytes((next_header, (len(options) + 2) // 8 - 1)) + options


def routing_header(next_header: int, routing_type: int, segments_left: int,
                   addresses: int = 1) -> bytes:
    return (bytes((next_header, 2 * addresses, routing_type, segments_left)) + bytes(4)
            + bytes(16 * addresses))


def walk(next_header: int, data: bytes, **kwargs) -> HeaderChain:
    return parse_extension_headers(next_header, data, **kwargs)


# --- captured ICMPv6 ------------------------------------------------------------------

def test_captured_echo_request_and_reply():
    packet = packet_of(ECHO_REQUEST_FRAME)
    ip, payload = parse_ipv6(packet)
    assert ip == IPv6Header(GA, GB, PROTO_ICMPV6, hop_limit=64, traffic_class=0,
                            flow_label=0xA662B)
    assert isinstance(payload, memoryview) and payload.obj is packet
    assert len(payload) == 25
    chain = walk(ip.next_header, payload)
    assert (chain.protocol, chain.offset, chain.next_header_pointer) == (PROTO_ICMPV6, 0, 6)
    assert chain.fragment is None and chain.router_alert is None
    request = parse_icmpv6(chain.payload, ip.src, ip.dst)
    assert (request.type, request.code) == (ICMPV6_ECHO_REQUEST, 0)
    assert (request.identifier, request.sequence) == (0x1234, 1)
    assert request.payload == b"trionet ipv6 echo" and not request.is_error
    assert build_icmpv6(request, ip.src, ip.dst) == bytes(payload)
    assert build_ipv6(ip, bytes(payload)) == packet

    reply_ip, reply = icmp_of(ECHO_REPLY_FRAME)
    assert (reply_ip.src, reply_ip.dst, reply_ip.flow_label) == (GB, GA, 0xB6646)
    # RFC 4443 4.2: identifier, sequence and data come back.
    ours = Icmpv6Message.echo_reply(request.identifier, request.sequence, request.payload)
    assert ours == reply
    assert build_icmpv6(ours, GB, GA) == icmp_bytes_of(ECHO_REPLY_FRAME)
    assert build_ipv6(IPv6Header(GB, GA, PROTO_ICMPV6, flow_label=0xB6646),
                      build_icmpv6(ours, GB, GA)) == packet_of(ECHO_REPLY_FRAME)


def test_our_echo_request_answered():
    ours = build_icmpv6(Icmpv6Message.echo_request(0x4242, 8, b"built by trionet"), GA, GB)
    assert build_ipv6_plain(GA, GB, PROTO_ICMPV6, ours) == packet_of(OUR_ECHO_REQUEST_FRAME)
    _, reply = icmp_of(OUR_ECHO_REPLY_FRAME)
    assert reply == Icmpv6Message.echo_reply(0x4242, 8, b"built by trionet")


def test_captured_neighbor_solicitation_and_advertisement():
    ip, msg = icmp_of(NS_FRAME)
    # RFC 4861 7.2.2: sent with hop limit 255 to the solicited-node address,
    # RFC 2464 7: at its multicast MAC.
    assert (ip.src, ip.dst, ip.hop_limit) == (GA, solicited_node_address(GB), 255)
    assert NS_FRAME[:6] == multicast_mac(ip.dst) == bytes.fromhex("3333ff000002")
    ns = parse_neighbor_solicitation(msg)
    assert ns == NeighborSolicitation(GB, MAC_A)
    assert build_neighbor_solicitation(ns, GA) == icmp_bytes_of(NS_FRAME)
    assert build_ipv6_plain(GA, ip.dst, PROTO_ICMPV6, build_neighbor_solicitation(ns, GA),
                            hop_limit=255) == packet_of(NS_FRAME)

    ip, msg = icmp_of(NA_FRAME)
    assert (ip.src, ip.dst, ip.hop_limit) == (GB, GA, 255)
    na = parse_neighbor_advertisement(msg)
    assert na == NeighborAdvertisement(GB, router=False, solicited=True, override=True,
                                       target_lladdr=MAC_B)
    assert build_neighbor_advertisement(na, GB, GA) == icmp_bytes_of(NA_FRAME)


def test_captured_unicast_reachability_probe():
    ip, msg = icmp_of(NUD_NS_FRAME)
    assert (ip.src, ip.dst) == (LL_B, GA)
    ns = parse_neighbor_solicitation(msg)
    assert ns == NeighborSolicitation(GA, MAC_B)
    assert build_neighbor_solicitation(ns, LL_B, GA) == bytes(icmp_bytes_of(NUD_NS_FRAME))
    ip, msg = icmp_of(NUD_NA_FRAME)
    na = parse_neighbor_advertisement(msg)
    assert na == NeighborAdvertisement(GA, solicited=True)
    assert na.target_lladdr is None and not na.override
    assert build_neighbor_advertisement(na, GA, LL_B) == icmp_bytes_of(NUD_NA_FRAME)


@pytest.mark.parametrize("eth_frame, target", [
    (DAD_NS_FRAME, LL_B), (SLAAC_DAD_NS_FRAME, IPv6Address("2001:db8:1::ff:fe00:2"))])
def test_captured_duplicate_address_detection(eth_frame, target):
    ip, msg = icmp_of(eth_frame)
    # RFC 4862 5.4.2: from the unspecified address, no source link-layer
    # address; the nonce option (RFC 7527) is unknown here and skipped.
    assert (ip.src, ip.dst, ip.hop_limit) == (UNSPECIFIED, solicited_node_address(target), 255)
    assert msg.payload[16] == 14
    assert parse_neighbor_solicitation(msg) == NeighborSolicitation(target, None)
    # Without the nonce, ours is the same message but for the option.
    ours = build_neighbor_solicitation(NeighborSolicitation(target), UNSPECIFIED)
    assert ours[:2] == bytes(icmp_bytes_of(eth_frame))[:2]
    assert ours[4:] == bytes(icmp_bytes_of(eth_frame))[4:24]
    assert parse_icmpv6(ours, UNSPECIFIED, ip.dst).payload == bytes(msg.payload[:16])


def test_captured_router_solicitation():
    ip, msg = icmp_of(RS_FRAME)
    assert (ip.src, ip.dst, ip.hop_limit) == (LL_B, IPV6_ALL_ROUTERS, 255)
    assert RS_FRAME[:6] == multicast_mac(IPV6_ALL_ROUTERS)
    rs = parse_router_solicitation(msg)
    assert rs == RouterSolicitation(MAC_B)
    assert build_router_solicitation(rs, LL_B) == icmp_bytes_of(RS_FRAME)


def test_captured_mldv2_report():
    ip, payload = parse_ipv6(packet_of(MLDV2_REPORT_FRAME))
    assert (ip.src, ip.dst, ip.hop_limit, ip.next_header) == (
        LL_B, IPV6_ALL_MLDV2_ROUTERS, 1, NH_HOPOPTS)
    assert MLDV2_REPORT_FRAME[:6] == bytes.fromhex("333300000016")
    chain = walk(ip.next_header, payload)
    # RFC 3810 5: a hop-by-hop header with a router alert (RFC 2711 value 0:
    # MLD); the ICMPv6 Next Header is at byte 40, the start of hop-by-hop.
    assert (chain.protocol, chain.offset, chain.router_alert) == (PROTO_ICMPV6, 8, 0)
    assert chain.next_header_pointer == 40 and chain.fragment is None
    msg = parse_icmpv6(chain.payload, ip.src, ip.dst)
    assert msg.type == ICMPV6_MLDV2_REPORT
    records = parse_mldv2_report(msg)
    group = IPv6Address("ff02::1:ff00:2")
    assert records == (MldRecord(MLD_CHANGE_TO_EXCLUDE, group, ()),)
    assert build_mldv2_report([(MLD_CHANGE_TO_EXCLUDE, group, ())], LL_B) \
        == bytes(chain.payload)
    assert build_mldv2_report(records, LL_B, IPV6_ALL_MLDV2_ROUTERS) == bytes(chain.payload)


def test_router_advertisement_taken_by_the_kernel():
    ra = RouterAdvertisement(
        cur_hop_limit=64, managed=False, other=True, router_lifetime=1800, reachable_time=0,
        retrans_timer=0, source_lladdr=MAC_A, mtu=1400,
        prefixes=(PrefixInformation(IPv6Address("2001:db8:1::"), 64, True, True, 86400, 14400),),
        rdnss=(RdnssOption(600, (IPv6Address("2001:db8::53"),)),))
    message = build_router_advertisement(ra, LL_A)
    assert build_ipv6_plain(LL_A, IPV6_ALL_NODES, PROTO_ICMPV6, message, hop_limit=255) \
        == packet_of(RA_FRAME)
    ip, msg = icmp_of(RA_FRAME)
    assert parse_router_advertisement(msg) == ra
    # RFC 4861 4.2 and 4.6: the fields where the RFC puts them.
    assert message[4:8] == bytes((64, 0x40)) + (1800).to_bytes(2, "big")
    assert message[16:24] == b"\x01\x01" + MAC_A
    assert message[24:32] == b"\x05\x01\0\0" + (1400).to_bytes(4, "big")
    assert message[32:36] == bytes((3, 4, 64, 0xC0))
    assert message[64:68] == bytes((25, 3, 0, 0))  # RFC 8106 5.1
    assert parse_router_advertisement(msg).prefixes[0].network.with_prefixlen \
        == "2001:db8:1::/64"


# --- captured errors --------------------------------------------------------------------

def test_captured_port_unreachable():
    original = packet_of(UDP_FRAME)
    ip, msg = icmp_of(PORT_UNREACHABLE_FRAME)
    assert (msg.type, msg.code, msg.rest) == (ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_PORT, 0)
    assert msg.is_error
    # RFC 4443 2.4(c): the whole (short) invoking packet is quoted.
    assert msg.payload == original
    assert quote_for_icmpv6(original) == original
    ours = Icmpv6Message.error(ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_PORT,
                               quote_for_icmpv6(original))
    assert build_icmpv6(ours, GB, GA) == icmp_bytes_of(PORT_UNREACHABLE_FRAME)
    quoted_ip, quoted, length = parse_ipv6_quote(msg.payload)
    assert (quoted_ip.src, quoted_ip.dst, quoted_ip.next_header, length) == (GA, GB, PROTO_UDP, 19)
    # veth offloaded the UDP checksum: only the pseudo-header sum is there.
    assert reason_of(parse_udp, quoted, GA, GB) == "udp.bad_checksum"
    assert parse_udp(quoted, GA, GB, verify_checksum=False) \
        == (UdpHeader(40002, 40003), b"nobody home")


def reassemble(frames):
    """Fragments' data by offset, with the first fragment's IPv6 header."""
    pieces = {}
    first = protocol = None
    for eth_frame in frames:
        ip, payload = parse_ipv6(packet_of(eth_frame))
        chain = walk(ip.next_header, payload)
        frag = chain.fragment
        assert frag is not None and not frag.is_atomic
        assert chain.offset == 8 and chain.next_header_pointer == 40
        pieces[frag.offset_bytes] = (bytes(chain.payload), frag.more, frag.identification)
        if frag.offset_bytes == 0:
            first, protocol = ip, chain.protocol
    data = b""
    for offset in sorted(pieces):
        assert offset == len(data)
        data += pieces[offset][0]
    assert not pieces[max(pieces)][1]
    assert len({ident for _, _, ident in pieces.values()}) == 1
    return first, protocol, data


def test_captured_udp_fragments_and_their_error():
    first, protocol, datagram = reassemble(UDP_FRAGMENT_FRAMES)
    assert protocol == PROTO_UDP and datagram == UDP_BIG_DATAGRAM
    # The kernel's UDP checksum covers the reassembled datagram.
    assert parse_udp(datagram, first.src, first.dst) == (UdpHeader(40002, 40003),
                                                         UDP_BIG_PAYLOAD)
    reassembled = build_ipv6(IPv6Header(first.src, first.dst, PROTO_UDP, first.hop_limit,
                                        first.traffic_class, first.flow_label), datagram)
    assert reassembled[:40] == REASSEMBLED_UDP_HEADER
    # RFC 4443 2.4(c): the error quotes as much as fits in 1280 bytes; the
    # kernel's checksum holds over our quote.
    quote = quote_for_icmpv6(reassembled)
    assert len(quote) == 1232
    error = BIG_PORT_UNREACHABLE_HEAD + quote
    assert len(error) - 14 == 1280
    ip, msg = icmp_of(error)
    assert (msg.type, msg.code) == (ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_PORT)
    assert build_icmpv6(Icmpv6Message.error(msg.type, msg.code, quote), GB, GA) \
        == bytes(icmp_bytes_of(error))
    quoted_ip, quoted, length = parse_ipv6_quote(msg.payload)
    assert (quoted_ip.next_header, length, len(quoted)) == (PROTO_UDP, 3008, 1192)


def test_fragment_ipv6_cuts_where_the_kernel_does():
    # RFC 8200 4.5: for a 1500-byte MTU, 1448 data bytes a fragment.
    header = IPv6Header(GA, GB, PROTO_UDP, 64, 0, 0x52968)
    assert fragment_ipv6(header, UDP_BIG_DATAGRAM, 1500, 0xDB10494B) \
        == [packet_of(f) for f in UDP_FRAGMENT_FRAMES]
    reply_header = IPv6Header(GB, GA, PROTO_ICMPV6, 64, 0, 0xB6646)
    assert fragment_ipv6(reply_header, ECHO_BIG_REPLY, 1500, 0x0CE65C70) \
        == [packet_of(f) for f in REPLY_FRAGMENT_FRAMES]


def test_our_fragments_reassembled_by_the_kernel():
    request = build_icmpv6(Icmpv6Message.echo_request(0x4242, 9, ECHO_BIG_DATA), GA, GB)
    assert request == ECHO_BIG_REQUEST
    ours = fragment_ipv6(IPv6Header(GA, GB, PROTO_ICMPV6), request, 1280, 0xC0FFEE)
    assert [len(p) for p in ours] == [1280, 824]
    assert ours == [packet_of(OUR_FRAGMENT_HEADS[0] + request[:1232]),
                    packet_of(OUR_FRAGMENT_HEADS[1] + request[1232:])]
    # B reassembled them and answered; its reply reassembles too.
    first, protocol, message = reassemble(REPLY_FRAGMENT_FRAMES)
    assert protocol == PROTO_ICMPV6
    reply = parse_icmpv6(message, first.src, first.dst)
    assert reply == Icmpv6Message.echo_reply(0x4242, 9, ECHO_BIG_DATA)


@pytest.mark.parametrize("eth_frame, reason, code, pointer", [
    (RH0_PROBLEM_FRAME, "ipv6.routing_type0", ICMPV6_PARAM_HEADER_FIELD, 42),
    (OPTION_10_PROBLEM_FRAME, "ipv6.unknown_option", ICMPV6_PARAM_OPTION, 42),
    (OPTION_11_PROBLEM_FRAME, "ipv6.unknown_option", ICMPV6_PARAM_OPTION, 42),
    (OPTION_10_MULTICAST_PROBLEM_FRAME, "ipv6.unknown_option", ICMPV6_PARAM_OPTION, 42),
    (MISPLACED_HBH_PROBLEM_FRAME, "ipv6.misplaced_hop_by_hop", ICMPV6_PARAM_NEXT_HEADER, 40),
    (FRAGMENT_LENGTH_PROBLEM_FRAME, "ipv6.bad_fragment_length", ICMPV6_PARAM_HEADER_FIELD, 4),
    (FRAGMENT_OFFSET_PROBLEM_FRAME, "ipv6.bad_fragment_offset", ICMPV6_PARAM_HEADER_FIELD, 42),
])
def test_parameter_problems_match_the_kernel(eth_frame, reason, code, pointer):
    ip, msg = icmp_of(eth_frame)
    assert (msg.type, msg.code, msg.pointer) == (ICMPV6_PARAMETER_PROBLEM, code, pointer)
    invoking = bytes(msg.payload)
    quoted_ip, payload = parse_ipv6(invoking)
    problem = problem_of(walk, quoted_ip.next_header, payload)
    assert (problem.reason, problem.code, problem.pointer) == (reason, code, pointer)
    assert problem.should_report(quoted_ip.dst)
    ours = Icmpv6Message.error(ICMPV6_PARAMETER_PROBLEM, problem.code,
                               quote_for_icmpv6(invoking), pointer=problem.pointer)
    assert build_icmpv6(ours, ip.src, ip.dst) == icmp_bytes_of(eth_frame)


def test_silent_drops_match_the_kernel():
    # RFC 8200 4.2, action 11: no error for a multicast destination.
    ip, payload = parse_ipv6(packet_of(OPTION_11_MULTICAST_FRAME))
    problem = problem_of(walk, ip.next_header, payload)
    assert (problem.code, problem.pointer, problem.to_multicast) == (ICMPV6_PARAM_OPTION, 42,
                                                                     False)
    assert not problem.should_report(ip.dst) and problem.should_report(GB)
    # Action 01: discarded, never reported.
    ip, payload = parse_ipv6(packet_of(OPTION_01_FRAME))
    assert reason_of(walk, ip.next_header, payload) == "ipv6.unknown_option"


@pytest.mark.parametrize("request_frame, reply_frame, offset, sequence, data", [
    (OPTION_00_FRAME, OPTION_00_REPLY_FRAME, 8, 7, b"skip me"),
    (ATOMIC_FRAGMENT_FRAME, ATOMIC_FRAGMENT_REPLY_FRAME, 8, 10, b"atomic"),
])
def test_headers_walked_through_match_the_kernel(request_frame, reply_frame, offset, sequence,
                                                 data):
    ip, payload = parse_ipv6(packet_of(request_frame))
    chain = walk(ip.next_header, payload)
    assert (chain.protocol, chain.offset, chain.next_header_pointer) == (PROTO_ICMPV6, offset, 40)
    assert chain.fragment is None
    assert parse_icmpv6(chain.payload, ip.src, ip.dst) \
        == Icmpv6Message.echo_request(0x4242, sequence, data)
    assert icmp_of(reply_frame)[1] == Icmpv6Message.echo_reply(0x4242, sequence, data)


# --- checks over every capture -----------------------------------------------------------

@pytest.mark.parametrize("eth_frame", ICMPV6_CAPTURES.values(), ids=ICMPV6_CAPTURES)
def test_captured_checksums_match_a_word_by_word_sum(eth_frame):
    ip, _ = parse_ipv6(packet_of(eth_frame))
    message = bytes(icmp_bytes_of(eth_frame))
    assert int.from_bytes(message[2:4], "big") == reference_icmpv6_checksum(message, ip.src,
                                                                            ip.dst)


@pytest.mark.parametrize("eth_frame", ICMPV6_CAPTURES.values(), ids=ICMPV6_CAPTURES)
def test_every_captured_icmpv6_bit_flip_detected(eth_frame):
    ip, _ = parse_ipv6(packet_of(eth_frame))
    message = bytes(icmp_bytes_of(eth_frame))
    for bit in range(len(message) * 8):
        with pytest.raises(WireError) as info:
            parse_icmpv6(flipped(message, bit), ip.src, ip.dst)
        assert info.value.reason == "icmpv6.bad_checksum"
    # The pseudo-header's addresses are covered too (RFC 4443 2.3).
    for bit in range(0, 128, 7):
        for src, dst in ((IPv6Address(int(ip.src) ^ (1 << bit)), ip.dst),
                         (ip.src, IPv6Address(int(ip.dst) ^ (1 << bit)))):
            with pytest.raises(WireError) as info:
                parse_icmpv6(message, src, dst)
            assert info.value.reason == "icmpv6.bad_checksum"
    assert parse_icmpv6(flipped(message, 0), ip.src, ip.dst, verify_checksum=False).type \
        == message[0] ^ 0x80


@pytest.mark.parametrize("eth_frame", ICMPV6_CAPTURES.values(), ids=ICMPV6_CAPTURES)
def test_captured_icmpv6_truncated_at_every_length(eth_frame):
    ip, _ = parse_ipv6(packet_of(eth_frame))
    message = bytes(icmp_bytes_of(eth_frame))
    for length in range(len(message)):
        with pytest.raises(WireError) as info:
            parse_icmpv6(message[:length], ip.src, ip.dst)
        assert info.value.reason == ("icmpv6.truncated" if length < 8 else "icmpv6.bad_checksum")


@pytest.mark.parametrize("eth_frame", IPV6_CAPTURES.values(), ids=IPV6_CAPTURES)
def test_captured_ipv6_truncated_at_every_length(eth_frame):
    packet = packet_of(eth_frame)
    for length in range(len(packet)):
        assert reason_of(parse_ipv6, packet[:length]) == "ipv6.truncated"
    # Link padding past the payload length is dropped.
    ip, payload = parse_ipv6(packet + bytes(20))
    assert bytes(payload) == packet[40:]
    assert build_ipv6(ip, payload) == packet


@pytest.mark.parametrize("eth_frame", WALKABLE_CAPTURES.values(), ids=WALKABLE_CAPTURES)
def test_captured_extension_headers_truncated(eth_frame):
    ip, payload = parse_ipv6(packet_of(eth_frame))
    chain = walk(ip.next_header, payload)
    for length in range(chain.offset):
        assert reason_of(walk, ip.next_header, bytes(payload[:length])) == "ipv6.truncated"


# --- IPv6 header -------------------------------------------------------------------------

def test_ipv6_header_layout():
    # RFC 8200 3: version 4 bits, traffic class 8, flow label 20.
    header = IPv6Header(IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2"), PROTO_TCP,
                        hop_limit=17, traffic_class=0xAB, flow_label=0xCDEF1)
    raw = build_ipv6(header, b"xyz")
    assert raw[:8] == bytes.fromhex("6abcdef1 0003 06 11")
    assert raw[8:24] == header.src.packed and raw[24:40] == header.dst.packed
    assert raw[40:] == b"xyz"
    assert parse_ipv6(raw)[0] == header


@given(ipv6_headers(), st.binary(max_size=1600), st.binary(max_size=30), buffer_types)
def test_ipv6_round_trip(header, payload, link_padding, make):
    raw = build_ipv6(header, payload)
    assert len(raw) == IPV6_HEADER_LEN + len(payload)
    data = make(raw + link_padding)
    parsed, got = parse_ipv6(data)
    assert parsed == header
    assert bytes(got) == payload
    assert isinstance(got, memoryview)
    assert got.obj is (data.obj if isinstance(data, memoryview) else data)
    assert build_ipv6(parsed, got) == raw


@given(ipv6_addrs, ipv6_addrs, u8, u8, st.binary(max_size=64))
def test_build_ipv6_plain_matches_build_ipv6(src, dst, next_header, hop_limit, payload):
    plain = build_ipv6_plain(src, dst, next_header, payload, hop_limit=hop_limit)
    assert plain == build_ipv6(IPv6Header(src, dst, next_header, hop_limit), payload)
    assert parse_ipv6(plain)[0] == IPv6Header(src, dst, next_header, hop_limit)


def test_parse_ipv6_rejections():
    good = packet_of(ECHO_REQUEST_FRAME)
    for version in (0, 4, 5, 7, 15):
        bad = bytes((version << 4 | (good[0] & 0x0F),)) + good[1:]
        with pytest.raises(WireError) as info:
            parse_ipv6(bad)
        assert info.value.reason == "ipv6.bad_version"
    too_long = good[:4] + (len(good) - 39).to_bytes(2, "big") + good[6:]
    assert reason_of(parse_ipv6, too_long) == "ipv6.truncated"
    assert reason_of(parse_ipv6, b"") == "ipv6.truncated"
    # A shorter payload length ends the payload early.
    short = good[:4] + (8).to_bytes(2, "big") + good[6:]
    assert bytes(parse_ipv6(short)[1]) == good[40:48]
    # Payload length 0 (a jumbogram, RFC 2675, if hop-by-hop follows) reads
    # as empty; the chain walk then finds no room for hop-by-hop.
    jumbo = good[:4] + b"\0\0" + bytes((NH_HOPOPTS,)) + good[7:]
    ip, payload = parse_ipv6(jumbo)
    assert len(payload) == 0
    assert reason_of(walk, ip.next_header, payload) == "ipv6.truncated"


def test_build_ipv6_rejects():
    base = IPv6Header(GA, GB, PROTO_UDP)
    assert len(build_ipv6(base, bytes(0xFFFF))) == 0xFFFF + 40
    with pytest.raises(ValueError, match="too long"):
        build_ipv6(base, bytes(0x10000))
    with pytest.raises(ValueError, match="too long"):
        build_ipv6_plain(GA, GB, PROTO_UDP, bytes(0x10000))
    for field, value in (("traffic_class", 256), ("traffic_class", -1), ("flow_label", 1 << 20),
                         ("flow_label", -1), ("hop_limit", 256), ("next_header", 256),
                         ("hop_limit", -1)):
        fields = {"src": GA, "dst": GB, "next_header": PROTO_UDP, field: value}
        with pytest.raises(ValueError):
            build_ipv6(IPv6Header(**fields), b"")
    for kwargs in ({"hop_limit": 256}, {"hop_limit": -1}):
        with pytest.raises(ValueError):
            build_ipv6_plain(GA, GB, PROTO_UDP, b"", **kwargs)
    with pytest.raises(ValueError):
        build_ipv6_plain(GA, GB, 300, b"")


def test_parse_ipv6_quote():
    packet = packet_of(ECHO_REQUEST_FRAME)
    # A quote cut short still parses; the payload length is the original's.
    header, quoted, length = parse_ipv6_quote(packet[:48])
    assert header == parse_ipv6(packet)[0]
    assert (bytes(quoted), length) == (packet[40:48], 25)
    for bad in (packet[:39], b"\x40" + packet[1:]):
        with pytest.raises(WireError) as info:
            parse_ipv6_quote(bad)
        assert info.value.reason == "icmpv6.bad_quote"


def test_quote_for_icmpv6():
    big = build_ipv6_plain(GA, GB, PROTO_UDP, bytes(range(256)) * 8)
    # RFC 4443 2.4(c): 1280 - 40 - 8 bytes of the invoking packet.
    assert quote_for_icmpv6(big) == big[:1232]
    assert quote_for_icmpv6(memoryview(big)) == big[:1232]
    assert type(quote_for_icmpv6(memoryview(big))) is bytes
    assert quote_for_icmpv6(big, limit=100) == big[:100]
    assert quote_for_icmpv6(big, limit=-5) == b""
    small = packet_of(ECHO_REQUEST_FRAME)
    assert quote_for_icmpv6(small + bytes(20)) == small  # link padding is not quoted
    assert quote_for_icmpv6(bytearray(small[:30])) == small[:30]
    assert quote_for_icmpv6(b"") == b"" and quote_for_icmpv6(b"\x60\0") == b"\x60\0"


# --- extension headers --------------------------------------------------------------------

def test_no_extension_headers_fast_path():
    data = b"a TCP segment"
    chain = walk(PROTO_TCP, data)
    assert chain == HeaderChain(PROTO_TCP, memoryview(data), 0, 6, None, None)
    assert chain.payload.obj is data
    assert walk(NH_NONE, data).protocol == NH_NONE
    # Headers this walk does not process end it like an upper layer (ESP).
    assert walk(50, data).protocol == 50


def test_a_full_chain():
    # RFC 8200 4.1's recommended order: hop-by-hop, destination options,
    # routing, fragment, destination options, upper layer.
    hbh = options_header(NH_DSTOPTS, bytes((5, 2, 0, 0, 1, 0)))  # router alert 0, PadN
    dst1 = options_header(NH_ROUTING, bytes((0x1E, 2, 9, 9, 0, 0)))  # skippable option, Pad1s
    rh = routing_header(NH_FRAGMENT, 0, 0)  # type 0, nothing left: ignored (RFC 8200 4.4)
    frag = build_fragment_header(NH_DSTOPTS, 0, False, 77)  # atomic (RFC 6946)
    dst2 = options_header(PROTO_UDP, bytes((1, 12)) + bytes(12))  # PadN of 14: see below
    upper = b"upper-layer data"
    data = hbh + dst1 + rh + frag + dst2 + upper
    # PadN of 14 is more padding than Linux (and we) accept.
    assert reason_of(walk, NH_HOPOPTS, data) == "ipv6.bad_padding"
    dst2 = options_header(PROTO_UDP, bytes((0x0A, 2, 0, 0, 0x0B, 2, 0, 0, 0x0C, 0, 1, 0, 0, 0)))
    data = hbh + dst1 + rh + frag + dst2 + upper
    chain = walk(NH_HOPOPTS, data)
    end = len(data) - len(upper)
    assert (chain.protocol, chain.offset, bytes(chain.payload)) == (PROTO_UDP, end, upper)
    # The UDP Next Header is the second destination header's first byte.
    assert chain.next_header_pointer == 40 + end - len(dst2)
    assert chain.router_alert == 0 and chain.fragment is None


def test_walk_with_memoryview_and_bytearray_inputs():
    data = options_header(PROTO_UDP, bytes(6)) + b"payload"
    for buffer in (bytearray(data), memoryview(data)):
        chain = walk(NH_DSTOPTS, buffer)
        assert bytes(chain.payload) == b"payload" and isinstance(chain.payload, memoryview)
        assert chain.payload.obj is (data if isinstance(buffer, memoryview) else buffer)


def test_routing_headers():
    for routing_type in (0, 2, 3, 4, 253):
        data = routing_header(PROTO_TCP, routing_type, 0) + b"x"
        assert walk(NH_ROUTING, data).protocol == PROTO_TCP  # RFC 8200 4.4: ignored
    # RFC 5095 3: type 0 with segments left is an error at the type field.
    hbh = options_header(NH_ROUTING, bytes(6))
    problem = problem_of(walk, NH_HOPOPTS, hbh + routing_header(PROTO_TCP, 0, 1))
    assert (problem.reason, problem.code, problem.pointer) == ("ipv6.routing_type0", 0, 50)
    assert not problem.to_multicast
    assert problem.should_report(GB) and not problem.should_report(IPV6_ALL_NODES)
    for routing_type in (2, 3, 4, 200):
        problem = problem_of(walk, NH_ROUTING, routing_header(PROTO_TCP, routing_type, 3))
        assert (problem.reason, problem.code, problem.pointer) == (
            "ipv6.unsupported_routing", 0, 42)
    # A header shorter than its length byte says (RFC 8200 4.4: 8-byte units).
    rh = routing_header(PROTO_TCP, 0, 0, addresses=2)
    assert len(rh) == 40 and walk(NH_ROUTING, rh).offset == 40
    for length in range(len(rh)):
        assert reason_of(walk, NH_ROUTING, rh[:length]) == "ipv6.truncated"


@pytest.mark.parametrize("header_type", [NH_HOPOPTS, NH_DSTOPTS])
def test_unknown_option_actions(header_type):
    def with_option(opt_type, before=b""):
        options = before + bytes((opt_type, 1, 0xAA))
        options += bytes(-(len(options) + 2) % 8)
        padded = options[:len(before) + 3]
        rest = len(options) - len(padded)
        if rest == 1:
            padded += b"\0"
        elif rest:
            padded += bytes((1, rest - 2)) + bytes(rest - 2)
        return options_header(PROTO_UDP, padded) + b"data"

    # RFC 8200 4.2: 00 skip ...
    for opt_type in (0x02, 0x1E, 0x3F):
        chain = walk(header_type, with_option(opt_type))
        assert (chain.protocol, bytes(chain.payload)) == (PROTO_UDP, b"data")
    # ... 01 discard silently ...
    for opt_type in (0x40, 0x5E, 0x7F):
        assert reason_of(walk, header_type, with_option(opt_type)) == "ipv6.unknown_option"
    # ... 10 discard and report, even to multicast ...
    for opt_type in (0x80, 0x9E, 0xBF):
        problem = problem_of(walk, header_type, with_option(opt_type))
        assert (problem.code, problem.pointer, problem.to_multicast) == (2, 42, True)
        assert problem.should_report(IPV6_ALL_NODES) and problem.should_report(GB)
    # ... 11 discard and report unless the destination is multicast.
    for opt_type in (0xC0, 0xC2, 0xDE, 0xFF):  # 0xC2: jumbo payload, unsupported
        problem = problem_of(walk, header_type, with_option(opt_type))
        assert (problem.code, problem.pointer, problem.to_multicast) == (2, 42, False)
        assert not problem.should_report(IPV6_ALL_NODES) and problem.should_report(GB)
    # The pointer follows the option (after a skipped option and a Pad1).
    problem = problem_of(walk, header_type, with_option(0x9E, bytes((0x1E, 1, 0, 0))))
    assert problem.pointer == 40 + 2 + 4 + 1 - 1  # 0x1E option (3 bytes) then a Pad1
    assert problem.reason == "ipv6.unknown_option"


def test_option_errors():
    def dst(options: bytes) -> bytes:
        return options_header(PROTO_UDP, options)

    # An option whose length runs past the header.
    assert reason_of(walk, NH_DSTOPTS, dst(bytes((0x1E, 5, 0, 0, 0, 0)))) == "ipv6.bad_option"
    # An option type in the header's last byte, with no room for its length.
    assert reason_of(walk, NH_DSTOPTS, dst(bytes((1, 3, 0, 0, 0, 0x1E)))) == "ipv6.bad_option"
    # RFC 2711 2.1: a router alert carries 2 bytes.
    assert reason_of(walk, NH_HOPOPTS, dst(bytes((5, 3, 0, 0, 0, 0)))) == "ipv6.bad_option"
    assert walk(NH_HOPOPTS, dst(bytes((5, 2, 0x12, 0x34, 1, 0)))).router_alert == 0x1234
    # In destination options it is just an option with action 00.
    assert walk(NH_DSTOPTS, dst(bytes((5, 3, 0, 0, 0, 0)))).router_alert is None
    # Padding: at most 7 bytes in a row, as Linux (RFC 4942 2.1.9.5).
    assert walk(NH_DSTOPTS, dst(bytes(6))).protocol == PROTO_UDP
    assert walk(NH_DSTOPTS, dst(bytes((1, 4, 0, 0, 0, 0)))).protocol == PROTO_UDP
    seven = bytes(7) + bytes((0x1E, 0)) + bytes((1, 3, 0, 0, 0))
    assert walk(NH_DSTOPTS, dst(seven)).protocol == PROTO_UDP
    eight = bytes((1, 6)) + bytes(6) + bytes((0x1E, 0)) + bytes((1, 2, 0, 0))
    assert reason_of(walk, NH_DSTOPTS, dst(eight)) == "ipv6.bad_padding"
    assert reason_of(walk, NH_DSTOPTS, options_header(PROTO_UDP, bytes(14))) == "ipv6.bad_padding"
    assert reason_of(walk, NH_DSTOPTS, dst(bytes((1, 0)) + bytes((1, 2, 0, 0)) + bytes(8))) \
        == "ipv6.bad_padding"
    # Padding runs end at a real option.
    assert walk(NH_DSTOPTS, options_header(
        PROTO_UDP, bytes(6) + bytes((0x1E, 0)) + bytes(6))).protocol == PROTO_UDP
    # At most 8 options a header that are not padding.
    eight = bytes((0x1E, 0)) * 8 + bytes(6)
    assert walk(NH_DSTOPTS, options_header(PROTO_UDP, eight)).protocol == PROTO_UDP
    nine = bytes((0x1E, 0)) * 9 + bytes(4)
    assert reason_of(walk, NH_DSTOPTS, options_header(PROTO_UDP, nine)) \
        == "ipv6.too_many_options"


def test_misplaced_hop_by_hop():
    hbh = options_header(PROTO_TCP, bytes(6))
    assert walk(NH_HOPOPTS, hbh).protocol == PROTO_TCP
    data = options_header(NH_DSTOPTS, bytes(6)) + options_header(NH_HOPOPTS, bytes(6)) + hbh
    problem = problem_of(walk, NH_DSTOPTS, data)
    # RFC 8200 4.1: code 1, at the Next Header field that names it.
    assert (problem.reason, problem.code, problem.pointer) == (
        "ipv6.misplaced_hop_by_hop", 1, 48)
    # Walking on after reassembly, hop-by-hop is misplaced even first.
    problem = problem_of(walk, NH_HOPOPTS, hbh, base=16, next_header_pointer=48)
    assert (problem.code, problem.pointer) == (1, 48)


def test_walking_on_after_reassembly():
    data = options_header(PROTO_UDP, bytes((0x9E, 0, 1, 2, 0, 0)))
    problem = problem_of(walk, NH_DSTOPTS, data, base=24, next_header_pointer=56)
    assert problem.pointer == 40 + 24 + 2
    chain = walk(NH_DSTOPTS, options_header(PROTO_UDP, bytes(6)), base=24,
                 next_header_pointer=56)
    assert (chain.protocol, chain.offset, chain.next_header_pointer) == (PROTO_UDP, 8, 64)
    assert walk(PROTO_UDP, b"", next_header_pointer=56).next_header_pointer == 56


def test_too_many_extension_headers():
    def chain_of(count):
        data = b""
        for i in range(count):
            data += options_header(PROTO_UDP if i == count - 1 else NH_DSTOPTS, bytes(6))
        return data + b"x"

    chain = walk(NH_DSTOPTS, chain_of(MAX_EXTENSION_HEADERS))
    assert chain.protocol == PROTO_UDP and chain.offset == 8 * MAX_EXTENSION_HEADERS
    assert reason_of(walk, NH_DSTOPTS, chain_of(MAX_EXTENSION_HEADERS + 1)) \
        == "ipv6.too_many_headers"
    # Atomic fragments count too.
    atomic = build_fragment_header(NH_FRAGMENT, 0, False, 1) * MAX_EXTENSION_HEADERS
    assert reason_of(walk, NH_FRAGMENT, atomic + build_fragment_header(PROTO_UDP, 0, False, 1)) \
        == "ipv6.too_many_headers"
    # The largest header is 2048 bytes; eight of them are still walked.
    huge = b""
    for i in range(MAX_EXTENSION_HEADERS):
        huge += bytes((PROTO_UDP if i == MAX_EXTENSION_HEADERS - 1 else NH_DSTOPTS, 255)) \
            + (bytes((0x1E, 255)) + bytes(255)) * 7 + bytes((0x1E, 245)) + bytes(245)
    assert walk(NH_DSTOPTS, huge).offset == 2048 * MAX_EXTENSION_HEADERS


def test_fragment_headers():
    # RFC 8200 4.5 layout: next header, reserved, offset in 8-byte units
    # (13 bits), 2 reserved bits, M, identification.
    assert build_fragment_header(PROTO_UDP, 1448, True, 0xDEADBEEF) \
        == bytes.fromhex("1100 05a9 deadbeef")
    assert build_fragment_header(PROTO_UDP, 0xFFF8, False, 0) \
        == bytes.fromhex("1100 fff8 00000000")
    data = build_fragment_header(PROTO_UDP, 8, True, 5) + bytes(16)
    chain = walk(NH_FRAGMENT, data)
    assert chain.fragment == FragmentHeader(8, True, 5)
    assert (chain.protocol, chain.offset, len(chain.payload), chain.next_header_pointer) \
        == (PROTO_UDP, 8, 16, 40)
    assert not chain.fragment.is_atomic and FragmentHeader(0, False, 1).is_atomic
    # The last fragment may end anywhere; the reserved bits are ignored.
    assert walk(NH_FRAGMENT, build_fragment_header(PROTO_UDP, 16, False, 5) + bytes(3)).fragment \
        == FragmentHeader(16, False, 5)
    reserved = bytes.fromhex("11ff 0016 00000005") + bytes(3)
    assert walk(NH_FRAGMENT, reserved).fragment == FragmentHeader(16, False, 5)
    # The first fragment after hop-by-hop: pointers count the header before it.
    hbh = options_header(NH_FRAGMENT, bytes(6))
    problem = problem_of(walk, NH_HOPOPTS, hbh + build_fragment_header(PROTO_UDP, 0, True, 1)
                         + bytes(9))
    assert (problem.reason, problem.code, problem.pointer) == ("ipv6.bad_fragment_length", 0, 4)
    problem = problem_of(walk, NH_HOPOPTS, hbh + build_fragment_header(PROTO_UDP, 65528, False, 1)
                         + bytes(8))
    assert (problem.reason, problem.code, problem.pointer) == ("ipv6.bad_fragment_offset", 0, 50)
    # Exactly up to 65535 is fine; the headers before the fragment count.
    assert walk(NH_FRAGMENT, build_fragment_header(PROTO_UDP, 65528, False, 1) + bytes(7)) \
        .fragment.offset_bytes == 65528
    assert problem_of(walk, NH_HOPOPTS, hbh + build_fragment_header(PROTO_UDP, 65528, False, 1)
                      + bytes(7)).reason == "ipv6.bad_fragment_offset"
    assert walk(NH_HOPOPTS, hbh + build_fragment_header(PROTO_UDP, 65520, False, 1)
                + bytes(7)).fragment.offset_bytes == 65520
    problem = problem_of(walk, NH_FRAGMENT, build_fragment_header(PROTO_UDP, 65520, False, 1)
                         + bytes(8), base=8, next_header_pointer=40)
    assert (problem.reason, problem.pointer) == ("ipv6.bad_fragment_offset", 50)
    assert reason_of(walk, NH_FRAGMENT, bytes(7)) == "ipv6.truncated"


def test_build_fragment_header_rejects():
    for offset in (-8, 4, 0x10000, 0xFFF9):
        with pytest.raises(ValueError):
            build_fragment_header(PROTO_UDP, offset, False, 1)
    for next_header, ident in ((256, 1), (-1, 1), (PROTO_UDP, 2**32), (PROTO_UDP, -1)):
        with pytest.raises(ValueError):
            build_fragment_header(next_header, 0, False, ident)


@given(ipv6_headers(), st.binary(max_size=5000), st.integers(1280, 9000), u32,
       st.sampled_from(["none", "hbh", "hbh+routing"]))
def test_fragmentation_round_trip(header, payload, mtu, ident, unfrag_kind):
    assume(header.next_header not in (NH_HOPOPTS, NH_ROUTING, NH_DSTOPTS, NH_FRAGMENT))
    if unfrag_kind == "none":
        unfrag, first = b"", header.next_header
    elif unfrag_kind == "hbh":
        unfrag = options_header(header.next_header, bytes(6))
        first = NH_HOPOPTS
    else:
        unfrag = (options_header(NH_ROUTING, bytes(6))
                  + routing_header(header.next_header, 0, 0))
        first = NH_HOPOPTS
    whole = IPv6Header(header.src, header.dst, first, header.hop_limit, header.traffic_class,
                       header.flow_label)
    fragments = fragment_ipv6(whole, payload, mtu, ident, unfragmentable=unfrag)
    assert len(fragments) == max(1, -(-len(payload) // ((mtu - 48 - len(unfrag)) & ~7)))
    data = b""
    for i, packet in enumerate(fragments):
        assert len(packet) <= mtu
        ip, body = parse_ipv6(packet)
        assert (ip.src, ip.dst, ip.hop_limit, ip.traffic_class, ip.flow_label) == (
            header.src, header.dst, header.hop_limit, header.traffic_class, header.flow_label)
        chain = walk(ip.next_header, body)
        # RFC 8200 4.5: the unfragmentable part, its last Next Header now 44.
        assert chain.offset == len(unfrag) + 8
        if unfrag:
            assert ip.next_header == NH_HOPOPTS
            assert bytes(body[:len(unfrag)]) != unfrag
        else:
            assert ip.next_header == NH_FRAGMENT
        # The fragment header's Next Header names the protocol.
        assert chain.next_header_pointer == 40 + len(unfrag)
        last = i == len(fragments) - 1
        if chain.fragment is None:  # one fragment: atomic, walked through
            assert len(fragments) == 1
            assert chain.protocol == header.next_header
        else:
            assert chain.protocol == header.next_header
            assert chain.fragment == FragmentHeader(len(data), not last, ident)
        # Every fragment but the last holds a multiple of 8 bytes.
        assert last or len(chain.payload) % 8 == 0
        data += bytes(chain.payload)
    assert data == payload


def test_fragment_ipv6_rejects():
    header = IPv6Header(GA, GB, PROTO_UDP)
    with pytest.raises(ValueError, match="mtu"):
        fragment_ipv6(header, bytes(100), 55, 1)
    assert len(fragment_ipv6(header, bytes(100), 56, 1)) == 13  # 8 data bytes each
    with pytest.raises(ValueError, match="too long"):
        fragment_ipv6(header, bytes(0x10000), 1280, 1)
    with pytest.raises(ValueError):
        fragment_ipv6(header, b"", 1280, 2**32)
    with pytest.raises(ValueError):
        fragment_ipv6(IPv6Header(GA, GB, PROTO_UDP, flow_label=1 << 20), b"", 1280, 1)
    # The unfragmentable part must be a whole chain of the right headers.
    hbh_header = IPv6Header(GA, GB, NH_HOPOPTS)
    for unfrag in (options_header(PROTO_UDP, bytes(6))[:7], b"\x11",
                   options_header(PROTO_UDP, bytes(6)) + b"\x11\x00"):
        with pytest.raises(ValueError):
            fragment_ipv6(hbh_header, b"", 1280, 1, unfragmentable=unfrag)
    with pytest.raises(ValueError):
        fragment_ipv6(header, b"", 1280, 1, unfragmentable=options_header(PROTO_UDP, bytes(6)))


# --- ICMPv6 -----------------------------------------------------------------------------

icmpv6_messages = st.builds(Icmpv6Message, u8, u8, u32, st.binary(max_size=600))


@given(icmpv6_messages, ipv6_addrs, ipv6_addrs, buffer_types)
def test_icmpv6_round_trip(msg, src, dst, make):
    raw = build_icmpv6(msg, src, dst)
    assert len(raw) == 8 + len(msg.payload)
    # The checksum against the slow sum over the pseudo-header's bytes.
    assert int.from_bytes(raw[2:4], "big") == reference_icmpv6_checksum(raw, src, dst)
    parsed = parse_icmpv6(make(raw), src, dst)
    assert parsed == msg
    assert isinstance(parsed.payload, memoryview)
    assert build_icmpv6(parsed, src, dst) == raw


@given(icmpv6_messages, ipv6_addrs, ipv6_addrs, st.data())
def test_icmpv6_bit_flip_detected(msg, src, dst, data):
    raw = build_icmpv6(msg, src, dst)
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    with pytest.raises(WireError) as info:
        parse_icmpv6(flipped(raw, bit), src, dst)
    assert info.value.reason == "icmpv6.bad_checksum"


@given(icmpv6_messages, ipv6_addrs, ipv6_addrs)
def test_icmpv6_truncated(msg, src, dst):
    raw = build_icmpv6(msg, src, dst)
    for length in range(len(raw)):
        try:
            got = parse_icmpv6(raw[:length], src, dst)
        except WireError as exc:
            assert exc.reason == ("icmpv6.truncated" if length < 8 else "icmpv6.bad_checksum")
        else:
            # The pseudo-header's length makes this rare: the dropped bytes
            # must sum to what the shorter length takes off.
            assert length >= 8 and got.payload == raw[8:length]


def test_icmpv6_checksum_known_answer():
    # An all-ones sum is sent as zero (RFC 1071): find a message for it.
    src = dst = IPv6Address("::")
    base = build_icmpv6(Icmpv6Message(128, 0, 0, b"\0\0"), src, dst)
    fill = int.from_bytes(base[2:4], "big")
    msg = Icmpv6Message(128, 0, 0, fill.to_bytes(2, "big"))
    raw = build_icmpv6(msg, src, dst)
    assert raw[2:4] == b"\0\0" and parse_icmpv6(raw, src, dst) == msg
    assert reference_icmpv6_checksum(raw, src, dst) in (0, 0xFFFF)


def test_icmpv6_constructors():
    req = Icmpv6Message.echo_request(1, 2, b"x")
    rep = Icmpv6Message.echo_reply(1, 2, b"x")
    assert (req.type, rep.type, req.rest, req.identifier, req.sequence) == (128, 129, 0x10002, 1,
                                                                           2)
    assert not req.is_error and not rep.is_error
    for ident, seq in ((0x10000, 0), (0, 0x10000), (-1, 0), (0, -1)):
        with pytest.raises(ValueError):
            Icmpv6Message.echo_request(ident, seq)
        with pytest.raises(ValueError):
            Icmpv6Message.echo_reply(ident, seq)
    quoted = packet_of(UDP_FRAME)
    big = Icmpv6Message.error(ICMPV6_PACKET_TOO_BIG, 0, quoted, mtu=1280)
    # RFC 4443 3.2: the MTU is the whole 32-bit word.
    assert big.is_error and big.mtu == 1280 and build_icmpv6(big, GB, GA)[4:8] == b"\0\0\x05\x00"
    problem = Icmpv6Message.error(ICMPV6_PARAMETER_PROBLEM, 0, quoted, pointer=0x12345)
    assert problem.pointer == 0x12345 and build_icmpv6(problem, GB, GA)[4:8] == b"\0\x01\x23\x45"
    assert Icmpv6Message.error(ICMPV6_TIME_EXCEEDED, 0, quoted).rest == 0
    for t in (0, 1, 2, 3, 4, 127):
        assert Icmpv6Message(t, 0).is_error
    for t in (128, 129, 133, 143, 255):
        assert not Icmpv6Message(t, 0).is_error
    for kwargs in ({"mtu": 2**32}, {"pointer": -1}, {"mtu": 1280, "pointer": 4}):
        with pytest.raises(ValueError):
            Icmpv6Message.error(ICMPV6_PARAMETER_PROBLEM, 0, quoted, **kwargs)
    with pytest.raises(ValueError):
        Icmpv6Message.error(ICMPV6_ECHO_REPLY, 0, quoted)


def test_build_icmpv6_rejects_bad_fields():
    for msg in (Icmpv6Message(256, 0), Icmpv6Message(0, 256), Icmpv6Message(0, 0, 2**32),
                Icmpv6Message(0, 0, -1), Icmpv6Message(-1, 0),
                Icmpv6Message(128, 0, 0, bytes(0xFFF8))):
        with pytest.raises(ValueError):
            build_icmpv6(msg, GA, GB)


def test_parameter_problem_codes_agree():
    # ipv6.py keeps its own copies of RFC 4443 3.4's codes.
    assert (ipv6_module._PARAM_HEADER_FIELD, ipv6_module._PARAM_NEXT_HEADER,
            ipv6_module._PARAM_OPTION) == (ICMPV6_PARAM_HEADER_FIELD, ICMPV6_PARAM_NEXT_HEADER,
                                           ICMPV6_PARAM_OPTION) == (0, 1, 2)


# --- Neighbor Discovery -----------------------------------------------------------------

def nd(msg_type: int, body: bytes, rest: int = 0, code: int = 0) -> Icmpv6Message:
    return Icmpv6Message(msg_type, code, rest, memoryview(body))


def lladdr_opt(opt_type: int, mac: bytes) -> bytes:
    return bytes((opt_type, 1)) + mac


@given(unicast_addrs, st.one_of(st.none(), macs), ipv6_addrs)
def test_neighbor_solicitation_round_trip(target, mac, src):
    raw = build_neighbor_solicitation(NeighborSolicitation(target, mac), src)
    dst = solicited_node_address(target)
    assert raw[:2] == b"\x87\x00" and raw[8:24] == target.packed
    assert len(raw) == (24 if mac is None else 32)
    assert parse_neighbor_solicitation(parse_icmpv6(raw, src, dst)) \
        == NeighborSolicitation(target, mac)


@given(unicast_addrs, st.booleans(), st.booleans(), st.booleans(), st.one_of(st.none(), macs),
       ipv6_addrs, ipv6_addrs)
def test_neighbor_advertisement_round_trip(target, r, s, o, mac, src, dst):
    na = NeighborAdvertisement(target, r, s, o, mac)
    raw = build_neighbor_advertisement(na, src, dst)
    # RFC 4861 4.4: R, S, O are the top bits of the word after the checksum.
    assert raw[4] == (r << 7) | (s << 6) | (o << 5) and raw[5:8] == b"\0\0\0"
    assert parse_neighbor_advertisement(parse_icmpv6(raw, src, dst)) == na


@given(st.one_of(st.none(), macs), ipv6_addrs)
def test_router_solicitation_round_trip(mac, src):
    raw = build_router_solicitation(RouterSolicitation(mac), src)
    assert len(raw) == (8 if mac is None else 16)
    assert parse_router_solicitation(parse_icmpv6(raw, src, IPV6_ALL_ROUTERS)) \
        == RouterSolicitation(mac)


prefix_infos = st.builds(PrefixInformation, ipv6_addrs, st.integers(0, 128), st.booleans(),
                         st.booleans(), u32, u32)
rdnss_options = st.builds(RdnssOption, u32, st.lists(ipv6_addrs, min_size=1, max_size=4)
                          .map(tuple))


@given(st.builds(RouterAdvertisement, u8, st.booleans(), st.booleans(), u16, u32, u32,
                 st.one_of(st.none(), macs), st.one_of(st.none(), u32),
                 st.lists(prefix_infos, max_size=3).map(tuple),
                 st.lists(rdnss_options, max_size=2).map(tuple)), ipv6_addrs)
def test_router_advertisement_round_trip(ra, src):
    raw = build_router_advertisement(ra, src)
    assert parse_router_advertisement(parse_icmpv6(raw, src, IPV6_ALL_NODES)) == ra


def test_neighbor_discovery_rejections():
    target = GB.packed
    # Wrong type, code not 0 (RFC 4861 7.1.1), too short.
    assert reason_of(parse_neighbor_solicitation, nd(136, target)) == "icmpv6.bad_type"
    assert reason_of(parse_neighbor_solicitation, nd(135, target, code=1)) == "icmpv6.bad_code"
    assert reason_of(parse_neighbor_solicitation, nd(135, target[:15])) == "icmpv6.truncated"
    assert reason_of(parse_neighbor_advertisement, nd(136, target, code=3)) == "icmpv6.bad_code"
    assert reason_of(parse_neighbor_advertisement, nd(136, target[:8])) == "icmpv6.truncated"
    assert reason_of(parse_router_solicitation, nd(133, b"", code=1)) == "icmpv6.bad_code"
    assert reason_of(parse_router_advertisement, nd(134, bytes(7))) == "icmpv6.truncated"
    assert reason_of(parse_router_advertisement, nd(134, bytes(8), code=1)) == "icmpv6.bad_code"
    assert reason_of(parse_redirect, nd(137, bytes(31))) == "icmpv6.truncated"
    assert reason_of(parse_redirect, nd(137, LL_A.packed + GB.packed, code=1)) \
        == "icmpv6.bad_code"
    # A multicast target (RFC 4861 7.1.1, 7.1.2).
    for parse, msg_type in ((parse_neighbor_solicitation, 135),
                            (parse_neighbor_advertisement, 136)):
        assert reason_of(parse, nd(msg_type, IPV6_ALL_NODES.packed)) == "icmpv6.bad_target"
        assert reason_of(parse, nd(msg_type, IPv6Address("ff05::1:3").packed)) \
            == "icmpv6.bad_target"


@pytest.mark.parametrize("parse, msg_type, fixed", [
    (parse_neighbor_solicitation, 135, GB.packed),
    (parse_neighbor_advertisement, 136, GB.packed),
    (parse_router_solicitation, 133, b""),
    (parse_router_advertisement, 134, bytes(8)),
    (parse_redirect, 137, LL_A.packed + GB.packed),
])
def test_nd_option_errors(parse, msg_type, fixed):
    # RFC 4861 4.6: a zero length invalidates the message ...
    assert reason_of(parse, nd(msg_type, fixed + bytes((1, 0)) + bytes(6))) == "icmpv6.bad_option"
    assert reason_of(parse, nd(msg_type, fixed + bytes((99, 0)) + bytes(6))) == "icmpv6.bad_option"
    # ... as does an option running past the message, or half an option.
    assert reason_of(parse, nd(msg_type, fixed + bytes((99, 2)) + bytes(6))) == "icmpv6.bad_option"
    assert reason_of(parse, nd(msg_type, fixed + lladdr_opt(99, MAC_A) + b"\x01")) \
        == "icmpv6.bad_option"
    # Unknown options are skipped; a zero length after them still counts.
    assert parse(nd(msg_type, fixed + bytes((99, 2)) + bytes(14)))
    assert reason_of(parse, nd(msg_type, fixed + bytes((99, 1)) + bytes(6) + bytes(8))) \
        == "icmpv6.bad_option"
    # Link-layer addresses are 6 bytes here (RFC 2464 8: length 1).
    wanted = {133: 1, 134: 1, 135: 1, 136: 2, 137: 2}[msg_type]
    assert reason_of(parse, nd(msg_type, fixed + bytes((wanted, 2)) + bytes(14))) \
        == "icmpv6.bad_option"


def test_nd_options_for_other_messages_are_ignored():
    # RFC 4861 7.1.1: options not specified for the message are ignored.
    prefix = PrefixInformation(GA, 64)
    ra = build_router_advertisement(RouterAdvertisement(prefixes=(prefix,), mtu=1500), LL_A)
    options = ra[16:]
    ns = parse_neighbor_solicitation(nd(135, GB.packed + options + lladdr_opt(2, MAC_B)
                                        + lladdr_opt(1, MAC_A) + lladdr_opt(1, MAC_B)))
    assert ns == NeighborSolicitation(GB, MAC_A)  # the first source address
    na = parse_neighbor_advertisement(nd(136, GB.packed + lladdr_opt(1, MAC_A) + options))
    assert na == NeighborAdvertisement(GB)
    rs = parse_router_solicitation(nd(133, options + lladdr_opt(2, MAC_A)))
    assert rs == RouterSolicitation(None)
    parsed = parse_router_advertisement(nd(134, bytes(8) + lladdr_opt(2, MAC_B) + options
                                           + bytes((31, 2)) + bytes(14)))
    assert parsed.prefixes == (prefix,) and parsed.mtu == 1500
    assert parsed.source_lladdr is None


def test_router_advertisement_fields():
    ra = RouterAdvertisement(cur_hop_limit=255, managed=True, other=False, router_lifetime=9000,
                             reachable_time=30000, retrans_timer=1000)
    raw = build_router_advertisement(ra, LL_A)
    # RFC 4861 4.2: hop limit, M|O|reserved, lifetime, reachable, retrans.
    assert raw[4:16] == bytes.fromhex("ff80 2328 00007530 000003e8")
    parsed = parse_router_advertisement(parse_icmpv6(raw, LL_A, IPV6_ALL_NODES))
    assert parsed == ra
    # Other flag bits (RFC 4191 preference, RFC 5175 extensions) are ignored.
    assert parse_router_advertisement(nd(134, bytes(8), rest=0x40FF0708)) == RouterAdvertisement(
        64, True, True, 1800)
    lifetimes = PrefixInformation(GA, 48, False, False, INFINITE_LIFETIME, INFINITE_LIFETIME)
    raw = build_router_advertisement(RouterAdvertisement(prefixes=(lifetimes,)), LL_A)
    # RFC 4861 4.6.2: L and A flags, lifetimes, 4 reserved bytes, prefix.
    assert raw[16:48] == (bytes((3, 4, 48, 0)) + b"\xff" * 8 + bytes(4) + GA.packed)
    assert parse_router_advertisement(parse_icmpv6(raw, LL_A, IPV6_ALL_NODES)).prefixes \
        == (lifetimes,)
    assert lifetimes.network.with_prefixlen == "fd00:99::/48"


def test_router_advertisement_option_errors():
    def ra_with(option: bytes) -> Icmpv6Message:
        return nd(134, bytes(8) + option)

    prefix = bytes((3, 4, 64, 0xC0)) + bytes(12) + GA.packed
    assert parse_router_advertisement(ra_with(prefix)).prefixes[0].prefix == GA
    assert reason_of(parse_router_advertisement, ra_with(bytes((3, 4, 129)) + prefix[3:])) \
        == "icmpv6.bad_option"
    assert reason_of(parse_router_advertisement, ra_with(bytes((3, 5)) + prefix[2:] + bytes(8))) \
        == "icmpv6.bad_option"
    assert reason_of(parse_router_advertisement, ra_with(bytes((3, 3)) + prefix[2:24])) \
        == "icmpv6.bad_option"
    assert reason_of(parse_router_advertisement, ra_with(bytes((5, 2)) + bytes(14))) \
        == "icmpv6.bad_option"
    # RFC 8106 5.1: RDNSS length 3, 5, 7 ...
    rdnss = bytes((25, 3, 0, 0)) + (600).to_bytes(4, "big") + GA.packed
    assert parse_router_advertisement(ra_with(rdnss)).rdnss == (RdnssOption(600, (GA,)),)
    for bad in (bytes((25, 1)) + bytes(6), bytes((25, 2)) + bytes(14),
                bytes((25, 4)) + bytes(30)):
        assert reason_of(parse_router_advertisement, ra_with(bad)) == "icmpv6.bad_option"
    # The first MTU option counts, and the first source link-layer address.
    mtus = bytes((5, 1, 0, 0)) + (1400).to_bytes(4, "big") + bytes((5, 1, 0, 0)) \
        + (9000).to_bytes(4, "big")
    assert parse_router_advertisement(ra_with(mtus)).mtu == 1400
    assert parse_router_advertisement(ra_with(lladdr_opt(1, MAC_A) + lladdr_opt(1, MAC_B))) \
        .source_lladdr == MAC_A


def test_build_router_advertisement_rejects():
    for ra in (RouterAdvertisement(cur_hop_limit=256), RouterAdvertisement(router_lifetime=-1),
               RouterAdvertisement(router_lifetime=0x10000), RouterAdvertisement(mtu=2**32),
               RouterAdvertisement(reachable_time=-1), RouterAdvertisement(source_lladdr=b"abc"),
               RouterAdvertisement(prefixes=(PrefixInformation(GA, 129),)),
               RouterAdvertisement(prefixes=(PrefixInformation(GA, 64, valid_lifetime=-1),)),
               RouterAdvertisement(rdnss=(RdnssOption(1, ()),)),
               RouterAdvertisement(rdnss=(RdnssOption(2**32, (GA,)),))):
        with pytest.raises(ValueError):
            build_router_advertisement(ra, LL_A)
    with pytest.raises(ValueError):
        build_neighbor_solicitation(NeighborSolicitation(GB, b"\x01" * 7), GA)
    with pytest.raises(ValueError):
        build_neighbor_advertisement(NeighborAdvertisement(GB, target_lladdr=b""), GA, GB)
    with pytest.raises(ValueError):
        build_router_solicitation(RouterSolicitation(b"12345"), GA)


def test_redirect():
    destination = IPv6Address("2001:db8:5::9")
    offending = build_ipv6_plain(GA, destination, PROTO_UDP, bytes(range(100)))
    redirect = Redirect(LL_B, destination, MAC_B, offending)
    raw = build_redirect(redirect, LL_A, GA)
    # RFC 4861 4.5: reserved word, target, destination, then options; the
    # redirected header option (4.6.3) holds 6 reserved bytes and the
    # packet padded to 8 bytes.
    assert raw[:2] == b"\x89\x00" and raw[4:8] == bytes(4)
    assert raw[8:24] == LL_B.packed and raw[24:40] == destination.packed
    assert raw[40:48] == lladdr_opt(2, MAC_B)
    assert raw[48:56] == bytes((4, 19)) + bytes(6) and len(raw) == 56 + 144
    parsed = parse_redirect(parse_icmpv6(raw, LL_A, GA))
    assert (parsed.target, parsed.destination, parsed.target_lladdr) == (LL_B, destination, MAC_B)
    assert bytes(parsed.redirected) == offending + bytes(4)
    # The first target link-layer address counts.
    twice = parse_redirect(nd(137, LL_B.packed + destination.packed + lladdr_opt(2, MAC_A)
                              + lladdr_opt(2, MAC_B)))
    assert twice == Redirect(LL_B, destination, MAC_A)
    # An on-link destination: the target is the destination itself.
    on_link = Redirect(destination, destination)
    assert parse_redirect(parse_icmpv6(build_redirect(on_link, LL_A, GA), LL_A, GA)) == on_link
    # RFC 4861 8.2: cut to fit the minimum MTU.
    huge = build_redirect(Redirect(LL_B, destination, MAC_B, bytes(3000)), LL_A, GA)
    assert len(huge) <= 1280 - 40 and len(huge) % 8 == 0 and len(huge) > 1280 - 40 - 8
    # RFC 4861 8.1: no multicast destination; a target that is link-local or
    # the destination.
    assert reason_of(parse_redirect, nd(137, LL_B.packed + IPV6_ALL_NODES.packed)) \
        == "icmpv6.bad_redirect"
    assert reason_of(parse_redirect, nd(137, GB.packed + destination.packed)) \
        == "icmpv6.bad_redirect"


# --- MLD -----------------------------------------------------------------------------------

@given(st.lists(st.tuples(st.integers(1, 6), ipv6_addrs,
                          st.lists(ipv6_addrs, max_size=3).map(tuple)), max_size=5), ipv6_addrs)
def test_mldv2_report_round_trip(records, src):
    raw = build_mldv2_report(records, src)
    # RFC 3810 5.2: type 143, reserved, number of records.
    assert raw[:2] == b"\x8f\x00" and raw[4:8] == len(records).to_bytes(4, "big")
    assert len(raw) == 8 + sum(20 + 16 * len(s) for _, _, s in records)
    msg = parse_icmpv6(raw, src, IPV6_ALL_MLDV2_ROUTERS)
    assert parse_mldv2_report(msg) == tuple(MldRecord(*r) for r in records)


def test_mldv2_report_layout_and_errors():
    group = IPv6Address("ff05::1:3")
    record = MldRecord(MLD_ALLOW_NEW_SOURCES, group, (GA, GB))
    raw = build_mldv2_report([record], LL_A)
    # RFC 3810 5.2.4: type, aux data length, number of sources, address.
    assert raw[8:12] == bytes((5, 0, 0, 2)) and raw[12:28] == group.packed
    assert raw[28:60] == GA.packed + GB.packed
    body = raw[8:]
    assert parse_mldv2_report(nd(143, body, rest=1)) == (record,)
    assert reason_of(parse_mldv2_report, nd(143, body, rest=2)) == "icmpv6.truncated"
    assert reason_of(parse_mldv2_report, nd(143, body[:-1], rest=1)) == "icmpv6.truncated"
    assert reason_of(parse_mldv2_report, nd(143, body[:19], rest=1)) == "icmpv6.truncated"
    assert reason_of(parse_mldv2_report, nd(130, body, rest=1)) == "icmpv6.bad_type"
    # Auxiliary data (counted in 32-bit words) is skipped.
    aux = bytes((5, 1)) + body[2:] + b"AUXD"
    assert parse_mldv2_report(nd(143, aux + body, rest=2)) == (record, record)
    assert reason_of(parse_mldv2_report, nd(143, aux[:-1], rest=1)) == "icmpv6.truncated"
    # A huge record count costs no more than the message's length.
    assert reason_of(parse_mldv2_report, nd(143, body, rest=0xFFFF)) == "icmpv6.truncated"
    for bad in ([(0x100, group, ())], [MldRecord(1, group, (GA,) * 0x10000)]):
        with pytest.raises(ValueError):
            build_mldv2_report(bad, LL_A)
    assert build_mldv2_report([], LL_A)[4:8] == bytes(4)


def test_mld_queries():
    group = IPv6Address("ff05::1:3")
    # RFC 2710 3: a 24-byte MLDv1 query, delay in milliseconds.
    assert parse_mld_query(nd(130, group.packed, rest=1000 << 16)) == MldQuery(1, 1000, group)
    # RFC 3810 5.1: MLDv2 general query, S flag, QRV 2, QQIC 125, no sources.
    v2 = UNSPECIFIED.packed + bytes((0x0A, 125, 0, 0))
    assert parse_mld_query(nd(130, v2, rest=10000 << 16)) == MldQuery(
        2, 10000, UNSPECIFIED, True, 2, 125, ())
    # RFC 3810 5.1.3 and 5.1.9: the exponential forms.
    coded = group.packed + bytes((0x02, 0x8F, 0, 2)) + GA.packed + GB.packed
    query = parse_mld_query(nd(130, coded, rest=0xF123 << 16))
    assert query.max_response_delay == (0x123 | 0x1000) << (7 + 3)
    assert query.query_interval == (0xF | 0x10) << (0 + 3)
    assert (query.sources, query.robustness, query.suppress_router_processing) == ((GA, GB), 2,
                                                                                  False)
    assert reason_of(parse_mld_query, nd(130, coded[:-1], rest=1)) == "icmpv6.truncated"
    for length in (0, 15, 17, 18, 19):
        assert reason_of(parse_mld_query, nd(130, coded[:length])) == "icmpv6.truncated"
    assert reason_of(parse_mld_query, nd(143, coded)) == "icmpv6.bad_type"
    # The query's own type constant.
    assert ICMPV6_MLD_QUERY == 130


# --- address helpers ------------------------------------------------------------------------

def test_solicited_node_address():
    # RFC 4291 2.7.1's example.
    assert solicited_node_address(IPv6Address("4037::01:800:200E:8C6C")) \
        == IPv6Address("ff02::1:ff0e:8c6c")
    assert solicited_node_address(GB) == IPv6Address("ff02::1:ff00:2")
    assert solicited_node_address(LL_B) == solicited_node_address(
        IPv6Address("2001:db8:1::ff:fe00:2"))


def test_multicast_mac():
    # RFC 2464 7: 33:33 and the address's last four octets.
    assert multicast_mac(IPv6Address("ff02::1")) == bytes.fromhex("333300000001")
    assert multicast_mac(IPv6Address("ff0e::1:ff12:3456:789a")) == bytes.fromhex("33333456789a")
    assert multicast_mac(IPV6_ALL_MLDV2_ROUTERS) == MLDV2_REPORT_FRAME[:6]
    with pytest.raises(ValueError):
        multicast_mac(GA)


def test_link_local_from_mac():
    # What the kernel configured for these MACs (see the captures).
    assert link_local_from_mac(MAC_A) == LL_A and link_local_from_mac(MAC_B) == LL_B
    # RFC 4291 appendix A: ff:fe inserted, the universal/local bit inverted.
    mac = bytes.fromhex("001b213a4b5c")
    assert interface_id_from_mac(mac) == 0x021B21FFFE3A4B5C
    assert link_local_from_mac(mac) == IPv6Address("fe80::21b:21ff:fe3a:4b5c")
    assert link_local_from_mac(memoryview(mac)) == IPv6Address("fe80::21b:21ff:fe3a:4b5c")
    assert link_local_from_mac(bytes.fromhex("02ffffffffff")) == IPv6Address(
        "fe80::ff:ffff:feff:ffff")
    for bad in (b"", bytes(5), bytes(8)):
        with pytest.raises(ValueError):
            link_local_from_mac(bad)


def test_well_known_addresses():
    assert IPV6_ALL_NODES == IPv6Address("ff02::1")
    assert IPV6_ALL_ROUTERS == IPv6Address("ff02::2")
    assert IPV6_ALL_MLDV2_ROUTERS == IPv6Address("ff02::16")
    assert (ICMPV6_ROUTER_SOLICITATION, ICMPV6_ROUTER_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION,
            ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_REDIRECT) == (133, 134, 135, 136, 137)
    assert MLD_MODE_IS_INCLUDE == 1
