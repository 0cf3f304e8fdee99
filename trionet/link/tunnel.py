"""Ethernet over UDP: one frame per datagram, a cable between processes."""

import errno
import ipaddress
import socket

import trio

from ..validate import check_int
from .fd import FdLink

_ETH_HEADER = 14
_RCVBUF = 1 << 21


def _resolve(what: str, address) -> tuple[int, tuple]:
    """(family, sockaddr) for a (host, port) pair. Numeric hosts resolve
    without DNS; names are looked up once, synchronously, here."""
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        raise ValueError(f"{what} must be a (host, port) pair, got {address!r}") from None
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{what} port must be an int in 0..65535, got {port!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {what} host {host!r}: {exc}") from exc
        family, _, _, _, sockaddr = infos[0]
        return family, sockaddr
    if ip.version == 4:
        return socket.AF_INET, (str(ip), port)
    return socket.AF_INET6, (str(ip), port, 0, 0)


class UdpTunnelLink(FdLink):
    """Carries Ethernet frames one per UDP datagram between ``local`` and
    ``remote`` (each a ``(host, port)``; local port 0 picks a free one, see
    ``local_address``). Two links pointing at each other form a cable.

    Datagrams from any address other than ``remote`` are dropped and counted
    (``rx_dropped_stranger``). ``stats`` also counts ``tx_frames``,
    ``rx_frames``, ``tx_dropped_full`` (socket buffer full),
    ``tx_dropped_oversize``, ``tx_dropped_error``, ``tx_dropped_closed``,
    ``rx_dropped_oversize`` and ``rx_errors``.
    """

    __slots__ = ("stats", "mtu", "_sock", "_fd", "_remote", "_remote_host", "_remote_port",
                 "_local", "_read_size", "_closed", "_broken")

    def __init__(self, local, remote, *, mtu: int = 1500) -> None:
        super().__init__()
        check_int(mtu, "mtu", 68)  # RFC 791
        local_family, local_addr = _resolve("local", local)
        remote_family, remote_addr = _resolve("remote", remote)
        if local_family != remote_family:
            raise ValueError(f"local {local!r} and remote {remote!r} are of different "
                             f"address families")
        sock = socket.socket(local_family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _RCVBUF)
            except OSError:
                pass  # the kernel's defaults will do
            try:
                sock.bind(local_addr)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot bind UDP tunnel to {local_addr[:2]!r}: "
                                         f"{exc.strerror}") from exc
            self._local = sock.getsockname()
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._fd = sock.fileno()
        self._remote = remote_addr
        self._remote_host = remote_addr[0]
        self._remote_port = remote_addr[1]
        self.mtu = mtu
        # One byte more than the largest frame accepted, to detect longer ones.
        self._read_size = mtu + _ETH_HEADER + 1
        self._closed = False
        self._broken: str | None = None

    def __repr__(self) -> str:
        return (f"<UdpTunnelLink {self.local_address!r} -> {self.remote_address!r}"
                f"{' closed' if self._closed else ''}>")

    @property
    def local_address(self) -> tuple[str, int]:
        """The bound (host, port), with the ephemeral port filled in."""
        return self._local[0], self._local[1]

    @property
    def remote_address(self) -> tuple[str, int]:
        """The peer's (host, port). Assignable, so two links on ephemeral
        ports can be pointed at each other after both are bound."""
        return self._remote_host, self._remote_port

    @remote_address.setter
    def remote_address(self, remote) -> None:
        family, remote_addr = _resolve("remote", remote)
        if family != self._sock.family:
            raise ValueError(f"remote {remote!r} is not of the local address family")
        self._remote = remote_addr
        self._remote_host = remote_addr[0]
        self._remote_port = remote_addr[1]

    def fileno(self) -> int:
        if self._closed:
            raise trio.ClosedResourceError("link was closed")
        return self._fd

    def send_frame(self, frame: bytes) -> None:
        stats = self.stats
        if self._closed:
            stats["tx_dropped_closed"] += 1
            return
        if len(frame) > self.mtu + _ETH_HEADER:
            stats["tx_dropped_oversize"] += 1
            return
        try:
            self._sock.sendto(frame, self._remote)
        except BlockingIOError:
            stats["tx_dropped_full"] += 1
        except OSError as exc:
            # ENOBUFS, ECONNREFUSED from an earlier ICMP error, unreachable...
            if exc.errno == errno.ENOBUFS:
                stats["tx_dropped_full"] += 1
            else:
                stats["tx_dropped_error"] += 1
        else:
            stats["tx_frames"] += 1

    def _read_some(self, max_frames: int) -> list[bytes]:
        """Read up to ``max_frames`` frames from the peer without waiting."""
        frames: list[bytes] = []
        stats = self.stats
        recvfrom = self._sock.recvfrom
        size = self._read_size
        host = self._remote_host
        port = self._remote_port
        n = 0  # datagrams read, kept or not: bounds the work per batch
        while n < max_frames:
            try:
                data, addr = recvfrom(size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                    self._broken = f"UDP tunnel socket failed: {exc}"
                    break
                # An ICMP error reported on the socket: count it, go on.
                stats["rx_errors"] += 1
                n += 1
                continue
            n += 1
            if addr[1] != port or addr[0] != host:
                stats["rx_dropped_stranger"] += 1
            elif len(data) >= size:
                stats["rx_dropped_oversize"] += 1
            else:
                frames.append(data)
        if frames:
            stats["rx_frames"] += len(frames)
        return frames

    def _release_fd(self) -> None:
        self._sock.close()
