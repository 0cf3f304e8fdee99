"""trionet.Stream: a TCP connection as a trio.abc.HalfCloseableStream."""

from __future__ import annotations

import math
from typing import Any

import trio

from .connection import TcpState
from .socket import TcpSocket

#: receive_some's default size when max_bytes is None (as trio.SocketStream).
DEFAULT_RECEIVE_SIZE = 65536

_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint

#: Largest send_buffer / receive_buffer (the window scale allows 1 GiB, RFC 7323 2.3).
MAX_BUFFER = 1 << 30


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, not {value!r}")


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive finite number of seconds, not {value}")
    return float(value)


def _count(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}-{high}, not {value}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value  # the connection names the valid choices if it is unknown


#: Settings ``setsockopt`` takes: name -> (TcpConfig attribute, checker).
_OPTIONS = {
    "nodelay": ("nodelay", _flag),
    "keepalive": ("keepalive", _flag),
    "keepalive_idle": ("keepalive_idle", _seconds),
    "keepalive_interval": ("keepalive_interval", _seconds),
    "keepalive_count": ("keepalive_count", lambda n, v: _count(n, v, 1, 255)),
    "send_buffer": ("send_buffer", lambda n, v: _count(n, v, 1, MAX_BUFFER)),
    "receive_buffer": ("receive_buffer", lambda n, v: _count(n, v, 1, MAX_BUFFER)),
    "congestion": ("congestion", _text),
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
        self._machine.set_option(attribute, value, trio.current_time())
        self._sock.flush()

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
            machine = self._machine
            sock = self._sock
            waited = False
            while True:
                self._check_send()
                if sent < total:
                    taken = machine.send(view[sent:], trio.current_time())
                    if taken:
                        sent += taken
                        sock.flush()
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
                machine.shutdown_write(trio.current_time())
                self._sock.flush()
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
                data = machine.receive(max_bytes, trio.current_time())
                if data:
                    sock.flush()  # a window update may be due
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
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        sock = self._sock
        machine = self._machine
        try:
            await _checkpoint_if_cancelled()
        except trio.Cancelled:
            # Closing in a cancelled scope (aclose_forcefully, serve_listeners
            # after a handler): no waiting, reset the connection.
            if not machine.closed:
                machine.abort(trio.current_time())
            sock.flush()
            raise
        # FIN after the buffered data; RST if unread data is left (RFC 2525 2.17).
        machine.close(trio.current_time())
        sock.flush()
        await _cancel_shielded_checkpoint()
