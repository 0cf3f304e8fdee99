"""UDP (RFC 768, RFC 1122 4.1): the stack's UDP demultiplexing and its sockets."""

from __future__ import annotations

import errno
from typing import Any

import trio

from ..stats import Stats
from ..validate import IPAddress, check_port, parse_address
from ..wire.errors import WireError
from ..wire.ipv4 import PROTO_UDP
from ..wire.udp import build_udp, parse_udp
from .ports import ANY_IPV4, ANY_IPV6, EphemeralPortAllocator, bindings_overlap

#: IPv4 maximum minus the IPv4 and UDP headers.
MAX_UDP_PAYLOAD = 65535 - 20 - 8
#: IPv6: the payload length field's maximum less the UDP header (RFC 8200 3).
MAX_UDP6_PAYLOAD = 65535 - 8


class UdpLayer:
    """Sockets by (local address, port): one of our addresses, a family's
    wildcard (0.0.0.0, or :: for IPv6 only) or None (every address of both
    families); registers itself with the network layer it is given."""

    def __init__(self, network: Any, stats: Stats, ports: EphemeralPortAllocator, *,
                 queue_size: int):
        self.network = network
        self.stats = stats
        self.ports = ports
        self.queue_size = queue_size
        self.sockets: dict[tuple[IPAddress | None, int], UdpSocket] = {}
        #: Interface -> the forwarder taking datagrams to any address there.
        self.forwarders: dict[Any, UdpForwarder] = {}
        network.register_transport(PROTO_UDP, self.input, icmp_error=self.icmp_error,
                                   address_removed=self.address_removed)
        #: Port -> handler(iface, data, src, src_port, dst) taking IPv4
        #: datagrams to that port on any address, the broadcast included,
        #: before the sockets (the DHCP client's port 68: it must know the
        #: interface). It raises WireError to drop one.
        self.port_handlers: dict[int, Any] = {}

    async def open(self, local_port: int = 0, local_address: Any = None, *,
                   v6only: bool = False) -> UdpSocket:
        """A socket on ``local_port`` (0: a free one) at ``local_address``
        (None or "::": every address; "0.0.0.0": every IPv4 one; with
        ``v6only``, "::" is every IPv6 one)."""
        check_port(local_port, "local_port")
        address = self.network.bind_address(local_address, "local_address", v6only=v6only)
        await trio.lowlevel.checkpoint()
        sockets = self.sockets
        if local_port == 0:
            used = {port for _, port in sockets}
            local_port = self.ports.allocate(address, None, 0, used.__contains__)
        elif any(p == local_port and bindings_overlap(a, address) for a, p in sockets):
            raise OSError(errno.EADDRINUSE, f"UDP port {local_port} is in use")
        sock = UdpSocket(self, address, local_port, self.queue_size)
        sockets[(address, local_port)] = sock
        return sock

    def unbind(self, sock: UdpSocket) -> None:
        key = (sock.bound_address, sock.local_port)
        if self.sockets.get(key) is sock:
            del self.sockets[key]

    def close_all(self) -> None:
        for sock in [*self.sockets.values(), *self.forwarders.values()]:
            sock.close()

    def address_removed(self, address) -> None:
        """Sockets bound to an address that went are unbound: what they
        would receive now goes elsewhere, and they can send no more
        (EADDRNOTAVAIL, as Linux for a socket bound to a removed address)."""
        for sock in list(self.sockets.values()):
            if sock.bound_address == address:
                self.stats["udp.broken_by_address_removed"] += 1
                sock.address_lost()

    async def open_forwarder(self, iface, queue_size: int) -> UdpForwarder:
        """A forwarder on ``iface``: datagrams to any address not ours that
        arrive there; OSError(EADDRINUSE) if ``iface`` has one."""
        await trio.lowlevel.checkpoint()
        if iface in self.forwarders:
            raise OSError(errno.EADDRINUSE, f"interface {iface.name} has a UDP forwarder already")
        forwarder = self.forwarders[iface] = UdpForwarder(self, iface, queue_size)
        self.network.intercept(iface, PROTO_UDP, self.forward_input)
        return forwarder

    def close_forwarder(self, forwarder: UdpForwarder) -> None:
        iface = forwarder.interface
        if self.forwarders.get(iface) is forwarder:
            del self.forwarders[iface]
            self.network.release(iface, PROTO_UDP)

    def forward_input(self, iface, header, payload, raw, verify: bool) -> bool:
        """A datagram to an address not ours on an interface with a
        forwarder: into its queue (dropped and counted when full)."""
        forwarder = self.forwarders.get(iface)
        if forwarder is None:
            return False
        udp, data = parse_udp(payload, header.src, header.dst, verify_checksum=verify)
        self.stats["udp.rx"] += 1
        if not forwarder.deliver(bytes(data), header.src, udp.src_port, header.dst, udp.dst_port):
            raise WireError("udp.forwarder_queue_full")
        return True

    def input(self, iface, header, payload, raw, verify: bool, broadcast: bool) -> None:
        udp, data = parse_udp(payload, header.src, header.dst, verify_checksum=verify)
        self.stats["udp.rx"] += 1
        sockets = self.sockets
        port = udp.dst_port
        dst = header.dst
        if self.port_handlers:
            handler = self.port_handlers.get(port)
            if handler is not None and dst.version == 4:
                handler(iface, bytes(data), header.src, udp.src_port, dst)
                return
        sock = sockets.get((dst, port)) or sockets.get(
            (ANY_IPV4 if dst.version == 4 else ANY_IPV6, port)) or sockets.get((None, port))
        if sock is None:
            if not broadcast:
                self.network.port_unreachable(raw, iface)
            raise WireError("udp.no_socket")
        if not sock.deliver(bytes(data), header.src, udp.src_port, dst):
            raise WireError("udp.receive_queue_full")

    def icmp_error(self, error) -> bool:
        """An ICMP error quoting one of our datagrams: handed to the socket
        that sent it (a connected socket reports it, RFC 1122 4.1.3.3; see
        ``UdpSocket.error_handler``), else counted."""
        self.stats["udp.icmp_error"] += 1
        quoted = error.transport
        port = int.from_bytes(quoted[0:2], "big")
        sockets = self.sockets
        src = error.src
        sock = sockets.get((src, port)) or sockets.get(
            (ANY_IPV4 if src.version == 4 else ANY_IPV6, port)) or sockets.get((None, port))
        if sock is None or sock.error_handler is None:
            self.stats["udp.icmp_error_ignored"] += 1
            return sock is not None  # a Packet Too Big for a socket of ours still counts
        sock.error_handler(error.errno, (error.dst, int.from_bytes(quoted[2:4], "big")))
        return True

    async def output(self, local_ip, local_port: int, dst: IPAddress, dst_port: int,
                     data: bytes, source: IPAddress | None = None) -> None:
        dst = self.network.scoped(dst)
        if local_ip is not None and not local_ip.is_unspecified and local_ip.version != dst.version:
            raise OSError(errno.EAFNOSUPPORT, f"a socket bound to {local_ip} cannot send to {dst}")
        if local_ip is not None and local_ip.is_unspecified and local_ip.version != dst.version:
            raise OSError(errno.EAFNOSUPPORT, f"an IPv{local_ip.version} socket cannot send to "
                                              f"{dst}")
        path = await self.network.ready_path_to(dst)
        if source is not None:
            src = source
        elif local_ip is not None and not local_ip.is_unspecified:
            src = local_ip
        else:
            src = path.source
        datagram = build_udp(local_port, dst_port, data, src, dst, compute_checksum=not path.offload)
        path.output(path, src, dst, PROTO_UDP, datagram)
        self.stats["udp.tx"] += 1


class _Closeable:
    """``aclose`` and ``async with`` for a class with a ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


class UdpSocket(_Closeable):
    """A bound UDP endpoint: ``sendto``/``recvfrom`` datagrams.

    Received datagrams wait in a bounded queue; when it is full further ones
    are dropped and counted (``stack.stats["drop.udp.receive_queue_full"]``).
    """

    def __init__(self, layer: UdpLayer, local_address: IPAddress | None, local_port: int,
                 queue_size: int):
        self._layer = layer
        #: The address bound to, None for every address of the stack.
        self.bound_address = local_address
        self.local_port = local_port
        self._send_channel, self._receive_channel = trio.open_memory_channel(queue_size)
        self._closed = False
        #: Called with (errno, (destination, port)) when an ICMP error about
        #: a datagram this socket sent comes back; None: the error is counted only.
        self.error_handler = None
        #: Set when the address bound to was removed (``address_lost``).
        self._lost: OSError | None = None

    def address_lost(self) -> None:
        """The bound address was removed: unbind; sends and receives (once
        the queued datagrams are read) raise OSError(EADDRNOTAVAIL)."""
        if self._closed or self._lost is not None:
            return
        self._lost = OSError(errno.EADDRNOTAVAIL,
                             f"{self.bound_address} is no longer an address of this stack")
        self._layer.unbind(self)
        self._send_channel.close()

    @property
    def queued(self) -> int:
        """Datagrams waiting to be received."""
        return self._send_channel.statistics().current_buffer_used

    @property
    def local_address(self) -> tuple[str, int]:
        """(address, port); "0.0.0.0" for a socket on every address."""
        address = self.bound_address
        return (str(address) if address is not None else "0.0.0.0", self.local_port)

    def deliver(self, payload: bytes, src: IPAddress, src_port: int, dst: IPAddress) -> bool:
        """Queue a received datagram; False when the queue is full."""
        try:
            self._send_channel.send_nowait((payload, (str(src), src_port), dst))
            return True
        except trio.WouldBlock:
            return False

    async def sendto(self, data, address: tuple[Any, int], *,
                     source_address: Any = None) -> None:
        """Send one datagram. OSError(ENETUNREACH) when no route, EMSGSIZE
        when too long for its family. ``source_address`` (one of the
        stack's; for a socket on every address) picks the source, as
        IP_PKTINFO does: to answer from the address a request came to."""
        if self._closed:
            raise trio.ClosedResourceError("UDP socket is closed")
        if self._lost is not None:
            raise OSError(self._lost.errno, self._lost.strerror)
        if not isinstance(address, (tuple, list)) or len(address) != 2:
            raise TypeError(f"address must be a (host, port) pair, not {address!r}")
        host, port = address
        dst = parse_address(host, "address")
        check_port(port, "port", allow_zero=False)
        source = None
        if source_address is not None:
            source = self._layer.network.bind_address(source_address, "source_address")
            if source is None or source.is_unspecified or source.version != dst.version:
                raise ValueError(f"source_address: {source_address!r} is not an "
                                 f"IPv{dst.version} address of this stack")
        if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        if len(data) > (MAX_UDP_PAYLOAD if dst.version == 4 else MAX_UDP6_PAYLOAD):
            raise OSError(errno.EMSGSIZE, f"datagram of {len(data)} bytes is too long")
        await trio.lowlevel.checkpoint()
        await self._layer.output(self.bound_address, self.local_port, dst, port, data, source)

    async def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        """The next datagram and its sender ``(host, port)``."""
        data, sender, _ = await self.recvfrom_to()
        return data, sender

    async def recvfrom_to(self) -> tuple[bytes, tuple[str, int], str]:
        """The next datagram, its sender ``(host, port)`` and the address it
        was sent to (ours, or a broadcast or multicast group; as
        IP_PKTINFO)."""
        if self._closed:
            raise trio.ClosedResourceError("UDP socket is closed")
        try:
            data, sender, dst = await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._lost is not None and not self._closed:
                raise OSError(self._lost.errno, self._lost.strerror) from None
            raise trio.ClosedResourceError("UDP socket is closed") from None
        return data, sender, str(dst)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._layer.unbind(self)
            self._receive_channel.close()
            self._send_channel.close()


class UdpForwarder(_Closeable):
    """Datagrams to *any* address and port that arrive on one interface
    (the UDP side of a forwarder): ``receive()`` gives each with its source
    and its original destination, and ``sendto(..., source_address=)``
    answers from that destination.

    Received datagrams wait in a bounded queue; when it is full further ones
    are dropped and counted (``dropped``, and
    ``stack.stats["drop.udp.forwarder_queue_full"]``). Datagrams to the
    stack's own addresses go to its sockets as ever.
    """

    def __init__(self, layer: UdpLayer, interface: Any, queue_size: int):
        self._layer = layer
        self.interface = interface
        self._send_channel, self._receive_channel = trio.open_memory_channel(queue_size)
        self._closed = False
        #: Datagrams dropped because the queue was full.
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<trionet.UdpForwarder on {self.interface.name}>"

    @property
    def queued(self) -> int:
        """Datagrams waiting to be received."""
        return self._send_channel.statistics().current_buffer_used

    def deliver(self, payload: bytes, src: IPAddress, src_port: int, dst: IPAddress,
                dst_port: int) -> bool:
        """Queue a received datagram; False when the queue is full."""
        try:
            self._send_channel.send_nowait((payload, (str(src), src_port), (str(dst), dst_port)))
            return True
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped += 1
            return False

    async def receive(self) -> tuple[bytes, tuple[str, int], tuple[str, int]]:
        """The next datagram, its sender ``(host, port)`` and its original
        destination ``(host, port)``."""
        if self._closed:
            raise trio.ClosedResourceError("UDP forwarder is closed")
        try:
            return await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("UDP forwarder is closed") from None

    #: As ``UdpSocket.recvfrom_to``, but the destination with its port.
    recvfrom_to = receive

    async def sendto(self, data, address: tuple[Any, int], *,
                     source_address: tuple[Any, int]) -> None:
        """Send one datagram to ``address`` from ``source_address`` ``(host,
        port)``, any unicast address of the same family (the destination a
        datagram came to: the answer looks as if it came from there).
        OSError(ENETUNREACH) when no route, EMSGSIZE when too long."""
        if self._closed:
            raise trio.ClosedResourceError("UDP forwarder is closed")
        dst, port = _host_port(address, "address")
        src, src_port = _host_port(source_address, "source_address")
        if src.version != dst.version or src.is_unspecified or src.is_multicast:
            raise ValueError(f"source_address: {src} is not a unicast IPv{dst.version} address")
        if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        if len(data) > (MAX_UDP_PAYLOAD if dst.version == 4 else MAX_UDP6_PAYLOAD):
            raise OSError(errno.EMSGSIZE, f"datagram of {len(data)} bytes is too long")
        await trio.lowlevel.checkpoint()
        await self._layer.output(None, src_port, dst, port, data, src)

    def close(self) -> None:
        """Stop taking datagrams (later ones are treated as without it)."""
        if not self._closed:
            self._closed = True
            self._layer.close_forwarder(self)
            self._receive_channel.close()
            self._send_channel.close()


def _host_port(value: Any, what: str) -> tuple[IPAddress, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{what} must be a (host, port) pair, not {value!r}")
    host, port = value
    address = parse_address(host, what)
    check_port(port, what, allow_zero=False)
    return address, port
