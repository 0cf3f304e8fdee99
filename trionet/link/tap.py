"""A Linux TAP device: Ethernet frames to and from the host kernel.

By default (``offload=True``) the device carries a virtio-net header before
each frame (IFF_VNET_HDR) and the kernel takes and gives checksum and TCP
segmentation work (TUNSETOFFLOAD): trionet writes TCP segments of up to
64 KB that the kernel cuts into MSS-sized ones (GSO), leaves checksums for
the kernel to complete, and reads the large segments the kernel's TCP and
GRO build. The code for that is shared with TunLink (tuntap.py, vnet.py).
Constants: linux/if_tun.h and linux/virtio_net.h.
"""

import logging

from .tuntap import IFF_NO_PI, IFF_TAP, TunTapLink
from .vnet import ETHERNET

# The virtio-net header code for Ethernet frames, by the names tests use.
_offload_iov = ETHERNET.offload_iov
checksums_ok = ETHERNET.checksums_ok


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

    ``offload=True`` (the default) opens the device with ``IFF_VNET_HDR``
    and asks for checksum offload and TSO (TUNSETOFFLOAD ``TUN_F_CSUM |
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

    If the kernel refuses the header (the open with ``IFF_VNET_HDR`` fails)
    or an offload ioctl, the link opens the device without the header:
    ``offload`` is False, ``offload_error`` says why,
    ``stats["offload_refused"]`` is 1 and a warning is logged. An existing
    persistent TAP made without ``vnet_hdr`` (``ip tuntap add NAME mode
    tap``, scripts/setup_tap.sh) opens with the offloads: each attach sets
    the header flag anew, and closing turns the offloads off again.
    ``offload=False`` forces plain frames. More ``stats`` with offload:
    ``tx_gso_frames``, ``rx_gso_frames`` (frames the kernel marked GSO),
    ``tx_dropped_bad_gso``.
    """

    __slots__ = ()

    kind = "TAP"
    _flags = IFF_TAP | IFF_NO_PI
    _header = 14
    _rx_slack = 4  # a VLAN tag
    _vnet = ETHERNET
    _log = logging.getLogger("trionet.link.tap")
