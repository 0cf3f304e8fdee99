"""The routing table: longest-prefix match, family-agnostic (RFC 1812 5.2.4.3)."""

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network, IPv4Network, IPv6Network
from typing import Any

import attrs

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


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
    """Routes, most specific first. Lookups are cached per destination
    (the cache is emptied whenever a route changes)."""

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._cache: dict[IPAddress, Route | None] = {}

    def __iter__(self):
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def add(self, route: Route) -> None:
        if any(r.network == route.network and r.metric == route.metric for r in self._routes):
            raise ValueError(f"a route to {route.network} with metric {route.metric} exists already")
        self._routes.append(route)
        self._routes.sort(key=lambda r: (-r.network.prefixlen, r.metric))
        self._cache.clear()

    def remove_interface(self, interface: Any) -> None:
        self._routes = [r for r in self._routes if r.interface is not interface]
        self._cache.clear()

    def lookup(self, dst: IPAddress) -> Route | None:
        try:
            return self._cache[dst]
        except KeyError:
            pass
        found = None
        for route in self._routes:
            if route.network.version == dst.version and dst in route.network:
                found = route
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[dst] = found
        return found


def parse_address(value: Any, what: str = "address") -> IPAddress:
    """An ``ipaddress`` address from a string or address; ValueError naming
    ``what`` otherwise."""
    if isinstance(value, (IPv4Address, IPv6Address)):
        return value
    if value == "localhost":
        return IPv4Address("127.0.0.1")
    try:
        return ip_address(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an IP address") from None


def parse_network(value: Any, what: str = "network") -> IPNetwork:
    try:
        return ip_network(value, strict=False)
    except (ValueError, TypeError):
        raise ValueError(f"{what}: {value!r} is not a network (e.g. '10.1.0.0/16')") from None
