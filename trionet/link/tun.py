"""A Linux TUN device: IP packets, with no link-layer header, to and from
the host kernel (a point-to-point link). Constants: linux/if_tun.h."""

import logging

from .tuntap import IFF_NO_PI, IFF_TUN, TunTapLink
from .vnet import BARE_IP


class TunLink(TunTapLink):
    """A TUN device (``IFF_TUN | IFF_NO_PI``), opened with python-pytun.

    Each "frame" is one bare IPv4 or IPv6 packet (``ethernet`` is False):
    the interface above dispatches on the version nibble and sends packets
    as they are, with no ARP or neighbour discovery (``needs_arp`` is
    False). Like ``TapLink``, it attaches to an existing persistent TUN that
    belongs to this user (``sudo scripts/setup_tap.sh tun0 10.0.0.1/24
    --tun --user $USER``), or creates a non-persistent one when the
    process has CAP_NET_ADMIN; it neither brings the device up nor assigns
    addresses: the host side does that.

    ``mtu`` (the largest IP packet) defaults to the device's MTU. Packets
    are read first, in batches, from the non-blocking fd. ``stats`` as
    TapLink's: ``tx_frames``, ``rx_frames``, ``tx_dropped_full``,
    ``tx_dropped_down``, ``tx_dropped_oversize``, ``tx_dropped_broken``,
    ``tx_dropped_closed``, ``tx_dropped_error`` (e.g. the kernel refused a
    packet that is not IP), ``rx_dropped_oversize``.

    Offloads as on ``TapLink``: ``offload=True`` (the default) opens the
    device with ``IFF_VNET_HDR`` (a virtio-net header before each bare
    packet) and asks for checksum offload and TSO; then ``offload`` and
    ``checksum_offload`` are True and ``tso_max`` is 65535 (the largest
    packet): checksums are left to the kernel (and checked here where it
    did not vouch for them: ``rx_dropped_checksum``), TCP segments of up to
    64 KB go and come as GSO packets (TCPV4, TCPV6; ``tx_gso_frames``,
    ``rx_gso_frames``). Where the kernel refuses, the link opens the device
    plain (``offload_error``, ``stats["offload_refused"]``, a warning);
    ``offload=False`` forces plain packets.
    """

    __slots__ = ()

    kind = "TUN"
    ethernet = False
    needs_arp = False
    _flags = IFF_TUN | IFF_NO_PI
    _header = 0
    _rx_slack = 0
    _vnet = BARE_IP
    _log = logging.getLogger("trionet.link.tun")
