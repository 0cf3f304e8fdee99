"""The Trio task around one TCP connection's state machine.

Segments cross into the task through a memory channel in batches: the
first segment for an idle task sends a list through the channel, and the
ones arriving before the task takes it are appended to that list (one
crossing and one wake-up per batch, nothing per segment). The connection's
timers are one cancel scope whose deadline is moved after every event, and
re-made only when it fires.

Whatever changes the machine from outside its task (the application's
sends, receives and closes; ICMP; the stack) goes through one of
``TcpSocket``'s entry points, which all end in ``flush``: send the output,
end the task if the machine closed, move the timer, wake the waiters. The
task's own loop ends each batch and each timer the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import attrs
import trio

from ..stats import Stats
from ..wire.ipv4 import PROTO_TCP
from ..wire.tcp import ACK, FIN, PSH, TCP_MIN_HEADER_LEN, build_tcp, options_length
from . import trace
from .connection import TcpConnection

log = logging.getLogger("trionet.tcp")

#: Segments that may wait for one connection's task before more are dropped.
SEGMENT_QUEUE = 512

_M32 = 0xFFFFFFFF
_IP_HEADER = 20
_IPV6_HEADER = 40


def send_segments(network, stats: Stats, local_ip, remote_ip, out: list,
                  mtu_seen: float = math.inf, mss: int = 0):
    """Build and send the machine's output segments to ``remote_ip``; the
    path (None without a route). When its MTU is below ``mtu_seen`` (the
    path MTU went down), segments that no longer fit are held back: the
    caller lowers the MSS, which resends them smaller (RFC 8201 5.2).
    ``mss``: data segments longer than this carry several full-sized ones
    (the machine's ``gso_segments``): on a TSO path they go as one GSO
    segment, elsewhere cut here."""
    try:
        path = network.path_to(remote_ip)
    except OSError:
        stats["drop.tcp.no_route"] += len(out)
        return None
    if mss and (not path.tso_max or path.mtu < mtu_seen) and \
            any(len(p) > mss for _, p in out):
        out = _cut(out, mss)
    if path.mtu < mtu_seen:
        room = path.mtu - (_IP_HEADER if remote_ip.version == 4 else _IPV6_HEADER)
        out = [(h, p) for h, p in out
               if TCP_MIN_HEADER_LEN + options_length(h.options) + len(p) <= room]
    if not out:
        return path  # nothing fits the lowered MTU: resent smaller by the caller
    if path.tso_max and (len(out) > 1 or mss and len(out[0][1]) > mss):
        send_coalesced(path, stats, local_ip, remote_ip, out, mss)
    else:
        compute = not path.offload
        output = path.output
        for header, payload in out:
            segment = build_tcp(header, payload, local_ip, remote_ip, compute_checksum=compute)
            output(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True)
    stats["tcp.tx"] += len(out)
    return path


def _cut(out: list, mss: int) -> list:
    """Data segments longer than ``mss`` cut into segments of ``mss`` (the
    last shorter), as a link's GSO would: PSH and FIN on the last piece."""
    pieces = []
    for header, payload in out:
        n = len(payload)
        if n <= mss:
            pieces.append((header, payload))
            continue
        view = memoryview(payload)
        seq = header.seq
        plain = attrs.evolve(header, flags=header.flags & ~(PSH | FIN))
        for off in range(0, n, mss):
            last = off + mss >= n
            piece = header if last else plain
            pieces.append((attrs.evolve(piece, seq=(seq + off) & _M32),
                           bytes(view[off:off + mss])))
    return pieces


def send_coalesced(path, stats: Stats, local_ip, remote_ip, out: list, mss: int = 0) -> None:
    """Send ``out`` on a path with TSO: each run of data segments with
    consecutive sequence numbers, the same length (the last may be shorter)
    and the same ACK, window and options goes as one segment of up to
    ``path.tso_max`` bytes, which the link cuts back into that length
    (GSO). A run starts with plain ACK segments; its last one may carry PSH
    or FIN, which GSO leaves on the last piece only (Linux tcp_gso_segment)."""
    compute = not path.offload
    output = path.output
    ip_header = _IP_HEADER if remote_ip.version == 4 else _IPV6_HEADER
    n = len(out)
    runs = 0
    i = 0
    while i < n:
        header, payload = out[i]
        size = len(payload)
        if mss and size > mss:
            # Several full-sized segments made as one (``gso_segments``).
            segment = build_tcp(header, payload, local_ip, remote_ip, compute_checksum=compute)
            output(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True,
                   gso_size=mss)
            runs += 1
            i += 1
            continue
        j = i + 1
        if size and header.flags == ACK and j < n:
            opts = header.options
            room = path.tso_max - ip_header - TCP_MIN_HEADER_LEN - options_length(opts)
            limit = i + room // size  # segments that fit in one datagram
            seq = (header.seq + size) & _M32
            ack, window = header.ack, header.window
            while j < n and j < limit:
                h, p = out[j]
                plen = len(p)
                if (h.seq != seq or not plen or plen > size or h.ack != ack
                        or h.window != window or h.flags & ~(PSH | FIN) != ACK
                        or (h.options is not opts and h.options != opts)):
                    break
                j += 1
                if plen < size or h.flags != ACK:
                    break  # a short or a PSH/FIN segment ends the run
                seq = (seq + plen) & _M32
        if j - i > 1:
            last = out[j - 1][0]
            if last.flags != ACK:
                header = attrs.evolve(header, flags=last.flags)
            payload = b"".join([p for _, p in out[i:j]])
            runs += 1
            segment = build_tcp(header, payload, local_ip, remote_ip, compute_checksum=compute)
            output(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True, gso_size=size)
        else:
            segment = build_tcp(header, payload, local_ip, remote_ip, compute_checksum=compute)
            output(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True)
        i = j
    if runs:
        stats["tcp.tx_coalesced"] += runs


class TcpSocket:
    """One connection: the machine, its task, and what the API waits on.

    Handed what it needs: the ``network`` to send through, the ``stats``,
    ``on_done(sock)`` (its task ended: the demultiplexer forgets it) and,
    for a passive open, ``on_established(sock)`` (once, when the handshake
    completes: the listener queues it)."""

    __slots__ = ("machine", "key", "local_ip", "remote_ip", "_network", "_stats", "_on_done",
                 "_on_established", "_send_channel", "_receive_channel", "_pending", "_scope",
                 "_lot", "_done", "_name", "_mtu_seen", "__weakref__")

    def __init__(self, machine: TcpConnection, key: tuple, network, stats: Stats,
                 on_done: Callable[[TcpSocket], None],
                 on_established: Callable[[TcpSocket], None] | None = None,
                 name: str | None = None):
        self.machine = machine
        #: The stack's name, for the segment trace.
        self._name = name
        self.key = key
        self.local_ip = key[0]
        self.remote_ip = key[2]
        self._network = network
        self._stats = stats
        self._on_done = on_done
        self._on_established = on_established
        # Holds at most one batch: the next starts once the task took this one.
        self._send_channel, self._receive_channel = trio.open_memory_channel(1)
        self._pending: list | None = None  # the batch in the channel, still open
        self._scope: trio.CancelScope | None = None
        self._lot = trio.lowlevel.ParkingLot()
        self._done = False
        #: The smallest path MTU seen while sending.
        self._mtu_seen = math.inf

    def __repr__(self) -> str:
        return f"<TcpSocket {self.key} {self.machine.state.name}>"

    @property
    def done(self) -> bool:
        """The task ended (or never needs to run again)."""
        return self._done

    @property
    def queued_segments(self) -> int:
        """Segments waiting for the task."""
        return len(self._pending) if self._pending is not None else 0

    def timer_deadline(self) -> float:
        return self._scope.deadline if self._scope is not None else math.inf

    # --- input from the demultiplexer (plain call in the NIC task) -----------

    def deliver(self, header, payload) -> bool:
        """Queue a segment for the task; False when the task is gone or
        SEGMENT_QUEUE segments already wait."""
        pending = self._pending
        if pending is not None:
            if len(pending) >= SEGMENT_QUEUE:
                return False
            pending.append((header, payload))
            return True
        pending = [(header, payload)]
        try:
            self._send_channel.send_nowait(pending)
        except (trio.WouldBlock, trio.ClosedResourceError):
            return False
        self._pending = pending
        return True

    # --- the task ------------------------------------------------------------

    async def run(self) -> None:
        machine = self.machine
        receive = self._receive_channel
        try:
            self.flush()
            while not machine.closed:
                with trio.CancelScope(deadline=machine.next_deadline) as scope:
                    self._scope = scope
                    while True:
                        try:
                            batch = await receive.receive()
                        except trio.EndOfChannel:  # terminate(): the 4-tuple is reused
                            return
                        self._pending = None  # later segments start the next batch
                        machine.on_segments(batch, trio.current_time())
                        self.flush()
                        if machine.closed:
                            break
                self._scope = None
                if scope.cancelled_caught:
                    machine.on_timer(trio.current_time())
                    self.flush()
        finally:
            self._scope = None
            self._end()

    def flush(self) -> None:
        """After the machine changed: tell the listener once it is
        established, send its output, end the task if it closed (nothing
        more will come), move the timer, wake the waiters."""
        machine = self.machine
        if self._on_established is not None and machine.established:
            on_established, self._on_established = self._on_established, None
            on_established(self)
        out = machine.pop_outgoing()
        if out:
            if trace.enabled():
                for header, payload in out:
                    trace.log_segment(self._name, "out", self.local_ip, self.remote_ip, header,
                                      len(payload), machine.iss, machine.irs)
            # Segments of several MSS exist only where the machine was told
            # it may make them: no scan of the output on other paths.
            path = send_segments(self._network, self._stats, self.local_ip, self.remote_ip,
                                 out, self._mtu_seen,
                                 machine._mss if machine.gso_segments > 1 else 0)
            mtu = path.mtu if path is not None else 0
            # TSO: new data as segments of up to this many MSS (the IP and
            # TCP headers with options, at most 120 bytes, fit beside them).
            machine.gso_segments = max(1, (path.tso_max - 120) // machine._mss) \
                if path is not None and path.tso_max and not 0 < mtu < self._mtu_seen else 1
            if 0 < mtu < self._mtu_seen:
                # The path's MTU went down (a Packet Too Big about another
                # transport's packet, a new route: RFC 8201 5.2): segments
                # that no longer fit are resent smaller.
                self._mtu_seen = mtu
                self.path_mtu(mtu)
        if machine.closed and not self._done:
            # Closed from outside its task (abort, RST on close, a failed
            # connect): end the task and free the 4-tuple now instead of
            # waiting for a segment that never arrives.
            self.terminate()
            return
        scope = self._scope
        if scope is not None:
            deadline = machine.next_deadline
            if scope.deadline != deadline:
                scope.deadline = deadline
        self._lot.unpark_all()

    def terminate(self) -> None:
        """End the task now (the 4-tuple is reused or the stack closes)."""
        if not self._done:
            self._end()

    def _end(self) -> None:
        self._done = True
        self._pending = None
        self._send_channel.close()
        self._lot.unpark_all()
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(self)

    # --- entry points from outside the task: each ends in flush() ---------------

    def _apply(self, entry, *args):
        result = entry(*args, trio.current_time())
        self.flush()
        return result

    def send(self, data) -> int:
        """Buffer what fits of ``data`` (and send what the windows allow)."""
        return self._apply(self.machine.send, data)

    def receive(self, max_bytes: int) -> bytes:
        return self._apply(self.machine.receive, max_bytes)

    def shutdown_write(self) -> None:
        self._apply(self.machine.shutdown_write)

    def close(self) -> None:
        """FIN after the buffered data (RST if unread data is left)."""
        self._apply(self.machine.close)

    def abort(self) -> None:
        """RST (if synchronized), then CLOSED."""
        self._apply(self.machine.abort)

    def set_option(self, name: str, value) -> None:
        self._apply(self.machine.set_option, name, value)

    def fail(self, reason: str) -> None:
        """End at once with ``reason``, sending nothing (the path is gone)."""
        self._apply(self.machine.fail, reason)

    def path_mtu(self, mtu: int) -> bool:
        return self._apply(self.machine.on_path_mtu, mtu)

    def icmp_error(self, description: str, spoofed_syn: bool) -> bool:
        return self._apply(self.machine.on_icmp_error, description, spoofed_syn)

    # --- waiting ------------------------------------------------------------------

    async def wait_change(self) -> None:
        """Sleep until the machine changed (or the connection ended)."""
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        await self._lot.park()

    def wake(self) -> None:
        self._lot.unpark_all()
