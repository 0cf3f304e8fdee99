"""IPv6 on one Ethernet interface: the I/O and the task around Neighbor
Discovery (``ndp.NeighbourCache``, RFC 4861) and address autoconfiguration
(``autoconf.AddressConfigurator``, RFC 4862), multicast groups and MLDv2
reports (RFC 3810).

ND messages arrive from the network layer (ICMPv6) by plain calls; the
timers of both machines are one cancel scope whose deadline moves, in a
task of their own (as the ARP resolver's). ND packets are link-scoped:
built here and written to the link directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Interface

import trio

from ..stats import Stats
from ..wire.errors import WireError
from ..wire.ethernet import ETHERTYPE_IPV6, build_ethernet
from ..wire.icmpv6 import (ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION,
                           ICMPV6_REDIRECT, ICMPV6_ROUTER_ADVERTISEMENT,
                           ICMPV6_ROUTER_SOLICITATION, IPV6_ALL_MLDV2_ROUTERS, IPV6_ALL_NODES,
                           IPV6_ALL_ROUTERS, MLD_CHANGE_TO_EXCLUDE, MLD_CHANGE_TO_INCLUDE,
                           MLD_MODE_IS_EXCLUDE, MldRecord, NeighborAdvertisement,
                           NeighborSolicitation, RouterSolicitation, build_mldv2_report,
                           build_neighbor_advertisement, build_neighbor_solicitation,
                           build_router_solicitation, multicast_mac, parse_mld_query,
                           parse_neighbor_advertisement, parse_neighbor_solicitation,
                           parse_redirect, parse_router_advertisement, solicited_node_address)
from ..wire.ipv6 import NH_HOPOPTS, PROTO_ICMPV6, build_ipv6_plain, build_router_alert_header
from .addresses import AddressState, InterfaceAddress
from .autoconf import (AddressChanged, AddressConfigurator, AutoconfConfig, DnsServers,
                       LinkParameters, PrefixChanged, Refused, RouterChanged,
                       SendDadSolicitation, SendRouterSolicitation)
from .ndp import NdpConfig, NeighbourCache

log = logging.getLogger("trionet.interface")

_UNSPECIFIED = IPv6Address(0)
_ORIGINS = {"LINK_LOCAL": "link-local", "STATIC": "static", "SLAAC": "slaac"}


def unscoped(address: IPv6Address) -> IPv6Address:
    return IPv6Address(int(address)) if address.scope_id is not None else address


class Ipv6Neighbours:
    """IPv6 neighbour discovery and address configuration of one interface.

    Handed what it needs by the interface: its ``link``, ``mac``, ``name``
    and ``stats``, ``addresses`` (the interface's list, which this keeps
    for the IPv6 entries), and callbacks: ``on_address(entry, added)``
    (also for a state change), ``on_router(router, lifetime or None)``,
    ``on_prefix(network, on_link)``, ``on_redirect(destination, target,
    source)`` (True if taken: ``source`` is the destination's first hop),
    ``on_unresolved(packets)``; ``is_router()`` says whether the stack
    forwards (the R flag of our advertisements)."""

    def __init__(self, *, link, mac: bytes, name: str, stats: Stats,
                 addresses: list[InterfaceAddress], accept_macs: set[bytes], rng, secret: bytes,
                 on_address: Callable, on_router: Callable, on_prefix: Callable,
                 on_redirect: Callable, on_unresolved: Callable, is_router: Callable,
                 ndp: NdpConfig | None = None, autoconf: AutoconfConfig | None = None):
        self.link = link
        self.mac = mac
        self.name = name
        self.stats = stats
        self.addresses = addresses
        #: The interface's filter: group MACs whose frames it takes.
        self.accept_macs = accept_macs
        self._on_address = on_address
        self._on_router = on_router
        self._on_prefix = on_prefix
        self._on_redirect = on_redirect
        self._on_unresolved = on_unresolved
        self._is_router = is_router
        self._rng = rng
        self.neighbours = NeighbourCache(ndp or NdpConfig(), rng)
        self.autoconf = AddressConfigurator(mac, autoconf or AutoconfConfig(), rng, secret,
                                            link_mtu=link.mtu)
        #: Groups joined (as ints): all-nodes, the solicited-node group of
        #: each address.
        self.groups: dict[int, IPv6Address] = {int(IPV6_ALL_NODES): IPV6_ALL_NODES}
        accept_macs.add(multicast_mac(IPV6_ALL_NODES))
        #: What routers told us (RFC 4861 6.3.4): MTU, hop limit, DNS servers.
        self.mtu = link.mtu
        self.hop_limit = 64
        self.dns_servers: tuple[tuple[IPv6Address, float], ...] = ()
        #: State-change reports due again: (when, records), RFC 3810 6.1.
        self._mld_repeats: list[tuple[float, list[MldRecord]]] = []
        self._scope: trio.CancelScope | None = None

    # --- multicast --------------------------------------------------------------

    def in_group(self, group: IPv6Address) -> bool:
        return int(group) in self.groups

    def join(self, group: IPv6Address) -> None:
        """Receive ``group`` and tell snooping switches (MLDv2, RFC 3810 6.1)."""
        group = unscoped(group)
        if int(group) in self.groups:
            return
        self.groups[int(group)] = group
        self.accept_macs.add(multicast_mac(group))
        self._state_change([MldRecord(MLD_CHANGE_TO_EXCLUDE, group)])

    def leave(self, group: IPv6Address) -> None:
        group = unscoped(group)
        if self.groups.pop(int(group), None) is not None:
            mac = multicast_mac(group)
            if all(multicast_mac(g) != mac for g in self.groups.values()):
                self.accept_macs.discard(mac)
            self._state_change([MldRecord(MLD_CHANGE_TO_INCLUDE, group)])

    def _state_change(self, records: list[MldRecord]) -> None:
        """RFC 3810 6.1: a state-change report now, and once more (Robustness
        Variable 2) at a random time within the Unsolicited Report Interval
        (1 s)."""
        if all(r.multicast_address == IPV6_ALL_NODES for r in records):
            return
        self._report(records)
        self._mld_repeats.append((trio.current_time() + self._rng.uniform(0.0, 1.0), records))
        self._reschedule()

    def mld_query(self, msg, header) -> None:
        """RFC 3810 6.2: answer a query with the state of our groups (at once:
        a report within the maximum response delay)."""
        query = parse_mld_query(msg)
        groups = [g for g in self.groups.values() if g != IPV6_ALL_NODES and (
            query.multicast_address.is_unspecified or g == query.multicast_address)]
        if groups:
            self._report([MldRecord(MLD_MODE_IS_EXCLUDE, g) for g in groups])

    def _report(self, records: list[MldRecord]) -> None:
        records = [r for r in records if r.multicast_address != IPV6_ALL_NODES]  # RFC 3810 6
        if not records:
            return
        # RFC 3810 5.2.13: from the link-local address, or :: while it is tentative.
        source = self._usable_link_local() or _UNSPECIFIED
        report = build_mldv2_report(records, source)
        packet = build_ipv6_plain(source, IPV6_ALL_MLDV2_ROUTERS, NH_HOPOPTS,
                                  build_router_alert_header(PROTO_ICMPV6) + report, hop_limit=1)
        self._send(packet, multicast_mac(IPV6_ALL_MLDV2_ROUTERS))
        self.stats["mld.tx_report"] += 1

    # --- sending -------------------------------------------------------------------

    def _send(self, packet: bytes, dst_mac: bytes) -> None:
        self.link.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV6, packet))

    def _send_nd(self, message: bytes, src: IPv6Address, dst: IPv6Address, dst_mac: bytes) -> None:
        # RFC 4861 6.1.2, 7.1: ND messages travel with hop limit 255.
        self._send(build_ipv6_plain(unscoped(src), unscoped(dst), PROTO_ICMPV6, message,
                                    hop_limit=255), dst_mac)

    def _usable_link_local(self) -> IPv6Address | None:
        for entry in self.addresses:
            if entry.origin == "link-local" and entry.usable:
                return entry.interface.ip
        return None

    def _solicit(self, target: IPv6Address, dst_mac: bytes | None, source) -> None:
        """A neighbour solicitation for ``target``: multicast to its
        solicited-node group, or unicast to ``dst_mac`` (a NUD probe)."""
        target = unscoped(target)
        if source is None:
            self.stats.drop("ndp.no_source_address")
            return
        if dst_mac is None:
            dst = solicited_node_address(target)
            dst_mac = multicast_mac(dst)
        else:
            dst = target
        message = build_neighbor_solicitation(NeighborSolicitation(target, self.mac),
                                              unscoped(source), dst)
        self._send_nd(message, source, dst, dst_mac)
        self.stats["ndp.tx_solicitation"] += 1

    def _solicit_source(self, packet: bytes | None = None) -> IPv6Address | None:
        """RFC 4861 7.2.2: the waiting packet's source if it is ours, else
        our link-local address."""
        if packet is not None and len(packet) >= 24:
            candidate = IPv6Address(packet[8:24])
            if any(e.interface.ip == candidate and e.usable for e in self.addresses):
                return candidate
        link_local = self._usable_link_local()
        if link_local is not None:
            return link_local
        return next((e.interface.ip for e in self.addresses
                     if e.version == 6 and e.usable), None)

    # --- resolving next hops ----------------------------------------------------------

    def lookup(self, next_hop: IPv6Address) -> bytes | None:
        """The MAC for ``next_hop`` if known (RFC 4861 7.3.3: a STALE entry
        used goes to DELAY); nothing is sent or queued."""
        mac, moved = self.neighbours.lookup(unscoped(next_hop), trio.current_time())
        if moved:
            self._reschedule()
        return mac

    def resolve(self, next_hop: IPv6Address, packet: bytes) -> bytes | None:
        """The MAC for ``next_hop``; None when the packet waits for a
        solicitation's answer (or was dropped, counted)."""
        target = unscoped(next_hop)
        now = trio.current_time()
        cache = self.neighbours
        mac, moved = cache.lookup(target, now)
        if mac is not None:
            if moved:
                self._reschedule()
            return mac
        dropped = cache.dropped_packets
        queued = cache.enqueue(target, packet, now)
        if queued is None:
            self.stats.drop("ndp.too_many_pending")
        elif cache.dropped_packets != dropped:
            self.stats.drop("ndp.queue_overflow")
        if queued:
            self._solicit(target, None, self._solicit_source(packet))
            self._reschedule()
        return None

    def confirm(self, neighbour: IPv6Address) -> None:
        """Upper-layer reachability confirmation (RFC 4861 7.3.1)."""
        self.neighbours.confirm(unscoped(neighbour), trio.current_time())

    # --- ND input -----------------------------------------------------------------------

    def nd_input(self, msg, header) -> None:
        kind = msg.type
        if kind == ICMPV6_NEIGHBOR_SOLICITATION:
            self._on_solicitation(parse_neighbor_solicitation(msg), header)
        elif kind == ICMPV6_NEIGHBOR_ADVERTISEMENT:
            self._on_advertisement(parse_neighbor_advertisement(msg), header)
        elif kind == ICMPV6_ROUTER_ADVERTISEMENT:
            self._on_router_advertisement(msg, header)
        elif kind == ICMPV6_REDIRECT:
            self._on_redirect_message(msg, header)
        elif kind == ICMPV6_ROUTER_SOLICITATION:
            self.stats["ndp.ignored_router_solicitation"] += 1  # we are no router
        self._reschedule()

    def _ours(self, target: IPv6Address) -> InterfaceAddress | None:
        for entry in self.addresses:
            if entry.version == 6 and entry.interface.ip == target:
                return entry
        return None

    def _on_solicitation(self, ns: NeighborSolicitation, header) -> None:
        """RFC 4861 7.2.3; RFC 4862 5.4.3 for solicitations from ::."""
        stats = self.stats
        stats["ndp.rx_solicitation"] += 1
        target = ns.target
        entry = self._ours(target)
        if entry is None or entry.state is AddressState.DUPLICATE:
            raise WireError("ndp.not_our_target")  # answer only for our own addresses
        src = header.src
        now = trio.current_time()
        if src.is_unspecified:
            if not header.dst.is_multicast or ns.source_lladdr is not None:
                raise WireError("ndp.bad_dad_solicitation")  # RFC 4861 7.1.1
            if entry.state is AddressState.TENTATIVE:
                # Someone else is trying our tentative address too (RFC 4862 5.4.3).
                self._handle(self.autoconf.on_dad_conflict(target, now))
                return
            # Defend an address in use: advertise to all nodes (RFC 4861 7.2.4).
            self._advertise(target, IPV6_ALL_NODES, multicast_mac(IPV6_ALL_NODES),
                            solicited=False)
            return
        if entry.state is AddressState.TENTATIVE:
            raise WireError("ndp.target_tentative")  # RFC 4862 5.4.3: not answered
        mac = ns.source_lladdr
        if mac is not None:
            for packet in self.neighbours.on_solicitation(unscoped(src), mac, now):
                self._send(packet, mac)
        else:
            mac = self.neighbours.lookup(unscoped(src), now)[0]
            if mac is None:
                raise WireError("ndp.no_source_lladdr")
        self._advertise(target, src, mac, solicited=True)

    def _advertise(self, target: IPv6Address, dst: IPv6Address, dst_mac: bytes, *,
                   solicited: bool) -> None:
        na = NeighborAdvertisement(target, router=self._is_router(), solicited=solicited,
                                   override=True, target_lladdr=self.mac)
        source = target  # RFC 4861 7.2.4: from the target address
        self._send_nd(build_neighbor_advertisement(na, source, unscoped(dst)), source, dst,
                      dst_mac)
        self.stats["ndp.tx_advertisement"] += 1

    def _on_advertisement(self, na: NeighborAdvertisement, header) -> None:
        """RFC 4861 7.2.5; RFC 4862 5.4.4 for a tentative target."""
        self.stats["ndp.rx_advertisement"] += 1
        now = trio.current_time()
        entry = self._ours(na.target)
        if entry is not None:
            if entry.state is AddressState.TENTATIVE:
                self._handle(self.autoconf.on_dad_conflict(na.target, now))
                return
            log.warning("%s: %s claims our address %s", self.name,
                        na.target_lladdr.hex(":") if na.target_lladdr else "a neighbour",
                        na.target)
            raise WireError("ndp.address_conflict")
        if header.dst.is_multicast and na.solicited:
            raise WireError("ndp.bad_advertisement")  # RFC 4861 7.1.2
        flushed = self.neighbours.on_advertisement(
            na.target, na.target_lladdr, solicited=na.solicited, override=na.override,
            router=na.router, now=now)
        mac = na.target_lladdr or self.neighbours.lookup(na.target, now)[0]
        for packet in flushed:
            self._send(packet, mac)
        for router in self.neighbours.pop_routers_lost():
            self._handle(self.autoconf.remove_router(router, now))

    def _on_router_advertisement(self, msg, header) -> None:
        self.stats["ndp.rx_router_advertisement"] += 1
        src = unscoped(header.src)
        if (int(src) >> 118) != 0x3FA:
            raise WireError("ndp.router_not_link_local")  # RFC 4861 6.1.2
        ra = parse_router_advertisement(msg)
        now = trio.current_time()
        for packet in self.neighbours.on_router(src, ra.source_lladdr, now):
            self._send(packet, ra.source_lladdr)
        if self._is_router():
            # A router configures itself; others' advertisements do not (as
            # Linux with forwarding on and accept_ra=1; RFC 4861 6.2.7).
            self.stats["ndp.ra_ignored_as_router"] += 1
            self._reschedule()
            return
        self._handle(self.autoconf.on_router_advertisement(ra, src, now))

    def _on_redirect_message(self, msg, header) -> None:
        """RFC 4861 8.1: only from the router we use for the destination."""
        redirect = parse_redirect(msg)
        src = unscoped(header.src)
        if (int(src) >> 118) != 0x3FA:
            raise WireError("ndp.redirect_not_link_local")  # RFC 4861 8.1
        if not self._on_redirect(redirect.destination, redirect.target, src):
            raise WireError("ndp.redirect_not_from_router")
        self.stats["ndp.rx_redirect"] += 1
        waiting = self.neighbours.on_redirect(redirect.target, redirect.target_lladdr,
                                              redirect.target != redirect.destination,
                                              trio.current_time())
        for packet in waiting:
            self._send(packet, redirect.target_lladdr)
        self._reschedule()

    # --- addresses -------------------------------------------------------------------

    def start(self) -> None:
        """The link-local address and router solicitation (RFC 4862 5.3, RFC
        4861 6.3.7)."""
        self._handle(self.autoconf.start(trio.current_time()))

    def add_address(self, address: IPv6Interface) -> None:
        """A static address: tentative until DAD passes."""
        self._handle(self.autoconf.add_address(address, trio.current_time()))

    def remove_address(self, address: IPv6Address) -> None:
        self._handle(self.autoconf.remove_address(unscoped(address), trio.current_time()))

    def _entry(self, address: IPv6Interface) -> InterfaceAddress | None:
        for entry in self.addresses:
            if entry.interface == address:
                return entry
        return None

    def _handle(self, events) -> None:
        """Carry out what the address configurator decided."""
        for event in events:
            if isinstance(event, AddressChanged):
                self._address_changed(event)
            elif isinstance(event, SendDadSolicitation):
                self.join(solicited_node_address(event.target))
                message = build_neighbor_solicitation(NeighborSolicitation(event.target),
                                                      _UNSPECIFIED)
                group = solicited_node_address(event.target)
                self._send_nd(message, _UNSPECIFIED, group, multicast_mac(group))
                self.stats["ndp.tx_dad"] += 1
            elif isinstance(event, SendRouterSolicitation):
                if self._is_router():
                    continue  # RFC 4861 6.3.7 is for hosts
                lladdr = None if event.source.is_unspecified else self.mac
                message = build_router_solicitation(RouterSolicitation(lladdr), event.source)
                self._send_nd(message, event.source, IPV6_ALL_ROUTERS,
                              multicast_mac(IPV6_ALL_ROUTERS))
                self.stats["ndp.tx_router_solicitation"] += 1
            elif isinstance(event, RouterChanged):
                self._on_router(event.router, event.lifetime)
            elif isinstance(event, PrefixChanged):
                self._on_prefix(event.network, event.on_link)
            elif isinstance(event, LinkParameters):
                if event.mtu is not None:
                    self.mtu = event.mtu
                if event.hop_limit is not None:
                    self.hop_limit = event.hop_limit
                if event.reachable_time is not None:
                    self.neighbours.set_base_reachable_time(event.reachable_time)
                if event.retrans_timer is not None:
                    self.neighbours.retrans_timer = event.retrans_timer
            elif isinstance(event, DnsServers):
                self.dns_servers = event.servers
            elif isinstance(event, Refused):
                self.stats.drop(event.reason)
        self._reschedule()

    def _address_changed(self, event: AddressChanged) -> None:
        entry = self._entry(event.address)
        state = event.state
        if state is None:
            if entry is not None:
                self.addresses.remove(entry)
                self.leave(solicited_node_address(event.address.ip))
                self._on_address(entry, False)
            return
        if entry is None:
            origin = _ORIGINS.get(event.origin.name, "static")
            entry = InterfaceAddress(event.address, state, origin,
                                     self.name if origin == "link-local" else None)
            self.addresses.append(entry)
            self.join(solicited_node_address(event.address.ip))
            self._on_address(entry, True)
            return
        entry.state = state
        if state is not AddressState.DUPLICATE:
            # A static address's entry came first: join its group now (DAD,
            # when on, joined it already; RFC 4861 7.2.1).
            self.join(solicited_node_address(event.address.ip))
        if state is AddressState.DUPLICATE:
            log.warning("%s: %s is in use by another node (duplicate address detection): "
                        "not used", self.name, event.address)
            self.stats["ndp.duplicate_address"] += 1
        self._on_address(entry, True)

    # --- the task -------------------------------------------------------------------

    def _deadline(self) -> float:
        deadline = min(self.neighbours.next_deadline(), self.autoconf.next_deadline())
        for at, _ in self._mld_repeats:
            deadline = min(deadline, at)
        return deadline

    def _reschedule(self) -> None:
        if self._scope is not None:
            self._scope.deadline = self._deadline()

    async def run(self) -> None:
        """The timers of neighbour discovery and address configuration."""
        stats = self.stats
        while True:
            with trio.CancelScope(deadline=self._deadline()) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            try:
                self._timers(trio.current_time())
            except Exception:  # a bug must not stop the interface's IPv6
                stats.drop("internal.error")
                log.exception("%s: error in the IPv6 neighbour timers", self.name)

    def _timers(self, now: float) -> None:
        if self._mld_repeats:
            due = [records for at, records in self._mld_repeats if at <= now]
            self._mld_repeats = [(at, r) for at, r in self._mld_repeats if at > now]
            for records in due:
                self._report(records)
        actions = self.neighbours.poll(now)
        for target in actions.multicast:
            self._solicit(target, None, self._solicit_source())
        for target, mac in actions.unicast:
            self._solicit(target, mac, self._solicit_source())
        for target, packets in actions.failed:
            for _ in packets:
                self.stats.drop("ndp.unresolved")
            self._on_unresolved(packets)
        for router in self.neighbours.pop_routers_lost():
            self._handle(self.autoconf.remove_router(router, now))
        self._handle(self.autoconf.poll(now))
