"""An in-memory Ethernet cable with impairments, for tests on real or
virtual (autojump) time.

There is no background task: ``send_frame`` stamps each frame with the time
it is due and pushes it onto the peer's heap; ``receive_batch`` takes what is
due and otherwise sleeps until the earliest due time or a new frame.
"""

import random
import secrets

import trio

from ..validate import check_int, check_probability, check_seconds
from .delayed import DelayedLink

_ETH_HEADER = 14


class _Wire:
    """State the two ends share."""

    __slots__ = ("unplugged",)

    def __init__(self) -> None:
        self.unplugged = False


class CableEnd(DelayedLink):
    """One end of a :func:`virtual_cable`.

    Impairments apply to frames *sent* from this end and may be changed at
    any time (``end.loss = 1.0`` cuts this direction): ``latency`` (seconds),
    ``loss``, ``duplicate``, ``reorder`` (the frame is held back a further
    ``reorder_delay`` seconds, so later frames overtake it) and ``corrupt``
    (one random byte is XORed with a random non-zero value) are
    probabilities. Setting ``unplugged`` on either end cuts both directions.

    ``stats`` counts ``tx_frames`` (frames put on the wire, counted once even
    if duplicated), ``rx_frames``, ``tx_duplicated``, ``tx_reordered``,
    ``tx_corrupted`` and drops: ``tx_dropped_loss``, ``tx_dropped_full``
    (the peer already holds ``capacity`` frames), ``tx_dropped_oversize``,
    ``tx_dropped_unplugged``, ``tx_dropped_closed``, ``tx_dropped_peer_closed``.
    """

    __slots__ = (
        "stats", "mtu", "checksum_offload", "capacity", "seed", "name",
        "_peer", "_wire", "_rng", "_heap", "_seq", "_lot", "_closed",
        "_latency", "_loss", "_duplicate", "_reorder", "_corrupt", "_reorder_delay",
    )

    def __init__(self, *, name: str, wire: _Wire, seed, rng: random.Random, mtu: int,
                 capacity: int, checksum_offload: bool, latency: float, loss: float,
                 duplicate: float, reorder: float, corrupt: float) -> None:
        super().__init__()
        self.name = name
        self.mtu = mtu
        self.capacity = capacity
        self.checksum_offload = checksum_offload
        self.seed = seed
        self._wire = wire
        self._rng = rng
        self._peer: CableEnd | None = None
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.latency = latency
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.corrupt = corrupt
        self._reorder_delay: float | None = None

    def __repr__(self) -> str:
        return (f"<CableEnd {self.name} seed={self.seed!r} latency={self._latency} "
                f"loss={self._loss} duplicate={self._duplicate} reorder={self._reorder} "
                f"corrupt={self._corrupt}{' unplugged' if self._wire.unplugged else ''}"
                f"{' closed' if self._closed else ''}>")

    # Impairments: validated on assignment, read as plain slots when sending.

    @property
    def latency(self) -> float:
        return self._latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._latency = check_seconds(value, "latency")

    @property
    def loss(self) -> float:
        return self._loss

    @loss.setter
    def loss(self, value: float) -> None:
        self._loss = check_probability(value, "loss")

    @property
    def duplicate(self) -> float:
        return self._duplicate

    @duplicate.setter
    def duplicate(self, value: float) -> None:
        self._duplicate = check_probability(value, "duplicate")

    @property
    def reorder(self) -> float:
        return self._reorder

    @reorder.setter
    def reorder(self, value: float) -> None:
        self._reorder = check_probability(value, "reorder")

    @property
    def corrupt(self) -> float:
        return self._corrupt

    @corrupt.setter
    def corrupt(self, value: float) -> None:
        self._corrupt = check_probability(value, "corrupt")

    @property
    def reorder_delay(self) -> float:
        """Extra delay of a reordered frame; defaults to
        ``max(2 * latency, 0.001)``. Assign ``None`` to restore the default."""
        if self._reorder_delay is None:
            return max(2 * self._latency, 0.001)
        return self._reorder_delay

    @reorder_delay.setter
    def reorder_delay(self, value: float | None) -> None:
        self._reorder_delay = None if value is None else check_seconds(value, "reorder_delay")

    @property
    def unplugged(self) -> bool:
        """While True, frames in both directions are dropped."""
        return self._wire.unplugged

    @unplugged.setter
    def unplugged(self, value: bool) -> None:
        self._wire.unplugged = bool(value)

    @property
    def peer(self) -> "CableEnd":
        return self._peer

    def send_frame(self, frame: bytes) -> None:
        stats = self.stats
        if self._closed:
            stats["tx_dropped_closed"] += 1
            return
        if len(frame) > self.mtu + _ETH_HEADER:
            stats["tx_dropped_oversize"] += 1
            return
        if self._wire.unplugged:
            stats["tx_dropped_unplugged"] += 1
            return
        peer = self._peer
        if peer._closed:
            stats["tx_dropped_peer_closed"] += 1
            return
        heap = peer._heap
        if len(heap) >= peer.capacity:
            stats["tx_dropped_full"] += 1
            return
        rng = self._rng
        if self._loss and rng.random() < self._loss:
            stats["tx_dropped_loss"] += 1
            return
        if type(frame) is not bytes:
            frame = bytes(frame)  # the caller may reuse its buffer
        if self._corrupt and frame and rng.random() < self._corrupt:
            damaged = bytearray(frame)
            damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
            frame = bytes(damaged)
            stats["tx_corrupted"] += 1
        deliver_at = trio.current_time() + self._latency
        if self._reorder and rng.random() < self._reorder:
            deliver_at += self.reorder_delay
            stats["tx_reordered"] += 1
        seq = peer._seq
        peer._push((deliver_at, seq, frame))
        if self._duplicate and rng.random() < self._duplicate and len(heap) < peer.capacity:
            seq += 1
            peer._push((deliver_at, seq, frame))
            stats["tx_duplicated"] += 1
        peer._seq = seq + 1
        stats["tx_frames"] += 1


def virtual_cable(*, mtu: int = 1500, latency: float = 0.0, loss: float = 0.0,
                  duplicate: float = 0.0, reorder: float = 0.0, corrupt: float = 0.0,
                  seed=None, capacity: int = 1024,
                  checksum_offload: bool | None = None) -> tuple[CableEnd, CableEnd]:
    """Two connected :class:`CableEnd`\\ s, ``a`` and ``b``.

    The impairments given here start out the same in both directions; change
    them per direction on the sending end. Each direction draws from its own
    ``random.Random`` seeded from ``seed`` (``f"{seed}-a->b"``), so a run
    replays exactly; with ``seed=None`` a random seed is chosen and stored as
    ``end.seed`` to print. ``checksum_offload`` defaults to True unless
    ``corrupt > 0`` (then checksums must catch the damage). ``capacity``
    bounds the frames waiting at each end.
    """
    check_int(mtu, "mtu", 1)
    check_int(capacity, "capacity", 1)
    if seed is None:
        seed = secrets.randbits(64)
    if checksum_offload is None:
        checksum_offload = not corrupt > 0
    wire = _Wire()
    common = dict(wire=wire, seed=seed, mtu=mtu, capacity=capacity,
                  checksum_offload=bool(checksum_offload), latency=latency, loss=loss,
                  duplicate=duplicate, reorder=reorder, corrupt=corrupt)
    a = CableEnd(name="a", rng=random.Random(f"{seed}-a->b"), **common)
    b = CableEnd(name="b", rng=random.Random(f"{seed}-b->a"), **common)
    a._peer = b
    b._peer = a
    return a, b
