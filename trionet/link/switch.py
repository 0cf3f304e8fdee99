"""An in-memory Ethernet switch with per-path conditions, for simulated
networks (``trionet.testing``): any number of ports, each a Link.

The switch learns which MAC address sits behind which port (as an 802.1D
bridge does) and floods broadcast, multicast and unknown destinations.
Every frame from one port to another meets the conditions of that ordered
pair of ports: latency and jitter, loss, duplication, reordering,
corruption, a bandwidth (frames queue behind each other), an MTU, a
partition (dropped) or a hold (queued until released). Randomness comes from
one ``random.Random`` seeded by the caller, so a run in virtual time
replays. Like ``virtual_cable`` there is no task: a frame is stamped with
the time it is due and pushed onto the receiving port's heap.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
import trio

from ..validate import check_int, check_number, check_probability, check_seconds
from .delayed import DelayedLink

_ETH_HEADER = 14
_BROADCAST = b"\xff" * 6


@attrs.define(slots=True)
class PathConditions:
    """What frames from one port to another meet. ``bandwidth`` is in bytes
    a second (None: no limit); ``mtu`` (None: the switch's) drops larger
    frames; ``blocked`` drops everything (a partition); ``held`` queues
    everything until released."""

    latency: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    bandwidth: float | None = None
    mtu: int | None = None
    blocked: bool = False
    held: bool = False

    def check(self) -> None:
        check_seconds(self.latency, "latency")
        check_seconds(self.jitter, "jitter")
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            check_probability(getattr(self, name), name)
        if self.bandwidth is not None and not check_number(self.bandwidth, "bandwidth") > 0:
            raise ValueError(f"bandwidth must be a positive number of bytes a second, "
                             f"not {self.bandwidth!r}")
        if self.mtu is not None:
            check_int(self.mtu, "mtu", 68)


#: What may be changed with ``Switch.set_conditions``.
CONDITIONS = ("latency", "jitter", "loss", "duplicate", "reorder", "corrupt", "bandwidth", "mtu")


class Switch:
    """The switch: ``port = switch.add_port(name)`` gives a Link."""

    def __init__(self, *, seed=0, mtu: int = 1500, capacity: int = 4096,
                 checksum_offload: bool = True, **conditions) -> None:
        check_int(mtu, "mtu", 68)
        check_int(capacity, "capacity", 1)
        self.mtu = mtu
        self.capacity = capacity
        self.checksum_offload = checksum_offload
        self.defaults = PathConditions(**conditions)
        self.defaults.check()
        self._rng = random.Random(f"trionet-switch-{seed}")
        self.ports: dict[str, SwitchPort] = {}
        self._macs: dict[bytes, SwitchPort] = {}
        self._paths: dict[tuple[str, str], PathConditions] = {}
        #: Frames held per (from, to) until released: (frame, size).
        self._held: dict[tuple[str, str], list[bytes]] = {}
        #: When each (from, to) pair's "wire" is free again (bandwidth).
        self._busy: dict[tuple[str, str], float] = {}
        self._order = 0
        #: Called with every frame a port sends (a capture).
        self.taps: list[Callable[[bytes], None]] = []

    def add_port(self, name: str, *, replace: bool = False) -> SwitchPort:
        """A new port; with ``replace`` it takes the place (and the path
        conditions) of the port of that name, which goes dead."""
        old = self.ports.get(name)
        if old is not None:
            if not replace:
                raise ValueError(f"port {name!r} exists already")
            old.unplug()
        port = SwitchPort(self, name)
        self.ports[name] = port
        return port

    def conditions(self, src: str, dst: str) -> PathConditions:
        """The conditions frames from port ``src`` to port ``dst`` meet."""
        path = self._paths.get((src, dst))
        if path is None:
            path = self._paths[(src, dst)] = attrs.evolve(self.defaults)
        return path

    def set_conditions(self, src: str, dst: str, **changes) -> None:
        unknown = set(changes) - set(CONDITIONS)
        if unknown:
            raise TypeError(f"unknown path condition(s): {', '.join(sorted(unknown))}")
        path = self.conditions(src, dst)
        updated = attrs.evolve(path, **changes)
        updated.check()
        if updated.corrupt and self.checksum_offload:
            raise ValueError("corrupt needs checksums computed and checked: make the network "
                             "with checksums=True (or corrupt > 0 from the start)")
        self._paths[(src, dst)] = updated

    def block(self, src: str, dst: str, blocked: bool = True) -> None:
        self.conditions(src, dst).blocked = blocked

    def hold(self, src: str, dst: str) -> None:
        self.conditions(src, dst).held = True

    def release(self, src: str, dst: str) -> None:
        """Deliver what was held (in order, as if sent now) and stop holding."""
        self.conditions(src, dst).held = False
        frames = self._held.pop((src, dst), [])
        port, peer = self.ports[src], self.ports[dst]
        for frame in frames:
            self._deliver(port, peer, frame)

    def forget_mac(self, port: SwitchPort) -> None:
        for mac in [m for m, p in self._macs.items() if p is port]:
            del self._macs[mac]

    # --- forwarding ----------------------------------------------------------------

    def forward(self, port: SwitchPort, frame: bytes) -> None:
        for tap in self.taps:
            tap(frame)
        src = frame[6:12]
        if not src[0] & 1:
            self._macs[src] = port  # IEEE 802.1D learning
        dst = frame[0:6]
        target = None if dst[0] & 1 else self._macs.get(dst)
        if target is not None:
            if target is not port:
                self._deliver(port, target, frame)
            return
        for peer in self.ports.values():  # flood: broadcast, multicast, unknown
            if peer is not port:
                self._deliver(port, peer, frame)

    def _deliver(self, port: SwitchPort, peer: SwitchPort, frame: bytes) -> None:
        stats = port.stats
        if peer._closed or peer.unplugged:
            stats["tx_dropped_unplugged"] += 1
            return
        key = (port.name, peer.name)
        path = self._paths.get(key) or self.defaults
        if path.blocked:
            stats["tx_dropped_partition"] += 1
            return
        if path.held:
            self._held.setdefault(key, []).append(frame)
            stats["tx_held"] += 1
            return
        if path.mtu is not None and len(frame) > path.mtu + _ETH_HEADER:
            stats["tx_dropped_oversize"] += 1
            return
        heap = peer._heap
        if len(heap) >= self.capacity:
            stats["tx_dropped_full"] += 1
            return
        rng = self._rng
        if path.loss and rng.random() < path.loss:
            stats["tx_dropped_loss"] += 1
            return
        if path.corrupt and frame and rng.random() < path.corrupt:
            damaged = bytearray(frame)
            damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
            frame = bytes(damaged)
            stats["tx_corrupted"] += 1
        now = trio.current_time()
        start = now
        if path.bandwidth:
            busy = self._busy.get(key, now)
            if busy > start:
                start = busy
            start += len(frame) / path.bandwidth
            self._busy[key] = start
        deliver_at = start + path.latency
        if path.jitter:
            deliver_at += rng.random() * path.jitter
        if path.reorder and rng.random() < path.reorder:
            deliver_at += max(2 * path.latency, 0.001)
            stats["tx_reordered"] += 1
        self._order += 1
        peer._push((deliver_at, self._order, frame))
        if path.duplicate and rng.random() < path.duplicate and len(heap) < self.capacity:
            self._order += 1
            peer._push((deliver_at, self._order, frame))
            stats["tx_duplicated"] += 1


class SwitchPort(DelayedLink):
    """One port of a ``Switch``. ``unplugged`` drops every frame to and
    from it (a host that is off)."""

    __slots__ = ("stats", "switch", "name", "_heap", "_lot", "_closed", "unplugged")

    def __init__(self, switch: Switch, name: str) -> None:
        super().__init__()
        self.switch = switch
        self.name = name
        self._heap: list[tuple[float, int, bytes]] = []
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.unplugged = False

    def __repr__(self) -> str:
        return f"<SwitchPort {self.name}{' unplugged' if self.unplugged else ''}>"

    @property
    def mtu(self) -> int:
        return self.switch.mtu

    @property
    def checksum_offload(self) -> bool:
        return self.switch.checksum_offload

    def send_frame(self, frame: bytes, gso_size: int = 0) -> None:
        stats = self.stats
        if self._closed:
            stats["tx_dropped_closed"] += 1
            return
        if self.unplugged:
            stats["tx_dropped_unplugged"] += 1
            return
        if len(frame) > self.switch.mtu + _ETH_HEADER:
            stats["tx_dropped_oversize"] += 1
            return
        if type(frame) is not bytes:
            frame = bytes(frame)  # the caller may reuse its buffer
        stats["tx_frames"] += 1
        self.switch.forward(self, frame)

    def unplug(self) -> None:
        """Nothing in or out from now on; what was on its way is lost."""
        self.unplugged = True
        self._heap.clear()
        self.switch.forget_mac(self)

    def plug(self) -> None:
        self.unplugged = False
