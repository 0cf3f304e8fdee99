"""TCP header codec: RFC 9293 3.1; options per RFC 9293 3.2, RFC 7323, RFC 2018.

Pure functions, no state. ``parse_tcp`` returns the payload as a zero-copy
``memoryview``. The common shapes (no options, or timestamps only) take a
fast path; anything else goes through a small option loop.
"""

from __future__ import annotations

import struct

import attrs

from .checksum import ones_complement_sum, pseudo_header_sum
from .errors import WireError
from .fast import slot_constructor

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

TCP_MIN_HEADER_LEN = 20
TCP_MAX_OPTIONS_LEN = 40
PROTO_TCP = 6

# Option kinds (RFC 9293 3.2, RFC 7323, RFC 2018).
OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMPS = 8

# src port, dst port, seq, ack, data offset<<4 | reserved, flags, window,
# checksum, urgent pointer.
_HEADER = struct.Struct("!HHIIBBHHH")
_CSUM = struct.Struct("!H")
_U32X3 = struct.Struct("!III")
_U16 = struct.Struct("!H")
_U32X2 = struct.Struct("!II")
# NOP NOP TS(10): the layout Linux uses on every non-SYN segment.
_TS_WORD = 0x0101080A
_TS_OPT = struct.Struct("!III")


@attrs.define(frozen=True, slots=True)
class TcpOptions:
    """The options TCP uses. Unknown options are dropped by the parser."""

    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    timestamps: tuple[int, int] | None = None  # (TSval, TSecr)
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left edge, right edge)


NO_OPTIONS = TcpOptions()


@attrs.define(frozen=True, slots=True)
class TcpHeader:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    options: TcpOptions = NO_OPTIONS

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def psh(self) -> bool:
        return bool(self.flags & PSH)

    @property
    def ack_flag(self) -> bool:
        return bool(self.flags & ACK)

    def flag_names(self) -> str:
        """tcpdump-style flags: ``S.`` for SYN-ACK, ``F.``, ``R``, ``P.``."""
        f = self.flags
        out = "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (PSH, "P"), (RST, "R"),
                                       (URG, "U"), (ECE, "E"), (CWR, "W")) if f & bit)
        if f & ACK:
            out += "."
        return out or "none"


# The per-segment constructors (``fast.py``): the same objects, half the cost.
make_header = slot_constructor(TcpHeader)
#: ``timestamp_options((tsval, tsecr))``: ``TcpOptions(timestamps=(tsval, tsecr))``.
timestamp_options = slot_constructor(TcpOptions, mss=None, window_scale=None,
                                     sack_permitted=False, sack_blocks=())


def _parse_options(opts: bytes) -> TcpOptions:
    """Slow path. RFC 9293 3.2: skip unknown options by their length; a length
    that is < 2 or runs past the header is malformed. A known option with the
    wrong length is ignored (as Linux does)."""
    mss = wscale = ts = None
    sack_perm = False
    blocks: tuple = ()
    i = 0
    n = len(opts)
    while i < n:
        kind = opts[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise WireError("tcp.bad_option", f"option {kind} has no length byte")
        length = opts[i + 1]
        if length < 2 or i + length > n:
            raise WireError("tcp.bad_option", f"option {kind} length {length}")
        if kind == OPT_MSS:
            if length == 4:
                mss = _U16.unpack_from(opts, i + 2)[0]
        elif kind == OPT_WSCALE:
            if length == 3:
                wscale = opts[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            if length == 2:
                sack_perm = True
        elif kind == OPT_TIMESTAMPS:
            if length == 10:
                ts = _U32X2.unpack_from(opts, i + 2)
        elif kind == OPT_SACK:
            if length >= 10 and (length - 2) % 8 == 0:
                blocks = tuple(_U32X2.unpack_from(opts, j)
                               for j in range(i + 2, i + length, 8))
        i += length
    return TcpOptions(mss, wscale, sack_perm, ts, blocks)


def parse_tcp(data, src_ip, dst_ip, *, verify_checksum: bool = True):
    """Parse a TCP segment (header and payload, no IP header).

    Returns ``(TcpHeader, payload)`` where payload is a memoryview into
    ``data``. ``src_ip``/``dst_ip`` are ``ipaddress`` objects for the
    pseudo-header (RFC 9293 3.1; RFC 8200 8.1 for IPv6).
    """
    n = len(data)
    if n < TCP_MIN_HEADER_LEN:
        raise WireError("tcp.truncated", f"{n} bytes")
    sport, dport, seq, ack, off, flags, window, _csum, urgent = _HEADER.unpack_from(data)
    hlen = (off >> 4) << 2
    if hlen < TCP_MIN_HEADER_LEN:
        raise WireError("tcp.bad_offset", f"data offset {off >> 4}")
    if hlen > n:
        raise WireError("tcp.truncated", f"header {hlen} > segment {n}")
    if verify_checksum and ones_complement_sum(
            data, pseudo_header_sum(src_ip, dst_ip, PROTO_TCP, n)) != 0xFFFF:
        raise WireError("tcp.bad_checksum")
    if hlen == TCP_MIN_HEADER_LEN:
        options = NO_OPTIONS
    elif hlen == 32 and (ts := _U32X3.unpack_from(data, 20))[0] == _TS_WORD:
        options = timestamp_options(ts[1:])
    else:
        options = _parse_options(bytes(data[TCP_MIN_HEADER_LEN:hlen]))
    header = make_header(sport, dport, seq, ack, flags, window, urgent, options)
    mv = data if isinstance(data, memoryview) else memoryview(data)
    return header, mv[hlen:]


def encode_options(opts: TcpOptions) -> bytes:
    """Option bytes in Linux's layout (tcp_options_write): MSS; SACK-permitted
    folded into the timestamp word, else NOP NOP before it; NOP WS; NOP NOP
    SACK. Always a multiple of 4 bytes. SACK blocks that do not fit in the
    40-byte option space are left off (RFC 2018 3)."""
    out = bytearray()
    if opts.mss is not None:
        out += b"\x02\x04" + _U16.pack(opts.mss)
    if opts.timestamps is not None:
        if opts.sack_permitted:
            out += b"\x04\x02\x08\x0a"
        else:
            out += b"\x01\x01\x08\x0a"
        out += _U32X2.pack(*opts.timestamps)
    elif opts.sack_permitted:
        out += b"\x01\x01\x04\x02"
    if opts.window_scale is not None:
        out += b"\x01\x03\x03" + bytes((opts.window_scale,))
    if opts.sack_blocks:
        room = (TCP_MAX_OPTIONS_LEN - len(out) - 4) // 8
        blocks = opts.sack_blocks[:room]
        if blocks:
            out += b"\x01\x01\x05" + bytes((2 + 8 * len(blocks),))
            for left, right in blocks:
                out += _U32X2.pack(left, right)
    if len(out) & 3:  # defensive; the layouts above are already aligned
        out += b"\x00" * (4 - (len(out) & 3))
    return bytes(out)


def options_length(opts: TcpOptions) -> int:
    """Length of ``encode_options(opts)`` without encoding."""
    if opts is NO_OPTIONS:
        return 0
    n = 0
    if opts.mss is not None:
        n += 4
    if opts.timestamps is not None:
        n += 12
    elif opts.sack_permitted:
        n += 4
    if opts.window_scale is not None:
        n += 4
    if opts.sack_blocks:
        room = (TCP_MAX_OPTIONS_LEN - n - 4) // 8
        k = min(room, len(opts.sack_blocks))
        if k > 0:
            n += 4 + 8 * k
    return n


def build_tcp(header: TcpHeader, payload, src_ip, dst_ip, *,
              compute_checksum: bool = True) -> bytes:
    """Serialize ``header`` + ``payload`` into a TCP segment with its checksum."""
    opts = header.options
    if opts is NO_OPTIONS:
        ob = b""
    elif (opts.mss is None and opts.window_scale is None and not opts.sack_permitted
          and not opts.sack_blocks and opts.timestamps is not None):
        ob = _TS_OPT.pack(_TS_WORD, opts.timestamps[0], opts.timestamps[1])
    else:
        ob = encode_options(opts)
    hlen = TCP_MIN_HEADER_LEN + len(ob)
    plen = len(payload)
    fixed = _HEADER.pack(header.src_port, header.dst_port, header.seq & 0xFFFFFFFF,
                         header.ack & 0xFFFFFFFF, (hlen >> 2) << 4, header.flags,
                         header.window, 0, header.urgent)
    if compute_checksum:
        # The header is a multiple of 4 bytes, so the payload's words line up.
        s = ones_complement_sum(fixed + ob if ob else fixed,
                                pseudo_header_sum(src_ip, dst_ip, PROTO_TCP, hlen + plen))
        if plen:
            s = ones_complement_sum(payload, s)
        csum = ~s & 0xFFFF
        fixed = fixed[:16] + _CSUM.pack(csum) + fixed[18:]
    if plen:
        return b"".join((fixed, ob, payload))
    return fixed + ob if ob else fixed
