"""Routes and paths, for either family.

``RouteTable`` is the routing table (longest-prefix match, RFC 1812
5.2.4.3); a ``Path`` is what a lookup decides for one destination (the
interface, next hop, our source address, MTU and offloads), cached per
destination in ``PathCache`` until a route, an address or an interface
changes.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import attrs

from ..validate import IPAddress, IPNetwork

#: Destinations whose paths are cached; the cache is emptied past it.
PATH_CACHE_SIZE = 4096
_ETH_HEADER = 14


@attrs.frozen(slots=True)
class Route:
    network: IPNetwork
    #: None for a directly connected network.
    gateway: IPAddress | None
    #: The ``Interface`` the route leaves by.
    interface: Any
    metric: int = 0

    def next_hop(self, dst: IPAddress) -> IPAddress:
        return dst if self.gateway is None else self.gateway


class RouteTable:
    """Routes, most specific first (then by metric)."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def __iter__(self):
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def add(self, route: Route) -> None:
        if any(r.network == route.network and r.metric == route.metric for r in self._routes):
            raise ValueError(f"a route to {route.network} with metric {route.metric} exists already")
        self._routes.append(route)
        self._routes.sort(key=lambda r: (-r.network.prefixlen, r.metric))

    def remove(self, route: Route) -> None:
        self._routes.remove(route)

    def remove_interface(self, interface: Any) -> None:
        self._routes = [r for r in self._routes if r.interface is not interface]

    def lookup(self, dst: IPAddress, usable: Callable[[Route], bool] = lambda r: True) -> Route | None:
        """The most specific route to ``dst`` that ``usable`` accepts."""
        version = dst.version
        for route in self._routes:
            if route.network.version == version and dst in route.network and usable(route):
                return route
        return None


@attrs.frozen(slots=True, eq=False)
class Path:
    """How to reach one destination: the route lookup's cached answer."""
    interface: Any
    next_hop: IPAddress
    #: Our address to send from.
    source: IPAddress
    #: The destination is one of our own addresses.
    local: bool
    mtu: int
    #: Checksums may be skipped (the packet never leaves memory, or the
    #: link completes them: ``Link.checksum_offload``).
    offload: bool
    #: TSO: the largest datagram the link cuts into MSS-sized segments
    #: itself (``gso_size=MSS``); 0 when it does not.
    tso_max: int
    #: The family's output: ``output(path, src, dst, protocol, payload, *,
    #: ttl=64, dont_fragment=False, gso_size=0)``.
    output: Callable[..., None]


class PathCache:
    """Paths by destination, bounded (emptied and refilled past
    ``PATH_CACHE_SIZE``); ``clear()`` whenever routing changes."""

    __slots__ = ("_paths",)

    def __init__(self) -> None:
        self._paths: dict[IPAddress, Path] = {}

    def __len__(self) -> int:
        return len(self._paths)

    def get(self, dst: IPAddress) -> Path | None:
        return self._paths.get(dst)

    def discard(self, dst: IPAddress) -> None:
        self._paths.pop(dst, None)

    def put(self, dst: IPAddress, path: Path) -> None:
        if len(self._paths) > PATH_CACHE_SIZE:
            self._paths.clear()
        self._paths[dst] = path

    def clear(self) -> None:
        self._paths.clear()


#: fe80::/10, and multicast of interface- or link-local scope (RFC 4291 2.7).
_LINK_LOCAL_TOP10 = 0x3FA


def needs_scope(address: IPv6Address) -> bool:
    """Link-local unicast, or multicast of interface- or link-local scope:
    meaningful only together with an interface (RFC 4007 6)."""
    value = int(address)
    return value >> 118 == _LINK_LOCAL_TOP10 or (
        value >> 120 == 0xFF and (value >> 112) & 0x0F in (1, 2))


class Routing:
    """The routing state every family's input and output consult: the
    interfaces, our addresses, the routes, the path cache and the path MTUs
    that ICMPv6 Packet Too Big taught (RFC 8201).

    ``outputs`` maps an IP version to that family's output (set by the
    network layer); a path to one of our own addresses on a link that
    resolves neighbours goes through ``local_mtu``'s internal loopback (as
    Linux's lo). IPv6 link-local destinations carry their interface's name
    as scope ("fe80::1%eth0"); the path leaves by that interface."""

    def __init__(self, local_mtu: int) -> None:
        self.interfaces: list = []
        self.routes = RouteTable()
        self.paths = PathCache()
        self.outputs: dict[int, Callable[..., None]] = {}
        self.local_mtu = local_mtu
        #: Our usable addresses (link-local ones scoped) -> the interface holding them.
        self._local: dict[IPAddress, Any] = {}
        #: The limited broadcast and every directed broadcast of our networks.
        self._broadcasts: frozenset = frozenset()
        #: IPv6 destination -> (path MTU, when that knowledge expires).
        self._pmtu: dict[IPAddress, tuple[int, float]] = {}
        #: The one object input uses for an address (the network layer's):
        #: tables keyed by it match received addresses by identity.
        self.canonical: Callable[[IPAddress], IPAddress] = lambda address: address

    def is_local(self, address: IPAddress) -> bool:
        return address in self._local

    def owner(self, address: IPAddress):
        """The interface holding our ``address`` (None if not ours)."""
        return self._local.get(address)

    def is_broadcast(self, address: IPAddress) -> bool:
        """The limited broadcast or the directed broadcast of one of our
        networks (RFC 1122 3.2.2: never the subject of an ICMP error)."""
        return address in self._broadcasts

    def addresses_changed(self) -> None:
        """Recompute what ``is_local`` and ``is_broadcast`` answer. Only
        usable addresses count: a tentative one receives nothing but
        neighbour discovery (RFC 4862 5.4)."""
        canonical = self.canonical
        self._local = {canonical(entry.ip): iface for iface in self.interfaces
                       for entry in iface.addresses if entry.usable}
        self._broadcasts = frozenset([IPv4Address("255.255.255.255")]
                                     + [b for iface in self.interfaces for b in iface.broadcasts])
        self.paths.clear()

    def interface_named(self, name: str | None):
        return next((i for i in self.interfaces if i.name == name), None)

    def scoped(self, address: IPAddress, interface: Any = None) -> IPAddress:
        """``address`` with a scope if it needs one and has none: the name
        of ``interface``, or of the only interface that does IPv6 when
        there is one; unchanged otherwise."""
        if address.version == 4 or address.scope_id is not None or not needs_scope(address):
            return address
        if interface is None:
            candidates = [i for i in self.interfaces if i.ipv6 is not None]
            if len(candidates) != 1:
                return address
            interface = candidates[0]
        return IPv6Address(f"{address}%{interface.name}")

    # --- path MTU (RFC 8201) -----------------------------------------------------

    def lower_path_mtu(self, dst: IPAddress, mtu: int, expires: float) -> None:
        """A Packet Too Big said ``mtu`` toward ``dst``: paths there use it
        until ``expires`` (RFC 8201 4: at least 5 minutes, then try again)."""
        known = self._pmtu.get(dst)
        if known is None or mtu <= known[0]:
            self._pmtu[dst] = (mtu, expires)
            self.paths.discard(dst)

    def path_mtu(self, dst: IPAddress) -> int | None:
        known = self._pmtu.get(dst)
        return known[0] if known is not None else None

    def next_pmtu_expiry(self) -> float:
        return min((expires for _, expires in self._pmtu.values()), default=float("inf"))

    def expire_path_mtus(self, now: float) -> None:
        for dst, (_, expires) in list(self._pmtu.items()):
            if expires <= now:
                del self._pmtu[dst]
                self.paths.discard(dst)

    # --- paths ------------------------------------------------------------------------

    def path_to(self, dst: IPAddress) -> Path:
        """The interface, next hop and source address for ``dst``;
        OSError(ENETUNREACH) when no route leads there, EINVAL for a
        link-local IPv6 destination without its interface."""
        path = self.paths.get(dst)
        if path is not None:
            return path
        output = self.outputs.get(dst.version)
        owner = self._local.get(dst)
        if output is None:
            path = None
        elif owner is not None:
            if not owner.loops_back:  # our address on a real link: the internal loopback
                path = Path(owner, dst, dst, True, self.local_mtu, True, 0, output)
            else:
                path = Path(owner, dst, dst, True, owner.mtu, owner.checksum_offload, 0, output)
        elif dst.version == 6:
            path = self._ipv6_path(dst, output)
        else:
            route = self.routes.lookup(dst)
            if route is not None and not route.interface.up:
                # The best route is down: the next best whose interface is up.
                route = self.routes.lookup(dst, lambda r: r.interface.up)
            source = route.interface.source_for(dst) if route is not None else None
            if source is None:
                path = None
            else:
                iface = route.interface
                tso = min(iface.link.tso_max - _ETH_HEADER, 0xFFFF)  # RFC 791: 65535 at most
                path = Path(iface, route.next_hop(dst), source, False, iface.mtu,
                            iface.checksum_offload, tso if tso > iface.mtu else 0, output)
        if path is None:
            raise OSError(errno.ENETUNREACH, f"no route to {dst}")
        self.paths.put(dst, path)
        return path

    def _ipv6_path(self, dst: IPv6Address, output: Callable[..., None]) -> Path | None:
        if needs_scope(dst):
            # RFC 4007 6: a link-local destination is reached on its own link.
            iface = self.interface_named(dst.scope_id)
            if iface is None:
                if dst.scope_id is None:
                    raise OSError(errno.EINVAL, f"{dst} is link-local: name its interface "
                                                f"('{dst}%eth0')")
                raise OSError(errno.ENODEV, f"{dst}: no interface {dst.scope_id!r}")
            if not iface.up:
                return None
            next_hop = dst
        else:
            # RFC 4861 6.3.6: a default router reachable (or probably so)
            # before one whose reachability is unknown or suspect.
            route = self.routes.lookup(dst, lambda r: r.interface.up and (
                r.network.prefixlen or r.gateway is None
                or r.interface.neighbour_reachable(r.gateway)))
            if route is None:
                route = self.routes.lookup(dst, lambda r: r.interface.up)
            if route is None:
                return None
            iface, next_hop = route.interface, route.next_hop(dst)
        source = iface.source_for(dst)
        if source is None:
            return None
        mtu = iface.ipv6_mtu
        learned = self._pmtu.get(dst)
        if learned is not None:
            mtu = min(mtu, learned[0])
        # RFC 8200 3: a payload length of 65535 at most (no jumbograms).
        tso = min(iface.link.tso_max - _ETH_HEADER, 0xFFFF)
        return Path(iface, next_hop, source, False, mtu, iface.checksum_offload,
                    tso if tso > mtu else 0, output)
