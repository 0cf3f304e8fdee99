"""Trio's socket layer over a trionet stack: ``use_stack(stack)``.

Trio routes ``trio.socket.socket()`` through a custom socket factory and
name lookups through a custom hostname resolver, one of each per
``trio.run`` (``trio.socket.set_custom_socket_factory`` /
``set_custom_hostname_resolver``). ``use_stack`` installs ours once per run
and sets a context variable: inside it (in the current task and every task
started from inside it) sockets and names are the stack's; outside it, the
factory and resolver hand every call to what was there before, or to Trio's
own kernel sockets and resolver. So ``trio.open_tcp_stream``,
``trio.serve_tcp``, anyio on Trio, httpx on Trio and dnspython's Trio
backend run over trionet unmodified.

The sockets behave as Linux's do as far as those libraries look: the same
errno values (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, EPIPE,
ECONNRESET, EBADF after close, ...), so Trio turns them into
``BrokenResourceError``/``ClosedResourceError`` as it does for the kernel's.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import itertools
import os
import socket as stdlib
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import trio

from ..tcp.config import SYN_RECEIVED
from ..tcp.listener import Listener
from ..tcp.socket import TcpSocket
from ..transport.udp import MAX_UDP6_PAYLOAD, MAX_UDP_PAYLOAD, UdpSocket
from ..validate import IPAddress

#: The stack whose sockets the current context uses (None: the kernel's).
_current_stack: contextvars.ContextVar[Any] = contextvars.ContextVar("trionet_stack",
                                                                      default=None)
#: Marks a trio.run in which our factory and resolver are installed.
_installed: trio.lowlevel.RunVar = trio.lowlevel.RunVar("trionet_socket_layer")

_TYPE_MASK = ~(getattr(stdlib, "SOCK_NONBLOCK", 0) | getattr(stdlib, "SOCK_CLOEXEC", 0))
#: Pseudo file descriptor numbers start far above real ones.
_FIRST_FILENO = 1 << 20
_LISTEN_BACKLOG_MAX = 4096


def _error(code: int, detail: str | None = None) -> OSError:
    text = os.strerror(code)
    return OSError(code, f"{text}: {detail}" if detail else text)


@contextlib.contextmanager
def use_stack(stack) -> Iterator[None]:
    """Inside the ``with`` block (in this task and in every task started from
    inside it), Trio's socket layer is ``stack``'s: ``trio.socket.socket()``
    makes trionet sockets and ``getaddrinfo`` asks the stack. Outside it,
    the kernel's sockets and resolver, in the same ``trio.run``."""
    # Duck-typed: stack.py imports this module (its resolver runs dnspython
    # inside use_stack), so this one does not import it back.
    if not callable(getattr(stack, "socket_families", None)) or not hasattr(stack, "tcp"):
        raise TypeError(f"use_stack needs a trionet.Stack, not {type(stack).__name__}")
    _install()
    token = _current_stack.set(stack)
    try:
        yield
    finally:
        _current_stack.reset(token)


def current_stack():
    """The stack ``use_stack`` made current here, or None."""
    return _current_stack.get()


def _install() -> None:
    if _installed.get(None) is not None:
        return
    factory = _Factory()
    resolver = _Resolver()
    factory.previous = trio.socket.set_custom_socket_factory(factory)
    resolver.previous = trio.socket.set_custom_hostname_resolver(resolver)
    _installed.set((factory, resolver))


class _Factory(trio.abc.SocketFactory):
    """Trionet sockets inside ``use_stack``; outside, what was there before."""

    def __init__(self) -> None:
        self.previous: trio.abc.SocketFactory | None = None
        self._numbers = itertools.count(_FIRST_FILENO)

    def socket(self, family=stdlib.AF_INET, type=stdlib.SOCK_STREAM, proto=0):
        stack = _current_stack.get()
        if stack is None:
            if self.previous is not None:
                return self.previous.socket(family, type, proto)
            return trio.socket.from_stdlib_socket(stdlib.socket(family, type, proto))
        kind = type & _TYPE_MASK
        if family not in stack.socket_families():
            # As a kernel built without that family: open_tcp_listeners and
            # happy eyeballs skip it.
            raise _error(errno.EAFNOSUPPORT, f"trionet has no {_name(family)} sockets")
        if kind == stdlib.SOCK_STREAM and proto in (0, stdlib.IPPROTO_TCP):
            return TcpSocketType(stack, family, proto, self._numbers)
        if kind == stdlib.SOCK_DGRAM and proto in (0, stdlib.IPPROTO_UDP):
            return UdpSocketType(stack, family, proto, self._numbers)
        if kind in (stdlib.SOCK_STREAM, stdlib.SOCK_DGRAM):
            raise _error(errno.EPROTONOSUPPORT, f"protocol {proto}")
        raise _error(errno.ESOCKTNOSUPPORT, f"socket type {kind} (only SOCK_STREAM and SOCK_DGRAM)")


def _name(family: int) -> str:
    try:
        return stdlib.AddressFamily(family).name
    except ValueError:
        return f"family {family}"


class _Resolver(trio.abc.HostnameResolver):
    """The stack's names inside ``use_stack``; outside, what was there before
    (or the system's, in a thread, as Trio does)."""

    def __init__(self) -> None:
        self.previous: trio.abc.HostnameResolver | None = None

    async def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        stack = _current_stack.get()
        if stack is None:
            if self.previous is not None:
                return await self.previous.getaddrinfo(host, port, family, type, proto, flags)
            return await trio.to_thread.run_sync(
                stdlib.getaddrinfo, host, port, family, type, proto, flags,
                abandon_on_cancel=True)
        if isinstance(host, bytes):
            host = host.decode("ascii")
        return await stack.getaddrinfo(host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr, flags):
        stack = _current_stack.get()
        if stack is None:
            if self.previous is not None:
                return await self.previous.getnameinfo(sockaddr, flags)
            return await trio.to_thread.run_sync(stdlib.getnameinfo, sockaddr, flags,
                                                 abandon_on_cancel=True)
        return await stack.getnameinfo(sockaddr, flags)


# --- the sockets -------------------------------------------------------------------------


class _RawSocketView:
    """What anyio's ``extra()`` and httpcore read from a socket's ``_sock``
    (a stdlib socket on the kernel): family, type, addresses, options.
    ``fileno()`` is -1: there is no descriptor to poll."""

    __slots__ = ("_owner",)

    def __init__(self, owner) -> None:
        self._owner = owner

    @property
    def family(self):
        return self._owner.family

    @property
    def type(self):
        return self._owner.type

    @property
    def proto(self):
        return self._owner.proto

    def getsockname(self):
        return self._owner.getsockname()

    def getpeername(self):
        return self._owner.getpeername()

    def setsockopt(self, *args):
        return self._owner.setsockopt(*args)

    def getsockopt(self, *args):
        return self._owner.getsockopt(*args)

    def fileno(self) -> int:
        return -1


class _Guard:
    """One task at a time in one direction (as trio raises for a kernel
    socket's fd): BusyResourceError for the second."""

    __slots__ = ("_held", "_what")

    def __init__(self, what: str) -> None:
        self._held = False
        self._what = what

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(f"another task is already {self._what} this socket")
        self._held = True

    def __exit__(self, *exc) -> None:
        self._held = False


class _SocketBase(trio.socket.SocketType):
    """What TCP and UDP sockets share: identity, options, closing."""

    def __init__(self, stack, family: int, type_: int, proto: int,
                 numbers: Iterator[int]) -> None:
        self._stack = stack
        #: Where pseudo descriptor numbers come from (the factory's, one per run).
        self._numbers = numbers
        self._family = stdlib.AddressFamily(family)
        self._type = stdlib.SocketKind(type_)
        self._proto = proto
        self._fileno = next(numbers)
        self._closed = False
        #: (level, option) -> value, for getsockopt and for the connection.
        self._options: dict[tuple[int, int], Any] = {}
        #: Our (address, port) once bound; address None for "any".
        self._bound: tuple[IPAddress | None, int] | None = None
        self._receiving = _Guard("receiving on")
        self._sending = _Guard("sending on")
        self._did_shutdown_wr = False

    # -- identity ---------------------------------------------------------------

    @property
    def family(self):
        return self._family

    @property
    def type(self):
        return self._type

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return self._did_shutdown_wr

    @property
    def _sock(self) -> _RawSocketView:
        return _RawSocketView(self)

    def fileno(self) -> int:
        return -1 if self._closed else self._fileno

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fileno}"
        return (f"<trionet socket {self._family.name} {self._type.name} {state}"
                f" {self._describe()}>")

    def _describe(self) -> str:
        return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_inheritable(self) -> bool:
        return False

    def set_inheritable(self, inheritable: bool) -> None:
        raise _error(errno.EOPNOTSUPP, "a trionet socket has no file descriptor")

    def dup(self):
        raise _error(errno.EOPNOTSUPP, "a trionet socket cannot be duplicated")

    def detach(self) -> int:
        raise _error(errno.EOPNOTSUPP, "a trionet socket has no file descriptor")

    def _check_open(self) -> None:
        if self._closed:
            raise _error(errno.EBADF)

    def _closed_while_waiting(self) -> trio.ClosedResourceError:
        return trio.ClosedResourceError("another task closed this socket")

    # -- addresses ------------------------------------------------------------------

    def _sockaddr(self, address, port: int):
        """A Python sockaddr for this family: (host, port) or, for IPv6,
        (host, port, flowinfo 0, scope id): a link-local host carries its
        interface ("fe80::1%eth0", and its index as scope id), an IPv4 peer
        of a dual-stack socket is IPv4-mapped (RFC 4291 2.5.5.2)."""
        if self._family != stdlib.AF_INET6:
            return ("0.0.0.0" if address is None else str(address), port)
        if address is None:
            return ("::", port, 0, 0)
        if address.version == 4:
            return (f"::ffff:{address}", port, 0, 0)
        scope = address.scope_id
        return (str(address), port, 0, self._stack.network.interface_index(scope) if scope else 0)

    def _v6only(self) -> bool:
        return bool(self._options.get((stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY)))

    def _wildcard(self):
        """What "any address" binds to here: every IPv4 address (AF_INET),
        every IPv6 one (AF_INET6 with IPV6_V6ONLY) or both (None)."""
        if self._family == stdlib.AF_INET:
            return IPv4Address(0)
        return IPv6Address(0) if self._v6only() else None

    async def _resolve(self, address, *, local: bool) -> tuple[IPAddress | None, int]:
        """(ip or None for "any", port) from a sockaddr tuple; names go
        through getaddrinfo (so through the stack inside use_stack)."""
        family = self._family
        if not isinstance(address, tuple) or not (
                len(address) == 2 if family == stdlib.AF_INET else 2 <= len(address) <= 4):
            raise ValueError("address should be a (host, port) tuple"
                             if family == stdlib.AF_INET else
                             "address should be a (host, port, [flowinfo, [scopeid]]) tuple")
        host, port = address[0], address[1]
        if isinstance(host, bytes):
            host = host.decode("ascii")
        if host == "" or host is None:
            if not local:
                raise _error(errno.EINVAL, "no destination address")
            return self._wildcard(), self._port(port)
        if host == "<broadcast>":
            host = "255.255.255.255"
        scope_id = address[3] if len(address) == 4 else 0
        try:
            ip = _parse_numeric(host, family)
        except ValueError:
            infos = await trio.socket.getaddrinfo(
                host, port, family, self._type, self._proto,
                stdlib.AI_PASSIVE if local else 0)
            if not infos:
                raise stdlib.gaierror(stdlib.EAI_NONAME, "Name or service not known") from None
            sockaddr = infos[0][4]
            ip, port = _parse_numeric(sockaddr[0], family), sockaddr[1]
            scope_id = sockaddr[3] if len(sockaddr) == 4 else 0
        port = self._port(port)
        if ip.version == 6:
            ip = self._with_scope(ip, scope_id)
        if ip.is_unspecified and local:
            return self._wildcard(), port
        return ip, port

    def _with_scope(self, ip, scope_id: int):
        """A link-local IPv6 address with its interface (from the host's
        "%name" or the sockaddr's scope id); an IPv4-mapped one as the IPv4
        address it stands for."""
        mapped = ip.ipv4_mapped
        if mapped is not None:
            if self._v6only():
                raise _error(errno.ENETUNREACH, f"{ip}: an IPV6_V6ONLY socket")
            return mapped
        if ip.scope_id is not None and ip.scope_id.isdigit():  # "fe80::1%2": an index
            scope_id, ip = int(ip.scope_id), IPv6Address(int(ip))
        if ip.scope_id is None and scope_id:
            name = self._stack.network.interface_name(scope_id)
            if name is None:
                name = _kernel_interface_name(self._stack, scope_id)
            if name is None:
                raise _error(errno.ENODEV, f"no interface with index {scope_id}")
            ip = IPv6Address(f"{ip}%{name}")
        return ip

    @staticmethod
    def _port(port) -> int:
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise OverflowError("port must be 0-65535.")
        return port

    # -- options ----------------------------------------------------------------------

    def setsockopt(self, level, option, value=None, optlen=None) -> None:
        self._check_open()
        if value is None:
            raise TypeError("setsockopt needs a value")
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value)
        elif not isinstance(value, int):
            raise TypeError(f"setsockopt value must be an int or bytes, not {type(value).__name__}")
        self._options[(level, option)] = int(value) if isinstance(value, bool) else value
        self._apply_option(level, option, value)

    def _apply_option(self, level: int, option: int, value) -> None:
        """Hand an option the connection understands to it."""

    def getsockopt(self, level, option, buflen=None):
        self._check_open()
        if level == stdlib.SOL_SOCKET:
            if option == stdlib.SO_TYPE:
                return int(self._type)
            if option == stdlib.SO_DOMAIN:
                return int(self._family)
            if option == stdlib.SO_PROTOCOL:
                return self._proto or (stdlib.IPPROTO_TCP if self._type == stdlib.SOCK_STREAM
                                       else stdlib.IPPROTO_UDP)
            if option == stdlib.SO_ERROR:
                return self._take_error()
            if option == stdlib.SO_ACCEPTCONN:
                return int(self._listening())
        value = self._read_option(level, option)
        if value is None:
            value = self._options.get((level, option))
        if value is None:
            if (level, option) in _DEFAULT_OPTIONS:
                value = _DEFAULT_OPTIONS[(level, option)]
            else:
                raise _error(errno.ENOPROTOOPT)
        if buflen is not None and isinstance(value, int):
            return value.to_bytes(max(buflen, 4), "little")[:buflen]
        return value

    def _read_option(self, level: int, option: int):
        return None

    def _take_error(self) -> int:
        return 0

    def _listening(self) -> bool:
        return False

    # -- receiving into a buffer: recv/recvfrom, then a copy ---------------------------------

    async def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = await self.recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data)

    async def recvfrom_into(self, buffer, nbytes: int = 0, flags: int = 0):
        view = memoryview(buffer).cast("B")
        data, address = await self.recvfrom(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data), address

    # -- unused by the libraries, present as a kernel socket's are ------------------------

    async def recvmsg(self, *args, **kwargs):
        raise _error(errno.EOPNOTSUPP, "recvmsg on a trionet socket")

    async def recvmsg_into(self, *args, **kwargs):
        raise _error(errno.EOPNOTSUPP, "recvmsg_into on a trionet socket")

    async def sendmsg(self, *args, **kwargs):
        raise _error(errno.EOPNOTSUPP, "sendmsg on a trionet socket")


#: What a fresh Linux socket answers for options it was never given.
_DEFAULT_OPTIONS = {
    (stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR): 0,
    (stdlib.SOL_SOCKET, stdlib.SO_KEEPALIVE): 0,
    (stdlib.SOL_SOCKET, stdlib.SO_BROADCAST): 0,
    (stdlib.IPPROTO_TCP, stdlib.TCP_NODELAY): 0,
    (stdlib.IPPROTO_IPV6, stdlib.IPV6_V6ONLY): 0,  # Linux's net.ipv6.bindv6only
}


def _kernel_interface_name(stack, index: int) -> str | None:
    """Trio parses numeric hosts with the kernel's getaddrinfo, which turns
    "fe80::1%eth0" into the *kernel's* index of eth0: the stack's interface
    of that name, if it has one."""
    try:
        name = stdlib.if_indextoname(index)
    except OSError:
        return None
    return name if stack.network.interface_index(name) else None


def _parse_numeric(host: str, family: int):
    """A numeric host of ``family`` (an IPv6 one keeps its "%scope");
    ValueError for a name."""
    address = ip_address(host)
    if family == stdlib.AF_INET and not isinstance(address, IPv4Address):
        raise stdlib.gaierror(stdlib.EAI_ADDRFAMILY, "Address family for hostname not supported")
    if family == stdlib.AF_INET6 and not isinstance(address, IPv6Address):
        raise stdlib.gaierror(stdlib.EAI_ADDRFAMILY, "Address family for hostname not supported")
    return address


_CONNECTION_ERRNO = {"reset": errno.ECONNRESET, "refused": errno.ECONNREFUSED,
                     "timeout": errno.ETIMEDOUT, "unreachable": errno.EHOSTUNREACH,
                     "address_lost": errno.ECONNABORTED}

#: Socket options a TCP connection takes: (level, option) -> (TcpConfig name, conversion).
_TCP_OPTIONS = {
    (stdlib.IPPROTO_TCP, stdlib.TCP_NODELAY): ("nodelay", bool),
    (stdlib.SOL_SOCKET, stdlib.SO_KEEPALIVE): ("keepalive", bool),
    (stdlib.IPPROTO_TCP, getattr(stdlib, "TCP_KEEPIDLE", 4)): ("keepalive_idle", float),
    (stdlib.IPPROTO_TCP, getattr(stdlib, "TCP_KEEPINTVL", 5)): ("keepalive_interval", float),
    (stdlib.IPPROTO_TCP, getattr(stdlib, "TCP_KEEPCNT", 6)): ("keepalive_count", int),
    (stdlib.SOL_SOCKET, stdlib.SO_RCVBUF): ("receive_buffer", int),
    (stdlib.SOL_SOCKET, stdlib.SO_SNDBUF): ("send_buffer", int),
}
#: Options refused with ENOPROTOOPT, as a kernel without them would (Trio
#: tolerates the refusal of TCP_NOTSENT_LOWAT).
_REFUSED = {(stdlib.IPPROTO_TCP, getattr(stdlib, "TCP_NOTSENT_LOWAT", 25))}


class TcpSocketType(_SocketBase):
    """A SOCK_STREAM socket: unconnected, listening, or one TCP connection."""

    def __init__(self, stack, family: int, proto: int, numbers: Iterator[int],
                 connection: TcpSocket | None = None) -> None:
        super().__init__(stack, family, stdlib.SOCK_STREAM, proto, numbers)
        self._conn = connection
        self._connecting = False
        self._read_shut = False
        self._listener: Listener | None = None
        self._pending_error = 0
        if connection is not None:
            self._bound = (connection.local_ip, connection.key[1])

    def _describe(self) -> str:
        if self._conn is not None:
            return f"{self._conn.key[0]}:{self._conn.key[1]} -> {self._conn.key[2]}:{self._conn.key[3]}"
        if self._listener is not None:
            return f"listening on {self._listener.port}"
        return ""

    # -- addresses ------------------------------------------------------------------------

    async def bind(self, address) -> None:
        self._check_open()
        ip, port = await self._resolve(address, local=True)
        if self._bound is not None or self._conn is not None:
            raise _error(errno.EINVAL, "already bound")
        tcp = self._stack.tcp
        if ip is not None and not ip.is_unspecified:
            try:
                ip = self._stack.network.bind_address(ip, "address")
            except OSError:
                raise _error(errno.EADDRNOTAVAIL, f"{ip} is not an address of this stack") \
                    from None
        if port == 0:
            port = tcp.ports.allocate(ip, None, 0, lambda p: tcp.port_in_use(ip, p))
        elif self._port_taken(ip, port):
            raise _error(errno.EADDRINUSE)
        self._bound = (ip, port)

    def _port_taken(self, ip, port: int) -> bool:
        tcp = self._stack.tcp
        if self._options.get((stdlib.SOL_SOCKET, stdlib.SO_REUSEADDR)):
            # SO_REUSEADDR: only a listener holds the port (TIME-WAIT and
            # other connections do not, as on Linux).
            return tcp.listener_conflicts(ip, port)
        return tcp.port_in_use(ip, port)

    def getsockname(self):
        self._check_open()
        if self._conn is not None:
            key = self._conn.key
            return self._sockaddr(key[0], key[1])
        if self._bound is not None:
            return self._sockaddr(*self._bound)
        return self._sockaddr(None, 0)

    def getpeername(self):
        self._check_open()
        if self._conn is None or self._connecting:
            raise _error(errno.ENOTCONN)
        key = self._conn.key
        return self._sockaddr(key[2], key[3])

    # -- connecting ------------------------------------------------------------------------

    async def connect(self, address) -> None:
        self._check_open()
        if self._listener is not None:
            raise _error(errno.EINVAL, "a listening socket cannot connect")
        if self._conn is not None:
            raise _error(errno.EALREADY if self._connecting else errno.EISCONN)
        try:
            ip, port = await self._resolve(address, local=False)
            local_ip, local_port = self._bound if self._bound is not None else (None, None)
            self._connecting = True
            try:
                conn = await self._stack.tcp.connect(ip, port, local_port=local_port,
                                                     local_address=local_ip)
            finally:
                self._connecting = False
        except BaseException:
            # As Trio's: a connect that did not finish (cancelled too) closes the socket.
            self.close()
            raise
        if self._closed:
            conn.abort()
            raise self._closed_while_waiting()
        self._conn = conn
        self._bound = (conn.key[0], conn.key[1])
        for (level, option), value in self._options.items():
            self._apply_option(level, option, value)

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self._conn is not None:
            raise _error(errno.EINVAL, "a connected socket cannot listen")
        if self._listener is not None:
            return
        tcp = self._stack.tcp
        if self._bound is None:
            any_address = self._wildcard()
            self._bound = (any_address, tcp.ports.allocate(
                any_address, None, 0, lambda p: tcp.port_in_use(any_address, p)))
        ip, port = self._bound
        self._listener = Listener(tcp, port, ip, max(1, min(int(backlog), _LISTEN_BACKLOG_MAX)))

    def _listening(self) -> bool:
        return self._listener is not None

    async def accept(self):
        self._check_open()
        if self._listener is None:
            raise _error(errno.EINVAL, "the socket is not listening")
        with self._receiving:
            try:
                conn = await self._listener.accept_connection()
            except trio.ClosedResourceError:
                raise self._closed_while_waiting() from None
        key = conn.key
        peer = TcpSocketType(self._stack, self._family, self._proto, self._numbers,
                             connection=conn)
        for (level, option), value in self._options.items():
            if (level, option) in _TCP_OPTIONS:
                peer._options[(level, option)] = value
                peer._apply_option(level, option, value)
        return peer, self._sockaddr(key[2], key[3])

    # -- data --------------------------------------------------------------------------------

    def _connection_or_error(self, *, sending: bool) -> TcpSocket:
        self._check_open()
        conn = self._conn
        if conn is None or self._connecting:
            raise _error(errno.EPIPE if sending else errno.ENOTCONN)
        return conn

    def _broken(self, conn: TcpSocket, *, sending: bool) -> OSError | None:
        machine = conn.machine
        if machine.error is not None:
            return _error(_CONNECTION_ERRNO.get(machine.error, errno.EIO))
        if sending and (self._did_shutdown_wr or not machine.can_send):
            return _error(errno.EPIPE)
        return None

    async def send(self, data, flags: int = 0) -> int:
        with self._sending:
            conn = self._connection_or_error(sending=True)
            await trio.lowlevel.checkpoint_if_cancelled()
            view = memoryview(data).cast("B")
            waited = False
            while True:
                if self._closed:
                    raise self._closed_while_waiting()
                failure = self._broken(conn, sending=True)
                if failure is not None:
                    raise failure
                if len(view) == 0:
                    taken = 0
                    break
                taken = conn.send(view)  # copies what it takes
                if taken:
                    break
                await conn.wait_change()
                waited = True
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return taken

    async def wait_writable(self) -> None:
        with self._sending:
            conn = self._connection_or_error(sending=True)
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False
            while not self._closed and self._broken(conn, sending=True) is None \
                    and conn.machine.send_space == 0:
                await conn.wait_change()
                waited = True
            if self._closed:
                raise self._closed_while_waiting()
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()

    async def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if isinstance(bufsize, bool) or not isinstance(bufsize, int):
            raise TypeError(f"bufsize must be an int, not {type(bufsize).__name__}")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        with self._receiving:
            conn = self._connection_or_error(sending=False)
            await trio.lowlevel.checkpoint_if_cancelled()
            machine = conn.machine
            waited = False
            while True:
                if self._closed:
                    raise self._closed_while_waiting()
                if self._read_shut or bufsize == 0:
                    data = b""
                    break
                if machine.unread_bytes:
                    data = conn.receive(bufsize)
                    break
                if machine.at_eof:
                    data = b""
                    break
                failure = self._broken(conn, sending=False)
                if failure is not None:
                    raise failure
                if machine.closed:  # aborted: as after our own RST
                    data = b""
                    break
                await conn.wait_change()
                waited = True
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def recvfrom(self, bufsize: int, flags: int = 0):
        data = await self.recv(bufsize, flags)
        return data, self.getpeername()

    async def sendto(self, data, *args) -> int:
        # As Linux: the address of a connected stream socket is ignored.
        return await self.send(data)

    def is_readable(self) -> bool:
        if self._closed:
            return True
        if self._listener is not None:
            return self._listener.accept_queue > 0
        conn = self._conn
        return conn is None or conn.machine.readable

    def shutdown(self, how: int) -> None:
        self._check_open()
        if how not in (stdlib.SHUT_RD, stdlib.SHUT_WR, stdlib.SHUT_RDWR):
            raise _error(errno.EINVAL)
        conn = self._conn
        if conn is None or self._connecting:
            raise _error(errno.ENOTCONN)
        if how in (stdlib.SHUT_RD, stdlib.SHUT_RDWR):
            self._read_shut = True
            conn.wake()
        if how in (stdlib.SHUT_WR, stdlib.SHUT_RDWR):
            if not self._did_shutdown_wr and conn.machine.error is None:
                conn.shutdown_write()
            self._did_shutdown_wr = True

    # -- options -----------------------------------------------------------------------------

    def _apply_option(self, level: int, option: int, value) -> None:
        if (level, option) in _REFUSED:
            del self._options[(level, option)]
            raise _error(errno.ENOPROTOOPT)
        known = _TCP_OPTIONS.get((level, option))
        if known is None or self._conn is None or self._conn.machine.closed:
            return
        name, convert = known
        if isinstance(value, bytes):
            value = int.from_bytes(value[:4].ljust(4, b"\0"), "little")
        value = convert(value)
        if name in ("receive_buffer", "send_buffer"):
            value = max(value, 1)
        elif name == "keepalive_count":
            value = min(max(value, 1), 255)
        elif name in ("keepalive_idle", "keepalive_interval"):
            value = max(value, 1.0)
        self._conn.set_option(name, value)

    def _read_option(self, level: int, option: int):
        known = _TCP_OPTIONS.get((level, option))
        if known is not None and self._conn is not None:
            value = getattr(self._conn.machine.config, known[0])
            return int(value)
        return None

    def _take_error(self) -> int:
        conn = self._conn
        if conn is not None and conn.machine.error is not None and not self._pending_error:
            code = _CONNECTION_ERRNO.get(conn.machine.error, errno.EIO)
            self._pending_error = -1  # reported once
            return code
        return 0

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if conn is not None:
            machine = conn.machine
            if self._connecting or machine.state is SYN_RECEIVED:
                conn.abort()
            elif not machine.closed:
                conn.close()  # FIN; RST if unread data is left (RFC 2525 2.17)
            else:
                conn.wake()
        if self._listener is not None:
            self._listener.close()  # connections nobody accepted are reset (as Linux)


class UdpSocketType(_SocketBase):
    """A SOCK_DGRAM socket over the stack's UDP."""

    def __init__(self, stack, family: int, proto: int, numbers: Iterator[int]) -> None:
        super().__init__(stack, family, stdlib.SOCK_DGRAM, proto, numbers)
        self._udp: UdpSocket | None = None
        self._peer: tuple[IPAddress, int] | None = None
        self._pending_error = 0
        #: The scope of a receive in progress: an ICMP error cancels it.
        self._recv_scope: trio.CancelScope | None = None

    def _describe(self) -> str:
        if self._udp is None:
            return "unbound"
        return f"port {self._udp.local_port}" + (
            f" -> {self._peer[0]}:{self._peer[1]}" if self._peer else "")

    async def _bind_to(self, ip, port: int) -> None:
        try:
            sock = await self._stack.udp.open(port, ip, v6only=self._v6only())
        except OSError as exc:
            raise _error(exc.errno or errno.EADDRINUSE, str(exc)) from None
        if self._closed:
            sock.close()
            raise self._closed_while_waiting()
        sock.error_handler = self._on_icmp_error
        self._udp = sock
        self._bound = (ip, sock.local_port)

    async def bind(self, address) -> None:
        self._check_open()
        ip, port = await self._resolve(address, local=True)
        if self._udp is not None:
            raise _error(errno.EINVAL, "already bound")
        await self._bind_to(ip, port)

    async def _ensure_bound(self) -> UdpSocket:
        if self._udp is None:
            # As Linux: an ephemeral port, every address (of the family).
            await self._bind_to(self._wildcard(), 0)
        return self._udp

    def _on_icmp_error(self, code: int, peer) -> None:
        # Linux reports ICMP errors on connected UDP sockets only.
        if self._peer is not None and peer == self._peer:
            self._pending_error = code
            if self._recv_scope is not None:
                self._recv_scope.cancel()  # the waiting receive reports it now

    def _raise_pending(self) -> None:
        code, self._pending_error = self._pending_error, 0
        if code:
            raise _error(code)

    async def connect(self, address) -> None:
        self._check_open()
        ip, port = await self._resolve(address, local=False)
        await self._ensure_bound()
        self._peer = (ip, port)
        self._pending_error = 0

    def getsockname(self):
        self._check_open()
        if self._bound is None:
            return self._sockaddr(None, 0)
        ip, port = self._bound
        if (ip is None or ip.is_unspecified) and self._peer is not None:
            try:
                ip = self._stack.path_to(self._peer[0]).source
            except OSError:
                pass
        return self._sockaddr(ip, port)

    def getpeername(self):
        self._check_open()
        if self._peer is None:
            raise _error(errno.ENOTCONN)
        return self._sockaddr(*self._peer)

    async def sendto(self, data, *args) -> int:
        if len(args) == 1:
            (address,) = args
        elif len(args) == 2:
            _, address = args
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        self._check_open()
        ip, port = await self._resolve(address, local=False)
        return await self._send_to(data, ip, port)

    async def send(self, data, flags: int = 0) -> int:
        self._check_open()
        if self._peer is None:
            raise _error(errno.EDESTADDRREQ)
        return await self._send_to(data, *self._peer)

    async def _send_to(self, data, ip, port: int) -> int:
        data = bytes(memoryview(data).cast("B"))
        if len(data) > (MAX_UDP_PAYLOAD if ip.version == 4 else MAX_UDP6_PAYLOAD):
            raise _error(errno.EMSGSIZE)
        if port == 0:
            raise _error(errno.EINVAL, "port 0")
        with self._sending:
            sock = await self._ensure_bound()
            self._raise_pending()
            await sock.sendto(data, (ip, port))
        return len(data)

    async def recvfrom(self, bufsize: int, flags: int = 0):
        if isinstance(bufsize, bool) or not isinstance(bufsize, int):
            raise TypeError(f"bufsize must be an int, not {type(bufsize).__name__}")
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        self._check_open()
        with self._receiving:
            sock = await self._ensure_bound()
            while True:
                self._raise_pending()
                with trio.CancelScope() as scope:
                    self._recv_scope = scope
                    try:
                        data, (host, port) = await sock.recvfrom()
                    except trio.ClosedResourceError:
                        raise self._closed_while_waiting() from None
                    finally:
                        self._recv_scope = None
                if scope.cancelled_caught:
                    continue  # an ICMP error came: raised above
                source = ip_address(host)
                if self._peer is None or (source, port) == self._peer:
                    return data[:bufsize], self._sockaddr(source, port)

    async def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data, _ = await self.recvfrom(bufsize, flags)
        return data


    async def wait_writable(self) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()

    def is_readable(self) -> bool:
        return self._closed or self._pending_error != 0 or (
            self._udp is not None and self._udp.queued > 0)

    def listen(self, backlog: int = 128) -> None:
        raise _error(errno.EOPNOTSUPP)

    async def accept(self):
        raise _error(errno.EOPNOTSUPP)

    def shutdown(self, how: int) -> None:
        self._check_open()
        if self._peer is None:
            raise _error(errno.ENOTCONN)

    def _take_error(self) -> int:
        code, self._pending_error = self._pending_error, 0
        return code

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._udp is not None:
            self._udp.close()
