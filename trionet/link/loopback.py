"""A link whose sent frames come straight back to its own receiver."""

from collections import deque

import trio

from ..validate import check_int
from .base import Link

_ETH_HEADER = 14


class LoopbackLink(Link):
    """Frames given to ``send_frame`` are returned, in order, by
    ``receive_batch`` on the same link. Nothing leaves memory, so checksums
    are offloaded and no ARP is needed.

    At most ``capacity`` frames wait; beyond that ``send_frame`` drops and
    counts ``tx_dropped_full``.
    """

    __slots__ = ("stats", "mtu", "capacity", "_queue", "_lot", "_closed")

    checksum_offload = True
    needs_arp = False

    def __init__(self, *, mtu: int = 65535, capacity: int = 4096) -> None:
        super().__init__()
        check_int(mtu, "mtu", 1)
        check_int(capacity, "capacity", 1)
        self.mtu = mtu
        self.capacity = capacity
        self._queue: deque[bytes] = deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False

    @property
    def queued(self) -> int:
        """Frames waiting to be received."""
        return len(self._queue)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._queue)} queued"
        return f"<LoopbackLink mtu={self.mtu} {state}>"

    def send_frame(self, frame: bytes) -> None:
        stats = self.stats
        if self._closed:
            stats["tx_dropped_closed"] += 1
            return
        if len(frame) > self.mtu + _ETH_HEADER:
            stats["tx_dropped_oversize"] += 1
            return
        queue = self._queue
        if len(queue) >= self.capacity:
            stats["tx_dropped_full"] += 1
            return
        if type(frame) is not bytes:
            frame = bytes(frame)  # the caller may reuse its buffer
        queue.append(frame)
        stats["tx_frames"] += 1
        if self._lot:
            self._lot.unpark()

    async def receive_batch(self, max_frames: int = 64) -> list[bytes]:
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames!r}")
        if self._closed:
            raise trio.ClosedResourceError("link was closed")
        queue = self._queue
        if queue:
            # One checkpoint per batch: cancel point first (so no frame is
            # lost to a cancellation), then a schedule point after taking.
            await trio.lowlevel.checkpoint_if_cancelled()
            batch = self._take(max_frames)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return batch
        while not queue:
            await self._lot.park()
            if self._closed:
                raise trio.ClosedResourceError("link was closed")
        return self._take(max_frames)

    def _take(self, max_frames: int) -> list[bytes]:
        queue = self._queue
        if len(queue) <= max_frames:
            batch = list(queue)
            queue.clear()
        else:
            popleft = queue.popleft
            batch = [popleft() for _ in range(max_frames)]
        self.stats["rx_frames"] += len(batch)
        return batch

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._lot.unpark_all()
        await trio.lowlevel.checkpoint()
