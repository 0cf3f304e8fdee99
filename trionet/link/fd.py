"""Links over a non-blocking file descriptor: read first, wait only when empty."""

import abc

import trio

from .base import Link


class FdLink(Link):
    """Shared by the TAP and the UDP tunnel. Subclasses set ``_fd``,
    ``_closed`` and ``_broken`` (a message once the device is gone), and
    provide ``_read_some`` and ``_release_fd``."""

    _fd: int
    _closed: bool
    _broken: str | None

    @abc.abstractmethod
    def _read_some(self, max_frames: int) -> list[bytes]:
        """Every frame readable now, up to ``max_frames``, without blocking."""

    @abc.abstractmethod
    def _release_fd(self) -> None:
        """Close the descriptor (and whatever owns it)."""

    async def receive_batch(self, max_frames: int = 64) -> list[bytes]:
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames!r}")
        if self._closed:
            raise trio.ClosedResourceError("link was closed")
        if self._broken is not None:
            raise trio.BrokenResourceError(self._broken)
        # Read first; one checkpoint per batch: cancel point before reading
        # (so no frame is lost to a cancellation), schedule point after.
        await trio.lowlevel.checkpoint_if_cancelled()
        frames = self._read_some(max_frames)
        if frames:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return frames
        while True:
            if self._broken is not None:
                raise trio.BrokenResourceError(self._broken)
            try:
                await trio.lowlevel.wait_readable(self._fd)
            except trio.ClosedResourceError:
                raise trio.ClosedResourceError("link was closed") from None
            if self._closed:
                raise trio.ClosedResourceError("link was closed")
            frames = self._read_some(max_frames)
            if frames:
                return frames

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                trio.lowlevel.notify_closing(self._fd)
            finally:
                self._release_fd()
        await trio.lowlevel.checkpoint()
