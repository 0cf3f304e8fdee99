"""trionet.Stream: a TCP connection as a trio.abc.HalfCloseableStream."""

from __future__ import annotations

import math
from typing import Any

import trio

from ..validate import check_flag, check_int, check_seconds, check_str
from .connection import TcpConnection, TcpState
from .socket import TcpSocket

#: receive_some's default size when max_bytes is None (as trio.SocketStream).
DEFAULT_RECEIVE_SIZE = 65536

_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_current_effective_deadline = trio.current_effective_deadline
_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint

#: Largest send_buffer / receive_buffer (the window scale allows 1 GiB, RFC 7323 2.3).
MAX_BUFFER = 1 << 30


def _positive_seconds(name: str, value: Any) -> float:
    return check_seconds(value, name, positive=True)


def _count(low: int, high: int):
    return lambda name, value: check_int(value, name, low, high)


#: Settings ``setsockopt`` takes: name -> (TcpConfig attribute, checker).
_OPTIONS = {
    "nodelay": ("nodelay", lambda name, value: check_flag(value, name)),
    "keepalive": ("keepalive", lambda name, value: check_flag(value, name)),
    "keepalive_idle": ("keepalive_idle", _positive_seconds),
    "keepalive_interval": ("keepalive_interval", _positive_seconds),
    "keepalive_count": ("keepalive_count", _count(1, 255)),
    "send_buffer": ("send_buffer", _count(1, MAX_BUFFER)),
    "receive_buffer": ("receive_buffer", _count(1, MAX_BUFFER)),
    # The connection names the valid choices if it is unknown.
    "congestion": ("congestion", lambda name, value: check_str(value, name)),
}


class _ConflictGuard:
    """Raises BusyResourceError when a second task enters (one sender and
    one receiver at a time, as trio's streams require)."""

    __slots__ = ("_held", "_message")

    def __init__(self, message: str):
        self._held = False
        self._message = message

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(self, *exc) -> None:
        self._held = False


class Stream(trio.abc.HalfCloseableStream):
    """A TCP connection. Sends block while the send buffer is full; closing
    sends FIN (or RST when unread data is left, or when cancelled)."""

    def __init__(self, sock: TcpSocket):
        self._sock = sock
        self._machine = sock.machine
        self._send_guard = _ConflictGuard("another task is already sending on this stream")
        self._receive_guard = _ConflictGuard("another task is already receiving on this stream")
        self._closed = False

    def __repr__(self) -> str:
        return f"<trionet.Stream {self.local_address} -> {self.remote_address} {self._machine.state.name}>"

    # --- addresses, settings, state -----------------------------------------------

    @property
    def local_address(self) -> tuple[str, int]:
        ip, port = self._machine.local
        return (str(ip), port)

    @property
    def remote_address(self) -> tuple[str, int]:
        ip, port = self._machine.remote
        return (str(ip), port)

    @property
    def state(self) -> TcpState:
        return self._machine.state

    @property
    def info(self) -> dict[str, Any]:
        """Live figures: state, srtt, rto, cwnd, ssthresh, bytes in flight,
        retransmits, sequence numbers and windows."""
        return self._machine.info()

    def window_diagram(self) -> str:
        return self._machine.window_diagram()

    @property
    def connection(self) -> TcpConnection:
        """The connection's protocol state, for reading (sequence numbers,
        windows, timers, options): change it only through the stream."""
        return self._machine

    def setsockopt(self, name: str, value: Any) -> None:
        """Set one of: nodelay, keepalive (bools), keepalive_idle,
        keepalive_interval (seconds > 0), keepalive_count (1-255),
        send_buffer, receive_buffer (bytes, 1 to 1 GiB). ValueError for an
        unknown name or a value out of range, TypeError for a wrong type."""
        if not isinstance(name, str):
            raise TypeError(f"option name must be a str, not {type(name).__name__}")
        try:
            attribute, convert = _OPTIONS[name]
        except KeyError:
            raise ValueError(f"unknown option {name!r}; known: {', '.join(_OPTIONS)}") from None
        value = convert(name, value)
        self._sock.set_option(attribute, value)

    def getsockopt(self, name: str) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"option name must be a str, not {type(name).__name__}")
        try:
            attribute, _ = _OPTIONS[name]
        except KeyError:
            raise ValueError(f"unknown option {name!r}; known: {', '.join(_OPTIONS)}") from None
        return getattr(self._machine.config, attribute)

    # --- sending ----------------------------------------------------------------------

    def _check_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream is closed")
        machine = self._machine
        if machine.error is not None:
            raise trio.BrokenResourceError(f"connection broken: {machine.error}")
        if not machine.can_send:
            raise trio.ClosedResourceError("send_eof() was called")

    async def send_all(self, data) -> None:
        with self._send_guard:
            self._check_send()
            await _checkpoint_if_cancelled()
            view = memoryview(data).cast("B")
            total = len(view)
            sent = 0
            sock = self._sock
            waited = False
            while True:
                self._check_send()
                if sent < total:
                    sent += sock.send(view[sent:])
                if sent >= total:
                    break
                await sock.wait_change()
                waited = True
            if not waited:  # a wait was a schedule point already (as trio's sockets)
                await _cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_guard:
            self._check_send()
            await _checkpoint_if_cancelled()
            machine = self._machine
            waited = False
            while machine.send_space == 0:
                self._check_send()
                await self._sock.wait_change()
                waited = True
            self._check_send()
            if not waited:
                await _cancel_shielded_checkpoint()

    async def send_eof(self) -> None:
        with self._send_guard:
            if self._closed:
                raise trio.ClosedResourceError("stream is closed")
            await _checkpoint_if_cancelled()
            machine = self._machine
            if machine.can_send and machine.error is None:
                self._sock.shutdown_write()
            await _cancel_shielded_checkpoint()

    # --- receiving --------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = DEFAULT_RECEIVE_SIZE
        elif not isinstance(max_bytes, int) or isinstance(max_bytes, bool):
            raise TypeError("max_bytes must be an int or None")
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        with self._receive_guard:
            if self._closed:
                raise trio.ClosedResourceError("stream is closed")
            await _checkpoint_if_cancelled()
            machine = self._machine
            sock = self._sock
            waited = False
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream is closed")
                data = sock.receive(max_bytes) if machine.unread_bytes else b""
                if data:
                    break
                if machine.at_eof:
                    break
                if machine.error is not None:
                    raise trio.BrokenResourceError(f"connection broken: {machine.error}")
                if machine.closed:  # closed without FIN or error (aborted)
                    break
                await sock.wait_change()
                waited = True
            if not waited:  # a wait was a schedule point already
                await _cancel_shielded_checkpoint()
            return data

    # --- closing ------------------------------------------------------------------------

    async def aclose(self) -> None:
        if _current_effective_deadline() == -math.inf:
            # Closing in a cancelled scope (aclose_forcefully, serve_listeners
            # after a handler): no waiting and no schedule point (nothing is
            # waited for), reset the connection unless it is closed already.
            if not self._closed:
                self._force_close()
            return
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        sock = self._sock
        try:
            await _checkpoint_if_cancelled()
        except trio.Cancelled:
            self._force_close()  # a deadline that had passed: as above
            raise
        # FIN after the buffered data; RST if unread data is left (RFC 2525 2.17).
        sock.close()
        await _cancel_shielded_checkpoint()

    def _force_close(self) -> None:
        self._closed = True
        if self._machine.closed:
            self._sock.flush()
        else:
            self._sock.abort()
