"""What every link offers the interface above it."""

import abc
from collections import Counter


class Link(abc.ABC):
    """An Ethernet link: whole frames (no preamble, no FCS) in and out.

    ``send_frame`` never blocks: like a NIC whose ring is full, a link that
    cannot take a frame drops it and counts it in ``stats``. TCP recovers.
    ``receive_batch`` waits for at least one frame, then returns every frame
    already available (up to ``max_frames``), so the caller crosses into Trio
    once per batch, not once per frame.
    """

    #: IP MTU: the largest Ethernet payload the link carries.
    mtu: int = 1500
    #: True where frames never leave memory (cable, loopback): checksums may
    #: be neither computed nor verified.
    checksum_offload: bool = False
    #: False where frames need no link-layer address resolution (loopback):
    #: the interface skips ARP/NDP and fills in any MAC address.
    needs_arp: bool = True

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    @abc.abstractmethod
    def send_frame(self, frame: bytes) -> None:
        """Queue one frame for sending; drop and count it if it cannot go."""

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
