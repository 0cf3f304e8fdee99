"""TCP demultiplexing: connections by 4-tuple, listening endpoints by port,
RSTs for everything else (RFC 9293 3.10.7.1), ICMP errors for our
segments (RFC 5927), and active opens.

The layer is handed what it needs: the ``network`` (paths, output; it
registers itself there), the ``stats``, a ``spawn`` function for each
connection's task, and the stack's secret (ISNs, ports, SYN cookies and
timestamp offsets all derive from it, so a seeded stack repeats them).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import trio

from ..network.icmp import ErrorKind, IcmpError
from ..stats import Stats
from ..transport.ports import ANY_IPV4, ANY_IPV6, EphemeralPortAllocator, bindings_overlap
from ..validate import IPAddress, check_port, parse_address
from ..wire.errors import WireError
from ..wire.ipv4 import PROTO_TCP
from ..wire.tcp import ACK, RST, SYN, build_tcp, parse_tcp
from .config import (CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, HALF, LAST_ACK,
                     M32, SYN_SENT, TIME_WAIT, TcpConfig, reset_for)
from .connection import TcpConnection
from .cookies import SynCookies
from .isn import IsnGenerator
from .passive import EmbryoSocket, HandshakeTimer, SynQueue
from . import trace
from .socket import TcpSocket

log = logging.getLogger("trionet.tcp")

_ERRORS = {
    "refused": (ConnectionRefusedError, errno.ECONNREFUSED, "connection refused"),
    "timeout": (TimeoutError, errno.ETIMEDOUT, "connection timed out"),
    "reset": (ConnectionResetError, errno.ECONNRESET, "connection reset by peer"),
    "unreachable": (OSError, errno.EHOSTUNREACH, "no route to host"),
    "address_lost": (ConnectionAbortedError, errno.ECONNABORTED,
                     "connection aborted: its local address was removed"),
}

#: States a normal stack exit closes with FIN (the application had not).
_CLOSE_ON_EXIT = frozenset({ESTABLISHED, CLOSE_WAIT})
#: States in which our FIN is sent or waits to be, not yet acknowledged.
_CLOSING = frozenset({FIN_WAIT_1, CLOSING, LAST_ACK})


def error_for(reason: str | None) -> OSError:
    """The OSError a connection that failed for ``reason`` raises."""
    cls, code, text = _ERRORS.get(reason or "", (OSError, errno.EIO, f"connection failed ({reason})"))
    return cls(code, text)


class TcpLayer:
    """The stack's TCP: a table of connections and of listening endpoints."""

    def __init__(self, network: Any, stats: Stats, spawn: Callable, secret: bytes, *,
                 max_connections: int = 65536, name: str | None = None):
        self.network = network
        #: The stack's name, for the segment trace (``trace.py``).
        self.name = name
        self.stats = stats
        self._spawn = spawn
        #: Settings new connections start from (each gets its own copy).
        self.config = TcpConfig()
        #: Bound on the connection table (every state, TIME-WAIT and
        #: handshakes included): connect() then fails with ENOBUFS and SYNs
        #: are dropped, counted as "drop.tcp.too_many_connections".
        self.max_connections = max_connections
        #: connect() calls waiting for their handshake: key -> the error an
        #: ICMP destination unreachable brought (RFC 1122 4.2.3.9), or None.
        self._connecting: dict[tuple, OSError | None] = {}
        #: Sockets close_all() ends without a RST (FIN-WAIT-2 after a graceful close).
        self._quiet: set[TcpSocket] = set()
        self.connections: dict[tuple, TcpSocket] = {}
        #: ``input``'s last IPv4 hit: (remote port, local port, remote and
        #: local address as ints, socket).
        self._last: tuple | None = None
        self.listeners: dict[tuple[IPAddress | None, int], SynQueue] = {}
        #: Forwarders (``forward``): interface -> the SYN queue taking
        #: connections to any address arriving there.
        self.forwarders: dict[Any, SynQueue] = {}
        #: Interface -> live connections a forwarder made there: their
        #: segments keep coming to us after the forwarder closed.
        self._forwarded: dict[Any, int] = {}
        self.isn = IsnGenerator(secret[:16], clock=trio.current_time)
        #: SYN cookies (RFC 4987 3.6), as Linux's tcp_syncookies: 0 never
        #: (SYNs beyond the SYN queue are dropped), 1 when a listener's SYN
        #: queue is full or the connection table nearly so (the default), 2
        #: for every SYN.
        self.syncookies = 1
        self.cookies = SynCookies(secret)
        self.ports = EphemeralPortAllocator(secret=secret[16:])
        #: SYN-ACK retransmissions of every handshake in progress (one task).
        self.handshakes = HandshakeTimer(spawn)
        network.register_transport(PROTO_TCP, self.input, icmp_error=self.icmp_error,
                                   link_down=self.link_down,
                                   address_removed=self.address_removed)

    @staticmethod
    def route_mss(path) -> int:
        # RFC 9293 3.7.1: the MSS we announce is the MTU less the IP and TCP
        # headers (RFC 8200: IPv6's is 40 bytes).
        return path.mtu - (40 if path.source.version == 4 else 60)

    def ts_offset(self, local, remote) -> int:
        """A connection's timestamp clock offset: a keyed hash of its
        addresses (RFC 7323 5.4; as Linux), the one SYN cookies use too."""
        return self.cookies.ts_offset(local, remote)

    # --- input (plain call from the NIC task) ---------------------------------

    def input(self, iface, ip, payload, raw, verify: bool, broadcast: bool) -> None:
        if broadcast:
            raise WireError("tcp.broadcast")  # RFC 1122 4.2.3.10
        src, dst = ip.src, ip.dst
        header, data = parse_tcp(payload, src, dst, verify_checksum=verify)
        stats = self.stats
        stats["tcp.rx"] += 1
        # The last connection found, by its IPv4 4-tuple as ints: a run of
        # segments for one connection skips hashing ipaddress objects (a
        # Python-level __hash__ and __eq__ each). A socket whose task ended
        # left the table (``_forget`` runs after ``done``); IPv6 keys also
        # carry a scope, so they always take the table.
        last = self._last
        if (last is not None and type(src) is IPv4Address and last[0] == header.src_port
                and last[1] == header.dst_port and last[2] == src._ip and last[3] == dst._ip
                and not last[4].done):
            sock = last[4]
        else:
            sock = self.connections.get((dst, header.dst_port, src, header.src_port))
            if sock is not None and type(src) is IPv4Address:
                self._last = (header.src_port, header.dst_port, src._ip, dst._ip, sock)
        if trace.enabled():
            machine = sock.machine if sock is not None else None
            trace.log_segment(self.name, "in", ip.src, ip.dst, header, len(data),
                              machine.irs if machine else 0, machine.iss if machine else 0)
        if sock is not None:
            flags = header.flags
            if (flags & (SYN | ACK | RST) == SYN and sock.machine.state is TIME_WAIT
                    and self.listener_for(ip.dst, header.dst_port) is not None
                    and sock.machine.accepts_syn_in_time_wait(header)):
                # RFC 9293 3.10.7.4 (TIME-WAIT) / RFC 6191: a new incarnation.
                sock.terminate()
                stats["tcp.time_wait_reused"] += 1
            else:
                # No copy here: the frame is immutable bytes and the machine
                # copies whatever it keeps (receive buffer, out-of-order list).
                if not sock.deliver(header, data):
                    raise WireError("tcp.connection_queue_full")
                return
        listener = self.listener_for(ip.dst, header.dst_port)
        if listener is not None:
            kind = header.flags & (SYN | ACK | RST)
            if kind == SYN:
                listener.on_syn(self, ip.dst, ip.src, header)
                return
            if kind == ACK and listener.on_ack(self, ip.dst, ip.src, header, data):
                return  # a SYN cookie came back: a new connection
        if listener is None:
            stats["tcp.closed_port"] += 1
        self.send_reset(ip.dst, ip.src, header, len(data))
        raise WireError("tcp.no_connection")

    def forward_input(self, iface, ip, payload, raw, verify: bool) -> bool:
        """A segment to an address not ours, on an interface with a
        forwarder (or whose forwarded connections live on), answered as if
        the destination were ours: its connection's, else a new handshake
        in the forwarder's SYN queue (cookies beyond it, as any listener),
        else RST (RFC 9293 3.10.7.1). False (untouched) when the interface
        has no forwarder now and the segment is no forwarded connection's:
        the network layer goes on as without us."""
        forwarder = self.forwarders.get(iface)
        if forwarder is None and not self._forwarded.get(iface):
            return False
        header, data = parse_tcp(payload, ip.src, ip.dst, verify_checksum=verify)
        key = (ip.dst, header.dst_port, ip.src, header.src_port)
        sock = self.connections.get(key)
        if sock is None and forwarder is None:
            return False
        stats = self.stats
        stats["tcp.rx"] += 1
        if trace.enabled():
            machine = sock.machine if sock is not None else None
            trace.log_segment(self.name, "in", ip.src, ip.dst, header, len(data),
                              machine.irs if machine else 0, machine.iss if machine else 0)
        kind = header.flags & (SYN | ACK | RST)
        if sock is not None:
            if (kind == SYN and forwarder is not None and sock.machine.state is TIME_WAIT
                    and sock.machine.accepts_syn_in_time_wait(header)):
                sock.terminate()  # RFC 9293 3.10.7.4 / RFC 6191, as ``input``
                stats["tcp.time_wait_reused"] += 1
            else:
                if not sock.deliver(header, data):
                    raise WireError("tcp.connection_queue_full")
                return True
        if forwarder is not None:
            if kind == SYN:
                forwarder.on_syn(self, ip.dst, ip.src, header)
                return True
            if kind == ACK and forwarder.on_ack(self, ip.dst, ip.src, header, data):
                return True
        self.send_reset(ip.dst, ip.src, header, len(data))
        raise WireError("tcp.no_connection")

    def listener_for(self, address: IPAddress, port: int) -> SynQueue | None:
        """The listener for a SYN to (address, port): one bound to that
        address, else to its family's wildcard, else to every address."""
        listeners = self.listeners
        return listeners.get((address, port)) or listeners.get(
            (ANY_IPV4 if address.version == 4 else ANY_IPV6, port)) or listeners.get((None, port))

    def send_reset(self, local_ip, remote_ip, header, payload_len: int) -> None:
        rst = reset_for(header, payload_len)
        if rst is None:
            return
        try:
            path = self.network.path_to(remote_ip)
        except OSError:
            return
        if trace.enabled():
            trace.log_segment(self.name, "out", local_ip, remote_ip, rst, 0)
        segment = build_tcp(rst, b"", local_ip, remote_ip, compute_checksum=not path.offload)
        path.output(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True)
        self.stats["tcp.tx_reset"] += 1

    def icmp_error(self, error: IcmpError) -> bool:
        """An ICMP error quoting one of our segments (RFC 5927, RFC 1122
        4.2.3.9). It counts only if the quoted sequence number lies in
        SND.UNA..SND.NXT of a live connection (RFC 5927 4.1; else
        "drop.tcp.icmp_out_of_window"). Then: a destination unreachable
        for a connect() in progress fails it (as Linux: EHOSTUNREACH, ...);
        "fragmentation needed" lowers the connection's MSS and resends
        (RFC 1191); net/host unreachable or time exceeded for a handshake
        we answered ends it (a spoofed SYN, as Linux's tcp_req_err); every
        other error on a synchronized connection is soft: recorded in its
        ``soft_error``, never fatal (RFC 5927 4.2). Source quench and
        redirects are ignored (RFC 6633). False when the error is dropped
        as not about a live connection's data in flight."""
        stats = self.stats
        stats["tcp.icmp_error"] += 1
        kind = error.kind
        if kind == ErrorKind.OTHER:
            stats["tcp.icmp_ignored"] += 1
            return True
        quoted = error.transport
        key = (error.src, int.from_bytes(quoted[0:2], "big"), error.dst,
               int.from_bytes(quoted[2:4], "big"))
        sock = self.connections.get(key)
        if sock is None:
            stats.drop("tcp.icmp_no_connection")
            return False
        machine = sock.machine
        una = machine.snd_una
        seq = int.from_bytes(quoted[4:8], "big")
        seq = una + (((seq - una + HALF) & M32) - HALF)
        if not una <= seq < machine.snd_max:
            stats.drop("tcp.icmp_out_of_window")  # RFC 5927 4.1: likely forged
            return False
        if kind == ErrorKind.PACKET_TOO_BIG:
            if error.mtu >= error.quoted_length:
                # RFC 5927 7.2: the quoted packet was no bigger than that.
                stats.drop("tcp.icmp_bad_mtu")
                return False
            if sock.path_mtu(error.mtu):
                stats["tcp.pmtu_lowered"] += 1
            return True
        if machine.state is SYN_SENT:
            if kind != ErrorKind.UNREACHABLE or self._connecting.get(key, 1) is not None:
                return True
            self._connecting[key] = OSError(error.errno, error.describe_errno())
            sock.wake()
            return True
        spoofed_syn = error.net_or_host or kind == ErrorKind.TIME_EXCEEDED
        if sock.icmp_error(error.describe(), spoofed_syn):
            stats["tcp.icmp_embryo_dropped"] += 1
        else:
            stats["tcp.icmp_soft_error"] += 1
        return True

    def link_down(self, iface) -> None:
        """A link broke (its device vanished): connections that have no route
        left, or whose route used it, break now instead of retrying into
        nothing; their streams raise BrokenResourceError."""
        for sock in list(self.connections.values()):
            try:
                gone = self.network.path_to(sock.remote_ip).interface is iface
            except OSError:
                gone = True
            if gone and not sock.machine.closed:
                self.stats["tcp.broken_by_link_down"] += 1
                sock.fail("unreachable")

    def address_removed(self, address) -> None:
        """One of our addresses went (a DHCP lease lost or expired, RFC 2131
        4.4.5: the client must stop using it): the connections using it end
        at once, as lwIP does, instead of retransmitting from an address no
        longer ours; their streams raise BrokenResourceError, connect()
        ConnectionAbortedError."""
        for sock in list(self.connections.values()):
            if sock.local_ip == address and not sock.machine.closed:
                self.stats["tcp.broken_by_address_removed"] += 1
                sock.fail("address_lost")

    # --- connections ------------------------------------------------------------

    def start_socket(self, machine: TcpConnection, *,
                     on_done: Callable[[TcpSocket], None] | None = None,
                     on_established: Callable[[TcpSocket], None] | None = None,
                     interface: Any = None, embryo: bool = False) -> TcpSocket:
        """Enter ``machine`` in the table and start its task. ``on_done``
        runs when the task ends (default: the table forgets it; a listener's
        calls ``socket_ended``). ``interface``: the forwarder's that made it.
        ``embryo`` (a passive open in SYN-RECEIVED): no task yet, its SYN-ACK
        goes now and the handshake timer retransmits it; once established,
        ``on_established(sock)`` (the listener) queues it and calls
        ``start_task``."""
        if interface is not None:
            self._forwarded[interface] = self._forwarded.get(interface, 0) + 1
        key = (machine.local[0], machine.local[1], machine.remote[0], machine.remote[1])
        cls = EmbryoSocket if embryo else TcpSocket
        sock = cls(machine, key, self.network, self.stats, on_done or self._forget,
                   on_established, self.name)
        self.connections[key] = sock
        if embryo:
            sock.flush()  # the SYN-ACK
            self.handshakes.add(sock)
        else:
            self._spawn(sock.run)
        return sock

    def start_task(self, sock: TcpSocket) -> None:
        """An embryo's handshake completed: its task starts."""
        self.handshakes.forget(sock)
        sock.__class__ = TcpSocket  # the same slots: from now on its task's
        self._spawn(sock.run)

    def socket_ended(self, sock: TcpSocket, interface: Any = None) -> None:
        """A listener's (or forwarder's, ``interface``) connection ended."""
        self.handshakes.forget(sock)
        self._forget(sock)
        if interface is not None:
            self._forwarded[interface] -= 1
            self._release_if_unused(interface)

    def _forget(self, sock: TcpSocket) -> None:
        last = self._last
        if last is not None and last[4] is sock:
            self._last = None  # ``input``'s cache must not keep it alive
        if self.connections.get(sock.key) is sock:
            del self.connections[sock.key]
            if not sock.machine.closed and sock not in self._quiet:
                # Its task ended with the connection open: cancelled from
                # outside (a cancelled scope around the stack) or failed.
                # Nobody serves it any more: reset it (nothing in TIME-WAIT).
                sock.abort()

    def listener_conflicts(self, local_ip, port: int) -> bool:
        """A listener holds ``port`` at an address overlapping ``local_ip``."""
        return any(p == port and bindings_overlap(a, local_ip) for a, p in self.listeners)

    def port_in_use(self, local_ip, port: int, remote_ip=None, remote_port=None) -> bool:
        if self.listener_conflicts(local_ip, port):
            return True
        if remote_ip is None:
            return any(k[1] == port and bindings_overlap(k[0], local_ip)
                       for k in self.connections)
        return (local_ip, port, remote_ip, remote_port) in self.connections

    async def connect(self, host: Any, port: int, *, local_port: int | None = None,
                      local_address: IPAddress | None = None) -> TcpSocket:
        """Active open; returns the established connection's socket. The
        source address is the route's unless ``local_address`` (one of ours)
        is given.

        ConnectionRefusedError (ECONNREFUSED) on RST, TimeoutError (ETIMEDOUT)
        when the SYNs go unanswered, OSError(ENETUNREACH) with no route."""
        network = self.network
        dst = network.scoped(parse_address(host, "host"))
        check_port(port, "port", allow_zero=False)
        if local_port is not None:
            check_port(local_port, "local_port")
        await trio.lowlevel.checkpoint_if_cancelled()
        path = await network.ready_path_to(dst)
        src = path.source if local_address is None or local_address.is_unspecified \
            else local_address
        src, dst = network.canonical(src), network.canonical(dst)
        if src.version != dst.version:
            raise OSError(errno.EAFNOSUPPORT, f"{src} cannot reach {dst} (another family)")
        if len(self.connections) >= self.max_connections:
            raise OSError(errno.ENOBUFS, f"too many connections ({self.max_connections}, "
                                         "Stack(max_connections=...))")
        if local_port:
            if self.port_in_use(src, local_port, dst, port):
                raise OSError(errno.EADDRINUSE, f"{src}:{local_port} -> {dst}:{port} is in use")
        else:
            local_port = self.ports.allocate(
                src, dst, port, lambda p: self.port_in_use(src, p, dst, port))
        key = (src, local_port, dst, port)
        local, remote = (src, local_port), (dst, port)
        machine = TcpConnection.connect(local, remote, self.isn.isn(src, local_port, dst, port),
                                        self.config, trio.current_time(),
                                        self.ts_offset(local, remote),
                                        mss=self.route_mss(path))
        sock = self.start_socket(machine)
        self._connecting[key] = None
        try:
            while not machine.established:
                failure = self._connecting.get(key)
                if failure is not None:
                    raise failure
                if machine.error is not None or sock.done:
                    raise error_for(machine.error or "reset")
                await sock.wait_change()
        except BaseException:
            if not machine.closed:
                sock.abort()  # CLOSED now: its task ends
            raise
        finally:
            del self._connecting[key]
        return sock

    def listen(self, port: int, address, backlog: int, *, accept: Callable[[TcpSocket], bool],
               accept_queue_length: Callable[[], int], close: Callable[[], None]) -> SynQueue:
        """A new listening endpoint on ``port`` (0: a free one) at
        ``address`` (None: every address); OSError(EADDRINUSE) if taken."""
        if port == 0:
            port = self.ports.allocate(address, None, 0, lambda p: self.port_in_use(address, p))
        elif self.port_in_use(address, port) if address is None else \
                self.listener_conflicts(address, port):
            raise OSError(errno.EADDRINUSE, f"TCP port {port} is in use")
        queue = SynQueue(address, port, backlog, max(backlog, 128), accept=accept,
                         accept_queue_length=accept_queue_length, close=close,
                         ended=self.socket_ended, start_task=self.start_task)
        self.listeners[(address, port)] = queue
        return queue

    def forward(self, iface, backlog: int, *, accept: Callable[[TcpSocket], bool],
                accept_queue_length: Callable[[], int], close: Callable[[], None]) -> SynQueue:
        """A forwarder on ``iface``: SYNs to any address not ours arriving
        there (to any port) make connections as a listener's do, answered
        from that address. OSError(EADDRINUSE) if ``iface`` has one."""
        if iface in self.forwarders:
            raise OSError(errno.EADDRINUSE, f"interface {iface.name} has a TCP forwarder already")
        queue = SynQueue(None, 0, backlog, max(backlog, 128), accept=accept,
                         accept_queue_length=accept_queue_length, close=close, interface=iface,
                         ended=self.socket_ended, start_task=self.start_task)
        self.forwarders[iface] = queue
        self.network.intercept(iface, PROTO_TCP, self.forward_input)
        return queue

    def _release_if_unused(self, iface) -> None:
        """No forwarder on ``iface`` and none of its connections left: the
        network layer stops handing us packets not for our addresses."""
        if iface not in self.forwarders and not self._forwarded.get(iface):
            self._forwarded.pop(iface, None)
            self.network.release(iface, PROTO_TCP)

    def unlisten(self, queue: SynQueue) -> None:
        """Remove a listening endpoint (or a forwarder: its connections live
        on); its handshakes in progress are reset."""
        iface = queue.interface
        if iface is not None:
            if self.forwarders.get(iface) is queue:
                del self.forwarders[iface]
        else:
            key = (queue.address, queue.port)
            if self.listeners.get(key) is queue:
                del self.listeners[key]
        for sock in queue.embryo_sockets():
            sock.abort()
        queue.clear()
        if not self.listeners and not self.forwarders:
            self.handshakes.stop()
        if iface is not None:
            self._release_if_unused(iface)

    def close_listeners(self) -> None:
        for queue in [*self.listeners.values(), *self.forwarders.values()]:
            queue.close()

    async def close_gracefully(self, timeout: float) -> None:
        """The stack exits normally: close the listeners (connections nobody
        accepted are reset), close every open connection with FIN after its
        buffered data (RST if unread data is left, as ``Stream.aclose``), and
        wait up to ``timeout`` seconds until each has finished or reached
        TIME-WAIT or FIN-WAIT-2 (our data and FIN acknowledged). Handshakes
        in progress are not waited for. ``close_all`` then resets what is
        left."""
        self.close_listeners()
        socks = list(self.connections.values())
        for sock in socks:
            if sock.machine.state in _CLOSE_ON_EXIT:
                sock.close()
        with trio.move_on_after(timeout):
            for sock in socks:
                while not sock.done and sock.machine.state in _CLOSING:
                    await sock.wait_change()

    def close_all(self, *, graceful: bool = False) -> None:
        """End every connection (the stack is going away): reset it, except
        in TIME-WAIT and, after ``close_gracefully`` (``graceful``), in
        FIN-WAIT-2, where the peer has all our data and our FIN: those end
        silently."""
        self.close_listeners()
        for sock in list(self.connections.values()):
            machine = sock.machine
            if graceful and machine.state is FIN_WAIT_2:
                self._quiet.add(sock)  # forget() must not reset it
            elif not machine.closed:
                sock.abort()
            sock.terminate()
            self._quiet.discard(sock)

    # --- introspection ------------------------------------------------------------

    def resources(self) -> dict[str, int]:
        return {
            "tcp_connections": len(self.connections),
            "tcp_connecting": len(self._connecting),
            "tcp_listeners": len(self.listeners),
            "tcp_forwarders": len(self.forwarders),
            "tcp_handshakes": sum(q.embryos for q in [*self.listeners.values(),
                                                      *self.forwarders.values()]),
            "tcp_accept_queue": sum(q.accept_queue_length() for q in
                                    [*self.listeners.values(), *self.forwarders.values()]),
            "tcp_segments_queued": sum(s.queued_segments for s in self.connections.values()),
        }
