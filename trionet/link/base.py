"""What every link offers the interface above it."""

import abc
from collections import Counter


class Link(abc.ABC):
    """An Ethernet link: whole frames (no preamble, no FCS) in and out; or,
    with ``ethernet`` False, an IP link whose frames are bare IP packets.

    ``send_frame`` never blocks: like a NIC whose ring is full, a link that
    cannot take a frame drops it and counts it in ``stats``. TCP recovers.
    ``receive_batch`` waits for at least one frame, then returns every frame
    already available (up to ``max_frames``), so the caller crosses into Trio
    once per batch, not once per frame.
    """

    #: IP MTU: the largest Ethernet payload the link carries.
    mtu: int = 1500
    #: True where the stack may neither compute nor verify checksums: frames
    #: never leave memory (cable, loopback), or the link completes them on
    #: the way out and has them checked on the way in (a TapLink or TunLink
    #: with offload, the default where the kernel grants it).
    checksum_offload: bool = False
    #: False where frames need no link-layer address resolution (loopback):
    #: the interface skips ARP/NDP and fills in any MAC address.
    needs_arp: bool = True
    #: False where a frame is a bare IPv4 or IPv6 packet with no Ethernet
    #: header (TunLink): the interface dispatches on the IP version nibble
    #: and sends packets as they are; ``mtu`` is then the largest packet.
    ethernet: bool = True
    #: TCP segmentation offload: 0 where the link takes only frames of at
    #: most ``mtu`` + 14 bytes (``mtu`` on a TUN); else the largest frame
    #: (Ethernet header included, where there is one) it takes with
    #: ``send_frame(frame, gso_size)``, which it splits into segments of
    #: ``gso_size`` payload bytes (TapLink and TunLink with offload).
    tso_max: int = 0

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    @abc.abstractmethod
    def send_frame(self, frame: bytes, gso_size: int = 0) -> None:
        """Queue one frame for sending; drop and count it if it cannot go.

        ``gso_size`` > 0 (only on links with ``tso_max``; callers never pass
        it to others, which may take just ``frame``): the frame is one IPv4
        or IPv6 TCP segment of up to ``tso_max`` bytes that the link cuts
        into segments of ``gso_size`` payload bytes."""

    @abc.abstractmethod
    async def receive_batch(self, max_frames: int = 64) -> list[bytes]:
        """Wait for one frame or more and return them (at least one).

        Raises ``trio.ClosedResourceError`` once the link is closed, and
        ``trio.BrokenResourceError`` if the device went away.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the link; pending and later ``receive_batch`` calls raise
        ``trio.ClosedResourceError``."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
