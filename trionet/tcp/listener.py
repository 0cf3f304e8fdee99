"""trionet.Listener: a passive open (RFC 9293 3.5) with bounded queues."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

import trio

from .connection import TcpConnection
from .socket import TcpSocket
from .stream import Stream

if TYPE_CHECKING:
    from .layer import TcpLayer

#: Default accept backlog, as trio.open_tcp_listeners uses (capped like Linux's somaxconn).
DEFAULT_BACKLOG = 4096


class Listener(trio.abc.Listener[Stream]):
    """Accepts TCP connections on one port; works with ``trio.serve_listeners``.

    Two bounded queues (what overflows is dropped and counted, and the
    client's SYN retransmission tries again later): connections still in the
    handshake (``syn_backlog``), and established ones not yet accepted
    (``backlog``).
    """

    def __init__(self, layer: TcpLayer, address, port: int, backlog: int, syn_backlog: int):
        self._layer = layer
        self._address = address
        self.port = port
        self.backlog = backlog
        self.syn_backlog = syn_backlog
        self._embryos: set[TcpSocket] = set()
        self._ready_send, self._ready_receive = trio.open_memory_channel(backlog)
        self._closed = False

    @property
    def local_address(self) -> tuple[str, int]:
        return (str(self._address) if self._address is not None else "0.0.0.0", self.port)

    def __repr__(self) -> str:
        return f"<trionet.Listener {self.local_address[0]}:{self.port}>"

    # --- from the layer ---------------------------------------------------------

    def _on_syn(self, local_ip, remote_ip, header) -> None:
        stats = self._layer.stack.stats
        if len(self._embryos) >= self.syn_backlog:
            stats.drop("tcp.syn_queue_full")
            return
        # Handshakes under way count against the backlog too, so a connection
        # that completes always finds room in the accept queue.
        if self._ready_send.statistics().current_buffer_used + len(self._embryos) >= self.backlog:
            stats.drop("tcp.accept_queue_full")
            return
        layer = self._layer
        if len(layer.connections) >= layer.max_connections:
            stats.drop("tcp.too_many_connections")
            return
        try:
            path = layer.stack.path_to(remote_ip)
        except OSError:
            stats.drop("tcp.no_route")
            return
        key = (local_ip, self.port, remote_ip, header.src_port)
        machine = TcpConnection.accept(
            (local_ip, self.port), (remote_ip, header.src_port), header,
            layer.isn.isn(local_ip, self.port, remote_ip, header.src_port),
            layer.new_config(path.mtu), trio.current_time())
        sock = TcpSocket(layer, machine, key, listener=self)
        self._embryos.add(sock)
        layer.register(sock)
        stats["tcp.passive_opens"] += 1

    def _embryo_established(self, sock: TcpSocket) -> None:
        self._embryos.discard(sock)
        try:
            self._ready_send.send_nowait(sock)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._layer.stack.stats.drop("tcp.accept_queue_full")
            sock.machine.abort(trio.current_time())

    def _embryo_gone(self, sock: TcpSocket) -> None:
        self._embryos.discard(sock)

    # --- API ----------------------------------------------------------------------

    async def accept(self) -> Stream:
        if self._closed:
            raise trio.ClosedResourceError("listener is closed")
        try:
            sock = await self._ready_receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener is closed") from None
        return Stream(sock)

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        layer = self._layer
        if layer.listeners.get((self._address, self.port)) is self:
            del layer.listeners[(self._address, self.port)]
        self._ready_send.close()
        now = trio.current_time()
        # Connections nobody will accept are reset (as Linux does on close).
        while True:
            try:
                sock = self._ready_receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            sock.machine.abort(now)
            sock.flush()
        for sock in list(self._embryos):
            sock.machine.abort(now)
            sock.flush()
        self._embryos.clear()
        self._ready_receive.close()

    async def aclose(self) -> None:
        self._close_now()
        await trio.lowlevel.checkpoint()


async def open_listener(layer: TcpLayer, port: int, address, backlog: int | None) -> Listener:
    if backlog is None:
        backlog = DEFAULT_BACKLOG
    elif isinstance(backlog, bool) or not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int or None, not {type(backlog).__name__}")
    elif backlog < 0:
        raise ValueError(f"backlog must be >= 0, not {backlog}")
    backlog = max(1, min(backlog, 65535))  # as Linux clamps it (somaxconn)
    if port == 0:
        port = layer.ports.allocate(address, None, 0, lambda p: layer.port_in_use(address, p))
    elif layer.port_in_use(address, port) if address is None else (
            (address, port) in layer.listeners or (None, port) in layer.listeners):
        raise OSError(errno.EADDRINUSE, f"TCP port {port} is in use")
    listener = Listener(layer, address, port, backlog, syn_backlog=max(backlog, 128))
    layer.listeners[(address, port)] = listener
    return listener
