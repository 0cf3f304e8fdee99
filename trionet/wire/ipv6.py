"""IPv6 header, extension headers and fragmentation (RFC 8200)."""

import struct
from ipaddress import IPv6Address

import attrs

from .errors import WireError
from .fast import slot_constructor
# Re-exported: IPv6 shares IPv4's protocol numbers (RFC 8200 4).
from .ipv4 import PROTO_TCP, PROTO_UDP  # noqa: F401

IPV6_HEADER_LEN = 40
#: Every link carries at least this (RFC 8200 5).
IPV6_MIN_MTU = 1280
FRAGMENT_HEADER_LEN = 8

# Next Header values (RFC 8200 4.1).
NH_HOPOPTS = 0
NH_ROUTING = 43
NH_FRAGMENT = 44
PROTO_ICMPV6 = 58
NH_NONE = 59
NH_DSTOPTS = 60

#: Extension headers the chain walk reads before it drops a packet, so that
#: a hostile one costs little. A legitimate chain has at most hop-by-hop,
#: two destination options, routing and fragment (RFC 8200 4.1).
MAX_EXTENSION_HEADERS = 8

_MAX_PAYLOAD_LEN = 0xFFFF  # no jumbograms (RFC 2675)
_VERSION_WORD = 6 << 28
_FLOW_LABEL_MASK = 0xFFFFF
_EXTENSION_HEADERS = frozenset((NH_HOPOPTS, NH_ROUTING, NH_FRAGMENT, NH_DSTOPTS))

# The options this walk knows (RFC 8200 4.2).
_OPT_PAD1 = 0
_OPT_PADN = 1
_OPT_ROUTER_ALERT = 5  # RFC 2711
# Non-padding options per options header, and padding bytes in a row, as
# Linux limits them, to bound the work per header (RFC 8504 5.3 allows it;
# RFC 4942 2.1.9.5 on padding).
_MAX_OPTIONS = 8
_MAX_PADDING = 7

# ICMPv6 parameter problem codes (RFC 4443 3.4), as in icmpv6.py.
_PARAM_HEADER_FIELD = 0
_PARAM_NEXT_HEADER = 1
_PARAM_OPTION = 2

# Octet offsets in the fixed header, for parameter problem pointers.
_PAYLOAD_LENGTH_FIELD = 4
_NEXT_HEADER_FIELD = 6

# version/traffic class/flow label, payload length, next header, hop limit,
# source, destination.
_IPV6 = struct.Struct("!IHBB16s16s")
# next header, reserved, fragment offset/res/M, identification (RFC 8200 4.5)
_FRAGMENT = struct.Struct("!BBHI")


@attrs.frozen(slots=True)
class IPv6Header:
    """The fixed header. The payload length is not a field: it is the length
    of the payload given to ``build_ipv6`` or returned by ``parse_ipv6``."""

    src: IPv6Address
    dst: IPv6Address
    next_header: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0


@attrs.frozen(slots=True)
class FragmentHeader:
    #: In bytes, always a multiple of 8 (the wire field counts 8-byte units).
    offset_bytes: int
    more: bool
    identification: int

    @property
    def is_atomic(self) -> bool:
        """Offset 0 and no more fragments: a whole packet (RFC 6946)."""
        return self.offset_bytes == 0 and not self.more


@attrs.frozen(slots=True)
class HeaderChain:
    """Where ``parse_extension_headers`` stopped.

    Either at an upper-layer header (``fragment`` is None; ``protocol`` may
    also be ``NH_NONE`` or a header this walk does not process, such as ESP),
    or at the Fragment header of a real fragment: then ``protocol`` is the
    fragment header's Next Header, ``payload`` the fragment data and
    ``fragment`` the header, for reassembly (RFC 8200 4.5). An atomic
    fragment is walked through (RFC 6946).
    """

    protocol: int
    #: A zero-copy view of the walked data from ``offset`` on.
    payload: memoryview
    #: Where ``payload`` starts, counted from the start of the walked data.
    offset: int
    #: Octet offset, from the start of the IPv6 header, of the Next Header
    #: field that holds ``protocol``: the pointer of a parameter problem with
    #: code 1 if the protocol is unknown (RFC 8200 4, RFC 4443 3.4).
    next_header_pointer: int = _NEXT_HEADER_FIELD
    fragment: FragmentHeader | None = None
    #: The Router Alert option's value (RFC 2711) if hop-by-hop carries one.
    router_alert: int | None = None


class ParameterProblem(WireError):
    """A packet to discard and answer with an ICMPv6 parameter problem
    (RFC 4443 3.4) carrying ``code`` and ``pointer``: the octet offset of
    the offending field from the start of the invoking packet's IPv6 header.

    Raised by ``parse_extension_headers``; catching ``WireError`` catches it
    too. Whether to answer is ``should_report(dst)``: RFC 4443 2.4(e) allows
    an error to a multicast destination only for an unrecognized option
    whose type's high-order bits are 10 (RFC 8200 4.2).
    """

    def __init__(self, reason: str, code: int, pointer: int, *, to_multicast: bool = False):
        super().__init__(reason, f"code {code}, pointer {pointer}")
        self.code = code
        self.pointer = pointer
        self.to_multicast = to_multicast

    def should_report(self, dst: IPv6Address) -> bool:
        """Whether to send the ICMPv6 error, given the packet's destination.
        (The other rules of RFC 4443 2.4(e), such as rate limits and
        source checks, are the caller's.)"""
        return self.to_multicast or not dst.is_multicast


def is_extension_header(next_header: int) -> bool:
    """Whether ``next_header`` names an extension header this walk handles."""
    return next_header in _EXTENSION_HEADERS


# The per-packet constructor (``fast.py``): the same objects, less work.
_parsed_header = slot_constructor(IPv6Header)


def parse_ipv6(data, address=IPv6Address) -> tuple[IPv6Header, memoryview]:
    """Parse the fixed header; the payload view ends at the payload length,
    so link-layer padding after it is dropped. A jumbogram (payload length
    0, RFC 2675) is read as an empty payload. ``address`` makes the
    addresses from their 16 bytes (a caller may hand out the same object
    for the same bytes)."""
    n = len(data)
    if n < IPV6_HEADER_LEN:
        raise WireError("ipv6.truncated")
    vtf, plen, nh, hlim, src, dst = _IPV6.unpack_from(data)
    if vtf >> 28 != 6:
        raise WireError("ipv6.bad_version", str(vtf >> 28))
    end = IPV6_HEADER_LEN + plen
    if end > n:
        raise WireError("ipv6.truncated")
    header = _parsed_header(address(src), address(dst), nh, hlim,
                            (vtf >> 20) & 0xFF, vtf & _FLOW_LABEL_MASK)
    return header, memoryview(data)[IPV6_HEADER_LEN:end]


def parse_ipv6_quote(data) -> tuple[IPv6Header, memoryview, int]:
    """The packet an ICMPv6 error quotes (RFC 4443 2.4(c)): (header, the
    quoted payload bytes, the original payload length). The quote may be
    cut short, so the payload length is not checked against it."""
    if len(data) < IPV6_HEADER_LEN:
        raise WireError("icmpv6.bad_quote", "shorter than an IPv6 header")
    vtf, plen, nh, hlim, src, dst = _IPV6.unpack_from(data)
    if vtf >> 28 != 6:
        raise WireError("icmpv6.bad_quote", "not an IPv6 header")
    header = IPv6Header(IPv6Address(src), IPv6Address(dst), nh, hlim,
                        (vtf >> 20) & 0xFF, vtf & _FLOW_LABEL_MASK)
    return header, memoryview(data)[IPV6_HEADER_LEN:], plen


def build_ipv6(header: IPv6Header, payload) -> bytes:
    """The packet: fixed header plus ``payload`` (extension headers
    included, if any; ``header.next_header`` names the first)."""
    if len(payload) > _MAX_PAYLOAD_LEN:
        raise ValueError("ipv6 packet too long")
    tc, flow = header.traffic_class, header.flow_label
    if not (0 <= tc <= 0xFF and 0 <= flow <= _FLOW_LABEL_MASK):
        raise ValueError(f"bad ipv6 traffic class or flow label: {tc!r}, {flow!r}")
    try:
        raw = _IPV6.pack(_VERSION_WORD | (tc << 20) | flow, len(payload), header.next_header,
                         header.hop_limit, header.src.packed, header.dst.packed)
    except struct.error as exc:
        raise ValueError(f"bad ipv6 header field: {exc}") from None
    return raw + payload


def build_ipv6_plain(src: IPv6Address, dst: IPv6Address, next_header: int, payload, *,
                     hop_limit: int = 64) -> bytes:
    """``build_ipv6`` for the common case, without an ``IPv6Header``:
    traffic class and flow label 0 (the per-packet output path)."""
    length = len(payload)
    if length > _MAX_PAYLOAD_LEN:
        raise ValueError("ipv6 packet too long")
    try:
        raw = _IPV6.pack(_VERSION_WORD, length, next_header, hop_limit, src.packed, dst.packed)
    except struct.error as exc:
        raise ValueError(f"bad ipv6 header field: {exc}") from None
    return raw + payload


def parse_extension_headers(next_header: int, data, *, base: int = 0,
                            next_header_pointer: int = _NEXT_HEADER_FIELD) -> HeaderChain:
    """Walk the extension headers at the start of ``data`` (an IPv6 payload)
    whose first is ``next_header`` (the fixed header's).

    Processes hop-by-hop options, destination options, routing and fragment
    headers (RFC 8200 4) and stops at anything else; see ``HeaderChain``.
    To walk on after reassembly, pass the fragment header's Next Header,
    the reassembled fragmentable part, ``base`` (its offset in the IPv6
    payload) and ``next_header_pointer`` (of the field naming its first
    header); error pointers count from the start of the IPv6 header.

    Raises ``ParameterProblem`` where RFC 8200 wants the packet discarded
    with an ICMPv6 error, plain ``WireError`` where it is dropped silently.
    At most ``MAX_EXTENSION_HEADERS`` headers are read.
    """
    if next_header not in _EXTENSION_HEADERS:
        return HeaderChain(next_header, memoryview(data), 0, next_header_pointer)
    mv = memoryview(data)
    n = len(mv)
    pointer_base = IPV6_HEADER_LEN + base
    nh_pointer = next_header_pointer
    offset = 0
    count = 0
    router_alert = None
    while next_header in _EXTENSION_HEADERS:
        count += 1
        if count > MAX_EXTENSION_HEADERS:
            raise WireError("ipv6.too_many_headers")
        if n - offset < 8:
            raise WireError("ipv6.truncated")
        here = pointer_base + offset
        if next_header == NH_FRAGMENT:
            nh, _, field, ident = _FRAGMENT.unpack_from(mv, offset)
            start = offset + FRAGMENT_HEADER_LEN
            frag_offset = field & 0xFFF8
            more = bool(field & 1)
            if frag_offset or more:
                size = n - start
                # RFC 8200 4.5: all but the last fragment are multiples of 8
                # bytes, and the reassembled payload (the headers before
                # this one, then the fragments) fits in 65535 bytes.
                if more and size & 7:
                    raise ParameterProblem("ipv6.bad_fragment_length", _PARAM_HEADER_FIELD,
                                           _PAYLOAD_LENGTH_FIELD)
                if base + offset + frag_offset + size > _MAX_PAYLOAD_LEN:
                    raise ParameterProblem("ipv6.bad_fragment_offset", _PARAM_HEADER_FIELD,
                                           here + 2)
                return HeaderChain(nh, mv[start:], start, here,
                                   FragmentHeader(frag_offset, more, ident), router_alert)
            # RFC 6946: an atomic fragment is processed as a whole packet.
            nh_pointer = here
            next_header = nh
            offset = start
            continue
        nh = mv[offset]
        end = offset + ((mv[offset + 1] + 1) << 3)  # length in 8-byte units (RFC 8200 4.3)
        if end > n:
            raise WireError("ipv6.truncated")
        if next_header == NH_ROUTING:
            # RFC 8200 4.4: with segments left, an unrecognized routing type
            # is an error at the type field; RFC 5095 3 makes type 0 one.
            # A host forwards nothing, so no type is recognized.
            if mv[offset + 3]:
                routing_type = mv[offset + 2]
                raise ParameterProblem(
                    "ipv6.routing_type0" if routing_type == 0 else "ipv6.unsupported_routing",
                    _PARAM_HEADER_FIELD, here + 2)
        elif next_header == NH_HOPOPTS:
            # RFC 8200 4: hop-by-hop only right after the fixed header;
            # elsewhere its Next Header value is unrecognized (RFC 8200 4.1).
            if offset or base:
                raise ParameterProblem("ipv6.misplaced_hop_by_hop", _PARAM_NEXT_HEADER,
                                       nh_pointer)
            router_alert = _walk_options(mv, offset, end, pointer_base, True)
        else:
            _walk_options(mv, offset, end, pointer_base, False)
        nh_pointer = here
        next_header = nh
        offset = end
    return HeaderChain(next_header, mv[offset:], offset, nh_pointer, None, router_alert)


def _walk_options(mv: memoryview, start: int, end: int, pointer_base: int,
                  hop_by_hop: bool) -> int | None:
    """Check the options of one hop-by-hop or destination options header
    (RFC 8200 4.2); returns the router alert value, if any."""
    router_alert = None
    i = start + 2
    padding = 0
    options = 0
    while i < end:
        opt = mv[i]
        if opt == _OPT_PAD1:
            padding += 1
            if padding > _MAX_PADDING:
                raise WireError("ipv6.bad_padding")
            i += 1
            continue
        if i + 2 > end:
            raise WireError("ipv6.bad_option", "option runs past its header")
        following = i + 2 + mv[i + 1]
        if following > end:
            raise WireError("ipv6.bad_option", "option runs past its header")
        if opt == _OPT_PADN:
            padding += following - i
            if padding > _MAX_PADDING:
                raise WireError("ipv6.bad_padding")
        else:
            padding = 0
            options += 1
            if options > _MAX_OPTIONS:
                raise WireError("ipv6.too_many_options")
            if opt == _OPT_ROUTER_ALERT and hop_by_hop:
                if following - i != 4:  # RFC 2711 2.1: a 2-byte value
                    raise WireError("ipv6.bad_option", "router alert length")
                router_alert = (mv[i + 2] << 8) | mv[i + 3]
            else:
                # RFC 8200 4.2: the two high-order bits of an unrecognized
                # type: 00 skip, 01 discard, 10 discard and report, 11
                # discard and report unless the destination is multicast.
                action = opt >> 6
                if action == 1:
                    raise WireError("ipv6.unknown_option", str(opt))
                if action:
                    raise ParameterProblem("ipv6.unknown_option", _PARAM_OPTION,
                                           pointer_base + i, to_multicast=action == 2)
        i = following
    return router_alert


def build_router_alert_header(next_header: int, value: int = 0) -> bytes:
    """A hop-by-hop options header holding only a Router Alert option
    (RFC 2711; value 0 is MLD, RFC 3810 5), padded to 8 bytes."""
    return struct.pack("!BBBBHBB", next_header, 0, _OPT_ROUTER_ALERT, 2, value, _OPT_PADN, 0)


def build_fragment_header(next_header: int, offset_bytes: int, more: bool,
                          identification: int) -> bytes:
    """The 8-byte Fragment header (RFC 8200 4.5)."""
    if offset_bytes & 7 or not 0 <= offset_bytes <= 0xFFF8:
        raise ValueError(f"bad ipv6 fragment offset {offset_bytes!r}")
    try:
        return _FRAGMENT.pack(next_header, 0, offset_bytes | bool(more), identification)
    except struct.error as exc:
        raise ValueError(f"bad ipv6 fragment header field: {exc}") from None


def fragment_ipv6(header: IPv6Header, payload, mtu: int, identification: int, *,
                  unfragmentable=b"") -> list[bytes]:
    """Split a packet into fragment packets of at most ``mtu`` bytes
    (RFC 8200 4.5).

    The packet is ``header`` (whose ``next_header`` names its first header)
    followed by ``unfragmentable`` (extension headers every fragment
    repeats: hop-by-hop, and a routing header with what precedes it) and
    ``payload`` (the fragmentable part, named by the last Next Header of
    ``unfragmentable``). Each fragment's data is a multiple of 8 bytes but
    the last's. Raises ValueError if ``mtu`` leaves no room for 8 data
    bytes or the packet is too long to fragment.
    """
    unfrag = bytes(unfragmentable)
    if unfrag:
        # RFC 8200 4.5: the last header of the unfragmentable part now
        # names the Fragment header, which names what it named.
        nh = header.next_header
        pos = last = 0
        while pos < len(unfrag):
            if nh not in (NH_HOPOPTS, NH_ROUTING, NH_DSTOPTS) or pos + 2 > len(unfrag):
                raise ValueError("unfragmentable part is not a chain of extension headers")
            last = pos
            nh = unfrag[pos]
            pos += (unfrag[pos + 1] + 1) << 3
        if pos != len(unfrag):
            raise ValueError("unfragmentable part ends inside an extension header")
        fragment_nh = nh
        unfrag = unfrag[:last] + bytes((NH_FRAGMENT,)) + unfrag[last + 1:]
        first_nh = header.next_header
    else:
        fragment_nh = header.next_header
        first_nh = NH_FRAGMENT
    total = len(payload)
    if len(unfrag) + total > _MAX_PAYLOAD_LEN:
        raise ValueError("ipv6 packet too long")
    room = (mtu - IPV6_HEADER_LEN - len(unfrag) - FRAGMENT_HEADER_LEN) & ~7
    if room < 8:
        raise ValueError(f"mtu {mtu!r} leaves no room for fragment data")
    tc, flow = header.traffic_class, header.flow_label
    if not (0 <= tc <= 0xFF and 0 <= flow <= _FLOW_LABEL_MASK):
        raise ValueError(f"bad ipv6 traffic class or flow label: {tc!r}, {flow!r}")
    word = _VERSION_WORD | (tc << 20) | flow
    src, dst = header.src.packed, header.dst.packed
    mv = memoryview(payload)
    fragments = []
    offset = 0
    while True:
        chunk = mv[offset:offset + room]
        more = offset + room < total
        try:
            head = _IPV6.pack(word, len(unfrag) + FRAGMENT_HEADER_LEN + len(chunk), first_nh,
                              header.hop_limit, src, dst)
            fh = _FRAGMENT.pack(fragment_nh, 0, offset | more, identification)
        except struct.error as exc:
            raise ValueError(f"bad ipv6 fragment field: {exc}") from None
        fragments.append(head + unfrag + fh + chunk)
        offset += room
        if not more:
            return fragments


def quote_for_icmpv6(packet, limit: int = IPV6_MIN_MTU - IPV6_HEADER_LEN - 8) -> bytes:
    """What an ICMPv6 error carries: as much of the invoking packet as fits
    without the error exceeding the minimum MTU (RFC 4443 2.4(c)); ``limit``
    leaves room for the error's IPv6 and ICMPv6 headers. Link padding past
    the payload length is not quoted. Never raises, whatever ``packet``
    holds."""
    end = len(packet)
    if end >= 6:
        total = IPV6_HEADER_LEN + ((packet[4] << 8) | packet[5])
        if total < end:
            end = total
    if limit < end:
        end = max(limit, 0)
    return bytes(packet[:end])
