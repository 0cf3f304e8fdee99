"""The DHCPv4 client task: ``machine.DhcpClientMachine`` driven on one
interface (RFC 2131 4.4).

The task owns the machine, a memory channel of the messages that came to
UDP port 68 on its interface (``DhcpClients.input``, a plain call from the
UDP layer's port hook), and one cancel scope whose deadline is the
machine's ``next_deadline`` (T1, T2, expiry, retransmission). It sends from
0.0.0.0 (or the leased address) port 68 to 255.255.255.255 straight out of
its interface, or by the routing table when unicast to the server; probes
an ACKed address with ARP (RFC 5227) through the interface; and applies
leases: the address (with its connected route), a default route via the
router option, the MTU option, and ``interface.dhcp_lease``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import attrs
import trio

from ..wire.dhcp import (DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DHCPACK, DHCPDECLINE,
                         DHCPDISCOVER, DHCPINFORM, DHCPNAK, DHCPOFFER, DHCPRELEASE, DHCPREQUEST,
                         build_dhcp, parse_dhcp)
from ..wire.errors import WireError
from ..wire.ipv4 import PROTO_UDP, build_ipv4_plain
from ..wire.udp import build_udp
from .machine import (DhcpClientConfig, DhcpClientMachine, DhcpLease,
                      LeaseAcquired, LeaseLost, LeaseRenewed, ProbeAddress, SendMessage)

log = logging.getLogger("trionet.dhcp")

_TYPE_NAMES = {DHCPDISCOVER: "discover", DHCPOFFER: "offer", DHCPREQUEST: "request",
               DHCPDECLINE: "decline", DHCPACK: "ack", DHCPNAK: "nak", DHCPRELEASE: "release",
               DHCPINFORM: "inform"}
_DEFAULT_ROUTE = IPv4Network("0.0.0.0/0")
#: Messages waiting for the client task; more are dropped (a flood).
_QUEUE_SIZE = 64
#: RFC 5227 2.3: ANNOUNCE_NUM announcements ANNOUNCE_INTERVAL apart.
_ANNOUNCE_NUM = 2
_ANNOUNCE_INTERVAL = 2.0


def _address_or_none(value: Any) -> IPv4Address | None:
    if value is None or isinstance(value, IPv4Address):
        return value
    try:
        return IPv4Address(value)
    except ValueError:
        raise ValueError(f"requested_address: {value!r} is not an IPv4 address") from None


def _check_delay(instance, attribute, value) -> None:
    low, high = value
    if not 0 <= low <= high:
        raise ValueError(f"initial_delay must be (low, high) with 0 <= low <= high: {value!r}")


@attrs.frozen(slots=True)
class DhcpConfig:
    """How an interface's DHCP client behaves: ``stack.add_interface(link,
    dhcp=DhcpConfig(...))`` (``dhcp=True`` takes these defaults)."""
    #: An address to ask for again (INIT-REBOOT, RFC 2131 3.2), e.g. the last
    #: lease's; the server confirms it (ACK) or refuses (NAK: discover anew).
    requested_address: IPv4Address | None = attrs.field(default=None,
                                                        converter=_address_or_none)
    #: Option 12 (RFC 2132 3.14), sent when set.
    hostname: str | None = None
    #: Option 61 (RFC 2132 9.14); None: type 1 (Ethernet) and the MAC, as
    #: most clients send.
    client_id: bytes | None = None
    #: Uniform random wait (s) before the first DISCOVER (RFC 2131 4.4.1).
    initial_delay: tuple[float, float] = attrs.field(default=(0.0, 1.0), validator=_check_delay)
    #: Probe the leased address with ARP before using it (RFC 5227 2.1.1,
    #: ~3-7 s) and DECLINE it on a conflict (RFC 2131 3.1 step 5).
    probe: bool = True
    #: Send a RELEASE when the stack exits normally (RFC 2131 4.4.6).
    release_on_exit: bool = True


class DhcpClient:
    """One interface's client; ``run`` is its task."""

    def __init__(self, iface: Any, network: Any, stats: Any, rng: random.Random,
                 config: DhcpConfig, on_lease: Callable[[Any], None]):
        self.iface = iface
        self.network = network
        self.stats = stats
        self.rng = rng
        self.config = config
        self._on_lease = on_lease
        client_id = config.client_id if config.client_id is not None else b"\x01" + iface.mac
        self.machine = DhcpClientMachine(iface.mac, rng, DhcpClientConfig(
            initial_delay=config.initial_delay, client_id=client_id, hostname=config.hostname,
            probe=config.probe))
        self._send, self._receive = trio.open_memory_channel(_QUEUE_SIZE)
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        #: What the current lease configured: its address entry, default
        #: route, and the MTU it replaced.
        self._entry = None
        self._route = None
        self._saved_mtu: int | None = None

    @property
    def state(self):
        return self.machine.state

    @property
    def lease(self) -> DhcpLease | None:
        return self.machine.lease

    # --- input (plain call from the UDP layer) ----------------------------------

    def deliver(self, data: bytes) -> None:
        try:
            self._send.send_nowait(data)
        except trio.WouldBlock:
            raise WireError("dhcp.queue_full") from None
        except trio.ClosedResourceError:
            raise WireError("dhcp.stopped") from None

    def _input(self, data: bytes, now: float) -> None:
        stats = self.stats
        stats["dhcp.rx"] += 1
        try:
            msg = parse_dhcp(data)
            self.machine.on_message(msg, now)
        except WireError as exc:
            stats.drop(exc.reason)
            return
        except ValueError:  # a field the codec refuses (never expected)
            stats.drop("dhcp.malformed")
            return
        stats[f"dhcp.rx_{_TYPE_NAMES.get(msg.message_type, 'other')}"] += 1

    # --- the task ------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        machine = self.machine
        machine.start(trio.current_time(), self.config.requested_address)
        task_status.started()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._act()
                while True:
                    with trio.CancelScope(deadline=machine.next_deadline) as scope:
                        self._scope = scope
                        while True:
                            data = await self._receive.receive()
                            self._input(data, trio.current_time())
                            # Before acting: a probe must not be cut short by
                            # the previous state's timer.
                            scope.deadline = machine.next_deadline
                            await self._act()
                            scope.deadline = machine.next_deadline
                    self._scope = None
                    machine.on_timer(trio.current_time())
                    await self._act()
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    async def _act(self) -> None:
        """Carry out what the machine asked for, until it asks nothing more."""
        machine = self.machine
        while True:
            actions = machine.pop_actions()
            if not actions:
                return
            for action in actions:
                if type(action) is ProbeAddress:
                    self.stats["dhcp.probes"] += 1
                    conflict = await self.iface.probe_ipv4(action.address, self.rng)
                    if conflict:
                        self.stats["dhcp.conflicts"] += 1
                        log.warning("%s: %s is in use by another host (ARP probe): declining",
                                    self.iface.name, action.address)
                    machine.on_probe_result(conflict, trio.current_time())
                else:
                    self._do(action)

    def _do(self, action) -> None:
        try:
            kind = type(action)
            if kind is SendMessage:
                self._transmit(action)
            elif kind is LeaseAcquired:
                self._acquired(action.lease)
            elif kind is LeaseRenewed:
                self._renewed(action.lease)
            elif kind is LeaseLost:
                self._lost(action.lease, action.reason)
        except Exception:  # a bug must not stop the client
            self.stats.drop("internal.error")
            log.exception("%s: DHCP client error on %r", self.iface.name, action)

    def release(self) -> IPv4Address | None:
        """RELEASE the lease (if any) and stop (RFC 2131 4.4.6); returns the
        server's address the RELEASE went to, or None."""
        lease = self.machine.lease
        self.machine.release(trio.current_time())
        for action in self.machine.pop_actions():
            self._do(action)
        if self._scope is not None:
            self._scope.deadline = self.machine.next_deadline
        return lease.server_id if lease is not None else None

    # --- sending ----------------------------------------------------------------

    def _transmit(self, action: SendMessage) -> None:
        msg = action.message
        stats = self.stats
        iface = self.iface
        src = msg.ciaddr  # 0.0.0.0 until an address is bound (RFC 2131 4.1)
        dst = action.destination
        payload = build_dhcp(msg)
        try:
            if action.broadcast:
                # RFC 2131 4.1: to 255.255.255.255 out of this interface,
                # whatever the routing table says (there may be none yet).
                datagram = build_udp(DHCP_CLIENT_PORT, DHCP_SERVER_PORT, payload, src, dst)
                iface.send_ip(build_ipv4_plain(src, dst, PROTO_UDP, self.rng.getrandbits(16),
                                               datagram), dst)
                stats["ipv4.tx"] += 1
            else:
                try:
                    path = self.network.path_to(dst)
                except OSError:
                    stats.drop("dhcp.no_route")
                    return
                datagram = build_udp(DHCP_CLIENT_PORT, DHCP_SERVER_PORT, payload, src, dst,
                                     compute_checksum=not path.offload)
                self.network.send(path, src, dst, PROTO_UDP, datagram)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            stats.drop("dhcp.link_down")
            return
        stats["udp.tx"] += 1
        stats[f"dhcp.tx_{_TYPE_NAMES.get(msg.message_type, 'other')}"] += 1
        log.debug("%s: DHCP %s to %s", iface.name, _TYPE_NAMES.get(msg.message_type), dst)

    # --- leases -----------------------------------------------------------------

    def _acquired(self, lease: DhcpLease) -> None:
        iface = self.iface
        try:
            self._entry = iface.add_address(lease.interface, origin="dhcp")
        except ValueError as exc:
            self._entry = None
            self.stats.drop("dhcp.address_unusable")
            log.error("%s: DHCP lease %s cannot be used: %s", iface.name, lease.interface, exc)
        self._set_router(lease)
        self._set_mtu(lease.mtu)
        # RFC 5227 2.3: announce the address we now use.
        iface.announce_ipv4(lease.ip)
        if self._nursery is not None:
            self._nursery.start_soon(self._announce_again, lease.ip)
        iface.set_dhcp_lease(lease)
        self.stats["dhcp.leases"] += 1
        log.info("%s: DHCP lease %s from %s (router %s, DNS %s, %s s)", iface.name,
                 lease.interface, lease.server_id, lease.router,
                 ", ".join(map(str, lease.dns_servers)) or "none", lease.lease_time)
        self._on_lease(iface)

    async def _announce_again(self, address: IPv4Address) -> None:
        for _ in range(_ANNOUNCE_NUM - 1):
            await trio.sleep(_ANNOUNCE_INTERVAL)
            lease = self.machine.lease
            if lease is None or lease.ip != address:
                return
            try:
                self.iface.announce_ipv4(address)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return

    def _renewed(self, lease: DhcpLease) -> None:
        iface = self.iface
        old = iface.dhcp_lease
        self._set_router(lease)
        self._set_mtu(lease.mtu)
        iface.set_dhcp_lease(lease)
        self.stats["dhcp.renewals"] += 1
        log.info("%s: DHCP lease %s renewed for %s s", iface.name, lease.interface,
                 lease.lease_time)
        if old is None or old.dns_servers != lease.dns_servers \
                or old.domain_name != lease.domain_name:
            self._on_lease(iface)

    def _lost(self, lease: DhcpLease, reason: str) -> None:
        """RFC 2131 4.4.5 (expiry), 3.2 (NAK): stop using the address: it,
        its routes and what used it (the transports end those) go."""
        iface = self.iface
        self._set_router(None)
        self._set_mtu(None)
        iface.set_dhcp_lease(None)
        entry, self._entry = self._entry, None
        if entry is not None and entry in iface.addresses:
            iface.remove_address(entry)
        self.stats[f"dhcp.lost_{reason}"] += 1
        log.log(logging.INFO if reason == "released" else logging.WARNING,
                "%s: DHCP lease %s lost (%s)", iface.name, lease.interface, reason)
        self._on_lease(iface)

    def _set_router(self, lease: DhcpLease | None) -> None:
        """A default route via the lease's first router (RFC 2132 3.5)."""
        network = self.network
        router = lease.router if lease is not None else None
        route = self._route
        if route is not None:
            if route.gateway == router and route in network.routes:
                return
            self._route = None
            if route in network.routes:
                network.routes.remove(route)
                network.routing.paths.clear()
        if router is None or router == lease.ip or router.is_unspecified:
            return
        used = {r.metric for r in network.routes if r.network == _DEFAULT_ROUTE}
        metric = 0
        while metric in used:
            metric += 1
        try:
            self._route = network.add_route(_DEFAULT_ROUTE, gateway=router,
                                            interface=self.iface, metric=metric)
        except ValueError as exc:
            self.stats.drop("dhcp.bad_router")
            log.warning("%s: DHCP router %s not used: %s", self.iface.name, router, exc)

    def _set_mtu(self, mtu: int | None) -> None:
        """The interface MTU option (RFC 2132 5.1), only ever lowering the
        link's; undone with the lease."""
        iface = self.iface
        if self._saved_mtu is not None:
            iface.mtu, self._saved_mtu = self._saved_mtu, None
        if mtu is not None and mtu < iface.mtu:
            self._saved_mtu = iface.mtu
            iface.mtu = mtu
        self.network.routing.paths.clear()


class DhcpClients:
    """The stack's DHCP clients, one per interface, sharing UDP port 68."""

    def __init__(self, network: Any, udp: Any, stats: Any, rng: random.Random,
                 on_lease: Callable[[Any], None]):
        self.network = network
        self.udp = udp
        self.stats = stats
        self._rng = rng
        self._on_lease = on_lease
        self.clients: dict[Any, DhcpClient] = {}

    def add(self, iface: Any, config: DhcpConfig) -> DhcpClient:
        # Each client its own generator, seeded from the stack's: one
        # interface's traffic does not change another's draws.
        client = DhcpClient(iface, self.network, self.stats,
                            random.Random(self._rng.getrandbits(64)), config, self._on_lease)
        self.clients[iface] = client
        iface.dhcp_enabled = True
        self.udp.port_handlers[DHCP_CLIENT_PORT] = self.input
        return client

    def input(self, iface: Any, data: bytes, src, src_port: int, dst) -> None:
        """A datagram to port 68 (the UDP layer's port hook)."""
        client = self.clients.get(iface)
        if client is None:
            raise WireError("dhcp.no_client")
        if src_port != DHCP_SERVER_PORT:
            raise WireError("dhcp.bad_port")  # RFC 2131 4.1: servers send from 67
        client.deliver(data)

    async def release_all(self, wait: float = 1.0) -> None:
        """RELEASE every lease (RFC 2131 4.4.6), then wait up to ``wait``
        seconds for their servers' MAC addresses if ARP must find them."""
        waiting = []
        for iface, client in self.clients.items():
            if not client.config.release_on_exit or not iface.up:
                continue
            lease = client.lease
            hop = None
            if lease is not None:
                try:
                    path = self.network.path_to(lease.server_id)
                    hop = (path.interface, path.next_hop)
                except OSError:
                    pass
            client.release()
            if hop is not None:
                waiting.append(hop)
        if not waiting or wait <= 0:
            return
        with trio.move_on_after(wait):
            while any(hop in iface.arp.pending_addresses() for iface, hop in waiting):
                await trio.sleep(0.01)
