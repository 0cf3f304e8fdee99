"""TCP demultiplexing: connections by 4-tuple, listeners by port, RSTs for
everything else (RFC 9293 3.10.7.1), ephemeral ports and ISNs."""

from __future__ import annotations

import errno
import logging
import os
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

import trio

from ..route import IPAddress, parse_address
from ..udp import check_port
from ..wire.errors import WireError
from ..wire.tcp import ACK, FIN, RST, SYN, build_tcp, parse_tcp
from ..wire.ipv4 import PROTO_TCP
from .connection import TcpConfig, TcpConnection, TcpState, reset_for
from .cookies import SynCookies
from .isn import EphemeralPortAllocator, IsnGenerator
from .socket import TcpSocket

if TYPE_CHECKING:
    from ..stack import Stack
    from .listener import Listener
    from .stream import Stream

log = logging.getLogger("trionet.tcp")

_ERRORS = {
    "refused": (ConnectionRefusedError, errno.ECONNREFUSED, "connection refused"),
    "timeout": (TimeoutError, errno.ETIMEDOUT, "connection timed out"),
    "reset": (ConnectionResetError, errno.ECONNRESET, "connection reset by peer"),
    "unreachable": (OSError, errno.EHOSTUNREACH, "no route to host"),
}


#: RFC 792 destination unreachable and its codes (RFC 1122 4.2.3.9; the
#: errno values are Linux's icmp_err_convert).
_ICMP_DEST_UNREACHABLE = 3
_UNREACH_FRAG_NEEDED = 4
_ICMP_TIME_EXCEEDED = 11
_ICMP_PARAMETER_PROBLEM = 12
#: The ICMP errors TCP acts on (RFC 5927 2; source quench is ignored,
#: RFC 6633, and so are redirects).
_ICMP_TCP_ERRORS = frozenset({_ICMP_DEST_UNREACHABLE, _ICMP_TIME_EXCEEDED,
                              _ICMP_PARAMETER_PROBLEM})
#: RFC 1191 7: MTU plateaus, for routers that report no next-hop MTU.
_MTU_PLATEAUS = (32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68)
_M32 = 0xFFFFFFFF
_HALF = 1 << 31
_UNREACH_ERRNO = {0: errno.ENETUNREACH, 1: errno.EHOSTUNREACH, 2: errno.ENOPROTOOPT,
                  3: errno.ECONNREFUSED, 6: errno.ENETUNREACH, 7: errno.EHOSTUNREACH}

#: States a normal stack exit closes with FIN (the application had not).
_CLOSE_ON_EXIT = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})
#: States in which our FIN is sent or waits to be, not yet acknowledged.
_CLOSING = frozenset({TcpState.FIN_WAIT_1, TcpState.CLOSING, TcpState.LAST_ACK})


def error_for(reason: str | None) -> OSError:
    cls, code, text = _ERRORS.get(reason or "", (OSError, errno.EIO, f"connection failed ({reason})"))
    return cls(code, text)


class TcpLayer:
    """The stack's TCP: a table of connections and of listeners."""

    def __init__(self, stack: Stack, secret: bytes, *, max_connections: int = 65536):
        self.stack = stack
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
        self.listeners: dict[tuple[IPAddress | None, int], Listener] = {}
        self.isn = IsnGenerator(secret[:16], clock=trio.current_time)
        #: SYN cookies (RFC 4987 3.6), as Linux's tcp_syncookies: 0 never
        #: (SYNs beyond the SYN queue are dropped), 1 when a listener's SYN
        #: queue is full or the connection table nearly so (the default), 2
        #: for every SYN.
        self.syncookies = 1
        self.cookies = SynCookies(secret)
        self.ports = EphemeralPortAllocator(secret=secret[16:], rng=stack._rng)

    @staticmethod
    def route_mss(mtu: int) -> int:
        # RFC 9293 3.7.1: the MSS we announce is the MTU less the IP and TCP headers.
        return mtu - 40

    # --- input (plain call from the NIC task) ---------------------------------

    def input(self, iface, ip, payload, quote, verify: bool, broadcast: bool) -> None:
        if broadcast:
            raise WireError("tcp.broadcast")  # RFC 1122 4.2.3.10
        header, data = parse_tcp(payload, ip.src, ip.dst, verify_checksum=verify)
        stats = self.stack.stats
        stats["tcp.rx"] += 1
        key = (ip.dst, header.dst_port, ip.src, header.src_port)
        sock = self.connections.get(key)
        if sock is not None:
            flags = header.flags
            if (flags & (SYN | ACK | RST) == SYN and sock.machine.state is TcpState.TIME_WAIT
                    and self._listener_for(ip.dst, header.dst_port) is not None
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
        listener = self._listener_for(ip.dst, header.dst_port)
        if listener is not None:
            kind = header.flags & (SYN | ACK | RST)
            if kind == SYN:
                listener._on_syn(ip.dst, ip.src, header)
                return
            if kind == ACK and listener._on_ack(ip.dst, ip.src, header, data):
                return  # a SYN cookie came back: a new connection
        if listener is None:
            stats["tcp.closed_port"] += 1
        self.send_reset(ip.dst, ip.src, header, len(data))
        raise WireError("tcp.no_connection")

    def _listener_for(self, address: IPAddress, port: int) -> Listener | None:
        return self.listeners.get((address, port)) or self.listeners.get((None, port))

    def send_reset(self, local_ip, remote_ip, header, payload_len: int) -> None:
        rst = reset_for(header, payload_len)
        if rst is None:
            return
        try:
            path = self.stack.path_to(remote_ip)
        except OSError:
            return
        segment = build_tcp(rst, b"", local_ip, remote_ip, compute_checksum=not path.offload)
        self.stack.ip_send(path, local_ip, remote_ip, PROTO_TCP, segment, dont_fragment=True)
        self.stack.stats["tcp.tx_reset"] += 1

    def icmp_error(self, msg, quoted: bytes, inner: bytes) -> None:
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
        redirects are ignored (RFC 6633)."""
        stats = self.stack.stats
        stats["tcp.icmp_error"] += 1
        kind = msg.type
        if kind not in _ICMP_TCP_ERRORS or len(inner) < 8:
            stats["tcp.icmp_ignored"] += 1
            return
        try:
            local_ip = IPv4Address(quoted[12:16])
            remote_ip = IPv4Address(quoted[16:20])
        except ValueError:
            return
        key = (local_ip, int.from_bytes(inner[0:2], "big"), remote_ip,
               int.from_bytes(inner[2:4], "big"))
        sock = self.connections.get(key)
        if sock is None:
            stats.drop("tcp.icmp_no_connection")
            return
        machine = sock.machine
        seq = int.from_bytes(inner[4:8], "big")
        una = machine.snd_una
        seq = una + (((seq - una + _HALF) & _M32) - _HALF)
        if not una <= seq < machine.snd_max:
            stats.drop("tcp.icmp_out_of_window")  # RFC 5927 4.1: likely forged
            return
        code = msg.code
        now = trio.current_time()
        if kind == _ICMP_DEST_UNREACHABLE and code == _UNREACH_FRAG_NEEDED:
            mtu = msg.next_hop_mtu
            length = int.from_bytes(quoted[2:4], "big")
            if mtu == 0:  # an RFC 1191 5 router: guess the next plateau down
                mtu = next((p for p in _MTU_PLATEAUS if p < length), 68)
            if mtu >= length:
                # RFC 5927 7.2: the quoted packet was no bigger than that.
                stats.drop("tcp.icmp_bad_mtu")
                return
            if machine.on_path_mtu(mtu, now):
                stats["tcp.pmtu_lowered"] += 1
                sock.flush()
            return
        if machine.state is TcpState.SYN_SENT:
            if kind != _ICMP_DEST_UNREACHABLE or self._connecting.get(key, 1) is not None:
                return
            errno_ = _UNREACH_ERRNO.get(code, errno.EHOSTUNREACH)
            self._connecting[key] = OSError(errno_, f"{os.strerror(errno_)} (ICMP type {kind} "
                                                    f"code {code} from the network)")
            sock.wake()
            return
        if machine.on_icmp_error(kind, code, now):
            stats["tcp.icmp_embryo_dropped"] += 1
            sock.flush()
        else:
            stats["tcp.icmp_soft_error"] += 1

    def link_down(self, iface) -> None:
        """A link broke (its device vanished): connections that have no route
        left, or whose route used it, break now instead of retrying into
        nothing; their streams raise BrokenResourceError."""
        now = trio.current_time()
        for sock in list(self.connections.values()):
            try:
                gone = self.stack.path_to(sock.remote_ip).interface is iface
            except OSError:
                gone = True
            if gone and not sock.machine.closed:
                sock.machine.fail("unreachable", now)
                self.stack.stats["tcp.broken_by_link_down"] += 1
                sock.flush()

    # --- connections ------------------------------------------------------------

    def register(self, sock: TcpSocket) -> None:
        self.connections[sock.key] = sock
        self.stack._start_task(sock.run)

    def forget(self, sock: TcpSocket) -> None:
        if self.connections.get(sock.key) is sock:
            del self.connections[sock.key]
            machine = sock.machine
            if not machine.closed and sock not in self._quiet:
                # Its task ended with the connection open: cancelled from
                # outside (a cancelled scope around the stack) or failed.
                # Nobody serves it any more: reset it (nothing in TIME-WAIT).
                machine.abort(trio.current_time())
                sock.flush()

    def port_in_use(self, local_ip, port: int, remote_ip=None, remote_port=None) -> bool:
        if (None, port) in self.listeners or (local_ip, port) in self.listeners:
            return True
        if remote_ip is None:
            return any(k[1] == port for k in self.connections)
        return (local_ip, port, remote_ip, remote_port) in self.connections

    async def connect(self, host: Any, port: int, *, local_port: int | None = None) -> Stream:
        from .stream import Stream

        dst = parse_address(host, "host")
        check_port(port, "port", allow_zero=False)
        if local_port is not None:
            check_port(local_port, "local_port")
        await trio.lowlevel.checkpoint_if_cancelled()
        path = self.stack.path_to(dst)
        src = path.source
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
        now = trio.current_time()
        machine = TcpConnection.connect((src, local_port), (dst, port),
                                        self.isn.isn(src, local_port, dst, port),
                                        self.config, now, mss=self.route_mss(path.mtu))
        sock = TcpSocket(self, machine, key)
        self.register(sock)
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
                machine.abort(trio.current_time())
                sock.flush()  # CLOSED now: flush() ends the task
            raise
        finally:
            del self._connecting[key]
        return Stream(sock)

    async def close_gracefully(self, timeout: float) -> None:
        """The stack exits normally: close the listeners (connections nobody
        accepted are reset), close every open connection with FIN after its
        buffered data (RST if unread data is left, as ``Stream.aclose``), and
        wait up to ``timeout`` seconds until each has finished or reached
        TIME-WAIT or FIN-WAIT-2 (our data and FIN acknowledged). Handshakes
        in progress are not waited for. ``close_all`` then resets what is
        left."""
        for listener in list(self.listeners.values()):
            listener._close_now()
        now = trio.current_time()
        socks = list(self.connections.values())
        for sock in socks:
            if sock.machine.state in _CLOSE_ON_EXIT:
                sock.machine.close(now)
                sock.flush()
        with trio.move_on_after(timeout):
            for sock in socks:
                while not sock.done and sock.machine.state in _CLOSING:
                    await sock.wait_change()

    def close_all(self, *, graceful: bool = False) -> None:
        """End every connection (the stack is going away): reset it, except
        in TIME-WAIT and, after ``close_gracefully`` (``graceful``), in
        FIN-WAIT-2, where the peer has all our data and our FIN: those end
        silently."""
        now = trio.current_time()
        for listener in list(self.listeners.values()):
            listener._close_now()
        for sock in list(self.connections.values()):
            machine = sock.machine
            if graceful and machine.state is TcpState.FIN_WAIT_2:
                self._quiet.add(sock)  # forget() must not reset it
            elif not machine.closed:
                machine.abort(now)
                sock.flush()
            sock.terminate()
            self._quiet.discard(sock)
