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
        network.register_transport(PROTO_UDP, self.input, icmp_error=self.icmp_error)

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
        for sock in list(self.sockets.values()):
            sock.close()

    def input(self, iface, header, payload, raw, verify: bool, broadcast: bool) -> None:
        udp, data = parse_udp(payload, header.src, header.dst, verify_checksum=verify)
        self.stats["udp.rx"] += 1
        sockets = self.sockets
        port = udp.dst_port
        dst = header.dst
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


class UdpSocket:
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
            raise trio.ClosedResourceError("UDP socket is closed") from None
        return data, sender, str(dst)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._layer.unbind(self)
            self._receive_channel.close()
            self._send_channel.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
