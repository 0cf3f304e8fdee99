"""ICMPv6 (RFC 4443), Neighbor Discovery (RFC 4861, RDNSS from RFC 8106),
MLDv2 (RFC 3810) and the address helpers they need (RFC 4291, RFC 2464).

``parse_icmpv6`` checks the checksum and returns an ``Icmpv6Message``; the
``parse_*`` functions for Neighbor Discovery and MLD take that message and
return its meaning. Every ``build_*`` returns a whole ICMPv6 message,
checksum included, ready to be the payload of ``build_ipv6``.

The Neighbor Discovery parsers make RFC 4861's checks that need only the
message (code, length, options); the checks that need the IPv6 header are
the caller's: hop limit 255 (RFC 4861 6.1, 7.1, 8.1), link-local source
of router advertisements and redirects, an unspecified source only with a
solicited-node destination and no source link-layer address option, and
the Solicited flag clear in an advertisement sent to a multicast address.
"""

import struct
from ipaddress import IPv6Address, IPv6Network

import attrs

from .checksum import internet_checksum, ones_complement_sum, pseudo_header_sum
from .errors import WireError
from .icmpv4 import EchoFields
from .ipv6 import IPV6_HEADER_LEN, IPV6_MIN_MTU, PROTO_ICMPV6

# Message types (RFC 4443 2.1; RFC 4861 4; RFC 2710 3; RFC 3810 5).
ICMPV6_DEST_UNREACHABLE = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_TIME_EXCEEDED = 3
ICMPV6_PARAMETER_PROBLEM = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMPV6_MLD_QUERY = 130
ICMPV6_MLD_REPORT = 131  # MLDv1
ICMPV6_MLD_DONE = 132  # MLDv1
ICMPV6_ROUTER_SOLICITATION = 133
ICMPV6_ROUTER_ADVERTISEMENT = 134
ICMPV6_NEIGHBOR_SOLICITATION = 135
ICMPV6_NEIGHBOR_ADVERTISEMENT = 136
ICMPV6_REDIRECT = 137
ICMPV6_MLDV2_REPORT = 143

# Destination unreachable codes (RFC 4443 3.1).
ICMPV6_UNREACH_NO_ROUTE = 0
ICMPV6_UNREACH_ADMIN_PROHIBITED = 1
ICMPV6_UNREACH_BEYOND_SCOPE = 2
ICMPV6_UNREACH_ADDRESS = 3
ICMPV6_UNREACH_PORT = 4
ICMPV6_UNREACH_POLICY = 5
ICMPV6_UNREACH_REJECT_ROUTE = 6
# Time exceeded codes (RFC 4443 3.3).
ICMPV6_TIME_EXCEEDED_HOP_LIMIT = 0
ICMPV6_TIME_EXCEEDED_REASSEMBLY = 1
# Parameter problem codes (RFC 4443 3.4; 3 from RFC 7112).
ICMPV6_PARAM_HEADER_FIELD = 0
ICMPV6_PARAM_NEXT_HEADER = 1
ICMPV6_PARAM_OPTION = 2
ICMPV6_PARAM_INCOMPLETE_CHAIN = 3

# Neighbor Discovery option types (RFC 4861 4.6; RFC 8106 5.1).
ND_OPT_SOURCE_LLADDR = 1
ND_OPT_TARGET_LLADDR = 2
ND_OPT_PREFIX_INFORMATION = 3
ND_OPT_REDIRECTED_HEADER = 4
ND_OPT_MTU = 5
ND_OPT_RDNSS = 25

# MLDv2 multicast address record types (RFC 3810 5.2.12).
MLD_MODE_IS_INCLUDE = 1
MLD_MODE_IS_EXCLUDE = 2
MLD_CHANGE_TO_INCLUDE = 3
MLD_CHANGE_TO_EXCLUDE = 4
MLD_ALLOW_NEW_SOURCES = 5
MLD_BLOCK_OLD_SOURCES = 6

ICMPV6_HEADER_LEN = 8
#: Lifetimes of all ones mean "forever" (RFC 4861 4.6.2, RFC 8106 5.1).
INFINITE_LIFETIME = 0xFFFFFFFF

IPV6_ALL_NODES = IPv6Address("ff02::1")
IPV6_ALL_ROUTERS = IPv6Address("ff02::2")
IPV6_ALL_MLDV2_ROUTERS = IPv6Address("ff02::16")  # RFC 3810 5.2.14

_SOLICITED_NODE_PREFIX = int(IPv6Address("ff02::1:ff00:0"))  # RFC 4291 2.7.1
_LINK_LOCAL_PREFIX = int(IPv6Address("fe80::"))

# Flags in the word after the checksum.
_NA_ROUTER = 0x80000000  # RFC 4861 4.4
_NA_SOLICITED = 0x40000000
_NA_OVERRIDE = 0x20000000
_RA_MANAGED = 0x80  # RFC 4861 4.2
_RA_OTHER = 0x40
_PI_ON_LINK = 0x80  # RFC 4861 4.6.2
_PI_AUTONOMOUS = 0x40

# type, code, checksum, the 32-bit word after it (RFC 4443 2.1)
_ICMPV6 = struct.Struct("!BBHI")
_ADDR = struct.Struct("!16s")
_TWO_ADDRS = struct.Struct("!16s16s")
_LLADDR_OPT = struct.Struct("!BB6s")
# type, length, prefix length, flags, valid, preferred, reserved, prefix
_PREFIX_OPT = struct.Struct("!BBBBIII16s")
# type, length, reserved, MTU / lifetime: MTU and RDNSS options
_WORD_OPT = struct.Struct("!BBHI")
_RA_TIMERS = struct.Struct("!II")
# MLDv2: record type, aux data length, source count, multicast address
_MLD_RECORD = struct.Struct("!BBH16s")
# MLDv2 query after the multicast address: S/QRV, QQIC, source count
_MLD_QUERY_TAIL = struct.Struct("!BBH")


@attrs.frozen(slots=True)
class Icmpv6Message(EchoFields):
    type: int
    code: int
    #: The first 32 bits of the message body (RFC 4443 2.1): echo identifier
    #: and sequence, MTU, pointer, or Neighbor Discovery flags.
    rest: int = 0
    payload: bytes = b""

    @property
    def mtu(self) -> int:
        """Packet too big: the next-hop MTU (RFC 4443 3.2)."""
        return self.rest

    @property
    def pointer(self) -> int:
        """Parameter problem: the offending octet's offset (RFC 4443 3.4)."""
        return self.rest

    @property
    def is_error(self) -> bool:
        """Error messages have types 0-127 (RFC 4443 2.1)."""
        return self.type < 128

    @classmethod
    def echo_request(cls, identifier: int, sequence: int, payload=b"") -> "Icmpv6Message":
        return cls(ICMPV6_ECHO_REQUEST, 0, _echo_rest(identifier, sequence), payload)

    @classmethod
    def echo_reply(cls, identifier: int, sequence: int, payload=b"") -> "Icmpv6Message":
        # RFC 4443 4.2: the reply returns identifier, sequence and data.
        return cls(ICMPV6_ECHO_REPLY, 0, _echo_rest(identifier, sequence), payload)

    @classmethod
    def error(cls, type: int, code: int, quoted: bytes, *, mtu: int = 0,
              pointer: int = 0) -> "Icmpv6Message":
        """An error message quoting ``quoted`` (see ``ipv6.quote_for_icmpv6``).
        ``mtu`` is for packet too big, ``pointer`` for parameter problem."""
        if not (0 <= mtu <= 0xFFFFFFFF and 0 <= pointer <= 0xFFFFFFFF) or (mtu and pointer):
            raise ValueError("mtu or pointer out of range, or both given")
        if type >= 128:
            raise ValueError(f"ICMPv6 type {type!r} is not an error (RFC 4443 2.1)")
        return cls(type, code, mtu | pointer, quoted)


def _echo_rest(identifier: int, sequence: int) -> int:
    if not (0 <= identifier <= 0xFFFF and 0 <= sequence <= 0xFFFF):
        raise ValueError("echo identifier and sequence must fit in 16 bits")
    return (identifier << 16) | sequence


def parse_icmpv6(data, src: IPv6Address, dst: IPv6Address, *,
                 verify_checksum: bool = True) -> Icmpv6Message:
    """Parse one message (the upper-layer data of an IPv6 packet from
    ``src`` to ``dst``); ``payload`` is a zero-copy view of everything after
    the 8-byte header."""
    n = len(data)
    if n < ICMPV6_HEADER_LEN:
        raise WireError("icmpv6.truncated")
    type_, code, _csum, rest = _ICMPV6.unpack_from(data)
    mv = memoryview(data)
    # RFC 4443 2.3: the checksum covers the message and the IPv6
    # pseudo-header (RFC 8200 8.1); a bad one is discarded.
    if verify_checksum and ones_complement_sum(
            mv, pseudo_header_sum(src, dst, PROTO_ICMPV6, n)) != 0xFFFF:
        raise WireError("icmpv6.bad_checksum")
    return Icmpv6Message(type_, code, rest, mv[ICMPV6_HEADER_LEN:])


def build_icmpv6(msg: Icmpv6Message, src: IPv6Address, dst: IPv6Address) -> bytes:
    return _finish(msg.type, msg.code, msg.rest, msg.payload, src, dst)


def _finish(type_: int, code: int, rest: int, body, src, dst) -> bytes:
    """Header plus ``body``, with the checksum over the pseudo-header."""
    length = ICMPV6_HEADER_LEN + len(body)
    if length > 0xFFFF:
        raise ValueError("icmpv6 message too long")
    try:
        # The header words (checksum zero) join the pseudo-header sum, so the
        # body need not be copied before summing.
        csum = internet_checksum(body, pseudo_header_sum(src, dst, PROTO_ICMPV6, length)
                                 + ((type_ << 8) | code) + rest)
        return _ICMPV6.pack(type_, code, csum, rest) + body
    except struct.error as exc:
        raise ValueError(f"bad icmpv6 field: {exc}") from None


# --- Neighbor Discovery options (RFC 4861 4.6) -----------------------------


@attrs.frozen(slots=True)
class PrefixInformation:
    """The prefix information option (RFC 4861 4.6.2)."""

    prefix: IPv6Address
    prefix_length: int
    on_link: bool = True
    autonomous: bool = True
    #: Seconds; ``INFINITE_LIFETIME`` is forever. Defaults of RFC 4861 6.2.1.
    valid_lifetime: int = 2592000
    preferred_lifetime: int = 604800

    @property
    def network(self) -> IPv6Network:
        return IPv6Network((self.prefix, self.prefix_length), strict=False)


@attrs.frozen(slots=True)
class RdnssOption:
    """Recursive DNS servers (RFC 8106 5.1)."""

    lifetime: int
    addresses: tuple[IPv6Address, ...]


def _options(body, start: int):
    """(type, offset of the option, offset past it) for each option from
    ``start`` on. RFC 4861 4.6: a zero length makes the message invalid;
    so does an option running past the end."""
    n = len(body)
    found = []
    i = start
    while i < n:
        if i + 2 > n:
            raise WireError("icmpv6.bad_option", "truncated option")
        length = body[i + 1] << 3
        if length == 0:
            raise WireError("icmpv6.bad_option", "zero length")
        end = i + length
        if end > n:
            raise WireError("icmpv6.bad_option", "option runs past the message")
        found.append((body[i], i, end))
        i = end
    return found


def _lladdr(body, i: int, end: int) -> bytes:
    # RFC 4861 4.6.1: Ethernet addresses make a length of 1 (RFC 2464 8).
    if end - i != 8:
        raise WireError("icmpv6.bad_option", "link-layer address length")
    return bytes(body[i + 2:end])


def _lladdr_option(opt_type: int, mac) -> bytes:
    if len(mac) != 6:
        raise ValueError("MAC addresses must be 6 bytes")
    return _LLADDR_OPT.pack(opt_type, 1, bytes(mac))


def _only_lladdr(body, start: int, wanted: int) -> bytes | None:
    """The one option NS, NA and RS carry; others are ignored (RFC 4861
    7.1.1, 7.1.2, 6.1.1)."""
    if start == len(body):
        return None
    lladdr = None
    for opt_type, i, end in _options(body, start):
        if opt_type == wanted and lladdr is None:
            lladdr = _lladdr(body, i, end)
    return lladdr


def _prefix_option(body, i: int, end: int) -> PrefixInformation:
    if end - i != _PREFIX_OPT.size:
        raise WireError("icmpv6.bad_option", "prefix information length")
    _, _, plen, flags, valid, preferred, _, prefix = _PREFIX_OPT.unpack_from(body, i)
    if plen > 128:
        raise WireError("icmpv6.bad_option", "prefix length")
    return PrefixInformation(IPv6Address(prefix), plen, bool(flags & _PI_ON_LINK),
                             bool(flags & _PI_AUTONOMOUS), valid, preferred)


def _rdnss_option(body, i: int, end: int) -> RdnssOption:
    # RFC 8106 5.1: length 3 for one address, 2 more for each other.
    size = end - i
    if size < 24 or (size - 8) % 16:
        raise WireError("icmpv6.bad_option", "RDNSS length")
    _, _, _, lifetime = _WORD_OPT.unpack_from(body, i)
    addresses = tuple(IPv6Address(bytes(body[a:a + 16])) for a in range(i + 8, end, 16))
    return RdnssOption(lifetime, addresses)


# --- Neighbor Discovery messages (RFC 4861 4.1-4.5) ------------------------


@attrs.frozen(slots=True)
class RouterSolicitation:
    source_lladdr: bytes | None = None


@attrs.frozen(slots=True)
class RouterAdvertisement:
    #: 0 means unspecified (RFC 4861 4.2).
    cur_hop_limit: int = 0
    managed: bool = False
    other: bool = False
    #: Seconds; 0: not a default router.
    router_lifetime: int = 0
    #: Milliseconds; 0: unspecified.
    reachable_time: int = 0
    retrans_timer: int = 0
    source_lladdr: bytes | None = None
    mtu: int | None = None
    prefixes: tuple[PrefixInformation, ...] = ()
    rdnss: tuple[RdnssOption, ...] = ()


@attrs.frozen(slots=True)
class NeighborSolicitation:
    target: IPv6Address
    source_lladdr: bytes | None = None


@attrs.frozen(slots=True)
class NeighborAdvertisement:
    target: IPv6Address
    router: bool = False
    solicited: bool = False
    override: bool = False
    target_lladdr: bytes | None = None


@attrs.frozen(slots=True)
class Redirect:
    target: IPv6Address
    destination: IPv6Address
    target_lladdr: bytes | None = None
    #: The redirected header option's data: the start of the packet that
    #: caused the redirect (RFC 4861 4.6.3), padded with zeros; a view of
    #: the message when parsed.
    redirected: bytes = b""


def _check(msg: Icmpv6Message, type_: int, min_body: int) -> None:
    """RFC 4861 6.1, 7.1, 8.1: ICMP code 0 and a minimum ICMP length."""
    if msg.type != type_:
        raise WireError("icmpv6.bad_type", str(msg.type))
    if msg.code != 0:
        raise WireError("icmpv6.bad_code", str(msg.code))
    if len(msg.payload) < min_body:
        raise WireError("icmpv6.truncated")


def parse_router_solicitation(msg: Icmpv6Message) -> RouterSolicitation:
    _check(msg, ICMPV6_ROUTER_SOLICITATION, 0)
    return RouterSolicitation(_only_lladdr(msg.payload, 0, ND_OPT_SOURCE_LLADDR))


def build_router_solicitation(rs: RouterSolicitation, src: IPv6Address,
                              dst: IPv6Address = IPV6_ALL_ROUTERS) -> bytes:
    # RFC 4861 4.1: no source link-layer address from the unspecified address.
    body = b"" if rs.source_lladdr is None else _lladdr_option(ND_OPT_SOURCE_LLADDR,
                                                                rs.source_lladdr)
    return _finish(ICMPV6_ROUTER_SOLICITATION, 0, 0, body, src, dst)


def parse_router_advertisement(msg: Icmpv6Message) -> RouterAdvertisement:
    _check(msg, ICMPV6_ROUTER_ADVERTISEMENT, 8)
    body = msg.payload
    rest = msg.rest
    reachable, retrans = _RA_TIMERS.unpack_from(body)
    lladdr = mtu = None
    prefixes = []
    rdnss = []
    for opt_type, i, end in _options(body, 8):
        if opt_type == ND_OPT_SOURCE_LLADDR:
            if lladdr is None:
                lladdr = _lladdr(body, i, end)
        elif opt_type == ND_OPT_MTU:
            if end - i != 8:
                raise WireError("icmpv6.bad_option", "MTU length")
            if mtu is None:
                mtu = _WORD_OPT.unpack_from(body, i)[3]
        elif opt_type == ND_OPT_PREFIX_INFORMATION:
            prefixes.append(_prefix_option(body, i, end))
        elif opt_type == ND_OPT_RDNSS:
            rdnss.append(_rdnss_option(body, i, end))
    flags = (rest >> 16) & 0xFF
    return RouterAdvertisement(rest >> 24, bool(flags & _RA_MANAGED), bool(flags & _RA_OTHER),
                               rest & 0xFFFF, reachable, retrans, lladdr, mtu, tuple(prefixes),
                               tuple(rdnss))


def build_router_advertisement(ra: RouterAdvertisement, src: IPv6Address,
                               dst: IPv6Address = IPV6_ALL_NODES) -> bytes:
    flags = (_RA_MANAGED if ra.managed else 0) | (_RA_OTHER if ra.other else 0)
    if not (0 <= ra.cur_hop_limit <= 0xFF and 0 <= ra.router_lifetime <= 0xFFFF):
        raise ValueError("cur_hop_limit or router_lifetime out of range")
    try:
        parts = [_RA_TIMERS.pack(ra.reachable_time, ra.retrans_timer)]
        if ra.source_lladdr is not None:
            parts.append(_lladdr_option(ND_OPT_SOURCE_LLADDR, ra.source_lladdr))
        if ra.mtu is not None:
            parts.append(_WORD_OPT.pack(ND_OPT_MTU, 1, 0, ra.mtu))
        for p in ra.prefixes:
            if not 0 <= p.prefix_length <= 128:
                raise ValueError(f"bad prefix length {p.prefix_length!r}")
            pflags = (_PI_ON_LINK if p.on_link else 0) | (_PI_AUTONOMOUS if p.autonomous else 0)
            parts.append(_PREFIX_OPT.pack(ND_OPT_PREFIX_INFORMATION, 4, p.prefix_length, pflags,
                                          p.valid_lifetime, p.preferred_lifetime, 0,
                                          p.prefix.packed))
        for r in ra.rdnss:
            if not r.addresses or len(r.addresses) > 127:
                raise ValueError("an RDNSS option holds 1 to 127 addresses")
            parts.append(_WORD_OPT.pack(ND_OPT_RDNSS, 1 + 2 * len(r.addresses), 0, r.lifetime))
            parts.extend(a.packed for a in r.addresses)
    except struct.error as exc:
        raise ValueError(f"bad router advertisement field: {exc}") from None
    rest = (ra.cur_hop_limit << 24) | (flags << 16) | ra.router_lifetime
    return _finish(ICMPV6_ROUTER_ADVERTISEMENT, 0, rest, b"".join(parts), src, dst)


def parse_neighbor_solicitation(msg: Icmpv6Message) -> NeighborSolicitation:
    _check(msg, ICMPV6_NEIGHBOR_SOLICITATION, 16)
    body = msg.payload
    raw = _ADDR.unpack_from(body)[0]
    # RFC 4861 7.1.1: the target is not a multicast address (ff00::/8).
    if raw[0] == 0xFF:
        raise WireError("icmpv6.bad_target")
    return NeighborSolicitation(IPv6Address(raw), _only_lladdr(body, 16, ND_OPT_SOURCE_LLADDR))


def build_neighbor_solicitation(ns: NeighborSolicitation, src: IPv6Address,
                                dst: IPv6Address | None = None) -> bytes:
    """To ``dst``, by default the target's solicited-node address (RFC 4861
    7.2.2). Leave ``source_lladdr`` None when ``src`` is unspecified (DAD)."""
    if dst is None:
        dst = solicited_node_address(ns.target)
    body = ns.target.packed
    if ns.source_lladdr is not None:
        body += _lladdr_option(ND_OPT_SOURCE_LLADDR, ns.source_lladdr)
    return _finish(ICMPV6_NEIGHBOR_SOLICITATION, 0, 0, body, src, dst)


def parse_neighbor_advertisement(msg: Icmpv6Message) -> NeighborAdvertisement:
    _check(msg, ICMPV6_NEIGHBOR_ADVERTISEMENT, 16)
    body = msg.payload
    raw = _ADDR.unpack_from(body)[0]
    # RFC 4861 7.1.2: the target is not a multicast address (ff00::/8).
    if raw[0] == 0xFF:
        raise WireError("icmpv6.bad_target")
    rest = msg.rest
    return NeighborAdvertisement(IPv6Address(raw), bool(rest & _NA_ROUTER),
                                 bool(rest & _NA_SOLICITED), bool(rest & _NA_OVERRIDE),
                                 _only_lladdr(body, 16, ND_OPT_TARGET_LLADDR))


def build_neighbor_advertisement(na: NeighborAdvertisement, src: IPv6Address,
                                 dst: IPv6Address) -> bytes:
    rest = ((_NA_ROUTER if na.router else 0) | (_NA_SOLICITED if na.solicited else 0)
            | (_NA_OVERRIDE if na.override else 0))
    body = na.target.packed
    if na.target_lladdr is not None:
        body += _lladdr_option(ND_OPT_TARGET_LLADDR, na.target_lladdr)
    return _finish(ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, rest, body, src, dst)


def parse_redirect(msg: Icmpv6Message) -> Redirect:
    _check(msg, ICMPV6_REDIRECT, 32)
    body = msg.payload
    target_raw, dest_raw = _TWO_ADDRS.unpack_from(body)
    target, destination = IPv6Address(target_raw), IPv6Address(dest_raw)
    # RFC 4861 8.1: the destination is not multicast; the target is
    # link-local (a router) or the destination itself (on-link).
    if destination.is_multicast:
        raise WireError("icmpv6.bad_redirect", "multicast destination")
    if target != destination and not target.is_link_local:
        raise WireError("icmpv6.bad_redirect", "target neither link-local nor the destination")
    lladdr = None
    redirected = b""
    for opt_type, i, end in _options(body, 32):
        if opt_type == ND_OPT_TARGET_LLADDR:
            if lladdr is None:
                lladdr = _lladdr(body, i, end)
        elif opt_type == ND_OPT_REDIRECTED_HEADER:
            redirected = body[i + 8:end]  # after 6 reserved bytes (RFC 4861 4.6.3)
    return Redirect(target, destination, lladdr, redirected)


def build_redirect(redirect: Redirect, src: IPv6Address, dst: IPv6Address) -> bytes:
    """The redirected packet is cut so that the redirect fits the minimum
    MTU (RFC 4861 4.6.3, 8.2) and padded to a multiple of 8 bytes."""
    body = redirect.target.packed + redirect.destination.packed
    if redirect.target_lladdr is not None:
        body += _lladdr_option(ND_OPT_TARGET_LLADDR, redirect.target_lladdr)
    room = IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMPV6_HEADER_LEN - len(body) - 8
    data = bytes(redirect.redirected[:room])
    if data:
        data += bytes(-len(data) & 7)
        body += bytes((ND_OPT_REDIRECTED_HEADER, 1 + len(data) // 8)) + bytes(6) + data
    return _finish(ICMPV6_REDIRECT, 0, 0, body, src, dst)


# --- MLD (RFC 3810; RFC 2710 for version 1) --------------------------------


@attrs.frozen(slots=True)
class MldRecord:
    """A multicast address record of an MLDv2 report (RFC 3810 5.2.4)."""

    record_type: int
    multicast_address: IPv6Address
    sources: tuple[IPv6Address, ...] = ()


@attrs.frozen(slots=True)
class MldQuery:
    #: 1 for a 24-byte query, 2 for MLDv2 (RFC 3810 8.1).
    version: int
    #: Milliseconds, decoded from the Maximum Response Code (RFC 3810 5.1.3).
    max_response_delay: int
    #: Unspecified for a general query.
    multicast_address: IPv6Address
    suppress_router_processing: bool = False
    robustness: int = 0
    #: Seconds, decoded from the QQIC (RFC 3810 5.1.9).
    query_interval: int = 0
    sources: tuple[IPv6Address, ...] = ()


def parse_mld_query(msg: Icmpv6Message) -> MldQuery:
    """An MLDv1 or MLDv2 query; any other length is invalid (RFC 3810 8.1)."""
    if msg.type != ICMPV6_MLD_QUERY:
        raise WireError("icmpv6.bad_type", str(msg.type))
    body = msg.payload
    n = len(body)
    code = msg.rest >> 16
    if n == 16:
        # RFC 2710 3.4: a plain millisecond count.
        return MldQuery(1, code, IPv6Address(_ADDR.unpack_from(body)[0]))
    if n < 20:
        raise WireError("icmpv6.truncated")
    if code >= 0x8000:  # RFC 3810 5.1.3: 1 exp(3) mant(12)
        code = ((code & 0xFFF) | 0x1000) << (((code >> 12) & 7) + 3)
    address = IPv6Address(_ADDR.unpack_from(body)[0])
    s_qrv, qqic, count = _MLD_QUERY_TAIL.unpack_from(body, 16)
    if qqic >= 0x80:  # RFC 3810 5.1.9: 1 exp(3) mant(4)
        qqic = ((qqic & 0x0F) | 0x10) << (((qqic >> 4) & 7) + 3)
    if n < 20 + 16 * count:
        raise WireError("icmpv6.truncated")
    sources = tuple(IPv6Address(bytes(body[a:a + 16])) for a in range(20, 20 + 16 * count, 16))
    return MldQuery(2, code, address, bool(s_qrv & 0x08), s_qrv & 0x07, qqic, sources)


def parse_mldv2_report(msg: Icmpv6Message) -> tuple[MldRecord, ...]:
    """The records of an MLDv2 report (RFC 3810 5.2); auxiliary data is
    skipped (RFC 3810 5.2.10)."""
    if msg.type != ICMPV6_MLDV2_REPORT:
        raise WireError("icmpv6.bad_type", str(msg.type))
    body = msg.payload
    n = len(body)
    records = []
    i = 0
    # Each record is at least 20 bytes, so the count costs no more than the
    # message is long.
    for _ in range(msg.rest & 0xFFFF):
        if i + 20 > n:
            raise WireError("icmpv6.truncated")
        rtype, aux_words, count, address = _MLD_RECORD.unpack_from(body, i)
        start = i + 20
        i = start + 16 * count + 4 * aux_words
        if i > n:
            raise WireError("icmpv6.truncated")
        sources = tuple(IPv6Address(bytes(body[a:a + 16]))
                        for a in range(start, start + 16 * count, 16))
        records.append(MldRecord(rtype, IPv6Address(address), sources))
    return tuple(records)


def build_mldv2_report(records, src: IPv6Address,
                       dst: IPv6Address = IPV6_ALL_MLDV2_ROUTERS) -> bytes:
    """An MLDv2 report of ``records`` (``MldRecord`` or (record type,
    multicast address, sources) tuples), sent to all MLDv2 routers (RFC
    3810 5.2.14). Splitting reports to fit the MTU (RFC 3810 5.2.15) is the
    caller's."""
    parts = []
    count = 0
    for record in records:
        if not isinstance(record, MldRecord):
            record = MldRecord(*record)
        sources = record.sources
        try:
            parts.append(_MLD_RECORD.pack(record.record_type, 0, len(sources),
                                          record.multicast_address.packed))
        except struct.error as exc:
            raise ValueError(f"bad MLDv2 record field: {exc}") from None
        parts.extend(s.packed for s in sources)
        count += 1
    # RFC 3810 5.2: reserved 16 bits, then the record count (which fits:
    # 65536 records of 20 bytes would not).
    return _finish(ICMPV6_MLDV2_REPORT, 0, count, b"".join(parts), src, dst)


# --- address helpers -------------------------------------------------------


def solicited_node_address(addr: IPv6Address) -> IPv6Address:
    """ff02::1:ff00:0 plus the address's low 24 bits (RFC 4291 2.7.1)."""
    return IPv6Address(_SOLICITED_NODE_PREFIX | (int(addr) & 0xFFFFFF))


def multicast_mac(addr: IPv6Address) -> bytes:
    """The Ethernet address of a multicast group: 33:33 and the low 32 bits
    (RFC 2464 7)."""
    value = int(addr)
    if value >> 120 != 0xFF:
        raise ValueError(f"{addr} is not a multicast address")
    return b"\x33\x33" + (value & 0xFFFFFFFF).to_bytes(4, "big")


def interface_id_from_mac(mac) -> int:
    """The modified EUI-64 interface identifier of an Ethernet address: ff:fe
    in the middle and the universal/local bit inverted (RFC 4291 2.5.1 and
    appendix A, RFC 2464 4)."""
    if len(mac) != 6:
        raise ValueError("MAC addresses must be 6 bytes")
    raw = bytes(mac)
    return int.from_bytes(bytes((raw[0] ^ 0x02,)) + raw[1:3] + b"\xff\xfe" + raw[3:6], "big")


def link_local_from_mac(mac) -> IPv6Address:
    """fe80::/64 with the modified EUI-64 identifier (RFC 4862 5.3)."""
    return IPv6Address(_LINK_LOCAL_PREFIX | interface_id_from_mac(mac))
