"""UDP sockets (RFC 768, RFC 1122 4.1)."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

import trio

from .route import IPAddress, parse_address

if TYPE_CHECKING:
    from .stack import Stack

#: IPv4 maximum minus the IPv4 and UDP headers.
MAX_UDP_PAYLOAD = 65535 - 20 - 8


def check_port(port: Any, what: str = "port", *, allow_zero: bool = True) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{what} must be an int, not {type(port).__name__}")
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ValueError(f"{what} {port} is out of range 1-65535")
    return port


class UdpSocket:
    """A bound UDP endpoint: ``sendto``/``recvfrom`` datagrams.

    Received datagrams wait in a bounded queue; when it is full further ones
    are dropped and counted (``stack.stats["drop.udp.receive_queue_full"]``).
    """

    def __init__(self, stack: Stack, local_address: IPAddress | None, local_port: int,
                 queue_size: int):
        self._stack = stack
        self._local_ip = local_address
        self.local_port = local_port
        self._send_channel, self._receive_channel = trio.open_memory_channel(queue_size)
        self._closed = False

    @property
    def local_address(self) -> tuple[str, int]:
        return (str(self._local_ip) if self._local_ip is not None else "0.0.0.0", self.local_port)

    def _deliver(self, payload: bytes, src: IPAddress, src_port: int) -> bool:
        try:
            self._send_channel.send_nowait((payload, (str(src), src_port)))
            return True
        except trio.WouldBlock:
            return False

    async def sendto(self, data, address: tuple[Any, int]) -> None:
        """Send one datagram. OSError(ENETUNREACH) when no route, EMSGSIZE
        when too long for IPv4."""
        if self._closed:
            raise trio.ClosedResourceError("UDP socket is closed")
        if not isinstance(address, (tuple, list)) or len(address) != 2:
            raise TypeError(f"address must be a (host, port) pair, not {address!r}")
        host, port = address
        dst = parse_address(host, "address")
        check_port(port, "port", allow_zero=False)
        if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        if len(data) > MAX_UDP_PAYLOAD:
            raise OSError(errno.EMSGSIZE, f"datagram of {len(data)} bytes is too long")
        await trio.lowlevel.checkpoint()
        self._stack._udp_output(self._local_ip, self.local_port, dst, port, data)

    async def recvfrom(self) -> tuple[bytes, tuple[str, int]]:
        """The next datagram and its sender ``(host, port)``."""
        if self._closed:
            raise trio.ClosedResourceError("UDP socket is closed")
        try:
            return await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("UDP socket is closed") from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stack._udp_unbind(self)
            self._receive_channel.close()
            self._send_channel.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
