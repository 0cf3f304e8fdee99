"""What a Linux TAP and a TUN device share: opening /dev/net/tun with
python-pytun (with advice when that fails), read-first batched reads of a
non-blocking fd, writes that never block. Constants: linux/if_tun.h."""

import errno
import os

import trio

from ..validate import check_str
from .fd import FdLink

# The device went away (deleted, or its namespace destroyed) or the fd broke.
_GONE = frozenset({errno.EBADFD, errno.EIO, errno.ENODEV, errno.ENXIO, errno.EBADF,
                   errno.EPIPE})
# On write, EIO means the interface is down: the frame is dropped, the
# device is still there.
_WRITE_GONE = _GONE - {errno.EIO}
_WRITE_FULL = frozenset({errno.EAGAIN, errno.ENOBUFS, errno.ENOMEM})

# linux/if_tun.h
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
_IFNAMSIZ = 16

_HINT = ("create it once as root, owned by you: "
         "sudo scripts/setup_tap.sh {name} 10.0.0.1/24{option} --user $USER")


def _open_error(kind: str, name: str, exc: OSError) -> OSError:
    """``exc`` from opening the ``kind`` ("TAP" or "TUN") device ``name``,
    with advice on what to do."""
    code = exc.errno
    reason = exc.strerror or (exc.args[-1] if exc.args else str(exc))
    hint = _HINT.format(name=name, option=" --tun" if kind == "TUN" else "")
    other = "a TAP" if kind == "TUN" else "a TUN"
    if code in (errno.EPERM, errno.EACCES):
        advice = (f"no permission to open {kind} {name!r}: it does not exist, belongs to "
                  f"another user, or this process lacks CAP_NET_ADMIN; " + hint)
    elif code == errno.ENOENT:
        advice = ("/dev/net/tun is missing: load the tun module (sudo modprobe tun) "
                  "or, in a container, pass the device through (--device /dev/net/tun)")
    elif code == errno.EBUSY:
        advice = (f"{kind} {name!r} is already attached to another process (or "
                  f"{name!r} is not a {kind} device)")
    elif code == errno.EINVAL:
        advice = (f"an interface named {name!r} exists but is not a {kind} device "
                  f"without packet information ({other}, a {kind} created with other "
                  f"flags, or another kind of interface); pick another name or " + hint)
    else:
        advice = hint
    message = f"cannot open {kind} device {name!r}: {reason}; {advice}"
    return OSError(code, message) if code is not None else OSError(message)


def _open_device(name: str, flags: int, kind: str = "TAP"):
    """A python-pytun device for ``name`` (imported here, so that the rest
    of trionet imports without it); OSError with advice if it cannot open."""
    import pytun

    try:
        return pytun.TunTapDevice(name=name, flags=flags)
    except OSError as exc:
        raise _open_error(kind, name, exc) from exc


class TunTapLink(FdLink):
    """A device of /dev/net/tun (TapLink, TunLink): the shared open, plain
    read and write paths. A subclass names its ``kind``, the bytes its
    frames carry beyond the IP MTU (``_header``: 14 on a TAP, 0 on a TUN)
    and the extra a received frame may hold (``_rx_slack``: a VLAN tag).

    ``send_frame`` hands frames to ``_send_offload`` when ``offload`` is
    True (only TapLink(offload=True) sets it)."""

    __slots__ = ("stats", "mtu", "_dev", "_fd", "_name", "_read_size", "_closed", "_broken")

    kind = "TAP"
    _header = 14
    _rx_slack = 4
    #: TapLink(offload=True) only: frames carry a virtio-net header.
    offload = False

    def _check_arguments(self, name: str, mtu: int | None) -> None:
        if mtu is not None and mtu < 68:
            raise ValueError(f"mtu must be at least 68 (RFC 791), got {mtu!r}")
        check_str(name, "name")
        if len(name.encode()) >= _IFNAMSIZ:
            raise ValueError(f"{self.kind} name {name!r} is longer than {_IFNAMSIZ - 1} bytes")

    def _open(self, name: str, flags: int):
        return _open_device(name, flags, self.kind)

    def _attach(self, dev, mtu: int | None) -> None:
        """Take over the opened ``dev`` (closed if this fails)."""
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
        self._read_size = mtu + self._header + self._rx_slack + 1
        self._closed = False
        self._broken: str | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        extra = " offload" if self.offload else ""
        return f"<{type(self).__name__} {self._name!r} mtu={self.mtu}{extra} {state}>"

    @property
    def name(self) -> str:
        """The device's actual name (the kernel's choice if given a pattern)."""
        return self._name

    def fileno(self) -> int:
        if self._closed:
            raise trio.ClosedResourceError("link was closed")
        return self._fd

    def send_frame(self, frame: bytes, gso_size: int = 0) -> None:
        stats = self.stats
        if self._closed:
            stats["tx_dropped_closed"] += 1
            return
        if self._broken is not None:
            stats["tx_dropped_broken"] += 1
            return
        if self.offload:
            self._send_offload(frame, gso_size)
            return
        if len(frame) > self.mtu + self._header:
            stats["tx_dropped_oversize"] += 1
            return
        # As _write, inline: this is the per-frame path.
        try:
            os.write(self._fd, frame)
        except OSError as exc:
            self._write_failed(exc)
        else:
            stats["tx_frames"] += 1

    def _send_offload(self, frame, gso_size: int) -> None:
        raise NotImplementedError  # only a TapLink with offload has it

    def _write(self, write, data) -> bool:
        """``write(fd, data)`` (os.write or os.writev), counted; whether it went."""
        try:
            write(self._fd, data)
        except OSError as exc:
            self._write_failed(exc)
            return False
        self.stats["tx_frames"] += 1
        return True

    def _write_failed(self, exc: OSError) -> None:
        stats = self.stats
        code = exc.errno
        if isinstance(exc, BlockingIOError) or code in _WRITE_FULL:
            stats["tx_dropped_full"] += 1
        elif code == errno.EIO:
            stats["tx_dropped_down"] += 1
        elif code in _WRITE_GONE:
            self._broken = self._gone_message(exc)
            stats["tx_dropped_broken"] += 1
        else:
            stats["tx_dropped_error"] += 1

    def _gone_message(self, exc: OSError) -> str:
        if exc.errno in _GONE:
            return (f"{self.kind} device {self._name!r} went away ({exc.strerror or exc}): "
                    f"it was deleted or its network namespace was destroyed")
        return f"{self.kind} device {self._name!r} failed: {exc}"

    def _read_some(self, max_frames: int) -> list[bytes]:
        """Read up to ``max_frames`` frames without waiting."""
        frames: list[bytes] = []
        read = os.read
        fd = self._fd
        size = self._read_size
        try:
            while len(frames) < max_frames:
                frames.append(read(fd, size))
        except (BlockingIOError, InterruptedError):
            pass  # empty for now
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

    def _release_fd(self) -> None:
        self._dev.close()
