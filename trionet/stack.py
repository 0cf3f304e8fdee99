"""The Stack: interfaces, routing, IPv4 in and out, ICMP, UDP and the tasks."""

from __future__ import annotations

import errno
import logging
import math
import random
from contextlib import AsyncExitStack
from ipaddress import IPv4Address, IPv4Interface
from typing import Any, Callable

import attrs
import trio

from .arp import ArpConfig
from .interface import Interface
from .ipv4 import (Reassembler, ReassemblyConfig, fragment, is_acceptable_source,
                   is_unicast_source)
from .link.base import Link
from .link.loopback import LoopbackLink
from .route import IPAddress, Route, RouteTable, parse_address, parse_network
from .stats import Stats
from .tcp.layer import TcpLayer
from .udp import MAX_UDP_PAYLOAD, UdpSocket, check_port
from .wire.checksum import internet_checksum, pseudo_header_sum
from .wire.errors import WireError
from .wire.ethernet import ETH_HEADER_LEN, mac_from_str, mac_to_str, random_local_mac
from .wire.icmpv4 import (ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
                          ICMP_TIME_EXCEEDED, TIME_EXCEEDED_REASSEMBLY, TIME_EXCEEDED_TTL,
                          UNREACH_FRAG_NEEDED, UNREACH_HOST, UNREACH_NET, UNREACH_PORT,
                          UNREACH_PROTOCOL, IcmpMessage, build_icmpv4, parse_icmpv4)
from .wire.ipv4 import (PROTO_ICMP, PROTO_TCP, PROTO_UDP, IPv4Header, build_ipv4, build_ipv4_plain,
                        parse_ipv4, quote_for_icmp)
from .wire.udp import build_udp, parse_udp

log = logging.getLogger("trionet.stack")

_LIMITED_BROADCAST = IPv4Address("255.255.255.255")
#: RFC 792 types that are errors: never answered with another error (RFC 1122 3.2.2).
_ICMP_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))
_UNREACH_ERRNO = {UNREACH_NET: errno.ENETUNREACH, UNREACH_HOST: errno.EHOSTUNREACH,
                  UNREACH_PROTOCOL: errno.ENOPROTOOPT, UNREACH_PORT: errno.ECONNREFUSED,
                  UNREACH_FRAG_NEEDED: errno.EMSGSIZE}


@attrs.frozen(slots=True)
class Path:
    """How to reach one destination: the route lookup's cached answer."""
    interface: Interface
    next_hop: IPAddress
    #: Our address to send from.
    source: IPAddress
    #: The destination is one of our own addresses.
    local: bool
    mtu: int
    #: Checksums may be skipped (the packet never leaves memory, or the
    #: link completes them: ``Link.checksum_offload``).
    offload: bool
    #: TSO: the largest IPv4 datagram the link cuts into MSS-sized segments
    #: itself (``ip_send(..., gso_size=MSS)``); 0 when it does not.
    tso_max: int = 0


@attrs.define(slots=True)
class _PingWaiter:
    payload: bytes
    sent_at: float
    event: trio.Event = attrs.Factory(trio.Event)
    rtt: float | None = None
    error: OSError | None = None


class _TokenBucket:
    """ICMP error rate limit (RFC 1812 4.3.2.8; Linux: 1000/s, burst 50)."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, float(burst), None

    def take(self, now: float) -> bool:
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def check_int(value: Any, what: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum]; TypeError/ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = (f"at least {minimum}" if maximum is None else
                  f"at most {maximum}" if minimum is None else f"in {minimum}-{maximum}")
        raise ValueError(f"{what} must be {bounds}, not {value}")
    return value


def check_seconds(value: Any, what: str, *, positive: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a number of seconds (>= 0, or > 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or value < 0 or (positive and value == 0) or (
            math.isinf(value) and not allow_inf):
        raise ValueError(f"{what} must be a {'positive' if positive else 'non-negative'} "
                         f"{'' if allow_inf else 'finite '}number of seconds, not {value}")
    return value


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
        check_int(reassembly.max_bytes, "reassembly.max_bytes", 0)
        check_int(reassembly.max_fragments, "reassembly.max_fragments", 1)
    if isinstance(icmp_error_rate, bool) or not isinstance(icmp_error_rate, (int, float)):
        raise TypeError(f"icmp_error_rate must be a number, not {type(icmp_error_rate).__name__}")
    if not 0 <= icmp_error_rate < math.inf:
        raise ValueError(f"icmp_error_rate must be a finite number >= 0 (errors a second), "
                         f"not {icmp_error_rate}")
    check_int(icmp_error_burst, "icmp_error_burst", 0)
    check_int(udp_queue_size, "udp_queue_size", 1)
    check_seconds(close_timeout, "close_timeout")
    check_int(max_connections, "max_connections", 1)


class Stack:
    """A TCP/IP stack. ``async with Stack() as stack:`` runs every task of
    it (NICs, ARP resolvers, timers, connections) in its own nursery.

    Many stacks can live in one process; they share nothing.
    """

    def __init__(self, *, forwarding: bool = False, arp: ArpConfig | None = None,
                 reassembly: ReassemblyConfig | None = None, icmp_error_rate: float = 1000.0,
                 icmp_error_burst: int = 50, udp_queue_size: int = 256, seed: int | None = None,
                 close_timeout: float = 2.0, max_connections: int = 65536):
        _check_options(forwarding=forwarding, arp=arp, reassembly=reassembly,
                       icmp_error_rate=icmp_error_rate, icmp_error_burst=icmp_error_burst,
                       udp_queue_size=udp_queue_size, close_timeout=close_timeout,
                       max_connections=max_connections)
        self.stats = Stats()
        #: Seconds a normal exit of ``async with`` waits for connections to
        #: close with FIN before it resets what is left.
        self.close_timeout = float(close_timeout)
        self.forwarding = forwarding
        self.interfaces: list[Interface] = []
        self.routes = RouteTable()
        self._arp_config = arp
        self._rng = random.Random(seed)
        self._local: dict[IPAddress, Interface] = {}
        self._paths: dict[IPAddress, Path] = {}
        self._reassembler = Reassembler(reassembly)
        self._icmp_bucket = _TokenBucket(icmp_error_rate, icmp_error_burst)
        self._udp: dict[tuple[IPAddress | None, int], UdpSocket] = {}
        self._udp_queue_size = udp_queue_size
        self._ip_id = self._rng.randrange(65536)
        self._ping_ident = self._rng.randrange(65536)
        self._ping_seq = 0
        self._pings: dict[tuple[int, int], _PingWaiter] = {}
        #: TCP: connections, listeners, and the defaults new connections copy
        #: (``stack.tcp.config``).
        self.tcp = TcpLayer(self, self._rng.randbytes(32), max_connections=max_connections)
        self._protocols: dict[int, Callable] = {
            PROTO_ICMP: self._icmp_input, PROTO_UDP: self._udp_input, PROTO_TCP: self.tcp.input,
        }
        #: Carries packets to our own addresses (like Linux's lo).
        self._local_link = LoopbackLink()
        self._nursery: trio.Nursery | None = None
        self._exit_stack: AsyncExitStack | None = None
        self._timer_scope: trio.CancelScope | None = None
        self._closed = False

    # --- lifecycle --------------------------------------------------------

    async def __aenter__(self) -> Stack:
        if self._exit_stack is not None or self._closed:
            raise RuntimeError("a Stack can be entered only once")
        self._exit_stack = AsyncExitStack()
        await self._exit_stack.__aenter__()
        try:
            self._nursery = await self._exit_stack.enter_async_context(trio.open_nursery())
            self._nursery.start_soon(self._local_task)
            self._nursery.start_soon(self._timer_task)
            for iface in self.interfaces:
                await self._nursery.start(iface.run)
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
            for sock in list(self._udp.values()):
                sock.close()
            with trio.CancelScope(shield=True):
                for iface in self.interfaces:
                    await iface.link.aclose()
                await self._local_link.aclose()

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def _start_task(self, fn, *args) -> None:
        if self._nursery is None:
            raise RuntimeError("the stack is not running: use 'async with Stack() as stack:'")
        self._nursery.start_soon(fn, *args)

    # --- configuration ----------------------------------------------------

    def add_interface(self, link: Link, address: str | IPv4Interface, *, gateway: Any = None,
                      mac: bytes | str | None = None, name: str | None = None) -> Interface:
        """Attach ``link`` with ``address`` ("10.0.0.2/24"); a connected route
        to its network is added, and a default route via ``gateway`` if given."""
        if not isinstance(link, Link):
            raise TypeError(f"link must be a trionet.link.Link, not {type(link).__name__}")
        try:
            iface_address = IPv4Interface(address)
        except (ValueError, TypeError):
            raise ValueError(f"address: {address!r} is not an IPv4 address with prefix "
                             "(e.g. '10.0.0.2/24')") from None
        ip, network = iface_address.ip, iface_address.network
        if ip.is_multicast or ip.is_unspecified or ip == _LIMITED_BROADCAST:
            raise ValueError(f"address: {ip} cannot be a host's address")
        if network.prefixlen < 31 and ip in (network.network_address, network.broadcast_address):
            raise ValueError(f"address: {ip} is the {'network' if ip == network.network_address else 'broadcast'}"
                             f" address of {network}, not a host on it")
        if iface_address.ip in self._local:
            raise ValueError(f"address: {iface_address.ip} is already assigned")
        if any(i.link is link for i in self.interfaces):
            raise ValueError("link: already attached to an interface of this stack")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        # Check every argument before changing anything: a bad one must not
        # leave a half-added interface behind.
        gw = parse_address(gateway, "gateway") if gateway is not None else None
        if gw is not None and (gw not in iface_address.network or gw == iface_address.ip):
            raise ValueError(f"gateway: {gw} is not another host on {iface_address.network}")
        if mac is None:
            mac = random_local_mac(self._rng)
        elif isinstance(mac, str):
            try:
                mac = mac_from_str(mac)
            except ValueError:
                raise ValueError(f"mac: {mac!r} is not 'xx:xx:xx:xx:xx:xx'") from None
        elif not isinstance(mac, (bytes, bytearray)) or len(mac) != 6:
            raise ValueError(f"mac: {mac!r} is not 6 bytes or 'xx:xx:xx:xx:xx:xx'")
        if mac[0] & 1:  # IEEE 802: the group bit marks multicast/broadcast
            raise ValueError(f"mac: {mac_to_str(mac)} is a group address, not a unicast one")
        if link.mtu < 68:  # RFC 791: every host handles 68-byte datagrams
            raise ValueError(f"link mtu {link.mtu} is below the IPv4 minimum of 68")
        iface = Interface(self, link, iface_address, bytes(mac), name or f"eth{len(self.interfaces)}",
                          self._arp_config)
        self.interfaces.append(iface)
        self._local[iface.ip] = iface
        metric = sum(1 for r in self.routes if r.network == iface.network)
        self.routes.add(Route(iface.network, None, iface, metric))
        self._paths.clear()
        if gw is not None:
            default = parse_network("0.0.0.0/0")
            self.add_route(default, gateway=gw, interface=iface,
                           metric=sum(1 for r in self.routes if r.network == default))
        if self._nursery is not None:
            self._nursery.start_soon(iface.run)
        return iface

    def add_route(self, network: Any, *, gateway: Any = None, interface: Interface | None = None,
                  metric: int = 0) -> Route:
        """Route ``network`` via ``gateway`` (or directly on ``interface``)."""
        net = parse_network(network, "network")
        gw = parse_address(gateway, "gateway") if gateway is not None else None
        check_int(metric, "metric", 0)
        if gw is not None and gw.version != net.version:
            raise ValueError(f"gateway: {gw} is not of the same family as {net}")
        if gw is not None and gw in self._local:
            raise ValueError(f"gateway: {gw} is one of our own addresses")
        if interface is None:
            if gw is None:
                raise ValueError("add_route needs a gateway or an interface")
            interface = next((i for i in self.interfaces if gw in i.network), None)
            if interface is None:
                raise ValueError(f"gateway: {gw} is on no connected network")
        elif interface not in self.interfaces:
            raise ValueError("interface: not an interface of this stack")
        route = Route(net, gw, interface, metric)
        self.routes.add(route)
        self._paths.clear()
        return route

    def path_to(self, dst: IPAddress) -> Path:
        """The interface, next hop and source address for ``dst``;
        OSError(ENETUNREACH) when no route leads there."""
        path = self._paths.get(dst)
        if path is not None:
            return path
        owner = self._local.get(dst)
        if owner is not None:
            if owner.needs_arp:  # our address on a real link: the internal loopback
                path = Path(owner, dst, dst, True, self._local_link.mtu, True)
            else:
                path = Path(owner, dst, dst, True, owner.mtu, owner.checksum_offload)
        else:
            route = self.routes.lookup(dst)
            if route is not None and not route.interface.up:
                # The best route is down: the next best whose interface is up.
                route = next((r for r in self.routes if r.interface.up
                              and r.network.version == dst.version and dst in r.network), None)
            if route is None:
                raise OSError(errno.ENETUNREACH, f"no route to {dst}")
            iface = route.interface
            tso = min(iface.link.tso_max - ETH_HEADER_LEN, 0xFFFF)  # RFC 791: 65535 at most
            path = Path(iface, route.next_hop(dst), iface.ip, False, iface.mtu, iface.checksum_offload,
                        tso if tso > iface.mtu else 0)
        if len(self._paths) > 4096:
            self._paths.clear()
        self._paths[dst] = path
        return path

    def is_local_address(self, address: IPAddress) -> bool:
        return address in self._local

    def _is_broadcast(self, address: IPAddress) -> bool:
        """The limited broadcast or the directed broadcast of one of our
        networks (RFC 1122 3.2.2: never the subject of an ICMP error)."""
        return address == _LIMITED_BROADCAST or any(address == i.broadcast for i in self.interfaces)

    def _interface_down(self, iface: Interface, exc: BaseException) -> None:
        self._paths.clear()
        self.tcp.link_down(iface)

    # --- IPv4 output ------------------------------------------------------

    def _next_ip_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def ip_send(self, path: Path, src: IPAddress, dst: IPAddress, protocol: int, payload: bytes, *,
                ttl: int = 64, dont_fragment: bool = False, gso_size: int = 0) -> None:
        """Send ``payload`` as one IPv4 datagram, fragmented to the path MTU
        unless ``dont_fragment`` (then it is dropped, counted, if too big).

        ``gso_size`` (TCP, with ``dont_fragment``, on a path with
        ``tso_max``): a datagram over the MTU goes whole, for the link to cut
        into segments of ``gso_size`` payload bytes; never fragmented."""
        compute = not path.offload
        size = 20 + len(payload)
        if size <= path.mtu:
            self._transmit(path, build_ipv4_plain(
                src, dst, protocol, self._next_ip_id(), payload, ttl=ttl,
                dont_fragment=dont_fragment, compute_checksum=compute))
        elif gso_size and dont_fragment and size <= path.tso_max:
            self.stats["ipv4.tx_gso"] += 1
            self._transmit(path, build_ipv4_plain(
                src, dst, protocol, self._next_ip_id(), payload, ttl=ttl, dont_fragment=True,
                compute_checksum=compute), gso_size)
        elif dont_fragment:
            self.stats.drop("ipv4.too_big")
        else:
            header = IPv4Header(src, dst, protocol, ttl=ttl, identification=self._next_ip_id(),
                                dont_fragment=dont_fragment)
            for piece, chunk in fragment(header, payload, path.mtu):
                self.stats["ipv4.tx_fragments"] += 1
                self._transmit(path, build_ipv4(piece, chunk, compute_checksum=compute))

    def _transmit(self, path: Path, packet: bytes, gso_size: int = 0) -> None:
        self.stats["ipv4.tx"] += 1
        if path.local and path.interface.needs_arp:
            self._local_link.send_frame(packet)
        else:
            path.interface.send_ip(packet, path.next_hop, gso_size)

    async def _local_task(self) -> None:
        """Deliver packets we sent to ourselves, like Linux's lo device."""
        link = self._local_link
        while True:
            try:
                packets = await link.receive_batch()
            except trio.ClosedResourceError:
                return
            for packet in packets:
                try:
                    dst = IPv4Address(bytes(packet[16:20]))
                    self._ipv4_input(self._local.get(dst) or self.interfaces[0], packet, False, False)
                except WireError as exc:
                    self.stats.drop(exc.reason)
                except Exception:
                    self.stats.drop("internal.error")
                    log.exception("error delivering a local packet")

    # --- IPv4 input -------------------------------------------------------

    def _ipv4_input(self, iface: Interface, data, link_broadcast: bool, verify: bool | None = None) -> None:
        if verify is None:
            verify = not iface.checksum_offload
        header, payload = parse_ipv4(data, verify_checksum=verify)
        stats = self.stats
        stats["ipv4.rx"] += 1
        dst = header.dst
        broadcast = False
        if dst not in self._local:
            if dst == iface.broadcast or dst == _LIMITED_BROADCAST:
                broadcast = True
            elif dst.is_multicast:
                raise WireError("ipv4.multicast")
            elif self.forwarding and not link_broadcast:
                self._forward(iface, header, payload, data, verify)
                return
            else:
                raise WireError("ipv4.not_for_us")
        src = header.src
        if not is_acceptable_source(src):
            raise WireError("ipv4.bad_source")  # RFC 1122 3.2.1.3
        quote = data
        if header.is_fragment:
            whole = self._reassembler.add(header, payload, data, trio.current_time())
            if self._timer_scope is not None:
                self._timer_scope.deadline = self._next_timer()
            if whole is None:
                return
            header, payload, quote = whole[0], memoryview(whole[1]), whole[2]
            stats["ipv4.reassembled"] += 1
        handler = self._protocols.get(header.protocol)
        if handler is None:
            if not broadcast:
                self._icmp_error(quote, ICMP_DEST_UNREACHABLE, UNREACH_PROTOCOL)
            raise WireError("ipv4.unknown_protocol")
        handler(iface, header, payload, quote, verify, broadcast)

    def _forward(self, iface: Interface, header: IPv4Header, payload, raw, verified: bool) -> None:
        """RFC 1812 5.2 / 5.3.1: decrement TTL, route, fragment or refuse."""
        src, dst = header.src, header.dst
        # RFC 1812 5.3.7: never forward from or to a martian address (nor
        # answer it with an ICMP error).
        if (not is_unicast_source(src) or src.is_loopback or self._is_broadcast(src)
                or dst.is_loopback or dst.is_reserved or dst.packed[0] == 0):
            raise WireError("ipv4.martian")
        if self._is_broadcast(dst):  # RFC 2644: directed broadcasts are not forwarded
            raise WireError("ipv4.directed_broadcast")
        if header.ttl <= 1:
            self._icmp_error(raw, ICMP_TIME_EXCEEDED, TIME_EXCEEDED_TTL)
            raise WireError("ipv4.ttl_expired")
        try:
            path = self.path_to(header.dst)
        except OSError:
            self._icmp_error(raw, ICMP_DEST_UNREACHABLE, UNREACH_NET)
            raise WireError("ipv4.no_route") from None
        if not verified and not path.offload and not header.is_fragment:
            # From a link that skips checksums to one that does not.
            payload = _with_transport_checksum(header, payload)
        out = attrs.evolve(header, ttl=header.ttl - 1)
        compute = not path.offload
        if out.header_length + len(payload) <= path.mtu:
            self._transmit(path, build_ipv4(out, payload, compute_checksum=compute))
        elif header.dont_fragment:
            self._icmp_error(raw, ICMP_DEST_UNREACHABLE, UNREACH_FRAG_NEEDED, path.mtu)
            raise WireError("ipv4.fragmentation_needed")
        else:
            for piece, chunk in fragment(out, payload, path.mtu):
                self._transmit(path, build_ipv4(piece, chunk, compute_checksum=compute))
        self.stats["ipv4.forwarded"] += 1

    # --- timers -------------------------------------------------------------

    def _next_timer(self) -> float:
        return self._reassembler.next_deadline()

    async def _timer_task(self) -> None:
        """Stack-wide timers (IP reassembly) in one cancel scope whose
        deadline moves."""
        while True:
            with trio.CancelScope(deadline=self._next_timer()) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            try:
                timed_out = self._reassembler.timed_out
                quotes = self._reassembler.expire(trio.current_time())
                # Every datagram given up counts, with or without its first
                # fragment; only those with it are answered (RFC 792, RFC
                # 1122 3.3.2: time exceeded, code 1).
                self.stats["drop.ipv4.reassembly_timeout"] += self._reassembler.timed_out - timed_out
                for first_fragment in quotes:
                    self._icmp_error(first_fragment, ICMP_TIME_EXCEEDED, TIME_EXCEEDED_REASSEMBLY)
            except Exception:  # a bug must not stop the stack's timers
                self.stats.drop("internal.error")
                log.exception("error in the stack timers")

    # --- ICMP ---------------------------------------------------------------

    def _icmp_input(self, iface, header: IPv4Header, payload, quote, verify: bool, broadcast: bool) -> None:
        msg = parse_icmpv4(payload, verify_checksum=verify)
        self.stats["icmp.rx"] += 1
        if msg.type == ICMP_ECHO_REQUEST:
            if broadcast:  # RFC 1122 3.2.2.6 lets us ignore these (as Linux does)
                raise WireError("icmp.broadcast_echo")
            reply = build_icmpv4(IcmpMessage.echo_reply(msg.identifier, msg.sequence, bytes(msg.payload)))
            try:
                path = self.path_to(header.src)
            except OSError:
                raise WireError("icmp.no_route_back") from None
            self.ip_send(path, header.dst, header.src, PROTO_ICMP, reply)
            self.stats["icmp.tx_echo_reply"] += 1
        elif msg.type == ICMP_ECHO_REPLY:
            waiter = self._pings.get((msg.identifier, msg.sequence))
            if waiter is None or waiter.event.is_set():
                raise WireError("icmp.unexpected_echo_reply")
            if bytes(msg.payload) != waiter.payload:
                raise WireError("icmp.echo_payload_mismatch")
            waiter.rtt = trio.current_time() - waiter.sent_at
            waiter.event.set()
        elif msg.type in _ICMP_ERROR_TYPES:
            self._icmp_error_input(msg)
        else:
            self.stats["icmp.ignored"] += 1

    def _icmp_error_input(self, msg: IcmpMessage) -> None:
        """Hand an ICMP error to whoever sent the datagram it quotes."""
        quoted = bytes(msg.payload)
        if len(quoted) < 28 or quoted[0] >> 4 != 4:
            raise WireError("icmp.bad_quote")
        ihl = (quoted[0] & 0x0F) * 4
        protocol = quoted[9]
        inner = quoted[ihl:]
        if len(inner) < 8:
            raise WireError("icmp.bad_quote")
        self.stats["icmp.rx_error"] += 1
        if protocol == PROTO_ICMP and inner[0] == ICMP_ECHO_REQUEST:
            key = (int.from_bytes(inner[4:6], "big"), int.from_bytes(inner[6:8], "big"))
            waiter = self._pings.get(key)
            if waiter is not None and not waiter.event.is_set():
                code = _UNREACH_ERRNO.get(msg.code, errno.EHOSTUNREACH) \
                    if msg.type == ICMP_DEST_UNREACHABLE else errno.EHOSTUNREACH
                waiter.error = OSError(code, f"ICMP type {msg.type} code {msg.code} for ping")
                waiter.event.set()
        elif protocol == PROTO_TCP:
            self._tcp_icmp_error(msg, quoted, inner)

    def _icmp_error(self, original, type_: int, code: int, next_hop_mtu: int = 0) -> None:
        """Send an ICMP error about ``original`` (raw IPv4 bytes), unless
        RFC 1122 3.2.2 forbids it or the rate limit says no."""
        try:
            header, payload = parse_ipv4(original, verify_checksum=False)
        except WireError:
            return
        if header.fragment_offset or not is_unicast_source(header.src) or self._is_broadcast(header.src):
            return
        if header.dst.is_multicast or self._is_broadcast(header.dst):
            return
        if header.protocol == PROTO_ICMP and (len(payload) < 1 or payload[0] in _ICMP_ERROR_TYPES):
            return
        # RFC 1812 4.3.2.8: limit the errors sent to the network; those to
        # our own senders (ARP failures) are not limited (nor are they on Linux).
        if header.src not in self._local and not self._icmp_bucket.take(trio.current_time()):
            self.stats.drop("icmp.rate_limited")
            return
        try:
            path = self.path_to(header.src)
        except OSError:
            return
        src = header.dst if header.dst in self._local else path.source
        message = IcmpMessage.error(type_, code, quote_for_icmp(original), next_hop_mtu)
        self.ip_send(path, src, header.src, PROTO_ICMP, build_icmpv4(message))
        self.stats["icmp.tx_error"] += 1

    def _host_unreachable(self, packet: bytes) -> None:
        self._icmp_error(packet, ICMP_DEST_UNREACHABLE, UNREACH_HOST)

    async def ping(self, host: Any, *, size: int = 56, timeout: float = 1.0) -> float:
        """Send one ICMP echo request; return the round trip in seconds.
        TimeoutError without a reply; OSError when an ICMP error comes back."""
        dst = parse_address(host, "host")
        check_int(size, "size", 0, MAX_UDP_PAYLOAD)
        check_seconds(timeout, "timeout", positive=True, allow_inf=True)
        self._check_running()
        self._ping_seq = (self._ping_seq + 1) & 0xFFFF
        key = (self._ping_ident, self._ping_seq)
        payload = bytes((i + self._ping_seq) & 0xFF for i in range(size))
        waiter = self._pings[key] = _PingWaiter(payload, trio.current_time())
        try:
            path = self.path_to(dst)
            message = IcmpMessage.echo_request(key[0], key[1], payload)
            self.ip_send(path, path.source, dst, PROTO_ICMP, build_icmpv4(message))
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            del self._pings[key]
        if waiter.error is not None:
            raise waiter.error
        if waiter.rtt is None:
            raise TimeoutError(f"no echo reply from {dst} within {timeout} s")
        return waiter.rtt

    # --- UDP ----------------------------------------------------------------

    async def open_udp_socket(self, local_port: int = 0, *, local_address: Any = None) -> UdpSocket:
        """A UDP socket bound to ``local_port`` (0: a random free port)."""
        check_port(local_port, "local_port")
        address = parse_address(local_address, "local_address") if local_address is not None else None
        if address is not None and address.is_unspecified:
            address = None  # "0.0.0.0": every address, as with BSD sockets
        if address is not None and address not in self._local:
            raise OSError(errno.EADDRNOTAVAIL, f"{address} is not an address of this stack")
        await trio.lowlevel.checkpoint()
        if local_port == 0:
            local_port = self._free_udp_port(address)
        elif (address, local_port) in self._udp or (None, local_port) in self._udp or (
                address is None and any(p == local_port for _, p in self._udp)):
            raise OSError(errno.EADDRINUSE, f"UDP port {local_port} is in use")
        sock = UdpSocket(self, address, local_port, self._udp_queue_size)
        self._udp[(address, local_port)] = sock
        return sock

    def _free_udp_port(self, address) -> int:
        used = {p for _, p in self._udp}
        for _ in range(1000):  # RFC 6056 3.3.1: a random port
            port = self._rng.randint(32768, 60999)
            if port not in used:
                return port
        raise OSError(errno.EADDRINUSE, "no free UDP port")

    def _udp_unbind(self, sock: UdpSocket) -> None:
        key = (sock._local_ip, sock.local_port)
        if self._udp.get(key) is sock:
            del self._udp[key]

    def _udp_input(self, iface, header: IPv4Header, payload, quote, verify: bool, broadcast: bool) -> None:
        udp, data = parse_udp(payload, header.src, header.dst, verify_checksum=verify)
        self.stats["udp.rx"] += 1
        sock = self._udp.get((header.dst, udp.dst_port)) or self._udp.get((None, udp.dst_port))
        if sock is None:
            if not broadcast:
                self._icmp_error(quote, ICMP_DEST_UNREACHABLE, UNREACH_PORT)
            raise WireError("udp.no_socket")
        if not sock._deliver(bytes(data), header.src, udp.src_port):
            raise WireError("udp.receive_queue_full")

    def _udp_output(self, local_ip, local_port: int, dst: IPAddress, dst_port: int, data: bytes) -> None:
        path = self.path_to(dst)
        src = local_ip if local_ip is not None else path.source
        datagram = build_udp(local_port, dst_port, data, src, dst, compute_checksum=not path.offload)
        self.ip_send(path, src, dst, PROTO_UDP, datagram)
        self.stats["udp.tx"] += 1

    # --- TCP ---------------------------------------------------------------------

    async def open_tcp_stream(self, host: Any, port: int, *, local_port: int | None = None):
        """Connect to ``(host, port)``; returns a ``trionet.Stream``.

        ConnectionRefusedError (ECONNREFUSED) on RST, TimeoutError (ETIMEDOUT)
        when the SYNs go unanswered, OSError(ENETUNREACH) with no route."""
        self._check_running()
        return await self.tcp.connect(host, port, local_port=local_port)

    async def open_tcp_listeners(self, port: int, *, host: Any = None, backlog: int | None = None):
        """A list with one ``trionet.Listener`` on ``port`` (0: a free port),
        on ``host`` or on every address of the stack."""
        from .tcp.listener import open_listener

        self._check_running()
        check_port(port, "port")
        address = parse_address(host, "host") if host is not None else None
        if address is not None and address.is_unspecified:
            address = None  # "0.0.0.0": every address, as with BSD sockets
        if address is not None and address not in self._local:
            raise OSError(errno.EADDRNOTAVAIL, f"{address} is not an address of this stack")
        await trio.lowlevel.checkpoint()
        return [await open_listener(self.tcp, port, address, backlog)]

    async def serve_tcp(self, handler, port: int, *, host: Any = None, backlog: int | None = None,
                        handler_nursery: trio.Nursery | None = None,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
        """As ``trio.serve_tcp``: accept forever, one ``handler(stream)`` task
        per connection."""
        listeners = await self.open_tcp_listeners(port, host=host, backlog=backlog)
        await trio.serve_listeners(handler, listeners, handler_nursery=handler_nursery,
                                   task_status=task_status)

    def _check_running(self) -> None:
        if self._nursery is None:
            raise RuntimeError("the stack is not running: use 'async with Stack() as stack:'")

    def _tcp_icmp_error(self, msg: IcmpMessage, quoted: bytes, inner: bytes) -> None:
        self.tcp.icmp_error(msg, quoted, inner)


def _with_transport_checksum(header: IPv4Header, payload) -> bytes:
    """TCP/UDP payload with its checksum filled in (RFC 9293 3.1, RFC 768)."""
    offset = {PROTO_TCP: 16, PROTO_UDP: 6}.get(header.protocol)
    if offset is None or len(payload) < offset + 2:
        return payload
    data = bytearray(payload)
    data[offset:offset + 2] = b"\0\0"
    checksum = internet_checksum(data, pseudo_header_sum(header.src, header.dst, header.protocol, len(data)))
    if header.protocol == PROTO_UDP and checksum == 0:
        checksum = 0xFFFF
    data[offset:offset + 2] = checksum.to_bytes(2, "big")
    return bytes(data)
