"""Pure parse/build of each header: no I/O, no state.

Parsers take bytes, bytearray or memoryview, return payloads as zero-copy
memoryview slices, and raise only ``WireError`` on malformed input.
(``trionet.wire.tcp``, and the Neighbor Discovery and MLD messages of
``trionet.wire.icmpv6``, are imported on their own.)
"""

from .arp import ARP_PACKET_LEN, ARP_REPLY, ARP_REQUEST, ArpPacket, parse_arp
from .checksum import internet_checksum, ones_complement_sum, pseudo_header_sum
from .errors import WireError
from .ethernet import (
    BROADCAST_MAC,
    ETH_HEADER_LEN,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    EthernetHeader,
    build_ethernet,
    is_multicast_mac,
    mac_from_str,
    mac_to_str,
    parse_ethernet,
    random_local_mac,
)
from .icmpv4 import (
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_HEADER_LEN,
    ICMP_PARAMETER_PROBLEM,
    ICMP_TIME_EXCEEDED,
    TIME_EXCEEDED_REASSEMBLY,
    TIME_EXCEEDED_TTL,
    UNREACH_FRAG_NEEDED,
    UNREACH_HOST,
    UNREACH_NET,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
    IcmpMessage,
    build_icmpv4,
    parse_icmpv4,
)
from .ipv4 import (
    IPV4_MIN_HEADER_LEN,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    IPv4Header,
    build_ipv4,
    build_ipv4_plain,
    parse_ipv4,
    quote_for_icmp,
)
from .icmpv6 import (
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_PARAMETER_PROBLEM,
    ICMPV6_TIME_EXCEEDED,
    Icmpv6Message,
    build_icmpv6,
    parse_icmpv6,
)
from .ipv6 import (
    IPV6_HEADER_LEN,
    IPV6_MIN_MTU,
    PROTO_ICMPV6,
    FragmentHeader,
    HeaderChain,
    IPv6Header,
    ParameterProblem,
    build_ipv6,
    build_ipv6_plain,
    fragment_ipv6,
    parse_extension_headers,
    parse_ipv6,
    parse_ipv6_quote,
    quote_for_icmpv6,
)
from .udp import UDP_HEADER_LEN, UdpHeader, build_udp, parse_udp

__all__ = [
    "ARP_PACKET_LEN", "ARP_REPLY", "ARP_REQUEST", "ArpPacket", "parse_arp",
    "internet_checksum", "ones_complement_sum", "pseudo_header_sum",
    "WireError",
    "BROADCAST_MAC", "ETH_HEADER_LEN", "ETHERTYPE_ARP", "ETHERTYPE_IPV4", "ETHERTYPE_IPV6",
    "EthernetHeader", "build_ethernet", "is_multicast_mac", "mac_from_str", "mac_to_str",
    "parse_ethernet", "random_local_mac",
    "ICMP_DEST_UNREACHABLE", "ICMP_ECHO_REPLY", "ICMP_ECHO_REQUEST", "ICMP_HEADER_LEN",
    "ICMP_PARAMETER_PROBLEM", "ICMP_TIME_EXCEEDED", "TIME_EXCEEDED_REASSEMBLY",
    "TIME_EXCEEDED_TTL", "UNREACH_FRAG_NEEDED", "UNREACH_HOST", "UNREACH_NET",
    "UNREACH_PORT", "UNREACH_PROTOCOL", "IcmpMessage", "build_icmpv4", "parse_icmpv4",
    "IPV4_MIN_HEADER_LEN", "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP", "IPv4Header",
    "build_ipv4", "build_ipv4_plain", "parse_ipv4", "quote_for_icmp",
    "UDP_HEADER_LEN", "UdpHeader", "build_udp", "parse_udp",
    "ICMPV6_DEST_UNREACHABLE", "ICMPV6_ECHO_REPLY", "ICMPV6_ECHO_REQUEST", "ICMPV6_PACKET_TOO_BIG",
    "ICMPV6_PARAMETER_PROBLEM", "ICMPV6_TIME_EXCEEDED", "Icmpv6Message", "build_icmpv6",
    "parse_icmpv6",
    "IPV6_HEADER_LEN", "IPV6_MIN_MTU", "PROTO_ICMPV6", "FragmentHeader", "HeaderChain",
    "IPv6Header", "ParameterProblem", "build_ipv6", "build_ipv6_plain", "fragment_ipv6",
    "parse_extension_headers", "parse_ipv6", "parse_ipv6_quote", "quote_for_icmpv6",
]
