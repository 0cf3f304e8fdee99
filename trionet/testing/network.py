"""A simulated network of named hosts in one process, each a real
``trionet.Stack``, for testing Trio applications: partitions, loss, crashes
and restarts, deterministic in virtual time.

    async with trionet.testing.Network(seed=1, latency=0.001) as net:
        db = net.add_host("db")
        app = net.add_host("app")
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run, trio.serve_tcp, handler, 5432)
            stream = await app.run(trio.open_tcp_stream, "db", 5432)
            net.partition(db, app)
            await db.crash()
            await db.restart()
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

import trio

from ..api.sockets import use_stack
from ..api.stack import Stack
from ..link.capture import PcapWriter
from ..link.switch import Switch, SwitchPort

log = logging.getLogger("trionet.testing")


def _derive(seed: Any, *parts: Any) -> int:
    """A repeatable 64-bit number from the network's seed and names."""
    text = "\x1f".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2s(text.encode()).digest()[:8], "big")


def _mac_for(seed: Any, name: str) -> bytes:
    raw = bytearray(_derive(seed, "mac", name).to_bytes(8, "big")[:6])
    raw[0] = (raw[0] | 0x02) & 0xFE  # locally administered, unicast (IEEE 802)
    return bytes(raw)


@contextlib.contextmanager
def _deterministic_scheduling(seed):
    """Trio runs the tasks that are ready at one instant in an order it picks
    at random, on purpose. A simulation that must replay byte for byte needs
    that order to be a function of the seed: Trio's own switch for it (the
    one its Hypothesis integration turns on) sorts each batch by task and
    shuffles it with Trio's scheduler random source, seeded here. Both are
    Trio internals: if a Trio release renames them, the network still runs,
    only not repeatably (a warning says so). Restored when the network
    stops."""
    try:
        from trio._core import _run
        random_source = _run._r
        previous_flag = _run._ALLOW_DETERMINISTIC_SCHEDULING
        previous_state = random_source.getstate()
    except AttributeError:  # pragma: no cover - a Trio without them
        warnings.warn("this Trio has no deterministic scheduling switch: simulated runs will "
                      "not repeat exactly", RuntimeWarning, stacklevel=3)
        yield
        return
    _run._ALLOW_DETERMINISTIC_SCHEDULING = True
    random_source.seed(_derive(seed, "trio-scheduler"))
    try:
        yield
    finally:
        _run._ALLOW_DETERMINISTIC_SCHEDULING = previous_flag
        random_source.setstate(previous_state)


class Host:
    """A named host of a ``Network``: ``name``, ``address``, and ``stack``
    (a fresh Stack after each ``restart``)."""

    def __init__(self, network: Network, name: str, address: IPv4Address, prefix: int):
        self.network = network
        self.name = name
        self.address = address
        self.prefix = prefix
        self.mac = _mac_for(network.seed, name)
        self.stack: Stack | None = None
        #: Times the host was (re)started.
        self.incarnation = 0
        self._port: SwitchPort | None = None
        self._scope: trio.CancelScope | None = None
        self._runs: set[trio.CancelScope] = set()
        self._stopped = trio.Event()
        self._stopped.set()
        #: Set while the stack runs; a host added to a running network is
        #: started by a task of its own, which ``run`` waits for.
        self._up = trio.Event()
        self._starting = False

    def __repr__(self) -> str:
        state = "up" if self.running else "down"
        return f"<Host {self.name} {self.address} {state}>"

    @property
    def running(self) -> bool:
        return self.stack is not None and not self._stopped.is_set()

    # --- application code ---------------------------------------------------------

    async def run(self, async_fn: Callable[..., Awaitable[Any]], *args,
                  task_status=trio.TASK_STATUS_IGNORED) -> Any:
        """Run ``async_fn(*args)`` with this host's stack as Trio's socket
        layer (``trionet.use_stack``) and return its result. ``task_status``
        is passed through, so ``nursery.start(host.run, trio.serve_tcp, ...)``
        works. If the host crashes meanwhile, the code is cancelled where it
        stands and ``run`` returns None (as a killed process just stops)."""
        if self._starting:
            await self._up.wait()
        if not self.running:
            raise RuntimeError(f"host {self.name} is down: restart() it first")
        stack = self.stack
        with trio.CancelScope() as scope:
            self._runs.add(scope)
            try:
                with use_stack(stack):
                    if task_status is trio.TASK_STATUS_IGNORED:
                        return await async_fn(*args)
                    return await async_fn(*args, task_status=task_status)
            finally:
                self._runs.discard(scope)
        return None

    # --- faults ------------------------------------------------------------------------

    async def crash(self) -> None:
        """Everything on the host stops at once, and nothing is sent: its port
        goes dark first, so peers see silence (no FIN, no RST)."""
        if not self.running:
            return
        self._port.unplug()
        for scope in list(self._runs):
            scope.cancel()
        self._scope.cancel()
        await self._stopped.wait()
        log.debug("%s crashed", self.name)

    async def restart(self) -> None:
        """A fresh stack with the same name, address and MAC (as a rebooted
        machine): connections are gone, and a peer's next segment to one of
        them is answered with RST."""
        if self.running:
            await self.crash()
        await self.network._start_host(self)
        log.debug("%s restarted (incarnation %d)", self.name, self.incarnation)

    # --- the host's own task --------------------------------------------------------------

    async def _serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        network = self.network
        self.incarnation += 1
        stack = Stack(seed=_derive(network.seed, "stack", self.name, self.incarnation),
                      name=self.name)
        self._port = network.switch.add_port(self.name, replace=True)
        stack.add_interface(self._port, f"{self.address}/{self.prefix}", mac=self.mac,
                            name="eth0")
        for name, host in network.hosts.items():
            stack.hosts[name] = [host.address]
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as self._scope:
                async with stack:
                    self.stack = stack
                    self._starting = False
                    self._up.set()
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self._scope = None
            self._up = trio.Event()
            self._stopped.set()


class Network:
    """A seeded network of named hosts on one switched LAN.

    ``latency``, ``jitter``, ``loss``, ``duplicate``, ``reorder``,
    ``corrupt``, ``bandwidth`` (bytes a second) and ``mtu`` are the defaults
    for every path between two hosts (``set_link`` changes one pair).
    Addresses come from ``subnet`` in order (.1, .2, ...) unless given.
    Checksums are computed and verified only when ``corrupt`` is possible
    (``checksums=True``, or ``corrupt > 0`` from the start): corruption
    needs them, and a network without it runs faster without.
    """

    def __init__(self, *, seed: Any = 0, subnet: str = "10.0.0.0/16", latency: float = 0.0,
                 jitter: float = 0.0, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0, corrupt: float = 0.0, bandwidth: float | None = None,
                 mtu: int = 1500, checksums: bool | None = None):
        self.seed = seed
        network = ip_network(subnet)
        if not isinstance(network, IPv4Network) or network.prefixlen > 30:
            raise ValueError(f"subnet: {subnet!r} is not an IPv4 network with room for hosts")
        self.subnet = network
        if checksums is None:
            checksums = corrupt > 0
        self.switch = Switch(seed=seed, mtu=mtu, checksum_offload=not checksums,
                             latency=latency, jitter=jitter, loss=loss, duplicate=duplicate,
                             reorder=reorder, corrupt=corrupt, bandwidth=bandwidth)
        self.hosts: dict[str, Host] = {}
        self._next_address = 1
        self._nursery: trio.Nursery | None = None
        self._pcaps: list[PcapWriter] = []

    def __repr__(self) -> str:
        return f"<Network seed={self.seed!r} {len(self.hosts)} hosts>"

    async def __aenter__(self) -> Network:
        self._scheduling = _deterministic_scheduling(self.seed)
        self._scheduling.__enter__()
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            for host in self.hosts.values():
                await self._start_host(host)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc) -> bool:
        nursery, self._nursery = self._nursery, None
        nursery.cancel_scope.cancel()
        try:
            return await self._nursery_manager.__aexit__(*exc)
        finally:
            for pcap in self._pcaps:
                pcap.close()
            self._scheduling.__exit__(None, None, None)

    # --- hosts ----------------------------------------------------------------------------

    def add_host(self, name: str, address: Any = None) -> Host:
        """A new host, started at once if the network runs. Its name resolves
        on every host (and theirs on it)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a host name must be a non-empty str, not {name!r}")
        if name in self.hosts:
            raise ValueError(f"a host named {name!r} exists already")
        if address is None:
            address = self._allocate_address()
        else:
            address = ip_address(address)
            if address not in self.subnet or address in (self.subnet.network_address,
                                                         self.subnet.broadcast_address):
                raise ValueError(f"address: {address} is not a host address in {self.subnet}")
            if any(h.address == address for h in self.hosts.values()):
                raise ValueError(f"address: {address} is taken")
        host = Host(self, name, address, self.subnet.prefixlen)
        self.hosts[name] = host
        for other in self.hosts.values():
            if other.stack is not None:
                other.stack.hosts[name] = [address]
        if self._nursery is not None:
            host._starting = True
            self._nursery.start_soon(self._start_host, host)
        return host

    def _allocate_address(self) -> IPv4Address:
        taken = {h.address for h in self.hosts.values()}
        while True:
            if self._next_address >= self.subnet.num_addresses - 1:
                raise ValueError(f"no addresses left in {self.subnet}")
            address = self.subnet.network_address + self._next_address
            self._next_address += 1
            if address not in taken:
                return address

    async def _start_host(self, host: Host) -> None:
        if self._nursery is None:
            raise RuntimeError("the network is not running: use 'async with net:'")
        await self._nursery.start(host._serve)

    def host(self, name_or_host) -> Host:
        if isinstance(name_or_host, Host):
            return name_or_host
        try:
            return self.hosts[name_or_host]
        except KeyError:
            raise KeyError(f"no host named {name_or_host!r}") from None

    # --- faults ----------------------------------------------------------------------------

    def partition(self, a, b, *, oneway: bool = False) -> None:
        """Frames from ``a`` to ``b`` (and back, unless ``oneway``) are lost:
        connections time out and new ones find no host (EHOSTUNREACH), as
        across a real cut."""
        a, b = self.host(a), self.host(b)
        self.switch.block(a.name, b.name)
        if not oneway:
            self.switch.block(b.name, a.name)

    def heal(self, a=None, b=None) -> None:
        """End the partition between ``a`` and ``b`` (both ways), or every
        partition when called without arguments."""
        if a is None and b is None:
            for src in self.hosts:
                for dst in self.hosts:
                    if src != dst:
                        self.switch.block(src, dst, False)
            return
        a, b = self.host(a), self.host(b)
        self.switch.block(a.name, b.name, False)
        self.switch.block(b.name, a.name, False)

    def set_link(self, a, b, **conditions) -> None:
        """Change the path between ``a`` and ``b`` (both ways): latency,
        jitter, loss, duplicate, reorder, corrupt, bandwidth, mtu."""
        a, b = self.host(a), self.host(b)
        self.switch.set_conditions(a.name, b.name, **conditions)
        self.switch.set_conditions(b.name, a.name, **conditions)

    def hold(self, a, b) -> None:
        """Queue everything between ``a`` and ``b`` until ``release``."""
        a, b = self.host(a), self.host(b)
        self.switch.hold(a.name, b.name)
        self.switch.hold(b.name, a.name)

    def release(self, a, b) -> None:
        """Deliver what was held between ``a`` and ``b``, in order."""
        a, b = self.host(a), self.host(b)
        self.switch.release(a.name, b.name)
        self.switch.release(b.name, a.name)

    # --- watching ----------------------------------------------------------------------------

    def capture(self, file) -> None:
        """Write every frame seen on the network from now on to ``file`` (a
        path or a binary file object) as one pcap, stamped with Trio's clock
        (virtual time under a MockClock: the file repeats with the seed)."""
        writer = PcapWriter(file, clock=trio.current_time)
        self._pcaps.append(writer)
        self.switch.taps.append(writer.write)
