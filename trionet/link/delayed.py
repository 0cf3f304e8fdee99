"""In-memory links whose frames wait until they are due (``virtual_cable``,
``Switch`` ports): no task, a heap per receiving end.

A sender stamps each frame with the time it is due and pushes it onto the
receiver's heap (``_push``); ``receive_batch`` takes what is due and
otherwise sleeps until the earliest due time or a new frame.
"""

from __future__ import annotations

import heapq
import math

import trio

from .base import Link


class DelayedLink(Link):
    """The receiving half of such a link. Subclasses set ``_heap`` (a list),
    ``_lot`` (a ParkingLot) and ``_closed`` in their ``__init__``."""

    _heap: list
    _lot: trio.lowlevel.ParkingLot
    _closed: bool

    def _push(self, entry: tuple) -> None:
        """Queue ``entry`` = (due time, order, frame); wake the receiver only
        if its wake-up time moved earlier."""
        heap = self._heap
        heapq.heappush(heap, entry)
        if heap[0] is entry and self._lot:
            self._lot.unpark()

    async def receive_batch(self, max_frames: int = 64) -> list[bytes]:
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames!r}")
        if self._closed:
            raise trio.ClosedResourceError("link was closed")
        heap = self._heap
        if heap and heap[0][0] <= trio.current_time():
            # One checkpoint per batch: cancel point first (so no frame is
            # lost to a cancellation), then a schedule point after taking.
            await trio.lowlevel.checkpoint_if_cancelled()
            batch = self._take(max_frames)
            await trio.lowlevel.cancel_shielded_checkpoint()
            if batch:
                return batch
        while True:
            deadline = heap[0][0] if heap else math.inf
            with trio.move_on_at(deadline):
                await self._lot.park()
            if self._closed:
                raise trio.ClosedResourceError("link was closed")
            if heap and heap[0][0] <= trio.current_time():
                batch = self._take(max_frames)
                if batch:
                    return batch

    def _take(self, max_frames: int) -> list[bytes]:
        heap = self._heap
        now = trio.current_time()
        pop = heapq.heappop
        batch = []
        while heap and heap[0][0] <= now and len(batch) < max_frames:
            batch.append(pop(heap)[2])
        self.stats["rx_frames"] += len(batch)
        return batch

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._heap.clear()
            self._lot.unpark_all()
        await trio.lowlevel.checkpoint()
