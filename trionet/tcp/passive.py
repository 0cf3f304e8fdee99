"""Passive open (RFC 9293 3.5): a listening port's SYN queue, SYN cookies
beyond it (RFC 4987 3.6), and the hand-over of established connections to
the accept queue (the ``Listener``'s)."""

from __future__ import annotations

import heapq
import itertools
import math
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from ..wire.errors import WireError
from ..wire.ipv4 import PROTO_TCP
from ..wire.tcp import ACK, FIN, SYN, TcpHeader, TcpOptions, build_tcp
from .config import M32, our_window_scale
from .connection import TcpConnection
from .cookies import MAX_AGE, PERIOD
from . import trace
from .socket import TcpSocket


class EmbryoSocket(TcpSocket):
    """A passive open in SYN-RECEIVED (as Linux's request socks): in the
    connection table with its machine, but without a task. Its segments are
    fed to the machine by a plain call in the NIC task, its SYN-ACK
    retransmissions come from the stack's ``HandshakeTimer``; the task
    starts when the handshake completes (the class becomes ``TcpSocket``)."""

    __slots__ = ()

    def deliver(self, header, payload) -> bool:
        if self._done:
            return False
        self.machine.on_segment(header, payload, trio.current_time())
        self.flush()
        return True


class HandshakeTimer:
    """The SYN-ACK retransmission timer of every embryo of a stack: one task
    parked in one cancel scope whose deadline is the earliest embryo's
    (moved, never re-made, as a connection's timer). Entries are a heap of
    (deadline, n, socket); one whose deadline is no longer the socket's in
    ``_due`` is stale and skipped. In SYN-RECEIVED a deadline only moves
    later (a retransmitted SYN leaves the timer alone), so stale entries
    are re-pushed when they come due. The task runs while listeners exist
    (``stop`` ends it), not per handshake."""

    __slots__ = ("_spawn", "_heap", "_due", "_count", "_scope", "_running", "_stopping")

    def __init__(self, spawn: Callable):
        self._spawn = spawn
        self._heap: list[tuple[float, int, TcpSocket]] = []
        self._due: dict[TcpSocket, float] = {}
        self._count = itertools.count()
        self._scope: trio.CancelScope | None = None
        self._running = False
        self._stopping = False

    def __len__(self) -> int:
        return len(self._due)

    def add(self, sock: TcpSocket) -> None:
        """Time ``sock``'s machine (an embryo) at its ``next_deadline``."""
        self._stopping = False
        self._push(sock, sock.machine.next_deadline)
        if not self._running:
            self._running = True
            self._spawn(self._run)

    def _push(self, sock: TcpSocket, deadline: float) -> None:
        if deadline == math.inf:
            self._due.pop(sock, None)
            return
        self._due[sock] = deadline
        heapq.heappush(self._heap, (deadline, next(self._count), sock))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline

    def forget(self, sock: TcpSocket) -> None:
        """``sock`` is an embryo no more (established or gone)."""
        due = self._due
        if due.pop(sock, None) is None:
            return
        heap = self._heap
        # Drop stale entries on top, so the timer does not wake for them.
        while heap and due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        scope = self._scope
        if scope is not None:
            deadline = heap[0][0] if heap else math.inf
            if scope.deadline != deadline:
                scope.deadline = deadline

    def stop(self) -> None:
        """No listening endpoint left: the task ends (a new embryo starts it again)."""
        if self._running:
            self._stopping = True
            if self._scope is not None:
                self._scope.cancel()

    async def _run(self) -> None:
        try:
            while not self._stopping:
                heap = self._heap
                with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                    self._scope = scope
                    await trio.sleep_forever()
                self._scope = None
                self._fire(trio.current_time())
        finally:
            self._scope = None
            self._running = False

    def _fire(self, now: float) -> None:
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now:
            deadline, _, sock = heapq.heappop(heap)
            if due.get(sock) != deadline:
                continue  # stale
            machine = sock.machine
            if machine.next_deadline > now:
                self._push(sock, machine.next_deadline)
                continue
            del due[sock]
            machine.on_timer(now)  # RFC 9293 3.8.1 / RFC 6298: SYN-ACK again, backed off
            sock.flush()
            if not sock.done and not machine.established:
                self._push(sock, machine.next_deadline)


class SynQueue:
    """One listening endpoint in the demultiplexer's table.

    Two bounds: connections still in the handshake (``syn_backlog``; beyond
    it SYNs are answered with SYN cookies, ``tcp.syncookies``) and
    established ones not yet accepted (``backlog``, counted by
    ``accept_queue_length()``; beyond it SYNs are dropped and counted, and
    the client's SYN retransmission tries again later). Established
    connections go to ``accept(sock)``, which returns False when there is
    no room after all; ``close()`` closes the listener it serves.

    The methods taking ``tcp`` are called by the demultiplexer with itself
    (its table, settings, secrets and network): the queue does not keep it.
    """

    def __init__(self, address, port: int, backlog: int, syn_backlog: int, *,
                 accept: Callable[[TcpSocket], bool], accept_queue_length: Callable[[], int],
                 close: Callable[[], None], interface: Any = None,
                 ended: Callable[..., None], start_task: Callable[[TcpSocket], None]):
        self.address = address
        #: 0 for a forwarder's: every port (the SYN's).
        self.port = port
        #: A forwarder's interface (it takes SYNs to any address arriving
        #: there); None for a listening port.
        self.interface = interface
        self.backlog = backlog
        self.syn_backlog = syn_backlog
        self.accept = accept
        self.accept_queue_length = accept_queue_length
        #: Closes the listener this endpoint serves (the stack is going away).
        self.close = close
        #: The layer's: a connection of ours ended (``ended(sock, interface)``),
        #: an embryo's handshake completed (its task starts).
        self._ended = ended
        self._start_task = start_task
        #: Embryos (SYN-RECEIVED), each with whether it is still "young":
        #: its first SYN-ACK not yet retransmitted (made less than one
        #: initial RTO ago). Only young ones count against ``backlog``.
        self._embryos: dict[TcpSocket, bool] = {}
        self._young = 0
        # (made at, weak reference): what ages out next, oldest first.
        self._young_queue: deque[tuple[float, weakref.ref]] = deque()
        #: When we last answered a SYN with a cookie: cookie ACKs are only
        #: looked at for MAX_AGE periods after that (as Linux).
        self._cookie_sent_at = -math.inf

    @property
    def embryos(self) -> int:
        """Handshakes in progress (SYN-RECEIVED connections)."""
        return len(self._embryos)

    def embryo_sockets(self) -> list[TcpSocket]:
        return list(self._embryos)

    def clear(self) -> None:
        self._embryos.clear()
        self._young = 0
        self._young_queue.clear()

    def _age_embryos(self, now: float, rto_initial: float) -> None:
        """Embryos made one initial RTO ago or more are no longer young."""
        cutoff = now - rto_initial
        queue = self._young_queue
        embryos = self._embryos
        while queue and queue[0][0] <= cutoff:
            sock = queue.popleft()[1]()
            if sock is not None and embryos.get(sock):
                embryos[sock] = False
                self._young -= 1

    def on_syn(self, tcp: Any, local_ip, remote_ip, header: TcpHeader) -> None:
        stats = tcp.stats
        now = trio.current_time()
        ready = self.accept_queue_length()
        if ready >= self.backlog:
            stats.drop("tcp.accept_queue_full")  # as Linux: nothing to make room for it
            return
        table = len(tcp.connections)
        if table >= tcp.max_connections:
            stats.drop("tcp.too_many_connections")
            return
        cookies = tcp.syncookies
        if cookies == 2 or len(self._embryos) >= self.syn_backlog or \
                table >= tcp.max_connections - (tcp.max_connections >> 3):
            # The SYN queue is full, or embryos would take the last eighth of
            # the connection table: answer without state (RFC 4987 3.6).
            if cookies:
                self._send_cookie(tcp, local_ip, remote_ip, header, now)
            elif len(self._embryos) >= self.syn_backlog:
                stats.drop("tcp.syn_queue_full")
            else:
                stats.drop("tcp.too_many_connections")
            return
        # Young handshakes count against the backlog too, so a connection
        # that completes finds room in the accept queue; older ones (their
        # SYN-ACK went unanswered for an RTO: likely spoofed) only fill the
        # SYN queue, and beyond it cookies take over.
        self._age_embryos(now, tcp.config.rto_initial)
        if ready + self._young >= self.backlog:
            stats.drop("tcp.accept_queue_full")
            return
        try:
            path = tcp.network.path_to(remote_ip)
        except OSError:
            stats.drop("tcp.no_route")
            return
        port = self.port or header.dst_port
        local = (local_ip, port)
        remote = (remote_ip, header.src_port)
        machine = TcpConnection.accept(
            local, remote, header, tcp.isn.isn(local_ip, port, remote_ip, header.src_port),
            tcp.config, now, tcp.ts_offset(local, remote), mss=tcp.route_mss(path))
        sock = tcp.start_socket(machine, on_done=self._socket_done,
                                on_established=self._established, interface=self.interface,
                                embryo=True)
        self._embryos[sock] = True
        self._young += 1
        self._young_queue.append((now, weakref.ref(sock)))
        stats["tcp.passive_opens"] += 1

    def _send_cookie(self, tcp: Any, local_ip, remote_ip, syn: TcpHeader, now: float) -> None:
        """A SYN-ACK whose ISN is a SYN cookie; nothing is kept."""
        stats = tcp.stats
        try:
            path = tcp.network.path_to(remote_ip)
        except OSError:
            stats.drop("tcp.no_route")
            return
        config = tcp.config
        mss = tcp.route_mss(path)
        port = self.port or syn.dst_port
        local = (local_ip, port)
        remote = (remote_ip, syn.src_port)
        cookies = tcp.cookies
        iss = cookies.encode(local, remote, syn.seq, syn.options.mss, now)
        opts = syn.options
        if config.timestamps and opts.timestamps is not None:
            # Window scale and SACK-permitted ride in our TSval (as Linux);
            # without timestamps they are not offered at all.
            wscale = min(opts.window_scale, 14) if (config.window_scale and
                                                   opts.window_scale is not None) else None
            sack = config.sack and opts.sack_permitted
            tsval = (int(now * 1000) + cookies.ts_offset(local, remote)) & M32
            ts = (cookies.encode_tsval(tsval, wscale, sack), opts.timestamps[0])
            out = TcpOptions(mss=mss,
                             window_scale=our_window_scale(config) if wscale is not None else None,
                             sack_permitted=sack, timestamps=ts)
        else:
            out = TcpOptions(mss=mss)
        header = TcpHeader(port, syn.src_port, iss, (syn.seq + 1) & M32, SYN | ACK,
                           min(config.receive_buffer, 0xFFFF), 0, out)
        if trace.enabled():
            trace.log_segment(tcp.name, "out", local_ip, remote_ip, header, 0)
        segment = build_tcp(header, b"", local_ip, remote_ip, compute_checksum=not path.offload)
        path.output(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True)
        self._cookie_sent_at = now
        stats["tcp.syncookies_sent"] += 1
        stats["tcp.tx"] += 1

    def on_ack(self, tcp: Any, local_ip, remote_ip, header: TcpHeader, data) -> bool:
        """An ACK for no connection: the return of a SYN cookie? If it is
        valid, make the connection (ESTABLISHED) and return True. False when
        no cookie went out lately (the caller answers with RST as for any
        unknown connection). An invalid cookie raises WireError, after the
        RST (RFC 9293 3.10.7.1)."""
        now = trio.current_time()
        if now - self._cookie_sent_at > MAX_AGE * PERIOD:
            return False
        local = (local_ip, self.port or header.dst_port)
        remote = (remote_ip, header.src_port)
        cookies = tcp.cookies
        mss = cookies.decode(local, remote, (header.seq - 1) & M32, (header.ack - 1) & M32, now)
        ts = header.options.timestamps
        options = cookies.decode_tsecr(ts[1]) if ts is not None else (None, False)
        if mss is None or options is None:
            tcp.send_reset(local_ip, remote_ip, header, len(data))
            raise WireError("tcp.syncookie_invalid")
        if self.accept_queue_length() >= self.backlog:
            # As Linux: the ACK is dropped; the client's next segment tries again.
            raise WireError("tcp.accept_queue_full")
        if len(tcp.connections) >= tcp.max_connections:
            raise WireError("tcp.too_many_connections")
        try:
            path = tcp.network.path_to(remote_ip)
        except OSError:
            raise WireError("tcp.no_route") from None
        machine = TcpConnection.from_cookie(
            local, remote, header, (header.ack - 1) & M32, mss, options[0], options[1],
            tcp.config, now, cookies.ts_offset(local, remote), mss=tcp.route_mss(path))
        sock = tcp.start_socket(machine, on_done=self._socket_done, interface=self.interface)
        self.accept(sock)  # straight into the accept queue
        if len(data) or header.flags & FIN:
            sock.deliver(header, bytes(data))
        stats = tcp.stats
        stats["tcp.syncookies_ok"] += 1
        stats["tcp.passive_opens"] += 1
        return True

    def _forget_embryo(self, sock: TcpSocket) -> None:
        """Off the SYN queue (established, or ended)."""
        if self._embryos.pop(sock, False):
            self._young -= 1

    def _socket_done(self, sock: TcpSocket) -> None:
        """One of our connections ended (a bound method, not a closure per
        connection)."""
        self._ended(sock, self.interface)
        self._forget_embryo(sock)

    def _established(self, sock: TcpSocket) -> None:
        """The handshake completed: into the accept queue and its task
        starts, or reset when there is no room after all (its RST leaves
        with this flush)."""
        self._forget_embryo(sock)
        if self.accept(sock):
            self._start_task(sock)
        else:
            sock.machine.abort(trio.current_time())
