"""Record a link's traffic in a pcap file that tcpdump and Wireshark read."""

import os
import struct
import time
from collections.abc import Callable

from .base import Link

# The classic libpcap format: a global header, then per frame a record header
# (seconds, microseconds, captured length, original length) and the bytes.
_MAGIC = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
#: Link types (tcpdump.org/linktypes.html): Ethernet frames, or bare IPv4
#: and IPv6 packets (a TUN's).
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapWriter:
    """Frames to a pcap file (a path, or a binary file object opened for
    writing), stamped with the wall clock or with ``clock()`` seconds;
    frames longer than ``snaplen`` are cut in the file. ``linktype`` says
    what a frame is (``LINKTYPE_ETHERNET``, or ``LINKTYPE_RAW``: an IP
    packet). Flushed by ``flush()``; ``close()`` closes a file it opened."""

    __slots__ = ("snaplen", "linktype", "_clock", "_file", "_owns_file", "closed")

    def __init__(self, file, *, snaplen: int = 262144,
                 clock: Callable[[], float] | None = None,
                 linktype: int = LINKTYPE_ETHERNET) -> None:
        if snaplen < 1:
            raise ValueError(f"snaplen must be positive, got {snaplen!r}")
        self.snaplen = snaplen
        self.linktype = linktype
        self._clock = clock
        if isinstance(file, (str, bytes, os.PathLike)):
            self._file = open(file, "wb")
            self._owns_file = True
        elif hasattr(file, "write"):
            self._file = file
            self._owns_file = False
        else:
            raise TypeError(f"file must be a path or a binary file object, got {file!r}")
        self.closed = False
        try:
            self._file.write(_GLOBAL.pack(_MAGIC, 2, 4, 0, 0, snaplen, linktype))
            self._file.flush()
        except BaseException:
            if self._owns_file:
                self._file.close()
            raise

    def write(self, frame) -> None:
        """Record one frame (nothing once closed)."""
        if self.closed:
            return
        if self._clock is None:
            seconds, ns = divmod(time.time_ns(), 1_000_000_000)
        else:
            seconds, ns = divmod(round(self._clock() * 1e9), 1_000_000_000)
        length = len(frame)
        write = self._file.write
        if length > self.snaplen:
            write(_RECORD.pack(seconds, ns // 1000, self.snaplen, length))
            write(frame[:self.snaplen])
        else:
            write(_RECORD.pack(seconds, ns // 1000, length, length))
            write(frame)

    def flush(self) -> None:
        if not self.closed:
            self._file.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._owns_file:
            self._file.close()
        else:
            self._file.flush()


class Capture(Link):
    """Wraps ``link`` and writes every frame sent and received to ``file``
    (a path, or a binary file object opened for writing) as pcap.

    A ``Capture`` is itself a Link with the inner link's ``mtu``,
    ``checksum_offload``, ``needs_arp``, ``ethernet`` and ``tso_max``
    (a link without Ethernet, a TUN, is recorded as ``LINKTYPE_RAW``: bare
    IP packets); ``stats`` is the inner link's counter (shared) and
    ``inner`` the link itself. Frames longer than ``snaplen`` are cut to
    ``snaplen`` in the file. The file is flushed
    after each sent frame and each received batch (writes are synchronous:
    this is a debugging aid). ``aclose`` closes the inner link, and the file
    if the capture opened it. Records are stamped with the wall clock, or
    with ``clock()`` seconds if given (``clock=trio.current_time`` under a
    MockClock makes the file itself repeatable).

    Frames are recorded as the stack hands them over: with
    ``checksum_offload`` their checksums are left empty (the link completes
    them, or nothing needs them), and with ``tso_max``
    (``TapLink(offload=True)``) a TCP segment sent as GSO is recorded whole,
    up to 64 KB, before the kernel cuts it (as tcpdump shows a NIC's offloads).
    """

    __slots__ = ("inner", "stats", "_writer")

    def __init__(self, link: Link, file, *, snaplen: int = 262144,
                 clock: Callable[[], float] | None = None) -> None:
        # Not calling Link.__init__: the counter is the inner link's.
        if not isinstance(link, Link):
            raise TypeError(f"Capture wraps a Link, got {type(link).__name__}")
        linktype = LINKTYPE_ETHERNET if getattr(link, "ethernet", True) else LINKTYPE_RAW
        self._writer = PcapWriter(file, snaplen=snaplen, clock=clock, linktype=linktype)
        self.inner = link
        self.stats = link.stats

    def __repr__(self) -> str:
        return f"<Capture of {self.inner!r}>"

    @property
    def snaplen(self) -> int:
        return self._writer.snaplen

    @property
    def mtu(self) -> int:
        return self.inner.mtu

    @property
    def checksum_offload(self) -> bool:
        return self.inner.checksum_offload

    @property
    def needs_arp(self) -> bool:
        return self.inner.needs_arp

    @property
    def ethernet(self) -> bool:
        return getattr(self.inner, "ethernet", True)

    @property
    def tso_max(self) -> int:
        return self.inner.tso_max

    def send_frame(self, frame: bytes, gso_size: int = 0) -> None:
        # A GSO frame is recorded whole, as the stack sent it (as tcpdump
        # shows a NIC's TSO frames before the NIC cuts them).
        self._writer.write(frame)
        self._writer.flush()
        if gso_size:
            self.inner.send_frame(frame, gso_size)
        else:
            self.inner.send_frame(frame)

    async def receive_batch(self, max_frames: int = 64) -> list[bytes]:
        frames = await self.inner.receive_batch(max_frames)
        writer = self._writer
        for frame in frames:
            writer.write(frame)
        writer.flush()
        return frames

    def flush(self) -> None:
        self._writer.flush()

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self._writer.close()


def pcap_linktype(data: bytes) -> int:
    """The link type in a pcap file's header (``LINKTYPE_ETHERNET``,
    ``LINKTYPE_RAW``, ...); ValueError if ``data`` does not start one."""
    if len(data) < _GLOBAL.size:
        raise ValueError(f"not a pcap file: {len(data)} bytes, shorter than its header")
    for order in "<>":
        if struct.unpack_from(order + "I", data)[0] in (_MAGIC, _MAGIC_NS):
            return struct.unpack_from(order + "I", data, 20)[0]
    raise ValueError(f"not a pcap file: magic {data[:4].hex()}")


def read_pcap(source) -> list[tuple[float, bytes]]:
    """Every record of a pcap file as ``(timestamp, frame)``; ``source`` is a
    path or the file's bytes. Reads either byte order, micro- or nanosecond
    timestamps."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        with open(source, "rb") as f:
            data = f.read()
    if len(data) < _GLOBAL.size:
        raise ValueError(f"not a pcap file: {len(data)} bytes, shorter than its header")
    for order in "<>":
        magic = struct.unpack_from(order + "I", data)[0]
        if magic in (_MAGIC, _MAGIC_NS):
            break
    else:
        raise ValueError(f"not a pcap file: magic {data[:4].hex()}")
    scale = 1e-6 if magic == _MAGIC else 1e-9
    record = struct.Struct(order + "IIII")
    records = []
    offset = _GLOBAL.size
    while offset < len(data):
        if offset + record.size > len(data):
            raise ValueError(f"truncated pcap record header at offset {offset}")
        seconds, fraction, captured, _ = record.unpack_from(data, offset)
        offset += record.size
        if offset + captured > len(data):
            raise ValueError(f"truncated pcap record at offset {offset}")
        records.append((seconds + fraction * scale, data[offset:offset + captured]))
        offset += captured
    return records
