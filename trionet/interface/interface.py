"""A network interface: the NIC task reading its link, its addresses, the
ARP resolver task, and (on an Ethernet link) IPv6 neighbour discovery and
address configuration (``discovery.Ipv6Neighbours``).

The interface knows nothing of the layers above it. The network layer hands
it what it needs when it makes it: the ``stats`` counter, one receive
callable per EtherType (``receivers``) and callbacks (``Callbacks``) for
what it must know: the link went down, packets found no neighbour, an
address came, changed or went, a router or an on-link prefix came or went.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, IPv6Network

import attrs
import trio

from ..link.base import Link
from ..link.loopback import LoopbackLink
from ..stats import Stats
from ..wire.arp import ARP_REPLY, ARP_REQUEST, ArpPacket, parse_arp
from ..wire.errors import WireError
from ..wire.ethernet import (BROADCAST_MAC, ETH_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4,
                             ETHERTYPE_IPV6, build_ethernet, mac_to_str)
from ..wire.icmpv6 import multicast_mac
from .addresses import USABLE, AddressState, InterfaceAddress, parse_host_address
from .arp import ArpCache, ArpConfig
from .autoconf import AutoconfConfig
from .discovery import Ipv6Neighbours, unscoped
from .ndp import NdpConfig

log = logging.getLogger("trionet.interface")

_ZERO_MAC = bytes(6)
_ALL_NODES = 0xFF020000000000000000000000000001


@attrs.frozen(slots=True)
class Callbacks:
    """What the layer above is told about an interface."""
    #: The link went down: closed (exc None) or broken.
    on_down: Callable[[Interface, BaseException | None], None]
    #: Packets that waited for a neighbour that never answered.
    on_unresolved: Callable[[Interface, list[bytes]], None]
    #: An address was added (or its state changed: True) or removed (False).
    on_address: Callable[[Interface, InterfaceAddress, bool], None]
    #: Raises ValueError if the stack has ``address`` already.
    check_address: Callable[[Interface, IPv4Interface | IPv6Interface], None] = \
        lambda iface, address: None
    #: An IPv6 default router (its lifetime in seconds; None: gone, RFC 4861 6.3.4).
    on_router: Callable[[Interface, IPv6Address, float | None], None] = \
        lambda iface, router, lifetime: None
    #: An on-link IPv6 prefix came (True) or went (False).
    on_prefix: Callable[[Interface, IPv6Network, bool], None] = \
        lambda iface, network, on_link: None
    #: A router (the last argument) redirected a destination to a better
    #: next hop (RFC 4861 8); returns whether it was taken (it must come from
    #: the destination's current first-hop router, 8.1).
    on_redirect: Callable[[Interface, IPv6Address, IPv6Address, IPv6Address], bool] = \
        lambda iface, destination, target, source: False
    #: Whether the stack forwards (its neighbour advertisements say "router").
    is_router: Callable[[], bool] = lambda: False


class Interface:
    """One link with its addresses (``addresses``, either family).

    The NIC task drains the link in batches and demultiplexes each frame with
    plain calls; ARP packets cross a memory channel into the resolver task,
    which also owns the ARP timers (one cancel scope, its deadline moved).
    """

    def __init__(self, link: Link, mac: bytes, name: str, *, stats: Stats,
                 receivers: dict[int, Callable], callbacks: Callbacks,
                 arp_config: ArpConfig | None = None, rng=None, secret: bytes = b"",
                 ndp_config: NdpConfig | None = None,
                 autoconf_config: AutoconfConfig | None = None):
        self.link = link
        self.mac = mac
        self.name = name
        #: A number naming the interface (as Linux's ifindex; sockaddr scope ids).
        self.index = 0
        self.stats = stats
        self.mtu = link.mtu
        self.checksum_offload = link.checksum_offload
        self.needs_arp = getattr(link, "needs_arp", True)
        #: EtherType -> receive(interface, payload view, link broadcast).
        self.receivers = receivers
        self.callbacks = callbacks
        self.arp = ArpCache(arp_config)
        #: Every address of the interface, in the order added.
        self.addresses: list[InterfaceAddress] = []
        #: Our IPv4 addresses as ints, and the directed broadcast addresses of
        #: their networks (for the per-packet checks).
        self._ipv4_ints: frozenset[int] = frozenset()
        self.broadcasts: frozenset[IPv4Address] = frozenset()
        self._broadcast_ints: frozenset[int] = frozenset()
        self.up = True
        self._arp_send, self._arp_receive = trio.open_memory_channel(256)
        self._arp_scope: trio.CancelScope | None = None
        #: Group MACs whose frames we take (IPv6 multicast groups joined).
        self.multicast_macs: set[bytes] = set()
        #: IPv6 neighbour discovery and autoconfiguration, on links that
        #: resolve neighbours (Ethernet); None on others (loopback, TUN).
        self.ipv6: Ipv6Neighbours | None = None
        if self.needs_arp and rng is not None:
            self.ipv6 = Ipv6Neighbours(
                link=link, mac=mac, name=name, stats=stats, addresses=self.addresses,
                accept_macs=self.multicast_macs, rng=rng, secret=secret,
                on_address=self._ipv6_address_changed,
                on_router=lambda router, lifetime: callbacks.on_router(self, router, lifetime),
                on_prefix=lambda network, on_link: callbacks.on_prefix(self, network, on_link),
                on_redirect=lambda dst, target, source: callbacks.on_redirect(
                    self, dst, target, source),
                on_unresolved=lambda packets: callbacks.on_unresolved(self, packets),
                is_router=callbacks.is_router, ndp=ndp_config, autoconf=autoconf_config)
        self._started = False
        self._pending_ipv6: list[IPv6Interface] = []

    def __repr__(self) -> str:
        addresses = " ".join(str(a.interface) for a in self.addresses)
        return f"<Interface {self.name} {addresses} {mac_to_str(self.mac)} mtu={self.mtu}>"

    # --- addresses --------------------------------------------------------

    def add_address(self, address) -> InterfaceAddress:
        """Add ``address`` with its prefix ("10.0.0.2/24", "fd00::2/64"; a
        string or an ``ipaddress`` interface). An IPv6 address on an
        Ethernet link is tentative until duplicate address detection passes
        (RFC 4862 5.4; ``state`` then becomes preferred, or duplicate and
        never used); an IPv4 one is used at once. ValueError naming
        ``address`` for one that cannot be a host's, or that the stack has."""
        parsed = parse_host_address(address, loopback_link=isinstance(self.link, LoopbackLink))
        if any(e.interface.ip == parsed.ip for e in self.addresses):
            raise ValueError(f"address: {parsed.ip} is already assigned")
        self.callbacks.check_address(self, parsed)
        # RFC 4007 6: a link-local address carries its interface as scope.
        scope = self.name if parsed.version == 6 and int(parsed.ip) >> 118 == 0x3FA else None
        if parsed.version == 6 and self.ipv6 is not None:
            entry = InterfaceAddress(parsed, AddressState.TENTATIVE, "static", scope)
            self.addresses.append(entry)
            self.callbacks.on_address(self, entry, True)
            if self._started:
                self.ipv6.add_address(parsed)
            else:
                self._pending_ipv6.append(parsed)
            return entry
        entry = InterfaceAddress(parsed, AddressState.PREFERRED, "static", scope)
        self.addresses.append(entry)
        self._addresses_changed()
        self.callbacks.on_address(self, entry, True)
        return entry

    def remove_address(self, entry: InterfaceAddress | str) -> None:
        """Remove an address (its entry, or the address as text)."""
        if not isinstance(entry, InterfaceAddress):
            ip = parse_host_address(entry).ip if "/" in str(entry) else None
            found = [e for e in self.addresses if e.interface == entry or str(e.interface) == str(
                entry) or (ip is not None and e.interface.ip == ip)]
            if not found:
                raise ValueError(f"address: {entry!r} is not an address of {self.name}")
            entry = found[0]
        if entry.version == 6 and self.ipv6 is not None:
            if entry.interface in self._pending_ipv6:
                self._pending_ipv6.remove(entry.interface)  # never started
            elif self._started:
                self.ipv6.remove_address(entry.interface.ip)
                if entry not in self.addresses:
                    return
        self.addresses.remove(entry)
        self._addresses_changed()
        self.callbacks.on_address(self, entry, False)

    def _ipv6_address_changed(self, entry: InterfaceAddress, present: bool) -> None:
        self._addresses_changed()
        self.callbacks.on_address(self, entry, present)

    def _addresses_changed(self) -> None:
        v4 = [a for a in self.addresses if a.version == 4]
        self._ipv4_ints = frozenset(int(a.ip) for a in v4)
        self.broadcasts = frozenset(a.broadcast for a in v4 if a.broadcast is not None)
        self._broadcast_ints = frozenset(int(b) for b in self.broadcasts)

    @property
    def address(self) -> IPv4Interface | IPv6Interface | None:
        """The first address (with its prefix), or None."""
        return self.addresses[0].interface if self.addresses else None

    @property
    def ip(self):
        """The first address, without its prefix."""
        return self.addresses[0].ip if self.addresses else None

    @property
    def network(self):
        return self.addresses[0].network if self.addresses else None

    @property
    def broadcast(self) -> IPv4Address | None:
        """The first address's directed broadcast (None if it has none)."""
        return self.addresses[0].broadcast if self.addresses else None

    def source_for(self, dst) -> object | None:
        """Our address to send to ``dst`` from (None: none may be used).

        IPv4: one on ``dst``'s network if any, else the first. IPv6: RFC
        6724 5's rules that matter for a host: ``dst`` itself if ours, the
        same scope (link-local for link-local and link-scoped multicast
        destinations), preferred over deprecated, then the longest matching
        prefix."""
        if dst.version == 4:
            first = None
            for entry in self.addresses:
                if entry.version != 4 or entry.state not in USABLE:
                    continue
                if dst in entry.network:
                    return entry.ip
                if first is None:
                    first = entry.ip
            return first
        target = int(dst)
        link_scope = target >> 118 == 0x3FA or (
            target >> 120 == 0xFF and (target >> 112) & 0x0F in (1, 2))
        best = best_key = None
        waiting = False
        for entry in self.addresses:
            if entry.version != 6:
                continue
            if entry.state not in USABLE:
                if entry.state is AddressState.TENTATIVE and \
                        (int(entry.interface.ip) >> 118 == 0x3FA) == link_scope:
                    waiting = True  # an address of the right scope comes soon
                continue
            value = int(entry.interface.ip)
            if value == target:
                return entry.ip  # RFC 6724 5 rule 1
            is_link_local = value >> 118 == 0x3FA
            common = 128 - (value ^ target).bit_length()
            key = (is_link_local == link_scope,                   # rule 2: scope
                   entry.state is AddressState.PREFERRED,        # rule 3
                   min(common, entry.interface.network.prefixlen))  # rule 8
            if best_key is None or key > best_key:
                best, best_key = entry.ip, key
        if waiting and best_key is not None and not best_key[0]:
            # Only another scope's address (a link-local one for a global
            # destination) while ours of the right scope is tentative: none
            # yet, rather than one that fails beyond the link.
            return None
        return best

    def owns_ipv4(self, address: IPv4Address) -> bool:
        return int(address) in self._ipv4_ints

    # --- receive ---------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._arp_task)
            if self.ipv6 is not None:
                nursery.start_soon(self.ipv6.run)
                self.ipv6.start()  # link-local address, router solicitations
                for address in self._pending_ipv6:
                    self.ipv6.add_address(address)
                self._pending_ipv6.clear()
            self._started = True
            task_status.started()
            try:
                await self._nic_task()
            finally:
                nursery.cancel_scope.cancel()

    async def _nic_task(self) -> None:
        stats = self.stats
        handle = self.handle_frame  # looked up once: scripts/fuzz.py wraps it per instance
        while True:
            try:
                frames = await self.link.receive_batch()
            except trio.ClosedResourceError:
                self.up = False
                self.callbacks.on_down(self, None)  # cached paths must not use it
                return
            except trio.BrokenResourceError as exc:
                self.up = False
                stats["link.broken"] += 1
                log.error("%s: link broke: %s", self.name, exc)
                self.callbacks.on_down(self, exc)
                return
            stats["ethernet.rx"] += len(frames)
            for frame in frames:
                try:
                    handle(frame)
                except WireError as exc:
                    stats.drop(exc.reason)
                except Exception:  # a bug must not take the interface down
                    stats.drop("internal.error")
                    log.exception("%s: error handling a frame", self.name)

    def handle_frame(self, frame: bytes) -> None:
        """Demultiplex one received frame; WireError when it is dropped."""
        if len(frame) < ETH_HEADER_LEN:
            raise WireError("ethernet.truncated")
        dst = frame[0:6]
        if dst != self.mac and dst != BROADCAST_MAC:
            if not dst[0] & 1:
                raise WireError("ethernet.other_host")
            if dst not in self.multicast_macs:
                raise WireError("ethernet.multicast")  # a group we did not join
        ethertype = (frame[12] << 8) | frame[13]
        receive = self.receivers.get(ethertype)
        if receive is not None:
            # Third: a link-layer broadcast or multicast (not for our MAC alone).
            receive(self, memoryview(frame)[ETH_HEADER_LEN:], bool(dst[0] & 1))
        elif ethertype == ETHERTYPE_ARP:
            try:
                self._arp_send.send_nowait(frame[ETH_HEADER_LEN:])
            except trio.WouldBlock:
                raise WireError("arp.queue_full") from None
        else:
            raise WireError("ethernet.unknown_type")

    # --- IPv6 (neighbour discovery is in discovery.py) ------------------------

    def in_group(self, group) -> bool:
        """Whether we joined IPv6 multicast ``group`` (all-nodes at least)."""
        if self.ipv6 is not None:
            return self.ipv6.in_group(group)
        return int(group) == _ALL_NODES

    def nd_input(self, msg, header) -> None:
        if self.ipv6 is None:
            raise WireError("ndp.not_on_this_link")
        self.ipv6.nd_input(msg, header)

    def mld_query(self, msg, header) -> None:
        if self.ipv6 is not None:
            self.ipv6.mld_query(msg, header)

    @property
    def hop_limit(self) -> int:
        """The IPv6 hop limit to send with (a router may advertise one; RFC
        4861 6.3.4)."""
        return self.ipv6.hop_limit if self.ipv6 is not None else 64

    def neighbour_reachable(self, address) -> bool:
        """Whether ``address`` is reachable or probably so (a neighbour entry
        in any state but INCOMPLETE; RFC 4861 6.3.6). True on links without
        neighbour discovery."""
        return self.ipv6 is None or self.ipv6.neighbours.probably_reachable(unscoped(address))

    @property
    def ipv6_mtu(self) -> int:
        """The MTU IPv6 uses here (a router may advertise a smaller one)."""
        return self.ipv6.mtu if self.ipv6 is not None else self.mtu

    def send_ipv6(self, packet: bytes, next_hop, gso_size: int = 0) -> None:
        """Send an IPv6 packet to ``next_hop`` on this link, resolving its
        MAC by neighbour discovery when needed (the packet then waits,
        bounded). ``gso_size``: as ``send_ip``'s."""
        hop = int(next_hop)
        if not self.needs_arp:
            dst_mac = self.mac
        elif hop >> 120 == 0xFF:
            dst_mac = multicast_mac(unscoped(next_hop))  # RFC 2464 7
        else:
            if gso_size:
                dst_mac = self.ipv6.lookup(next_hop)
                if dst_mac is None:
                    # The queue holds plain packets, not GSO ones: this one
                    # goes (TCP resends it, as one segment that resolves).
                    self.stats.drop("ndp.gso_unresolved")
                    return
            else:
                dst_mac = self.ipv6.resolve(next_hop, packet)
                if dst_mac is None:
                    return
        if gso_size:
            self.link.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV6, packet),
                                 gso_size)
        else:
            self.link.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV6, packet))

    # --- send ------------------------------------------------------------

    def send_ip(self, packet: bytes, next_hop: IPv4Address, gso_size: int = 0) -> None:
        """Send an IPv4 packet to ``next_hop`` on this link, resolving its
        MAC first when needed (the packet then waits, bounded).

        ``gso_size``: the packet is one large TCP segment for a link with
        ``tso_max`` to cut into pieces of that many payload bytes."""
        hop = int(next_hop)
        if not self.needs_arp:
            dst_mac = self.mac
        elif hop == 0xFFFFFFFF or hop in self._broadcast_ints:
            dst_mac = BROADCAST_MAC
        elif 0xE0000000 <= hop < 0xF0000000:  # multicast, 224.0.0.0/4
            # RFC 1112 6.4: 01-00-5E and the group's low 23 bits; never ARP.
            group = next_hop.packed
            dst_mac = b"\x01\x00\x5e" + bytes((group[1] & 0x7F,)) + group[2:]
        else:
            dst_mac = self._resolve(next_hop, packet, gso_size)
            if dst_mac is None:
                return
        if gso_size:
            self.link.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV4, packet), gso_size)
        else:
            self.link.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV4, packet))

    def _resolve(self, next_hop: IPv4Address, packet: bytes, gso_size: int) -> bytes | None:
        """The MAC of ``next_hop``; None when the packet waits for (or was
        dropped while waiting for) an ARP answer."""
        now = trio.current_time()
        arp = self.arp
        dst_mac, refresh = arp.lookup(next_hop, now)
        if refresh:
            self._send_arp(ARP_REQUEST, next_hop, _ZERO_MAC, BROADCAST_MAC)
            self._reschedule_arp()
        if dst_mac is not None:
            return dst_mac
        if gso_size:
            # The ARP queue holds plain packets, not GSO ones: this
            # one goes (TCP resends it).
            self.stats.drop("arp.gso_unresolved")
            if next_hop not in arp.pending_addresses():
                self._send_arp(ARP_REQUEST, next_hop, _ZERO_MAC, BROADCAST_MAC)
            return None
        dropped = arp.dropped_packets
        queued = arp.enqueue(next_hop, packet, now)
        if queued is None:
            self.stats.drop("arp.too_many_pending")
        elif arp.dropped_packets != dropped:
            # The queue for next_hop was full: its oldest packet went.
            self.stats.drop("arp.queue_overflow")
        if queued:
            self._send_arp(ARP_REQUEST, next_hop, _ZERO_MAC, BROADCAST_MAC)
            self._reschedule_arp()
        return None

    def _send_arp(self, operation: int, target_ip: IPv4Address, target_mac: bytes,
                  eth_dst: bytes) -> None:
        sender = self.source_for(target_ip)
        packet = ArpPacket(operation, self.mac, sender if sender is not None else IPv4Address(0),
                           target_mac, target_ip)
        self.link.send_frame(build_ethernet(eth_dst, self.mac, ETHERTYPE_ARP, packet.build()))
        self.stats["arp.tx_request" if operation == ARP_REQUEST else "arp.tx_reply"] += 1

    # --- ARP resolver task -----------------------------------------------

    def _reschedule_arp(self) -> None:
        if self._arp_scope is not None:
            self._arp_scope.deadline = self.arp.next_deadline()

    async def _arp_task(self) -> None:
        receive = self._arp_receive
        stats = self.stats
        while True:
            with trio.CancelScope(deadline=self.arp.next_deadline()) as scope:
                self._arp_scope = scope
                while True:
                    data = await receive.receive()
                    try:
                        self.handle_arp(data)
                    except WireError as exc:
                        stats.drop(exc.reason)
                    except Exception:  # a bug must not take the interface down
                        stats.drop("internal.error")
                        log.exception("%s: error handling an ARP packet", self.name)
                    scope.deadline = self.arp.next_deadline()
            self._arp_scope = None
            try:
                self._arp_timers(trio.current_time())
            except Exception:
                stats.drop("internal.error")
                log.exception("%s: error in the ARP timers", self.name)

    @property
    def arp_backlog(self) -> int:
        """ARP packets waiting for the resolver task."""
        return self._arp_send.statistics().current_buffer_used

    def handle_arp(self, data: bytes) -> None:
        """RFC 826 "packet reception", answering only for our own addresses."""
        stats = self.stats
        packet = parse_arp(data)
        stats["arp.rx"] += 1
        if packet.sender_mac == BROADCAST_MAC or packet.sender_mac[0] & 1 or packet.sender_mac == _ZERO_MAC:
            raise WireError("arp.bad_sender")
        if self.owns_ipv4(packet.sender_ip):
            log.warning("%s: %s claims our address %s", self.name, mac_to_str(packet.sender_mac),
                        packet.sender_ip)
            raise WireError("arp.address_conflict")
        for_us = self.owns_ipv4(packet.target_ip)
        if not packet.sender_ip.is_unspecified:  # RFC 5227 probes carry 0.0.0.0
            flushed = self.arp.learn(packet.sender_ip, packet.sender_mac, trio.current_time(),
                                     create=for_us)
            for waiting in flushed:
                self.link.send_frame(build_ethernet(packet.sender_mac, self.mac, ETHERTYPE_IPV4, waiting))
            if flushed:
                self._reschedule_arp()
        if not for_us:
            stats["arp.ignored"] += 1
            return
        if packet.operation == ARP_REQUEST:
            reply = ArpPacket(ARP_REPLY, self.mac, packet.target_ip, packet.sender_mac,
                              packet.sender_ip)
            self.link.send_frame(build_ethernet(packet.sender_mac, self.mac, ETHERTYPE_ARP,
                                                reply.build()))
            stats["arp.tx_reply"] += 1

    def _arp_timers(self, now: float) -> None:
        retry, failed = self.arp.poll(now)
        for ip in retry:
            self._send_arp(ARP_REQUEST, ip, _ZERO_MAC, BROADCAST_MAC)
        for ip, packets in failed:
            log.debug("%s: no ARP reply from %s; dropping %d packets", self.name, ip, len(packets))
            for _ in packets:
                self.stats.drop("arp.unresolved")
            self.callbacks.on_unresolved(self, packets)

