"""trionet.Listener: the accept queue of a passive open, as a
``trio.abc.Listener`` (the SYN queue is ``passive.SynQueue``)."""

from __future__ import annotations

from typing import Any

import trio

from ..validate import check_int
from .socket import TcpSocket
from .stream import Stream

#: Default accept backlog, as trio.open_tcp_listeners uses (capped like Linux's somaxconn).
DEFAULT_BACKLOG = 4096


class Listener(trio.abc.Listener[Stream]):
    """Accepts TCP connections on one port; works with ``trio.serve_listeners``.

    Two bounded queues: connections still in the handshake
    (``syn_backlog``; beyond it SYNs are answered with SYN cookies, RFC
    4987 3.6), and established ones not yet accepted (``backlog``; beyond it
    SYNs are dropped and counted, and the client's SYN retransmission tries
    again later).
    """

    def __init__(self, tcp: Any, port: int, address, backlog: int | None):
        backlog = self._open(tcp, backlog)
        self._queue = tcp.listen(port, address, backlog, accept=self._enqueue,
                                 accept_queue_length=lambda: self.accept_queue,
                                 close=self._close_now)

    def _open(self, tcp: Any, backlog: int | None) -> int:
        """The accept queue; returns the backlog checked and clamped."""
        if backlog is None:
            backlog = DEFAULT_BACKLOG
        elif isinstance(backlog, bool) or not isinstance(backlog, int):
            raise TypeError(f"backlog must be an int or None, not {type(backlog).__name__}")
        else:
            check_int(backlog, "backlog", 0)
        backlog = max(1, min(backlog, 65535))  # as Linux clamps it (somaxconn)
        self._tcp = tcp
        self._ready_send, self._ready_receive = trio.open_memory_channel(backlog)
        self._closed = False
        return backlog

    @property
    def port(self) -> int:
        return self._queue.port

    @property
    def backlog(self) -> int:
        return self._queue.backlog

    @property
    def syn_backlog(self) -> int:
        """Handshakes in progress (the SYN queue) at most; beyond it SYNs are
        answered with SYN cookies (``stack.tcp.syncookies``) or dropped."""
        return self._queue.syn_backlog

    @syn_backlog.setter
    def syn_backlog(self, value: int) -> None:
        self._queue.syn_backlog = check_int(value, "syn_backlog", 0)

    @property
    def local_address(self) -> tuple[str, int]:
        address = self._queue.address
        return (str(address) if address is not None else "0.0.0.0", self.port)

    def __repr__(self) -> str:
        return f"<trionet.Listener {self.local_address[0]}:{self.port}>"

    @property
    def embryos(self) -> int:
        """Handshakes in progress (SYN-RECEIVED connections)."""
        return self._queue.embryos

    @property
    def accept_queue(self) -> int:
        """Established connections waiting for ``accept()``."""
        return self._ready_send.statistics().current_buffer_used

    def _enqueue(self, sock: TcpSocket) -> bool:
        try:
            self._ready_send.send_nowait(sock)
            return True
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._tcp.stats.drop("tcp.accept_queue_full")
            return False

    # --- API ----------------------------------------------------------------------

    async def accept(self) -> Stream:
        return Stream(await self.accept_connection())

    async def accept_connection(self) -> TcpSocket:
        """The next established connection, as the transport's socket (the
        socket layer wraps it its own way; ``accept`` in a Stream)."""
        if self._closed:
            raise trio.ClosedResourceError("listener is closed")
        await trio.lowlevel.checkpoint_if_cancelled()
        receive = self._ready_receive
        try:
            try:
                # A connection waiting is taken without a schedule point (the
                # accept queue is bounded, so an accept loop still parks).
                return receive.receive_nowait()
            except trio.WouldBlock:
                return await receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener is closed") from None

    def close(self) -> None:
        """Stop listening now (``aclose`` without the checkpoint)."""
        self._close_now()

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready_send.close()
        # Connections nobody will accept are reset (as Linux does on close).
        while True:
            try:
                sock = self._ready_receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if sock.machine.closed:
                sock.flush()
            else:
                sock.abort()
        self._tcp.unlisten(self._queue)
        self._ready_receive.close()

    async def aclose(self) -> None:
        self._close_now()
        await trio.lowlevel.checkpoint()


class TcpForwarder(Listener):
    """Accepts TCP connections to *any* address and port that arrive on one
    interface (as gVisor's tcp.Forwarder): the handshake is completed as if
    the destination were ours, and each stream's ``local_address`` is the
    original destination (``remote_address`` the client). Works with
    ``trio.serve_listeners``.

    The same bounds as a ``Listener`` (SYN queue, then SYN cookies; accept
    queue ``backlog``), and its connections count against the stack's
    ``max_connections``. Closing it stops new flows (later SYNs are treated
    as without it); the streams already made go on.
    """

    def __init__(self, tcp: Any, interface: Any, backlog: int | None):
        backlog = self._open(tcp, backlog)
        self.interface = interface
        self._queue = tcp.forward(interface, backlog, accept=self._enqueue,
                                  accept_queue_length=lambda: self.accept_queue,
                                  close=self._close_now)

    @property
    def local_address(self) -> tuple[str, int]:
        return ("0.0.0.0", 0)

    def __repr__(self) -> str:
        return f"<trionet.TcpForwarder on {self.interface.name}>"
