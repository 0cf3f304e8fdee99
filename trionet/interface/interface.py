"""A network interface: the NIC task reading its link, its addresses, and
the ARP resolver task.

The interface knows nothing of the layers above it. The network layer hands
it what it needs when it makes it: the ``stats`` counter, one receive
callable per EtherType (``receivers``) and callbacks for "the link went
down" and "these packets found no neighbour" (``Callbacks``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

import attrs
import trio

from ..link.base import Link
from ..stats import Stats
from ..wire.arp import ARP_REPLY, ARP_REQUEST, ArpPacket, parse_arp
from ..wire.errors import WireError
from ..wire.ethernet import (BROADCAST_MAC, ETH_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4,
                             build_ethernet, mac_to_str)
from .arp import ArpCache, ArpConfig

log = logging.getLogger("trionet.interface")

_ZERO_MAC = bytes(6)


class AddressState(enum.Enum):
    """An address's life (RFC 4862 5.5.4 names them; IPv4 addresses are
    preferred from the start)."""
    TENTATIVE = "tentative"
    PREFERRED = "preferred"
    DEPRECATED = "deprecated"
    DUPLICATE = "duplicate"


@attrs.define(slots=True, eq=False)
class InterfaceAddress:
    """One address of an interface, with its prefix and state."""
    interface: IPv4Interface | IPv6Interface
    state: AddressState = AddressState.PREFERRED

    @property
    def ip(self):
        return self.interface.ip

    @property
    def network(self):
        return self.interface.network

    @property
    def version(self) -> int:
        return self.interface.version

    @property
    def broadcast(self) -> IPv4Address | None:
        """The directed broadcast address; None for IPv6 and on /31 and /32,
        which have none (RFC 3021: both addresses of a /31 are hosts)."""
        network = self.interface.network
        if network.version != 4 or network.prefixlen >= 31:
            return None
        return network.broadcast_address

    def __repr__(self) -> str:
        return f"<{self.interface} {self.state.value}>"


@attrs.frozen(slots=True)
class Callbacks:
    """What the layer above is told about an interface."""
    #: The link went down: closed (exc None) or broken.
    on_down: Callable[[Interface, BaseException | None], None]
    #: Packets that waited for a neighbour that never answered.
    on_unresolved: Callable[[Interface, list[bytes]], None]
    #: An address was added to or removed from the interface.
    on_address: Callable[[Interface, InterfaceAddress, bool], None]


class Interface:
    """One link with its addresses (``addresses``, either family).

    The NIC task drains the link in batches and demultiplexes each frame with
    plain calls; ARP packets cross a memory channel into the resolver task,
    which also owns the ARP timers (one cancel scope, its deadline moved).
    """

    def __init__(self, link: Link, mac: bytes, name: str, *, stats: Stats,
                 receivers: dict[int, Callable], callbacks: Callbacks,
                 arp_config: ArpConfig | None = None):
        self.link = link
        self.mac = mac
        self.name = name
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

    def __repr__(self) -> str:
        addresses = " ".join(str(a.interface) for a in self.addresses)
        return f"<Interface {self.name} {addresses} {mac_to_str(self.mac)} mtu={self.mtu}>"

    # --- addresses --------------------------------------------------------

    def add_address(self, address: IPv4Interface | IPv6Interface,
                    state: AddressState = AddressState.PREFERRED) -> InterfaceAddress:
        """Add ``address`` (checked by the caller) and tell the layer above."""
        entry = InterfaceAddress(address, state)
        self.addresses.append(entry)
        self._addresses_changed()
        self.callbacks.on_address(self, entry, True)
        return entry

    def remove_address(self, entry: InterfaceAddress) -> None:
        self.addresses.remove(entry)
        self._addresses_changed()
        self.callbacks.on_address(self, entry, False)

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
        """Our address to send to ``dst`` from: one on ``dst``'s network if
        any, else the first of its family that may be used (None: none)."""
        first = None
        for entry in self.addresses:
            if entry.version != dst.version or entry.state not in _USABLE:
                continue
            if dst in entry.network:
                return entry.ip
            if first is None:
                first = entry.ip
        return first

    def owns_ipv4(self, address: IPv4Address) -> bool:
        return int(address) in self._ipv4_ints

    # --- receive ---------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._arp_task)
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
            if dst[0] & 1:
                raise WireError("ethernet.multicast")  # no multicast groups joined
            raise WireError("ethernet.other_host")
        ethertype = (frame[12] << 8) | frame[13]
        receive = self.receivers.get(ethertype)
        if receive is not None:
            receive(self, memoryview(frame)[ETH_HEADER_LEN:], dst == BROADCAST_MAC)
        elif ethertype == ETHERTYPE_ARP:
            try:
                self._arp_send.send_nowait(frame[ETH_HEADER_LEN:])
            except trio.WouldBlock:
                raise WireError("arp.queue_full") from None
        else:
            raise WireError("ethernet.unknown_type")

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


_USABLE = frozenset({AddressState.PREFERRED, AddressState.DEPRECATED})
