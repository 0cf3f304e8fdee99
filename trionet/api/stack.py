"""The Stack: one TCP/IP stack, its layers composed and its tasks run.

``Stack`` makes each layer and hands it what it needs: the network layer
(interfaces, routes, IPv4, ICMP) gets the stats and a seeded random source;
UDP and TCP get the network layer, the stats, and (TCP) a spawn function and
a secret. The stack's nursery runs the network layer's tasks and one task
per TCP connection.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import socket
from contextlib import AsyncExitStack
from typing import Any

import trio

from ..dhcp.client import DhcpClients, DhcpConfig
from ..interface import ArpConfig, AutoconfConfig, Interface, NdpConfig
from ..link.base import Link
from ..network import NetworkLayer, Path, ReassemblyConfig, Route
from ..stats import Stats
from ..tcp.demux import TcpLayer
from ..tcp.listener import Listener, TcpForwarder
from ..tcp.stream import Stream
from ..transport.ports import EphemeralPortAllocator
from ..transport.udp import MAX_UDP_PAYLOAD, UdpForwarder, UdpLayer, UdpSocket
from ..validate import (check_int, check_number, check_port, check_seconds,
                        parse_address)
from . import names
from .names import HostsTable
from .resolver import Resolver

log = logging.getLogger("trionet.stack")


def _check_options(*, forwarding, arp, reassembly, icmp_error_rate, icmp_error_burst,
                   udp_queue_size, close_timeout, max_connections) -> None:
    """Stack(...) arguments: TypeError/ValueError naming the bad one."""
    if not isinstance(forwarding, bool):
        raise TypeError(f"forwarding must be a bool, not {type(forwarding).__name__}")
    if arp is not None:
        if not isinstance(arp, ArpConfig):
            raise TypeError(f"arp must be a trionet.ArpConfig, not {type(arp).__name__}")
        check_seconds(arp.timeout, "arp.timeout", positive=True)
        check_seconds(arp.retry_interval, "arp.retry_interval", positive=True)
        for name in ("max_tries", "max_pending_packets", "max_pending_hosts", "max_entries"):
            check_int(getattr(arp, name), f"arp.{name}", 1)
    if reassembly is not None:
        if not isinstance(reassembly, ReassemblyConfig):
            raise TypeError(f"reassembly must be a trionet.ReassemblyConfig, not "
                            f"{type(reassembly).__name__}")
        check_seconds(reassembly.timeout, "reassembly.timeout", positive=True)
        check_seconds(reassembly.ipv6_timeout, "reassembly.ipv6_timeout", positive=True)
        check_int(reassembly.max_bytes, "reassembly.max_bytes", 0)
        check_int(reassembly.max_fragments, "reassembly.max_fragments", 1)
    rate = check_number(icmp_error_rate, "icmp_error_rate")
    if not 0 <= rate < math.inf:
        raise ValueError(f"icmp_error_rate must be a finite number >= 0 (errors a second), "
                         f"not {icmp_error_rate}")
    check_int(icmp_error_burst, "icmp_error_burst", 0)
    check_int(udp_queue_size, "udp_queue_size", 1)
    check_seconds(close_timeout, "close_timeout")
    check_int(max_connections, "max_connections", 1)


class Stack:
    """A TCP/IP stack. ``async with Stack() as stack:`` runs every task of
    it (NICs, ARP resolvers, timers, connections) in its own nursery.

    Many stacks can live in one process; they share nothing. ``seed`` makes
    everything random repeatable: MACs, ports, ISNs, timestamp offsets,
    SYN-cookie secrets, IP and ping identifiers.
    """

    def __init__(self, *, forwarding: bool = False, arp: ArpConfig | None = None,
                 reassembly: ReassemblyConfig | None = None, icmp_error_rate: float = 1000.0,
                 icmp_error_burst: int = 50, udp_queue_size: int = 256, seed: int | None = None,
                 close_timeout: float = 2.0, max_connections: int = 65536,
                 stats: Stats | None = None, name: str | None = None,
                 ndp: NdpConfig | None = None, autoconf: AutoconfConfig | None = None,
                 nameservers: Any = ()):
        _check_options(forwarding=forwarding, arp=arp, reassembly=reassembly,
                       icmp_error_rate=icmp_error_rate, icmp_error_burst=icmp_error_burst,
                       udp_queue_size=udp_queue_size, close_timeout=close_timeout,
                       max_connections=max_connections)
        if ndp is not None and not isinstance(ndp, NdpConfig):
            raise TypeError(f"ndp must be a trionet.NdpConfig, not {type(ndp).__name__}")
        if autoconf is not None and not isinstance(autoconf, AutoconfConfig):
            raise TypeError(f"autoconf must be a trionet.AutoconfConfig, not "
                            f"{type(autoconf).__name__}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        #: A name for logs (the host's, in a simulated network).
        self.name = name
        if stats is not None and not isinstance(stats, Stats):
            raise TypeError(f"stats must be a trionet.Stats, not {type(stats).__name__}")
        #: Counters of what the stack received, sent and dropped (pass
        #: ``stats=`` to count into a Stats of your own).
        self.stats = stats if stats is not None else Stats()
        #: Seconds a normal exit of ``async with`` waits for connections to
        #: close with FIN before it resets what is left.
        self.close_timeout = float(close_timeout)
        rng = random.Random(seed)
        secret = rng.randbytes(32)
        #: The network layer: interfaces, routes, IPv4, ICMP.
        self.network = NetworkLayer(self.stats, rng, forwarding=forwarding, arp=arp,
                                    reassembly=reassembly, icmp_error_rate=icmp_error_rate,
                                    icmp_error_burst=icmp_error_burst, ndp=ndp,
                                    autoconf=autoconf,
                                    secret=hashlib.blake2s(b"trionet ipv6 " + secret).digest())
        self.udp = UdpLayer(self.network, self.stats,
                            EphemeralPortAllocator(secret=rng.randbytes(32)),
                            queue_size=udp_queue_size)
        #: TCP: connections, listeners, and the defaults new connections copy
        #: (``stack.tcp.config``).
        self.tcp = TcpLayer(self.network, self.stats, self._spawn, secret,
                            max_connections=max_connections, name=name)
        #: Static names -> addresses (``stack.hosts["db"] = ["10.0.0.5"]``),
        #: asked first by ``getaddrinfo`` (and so by Trio inside ``use_stack``).
        self.hosts = HostsTable()
        self._static_nameservers = names.check_nameservers(nameservers)
        #: DNS (``stack.resolver.timeout``, ``.lifetime``, ``.cache``): asked
        #: by ``getaddrinfo`` for names the hosts table does not have.
        self.resolver = Resolver(self, rng=random.Random(
            hashlib.blake2s(b"trionet dns " + secret).digest()))
        #: DHCPv4 clients by interface (``add_interface(link, dhcp=True)``).
        self._dhcp = DhcpClients(self.network, self.udp, self.stats, rng,
                                 self._dhcp_lease_changed)
        self._nursery: trio.Nursery | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "running" if self.running else ("closed" if self._closed else "not started")
        name = f" {self.name}" if self.name else ""
        return f"<trionet.Stack{name} {len(self.interfaces)} interfaces, {state}>"

    # --- lifecycle --------------------------------------------------------

    async def __aenter__(self) -> Stack:
        if self._exit_stack is not None or self._closed:
            raise RuntimeError("a Stack can be entered only once")
        self._exit_stack = AsyncExitStack()
        await self._exit_stack.__aenter__()
        try:
            self._nursery = await self._exit_stack.enter_async_context(trio.open_nursery())
            await self._nursery.start(self.network.run)
            for client in self._dhcp.clients.values():
                await self._nursery.start(client.run)
        except BaseException as exc:
            await self._exit_stack.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        try:
            graceful = False
            try:
                # A normal exit (no exception, not cancelled) closes every
                # connection with FIN and waits up to close_timeout for them
                # to finish; an exit by exception or cancellation resets them
                # at once. Either way close_all() resets what is left.
                if (exc_type is None and self.close_timeout > 0
                        and trio.current_effective_deadline() != -math.inf):
                    await self.tcp.close_gracefully(self.close_timeout)
                    graceful = True
                if exc_type is None and self._dhcp.clients:
                    # RFC 2131 4.4.6: give leases back, while the links are up.
                    await self._dhcp.release_all(
                        1.0 if trio.current_effective_deadline() != -math.inf else 0.0)
            finally:
                self.tcp.close_all(graceful=graceful)
                self._nursery.cancel_scope.cancel()
                # The body's own exception propagates as it is, not wrapped in the
                # nursery's ExceptionGroup; only our tasks' failures are raised here.
                await self._exit_stack.__aexit__(None, None, None)
            return False
        finally:
            self._closed = True
            self._nursery = None
            self.udp.close_all()
            with trio.CancelScope(shield=True):
                await self.network.aclose()

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def _spawn(self, fn, *args) -> None:
        self._check_running()
        self._nursery.start_soon(fn, *args)

    def _check_running(self) -> None:
        if self._nursery is None:
            raise RuntimeError("the stack is not running: use 'async with Stack() as stack:'")

    # --- configuration and routing ----------------------------------------------

    @property
    def interfaces(self) -> list[Interface]:
        return self.network.interfaces

    @property
    def routes(self):
        return self.network.routes

    @property
    def forwarding(self) -> bool:
        """Whether datagrams for others are routed on (RFC 1812)."""
        return self.network.forwarding

    @forwarding.setter
    def forwarding(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"forwarding must be a bool, not {type(value).__name__}")
        self.network.forwarding = value

    def add_interface(self, link: Link, address: Any = None, *, gateway: Any = None,
                      mac: bytes | str | None = None, name: str | None = None,
                      dhcp: bool | DhcpConfig = False) -> Interface:
        """Attach ``link`` with ``address`` ("10.0.0.2/24" or "fd00::2/64";
        more with ``interface.add_address``); a connected route to its
        network is added, and a default route via ``gateway`` if given (an
        IPv6 router is usually link-local: "fe80::1"). An Ethernet link also
        gets an IPv6 link-local address (RFC 7217, from the stack's seed)
        and takes addresses from router advertisements (SLAAC, RFC 4862);
        new IPv6 addresses are tentative until duplicate address detection
        passes (``interface.addresses`` shows their state).

        ``dhcp=True`` (or a ``trionet.DhcpConfig``) runs a DHCPv4 client on
        the interface (RFC 2131; an Ethernet link): the lease's address,
        routes, MTU and name servers are configured and removed as it comes
        and goes (``interface.dhcp_lease``, ``await
        interface.dhcp_bound()``). It excludes an IPv4 ``address`` and
        ``gateway`` (ValueError); an IPv6 one may go with it."""
        config = None
        if dhcp is True:
            config = DhcpConfig()
        elif isinstance(dhcp, DhcpConfig):
            config = dhcp
        elif dhcp is not False and dhcp is not None:
            raise TypeError(f"dhcp must be a bool or a trionet.DhcpConfig, not "
                            f"{type(dhcp).__name__}")
        if config is not None:
            for value, what in ((address, "address"), (gateway, "gateway")):
                if value is not None and ":" not in str(value):
                    raise ValueError(f"{what}: an IPv4 {what} and dhcp exclude each other "
                                     "(the DHCP lease gives them)")
            if not getattr(link, "needs_arp", True) or not getattr(link, "ethernet", True):
                raise ValueError("dhcp: DHCP needs an Ethernet link (this one has no "
                                 "link-layer broadcast)")
        iface = self.network.add_interface(link, address, gateway=gateway, mac=mac, name=name)
        if config is not None:
            client = self._dhcp.add(iface, config)
            if self._nursery is not None:
                self._nursery.start_soon(client.run)
        return iface

    def _dhcp_lease_changed(self, iface: Interface) -> None:
        """A DHCP lease came, changed or went on ``iface``: ``nameservers``
        (which reads ``iface.dhcp_lease``) changes with it."""
        log.debug("%s: name servers now %s", iface.name,
                  ", ".join(map(str, self.nameservers)) or "none")

    def add_route(self, network: Any, *, gateway: Any = None, interface: Interface | None = None,
                  metric: int = 0) -> Route:
        """Route ``network`` via ``gateway`` (or directly on ``interface``);
        a link-local IPv6 gateway needs ``interface`` or a scope
        ("fe80::1%eth0")."""
        return self.network.add_route(network, gateway=gateway, interface=interface,
                                      metric=metric)

    def path_to(self, dst: Any) -> Path:
        """The interface, next hop and source address for ``dst``;
        OSError(ENETUNREACH) when no route leads there."""
        return self.network.path_to(self.network.scoped(parse_address(dst, "dst")))

    def is_local_address(self, address: Any) -> bool:
        """Whether ``address`` (text or an ``ipaddress`` object; a link-local
        one with its scope) is a usable address of this stack."""
        return self.network.is_local_address(self.network.scoped(parse_address(address)))

    def tasks(self) -> list[trio.lowlevel.Task]:
        """Every task the stack runs (at any depth), for introspection."""
        found = []
        pending = [self._nursery] if self._nursery is not None else []
        while pending:
            for task in pending.pop().child_tasks:
                found.append(task)
                pending.extend(task.child_nurseries)
        return found

    def resources(self) -> dict[str, int]:
        """What the stack holds right now, counted: tasks, connections,
        listeners, sockets, queues and reassembly memory (read-only; for
        tests and monitoring)."""
        counts = {"tasks": len(self.tasks())}
        counts.update(self.network.resources())
        counts["udp_sockets"] = len(self.udp.sockets)
        counts["udp_forwarders"] = len(self.udp.forwarders)
        counts["udp_forwarder_queue"] = sum(f.queued for f in self.udp.forwarders.values())
        counts.update(self.tcp.resources())
        return counts

    # --- names -----------------------------------------------------------------

    async def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> list[tuple]:
        """What ``socket.getaddrinfo`` would return, answered by this stack:
        numeric hosts as they are, names from ``stack.hosts``, then
        ``localhost``, then DNS (``stack.nameservers``; A and AAAA as
        ``family`` asks, in RFC 6724 order). ``socket.gaierror``: EAI_NONAME
        for a name that does not exist or has no address (or no server to
        ask), EAI_AGAIN when the servers time out or fail (SERVFAIL),
        EAI_FAIL for answers that cannot be used."""
        return await names.getaddrinfo(self, host, port, family, type, proto, flags)

    @property
    def nameservers(self) -> list:
        """The DNS servers in use now, in order: ``Stack(nameservers=...)``,
        then those of DHCP leases, then those IPv6 routers advertise (RDNSS,
        RFC 8106; a link-local one with its interface as scope)."""
        return names.current_nameservers(self._static_nameservers, self.interfaces)

    async def getnameinfo(self, sockaddr: tuple, flags: int = 0) -> tuple[str, str]:
        """What ``socket.getnameinfo`` would return, from ``stack.hosts``."""
        return await names.getnameinfo(self, sockaddr, flags)

    def socket_families(self) -> frozenset[int]:
        """The address families this stack has sockets for (``use_stack``)."""
        return frozenset({socket.AF_INET, socket.AF_INET6})

    # --- ICMP -----------------------------------------------------------------

    async def ping(self, host: Any, *, size: int = 56, timeout: float = 1.0,
                   ttl: int = 64) -> float:
        """Send one ICMP (or ICMPv6) echo request of ``size`` data bytes with
        ``ttl`` (the hop limit); return the round trip in seconds.
        TimeoutError without a reply; OSError when an ICMP error comes back.
        A link-local IPv6 host takes its interface: "fe80::1%eth0"."""
        dst = parse_address(host, "host")
        check_int(size, "size", 0, MAX_UDP_PAYLOAD)
        check_seconds(timeout, "timeout", positive=True, allow_inf=True)
        check_int(ttl, "ttl", 1, 255)
        self._check_running()
        return await self.network.ping(dst, size, timeout, ttl)

    # --- UDP ----------------------------------------------------------------

    async def open_udp_socket(self, local_port: int = 0, *, local_address: Any = None) -> UdpSocket:
        """A UDP socket bound to ``local_port`` (0: a random free port) on
        ``local_address``: None or "::" for every address of both families,
        "0.0.0.0" for every IPv4 one, or one of the stack's."""
        return await self.udp.open(local_port, local_address)

    # --- forwarders -----------------------------------------------------------

    def _forwarder_interface(self, interface: Any) -> Interface:
        if isinstance(interface, str):
            found = self.network.routing.interface_named(interface)
            if found is None:
                raise ValueError(f"interface: the stack has no interface {interface!r}")
            return found
        if not isinstance(interface, Interface):
            raise TypeError(f"interface must be a trionet.Interface or its name, not "
                            f"{type(interface).__name__}")
        if interface not in self.interfaces:
            raise ValueError("interface: not an interface of this stack")
        return interface

    async def open_tcp_forwarder(self, interface: Any, *,
                                 backlog: int | None = None) -> TcpForwarder:
        """A ``trio.abc.Listener`` of TCP connections to *any* address and
        port arriving on ``interface`` (an Interface of this stack or its
        name), as gVisor's tcp.Forwarder: the handshake is completed as if
        the destination were ours, and the stream's ``local_address`` is
        the original destination. Connections to the stack's own addresses
        still go to its listeners. Bounded as a listener (SYN cookies,
        ``backlog``, ``max_connections``). OSError(EADDRINUSE) if the
        interface has a TCP forwarder already."""
        self._check_running()
        iface = self._forwarder_interface(interface)
        await trio.lowlevel.checkpoint()
        return TcpForwarder(self.tcp, iface, backlog)

    async def open_udp_forwarder(self, interface: Any, *,
                                 queue_size: int | None = None) -> UdpForwarder:
        """Datagrams to *any* address and port arriving on ``interface``:
        ``data, source, destination = await forwarder.receive()`` (both
        ``(host, port)``), answered with ``await forwarder.sendto(data,
        source, source_address=destination)``. A bounded queue
        (``queue_size``, by default the stack's ``udp_queue_size``); beyond
        it datagrams are dropped, counted. Datagrams to the stack's own
        addresses still go to its sockets. OSError(EADDRINUSE) if the
        interface has a UDP forwarder already."""
        self._check_running()
        iface = self._forwarder_interface(interface)
        if queue_size is None:
            queue_size = self.udp.queue_size
        check_int(queue_size, "queue_size", 1)
        return await self.udp.open_forwarder(iface, queue_size)

    # --- TCP ---------------------------------------------------------------------

    async def open_tcp_stream(self, host: Any, port: int, *, local_port: int | None = None,
                              happy_eyeballs_delay: float = 0.25) -> Stream:
        """Connect to ``(host, port)``; returns a ``trionet.Stream``.

        A name is resolved (``getaddrinfo``) and its addresses tried as
        Trio's ``open_tcp_stream`` does (RFC 8305 happy eyeballs): the next
        attempt starts when one fails or ``happy_eyeballs_delay`` seconds
        pass; the first to connect wins, the others are cancelled. If all
        fail, OSError (its ``__cause__`` holds each attempt's error; the
        error itself when there was one address).

        ConnectionRefusedError (ECONNREFUSED) on RST, TimeoutError (ETIMEDOUT)
        when the SYNs go unanswered, OSError(ENETUNREACH) with no route,
        ``socket.gaierror`` when the name does not resolve."""
        self._check_running()
        if names.is_name(host):
            check_port(port, "port", allow_zero=False)
            if local_port is not None:
                check_port(local_port, "local_port")
            check_seconds(happy_eyeballs_delay, "happy_eyeballs_delay", allow_inf=True)
            return await names.open_tcp_by_name(self, host, port, local_port=local_port,
                                                delay=happy_eyeballs_delay)
        return Stream(await self.tcp.connect(host, port, local_port=local_port))

    async def open_tcp_listeners(self, port: int, *, host: Any = None,
                                 backlog: int | None = None) -> list[Listener]:
        """A list with one ``trionet.Listener`` on ``port`` (0: a free port),
        on ``host`` or (None, or "::") on every address of the stack, of
        both families ("0.0.0.0": every IPv4 one)."""
        self._check_running()
        check_port(port, "port")
        address = self.network.bind_address(host, "host")
        await trio.lowlevel.checkpoint()
        return [Listener(self.tcp, port, address, backlog)]

    async def serve_tcp(self, handler, port: int, *, host: Any = None, backlog: int | None = None,
                        handler_nursery: trio.Nursery | None = None,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
        """As ``trio.serve_tcp``: accept forever, one ``handler(stream)`` task
        per connection."""
        listeners = await self.open_tcp_listeners(port, host=host, backlog=backlog)
        await trio.serve_listeners(handler, listeners, handler_nursery=handler_nursery,
                                   task_status=task_status)
