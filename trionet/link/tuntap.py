"""What a Linux TAP and a TUN device share: opening /dev/net/tun with
python-pytun (with advice when that fails), read-first batched reads of a
non-blocking fd, writes that never block; and the offloads (IFF_VNET_HDR,
TUNSETOFFLOAD): a virtio-net header before each frame, checksums and TCP
segmentation left to the kernel both ways. Constants: linux/if_tun.h."""

import errno
import fcntl
import logging
import os
import struct

import trio

from ..validate import check_str
from .fd import FdLink
from .vnet import F_DATA_VALID, F_NEEDS_CSUM, VNET_LEN, Vnet

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
_TUNSETOFFLOAD = 0x400454D0    # _IOW('T', 208, unsigned int)
_TUNSETVNETHDRSZ = 0x400454D8  # _IOW('T', 216, int)
_TUN_F_CSUM = 0x01
_TUN_F_TSO4 = 0x02
_TUN_F_TSO6 = 0x04
#: Offloads asked for: the kernel hands us partial checksums and TSO frames.
_OFFLOADS = _TUN_F_CSUM | _TUN_F_TSO4 | _TUN_F_TSO6
_INT = struct.Struct("i")

#: Largest IPv4 datagram (RFC 791), so the largest packet with TSO.
_IP_MAX = 65535

# Ioctls go through this name so tests can make the kernel refuse one.
_ioctl = fcntl.ioctl

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


def _ask_for_offloads(fd: int) -> str | None:
    """Give the device a virtio-net header and ask for checksum and TSO
    offload; the kernel's refusal as text, or None."""
    for request, name, arg in ((_TUNSETVNETHDRSZ, "TUNSETVNETHDRSZ", _INT.pack(VNET_LEN)),
                               (_TUNSETOFFLOAD, "TUNSETOFFLOAD", _OFFLOADS)):
        try:
            _ioctl(fd, request, arg)
        except OSError as exc:
            return f"{name}: {exc.strerror or exc}"
    return None


def _open_device(name: str, flags: int, kind: str = "TAP"):
    """A python-pytun device for ``name`` (imported here, so that the rest
    of trionet imports without it); OSError with advice if it cannot open."""
    import pytun

    try:
        return pytun.TunTapDevice(name=name, flags=flags)
    except OSError as exc:
        raise _open_error(kind, name, exc) from exc


class TunTapLink(FdLink):
    """A device of /dev/net/tun (TapLink, TunLink): the shared open, the
    read and write paths, plain and with offloads. A subclass names its
    ``kind``, its TUNSETIFF ``_flags``, the bytes its frames carry beyond
    the IP MTU (``_header``: 14 on a TAP, 0 on a TUN), the extra a received
    frame may hold (``_rx_slack``: a VLAN tag), the virtio-net header code
    for its frames (``_vnet``) and the logger its warnings go to."""

    __slots__ = ("stats", "mtu", "offload", "offload_error", "checksum_offload", "tso_max",
                 "_dev", "_fd", "_name", "_read_size", "_frame_max", "_closed", "_broken",
                 "_rx_header", "_rx_view", "_offload_iov", "_checksums_ok")

    kind: str
    _flags: int
    _header: int
    _rx_slack: int
    _vnet: Vnet
    _log: logging.Logger

    def __init__(self, name: str, *, mtu: int | None = None, offload: bool = True) -> None:
        super().__init__()
        self._check_arguments(name, mtu)
        self.offload = False
        self.offload_error: str | None = None
        self.checksum_offload = False
        self.tso_max = 0
        self._rx_header = self._rx_view = None
        self._offload_iov = self._checksums_ok = None
        dev, why = self._open_offload(name) if offload else (None, None)
        if dev is None:
            dev = self._open(name, self._flags)  # raises if this fails too
            if why is not None:
                self.offload_error = why
                self.stats["offload_refused"] += 1
                self._log.warning("%s %s: the kernel refused checksum/TSO offload (%s); "
                                  "running without it", self.kind, name, why)
        else:
            self.offload = True
            self.checksum_offload = True
            self.tso_max = _IP_MAX + self._header
            self._rx_header = bytearray(VNET_LEN)
            self._rx_view = memoryview(bytearray(self.tso_max + self._rx_slack + 1))
            self._offload_iov = self._vnet.offload_iov
            self._checksums_ok = self._vnet.checksums_ok
        self._attach(dev, mtu)

    def _check_arguments(self, name: str, mtu: int | None) -> None:
        if mtu is not None and mtu < 68:
            raise ValueError(f"mtu must be at least 68 (RFC 791), got {mtu!r}")
        check_str(name, "name")
        if len(name.encode()) >= _IFNAMSIZ:
            raise ValueError(f"{self.kind} name {name!r} is longer than {_IFNAMSIZ - 1} bytes")

    def _open(self, name: str, flags: int):
        return _open_device(name, flags, self.kind)

    def _open_offload(self, name: str):
        """(the device opened with a virtio-net header and the offloads on,
        None) or, where the kernel refuses the header or the offloads,
        (None, why): the caller opens it plain.

        An existing persistent device opens either way (each TUNSETIFF sets
        its IFF_VNET_HDR anew); a kernel that refuses IFF_VNET_HDR fails
        this open, and if the plain one fails too, its error is raised."""
        try:
            dev = self._open(name, self._flags | IFF_VNET_HDR)
        except OSError as exc:
            return None, f"IFF_VNET_HDR: {os.strerror(exc.errno) if exc.errno else exc}"
        why = _ask_for_offloads(dev.fileno())
        if why is None:
            return dev, None
        dev.close()
        return None, why

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
        self._frame_max = mtu + self._header
        # One byte more than the largest frame accepted, to detect longer ones.
        self._read_size = self._frame_max + self._rx_slack + 1
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
        if len(frame) > self._frame_max:
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
        """``send_frame`` with the virtio-net header (``_offload_iov``)."""
        stats = self.stats
        if len(frame) > (self.tso_max if gso_size else self._frame_max):
            stats["tx_dropped_oversize"] += 1
            return
        offload_iov = self._offload_iov  # a slot: loaded faster than a method
        iov = offload_iov(frame, gso_size)
        if iov is None:
            stats["tx_dropped_bad_gso"] += 1
            return
        if self._write(os.writev, iov) and gso_size:
            stats["tx_gso_frames"] += 1

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
        if self.offload:
            return self._read_some_offload(max_frames)
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

    def _read_some_offload(self, max_frames: int) -> list[bytes]:
        """Read frames and their virtio-net headers into fixed buffers (one
        copy out per frame); check the checksums the kernel did not vouch for."""
        frames: list[bytes] = []
        readv = os.readv
        fd = self._fd
        header = self._rx_header
        view = self._rx_view
        checksums_ok = self._checksums_ok
        buffers = (header, view)
        size = len(view)
        oversize = bad = gso = 0
        try:
            while len(frames) < max_frames:
                n = readv(fd, buffers) - VNET_LEN
                if n < 0:
                    continue  # shorter than the header: nothing to pass on
                if n >= size:
                    oversize += 1
                    continue
                frame = bytes(view[:n])
                if header[1]:
                    gso += 1
                if not header[0] & (F_NEEDS_CSUM | F_DATA_VALID) and not checksums_ok(frame):
                    bad += 1
                    continue
                frames.append(frame)
        except (BlockingIOError, InterruptedError):
            pass  # empty for now
        except OSError as exc:
            self._broken = self._gone_message(exc)
        stats = self.stats
        if frames:
            stats["rx_frames"] += len(frames)
        if gso:
            stats["rx_gso_frames"] += gso
        if oversize:
            stats["rx_dropped_oversize"] += oversize
        if bad:
            stats["rx_dropped_checksum"] += bad
        return frames

    def _release_fd(self) -> None:
        if self.offload:
            # A persistent device keeps its offload settings: leave it
            # without them for whoever opens it next.
            try:
                _ioctl(self._fd, _TUNSETOFFLOAD, 0)
            except OSError:
                pass
        self._dev.close()
