"""trionet.Listener: a passive open (RFC 9293 3.5) with bounded queues."""

from __future__ import annotations

import errno
import math
import weakref
from collections import deque
from typing import TYPE_CHECKING

import trio

from ..wire.errors import WireError
from ..wire.ipv4 import PROTO_TCP
from ..wire.tcp import ACK, FIN, SYN, TcpHeader, TcpOptions, build_tcp
from .connection import TcpConnection, our_window_scale
from .cookies import MAX_AGE, PERIOD
from .socket import TcpSocket
from .stream import Stream

if TYPE_CHECKING:
    from .layer import TcpLayer

_M32 = 0xFFFFFFFF

#: Default accept backlog, as trio.open_tcp_listeners uses (capped like Linux's somaxconn).
DEFAULT_BACKLOG = 4096


class Listener(trio.abc.Listener[Stream]):
    """Accepts TCP connections on one port; works with ``trio.serve_listeners``.

    Two bounded queues: connections still in the handshake
    (``syn_backlog``; beyond it SYNs are answered with SYN cookies, RFC
    4987 3.6, see ``_send_cookie``), and established ones not yet accepted
    (``backlog``; beyond it SYNs are dropped and counted, and the client's
    SYN retransmission tries again later).
    """

    def __init__(self, layer: TcpLayer, address, port: int, backlog: int, syn_backlog: int):
        self._layer = layer
        self._address = address
        self.port = port
        self.backlog = backlog
        #: Handshakes in progress (the SYN queue) at most; beyond it SYNs are
        #: answered with SYN cookies (``layer.syncookies``) or dropped.
        self.syn_backlog = syn_backlog
        #: Embryos (SYN-RECEIVED), each with whether it is still "young":
        #: its first SYN-ACK not yet retransmitted (made less than one
        #: initial RTO ago). Only young ones count against ``backlog``.
        self._embryos: dict[TcpSocket, bool] = {}
        self._young = 0
        # (made at, weak reference): what ages out next, oldest first.
        self._young_queue: deque[tuple[float, weakref.ref]] = deque()
        self._ready_send, self._ready_receive = trio.open_memory_channel(backlog)
        self._closed = False
        #: When we last answered a SYN with a cookie: cookie ACKs are only
        #: looked at for MAX_AGE periods after that (as Linux).
        self._cookie_sent_at = -math.inf

    @property
    def local_address(self) -> tuple[str, int]:
        return (str(self._address) if self._address is not None else "0.0.0.0", self.port)

    def __repr__(self) -> str:
        return f"<trionet.Listener {self.local_address[0]}:{self.port}>"

    @property
    def embryos(self) -> int:
        """Handshakes in progress (SYN-RECEIVED connections)."""
        return len(self._embryos)

    @property
    def accept_queue(self) -> int:
        """Established connections waiting for ``accept()``."""
        return self._ready_send.statistics().current_buffer_used

    # --- from the layer ---------------------------------------------------------

    def _age_embryos(self, now: float) -> None:
        """Embryos made one initial RTO ago or more are no longer young."""
        cutoff = now - self._layer.config.rto_initial
        queue = self._young_queue
        embryos = self._embryos
        while queue and queue[0][0] <= cutoff:
            sock = queue.popleft()[1]()
            if sock is not None and embryos.get(sock):
                embryos[sock] = False
                self._young -= 1

    def _on_syn(self, local_ip, remote_ip, header) -> None:
        layer = self._layer
        stats = layer.stack.stats
        now = trio.current_time()
        ready = self._ready_send.statistics().current_buffer_used
        if ready >= self.backlog:
            stats.drop("tcp.accept_queue_full")  # as Linux: nothing to make room for it
            return
        table = len(layer.connections)
        if table >= layer.max_connections:
            stats.drop("tcp.too_many_connections")
            return
        cookies = layer.syncookies
        if cookies == 2 or len(self._embryos) >= self.syn_backlog or \
                table >= layer.max_connections - (layer.max_connections >> 3):
            # The SYN queue is full, or embryos would take the last eighth of
            # the connection table: answer without state (RFC 4987 3.6).
            if cookies:
                self._send_cookie(local_ip, remote_ip, header, now)
            elif len(self._embryos) >= self.syn_backlog:
                stats.drop("tcp.syn_queue_full")
            else:
                stats.drop("tcp.too_many_connections")
            return
        # Young handshakes count against the backlog too, so a connection
        # that completes finds room in the accept queue; older ones (their
        # SYN-ACK went unanswered for an RTO: likely spoofed) only fill the
        # SYN queue, and beyond it cookies take over.
        self._age_embryos(now)
        if ready + self._young >= self.backlog:
            stats.drop("tcp.accept_queue_full")
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
            layer.config, now, mss=layer.route_mss(path.mtu))
        sock = TcpSocket(layer, machine, key, listener=self)
        self._embryos[sock] = True
        self._young += 1
        self._young_queue.append((now, weakref.ref(sock)))
        layer.register(sock)
        stats["tcp.passive_opens"] += 1

    def _send_cookie(self, local_ip, remote_ip, syn, now: float) -> None:
        """A SYN-ACK whose ISN is a SYN cookie; nothing is kept."""
        layer = self._layer
        stats = layer.stack.stats
        try:
            path = layer.stack.path_to(remote_ip)
        except OSError:
            stats.drop("tcp.no_route")
            return
        config = layer.config
        mss = layer.route_mss(path.mtu)
        local = (local_ip, self.port)
        remote = (remote_ip, syn.src_port)
        cookies = layer.cookies
        iss = cookies.encode(local, remote, syn.seq, syn.options.mss, now)
        opts = syn.options
        ts = None
        if config.timestamps and opts.timestamps is not None:
            # Window scale and SACK-permitted ride in our TSval (as Linux);
            # without timestamps they are not offered at all.
            wscale = min(opts.window_scale, 14) if (config.window_scale and
                                                   opts.window_scale is not None) else None
            sack = config.sack and opts.sack_permitted
            tsval = (int(now * 1000) + cookies.ts_offset(local, remote)) & _M32
            ts = (cookies.encode_tsval(tsval, wscale, sack), opts.timestamps[0])
            out = TcpOptions(mss=mss,
                             window_scale=our_window_scale(config) if wscale is not None else None,
                             sack_permitted=sack, timestamps=ts)
        else:
            out = TcpOptions(mss=mss)
        header = TcpHeader(self.port, syn.src_port, iss, (syn.seq + 1) & _M32, SYN | ACK,
                           min(config.receive_buffer, 0xFFFF), 0, out)
        segment = build_tcp(header, b"", local_ip, remote_ip, compute_checksum=not path.offload)
        layer.stack.ip_send(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True)
        self._cookie_sent_at = now
        stats["tcp.syncookies_sent"] += 1
        stats["tcp.tx"] += 1

    def _on_ack(self, local_ip, remote_ip, header, data) -> bool:
        """An ACK for no connection: the return of a SYN cookie? If it is
        valid, make the connection (ESTABLISHED) and return True. False when
        no cookie went out lately (the caller answers with RST as for any
        unknown connection). An invalid cookie raises WireError, after the
        RST (RFC 9293 3.10.7.1)."""
        layer = self._layer
        now = trio.current_time()
        if now - self._cookie_sent_at > MAX_AGE * PERIOD:
            return False
        stats = layer.stack.stats
        local = (local_ip, self.port)
        remote = (remote_ip, header.src_port)
        cookies = layer.cookies
        mss = cookies.decode(local, remote, (header.seq - 1) & _M32, (header.ack - 1) & _M32, now)
        ts = header.options.timestamps
        options = cookies.decode_tsecr(ts[1]) if ts is not None else (None, False)
        if mss is None or options is None:
            layer.send_reset(local_ip, remote_ip, header, len(data))
            raise WireError("tcp.syncookie_invalid")
        ready = self._ready_send.statistics().current_buffer_used
        if ready >= self.backlog:
            # As Linux: the ACK is dropped; the client's next segment tries again.
            raise WireError("tcp.accept_queue_full")
        if len(layer.connections) >= layer.max_connections:
            raise WireError("tcp.too_many_connections")
        try:
            path = layer.stack.path_to(remote_ip)
        except OSError:
            raise WireError("tcp.no_route") from None
        machine = TcpConnection.from_cookie(
            local, remote, header, (header.ack - 1) & _M32, mss, options[0], options[1],
            layer.config, now, cookies.ts_offset(local, remote), mss=layer.route_mss(path.mtu))
        sock = TcpSocket(layer, machine, (local_ip, self.port, remote_ip, header.src_port),
                         listener=self)
        sock._accepted = True  # straight into the accept queue
        layer.register(sock)
        self._ready_send.send_nowait(sock)
        if len(data) or header.flags & FIN:
            sock.deliver(header, bytes(data))
        stats["tcp.syncookies_ok"] += 1
        stats["tcp.passive_opens"] += 1
        return True

    def _forget_embryo(self, sock: TcpSocket) -> None:
        if self._embryos.pop(sock, False):
            self._young -= 1

    def _embryo_established(self, sock: TcpSocket) -> None:
        self._forget_embryo(sock)
        try:
            self._ready_send.send_nowait(sock)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._layer.stack.stats.drop("tcp.accept_queue_full")
            sock.machine.abort(trio.current_time())

    def _embryo_gone(self, sock: TcpSocket) -> None:
        self._forget_embryo(sock)

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
        self._young = 0
        self._young_queue.clear()
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
