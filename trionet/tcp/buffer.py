"""A byte queue for TCP's send and receive buffers.

A ``bytearray`` consumed from the front copies what is left each time it
has to grow (CPython keeps a logical start offset, and a resize with one
allocates afresh and copies), so with megabyte-sized auto-tuned buffers a
transfer copied every byte about eight times. Here the bytes are kept as
the chunks they arrived in (as Linux keeps skbs): appending copies a chunk
once (nothing if it is already ``bytes``), reading or peeking copies only
what it returns (nothing when that is one whole chunk), and unread bytes
never move. Memory follows what is queued: a chunk is released as soon as
it has been consumed.
"""

from __future__ import annotations

from bisect import bisect_right

# Consumed chunk slots are dropped from the lists once there are this many
# and they are at least half of the lists.
_TRIM_MIN = 32


class ByteBuffer:
    """Bytes appended at the back, read and consumed from the front, and
    peeked anywhere (for retransmissions)."""

    __slots__ = ("_chunks", "_ends", "_first", "_start", "_end")

    def __init__(self) -> None:
        # _chunks[i] holds stream bytes [_ends[i] - len(_chunks[i]), _ends[i]),
        # counting from this buffer's creation; _start and _end are the stream
        # offsets of the first unread byte and of the end; _chunks[_first] is
        # the chunk holding _start (consumed ones before it are None).
        self._chunks: list = []
        self._ends: list[int] = []
        self._first = 0
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def __bool__(self) -> bool:
        return self._end > self._start

    def append(self, data) -> None:
        n = len(data)
        if n:
            self._chunks.append(bytes(data))  # no copy when it is bytes already
            self._end += n
            self._ends.append(self._end)

    def peek(self, offset: int, n: int) -> bytes:
        """``n`` bytes (fewer at the end) starting ``offset`` bytes in."""
        pos = self._start + offset
        stop = pos + n
        if stop > self._end:
            stop = self._end
        if pos >= stop:
            return b""
        ends = self._ends
        chunks = self._chunks
        i = bisect_right(ends, pos, self._first)
        chunk = chunks[i]
        end = ends[i]
        begin = end - len(chunk)
        if stop <= end:
            if pos == begin and stop == end:
                return chunk
            return chunk[pos - begin:stop - begin]
        parts = [memoryview(chunk)[pos - begin:] if pos > begin else chunk]
        while True:
            i += 1
            chunk = chunks[i]
            end = ends[i]
            if stop >= end:
                parts.append(chunk)
                if stop == end:
                    break
            else:
                parts.append(memoryview(chunk)[:stop - end + len(chunk)])
                break
        return b"".join(parts)

    def consume(self, n: int) -> None:
        """Drop the first ``n`` bytes (all of them if fewer are left)."""
        start = self._start + n
        if start >= self._end:
            if self._chunks:
                self._chunks = []
                self._ends = []
                self._first = 0
            self._start = self._end
            return
        self._start = start
        ends = self._ends
        chunks = self._chunks
        i = self._first
        while ends[i] <= start:
            chunks[i] = None
            i += 1
        if i >= _TRIM_MIN and 2 * i >= len(ends):
            del chunks[:i]
            del ends[:i]
            i = 0
        self._first = i

    def take(self, n: int) -> bytes:
        """Remove and return up to ``n`` bytes from the front."""
        data = self.peek(0, n)
        self.consume(len(data))
        return data

    def clear(self) -> None:
        self.consume(self._end - self._start)
