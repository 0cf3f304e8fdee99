"""A Linux TAP device: Ethernet frames to and from the host kernel.

With ``offload=True`` the device carries a virtio-net header before each
frame (IFF_VNET_HDR) and the kernel takes and gives checksum and TCP
segmentation work (TUNSETOFFLOAD): trionet writes TCP segments of up to
64 KB that the kernel cuts into MSS-sized ones (GSO), leaves checksums for
the kernel to complete, and reads the large segments the kernel's TCP and
GRO build. Constants: linux/if_tun.h and linux/virtio_net.h.
"""

import fcntl
import logging
import os
import struct

from ..wire.checksum import internet_checksum, ones_complement_sum
from .tuntap import IFF_NO_PI as _IFF_NO_PI
from .tuntap import IFF_TAP as _IFF_TAP
from .tuntap import IFF_VNET_HDR as _IFF_VNET_HDR
from .tuntap import TunTapLink

log = logging.getLogger("trionet.link.tap")

_ETH_HEADER = 14
_VLAN_TAG = 4

# linux/if_tun.h
_TUNSETOFFLOAD = 0x400454D0    # _IOW('T', 208, unsigned int)
_TUNSETVNETHDRSZ = 0x400454D8  # _IOW('T', 216, int)
_TUN_F_CSUM = 0x01
_TUN_F_TSO4 = 0x02
_TUN_F_TSO6 = 0x04
#: Offloads asked for: the kernel hands us partial checksums and TSO frames.
_OFFLOADS = _TUN_F_CSUM | _TUN_F_TSO4 | _TUN_F_TSO6
_INT = struct.Struct("i")

# linux/virtio_net.h: struct virtio_net_hdr (flags, gso_type, hdr_len,
# gso_size, csum_start, csum_offset); legacy layout, native byte order.
_VNET = struct.Struct("=BBHHHH")
_VNET_LEN = _VNET.size  # 10
_VNET_PLAIN = bytes(_VNET_LEN)
_F_NEEDS_CSUM = 1
_F_DATA_VALID = 2
_GSO_TCPV4 = 1
_GSO_TCPV6 = 4

#: Largest IPv4 datagram (RFC 791), so the largest frame with TSO.
_IP_MAX = 65535
_TSO_MAX = _IP_MAX + _ETH_HEADER

# Where a transport's checksum field sits (RFC 9293 3.1, RFC 768).
_CSUM_OFFSET = {6: 16, 17: 6}

# Ioctls go through this name so tests can make the kernel refuse one.
_ioctl = fcntl.ioctl

def _ask_for_offloads(fd: int) -> str | None:
    """Give the device a virtio-net header and ask for checksum and TSO
    offload; the kernel's refusal as text, or None."""
    try:
        _ioctl(fd, _TUNSETVNETHDRSZ, _INT.pack(_VNET_LEN))
        _ioctl(fd, _TUNSETOFFLOAD, _OFFLOADS)
    except OSError as exc:
        return f"{exc.strerror or exc}"
    return None


def _offload_iov(frame, gso_size: int):
    """What to write for ``frame`` on an offload TAP: [vnet header, frame]
    or [vnet header, fixed headers, rest of frame]; None for a frame that
    cannot go (GSO asked for something that is not TCP).

    The stack leaves checksums to an offload link (``checksum_offload``):
    here the IPv4 header checksum is computed (the kernel checks it on every
    datagram) and a TCP or UDP checksum field gets the pseudo-header sum,
    with NEEDS_CSUM telling the kernel to add the rest (RFC 9293 3.1)."""
    n = len(frame)
    if frame[12:14] == b"\x86\xdd":
        return _offload_iov6(frame, gso_size)
    if n < _ETH_HEADER + 20 or frame[12] != 0x08 or frame[13] != 0x00 or frame[14] >> 4 != 4:
        return None if gso_size else [_VNET_PLAIN, frame]
    ihl = (frame[14] & 0x0F) << 2
    l4 = _ETH_HEADER + ihl
    total = (frame[16] << 8) | frame[17]
    proto = frame[23]
    fragment = ((frame[20] & 0x3F) << 8) | frame[21]  # MF and the offset
    off = _CSUM_OFFSET.get(proto, 0)
    if ihl < 20 or l4 > n or total < ihl or _ETH_HEADER + total > n:
        return None if gso_size else [_VNET_PLAIN, frame]
    if off and not fragment and total - ihl >= off + 2:
        end = l4 + off + 2
        head = bytearray(frame[:end])
        head[24] = head[25] = 0
        ip_csum = internet_checksum(head[_ETH_HEADER:l4])
        head[24] = ip_csum >> 8
        head[25] = ip_csum & 0xFF
        partial = (int.from_bytes(head[26:30], "big") + int.from_bytes(head[30:34], "big")
                   + proto + total - ihl) % 0xFFFF
        head[end - 2] = partial >> 8
        head[end - 1] = partial & 0xFF
        if gso_size:
            if proto != 6:
                return None
            hdr_len = l4 + ((frame[l4 + 12] >> 4) << 2)
            vnet = _VNET.pack(_F_NEEDS_CSUM, _GSO_TCPV4, hdr_len, gso_size, l4, off)
        else:
            vnet = _VNET.pack(_F_NEEDS_CSUM, 0, 0, 0, l4, off)
        return [vnet, head, memoryview(frame)[end:]]
    if gso_size:
        return None
    # ICMP, fragments, others: their own checksums are complete; the IPv4
    # header's is filled in.
    head = bytearray(frame[:l4])
    head[24] = head[25] = 0
    ip_csum = internet_checksum(head[_ETH_HEADER:l4])
    head[24] = ip_csum >> 8
    head[25] = ip_csum & 0xFF
    return [_VNET_PLAIN, head, memoryview(frame)[l4:]]


_IPV6_L4 = _ETH_HEADER + 40


def _offload_iov6(frame, gso_size: int):
    """``_offload_iov`` for an IPv6 frame: a TCP or UDP header right after
    the fixed header gets the pseudo-header sum (RFC 8200 8.1) and
    NEEDS_CSUM (a TCP one also GSO, TCPV6, with ``gso_size``); anything
    else (ICMPv6, extension headers, fragments) has its checksum complete
    already."""
    n = len(frame)
    if n < _IPV6_L4:
        return None if gso_size else [_VNET_PLAIN, frame]
    proto = frame[20]
    off = _CSUM_OFFSET.get(proto, 0)
    length = (frame[18] << 8) | frame[19]
    if not off or length < off + 2 or _IPV6_L4 + length > n or (gso_size and proto != 6):
        return None if gso_size else [_VNET_PLAIN, frame]
    end = _IPV6_L4 + off + 2
    head = bytearray(frame[:end])
    partial = (int.from_bytes(head[22:38], "big") + int.from_bytes(head[38:54], "big")
               + proto + length) % 0xFFFF
    head[end - 2] = partial >> 8
    head[end - 1] = partial & 0xFF
    if gso_size:
        hdr_len = _IPV6_L4 + ((frame[_IPV6_L4 + 12] >> 4) << 2)
        vnet = _VNET.pack(_F_NEEDS_CSUM, _GSO_TCPV6, hdr_len, gso_size, _IPV6_L4, off)
    else:
        vnet = _VNET.pack(_F_NEEDS_CSUM, 0, 0, 0, _IPV6_L4, off)
    return [vnet, head, memoryview(frame)[end:]]


def _checksums6_ok(frame) -> bool:
    """``checksums_ok`` for IPv6: the TCP, UDP or ICMPv6 checksum (with the
    pseudo-header, RFC 8200 8.1) of a packet without extension headers."""
    n = len(frame)
    if n < _IPV6_L4:
        return True
    proto = frame[20]
    length = (frame[18] << 8) | frame[19]
    if proto not in (6, 17, 58) or _IPV6_L4 + length > n:
        return True  # extension headers, fragments, malformed: the stack judges
    mv = memoryview(frame)
    pseudo = int.from_bytes(mv[22:38], "big") + int.from_bytes(mv[38:54], "big") + proto + length
    return ones_complement_sum(mv[_IPV6_L4:_IPV6_L4 + length], pseudo % 0xFFFF) == 0xFFFF


def checksums_ok(frame) -> bool:
    """For a frame the kernel did not vouch for (no NEEDS_CSUM, no
    DATA_VALID): False if its IPv4 header checksum or (unfragmented) TCP,
    UDP or ICMP checksum is wrong, or an IPv6 packet's TCP, UDP or ICMPv6
    checksum. Anything else passes: the stack judges it (it does not
    verify checksums on an offload link)."""
    n = len(frame)
    if frame[12:14] == b"\x86\xdd":
        return _checksums6_ok(frame)
    if n < _ETH_HEADER + 20 or frame[12] != 0x08 or frame[13] != 0x00:
        return True
    ihl = (frame[14] & 0x0F) << 2
    l4 = _ETH_HEADER + ihl
    if ihl < 20 or l4 > n:
        return True
    mv = memoryview(frame)
    if ones_complement_sum(mv[_ETH_HEADER:l4]) != 0xFFFF:
        return False  # RFC 1122 3.2.1.2
    total = (frame[16] << 8) | frame[17]
    if total < ihl or _ETH_HEADER + total > n or ((frame[20] & 0x3F) << 8) | frame[21]:
        return True  # malformed (the stack drops it) or a fragment
    proto = frame[23]
    body = mv[l4:_ETH_HEADER + total]
    if proto == 1:
        return ones_complement_sum(body) == 0xFFFF
    if proto == 6 or (proto == 17 and len(body) >= 8 and (body[6] or body[7])):
        pseudo = (int.from_bytes(mv[26:30], "big") + int.from_bytes(mv[30:34], "big")
                  + proto + len(body))
        return ones_complement_sum(body, pseudo) == 0xFFFF
    return True


class TapLink(TunTapLink):
    """A TAP device (``IFF_TAP | IFF_NO_PI``), opened with python-pytun.

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

    ``offload=True`` opens the device with ``IFF_VNET_HDR`` and asks for
    checksum offload and TSO (TUNSETOFFLOAD ``TUN_F_CSUM |
    TUN_F_TSO4 | TUN_F_TSO6``, a 10-byte virtio-net header). Then
    ``offload`` is True, ``checksum_offload`` is True and ``tso_max`` is
    65549 (a 65535-byte datagram in a frame):

    - sending, the stack computes no checksum; the link fills in the IPv4
      header checksum and, for TCP and UDP, the pseudo-header sum with
      NEEDS_CSUM (the kernel adds the rest, or needs none for its own
      delivery); the same for IPv6's TCP and UDP. ``send_frame(frame,
      gso_size)`` sends one TCP segment of up to 64 KB as a GSO frame
      (TCPV4 or TCPV6, ``gso_size`` the MSS): the kernel takes
      it as one segment (as GRO would have built it) or, forwarding it, cuts
      it into ``gso_size`` pieces, copying the options and leaving PSH and
      FIN on the last one only.
    - receiving, frames of up to 64 KB arrive (the kernel's TSO and GRO).
      Frames with NEEDS_CSUM (the kernel's own, checksum not yet complete)
      or DATA_VALID (checked by the kernel) are passed on unverified: the
      kernel vouches for them. The rest (the kernel computed their checksums
      in software: ARP, ICMP, RSTs, ...) are checked here and dropped, counted
      in ``rx_dropped_checksum``, if wrong: so the stack, trusting an offload
      link, never sees a bad checksum. IP fragments are the exception: their
      transport checksum is checked by nobody (it spans the whole datagram).

    If the kernel refuses an offload ioctl the link reopens the device
    without the header: ``offload`` is False, ``offload_error`` says why,
    ``stats["offload_refused"]`` is 1 and a warning is logged. More
    ``stats`` with offload: ``tx_gso_frames``, ``rx_gso_frames`` (frames the
    kernel marked GSO), ``tx_dropped_bad_gso``.
    """

    __slots__ = ("offload", "offload_error", "checksum_offload", "tso_max", "_rx_header",
                 "_rx_view")

    kind = "TAP"

    def __init__(self, name: str, *, mtu: int | None = None, offload: bool = False) -> None:
        super().__init__()
        self._check_arguments(name, mtu)
        self.offload = False
        self.offload_error: str | None = None
        self.checksum_offload = False
        self.tso_max = 0
        self._rx_header = None
        self._rx_view = None
        dev = None
        if offload:
            dev = self._open(name, _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR)
            why = _ask_for_offloads(dev.fileno())
            if why is not None:
                dev.close()
                dev = None
                self.offload_error = why
                self.stats["offload_refused"] += 1
                log.warning("TAP %s: the kernel refused checksum/TSO offload (%s); "
                            "running without it", name, why)
        if dev is None:
            dev = self._open(name, _IFF_TAP | _IFF_NO_PI)
        else:
            self.offload = True
            self.checksum_offload = True
            self.tso_max = _TSO_MAX
            self._rx_header = bytearray(_VNET_LEN)
            self._rx_view = memoryview(bytearray(_TSO_MAX + _VLAN_TAG + 1))
        self._attach(dev, mtu)

    def _send_offload(self, frame, gso_size: int) -> None:
        stats = self.stats
        if len(frame) > (self.tso_max if gso_size else self.mtu + _ETH_HEADER):
            stats["tx_dropped_oversize"] += 1
            return
        iov = _offload_iov(frame, gso_size)
        if iov is None:
            stats["tx_dropped_bad_gso"] += 1
            return
        if self._write(os.writev, iov) and gso_size:
            stats["tx_gso_frames"] += 1

    def _read_some(self, max_frames: int) -> list[bytes]:
        """Read up to ``max_frames`` frames without waiting."""
        if self.offload:
            return self._read_some_offload(max_frames)
        return super()._read_some(max_frames)

    def _read_some_offload(self, max_frames: int) -> list[bytes]:
        """Read frames and their virtio-net headers into fixed buffers (one
        copy out per frame); check the checksums the kernel did not vouch for."""
        frames: list[bytes] = []
        readv = os.readv
        fd = self._fd
        header = self._rx_header
        view = self._rx_view
        buffers = (header, view)
        size = len(view)
        oversize = bad = gso = 0
        try:
            while len(frames) < max_frames:
                n = readv(fd, buffers) - _VNET_LEN
                if n < 0:
                    continue  # shorter than the header: nothing to pass on
                if n >= size:
                    oversize += 1
                    continue
                frame = bytes(view[:n])
                if header[1]:
                    gso += 1
                if not header[0] & (_F_NEEDS_CSUM | _F_DATA_VALID) and not checksums_ok(frame):
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
            # A persistent device keeps its offload settings: leave it as a
            # plain TAP for whoever opens it next.
            try:
                _ioctl(self._fd, _TUNSETOFFLOAD, 0)
            except OSError:
                pass
        super()._release_fd()
