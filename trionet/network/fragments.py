"""Fragmentation (IPv4, RFC 791 3.2) and reassembly (IPv4 RFC 815, IPv6 RFC
8200 4.5) without I/O."""

import attrs

from ..wire.errors import WireError
from ..wire.ipv4 import IPv4Header

#: RFC 791 3.1: an option whose type has this bit is copied into every fragment.
_OPTION_COPIED = 0x80


def copied_options(options: bytes) -> bytes:
    """The options a non-first fragment carries (RFC 791 3.2, "copied" flag)."""
    out = bytearray()
    i, n = 0, len(options)
    while i < n:
        kind = options[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no-operation
            i += 1
            continue
        length = options[i + 1] if i + 1 < n else 0
        if length < 2:
            break
        if kind & _OPTION_COPIED:
            out += options[i:i + length]
        i += length
    return bytes(out)


def fragment(header: IPv4Header, payload, mtu: int) -> list[tuple[IPv4Header, memoryview]]:
    """Split a datagram so each piece fits ``mtu`` (RFC 791 3.2).

    Also splits a fragment further (offsets stay relative to the original).
    """
    payload = memoryview(payload)
    first_room = (mtu - header.header_length) & ~7
    later_header = attrs.evolve(header, options=copied_options(header.options))
    later_room = (mtu - later_header.header_length) & ~7
    if first_room <= 0 or later_room <= 0:
        raise ValueError(f"mtu {mtu} is too small to fragment into")
    pieces = []
    offset = 0
    total = len(payload)
    while offset < total:
        room = first_room if offset == 0 else later_room
        chunk = payload[offset:offset + room]
        last = offset + len(chunk) >= total
        base = header if offset == 0 else later_header
        pieces.append((attrs.evolve(
            base,
            fragment_offset=header.fragment_offset + offset,
            more_fragments=header.more_fragments if last else True,
        ), chunk))
        offset += len(chunk)
    return pieces


@attrs.define(slots=True)
class _Datagram:
    deadline: float
    fragments: dict[int, bytes] = attrs.Factory(dict)
    held: int = 0
    #: What it counts against ``ReassemblyConfig.max_bytes``.
    cost: int = 0
    #: Payload length, known once the last fragment (MF clear) arrived.
    total: int | None = None
    #: What the first fragment told (its IPv4 header; for IPv6 the caller's
    #: record of its unfragmentable part) and its raw bytes (the ICMP quote).
    first_header: object | None = None
    first_raw: bytes | None = None


@attrs.frozen(slots=True)
class ReassemblyConfig:
    #: IPv4: RFC 1122 3.3.2 recommends 60-120 s; Linux uses 30 s.
    timeout: float = 30.0
    #: IPv6: RFC 8200 4.5 says 60 s (as Linux's ip6frag_time).
    ipv6_timeout: float = 60.0
    #: Bytes held across all datagrams being reassembled: each fragment's
    #: payload plus ``Reassembler.FRAGMENT_COST`` (and the first fragment's
    #: raw copy), so that floods of tiny fragments are bounded too.
    max_bytes: int = 4 * 1024 * 1024
    #: Fragments per datagram; more means an attack, not a sender.
    max_fragments: int = 256


class Reassembler:
    """Datagrams being put back together, of both families: IPv4's keyed
    (src, dst, protocol, id), IPv6's (src, dst, id); one memory bound.

    Overlapping fragments discard the whole datagram (as Linux does since
    CVE-2018-5391; RFC 5722 for IPv6); exact duplicates are ignored.
    """

    #: What one fragment costs beyond its payload bytes: the Python objects
    #: holding it (an estimate, as Linux charges a buffer's truesize).
    FRAGMENT_COST = 256

    def __init__(self, config: ReassemblyConfig | None = None):
        self.config = config or ReassemblyConfig()
        # One dict per family, each in deadline order (one timeout each).
        self._datagrams: dict[tuple, _Datagram] = {}
        self._datagrams6: dict[tuple, _Datagram] = {}
        self.bytes_held = 0
        #: Datagrams given up by ``expire`` (with or without a first fragment).
        self.timed_out = 0
        #: Of those, IPv6 datagrams.
        self.timed_out_ipv6 = 0

    def __len__(self) -> int:
        return len(self._datagrams) + len(self._datagrams6)

    def _table(self, key: tuple) -> dict[tuple, _Datagram]:
        return self._datagrams6 if len(key) == 3 else self._datagrams

    def _discard(self, key: tuple) -> None:
        datagram = self._table(key).pop(key)
        self.bytes_held -= datagram.cost

    def add(self, header: IPv4Header, payload, raw, now: float) -> tuple[IPv4Header, bytes, bytes] | None:
        """Take one IPv4 fragment; once the datagram is whole return (header,
        payload, raw first fragment). Raises WireError for a dropped fragment."""
        whole = self._add("ipv4", (header.src, header.dst, header.protocol, header.identification),
                          header.fragment_offset, header.more_fragments, payload, raw,
                          header, now)
        if whole is None:
            return None
        first, data, first_raw = whole
        return attrs.evolve(first, more_fragments=False, fragment_offset=0), data, first_raw

    def add_ipv6(self, src, dst, identification: int, offset: int, more: bool, payload, raw,
                 first, now: float) -> tuple[object, bytes, bytes] | None:
        """Take one IPv6 fragment (RFC 8200 4.5: keyed by source, destination
        and identification); ``first`` is what the caller needs back from the
        first fragment (its unfragmentable part). Returns (the first
        fragment's ``first``, the fragmentable part, the raw first fragment)
        once whole. Datagrams of both families share the memory bound."""
        return self._add("ipv6", (src, dst, identification), offset, more, payload, raw,
                         first if offset == 0 else None, now)

    def _add(self, family: str, key: tuple, offset: int, more: bool, payload, raw, first,
             now: float):
        length = len(payload)
        if more and (length == 0 or length % 8):
            raise WireError(family + ".bad_fragment", "non-final fragment not a multiple of 8")
        table = self._table(key)
        datagram = table.get(key)
        if datagram is None:
            if self.bytes_held + length + self.FRAGMENT_COST > self.config.max_bytes:
                raise WireError(family + ".reassembly_full")
            timeout = self.config.ipv6_timeout if table is self._datagrams6 else self.config.timeout
            datagram = table[key] = _Datagram(now + timeout)
        end = offset + length
        same = datagram.fragments.get(offset)
        if same is not None and same == payload and more != (datagram.total == end):
            # An exact duplicate (same bytes, same MF): ignored, while one
            # that differs in anything is an overlap below.
            return None
        for other_offset, other in datagram.fragments.items():
            if other_offset < end and offset < other_offset + len(other):
                # Overlaps discard the datagram (RFC 5722 for IPv6; Linux for IPv4).
                self._discard(key)
                raise WireError(family + ".fragment_overlap")
        if not more:
            if datagram.total is not None or any(o + len(d) > end for o, d in datagram.fragments.items()):
                self._discard(key)
                raise WireError(family + ".fragment_inconsistent")
            datagram.total = end
        elif datagram.total is not None and end > datagram.total:
            self._discard(key)
            raise WireError(family + ".fragment_inconsistent")
        if len(datagram.fragments) >= self.config.max_fragments:
            self._discard(key)
            raise WireError(family + ".too_many_fragments")
        cost = length + self.FRAGMENT_COST + (len(raw) if offset == 0 else 0)
        if self.bytes_held + cost > self.config.max_bytes:
            self._discard(key)
            raise WireError(family + ".reassembly_full")
        datagram.fragments[offset] = bytes(payload)
        datagram.held += length
        datagram.cost += cost
        self.bytes_held += cost
        if offset == 0:
            datagram.first_header = first
            datagram.first_raw = bytes(raw)
        if datagram.total is None or datagram.held != datagram.total or datagram.first_header is None:
            return None
        # No overlaps and held == total: the pieces tile the datagram.
        self._discard(key)
        whole = b"".join(datagram.fragments[o] for o in sorted(datagram.fragments))
        return datagram.first_header, whole, datagram.first_raw

    def expire(self, now: float) -> list[bytes]:
        """Drop datagrams past their deadline; return the raw first fragment
        of each that had one (RFC 792: ICMP time exceeded, code 1)."""
        quotes = []
        for key, datagram in list(self._datagrams.items()) + list(self._datagrams6.items()):
            if now >= datagram.deadline:
                self._discard(key)
                self.timed_out += 1
                if len(key) == 3:
                    self.timed_out_ipv6 += 1
                if datagram.first_raw is not None:
                    quotes.append(datagram.first_raw)
        return quotes

    def next_deadline(self) -> float:
        # One timeout and a clock that only goes forward: deadlines grow in
        # insertion order, so the oldest datagram's is the next (O(1) for
        # each fragment, even with thousands of datagrams in progress).
        deadline = float("inf")
        for table in (self._datagrams, self._datagrams6):
            for datagram in table.values():
                deadline = min(deadline, datagram.deadline)
                break
        return deadline
