"""A Linux TAP device: Ethernet frames to and from the host kernel."""

import errno
import os

import pytun
import trio

from .base import Link

_ETH_HEADER = 14
_VLAN_TAG = 4

# The device went away (deleted, or its namespace destroyed) or the fd broke.
_GONE = frozenset({errno.EBADFD, errno.EIO, errno.ENODEV, errno.ENXIO, errno.EBADF,
                   errno.EPIPE})
# On write, EIO means the interface is down: the frame is dropped, the
# device is still there.
_WRITE_GONE = _GONE - {errno.EIO}
_WRITE_FULL = frozenset({errno.EAGAIN, errno.ENOBUFS, errno.ENOMEM})

_HINT = ("create it once as root, owned by you: "
         "sudo scripts/setup_tap.sh {name} 10.0.0.1/24 --user $USER")


def _open_error(name: str, exc: OSError) -> OSError:
    code = exc.errno
    reason = exc.strerror or (exc.args[-1] if exc.args else str(exc))
    if code in (errno.EPERM, errno.EACCES):
        advice = (f"no permission to open TAP {name!r}: it does not exist, belongs to "
                  f"another user, or this process lacks CAP_NET_ADMIN; "
                  + _HINT.format(name=name))
    elif code == errno.ENOENT:
        advice = ("/dev/net/tun is missing: load the tun module (sudo modprobe tun) "
                  "or, in a container, pass the device through (--device /dev/net/tun)")
    elif code == errno.EBUSY:
        advice = (f"TAP {name!r} is already attached to another process (or "
                  f"{name!r} is not a TAP device)")
    elif code == errno.EINVAL:
        advice = (f"an interface named {name!r} exists but is not a TAP device "
                  f"without packet information (a TUN, a TAP created with other "
                  f"flags, or another kind of interface); pick another name or "
                  + _HINT.format(name=name))
    else:
        advice = _HINT.format(name=name)
    message = f"cannot open TAP device {name!r}: {reason}; {advice}"
    return OSError(code, message) if code is not None else OSError(message)


class TapLink(Link):
    """A TAP device opened with python-pytun (``IFF_TAP | IFF_NO_PI``).

    Attaches to an existing persistent TAP that belongs to this user, or
    creates a non-persistent one when the process has CAP_NET_ADMIN (it
    vanishes when the link is closed). The link neither brings the device up
    nor assigns addresses: the host side does that.

    ``mtu`` defaults to the device's MTU. Frames are read first, in batches,
    from the non-blocking fd; the link waits for readability only when the fd
    is empty. ``stats``: ``tx_frames``, ``rx_frames``, ``tx_dropped_full``
    (EAGAIN), ``tx_dropped_down`` (the interface is down), ``tx_dropped_oversize``,
    ``tx_dropped_broken``, ``tx_dropped_closed``, ``tx_dropped_error``,
    ``rx_dropped_oversize``.
    """

    __slots__ = ("stats", "mtu", "_dev", "_fd", "_name", "_read_size", "_closed",
                 "_broken")

    def __init__(self, name: str, *, mtu: int | None = None, offload: bool = False) -> None:
        super().__init__()
        if offload:
            raise NotImplementedError("TapLink(offload=True) (IFF_VNET_HDR) is not "
                                      "implemented yet")
        if mtu is not None and mtu < 68:
            raise ValueError(f"mtu must be at least 68 (RFC 791), got {mtu!r}")
        try:
            dev = pytun.TunTapDevice(name=name, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
        except OSError as exc:
            raise _open_error(name, exc) from exc
        try:
            if mtu is None:
                try:
                    mtu = dev.mtu or 1500
                except OSError:
                    mtu = 1500
            self._name = dev.name
            fd = dev.fileno()
            os.set_blocking(fd, False)
        except BaseException:
            dev.close()
            raise
        self._dev = dev
        self._fd = fd
        self.mtu = mtu
        # One byte more than the largest frame accepted, to detect longer ones.
        self._read_size = mtu + _ETH_HEADER + _VLAN_TAG + 1
        self._closed = False
        self._broken: str | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<TapLink {self._name!r} mtu={self.mtu} {state}>"

    @property
    def name(self) -> str:
        """The device's actual name (the kernel's choice if given a pattern)."""
        return self._name

    def fileno(self) -> int:
        if self._closed:
            raise trio.ClosedResourceError("link was closed")
        return self._fd

    def send_frame(self, frame: bytes) -> None:
        stats = self.stats
        if self._closed:
            stats["tx_dropped_closed"] += 1
            return
        if len(frame) > self.mtu + _ETH_HEADER:
            stats["tx_dropped_oversize"] += 1
            return
        if self._broken is not None:
            stats["tx_dropped_broken"] += 1
            return
        try:
            os.write(self._fd, frame)
        except BlockingIOError:
            stats["tx_dropped_full"] += 1
        except OSError as exc:
            code = exc.errno
            if code == errno.EIO:
                stats["tx_dropped_down"] += 1
            elif code in _WRITE_FULL:
                stats["tx_dropped_full"] += 1
            elif code in _WRITE_GONE:
                self._broken = self._gone_message(exc)
                stats["tx_dropped_broken"] += 1
            else:
                stats["tx_dropped_error"] += 1
        else:
            stats["tx_frames"] += 1

    def _gone_message(self, exc: OSError) -> str:
        if exc.errno in _GONE:
            return (f"TAP device {self._name!r} went away ({exc.strerror or exc}): "
                    f"it was deleted or its network namespace was destroyed")
        return f"TAP device {self._name!r} failed: {exc}"

    def _read_some(self, max_frames: int) -> list[bytes]:
        """Read up to ``max_frames`` frames without waiting."""
        frames: list[bytes] = []
        read = os.read
        fd = self._fd
        size = self._read_size
        try:
            while len(frames) < max_frames:
                frames.append(read(fd, size))
        except BlockingIOError:
            pass
        except InterruptedError:
            pass
        except OSError as exc:
            # Frames already read are returned; the next call raises.
            self._broken = self._gone_message(exc)
        if frames:
            # A frame filling the whole buffer may have been truncated.
            if any(len(f) >= size for f in frames):
                before = len(frames)
                frames = [f for f in frames if len(f) < size]
                self.stats["rx_dropped_oversize"] += before - len(frames)
            self.stats["rx_frames"] += len(frames)
        return frames

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
                self._dev.close()
        await trio.lowlevel.checkpoint()
