"""A network interface: the NIC task reading its link, its addresses, the
ARP resolver task, and (on an Ethernet link) IPv6 neighbour discovery and
address configuration (``discovery.Ipv6Neighbours``). On a link without
Ethernet (``link.ethernet`` False: a TUN) frames are bare IP packets, with
no ARP, neighbour discovery, link-local address or MLD: the link is
point-to-point and addresses are used as given.

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
        #: False on a link of bare IP packets (TunLink): no Ethernet header.
        self.ethernet = getattr(link, "ethernet", True)
        #: Whether what we send comes back to us (a loopback: an Ethernet
        #: link without neighbour resolution), so packets to our own
        #: addresses may go out here; on other links they take the
        #: network layer's internal loopback.
        self.loops_back = not self.needs_arp and self.ethernet
        #: EtherType -> receive(interface, payload view, link broadcast).
        self.receivers = receivers
        self.callbacks = callbacks
        self.arp = ArpCache(arp_config)
        #: Every address of the interface, in the order added.
        self.addresses: list[InterfaceAddress] = []
        #: Our IPv4 addresses as ints (all usable: an IPv4 address is used
        #: at once), and the directed broadcast addresses of their networks
        #: (for the per-packet checks: ARP, the network layer's "ours?").
        self.local_ipv4_ints: frozenset[int] = frozenset()
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
        if not self.ethernet:
            # Chosen once here, so that the Ethernet paths test nothing more.
            self.handle_frame = self.handle_ip_packet
            self.send_ip = self._send_ip_packet
            self.send_ipv6 = self._send_ip_packet
        #: The DHCPv4 lease in use (``trionet.dhcp.machine.DhcpLease``:
        #: address, prefix_length, router, dns_servers, mtu, lease_time,
        #: domain_name), None without one.
        self.dhcp_lease = None
        #: Whether a DHCP client runs on this interface (set by the stack).
        self.dhcp_enabled = False
        self._dhcp_event = trio.Event()
        #: IPv4 addresses under an RFC 5227 probe -> set on a conflict.
        self._arp_probes: dict[IPv4Address, trio.Event] = {}

    def __repr__(self) -> str:
        addresses = " ".join(str(a.interface) for a in self.addresses)
        return f"<Interface {self.name} {addresses} {mac_to_str(self.mac)} mtu={self.mtu}>"

    # --- addresses --------------------------------------------------------

    def add_address(self, address, *, origin: str = "static") -> InterfaceAddress:
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
        entry = InterfaceAddress(parsed, AddressState.PREFERRED, origin, scope)
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

    # --- DHCPv4 (the client itself is above: trionet/dhcp) -------------------

    def set_dhcp_lease(self, lease) -> None:
        """The DHCP client's lease came, changed (a lease) or went (None)."""
        self.dhcp_lease = lease
        if lease is not None:
            self._dhcp_event.set()
        elif self._dhcp_event.is_set():
            self._dhcp_event = trio.Event()

    async def dhcp_bound(self):
        """The DHCP lease: at once if there is one, else when the first one
        (or the next, after one was lost) is acquired. RuntimeError if the
        interface has no DHCP client (``add_interface(link, dhcp=True)``)."""
        if not self.dhcp_enabled:
            raise RuntimeError(f"{self.name} has no DHCP client: use "
                               "stack.add_interface(link, dhcp=True)")
        while self.dhcp_lease is None:
            await self._dhcp_event.wait()
        await trio.lowlevel.checkpoint()
        return self.dhcp_lease

    def _ipv6_address_changed(self, entry: InterfaceAddress, present: bool) -> None:
        self._addresses_changed()
        self.callbacks.on_address(self, entry, present)

    def _addresses_changed(self) -> None:
        v4 = [a for a in self.addresses if a.version == 4]
        self.local_ipv4_ints = frozenset(int(a.ip) for a in v4)
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
        return int(address) in self.local_ipv4_ints

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
        rx_counter = "ethernet.rx" if self.ethernet else "tun.rx"
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
            stats[rx_counter] += len(frames)
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

    def handle_ip_packet(self, packet: bytes) -> None:
        """``handle_frame`` on a link without Ethernet (TUN): a bare IP
        packet, IPv4 or IPv6 by its version field (RFC 791 3.1, RFC 8200
        3); WireError when it is dropped. Never a link-layer broadcast."""
        if not packet:
            raise WireError("tun.truncated")
        version = packet[0] >> 4
        if version == 4:
            receive = self.receivers.get(ETHERTYPE_IPV4)
        elif version == 6:
            receive = self.receivers.get(ETHERTYPE_IPV6)
        else:
            raise WireError("tun.unknown_version")
        if receive is None:
            raise WireError("tun.unknown_version")
        receive(self, memoryview(packet), False)

    def _send_ip_packet(self, packet: bytes, next_hop, gso_size: int = 0) -> None:
        """``send_ip`` and ``send_ipv6`` on a link without Ethernet: the
        packet as it is (point-to-point: no next-hop address to resolve)."""
        if gso_size:
            self.link.send_frame(packet, gso_size)
        else:
            self.link.send_frame(packet)

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

    @property
    def ipv6_nameservers(self) -> list[IPv6Address]:
        """Recursive DNS servers routers advertise here (RDNSS, RFC 8106
        5.3.1), whose lifetime has not ended; a link-local one with this
        interface as its scope ("fe80::1%eth0")."""
        if self.ipv6 is None:
            return []
        try:
            now = trio.current_time()
        except RuntimeError:  # outside trio.run
            now = -float("inf")
        return [IPv6Address(f"{server}%{self.name}") if server.is_link_local else server
                for server, expires in self.ipv6.dns_servers if expires > now]

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

    # --- IPv4 address conflict detection (RFC 5227) ---------------------------

    async def probe_ipv4(self, address: IPv4Address, rng, *, probe_wait: float = 1.0,
                         probe_num: int = 3, probe_min: float = 1.0, probe_max: float = 2.0,
                         announce_wait: float = 2.0) -> bool:
        """Whether another host uses ``address``: RFC 5227 2.1.1, a random
        wait up to PROBE_WAIT, PROBE_NUM probes (ARP requests with sender IP
        0.0.0.0) PROBE_MIN..PROBE_MAX apart, then ANNOUNCE_WAIT. A conflict
        is any ARP packet from another MAC whose sender IP is ``address``,
        or another host's probe for it; the answer comes as soon as one is
        seen."""
        address = IPv4Address(address)
        conflict = self._arp_probes.get(address)
        if conflict is None:
            conflict = self._arp_probes[address] = trio.Event()

        async def wait(seconds: float) -> bool:
            with trio.move_on_after(seconds):
                await conflict.wait()
            return conflict.is_set()

        try:
            if await wait(rng.uniform(0, probe_wait)):
                return True
            for i in range(probe_num):
                self._send_arp_packet(ArpPacket(ARP_REQUEST, self.mac, IPv4Address(0),
                                                _ZERO_MAC, address), BROADCAST_MAC)
                self.stats["arp.tx_probe"] += 1
                last = i == probe_num - 1
                if await wait(announce_wait if last else rng.uniform(probe_min, probe_max)):
                    return True
            return False
        finally:
            if self._arp_probes.get(address) is conflict:
                del self._arp_probes[address]

    def announce_ipv4(self, address: IPv4Address) -> None:
        """One ARP announcement (RFC 5227 2.3): a request with sender and
        target IP both ``address``, so that neighbours update their caches."""
        address = IPv4Address(address)
        self._send_arp_packet(ArpPacket(ARP_REQUEST, self.mac, address, _ZERO_MAC, address),
                              BROADCAST_MAC)
        self.stats["arp.tx_announce"] += 1

    def _send_arp_packet(self, packet: ArpPacket, eth_dst: bytes) -> None:
        self.link.send_frame(build_ethernet(eth_dst, self.mac, ETHERTYPE_ARP, packet.build()))

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
        probes = self._arp_probes
        if probes and packet.sender_mac != self.mac:
            # RFC 5227 2.1.1: a conflict is another host using the address
            # (sender IP) or probing for it too (sender 0.0.0.0, target it).
            if packet.sender_ip.is_unspecified:
                watched = probes.get(packet.target_ip) \
                    if packet.operation == ARP_REQUEST else None
            else:
                watched = probes.get(packet.sender_ip)
            if watched is not None:
                log.warning("%s: %s uses (or probes for) %s", self.name,
                            mac_to_str(packet.sender_mac), packet.target_ip
                            if packet.sender_ip.is_unspecified else packet.sender_ip)
                self.stats["arp.probe_conflict"] += 1
                watched.set()
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

