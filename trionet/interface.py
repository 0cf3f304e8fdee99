"""A network interface: the NIC task reading its link and the ARP resolver task."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Interface
from typing import TYPE_CHECKING

import trio

from .arp import ArpCache, ArpConfig
from .link.base import Link
from .wire.arp import ARP_REPLY, ARP_REQUEST, ArpPacket, parse_arp
from .wire.errors import WireError
from .wire.ethernet import (BROADCAST_MAC, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETH_HEADER_LEN,
                            build_ethernet, mac_to_str)

if TYPE_CHECKING:
    from .stack import Stack

log = logging.getLogger("trionet.interface")

_ZERO_MAC = bytes(6)


class Interface:
    """One link with one IPv4 address on it.

    The NIC task drains the link in batches and demultiplexes each frame with
    plain calls; ARP packets cross a memory channel into the resolver task,
    which also owns the ARP timers (one cancel scope, its deadline moved).
    """

    def __init__(self, stack: Stack, link: Link, address: IPv4Interface, mac: bytes, name: str,
                 arp_config: ArpConfig | None = None):
        self.stack = stack
        self.link = link
        self.address = address
        self.ip = address.ip
        self.network = address.network
        self.mac = mac
        self.name = name
        self.mtu = link.mtu
        self.checksum_offload = link.checksum_offload
        self.needs_arp = getattr(link, "needs_arp", True)
        self.arp = ArpCache(arp_config)
        #: The directed broadcast address; None on /31 and /32, which have
        #: none (RFC 3021: both addresses of a /31 are hosts).
        self.broadcast = address.network.broadcast_address if address.network.prefixlen < 31 else None
        self._broadcast_int = -1 if self.broadcast is None else int(self.broadcast)
        self.up = True
        self._arp_send, self._arp_receive = trio.open_memory_channel(256)
        self._arp_scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<Interface {self.name} {self.address} {mac_to_str(self.mac)} mtu={self.mtu}>"

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
        stats = self.stack.stats
        handle = self._handle_frame
        while True:
            try:
                frames = await self.link.receive_batch()
            except trio.ClosedResourceError:
                self.up = False
                self.stack._interface_down(self, None)  # cached paths must not use it
                return
            except trio.BrokenResourceError as exc:
                self.up = False
                stats["link.broken"] += 1
                log.error("%s: link broke: %s", self.name, exc)
                self.stack._interface_down(self, exc)
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

    def _handle_frame(self, frame: bytes) -> None:
        if len(frame) < ETH_HEADER_LEN:
            raise WireError("ethernet.truncated")
        dst = frame[0:6]
        if dst != self.mac and dst != BROADCAST_MAC:
            if dst[0] & 1:
                raise WireError("ethernet.multicast")  # no multicast groups joined
            raise WireError("ethernet.other_host")
        ethertype = (frame[12] << 8) | frame[13]
        if ethertype == ETHERTYPE_IPV4:
            self.stack._ipv4_input(self, memoryview(frame)[ETH_HEADER_LEN:], dst == BROADCAST_MAC)
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
        elif hop == 0xFFFFFFFF or hop == self._broadcast_int:
            dst_mac = BROADCAST_MAC
        elif 0xE0000000 <= hop < 0xF0000000:  # multicast, 224.0.0.0/4
            # RFC 1112 6.4: 01-00-5E and the group's low 23 bits; never ARP.
            group = next_hop.packed
            dst_mac = b"\x01\x00\x5e" + bytes((group[1] & 0x7F,)) + group[2:]
        else:
            now = trio.current_time()
            dst_mac, refresh = self.arp.lookup(next_hop, now)
            if refresh:
                self._send_arp(ARP_REQUEST, next_hop, _ZERO_MAC, BROADCAST_MAC)
                self._reschedule_arp()
            if dst_mac is None:
                if gso_size:
                    # The ARP queue holds plain packets, not GSO ones: this
                    # one goes (TCP resends it).
                    self.stack.stats.drop("arp.gso_unresolved")
                    if next_hop not in self.arp.pending_addresses():
                        self._send_arp(ARP_REQUEST, next_hop, _ZERO_MAC, BROADCAST_MAC)
                    return
                dropped = self.arp.dropped_packets
                queued = self.arp.enqueue(next_hop, packet, now)
                if queued is None:
                    self.stack.stats.drop("arp.too_many_pending")
                elif self.arp.dropped_packets != dropped:
                    # The queue for next_hop was full: its oldest packet went.
                    self.stack.stats.drop("arp.queue_overflow")
                if queued:
                    self._send_arp(ARP_REQUEST, next_hop, _ZERO_MAC, BROADCAST_MAC)
                    self._reschedule_arp()
                return
        if gso_size:
            self.link.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV4, packet), gso_size)
        else:
            self.link.send_frame(build_ethernet(dst_mac, self.mac, ETHERTYPE_IPV4, packet))

    def _send_arp(self, operation: int, target_ip: IPv4Address, target_mac: bytes,
                  eth_dst: bytes) -> None:
        packet = ArpPacket(operation, self.mac, self.ip, target_mac, target_ip)
        self.link.send_frame(build_ethernet(eth_dst, self.mac, ETHERTYPE_ARP, packet.build()))
        self.stack.stats["arp.tx_request" if operation == ARP_REQUEST else "arp.tx_reply"] += 1

    # --- ARP resolver task -----------------------------------------------

    def _reschedule_arp(self) -> None:
        if self._arp_scope is not None:
            self._arp_scope.deadline = self.arp.next_deadline()

    async def _arp_task(self) -> None:
        receive = self._arp_receive
        while True:
            with trio.CancelScope(deadline=self.arp.next_deadline()) as scope:
                self._arp_scope = scope
                while True:
                    data = await receive.receive()
                    try:
                        self._handle_arp(data)
                    except WireError as exc:
                        self.stack.stats.drop(exc.reason)
                    except Exception:  # a bug must not take the interface down
                        self.stack.stats.drop("internal.error")
                        log.exception("%s: error handling an ARP packet", self.name)
                    scope.deadline = self.arp.next_deadline()
            self._arp_scope = None
            try:
                self._arp_timers(trio.current_time())
            except Exception:
                self.stack.stats.drop("internal.error")
                log.exception("%s: error in the ARP timers", self.name)

    def _handle_arp(self, data: bytes) -> None:
        """RFC 826 "packet reception", answering only for our own address."""
        stats = self.stack.stats
        packet = parse_arp(data)
        stats["arp.rx"] += 1
        if packet.sender_mac == BROADCAST_MAC or packet.sender_mac[0] & 1 or packet.sender_mac == _ZERO_MAC:
            raise WireError("arp.bad_sender")
        if packet.sender_ip == self.ip:
            log.warning("%s: %s claims our address %s", self.name, mac_to_str(packet.sender_mac), self.ip)
            raise WireError("arp.address_conflict")
        for_us = packet.target_ip == self.ip
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
            self._send_arp(ARP_REPLY, packet.sender_ip, packet.sender_mac, packet.sender_mac)

    def _arp_timers(self, now: float) -> None:
        retry, failed = self.arp.poll(now)
        for ip in retry:
            self._send_arp(ARP_REQUEST, ip, _ZERO_MAC, BROADCAST_MAC)
        for ip, packets in failed:
            log.debug("%s: no ARP reply from %s; dropping %d packets", self.name, ip, len(packets))
            for packet in packets:
                self.stack.stats.drop("arp.unresolved")
                self.stack._host_unreachable(packet)
