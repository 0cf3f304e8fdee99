"""The Trio task around one TCP connection's state machine.

Segments cross into the task through a memory channel in batches: the
first segment for an idle task sends a list through the channel, and the
ones arriving before the task takes it are appended to that list (one
crossing and one wake-up per batch, nothing per segment). The connection's
timers are one cancel scope whose deadline is moved after every event, and
re-made only when it fires. Application calls (send,
receive, close) run in the application's task and call the machine directly;
whoever changes the machine flushes its output and wakes the waiters.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import attrs
import trio

from ..wire.ipv4 import PROTO_TCP
from ..wire.tcp import ACK, FIN, PSH, TCP_MIN_HEADER_LEN, build_tcp, options_length
from .connection import TcpConnection, TcpState

if TYPE_CHECKING:
    from .layer import TcpLayer
    from .listener import Listener

log = logging.getLogger("trionet.tcp")

#: Segments that may wait for one connection's task before more are dropped.
SEGMENT_QUEUE = 512

_M32 = 0xFFFFFFFF


def _send_coalesced(stack, path, local_ip, remote_ip, out: list) -> None:
    """Send ``out`` on a path with TSO: each run of data segments with
    consecutive sequence numbers, the same length (the last may be shorter)
    and the same ACK, window and options goes as one segment of up to
    ``path.tso_max`` bytes, which the link cuts back into that length
    (GSO). A run starts with plain ACK segments; its last one may carry PSH
    or FIN, which GSO leaves on the last piece only (Linux tcp_gso_segment)."""
    compute = not path.offload
    send = stack.ip_send
    n = len(out)
    runs = 0
    i = 0
    while i < n:
        header, payload = out[i]
        size = len(payload)
        j = i + 1
        if size and header.flags == ACK and j < n:
            opts = header.options
            room = path.tso_max - 20 - TCP_MIN_HEADER_LEN - options_length(opts)
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
            send(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True, gso_size=size)
        else:
            segment = build_tcp(header, payload, local_ip, remote_ip, compute_checksum=compute)
            send(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True)
        i = j
    if runs:
        stack.stats["tcp.tx_coalesced"] += runs


class TcpSocket:
    """One connection: the machine, its task, and what the API waits on."""

    __slots__ = ("layer", "machine", "key", "local_ip", "remote_ip", "listener",
                 "_send_channel", "_receive_channel", "_pending", "_scope", "_lot", "_done",
                 "_accepted", "__weakref__")

    def __init__(self, layer: TcpLayer, machine: TcpConnection, key: tuple,
                 listener: Listener | None = None):
        self.layer = layer
        self.machine = machine
        self.key = key
        self.local_ip = key[0]
        self.remote_ip = key[2]
        self.listener = listener
        # Holds at most one batch: the next starts once the task took this one.
        self._send_channel, self._receive_channel = trio.open_memory_channel(1)
        self._pending: list | None = None  # the batch in the channel, still open
        self._scope: trio.CancelScope | None = None
        self._lot = trio.lowlevel.ParkingLot()
        self._done = False
        self._accepted = False

    def __repr__(self) -> str:
        return f"<TcpSocket {self.key} {self.machine.state.name}>"

    # --- input from the layer (plain call in the NIC task) -----------------

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
                        now = trio.current_time()
                        for header, payload in batch:
                            machine.on_segment(header, payload, now)
                        self.after_event()
                        if machine.closed:
                            break
                self._scope = None
                if scope.cancelled_caught:
                    machine.on_timer(trio.current_time())
                    self.after_event()
        finally:
            self._scope = None
            self._done = True
            self._pending = None
            self._send_channel.close()
            self.layer.forget(self)
            self._lot.unpark_all()
            if self.listener is not None and not self._accepted:
                self.listener._embryo_gone(self)

    def after_event(self) -> None:
        """After the machine took input: tell the listener, send, move the
        timer, wake the API."""
        machine = self.machine
        if self.listener is not None and not self._accepted and machine.established:
            self._accepted = True
            self.listener._embryo_established(self)
        self.flush()

    def flush(self) -> None:
        machine = self.machine
        out = machine.pop_outgoing()
        if out:
            stack = self.layer.stack
            try:
                path = stack.path_to(self.remote_ip)
            except OSError:
                stack.stats["drop.tcp.no_route"] += len(out)
            else:
                local_ip, remote_ip = self.local_ip, self.remote_ip
                if path.tso_max and len(out) > 1:
                    _send_coalesced(stack, path, local_ip, remote_ip, out)
                else:
                    compute = not path.offload
                    send = stack.ip_send
                    for header, payload in out:
                        segment = build_tcp(header, payload, local_ip, remote_ip, compute_checksum=compute)
                        send(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True)
                stack.stats["tcp.tx"] += len(out)
        if machine.closed and not self._done:
            # Closed from outside its task (abort, RST on close, a failed
            # connect): nothing more will come, so end the task and free the
            # 4-tuple now instead of waiting for a segment that never arrives.
            self.terminate()
            return
        if self._scope is not None:
            deadline = machine.next_deadline
            if self._scope.deadline != deadline:
                self._scope.deadline = deadline
        self._lot.unpark_all()

    def terminate(self) -> None:
        """End the task now (the 4-tuple is reused or the stack closes)."""
        self._done = True
        self._pending = None
        self._send_channel.close()
        self.layer.forget(self)
        self._lot.unpark_all()

    async def wait_change(self) -> None:
        """Sleep until the machine changed (or the connection ended)."""
        if self._done:
            await trio.lowlevel.checkpoint()
            return
        await self._lot.park()

    def wake(self) -> None:
        self._lot.unpark_all()

    @property
    def done(self) -> bool:
        return self._done

    def timer_deadline(self) -> float:
        return self._scope.deadline if self._scope is not None else math.inf
