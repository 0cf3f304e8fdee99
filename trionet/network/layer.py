"""The network layer: interfaces and their addresses, routes and paths,
IPv4 in and out, ICMP, and delivery of packets to our own addresses.

Transports register with it (``register_transport``): an input for their
IP protocol, a handler for the ICMP errors that quote their datagrams, and
one for links that go down. They send through ``path_to(dst)`` and the
path's ``output``.
"""

from __future__ import annotations

import errno
import logging
import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import trio

from ..interface import ArpConfig, Callbacks, Interface, InterfaceAddress
from ..link.base import Link
from ..link.loopback import LoopbackLink
from ..stats import Stats
from ..validate import IPAddress, check_int, check_str, parse_address, parse_network
from ..wire.errors import WireError
from ..wire.ethernet import ETHERTYPE_IPV4, mac_from_str, mac_to_str, random_local_mac
from ..wire.icmpv4 import UNREACH_HOST, UNREACH_PORT
from ..wire.ipv4 import PROTO_ICMP
from .fragments import Reassembler, ReassemblyConfig
from .icmp import Icmp4, IcmpError
from .ipv4 import Ipv4
from .routes import Path, Route, Routing

log = logging.getLogger("trionet.network")

_LIMITED_BROADCAST = IPv4Address("255.255.255.255")


class NetworkLayer:
    """One stack's network layer. Its tasks (each interface's, local
    delivery, the reassembly timer) run under ``run``."""

    def __init__(self, stats: Stats, rng: random.Random, *, forwarding: bool = False,
                 arp: ArpConfig | None = None, reassembly: ReassemblyConfig | None = None,
                 icmp_error_rate: float = 1000.0, icmp_error_burst: int = 50):
        self.stats = stats
        self._rng = rng
        self._arp_config = arp
        #: Carries packets to our own addresses (like Linux's lo).
        self.local_link = LoopbackLink()
        self.routing = Routing(self.local_link.mtu)
        #: IP protocol -> the transport's input(iface, header, payload, raw, verify, broadcast).
        self.protocols: dict[int, Callable] = {}
        #: Called with an interface whose link went down.
        self._link_down_handlers: list[Callable[[Interface], None]] = []
        ip_id = rng.randrange(65536)
        self.icmp = Icmp4(stats, self.routing, rate=icmp_error_rate, burst=icmp_error_burst,
                          ping_ident=rng.randrange(65536))
        self.ipv4 = Ipv4(stats, self.routing, self.icmp, self.protocols,
                         Reassembler(reassembly), self.local_link, forwarding=forwarding,
                         first_id=ip_id, reschedule=self._reschedule)
        self.protocols[PROTO_ICMP] = self.icmp.input
        self.routing.outputs[4] = self.ipv4.output
        self._receivers = {ETHERTYPE_IPV4: self.ipv4.input}
        self._callbacks = Callbacks(on_down=self._interface_down,
                                    on_unresolved=self._unresolved,
                                    on_address=self._address_changed)
        self._nursery: trio.Nursery | None = None
        self._timer_scope: trio.CancelScope | None = None

    # --- what transports use --------------------------------------------------

    def register_transport(self, protocol: int, input: Callable, *,
                           icmp_error: Callable[[IcmpError], None] | None = None,
                           link_down: Callable[[Interface], None] | None = None) -> None:
        self.protocols[protocol] = input
        if icmp_error is not None:
            self.icmp.error_handlers[protocol] = icmp_error
        if link_down is not None:
            self._link_down_handlers.append(link_down)

    @property
    def interfaces(self) -> list[Interface]:
        return self.routing.interfaces

    @property
    def routes(self):
        return self.routing.routes

    @property
    def forwarding(self) -> bool:
        return self.ipv4.forwarding

    @forwarding.setter
    def forwarding(self, value: bool) -> None:
        self.ipv4.forwarding = value

    def path_to(self, dst: IPAddress) -> Path:
        """The interface, next hop and source address for ``dst``;
        OSError(ENETUNREACH) when no route leads there."""
        return self.routing.path_to(dst)

    def is_local_address(self, address: IPAddress) -> bool:
        return self.routing.is_local(address)

    def bind_address(self, value: Any, what: str) -> IPAddress | None:
        """The address a socket binds to: None for every address of the
        stack (None, "0.0.0.0" or "::", as with BSD sockets), else one of
        ours; OSError(EADDRNOTAVAIL) for any other."""
        if value is None:
            return None
        address = parse_address(value, what)
        if address.is_unspecified:
            return None
        if not self.routing.is_local(address):
            raise OSError(errno.EADDRNOTAVAIL, f"{address} is not an address of this stack")
        return address

    def send(self, path: Path, src: IPAddress, dst: IPAddress, protocol: int, payload: bytes,
             **options) -> None:
        """Send one datagram along ``path`` (see ``Ipv4.output``)."""
        path.output(path, src, dst, protocol, payload, **options)

    def port_unreachable(self, raw) -> None:
        """Answer a datagram that reached no socket (RFC 1122 4.1.3.1)."""
        self.icmp.unreachable(raw, UNREACH_PORT)

    async def ping(self, dst: IPAddress, size: int, timeout: float, ttl: int = 64) -> float:
        return await self.icmp.ping(self.path_to(dst), dst, size, timeout, ttl)

    # --- configuration ----------------------------------------------------------

    def add_interface(self, link: Link, address: Any = None, *, gateway: Any = None,
                      mac: bytes | str | None = None, name: str | None = None) -> Interface:
        """Attach ``link`` with ``address`` ("10.0.0.2/24"); a connected route
        to its network is added, and a default route via ``gateway`` if given.
        Every argument is checked before anything changes."""
        if not isinstance(link, Link):
            raise TypeError(f"link must be a trionet.link.Link, not {type(link).__name__}")
        iface_address = self._check_new_address(address)
        if any(i.link is link for i in self.interfaces):
            raise ValueError("link: already attached to an interface of this stack")
        if name is not None:
            check_str(name, "name")
        gw = parse_address(gateway, "gateway") if gateway is not None else None
        if gw is not None and (gw not in iface_address.network or gw == iface_address.ip):
            raise ValueError(f"gateway: {gw} is not another host on {iface_address.network}")
        mac = self._check_mac(mac)
        if link.mtu < 68:  # RFC 791: every host handles 68-byte datagrams
            raise ValueError(f"link mtu {link.mtu} is below the IPv4 minimum of 68")
        iface = Interface(link, mac, name or f"eth{len(self.interfaces)}", stats=self.stats,
                          receivers=self._receivers, callbacks=self._callbacks,
                          arp_config=self._arp_config)
        self.interfaces.append(iface)
        iface.add_address(iface_address)
        if gw is not None:
            default = parse_network("0.0.0.0/0")
            self.add_route(default, gateway=gw, interface=iface,
                           metric=sum(1 for r in self.routes if r.network == default))
        if self._nursery is not None:
            self._nursery.start_soon(iface.run)
        return iface

    def _check_new_address(self, address: Any) -> IPv4Interface:
        try:
            iface_address = IPv4Interface(address)
        except (ValueError, TypeError):
            raise ValueError(f"address: {address!r} is not an IPv4 address with prefix "
                             "(e.g. '10.0.0.2/24')") from None
        ip, network = iface_address.ip, iface_address.network
        if ip.is_multicast or ip.is_unspecified or ip == _LIMITED_BROADCAST:
            raise ValueError(f"address: {ip} cannot be a host's address")
        if network.prefixlen < 31 and ip in (network.network_address, network.broadcast_address):
            which = "network" if ip == network.network_address else "broadcast"
            raise ValueError(f"address: {ip} is the {which} address of {network}, not a host on it")
        if self.routing.is_local(ip):
            raise ValueError(f"address: {ip} is already assigned")
        return iface_address

    def _check_mac(self, mac: Any) -> bytes:
        if mac is None:
            return random_local_mac(self._rng)
        if isinstance(mac, str):
            try:
                mac = mac_from_str(mac)
            except ValueError:
                raise ValueError(f"mac: {mac!r} is not 'xx:xx:xx:xx:xx:xx'") from None
        elif not isinstance(mac, (bytes, bytearray)) or len(mac) != 6:
            raise ValueError(f"mac: {mac!r} is not 6 bytes or 'xx:xx:xx:xx:xx:xx'")
        if mac[0] & 1:  # IEEE 802: the group bit marks multicast/broadcast
            raise ValueError(f"mac: {mac_to_str(mac)} is a group address, not a unicast one")
        return bytes(mac)

    def add_route(self, network: Any, *, gateway: Any = None, interface: Interface | None = None,
                  metric: int = 0) -> Route:
        """Route ``network`` via ``gateway`` (or directly on ``interface``)."""
        net = parse_network(network, "network")
        gw = parse_address(gateway, "gateway") if gateway is not None else None
        check_int(metric, "metric", 0)
        if gw is not None and gw.version != net.version:
            raise ValueError(f"gateway: {gw} is not of the same family as {net}")
        if gw is not None and self.routing.is_local(gw):
            raise ValueError(f"gateway: {gw} is one of our own addresses")
        if interface is None:
            if gw is None:
                raise ValueError("add_route needs a gateway or an interface")
            interface = next((i for i in self.interfaces
                              if any(gw in a.network for a in i.addresses)), None)
            if interface is None:
                raise ValueError(f"gateway: {gw} is on no connected network")
        elif interface not in self.interfaces:
            raise ValueError("interface: not an interface of this stack")
        route = Route(net, gw, interface, metric)
        self.routes.add(route)
        self.routing.paths.clear()
        return route

    def _address_changed(self, iface: Interface, entry: InterfaceAddress, added: bool) -> None:
        """An interface's address came or went: its connected route too."""
        routes = self.routes
        if added:
            metric = sum(1 for r in routes if r.network == entry.network)
            routes.add(Route(entry.network, None, iface, metric))
        else:
            for route in list(routes):
                if route.interface is iface and route.gateway is None \
                        and route.network == entry.network:
                    routes.remove(route)
                    break
        self.routing.addresses_changed()

    def _interface_down(self, iface: Interface, exc: BaseException | None) -> None:
        self.routing.paths.clear()
        for handler in self._link_down_handlers:
            handler(iface)

    def _unresolved(self, iface: Interface, packets: list[bytes]) -> None:
        for packet in packets:
            self.icmp.unreachable(packet, UNREACH_HOST)

    # --- tasks -------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run every task of the layer until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._local_task)
            nursery.start_soon(self._timer_task)
            for iface in self.interfaces:
                await nursery.start(iface.run)
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def aclose(self) -> None:
        """Close every link (and the internal loopback)."""
        for iface in self.interfaces:
            await iface.link.aclose()
        await self.local_link.aclose()

    async def _local_task(self) -> None:
        """Deliver packets we sent to ourselves, like Linux's lo device."""
        link = self.local_link
        routing = self.routing
        stats = self.stats
        while True:
            try:
                packets = await link.receive_batch()
            except trio.ClosedResourceError:
                return
            for packet in packets:
                try:
                    dst = IPv4Address(bytes(packet[16:20]))
                    self.ipv4.input(routing.owner(dst) or self.interfaces[0], packet, False, False)
                except WireError as exc:
                    stats.drop(exc.reason)
                except Exception:
                    stats.drop("internal.error")
                    log.exception("error delivering a local packet")

    def _next_timer(self) -> float:
        return self.ipv4.reassembler.next_deadline()

    def _reschedule(self) -> None:
        if self._timer_scope is not None:
            self._timer_scope.deadline = self._next_timer()

    async def _timer_task(self) -> None:
        """Layer-wide timers (IP reassembly) in one cancel scope whose
        deadline moves."""
        while True:
            with trio.CancelScope(deadline=self._next_timer()) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            try:
                self.ipv4.expire(trio.current_time())
            except Exception:  # a bug must not stop the stack's timers
                self.stats.drop("internal.error")
                log.exception("error in the network timers")

    # --- introspection -------------------------------------------------------------

    def resources(self) -> dict[str, int]:
        reassembler = self.ipv4.reassembler
        return {
            "interfaces": len(self.interfaces),
            "routes": len(self.routes),
            "paths_cached": len(self.routing.paths),
            "reassembly_datagrams": len(reassembler),
            "reassembly_bytes": reassembler.bytes_held,
            "pings": self.icmp.pings_in_progress,
            "arp_entries": sum(len(i.arp) for i in self.interfaces),
            "arp_pending": sum(len(i.arp.pending_addresses()) for i in self.interfaces),
            "arp_queue": sum(i.arp_backlog for i in self.interfaces),
            "local_queue": self.local_link.queued,
        }

