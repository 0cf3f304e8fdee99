"""Names to addresses for a stack: ``getaddrinfo``/``getnameinfo`` as the
socket module answers them, from the stack's static hosts table (and, once
it has one, its resolver). Numeric hosts never leave the process."""

from __future__ import annotations

import socket as stdlib
from collections.abc import Callable, Iterable, MutableMapping
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import trio

from ..validate import IPAddress

_SOCKTYPE_PROTO = {stdlib.SOCK_STREAM: stdlib.IPPROTO_TCP, stdlib.SOCK_DGRAM: stdlib.IPPROTO_UDP}
_FAMILY_OF = {4: stdlib.AF_INET, 6: stdlib.AF_INET6}


def _no_name(host) -> stdlib.gaierror:
    return stdlib.gaierror(stdlib.EAI_NONAME, "Name or service not known")


class HostsTable(MutableMapping):
    """Names -> addresses (a list of either family, in order of
    preference): ``stack.hosts["db"] = ["10.0.0.5"]``. Names are
    case-insensitive and a trailing dot is ignored, as in DNS; values are
    checked and kept as ``ipaddress`` objects."""

    def __init__(self) -> None:
        self._names: dict[str, list[IPAddress]] = {}

    @staticmethod
    def _key(name: Any) -> str:
        if isinstance(name, bytes):
            name = name.decode("ascii")
        if not isinstance(name, str) or not name.strip("."):
            raise TypeError(f"a host name must be a non-empty str, not {name!r}")
        return name.rstrip(".").lower()

    def __getitem__(self, name: str) -> list[IPAddress]:
        return list(self._names[self._key(name)])

    def __setitem__(self, name: str, addresses: Iterable | str | IPAddress) -> None:
        if isinstance(addresses, (str, IPv4Address, IPv6Address)):
            addresses = [addresses]
        parsed = []
        for address in addresses:
            try:
                parsed.append(address if isinstance(address, (IPv4Address, IPv6Address))
                              else ip_address(address))
            except ValueError:
                raise ValueError(f"hosts[{name!r}]: {address!r} is not an IP address") from None
        if not parsed:
            raise ValueError(f"hosts[{name!r}]: no addresses")
        self._names[self._key(name)] = parsed

    def __delitem__(self, name: str) -> None:
        del self._names[self._key(name)]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def names_of(self, address: IPAddress) -> list[str]:
        return [name for name, addresses in self._names.items() if address in addresses]

    def __repr__(self) -> str:
        return f"HostsTable({ {k: [str(a) for a in v] for k, v in self._names.items()} })"


def service_port(port: Any, socktype: int) -> int:
    """A port number from an int, a numeric string or a service name
    (from the local services database, as the socket module does)."""
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode("ascii")
    if isinstance(port, int) and not isinstance(port, bool):
        if not 0 <= port <= 65535:
            raise stdlib.gaierror(stdlib.EAI_SERVICE, "Servname not supported for ai_socktype")
        return port
    if isinstance(port, str):
        if port.isdigit():
            return service_port(int(port), socktype)
        try:
            return stdlib.getservbyname(port, "udp" if socktype == stdlib.SOCK_DGRAM else "tcp")
        except OSError:
            raise stdlib.gaierror(stdlib.EAI_SERVICE,
                                  "Servname not supported for ai_socktype") from None
    raise TypeError(f"port must be an int, a str or None, not {type(port).__name__}")


def address_infos(addresses: Iterable[IPAddress], port: int, family: int, socktype: int,
                  proto: int, canonname: str = "",
                  scope_index: Callable[[str], int] = lambda name: 0) -> list[tuple]:
    """The 5-tuples socket.getaddrinfo returns for these addresses (an IPv6
    one with a scope: "fe80::1%eth0" and the interface's index as
    ``scope_id``, from ``scope_index``)."""
    kinds = [socktype] if socktype else [stdlib.SOCK_STREAM, stdlib.SOCK_DGRAM]
    infos = []
    for address in addresses:
        fam = _FAMILY_OF[address.version]
        if family not in (0, stdlib.AF_UNSPEC) and family != fam:
            continue
        if fam == stdlib.AF_INET:
            sockaddr = (str(address), port)
        else:
            scope = address.scope_id
            sockaddr = (str(address), port, 0, scope_index(scope) if scope else 0)
        for kind in kinds:
            infos.append((stdlib.AddressFamily(fam), stdlib.SocketKind(kind),
                          proto or _SOCKTYPE_PROTO.get(kind, 0), canonname, sockaddr))
    return infos


async def getaddrinfo(stack, host, port, family: int = 0, type: int = 0, proto: int = 0,
                      flags: int = 0) -> list[tuple]:
    """What ``socket.getaddrinfo`` would answer, from ``stack``: numeric
    hosts as they are, ``None`` as the wildcard (AI_PASSIVE) or loopback,
    names from ``stack.hosts``; ``socket.gaierror`` (EAI_NONAME) for names
    it does not know."""
    await trio.lowlevel.checkpoint()
    if family not in (0, stdlib.AF_UNSPEC, stdlib.AF_INET, stdlib.AF_INET6):
        raise stdlib.gaierror(stdlib.EAI_FAMILY, "ai_family not supported")
    if type not in (0, stdlib.SOCK_STREAM, stdlib.SOCK_DGRAM):
        raise stdlib.gaierror(stdlib.EAI_SOCKTYPE, "ai_socktype not supported")
    number = service_port(port, type)
    if isinstance(host, bytes):
        host = host.decode("ascii")
    if host is None or host == "":
        if host == "" and not flags & stdlib.AI_PASSIVE:
            raise _no_name(host)
        wildcard = flags & stdlib.AI_PASSIVE
        addresses = [IPv4Address(0) if wildcard else IPv4Address("127.0.0.1")]
        if stdlib.AF_INET6 in stack.socket_families():
            addresses.insert(0, IPv6Address(0) if wildcard else IPv6Address(1))
        return address_infos(addresses, number, family, type, proto)
    try:
        address = ip_address(host)
    except ValueError:
        if flags & stdlib.AI_NUMERICHOST:
            raise _no_name(host) from None
        addresses = await resolve(stack, host)
    else:
        if address.version == 6 and address.scope_id is not None:
            address = _with_named_scope(stack, address)
        addresses = [address]
    infos = address_infos(addresses, number, family, type, proto,
                          host if flags & stdlib.AI_CANONNAME else "",
                          stack.network.interface_index)
    if not infos:
        raise stdlib.gaierror(stdlib.EAI_ADDRFAMILY, "Address family for hostname not supported")
    return infos


def _with_named_scope(stack, address: IPv6Address) -> IPv6Address:
    """"fe80::1%2" (an index, as the C library takes it) as "fe80::1%eth1";
    EAI_NONAME for an interface the stack does not have."""
    scope = address.scope_id
    if scope.isdigit():
        name = stack.network.interface_name(int(scope))
        if name is None:
            raise _no_name(str(address))
        return IPv6Address(f"{IPv6Address(int(address))}%{name}")
    if stack.network.interface_index(scope) == 0:
        raise _no_name(str(address))
    return address


async def resolve(stack, name: str) -> list[IPAddress]:
    """The addresses of ``name``: the hosts table, then ``localhost``."""
    try:
        return stack.hosts[name]
    except (KeyError, TypeError):
        pass
    if name.rstrip(".").lower() == "localhost":
        return [IPv4Address("127.0.0.1")]
    raise _no_name(name)


async def getnameinfo(stack, sockaddr, flags: int) -> tuple[str, str]:
    """What ``socket.getnameinfo`` would answer, from ``stack.hosts``."""
    await trio.lowlevel.checkpoint()
    if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
        raise TypeError("getnameinfo() argument 1 must be a tuple")
    host, port = sockaddr[0], sockaddr[1]
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        raise stdlib.gaierror(stdlib.EAI_NONAME, "Name or service not known") from None
    name = str(address)
    if not flags & stdlib.NI_NUMERICHOST:
        names = stack.hosts.names_of(address)
        if names:
            name = names[0]
        elif flags & stdlib.NI_NAMEREQD:
            raise stdlib.gaierror(stdlib.EAI_NONAME, "Name or service not known")
    service = str(port)
    if not flags & stdlib.NI_NUMERICSERV:
        try:
            service = stdlib.getservbyport(port, "udp" if flags & stdlib.NI_DGRAM else "tcp")
        except OSError:
            pass
    return name, service
