"""Time-sequence graph of one TCP connection from a pcap file.

    python -m trionet.plot CAPTURE.pcap --list
    python -m trionet.plot CAPTURE.pcap [--connection X] [--direction auto|forward|reverse]
                           [--start T] [--end T] [--verify-checksums] -o graph.png

A tool on top of the stack's layers: it reads frames with
``trionet.link.capture.read_pcap`` and decodes them with the ``trionet.wire``
codecs, nothing more. Two halves:

- analysis, no matplotlib: ``read_trace`` finds the TCP connections of a
  capture, ``find_connection`` picks one, ``time_sequence`` turns one
  direction of it into time series (data segments, retransmissions, the ACKs
  and the receive window's right edge from the other side, SACK blocks,
  SYN/FIN/RST), with sequence numbers relative to the sender's ISN;
- drawing, with matplotlib (``pip install 'trionet[plot]'``): ``make_figure``
  and ``draw``. The module imports without it.

x is seconds from the connection's first packet, y the sequence number
relative to the sender's ISN (the SYN is 0, the first data byte 1: RFC 9293
3.4, SYN and FIN each take one sequence number).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from bisect import bisect_left, bisect_right
from collections import Counter
from ipaddress import IPv4Address
from types import MappingProxyType

import attrs

from .link.capture import LINKTYPE_RAW, pcap_linktype, read_pcap
from .wire import ETHERTYPE_IPV4, PROTO_TCP, WireError, parse_ethernet, parse_ipv4
from .wire.tcp import ACK, FIN, RST, SYN, TcpOptions, parse_tcp

__all__ = [
    "Endpoint", "TcpPacket", "Connection", "TcpTrace", "DataSegment", "AckSample",
    "SackBlock", "Event", "TimeSequence", "MatplotlibMissing",
    "read_trace", "find_connection", "time_sequence", "make_figure", "draw", "main",
]

_M32 = 0xFFFFFFFF
_HALF = 1 << 31
#: RFC 7323 2.3: a shift count above 14 is taken as 14.
_MAX_WSCALE = 14
INSTALL_HINT = "pip install 'trionet[plot]' (or: pip install matplotlib)"


# --- what the capture holds -----------------------------------------------------------


@attrs.frozen(slots=True, order=True)
class Endpoint:
    address: IPv4Address
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``"10.0.0.1:5000"``; ValueError if malformed."""
        host, sep, port = text.strip().rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"not ADDRESS:PORT: {text!r}")
        try:
            address = IPv4Address(host)
        except ValueError:
            raise ValueError(f"not an IPv4 address in {text!r}") from None
        return cls(address, int(port))


@attrs.frozen(slots=True)
class TcpPacket:
    """One TCP segment of the capture, as it was on the wire."""
    time: float     # the capture's timestamp, seconds
    frame: int      # its frame number in the file, from 1 (as Wireshark counts)
    src: Endpoint
    dst: Endpoint
    seq: int        # absolute, 32 bits
    ack: int
    flags: int
    window: int     # the header field, unscaled
    options: TcpOptions
    length: int     # payload bytes


@attrs.frozen(slots=True)
class Connection:
    """All packets of one connection, both directions. ``client`` sent the
    first SYN without ACK (else it is the first packet's source); "forward"
    is client to server. Byte counts are payload bytes on the wire,
    retransmissions included."""
    index: int
    client: Endpoint
    server: Endpoint
    packets: tuple[TcpPacket, ...]
    packets_forward: int
    packets_reverse: int
    bytes_forward: int
    bytes_reverse: int

    @property
    def label(self) -> str:
        """``"SRC:PORT-DST:PORT"``, as ``--connection`` takes it."""
        return f"{self.client}-{self.server}"

    @property
    def data_bytes(self) -> int:
        return self.bytes_forward + self.bytes_reverse

    @property
    def start_time(self) -> float:
        return self.packets[0].time

    @property
    def duration(self) -> float:
        return self.packets[-1].time - self.packets[0].time


@attrs.frozen(slots=True)
class TcpTrace:
    """What ``read_trace`` found: the TCP connections in order of their first
    packet, and the frames it could not use, by reason (``"not_ipv4"``,
    ``"not_tcp"``, ``"ipv4.fragment"``, ``"pcap.truncated_record"`` and the
    wire codecs' reasons: ``"ipv4.bad_checksum"``, ``"tcp.truncated"``, ...)."""
    frames: int
    skipped: dict[str, int]
    connections: tuple[Connection, ...]

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


# --- the series of one direction --------------------------------------------------------


@attrs.frozen(slots=True)
class DataSegment:
    """Sequence space ``[start, end)`` of a segment's data. ``retransmission``:
    at least partly sent before (in this capture). ``out_of_order``: new in
    this capture but below data already seen (a retransmission of a segment
    lost before the capture point, or reordering)."""
    time: float
    start: int
    end: int
    retransmission: bool
    out_of_order: bool
    frame: int


@attrs.frozen(slots=True)
class AckSample:
    """An ACK from the receiver: the ACK line and the window's right edge,
    ``ack + (window << scale)`` (RFC 9293 3.3.1; RFC 7323 2.2: never scaled
    in a SYN)."""
    time: float
    ack: int
    window: int       # bytes, scaled
    window_edge: int
    frame: int


@attrs.frozen(slots=True)
class SackBlock:
    """A block ``[left, right)`` the receiver holds (RFC 2018 3)."""
    time: float
    left: int
    right: int


@attrs.frozen(slots=True)
class Event:
    """A SYN, SYN-ACK, FIN or RST. ``seq`` is in the sender's relative space:
    where the flag sits for the sender's own (for a FIN, after its data), the
    ACK number for the receiver's."""
    time: float
    kind: str
    seq: int
    from_sender: bool
    frame: int


@attrs.frozen(slots=True)
class TimeSequence:
    """One direction of a connection, ready to draw. Times are seconds from
    ``origin`` (the connection's first packet), sequence numbers relative to
    ``isn`` (the sender's SYN, or when the capture missed it, the first
    sequence number seen: ``isn_seen`` False). ``window_scale`` is the shift
    applied to the receiver's windows, None when the handshake is not in the
    capture (windows then taken as they are). The counts cover the series,
    that is the ``start``/``end`` range asked for."""
    connection: Connection
    sender: Endpoint
    receiver: Endpoint
    origin: float
    isn: int
    isn_seen: bool
    window_scale: int | None
    segments: tuple[DataSegment, ...]
    acks: tuple[AckSample, ...]
    sacks: tuple[SackBlock, ...]
    events: tuple[Event, ...]
    data_bytes: int             # distinct sequence numbers carrying data
    sent_bytes: int             # payload bytes, retransmissions included
    retransmitted_bytes: int
    start: float | None = None
    end: float | None = None

    @property
    def retransmissions(self) -> tuple[DataSegment, ...]:
        return tuple(s for s in self.segments if s.retransmission)

    @property
    def label(self) -> str:
        return f"{self.sender} -> {self.receiver}"


# --- reading ---------------------------------------------------------------------------------


def _complete_records(data: bytes) -> bytes:
    """The file cut after its last whole record (a capture killed while
    writing). The pcap layout: a 24-byte header, then per record 16 bytes
    whose third word is the captured length, then the frame."""
    order = ">" if data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d") else "<"
    offset = 24
    while offset + 16 <= len(data):
        captured = struct.unpack_from(order + "I", data, offset + 8)[0]
        if offset + 16 + captured > len(data):
            break
        offset += 16 + captured
    return data[:offset]


def _read_records(source) -> tuple[list[tuple[float, bytes]], int, bool]:
    """The records, how many were cut short, and whether frames are bare
    IP packets (a TUN's capture, ``LINKTYPE_RAW``) rather than Ethernet."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        with open(source, "rb") as f:
            data = f.read()
    raw = pcap_linktype(data) == LINKTYPE_RAW
    try:
        return read_pcap(data), 0, raw
    except ValueError as exc:
        if "truncated" not in str(exc):
            raise
    return read_pcap(_complete_records(data)), 1, raw


class _ConnectionBuilder:
    __slots__ = ("client", "server", "roles", "packets", "isn", "closed")

    def __init__(self, first: TcpPacket) -> None:
        self.client, self.server = first.src, first.dst
        #: What the roles come from: 0 the first packet, 1 a SYN-ACK, 2 a SYN.
        self.roles = 0
        self.packets: list[TcpPacket] = []
        self.isn: dict[Endpoint, int] = {}
        self.closed = False

    def add(self, packet: TcpPacket) -> None:
        if packet.flags & SYN and not packet.flags & RST:
            if packet.flags & ACK:
                if self.roles < 1:
                    self.client, self.server, self.roles = packet.dst, packet.src, 1
            elif self.roles < 2:
                self.client, self.server, self.roles = packet.src, packet.dst, 2
            self.isn.setdefault(packet.src, packet.seq)
        if packet.flags & (FIN | RST):
            self.closed = True
        self.packets.append(packet)

    def is_new_incarnation(self, packet: TcpPacket) -> bool:
        """A SYN with a new ISN on a 4-tuple that was closed: the tuple is
        used again (RFC 9293 3.4.1)."""
        return (bool(packet.flags & SYN) and not packet.flags & ACK and self.closed
                and self.isn.get(packet.src) != packet.seq)

    def build(self, index: int) -> Connection:
        fwd = [p for p in self.packets if p.src == self.client]
        rev = [p for p in self.packets if p.src != self.client]
        return Connection(index, self.client, self.server, tuple(self.packets),
                          len(fwd), len(rev), sum(p.length for p in fwd),
                          sum(p.length for p in rev))


def read_trace(source, *, verify_checksums: bool = False) -> TcpTrace:
    """Every TCP connection (IPv4; Ethernet frames, or bare IP packets in a
    TUN's ``LINKTYPE_RAW`` capture) of a pcap file.

    ``source``: a path or the file's bytes. Raises OSError if the file cannot
    be read, ValueError if it is not pcap. Frames that do not decode are
    skipped and counted in ``skipped``, as are IP fragments (not reassembled)
    and a last record cut short. Checksums are not checked unless
    ``verify_checksums`` (frames recorded by a link with checksum offload,
    ``virtual_cable`` and ``LoopbackLink`` included, carry none); with it, a
    frame whose IPv4 or TCP checksum fails is skipped (``"ipv4.bad_checksum"``,
    ``"tcp.bad_checksum"``), as the receiver would have dropped it.
    """
    records, truncated, raw_ip = _read_records(source)
    skipped: Counter[str] = Counter()
    if truncated:
        skipped["pcap.truncated_record"] += truncated
    open_by_key: dict[tuple[Endpoint, Endpoint], _ConnectionBuilder] = {}
    builders: list[_ConnectionBuilder] = []
    for number, (timestamp, frame) in enumerate(records, 1):
        try:
            if raw_ip:
                payload = frame
                if not frame or frame[0] >> 4 != 4:
                    skipped["not_ipv4"] += 1
                    continue
            else:
                eth, payload = parse_ethernet(frame)
                if eth.ethertype != ETHERTYPE_IPV4:
                    skipped["not_ipv4"] += 1
                    continue
            ip, segment = parse_ipv4(payload, verify_checksum=verify_checksums)
            if ip.protocol != PROTO_TCP:
                skipped["not_tcp"] += 1
                continue
            if ip.is_fragment:
                skipped["ipv4.fragment"] += 1
                continue
            tcp, data = parse_tcp(segment, ip.src, ip.dst, verify_checksum=verify_checksums)
        except WireError as exc:
            skipped[exc.reason] += 1
            continue
        packet = TcpPacket(timestamp, number, Endpoint(ip.src, tcp.src_port),
                           Endpoint(ip.dst, tcp.dst_port), tcp.seq, tcp.ack, tcp.flags,
                           tcp.window, tcp.options, len(data))
        key = (min(packet.src, packet.dst), max(packet.src, packet.dst))
        builder = open_by_key.get(key)
        if builder is None or builder.is_new_incarnation(packet):
            builder = open_by_key[key] = _ConnectionBuilder(packet)
            builders.append(builder)
        builder.add(packet)
    connections = tuple(b.build(i) for i, b in enumerate(builders))
    return TcpTrace(len(records), dict(skipped), connections)


def find_connection(trace: TcpTrace, selector: str | int | None = None) -> Connection:
    """The connection named by ``selector``: its index (as ``--list`` shows
    it), ``"SRC:PORT-DST:PORT"`` (either way round), or None for the one
    that carried the most data bytes. LookupError when there is no TCP
    connection or none matches, ValueError for a malformed selector."""
    if not trace.connections:
        raise LookupError("no TCP connection in the capture" + _skipped_note(trace))
    if selector is None:
        # The most data; the first of equals.
        return max(trace.connections, key=lambda c: (c.data_bytes, -c.index))
    if isinstance(selector, int) or selector.strip().isdigit():
        index = int(selector)
        if not 0 <= index < len(trace.connections):
            raise LookupError(f"no connection {index}: the capture has "
                              f"{len(trace.connections)} (0-{len(trace.connections) - 1}, "
                              "see --list)")
        return trace.connections[index]
    left, sep, right = selector.partition("-")
    if not sep:
        raise ValueError(f"--connection takes an index or SRC:PORT-DST:PORT, got {selector!r}")
    try:
        ends = {Endpoint.parse(left), Endpoint.parse(right)}
    except ValueError as exc:
        raise ValueError(f"--connection {selector!r}: {exc}") from None
    found = [c for c in trace.connections if {c.client, c.server} == ends]
    if not found:
        raise LookupError(f"no connection {selector} in the capture (see --list)")
    if len(found) > 1:
        raise LookupError(f"{len(found)} connections on {selector} (the 4-tuple was used "
                          f"again): give an index, one of "
                          f"{', '.join(str(c.index) for c in found)}")
    return found[0]


def _skipped_note(trace: TcpTrace) -> str:
    if not trace.skipped:
        return f" ({trace.frames} frames)"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(trace.skipped.items()))
    note = f" ({trace.frames} frames; skipped: {reasons})"
    if any(k.endswith("bad_checksum") for k in trace.skipped):
        note += "; captured with checksum offload? leave out --verify-checksums"
    return note


# --- one direction's series ------------------------------------------------------------------


class _Unwrap:
    """32-bit sequence numbers to unbounded ones relative to ``base``: each
    value is taken as the nearest to the highest seen so far (RFC 9293 3.4:
    sequence arithmetic is modulo 2**32)."""
    __slots__ = ("base", "high")

    def __init__(self, base: int) -> None:
        self.base = base
        self.high = 0

    def __call__(self, value: int, *, advance: bool = True) -> int:
        delta = ((value - self.base - self.high + _HALF) & _M32) - _HALF
        relative = self.high + delta
        if advance and relative > self.high:
            self.high = relative
        return relative


class _Ranges:
    """Merged half-open ranges of sequence space."""
    __slots__ = ("starts", "ends")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect_right(self.starts, start) - 1
        if i >= 0 and self.ends[i] > start:
            return True
        return i + 1 < len(self.starts) and self.starts[i + 1] < end

    def add(self, start: int, end: int) -> None:
        i = bisect_left(self.ends, start)
        j = bisect_right(self.starts, end)
        if i < j:
            start = min(start, self.starts[i])
            end = max(end, self.ends[j - 1])
        self.starts[i:j] = [start]
        self.ends[i:j] = [end]

    def total(self) -> int:
        return sum(e - s for s, e in zip(self.starts, self.ends))


def _kind(flags: int) -> str:
    if flags & RST:
        return "RST"
    if flags & SYN:
        return "SYN-ACK" if flags & ACK else "SYN"
    return "FIN"


def _window_scale(connection: Connection, receiver: Endpoint) -> int | None:
    """The shift for the receiver's windows (RFC 7323 2.2): the receiver's
    own option, in effect only when both SYNs carried one. None when the
    capture does not show enough of the handshake to know."""
    syn = {}
    for p in connection.packets:
        if p.flags & SYN and not p.flags & RST:
            syn[p.src] = p.options.window_scale
    sender = connection.client if receiver == connection.server else connection.server
    if sender in syn and receiver in syn:
        if syn[sender] is None or syn[receiver] is None:
            return 0
        return min(syn[receiver], _MAX_WSCALE)
    if syn.get(sender, 0) is None or syn.get(receiver, 0) is None:
        return 0  # one side did not offer it: no scaling either way
    return None


def time_sequence(connection: Connection, direction: str = "auto", *,
                  start: float | None = None, end: float | None = None) -> TimeSequence:
    """The time series of one direction of ``connection``: ``"forward"``
    (client to server), ``"reverse"``, or ``"auto"`` (the one that sent more
    data). ``start``/``end``: keep what lies in that range of seconds from
    the connection's first packet (the whole connection is still read, so
    that retransmissions are known)."""
    if direction == "auto":
        direction = "reverse" if connection.bytes_reverse > connection.bytes_forward \
            else "forward"
    if direction == "forward":
        sender, receiver = connection.client, connection.server
    elif direction == "reverse":
        sender, receiver = connection.server, connection.client
    else:
        raise ValueError(f"direction must be auto, forward or reverse, got {direction!r}")
    if start is not None and end is not None and end < start:
        raise ValueError(f"end ({end}) is before start ({start})")
    packets = connection.packets
    origin = packets[0].time
    scale = _window_scale(connection, receiver)
    shift = scale or 0

    isn = None
    for p in packets:
        if p.src == sender and p.flags & SYN and not p.flags & RST:
            isn = p.seq
            break
    isn_seen = isn is not None
    if isn is None:
        for p in packets:
            if p.src == sender:
                isn = p.seq
                break
            if p.flags & ACK:
                isn = p.ack
                break
    unwrap = _Unwrap(isn if isn is not None else 0)

    def wanted(t: float) -> bool:
        return (start is None or t >= start) and (end is None or t <= end)

    sent = _Ranges()
    highest = None
    last_ack = None
    segments, acks, sacks, events = [], [], [], []
    for p in packets:
        t = p.time - origin
        keep = wanted(t)
        if p.src == sender:
            seq = unwrap(p.seq)
            data_start = seq + 1 if p.flags & SYN else seq
            if p.length:
                data_end = data_start + p.length
                again = sent.overlaps(data_start, data_end)
                late = not again and highest is not None and data_start < highest
                sent.add(data_start, data_end)
                highest = data_end if highest is None else max(highest, data_end)
                if keep:
                    segments.append(DataSegment(t, data_start, data_end, again, late, p.frame))
            if keep and p.flags & (SYN | FIN | RST):
                at = data_start + p.length if p.flags & FIN and not p.flags & RST else seq
                events.append(Event(t, _kind(p.flags), at, True, p.frame))
            continue
        # The receiver: its ACKs, windows and SACK blocks speak of the sender's data.
        if p.flags & ACK:
            last_ack = unwrap(p.ack)
            if keep and not p.flags & RST:
                # RFC 7323 2.2: the window of a SYN is never scaled.
                window = p.window if p.flags & SYN else p.window << shift
                acks.append(AckSample(t, last_ack, window, last_ack + window, p.frame))
                for left, right in p.options.sack_blocks:
                    sacks.append(SackBlock(t, unwrap(left, advance=False),
                                           unwrap(right, advance=False)))
        if keep and p.flags & (SYN | FIN | RST):
            at = last_ack if last_ack is not None else unwrap.high
            events.append(Event(t, _kind(p.flags), at, False, p.frame))

    kept = _Ranges()
    for s in segments:
        kept.add(s.start, s.end)
    return TimeSequence(
        connection, sender, receiver, origin, isn if isn is not None else 0, isn_seen, scale,
        tuple(segments), tuple(acks), tuple(sacks), tuple(events),
        kept.total(), sum(s.end - s.start for s in segments),
        sum(s.end - s.start for s in segments if s.retransmission), start, end)


# --- drawing ------------------------------------------------------------------------------


class MatplotlibMissing(ImportError):
    """Drawing asked for, matplotlib not installed."""


def _matplotlib():
    try:
        from matplotlib.figure import Figure
        from matplotlib.collections import LineCollection
        from matplotlib.ticker import FuncFormatter, MaxNLocator
    except ImportError:
        raise MatplotlibMissing(
            f"drawing needs matplotlib, which is not installed: {INSTALL_HINT}") from None
    return Figure, LineCollection, FuncFormatter, MaxNLocator


_FORMATS = MappingProxyType({".png": "png", ".svg": "svg"})

_COLOURS = MappingProxyType({
    "data": "#1f3a93",
    "retransmission": "#d62728",
    "out_of_order": "#ff8c00",
    "ack": "#2ca02c",
    "window": "#9467bd",
    "sack": "#17becf",
    "event": "#222222",
})

_MARKERS = MappingProxyType({"SYN": "^", "SYN-ACK": "^", "FIN": "s", "RST": "X"})


def output_format(path) -> str:
    """``"png"`` or ``"svg"`` from the file name; ValueError otherwise."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in _FORMATS:
        raise ValueError(f"the output must end in .png or .svg, got {os.fspath(path)!r}")
    return _FORMATS[ext]


def make_figure(series: TimeSequence, *, title: str | None = None,
                size: tuple[float, float] = (12.0, 7.0), dpi: int = 120):
    """A matplotlib ``Figure`` of the series (no pyplot, no global state:
    rendered with Agg when saved)."""
    Figure, LineCollection, FuncFormatter, MaxNLocator = _matplotlib()
    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    ax = fig.add_subplot()

    def bars(segs, colour, width, label, zorder, alpha=1.0):
        if not segs:
            return
        ax.add_collection(LineCollection(
            [((s.time, s.start), (s.time, s.end)) for s in segs], colors=colour,
            linewidths=width, label=label, zorder=zorder, alpha=alpha))

    # The y range: the data and the ACK line. A window edge far above them
    # (a large receive buffer) would squash them to a line: it is clipped.
    low = [s.start for s in series.segments] + [a.ack for a in series.acks]
    high = ([s.end for s in series.segments] + [a.ack for a in series.acks]
            + [b.right for b in series.sacks] + [e.seq for e in series.events])
    y_range = None
    edge_label = "receive window edge (ACK + window)"
    if high:
        bottom, top = min(low + [min(high)]), max(high)
        span = max(top - bottom, 1)
        edge_top = max((a.window_edge for a in series.acks), default=top)
        if edge_top > top + span:
            y_range = (bottom - 0.04 * span, top + 0.3 * span)
            edge_label += f", clipped: up to {edge_top:,}"

    acks = series.acks
    if acks:
        times = [a.time for a in acks]
        ax.step(times, [a.window_edge for a in acks], where="post", color=_COLOURS["window"],
                linewidth=1.3, linestyle=(0, (5, 2)), label=edge_label, zorder=2)
        ax.step(times, [a.ack for a in acks], where="post", color=_COLOURS["ack"],
                linewidth=1.5, label="ACK", zorder=3)
    if series.sacks:
        ax.add_collection(LineCollection(
            [((b.time, b.left), (b.time, b.right)) for b in series.sacks],
            colors=_COLOURS["sack"], linewidths=5.0, alpha=0.6, label="SACK block", zorder=4))
    plain = [s for s in series.segments if not s.retransmission and not s.out_of_order]
    bars(plain, _COLOURS["data"], 1.3, "data segment", 5)
    bars([s for s in series.segments if s.out_of_order], _COLOURS["out_of_order"], 2.0,
         "new data below the highest sent (hole filled or reordered)", 6)
    retrans = series.retransmissions
    bars(retrans, _COLOURS["retransmission"], 2.5, f"retransmission ({len(retrans)})", 7)
    if retrans:
        # Caps at both ends, so that a short red bar among many stands out.
        ax.scatter([s.time for s in retrans] * 2, [s.start for s in retrans]
                   + [s.end for s in retrans], marker="_", s=120, linewidths=2.0,
                   color=_COLOURS["retransmission"], zorder=7)

    seen = set()
    for e in series.events:
        who = "sender" if e.from_sender else "receiver"
        label = f"{e.kind} ({who})"
        ax.scatter([e.time], [e.seq], marker=_MARKERS[e.kind], s=70, zorder=8,
                   color=_COLOURS["retransmission"] if e.kind == "RST" else _COLOURS["event"],
                   facecolors=None if e.from_sender else "none",
                   label=None if label in seen else label)
        seen.add(label)

    ax.autoscale_view()
    if y_range is not None:
        ax.set_ylim(*y_range)
    if series.start is not None or series.end is not None:
        ax.set_xlim(left=series.start, right=series.end)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # sequence numbers count bytes
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("time (s) from the connection's first packet")
    ax.set_ylabel("sequence number relative to the ISN (bytes)")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    if title is None:
        scale = "unknown" if series.window_scale is None else str(series.window_scale)
        title = (f"{series.sender} \u2192 {series.receiver}: "
                 f"{series.data_bytes:,} data bytes, {len(retrans)} retransmissions "
                 f"({series.retransmitted_bytes:,} bytes), window scale {scale}")
    ax.set_title(title, fontsize=11)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    return fig


def draw(series: TimeSequence, output, *, format: str | None = None, **kwargs) -> None:
    """Save the graph of ``series`` to ``output`` (a path ending in .png or
    .svg, or a binary file object with ``format``)."""
    if format is None:
        format = output_format(output)
    elif format not in ("png", "svg"):
        raise ValueError(f"format must be png or svg, got {format!r}")
    fig = make_figure(series, **kwargs)
    fig.savefig(output, format=format)


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trionet.plot",
        description="Time-sequence graph of one TCP connection in a pcap file: data segments "
                    "(retransmissions marked), the ACK line, the receive window's right edge, "
                    "SACK blocks, SYN/FIN/RST.")
    parser.add_argument("capture", help="a pcap file (Ethernet frames)")
    parser.add_argument("--list", action="store_true",
                        help="list the TCP connections and exit")
    parser.add_argument("--connection", metavar="X",
                        help="an index from --list or SRC:PORT-DST:PORT "
                             "(default: the one with the most data bytes)")
    parser.add_argument("--direction", choices=("auto", "forward", "reverse"), default="auto",
                        help="whose data to draw: forward is client to server; auto, the "
                             "default, the side that sent more")
    parser.add_argument("--start", type=float, metavar="T",
                        help="seconds from the connection's first packet")
    parser.add_argument("--end", type=float, metavar="T",
                        help="seconds from the connection's first packet")
    parser.add_argument("--verify-checksums", action="store_true",
                        help="skip frames whose IPv4 or TCP checksum fails (not for captures "
                             "taken with checksum offload, whose checksums are left empty)")
    parser.add_argument("-o", "--output", metavar="OUT", help="the graph: a .png or .svg file")
    return parser


def format_list(trace: TcpTrace) -> str:
    """The table ``--list`` prints: index, ends, packets and payload bytes
    each way (retransmissions included), duration."""
    lines = [f"{'#':>3}  {'client':<21}  {'server':<21}  {'packets c->s/s->c':>17}  "
             f"{'data bytes c->s/s->c':>25}  {'seconds':>9}"]
    for c in trace.connections:
        packets = f"{c.packets_forward}/{c.packets_reverse}"
        data = f"{c.bytes_forward:,}/{c.bytes_reverse:,}"
        lines.append(f"{c.index:>3}  {str(c.client):<21}  {str(c.server):<21}  {packets:>17}  "
                     f"{data:>25}  {c.duration:>9.3f}")
    summary = f"{len(trace.connections)} TCP connections in {trace.frames} frames"
    if trace.skipped:
        summary += f"; skipped {trace.skipped_total}: " + ", ".join(
            f"{k} {v}" for k, v in sorted(trace.skipped.items()))
    lines.append(summary)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2

    if not args.list:
        if args.output is None:
            return fail("an output file is needed: -o graph.png (or --list)")
        try:
            output_format(args.output)
            _matplotlib()
        except (ValueError, MatplotlibMissing) as exc:
            return fail(str(exc))
    try:
        trace = read_trace(args.capture, verify_checksums=args.verify_checksums)
    except FileNotFoundError:
        return fail(f"no such file: {args.capture}")
    except OSError as exc:
        return fail(f"cannot read {args.capture}: {exc.strerror or exc}")
    except ValueError as exc:
        return fail(f"{args.capture}: {exc}")
    if not trace.connections:
        return fail(f"no TCP connection in {args.capture}" + _skipped_note(trace))
    if args.list:
        print(format_list(trace))
        return 0
    try:
        connection = find_connection(trace, args.connection)
        series = time_sequence(connection, args.direction, start=args.start, end=args.end)
    except LookupError as exc:
        return fail(f"{args.capture}: {exc.args[0]}")
    except ValueError as exc:
        return fail(str(exc))
    try:
        draw(series, args.output)
    except OSError as exc:
        return fail(f"cannot write {args.output}: {exc.strerror or exc}")
    if not (series.segments or series.acks or series.events):
        print(f"{parser.prog}: warning: nothing from {series.label} in the time range "
              f"asked for (the connection lasts {connection.duration:.3f} s)", file=sys.stderr)
    print(f"{args.output}: connection {connection.index}, {series.label}: "
          f"{len(series.segments)} data segments ({series.data_bytes:,} bytes), "
          f"{len(series.retransmissions)} retransmissions, {len(series.acks)} ACKs, "
          f"{len(series.sacks)} SACK blocks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
