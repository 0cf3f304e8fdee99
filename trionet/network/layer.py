"""The network layer: interfaces and their addresses, routes and paths,
IPv4 and IPv6 in and out, ICMP and ICMPv6, and delivery of packets to our
own addresses.

Transports register with it (``register_transport``): an input for their
IP protocol (the same for both families), a handler for the ICMP errors
that quote their datagrams, and one for links that go down. They send
through ``path_to(dst)`` and the path's ``output``.
"""

from __future__ import annotations

import errno
import logging
import random
from collections.abc import Callable
from collections import OrderedDict
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, IPv6Network
from typing import Any

import trio

from ..interface import (AddressState, ArpConfig, AutoconfConfig, Callbacks, Interface,
                         InterfaceAddress, NdpConfig, parse_host_address)
from ..link.base import Link
from ..link.loopback import LoopbackLink
from ..stats import Stats
from ..validate import IPAddress, check_int, check_str, parse_address, parse_network
from ..wire.errors import WireError
from ..wire.ethernet import (ETHERTYPE_IPV4, ETHERTYPE_IPV6, mac_from_str, mac_to_str,
                             random_local_mac)
from ..wire.icmpv4 import ICMP_TIME_EXCEEDED, TIME_EXCEEDED_REASSEMBLY, UNREACH_HOST, UNREACH_PORT
from ..wire.icmpv6 import (ICMPV6_TIME_EXCEEDED, ICMPV6_TIME_EXCEEDED_REASSEMBLY,
                           ICMPV6_UNREACH_ADDRESS, ICMPV6_UNREACH_PORT)
from ..wire.ipv4 import PROTO_ICMP
from ..wire.ipv6 import IPV6_MIN_MTU, PROTO_ICMPV6
from .fragments import Reassembler, ReassemblyConfig
from .icmp import Icmp4, IcmpError
from .icmpv6 import Icmp6
from .ipv4 import Ipv4
from .ipv6 import Ipv6
from .routes import Path, Route, Routing, needs_scope

log = logging.getLogger("trionet.network")

_DEFAULT_V4 = parse_network("0.0.0.0/0")
_DEFAULT_V6 = parse_network("::/0")
#: Host routes that ICMPv6 redirects made (RFC 4861 8.3), oldest dropped first.
MAX_REDIRECT_ROUTES = 256


class NetworkLayer:
    """One stack's network layer. Its tasks (each interface's, local
    delivery, the reassembly timer) run under ``run``."""

    def __init__(self, stats: Stats, rng: random.Random, *, forwarding: bool = False,
                 arp: ArpConfig | None = None, reassembly: ReassemblyConfig | None = None,
                 icmp_error_rate: float = 1000.0, icmp_error_burst: int = 50,
                 ndp: NdpConfig | None = None, autoconf: AutoconfConfig | None = None,
                 secret: bytes = b""):
        self.stats = stats
        self._rng = rng
        self._secret = secret
        self._arp_config = arp
        self._ndp_config = ndp
        self._autoconf_config = autoconf
        #: Carries packets to our own addresses (like Linux's lo).
        self.local_link = LoopbackLink()
        self.routing = Routing(self.local_link.mtu)
        #: IP protocol -> the transport's input(iface, header, payload, raw,
        #: verify, broadcast), for IPv4 and for IPv6.
        self.protocols: dict[int, Callable] = {}
        self.protocols6: dict[int, Callable] = {}
        #: Called with an interface whose link went down.
        self._link_down_handlers: list[Callable[[Interface], None]] = []
        #: Called with an address of ours that was removed.
        self._address_removed_handlers: list[Callable[[Any], None]] = []
        ip_id = rng.randrange(65536)
        self.icmp = Icmp4(stats, self.routing, rate=icmp_error_rate, burst=icmp_error_burst,
                          ping_ident=rng.randrange(65536))
        #: One memory bound for the datagrams of both families (RFC 8200 4.5, RFC 815).
        self.reassembler = Reassembler(reassembly)
        self.ipv4 = Ipv4(stats, self.routing, self.icmp, self.protocols,
                         self.reassembler, self.local_link, forwarding=forwarding,
                         first_id=ip_id, reschedule=self._reschedule)
        self.icmp6 = Icmp6(stats, self.routing, rate=icmp_error_rate, burst=icmp_error_burst,
                           ping_ident=rng.randrange(65536))
        self.ipv6 = Ipv6(stats, self.routing, self.icmp6, self.protocols6, self.reassembler,
                         self.local_link, forwarding=forwarding,
                         first_id=rng.randrange(1 << 32), reschedule=self._reschedule)
        #: Forwarders' handlers by interface, one table for both families.
        self.ipv6.intercepts = self.ipv4.intercepts
        self.routing.canonical = self.canonical
        self.protocols[PROTO_ICMP] = self.icmp.input
        self.protocols6[PROTO_ICMPV6] = self.icmp6.input
        self.routing.outputs[4] = self.ipv4.output
        self.routing.outputs[6] = self.ipv6.output
        self._receivers = {ETHERTYPE_IPV4: self.ipv4.input, ETHERTYPE_IPV6: self.ipv6.input}
        self._callbacks = Callbacks(on_down=self._interface_down,
                                    on_unresolved=self._unresolved,
                                    on_address=self._address_changed,
                                    check_address=self._check_unique,
                                    on_router=self._router_changed,
                                    on_prefix=self._prefix_changed,
                                    on_redirect=self._redirected,
                                    is_router=lambda: self.ipv6.forwarding)
        #: Connected routes: (interface, network) -> route, kept in step with
        #: the addresses and the on-link prefixes routers advertise.
        self._connected: dict[tuple[Interface, Any], Route] = {}
        self._on_link: dict[tuple[Interface, IPv6Network], bool] = {}
        #: Default routes through advertising routers (RFC 4861 6.3.4).
        self._router_routes: dict[tuple[Interface, IPv6Address], Route] = {}
        self._redirect_routes: OrderedDict[IPv6Address, Route] = OrderedDict()
        #: Set (and replaced) whenever an address comes, goes or changes state.
        self._addresses_event = trio.Event()
        self._last_index = 0
        self._nursery: trio.Nursery | None = None
        self._timer_scope: trio.CancelScope | None = None

    # --- what transports use --------------------------------------------------

    def register_transport(self, protocol: int, input: Callable, *,
                           icmp_error: Callable[[IcmpError], bool | None] | None = None,
                           link_down: Callable[[Interface], None] | None = None,
                           address_removed: Callable[[Any], None] | None = None) -> None:
        """A transport of both families (TCP and UDP have the same protocol
        number in IPv4 and IPv6). ``icmp_error`` returns False when it finds
        the quoted packet not one of its own (then a Packet Too Big changes
        nothing). ``address_removed(ip)``: one of our addresses went (a DHCP
        lease lost, ``remove_address``): what used it must end."""
        self.protocols[protocol] = input
        self.protocols6[protocol] = input
        if icmp_error is not None:
            self.icmp.error_handlers[protocol] = icmp_error
            self.icmp6.error_handlers[protocol] = icmp_error
        if link_down is not None:
            self._link_down_handlers.append(link_down)
        if address_removed is not None:
            self._address_removed_handlers.append(address_removed)

    def intercept(self, iface: Interface, protocol: int, handler: Callable[..., bool]) -> None:
        """Packets of ``protocol`` to addresses that are not ours, arriving
        on ``iface``, go to ``handler(iface, header, payload, raw, verify)``
        instead of being forwarded or dropped (a forwarder: the transport
        answers as if the destination were ours, as gVisor's
        tcp.Forwarder). It returns False for one it does not take, which
        then goes on as without it. Our own addresses are not affected."""
        self.ipv4.intercepts.setdefault(iface, {})[protocol] = handler

    def release(self, iface: Interface, protocol: int) -> None:
        """Undo ``intercept``."""
        table = self.ipv4.intercepts.get(iface)
        if table is not None:
            table.pop(protocol, None)
            if not table:
                del self.ipv4.intercepts[iface]

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
        self.ipv6.forwarding = value

    def path_to(self, dst: IPAddress) -> Path:
        """The interface, next hop and source address for ``dst``;
        OSError(ENETUNREACH) when no route leads there."""
        return self.routing.path_to(dst)

    async def ready_path_to(self, dst: IPAddress) -> Path:
        """``path_to(dst)``, first waiting (at most until duplicate address
        detection ends) while an IPv6 address that could serve is still
        tentative (RFC 4862 5.4: not used until then). OSError
        (EADDRNOTAVAIL) if that address turned out to be another node's."""
        while True:
            try:
                return self.routing.path_to(dst)
            except OSError as exc:
                if dst.version != 6:
                    raise
                waiting = [a for i in self.interfaces for a in i.addresses
                           if a.version == 6 and a.state is AddressState.TENTATIVE]
                if not waiting:
                    duplicate = [a for i in self.interfaces for a in i.addresses
                                 if a.state is AddressState.DUPLICATE]
                    if duplicate and exc.errno == errno.ENETUNREACH:
                        raise OSError(errno.EADDRNOTAVAIL, f"no address to reach {dst} from: "
                                      f"{duplicate[0].interface} is in use by another node "
                                      "(duplicate address detection)") from None
                    raise
                await self._addresses_event.wait()

    def canonical(self, address: IPAddress) -> IPAddress:
        """The object IPv6 input makes for ``address`` (the same each time,
        for an address without scope): keys made from it match received
        packets' addresses by identity, the fast way."""
        if address.version == 6 and address.scope_id is None:
            return self.ipv6.intern(address.packed)
        return address

    def interface_index(self, name: str) -> int:
        """An interface's index (as if_nametoindex; 0 for no such interface)."""
        iface = self.routing.interface_named(name)
        return iface.index if iface is not None else 0

    def interface_name(self, index: int) -> str | None:
        """The name of the interface with ``index`` (as if_indextoname)."""
        return next((i.name for i in self.interfaces if i.index == index), None)

    def scoped(self, address: IPAddress, interface: Interface | None = None) -> IPAddress:
        """An IPv6 link-local ``address`` with its interface as scope
        ("fe80::1%eth0"): ``interface``'s, or the only IPv6 interface's."""
        return self.routing.scoped(address, interface)

    def is_local_address(self, address: IPAddress) -> bool:
        return self.routing.is_local(address)

    def bind_address(self, value: Any, what: str, *, v6only: bool = False) -> IPAddress | None:
        """The address a socket binds to: None for every address of the
        stack (None or "::", as a BSD socket without IPV6_V6ONLY), the
        family's wildcard for "0.0.0.0" (every IPv4 address) and, with
        ``v6only``, for "::"; else one of ours (a link-local one with its
        scope); OSError(EADDRNOTAVAIL) for any other."""
        if value is None:
            return None
        address = self.routing.scoped(parse_address(value, what))
        if address.is_unspecified:
            if address.version == 4:
                return IPv4Address(0)
            return IPv6Address(0) if v6only else None
        if not self.routing.is_local(address) and not self._is_tentative(address):
            raise OSError(errno.EADDRNOTAVAIL, f"{address} is not an address of this stack")
        return address

    def _is_tentative(self, address: IPAddress) -> bool:
        """One of ours still under duplicate address detection (a socket
        may bind to it: it receives once the address is preferred)."""
        return any(entry.ip == address and entry.state is AddressState.TENTATIVE
                   for iface in self.interfaces for entry in iface.addresses)

    def send(self, path: Path, src: IPAddress, dst: IPAddress, protocol: int, payload: bytes,
             **options) -> None:
        """Send one datagram along ``path`` (see ``Ipv4.output``)."""
        path.output(path, src, dst, protocol, payload, **options)

    def port_unreachable(self, raw, iface: Interface | None = None) -> None:
        """Answer a datagram that reached no socket (RFC 1122 4.1.3.1, RFC
        4443 3.1 code 4)."""
        if raw[0] >> 4 == 6:
            self.icmp6.unreachable(raw, ICMPV6_UNREACH_PORT, iface)
        else:
            self.icmp.unreachable(raw, UNREACH_PORT)

    async def ping(self, dst: IPAddress, size: int, timeout: float, ttl: int = 64) -> float:
        if dst.version == 6:
            dst = self.routing.scoped(dst)
            path = await self.ready_path_to(dst)
            return await self.icmp6.ping(path, dst, size, timeout, ttl)
        return await self.icmp.ping(self.path_to(dst), dst, size, timeout, ttl)

    # --- configuration ----------------------------------------------------------

    def add_interface(self, link: Link, address: Any = None, *, gateway: Any = None,
                      mac: bytes | str | None = None, name: str | None = None) -> Interface:
        """Attach ``link`` with ``address`` ("10.0.0.2/24" or "fd00::2/64";
        None: none yet); a connected route to its network is added, and a
        default route via ``gateway`` if given (an IPv6 router is usually
        link-local: "fe80::1"). An Ethernet link also gets an IPv6
        link-local address and listens to router advertisements. Every
        argument is checked before anything changes."""
        if not isinstance(link, Link):
            raise TypeError(f"link must be a trionet.link.Link, not {type(link).__name__}")
        iface_address = self._check_new_address(address, isinstance(link, LoopbackLink)) \
            if address is not None else None
        if any(i.link is link for i in self.interfaces):
            raise ValueError("link: already attached to an interface of this stack")
        if name is not None:
            check_str(name, "name")
            if self.routing.interface_named(name) is not None:
                raise ValueError(f"name: the stack has an interface {name!r} already")
        name = name or self._free_name()
        gw = self._check_gateway(gateway, iface_address, name) if gateway is not None else None
        mac = self._check_mac(mac)
        version = iface_address.version if iface_address is not None else 4
        if link.mtu < 68 or (version == 6 and link.mtu < IPV6_MIN_MTU):
            # RFC 791: every host handles 68-byte datagrams; RFC 8200 5: IPv6 needs 1280.
            raise ValueError(f"link mtu {link.mtu} is below the IPv{version} minimum of "
                             f"{68 if version == 4 else IPV6_MIN_MTU}")
        iface = Interface(link, mac, name, stats=self.stats, receivers=self._receivers,
                          callbacks=self._callbacks, arp_config=self._arp_config,
                          rng=self._rng if link.mtu >= IPV6_MIN_MTU else None,
                          secret=self._secret, ndp_config=self._ndp_config,
                          autoconf_config=self._autoconf_config)
        self._last_index += 1
        iface.index = self._last_index  # never reused, as Linux's ifindex
        self.interfaces.append(iface)
        if iface_address is not None:
            iface.add_address(iface_address)
        if gw is not None:
            self._add_default_route(gw, iface)
        if self._nursery is not None:
            self._nursery.start_soon(iface.run)
        return iface

    def _free_name(self) -> str:
        n = len(self.interfaces)
        while self.routing.interface_named(f"eth{n}") is not None:
            n += 1
        return f"eth{n}"

    def _check_gateway(self, gateway: Any, address, iface_name: str) -> IPAddress:
        gw = parse_address(gateway, "gateway")
        if gw.version == 6 and needs_scope(gw):
            if gw.is_multicast:
                raise ValueError(f"gateway: {gw} is a multicast address")
            # A link-local router is on this interface's link by definition.
            return IPv6Address(f"{IPv6Address(int(gw))}%{iface_name}")
        if address is None or gw.version != address.version or gw not in address.network \
                or gw == address.ip:
            where = address.network if address is not None and gw.version == address.version \
                else "this interface's networks"
            raise ValueError(f"gateway: {gw} is not another host on {where}")
        return gw

    def _add_default_route(self, gateway: IPAddress, iface: Interface) -> Route:
        default = _DEFAULT_V4 if gateway.version == 4 else _DEFAULT_V6
        return self.add_route(default, gateway=gateway, interface=iface,
                              metric=self._free_metric(default))

    def _free_metric(self, network) -> int:
        used = {r.metric for r in self.routes if r.network == network}
        metric = 0
        while metric in used:
            metric += 1
        return metric

    def _check_new_address(self, address: Any, loopback_link: bool) -> IPv4Interface | IPv6Interface:
        parsed = parse_host_address(address, loopback_link=loopback_link)
        self._check_unique(None, parsed)
        return parsed

    def _check_unique(self, iface: Interface | None, address) -> None:
        """ValueError if the stack holds ``address`` (a link-local one: on
        ``iface``, since other links may use the same)."""
        ip = address.ip
        link_local = ip.version == 6 and needs_scope(ip)
        for other in self.interfaces:
            if link_local and other is not iface:
                continue
            if any(entry.interface.ip == ip for entry in other.addresses):
                raise ValueError(f"address: {ip} is already assigned")

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
        """Route ``network`` via ``gateway`` (or directly on ``interface``).
        A link-local IPv6 gateway needs its interface: ``interface=`` or a
        scope ("fe80::1%eth0")."""
        net = parse_network(network, "network")
        gw = parse_address(gateway, "gateway") if gateway is not None else None
        check_int(metric, "metric", 0)
        if gw is not None and gw.version != net.version:
            raise ValueError(f"gateway: {gw} is not of the same family as {net}")
        if interface is not None and interface not in self.interfaces:
            raise ValueError("interface: not an interface of this stack")
        if gw is not None and gw.version == 6 and needs_scope(gw):
            if gw.is_multicast:
                raise ValueError(f"gateway: {gw} is a multicast address")
            if interface is None:
                interface = self.routing.interface_named(gw.scope_id)
                if interface is None:
                    raise ValueError(f"gateway: {gw} is link-local: give its interface "
                                     "(interface= or a scope, as 'fe80::1%eth0')")
            elif gw.scope_id not in (None, interface.name):
                raise ValueError(f"gateway: {gw} is scoped to another interface than "
                                 f"{interface.name}")
            gw = IPv6Address(f"{IPv6Address(int(gw))}%{interface.name}")
        if gw is not None and self.routing.is_local(gw):
            raise ValueError(f"gateway: {gw} is one of our own addresses")
        if interface is None:
            if gw is None:
                raise ValueError("add_route needs a gateway or an interface")
            interface = next((i for i in self.interfaces
                              if any(gw in a.network for a in i.addresses)), None)
            if interface is None:
                raise ValueError(f"gateway: {gw} is on no connected network")
        route = Route(net, gw, interface, metric)
        self.routes.add(route)
        self.routing.paths.clear()
        return route

    # --- what interfaces tell -------------------------------------------------------

    def _address_changed(self, iface: Interface, entry: InterfaceAddress, added: bool) -> None:
        """An interface's address came, changed state or went: the connected
        routes follow, and so do waiters for a usable address."""
        self._sync_connected_routes()
        self.routing.addresses_changed()
        self._addresses_event.set()
        self._addresses_event = trio.Event()
        if not added and not self.routing.is_local(self.canonical(entry.ip)):
            for handler in self._address_removed_handlers:
                handler(self.canonical(entry.ip))

    def _sync_connected_routes(self) -> None:
        """One route per (interface, network) of its addresses (but not
        duplicate ones, nor link-local, reached by scope) and of the
        prefixes advertised on-link (RFC 4861 6.3.4)."""
        wanted: dict[tuple[Interface, Any], None] = {}
        for iface in self.interfaces:
            for entry in iface.addresses:
                if entry.state is AddressState.DUPLICATE or entry.origin == "slaac":
                    continue  # a SLAAC prefix is on-link only if its L flag says so (RFC 5942 4)
                if entry.version == 6 and needs_scope(entry.interface.ip):
                    continue
                wanted[(iface, entry.network)] = None
        for key in self._on_link:
            wanted[key] = None
        routes = self.routes
        for key, route in list(self._connected.items()):
            if key not in wanted:
                del self._connected[key]
                if route in routes:
                    routes.remove(route)
        for key in wanted:
            if key not in self._connected:
                iface, network = key
                route = Route(network, None, iface, self._free_metric(network))
                routes.add(route)
                self._connected[key] = route
        self.routing.paths.clear()

    def _router_changed(self, iface: Interface, router: IPv6Address,
                        lifetime: float | None) -> None:
        """A default router came (with its lifetime) or went (None): RFC
        4861 6.3.4."""
        router = IPv6Address(f"{IPv6Address(int(router))}%{iface.name}")
        key = (iface, router)
        route = self._router_routes.pop(key, None)
        if route is not None and route in self.routes:
            self.routes.remove(route)
        if lifetime is not None and lifetime > 0:
            route = Route(_DEFAULT_V6, router, iface, self._free_metric(_DEFAULT_V6))
            self.routes.add(route)
            self._router_routes[key] = route
        self.routing.paths.clear()

    def _prefix_changed(self, iface: Interface, network: IPv6Network, on_link: bool) -> None:
        if on_link:
            self._on_link[(iface, network)] = True
        else:
            self._on_link.pop((iface, network), None)
        self._sync_connected_routes()

    def _redirected(self, iface: Interface, destination: IPv6Address, target: IPv6Address,
                    source: IPv6Address) -> bool:
        """RFC 4861 8.3: ``destination`` is reached through ``target`` (or is
        on-link, when they are the same): a host route, bounded in number.
        Taken only from ``source`` = the current first hop toward
        ``destination`` on this interface (8.1); False otherwise."""
        destination = IPv6Address(int(destination))
        if needs_scope(destination) or destination.is_multicast:
            return False
        if int(target) != int(destination) and int(target) >> 118 != 0x3FA:
            return False  # 8.1: a router's target is link-local
        try:
            path = self.routing.path_to(destination)
        except OSError:
            return False
        if path.interface is not iface or path.local or int(path.next_hop) != int(source) \
                or int(path.next_hop) == int(destination):
            return False
        old = self._redirect_routes.pop(destination, None)
        if old is not None and old in self.routes:
            self.routes.remove(old)
        gateway = None if int(target) == int(destination) else \
            IPv6Address(f"{IPv6Address(int(target))}%{iface.name}")
        network = parse_network(f"{destination}/128")
        route = Route(network, gateway, iface, self._free_metric(network))
        self.routes.add(route)
        self._redirect_routes[destination] = route
        while len(self._redirect_routes) > MAX_REDIRECT_ROUTES:
            _, oldest = self._redirect_routes.popitem(last=False)
            if oldest in self.routes:
                self.routes.remove(oldest)
        self.stats["ipv6.redirect_routes"] += 1
        self.routing.paths.clear()
        return True

    def _interface_down(self, iface: Interface, exc: BaseException | None) -> None:
        self.routing.paths.clear()
        for handler in self._link_down_handlers:
            handler(iface)

    def _unresolved(self, iface: Interface, packets: list[bytes]) -> None:
        """Packets whose next hop never answered: host unreachable (RFC 1812
        4.3.3.1) or address unreachable (RFC 4861 7.2.2, RFC 4443 3.1)."""
        self.routing.paths.clear()  # a router that stopped answering is chosen no more
        for packet in packets:
            if packet[0] >> 4 == 6:
                self.icmp6.unreachable(packet, ICMPV6_UNREACH_ADDRESS, iface)
            else:
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
                    if packet[0] >> 4 == 6:
                        self.ipv6.input(self._local_owner6(packet), packet, False, False)
                        continue
                    dst = IPv4Address(bytes(packet[16:20]))
                    self.ipv4.input(routing.owner(dst) or self.interfaces[0], packet, False, False)
                except WireError as exc:
                    stats.drop(exc.reason)
                except Exception:
                    stats.drop("internal.error")
                    log.exception("error delivering a local packet")

    def _local_owner6(self, packet) -> Interface:
        """The interface holding an IPv6 packet's destination: the packet
        lost its scope on the way through the internal loopback."""
        dst = int.from_bytes(packet[24:40], "big")
        for iface in self.interfaces:
            if any(int(entry.interface.ip) == dst for entry in iface.addresses):
                return iface
        raise WireError("ipv6.not_for_us")

    def _next_timer(self) -> float:
        return min(self.reassembler.next_deadline(), self.routing.next_pmtu_expiry())

    def _expire(self, now: float) -> None:
        """Reassembly timeouts (RFC 792 / RFC 1122 3.3.2 and RFC 8200 4.5:
        time exceeded, code 1, only with the first fragment) and learned
        path MTUs that are due to be tried again (RFC 8201 4)."""
        reassembler = self.reassembler
        total, ipv6 = reassembler.timed_out, reassembler.timed_out_ipv6
        quotes = reassembler.expire(now)
        ipv6 = reassembler.timed_out_ipv6 - ipv6
        self.stats["drop.ipv4.reassembly_timeout"] += reassembler.timed_out - total - ipv6
        self.stats["drop.ipv6.reassembly_timeout"] += ipv6
        for first_fragment in quotes:
            if first_fragment[0] >> 4 == 6:
                self.icmp6.error(first_fragment, ICMPV6_TIME_EXCEEDED,
                                 ICMPV6_TIME_EXCEEDED_REASSEMBLY)
            else:
                self.icmp.error(first_fragment, ICMP_TIME_EXCEEDED, TIME_EXCEEDED_REASSEMBLY)
        self.routing.expire_path_mtus(now)

    def _reschedule(self) -> None:
        if self._timer_scope is not None:
            self._timer_scope.deadline = self._next_timer()

    async def _timer_task(self) -> None:
        """Layer-wide timers (IP reassembly, path MTU expiry) in one cancel
        scope whose deadline moves."""
        while True:
            with trio.CancelScope(deadline=self._next_timer()) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            try:
                self._expire(trio.current_time())
            except Exception:  # a bug must not stop the stack's timers
                self.stats.drop("internal.error")
                log.exception("error in the network timers")

    # --- introspection -------------------------------------------------------------

    def resources(self) -> dict[str, int]:
        reassembler = self.reassembler
        neighbours = [i.ipv6.neighbours for i in self.interfaces if i.ipv6 is not None]
        return {
            "interfaces": len(self.interfaces),
            "routes": len(self.routes),
            "paths_cached": len(self.routing.paths),
            "reassembly_datagrams": len(reassembler),
            "reassembly_bytes": reassembler.bytes_held,
            "pings": self.icmp.pings_in_progress + self.icmp6.pings_in_progress,
            "arp_entries": sum(len(i.arp) for i in self.interfaces),
            "arp_pending": sum(len(i.arp.pending_addresses()) for i in self.interfaces),
            "arp_queue": sum(i.arp_backlog for i in self.interfaces),
            "nd_entries": sum(len(n) for n in neighbours),
            "nd_pending": sum(len(n.pending_addresses()) for n in neighbours),
            "redirect_routes": len(self._redirect_routes),
            "local_queue": self.local_link.queued,
        }

